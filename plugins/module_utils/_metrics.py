# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What an Engine's turns looked like in a time window, and whether that is bad enough to roll back.

Pure functions (no Docker, no files): parse the Engine's JSON log lines, or its ``observability_events``
rows, into turns; measure a window (error rate, latency percentiles and a bounded list of latencies,
prompt-cache hit ratio, WARNING and worse log kinds); reach further back when a window is thin; compare the
measures with a baseline as the Rollback runbook says; and count the rows a restore takes away. The cohort
verdict and the outage-or-bad-release question are in _verdict.py.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3

from ansible_collections.september.engine.plugins.module_utils._timeutil import iso as _iso
from ansible_collections.september.engine.plugins.module_utils._timeutil import parse_time

# What the Engine logs per turn (logger, message) and per request (logger).
TURN_LOGGER = "agent"
TURN_COMPLETED = "turn completed"
TURN_FAILED = "turn failed"
HTTP_LOGGER = "http"
EXECUTE_PATH = "/execute"
REPORTED_LEVELS = ("WARNING", "ERROR", "CRITICAL")

DEFAULT_THRESHOLDS = dict(
    min_turns=20,
    error_rate_max_increase=0.10,
    error_rate_factor=2.0,
    error_rate_floor=0.01,
    latency_p99_factor=2.0,
    latency_p50_factor=2.0,
    cache_hit_ratio_max_drop=0.25,
    fail_on_new_warnings=False,
    fail_on_cache_drop=False,
)

#: The thresholds of doc_fragments/_thresholds.py: when error rate and latency count as sharply worse.
RATE_THRESHOLDS = ("error_rate_max_increase", "error_rate_factor", "error_rate_floor", "latency_p50_factor",
                   "latency_p99_factor")


def thresholds_argument_spec() -> dict:
    """Options of doc_fragments/_thresholds.py (engine_metrics, engine_verdict)."""
    return {name: dict(type="float", default=DEFAULT_THRESHOLDS[name]) for name in RATE_THRESHOLDS}


DEFAULT_BRAIN_EVENTS = dict(
    table="observability_events",
    type_column="event_type",
    time_column="created_at",
    latency_column="latency_ms",
    input_tokens_column="input_tokens",
    output_tokens_column="output_tokens",
    cache_hit_tokens_column="cache_hit_tokens",
    error_column="error_code",
    completed_type="turn_completed",
    failed_type="turn_failed",
)

# Keys every measures dict has (a baseline is checked against them).
MEASURE_KEYS = ("turns", "failed_turns", "refused_turns", "error_rate", "latency_samples", "latency_p50_ms",
                "latency_p99_ms", "cache_hit_ratio")


# ---------------------------------------------------------------- time


def iso(epoch: float) -> str:
    """ISO 8601 UTC with milliseconds, as the Engine writes it: ``2026-01-31T12:00:00.123Z``."""
    return _iso(epoch, "milliseconds")


def slice_bounds(since: float, until: float, count: int) -> list[tuple[float, float]]:
    """`count` equal, adjacent [since, until) slices of a window."""
    width = (until - since) / count
    return [(since + i * width, until if i == count - 1 else since + (i + 1) * width) for i in range(count)]


def in_window(items: list[dict], since: float, until: float) -> list[dict]:
    """The items whose ``ts`` is in [since, until)."""
    return [item for item in items if since <= item["ts"] < until]


def lookback_lengths(window_seconds: float, max_seconds: float) -> list[float]:
    """Window lengths tried when a window is thin: doubling from `window_seconds`, the last one `max_seconds`."""
    lengths, length = [], float(window_seconds)
    while length < max_seconds:
        length = min(length * 2, float(max_seconds))
        lengths.append(length)
    return lengths


def reach_back(turns: list[dict], until: float, window_seconds: float, max_seconds: float, min_turns: int) -> float:
    """The start of the shortest window ending at `until` (doubling from `window_seconds`, at most `max_seconds`)
    that holds `min_turns` of `turns`; the longest one when none does."""
    since = until - window_seconds
    for length in lookback_lengths(window_seconds, max_seconds):
        since = until - length
        if len(in_window(turns, since, until)) >= min_turns:
            break
    return since


# ---------------------------------------------------------------- log lines


def parse_log_lines(text) -> list[dict]:
    """The Engine's JSON log lines (objects with a parseable ``timestamp``) with ``ts`` added; others ignored."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    entries = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        try:
            entry["ts"] = parse_time(entry.get("timestamp"))
        except (ValueError, OverflowError):
            continue
        if not isinstance(entry.get("extra"), dict):
            entry["extra"] = {}
        entries.append(entry)
    return entries


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE)
_HEX_ID = re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{12,}\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:[.:]\d+)*")
_LIST = re.compile(r"<n>(?:\s*,\s*<n>)+")
KIND_MAX_CHARS = 200


def normalise_message(message: str) -> str:
    """A message with its variable parts (quoted values, ids, numbers, versions) replaced by placeholders."""
    text = _QUOTED.sub("<v>", str(message))
    text = _UUID.sub("<id>", text)
    text = _HEX_ID.sub("<id>", text)
    text = _NUMBER.sub("<n>", text)
    text = _LIST.sub("<n>", text)
    return " ".join(text.split())[:KIND_MAX_CHARS]


def log_kind(entry: dict) -> str:
    """``LEVEL logger: normalised message[: ERROR_CODE]``, so that lines of one kind group together."""
    message = normalise_message(entry.get("message") or "")
    code = entry["extra"].get("error") if isinstance(entry.get("extra"), dict) else None
    if isinstance(code, str) and code and code not in message:
        message = f"{message}: {code}"
    return f"{str(entry.get('level') or '?').upper()} {entry.get('logger') or '?'}: {message}"


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def log_turns(entries: list[dict]) -> list[dict]:
    """Turns from log lines: ``turn completed`` / ``turn failed`` agent lines, and POST /execute refused with 5xx."""
    turns = []
    for entry in entries:
        extra = entry["extra"]
        logger, message = entry.get("logger"), entry.get("message")
        if logger == TURN_LOGGER and message in (TURN_COMPLETED, TURN_FAILED):
            failed = message == TURN_FAILED
            turns.append(dict(
                ts=entry["ts"],
                outcome="failed" if failed else "completed",
                code=(str(extra.get("error") or "UNKNOWN")) if failed else None,
                latency_ms=_number(extra.get("latency_ms")),
                input_tokens=_number(extra.get("input_tokens")),
                output_tokens=_number(extra.get("output_tokens")),
                cache_hit_tokens=_number(extra.get("cache_hit_tokens")),
            ))
        elif logger == HTTP_LOGGER and extra.get("path") == EXECUTE_PATH and extra.get("method") == "POST":
            status = extra.get("status")
            if isinstance(status, int) and status >= 500:  # a turn that ran answered 200 whatever its outcome
                turns.append(dict(ts=entry["ts"], outcome="refused", code=f"HTTP_{status}", latency_ms=None,
                                  input_tokens=None, output_tokens=None, cache_hit_tokens=None))
    return turns


def warning_kinds(entries: list[dict]) -> dict:
    """{kind: count} of the WARNING, ERROR and CRITICAL lines."""
    counts: dict = {}
    for entry in entries:
        if str(entry.get("level") or "").upper() in REPORTED_LEVELS:
            kind = log_kind(entry)
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


# ---------------------------------------------------------------- brain rows


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def brain_turns(conn: sqlite3.Connection, events: dict, since: float, until: float) -> list[dict]:
    """Turns in [since, until) from the brain's event rows (`events` names the table, columns and types).

    Raises LookupError (with what exists) when the table or a column is missing.
    """
    cfg = {**DEFAULT_BRAIN_EVENTS, **{k: v for k, v in (events or {}).items() if v}}
    table = cfg["table"]
    columns = [row[1] for row in conn.execute(f"PRAGMA table_info({_quote(table)})")]
    if not columns:
        raise LookupError(f"the brain has no table '{table}'")
    wanted = [cfg[key] for key in ("time_column", "type_column", "latency_column", "input_tokens_column",
                                   "output_tokens_column", "cache_hit_tokens_column", "error_column")]
    missing = [name for name in wanted if name not in columns]
    if missing:
        raise LookupError(f"table '{table}' has no column {', '.join(missing)} (it has {', '.join(columns)})")
    time_col, type_col = _quote(cfg["time_column"]), _quote(cfg["type_column"])
    # Text comparison on ISO 8601 narrows the rows through the index; the exact window is applied below.
    sql = (f"SELECT {', '.join(_quote(name) for name in wanted)} FROM {_quote(table)} "
           f"WHERE {type_col} IN (?, ?) AND {time_col} >= ? AND {time_col} < ?")
    rows = conn.execute(sql, (cfg["completed_type"], cfg["failed_type"], iso(since - 1), iso(until + 1)))
    turns = []
    for moment, kind, latency, input_tokens, output_tokens, cache_hit, error in rows:
        try:
            ts = parse_time(moment)
        except (ValueError, OverflowError):
            continue
        if not since <= ts < until:
            continue
        failed = kind == cfg["failed_type"]
        turns.append(dict(ts=ts, outcome="failed" if failed else "completed",
                          code=(str(error or "UNKNOWN")) if failed else None, latency_ms=_number(latency),
                          input_tokens=_number(input_tokens), output_tokens=_number(output_tokens),
                          cache_hit_tokens=_number(cache_hit)))
    return turns


# ---------------------------------------------------------------- measures


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# The most latencies a measures dict lists (for rank tests and pooled percentiles across Engines).
LATENCIES_MAX = 200


def latency_list(values: list[float], limit: int = LATENCIES_MAX) -> list[float]:
    """`values` sorted, or `limit` of them at evenly spaced ranks (a quantile sketch) when there are more."""
    ordered = sorted(values)
    if len(ordered) > limit:
        step = len(ordered) / limit
        ordered = [ordered[min(len(ordered) - 1, int((i + 0.5) * step))] for i in range(limit)]
    return [_ms(v) for v in ordered]


def measure(turns: list[dict], entries: list[dict] | None = None, source: str = "logs") -> dict:
    """The measures of one window: turns, failures, error rate, latency percentiles, cache hit ratio, log kinds.

    `entries` are the window's log lines (None for the brain: it has no log kinds). ``latencies_ms`` lists the
    latencies (sorted; a quantile sketch of LATENCIES_MAX values when there are more) for the cohort verdict.
    """
    completed = [t for t in turns if t["outcome"] == "completed"]
    failed = [t for t in turns if t["outcome"] == "failed"]
    refused = [t for t in turns if t["outcome"] == "refused"]
    by_code: dict = {}
    for turn in failed + refused:
        by_code[turn["code"]] = by_code.get(turn["code"], 0) + 1
    latencies = [t["latency_ms"] for t in completed + failed if t["latency_ms"] is not None]
    with_usage = [t for t in turns if t["input_tokens"] is not None]
    input_tokens = int(sum(t["input_tokens"] for t in with_usage))
    cache_hits = int(sum(t["cache_hit_tokens"] or 0 for t in with_usage))
    return dict(
        source=source,
        turns=len(turns),
        completed_turns=len(completed),
        failed_turns=len(failed),
        refused_turns=len(refused),
        error_rate=round((len(failed) + len(refused)) / len(turns), 4) if turns else None,
        errors_by_code=dict(sorted(by_code.items())),
        latency_samples=len(latencies),
        latency_p50_ms=_ms(percentile(latencies, 50)),
        latency_p95_ms=_ms(percentile(latencies, 95)),
        latency_p99_ms=_ms(percentile(latencies, 99)),
        latency_max_ms=_ms(max(latencies) if latencies else None),
        latencies_ms=latency_list(latencies),
        input_tokens=input_tokens,
        output_tokens=int(sum(t["output_tokens"] or 0 for t in with_usage)),
        cache_hit_tokens=cache_hits,
        cache_hit_ratio=round(cache_hits / input_tokens, 4) if input_tokens else None,
        log_lines=None if entries is None else len(entries),
        warning_kinds=None if entries is None else warning_kinds(entries),
    )


def check_measures(value, what: str = "baseline") -> dict:
    """`value` as a measures dict (also accepted: the whole `metrics` dict or a registered result); ValueError."""
    if isinstance(value, dict) and isinstance(value.get("metrics"), dict):
        value = value["metrics"]
    if isinstance(value, dict) and isinstance(value.get("measures"), dict):
        value = value["measures"]
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a dict, the metrics.measures of an earlier engine_metrics run "
                         f"(got {type(value).__name__})")
    missing = [key for key in MEASURE_KEYS if key not in value]
    if missing:
        raise ValueError(f"{what} is not the metrics.measures of an engine_metrics run: it lacks "
                         f"{', '.join(missing)} (it has {', '.join(sorted(map(str, value))) or 'nothing'})")
    for key in ("turns", "failed_turns", "refused_turns", "latency_samples"):
        if isinstance(value[key], bool) or not isinstance(value[key], int) or value[key] < 0:
            raise ValueError(f"{what}.{key} must be a whole number of 0 or more (got {value[key]!r})")
    for key in ("error_rate", "latency_p50_ms", "latency_p99_ms", "cache_hit_ratio"):
        if value[key] is not None and _number(value[key]) is None:
            raise ValueError(f"{what}.{key} must be a number or null (got {value[key]!r})")
    kinds = value.get("warning_kinds")
    if kinds is not None and not isinstance(kinds, dict):
        raise ValueError(f"{what}.warning_kinds must be a dict of log kinds or null (got {type(kinds).__name__})")
    return value


# ---------------------------------------------------------------- verdict


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _lat(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def _error_breach(m: dict, limit: float, min_turns: int) -> bool | None:
    """Whether the error rate of `m` is over `limit` (None: too few turns to tell). One failure never is."""
    if m["turns"] < max(min_turns, 1) or m["error_rate"] is None:
        return None
    return m["error_rate"] > limit and m["failed_turns"] + m["refused_turns"] >= 2


def _latency_breach(m: dict, key: str, limit: float, min_samples: int) -> bool | None:
    if m[key] is None or m["latency_samples"] < max(min_samples, 1):
        return None
    return m[key] > limit


def _check(baseline, current, threshold, breached, decisive, rule):
    return dict(baseline=baseline, current=current, threshold=threshold, rule=rule, breached=bool(breached),
                decisive=bool(decisive and breached), last_slice=None, last_slice_breached=None)


def _error_rate_check(baseline: dict, current: dict, t: dict, enough: bool, last_slice: dict | None,
                      slice_min: int) -> dict:
    """The error-rate check: over both the baseline plus error_rate_max_increase and error_rate_factor times it."""
    rate_b = baseline["error_rate"]
    rate_limit = max((rate_b or 0) + t["error_rate_max_increase"],
                     t["error_rate_factor"] * max(rate_b or 0, t["error_rate_floor"]))
    rule = f"+{t['error_rate_max_increase'] * 100:g} points, x{t['error_rate_factor']:g}"
    breached = enough and rate_b is not None and _error_breach(current, rate_limit, t["min_turns"])
    check = _check(rate_b, current["error_rate"], round(rate_limit, 4), breached, True, rule)
    if breached and last_slice is not None:
        check.update(last_slice=last_slice["error_rate"],
                     last_slice_breached=_error_breach(last_slice, rate_limit, slice_min))
    return check


def _latency_check(key: str, factor: float, baseline: dict, current: dict, min_turns: int, enough: bool,
                   last_slice: dict | None, slice_min: int) -> dict:
    """One latency percentile's check: over `factor` times the baseline's; decisive from min_turns latencies on."""
    base = baseline[key]
    limit = None if base is None else round(base * factor, 1)
    breached = enough and limit is not None and _latency_breach(current, key, limit, 1)
    reliable = current["latency_samples"] >= min_turns and baseline["latency_samples"] >= min_turns
    check = _check(base, current[key], limit, breached, reliable, f"x{factor:g}")
    if breached and last_slice is not None:
        check.update(last_slice=last_slice[key], last_slice_breached=_latency_breach(last_slice, key, limit, slice_min))
    return check


def compare(baseline: dict, current: dict, thresholds: dict | None = None, last_slice: dict | None = None,
            slices: int = 1) -> dict:
    """The verdict on `current` measures against `baseline` ones, as the Rollback runbook says.

    Roll back when the error rate or the latency is sharply worse than the baseline (both an absolute and a
    relative threshold for the error rate, a factor for p50 and p99 latency) and not improving: with
    `last_slice` (the measures of the last of `slices` slices of the window) the breach must still be there at
    the end, or the last slice has too few turns (min_turns / slices) to show a recovery.
    Never on one outlier: fewer than `min_turns` turns (in the window or the baseline) decide nothing, a
    single failed turn never decides, a percentile from fewer than `min_turns` latencies never decides alone.
    A drop of the cache hit ratio and new WARNING/ERROR log kinds are reasons next to a breach, and decide
    alone only with `fail_on_cache_drop` / `fail_on_new_warnings`.
    """
    t = {**DEFAULT_THRESHOLDS, **{k: v for k, v in (thresholds or {}).items() if v is not None}}
    min_turns = t["min_turns"]
    slice_min = math.ceil(min_turns / max(slices, 1))
    checks: dict = {}

    enough = current["turns"] >= min_turns and baseline["turns"] >= min_turns
    rate_b, rate_c = baseline["error_rate"], current["error_rate"]
    checks["error_rate"] = _error_rate_check(baseline, current, t, enough, last_slice, slice_min)
    for name, key, factor in (("latency_p99", "latency_p99_ms", t["latency_p99_factor"]),
                              ("latency_p50", "latency_p50_ms", t["latency_p50_factor"])):
        checks[name] = _latency_check(key, factor, baseline, current, min_turns, enough, last_slice, slice_min)

    base, cur = baseline["cache_hit_ratio"], current["cache_hit_ratio"]
    limit = None if base is None else round(base - t["cache_hit_ratio_max_drop"], 4)
    breached = enough and limit is not None and cur is not None and cur < limit
    checks["cache_hit_ratio"] = _check(base, cur, limit, breached, t["fail_on_cache_drop"],
                                       f"-{t['cache_hit_ratio_max_drop'] * 100:g} points")

    base_kinds, cur_kinds = baseline.get("warning_kinds"), current.get("warning_kinds")
    new_kinds = sorted(set(cur_kinds) - set(base_kinds)) if base_kinds is not None and cur_kinds is not None else []
    checks["new_warnings"] = _check(len(base_kinds or {}), len(cur_kinds or {}), 0, bool(new_kinds),
                                    t["fail_on_new_warnings"], "no WARNING/ERROR/CRITICAL kind the baseline lacks")

    texts = dict(
        error_rate=f"error rate {_pct(rate_c)} vs {_pct(rate_b)} baseline (threshold {checks['error_rate']['rule']})",
        latency_p99=f"p99 latency {_lat(current['latency_p99_ms'])} vs {_lat(baseline['latency_p99_ms'])} baseline "
                    f"(threshold x{t['latency_p99_factor']:g})",
        latency_p50=f"p50 latency {_lat(current['latency_p50_ms'])} vs {_lat(baseline['latency_p50_ms'])} baseline "
                    f"(threshold x{t['latency_p50_factor']:g})",
        cache_hit_ratio=f"cache hit ratio {_pct(cur)} vs {_pct(base)} baseline "
                        f"(threshold -{t['cache_hit_ratio_max_drop'] * 100:g} points)",
        new_warnings=f"new log kinds the baseline did not have: {'; '.join(new_kinds)}",
    )
    standing, improving, supporting = [], [], []
    for name, check in checks.items():
        if not check["breached"]:
            continue
        if not check["decisive"]:
            supporting.append(name)
        elif check["last_slice_breached"] is False:
            improving.append(name)
        else:  # breached in the last slice too, too few turns there to show a recovery, or no slices
            standing.append(name)

    reasons = [texts[name] for name in standing]
    for name in supporting:
        why = f"from fewer than {min_turns} latencies: " if name.startswith("latency") else "reported; "
        reasons.append(f"{texts[name]} ({why}does not decide alone)")
    for name in improving:
        shown = _pct if name == "error_rate" else _lat
        reasons.append(f"{texts[name]}, but improving: {shown(checks[name]['last_slice'])} in the last slice")
    if not enough:
        short = [f"{current['turns']} in the window" if current["turns"] < min_turns else None,
                 f"{baseline['turns']} in the baseline" if baseline["turns"] < min_turns else None]
        reasons.insert(0, f"not enough turns to decide: {', '.join(s for s in short if s)} "
                          f"({min_turns} needed, min_turns)")
    return dict(
        decision="rollback" if standing else "ok",
        reasons=reasons,
        symptom="; ".join(texts[name] for name in standing) or None,
        checks=checks,
        new_warning_kinds=new_kinds,
        enough_turns=enough,
    )
