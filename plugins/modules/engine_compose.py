#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: engine_compose
short_description: Switch the Engine service of a Docker Compose project to another image tag, and back
version_added: 0.1.0
description:
  - Switches the Engine service of a Docker Compose project to another image tag, where the project sets it, and
    recreates only that service (drain with C(stop --timeout), edit, C(up -d --no-deps --no-build));
    O(state=rolled_back) goes back to the image recorded before the last switch.
  - Rewrites only the one value that sets the tag, at its exact place and in its own quoting, in the compose file
    that holds the reference, or, for a variable (C(engine:${ENGINE_TAG}), C(engine:$ENGINE_TAG), C(${ENGINE_IMAGE})),
    its line in the env file; an unset C(${ENGINE_TAG:-2.3.0}) has its default rewritten in the file. Every other
    byte, the modes and the owners are kept. The env file's content is never shown.
  - Fails before anything is touched on what it cannot read with certainty, a build without C(image:), a digest
    pin, a tag that is only partly a variable, a block scalar, an image other services share through an anchor or
    alias.
  - Runs the project as the service's running container was created (compose files, project name and env file from
    its C(com.docker.compose.*) labels) unless O(compose_file), O(project_name) or O(env_file) say otherwise; the
    service's C(profiles) are passed.
  - Checks that the service mounts the same brain storage at O(data_dir) before anything stops and again after
    C(up). When C(up) fails or the storage differs, the previous setting is put back and the service started again
    before the module fails; a failed drain starts the old container again. The Engine is never left stopped.
  - Records the image in place before a switch, reference and id, in O(state_file); O(state=rolled_back) goes back
    to that image id even when its tag was moved or removed since, tagging it again.
  - Works with Compose v2 (C(docker compose)) and v1 (C(docker-compose) 1.29), see O(compose_command). Runs on the
    Docker host.
author:
  - September Engine maintainers (@september-engine)
options:
  state:
    description:
      - V(present) makes the service run O(version) (or O(image)) where the project sets it.
      - V(rolled_back) goes back to the previous image recorded in O(state_file) (its recorded id), or to
        O(version)/O(image) when given. The record is the image in place before the B(last) switch attempt,
        whichever run made it (a switch that failed and was undone records the image it went back to).
      - V(stopped) drains the service (C(stop --timeout O(stop_timeout))); V(started) starts it again (C(start), an
        unpause, or C(up -d --no-deps) when it has no container).
      - V(present) and V(rolled_back) start a stopped service that is on the right image already.
      - V(finalized) marks the last switch as verified in O(state_file) and changes nothing else.
    type: str
    choices: [present, rolled_back, stopped, started, finalized]
    default: present
  version:
    description:
      - The target tag, in the repository the project already uses.
      - Required with O(state=present) unless O(image) is given.
    type: str
  image:
    description:
      - The target as a full C(repository:tag) reference. Its repository must be the project's unless
        O(allow_repository_change=true).
    type: str
  allow_repository_change:
    description: Let O(image) name another repository than the project's (the whole reference is then rewritten).
    type: bool
    default: false
  stop_timeout:
    description: Seconds the Engine gets to drain in-flight turns before it is killed (C(stop --timeout)).
    type: int
    default: 60
  pull:
    description:
      - V(never) requires the target image on the Docker host before anything stops (pull it first, for example with
        C(september.engine.engine_image)), and tells Compose v2 C(up --pull never).
      - V(missing) lets C(up) pull it when missing (Compose v1 always does).
    type: str
    choices: [never, missing]
    default: never
  state_file:
    description:
      - JSON record of the current and previous image of the service (references and ids), where the tag lives, how
        the project was run, when it was switched, and a history (written 0600). Default C(.september-engine.json)
        in O(project_src).
    type: path
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._attributes.ACTIONGROUP_ENGINE
  - september.engine._engine.COMPOSE
  - september.engine._engine.COMPOSE_PROJECT
  - september.engine._docker
  - september.engine._lock
attributes:
  check_mode:
    support: full
    details:
      - Predicts the edit, the drain and the restart, and refuses a switch to another brain, running only read-only
        Compose commands (C(version), C(config)).
  diff_mode:
    support: full
    details:
      - The before and after of the one line that sets the tag (for an env file only that variable's line).
  idempotent:
    support: full
requirements:
  - PyYAML (to read the compose files), on the Docker host
notes:
  - O(docker_host) is passed to Compose as E(DOCKER_HOST) (with O(docker_tls_verify), E(DOCKER_TLS_VERIFY=1) and
    E(DOCKER_CERT_PATH) the directory of O(docker_ca_path)), so that Compose and the Docker SDK see the same daemon.
  - Other services using the same variable change too the next time they are created; a warning says so.
  - See docs/modules.md in the collection for how the tag is found and edited, and what the state file is for.
seealso:
  - module: september.engine.engine_lock
  - module: september.engine.engine_health
"""

EXAMPLES = r"""
- name: Switch the Engine of a single-node project to 2.3.1
  september.engine.engine_compose:
    project_src: /srv/engine
    version: 2.3.1
    stop_timeout: 60
  register: engine_switch

- name: Roll the Engine back to the version recorded before the switch
  september.engine.engine_compose:
    project_src: /srv/engine
    state: rolled_back
  register: engine_back
  failed_when: engine_back.compose.version != engine_switch.compose.previous_version

- name: Switch with Compose v1 and a project whose tag lives in a custom env file
  september.engine.engine_compose:
    project_src: /srv/engine
    env_file: /srv/engine/engine.env
    compose_command: docker-compose
    image: registry.example.com:5000/september-engine:2.4.0
  register: engine_switch_v1

- name: Switch a project made of a base file and an override that mounts the brain, keeping the lock alive
  september.engine.engine_compose:
    project_src: /srv/engine
    compose_file: [docker-compose.yml, docker-compose.brain.yml]
    project_name: engine
    version: 2.4.0
    lock:
      key: "{{ engine_found.engine.identity.key }}"
      engine: "{{ inventory_hostname }}"
      run_id: "{{ engine_run_id }}"
      owner: "awx job {{ tower_job_id | default('manual') }}"
      ttl: 1800
  register: engine_switch_override

- name: Drain the Engine for maintenance
  september.engine.engine_compose:
    project_src: /srv/engine
    state: stopped
    stop_timeout: 30
"""

RETURN = r"""
compose:
  description: The service's image setting and container after the run (predicted in check mode).
  returned: always
  type: dict
  contains:
    project_src:
      description: The project directory.
      type: str
      returned: always
      sample: /srv/engine
    service:
      description: The service.
      type: str
      returned: always
      sample: engine
    compose_command:
      description: The Compose command line prefix that was used.
      type: list
      elements: str
      returned: always
      sample: [/usr/bin/docker, compose]
    compose_version:
      description: Compose generation, V(v1) or V(v2).
      type: str
      returned: always
      sample: v2
    compose_release:
      description: Compose's version string.
      type: str
      returned: always
      sample: 2.24.6
    compose_files:
      description: The compose files, in order.
      type: list
      elements: str
      returned: always
      sample: [/srv/engine/docker-compose.yml, /srv/engine/docker-compose.override.yml]
    project:
      description: The Compose project name.
      type: str
      returned: always
      sample: engine
    env_file:
      description: The env file Compose reads (null when there is none).
      type: str
      returned: always
      sample: /srv/engine/.env
    profiles:
      description: The service's profiles, passed to every Compose command.
      type: list
      elements: str
      returned: always
      sample: []
    config_sources:
      description:
        - Where the files, project name and env file came from, each V(option), V(container) (the running
          container's labels), V(env_file) or V(default).
      type: dict
      returned: always
      sample: {"files": "container", "project": "container", "env_file": "default"}
    brain:
      description: The identity of what the container mounts at O(data_dir) (C(key), C(slug), ...), null without.
      type: dict
      returned: always
      sample: {"key": "volume:engine_engine_data", "slug": "engine_engine_data", "volume": "engine_engine_data",
               "brain_source": "/var/lib/docker/volumes/engine_engine_data/_data", "container": "engine-engine-1"}
    tag_location:
      description: Where the project sets the tag.
      type: dict
      returned: always
      sample: {"location": "env", "path": "/srv/engine/.env", "compose_file": "/srv/engine/docker-compose.yml",
               "line": 5, "raw": "engine:${ENGINE_TAG}", "variable": "ENGINE_TAG", "whole_ref": false}
    image:
      description: The image reference the project sets (and the service runs) after the run.
      type: str
      returned: always
      sample: engine:2.3.1
    version:
      description: The tag of RV(compose.image).
      type: str
      returned: always
      sample: 2.3.1
    previous_image:
      description: The image before this run's switch; when nothing changed, the one recorded to roll back to.
      type: str
      returned: always
      sample: engine:2.3.0
    previous_image_id:
      description: The id of RV(compose.previous_image) when it was recorded (what O(state=rolled_back) goes back to).
      type: str
      returned: always
      sample: sha256:05f8a0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9
    previous_version:
      description: The tag of RV(compose.previous_image).
      type: str
      returned: always
      sample: 2.3.0
    container:
      description: The service's container (C(id), C(name), C(status), C(image), C(image_id)), null when it has none.
      type: dict
      returned: always
      sample: {"id": "4f1c0e...", "name": "engine-engine-1", "status": "running", "image": "engine:2.3.1"}
    actions:
      description:
        - What was done (or would be, in check mode), in order, from V(drain), V(retag), V(edit), V(up), V(start),
          V(unpause).
      type: list
      elements: str
      returned: always
      sample: [drain, edit, up]
    timings:
      description: Seconds spent draining and switching (edit and C(up)).
      type: dict
      returned: always
      sample: {"drain_seconds": 3.2, "switch_seconds": 1.9}
    state_file:
      description: The record of the switches.
      type: str
      returned: always
      sample: /srv/engine/.september-engine.json
"""

from ansible_collections.september.engine.plugins.module_utils._compose import ComposeSwitch, compose_argument_spec
from ansible_collections.september.engine.plugins.module_utils._docker import (
    docker_argument_spec,
    docker_client,
)
from ansible_collections.september.engine.plugins.module_utils._lock import lock_argument_spec
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule


def main() -> None:
    argument_spec = compose_argument_spec()
    argument_spec.update(
        state=dict(type="str", default="present",
                   choices=["present", "rolled_back", "stopped", "started", "finalized"]),
        version=dict(type="str"),
        image=dict(type="str"),
        allow_repository_change=dict(type="bool", default=False),
        stop_timeout=dict(type="int", default=60),
        pull=dict(type="str", default="never", choices=["never", "missing"]),
        state_file=dict(type="path"),
    )
    argument_spec.update(docker_argument_spec())
    argument_spec.update(lock_argument_spec())
    module = EngineModule(argument_spec, docker=True, mutually_exclusive=[("version", "image")],
                          required_if=[("state", "present", ("version", "image"), True)])
    module.run(lambda: ComposeSwitch(module, docker_client(module.params)).run(), locked=True)


if __name__ == "__main__":
    main()
