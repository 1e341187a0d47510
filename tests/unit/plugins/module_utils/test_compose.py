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
