# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 13.4: a rollout that pauses after its canary, then is promoted or aborted by a later run (what an AWX
workflow's approval node between two job templates does).

Fleets of 4 reference Engines on 2.3.0 (stages 1 and 100%: a canary, then the other 3), real ansible-playbook runs
of ``upgrade.yml``: the first with ``engine_rollout_pause_after_canary=true`` ends with outcome
``awaiting_promotion`` (exit 0) after the canary; ``engine_rollout_promote=true`` continues the same rollout (same run
id, the canary not redone: same container, same start); ``engine_rollout_abort=true`` rolls the canary back (its
brain restored, what it acknowledged since replayed) and touches nobody else. What happened is read from Docker, the
brains, the run report and the webhook.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine_testkit import brain
from engine_testkit.settings import probe_vars
from engine_testkit.webhook import WebhookReceiver

pytestmark = pytest.mark.timeout(900)

Rollout = Any
BASELINE, TARGET = "2.3.0", "2.4.0"
#: Stages 1 and 100%, paused after the canary; probe turns give every Engine evidence of its own (no evidence is never
#: a pass: an idle canary would be rolled back, undecided).
PAUSE = {"engine_rollout_stages": ["1", "100%"], "engine_rollout_pause_after_canary": True, **probe_vars(12, 10)}


@pytest.fixture
def four(fleets: Any, tmp_path: Path) -> Iterator[Rollout]:
    with fleets.open(tmp_path, count=4) as rollout:
        yield rollout


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def upgrade(rollout: Rollout, hook: WebhookReceiver, label: str, **extra: Any) -> Any:
    return rollout.run("upgrade.yml", label=label, engine_target_version=TARGET, engine_webhook_url=hook.url,
                       **{**PAUSE, **extra})


def paused(rollout: Rollout, hook: WebhookReceiver) -> tuple[dict, str, dict]:
    """The first run, paused after its canary: (its report, the canary, the fleet's state before it)."""
    before = rollout.state()
    run = upgrade(rollout, hook, "paused after the canary")
    assert run.rc == 0, run.stdout[-4000:]
    report = rollout.report()
    assert report["outcome"] == "awaiting_promotion" and report["stopped"] is False, report["outcome"]
    (entry,) = report["engines"]
    canary = entry["engine"]
    assert entry["status"] == "upgraded" and entry["batch"] == 1
    after = rollout.state()
    assert after[canary].version == TARGET
    for eid, state in before.items():
        if eid != canary:
            assert after[eid] == state, eid  # the rest untouched
    assert sorted(report["untouched"]) == sorted(set(before) - {canary})
    end = hook.texts("end")[-1]
    assert end.startswith(f"PAUSED: the canary of the upgrade to {TARGET} passed (run {report['run_id']}): {canary}")
    assert "engine_rollout_promote=true" in end and "3 Engines to go" in end
    markdown = (rollout.report_dir / report["run_id"] / "upgrade.md").read_text()
    assert "**awaiting_promotion**: PAUSED after the canary" in markdown
    return report, canary, after


def test_promote_continues_the_same_rollout_without_redoing_the_canary(four: Rollout, hook: WebhookReceiver) -> None:
    rollout = four
    first, canary, after_pause = paused(rollout, hook)
    promoted = upgrade(rollout, hook, "promote", engine_rollout_promote=True)
    assert promoted.rc == 0, promoted.stdout[-4000:]
    report = rollout.report()
    assert report["run_id"] == first["run_id"] and report["outcome"] == "completed", report["outcome"]
    states = rollout.state()
    assert all(state.version == TARGET for state in states.values()), states
    assert states[canary] == after_pause[canary]  # the same container, not restarted: the canary not redone
    by = {e["engine"]: e for e in report["engines"]}
    assert by[canary]["status"] == "verified" and by[canary]["action"] == "none", by[canary]
    assert {e["status"] for eid, e in by.items() if eid != canary} == {"upgraded"}
    assert hook.texts("end")[-1].startswith(f"All clear: the upgrade to {TARGET} is done on 4 Engines")
    # Promoted already: nothing awaits promotion any more, and a second promotion changes nothing.
    again = upgrade(rollout, hook, "promote again", engine_rollout_promote=True)
    assert again.rc != 0 and "nothing awaits promotion" in again.stdout, again.stdout[-3000:]
    assert rollout.state() == states


def test_abort_rolls_the_canary_back_with_what_it_acknowledged_since(four: Rollout, hook: WebhookReceiver) -> None:
    rollout = four
    with rollout.load(rate=1.0) as lg:
        first, canary, after_pause = paused(rollout, hook)
        mark = lg.ack_counts()
        lg.wait_acked(3, after=mark, timeout=60)  # the canary serves on 2.4.0 while the operator decides
        aborted = upgrade(rollout, hook, "abort", engine_rollout_abort=True)
    assert aborted.rc == 0, aborted.stdout[-4000:]
    report = rollout.report()
    assert report["run_id"] == first["run_id"] and report["outcome"] == "aborted", report["outcome"]
    (entry,) = [e for e in report["engines"] if e["engine"] == canary]
    assert entry["status"] == "unwound" and entry["rollback"]["to_version"] == BASELINE, entry
    assert entry["rollback"]["brain_restored"] is True  # 0006 ran: the pre-upgrade brain, then the replay
    states = rollout.state()
    assert states[canary].version == BASELINE
    assert brain.applied_migrations(rollout.engine(canary).brain_path())[-1] == "0005"
    for eid, state in after_pause.items():
        if eid != canary:
            assert states[eid] == state, eid  # nobody else touched
    # Every turn and feedback the canary acknowledged (before the pause, and on 2.4.0 after it) is in its brain.
    for engine in rollout.engines:
        rollout.assert_writes_kept(engine, lg)
    end = hook.texts("end")[-1]
    assert end.startswith(f"ABORTED by the operator after the canary: the upgrade to {TARGET} (run "), end
    assert f"{canary} unwound" in end
    assert hook.texts("rollback")[-1].startswith(f"Rolling back {canary} to {BASELINE}")
    # The paused rollout is over: nothing to promote.
    again = upgrade(rollout, hook, "promote after the abort", engine_rollout_promote=True)
    assert again.rc != 0 and "nothing awaits promotion" in again.stdout, again.stdout[-3000:]
