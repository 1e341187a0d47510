# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Volume snapshots (issue 12.4): the records (names, a provider's answer checked, whose a record is, the choice of
one to restore, retention), the reflink provider's file work on real folders and real SQLite files (listing, clone or
copy, settling a WAL brain, staging, the swap and its undo), what may be restored, and the hook's variables."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import stat
from datetime import datetime, timedelta, timezone

import pytest

from ansible_collections.september.engine.plugins.module_utils import _volume_copy
from ansible_collections.september.engine.plugins.module_utils._errors import (
    BrainError,
    ForeignSnapshotError,
    OptionsError,
    SnapshotError,
)
from ansible_collections.september.engine.plugins.module_utils._timeutil import iso
from ansible_collections.september.engine.plugins.module_utils._volume_copy import (
    PREFIX,
    REPLACED,
    STAGING,
    _local_folder,
    copy_file,
    copy_tree,
    describe_volume,
    files_problem,
    hash_files,
    list_tree,
    settle_brain,
    stage_tree,
    swap_in,
    top_level,
    tree_matches,
)
from ansible_collections.september.engine.plugins.module_utils._volume_info import hook_vars
from ansible_collections.september.engine.plugins.module_utils._volume_restore import restore_problem
from ansible_collections.september.engine.plugins.module_utils._volume_store import (
    FORMAT,
    OTHER,
    SAME,
    UNKNOWN,
    VolumeStore,
    check_name,
    check_record,
    choose,
    default_name,
    diff_after,
    matching,
    prunable,
    record_binding,
)

NOW = datetime(2026, 3, 10, 12, 0, 0, tzinfo=timezone.utc)  # noqa: UP017
KEY = "volume:engine-data-u001"
MIGRATIONS = dict(migrations_source="table", migrations_table="engine_schema_migrations", migrations_column="version")


def entry(
    name,
    days_old=0,
    key=KEY,
    kind="pre-upgrade",
    version="2.3.0",
    provider="reflink",
    raw=False,
    data=True,
    retain_days=None,
):
    """A listed volume snapshot (VolumeStore.entry's keys) `days_old` days old."""
    record = dict(format=FORMAT, name=name, engine=dict(key=key) if key else {}, kind=kind, provider=provider)
    created = NOW - timedelta(days=days_old)
    return dict(
        name=name,
        provider=provider,
        id=name,
        created_at=iso(created),
        retain_until=iso(NOW + timedelta(days=retain_days)) if retain_days is not None else None,
        kind=kind,
        engine_key=key,
        engine_version=version,
        raw_copy=raw,
        has_data=data,
        record=record,
    )


# ---------------------------------------------------------------- names and a provider's answer


def test_default_name_is_never_a_file_snapshot_name():
    assert (
        default_name(NOW, "engine-data-u001", "pre-upgrade") == "volume-engine-data-u001-pre-upgrade-20260310T120000Z"
    )


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "x.volume", "x.json", "a" * 129, None, 3])
def test_bad_names_are_refused(name):
    with pytest.raises(OptionsError, match="not a valid volume snapshot name"):
        check_name(name)


def test_a_providers_answer_is_normalized():
    record = check_record(
        {"id": " snap-0abc ", "provider": "aws-ebs", "size": "1024", "created": "2026-03-10T11:00:00"}, NOW
    )
    assert record == dict(id="snap-0abc", provider="aws-ebs", created="2026-03-10T11:00:00Z", size=1024, data={})
    assert check_record({"id": "x", "provider": "gcp-pd"}, NOW)["created"] == "2026-03-10T12:00:00Z"


def test_a_bad_answer_is_one_error_naming_every_problem():
    with pytest.raises(OptionsError) as caught:
        check_record(
            {"id": "", "provider": "aws ebs", "size": -1, "created": "yesterday", "data": [1], "extra": 1}, NOW
        )
    message = caught.value.msg
    for part in (
        "unknown key 'extra'",
        "id must be",
        "provider must be",
        "is not an ISO 8601 time",
        "size=-1",
        "data must be a dict",
        "Nothing was recorded",
    ):
        assert part in message
    with pytest.raises(OptionsError, match="must be a dict"):
        check_record(None, NOW)
    with pytest.raises(OptionsError, match="size=True"):
        check_record({"id": "x", "provider": "p", "size": True}, NOW)


# ---------------------------------------------------------------- whose, which, how many


def test_a_record_belongs_to_the_engine_it_names():
    assert record_binding({"engine": {"key": KEY}}, KEY) == SAME
    assert record_binding({"engine": {"key": KEY}}, "volume:engine-data-u002") == OTHER
    assert record_binding({"engine": {}}, KEY) == UNKNOWN
    assert record_binding({}, None) == UNKNOWN


def test_the_rollback_chooses_by_record_never_by_name():
    entries = [
        entry("volume-u001-newest-but-other-engine", 0, key="volume:engine-data-u002"),
        entry("volume-u001-raw", 1, raw=True),
        entry("volume-u001-files-gone", 2, data=False),
        entry("volume-u001-manual", 3, kind="manual"),
        entry("volume-u001-on-2.2", 4, version="2.2.0"),
        entry("zz-the-one", 5),
        entry("aa-older", 6),
    ]
    assert choose(entries, KEY, version="2.3.0")["name"] == "zz-the-one"
    assert choose(entries, KEY, version="2.2.0")["name"] == "volume-u001-on-2.2"
    assert choose(entries, KEY, kind="manual")["name"] == "volume-u001-manual"
    assert choose(entries, "volume:nobody") is None
    # a record of another provider has no files here and is chosen all the same (its provider restores it)
    cloud = [entry("ebs", 0, provider="aws-ebs", data=False)]
    assert choose(cloud, KEY)["name"] == "ebs"
    assert [e["name"] for e in matching(entries, key=KEY, kind="pre-upgrade", version="2.3.0")] == [
        "volume-u001-raw",
        "volume-u001-files-gone",
        "zz-the-one",
        "aa-older",
    ]


def test_retention_prunes_only_this_engines_reflink_snapshots_of_the_kind():
    entries = [entry(f"r{n}", n) for n in range(5)]
    entries += [
        entry("cloud", 10, provider="aws-ebs"),
        entry("other", 10, key="volume:x"),
        entry("sched", 10, kind="scheduled"),
        entry("kept", 10, retain_days=3),
    ]
    assert prunable(entries, NOW, KEY, "pre-upgrade", keep_last=2, keep_days=None) == ["r2", "r3", "r4"]
    assert prunable(entries, NOW, KEY, "pre-upgrade", keep_last=2, keep_days=None, protect=["r3"]) == ["r2", "r4"]
    assert prunable(entries, NOW, KEY, "pre-upgrade", None, None) == []


def test_diff_after_each_state():
    before = dict(snapshots=["a", "b"], files={"brain.sqlite": "old"})
    unchanged = dict(changed=False)
    assert diff_after("present", before, unchanged) is before
    taken = dict(changed=True, volume_snapshot={"name": "c"}, pruned=["a"])
    assert diff_after("present", before, taken)["snapshots"] == ["b", "c"]
    assert diff_after("absent", before, dict(changed=True, volume_snapshot={"name": "a"}))["snapshots"] == ["b"]
    restored = dict(
        changed=True,
        volume_snapshot={"name": "a", "record": {"files": [{"path": "brain.sqlite", "sha256": "new", "kind": "file"}]}},
        previous={"name": "p"},
    )
    after = diff_after("restored", before, restored)
    assert after == dict(snapshots=["a", "b", "p"], files={"brain.sqlite": "new"})


# ---------------------------------------------------------------- the folder of records


def test_the_store_lists_its_records_and_nothing_else(tmp_path):
    store = VolumeStore(str(tmp_path))
    (tmp_path / "brain-x.json").write_text('{"format": "september.engine.snapshot/v1", "name": "brain-x"}')
    (tmp_path / "junk.volume.json").write_text("not json")
    (tmp_path / "renamed.volume.json").write_text(f'{{"format": "{FORMAT}", "name": "other"}}')
    record = dict(
        format=FORMAT,
        name="v1",
        provider="aws-ebs",
        id="snap-1",
        created_at=iso(NOW),
        engine={"key": KEY},
        kind="pre-upgrade",
        engine_version="2.3.0",
    )
    store.commit("v1", record)
    assert store.names() == ["v1"]
    got = store.get("v1")
    assert got["engine_key"] == KEY and got["provider"] == "aws-ebs" and got["path"] is None and not got["has_data"]
    assert stat.S_IMODE(os.stat(store.record_path("v1")).st_mode) == 0o600
    assert store.get("missing") is None
    with pytest.raises(SnapshotError, match="not a volume snapshot record"):
        store.get("junk")
    with pytest.raises(SnapshotError, match="appeared"):
        store.commit("v1", record)
    store.delete("v1")
    assert store.names() == []


# ---------------------------------------------------------------- the reflink provider's files


def wal_brain(folder, rows=3, checkpoint=True):
    """A WAL brain with `rows` rows in t and the migrations table; open (rows left in the WAL) unless checkpoint."""
    os.makedirs(folder, exist_ok=True)
    conn = sqlite3.connect(os.path.join(folder, "brain.sqlite"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE IF NOT EXISTS engine_schema_migrations (version TEXT)")
    conn.execute("INSERT INTO engine_schema_migrations VALUES ('0001'), ('0002')")
    conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
    for number in range(rows):
        conn.execute("INSERT INTO t (v) VALUES (?)", (f"row {number}",))
    if checkpoint:
        conn.close()
        return None
    return conn


def rows(path):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM t").fetchone()[0]
    finally:
        conn.close()


def test_the_tree_lists_what_a_snapshot_holds(tmp_path):
    volume = tmp_path / "vol"
    conn = wal_brain(str(volume), checkpoint=False)
    try:
        (volume / "sub").mkdir()
        (volume / "sub" / "notes.txt").write_text("x")
        os.chmod(volume / "sub" / "notes.txt", 0o640)
        (volume / "link").symlink_to("sub/notes.txt")
        (volume / "lost+found").mkdir()
        (volume / (PREFIX + "restore.tmp")).mkdir()
        (volume / "other-shm").write_text("kept: no other beside it")
        (volume / "data.db").write_text("d")
        (volume / "data.db-wal").write_bytes(b"")  # an empty WAL: nothing in it
        items = list_tree(str(volume), [])
    finally:
        conn.close()
    paths = [item["path"] for item in items]
    assert paths == ["brain.sqlite", "brain.sqlite-wal", "data.db", "link", "other-shm", "sub", "sub/notes.txt"]
    by_path = {item["path"]: item for item in items}
    assert by_path["link"]["kind"] == "symlink" and by_path["link"]["target"] == "sub/notes.txt"
    assert by_path["sub"]["kind"] == "dir" and by_path["sub/notes.txt"]["mode"] == 0o640
    assert by_path["brain.sqlite-wal"]["size"] > 0


def test_a_copy_settles_a_wal_brain_into_a_verified_self_contained_one(tmp_path):
    volume, snap = tmp_path / "vol", tmp_path / "snap"
    conn = wal_brain(str(volume), rows=5, checkpoint=False)  # the rows are only in the WAL
    try:
        items = list_tree(str(volume), [])
        digests = copy_tree(items, str(volume), str(snap), "never")
    finally:
        conn.close()
    assert digests[None] == "copy" and stat.S_IMODE(os.stat(snap).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(snap / "brain.sqlite").st_mode) == 0o600
    brain = settle_brain(str(snap / "brain.sqlite"), "quick", MIGRATIONS, [])
    assert brain["journal_mode"] == "wal" and brain["applied_migrations"] == ["0001", "0002"]
    assert brain["verify"] == {"mode": "quick", "result": "ok"}
    assert not (snap / "brain.sqlite-wal").exists() and not (snap / "brain.sqlite-shm").exists()
    assert rows(snap / "brain.sqlite") == 5
    files = hash_files([item for item in items if (snap / item["path"]).exists()], str(snap), {})
    assert files_problem(str(snap), files) is None
    assert settle_brain(str(tmp_path / "none.sqlite"), "quick", MIGRATIONS, []) is None


def test_a_corrupt_brain_is_never_kept(tmp_path):
    path = tmp_path / "brain.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with pytest.raises(BrainError, match="no volume snapshot was kept"):
        settle_brain(str(path), "quick", MIGRATIONS, [])


def test_clone_where_the_file_system_can_and_copy_where_it_cannot(tmp_path, monkeypatch):
    source = tmp_path / "a"
    source.write_bytes(b"data")
    cloned = []
    monkeypatch.setattr(_volume_copy, "clone_file", lambda src, dst: (cloned.append(dst), shutil.copyfile(src, dst)))
    assert copy_file(str(source), str(tmp_path / "b"), "auto") == ("reflink", None)
    assert cloned == [str(tmp_path / "b")]

    def unsupported(src, dst):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(_volume_copy, "clone_file", unsupported)
    method, digest = copy_file(str(source), str(tmp_path / "c"), "auto")
    assert method == "copy" and len(digest) == 64 and (tmp_path / "c").read_bytes() == b"data"
    with pytest.raises(SnapshotError, match="clone=always"):
        copy_file(str(source), str(tmp_path / "d"), "always")
    assert copy_file(str(source), str(tmp_path / "e"), "never")[0] == "copy"


def test_a_restore_stages_the_files_with_their_recorded_owner_mode_and_time_then_swaps(tmp_path):
    volume, snap = tmp_path / "vol", tmp_path / "snap"
    wal_brain(str(volume), rows=2)
    (volume / "sub").mkdir()
    (volume / "sub" / "f").write_text("old")
    os.chmod(volume / "brain.sqlite", 0o644)
    items = list_tree(str(volume), [])
    copy_tree(items, str(volume), str(snap), "never")
    files = hash_files(items, str(snap), {})
    assert tree_matches(str(volume), files, [])
    # the Engine writes on: more rows, a new file, a changed one
    wal_brain(str(volume), rows=4)
    (volume / "new").write_text("written in the bad window")
    (volume / "sub" / "f").write_text("changed")
    assert not tree_matches(str(volume), files, [])
    staging = volume / STAGING
    assert stage_tree(str(snap), files, str(staging), "never") == "copy"
    assert stat.S_IMODE(os.stat(staging / "brain.sqlite").st_mode) == 0o644
    assert os.stat(staging / "brain.sqlite").st_mtime_ns == items[0]["mtime_ns"]
    actions = []
    swap_in(str(volume), str(staging), actions)
    shutil.rmtree(staging)
    assert top_level(str(volume)) == ["brain.sqlite", "sub"] and not (volume / REPLACED).exists()
    assert tree_matches(str(volume), files, []) and rows(volume / "brain.sqlite") == 2
    assert (volume / "sub" / "f").read_text() == "old" and actions


def test_a_failed_swap_puts_the_content_back(tmp_path, monkeypatch):
    volume, staging = tmp_path / "vol", tmp_path / "vol" / STAGING
    volume.mkdir()
    (volume / "brain.sqlite").write_text("current")
    (volume / "z").write_text("current z")
    staging.mkdir()
    (staging / "brain.sqlite").write_text("snapshot")
    (staging / "z").write_text("snapshot z")
    real_rename = os.rename
    calls = []

    def failing(src, dst):
        calls.append(src)
        if len(calls) == 4:  # both current entries moved away, one staged one in: then the disk says no
            raise OSError(errno.EIO, "I/O error")
        return real_rename(src, dst)

    monkeypatch.setattr(_volume_copy.os, "rename", failing)
    with pytest.raises(SnapshotError, match="put back"):
        swap_in(str(volume), str(staging), [])
    monkeypatch.setattr(_volume_copy.os, "rename", real_rename)
    assert (volume / "brain.sqlite").read_text() == "current" and (volume / "z").read_text() == "current z"
    assert (staging / "brain.sqlite").read_text() == "snapshot"


def test_files_problem_names_what_is_wrong(tmp_path):
    (tmp_path / "f").write_text("abc")
    files = hash_files([dict(path="f", kind="file", size=3, mode=0o600, uid=0, gid=0, mtime_ns=0)], str(tmp_path), {})
    assert files_problem(str(tmp_path), files) is None
    (tmp_path / "f").write_text("abd")
    assert "sha256" in files_problem(str(tmp_path), files)
    os.unlink(tmp_path / "f")
    assert "missing" in files_problem(str(tmp_path), files)
    assert "missing" in files_problem(str(tmp_path / "gone"), files)


# ---------------------------------------------------------------- where a volume's content is


def test_a_local_volume_is_its_mountpoint_or_the_folder_it_binds():
    assert _local_folder("v", {"Mountpoint": "/var/lib/docker/volumes/v/_data", "Options": None}) == (
        "/var/lib/docker/volumes/v/_data",
        None,
    )
    bind = {"Mountpoint": "/m", "Options": {"type": "none", "o": "bind", "device": "/srv/xfs/v"}}
    assert _local_folder("v", bind) == ("/srv/xfs/v", None)
    folder, problem = _local_folder("v", {"Mountpoint": "/m", "Options": {"type": "xfs", "device": "/dev/loop3"}})
    assert folder is None and "/dev/loop3" in problem and "only while a container uses it" in problem


class _Volumes:
    def __init__(self, attrs):
        self.attrs = attrs

    def get(self, name):
        return self


class _Client:
    def __init__(self, attrs):
        self.volumes = _Volumes(attrs)


def test_another_volume_driver_is_described_not_copied(tmp_path):
    location = _volume_copy.BrainLocation(
        path="/x/brain.sqlite", source="volume", volume="v", mount_type="volume", mount_source="/x"
    )
    facts = describe_volume(_Client({"Driver": "rexray/ebs", "Options": {"size": "100"}, "Mountpoint": "/x"}), location)
    assert facts["folder"] is None and "rexray/ebs" in facts["problem"] and facts["options"] == {"size": "100"}
    with pytest.raises(Exception, match="rexray/ebs"):
        _volume_copy.volume_facts(_Client({"Driver": "rexray/ebs", "Mountpoint": "/x"}), location)
    local = describe_volume(_Client({"Driver": "local", "Options": {}, "Mountpoint": str(tmp_path)}), location)
    assert local["folder"] == str(tmp_path) and local["problem"] is None and local["filesystem"]


# ---------------------------------------------------------------- what may be restored


def test_what_may_be_restored():
    warnings = []
    assert restore_problem(entry("mine"), KEY, False, warnings) is None
    foreign = restore_problem(entry("theirs", key="volume:engine-data-u002"), KEY, False, warnings)
    assert isinstance(foreign, ForeignSnapshotError) and "another user's memory" in foreign.msg
    assert "names no Engine" in restore_problem(entry("nobody", key=None), KEY, False, warnings).msg
    assert restore_problem(entry("theirs", key="volume:engine-data-u002"), KEY, True, warnings) is None
    assert warnings and "restored anyway" in warnings[0]
    other = restore_problem(entry("ebs", provider="aws-ebs", data=False), KEY, False, [])
    assert isinstance(other, OptionsError) and "that provider's restore tasks" in other.msg
    assert restore_problem(entry("ebs", provider="aws-ebs", data=False), KEY, False, [], builtin_only=False) is None
    assert "raw copy" in restore_problem(entry("ebs", provider="aws-ebs", raw=True), KEY, False, [], False).msg
    assert "raw copy" in restore_problem(entry("raw", raw=True), KEY, False, []).msg
    assert (
        "has no files"
        in restore_problem(dict(entry("gone", data=False), record_path="/d/gone.volume.json"), KEY, False, []).msg
    )


# ---------------------------------------------------------------- the hook's contract


HOOK_KEYS = {
    "action",
    "phase",
    "reason",
    "description",
    "run_id",
    "engine",
    "host",
    "container",
    "version",
    "identity",
    "volume",
    "mount_type",
    "source",
    "driver",
    "options",
    "filesystem",
    "snapshot_name",
    "snapshot_dir",
    "snapshot",
    "check_mode",
    "tags",
}


def test_the_hook_variables_are_the_documented_contract():
    engine = dict(
        identity=dict(key=KEY, slug="engine-data-u001", volume="engine-data-u001"), container="u001", version="2.3.0"
    )
    volume = dict(
        folder="/var/lib/docker/volumes/engine-data-u001/_data",
        volume="engine-data-u001",
        mount_type="volume",
        driver="local",
        options={},
        filesystem="ext4",
    )
    hook = hook_vars(
        dict(
            action="snapshot",
            reason="pre-upgrade",
            run_id="42",
            snapshot_name="volume-x",
            host="h",
            inventory_name="u001",
        ),
        engine,
        volume,
        "/snaps",
        False,
        None,
    )
    assert set(hook) == HOOK_KEYS
    assert hook["phase"] == "snapshot" and hook["source"] == volume["folder"] and hook["snapshot"] is None
    assert hook["identity"] == {"key": KEY, "slug": "engine-data-u001"} and hook["description"] == "pre-upgrade"
    assert hook["tags"]["september.engine/identity"] == KEY
    chosen = dict(
        entry("volume-x"),
        size=1,
        path="/snaps/volume-x.volume",
        record_path="/snaps/volume-x.volume.json",
        data={"region": "eu-west-1"},
    )
    restore = hook_vars(
        dict(action="restore", reason="rollback"),
        engine,
        dict(volume, folder=None, mountpoint="/m"),
        "/snaps",
        True,
        chosen,
    )
    assert restore["phase"] == "check" and restore["check_mode"] is True and restore["source"] == "/m"
    assert restore["snapshot_name"] == "volume-x" and restore["snapshot"]["data"] == {"region": "eu-west-1"}
    assert set(restore["snapshot"]) == {"name", "provider", "id", "created_at", "size", "kind", "engine_version",
                                        "data", "path", "record_path"}
