# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""rollback.yml (and snapshot.yml) under faults, on an Engine whose brain is on a bind mount of a small disk.

One per-user container Engine, its ``/data`` a bind mount of a 96 MiB tmpfs on this host (no Docker volume: its
identity is ``bind:<path>``), under load throughout. upgrade.yml takes it to 2.4.0 (migration 0006); then, in turn:

1. upgrade.yml to 2.3.1 (older than its brain) is refused, nothing changed;
2. the disk is filled: rollback.yml refuses before the Engine stops (no room to stage the snapshot);
3. a sidecar container mounts the brain's folder: rollback.yml refuses before the Engine stops;
4. the Engine is killed (SIGKILL: its brain is a 12 KiB file and a hot ``-wal`` that holds every recent write);
   snapshot.yml snapshots it with the WAL's rows (nothing acknowledged missing from the snapshot);
5. rollback.yml on the killed Engine: back on 2.3.0 with the pre-upgrade brain; the replaced brain, WAL and all,
   is kept; no acknowledged write is in neither brain; no -wal or -shm of the replaced brain is left to the
   restored one;
6. rollback.yml again, as a tired operator does: nothing to do, exit 0 (it said "no previous release recorded" and
   failed, which stopped a fleet's rollback at that Engine); then rollback.yml to 2.4.0, the bad release typed for
   the good one: refused, nothing changed (it upgraded the Engine with no snapshot and no verification);
7. the operator stops the Engine (now on 2.3.0); rollback.yml to 2.3.0 starts it again (it is never left down).

And a Compose Engine rolled back by rollback.yml is upgraded again (defect D3).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine_testkit import brain
from engine_testkit.fleet import Engine
from engine_testkit.loadgen import LoadGenerator

from .conftest import Faults, failure_messages, wait_for

pytestmark = pytest.mark.timeout(420)


def die_events(f: Faults, container_id: str, since: float) -> list[str]:
    events = f.client.events(
        since=int(since) - 1,
        until=int(time.time()) + 1,
        decode=True,
        filters={"type": "container", "container": container_id, "event": ["die", "kill"]},
    )
    return [e.get("Action", "") for e in events]


def upgrade_to_240(faults: Faults, engine: Engine, data: Path) -> str:
    """upgrade.yml takes the bind-mounted Engine to 2.4.0; returns its new container's id."""
    run = faults.run("upgrade.yml", label="to 2.4.0", engine_target_version="2.4.0")
    assert run.rc == 0, run.stdout[-3000:]
    entry = faults.entry(engine)
    assert entry["identity"] == f"bind:{data}", entry["identity"]
    assert entry["status"] == "upgraded" and entry["verdict"]["decision"] == "pass", entry
    return engine.container().id


def assert_older_target_refused(faults: Faults, engine: Engine, upgraded: str) -> None:
    """upgrade.yml to 2.3.1, a target older than the brain (0006): refused, nothing changed."""
    run = faults.run("upgrade.yml", label="to 2.3.1", engine_target_version="2.3.1")
    assert run.rc == 2, run.stdout[-3000:]
    assert any("0006" in m and "does not ship" in m and "rollback playbook" in m for m in failure_messages(run))
    assert engine.container().id == upgraded and engine.image_version() == "2.4.0"


def assert_refused_before_the_stop(
    faults: Faults, engine: Engine, upgraded: str, label: str, undo: Callable[[], object],
    says: Callable[[str], bool],
) -> None:
    """rollback.yml under a fault (``undo`` takes the fault away after the run): refused, one failure message
    ``says`` why, the Engine never stopped, the same container healthy."""
    since = time.time()
    try:
        run = faults.run("rollback.yml", label=label)
    finally:
        undo()
    assert run.rc == 2, run.stdout[-3000:]
    assert any(says(m) for m in failure_messages(run)), failure_messages(run)
    assert die_events(faults, upgraded, since) == [], "the Engine was stopped though the restore could not be done"
    assert engine.container().id == upgraded and engine.is_healthy()


def snapshot_the_killed_engine(faults: Faults, engine: Engine, lg: LoadGenerator) -> None:
    """snapshot.yml on the killed Engine: its snapshot holds what only the hot WAL held; the Engine left down."""
    wait_for(lambda: engine.container().status == "exited", "the Engine to be down")
    wal = Path(f"{engine.brain_path()}-wal")
    assert wal.exists() and wal.stat().st_size > 0, "no hot WAL to test with"
    run = faults.run("snapshot.yml", label="snapshot of the killed Engine")
    assert run.rc == 0, run.stdout[-3000:]
    eid = engine.engine_id
    scheduled = [m for m in faults.snapshots(eid).values() if m["kind"] == "scheduled"]
    (taken,) = scheduled
    missing = brain.missing_acknowledged_detail(lg, engine, faults.snapshot_dir(eid) / f"{taken['name']}.sqlite")
    assert missing == {"tasks": set(), "signals": set()}, f"the snapshot lacks what only the WAL held: {missing}"
    assert engine.container().status == "exited", "snapshot.yml started an Engine"


def roll_back_the_killed_engine(faults: Faults, engine: Engine, data: Path, lg: LoadGenerator) -> None:
    """rollback.yml on the killed Engine: back on 2.3.0 with the pre-upgrade brain; the replaced brain is kept with
    its WAL's rows."""
    eid = engine.engine_id
    backup = faults.tmp / "before-rollback"
    shutil.copytree(data, backup, ignore=shutil.ignore_patterns(".filler"))
    run = faults.run("rollback.yml", label="rollback of the killed Engine")
    assert run.rc == 0, run.stdout[-3000:]
    (report,) = faults.reports("rollback")[-1:]
    (result,) = report["engines"]
    assert result["rolled_back"] and result["brain_restored"] and result["kind"] == "image+brain", result
    snaps = faults.snapshots(eid)
    pre = next(m for m in snaps.values() if m["kind"] == "pre-upgrade")
    kept = next(m for m in snaps.values() if m["kind"] == "pre-restore")
    assert result["previous_brain"]["name"] == kept["name"]
    faults.assert_writes_kept_restored(engine, pre, kept, lg)
    assert brain.applied_migrations(engine.brain_path())[-1] == "0005"
    faults.settled({eid: "2.3.0"})


def test_rollback_faults_on_a_bind_mounted_brain(faults: Faults) -> None:
    data = faults.tmpfs(faults.tmp / "brain-disk", "96m")
    engine = faults.up_bind_engine(data)
    eid = engine.engine_id
    with faults.load() as lg:
        upgraded = upgrade_to_240(faults, engine, data)

        # 1. A target older than the brain.
        assert_older_target_refused(faults, engine, upgraded)

        # 2. The disk is full: refused before the stop.
        filler = faults.fill(data, leave=4 * 1024 * 1024)
        assert_refused_before_the_stop(
            faults, engine, upgraded, "rollback, disk full", filler.unlink, lambda m: "Not enough free space" in m
        )

        # 3. A sidecar holds the brain's folder: refused before the stop.
        sidecar = faults.sidecar(engine)
        assert_refused_before_the_stop(
            faults, engine, upgraded, "rollback, sidecar", lambda: sidecar.remove(force=True),
            lambda m: sidecar.name in m and "The Engine was not stopped" in m,
        )
        assert faults.lock_files() == [] and faults.temp_files() == []

        # 4. The Engine is killed: a hot WAL holds its recent writes.
        engine.container().kill()
    snapshot_the_killed_engine(faults, engine, lg)

    # 5. The rollback of the killed Engine: the replaced brain is kept with its WAL's rows.
    roll_back_the_killed_engine(faults, engine, data, lg)

    # 6. rollback.yml again: nothing to do. Then the bad release typed for the good one: refused.
    rolled_back = engine.container().id
    again_since = time.time()
    run = faults.run("rollback.yml", label="rollback again")
    assert run.rc == 0, run.stdout[-3000:]
    (result,) = faults.reports("rollback")[-1]["engines"]
    assert not result["rolled_back"] and result["kind"] == "none" and result["healthy"], result
    run = faults.run("rollback.yml", label="rollback to the bad release", engine_rollback_version="2.4.0")
    assert run.rc == 2, run.stdout[-3000:]
    says = "engine:2.4.0 is newer than the running engine:2.3.0: a rollback only goes back"
    assert any(says in m for m in failure_messages(run)), failure_messages(run)
    assert die_events(faults, rolled_back, again_since) == [] and engine.container().id == rolled_back
    assert brain.applied_migrations(engine.brain_path())[-1] == "0005" and engine.is_healthy()

    # 7. Stopped by its operator on the release to go back to: rollback.yml starts it, nothing else.
    engine.container().stop(timeout=10)
    run = faults.run("rollback.yml", label="rollback of a stopped Engine on 2.3.0", engine_rollback_version="2.3.0")
    assert run.rc == 0, run.stdout[-3000:]
    faults.settled({eid: "2.3.0"})
    assert brain.applied_migrations(engine.brain_path())[-1] == "0005"


def test_a_compose_engine_rolled_back_by_rollback_yml_is_upgraded_again(faults: Faults) -> None:
    """A Compose Engine upgraded, rolled back by rollback.yml (its brain restored), then upgraded again (to 2.3.1: a
    release never rolled back, which the gate of rolled-back releases lets through): the rollback is recorded as
    settled (verified), so the next upgrade's pre-flight takes the Engine for one to upgrade, not for a dead run's
    switch to resume (was defect D3: 'could not be brought back (running)', for good)."""
    (engine,) = faults.up_engines(1, model="compose")
    eid = engine.engine_id
    state_file = Path(engine.compose_dir) / ".september-engine.json"
    with faults.load() as lg:
        run = faults.run("upgrade.yml", label="to 2.4.0", engine_target_version="2.4.0")
        assert run.rc == 0, run.stdout[-3000:]
        run = faults.run("rollback.yml", label="back to 2.3.0")
        assert run.rc == 0, run.stdout[-3000:]
        assert engine.image_version() == "2.3.0"
        (last,) = json.loads(state_file.read_text())["services"]["engine"]["history"][-1:]
        assert (last["action"], last["result"], last["verified"]) == ("rolled_back", "ok", True), last
        run = faults.run("rollback.yml", label="back to 2.3.0 again")  # nothing to do: not "nothing recorded"
        assert run.rc == 0, run.stdout[-3000:]
        assert not faults.reports("rollback")[-1]["engines"][0]["rolled_back"] and engine.image_version() == "2.3.0"
        run = faults.run("upgrade.yml", label="to 2.3.1 after the rollback", engine_target_version="2.3.1")
        assert run.rc == 0, run.stdout[-3000:]
    entry = faults.entry(engine)
    assert entry["status"] == "upgraded" and entry["verdict"]["decision"] == "pass", entry
    faults.settled({eid: "2.3.1"})
    assert brain.applied_migrations(engine.brain_path())[-1] == "0005"
    snaps = faults.snapshots(eid)
    pre = min((m for m in snaps.values() if m["kind"] == "pre-upgrade"), key=lambda m: m["created_at"])
    kept = next(m for m in snaps.values() if m["kind"] == "pre-restore")
    faults.assert_writes_kept_restored(engine, pre, kept, lg)
