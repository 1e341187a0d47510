#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: engine_container
short_description: Switch a per-user Engine's container to another image, roll it back, finalize
version_added: 0.1.0
description:
  - Switches a per-user Engine's container to another image (O(state=present)) by recreating it with the same
    configuration, keeps the old container, stopped, as C(<name><previous_suffix>) until O(state=finalized), and goes
    back to it with O(state=rolled_back). O(state=stopped) drains the container, O(state=started) starts (or
    unpauses) it.
  - 'O(state=present), when the container does not run O(image) yet: drains it (C(docker stop) with
    O(stop_timeout)), renames it C(<name><previous_suffix>), creates C(<name>) on O(image), starts it, and sets the
    restart policy of the kept container to C(no). A switch to O(image) that was cut off before its last steps is
    completed.'
  - The new container gets what the old one's creator set (HostConfig, networks with their aliases, Env, Labels,
    Cmd, Entrypoint, healthcheck ...), not what the old image contributed, so that the new image's defaults apply.
    It records the image it replaced, reference and id, in the labels C(io.september.engine.previous-image) and
    C(io.september.engine.previous-image-id).
  - 'O(state=rolled_back): drains the current container, keeps it as C(<name><failed_suffix>) (replacing an older
    one) with restart policy C(no), and brings C(<name><previous_suffix>) back under its name with its restart
    policy, started. Without a previous container, recreates the container on the image recorded before the switch
    (or O(image)) as for O(state=present); when the recorded reference was moved or removed, the recorded image id
    is used and tagged with the reference again.'
  - 'O(state=finalized): removes C(<name><previous_suffix>) (never a volume).'
  - When a step fails, the half-made container is removed and what was serving is put back and started again
    before the module fails. A missing O(image) fails before anything is stopped. It never pulls; make sure O(image)
    is present first with M(september.engine.engine_image).
author:
  - September Engine maintainers (@september-engine)
options:
  name:
    description:
      - Name of the Engine's container (a name, not an id). The previous and failed containers are named after it.
    type: str
    required: true
  image:
    description:
      - Full reference of the image to run, for example C(engine:2.3.1) or
        C(registry.example.com/september-engine:2.3.1).
      - Required with O(state=present). With O(state=rolled_back), used only when there is no previous container, as
        the image to go back to (default the one the container's labels recorded before the switch).
      - The container runs O(image) already when its image id is that of the local O(image) (or, when O(image) is not
        present locally, when it was created from that same reference).
    type: str
  state:
    description:
      - V(present) runs O(image), V(rolled_back) goes back to the previous container, V(finalized) removes the
        previous container, V(stopped) drains the container, V(started) starts it.
    type: str
    choices: [present, rolled_back, finalized, stopped, started]
    default: present
  stop_timeout:
    description:
      - The drain window in seconds, passed to C(docker stop) (SIGTERM, then SIGKILL after it). A warning says so
        when a container had to be killed.
    type: int
    default: 60
  previous_suffix:
    description: Suffix of the name under which the replaced container is kept until O(state=finalized).
    type: str
    default: --previous
  failed_suffix:
    description: Suffix of the name under which a rolled back container is kept as evidence (its logs).
    type: str
    default: --failed
  start:
    description:
      - Start the container that O(state=present) creates, or that O(state=rolled_back) brings back.
      - With V(true), O(state=present) and O(state=rolled_back) also start (or unpause) a container already on the
        right image.
    type: bool
    default: true
  remove_failed:
    description: With O(state=finalized), remove C(<name><failed_suffix>) too (by default it is kept as evidence).
    type: bool
    default: false
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._attributes.ACTIONGROUP_ENGINE
  - september.engine._docker
  - september.engine._lock
attributes:
  check_mode:
    support: full
    details:
      - Plans the same actions (RV(container.actions)) and reports the change, and changes nothing. A missing O(image)
        is a warning in check mode (the image would be pulled first by the rollout), a failure otherwise.
  diff_mode:
    support: full
    details:
      - Before and after image, version, previous container and status.
  idempotent:
    support: full
notes:
  - Runs on the Docker host. Never removes a volume.
  - An Env entry or label that the orchestrator set to exactly the old image's value cannot be told from the image's
    default, and is not copied (the new image's value applies).
  - 'Unfinished switches are refused: with a previous container kept, O(state=present) to another image fails until
    O(state=finalized) or O(state=rolled_back).'
  - Networks other than the one of the network mode are connected after the create, before the start.
  - See docs/modules.md in the collection for what is copied to the new container, and why.
seealso:
  - module: september.engine.engine_image
  - module: september.engine.engine_health
"""

EXAMPLES = r"""
- name: Switch the Engine's container to 2.3.1, keeping the old one
  september.engine.engine_container:
    name: "{{ engine_container_name }}"
    image: engine:2.3.1
    stop_timeout: 60
  register: engine_switch

- name: Remove the previous container once the new one is verified
  september.engine.engine_container:
    name: "{{ engine_container_name }}"
    state: finalized

- name: Roll back to the previous container (keeps the bad one as <name>--failed)
  september.engine.engine_container:
    name: "{{ engine_container_name }}"
    state: rolled_back
    image: engine:2.3.0
  register: engine_rollback

- name: Drain an Engine (SIGTERM, 30 s for the turns in flight)
  september.engine.engine_container:
    name: "{{ engine_container_name }}"
    state: stopped
    stop_timeout: 30
"""

RETURN = r"""
container:
  description:
    - The Engine's container after the run.
    - In check mode, the container as it is; RV(container.actions) says what would be done.
  returned: always
  type: dict
  contains:
    name:
      description: The container's name.
      type: str
      returned: always
      sample: sept-u001
    id:
      description: The container's id, null when there is none.
      type: str
      returned: always
      sample: 5d3430eac02c6f0a8d4c8a5e1b1f0f4c3d2e1a0b9c8d7e6f5a4b3c2d1e0f9a8b
    image:
      description: The image reference the container was created from.
      type: str
      returned: always
      sample: engine:2.3.1
    image_id:
      description: The id of the image the container runs.
      type: str
      returned: always
      sample: sha256:ab0a7ee0cc7a2c1b9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c
    version:
      description: The C(org.opencontainers.image.version) label of that image (else its tag), or null.
      type: str
      returned: always
      sample: 2.3.1
    previous_image:
      description: The image the container replaced, from its C(io.september.engine.previous-image) label, or null.
      type: str
      returned: always
      sample: engine:2.3.0
    previous_container:
      description: The name of the kept previous container, null when there is none.
      type: str
      returned: always
      sample: sept-u001--previous
    failed_container:
      description: The name of the container kept after a rollback (collect its logs), null when there is none.
      type: str
      returned: always
      sample: sept-u001--failed
    status:
      description: The container's status (C(running), C(exited), C(created), C(restarting)...), null without one.
      type: str
      returned: always
      sample: running
    actions:
      description: What was done (or, in check mode, would be done), in order; empty when nothing changed.
      type: list
      elements: str
      returned: always
      sample: ["drain-stop sept-u001 (timeout 60s)", "rename sept-u001 to sept-u001--previous",
               "create sept-u001 from engine:2.3.1", "start sept-u001",
               "set restart policy of sept-u001--previous to no"]
    timings:
      description: Durations in seconds, null when the step did not happen.
      type: dict
      returned: always
      contains:
        drain_seconds:
          description: How long C(docker stop) took (the drain).
          type: float
          returned: always
          sample: 2.41
        switch_seconds:
          description:
            - From the start of the drain to the new (or, rolling back, the previous) container started, the
              Engine's downtime.
          type: float
          returned: always
          sample: 3.02
      sample: {"drain_seconds": 2.41, "switch_seconds": 3.02}
"""

from ansible_collections.september.engine.plugins.module_utils._container import EngineContainer
from ansible_collections.september.engine.plugins.module_utils._docker import (
    docker_argument_spec,
    docker_client,
)
from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError
from ansible_collections.september.engine.plugins.module_utils._lock import lock_argument_spec
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule

STATES = ("present", "rolled_back", "finalized", "stopped", "started")


def main() -> None:
    argument_spec = dict(
        name=dict(type="str", required=True),
        image=dict(type="str"),
        state=dict(type="str", choices=list(STATES), default="present"),
        stop_timeout=dict(type="int", default=60),
        previous_suffix=dict(type="str", default="--previous"),
        failed_suffix=dict(type="str", default="--failed"),
        start=dict(type="bool", default=True),
        remove_failed=dict(type="bool", default=False),
    )
    argument_spec.update(docker_argument_spec())
    argument_spec.update(lock_argument_spec())
    module = EngineModule(argument_spec, docker=True, required_if=[("state", "present", ["image"])])

    def work() -> dict:
        params = module.params
        if params["stop_timeout"] < 0:
            raise OptionsError("stop_timeout must be 0 or more seconds.")
        suffixes = (params["previous_suffix"], params["failed_suffix"])
        if not all(suffixes) or suffixes[0] == suffixes[1]:
            raise OptionsError("previous_suffix and failed_suffix must be set and differ.")
        return EngineContainer(docker_client(params), params, module.check_mode, warn=module.warn).run()

    module.run(work, locked=True)


if __name__ == "__main__":
    main()
