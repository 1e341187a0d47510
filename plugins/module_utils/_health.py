# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Is an Engine healthy, and if not, why: one probe of GET /health, and what Docker says about it.

The contract: healthy means HTTP 200 with a JSON body whose ``status`` is ``ok``. Everything else
is a failure, told apart (most specific first) as

- ``migration_required``: the container's last log lines carry ``MIGRATION_REQUIRED`` (the Engine
  refuses a brain migrated by a newer release; it never turns healthy, only a restore helps);
- ``crash_loop``: the container is restarting, was restarted at least ``crash_loop_restarts`` times,
  exited with a non-zero code, or was OOM killed;
- ``unhealthy``: the Engine answered, but not healthy (503, or a ``status`` other than ``ok``);
  ``subsystems`` names the failing part;
- ``unreachable``: nothing answered (refused, timeout, TLS failure, container stopped).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ansible_collections.september.engine.plugins.module_utils._engine_api import (
    ENGINE_PORT,
    engine_request,
    published_engine_port,
)

FAILURES = ("none", "unreachable", "unhealthy", "crash_loop", "migration_required")
#: Failures that waiting cannot cure: the Engine will not turn healthy by itself.
HOPELESS = ("crash_loop", "migration_required")
MIGRATION_MARKER = "MIGRATION_REQUIRED"
VERSION_LABEL = "org.opencontainers.image.version"
HEALTH_PATH = "/health"


@dataclass
class Probe:
    """One GET /health: the HTTP status (None when nothing answered) and the body, or the error."""

    http_status: int | None = None
    body: object = None
    error: str | None = None
    error_kind: str | None = None

    @property
    def answered(self) -> bool:
        return self.http_status is not None

    @property
    def healthy(self) -> bool:
        return self.http_status == 200 and isinstance(self.body, dict) and self.body.get("status") == "ok"

    @property
    def status(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("status"), str):
            return self.body["status"]
        return None

    @property
    def subsystems(self) -> dict:
        if isinstance(self.body, dict) and isinstance(self.body.get("subsystems"), dict):
            return self.body["subsystems"]
        return {}

    @property
    def uptime_seconds(self) -> float | None:
        value = self.body.get("uptime_seconds") if isinstance(self.body, dict) else None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def probe_health(base_url: str, params: dict, timeout: float | None = None) -> Probe:
    """GET <base_url>/health once, with the TLS, proxy and timeout options of the engine_api spec."""
    response = engine_request(
        "GET",
        base_url + HEALTH_PATH,
        timeout=timeout if timeout is not None else params.get("timeout") or 10.0,
        validate_certs=params.get("validate_certs", True),
        ca_path=params.get("ca_path"),
        use_proxy=params.get("use_proxy", True),
    )
    return Probe(http_status=response.status, body=response.data, error=response.error, error_kind=response.error_kind)


def container_summary(attrs: dict) -> dict:
    """What Docker says about an Engine's container, as returned in health.container."""
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    published = published_engine_port(attrs)
    return dict(
        name=(attrs.get("Name") or "").lstrip("/"),
        id=(attrs.get("Id") or "")[:12],
        status=state.get("Status"),
        running=bool(state.get("Running")),
        restarting=bool(state.get("Restarting")),
        restart_count=int(attrs.get("RestartCount") or 0),
        exit_code=state.get("ExitCode"),
        oom_killed=bool(state.get("OOMKilled")),
        error=state.get("Error") or None,
        started_at=state.get("StartedAt"),
        finished_at=state.get("FinishedAt"),
        restart_policy=((attrs.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "no",
        image=config.get("Image"),
        image_id=attrs.get("Image"),
        version=(config.get("Labels") or {}).get(VERSION_LABEL),
        published_port=int(published[1]) if published else None,
    )


def migration_required_line(log_text: str) -> str | None:
    """The message of the last log line that says MIGRATION_REQUIRED (JSON lines or plain text), or None."""
    for line in reversed((log_text or "").splitlines()):
        if MIGRATION_MARKER not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            return line.strip()[:500]
        if isinstance(record, dict) and isinstance(record.get("message"), str):
            return record["message"][:500]
        return line.strip()[:500]
    return None


def _who(container: dict | None) -> str:
    if not container:
        return "the Engine"
    image = container.get("image")
    return f"container {container.get('name')}" + (f" ({image})" if image else "")


def _failing_subsystems(subsystems: dict) -> list[str]:
    return [f"{name}={value}" for name, value in sorted(subsystems.items()) if value != "ok"]


def is_crash_loop(container: dict | None, crash_loop_restarts: int) -> bool:
    if not container:
        return False
    if container.get("restarting") or container.get("oom_killed"):
        return True
    if container.get("restart_count", 0) >= crash_loop_restarts:
        return True
    exit_code = container.get("exit_code")
    return not container.get("running") and container.get("status") in ("exited", "dead") and bool(exit_code)


def classify(
    probe: Probe, container: dict | None = None, migration_line: str | None = None, crash_loop_restarts: int = 3
):
    """(failure, failure_detail) for one probe and what Docker said about the container (pure function)."""
    if probe.healthy:
        return "none", "healthy: HTTP 200, status ok"
    who = _who(container)
    if migration_line:
        return "migration_required", (
            f"{who} refuses its brain: {migration_line}. Waiting will not help: run the release that migrated the "
            "brain, or restore the pre-upgrade brain snapshot."
        )
    if is_crash_loop(container, crash_loop_restarts):
        facts = [f"state {container.get('status')}", f"restarted {container.get('restart_count', 0)} times"]
        if container.get("exit_code") is not None and not container.get("running"):
            facts.append(f"last exit code {container.get('exit_code')}")
        if container.get("oom_killed"):
            facts.append("killed by the kernel for lack of memory (OOM)")
        if container.get("error"):
            facts.append(f"Docker error: {container.get('error')}")
        return (
            "crash_loop",
            f"{who} keeps dying: {', '.join(facts)}. Read its logs (docker logs {container.get('name')}).",
        )
    if probe.answered:
        what = f"HTTP {probe.http_status}"
        if probe.status is not None:
            what += f", status {probe.status}"
        elif not isinstance(probe.body, dict):
            what += ", and the body is not the Engine's health JSON"
        failing = _failing_subsystems(probe.subsystems)
        if failing:
            what += f", failing subsystems: {', '.join(failing)}"
        return "unhealthy", f"{who} answers but is not healthy: {what}."
    detail = probe.error or "nothing answered"
    if container:
        if container.get("running"):
            detail += f" ({who} is running)"
        else:
            detail += f" ({who} is {container.get('status')}, exit code {container.get('exit_code')})"
    return "unreachable", detail


class ContainerWatch:
    """The Engine's container, re-read on demand: its state and, when needed, its last log lines."""

    def __init__(self, container, log_lines: int = 50):
        self.container = container
        self.log_lines = log_lines

    def summary(self) -> dict:
        self.container.reload()
        return container_summary(self.container.attrs)

    def migration_line(self) -> str | None:
        if self.log_lines <= 0:
            return None
        raw = self.container.logs(stdout=True, stderr=True, tail=self.log_lines)
        return migration_required_line(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))


def find_container_by_port(client, port: int):
    """The container that publishes `port` on the host for the Engine's port 8000, or None.

    Running containers are found by Docker's publish filter; the others (restarting, exited) have no
    live bindings, so their configured bindings are read (only theirs: they are few).
    """
    for container in client.containers.list(all=True, filters={"publish": f"{port}/tcp"}, ignore_removed=True):
        return container
    idle = client.containers.list(
        all=True, filters={"status": ["restarting", "exited", "created", "dead", "paused"]}, ignore_removed=True
    )
    for container in idle:
        bindings = ((container.attrs.get("HostConfig") or {}).get("PortBindings") or {}).get(ENGINE_PORT) or []
        if any(str(binding.get("HostPort")) == str(port) for binding in bindings):
            return container
    return None
