# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""brain_replay against real reference Engines, through real ansible-playbook (and the rollback's python API).

One Engine per test, on 2.3.0 under steady load (turns and feedback, every acknowledgement recorded): a pre-upgrade
snapshot, a switch to the release under test, a bad window under load, then a rollback with a brain restore. The
replay has to put back every turn and feedback the load generator saw acknowledged in the bad window. Fleets are
named ``rpl-<8 hex>`` and use host ports 9700-9799.
"""

from __future__ import annotations

import importlib
import sqlite3
import sys
import time
import uuid
from pathlib import Path

import pytest

from engine_testkit import LoadGenerator, applied_migrations, signal_ids, task_ids, wait_until
from engine_testkit.ansible import COLLECTIONS_PATH, ensure_collection_link, run_playbook
from engine_testkit.bad_window import rows
from engine_testkit.brain import missing_acknowledged_detail
from engine_testkit.fleet import Engine, Fleet

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"
UPGRADE = PLAYBOOKS / "brain_replay_upgrade.yml"
REPLAY = PLAYBOOKS / "brain_replay.yml"
SWITCH_BACK = PLAYBOOKS / "brain_replay_switch_back.yml"
BASE_PORT = 9700
OLD = [f"000{n}" for n in range(1, 6)]
MIGRATIONS = dict(migrations_source="table", migrations_table="engine_schema_migrations", migrations_column="version")

pytestmark = pytest.mark.timeout(420)


def collection(module: str):
    """A module_utils module of the collection (the python API the rollback calls), imported from build/."""
    ensure_collection_link()
    if str(COLLECTIONS_PATH) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS_PATH))
    return importlib.import_module(f"ansible_collections.september.engine.plugins.module_utils.{module}")


@pytest.fixture
def fleet(make_fleet) -> Fleet:
    return make_fleet(name=f"rpl-{uuid.uuid4().hex[:8]}", base_port=BASE_PORT)


def acked_after(load: LoadGenerator, engine: Engine, moment: float) -> tuple[set, set]:
    """(task ids, signal ids) acknowledged after the wall-clock `moment`."""
    tasks = {a.task_id for a in load.acks(engine.engine_id) if a.wall > moment}
    signals = {f.signal_id for f in load.feedback_acks(engine.engine_id) if f.wall > moment}
    return tasks, signals


def open_bad_window(fleet: Fleet, dest: Path, release: str, keep_load: bool = False):
    """An Engine on 2.3.0 under load, its pre-upgrade snapshot, the switch to `release` and a bad window with at
    least 12 acknowledged turns and 3 feedbacks on it. Returns (engine, load, snapshot entry, switched at)."""
    engine = fleet.up(1, "2.3.0")[0]
    load = LoadGenerator([engine], rate=6, feedback_ratio=0.3, workers_per_engine=3).start()
    try:
        load.wait_acked(6, timeout=120)
        run = run_playbook(UPGRADE, extra_vars=dict(rp_container=engine.container_name, rp_dest=str(dest),
                                                    rp_to=release))
        assert run.rc == 0, run.stdout[-5000:] + run.stderr[-2000:]
        switched = time.time()
        assert engine.image_version() == release

        def enough() -> bool:
            tasks, signals = acked_after(load, engine, switched)
            return len(tasks) >= 12 and len(signals) >= 3

        wait_until(enough, 120, f"a bad window on {release}")
    finally:
        if not keep_load:
            load.stop()
    return engine, load, run.result("Take the pre-upgrade snapshot")["snapshot"], switched


def rollback_and_replay(engine: Engine, dest: Path, mode: str, writes: bool):
    run = run_playbook(REPLAY, extra_vars=dict(rp_container=engine.container_name, rp_dest=str(dest),
                                               rp_brain=str(engine.brain_path()), rp_mode=mode, rp_writes=writes))
    assert run.rc == 0, run.stdout[-5000:] + run.stderr[-2000:]
    return run


def not_replayable(result: dict, table: str) -> dict:
    return {entry["reason"]: entry for entry in result["tables"].get(table, {}).get("not_replayable", [])}


def conversation_rows(path, task_ids_: set) -> dict:
    counts = {}
    for (task,) in rows(path, "conversations", "task_id"):
        if task in task_ids_:
            counts[task] = counts.get(task, 0) + 1
    return counts


def test_bad_window_of_2_4_2_replayed_after_the_rollback(fleet, tmp_path):
    """engine_rollback restores the pre-upgrade brain and starts 2.3.0; the Engine is stopped again, brain_replay
    predicts (check mode), replays, and a second run finds everything already there; started again, the Engine is
    healthy on 2.3.0 with every turn and feedback acknowledged in the bad window."""
    dest = tmp_path / "snapshots"
    replay_api = collection("_replay")
    engine, load, snapshot, _switched = open_bad_window(fleet, dest, "2.4.2")
    in_snapshot = task_ids(snapshot["path"], status=None)
    running_then = task_ids(snapshot["path"], status="running")
    bad_tasks = load.acked_task_ids(engine.engine_id) - in_snapshot
    bad_signals = load.acked_signal_ids(engine.engine_id) - signal_ids(snapshot["path"])
    assert len(bad_tasks) >= 12

    run = rollback_and_replay(engine, dest, "replay", writes=True)
    rollback = run.result("Roll back to 2.3.0 with the brain restored")["rollback"]
    replayed = run.result("Replay with diff")
    result = replayed["replay"]
    brain = engine.brain_path()

    # every turn acknowledged in the bad window: its task (completed), its conversation, its feedback
    assert bad_tasks <= task_ids(brain, status="completed")
    assert bad_signals <= signal_ids(brain)
    assert set(conversation_rows(brain, bad_tasks).values()) == {2}, "a user and an assistant message per turn"
    # what 2.3.0 wrote when the rollback started it (interrupted turns of the snapshot) is not overwritten
    missing = missing_acknowledged_detail(load, engine)
    assert missing["signals"] == set()
    changed = not_replayable(result, "tasks").get(replay_api.CHANGED, dict(count=0, sample=[]))
    assert missing["tasks"] <= running_then and len(missing["tasks"]) <= changed["count"]
    assert set(changed["sample"]) <= running_then
    # what the old schema cannot hold stays in the kept bad-window brain
    assert result["bad_window"]["name"] == rollback["previous_brain"]["name"]
    kept = Path(result["bad_window"]["path"])
    assert kept.is_file() and bad_tasks <= task_ids(kept, status="completed")
    tags = not_replayable(result, "memory_tags")[replay_api.NEW_TABLE]
    assert tags["count"] == len(rows(kept, "memory_tags")) > 0
    assert not_replayable(result, "engine_schema_migrations")[replay_api.MIGRATIONS_RECORD]["sample"] == ["0006"]
    assert result["tables"]["episodes"]["dropped_columns"] == ["tag_count"]
    assert applied_migrations(brain) == OLD
    diff = replayed["diff"]
    assert diff["after"]["rows"]["tasks"] - diff["before"]["rows"]["tasks"] == result["tables"]["tasks"][
        "replayed"]["inserted"] >= len(bad_tasks)
    # healthy on 2.3.0, and it serves the replayed turns
    assert engine.image_version() == "2.3.0" and engine.is_healthy()
    again = run.result("Replay again")
    assert again["replay"]["totals"]["already_there"] >= len(bad_tasks)


def test_the_rollbacks_python_api_replays_between_restore_and_start(fleet, tmp_path, docker_client):
    """What engine_rollback will do: check and stage the restore while 2.4.2 serves, stop it, install the restore,
    replay (replay_after_restore), switch back; the load never stops, and afterwards every turn and feedback it saw
    acknowledged, before, during and after the bad window, is in the brain, with no conflict at all."""
    restore_api, bad_window_api = collection("_restore"), collection("_bad_window")
    brain_api, store_api, errors = collection("_brain"), collection("_snapshot_store"), collection("_errors")
    dest = tmp_path / "snapshots"
    engine, load, snapshot, _switched = open_bad_window(fleet, dest, "2.4.2", keep_load=True)
    try:
        location = brain_api.locate_brain(dict(container=engine.container_name, brain_file="brain.sqlite",
                                               data_dir="/data"), docker_client)
        with pytest.raises(errors.EngineBusyError, match=f"container {engine.container_name} is running"):
            bad_window_api.require_stopped(docker_client, location)
        identity = brain_api.brain_identity(docker_client, location)
        store = store_api.SnapshotStore(str(dest))
        entry = store.get(snapshot["name"])
        plan = restore_api.check_restore(store, location, entry, identity=identity, client=docker_client,
                                         engine_may_run=True, verify=False)
        try:
            restore_api.stage_restore(plan)
            engine.container().stop(timeout=30)
            previous = restore_api.install_restore(plan, client=docker_client, migrations=MIGRATIONS,
                                                   fields=dict(engine=identity), defer_keep=True)
            result = bad_window_api.replay_after_restore(plan, previous, client=docker_client, mode="replay",
                                                         migrations=MIGRATIONS)
        finally:
            restore_api.abort_restore(plan)
        run = run_playbook(SWITCH_BACK, extra_vars=dict(rp_container=engine.container_name))
        assert run.rc == 0, run.stdout[-5000:] + run.stderr[-2000:]
        kept = restore_api.complete_restore(plan) or previous
        restarted = time.time()
        wait_until(lambda: len(acked_after(load, engine, restarted)[0]) >= 5, 120, "turns on 2.3.0 after the rollback")
    finally:
        load.stop()
    assert engine.image_version() == "2.3.0" and engine.is_healthy()
    missing = missing_acknowledged_detail(load, engine)
    assert missing == {"tasks": set(), "signals": set()}, missing
    # nothing but what the old schema cannot hold was left out: no conflict, no constraint refused
    reasons = {(table, entry["reason"]) for table, t in result["tables"].items() for entry in t["not_replayable"]}
    replay_api = collection("_replay")
    expected = {("memory_tags", replay_api.NEW_TABLE), ("engine_schema_migrations", replay_api.MIGRATIONS_RECORD)}
    assert reasons == expected
    assert result["totals"]["not_replayable"] == len(rows(kept["path"], "memory_tags")) + 1
    assert result["totals"]["replayed"] == result["totals"]["replayable"]
    assert result["totals"]["replayed"]["updated"] > 0, "tasks running at the snapshot, counters, graph weights"
    assert result["baseline"]["name"] == snapshot["name"] and result["bad_window"]["name"] == kept["name"]
    assert applied_migrations(engine.brain_path()) == OLD


def test_a_destructive_release_is_reported_not_replayed(fleet, tmp_path):
    """3.0.0 (migration 0008 drops channel_state_snapshots and raw_payload, deletes turn_started events): brain_replay
    mode=auto sees a destructive release and only reports, listing what cannot be replayed and writing nothing; the
    bad window stays in the kept brain."""
    dest = tmp_path / "snapshots"
    replay_api = collection("_replay")
    engine, load, snapshot, _switched = open_bad_window(fleet, dest, "3.0.0")
    bad_tasks = load.acked_task_ids(engine.engine_id) - task_ids(snapshot["path"], status=None)
    run = rollback_and_replay(engine, dest, "auto", writes=False)
    report = run.result("Replay with diff")["replay"]
    assert report["mode"] == "report" and report["predicted"]
    assert "table channel_state_snapshots dropped" in report["mode_reason"]
    assert "column working_memory_log.raw_payload dropped" in report["mode_reason"]
    dropped = not_replayable(report, "channel_state_snapshots")[replay_api.DROPPED_TABLE]
    assert dropped["count"] == len(rows(snapshot["path"], "channel_state_snapshots")) > 0
    started = [r for r in rows(snapshot["path"], "observability_events", "event_type") if r[0] == "turn_started"]
    assert not_replayable(report, "observability_events")[replay_api.DELETED]["count"] == len(started) > 0
    assert report["tables"]["working_memory_log"]["defaulted_columns"] == ["raw_payload"]
    for table in ("memory_tags", "turn_metrics"):
        assert not_replayable(report, table)[replay_api.NEW_TABLE]["count"] > 0, table
    migrations = not_replayable(report, "engine_schema_migrations")[replay_api.MIGRATIONS_RECORD]
    assert migrations["sample"] == ["0006", "0007", "0008"]
    assert report["totals"]["replayable"]["inserted"] >= len(bad_tasks) >= 12
    assert report["totals"]["replayed"] == dict(inserted=0, updated=0)
    # nothing was written: the bad window is in the kept brain only
    brain = engine.brain_path()
    assert not bad_tasks & task_ids(brain, status=None)
    assert bad_tasks <= task_ids(report["bad_window"]["path"], status="completed")
    assert applied_migrations(brain) == OLD and engine.image_version() == "2.3.0" and engine.is_healthy()
    conn = sqlite3.connect(f"file:{report['bad_window']['path']}?mode=ro&immutable=1", uri=True)
    try:
        assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'channel_state_snapshots'").fetchone() == (
            0,)
    finally:
        conn.close()
