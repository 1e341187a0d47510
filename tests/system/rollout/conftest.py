# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The rollout harness: a fresh fleet of 12 reference Engines per test, load, real ansible-playbook runs.

Every test gets a :class:`Rollout`: :meth:`Rollout.up` brings up 12 Engines mixing both hosting
models (per-user containers, Compose projects with the tag in the file, and with the tag in
``.env``), :meth:`Rollout.run` runs ``playbooks/upgrade.yml`` or ``rollback.yml`` against them with
the fast test settings, :meth:`Rollout.load` keeps the load generator running around a rollout, and
the helpers read what Docker, the brains, the snapshot folders and the run report say afterwards.
The fleet (named ``roll-<8 hex>``, host ports from 9100) is torn down after the test whatever happened.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import yaml

from engine_testkit import Fleet, brain, sweep
from engine_testkit.ansible import REPO_ROOT, PlaybookRun, run_playbook
from engine_testkit.fleet import Engine, unique_name
from engine_testkit.loadgen import LoadGenerator
from engine_testkit.settings import ANSIBLE_ENV, FORKS, run_vars

BASE_PORT = 9100
FLEET_SIZE = 12
BASELINE = "2.3.0"
#: Every release the scenarios go to.
RELEASES = ("2.3.0", "2.3.1", "2.4.0", "2.4.1", "2.4.2", "2.5.0", "3.0.0")
PLAYBOOKS = REPO_ROOT / "playbooks"


@dataclass(frozen=True)
class EngineState:
    """What Docker says of one Engine's current container."""

    container_id: str
    name: str
    started_at: str
    image: str
    version: str | None
    status: str


def iso_ts(text: str) -> float:
    """An ISO 8601 UTC time (``...Z``) as a POSIX timestamp."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def sha256(path: Path) -> str | None:
    """SHA-256 of a file, None when it does not exist."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


class Rollout:
    """One test's fleet, folders and runs (see the module docstring)."""

    def __init__(self, client: docker.DockerClient, tmp: Path):
        self.client = client
        self.tmp = tmp
        self.state_dir = tmp / "state"
        self.report_dir = tmp / "reports"
        self.inventory_path = tmp / "inventory.yml"
        self.fleet = Fleet(name=unique_name("roll"), base_port=BASE_PORT, client=client, workdir=tmp / "compose")
        self.loadgens: list[LoadGenerator] = []
        self.runs: list[tuple[str, float, PlaybookRun]] = []
        #: Engine ids in the inventory group engine_canary (the plan's first).
        self.canaries: list[str] = []

    # ------------------------------------------------------------------ fleet

    @property
    def engines(self) -> list[Engine]:
        """The Engines in inventory order (``u001 c001 u002 c002 ...``; the rollout order is the plan's)."""
        return list(self.fleet.engines)

    def planned_order(self) -> list[str]:
        """The rollout order the plan documents, for a fleet on one Docker host (these are all local): the group
        ``engine_canary`` first, then the other Engines, each part in the stable sha256 order of their names."""
        ids = [e.engine_id for e in self.engines]

        def by_hash(names: list[str]) -> list[str]:
            return sorted(names, key=lambda name: (hashlib.sha256(name.encode("utf-8")).hexdigest(), name))

        return by_hash([i for i in ids if i in self.canaries]) + by_hash([i for i in ids if i not in self.canaries])

    def planned_batches(self, sizes: list[int]) -> list[list[str]]:
        """The Engines of each batch of ``sizes`` in :meth:`planned_order`."""
        order, out, start = self.planned_order(), [], 0
        for size in sizes:
            out.append(order[start:start + size])
            start += size
        assert start == len(order), f"batch sizes {sizes} do not cover the {len(order)} Engines"
        return out

    def engine(self, engine_id: str) -> Engine:
        return next(e for e in self.fleet.engines if e.engine_id == engine_id)

    def up(self, count: int = FLEET_SIZE) -> list[Engine]:
        """``count`` Engines on 2.3.0, both hosting models alternating, container first.

        Pairs 2 and 6 (of 6) are Compose projects with the tag in ``.env``; the others have it in the
        compose file. With 12 Engines: batch 3 holds an ``.env`` one, and so does batch 4.
        """
        for index in range(0, count, 2):
            tag_in = "env" if index // 2 in (1, 5) else "file"
            self.fleet.up(min(2, count - index), BASELINE, model="mixed", compose_tag_in=tag_in, wait=False)
        self.fleet.wait_healthy(timeout=90)
        self.write_inventory()
        return self.engines

    def write_inventory(
        self, host_vars: dict[str, dict[str, Any]] | None = None, canaries: list[str] | None = None
    ) -> Path:
        """The fleet's inventory, plus extra variables for some hosts; ``canaries`` (Engine ids, kept for the next
        writes) go into the group ``engine_canary``, which the plan puts first."""
        if canaries is not None:
            self.canaries = list(canaries)
        return self.fleet.write_inventory(self.inventory_path, canaries=self.canaries, host_vars=host_vars)

    def close(self) -> None:
        """Stop the load and remove everything the fleet created (always runs)."""
        try:
            for loadgen in self.loadgens:
                loadgen.stop(timeout=5)
        finally:
            try:
                self.fleet.down()
            finally:
                sweep(self.fleet.name, self.client)

    # ------------------------------------------------------------------ runs

    def run(
        self, playbook: str, *, check: bool = False, label: str = "", limit: list[str] | None = None, **extra: Any
    ) -> PlaybookRun:
        """ansible-playbook ``playbooks/<playbook>`` on the fleet (or ``--limit`` hosts) with the fast settings plus
        ``extra``."""
        extra_vars = run_vars(self.state_dir, self.report_dir, **extra)
        started = time.monotonic()
        run = run_playbook(
            PLAYBOOKS / playbook, extra_vars=extra_vars, inventory=self.inventory_path, check=check,
            limit=",".join(limit) if limit else None, args=FORKS, env=ANSIBLE_ENV, timeout=900,
        )
        seconds = time.monotonic() - started
        self.runs.append((label or playbook, seconds, run))
        # The whole output and the recorded results stay in the test's folder; the tail goes to the test log.
        name = f"run{len(self.runs):02d}"
        (self.tmp / f"{name}.out").write_text(run.stdout + "\n" + run.stderr)
        (self.tmp / f"{name}.json").write_text(json.dumps(run.data))
        print(f"--- {label or playbook}{' --check' if check else ''}: rc={run.rc} {seconds:.1f}s {self.tmp / name}.*")
        print(run.stdout[-3000:])
        if run.stderr.strip():
            print("stderr:", run.stderr[-2000:])
        return run

    @contextlib.contextmanager
    def load(self, rate: float = 1.0) -> Iterator[LoadGenerator]:
        """A load generator on every Engine for the duration of the block (started before, stopped after)."""
        loadgen = LoadGenerator(self.engines, rate=rate, feedback_ratio=0.5, max_seconds=900)
        self.loadgens.append(loadgen)
        loadgen.start()
        try:
            loadgen.wait_acked(1, timeout=15)  # acknowledged writes on every Engine before anything starts
            yield loadgen
        finally:
            loadgen.stop(timeout=10)
            print("load:", json.dumps(loadgen.stats()["totals"]))

    # ------------------------------------------------------------------ what Docker says

    def state(self) -> dict[str, EngineState]:
        """Every Engine's current container: id, StartedAt, image, version label, status."""
        states = {}
        for engine in self.engines:
            container = engine.container()
            container.reload()
            states[engine.engine_id] = EngineState(
                container_id=container.id,
                name=container.name,
                started_at=container.attrs["State"]["StartedAt"],
                image=container.attrs["Config"]["Image"],
                version=engine.image_version(),
                status=container.status,
            )
        return states

    def containers_named(self, name: str) -> list[str]:
        """Names of the containers called exactly ``name``."""
        return [c.name for c in self.client.containers.list(all=True, filters={"name": name}) if c.name == name]

    def compose_files(self) -> dict[str, dict[str, str | None]]:
        """sha256 of each Compose Engine's compose file, ``.env`` and state record."""
        files = {}
        for engine in self.engines:
            if engine.model == "compose":
                cdir = Path(engine.compose_dir)
                files[engine.engine_id] = {
                    name: sha256(cdir / name) for name in ("docker-compose.yml", ".env", ".september-engine.json")
                }
        return files

    def configured_tag(self, engine: Engine) -> str:
        """The image reference the Compose project sets (file, or ``ENGINE_TAG`` of ``.env``)."""
        cdir = Path(engine.compose_dir)
        image = yaml.safe_load((cdir / "docker-compose.yml").read_text())["services"]["engine"]["image"]
        if "${ENGINE_TAG}" in image:
            env = dict(
                line.split("=", 1) for line in (cdir / ".env").read_text().splitlines() if "=" in line
            )
            image = image.replace("${ENGINE_TAG}", env["ENGINE_TAG"])
        return image

    # ------------------------------------------------------------------ snapshots and brains

    def snapshot_dir(self, engine_id: str) -> Path:
        return self.state_dir / "snapshots" / engine_id

    def pre_upgrade_snapshots(self, engine_id: str, from_version: str, target: str) -> list[dict[str, Any]]:
        """The manifests of ``engine_id``'s pre-upgrade snapshots from ``from_version`` to ``target``: named after
        the Engine's identity (its brain's volume), of kind pre-upgrade, naming this Engine."""
        engine = self.engine(engine_id)
        prefix = f"pre-upgrade-{engine.volume}-{from_version}-to-{target}-"
        found = [m for n, m in self.snapshots(engine_id).items() if n.startswith(prefix)]
        for manifest in found:
            assert manifest["kind"] == "pre-upgrade", manifest
            assert manifest["engine"]["key"] == f"volume:{engine.volume}", manifest["engine"]
            assert manifest["engine"]["inventory_name"] == engine_id, manifest["engine"]
        return found

    def pre_restore_snapshots(self, engine_id: str) -> list[dict[str, Any]]:
        """The manifests of the snapshots that keep a brain replaced by a restore (kind pre-restore)."""
        return [m for m in self.snapshots(engine_id).values() if m.get("kind") == "pre-restore"]

    def lock_files(self) -> list[Path]:
        """The lock files left under the state folder (``locks/<identity slug>.lock``)."""
        folder = self.state_dir / "locks"
        return sorted(folder.glob("*.lock")) if folder.is_dir() else []

    def snapshots(self, engine_id: str) -> dict[str, dict[str, Any]]:
        """The snapshots (manifests by name) of one Engine; {} when it has no folder."""
        folder = self.snapshot_dir(engine_id)
        if not folder.is_dir():
            return {}
        return {
            p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))
        }

    def snapshot_files(self) -> list[Path]:
        """Every file under the snapshots folder (all Engines)."""
        root = self.state_dir / "snapshots"
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []

    def brain_sha256(self) -> dict[str, dict[str, str | None]]:
        """sha256 of each Engine's brain file and its WAL."""
        out = {}
        for engine in self.engines:
            path = engine.brain_path()
            out[engine.engine_id] = {"brain": sha256(path), "wal": sha256(Path(f"{path}-wal"))}
        return out

    def report(self) -> dict[str, Any]:
        """The newest run report (``<report_dir>/<run_id>/upgrade.json``)."""
        reports = sorted(self.report_dir.glob("*/upgrade.json"), key=lambda p: p.stat().st_mtime)
        assert reports, f"no run report under {self.report_dir}"
        return json.loads(reports[-1].read_text())

    # ------------------------------------------------------------------ acknowledged writes

    @staticmethod
    def assert_writes_kept(engine: Engine, lg: LoadGenerator) -> None:
        """Every write ``lg`` got acknowledged by ``engine`` is in its brain."""
        assert lg.acked_task_ids(engine.engine_id), f"{engine.engine_id}: no acknowledged turn at all"
        missing = brain.missing_acknowledged_detail(lg, engine)
        assert not missing["tasks"] and not missing["signals"], (
            f"{engine.engine_id}: acknowledged writes missing from the brain: {missing}"
        )

    def assert_writes_kept_restored(
        self, engine: Engine, pre_upgrade: dict[str, Any], previous: dict[str, Any], lg: LoadGenerator
    ) -> None:
        """For an Engine whose brain was restored from ``pre_upgrade`` (manifest), the replaced brain kept as
        ``previous`` (manifest): what was acknowledged before the snapshot began is in the restored brain, what was
        acknowledged before the replaced brain was saved is in that kept brain, and nothing acknowledged is lost.
        """
        eid = engine.engine_id
        prev_path = self.snapshot_dir(eid) / f"{previous['name']}.sqlite"
        current_tasks = brain.task_ids(engine.brain_path())
        current_signals = brain.signal_ids(engine.brain_path())
        prev_tasks = brain.task_ids(prev_path)
        prev_signals = brain.signal_ids(prev_path)
        snap_t = iso_ts(pre_upgrade["backup_started_at"])
        kept_t = iso_ts(previous["backup_started_at"] if previous.get("backup_started_at") else previous["created_at"])
        acks = lg.acks(eid)
        feedback = lg.feedback_acks(eid)
        assert acks, f"{eid}: no acknowledged turn at all"
        before_snapshot = {a.task_id for a in acks if a.wall < snap_t}
        before_snapshot_fb = {f.signal_id for f in feedback if f.wall < snap_t}
        assert before_snapshot, f"{eid}: no write acknowledged before the pre-upgrade snapshot (load too short?)"
        assert not before_snapshot - current_tasks, f"{eid}: restored brain lacks {before_snapshot - current_tasks}"
        assert not before_snapshot_fb - current_signals, (
            f"{eid}: restored brain lacks feedback {before_snapshot_fb - current_signals}"
        )
        before_kept = {a.task_id for a in acks if a.wall < kept_t}
        before_kept_fb = {f.signal_id for f in feedback if f.wall < kept_t}
        assert not before_kept - prev_tasks, f"{eid}: the kept bad-window brain lacks {before_kept - prev_tasks}"
        assert not before_kept_fb - prev_signals, (
            f"{eid}: the kept bad-window brain lacks feedback {before_kept_fb - prev_signals}"
        )
        lost = {a.task_id for a in acks} - current_tasks - prev_tasks
        lost_fb = {f.signal_id for f in feedback} - current_signals - prev_signals
        assert not lost and not lost_fb, f"{eid}: acknowledged writes in neither brain: {lost} {lost_fb}"


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="session")
def rollout_images(docker_client: docker.DockerClient, engine_images: list[str]) -> list[str]:
    """Every release the scenarios need, or a failure that says how to build them."""
    missing = [tag for tag in RELEASES if tag not in engine_images]
    if missing:
        pytest.fail(f"images engine:{', engine:'.join(missing)} not found: run `make images`", pytrace=False)
    return engine_images


class Fleets:
    """Brings each test's fleet up, and tears it down in the background while the next test runs.

    A fleet's teardown then overlaps the next test's playbook runs instead of adding to the file's runtime: the load
    stops when the test ends, the fleet goes down once the next fleet is up (never while one comes up: both touch
    the shared ``engine_net``), and at the end of the session every teardown is done, its errors raised.
    """

    def __init__(self, client: docker.DockerClient):
        self.client = client
        self.lock = threading.Lock()
        self.pending: list[Rollout] = []
        self.threads: list[threading.Thread] = []
        self.errors: list[str] = []

    @contextlib.contextmanager
    def open(self, tmp: Path, count: int = FLEET_SIZE) -> Iterator[Rollout]:
        """A :class:`Rollout` with its ``count`` Engines up on 2.3.0, torn down after the block whatever happens."""
        rollout = Rollout(self.client, tmp)
        try:
            with self.lock:
                rollout.up(count)
            self._start_teardowns()
            yield rollout
        finally:
            for loadgen in rollout.loadgens:
                loadgen.stop(timeout=5)
            for label, seconds, run in rollout.runs:
                print(f"run {label}: rc={run.rc} {seconds:.1f}s")
            self.pending.append(rollout)

    def _start_teardowns(self) -> None:
        while self.pending:
            rollout = self.pending.pop()
            thread = threading.Thread(target=self._close, args=(rollout,), name=f"down-{rollout.fleet.name}")
            thread.start()
            self.threads.append(thread)

    def _close(self, rollout: Rollout) -> None:
        with self.lock:
            try:
                rollout.close()
            except Exception as exc:  # reported at the end of the session, never lost
                self.errors.append(f"{rollout.fleet.name}: {exc!r}")

    def join(self) -> None:
        """Tear down what is left and wait for every teardown."""
        self._start_teardowns()
        for thread in self.threads:
            thread.join(300)
        alive = [t.name for t in self.threads if t.is_alive()]
        if alive:
            self.errors.append(f"teardowns still running after 300 s: {alive}")


@pytest.fixture(scope="session")
def fleets(docker_client: docker.DockerClient, rollout_images: list[str]) -> Iterator[Fleets]:
    """The session's :class:`Fleets`; fails the session's end if a fleet could not be torn down."""
    manager = Fleets(docker_client)
    yield manager
    manager.join()
    if manager.errors:
        pytest.fail("fleet teardown failed: " + "; ".join(manager.errors), pytrace=False)


@pytest.fixture
def rollout(fleets: Fleets, tmp_path: Path) -> Iterator[Rollout]:
    """A :class:`Rollout` with its fleet already up (12 Engines on 2.3.0); torn down after the test, always."""
    with fleets.open(tmp_path) as r:
        yield r
