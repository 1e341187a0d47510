# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from engine_testkit.module_runner import ExitJson, FailJson, patch_exits


@pytest.fixture(autouse=True)
def exits(monkeypatch):
    """Every module test: exit_json / fail_json raise ExitJson / FailJson (engine_testkit.module_runner)."""
    patch_exits(monkeypatch)


@pytest.fixture
def run_module(monkeypatch):
    """Run a whole module in-process: ``run_module(module, args, check=False, diff=False)``.

    Returns what the module exited or failed with, plus ``failed`` (it failed) and ``warnings`` (what it warned
    during this run).
    """
    warned: list = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, message: warned.append(message))

    def run(module, args: dict, check: bool = False, diff: bool = False) -> dict:
        args = dict(args)
        if check:
            args["_ansible_check_mode"] = True
        if diff:
            args["_ansible_diff"] = True
        warned.clear()
        with patch_module_args(args), pytest.raises((ExitJson, FailJson)) as info:
            module.main()
        return dict(info.value.args[0], failed=info.type is FailJson, warnings=list(warned))

    return run


class FakeEngineContainer:
    """A container that bind-mounts ``source`` at /data (an Engine and its brain); pause and unpause are recorded."""

    def __init__(self, name: str, source: str, running: bool = True):
        self.name = name
        self.id = f"{name}-id"
        self.running = running
        self.calls: list = []
        self.attrs = {
            "Mounts": [{"Type": "bind", "Source": source, "Destination": "/data"}],
            "State": {"Running": running},
            "Config": {"Image": "engine:2.3.0"},
            "Image": "sha256:1",
            "Created": "2026-03-01T00:00:00Z",
        }

    @property
    def status(self) -> str:
        return "running" if self.running else "exited"

    def pause(self):
        self.calls.append("pause")

    def unpause(self):
        self.calls.append("unpause")


class FakeContainers:
    def __init__(self):
        self.containers: list = []

    def add(self, name: str, source: str, running: bool = True) -> FakeEngineContainer:
        container = FakeEngineContainer(name, source, running)
        self.containers.append(container)
        return container

    def list(self, all=False, filters=None, ignore_removed=False):
        if (filters or {}).get("status") == "restarting":
            return []
        return [c for c in self.containers if all or c.running]

    def get(self, name):
        return next(c for c in self.containers if c.name == name)


class FakeImage:
    def __init__(self):
        self.labels = {"org.opencontainers.image.version": "2.3.0"}
        self.attrs = {"Config": {"Labels": self.labels}}
        self.tags = ["engine:2.3.0"]


class FakeImages:
    def get(self, ref):
        return FakeImage()


class FakeVolumes:
    def list(self):
        return []


class FakeDockerHost:
    """The Docker host the brain and volume modules see: Engine containers (none at first), engine:2.3.0, no volumes."""

    def __init__(self, monkeypatch):
        self._monkeypatch = monkeypatch
        self.containers = FakeContainers()
        self.images = FakeImages()
        self.volumes = FakeVolumes()

    def serve(self, *modules) -> FakeDockerHost:
        """Make the ``docker_client`` of each of ``modules`` return this host."""
        for module in modules:
            self._monkeypatch.setattr(module, "docker_client", lambda params: self)
        return self


@pytest.fixture
def docker_host(monkeypatch):
    """A fake Docker host (FakeDockerHost): ``docker_host.serve(module)`` hands it to the module under test."""
    return FakeDockerHost(monkeypatch)
