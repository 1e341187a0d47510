# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers of the lab rollout tests (test_lab_rollouts.py, test_installed_collection.py): what a run did, read on the
side where it must be.

- :class:`Relay`: users' traffic to the Engines of a lab host. A lab Engine publishes on its host's loopback only
  (``127.0.0.1:9001``), where the modules reach it; the load generator runs on the controller and targets
  ``http://127.0.0.1:<port>``. The relay is two plain TCP forwarders: one inside the lab host (its Docker bridge
  address, port ``10000 + <Engine port>`` -> the host's ``127.0.0.1:<Engine port>``), one in the test process
  (``127.0.0.1:<free port>`` -> the first). Bytes are passed as they come (SSE turns stream through), a connection to
  an Engine that is down (mid-switch) is closed at once. The collection knows nothing of it: its inventory keeps the
  Engines' own URLs on their hosts.
- :func:`brain_on_host`: completed task ids, feedback ids and applied migrations of a lab Engine's brain, read on its
  host (read-only SQLite through the host's ``python3``; the live WAL is read consistently, nothing is copied).
- :func:`writes_missing`: acknowledged writes of the load generator absent from an Engine's brain (lab or local).
- :func:`write_inventory`: the lab's inventory (lab Engines over SSH, local Engines) with the group ``engine_canary``.
- :func:`versions`, :func:`containers`: what each Engine runs, read from its own Docker daemon.
- :func:`state_files`, :func:`files_holding`, :func:`reports_on_host`: what a run left on a lab host.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine_testkit import brain, dockerhosts
from engine_testkit.dockerhosts import LabEngine, LabError, LabHost
from engine_testkit.fleet import Engine
from engine_testkit.waits import wait_until

#: Where the collection keeps snapshots and locks on a Docker host (engine_state_dir's default).
STATE_DIR = "/var/lib/september-engine"
#: The inner relay listens on 10000 + the Engine's port of its host.
RELAY_OFFSET = 10000


# ---------------------------------------------------------------------------------------------- the relay

#: The forwarder, stdlib only: run as a script inside the lab host (its python3), and loaded in the test process.
RELAY_CODE = r"""
import socket, threading


def pump(src, dst, done):
    # Copy src to dst until EOF, then half-close dst; on an error drop both; the second pump to end closes both.
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    except OSError:
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    finally:
        with done[1]:
            done[0] += 1
            last = done[0] == 2
        if last:
            src.close()
            dst.close()


def serve(server, target):
    # Accept on server, pump each connection to target (closed at once when target refuses: an Engine mid-switch).
    while True:
        try:
            client, _addr = server.accept()
        except OSError:
            return
        try:
            upstream = socket.create_connection(target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            continue
        done = [0, threading.Lock()]
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pump, args=(a, b, done), daemon=True).start()


def listener(host, port):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, port))
    server.listen(64)
    return server


if __name__ == "__main__":
    import os, sys
    threads = []
    for spec in sys.argv[2:]:
        listen, target = spec.split("=")
        server = listener("0.0.0.0", int(listen))
        threads.append(threading.Thread(target=serve, args=(server, ("127.0.0.1", int(target)))))
    with open(sys.argv[1], "w") as handle:
        handle.write(str(os.getpid()))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
"""
_relay: dict[str, Any] = {"__name__": "september_test_relay"}
# Our own constant (also shipped to the lab host), loaded here for the controller's side of the relay.
exec(compile(RELAY_CODE, "<relay>", "exec"), _relay)


@dataclass(frozen=True)
class Target:
    """What the load generator needs of an Engine: its id, a ``http://127.0.0.1`` URL, its key."""

    engine_id: str
    url: str
    api_key: str = field(repr=False)


class Relay:
    """``with Relay(host) as relay: relay.targets``: the host's Engines reachable from the controller's loopback."""

    def __init__(self, host: LabHost):
        self.host = host
        self.pid_file = f"/run/september-test-relay-{os.getpid()}-{id(self)}.pid"
        self.servers: list[socket.socket] = []
        self.targets: list[Target] = []

    def __enter__(self) -> Relay:
        specs = [f"{RELAY_OFFSET + e.port}={e.port}" for e in self.host.engines]
        self.host.container.exec_run(["python3", "-c", RELAY_CODE, self.pid_file, *specs], detach=True)
        address = self.address()
        for engine in self.host.engines:
            server = _relay["listener"]("127.0.0.1", 0)
            self.servers.append(server)
            thread = threading.Thread(
                target=_relay["serve"],
                args=(server, (address, RELAY_OFFSET + engine.port)),
                daemon=True,
                name=f"relay-{engine.engine_id}",
            )
            thread.start()
            self.targets.append(Target(engine.engine_id, f"http://127.0.0.1:{server.getsockname()[1]}", engine.api_key))
        self.wait_ready()
        return self

    def address(self) -> str:
        """The lab host's address on this machine's Docker bridge."""
        container = self.host.container
        container.reload()
        settings = container.attrs["NetworkSettings"]
        address = settings.get("IPAddress") or next(
            (n["IPAddress"] for n in (settings.get("Networks") or {}).values() if n.get("IPAddress")), ""
        )
        assert address, f"{self.host.name} has no address on a Docker network of this machine"
        return address

    def wait_ready(self, timeout: float = 20) -> None:
        """Until every Engine answers /health through the relay."""
        import requests

        pending = list(self.targets)

        def answered() -> bool:
            while pending:
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"{pending[0].url}/health", timeout=3).status_code == 200:
                        pending.pop(0)
                        continue
                return False
            return True

        wait_until(answered, timeout, f"{self.host.name}: an answer through the relay from every Engine",
                   last=lambda: pending[:1])

    def __exit__(self, *exc: object) -> None:
        for server in self.servers:
            with contextlib.suppress(OSError):
                server.close()
        pid = sh(self.host, ["cat", self.pid_file])[1].strip()
        if pid.isdigit():
            self.host.exec(["kill", pid])
        self.host.exec(["rm", "-f", self.pid_file])


# ---------------------------------------------------------------------------------------------- commands on a host


def sh(host: LabHost, argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """(exit status, stdout) of ``argv``, a command that only reads, on the lab host (LabHost.query: an answer whose
    output was lost is asked again, never taken for an empty one)."""
    res = host.query(argv, env=env)
    return res.rc, res.stdout


def listdir(host: LabHost, path: str) -> list[str]:
    """Names in a folder of the lab host (empty when it does not exist)."""
    return host.listdir(path)


def exists(host: LabHost, path: str) -> bool:
    return host.exists(path)


def wait_healthy(engines: Sequence[LabEngine], timeout: float = 30) -> None:
    """Until each lab Engine answers /health 200 ok, probed from its own host."""
    for engine in engines:
        assert engine.host is not None
        rc, out = sh(engine.host, ["python3", "-c", dockerhosts._HEALTH_SCRIPT, str(timeout), engine.url])
        assert rc == 0, f"{engine.engine_id}: cannot probe its health on {engine.host.name}"
        seen = json.loads(out)
        assert not seen["pending"], f"{engine.engine_id} not healthy after {timeout:g}s: {seen['last']}"


def find(host: LabHost, path: str, *args: str) -> list[str]:
    """``find PATH ARGS...`` on the lab host (empty when PATH does not exist)."""
    return host.find(path, *args)


# ---------------------------------------------------------------------------------------------- brains

_BRAIN_SCRIPT = r"""
import json, sqlite3, sys
conn = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True, timeout=10)
def ids(table, preferred):
    cols = [r[1] for r in conn.execute('PRAGMA table_info("%s")' % table)]
    if not cols:
        return []
    col = preferred if preferred in cols else "id"
    where = " WHERE status = 'completed'" if table == "tasks" else ""
    return [str(r[0]) for r in conn.execute('SELECT "%s" FROM "%s"%s' % (col, table, where))]
out = {"tasks": ids("tasks", "task_id"), "signals": ids("learning_signals", "signal_id"),
       "migrations": sorted(str(r[0]) for r in conn.execute("SELECT version FROM engine_schema_migrations"))}
print(json.dumps(out))
"""


def brain_on_host(engine: LabEngine) -> dict[str, Any]:
    """``{"tasks": set, "signals": set, "migrations": [..]}`` of a lab Engine's brain, read on its own host."""
    assert engine.host is not None
    rc, out = sh(engine.host, ["python3", "-c", _BRAIN_SCRIPT, str(engine.brain_path())])
    assert rc == 0, f"{engine.engine_id}: cannot read its brain on {engine.host.name}"
    data = json.loads(out)
    return {"tasks": set(data["tasks"]), "signals": set(data["signals"]), "migrations": data["migrations"]}


def brain_of(engine: Engine) -> dict[str, Any]:
    """The same, for a lab Engine (on its host) or a local one (on this machine)."""
    if isinstance(engine, LabEngine):
        return brain_on_host(engine)
    path = engine.brain_path()
    return {
        "tasks": brain.task_ids(path),
        "signals": brain.signal_ids(path),
        "migrations": brain.applied_migrations(path),
    }


def writes_missing(lg: Any, engine: Engine) -> dict[str, set[str]]:
    """The load's acknowledged turns and feedback of ``engine`` that its brain lacks (empty sets: none lost)."""
    found = brain_of(engine)
    return {
        "tasks": lg.acked_task_ids(engine.engine_id) - found["tasks"],
        "signals": lg.acked_signal_ids(engine.engine_id) - found["signals"],
    }


# ---------------------------------------------------------------------------------------------- inventory and state


def write_inventory(std: Any, path: Path, canaries: Sequence[str] = ()) -> Path:
    """The standard lab's inventory (2 lab hosts over SSH + the local Engine) with ``canaries`` in ``engine_canary``."""
    inventory = std.lab.inventory(local=[std.local], local_vars={"engine_state_dir": str(std.local_state)})
    if canaries:
        inventory["all"]["children"]["engine_canary"] = {"hosts": {c: {} for c in canaries}}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(inventory, handle, sort_keys=False)
    return path


def all_engines(std: Any) -> list[Engine]:
    return [*std.lab.engines, *std.local.engines]


def versions(std: Any) -> dict[str, str | None]:
    """Every Engine's running version, read from its own Docker daemon."""
    return {e.engine_id: e.image_version() for e in all_engines(std)}


def containers(std: Any) -> dict[str, tuple[str, str, str]]:
    """Every Engine's container: (id, StartedAt, image)."""
    out = {}
    for engine in all_engines(std):
        container = engine.container()
        container.reload()
        attrs = container.attrs
        out[engine.engine_id] = (container.id, attrs["State"]["StartedAt"], attrs["Config"]["Image"])
    return out


def state_files(host: LabHost) -> list[str]:
    """Every file under the host's state folder (snapshots, locks)."""
    return find(host, STATE_DIR, "-type", "f")


def held_locks(host: LabHost) -> list[str]:
    """Lock files on the host that a run still holds (a released lock keeps no run id)."""
    held = []
    for name in listdir(host, f"{STATE_DIR}/locks"):
        text = host.read_file(f"{STATE_DIR}/locks/{name}").decode() or "{}"
        if json.loads(text).get("run_id"):
            held.append(name)
    return held


class LockWatcher:
    """``with LockWatcher(hosts, dirs) as seen:`` the lock files (``*.lock``; not their atomic writes' temporary files)
    that appear while a run holds them (a released lock file goes): ``seen.on_host[<host name>]`` and
    ``seen.on_controller`` (in ``dirs`` of this machine), polled."""

    def __init__(self, hosts: Sequence[LabHost], controller_dirs: Sequence[Path], interval: float = 0.3):
        self.hosts, self.dirs, self.interval = list(hosts), list(controller_dirs), interval
        self.on_host: dict[str, set[str]] = {h.name: set() for h in self.hosts}
        self.on_controller: set[str] = set()
        #: Polls of a host that got no answer.
        self.missed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="lock-watcher")
        self.error: Exception | None = None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for host in self.hosts:
                    try:
                        names = listdir(host, f"{STATE_DIR}/locks")
                    except LabError:  # no answer this round (LabHost.query gave up): the next one looks again
                        self.missed += 1
                        continue
                    self.on_host[host.name].update(n for n in names if n.endswith(".lock"))
                for folder in self.dirs:
                    if folder.is_dir():
                        self.on_controller.update(p.name for p in folder.glob("*.lock"))
                self._stop.wait(self.interval)
        except Exception as exc:  # kept for the test to report
            self.error = exc

    def __enter__(self) -> LockWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def manifests(host: LabHost, engine_id: str) -> dict[str, dict[str, Any]]:
    """The snapshot manifests of one Engine on its host, by snapshot name."""
    folder = f"{STATE_DIR}/snapshots/{engine_id}"
    return {
        name[:-5]: json.loads(host.read_file(f"{folder}/{name}"))
        for name in listdir(host, folder)
        if name.endswith(".json")
    }


def files_holding(host: LabHost, needle: str, paths: Sequence[str]) -> list[str]:
    """Files under ``paths`` on the host that contain ``needle`` (``grep -rlF``; absent paths ignored)."""
    present = [p for p in paths if exists(host, p)]
    if not present:
        return []
    rc, out = sh(host, ["grep", "-rlF", needle, *present])
    assert rc in (0, 1), f"{host.name}: grep failed ({rc})"
    return [line for line in out.splitlines() if line]


def reports_on_host(host: LabHost, run_id: str) -> list[str]:
    """A report written on the wrong side: anything on the host's own filesystem called upgrade/rollback.{json,md} or
    september-engine-reports, or named after the run id outside the state folder (where snapshot names carry it).
    The Docker layers and /proc are not looked at."""
    prune = "\\( -path /proc -o -path /sys -o -path /var/lib/docker \\) -prune"
    names = (
        "\\( -name upgrade.json -o -name upgrade.md -o -name rollback.json -o -name rollback.md "
        "-o -name september-engine-reports \\)"
    )
    _rc, out = sh(
        host,
        [
            "sh",
            "-c",
            f"find / -xdev {prune} -o {names} -print; "
            f"find / -xdev \\( -path /proc -o -path /sys -o -path /var/lib/docker -o -path {STATE_DIR} \\) -prune "
            f"-o -name '*{run_id}*' -print",
        ],
    )
    return sorted({line for line in out.splitlines() if line})


def newest_report(report_dir: Path, kind: str = "upgrade") -> tuple[Path, dict[str, Any]]:
    """The newest ``<report_dir>/<run id>/<kind>.json`` on the controller."""
    paths = sorted(report_dir.glob(f"*/{kind}.json"), key=lambda p: p.stat().st_mtime)
    assert paths, f"no {kind} report under {report_dir}"
    return paths[-1], json.loads(paths[-1].read_text())


@contextlib.contextmanager
def timed(label: str, timings: dict[str, float]) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        timings[label] = round(time.monotonic() - started, 1)
        print(f"--- {label}: {timings[label]}s")
