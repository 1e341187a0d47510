# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The engine_compose module as a whole, against a scripted Compose and a fake Docker client.

The fake Compose reads the project like Compose does (the ``-f`` files merged, the env file interpolated, the
service's ``profiles``), labels its container as v1 and v2 do, and mounts what the files say at /data, so that
the tests can tell which files a command was run with. The real thing (v1 and v2) runs in tests/system.
"""

from __future__ import annotations

import json
import os
import stat
import uuid

import pytest
import yaml
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from docker.errors import APIError, ImageNotFound, NotFound

from ansible_collections.september.engine.plugins.module_utils import _compose_file as cf
from ansible_collections.september.engine.plugins.modules import engine_compose
from engine_testkit.module_runner import ExitJson, FailJson

KEY = "ENGINE_API_KEY=never-show-this-key"
BASE = (
    "# the Engine\nservices:\n  engine:\n    image: engine:2.3.0  # pinned\n    env_file: .env\n"
    "    volumes:\n      - engine_data:/data\nvolumes:\n  engine_data:\n"
)


class FakeContainer:
    def __init__(self, world, cid):
        self.world = world
        self.id = cid

    @property
    def rec(self):
        return self.world.containers[self.id]

    @property
    def name(self):
        return self.rec["name"]

    @property
    def status(self):
        return self.rec["status"]

    @property
    def labels(self):
        return dict(self.rec["labels"])

    @property
    def attrs(self):
        return {
            "Config": {"Image": self.rec["image"], "Labels": self.labels},
            "Image": self.rec["image_id"],
            "Mounts": [dict(m) for m in self.rec["mounts"]],
            "State": {"Running": self.status == "running"},
        }

    def reload(self):
        pass

    def start(self):
        self.world.sdk_calls.append("start")
        self.rec["status"] = "running"

    def unpause(self):
        self.world.sdk_calls.append("unpause")
        self.rec["status"] = "running"


class FakeClient:
    def __init__(self, world):
        self.world = world
        self.containers = self
        self.images = FakeImages(world)
        self.api = self

    def get(self, cid):
        if cid not in self.world.containers:
            raise NotFound(cid)
        return FakeContainer(self.world, cid)

    def list(self, filters=None, **_kwargs):
        wanted = dict(item.split("=", 1) for item in (filters or {}).get("label", []))
        return [
            FakeContainer(self.world, cid)
            for cid, rec in self.world.containers.items()
            if all(rec["labels"].get(k) == v for k, v in wanted.items())
        ]

    def tag(self, image, repository, tag=None, force=False):
        self.world.sdk_calls.append(("tag", image, f"{repository}:{tag}", force))
        self.world.images[f"{repository}:{tag}"] = image


class FakeImages:
    def __init__(self, world):
        self.world = world

    def get(self, ref):
        if ref in self.world.images:
            return type("Image", (), {"id": self.world.images[ref]})()
        if ref in self.world.images.values() or ref in self.world.untagged:
            return type("Image", (), {"id": ref})()
        raise ImageNotFound(ref)


def parse_argv(argv):
    """(global options, sub-command and its arguments) of a Compose command line."""
    opts = {"files": [], "profiles": [], "project": None, "env_file": None, "dir": None}
    i = argv.index("--project-directory") if "--project-directory" in argv else len(argv)
    rest = argv[i:]
    while rest and rest[0] in ("--project-directory", "-f", "-p", "--env-file", "--profile"):
        flag, value, rest = rest[0], rest[1], rest[2:]
        if flag == "-f":
            opts["files"].append(value)
        elif flag == "--profile":
            opts["profiles"].append(value)
        else:
            opts[{"-p": "project", "--env-file": "env_file", "--project-directory": "dir"}[flag]] = value
    return opts, rest


class World:
    """A Compose v1 or v2 that keeps the service's container, and reads the project on ``up`` like Compose does."""

    def __init__(self, project, generation="v1"):
        self.project = project
        self.generation = generation
        self.containers: dict = {}
        self.images = {"engine:2.3.0": "sha256:230", "engine:2.3.1": "sha256:231"}
        self.untagged = {"sha256:230", "sha256:231"}  # images stay (by id) when their tag moves
        self.calls: list = []
        self.sdk_calls: list = []
        self.fail_next_up = 0
        self.fail_stop: tuple | None = None  # (message, whether the container is stopped all the same)

    # ------------------------------------------------------------------ the project as Compose reads it
    def merged(self, opts):
        files = opts["files"] or [str(self.project / "docker-compose.yml")]
        service, volumes = {}, {}
        for path in files:
            doc = yaml.safe_load(open(path, encoding="utf-8")) or {}
            svc = (doc.get("services") or {}).get("engine") or {}
            mounts = {v.split(":")[1]: v for v in service.get("volumes", [])}
            mounts.update({v.split(":")[1]: v for v in svc.get("volumes", [])})
            service.update(svc)
            service["volumes"] = list(mounts.values())
            volumes.update(doc.get("volumes") or {})
        env_path = opts["env_file"] or str(self.project / ".env")
        env_text = open(env_path, encoding="utf-8").read() if os.path.exists(env_path) else None
        texts = [(p, open(p, encoding="utf-8").read()) for p in files]
        service["image"] = cf.locate_tag(texts, "engine", env_path, env_text, {}).image
        return files, service, volumes

    def name(self, opts):
        return opts["project"] or os.path.basename(str(self.project))

    def mounts(self, opts, service):
        out = []
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("/"):
                out.append({"Type": "bind", "Source": source, "Destination": target})
            else:
                name = f"{self.name(opts)}_{source}"
                out.append(
                    {
                        "Type": "volume",
                        "Name": name,
                        "Source": f"/var/lib/docker/volumes/{name}/_data",
                        "Destination": target,
                    }
                )
        return out

    def ids(self, opts):
        return [
            cid
            for cid, rec in self.containers.items()
            if rec["labels"]["com.docker.compose.project"] == self.name(opts)
        ]

    def skipped(self, opts):
        """A profile'd service that no --profile enables: Compose skips it (the defect the profiles fix)."""
        _files, service, _volumes = self.merged(opts)
        return bool(service.get("profiles")) and not set(service["profiles"]) & set(opts["profiles"])

    # ------------------------------------------------------------------ commands
    def run_command(self, argv, cwd=None, environ_update=None, **_kwargs):
        argv = list(argv)
        if argv[-1] == "version":
            if self.generation == "v2" and argv[:2] == ["/usr/bin/docker", "compose"]:
                return 0, "Docker Compose version v2.26.1\n", ""
            if self.generation == "v1" and argv[0] == "/usr/bin/docker-compose":
                return 0, "docker-compose version 1.29.2, build unknown\n", ""
            return 1, "", "not here"
        opts, sub = parse_argv(argv)
        self.calls.append((sub, opts, dict(environ_update or {})))
        handler = getattr(self, "do_" + sub[0])
        return handler(opts, sub)

    def do_ps(self, opts, _sub):
        return 0, "" if self.skipped(opts) else "".join(cid + "\n" for cid in self.ids(opts)), ""

    def do_stop(self, opts, _sub):
        if self.skipped(opts):
            return 0, "", ""
        if self.fail_stop is not None:
            message, stops = self.fail_stop[0], self.fail_stop[1]
            for cid in self.ids(opts):
                if stops:
                    self.containers[cid]["status"] = "exited"
            return 1, "", message
        for cid in self.ids(opts):
            self.containers[cid]["status"] = "exited"
        return 0, "", ""

    def do_start(self, opts, _sub):
        for cid in self.ids(opts):
            self.containers[cid]["status"] = "running"
        return 0, "", ""

    def do_config(self, opts, sub):
        _files, service, volumes = self.merged(opts)
        doc = {"services": {"engine": service}, "volumes": volumes}
        return 0, json.dumps(doc) if "--format" in sub else yaml.safe_dump(doc), ""

    def do_up(self, opts, _sub):
        if self.fail_next_up:
            self.fail_next_up -= 1
            return 1, "", "ERROR: pull access denied for engine, repository does not exist"
        files, service, _volumes = self.merged(opts)
        image = service["image"]
        if image not in self.images:
            return 1, "", f"ERROR: No such image: {image}"
        for cid in self.ids(opts):
            del self.containers[cid]
        labels = {
            "com.docker.compose.project": self.name(opts),
            "com.docker.compose.service": "engine",
            "com.docker.compose.oneoff": "False",
            "com.docker.compose.project.working_dir": opts["dir"],
            "com.docker.compose.project.config_files": ",".join(files),
        }
        if opts["env_file"]:
            labels["com.docker.compose.project.environment_file"] = opts["env_file"]
        sep = "-" if self.generation == "v2" else "_"
        self.containers[uuid.uuid4().hex * 2] = {
            "name": f"{self.name(opts)}{sep}engine{sep}1",
            "status": "running",
            "image": image,
            "image_id": self.images[image],
            "labels": labels,
            "mounts": self.mounts(opts, service),
        }
        return 0, "", ""

    def subcommands(self):
        return [c[0][0] for c in self.calls if c[0][0] not in ("ps", "config")]

    def only(self):
        recs = list(self.containers.values())
        assert len(recs) == 1, recs
        return recs[0]


@pytest.fixture
def world(tmp_path, monkeypatch):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "docker-compose.yml").write_text(BASE)
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
    w.up = lambda *files, project=None, env_file=None: w.do_up(
        {
            "files": [str(project_dir(w, f)) for f in files],
            "profiles": [],
            "project": project,
            "env_file": env_file,
            "dir": str(w.project),
        },
        ["up"],
    )
    w.up()  # the project as its owner brought it up (v1 labels: the files Compose found itself)
    return w


def project_dir(w, name):
    return w.project / name


@pytest.fixture
def warnings(monkeypatch):
    seen = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, msg: seen.append(msg))
    return seen


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
    assert c["previous_image_id"] == "sha256:230"
    assert c["actions"] == ["drain", "edit", "up"] and c["tag_location"]["location"] == "file"
    assert c["brain"]["key"] == "volume:proj_engine_data" and c["project"] == "proj"
    assert c["config_sources"] == {"files": "container", "project": "container", "env_file": "default"}
    assert world.subcommands() == ["stop", "up"]
    assert world.calls[-2][0] == ["stop", "--timeout", "60", "engine"]
    after = (world.project / "docker-compose.yml").read_text()
    assert after == before.replace("engine:2.3.0  # pinned", "engine:2.3.1  # pinned")
    assert result["diff"]["before"] == "    image: engine:2.3.0  # pinned\n"
    state_file = world.project / ".september-engine.json"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    record = json.loads(state_file.read_text())["services"]["engine"]
    assert (record["image"], record["previous_image"], record["history"][-1]["result"]) == (
        "engine:2.3.1",
        "engine:2.3.0",
        "ok",
    )
    assert (record["image_id"], record["previous_image_id"]) == ("sha256:231", "sha256:230")
    assert record["project"]["files"] == [str(world.project / "docker-compose.yml")]
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
    assert world.subcommands() == [] and world.only()["image"] == "engine:2.3.0"


def test_tag_in_env_file(world):
    (world.project / "docker-compose.yml").write_text(BASE.replace("engine:2.3.0  # pinned", "engine:${ENGINE_TAG}"))
    (world.project / ".env").write_text(f"{KEY}\nENGINE_TAG=2.3.0\n")
    result = run({"project_src": str(world.project), "version": "2.3.1", "_ansible_diff": True})
    assert result["compose"]["tag_location"]["location"] == "env"
    assert (world.project / ".env").read_text() == f"{KEY}\nENGINE_TAG=2.3.1\n"
    assert stat.S_IMODE((world.project / ".env").stat().st_mode) == 0o600
    assert "never-show-this-key" not in json.dumps(result)
    up = next(c for c in world.calls if c[0][0] == "up")
    assert up[2]["ENGINE_TAG"] == "2.3.1"  # the env file's value, whatever the environment says
    assert world.only()["image"] == "engine:2.3.1"


ANCHORED_CRLF = (
    '# the Engine\r\nx-engine: &engine\r\n  image: "engine:2.3.0"  #\tpinned\r\n  env_file: .env\r\n'
    "services:\r\n  engine:\r\n    <<: *engine\r\n    volumes: [engine_data:/data]\r\nvolumes:\r\n"
    "  engine_data: {}\r\n"
)


def test_an_anchored_quoted_crlf_file_changes_in_its_one_value(world):
    path = world.project / "docker-compose.yml"
    path.write_bytes(ANCHORED_CRLF.encode())
    result = run({"project_src": str(world.project), "version": "2.3.1", "_ansible_diff": True})
    assert result["compose"]["tag_location"] == {
        "location": "file",
        "path": str(path),
        "compose_file": str(path),
        "line": 3,
        "raw": "engine:2.3.1",
        "variable": None,
        "whole_ref": False,
        "anchor": "engine",
    }
    assert path.read_bytes() == ANCHORED_CRLF.replace('"engine:2.3.0"', '"engine:2.3.1"').encode()
    assert result["diff"]["after"] == '  image: "engine:2.3.1"  #\tpinned\n'
    assert world.only()["image"] == "engine:2.3.1"
    assert run({"project_src": str(world.project), "version": "2.3.1"})["changed"] is False


def test_a_default_in_the_file_is_edited_when_the_variable_is_set_nowhere(world):
    path = world.project / "docker-compose.yml"
    path.write_text(BASE.replace("engine:2.3.0  # pinned", "engine:${ENGINE_TAG:-2.3.0}  # pinned"))
    env_before = (world.project / ".env").read_bytes()
    result = run({"project_src": str(world.project), "version": "2.3.1"})
    assert result["compose"]["tag_location"]["location"] == "file"
    assert result["compose"]["tag_location"]["variable"] == "ENGINE_TAG"
    assert path.read_text() == BASE.replace("engine:2.3.0  # pinned", "engine:${ENGINE_TAG:-2.3.1}  # pinned")
    assert (world.project / ".env").read_bytes() == env_before
    up = next(c for c in world.calls if c[0][0] == "up")
    assert "ENGINE_TAG" not in up[2] and world.only()["image"] == "engine:2.3.1"


def test_an_image_shared_with_another_service_is_refused_before_anything_stops(world):
    path = world.project / "docker-compose.yml"
    shared = BASE.replace(
        "  engine:\n    image: engine:2.3.0  # pinned\n", "  engine:\n    image: &img engine:2.3.0  # pinned\n"
    )
    shared = shared.replace("volumes:\n  engine_data:\n", "  worker:\n    image: *img\nvolumes:\n  engine_data:\n")
    path.write_text(shared)
    result = run({"project_src": str(world.project), "version": "2.3.1"}, expect=FailJson)
    assert "which service(s) worker use too: editing it would switch them as well" in result["msg"]
    assert path.read_text() == shared and world.subcommands() == [] and world.only()["status"] == "running"


def test_without_pyyaml_it_fails_the_standard_way_before_anything_stops(world, monkeypatch):
    monkeypatch.setattr(cf, "HAS_YAML", False)
    result = run({"project_src": str(world.project), "version": "2.3.1"}, expect=FailJson)
    assert result["msg"].startswith("Failed to import the required Python library (PyYAML)")
    assert world.calls == [] and world.only()["status"] == "running"


def test_failed_up_puts_the_previous_tag_back(world):
    world.fail_next_up = 1
    before = (world.project / "docker-compose.yml").read_bytes()
    world.images["engine:9.9.9"] = "sha256:999"
    result = run({"project_src": str(world.project), "version": "9.9.9"}, expect=FailJson)
    assert "Switching service 'engine' to engine:9.9.9 failed" in result["msg"]
    assert "pull access denied" in result["msg"] and "started it again" in result["msg"]
    assert result["changed"] is True
    assert (world.project / "docker-compose.yml").read_bytes() == before
    assert world.subcommands() == ["stop", "up", "up"] and world.only()["image"] == "engine:2.3.0"
    assert world.only()["status"] == "running"
    record = json.loads((world.project / ".september-engine.json").read_text())["services"]["engine"]
    assert (record["image"], record["previous_image"], record["rolled_back_from"]) == (
        "engine:2.3.0",
        "engine:2.3.0",
        "engine:9.9.9",
    )


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
    assert again["changed"] is False and world.only()["image"] == "engine:2.3.0"


def test_stopped_and_started(world):
    src = str(world.project)
    assert run({"project_src": src, "state": "stopped", "stop_timeout": 5})["changed"] is True
    assert world.only()["status"] == "exited"
    assert run({"project_src": src, "state": "stopped"})["changed"] is False
    assert run({"project_src": src, "state": "started", "_ansible_check_mode": True})["changed"] is True
    assert world.only()["status"] == "exited"
    assert run({"project_src": src, "state": "started"})["changed"] is True
    assert run({"project_src": src, "state": "started"})["changed"] is False
    assert world.subcommands() == ["stop", "start"]
    world.only()["status"] = "paused"
    result = run({"project_src": src, "state": "started"})
    assert result["changed"] is True and result["compose"]["actions"] == ["unpause"]
    assert world.sdk_calls == ["unpause"] and world.only()["status"] == "running"


def test_v2_is_detected_and_never_pulls(world):
    world.generation = "v2"
    result = run({"project_src": str(world.project), "version": "2.3.1"})
    assert result["compose"]["compose_command"] == ["/usr/bin/docker", "compose"]
    assert result["compose"]["compose_version"] == "v2"
    up = next(c[0] for c in world.calls if c[0][0] == "up")
    assert up == ["up", "-d", "--no-deps", "--no-build", "--pull", "never", "engine"]
    # v2 is asked for the project as JSON before anything stops (the brain check)
    assert [c[0] for c in world.calls][:2] == [["config", "--format", "json"], ["stop", "--timeout", "60", "engine"]]


def test_bad_options(world):
    assert "missing: version, image" in run({"project_src": str(world.project)}, expect=FailJson)["msg"]
    result = run({"project_src": str(world.project), "image": "other/engine:2.3.1"}, expect=FailJson)
    assert "allow_repository_change" in result["msg"]
    result = run({"project_src": str(world.project / "nope"), "version": "2.3.1"}, expect=FailJson)
    assert "is not a directory" in result["msg"]
    result = run({"project_src": str(world.project), "version": "2.3.1", "compose_file": ["nope.yml"]}, expect=FailJson)
    assert "nope.yml does not exist" in result["msg"]


# --------------------------------------------------------------------------- the files the container came from


OVERRIDE = "services:\n  engine:\n    volumes:\n      - {brain}:/data\n"


def with_override(world, tmp_path, name="docker-compose.brain.yml", tag_here=False):
    brain = tmp_path / "brain"
    brain.mkdir(exist_ok=True)
    text = OVERRIDE.format(brain=brain)
    if tag_here:
        text = text.replace("    volumes:", "    image: engine:2.3.0\n    volumes:")
    (world.project / name).write_text(text)
    world.containers.clear()
    world.up("docker-compose.yml", name, project="eng")
    return brain


@pytest.mark.parametrize("generation", ["v1", "v2"])
def test_an_override_that_mounts_the_brain_is_kept(world, tmp_path, generation):
    world.generation = generation
    brain = with_override(world, tmp_path)
    result = run({"project_src": str(world.project), "version": "2.3.1"})
    c = result["compose"]
    assert c["compose_files"] == [
        str(world.project / "docker-compose.yml"),
        str(world.project / "docker-compose.brain.yml"),
    ]
    assert c["project"] == "eng" and c["brain"]["key"] == f"bind:{brain}"
    for sub, opts, _env in world.calls:
        assert opts["files"] == c["compose_files"] and opts["project"] == "eng", sub
    assert world.only()["mounts"][0]["Source"] == str(brain) and world.only()["image"] == "engine:2.3.1"
    record = json.loads((world.project / ".september-engine.json").read_text())["services"]["engine"]
    assert record["project"]["files"] == c["compose_files"]


def test_the_tag_is_edited_in_the_override_that_sets_it(world, tmp_path):
    with_override(world, tmp_path, tag_here=True)
    base = (world.project / "docker-compose.yml").read_bytes()
    result = run({"project_src": str(world.project), "version": "2.3.1"})
    assert result["compose"]["tag_location"]["path"] == str(world.project / "docker-compose.brain.yml")
    assert (world.project / "docker-compose.yml").read_bytes() == base
    assert "image: engine:2.3.1" in (world.project / "docker-compose.brain.yml").read_text()
    assert world.only()["image"] == "engine:2.3.1"


def test_compose_file_in_the_env_file(world, tmp_path):
    brain = tmp_path / "brain"
    brain.mkdir()
    (world.project / "brain.yml").write_text(OVERRIDE.format(brain=brain))
    (world.project / ".env").write_text(f"{KEY}\nCOMPOSE_FILE=docker-compose.yml:brain.yml\nCOMPOSE_PROJECT_NAME=eng\n")
    world.containers.clear()  # no container yet: the env file says how the project is run
    result = run({"project_src": str(world.project), "version": "2.3.1"})
    c = result["compose"]
    assert c["config_sources"]["files"] == "env_file" and c["config_sources"]["project"] == "env_file"
    assert c["compose_files"][-1] == str(world.project / "brain.yml") and c["project"] == "eng"
    assert world.only()["mounts"][0]["Source"] == str(brain)
    # from now on the container's labels say the same
    again = run({"project_src": str(world.project), "version": "2.3.1"})
    assert again["changed"] is False and again["compose"]["config_sources"]["files"] == "container"


def switch_without_the_override(world):
    """Switch to 2.3.1 with the inventory's files, docker-compose.yml alone (not the override that mounts the brain):
    the module fails, and what it failed with is returned."""
    args = {"project_src": str(world.project), "version": "2.3.1", "compose_file": ["docker-compose.yml"],
            "project_name": "eng"}
    return run(args, expect=FailJson)


@pytest.mark.parametrize("generation", ["v1", "v2"])
def test_inventory_files_that_drop_the_brain_are_refused_before_anything_stops(world, tmp_path, warnings, generation):
    world.generation = generation  # v2 answers `config` in JSON, v1 in YAML
    brain = with_override(world, tmp_path)
    running = world.only()
    result = switch_without_the_override(world)
    assert "Refusing to switch service 'engine'" in result["msg"] and "Nothing was stopped" in result["msg"]
    assert result["brain"] == {"running": f"bind:{brain}", "planned": "volume:eng_engine_data"}
    assert world.subcommands() == [] and world.only() is running and running["status"] == "running"
    assert any("compose_file names" in w for w in warnings)


def config_fails(world, monkeypatch):
    """Compose cannot say what the project would mount (its `config` fails): no check before, only after."""
    monkeypatch.setattr(world, "do_config", lambda _opts, _sub: (1, "", "ERROR: cannot read the project"))


def test_a_switch_that_came_back_on_another_brain_is_undone(world, tmp_path, monkeypatch):
    config_fails(world, monkeypatch)
    brain = with_override(world, tmp_path)
    result = switch_without_the_override(world)
    assert "came back on another brain" in result["msg"] and "volume:eng_engine_data" in result["msg"]
    assert "started it again" in result["msg"]
    c = world.only()
    assert c["status"] == "running" and c["image"] == "engine:2.3.0"
    assert c["mounts"][0]["Source"] == str(brain)  # put back from the files it was created from
    assert "engine:2.3.0" in (world.project / "docker-compose.yml").read_text()
    record = json.loads((world.project / ".september-engine.json").read_text())["services"]["engine"]
    assert record["history"][-1]["result"] == "brain changed, previous setting restored"


def test_a_put_back_that_still_mounts_another_brain_is_stopped(world, tmp_path, monkeypatch):
    config_fails(world, monkeypatch)
    with_override(world, tmp_path)
    (world.project / "docker-compose.brain.yml").write_text("services:\n  engine:\n    restart: always\n")
    result = run({"project_src": str(world.project), "version": "2.3.1"}, expect=FailJson)
    assert "STOPPED so that it does not serve another brain" in result["msg"]
    assert world.only()["status"] == "exited"


@pytest.mark.parametrize("generation", ["v1", "v2"])
def test_profiles_are_passed_so_no_command_skips_the_service(world, generation):
    world.generation = generation
    (world.project / "docker-compose.yml").write_text(
        BASE.replace("    env_file: .env\n", "    env_file: .env\n    profiles: [engine]\n")
    )
    result = run({"project_src": str(world.project), "version": "2.3.1"})
    assert result["compose"]["profiles"] == ["engine"] and result["compose"]["actions"] == ["drain", "edit", "up"]
    assert all(opts["profiles"] == ["engine"] for _sub, opts, _env in world.calls)
    assert world.only()["image"] == "engine:2.3.1"
    assert run({"project_src": str(world.project), "state": "stopped"})["changed"] is True
    assert world.only()["status"] == "exited"


def test_two_projects_in_one_folder_must_be_named(world):
    world.up(project="other")
    result = run({"project_src": str(world.project), "version": "2.3.1"})  # "proj", the folder's own name, wins
    assert result["compose"]["project"] == "proj"
    world.up(project="third")
    for cid, rec in list(world.containers.items()):
        if rec["labels"]["com.docker.compose.project"] == "proj":
            del world.containers[cid]
    result = run({"project_src": str(world.project), "version": "2.3.1"}, expect=FailJson)
    assert "several Compose projects" in result["msg"] and "project_name" in result["msg"]
    third = run({"project_src": str(world.project), "version": "2.3.0", "project_name": "third"})
    assert third["changed"] is True and third["compose"]["project"] == "third"
    assert third["compose"]["container"]["image"] == "engine:2.3.0"


# --------------------------------------------------------------------------- the exact image, and never stopped


def test_rolled_back_goes_to_the_recorded_id_after_the_tag_moved(world, warnings):
    src = str(world.project)
    run({"project_src": src, "version": "2.3.1"})
    world.images["engine:2.3.0"] = "sha256:rebuilt"  # a CI re-pushed 2.3.0
    back = run({"project_src": src, "state": "rolled_back"})
    assert back["changed"] is True and back["compose"]["actions"] == ["drain", "retag", "edit", "up"]
    assert ("tag", "sha256:230", "engine:2.3.0", True) in world.sdk_calls
    assert world.only()["image_id"] == "sha256:230"
    assert any("not at the image recorded before the switch" in w for w in warnings)
    assert run({"project_src": src, "state": "rolled_back"})["changed"] is False


def test_the_recorded_version_label_never_makes_a_reference(world):
    """A v-prefixed version label (v2.3.0) on a 2.3.0 tag: the rollback goes to the recorded reference."""
    src = str(world.project)
    run({"project_src": src, "version": "2.3.1"})
    back = run({"project_src": src, "state": "rolled_back"})
    assert back["compose"]["image"] == "engine:2.3.0"
    assert not any("v2.3.0" in " ".join(c[0]) for c in world.calls)


@pytest.mark.parametrize("stops", [True, False])
def test_a_failing_drain_starts_the_engine_again(world, stops):
    world.fail_stop = ("Error response from daemon: container is not running", stops)
    before = (world.project / "docker-compose.yml").read_bytes()
    result = run({"project_src": str(world.project), "version": "2.3.1"}, expect=FailJson)
    assert "Draining service 'engine'" in result["msg"] and "started it again" in result["msg"]
    assert world.only()["status"] == "running" and world.only()["image"] == "engine:2.3.0"
    assert (world.project / "docker-compose.yml").read_bytes() == before
    assert world.sdk_calls == (["start"] if stops else [])
    record = json.loads((world.project / ".september-engine.json").read_text())["services"]["engine"]
    assert record["history"][-1]["result"] == "drain failed, no change" and record["image"] == "engine:2.3.0"


def test_a_stopped_service_on_the_target_is_started(world):
    world.only()["status"] = "exited"
    result = run({"project_src": str(world.project), "version": "2.3.0"})
    assert result["changed"] is True and result["compose"]["actions"] == ["up"]
    assert world.only()["status"] == "running"


def test_a_docker_error_while_re_tagging_is_undone(world, monkeypatch):
    run({"project_src": str(world.project), "version": "2.3.1"})
    world.images["engine:2.3.0"] = "sha256:rebuilt"

    def refuse(*_args, **_kwargs):
        raise APIError("tag", explanation="no space left on device")

    monkeypatch.setattr(FakeClient, "tag", refuse)
    result = run({"project_src": str(world.project), "state": "rolled_back"}, expect=FailJson)
    assert "no space left on device" in result["msg"] and "started it again" in result["msg"]
    assert world.only()["status"] == "running" and world.only()["image"] == "engine:2.3.1"


def test_finalized_marks_the_last_switch_verified_once(world):
    src = str(world.project)
    run({"project_src": src, "version": "2.3.1"})
    state_file = world.project / ".september-engine.json"
    last = json.loads(state_file.read_text())["services"]["engine"]["history"][-1]
    assert (last["result"], last["verified"]) == ("ok", False)  # a re-run would verify this switch again
    world.calls.clear()
    checked = run({"project_src": src, "state": "finalized", "_ansible_check_mode": True})
    assert checked["changed"] is True
    assert json.loads(state_file.read_text())["services"]["engine"]["history"][-1]["verified"] is False
    done = run({"project_src": src, "state": "finalized"})
    assert done["changed"] is True and done["compose"]["actions"] == ["mark the switch verified"]
    last = json.loads(state_file.read_text())["services"]["engine"]["history"][-1]
    assert last["verified"] is True and last["verified_at"]
    assert world.subcommands() == []  # nothing stopped, started or pulled
    assert run({"project_src": src, "state": "finalized"})["changed"] is False


def left_in_progress(world, running: str) -> dict:
    """A switch 2.3.0 -> 2.3.1 whose record says "in progress" (the run died, or could not write its end), while
    the service runs ``running``; returns the record."""
    run({"project_src": str(world.project), "version": "2.3.1"})
    state_file = world.project / ".september-engine.json"
    data = json.loads(state_file.read_text())
    data["services"]["engine"]["history"][-1]["result"] = "in progress"
    state_file.write_text(json.dumps(data))
    if running == "engine:2.3.0":  # the switch put the old setting back
        (world.project / "docker-compose.yml").write_text(BASE)
    world.images.setdefault(running, "sha256:" + running.rsplit(":", 1)[1].replace(".", ""))
    world.only().update(image=running, image_id=world.images[running])
    world.calls.clear()
    return data["services"]["engine"]


def record_of(world) -> dict:
    return json.loads((world.project / ".september-engine.json").read_text())["services"]["engine"]


def test_finalized_refuses_a_switch_that_never_ended(world):
    left_in_progress(world, "engine:9.9.9")  # it runs neither end of the switch: nobody can tell what happened
    failed = run({"project_src": str(world.project), "state": "finalized"}, expect=FailJson)
    assert "did not end (in progress)" in failed["msg"]


def test_finalized_settles_a_switch_left_in_progress_by_what_runs(world):
    left_in_progress(world, "engine:2.3.1")  # the switch happened, its end was never written
    done = run({"project_src": str(world.project), "state": "finalized"})
    assert done["changed"] is True and world.subcommands() == []
    last = record_of(world)["history"][-1]
    assert (last["result"], last["verified"]) == ("ok", True) and last["settled_at"]


def test_a_switch_left_in_progress_on_the_old_release_is_settled_as_rolled_back(world):
    """The disk filled up: the switch put 2.3.0 back but could not say so; going back to 2.3.0 settles it."""
    left_in_progress(world, "engine:2.3.0")
    checked = run(
        {
            "project_src": str(world.project),
            "image": "engine:2.3.0",
            "state": "rolled_back",
            "_ansible_check_mode": True,
        }
    )
    assert checked["changed"] is True and record_of(world)["history"][-1]["result"] == "in progress"
    back = run({"project_src": str(world.project), "image": "engine:2.3.0", "state": "rolled_back"})
    assert back["changed"] is True and world.subcommands() == []  # nothing stopped: it already runs 2.3.0
    assert back["compose"]["actions"] == ["settle the unfinished switch's record (rolled back)"]
    record = record_of(world)
    assert (record["history"][-1]["result"], record["history"][-1]["verified"]) == ("rolled back", True)
    assert (record["image"], record["image_id"], record["rolled_back_from"]) == (
        "engine:2.3.0",
        "sha256:230",
        "engine:2.3.1",
    )
    again = run({"project_src": str(world.project), "image": "engine:2.3.0", "state": "rolled_back"})
    assert again["changed"] is False
    assert run({"project_src": str(world.project), "state": "finalized"})["changed"] is False


def test_a_rollback_is_settled_once_finalized(world):
    src = str(world.project)
    run({"project_src": src, "version": "2.3.1"})
    run({"project_src": src, "state": "rolled_back"})
    last = record_of(world)["history"][-1]
    assert (last["action"], last["result"], last["verified"]) == ("rolled_back", "ok", False)
    assert run({"project_src": src, "state": "finalized"})["changed"] is True
    assert record_of(world)["history"][-1]["verified"] is True
