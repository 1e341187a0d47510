# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Resolve an inventory Engine (a per-user container, or a Compose project's service) to what Docker knows of it.

Read-only. Used by engine_info, which every role runs first.
"""

from __future__ import annotations

import json
import os

from ansible_collections.september.engine.plugins.module_utils._brain import (
    migration_files_argument_spec,
    migrations_argument_spec,
)
from ansible_collections.september.engine.plugins.module_utils._compose import (
    ProjectConfig,
    compose_project_argument_spec,
    env_project_name,
    find_service_container,
    resolve_config,
)
from ansible_collections.september.engine.plugins.module_utils._container import (
    PREVIOUS_IMAGE_ID_LABEL,
    PREVIOUS_IMAGE_LABEL,
    ROLLED_BACK_FROM_LABEL,
)
from ansible_collections.september.engine.plugins.module_utils._docker import (
    NotFound,
    docker_argument_spec,
    image_version,
)
from ansible_collections.september.engine.plugins.module_utils._engine_api import (
    engine_api_argument_spec,
    engine_url_from_container,
)
from ansible_collections.september.engine.plugins.module_utils._errors import (
    EngineModuleError,
    NotFoundError,
    OptionsError,
)
from ansible_collections.september.engine.plugins.module_utils._identity import identity_from_facts, identity_from_mount
from ansible_collections.september.engine.plugins.module_utils._image_ref import ImageRef
from ansible_collections.september.engine.plugins.module_utils._timeutil import parse_time

COMPOSE_STATE_FILE = ".september-engine.json"


def engine_argument_spec() -> dict:
    """Options of engine_info: how the inventory names an Engine."""
    return dict(
        deployment=dict(type="str", choices=["container", "compose"], required=True),
        container_name=dict(type="str"),
        compose_dir=dict(type="path"),
        compose_service=dict(type="str", default="engine"),
        url=dict(type="str"),
        data_dir=dict(type="str", default="/data"),
        previous_suffix=dict(type="str", default="--previous"),
        failed_suffix=dict(type="str", default="--failed"),
        **compose_project_argument_spec(),
    )


ENGINE_REQUIRED_IF = [
    ("deployment", "container", ["container_name"]),
    ("deployment", "compose", ["compose_dir"]),
]


def engine_module_specs() -> list:
    """The shared options of a module that changes an Engine the inventory names, for ``EngineModule(shared=...)``.

    How it is deployed (doc fragments ``september.engine._engine`` and ``._engine.COMPOSE_PROJECT``), how its
    brain records migrations and its images ship them (``._brain.MIGRATIONS``, ``._brain.MIGRATION_FILES``), how to
    reach its API (``._engine_api``) and Docker (``._docker``). Use with ENGINE_REQUIRED_IF. engine_preflight and
    engine_rollback.
    """
    return [engine_argument_spec(), migrations_argument_spec(), migration_files_argument_spec(),
            engine_api_argument_spec(), docker_argument_spec()]


def split_repository(ref: str | None) -> tuple[str | None, str | None]:
    """('registry/repo', 'tag') of an image reference; a digest or no tag gives (repo, None)."""
    if not ref:
        return None, None
    parsed = ImageRef.parse(ref)
    return parsed.repository, parsed.tag


def _image_facts(client, image_id: str | None, ref: str | None) -> dict:
    image = None
    for candidate in (image_id, ref):
        if not candidate:
            continue
        try:
            image = client.images.get(candidate)
            break
        except NotFound:
            continue
    repository, tag = split_repository(ref)
    return dict(
        image=ref,
        image_id=image.id if image is not None else image_id,
        repository=repository,
        tag=tag,
        version=(image_version(image) if image is not None else None) or tag,
    )


def _container_facts(client, container, data_dir: str) -> dict:
    attrs = container.attrs
    state = attrs.get("State") or {}
    facts = dict(
        container=container.name,
        container_id=container.id,
        exists=True,
        status=state.get("Status"),
        running=bool(state.get("Running")),
        restarting=bool(state.get("Restarting")),
        restart_count=attrs.get("RestartCount", 0),
        exit_code=state.get("ExitCode"),
        url=engine_url_from_container(attrs),
        volume=None,
        brain_mount=None,
    )
    for mount in attrs.get("Mounts") or []:
        if mount.get("Destination", "").rstrip("/") == data_dir.rstrip("/"):
            facts["volume"] = mount.get("Name")
            facts["brain_mount"] = dict(type=mount.get("Type"), source=mount.get("Source"), name=mount.get("Name"))
    facts.update(_image_facts(client, attrs.get("Image"), (attrs.get("Config") or {}).get("Image")))
    facts["identity"] = identity_from_facts(facts)
    return facts


def _get(client, name: str):
    try:
        return client.containers.get(name)
    except NotFound:
        return None


def _read_compose_state(compose_dir: str, service: str) -> dict:
    path = os.path.join(compose_dir, COMPOSE_STATE_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return dict(((data.get("services") or {}).get(service)) or {})


def _created(container) -> float | None:
    try:
        return parse_time(container.attrs.get("Created"))
    except (TypeError, ValueError):
        return None


def put_back(container, failed) -> bool:
    """Whether a rollback put ``container`` back (it kept the release it replaced as ``failed``, made after it): its
    labels then tell of an older switch, not of the one the rollback undid. A ``failed`` container older than
    ``container`` is an earlier rollback's, left behind: it tells nothing of this one."""
    if container is None or failed is None:
        return False
    made, failed_made = _created(container), _created(failed)
    return made is not None and failed_made is not None and failed_made > made


def _previous(client, container, prev: dict | None, rolled_back: bool = False) -> dict | None:
    """What a rollback of a per-user container goes back to: the kept container (its facts), else the image its
    labels record (not when a rollback put it back: ``rolled_back``)."""
    if prev is not None:
        return dict(container=prev["container"], image=prev["image"], image_id=prev["image_id"],
                    version=prev["version"], status=prev["status"])
    labels = (container.labels or {}) if container is not None and not rolled_back else {}
    if labels.get(PREVIOUS_IMAGE_LABEL):
        ref, image_id = labels[PREVIOUS_IMAGE_LABEL], labels.get(PREVIOUS_IMAGE_ID_LABEL) or None
        facts = _image_facts(client, image_id, ref)
        return dict(container=None, image=ref, image_id=image_id, version=facts["version"], status=None)
    return None


def _compose_engine(client, params: dict, data_dir: str, engine: dict) -> None:
    compose_dir = params.get("compose_dir")
    service = params.get("compose_service") or "engine"
    if not compose_dir or not os.path.isdir(compose_dir):
        raise NotFoundError(
            f"The Compose project folder '{compose_dir}' does not exist: check engine_compose_dir in the inventory."
        )
    hint = params.get("project_name") or env_project_name(compose_dir, params.get("env_file"))
    container = find_service_container(client, compose_dir, service, hint)
    if container is not None:
        engine.update(_container_facts(client, container, data_dir))
    labels = (container.labels or {}) if container is not None else None
    config: ProjectConfig | None = None
    problem = None
    try:
        config = resolve_config(compose_dir, service, files=params.get("compose_file"),
                                project_name=params.get("project_name"), env_file=params.get("env_file"),
                                labels=labels)
    except EngineModuleError as exc:
        if params.get("compose_file") or params.get("env_file"):
            raise
        problem = exc.msg
    record = _read_compose_state(compose_dir, service)
    # After a rollback the record's "previous" is the bad release: nothing to go back to then.
    if record.get("previous_image") and not record.get("rolled_back_from"):
        image_id = record.get("previous_image_id") or None
        facts = _image_facts(client, image_id, record["previous_image"])
        engine["previous"] = dict(container=None, image=record["previous_image"], image_id=image_id,
                                  version=facts["version"], status=None)
    project = config.as_dict() if config is not None else {}
    # The record's, while the service still runs what the record says it went back to (not after a hand edit).
    engine["rolled_back_from"] = record.get("rolled_back_from") if record.get("image") == engine.get("image") else None
    engine["compose"] = dict(
        dir=os.path.realpath(compose_dir),
        service=service,
        project=project.get("project") or ((labels or {}).get("com.docker.compose.project")),
        files=project.get("files"),
        env_file=project.get("env_file"),
        profiles=project.get("profiles") or [],
        config_sources=project.get("sources"),
        problem=problem,
        recorded_image=record.get("image"),
        rolled_back_from=record.get("rolled_back_from"),
        # The last switch engine_compose recorded; result "in progress" means it never ended (the run died).
        last_switch=(record.get("history") or [None])[-1],
    )


def resolve_engine(client, params: dict) -> dict:
    """Everything the roles need to know about one Engine, without changing anything."""
    deployment = params["deployment"]
    data_dir = params.get("data_dir") or "/data"
    engine = dict(deployment=deployment, exists=False, container=None, previous=None, failed_container=None,
                  rolled_back_from=None)
    if deployment == "container":
        name = params.get("container_name")
        if not name:
            raise OptionsError("deployment=container needs container_name (the Engine's container).")
        container = _get(client, name)
        previous = _get(client, name + params.get("previous_suffix", "--previous"))
        failed = _get(client, name + params.get("failed_suffix", "--failed"))
        if container is None and previous is None:
            raise NotFoundError(
                f"No container named '{name}' (nor '{name}{params.get('previous_suffix', '--previous')}') on this "
                "Docker host: check engine_container_name in the inventory."
            )
        prev = _container_facts(client, previous, data_dir) if previous is not None else None
        if container is not None:
            engine.update(_container_facts(client, container, data_dir))
        else:
            # A run died between renaming the old container and creating the new one: the brain is still the
            # kept container's, so the Engine keeps its identity (lock, snapshots) and is not keyed by its name.
            engine.update(container=name, volume=prev["volume"], brain_mount=prev["brain_mount"],
                          identity=identity_from_mount(prev["brain_mount"], name))
        back = put_back(container, failed)
        engine["previous"] = _previous(client, container, prev, rolled_back=back)
        engine["failed_container"] = failed.name if failed is not None else None
        # What a rollback took it back from: the container it kept as failed when it put this one back, else the
        # label the rollback gave the container it created.
        engine["rolled_back_from"] = (
            (failed.attrs.get("Config") or {}).get("Image") if back
            else ((container.labels or {}) if container is not None else {}).get(ROLLED_BACK_FROM_LABEL)
        )
    else:
        _compose_engine(client, params, data_dir, engine)
    if params.get("url"):
        engine["url"] = params["url"].rstrip("/")
    return engine
