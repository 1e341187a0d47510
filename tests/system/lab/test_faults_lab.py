# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults of a Docker host reached over SSH (docs/faults.md): the host is lost, or its Docker daemon restarts, in
the middle of an Engine's switch.

One lab host (its own dockerd and sshd) with three per-user container Engines on 2.3.0, and one local Engine; each
test upgrades some of them (``--limit``) with ``upgrade.yml`` over SSH, with synthetic probe turns as the evidence
(the lab's Engines listen on the lab host's loopback: the probes are sent from there; they are real turns):

- a batch of a lab Engine and the local Engine: the lab host is PAUSED (frozen: sshd, dockerd and the module stop
  answering) as soon as Docker sends its Engine the drain SIGTERM: the run ends UNREACHABLE, the local Engine is
  upgraded, and the report (outcome ``stopped_unreachable``) and the webhook say that an Engine was lost
  mid-upgrade (defect 11); with the host back and the dead run's lock expired, a re-run finds the Engine and
  finishes the upgrade, judged on its probes;
- the lab host's Docker daemon RESTARTS as soon as a drain began: the Engine ends running and healthy on a known
  version, the report says what happened, a re-run finishes the job;
- the canary alone (a batch of one) is lost mid-switch: the run must still write its report and tell the webhook.

Afterwards each Engine runs, healthy, on 2.4.0; no lock of it is left on the host; the turns acknowledged before
the runs are in its brain; the Engines not in the run were not touched.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from engine_testkit import brain, wait_until
from engine_testkit.dockerhosts import DockerLab, LabEngine, LabHost
from engine_testkit.pathimport import import_path
from engine_testkit.webhook import WebhookReceiver

pytestmark = pytest.mark.timeout(600)
HERE = Path(__file__).resolve().parent
STATE_DIR = "/var/lib/september-engine"


_h = import_path("september_faults_harness", HERE.parent / "faults" / "conftest.py")
#: The fault suite's settings, evidence from 6 probe turns before and after the switch, and a lock a re-run can wait
#: out (drain 10 + health 20 + longest bake 8 s).
LAB_VARS: dict[str, Any] = {
    **_h.FAULT_VARS,
    "engine_upgrade_probe_turns": 6,
    "engine_upgrade_lock_ttl": 40,
    "engine_upgrade_bake_interval": 2,
}
#: A turn sent from the lab host (the Engines listen on its loopback); prints the acknowledged task ids.
TURNS = r"""
import json, os, sys, urllib.request
url, n, ids = sys.argv[1], int(sys.argv[2]), []
for i in range(n):
    req = urllib.request.Request(url + "/execute", data=json.dumps({"message": f"echo: lab turn {i}"}).encode(),
                                 headers={"Content-Type": "application/json", "X-Engine-Key": os.environ["KEY"]})
    event = None
    with urllib.request.urlopen(req, timeout=30) as resp:
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "done":
                ids.append(json.loads(line[5:])["task_id"])
print(json.dumps(ids))
"""


class LabRuns:
    """upgrade.yml runs over SSH against the lab's inventory, output read while they run."""

    def __init__(self, lab: DockerLab, tmp: Path, local: Any = None):
        self.lab, self.tmp = lab, tmp
        self.report_dir = tmp / "reports"
        self.inventory = lab.write_inventory(tmp / "inventory.yml", local=[local] if local else [],
                                             local_vars={"engine_state_dir": str(tmp / "local-state")})
        self.count = 0
        self.live: list[Any] = []

    def start(self, label: str, limit: str, **extra: Any) -> Any:
        import os
        import tempfile

        from engine_testkit.ansible import CALLBACK_PLUGINS, ansible_env, ensure_collection_link
        ensure_collection_link()
        self.count += 1
        fd, vars_file = tempfile.mkstemp(suffix=".json", dir=self.tmp)
        with os.fdopen(fd, "w") as handle:
            json.dump({**LAB_VARS, "engine_report_dir": str(self.report_dir), **extra}, handle)
        results = self.tmp / f"run{self.count:02d}.results.json"
        argv = [str(Path(sys.executable).with_name("ansible-playbook")), str(_h.PLAYBOOKS / "upgrade.yml"),
                "-i", str(self.inventory), "--limit", limit, "-e", f"@{vars_file}"]
        env = ansible_env({"ANSIBLE_STDOUT_CALLBACK": "test_results", "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_PLUGINS),
                           "SEPTEMBER_TEST_RESULTS": str(results), "PYTHONUNBUFFERED": "1"})
        log = self.tmp / f"run{self.count:02d}-{label.replace(' ', '-')}.out"
        run = _h.LiveRun(argv, env, log, results, Path(vars_file))
        self.live.append(run)
        print(f"--- started {label}: {log}")
        return run

    def report(self) -> dict[str, Any]:
        paths = sorted(self.report_dir.glob("*/upgrade.json"), key=lambda p: p.stat().st_mtime)
        assert paths, f"no report under {self.report_dir}"
        return json.loads(paths[-1].read_text())

    def close(self) -> None:
        for run in self.live:
            if run.proc.poll() is None:
                run.kill()


def turns(host: LabHost, engine: LabEngine, n: int = 5) -> set[str]:
    out = host.exec(["python3", "-c", TURNS, engine.url, str(n)], env={"KEY": engine.api_key}, check=True)
    ids = set(json.loads(out.stdout))
    assert len(ids) == n, out.stdout
    return ids


def brain_tasks(host: LabHost, engine: LabEngine, tmp: Path) -> set[str]:
    """The completed task ids of the Engine's brain (copied from the lab host, WAL and all)."""
    path = engine.brain_path()
    local = tmp / f"brain-{engine.engine_id}-{time.monotonic_ns()}"
    local.mkdir()
    for suffix in ("", "-wal"):
        if host.exists(f"{path}{suffix}"):
            host.fetch(f"{path}{suffix}", local / f"brain.sqlite{suffix}")
    return brain.task_ids(local / "brain.sqlite")


def locks_held(host: LabHost, engine: LabEngine | None = None) -> list[str]:
    """Lock files on the lab host that name a holder (of ``engine`` only, when given)."""
    held = []
    for name in host.listdir(f"{STATE_DIR}/locks"):
        if engine is not None and engine.volume not in name:
            continue
        text = host.read_file(f"{STATE_DIR}/locks/{name}").decode() or "{}"
        if json.loads(text).get("run_id"):
            held.append(name)
    return held


def wait_locks_expired(host: LabHost, engine: LabEngine, timeout: float = 120) -> None:
    """Wait until the Engine's lock on the host, held by a dead run, has expired."""

    def expiries() -> list[float]:
        held = [json.loads(host.read_file(f"{STATE_DIR}/locks/{name}").decode() or "{}")
                for name in locks_held(host, engine)]
        return [_h._harness.iso_ts(holder["expires_at"]) for holder in held if holder.get("run_id")]

    wait_until(lambda: all(moment < time.time() for moment in expiries()), timeout,
               "the dead run's lock to expire", interval=0.5, last=expiries)


def on_drain(host: LabHost, engine: LabEngine, action: Any, since: float) -> threading.Thread:
    """Run ``action`` when the lab host's Docker sends the Engine its drain SIGTERM (read from its event stream)."""
    client = docker.DockerClient(base_url=f"tcp://127.0.0.1:{host.docker_port}", timeout=30)

    def watch() -> None:
        stream = client.events(since=int(since) - 1, decode=True, filters={"type": "container", "event": "kill"})
        for event in stream:
            attrs = (event.get("Actor") or {}).get("Attributes") or {}
            if (event.get("timeNano", 0) / 1e9 >= since and attrs.get("name") == engine.container_name
                    and attrs.get("signal") == "15"):
                action()
                break
        stream.close()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def lab(docker_client: docker.DockerClient, lab_image: str, engine_images: list[str],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    from engine_testkit.fleet import TEST_BASE_PORT, Fleet, sweep, unique_name
    tmp = tmp_path_factory.mktemp("faults-lab")
    docker_lab = DockerLab(unique_name("lf"), tmp / "lab", client=docker_client)
    local = Fleet(name=unique_name("lfl"), base_port=TEST_BASE_PORT, api_key=docker_lab.api_key, client=docker_client)
    try:
        docker_lab.up(1)
        docker_lab.load_images(["2.3.0", "2.4.0"])
        docker_lab.add_engines(docker_lab.hosts[0], 3, "2.3.0", model="container")
        local.up(1, "2.3.0", model="container")
        yield Lab(docker_lab, local, tmp)
    finally:
        try:
            local.down()
        finally:
            sweep(local.name, docker_client)
            docker_lab.down()


@dataclass
class Lab:
    lab: DockerLab
    local: Any
    tmp: Path

    @property
    def host(self) -> LabHost:
        return self.lab.hosts[0]


@pytest.fixture
def runs(lab: Lab, tmp_path: Path) -> Iterator[LabRuns]:
    r = LabRuns(lab.lab, tmp_path, local=lab.local)
    try:
        yield r
    finally:
        r.close()


def settled(host: LabHost, engine: LabEngine, version: str) -> None:
    host.fleet(engine.api_key).wait_healthy([engine], 60)
    container = engine.container()
    container.reload()
    assert container.status == "running" and engine.image_version() == version
    names = host.docker_ps(all_=True)
    assert f"{engine.container_name}--previous" not in names, names
    assert locks_held(host, engine) == [], "a lock was left on the host"


def test_a_host_lost_mid_switch_is_reported_and_a_rerun_finishes(lab: Lab, runs: LabRuns) -> None:
    host = lab.host
    engine, other, _spare = host.engines
    (local,) = lab.local.engines
    before_other = other.container().attrs["State"]["StartedAt"]
    acked = turns(host, engine)
    with WebhookReceiver() as hook:
        watcher = on_drain(host, engine, host.pause, time.time())
        try:
            lost = runs.start("host lost mid-switch", f"{engine.engine_id},{local.engine_id}",
                              engine_target_version="2.4.0", engine_rollout_stages=["100%"],
                              engine_webhook_url=hook.url).wait(timeout=300)
        finally:
            watcher.join(5)
            host.unpause()
            host.wait_ssh(60)
        print(lost.stdout[-3000:])
        # The lost Engine fails its play (recorded lost by its rescue, not dropped as unreachable): exit 2.
        assert lost.rc == 2, lost.stdout[-3000:]
        report = runs.report()
        assert report["outcome"] == "stopped_unreachable", report["outcome"]
        assert report["lost"] == [engine.engine_id], report["lost"]
        statuses = {e["engine"]: e["status"] for e in report["engines"]}
        assert statuses == {local.engine_id: "upgraded", engine.engine_id: "lost"}, statuses
        ends = hook.texts("end")
        assert ends and "lost" in ends[-1].lower() and engine.engine_id in ends[-1], hook.messages
        assert not ends[-1].startswith("All clear"), ends[-1]
        # Back: the dead run's lock expires, and the same job again finds the Engine and finishes.
        wait_locks_expired(host, engine)
        rerun = runs.start("re-run after the host came back", engine.engine_id, engine_target_version="2.4.0",
                           engine_webhook_url=hook.url).wait(timeout=300)
    print(rerun.stdout[-3000:])
    assert rerun.rc == 0, rerun.stdout[-3000:]
    entry = next(e for e in runs.report()["engines"] if e["engine"] == engine.engine_id)
    assert entry["status"] in ("upgraded", "verified"), entry
    verdict = entry["verdict"] or {}
    assert verdict.get("decision") == "pass" and verdict["evidence"]["canary"]["turns"] > 0, verdict
    settled(host, engine, "2.4.0")
    assert acked <= brain_tasks(host, engine, lab.tmp)
    assert other.container().attrs["State"]["StartedAt"] == before_other, "the other Engine was touched"
    assert local.image_version() == "2.4.0" and local.is_healthy()


def test_a_docker_daemon_restart_mid_switch(lab: Lab, runs: LabRuns) -> None:
    host = lab.host
    _upgraded, engine, _spare = host.engines
    acked = turns(host, engine)
    watcher = on_drain(host, engine, host.restart_dockerd, time.time())
    run = runs.start("dockerd restarts mid-switch", engine.engine_id, engine_target_version="2.4.0").wait(timeout=300)
    watcher.join(60)
    print(run.stdout[-3000:])
    assert run.rc in (0, 2), run.stdout[-3000:]
    entry = next(e for e in runs.report()["engines"] if e["engine"] == engine.engine_id)
    version = "2.4.0" if run.rc == 0 else "2.3.0"
    assert entry["status"] == ("upgraded" if run.rc == 0 else "rolled_back"), entry
    settled(host, engine, version)
    assert acked <= brain_tasks(host, engine, lab.tmp)
    if run.rc != 0:
        rerun = runs.start("re-run after the restart", engine.engine_id, engine_target_version="2.4.0").wait(300)
        assert rerun.rc == 0, rerun.stdout[-3000:]
        settled(host, engine, "2.4.0")
        assert acked <= brain_tasks(host, engine, lab.tmp)


def test_a_canary_alone_lost_mid_switch_is_still_reported(lab: Lab, runs: LabRuns) -> None:
    host = lab.host
    *_done, engine = host.engines
    with WebhookReceiver() as hook:
        watcher = on_drain(host, engine, host.pause, time.time())
        try:
            lost = runs.start("canary alone lost", engine.engine_id, engine_target_version="2.4.0",
                              engine_webhook_url=hook.url).wait(timeout=300)
        finally:
            watcher.join(5)
            host.unpause()
            host.wait_ssh(60)
    assert lost.rc == 2, lost.stdout[-3000:]
    assert list(runs.report_dir.glob("*/upgrade.json")), "no report was written"
    report = runs.report()
    assert report["outcome"] == "stopped_unreachable" and report["lost"] == [engine.engine_id], report
    ends = hook.texts("end")
    assert ends and engine.engine_id in ends[-1] and "lost" in ends[-1].lower(), hook.messages


@pytest.mark.parametrize("model", ["container", "compose"])
@pytest.mark.parametrize("step", ["health", "bake"])
def test_a_canary_alone_lost_after_its_switch_is_reported_and_a_rerun_finishes(
        lab: Lab, tmp_path: Path, step: str, model: str) -> None:
    # F50: the switch went through, then the host was lost while the new release came up (the health wait) or
    # during the bake. A batch of one: the report, the webhook's end message, exit 2, and no rollback tried there.
    host = lab.host
    (engine,) = lab.lab.add_engines(host, 1, "2.3.0", model=model)  # a fresh Engine, the last of the host
    runs = LabRuns(lab.lab, tmp_path, local=lab.local)
    banner = {"health": r"TASK \[.*Wait until the Engine is healthy on", "bake": r"TASK \[.*Bake: healthy at every"}
    try:
        acked = turns(host, engine)
        with WebhookReceiver() as hook:
            run = runs.start(f"canary lost at {step}", engine.engine_id, engine_target_version="2.4.0",
                             engine_webhook_url=hook.url)
            try:
                run.wait_for_line(banner[step], timeout=240)
                host.pause()
                lost = run.wait(timeout=300)
            finally:
                host.unpause()
                host.wait_ssh(60)
            print(lost.stdout[-3000:])
            assert lost.rc == 2, lost.stdout[-3000:]
            report = runs.report()
            assert report["outcome"] == "stopped_unreachable" and report["lost"] == [engine.engine_id], report
            (entry,) = [e for e in report["engines"] if e["engine"] == engine.engine_id]
            assert entry["status"] == "lost" and "after the switch" in json.dumps(entry), entry
            ends = hook.texts("end")
            assert ends and engine.engine_id in ends[-1] and "lost" in ends[-1].lower(), hook.messages
        # Back: the Engine runs on (the new release, unverified); once the dead run's lock expires the same job
        # verifies it and finishes, its acknowledged turns kept.
        wait_locks_expired(host, engine)
        rerun = runs.start(f"re-run after the loss at {step}", engine.engine_id, engine_target_version="2.4.0")
        rerun = rerun.wait(timeout=300)
        print(rerun.stdout[-3000:])
        assert rerun.rc == 0, rerun.stdout[-3000:]
        entry = next(e for e in runs.report()["engines"] if e["engine"] == engine.engine_id)
        assert entry["status"] in ("upgraded", "verified"), entry
        settled(host, engine, "2.4.0")
        assert acked <= brain_tasks(host, engine, lab.tmp)
    finally:
        runs.close()
