#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: engine_verdict
short_description: Decide whether a canary batch passes, fails or is undecided, from pooled evidence
version_added: 0.1.0
description:
  - Weighs the evidence M(september.engine.engine_metrics) (and M(september.engine.engine_eval)) gathered on a
    rollout batch and decides, for the batch (the canary cohort) and for each canary, V(pass), V(fail) or
    V(undecided). Pure computation; run it on the controller (C(delegate_to=localhost), C(run_once)).
  - "The evidence: each canary against its own baseline; the canary cohort (turns pooled) against the control
    cohort (Engines not upgraded yet, measured over the same window) and against the canaries' baselines pooled;
    eval runs before and after the switch."
  - "The rules, each fired only when it breaches against every reference that has O(min_turns) turns (references
    that disagree make the verdict undecided): the error rate sharply worse (O(error_rate_max_increase) and
    O(error_rate_factor)) and significant (O(significance)); p50 / p99 latency more than O(latency_p50_factor) /
    O(latency_p99_factor) times the reference, and significant; a new ERROR or CRITICAL log kind, absent from every
    baseline and control, in at least O(new_error_kind_share) of the canary cohort's turns and
    O(new_error_kind_min_count) times (no O(min_turns) needed); more than O(eval_max_regressions) eval regressions."
  - New WARNING kinds and a cache hit ratio drop are reported, and decide only with O(fail_on_new_warnings) /
    O(fail_on_cache_drop). A breach that no longer stands in the last slice (improving) and a single outlier never
    decide.
  - V(pass) needs the canary cohort and a reference with O(min_turns) turns since the switch, and every given eval
    set run; otherwise V(undecided), RV(verdict.missing) naming each missing piece.
  - Both cohorts' turns failing with the provider's codes at similar rates is a provider outage, not blamed on the
    release; when nothing else fires the decision is V(undecided) with RV(verdict.outage=true) and
    RV(verdict.rule=provider_outage).
author:
  - September Engine maintainers (@september-engine)
options:
  canary:
    description:
      - The upgraded Engines of the batch, each a dict with C(name) (the inventory name; C(engine) is accepted too, and
        without either the container the C(window) result names), C(window) (the M(september.engine.engine_metrics)
        result, or its C(metrics) or C(metrics.measures), of the window since the switch), C(baseline) (the same, of
        the window before the switch; optional), C(last_slice) (the measures, or the slice, of the end of the window;
        optional, taken from C(window)'s slices when a whole result is given), C(eval_before) and C(eval_after)
        (M(september.engine.engine_eval) results or their C(eval); optional, also as C(evals) with C(before) and
        C(after)).
      - Give whole engine_metrics results where you can, the verdict then names the window and finds the last slice.
    type: list
    elements: dict
    required: true
  control:
    description:
      - Engines that were not upgraded, each a dict with C(name) (or C(engine)) and C(window) (the
        M(september.engine.engine_metrics) result over the same window as the canaries; a control measured over
        another window is named in RV(verdict.reasons)).
    type: list
    elements: dict
    default: []
  min_turns:
    description: Turns the canary cohort and a reference need for a V(pass), and each side needs for the error-rate,
      latency and cache rules.
    type: int
    default: 20
  cache_hit_ratio_max_drop:
    description: Drop of the prompt-cache hit ratio, in absolute terms, that is reported (and decides with
      O(fail_on_cache_drop)).
    type: float
    default: 0.25
  fail_on_cache_drop:
    description: A cache hit ratio drop alone fails the verdict.
    type: bool
    default: false
  fail_on_new_warnings:
    description: A new WARNING log kind fails the verdict under the same share, count and significance as a new
      ERROR kind (by default new WARNING kinds are reported only).
    type: bool
    default: false
  significance:
    description: The p-value under which a one-sided test counts as significant (between 0 and 1).
    type: float
    default: 0.05
  new_error_kind_share:
    description: Share of the canary cohort's turns (0 to 1) a new log kind must reach to decide.
    type: float
    default: 0.05
  new_error_kind_min_count:
    description: Times a new log kind must appear in the canary cohort's window to decide.
    type: int
    default: 3
  eval_max_regressions:
    description: Eval cases that passed before the switch and may fail after it, per canary, before the verdict fails.
    type: int
    default: 0
  slices:
    description:
      - How many slices the canaries' windows were cut into, when C(last_slice) is given as measures (a whole
        M(september.engine.engine_metrics) result says it itself). The last slice needs O(min_turns) / O(slices)
        turns to show that a breach is over.
    type: int
    default: 3
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._attributes.READ_ONLY
  - september.engine._thresholds
attributes:
  check_mode:
    support: full
    details:
      - Pure computation on its options; check mode gives the same verdict.
  idempotent:
    support: full
    details:
      - The same options always give the same verdict.
notes:
  - The statistics are computed in plain Python (no SciPy).
  - See docs/modules.md in the collection for the rules, the tests and the outage in detail.
seealso:
  - module: september.engine.engine_metrics
  - module: september.engine.engine_eval
  - module: september.engine.engine_outage
"""

EXAMPLES = r"""
- name: Measure the canary since its switch
  september.engine.engine_metrics:
    container: "{{ engine_container_name }}"
    start: "{{ switched_at }}"
    end: "{{ measured_at }}"
  register: canary_window

- name: Measure a control Engine over the same window
  september.engine.engine_metrics:
    deployment: container
    container_name: engine-u042
    start: "{{ switched_at }}"
    end: "{{ measured_at }}"
  register: control_window

- name: Decide the batch on the controller
  september.engine.engine_verdict:
    canary:
      - name: "{{ inventory_hostname }}"
        window: "{{ canary_window }}"
        baseline: "{{ canary_baseline }}"
        eval_before: "{{ evals_before | default(omit) }}"
        eval_after: "{{ evals_after | default(omit) }}"
    control:
      - name: u042
        window: "{{ control_window }}"
    min_turns: 20
    significance: 0.05
  delegate_to: localhost
  run_once: true
  register: batch_verdict
  failed_when: batch_verdict.verdict.decision == 'fail'
"""

RETURN = r"""
verdict:
  description: The decision on the batch, why, and the evidence it rests on.
  returned: always
  type: dict
  contains:
    decision:
      description: V(pass) (enough evidence, no rule fired), V(fail) (a rule fired, for the cohort or a canary) or
        V(undecided) (evidence missing, a provider outage, or the references disagree).
      type: str
      returned: always
      sample: fail
    rule:
      description: The rule that decided a V(fail) (C(new_error_kind), C(error_rate), C(eval_regression),
        C(latency_p99), C(latency_p50), C(new_warning_kind), C(cache_hit_ratio)), C(provider_outage) for an outage,
        else null.
      type: str
      returned: always
      sample: new_error_kind
    symptom:
      description: The fired rules in one line, for a notification ("rolling back due to ..."); null unless V(fail).
      type: str
      returned: always
      sample: "new ERROR kind 'ERROR agent: turn failed: TOOL_EXECUTION_FAILED' in 29% of turns in 1 canary (9 times,
        none in 61 reference turns) (p<0.0001); error rate 29% in 1 canary vs 0% in 2 controls (p<0.0001)"
    reasons:
      description: Sentences for the operator, fired rules first, then disagreements, improving and reported breaches,
        the outage, and what evidence was missing.
      type: list
      elements: str
      returned: always
      sample: ["error rate 29% in 1 canary vs 0% in 2 controls (p<0.0001)"]
    missing:
      description: Each piece of evidence that was not there (also with V(pass), when the other reference was enough).
      type: list
      elements: str
      returned: always
      sample: ["the canary cohort saw 3 turns since the switch (20 needed)",
               "the control cohort saw 0 turns in the same window (20 needed)", "no eval set"]
    outage:
      description: Both cohorts' turns fail with the provider's codes at similar rates.
      type: bool
      returned: always
      sample: false
    enough_turns:
      description: The canary cohort and a reference had O(min_turns) turns.
      type: bool
      returned: always
      sample: true
    turns:
      description: Turns of the canary cohort since the switch.
      type: int
      returned: always
      sample: 31
    tests:
      description: The cohort's tests, as in RV(verdict.evidence.tests).
      type: list
      elements: dict
      returned: always
      sample: []
    evidence:
      description: What the verdict rests on.
      type: dict
      returned: always
      contains:
        window:
          description: The canaries' window (C(since), C(until), C(seconds)), null values when only measures (not
            engine_metrics results) were given.
          type: dict
          returned: always
          sample: {"since": "2026-03-01T10:00:00.000Z", "until": "2026-03-01T10:01:30.000Z", "seconds": 90.0}
        canary:
          description: The canary cohort pooled, C(engines), C(turns), C(failed_turns), C(refused_turns),
            C(error_rate), C(provider_errors), C(latency_samples), C(latency_p50_ms), C(latency_p99_ms),
            C(cache_hit_ratio).
          type: dict
          returned: always
          sample: {"engines": 1, "turns": 31, "failed_turns": 9, "refused_turns": 0, "error_rate": 0.2903,
                   "provider_errors": 0, "latency_samples": 31, "latency_p50_ms": 1040.0, "latency_p99_ms": 1290.0,
                   "cache_hit_ratio": 0.1}
        control:
          description: The control cohort pooled, the same keys; null without control Engines.
          type: dict
          returned: always
          sample: {"engines": 2, "turns": 61, "failed_turns": 0, "error_rate": 0.0}
        baseline:
          description: The canaries' baselines pooled, the same keys; null when no canary has a baseline.
          type: dict
          returned: always
          sample: {"engines": 1, "turns": 30, "failed_turns": 0, "error_rate": 0.0}
        outage:
          description: The provider-outage test, C(outage), C(canary_share) and C(control_share) of turns failing with
            the provider's codes, and the Fisher C(p_value) of the canaries' share being higher.
          type: dict
          returned: always
          sample: {"outage": false, "canary_share": 0.0, "control_share": 0.0, "p_value": 1.0}
        tests:
          description:
            - One entry per rule and reference, C(rule), C(reference) (C(control), C(baseline), or C(baselines and
              controls) for log kinds), C(canary) and C(reference_value), C(threshold), C(p_value), C(evaluated)
              (both sides had enough data), C(breached) (over the threshold), C(fired) (breached and significant),
              C(standing) (the breach is still in the last slice; null when it could not tell), C(note).
            - Log-kind tests add C(kind), C(share) and C(reference_turns); eval tests add C(engine), C(regressions)
              and C(detail).
          type: list
          elements: dict
          returned: always
          sample: [{"rule": "error_rate", "reference": "control", "canary": 0.2903, "reference_value": 0.0,
                    "threshold": 0.1, "p_value": 0.000012, "evaluated": true, "breached": true, "fired": true,
                    "standing": true, "note": null}]
    engines:
      description: Per canary, its own C(decision), C(rule), C(symptom), C(reasons), C(missing), C(enough_turns),
        C(turns), C(outage) and C(tests), against its own baseline and the control cohort.
      type: dict
      returned: always
      sample: {"u001": {"decision": "fail", "rule": "new_error_kind", "enough_turns": true, "turns": 31}}
    new_error_kinds:
      description: ERROR and CRITICAL log kinds of the canary cohort that no baseline and no control has.
      type: list
      elements: str
      returned: always
      sample: ["ERROR agent: turn failed: TOOL_EXECUTION_FAILED"]
    new_warning_kinds:
      description: WARNING log kinds of the canary cohort that no baseline and no control has.
      type: list
      elements: str
      returned: always
      sample: ["WARNING llm: prompt cache miss: system prompt changed"]
"""

from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError
from ansible_collections.september.engine.plugins.module_utils._metrics import RATE_THRESHOLDS, thresholds_argument_spec
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule
from ansible_collections.september.engine.plugins.module_utils._verdict import DEFAULT_VERDICT_THRESHOLDS, verdict

FLOATS = ("error_rate_max_increase", "error_rate_factor", "error_rate_floor", "latency_p50_factor",
          "latency_p99_factor", "cache_hit_ratio_max_drop", "significance", "new_error_kind_share")
INTS = ("min_turns", "new_error_kind_min_count", "eval_max_regressions", "slices")
BOOLS = ("fail_on_cache_drop", "fail_on_new_warnings")


def check_thresholds(p: dict) -> dict:
    """The thresholds of the options, each checked; OptionsError naming the option."""
    for name, low, high in (("min_turns", 1, None), ("new_error_kind_min_count", 1, None),
                            ("eval_max_regressions", 0, None), ("slices", 1, 100)):
        if p[name] < low or (high is not None and p[name] > high):
            bound = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise OptionsError(f"{name} must be {bound} (got {p[name]}).")
    for name in FLOATS:
        if p[name] < 0:
            raise OptionsError(f"{name} must be 0 or more (got {p[name]}).")
    if not 0 < p["significance"] < 1:
        raise OptionsError(f"significance is a p-value between 0 and 1, for example 0.05 (got {p['significance']}).")
    for name in ("new_error_kind_share", "error_rate_max_increase", "error_rate_floor", "cache_hit_ratio_max_drop"):
        if p[name] > 1:
            raise OptionsError(f"{name} is a share from 0 to 1, for example 0.05 for 5% (got {p[name]}).")
    return {name: p[name] for name in DEFAULT_VERDICT_THRESHOLDS}


def main() -> None:
    argument_spec = dict(
        canary=dict(type="list", elements="dict", required=True),
        control=dict(type="list", elements="dict", default=[]),
    )
    for name in FLOATS:
        if name not in RATE_THRESHOLDS:
            argument_spec[name] = dict(type="float", default=DEFAULT_VERDICT_THRESHOLDS[name])
    for name in INTS:
        argument_spec[name] = dict(type="int", default=DEFAULT_VERDICT_THRESHOLDS[name])
    for name in BOOLS:
        argument_spec[name] = dict(type="bool", default=DEFAULT_VERDICT_THRESHOLDS[name])
    module = EngineModule(argument_spec, shared=[thresholds_argument_spec()])

    def work() -> dict:
        thresholds = check_thresholds(module.params)
        try:
            return dict(verdict=verdict(module.params["canary"], module.params["control"], thresholds))
        except ValueError as exc:
            raise OptionsError(f"{exc}.") from exc

    module.run(work)


if __name__ == "__main__":
    main()
