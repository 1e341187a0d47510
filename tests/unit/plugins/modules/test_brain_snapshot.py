# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""brain_snapshot and brain_snapshot_info as whole modules, on real SQLite files (Docker is faked)."""

from __future__ import annotations

import os
import sqlite3
import stat

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.september.engine.plugins.module_utils._errors import DockerUnavailableError
from ansible_collections.september.engine.plugins.modules import brain_snapshot, brain_snapshot_info
from engine_testkit.module_runner import ExitJson, FailJson


class FakeContainers:
    def __init__(self, running=()):
        self.running = list(running)

    def list(self, all=False, filters=None, ignore_removed=False):
        if filters and filters.get("status") == "restarting":
            return []
        return list(self.running)


class FakeImage:
    def __init__(self):
        self.attrs = {"Config": {"Labels": {"org.opencontainers.image.version": "2.3.0"}}}
        self.tags = ["engine:2.3.0"]


class FakeImages:
    def get(self, ref):
        return FakeImage()


class FakeClient:
    def __init__(self, running=()):
        self.containers = FakeContainers(running)
        self.images = FakeImages()


class FakeContainer:
    def __init__(self, name, source):
        self.name = name
        self.attrs = {"Mounts": [{"Type": "bind", "Source": source, "Destination": "/data"}],
                      "State": {"Running": True}, "Config": {"Image": "engine:2.3.0"}, "Image": "sha256:1"}


@pytest.fixture
def client(monkeypatch):
    fake = FakeClient()
    monkeypatch.setattr(brain_snapshot, "docker_client", lambda params: fake)
    return fake


def run(module, args, check=False, diff=False):
    args = dict(args)
    if check:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args):
        with pytest.raises((ExitJson, FailJson)) as info:
            module.main()
    result = info.value.args[0]
    result["failed"] = info.type is FailJson
    return result


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


def test_present_apply_again_check_diff(brain, tmp_path, client):
    dest = str(tmp_path / "snaps" / "u001")
    args = dict(path=brain, dest=dest, name="s1", reason="unit", retain_days=3)
    first = run(brain_snapshot, args)
    assert first["changed"] and not first["failed"], first
    assert first["snapshot"]["manifest"]["reason"] == "unit" and first["snapshot"]["manifest"]["engine"] is None
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(first["snapshot"]["path"]).st_mode) == 0o600
    again = run(brain_snapshot, args)
    assert not again["changed"] and again["snapshot"]["sha256"] == first["snapshot"]["sha256"]
    before = listing(dest)
    check = run(brain_snapshot, dict(args, name="s2"), check=True, diff=True)
    assert check["changed"] and check["snapshot"]["sha256"] is None
    assert check["diff"] == dict(before=dict(snapshots=["s1"]), after=dict(snapshots=["s1", "s2"]))
    assert listing(dest) == before
    diff = run(brain_snapshot, dict(args, name="s2"), diff=True)
    assert diff["diff"]["after"] == dict(snapshots=["s1", "s2"]) and listing(dest) == sorted(
        ["s1.json", "s1.sqlite", "s2.json", "s2.sqlite"])
    same = run(brain_snapshot, dict(args, name="s2"), diff=True)
    assert not same["changed"] and same["diff"]["before"] == same["diff"]["after"]


def test_check_mode_writes_no_folder(brain, tmp_path, client):
    dest = str(tmp_path / "snaps")
    result = run(brain_snapshot, dict(path=brain, dest=dest), check=True)
    assert result["changed"] and result["snapshot"]["name"].startswith("brain-")
    assert not os.path.exists(dest)
    assert result["actions"][0] == f"create folder {dest} (mode 0700)"


def test_retention_after_snapshot_and_pruned_alone(brain, tmp_path, client):
    dest = str(tmp_path / "snaps")
    for name in ("a", "b", "c"):
        run(brain_snapshot, dict(path=brain, dest=dest, name=name))
    result = run(brain_snapshot, dict(path=brain, dest=dest, name="d", keep_last=2))
    assert result["changed"] and sorted(result["pruned"]) == ["a", "b"]
    assert listing(dest) == ["c.json", "c.sqlite", "d.json", "d.sqlite"]
    check = run(brain_snapshot, dict(dest=dest, state="pruned", keep_last=1), check=True, diff=True)
    assert check["pruned"] == ["c"] and check["diff"]["after"] == dict(snapshots=["d"])
    assert listing(dest) == ["c.json", "c.sqlite", "d.json", "d.sqlite"]
    pruned = run(brain_snapshot, dict(dest=dest, state="pruned", keep_last=1))
    assert pruned["changed"] and pruned["pruned"] == ["c"]
    assert not run(brain_snapshot, dict(dest=dest, state="pruned", keep_last=1))["changed"]


def test_absent_respects_retain_until(brain, tmp_path, client):
    dest = str(tmp_path / "snaps")
    run(brain_snapshot, dict(path=brain, dest=dest, name="kept", retain_days=7))
    refused = run(brain_snapshot, dict(dest=dest, state="absent", name="kept"))
    assert refused["failed"] and "retained until" in refused["msg"] and "force=true" in refused["msg"]
    assert listing(dest) == ["kept.json", "kept.sqlite"]
    check = run(brain_snapshot, dict(dest=dest, state="absent", name="kept", force=True), check=True)
    assert check["changed"] and listing(dest) == ["kept.json", "kept.sqlite"]
    removed = run(brain_snapshot, dict(dest=dest, state="absent", name="kept", force=True))
    assert removed["changed"] and listing(dest) == []
    assert not run(brain_snapshot, dict(dest=dest, state="absent", name="kept"))["changed"]


def test_restore_whole_module(brain, tmp_path, client):
    dest = str(tmp_path / "snaps")
    taken = run(brain_snapshot, dict(path=brain, dest=dest, name="s1"))["snapshot"]
    conn = sqlite3.connect(brain, isolation_level=None)
    conn.execute("INSERT INTO tasks VALUES ('after')")
    conn.close()
    args = dict(path=brain, dest=dest, state="restored", snapshot="s1")
    check = run(brain_snapshot, args, check=True, diff=True)
    assert check["changed"] and check["previous_brain"]["sha256"] is None and check["data_at_risk"] == {"tasks": 1}
    assert check["diff"]["after"]["brain"]["sha256"] == taken["sha256"]
    assert listing(dest) == ["s1.json", "s1.sqlite"]
    restored = run(brain_snapshot, args, diff=True)
    assert restored["changed"] and restored["snapshot"]["name"] == "s1" and restored["data_at_risk"] == {"tasks": 1}
    assert restored["previous_brain"]["name"] in restored["diff"]["after"]["snapshots"]
    assert restored["diff"]["before"]["brain"]["applied_migrations"] == ["0001", "0002"]
    again = run(brain_snapshot, args)
    assert not again["changed"] and again["previous_brain"] is None and again["data_at_risk"] is None


def test_restore_refused_while_a_container_mounts_the_folder(brain, tmp_path, client):
    dest = str(tmp_path / "snaps")
    run(brain_snapshot, dict(path=brain, dest=dest, name="s1"))
    client.containers.running.append(FakeContainer("engine-x", os.path.dirname(brain)))
    result = run(brain_snapshot, dict(path=brain, dest=dest, state="restored", snapshot="s1"))
    assert result["failed"] and "Refusing to restore" in result["msg"]
    assert result["failed"] and "running container(s) engine-x" in result["msg"] and "Stop the Engine" in result["msg"]
    assert listing(dest) == ["s1.json", "s1.sqlite"]


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
def test_bad_input(args, message, client):
    result = run(brain_snapshot, args)
    assert result["failed"] and message in result["msg"], result
    assert not os.path.exists("/tmp/d")


def test_unreachable_docker(brain, tmp_path, monkeypatch):
    def unreachable(params):
        raise DockerUnavailableError("Cannot reach the Docker daemon at tcp://127.0.0.1:1: refused.")

    monkeypatch.setattr(brain_snapshot, "docker_client", unreachable)
    result = run(brain_snapshot, dict(path=brain, dest=str(tmp_path / "d")))
    assert result["failed"] and "Cannot reach the Docker daemon" in result["msg"]


def test_info_lists_newest_first_and_verifies(brain, tmp_path, client):
    dest = str(tmp_path / "snaps")
    assert run(brain_snapshot_info, dict(dest=dest))["snapshots"] == []
    for name in ("a", "b"):
        run(brain_snapshot, dict(path=brain, dest=dest, name=name, reason=f"r-{name}"))
    listed = run(brain_snapshot_info, dict(dest=dest, verify_checksums=True))
    assert not listed["changed"] and [s["name"] for s in listed["snapshots"]] == ["b", "a"]
    assert all(s["checksum_ok"] for s in listed["snapshots"]) and listed["snapshots"][0]["reason"] == "r-b"
    with open(os.path.join(dest, "a.sqlite"), "r+b") as handle:
        handle.seek(200)
        handle.write(b"x")
    one = run(brain_snapshot_info, dict(dest=dest, name="a", verify_checksums=True), check=True)
    assert [s["name"] for s in one["snapshots"]] == ["a"] and one["snapshots"][0]["checksum_ok"] is False
    assert "manifest says" in one["snapshots"][0]["checksum_problem"]
    plain = run(brain_snapshot_info, dict(dest=dest))
    assert "checksum_ok" not in plain["snapshots"][0]
    taken_again = run(brain_snapshot, dict(path=brain, dest=dest, name="a"))
    assert taken_again["failed"] and "fails its checksum" in taken_again["msg"]
    assert "kept as evidence" in taken_again["msg"]
