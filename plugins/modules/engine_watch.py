#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: engine_watch
short_description: Watch an Engine after its switch, then measure its turns since the switch, in one call
version_added: 0.3.0
description:
  - Waits until an Engine answers healthy O(healthy_streak) times in a row (within O(wait_timeout)), then checks
    that it stays healthy at every probe for O(watch_seconds), then measures its turns since O(since) as
    M(september.engine.engine_metrics) does, in O(slices) slices.
  - Reports rather than fails (the C(is_healthy) of RV(watch.health)); the verdict on the measures is
    M(september.engine.engine_verdict)'s.
notes:
  - See docs/modules.md in the collection for its place in an upgrade's bake.
seealso:
  - module: september.engine.engine_health
  - module: september.engine.engine_metrics
  - module: september.engine.engine_verdict
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._attributes.ACTIONGROUP_ENGINE
  - september.engine._engine_api
  - september.engine._docker
  - september.engine._lock
options:
  container:
    description: The Engine's container (after the switch, the new one), whose health and logs are read.
    type: str
    required: true
  since:
    description: When the switch happened, in epoch seconds or ISO 8601; the measured window starts there.
    type: raw
    required: true
  wait_timeout:
    description: Seconds to wait until the Engine is healthy O(healthy_streak) times in a row.
    type: int
    default: 120
  healthy_streak:
    description: Healthy probes in a row that make the Engine healthy.
    type: int
    default: 3
  watch_seconds:
    description: Seconds the Engine must then stay healthy at every probe (0 to skip).
    type: int
    default: 0
  interval:
    description: Seconds between two probes of the watch.
    type: float
    default: 5
  measure:
    description: Measure the turns since O(since) once the Engine is healthy.
    type: bool
    default: true
  slices:
    description: Slices of the window (a breach must still stand in the last one).
    type: int
    default: 3
  min_turns:
    description: Turns the measures need to be reliable (reported with them).
    type: int
    default: 20
  source:
    description: Where the turns are read, as in M(september.engine.engine_metrics).
    type: str
    choices: [logs, brain, both]
    default: logs
attributes:
  check_mode:
    support: full
    details:
      - It only probes and reads; in check mode it does the same and takes no lock.
  diff_mode:
    support: N/A
    details:
      - It changes nothing on the Engine.
  idempotent:
    support: full
    details:
      - It changes nothing on the Engine; with O(lock) it only refreshes a lock this run holds.
author:
  - September Engine maintainers (@september-engine)
"""

EXAMPLES = r"""
- name: Bake the canary for 60 s and measure it since its switch
  september.engine.engine_watch:
    container: engine-u042
    since: "{{ switched_at }}"
    watch_seconds: 60
  register: watch

- name: Judge the batch on the controller
  september.engine.engine_verdict:
    canary: [{name: engine-u042, window: "{{ watch.watch.metrics }}", baseline: "{{ baseline.metrics }}"}]
  delegate_to: localhost
"""

RETURN = r"""
watch:
  description: What the round saw.
  returned: success
  type: dict
  contains:
    health:
      description: The last health result, as M(september.engine.engine_health) returns it.
      type: dict
      sample: {"is_healthy": true, "failure": "none", "probes": 13}
    healthy_seconds:
      description: Seconds from O(since) until the Engine was healthy (null when it never was).
      type: float
      sample: 2.4
    watched_seconds:
      description: Seconds of the watch.
      type: float
      sample: 60.2
    metrics:
      description: The measures since O(since), as M(september.engine.engine_metrics) returns them; null when the
        Engine was not healthy.
      type: dict
      sample: {"window": {"start": "2026-05-04T02:00:00.000Z", "seconds": 62.6}, "measures": {"turns": 31}}
"""

from ansible_collections.september.engine.plugins.module_utils._docker import docker_argument_spec
from ansible_collections.september.engine.plugins.module_utils._engine_api import engine_api_argument_spec
from ansible_collections.september.engine.plugins.module_utils._lock import lock_argument_spec
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule
from ansible_collections.september.engine.plugins.module_utils._watch import EngineWatch


def main() -> None:
    argument_spec = dict(
        container=dict(type="str", required=True),
        since=dict(type="raw", required=True),
        wait_timeout=dict(type="int", default=120),
        healthy_streak=dict(type="int", default=3),
        watch_seconds=dict(type="int", default=0),
        interval=dict(type="float", default=5.0),
        measure=dict(type="bool", default=True),
        slices=dict(type="int", default=3),
        min_turns=dict(type="int", default=20),
        source=dict(type="str", choices=["logs", "brain", "both"], default="logs"),
        **engine_api_argument_spec(),
        **docker_argument_spec(),
        **lock_argument_spec(),
    )
    module = EngineModule(argument_spec, docker=True)
    module.run(lambda: dict(watch=EngineWatch(module.params, check_sdk=module.check_sdk).run()), locked=True)


if __name__ == "__main__":
    main()
