# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A job killed in the middle of a switch leaves no Engine locked for long, and none stopped after the next run.

Three real Engines (per-user container, Compose project, per-user container) under load, upgraded in ONE batch
(stages given as the survey text "100%") so that their switches overlap. Docker's event stream says when a switch
reaches the moment under test; the job is then killed at once with its whole process tree, as AWX does when it
cancels a job (or hits its timeout) by removing the job's container:

- ``drain``: on the first SIGTERM Docker sends to an Engine (``docker stop``: its drain began);
- ``rename``: on the first rename (the per-user model keeps the old container as ``<name>--previous``, Compose v1
  renames the old container before it creates the new one).

Then: a run started at once is refused by the dead job's locks, with who holds them and until when (drain case);
after the locks' short TTL, the same job again brings every Engine back and finishes the upgrade. The fleet must
end on the target, healthy, with no kept ``--previous`` or half-made container, no lock left, and every write the
load generator got acknowledged still in the brains.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import pytest

from engine_testkit import FleetError, brain
from engine_testkit.ansible import PlaybookRun
from engine_testkit.fleet import LABEL_FLEET, Engine
from engine_testkit.loadgen import LoadGenerator
from engine_testkit.waits import wait_stops_done

from .awxlab import AwxLab, kill_job, make_lab

pytestmark = pytest.mark.timeout(480)  # a hang guard: a busy 2-core machine runs these in 3 to 5 minutes

BASE_PORT = 9060
#: The dead job's lock TTL, short enough to wait out: 30 s; 60 s where a run started at once must still meet the
#: locks (its plan play and start-up take 10 to 30 s on a busy machine, counted from the locks' last refresh).
DEAD_JOB_TTL = {"rename": 30, "drain": 60}
#: What the dead job's settings must fit in that TTL (the plan refuses a TTL shorter than one Engine's upgrade:
#: drain 10 + health timeout 15 + longest bake 3 = 28 s): no bake rounds beyond the first.
DEAD_JOB_VARS = {"engine_upgrade_health_timeout": 15, "engine_upgrade_canary_max_bake_seconds": 0}


@pytest.fixture
def lab(docker_client: docker.DockerClient, awx_images: list[str], tmp_path: Path) -> Iterator[AwxLab]:
    with make_lab(docker_client, tmp_path, BASE_PORT) as lab:
        lab.up(3, "2.3.0")
        yield lab


def kill_at(lab: AwxLab, moment: str, proc: Any, timeout: float = 120) -> dict[str, Any]:
    """Kill the job (its whole tree) on the first Docker event of ``moment``; returns that event."""
    client = docker.from_env(timeout=120)
    events = client.events(
        decode=True, since=int(time.time()) - 1,
        filters={"type": "container", "label": f"io.september.fleet={lab.fleet.name}"},
    )
    hit: dict[str, Any] = {}

    def watch() -> None:
        try:
            for event in events:
                action, attrs = event.get("Action", ""), (event.get("Actor") or {}).get("Attributes") or {}
                if (moment == "drain" and action == "kill" and attrs.get("signal") == "15") or (
                    moment == "rename" and action.startswith("rename")
                ):
                    if proc.poll() is None:
                        # Noted before the kill: the kill ends the job, and the test reads `hit` once it has ended.
                        hit.update(action=action, name=attrs.get("name"), at=time.time())
                        kill_job(proc.pid)
                    return
        except Exception:  # the stream closed under us: the job ended without reaching the moment
            return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        proc.wait(timeout=timeout)
    finally:
        events.close()
        watcher.join(timeout=10)
        client.close()
    return hit


def status_of(engine: Engine) -> str | None:
    """Docker's status of the Engine's container, None when there is none (only its kept previous one)."""
    try:
        return engine.container().status
    except FleetError:
        return None


def leftovers(lab: AwxLab) -> list[str]:
    """Fleet containers that are not an Engine's current container (kept, renamed, half made)."""
    current = {e.container_name for e in lab.engines if status_of(e) is not None}
    return sorted(c.name for c in lab.containers() if c.name not in current)


def lock_files(lab: AwxLab) -> list[Path]:
    folder = lab.state_dir / "locks"
    return sorted(folder.glob("*.lock")) if folder.is_dir() else []


def wait_for_lock_expiry(lab: AwxLab) -> None:
    expiries = [json.loads(p.read_text())["expires_at"] for p in lock_files(lab)]
    assert expiries, "the killed job left no lock"
    latest = max(datetime.fromisoformat(e.replace("Z", "+00:00")).timestamp() for e in expiries)
    time.sleep(max(0.0, latest - time.time() + 1.5))  # the TTL is wall-clock by design: its end is known, not polled


def named(run: PlaybookRun, suffix: str) -> dict[str, dict]:
    """Host -> result of the task whose name ends with ``suffix`` (the role's prefix left out)."""
    out: dict[str, dict] = {}
    for play in (run.data or {}).get("plays", []):
        for task in play.get("tasks", []):
            if task["task"]["name"].endswith(suffix):
                out.update(task["hosts"])
    return out


def preflights(run: PlaybookRun) -> dict[str, list[dict]]:
    """Host -> the results of its pre-flights (the lock is taken there), in run order: an Engine brought back
    has two."""
    out: dict[str, list[dict]] = {}
    for play in (run.data or {}).get("plays", []):
        for task in play.get("tasks", []):
            if task["task"]["name"].split(" : ", 1)[-1].startswith("Upgrade | Pre-flight of "):
                for host, result in task["hosts"].items():
                    out.setdefault(host, []).append(result)
    return out


@pytest.mark.parametrize(("moment", "target"), [("drain", "2.3.1"), ("rename", "2.4.0")])
def test_killed_job_then_rerun_ends_healthy(lab: AwxLab, moment: str, target: str) -> None:
    job = {"engine_target_version": target, "engine_rollout_stages": "100%"}
    loadgen = LoadGenerator(lab.engines, rate=2.0, feedback_ratio=0.25, max_seconds=280)
    loadgen.start()
    try:
        started = time.time()
        proc, log = lab.start(f"killed-at-{moment}", engine_upgrade_lock_ttl=DEAD_JOB_TTL[moment], **DEAD_JOB_VARS,
                              **job)
        hit = kill_at(lab, moment, proc)
        print(f"--- killed at {moment}: {hit}\n{log.read_text()[-1500:]}")
        assert hit, f"the job ended (rc={proc.returncode}) before it reached the {moment}"
        assert proc.returncode == -9
        # What Docker still finishes by itself (a stop the killed job asked for: a drain under way) ends first.
        wait_stops_done(lab.client, started, f"{LABEL_FLEET}={lab.fleet.name}")
        after_kill = {c.name: c.status for c in lab.containers()}
        print("after the kill:", after_kill)
        down = {e.engine_id for e in lab.engines if status_of(e) != "running"}
        assert down or leftovers(lab), f"the kill left nothing to recover: {after_kill}"
        assert lock_files(lab), "the killed job left no lock"

        if moment == "drain":
            refused = lab.run("refused", **job)
            assert refused.rc != 0
            messages = [r.get("msg", "") for results in preflights(refused).values() for r in results]
            assert any("is locked by" in m and "until" in m and "if that run is dead" in m for m in messages), messages
            assert {c.name: c.status for c in lab.containers()} == after_kill, "the refused run changed something"

        wait_for_lock_expiry(lab)
        rerun = lab.run("rerun", **job)
        assert rerun.rc == 0, rerun.stdout[-5000:]
    finally:
        loadgen.stop(timeout=10)

    # Every Engine the kill left down was brought back by the re-run, then upgraded like the others.
    brought_back = {h for h, r in named(rerun, "Upgrade | Say why the Engine is brought back first").items()
                    if not r.get("skipped")}
    assert down <= brought_back, f"left down: {down}, brought back: {brought_back}"
    report = lab_report(lab)
    taken_over = {e["engine"]: e["lock_taken_over"] for e in report["engines"]}
    for host, results in preflights(rerun).items():
        if host in down:
            assert results[0]["preflight"]["lock"]["taken_over"], f"{host}: the dead job's lock was not taken over"
            assert taken_over[host] and taken_over[host]["run_id"] != report["run_id"], taken_over[host]
    statuses = {e["engine"]: e["status"] for e in report["engines"]}
    assert set(statuses) == {e.engine_id for e in lab.engines}
    assert set(statuses.values()) <= {"upgraded", "verified"}, statuses
    # The batch (all three, one stage) was judged on the load's evidence, not promoted undecided.
    assert report["outcome"] == "completed" and report["promoted_undecided"] == [], report["promoted_undecided"]
    assert {e["evidence"] for e in report["engines"]} == {"pass"}, [e["verdict"] for e in report["engines"]]

    # The fleet: all on the target, running, healthy, restart policy kept; nothing left behind.
    lab.fleet.wait_healthy(timeout=30)
    for engine in lab.engines:
        container = engine.container()
        container.reload()
        assert container.status == "running" and engine.image_version() == target, engine.engine_id
        assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped", engine.engine_id
    assert leftovers(lab) == []
    assert lock_files(lab) == []
    for engine in lab.engines:
        missing = brain.missing_acknowledged_detail(loadgen, engine)
        assert loadgen.acked_task_ids(engine.engine_id), f"{engine.engine_id}: no acknowledged turn"
        assert not missing["tasks"] and not missing["signals"], f"{engine.engine_id}: acknowledged writes lost"


def lab_report(lab: AwxLab) -> dict:
    reports = sorted(lab.report_dir.glob("*/upgrade.json"), key=lambda p: p.stat().st_mtime)
    assert reports, f"no run report under {lab.report_dir}"
    return json.loads(reports[-1].read_text())
