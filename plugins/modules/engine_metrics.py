#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: engine_metrics
short_description: Measure an Engine's turns over a time window and decide whether to roll back
version_added: 0.1.0
description:
  - Measures an Engine's turns in a time window, from its JSON log lines (read through the Docker API) or from the
    event rows of its brain (read only), and returns the measures of the window and of each of O(slices) equal
    slices of it (RV(metrics.measures), RV(metrics.slices)).
  - With O(baseline), compares the window with it and returns RV(metrics.verdict), V(rollback) when the error rate
    or the latency is sharply worse than the baseline and still so in the last slice.
  - A window without O(start) that holds fewer than O(min_turns) turns can reach further back, up to
    O(baseline_max_seconds); RV(metrics.window) says where it really started.
  - Changes nothing.
author:
  - September Engine maintainers (@september-engine)
options:
  container:
    description:
      - Name or id of the Engine's container. Its logs are read with O(source=logs) or O(source=both), and its brain
        is found on what is mounted at O(data_dir).
      - With O(source=logs) and O(source=both), O(container) or O(deployment) is required; with O(source=brain),
        exactly one of O(container), O(deployment), O(volume) and O(path) locates the brain.
    type: str
  deployment:
    description:
      - Locate the Engine as the inventory names it, like M(september.engine.engine_info), instead of by
        O(container), a per-user container (V(container), with O(container_name)) or the service of a Docker Compose
        project (V(compose), with O(compose_dir) and O(compose_service)).
      - Mutually exclusive with O(container), O(volume) and O(path).
    type: str
    choices: [container, compose]
  container_name:
    description: The Engine's container, with O(deployment=container).
    type: str
  compose_dir:
    description: Folder of the Engine's Compose project, with O(deployment=compose).
    type: path
  compose_service:
    description: The Engine's service in the Compose project, with O(deployment=compose).
    type: str
    default: engine
  source:
    description:
      - Where the turns are read. V(logs) from the container's JSON log lines; V(brain) from the event rows of its
        brain (O(brain_events)), without refused turns and log kinds; V(both) measures from the logs and returns the
        brain's measures next to them in RV(metrics.by_source).
    type: str
    choices: [logs, brain, both]
    default: logs
  start:
    description:
      - Start of the window, ISO 8601 (C(2026-03-01T10:00:00Z); without a zone, UTC) or epoch seconds.
      - Default O(window_seconds) before O(end).
    type: raw
    aliases: [since]
  end:
    description:
      - End of the window (excluded), in the same formats. Default now; a time in the future is cut to now.
    type: raw
  window_seconds:
    description: Length of the window when O(start) is not given.
    type: int
    default: 300
  baseline_max_seconds:
    description:
      - When O(start) is not given and the window holds fewer than O(min_turns) turns, double its length until it
        holds O(min_turns) turns or reaches this many seconds. V(0) never reaches back.
      - With O(source=both) both sources are searched, and when only the brain holds O(min_turns) turns,
        RV(metrics.measures) come from the brain (its C(source) says so).
    type: int
    default: 0
  slices:
    description:
      - Number of equal slices the window is measured in (RV(metrics.slices)). V(1) measures the window as a whole
        (a breach is then never seen as improving).
    type: int
    default: 3
  baseline:
    description:
      - The RV(metrics.measures) of an earlier run to compare with (the whole registered result or its C(metrics)
        are accepted too). Returns RV(metrics.verdict) when given.
    type: dict
  min_turns:
    description:
      - Turns needed in the window and in the baseline before anything is decided, and latencies needed before a
        latency percentile decides on its own. The last slice needs O(min_turns) / O(slices) turns to show a
        recovery.
    type: int
    default: 20
  cache_hit_ratio_max_drop:
    description:
      - Drop of the prompt-cache hit ratio, in absolute terms, that counts as a breach. A reason next to another
        breach; decides alone with O(fail_on_cache_drop).
    type: float
    default: 0.25
  fail_on_cache_drop:
    description: Roll back on a cache hit ratio drop alone.
    type: bool
    default: false
  fail_on_new_warnings:
    description:
      - Roll back on WARNING/ERROR/CRITICAL log kinds the baseline did not have, alone (they are always listed in
        RV(metrics.verdict.new_warning_kinds)). This does not need O(min_turns) turns.
    type: bool
    default: false
  brain_events:
    description:
      - Where the brain records one row per turn (O(source=brain) or O(source=both)); the defaults are the reference
        Engine's C(observability_events) table. The time column must hold ISO 8601 UTC text.
    type: dict
    suboptions:
      table:
        description: The event table.
        type: str
        default: observability_events
      type_column:
        description: Column of the event type.
        type: str
        default: event_type
      completed_type:
        description: Event type of a completed turn.
        type: str
        default: turn_completed
      failed_type:
        description: Event type of a failed turn.
        type: str
        default: turn_failed
      time_column:
        description: Column of the event time (ISO 8601, UTC).
        type: str
        default: created_at
      latency_column:
        description: Column of the turn latency in milliseconds.
        type: str
        default: latency_ms
      input_tokens_column:
        description: Column of the turn's input tokens.
        type: str
        default: input_tokens
      output_tokens_column:
        description: Column of the turn's output tokens.
        type: str
        default: output_tokens
      cache_hit_tokens_column:
        description: Column of the turn's prompt-cache hit tokens.
        type: str
        default: cache_hit_tokens
      error_column:
        description: Column of a failed turn's error code.
        type: str
        default: error_code
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._attributes.ACTIONGROUP_ENGINE
  - september.engine._attributes.READ_ONLY
  - september.engine._docker
  - september.engine._brain
  - september.engine._thresholds
notes:
  - Logs come from the Docker API (C(docker logs)); a container whose logging driver cannot be read back (for
    example C(none) or C(syslog)) can only be measured with O(source=brain).
  - Each log line is placed in the window by its own C(timestamp); each brain row by O(brain_events.time_column).
  - See docs/modules.md in the collection for what is measured and how the verdict is reached.
seealso:
  - module: september.engine.engine_verdict
  - module: september.engine.engine_outage
  - module: september.engine.engine_health
  - module: september.engine.engine_info
"""

EXAMPLES = r"""
- name: Measure the Engine before the switch (baseline)
  september.engine.engine_metrics:
    container: "{{ engine_container_name }}"
    window_seconds: 120
  register: engine_before

- name: Measure the bake window after the switch, compared with the baseline
  september.engine.engine_metrics:
    container: "{{ engine_container_name }}"
    start: "{{ bake_started }}"
    slices: 3
    baseline: "{{ engine_before.metrics.measures }}"
  register: engine_after
  failed_when: engine_after.metrics.verdict.decision == 'rollback'

- name: Measure from the brain's event rows, read only
  september.engine.engine_metrics:
    volume: engine-data-u042
    source: brain
    start: "2026-03-01T10:00:00Z"
    end: "2026-03-01T10:15:00Z"
  register: engine_brain_metrics

- name: Measure a control Engine as the inventory names it, over the canaries' window
  september.engine.engine_metrics:
    deployment: compose
    compose_dir: /srv/engine-team-a
    start: "{{ canary_switched_at }}"
    end: "{{ canary_measured_at }}"
  register: control_metrics

- name: A baseline that reaches back up to an hour when the last 5 minutes were quiet
  september.engine.engine_metrics:
    container: "{{ engine_container_name }}"
    source: both
    window_seconds: 300
    baseline_max_seconds: 3600
  register: engine_baseline
"""

RETURN = r"""
metrics:
  description: What the Engine did in the window.
  returned: always
  type: dict
  contains:
    source:
      description: Where the measures come from (O(source)).
      type: str
      sample: logs
    container:
      description: Name of the container whose logs (or brain) were read, null with O(volume) or O(path).
      type: str
      sample: engine-u042
    brain:
      description: Path of the brain on the Docker host, when it was read.
      type: str
      sample: /var/lib/docker/volumes/engine-data-u042/_data/brain.sqlite
    window:
      description:
        - The window measured, C(start) and C(end) (ISO 8601 UTC) and C(seconds); C(requested_seconds) is the length
          asked for and C(extended) is true when a thin window reached further back (O(baseline_max_seconds)).
      type: dict
      sample: {"start": "2026-03-01T09:55:00.000Z", "end": "2026-03-01T10:05:00.000Z", "seconds": 600.0,
               "requested_seconds": 300.0, "extended": true}
    measures:
      description:
        - The measures of the window. C(turns) counts completed, failed and refused turns; C(error_rate) is failed
          plus refused over turns (null without turns); C(errors_by_code) counts failures per error code
          (C(HTTP_<status>) for refused ones); latencies are in milliseconds over the turns that ran (nearest-rank
          percentiles); C(latencies_ms) lists them sorted (at most 200, evenly spaced ranks when there are more);
          C(cache_hit_ratio) is C(cache_hit_tokens) /
          C(input_tokens); C(warning_kinds) counts the WARNING/ERROR/CRITICAL log kinds, each key starting with its
          level (null from the brain); C(log_lines) counts the JSON lines read.
      type: dict
      sample: {"source": "logs", "turns": 60, "completed_turns": 42, "failed_turns": 18, "refused_turns": 0,
               "error_rate": 0.3, "errors_by_code": {"TOOL_EXECUTION_FAILED": 18}, "latency_samples": 60,
               "latency_p50_ms": 1004.0, "latency_p95_ms": 1098.0, "latency_p99_ms": 1110.0, "latency_max_ms": 1110.0,
               "latencies_ms": [951.0, 960.0, 1004.0, 1110.0],
               "input_tokens": 24300, "output_tokens": 310, "cache_hit_tokens": 2400, "cache_hit_ratio": 0.0988,
               "log_lines": 241, "warning_kinds": {"ERROR agent: turn failed: TOOL_EXECUTION_FAILED": 18,
                                                   "WARNING llm: prompt cache miss: system prompt changed": 60}}
    slices:
      description: Each slice of the window in order, with C(start), C(end) and its C(measures); none if O(slices=1).
      type: list
      elements: dict
      sample: [{"start": "2026-03-01T10:00:00.000Z", "end": "2026-03-01T10:01:40.000Z", "measures": {"turns": 20}}]
    by_source:
      description: With O(source=both), the measures from each source (C(logs), C(brain)) to cross-check.
      type: dict
      sample: {"logs": {"turns": 60}, "brain": {"turns": 59}}
    verdict:
      description: The comparison with O(baseline). Present only when O(baseline) is given.
      type: dict
      contains:
        decision:
          description: V(rollback) when a decisive breach stands to the end of the window, else V(ok).
          type: str
          sample: rollback
        reasons:
          description:
            - Why, one sentence per breach; breaches that do not decide alone and improving ones are listed after
              the standing ones; C(not enough turns) first when there were too few to decide.
          type: list
          elements: str
          sample: ["error rate 31.0% vs 0.0% baseline (threshold +10 points, x2)",
                   "p99 latency 1110 ms vs 281 ms baseline (threshold x2)"]
        symptom:
          description: The standing breaches that decide the rollback, in one line (for a message), null with V(ok).
          type: str
          sample: "error rate 31.0% vs 0.0% baseline (threshold +10 points, x2); p99 latency 1110 ms vs 281 ms baseline
            (threshold x2)"
        checks:
          description:
            - Per check (C(error_rate), C(latency_p99), C(latency_p50), C(cache_hit_ratio), C(new_warnings)) the
              C(baseline) and C(current) values, the C(threshold) crossed by C(breached), the C(rule), whether the
              breach C(decisive)ly counts on its own, and the C(last_slice) value and C(last_slice_breached) (null
              when not looked at, or too few turns there).
          type: dict
          sample: {"error_rate": {"baseline": 0.0, "current": 0.31, "threshold": 0.1, "rule": "+10 points, x2",
                                  "breached": true, "decisive": true, "last_slice": 0.29,
                                  "last_slice_breached": true}}
        new_warning_kinds:
          description: WARNING/ERROR/CRITICAL log kinds of the window that the baseline does not have.
          type: list
          elements: str
          sample: ["WARNING llm: prompt cache miss: system prompt changed"]
        enough_turns:
          description: Whether the window and the baseline both had O(min_turns) turns.
          type: bool
          sample: true
"""

from ansible_collections.september.engine.plugins.module_utils._brain import LOCATION_OPTIONS, brain_module_specs
from ansible_collections.september.engine.plugins.module_utils._measure import EngineMetrics
from ansible_collections.september.engine.plugins.module_utils._metrics import (
    DEFAULT_BRAIN_EVENTS,
    DEFAULT_THRESHOLDS,
    thresholds_argument_spec,
)
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule


def main() -> None:
    # no_log=False: "tokens" in a column name is not a secret.
    events = {name: dict(type="str", default=value, no_log=False) for name, value in DEFAULT_BRAIN_EVENTS.items()}
    argument_spec = dict(
        source=dict(type="str", choices=["logs", "brain", "both"], default="logs"),
        deployment=dict(type="str", choices=["container", "compose"]),
        container_name=dict(type="str"),
        compose_dir=dict(type="path"),
        compose_service=dict(type="str", default="engine"),
        start=dict(type="raw", aliases=["since"]),
        end=dict(type="raw"),
        window_seconds=dict(type="int", default=300),
        baseline_max_seconds=dict(type="int", default=0),
        slices=dict(type="int", default=3),
        baseline=dict(type="dict"),
        min_turns=dict(type="int", default=DEFAULT_THRESHOLDS["min_turns"]),
        cache_hit_ratio_max_drop=dict(type="float", default=DEFAULT_THRESHOLDS["cache_hit_ratio_max_drop"]),
        fail_on_new_warnings=dict(type="bool", default=False),
        fail_on_cache_drop=dict(type="bool", default=False),
        brain_events=dict(type="dict", options=events, apply_defaults=True),
    )
    shared = [thresholds_argument_spec(), *brain_module_specs(migrations=False, lock=False)]
    module = EngineModule(argument_spec, shared=shared, mutually_exclusive=[(*LOCATION_OPTIONS, "deployment")])
    module.run(lambda: EngineMetrics(module.params, check_sdk=module.check_sdk).run())


if __name__ == "__main__":
    main()
