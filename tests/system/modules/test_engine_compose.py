# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""engine_compose against real Compose projects of reference Engines, through real ansible-playbook.

Both Compose generations run for real: v2 (``docker compose``, the CLI plugin from Debian trixie's
``docker-compose`` package, what users get) and v1 (``docker-compose`` 1.29); ``tests/harness/bootstrap.sh``
installs both. A project is always made with the generation that then switches it.

Besides the testkit's single-file projects, projects are written here the way users write theirs: a base file
and an override that bind-mounts the brain from the host, ``COMPOSE_FILE`` and ``COMPOSE_PROJECT_NAME`` in
``.env``, a service with ``profiles``. Rows written before a switch must be in the brain after it. Fleets are
named ``cmp-<8 hex>`` and use host ports 9700-9799.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shutil
import stat
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import pytest
import yaml

from engine_testkit import LoadGenerator, compose, free_port, missing_acknowledged, sweep, wait_healthy
from engine_testkit.ansible import COLLECTIONS_PATH, ensure_collection_link, run_playbook
from engine_testkit.fleet import LABEL_ENGINE_ID, LABEL_FLEET, LABEL_MODEL, LABEL_TESTKIT, Engine, Fleet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docker_fault import STOP, DockerFaultProxy  # a helper beside the tests (importlib mode: not on the path)

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"
SWITCH = PLAYBOOKS / "engine_compose.yml"
ROLLBACK = PLAYBOOKS / "engine_compose_rollback.yml"
BAD_TAG = PLAYBOOKS / "engine_compose_bad_tag.yml"
PROJECT = PLAYBOOKS / "engine_compose_project.yml"
BASE_PORT, LAST_PORT = 9700, 9799
V2, V1 = compose.COMMANDS
GENERATION = {V2: "v2", V1: "v1"}


@pytest.fixture(scope="module", autouse=True)
def both_compose_generations() -> None:
    """v2 and v1 both work here (bootstrap installs them): fail, never skip, when one is missing."""
    missing = set(compose.COMMANDS) - set(compose.available_commands())
    if missing:
        pytest.fail(f"{', '.join(sorted(missing))} does not work here: run `make bootstrap`", pytrace=False)
    assert compose.generation(V2) == "v2" and compose.generation(V1) == "v1"


def module_utils(name: str):
    """A module_utils module of the collection, imported from build/ (where the compose files are read)."""
    ensure_collection_link()
    if str(COLLECTIONS_PATH) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS_PATH))
    return importlib.import_module(f"ansible_collections.september.engine.plugins.module_utils.{name}")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def changed_lines(before: bytes, after: bytes) -> list[tuple[str, str]]:
    """(old, new) of every line that differs; an appended line shows as ('', new)."""
    old, new = before.decode().splitlines(), after.decode().splitlines()
    old += [""] * (len(new) - len(old))
    return [(a, b) for a, b in zip(old, new, strict=False) if a != b]


def running_version(engine: Engine) -> str | None:
    container = engine.container()
    container.reload()
    return container.status == "running" and engine.image_version()


def play(playbook: Path, **extra):
    run = run_playbook(playbook, extra_vars=extra, diff=True)
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-2000:]
    return run


# --------------------------------------------------------------------------- projects as users write them

BASE = """\
# The Engine, as its owner wrote it; the brain in a named volume here...
services:
  engine:
    image: {image}
{profiles}    restart: unless-stopped
    environment:
      ENGINE_API_KEY: ${{ENGINE_API_KEY}}
    ports:
      - "127.0.0.1:{port}:8000"
    volumes:
      - engine_data:/data
    labels:
{labels}
volumes:
  engine_data:
    labels:
{labels}
networks:
  default:
    labels:
{labels}
"""

BRAIN_OVERRIDE = """\
# ...and this override keeps it on the host instead (backed up with the host's files).
services:
  engine:
    volumes:
      - {brain}:/data
"""


@dataclass
class Project:
    """One Compose project of one reference Engine, brought up with one Compose generation."""

    src: Path
    name: str
    command: str
    port: int
    api_key: str
    fleet: str
    client: docker.DockerClient
    brain: Path | None = None
    files: list = field(default_factory=list)
    profiles: list = field(default_factory=list)
    image: str = "engine:2.3.0"

    def run(self, *args: str, **kwargs) -> None:
        kwargs.setdefault("files", self.files)
        kwargs.setdefault("profiles", self.profiles)
        kwargs.setdefault("project", self.name if self.files else None)
        compose.run(list(args), cwd=self.src, command=self.command, **kwargs)

    def engine(self) -> Engine:
        engine = Engine(engine_id=self.name, model="compose", container_name="", volume=f"{self.name}_engine_data",
                        port=self.port, url=f"http://127.0.0.1:{self.port}", api_key=self.api_key,
                        image=self.image, compose_dir=self.src, compose_project=self.name, fleet=self.fleet,
                        client=self.client)
        engine.container()
        return engine

    def brain_file(self, engine: Engine) -> Path:
        return self.brain / "brain.sqlite" if self.brain else engine.brain_path()

    def mount(self, engine: Engine) -> dict:
        container = engine.container()
        container.reload()
        return next(m for m in container.attrs["Mounts"] if m["Destination"] == "/data")


class Projects:
    """Makes :class:`Project` objects of one fleet; :meth:`down` removes them all (Compose, then sweep)."""

    def __init__(self, client: docker.DockerClient, root: Path):
        self.client = client
        self.root = root
        self.fleet = f"cmp-{uuid.uuid4().hex[:8]}"
        self.made: list[Project] = []
        self.tags: list[str] = []

    def labels(self, engine_id: str) -> dict:
        return {LABEL_TESTKIT: "engine_testkit", LABEL_FLEET: self.fleet, LABEL_ENGINE_ID: engine_id,
                LABEL_MODEL: "compose"}

    def make(self, command: str, *, override: bool = True, profiles: tuple = (), in_env: bool = False,
             image: str = "engine:2.3.0") -> Project:
        """Write and bring up a project: base file, the brain override, profiles, files named in .env or on -f."""
        name = f"{self.fleet}-c{len(self.made) + 1:03d}"
        src = self.root / name
        src.mkdir(parents=True)
        port = free_port(BASE_PORT, LAST_PORT, client=self.client)
        api_key = uuid.uuid4().hex
        labels = "\n".join(f'      {k}: "{v}"' for k, v in sorted(self.labels(name).items()))
        profile_line = f"    profiles: [{', '.join(profiles)}]\n" if profiles else ""
        (src / "docker-compose.yml").write_text(BASE.format(image=image, profiles=profile_line, port=port,
                                                            labels=labels))
        files = ["docker-compose.yml"]
        brain = None
        if override:
            brain = self.root / f"{name}-brain"
            brain.mkdir()
            (src / "docker-compose.brain.yml").write_text(BRAIN_OVERRIDE.format(brain=brain))
            files.append("docker-compose.brain.yml")
        env = [f"ENGINE_API_KEY={api_key}"]
        if in_env:
            env += [f"COMPOSE_FILE={':'.join(files)}", f"COMPOSE_PROJECT_NAME={name}"]
        (src / ".env").write_text("\n".join(env) + "\n")
        os.chmod(src / ".env", 0o600)
        project = Project(src, name, command, port, api_key, self.fleet, self.client, brain,
                          [] if in_env else [str(src / f) for f in files], list(profiles), image)
        self.made.append(project)
        project.run("up", "-d")
        return project

    def own_repository(self) -> str:
        """A repository of this fleet's own (other tests keep using engine:*), tagged 2.3.0 and 2.3.1."""
        repository = f"{self.fleet}-engine"
        for version in ("2.3.0", "2.3.1"):
            self.client.images.get(f"engine:{version}").tag(repository, version)
            self.tags.append(f"{repository}:{version}")
        return repository

    def down(self) -> None:
        for project in self.made:
            with contextlib.suppress(compose.ComposeError):
                project.run("down", "-v", "--remove-orphans", "--timeout", "5", check=False)
        sweep(self.fleet, self.client)
        for tag in self.tags:
            with contextlib.suppress(docker.errors.ImageNotFound):
                self.client.images.remove(tag)


@pytest.fixture
def projects(docker_client, engine_images, tmp_path):
    made = Projects(docker_client, tmp_path)
    try:
        yield made
    finally:
        made.down()


@pytest.fixture
def fleet(make_fleet) -> Fleet:
    return make_fleet(name=f"cmp-{uuid.uuid4().hex[:8]}", base_port=BASE_PORT)


def write_rows(engine: Engine, seconds: float = 2) -> LoadGenerator:
    """Turns and feedback acknowledged by the Engine (every one must be in its brain from then on)."""
    load = LoadGenerator([engine], rate=5, feedback_ratio=0.3, workers_per_engine=2)
    load.run_for(seconds)
    assert load.acked_task_ids(engine.engine_id), "the Engine acknowledged no turn"
    return load


def project_play(project: Project, env: dict | None = None, **extra) -> dict:
    run = run_playbook(PROJECT, extra_vars={"cmp_src": str(project.src), "cmp_command": project.command, **extra},
                       env=env)
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-2000:]
    return {"before": run.result("Find the Engine before")["engine"], "switch": run.result("Switch the Engine"),
            "after": run.result("Find the Engine after")["engine"]}


# --------------------------------------------------------------------------- the testkit's projects, both generations


@pytest.mark.timeout(420)
@pytest.mark.parametrize(("tag_in", "command"), [("file", V2), ("env", V1)])
def test_switch_and_roll_back_under_load(fleet, monkeypatch, tag_in, command):
    monkeypatch.setenv("ENGINE_COMPOSE_CMD", command)  # the fleet's project is made by this generation too
    engine = fleet.up(1, "2.3.0", model="compose", compose_tag_in=tag_in)[0]
    src = engine.compose_dir
    compose_file, env_file = src / "docker-compose.yml", src / ".env"
    compose_before, env_before = compose_file.read_bytes(), env_file.read_bytes()
    volume = engine.volume
    load = LoadGenerator([engine], rate=6, feedback_ratio=0.2, workers_per_engine=3).start()
    try:
        load.wait_acked(5)  # writes before the switch
        run = play(SWITCH, cmp_src=str(src), cmp_from="2.3.0", cmp_to="2.3.1", cmp_command=command)
        fleet.wait_healthy([engine], timeout=60)
        load.wait_acked(5, after=load.ack_counts())  # and on the new release
    finally:
        load.stop()
    first = run.result("Switch the Engine to the target tag")["compose"]
    assert first["compose_version"] == GENERATION[command]
    assert Path(first["compose_command"][-1]).name == command.split()[-1]
    assert first["tag_location"]["location"] == tag_in

    # the setting was edited minimally: one line, the key line and every other line byte for byte the same
    if tag_in == "file":
        assert env_file.read_bytes() == env_before
        assert changed_lines(compose_before, compose_file.read_bytes()) == [
            ("    image: engine:2.3.0", "    image: engine:2.3.1")
        ]
    else:
        assert compose_file.read_bytes() == compose_before
        assert changed_lines(env_before, env_file.read_bytes()) == [("ENGINE_TAG=2.3.0", "ENGINE_TAG=2.3.1")]
    assert mode(env_file) == 0o600
    assert f"ENGINE_API_KEY={engine.api_key}" in env_file.read_text()
    # the diff showed the tag, never the key
    assert "+    image: engine:2.3.1" in run.stdout or "+ENGINE_TAG=2.3.1" in run.stdout
    assert engine.api_key not in run.stdout + run.stderr + json.dumps(run.data)

    # the service runs 2.3.1, healthy, on the same volume, with every acknowledged write
    assert running_version(engine) == "2.3.1" and engine.is_healthy()
    assert [m.get("Name") for m in engine.container().attrs["Mounts"]] == [volume]
    assert first["brain"]["key"] == f"volume:{volume}"
    assert load.acked_task_ids(engine.engine_id), "the load must have written before and after the switch"
    assert not missing_acknowledged(load, engine)

    state_file = src / ".september-engine.json"
    assert mode(state_file) == 0o600
    record = json.loads(state_file.read_text())["services"]["engine"]
    assert (record["version"], record["previous_version"]) == ("2.3.1", "2.3.0")
    assert record["previous_image_id"] == fleet.client.images.get("engine:2.3.0").id
    assert [h["result"] for h in record["history"]] == ["ok"]

    back = play(ROLLBACK, cmp_src=str(src), cmp_from="2.3.0", cmp_command=command)
    fleet.wait_healthy([engine], timeout=60)
    assert running_version(engine) == "2.3.0" and engine.is_healthy()
    assert compose_file.read_bytes() == compose_before and env_file.read_bytes() == env_before
    assert back.result("Roll back to the recorded previous version")["compose"]["previous_version"] == "2.3.1"
    record = json.loads(state_file.read_text())["services"]["engine"]
    assert (record["version"], record["rolled_back_from"]) == ("2.3.0", "engine:2.3.1")
    assert not missing_acknowledged(load, engine)


@pytest.mark.timeout(300)
def test_missing_tag_fails_and_the_project_stays_on_its_version(fleet):
    engine = fleet.up(1, "2.3.0", model="compose", compose_tag_in="file")[0]
    src = engine.compose_dir
    compose_before = (src / "docker-compose.yml").read_bytes()
    started_at = engine.container().attrs["State"]["StartedAt"]

    # pull=never: refused before anything stops
    play(BAD_TAG, cmp_src=str(src), cmp_to="0.0.404", cmp_pull="never", cmp_expect_changed=False,
         expected_msg="not on this Docker host and pull=never.*nothing was stopped")
    assert engine.container().attrs["State"]["StartedAt"] == started_at
    assert (src / "docker-compose.yml").read_bytes() == compose_before
    assert not (src / ".september-engine.json").exists()

    # pull=missing: Compose tries, fails; the previous tag is put back and the Engine started again
    play(BAD_TAG, cmp_src=str(src), cmp_to="0.0.404", cmp_pull="missing", cmp_expect_changed=True,
         expected_msg="(?s)Switching service 'engine' to engine:0.0.404 failed"
                      ".*put 'engine:2.3.0' back.*started it again")
    fleet.wait_healthy([engine], timeout=60)
    assert running_version(engine) == "2.3.0" and engine.is_healthy()
    assert (src / "docker-compose.yml").read_bytes() == compose_before
    record = json.loads((src / ".september-engine.json").read_text())["services"]["engine"]
    assert (record["image"], record["previous_image"], record["rolled_back_from"]) == (
        "engine:2.3.0", "engine:2.3.0", "engine:0.0.404")
    assert record["history"][-1]["result"] == "up failed, previous setting restored"


# --------------------------------------------------------------------------- projects of several files


@pytest.mark.timeout(420)
@pytest.mark.parametrize("command", [V2, V1])
def test_an_override_that_mounts_the_brain_is_kept(projects, command):
    project = projects.make(command)
    engine = project.engine()
    wait_healthy(engine)
    brain_key = f"bind:{project.brain}"
    assert project.mount(engine)["Source"] == str(project.brain)
    load = write_rows(engine)

    # the inventory names nothing but the folder: the container's labels say how it was made
    switched = project_play(project, cmp_to="2.3.1")
    wait_healthy(engine)
    assert switched["before"]["identity"]["key"] == switched["after"]["identity"]["key"] == brain_key
    assert switched["before"]["compose"]["files"] == project.files
    assert switched["before"]["compose"]["project"] == project.name
    c = switched["switch"]["compose"]
    assert c["compose_version"] == GENERATION[command] and c["compose_files"] == project.files
    assert c["config_sources"] == {"files": "container", "project": "container", "env_file": "default"}
    assert c["brain"]["key"] == brain_key and c["version"] == "2.3.1"
    assert project.mount(engine)["Source"] == str(project.brain)
    assert running_version(engine) == "2.3.1"
    assert not missing_acknowledged(load, engine, project.brain_file(engine)), "rows written before the switch"
    assert switched["after"]["previous"]["image_id"] == projects.client.images.get("engine:2.3.0").id

    back = project_play(project, cmp_state="rolled_back")
    wait_healthy(engine)
    assert back["switch"]["compose"]["brain"]["key"] == brain_key and running_version(engine) == "2.3.0"
    assert not missing_acknowledged(load, engine, project.brain_file(engine))


@pytest.mark.timeout(420)
@pytest.mark.parametrize("command", [V2, V1])
def test_compose_file_in_env_and_a_profiled_service(projects, command):
    project = projects.make(command, in_env=True, profiles=("engine",))
    engine = project.engine()
    wait_healthy(engine)
    assert project.mount(engine)["Source"] == str(project.brain), "Compose read COMPOSE_FILE of .env"
    load = write_rows(engine)

    switched = project_play(project, cmp_to="2.3.1")
    wait_healthy(engine)
    c = switched["switch"]["compose"]
    assert c["profiles"] == ["engine"] and c["actions"] == ["drain", "edit", "up"]
    assert [Path(f).name for f in c["compose_files"]] == ["docker-compose.yml", "docker-compose.brain.yml"]
    assert c["timings"]["drain_seconds"] > 0, "the profiled service was drained, not skipped"
    assert project.mount(engine)["Source"] == str(project.brain) and running_version(engine) == "2.3.1"
    assert not missing_acknowledged(load, engine, project.brain_file(engine))

    # without a container, the env file alone says how the project is run
    project.run("rm", "--stop", "--force", "engine")
    assert not projects.client.containers.list(all=True, filters={"label": f"{LABEL_ENGINE_ID}={project.name}"})
    started = project_play(project, cmp_state="started")
    c = started["switch"]["compose"]
    assert c["actions"] == ["up"] and c["config_sources"] == {"files": "env_file", "project": "env_file",
                                                              "env_file": "default"}
    wait_healthy(engine)
    assert project.mount(engine)["Source"] == str(project.brain) and running_version(engine) == "2.3.1"
    assert not missing_acknowledged(load, engine, project.brain_file(engine))


def python_without_pyyaml(tmp_path: Path) -> Path:
    """An interpreter for the modules that cannot import PyYAML (a managed node without it)."""
    hidden = tmp_path / "no-pyyaml"
    (hidden / "yaml").mkdir(parents=True)
    # The module's Python only: the stand-in takes itself off PYTHONPATH before anything else (Compose v1 is Python,
    # with PyYAML) is run by the module.
    (hidden / "yaml" / "__init__.py").write_text(
        "import os\n"
        f"os.environ['PYTHONPATH'] = os.environ.get('PYTHONPATH', '').replace({str(hidden)!r}, '')\n"
        "raise ImportError('PyYAML is not on this managed node')\n"
    )
    wrapper = tmp_path / "python-without-pyyaml"
    path = f'PYTHONPATH="{hidden}${{PYTHONPATH:+:$PYTHONPATH}}"'
    wrapper.write_text(f'#!/bin/sh\n{path} exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def compose_whose_config_fails(tmp_path: Path, command: str) -> dict:
    """The environment of a play whose Compose answers every command but ``config`` (which fails)."""
    real = shutil.which(command.split(maxsplit=1)[0])
    folder = tmp_path / "broken-config"
    folder.mkdir()
    script = folder / command.split(maxsplit=1)[0]
    script.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do [ "$arg" = config ] && { echo "ERROR: config cannot be read here" >&2; exit 1; }; done\n'
        f'exec {real} "$@"\n'
    )
    script.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


@pytest.mark.timeout(420)
@pytest.mark.parametrize(("command", "config_works"), [(V2, True), (V1, True), (V1, False)],
                         ids=["v2", "v1", "v1-config-fails"])
def test_a_switch_onto_another_brain_is_refused_or_undone(projects, command, config_works, tmp_path):
    """The inventory names only the base file: the Engine would come back on the empty named volume."""
    project = projects.make(command)
    engine = project.engine()
    wait_healthy(engine)
    load = write_rows(engine)
    before = engine.container().attrs
    extra = {"cmp_to": "2.3.1", "cmp_files": ["docker-compose.yml"], "cmp_project": project.name,
             "cmp_expect_failure": True}
    # Compose that cannot say what the project would mount (its `config` fails): nothing to check before the
    # switch, so the check after it must catch the other brain, and undo the switch.
    env = None if config_works else compose_whose_config_fails(tmp_path, command)
    result = project_play(project, env=env, **extra)
    msg = result["switch"]["msg"]
    wait_healthy(engine)
    after = engine.container().attrs
    if config_works:  # v2 answers `config` in JSON, v1 in YAML (read with PyYAML)
        assert "Refusing to switch service 'engine'" in msg and "Nothing was stopped" in msg, msg
        assert f"volume:{project.name}_engine_data" in msg and f"bind:{project.brain}" in msg
        assert after["Id"] == before["Id"] and after["State"]["StartedAt"] == before["State"]["StartedAt"]
    else:
        assert "came back on another brain" in msg and "started it again" in msg, msg
        assert f"volume:{project.name}_engine_data" in msg
        record = json.loads((project.src / ".september-engine.json").read_text())["services"]["engine"]
        assert record["history"][-1]["result"] == "brain changed, previous setting restored"
    assert project.mount(engine)["Source"] == str(project.brain)
    assert running_version(engine) == "2.3.0"
    assert "image: engine:2.3.0" in (project.src / "docker-compose.yml").read_text()
    assert not missing_acknowledged(load, engine, project.brain_file(engine))
    assert result["after"]["identity"]["key"] == f"bind:{project.brain}"


NO_PYYAML_PLAY = """\
- name: Switch on a managed node without PyYAML
  hosts: all
  gather_facts: false
  tasks:
    - name: Switch the Engine
      september.engine.engine_compose:
        project_src: "{{ cmp_src }}"
        version: 2.3.1
      register: cmp_switch
      ignore_errors: true
"""


@pytest.mark.timeout(120)
def test_without_pyyaml_on_the_managed_node_the_module_says_so(tmp_path):
    src = tmp_path / "project"
    src.mkdir()
    (src / "docker-compose.yml").write_text("services:\n  engine:\n    image: engine:2.3.0\n")
    before = (src / "docker-compose.yml").read_bytes()
    playbook = tmp_path / "switch.yml"
    playbook.write_text(NO_PYYAML_PLAY)
    run = run_playbook(playbook, extra_vars={"cmp_src": str(src),
                                             "ansible_python_interpreter": str(python_without_pyyaml(tmp_path))})
    assert run.rc == 0, run.stdout[-3000:]
    result = run.result("Switch the Engine")
    assert result["failed"] and result["msg"].startswith(
        "Failed to import the required Python library (PyYAML)"), result["msg"]
    assert "This is required to read Compose files" in result["msg"]
    assert (src / "docker-compose.yml").read_bytes() == before and sorted(os.listdir(src)) == ["docker-compose.yml"]


# Compose files as users write them; the value the switch changes is marked «before|after».
SHAPES = {
    "anchored-flow-merge": "# defaults\nx-engine: &engine {image: \"engine:«2.3.0|2.3.1»\", restart: always}\n"
                           "services:\n  engine:\n    <<: *engine\n    ports: ['127.0.0.1:9001:8000']  # local\n"
                           "  proxy:\n    image: nginx:1.25\n",
    "crlf-comments-tab": "#\tthe Engine\r\nservices:\r\n  engine:  # image: engine:1.0\r\n"
                         "    image: 'engine:«2.3.0|2.3.1»'  #\tpinned\r\n    restart: always\r\n",
    "flow-service": "services:\n  engine: {image: engine:«2.3.0|2.3.1», restart: always}\n"
                    "  twin: {image: engine:2.3.0}\n",
    "default-in-file": "services:\n  engine:\n    image: \"engine:${SEPTEMBER_TEST_UNSET_TAG:-«2.3.0|2.3.1»}\"\n",
    "value-on-next-line": "services:\n  engine:\n    image: !!str &img\n      engine:«2.3.0|2.3.1»\n",
}
MARK = re.compile("«([^|»]*)\\|([^»]*)»")


def compose_config(src: Path, command: str) -> dict:
    """What Compose itself makes of the project (v2: JSON, v1: YAML), with the ``x-`` extension fields left out."""
    args = ["config", "--format", "json"] if GENERATION[command] == "v2" else ["config"]
    out = compose.run(args, cwd=src, project="cmp-config", command=command).stdout
    data = json.loads(out) if GENERATION[command] == "v2" else yaml.safe_load(out)
    return {k: v for k, v in data.items() if not k.startswith("x-")}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("command", [V2, V1])
def test_edited_files_mean_to_compose_what_we_think(tmp_path, command):
    """Each edit, byte for byte the file with one value replaced, is for Compose the project with the new image."""
    cf = module_utils("_compose_file")
    for name, marked in SHAPES.items():
        src = tmp_path / name
        src.mkdir()
        path = src / "docker-compose.yml"
        path.write_bytes(MARK.sub(r"\1", marked).encode())
        before = compose_config(src, command)
        assert before["services"]["engine"]["image"] == "engine:2.3.0", name
        text = path.read_bytes().decode()
        setting = cf.locate_tag([(str(path), text)], "engine", str(src / ".env"), None, {})
        edit = cf.plan_tag_edit(setting, text, None, "engine:2.3.1")
        cf.verify_edit([(str(path), text)], edit, "engine", env_path=str(src / ".env"), environ={}, env_text=None,
                       expected="engine:2.3.1")
        path.write_bytes(edit.new_text.encode())
        assert path.read_bytes() == MARK.sub(r"\2", marked).encode(), name
        after = compose_config(src, command)
        before["services"]["engine"]["image"] = "engine:2.3.1"
        assert after == before, name


@pytest.mark.timeout(300)
def test_a_failed_drain_starts_the_engine_again(projects):
    """Docker stops the Engine but answers Compose's stop with an error: the module starts it again."""
    project = projects.make(V2, override=False)
    engine = project.engine()
    wait_healthy(engine)
    load = write_rows(engine, seconds=1)
    before = engine.container().attrs
    with DockerFaultProxy() as proxy:
        proxy.fail("POST", STOP, after=True)
        result = project_play(project, cmp_to="2.3.1", cmp_docker_host=proxy.url, cmp_expect_failure=True)
        assert [failed for _path, failed in proxy.calls("POST", STOP)] == [True]
    msg = result["switch"]["msg"]
    assert "Draining service 'engine' before its switch to engine:2.3.1 failed" in msg and "injected fault" in msg
    assert "started it again" in msg, msg
    after = engine.container().attrs
    assert after["Id"] == before["Id"] and after["State"]["Running"]
    assert after["State"]["StartedAt"] != before["State"]["StartedAt"], "it really was stopped, and started again"
    assert "image: engine:2.3.0" in (project.src / "docker-compose.yml").read_text()
    wait_healthy(engine)
    assert running_version(engine) == "2.3.0"
    assert not missing_acknowledged(load, engine)


@pytest.mark.timeout(300)
def test_rollback_goes_to_the_recorded_image_after_its_tag_moved(projects):
    repository = projects.own_repository()
    good = projects.client.images.get(f"{repository}:2.3.0")
    project = projects.make(V2, image=f"{repository}:2.3.0")
    engine = project.engine()
    wait_healthy(engine)
    project_play(project, cmp_to="2.3.1")
    wait_healthy(engine)
    projects.client.images.get("engine:2.4.0").tag(repository, "2.3.0", force=True)  # a re-pushed tag
    back = project_play(project, cmp_state="rolled_back")
    assert back["switch"]["compose"]["actions"] == ["drain", "retag", "edit", "up"]
    assert engine.container().attrs["Image"] == good.id, "the recorded image id, not what the tag points at now"
    assert projects.client.images.get(f"{repository}:2.3.0").id == good.id
    wait_healthy(engine)
    assert engine.image_version() == "2.3.0"
