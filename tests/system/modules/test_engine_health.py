# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""engine_health against real reference Engines on the local Docker engine, through real ansible-playbook.

Every case runs playbooks/engine_health.yml: probe, probe again, check mode, diff; the playbook asserts
changed=false, no diff and the expected failure on each; pytest then checks what the module saw against
what Docker and the Engine say. Fleets are named ``hlth-<8 hex>`` and use host ports 9300-9399.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from engine_testkit import free_port, wait_until
from engine_testkit.ansible import run_playbook
from engine_testkit.fleet import LABEL_FLEET, Engine, Fleet

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"
PLAYBOOK = PLAYBOOKS / "engine_health.yml"
BAD_INPUT = PLAYBOOKS / "engine_health_bad_input.yml"
BASE_PORT = 9300
LAST_PORT = 9399
TASKS = ("Probe the Engine", "Probe the Engine again", "Probe the Engine in check mode", "Probe the Engine with diff")


@pytest.fixture
def fleet(make_fleet) -> Fleet:
    return make_fleet(name=f"hlth-{uuid.uuid4().hex[:8]}", base_port=BASE_PORT)


def unused_port(docker_client) -> int:
    """A port of our range that nothing listens on and no container publishes (from the top: the fleets start low)."""
    return free_port(BASE_PORT, LAST_PORT, client=docker_client, descending=True)


def probe(expected_failure: str, expected_healthy: bool = False, **options) -> list[dict]:
    """Run the four-probe playbook; returns the four health results (rc and playbook asserts checked)."""
    extra = {f"health_{name}": value for name, value in options.items()}
    run = run_playbook(
        PLAYBOOK, extra_vars={**extra, "expected_failure": expected_failure, "expected_healthy": expected_healthy}
    )
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-2000:]
    results = [run.result(task) for task in TASKS]
    for result in results:
        assert result["changed"] is False
        assert "diff" not in result
    return [result["health"] for result in results]


def test_healthy_engine_with_a_streak(fleet):
    engine = fleet.up(1, "2.3.0")[0]
    for health in probe("none", True, container=engine.container_name, wait=True, streak=3, interval=0.3):
        assert health["is_healthy"] and health["failure"] == "none"
        assert health["status"] == "ok" and health["http_status"] == 200
        assert health["streak"] == 3 and health["probes"] == 3 and not health["timed_out"]
        assert health["elapsed"] >= 0.6  # two intervals between three probes
        assert set(health["subsystems"].values()) == {"ok"}
        assert health["uptime_seconds"] > 0
        assert health["url"] == engine.url
        container = health["container"]
        assert container["name"] == engine.container_name and container["status"] == "running"
        assert container["version"] == "2.3.0" and container["image"] == "engine:2.3.0"
        assert container["published_port"] == engine.port and container["restart_count"] == 0


def test_check_mode_and_diff_from_the_command_line(fleet):
    engine = fleet.up(1, "2.3.0")[0]
    for flags in ({"check": True}, {"diff": True}, {"check": True, "diff": True}):
        run = run_playbook(
            PLAYBOOK,
            extra_vars={
                "health_container": engine.container_name,
                "expected_failure": "none",
                "expected_healthy": True,
            },
            **flags,
        )
        assert run.rc == 0, run.stdout[-4000:] + run.stderr[-2000:]
        for task in TASKS:
            result = run.result(task)
            assert result["changed"] is False and "diff" not in result
            assert result["health"]["probes"] == 1 and result["health"]["is_healthy"]
        assert "--- before" not in run.stdout and "+++ after" not in run.stdout


def test_url_only_finds_the_container(fleet):
    engine = fleet.up(1, "2.3.0")[0]
    for health in probe("none", True, url=engine.url):
        assert health["url"] == engine.url
        assert health["container"]["name"] == engine.container_name


def test_broken_release_is_unhealthy(fleet):
    engine = fleet.up(1, "2.4.1", wait=False)[0]
    wait_until(lambda: (engine.health()[1] or {}).get("status") == "degraded", 60, "2.4.1 to finish starting",
               last=engine.health)
    for health in probe("unhealthy", container=engine.container_name):
        assert health["http_status"] == 503 and health["status"] == "degraded"
        assert health["subsystems"]["database"] == "error"
        assert "database=error" in health["failure_detail"]
        assert health["container"]["running"] and health["container"]["version"] == "2.4.1"


def test_crash_loop_is_told_early(fleet):
    engine = fleet.up(1, "2.5.0", wait=False)[0]
    for health in probe("crash_loop", container=engine.container_name, wait=True, wait_timeout=120):
        assert health["elapsed"] < 60, "fail_fast must stop the wait long before wait_timeout"
        assert not health["timed_out"]
        container = health["container"]
        assert container["restart_policy"] == "unless-stopped" and container["version"] == "2.5.0"
        assert container["restarting"] or container["restart_count"] >= 3 or container["exit_code"]
        assert "keeps dying" in health["failure_detail"]
    # Docker agrees: the container keeps restarting
    state = engine.container().attrs
    assert state["RestartCount"] >= 1


def _recreate(engine: Engine, version: str) -> None:
    """Replace the Engine's container by one of `version` on the same volume, port and restart policy."""
    old = engine.container()
    labels = {k: v for k, v in (old.labels or {}).items() if k.startswith("io.september.")}
    env = [item for item in old.attrs["Config"]["Env"] if item.startswith("ENGINE_API_KEY=")]
    old.stop(timeout=30)
    old.remove()
    client = engine._client()
    client.containers.run(
        f"engine:{version}",
        name=engine.container_name,
        detach=True,
        environment=env,
        volumes={engine.volume: {"bind": "/data", "mode": "rw"}},
        ports={"8000/tcp": ("127.0.0.1", engine.port)},
        restart_policy={"Name": "unless-stopped"},
        labels=labels,
    )


def test_old_release_on_a_migrated_brain_is_migration_required(fleet):
    engine = fleet.up(1, "2.4.0")[0]  # healthy: migration 0006 is applied to the brain
    assert LABEL_FLEET in engine.container().labels
    _recreate(engine, "2.3.0")
    for health in probe("migration_required", container=engine.container_name, wait=True, wait_timeout=120):
        assert health["elapsed"] < 60 and not health["timed_out"]
        assert "MIGRATION_REQUIRED" in health["failure_detail"] and "0006" in health["failure_detail"]
        assert health["container"]["version"] == "2.3.0"
    assert b"MIGRATION_REQUIRED" in engine.container().logs(tail=50)


def test_stopped_engine_and_nothing_listening_are_unreachable(fleet, docker_client):
    engine = fleet.up(1, "2.3.0")[0]
    engine.container().stop(timeout=30)
    for health in probe("unreachable", container=engine.container_name):
        assert health["http_status"] is None and health["status"] is None
        assert health["container"]["status"] == "exited" and health["container"]["exit_code"] == 0
        assert health["url"] == engine.url  # from the container's configured port binding
        assert "refused" in health["failure_detail"]
    port = unused_port(docker_client)
    for health in probe("unreachable", url=f"http://127.0.0.1:{port}", timeout=3):
        assert health["container"] is None and "nothing listens" in health["failure_detail"]


def test_llm_outage_is_unhealthy_then_recovers(fleet):
    engine = fleet.up(1, "2.3.0")[0]
    engine.set_llm_outage(True)
    for health in probe("unhealthy", container=engine.container_name):
        assert health["http_status"] == 503
        assert health["subsystems"]["llm_provider"] == "error" and health["subsystems"]["database"] == "ok"
        assert "llm_provider=error" in health["failure_detail"]
    engine.set_llm_outage(False)
    for health in probe("none", True, container=engine.container_name, wait=True, streak=2, interval=0.3):
        assert health["subsystems"]["llm_provider"] == "ok" and health["streak"] == 2


def test_https_against_plain_http_is_unreachable(fleet):
    engine = fleet.up(1, "2.3.0")[0]
    url = engine.url.replace("http://", "https://")
    for health in probe("unreachable", url=url, timeout=5):
        assert health["http_status"] is None
        assert "TLS handshake" in health["failure_detail"] and "http://" in health["failure_detail"]
        assert health["container"]["name"] == engine.container_name
    # not verifying the certificate changes nothing: there is no TLS at all
    for health in probe("unreachable", url=url, timeout=5, validate_certs=False):
        assert "TLS handshake" in health["failure_detail"]


@pytest.mark.parametrize(
    ("options", "expected_msg"),
    [
        ({"health_container": "hlth-no-such-engine"}, "No container named or identified by 'hlth-no-such-engine'"),
        ({}, "one of the following is required: url, container"),
        ({"health_url": "127.0.0.1:9301"}, "is not an http:// or https:// URL"),
        ({"health_url": "http://127.0.0.1:93019"}, "is not a valid URL"),
        (
            {"health_url": "http://127.0.0.1:9301", "health_validate_certs": False, "health_ca_path": "/etc/ssl/certs"},
            "ca_path",
        ),
        (
            {"health_container": "hlth-any", "health_docker_host": "tcp://127.0.0.1:{free}"},
            "Cannot reach the Docker daemon",
        ),
    ],
)
@pytest.mark.parametrize("check", [False, True])
def test_bad_input_fails_with_a_message(options, expected_msg, check, docker_client):
    options = {k: v.format(free=unused_port(docker_client)) if isinstance(v, str) else v for k, v in options.items()}
    run = run_playbook(BAD_INPUT, extra_vars={**options, "expected_msg": expected_msg}, check=check)
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-2000:]
    result = run.result("Probe with bad input")
    assert result["failed"] is True and result["changed"] is False
    assert "health" not in result
    assert run.stats["localhost"]["rescued"] == 1
