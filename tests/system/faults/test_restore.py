# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults of the rollback inside upgrade.yml: whose brain comes back, and what a bad snapshot or release does.

- two Engines sharing one snapshot folder (``engine_snapshot_dir`` as a group variable) in one batch, upgraded to
  2.4.1 (health fails): each is rolled back with ITS OWN brain (issue 10, defect 1);
- a pre-upgrade snapshot corrupted after it was taken (a Trigger flips bytes in it as soon as its manifest is
  written): the rollback refuses BEFORE it stops the Engine (defect 5), and the report says so;
- a crash-looping release (2.5.0) at the canary while one of the two control Engines has a provider outage of its
  own: one unhealthy neighbour is no outage, the canary is rolled back with its brain (defect 6).

Load runs on every Engine throughout; every acknowledged write is looked for afterwards (in the restored brain,
or in the replaced brain the rollback kept).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine_testkit import brain
from engine_testkit.dockerhosts import Trigger

from .conftest import BROKEN_HEALTH_TIMEOUT, Faults, failure_messages

pytestmark = pytest.mark.timeout(300)


def container_events(f: Faults, container_id: str, since: float) -> list[str]:
    """Docker's actions on the container ``container_id`` since ``since`` (epoch seconds): create, start, kill..."""
    events = f.client.events(since=int(since) - 1, until=int(time.time()) + 1, decode=True,
                             filters={"type": "container", "container": container_id})
    return [e.get("Action", "") for e in events]


def manifests(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def test_engines_sharing_one_snapshot_folder_each_get_their_own_brain_back(faults: Faults) -> None:
    shared = faults.tmp / "shared-snapshots"
    a, b = faults.up_engines(2)
    # As people do: the folder set once for the whole group.
    inventory = yaml.safe_load(faults.inventory_path.read_text())
    inventory["all"]["children"]["engines"]["vars"] = {"engine_snapshot_dir": str(shared)}
    faults.inventory_path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    faults.snapshot_dirs = {a.engine_id: shared, b.engine_id: shared}
    with faults.load() as lg:
        run = faults.run("upgrade.yml", label="2.4.1 with a shared folder", engine_target_version="2.4.1",
                         engine_rollout_stages=["100%"], engine_upgrade_health_timeout=BROKEN_HEALTH_TIMEOUT)
    assert run.rc == 2, run.stdout[-3000:]
    report = faults.report()
    assert report["outcome"] == "stopped_rolled_back" and len(report["batches"]) == 1, report["batches"]
    taken = manifests(shared)
    for engine, other in ((a, b), (b, a)):
        entry = faults.entry(engine, report)
        assert entry["status"] == "rolled_back" and entry["rollback_kind"] == "image+brain", entry
        # The snapshot it was restored from is its own (the manifest names its volume), and not the other's.
        restored = entry["rollback"]["snapshot"]
        assert taken[restored]["kind"] == "pre-upgrade"
        assert taken[restored]["engine"]["key"] == f"volume:{engine.volume}", taken[restored]["engine"]
        assert restored != faults.entry(other, report)["rollback"]["snapshot"]
        assert taken[restored]["sqlite_version"], "the manifest records the SQLite library version"
        # Its brain holds its own user's turns, none of the other's; nothing acknowledged is lost.
        mine, theirs = brain.task_ids(engine.brain_path(), None), brain.task_ids(other.brain_path(), None)
        assert lg.acked_task_ids(engine.engine_id) and not mine & lg.acked_task_ids(other.engine_id), (
            f"{engine.engine_id}'s brain holds {other.engine_id}'s turns")
        assert not mine & theirs
        kept = next(m for m in taken.values() if m["kind"] == "pre-restore"
                    and m["engine"]["key"] == f"volume:{engine.volume}")
        faults.assert_writes_kept_restored(engine, taken[restored], kept, lg)
        assert brain.applied_migrations(engine.brain_path())[-1] == "0005"
    faults.settled({a.engine_id: "2.3.0", b.engine_id: "2.3.0"})


def test_a_corrupt_pre_upgrade_snapshot_is_refused_before_the_engine_stops(faults: Faults) -> None:
    (engine,) = faults.up_engines(1)
    folder = faults.snapshot_dir(engine.engine_id)
    flipped: list[str] = []

    def snapshot_written() -> bool:
        return any(m.get("kind") == "pre-upgrade" for m in manifests(folder).values()) if folder.is_dir() else False

    def flip() -> None:
        (name,) = [n for n, m in manifests(folder).items() if m.get("kind") == "pre-upgrade"]
        data = folder / f"{name}.sqlite"
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        data.write_bytes(bytes(raw))
        flipped.append(name)

    with faults.load() as lg, Trigger(snapshot_written, flip, timeout=120, interval=0.02) as trigger:
        started = time.time()
        run = faults.run("upgrade.yml", label="2.4.1, snapshot corrupted", engine_target_version="2.4.1",
                         engine_upgrade_health_timeout=BROKEN_HEALTH_TIMEOUT)
    assert trigger.error is None and flipped, trigger.error
    assert run.rc == 2, run.stdout[-3000:]
    entry = faults.entry(engine)
    assert entry["status"] == "rollback_failed", entry["status"]
    assert "fails its checksum" in entry["reason"] and flipped[0] in entry["reason"], entry["reason"]
    assert any("fails its checksum" in m and "nothing was changed" in m for m in failure_messages(run))
    # Refused before the stop: the 2.4.1 container the switch made still runs, and was never stopped.
    container = engine.container()
    container.reload()
    assert container.status == "running" and engine.image_version() == "2.4.1"
    actions = container_events(faults, container.id, started)
    assert "start" in actions and not {"kill", "stop", "die"} & set(actions), actions
    # What was serving before the switch is kept (stopped) for the operator, who is told the Engine needs a hand.
    assert "needs a hand" in run.stdout
    faults.settled({engine.engine_id: "2.4.1"}, healthy=False, kept_previous=True)
    faults.assert_writes_kept(engine, lg)


def test_a_crash_loop_is_rolled_back_though_one_control_has_an_outage(faults: Faults) -> None:
    canary, control_ok, control_down = faults.up_engines(3)
    inventory = yaml.safe_load(faults.inventory_path.read_text())
    inventory["all"]["children"]["engine_canary"] = {"hosts": {canary.engine_id: None}}
    faults.inventory_path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    control_down.set_llm_outage(True)
    before = faults.state()
    try:
        with faults.load(engines=[canary, control_ok]) as lg:
            run = faults.run("upgrade.yml", label="2.5.0 with one control down", engine_target_version="2.5.0",
                             engine_upgrade_health_timeout=BROKEN_HEALTH_TIMEOUT)
    finally:
        control_down.set_llm_outage(False)
    assert run.rc == 2, run.stdout[-3000:]
    report = faults.report()
    entry = faults.entry(canary, report)
    assert report["outcome"] == "stopped_rolled_back", report["outcome"]
    assert entry["status"] == "rolled_back" and entry["rollback_kind"] == "image+brain", entry
    assert entry["outage"]["kind"] == "bad_release", entry["outage"]
    assert "crash" in entry["reason"].lower() or "restart" in entry["reason"].lower(), entry["reason"]
    assert brain.applied_migrations(canary.brain_path())[-1] == "0005"
    after = faults.state()
    for other in (control_ok, control_down):
        assert after[other.engine_id] == before[other.engine_id], f"{other.engine_id} was touched"
    assert report["untouched"] == [control_ok.engine_id, control_down.engine_id] or set(report["untouched"]) == {
        control_ok.engine_id, control_down.engine_id}
    faults.settled({e.engine_id: "2.3.0" for e in faults.engines})
    faults.assert_writes_kept(control_ok, lg)
    snaps = faults.snapshots(canary.engine_id)
    pre = next(m for m in snaps.values() if m["kind"] == "pre-upgrade")
    kept = next(m for m in snaps.values() if m["kind"] == "pre-restore")
    faults.assert_writes_kept_restored(canary, pre, kept, lg)
