# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Single reference Engines with a hand-made configuration, for the Engine's own system tests.

:class:`engine_testkit.fleet.Fleet` brings up Engines the way the orchestrator does; the tests of
the reference Engine itself need more: extra environment (``ENGINE_TURN_LATENCY_MS``,
``ENGINE_SEED``), a chosen restart policy, and several images in turn on one brain volume (an
upgrade, then the old version again). :class:`EngineLab` does that with the fleet's labels, so
:func:`engine_testkit.fleet.sweep` finds and removes everything it created.

Containers are named ``<lab>-u<NNN>``, volumes ``engine-data-<lab>-v<NNN>``; host ports come from a
fixed range (9800-9899 by default) on ``127.0.0.1``.
"""

from __future__ import annotations

import json
import secrets
import threading
from typing import Any

import docker
import docker.errors

from .fleet import (
    LABEL_ENGINE_ID,
    LABEL_FLEET,
    LABEL_MODEL,
    LABEL_TESTKIT,
    Engine,
    Fleet,
    FleetError,
    start_container_engine,
    sweep,
)
from .net import port_free, published_ports
from .waits import wait_until

__all__ = ["EngineLab", "LogLine"]

LogLine = dict[str, Any]


class EngineLab:
    """Engines of one lab (a fleet name): create, stop, retire, inspect; :meth:`down` removes all.

    :param name: the lab's fleet name (label ``io.september.fleet``), e.g. ``eng-1a2b3c4d``.
    :param client: a Docker client.
    :param ports: the host ports the lab may publish (inclusive range).
    :param repository: images are ``<repository>:<version>``.
    """

    def __init__(
        self,
        name: str,
        client: docker.DockerClient,
        ports: tuple[int, int] = (9800, 9899),
        repository: str = "engine",
    ):
        self.name = name
        self.client = client
        self.ports = ports
        self.repository = repository
        self.api_key = secrets.token_urlsafe(24)
        # A Fleet only for its naming checks and its health wait; it owns no engine.
        self._fleet = Fleet(name=name, base_port=ports[0], api_key=self.api_key, repository=repository, client=client)
        self._lock = threading.Lock()
        self._reserved: set[int] = set()
        self._seq = 0
        self._vol_seq = 0

    # ------------------------------------------------------------------ helpers

    def labels(self, engine_id: str | None = None) -> dict[str, str]:
        labels = {LABEL_TESTKIT: "engine_testkit", LABEL_FLEET: self.name, LABEL_MODEL: "container"}
        if engine_id:
            labels[LABEL_ENGINE_ID] = engine_id
        return labels

    def _take_port(self) -> int:
        """A port of the lab's range that no container publishes and nothing binds (thread-safe)."""
        with self._lock:
            used = published_ports(self.client) | self._reserved
            for port in range(self.ports[0], self.ports[1] + 1):
                if port not in used and port_free(port):
                    self._reserved.add(port)
                    return port
        raise FleetError(f"no free host port in {self.ports[0]}-{self.ports[1]}")

    def _next_id(self) -> str:
        with self._lock:
            self._seq += 1
            return f"{self.name}-u{self._seq:03d}"

    def new_volume(self) -> str:
        """Create an empty, labelled brain volume; returns its name."""
        with self._lock:
            self._vol_seq += 1
            name = f"engine-data-{self.name}-v{self._vol_seq:03d}"
        self.client.volumes.create(name=name, labels=self.labels())
        return name

    # ------------------------------------------------------------------ life cycle

    def run(
        self,
        version: str,
        *,
        env: dict[str, str] | None = None,
        volume: str | None = None,
        restart: str = "no",
        wait: bool = True,
        timeout: float = 60,
    ) -> Engine:
        """Start ``<repository>:<version>`` on ``volume`` (a new one when ``None``) at ``/data``.

        :param env: extra environment (``ENGINE_API_KEY`` is always the lab's key).
        :param restart: Docker restart policy name (``no``, ``unless-stopped``, ...).
        :param wait: wait until ``/health`` answers 200 ``ok``.
        """
        image = self._fleet._require_image(version)  # ImageMissingError (a FleetError) when not built
        engine_id = self._next_id()
        volume = volume or self.new_volume()
        environment = {"ENGINE_API_KEY": self.api_key, **(env or {})}
        engine = start_container_engine(
            self.client,
            engine_id=engine_id,
            image=image,
            volume=volume,
            environment=environment,
            labels=self.labels(engine_id),
            next_port=self._take_port,
            fleet=self.name,
            api_key=self.api_key,
            restart=restart if restart != "no" else None,
            attempts=5,
        )
        if wait:
            self.wait_healthy([engine], timeout)
        return engine

    def wait_healthy(self, engines: list[Engine], timeout: float = 60) -> None:
        """:meth:`Fleet.wait_healthy` for these Engines (raises ``UnhealthyError``)."""
        self._fleet.wait_healthy(engines, timeout)

    def state(self, engine: Engine) -> dict[str, Any]:
        """The container's ``State`` plus ``RestartCount``."""
        container = engine.container()
        container.reload()
        state = dict(container.attrs.get("State") or {})
        state["RestartCount"] = container.attrs.get("RestartCount", 0)
        return state

    def stop(self, engine: Engine, timeout: int = 30) -> int:
        """``docker stop -t <timeout>`` (SIGTERM, then SIGKILL); returns the exit code."""
        container = engine.container()
        container.stop(timeout=timeout)
        return int(self.state(engine)["ExitCode"])

    def wait_exit(self, engine: Engine, timeout: float = 60) -> int:
        """Wait until the container has exited (no restart policy); returns the exit code."""
        result = engine.container().wait(timeout=timeout)
        return int(result["StatusCode"])

    def start_again(self, engine: Engine, wait: bool = True, timeout: float = 60) -> None:
        """``docker start`` the (stopped) container again, same configuration and volume."""
        engine.container().start()
        if wait:
            self.wait_healthy([engine], timeout)

    def retire(self, engine: Engine, timeout: int = 30) -> int:
        """Stop the Engine (drain) and remove its container, keeping the volume; returns the exit code."""
        container = engine.container()
        container.reload()
        if container.status in ("running", "restarting"):
            container.stop(timeout=timeout)
        code = int(self.state(engine)["ExitCode"])
        container.remove(force=True)
        with self._lock:
            self._reserved.discard(engine.port)
        return code

    # ------------------------------------------------------------------ logs

    def logs(self, engine: Engine, stdout: bool = True, stderr: bool = False) -> str:
        """The container's log (all runs of it), as text."""
        raw = engine.container().logs(stdout=stdout, stderr=stderr)
        return raw.decode("utf-8", "replace")

    def log_lines(self, engine: Engine) -> list[LogLine]:
        """Every stdout line parsed as JSON. Raises ``ValueError`` on a line that is not a JSON object."""
        lines: list[LogLine] = []
        for raw in self.logs(engine).splitlines():
            if not raw.strip():
                continue
            obj = json.loads(raw)
            if not isinstance(obj, dict):
                raise ValueError(f"log line is not a JSON object: {raw[:200]!r}")
            lines.append(obj)
        return lines

    def wait_log(self, engine: Engine, message_prefix: str, timeout: float = 30) -> LogLine:
        """Wait for a log line whose ``message`` starts with ``message_prefix``; returns it.

        :raises engine_testkit.waits.WaitTimeout: after ``timeout`` seconds.
        """

        def found() -> LogLine | None:
            return next(
                (line for line in self.log_lines(engine) if str(line.get("message", "")).startswith(message_prefix)),
                None,
            )

        return wait_until(found, timeout, f"a log line {message_prefix!r} of {engine.engine_id}")

    # ------------------------------------------------------------------ tear down

    def down(self) -> dict[str, list[str]]:
        """Remove every container and volume of the lab (by label)."""
        return sweep(self.name, self.client)
