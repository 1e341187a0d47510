#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: engine_twin
short_description: Make, verify and remove staging twins of Engines for the rollback drill
version_added: 0.4.0
description:
  - Manages I(staging twins) of production Engines on their Docker host. A twin is a new container of the Engine's
    image and configuration, with its own name, volume, port and drill labels, whose brain is an online snapshot of
    the Engine's brain (the I(pre-drill reference)).
  - O(state=present) snapshots the Engine's brain into the twin's drill folder, creates the volume
    C(engine-drill-<container>) holding that snapshot, creates and starts the container C(<container>--drill) on a
    free port of O(bind_address), waits until it is healthy and returns RV(twin). A twin of the same O(run_id) that
    is there already is returned as it is. When the twin cannot be made or does not become healthy within
    O(wait_timeout), what was made of it is removed (unless O(keep_on_failure)) and the module fails.
  - The production Engine is only read (one inspect and the online snapshot). It is never stopped, restarted,
    renamed or written to, and its lock is not taken.
  - O(state=verified) reports, and never fails on, whether the twin is healthy, runs O(version) and still holds
    every row of its reference (RV(verification)); with O(drill), it also judges the drill of the twin (RV(drill)).
  - O(state=absent) removes one twin (O(twin_name)) with the C(--previous) and C(--failed) containers made of it,
    its volume and its drill folder. O(state=swept) removes every twin left on the Docker host, or those of
    O(run_id), except those of O(keep_run). Only containers and volumes with the drill's labels, and folders with
    its marker file, are removed.
author:
  - September Engine maintainers (@september-engine)
options:
  state:
    description:
      - V(present) makes a twin, V(verified) checks one, V(absent) removes one, V(swept) removes every twin drills
        left on the Docker host.
    type: str
    choices: [present, absent, swept, verified]
    default: present
  deployment:
    description:
      - The Engine's hosting model (required with O(state=present)).
    type: str
    choices: [container, compose]
    required: false
  inventory_name:
    description: The Engine's inventory name, for messages and the reference snapshot's manifest.
    type: str
  run_id:
    description:
      - The drill's run id, on the twin's labels and naming its drill folder. Letters, digits, V(.), V(_), V(-).
      - Required with O(state=present). With O(state=swept), only the twins of this run are removed; with
        O(state=absent), the folder of the twin in this run is removed even when its containers are gone.
    type: str
  keep_run:
    description: With O(state=swept), the twins of this run are kept (the running drill's own).
    type: str
  twin_name:
    description:
      - The twin's container name. Default (O(state=present)) the Engine's container name and O(twin_suffix).
      - Required with O(state=absent) and O(state=verified).
    type: str
  twin_suffix:
    description: Suffix of the twin's default name.
    type: str
    default: --drill
  state_dir:
    description:
      - The drill's folder on the Docker host. Each twin gets C(<state_dir>/<run_id>/<twin>/) (mode C(0700)) with its
        reference snapshot, its record C(twin.json) and the state the drill's upgrade keeps of it (C(state/)).
    type: path
    default: /var/lib/september-engine/drill
  bind_address:
    description: The address the twin publishes the Engine's port C(8000/tcp) on.
    type: str
    default: 127.0.0.1
  port:
    description: A fixed host port for the twin. Default a free one, found on the Docker host.
    type: int
  wait_timeout:
    description: Seconds to wait for the twin to become healthy (O(state=present), O(state=verified)).
    type: int
    default: 120
  healthy_streak:
    description: Healthy probes in a row that count as healthy.
    type: int
    default: 2
  interval:
    description: Seconds between two health probes.
    type: float
    default: 1
  snapshot_verify:
    description: How the reference snapshot is verified (C(quick_check), C(integrity_check), or not).
    type: str
    choices: [quick, full, none]
    default: quick
  keep_on_failure:
    description: Keep what was made of a twin that failed (for a look); remove it with O(state=absent) afterwards.
    type: bool
    default: false
  version:
    description: With O(state=verified), the version the twin must run. Default the one it was made on.
    type: str
  reference:
    description: With O(state=verified), the reference snapshot's path. Default the one the twin's record names.
    type: path
  drill:
    description:
      - With O(state=verified), what the drill's upgrade of the twin recorded. The module then also returns
        RV(drill), with each step's seconds, the RTO against O(drill.target_rto_seconds), and the figures the upgrade
        did not record.
    type: dict
    suboptions:
      upgrade_result:
        description: The twin's C(engine_upgrade_result) (the upgrade role's record of it).
        type: dict
        required: true
      broken_version:
        description: The broken release of the drill.
        type: str
        required: true
      target_rto_seconds:
        description: The RTO target, in seconds.
        type: float
        default: 60
      image_present:
        description: The broken release's image was on the Docker host before the drill (no pull), if known.
        type: bool
      health_timeout:
        description:
          - The upgrade's health wait (C(engine_upgrade_health_timeout)), to estimate the detection time of a release
            that never became healthy.
        type: int
        default: 120
      rollback_timings:
        description:
          - The C(rollback.timings) of the M(september.engine.engine_rollback) result, used when
            O(drill.upgrade_result) holds none.
        type: dict
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._engine
  - september.engine._engine.COMPOSE_PROJECT
  - september.engine._docker
attributes:
  check_mode:
    support: full
    details:
      - O(state=present) reads the Engine and reports the twin it would make and RV(actions); O(state=absent) and
        O(state=swept) report what they would remove. Nothing is changed.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - A twin of the same O(run_id) that is there already is returned unchanged; removing what is gone changes
        nothing; O(state=verified) only reads.
notes:
  - Runs on the Docker host (the brain and the twin's volume are read and written through its file system).
  - O(url), O(previous_suffix) and O(failed_suffix) are those of the Engine's own containers; the twin is found and
    probed by its own name and port.
  - One drill at a time per Docker host, since O(state=swept) removes the twins of every other run.
  - What a twin takes from the Engine and what it does not, and how the drill is judged, are in docs/modules.md and
    docs/drill.md of the collection.
seealso:
  - module: september.engine.brain_snapshot
  - module: september.engine.engine_container
  - module: september.engine.engine_rollback
"""

EXAMPLES = r"""
- name: Make a staging twin of the Engine
  september.engine.engine_twin:
    deployment: "{{ engine_deployment | default('container') }}"
    container_name: "{{ engine_container_name | default(omit) }}"
    compose_dir: "{{ engine_compose_dir | default(omit) }}"
    inventory_name: "{{ inventory_hostname }}"
    run_id: drill-20260504T020000Z
  register: drill_twin

- name: Check the twin is healthy on 2.3.0 with every pre-drill row
  september.engine.engine_twin:
    state: verified
    twin_name: "{{ drill_twin.twin.name }}"
    version: "2.3.0"
  register: drill_check
  failed_when: not drill_check.verification.is_verified

- name: Remove the twin
  september.engine.engine_twin:
    state: absent
    twin_name: "{{ drill_twin.twin.name }}"
    run_id: drill-20260504T020000Z
  register: drill_removed

- name: Remove every twin a killed drill left on this Docker host
  september.engine.engine_twin:
    state: swept
    keep_run: "{{ drill_run_id }}"
  register: drill_swept
  failed_when: false
"""

RETURN = r"""
twin:
  description: The twin; in check mode the one that would be made (no id, url or port yet).
  returned: state=present
  type: dict
  contains:
    name:
      description: The twin's container name.
      type: str
      returned: always
      sample: engine-u042--drill
    container_id:
      description: Its container id.
      type: str
      returned: always
      sample: 0d6793964889a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6
    image:
      description: The image reference it runs (the Engine's).
      type: str
      returned: always
      sample: engine:2.3.0
    image_id:
      description: The image id it runs (the Engine's).
      type: str
      returned: always
      sample: sha256:05f8a0332a59
    repository:
      description: The repository of that image.
      type: str
      returned: always
      sample: engine
    version:
      description: The Engine's version, the twin's at creation.
      type: str
      returned: always
      sample: 2.3.0
    url:
      description: Where the twin answers.
      type: str
      returned: always
      sample: http://127.0.0.1:41733
    port:
      description: Its host port.
      type: int
      returned: always
      sample: 41733
    bind_address:
      description: The address of that port.
      type: str
      returned: always
      sample: 127.0.0.1
    volume:
      description: Its volume (its brain at C(/data)).
      type: str
      returned: always
      sample: engine-drill-engine-u042
    folder:
      description: Its drill folder on the Docker host.
      type: str
      returned: always
      sample: /var/lib/september-engine/drill/drill-20260504T020000Z/engine-u042--drill
    state_dir:
      description: The folder the drill's upgrade and rollback keep their state of the twin in (locks, snapshots).
      type: str
      returned: always
      sample: /var/lib/september-engine/drill/drill-20260504T020000Z/engine-u042--drill/state
    run_id:
      description: The drill's run id.
      type: str
      returned: always
      sample: drill-20260504T020000Z
    labels:
      description: The drill's labels on the twin and its volume.
      type: dict
      returned: always
      sample: {"io.september.engine.drill": "drill-20260504T020000Z",
               "io.september.engine.drill-twin": "engine-u042--drill", "io.september.engine.drill-of": "engine-u042"}
    of:
      description: The production Engine (container, id, hosting model, identity, Compose project, url).
      type: dict
      returned: always
      sample: {"inventory_name": "u042", "container": "engine-u042", "deployment": "container"}
    reference:
      description: The pre-drill reference (name, path, sha256, size, when, rows); null in check mode.
      type: dict
      returned: always
      sample: {"name": "pre-drill-drill-20260504T020000Z", "sha256": "9f2c...", "rows": 1532}
    notes:
      description: What the twin does not take from the Engine's configuration, and why.
      type: list
      elements: str
      returned: always
      sample: ["made as a per-user container from the Compose container's configuration"]
    health:
      description: The health wait (healthy, seconds, version seen).
      type: dict
      returned: success
      sample: {"is_healthy": true, "elapsed": 2.1, "version": "2.3.0"}
    timings:
      description: Seconds of each step (snapshot, volume, create, healthy, total).
      type: dict
      returned: success
      sample: {"snapshot_seconds": 0.41, "create_seconds": 0.62, "healthy_seconds": 2.1, "total_seconds": 3.3}
    made_at:
      description: When the twin was made (UTC).
      type: str
      returned: always
      sample: "2026-05-04T02:00:07Z"
removed:
  description: What was removed (would be removed, in check mode).
  returned: state=absent or state=swept
  type: dict
  sample: {"containers": ["engine-u042--drill"], "volumes": ["engine-drill-engine-u042"], "folders": []}
verification:
  description: What O(state=verified) found.
  returned: state=verified
  type: dict
  contains:
    is_verified:
      description: Healthy, on the version, every row of the reference present.
      type: bool
      returned: always
      sample: true
    is_healthy:
      description: The twin is healthy (O(healthy_streak) probes in a row within O(wait_timeout)).
      type: bool
      returned: always
      sample: true
    health_failure:
      description: Why it is not healthy (as M(september.engine.engine_health) says), V(none) when it is.
      type: str
      returned: always
      sample: none
    health_detail:
      description: One sentence on what the health probe saw.
      type: str
      returned: always
      sample: ""
    version:
      description: The version the twin runs.
      type: str
      returned: always
      sample: 2.3.0
    expected_version:
      description: The version asked for.
      type: str
      returned: always
      sample: 2.3.0
    on_version:
      description: It runs that version.
      type: bool
      returned: always
      sample: true
    rows_kept:
      description: Every row of the reference is in the twin's brain.
      type: bool
      returned: always
      sample: true
    missing:
      description: Per table that misses rows, how many, how rows were matched, and up to 10 of the missing keys.
      type: dict
      returned: always
      sample: {"feedback": {"count": 2, "by": "primary key (id)", "sample": ["fb-1", "fb-2"]}}
    missing_rows:
      description: Rows missing in all.
      type: int
      returned: always
      sample: 0
    problem:
      description: Why the brains could not be compared, null when they were.
      type: str
      returned: always
      sample: null
    reference:
      description: The reference (path, sha256, rows in all and per table at the twin's creation).
      type: dict
      returned: always
      sample: {"path": "/var/lib/september-engine/drill/d1/engine-u042--drill/reference/pre-drill-d1.sqlite",
               "rows": 1532}
    brain_rows:
      description: Rows per table of the twin's brain now.
      type: dict
      returned: always
      sample: {"tasks": 250, "conversations": 250, "feedback": 97}
    run_id:
      description: The drill run the twin belongs to.
      type: str
      returned: always
      sample: drill-20260504T020000Z
    twin:
      description: The twin's name.
      type: str
      returned: always
      sample: engine-u042--drill
drill:
  description: The judgement of the twin's drill.
  returned: state=verified and drill is given
  type: dict
  contains:
    caught:
      description: The upgrade caught the broken release (it ended rolled back, or with a failed rollback).
      type: bool
      returned: always
      sample: true
    rolled_back:
      description: The rescue rolled the twin back.
      type: bool
      returned: always
      sample: true
    passed:
      description: Caught, rolled back, healthy on its old release with every pre-drill row, within the RTO target.
      type: bool
      returned: always
      sample: true
    problems:
      description: Why the drill of this twin did not pass, one sentence each.
      type: list
      elements: str
      returned: always
      sample: []
    steps:
      description:
        - Per step (V(snapshot), V(pull), V(drain), V(switch), V(detection), V(image_rollback), V(brain_restore),
          V(time_to_healthy)), its C(seconds), C(source), whether they are C(estimated) and C(recorded).
      type: dict
      returned: always
      sample: {"drain": {"seconds": 1.2, "source": "timings.drain_seconds", "estimated": false, "recorded": true}}
    dominant_step:
      description: The step that took longest.
      type: str
      returned: always
      sample: detection
    rto_seconds:
      description: The RTO, from the rollback's start to the twin healthy on its old release; null when not rolled back.
      type: float
      returned: always
      sample: 14.2
    rto_source:
      description: Where the RTO comes from.
      type: str
      returned: always
      sample: "rollback.timings.total_seconds"
    rto_breakdown:
      description: The RTO's parts (image rollback, brain restore, time to healthy, the rollback's checks).
      type: dict
      returned: always
      sample: {"image_rollback": 3.1, "brain_restore": 0.4, "time_to_healthy": 8.2, "rollback_checks": 2.5}
    rto_dominant_step:
      description: The largest part of the RTO.
      type: str
      returned: always
      sample: time_to_healthy
    target_rto_seconds:
      description: The target.
      type: float
      returned: always
      sample: 60
    rto_pass:
      description: The RTO is within the target; null without an RTO.
      type: bool
      returned: always
      sample: true
    upgrade:
      description: How the upgrade of the twin ended (status, decision, evidence, step, reason, rule, rollback kind).
      type: dict
      returned: always
      sample: {"status": "rolled_back", "evidence": "health", "rollback_kind": "image+brain"}
    verified:
      description: The verification's summary (healthy, version, rows kept, missing rows).
      type: dict
      returned: always
      sample: {"is_verified": true, "rows_kept": true, "missing_rows": 0}
    from_version:
      description: The release the twin ran before (and must run again).
      type: str
      returned: always
      sample: 2.3.0
    broken_version:
      description: The drill's broken release.
      type: str
      returned: always
      sample: 2.4.1
    missing_fields:
      description: The figures the drill needed that the upgrade's result does not hold, with the field to add.
      type: list
      elements: dict
      returned: always
      sample: [{"step": "detection", "field": "engine_upgrade_result.timings.detection_seconds", "why": "..."}]
actions:
  description: What was done (or would be done in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: ["create volume engine-drill-engine-u042", "create container engine-u042--drill from engine:2.3.0"]
"""

from ansible_collections.september.engine.plugins.module_utils._docker import (
    docker_argument_spec,
    docker_client,
)
from ansible_collections.september.engine.plugins.module_utils._engine import engine_argument_spec
from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule
from ansible_collections.september.engine.plugins.module_utils._twin import EngineTwin

STATES = ("present", "absent", "swept", "verified")


def main() -> None:
    argument_spec = dict(
        engine_argument_spec(),
        state=dict(type="str", choices=list(STATES), default="present"),
        inventory_name=dict(type="str"),
        run_id=dict(type="str"),
        keep_run=dict(type="str"),
        twin_name=dict(type="str"),
        twin_suffix=dict(type="str", default="--drill"),
        state_dir=dict(type="path", default="/var/lib/september-engine/drill"),
        bind_address=dict(type="str", default="127.0.0.1"),
        port=dict(type="int"),
        wait_timeout=dict(type="int", default=120),
        healthy_streak=dict(type="int", default=2),
        interval=dict(type="float", default=1.0),
        snapshot_verify=dict(type="str", choices=["quick", "full", "none"], default="quick"),
        keep_on_failure=dict(type="bool", default=False),
        version=dict(type="str"),
        reference=dict(type="path"),
        drill=dict(
            type="dict",
            options=dict(
                upgrade_result=dict(type="dict", required=True),
                broken_version=dict(type="str", required=True),
                target_rto_seconds=dict(type="float", default=60.0),
                image_present=dict(type="bool"),
                health_timeout=dict(type="int", default=120),
                rollback_timings=dict(type="dict"),
            ),
        ),
        **docker_argument_spec(),
    )
    argument_spec["deployment"] = dict(type="str", choices=["container", "compose"])
    module = EngineModule(
        argument_spec,
        docker=True,
        required_if=[
            ("state", "present", ("deployment", "run_id")),
            ("state", "absent", ("twin_name",)),
            ("state", "verified", ("twin_name",)),
        ],
    )

    def work() -> dict:
        check_options(module.params)
        return EngineTwin(docker_client(module.params), module.params, module.check_mode, warn=module.warn).run()

    module.run(work)


def check_options(params: dict) -> None:
    """Option combinations the argument spec cannot say, each one clear error before anything changes."""
    if params["state"] == "present":
        need = "container_name" if params["deployment"] == "container" else "compose_dir"
        if not params[need]:
            raise OptionsError(f"deployment={params['deployment']} needs {need}.")
    if params["port"] is not None and not 0 < params["port"] < 65536:
        raise OptionsError(f"port={params['port']} is not a TCP port (1-65535).")
    if params["wait_timeout"] < 0 or params["healthy_streak"] < 1 or params["interval"] <= 0:
        raise OptionsError("wait_timeout must be 0 or more, healthy_streak 1 or more, interval more than 0.")


if __name__ == "__main__":
    main()
