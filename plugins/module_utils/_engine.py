# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Resolve an inventory Engine (a per-user container, or a Compose project's service) to what Docker knows of it.

Read-only. Used by engine_info, which every role runs first.
"""

from __future__ import annotations

import json
import os

from ansible_collections.september.engine.plugins.module_utils._docker import NotFound, image_version
from ansible_collections.september.engine.plugins.module_utils._engine_api import engine_url_from_container
from ansible_collections.september.engine.plugins.module_utils._errors import NotFoundError, OptionsError
from ansible_collections.september.engine.plugins.module_utils._identity import identity_from_facts

PREVIOUS_IMAGE_LABEL = "io.september.engine.previous-image"
COMPOSE_WORKDIR_LABEL = "com.docker.compose.project.working_dir"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_ONEOFF_LABEL = "com.docker.compose.oneoff"
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
    )


ENGINE_REQUIRED_IF = [
    ("deployment", "container", ["container_name"]),
    ("deployment", "compose", ["compose_dir"]),
]


def split_repository(ref: str | None) -> tuple[str | None, str | None]:
    """('registry/repo', 'tag') of an image reference; a digest or no tag gives (repo, None)."""
    if not ref:
        return None, None
    name = ref.split("@", 1)[0]
    repo, sep, tag = name.rpartition(":")
    if sep and "/" not in tag:
        return repo, tag
    return name, None


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


def _compose_container(client, compose_dir: str, service: str):
    """The service's container in the project that works in `compose_dir` (v1 and v2 set these labels)."""
    wanted = os.path.realpath(compose_dir)
    found = []
    # ignore_removed: another project's container listed a moment ago may be gone before it is inspected.
    labelled = client.containers.list(
        all=True, filters={"label": f"{COMPOSE_SERVICE_LABEL}={service}"}, ignore_removed=True
    )
    for container in labelled:
        labels = container.labels or {}
        if labels.get(COMPOSE_ONEOFF_LABEL, "False") == "True":
            continue
        workdir = labels.get(COMPOSE_WORKDIR_LABEL)
        if workdir and os.path.realpath(workdir) == wanted:
            found.append(container)
    # Prefer a running one when a project has stale containers of the service.
    found.sort(key=lambda c: (not (c.attrs.get("State") or {}).get("Running"), c.name))
    return found[0] if found else None


def _read_compose_state(compose_dir: str, service: str) -> dict:
    path = os.path.join(compose_dir, COMPOSE_STATE_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return dict(((data.get("services") or {}).get(service)) or {})


def resolve_engine(client, params: dict) -> dict:
    """Everything the roles need to know about one Engine, without changing anything."""
    deployment = params["deployment"]
    data_dir = params.get("data_dir") or "/data"
    engine = dict(deployment=deployment, exists=False, container=None, previous=None, failed_container=None)
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
        if container is not None:
            engine.update(_container_facts(client, container, data_dir))
        else:
            engine["container"] = name
        if previous is not None:
            prev = _container_facts(client, previous, data_dir)
            engine["previous"] = dict(container=prev["container"], image=prev["image"], version=prev["version"],
                                      status=prev["status"])
        elif container is not None and (container.labels or {}).get(PREVIOUS_IMAGE_LABEL):
            ref = container.labels[PREVIOUS_IMAGE_LABEL]
            facts = _image_facts(client, None, ref)
            engine["previous"] = dict(container=None, image=ref, version=facts["version"], status=None)
        engine["failed_container"] = failed.name if failed is not None else None
    else:
        compose_dir = params.get("compose_dir")
        service = params.get("compose_service") or "engine"
        if not compose_dir or not os.path.isdir(compose_dir):
            raise NotFoundError(
                f"The Compose project folder '{compose_dir}' does not exist: check engine_compose_dir in the inventory."
            )
        container = _compose_container(client, compose_dir, service)
        if container is not None:
            engine.update(_container_facts(client, container, data_dir))
        record = _read_compose_state(compose_dir, service)
        # After a rollback the record's "previous" is the bad release: nothing to go back to then.
        if record.get("previous_image") and not record.get("rolled_back_from"):
            facts = _image_facts(client, None, record["previous_image"])
            engine["previous"] = dict(container=None, image=record["previous_image"], version=facts["version"],
                                      status=None)
        engine["compose"] = dict(
            dir=os.path.realpath(compose_dir),
            service=service,
            project=(container.labels or {}).get(COMPOSE_PROJECT_LABEL) if container is not None else None,
            recorded_image=record.get("image"),
            rolled_back_from=record.get("rolled_back_from"),
            # The last switch engine_compose recorded; result "in progress" means it never ended (the run died).
            last_switch=(record.get("history") or [None])[-1],
        )
    if params.get("url"):
        engine["url"] = params["url"].rstrip("/")
    return engine
