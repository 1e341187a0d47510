# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kill -9 of ansible-playbook at each step of an upgrade, then a re-run that finishes the job or rolls it back.

Each scenario is one Engine under load, upgraded by ``upgrade.yml``; when the run reaches the step under test, its
whole process group gets SIGKILL (as AWX does when it cancels a job). The step is recognised from what the run
prints (a task's banner) or from what Docker does (the drain's SIGTERM, the new container's creation):

==========  =======  ========================================================================================
step        target   killed when
==========  =======  ========================================================================================
snapshot    2.4.0    the pre-upgrade snapshot of a 128 MiB brain is half written (its temporary file grows)
drain       2.4.0    Docker sends the Engine SIGTERM (the switch's drain began)
switch      2.4.0    Docker creates the new container (the old one is renamed ``--previous``)
health      2.4.0    the health wait on the new release begins
bake        2.4.0    the bake begins
restore     2.4.1    the rollback (2.4.1 fails its health gate) stops the bad container to restore the brain
compose     2.4.0    a Compose project's drain began (Docker sends SIGTERM)
migrated    2.9.9    the new container (2.4.0) started and migrated the brain (0006); it is then stopped, and
                     the re-run names another target (a typo): see below
==========  =======  ========================================================================================

The run is killed with every process under it (its modules too: ansible-core's workers are in sessions of their
own, so killing the process group alone would let the module of the moment run to its end). Once the dead run's
lock TTL (``engine_upgrade_lock_ttl``) has passed since the kill, the same ``upgrade.yml`` runs again. It must
end with the Engine running and healthy on the target (on 2.3.0 with its pre-upgrade brain after 2.4.1), judged to
the same standard as a first run (measures of its own baseline and of the window since the switch, not health
only), with no lock, no kept container and no temporary file left, and every acknowledged write in the brain (or,
after a restore, in the restored or the kept replaced brain).

``migrated``: 2.3.0 cannot start on the brain 2.4.0 migrated (MIGRATION_REQUIRED). The re-run to 2.9.9 must not put
2.3.0 back over it (it crash-looped, docs/faults.md D9): it starts 2.4.0 again, refuses to go on from that unverified
switch (exit 2) and leaves the Engine serving on 2.4.0, never restarted since; a third run, to 2.4.0, verifies it.

The scenarios run four at a time (module fixture ``killed``): each test checks its own.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from engine_testkit import brain
from engine_testkit.ansible import PlaybookRun
from engine_testkit.fleet import LABEL_FLEET, Engine
from engine_testkit.loadgen import LoadGenerator
from engine_testkit.waits import wait_stops_done

from .conftest import BROKEN_HEALTH_TIMEOUT, Faults, LiveRun, wait_for

pytestmark = pytest.mark.timeout(900)
#: Short enough to wait out, long enough for one Engine's upgrade (drain 5 + health 10 + longest bake 6 s).
KILL_VARS: dict[str, Any] = {
    "engine_upgrade_drain_timeout": 5,
    "engine_upgrade_health_timeout": 10,
    "engine_upgrade_bake_interval": 2,
    "engine_upgrade_canary_bake_seconds": 4,
    "engine_upgrade_canary_max_bake_seconds": 6,
    "engine_upgrade_lock_ttl": 25,
}
SCENARIOS = ("snapshot", "drain", "switch", "health", "bake", "restore", "compose", "migrated")
PARALLEL = 4


@dataclass
class Killed:
    """What one scenario did: the killed run, what Docker showed after the kill, the re-run, the load."""

    name: str
    faults: Faults
    engine: Engine | None = None
    target: str = "2.4.0"
    lg: LoadGenerator | None = None
    killed: LiveRun | None = None
    after_kill: dict[str, str] = field(default_factory=dict)
    rerun: PlaybookRun | None = None
    refused: PlaybookRun | None = None
    after_refusal: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


def docker_event(
    client: docker.DockerClient, since: float, match: Callable[[dict], bool], timeout: float = 120
) -> dict:
    """The first container event since ``since`` that ``match``es (Docker's event stream, read in a thread)."""
    found: dict = {}
    done = threading.Event()
    stream = client.events(since=int(since) - 1, decode=True, filters={"type": "container"})

    def read() -> None:
        try:
            for event in stream:
                if event.get("timeNano", 0) / 1e9 >= since and match(event):
                    found.update(event)
                    break
        except Exception:  # the stream was closed under us
            pass
        done.set()

    threading.Thread(target=read, daemon=True).start()
    done.wait(timeout)
    stream.close()
    assert found, "the Docker event never came"
    return found


def _attrs(event: dict) -> dict:
    return (event.get("Actor") or {}).get("Attributes") or {}


def kill_point(sc: Killed, run: LiveRun, started: float) -> None:
    """Wait until the run reaches the scenario's step, then SIGKILL it."""
    engine, client = sc.engine, sc.faults.client
    assert engine is not None
    name = engine.container().name
    if sc.name == "snapshot":
        folder = sc.faults.snapshot_dir(engine.engine_id)
        wait_for(
            lambda: (
                folder.is_dir()
                and any(e.name.startswith(".pre-upgrade") and e.stat().st_size > 0 for e in os.scandir(folder))
            ),
            "the snapshot's temporary file",
            timeout=180,
            interval=0.005,
        )
    elif sc.name in ("drain", "compose"):
        docker_event(
            client,
            started,
            lambda e: e.get("Action") == "kill" and _attrs(e).get("signal") == "15" and _attrs(e).get("name") == name,
        )
    elif sc.name == "migrated":
        docker_event(
            client,
            started,
            lambda e: (
                e.get("Action") == "start"
                and _attrs(e).get("name") == name
                and _attrs(e).get("image") == "engine:2.4.0"
            ),
        )
        wait_for(
            lambda: "0006" in brain.applied_migrations(engine.brain_path()), "2.4.0 to migrate the brain", timeout=60
        )
    elif sc.name == "switch":
        docker_event(client, started, lambda e: e.get("Action") == "create" and _attrs(e).get("name") == name)
    elif sc.name == "health":
        run.wait_for_line(r"TASK \[.*Wait until the Engine is healthy on")
    elif sc.name == "bake":
        run.wait_for_line(r"TASK \[.*Bake: healthy at every check")
    elif sc.name == "restore":
        run.wait_for_line(r"TASK \[.*Rollback \| Roll back \(checks")
        docker_event(
            client,
            started,
            lambda e: (
                e.get("Action") == "kill" and _attrs(e).get("name") == name and _attrs(e).get("image") == "engine:2.4.1"
            ),
        )
    run.kill()


def engine_state(engine: Engine) -> dict[str, Any]:
    container = engine.container()
    container.reload()
    return dict(
        version=engine.image_version(),
        status=container.status,
        restarts=container.attrs.get("RestartCount"),
        healthy=engine.is_healthy(),
        kept=[c.name for c in container.client.containers.list(all=True, filters={"name": f"{container.name}--"})],
    )


def play(sc: Killed) -> Killed:
    started_at = time.monotonic()
    f = sc.faults
    try:
        (sc.engine,) = f.up_engines(1, model="compose" if sc.name == "compose" else "container")
        if sc.name == "snapshot":
            f.pad_brain(sc.engine, 128)
        sc.target = "2.4.1" if sc.name == "restore" else "2.4.0"
        extra = {**KILL_VARS, "engine_target_version": sc.target}
        if sc.name == "restore":
            extra["engine_upgrade_health_timeout"] = BROKEN_HEALTH_TIMEOUT
        with f.load() as sc.lg:
            started = time.time()
            sc.killed = f.start("upgrade.yml", label=f"killed at {sc.name}", **extra)
            kill_point(sc, sc.killed, started)
            # What Docker still finishes by itself (a stop the killed run asked for: a drain under way) ends first.
            wait_stops_done(f.client, started, f"{LABEL_FLEET}={f.fleet.name}")
            sc.after_kill = {
                c.name: c.status
                for c in f.client.containers.list(all=True, filters={"label": f"io.september.fleet={f.fleet.name}"})
            }
            assert f.lock_files(), "the killed run left no lock"
            if sc.name == "migrated":  # the dead run's new container goes down too (an OOM kill, a host reboot)
                sc.engine.container().stop(timeout=10)
            # engine_upgrade_lock_ttl is how long a dead run may keep its Engines locked: then the job runs again.
            killed_at = sc.killed.killed_at
            assert killed_at is not None
            wait_for(
                lambda: time.monotonic() > killed_at + KILL_VARS["engine_upgrade_lock_ttl"] + 1,
                "the dead run's lock TTL to pass",
                timeout=120,
                interval=0.5,
            )
            if sc.name == "migrated":
                sc.refused = f.run(
                    "upgrade.yml", label="re-run to a typo target", **dict(extra, engine_target_version="2.9.9")
                )
                sc.after_refusal = engine_state(sc.engine)
            sc.rerun = f.run("upgrade.yml", label=f"re-run after {sc.name}", **extra)
    except BaseException:  # reported by the scenario's test
        sc.error = traceback.format_exc()
    sc.seconds = time.monotonic() - started_at
    return sc


def selected_steps(request: pytest.FixtureRequest) -> list[str]:
    """The steps whose tests this session runs (``-k compose`` plays the compose scenario alone)."""
    chosen = {
        item.callspec.params["step"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_killed_then_rerun" and hasattr(item, "callspec")
    }
    return [name for name in SCENARIOS if name in chosen] or list(SCENARIOS)


@pytest.fixture(scope="module")
def killed(
    request: pytest.FixtureRequest,
    docker_client: docker.DockerClient,
    fault_images: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Killed]]:
    scenarios = {
        name: Killed(name, Faults(docker_client, tmp_path_factory.mktemp(f"kill-{name}")))
        for name in selected_steps(request)
    }
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            list(pool.map(play, scenarios.values()))
        print(
            f"kill scenarios: {time.monotonic() - started:.1f}s in all; "
            + ", ".join(f"{s.name} {s.seconds:.0f}s" for s in scenarios.values())
        )
        yield scenarios
    finally:
        for sc in scenarios.values():
            sc.faults.close()


@pytest.mark.parametrize("step", list(SCENARIOS))
def test_killed_then_rerun(killed: dict[str, Killed], step: str) -> None:
    sc = killed[step]
    f, engine = sc.faults, sc.engine
    print(f"{step}: killed run {sc.killed.log if sc.killed else None}; after the kill: {sc.after_kill}")
    assert sc.error is None, sc.error
    assert engine is not None and sc.rerun is not None and sc.lg is not None
    rerun = sc.rerun
    report = f.report()
    entry = f.entry(engine, report)
    if sc.target == "2.4.1":
        assert rerun.rc == 2, rerun.stdout[-3000:]
        assert entry["status"] == "rolled_back", entry
        assert brain.applied_migrations(engine.brain_path())[-1] == "0005"
        f.settled({engine.engine_id: "2.3.0"})
        snaps = f.snapshots(engine.engine_id)
        pre = max((m for m in snaps.values() if m["kind"] == "pre-upgrade"), key=lambda m: m["created_at"])
        kept = max((m for m in snaps.values() if m["kind"] == "pre-restore"), key=lambda m: m["created_at"])
        f.assert_writes_kept_restored(engine, pre, kept, sc.lg)
        return
    if step == "migrated":
        refused = sc.refused
        assert refused is not None and refused.rc == 2, refused.stdout[-3000:] if refused else None
        assert "the brain holds migration(s) 0006, which engine:2.3.0 does not ship" in refused.stdout
        assert "a dead run switched it to engine:2.4.0, which runs unverified" in refused.stdout
        assert sc.after_refusal == dict(
            version="2.4.0", status="running", restarts=0, healthy=True, kept=[f"{engine.container().name}--previous"]
        ), sc.after_refusal
        assert f.entry(engine, f.reports()[-2])["lock_taken_over"], "the typo re-run did not take the dead lock over"
    else:
        assert entry["lock_taken_over"], "the re-run did not say it took the dead run's lock over"
    assert rerun.rc == 0, rerun.stdout[-3000:]
    assert entry["status"] in ("upgraded", "verified"), entry
    # The same standard as a first run: judged on measures (its baseline, the window since the switch).
    verdict = entry["verdict"] or {}
    assert verdict.get("decision") == "pass", verdict
    assert verdict["evidence"]["baseline"]["turns"] > 0 and verdict["evidence"]["canary"]["turns"] > 0, verdict
    f.settled({engine.engine_id: "2.4.0"})
    f.assert_writes_kept(engine, sc.lg)
    assert not [p for p in Path(f.tmp).glob("run*.out") if "Traceback" in p.read_text()]
