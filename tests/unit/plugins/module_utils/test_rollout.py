# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The upgrade role's decisions: keep, roll back, hold, outage; the bake's rounds; the run's outcome."""

from __future__ import annotations

import pytest

from ansible_collections.september.engine.plugins.module_utils._rollout import (
    bake_done,
    bake_round_evidence,
    bake_rounds,
    baseline_of,
    engine_decision,
    pre_upgrade_snapshot,
    pre_upgrade_snapshot_options,
    rollout_outcome,
)

HEALTHY = {"health": {"is_healthy": True, "failure": "none"}}
SICK = {"health": {"is_healthy": False, "failure": "unhealthy", "failure_detail": "HTTP 503, database error"}}


def verdict(decision: str, engines: dict | None = None, **extra) -> dict:
    return {"decision": decision, "engines": engines or {}, "missing": extra.pop("missing", []), **extra}


def test_unhealthy_is_rolled_back_whatever_the_verdict() -> None:
    out = engine_decision("u1", SICK, verdict("pass"))
    assert out["decision"] == "rollback" and out["evidence"] == "health" and out["must_fail"]
    assert "HTTP 503" in out["reason"]


def test_checks_off_keeps_a_healthy_engine() -> None:
    assert engine_decision("u1", HEALTHY, None) == {
        "decision": "keep", "evidence": "off", "reason": "", "must_fail": False, "policy": None}


EVALS_OK = {"total": 4, "passed": 4, "verdict": {"decision": "ok", "symptom": None, "reasons": ["all 4 still pass"]}}
EVALS_BAD = {"total": 4, "passed": 2, "verdict": {
    "decision": "rollback", "symptom": "2 eval case(s) that passed before now fail (more than max_regressions=0)",
    "reasons": []}}


def test_checks_off_an_eval_regression_still_rolls_back() -> None:
    # The checks off (no cohort verdict) but an eval set given: a case that passed before and fails now decides.
    out = engine_decision("u1", HEALTHY, None, evals=EVALS_BAD)
    assert (out["decision"], out["evidence"], out["must_fail"]) == ("rollback", "fail", True)
    assert out["reason"].startswith("verify: evals: 2 eval case(s) that passed before now fail")
    assert engine_decision("u1", HEALTHY, None, evals=EVALS_BAD["verdict"])["decision"] == "rollback"
    assert engine_decision("u1", HEALTHY, None, evals=EVALS_OK)["decision"] == "keep"
    # Health first; and with the checks on the cohort verdict (which weighs the evals) decides.
    assert engine_decision("u1", SICK, None, evals=EVALS_BAD)["evidence"] == "health"
    assert engine_decision("u1", HEALTHY, verdict("pass"), evals=EVALS_BAD)["decision"] == "keep"


def test_a_pass_of_the_cohort_keeps_an_idle_canary() -> None:
    out = engine_decision("u1", HEALTHY, verdict("pass", {"u1": {"decision": "undecided"}}))
    assert out["decision"] == "keep" and out["evidence"] == "pass"


@pytest.mark.parametrize("scope", ["cohort", "engine"])
def test_a_failed_verdict_rolls_back_with_its_symptom(scope: str) -> None:
    if scope == "cohort":
        v = verdict("fail", symptom="error rate 31% vs 0.5%")
    else:
        v = verdict("pass", {"u1": {"decision": "fail", "symptom": "p99 latency 4x"}})
        v["decision"] = "undecided"
    out = engine_decision("u1", HEALTHY, v)
    assert out["decision"] == "rollback" and out["evidence"] == "fail"
    assert ("31%" if scope == "cohort" else "p99") in out["reason"]


def test_an_outage_seen_in_both_cohorts_is_not_rolled_back() -> None:
    out = engine_decision("u1", HEALTHY, verdict("undecided", outage=True, symptom="LLM_PROVIDER_ERROR everywhere"))
    assert out["decision"] == "stop_outage" and out["must_fail"]


def test_a_bad_release_during_an_outage_is_still_rolled_back() -> None:
    out = engine_decision("u1", HEALTHY, verdict("fail", outage=True, symptom="p99 latency 4x"))
    assert out["decision"] == "rollback" and out["evidence"] == "fail"


@pytest.mark.parametrize(
    ("policy", "decision", "must_fail"),
    [("rollback", "rollback", True), ("hold", "hold", True), ("proceed", "keep", False)],
)
def test_undecided_follows_the_policy_and_says_what_was_missing(policy, decision, must_fail) -> None:
    v = verdict("undecided", missing=["the canary cohort saw 3 turns since the switch (20 needed)"])
    out = engine_decision("u1", HEALTHY, v, policy)
    expected = (decision, must_fail, "undecided", policy)
    assert (out["decision"], out["must_fail"], out["evidence"], out["policy"]) == expected
    assert "3 turns" in out["reason"] and f"policy {policy}" in out["reason"]


def test_undecided_is_never_a_silent_pass() -> None:
    out = engine_decision("u1", HEALTHY, verdict("undecided"))
    assert out["decision"] == "rollback" and "no evidence" in out["reason"]


def test_an_unknown_policy_is_an_error() -> None:
    with pytest.raises(ValueError, match="rollback, hold, proceed"):
        engine_decision("u1", HEALTHY, verdict("undecided"), "maybe")


def test_bake_stops_when_decided_when_someone_is_sick_or_at_the_end() -> None:
    healthy = [{"engine": "u1", **HEALTHY}, {"engine": "u2", **HEALTHY}]
    assert not bake_done(verdict("undecided"), healthy, 1, 10)["done"]
    assert bake_done(verdict("pass"), healthy, 1, 10)["why"] == "verdict pass"
    assert bake_done(verdict("undecided", outage=True), healthy, 1, 10)["done"]
    sick = bake_done(verdict("undecided"), [{"engine": "u1", **HEALTHY}, {"engine": "u2", **SICK}], 2, 10)
    assert sick["done"] and "u2" in sick["why"]
    assert bake_done(verdict("undecided"), healthy, 10, 10)["why"] == "the longest bake is over"
    # No verdict (the checks are off): nothing to bake on for, health decided the round.
    off = bake_done(None, healthy, 1, 10)
    assert off["done"] and off["why"] == "no verdict to wait for (health only)"


@pytest.mark.parametrize(
    ("first", "longest", "expected"),
    [(60, 600, (60, 10)), (60, 60, (60, 1)), (60, 0, (60, 1)), (0, 0, (30, 1)), (0, 90, (30, 4)), (45, 100, (45, 3))],
)
def test_bake_rounds(first: int, longest: int, expected: tuple) -> None:
    rounds = bake_rounds(first, longest)
    assert (rounds["step"], rounds["rounds"]) == expected
    assert rounds["first"] + (rounds["rounds"] - 1) * rounds["step"] >= rounds["max_seconds"]


def result(engine: str, status: str, batch: int = 1, evidence: str = "pass") -> dict:
    return {"engine": engine, "status": status, "batch": batch, "evidence": evidence}


def test_outcome_in_progress_then_completed() -> None:
    assert rollout_outcome([result("a", "upgraded")], ["a"], 1, 3)["outcome"] == "in_progress"
    done = rollout_outcome([result("a", "upgraded"), result("b", "verified", 2)], ["b"], 2, 2)
    assert done == {"outcome": "completed", "stopped": False, "lost": [], "failed": [], "undecided": []}


def test_an_engine_lost_mid_upgrade_is_never_all_clear() -> None:
    out = rollout_outcome([result("a", "upgraded", 2)], ["a", "b"], 2, 2)
    assert out["outcome"] == "stopped_unreachable" and out["lost"] == ["b"] and out["stopped"]


def test_an_engine_recorded_lost_counts_as_lost_not_failed() -> None:
    # A batch of one whose Docker host was lost mid-switch: the rescue recorded it (status lost).
    out = rollout_outcome([result("b", "lost", evidence="unreachable")], ["b"], 1, 4)
    assert out == {"outcome": "stopped_unreachable", "stopped": True, "lost": ["b"], "failed": [], "undecided": []}
    both = rollout_outcome([result("a", "upgraded"), result("b", "lost", evidence="unreachable")], ["a", "b"], 1, 1)
    assert both["outcome"] == "stopped_unreachable" and both["lost"] == ["b"]


def test_outcomes_of_failed_batches() -> None:
    assert rollout_outcome([result("a", "rolled_back", evidence="fail")], ["a"], 1, 4)["outcome"] == \
        "stopped_rolled_back"
    assert rollout_outcome([result("a", "rolled_back", evidence="undecided")], ["a"], 1, 4)["outcome"] == "undecided"
    assert rollout_outcome([result("a", "held", evidence="undecided")], ["a"], 1, 4)["outcome"] == "held"
    assert rollout_outcome([result("a", "stopped_outage", evidence="outage")], ["a"], 1, 4)["outcome"] == \
        "stopped_outage"
    assert rollout_outcome([result("a", "failed", evidence="health")], ["a"], 1, 4)["outcome"] == "stopped_failed"
    mixed = rollout_outcome([result("a", "rolled_back", evidence="undecided"), result("b", "rollback_failed",
                                                                                      evidence="fail")],
                            ["a", "b"], 1, 4)
    assert mixed["outcome"] == "stopped_rolled_back" and mixed["undecided"] == ["a"]


def test_results_of_other_batches_do_not_count_for_this_one() -> None:
    out = rollout_outcome([result("a", "rolled_back", 1), result("b", "upgraded", 2)], ["b"], 2, 3)
    assert out["outcome"] == "in_progress"


def test_probe_set_cycles_the_cases_with_unique_names() -> None:
    from ansible_collections.september.engine.plugins.module_utils._rollout import probe_set

    cases = [{"name": "a", "message": "what is 1 + 1", "checks": [{"equals": "2"}]}, {"name": "b", "message": "x"}]
    probes = probe_set(cases, 5)
    assert [p["name"] for p in probes] == ["a-1", "b-2", "a-3", "b-4", "a-5"]
    assert probes[2]["checks"] == [{"equals": "2"}]
    assert probe_set(cases, 0) == []
    with pytest.raises(ValueError, match="non-empty list"):
        probe_set([], 3)


# ---------------------------------------------------------------- the batch's evidence

from ansible_collections.september.engine.plugins.module_utils._rollout import (  # noqa: E402
    cohort_evidence,
    cohort_health,
    cohort_start,
    control_evidence,
    preflight_summary,
    switch_record,
    verdict_summary,
)

MEASURES = {"turns": 30, "error_rate": 0.0}


def host(name: str, switched_at: float | None = 100.0, healthy: bool = True, slices: int = 3, evals: bool = False):
    h = {"inventory_hostname": name,
         "__engine_upgrade_metrics_before": {"metrics": {"measures": {"turns": 40}}},
         "__engine_upgrade_health": {"health": {"is_healthy": healthy}},
         "__engine_upgrade_metrics_after": {"metrics": {"measures": MEASURES,
                                                        "slices": [{"turns": i} for i in range(slices)]}}}
    if switched_at is not None:
        h["__engine_upgrade_switch"] = {"switched_at": switched_at, "container": name}
    if evals:
        h["__engine_upgrade_eval_before"] = {"eval": {"passed": 3}}
        h["__engine_upgrade_eval_after"] = {"eval": {"passed": 2}}
    return h


def test_cohort_takes_only_switched_healthy_engines() -> None:
    hosts = [host("a"), host("b", healthy=False), host("c", switched_at=None), host("d", evals=True)]
    evidence = cohort_evidence(hosts)
    assert [e["name"] for e in evidence] == ["a", "d"]
    assert evidence[0]["baseline"] == {"measures": {"turns": 40}}
    assert evidence[0]["window"]["measures"] == MEASURES and len(evidence[0]["window"]["slices"]) == 3
    assert "evals" not in evidence[0]
    assert evidence[1]["evals"] == {"before": {"passed": 3}, "after": {"passed": 2}}
    assert [h["engine"] for h in cohort_health(hosts)] == ["a", "b", "d"]


def test_a_skipped_result_is_no_evidence_and_no_baseline_is_left_out() -> None:
    lone = host("a")
    del lone["__engine_upgrade_metrics_before"]
    skipped = host("b")
    skipped["__engine_upgrade_metrics_after"] = {"skipped": True}
    (only,) = cohort_evidence([lone, skipped])
    assert only["name"] == "a" and "baseline" not in only


def test_a_taken_over_switch_probed_after_it_only_gives_turns() -> None:
    # No eval before the switch (a dead run's switch taken over): the probes' turns are in its window; its evals are
    # not evidence (nothing to compare with), so they do not leave the cohort undecided.
    taken_over = host("a")
    taken_over["__engine_upgrade_eval_before"] = {"skipped": True}
    taken_over["__engine_upgrade_eval_after"] = {"eval": {"passed": 6}}
    (only,) = cohort_evidence([taken_over])
    assert "evals" not in only and only["window"]["measures"] == MEASURES


def test_cohort_start_is_the_first_switch() -> None:
    assert cohort_start([host("a", 130.0), host("b", 100.5), host("c", None)]) == 100.5
    assert cohort_start([host("c", None)]) is None


def test_cohort_start_of_a_switch_taken_over_is_when_this_run_measures_it() -> None:
    # A re-run after an outage (or a dead run) measures the Engine afresh: the controls over the same fresh window,
    # not since the old switch (whose window holds the outage that stopped the first run).
    taken = host("a", 100.0)
    taken["__engine_upgrade_switch"] = dict(taken["__engine_upgrade_switch"], measured_from=900.0, taken_over=True)
    assert cohort_start([taken]) == 900.0
    assert cohort_start([taken, host("b", 950.0)]) == 900.0


def test_control_evidence_skips_failed_or_empty_controls() -> None:
    results = {"results": [
        {"__engine_control": "u7", "metrics": {"measures": MEASURES}},
        {"__engine_control": "u8", "failed": True, "msg": "unreachable"},
        {"__engine_control": "u9", "skipped": True},
        # A control whose Docker host is unreachable (the task runs with ignore_unreachable): missing evidence.
        {"__engine_control": "u10", "unreachable": True, "skip_reason": "Host u10 is unreachable",
         "msg": "Failed to connect to the host via ssh"},
    ]}
    assert control_evidence(results) == [{"name": "u7", "window": {"measures": MEASURES}}]
    assert control_evidence({"skipped": True}) == []


def test_switch_record_from_either_switch_module() -> None:
    container = {"container": {"name": "u1", "timings": {"drain_seconds": 1.5, "switch_seconds": 3.0}}}
    compose = {"compose": {"container": {"name": "c1-engine-1"}, "timings": {"drain_seconds": 2.0}}}
    assert switch_record(container, "old", 10) == {"switched_at": 10.0, "started_at": 6.0, "container": "u1",
                                                   "drain_seconds": 1.5, "switch_seconds": 3.0}
    assert switch_record(compose, "old", 10)["container"] == "c1-engine-1"
    assert switch_record({"skipped": True}, "old", 10)["container"] == "old"


def test_switch_record_starts_the_logs_before_the_new_release_booted() -> None:
    # The new container logs its version and migrations while the switch runs, before switched_at: the bad window's
    # logs start when the switch began (its drain), a second of margin before.
    record = switch_record({"container": {"name": "u1", "timings": {"switch_seconds": 7.25}}}, "u1", 1000.0)
    assert record["switched_at"] == 1000.0 and record["started_at"] == 991.75
    # Without the switch's timing, a minute before.
    assert switch_record({"compose": {"container": {"name": "c1"}}}, "c1", 1000.0)["started_at"] == 940.0


def test_summaries_say_what_decided() -> None:
    v = {"decision": "fail", "symptom": "error rate 31%", "evidence": {
        "canary": {"engines": 2, "turns": 40, "error_rate": 0.31},
        "control": {"engines": 5, "turns": 90, "error_rate": 0.0}}}
    assert verdict_summary(v) == "fail: 2 upgraded 40 turns 31.0% errors vs 5 controls 90 turns 0.0% errors; " \
                                 "error rate 31%"
    undecided = {"decision": "undecided", "missing": ["3 turns (20 needed)"], "evidence": {}}
    assert verdict_summary(undecided).endswith("missing: 3 turns (20 needed)")
    assert verdict_summary(None) == "no verdict"
    plan = {"action": "upgrade", "from": {"version": "2.3.0"}, "target_version": "2.4.0",
            "target": {"actions": ["pull engine:2.4.0"]},
            "migration": {"bump": "minor", "pending": [{"name": "0006_x"}], "rollback_strategy": "brain_restore"}}
    assert preflight_summary(plan) == ("2.3.0 -> 2.4.0 (minor, pull): snapshot, drain, switch, verify; pending "
                                       "migrations 0006_x; rollback brain_restore")
    assert "nothing to do" in preflight_summary({"action": "none", "image": "engine:2.4.0"})


# ---------------------------------------------------------------- after a failure

from ansible_collections.september.engine.plugins.module_utils._rollout import (  # noqa: E402
    rescue_decision,
    rescue_status,
)


def test_a_decided_verification_keeps_its_decision() -> None:
    decided = {"decision": "hold", "reason": "undecided: ...", "evidence": "undecided", "must_fail": True}
    out = rescue_decision({"msg": "undecided: ..."}, decided, "verify", switched=True)
    assert out == {"decision": "hold", "reason": "undecided: ...", "evidence": "undecided", "outage_check": False}


def test_a_failure_before_the_switch_stops_without_rollback() -> None:
    out = rescue_decision({"msg": "engine:2.4.0 ships destructive migrations"}, None, "pre-flight", switched=False)
    assert out["decision"] == "stop" and out["reason"].startswith("pre-flight: engine:2.4.0")


def test_a_health_failure_after_the_switch_asks_for_the_outage_check() -> None:
    failed = {"health": {"is_healthy": False, "failure_detail": "HTTP 503"}}
    out = rescue_decision(failed, None, "verify", switched=True)
    assert out["decision"] == "rollback" and out["outage_check"] and out["reason"] == "verify: HTTP 503"
    health_decided = {"decision": "rollback", "reason": "verify: health: HTTP 503", "evidence": "health",
                      "must_fail": True}
    assert rescue_decision({}, health_decided, "verify", switched=True)["outage_check"]


def test_rollback_off_stops_and_says_so() -> None:
    out = rescue_decision({"msg": "boom"}, None, "switch", switched=True, rollback=False)
    assert out["decision"] == "stop" and "NOT rolled back" in out["reason"]


def test_a_host_lost_mid_switch_is_recorded_lost_whatever_else_failed() -> None:
    lost = {"unreachable": True, "msg": "Task failed: Failed to connect to the host via ssh: timed out"}
    out = rescue_decision({"msg": "its Docker host became unreachable"}, None, "switch", switched=True, lost=lost)
    assert out["decision"] == "lost" and out["evidence"] == "unreachable" and not out["outage_check"]
    assert out["reason"].startswith("switch: its Docker host was lost mid-switch (Failed to connect to the host via ")
    # A switch result that is not unreachable (skipped, done) changes nothing.
    assert rescue_decision({"msg": "boom"}, None, "switch", switched=True, lost={"changed": True})["decision"] == \
        "rollback"


def test_a_host_lost_after_the_switch_is_lost_even_when_the_verdict_said_roll_back() -> None:
    # The health wait or the bake could not reach the host: no rollback can run there, whatever was decided.
    lost = {"unreachable": True, "msg": "Failed to connect to the host via ssh: Connection timed out during banner"}
    decided = {"decision": "rollback", "must_fail": True, "reason": "error rate", "evidence": "measures"}
    out = rescue_decision({"msg": "lost"}, decided, "verify", switched=True, lost=lost)
    assert out["decision"] == "lost" and not out["outage_check"]
    assert out["reason"].startswith("verify: its Docker host was lost after the switch (Failed to connect"), out


@pytest.mark.parametrize(("decision", "failed", "status"), [
    ("rollback", False, "rolled_back"), ("rollback", True, "rollback_failed"), ("hold", False, "held"),
    ("stop_outage", False, "stopped_outage"), ("stop", False, "failed"), ("lost", False, "lost")])
def test_rescue_status(decision: str, failed: bool, status: str) -> None:
    assert rescue_status(decision, failed) == status


# ---------------------------------------------------------------- the record, the messages

from ansible_collections.september.engine.plugins.module_utils._rollout import (  # noqa: E402
    diagnostics_record,
    engine_end_message,
    rollout_message,
    upgrade_result,
)


def upgraded_host(**extra) -> dict:
    h = host("u1", evals=True)
    h.update({
        "engine_deployment": "container", "__engine_upgrade_batch": "1", "__engine_upgrade_started": 100.0,
        "__engine_upgrade_pre": {"preflight": {
            "action": "upgrade", "from": {"version": "2.3.0"}, "image": "engine:2.4.0",
            "identity": {"key": "volume:engine-data-u1"}, "lock": {"action": "acquire", "taken_over": None},
            "migration": {"bump": "minor", "pending": [{"name": "0006_x"}], "rollback_strategy": "brain_restore",
                          "is_destructive": False, "needs_acknowledgement": False}}},
        "__engine_upgrade_snapshot": {"snapshot": {"name": "pre-upgrade-u1", "sha256": "ab", "path": "/s/x"}},
        "__engine_upgrade_verdict": {"verdict": {"decision": "pass", "rule": None, "engines": {
            "u1": {"decision": "pass", "reasons": [], "enough_turns": True}}}},
        "__engine_upgrade_decision": {"decision": "keep", "evidence": "pass", "reason": "", "policy": None},
        "__engine_upgrade_timings": {"drain_seconds": 1.0},
    })
    h.update(extra)
    return h


def test_the_record_of_an_upgraded_engine() -> None:
    record = upgrade_result(upgraded_host(), "2.4.0", 130.0)
    got = (record["status"], record["step"], record["decision"], record["evidence"])
    assert got == ("upgraded", "done", "keep", "pass")
    assert record["snapshot"] == {"name": "pre-upgrade-u1", "sha256": "ab", "path": "/s/x"}
    assert record["migration"]["pending"] == ["0006_x"] and record["rollback_kind"] == "none"
    assert record["measures"]["before"] == {"turns": 40} and record["measures"]["verdict"]["decision"] == "pass"
    assert record["evals"]["before"] == {"passed": 3} and record["seconds"] == 30.0
    assert record["identity"] == "volume:engine-data-u1" and record["batch"] == 1


def test_the_record_of_a_resumed_engine_keeps_the_dead_runs_lock() -> None:
    # A dead run left the Engine down: the first pre-flight took its lock over, the one after the Engine was brought
    # back only refreshed it. The record says the lock was taken over, and from whom.
    dead = {"owner": "AWX job 7", "run_id": "R7", "acquired_at": "t0", "expired_at": "t1"}
    resumed = upgraded_host(
        __engine_upgrade_pre_resumed={"action": "resume", "lock": {"action": "take_over", "taken_over": dead}})
    assert upgrade_result(resumed, "2.4.0", 130.0)["lock_taken_over"] == dead
    assert upgrade_result(upgraded_host(), "2.4.0", 130.0)["lock_taken_over"] is None


def test_the_record_of_a_rolled_back_engine_and_of_a_check_run() -> None:
    rolled = upgraded_host(
        __engine_upgrade_status="rolled_back",
        __engine_upgrade_rescue={"decision": "rollback", "reason": "verify: the batch: error rate 31%",
                                 "evidence": "fail"},
        engine_rollback_result={"kind": "image+brain", "data_at_risk": {"tasks": 4}, "brain_restored": True,
                                "snapshot": "pre-upgrade-u1", "previous_brain": {"path": "/s/kept", "name": "kept"}})
    record = upgrade_result(rolled, "2.4.0", 130.0)
    assert (record["status"], record["step"], record["rollback_kind"]) == ("rolled_back", "verify", "image+brain")
    assert record["data_at_risk"] == {"tasks": 4} and record["reason"].endswith("31%")
    assert "rolled back to 2.3.0 (brain restored from pre-upgrade-u1)" in engine_end_message(record, "/r.md")
    diag = diagnostics_record(rolled, "2.4.0", 130.0)
    assert diag["bad_window_brain"]["path"] == "/s/kept" and diag["logs"]["count"] == 0
    planned = upgrade_result({"inventory_hostname": "u2", "__engine_upgrade_pre": {"preflight": {"action": "upgrade"}}},
                             "2.4.0", 1.0, check_mode=True)
    assert planned["status"] == "planned"
    assert upgrade_result({"inventory_hostname": "u3"}, "2.4.0", 1.0)["status"] == "failed"


def test_the_end_message_of_an_unwound_engine() -> None:
    # It passed its checks; a later batch failed and the run unwound it: say so (not "failed at ; nothing was
    # switched").
    unwound = upgrade_result(upgraded_host(), "2.4.0", 130.0)
    unwound.update(status="unwound", rollback={
        "to_version": "2.3.0", "brain_restored": True, "snapshot": "pre-upgrade-u1",
        "reason": "unwind: the upgrade to 2.4.0 failed in batch 3"})
    text = engine_end_message(unwound, "/r.md")
    assert text.startswith("u1: upgraded to 2.4.0, then unwound (unwind: the upgrade to 2.4.0 failed in batch 3): "
                           "rolled back to 2.3.0 (brain restored from pre-upgrade-u1)"), text
    assert "nothing was switched" not in text and text.endswith("report: /r.md")


def report(outcome: str, engines: list, **extra) -> dict:
    return {"outcome": outcome, "target_version": "2.4.2", "run_id": "R", "batches_run": 1, "engines": engines,
            "untouched": ["x", "y"], **extra}


def test_rollout_messages() -> None:
    ok = rollout_message(report("completed", [{"engine": "a", "status": "upgraded"}],
                                promoted_undecided=["a"]), "/r.md")
    assert ok.startswith("All clear") and "promoted without evidence" in ok and ok.endswith("Report: /r.md")
    rolled = [{"engine": "a", "status": "rolled_back", "reason": "verify: error rate 31%"}]
    assert rollout_message(report("stopped_rolled_back", rolled), "/r").startswith("ABORTED: the upgrade to 2.4.2")
    assert rollout_message(report("undecided", rolled), "/r").startswith("ABORTED (undecided)")
    held = rollout_message(report("held", [{"engine": "a", "status": "held", "reason": "undecided: 0 turns"}]), "/r")
    assert held.startswith("HELD") and "policy hold" in held and "2 Engines untouched" in held
    lost = rollout_message(report("stopped_unreachable", [], lost=["b"]), "/r")
    assert "b lost mid-upgrade" in lost
    outage = rollout_message(report("stopped_outage", [], outage="LLM provider outage"), "/r")
    assert "Nothing was rolled back" in outage


def test_short_symptom_keeps_the_first_rules_and_bounds_them() -> None:
    from ansible_collections.september.engine.plugins.module_utils._rollout import short_symptom

    long_rule = "5 eval cases fail: " + ", ".join(f"case-{i} (failed with TOOL_EXECUTION_FAILED)" for i in range(9))
    text = short_symptom(f"new ERROR kind X in 20%; error rate 21% vs 0%; {long_rule}; p99 4x; p50 4x")
    parts = text.split("; ")
    assert parts[0] == "new ERROR kind X in 20%" and parts[1] == "error rate 21% vs 0%"
    assert len(parts[2]) <= 200 + len(" (and 2 more)") and parts[2].endswith("... (and 2 more)")
    assert short_symptom(None) == "" and short_symptom("one rule") == "one rule"


def test_short_symptom_keeps_a_rules_details_with_it() -> None:
    from ansible_collections.september.engine.plugins.module_utils._rollout import short_symptom

    # engine_verdict's rules carry "; p<..." inside their parentheses: that is not a new rule.
    symptom = ("new ERROR kind 'ERROR agent: turn failed: TOOL_EXECUTION_FAILED' in 36.4% of turns in 1 canary "
               "(16 times, none in 177 reference turns; p<0.0001); error rate 36.4% in 1 canary vs 0% in 3 controls "
               "(p<0.0001); p99 latency 1099 ms in 1 canary vs 299 ms in 3 controls (threshold x2; p<0.0001); "
               "p50 latency 965 ms in 1 canary vs 254 ms in 3 controls (threshold x2; p<0.0001)")
    text = short_symptom(symptom)
    assert text.startswith("new ERROR kind 'ERROR agent: turn failed: TOOL_EXECUTION_FAILED' in 36.4%")
    assert "(16 times, none in 177 reference turns; p<0.0001); error rate 36.4%" in text
    assert "p99 latency 1099 ms" in text and "p50 latency" not in text and text.endswith(" (and 1 more)")
    # An unbalanced parenthesis never swallows the rest.
    assert short_symptom("a (x; b; c; d", rules=1) == "a (x; b; c; d"
    assert short_symptom("a) x; b; c; d", rules=1) == "a) x (and 3 more)"


# ---------------------------------------------------------------- what a rollback did with the bad window's writes

from ansible_collections.september.engine.plugins.module_utils._rollout import replay_summary  # noqa: E402

REPLAYED = {
    "mode": "replay",
    "mode_reason": "the bad release's migrations only added to the schema",
    "bad_window": {"name": "kept", "path": "/var/lib/s/kept.sqlite"},
    "tables": {
        "tasks": {"written_in_bad_window": {"inserted": 120, "updated": 2, "deleted": 0},
                  "replayed": {"inserted": 120, "updated": 2}, "not_replayable": []},
        "memory_tags": {"written_in_bad_window": {"inserted": 80, "updated": 0, "deleted": 0},
                        "replayed": {"inserted": 0, "updated": 0},
                        "not_replayable": [{"reason": "table not in the old schema", "count": 80}]},
        "skills": {"written_in_bad_window": {"inserted": 0, "updated": 0, "deleted": 0},
                   "replayed": {"inserted": 0, "updated": 0}, "not_replayable": []},
    },
}


def test_replay_summary_names_each_written_table_what_was_replayed_and_where_the_rest_is_kept() -> None:
    text = replay_summary(REPLAYED)
    assert text.startswith("bad window replayed (the bad release's migrations only added to the schema): ")
    assert "tasks 120+/2~/0- written, 122 replayed" in text
    assert "memory_tags 80+/0~/0- written, 0 replayed (80 not replayable: table not in the old schema)" in text
    assert "skills" not in text  # nothing written there
    assert text.index("tasks") < text.index("memory_tags")  # the busiest first
    assert text.endswith("; kept in /var/lib/s/kept.sqlite")


def test_replay_summary_of_a_report_a_failure_and_no_replay() -> None:
    report = dict(REPLAYED, mode="report", mode_reason="destructive migrations")
    assert replay_summary(report).startswith("bad window reported, not replayed (destructive migrations): ")
    failed = {"mode": "replay", "error": "no such table", "bad_window": {"path": "/k.sqlite"}}
    assert replay_summary(failed) == ("bad window not replayed (no such table); what the failed release wrote stays "
                                      "in the kept brain /k.sqlite")
    assert replay_summary(None) == "" and replay_summary({"mode": "off"}) == ""
    assert replay_summary({"mode": "replay", "tables": {}}) == "bad window: nothing written"
    one = replay_summary(REPLAYED, tables=1)
    assert one.count(" written, ") == 1 and ", and 1 more tables" in one


def test_the_end_message_and_the_result_carry_the_replay() -> None:
    result = {"engine": "u1", "status": "rolled_back", "from_version": "2.3.0", "to_version": "2.4.2",
              "reason": "verify: measures", "rollback": {"brain_restored": True, "snapshot": "s1", "replay": REPLAYED}}
    message = engine_end_message(result, "/r/upgrade.md")
    assert "rolled back to 2.3.0 (brain restored from s1); bad window replayed" in message
    assert "tasks 120+/2~/0- written, 122 replayed" in message


BEFORE = {"metrics": {"measures": {"turns": 3}}}


def test_a_skipped_bake_round_keeps_what_the_engine_had():
    for skipped in ({"skipped": True, "changed": False}, None, {}):
        assert bake_round_evidence(skipped, HEALTHY, BEFORE) == {"health": HEALTHY, "metrics_after": BEFORE}


def test_a_bake_round_gives_its_last_health_and_its_measures():
    watched = {"is_healthy": True, "failure": "none", "probes": 3}
    measures = {"measures": {"turns": 9}}
    out = bake_round_evidence({"watch": {"health": watched, "metrics": measures}}, HEALTHY, BEFORE)
    assert out == {"health": {"health": watched}, "metrics_after": {"metrics": measures}}
    # not measured (unhealthy now, or the checks off): the earlier measures stay, the new health decides
    sick = {"is_healthy": False, "failure": "unhealthy"}
    out = bake_round_evidence({"watch": {"health": sick, "metrics": None}}, HEALTHY, None)
    assert out == {"health": {"health": sick}, "metrics_after": None}
    assert engine_decision("u1", out["health"], None)["decision"] == "rollback"


def test_a_bake_round_that_could_not_watch_rolls_the_engine_back():
    failed = {"failed": True, "msg": "Lost the Docker daemon while watching", "failed_when_result": False}
    out = bake_round_evidence(failed, HEALTHY, BEFORE)
    assert out["health"]["health"]["is_healthy"] is False
    assert "the bake could not watch the Engine: Lost the Docker daemon" in out["health"]["health"]["failure_detail"]
    assert out["metrics_after"] == BEFORE
    decided = engine_decision("u1", out["health"], {"decision": "pass", "engines": {"u1": {"decision": "pass"}}})
    assert decided["decision"] == "rollback" and "could not watch" in decided["reason"]


def test_the_baseline_and_the_snapshot_come_from_the_pre_flight_or_from_the_role():
    taken = {"name": "pre-upgrade-x", "sha256": "ab", "path": "/s/pre-upgrade-x.sqlite"}
    measured = {"measures": {"turns": 4}}
    by_preflight = {"__engine_upgrade_pre": {"preflight": {"snapshot": taken, "baseline": measured}},
                    "__engine_upgrade_snapshot": {"skipped": True},
                    "__engine_upgrade_metrics_before": {"skipped": True}}
    assert pre_upgrade_snapshot(by_preflight) == taken and baseline_of(by_preflight) == measured
    by_role = {"__engine_upgrade_pre": {"preflight": {"snapshot": None, "baseline": None}},
               "__engine_upgrade_snapshot": {"snapshot": taken},
               "__engine_upgrade_metrics_before": {"metrics": measured}}
    assert pre_upgrade_snapshot(by_role) == taken and baseline_of(by_role) == measured
    assert pre_upgrade_snapshot({}) is None and baseline_of({"__engine_upgrade_pre": {}}) is None
    record = upgrade_result(dict(by_preflight, inventory_hostname="u1"), "2.4.0", 0.0)
    assert record["snapshot"] == taken and record["measures"]["before"] == {"turns": 4}


SPEC = {"dest": "/s/u1", "verify": "quick", "retain_days": 2, "destructive_retain_days": 7, "keep_last": None}
PREFLIGHT = {"identity": {"key": "volume:engine-data-u1", "slug": "engine-data-u1"}, "from": {"version": "2.3.0"},
             "migration": {"needs_acknowledgement": False}}


def test_the_pre_upgrade_snapshot_options_name_and_bind_it_to_the_engine():
    out = pre_upgrade_snapshot_options(PREFLIGHT, SPEC, "2.4.0", "r7")
    assert out == {"dest": "/s/u1", "name": "pre-upgrade-engine-data-u1-2.3.0-to-2.4.0-r7", "kind": "pre-upgrade",
                   "engine_key": "volume:engine-data-u1", "reason": "pre-upgrade: 2.3.0 -> 2.4.0 (run r7)",
                   "verify": "quick", "retain_days": 2, "keep_last": None}
    named = pre_upgrade_snapshot_options(PREFLIGHT, dict(SPEC, name="mine", reason="because"), "2.4.0", None)
    assert named["name"] == "mine" and named["reason"] == "because"
    assert pre_upgrade_snapshot_options(PREFLIGHT, SPEC, "2.4.0", None)["name"].endswith("-manual")


@pytest.mark.parametrize(("retain", "destructive_retain", "kept"), [(2, 7, 7), (30, 7, 30), ("3", "5", 5)])
def test_a_destructive_migration_keeps_the_snapshot_longer(retain, destructive_retain, kept):
    preflight = dict(PREFLIGHT, migration={"needs_acknowledgement": True})
    spec = dict(SPEC, retain_days=retain, destructive_retain_days=destructive_retain)
    assert pre_upgrade_snapshot_options(preflight, spec, "2.4.0", "r7")["retain_days"] == kept
    assert pre_upgrade_snapshot_options(dict(PREFLIGHT, migration=None), spec, "2.4.0", "r7")["retain_days"] == int(
        retain)
