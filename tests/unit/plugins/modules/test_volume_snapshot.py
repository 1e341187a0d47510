# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""volume_snapshot and volume_snapshot_info as whole modules, on real folders and real SQLite files (Docker is faked:
an Engine container that bind-mounts the folder, and records whether it was paused)."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest

from ansible_collections.september.engine.plugins.module_utils import _volume_info, _volume_snapshot
from ansible_collections.september.engine.plugins.modules import volume_snapshot, volume_snapshot_info


def make_brain(folder, rows):
    conn = sqlite3.connect(os.path.join(folder, "brain.sqlite"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS engine_schema_migrations(version TEXT PRIMARY KEY)")
    conn.execute("INSERT OR IGNORE INTO engine_schema_migrations VALUES ('0001'), ('0002')")
    conn.execute("CREATE TABLE IF NOT EXISTS tasks(task_id TEXT PRIMARY KEY)")
    conn.executemany("INSERT OR IGNORE INTO tasks VALUES (?)", [(f"t{i}",) for i in range(rows)])
    conn.close()


def task_count(path):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def engine(tmp_path, docker_host):
    """An Engine 'u001' whose /data is the bind-mounted folder tmp_path/data (a brain of 20 tasks), running."""
    folder = tmp_path / "data"
    folder.mkdir()
    make_brain(str(folder), 20)
    container = docker_host.serve(_volume_snapshot, _volume_info).containers.add("u001", str(folder))
    return container, folder


def listing(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else None


def test_present_pauses_the_engine_copies_verifies_and_is_idempotent(engine, tmp_path, run_module):
    container, folder = engine
    dest = tmp_path / "snaps"
    args = dict(
        container="u001", dest=str(dest), name="v1", kind="pre-upgrade", reason="unit", run_id="r1", keep_last=2
    )
    check = run_module(volume_snapshot, args, check=True, diff=True)
    assert check["changed"] and not check["failed"] and check["volume_snapshot"]["record"] is None
    assert check["diff"] == dict(before=dict(snapshots=[]), after=dict(snapshots=["v1"]))
    assert not dest.exists() and container.calls == []
    first = run_module(volume_snapshot, args)
    assert first["changed"] and not first["failed"], first
    snap = first["volume_snapshot"]
    record = snap["record"]
    assert container.calls == ["pause", "unpause"] and record["paused"] == ["u001"]
    assert record["engine"]["key"] == f"bind:{folder}" and record["engine_version"] == "2.3.0"
    assert record["brain"]["applied_migrations"] == ["0001", "0002"] and record["method"] in ("copy", "reflink")
    assert record["kind"] == "pre-upgrade" and record["run_id"] == "r1" and record["reason"] == "unit"
    assert task_count(os.path.join(snap["path"], "brain.sqlite")) == 20
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o700 and stat.S_IMODE(os.stat(snap["record_path"]).st_mode) == 0o600
    assert listing(dest) == [".lock", "v1.volume", "v1.volume.json"]
    again = run_module(volume_snapshot, args)
    assert (
        not again["changed"]
        and again["volume_snapshot"]["record"] == record
        and container.calls == ["pause", "unpause"]
    )


def test_retention_and_absent(engine, tmp_path, run_module):
    dest = tmp_path / "snaps"
    for name in ("a", "b", "c"):
        assert not run_module(volume_snapshot, dict(container="u001", dest=str(dest), name=name, keep_last=2))["failed"]
    assert [n for n in listing(dest) if not n.startswith(".")] == [
        "b.volume",
        "b.volume.json",
        "c.volume",
        "c.volume.json",
    ]
    gone = run_module(volume_snapshot, dict(state="absent", dest=str(dest), name="c"), check=True)
    assert gone["changed"] and os.path.exists(dest / "c.volume.json")
    gone = run_module(volume_snapshot, dict(state="absent", dest=str(dest), name="c"))
    assert gone["changed"] and not os.path.exists(dest / "c.volume") and not os.path.exists(dest / "c.volume.json")
    assert not run_module(volume_snapshot, dict(state="absent", dest=str(dest), name="c"))["changed"]


def test_restore_refused_while_running_then_done_once_then_nothing_to_do(engine, tmp_path, run_module):
    container, folder = engine
    dest = tmp_path / "snaps"
    assert not run_module(volume_snapshot, dict(container="u001", dest=str(dest), name="v1"))["failed"]
    make_brain(str(folder), 35)  # the bad window
    (folder / "written-later").write_text("x")
    args = dict(container="u001", dest=str(dest), state="restored", snapshot="v1")
    busy = run_module(volume_snapshot, args)
    assert busy["failed"] and "it is in use" in busy["msg"] and "Nothing was changed" in busy["msg"]
    container.running = False
    check = run_module(volume_snapshot, args, check=True, diff=True)
    assert check["changed"] and task_count(folder / "brain.sqlite") == 35 and (folder / "written-later").exists()
    assert check["data_at_risk"] == {"tasks": 15} and check["previous"]["name"].startswith("volume-bind-data-")
    assert check["diff"]["after"]["files"] != check["diff"]["before"]["files"]
    done = run_module(volume_snapshot, args, diff=True)
    assert done["changed"] and not done["failed"], done
    assert task_count(folder / "brain.sqlite") == 20 and not (folder / "written-later").exists()
    assert done["data_at_risk"] == {"tasks": 15}
    kept = done["previous"]
    assert not kept["raw_copy"] and task_count(os.path.join(kept["path"], "brain.sqlite")) == 35
    assert os.path.exists(os.path.join(kept["path"], "written-later"))
    assert done["diff"]["after"]["files"] == {"brain.sqlite": done["volume_snapshot"]["record"]["files"][0]["sha256"]}
    again = run_module(volume_snapshot, args)
    assert not again["changed"] and again["previous"] is None, again["actions"]
    assert [n for n in os.listdir(folder) if n.startswith(".september-volume-")] == []


def test_a_damaged_snapshot_is_refused_before_anything_changes(engine, tmp_path, run_module):
    container, folder = engine
    dest = tmp_path / "snaps"
    assert not run_module(volume_snapshot, dict(container="u001", dest=str(dest), name="v1"))["failed"]
    make_brain(str(folder), 30)
    container.running = False
    with open(dest / "v1.volume" / "brain.sqlite", "r+b") as handle:
        handle.seek(5000)
        handle.write(b"\x00\x01\x02")
    result = run_module(volume_snapshot, dict(container="u001", dest=str(dest), state="restored", snapshot="v1"))
    assert result["failed"] and "fails its checksums" in result["msg"]
    assert task_count(folder / "brain.sqlite") == 30


def test_records_of_other_providers(engine, tmp_path, run_module):
    dest = tmp_path / "snaps"
    record = dict(id="snap-0abc", provider="aws-ebs", size=1024, data={"region": "eu-west-1"})
    args = dict(container="u001", dest=str(dest), state="recorded", name="ebs1", kind="pre-upgrade", record=record)
    check = run_module(volume_snapshot, args, check=True)
    assert check["changed"] and not dest.exists()
    first = run_module(volume_snapshot, args)
    assert (
        first["changed"] and first["volume_snapshot"]["id"] == "snap-0abc" and first["volume_snapshot"]["path"] is None
    )
    assert not run_module(volume_snapshot, args)["changed"]
    clash = run_module(volume_snapshot, dict(args, record=dict(record, id="snap-other")))
    assert clash["failed"] and "already records aws-ebs snapshot snap-0abc" in clash["msg"]
    restore = run_module(volume_snapshot, dict(container="u001", dest=str(dest), state="restored", snapshot="ebs1"))
    assert restore["failed"] and "that provider's restore tasks" in restore["msg"]
    removed = run_module(volume_snapshot, dict(state="absent", dest=str(dest), name="ebs1"))
    assert removed["changed"] and any("delete it there" in w for w in removed["warnings"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (dict(keep_last=-1), "keep_last must be 0 or more"),
        (dict(name="../x"), "not a valid volume snapshot name"),
        (dict(engine_key="u001"), "is not an Engine identity key"),
        (dict(engine_key="volume:someone-else"), "belongs to Engine bind:"),
        (dict(state="recorded", record=dict(id="", provider="p")), "id must be"),
        (dict(state="restored"), "missing: snapshot"),
    ],
)
def test_bad_input_is_one_error_before_anything_changes(engine, tmp_path, args, message, run_module):
    container, _folder = engine
    dest = tmp_path / "snaps"
    result = run_module(volume_snapshot, dict(dict(container="u001", dest=str(dest)), **args))
    assert result["failed"] and message in result["msg"], result["msg"]
    assert not dest.exists() and container.calls == []


def test_info_chooses_checks_and_describes_the_hook(engine, tmp_path, run_module):
    _container, folder = engine
    dest = tmp_path / "snaps"
    run_module(volume_snapshot, dict(container="u001", dest=str(dest), name="old", kind="pre-upgrade"))
    run_module(volume_snapshot, dict(container="u001", dest=str(dest), name="new", kind="pre-upgrade"))
    info = run_module(
        volume_snapshot_info,
        dict(
            container="u001",
            dest=str(dest),
            kind="pre-upgrade",
            verify=True,
            hook=dict(action="restore", reason="rollback", host="u001"),
        ),
        check=True,
    )
    assert not info["failed"] and not info["changed"], info
    assert info["chosen"]["name"] == "new" and info["is_restorable"] and info["problems"] == []
    assert [s["name"] for s in info["snapshots"]] == ["new", "old"]
    assert info["volume"]["folder"] == str(folder) and info["engine"]["identity"]["key"] == f"bind:{folder}"
    hook = info["hook"]
    assert hook["phase"] == "check" and hook["check_mode"] and hook["snapshot"]["name"] == "new"
    assert hook["source"] == str(folder) and hook["container"] == "u001"
    os.unlink(dest / "new.volume" / "brain.sqlite")
    broken = run_module(volume_snapshot_info, dict(container="u001", dest=str(dest), name="new", verify=True))
    assert not broken["is_restorable"] and "missing" in broken["problems"][0]
    other = run_module(volume_snapshot_info, dict(engine_key="volume:engine-data-u002", dest=str(dest)))
    assert other["chosen"] is None and other["snapshots"] == []
    assert other["problems"] == [
        f"No volume snapshot of Engine volume:engine-data-u002 in {dest}. Nothing was changed."
    ]
