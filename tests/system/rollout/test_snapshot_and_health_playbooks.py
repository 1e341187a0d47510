# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/snapshot.yml and playbooks/health.yml on a small real fleet (both hosting models), under load."""

from __future__ import annotations

import json
import stat
import time
from datetime import datetime
from pathlib import Path

import pytest

from engine_testkit import brain, wait_until
from engine_testkit.ansible import REPO_ROOT, run_playbook
from engine_testkit.loadgen import LoadGenerator

PLAYBOOKS = REPO_ROOT / "playbooks"
BASE_PORT = 9180


@pytest.fixture
def small_fleet(make_fleet, tmp_path):
    fleet = make_fleet(base_port=BASE_PORT)
    fleet.up(2, "2.3.0", model="mixed")
    return fleet, fleet.write_inventory(tmp_path / "inventory.yml")


@pytest.mark.timeout(300)
def test_snapshot_playbook_takes_consistent_snapshots_and_applies_retention(small_fleet, tmp_path):
    fleet, inventory = small_fleet
    state = tmp_path / "state"
    extra = {"engine_state_dir": str(state), "engine_snapshot_keep_last": 2, "engine_snapshot_keep_days": 0}
    with LoadGenerator(fleet.engines, rate=2.0) as load:
        load.wait_acked(1, timeout=15)
        runs = []
        for _attempt in range(3):
            runs.append(run_playbook(PLAYBOOKS / "snapshot.yml", extra_vars=extra, inventory=inventory))
            # Snapshot names carry the second they were taken: the next run starts in a later one.
            taken = int(time.time())
            wait_until(lambda taken=taken: int(time.time()) > taken, 15, "the next second", interval=0.05)
    for run in runs:
        assert run.rc == 0, run.stdout[-3000:]

    for engine in fleet.engines:
        folder = state / "snapshots" / engine.engine_id
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        manifests = sorted(folder.glob("*.json"))
        # Three were taken; retention kept the newest two.
        assert len(manifests) == 2, [m.name for m in manifests]
        newest = max((json.loads(m.read_text()) for m in manifests), key=lambda m: m["created_at"])
        snapshot = folder / f"{newest['name']}.sqlite"
        assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
        # Every turn acknowledged before the newest snapshot began is in it (and there were some).
        acked_before = load.acked_before(engine.engine_id, _ts(newest["backup_started_at"]), clock="wall")
        assert acked_before
        in_snapshot = brain.task_ids(snapshot)
        assert acked_before <= in_snapshot, sorted(acked_before - in_snapshot)[:5]
        assert newest["reason"] == "scheduled"
        assert newest["applied_migrations"][-1].startswith("0005")

    result = role_result(runs[-1], "Snapshot | Snapshot the brain and apply retention", fleet.engines[0].engine_id)
    assert len(result["pruned"]) == 1


def role_result(run, name: str, host: str | None = None) -> dict:
    """The one result of the role task called `name` (task names carry their role as a prefix)."""
    found = [
        result
        for play in (run.data or {}).get("plays", [])
        for task in play.get("tasks", [])
        if task["task"]["name"].split(" : ", 1)[-1] == name
        for name_, result in task["hosts"].items()
        if host is None or name_ == host
    ]
    assert len(found) == 1, (name, host, len(found), run.stdout[-2000:])
    return found[0]


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.timeout(300)
def test_health_playbook_reports_each_engine_and_the_fleet(small_fleet):
    fleet, inventory = small_fleet
    broken = fleet.engines[1]
    broken.set_llm_outage(True)
    try:
        run = run_playbook(PLAYBOOKS / "health.yml", inventory=inventory)
    finally:
        broken.set_llm_outage(False)
    assert run.rc == 0, run.stdout[-3000:]
    lines = {e.engine_id: role_result(run, "Health | Engine", e.engine_id)["msg"] for e in fleet.engines}
    assert lines[fleet.engines[0].engine_id] == f"{fleet.engines[0].engine_id}: 2.3.0 healthy"
    assert lines[broken.engine_id].startswith(f"{broken.engine_id}: 2.3.0 NOT HEALTHY (unhealthy)")
    assert "llm_provider" in lines[broken.engine_id]
    summary = role_result(run, "Health | Fleet summary")["msg"]
    assert summary.startswith("2 Engines, 1 healthy")

    # Asked to, it fails the unhealthy Engine's host.
    broken.set_llm_outage(True)
    try:
        strict = run_playbook(
            PLAYBOOKS / "health.yml", inventory=inventory, extra_vars={"engine_health_report_fail_unhealthy": True}
        )
    finally:
        broken.set_llm_outage(False)
    assert strict.rc != 0
    assert strict.stats[broken.engine_id]["failures"] == 1
    assert strict.stats[fleet.engines[0].engine_id]["failures"] == 0


def test_inventory_file_is_private(small_fleet):
    _fleet, inventory = small_fleet
    assert stat.S_IMODE(Path(inventory).stat().st_mode) == 0o600
