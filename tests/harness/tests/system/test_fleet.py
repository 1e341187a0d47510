# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet fixture against the real Docker engine: both hosting models, health, teardown, sweep."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests
import yaml

from engine_testkit import Fleet, FleetError, ImageMissingError, brain, sweep
from engine_testkit.ansible import REPO_ROOT
from engine_testkit.fleet import BASELINE_VERSION as BASELINE
from engine_testkit.fleet import (
    LABEL_ENGINE_ID,
    LABEL_FLEET,
    TEST_BASE_PORT,
    WORKDIR_ROOT,
    Engine,
    leftovers,
    unique_name,
)
from engine_testkit.loadgen import expected_answer, iter_stream_lines, parse_sse
from engine_testkit.settings import FAST_VARS

BASELINE_MIGRATIONS = ["0001", "0002", "0003", "0004", "0005"]


def clean(report: dict[str, list[str]]) -> bool:
    return not any(report.values())


def one_turn(engine: Engine, message: str, key: str | None = None) -> tuple[int, dict[str, dict]]:
    """An authenticated turn by hand (independent of the load generator): status and events by name."""
    resp = requests.post(
        f"{engine.url}/execute",
        json={"message": message},
        headers={"X-Engine-Key": engine.api_key if key is None else key},
        stream=True,
        timeout=30,
    )
    with resp:
        if resp.status_code != 200:
            return resp.status_code, {"body": resp.json()}
        return 200, {event: json.loads(data) for event, data in parse_sse(iter_stream_lines(resp))}


@pytest.fixture(scope="module")
def fleet(docker_client: docker.DockerClient, engine_images: list[str]) -> Iterator[Fleet]:
    """2 container-model Engines, 1 compose Engine with the tag in the file, 1 with the tag in .env."""
    f = Fleet(name=unique_name(), base_port=TEST_BASE_PORT, client=docker_client)
    try:
        f.up(2, BASELINE, model="container")
        f.up(1, BASELINE, model="compose", compose_tag_in="file")
        f.up(1, BASELINE, model="compose", compose_tag_in="env")
        yield f
    finally:
        f.down()
        sweep(f.name, docker_client)


def test_ids_ports_and_models(fleet: Fleet) -> None:
    ids = [e.engine_id for e in fleet.engines]
    assert ids == [f"{fleet.name}-u001", f"{fleet.name}-u002", f"{fleet.name}-c001", f"{fleet.name}-c002"]
    assert [e.model for e in fleet.engines] == ["container", "container", "compose", "compose"]
    ports = [e.port for e in fleet.engines]
    assert len(set(ports)) == 4 and all(p >= TEST_BASE_PORT for p in ports)
    assert all(e.url == f"http://127.0.0.1:{e.port}" for e in fleet.engines)
    assert fleet.api_key not in repr(fleet.engines) and fleet.api_key not in repr(fleet)


def test_all_healthy(fleet: Fleet) -> None:
    for engine in fleet.engines:
        code, body = engine.health()
        assert code == 200, engine
        assert body is not None and body["status"] == "ok" and body["subsystems"]["database"] == "ok"
        assert engine.is_healthy()
        assert engine.image_version() == BASELINE


def test_each_engine_answers_an_authenticated_turn(fleet: Fleet) -> None:
    for n, engine in enumerate(fleet.engines):
        message = f"what is {n} * 7"
        status, events = one_turn(engine, message)
        assert status == 200, events
        assert events["done"]["status"] == "completed"
        assert events["done"]["answer"] == expected_answer(message) == str(n * 7)
        assert events["task"]["task_id"] == events["done"]["task_id"]
        assert events["done"]["task_id"] in brain.task_ids(engine.brain_path())


def test_wrong_or_missing_key_is_refused(fleet: Fleet) -> None:
    engine = fleet.engines[0]
    status, events = one_turn(engine, "echo: hi", key="not-the-key")
    assert status == 401 and events["body"]["error"] == "INVALID_KEY"
    resp = requests.post(f"{engine.url}/execute", json={"message": "echo: hi"}, timeout=10)
    assert resp.status_code == 401


def test_container_model_is_configured_like_the_orchestrator(fleet: Fleet, docker_client: docker.DockerClient) -> None:
    for engine in (e for e in fleet.engines if e.model == "container"):
        c = docker_client.containers.get(engine.engine_id)
        assert engine.container_name == engine.engine_id == c.name
        host = c.attrs["HostConfig"]
        assert host["RestartPolicy"]["Name"] == "unless-stopped"
        assert host["PortBindings"]["8000/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(engine.port)}]
        assert "engine_net" in c.attrs["NetworkSettings"]["Networks"]
        mounts = {m["Destination"]: m for m in c.attrs["Mounts"]}
        assert mounts["/data"]["Type"] == "volume" and mounts["/data"]["Name"] == f"engine-data-{engine.engine_id}"
        assert f"ENGINE_API_KEY={fleet.api_key}" in c.attrs["Config"]["Env"]
        assert c.labels[LABEL_FLEET] == fleet.name and c.labels[LABEL_ENGINE_ID] == engine.engine_id
        vol = docker_client.volumes.get(engine.volume)
        assert vol.attrs["Labels"][LABEL_FLEET] == fleet.name
        assert engine.brain_path() == Path(vol.attrs["Mountpoint"]) / "brain.sqlite"
        assert brain.applied_migrations(engine.brain_path()) == BASELINE_MIGRATIONS


def test_compose_model_tag_in_file_and_in_env(fleet: Fleet, docker_client: docker.DockerClient) -> None:
    file_style, env_style = (e for e in fleet.engines if e.model == "compose")
    for engine, image_line in ((file_style, f"image: engine:{BASELINE}"), (env_style, "image: engine:${ENGINE_TAG}")):
        assert engine.compose_dir == fleet.workdir / engine.engine_id
        text = (engine.compose_dir / "docker-compose.yml").read_text()
        assert f"    {image_line}\n" in text
        assert fleet.api_key not in text and "${ENGINE_API_KEY}" in text
        assert f'"127.0.0.1:{engine.port}:8000"' in text
        env_file = engine.compose_dir / ".env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        env = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert env["ENGINE_API_KEY"] == fleet.api_key
        assert ("ENGINE_TAG" in env) == (engine is env_style)
        c = engine.container()
        assert c.labels["com.docker.compose.project"] == engine.engine_id
        assert c.labels["com.docker.compose.service"] == "engine"
        assert c.labels["io.september.compose_dir"] == str(engine.compose_dir)
        assert c.attrs["Config"]["Image"] == f"engine:{BASELINE}"
        assert c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        assert docker_client.volumes.get(engine.volume).attrs["Labels"][LABEL_FLEET] == fleet.name
        assert brain.applied_migrations(engine.brain_path()) == BASELINE_MIGRATIONS


def test_inventory(fleet: Fleet, tmp_path: Path) -> None:
    path = fleet.write_inventory(tmp_path / "inventory.yml")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    inv = yaml.safe_load(path.read_text())
    hosts = inv["all"]["children"]["engines"]["hosts"]
    assert list(hosts) == [e.engine_id for e in fleet.engines]
    for engine in fleet.engines:
        hv = hosts[engine.engine_id]
        assert hv["engine_deployment"] == engine.model
        assert hv["engine_url"] == engine.url and hv["engine_api_key"] == fleet.api_key
        assert hv["ansible_connection"] == "local"
        assert hv["ansible_python_interpreter"] == "{{ ansible_playbook_python }}"
        if engine.model == "compose":
            assert hv["engine_compose_dir"] == str(engine.compose_dir) and hv["engine_compose_service"] == "engine"
        else:
            assert hv["engine_container_name"] == engine.engine_id
    assert set(inv["all"]["children"]["engines_compose"]["hosts"]) == {
        e.engine_id for e in fleet.engines if e.model == "compose"
    }
    assert "engine_canary" not in inv["all"]["children"] and "vars" not in inv["all"]["children"]["engines"]
    # A known canary (the group the upgrade's plan puts first) and group variables (the fast test settings).
    first = fleet.engines[0].engine_id
    inv = yaml.safe_load(fleet.write_inventory(tmp_path / "canary.yml", canaries=[first],
                                               group_vars=FAST_VARS).read_text())
    assert inv["all"]["children"]["engine_canary"] == {"hosts": {first: {}}}
    assert inv["all"]["children"]["engines"]["vars"] == FAST_VARS
    with pytest.raises(FleetError, match="not Engines of fleet"):
        fleet.inventory(canaries=["no-such-engine"])


def test_attach_rediscovers_the_fleet_from_labels(fleet: Fleet, docker_client: docker.DockerClient) -> None:
    again = Fleet.attach(fleet.name, client=docker_client)
    assert sorted(e.engine_id for e in again.engines) == sorted(e.engine_id for e in fleet.engines)
    found = {e.engine_id: e for e in again.engines}
    for old in fleet.engines:
        new = found[old.engine_id]
        assert (new.model, new.port, new.volume, new.compose_dir, new.api_key) == (
            old.model, old.port, old.volume, old.compose_dir, old.api_key
        )
    assert again.api_key == fleet.api_key
    assert not (WORKDIR_ROOT / fleet.name).exists()  # attaching creates nothing


def test_missing_image_is_a_clear_error(make_fleet) -> None:
    fleet = make_fleet()
    with pytest.raises(ImageMissingError, match=r"image engine:0\.0\.0-missing not found: run `make images`"):
        fleet.up(1, "0.0.0-missing")
    assert fleet.engines == []


def test_down_leaves_nothing_and_ports_skip_bound_ones(make_fleet, docker_client: docker.DockerClient) -> None:
    fleet = make_fleet()
    with socket.socket() as squatter:
        # A foreign listener on the first free port: the fleet must step over it.
        port = TEST_BASE_PORT
        while True:
            try:
                squatter.bind(("127.0.0.1", port))
                break
            except OSError:
                port += 1
        squatter.listen()
        fleet.base_port = port
        engines = fleet.up(2, BASELINE, model="mixed")
    assert port not in {e.port for e in engines}
    assert not clean(leftovers(fleet.name, docker_client))
    workdir = fleet.workdir
    assert (workdir / engines[1].engine_id / "docker-compose.yml").is_file()
    fleet.down()
    assert clean(leftovers(fleet.name, docker_client)), leftovers(fleet.name, docker_client)
    assert not workdir.exists()
    assert fleet.engines == []


def test_sweep_cleans_up_after_a_crashed_run(make_fleet, docker_client: docker.DockerClient) -> None:
    fleet = make_fleet()
    fleet.up(1, BASELINE, model="container", wait=False)
    fleet.up(1, BASELINE, model="compose", compose_tag_in="env", wait=False)
    name, workdir = fleet.name, fleet.workdir
    fleet.engines.clear()  # the run "crashed": the Fleet object knows nothing any more
    del fleet
    report = leftovers(name, docker_client)
    assert report["labelled_containers"] and report["labelled_volumes"] and report["labelled_networks"]
    removed = sweep(name, docker_client)
    assert removed["containers"] and removed["volumes"] and removed["compose_projects"] == [f"{name}-c001"]
    assert clean(leftovers(name, docker_client)), leftovers(name, docker_client)
    assert not workdir.exists()


def test_cli_up_status_down(docker_client: docker.DockerClient, engine_images: list[str], tmp_path: Path) -> None:
    name = unique_name()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "tests" / "harness")}
    inventory = tmp_path / "inv.yml"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "engine_testkit", *args],
            env=env, capture_output=True, text=True, timeout=180, check=False,
        )

    try:
        up = cli("up", "--name", name, "--count", "2", "--version", BASELINE, "--model", "mixed",
                 "--base-port", str(TEST_BASE_PORT), "--inventory", str(inventory), "--canary", "1",
                 "--test-settings")
        assert up.returncode == 0, up.stderr
        assert f"{name}-u001" in up.stdout and f"{name}-c001" in up.stdout
        written = yaml.safe_load(inventory.read_text())["all"]["children"]
        hosts = written["engines"]["hosts"]
        assert written["engines"]["vars"] == FAST_VARS
        assert list(written["engine_canary"]["hosts"]) == [f"{name}-u001"]  # the first Engine brought up
        key = hosts[f"{name}-u001"]["engine_api_key"]
        assert key not in up.stdout + up.stderr
        status = cli("status", "--name", name)
        assert status.returncode == 0, status.stderr
        lines = [line.split() for line in status.stdout.splitlines()[1:]]
        assert [(cols[0], cols[2], cols[3], cols[4]) for cols in lines] == [
            (f"{name}-c001", BASELINE, "ok", "200"),
            (f"{name}-u001", BASELINE, "ok", "200"),
        ]
        assert key not in status.stdout
        down = cli("down", "--name", name)
        assert down.returncode == 0, down.stderr
        assert clean(leftovers(name, docker_client)), leftovers(name, docker_client)
        assert not (WORKDIR_ROOT / name).exists()
    finally:
        sweep(name, docker_client)


def test_reading_a_stopped_brain_leaves_no_trace(make_fleet) -> None:
    fleet = make_fleet()
    (engine,) = fleet.up(1, BASELINE, model="container")
    status, events = one_turn(engine, "echo: persisted")
    assert status == 200
    container = engine.container()
    container.stop(timeout=30)
    data_dir = engine.brain_path().parent
    before = sorted(p.name for p in data_dir.iterdir())
    assert before == ["brain.sqlite"]  # drained and checkpointed on SIGTERM
    assert events["done"]["task_id"] in brain.task_ids(engine.brain_path())
    assert brain.applied_migrations(engine.brain_path()) == BASELINE_MIGRATIONS
    assert sorted(p.name for p in data_dir.iterdir()) == before
    container.start()
    fleet.wait_healthy([engine], timeout=60)


def test_compose_command_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from engine_testkit import compose

    monkeypatch.setenv("ENGINE_COMPOSE_CMD", "docker-compose-that-does-not-exist")
    with pytest.raises(compose.ComposeError, match="ENGINE_COMPOSE_CMD"):
        compose.compose_cmd()
    monkeypatch.delenv("ENGINE_COMPOSE_CMD")
    detected = compose.compose_cmd()
    assert detected in (["docker", "compose"], ["docker-compose"])
    monkeypatch.setenv("ENGINE_COMPOSE_CMD", " ".join(detected))
    assert compose.compose_cmd() == detected
    compose_file = 'version: "2.4"\nservices:\n  engine:\n    image: engine:${ENGINE_TAG}\n'
    (tmp_path / "docker-compose.yml").write_text(compose_file)
    (tmp_path / ".env").write_text(f"ENGINE_TAG={BASELINE}\n")
    monkeypatch.setenv("ENGINE_TAG", "9.9.9")  # a stray shell variable must not override the project's .env
    out = compose.run(["config"], cwd=tmp_path, project="t-config-only").stdout
    assert f"engine:{BASELINE}" in out and "9.9.9" not in out
