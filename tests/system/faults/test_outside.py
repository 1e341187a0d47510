# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults from outside the run, mid-upgrade: someone renames or removes the Engine's container, the Docker API
fails a stop or is slow.

- renamed while its snapshot is taken: the switch finds no container; nothing is stopped; the report says why;
  renamed back, a re-run finishes the upgrade;
- the NEW container removed during the bake: the Engine is rolled back to its kept previous container with its
  pre-upgrade brain (the removed container's writes are in the kept replaced brain);
- the Docker API answers the drain's ``stop`` with an error AFTER stopping the Engine (defect 9): the Engine is
  started again on its release, its brain not restored (no write lost);
- a slow Docker API (a busy host: every container inspect takes 300 ms during the bake): a healthy canary is not
  failed by its own health probes.

The Docker API faults go through the relay of tests/system/modules/_docker_fault.py (DOCKER_HOST of the run).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from engine_testkit import brain
from engine_testkit.pathimport import import_path

from .conftest import Faults, failure_messages

pytestmark = pytest.mark.timeout(300)
MODULES = Path(__file__).resolve().parents[1] / "modules"


_fault: Any = import_path("september_faults_docker_fault", MODULES / "_docker_fault.py")
DockerFaultProxy = _fault.DockerFaultProxy
STOP = _fault.STOP
INSPECT = r"^/v[\d.]+/containers/[^/]+/json"


class SlowDockerProxy(DockerFaultProxy):
    """The relay, with ``delay`` seconds added to every request whose path matches ``pattern`` (0 until a test sets
    it: the API can be made slow for one step of a run)."""

    def __init__(self, pattern: str, delay: float = 0.0):
        super().__init__()
        self.pattern, self.delay = pattern, delay

    def relay(self, handler: Any) -> None:
        if self.delay and re.search(self.pattern, handler.path):
            time.sleep(self.delay)
        super().relay(handler)


def test_a_container_renamed_mid_upgrade_is_left_running(faults: Faults) -> None:
    (engine,) = faults.up_engines(1)
    container = engine.container()
    renamed = f"{engine.engine_id}-renamed"
    with faults.load() as lg:
        run = faults.start("upgrade.yml", label="renamed mid-upgrade", engine_target_version="2.4.0")
        run.wait_for_line(r"TASK \[.*Snapshot the brain before the switch")
        container.rename(renamed)
        result = run.wait()
        container.reload()
        assert container.status == "running" and container.name == renamed, container.status
        assert result.rc == 2, result.stdout[-3000:]
        entry = faults.entry(engine)
        assert entry["status"] in ("failed", "rollback_failed"), entry["status"]
        assert engine.engine_id in entry["reason"], entry["reason"]
        assert faults.lock_files() == [] and faults.temp_files() == []
        container.rename(engine.engine_id)  # the operator puts it back; the next run finishes the job
        rerun = faults.run("upgrade.yml", label="re-run", engine_target_version="2.4.0")
    assert rerun.rc == 0, rerun.stdout[-3000:]
    assert faults.entry(engine)["verdict"]["decision"] == "pass"
    faults.settled({engine.engine_id: "2.4.0"})
    faults.assert_writes_kept(engine, lg)


def test_the_new_container_removed_during_the_bake_is_rolled_back(faults: Faults) -> None:
    (engine,) = faults.up_engines(1)
    with faults.load() as lg:
        run = faults.start("upgrade.yml", label="removed mid-bake", engine_target_version="2.4.0",
                           engine_upgrade_canary_bake_seconds=8, engine_upgrade_canary_max_bake_seconds=8)
        run.wait_for_line(r"TASK \[.*Bake: healthy at every check")
        new = engine.container()
        assert new.image.labels["org.opencontainers.image.version"] == "2.4.0"
        new.remove(force=True)
        result = run.wait()
    assert result.rc == 2, result.stdout[-3000:]
    entry = faults.entry(engine)
    assert entry["status"] == "rolled_back" and entry["rollback_kind"] == "image+brain", entry
    snaps = faults.snapshots(engine.engine_id)
    pre = next(m for m in snaps.values() if m["kind"] == "pre-upgrade")
    kept = next(m for m in snaps.values() if m["kind"] == "pre-restore")
    faults.assert_writes_kept_restored(engine, pre, kept, lg)
    assert brain.applied_migrations(engine.brain_path())[-1] == "0005"
    faults.settled({engine.engine_id: "2.3.0"})


def test_a_failed_stop_during_the_drain_never_leaves_the_engine_stopped(faults: Faults) -> None:
    (engine,) = faults.up_engines(1)
    with DockerFaultProxy() as proxy, faults.load() as lg:
        proxy.fail("POST", STOP, after=True)  # the daemon stops it, the caller is told the stop failed
        live = faults.start("upgrade.yml", label="stop fails", engine_target_version="2.4.0",
                            env={"DOCKER_HOST": proxy.url})
        run = live.wait()
        stops = proxy.calls("POST", STOP)
    assert stops and stops[0][1], f"the injected stop failure was never hit: {stops}"
    assert run.rc == 2, run.stdout[-3000:]
    assert any("injected fault" in m for m in failure_messages(run)), failure_messages(run)
    entry = faults.entry(engine)
    assert entry["reason"].startswith("switch:") and "started again" in entry["reason"], entry["reason"]
    assert entry["rollback_kind"] in (None, "none", "image"), entry["rollback_kind"]
    assert not (entry.get("rollback") or {}).get("brain_restored"), "an unneeded brain restore"
    faults.settled({engine.engine_id: "2.3.0"})
    faults.assert_writes_kept(engine, lg)
    assert faults.snapshots(engine.engine_id) and not [
        m for m in faults.snapshots(engine.engine_id).values() if m["kind"] == "pre-restore"]


def test_a_slow_docker_api_does_not_fail_a_healthy_canary(faults: Faults) -> None:
    (engine,) = faults.up_engines(1)
    with SlowDockerProxy(INSPECT) as proxy, faults.load() as lg:
        live = faults.start("upgrade.yml", label="slow Docker API", engine_target_version="2.4.0",
                            env={"DOCKER_HOST": proxy.url}, engine_upgrade_canary_bake_seconds=8,
                            engine_upgrade_canary_max_bake_seconds=8)
        # The host gets busy when the bake begins: every container inspect takes 300 ms from then on.
        live.wait_for_line(r"TASK \[.*Bake: healthy at every check")
        proxy.delay = 0.3
        live.wait_for_line(r"TASK \[.*(Keep the round.s health|Roll)")
        proxy.delay = 0.0
        run = live.wait()
    assert run.rc == 0, run.stdout[-3000:]
    assert faults.entry(engine)["status"] == "upgraded"
    faults.settled({engine.engine_id: "2.4.0"})
    faults.assert_writes_kept(engine, lg)
