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
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from ansible_collections.september.engine.plugins.module_utils._docker import (
    HAS_DOCKER,
    DockerException,
    NotFound,
    docker_client,
    get_container,
)
from ansible_collections.september.engine.plugins.module_utils._engine_api import (
    ENGINE_PORT,
    check_tls_options,
    check_url,
    engine_request,
    engine_url_from_container,
    published_engine_port,
    safe_url,
)
from ansible_collections.september.engine.plugins.module_utils._errors import DockerUnavailableError, OptionsError

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


def _crash_loop_detail(container: dict, who: str) -> str:
    facts = [f"state {container.get('status')}", f"restarted {container.get('restart_count', 0)} times"]
    if container.get("exit_code") is not None and not container.get("running"):
        facts.append(f"last exit code {container.get('exit_code')}")
    if container.get("oom_killed"):
        facts.append("killed by the kernel for lack of memory (OOM)")
    if container.get("error"):
        facts.append(f"Docker error: {container.get('error')}")
    return f"{who} keeps dying: {', '.join(facts)}. Read its logs (docker logs {container.get('name')})."


def _unhealthy_detail(probe: Probe, who: str) -> str:
    """What an Engine that answered, but not healthy, said."""
    what = f"HTTP {probe.http_status}"
    if probe.status is not None:
        what += f", status {probe.status}"
    elif not isinstance(probe.body, dict):
        what += ", and the body is not the Engine's health JSON"
    failing = _failing_subsystems(probe.subsystems)
    if failing:
        what += f", failing subsystems: {', '.join(failing)}"
    return f"{who} answers but is not healthy: {what}."


def _unreachable_detail(probe: Probe, container: dict | None, who: str) -> str:
    detail = probe.error or "nothing answered"
    if not container:
        return detail
    if container.get("running"):
        return detail + f" ({who} is running)"
    return detail + f" ({who} is {container.get('status')}, exit code {container.get('exit_code')})"


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
        return "crash_loop", _crash_loop_detail(container, who)
    if probe.answered:
        return "unhealthy", _unhealthy_detail(probe, who)
    return "unreachable", _unreachable_detail(probe, container, who)


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


# ---------------------------------------------------------------- probing one Engine, once or until healthy

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class EngineHealth:
    """Probes one Engine (once, or until healthy) and explains what it saw."""

    def __init__(self, params: dict):
        """`params`: engine_health's options (the Engine API and Docker options included)."""
        self.params = params
        self._check_numbers()
        check_tls_options(self.params)
        self.container_watch = self._find_container()
        self.url = self._base_url()

    def _check_numbers(self) -> None:
        p = self.params
        for name, low in (("wait_timeout", 0), ("log_lines", 0), ("healthy_streak", 1), ("crash_loop_restarts", 1)):
            if p[name] < low:
                raise OptionsError(f"{name} must be {low} or more (got {p[name]}).")
        for name in ("interval", "timeout"):
            if p[name] <= 0:
                raise OptionsError(f"{name} must be more than 0 seconds (got {p[name]}).")

    def _find_container(self) -> ContainerWatch | None:
        p = self.params
        if p["container"]:
            client = docker_client(p)
            try:
                return ContainerWatch(get_container(client, p["container"]), p["log_lines"])
            except DockerException as exc:
                raise DockerUnavailableError(f"Docker could not inspect container {p['container']}: {exc}") from exc
        parts = urlsplit(check_url(p["url"]))
        if not HAS_DOCKER or parts.hostname not in LOOPBACK:
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            found = find_container_by_port(docker_client(p), port)
        except (DockerUnavailableError, DockerException):
            return None  # the probe alone decides: Docker is optional with a url
        return ContainerWatch(found, p["log_lines"]) if found is not None else None

    def _base_url(self) -> str | None:
        if self.params["url"]:
            return check_url(self.params["url"])
        attrs = self.container_watch.container.attrs
        url = engine_url_from_container(attrs)
        if url is None and (attrs.get("State") or {}).get("Running"):
            raise OptionsError(
                f"Container {self.params['container']} does not publish the Engine's port 8000/tcp on the host: "
                "set url to where the Engine can be reached."
            )
        return url

    def _observe(self) -> dict | None:
        if self.container_watch is None:
            return None
        try:
            return self.container_watch.summary()
        except DockerException as exc:
            if isinstance(exc, NotFound):  # removed while we watch: nothing left to explain with
                return dict(name=self.container_watch.container.name, status="removed", running=False, restarting=False)
            raise DockerUnavailableError(
                f"Lost the Docker daemon while watching the Engine's container: {exc}"
            ) from exc

    def _probe(self, deadline: float | None) -> Probe:
        if self.url is None:
            return Probe(
                error="the container is not running and publishes no fixed host port to probe", error_kind="no_url"
            )
        timeout = self.params["timeout"]
        if deadline is not None:
            timeout = max(1.0, min(timeout, deadline - time.monotonic()))
        return probe_health(self.url, self.params, timeout=timeout)

    def _explain(self, probe: Probe) -> tuple[str, str, dict | None]:
        container = self._observe()
        migration_line = None
        watching = self.container_watch is not None and container and container.get("status") != "removed"
        if not probe.healthy and watching:
            try:
                migration_line = self.container_watch.migration_line()
            except DockerException:
                migration_line = None
        failure, detail = classify(probe, container, migration_line, self.params["crash_loop_restarts"])
        return failure, detail, container

    def run(self) -> dict:
        p = self.params
        started = time.monotonic()
        deadline = started + p["wait_timeout"] if p["wait"] else None
        probes = streak = 0
        timed_out = False
        while True:
            probe = self._probe(deadline)
            probes += 1
            streak = streak + 1 if probe.healthy else 0
            failure, detail, container = self._explain(probe)
            if not p["wait"] or streak >= p["healthy_streak"]:
                break
            if p["fail_fast"] and failure in HOPELESS:
                break
            # A fixed cadence (probe n at started + n * interval): a slow probe (a busy Docker host, a slow
            # answer) does not push every later probe back, so a healthy Engine reaches its streak in time.
            next_probe = started + probes * p["interval"]
            if next_probe > deadline:
                timed_out = True
                break
            time.sleep(max(0.0, next_probe - time.monotonic()))
        return self.result(probe, failure, detail, container, probes=probes, streak=streak, started=started,
                           timed_out=timed_out)

    def result(self, probe: Probe, failure: str, detail: str, container: dict | None, *, probes: int, streak: int,
               started: float, timed_out: bool = False) -> dict:
        """engine_health's ``health`` return value for the last probe."""
        p = self.params
        is_healthy = probe.healthy and (not p["wait"] or streak >= p["healthy_streak"])
        if probe.healthy and not is_healthy:
            failure = "unhealthy"
            detail = (
                f"healthy for only {streak} probe(s) in a row of the {p['healthy_streak']} required "
                f"before wait_timeout ({p['wait_timeout']}s): still starting, or flapping."
            )
        return dict(
            is_healthy=is_healthy,
            status=probe.status,
            subsystems=probe.subsystems,
            http_status=probe.http_status,
            uptime_seconds=probe.uptime_seconds,
            probes=probes,
            streak=streak,
            elapsed=round(time.monotonic() - started, 3),
            timed_out=timed_out,
            failure=failure,
            failure_detail=detail,
            url=safe_url(self.url) if self.url else None,
            container=container,
        )

    def watch(self, seconds: float) -> dict:
        """Healthy at every probe, one `interval` apart, for `seconds` (ends on time, not on a probe count): the
        last probe's result, or the first unhealthy one's."""
        p = self.params
        started = time.monotonic()
        until = started + seconds
        probes = 0
        while True:
            probe = self._probe(until + p["interval"])
            probes += 1
            failure, detail, container = self._explain(probe)
            if not probe.healthy:
                break
            now = time.monotonic()
            if now >= until:
                break
            time.sleep(max(0.0, min(started + probes * p["interval"], until) - now))
        # Judged as one probe (a streak of 1): healthy at every probe of the watch, or not at the last one.
        return dict(self.result(probe, failure, detail, container, probes=probes, streak=probes, started=started),
                    is_healthy=probe.healthy)
