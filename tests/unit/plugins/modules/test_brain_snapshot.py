# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""brain_snapshot and brain_snapshot_info as whole modules, on real SQLite files (Docker is faked)."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from ansible_collections.september.engine.plugins.module_utils import _snapshot_manager
from ansible_collections.september.engine.plugins.module_utils._errors import DockerUnavailableError
from ansible_collections.september.engine.plugins.modules import brain_snapshot, brain_snapshot_info


@pytest.fixture
def client(docker_host):
    return docker_host.serve(_snapshot_manager)


@pytest.fixture
def brain(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    path = str(folder / "brain.sqlite")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE engine_schema_migrations(version TEXT PRIMARY KEY)")
    conn.execute("INSERT INTO engine_schema_migrations VALUES ('0001'), ('0002')")
    conn.execute("CREATE TABLE tasks(task_id TEXT PRIMARY KEY)")
    conn.executemany("INSERT INTO tasks VALUES (?)", [(f"t{i}",) for i in range(20)])
    conn.close()
    return path


def listing(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else None


def test_present_apply_again_check_diff(brain, tmp_path, client, run_module):
    dest = str(tmp_path / "snaps" / "u001")
    args = dict(path=brain, dest=dest, name="s1", reason="unit", retain_days=3)
    first = run_module(brain_snapshot, args)
    assert first["changed"] and not first["failed"], first
    manifest = first["snapshot"]["manifest"]
    assert manifest["reason"] == "unit" and manifest["kind"] == "manual" and manifest["engine"]["container"] is None
    assert manifest["engine"]["key"] == f"bind:{os.path.dirname(brain)}" == first["snapshot"]["engine_key"]
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(first["snapshot"]["path"]).st_mode) == 0o600
    again = run_module(brain_snapshot, args)
    assert not again["changed"] and again["snapshot"]["sha256"] == first["snapshot"]["sha256"]
    before = listing(dest)
    check = run_module(brain_snapshot, dict(args, name="s2"), check=True, diff=True)
    assert check["changed"] and check["snapshot"]["sha256"] is None
    assert check["diff"] == dict(before=dict(snapshots=["s1"]), after=dict(snapshots=["s1", "s2"]))
    assert listing(dest) == before
    diff = run_module(brain_snapshot, dict(args, name="s2"), diff=True)
    assert diff["diff"]["after"] == dict(snapshots=["s1", "s2"]) and listing(dest) == sorted(
        [".lock", "s1.json", "s1.sqlite", "s2.json", "s2.sqlite"]
    )
    same = run_module(brain_snapshot, dict(args, name="s2"), diff=True)
    assert not same["changed"] and same["diff"]["before"] == same["diff"]["after"]


def test_check_mode_writes_no_folder(brain, tmp_path, client, run_module):
    dest = str(tmp_path / "snaps")
    result = run_module(brain_snapshot, dict(path=brain, dest=dest), check=True)
    assert result["changed"] and result["snapshot"]["name"].startswith("brain-bind-data-")
    assert "-manual-" in result["snapshot"]["name"]
    assert not os.path.exists(dest)
    assert result["actions"][0] == f"create folder {dest} (mode 0700)"


def test_retention_after_snapshot_and_pruned_alone(brain, tmp_path, client, run_module):
    dest = str(tmp_path / "snaps")
    for name in ("a", "b", "c"):
        run_module(brain_snapshot, dict(path=brain, dest=dest, name=name))
    result = run_module(brain_snapshot, dict(path=brain, dest=dest, name="d", keep_last=2))
    assert result["changed"] and sorted(result["pruned"]) == ["a", "b"]
    assert listing(dest) == [".lock", "c.json", "c.sqlite", "d.json", "d.sqlite"]
    check = run_module(brain_snapshot, dict(dest=dest, state="pruned", keep_last=1), check=True, diff=True)
    assert check["pruned"] == ["c"] and check["diff"]["after"] == dict(snapshots=["d"])
    assert listing(dest) == [".lock", "c.json", "c.sqlite", "d.json", "d.sqlite"]
    pruned = run_module(brain_snapshot, dict(dest=dest, state="pruned", keep_last=1))
    assert pruned["changed"] and pruned["pruned"] == ["c"]
    assert not run_module(brain_snapshot, dict(dest=dest, state="pruned", keep_last=1))["changed"]


def test_absent_respects_retain_until(brain, tmp_path, client, run_module):
    dest = str(tmp_path / "snaps")
    run_module(brain_snapshot, dict(path=brain, dest=dest, name="kept", retain_days=7))
    refused = run_module(brain_snapshot, dict(dest=dest, state="absent", name="kept"))
    assert refused["failed"] and "retained until" in refused["msg"] and "force=true" in refused["msg"]
    assert listing(dest) == [".lock", "kept.json", "kept.sqlite"]
    check = run_module(brain_snapshot, dict(dest=dest, state="absent", name="kept", force=True), check=True)
    assert check["changed"] and listing(dest) == [".lock", "kept.json", "kept.sqlite"]
    removed = run_module(brain_snapshot, dict(dest=dest, state="absent", name="kept", force=True))
    assert removed["changed"] and listing(dest) == [".lock"]
    assert not run_module(brain_snapshot, dict(dest=dest, state="absent", name="kept"))["changed"]


def test_restore_whole_module(brain, tmp_path, client, run_module):
    dest = str(tmp_path / "snaps")
    taken = run_module(brain_snapshot, dict(path=brain, dest=dest, name="s1"))["snapshot"]
    conn = sqlite3.connect(brain, isolation_level=None)
    conn.execute("INSERT INTO tasks VALUES ('after')")
    conn.close()
    args = dict(path=brain, dest=dest, state="restored", snapshot="s1")
    check = run_module(brain_snapshot, args, check=True, diff=True)
    assert check["changed"] and check["previous_brain"]["sha256"] is None and check["data_at_risk"] == {"tasks": 1}
    assert check["diff"]["after"]["brain"]["sha256"] == taken["sha256"]
    assert listing(dest) == [".lock", "s1.json", "s1.sqlite"]
    restored = run_module(brain_snapshot, args, diff=True)
    assert restored["changed"] and restored["snapshot"]["name"] == "s1" and restored["data_at_risk"] == {"tasks": 1}
    assert restored["previous_brain"]["name"] in restored["diff"]["after"]["snapshots"]
    assert restored["diff"]["before"]["brain"]["applied_migrations"] == ["0001", "0002"]
    again = run_module(brain_snapshot, args)
    assert not again["changed"] and again["previous_brain"] is None and again["data_at_risk"] is None


def test_restore_refused_while_a_container_mounts_the_folder(brain, tmp_path, client, run_module):
    dest = str(tmp_path / "snaps")
    run_module(brain_snapshot, dict(path=brain, dest=dest, name="s1"))
    client.containers.add("engine-x", os.path.dirname(brain))  # the Engine, running
    client.containers.add("sidecar", os.path.dirname(brain))
    result = run_module(brain_snapshot, dict(path=brain, dest=dest, state="restored", snapshot="s1"))
    assert result["failed"] and "Refusing to restore" in result["msg"]
    assert "container engine-x is running" in result["msg"]
    assert "running container(s) sidecar mount its folder" in result["msg"] and "Stop the Engine" in result["msg"]
    assert result["holders"] and listing(dest) == [".lock", "s1.json", "s1.sqlite"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (dict(container="c", path="/x", dest="/tmp/d"), "mutually exclusive"),
        (dict(dest="/tmp/d"), "state is present but any of the following are missing: container, volume, path"),
        (dict(dest="/tmp/d", state="absent"), "state is absent but all of the following are missing: name"),
        (dict(dest="/tmp/d", state="pruned"), "keep_last, keep_days"),
        (dict(dest="/tmp/d", path="/x", state="restored"), "snapshot"),
        (dict(dest="/tmp/d", path="/x", keep_last=-1), "keep_last must be 0 or more"),
        (dict(dest="/tmp/d", path="/x", name="../evil"), "not a valid snapshot name"),
        (dict(dest="/tmp/d", path="/does/not/exist.sqlite"), "There is no brain at /does/not/exist.sqlite"),
    ],
)
def test_bad_input(args, message, client, run_module):
    result = run_module(brain_snapshot, args)
    assert result["failed"] and message in result["msg"], result
    assert not os.path.exists("/tmp/d")


def test_a_relative_dest_is_refused_before_the_lock_or_any_folder(brain, tmp_path, client, monkeypatch, run_module):
    monkeypatch.chdir(tmp_path)
    lock = dict(dir=str(tmp_path / "locks"), key="volume:engine-data-u1", run_id="r1", owner="me")
    for state in ("present", "restored"):
        result = run_module(brain_snapshot, dict(path=brain, dest="snaps", state=state, snapshot="s1", lock=lock))
        assert result["failed"] and result["msg"].startswith(
            "dest='snaps': must be an absolute path on the Docker host, e.g. /var/lib/september-engine"
        ), result
    assert not (tmp_path / "snaps").exists() and not (tmp_path / "locks").exists()


def test_unreachable_docker(brain, tmp_path, monkeypatch, run_module):
    def unreachable(params):
        raise DockerUnavailableError("Cannot reach the Docker daemon at tcp://127.0.0.1:1: refused.")

    monkeypatch.setattr(_snapshot_manager, "docker_client", unreachable)
    result = run_module(brain_snapshot, dict(path=brain, dest=str(tmp_path / "d")))
    assert result["failed"] and "Cannot reach the Docker daemon" in result["msg"]


def test_info_lists_newest_first_and_verifies(brain, tmp_path, client, run_module):
    dest = str(tmp_path / "snaps")
    assert run_module(brain_snapshot_info, dict(dest=dest))["snapshots"] == []
    for name in ("a", "b"):
        run_module(brain_snapshot, dict(path=brain, dest=dest, name=name, reason=f"r-{name}"))
    listed = run_module(brain_snapshot_info, dict(dest=dest, verify_checksums=True))
    assert not listed["changed"] and [s["name"] for s in listed["snapshots"]] == ["b", "a"]
    assert all(s["checksum_ok"] for s in listed["snapshots"]) and listed["snapshots"][0]["reason"] == "r-b"
    with open(os.path.join(dest, "a.sqlite"), "r+b") as handle:
        handle.seek(200)
        handle.write(b"x")
    one = run_module(brain_snapshot_info, dict(dest=dest, name="a", verify_checksums=True), check=True)
    assert [s["name"] for s in one["snapshots"]] == ["a"] and one["snapshots"][0]["checksum_ok"] is False
    assert "manifest says" in one["snapshots"][0]["checksum_problem"]
    plain = run_module(brain_snapshot_info, dict(dest=dest))
    assert "checksum_ok" not in plain["snapshots"][0]
    taken_again = run_module(brain_snapshot, dict(path=brain, dest=dest, name="a"))
    assert taken_again["failed"] and "fails its checksum" in taken_again["msg"]
    assert "kept as evidence" in taken_again["msg"]


def second_brain(tmp_path, rows=5):
    folder = tmp_path / "data-b"
    folder.mkdir()
    path = str(folder / "brain.sqlite")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE engine_schema_migrations(version TEXT PRIMARY KEY)")
    conn.execute("CREATE TABLE tasks(task_id TEXT PRIMARY KEY)")
    conn.executemany("INSERT INTO tasks VALUES (?)", [(f"b{i}",) for i in range(rows)])
    conn.close()
    return path


def rows(path):
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return {row[0] for row in conn.execute("SELECT task_id FROM tasks")}
    finally:
        conn.close()


def test_two_engines_share_a_folder_and_one_name(brain, tmp_path, client, run_module):
    """Issue 10.1: Engine B never re-uses Engine A's snapshot, and each restore gets its own brain back."""
    other = second_brain(tmp_path)
    dest = str(tmp_path / "shared")
    common = dict(dest=dest, name="pre-upgrade-2.3.0-to-2.4.0-run7", kind="pre-upgrade")
    a = run_module(brain_snapshot, dict(common, path=brain, engine_name="u001"))
    b = run_module(brain_snapshot, dict(common, path=other, engine_name="u002"))
    assert a["snapshot"]["name"] == "pre-upgrade-2.3.0-to-2.4.0-run7" and b["changed"]
    assert b["snapshot"]["name"].startswith("pre-upgrade-2.3.0-to-2.4.0-run7-bind-data-b-")
    assert any("belongs to Engine bind:" in w for w in b["warnings"])
    again = run_module(brain_snapshot, dict(common, path=other))
    assert not again["changed"] and again["snapshot"]["name"] == b["snapshot"]["name"]
    a_rows, b_rows = rows(brain), rows(other)
    for path, extra in ((brain, "a-late"), (other, "b-late")):
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("INSERT INTO tasks VALUES (?)", (extra,))
        conn.close()
    wrong = run_module(brain_snapshot, dict(dest=dest, path=other, state="restored", snapshot=a["snapshot"]["name"]))
    assert wrong["failed"] and "belongs to Engine bind:" in wrong["msg"] and "inventory name u001" in wrong["msg"]
    assert "allow_other_engine=true" in wrong["msg"] and rows(other) == b_rows | {"b-late"}
    for path, taken, expected in ((brain, a, a_rows), (other, b, b_rows)):
        restored = run_module(brain_snapshot, dict(dest=dest, path=path, state="restored",
                                                   snapshot=taken["snapshot"]["name"]))
        assert restored["changed"] and rows(path) == expected and restored["data_at_risk"] == {"tasks": 1}
    moved = run_module(
        brain_snapshot,
        dict(dest=dest, path=other, state="restored", snapshot=a["snapshot"]["name"], allow_other_engine=True),
    )
    assert moved["changed"] and rows(other) == a_rows and "restored anyway" in moved["warnings"][0]


def test_engine_key_must_match_the_location(brain, tmp_path, client, run_module):
    dest = str(tmp_path / "snaps")
    result = run_module(brain_snapshot, dict(path=brain, dest=dest, engine_key="volume:someone-else"))
    assert result["failed"] and "not to engine_key=volume:someone-else" in result["msg"]
    bad = run_module(brain_snapshot, dict(path=brain, dest=dest, engine_key="nonsense"))
    assert bad["failed"] and "is not an Engine identity key" in bad["msg"] and not os.path.exists(dest)
    key = f"bind:{os.path.dirname(brain)}"
    assert not run_module(brain_snapshot, dict(path=brain, dest=dest, engine_key=key))["failed"]


def test_retention_by_kind_and_engine(brain, tmp_path, client, run_module):
    other = second_brain(tmp_path)
    dest = str(tmp_path / "shared")
    for number in range(4):
        run_module(brain_snapshot, dict(path=brain, dest=dest, name=f"a-sched-{number}", kind="scheduled"))
        run_module(brain_snapshot, dict(path=other, dest=dest, name=f"b-sched-{number}", kind="scheduled"))
    result = run_module(brain_snapshot, dict(path=brain, dest=dest, name="a-up", kind="pre-upgrade", keep_last=1))
    assert result["changed"] and result["pruned"] == []  # no scheduled snapshot is the upgrade's to prune
    alone = run_module(brain_snapshot, dict(dest=dest, state="pruned", kind="scheduled", keep_last=1))
    assert alone["failed"] and "several Engines" in alone["msg"]
    key_b = f"bind:{os.path.dirname(other)}"
    pruned = run_module(brain_snapshot, dict(dest=dest, state="pruned", kind="scheduled", keep_last=1,
                                             engine_key=key_b))
    assert sorted(pruned["pruned"]) == ["b-sched-0", "b-sched-1", "b-sched-2"]
    names = run_module(brain_snapshot_info, dict(dest=dest))["snapshots"]
    assert sorted(s["name"] for s in names) == ["a-sched-0", "a-sched-1", "a-sched-2", "a-sched-3", "a-up", "b-sched-3"]


def test_info_filters_by_engine_kind_and_version(brain, tmp_path, client, run_module):
    other = second_brain(tmp_path)
    client.containers.add("engine-a", os.path.dirname(brain))
    dest = str(tmp_path / "shared")
    run_module(brain_snapshot, dict(path=brain, dest=dest, name="a1", kind="pre-upgrade"))
    run_module(brain_snapshot, dict(path=brain, dest=dest, name="a2", kind="scheduled"))
    run_module(brain_snapshot, dict(path=other, dest=dest, name="b1", kind="pre-upgrade"))
    key_a = f"bind:{os.path.dirname(brain)}"
    listed = run_module(brain_snapshot_info, dict(dest=dest, engine_key=key_a))["snapshots"]
    assert [s["name"] for s in listed] == ["a2", "a1"] and {s["engine_key"] for s in listed} == {key_a}
    chosen = run_module(brain_snapshot_info, dict(dest=dest, engine_key=key_a, kind="pre-upgrade", version="2.3.0"))
    assert [s["name"] for s in chosen["snapshots"]] == ["a1"] and chosen["snapshots"][0]["engine_version"] == "2.3.0"
    manifest = chosen["snapshots"][0]["manifest"]
    assert manifest["engine"]["container"] == "engine-a" and manifest["image"] == "engine:2.3.0"
    assert manifest["image_id"] == "sha256:1" and manifest["sqlite_version"] == sqlite3.sqlite_version
    assert run_module(brain_snapshot_info, dict(dest=dest, version="9.9.9"))["snapshots"] == []
    assert [s["name"] for s in run_module(brain_snapshot_info, dict(dest=dest, kind="pre-upgrade"))["snapshots"]] == [
        "b1",
        "a1",
    ]
    bad = run_module(brain_snapshot_info, dict(dest=dest, engine_key="x"))
    assert bad["failed"] and "identity key" in bad["msg"]
