# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""module_utils/_health.py: what counts as healthy, and how a failure is told apart (pure functions)."""

from __future__ import annotations

import json

import pytest

from ansible_collections.september.engine.plugins.module_utils._health import (
    FAILURES,
    HOPELESS,
    ContainerWatch,
    Probe,
    classify,
    container_summary,
    find_container_by_port,
    migration_required_line,
)

OK_BODY = {"status": "ok", "uptime_seconds": 12.5, "subsystems": {"database": "ok", "llm_provider": "ok"}}
SICK_BODY = {"status": "degraded", "uptime_seconds": 3.0, "subsystems": {"database": "error", "llm_provider": "ok"}}
LLM_DOWN = {"status": "degraded", "uptime_seconds": 9.0, "subsystems": {"database": "ok", "llm_provider": "error"}}


@pytest.mark.parametrize(
    ("probe", "healthy"),
    [
        (Probe(200, OK_BODY), True),
        (Probe(200, {"status": "ok"}), True),
        (Probe(503, SICK_BODY), False),
        (Probe(200, {"status": "degraded"}), False),  # 200 with a status that is not ok is not healthy
        (Probe(200, None), False),  # not JSON
        (Probe(200, ["ok"]), False),
        (Probe(204, {"status": "ok"}), False),
        (Probe(None, None, error="refused"), False),
    ],
)
def test_probe_healthy_is_the_contract(probe, healthy):
    assert probe.healthy is healthy


def test_probe_fields():
    probe = Probe(200, OK_BODY)
    assert probe.status == "ok" and probe.uptime_seconds == 12.5 and probe.subsystems["database"] == "ok"
    empty = Probe(None, None, error="x")
    assert empty.status is None and empty.subsystems == {} and empty.uptime_seconds is None
    assert Probe(200, {"uptime_seconds": True}).uptime_seconds is None


RUNNING = dict(
    name="e1", image="engine:2.3.0", status="running", running=True, restarting=False, restart_count=0, exit_code=0
)
RESTARTING = dict(RUNNING, status="restarting", running=False, restarting=True, restart_count=1, exit_code=1)
RESTARTED_OFTEN = dict(RUNNING, restart_count=3)
EXITED_0 = dict(RUNNING, status="exited", running=False, exit_code=0)
EXITED_1 = dict(RUNNING, status="exited", running=False, exit_code=1)
OOM = dict(RUNNING, status="exited", running=False, exit_code=137, oom_killed=True)
CREATED = dict(RUNNING, status="created", running=False)
MIGRATION = "MIGRATION_REQUIRED: the brain holds migrations 0006 that version 2.3.0 does not ship"
REFUSED = Probe(None, None, error="connection refused at http://127.0.0.1:9001/health: nothing listens there")


@pytest.mark.parametrize(
    ("probe", "container", "line", "failure", "in_detail"),
    [
        (Probe(200, OK_BODY), None, None, "none", "healthy"),
        # healthy wins over history: restarts or an old log line do not matter while it answers ok
        (Probe(200, OK_BODY), RESTARTED_OFTEN, MIGRATION, "none", "healthy"),
        # MIGRATION_REQUIRED in the logs beats everything else
        (REFUSED, RESTARTING, MIGRATION, "migration_required", "0006"),
        (Probe(503, {"status": "starting"}), RUNNING, MIGRATION, "migration_required", "Waiting will not help"),
        # crash loops
        (REFUSED, RESTARTING, None, "crash_loop", "state restarting"),
        (
            Probe(503, {"status": "starting", "subsystems": {"database": "starting"}}),
            RESTARTED_OFTEN,
            None,
            "crash_loop",
            "restarted 3 times",
        ),
        (REFUSED, EXITED_1, None, "crash_loop", "last exit code 1"),
        (REFUSED, OOM, None, "crash_loop", "OOM"),
        # answered, not healthy
        (Probe(503, SICK_BODY), RUNNING, None, "unhealthy", "database=error"),
        (Probe(503, LLM_DOWN), None, None, "unhealthy", "llm_provider=error"),
        (Probe(200, {"status": "draining", "subsystems": {}}), RUNNING, None, "unhealthy", "status draining"),
        (Probe(502, None), None, None, "unhealthy", "not the Engine's health JSON"),
        (Probe(503, {"status": "starting"}), dict(RUNNING, restart_count=2), None, "unhealthy", "HTTP 503"),
        # nothing answered
        (REFUSED, None, None, "unreachable", "nothing listens"),
        (REFUSED, EXITED_0, None, "unreachable", "is exited, exit code 0"),
        (REFUSED, CREATED, None, "unreachable", "is created"),
        (Probe(None, None, error="no answer within the timeout"), RUNNING, None, "unreachable", "is running"),
        (Probe(None, None, error="TLS handshake failed"), None, None, "unreachable", "TLS"),
    ],
)
def test_classify(probe, container, line, failure, in_detail):
    got, detail = classify(probe, container, line, crash_loop_restarts=3)
    assert got == failure
    assert got in FAILURES
    assert in_detail in detail


@pytest.mark.parametrize(
    ("restarts", "threshold", "failure"), [(2, 3, "unhealthy"), (3, 3, "crash_loop"), (1, 1, "crash_loop")]
)
def test_crash_loop_threshold(restarts, threshold, failure):
    got, _detail = classify(Probe(503, {"status": "starting"}), dict(RUNNING, restart_count=restarts), None, threshold)
    assert got == failure


def test_hopeless_failures():
    assert set(HOPELESS) == {"crash_loop", "migration_required"}


@pytest.mark.parametrize(
    ("logs", "expected"),
    [
        ("", None),
        ('{"level": "INFO", "message": "engine ready"}\n', None),
        (
            '{"level": "INFO", "message": "starting"}\n{"level": "ERROR", "message": "MIGRATION_REQUIRED: holds 0006", '
            '"extra": {"error": "MIGRATION_REQUIRED"}}\n',
            "MIGRATION_REQUIRED: holds 0006",
        ),
        ("boot\nERROR MIGRATION_REQUIRED brain too new\n", "ERROR MIGRATION_REQUIRED brain too new"),
        ('{"level": "ERROR", "message": "x", "extra": {"error": "MIGRATION_REQUIRED"}}', "x"),
        ('["MIGRATION_REQUIRED"]', '["MIGRATION_REQUIRED"]'),
    ],
)
def test_migration_required_line(logs, expected):
    assert migration_required_line(logs) == expected


def test_migration_required_line_takes_the_last_one():
    logs = "\n".join(json.dumps({"message": f"MIGRATION_REQUIRED: run {n}"}) for n in range(3))
    assert migration_required_line(logs) == "MIGRATION_REQUIRED: run 2"


ATTRS = {
    "Id": "0d6793964889aaaa",
    "Name": "/sept-u001",
    "Image": "sha256:05f8",
    "RestartCount": 4,
    "State": {
        "Status": "restarting",
        "Running": False,
        "Restarting": True,
        "ExitCode": 3,
        "OOMKilled": False,
        "Error": "",
    },
    "Config": {"Image": "engine:2.3.0", "Labels": {"org.opencontainers.image.version": "2.3.0"}},
    "HostConfig": {
        "RestartPolicy": {"Name": "unless-stopped"},
        "PortBindings": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9001"}]},
    },
    "NetworkSettings": {"Ports": {}},
}


def test_container_summary():
    summary = container_summary(ATTRS)
    assert summary == dict(
        name="sept-u001",
        id="0d6793964889",
        status="restarting",
        running=False,
        restarting=True,
        restart_count=4,
        exit_code=3,
        oom_killed=False,
        error=None,
        started_at=None,
        finished_at=None,
        restart_policy="unless-stopped",
        image="engine:2.3.0",
        image_id="sha256:05f8",
        version="2.3.0",
        published_port=9001,
    )
    assert container_summary({})["restart_policy"] == "no"


class FakeContainer:
    def __init__(self, name, attrs=None, logs=b""):
        self.name = name
        self.attrs = attrs or {}
        self._logs = logs
        self.reloads = 0
        self.tails = []

    def reload(self):
        self.reloads += 1

    def logs(self, stdout=True, stderr=True, tail="all"):
        self.tails.append(tail)
        return self._logs


def test_container_watch_reads_state_and_logs():
    container = FakeContainer("sept-u001", ATTRS, b'{"message": "MIGRATION_REQUIRED: 0006"}\n')
    watch = ContainerWatch(container, log_lines=20)
    assert watch.summary()["restart_count"] == 4 and container.reloads == 1
    assert watch.migration_line() == "MIGRATION_REQUIRED: 0006"
    assert container.tails == [20]
    assert ContainerWatch(container, log_lines=0).migration_line() is None


class FakeContainers:
    def __init__(self, running, idle):
        self.running, self.idle = running, idle
        self.calls = []

    def list(self, all=False, filters=None, ignore_removed=False):
        self.calls.append(filters)
        if "publish" in filters:
            port = int(filters["publish"].split("/")[0])
            return [c for c in self.running if c.attrs["port"] == port]
        return self.idle


class FakeClient:
    def __init__(self, running=(), idle=()):
        self.containers = FakeContainers(list(running), list(idle))


def _bound(name, port):
    return FakeContainer(
        name,
        {"port": -1, "HostConfig": {"PortBindings": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}}},
    )


def test_find_container_by_port():
    live = FakeContainer("live", {"port": 9001})
    client = FakeClient(running=[live], idle=[_bound("old", 9002), _bound("crashing", 9003)])
    assert find_container_by_port(client, 9001) is live
    assert find_container_by_port(client, 9003).name == "crashing"
    assert find_container_by_port(client, 9009) is None


def test_slow_probes_keep_a_fixed_cadence_and_a_watch_ends_on_time(monkeypatch):
    """A busy Docker host makes every probe slow: the wait still reaches its streak and the watch ends on time."""
    from ansible_collections.september.engine.plugins.module_utils import _health as h

    clock = {"now": 0.0}
    monkeypatch.setattr(h.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(h.time, "sleep", lambda seconds: clock.__setitem__("now", clock["now"] + seconds))

    class Slow(h.EngineHealth):
        # The real constructor, with a container found: its watch must not hide watch() (it once did, and
        # engine_watch failed at every round with a bake).
        def _find_container(self):
            return h.ContainerWatch(FakeContainer("live", {"port": 9001}))

        def _probe(self, deadline):
            clock["now"] += 0.3  # each probe costs 300 ms
            return h.Probe(200, {"status": "ok", "subsystems": {}})

        def _explain(self, probe):
            return "none", "healthy", None

    params = {"wait": True, "wait_timeout": 12, "interval": 1.0, "healthy_streak": 11, "fail_fast": True, "timeout": 5,
              "url": "http://127.0.0.1:9001", "container": "live", "log_lines": 50, "crash_loop_restarts": 3}
    result = Slow(params).run()
    assert result["is_healthy"] and result["probes"] == 11  # 10 s of cadence + 0.3 s: inside 12 s
    clock["now"] = 0.0
    watched = Slow(dict(params, healthy_streak=1)).watch(10)
    assert watched["is_healthy"] and 10 <= clock["now"] < 11
