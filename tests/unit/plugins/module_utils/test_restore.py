# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""module_utils/_restore.py on real SQLite files: check first (refusals change nothing), stage, install; a failed
install puts the replaced brain back."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from datetime import timedelta

import pytest

from ansible_collections.september.engine.plugins.module_utils import _brain, _restore
from ansible_collections.september.engine.plugins.module_utils._brain import BrainLocation, content_sha256
from ansible_collections.september.engine.plugins.module_utils._errors import (
    EngineBusyError,
    ForeignSnapshotError,
    InsufficientSpaceError,
    NotFoundError,
    SnapshotError,
)
from ansible_collections.september.engine.plugins.module_utils._fileops import sha256_file
from ansible_collections.september.engine.plugins.module_utils._restore import (
    abort_restore,
    brain_matches,
    check_restore,
    complete_restore,
    find_snapshot,
    install_restore,
    predict_previous,
    restore_data_at_risk,
    stage_restore,
)
from ansible_collections.september.engine.plugins.module_utils._snapshot_store import SnapshotStore
from ansible_collections.september.engine.plugins.module_utils._snapshot_take import save_raw, take_snapshot
from ansible_collections.september.engine.plugins.module_utils._timeutil import parse_iso
from engine_testkit.brain import task_ids as brain_task_ids

MIGRATIONS = dict(migrations_source="table", migrations_table="engine_schema_migrations", migrations_column="version")
KEY_A, KEY_B = "volume:engine-data-a", "volume:engine-data-b"
IDENTITY_A = dict(key=KEY_A, slug="engine-data-a", container="sept-a")


@pytest.fixture
def store(tmp_path):
    return SnapshotStore(str(tmp_path / "snapshots"))


def task_ids(path) -> set:
    """Every task id of the brain at ``path``."""
    return brain_task_ids(path, status=None)


def take(store, brain, name, key=KEY_A, engine=None):
    engine = engine or dict(key=key, slug=key.split(":", 1)[1])
    return take_snapshot(
        store,
        brain,
        name,
        verify="quick",
        fields=dict(reason="t", kind="manual", engine=engine),
        migrations=MIGRATIONS,
        min_free_bytes=0,
        warnings=[],
        actions=[],
        key=key,
        slug=engine.get("slug", ""),
    )


def location(brain):
    return BrainLocation(path=brain, source="path")


def everything(*folders):
    """{path: sha256} of every file under the folders: what must not change."""
    state = {}
    for folder in folders:
        for root, _dirs, files in os.walk(folder):
            for name in files:
                state[os.path.join(root, name)] = sha256_file(os.path.join(root, name))
    return state


def restore(store, brain, entry, identity=None, **kwargs):
    """check, stage, install, abort: what brain_snapshot state=restored does."""
    identity = identity or IDENTITY_A
    plan = check_restore(store, location(brain), entry, identity=identity, client=None, **kwargs)
    try:
        stage_restore(plan)
        previous = install_restore(plan, client=None, fields=dict(engine=identity), migrations=MIGRATIONS)
    finally:
        abort_restore(plan)
    return plan, previous


def test_find_snapshot_by_name_or_path(brain, store):
    entry = take(store, brain, "s1")
    assert find_snapshot(store, "s1")["path"] == entry["path"]
    assert find_snapshot(store, "s1.sqlite")["path"] == entry["path"]
    assert find_snapshot(SnapshotStore("/nowhere"), entry["path"])["name"] == "s1"
    with pytest.raises(NotFoundError, match="no snapshot nope"):
        find_snapshot(store, "nope")


def test_restore_replaces_the_brain_and_keeps_the_old_one_by_link(brain, store, make_brain):
    os.chmod(brain, 0o640)
    entry = take(store, brain, "s1")
    snapshot_ids = task_ids(brain)
    make_brain(brain, rows=20, start=1000)  # written after the snapshot
    newer_ids = task_ids(brain)
    open(brain + "-shm", "ab").close()
    inode = os.stat(brain).st_ino

    plan = check_restore(store, location(brain), entry, identity=IDENTITY_A, client=None)
    predicted = predict_previous(plan, None, 30)
    assert predicted["sha256"] is None and predicted["name"].startswith("brain-engine-data-a-pre-restore-")
    assert task_ids(brain) == newer_ids and store.names() == ["s1"]

    plan, previous = restore(store, brain, entry)
    assert sorted(os.listdir(os.path.dirname(brain))) == ["brain.sqlite"]  # no stale -wal / -shm, no staged file
    assert task_ids(brain) == snapshot_ids
    assert task_ids(previous["path"]) == newer_ids
    assert os.stat(previous["path"]).st_ino == inode, "the replaced brain was kept by link, not copied"
    assert previous["name"].startswith("brain-engine-data-a-pre-restore-") and not previous["raw_copy"]
    saved = store.get(previous["name"])
    assert saved["reason"] == "pre-restore: brain replaced by restore of s1" and saved["kind"] == "pre-restore"
    assert saved["engine_key"] == KEY_A and saved["manifest"]["method"] == "link"
    assert saved["manifest"]["journal_mode"] == "wal" and saved["manifest"]["applied_migrations"] == ["0001", "0002"]
    assert store.checksum_problem(saved) is None
    assert stat.S_IMODE(os.stat(previous["path"]).st_mode) == 0o600
    assert parse_iso(saved["retain_until"]) > parse_iso(saved["created_at"]) + timedelta(days=29)
    assert stat.S_IMODE(os.stat(brain).st_mode) == 0o640
    with open(brain, "rb") as handle:
        assert handle.read(20)[18:20] == b"\x02\x02"  # back in WAL mode, like the Engine left it
    assert brain_matches(brain, entry)
    assert any("stage snapshot s1" in action for action in plan.actions)

    plan, again = restore(store, brain, entry)
    assert plan.noop and again is None and plan.actions == []


def test_restore_copies_the_old_brain_across_file_systems(brain, store, monkeypatch, make_brain):
    entry = take(store, brain, "s1")
    make_brain(brain, rows=5, start=1000)
    newer = task_ids(brain)

    def no_link(source, target):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(_restore.os, "link", no_link)
    _plan, previous = restore(store, brain, entry)
    assert task_ids(previous["path"]) == newer and store.get(previous["name"])["manifest"]["method"] == "copy"
    assert store.checksum_problem(store.get(previous["name"])) is None


def test_restore_refuses_another_engines_snapshot_and_changes_nothing(brain, store, tmp_path, make_brain):
    entry = take(
        store,
        brain,
        "theirs",
        key=KEY_B,
        engine=dict(key=KEY_B, slug="engine-data-b", inventory_name="u002", container="sept-b"),
    )
    make_brain(brain, rows=3, start=1000)
    before = everything(os.path.dirname(brain), store.dest)
    with pytest.raises(ForeignSnapshotError) as info:
        check_restore(store, location(brain), entry, identity=IDENTITY_A, client=None)
    message = info.value.msg
    assert "belongs to Engine volume:engine-data-b (inventory name u002, container sept-b)" in message
    assert "not to this Engine (volume:engine-data-a)" in message and "allow_other_engine=true" in message
    assert "Nothing was changed" in message and info.value.details["snapshot_engine"] == KEY_B
    assert everything(os.path.dirname(brain), store.dest) == before
    plan, previous = restore(store, brain, entry, allow_other_engine=True)
    assert "restored anyway" in plan.warnings[0] and task_ids(brain) == task_ids(entry["path"]) and previous


@pytest.mark.parametrize(
    ("engine", "container", "accepted"),
    [
        pytest.param(dict(container="sept-a"), "sept-a", True, id="same-container"),
        pytest.param(dict(container="sept-old"), "sept-a", False, id="other-container"),
        pytest.param({}, "sept-a", False, id="nothing-recorded"),
    ],
)
def test_restore_of_an_older_manifest(brain, store, engine, container, accepted, make_brain):
    entry = take_snapshot(
        store,
        brain,
        "old",
        verify="quick",
        fields=dict(
            reason="t", engine=engine or None, source=dict(source="container", container=engine.get("container"))
        ),
        migrations=MIGRATIONS,
        min_free_bytes=0,
        warnings=[],
        actions=[],
    )
    make_brain(brain, rows=3, start=1000)
    digest = sha256_file(brain)
    identity = dict(IDENTITY_A, container=container)
    if accepted:
        restore(store, brain, entry, identity=identity)
        assert task_ids(brain) == task_ids(entry["path"])
    else:
        with pytest.raises(ForeignSnapshotError, match=r"older manifest|belongs to an Engine recorded only"):
            check_restore(store, location(brain), entry, identity=identity, client=None)
        assert sha256_file(brain) == digest


def test_restore_refusals_change_nothing(brain, store, monkeypatch, make_brain):
    entry = take(store, brain, "s1")
    make_brain(brain, rows=3, start=1000)
    before = everything(os.path.dirname(brain), store.dest)

    monkeypatch.setattr(_brain, "processes_holding", lambda path: [4242])
    with pytest.raises(EngineBusyError, match=r"process\(es\) 4242 hold it open.*The Engine was not stopped"):
        check_restore(store, location(brain), entry, identity=IDENTITY_A, client=None, engine_may_run=True)
    monkeypatch.undo()

    with pytest.raises(InsufficientSpaceError, match="staged snapshot") as full:
        check_restore(store, location(brain), entry, identity=IDENTITY_A, client=None, min_free_bytes=2**62)
    size = entry["size"]  # said once: "staged snapshot 339968 bytes", never "staged snapshot 339968 339968 bytes"
    assert f"(staged snapshot {size} bytes, " in full.value.msg and f"{size} {size}" not in full.value.msg

    with open(entry["path"], "r+b") as handle:
        handle.seek(3000)
        handle.write(b"tampered")
    with pytest.raises(SnapshotError, match="fails its checksum"):
        check_restore(store, location(brain), store.get("s1"), identity=IDENTITY_A, client=None)
    assert everything(os.path.dirname(brain)) == {k: v for k, v in before.items() if "/data/" in k}


def test_restore_refuses_a_snapshot_that_fails_quick_check(brain, store):
    entry = take(store, brain, "s1")
    manifest = entry["manifest"]
    with open(entry["path"], "r+b") as handle:  # damage the pages, then make the manifest agree (an altered copy)
        handle.seek(4096)
        handle.write(b"\xa5" * (entry["size"] - 4096))
    manifest["sha256"] = sha256_file(entry["path"])
    with open(entry["manifest_path"], "w", encoding="utf-8") as handle:
        json.dump(manifest, handle)
    with pytest.raises(SnapshotError, match="fails quick_check"):
        check_restore(store, location(brain), store.get("s1"), identity=IDENTITY_A, client=None)


def test_restore_refuses_a_raw_copy(tmp_path, store, brain):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"garbage" * 100)
    entry = save_raw(store, str(path), "raw", fields=dict(reason="r"), min_free_bytes=0, actions=[])
    with pytest.raises(SnapshotError, match="raw copy"):
        check_restore(store, location(brain), entry, identity=IDENTITY_A, client=None, allow_other_engine=True)


def test_stage_runs_while_the_engine_writes_and_install_rechecks(brain, store, monkeypatch):
    entry = take(store, brain, "s1")
    writer = sqlite3.connect(brain, isolation_level=None)  # the Engine, still running
    writer.execute("INSERT INTO tasks VALUES ('late', 'y')")
    plan = check_restore(store, location(brain), entry, identity=IDENTITY_A, client=None, engine_may_run=True)
    stage_restore(plan)
    assert os.path.isfile(plan.staged) and content_sha256(plan.staged) == content_sha256(entry["path"])
    digest = sha256_file(brain)
    monkeypatch.setattr(_brain, "processes_holding", lambda path: [4242])  # the Engine was not stopped after all
    with pytest.raises(EngineBusyError, match="Stop the Engine first"):
        install_restore(plan, client=None)
    monkeypatch.undo()
    assert sha256_file(brain) == digest and os.path.isfile(plan.staged) and store.names() == ["s1"]
    writer.close()  # now the Engine is stopped
    previous = install_restore(plan, client=None, migrations=MIGRATIONS)
    abort_restore(plan)
    assert sorted(os.listdir(os.path.dirname(brain))) == ["brain.sqlite"]
    assert "late" in task_ids(previous["path"]) and "late" not in task_ids(brain)


@pytest.mark.parametrize("fail_at", ["commit", "swap"])
def test_a_failed_install_puts_the_replaced_brain_back(brain, store, monkeypatch, fail_at, make_brain):
    entry = take(store, brain, "s1")
    make_brain(brain, rows=7, start=1000)
    conn = sqlite3.connect(brain, isolation_level=None)
    conn.execute("INSERT INTO tasks VALUES ('in-the-wal', 'z')")  # left in the -wal: an Engine killed hard
    wal_before = os.path.getsize(brain + "-wal")
    ids = task_ids(brain)
    content = content_sha256(brain)
    assert wal_before > 0
    plan = check_restore(store, location(brain), entry, identity=IDENTITY_A, client=None, engine_may_run=True)
    stage_restore(plan)
    conn.close()
    if fail_at == "commit":

        def fail(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(SnapshotStore, "commit", fail)
    else:
        real_replace = os.replace

        def fail(source, target):
            if target == brain:
                raise OSError(5, "Input/output error")
            return real_replace(source, target)

        monkeypatch.setattr(_restore.os, "replace", fail)
    with pytest.raises((SnapshotError, InsufficientSpaceError), match="put back as it was"):
        install_restore(plan, client=None, migrations=MIGRATIONS)
    abort_restore(plan)
    assert task_ids(brain) == ids and "in-the-wal" in ids
    assert content_sha256(brain) != content_sha256(entry["path"])
    with open(brain, "rb") as handle:
        assert handle.read(20)[18:20] == b"\x02\x02", "back in WAL mode"
    assert store.names() == ["s1"] and [f for f in os.listdir(store.dest) if f.endswith(".tmp")] == []
    left = sorted(os.listdir(os.path.dirname(brain)))
    assert left in (["brain.sqlite"], ["brain.sqlite", "brain.sqlite-shm", "brain.sqlite-wal"])
    assert content


def test_restore_over_a_corrupt_brain_keeps_a_raw_copy(brain, store):
    entry = take(store, brain, "s1")
    with open(brain, "wb") as handle:
        handle.write(b"SQLite format 3\x00" + b"\xa5" * 8000)
    with open(brain + "-wal", "wb") as handle:
        handle.write(b"wal bytes")
    corrupt_bytes = open(brain, "rb").read()
    plan = check_restore(store, location(brain), entry, identity=IDENTITY_A, client=None)
    stage_restore(plan)
    warnings = []
    previous = install_restore(plan, client=None, name="bad-window", migrations=MIGRATIONS, warnings=warnings)
    assert previous["raw_copy"] and previous["name"] == "bad-window"
    assert open(previous["path"], "rb").read() == corrupt_bytes
    assert open(previous["path"] + "-wal", "rb").read() == b"wal bytes"
    assert "raw copy" in warnings[0] and store.checksum_problem(store.get("bad-window")) is None
    assert sorted(os.listdir(os.path.dirname(brain))) == ["brain.sqlite"]
    assert task_ids(brain) == task_ids(entry["path"])


def test_restore_into_an_empty_volume(brain, store, tmp_path):
    entry = take(store, brain, "s1")
    empty = tmp_path / "empty"
    empty.mkdir()
    plan, previous = restore(store, str(empty / "brain.sqlite"), entry)
    assert previous is None and any("empty volume" in action for action in plan.actions)
    assert task_ids(str(empty / "brain.sqlite")) == task_ids(brain)


def test_restore_counts_the_data_at_risk(brain, store, make_brain):
    entry = take(store, brain, "s1")
    make_brain(brain, rows=7, start=1000)
    conn = sqlite3.connect(brain, isolation_level=None)
    conn.execute("CREATE TABLE memory_tags (tag TEXT)")
    conn.executemany("INSERT INTO memory_tags VALUES (?)", [("a",), ("b",)])
    conn.execute("CREATE TABLE unused (x)")
    conn.close()
    expected = {"memory_tags": 2, "tasks": 7}
    plan = check_restore(store, location(brain), entry, identity=IDENTITY_A, client=None)
    warnings = []
    assert restore_data_at_risk(entry, predict_previous(plan, None, 1), brain, warnings) == expected
    _plan, previous = restore(store, brain, entry)
    assert restore_data_at_risk(entry, previous, brain, warnings) == expected and not warnings
    assert restore_data_at_risk(entry, None, brain, warnings) is None
    assert restore_data_at_risk(entry, dict(previous, raw_copy=True), brain, warnings) is None
    assert "raw copy" in warnings[0]


def test_restore_refuses_an_existing_previous_name(brain, store, make_brain):
    entry = take(store, brain, "s1")
    make_brain(brain, rows=1, start=1000)
    plan = check_restore(store, location(brain), entry, identity=IDENTITY_A, client=None)
    stage_restore(plan)
    with pytest.raises(SnapshotError, match="already exists"):
        install_restore(plan, client=None, name="s1")
    abort_restore(plan)
    assert sorted(os.listdir(os.path.dirname(brain))) == ["brain.sqlite"]


def damage(entry, agree=False):
    """Overwrite the snapshot's pages; with `agree`, make its manifest say the damaged sha256 (an altered copy)."""
    with open(entry["path"], "r+b") as handle:
        handle.seek(4096)
        handle.write(b"\xa5" * (entry["size"] - 4096))
    if agree:
        manifest = dict(entry["manifest"], sha256=sha256_file(entry["path"]))
        with open(entry["manifest_path"], "w", encoding="utf-8") as handle:
            json.dump(manifest, handle)


@pytest.mark.parametrize(("agree", "message"), [(False, "fails its checksum"), (True, "fails quick_check")])
def test_staging_verifies_its_copy_when_the_check_did_not(brain, store, agree, message, make_brain):
    entry = take(store, brain, "s1")
    make_brain(brain, rows=3, start=1000)
    damage(entry, agree)
    digest = sha256_file(brain)
    plan = check_restore(store, location(brain), store.get("s1"), identity=IDENTITY_A, client=None, verify=False)
    with pytest.raises(SnapshotError, match=message):
        stage_restore(plan)
    assert plan.staged is None and sorted(os.listdir(os.path.dirname(brain))) == ["brain.sqlite"]
    assert sha256_file(brain) == digest


def test_deferred_keep_lets_the_engine_start_before_the_old_brain_is_hashed(brain, store, make_brain):
    entry = take(store, brain, "s1")
    make_brain(brain, rows=9, start=1000)
    newer, inode = task_ids(brain), os.stat(brain).st_ino
    plan = check_restore(store, location(brain), entry, identity=IDENTITY_A, client=None, verify=False)
    stage_restore(plan)
    previous = install_restore(plan, client=None, migrations=MIGRATIONS, defer_keep=True)
    assert previous["sha256"] is None and store.names() == ["s1"]  # not committed yet ...
    hidden = [name for name in os.listdir(store.dest) if name.endswith(".sqlite.tmp")]
    assert len(hidden) == 1 and os.stat(os.path.join(store.dest, hidden[0])).st_ino == inode  # ... but kept
    assert sorted(os.listdir(os.path.dirname(brain))) == ["brain.sqlite"]
    assert task_ids(brain) == task_ids(entry["path"])  # the Engine could start now
    assert task_ids(previous["path"]) == newer
    assert restore_data_at_risk(entry, previous, brain, []) == {"tasks": 9}
    done = complete_restore(plan)
    assert done["name"] == previous["name"] and len(done["sha256"]) == 64 and task_ids(done["path"]) == newer
    assert store.checksum_problem(store.get(done["name"])) is None and complete_restore(plan) is None
    assert [name for name in os.listdir(store.dest) if name.endswith(".tmp")] == []


def test_brain_matches_looks_past_its_samples(tmp_path, store, make_brain):
    brain = make_brain(tmp_path / "big.sqlite", rows=3000)  # about 1 MB: blocks between the samples
    entry = take(store, brain, "s1")
    copy = str(tmp_path / "copy.sqlite")
    with open(entry["path"], "rb") as reader, open(copy, "wb") as writer:
        writer.write(reader.read())
    assert brain_matches(copy, entry)
    with open(copy, "r+b") as handle:  # a byte that none of the three sampled blocks holds
        handle.seek(200 * 1024)
        byte = handle.read(1)
        handle.seek(200 * 1024)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert not brain_matches(copy, entry)
