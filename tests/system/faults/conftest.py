# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fault matrix's harness (docs/faults.md): small fleets, real ansible-playbook runs, faults injected mid-run.

Each test gets a :class:`Faults`: a :class:`Rollout` of ``tests/system/rollout/conftest.py`` (its fleet, state and
report folders, snapshot and brain helpers, ``assert_writes_kept*``) with

- the fault suite's settings (:data:`FAULT_VARS`: the rollout suite's fast settings, and the canary's longest bake
  as short as its bake, so that an undecided canary costs seconds, not minutes);
- :meth:`Faults.start`: a playbook run whose output is read line by line while it runs (:class:`LiveRun`), so that a
  test can wait for a task to begin, then inject its fault (pause a host, kill a container, fill a disk, flip bytes)
  or ``SIGKILL`` the run's whole process group, as AWX does when it cancels a job;
- :meth:`Faults.settled`: what the collection promises after every fault: every Engine's container running on a
  known version (the one the test expects), healthy; no lock left in the state folder; no temporary file left next
  to a brain or in a snapshot folder.

Fleets are named ``flt-<8 hex>`` and take host ports from 9400 up; everything is torn down after the test.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from engine_testkit import sweep
from engine_testkit.ansible import CALLBACK_PLUGINS, PlaybookRun, ansible_env, ensure_collection_link
from engine_testkit.fleet import CONTAINER_PORT, Engine, Fleet, _labels, unique_name
from engine_testkit.loadgen import LoadGenerator
from engine_testkit.pathimport import import_path
from engine_testkit.proctree import kill_tree
from engine_testkit.settings import FAST_VARS
from engine_testkit.waits import WaitTimeout, wait_until

HERE = Path(__file__).resolve().parent
ROLLOUT_CONFTEST = HERE.parent / "rollout" / "conftest.py"


#: tests/system/rollout/conftest.py as a module of its own (its Rollout class and settings; not its fixtures).
_harness: Any = import_path("september_faults_rollout_harness", ROLLOUT_CONFTEST)
Rollout = _harness.Rollout
PLAYBOOKS = _harness.PLAYBOOKS
iso_ts = _harness.iso_ts
BASELINE = _harness.BASELINE
BASE_PORT = 9400
#: The fault suite's settings: test-sized drains, health waits and bakes (a canary bakes 4 s, at most 8 s), and
#: measures that decide on 5 turns (the load of :meth:`Faults.load` gives an Engine about 2 turns a second), so that
#: a run under load is judged on evidence, as in production, in seconds.
FAULT_VARS: dict[str, Any] = {
    **FAST_VARS,
    # An undecided canary costs seconds: its longest bake is twice its bake.
    "engine_upgrade_canary_bake_seconds": 4,
    "engine_upgrade_canary_max_bake_seconds": 8,
    # A broken release's health gate fails sooner.
    "engine_upgrade_health_timeout": 20,
    "engine_upgrade_metrics_min_turns": 5,
}
#: A release that never becomes healthy is given up on sooner than a good one is waited for.
BROKEN_HEALTH_TIMEOUT = 8
ANSIBLE_ENV = {"ANSIBLE_PIPELINING": "True", "PYTHONUNBUFFERED": "1"}


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60, interval: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something true (:func:`engine_testkit.waits.wait_until`); that value, or a
    test failure (no traceback) that says what never happened."""
    try:
        return wait_until(condition, timeout, what, interval=interval)
    except WaitTimeout as exc:
        pytest.fail(str(exc), pytrace=False)


@dataclass
class BindEngine(Engine):
    """A per-user container Engine whose ``/data`` is a bind mount of a host folder (no Docker volume)."""

    data_dir: Path | None = None

    def volume_mountpoint(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir


class LiveRun:
    """One ``ansible-playbook`` in its own process group, its output read line by line while it runs.

    ``wait_for_line(regex)`` blocks until a line matches (a task banner: the task has begun); ``kill()`` sends
    SIGKILL to the whole process group (the controller, its forks, the modules they run locally); ``wait()`` returns
    the :class:`PlaybookRun` (``data`` is None when the run was killed: the results file is written at its end).
    """

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, results: Path, vars_file: Path):
        self.log, self.results, self.vars_file = log, results, vars_file
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self._log = open(log, "w", encoding="utf-8")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            start_new_session=True,
        )
        self.killed_at: float | None = None
        self._reader = threading.Thread(target=self._read, daemon=True, name=f"run-{log.stem}")
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                self._log.write(f"{time.monotonic() - self.started:7.1f} {line}")
                self._log.flush()
                with self._seen:
                    self.lines.append(line.rstrip("\n"))
                    self._seen.notify_all()
        finally:
            self._log.close()
            with self._seen:
                self._seen.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 180) -> str:
        """The first line matching ``pattern``; fails the test if the run ends or ``timeout`` passes first."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        checked = 0
        with self._seen:
            while True:
                for line in self.lines[checked:]:
                    if rx.search(line):
                        return line
                checked = len(self.lines)
                if not self._reader.is_alive():
                    pytest.fail(f"the run ended (rc={self.proc.poll()}) before a line matched {pattern!r}:\n"
                                f"{self.output[-4000:]}", pytrace=False)
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no line matched {pattern!r} within {timeout:g}s:\n{self.output[-4000:]}",
                                pytrace=False)
                self._seen.wait(min(left, 1.0))

    def kill(self) -> None:
        """SIGKILL the run and every process under it at once, as when AWX cancels a job by removing its container
        (or the controller dies): :func:`engine_testkit.proctree.kill_tree` (the run's process group alone is not
        enough: ansible-core's workers call setsid()).
        """
        self.killed_at = time.monotonic()
        kill_tree(self.proc.pid)
        self.proc.wait(30)
        self._reader.join(10)

    def wait(self, timeout: float = 600) -> PlaybookRun:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the run did not end within {timeout:g}s:\n{self.output[-4000:]}", pytrace=False)
        self._reader.join(10)
        text = self.results.read_text(encoding="utf-8") if self.results.exists() else ""
        with contextlib.suppress(FileNotFoundError):
            self.vars_file.unlink()
        return PlaybookRun(rc=self.proc.returncode, stdout=self.output, stderr="",
                           data=json.loads(text) if text.strip() else None)


class Faults(Rollout):
    """A :class:`Rollout` for faults: small fleets, live runs, and the checks of what the collection promises."""

    def __init__(self, client: docker.DockerClient, tmp: Path):
        super().__init__(client, tmp)
        self.fleet = Fleet(name=unique_name("flt"), base_port=BASE_PORT, client=client, workdir=tmp / "compose")
        self.live: list[LiveRun] = []
        self._numbers = itertools.count(1)
        self._numbers_lock = threading.Lock()
        self.extra_containers: list[str] = []
        self.expected_state: dict[str, Any] = {}
        self.mounts: list[Path] = []
        #: Engines whose snapshots go elsewhere than <state>/snapshots/<engine> (engine_snapshot_dir).
        self.snapshot_dirs: dict[str, Path] = {}

    # ------------------------------------------------------------------ fleet

    def up_engines(self, count: int = 1, model: str = "container", version: str = BASELINE,
                   host_vars: dict[str, dict[str, Any]] | None = None) -> list[Engine]:
        """``count`` more Engines (``container``, ``compose`` or ``mixed``), healthy, and the inventory of all."""
        self.fleet.up(count, version, model=model, wait=True, timeout=90)
        self.write_inventory(host_vars)
        return self.engines

    def up_bind_engine(self, data_dir: Path, version: str = BASELINE) -> BindEngine:
        """One more per-user container Engine, its brain in ``data_dir`` on this host (a bind mount), healthy."""
        data_dir.mkdir(parents=True, exist_ok=True)
        fleet = self.fleet
        (engine_id,) = fleet._next_ids(["container"])
        fleet._ensure_network()
        port = fleet._allocate_port(set())
        fleet.client.containers.run(
            fleet.image_ref(version), name=engine_id, detach=True, environment={"ENGINE_API_KEY": fleet.api_key},
            volumes={str(data_dir): {"bind": "/data", "mode": "rw"}},
            ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", port)}, restart_policy={"Name": "unless-stopped"},
            network=fleet.network, labels=_labels(fleet.name, engine_id, "container"))
        engine = BindEngine(engine_id=engine_id, model="container", container_name=engine_id,
                            volume=f"{engine_id}-bind", port=port, url=f"http://127.0.0.1:{port}",
                            api_key=fleet.api_key, image=fleet.image_ref(version), fleet=fleet.name,
                            client=fleet.client, data_dir=data_dir)
        fleet.engines.append(engine)
        fleet.wait_healthy([engine], timeout=90)
        self.write_inventory()
        return engine

    def tmpfs(self, path: Path, size: str) -> Path:
        """A tmpfs of ``size`` (``64m``) mounted at ``path`` (a small disk to fill), unmounted after the test."""
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True,
                       capture_output=True, text=True)
        self.mounts.append(path)
        return path

    @staticmethod
    def fill(path: Path, leave: int = 0) -> Path:
        """Fill the file system of ``path`` until at most ``leave`` bytes are free (a file ``.filler`` there)."""
        filler = path / ".filler"
        chunk = b"\0" * 65536
        with open(filler, "ab") as handle:
            while True:
                st = os.statvfs(path)
                free = st.f_bavail * st.f_frsize
                if free <= leave:
                    break
                try:
                    handle.write(chunk[: max(4096, min(len(chunk), free - leave))])
                    handle.flush()
                except OSError:
                    break
        return filler

    @staticmethod
    def pad_brain(engine: Engine, megabytes: int) -> int:
        """Grow the live Engine's brain by ``megabytes`` MiB of random rows in a table of its own (a brain with a
        long history), checkpointed into the file; returns the brain's size. The Engine keeps serving meanwhile."""
        conn = sqlite3.connect(engine.brain_path(), timeout=30, isolation_level=None)
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS faults_padding (id INTEGER PRIMARY KEY, body BLOB)")
            for _chunk in range(megabytes // 8):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT INTO faults_padding (body) VALUES (randomblob(1048576))", [()] * 8)
                conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
        return engine.brain_path().stat().st_size

    def close(self) -> None:
        for run in self.live:
            if run.proc.poll() is None:
                run.kill()
        for name in self.extra_containers:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.containers.get(name).remove(force=True)
        try:
            super().close()
        finally:
            for path in reversed(self.mounts):
                subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)

    # ------------------------------------------------------------------ runs

    def _number(self) -> int:
        with self._numbers_lock:
            return next(self._numbers)

    def _argv(self, playbook: str, extra: dict[str, Any], limit: list[str] | None, number: int,
              inventory: Path | None = None) -> tuple[list[str], Path, Path]:
        ensure_collection_link()
        fd, vars_file = tempfile.mkstemp(suffix=".json", dir=self.tmp)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({**FAULT_VARS, "engine_state_dir": str(self.state_dir),
                       "engine_report_dir": str(self.report_dir), **extra}, handle)
        results = self.tmp / f"run{number:02d}.results.json"
        argv = [str(Path(sys.executable).with_name("ansible-playbook")), str(PLAYBOOKS / playbook),
                "-i", str(inventory or self.inventory_path), "-f", "20", "-e", f"@{vars_file}"]
        if limit:
            argv += ["--limit", ",".join(limit)]
        return argv, Path(vars_file), results

    def start(self, playbook: str, *, label: str = "", limit: list[str] | None = None, inventory: Path | None = None,
              env: dict[str, str] | None = None, **extra: Any) -> LiveRun:
        """Start ``playbooks/<playbook>`` with the fault settings plus ``extra`` (``env``: more environment, e.g.
        ``DOCKER_HOST`` of a relay that fails chosen Docker API calls); returns at once."""
        number = self._number()
        argv, vars_file, results = self._argv(playbook, extra, limit, number, inventory)
        env = ansible_env({"ANSIBLE_STDOUT_CALLBACK": "test_results", "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_PLUGINS),
                           "SEPTEMBER_TEST_RESULTS": str(results), **ANSIBLE_ENV, **(env or {})})
        log = self.tmp / f"run{number:02d}-{re.sub(r'[^a-z0-9]+', '-', (label or playbook).lower())}.out"
        run = LiveRun(argv, env, log, results, vars_file)
        self.live.append(run)
        print(f"--- started {label or playbook}: {log}")
        return run

    def run(self, playbook: str, *, label: str = "", limit: list[str] | None = None, check: bool = False,
            **extra: Any) -> PlaybookRun:
        """``playbooks/<playbook>`` to its end (see :meth:`start`)."""
        assert not check, "the fault suite runs no --check"
        live = self.start(playbook, label=label, limit=limit, **extra)
        result = live.wait()
        seconds = time.monotonic() - live.started
        self.runs.append((label or playbook, seconds, result))
        print(f"--- {label or playbook}: rc={result.rc} {seconds:.1f}s {live.log}")
        print(result.stdout[-2500:])
        return result

    # ------------------------------------------------------------------ what the runs left

    def snapshot_dir(self, engine_id: str) -> Path:
        return self.snapshot_dirs.get(engine_id) or super().snapshot_dir(engine_id)

    def snapshot_files(self) -> list[Path]:
        files = set(super().snapshot_files())
        for folder in set(self.snapshot_dirs.values()):
            files |= {p for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else set()
        return sorted(files)

    def lock_files(self) -> list[Path]:
        """Lock files that name a holder (a released lock leaves none, or an empty one)."""
        folder = self.state_dir / "locks"
        held = []
        for path in sorted(folder.glob("*.lock")) if folder.is_dir() else []:
            with contextlib.suppress(OSError, ValueError):
                if json.loads(path.read_text() or "{}").get("run_id"):
                    held.append(path)
        return held

    def wait_locks_expired(self, timeout: float = 120) -> None:
        """Wait until every lock a killed run left has expired (its holder's TTL), as a re-run must."""
        def expired() -> bool:
            for path in self.lock_files():
                expires = json.loads(path.read_text())["expires_at"]
                if datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp() > time.time():
                    return False
            return True
        wait_for(expired, "the killed run's locks to expire", timeout, interval=0.5)

    def temp_files(self) -> list[Path]:
        """Hidden temporary files next to a brain or in a snapshot folder (a half-made snapshot or restore)."""
        found = [p for p in self.snapshot_files() if p.name.startswith(".") and p.name != ".lock"]
        for engine in self.engines:
            with contextlib.suppress(Exception):
                found += [p for p in engine.brain_path().parent.iterdir() if p.name.startswith(".")]
        return found

    def containers_of(self, engine: Engine) -> dict[str, str]:
        """Every container named after the Engine (its own, a kept ``--previous``, a ``--failed`` one): status."""
        base = engine.container().name
        return {c.name: c.status for c in self.client.containers.list(all=True, filters={"name": base})
                if c.name == base or c.name.startswith(base + "--")}

    def settled(self, versions: dict[str, str], *, healthy: bool = True, timeout: float = 60,
                kept_previous: bool = False) -> None:
        """The promise after every fault: each Engine's container runs, on the version expected of it; healthy
        (unless ``healthy=False``: a release that is broken by design); no kept previous container (unless a
        rollback that could not be done leaves it for the operator: ``kept_previous``); no lock left; no temporary
        file left next to a brain or in a snapshot folder."""
        for engine in self.engines:
            if engine.engine_id not in versions:
                continue
            container = engine.container()
            container.reload()
            assert container.status == "running", f"{engine.engine_id} is {container.status}"
            assert engine.image_version() == versions[engine.engine_id], (
                f"{engine.engine_id} runs {engine.image_version()}, expected {versions[engine.engine_id]}")
            if healthy:
                self.fleet.wait_healthy([engine], timeout=timeout)
            previous = [n for n, s in self.containers_of(engine).items() if n.endswith("--previous")]
            assert bool(previous) == kept_previous, f"{engine.engine_id}: kept previous containers: {previous}"
        assert self.lock_files() == [], f"locks left: {[p.name for p in self.lock_files()]}"
        assert self.temp_files() == [], f"temporary files left: {self.temp_files()}"

    def reports(self, kind: str = "upgrade") -> list[dict[str, Any]]:
        """Every run report of ``kind`` (upgrade, rollback), oldest first."""
        paths = sorted(self.report_dir.glob(f"*/{kind}.json"), key=lambda p: p.stat().st_mtime)
        return [json.loads(p.read_text()) for p in paths]

    def entry(self, engine: Engine, report: dict[str, Any] | None = None) -> dict[str, Any]:
        """The Engine's entry in the newest upgrade report."""
        report = report or self.report()
        (found,) = [e for e in report["engines"] if e["engine"] == engine.engine_id]
        return found

    @contextlib.contextmanager
    def load(self, rate: float = 2.0, engines: list[Engine] | None = None) -> Iterator[LoadGenerator]:
        """Load on ``engines`` (all by default) for the block: acknowledged turns before it starts, stopped after."""
        engines = engines if engines is not None else self.engines
        loadgen = LoadGenerator(engines, rate=rate, feedback_ratio=0.5, max_seconds=600)
        self.loadgens.append(loadgen)
        loadgen.start()
        try:
            wait_for(lambda: all(loadgen.acked_task_ids(e.engine_id) for e in engines), "a first acknowledged turn")
            yield loadgen
        finally:
            loadgen.stop(timeout=10)
            print("load:", json.dumps(loadgen.stats()["totals"]))

    def sidecar(self, engine: Engine, name: str = "sidecar") -> Any:
        """A container that mounts the Engine's brain volume or folder (a backup agent, a debug shell), running."""
        source = str(engine.data_dir) if isinstance(engine, BindEngine) else engine.volume
        container = self.client.containers.run(
            f"engine:{BASELINE}", command=["sleep", "600"], name=f"{self.fleet.name}-{name}", detach=True,
            volumes={source: {"bind": "/data", "mode": "rw"}},
            labels={"io.september.fleet": self.fleet.name, "io.september.testkit": "engine_testkit"})
        self.extra_containers.append(container.name)
        wait_for(lambda: container.reload() or container.status == "running", "the sidecar to run")
        return container


def task_output(run: PlaybookRun | LiveRun, host: str, suffix: str) -> dict[str, Any]:
    """The result of the task whose name ends with ``suffix`` on ``host`` (the role's prefix left out)."""
    data = run.data if isinstance(run, PlaybookRun) else None
    for play in (data or {}).get("plays", []):
        for task in play.get("tasks", []):
            if task["task"]["name"].endswith(suffix) and host in task["hosts"]:
                return task["hosts"][host]
    return {}


def failure_messages(run: PlaybookRun) -> list[str]:
    """Every failed task's message of the run (rescued or not)."""
    return [result.get("msg", "") for play in (run.data or {}).get("plays", []) for task in play.get("tasks", [])
            for result in task["hosts"].values() if result.get("failed")]


@pytest.fixture(scope="session")
def fault_images(docker_client: docker.DockerClient, engine_images: list[str]) -> list[str]:
    missing = [tag for tag in _harness.RELEASES if tag not in engine_images]
    if missing:
        pytest.fail(f"images engine:{', engine:'.join(missing)} not found: run `make images`", pytrace=False)
    try:
        docker_client.networks.get("engine_net")
    except docker.errors.NotFound:
        docker_client.networks.create("engine_net", driver="bridge")
    return engine_images


@pytest.fixture
def faults(docker_client: docker.DockerClient, fault_images: list[str], tmp_path: Path) -> Iterator[Faults]:
    """A :class:`Faults` with no Engine yet (``faults.up_engines(...)``); everything is removed after the test."""
    f = Faults(docker_client, tmp_path)
    try:
        yield f
    finally:
        for label, seconds, run in f.runs:
            print(f"run {label}: rc={run.rc} {seconds:.1f}s")
        try:
            f.close()
        finally:
            sweep(f.fleet.name, docker_client)
