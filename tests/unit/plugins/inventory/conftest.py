# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A fake of the Docker SDK's low-level ``APIClient``, as much of it as Engine discovery calls, with Docker's shapes.

The tests reach these helpers through the ``fake`` fixture (this module), since test files are imported by path.

``containers(all, filters)`` answers what ``GET /containers/json`` answers (``Names``, ``Image``, ``ImageID``,
``Labels``, ``State``, ``Ports`` only while running, ``Mounts``, ``HostConfig.NetworkMode``) and applies the label
filters as Docker does (every one must hold); ``inspect_container`` and ``inspect_image`` answer the inspect shapes.
Every call is recorded.
"""

from __future__ import annotations

import copy
import hashlib
import sys
import threading

import pytest


class FakeNotFound(LookupError):
    """What the fake raises for an unknown id (the plugin's ``missing`` errors in these tests)."""


def _id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def image(ref: str, version: str | None = None, labels: dict | None = None) -> dict:
    """An image's inspect answer; ``version`` goes into the OCI version label."""
    all_labels = dict(labels or {})
    if version:
        all_labels["org.opencontainers.image.version"] = version
    return {"Id": f"sha256:{_id(ref)}", "RepoTags": [ref], "Config": {"Labels": all_labels}}


class Box:
    """One container: its list entry and its inspect answer."""

    def __init__(self, name, image_ref, *, labels=None, mounts=(), port=None, host_ip="127.0.0.1", state="running",
                 env=(), network_mode="engine_net", image_id=None):  # fmt: skip
        self.name = name
        self.id = _id(name)
        self.image_ref = image_ref
        self.image_id = image_id or f"sha256:{_id(image_ref)}"
        self.labels = dict(labels or {})
        self.mounts = [dict(m) for m in mounts]
        self.port, self.host_ip, self.state = port, host_ip, state
        self.env = list(env)
        self.network_mode = network_mode

    def summary(self) -> dict:
        ports = []
        if self.port and self.state == "running":
            ports = [{"IP": self.host_ip, "PrivatePort": 8000, "PublicPort": self.port, "Type": "tcp"}]
            if self.host_ip == "0.0.0.0":
                ports.append({"IP": "::", "PrivatePort": 8000, "PublicPort": self.port, "Type": "tcp"})
        return {
            "Id": self.id,
            "Names": [f"/{self.name}"],
            "Image": self.image_ref,
            "ImageID": self.image_id,
            "Labels": dict(self.labels),
            "State": self.state,
            "Status": "Up 3 minutes" if self.state == "running" else "Exited (0) 1 minute ago",
            "Ports": ports,
            "Mounts": copy.deepcopy(self.mounts),
            "HostConfig": {"NetworkMode": self.network_mode},
        }

    def inspect(self) -> dict:
        bindings = {"8000/tcp": [{"HostIp": self.host_ip, "HostPort": str(self.port)}]} if self.port else {}
        return {
            "Id": self.id,
            "Name": f"/{self.name}",
            "Config": {"Image": self.image_ref, "Labels": dict(self.labels), "Env": list(self.env)},
            "HostConfig": {"PortBindings": bindings, "NetworkMode": self.network_mode},
            "NetworkSettings": {"Ports": {} if self.state != "running" else bindings},
            "State": {"Status": self.state, "Running": self.state == "running"},
            "Mounts": copy.deepcopy(self.mounts),
        }


def volume_mount(name: str, destination: str = "/data") -> dict:
    return {"Type": "volume", "Name": name, "Source": f"/var/lib/docker/volumes/{name}/_data",
            "Destination": destination, "Driver": "local", "RW": True}  # fmt: skip


def bind_mount(source: str, destination: str = "/data") -> dict:
    return {"Type": "bind", "Source": source, "Destination": destination, "RW": True}


def engine_container(engine_id: str, version: str = "2.3.0", port: int = 9001, *, name: str | None = None,
                     repository: str = "engine", **kwargs) -> Box:  # fmt: skip
    """A per-user Engine as the contract's orchestrator makes it: volume engine-data-<id> at /data, the key in env."""
    kwargs.setdefault("env", ["ENGINE_API_KEY=sk-unit-secret-0123456789", "PATH=/usr/bin"])
    return Box(name or engine_id, f"{repository}:{version}", mounts=[volume_mount(f"engine-data-{engine_id}")],
               port=port, **kwargs)  # fmt: skip


def compose_engine(project: str, version: str = "2.3.0", port: int = 9002, *, workdir: str = "/srv/september",
                   service: str = "engine", number: int = 1, v2: bool = True, files=("docker-compose.yml",),
                   env_file: str | None = ".env", extra_labels=None, **kwargs) -> Box:  # fmt: skip
    """A Compose project's Engine container, labelled as Compose v2 (or v1) labels it."""
    cdir = f"{workdir}/{project}"
    labels = {
        "com.docker.compose.project": project,
        "com.docker.compose.service": service,
        "com.docker.compose.container-number": str(number),
        "com.docker.compose.oneoff": "False",
        "com.docker.compose.project.working_dir": cdir,
        "com.docker.compose.project.config_files": ",".join(f if not v2 else f"{cdir}/{f}" for f in files),
        **(extra_labels or {}),
    }
    if v2 and env_file:
        labels["com.docker.compose.project.environment_file"] = f"{cdir}/{env_file}"
    name = f"{project}-{service}-{number}" if v2 else f"{project}_{service}_{number}"
    kwargs.setdefault("env", ["ENGINE_API_KEY=sk-unit-secret-0123456789"])
    return Box(name, f"engine:{version}", labels=labels, mounts=[volume_mount(f"{project}_engine_data")],
               port=port, **kwargs)  # fmt: skip


class FakeApi:
    """The low-level client of one Docker daemon holding ``boxes`` and ``images``."""

    def __init__(self, boxes=(), images=()):
        self.boxes = list(boxes)
        self.images = {i["Id"]: i for i in images}
        self.calls: list = []
        self.closed = False
        self.timeout = None

    def containers(self, all=False, filters=None):
        self.calls.append(("containers", all, copy.deepcopy(filters)))
        wanted = (filters or {}).get("label") or []
        found = []
        for box in self.boxes:
            if not all and box.state != "running":
                continue
            ok = True
            for selector in wanted:
                key, _sep, value = selector.partition("=")
                if key not in box.labels or ("=" in selector and box.labels[key] != value):
                    ok = False
            if ok:
                found.append(box.summary())
        return found

    def inspect_container(self, container_id):
        self.calls.append(("inspect_container", container_id))
        for box in self.boxes:
            if container_id in (box.id, box.name):
                return box.inspect()
        raise FakeNotFound(container_id)

    def inspect_image(self, image_id):
        self.calls.append(("inspect_image", image_id))
        if image_id in self.images:
            return copy.deepcopy(self.images[image_id])
        raise FakeNotFound(image_id)

    def close(self):
        self.closed = True


class HangingApi(FakeApi):
    """A daemon that accepts the connection and then never answers the list (until ``release``)."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def containers(self, all=False, filters=None):
        self.calls.append(("containers", all, filters))
        self.release.wait(30)
        return []


@pytest.fixture
def fake():
    """This module: the fake daemon and the builders of its containers and images."""
    return sys.modules[__name__]
