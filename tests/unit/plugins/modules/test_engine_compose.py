# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The engine_compose module as a whole, against a scripted Compose and a fake Docker client."""

from __future__ import annotations

import json
import os
import stat

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from docker.errors import ImageNotFound, NotFound

from ansible_collections.september.engine.plugins.module_utils import _compose_file as cf
from ansible_collections.september.engine.plugins.modules import engine_compose
from engine_testkit.module_runner import ExitJson, FailJson

KEY = "ENGINE_API_KEY=never-show-this-key"
IMAGES = {"engine:2.3.0": "sha256:230", "engine:2.3.1": "sha256:231"}


class FakeContainer:
    def __init__(self, world):
        self.world = world
        self.id = "c" * 64
        self.name = "proj_engine_1"
        self.labels = {"com.docker.compose.project": "proj", "com.docker.compose.service": "engine"}

    @property
    def status(self):
        return self.world.status

    @property
    def attrs(self):
        return {"Config": {"Image": self.world.image}, "Image": IMAGES.get(self.world.image, "sha256:other")}


class FakeClient:
    def __init__(self, world):
        self.world = world
        self.containers = self
        self.images = self

    def get(self, ref):
        if ref == "c" * 64:
            if self.world.image is None:
                raise NotFound("gone")
            return FakeContainer(self.world)
        if ref in IMAGES:
            return type("Image", (), {"id": IMAGES[ref]})()
        raise ImageNotFound(ref)


class World:
    """A Compose v1 or v2 that keeps one container, and re-reads the project on ``up`` like Compose does."""

    def __init__(self, project, generation="v1"):
        self.project = project
        self.generation = generation
        self.image = "engine:2.3.0"
        self.status = "running"
        self.calls = []
        self.fail_next_up = 0

    def run_command(self, argv, cwd=None, environ_update=None, **_kwargs):
        argv = list(argv)
        if argv[-1] == "version":
            if self.generation == "v2" and argv[:2] == ["/usr/bin/docker", "compose"]:
                return 0, "Docker Compose version v2.24.6\n", ""
            if self.generation == "v1" and argv[0] == "/usr/bin/docker-compose":
                return 0, "docker-compose version 1.29.2, build unknown\n", ""
            return 1, "", "not here"
        sub = argv[argv.index(str(self.project)) + 1 :]
        while sub and sub[0] in ("-f", "-p", "--env-file"):
            sub = sub[2:]
        self.calls.append((sub, dict(environ_update or {})))
        if sub[0] == "ps":
            return 0, ("c" * 64 + "\n") if self.image else "", ""
        if sub[0] == "stop":
            self.status = "exited"
        elif sub[0] == "up":
            if self.fail_next_up:
                self.fail_next_up -= 1
                return 1, "", "ERROR: pull access denied for engine, repository does not exist"
            files = [(str(self.project / "docker-compose.yml"), (self.project / "docker-compose.yml").read_text())]
            env = self.project / ".env"
            setting = cf.locate_tag(files, "engine", str(env), env.read_text() if env.exists() else None,
                                    environ_update or {})
            self.image, self.status = setting.image, "running"
        elif sub[0] == "start":
            self.status = "running"
        return 0, "", ""

    def subcommands(self):
        return [c[0][0] for c in self.calls if c[0][0] != "ps"]


@pytest.fixture
def world(tmp_path, monkeypatch):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "docker-compose.yml").write_text(
        "# the Engine\nservices:\n  engine:\n    image: engine:2.3.0  # pinned\n    env_file: .env\n"
    )
    env = project / ".env"
    env.write_text(KEY + "\n")
    os.chmod(env, 0o600)
    w = World(project)
    bins = {"docker": "/usr/bin/docker", "docker-compose": "/usr/bin/docker-compose"}
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, *a, **k: bins.get(name))

    def run_command(_module, argv, **kwargs):
        return w.run_command(argv, **kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(engine_compose, "docker_client", lambda params: FakeClient(w))
    return w


def run(args, expect=ExitJson):
    with patch_module_args(args), pytest.raises(expect) as info:
        engine_compose.main()
    return info.value.args[0]


def test_switch_in_file_then_idempotent(world):
    src = str(world.project)
    before = (world.project / "docker-compose.yml").read_text()
    result = run({"project_src": src, "version": "2.3.1", "_ansible_diff": True})
    assert result["changed"] is True
    c = result["compose"]
    assert (c["image"], c["previous_image"], c["compose_version"]) == ("engine:2.3.1", "engine:2.3.0", "v1")
    assert c["actions"] == ["drain", "edit", "up"] and c["tag_location"]["location"] == "file"
    assert world.subcommands() == ["stop", "up"]
    assert world.calls[1][0] == ["stop", "--timeout", "60", "engine"]
    after = (world.project / "docker-compose.yml").read_text()
    assert after == before.replace("engine:2.3.0  # pinned", "engine:2.3.1  # pinned")
    assert result["diff"]["before"] == "    image: engine:2.3.0  # pinned\n"
    state_file = world.project / ".september-engine.json"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    record = json.loads(state_file.read_text())["services"]["engine"]
    assert (record["image"], record["previous_image"], record["history"][-1]["result"]) == (
        "engine:2.3.1", "engine:2.3.0", "ok")
    world.calls.clear()
    again = run({"project_src": src, "version": "2.3.1"})
    assert again["changed"] is False and again["compose"]["actions"] == []
    assert again["compose"]["previous_image"] == "engine:2.3.0"
    assert world.subcommands() == []


def test_check_mode_changes_nothing(world):
    src = str(world.project)
    files = {p: p.read_bytes() for p in world.project.iterdir()}
    result = run({"project_src": src, "version": "2.3.1", "_ansible_check_mode": True, "_ansible_diff": True})
    assert result["changed"] is True and result["compose"]["actions"] == ["drain", "edit", "up"]
    assert result["diff"]["after"] == "    image: engine:2.3.1  # pinned\n"
    assert {p: p.read_bytes() for p in world.project.iterdir()} == files
    assert world.subcommands() == [] and world.image == "engine:2.3.0"


def test_tag_in_env_file(world):
    (world.project / "docker-compose.yml").write_text("services:\n  engine:\n    image: engine:${ENGINE_TAG}\n")
    (world.project / ".env").write_text(f"{KEY}\nENGINE_TAG=2.3.0\n")
    result = run({"project_src": str(world.project), "version": "2.3.1", "_ansible_diff": True})
    assert result["compose"]["tag_location"]["location"] == "env"
    assert (world.project / ".env").read_text() == f"{KEY}\nENGINE_TAG=2.3.1\n"
    assert stat.S_IMODE((world.project / ".env").stat().st_mode) == 0o600
    assert "never-show-this-key" not in json.dumps(result)
    up = next(c for c in world.calls if c[0][0] == "up")
    assert up[1]["ENGINE_TAG"] == "2.3.1"  # the env file's value, whatever the environment says
    assert world.image == "engine:2.3.1"


def test_failed_up_puts_the_previous_tag_back(world):
    world.fail_next_up = 1
    (world.project / "docker-compose.yml").write_text("services:\n  engine:\n    image: engine:2.3.0\n")
    before = (world.project / "docker-compose.yml").read_bytes()
    IMAGES["engine:9.9.9"] = "sha256:999"
    try:
        result = run({"project_src": str(world.project), "version": "9.9.9"}, expect=FailJson)
    finally:
        del IMAGES["engine:9.9.9"]
    assert "Switching service 'engine' to engine:9.9.9 failed" in result["msg"]
    assert "pull access denied" in result["msg"] and "started it again" in result["msg"]
    assert result["changed"] is True
    assert (world.project / "docker-compose.yml").read_bytes() == before
    assert world.subcommands() == ["stop", "up", "up"] and world.image == "engine:2.3.0"
    record = json.loads((world.project / ".september-engine.json").read_text())["services"]["engine"]
    assert (record["image"], record["previous_image"], record["rolled_back_from"]) == (
        "engine:2.3.0", "engine:2.3.0", "engine:9.9.9")


def test_missing_image_fails_before_anything_stops(world):
    result = run({"project_src": str(world.project), "version": "9.9.9"}, expect=FailJson)
    assert "not on this Docker host and pull=never" in result["msg"]
    assert world.subcommands() == [] and not (world.project / ".september-engine.json").exists()


def test_rolled_back(world):
    src = str(world.project)
    result = run({"project_src": src, "state": "rolled_back"}, expect=FailJson)
    assert "No previous image" in result["msg"]
    run({"project_src": src, "version": "2.3.1"})
    back = run({"project_src": src, "state": "rolled_back"})
    assert back["changed"] is True and back["compose"]["image"] == "engine:2.3.0"
    assert back["compose"]["previous_image"] == "engine:2.3.1"
    again = run({"project_src": src, "state": "rolled_back"})
    assert again["changed"] is False and world.image == "engine:2.3.0"


def test_stopped_and_started(world):
    src = str(world.project)
    assert run({"project_src": src, "state": "stopped", "stop_timeout": 5})["changed"] is True
    assert world.status == "exited"
    assert run({"project_src": src, "state": "stopped"})["changed"] is False
    assert run({"project_src": src, "state": "started", "_ansible_check_mode": True})["changed"] is True
    assert world.status == "exited"
    assert run({"project_src": src, "state": "started"})["changed"] is True
    assert run({"project_src": src, "state": "started"})["changed"] is False
    assert world.subcommands() == ["stop", "start"]


def test_v2_is_detected_and_never_pulls(world):
    world.generation = "v2"
    result = run({"project_src": str(world.project), "version": "2.3.1"})
    assert result["compose"]["compose_command"] == ["/usr/bin/docker", "compose"]
    assert result["compose"]["compose_version"] == "v2"
    up = next(c[0] for c in world.calls if c[0][0] == "up")
    assert up == ["up", "-d", "--no-deps", "--no-build", "--pull", "never", "engine"]


def test_bad_options(world):
    assert "missing: version, image" in run({"project_src": str(world.project)}, expect=FailJson)["msg"]
    result = run({"project_src": str(world.project), "image": "other/engine:2.3.1"}, expect=FailJson)
    assert "allow_repository_change" in result["msg"]
    result = run({"project_src": str(world.project / "nope"), "version": "2.3.1"}, expect=FailJson)
    assert "is not a directory" in result["msg"]
