# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The upgrade role's decisions, as pure functions (the role only acts on what they return).

- ``engine_decision``: after an Engine's verification (health, bake, cohort verdict), what becomes of it:
  keep it, roll it back, hold it, or stop for an outage; with the policy for an undecided verdict.
- ``bake_done``: whether the canary cohort has seen enough to stop baking.
- ``rollout_outcome``: the run's outcome after a batch, from the Engines' results and the plan, including the
  Engines the plan put in the batch that never reported back (lost: unreachable mid-upgrade).
"""

from __future__ import annotations

POLICIES = ("rollback", "hold", "proceed")
OUTCOMES = ("completed", "in_progress", "stopped_rolled_back", "stopped_outage", "stopped_failed", "undecided",
            "held", "stopped_unreachable")
#: Statuses of an Engine that leave it in the rollout (the rest stop the rollout).
GOOD = ("upgraded", "verified", "planned")


def _text(value) -> str:
    return "" if value is None else str(value)


def engine_decision(engine: str, health: dict | None, verdict: dict | None, policy: str = "rollback",
                    canary: bool = True) -> dict:
    """What to do with one switched Engine, from its health after the switch and the bake, and the verdict.

    ``health``: the last engine_health result (its ``health`` dict or the registered result); ``verdict``: the
    engine_verdict ``verdict`` of the Engine's cohort (None when the checks are off). ``policy``: what an
    undecided verdict leads to (rollback, hold or proceed). Returns ``decision`` (keep, rollback, hold,
    stop_outage), ``evidence`` (pass, fail, undecided, health, off, outage), ``reason``, ``must_fail`` (the host
    ends failed: the rollout stops) and ``policy`` when it was applied.
    """
    if policy not in POLICIES:
        raise ValueError(f"the undecided policy must be one of {', '.join(POLICIES)} (got {policy!r})")
    if isinstance(health, dict) and isinstance(health.get("health"), dict):
        health = health["health"]
    if health is not None and not health.get("is_healthy"):
        detail = health.get("failure_detail") or health.get("failure") or "not healthy"
        return dict(decision="rollback", evidence="health", reason=f"verify: health: {detail}", must_fail=True,
                    policy=None)
    if not verdict:
        return dict(decision="keep", evidence="off", reason="", must_fail=False, policy=None)
    mine = (verdict.get("engines") or {}).get(engine) or {}
    if verdict.get("outage"):
        why = _text(verdict.get("symptom")) or "; ".join(verdict.get("reasons") or []) or "provider outage"
        return dict(decision="stop_outage", evidence="outage", reason=f"verify: {why}", must_fail=True, policy=None)
    for scope, found in (("cohort", verdict), ("engine", mine)):
        if found.get("decision") == "fail":
            symptom = _text(found.get("symptom")) or "; ".join(found.get("reasons") or []) or found.get("rule")
            where = "" if scope == "engine" else "the batch: "
            return dict(decision="rollback", evidence="fail", reason=f"verify: {where}{symptom}", must_fail=True,
                        policy=None)
    # The cohort's pooled evidence judges the release: an idle canary in a cohort that passed passes with it.
    if verdict.get("decision") == "pass" or mine.get("decision") == "pass":
        return dict(decision="keep", evidence="pass", reason="", must_fail=False, policy=None)
    missing = verdict.get("missing") or mine.get("missing") or verdict.get("reasons") or ["no evidence"]
    why = f"undecided: {'; '.join(missing)}"
    if policy == "proceed":
        return dict(decision="keep", evidence="undecided", reason=f"{why} (promoted: policy proceed)",
                    must_fail=False, policy=policy)
    if policy == "hold":
        return dict(decision="hold", evidence="undecided", reason=f"{why} (held: policy hold)", must_fail=True,
                    policy=policy)
    return dict(decision="rollback", evidence="undecided", reason=f"verify: {why} (rolled back: policy rollback)",
                must_fail=True, policy=policy)


def bake_done(verdict: dict | None, healths: list, round_no: int, rounds: int) -> dict:
    """Whether the batch stops baking after round ``round_no`` (1-based) of at most ``rounds``.

    Done when the verdict decided (pass or fail, or an outage), when an Engine of the batch is unhealthy (its
    rollback must not wait for the others' bake), or after the last round.
    """
    unhealthy = []
    for item in healths:
        health = item.get("health") if isinstance(item, dict) and isinstance(item.get("health"), dict) else item
        if isinstance(health, dict) and health.get("is_healthy") is False:
            unhealthy.append(item.get("engine") if isinstance(item, dict) and item.get("engine") else "?")
    decided = bool(verdict) and (verdict.get("decision") in ("pass", "fail") or bool(verdict.get("outage")))
    if unhealthy:
        why = f"unhealthy: {', '.join(map(str, unhealthy))}"
    elif decided:
        why = "verdict outage" if verdict.get("outage") else f"verdict {verdict.get('decision')}"
    elif round_no >= rounds:
        why = "the longest bake is over"
    else:
        why = ""
    return dict(done=bool(why), why=why, round=round_no, rounds=rounds)


def bake_rounds(first_seconds: int, max_seconds: int) -> dict:
    """The bake's rounds: the first lasts ``first_seconds``, the next ones as long (30 s when that is 0), until
    ``max_seconds`` (never less than the first)."""
    first = max(0, int(first_seconds))
    longest = max(first, int(max_seconds))
    step = first if first > 0 else 30
    extra = 0 if longest <= first else -(-(longest - first) // step)
    return dict(first=first, step=step, rounds=1 + extra, max_seconds=longest)


def _status(result: dict) -> str:
    return (result or {}).get("status") or "failed"


def rollout_outcome(results: list, batch_hosts: list, batch_no: int, batches: int) -> dict:
    """The run's outcome after batch ``batch_no`` of ``batches``.

    ``results``: the ``engine_upgrade_result`` of every Engine that has one (any batch); ``batch_hosts``: the
    Engines the plan put in this batch. An Engine of the batch without a result was lost mid-upgrade (its host
    became unreachable: Ansible runs neither rescue nor always for it); a re-run finds it and finishes or rolls
    it back.
    """
    batch = set(batch_hosts)
    in_batch = [r for r in results if r.get("engine") in batch and int(r.get("batch") or 0) == int(batch_no)]
    reported = {r.get("engine") for r in in_batch}
    lost = sorted(batch - reported)
    statuses = [_status(r) for r in in_batch]
    bad = [r for r in in_batch if _status(r) not in GOOD]
    undecided = [r for r in bad if r.get("evidence") == "undecided"]
    if lost:
        outcome = "stopped_unreachable"
    elif not bad:
        outcome = "completed" if int(batch_no) >= int(batches) else "in_progress"
    elif "stopped_outage" in statuses:
        outcome = "stopped_outage"
    elif undecided and len(undecided) == len(bad):
        outcome = "held" if all(_status(r) == "held" for r in undecided) else "undecided"
    elif any(s in ("rolled_back", "rollback_failed") for s in statuses):
        outcome = "stopped_rolled_back"
    else:
        outcome = "stopped_failed"
    return dict(outcome=outcome, stopped=bool(lost or bad), lost=lost,
                failed=[r.get("engine") for r in bad], undecided=[r.get("engine") for r in undecided])
