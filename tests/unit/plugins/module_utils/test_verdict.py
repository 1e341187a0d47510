# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The canary verdict over recorded measure sets, and the outage-or-bad-release classification.

RECORDED (at the end) holds measures taken from real reference Engines by the code engine_metrics runs, under
one turn per second for 30 s windows: two 2.3.0 Engines (control_a, control_b), a 2.4.0 and a 2.4.2 Engine,
each over a first and a second window, then over 20 s of a simulated LLM-provider outage on all four. The
other cases are built from log lines through the same parse and measure functions.
"""

from __future__ import annotations

import copy
import json

import pytest

from ansible_collections.september.engine.plugins.module_utils import _metrics as m
from ansible_collections.september.engine.plugins.module_utils import _verdict as v

T0 = 1_800_000_000.0
TOOL = "ERROR agent: turn failed: TOOL_EXECUTION_FAILED"
CACHE_MISS = "WARNING llm: prompt cache miss: system prompt changed"


def line(ts, level="INFO", logger="agent", message="turn completed", **extra) -> str:
    return json.dumps(dict(timestamp=m.iso(ts), level=level, logger=logger, request_id="r", task_id="t",
                           message=message, extra=extra))


def turn(ts, failed=False, latency=250, error="TOOL_EXECUTION_FAILED", cache=303) -> str:
    extra = dict(latency_ms=latency, input_tokens=405, output_tokens=8, cache_hit_tokens=cache)
    if failed:
        return line(ts, "ERROR", message="turn failed", error=error, **extra)
    return line(ts, **extra)


def refused(ts, status=502) -> str:
    return line(ts, logger="http", message=f"POST /execute {status}", method="POST", path="/execute", status=status)


def measures(lines: list[str]) -> dict:
    entries = m.parse_log_lines("\n".join(lines))
    return m.measure(m.log_turns(entries), entries)


def healthy(n=40, latency=250, start=T0) -> dict:
    return measures([turn(start + i, latency=latency + i % 10) for i in range(n)])


def with_failures(n, failures, error="TOOL_EXECUTION_FAILED", latency=250) -> dict:
    return measures([turn(T0 + i, latency=latency + i % 10) for i in range(n)]
                    + [turn(T0 + n + i, failed=True, error=error, latency=latency) for i in range(failures)])


def rec(engine: str, window: str) -> dict:
    return copy.deepcopy(RECORDED[engine][window])


def canary(name="u1", window=None, baseline=None, **extra) -> dict:
    window = window if window is not None else healthy()
    return dict(name=name, window=window, baseline=baseline, **extra)


def evaluated(**extra) -> dict:
    """A canary with a healthy window and baseline, and evals."""
    return canary(baseline=healthy(), **extra)


def controls(*windows) -> list[dict]:
    return [dict(name=f"c{i + 1}", window=w) for i, w in enumerate(windows)]


def rule_tests(result, rule) -> list[dict]:
    return [t for t in result["evidence"]["tests"] if t["rule"] == rule]


# ---------------------------------------------------------------- recorded: 2.4.2, 2.4.0, outage


def test_recorded_2_4_2_fails_on_its_new_error_kind():
    got = v.verdict([canary("u3", rec("v242", "second"), rec("v240", "first"))],
                    controls(rec("control_a", "second"), rec("control_b", "second")))
    assert got["decision"] == "fail" and got["rule"] == "new_error_kind" and got["outage"] is False
    assert got["symptom"].startswith(f"new ERROR kind '{TOOL}' in 30% of turns in 1 canary (9 times, none in 90 "
                                     "reference turns; p<0.0001)")
    assert "error rate 30% in 1 canary vs 0% in 2 controls (p<0.0001)" in got["symptom"]
    assert "p50 latency 1020 ms in 1 canary vs" in got["symptom"]
    assert got["new_error_kinds"] == [TOOL] and got["new_warning_kinds"] == [CACHE_MISS]
    assert any(r.startswith(f"new WARNING kind '{CACHE_MISS}'") and r.endswith("(reported; does not decide alone)")
               for r in got["reasons"])
    evidence = got["evidence"]
    assert evidence["canary"] == dict(engines=1, turns=30, failed_turns=9, refused_turns=0, error_rate=0.3,
                                      provider_errors=0, latency_samples=30, latency_p50_ms=1020.0,
                                      latency_p99_ms=evidence["canary"]["latency_p99_ms"], cache_hit_ratio=0.0988)
    assert evidence["control"]["turns"] == 60 and evidence["control"]["engines"] == 2
    assert evidence["baseline"]["turns"] == 30 and evidence["window"]["since"] is None
    error = next(t for t in rule_tests(got, "error_rate") if t["reference"] == "control")
    assert error["fired"] and error["standing"] is None and error["threshold"] == 0.1 and error["p_value"] < 1e-4
    assert got["engines"]["u3"]["decision"] == "fail" and got["engines"]["u3"]["rule"] == "new_error_kind"
    assert got["missing"] == ["no eval set"]


def test_recorded_2_4_0_passes():
    got = v.verdict([canary("u2", rec("v240", "second"), rec("v240", "first"))],
                    controls(rec("control_a", "second"), rec("control_b", "second")))
    assert got["decision"] == "pass" and got["rule"] is None and got["symptom"] is None
    assert got["reasons"] == ["no rule fired over 30 turns since the switch"]
    assert got["enough_turns"] is True and got["engines"]["u2"]["decision"] == "pass"
    assert all(t["evaluated"] and not t["fired"] for t in got["evidence"]["tests"])
    assert {t["rule"] for t in got["evidence"]["tests"]} == {"error_rate", "cache_hit_ratio", "latency_p99",
                                                             "latency_p50"}


def test_recorded_provider_outage_in_both_cohorts_is_not_blamed_on_the_release():
    got = v.verdict([canary("u2", rec("v240", "outage"), rec("v240", "first"))],
                    controls(rec("control_a", "outage"), rec("control_b", "outage")))
    assert got["decision"] == "undecided" and got["outage"] is True and got["rule"] == "provider_outage"
    assert got["symptom"] is None
    assert any(r.startswith("LLM provider outage: 100% of the canaries' turns and 100% of the controls' fail")
               for r in got["reasons"])
    assert got["evidence"]["outage"]["outage"] is True and got["evidence"]["outage"]["p_value"] == 1.0
    # The provider's failures are left out of the error rate, and latency is not judged.
    assert not rule_tests(got, "latency_p50") and all(not t["fired"] for t in rule_tests(got, "error_rate"))
    assert got["engines"]["u2"]["decision"] == "undecided" and got["engines"]["u2"]["outage"] is True


def test_recorded_2_4_2_during_an_outage_is_undecided_not_blamed():
    got = v.verdict([canary("u3", rec("v242", "outage"), rec("v240", "first"))],
                    controls(rec("control_a", "outage"), rec("control_b", "outage")))
    assert got["decision"] == "undecided" and got["outage"] is True
    # The cache-miss warning is new but only reported; the provider kind is seen in the controls too.
    assert got["new_warning_kinds"] == [CACHE_MISS] and got["new_error_kinds"] == []


def test_a_bad_release_during_an_outage_still_fails_on_what_the_provider_does_not_explain():
    window = rec("v242", "outage")
    bad = rec("v242", "second")
    mixed = v.pool([window, bad])
    mixed = dict(mixed, warning_kinds={**window["warning_kinds"], TOOL: 9}, log_lines=0, completed_turns=21)
    got = v.verdict([canary("u3", mixed, rec("v240", "first"))],
                    controls(rec("control_a", "outage"), rec("control_b", "outage")))
    assert got["outage"] is True and got["decision"] == "fail"
    assert got["rule"] == "new_error_kind" and TOOL in got["symptom"]
    error = next(t for t in rule_tests(got, "error_rate") if t["reference"] == "control")
    assert error["note"] == "provider failures left out (outage)" and error["canary"] == 0.3


def test_provider_errors_only_on_the_canaries_are_the_release():
    got = v.verdict([canary("u2", rec("v240", "outage"), rec("v240", "first"))],
                    controls(rec("control_a", "second"), rec("control_b", "second")))
    assert got["outage"] is False and got["decision"] == "fail" and got["rule"] == "error_rate"
    assert "error rate 100% in 1 canary vs 0% in 2 controls (p<0.0001)" in got["symptom"]


def test_a_provider_share_far_higher_on_the_canaries_is_not_an_outage():
    canary_window = measures([refused(T0 + i) for i in range(30)] + [turn(T0 + 40 + i) for i in range(10)])
    control_window = measures([refused(T0 + i) for i in range(4)] + [turn(T0 + 40 + i) for i in range(60)])
    got = v.verdict([canary(window=canary_window, baseline=healthy())], controls(control_window))
    assert got["outage"] is False and got["decision"] == "fail"
    assert any("far more often than the controls'" in r for r in got["reasons"])


# ---------------------------------------------------------------- pooled cohort math


def test_pool_sums_counts_and_weighs_latency_lists():
    a = measures([turn(T0 + i, latency=100) for i in range(30)] + [turn(T0 + 40 + i, failed=True) for i in range(3)])
    b = measures([turn(T0 + i, latency=1000) for i in range(3)] + [turn(T0 + 5 + i, failed=True) for i in range(7)]
                 + [refused(T0 + 20), line(T0 + 21, "WARNING", "llm", "prompt cache miss: system prompt changed")])
    p = v.pool([a, b])
    assert (p["engines"], p["turns"], p["failed_turns"], p["refused_turns"]) == (2, 44, 10, 1)
    assert p["error_rate"] == round(11 / 44, 4) and p["errors_by_code"] == {"HTTP_502": 1, "TOOL_EXECUTION_FAILED": 10}
    assert p["provider_errors"] == 1 and p["latency_samples"] == 43 and p["latency_pooled"] is True
    assert p["latency_p50_ms"] == 100 and p["latency_p99_ms"] == 1000 and len(p["latencies_ms"]) == 43
    assert p["warning_kinds"] == {TOOL: 10, CACHE_MISS: 1} and p["kinds_turns"] == 44


def test_pool_weighs_a_quantile_sketch_by_the_samples_it_stands_for():
    many = dict(healthy(10, latency=100), latencies_ms=[100.0] * 10, latency_samples=1000)
    few = dict(healthy(10, latency=900), latencies_ms=[900.0] * 10, latency_samples=100)
    p = v.pool([many, few])
    assert p["latency_p50_ms"] == 100 and p["latency_p99_ms"] == 900 and p["latency_samples"] == 1100


def test_pool_without_latency_lists_keeps_a_single_member_and_drops_several():
    old = healthy()
    del old["latencies_ms"]
    assert v.pool([old])["latency_p50_ms"] == old["latency_p50_ms"] and v.pool([old])["latency_pooled"] is False
    assert v.pool([old, healthy()])["latency_p50_ms"] is None


def test_pool_of_brain_measures_has_no_log_kinds_but_counts_the_known_ones():
    brain = dict(healthy(30), warning_kinds=None, source="brain")
    assert v.pool([brain])["warning_kinds"] is None
    mixed = v.pool([brain, with_failures(10, 2)])
    assert mixed["warning_kinds"] == {TOOL: 2} and mixed["kinds_turns"] == 12 and mixed["turns"] == 42


def test_the_cohort_pools_its_canaries_and_judges_each_one():
    busy_bad = with_failures(30, 12)
    idle = healthy(0)
    got = v.verdict([canary("u1", busy_bad, healthy(30)), canary("u2", idle, healthy(30))],
                    controls(healthy(40), healthy(40)))
    assert got["evidence"]["canary"]["turns"] == 42 and got["evidence"]["canary"]["engines"] == 2
    assert got["evidence"]["baseline"]["turns"] == 60 and got["evidence"]["control"]["turns"] == 80
    assert got["decision"] == "fail"
    assert got["engines"]["u1"]["decision"] == "fail"
    idle_verdict = got["engines"]["u2"]
    assert idle_verdict["decision"] == "undecided" and idle_verdict["enough_turns"] is False
    assert idle_verdict["missing"][0] == "u2 saw 0 turns since the switch (20 needed)"
    assert "no eval set" not in idle_verdict["missing"]


def test_an_engine_failing_alone_fails_the_cohort():
    # Pooled with a quiet, healthy canary the new kind is under 5% of the cohort's turns; u1 alone is over it.
    got = v.verdict([canary("u1", with_failures(30, 3, error="NEW_CODE"), healthy(30)),
                     canary("u2", healthy(200), healthy(30))], controls(healthy(40)))
    cohort_kind = rule_tests(got, "new_error_kind")[0]
    assert cohort_kind["breached"] is False and cohort_kind["share"] < 0.05
    assert got["engines"]["u1"]["decision"] == "fail" and got["engines"]["u2"]["decision"] == "pass"
    assert got["decision"] == "fail" and got["rule"] == "new_error_kind"
    assert got["symptom"].startswith("u1: new ERROR kind 'ERROR agent: turn failed: NEW_CODE' in 9.1% of turns on u1")


# ---------------------------------------------------------------- not enough evidence


def test_the_brief_s_idle_case_names_each_missing_piece():
    got = v.verdict([canary(window=healthy(3), baseline=healthy(10))], controls(healthy(0)))
    assert got["decision"] == "undecided" and got["rule"] is None and got["enough_turns"] is False
    assert got["missing"] == ["the canary cohort saw 3 turns since the switch (20 needed)",
                              "the control cohort saw 0 turns in the same window (20 needed)",
                              "the canaries' baselines saw 10 turns before the switch (20 needed)",
                              "no eval set"]
    assert got["reasons"][-1] == "not enough evidence to decide: " + "; ".join(got["missing"])


def test_no_control_and_no_baseline_are_named():
    got = v.verdict([canary(window=healthy(40), baseline=None)], [])
    assert got["decision"] == "undecided"
    assert got["missing"] == ["no control Engine was measured over the same window",
                              "no baseline of the canaries before the switch", "no eval set",
                              "no baseline or control with log kinds: new ERROR kinds were not checked"]
    assert got["engines"]["u1"]["missing"] == ["no control Engine was measured over the same window",
                                               "no baseline of u1"]
    assert got["evidence"]["control"] is None and got["evidence"]["baseline"] is None


@pytest.mark.parametrize("control_turns, baseline_turns, decision", [
    (40, 0, "pass"),    # the control cohort is reference enough
    (0, 40, "pass"),    # the pooled baselines are
    (19, 19, "undecided"),
])
def test_one_reference_with_enough_turns_is_enough(control_turns, baseline_turns, decision):
    got = v.verdict([canary(window=healthy(40), baseline=healthy(baseline_turns))], controls(healthy(control_turns)))
    assert got["decision"] == decision


def test_a_pass_still_says_what_was_missing():
    got = v.verdict([canary(window=healthy(40), baseline=healthy(5))], controls(healthy(40)))
    assert got["decision"] == "pass"
    assert got["missing"] == ["the canaries' baselines saw 5 turns before the switch (20 needed)", "no eval set"]


def test_canaries_measured_from_the_brain_say_the_kinds_were_not_checked():
    brain = dict(with_failures(30, 10, error="NEW_CODE"), warning_kinds=None, log_lines=None, source="brain")
    got = v.verdict([canary(window=brain, baseline=healthy())], controls(healthy()))
    assert not rule_tests(got, "new_error_kind") and got["decision"] == "fail" and got["rule"] == "error_rate"
    assert "no log kinds of the canaries (measured from the brain): new ERROR kinds were not checked" in got["missing"]


def test_min_turns_is_a_threshold():
    args = ([canary(window=healthy(10), baseline=healthy(10))], controls(healthy(10)))
    assert v.verdict(*args)["decision"] == "undecided"
    assert v.verdict(*args, {"min_turns": 10})["decision"] == "pass"


def test_the_new_kind_rule_needs_reference_turns_to_call_a_kind_new():
    got = v.verdict([canary(window=with_failures(3, 5), baseline=healthy(0))], controls(healthy(0)))
    kind = rule_tests(got, "new_error_kind")[0]
    assert kind["breached"] is True and kind["p_value"] == 1.0 and kind["fired"] is False
    assert got["decision"] == "undecided"


def test_the_new_kind_rule_decides_on_thin_traffic():
    # 8 turns since the switch (fewer than min_turns), 5 failing with a new kind; 40 reference turns without it.
    got = v.verdict([canary(window=with_failures(3, 5), baseline=healthy(20))], controls(healthy(20)))
    assert got["decision"] == "fail" and got["rule"] == "new_error_kind" and got["enough_turns"] is False


# ---------------------------------------------------------------- evals


def evals(*passed, error="TOOL_EXECUTION_FAILED", ran=True) -> dict:
    results = [dict(name=f"case-{i}", passed=ok, answer="42" if ok else None, error=None if ok else error,
                    error_message=None, failed_checks=[]) for i, ok in enumerate(passed)]
    return dict(mode="cases", ran=ran, total=len(results) if ran else 0, passed=sum(passed), results=results)


def test_an_eval_regression_fails():
    got = v.verdict([evaluated(eval_before=evals(True, True), eval_after={"eval": evals(True, False)})],
                    controls(healthy()))
    assert got["decision"] == "fail" and got["rule"] == "eval_regression"
    assert got["symptom"] == ("1 eval case that passed before the switch fail on u1 (more than eval_max_regressions=0):"
                              " case-1 (failed with TOOL_EXECUTION_FAILED)")
    assert got["missing"] == []
    relaxed = v.verdict([evaluated(eval_before=evals(True, True), eval_after=evals(True, False))], controls(healthy()),
                        {"eval_max_regressions": 1})
    assert relaxed["decision"] == "pass"


def test_an_eval_after_with_its_own_verdict_needs_no_before():
    after = dict(evals(False), verdict=dict(decision="rollback", regressions=[dict(name="case-0", detail="wrong")]))
    got = v.verdict([evaluated(evals={"after": after})], controls(healthy()))
    assert got["decision"] == "fail" and "case-0 (wrong)" in got["symptom"]


@pytest.mark.parametrize("before, after, text", [
    (evals(True), evals(True, ran=False),
     "the eval set did not run on u1 after the switch (check mode, or no case ran)"),
    (evals(True, ran=False), evals(True), "the eval set did not run on u1 before the switch: nothing to compare with"),
    (None, evals(True), "no eval of u1 before the switch to compare with"),
    (evals(True), None, "the eval set did not run on u1 after the switch"),
])
def test_an_eval_set_that_could_not_run_leaves_it_undecided(before, after, text):
    got = v.verdict([evaluated(eval_before=before, eval_after=after)], controls(healthy()))
    assert got["decision"] == "undecided" and text in got["missing"]
    assert got["reasons"][-1].startswith("not enough evidence to decide: ")


def test_eval_failures_from_the_provider_do_not_count_during_an_outage():
    window = rec("v240", "outage")
    got = v.verdict([canary(window=window, baseline=rec("v240", "first"), eval_before=evals(True, True),
                            eval_after=evals(False, False, error="LLM_PROVIDER_ERROR"))],
                    controls(rec("control_a", "outage")))
    assert got["outage"] is True and got["decision"] == "undecided"
    assert rule_tests(got, "eval_regression")[0]["canary"] == 0


# ---------------------------------------------------------------- improving, outliers, disagreement


def test_an_improving_breach_does_not_decide():
    # The first third of the window fails (a new code), the last third is clean and busy enough to show it.
    early = [turn(T0 + i, failed=True, error="BURST") for i in range(15)]
    late = [turn(T0 + 100 + i) for i in range(30)]
    window, last = measures(early + late), measures(late[-20:])
    got = v.verdict([canary(window=window, baseline=healthy(), last_slice=last)], controls(healthy()))
    assert got["decision"] == "pass"
    improving = [r for r in got["reasons"] if r.endswith("(improving: does not decide)")]
    assert len(improving) == 2 and "no longer in the last slice" in improving[0]
    assert [t["standing"] for t in rule_tests(got, "error_rate")] == [False, False]


def test_a_clean_last_slice_that_could_be_chance_is_no_recovery():
    # A release failing ~30 % of its turns all along: 6 of the first 14 fail, the last 7 happen to be clean
    # (0.7 ** 7: 8 % of windows). That is no evidence of a recovery: the breach stands (it passed as "improving").
    pattern = [1, 0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 1, 0] + [0] * 7
    window = [turn(T0 + 5 * i, failed=bool(f), latency=250 + i % 10) for i, f in enumerate(pattern)]
    got = v.verdict([canary(window=measures(window), baseline=healthy(25, start=T0 - 400),
                            last_slice=measures(window[14:]))], controls(healthy(60)))
    assert got["decision"] == "fail", got["reasons"]
    assert [t["standing"] for t in rule_tests(got, "error_rate")] == [None, None]
    assert [t["standing"] for t in rule_tests(got, "new_error_kind")] == [None]


def test_a_kind_logged_more_often_than_turns_is_weighed_not_a_crash():
    # 8 failing turns each log 'database is locked' twice: 16 lines of that kind, all in the 14 turns before the
    # last slice.
    failing = [line(T0 + 5 * i, "ERROR", message="database is locked", error="DB_LOCKED") for i in range(8)
               for _copy in range(2)]
    window = [turn(T0 + 5 * i, failed=i < 8, error="DB_LOCKED", latency=250 + i % 10) for i in range(21)]
    got = v.verdict([canary(window=measures(window + failing), baseline=healthy(25, start=T0 - 400),
                            last_slice=measures(window[14:]))], controls(healthy(60)))
    # (It raised "hits cannot exceed totals": 16 lines in 14 early turns.) A burst that ended: improving.
    kinds = {t["kind"]: t["standing"] for t in rule_tests(got, "new_error_kind")}
    assert kinds == {"ERROR agent: database is locked: DB_LOCKED": False, "ERROR agent: turn failed: DB_LOCKED": False}
    assert got["decision"] == "pass", got["reasons"]


def test_a_breach_in_a_last_slice_too_short_to_show_a_recovery_stands():
    early = [turn(T0 + i, failed=True, error="BURST") for i in range(15)]
    late = [turn(T0 + 100 + i) for i in range(30)]
    got = v.verdict([canary(window=measures(early + late), baseline=healthy(), last_slice=measures(late[-3:]))],
                    controls(healthy()))
    assert got["decision"] == "fail"


def test_last_slice_from_a_whole_engine_metrics_result():
    early = [turn(T0 + i, failed=True, error="BURST") for i in range(15)]
    late = [turn(T0 + 100 + i) for i in range(30)]
    result = {"changed": False, "metrics": {"container": "engine-u1", "measures": measures(early + late),
                                            "window": {"start": m.iso(T0), "end": m.iso(T0 + 130), "seconds": 130},
                                            "slices": [{"measures": measures(early)}, {"measures": measures([])},
                                                       {"measures": measures(late)}]}}
    got = v.verdict([dict(window=result, baseline=healthy())], controls(healthy()))
    assert got["decision"] == "pass" and "engine-u1" in got["engines"]
    assert got["evidence"]["window"] == {"since": m.iso(T0), "until": m.iso(T0 + 130), "seconds": 130.0}


def test_one_failed_turn_and_one_slow_turn_are_outliers():
    lines = [turn(T0 + i, latency=250 + i % 10) for i in range(39)]
    lines += [turn(T0 + 50, latency=9000), turn(T0 + 51, failed=True, error="ONCE")]
    got = v.verdict([canary(window=measures(lines), baseline=healthy())], controls(healthy()))
    assert got["decision"] == "pass"
    p99 = rule_tests(got, "latency_p99")
    assert all(t["breached"] and not t["fired"] and t["p_value"] >= 0.05 for t in p99)
    assert any("p99 latency 9000 ms" in r and "not significant" in r for r in got["reasons"])
    kind = rule_tests(got, "new_error_kind")[0]
    assert kind["canary"] == 1 and kind["fired"] is False


def test_the_references_disagree_leaves_it_undecided():
    # The canary failed as often before the switch (its baseline) as after; the controls never fail.
    got = v.verdict([canary(window=with_failures(30, 10, error="OLD"), baseline=with_failures(30, 10, error="OLD"))],
                    controls(healthy(), healthy()))
    assert got["decision"] == "undecided" and got["rule"] is None
    assert any(r.endswith("but not against their baselines: the references disagree") for r in got["reasons"])
    assert got["new_error_kinds"] == []  # OLD is in the baseline


def test_latency_without_lists_decides_on_sample_counts():
    slow, base = healthy(latency=1000), healthy()
    del slow["latencies_ms"], base["latencies_ms"]
    got = v.verdict([canary(window=slow, baseline=base)], [])
    assert got["decision"] == "fail" and got["rule"] == "latency_p99"
    assert rule_tests(got, "latency_p50")[0]["note"] == "no latency lists: decided on the sample counts"


# ---------------------------------------------------------------- log kinds


def test_a_new_error_kind_decides():
    got = v.verdict([canary(window=with_failures(40, 4, error="NEW_CODE"), baseline=healthy(30))],
                    controls(healthy(30)))
    assert got["decision"] == "fail" and got["rule"] == "new_error_kind"
    assert rule_tests(got, "error_rate")[0]["breached"] is False  # 9% is not 10 points worse
    kind = rule_tests(got, "new_error_kind")[0]
    assert kind["kind"] == "ERROR agent: turn failed: NEW_CODE" and kind["canary"] == 4 and kind["share"] == 0.0909
    assert kind["reference_turns"] == 60 and kind["fired"] is True


def test_an_error_kind_the_controls_have_too_does_not_decide():
    got = v.verdict([canary(window=with_failures(40, 4, error="NEW_CODE"), baseline=healthy(30))],
                    controls(healthy(30), with_failures(30, 1, error="NEW_CODE")))
    assert got["decision"] == "pass" and got["new_error_kinds"] == [] and not rule_tests(got, "new_error_kind")


def test_an_error_kind_in_any_baseline_does_not_decide():
    got = v.verdict([canary("u1", with_failures(40, 4, error="NEW_CODE"), healthy(30)),
                     canary("u2", healthy(30), with_failures(30, 1, error="NEW_CODE"))], controls(healthy(30)))
    assert got["new_error_kinds"] == [] and got["decision"] == "pass"


@pytest.mark.parametrize("count, share, decision", [(2, None, "pass"), (3, None, "fail"), (3, 0.2, "pass")])
def test_new_error_kind_thresholds(count, share, decision):
    got = v.verdict([canary(window=with_failures(30, count, error="NEW_CODE"), baseline=healthy())],
                    controls(healthy()), {"new_error_kind_share": share})
    assert got["decision"] == decision


@pytest.mark.parametrize("fail_on_new_warnings, decision", [(False, "pass"), (True, "fail")])
def test_a_new_warning_kind_is_reported_only_unless_asked(fail_on_new_warnings, decision):
    lines = [turn(T0 + i) for i in range(40)] + [line(T0 + i, "WARNING", "engine", "something new") for i in range(8)]
    got = v.verdict([canary(window=measures(lines), baseline=healthy())], controls(healthy()),
                    {"fail_on_new_warnings": fail_on_new_warnings})
    assert got["decision"] == decision and got["new_warning_kinds"] == ["WARNING engine: something new"]
    if decision == "fail":
        assert got["rule"] == "new_warning_kind"
    else:
        assert any(r.endswith("(reported; does not decide alone)") for r in got["reasons"])


@pytest.mark.parametrize("fail_on_cache_drop, decision", [(False, "pass"), (True, "fail")])
def test_a_cache_drop_decides_only_when_asked(fail_on_cache_drop, decision):
    window = measures([turn(T0 + i, cache=40) for i in range(40)])
    got = v.verdict([canary(window=window, baseline=healthy())], controls(healthy()),
                    {"fail_on_cache_drop": fail_on_cache_drop})
    assert got["decision"] == decision
    assert any(r.startswith("cache hit ratio 9.9% in 1 canary vs 74.8% in 1 control") for r in got["reasons"])


def test_significance_is_a_threshold():
    # 5 of 40 new-kind failures against 20 reference turns: p = C(40,5)/C(60,5), about 0.12.
    args = ([canary(window=with_failures(35, 5, error="NEW_CODE"), baseline=healthy(20))], [])
    assert v.verdict(*args)["decision"] == "pass"
    assert v.verdict(*args, {"significance": 0.2})["decision"] == "fail"


# ---------------------------------------------------------------- windows and input


def test_a_control_measured_over_another_window_is_noted():
    def result(start, end):
        return {"metrics": {"measures": healthy(), "window": {"start": m.iso(start), "end": m.iso(end)}}}
    got = v.verdict([dict(name="u1", window=result(T0, T0 + 100), baseline=healthy())],
                    [dict(name="c1", window=result(T0, T0 + 100)), dict(engine="c2", window=result(T0 - 900, T0))])
    notes = [r for r in got["reasons"] if r.startswith("control ")]
    assert notes == [f"control c2 was measured over {m.iso(T0 - 900)} to {m.iso(T0)}, not the canaries' window"]


@pytest.mark.parametrize("canaries, ctrl, message", [
    ([], [], "canary must be a list of at least one"),
    ("u1", [], "canary must be a list"),
    ([canary()], "c1", "control must be a list"),
    (["u1"], [], "canary\\[0\\] must be a dict"),
    ([dict(canary(), colour="red")], [], "canary\\[0\\] has unknown keys colour"),
    ([dict(name="u1")], [], "canary\\[0\\].window is missing"),
    ([dict(window=healthy())], [], "canary\\[0\\].name is missing"),
    ([canary(window={"turns": 3})], [], "canary\\[0\\].window is not the metrics.measures of an engine_metrics run"),
    ([canary(window=dict(healthy(), latencies_ms="fast"))], [], "canary\\[0\\].window.latencies_ms must be a list"),
    ([canary(baseline={"metrics": {"measures": {"turns": -1}}})], [], "canary\\[0\\].baseline is not"),
    ([canary(eval_after={"passed": 3})], [], "canary\\[0\\].eval_after must be the eval of"),
    ([canary(evals=["x"])], [], "canary\\[0\\].evals must be a dict with before and after"),
    ([canary()], [dict(name="u1", window=healthy())], "u1 appears twice"),
    ([canary()], [dict(name="c1")], "control\\[0\\].window is missing"),
    ([canary()], [dict(name="c1", window=healthy(), extra=1)], "control\\[0\\] has unknown keys extra"),
])
def test_bad_input_names_what_to_fix(canaries, ctrl, message):
    with pytest.raises(ValueError, match=message):
        v.verdict(canaries, ctrl)


# ---------------------------------------------------------------- outage or bad release from health probes


def health(ok=True, llm="ok", name=None, failure=None, database="ok", wrapped=True, **extra):
    subsystems = {"database": database, "llm_provider": llm, "asset_directory": "ok"}
    body = dict(is_healthy=ok, status="ok" if ok else "degraded", subsystems=subsystems, url="http://127.0.0.1:1",
                failure=failure or ("none" if ok else "unhealthy"), container={"name": name} if name else None)
    return {"changed": False, "health": body, **extra} if wrapped else body


DOWN = dict(ok=False, llm="error")


@pytest.mark.parametrize("canary_health, control_healths, kind, words", [
    (health(), [health(), health()], "none", "all 1 upgraded Engine are healthy."),
    (health(**DOWN, name="u1"), [health(**DOWN, name="u2"), health(**DOWN, name="u3")], "provider_outage",
     "LLM provider outage: 2 of 2 control Engines that were not upgraded are unhealthy with llm_provider failing "
     "(u2, u3), as on the upgraded u1."),
    (health(**DOWN, name="u1"), [health(**DOWN, name="u2")], "provider_outage", "1 of 1 control Engines"),
    (health(**DOWN, name="u1"), [health(**DOWN, name="u2"), health(**DOWN, name="u3"), health(name="u4")],
     "provider_outage", "2 of 3 control Engines"),
    # Issue 10 item 6: one unhealthy neighbour is no outage.
    (health(**DOWN, name="u1"), [health(**DOWN, name="u2"), health(name="u3")], "bad_release",
     "that needs 2 with llm_provider failing"),
    (health(**DOWN, name="u1"), [health(**DOWN, name="u2"), health(name="u3"), health(name="u4"), health(name="u5")],
     "bad_release", "1 of 4 control Engines are unhealthy (u2: llm_provider=error)"),
    # Controls unhealthy in unrelated ways, and a crash-looping canary.
    (health(False, name="u1", failure="crash_loop"), [health(False, database="error", name="u2")], "bad_release",
     "u1 unhealthy after the upgrade; 1 of 1 control Engines are unhealthy (u2: database=error), which is not a "
     "provider outage"),
    # The provider is down for everyone, but the canary crash-loops: not explained by the outage.
    (health(False, name="u1", failure="crash_loop"), [health(**DOWN, name="u2"), health(**DOWN, name="u3")],
     "bad_release", "fails another way"),
    (health(False, name="u1"), [], "bad_release", "no control Engine to compare with"),
    (health(False, name="u1"), [health(name="u2"), health(name="u3")], "bad_release",
     "the 2 control Engines that were not upgraded are healthy: a bad release."),
    (health(**DOWN, name="u1"), [health(), health()], "bad_release", "are healthy"),
    ([health(False, name="u1"), health(wrapped=False)], [health()], "bad_release", "u1 unhealthy"),
])
def test_classify_outage(canary_health, control_healths, kind, words):
    outage = v.classify_outage(canary_health, control_healths)
    assert outage["kind"] == kind
    assert words in outage["reason"]


def test_classify_outage_counts_and_lists_the_controls():
    outage = v.classify_outage(health(**DOWN, name="u1"),
                               [health(**DOWN, name="u2"), health(**DOWN, name="u3"), health(database="error",
                                                                                             ok=False, name="u4")])
    assert outage["counts"] == dict(upgraded=1, upgraded_unhealthy=1, control=3, control_probed=3,
                                    control_unhealthy=3, control_provider=2, control_needed=2)
    assert outage["kind"] == "provider_outage" and outage["evidence"] == ["health"] and outage["turns"] is None
    assert outage["controls"][2] == dict(name="u4", state="unhealthy", failure="unhealthy",
                                         failing=["database=error"])


def test_classify_outage_reads_loop_results():
    loop = dict(ansible_loop_var="__engine_control")
    controls_ = [
        health(**DOWN, **loop, __engine_control="host-2"),
        health(**DOWN, **loop, __engine_control="host-3"),
        dict(skipped=True, **loop, __engine_control="host-4"),
        dict(failed=True, unreachable=True, msg="ssh: connection refused", **loop, __engine_control="host-5"),
    ]
    outage = v.classify_outage(health(**DOWN, name="u1"), controls_)
    assert outage["kind"] == "provider_outage"
    assert [c["name"] for c in outage["controls"]] == ["host-2", "host-3", "host-5"]
    assert outage["controls"][2]["state"] == "unknown" and outage["counts"]["control_probed"] == 2


def test_classify_outage_when_no_control_could_be_probed():
    outage = v.classify_outage(health(False, name="u1"), [dict(failed=True, msg="timeout")])
    assert outage["kind"] == "bad_release" and "no control Engine could be probed" in outage["reason"]


def test_classify_outage_from_turns_failing_in_both_cohorts():
    outage = v.classify_outage(health(**DOWN, name="u1"), [health(name="u2")],
                               [rec("v240", "outage")], [{"metrics": {"measures": rec("control_a", "outage")}}])
    assert outage["kind"] == "provider_outage" and outage["evidence"] == ["turns"]
    assert outage["turns"]["outage"] is True and "LLM provider outage" in outage["reason"]
    healthy_turns = v.classify_outage(health(**DOWN, name="u1"), [health(name="u2")], [rec("v240", "outage")],
                                      [rec("control_a", "second")])
    assert healthy_turns["kind"] == "bad_release" and healthy_turns["evidence"] == []


@pytest.mark.parametrize("canary_health, control_healths, extra, message", [
    ("up", [], {}, "canary\\[0\\] must be an engine_health result"),
    ({"health": {"status": "ok"}}, [], {}, "canary\\[0\\] must be"),
    ([], [], {}, "at least one"),
    ([dict(skipped=True)], [], {}, "at least one"),
    (health(), "u2", {}, "must be a list"),
    (health(), [{"is_healthy": "yes"}], {}, "control\\[0\\] must be"),
    (health(), [], {"canary_measures": [healthy()]}, "go together"),
    (health(), [], {"canary_measures": [{"turns": 1}], "control_measures": []}, "canary_measures\\[0\\] is not"),
])
def test_classify_outage_refuses(canary_health, control_healths, extra, message):
    with pytest.raises(ValueError, match=message):
        v.classify_outage(canary_health, control_healths, extra.get("canary_measures"), extra.get("control_measures"))


# ---------------------------------------------------------------- recorded measures (real reference Engines)

RECORDED = json.loads(
    '{"control_a": {"first": {"source": "logs", "turns": 30, "completed_turns": 30, "failed_turns": 0, "refused_t'
    'urns": 0, "error_rate": 0.0, "errors_by_code": {}, "latency_samples": 30, "latency_p50_ms": 249.0, "latency_'
    'p95_ms": 276.0, "latency_p99_ms": 276.0, "latency_max_ms": 276.0, "latencies_ms": [230.0, 232.0, 235.0, 238.'
    '0, 239.0, 240.0, 241.0, 241.0, 242.0, 242.0, 242.0, 246.0, 246.0, 247.0, 249.0, 254.0, 255.0, 256.0, 256.0, '
    '256.0, 259.0, 259.0, 261.0, 263.0, 266.0, 266.0, 267.0, 273.0, 276.0, 276.0], "input_tokens": 12150, "output'
    '_tokens": 186, "cache_hit_tokens": 9090, "cache_hit_ratio": 0.7481, "log_lines": 60, "warning_kinds": {}}, "'
    'second": {"source": "logs", "turns": 30, "completed_turns": 30, "failed_turns": 0, "refused_turns": 0, "erro'
    'r_rate": 0.0, "errors_by_code": {}, "latency_samples": 30, "latency_p50_ms": 263.0, "latency_p95_ms": 289.0,'
    ' "latency_p99_ms": 300.0, "latency_max_ms": 300.0, "latencies_ms": [231.0, 235.0, 238.0, 239.0, 241.0, 248.0'
    ', 250.0, 251.0, 251.0, 254.0, 255.0, 257.0, 262.0, 262.0, 263.0, 265.0, 266.0, 268.0, 268.0, 270.0, 270.0, 2'
    '71.0, 274.0, 278.0, 278.0, 278.0, 282.0, 283.0, 289.0, 300.0], "input_tokens": 12150, "output_tokens": 194, '
    '"cache_hit_tokens": 9090, "cache_hit_ratio": 0.7481, "log_lines": 60, "warning_kinds": {}}, "outage": {"sour'
    'ce": "logs", "turns": 21, "completed_turns": 0, "failed_turns": 1, "refused_turns": 20, "error_rate": 1.0, "'
    'errors_by_code": {"HTTP_502": 20, "LLM_PROVIDER_ERROR": 1}, "latency_samples": 1, "latency_p50_ms": 266.0, "'
    'latency_p95_ms": 266.0, "latency_p99_ms": 266.0, "latency_max_ms": 266.0, "latencies_ms": [266.0], "input_to'
    'kens": 405, "output_tokens": 9, "cache_hit_tokens": 303, "cache_hit_ratio": 0.7481, "log_lines": 22, "warnin'
    'g_kinds": {"ERROR agent: turn failed: LLM_PROVIDER_ERROR": 1}}}, "control_b": {"first": {"source": "logs", "'
    'turns": 30, "completed_turns": 30, "failed_turns": 0, "refused_turns": 0, "error_rate": 0.0, "errors_by_code'
    '": {}, "latency_samples": 30, "latency_p50_ms": 250.0, "latency_p95_ms": 280.0, "latency_p99_ms": 281.0, "la'
    'tency_max_ms": 281.0, "latencies_ms": [230.0, 231.0, 235.0, 236.0, 237.0, 238.0, 239.0, 239.0, 240.0, 240.0,'
    ' 244.0, 244.0, 247.0, 247.0, 250.0, 253.0, 255.0, 255.0, 257.0, 258.0, 259.0, 262.0, 262.0, 265.0, 267.0, 27'
    '1.0, 274.0, 275.0, 280.0, 281.0], "input_tokens": 12150, "output_tokens": 186, "cache_hit_tokens": 9090, "ca'
    'che_hit_ratio": 0.7481, "log_lines": 60, "warning_kinds": {}}, "second": {"source": "logs", "turns": 30, "co'
    'mpleted_turns": 30, "failed_turns": 0, "refused_turns": 0, "error_rate": 0.0, "errors_by_code": {}, "latency'
    '_samples": 30, "latency_p50_ms": 255.0, "latency_p95_ms": 280.0, "latency_p99_ms": 290.0, "latency_max_ms": '
    '290.0, "latencies_ms": [231.0, 235.0, 240.0, 241.0, 241.0, 243.0, 243.0, 244.0, 244.0, 244.0, 246.0, 247.0, '
    '250.0, 252.0, 255.0, 260.0, 261.0, 261.0, 263.0, 264.0, 266.0, 267.0, 268.0, 270.0, 274.0, 274.0, 276.0, 279'
    '.0, 280.0, 290.0], "input_tokens": 12150, "output_tokens": 194, "cache_hit_tokens": 9090, "cache_hit_ratio":'
    ' 0.7481, "log_lines": 60, "warning_kinds": {}}, "outage": {"source": "logs", "turns": 21, "completed_turns":'
    ' 0, "failed_turns": 1, "refused_turns": 20, "error_rate": 1.0, "errors_by_code": {"HTTP_502": 20, "LLM_PROVI'
    'DER_ERROR": 1}, "latency_samples": 1, "latency_p50_ms": 234.0, "latency_p95_ms": 234.0, "latency_p99_ms": 23'
    '4.0, "latency_max_ms": 234.0, "latencies_ms": [234.0], "input_tokens": 405, "output_tokens": 9, "cache_hit_t'
    'okens": 303, "cache_hit_ratio": 0.7481, "log_lines": 22, "warning_kinds": {"ERROR agent: turn failed: LLM_PR'
    'OVIDER_ERROR": 1}}}, "v240": {"first": {"source": "logs", "turns": 30, "completed_turns": 30, "failed_turns"'
    ': 0, "refused_turns": 0, "error_rate": 0.0, "errors_by_code": {}, "latency_samples": 30, "latency_p50_ms": 2'
    '54.0, "latency_p95_ms": 280.0, "latency_p99_ms": 280.0, "latency_max_ms": 280.0, "latencies_ms": [230.0, 231'
    '.0, 232.0, 235.0, 237.0, 238.0, 241.0, 244.0, 244.0, 246.0, 247.0, 247.0, 249.0, 254.0, 254.0, 256.0, 258.0,'
    ' 260.0, 261.0, 263.0, 263.0, 266.0, 267.0, 267.0, 268.0, 270.0, 270.0, 279.0, 280.0, 280.0], "input_tokens":'
    ' 12150, "output_tokens": 186, "cache_hit_tokens": 9090, "cache_hit_ratio": 0.7481, "log_lines": 60, "warning'
    '_kinds": {}}, "second": {"source": "logs", "turns": 30, "completed_turns": 30, "failed_turns": 0, "refused_t'
    'urns": 0, "error_rate": 0.0, "errors_by_code": {}, "latency_samples": 30, "latency_p50_ms": 251.0, "latency_'
    'p95_ms": 288.0, "latency_p99_ms": 303.0, "latency_max_ms": 303.0, "latencies_ms": [229.0, 229.0, 235.0, 237.'
    '0, 242.0, 243.0, 245.0, 249.0, 249.0, 249.0, 250.0, 251.0, 251.0, 251.0, 251.0, 251.0, 255.0, 259.0, 260.0, '
    '261.0, 262.0, 267.0, 276.0, 277.0, 277.0, 279.0, 280.0, 282.0, 288.0, 303.0], "input_tokens": 12150, "output'
    '_tokens": 194, "cache_hit_tokens": 9090, "cache_hit_ratio": 0.7481, "log_lines": 60, "warning_kinds": {}}, "'
    'outage": {"source": "logs", "turns": 21, "completed_turns": 0, "failed_turns": 1, "refused_turns": 20, "erro'
    'r_rate": 1.0, "errors_by_code": {"HTTP_502": 20, "LLM_PROVIDER_ERROR": 1}, "latency_samples": 1, "latency_p5'
    '0_ms": 293.0, "latency_p95_ms": 293.0, "latency_p99_ms": 293.0, "latency_max_ms": 293.0, "latencies_ms": [29'
    '3.0], "input_tokens": 405, "output_tokens": 9, "cache_hit_tokens": 303, "cache_hit_ratio": 0.7481, "log_line'
    's": 22, "warning_kinds": {"ERROR agent: turn failed: LLM_PROVIDER_ERROR": 1}}}, "v242": {"first": {"source":'
    ' "logs", "turns": 31, "completed_turns": 23, "failed_turns": 8, "refused_turns": 0, "error_rate": 0.2581, "e'
    'rrors_by_code": {"TOOL_EXECUTION_FAILED": 8}, "latency_samples": 31, "latency_p50_ms": 1015.0, "latency_p95_'
    'ms": 1082.0, "latency_p99_ms": 1083.0, "latency_max_ms": 1083.0, "latencies_ms": [906.0, 911.0, 931.0, 932.0'
    ', 933.0, 941.0, 949.0, 953.0, 959.0, 976.0, 991.0, 993.0, 999.0, 1000.0, 1002.0, 1015.0, 1022.0, 1024.0, 103'
    '1.0, 1032.0, 1041.0, 1043.0, 1045.0, 1046.0, 1048.0, 1050.0, 1063.0, 1070.0, 1082.0, 1082.0, 1083.0], "input'
    '_tokens": 12555, "output_tokens": 187, "cache_hit_tokens": 1240, "cache_hit_ratio": 0.0988, "log_lines": 93,'
    ' "warning_kinds": {"ERROR agent: turn failed: TOOL_EXECUTION_FAILED": 8, "WARNING llm: prompt cache miss: sy'
    'stem prompt changed": 31}}, "second": {"source": "logs", "turns": 30, "completed_turns": 21, "failed_turns":'
    ' 9, "refused_turns": 0, "error_rate": 0.3, "errors_by_code": {"TOOL_EXECUTION_FAILED": 9}, "latency_samples"'
    ': 30, "latency_p50_ms": 1020.0, "latency_p95_ms": 1092.0, "latency_p99_ms": 1095.0, "latency_max_ms": 1095.0'
    ', "latencies_ms": [907.0, 920.0, 922.0, 922.0, 926.0, 928.0, 933.0, 941.0, 951.0, 953.0, 983.0, 992.0, 1000.'
    '0, 1011.0, 1020.0, 1024.0, 1025.0, 1025.0, 1027.0, 1039.0, 1046.0, 1052.0, 1052.0, 1054.0, 1056.0, 1072.0, 1'
    '076.0, 1086.0, 1092.0, 1095.0], "input_tokens": 12150, "output_tokens": 195, "cache_hit_tokens": 1200, "cach'
    'e_hit_ratio": 0.0988, "log_lines": 90, "warning_kinds": {"ERROR agent: turn failed: TOOL_EXECUTION_FAILED": '
    '9, "WARNING llm: prompt cache miss: system prompt changed": 30}}, "outage": {"source": "logs", "turns": 21, '
    '"completed_turns": 0, "failed_turns": 1, "refused_turns": 20, "error_rate": 1.0, "errors_by_code": {"HTTP_50'
    '2": 20, "LLM_PROVIDER_ERROR": 1}, "latency_samples": 1, "latency_p50_ms": 1107.0, "latency_p95_ms": 1107.0, '
    '"latency_p99_ms": 1107.0, "latency_max_ms": 1107.0, "latencies_ms": [1107.0], "input_tokens": 405, "output_t'
    'okens": 9, "cache_hit_tokens": 40, "cache_hit_ratio": 0.0988, "log_lines": 23, "warning_kinds": {"ERROR agen'
    't: turn failed: LLM_PROVIDER_ERROR": 1, "WARNING llm: prompt cache miss: system prompt changed": 1}}}}'
)


# ---------------------------------------------------------------- the pieces of a scope's judgement

LABELS = dict(canary="in 2 canaries", control="in 3 controls", baseline="in their baselines")


def rate_test(reference, fired=True, breached=True, standing=None, evaluated=True, rule="error_rate") -> dict:
    return dict(rule=rule, reference=reference, canary=0.3, reference_value=0.01, p_value=0.001, evaluated=evaluated,
                fired=fired, breached=breached, standing=standing)


def test_rule_groups_judge_kinds_and_evals_one_by_one():
    tests = [rate_test("control"), rate_test("baseline"), dict(rule="new_error_kind", kind="a"),
             dict(rule="new_error_kind", kind="b")]
    assert v.rule_groups("error_rate", tests) == [tests[:2]]
    assert v.rule_groups("new_error_kind", tests) == [[tests[2]], [tests[3]]]
    assert v.rule_groups("latency_p50", tests) == []


@pytest.mark.parametrize(
    ("rule", "group", "sort", "text"),
    [
        ("error_rate", [rate_test("control"), rate_test("baseline")], "fired",
         "error rate 30% in 2 canaries vs 1% in 3 controls (p=0.001) and 1% in their baselines (p=0.001)"),
        ("error_rate", [rate_test("control"), rate_test("baseline", fired=False, breached=False)], "disputed",
         "error rate 30% in 2 canaries vs 1% in 3 controls (p=0.001), but not against their baselines"),
        ("error_rate", [rate_test("control", standing=False)], "improving",
         "error rate 30% in 2 canaries vs 1% in 3 controls (p=0.001), but no longer in the last slice"),
        ("cache_hit_ratio", [rate_test("control", rule="cache_hit_ratio")], "reported",
         "cache hit ratio 30% in 2 canaries vs 1% in 3 controls (threshold -25 points)"),
        ("error_rate", [rate_test("control", fired=False)], "weak",
         "error rate 30% in 2 canaries vs 1% in 3 controls (p=0.001) (not significant: does not decide)"),
        ("error_rate", [rate_test("control", fired=False, breached=False)], None, None),
        ("error_rate", [rate_test("control", evaluated=False)], None, None),
    ],
)
def test_findings_weigh_a_group_by_how_much_it_decides(rule, group, sort, text):
    found = v._Findings(LABELS, v.thresholds_of(None))
    found.weigh(rule, group)
    sorts = ("fired", "disputed", "improving", "reported", "weak")
    assert [name for name in sorts if getattr(found, name)] == ([sort] if sort else [])
    if sort == "weak":
        assert found.weak == [text]
    elif sort:
        assert getattr(found, sort)[0][:2] == (rule, text)


def test_findings_reasons_go_from_what_decides_to_what_does_not():
    found = v._Findings(LABELS, v.thresholds_of(None))
    found.weigh("error_rate", [rate_test("control", fired=False)])
    found.weigh("latency_p99", [rate_test("control", rule="latency_p99")])
    found.weigh("cache_hit_ratio", [rate_test("control", rule="cache_hit_ratio")])
    assert [reason.split(" ")[0] for reason in found.reasons()] == ["p99", "cache", "error"]
    assert found.reasons()[1].endswith("(reported; does not decide alone)")


def probe(name, state="unhealthy", failing=()) -> dict:
    return dict(name=name, state=state, failure=None, failing=list(failing), provider=False)


@pytest.mark.parametrize(
    ("controls", "expected"),
    [
        ([], "there is no control Engine to compare with: blamed on the release."),
        ([probe("c1", "unknown")], "no control Engine could be probed (c1): blamed on the release."),
        ([probe("c1", failing=["database=error"]), probe("c2", "healthy")],
         "1 of 2 control Engines are unhealthy (c1: database=error), which is not a provider outage (that needs 2 "
         "with llm_provider failing): blamed on the release."),
        ([probe("c1", "healthy")], "the 1 control Engine that were not upgraded are healthy: a bad release."),
    ],
)
def test_no_outage_why(controls, expected):
    probed = [p for p in controls if p["state"] != "unknown"]
    bad = [p for p in probed if p["state"] == "unhealthy"]
    assert v._no_outage_why(controls, probed, bad, len(probed) // 2 + 1) == expected
