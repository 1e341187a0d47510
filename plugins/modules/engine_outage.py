#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: engine_outage
short_description: Tell a provider outage from a bad release when upgraded Engines are unhealthy
version_added: 0.1.0
description:
  - Classifies the M(september.engine.engine_health) results of the upgraded Engines of a batch against those of
    control Engines (not upgraded, probed at the same time) as V(none) (every upgraded Engine is healthy),
    V(provider_outage) or V(bad_release). Pure computation; runs anywhere (the controller is fine) and changes
    nothing.
  - V(provider_outage) needs evidence, more than half of the probed controls (at least 2 when 2 or more were)
    unhealthy with C(llm_provider) failing, or, with O(canary_measures) and O(control_measures), both cohorts'
    turns failing with C(LLM_PROVIDER_ERROR) (or C(HTTP_502)) at similar rates; and every unhealthy upgraded Engine
    failing the same way. Otherwise an unhealthy upgraded Engine is a V(bad_release).
  - Probe results of a loop are accepted as registered (C(results) items); skipped items are left out, and a probe
    that failed or whose host was unreachable counts as not probed.
author:
  - September Engine maintainers (@september-engine)
options:
  canary:
    description: The M(september.engine.engine_health) result of the upgraded Engine (registered, or its C(health)),
      or a list of them.
    type: raw
    required: true
  control:
    description: The M(september.engine.engine_health) results of Engines that were not upgraded, probed at the same
      time (for a loop, its C(results)).
    type: list
    elements: dict
    default: []
  canary_measures:
    description:
      - M(september.engine.engine_metrics) results (or their C(metrics.measures)) of the upgraded Engines over a
        recent window. With O(control_measures), turns failing with the provider's codes in both cohorts are evidence
        of an outage too.
    type: list
    elements: dict
  control_measures:
    description: M(september.engine.engine_metrics) results of the control Engines over the same window.
    type: list
    elements: dict
  provider_error_share:
    description: Share of a cohort's turns (0 to 1) that must fail with the provider's codes for the turns to show an
      outage.
    type: float
    default: 0.05
  provider_error_min_count:
    description: Turns of each cohort that must fail with the provider's codes for the turns to show an outage.
    type: int
    default: 3
  significance:
    description: The turns show no outage but a bad release when the canaries' share of provider failures is higher
      than the controls' with a one-sided Fisher p-value under this.
    type: float
    default: 0.05
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._attributes.READ_ONLY
notes:
  - See docs/modules.md in the collection for why a provider outage is not blamed on the release.
seealso:
  - module: september.engine.engine_health
  - module: september.engine.engine_verdict
"""

EXAMPLES = r"""
- name: Probe the upgraded Engine again
  september.engine.engine_health:
    container: "{{ engine_container_name }}"
  register: canary_health

- name: Probe the control Engines
  september.engine.engine_health:
    url: "{{ hostvars[item]['engine_url'] }}"
  loop: "{{ control_hosts }}"
  register: control_health

- name: Is the canary failing alone, or is the LLM provider down for everyone?
  september.engine.engine_outage:
    canary: "{{ canary_health }}"
    control: "{{ control_health.results }}"
  delegate_to: localhost
  register: engine_outage

- name: Stop without rolling back on a provider outage
  ansible.builtin.fail:
    msg: "{{ engine_outage.outage.reason }}"
  when: engine_outage.outage.kind == 'provider_outage'
"""

RETURN = r"""
outage:
  description: Whether unhealthy upgraded Engines point at the release or at an outage outside it.
  returned: always
  type: dict
  contains:
    kind:
      description: V(provider_outage) (with evidence, see the description), V(bad_release) (an upgraded Engine is
        unhealthy and no outage explains it), or V(none) (every upgraded Engine is healthy).
      type: str
      returned: always
      choices: [none, provider_outage, bad_release]
      sample: bad_release
    reason:
      description: One sentence for the operator.
      type: str
      returned: always
      sample: "u001 unhealthy after the upgrade; 1 of 3 control Engines are unhealthy (u004: database=error), which is
        not a provider outage (that needs 2 with llm_provider failing): blamed on the release."
    evidence:
      description: What showed a provider outage, C(health) (most controls with llm_provider failing) and/or C(turns)
        (both cohorts' turns failing with the provider's codes); empty when nothing did.
      type: list
      elements: str
      returned: always
      sample: ["health"]
    counts:
      description: C(upgraded), C(upgraded_unhealthy), C(control) (given), C(control_probed) (answered a probe result),
        C(control_unhealthy), C(control_provider) (unhealthy with llm_provider failing) and C(control_needed) (how
        many with llm_provider failing make an outage).
      type: dict
      returned: always
      sample: {"upgraded": 1, "upgraded_unhealthy": 1, "control": 3, "control_probed": 3, "control_unhealthy": 1,
               "control_provider": 0, "control_needed": 2}
    controls:
      description: Each control Engine, C(name), C(state) (V(healthy), V(unhealthy), V(unknown) when its probe failed),
        C(failure) (from engine_health) and C(failing) subsystems.
      type: list
      elements: dict
      returned: always
      sample: [{"name": "u004", "state": "unhealthy", "failure": "unhealthy", "failing": ["database=error"]}]
    upgraded:
      description: Each upgraded Engine, with the same keys as RV(outage.controls).
      type: list
      elements: dict
      returned: always
      sample: [{"name": "u001", "state": "unhealthy", "failure": "crash_loop", "failing": []}]
    turns:
      description: With O(canary_measures), the test on the turns, C(outage), C(canary_share), C(control_share),
        C(p_value) and C(reason); null otherwise.
      type: dict
      returned: always
      sample: {"outage": true, "canary_share": 0.4, "control_share": 0.38, "p_value": 0.5, "reason": "LLM provider
        outage: 40% of the canaries' turns and 38% of the controls' fail with LLM_PROVIDER_ERROR/HTTP_502"}
"""

from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule
from ansible_collections.september.engine.plugins.module_utils._verdict import classify_outage


def thresholds(p: dict) -> dict:
    if not 0 <= p["provider_error_share"] <= 1:
        raise OptionsError(f"provider_error_share is a share from 0 to 1 (got {p['provider_error_share']}).")
    if p["provider_error_min_count"] < 1:
        raise OptionsError(f"provider_error_min_count must be 1 or more (got {p['provider_error_min_count']}).")
    if not 0 < p["significance"] < 1:
        raise OptionsError(f"significance is a p-value between 0 and 1, for example 0.05 (got {p['significance']}).")
    if (p["canary_measures"] is None) != (p["control_measures"] is None):
        raise OptionsError("canary_measures and control_measures go together: give both (engine_metrics results of "
                           "the upgraded and the control Engines over the same window), or neither.")
    return dict(new_error_kind_share=p["provider_error_share"], new_error_kind_min_count=p["provider_error_min_count"],
                significance=p["significance"])


def main() -> None:
    argument_spec = dict(
        canary=dict(type="raw", required=True),
        control=dict(type="list", elements="dict", default=[]),
        canary_measures=dict(type="list", elements="dict"),
        control_measures=dict(type="list", elements="dict"),
        provider_error_share=dict(type="float", default=0.05),
        provider_error_min_count=dict(type="int", default=3),
        significance=dict(type="float", default=0.05),
    )
    module = EngineModule(argument_spec)
    p = module.params

    def work() -> dict:
        try:
            return dict(outage=classify_outage(p["canary"], p["control"], p["canary_measures"], p["control_measures"],
                                               thresholds(p)))
        except ValueError as exc:
            raise OptionsError(f"{exc}.") from exc

    module.run(work)


if __name__ == "__main__":
    main()
