# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""module_utils/_brain.py: who a brain belongs to (whichever way it is located), and who holds it (Docker faked)."""

from __future__ import annotations

import pytest

from ansible_collections.september.engine.plugins.module_utils import _brain
from ansible_collections.september.engine.plugins.module_utils._brain import BrainLocation, brain_identity, holders

VOLUME_DIR = "/var/lib/docker/volumes/engine-data-u001/_data"


class Container:
    def __init__(self, name, mount, running=True, pids=()):
        self.name = name
        self.attrs = {"Mounts": [dict(mount, Destination="/data")], "State": {"Running": running},
                      "Created": "2026-01-01", "Config": {"Image": "engine:2.3.0"}, "Image": "sha256:1"}
        self.running = running
        self.pids = pids

    def top(self):
        return {"Titles": ["UID", "PID", "CMD"], "Processes": [["root", str(pid), "python"] for pid in self.pids]}


class Volume:
    def __init__(self, name, mountpoint):
        self.name, self.attrs = name, {"Mountpoint": mountpoint}


class Containers:
    def __init__(self, containers):
        self.items = list(containers)

    def list(self, all=False, filters=None, ignore_removed=False):
        if filters and filters.get("status") == "restarting":
            return []
        return [c for c in self.items if all or c.running]

    def get(self, name):
        return next(c for c in self.items if c.name == name)


class Volumes:
    def __init__(self, volumes):
        self.items = list(volumes)

    def list(self):
        return self.items


class Client:
    def __init__(self, containers=(), volumes=()):
        self.containers, self.volumes = Containers(containers), Volumes(volumes)


VOLUME_MOUNT = {"Type": "volume", "Name": "engine-data-u001", "Source": VOLUME_DIR}
BIND_MOUNT = {"Type": "bind", "Source": "/srv/engine/u009"}


@pytest.mark.parametrize(
    ("location", "client", "key", "container"),
    [
        pytest.param(BrainLocation(path=f"{VOLUME_DIR}/brain.sqlite", source="container", container="u001",
                                   volume="engine-data-u001", mount_type="volume", mount_source=VOLUME_DIR),
                     Client(), "volume:engine-data-u001", "u001", id="container-on-a-volume"),
        pytest.param(BrainLocation(path=f"{VOLUME_DIR}/brain.sqlite", source="volume", volume="engine-data-u001",
                                   mount_type="volume", mount_source=VOLUME_DIR),
                     Client(), "volume:engine-data-u001", None, id="volume"),
        pytest.param(BrainLocation(path=f"{VOLUME_DIR}/brain.sqlite", source="path"),
                     Client([Container("u001", VOLUME_MOUNT, running=False)]), "volume:engine-data-u001", "u001",
                     id="path-of-a-stopped-container"),
        pytest.param(BrainLocation(path=f"{VOLUME_DIR}/brain.sqlite", source="path"),
                     Client(volumes=[Volume("engine-data-u001", VOLUME_DIR)]), "volume:engine-data-u001", None,
                     id="path-inside-a-volume"),
        pytest.param(BrainLocation(path="/srv/engine/u009/brain.sqlite", source="path"),
                     Client([Container("u009", BIND_MOUNT)]), "bind:/srv/engine/u009", "u009", id="path-bind-mounted"),
        pytest.param(BrainLocation(path="/srv/engine/u009/brain.sqlite", source="path"), Client(),
                     "bind:/srv/engine/u009", None, id="path-alone"),
    ],
)
def test_brain_identity_is_the_same_whichever_way_the_brain_is_located(location, client, key, container):
    identity = brain_identity(client, location)
    assert (identity["key"], identity["container"]) == (key, container)


def test_holders(monkeypatch):
    own = Container("u001", VOLUME_MOUNT, pids=(4242, 4243))
    sidecar = Container("u001-backup", VOLUME_MOUNT)
    location = BrainLocation(path=f"{VOLUME_DIR}/brain.sqlite", source="container", container="u001",
                             volume="engine-data-u001", mount_type="volume", mount_source=VOLUME_DIR,
                             container_running=True)
    monkeypatch.setattr(_brain, "processes_holding", lambda path: [4242])
    assert holders(Client([own]), location) == ["container u001 is running", "process(es) 4242 hold it open"]
    assert holders(Client([own]), location, engine_may_run=True) == []  # the Engine's own process
    assert holders(Client([own, sidecar]), location, engine_may_run=True) == [
        "running container(s) u001-backup mount its folder"]
    monkeypatch.setattr(_brain, "processes_holding", lambda path: [4242, 777])
    assert holders(Client([own]), location, engine_may_run=True) == ["process(es) 777 hold it open"]
    own.running = False
    assert holders(Client([own]), location) == ["process(es) 777, 4242 hold it open"]
