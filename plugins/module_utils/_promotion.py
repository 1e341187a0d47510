# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A rollout paused after its canary (``engine_rollout_pause_after_canary``), found again by the run that promotes or
aborts it (``engine_rollout_promote`` / ``engine_rollout_abort``).

The paused run ends with outcome ``awaiting_promotion``: its report (``<report dir>/<run id>/upgrade.json``) and its
AWX artifact (``set_stats`` ``september_engine_upgrade``, which an AWX workflow passes on to the next job as an extra
variable) name the run id, the target and the canaries with the release each came from. The next run finds the
paused rollout in the artifact when it has one, else in the newest report for the target, and:

- promote: continues the same rollout (same run id, same plan; the canaries are already on the target, so their
  pre-flight finds nothing to do);
- abort: rolls the canaries back to the release each came from (the rollback restores the brain when a migration
  ran, and replays what was written since).

Pure functions, unit-tested: the plan module calls them on the controller.
"""

from __future__ import annotations

import json
import os

from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError

AWAITING = "awaiting_promotion"


def action_of(promote: bool, abort: bool) -> str:
    """What the run does: ``abort``, ``promote`` or a plain ``upgrade``."""
    if abort:
        return "abort"
    return "promote" if promote else "upgrade"


def paused_record(report: dict) -> dict:
    """What a promotion or an abort needs of a paused run's report or artifact: ``run_id``, ``target_version``,
    ``canaries`` (``[{engine, from_version}]``, the Engines of the canary batch that were upgraded)."""
    canaries = report.get("canaries")
    if canaries is None:  # a report: the canary batch's upgraded Engines
        canaries = [
            {"engine": e.get("engine"), "from_version": e.get("from_version")}
            for e in report.get("engines") or []
            if int(e.get("batch") or 0) == 1 and e.get("status") in ("upgraded", "verified")
        ]
    return {
        "run_id": str(report.get("run_id") or ""),
        "target_version": str(report.get("target_version") or ""),
        "canaries": [dict(c) for c in canaries if c.get("engine")],
    }


def _reports(report_dir: str) -> list[dict]:
    """Every run report under ``report_dir`` that can be read, newest first (by the time it was written)."""
    found = []
    try:
        names = os.listdir(report_dir)
    except OSError:
        return []
    for name in names:
        path = os.path.join(report_dir, name, "upgrade.json")
        try:
            with open(path, encoding="utf-8") as handle:
                report = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(report, dict):
            found.append((str(report.get("written_at") or ""), os.path.getmtime(path), report))
    return [report for _at, _mtime, report in sorted(found, key=lambda item: (item[0], item[1]), reverse=True)]


def find_paused(report_dir: str, target_version: str, artifact: dict | None = None, run_id: str = "") -> dict:
    """The rollout to ``target_version`` that awaits promotion: from ``artifact`` (the paused job's AWX artifact)
    when it is one, else the newest report in ``report_dir`` for that target (and ``run_id`` when given). Raises
    OptionsError saying what was found when nothing awaits promotion (nothing changes then)."""
    target = str(target_version)
    if isinstance(artifact, dict) and artifact.get("outcome") == AWAITING:
        record = paused_record(artifact)
        if record["target_version"] == target and (not run_id or record["run_id"] == run_id):
            return record
    candidates = [
        r for r in _reports(report_dir)
        if str(r.get("target_version")) == target and (not run_id or str(r.get("run_id")) == run_id)
    ]
    which = f"run {run_id}" if run_id else f"a rollout to {target}"
    if not candidates:
        raise OptionsError(
            f"engine_rollout_promote / engine_rollout_abort: no report of {which} in {report_dir}, so nothing awaits "
            f"promotion. Pause a rollout first (engine_rollout_pause_after_canary=true), or point engine_report_dir "
            f"(or engine_run_id) at the paused run. Nothing was changed."
        )
    newest = candidates[0]
    if newest.get("outcome") != AWAITING:
        raise OptionsError(
            f"engine_rollout_promote / engine_rollout_abort: the newest report of {which} (run {newest.get('run_id')}, "
            f"written {newest.get('written_at')}) says {newest.get('outcome')!r}, not {AWAITING!r}: nothing awaits "
            f"promotion (already promoted, aborted or stopped). Run upgrade.yml without them. Nothing was changed."
        )
    record = paused_record(newest)
    if not record["canaries"]:
        raise OptionsError(
            f"engine_rollout_promote / engine_rollout_abort: run {record['run_id']} awaits promotion but names no "
            f"upgraded canary; look at {report_dir}/{record['run_id']}/upgrade.md. Nothing was changed."
        )
    return record


def check_promotion(paused: dict, first_batch: list) -> list[str]:
    """The problems of promoting ``paused`` with a plan whose canary batch is ``first_batch`` (empty: none). The
    plan must start with the same canaries, or the promotion would not continue the same rollout."""
    canaries = sorted(c["engine"] for c in paused["canaries"])
    if sorted(first_batch) != canaries:
        return [
            f"engine_rollout_promote: the plan's canary batch ({', '.join(first_batch) or 'none'}) is not the paused "
            f"run's canaries ({', '.join(canaries)}, run {paused['run_id']}): run it with the same inventory, "
            f"engine_hosts, --limit and engine_rollout_stages as the paused run."
        ]
    return []


def abort_report(paused_report: dict | None, paused: dict, rollbacks: dict, written_at: str) -> dict:
    """The run report after an abort: the paused run's report (or a minimal one) with outcome ``aborted`` and each
    canary ``unwound`` with its rollback (``rollbacks``: engine -> engine_rollback_result, or None when it failed)."""
    report = {
        # What the report template reads, for a paused run whose report is not on this controller (an AWX job).
        "check_mode": False, "batches": [len(paused["canaries"])], "batches_run": 1, "lost": [], "outage": None,
        "plan": {"canaries": [{"engine": c["engine"], "why": "the paused run's canary"} for c in paused["canaries"]]},
        "undecided_policy": {"canary": "-", "later": "-"}, "promoted_undecided": [], "untouched": [],
        **(paused_report or {}),
    }
    report.update(run_id=paused["run_id"], target_version=paused["target_version"], outcome="aborted", stopped=True,
                  unwound=True, written_at=written_at)
    engines = [dict(e) for e in report.get("engines") or []]
    known = {e.get("engine") for e in engines}
    nothing = {"before": None, "after": None, "verdict": None}
    engines += [dict(engine=c["engine"], batch=1, from_version=c.get("from_version"),
                     to_version=paused["target_version"], status="upgraded", decision="keep", evidence=None,
                     snapshot=None, timings={}, measures=dict(nothing), evals=dict(nothing), diagnostics=None,
                     data_at_risk=None)
                for c in paused["canaries"] if c["engine"] not in known]
    for entry in engines:
        if entry.get("engine") in rollbacks:
            rollback = rollbacks[entry["engine"]]
            entry.update(status="unwound" if rollback else "rollback_failed", rollback=rollback,
                         reason="aborted after the canary (engine_rollout_abort)",
                         rollback_kind=(rollback or {}).get("kind") or "none")
    report["engines"] = engines
    return report
