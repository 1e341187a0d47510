# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Disks that fill up and an Engine that crashes while upgrade.yml works on them.

- The snapshot folder (``engine_snapshot_dir``, a tmpfs) fills up WHILE the pre-upgrade snapshot of a 128 MiB brain
  is written (a Trigger fills the disk as soon as the snapshot's temporary file appears): the upgrade stops before
  the switch, nothing is kept half-written, the Engine is untouched. With room again, the Engine CRASHES (SIGKILL of
  its process; Docker restarts it) while the next run's snapshot is written: the snapshot is still consistent (it
  holds every write acknowledged before it began) and the upgrade goes on.
- A Compose project's folder (a tmpfs) fills up during its switch, after the switch recorded its attempt and while
  the Engine drains: the Engine is brought back on its release, and once there is room a re-run finishes the job.

Load runs throughout; no acknowledged write may be lost.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from engine_testkit import brain
from engine_testkit.dockerhosts import Trigger

from .conftest import Faults, iso_ts

pytestmark = pytest.mark.timeout(420)
PAD_MIB = 128


def writing_snapshot(folder: Path) -> bool:
    """The pre-upgrade snapshot's temporary file exists and has data: the copy is under way."""
    try:
        return any(e.name.startswith(".pre-upgrade") and e.stat().st_size > 0 for e in os.scandir(folder))
    except FileNotFoundError:
        return False


def test_the_snapshot_disk_fills_up_then_the_engine_crashes_mid_snapshot(faults: Faults) -> None:
    (engine,) = faults.up_engines(1)
    eid = engine.engine_id
    size = faults.pad_brain(engine, PAD_MIB)
    disk = faults.tmpfs(faults.tmp / "snapshot-disk", f"{(size >> 20) + 64 + 48}m")  # the copy and the 64 MiB margin
    faults.snapshot_dirs[eid] = disk
    faults.write_inventory({eid: {"engine_snapshot_dir": str(disk)}})
    with faults.load() as lg:
        before = faults.state()[eid]
        with Trigger(lambda: writing_snapshot(disk), lambda: faults.fill(disk), timeout=120, interval=0.005) as fill:
            run = faults.run("upgrade.yml", label="snapshot disk fills up", engine_target_version="2.4.0")
        assert fill.error is None and fill.fired.is_set(), fill.error
        assert run.rc == 2, run.stdout[-3000:]
        entry = faults.entry(engine)
        assert entry["status"] == "failed" and entry["reason"].startswith("pre-flight"), entry
        assert "filled up" in entry["reason"] and "nothing was kept" in entry["reason"], entry["reason"]
        assert faults.state()[eid] == before, "the Engine was touched"
        # The folder's lock file (.lock, empty) stays, as in every snapshot folder: when the copy beats the filler,
        # the disk fills up while the snapshot is committed, under that lock.
        left = sorted(p.name for p in disk.iterdir() if p.name != ".lock")
        assert left == [".filler"], f"a half-written snapshot was left: {left}"
        assert faults.lock_files() == []
        (disk / ".filler").unlink()

        def crash() -> None:
            container = engine.container()
            container.reload()
            os.kill(container.attrs["State"]["Pid"], signal.SIGKILL)

        with Trigger(lambda: writing_snapshot(disk), crash, timeout=120, interval=0.005) as crashed:
            run = faults.run("upgrade.yml", label="Engine crashes mid-snapshot", engine_target_version="2.4.0")
        assert crashed.error is None and crashed.fired.is_set(), crashed.error
    assert run.rc == 0, run.stdout[-3000:]
    entry = faults.entry(engine)
    assert entry["status"] == "upgraded", entry
    (pre,) = [m for m in faults.snapshots(eid).values() if m["kind"] == "pre-upgrade"]
    began = iso_ts(pre["backup_started_at"])
    in_snapshot = brain.task_ids(disk / f"{pre['name']}.sqlite", None)
    acked_before = {a.task_id for a in lg.acks(eid) if a.wall < began}
    assert acked_before and not acked_before - in_snapshot, "the snapshot lacks writes acknowledged before it began"
    faults.settled({eid: "2.4.0"})
    faults.assert_writes_kept(engine, lg)


def test_the_compose_folder_fills_up_during_the_switch(faults: Faults) -> None:
    folder = faults.tmpfs(faults.tmp / "compose", "4m")
    (engine,) = faults.up_engines(1, model="compose")
    state_file = Path(engine.compose_dir) / ".september-engine.json"

    def attempt_recorded() -> bool:
        try:
            return "in progress" in state_file.read_text()
        except FileNotFoundError:
            return False

    with faults.load() as lg:
        with Trigger(attempt_recorded, lambda: faults.fill(folder), timeout=120, interval=0.01) as fill:
            run = faults.run("upgrade.yml", label="compose folder fills up", engine_target_version="2.4.0")
        assert fill.error is None and fill.fired.is_set(), fill.error
        assert run.rc == 2, run.stdout[-3000:]
        entry = faults.entry(engine)
        assert entry["reason"].startswith("switch:"), entry["reason"]
        assert "No space left" in entry["reason"] or "filled up" in entry["reason"], entry["reason"]
        faults.fleet.wait_healthy([engine], timeout=60)
        assert engine.image_version() == "2.3.0"
        assert faults.lock_files() == []
        (folder / ".filler").unlink()
        rerun = faults.run("upgrade.yml", label="re-run with room", engine_target_version="2.4.0")
    assert rerun.rc == 0, rerun.stdout[-3000:]
    assert faults.entry(engine)["verdict"]["decision"] == "pass"
    faults.settled({engine.engine_id: "2.4.0"})
    faults.assert_writes_kept(engine, lg)
