# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""engine_lock through real ansible-playbook runs: the state machine, an expired takeover, and a real race.

The lock is a file on the Docker host; most cases need no Engine container. Those keyed by the Engine's identity
use one real Engine: two inventories naming it differently collide on its lock, and a long module keeps the
lock of its run alive (observed in the lock file while a second run tries to take it). Engine ids are
``cmp-<8 hex>``.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
import uuid
from pathlib import Path

import docker.errors
import pytest

from engine_testkit import sweep
from engine_testkit.ansible import PlaybookRun, run_playbook
from engine_testkit.fleet import LABEL_ENGINE_ID, LABEL_FLEET, LABEL_MODEL, LABEL_TESTKIT, unique_name

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"


@pytest.fixture
def lock_vars(tmp_path) -> dict:
    return {
        "lock_dir": str(tmp_path / "var" / "locks"),
        "lock_engine": f"cmp-{uuid.uuid4().hex[:8]}",
        "lock_owner": "awx job 42",
        "lock_run": uuid.uuid4().hex,
        "other_owner": "alice@laptop",
        "other_run": uuid.uuid4().hex,
    }


def play(name: str, **extra) -> PlaybookRun:
    run = run_playbook(PLAYBOOKS / name, extra_vars=extra)
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-2000:]
    return run


def test_take_refresh_refuse_release(lock_vars):
    run = play("engine_lock.yml", **lock_vars)
    path = Path(run.result("Take the lock")["lock"]["path"])
    assert path == Path(lock_vars["lock_dir"]) / f"{lock_vars['lock_engine']}.lock"
    assert stat.S_IMODE(os.stat(lock_vars["lock_dir"]).st_mode) == 0o700
    assert not path.exists()
    assert os.listdir(lock_vars["lock_dir"]) == []


def test_expired_lock_is_taken_over(lock_vars):
    run = play("engine_lock_takeover.yml", **lock_vars)
    path = Path(run.result("Take the expired lock from another run")["lock"]["path"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert set(data) == {"engine", "key", "owner", "run_id", "acquired_at", "expires_at"}
    assert (data["owner"], data["run_id"]) == (lock_vars["other_owner"], lock_vars["other_run"])
    assert "Took over the expired lock" in run.stdout + run.stderr


@pytest.mark.parametrize("contenders", [2, 4])
def test_concurrent_runs_exactly_one_wins(lock_vars, contenders):
    runs: dict[int, PlaybookRun] = {}
    barrier = threading.Barrier(contenders)

    def contender(i: int) -> None:
        barrier.wait()
        runs[i] = run_playbook(
            PLAYBOOKS / "engine_lock_acquire.yml",
            extra_vars=dict(lock_vars, lock_owner=f"contender {i}", lock_run=f"run-{i}"),
        )

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, r in runs.items() if r.rc == 0]
    assert len(winners) == 1, {i: r.stdout[-1500:] for i, r in runs.items()}
    winner = winners[0]
    path = Path(lock_vars["lock_dir"]) / f"{lock_vars['lock_engine']}.lock"
    assert json.loads(path.read_text())["run_id"] == f"run-{winner}"
    for i, r in runs.items():
        if i != winner:
            failed = r.result("Take the lock")
            assert failed["failed"] is True
            assert f"is locked by contender {winner} (run run-{winner})" in failed["msg"]


# --------------------------------------------------------------------------- keyed by the Engine's identity


@pytest.fixture
def slow_engine(docker_client, engine_images):
    """One Engine (volume at /data) whose stop takes its whole stop_timeout: it ignores its stop signal."""
    fleet = unique_name("lck")
    labels = {LABEL_TESTKIT: "engine_testkit", LABEL_FLEET: fleet, LABEL_ENGINE_ID: f"{fleet}-u001",
              LABEL_MODEL: "container"}
    volume = f"engine-data-{fleet}-u001"
    docker_client.volumes.create(volume, labels=labels)
    container = docker_client.containers.run(
        "engine:2.3.0", name=f"{fleet}-u001", detach=True, labels=labels, stop_signal="SIGWINCH",
        environment={"ENGINE_API_KEY": uuid.uuid4().hex}, volumes={volume: {"bind": "/data", "mode": "rw"}},
    )
    try:
        yield container
    finally:
        sweep(fleet, docker_client)


def test_two_inventory_names_of_one_engine_collide(lock_vars, slow_engine):
    common = {"lock_dir": lock_vars["lock_dir"], "lock_container": slow_engine.name, "ansible_connection": "local"}
    first = run_playbook(PLAYBOOKS / "engine_lock_identity.yml", inventory="prod-u001,",
                         extra_vars=dict(common, lock_owner="awx job 42", lock_run="run-a"))
    assert first.rc == 0, first.stdout[-4000:]
    taken = first.result("Take the lock")["lock"]
    key = first.result("Find the Engine")["engine"]["identity"]["key"]
    assert taken["key"] == key == f"volume:engine-data-{slow_engine.name}" and taken["engine"] == "prod-u001"
    second = run_playbook(PLAYBOOKS / "engine_lock_identity.yml", inventory="u001.engines.example.org,",
                          extra_vars=dict(common, lock_owner="alice@laptop", lock_run="run-b"))
    assert second.rc != 0
    refused = second.result("Take the lock")
    assert refused["failed"] is True
    assert f"u001.engines.example.org ({key}) is locked by awx job 42 (run run-a)" in refused["msg"]
    assert json.loads(Path(taken["path"]).read_text())["engine"] == "prod-u001"


def test_a_long_module_keeps_the_lock_of_its_run(lock_vars, slow_engine):
    ttl, stop_timeout = 3, 9
    extra = {"lock_dir": lock_vars["lock_dir"], "lock_container": slow_engine.name, "lock_owner": "awx job 42",
             "lock_run": "run-a", "lock_ttl": ttl, "keeper_stop_timeout": stop_timeout}
    path = Path(lock_vars["lock_dir"]) / f"engine-data-{slow_engine.name}.lock"
    seen: list[dict] = []
    outcome: dict = {}

    def long_run() -> None:
        outcome["run"] = run_playbook(PLAYBOOKS / "engine_lock_keeper.yml", extra_vars=extra)

    worker = threading.Thread(target=long_run, daemon=True)
    worker.start()
    deadline = time.monotonic() + 120
    while worker.is_alive() and time.monotonic() < deadline and "second" not in outcome:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = None
        if data and (not seen or data["expires_at"] != seen[-1]["expires_at"]):
            seen.append(data)
        stopping = slow_engine.client.containers.get(slow_engine.name).attrs["State"]
        # Once the drain has outlived the ttl the lock was taken with, a second run tries to take the lock.
        if data and stopping["Status"] == "running" and len(seen) >= 3 and "second" not in outcome:
            outcome["second"] = run_playbook(
                PLAYBOOKS / "engine_lock_acquire.yml",
                extra_vars={"lock_dir": lock_vars["lock_dir"], "lock_key": data["key"], "lock_owner": "alice",
                            "lock_run": "run-b"},
            )
        time.sleep(0.1)  # the sampling interval: every refresh of the lock file is seen while the module works
    worker.join(120)
    run = outcome["run"]
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-2000:]
    drained = run.result("Drain the Engine, longer than the lock's ttl, holding the lock")
    assert drained["container"]["timings"]["drain_seconds"] >= stop_timeout - 1
    # the lock file was refreshed while the module worked: later and later expiries, one acquisition
    assert len(seen) >= 3, seen
    assert len({d["acquired_at"] for d in seen}) == 1 and {d["run_id"] for d in seen} == {"run-a"}
    assert [d["expires_at"] for d in seen] == sorted({d["expires_at"] for d in seen})
    # a second run found it held by the live run, not expired, although its first ttl had passed
    second = outcome["second"]
    assert second.rc != 0 and "is locked by awx job 42 (run run-a)" in second.result("Take the lock")["msg"]
    assert run.result("Release the lock")["lock"]["action"] == "release" and not path.exists()
    try:
        assert slow_engine.client.containers.get(slow_engine.name).status == "running"
    except docker.errors.NotFound:
        pytest.fail("the Engine's container is gone")
