# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The upgrade role's decisions: keep, roll back, hold, outage; the bake's rounds; the run's outcome."""

from __future__ import annotations

import pytest

from ansible_collections.september.engine.plugins.module_utils._rollout import (
    bake_done,
    bake_rounds,
    engine_decision,
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


@pytest.mark.parametrize(
    ("policy", "decision", "must_fail"),
    [("rollback", "rollback", True), ("hold", "hold", True), ("proceed", "keep", False)],
)
def test_undecided_follows_the_policy_and_says_what_was_missing(policy, decision, must_fail) -> None:
    v = verdict("undecided", missing=["the canary cohort saw 3 turns since the switch (20 needed)"])
    out = engine_decision("u1", HEALTHY, v, policy)
    assert (out["decision"], out["must_fail"], out["evidence"], out["policy"]) == (decision, must_fail, "undecided",
                                                                                  policy)
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
    assert bake_done(None, healthy, 10, 10)["why"] == "the longest bake is over"


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
