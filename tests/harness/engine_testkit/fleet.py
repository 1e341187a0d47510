# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A fleet of reference Engines on the local Docker engine, in both hosting models of the contract.

*container* model (the per-user orchestrator of ``shared/engine-contract.md``): one container per
Engine named ``<engine_id>``, named volume ``engine-data-<engine_id>`` mounted at ``/data``, restart
policy ``unless-stopped``, network ``engine_net``, container port 8000 published on
``127.0.0.1:<port>``, ``ENGINE_API_KEY`` in the environment.

*compose* model (single node): one Compose project per Engine, project name ``<engine_id>``, in
``<workdir>/<engine_id>/docker-compose.yml`` with service ``engine``, named volume ``engine_data``,
port ``127.0.0.1:<port>:8000``; the key lives in ``.env`` (mode 0600), never in the compose file.

Engine ids carry the fleet name (``sept-u001`` for the container model, ``sept-c001`` for compose),
so two fleets never collide. Everything created carries the labels ``io.september.fleet=<fleet>`` and
``io.september.engine_id=<id>``, which is how :func:`sweep` and :meth:`Fleet.attach` find it again.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests
import yaml

from . import compose
from .net import port_free as _port_free
from .net import published_ports as _published_ports

__all__ = [
    "BASELINE_VERSION",
    "DEMO_BASE_PORT",
    "TEST_BASE_PORT",
    "WORKDIR_ROOT",
    "Engine",
    "Fleet",
    "FleetError",
    "ImageMissingError",
    "UnhealthyError",
    "fleet_names",
    "leftovers",
    "sweep",
    "sweep_all",
    "unique_name",
]

LABEL_FLEET = "io.september.fleet"
LABEL_ENGINE_ID = "io.september.engine_id"
LABEL_MODEL = "io.september.model"
LABEL_COMPOSE_DIR = "io.september.compose_dir"
LABEL_TESTKIT = "io.september.testkit"
LABEL_IMAGE_VERSION = "org.opencontainers.image.version"
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"

#: Where default work directories (compose project dirs) are created.
WORKDIR_ROOT = Path(tempfile.gettempdir()) / "engine-testkit"
#: Marker file written in every directory the testkit creates; holds the fleet name.
MARKER = ".engine-testkit"

CONTAINER_PORT = 8000
#: First host port of the demo fleet (the contract's orchestrator starts at 9001).
DEMO_BASE_PORT = 9001
#: First host port of test fleets, clear of the demo fleet.
TEST_BASE_PORT = 9101
#: The healthy baseline release of the reference Engine.
BASELINE_VERSION = "2.3.0"
COMPOSE_SERVICE = "engine"
DEFAULT_NETWORK = "engine_net"
MODELS = ("container", "compose")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")
_KEY_RE = re.compile(r"^[A-Za-z0-9._~+/=-]{8,200}$")
_PORT_IN_USE = ("port is already allocated", "address already in use", "bind for")


class FleetError(RuntimeError):
    """Something the fleet could not do; the message says what and what to do about it."""


class ImageMissingError(FleetError):
    """The requested ``engine:<tag>`` image is not on the Docker engine."""


class UnhealthyError(FleetError):
    """Engines did not report healthy in time; ``details`` maps engine id to what was last seen."""

    def __init__(self, message: str, details: dict[str, dict[str, Any]]):
        super().__init__(message)
        self.details = details


def docker_client() -> docker.DockerClient:
    """A Docker client from the environment, or a :class:`FleetError` telling how to get one."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        raise FleetError(f"cannot reach the Docker engine ({exc}); start Docker and run `make bootstrap`") from exc
    return client


@dataclass
class Engine:
    """One Engine of a fleet, in either hosting model.

    The API key is kept out of ``repr()`` so that a failing assertion never prints it.
    """

    engine_id: str
    model: str
    container_name: str
    volume: str
    port: int
    url: str
    api_key: str = field(repr=False)
    image: str
    compose_dir: Path | None = None
    compose_project: str | None = None
    fleet: str | None = None
    client: docker.DockerClient | None = field(default=None, repr=False, compare=False)

    def _client(self) -> docker.DockerClient:
        if self.client is None:
            self.client = docker_client()
        return self.client

    def container(self) -> docker.models.containers.Container:
        """The Engine's current container (for compose: found by the project and service labels).

        :raises FleetError: when there is none (e.g. after ``down``).
        """
        client = self._client()
        if self.model == "compose":
            found = client.containers.list(
                all=True,
                filters={
                    "label": [
                        f"{COMPOSE_PROJECT_LABEL}={self.compose_project}",
                        f"{COMPOSE_SERVICE_LABEL}={COMPOSE_SERVICE}",
                    ]
                },
            )
            if not found:
                raise FleetError(f"engine {self.engine_id}: compose project {self.compose_project} has no container")
            found.sort(key=lambda c: (c.status != "running", c.name))
            self.container_name = found[0].name
            return found[0]
        try:
            return client.containers.get(self.container_name)
        except docker.errors.NotFound as exc:
            raise FleetError(f"engine {self.engine_id}: container {self.container_name} not found") from exc

    def volume_mountpoint(self) -> Path:
        """Host path of the Engine's data volume (``/data`` inside the container)."""
        try:
            vol = self._client().volumes.get(self.volume)
        except docker.errors.NotFound as exc:
            raise FleetError(f"engine {self.engine_id}: volume {self.volume} not found") from exc
        return Path(vol.attrs["Mountpoint"])

    def brain_path(self) -> Path:
        """Host path of the brain, ``<volume Mountpoint>/brain.sqlite``."""
        return self.volume_mountpoint() / "brain.sqlite"

    def health(self, timeout: float = 5.0) -> tuple[int | None, dict[str, Any] | None]:
        """``GET /health``: ``(status_code, body)``; ``(None, None)`` when nothing answered.

        ``body`` is ``None`` when the answer was not a JSON object.
        """
        try:
            resp = requests.get(f"{self.url}/health", timeout=timeout)
        except requests.RequestException:
            return None, None
        try:
            body = resp.json()
        except ValueError:
            body = None
        return resp.status_code, body if isinstance(body, dict) else None

    def is_healthy(self, timeout: float = 5.0) -> bool:
        """True on HTTP 200 with ``status == "ok"`` (the contract's definition of healthy)."""
        code, body = self.health(timeout)
        return code == 200 and body is not None and body.get("status") == "ok"

    def image_version(self) -> str | None:
        """The running image's ``org.opencontainers.image.version`` label, ``None`` if unknown."""
        try:
            image = self.container().image
        except (FleetError, docker.errors.DockerException):
            return None
        return (image.labels or {}).get(LABEL_IMAGE_VERSION)

    def set_llm_outage(self, on: bool) -> None:
        """Switch the reference Engine's simulated LLM-provider outage on or off (``docker exec``)."""
        cmd = ["touch", "/tmp/llm-provider-outage"] if on else ["rm", "-f", "/tmp/llm-provider-outage"]
        result = self.container().exec_run(cmd)
        if result.exit_code != 0:
            raise FleetError(f"engine {self.engine_id}: {' '.join(cmd)} failed: {result.output!r}")


def unique_name(prefix: str = "t") -> str:
    """A fleet name no other test or run uses: ``<prefix>-<8 hex>``."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _labels(fleet: str, engine_id: str | None = None, model: str | None = None) -> dict[str, str]:
    labels = {LABEL_TESTKIT: "engine_testkit", LABEL_FLEET: fleet}
    if engine_id:
        labels[LABEL_ENGINE_ID] = engine_id
    if model:
        labels[LABEL_MODEL] = model
    return labels


def _is_port_clash(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(s in text for s in _PORT_IN_USE)


def _write_marker(path: Path, fleet: str) -> None:
    (path / MARKER).write_text(fleet + "\n", encoding="utf-8")


def _owned_by(path: Path, fleet: str) -> bool:
    try:
        return (path / MARKER).read_text(encoding="utf-8").strip() == fleet
    except OSError:
        return False


def _rmtree_owned(path: Path, fleet: str) -> bool:
    """Remove ``path`` only if it carries our marker for ``fleet``."""
    if path.is_dir() and _owned_by(path, fleet):
        shutil.rmtree(path, ignore_errors=True)
        return True
    return False


def start_container_engine(
    client: docker.DockerClient,
    *,
    engine_id: str,
    image: str,
    volume: str,
    environment: dict[str, str],
    labels: dict[str, str],
    next_port: Callable[[], int],
    fleet: str,
    api_key: str,
    restart: str | None = "unless-stopped",
    network: str | None = None,
    attempts: int = 10,
) -> Engine:
    """Create and start one container-model Engine: container ``engine_id`` of ``image``, ``volume`` at ``/data``,
    port 8000 published on ``127.0.0.1`` at ``next_port()``, restart policy ``restart`` (``None``: none).

    A port that another process took between ``next_port()`` and the start is given up for the next one, up to
    ``attempts`` times. The one start-up of :class:`Fleet` and :class:`engine_testkit.lab.EngineLab`; it does not
    wait for health.

    :raises FleetError: Docker refused the container, or no port was usable.
    """
    for _attempt in range(attempts):
        port = next_port()
        try:
            container = client.containers.create(
                image,
                name=engine_id,
                detach=True,
                environment=environment,
                volumes={volume: {"bind": "/data", "mode": "rw"}},
                ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", port)},
                restart_policy={"Name": restart} if restart else None,
                network=network,
                labels=labels,
            )
        except docker.errors.APIError as exc:
            raise FleetError(f"engine {engine_id}: cannot create container: {exc.explanation or exc}") from exc
        try:
            container.start()
        except docker.errors.APIError as exc:
            container.remove(force=True)
            if _is_port_clash(exc):
                continue
            raise FleetError(f"engine {engine_id}: cannot start container: {exc.explanation or exc}") from exc
        return Engine(
            engine_id=engine_id,
            model="container",
            container_name=engine_id,
            volume=volume,
            port=port,
            url=f"http://127.0.0.1:{port}",
            api_key=api_key,
            image=image,
            fleet=fleet,
            client=client,
        )
    raise FleetError(f"engine {engine_id}: no usable host port after {attempts} attempts")


def switch_container(client: docker.DockerClient, engine: Engine, version: str, stop_timeout: int = 30) -> None:
    """Recreate a per-user Engine's container on ``engine:<version>`` as an upgrade does, by hand: the old one
    stopped (``stop_timeout`` seconds to drain) and removed, a new one with the same name, volume, port, labels,
    network, key and restart policy started. Does not wait for health."""
    old = engine.container()
    labels, network = old.labels, next(iter(old.attrs["NetworkSettings"]["Networks"]))
    old.stop(timeout=stop_timeout)
    old.remove()
    new = client.containers.create(
        f"engine:{version}",
        name=engine.container_name,
        detach=True,
        labels=labels,
        network=network,
        environment={"ENGINE_API_KEY": engine.api_key},
        volumes={engine.volume: {"bind": "/data", "mode": "rw"}},
        ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", engine.port)},
        restart_policy={"Name": "unless-stopped"},
    )
    new.start()
    engine.image = f"engine:{version}"


COMPOSE_TEMPLATE = """\
# Single-node Engine written by engine_testkit (fleet {fleet}); the collection under test edits it.
version: "2.4"
services:
  {service}:
    image: {image}
    restart: unless-stopped
    environment:
      ENGINE_API_KEY: ${{ENGINE_API_KEY}}
    ports:
      - "127.0.0.1:{port}:{container_port}"
    volumes:
      - engine_data:/data
    labels:
{labels}
volumes:
  engine_data:
    labels:
{vol_labels}
networks:
  default:
    labels:
{vol_labels}
"""


def render_compose(fleet: str, engine_id: str, image_ref: str, port: int, compose_dir: Path) -> str:
    """The ``docker-compose.yml`` text of one compose-model Engine (``image_ref`` as written)."""
    svc_labels = _labels(fleet, engine_id, "compose")
    svc_labels[LABEL_COMPOSE_DIR] = str(compose_dir)
    vol_labels = _labels(fleet, engine_id, "compose")
    return COMPOSE_TEMPLATE.format(
        fleet=fleet,
        service=COMPOSE_SERVICE,
        image=image_ref,
        port=port,
        container_port=CONTAINER_PORT,
        labels="\n".join(f'      {k}: "{v}"' for k, v in sorted(svc_labels.items())),
        vol_labels="\n".join(f'      {k}: "{v}"' for k, v in sorted(vol_labels.items())),
    )


class Fleet:
    """A set of Engines sharing a name, an API key and a port range.

    :param name: fleet name (lower-case letters, digits, ``-``); prefix of every engine id.
    :param base_port: first host port to try; ports already bound or published are skipped.
    :param api_key: the ``X-Engine-Key`` of every Engine; random per fleet when not given.
    :param workdir: where compose project directories go; a fresh directory under
        :data:`WORKDIR_ROOT` when not given (removed again by :meth:`down`).
    :param repository: image repository, images are ``<repository>:<version>``.
    :param client: a ``docker.DockerClient``; ``docker.from_env()`` when not given.
    :param network: the container model's network (created, labelled, when missing).
    """

    def __init__(
        self,
        name: str = "sept",
        base_port: int = 9001,
        *,
        api_key: str | None = None,
        workdir: str | os.PathLike[str] | None = None,
        repository: str = "engine",
        client: docker.DockerClient | None = None,
        network: str = DEFAULT_NETWORK,
    ):
        if not _NAME_RE.match(name):
            raise FleetError(f"fleet name {name!r} must match {_NAME_RE.pattern}")
        if api_key is not None and not _KEY_RE.match(api_key):
            raise FleetError("the API key must be 8-200 characters of [A-Za-z0-9._~+/=-]")
        self.name = name
        self.base_port = base_port
        self.api_key = api_key or secrets.token_urlsafe(24)
        self.repository = repository
        self.client = client or docker_client()
        self.network = network
        self.engines: list[Engine] = []
        self._workdir = Path(workdir).resolve() if workdir is not None else None
        self._created_workdir = False

    @property
    def workdir(self) -> Path:
        """The directory of the compose projects (created on first use, see :meth:`ensure_workdir`)."""
        return self.ensure_workdir()

    def ensure_workdir(self) -> Path:
        """Create the work directory if needed (a fresh one under :data:`WORKDIR_ROOT` by default)."""
        if self._workdir is None:
            WORKDIR_ROOT.mkdir(parents=True, exist_ok=True)
            self._workdir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=WORKDIR_ROOT))
            self._created_workdir = True
        elif not self._workdir.exists():
            self._workdir.mkdir(parents=True)
            self._created_workdir = True
        if not (self._workdir / MARKER).exists():
            _write_marker(self._workdir, self.name)
        return self._workdir

    def __repr__(self) -> str:
        ids = [e.engine_id for e in self.engines]
        return f"Fleet(name={self.name!r}, engines={ids!r}, workdir={str(self._workdir)!r})"

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.down()

    # ------------------------------------------------------------------ discovery

    @classmethod
    def attach(
        cls,
        name: str,
        client: docker.DockerClient | None = None,
        workdir: str | os.PathLike[str] | None = None,
        base_port: int = 9001,
        repository: str = "engine",
    ) -> Fleet:
        """Rebuild a :class:`Fleet` from what the Docker engine holds (labels), e.g. in a new process.

        The API key is read back from the containers' environment; ``workdir`` defaults to
        ``WORKDIR_ROOT/<name>`` (what the CLI uses).
        """
        client = client or docker_client()
        engines = discover(name, client)
        api_key = engines[0].api_key if engines and engines[0].api_key else None
        fleet = cls(
            name=name,
            base_port=base_port,
            api_key=api_key,
            workdir=workdir if workdir is not None else WORKDIR_ROOT / name,
            repository=repository,
            client=client,
        )
        fleet.engines = engines
        return fleet

    # ------------------------------------------------------------------ bring up

    def image_ref(self, version: str) -> str:
        """``<repository>:<version>``; refuses ``latest`` (the contract pins tags)."""
        if not version or version == "latest":
            raise FleetError("pin an image tag (e.g. 2.3.0); `latest` is never used")
        return f"{self.repository}:{version}"

    def _require_image(self, version: str) -> str:
        ref = self.image_ref(version)
        try:
            self.client.images.get(ref)
        except docker.errors.ImageNotFound as exc:
            raise ImageMissingError(f"image {ref} not found: run `make images`") from exc
        return ref

    def _next_ids(self, models: list[str]) -> list[str]:
        prefix = {"container": "u", "compose": "c"}
        taken = {e.engine_id for e in self.engines}
        named = self.client.containers.list(all=True, filters={"name": f"{self.name}-"}, ignore_removed=True)
        taken |= {c.name for c in named}
        taken |= {e.engine_id for e in discover(self.name, self.client)}
        if self._workdir is not None and self._workdir.is_dir():
            taken |= {p.name for p in self._workdir.iterdir()}
        ids = []
        for model in models:
            n = 1
            while f"{self.name}-{prefix[model]}{n:03d}" in taken:
                n += 1
            engine_id = f"{self.name}-{prefix[model]}{n:03d}"
            taken.add(engine_id)
            ids.append(engine_id)
        return ids

    def _allocate_port(self, reserved: set[int]) -> int:
        used = _published_ports(self.client) | {e.port for e in self.engines} | reserved
        port = self.base_port
        while port < 65536:
            if port not in used and _port_free(port):
                return port
            port += 1
        raise FleetError(f"no free port from {self.base_port} upward")

    def _ensure_network(self) -> None:
        try:
            self.client.networks.get(self.network)
        except docker.errors.NotFound:
            self.client.networks.create(self.network, driver="bridge", labels=_labels(self.name))

    def up(
        self,
        count: int,
        version: str,
        model: str = "container",
        *,
        wait: bool = True,
        timeout: float = 60,
        compose_tag_in: str = "file",
    ) -> list[Engine]:
        """Start ``count`` more Engines of image ``<repository>:<version>``; returns the new ones.

        :param model: ``container``, ``compose`` or ``mixed`` (alternating, container first).
        :param wait: wait until all new Engines are healthy (:meth:`wait_healthy`).
        :param timeout: seconds for that wait.
        :param compose_tag_in: ``file`` writes ``image: engine:<tag>`` literally in the compose file;
            ``env`` writes ``image: engine:${ENGINE_TAG}`` and puts ``ENGINE_TAG`` in ``.env``.
        :raises ImageMissingError: the image is not built.
        :raises UnhealthyError: with ``wait``, when an Engine is not healthy within ``timeout``.
        """
        if model not in (*MODELS, "mixed"):
            raise FleetError(f"model must be container, compose or mixed, not {model!r}")
        if compose_tag_in not in ("file", "env"):
            raise FleetError(f"compose_tag_in must be file or env, not {compose_tag_in!r}")
        if count < 1:
            return []
        image = self._require_image(version)
        models = [model if model != "mixed" else MODELS[i % 2] for i in range(count)]
        new: list[Engine] = []
        for engine_id, m in zip(self._next_ids(models), models, strict=True):
            if m == "container":
                engine = self._up_container(engine_id, image)
            else:
                engine = self._up_compose(engine_id, image, version, compose_tag_in)
            self.engines.append(engine)
            new.append(engine)
        if wait:
            self.wait_healthy(new, timeout)
        return new

    def _up_container(self, engine_id: str, image: str) -> Engine:
        labels = _labels(self.name, engine_id, "container")
        volume = f"engine-data-{engine_id}"
        try:
            self.client.volumes.get(volume)
        except docker.errors.NotFound:
            pass
        else:
            raise FleetError(
                f"volume {volume} already exists (left over from a crashed run?): "
                f"`python -m engine_testkit sweep --name {self.name}`"
            )
        self._ensure_network()
        self.client.volumes.create(name=volume, labels=labels)
        tried: set[int] = set()

        def next_port() -> int:
            port = self._allocate_port(tried)
            tried.add(port)
            return port

        return start_container_engine(
            self.client,
            engine_id=engine_id,
            image=image,
            volume=volume,
            environment={"ENGINE_API_KEY": self.api_key},
            labels=labels,
            next_port=next_port,
            fleet=self.name,
            api_key=self.api_key,
            network=self.network,
        )

    def _up_compose(self, engine_id: str, image: str, version: str, tag_in: str) -> Engine:
        cdir = self.workdir / engine_id
        cdir.mkdir(parents=True, exist_ok=False)
        _write_marker(cdir, self.name)
        image_ref = image if tag_in == "file" else f"{self.repository}:${{ENGINE_TAG}}"
        env_lines = [f"ENGINE_API_KEY={self.api_key}"]
        if tag_in == "env":
            env_lines.append(f"ENGINE_TAG={version}")
        env_file = cdir / ".env"
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(env_lines) + "\n")
        os.chmod(env_file, 0o600)
        tried: set[int] = set()
        for _attempt in range(10):
            port = self._allocate_port(tried)
            tried.add(port)
            (cdir / "docker-compose.yml").write_text(
                render_compose(self.name, engine_id, image_ref, port, cdir), encoding="utf-8"
            )
            try:
                compose.run(["up", "-d"], cwd=cdir, project=engine_id)
            except compose.ComposeError as exc:
                if _is_port_clash(exc):
                    compose.run(["down", "-v", "--remove-orphans"], cwd=cdir, project=engine_id, check=False)
                    continue
                raise FleetError(f"engine {engine_id}: {exc}") from exc
            return self._compose_engine(engine_id, image, port, cdir)
        raise FleetError(f"engine {engine_id}: no usable port after 10 attempts from {self.base_port}")

    def _compose_engine(self, engine_id: str, image: str, port: int, cdir: Path) -> Engine:
        """The Engine of the Compose project ``engine_id`` brought up in ``cdir`` on ``port``."""
        engine = Engine(
            engine_id=engine_id,
            model="compose",
            container_name="",
            volume=f"{engine_id}_engine_data",
            port=port,
            url=f"http://127.0.0.1:{port}",
            api_key=self.api_key,
            image=image,
            compose_dir=cdir,
            compose_project=engine_id,
            fleet=self.name,
            client=self.client,
        )
        engine.container()  # fills container_name (v1: <project>_engine_1, v2: <project>-engine-1)
        return engine

    # ------------------------------------------------------------------ health

    def wait_healthy(self, engines: list[Engine] | None = None, timeout: float = 60) -> None:
        """Poll ``/health`` until every Engine answers 200 ``ok``.

        :raises UnhealthyError: after ``timeout`` seconds, naming each unhealthy Engine with its last
            HTTP status, body status, container state and the tail of its log.
        """
        pending = {e.engine_id: e for e in (engines if engines is not None else self.engines)}
        last: dict[str, tuple[int | None, dict[str, Any] | None]] = {}
        deadline = time.monotonic() + timeout
        while pending:
            for engine_id, engine in list(pending.items()):
                code, body = engine.health(timeout=2)
                last[engine_id] = (code, body)
                if code == 200 and body is not None and body.get("status") == "ok":
                    del pending[engine_id]
            if not pending:
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.25)
        details: dict[str, dict[str, Any]] = {}
        for engine_id, engine in pending.items():
            code, body = last.get(engine_id, (None, None))
            info: dict[str, Any] = {"http_status": code, "body": body}
            try:
                container = engine.container()
                container.reload()
                info["state"] = container.attrs.get("State", {}).get("Status")
                info["exit_code"] = container.attrs.get("State", {}).get("ExitCode")
                info["restart_count"] = container.attrs.get("RestartCount")
                info["log_tail"] = container.logs(tail=5).decode("utf-8", "replace").strip().splitlines()
            except (FleetError, docker.errors.DockerException) as exc:
                info["state"] = f"unknown ({exc})"
            details[engine_id] = info
        summary = "; ".join(
            f"{eid}: http={d['http_status']} status={(d['body'] or {}).get('status')} state={d.get('state')}"
            f" exit={d.get('exit_code')} restarts={d.get('restart_count')}"
            for eid, d in details.items()
        )
        raise UnhealthyError(f"{len(details)} engine(s) not healthy after {timeout:g}s: {summary}", details)

    # ------------------------------------------------------------------ tear down

    def remove_engine(self, engine: Engine) -> None:
        """Remove one Engine and everything it owns (container, volume, compose project and dir)."""
        if engine.model == "compose" and engine.compose_dir is not None:
            if (engine.compose_dir / "docker-compose.yml").exists():
                compose.run(
                    ["down", "-v", "--remove-orphans", "--timeout", "5"],
                    cwd=engine.compose_dir,
                    project=engine.compose_project or engine.engine_id,
                )
            _rmtree_owned(engine.compose_dir, self.name)
        _remove_labelled(self.client, f"{LABEL_ENGINE_ID}={engine.engine_id}", self.name)
        with contextlib.suppress(docker.errors.NotFound):
            self.client.volumes.get(engine.volume).remove(force=True)
        if engine in self.engines:
            self.engines.remove(engine)

    def down(self) -> None:
        """Remove everything the fleet created: containers, volumes, networks, compose project dirs.

        Then :func:`sweep` runs for this fleet name, so leftovers of a half-finished ``up`` go too.
        ``engine_net`` is removed only when the testkit created it and no container is attached.
        """
        errors: list[str] = []
        for engine in list(reversed(self.engines)):
            try:
                self.remove_engine(engine)
            except (FleetError, compose.ComposeError, docker.errors.DockerException) as exc:
                errors.append(f"{engine.engine_id}: {exc}")
        self.engines.clear()
        sweep(self.name, self.client)
        _remove_testkit_network(self.client, self.network)
        if self._created_workdir and self._workdir is not None:
            _rmtree_owned(self._workdir, self.name)
        if errors:
            raise FleetError("fleet down left errors (run sweep): " + "; ".join(errors))

    # ------------------------------------------------------------------ ansible

    def inventory(
        self,
        canaries: Iterable[str] = (),
        group_vars: dict[str, Any] | None = None,
        host_vars: dict[str, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """An Ansible inventory (YAML-able dict): group ``engines`` with one host per Engine.

        Sub-groups ``engines_container`` and ``engines_compose`` split them by hosting model. ``canaries``
        (Engine ids) go into the group ``engine_canary``, which the upgrade's plan puts first; ``group_vars``
        become variables of the group ``engines`` (e.g. the fast test settings); ``host_vars`` (Engine id to
        variables) are added to those hosts' own.
        """
        hosts: dict[str, dict[str, Any]] = {}
        by_model: dict[str, dict[str, dict[str, Any]]] = {m: {} for m in MODELS}
        for e in self.engines:
            hv: dict[str, Any] = {
                "engine_id": e.engine_id,
                "engine_deployment": e.model,
                "engine_url": e.url,
                "engine_api_key": e.api_key,
                "engine_image": e.image,
                "engine_volume": e.volume,
                "ansible_connection": "local",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            }
            if e.model == "compose":
                hv["engine_compose_dir"] = str(e.compose_dir)
                hv["engine_compose_service"] = COMPOSE_SERVICE
            else:
                hv["engine_container_name"] = e.container_name
            hosts[e.engine_id] = hv
            by_model[e.model][e.engine_id] = {}
        unknown = sorted(set(host_vars or {}) - set(hosts))
        if unknown:
            raise FleetError(f"host_vars for {unknown}: not Engines of fleet {self.name}")
        for engine_id, extra in (host_vars or {}).items():
            hosts[engine_id].update(extra)
        engines: dict[str, Any] = {"hosts": hosts}
        if group_vars:
            engines["vars"] = dict(group_vars)
        children: dict[str, Any] = {"engines": engines}
        for m, members in by_model.items():
            if members:
                children[f"engines_{m}"] = {"hosts": members}
        canaries = list(canaries)
        unknown = [c for c in canaries if c not in hosts]
        if unknown:
            raise FleetError(f"canaries {unknown} are not Engines of fleet {self.name}")
        if canaries:
            children["engine_canary"] = {"hosts": {c: {} for c in canaries}}
        return {"all": {"children": children}}

    def write_inventory(
        self,
        path: str | os.PathLike[str],
        canaries: Iterable[str] = (),
        group_vars: dict[str, Any] | None = None,
        host_vars: dict[str, dict[str, Any]] | None = None,
    ) -> Path:
        """Write :meth:`inventory` as YAML (mode 0600: it holds the API key); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "# Written by engine_testkit; holds the fleet's API key.\n" + yaml.safe_dump(
            self.inventory(canaries, group_vars, host_vars), sort_keys=False, default_flow_style=False
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(path, 0o600)
        return path


# ---------------------------------------------------------------------- discovery and sweeping


def _env_value(container: Any, key: str) -> str | None:
    for item in (container.attrs.get("Config") or {}).get("Env") or []:
        k, _sep, v = item.partition("=")
        if k == key:
            return v
    return None


def _host_port(container: Any) -> int:
    bindings = (container.attrs.get("HostConfig") or {}).get("PortBindings") or {}
    for bind in bindings.get(f"{CONTAINER_PORT}/tcp") or []:
        with contextlib.suppress(TypeError, ValueError):
            return int(bind.get("HostPort"))
    return 0


def discover(name: str, client: docker.DockerClient) -> list[Engine]:
    """The Engines of fleet ``name`` found on the Docker engine by label, sorted by engine id."""
    engines: dict[str, Engine] = {}
    for c in client.containers.list(all=True, filters={"label": f"{LABEL_FLEET}={name}"}, ignore_removed=True):
        labels = c.labels or {}
        engine_id = labels.get(LABEL_ENGINE_ID)
        if not engine_id or engine_id in engines:
            continue
        model = labels.get(LABEL_MODEL, "container")
        volume = next(
            (m.get("Name") for m in c.attrs.get("Mounts") or [] if m.get("Destination") == "/data" and m.get("Name")),
            f"engine-data-{engine_id}" if model == "container" else f"{engine_id}_engine_data",
        )
        port = _host_port(c)
        compose_dir = labels.get(LABEL_COMPOSE_DIR)
        engines[engine_id] = Engine(
            engine_id=engine_id,
            model=model,
            container_name=c.name,
            volume=volume,
            port=port,
            url=f"http://127.0.0.1:{port}",
            api_key=_env_value(c, "ENGINE_API_KEY") or "",
            image=(c.attrs.get("Config") or {}).get("Image", ""),
            compose_dir=Path(compose_dir) if compose_dir else None,
            compose_project=labels.get(COMPOSE_PROJECT_LABEL),
            fleet=name,
            client=client,
        )
    return [engines[k] for k in sorted(engines)]


def fleet_names(client: docker.DockerClient | None = None) -> list[str]:
    """Names of every testkit fleet with a container, volume or network on the Docker engine."""
    client = client or docker_client()
    flt = {"label": f"{LABEL_TESTKIT}"}
    names: set[str] = set()
    for c in client.containers.list(all=True, filters=flt, ignore_removed=True):
        names.add((c.labels or {}).get(LABEL_FLEET, ""))
    for v in client.volumes.list(filters=flt):
        names.add((v.attrs.get("Labels") or {}).get(LABEL_FLEET, ""))
    for n in client.networks.list(filters=flt):
        names.add((n.attrs.get("Labels") or {}).get(LABEL_FLEET, ""))
    if WORKDIR_ROOT.is_dir():
        for d in WORKDIR_ROOT.iterdir():
            with contextlib.suppress(OSError):
                if (d / MARKER).is_file():
                    names.add((d / MARKER).read_text(encoding="utf-8").strip())
    names.discard("")
    return sorted(names)


def _remove_labelled(client: docker.DockerClient, label: str, fleet: str) -> dict[str, list[str]]:
    """Force-remove containers, then volumes, carrying ``label`` AND ``io.september.fleet=<fleet>``."""
    removed: dict[str, list[str]] = {"containers": [], "volumes": []}
    flt = {"label": [label, f"{LABEL_FLEET}={fleet}"]}
    for c in client.containers.list(all=True, filters=flt, ignore_removed=True):
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True, v=False)
            removed["containers"].append(c.name)
    for v in client.volumes.list(filters=flt):
        with contextlib.suppress(docker.errors.NotFound):
            v.remove(force=True)
            removed["volumes"].append(v.name)
    return removed


def _network_unused(network: Any) -> bool:
    """No container uses the network, running OR stopped (inspect lists only the connected, running ones)."""
    with contextlib.suppress(docker.errors.NotFound):
        network.reload()
        if network.attrs.get("Containers"):
            return False
        for container in network.client.containers.list(all=True, ignore_removed=True):
            settings = container.attrs.get("NetworkSettings") or {}
            mode = (container.attrs.get("HostConfig") or {}).get("NetworkMode")
            if network.name in (settings.get("Networks") or {}) or mode in (network.name, network.id):
                return False
        return True
    return False


def _remove_testkit_network(client: docker.DockerClient, name: str) -> bool:
    """Remove network ``name`` if the testkit created it (labelled) and nothing is attached."""
    try:
        network = client.networks.get(name)
    except docker.errors.NotFound:
        return False
    if LABEL_TESTKIT not in (network.attrs.get("Labels") or {}) or not _network_unused(network):
        return False
    with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
        network.remove()
        return True
    return False


def _down_compose_projects(client: docker.DockerClient, flt: dict[str, str]) -> tuple[list[str], set[Path]]:
    """Bring down with Compose every project of the fleet's containers (``flt``) whose directory still holds its
    docker-compose.yml; returns the projects brought down and every compose directory the containers name."""
    projects: list[str] = []
    dirs: set[Path] = set()
    for c in client.containers.list(all=True, filters=flt, ignore_removed=True):
        labels = c.labels or {}
        cdir = labels.get(LABEL_COMPOSE_DIR)
        project = labels.get(COMPOSE_PROJECT_LABEL)
        if not cdir:
            continue
        dirs.add(Path(cdir))
        if project and (Path(cdir) / "docker-compose.yml").exists() and project not in projects:
            with contextlib.suppress(compose.ComposeError):
                compose.run(["down", "-v", "--remove-orphans", "--timeout", "5"], cwd=cdir, project=project)
                projects.append(project)
    return projects, dirs


def _remove_unused_networks(client: docker.DockerClient, flt: dict[str, str]) -> list[str]:
    """Remove the networks that match ``flt`` and that nothing is attached to; returns their names."""
    removed: list[str] = []
    for n in client.networks.list(filters=flt):
        if _network_unused(n):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                n.remove()
                removed.append(n.name)
    return removed


def _workdirs() -> set[Path]:
    """The directories under :data:`WORKDIR_ROOT` (not links): the default work dirs, each maybe some fleet's."""
    if not WORKDIR_ROOT.is_dir():
        return set()
    return {d for d in WORKDIR_ROOT.iterdir() if d.is_dir() and not d.is_symlink()}


def sweep(fleet_name: str, client: docker.DockerClient | None = None) -> dict[str, list[str]]:
    """Remove every leftover of fleet ``fleet_name`` (e.g. after a crashed run), found by label.

    Compose projects are brought down with Compose where their directory still exists; then every
    container, volume and network labelled ``io.september.fleet=<fleet_name>`` is removed (a network
    only when nothing is attached), and so are the testkit directories marked for this fleet (compose
    project dirs and default work dirs under :data:`WORKDIR_ROOT`). Nothing without the label is
    touched. Returns what was removed, by kind.
    """
    if not _NAME_RE.match(fleet_name):
        raise FleetError(f"fleet name {fleet_name!r} must match {_NAME_RE.pattern}")
    client = client or docker_client()
    flt = {"label": f"{LABEL_FLEET}={fleet_name}"}
    projects, dirs = _down_compose_projects(client, flt)
    got = _remove_labelled(client, LABEL_FLEET, fleet_name)
    networks = _remove_unused_networks(client, flt)
    dirs |= _workdirs()
    return {
        "compose_projects": projects,
        "containers": list(got["containers"]),
        "volumes": list(got["volumes"]),
        "networks": networks,
        "dirs": [str(d) for d in sorted(dirs) if _rmtree_owned(d, fleet_name)],
    }


def leftovers(fleet_name: str, client: docker.DockerClient | None = None) -> dict[str, list[str]]:
    """Everything that still belongs to fleet ``fleet_name``, by label or by name (all empty = clean).

    By name too, so that a resource created without our labels would still be noticed: containers
    named ``<fleet>-*``, volumes whose name contains the fleet name, networks named ``<fleet>-*``,
    and directories under :data:`WORKDIR_ROOT` named after or marked for the fleet.
    """
    client = client or docker_client()
    flt = {"label": f"{LABEL_FLEET}={fleet_name}"}
    dirs: list[str] = []
    if WORKDIR_ROOT.is_dir():
        dirs = [
            str(d)
            for d in sorted(WORKDIR_ROOT.iterdir())
            if d.name == fleet_name or d.name.startswith(f"{fleet_name}-") or _owned_by(d, fleet_name)
        ]
    return {
        "labelled_containers": [c.name for c in client.containers.list(all=True, filters=flt, ignore_removed=True)],
        "labelled_volumes": [v.name for v in client.volumes.list(filters=flt)],
        "labelled_networks": [n.name for n in client.networks.list(filters=flt)],
        "named_containers": [
            c.name
            for c in client.containers.list(all=True, filters={"name": f"{fleet_name}-"}, ignore_removed=True)
            if c.name.startswith(f"{fleet_name}-")
        ],
        "named_volumes": [v.name for v in client.volumes.list() if fleet_name in v.name],
        "named_networks": [n.name for n in client.networks.list() if n.name.startswith(f"{fleet_name}-")],
        "dirs": dirs,
    }


def sweep_all(client: docker.DockerClient | None = None) -> dict[str, dict[str, list[str]]]:
    """:func:`sweep` every testkit fleet found by :func:`fleet_names`."""
    client = client or docker_client()
    return {name: sweep(name, client) for name in fleet_names(client)}
