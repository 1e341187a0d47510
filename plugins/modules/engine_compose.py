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
  - Changes the image tag of a Compose service B(where the project sets it) and recreates only that service, the way
    the Engine's upgrade and rollback runbooks do by hand, with the drain first.
  - When the compose file holds the reference (C(image) set to C(engine:2.3.0), quoted, commented, through an anchor
    or a C(<<) merge key), only the tag characters of that one line are rewritten. When it references a variable
    (C(engine:${ENGINE_TAG}), C(engine:${ENGINE_TAG:-2.3.0}), C(engine:$ENGINE_TAG), or C(${ENGINE_IMAGE}) for the
    whole reference), only that variable's line of the env file is rewritten, or appended. Other lines, comments,
    modes and owners are kept. The env file's content is never shown (it usually holds C(ENGINE_API_KEY)).
  - Anything it cannot read with certainty (a build without C(image:), a digest pin, a tag that is only partly a
    variable, flow style) fails with what it found, before anything is touched.
  - A switch is drain (C(stop --timeout)), edit, C(up -d --no-deps --no-build) of the service. If C(up) fails,
    the previous setting is put back and the service started again before the module fails.
  - The image in place before a switch is recorded in O(state_file), so that O(state=rolled_back) knows where to
    go back to, also after a failed or interrupted run.
  - Compose v2 (C(docker compose)) and v1 (C(docker-compose) 1.29) both work; O(compose_command=auto) detects
    which one this host has. Runs on the Docker host.
author:
  - September Engine maintainers (@september-engine)
options:
  project_src:
    description: The Compose project directory (holds the compose file and C(.env)).
    type: path
    required: true
  service:
    description: The Engine's service in the project.
    type: str
    default: engine
  compose_file:
    description:
      - The project's compose files, relative to O(project_src) or absolute; later files override earlier ones, as
        with C(-f). The image setting is changed in the last file that sets it for O(service).
      - Default, as Compose itself does, the first of C(compose.yaml), C(compose.yml), C(docker-compose.yml),
        C(docker-compose.yaml) in O(project_src), plus its override file (C(docker-compose.override.yml)...) when
        there is one.
    type: list
    elements: path
  env_file:
    description:
      - The env file that Compose interpolates the compose file with. Default C(.env) in O(project_src)
        (then it is not passed to Compose, which reads it itself).
      - A tag variable is always taken from this file, also when the environment of the module sets it (Compose
        would otherwise let the environment win and the edit would have no effect).
    type: path
  project_name:
    description:
      - Compose project name (C(-p)).
      - Default what Compose chooses (C(COMPOSE_PROJECT_NAME), else the directory name).
    type: str
  compose_command:
    description:
      - Which Compose to run. V(auto) uses C(docker compose) (v2) when C(docker compose version) works, else
        C(docker-compose) (v1 or a standalone v2).
    type: str
    choices: [auto, docker compose, docker-compose]
    default: auto
  state:
    description:
      - V(present) makes the service run O(version) (or O(image)) where the project sets it.
      - V(rolled_back) goes back to the previous image recorded in O(state_file), or to O(version)/O(image) when given.
        The record is the image in place before the B(last) switch attempt, whichever run made it (a switch that
        failed and was undone records the image it went back to). A playbook that can fail before its own switch
        should pass the version it found before, so that a rollback never goes further back than that.
      - V(stopped) drains the service (C(stop --timeout O(stop_timeout))); V(started) starts it again (C(start), or
        C(up -d --no-deps) when it has no container).
    type: str
    choices: [present, rolled_back, stopped, started]
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
      - JSON record of the current and previous image of the service, where the tag lives, when it was switched,
        and a history (written 0600). Default C(.september-engine.json) in O(project_src).
    type: path
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._docker
attributes:
  check_mode:
    support: full
    details:
      - Predicts the edit, the drain and the restart and runs only read-only Compose commands (C(version), C(ps)).
  diff_mode:
    support: full
    details:
      - The before and after of the one line that sets the tag (for an env file only that variable's line).
  idempotent:
    support: full
notes:
  - O(docker_host) is passed to Compose as E(DOCKER_HOST) (with O(docker_tls_verify), E(DOCKER_TLS_VERIFY=1) and
    E(DOCKER_CERT_PATH) the directory of O(docker_ca_path)), so that Compose and the Docker SDK see the same daemon.
  - Other services using the same variable or anchor change too the next time they are created; a warning says so.
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
    image: registry.example.com/september-engine:2.4.0
  register: engine_switch_v1

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
      sample: [/srv/engine/docker-compose.yml]
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
      description: What was done (or would be, in check mode), in order, from V(drain), V(edit), V(up), V(start).
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.september.engine.plugins.module_utils._compose import ComposeSwitch, compose_argument_spec
from ansible_collections.september.engine.plugins.module_utils._docker import (
    check_docker_sdk,
    docker_argument_spec,
    docker_client,
)
from ansible_collections.september.engine.plugins.module_utils._errors import EngineModuleError


def main() -> None:
    argument_spec = compose_argument_spec()
    argument_spec.update(
        state=dict(type="str", default="present", choices=["present", "rolled_back", "stopped", "started"]),
        version=dict(type="str"),
        image=dict(type="str"),
        allow_repository_change=dict(type="bool", default=False),
        stop_timeout=dict(type="int", default=60),
        pull=dict(type="str", default="never", choices=["never", "missing"]),
        state_file=dict(type="path"),
    )
    argument_spec.update(docker_argument_spec())
    module = AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[("version", "image")],
        required_if=[("state", "present", ("version", "image"), True)],
        supports_check_mode=True,
    )
    check_docker_sdk(module)
    try:
        result = ComposeSwitch(module, docker_client(module.params)).run()
    except EngineModuleError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
