# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""brain_snapshot and brain_snapshot_info against real reference Engines, through real ansible-playbook.

Each case runs a playbook that applies, applies again (idempotent), runs in check mode (predicts and
changes nothing) and with diff, and asserts on what the module returned; pytest then checks the real
files (modes, manifests, rows of the brains) against what the Engine acknowledged. Fleets are named
``snap-<8 hex>`` and use host ports 9200-9299.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from engine_testkit import LoadGenerator, free_port, task_ids, wait_healthy, wait_until
from engine_testkit.ansible import COLLECTIONS_PATH, ensure_collection_link, run_playbook
from engine_testkit.fleet import LABEL_FLEET, LABEL_TESTKIT, Fleet

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"
PRESENT = PLAYBOOKS / "brain_snapshot.yml"
RESTORE = PLAYBOOKS / "brain_snapshot_restore.yml"
RETENTION = PLAYBOOKS / "brain_snapshot_retention.yml"
BAD_INPUT = PLAYBOOKS / "brain_snapshot_bad_input.yml"
ENGINES = PLAYBOOKS / "brain_snapshot_engines.yml"
SNAPSHOT_PLAYBOOK = Path(__file__).resolve().parents[3] / "playbooks" / "snapshot.yml"
BASE_PORT = 9200
LAST_PORT = 9299


def collection(module: str):
    """A module_utils module of the collection (the python API the rollback calls), imported from build/."""
    ensure_collection_link()
    if str(COLLECTIONS_PATH) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS_PATH))
    return importlib.import_module(f"ansible_collections.september.engine.plugins.module_utils.{module}")


@pytest.fixture
def fleet(make_fleet) -> Fleet:
    return make_fleet(name=f"snap-{uuid.uuid4().hex[:8]}", base_port=BASE_PORT)


@pytest.fixture
def dest(tmp_path) -> Path:
    return tmp_path / "backups" / "engine"


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def listing(folder: Path) -> list[str] | None:
    return sorted(os.listdir(folder)) if folder.is_dir() else None


def integrity(path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def wall(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def take(**extra) -> dict:
    """Run the present playbook; returns the results of its tasks by name (rc and its asserts checked)."""
    run = run_playbook(PRESENT, extra_vars=extra)
    assert run.rc == 0, run.stdout[-5000:] + run.stderr[-2000:]
    return {task: run.result(task) for task in ("Take a snapshot", "Take a snapshot with diff", "List the snapshots")}


def check_files(dest: Path, names: list[str]) -> None:
    assert mode(dest) == 0o700
    assert [n for n in listing(dest) if not n.startswith(".")] == sorted(
        [f"{n}.json" for n in names] + [f"{n}.sqlite" for n in names])
    for name in os.listdir(dest):
        assert mode(dest / name) == 0o600, name


def test_snapshot_during_steady_load_holds_every_acknowledged_task(fleet, dest):
    engine = fleet.up(1, "2.3.0")[0]
    load = LoadGenerator([engine], rate=6, feedback_ratio=0.3, workers_per_engine=3).start()
    try:
        load.wait_acked(12)  # steady load before the snapshots begin
        results = take(
            snap_container=engine.container_name, snap_dest=str(dest), snap_name="under-load", snap_retain_days=1
        )
        load.wait_acked(5, after=load.ack_counts())  # and after them
    finally:
        load.stop()
    assert len(load.acks(engine.engine_id)) >= 20, load.stats()
    check_files(dest, ["under-load", "under-load-diff"])
    for task in ("Take a snapshot", "Take a snapshot with diff"):
        snapshot = results[task]["snapshot"]
        manifest = snapshot["manifest"]
        path = Path(snapshot["path"])
        assert integrity(path) == ["ok"]
        assert sha256(path) == manifest["sha256"] == snapshot["sha256"] and path.stat().st_size == manifest["size"]
        started = wall(manifest["backup_started_at"])
        acked = load.acked_before(engine.engine_id, started, clock="wall")
        assert acked, "the load must have acknowledged turns before the snapshot began"
        assert acked <= task_ids(path, status="completed"), "an acknowledged turn is missing from the snapshot"
        signals = load.feedback_before(engine.engine_id, started, clock="wall")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            assert signals <= {row[0] for row in conn.execute("SELECT signal_id FROM learning_signals")}
        finally:
            conn.close()
        assert manifest["journal_mode"] == "wal" and manifest["applied_migrations"] == [f"000{i}" for i in range(1, 6)]
        assert manifest["engine"]["container"] == engine.container_name
        assert manifest["engine"]["image"] == "engine:2.3.0" and manifest["engine"]["version"] == "2.3.0"
        assert manifest["source"]["mount_type"] == "volume" and manifest["source"]["volume"] == engine.volume
        assert manifest["reason"] == "system test" and manifest["verify"] == {"mode": "full", "result": "ok"}
    later = load.acked_task_ids(engine.engine_id) - task_ids(results["Take a snapshot"]["snapshot"]["path"])
    assert later, "turns acknowledged after the first snapshot are not in it (the load went on)"


def test_snapshot_located_by_volume_and_by_path(fleet, dest):
    engine = fleet.up(1, "2.3.0")[0]
    by_volume = take(snap_volume=engine.volume, snap_dest=str(dest / "v"), snap_name="by-volume")
    manifest = by_volume["Take a snapshot"]["snapshot"]["manifest"]
    assert manifest["source"]["source"] == "volume" and manifest["engine"]["container"] == engine.container_name
    by_path = take(snap_path=str(engine.brain_path()), snap_dest=str(dest / "p"), snap_name="by-path")
    manifest = by_path["Take a snapshot"]["snapshot"]["manifest"]
    assert manifest["source"]["path"] == str(engine.brain_path()) and manifest["engine"]["version"] == "2.3.0"
    check_files(dest / "v", ["by-volume", "by-volume-diff"])
    check_files(dest / "p", ["by-path", "by-path-diff"])


def test_snapshot_of_a_bind_mounted_brain(fleet, dest, tmp_path, docker_client):
    folder = tmp_path / "engine-data"
    folder.mkdir()
    port = free_port(BASE_PORT, LAST_PORT, client=docker_client, descending=True)  # the fleet's ports go upward
    name = f"{fleet.name}-bind"
    docker_client.containers.run(
        "engine:2.3.0", name=name, detach=True, environment={"ENGINE_API_KEY": fleet.api_key},
        volumes={str(folder): {"bind": "/data", "mode": "rw"}}, ports={"8000/tcp": ("127.0.0.1", port)},
        labels={LABEL_FLEET: fleet.name, LABEL_TESTKIT: "engine_testkit"},  # fleet.down() sweeps it
    )
    wait_healthy(f"http://127.0.0.1:{port}")
    results = take(snap_container=name, snap_dest=str(dest), snap_name="bind")
    manifest = results["Take a snapshot"]["snapshot"]["manifest"]
    assert manifest["source"]["mount_type"] == "bind" and manifest["source"]["mount_source"] == str(folder)
    assert manifest["source"]["path"] == str(folder / "brain.sqlite")
    assert manifest["engine"]["container"] == name
    check_files(dest, ["bind", "bind-diff"])
    assert integrity(dest / "bind.sqlite") == ["ok"]


def test_restore_brings_back_the_snapshot_and_keeps_the_replaced_brain(fleet, dest):
    engine = fleet.up(1, "2.3.0")[0]
    load = LoadGenerator([engine], rate=6, feedback_ratio=0, workers_per_engine=3).start()
    try:
        load.wait_acked(5)
        snapshot = take(snap_container=engine.container_name, snap_dest=str(dest), snap_name="good")
        snapshot = snapshot["Take a snapshot"]["snapshot"]
        load.wait_acked(10, after=load.ack_counts())  # the bad window: writes after the snapshot
    finally:
        load.stop()
    snapshot_ids = task_ids(snapshot["path"], status=None)
    after_snapshot = load.acked_task_ids(engine.engine_id) - snapshot_ids
    assert after_snapshot
    container = engine.container()
    container.stop(timeout=30)
    brain = engine.brain_path()
    owner, brain_mode = (brain.stat().st_uid, brain.stat().st_gid), mode(brain)
    bad_window_ids = task_ids(brain, status=None)
    assert after_snapshot <= bad_window_ids
    run = run_playbook(RESTORE, extra_vars=dict(
        snap_container=engine.container_name, snap_dest=str(dest), snap_snapshot="good",
        snap_brain_path=str(brain), snap_brain_sha256=sha256(brain),
    ))
    assert run.rc == 0, run.stdout[-5000:] + run.stderr[-2000:]
    restored = run.result("Restore with diff")
    previous = restored["previous_brain"]
    assert not [p for p in brain.parent.iterdir() if p.name != "brain.sqlite"], "stale -wal/-shm or temp file left"
    assert task_ids(brain, status=None) == snapshot_ids
    assert task_ids(previous["path"], status=None) == bad_window_ids
    assert restored["data_at_risk"]["tasks"] == len(bad_window_ids) - len(snapshot_ids) > 0
    assert restored["data_at_risk"]["conversations"] > 0
    assert integrity(brain) == ["ok"] and integrity(previous["path"]) == ["ok"]
    assert (brain.stat().st_uid, brain.stat().st_gid) == owner and mode(brain) == brain_mode
    with open(brain, "rb") as handle:
        assert handle.read(20)[18:20] == b"\x02\x02", "the restored brain is back in WAL mode"
    kept = dest / f"{previous['name']}.json"
    assert mode(kept) == 0o600 and mode(dest / f"{previous['name']}.sqlite") == 0o600
    assert "pre-restore: brain replaced by restore of good" in kept.read_text()
    container.start()
    wait_healthy(engine.url)
    headers = {"X-Engine-Key": engine.api_key}
    gone = sorted(after_snapshot)[0]
    assert requests.get(f"{engine.url}/tasks/{gone}", headers=headers, timeout=5).status_code == 404
    assert requests.get(f"{engine.url}/tasks/{sorted(snapshot_ids)[0]}", headers=headers, timeout=5).status_code == 200


def test_retention_and_removal(fleet, dest):
    engine = fleet.up(1, "2.3.0")[0]
    take(snap_container=engine.container_name, snap_dest=str(dest), snap_name="a", snap_retain_days=1)
    take(snap_container=engine.container_name, snap_dest=str(dest), snap_name="b")
    # newest first: b-diff, b, a-diff, a; a and a-diff are retained one day, so keep_last=1 prunes b only
    run = run_playbook(RETENTION, extra_vars=dict(
        snap_dest=str(dest), snap_keep_last=1, snap_expected_pruned=["b"], snap_count_before=4, snap_remove="a",
    ))
    assert run.rc == 0, run.stdout[-5000:] + run.stderr[-2000:]
    check_files(dest, ["a-diff", "b-diff"])


# ---------------------------------------------------------------- bad input: fails, says what to fix, changes nothing


@contextlib.contextmanager
def tiny_filesystem(path: Path, size: str = "1m"):
    """A real, small tmpfs at `path` (root only)."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"cannot mount a tmpfs for the no-room test (run as root): {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def make_path_brain(path: Path, rows: int = 100, pad: int = 200) -> Path:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE engine_schema_migrations(version TEXT PRIMARY KEY)")
    conn.execute("CREATE TABLE tasks(task_id TEXT PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO tasks VALUES (?, ?)", [(f"t{i}", "x" * pad) for i in range(rows)])
    conn.close()
    return path


def bad_input(expected_msg: str, **extra) -> None:
    run = run_playbook(BAD_INPUT, extra_vars=dict(extra, expected_msg=expected_msg))
    assert run.rc == 0, run.stdout[-5000:] + run.stderr[-2000:]


def snapshot_state(*paths: Path) -> dict:
    """What must not change: every file's bytes under the given folders/files."""
    state = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
        for path in files:
            state[str(path)] = sha256(path)
    return state


def test_bad_locations_and_options(fleet, dest, tmp_path):
    not_sqlite = tmp_path / "text.sqlite"
    not_sqlite.write_text("this is not a database\n" * 100)
    corrupt = make_path_brain(tmp_path / "corrupt.sqlite", rows=500)
    with open(corrupt, "r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xa5" * (corrupt.stat().st_size - 4096))
    before = snapshot_state(tmp_path)
    cases = [
        ("No container named or identified by 'snap-nope'", dict(snap_container="snap-nope")),
        ("No Docker volume named 'snap-nope-volume'", dict(snap_volume="snap-nope-volume")),
        ("There is no brain at /nonexistent/brain.sqlite", dict(snap_path="/nonexistent/brain.sqlite")),
        ("is not an SQLite database", dict(snap_path=str(not_sqlite))),
        ("corrupt", dict(snap_path=str(corrupt))),
        ("mutually exclusive: container\\|volume\\|path", dict(snap_container="x", snap_path=str(not_sqlite))),
        ("Cannot reach the Docker daemon at tcp://127.0.0.1:1",
         dict(snap_path=str(not_sqlite), snap_docker_host="tcp://127.0.0.1:1")),
        ("There is no snapshot nope", dict(snap_path=str(not_sqlite), snap_state="restored", snap_snapshot="nope")),
    ]
    for expected, extra in cases:
        bad_input(expected, snap_dest=str(dest), **extra)
        assert not dest.exists(), expected
        assert snapshot_state(tmp_path) == before, expected


def test_no_room_on_disk(tmp_path):
    brain = make_path_brain(tmp_path / "brain.sqlite", rows=1500, pad=1000)  # about 1.7 MB
    assert brain.stat().st_size > 1024 * 1024
    with tiny_filesystem(tmp_path / "tiny") as tiny:
        before = snapshot_state(tmp_path / "brain.sqlite")
        bad_input(r"Not enough free space .* needs \d+ bytes .* only \d+ bytes are free",
                  snap_path=str(brain), snap_dest=str(tiny / "snaps"), snap_min_free_bytes=0)
        assert listing(tiny) == [] and snapshot_state(tmp_path / "brain.sqlite") == before
        # the margin alone can refuse too
        small = make_path_brain(tmp_path / "small.sqlite", rows=5)
        bad_input("margin min_free_bytes 2097152 bytes", snap_path=str(small), snap_dest=str(tiny / "snaps"),
                  snap_min_free_bytes=2 * 1024 * 1024)
        assert listing(tiny) == []


def test_restore_refused_while_running_and_on_a_bad_checksum(fleet, dest):
    engine = fleet.up(1, "2.3.0")[0]
    take(snap_container=engine.container_name, snap_dest=str(dest), snap_name="s")
    before = snapshot_state(dest)
    bad_input("Refusing to restore .*container " + engine.container_name + " is running",
              snap_container=engine.container_name, snap_dest=str(dest), snap_state="restored", snap_snapshot="s")
    assert snapshot_state(dest) == before
    engine.container().stop(timeout=30)
    brain_before = snapshot_state(engine.brain_path().parent)
    data = bytearray((dest / "s.sqlite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (dest / "s.sqlite").write_bytes(bytes(data))
    tampered = snapshot_state(dest)
    bad_input("Snapshot s fails its checksum", snap_container=engine.container_name, snap_dest=str(dest),
              snap_state="restored", snap_snapshot="s")
    assert snapshot_state(dest) == tampered and snapshot_state(engine.brain_path().parent) == brain_before
    bad_input("already exists but fails its checksum", snap_container=engine.container_name, snap_dest=str(dest),
              snap_name="s")
    assert snapshot_state(dest) == tampered


# ---------------------------------------------------------------- Engines that share a snapshot folder (issue 10)


def test_engines_sharing_a_folder_each_get_their_own_brain_back(fleet, tmp_path):
    """Issue 10.1: one folder, one name, two Engines in one run; B never re-uses A's snapshot, a restore of A's
    snapshot onto B is refused with B untouched, and each restore brings back that Engine's own brain."""
    engines = fleet.up(2, "2.3.0")
    inventory = fleet.write_inventory(tmp_path / "inventory.yml")
    shared = tmp_path / "shared"
    name = "pre-upgrade-2.3.0-to-2.4.0-run1"
    load = LoadGenerator(engines, rate=8, feedback_ratio=0, workers_per_engine=2).start()
    try:
        load.wait_acked(4)  # turns on both Engines
        run = run_playbook(ENGINES, inventory=inventory, extra_vars=dict(
            snap_dest=str(shared), snap_name=name, snap_keep_last=1, snap_version="2.3.0"))
        assert run.rc == 0, run.stdout[-5000:] + run.stderr[-2000:]
        load.wait_acked(4, after=load.ack_counts())  # turns after the snapshots (the bad window)
    finally:
        load.stop()
    taken = {e.engine_id: run.result("Take the pre-upgrade snapshot", host=e.engine_id)["snapshot"] for e in engines}
    a, b = engines
    assert sorted(s["name"] for s in taken.values())[0] == name, "one Engine keeps the name it asked for"
    assert taken[a.engine_id]["name"] != taken[b.engine_id]["name"], "B re-used A's snapshot"
    ids = {e.engine_id: task_ids(taken[e.engine_id]["path"], status=None) for e in engines}
    assert ids[a.engine_id] and ids[b.engine_id] and not ids[a.engine_id] & ids[b.engine_id]
    for engine in engines:
        manifest = json.loads(Path(taken[engine.engine_id]["manifest_path"]).read_text())
        assert manifest["engine"]["key"] == f"volume:{engine.volume}" and manifest["kind"] == "pre-upgrade"
        assert manifest["engine"]["inventory_name"] == engine.engine_id and manifest["engine_version"] == "2.3.0"

    # A's snapshot onto B, while B runs: refused before anything, B untouched and still serving.
    folder_before = snapshot_state(shared)
    b_ids, b_brain = task_ids(b.brain_path(), status=None), sha256(b.brain_path())
    bad_input(f"belongs to Engine volume:{a.volume} .*not to this Engine \\(volume:{b.volume}\\)",
              snap_container=b.container_name, snap_dest=str(shared), snap_state="restored",
              snap_snapshot=taken[a.engine_id]["name"])
    container = b.container()
    container.reload()
    assert container.status == "running" and sha256(b.brain_path()) == b_brain
    assert task_ids(b.brain_path(), status=None) == b_ids and snapshot_state(shared) == folder_before

    # Each Engine, stopped, gets its own brain back.
    for engine in engines:
        engine.container().stop(timeout=30)
    for engine in engines:
        brain = engine.brain_path()
        before = task_ids(brain, status=None)
        run = run_playbook(RESTORE, extra_vars=dict(
            snap_container=engine.container_name, snap_dest=str(shared), snap_snapshot=taken[engine.engine_id]["name"],
            snap_brain_path=str(brain), snap_brain_sha256=sha256(brain)))
        assert run.rc == 0, run.stdout[-5000:] + run.stderr[-2000:]
        assert task_ids(brain, status=None) == ids[engine.engine_id] != before
        previous = run.result("Restore with diff")["previous_brain"]
        assert task_ids(previous["path"], status=None) == before
    for engine in engines:
        engine.container().start()
        wait_healthy(engine.url)


def assert_a_sidecar_makes_the_restore_refuse(fleet, engine, docker_client, check) -> None:
    """A sidecar that mounts the Engine's volume: ``check()`` (the restore's check, the Engine running) refuses it
    by name; the Engine is not stopped and nothing is left beside its brain."""
    errors = collection("_errors")
    sidecar = docker_client.containers.run(
        "engine:2.3.0", command=["sleep", "600"], name=f"{fleet.name}-sidecar", detach=True,
        volumes={engine.volume: {"bind": "/data", "mode": "rw"}},
        labels={LABEL_FLEET: fleet.name, LABEL_TESTKIT: "engine_testkit"})
    try:
        wait_until(lambda: sidecar.reload() or sidecar.status == "running", 60, "the sidecar to run")
        with pytest.raises(errors.EngineBusyError, match=f"running container\\(s\\) {sidecar.name} mount its"):
            check()
    finally:
        sidecar.remove(force=True)
    container = engine.container()
    container.reload()
    assert container.status == "running", "the Engine was stopped although the restore was refused"
    assert sorted(p.name for p in engine.brain_path().parent.iterdir() if p.name.startswith(".")) == []


def stage_then_install(restore_api, plan, engine, identity, docker_client) -> tuple[dict, set]:
    """Stage beside the live Engine (install refused while it runs), stop it, install: what install returned and the
    bad window's tasks (the brain's just before the stop). The plan is aborted whatever happens (a no-op once
    installed)."""
    errors = collection("_errors")
    try:
        restore_api.stage_restore(plan)  # beside the live Engine
        assert Path(plan.staged).is_file()
        with pytest.raises(errors.EngineBusyError, match=f"container {engine.container_name} is running"):
            restore_api.install_restore(plan, client=docker_client)
        bad_window = task_ids(engine.brain_path(), status=None)
        engine.container().stop(timeout=30)
        installed = restore_api.install_restore(plan, client=docker_client, migrations={},
                                                fields=dict(engine=identity), defer_keep=True)
    finally:
        restore_api.abort_restore(plan)
    return installed, bad_window


def test_restore_checks_before_the_engine_is_stopped(fleet, dest, docker_client):
    """Issue 10.5, the rollback's python API on a real Engine: a sidecar that mounts the volume makes the restore
    refuse while the Engine still runs; without it, check and stage run beside the live Engine, install after."""
    restore_api, brain_api, store_api = collection("_restore"), collection("_brain"), collection("_snapshot_store")
    engine = fleet.up(1, "2.3.0")[0]
    load = LoadGenerator([engine], rate=8, feedback_ratio=0, workers_per_engine=2).start()
    try:
        load.wait_acked(4)
        taken = take(snap_container=engine.container_name, snap_dest=str(dest), snap_name="good")
        load.wait_acked(4, after=load.ack_counts())  # turns after the snapshot
    finally:
        load.stop()
    snapshot_ids = task_ids(taken["Take a snapshot"]["snapshot"]["path"], status=None)
    location = brain_api.locate_brain(dict(container=engine.container_name, brain_file="brain.sqlite",
                                           data_dir="/data"), docker_client)
    identity = brain_api.brain_identity(docker_client, location)
    assert identity["key"] == f"volume:{engine.volume}"
    store = store_api.SnapshotStore(str(dest))
    entry = store.get("good")
    assert_a_sidecar_makes_the_restore_refuse(
        fleet, engine, docker_client,
        lambda: restore_api.check_restore(store, location, entry, identity=identity, client=docker_client,
                                          engine_may_run=True))
    plan = restore_api.check_restore(store, location, entry, identity=identity, client=docker_client,
                                     engine_may_run=True, verify=False)  # the Engine's own process is no reason
    installed, bad_window = stage_then_install(restore_api, plan, engine, identity, docker_client)
    assert sorted(p.name for p in engine.brain_path().parent.iterdir()) == ["brain.sqlite"]
    engine.container().start()  # before the replaced brain is hashed and committed (when it was linked, not copied)
    linked = collection("_fileops").same_filesystem(str(dest), str(engine.brain_path()))
    assert (installed["sha256"] is None) == linked
    previous = restore_api.complete_restore(plan) or installed
    wait_healthy(engine.url)
    assert task_ids(engine.brain_path(), status=None) >= snapshot_ids
    assert task_ids(previous["path"], status=None) == bad_window
    kept = store.get(previous["name"])
    assert kept["kind"] == "pre-restore" and kept["engine_key"] == identity["key"]
    assert kept["manifest"]["method"] == ("link" if linked else "copy")
    assert store.checksum_problem(kept) is None


def test_upgrade_retention_leaves_every_scheduled_snapshot(fleet, tmp_path):
    """Issue 10.4: snapshot.yml fills a shared folder (kind scheduled, under each Engine's lock); the upgrade's
    keep_last then prunes only its own Engine's pre-upgrade snapshots."""
    engines = fleet.up(2, "2.3.0")
    inventory = fleet.write_inventory(tmp_path / "inventory.yml")
    shared, state = tmp_path / "shared", tmp_path / "state"
    extra = {"engine_state_dir": str(state), "engine_snapshot_dir": str(shared), "engine_snapshot_keep_last": 10,
             "engine_snapshot_keep_days": 0}
    for _run in range(3):
        second = datetime.now(timezone.utc).replace(microsecond=0)  # noqa: UP017
        run = run_playbook(SNAPSHOT_PLAYBOOK, extra_vars=extra, inventory=inventory)
        assert run.rc == 0, run.stdout[-5000:] + run.stderr[-2000:]
        wait_until(lambda second=second: datetime.now(timezone.utc).replace(microsecond=0) > second,  # noqa: UP017
                   5, "the next second (names carry the second)", interval=0.05)

    def manifests():
        return {p.stem: json.loads(p.read_text()) for p in shared.glob("*.json")}

    scheduled = {name for name, m in manifests().items() if m["kind"] == "scheduled"}
    for engine in engines:
        mine = [n for n in scheduled if manifests()[n]["engine"]["key"] == f"volume:{engine.volume}"]
        assert len(mine) == 3 and all(n.startswith(f"brain-{engine.volume}-scheduled-") for n in mine)
    assert not [p for p in (state / "locks").glob("*.lock")
                if json.loads(p.read_text() or "{}").get("run_id")], "a lock was left held"
    for number in range(3):
        run = run_playbook(ENGINES, inventory=inventory, extra_vars=dict(
            snap_dest=str(shared), snap_name=f"pre-upgrade-run{number}", snap_keep_last=1, snap_version="2.3.0"))
        assert run.rc == 0, run.stdout[-5000:] + run.stderr[-2000:]
    after = manifests()
    assert {n for n, m in after.items() if m["kind"] == "scheduled"} == scheduled, "a scheduled snapshot was pruned"
    upgrades = sorted(n for n, m in after.items() if m["kind"] == "pre-upgrade")
    assert len(upgrades) == 2 and all(n.startswith("pre-upgrade-run2") for n in upgrades), upgrades
