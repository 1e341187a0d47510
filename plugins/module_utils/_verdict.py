# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The canary verdict of a rollout batch, and the outage-or-bad-release question, as pure functions.

A verdict weighs three kinds of evidence, all measured by engine_metrics (and engine_eval):

(a) each canary (an Engine upgraded in this batch) against its own baseline (its window before the switch);
(b) the canary cohort (every canary's turns pooled) against the control cohort (Engines not upgraded yet,
    measured over the same window, pooled) and against the canaries' baselines pooled;
(c) eval runs before and after the switch (engine_eval's ``eval``).

The decision, for the cohort and for each canary, is ``pass`` (enough evidence and no rule fired),
``fail`` (a rule fired) or ``undecided`` (evidence missing, each piece named; a provider outage; or the
references disagree). Undecided is never a pass: the role applies its policy (roll back by default).

The rules (thresholds in DEFAULT_VERDICT_THRESHOLDS, each an option of engine_verdict):

- error rate sharply worse: the runbook's practical threshold (more than ``error_rate_max_increase``
  points over the reference AND more than ``error_rate_factor`` times it, the reference taken as at least
  ``error_rate_floor``), at least two failed turns, AND a one-sided Fisher exact test on the pooled
  counts with p < ``significance``; both sides need ``min_turns`` turns;
- latency: p50 (p99) more than ``latency_p50_factor`` (``latency_p99_factor``) times the reference, both
  sides with ``min_turns`` latencies, AND significant: for p50 a one-sided Mann-Whitney U test on the
  latency lists, for p99 a Fisher test on how many latencies exceed the threshold on each side (one
  slow turn is not significant). Measures without latency lists decide on the sample counts alone;
- a new ERROR (or CRITICAL) log kind: in the canary cohort's window, absent from every baseline and
  from the control cohort, in at least ``new_error_kind_share`` of the canary turns and at least
  ``new_error_kind_min_count`` times, AND its absence from the references means something (Fisher
  test of the kind's count in the canary turns against none in the reference turns). It needs no
  ``min_turns``: this is the rule that decides on thin per-user traffic. New WARNING kinds are
  reported only, unless ``fail_on_new_warnings``;
- eval regressions: more than ``eval_max_regressions`` cases that passed before the switch fail after;
- the cache hit ratio dropping by more than ``cache_hit_ratio_max_drop`` is reported, and decides only
  with ``fail_on_cache_drop``.

A rule is compared with every reference that has enough turns (the control cohort, the baselines); it
fires only when it breaches against all of them, and it decides only when the breach still stands in
the last slice of the window (or the last slice has too few turns, ``min_turns / slices``, to show a
recovery). A breach against one reference but not the other makes the verdict undecided. An
improving breach and a single outlier (one failed or one slow turn) never decide.

A provider outage (both cohorts' turns failing with the provider's codes at similar rates) is not blamed
on the release: the error-rate rule then counts only other failures, the latency rules are not judged,
kinds and eval failures naming the provider are left out; if nothing else fires the decision is
``undecided`` with ``outage: true`` (rule ``provider_outage``), and the role stops without rolling back.
"""

from __future__ import annotations

import math

from ansible_collections.september.engine.plugins.module_utils._evals import compare as compare_evals
from ansible_collections.september.engine.plugins.module_utils._metrics import (
    DEFAULT_THRESHOLDS,
    check_measures,
    iso,
    parse_time,
)
from ansible_collections.september.engine.plugins.module_utils._stats import (
    fisher_greater,
    mann_whitney_greater,
    weighted_percentile,
)

DEFAULT_VERDICT_THRESHOLDS = dict(
    DEFAULT_THRESHOLDS,
    significance=0.05,
    new_error_kind_share=0.05,
    new_error_kind_min_count=3,
    eval_max_regressions=0,
    slices=3,
)
#: Failure codes that mean the LLM provider failed, not the Engine (502 is how the Engine refuses a turn then).
PROVIDER_CODES = ("LLM_PROVIDER_ERROR", "HTTP_502")
ERROR_LEVELS = ("ERROR", "CRITICAL")
#: Order in which fired rules are named (the first one is the verdict's ``rule``).
RULES = ("new_error_kind", "error_rate", "eval_regression", "latency_p99", "latency_p50", "new_warning_kind",
         "cache_hit_ratio")


def thresholds_of(given: dict | None) -> dict:
    """The thresholds with the defaults for what `given` leaves out (or sets to None)."""
    return {**DEFAULT_VERDICT_THRESHOLDS, **{k: v for k, v in (given or {}).items() if v is not None}}


# ---------------------------------------------------------------- input


def _unwrap(value) -> tuple[dict, dict | None]:
    """(measures, the metrics dict they came from or None) of measures, a metrics dict or a registered result."""
    metrics = None
    if isinstance(value, dict) and isinstance(value.get("metrics"), dict):
        metrics = value["metrics"]
    elif isinstance(value, dict) and isinstance(value.get("measures"), dict):
        metrics = value
    return (metrics["measures"] if metrics else value), metrics


def _measures(value, what: str) -> tuple[dict, dict | None]:
    measures, metrics = _unwrap(value)
    check_measures(measures, what)
    lat = measures.get("latencies_ms")
    numbers = isinstance(lat, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in lat)
    if lat is not None and not numbers:
        raise ValueError(f"{what}.latencies_ms must be a list of numbers or null")
    if measures.get("errors_by_code") is not None and not isinstance(measures["errors_by_code"], dict):
        raise ValueError(f"{what}.errors_by_code must be a dict of counts")
    return measures, metrics


def _eval(value, what: str) -> dict | None:
    if value is None:
        return None
    if isinstance(value, dict) and isinstance(value.get("eval"), dict):
        value = value["eval"]
    if not isinstance(value, dict) or not isinstance(value.get("results"), list):
        raise ValueError(f"{what} must be the eval of a september.engine.engine_eval run (with its results)")
    return value


def _window_of(metrics: dict | None) -> tuple[str, str, float] | None:
    window = (metrics or {}).get("window")
    if isinstance(window, dict) and window.get("start") and window.get("end"):
        return window["start"], window["end"], window.get("seconds")
    return None


CANARY_KEYS = ("name", "engine", "window", "baseline", "last_slice", "eval_before", "eval_after", "evals")


def _name(item: dict, metrics: dict | None, where: str) -> str:
    name = item.get("name") or item.get("engine") or (metrics or {}).get("container")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.name is missing: name the Engine (its inventory name)")
    return name


def read_canary(item, index: int, default_slices: int) -> dict:
    """One `canary` entry checked: name, window, baseline, last slice, evals. ValueError naming the key."""
    where = f"canary[{index}]"
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be a dict with name, window and baseline (got {type(item).__name__})")
    unknown = sorted(set(item) - set(CANARY_KEYS))
    if unknown:
        raise ValueError(f"{where} has unknown keys {', '.join(unknown)} (known: {', '.join(CANARY_KEYS)})")
    if item.get("window") is None:
        raise ValueError(f"{where}.window is missing: pass the engine_metrics result (or its metrics.measures) of "
                         "the canary's window since the switch")
    window, metrics = _measures(item["window"], f"{where}.window")
    last, slices = item.get("last_slice"), default_slices
    if last is not None:
        last = _measures(last, f"{where}.last_slice")[0]
    elif metrics and isinstance(metrics.get("slices"), list) and len(metrics["slices"]) > 1:
        last, slices = _measures(metrics["slices"][-1], f"{where}.window.slices[-1]")[0], len(metrics["slices"])
    baseline = None
    if item.get("baseline") is not None:
        baseline = _measures(item["baseline"], f"{where}.baseline")[0]
    evals = item.get("evals")
    if evals is not None and (not isinstance(evals, dict) or set(evals) - {"before", "after"}):
        raise ValueError(f"{where}.evals must be a dict with before and after (engine_eval results)")
    evals = evals or {}
    before = item.get("eval_before", evals.get("before"))
    after = item.get("eval_after", evals.get("after"))
    return dict(name=_name(item, metrics, where), window=window, span=_window_of(metrics), last_slice=last,
                slices=max(int(slices), 1), baseline=baseline, eval_before=_eval(before, f"{where}.eval_before"),
                eval_after=_eval(after, f"{where}.eval_after"))


def read_control(item, index: int) -> dict:
    where = f"control[{index}]"
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be a dict with name and window (got {type(item).__name__})")
    unknown = sorted(set(item) - {"name", "engine", "window"})
    if unknown:
        raise ValueError(f"{where} has unknown keys {', '.join(unknown)} (known: name, engine, window)")
    if item.get("window") is None:
        raise ValueError(f"{where}.window is missing: pass the engine_metrics result of the control over the "
                         "canaries' window")
    window, metrics = _measures(item["window"], f"{where}.window")
    return dict(name=_name(item, metrics, where), window=window, span=_window_of(metrics))


# ---------------------------------------------------------------- pooling


def provider_failures(m: dict) -> int:
    codes = m.get("errors_by_code") or {}
    return int(sum(codes.get(code, 0) for code in PROVIDER_CODES))


def pool(members: list[dict]) -> dict:
    """The measures of several Engines' windows pooled: counts summed, latencies merged, log kinds summed.

    Latency percentiles are pooled from each member's ``latencies_ms`` (each value weighted by
    latency_samples / len(latencies_ms)); when a member with latencies has no list, a single member keeps
    its own percentiles and several give none (``latency_pooled`` false).
    """
    turns = sum(m["turns"] for m in members)
    failed = sum(m["failed_turns"] for m in members)
    refused = sum(m["refused_turns"] for m in members)
    codes: dict = {}
    for m in members:
        for code, count in (m.get("errors_by_code") or {}).items():
            codes[code] = codes.get(code, 0) + count
    weighted, latencies, pooled = [], [], True
    for m in members:
        values = m.get("latencies_ms")
        if m["latency_samples"] and not values:
            pooled = False
            continue
        for value in values or []:
            weighted.append((float(value), m["latency_samples"] / len(values)))
            latencies.append(float(value))
    samples = sum(m["latency_samples"] for m in members)
    if pooled:
        p50, p99 = weighted_percentile(weighted, 50), weighted_percentile(weighted, 99)
    elif len(members) == 1:
        p50, p99 = members[0]["latency_p50_ms"], members[0]["latency_p99_ms"]
    else:
        p50 = p99 = None
    inputs = sum(m.get("input_tokens") or 0 for m in members)
    hits = sum(m.get("cache_hit_tokens") or 0 for m in members)
    known = [m for m in members if m.get("warning_kinds") is not None]
    kinds: dict = {}
    for m in known:
        for kind, count in m["warning_kinds"].items():
            kinds[kind] = kinds.get(kind, 0) + count
    return dict(
        engines=len(members), turns=turns, failed_turns=failed, refused_turns=refused,
        error_rate=round((failed + refused) / turns, 4) if turns else None,
        errors_by_code=dict(sorted(codes.items())), provider_errors=sum(provider_failures(m) for m in members),
        latency_samples=samples, latency_p50_ms=p50, latency_p99_ms=p99,
        latencies_ms=latencies if pooled and latencies else None, latency_pooled=pooled,
        cache_hit_ratio=round(hits / inputs, 4) if inputs else None,
        warning_kinds=dict(sorted(kinds.items())) if known else None,
        kinds_turns=sum(m["turns"] for m in known),
    )


def summary(p: dict | None) -> dict | None:
    """The evidence a verdict shows of one pooled cohort."""
    if p is None:
        return None
    keys = ("engines", "turns", "failed_turns", "refused_turns", "error_rate", "provider_errors", "latency_samples",
            "latency_p50_ms", "latency_p99_ms", "cache_hit_ratio")
    return {key: p[key] for key in keys}


# ---------------------------------------------------------------- words


def pct(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:.2g}%" if value < 0.1 else f"{value * 100:.3g}%"


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} ms"


def pv(value: float | None, before: str = "") -> str:
    """`` (p=0.0003)`` (or `` (x2; p=0.0003)`` with `before`), `` (x2)`` or nothing without a p-value."""
    inner = [before] if before else []
    if value is not None:
        inner.append("p<0.0001" if value < 0.0001 else f"p={value:.2g}")
    return f" ({'; '.join(inner)})" if inner else ""


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


# ---------------------------------------------------------------- one rule against one reference


def _standing(last: dict | None, slice_min: int, breached_in_last, recovered: bool | None = None) -> bool | None:
    """Whether a breach still stands at the end: True/False from the last slice, None when it cannot tell.

    ``recovered``, for a breach counted in failures: whether the last slice's clean run is beyond chance (a release
    that fails 30 % of its turns leaves 7 clean turns in a row 8 % of the time). A clean last slice that is not is
    None: it cannot tell, and the breach stands."""
    if last is None or last["turns"] < slice_min:
        return None
    if breached_in_last(last):
        return True
    return None if recovered is False else False


def _recovered(window: tuple[int, int], last: tuple[int, int], significance: float) -> bool:
    """(failures, turns) of the window and of its last slice: are there fewer failures in the last slice than in
    the rest of the window, beyond chance (one-sided Fisher exact test)?"""
    early_turns = window[1] - last[1]
    if early_turns <= 0 or last[1] <= 0:
        return False
    # Counts of log lines (a kind logged thrice per turn) can outnumber turns: at most one per turn.
    early_hits, last_hits = min(max(window[0] - last[0], 0), early_turns), min(max(last[0], 0), last[1])
    return fisher_greater(early_hits, early_turns, last_hits, last[1]) < significance


def error_rate_test(c: dict, r: dict, t: dict, last: dict | None, slice_min: int, outage: bool) -> dict:
    skip = PROVIDER_CODES if outage else ()

    def counts(m):
        dropped = provider_failures(m) if skip else 0
        return m["failed_turns"] + m["refused_turns"] - dropped, m["turns"] - dropped

    fails_c, turns_c = counts(c)
    fails_r, turns_r = counts(r)
    rate_c = fails_c / turns_c if turns_c else None
    rate_r = fails_r / turns_r if turns_r else None
    limit = max((rate_r or 0) + t["error_rate_max_increase"],
                t["error_rate_factor"] * max(rate_r or 0, t["error_rate_floor"]))
    test = dict(rule="error_rate", canary=None if rate_c is None else round(rate_c, 4),
                reference_value=None if rate_r is None else round(rate_r, 4), threshold=round(limit, 4),
                p_value=None, evaluated=False, breached=False, fired=False, standing=None,
                note="provider failures left out (outage)" if outage else None)
    if turns_c < t["min_turns"] or turns_r < t["min_turns"]:
        return test
    p = fisher_greater(fails_c, turns_c, fails_r, turns_r)
    breached = rate_c > limit and fails_c >= 2
    test.update(evaluated=True, p_value=round(p, 6), breached=breached, fired=breached and p < t["significance"])
    if test["fired"]:
        def over(m):
            f, n = counts(m)
            return n > 0 and f / n > limit and f >= 2
        recovered = last is not None and _recovered(counts(c), counts(last), t["significance"])
        test["standing"] = _standing(last, slice_min, over, recovered)
    return test


def latency_test(rule: str, c: dict, r: dict, t: dict, last: dict | None, slice_min: int) -> dict:
    key = "latency_p50_ms" if rule == "latency_p50" else "latency_p99_ms"
    factor = t["latency_p50_factor"] if rule == "latency_p50" else t["latency_p99_factor"]
    base = r[key]
    limit = None if base is None else round(base * factor, 1)
    test = dict(rule=rule, canary=c[key], reference_value=base, threshold=limit, p_value=None, evaluated=False,
                breached=False, fired=False, standing=None, note=None)
    if limit is None or c[key] is None or min(c["latency_samples"], r["latency_samples"]) < t["min_turns"]:
        return test
    breached = c[key] > limit
    x, y = c.get("latencies_ms"), r.get("latencies_ms")
    if x and y:
        if rule == "latency_p50":
            p = mann_whitney_greater(x, y)["p_value"]
        else:
            p = fisher_greater(sum(1 for v in x if v > limit), len(x), sum(1 for v in y if v > limit), len(y))
        test["p_value"] = round(p, 6)
        significant = p < t["significance"]
    else:
        test["note"] = "no latency lists: decided on the sample counts"
        significant = True
    test.update(evaluated=True, breached=breached, fired=breached and significant)
    if test["fired"]:
        test["standing"] = _standing(last, slice_min, lambda m: m[key] is not None and m[key] > limit)
    return test


def cache_test(c: dict, r: dict, t: dict) -> dict:
    base, cur = r["cache_hit_ratio"], c["cache_hit_ratio"]
    limit = None if base is None else round(base - t["cache_hit_ratio_max_drop"], 4)
    test = dict(rule="cache_hit_ratio", canary=cur, reference_value=base, threshold=limit, p_value=None,
                evaluated=False, breached=False, fired=False, standing=None, note=None)
    if limit is None or cur is None or min(c["turns"], r["turns"]) < t["min_turns"]:
        return test
    test.update(evaluated=True, breached=cur < limit, fired=cur < limit)
    return test


# ---------------------------------------------------------------- new log kinds


def kind_level(kind: str) -> str:
    return kind.split(" ", 1)[0].upper()


def kind_tests(c: dict, refs: list[dict], t: dict, last: dict | None, slice_min: int, outage: bool) -> list[dict]:
    """One test per WARNING/ERROR/CRITICAL kind of the canary window that no reference with log kinds has."""
    known = [r for r in refs if r.get("warning_kinds") is not None]
    if c.get("warning_kinds") is None or not known:
        return []
    seen = set()
    for r in known:
        seen.update(r["warning_kinds"])
    ref_turns = sum(r["kinds_turns"] if "kinds_turns" in r else r["turns"] for r in known)
    tests = []
    for kind, count in sorted(c["warning_kinds"].items()):
        if kind in seen:
            continue
        error = kind_level(kind) in ERROR_LEVELS
        rule = "new_error_kind" if error else "new_warning_kind"
        share = count / c["turns"] if c["turns"] else None
        p = fisher_greater(min(count, c["turns"]), c["turns"], 0, ref_turns) if c["turns"] else 1.0
        breached = count >= t["new_error_kind_min_count"] and share is not None and share >= t["new_error_kind_share"]
        provider = outage and any(code in kind for code in PROVIDER_CODES)
        test = dict(rule=rule, kind=kind, canary=count, share=None if share is None else round(share, 4),
                    reference_value=0, reference_turns=ref_turns, threshold=t["new_error_kind_share"],
                    p_value=round(p, 6), evaluated=True, breached=breached,
                    fired=breached and p < t["significance"] and not provider, standing=None,
                    note="names the provider (outage)" if provider else None)
        if test["fired"] and last is not None and last.get("warning_kinds") is not None:
            in_last = min((last["warning_kinds"] or {}).get(kind, 0), last["turns"])
            recovered = _recovered((min(count, c["turns"]), c["turns"]), (in_last, last["turns"]), t["significance"])
            test["standing"] = _standing(last, slice_min, lambda m, k=kind: (m["warning_kinds"] or {}).get(k, 0) > 0,
                                         recovered)
        tests.append(test)
    return tests


# ---------------------------------------------------------------- evals


def eval_test(name: str, before: dict | None, after: dict | None, t: dict, outage: bool) -> tuple[dict | None, str]:
    """(test or None, missing text or '') of one canary's evals."""
    if after is None:
        return None, ("" if before is None else f"the eval set did not run on {name} after the switch")
    if after.get("ran") is False or not after.get("total"):
        return None, f"the eval set did not run on {name} after the switch (check mode, or no case ran)"
    if before is not None:
        if before.get("ran") is False or not before.get("total"):
            return None, f"the eval set did not run on {name} before the switch: nothing to compare with"
        verdict = compare_evals(before, after["results"], t["eval_max_regressions"])
    elif isinstance(after.get("verdict"), dict):
        verdict = after["verdict"]
    else:
        return None, f"no eval of {name} before the switch to compare with"
    regressions = [r for r in verdict.get("regressions") or []
                   if not (outage and r.get("error") in PROVIDER_CODES)]
    fired = len(regressions) > t["eval_max_regressions"]
    names = ", ".join(f"{r['name']} ({r.get('detail') or r.get('error') or 'failed'})" for r in regressions[:5])
    return dict(rule="eval_regression", engine=name, canary=len(regressions), reference_value=0,
                threshold=t["eval_max_regressions"], p_value=None, evaluated=True, breached=fired, fired=fired,
                standing=None, regressions=[r["name"] for r in regressions], detail=names,
                note="provider failures left out (outage)" if outage else None), ""


# ---------------------------------------------------------------- outage from turns


def measures_outage(canary: dict | None, control: dict | None, t: dict) -> dict:
    """Whether both cohorts' turns fail with the provider's codes at similar rates (a provider outage)."""
    result = dict(outage=False, canary_share=None, control_share=None, p_value=None, reason=None)
    if not canary or not control or not canary["turns"] or not control["turns"]:
        return result
    pc, pr = canary["provider_errors"], control["provider_errors"]
    share_c, share_r = pc / canary["turns"], pr / control["turns"]
    p = fisher_greater(pc, canary["turns"], pr, control["turns"])
    result.update(canary_share=round(share_c, 4), control_share=round(share_r, 4), p_value=round(p, 6))

    def hit(count, share):
        return count >= t["new_error_kind_min_count"] and share >= t["new_error_kind_share"]

    if hit(pc, share_c) and hit(pr, share_r):
        if p < t["significance"]:
            result["reason"] = (f"the canaries' turns fail with the provider's codes far more often than the "
                                f"controls' ({pct(share_c)} vs {pct(share_r)}{pv(p)}): blamed on the release")
        else:
            result.update(outage=True, reason=(
                f"LLM provider outage: {pct(share_c)} of the canaries' turns and {pct(share_r)} of the controls' "
                f"fail with {'/'.join(PROVIDER_CODES)}; not blamed on the release"))
    elif hit(pr, share_r):
        result["reason"] = f"the control cohort's turns fail with the provider's codes ({pct(share_r)})"
    return result


# ---------------------------------------------------------------- one scope: the cohort or one canary

DECISIVE_ALWAYS = ("error_rate", "latency_p50", "latency_p99", "new_error_kind", "eval_regression")


def _decisive(rule: str, t: dict) -> bool:
    if rule == "cache_hit_ratio":
        return bool(t["fail_on_cache_drop"])
    if rule == "new_warning_kind":
        return bool(t["fail_on_new_warnings"])
    return rule in DECISIVE_ALWAYS


def _text(test: dict, labels: dict, t: dict) -> str:
    rule, ref = test["rule"], labels.get(test.get("reference"), "")
    canary = labels["canary"]
    if rule == "error_rate":
        return f"error rate {pct(test['canary'])} {canary} vs {pct(test['reference_value'])} {ref}{pv(test['p_value'])}"
    if rule in ("latency_p50", "latency_p99"):
        factor = t["latency_p50_factor"] if rule == "latency_p50" else t["latency_p99_factor"]
        return (f"{rule[-3:]} latency {ms(test['canary'])} {canary} vs {ms(test['reference_value'])} {ref}"
                f"{pv(test['p_value'], f'threshold x{factor:g}')}")
    if rule == "cache_hit_ratio":
        drop = f"threshold -{t['cache_hit_ratio_max_drop'] * 100:g} points"
        return f"cache hit ratio {pct(test['canary'])} {canary} vs {pct(test['reference_value'])} {ref}{pv(None, drop)}"
    if rule in ("new_error_kind", "new_warning_kind"):
        level = "ERROR" if rule == "new_error_kind" else "WARNING"
        share = "n/a" if test["share"] is None else pct(test["share"])
        counts = f"{plural(test['canary'], 'time')}, none in {plural(test['reference_turns'], 'reference turn')}"
        return f"new {level} kind '{test['kind']}' in {share} of turns {canary}{pv(test['p_value'], counts)}"
    return (f"{plural(test['canary'], 'eval case')} that passed before the switch fail on {test['engine']} "
            f"(more than eval_max_regressions={test['threshold']}): {test['detail']}")


#: Rules judged against each reference set on its own (the others against every reference together).
PER_TEST_RULES = ("new_error_kind", "new_warning_kind", "eval_regression")


def scope_tests(c: dict, last: dict | None, slice_min: int, refs: list[tuple[str, dict | None]],
                kind_refs: list[dict], t: dict, outage: bool) -> list[dict]:
    """Every rule's test of the pooled window `c` against each reference of `refs` that was measured, each with
    its ``reference``; then the log-kind tests against `kind_refs` (the latency ones not during an outage)."""
    tests: list[dict] = []
    for ref_name, r in refs:
        if r is None:
            continue
        group = [error_rate_test(c, r, t, last, slice_min, outage), cache_test(c, r, t)]
        if not outage:
            group += [latency_test("latency_p99", c, r, t, last, slice_min),
                      latency_test("latency_p50", c, r, t, last, slice_min)]
        tests += [dict(test, reference=ref_name) for test in group]
    tests += [dict(test, reference="baselines and controls")
              for test in kind_tests(c, kind_refs, t, last, slice_min, outage)]
    return tests


def rule_groups(rule: str, tests: list[dict]) -> list[list[dict]]:
    """The tests of `rule` that decide together: one group of all of them, or one group each (PER_TEST_RULES)."""
    mine = [x for x in tests if x["rule"] == rule]
    if rule in PER_TEST_RULES:
        return [[x] for x in mine]
    return [mine] if mine else []


class _Findings:
    """What the groups of tests of one scope found, sorted by how much each decides."""

    def __init__(self, labels: dict, t: dict):
        self.labels, self.t = labels, t
        #: (rule, text, the lead test's text) of the rules that decide.
        self.fired: list[tuple[str, str, str]] = []
        #: (rule, text) of rules that fired against one reference, not against another.
        self.disputed: list[tuple[str, str]] = []
        self.improving: list[tuple[str, str]] = []
        self.reported: list[tuple[str, str]] = []
        #: Texts of breaches that are not significant.
        self.weak: list[str] = []

    def weigh(self, rule: str, group: list[dict]) -> None:
        done = [x for x in group if x["evaluated"]]
        hits = [x for x in done if x["fired"]]
        if not hits:
            over = [x for x in done if x["breached"]]
            if over:
                self.weak.append(f"{_text(over[0], self.labels, self.t)} (not significant: does not decide)")
            return
        text = self._hits_text(rule, hits)
        if len(hits) < len(done):
            quiet = [x for x in done if not x["fired"]]
            other = self.labels.get(quiet[0]["reference"], "").removeprefix("in ")
            self.disputed.append((rule, f"{text}, but not against {other}"))
        elif not _decisive(rule, self.t):
            self.reported.append((rule, text))
        elif any(x["standing"] is False for x in hits):
            self.improving.append((rule, f"{text}, but no longer in the last slice"))
        else:
            self.fired.append((rule, text, _text(hits[0], self.labels, self.t)))

    def _hits_text(self, rule: str, hits: list[dict]) -> str:
        """The first hit in words, then each other reference's value."""
        shown = pct if rule in ("error_rate", "cache_hit_ratio") else ms
        return " and ".join([_text(hits[0], self.labels, self.t)] + [
            f"{shown(x['reference_value'])} {self.labels.get(x['reference'], '')}{pv(x['p_value'])}"
            for x in hits[1:]])

    def reasons(self) -> list[str]:
        return ([item[1] for item in self.fired]
                + [f"{item[1]}: the references disagree" for item in self.disputed]
                + [f"{item[1]} (improving: does not decide)" for item in self.improving]
                + [f"{item[1]} (reported; does not decide alone)" for item in self.reported]
                + self.weak)


def judge(c: dict, last: dict | None, slices: int, refs: list[tuple[str, dict | None]], kind_refs: list[dict],
          evals: list[dict], labels: dict, t: dict, outage: bool) -> dict:
    """The decision of one scope from its pooled window `c` against `refs` [(reference name, pooled)]."""
    slice_min = math.ceil(t["min_turns"] / max(slices, 1))
    tests = scope_tests(c, last, slice_min, refs, kind_refs, t, outage) + evals
    found = _Findings(labels, t)
    for rule in RULES:
        for group in rule_groups(rule, tests):
            found.weigh(rule, group)
    references = [ref[1] for ref in refs if ref[1] is not None]
    enough = c["turns"] >= t["min_turns"] and any(r["turns"] >= t["min_turns"] for r in references)
    return dict(fired=found.fired, disputed=found.disputed, reasons=found.reasons(), tests=tests,
                enough_turns=enough)


def _missing_refs(refs: dict, t: dict, engine: str | None = None) -> list[str]:
    """Sentences on the references that have fewer than min_turns turns."""
    need = t["min_turns"]
    out = []
    control = refs.get("control")
    if control is None:
        out.append("no control Engine was measured over the same window")
    elif control["turns"] < need:
        out.append(f"the control cohort saw {plural(control['turns'], 'turn')} in the same window ({need} needed)")
    baseline = refs.get("baseline")
    whose = f"{engine}'s baseline" if engine else "the canaries' baselines"
    if baseline is None:
        out.append(f"no baseline of {engine}" if engine else "no baseline of the canaries before the switch")
    elif baseline["turns"] < need:
        out.append(f"{whose} saw {plural(baseline['turns'], 'turn')} before the switch ({need} needed)")
    return out


def _window(canaries: list[dict], controls: list[dict]) -> tuple[dict, list[str]]:
    """The canaries' window (earliest start, latest end), and a note per control measured over another one."""
    spans = [c["span"] for c in canaries if c["span"]]
    if not spans:
        return dict(since=None, until=None, seconds=None), []
    since = min(parse_time(s[0]) for s in spans)
    until = max(parse_time(s[1]) for s in spans)
    notes = []
    slack = max(5.0, 0.1 * (until - since))
    for control in controls:
        if control["span"]:
            start, end = parse_time(control["span"][0]), parse_time(control["span"][1])
            if abs(start - since) > slack or abs(end - until) > slack:
                notes.append(f"control {control['name']} was measured over {control['span'][0]} to "
                             f"{control['span'][1]}, not the canaries' window")
    return dict(since=iso(since), until=iso(until), seconds=round(until - since, 3)), notes


def read_batch(canary_items: list, control_items: list, t: dict) -> tuple[list[dict], list[dict]]:
    """(canaries, controls) read from the verdict's input; ValueError on input, or on an Engine given twice."""
    if not isinstance(canary_items, list) or not canary_items:
        raise ValueError("canary must be a list of at least one upgraded Engine (name, window, baseline)")
    if not isinstance(control_items, list):
        raise ValueError("control must be a list of Engines that were not upgraded (name, window)")
    canaries = [read_canary(item, i, t["slices"]) for i, item in enumerate(canary_items)]
    controls = [read_control(item, i) for i, item in enumerate(control_items)]
    names = [c["name"] for c in canaries] + [c["name"] for c in controls]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"each Engine may appear once among canary and control: {', '.join(twice)} appears twice")
    return canaries, controls


class _Batch:
    """A batch's canaries and controls, pooled: the cohort and each canary are judged against the same references."""

    def __init__(self, canaries: list[dict], controls: list[dict], t: dict):
        self.canaries, self.controls, self.t = canaries, controls, t
        self.window = pool([c["window"] for c in canaries])
        lasts = [c["last_slice"] for c in canaries if c["last_slice"] is not None]
        self.last = pool(lasts) if len(lasts) == len(canaries) else None
        self.slices = max(c["slices"] for c in canaries)
        self.control = pool([c["window"] for c in controls]) if controls else None
        with_base = [c["baseline"] for c in canaries if c["baseline"] is not None]
        self.baseline = pool(with_base) if with_base else None
        self.kind_refs = [r for r in (self.baseline, self.control) if r is not None]
        self.outage = measures_outage(self.window, self.control, t)
        self.control_label = f"in {plural(len(controls), 'control')}"
        #: name -> (eval test or None, what is missing of the evals or ''), in the canaries' order.
        self.evals = {c["name"]: eval_test(c["name"], c["eval_before"], c["eval_after"], t, self.outage["outage"])
                      for c in canaries}

    def cohort(self) -> tuple[dict, dict]:
        """(the cohort's judgement, its decision) against the control cohort and the canaries' baselines."""
        t = self.t
        evals = [test for test, _missing in self.evals.values() if test]
        eval_missing = [missing for _test, missing in self.evals.values() if missing]
        labels = dict(canary=f"in {plural(len(self.canaries), 'canary', 'canaries')}", control=self.control_label,
                      baseline="in their baselines")
        refs = [("control", self.control), ("baseline", self.baseline)]
        cohort = judge(self.window, self.last, self.slices, refs, self.kind_refs, evals, labels, t,
                       self.outage["outage"])
        missing = []
        if self.window["turns"] < t["min_turns"]:
            missing.append(f"the canary cohort saw {plural(self.window['turns'], 'turn')} since the switch "
                           f"({t['min_turns']} needed)")
        missing += _missing_refs(dict(control=self.control, baseline=self.baseline), t)
        missing += eval_missing + self._evidence_gaps()
        return cohort, _decide(cohort, missing, bool(eval_missing), self.outage, self.window["turns"])

    def _evidence_gaps(self) -> list[str]:
        """No eval set at all; no log kinds to look for new ERROR kinds in."""
        gaps = []
        if all(c["eval_after"] is None and c["eval_before"] is None for c in self.canaries):
            gaps.append("no eval set")
        if self.window["warning_kinds"] is None:
            gaps.append("no log kinds of the canaries (measured from the brain): new ERROR kinds were not checked")
        elif not any(r["warning_kinds"] is not None for r in self.kind_refs):
            gaps.append("no baseline or control with log kinds: new ERROR kinds were not checked")
        return gaps

    def engine(self, c: dict) -> dict:
        """The decision on one canary: its window against the control cohort and its own baseline."""
        t = self.t
        test, eval_gap = self.evals[c["name"]]
        own = judge(c["window"], c["last_slice"], c["slices"], [("control", self.control), ("baseline", c["baseline"])],
                    self.kind_refs, [test] if test else [],
                    dict(canary=f"on {c['name']}", control=self.control_label, baseline="in its baseline"),
                    t, self.outage["outage"])
        gaps = []
        if c["window"]["turns"] < t["min_turns"]:
            gaps.append(f"{c['name']} saw {plural(c['window']['turns'], 'turn')} since the switch "
                        f"({t['min_turns']} needed)")
        gaps += _missing_refs(dict(control=self.control, baseline=c["baseline"]), t, c["name"])
        if eval_gap:
            gaps.append(eval_gap)
        return _decide(own, gaps, bool(eval_gap), self.outage, c["window"]["turns"])


def _fail_on_engines(result: dict, engines: dict) -> None:
    """A canary that fails fails the batch, whatever the cohort's decision."""
    failing = [(name, e) for name, e in engines.items() if e["decision"] == "fail"]
    if failing and result["decision"] != "fail":
        result.update(decision="fail", rule=failing[0][1]["rule"],
                      symptom="; ".join(f"{name}: {e['symptom']}" for name, e in failing))
        result["reasons"] = [f"{name}: {e['symptom']}" for name, e in failing] + result["reasons"]


def verdict(canary_items: list, control_items: list, thresholds: dict | None = None) -> dict:
    """The verdict of a batch: canaries (their windows, baselines, evals) against controls. ValueError on input."""
    t = thresholds_of(thresholds)
    canaries, controls = read_batch(canary_items, control_items, t)
    span, notes = _window(canaries, controls)
    batch = _Batch(canaries, controls, t)
    cohort, result = batch.cohort()
    engines = {c["name"]: batch.engine(c) for c in canaries}
    _fail_on_engines(result, engines)
    result["reasons"] += notes
    new_kinds = [x for x in cohort["tests"] if x["rule"] in ("new_error_kind", "new_warning_kind")]
    outage = batch.outage
    result.update(
        evidence=dict(window=span, canary=summary(batch.window), control=summary(batch.control),
                      baseline=summary(batch.baseline), outage=dict((k, v) for k, v in outage.items() if k != "reason"),
                      tests=cohort["tests"]),
        engines=engines,
        new_error_kinds=[x["kind"] for x in new_kinds if x["rule"] == "new_error_kind"],
        new_warning_kinds=[x["kind"] for x in new_kinds if x["rule"] == "new_warning_kind"],
    )
    return result


def _decide(scope: dict, missing: list[str], eval_gap: bool, outage: dict, turns: int) -> dict:
    reasons = list(scope["reasons"])
    if outage["reason"]:
        reasons.append(outage["reason"])
    base = dict(rule=None, symptom=None, missing=missing, outage=outage["outage"], enough_turns=scope["enough_turns"],
                turns=turns, tests=scope["tests"])
    if scope["fired"]:
        rule = scope["fired"][0][0]
        return dict(base, decision="fail", rule=rule, symptom="; ".join(item[2] for item in scope["fired"]),
                    reasons=reasons)
    if outage["outage"]:
        return dict(base, decision="undecided", rule="provider_outage", reasons=reasons)
    if not scope["enough_turns"] or eval_gap:
        reasons.append("not enough evidence to decide: " + "; ".join(missing))
        return dict(base, decision="undecided", reasons=reasons)
    if scope["disputed"]:
        return dict(base, decision="undecided", reasons=reasons)
    reasons.insert(0, f"no rule fired over {plural(turns, 'turn')} since the switch")
    return dict(base, decision="pass", reasons=reasons)


# ---------------------------------------------------------------- outage or bad release, from health probes


def _probe(value, what: str) -> dict:
    """One engine_health result (registered, a loop item, or its health dict) as {name, state, ...}."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be an engine_health result (got {type(value).__name__})")
    loop_var = value.get("ansible_loop_var")
    name = value.get(loop_var) if isinstance(loop_var, str) and isinstance(value.get(loop_var), str) else None
    if value.get("skipped"):
        return dict(name=name or what, state="skipped", failure=None, failing=[], provider=False)
    health = value["health"] if isinstance(value.get("health"), dict) else value
    if not isinstance(health.get("is_healthy"), bool):
        if value.get("failed") or value.get("unreachable"):
            return dict(name=name or what, state="unknown", failure=None, failing=[], provider=False,
                        detail=str(value.get("msg") or "the probe failed"))
        raise ValueError(f"{what} must be an engine_health result (or its health dict, with is_healthy)")
    container = health.get("container") if isinstance(health.get("container"), dict) else {}
    name = name or container.get("name") or health.get("url") or what
    subsystems = health.get("subsystems") if isinstance(health.get("subsystems"), dict) else {}
    failing = [f"{key}={val}" for key, val in sorted(subsystems.items()) if val != "ok"]
    provider = subsystems.get("llm_provider") not in (None, "ok")
    return dict(name=name, state="healthy" if health["is_healthy"] else "unhealthy",
                failure=health.get("failure") or (None if health["is_healthy"] else "unhealthy"),
                failing=failing, provider=provider and not health["is_healthy"],
                detail=health.get("failure_detail"))


def _how(p: dict) -> str:
    what = ", ".join(p["failing"]) or p["failure"] or p["state"]
    return f"{p['name']}: {what}"


def classify_outage(canary, control, canary_measures=None, control_measures=None, thresholds=None) -> dict:
    """Whether unhealthy upgraded Engines point at the release or at an outage outside it (issue 10 item 6).

    ``provider_outage`` needs evidence: most control Engines (more than half of those probed, and at
    least 2 when 2 or more were) unhealthy with ``llm_provider`` failing, or both cohorts' turns failing
    with the provider's codes at similar rates (`canary_measures` / `control_measures`); and every
    unhealthy upgraded Engine failing the same way (its ``llm_provider`` failing too, not a crash loop,
    a database error or no answer). One unhealthy neighbour, or controls unhealthy in unrelated ways,
    is no outage: an unhealthy upgraded Engine is then a ``bad_release``. ``none`` when every upgraded
    Engine is healthy. ValueError on input that is not engine_health results.
    """
    t = thresholds_of(thresholds)
    canaries = [_probe(h, f"canary[{i}]") for i, h in enumerate(canary if isinstance(canary, list) else [canary])]
    canaries = [p for p in canaries if p["state"] != "skipped"]
    if not canaries:
        raise ValueError("canary must name at least one engine_health result of an upgraded Engine")
    if not isinstance(control, list):
        raise ValueError("control must be a list of engine_health results of Engines that were not upgraded")
    controls = [p for p in (_probe(h, f"control[{i}]") for i, h in enumerate(control)) if p["state"] != "skipped"]
    probed = [p for p in controls if p["state"] != "unknown"]
    bad_canaries = [p for p in canaries if p["state"] != "healthy"]
    bad_controls = [p for p in probed if p["state"] == "unhealthy"]
    provider_controls = [p for p in bad_controls if p["provider"]]
    needed = len(probed) // 2 + 1  # more than half; from 2 controls on that is at least 2
    health_evidence = bool(probed) and len(provider_controls) >= needed

    turns = _turns_outage(canary_measures, control_measures, t)
    turn_evidence = bool(turns and turns["outage"])

    counts = dict(upgraded=len(canaries), upgraded_unhealthy=len(bad_canaries), control=len(controls),
                  control_probed=len(probed), control_unhealthy=len(bad_controls),
                  control_provider=len(provider_controls), control_needed=needed)
    evidence = [w for w, ok in (("health", health_evidence), ("turns", turn_evidence)) if ok]
    result = dict(counts=counts, evidence=evidence, controls=[
        dict(name=p["name"], state=p["state"], failure=p["failure"], failing=p["failing"]) for p in controls],
        upgraded=[dict(name=p["name"], state=p["state"], failure=p["failure"], failing=p["failing"])
                  for p in canaries], turns=turns)
    names = ", ".join(p["name"] for p in bad_canaries)
    seen = (f"{len(provider_controls)} of {len(probed)} control Engines that were not upgraded are unhealthy with "
            f"llm_provider failing ({', '.join(p['name'] for p in provider_controls)})" if provider_controls else
            f"no control Engine has llm_provider failing (of {len(probed)} probed)")
    if turn_evidence:
        seen += f"; {turns['reason']}"
    if not bad_canaries:
        note = f"; {seen}" if evidence else ""
        return dict(result, kind="none", reason=f"all {plural(len(canaries), 'upgraded Engine')} are healthy{note}.")
    unexplained = [p for p in bad_canaries if not p["provider"]]
    if evidence and not unexplained:
        return dict(result, kind="provider_outage", reason=(
            f"LLM provider outage: {seen}, as on the upgraded {names}. Not the release's fault: stop the rollout "
            "and resume when the provider is back."))
    if evidence:
        why = (f"the provider is failing ({seen}), but {', '.join(_how(p) for p in unexplained)} fails another way "
               "(a crash loop, the database, no answer): blamed on the release.")
    else:
        why = _no_outage_why(controls, probed, bad_controls, needed)
    return dict(result, kind="bad_release", reason=f"{names} unhealthy after the upgrade; {why}")


def _turns_outage(canary_measures, control_measures, t: dict) -> dict | None:
    """measures_outage() of the pooled canary and control measures; None when neither is given."""
    if canary_measures is None and control_measures is None:
        return None
    if not isinstance(canary_measures, list) or not isinstance(control_measures, list):
        raise ValueError("canary_measures and control_measures go together, each a list of engine_metrics "
                         "results (or their metrics.measures)")
    pooled = [pool([_measures(m, f"{what}[{i}]")[0] for i, m in enumerate(items)]) if items else None
              for what, items in (("canary_measures", canary_measures), ("control_measures", control_measures))]
    return measures_outage(pooled[0], pooled[1], t)


def _no_outage_why(controls: list[dict], probed: list[dict], bad_controls: list[dict], needed: int) -> str:
    """Why the controls show no outage, so that an unhealthy upgraded Engine is blamed on the release."""
    if not controls:
        return "there is no control Engine to compare with: blamed on the release."
    if not probed:
        return f"no control Engine could be probed ({', '.join(p['name'] for p in controls)}): blamed on the release."
    if bad_controls:
        return (f"{len(bad_controls)} of {len(probed)} control Engines are unhealthy "
                f"({'; '.join(_how(p) for p in bad_controls)}), which is not a provider outage (that needs "
                f"{needed} with llm_provider failing): blamed on the release.")
    return f"the {plural(len(probed), 'control Engine')} that were not upgraded are healthy: a bad release."
