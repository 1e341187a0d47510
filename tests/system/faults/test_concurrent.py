# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Two runs at once on one Engine: the second is refused by the Engine's lock and changes nothing (defect 10).

One per-user container Engine under load. Run A upgrades it to 2.4.0 with a long canary bake. While A bakes
(it holds the Engine's lock), three more runs start together:

- B: upgrade.yml from ANOTHER inventory that names the same container differently (the lock is keyed by the
  Engine's identity, its brain's volume, not by the inventory name);
- C: rollback.yml;
- D: snapshot.yml.

Each must fail with a message that says who holds the lock, and change nothing: same container, never stopped, no
snapshot added, no lock of theirs left. A then completes, on evidence, and releases its lock.
"""

from __future__ import annotations

import time

import pytest
import yaml

from .conftest import Faults, failure_messages

pytestmark = pytest.mark.timeout(300)
#: A's canary bake: long enough for B, C and D to be refused while A still holds the lock (three playbooks starting
#: at once on a machine busy with other test groups took over 35 s once); probed every 7 s, so that the probes' own
#: time on a busy host cannot fail A's bake (docs/faults.md, defect D2).
BAKE = 60


def test_a_second_upgrade_a_rollback_and_a_snapshot_are_refused_while_an_upgrade_runs(faults: Faults) -> None:
    (engine,) = faults.up_engines(1)
    eid = engine.engine_id
    alias = faults.tmp / "inventory-alias.yml"
    inventory = yaml.safe_load(faults.inventory_path.read_text())
    hosts = inventory["all"]["children"]["engines"]["hosts"]
    hosts[f"{eid}-alias"] = hosts.pop(eid)
    alias.write_text(yaml.safe_dump(inventory, sort_keys=False))
    with faults.load() as lg:
        a = faults.start("upgrade.yml", label="A upgrade", engine_target_version="2.4.0",
                         engine_upgrade_canary_bake_seconds=BAKE, engine_upgrade_canary_max_bake_seconds=BAKE,
                         engine_upgrade_bake_interval=7)
        a.wait_for_line(r"TASK \[.*Bake: healthy at every check")
        during = faults.state()[eid]
        assert during.version == "2.4.0", during
        snapshots = faults.snapshot_files()
        since = time.time()
        b = faults.start("upgrade.yml", label="B upgrade, other inventory", inventory=alias,
                         engine_target_version="2.4.0")
        c = faults.start("rollback.yml", label="C rollback")
        d = faults.start("snapshot.yml", label="D snapshot")
        second = {"B": b.wait(), "C": c.wait(), "D": d.wait()}
        assert "Release the lock" not in a.output, "A finished before B, C and D were refused: the test proves nothing"
        # Nothing changed while they ran: the same container, never stopped; no snapshot added.
        assert faults.state()[eid] == during
        events = faults.client.events(since=int(since) - 1, until=int(time.time()) + 1, decode=True,
                                      filters={"type": "container", "container": during.container_id})
        assert not {"kill", "stop", "die"} & {e.get("Action") for e in events}
        assert faults.snapshot_files() == snapshots
        for name, run in second.items():
            assert run.rc != 0, f"{name} was not refused:\n{run.stdout[-3000:]}"
            messages = failure_messages(run)
            assert any("locked by" in m and "A upgrade" not in m and "until" in m for m in messages), (name, messages)
        first = a.wait()
    assert first.rc == 0, first.stdout[-3000:]
    entry = faults.entry(engine, next(r for r in faults.reports() if any(
        e["engine"] == eid and e["status"] == "upgraded" for e in r["engines"])))
    assert entry["verdict"]["decision"] == "pass", entry["verdict"]
    faults.settled({eid: "2.4.0"})
    faults.assert_writes_kept(engine, lg)
