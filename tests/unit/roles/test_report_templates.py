# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Markdown report templates of engine_upgrade and engine_rollback, rendered with strict undefined variables.

The system tests render them for the runs they make; these cover every status and outcome, including the ones a
real run rarely reaches (a rollback that failed too, an unwind, an Engine with no measures at all).
"""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

ROLES = Path(__file__).resolve().parents[3] / "roles"


def render(role: str, name: str, **context: object) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROLES / role / "templates")),
                             undefined=jinja2.StrictUndefined, trim_blocks=True)
    return env.get_template(name).render(**context)


MEASURES = {"turns": 90, "error_rate": 0.3778, "latency_p50_ms": 985.0, "latency_p99_ms": 1107.0,
            "cache_hit_ratio": 0.0988}
BASELINE = {"turns": 191, "error_rate": 0.0, "latency_p50_ms": 256.0, "latency_p99_ms": 287.0,
            "cache_hit_ratio": 0.7481}


def engine(status: str, **extra: object) -> dict:
    entry = {
        "engine": "u001", "batch": 1, "from_version": "2.3.0", "to_version": "2.4.2", "status": status,
        "decision": "rollback", "reason": "verify: measures: error rate 37.8% vs 0.0% | x",
        "snapshot": {"name": "pre-upgrade-2.3.0-to-2.4.2-r1", "sha256": "ab" * 32, "path": "/s/p.sqlite"},
        "rollback": {"to_version": "2.3.0", "brain_restored": True, "snapshot": "pre-upgrade-2.3.0-to-2.4.2-r1",
                     "previous_brain": {"name": "brain-pre-restore", "path": "/s/brain-pre-restore.sqlite"}},
        "rollback_kind": "image+brain", "data_at_risk": {"tasks": 42, "conversations": 84},
        "timings": {"drain_seconds": 0.3, "switch_seconds": 0.6, "healthy_seconds": 2.6, "bake_seconds": 20.4},
        "measures": {"before": BASELINE, "after": MEASURES,
                     "verdict": {"decision": "rollback", "reasons": ["error rate 37.8% vs 0.0%"],
                                 "new_warning_kinds": ["ERROR agent: turn failed"], "enough_turns": True}},
        "evals": {"before": {"passed": 16, "total": 16}, "after": {"passed": 7, "total": 16},
                  "verdict": {"decision": "rollback", "reasons": ["9 eval case(s) that passed before now fail"]}},
        "diagnostics": "/r/run/diagnostics/u001",
    }
    entry.update(extra)
    return entry


def report(outcome: str, engines: list, **extra: object) -> dict:
    out = {"run_id": "r1", "target_version": "2.4.2", "check_mode": False, "batches": [1, 1, 2], "batches_run": 1,
           "stopped": outcome.startswith("stopped"), "unwound": False, "outcome": outcome, "outage": None,
           "written_at": "2026-11-21T23:15:38Z", "engines": engines, "untouched": ["c001", "u002"],
           "plan": {"canaries": []}, "undecided_policy": {"canary": "rollback", "later": "proceed"}, "lost": [],
           "promoted_undecided": []}
    out.update(extra)
    return out


def test_a_rolled_back_canary_shows_its_measures_evals_rollback_and_data_at_risk() -> None:
    text = render("engine_upgrade", "report.md.j2",
                  __engine_upgrade_report=report("stopped_rolled_back", [engine("rolled_back")]))
    assert "**stopped_rolled_back**: STOPPED in batch 1" in text
    assert "| error rate | 0.0% | 37.8% |" in text and "| p99 latency ms | 287.0 | 1107.0 |" in text
    assert "Evals: 16/16 passed before, 7/16 after: **rollback**" in text
    assert "brain restored from `pre-upgrade-2.3.0-to-2.4.2-r1`" in text
    assert "Data at risk (rows written between the snapshot and the restore, kept in that brain): tasks: 42" in text
    assert "Not touched by this run: c001, u002" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| u001 |")]
    assert row.endswith("error rate 37.8% vs 0.0% / x |")  # a | in a reason would break the table


@pytest.mark.parametrize("status", ["upgraded", "verified", "failed", "rollback_failed", "unwound", "stopped_outage",
                                    "planned", "held", "rolled_back"])
def test_every_status_renders_even_without_measures(status: str) -> None:
    bare = engine(status, snapshot=None, rollback=None, rollback_kind="none", data_at_risk=None, timings={},
                  measures={"before": None, "after": None, "verdict": None},
                  evals={"before": None, "after": None, "verdict": None}, diagnostics=None, reason="")
    for outcome in ("completed", "in_progress", "stopped_rolled_back", "stopped_outage", "stopped_failed", "undecided",
                    "held", "stopped_unreachable"):
        outage = "LLM provider outage on 2 of 2" if "outage" in outcome else None
        lost = ["u009"] if outcome == "stopped_unreachable" else []
        text = render("engine_upgrade", "report.md.j2",
                      __engine_upgrade_report=report(outcome, [bare], outage=outage, lost=lost,
                                                     unwound=status == "unwound"))
        assert f"| u001 | 1 | 2.3.0 | 2.4.2 | {status} |" in text
        assert f"**{outcome}**" in text
        assert ("Outage: LLM provider outage" in text) is (outage is not None)
        assert ("Lost mid-upgrade" in text and "u009" in text) is bool(lost)


def test_an_undecided_canary_says_what_evidence_was_missing_and_the_policy() -> None:
    verdict = {"decision": "undecided", "rule": None, "missing": ["the canary cohort saw 3 turns (20 needed)"],
               "evidence": {"canary": {"engines": 1, "turns": 3, "error_rate": 0.0},
                            "control": {"engines": 5, "turns": 0, "error_rate": None}, "baseline": None}}
    entry = engine("rolled_back", evidence="undecided", verdict=verdict, measures={"before": None, "after": None,
                                                                                   "verdict": None})
    plan = {"canaries": [{"engine": "u001", "why": "allowlisted (group engine_canary)"}]}
    text = render("engine_upgrade", "report.md.j2", __engine_upgrade_report=report(
        "undecided", [entry], plan=plan, undecided_policy={"canary": "rollback", "later": "proceed"},
        promoted_undecided=[]))
    assert "Canary u001: allowlisted (group engine_canary)" in text
    assert "If the canary is undecided: rollback; a later batch:\n  proceed" in text
    assert "**undecided**: STOPPED in batch 1: not enough evidence" in text
    assert "- Missing evidence: the canary cohort saw 3 turns (20 needed)" in text
    assert ("Verdict of its batch: **undecided**: 3 turns in 1 upgraded Engines (0.0% errors) vs 0 turns in 5 "
            "controls") in text


def test_the_rollback_report_lists_rollbacks_failures_and_engines_not_reached() -> None:
    rolled = {"engine": "u001", "rolled_back": True, "from_version": "2.4.0", "to_version": "2.3.0",
              "kind": "image+brain", "snapshot": "pre-upgrade-2.3.0-to-2.4.0-r1",
              "previous_brain": {"path": "/s/brain-pre-restore.sqlite"}, "data_at_risk": {"tasks": 3},
              "healthy": True, "reason": "requested"}
    already = {**rolled, "engine": "c001", "rolled_back": False, "kind": "none", "snapshot": None,
               "previous_brain": None, "data_at_risk": None}
    text = render("engine_rollback", "rollback.md.j2", __engine_rollback_report={
        "run_id": "r2", "check_mode": False, "written_at": "2026-11-21T23:15:38Z", "engines": [rolled, already],
        "failed": [{"engine": "u002", "reason": "no previous release | recorded"}], "not_reached": ["c002"]})
    assert "Rolled back: 1, already on the release asked for:\n  1, FAILED: 1, not reached: 1" in text
    assert ("| u001 | 2.4.0 | 2.3.0 | image+brain | pre-upgrade-2.3.0-to-2.4.0-r1 | /s/brain-pre-restore.sqlite "
            "| tasks: 3 |") in text
    assert "| c001 | 2.4.0 | 2.3.0 | none | - | - | - |" in text
    assert "| u002 | | | FAILED | | | | | no previous release / recorded |" in text
    assert "Not reached (the run stopped first): c002" in text
    checked = render("engine_rollback", "rollback.md.j2", __engine_rollback_report={
        "run_id": "r3", "check_mode": True, "written_at": "2026-11-21T23:15:38Z", "engines": [rolled],
        "failed": [], "not_reached": []})
    assert "(check mode: nothing was changed)\n- Would roll back: 1, already" in checked


def test_the_rollback_report_says_per_table_what_the_bad_window_wrote_and_what_was_replayed() -> None:
    replay = {"mode": "replay", "mode_reason": "additive", "bad_window": {"path": "/s/kept.sqlite"},
              "tables": {
                  "tasks": {"written_in_bad_window": {"inserted": 12, "updated": 1, "deleted": 0},
                            "replayed": {"inserted": 12, "updated": 1}, "already_there": 0, "not_replayable": []},
                  "memory_tags": {"written_in_bad_window": {"inserted": 4, "updated": 0, "deleted": 0},
                                  "replayed": {"inserted": 0, "updated": 0}, "already_there": 0,
                                  "not_replayable": [{"reason": "table not in the old schema", "count": 4}]}}}
    rolled = {"engine": "u001", "rolled_back": True, "from_version": "2.4.2", "to_version": "2.3.0",
              "kind": "image+brain", "snapshot": "s", "previous_brain": {"path": "/s/kept.sqlite"},
              "data_at_risk": None, "healthy": True, "reason": "verify", "replay": replay}
    failed = {**rolled, "engine": "u002", "replay": {"mode": "replay", "error": "disk full"}}
    plain = {**rolled, "engine": "u003", "replay": None}
    text = render("engine_rollback", "rollback.md.j2", __engine_rollback_report={
        "run_id": "r3", "check_mode": False, "written_at": "2026-12-05T11:00:00Z", "engines": [rolled, failed, plain],
        "failed": [], "not_reached": []})
    assert "## What the failed release wrote in its bad window" in text
    assert "u001: replay (additive); the bad-window brain is kept in /s/kept.sqlite" in text
    assert "| tasks | 12 / 1 / 0 | 12 / 1 | 0 | - |" in text
    assert "| memory_tags | 4 / 0 / 0 | 0 / 0 | 0 | 4 (table not in the old schema) |" in text
    assert "u002: replay; FAILED: disk full; the bad-window brain is kept in -" in text
    assert "u003:" not in text and text.count("## What the failed release") == 1
