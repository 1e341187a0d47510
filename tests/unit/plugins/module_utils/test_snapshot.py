# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""module_utils/_snapshot.py: retention (pure), names and times, and real snapshots of real SQLite files."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from ansible_collections.september.engine.plugins.module_utils import _snapshot
from ansible_collections.september.engine.plugins.module_utils._brain import BrainLocation, sha256_file
from ansible_collections.september.engine.plugins.module_utils._errors import (
    BrainError,
    EngineBusyError,
    InsufficientSpaceError,
    NotFoundError,
    OptionsError,
    SnapshotError,
)
from ansible_collections.september.engine.plugins.module_utils._snapshot import (
    FORMAT,
    SnapshotStore,
    brain_matches,
    check_name,
    check_space,
    content_sha256,
    default_name,
    diff_after,
    find_snapshot,
    iso,
    parse_iso,
    restore_brain,
    restore_data_at_risk,
    select_prunable,
    verify_for_restore,
)

NOW = datetime(2026, 3, 10, 12, 0, 0, tzinfo=timezone.utc)  # noqa: UP017
MIGRATIONS = dict(migrations_source="table", migrations_table="engine_schema_migrations", migrations_column="version")


def snap(name, days_old, retain_days=None):
    """A listed snapshot `days_old` days old, retained `retain_days` from now (negative: in the past)."""
    created = NOW - timedelta(days=days_old)
    retain = iso(NOW + timedelta(days=retain_days)) if retain_days is not None else None
    return dict(name=name, created_at=iso(created), retain_until=retain)


FIVE = [snap(f"s{i}", i) for i in range(5)]  # s0 newest ... s4 oldest


@pytest.mark.parametrize(
    ("snapshots", "keep_last", "keep_days", "protect", "expected"),
    [
        pytest.param(FIVE, None, None, (), [], id="no-rule-prunes-nothing"),
        pytest.param(FIVE, 2, None, (), ["s2", "s3", "s4"], id="keep-last-2"),
        pytest.param(FIVE, 0, None, (), ["s0", "s1", "s2", "s3", "s4"], id="keep-last-0"),
        pytest.param(FIVE, 10, None, (), [], id="keep-last-more-than-there-are"),
        pytest.param(FIVE, None, 2, (), ["s2", "s3", "s4"], id="keep-days-2-strictly-younger"),
        pytest.param(FIVE, None, 0, (), ["s0", "s1", "s2", "s3", "s4"], id="keep-days-0"),
        pytest.param(FIVE, 1, 3, (), ["s3", "s4"], id="either-keeps-days-wins"),
        pytest.param(FIVE, 4, 1, (), ["s4"], id="either-keeps-last-wins"),
        pytest.param(list(reversed(FIVE)), 2, None, (), ["s2", "s3", "s4"], id="input-order-does-not-matter"),
        pytest.param(
            [*FIVE[:3], snap("s3", 3, retain_days=1), snap("s4", 4, retain_days=-1)],
            1, None, (), ["s1", "s2", "s4"], id="retain-until-future-is-never-pruned",
        ),
        pytest.param(FIVE, 0, None, ("s3",), ["s0", "s1", "s2", "s4"], id="protected-name"),
        pytest.param(
            [*FIVE[:2], dict(name="undated", created_at="garbage", retain_until=None)],
            0, None, (), ["s0", "s1"], id="undated-is-kept",
        ),
        pytest.param(
            [*FIVE[:2], dict(name="odd", created_at=iso(NOW - timedelta(days=9)), retain_until="not a date")],
            0, None, (), ["s0", "s1"], id="unreadable-retain-until-is-kept",
        ),
        pytest.param([], 1, 1, (), [], id="empty"),
    ],
)
def test_select_prunable(snapshots, keep_last, keep_days, protect, expected):
    assert select_prunable(snapshots, NOW, keep_last, keep_days, protect) == expected


def test_select_prunable_same_second_sorted_by_name():
    same = [dict(name=n, created_at=iso(NOW), retain_until=None) for n in ("a", "c", "b")]
    assert select_prunable(same, NOW + timedelta(days=1), 1, None) == ["b", "a"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-10T12:00:00Z", NOW),
        ("2026-03-10T13:00:00+01:00", NOW),
        ("2026-03-10T12:00:00", NOW),
        ("2026-03-10T12:00:00.000000Z", NOW),
        (None, None),
        ("", None),
        ("yesterday", None),
    ],
)
def test_parse_iso(text, expected):
    assert parse_iso(text) == expected


def test_iso_and_default_name():
    assert iso(NOW) == "2026-03-10T12:00:00Z"
    assert iso(NOW, precise=True) == "2026-03-10T12:00:00.000000Z"
    assert iso(None) is None
    assert default_name(NOW) == "brain-20260310T120000Z"
    assert default_name(NOW, "-pre-restore") == "brain-20260310T120000Z-pre-restore"


@pytest.mark.parametrize("name", ["brain-20260310T120000Z", "pre-upgrade_2.4.0", "a"])
def test_check_name_accepts(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "-x", "x.sqlite", "x.json", "a b", "x" * 129, None])
def test_check_name_refuses(name):
    with pytest.raises(OptionsError, match="not a valid snapshot name"):
        check_name(name)


def test_check_space(monkeypatch, tmp_path):
    class FakeStat:
        f_bavail, f_frsize = 100, 10  # 1000 bytes free

    monkeypatch.setattr(_snapshot.os, "statvfs", lambda path: FakeStat())
    check_space([(str(tmp_path / "not" / "yet"), 900, "brain")], 100)
    with pytest.raises(InsufficientSpaceError, match=r"needs 1001 bytes .* only 1000 bytes are free") as info:
        check_space([(str(tmp_path), 600, "brain"), (str(tmp_path / "x"), 400, "copy")], 1)
    assert info.value.details == dict(needed=1001, free=1000)


# ---------------------------------------------------------------- real SQLite files


def make_brain(path, rows=50, wal=True, migrations=("0001", "0002")):
    conn = sqlite3.connect(path, isolation_level=None)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS engine_schema_migrations(version TEXT PRIMARY KEY)")
    conn.executemany("INSERT OR IGNORE INTO engine_schema_migrations VALUES (?)", [(m,) for m in migrations])
    conn.execute("CREATE TABLE IF NOT EXISTS tasks(task_id TEXT PRIMARY KEY, body TEXT)")
    start = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    conn.executemany("INSERT INTO tasks VALUES (?, ?)", [(f"t{start + i}", "x" * 200) for i in range(rows)])
    conn.close()
    return str(path)


def task_ids(path):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute("SELECT task_id FROM tasks")}
    finally:
        conn.close()


def take(store, brain, name, **kwargs):
    options = dict(verify="quick", fields=dict(reason="test", engine=None, source=None), migrations=MIGRATIONS,
                   min_free_bytes=0, warnings=[], actions=[])
    options.update(kwargs)
    return store.take(brain, name, **options)


@pytest.fixture
def brain(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    return make_brain(folder / "brain.sqlite")


@pytest.fixture
def store(tmp_path):
    return SnapshotStore(str(tmp_path / "snapshots"))


def test_take_writes_a_verified_self_contained_snapshot(brain, store):
    actions = []
    entry = take(store, brain, "s1", actions=actions, retain_days=7)
    assert stat.S_IMODE(os.stat(store.dest).st_mode) == 0o700
    for path in (entry["path"], entry["manifest_path"]):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(os.listdir(store.dest)) == ["s1.json", "s1.sqlite"]
    manifest = json.loads(open(entry["manifest_path"], encoding="utf-8").read())
    assert manifest == entry["manifest"]
    assert manifest["format"] == FORMAT and manifest["name"] == "s1"
    assert manifest["sha256"] == sha256_file(entry["path"]) and manifest["size"] == os.path.getsize(entry["path"])
    assert manifest["journal_mode"] == "wal" and manifest["applied_migrations"] == ["0001", "0002"]
    assert manifest["verify"] == dict(mode="quick", result="ok") and manifest["raw_copy"] is False
    assert parse_iso(manifest["retain_until"]) - parse_iso(manifest["created_at"]) == timedelta(days=7)
    with open(entry["path"], "rb") as handle:
        assert handle.read(20)[18:20] == b"\x01\x01"  # rollback journal: no -wal needed
    assert task_ids(entry["path"]) == task_ids(brain)
    assert any("online backup API" in action for action in actions)
    assert store.checksum_problem(entry) is None
    assert store.get("s1")["sha256"] == manifest["sha256"]
    assert [e["name"] for e in store.list()] == ["s1"]


def test_take_of_a_brain_at_rest_leaves_it_as_it_was(brain, store):
    """A stopped Engine's WAL brain: no -wal/-shm are left beside it, its bytes are unchanged."""
    before = sha256_file(brain)
    take(store, brain, "s1")
    assert sorted(os.listdir(os.path.dirname(brain))) == ["brain.sqlite"]
    assert sha256_file(brain) == before


def test_take_check_mode_writes_nothing(brain, store):
    before = sorted(os.listdir(os.path.dirname(brain)))
    actions = []
    predicted = take(store, brain, "s1", check_mode=True, actions=actions)
    assert predicted["sha256"] is None and predicted["name"] == "s1" and predicted["size"] > 0
    assert not os.path.exists(store.dest)
    assert sorted(os.listdir(os.path.dirname(brain))) == before  # not even -shm beside a stopped brain
    assert actions[0].startswith("create folder")


def test_take_without_migrations_table_warns(tmp_path, store):
    path = str(tmp_path / "plain.sqlite")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t(x)")
    conn.commit()
    conn.close()
    warnings = []
    entry = take(store, path, "s1", warnings=warnings)
    assert entry["manifest"]["applied_migrations"] == [] and entry["manifest"]["journal_mode"] == "delete"
    assert "engine_schema_migrations" in warnings[0]


def test_snapshot_of_a_live_brain_is_consistent(brain, store):
    """Writers keep committing while the backup runs: the copy holds a prefix of the commits, all of them intact."""
    stop = threading.Event()
    committed = []

    def writer():
        conn = sqlite3.connect(brain, isolation_level=None, timeout=10)
        n = 0
        while not stop.is_set():
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO tasks VALUES (?, ?)", (f"live{n}", "y" * 500))
            conn.execute("COMMIT")
            committed.append((f"live{n}", time.monotonic()))
            n += 1
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.3)
        started = time.monotonic()
        entry = take(store, brain, "live", verify="full")
    finally:
        stop.set()
        thread.join()
    ids = task_ids(entry["path"])
    assert {task for task, at in committed if at < started} <= ids
    assert len(ids) < len(task_ids(brain))  # the writer went on after the snapshot


def corrupt(path):
    """Keep the header, overwrite every page after the first with garbage."""
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xa5" * (size - 4096))


def test_take_of_a_corrupt_brain_keeps_nothing(tmp_path, store):
    path = make_brain(tmp_path / "bad.sqlite", rows=200, wal=False)
    corrupt(path)
    with pytest.raises(BrainError, match="corrupt"):
        take(store, path, "s1")
    assert not os.path.exists(store.dest)  # not even the folder it had to create


def test_take_of_a_file_that_is_not_sqlite(tmp_path, store):
    path = tmp_path / "brain.sqlite"
    path.write_text("not a database at all, just text\n" * 10)
    with pytest.raises(BrainError, match="not an SQLite database"):
        take(store, str(path), "s1")
    with pytest.raises(NotFoundError, match="There is no brain"):
        take(store, str(tmp_path / "missing.sqlite"), "s1")
    assert not os.path.exists(store.dest)


def test_take_that_runs_out_of_space_mid_copy_leaves_nothing(brain, store, monkeypatch):
    """SQLITE_FULL during the backup (the free-space check passed, then someone else filled the disk)."""
    real_reading = _snapshot.reading

    class FullDisk:
        def __init__(self, conn):
            self.conn = conn

        def execute(self, *args):
            return self.conn.execute(*args)

        def backup(self, target, **kwargs):
            target.execute("CREATE TABLE half_written(x)")
            raise sqlite3.OperationalError("database or disk is full")

    @contextlib.contextmanager
    def reading(path, predict_only=False):
        with real_reading(path, predict_only) as conn:
            yield FullDisk(conn)

    monkeypatch.setattr(_snapshot, "reading", reading)
    os.makedirs(store.dest, mode=0o700)  # an existing folder stays
    with pytest.raises(InsufficientSpaceError, match="filled up"):
        take(store, brain, "s1")
    assert os.listdir(store.dest) == []


def test_insufficient_space_is_found_before_copying(brain, store):
    with pytest.raises(InsufficientSpaceError, match="Nothing was written"):
        take(store, brain, "s1", min_free_bytes=2**62)
    assert not os.path.exists(store.dest)


def test_stale_temp_file_is_replaced(brain, store):
    os.makedirs(store.dest)
    with open(os.path.join(store.dest, ".s1.sqlite.tmp"), "wb") as handle:
        handle.write(b"left over by a killed run")
    take(store, brain, "s1")
    assert sorted(os.listdir(store.dest)) == ["s1.json", "s1.sqlite"]


def test_list_ignores_foreign_files_and_get_refuses_half_pairs(brain, store):
    take(store, brain, "s1")
    take(store, brain, "s2")
    for name, text in (("notes.json", '{"hello": 1}'), ("other.json", "{not json"), ("lonely.sqlite", "x"),
                       ("README", "hi")):
        with open(os.path.join(store.dest, name), "w", encoding="utf-8") as handle:
            handle.write(text)
    assert [e["name"] for e in store.list()] == ["s2", "s1"]
    assert store.get("absent") is None
    for name in ("notes", "lonely"):
        with pytest.raises(SnapshotError, match="not a snapshot with a valid manifest"):
            store.get(name)
    store.delete("s1")
    assert store.names() == ["s2"]
    assert sorted(os.listdir(store.dest)) == ["README", "lonely.sqlite", "notes.json", "other.json", "s2.json",
                                              "s2.sqlite"]


def test_checksum_problem(brain, store):
    entry = take(store, brain, "s1")
    with open(entry["path"], "r+b") as handle:
        handle.seek(5000)
        handle.write(b"tampered")
    assert "manifest says" in store.checksum_problem(store.get("s1"))
    os.unlink(entry["path"])
    assert "missing" in store.checksum_problem(store.get("s1"))


def test_content_sha256_ignores_journal_mode_and_counters(brain, tmp_path):
    copy = str(tmp_path / "copy.sqlite")
    with open(brain, "rb") as reader, open(copy, "wb") as writer:
        writer.write(reader.read())
    conn = sqlite3.connect(copy, isolation_level=None)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    assert sha256_file(copy) != sha256_file(brain)
    assert content_sha256(copy) == content_sha256(brain)
    make_brain(copy, rows=1)
    assert content_sha256(copy) != content_sha256(brain)


def test_save_raw_keeps_bytes_and_wal(tmp_path, store):
    path = tmp_path / "brain.sqlite"
    path.write_bytes(b"garbage" * 100)
    (tmp_path / "brain.sqlite-wal").write_bytes(b"wal bytes")
    entry = store.save_raw(str(path), "raw", fields=dict(reason="r"), min_free_bytes=0, actions=[], retain_days=30)
    assert entry["raw_copy"] and entry["manifest"]["side_files"][0]["file"] == "raw.sqlite-wal"
    assert open(entry["path"], "rb").read() == path.read_bytes()
    assert (tmp_path / "snapshots" / "raw.sqlite-wal").read_bytes() == b"wal bytes"
    assert store.checksum_problem(entry) is None
    with pytest.raises(SnapshotError, match="raw copy"):
        verify_for_restore(entry)
    store.delete("raw")
    assert os.listdir(store.dest) == []


# ---------------------------------------------------------------- restore


def restore(store, brain, entry, check_mode=False, busy=(), name=None):
    actions, warnings = [], []
    previous = restore_brain(
        store, BrainLocation(path=brain, source="path"), entry, busy=list(busy), name=name, reason=None,
        retain_days=30, fields=dict(engine=None, source=None), options=dict(MIGRATIONS, min_free_bytes=0),
        check_mode=check_mode, actions=actions, warnings=warnings,
    )
    return previous, actions, warnings


def test_find_snapshot_by_name_or_path(brain, store):
    entry = take(store, brain, "s1")
    assert find_snapshot(store, "s1")["path"] == entry["path"]
    assert find_snapshot(store, "s1.sqlite")["path"] == entry["path"]
    assert find_snapshot(SnapshotStore("/nowhere"), entry["path"])["name"] == "s1"
    with pytest.raises(NotFoundError, match="no snapshot nope"):
        find_snapshot(store, "nope")


def test_restore_replaces_the_brain_and_keeps_the_old_one(brain, store):
    os.chmod(brain, 0o640)
    entry = take(store, brain, "s1")
    snapshot_ids = task_ids(brain)
    make_brain(brain, rows=20)  # written after the snapshot
    newer_ids = task_ids(brain)
    open(brain + "-wal", "ab").close()
    verify_for_restore(entry)

    previous, actions, _warnings = restore(store, brain, entry, check_mode=True)
    assert previous["sha256"] is None and task_ids(brain) == newer_ids and store.names() == ["s1"]
    assert any(action.startswith("replace") for action in actions)

    previous, actions, warnings = restore(store, brain, entry)
    assert sorted(os.listdir(os.path.dirname(brain))) == ["brain.sqlite"]  # no stale -wal / -shm, no temp file
    assert not warnings
    assert task_ids(brain) == snapshot_ids
    assert task_ids(previous["path"]) == newer_ids
    assert previous["name"].endswith("-pre-restore") and not previous["raw_copy"]
    saved = store.get(previous["name"])
    assert saved["reason"] == "pre-restore: brain replaced by restore of s1"
    assert parse_iso(saved["retain_until"]) > parse_iso(saved["created_at"]) + timedelta(days=29)
    assert stat.S_IMODE(os.stat(brain).st_mode) == 0o640
    with open(brain, "rb") as handle:
        assert handle.read(20)[18:20] == b"\x02\x02"  # back in WAL mode, like the Engine left it
    assert brain_matches(brain, entry)

    again, actions, _warnings = restore(store, brain, entry)
    assert again is None and actions == []


def test_restore_refuses_while_busy(brain, store):
    entry = take(store, brain, "s1")
    digest = sha256_file(brain)
    with pytest.raises(EngineBusyError, match="container sept-u001 is running"):
        restore(store, brain, entry, busy=["container sept-u001 is running"])
    assert sha256_file(brain) == digest and store.names() == ["s1"]


def test_restore_over_a_corrupt_brain_keeps_a_raw_copy(brain, store):
    entry = take(store, brain, "s1")
    make_brain(brain, rows=300)
    conn = sqlite3.connect(brain, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    corrupt(brain)
    corrupt_bytes = open(brain, "rb").read()
    previous, _actions, warnings = restore(store, brain, entry, name="bad-window")
    assert previous["raw_copy"] and previous["name"] == "bad-window"
    assert open(previous["path"], "rb").read() == corrupt_bytes
    assert "raw copy" in warnings[0]
    assert task_ids(brain) == task_ids(entry["path"])


def test_restore_into_an_empty_volume(brain, store, tmp_path):
    entry = take(store, brain, "s1")
    empty = tmp_path / "empty"
    empty.mkdir()
    previous, actions, _warnings = restore(store, str(empty / "brain.sqlite"), entry)
    assert previous is None and any("empty volume" in action for action in actions)
    assert task_ids(str(empty / "brain.sqlite")) == task_ids(brain)


def test_restore_counts_the_data_at_risk(brain, store):
    entry = take(store, brain, "s1")
    make_brain(brain, rows=7)  # written after the snapshot
    conn = sqlite3.connect(brain, isolation_level=None)
    conn.execute("CREATE TABLE memory_tags (tag TEXT)")
    conn.executemany("INSERT INTO memory_tags VALUES (?)", [("a",), ("b",)])
    conn.execute("CREATE TABLE unused (x)")
    conn.close()
    expected = {"memory_tags": 2, "tasks": 7}
    planned, _actions, warnings = restore(store, brain, entry, check_mode=True)
    assert restore_data_at_risk(entry, planned, brain, warnings) == expected  # counted in the brain itself
    previous, _actions, warnings = restore(store, brain, entry)
    assert task_ids(brain) == task_ids(entry["path"])  # the brain is the snapshot again: counted in the saved copy
    assert restore_data_at_risk(entry, previous, brain, warnings) == expected and not warnings
    assert restore_data_at_risk(entry, None, brain, warnings) is None
    raw = dict(previous, raw_copy=True)
    assert restore_data_at_risk(entry, raw, brain, warnings) is None and "raw copy" in warnings[0]


def test_restore_refuses_a_tampered_snapshot(brain, store):
    entry = take(store, brain, "s1")
    data = bytearray(open(entry["path"], "rb").read())
    data[-10] ^= 0xFF
    with open(entry["path"], "wb") as handle:
        handle.write(data)
    with pytest.raises(SnapshotError, match="fails its checksum"):
        verify_for_restore(store.get("s1"))


def test_restore_refuses_an_existing_previous_name(brain, store):
    entry = take(store, brain, "s1")
    make_brain(brain, rows=1)
    with pytest.raises(SnapshotError, match="already exists"):
        restore(store, brain, entry, name="s1")


SNAP = dict(name="new", sha256="ab" * 32, manifest=dict(applied_migrations=["0001"]))
BRAIN = dict(path="/data/brain.sqlite", sha256="cd" * 32, applied_migrations=["0001", "0002"])


@pytest.mark.parametrize(
    ("state", "before", "result", "after"),
    [
        pytest.param("present", dict(snapshots=["a"]), dict(changed=False, pruned=[], snapshot=dict(name="a")),
                     dict(snapshots=["a"]), id="unchanged-is-before"),
        pytest.param("present", dict(snapshots=["a", "b"]), dict(changed=True, pruned=["a"], snapshot=SNAP),
                     dict(snapshots=["b", "new"]), id="present-adds-and-prunes"),
        pytest.param("pruned", dict(snapshots=["a", "b"]), dict(changed=True, pruned=["a"], snapshot=None),
                     dict(snapshots=["b"]), id="pruned"),
        pytest.param("absent", dict(snapshots=["a", "b"]), dict(changed=True, pruned=[], snapshot=dict(name="a")),
                     dict(snapshots=["b"]), id="absent"),
        pytest.param("restored", dict(snapshots=["new"], brain=BRAIN),
                     dict(changed=True, pruned=[], snapshot=SNAP, previous_brain=dict(name="old-pre-restore")),
                     dict(snapshots=["new", "old-pre-restore"],
                          brain=dict(path=BRAIN["path"], sha256=SNAP["sha256"], applied_migrations=["0001"])),
                     id="restored"),
        pytest.param("restored", dict(snapshots=["new"], brain=dict(BRAIN, sha256=None)),
                     dict(changed=True, pruned=[], snapshot=SNAP, previous_brain=None),
                     dict(snapshots=["new"],
                          brain=dict(path=BRAIN["path"], sha256=SNAP["sha256"], applied_migrations=["0001"])),
                     id="restored-into-empty-volume"),
    ],
)
def test_diff_after(state, before, result, after):
    assert diff_after(state, before, result) == after
