# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 9: canary verdicts under real per-user traffic. No evidence is never a pass.

Fleets of 8 reference Engines (per-user containers and Compose projects, 4 of each; the default stages make the
batches [1] [1] [2] [4]), with load that starts only a few seconds before ``upgrade.yml`` (at most 10 s, about one
turn every 2 s per Engine, as per-user Engines see), or on half of the fleet, or none at all. The canary cohort is
judged against a control cohort of not-yet-upgraded Engines over the same window, and against its own baseline
(which reaches back further than the last minutes when they are thin). What happened is read from Docker, the
brains, the run report and the webhook.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine_testkit import brain
from engine_testkit.loadgen import LoadGenerator
from engine_testkit.webhook import WebhookReceiver

pytestmark = pytest.mark.timeout(1200)

Rollout = Any
BASELINE = "2.3.0"
FLEET = 8
#: About one turn every 2 s per Engine: what a busy per-user Engine sees, and far less than the old checks needed.
RATE = 0.5
#: The checks at test scale: a canary bake of 20 s (about 10 turns of its own), undecided rounds up to 60 s.
VERDICT_VARS: dict[str, Any] = {
    "engine_upgrade_canary_bake_seconds": 20,
    "engine_upgrade_canary_max_bake_seconds": 60,
    "engine_upgrade_bake_seconds": 0,
    "engine_upgrade_bake_interval": 2,
    "engine_upgrade_metrics_min_turns": 20,
    "engine_upgrade_control_engines": 5,
}


@pytest.fixture
def eight(fleets: Any, tmp_path: Path) -> Iterator[Rollout]:
    with fleets.open(tmp_path, count=FLEET) as rollout:
        yield rollout


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def upgrade(rollout: Rollout, hook: WebhookReceiver, target: str, label: str, **extra: Any) -> Any:
    return rollout.run("upgrade.yml", label=label, engine_target_version=target, engine_webhook_url=hook.url,
                       **{**VERDICT_VARS, **extra})


def start_load(rollout: Rollout, engines: list) -> LoadGenerator:
    """Load on `engines`, started just now: returns once each has one acknowledged turn (well under 10 s)."""
    lg = LoadGenerator(engines, rate=RATE, feedback_ratio=0.5, max_seconds=900)
    rollout.loadgens.append(lg)
    lg.start()
    lg.wait_acked(1, timeout=10)
    return lg


def canary_of(rollout: Rollout) -> str:
    (entry,) = [e for e in rollout.report()["engines"] if e["batch"] == 1]
    return entry["engine"]


# ---------------------------------------------------------------------- load that starts just before the run


def test_242_is_stopped_at_the_canary_under_light_fresh_load(eight: Rollout, hook: WebhookReceiver) -> None:
    rollout = eight
    before = rollout.state()
    lg = start_load(rollout, rollout.engines)
    try:
        run = upgrade(rollout, hook, "2.4.2", "2.4.2 under light load")
    finally:
        lg.stop(timeout=10)
    assert run.rc == 2, run.stdout[-4000:]
    report = rollout.report()
    canary = canary_of(rollout)
    (entry,) = report["engines"]
    assert report["outcome"] == "stopped_rolled_back", report["outcome"]
    assert entry["status"] == "rolled_back" and entry["evidence"] == "fail", entry
    # Judged on evidence: the verdict names it and what it used (turns per cohort, the rule that fired).
    verdict = entry["verdict"]
    assert verdict["decision"] == "fail" and verdict["rule"], verdict
    assert verdict["evidence"]["canary"]["turns"] > 0 and verdict["evidence"]["control"]["turns"] > 0, verdict
    assert "TOOL_EXECUTION_FAILED" in (verdict["symptom"] or "") or "error rate" in (verdict["symptom"] or "")
    # Rolled back with its brain restored (2.4.2 ran migration 0006); nobody else was touched.
    after = rollout.state()
    assert (after[canary].image, after[canary].version) == (f"engine:{BASELINE}", BASELINE)
    assert brain.applied_migrations(rollout.engine(canary).brain_path())[-1] == "0005"
    assert entry["rollback_kind"] == "image+brain"
    for eid in before:
        if eid != canary:
            assert after[eid] == before[eid]
            rollout.assert_writes_kept(rollout.engine(eid), lg)
    assert [m["event"] for m in hook.messages] == ["start", "rollback", "end"]


def test_240_passes_to_the_whole_fleet_under_the_same_load(eight: Rollout, hook: WebhookReceiver) -> None:
    rollout = eight
    lg = start_load(rollout, rollout.engines)
    try:
        run = upgrade(rollout, hook, "2.4.0", "2.4.0 under light load")
    finally:
        lg.stop(timeout=10)
    assert run.rc == 0, run.stdout[-4000:]
    report = rollout.report()
    assert report["outcome"] == "completed" and report["untouched"] == []
    for engine in rollout.engines:
        assert engine.image_version() == "2.4.0"
        rollout.assert_writes_kept(engine, lg)
    canary = next(e for e in report["engines"] if e["batch"] == 1)
    # The canary passed on evidence, not on a lack of it.
    assert canary["evidence"] == "pass" and canary["verdict"]["decision"] == "pass", canary
    assert canary["verdict"]["evidence"]["canary"]["turns"] >= 1
    assert hook.texts("end")[0].startswith(f"All clear: the upgrade to 2.4.0 is done on {FLEET} Engines")


# ---------------------------------------------------------------------- an idle canary in a busy fleet


def test_an_idle_canary_is_never_promoted_on_no_evidence(eight: Rollout, hook: WebhookReceiver) -> None:
    rollout = eight
    before = rollout.state()
    planned = rollout.run("upgrade.yml", label="plan", check=True, engine_target_version="2.4.0", **VERDICT_VARS)
    assert planned.rc == 0, planned.stdout[-3000:]
    canary = canary_of(rollout)
    busy = [e for e in rollout.engines if e.engine_id != canary][: FLEET // 2]
    lg = start_load(rollout, busy)
    try:
        run = upgrade(rollout, hook, "2.4.0", "idle canary", engine_upgrade_canary_max_bake_seconds=40)
    finally:
        lg.stop(timeout=10)
    assert run.rc == 2, run.stdout[-4000:]
    report = rollout.report()
    assert report["outcome"] == "undecided", report["outcome"]
    (entry,) = report["engines"]
    assert entry["engine"] == canary and entry["status"] == "rolled_back" and entry["evidence"] == "undecided"
    # The reason says which evidence was missing.
    assert "undecided" in entry["reason"] and "turns" in entry["reason"], entry["reason"]
    assert entry["verdict"]["missing"], entry["verdict"]
    after = rollout.state()
    assert after[canary].version == BASELINE
    for eid in before:
        if eid != canary:
            assert after[eid] == before[eid]
    end = hook.texts("end")[0]
    assert end.startswith("ABORTED (undecided)") and canary in end


# ---------------------------------------------------------------------- no load at all: the three policies


@pytest.mark.parametrize("policy", ["rollback", "hold", "proceed"])
def test_no_load_follows_the_chosen_policy(eight: Rollout, hook: WebhookReceiver, policy: str) -> None:
    rollout = eight
    before = rollout.state()
    run = upgrade(rollout, hook, "2.4.0", f"no load, {policy}", engine_upgrade_undecided=policy,
                  engine_upgrade_canary_max_bake_seconds=20, engine_upgrade_canary_bake_seconds=10)
    report = rollout.report()
    canary = next(e for e in report["engines"] if e["batch"] == 1)
    assert canary["evidence"] == "undecided" and canary["policy"] == policy, canary
    start = hook.texts("start")[0]
    assert f"if the canary stays undecided: {policy}" in start
    after = rollout.state()
    if policy == "rollback":
        assert run.rc == 2 and report["outcome"] == "undecided"
        assert canary["status"] == "rolled_back" and after[canary["engine"]].version == BASELINE
        assert hook.texts("end")[0].startswith("ABORTED (undecided)")
    elif policy == "hold":
        assert run.rc == 2 and report["outcome"] == "held"
        assert canary["status"] == "held" and after[canary["engine"]].version == "2.4.0"
        assert canary["rollback"] is None
        assert hook.texts("end")[0].startswith("HELD") and "policy hold" in hook.texts("end")[0]
    else:
        assert run.rc == 0 and report["outcome"] == "completed"
        assert all(e.version == "2.4.0" for e in after.values())
        assert canary["engine"] in report["promoted_undecided"]
        assert "promoted without evidence" in hook.texts("end")[0]
    if policy != "proceed":
        for eid in before:
            if eid != canary["engine"]:
                assert after[eid] == before[eid]


@pytest.mark.parametrize(("target", "passes"), [("2.4.0", True), ("2.4.2", False)])
def test_probes_judge_an_idle_fleet(eight: Rollout, hook: WebhookReceiver, target: str, passes: bool) -> None:
    rollout = eight
    run = upgrade(rollout, hook, target, f"probes, {target}", engine_upgrade_probe_turns=24,
                  engine_upgrade_canary_bake_seconds=5, engine_upgrade_canary_max_bake_seconds=10,
                  engine_upgrade_undecided_later="rollback", engine_rollout_stages="1,100%")
    report = rollout.report()
    canary = next(e for e in report["engines"] if e["batch"] == 1)
    if passes:
        assert run.rc == 0, run.stdout[-4000:]
        assert canary["evidence"] == "pass" and report["outcome"] == "completed", canary
        assert all(e["evidence"] == "pass" for e in report["engines"]), [e["evidence"] for e in report["engines"]]
    else:
        assert run.rc == 2, run.stdout[-4000:]
        assert canary["evidence"] == "fail" and canary["status"] == "rolled_back", canary
        assert report["outcome"] == "stopped_rolled_back"
    # Every probe is a real turn in the Engine's brain: the README says what it costs.
    assert canary["evals"]["before"]["total"] == 24
