# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Rollback runbook's "Post-rollback" steps, drafted from what the run recorded: a postmortem and a regression eval.

Pure functions (no Docker, no files), run on the controller by the filters ``postmortem_draft`` and
``regression_eval_case`` when the upgrade writes an Engine's diagnostics bundle:

- :func:`postmortem_draft`: Markdown for the postmortem ticket: the run's timeline with timestamps (planned,
  pre-flight, baseline, snapshot, switch, the new release's own log lines, health, bake, verdict, decision,
  rollback, healthy again), the symptoms, the measures before and after, the decision and its reason, what data was
  at risk and what was replayed, and what the runbook asks next.
- :func:`regression_eval_case`: a proposed eval set in docs/evals.md's format, one case per failed turn of the bad
  window (the user message when the Engine logged it, else a placeholder naming the task to look up), marked
  "proposed; review before adding".

Both take the diagnostics record (the ``diagnostics_record`` filter's dict: the Engine's record in the run report
plus its full measures, verdict, evals, rollback and kept brain) and the bad window's log lines (engine_logs).
"""

from __future__ import annotations

import json
import re
from datetime import datetime

from ansible_collections.september.engine.plugins.module_utils._metrics import (
    EXECUTE_PATH,
    HTTP_LOGGER,
    REPORTED_LEVELS,
    TURN_FAILED,
    TURN_LOGGER,
    log_kind,
    log_turns,
    measure,
    parse_log_lines,
)
from ansible_collections.september.engine.plugins.module_utils._timeutil import UTC, iso, parse_time

PROPOSED = "proposed; review before adding"
#: Where an Engine may log the user's message of a turn (the reference Engine logs none).
MESSAGE_KEYS = ("message", "user_message", "prompt", "input")
#: Log lines of the new release worth a line of the timeline of their own (logger, message start).
MILESTONES = (
    ("engine", "engine starting"),
    ("migrations", "applied migration"),
    ("migrations", "brain schema up to date"),
    ("engine", "engine ready"),
    ("engine", "engine started degraded"),
)
MAX_CASES = 10
_RUN_TIME = re.compile(r"^(\d{8}T\d{6}Z)")


def _get(data, *keys):
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _ts(value) -> float | None:
    try:
        return parse_time(value) if value not in (None, "") else None
    except (ValueError, OverflowError):
        return None


def _lines(lines) -> list[dict]:
    if lines is None:
        return []
    if isinstance(lines, (list, tuple)):
        lines = "\n".join(str(line) for line in lines)
    return parse_log_lines(lines)


# ---------------------------------------------------------------- the failed turns of the bad window


def _logged_message(extra: dict) -> str | None:
    for key in MESSAGE_KEYS:
        value = extra.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def failed_turns(entries: list[dict]) -> list[dict]:
    """The turns that failed (``turn failed``) or were refused (POST /execute answered 5xx) in the log lines, in order:
    ``ts``, ``kind`` (the error code, ``HTTP_<status>`` for a refused turn), ``detail``, ``task_id``, ``request_id``,
    ``conversation_id`` and ``message`` (the user's, when the Engine logged it)."""
    found = []
    for entry in entries:
        extra = entry["extra"]
        logger, text = entry.get("logger"), entry.get("message")
        if logger == TURN_LOGGER and text == TURN_FAILED:
            kind, detail = str(extra.get("error") or "UNKNOWN"), extra.get("detail")
        elif (
            logger == HTTP_LOGGER
            and extra.get("path") == EXECUTE_PATH
            and extra.get("method") == "POST"
            and isinstance(extra.get("status"), int)
            and extra["status"] >= 500
        ):
            kind, detail = f"HTTP_{extra['status']}", f"POST /execute answered {extra['status']}"
        else:
            continue
        found.append(
            dict(
                ts=entry["ts"],
                kind=kind,
                detail=detail,
                task_id=entry.get("task_id"),
                request_id=entry.get("request_id"),
                conversation_id=extra.get("conversation_id"),
                message=_logged_message(extra),
            )
        )
    return found


def _by_kind(turns: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for turn in turns:
        counts[turn["kind"]] = counts.get(turn["kind"], 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


# ---------------------------------------------------------------- the timeline


class _Timeline:
    """Events in the run's order. An event without a time happened after the timed one before it and just before the
    timed one after it; a log line goes in by its time, before such untimed events."""

    def __init__(self):
        self.events: list[tuple[float | None, str]] = []

    def add(self, ts, text: str) -> None:
        self.events.append((_ts(ts), text))

    def merge(self, log_events: list[tuple[float, str]]) -> list[tuple[float | None, str]]:
        merged = list(self.events)
        for ts, text in sorted(log_events, key=lambda event: event[0]):
            index = next((i for i, (when, _t) in enumerate(merged) if when is not None and when > ts), len(merged))
            while index > 0 and merged[index - 1][0] is None:
                index -= 1
            merged.insert(index, (ts, text))
        return merged


def _plan_events(timeline: _Timeline, diag: dict, now: float | None) -> None:
    run_id = str(diag.get("run_id") or "")
    match = _RUN_TIME.match(run_id)
    planned = datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) if match else None
    timeline.add(planned.timestamp() if planned else None, f"run {run_id or '?'} planned (rollout_plan)")
    started = now - diag["seconds"] if now is not None and isinstance(diag.get("seconds"), (int, float)) else None
    origin = diag.get("from_version") or "?"
    timeline.add(
        started,
        f"pre-flight of {diag.get('engine')} (batch {diag.get('batch')}): lock, health, images, migrations; "
        f"action {diag.get('action') or '?'} from {origin} to {diag.get('to_version')}",
    )
    window = _get(diag, "measures_before", "window") or {}
    before = _get(diag, "measures_before", "measures") or {}
    if window:
        timeline.add(
            window.get("end"),
            f"baseline measured: {before.get('turns', 0)} turns over {window.get('seconds')} s "
            f"({_pct(before.get('error_rate'))} errors)",
        )
    snapshot = diag.get("snapshot") or {}
    if snapshot.get("name"):
        timeline.add(None, f"pre-upgrade snapshot {snapshot['name']} taken and verified")


def _switch_events(timeline: _Timeline, diag: dict) -> float | None:
    switched = _ts(diag.get("switched_at"))
    timings = diag.get("timings") or {}
    if switched is None:
        return None
    took = sum(v for v in (timings.get("drain_seconds"), timings.get("switch_seconds")) if isinstance(v, (int, float)))
    timeline.add(switched - took if took else None, f"drain and switch began ({diag.get('image') or '?'})")
    timeline.add(
        switched,
        f"switched to {diag.get('to_version')} (drain {timings.get('drain_seconds')} s, switch "
        f"{timings.get('switch_seconds')} s)",
    )
    healthy = timings.get("healthy_seconds")
    if isinstance(healthy, (int, float)):
        timeline.add(switched + healthy, f"healthy on {diag.get('to_version')} ({healthy} s after the switch)")
        bake = timings.get("bake_seconds")
        if isinstance(bake, (int, float)):
            timeline.add(switched + healthy + bake, f"bake ended after {bake} s")
    elif diag.get("step") == "verify" and diag.get("evidence") == "health":
        timeline.add(None, f"never healthy on {diag.get('to_version')} within the health wait")
    return switched


def _decision_events(timeline: _Timeline, diag: dict) -> None:
    verdict = diag.get("verdict") or {}
    if verdict.get("decision"):
        rule = f" ({verdict['rule']})" if verdict.get("rule") else ""
        timeline.add(None, f"verdict: {verdict['decision']}{rule}")
    timeline.add(None, f"decision: {diag.get('decision')} ({diag.get('evidence')}): {diag.get('reason') or '-'}")
    rollback = diag.get("rollback") or {}
    if not rollback:
        return
    recorded = rollback.get("release_record") or {}
    timings = rollback.get("timings") or {}
    timeline.add(recorded.get("started_at"), f"rollback began (to {rollback.get('to_version')})")
    if rollback.get("brain_restored"):
        took = f" ({timings['restore_seconds']} s)" if timings.get("restore_seconds") is not None else ""
        timeline.add(None, f"brain restored from {rollback.get('snapshot')}{took}")
    back = _ts(recorded.get("rolled_back_at"))
    timeline.add(back, f"switched back to {rollback.get('image')} ({rollback.get('kind')})")
    if rollback.get("healthy"):
        healthy = timings.get("healthy_seconds")
        if not isinstance(healthy, (int, float)):
            healthy = _get(rollback, "health", "elapsed")  # the health wait after the switch back
        when = back + healthy if back is not None and isinstance(healthy, (int, float)) else None
        timeline.add(when, f"healthy again on {rollback.get('to_version')}")
    elif rollback.get("healthy") is False:
        timeline.add(None, f"NOT healthy after the rollback ({_get(rollback, 'health', 'failure')})")


def _log_events(entries: list[dict], turns: list[dict]) -> list[tuple[float, str]]:
    events = []
    for entry in entries:
        logger, text = entry.get("logger"), str(entry.get("message") or "")
        if any(logger == name and text.startswith(start) for name, start in MILESTONES):
            version = entry["extra"].get("version")
            events.append((entry["ts"], f"log: {logger}: {text}{f' ({version})' if version else ''}"))
        elif logger == "engine" and "draining" in text:
            events.append((entry["ts"], f"log: {logger}: {text}"))
    seen: dict[str, int] = {}
    for entry in entries:
        level = str(entry.get("level") or "").upper()
        if level in REPORTED_LEVELS and not (
            entry.get("logger") == TURN_LOGGER and entry.get("message") == TURN_FAILED
        ):
            kind = log_kind(entry)
            seen[kind] = seen.get(kind, 0) + 1
            if seen[kind] == 1:
                events.append((entry["ts"], f"log: first {kind}"))
    if turns:
        events.append((turns[0]["ts"], f"first failed turn: {turns[0]['kind']}"))
        if len(turns) > 1:
            events.append((turns[-1]["ts"], f"last failed turn ({len(turns)} in all): {turns[-1]['kind']}"))
    return events


def timeline(diag: dict, entries: list[dict], now: float | None = None) -> list[tuple[float | None, str]]:
    """The run of one Engine, in order: (epoch seconds or None when not recorded, what happened)."""
    line = _Timeline()
    _plan_events(line, diag, now)
    _switch_events(line, diag)
    _decision_events(line, diag)
    return line.merge(_log_events(entries, failed_turns(entries)))


# ---------------------------------------------------------------- the postmortem draft


def _pct(value) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{value * 100:.1f}%"


def _ms(value) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{value:.0f} ms"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


MEASURE_ROWS = (
    ("turns", "turns", str),
    ("error rate", "error_rate", _pct),
    ("failed / refused", None, None),
    ("latency p50", "latency_p50_ms", _ms),
    ("latency p99", "latency_p99_ms", _ms),
    ("cache hit ratio", "cache_hit_ratio", _pct),
)


def _measure_cell(measures: dict | None, key, show) -> str:
    if not measures:
        return "-"
    if key is None:
        return f"{measures.get('failed_turns', 0)} / {measures.get('refused_turns', 0)}"
    value = measures.get(key)
    return "-" if value is None else _cell(show(value))


def _measures_table(diag: dict, bad: dict | None) -> list[str]:
    before = _get(diag, "measures", "before") or _get(diag, "measures_before", "measures")
    after = _get(diag, "measures", "after") or _get(diag, "measures_after", "measures")
    out = ["| measure | before (baseline) | after (bake) | bad window (logs) |", "|---|---|---|---|"]
    for label, key, show in MEASURE_ROWS:
        cells = [_measure_cell(part, key, show) for part in (before, after, bad)]
        out.append(f"| {label} | {' | '.join(cells)} |")
    for label, part in (("the bake", after), ("the bad window's logs", bad)):
        codes = (part or {}).get("errors_by_code") or {}
        if codes:
            out.append("")
            out.append(f"Errors by code in {label}: " + ", ".join(f"`{k}` {v}" for k, v in sorted(codes.items())))
    return out


def _symptoms(diag: dict, entries: list[dict], turns: list[dict]) -> list[str]:
    out = [f"- Why the upgrade failed: {diag.get('reason') or 'not recorded'}"]
    symptom = _get(diag, "verdict", "symptom")
    if symptom:
        out.append(f"- Verdict ({_get(diag, 'verdict', 'decision')}): {symptom}")
    for reason in _get(diag, "evals_after", "verdict", "reasons") or []:
        out.append(f"- Evals: {reason}")
    if turns:
        kinds = ", ".join(f"`{kind}` x{count}" for kind, count in _by_kind(turns).items())
        out.append(f"- {len(turns)} turn(s) failed or were refused in the bad window: {kinds}")
    kinds: dict[str, int] = {}
    for entry in entries:
        if str(entry.get("level") or "").upper() in REPORTED_LEVELS:
            kind = log_kind(entry)
            kinds[kind] = kinds.get(kind, 0) + 1
    for kind, count in sorted(kinds.items(), key=lambda item: (-item[1], item[0]))[:8]:
        out.append(f"- log: `{_cell(kind)}` x{count}")
    return out


def _data_lines(diag: dict) -> list[str]:
    rollback = diag.get("rollback") or {}
    out = []
    if not rollback:
        return ["- Not rolled back: nothing was restored."]
    if rollback.get("brain_restored"):
        out.append(
            f"- The brain was restored from `{rollback.get('snapshot')}`: what the failed release wrote after that "
            "snapshot is not in the Engine's brain now."
        )
    else:
        out.append("- The brain was not restored (image-only rollback): what the failed release wrote stays.")
    risk = diag.get("data_at_risk") or rollback.get("data_at_risk")
    if risk:
        out.append(
            "- Rows written in the bad window (kept in the replaced brain): "
            + ", ".join(f"`{table}` {rows}" for table, rows in sorted(risk.items()))
        )
    kept = diag.get("bad_window_brain") or {}
    if kept.get("path"):
        out.append(f"- The bad window's brain is kept on {kept.get('host')}: `{kept['path']}`")
    replay = rollback.get("replay") or {}
    if replay.get("error"):
        out.append(f"- Replay ({replay.get('mode')}) failed: {replay['error']}")
    elif replay:
        totals = replay.get("totals") or {}
        out.append(f"- Replay ({replay.get('mode')}): " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
        for table, row in sorted((replay.get("tables") or {}).items()):
            if isinstance(row, dict) and row.get("not_replayable"):
                out.append(f"  - `{table}`: not replayable: {row.get('reason') or row.get('not_replayable')}")
    return out


def _decision_lines(diag: dict) -> list[str]:
    rollback = diag.get("rollback") or {}
    out = [
        f"- Decision: **{diag.get('decision')}** on evidence `{diag.get('evidence')}`"
        + (f" (undecided policy {diag['policy']})" if diag.get("policy") else ""),
        f"- Reason: {diag.get('reason') or '-'}",
    ]
    if rollback:
        out.append(
            f"- Rolled back to {rollback.get('to_version')} ({rollback.get('kind')}), "
            f"healthy: {rollback.get('healthy')}"
            + (
                f"; the failed container is kept as `{rollback['failed_container']}`"
                if rollback.get("failed_container")
                else ""
            )
        )
        recorded = rollback.get("release_record") or {}
        if recorded:
            out.append(
                f"- Release {recorded.get('release')} is recorded as rolled back on {recorded.get('docker_host')} "
                f"(`{recorded.get('path')}`): upgrade.yml refuses it until acknowledged with "
                "engine_upgrade_allow_rolled_back_release=true and engine_upgrade_rolled_back_release_reason."
            )
    return out


def _stamp(ts: float | None) -> str:
    return iso(ts, "milliseconds") if ts is not None else "(time not recorded)"


def postmortem_draft(diag: dict, lines=None, now=None, eval_file: str = "regression-eval.proposed.yml") -> str:
    """The postmortem draft of one Engine's failed upgrade, Markdown (see the module docstring)."""
    if not isinstance(diag, dict):
        raise TypeError("postmortem_draft takes the diagnostics record (a dict, the diagnostics_record filter's)")
    entries = _lines(lines)
    turns = failed_turns(entries)
    bad = measure(log_turns(entries), entries) if entries else None
    engine, release = diag.get("engine"), diag.get("to_version")
    out = [
        f"# Postmortem draft: {release} on {engine} (run {diag.get('run_id')})",
        "",
        "> DRAFT written by september.engine from the run's record: check the facts, then add the root cause, the "
        "impact on users and the follow-ups. Times are UTC; an event whose time the run did not record has none.",
        "",
        f"- Engine: {engine} ({diag.get('identity') or '?'}), {diag.get('deployment')}, batch {diag.get('batch')}",
        f"- Upgrade: {diag.get('from_version')} -> {release} ({diag.get('image')}); status **{diag.get('status')}**",
        "",
        "## Timeline",
        "",
    ]
    out += [f"- {_stamp(ts)} {_cell(text)}" for ts, text in timeline(diag, entries, _ts(now))]
    out += ["", "## Symptoms", "", *_symptoms(diag, entries, turns), "", "## Measures before and after", ""]
    out += _measures_table(diag, bad)
    out += ["", "## Decision", "", *_decision_lines(diag), "", "## Data at risk and replayed", "", *_data_lines(diag)]
    out += [
        "",
        "## Next (the Rollback runbook's Post-rollback)",
        "",
        "- [ ] Root cause of what broke (don't redeploy in panic).",
        "- [ ] File this postmortem as a ticket: impact, root cause, fix, follow-ups.",
        f"- [ ] Review the proposed regression eval `{eval_file}` and add it to the eval set "
        "(engine_upgrade_evals_file), so that the exact failure mode is a permanent test case.",
        f"- [ ] Fix forward; upgrade to a fixed release, or to {release} once acknowledged.",
        "",
    ]
    return "\n".join(out)


# ---------------------------------------------------------------- the proposed regression eval


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "case"


def _case(turn: dict, number: int, release: str, engine: str) -> dict:
    where = f"task {turn['task_id']}" if turn.get("task_id") else f"request {turn.get('request_id') or '?'}"
    description = (
        f"{PROPOSED}. On {release} ({engine}) this turn failed with {turn['kind']}"
        f"{': ' + str(turn['detail']) if turn.get('detail') else ''} at {iso(turn['ts'], 'milliseconds')} ({where})."
    )
    if turn.get("message"):
        message = turn["message"]
    else:
        lookup = (
            f"the message of {where} in the kept bad-window brain (tasks.message)"
            if turn.get("task_id")
            else "the message that was refused (not logged; from the client's side)"
        )
        message = f"REPLACE ME: {lookup}"
        description += " The Engine does not log user messages: replace the message before adding the case."
    case = dict(name=f"regression-{_slug(release)}-{_slug(turn['kind'])}-{number}", description=description)
    case["message"] = message
    if turn.get("conversation_id"):
        case["conversation_id"] = str(turn["conversation_id"])[:200]
    # The turn failed with an error: the case fails again on any error event or refusal (engine_eval), and passes on
    # any answer. Tighten the check to the answer you expect when you review it.
    case["checks"] = [{"regex": r"\S"}]
    return case


def _pick(turns: list[dict], limit: int) -> list[dict]:
    """Up to ``limit`` turns, in time order: one per distinct logged message and kind, and one per kind among the
    turns whose message was not logged (placeholders of one kind would all be alike)."""
    seen, picked = set(), []
    for turn in turns:
        key = (turn["kind"], turn.get("message"))
        if key not in seen:
            seen.add(key)
            picked.append(turn)
    return picked[:limit]


def eval_document(diag: dict, lines=None, max_cases: int = MAX_CASES) -> dict:
    """The proposed eval set as a mapping (docs/evals.md), with the failed turns it was built from counted."""
    entries = _lines(lines)
    turns = failed_turns(entries)
    release, engine = str(diag.get("to_version") or "release"), str(diag.get("engine") or "engine")
    cases = [_case(turn, number, release, engine) for number, turn in enumerate(_pick(turns, max_cases), start=1)]
    kinds = ", ".join(f"{kind} x{count}" for kind, count in _by_kind(turns).items()) or "none"
    return dict(
        version=1,
        description=(
            f"PROPOSED; review before adding: regression cases from the rollback of {release} on {engine} "
            f"(run {diag.get('run_id')}); failed turns in the bad window: {kinds}"
        ),
        cases=cases,
    )


def regression_eval_case(diag: dict, lines=None, max_cases: int = MAX_CASES) -> str:
    """The proposed regression eval set (YAML text in docs/evals.md's format), from the bad window's failed turns.

    Every case says it is proposed; a message the Engine did not log is a placeholder to replace. Without a failed
    turn in the logs the set has no case (an empty ``cases`` list, which engine_eval refuses until one is written)."""
    if not isinstance(diag, dict):
        raise TypeError("regression_eval_case takes the diagnostics record (a dict, the diagnostics_record filter's)")
    document = eval_document(diag, lines, max_cases)
    header = [
        f"# PROPOSED regression eval ({PROPOSED}): built by september.engine from the failed turns of",
        f"# {diag.get('engine')} on {diag.get('to_version')} in the bad window of run {diag.get('run_id')}.",
        "# Check each case's message and checks, then add the cases to your eval set (docs/evals.md).",
    ]
    if not document["cases"]:
        header.append("# No failed turn was logged in the bad window: write the case from the postmortem's symptoms.")
    try:
        import yaml  # noqa: PLC0415  (the controller has PyYAML; JSON, which is YAML too, otherwise)

        body = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120)
    except ImportError:
        body = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return "\n".join(header) + "\n" + body
