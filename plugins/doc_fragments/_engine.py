# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """How the inventory names an Engine, and how its Compose project is run (private fragments).

    DOCUMENTATION pairs with module_utils/_engine.py ``engine_argument_spec``; COMPOSE_PROJECT with
    module_utils/_compose.py ``compose_project_argument_spec`` (engine_info and engine_compose); COMPOSE with the
    rest of ``compose_argument_spec`` (engine_compose).
    """

    DOCUMENTATION = r"""
options:
  deployment:
    description: The hosting model of the Engine.
    type: str
    choices: [container, compose]
    required: true
  container_name:
    description: The Engine's container (O(deployment=container)).
    type: str
  compose_dir:
    description: Folder of the Engine's Compose project (O(deployment=compose)).
    type: path
  compose_service:
    description: The Engine's service in the Compose project.
    type: str
    default: engine
  url:
    description: The Engine's base URL when it is not the container's published port C(8000) on the loopback address.
    type: str
  data_dir:
    description: Where the Engine mounts its data inside the container.
    type: str
    default: /data
  previous_suffix:
    description: Suffix of the container kept by M(september.engine.engine_container) until a switch is verified.
    type: str
    default: "--previous"
  failed_suffix:
    description: Suffix of the container kept by M(september.engine.engine_container) after a rollback.
    type: str
    default: "--failed"
"""

    COMPOSE_PROJECT = r"""
options:
  compose_file:
    description:
      - The project's compose files, relative to the project folder or absolute; later files override earlier
        ones, as with C(-f).
      - Default, in this order, the files the service's running container was created from (its
        C(com.docker.compose.project.config_files) label, which Compose v1 and v2 both set), else C(COMPOSE_FILE) of
        the env file (split on C(COMPOSE_PATH_SEPARATOR), default C(:)), else what Compose finds itself
        (C(compose.yaml) ... C(docker-compose.yml), plus its override file).
      - When it differs from what the running container was created from, a warning says so.
    type: list
    elements: path
  env_file:
    description:
      - The env file Compose interpolates the compose files with (C(--env-file)).
      - Default the one the running container was created with (its C(com.docker.compose.project.environment_file)
        label, set only when C(--env-file) was given), else C(.env) in the project folder (then not passed, Compose
        reads it itself).
    type: path
  project_name:
    description:
      - The Compose project name (C(-p)).
      - Default the running container's project (its C(com.docker.compose.project) label), else
        C(COMPOSE_PROJECT_NAME) of the env file, else what Compose chooses (the folder's name).
      - Needed only when several projects run the service from one folder.
    type: str
"""

    COMPOSE = r"""
options:
  project_src:
    description: The Compose project directory, its working directory (it holds the compose files and C(.env)).
    type: path
    required: true
  service:
    description: The Engine's service in the project.
    type: str
    default: engine
  compose_command:
    description:
      - Which Compose to run. V(auto) uses C(docker compose) (v2) when C(docker compose version) works, else
        C(docker-compose) (v1 or a standalone v2).
    type: str
    choices: [auto, docker compose, docker-compose]
    default: auto
  data_dir:
    description:
      - Where the Engine mounts its brain inside the container. A switch must come back with the same storage
        (volume or host folder) mounted there as before, or it is refused (or undone).
    type: str
    default: /data
"""
