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


def _rules_of(symptom: str) -> list[str]:
    """The rules of a symptom: its parts separated by "; " outside parentheses (a rule's own details, such as
    "(16 times, none in 177 reference turns; p<0.0001)", stay with it)."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(symptom):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif char == ";" and depth == 0 and symptom.startswith("; ", index):
            parts.append(symptom[start:index])
            start = index + 2
    parts.append(symptom[start:])
    return [part.strip() for part in parts if part.strip()]


def short_symptom(symptom, rules: int = 3, width: int = 200) -> str:
    """A verdict's symptom ("rule text; rule text; ...") cut to its first ``rules`` rules of at most ``width``
    characters each: what a webhook line and a log line can carry. The report keeps the whole verdict."""
    parts = _rules_of(_text(symptom))
    cut = [part if len(part) <= width else part[: width - 3].rstrip() + "..." for part in parts[:rules]]
    more = len(parts) - len(cut)
    return "; ".join(cut) + (f" (and {more} more)" if more else "")


def _decided(decision: str, evidence: str, reason: str = "", must_fail: bool = True, policy=None) -> dict:
    return dict(decision=decision, evidence=evidence, reason=reason, must_fail=must_fail, policy=policy)


def _failure_symptom(found: dict, default: str) -> str:
    return short_symptom(found.get("symptom") or "; ".join(found.get("reasons") or []) or default)


def _without_verdict(evals: dict | None) -> dict:
    """The checks are off (no cohort verdict): an eval regression still rolls the Engine back."""
    found = (evals or {}).get("verdict", evals) or {}
    if found.get("decision") in ("rollback", "fail"):
        return _decided("rollback", "fail", f"verify: evals: {_failure_symptom(found, 'regressions')}")
    return _decided("keep", "off", must_fail=False)


def _undecided(verdict: dict, mine: dict, policy: str) -> dict:
    """Not enough evidence: the undecided policy applies (never a silent pass)."""
    missing = verdict.get("missing") or mine.get("missing") or verdict.get("reasons") or ["no evidence"]
    why = f"undecided: {'; '.join(missing)}"
    if policy == "proceed":
        return _decided("keep", "undecided", f"{why} (promoted: policy proceed)", must_fail=False, policy=policy)
    if policy == "hold":
        return _decided("hold", "undecided", f"{why} (held: policy hold)", policy=policy)
    return _decided("rollback", "undecided", f"verify: {why} (rolled back: policy rollback)", policy=policy)


def engine_decision(engine: str, health: dict | None, verdict: dict | None, policy: str = "rollback",
                    canary: bool = True, evals: dict | None = None) -> dict:
    """What to do with one switched Engine, from its health after the switch and the bake, and the verdict.

    ``health``: the last engine_health result (its ``health`` dict or the registered result); ``verdict``: the
    engine_verdict ``verdict`` of the Engine's cohort (None when the checks are off). ``policy``: what an
    undecided verdict leads to (rollback, hold or proceed). ``evals``: the Engine's engine_eval ``eval`` after the
    switch (or its ``verdict``): with the checks off there is no cohort verdict, and an eval regression still
    rolls the Engine back (with the checks on, the cohort verdict weighs the evals). Returns ``decision`` (keep,
    rollback, hold, stop_outage), ``evidence`` (pass, fail, undecided, health, off, outage), ``reason``,
    ``must_fail`` (the host ends failed: the rollout stops) and ``policy`` when it was applied.
    """
    if policy not in POLICIES:
        raise ValueError(f"the undecided policy must be one of {', '.join(POLICIES)} (got {policy!r})")
    if isinstance(health, dict) and isinstance(health.get("health"), dict):
        health = health["health"]
    if health is not None and not health.get("is_healthy"):
        detail = health.get("failure_detail") or health.get("failure") or "not healthy"
        return _decided("rollback", "health", f"verify: health: {detail}")
    if not verdict:
        return _without_verdict(evals)
    mine = (verdict.get("engines") or {}).get(engine) or {}
    # A rule that fired decides first: a bad release during a provider outage is still a bad release.
    for where, found in (("the batch: ", verdict), ("", mine)):
        if found.get("decision") == "fail":
            return _decided("rollback", "fail", f"verify: {where}{_failure_symptom(found, found.get('rule'))}")
    if verdict.get("outage"):
        why = _text(verdict.get("symptom")) or "; ".join(verdict.get("reasons") or []) or "provider outage"
        return _decided("stop_outage", "outage", f"verify: {why}")
    # The cohort's pooled evidence judges the release: an idle canary in a cohort that passed passes with it.
    if verdict.get("decision") == "pass" or mine.get("decision") == "pass":
        return _decided("keep", "pass", must_fail=False)
    return _undecided(verdict, mine, policy)


def bake_done(verdict: dict | None, healths: list, round_no: int, rounds: int) -> dict:
    """Whether the batch stops baking after round ``round_no`` (1-based) of at most ``rounds``.

    Done when the verdict decided (pass or fail, or an outage), when an Engine of the batch is unhealthy (its
    rollback must not wait for the others' bake), when there is no verdict to wait for (``verdict`` None: the checks
    are off, health alone decides), or after the last round.
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
    elif not verdict:
        why = "no verdict to wait for (health only)"
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


def probe_set(cases: list, turns: int) -> list:
    """``turns`` eval cases from ``cases`` (cycled), each with a unique name: the probe turns of one Engine."""
    if not isinstance(cases, list) or not cases or not all(isinstance(c, dict) and c.get("name") for c in cases):
        raise ValueError("the probe cases must be a non-empty list of eval cases with names (docs/evals.md)")
    return [dict(cases[i % len(cases)], name=f"{cases[i % len(cases)]['name']}-{i + 1}") for i in range(int(turns))]


def _status(result: dict) -> str:
    return (result or {}).get("status") or "failed"


def rollout_outcome(results: list, batch_hosts: list, batch_no: int, batches: int, pause: bool = False) -> dict:
    """The run's outcome after batch ``batch_no`` of ``batches``.

    ``results``: the ``engine_upgrade_result`` of every Engine that has one (any batch); ``batch_hosts``: the
    Engines the plan put in this batch. An Engine of the batch without a result was lost mid-upgrade (its host
    became unreachable: Ansible runs neither rescue nor always for it); a re-run finds it and finishes or rolls
    it back. ``pause``: the rollout pauses after its canary (engine_rollout_pause_after_canary, not a promotion): a
    canary batch without a failure, with batches still to go, ends the run ``awaiting_promotion``.
    """
    batch = set(batch_hosts)
    in_batch = [r for r in results if r.get("engine") in batch and int(r.get("batch") or 0) == int(batch_no)]
    reported = {r.get("engine") for r in in_batch if _status(r) != "lost"}
    lost = sorted(batch - reported)
    statuses = [_status(r) for r in in_batch]
    bad = [r for r in in_batch if _status(r) not in GOOD and _status(r) != "lost"]
    undecided = [r for r in bad if r.get("evidence") == "undecided"]
    if lost:
        outcome = "stopped_unreachable"
    elif not bad:
        outcome = "completed" if int(batch_no) >= int(batches) else "in_progress"
        if outcome == "in_progress" and pause and int(batch_no) == 1:
            outcome = "awaiting_promotion"
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


# ---------------------------------------------------------------- the batch's evidence, from the hosts' results


def _get(mapping, *path):
    """mapping[path0][path1]... or None when any step is missing, skipped or not a mapping."""
    value = mapping
    for key in path:
        if not hasattr(value, "get"):
            return None
        value = value.get(key)
        if value is None:
            return None
    return value


def baseline_of(host: dict) -> dict | None:
    """The Engine's baseline measures (engine_metrics ``metrics``): the pre-flight's, which takes it in-process when
    no probe or eval turns are sent before the switch, else the role's own measure after those turns."""
    return (_get(host, "__engine_upgrade_metrics_before", "metrics")
            or _get(host, "__engine_upgrade_pre", "preflight", "baseline"))


def pre_upgrade_snapshot(host: dict) -> dict | None:
    """The Engine's pre-upgrade snapshot of this run (brain_snapshot ``snapshot``): the pre-flight's, which takes it
    in-process when no probe or eval turns are sent before the switch, else the role's own after those turns."""
    by_role = _get(host, "__engine_upgrade_snapshot", "snapshot")
    return by_role or _get(host, "__engine_upgrade_pre", "preflight", "snapshot")


def pre_upgrade_snapshot_options(preflight: dict, spec: dict, target_version: str,
                                 run_id: str | None = None) -> dict:
    """brain_snapshot's options for the pre-upgrade snapshot, from the pre-flight's result and the role's snapshot
    spec (engine_preflight's ``snapshot`` option): named ``pre-upgrade-<identity slug>-<from>-to-<to>-<run id>``,
    bound to the Engine's identity key, and kept at least ``destructive_retain_days`` when a pending migration is
    destructive (needs acknowledgement). The pre-flight takes it with these options, and so does the role when probe
    or eval turns go first: one rule for both."""
    identity = (preflight or {}).get("identity") or {}
    origin = ((preflight or {}).get("from") or {}).get("version")
    run_id = run_id or spec.get("run_id") or "manual"
    retain = int(spec["retain_days"]) if spec.get("retain_days") is not None else None
    if ((preflight or {}).get("migration") or {}).get("needs_acknowledgement"):
        retain = max(retain or 0, int(spec["destructive_retain_days"]))
    return dict(
        dest=spec["dest"],
        name=spec.get("name") or f"pre-upgrade-{identity.get('slug')}-{origin}-to-{target_version}-{run_id}",
        kind="pre-upgrade",
        engine_key=identity.get("key"),
        reason=spec.get("reason") or f"pre-upgrade: {origin} -> {target_version} (run {run_id})",
        verify=spec["verify"],
        retain_days=retain,
        keep_last=spec.get("keep_last"),
    )


def _switched(hosts: list) -> list:
    return [h for h in hosts if _get(h, "__engine_upgrade_switch", "switched_at") is not None]


def cohort_start(hosts: list) -> float | None:
    """Where the controls' window starts (epoch seconds): the batch's first switch, or, for a switch taken over from
    an earlier run, when this run started measuring it (``measured_from``): the same window as the batch's."""
    moments = [float(_get(h, "__engine_upgrade_switch", "measured_from")
                     or _get(h, "__engine_upgrade_switch", "switched_at")) for h in _switched(hosts)]
    return min(moments) if moments else None


def cohort_health(hosts: list) -> list:
    """``[{engine, health}]`` of the switched Engines of the batch (their last health result)."""
    return [dict(engine=h.get("inventory_hostname"), health=_get(h, "__engine_upgrade_health", "health"))
            for h in _switched(hosts)]


def cohort_evidence(hosts: list) -> list:
    """engine_verdict's ``canary`` list: each healthy switched Engine's window since its switch and its baseline
    (whole engine_metrics ``metrics``, so that the verdict names the windows and finds the last slice), and evals."""
    evidence = []
    for host in _switched(hosts):
        window = _get(host, "__engine_upgrade_metrics_after", "metrics")
        if window is None or _get(host, "__engine_upgrade_health", "health", "is_healthy") is False:
            continue  # an unhealthy Engine is decided by its health, not by its measures
        evals_after = _get(host, "__engine_upgrade_eval_after", "eval")
        evals_before = _get(host, "__engine_upgrade_eval_before", "eval")
        entry = dict(name=host.get("inventory_hostname"), window=window)
        baseline = baseline_of(host)
        if baseline is not None:
            entry["baseline"] = baseline
        # A switch taken over from a dead run has no eval before it: its probes only gave the window turns.
        if evals_after is not None and evals_before is not None:
            entry["evals"] = dict(before=evals_before, after=evals_after)
        evidence.append(entry)
    return evidence


def control_evidence(results) -> list:
    """engine_verdict's ``control`` list from the looped engine_metrics results of the control Engines."""
    controls = []
    for item in (_get(results, "results") or []):
        metrics = _get(item, "metrics")
        if metrics is not None and not item.get("failed"):
            controls.append(dict(name=item.get("__engine_control") or _get(item, "item"), window=metrics))
    return controls


def bake_round_evidence(result: dict | None, health: dict | None, metrics_after: dict | None) -> dict:
    """The Engine's health and measures after a bake round, from its engine_watch result.

    ``health`` and ``metrics_after`` are what the Engine had before the round (registered results: ``{"health":
    ...}``, ``{"metrics": ...}``). A skipped round keeps them. A round that watched gives its last health, and its
    measures when it took them (none when the Engine was not healthy, or with the checks off: the earlier ones stay).
    A round that failed (the module could not watch) is no evidence of health: the Engine counts as unhealthy, with
    why, and is rolled back. Returns ``{"health": ..., "metrics_after": ...}``.
    """
    result = result or {}
    if result.get("skipped") or not result:
        return dict(health=health, metrics_after=metrics_after)
    watch = result.get("watch")
    if not isinstance(watch, dict) or not isinstance(watch.get("health"), dict):
        why = _text(result.get("msg")) or "no result"
        failed = dict(is_healthy=False, failure="watch_failed",
                      failure_detail=f"the bake could not watch the Engine: {why}")
        return dict(health=dict(health=failed), metrics_after=metrics_after)
    metrics = watch.get("metrics")
    return dict(health=dict(health=watch["health"]),
                metrics_after=dict(metrics=metrics) if metrics is not None else metrics_after)


def switch_record(result: dict, container: str, now: float) -> dict:
    """When and where the new release started, and the drain and switch times, from a switch module's result.

    ``switched_at`` (``now``, once the switch returned) starts the new release's measures: no turn of the old
    release is in them. ``started_at``, when the switch began (its drain), starts the bad window's logs: the new
    container's first lines (its version, the migrations it applied, a boot that fails) come before ``switched_at``.
    """
    body = (result or {}).get("container") or (result or {}).get("compose") or {}
    name = body.get("name") if "container" in (result or {}) else _get(body, "container", "name")
    timings = body.get("timings") or {}
    took = timings.get("switch_seconds")
    started = float(now) - float(took) - 1.0 if isinstance(took, (int, float)) and took >= 0 else float(now) - 60.0
    return dict(switched_at=float(now), started_at=round(started, 3), container=name or container,
                drain_seconds=timings.get("drain_seconds"), switch_seconds=took)


def _cohort_text(part: dict | None, what: str) -> str:
    if not part:
        return f"no {what}"
    rate = part.get("error_rate")
    rate_text = "n/a" if rate is None else f"{rate * 100:.1f}% errors"
    return f"{part.get('engines', '?')} {what} {part.get('turns', 0)} turns {rate_text}"


def verdict_summary(verdict: dict | None) -> str:
    """One line of a cohort verdict: decision, the evidence of each cohort, what fired or what is missing."""
    if not verdict:
        return "no verdict"
    evidence = verdict.get("evidence") or {}
    text = (f"{verdict.get('decision')}: {_cohort_text(evidence.get('canary'), 'upgraded')} vs "
            f"{_cohort_text(evidence.get('control'), 'controls')}")
    if verdict.get("symptom"):
        text += f"; {short_symptom(verdict['symptom'])}"
    elif verdict.get("decision") == "undecided" and verdict.get("missing"):
        text += f"; missing: {'; '.join(verdict['missing'])}"
    return text


def preflight_summary(preflight: dict) -> str:
    """One line of what the run will do with an Engine."""
    action = preflight.get("action")
    origin = preflight.get("from") or {}
    target = preflight.get("target_version")
    if action == "none":
        return f"already runs {preflight.get('image')} and was verified: nothing to do"
    if action == "verify":
        return (f"runs {preflight.get('image')} but its switch was never verified (a run died or stopped): verify it "
                f"like a fresh switch, roll back to {origin.get('version')} if it fails")
    if action == "resume":
        return f"down after a dead run: bring it back ({(preflight.get('resume') or {}).get('how')})"
    migration = preflight.get("migration") or {}
    pending = ", ".join(m.get("name", "?") for m in migration.get("pending") or []) or "none"
    pulled = ", pull" if (preflight.get("target") or {}).get("actions") else ""
    return (f"{origin.get('version')} -> {target} ({migration.get('bump') or '?'}{pulled}): snapshot, drain, switch, "
            f"verify; pending migrations {pending}; rollback {migration.get('rollback_strategy') or 'unknown'}")


# ---------------------------------------------------------------- after a failure


def rescue_decision(failed: dict | None, decision: dict | None, step: str, switched: bool,
                    rollback: bool = True, lost: dict | None = None) -> dict:
    """What failed and what to do, in the upgrade's rescue.

    ``decision``: engine_decision's result when the verification decided (rollback, hold, stop_outage); else the
    failure of a task (``failed``, ansible_failed_result) at ``step`` (pre-flight, switch, verify). ``switched``:
    the switch was attempted, so the Engine may be on the new release. ``rollback``: engine_upgrade_rollback.
    Returns ``decision`` (rollback, hold, stop_outage, stop), ``reason``, ``evidence``, ``outage_check`` (whether a
    provider outage must be ruled out first: a health failure after the switch). ``lost``: the result of the task
    (the switch, or the health wait, bake or measures after it) during which the Engine's Docker host became
    unreachable (decision ``lost``: nothing can be done there now; the Engine's state is unknown, a re-run finds it and
    finishes or rolls it back).
    """
    if lost and lost.get("unreachable"):
        detail = str(lost.get("msg") or "unreachable").replace("Task failed: ", "")
        when = "mid-switch" if step == "switch" else "after the switch"
        return dict(decision="lost", evidence="unreachable", outage_check=False,
                    reason=f"{step}: its Docker host was lost {when} ({detail[:300]}); its state is unknown: a "
                           f"re-run finds it and finishes or rolls it back")
    if decision and decision.get("must_fail"):
        choice, reason, evidence = decision["decision"], decision.get("reason") or "", decision.get("evidence")
    else:
        failed = failed or {}
        detail = (_get(failed, "health", "failure_detail") or failed.get("msg") or "failed")
        reason, evidence = f"{step}: {detail}", ("health" if _get(failed, "health") is not None else "error")
        choice = "rollback" if switched else "stop"
    if choice == "rollback" and not rollback:
        choice, reason = "stop", f"{reason} (NOT rolled back: engine_upgrade_rollback=false)"
    return dict(decision=choice, reason=reason, evidence=evidence,
                outage_check=bool(switched and choice == "rollback" and evidence == "health"))


def rescue_status(decision: str, rollback_failed: bool = False) -> str:
    """The Engine's status after its rescue."""
    if rollback_failed:
        return "rollback_failed"
    return {"rollback": "rolled_back", "hold": "held", "stop_outage": "stopped_outage", "lost": "lost"}.get(
        decision, "failed")


# ---------------------------------------------------------------- the Engine's record in the run report

EVAL_KEYS = ("mode", "ran", "total", "passed", "failed", "pass_rate", "errors")


def _evals(result) -> dict | None:
    found = _get(result, "eval")
    return {key: found.get(key) for key in EVAL_KEYS if key in found} if found else None


def _status_of(host: dict, check_mode: bool) -> str:
    if host.get("__engine_upgrade_status"):
        return host["__engine_upgrade_status"]
    action = _get(host, "__engine_upgrade_pre", "preflight", "action")
    if action is None:
        return "failed"  # the pre-flight itself failed before it said anything
    if check_mode and action in ("upgrade", "resume"):
        return "planned"
    return "upgraded" if action == "upgrade" else "verified"


def upgrade_result(host: dict, target_version: str, now: float, check_mode: bool = False) -> dict:
    """One Engine's ``engine_upgrade_result`` (the run report's entry) from its facts and registered results."""
    pre = _get(host, "__engine_upgrade_pre", "preflight") or {}
    rescue = host.get("__engine_upgrade_rescue") or {}
    decision = host.get("__engine_upgrade_decision") or {}
    switch = host.get("__engine_upgrade_switch") or {}
    snapshot = pre_upgrade_snapshot(host)
    migration = pre.get("migration")
    rollback = host.get("engine_rollback_result")
    verdict = _get(host, "__engine_upgrade_verdict", "verdict")
    mine = (verdict or {}).get("engines", {}).get(host.get("inventory_hostname")) if verdict else None
    status = _status_of(host, check_mode)
    if rescue:
        step = rescue.get("reason", "").split(":", 1)[0] or "verify"
    else:
        step = "done" if status in GOOD else "pre-flight"
    measures_after = _get(host, "__engine_upgrade_metrics_after", "metrics", "measures")
    started = host.get("__engine_upgrade_started")
    return dict(
        engine=host.get("inventory_hostname"),
        deployment=host.get("engine_deployment") or "container",
        batch=int(host.get("__engine_upgrade_batch") or 0),
        action=pre.get("action"),
        status=status,
        step=step,
        reason=rescue.get("reason") or decision.get("reason") or "",
        decision=rescue.get("decision") or decision.get("decision")
        or ("verified" if pre.get("action") in ("none", "verify") else ("keep" if status in GOOD else "none")),
        evidence=rescue.get("evidence") or decision.get("evidence") or ("off" if status in GOOD else None),
        policy=decision.get("policy"),
        from_version=(pre.get("from") or {}).get("version"),
        to_version=target_version,
        image=pre.get("image"),
        identity=(pre.get("identity") or {}).get("key"),
        snapshot=dict(name=snapshot.get("name"), sha256=snapshot.get("sha256"), path=snapshot.get("path"))
        if snapshot else None,
        migration=dict(bump=migration.get("bump"), pending=[m.get("name") for m in migration.get("pending") or []],
                       rollback_strategy=migration.get("rollback_strategy"),
                       is_destructive=migration.get("is_destructive"),
                       needs_acknowledgement=migration.get("needs_acknowledgement"))
        if migration else None,
        rollback=rollback,
        rollback_kind=(rollback or {}).get("kind") or "none",
        data_at_risk=(rollback or {}).get("data_at_risk"),
        replay=replay_summary((rollback or {}).get("replay")) or None,
        rolled_back_release=pre.get("rolled_back_release"),
        timings=host.get("__engine_upgrade_timings") or ({} if not switch else
                                                         dict(drain_seconds=switch.get("drain_seconds"),
                                                              switch_seconds=switch.get("switch_seconds"))),
        measures=dict(
            before=(baseline_of(host) or {}).get("measures"),
            after=measures_after,
            verdict=dict(decision=(mine or {}).get("decision") or verdict.get("decision"),
                         reasons=(mine or {}).get("reasons") or verdict.get("reasons") or [],
                         rule=(mine or {}).get("rule") or verdict.get("rule"),
                         new_warning_kinds=(mine or {}).get("new_warning_kinds") or [],
                         enough_turns=(mine or {}).get("enough_turns"))
            if verdict else None,
        ),
        evals=dict(before=_evals(host.get("__engine_upgrade_eval_before")),
                   after=_evals(host.get("__engine_upgrade_eval_after")),
                   verdict=_get(host, "__engine_upgrade_eval_after", "eval", "verdict")),
        verdict=dict(decision=verdict.get("decision"), rule=verdict.get("rule"), symptom=verdict.get("symptom"),
                     missing=verdict.get("missing") or [], evidence=verdict.get("evidence"))
        if verdict else None,
        outage=_get(host, "__engine_upgrade_outage_check", "outage") or "none",
        diagnostics=host.get("__engine_upgrade_diagnostics_dir"),
        # A resumed Engine's pre-flight ran twice: the dead run's lock was taken over by the first.
        lock_taken_over=(_get(pre, "lock", "taken_over")
                         or _get(host, "__engine_upgrade_pre_resumed", "lock", "taken_over")),
        seconds=round(float(now) - float(started), 1) if started else None,
    )


# ---------------------------------------------------------------- what the webhook and the failed hosts say


def _names(items: list) -> str:
    return ", ".join(map(str, items)) or "none"


def rollout_message(report: dict, report_path: str) -> str:
    """The webhook's end-of-rollout message: all clear, held, or aborted and why."""
    r = report
    head = f"the upgrade to {r.get('target_version')}"
    run = f"(run {r.get('run_id')})"
    engines = r.get("engines") or []
    failed = [e for e in engines if e.get("status") not in GOOD]
    promoted = r.get("promoted_undecided") or []
    untouched = len(r.get("untouched") or [])
    outcome = r.get("outcome")
    if outcome == "completed":
        text = f"All clear: {head} is done on {len(engines)} Engines {run}."
        if promoted:
            text += (f" {len(promoted)} of them were promoted without evidence of their own (too few turns, policy "
                     f"proceed): {_names(promoted)}.")
    elif outcome == "awaiting_promotion":
        text = (f"PAUSED: the canary of {head} passed {run}: {_names([e.get('engine') for e in engines])} on "
                f"{r.get('target_version')}, {untouched} Engines to go. Promote it (-e engine_rollout_promote=true) "
                "to go on with the same rollout, or abort it (-e engine_rollout_abort=true) to roll the canary back.")
    elif outcome == "aborted":
        text = (f"ABORTED by the operator after the canary: {head} {run}: "
                + "; ".join(f"{e.get('engine')} {str(e.get('status')).replace('_', ' ')}" for e in engines
                            if e.get("status") in ("unwound", "rollback_failed"))
                + f". {untouched} Engines untouched.")
    elif outcome == "stopped_outage":
        text = (f"ABORTED: {head} stopped in batch {r.get('batches_run')} {run}: {r.get('outage')}. Nothing was "
                "rolled back; re-run when the provider is back.")
    elif outcome == "stopped_unreachable":
        text = (f"ABORTED: {head} stopped in batch {r.get('batches_run')} {run}: {_names(r.get('lost') or [])} "
                "lost mid-upgrade (host unreachable: state unknown). A re-run finds them and finishes or rolls "
                "them back.")
    elif outcome == "held":
        text = (f"HELD: {head} stopped in batch {r.get('batches_run')} {run}, undecided: "
                + "; ".join(f"{e.get('engine')} ({e.get('reason')})" for e in failed)
                + f". They stay on {r.get('target_version')}, nothing was rolled back (policy hold).")
    else:
        label = "ABORTED (undecided)" if outcome == "undecided" else "ABORTED"
        text = (f"{label}: {head} stopped in batch {r.get('batches_run')} {run}: "
                + "; ".join(f"{e.get('engine')} {str(e.get('status')).replace('_', ' ')} "
                            f"({str(e.get('reason') or '')[:300]})"
                            + (f" - {e['replay'][:400]}" if e.get("replay") else "") for e in failed) + ".")
    if outcome not in ("completed", "awaiting_promotion", "aborted"):
        text += f" {untouched} Engines untouched{', the upgraded ones unwound' if r.get('unwound') else ''}."
    return f"{text} Report: {report_path}"


def replay_summary(replay: dict | None, tables: int = 8) -> str:
    """One line on what a rollback did with the failed release's bad-window writes (webhook, messages, reports): per
    table written / replayed / not replayable and why, and where the bad-window brain is kept; '' without a replay."""
    if not replay or replay.get("mode") in (None, "off"):
        return ""
    kept = (replay.get("bad_window") or {}).get("path")
    if replay.get("error"):
        return (f"bad window not replayed ({replay['error']}); what the failed release wrote stays in the kept brain"
                + (f" {kept}" if kept else ""))
    written = {name: t for name, t in (replay.get("tables") or {}).items()
               if sum((t.get("written_in_bad_window") or {}).values()) or t.get("not_replayable")}
    if not written:
        return "bad window: nothing written"
    parts = []
    for name, t in sorted(written.items(), key=lambda item: -sum(item[1]["written_in_bad_window"].values()))[:tables]:
        w, r = t.get("written_in_bad_window") or {}, t.get("replayed") or {}
        lost = t.get("not_replayable") or []
        part = (f"{name} {w.get('inserted', 0)}+/{w.get('updated', 0)}~/{w.get('deleted', 0)}- written, "
                f"{r.get('inserted', 0) + r.get('updated', 0)} replayed")
        if lost:
            part += " (" + "; ".join(f"{x.get('count')} not replayable: {x.get('reason')}" for x in lost) + ")"
        parts.append(part)
    more = len(written) - len(parts)
    mode = replay.get("mode")
    head = "bad window " + ("replayed" if mode == "replay" else "reported, not replayed")
    if replay.get("mode_reason"):
        head += f" ({replay['mode_reason']})"
    return (f"{head}: " + ", ".join(parts) + (f", and {more} more tables" if more > 0 else "")
            + (f"; kept in {kept}" if kept else ""))


def engine_end_message(result: dict, report_path: str) -> str:
    """Why an Engine ends its play failed (the rollout stops there)."""
    status = result.get("status")
    rollback = result.get("rollback") or {}
    if status == "unwound":
        # It passed its own checks; a later batch failed and the run unwound it (engine_upgrade_unwind).
        back = f"rolled back to {rollback.get('to_version') or result.get('from_version')}"
        if rollback.get("brain_restored"):
            back += f" (brain restored from {rollback.get('snapshot')})"
        return (f"{result.get('engine')}: upgraded to {result.get('to_version')}, then unwound "
                f"({rollback.get('reason') or 'a later batch failed'}): {back}. The rollout stops here; "
                f"report: {report_path}")
    if status == "rolled_back":
        what = f"rolled back to {result.get('from_version')}"
        if rollback.get("brain_restored"):
            what += f" (brain restored from {rollback.get('snapshot')})"
        if replay_summary(rollback.get("replay")):
            what += f"; {replay_summary(rollback.get('replay'))}"
    elif status == "rollback_failed":
        what = "it was NOT rolled back (the rollback failed too): it needs a hand"
    elif status == "stopped_outage":
        what = "it was not rolled back: the trouble is outside the release (re-run when the fleet is healthy)"
    elif status == "lost":
        what = "it could not be rolled back from here (its host is unreachable)"
    elif status == "held":
        what = (f"it stays on {result.get('to_version')}, not rolled back (policy hold): decide, then re-run or "
                "roll back")
    else:
        what = "nothing was switched"
    return (f"{result.get('engine')}: the upgrade to {result.get('to_version')} failed at {result.get('reason')}; "
            f"{what}. The rollout stops here; report: {report_path}")


def diagnostics_record(host: dict, target_version: str, now: float) -> dict:
    """The diagnostics bundle's diagnostics.json: the Engine's record plus the full measures, verdict and evals,
    where the bad-window brain is kept, and what the bad window's logs hold."""
    record = upgrade_result(host, target_version, now)
    rollback = host.get("engine_rollback_result") or {}
    kept = rollback.get("previous_brain") or {}
    logs = host.get("__engine_upgrade_bad_logs") or {}
    switched_at = _get(host, "__engine_upgrade_switch", "switched_at")
    record.update(
        run_id=host.get("__engine_upgrade_run_id"),
        switched_at=switched_at,
        measures_before=baseline_of(host),
        measures_after=_get(host, "__engine_upgrade_metrics_after", "metrics"),
        evals_before=_get(host, "__engine_upgrade_eval_before", "eval"),
        evals_after=_get(host, "__engine_upgrade_eval_after", "eval"),
        verdict_full=_get(host, "__engine_upgrade_verdict", "verdict"),
        # The brain the bad release wrote, kept by the restore (nothing it wrote is thrown away), on the Docker host.
        bad_window_brain=dict(host=host.get("inventory_hostname"), path=kept.get("path"), name=kept.get("name"),
                              data_at_risk=rollback.get("data_at_risk")) if kept else None,
        failed_container=rollback.get("failed_container"),
        logs=dict(file="engine.log", container=_get(logs, "logs", "container"), count=_get(logs, "logs", "count") or 0,
                  truncated=bool(_get(logs, "logs", "truncated")),
                  error=logs.get("msg") if logs.get("failed") else None),
    )
    return record
