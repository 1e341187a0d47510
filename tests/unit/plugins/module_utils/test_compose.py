# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""module_utils/_compose.py: Compose detection (v1/v2), the command lines, files and the switch record."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.september.engine.plugins.module_utils import _compose
from ansible_collections.september.engine.plugins.module_utils._errors import ComposeError, ComposeFileError

V2_OUT = "Docker Compose version v2.24.6\n"
V2_OLD_OUT = "Docker Compose version v2.2.3\n"
V1_OUT = "docker-compose version 1.29.2, build unknown\ndocker-py version: 5.0.3\n"


class FakeModule:
    """get_bin_path and run_command of an AnsibleModule, scripted by command line."""

    def __init__(self, binaries, answers):
        self.binaries = binaries
        self.answers = answers  # tuple(argv) -> (rc, out, err)
        self.calls = []

    def get_bin_path(self, name):
        return self.binaries.get(name)

    def run_command(self, argv, cwd=None, environ_update=None):
        self.calls.append((list(argv), cwd, dict(environ_update or {})))
        return self.answers.get(tuple(argv), (0, "", ""))


@pytest.mark.parametrize(
    ("binaries", "answers", "choice", "argv", "generation"),
    [
        # v2 plugin present: auto takes it
        ({"docker": "/usr/bin/docker", "docker-compose": "/usr/bin/docker-compose"},
         {("/usr/bin/docker", "compose", "version"): (0, V2_OUT, "")}, "auto", ["/usr/bin/docker", "compose"], "v2"),
        # docker without the plugin: falls back to v1
        ({"docker": "/usr/bin/docker", "docker-compose": "/usr/bin/docker-compose"},
         {("/usr/bin/docker", "compose", "version"): (1, "", "docker: 'compose' is not a docker command."),
          ("/usr/bin/docker-compose", "version"): (0, V1_OUT, "")}, "auto", ["/usr/bin/docker-compose"], "v1"),
        # no docker CLI at all (v1 is standalone)
        ({"docker-compose": "/usr/bin/docker-compose"}, {("/usr/bin/docker-compose", "version"): (0, V1_OUT, "")},
         "auto", ["/usr/bin/docker-compose"], "v1"),
        # a standalone docker-compose that is v2
        ({"docker-compose": "/usr/local/bin/docker-compose"},
         {("/usr/local/bin/docker-compose", "version"): (0, V2_OUT, "")}, "auto", ["/usr/local/bin/docker-compose"],
         "v2"),
        # forced v1 although v2 works
        ({"docker": "/usr/bin/docker", "docker-compose": "/usr/bin/docker-compose"},
         {("/usr/bin/docker", "compose", "version"): (0, V2_OUT, ""),
          ("/usr/bin/docker-compose", "version"): (0, V1_OUT, "")},
         "docker-compose", ["/usr/bin/docker-compose"], "v1"),
    ],
)
def test_detect(binaries, answers, choice, argv, generation):
    cli = _compose.detect_compose(FakeModule(binaries, answers), choice)
    assert (cli.argv, cli.generation) == (argv, generation)


def test_detect_nothing_works():
    with pytest.raises(ComposeError, match="No Docker Compose found"):
        _compose.detect_compose(FakeModule({"docker": "/usr/bin/docker"}, {
            ("/usr/bin/docker", "compose", "version"): (1, "", "unknown command")}), "auto")
    with pytest.raises(ComposeError, match="compose_command is 'docker compose'"):
        _compose.detect_compose(FakeModule({}, {}), "docker compose")


def project(version_out, **kwargs):
    module = FakeModule({}, {})
    argv = ["/usr/bin/docker", "compose"] if "Docker Compose" in version_out else ["/usr/bin/docker-compose"]
    cli = _compose.ComposeCli(argv, version_out.splitlines()[0])
    return module, _compose.ComposeProject(module, cli, "/srv/engine", ["/srv/engine/docker-compose.yml"], **kwargs)


@pytest.mark.parametrize(
    ("version_out", "expected_up"),
    [
        (V1_OUT, ["up", "-d", "--no-deps", "--no-build", "engine"]),
        (V2_OLD_OUT, ["up", "-d", "--no-deps", "--no-build", "engine"]),
        (V2_OUT, ["up", "-d", "--no-deps", "--no-build", "--pull", "never", "engine"]),
    ],
)
def test_command_lines(version_out, expected_up):
    module, proj = project(version_out, project_name="eng1", env_file="/srv/engine/engine.env",
                           environ={"ENGINE_TAG": "2.3.1"})
    prefix = [*proj.cli.argv, "--project-directory", "/srv/engine", "-f", "/srv/engine/docker-compose.yml",
              "-p", "eng1", "--env-file", "/srv/engine/engine.env"]
    proj.up("engine")
    proj.stop("engine", 60)
    proj.start("engine")
    proj.container_ids("engine")
    argvs = [call[0] for call in module.calls]
    assert argvs == [
        [*prefix, *expected_up],
        [*prefix, "stop", "--timeout", "60", "engine"],
        [*prefix, "start", "engine"],
        [*prefix, "ps", "-a", "-q", "engine"],
    ]
    assert all(call[1] == "/srv/engine" and call[2] == {"ENGINE_TAG": "2.3.1"} for call in module.calls)


def test_minimal_command_line_and_errors():
    module, proj = project(V1_OUT)
    assert proj.argv("ps") == ["/usr/bin/docker-compose", "--project-directory", "/srv/engine",
                               "-f", "/srv/engine/docker-compose.yml", "ps"]
    module.answers[tuple(proj.argv("ps", "-a", "-q", "engine"))] = (0, "abc\n" + "a" * 64 + "\nWARNING: x\n", "")
    assert proj.container_ids("engine") == ["a" * 64]
    module.answers[tuple(proj.argv("stop", "--timeout", "5", "engine"))] = (1, "", "boom\nNo such service: engine")
    with pytest.raises(ComposeError, match="No such service"):
        proj.stop("engine", 5)


def test_write_atomic_keeps_mode_and_creates_0600(tmp_path):
    path = tmp_path / ".env"
    _compose.write_atomic(str(path), "A=1\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    os.chmod(path, 0o640)
    _compose.write_atomic(str(path), "A=2\r\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.read_bytes() == b"A=2\r\n"
    assert _compose.read_text(str(path)) == "A=2\r\n"
    assert sorted(os.listdir(tmp_path)) == [".env"]
    assert _compose.read_text(str(tmp_path / "missing")) is None


def test_state_record(tmp_path):
    path = tmp_path / "state.json"
    state = _compose.load_state(str(path))
    where = {"location": "file"}
    h = {"action": "present", "from": "engine:2.3.0", "to": "engine:2.3.1", "at": "t1", "result": "ok"}
    state = _compose.record(state, "engine", image="engine:2.3.1", previous_image="engine:2.3.0",
                            tag_location=where, history=h)
    entry = _compose.service_record(state, "engine")
    assert (entry["version"], entry["previous_version"], entry["switched_at"]) == ("2.3.1", "2.3.0", "t1")
    back = dict(h, action="rolled_back", to="engine:2.3.0", at="t2")
    state = _compose.record(state, "engine", image="engine:2.3.0", previous_image="engine:2.3.0",
                            tag_location=where, history=back, rolled_back_from="engine:2.3.1")
    entry = _compose.service_record(state, "engine")
    assert entry["rolled_back_from"] == "engine:2.3.1" and len(entry["history"]) == 2
    for i in range(60):
        state = _compose.record(state, "engine", image="engine:2.3.0", previous_image=None, tag_location=where,
                                history=dict(h, at=str(i)))
    assert len(_compose.service_record(state, "engine")["history"]) == _compose.HISTORY_LIMIT
    assert "rolled_back_from" not in _compose.service_record(state, "engine")
    path.write_text(_compose.dump_state(state))
    assert _compose.load_state(str(path)) == json.loads(path.read_text())
    path.write_text("{not json")
    with pytest.raises(ComposeFileError, match="not valid JSON"):
        _compose.load_state(str(path))
    path.write_text("[]")
    with pytest.raises(ComposeFileError, match="does not look like"):
        _compose.load_state(str(path))


# --------------------------------------------------------------------------- which project, from what


class Ctr:
    def __init__(self, name, labels, running=True, mounts=None):
        self.name, self.id = name, name * 4
        self.labels = labels
        self.attrs = {"State": {"Running": running}, "Mounts": mounts or []}


class Client:
    def __init__(self, containers):
        self.containers = self
        self.all = containers
        self.filters = []

    def list(self, filters=None, **_kwargs):
        self.filters.append(filters)
        wanted = dict(item.split("=", 1) for item in filters["label"])
        return [c for c in self.all if all(c.labels.get(k) == v for k, v in wanted.items())]


def labels(project, workdir, files=None, env_file=None, service="engine", oneoff="False"):
    out = {_compose.PROJECT_LABEL: project, _compose.SERVICE_LABEL: service, _compose.WORKDIR_LABEL: str(workdir),
           _compose.ONEOFF_LABEL: oneoff}
    if files:
        out[_compose.CONFIG_FILES_LABEL] = files
    if env_file:
        out[_compose.ENV_FILE_LABEL] = env_file
    return out


@pytest.fixture
def proj(tmp_path):
    src = tmp_path / "My Engine"
    src.mkdir()
    (src / "docker-compose.yml").write_text("services:\n  engine:\n    image: engine:2.3.0\n")
    (src / "brain.yml").write_text("services:\n  engine:\n    profiles: [engine, 'ops']\n    volumes: [/b:/data]\n")
    (src / "docker-compose.override.yml").write_text("services:\n  engine:\n    restart: always\n")
    return src


def test_resolve_config_defaults_env_file_labels_and_options(proj):
    warned = []
    config = _compose.resolve_config(str(proj), "engine")
    assert config.files == [str(proj / "docker-compose.yml"), str(proj / "docker-compose.override.yml")]
    assert (config.project, config.project_name, config.env_explicit) == (None, "myengine", False)
    assert config.sources == {"files": "default", "project": "default", "env_file": "default"}
    assert config.as_dict()["env_file"] is None  # no .env
    (proj / ".env").write_text("COMPOSE_FILE=docker-compose.yml;brain.yml\nCOMPOSE_PATH_SEPARATOR=;\n"
                               "COMPOSE_PROJECT_NAME=eng\n")
    config = _compose.resolve_config(str(proj), "engine")
    assert config.files == [str(proj / "docker-compose.yml"), str(proj / "brain.yml")]
    assert (config.project, config.profiles) == ("eng", ["engine", "ops"])
    assert config.sources == {"files": "env_file", "project": "env_file", "env_file": "default"}
    # v1 writes the names Compose found itself, relative to the working dir; the labels beat the env file
    from_labels = labels("eng1", proj, files="docker-compose.yml,docker-compose.override.yml",
                         env_file=str(proj / ".env"))
    config = _compose.resolve_config(str(proj), "engine", labels=from_labels, warn=warned.append)
    assert config.files[-1] == str(proj / "docker-compose.override.yml") and config.project == "eng1"
    assert config.env_explicit and config.sources == {"files": "container", "project": "container",
                                                      "env_file": "container"}
    assert "COMPOSE_FILE" in warned[-1]
    # the inventory's options beat both, with a warning when they differ from the container's
    config = _compose.resolve_config(str(proj), "engine", files=["brain.yml"], project_name="x",
                                     env_file="other.env", labels=from_labels, warn=warned.append)
    assert (config.files, config.project, config.env_path) == ([str(proj / "brain.yml")], "x", str(proj / "other.env"))
    assert "compose_file names" in warned[-1]
    with pytest.raises(_compose.NotFoundError, match=r"gone\.yml does not exist"):
        _compose.resolve_config(str(proj), "engine", labels=labels("e", proj, files=str(proj / "gone.yml")))


def test_find_service_container(proj, tmp_path):
    other = tmp_path / "other"
    v1 = Ctr("myengine_engine_1", labels("myengine", proj), running=False)
    v2 = Ctr("myengine-engine-1", labels("myengine", proj))
    oneoff = Ctr("myengine_engine_run_1", labels("myengine", proj, oneoff="True"))
    elsewhere = Ctr("other-engine-1", labels("other", other))
    worker = Ctr("myengine-worker-1", labels("myengine", proj, service="worker"))
    client = Client([v1, oneoff, elsewhere, worker, v2])
    assert _compose.find_service_container(client, str(proj), "engine") is v2  # running first
    assert _compose.find_service_container(client, str(other), "engine") is elsewhere
    assert _compose.find_service_container(client, str(tmp_path / "none"), "engine") is None
    # a named project is found even when its folder moved
    assert _compose.find_service_container(client, str(tmp_path / "moved"), "engine", "other") is elsewhere
    second = Ctr("b-engine-1", labels("b", proj))
    client.all.append(second)
    assert _compose.find_service_container(client, str(proj), "engine") is v2  # the folder's own name wins
    client.all[:] = [second, Ctr("c-engine-1", labels("c", proj))]
    with pytest.raises(ComposeError, match="several Compose projects"):
        _compose.find_service_container(client, str(proj), "engine")
    assert _compose.find_service_container(client, str(proj), "engine", "c").name == "c-engine-1"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        # v2 JSON: a named volume gets its name in the top-level volumes
        ({"services": {"engine": {"volumes": [{"type": "volume", "source": "engine_data", "target": "/data"}]}},
          "volumes": {"engine_data": {"name": "eng_engine_data"}}}, "volume:eng_engine_data"),
        # v1 YAML: short syntax, the project prefix added
        ({"services": {"engine": {"volumes": ["engine_data:/data:rw"]}}, "volumes": {"engine_data": {}}},
         "volume:eng_engine_data"),
        ({"services": {"engine": {"volumes": ["brain:/data"]}}, "volumes": {"brain": {"external": True}}},
         "volume:brain"),
        ({"services": {"engine": {"volumes": ["./brain:/data/"]}}}, "bind:/srv/eng/brain"),
        ({"services": {"engine": {"volumes": [{"type": "bind", "source": "/b", "target": "/data"}]}}}, "bind:/b"),
        ({"services": {"engine": {"volumes": ["logs:/logs"]}}}, None),
        ({"services": {"other": {}}}, None),
        ({"services": {"engine": {"volumes": [{"type": "tmpfs", "target": "/data"}]}}}, None),
    ],
)
def test_planned_brain(config, expected):
    planned = _compose.planned_brain(config, "engine", "eng", "/srv/eng")
    assert (planned or {}).get("key") == expected


def test_brain_of_and_same_brain(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    ctr = Ctr("e-engine-1", {}, mounts=[{"Type": "bind", "Source": str(tmp_path / "link"), "Destination": "/data/"}])
    brain = _compose.brain_of(ctr)
    assert brain["key"] == f"bind:{tmp_path / 'link'}"
    assert _compose.same_brain(brain, {"key": f"bind:{real}"})
    assert not _compose.same_brain(brain, {"key": "volume:x"}) and not _compose.same_brain(brain, None)
    assert _compose.brain_of(Ctr("x", {})) is None and _compose.same_brain(None, None)


def test_profiles_and_config_on_the_command_line():
    module, proj_ = project(V2_OUT, project_name="eng")
    proj_.profiles = ["engine"]
    module.answers[tuple(proj_.argv("config", "--format", "json"))] = (0, '{"services": {}}', "")
    assert proj_.config() == {"services": {}}
    assert module.calls[-1][0][-5:] == ["--profile", "engine", "config", "--format", "json"]
    module, proj_ = project(V1_OUT)
    module.answers[tuple(proj_.argv("config"))] = (0, "services:\n  engine: {}\n", "")
    assert proj_.config() == {"services": {"engine": {}}}
    module.answers[tuple(proj_.argv("config"))] = (1, "", "ERROR: no such file")
    assert proj_.config() is None
    module.answers[tuple(proj_.argv("config"))] = (0, "services: [unclosed\n", "")
    assert proj_.config() is None
    module.answers[tuple(proj_.argv("config"))] = (0, "- a list\n", "")
    assert proj_.config() is None
