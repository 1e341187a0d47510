# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""engine_container against real per-user reference Engines, through real ansible-playbook runs.

The Engines are made here the way the contract's orchestrator makes them (container per Engine, volume
``engine-data-<id>`` at ``/data``, restart policy ``unless-stopped``, ``127.0.0.1:<port>:8000``, ``ENGINE_API_KEY``,
labels), on a network of their own (``<fleet>_engine_net``, with an alias) plus what a real orchestrator adds: a
custom env var and label, a second network with an alias, a log config and a memory limit. Every case runs
playbooks/engine_container.yml (check mode, apply with diff, apply again, check mode again, each asserted);
pytest then compares the containers with ``docker inspect``, and checks the Engine's health and its brain.

Fleets are named ``ctr-<8 hex>`` and use host ports 9600-9699. Everything carries the testkit's fleet label (the
module copies it onto the containers it makes), so ``sweep()`` removes all of it.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import threading
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest
import requests

from engine_testkit import brain, free_port, sweep, wait_healthy
from engine_testkit.ansible import run_playbook
from engine_testkit.fleet import LABEL_ENGINE_ID, LABEL_FLEET, LABEL_MODEL, LABEL_TESTKIT, Engine
from engine_testkit.loadgen import iter_stream_lines, parse_sse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docker_fault import STOP, DockerFaultProxy  # a helper beside the tests (importlib mode: not on the path)

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"
PLAYBOOK = PLAYBOOKS / "engine_container.yml"
BAD = PLAYBOOKS / "engine_container_bad.yml"
IMAGE_PLAYBOOK = PLAYBOOKS / "engine_image.yml"
BASE_PORT, LAST_PORT = 9600, 9699
VERSION_LABEL = "org.opencontainers.image.version"
TENANT_LABEL = "com.example.orchestrator.tenant"


class Orchestrator:
    """Creates per-user Engines as the orchestrator does; everything labelled with the fleet for sweep()."""

    def __init__(self, client: docker.DockerClient):
        self.client = client
        self.fleet = f"ctr-{uuid.uuid4().hex[:8]}"
        self.api_key = uuid.uuid4().hex
        self.network = f"{self.fleet}_engine_net"
        self.monitoring = f"{self.fleet}_monitoring"
        self.images: list[str] = []
        self.count = 0
        for network in (self.network, self.monitoring):
            client.networks.create(network, driver="bridge", labels=self.labels())

    def labels(self, engine_id: str | None = None) -> dict:
        labels = {LABEL_TESTKIT: "engine_testkit", LABEL_FLEET: self.fleet}
        if engine_id:
            labels.update({LABEL_ENGINE_ID: engine_id, LABEL_MODEL: "container"})
        return labels

    def up(self, version: str = "2.3.0", extra_env: dict | None = None, image: str | None = None) -> Engine:
        self.count += 1
        engine_id = f"{self.fleet}-u{self.count:03d}"
        volume = f"engine-data-{engine_id}"
        self.client.volumes.create(volume, labels=self.labels(engine_id))
        api = self.client.api
        port = free_port(BASE_PORT, LAST_PORT, client=self.client)
        host_config = api.create_host_config(
            binds=[f"{volume}:/data:rw"],
            port_bindings={8000: ("127.0.0.1", port)},
            restart_policy={"Name": "unless-stopped"},
            network_mode=self.network,
            log_config={"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
            mem_limit="512m",
        )
        networking = api.create_networking_config(
            {self.network: api.create_endpoint_config(aliases=[f"engine-{engine_id}"])}
        )
        env = {"ENGINE_API_KEY": self.api_key, "ORCHESTRATOR_TENANT": f"tenant-{engine_id}", **(extra_env or {})}
        cid = api.create_container(
            image or f"engine:{version}",
            name=engine_id,
            environment=env,
            labels={**self.labels(engine_id), TENANT_LABEL: f"tenant-{engine_id}"},
            host_config=host_config,
            networking_config=networking,
            ports=[8000],
            detach=True,
            use_config_proxy=False,
        )["Id"]
        api.connect_container_to_network(cid, self.monitoring, aliases=[f"metrics-{engine_id}"])
        api.start(cid)
        engine = Engine(
            engine_id=engine_id,
            model="container",
            container_name=engine_id,
            volume=volume,
            port=port,
            url=f"http://127.0.0.1:{port}",
            api_key=self.api_key,
            image=image or f"engine:{version}",
            fleet=self.fleet,
            client=self.client,
        )
        wait_healthy(engine)
        return engine

    def own_tags(self) -> str:
        """A repository of this fleet's own (other tests keep using engine:*), tagged 2.3.0 and 2.3.1.

        Its 2.3.0 carries the version label ``v2.3.0``, as some release pipelines write it.
        """
        repository = f"{self.fleet}-engine"
        dockerfile = "FROM engine:2.3.0\nLABEL org.opencontainers.image.version=v2.3.0\n"
        # No fleet labels on the image: a label equal to the old image's is not copied onto the new container.
        self.client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=f"{repository}:2.3.0", rm=True)
        self.client.images.get("engine:2.3.1").tag(repository, "2.3.1")
        self.images += [f"{repository}:2.3.0", f"{repository}:2.3.1"]
        return repository

    def broken_image(self) -> str:
        """An image whose entrypoint does not exist: its container is created, but cannot start."""
        tag = f"{self.fleet}-broken:1"
        dockerfile = 'FROM engine:2.3.0\nLABEL org.opencontainers.image.version=9.9.9\nENTRYPOINT ["/no/such/engine"]\n'
        self.client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, labels=self.labels(), rm=True)
        self.images.append(tag)
        return tag

    def down(self) -> None:
        sweep(self.fleet, self.client)
        for tag in self.images:
            with contextlib.suppress(docker.errors.ImageNotFound):
                self.client.images.remove(tag, force=True)


@pytest.fixture
def orchestrator(docker_client, engine_images):
    orch = Orchestrator(docker_client)
    try:
        yield orch
    finally:
        orch.down()


def inspect(client: docker.DockerClient, name: str) -> dict | None:
    try:
        return client.api.inspect_container(name)
    except docker.errors.NotFound:
        return None


def turn(engine: Engine, message: str, started: threading.Event | None = None) -> dict:
    """One agent turn over SSE: its events by name (``started`` is set when the task event arrives)."""
    resp = requests.post(
        f"{engine.url}/execute",
        json={"message": message},
        headers={"X-Engine-Key": engine.api_key},
        stream=True,
        timeout=60,
    )
    events: dict = {}
    with resp:
        assert resp.status_code == 200, resp.text
        for event, data in parse_sse(iter_stream_lines(resp)):
            events[event] = json.loads(data)
            if event == "task" and started is not None:
                started.set()
    return events


def task(engine: Engine, task_id: str) -> dict:
    resp = requests.get(f"{engine.url}/tasks/{task_id}", headers={"X-Engine-Key": engine.api_key}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def switch(name: str, state: str, image: str | None = None, **expect) -> dict:
    """Run the four-step playbook; returns the result of its 'Apply with diff' task."""
    extra = {"ctr_name": name, "ctr_state": state, **{f"ctr_{k}": v for k, v in expect.items()}}
    if image:
        extra["ctr_image"] = image
    run = run_playbook(PLAYBOOK, extra_vars=extra)
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-2000:]
    return run.result("Apply with diff")


def fail_switch(name: str, image: str, expected_msg: str, state: str = "present", **extra) -> dict:
    run = run_playbook(BAD, extra_vars={"ctr_name": name, "ctr_image": image, "ctr_state": state,
                                        "expected_msg": expected_msg, **{f"ctr_{k}": v for k, v in extra.items()}})
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-2000:]
    result = run.result("Switch the container")
    assert result.get("failed") and not result.get("changed")
    return result


def env_map(attrs: dict) -> dict:
    return dict(item.split("=", 1) for item in attrs["Config"]["Env"])


def aliases(attrs: dict) -> dict:
    """Network -> the aliases its creator set (without Docker's short-id alias)."""
    return {
        name: sorted(a for a in settings.get("Aliases") or [] if a != attrs["Id"][:12])
        for name, settings in attrs["NetworkSettings"]["Networks"].items()
    }


def assert_identical_config(old: dict, new: dict, old_version: str, new_version: str) -> None:
    """The new container has the old one's configuration, with the new image's own defaults."""
    for key in ("PortBindings", "Binds", "RestartPolicy", "NetworkMode", "LogConfig", "Memory", "Mounts"):
        assert new["HostConfig"].get(key) == old["HostConfig"].get(key), key
    assert aliases(new) == aliases(old)
    assert [(m["Type"], m.get("Name"), m["Destination"]) for m in new["Mounts"]] == [
        (m["Type"], m.get("Name"), m["Destination"]) for m in old["Mounts"]
    ]
    old_env, new_env = env_map(old), env_map(new)
    assert new_env["ENGINE_VERSION"] == new_version and old_env["ENGINE_VERSION"] == old_version
    for key in ("ENGINE_API_KEY", "ORCHESTRATOR_TENANT", "SQLITE_DB_PATH"):
        assert new_env[key] == old_env[key], key
    old_labels, new_labels = old["Config"]["Labels"], new["Config"]["Labels"]
    assert new_labels[VERSION_LABEL] == new_version
    for key in (TENANT_LABEL, LABEL_FLEET, LABEL_ENGINE_ID, LABEL_MODEL, LABEL_TESTKIT):
        assert new_labels[key] == old_labels[key], key
    assert new["Config"]["Cmd"] == old["Config"]["Cmd"]
    assert new["Config"]["Hostname"] == new["Id"][:12], "the generated hostname is not copied"


def assert_switched(docker_client, engine: Engine, applied: dict, original: dict, before_ids: list[str]) -> dict:
    """The switch to 2.3.1: a new container with the old one's configuration, the old one kept stopped as
    ``--previous`` (never restarted), the Engine healthy on 2.3.1 on the same brain; what the module returned says
    so, without the key. Returns the new container's inspect."""
    name = engine.container_name
    new = inspect(docker_client, name)
    previous = inspect(docker_client, f"{name}--previous")
    assert previous["Id"] == original["Id"] and new["Id"] != original["Id"]
    assert_identical_config(original, new, "2.3.0", "2.3.1")
    assert new["Config"]["Image"] == "engine:2.3.1"
    assert new["Config"]["Labels"]["io.september.engine.previous-image"] == "engine:2.3.0"
    assert new["Config"]["Labels"]["io.september.engine.previous-image-id"] == original["Image"]
    assert previous["State"]["Status"] == "exited" and previous["State"]["ExitCode"] == 0
    assert previous["HostConfig"]["RestartPolicy"]["Name"] == "no"
    wait_healthy(engine)
    assert engine.image_version() == "2.3.1"
    # the brain is the same volume and keeps its rows
    assert all(task(engine, task_id)["status"] == "completed" for task_id in before_ids)
    assert set(before_ids) <= brain.task_ids(engine.brain_path())
    container = applied["container"]
    assert container["version"] == "2.3.1" and container["previous_image"] == "engine:2.3.0"
    assert container["previous_container"] == f"{name}--previous" and container["failed_container"] is None
    assert container["status"] == "running" and container["id"] == new["Id"]
    assert container["timings"]["drain_seconds"] > 0
    assert container["timings"]["switch_seconds"] >= container["timings"]["drain_seconds"]
    assert applied["diff"]["before"]["version"] == "2.3.0" and applied["diff"]["after"]["version"] == "2.3.1"
    assert "ENGINE_API_KEY" not in json.dumps(applied) and engine.api_key not in json.dumps(applied)
    return new


def assert_rolled_back_to_previous(docker_client, engine: Engine, rolled: dict, original: dict, new: dict,
                                   ids: list[str]) -> None:
    """The roll back: the original container is back and running, the bad one kept stopped as ``--failed``, no
    ``--previous`` left; the Engine healthy on 2.3.0 with every task."""
    name = engine.container_name
    back = inspect(docker_client, name)
    failed = inspect(docker_client, f"{name}--failed")
    assert back["Id"] == original["Id"] and back["State"]["Status"] == "running"
    assert back["HostConfig"]["RestartPolicy"] == original["HostConfig"]["RestartPolicy"]
    assert failed["Id"] == new["Id"] and failed["State"]["Status"] == "exited"
    assert failed["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert inspect(docker_client, f"{name}--previous") is None
    assert rolled["container"]["failed_container"] == f"{name}--failed"
    assert rolled["container"]["version"] == "2.3.0"
    wait_healthy(engine)
    assert engine.image_version() == "2.3.0"
    assert all(task(engine, t)["status"] == "completed" for t in ids)


def assert_finalized(docker_client, engine: Engine, finalized: dict, original: dict, failed_id: str) -> dict:
    """Finalized: the previous container goes, the volume and the evidence (``--failed``) stay. Returns the current
    container's inspect."""
    name = engine.container_name
    assert finalized["container"]["actions"] == [f"remove {name}--previous"]
    assert inspect(docker_client, f"{name}--previous") is None
    assert inspect(docker_client, f"{name}--failed")["Id"] == failed_id
    assert docker_client.volumes.get(engine.volume).name == engine.volume
    current = inspect(docker_client, name)
    assert current["State"]["Status"] == "running"
    assert_identical_config(original, current, "2.3.0", "2.3.1")
    return current


def test_switch_roll_back_finalize(orchestrator, docker_client):
    engine = orchestrator.up("2.3.0")
    name = engine.container_name
    before_ids = [turn(engine, f"echo: before the switch {i}")["done"]["task_id"] for i in range(3)]
    original = inspect(docker_client, name)

    # the rollout makes sure the image is present before any downtime
    image_run = run_playbook(IMAGE_PLAYBOOK, extra_vars={"img_name": "engine:2.3.1"})
    assert image_run.rc == 0, image_run.stdout[-4000:]

    applied = switch(name, "present", "engine:2.3.1", expect_image="engine:2.3.1", expect_previous=True)
    new = assert_switched(docker_client, engine, applied, original, before_ids)

    # another switch before this one is finalized or rolled back is refused, and changes nothing
    fail_switch(name, "engine:2.4.0", "Unfinished switch.*finalized.*rolled_back")
    assert inspect(docker_client, name)["Id"] == new["Id"]
    during_ids = [turn(engine, "echo: on 2.3.1")["done"]["task_id"]]

    # roll back: the original container is back, the bad one kept as --failed
    rolled = switch(name, "rolled_back", expect_image="engine:2.3.0", expect_previous=False)
    assert_rolled_back_to_previous(docker_client, engine, rolled, original, new, before_ids + during_ids)

    # switch again, verify, finalize: the previous container goes, the volume and the evidence stay
    switch(name, "present", "engine:2.3.1", expect_image="engine:2.3.1", expect_previous=True)
    wait_healthy(engine)
    finalized = switch(name, "finalized", expect_previous=False)
    current = assert_finalized(docker_client, engine, finalized, original, new["Id"])

    # roll back with no previous container left: recreated on the given image, the bad one kept as --failed
    rolled = switch(name, "rolled_back", "engine:2.3.0", expect_image="engine:2.3.0", expect_previous=False)
    recreated = inspect(docker_client, name)
    assert recreated["Id"] not in (original["Id"], current["Id"])
    assert inspect(docker_client, f"{name}--failed")["Id"] == current["Id"]
    assert_identical_config(current, recreated, "2.3.1", "2.3.0")
    assert recreated["Config"]["Labels"]["io.september.engine.rolled-back-from"] == "engine:2.3.1"
    assert "io.september.engine.previous-image" not in recreated["Config"]["Labels"]
    wait_healthy(engine)
    assert all(task(engine, t)["status"] == "completed" for t in before_ids + during_ids)


def test_missing_image_fails_before_anything_stops(orchestrator, docker_client):
    engine = orchestrator.up("2.3.0")
    before = inspect(docker_client, engine.container_name)
    fail_switch(engine.container_name, "engine:0.0.0-ctr-missing", r"engine:0\.0\.0-ctr-missing.*nothing was stopped")
    after = inspect(docker_client, engine.container_name)
    assert after["Id"] == before["Id"] and after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert after["State"]["Status"] == "running"
    assert inspect(docker_client, f"{engine.container_name}--previous") is None
    assert engine.is_healthy()


def test_failed_start_puts_the_old_container_back(orchestrator, docker_client):
    engine = orchestrator.up("2.3.0")
    task_id = turn(engine, "echo: kept")["done"]["task_id"]
    broken = orchestrator.broken_image()
    before = inspect(docker_client, engine.container_name)
    result = fail_switch(engine.container_name, broken, r"failed: .*no/such/engine.*old container was put back")
    assert any(a.startswith("undo:") for a in result["actions"])
    after = inspect(docker_client, engine.container_name)
    assert after["Id"] == before["Id"] and after["State"]["Status"] == "running"
    assert after["HostConfig"]["RestartPolicy"] == before["HostConfig"]["RestartPolicy"]
    assert after["Config"]["Image"] == "engine:2.3.0"
    fleet = {"label": f"{LABEL_FLEET}={orchestrator.fleet}"}
    names = [c.name for c in docker_client.containers.list(all=True, filters=fleet)]
    assert names == [engine.container_name], "the half-made container is removed, no previous is left"
    wait_healthy(engine)
    assert task(engine, task_id)["status"] == "completed"


def test_drain_lets_the_turn_in_flight_finish(orchestrator, docker_client):
    engine = orchestrator.up("2.3.0", extra_env={"ENGINE_TURN_LATENCY_MS": "10000"})
    started = threading.Event()
    outcome: dict = {}

    def in_flight() -> None:
        try:
            outcome["events"] = turn(engine, "what is 20 + 22", started)
        except (requests.RequestException, AssertionError, ValueError) as exc:
            outcome["error"] = repr(exc)

    worker = threading.Thread(target=in_flight, daemon=True)
    worker.start()
    assert started.wait(20), "the turn did not start"
    applied = switch(engine.container_name, "present", "engine:2.3.1", expect_image="engine:2.3.1")
    worker.join(60)
    assert "error" not in outcome, outcome
    events = outcome["events"]
    assert events["done"]["status"] == "completed" and events["done"]["answer"] == "42", events
    assert applied["container"]["timings"]["drain_seconds"] >= 1, applied["container"]["timings"]
    previous = inspect(docker_client, f"{engine.container_name}--previous")
    assert previous["State"]["ExitCode"] == 0, "drained, not killed"
    new = inspect(docker_client, engine.container_name)
    assert env_map(new)["ENGINE_TURN_LATENCY_MS"] == "10000"
    wait_healthy(engine)
    assert task(engine, events["task"]["task_id"])["status"] == "completed"


def test_a_failed_stop_leaves_the_engine_running(orchestrator, docker_client):
    """Docker stops the Engine but answers the drain's stop with an error: the module must start it again."""
    engine = orchestrator.up("2.3.0")
    name = engine.container_name
    task_id = turn(engine, "echo: written before the failed drain")["done"]["task_id"]
    before = inspect(docker_client, name)
    with DockerFaultProxy() as proxy:
        proxy.fail("POST", STOP, after=True)
        fail_switch(name, "engine:2.3.1", r"Could not drain-stop .*injected fault.*put back.*started again",
                    docker_host=proxy.url)
        assert proxy.calls("POST", STOP) == [(proxy.calls("POST", STOP)[0][0], True)]
        assert proxy.calls("POST", r"/containers/[^/]+/start") != [], "the Engine was started again"
    after = inspect(docker_client, name)
    assert after["Id"] == before["Id"] and after["State"]["Status"] == "running"
    assert after["State"]["StartedAt"] != before["State"]["StartedAt"], "it really was stopped, and started again"
    assert after["Config"]["Image"] == "engine:2.3.0"
    assert inspect(docker_client, f"{name}--previous") is None
    wait_healthy(engine)
    assert task(engine, task_id)["status"] == "completed"

    # a rollback on an Engine that is stopped but already on its image starts it
    docker_client.api.stop(name, timeout=10)
    switch(name, "rolled_back", "engine:2.3.0", expect_image="engine:2.3.0", expect_previous=False)
    assert inspect(docker_client, name)["State"]["Status"] == "running"
    wait_healthy(engine)


def test_rollback_goes_to_the_recorded_image_after_its_tag_moved(orchestrator, docker_client):
    repository = orchestrator.own_tags()
    good = docker_client.images.get(f"{repository}:2.3.0")
    engine = orchestrator.up(image=f"{repository}:2.3.0")
    name = engine.container_name
    task_id = turn(engine, "echo: on the good build")["done"]["task_id"]
    switch(name, "present", f"{repository}:2.3.1", expect_image=f"{repository}:2.3.1", expect_previous=True)
    labels = inspect(docker_client, name)["Config"]["Labels"]
    assert labels["io.september.engine.previous-image"] == f"{repository}:2.3.0"
    assert labels["io.september.engine.previous-image-id"] == good.id
    switch(name, "finalized", expect_previous=False)

    # the tag is moved to another build (a re-pushed tag); the old build stays on the host, untagged
    docker_client.images.get("engine:2.4.0").tag(repository, "2.3.0", force=True)
    assert docker_client.images.get(f"{repository}:2.3.0").id != good.id
    rolled = switch(name, "rolled_back", expect_image=f"{repository}:2.3.0", expect_previous=False)
    after = inspect(docker_client, name)
    assert after["Image"] == good.id, "the recorded image id, not what the tag points at now"
    assert docker_client.images.get(f"{repository}:2.3.0").id == good.id, "tagged again"
    assert f"tag {good.id[:19]} as {repository}:2.3.0" in rolled["container"]["actions"]
    assert rolled["container"]["version"] == "v2.3.0"  # the label, shown; never used to make a reference
    wait_healthy(engine)
    assert task(engine, task_id)["status"] == "completed"
