# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""End to end: the post-upgrade checks of playbooks/upgrade.yml on real Engines under real load (issue 5).

Each test brings up 4 reference Engines (``u001 c001 u002 c002``: per-user containers and Compose projects; ``u001``
in the group ``engine_canary``, so the default stages make the batches ``[u001] [x] [y z]``, the rest in the plan's
hash order), keeps the load generator running so that every Engine has a baseline of real turns before its switch,
and runs the real ``ansible-playbook`` with a local Slack-compatible webhook receiver. The canary is judged against
its own baseline and against the control Engines (not upgraded yet) over the same window. What happened is read
from Docker, the Engines, the brains, the run report, the diagnostics bundle and the webhook's messages; every
artifact is searched for the Engine key and the webhook URL.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine_testkit import brain
from engine_testkit.webhook import WebhookReceiver

pytestmark = pytest.mark.timeout(900)

Rollout = Any
BASELINE = "2.3.0"
FLEET = 4
EVALS = Path(__file__).resolve().parents[3] / "roles" / "engine_upgrade" / "files" / "evals" / "reference.yml"
#: The checks with test-sized windows: a bake long enough for min_turns turns at the load's rate (no extra rounds).
CHECK_VARS: dict[str, Any] = {
    "engine_upgrade_canary_bake_seconds": 15,
    "engine_upgrade_canary_max_bake_seconds": 30,
    "engine_upgrade_bake_seconds": 8,
    "engine_upgrade_bake_interval": 2,
    "engine_upgrade_metrics_min_turns": 10,
    "engine_upgrade_baseline_seconds": 120,
}
#: Load: turns per second per Engine, and the seconds of baseline before the playbook starts.
RATE = 2.0
BASELINE_SECONDS = 10
#: The turns of that baseline, waited for on every Engine.
BASELINE_TURNS = int(RATE * BASELINE_SECONDS)


@pytest.fixture
def small(fleets: Any, tmp_path: Path) -> Iterator[Rollout]:
    """A Rollout of 4 Engines on 2.3.0, the first (u001) the canary (torn down after the test)."""
    with fleets.open(tmp_path, count=FLEET) as rollout:
        rollout.write_inventory(canaries=[rollout.engines[0].engine_id])
        yield rollout


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def run_upgrade(rollout: Rollout, hook: WebhookReceiver, target: str, label: str, **extra: Any) -> Any:
    return rollout.run("upgrade.yml", label=label, engine_target_version=target, engine_webhook_url=hook.url,
                       **{**CHECK_VARS, **extra})


def api_key(rollout: Rollout) -> str:
    return rollout.engines[0].api_key


def assert_no_secret(rollout: Rollout, hook: WebhookReceiver) -> None:
    """Neither the Engine key nor the webhook URL's token is in any output, report, bundle, manifest or message."""
    secrets = {"engine key": api_key(rollout), "webhook token": hook.token}
    assert len(secrets["engine key"]) >= 16
    artifacts = [p for p in rollout.tmp.rglob("*") if p.is_file() and p.name != "inventory.yml"]
    artifacts = [p for p in artifacts if "compose" not in p.relative_to(rollout.tmp).parts]
    assert any(p.name == "upgrade.json" for p in artifacts) and any(p.suffix == ".out" for p in artifacts)
    texts = {str(p): p.read_bytes().decode("utf-8", "replace") for p in artifacts}
    texts["webhook"] = json.dumps([r["raw"] for r in hook.requests])
    for name, secret in secrets.items():
        leaks = [where for where, text in texts.items() if secret in text]
        assert not leaks, f"the {name} leaked into {leaks}"


@contextlib.contextmanager
def steady_load(rollout: Rollout) -> Iterator[Any]:
    """The load generator for the block, with BASELINE_TURNS acknowledged turns behind it on every Engine (about
    BASELINE_SECONDS of load: the Engines' baseline); stopped after the block."""
    with rollout.load(rate=RATE) as lg:
        lg.wait_acked(BASELINE_TURNS)
        yield lg


# ---------------------------------------------------------------------- 2.4.2: healthy, but failing and slow


def assert_only_the_canary_rolled_back(rollout: Rollout, canary: str, others: list[str], before: dict[str, Any],
                                       lg: Any) -> None:
    """The canary is back on 2.3.0 with its pre-upgrade brain; nobody else was touched; nothing acknowledged is lost
    anywhere."""
    after = rollout.state()
    assert (after[canary].image, after[canary].version) == (f"engine:{BASELINE}", BASELINE)
    for eid in others:
        assert after[eid] == before[eid]
    assert brain.applied_migrations(rollout.engine(canary).brain_path())[-1] == "0005"
    for engine in rollout.engines:
        if engine.engine_id != canary:
            rollout.assert_writes_kept(engine, lg)
    # Nothing acknowledged is lost on the canary: before the snapshot in the restored brain, the rest in the kept one.
    (snap,) = rollout.pre_upgrade_snapshots(canary, BASELINE, "2.4.2")
    (kept_manifest,) = rollout.pre_restore_snapshots(canary)
    rollout.assert_writes_kept_restored(rollout.engine(canary), snap, kept_manifest, lg)


def assert_decided_by_the_measures(entry: dict[str, Any]) -> list[str]:
    """The measures decided it, against the controls and the canary's own baseline: the reason says which rules
    fired and by how much (2.4.2's failing tool: a new ERROR kind, the error rate; its latency), each with the
    figures of both cohorts. Returns the rules the reason names."""
    reason = entry["reason"]
    assert reason.startswith("verify: the batch: "), reason
    fired = [rule for rule in ("new ERROR kind", "error rate", "p99 latency", "p50 latency") if rule in reason]
    assert fired and "in 1 canary" in reason, reason
    verdict = entry["verdict"]
    assert verdict["decision"] == "fail", verdict
    assert verdict["rule"] in ("new_error_kind", "error_rate", "latency_p99", "latency_p50"), verdict
    assert "TOOL_EXECUTION_FAILED" in verdict["symptom"] or "error rate" in verdict["symptom"], verdict["symptom"]
    assert verdict["evidence"]["canary"]["turns"] >= CHECK_VARS["engine_upgrade_metrics_min_turns"]
    assert verdict["evidence"]["control"]["engines"] == FLEET - 1 and verdict["evidence"]["control"]["error_rate"] == 0
    measures = entry["measures"]
    assert measures["before"]["turns"] >= CHECK_VARS["engine_upgrade_metrics_min_turns"]
    assert measures["before"]["error_rate"] == 0.0
    assert measures["after"]["error_rate"] > 0.1
    assert measures["after"]["latency_p99_ms"] > 2 * measures["before"]["latency_p99_ms"]
    assert measures["verdict"]["decision"] == "fail" and measures["verdict"]["enough_turns"] is True
    return fired


def assert_rolled_back_with_its_brain(entry: dict[str, Any], markdown: str) -> None:
    """Timings, rollback kind and the bad window's data at risk (2.4.2 ran migration 0006: the brain was restored)."""
    timings = entry["timings"]
    assert timings["drain_seconds"] is not None and timings["switch_seconds"] >= timings["drain_seconds"]
    assert timings["healthy_seconds"] > 0
    assert timings["bake_seconds"] >= CHECK_VARS["engine_upgrade_canary_bake_seconds"]
    assert entry["rollback_kind"] == "image+brain" and entry["rollback"]["brain_restored"] is True
    assert entry["data_at_risk"]["tasks"] > 0, entry["data_at_risk"]
    assert entry["snapshot"]["sha256"] and len(entry["snapshot"]["sha256"]) == 64
    assert "stopped_rolled_back" in markdown and "error rate" in markdown and "Data at risk" in markdown


def assert_bad_window_replayed(entry: dict[str, Any], markdown: str) -> None:
    """The replay's report: memory_tags (not in 2.3.0's schema) not replayable, kept in the kept brain."""
    assert entry["replay"].startswith("bad window replayed"), entry["replay"]
    assert "tasks " in entry["replay"] and "kept in " in entry["replay"], entry["replay"]
    replay = entry["rollback"]["replay"]
    assert replay["mode"] == "replay" and replay["totals"]["replayed"]["inserted"] > 0, replay["totals"]
    assert "Replay of the bad window: bad window replayed" in markdown


def assert_diagnostics_bundle(bundle: Path, entry: dict[str, Any]) -> None:
    """The bad window's logs (2.4.2's failures), the measures, the kept brain; the post-rollback drafts (a
    postmortem and a proposed regression eval); all of it private."""
    diag = json.loads((bundle / "diagnostics.json").read_text())
    assert diag["verdict_full"]["decision"] == "fail" and diag["measures_after"]["measures"]["error_rate"] > 0.1
    kept = Path(diag["bad_window_brain"]["path"])
    assert kept.is_file() and "0006" in brain.applied_migrations(kept)
    assert diag["bad_window_brain"]["data_at_risk"] == entry["data_at_risk"]
    log_lines = [json.loads(line) for line in (bundle / "engine.log").read_text().splitlines() if line.startswith("{")]
    assert any(line.get("extra", {}).get("version") == "2.4.2" for line in log_lines)
    assert any(line["level"] == "ERROR" for line in log_lines)
    # The post-rollback drafts: a postmortem (timeline, symptoms, decision) and a proposed regression eval.
    assert "TOOL_EXECUTION_FAILED" in (bundle / "postmortem.md").read_text()
    assert (bundle / "regression-eval.proposed.yml").read_text().startswith("# PROPOSED regression eval")
    for path in (bundle, bundle / "diagnostics.json", bundle / "engine.log", bundle / "postmortem.md",
                 bundle / "regression-eval.proposed.yml"):
        assert path.stat().st_mode & 0o077 == 0, path


def assert_webhook_told_the_rollback(hook: WebhookReceiver, canary: str, fired: list[str]) -> None:
    """The webhook: start, the rollback with its symptom, the end (aborted)."""
    assert [m["event"] for m in hook.messages] == ["start", "rollback", "end"]
    start, rollback, end = hook.texts()
    assert start.startswith("Upgrade to 2.4.2 started") and canary in start
    assert rollback.startswith(f"Rolling back {canary} to {BASELINE} due to verify: the batch: "), rollback
    assert fired[0] in rollback
    assert end.startswith("ABORTED: the upgrade to 2.4.2 stopped in batch 1") and "rolled back" in end
    assert "bad window replayed" in end, end


def test_242_canary_is_rolled_back_by_its_measures(small: Rollout, hook: WebhookReceiver) -> None:
    rollout = small
    canary, *others = [e.engine_id for e in rollout.engines]
    before = rollout.state()
    with steady_load(rollout) as lg:
        run = run_upgrade(rollout, hook, "2.4.2", "to 2.4.2")
    assert run.rc == 2, run.stdout[-4000:]  # a failed host: the rollout stopped
    assert_only_the_canary_rolled_back(rollout, canary, others, before, lg)

    report = rollout.report()
    assert report["outcome"] == "stopped_rolled_back" and report["stopped"] is True
    assert sorted(report["untouched"]) == sorted(others)
    (entry,) = report["engines"]
    assert entry["engine"] == canary and entry["status"] == "rolled_back" and entry["decision"] == "rollback"
    assert entry["evidence"] == "fail" and entry["policy"] is None
    fired = assert_decided_by_the_measures(entry)
    markdown = (rollout.report_dir / report["run_id"] / "upgrade.md").read_text()
    assert_rolled_back_with_its_brain(entry, markdown)
    # What 2.4.2 wrote in its bad window was replayed onto the restored brain before 2.3.0 started
    # (engine_upgrade_replay=auto: 0006 only added to the schema): every turn and every feedback the canary
    # acknowledged, before or during the bad window, is in the brain it runs on now.
    rollout.assert_writes_kept(rollout.engine(canary), lg)
    assert_bad_window_replayed(entry, markdown)

    # The diagnostics bundle, in the run's report folder.
    bundle = Path(entry["diagnostics"])
    assert bundle == rollout.report_dir / report["run_id"] / "diagnostics" / canary
    assert_diagnostics_bundle(bundle, entry)
    assert_webhook_told_the_rollback(hook, canary, fired)
    assert_no_secret(rollout, hook)


# ---------------------------------------------------------------------- 2.4.0: the same checks pass


def test_240_passes_the_same_checks_under_the_same_load(small: Rollout, hook: WebhookReceiver) -> None:
    rollout = small
    with steady_load(rollout) as lg:
        run = run_upgrade(rollout, hook, "2.4.0", "to 2.4.0", engine_upgrade_evals_file=str(EVALS))
    assert run.rc == 0, run.stdout[-4000:]
    for engine in rollout.engines:
        assert engine.image_version() == "2.4.0"
        rollout.assert_writes_kept(engine, lg)
    report = rollout.report()
    assert report["outcome"] == "completed" and report["untouched"] == []
    assert report["promoted_undecided"] == []
    for entry in report["engines"]:
        assert (entry["status"], entry["decision"], entry["rollback_kind"]) == ("upgraded", "keep", "none"), entry
        # Every batch passed on evidence (bakes long enough at this load), none was promoted undecided.
        assert entry["evidence"] == "pass", (entry["engine"], entry["verdict"])
        assert entry["verdict"]["decision"] == "pass", (entry["engine"], entry["verdict"])
        verdict = entry["measures"]["verdict"]
        assert verdict["decision"] == "pass", (entry["engine"], verdict)
        assert entry["measures"]["after"]["turns"] > 0
        assert entry["evals"]["before"]["passed"] == entry["evals"]["before"]["total"] > 0
        assert entry["evals"]["after"]["passed"] == entry["evals"]["after"]["total"]
        assert entry["evals"]["verdict"]["decision"] == "ok"
        assert entry["diagnostics"] is None
    # The canary baked long enough for its measures to decide (not a pass by "not enough turns").
    canary = next(e for e in report["engines"] if e["batch"] == 1)
    assert canary["engine"] == rollout.engines[0].engine_id
    assert canary["measures"]["verdict"]["enough_turns"] is True
    assert canary["verdict"]["evidence"]["control"]["turns"] >= CHECK_VARS["engine_upgrade_metrics_min_turns"]
    assert not (rollout.report_dir / report["run_id"] / "diagnostics").exists()
    assert [m["event"] for m in hook.messages] == ["start", "end"]
    assert hook.texts("end")[0].startswith(f"All clear: the upgrade to 2.4.0 is done on {FLEET} Engines")
    assert_no_secret(rollout, hook)


# ---------------------------------------------------------------------- evals: a regression the measures skip


def test_eval_regression_rolls_the_canary_back(small: Rollout, hook: WebhookReceiver) -> None:
    rollout = small
    canary, *others = [e.engine_id for e in rollout.engines]
    before = rollout.state()
    # Bad input first: an eval set that is not there is refused before anything is touched.
    missing = run_upgrade(rollout, hook, "2.4.2", "missing evals", engine_upgrade_evals_file="/nonexistent/evals.yml")
    assert missing.rc != 0, missing.stdout[-3000:]
    assert "engine_upgrade_evals_file='/nonexistent/evals.yml': not a file on the controller" in missing.stdout
    assert "nothing was changed" in missing.stdout
    assert rollout.state() == before and rollout.snapshot_files() == []
    assert hook.messages == []

    # Measures off: only the evals (run before the switch, then after it) can catch 2.4.2's wrong answers.
    run = run_upgrade(rollout, hook, "2.4.2", "evals", engine_upgrade_checks=False,
                      engine_upgrade_evals_file=str(EVALS), engine_upgrade_canary_bake_seconds=0)
    assert run.rc == 2, run.stdout[-4000:]
    after = rollout.state()
    assert after[canary].version == BASELINE
    for eid in others:
        assert after[eid] == before[eid]
    (entry,) = rollout.report()["engines"]
    assert entry["status"] == "rolled_back" and entry["reason"].startswith("verify: evals: "), entry["reason"]
    assert entry["measures"]["before"] is None  # the measures were off
    evals = entry["evals"]
    assert evals["before"]["passed"] == evals["before"]["total"]
    assert evals["after"]["passed"] < evals["before"]["passed"]
    assert evals["verdict"]["decision"] == "rollback"
    regressed = {r["name"] for r in evals["verdict"]["regressions"]}
    assert regressed, evals["verdict"]
    assert any(r["answer"] not in (None, r["baseline_answer"]) for r in evals["verdict"]["regressions"])
    assert f"Rolling back {canary} to {BASELINE} due to verify: evals: " in hook.texts("rollback")[0]

    # rollback.yml on an Engine that was never upgraded: refused with what to do, recorded in its report, untouched.
    untouched = others[1]
    refused = rollout.run("rollback.yml", label="nothing to roll back to", limit=[untouched])
    assert refused.rc == 2
    assert "no previous release is recorded for this engine" in refused.stdout.lower()
    assert rollout.state()[untouched] == before[untouched]
    (path,) = rollout.report_dir.glob("*/rollback.json")
    report = json.loads(path.read_text())
    assert report["engines"] == [] and [f["engine"] for f in report["failed"]] == [untouched]
    assert "engine_rollback_version=<tag>" in report["failed"][0]["reason"]
    assert_no_secret(rollout, hook)


# ---------------------------------------------------------------------- a provider outage is not the release


class OutageAfterSwitch:
    """Switches the LLM-provider outage on for every Engine as soon as ``engine`` runs ``image``."""

    def __init__(self, rollout: Rollout, engine_id: str, image: str):
        self.rollout, self.engine_id, self.image = rollout, engine_id, image
        self.fired = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="outage", daemon=True)

    def _watch(self) -> None:
        engine = self.rollout.engine(self.engine_id)
        while not self.stop.is_set():
            try:
                container = engine.container()
                if container.attrs["Config"]["Image"] == self.image and container.status == "running":
                    break
            except Exception:  # between two containers during the switch
                pass
            time.sleep(0.2)
        else:
            return
        for other in self.rollout.engines:
            other.set_llm_outage(True)
        self.fired.set()

    def __enter__(self) -> OutageAfterSwitch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def test_provider_outage_stops_the_rollout_without_blaming_the_release(small: Rollout, hook: WebhookReceiver) -> None:
    rollout = small
    canary, *others = [e.engine_id for e in rollout.engines]
    before = rollout.state()
    with steady_load(rollout) as lg:
        with OutageAfterSwitch(rollout, canary, "engine:2.4.0") as outage:
            run = run_upgrade(rollout, hook, "2.4.0", "outage", engine_upgrade_health_timeout=15)
        assert outage.fired.is_set(), "the canary never ran 2.4.0"
        after = rollout.state()
        for engine in rollout.engines:
            engine.set_llm_outage(False)  # the provider is back
    assert run.rc == 2, run.stdout[-4000:]
    # The canary was NOT rolled back (2.4.0 is not to blame), the rollout stopped, the others were not touched.
    assert after[canary].image == "engine:2.4.0"
    for eid in others:
        assert after[eid] == before[eid]
    report = rollout.report()
    assert report["outcome"] == "stopped_outage" and report["stopped"] is True
    (entry,) = report["engines"]
    assert entry["engine"] == canary
    assert entry["status"] == "stopped_outage" and entry["decision"] == "stop_outage" and entry["evidence"] == "outage"
    assert entry["rollback"] is None and entry["rollback_kind"] == "none"
    assert "LLM provider outage" in entry["reason"] and "not rolled back" in entry["reason"], entry["reason"]
    # The report says why in one line (the Engine's reason); the Engine's record has the outage's evidence.
    assert report["outage"] == entry["reason"]
    outage = entry["outage"]
    assert outage["kind"] == "provider_outage" and "health" in outage["evidence"], outage
    assert outage["counts"]["control_provider"] >= outage["counts"]["control_needed"] >= 1, outage["counts"]
    assert sorted(c["name"] for c in outage["controls"]) == sorted(others)
    assert [m["event"] for m in hook.messages] == ["start", "end"]  # no "Rolling back"
    end = hook.texts("end")[0]
    assert end.startswith("ABORTED") and "LLM provider outage" in end and "Nothing was rolled back" in end
    assert "Rolling back" not in run.stdout

    # With the provider back, a re-run verifies the canary it left on 2.4.0 and finishes the rollout.
    with rollout.load(rate=RATE) as lg2:
        again = run_upgrade(rollout, hook, "2.4.0", "after the outage", engine_upgrade_canary_bake_seconds=4,
                            engine_upgrade_bake_seconds=0)
    assert again.rc == 0, again.stdout[-4000:]
    for engine in rollout.engines:
        assert engine.image_version() == "2.4.0"
        rollout.assert_writes_kept(engine, lg)
        rollout.assert_writes_kept(engine, lg2)
    assert rollout.containers_named(f"{rollout.engine(canary).container_name}--previous") == []
    assert rollout.report()["outcome"] == "completed"
    assert_no_secret(rollout, hook)
