# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A lab of real Docker hosts reached over SSH: the collection's playbooks run against Engines on several hosts.

Each *lab host* is a container of the image ``localhost/september-engine-dockerhost:bookworm``
(``tests/harness/lab/build-image.sh``: Debian bookworm, ``docker.io``, Compose v1, ``openssh-server``,
``python3-docker``) running its own ``dockerd`` and ``sshd``. Ansible reaches it as root, by key
only, on a port of ``127.0.0.1``; it has its own filesystem (``/var/lib/september-engine``, Compose
directories, Docker volumes) and its own loopback, where its Engines publish (``127.0.0.1:9001`` and
up on every host, as the contract's orchestrator does). The modules run on the lab host and reach
the Engines there.

How the test kit itself talks to a lab host:

- the inner Docker daemon: through its API on TCP, published on ``127.0.0.1:<port>`` of this machine
  (``docker.DockerClient(base_url="tcp://127.0.0.1:<port>")``). The test kit does not depend on the
  lab host's sshd (which the fault helpers stop) nor on ``paramiko``; :class:`engine_testkit.fleet.Fleet`
  creates per-user containers through that client unchanged;
- commands and files: ``docker exec`` / ``docker cp`` (``get_archive`` / ``put_archive``) on the lab
  host container; :meth:`LabHost.ssh` runs a command over the same SSH path Ansible uses;
- Compose: run inside the lab host (its Compose directory is on its filesystem), v2 when the image
  has the plugin, else v1.

Names: a lab ``<lab>`` has hosts ``lab-<lab>-h1``, ``lab-<lab>-h2``... (container and hostname), each
with the volume ``lab-<lab>-hN-docker`` for its ``/var/lib/docker``; its Engines are
``lab-<lab>-hN-u001`` (per-user container) and ``lab-<lab>-hN-c001`` (Compose project in
``/srv/september/<id>`` on that host). Everything created on this machine carries the label
``io.september.lab=<lab>``: :func:`sweep` removes leftovers; :meth:`DockerLab.down` removes all
(containers first, whatever state they are in, then volumes, then the lab's work directory).

Command line: ``python -m engine_testkit.dockerhosts {build,up,down,sweep,leftovers} ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import docker
import docker.errors
import yaml

from . import fleet as fleet_mod
from .fleet import (
    COMPOSE_SERVICE,
    Engine,
    Fleet,
    FleetError,
    UnhealthyError,
    render_compose,
)

__all__ = [
    "INNER_BASE_PORT",
    "LAB_IMAGE",
    "DockerLab",
    "LabEngine",
    "LabError",
    "LabFleet",
    "LabHost",
    "Trigger",
    "build_image",
    "lab_names",
    "leftovers",
    "save_images",
    "sweep",
]

REPO_ROOT = Path(__file__).resolve().parents[3]
LAB_DIR = REPO_ROOT / "tests" / "harness" / "lab"
BUILD_SCRIPT = LAB_DIR / "build-image.sh"
#: Where the saved reference Engine images (``docker save``) are kept between runs.
IMAGE_CACHE = REPO_ROOT / "build" / "lab"
LAB_IMAGE = os.environ.get("LAB_IMAGE", "localhost/september-engine-dockerhost:bookworm")
RECIPE_LABEL = "io.september.lab.recipe"
LABEL_LAB = "io.september.lab"
LABEL_LAB_HOST = "io.september.lab.host"
#: Where a lab's work directory (keys, inventory) goes when the caller gives none.
WORKDIR_ROOT = fleet_mod.WORKDIR_ROOT / "labs"
MARKER = ".engine-testkit-lab"
#: The first port the Engines of a lab host publish on its own loopback (the orchestrator's 9001).
INNER_BASE_PORT = 9001
#: Where the Compose projects live on a lab host.
COMPOSE_ROOT = PurePosixPath("/srv/september")
#: The flags that let dockerd run in a container on this machine (``--privileged`` is refused here).
HOST_RUN_FLAGS: dict[str, Any] = {
    "cap_add": ["ALL"],
    "cap_drop": ["SYS_RESOURCE"],
    "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
    "cgroupns": "host",
}
SSH_PORT = 22
DOCKER_API_PORT = 2375
#: The SSH options of the inventory: no host key bookkeeping (lab host keys are new every time), and keep-alives
#: so that a host that stops answering mid-task (paused, cut off) ends as UNREACHABLE instead of a hang.
SSH_COMMON_ARGS = (
    "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ServerAliveInterval=5 -o ServerAliveCountMax=3"
)
_HEALTH_SCRIPT = r"""
import json, sys, time, urllib.error, urllib.request
deadline = time.monotonic() + float(sys.argv[1])
pending, last = list(sys.argv[2:]), {}
while True:
    for url in list(pending):
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                code, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            code, raw = exc.code, exc.read()
        except Exception as exc:
            code, raw = None, b""
        try:
            body = json.loads(raw.decode("utf-8", "replace")) if raw else None
        except ValueError:
            body = None
        last[url] = [code, body if isinstance(body, dict) else None]
        if code == 200 and isinstance(body, dict) and body.get("status") == "ok":
            pending.remove(url)
    if not pending or time.monotonic() >= deadline:
        break
    time.sleep(0.25)
print(json.dumps({"pending": pending, "last": last}))
"""


class LabError(FleetError):
    """The lab could not do something; the message says what, and what to look at."""


#: LabHost.query: the exit status of a command that only reads, printed after its output.
_RC_MARK = "__september_rc="


@dataclass
class RunResult:
    """What a command on a lab host did."""

    rc: int
    stdout: str
    stderr: str

    def check(self, what: str) -> RunResult:
        if self.rc != 0:
            raise LabError(f"{what}: exit status {self.rc}: {(self.stderr or self.stdout).strip()[-1500:]}")
        return self


# ---------------------------------------------------------------------------------------------- the image


def build_image(force: bool = False, image: str = LAB_IMAGE) -> str:
    """Run ``tests/harness/lab/build-image.sh``: builds the lab host image, or keeps it when its recipe is unchanged.

    :returns: the script's last line (``lab image: ... (present|built in ...)``).
    :raises LabError: when the build fails (the message has the tail of its output).
    """
    argv = ["bash", str(BUILD_SCRIPT), *(["--force"] if force else [])]
    proc = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=1800, env={**os.environ, "LAB_IMAGE": image}
    )
    if proc.returncode != 0:
        raise LabError(f"{shlex.join(argv)} failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-2000:]}")
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def save_images(client: docker.DockerClient, refs: Sequence[str], cache: Path = IMAGE_CACHE) -> list[Path]:
    """``docker save`` each image once into ``build/lab/<repo>-<tag>-<id12>.tar`` (kept; a stale tar of the tag goes).

    :raises LabError: when an image is not on this machine (run ``make images``).
    """
    cache.mkdir(parents=True, exist_ok=True)
    tars: list[Path] = []
    for ref in refs:
        try:
            image = client.images.get(ref)
        except docker.errors.ImageNotFound as exc:
            raise LabError(f"image {ref} not found on this machine: run `make images`") from exc
        stem = ref.replace("/", "_").replace(":", "-")
        target = cache / f"{stem}-{image.id.split(':')[-1][:12]}.tar"
        if not target.exists():
            for stale in cache.glob(f"{stem}-*.tar"):
                stale.unlink()
            partial = target.with_suffix(".partial")
            with open(partial, "wb") as handle:
                # Named by this very tag: the image may carry others (a test's own repository), and the first of
                # them is what named=True would keep.
                for chunk in image.save(named=ref):
                    handle.write(chunk)
            partial.rename(target)
        tars.append(target)
    return tars


# ---------------------------------------------------------------------------------------------- engines on a host


@dataclass
class LabEngine(Engine):
    """An Engine inside a lab host: :meth:`health` probes it from that host (its URL is the host's loopback)."""

    host: LabHost | None = field(default=None, repr=False, compare=False)

    @property
    def docker_host(self) -> str:
        return self.host.name if self.host else ""

    def health(self, timeout: float = 5.0) -> tuple[int | None, dict[str, Any] | None]:
        assert self.host is not None
        last = self.host.probe_health([self.url], 0)["last"].get(self.url) or [None, None]
        return last[0], last[1]

    def brain_sha256(self) -> str:
        """SHA-256 of ``brain.sqlite`` in the Engine's volume, read on its lab host."""
        assert self.host is not None
        return self.host.sha256(self.brain_path())


class LabFleet(Fleet):
    """A :class:`engine_testkit.fleet.Fleet` whose Docker engine is a lab host's: per-user containers as the
    fleet makes them (through the inner daemon's API), Compose projects made and run on the lab host itself.

    Engines publish from :data:`INNER_BASE_PORT` on the lab host's loopback; the fleet name is the host's name.
    """

    def __init__(self, host: LabHost, api_key: str, repository: str = "engine"):
        super().__init__(
            name=host.name, base_port=INNER_BASE_PORT, api_key=api_key, repository=repository, client=host.client
        )
        self.host = host

    def _require_image(self, version: str) -> str:
        ref = self.image_ref(version)
        try:
            self.client.images.get(ref)
        except docker.errors.ImageNotFound as exc:
            raise fleet_mod.ImageMissingError(
                f"image {ref} is not on lab host {self.host.name}: load it first (DockerLab.load_images)"
            ) from exc
        return ref

    def ensure_workdir(self) -> Path:
        self.host.exec(["mkdir", "-p", str(COMPOSE_ROOT)]).check("mkdir")
        return Path(str(COMPOSE_ROOT))

    def _allocate_port(self, reserved: set[int]) -> int:
        # The lab host's loopback, not this machine's: what its daemon publishes is what is taken.
        used = fleet_mod._published_ports(self.client) | {e.port for e in self.engines} | reserved
        port = self.base_port
        while port in used:
            port += 1
        return port

    def _lab(self, engine: Engine) -> LabEngine:
        values = {f.name: getattr(engine, f.name) for f in dataclasses.fields(Engine)}
        return LabEngine(**values, host=self.host)

    def _up_container(self, engine_id: str, image: str) -> Engine:
        return self._lab(super()._up_container(engine_id, image))

    def _up_compose(self, engine_id: str, image: str, version: str, tag_in: str) -> Engine:
        cdir = COMPOSE_ROOT / engine_id
        port = self._allocate_port(set())
        image_ref = image if tag_in == "file" else f"{self.repository}:${{ENGINE_TAG}}"
        env_lines = [f"ENGINE_API_KEY={self.api_key}"] + ([f"ENGINE_TAG={version}"] if tag_in == "env" else [])
        self.host.write_file(cdir / ".env", ("\n".join(env_lines) + "\n").encode(), mode=0o600)
        self.host.write_file(
            cdir / "docker-compose.yml",
            render_compose(self.name, engine_id, image_ref, port, Path(str(cdir))).encode(),
            mode=0o644,
        )
        self.host.write_file(cdir / fleet_mod.MARKER, f"{self.name}\n".encode(), mode=0o644)
        self.host.compose(cdir, engine_id, ["up", "-d"]).check(f"engine {engine_id}: compose up on {self.host.name}")
        return self._lab(self._compose_engine(engine_id, image, port, Path(str(cdir))))

    def wait_healthy(self, engines: list[Engine] | None = None, timeout: float = 60) -> None:
        engines = list(engines if engines is not None else self.engines)
        if not engines:
            return
        seen = self.host.probe_health([e.url for e in engines], timeout)
        if not seen["pending"]:
            return
        details: dict[str, dict[str, Any]] = {}
        for engine in engines:
            if engine.url not in seen["pending"]:
                continue
            code, body = seen["last"].get(engine.url) or [None, None]
            info: dict[str, Any] = {"http_status": code, "body": body}
            with contextlib.suppress(FleetError, docker.errors.DockerException):
                container = engine.container()
                info["state"] = container.status
                info["log_tail"] = container.logs(tail=5).decode("utf-8", "replace").strip().splitlines()
            details[engine.engine_id] = info
        summary = "; ".join(f"{k}: http={v['http_status']} state={v.get('state')}" for k, v in details.items())
        raise UnhealthyError(
            f"{self.host.name}: {len(details)} engine(s) not healthy after {timeout:g}s: {summary}", details
        )

    def remove_engine(self, engine: Engine) -> None:
        if engine.model == "compose" and engine.compose_dir is not None:
            cdir = PurePosixPath(str(engine.compose_dir))
            self.host.compose(cdir, engine.compose_project or engine.engine_id, ["down", "-v", "--remove-orphans"])
            self.host.exec(["rm", "-rf", str(cdir)])
        super().remove_engine(engine)


# ---------------------------------------------------------------------------------------------- a lab host


@dataclass
class LabHost:
    """One Docker host of the lab: a container with dockerd and sshd, reached on ``127.0.0.1:<ssh_port>``."""

    name: str
    lab: str
    ssh_port: int
    docker_port: int
    key_file: Path
    outer: docker.DockerClient = field(repr=False)
    storage_driver: str = ""
    engines: list[LabEngine] = field(default_factory=list, repr=False)
    _client: docker.DockerClient | None = field(default=None, repr=False)
    _fleet: LabFleet | None = field(default=None, repr=False)
    _compose: list[str] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ plumbing

    @property
    def container(self) -> Any:
        """The lab host's container on this machine's Docker engine."""
        try:
            return self.outer.containers.get(self.name)
        except docker.errors.NotFound as exc:
            raise LabError(f"lab host {self.name} is gone (its container was removed)") from exc

    @property
    def client(self) -> docker.DockerClient:
        """A Docker client of the lab host's own daemon (its API, published on this machine's loopback)."""
        if self._client is None:
            self._client = docker.DockerClient(base_url=f"tcp://127.0.0.1:{self.docker_port}", timeout=120)
        return self._client

    def exec(self, cmd: str | Sequence[str], *, check: bool = False, env: dict[str, str] | None = None) -> RunResult:
        """Run ``cmd`` (a list, or a string for ``sh -c``) as root on the lab host (``docker exec``; no SSH needed).

        The exit status is read once Docker says the process has ended (``exec_inspect`` polled until it is no
        longer running): docker-py's ``exec_run`` reads it right after the output, and on a loaded machine the
        daemon may not have reaped the process yet (ExitCode None).
        """
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        api = self.outer.api
        try:
            exec_id = api.exec_create(self.name, argv, stdout=True, stderr=True, environment=env)["Id"]
            out, err = api.exec_start(exec_id, demux=True) or (None, None)
            rc = self._exit_code(exec_id, argv)
        except docker.errors.APIError as exc:
            raise LabError(f"{self.name}: cannot run {shlex.join(argv)}: {exc.explanation or exc}") from exc
        res = RunResult(rc, (out or b"").decode("utf-8", "replace"), (err or b"").decode("utf-8", "replace"))
        return res.check(f"{self.name}: {shlex.join(argv)}") if check else res

    run = exec

    def _exit_code(self, exec_id: str, argv: Sequence[str], timeout: float = 60) -> int:
        """The exit status of a finished exec, once the daemon has it."""
        deadline, pause = time.monotonic() + timeout, 0.01
        while True:
            state = self.outer.api.exec_inspect(exec_id)
            if not state.get("Running") and state.get("ExitCode") is not None:
                return int(state["ExitCode"])
            if time.monotonic() > deadline:
                raise LabError(f"{self.name}: {shlex.join(argv)}: no exit status after {timeout:g}s ({state})")
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def query(self, argv: Sequence[str], *, env: dict[str, str] | None = None, tries: int = 3) -> RunResult:
        """Run a command that only reads; its exit status travels in its output, after a marker, so that an answer
        whose output was lost (an empty read, seen on a loaded machine) is told from an empty answer and asked
        again (up to ``tries`` times). Never answers "nothing there" for "no answer": LabError instead."""
        res = RunResult(-1, "", "")
        for attempt in range(tries):
            res = self.exec(["sh", "-c", f'"$@"; echo "{_RC_MARK}$?"', "sh", *argv], env=env)
            out, sep, tail = res.stdout.rpartition(_RC_MARK)
            if sep and tail.strip().isdigit():
                return RunResult(int(tail.strip()), out, res.stderr)
            if attempt + 1 < tries:
                time.sleep(0.2 * (attempt + 1))
        raise LabError(f"{self.name}: {shlex.join(argv)} did not answer ({tries} tries): {res.stderr.strip()[-500:]}")

    def ssh_argv(self, *, connect_timeout: int = 5) -> list[str]:
        """The ``ssh`` command line that reaches this host as Ansible does (append the remote command)."""
        return [
            "ssh",
            "-i", str(self.key_file),
            "-p", str(self.ssh_port),
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR",
            "-o", f"ConnectTimeout={connect_timeout}",
            "root@127.0.0.1",
        ]  # fmt: skip

    def ssh(self, command: str, *, timeout: float = 60, connect_timeout: int = 5) -> RunResult:
        """Run a shell command on the host over SSH (the path Ansible takes)."""
        try:
            proc = subprocess.run(
                [*self.ssh_argv(connect_timeout=connect_timeout), command],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return RunResult(255, "", f"ssh {self.name}: no answer within {timeout:g}s")
        return RunResult(proc.returncode, proc.stdout, proc.stderr)

    def is_reachable(self, timeout: int = 5) -> bool:
        """True when an SSH login as root by key works now."""
        return self.ssh("true", timeout=timeout + 5, connect_timeout=timeout).rc == 0

    # ------------------------------------------------------------------ files

    def read_file(self, path: str | os.PathLike[str]) -> bytes:
        """The bytes of a file on the lab host (``docker cp``; works while its sshd is stopped)."""
        try:
            stream, _stat = self.container.get_archive(str(path))
        except docker.errors.NotFound as exc:
            raise LabError(f"{self.name}: no file {path}") from exc
        buf = io.BytesIO(b"".join(stream))
        with tarfile.open(fileobj=buf) as tar:
            member = tar.next()
            if member is None or not member.isfile():
                raise LabError(f"{self.name}: {path} is not a regular file")
            handle = tar.extractfile(member)
            assert handle is not None
            return handle.read()

    def fetch(self, path: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
        """Copy a file of the lab host to ``dest`` on this machine (mode 0600); returns ``dest``."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(self.read_file(path))
        return dest

    def write_file(self, path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
        """Write ``data`` to ``path`` on the lab host (parents created; through the Docker API, never argv)."""
        target = PurePosixPath(str(path))
        self.exec(["mkdir", "-p", str(target.parent)], check=True)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(target.name)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
        if not self.container.put_archive(str(target.parent), buf.getvalue()):
            raise LabError(f"{self.name}: cannot write {path}")

    def exists(self, path: str | os.PathLike[str]) -> bool:
        return self.query(["test", "-e", str(path)]).rc == 0

    def listdir(self, path: str | os.PathLike[str]) -> list[str]:
        """Names in a directory of the lab host (empty when it does not exist)."""
        res = self.query(["ls", "-A", "-1", str(path)])
        return res.stdout.split() if res.rc == 0 else []

    def find(self, path: str | os.PathLike[str], *args: str) -> list[str]:
        """``find PATH ARGS...`` on the lab host: the paths found (empty when PATH does not exist)."""
        res = self.query(["find", str(path), *args])
        return sorted(line for line in res.stdout.splitlines() if line) if res.rc == 0 else []

    def sha256(self, path: str | os.PathLike[str]) -> str:
        """SHA-256 of a file on the lab host."""
        return hashlib.sha256(self.read_file(path)).hexdigest()

    # ------------------------------------------------------------------ docker and compose inside

    def docker_ps(self, all_: bool = False) -> list[str]:
        """Names of the containers of the lab host's own Docker daemon."""
        return sorted(c.name for c in self.client.containers.list(all=all_, ignore_removed=True))

    def compose_command(self) -> list[str]:
        """``docker compose`` when the lab host has the v2 plugin, else ``docker-compose`` (v1)."""
        if self._compose is None:
            v2 = self.exec(["docker", "compose", "version"]).rc == 0
            self._compose = ["docker", "compose"] if v2 else ["docker-compose"]
        return list(self._compose)

    @property
    def compose_version(self) -> str:
        """``v2`` or ``v1``: the Compose the lab host has (and that the test kit and the modules use there)."""
        return "v2" if self.compose_command() == ["docker", "compose"] else "v1"

    def compose(self, cdir: PurePosixPath, project: str, args: Sequence[str]) -> RunResult:
        """Run Compose on the lab host for the project in ``cdir`` (``-p``, ``-f``, ``--project-directory``)."""
        return self.exec(
            [*self.compose_command(), "-p", project, "-f", str(cdir / "docker-compose.yml"),
             "--project-directory", str(cdir), *args]
        )  # fmt: skip

    def probe_health(self, urls: Sequence[str], timeout: float) -> dict[str, Any]:
        """Poll ``<url>/health`` from the lab host until each answers 200 ``ok`` or ``timeout`` passes.

        :returns: ``{"pending": [urls not healthy], "last": {url: [status, body]}}``.
        """
        res = self.query(["python3", "-c", _HEALTH_SCRIPT, str(timeout), *urls]).check(f"{self.name}: health probe")
        return json.loads(res.stdout)

    def fleet(self, api_key: str) -> LabFleet:
        if self._fleet is None:
            self._fleet = LabFleet(self, api_key)
        return self._fleet

    # ------------------------------------------------------------------ faults

    def pause(self) -> None:
        """Freeze the lab host's sshd and dockerd (``docker pause``): Ansible finds it UNREACHABLE.

        Its Engines run on (their cgroups are not the lab host container's): a host cut off, not a host down.
        """
        self.container.pause()

    def unpause(self) -> None:
        container = self.container
        if container.status == "paused":
            container.unpause()

    def stop_sshd(self) -> None:
        """Stop the lab host's sshd and drop its sessions: connections are refused; Docker and Engines run on."""
        self.exec(["lab-sshd", "stop"], check=True)

    def start_sshd(self, timeout: float = 30) -> None:
        """Start sshd again and wait until an SSH login works."""
        self.exec(["lab-sshd", "start"], check=True)
        self.wait_ssh(timeout)

    def stop_dockerd(self) -> None:
        """Stop the lab host's Docker daemon as a service manager would (its Engines stop with it)."""
        self.exec(["lab-dockerd", "stop"], check=True)

    def start_dockerd(self, timeout: float = 60) -> None:
        """Start the Docker daemon again (Engines with a restart policy come back) and wait for its API."""
        self.exec(["lab-dockerd", "start"], check=True)
        self.wait_docker_api(timeout)

    def restart_dockerd(self, timeout: float = 60) -> None:
        """``systemctl restart docker`` on the lab host: stop, start, wait for the API."""
        self.exec(["lab-dockerd", "restart"], check=True)
        self.wait_docker_api(timeout)

    @contextlib.contextmanager
    def unreachable(self, how: str = "pause") -> Iterator[LabHost]:
        """``with host.unreachable():`` the host cannot be reached over SSH; back (and answering) afterwards.

        :param how: ``pause`` (frozen: connections hang until Ansible's timeout) or ``sshd`` (refused at once).
        """
        if how not in ("pause", "sshd"):
            raise LabError(f"unreachable(how={how!r}): pause or sshd")
        (self.pause if how == "pause" else self.stop_sshd)()
        try:
            yield self
        finally:
            if how == "pause":
                self.unpause()
                self.wait_ssh(30)
            else:
                self.start_sshd()

    # ------------------------------------------------------------------ readiness

    def wait_ready(self, timeout: float = 90) -> None:
        """Wait until the entrypoint says dockerd answers and sshd runs (``/run/lab/ready``)."""
        deadline = time.monotonic() + timeout
        while True:
            container = self.container
            if container.status not in ("created", "running"):
                raise LabError(f"lab host {self.name} is {container.status}: {container.logs(tail=20).decode()}")
            if container.status == "running":
                res = self.exec(
                    "if test -e /run/lab/ready; then cat /run/lab/storage-driver;"
                    " elif test -e /run/lab/failed; then echo FAILED; fi"
                )
                if res.rc == 0 and res.stdout.strip() == "FAILED":
                    log = self.exec(["tail", "-25", "/var/log/dockerd.log"]).stdout
                    raise LabError(f"lab host {self.name}: dockerd or sshd did not start:\n{log}")
                if res.rc == 0 and res.stdout.strip():
                    self.storage_driver = res.stdout.strip()
                    return
            if time.monotonic() >= deadline:
                raise LabError(f"lab host {self.name} not ready after {timeout:g}s")
            time.sleep(0.2)

    def wait_ssh(self, timeout: float = 60) -> None:
        """Wait until an SSH login as root by the lab key works."""
        deadline = time.monotonic() + timeout
        last = RunResult(255, "", "")
        while time.monotonic() < deadline:
            last = self.ssh("true", timeout=10, connect_timeout=3)
            if last.rc == 0:
                return
            time.sleep(0.2)
        raise LabError(f"lab host {self.name}: no SSH login within {timeout:g}s: {last.stderr.strip()[-500:]}")

    def wait_docker_api(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client.ping()
                return
            except (docker.errors.DockerException, OSError) as exc:
                if time.monotonic() >= deadline:
                    raise LabError(f"lab host {self.name}: its Docker API does not answer: {exc}") from exc
            time.sleep(0.2)

    def load_images(self, tars: Sequence[Path]) -> list[str]:
        """``docker load`` each tar into the lab host's daemon (skips images it already has); returns the tags."""
        tags: list[str] = []
        for tar in tars:
            with open(tar, "rb") as handle:
                loaded = self.client.images.load(handle)
            tags += [t for image in loaded for t in image.tags]
        return tags


# ---------------------------------------------------------------------------------------------- fault triggers


class Trigger:
    """Run ``action`` once ``condition`` holds (polled every ``interval`` seconds in a thread), e.g. pause a lab
    host when an upgrade's switch begins. ``fired`` is set when the action ran; ``error`` keeps what went wrong.
    """

    def __init__(
        self, condition: Callable[[], bool], action: Callable[[], None], *, timeout: float = 300, interval: float = 0.2
    ):
        self.condition, self.action, self.timeout, self.interval = condition, action, timeout, interval
        self.fired = threading.Event()
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Trigger:
        self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                if self.condition():
                    self.action()
                    self.fired.set()
                    return
                self._stop.wait(self.interval)
        except Exception as exc:  # kept for the test to report
            self.error = exc

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def __enter__(self) -> Trigger:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cancel()


# ---------------------------------------------------------------------------------------------- the lab


def _labels(lab: str, host: str | None = None) -> dict[str, str]:
    labels = {LABEL_LAB: lab, fleet_mod.LABEL_TESTKIT: "engine_testkit"}
    if host:
        labels[LABEL_LAB_HOST] = host
    return labels


def _published(container: Any, port: int) -> int:
    container.reload()
    for bind in (container.attrs.get("NetworkSettings") or {}).get("Ports", {}).get(f"{port}/tcp") or []:
        if bind.get("HostIp") in ("127.0.0.1", "", "0.0.0.0"):
            return int(bind["HostPort"])
    raise LabError(f"{container.name}: port {port} is not published")


class DockerLab:
    """A set of lab Docker hosts with Engines inside, and the inventory that reaches them over SSH.

    :param name: the lab's name (``[a-z0-9][a-z0-9-]*``); hosts are ``lab-<name>-h1``...
    :param workdir: where the SSH key pair and the inventory go (a test's ``tmp_path``); a fresh directory under
        :data:`WORKDIR_ROOT` when not given (removed by :meth:`down`).
    :param client: this machine's Docker client.
    :param image: the lab host image (:func:`build_image`).
    :param storage_driver: the inner dockerd's storage driver: ``overlay2`` (its ``/var/lib/docker`` is a volume on
        this machine's disk, so overlay works and layers are not copied) falls back to ``vfs`` by itself.
    :param api_key: the ``X-Engine-Key`` of every lab Engine (random when not given).
    """

    def __init__(
        self,
        name: str,
        workdir: str | os.PathLike[str] | None = None,
        *,
        client: docker.DockerClient | None = None,
        image: str = LAB_IMAGE,
        storage_driver: str = "overlay2",
        api_key: str | None = None,
    ):
        if not fleet_mod._NAME_RE.match(name) or len(name) > 30:
            raise LabError(f"lab name {name!r} must match {fleet_mod._NAME_RE.pattern} (at most 30 characters)")
        self.name = name
        self.client = client or fleet_mod.docker_client()
        self.image = image
        self.storage_driver = storage_driver
        self.api_key = api_key or secrets.token_urlsafe(24)
        self.hosts: list[LabHost] = []
        self._own_workdir = workdir is None
        if workdir is None:
            WORKDIR_ROOT.mkdir(parents=True, exist_ok=True)
            workdir = tempfile.mkdtemp(prefix=f"{name}-", dir=WORKDIR_ROOT)
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / MARKER).write_text(name + "\n", encoding="utf-8")
        # Ansible's SSH control sockets: short paths (a unix socket path has ~100 characters), one folder per lab.
        self.control_path_dir = Path(tempfile.mkdtemp(prefix=f"lab-cp-{name}-"))
        self.key_file = self.workdir / "lab_ed25519"
        self._ensure_key()

    def __repr__(self) -> str:
        return f"DockerLab(name={self.name!r}, hosts={[h.name for h in self.hosts]!r})"

    def __enter__(self) -> DockerLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def _ensure_key(self) -> None:
        if self.key_file.exists():
            return
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"engine-testkit-lab-{self.name}",
                "-f",
                str(self.key_file),
            ],
            check=True,
            capture_output=True,
        )
        os.chmod(self.key_file, 0o600)

    @property
    def public_key(self) -> str:
        return self.key_file.with_suffix(".pub").read_text(encoding="utf-8").strip()

    # ------------------------------------------------------------------ hosts

    def up(self, count: int = 2, *, compose_v2: bool | Sequence[bool] = True, timeout: float = 120) -> list[LabHost]:
        """Start ``count`` more lab hosts and wait until each runs dockerd (its API answers) and takes SSH logins.

        :param compose_v2: ``False`` (or one boolean per new host) gives hosts with Compose v1 only; with ``True``
            a host has the v2 plugin when the image has it (:attr:`LabHost.compose_version` says which it has).
        """
        try:
            self.client.images.get(self.image)
        except docker.errors.ImageNotFound as exc:
            raise LabError(f"image {self.image} not found: run `bash tests/harness/lab/build-image.sh`") from exc
        new: list[LabHost] = []
        v2 = [compose_v2] * count if isinstance(compose_v2, bool) else list(compose_v2)
        if len(v2) != count:
            raise LabError(f"compose_v2: one boolean per host ({count}), not {len(v2)}")
        for i in range(count):
            new.append(self._start_host(f"lab-{self.name}-h{len(self.hosts) + 1}", compose_v2=v2[i]))
            self.hosts.append(new[-1])
        for host in new:
            host.wait_ready(timeout)
            host.wait_docker_api(timeout)
            host.wait_ssh(timeout)
        return new

    def _start_host(self, name: str, compose_v2: bool = True) -> LabHost:
        labels = _labels(self.name, name)
        volume = f"{name}-docker"
        with contextlib.suppress(docker.errors.NotFound):
            self.client.containers.get(name)
            raise LabError(
                f"a container {name} exists already (left over?): python -m engine_testkit.dockerhosts sweep"
            )
        self.client.volumes.create(name=volume, labels=labels)
        container = self.client.containers.run(
            self.image,
            name=name,
            hostname=name,
            detach=True,
            labels=labels,
            environment={
                "LAB_AUTHORIZED_KEY": self.public_key,
                "LAB_STORAGE_DRIVER": self.storage_driver,
                "LAB_DOCKERD_TCP": "1",
                "LAB_CGROUP_PARENT": name,
                "LAB_COMPOSE_V2": "1" if compose_v2 else "0",
            },
            volumes={
                "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
                volume: {"bind": "/var/lib/docker", "mode": "rw"},
            },
            ports={f"{SSH_PORT}/tcp": ("127.0.0.1", None), f"{DOCKER_API_PORT}/tcp": ("127.0.0.1", None)},
            **HOST_RUN_FLAGS,
        )
        return LabHost(
            name=name,
            lab=self.name,
            ssh_port=_published(container, SSH_PORT),
            docker_port=_published(container, DOCKER_API_PORT),
            key_file=self.key_file,
            outer=self.client,
        )

    def host(self, name_or_index: str | int) -> LabHost:
        """A host by name (``lab-<lab>-h1`` or ``h1``) or by 1-based index."""
        for i, host in enumerate(self.hosts, 1):
            if name_or_index in (i, host.name, host.name.rsplit("-", 1)[-1]):
                return host
        raise LabError(f"lab {self.name} has no host {name_or_index!r}")

    def load_images(self, versions: Sequence[str] = (fleet_mod.BASELINE_VERSION,), repository: str = "engine") -> None:
        """Load ``<repository>:<version>`` images (saved once into build/lab) into every host, hosts in parallel."""
        tars = save_images(self.client, [f"{repository}:{v}" for v in versions])
        with ThreadPoolExecutor(max_workers=max(1, len(self.hosts))) as pool:
            list(pool.map(lambda h: h.load_images(tars), self.hosts))

    # ------------------------------------------------------------------ engines

    def add_engines(
        self,
        host: LabHost | str | int,
        count: int = 2,
        version: str = fleet_mod.BASELINE_VERSION,
        model: str = "mixed",
        *,
        wait: bool = True,
        timeout: float = 60,
        compose_tag_in: str = "file",
    ) -> list[LabEngine]:
        """Start Engines on a lab host (``mixed``: per-user container first, then a Compose project, alternating)."""
        host = host if isinstance(host, LabHost) else self.host(host)
        new = host.fleet(self.api_key).up(
            count, version, model=model, wait=wait, timeout=timeout, compose_tag_in=compose_tag_in
        )
        engines = [e for e in new if isinstance(e, LabEngine)]
        host.engines += engines
        return engines

    @property
    def engines(self) -> list[LabEngine]:
        return [e for h in self.hosts for e in h.engines]

    def engine(self, engine_id: str) -> LabEngine:
        for engine in self.engines:
            if engine.engine_id == engine_id:
                return engine
        raise LabError(f"lab {self.name} has no Engine {engine_id}")

    def wait_healthy(self, timeout: float = 60) -> None:
        for host in self.hosts:
            host.fleet(self.api_key).wait_healthy(host.engines, timeout)

    # ------------------------------------------------------------------ ansible

    def host_vars(self, engine: LabEngine) -> dict[str, Any]:
        """The inventory variables of one lab Engine: how to reach its Docker host over SSH, and where it is there."""
        host = engine.host
        assert host is not None
        hv: dict[str, Any] = {
            "ansible_host": "127.0.0.1",
            "ansible_port": host.ssh_port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key_file),
            "ansible_ssh_common_args": SSH_COMMON_ARGS,
            "ansible_control_path_dir": str(self.control_path_dir),
            "ansible_python_interpreter": "/usr/bin/python3",
            "engine_docker_host": host.name,
            "engine_id": engine.engine_id,
            "engine_deployment": engine.model,
            "engine_url": engine.url,
            "engine_api_key": engine.api_key,
            "engine_image": engine.image,
            "engine_volume": engine.volume,
        }
        if engine.model == "compose":
            hv["engine_compose_dir"] = str(engine.compose_dir)
            hv["engine_compose_service"] = COMPOSE_SERVICE
        else:
            hv["engine_container_name"] = engine.container_name
        return hv

    def inventory(self, local: Sequence[Fleet] = (), local_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        """An inventory with one host per Engine: the lab's (over SSH) and, when given, local fleets' Engines
        (``ansible_connection: local``, plus ``local_vars``, e.g. an ``engine_state_dir`` of the test's own).

        Groups: ``engines`` (all), ``engines_container`` / ``engines_compose`` (hosting model), ``engines_lab`` /
        ``engines_local``, and ``docker_host_<host>`` per Docker host (``-`` as ``_``; ``docker_host_localhost``).
        """
        hosts: dict[str, dict[str, Any]] = {}
        groups: dict[str, dict[str, Any]] = {}

        def member(group: str, host: str) -> None:
            groups.setdefault(group, {"hosts": {}})["hosts"][host] = {}

        for engine in self.engines:
            hosts[engine.engine_id] = self.host_vars(engine)
            member(f"engines_{engine.model}", engine.engine_id)
            member("engines_lab", engine.engine_id)
            member(f"docker_host_{engine.docker_host.replace('-', '_')}", engine.engine_id)
        for fleet in local:
            for engine_id, hv in fleet.inventory()["all"]["children"]["engines"]["hosts"].items():
                hosts[engine_id] = {**hv, "engine_docker_host": "localhost", **(local_vars or {})}
                member(f"engines_{hv['engine_deployment']}", engine_id)
                member("engines_local", engine_id)
                member("docker_host_localhost", engine_id)
        return {"all": {"children": {"engines": {"hosts": hosts}, **dict(sorted(groups.items()))}}}

    def write_inventory(
        self,
        path: str | os.PathLike[str] | None = None,
        local: Sequence[Fleet] = (),
        local_vars: dict[str, Any] | None = None,
    ) -> Path:
        """Write :meth:`inventory` as YAML, mode 0600 (it holds the key); ``<workdir>/inventory.yml`` by default."""
        path = Path(path) if path is not None else self.workdir / "inventory.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "# Written by engine_testkit.dockerhosts; holds the Engines' API key.\n" + yaml.safe_dump(
            self.inventory(local, local_vars), sort_keys=False, default_flow_style=False
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(path, 0o600)
        return path

    # ------------------------------------------------------------------ tear down

    def down(self) -> dict[str, list[str]]:
        """Remove every lab host (paused, stopped or running), its volume, cgroups and the lab's folders."""
        for host in self.hosts:
            with contextlib.suppress(Exception):
                if host._client is not None:
                    host._client.close()
        self.hosts.clear()
        removed = sweep(self.name, self.client)
        shutil.rmtree(self.control_path_dir, ignore_errors=True)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return removed


# ---------------------------------------------------------------------------------------------- sweeping


def lab_names(client: docker.DockerClient | None = None) -> list[str]:
    """Names of the labs with a container or volume on this machine's Docker engine."""
    client = client or fleet_mod.docker_client()
    names = {
        (c.labels or {}).get(LABEL_LAB, "") for c in client.containers.list(all=True, filters={"label": LABEL_LAB})
    }
    names |= {
        (v.attrs.get("Labels") or {}).get(LABEL_LAB, "") for v in client.volumes.list(filters={"label": LABEL_LAB})
    }
    names.discard("")
    return sorted(names)


def _remove_cgroups(host: str) -> list[str]:
    """Empty cgroup folders a lab host's dockerd left (its Engines' ``--cgroup-parent`` is the host's name)."""
    removed: list[str] = []
    root = Path("/sys/fs/cgroup")
    if not root.is_dir():
        return removed
    for parent in [*root.glob(f"*/{host}"), *root.glob(host)]:
        if not parent.is_dir() or parent.is_symlink():
            continue
        for sub in sorted((p for p in parent.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            parent.rmdir()
            removed.append(str(parent))
    return removed


def sweep(name: str | None = None, client: docker.DockerClient | None = None) -> dict[str, list[str]]:
    """Remove what lab ``name`` (every lab when ``None``) left: containers, volumes, cgroups, work folders.

    Only what carries the label ``io.september.lab`` (and, for folders, the lab's marker) is touched.
    """
    client = client or fleet_mod.docker_client()
    flt = {"label": f"{LABEL_LAB}={name}" if name else LABEL_LAB}
    removed: dict[str, list[str]] = {"containers": [], "volumes": [], "cgroups": [], "dirs": []}
    for container in client.containers.list(all=True, filters=flt, ignore_removed=True):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            if container.status == "paused":
                container.unpause()
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)
            removed["containers"].append(container.name)
        removed["cgroups"] += _remove_cgroups(container.name)
    for volume in client.volumes.list(filters=flt):
        with contextlib.suppress(docker.errors.NotFound):
            volume.remove(force=True)
            removed["volumes"].append(volume.name)
    if WORKDIR_ROOT.is_dir():
        for folder in WORKDIR_ROOT.iterdir():
            with contextlib.suppress(OSError):
                owner = (folder / MARKER).read_text(encoding="utf-8").strip()
                if folder.is_dir() and not folder.is_symlink() and (name is None or owner == name):
                    shutil.rmtree(folder, ignore_errors=True)
                    removed["dirs"].append(str(folder))
    for folder in Path(tempfile.gettempdir()).glob(f"lab-cp-{name}-*" if name else "lab-cp-*"):
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)
            removed["dirs"].append(str(folder))
    return removed


def leftovers(name: str, client: docker.DockerClient | None = None) -> dict[str, list[str]]:
    """What of lab ``name`` is still there, by label and by name (all empty: clean)."""
    client = client or fleet_mod.docker_client()
    flt = {"label": f"{LABEL_LAB}={name}"}
    prefix = f"lab-{name}-"
    return {
        "containers": sorted(
            {c.name for c in client.containers.list(all=True, filters=flt)}
            | {c.name for c in client.containers.list(all=True, filters={"name": prefix}) if c.name.startswith(prefix)}
        ),
        "volumes": sorted(
            v.name
            for v in client.volumes.list()
            if v.name.startswith(prefix) or (v.attrs.get("Labels") or {}).get(LABEL_LAB) == name
        ),
        "cgroups": sorted(str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{prefix}h*")),
    }


# ---------------------------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine_testkit.dockerhosts", description="A lab of real Docker hosts reached over SSH."
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the lab host image (kept when its recipe is unchanged)")
    b.add_argument("--force", action="store_true")
    u = sub.add_parser("up", help="a lab with hosts and Engines; prints the inventory path")
    u.add_argument("--name", default="dev")
    u.add_argument("--hosts", type=int, default=2)
    u.add_argument("--engines", type=int, default=2, help="Engines per host (mixed hosting models)")
    u.add_argument("--version", default=fleet_mod.BASELINE_VERSION)
    u.add_argument("--workdir", type=Path, default=None)
    d = sub.add_parser("down", help="remove a lab (same as sweep --name)")
    d.add_argument("--name", required=True)
    s = sub.add_parser("sweep", help="remove every lab's leftovers (--name for one)")
    s.add_argument("--name", default=None)
    lo = sub.add_parser("leftovers", help="what of a lab is still there")
    lo.add_argument("--name", required=True)
    args = parser.parse_args(argv)
    if args.cmd == "build":
        print(build_image(force=args.force))
    elif args.cmd == "up":
        build_image()
        lab = DockerLab(args.name, args.workdir or WORKDIR_ROOT / args.name)
        started = time.monotonic()
        lab.up(args.hosts)
        lab.load_images([args.version])
        for host in lab.hosts:
            lab.add_engines(host, args.engines, args.version)
        for engine in lab.engines:
            print(f"{engine.engine_id}  {engine.model:9}  {engine.docker_host}  {engine.url}")
        print(
            f"lab {lab.name}: {len(lab.hosts)} hosts, {len(lab.engines)} engines in {time.monotonic() - started:.0f}s"
        )
        print(f"inventory: {lab.write_inventory()}")
    elif args.cmd in ("down", "sweep"):
        print(json.dumps(sweep(args.name), indent=2))
    else:
        print(json.dumps(leftovers(args.name), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
