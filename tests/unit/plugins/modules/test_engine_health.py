# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The engine_health module as a whole: options, the wait loop (fake clock), returns and bad input."""

from __future__ import annotations

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.september.engine.plugins.module_utils import _health
from ansible_collections.september.engine.plugins.module_utils._errors import DockerUnavailableError
from ansible_collections.september.engine.plugins.module_utils._health import Probe
from ansible_collections.september.engine.plugins.modules import engine_health
from engine_testkit.module_runner import ExitJson, FailJson

OK = Probe(200, {"status": "ok", "uptime_seconds": 5.0, "subsystems": {"database": "ok"}})
STARTING = Probe(503, {"status": "starting", "uptime_seconds": 0.1, "subsystems": {"database": "starting"}})
REFUSED = Probe(
    None, None, error="connection refused at http://127.0.0.1:9001/health: nothing listens there", error_kind="refused"
)


@pytest.fixture
def clock(fake_time):
    return fake_time(_health)


@pytest.fixture
def probes(monkeypatch, clock):
    """Feed the module a scripted sequence of probe results (the last one repeats)."""
    script = []
    seen = []

    def fake_probe(url, params, timeout=None):
        seen.append((url, timeout))
        return script.pop(0) if len(script) > 1 else script[0]

    monkeypatch.setattr(_health, "probe_health", fake_probe)
    return script, seen


class FakeContainer:
    def __init__(self, name="sept-u001", state=None, restart_count=0, logs=b"", ports=None):
        self.name = name
        self._logs = logs
        running = (state or {}).get("Running", True)
        self.attrs = {
            "Id": "abcdef0123456789",
            "Name": "/" + name,
            "Image": "sha256:05f8",
            "RestartCount": restart_count,
            "State": {"Status": "running", "Running": True, "ExitCode": 0, **(state or {})},
            "Config": {"Image": "engine:2.3.0", "Labels": {"org.opencontainers.image.version": "2.3.0"}},
            "HostConfig": {"RestartPolicy": {"Name": "unless-stopped"}, "PortBindings": {"8000/tcp": ports or []}},
            "NetworkSettings": {"Ports": {"8000/tcp": ports} if running and ports else {}},
        }

    def reload(self):
        pass

    def logs(self, stdout=True, stderr=True, tail="all"):
        return self._logs


class FakeClient:
    def __init__(self, containers):
        self.by_name = {c.name: c for c in containers}
        self.containers = self

    def get(self, name):
        from docker.errors import NotFound

        if name not in self.by_name:
            raise NotFound("no such container")
        return self.by_name[name]

    def list(self, all=False, filters=None, ignore_removed=False):
        return []


@pytest.fixture
def docker(monkeypatch):
    holder = {"client": FakeClient([]), "down": None}

    def fake_client(params):
        if holder["down"]:
            raise DockerUnavailableError(holder["down"])
        return holder["client"]

    monkeypatch.setattr(_health, "docker_client", fake_client)
    return holder


def run(args):
    with patch_module_args(args), pytest.raises((ExitJson, FailJson)) as outcome:
        engine_health.main()
    return outcome.type is ExitJson, outcome.value.args[0]


PORT_9001 = [{"HostIp": "127.0.0.1", "HostPort": "9001"}]


def test_one_healthy_probe_by_url(probes, clock, monkeypatch):
    monkeypatch.setattr(_health, "HAS_DOCKER", False)
    probes[0].append(OK)
    ok, result = run({"url": "http://127.0.0.1:9001/"})
    assert ok and result["changed"] is False
    health = result["health"]
    assert health["is_healthy"] is True and health["failure"] == "none"
    assert health["probes"] == 1 and health["http_status"] == 200 and health["status"] == "ok"
    assert health["uptime_seconds"] == 5.0 and health["container"] is None
    assert health["url"] == "http://127.0.0.1:9001"
    assert probes[1][0][0] == "http://127.0.0.1:9001"


def test_url_derived_from_container(probes, clock, docker):
    docker["client"] = FakeClient([FakeContainer(ports=[{"HostIp": "0.0.0.0", "HostPort": "9005"}])])
    probes[0].append(OK)
    ok, result = run({"container": "sept-u001"})
    assert ok
    assert result["health"]["url"] == "http://127.0.0.1:9005"
    assert result["health"]["container"]["name"] == "sept-u001"
    assert result["health"]["container"]["version"] == "2.3.0"


def test_wait_needs_a_streak(probes, clock, docker):
    docker["client"] = FakeClient([FakeContainer(ports=PORT_9001)])
    probes[0].extend([REFUSED, STARTING, OK, STARTING, OK, OK, OK])
    ok, result = run({"container": "sept-u001", "wait": True, "healthy_streak": 3, "interval": 2})
    health = result["health"]
    assert ok and health["is_healthy"] and health["streak"] == 3
    assert health["probes"] == 7 and health["timed_out"] is False
    assert clock.sleeps == [2.0] * 6
    assert health["elapsed"] == 12.0


def test_wait_times_out(probes, clock, docker):
    docker["client"] = FakeClient([FakeContainer(ports=PORT_9001)])
    probes[0].append(STARTING)
    ok, result = run({"container": "sept-u001", "wait": True, "wait_timeout": 10, "interval": 2})
    health = result["health"]
    assert ok and not health["is_healthy"] and health["timed_out"]
    assert health["failure"] == "unhealthy"
    assert health["elapsed"] <= 10
    # each probe's timeout is cut to what is left of the wait (at least one second)
    assert all(timeout <= 10 for _url, timeout in probes[1])


def test_streak_not_reached_is_not_healthy(probes, clock, docker):
    docker["client"] = FakeClient([FakeContainer(ports=PORT_9001)])
    probes[0].extend([STARTING, STARTING, STARTING, OK])
    ok, result = run({"container": "sept-u001", "wait": True, "wait_timeout": 7, "interval": 2, "healthy_streak": 3})
    health = result["health"]
    assert ok and health["status"] == "ok" and not health["is_healthy"]
    assert health["failure"] == "unhealthy" and "only 1 probe(s) in a row" in health["failure_detail"]


@pytest.mark.parametrize(
    ("container", "failure"),
    [
        (
            FakeContainer(
                state={"Status": "restarting", "Running": False, "Restarting": True, "ExitCode": 1},
                restart_count=1,
                ports=PORT_9001,
            ),
            "crash_loop",
        ),
        (
            FakeContainer(
                logs=b'{"message": "MIGRATION_REQUIRED: the brain holds 0006"}\n', restart_count=1, ports=PORT_9001
            ),
            "migration_required",
        ),
    ],
)
def test_fail_fast_stops_waiting(probes, clock, docker, container, failure):
    docker["client"] = FakeClient([container])
    probes[0].append(REFUSED)
    ok, result = run({"container": "sept-u001", "wait": True, "wait_timeout": 300})
    health = result["health"]
    assert ok and health["failure"] == failure and health["probes"] == 1 and not health["timed_out"]


def test_without_fail_fast_waits_it_out(probes, clock, docker):
    crashing = FakeContainer(
        state={"Status": "restarting", "Running": False, "Restarting": True, "ExitCode": 1}, ports=PORT_9001
    )
    docker["client"] = FakeClient([crashing])
    probes[0].append(REFUSED)
    ok, result = run({"container": "sept-u001", "wait": True, "wait_timeout": 20, "interval": 5, "fail_fast": False})
    assert ok and result["health"]["failure"] == "crash_loop" and result["health"]["timed_out"]
    assert result["health"]["probes"] == 5  # at 0, 5, 10, 15 and 20 s: the last one right at the deadline
    assert result["health"]["elapsed"] == 20.0


def test_stopped_container_with_random_port_is_unreachable_without_probe(probes, clock, docker):
    stopped = FakeContainer(
        state={"Status": "exited", "Running": False, "ExitCode": 0}, ports=[{"HostIp": "", "HostPort": ""}]
    )
    docker["client"] = FakeClient([stopped])
    probes[0].append(OK)
    ok, result = run({"container": "sept-u001"})
    assert ok and result["health"]["failure"] == "unreachable" and result["health"]["url"] is None
    assert probes[1] == []


class VanishingContainer(FakeContainer):
    def reload(self):
        from docker.errors import NotFound

        raise NotFound("gone")


def test_container_removed_while_watching(probes, docker):
    docker["client"] = FakeClient([VanishingContainer(ports=PORT_9001)])
    probes[0].append(REFUSED)
    ok, result = run({"container": "sept-u001"})
    assert ok and result["health"]["failure"] == "unreachable"
    assert result["health"]["container"]["status"] == "removed"


def test_check_mode_still_probes(probes, clock, monkeypatch):
    monkeypatch.setattr(_health, "HAS_DOCKER", False)
    probes[0].append(OK)
    ok, result = run({"url": "http://127.0.0.1:9001", "_ansible_check_mode": True})
    assert ok and result["changed"] is False and result["health"]["probes"] == 1 and probes[1]


def test_docker_is_optional_with_a_url(probes, clock, docker):
    docker["down"] = "no daemon"
    probes[0].append(REFUSED)
    ok, result = run({"url": "http://127.0.0.1:9001"})
    assert ok and result["health"]["failure"] == "unreachable" and result["health"]["container"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "one of the following is required: url, container"),
        ({"url": "127.0.0.1:9001"}, "not an http:// or https:// URL"),
        ({"url": "http://127.0.0.1:9001", "ca_path": "/ca.pem", "validate_certs": False}, "ca_path"),
        ({"url": "http://127.0.0.1:9001", "healthy_streak": 0}, "healthy_streak must be 1 or more"),
        ({"url": "http://127.0.0.1:9001", "interval": 0}, "interval must be more than 0"),
        ({"url": "http://127.0.0.1:9001", "timeout": -1}, "timeout must be more than 0"),
        ({"container": "nope"}, "No container named or identified by 'nope'"),
        ({"container": "sept-u001"}, "does not publish the Engine's port 8000/tcp"),
    ],
)
def test_bad_input_fails(probes, docker, monkeypatch, args, message):
    monkeypatch.setattr(_health, "HAS_DOCKER", False)
    docker["client"] = FakeClient([FakeContainer()])
    probes[0].append(OK)
    ok, result = run(args)
    assert not ok
    assert message in result["msg"]
    assert probes[1] == []


def test_unreachable_docker_fails_with_a_container(probes, clock, docker):
    docker["down"] = "Cannot reach the Docker daemon at the local Docker socket"
    ok, result = run({"container": "sept-u001"})
    assert not ok and "Cannot reach the Docker daemon" in result["msg"]


def test_api_key_never_returned(probes, clock, monkeypatch):
    monkeypatch.setattr(_health, "HAS_DOCKER", False)
    probes[0].append(OK)
    ok, result = run({"url": "http://user:pw-secret@127.0.0.1:9001", "api_key": "k3y-secret-value"})
    assert ok
    assert "k3y-secret-value" not in repr(result) and "pw-secret" not in repr(result)
