#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: engine_info
short_description: What Docker knows of one Engine, in either hosting model
version_added: 0.1.0
description:
  - Resolves an Engine as the inventory names it, a per-user container (O(deployment=container)) or the service of a
    Docker Compose project (O(deployment=compose)), to its container, image, version, URL, brain volume, identity
    and what a rollback would go back to. It changes nothing.
  - The version is the image's C(org.opencontainers.image.version) label, else its tag.
  - A Compose service's container is found by the labels Compose v1 and v2 both set (working directory and service);
    O(project_name) says which project when several run the service from one folder. How the project is run is
    returned in RV(engine.compose).
author:
  - September Engine maintainers (@september-engine)
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._attributes.ACTIONGROUP_ENGINE
  - september.engine._attributes.READ_ONLY
  - september.engine._engine
  - september.engine._engine.COMPOSE_PROJECT
  - september.engine._docker
notes:
  - See docs/modules.md in the collection for how the identity and the Compose project are found.
seealso:
  - module: september.engine.engine_health
  - module: september.engine.engine_container
  - module: september.engine.engine_compose
"""

EXAMPLES = r"""
- name: Find the per-user Engine u042
  september.engine.engine_info:
    deployment: container
    container_name: engine-u042
  register: info

- name: Find the Engine of a Compose project
  september.engine.engine_info:
    deployment: compose
    compose_dir: /srv/engine
  register: info

- name: Find the Engine of a Compose project made of two files, with its own project name
  september.engine.engine_info:
    deployment: compose
    compose_dir: /srv/engine
    compose_file: [docker-compose.yml, docker-compose.brain.yml]
    project_name: engine
  register: info_override

- name: Say what runs
  ansible.builtin.debug:
    msg: "{{ info.engine.container }} runs {{ info.engine.image }} ({{ info.engine.version }}) at {{ info.engine.url }}"
"""

RETURN = r"""
engine:
  description: The Engine as Docker knows it.
  returned: success
  type: dict
  contains:
    deployment:
      description: The hosting model.
      type: str
      sample: container
    exists:
      description: Whether the Engine's container exists (a Compose service that was never started has none).
      type: bool
      sample: true
    container:
      description: Name of the Engine's container.
      type: str
      sample: engine-u042
    container_id:
      description: Id of the container.
      type: str
      sample: 3f1c9a...
    status:
      description: Docker's state of the container (running, restarting, exited ...).
      type: str
      sample: running
    running:
      description: Whether the container is running.
      type: bool
      sample: true
    restart_count:
      description: How often Docker restarted the container.
      type: int
      sample: 0
    image:
      description: The image reference the container was created from.
      type: str
      sample: engine:2.3.0
    image_id:
      description: Id of that image.
      type: str
      sample: sha256:05f8a0...
    repository:
      description: The image reference without its tag (where the target version is looked for by default).
      type: str
      sample: engine
    version:
      description: The running release, from the image's version label, else its tag.
      type: str
      sample: 2.3.0
    url:
      description: Base URL of the Engine's HTTP API.
      type: str
      sample: http://127.0.0.1:9001
    volume:
      description: Name of the Docker volume mounted at O(data_dir), if a volume.
      type: str
      sample: engine-data-u042
    identity:
      description:
        - Who the Engine is, whatever the inventory calls it, that is the storage of its brain. C(key) is
          C(volume:<name>) for a named volume at O(data_dir), C(bind:<host path>) for a bind mount,
          C(container:<name>) when nothing is mounted there; C(slug) is a file-name-safe form of it.
        - Locks, snapshots and restores are keyed by it.
      type: dict
      sample: {"key": "volume:engine-data-u042", "slug": "engine-data-u042", "volume": "engine-data-u042",
               "brain_source": "/var/lib/docker/volumes/engine-data-u042/_data", "container": "engine-u042"}
    previous:
      description:
        - What a rollback goes back to, when a switch recorded it (the kept previous container, its labels, or the
          Compose state file), else null.
        - C(image) and C(image_id) are the exact reference and image id in place before the switch; a rollback goes
          back to them (never to a reference made from C(version), which is the image's version label).
      type: dict
      sample: {"container": "engine-u042--previous", "image": "engine:2.3.0",
               "image_id": "sha256:05f8a0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9",
               "version": "2.3.0", "status": "exited"}
    failed_container:
      description: Container kept after a rollback, for diagnostics, if any.
      type: str
      sample: engine-u042--failed
    rolled_back_from:
      description:
        - The image a rollback took the Engine back from (the container kept as failed, the latest rollback's; else
          the label of the container the rollback created; for Compose, the state file's record); null when it was
          not rolled back.
      type: str
      sample: engine:2.4.1
    compose:
      description:
        - The Compose project (O(deployment=compose) only).
        - C(files), C(project), C(env_file) and C(profiles) are how Compose runs the service (the options, else the
          running container's labels, else the env file's C(COMPOSE_FILE) / C(COMPOSE_PROJECT_NAME), else Compose's
          defaults); C(config_sources) says which for each. C(problem) says why they could not be found (then
          C(files) is null).
        - C(last_switch) is the last switch M(september.engine.engine_compose) recorded (C(action), C(from), C(to),
          C(at), C(result)), null when none; C(result=in progress) means the run that made it died before it ended.
      type: dict
      sample: {"dir": "/srv/engine", "service": "engine", "project": "engine",
               "files": ["/srv/engine/docker-compose.yml", "/srv/engine/docker-compose.override.yml"],
               "env_file": "/srv/engine/.env", "profiles": [],
               "config_sources": {"files": "container", "project": "container", "env_file": "default"},
               "problem": null, "recorded_image": "engine:2.4.0", "rolled_back_from": null,
               "last_switch": {"action": "present", "from": "engine:2.3.0", "to": "engine:2.4.0",
                               "at": "2026-05-04T02:00:00Z", "result": "ok"}}
"""

from ansible_collections.september.engine.plugins.module_utils._docker import (
    docker_argument_spec,
    docker_client,
)
from ansible_collections.september.engine.plugins.module_utils._engine import (
    ENGINE_REQUIRED_IF,
    engine_argument_spec,
    resolve_engine,
)
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule


def main() -> None:
    module = EngineModule(engine_argument_spec(), shared=[docker_argument_spec()], docker=True,
                          required_if=ENGINE_REQUIRED_IF)
    module.run(lambda: dict(engine=resolve_engine(docker_client(module.params), module.params)))


if __name__ == "__main__":
    main()
