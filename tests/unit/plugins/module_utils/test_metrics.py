# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The pure helpers of engine_metrics: log lines, windows, measures, the verdict, outages and data at risk."""

from __future__ import annotations

import json
import sqlite3

import pytest

from ansible_collections.september.engine.plugins.module_utils import _metrics as m

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def line(ts: float, level="INFO", logger="agent", message="turn completed", task_id="t", **extra) -> str:
    return json.dumps(dict(timestamp=m.iso(ts), level=level, logger=logger, request_id="r", task_id=task_id,
                           message=message, extra=extra))


def turn_line(ts, failed=False, latency=250, error="TOOL_EXECUTION_FAILED", input_tokens=405, cache=303):
    extra = dict(latency_ms=latency, input_tokens=input_tokens, output_tokens=8, cache_hit_tokens=cache)
    if failed:
        return line(ts, "ERROR", message="turn failed", error=error, detail="x", **extra)
    return line(ts, **extra)


def refused_line(ts, status=502):
    return line(ts, logger="http", message=f"POST /execute {status}", task_id=None, method="POST", path="/execute",
                status=status, duration_ms=1.0)


def measures_of(lines):
    entries = m.parse_log_lines("\n".join(lines))
    return m.measure(m.log_turns(entries), entries)


def healthy(n=40, latency=250, start=T0):
    return [turn_line(start + i * 0.5, latency=latency + i % 10) for i in range(n)]


# ---------------------------------------------------------------- time and windows


@pytest.mark.parametrize("value, expected", [
    (T0, T0),
    (int(T0), T0),
    (str(T0), T0),
    ("1800000000", T0),
    ("2027-01-15T08:00:00Z", T0),
    ("2027-01-15T08:00:00.000Z", T0),
    ("2027-01-15T08:00:00+00:00", T0),
    ("2027-01-15T09:00:00+01:00", T0),
    ("2027-01-15T08:00:00", T0),
    ("2027-01-15T08:00:00.250Z", T0 + 0.25),
])
def test_parse_time(value, expected):
    assert m.parse_time(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", [None, True, "", "yesterday", "2027-13-45T00:00:00Z", [1]])
def test_parse_time_refuses(value):
    with pytest.raises(ValueError):
        m.parse_time(value)


def test_iso_round_trips():
    assert m.iso(T0 + 0.123) == "2027-01-15T08:00:00.123Z"
    assert m.parse_time(m.iso(T0 + 0.123)) == pytest.approx(T0 + 0.123)


@pytest.mark.parametrize("count, expected", [
    (1, [(0, 90)]),
    (3, [(0, 30), (30, 60), (60, 90)]),
    (2, [(0, 45), (45, 90)]),
])
def test_slice_bounds(count, expected):
    assert m.slice_bounds(0, 90, count) == expected


def test_in_window_is_half_open():
    items = [dict(ts=t) for t in (9.999, 10, 15, 20, 20.001)]
    assert [i["ts"] for i in m.in_window(items, 10, 20)] == [10, 15]


# ---------------------------------------------------------------- log lines


def test_parse_log_lines_ignores_what_is_not_a_json_log_line():
    text = "\n".join([
        "Traceback (most recent call last):",
        "   ",
        "{not json",
        "[1, 2]",
        json.dumps({"level": "INFO", "message": "no timestamp"}),
        json.dumps({"timestamp": "garbage", "message": "bad timestamp"}),
        json.dumps({"timestamp": m.iso(T0), "level": "INFO", "message": "extra is not a dict", "extra": "x"}),
        turn_line(T0 + 1),
    ])
    entries = m.parse_log_lines(text.encode())
    assert [e["message"] for e in entries] == ["extra is not a dict", "turn completed"]
    assert entries[0]["extra"] == {} and entries[1]["ts"] == pytest.approx(T0 + 1)


@pytest.mark.parametrize("message, expected", [
    ("turn failed", "turn failed"),
    ("drain timed out: 3 turns abandoned", "drain timed out: <n> turns abandoned"),
    ("7 turns were interrupted by the previous shutdown", "<n> turns were interrupted by the previous shutdown"),
    ("MIGRATION_REQUIRED: the brain holds migrations 0006, 0007 that version 2.3.0 does not ship",
     "MIGRATION_REQUIRED: the brain holds migrations <n> that version <n> does not ship"),
    ("unhandled error during boot: KeyError: 'turn_metrics_retention_days'",
     "unhandled error during boot: KeyError: <v>"),
    ('could not record the task "abc"', "could not record the task <v>"),
    ("task 94256a14-2355-43c0-b567-fc3589bb51d7 stuck", "task <id> stuck"),
    ("request e5622af8a54a4c918897fd80d9b2b5b5 slow", "request <id> slow"),
    ("took 12.5 s at 10:01:02", "took <n> s at <n>"),
    ("  spaced   out  ", "spaced out"),
])
def test_normalise_message(message, expected):
    assert m.normalise_message(message) == expected


@pytest.mark.parametrize("entry, expected", [
    (dict(level="ERROR", logger="agent", message="turn failed", extra={"error": "TOOL_EXECUTION_FAILED"}),
     "ERROR agent: turn failed: TOOL_EXECUTION_FAILED"),
    (dict(level="warning", logger="llm", message="prompt cache miss: system prompt changed", extra={}),
     "WARNING llm: prompt cache miss: system prompt changed"),
    (dict(level="ERROR", logger="migrations", message="MIGRATION_REQUIRED: holds 0006", extra={
        "error": "MIGRATION_REQUIRED"}), "ERROR migrations: MIGRATION_REQUIRED: holds <n>"),
    (dict(level="WARNING", logger="http", message="client connection lost", extra={"error": "BrokenPipeError"}),
     "WARNING http: client connection lost: BrokenPipeError"),
    (dict(message="bare", extra={}), "? ?: bare"),
])
def test_log_kind(entry, expected):
    assert m.log_kind(entry) == expected


def test_failed_turns_of_one_code_group_into_one_kind():
    lines = [turn_line(T0 + i, failed=True) for i in range(3)] + [turn_line(T0 + 4, failed=True, error="OTHER")]
    kinds = measures_of(lines)["warning_kinds"]
    assert kinds == {"ERROR agent: turn failed: OTHER": 1, "ERROR agent: turn failed: TOOL_EXECUTION_FAILED": 3}


def test_log_turns_counts_refused_executes_and_nothing_else():
    lines = [
        turn_line(T0),
        turn_line(T0 + 1, failed=True),
        refused_line(T0 + 2),
        refused_line(T0 + 3, 503),
        line(T0 + 4, logger="http", message="POST /execute 200", method="POST", path="/execute", status=200),
        line(T0 + 5, logger="http", message="POST /execute 400", method="POST", path="/execute", status=400),
        line(T0 + 6, logger="http", message="GET /health 503", method="GET", path="/health", status=503),
        line(T0 + 7, logger="http", message="POST /execute None", method="POST", path="/execute", status=None),
        line(T0 + 8, logger="agent", message="could not record the task: locked", error="DATABASE_ERROR"),
    ]
    turns = m.log_turns(m.parse_log_lines("\n".join(lines)))
    assert [(t["outcome"], t["code"]) for t in turns] == [
        ("completed", None), ("failed", "TOOL_EXECUTION_FAILED"), ("refused", "HTTP_502"), ("refused", "HTTP_503")]
    assert turns[2]["latency_ms"] is None and turns[1]["latency_ms"] == 250


# ---------------------------------------------------------------- measures


@pytest.mark.parametrize("values, q, expected", [
    ([], 50, None),
    ([5], 99, 5),
    ([1, 2, 3, 4], 50, 2),
    ([4, 3, 2, 1], 99, 4),
    (list(range(1, 101)), 95, 95),
    (list(range(1, 101)), 99, 99),
    (list(range(1, 21)), 99, 20),
])
def test_percentile_nearest_rank(values, q, expected):
    assert m.percentile(values, q) == expected


def test_measure_a_mixed_window():
    lines = ([turn_line(T0 + i, latency=200 + i) for i in range(7)]
             + [turn_line(T0 + 10, failed=True, latency=1000, cache=40), refused_line(T0 + 11)]
             + [line(T0 + 12, "WARNING", "llm", "prompt cache miss: system prompt changed")])
    got = measures_of(lines)
    assert got["turns"] == 9 and got["completed_turns"] == 7
    assert got["failed_turns"] == 1 and got["refused_turns"] == 1
    assert got["error_rate"] == pytest.approx(2 / 9, abs=1e-4)
    assert got["errors_by_code"] == {"HTTP_502": 1, "TOOL_EXECUTION_FAILED": 1}
    assert got["latency_samples"] == 8 and got["latency_p50_ms"] == 203 and got["latency_p99_ms"] == 1000
    assert got["latency_max_ms"] == 1000
    assert got["input_tokens"] == 8 * 405 and got["cache_hit_tokens"] == 7 * 303 + 40
    assert got["cache_hit_ratio"] == pytest.approx((7 * 303 + 40) / (8 * 405), abs=1e-4)
    assert got["log_lines"] == 10 and got["source"] == "logs"
    assert got["warning_kinds"] == {"ERROR agent: turn failed: TOOL_EXECUTION_FAILED": 1,
                                    "WARNING llm: prompt cache miss: system prompt changed": 1}


def test_measure_an_empty_window_and_the_brain():
    got = m.measure([], [])
    assert got["turns"] == 0 and got["error_rate"] is None and got["latency_p99_ms"] is None
    assert got["cache_hit_ratio"] is None and got["warning_kinds"] == {}
    brain = m.measure([], None, "brain")
    assert brain["warning_kinds"] is None and brain["log_lines"] is None and brain["source"] == "brain"


# ---------------------------------------------------------------- baseline input


def test_check_measures_accepts_measures_metrics_or_a_result():
    measures = measures_of(healthy())
    assert m.check_measures(measures) is measures
    assert m.check_measures({"measures": measures}) is measures
    assert m.check_measures({"changed": False, "metrics": {"measures": measures}}) is measures


@pytest.mark.parametrize("value, message", [
    ("turns: 3", "must be a dict"),
    ({}, "lacks turns"),
    ({"foo": 1}, "it has foo"),
    ({**dict.fromkeys(m.MEASURE_KEYS, 0), "turns": -1}, "turns must be a whole number"),
    ({**dict.fromkeys(m.MEASURE_KEYS, 0), "turns": "40"}, "turns must be a whole number"),
    ({**dict.fromkeys(m.MEASURE_KEYS, 0), "error_rate": "high"}, "error_rate must be a number or null"),
    ({**dict.fromkeys(m.MEASURE_KEYS, 0), "warning_kinds": ["a"]}, "warning_kinds must be a dict"),
])
def test_check_measures_refuses(value, message):
    with pytest.raises(ValueError, match=message):
        m.check_measures(value)


# ---------------------------------------------------------------- verdict


def bad_release(n=40, start=T0, fail_every=3, latency=1000):
    lines = []
    for i in range(n):
        lines.append(turn_line(start + i * 0.5, failed=i % fail_every == 0, latency=latency + i % 10, cache=40))
        lines.append(line(start + i * 0.5, "WARNING", "llm", "prompt cache miss: system prompt changed"))
    return lines


BASE = measures_of(healthy())


def test_a_healthy_release_is_ok():
    verdict = m.compare(BASE, measures_of(healthy(latency=260)))
    assert verdict["decision"] == "ok" and verdict["reasons"] == [] and verdict["new_warning_kinds"] == []
    assert verdict["enough_turns"] is True
    assert not any(check["breached"] for check in verdict["checks"].values())


def test_a_bad_release_is_rolled_back_with_its_reasons():
    current = measures_of(bad_release())
    last = measures_of(bad_release(n=14, start=T0 + 20))
    verdict = m.compare(BASE, current, None, last, slices=3)
    assert verdict["decision"] == "rollback"
    reasons = verdict["reasons"]
    assert reasons[0] == "error rate 35.0% vs 0.0% baseline (threshold +10 points, x2)"
    assert reasons[1].startswith("p99 latency 1009 ms vs 259 ms baseline (threshold x2)")
    assert any(r.startswith("cache hit ratio 9.9% vs 74.8% baseline") and "does not decide alone" in r
               for r in reasons)
    assert verdict["new_warning_kinds"] == ["ERROR agent: turn failed: TOOL_EXECUTION_FAILED",
                                            "WARNING llm: prompt cache miss: system prompt changed"]
    error = verdict["checks"]["error_rate"]
    assert error["breached"] and error["decisive"] and error["last_slice_breached"] is True
    assert error["threshold"] == 0.1 and error["baseline"] == 0.0
    assert verdict["checks"]["cache_hit_ratio"]["decisive"] is False


def test_a_fading_error_rate_is_improving_not_a_rollback():
    outage = [refused_line(T0 + i * 0.3) for i in range(20)]
    current = measures_of(outage + healthy(40, start=T0 + 10))
    last = measures_of(healthy(20, start=T0 + 20))
    verdict = m.compare(BASE, current, None, last, slices=3)
    assert verdict["decision"] == "ok"
    assert verdict["checks"]["error_rate"]["breached"] is True
    assert verdict["checks"]["error_rate"]["last_slice_breached"] is False
    assert verdict["reasons"] == [
        "error rate 33.3% vs 0.0% baseline (threshold +10 points, x2), but improving: 0.0% in the last slice"]


def test_without_slices_a_breach_stands():
    verdict = m.compare(BASE, measures_of(bad_release()))
    assert verdict["decision"] == "rollback"
    assert verdict["checks"]["error_rate"]["last_slice_breached"] is None


def test_a_last_slice_too_short_to_show_a_recovery_does_not_save_it():
    last = measures_of(healthy(3, start=T0 + 20))
    verdict = m.compare(BASE, measures_of(bad_release()), None, last, slices=3)
    assert verdict["decision"] == "rollback"
    assert verdict["checks"]["error_rate"]["last_slice_breached"] is None


@pytest.mark.parametrize("current_turns, baseline_turns, text", [
    (5, 40, "not enough turns to decide: 5 in the window (20 needed, min_turns)"),
    (40, 3, "not enough turns to decide: 3 in the baseline (20 needed, min_turns)"),
    (0, 0, "not enough turns to decide: 0 in the window, 0 in the baseline (20 needed, min_turns)"),
])
def test_too_few_turns_decide_nothing(current_turns, baseline_turns, text):
    verdict = m.compare(measures_of(healthy(baseline_turns)), measures_of(bad_release(current_turns)))
    assert verdict["decision"] == "ok" and verdict["enough_turns"] is False
    assert verdict["reasons"][0] == text
    assert not any(check["breached"] for name, check in verdict["checks"].items() if name != "new_warnings")


def test_one_failed_turn_never_decides():
    lines = [*healthy(5), turn_line(T0 + 30, failed=True)]
    current = measures_of(lines)
    verdict = m.compare(BASE, current, {"min_turns": 2})
    assert current["error_rate"] > 0.1 and verdict["decision"] == "ok"
    assert verdict["checks"]["error_rate"]["breached"] is False


@pytest.mark.parametrize("base_rate_every, current_every, breached", [
    (None, 10, False),  # 0% -> 10%: not more than +10 points
    (None, 5, True),    # 0% -> 20%
    (5, 3, False),      # 20% -> 35%: +15 points but not x2
    (10, 4, True),      # 10% -> 25%: +15 points and x2.5
])
def test_error_rate_needs_both_thresholds(base_rate_every, current_every, breached):
    def lines(every):
        return [turn_line(T0 + i, failed=bool(every) and i % every == 0) for i in range(40)]
    verdict = m.compare(measures_of(lines(base_rate_every)), measures_of(lines(current_every)))
    assert verdict["checks"]["error_rate"]["breached"] is breached
    assert verdict["decision"] == ("rollback" if breached else "ok")


def test_zero_baseline_error_rate_uses_the_floor():
    verdict = m.compare(BASE, BASE, {"error_rate_max_increase": 0.0, "error_rate_floor": 0.05})
    assert verdict["checks"]["error_rate"]["threshold"] == 0.1


def test_a_p99_from_few_latencies_does_not_decide_alone():
    # 25 turns, 20 of them refused (an outage): 5 latencies only, four times slower.
    lines = [turn_line(T0 + i, latency=1000) for i in range(5)] + [refused_line(T0 + 10 + i) for i in range(20)]
    current = measures_of(lines)
    alone = m.compare(BASE, current, {"error_rate_max_increase": 1.0})
    assert alone["decision"] == "ok"
    assert alone["checks"]["latency_p99"]["breached"] is True and alone["checks"]["latency_p99"]["decisive"] is False
    assert any("from fewer than 20 latencies: does not decide alone" in r for r in alone["reasons"])
    together = m.compare(BASE, current)
    assert together["decision"] == "rollback" and together["reasons"][0].startswith("error rate 80.0%")


@pytest.mark.parametrize("option, value, decision", [
    ("fail_on_cache_drop", False, "ok"),
    ("fail_on_cache_drop", True, "rollback"),
])
def test_cache_drop_alone(option, value, decision):
    current = measures_of([turn_line(T0 + i, cache=40) for i in range(40)])
    verdict = m.compare(BASE, current, {option: value})
    assert verdict["decision"] == decision and verdict["checks"]["cache_hit_ratio"]["breached"] is True


@pytest.mark.parametrize("fail, decision", [(False, "ok"), (True, "rollback")])
def test_new_warning_kinds_alone(fail, decision):
    current = measures_of([*healthy(), line(T0 + 1, "WARNING", "engine", "something new 42")])
    verdict = m.compare(BASE, current, {"fail_on_new_warnings": fail})
    assert verdict["new_warning_kinds"] == ["WARNING engine: something new <n>"]
    assert verdict["decision"] == decision
    assert verdict["reasons"][0].startswith("new log kinds the baseline did not have: WARNING engine")


def test_a_brain_baseline_has_no_log_kinds_to_compare():
    brain = dict(BASE, warning_kinds=None, log_lines=None, source="brain")
    verdict = m.compare(brain, measures_of(bad_release()))
    assert verdict["new_warning_kinds"] == [] and verdict["checks"]["new_warnings"]["breached"] is False


def test_thresholds_given_as_none_keep_the_defaults():
    verdict = m.compare(BASE, measures_of(bad_release()), {"latency_p99_factor": None, "min_turns": None})
    assert verdict["checks"]["latency_p99"]["rule"] == "x2" and verdict["decision"] == "rollback"


# ---------------------------------------------------------------- latency lists and reaching back


def test_measure_lists_the_latencies_sorted():
    got = measures_of([turn_line(T0 + i, latency=300 - i) for i in range(5)] + [refused_line(T0 + 9)])
    assert got["latencies_ms"] == [296, 297, 298, 299, 300] and got["latency_samples"] == 5
    assert m.measure([], [])["latencies_ms"] == []


@pytest.mark.parametrize("count, limit, expected", [
    (5, 10, [0, 1, 2, 3, 4]),
    (10, 5, [1, 3, 5, 7, 9]),
    (1000, 4, [125, 375, 625, 875]),
])
def test_latency_list_is_a_quantile_sketch_when_long(count, limit, expected):
    assert m.latency_list([float(v) for v in reversed(range(count))], limit) == expected


def test_a_long_window_lists_at_most_latencies_max():
    got = measures_of([turn_line(T0 + i * 0.1, latency=200 + i) for i in range(500)])
    lat = got["latencies_ms"]
    assert len(lat) == m.LATENCIES_MAX and lat == sorted(lat) and lat[0] >= 200 and lat[-1] <= 699
    assert got["latency_samples"] == 500


@pytest.mark.parametrize("window, maximum, expected", [
    (300, 0, []),
    (300, 300, []),
    (300, 1000, [600, 1000]),
    (300, 2400, [600, 1200, 2400]),
    (60, 200, [120, 200]),
])
def test_lookback_lengths_double_up_to_the_maximum(window, maximum, expected):
    assert m.lookback_lengths(window, maximum) == expected


def test_reach_back_stops_at_the_first_window_with_enough_turns():
    until = T0 + 3600
    turns = [dict(ts=until - 200 - i) for i in range(20)] + [dict(ts=until - 2000 - i) for i in range(30)]
    # 100 s: none; 200 s: one (at exactly until - 200); 400 s: the 20 turns of 200-219 s ago.
    assert m.reach_back(turns, until, 100, 3600, 20) == until - 400
    assert m.reach_back(turns, until, 300, 3600, 40) == until - 2400
    # Never enough: the longest window.
    assert m.reach_back(turns, until, 300, 1000, 40) == until - 1000


# ---------------------------------------------------------------- brain rows


def events_db(rows, columns="event_type, task_id, latency_ms, input_tokens, output_tokens, cache_hit_tokens, "
                            "error_code, created_at"):
    conn = sqlite3.connect(":memory:")
    conn.execute(f"CREATE TABLE observability_events (event_id INTEGER PRIMARY KEY, {columns})")
    conn.executemany("INSERT INTO observability_events (event_type, task_id, latency_ms, input_tokens, output_tokens,"
                     " cache_hit_tokens, error_code, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return conn


def test_brain_turns_reads_the_window():
    rows = [
        ("turn_started", "a", None, None, None, None, None, m.iso(T0 + 1)),
        ("turn_completed", "a", 250, 405, 8, 303, None, m.iso(T0 + 1.5)),
        ("turn_failed", "b", 900, 405, 0, 40, "TOOL_EXECUTION_FAILED", m.iso(T0 + 2)),
        ("turn_completed", "c", 260, 405, 8, 303, None, m.iso(T0 - 0.5)),
        ("turn_completed", "d", 260, 405, 8, 303, None, m.iso(T0 + 10)),
        ("turn_completed", "e", 260, 405, 8, 303, None, "not a time"),
    ]
    turns = m.brain_turns(events_db(rows), {}, T0, T0 + 10)
    assert [(t["outcome"], t["code"], t["latency_ms"]) for t in turns] == [
        ("completed", None, 250), ("failed", "TOOL_EXECUTION_FAILED", 900)]
    got = m.measure(turns, None, "brain")
    assert got["turns"] == 2 and got["error_rate"] == 0.5 and got["cache_hit_ratio"] == pytest.approx(343 / 810, 1e-3)


def test_brain_turns_with_other_names():
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE ev (kind, at, ms, tin, tout, hits, err)")
    conn.execute("INSERT INTO ev VALUES ('done', ?, 100, 10, 1, 5, NULL)", (m.iso(T0 + 1),))
    conn.execute("INSERT INTO ev VALUES ('oops', ?, 100, 10, 1, 5, 'E1')", (m.iso(T0 + 2),))
    events = dict(table="ev", type_column="kind", time_column="at", latency_column="ms", input_tokens_column="tin",
                  output_tokens_column="tout", cache_hit_tokens_column="hits", error_column="err",
                  completed_type="done", failed_type="oops")
    assert [t["code"] for t in m.brain_turns(conn, events, T0, T0 + 5)] == [None, "E1"]


@pytest.mark.parametrize("events, message", [
    ({"table": "nope"}, "the brain has no table 'nope'"),
    ({"latency_column": "ms"}, "has no column ms \\(it has event_id, event_type"),
])
def test_brain_turns_missing_table_or_column(events, message):
    with pytest.raises(LookupError, match=message):
        m.brain_turns(events_db([]), events, T0, T0 + 1)
