# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""migration_check's boot test with a scripted Docker: the copy, the containers it asks for, the verdicts, cleanup."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections import namedtuple

import pytest

from ansible_collections.september.engine.plugins.module_utils import _boot_test
from ansible_collections.september.engine.plugins.module_utils._boot_test import BootTest, copy_brain, last_error_line
from ansible_collections.september.engine.plugins.module_utils._errors import InsufficientSpaceError
from ansible_collections.september.engine.plugins.module_utils._health import Probe

KEY = "throwaway-key-0123456789"
REFUSED = json.dumps(
    {
        "level": "ERROR",
        "logger": "migrations",
        "message": "MIGRATION_REQUIRED: the brain holds migrations 0006 that version 2.3.0 does not ship",
    }
)


def make_brain(path, rows=3):
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE tasks (task_id TEXT PRIMARY KEY)")
    conn.executemany("INSERT INTO tasks VALUES (?)", [(f"t{n}",) for n in range(rows)])
    conn.commit()
    return conn  # left open: the brain is live, its rows partly in the -wal


class FakeContainer:
    """A container whose life is scripted: 'healthy', 'refuses' (exits 3, MIGRATION_REQUIRED), 'crashes', 'hangs'."""

    def __init__(self, client, image, kwargs):
        self.client = client
        self.image = image
        self.kwargs = kwargs
        self.name = kwargs["name"]
        self.behaviour = client.behaviour[image]
        self.attrs = {"State": {"Status": "created"}, "NetworkSettings": {"Ports": {}}}
        self.removed = False
        self.stopped = False

    def start(self):
        folder = next(iter(self.kwargs["volumes"]))
        self.client.seen_folders.append((folder, sorted(os.listdir(folder)), stat.S_IMODE(os.stat(folder).st_mode)))
        if self.behaviour in ("healthy", "hangs"):
            ports = {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}]}
            self.attrs = {"State": {"Status": "running", "Running": True}, "NetworkSettings": {"Ports": ports}}
        else:
            code = 3 if self.behaviour == "refuses" else 1
            self.attrs = {"State": {"Status": "exited", "ExitCode": code}, "NetworkSettings": {"Ports": {}}}

    def reload(self):
        pass

    def logs(self, **_kwargs):
        if self.behaviour == "refuses":
            return (REFUSED + "\n").encode()
        if self.behaviour == "crashes":
            return json.dumps({"level": "CRITICAL", "message": f"boom with {KEY}"}).encode()
        return b'{"level": "INFO", "message": "engine starting"}\n'

    def stop(self, timeout=None):
        self.stopped = True

    def remove(self, force=False):
        self.removed = True


class FakeClient:
    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.created = []
        self.seen_folders = []
        self.containers = self

    def create(self, image, **kwargs):
        container = FakeContainer(self, image, kwargs)
        self.created.append(container)
        return container


@pytest.fixture
def clock(fake_time):
    return fake_time(_boot_test, now=100.0)


@pytest.fixture
def probes(monkeypatch):
    answers = {"49153": Probe(200, {"status": "ok", "subsystems": {}})}

    def fake_probe(url, params, timeout=None):
        assert params == {"validate_certs": False, "use_proxy": False}
        return answers[url.rsplit(":", 1)[1]]

    monkeypatch.setattr(_boot_test, "probe_health", fake_probe)
    return answers


def boot_test(client, brain, tmp_path, **kwargs):
    options = dict(
        brain_path=str(brain),
        brain_file="brain.sqlite",
        data_dir="/data",
        target_image="engine:2.4.0",
        current_image="engine:2.3.0",
        api_key=KEY,
        api_key_env="ENGINE_API_KEY",
        env={"LLM_PROVIDER": "stub"},
        timeout=30,
        work_dir=str(tmp_path / "work"),
        read_applied=lambda conn: [row[0] for row in conn.execute("SELECT task_id FROM tasks ORDER BY 1")],
    )
    options.update(kwargs)
    os.makedirs(options["work_dir"], exist_ok=True)
    return BootTest(client, **options)


def test_copy_brain_is_consistent_private_and_leaves_the_brain_alone(tmp_path):
    brain = tmp_path / "brain.sqlite"
    live = make_brain(brain)
    before = brain.read_bytes()
    size = copy_brain(str(brain), str(tmp_path / "copy.sqlite"))
    assert brain.read_bytes() == before  # (closing the live writer below checkpoints its WAL into the brain)
    live.close()
    copy = sqlite3.connect(tmp_path / "copy.sqlite")
    assert [row[0] for row in copy.execute("SELECT task_id FROM tasks ORDER BY 1")] == ["t0", "t1", "t2"]
    copy.close()
    assert size == os.path.getsize(tmp_path / "copy.sqlite")
    assert stat.S_IMODE(os.stat(tmp_path / "copy.sqlite").st_mode) == 0o600


def test_copy_brain_refuses_without_room(tmp_path, monkeypatch):
    brain = tmp_path / "brain.sqlite"
    make_brain(brain).close()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(_boot_test.shutil, "disk_usage", lambda path: usage(100, 100, 1024))
    with pytest.raises(InsufficientSpaceError, match="boot_test_dir"):
        copy_brain(str(brain), str(tmp_path / "copy.sqlite"))
    assert not (tmp_path / "copy.sqlite").exists()


@pytest.mark.parametrize(
    ("logs", "expected"),
    [
        ('{"level": "INFO", "message": "a"}\n{"level": "ERROR", "message": "b"}\n{"level": "INFO"}', "b"),
        ("plain text\nlast line\n", "last line"),
        ('{"level": "CRITICAL", "message": "key ' + KEY + ' leaked"}', "key ******** leaked"),
        ("", None),
    ],
)
def test_last_error_line(logs, expected):
    assert last_error_line(logs, KEY) == expected


def test_target_healthy_then_current_refuses_the_migrated_copy(tmp_path, clock, probes):
    brain = tmp_path / "brain.sqlite"
    make_brain(brain).close()
    client = FakeClient({"engine:2.4.0": "healthy", "engine:2.3.0": "refuses"})
    test = boot_test(client, brain, tmp_path)
    result = test.run()

    assert result["target_healthy"] is True
    assert result["image_rollback_works"] is False
    assert result["applied_after_target"] == ["t0", "t1", "t2"]
    assert result["target"]["failure"] == "none" and result["target"]["http_status"] == 200
    assert result["current"] == dict(
        image="engine:2.3.0",
        is_healthy=False,
        failure="migration_required",
        exit_code=3,
        http_status=None,
        elapsed=0.0,
        message="MIGRATION_REQUIRED: the brain holds migrations 0006 that version 2.3.0 does not ship",
    )
    target, current = client.created
    assert target.kwargs["environment"] == {
        "SQLITE_DB_PATH": "/data/brain.sqlite",
        "LLM_PROVIDER": "stub",
        "ENGINE_API_KEY": KEY,
    }
    assert target.kwargs["ports"] == {"8000/tcp": ("127.0.0.1",)}
    ((folder, binding),) = target.kwargs["volumes"].items()
    assert binding == {"bind": "/data", "mode": "rw"}
    assert current.kwargs["volumes"] == target.kwargs["volumes"]  # the current image runs on the migrated copy
    assert client.seen_folders[0][1] == ["brain.sqlite"] and client.seen_folders[0][2] == 0o700
    assert target.stopped and not current.stopped
    assert all(container.removed for container in client.created)
    assert not os.path.exists(folder)
    assert os.listdir(tmp_path / "work") == []
    assert KEY not in json.dumps(result)


def test_a_target_that_never_turns_healthy_times_out(tmp_path, clock, probes):
    brain = tmp_path / "brain.sqlite"
    make_brain(brain).close()
    probes["49153"] = Probe(503, {"status": "degraded", "subsystems": {"database": "error"}})
    client = FakeClient({"engine:2.4.1": "hangs", "engine:2.3.0": "crashes"})
    result = boot_test(client, brain, tmp_path, target_image="engine:2.4.1", timeout=10).run()
    assert result["target"]["failure"] == "unhealthy"
    assert result["target"]["http_status"] == 503
    assert "not healthy within boot_timeout (10s): HTTP 503, status degraded" in result["target"]["message"]
    assert result["target"]["elapsed"] >= 10
    assert result["current"]["failure"] == "exited" and result["current"]["exit_code"] == 1
    assert result["current"]["message"] == "boom with ********"
    assert all(container.removed for container in client.created)


def test_containers_and_copy_are_removed_when_docker_fails(tmp_path, clock, probes):
    from docker.errors import APIError

    brain = tmp_path / "brain.sqlite"
    make_brain(brain).close()
    client = FakeClient({"engine:2.4.0": "healthy", "engine:2.3.0": "healthy"})

    def broken_start():
        raise APIError("port allocation failed")

    original = client.create

    def create(image, **kwargs):
        container = original(image, **kwargs)
        container.start = broken_start
        return container

    client.create = create
    with pytest.raises(_boot_test.EngineModuleError, match="could not run the boot test's target container"):
        boot_test(client, brain, tmp_path).run()
    assert client.created[0].removed
    assert os.listdir(tmp_path / "work") == []
