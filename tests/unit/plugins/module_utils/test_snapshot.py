# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""module_utils/_snapshot_store.py and _snapshot_take.py: names, retention per Engine and kind, the Engine a
manifest names, the choice of a snapshot, and real snapshots of real SQLite files."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from ansible_collections.september.engine.plugins.module_utils import _fileops, _snapshot_take
from ansible_collections.september.engine.plugins.module_utils._brain import content_sha256
from ansible_collections.september.engine.plugins.module_utils._errors import (
    BrainError,
    InsufficientSpaceError,
    NotFoundError,
    OptionsError,
    SnapshotError,
)
from ansible_collections.september.engine.plugins.module_utils._fileops import check_space, sha256_file
from ansible_collections.september.engine.plugins.module_utils._snapshot_store import (
    FORMAT,
    OTHER,
    SAME,
    UNKNOWN,
    SnapshotStore,
    check_name,
    choose_snapshot,
    default_name,
    describe_engine,
    diff_after,
    engine_binding,
    manifest_kind,
    matching,
    recorded_key,
    select_prunable,
)
from ansible_collections.september.engine.plugins.module_utils._snapshot_take import save_raw, take_snapshot
from ansible_collections.september.engine.plugins.module_utils._timeutil import iso, parse_iso
from engine_testkit.brain import task_ids as brain_task_ids

NOW = datetime(2026, 3, 10, 12, 0, 0, tzinfo=timezone.utc)  # noqa: UP017
MIGRATIONS = dict(migrations_source="table", migrations_table="engine_schema_migrations", migrations_column="version")


def task_ids(path) -> set:
    """Every task id of the brain at ``path``."""
    return brain_task_ids(path, status=None)


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
            1,
            None,
            (),
            ["s1", "s2", "s4"],
            id="retain-until-future-is-never-pruned",
        ),
        pytest.param(FIVE, 0, None, ("s3",), ["s0", "s1", "s2", "s4"], id="protected-name"),
        pytest.param(
            [*FIVE[:2], dict(name="undated", created_at="garbage", retain_until=None)],
            0,
            None,
            (),
            ["s0", "s1"],
            id="undated-is-kept",
        ),
        pytest.param(
            [*FIVE[:2], dict(name="odd", created_at=iso(NOW - timedelta(days=9)), retain_until="not a date")],
            0,
            None,
            (),
            ["s0", "s1"],
            id="unreadable-retain-until-is-kept",
        ),
        pytest.param([], 1, 1, (), [], id="empty"),
    ],
)
def test_select_prunable(snapshots, keep_last, keep_days, protect, expected):
    assert select_prunable(snapshots, NOW, keep_last, keep_days, protect) == expected


def test_select_prunable_same_second_sorted_by_name():
    same = [dict(name=n, created_at=iso(NOW), retain_until=None) for n in ("a", "c", "b")]
    assert select_prunable(same, NOW + timedelta(days=1), 1, None) == ["b", "a"]


def test_default_name():
    assert default_name(NOW) == "brain-20260310T120000Z"
    assert default_name(NOW, "engine-data-u001", "scheduled") == "brain-engine-data-u001-scheduled-20260310T120000Z"
    assert default_name(NOW, "bind-x-3f2a9c1e", "pre-restore") == "brain-bind-x-3f2a9c1e-pre-restore-20260310T120000Z"


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

    monkeypatch.setattr(_fileops.os, "statvfs", lambda path: FakeStat())
    check_space([(str(tmp_path / "not" / "yet"), 900, "brain")], 100)
    with pytest.raises(InsufficientSpaceError, match=r"needs 1001 bytes .* only 1000 bytes are free") as info:
        check_space([(str(tmp_path), 600, "brain"), (str(tmp_path / "x"), 400, "copy")], 1)
    assert info.value.details == dict(needed=1001, free=1000)


# ---------------------------------------------------------------- real SQLite files


KEY_A, KEY_B = "volume:engine-data-a", "volume:engine-data-b"


def fields(key=KEY_A, kind="manual", version="2.3.0", **extra):
    engine = dict(key=key, slug=key.split(":", 1)[1], container=None, version=version)
    return dict(dict(reason="test", kind=kind, engine=engine, engine_version=version, source=None), **extra)


def take(store, brain, name, key=KEY_A, **kwargs):
    options = dict(
        verify="quick",
        fields=fields(key),
        migrations=MIGRATIONS,
        min_free_bytes=0,
        warnings=[],
        actions=[],
        key=key,
        slug=key.split(":", 1)[1],
    )
    options.update(kwargs)
    return take_snapshot(store, brain, name, **options)


@pytest.fixture
def store(tmp_path):
    return SnapshotStore(str(tmp_path / "snapshots"))


def test_take_writes_a_verified_self_contained_snapshot(brain, store):
    actions = []
    entry = take(store, brain, "s1", actions=actions, retain_days=7)
    assert stat.S_IMODE(os.stat(store.dest).st_mode) == 0o700
    for path in (entry["path"], entry["manifest_path"]):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(os.listdir(store.dest)) == [".lock", "s1.json", "s1.sqlite"]
    manifest = json.loads(open(entry["manifest_path"], encoding="utf-8").read())
    assert manifest == entry["manifest"]
    assert manifest["format"] == FORMAT and manifest["name"] == "s1"
    assert manifest["sha256"] == sha256_file(entry["path"]) and manifest["size"] == os.path.getsize(entry["path"])
    assert manifest["journal_mode"] == "wal" and manifest["applied_migrations"] == ["0001", "0002"]
    assert manifest["verify"] == dict(mode="quick", result="ok") and manifest["raw_copy"] is False
    assert manifest["sqlite_version"] == sqlite3.sqlite_version and manifest["method"] == "backup"
    assert manifest["kind"] == entry["kind"] == "manual" and manifest["engine"]["key"] == entry["engine_key"] == KEY_A
    assert entry["engine_version"] == "2.3.0" and set(manifest["timings"]) == {"copy_s", "verify_hash_fsync_s"}
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


@contextlib.contextmanager
def live_writer(brain, body: int):
    """A writer that commits task after task (live0, live1 ..., ``body`` bytes each) into ``brain`` while the block
    runs; yields the list of (task, when it was committed) it fills."""
    stop, committed = threading.Event(), []

    def writer():
        conn = sqlite3.connect(brain, isolation_level=None, timeout=10)
        number = 0
        while not stop.is_set():
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO tasks VALUES (?, ?)", (f"live{number}", "y" * body))
            conn.execute("COMMIT")
            committed.append((f"live{number}", time.monotonic()))
            number += 1
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        yield committed
    finally:
        stop.set()
        thread.join()


def test_snapshot_of_a_live_brain_is_consistent(brain, store):
    """Writers keep committing while the backup runs: the copy holds a prefix of the commits, all of them intact."""
    with live_writer(brain, body=500) as committed:
        time.sleep(0.3)
        started = time.monotonic()
        entry = take(store, brain, "live", verify="full")
    ids = task_ids(entry["path"])
    assert {task for task, at in committed if at < started} <= ids
    assert len(ids) < len(task_ids(brain))  # the writer went on after the snapshot


def corrupt(path):
    """Keep the header, overwrite every page after the first with garbage."""
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xa5" * (size - 4096))


def test_take_of_a_corrupt_brain_keeps_nothing(tmp_path, store, make_brain):
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
    real_reading = _snapshot_take.reading

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

    monkeypatch.setattr(_snapshot_take, "reading", reading)
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
    with open(os.path.join(store.dest, ".s1.engine-data-a.sqlite.tmp"), "wb") as handle:
        handle.write(b"left over by a killed run")
    take(store, brain, "s1")
    assert sorted(os.listdir(store.dest)) == [".lock", "s1.json", "s1.sqlite"]


def leave(store, name, age=3600.0):
    """A hidden temporary file, as a killed snapshot leaves it, last written ``age`` seconds ago."""
    path = os.path.join(store.dest, name)
    with open(path, "wb") as handle:
        handle.write(b"half written by a killed run")
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_a_killed_snapshot_of_another_name_leaves_nothing_behind(brain, store):
    """Defect D4: each run names its snapshot anew (its run id), so a leftover of the killed run's name was never
    cleared. This Engine's hidden temporary files that no process holds go; another Engine's, a fresh one (a
    snapshot being committed right now), one held open and any other file stay."""
    os.makedirs(store.dest)
    dead = [
        leave(store, ".pre-upgrade-engine-data-a-2.3.0-to-2.4.0-run1.engine-data-a.sqlite.tmp"),
        leave(store, ".pre-upgrade-engine-data-a-2.3.0-to-2.4.0-run1.engine-data-a.sqlite.tmp-journal"),
        leave(store, ".pre-upgrade-engine-data-a-2.3.0-to-2.4.0-run1.engine-data-a.json.tmp"),
        leave(store, ".raw-run2.engine-data-a.sqlite-wal.tmp"),
    ]
    kept = [
        leave(store, ".pre-upgrade-b-run1.engine-data-b.sqlite.tmp"),  # another Engine's
        leave(store, ".s0.engine-data-a.sqlite.tmp", age=1),  # written a moment ago
        leave(store, ".s9.engine-data-a.sqlite.tmp"),  # held open below
        leave(store, "engine-data-a.sqlite.tmp"),
        leave(store, ".s0.engine-data-a.sqlite"),
    ]
    assert store.temps_of("engine-data-a") == sorted([*dead, *kept[1:3]])
    actions = []
    with open(kept[2], "rb") as handle:
        holder = subprocess.Popen(["sleep", "60"], stdin=handle)  # another process holds it (a snapshot at work)
    try:
        take(store, brain, "s1", actions=actions)
    finally:
        holder.kill()
        holder.wait()
    left = sorted(os.listdir(store.dest))
    assert left == sorted([".lock", "s1.json", "s1.sqlite", *(os.path.basename(p) for p in kept)]), left
    assert [a for a in actions if a.startswith("remove")] == [
        f"remove {p} (left by a snapshot that did not end)" for p in sorted(dead)
    ]


def test_leftovers_are_only_listed_in_check_mode_and_cleared_before_the_space_check(brain, store, monkeypatch):
    os.makedirs(store.dest)
    dead = leave(store, ".run1.engine-data-a.sqlite.tmp")
    actions = []
    take(store, brain, "s1", actions=actions, check_mode=True)
    assert os.path.exists(dead) and f"remove {dead} (left by a snapshot that did not end)" in actions
    seen = []
    monkeypatch.setattr(_snapshot_take, "check_space", lambda needs, margin: seen.append(os.path.exists(dead)))
    take(store, brain, "s1")
    assert seen == [False]


def test_list_ignores_foreign_files_and_get_refuses_half_pairs(brain, store):
    take(store, brain, "s1")
    take(store, brain, "s2")
    for name, text in (
        ("notes.json", '{"hello": 1}'),
        ("other.json", "{not json"),
        ("lonely.sqlite", "x"),
        ("README", "hi"),
    ):
        with open(os.path.join(store.dest, name), "w", encoding="utf-8") as handle:
            handle.write(text)
    assert [e["name"] for e in store.list()] == ["s2", "s1"]
    assert store.get("absent") is None
    for name in ("notes", "lonely"):
        with pytest.raises(SnapshotError, match="not a snapshot with a valid manifest"):
            store.get(name)
    store.delete("s1")
    assert store.names() == ["s2"]
    assert sorted(os.listdir(store.dest)) == [
        ".lock",
        "README",
        "lonely.sqlite",
        "notes.json",
        "other.json",
        "s2.json",
        "s2.sqlite",
    ]


def test_checksum_problem(brain, store):
    entry = take(store, brain, "s1")
    with open(entry["path"], "r+b") as handle:
        handle.seek(5000)
        handle.write(b"tampered")
    assert "manifest says" in store.checksum_problem(store.get("s1"))
    os.unlink(entry["path"])
    assert "missing" in store.checksum_problem(store.get("s1"))


def test_content_sha256_ignores_journal_mode_and_counters(brain, tmp_path, make_brain):
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
    entry = save_raw(store, str(path), "raw", fields=dict(reason="r"), min_free_bytes=0, actions=[], retain_days=30)
    assert entry["raw_copy"] and entry["manifest"]["side_files"][0]["file"] == "raw.sqlite-wal"
    assert open(entry["path"], "rb").read() == path.read_bytes()
    assert (tmp_path / "snapshots" / "raw.sqlite-wal").read_bytes() == b"wal bytes"
    assert store.checksum_problem(entry) is None
    store.delete("raw")
    assert os.listdir(store.dest) == [".lock"]


SNAP = dict(name="new", sha256="ab" * 32, manifest=dict(applied_migrations=["0001"]))
BRAIN = dict(path="/data/brain.sqlite", sha256="cd" * 32, applied_migrations=["0001", "0002"])


@pytest.mark.parametrize(
    ("state", "before", "result", "after"),
    [
        pytest.param(
            "present",
            dict(snapshots=["a"]),
            dict(changed=False, pruned=[], snapshot=dict(name="a")),
            dict(snapshots=["a"]),
            id="unchanged-is-before",
        ),
        pytest.param(
            "present",
            dict(snapshots=["a", "b"]),
            dict(changed=True, pruned=["a"], snapshot=SNAP),
            dict(snapshots=["b", "new"]),
            id="present-adds-and-prunes",
        ),
        pytest.param(
            "pruned",
            dict(snapshots=["a", "b"]),
            dict(changed=True, pruned=["a"], snapshot=None),
            dict(snapshots=["b"]),
            id="pruned",
        ),
        pytest.param(
            "absent",
            dict(snapshots=["a", "b"]),
            dict(changed=True, pruned=[], snapshot=dict(name="a")),
            dict(snapshots=["b"]),
            id="absent",
        ),
        pytest.param(
            "restored",
            dict(snapshots=["new"], brain=BRAIN),
            dict(changed=True, pruned=[], snapshot=SNAP, previous_brain=dict(name="old-pre-restore")),
            dict(
                snapshots=["new", "old-pre-restore"],
                brain=dict(path=BRAIN["path"], sha256=SNAP["sha256"], applied_migrations=["0001"]),
            ),
            id="restored",
        ),
        pytest.param(
            "restored",
            dict(snapshots=["new"], brain=dict(BRAIN, sha256=None)),
            dict(changed=True, pruned=[], snapshot=SNAP, previous_brain=None),
            dict(snapshots=["new"], brain=dict(path=BRAIN["path"], sha256=SNAP["sha256"], applied_migrations=["0001"])),
            id="restored-into-empty-volume",
        ),
    ],
)
def test_diff_after(state, before, result, after):
    assert diff_after(state, before, result) == after


# ---------------------------------------------------------------- which Engine and kind a snapshot belongs to


def manifest_of(key=None, kind=None, reason=None, name="s", source=None, container=None, inventory_name=None):
    engine = {k: v for k, v in dict(key=key, container=container, inventory_name=inventory_name).items() if v}
    return dict(format=FORMAT, name=name, kind=kind, reason=reason, engine=engine or None, source=source)


LEGACY_VOLUME = dict(
    source="container",
    container="sept-u001",
    volume="engine-data-a",
    mount_type="volume",
    mount_source="/var/lib/docker/volumes/engine-data-a/_data",
    path="/v/a/brain.sqlite",
)
LEGACY_BIND = dict(
    source="container",
    container="sept-u009",
    mount_type="bind",
    mount_source="/srv/engine/u009/",
    path="/srv/engine/u009/brain.sqlite",
)
LEGACY_PATH = dict(source="path", path="/srv/x/brain.sqlite")


@pytest.mark.parametrize(
    ("manifest", "key", "container", "path", "expected"),
    [
        pytest.param(manifest_of(KEY_A), KEY_A, None, None, SAME, id="recorded-same"),
        pytest.param(manifest_of(KEY_B), KEY_A, "sept-u001", None, OTHER, id="recorded-other-even-same-container"),
        pytest.param(manifest_of(source=LEGACY_VOLUME), KEY_A, None, None, SAME, id="legacy-volume-same"),
        pytest.param(manifest_of(source=LEGACY_VOLUME), KEY_B, None, None, OTHER, id="legacy-volume-other"),
        pytest.param(manifest_of(source=LEGACY_BIND), "bind:/srv/engine/u009", None, None, SAME, id="legacy-bind"),
        pytest.param(manifest_of(source=LEGACY_PATH), KEY_A, None, "/srv/x/brain.sqlite", SAME, id="legacy-path"),
        pytest.param(
            manifest_of(source=LEGACY_PATH, container="c1"), KEY_A, "c1", "/y", SAME, id="legacy-container-same"
        ),
        pytest.param(
            manifest_of(source=LEGACY_PATH, container="c1"), KEY_A, "c2", "/y", OTHER, id="legacy-container-other"
        ),
        pytest.param(manifest_of(source=LEGACY_PATH), KEY_A, "c2", "/y", UNKNOWN, id="legacy-cannot-tell"),
        pytest.param(manifest_of(), KEY_A, None, None, UNKNOWN, id="nothing-recorded"),
    ],
)
def test_engine_binding(manifest, key, container, path, expected):
    assert engine_binding(manifest, key, container, path) == expected


def test_recorded_key_kind_and_description():
    assert recorded_key(manifest_of(source=LEGACY_BIND)) == "bind:/srv/engine/u009"
    assert recorded_key(manifest_of(source=LEGACY_PATH)) is None
    assert manifest_kind(manifest_of(kind="scheduled", reason="pre-upgrade x")) == "scheduled"
    assert manifest_kind(manifest_of(reason="pre-upgrade: 2.3.0 -> 2.4.0 (run 7)")) == "pre-upgrade"
    assert manifest_kind(manifest_of(reason="scheduled")) == "scheduled"
    assert manifest_kind(manifest_of(name="brain-20260301T000000Z-pre-restore")) == "pre-restore"
    assert manifest_kind(manifest_of(name="pre-upgrade-2.3.0-to-2.4.0-x")) == "pre-upgrade"
    assert manifest_kind(manifest_of(reason="before my experiment")) is None
    text = describe_engine(manifest_of(KEY_B, container="sept-u002", inventory_name="u002"))
    assert text == "Engine volume:engine-data-b (inventory name u002, container sept-u002)"
    assert "cannot" not in describe_engine(manifest_of(source=LEGACY_VOLUME))
    assert "an unknown Engine" in describe_engine(manifest_of())


def write_pair(
    store,
    name,
    hours_old,
    kind="scheduled",
    key=KEY_A,
    version="2.3.0",
    retain_hours=None,
    legacy_source=None,
    raw=False,
):
    """A snapshot pair written directly (tiny data file, real manifest) `hours_old` hours before NOW."""
    os.makedirs(store.dest, exist_ok=True)
    data = f"snapshot {name}".encode()
    with open(store.data_path(name), "wb") as handle:
        handle.write(data)
    created = NOW - timedelta(hours=hours_old)
    manifest = dict(
        format=FORMAT,
        name=name,
        created_at=iso(created),
        size=len(data),
        raw_copy=raw,
        sha256=__import__("hashlib").sha256(data).hexdigest(),
        retain_until=iso(NOW + timedelta(hours=retain_hours)) if retain_hours is not None else None,
    )
    if legacy_source is None:
        manifest.update(kind=kind, engine=dict(key=key), engine_version=version)
    else:
        manifest.update(
            reason=kind, source=legacy_source, engine=dict(container=legacy_source.get("container"), version=version)
        )
    with open(store.manifest_path(name), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle)


def test_upgrade_retention_never_prunes_scheduled_snapshots(store):
    """Issue 10.4: keep_last 5 of the upgrade, in the folder snapshot.yml fills hourly (two Engines share it)."""
    for hour in range(72):  # three days of hourly snapshots of Engine A, and of Engine B
        write_pair(store, f"a-scheduled-{hour:02d}", hour + 0.5, "scheduled", KEY_A)
        write_pair(store, f"b-scheduled-{hour:02d}", hour + 0.5, "scheduled", KEY_B)
    for number in range(8):  # eight upgrades of A, and three of B; one of A's retained for a week
        write_pair(
            store,
            f"a-pre-upgrade-{number}",
            24 * number + 1,
            "pre-upgrade",
            KEY_A,
            retain_hours=7 * 24 if number == 6 else None,
        )
    for number in range(3):
        write_pair(store, f"b-pre-upgrade-{number}", 24 * number + 1, "pre-upgrade", KEY_B)
    write_pair(store, "legacy-upgrade", 500, "pre-upgrade: 2.2.0 -> 2.3.0", legacy_source=LEGACY_VOLUME)
    write_pair(store, "legacy-mine", 600, "before my experiment", legacy_source=LEGACY_VOLUME)
    before = set(store.names())
    actions = []
    pruned = store.prune(5, None, kind="pre-upgrade", key=KEY_A, now=NOW, actions=actions)
    assert sorted(pruned) == ["a-pre-upgrade-5", "a-pre-upgrade-7", "legacy-upgrade"]
    after = set(store.names())
    assert before - after == set(pruned)
    assert {name for name in after if "scheduled" in name} == {n for n in before if "scheduled" in n}  # all 144
    assert {f"b-pre-upgrade-{n}" for n in range(3)} <= after and "legacy-mine" in after
    assert "a-pre-upgrade-6" in after  # retained until next week
    # the scheduled policy prunes only scheduled snapshots of its Engine, by its own days
    pruned = store.prune(None, 2, kind="scheduled", key=KEY_A, now=NOW, actions=actions)
    assert sorted(pruned) == [f"a-scheduled-{hour:02d}" for hour in range(48, 72)]
    assert {n for n in store.names() if n.startswith("b-")} == {n for n in before if n.startswith("b-")}


def test_prune_without_a_key_prunes_nothing(store):
    write_pair(store, "old", 100, "manual", KEY_A)
    assert store.prune(0, None, kind="manual", key=None, now=NOW, actions=[]) == []
    assert store.names() == ["old"]


def test_choose_snapshot_by_manifest(store):
    write_pair(store, "a-223-old", 50, "pre-upgrade", KEY_A, "2.3.0")
    write_pair(store, "a-230-new", 10, "pre-upgrade", KEY_A, "2.3.0")
    write_pair(store, "a-240", 5, "pre-upgrade", KEY_A, "2.4.0")
    write_pair(store, "a-raw", 1, "pre-upgrade", KEY_A, "2.3.0", raw=True)
    write_pair(store, "a-sched", 2, "scheduled", KEY_A, "2.3.0")
    write_pair(store, "b-newest", 0.5, "pre-upgrade", KEY_B, "2.3.0")
    write_pair(
        store,
        "pre-upgrade-2.3.0-to-2.4.0-run1",
        0.1,
        "pre-upgrade: 2.3.0 -> 2.4.0",
        legacy_source=dict(LEGACY_VOLUME, volume="engine-data-b"),
    )
    assert choose_snapshot(store, KEY_A, "2.3.0")["name"] == "a-230-new"
    assert choose_snapshot(store, KEY_A)["name"] == "a-240"
    assert choose_snapshot(store, KEY_A, "2.3.0", kind="scheduled")["name"] == "a-sched"
    assert choose_snapshot(store, KEY_B, "2.3.0")["name"] == "pre-upgrade-2.3.0-to-2.4.0-run1"  # legacy, B's volume
    assert choose_snapshot(store, KEY_A, "9.9.9") is None
    assert choose_snapshot(store, "volume:nobody") is None
    assert [e["name"] for e in matching(store.list(), key=KEY_A, kind="pre-upgrade")] == [
        "a-raw",
        "a-240",
        "a-230-new",
        "a-223-old",
    ]
    assert [e["name"] for e in matching(store.list(), version="2.4.0")] == ["a-240"]


def test_a_name_of_another_engine_is_never_reused(brain, store, tmp_path, make_brain):
    other = make_brain(tmp_path / "other.sqlite", rows=3)
    first = take(store, brain, "pre-upgrade-2.3.0-to-2.4.0-run7", key=KEY_A)
    name, existing, warning = store.resolve_name("pre-upgrade-2.3.0-to-2.4.0-run7", KEY_B, "engine-data-b")
    assert name == "pre-upgrade-2.3.0-to-2.4.0-run7-engine-data-b" and existing is None
    assert "belongs to Engine volume:engine-data-a" in warning and "left alone" in warning
    second = take(store, other, name, key=KEY_B)
    assert task_ids(second["path"]) == task_ids(other) != task_ids(first["path"])
    assert store.resolve_name("pre-upgrade-2.3.0-to-2.4.0-run7", KEY_B, "engine-data-b")[1]["name"] == name
    assert store.resolve_name("pre-upgrade-2.3.0-to-2.4.0-run7", KEY_A, "engine-data-a")[1]["sha256"] == first["sha256"]
    assert store.get(first["name"])["sha256"] == first["sha256"]  # A's is untouched


def test_a_name_committed_meanwhile_by_another_engine(brain, store, tmp_path, monkeypatch, make_brain):
    """Engines sharing a folder in parallel: B committed `name` while A was copying: A commits as name-slug."""
    other = make_brain(tmp_path / "other.sqlite", rows=3)
    real_finish = _snapshot_take.finish_copy

    def finish_then_race(path, verify):
        result = real_finish(path, verify)
        monkeypatch.setattr(_snapshot_take, "finish_copy", real_finish)
        take(store, other, "shared", key=KEY_B)  # B wins the race
        return result

    monkeypatch.setattr(_snapshot_take, "finish_copy", finish_then_race)
    mine = take(store, brain, "shared", key=KEY_A)
    assert mine["name"] == "shared-engine-data-a" and mine["engine_key"] == KEY_A
    assert store.get("shared")["engine_key"] == KEY_B and task_ids(store.get("shared")["path"]) == task_ids(other)
    assert [f for f in os.listdir(store.dest) if f.endswith(".tmp")] == []


def test_legacy_name_of_the_same_container_is_reused(brain, store):
    old = dict(reason="old", engine=dict(container="sept-u001"), source=dict(source="container", container="sept-u001"))
    entry = take(store, brain, "s1", fields=old)
    name, existing, warning = store.resolve_name("s1", KEY_A, "engine-data-a", container="sept-u001")
    assert (name, existing["sha256"], warning) == ("s1", entry["sha256"], None)
    name, existing, _warning = store.resolve_name("s1", KEY_A, "engine-data-a", container="sept-u002")
    assert name == "s1-engine-data-a" and existing is None


# ---------------------------------------------------------------- method reflink


def test_reflink_where_the_file_system_cannot_clone(brain, store):
    """tmp is not XFS with reflink nor Btrfs here (or the clone would cross file systems): refused, nothing kept."""
    with pytest.raises(SnapshotError, match="method=reflink: the file system cannot clone"):
        take(store, brain, "s1", method="reflink")
    assert not os.path.exists(store.dest)


def test_reflink_clone_of_a_live_brain_is_consistent(brain, store, monkeypatch):
    """The clone (a plain copy stands in for FICLONE) of the brain and its -wal under a read transaction, then
    checkpointed: every commit acknowledged before the snapshot began is in it, and it is self-contained."""

    def clone(source, target, mode=0o600):
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with open(source, "rb") as reader:
            os.write(fd, reader.read())
        os.close(fd)

    monkeypatch.setattr(_snapshot_take, "clone_file", clone)
    with live_writer(brain, body=300) as committed:
        wait = time.monotonic() + 5
        while len(committed) < 50 and time.monotonic() < wait:
            time.sleep(0.01)
        started = time.monotonic()
        entry = take(store, brain, "clone", method="reflink", verify="full")
    assert {task for task, at in committed if at < started} <= task_ids(entry["path"])
    assert entry["manifest"]["method"] == "reflink" and entry["manifest"]["verify"]["result"] == "ok"
    with open(entry["path"], "rb") as handle:
        assert handle.read(20)[18:20] == b"\x01\x01"
    assert sorted(os.listdir(store.dest)) == [".lock", "clone.json", "clone.sqlite"]
