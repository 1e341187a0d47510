# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Issue 12, section 1: the rollback drill (playbooks/drill.yml, "Practice rollback") on real Engines.

One fleet for the module: two reference Engines on 2.3.0, a per-user container and a Compose project, one of them
under light load during each drill. Every drill must leave them exactly as they were (container id, StartedAt and
uptime, image, the idle one's brain byte for byte, every write the load got acknowledged) and leave nothing behind
(no twin container or volume, no drill folder). What happened to the twins is read from the drill's report and from
Docker.

- engine_twin itself: a twin of each hosting model, made again (no change), verified, a pre-drill row deleted from
  its brain and named as missing, removed (check mode first);
- 2.4.1 (never healthy) and 2.4.2 (healthy, fails turns: caught by its measures on the twins' probe turns), each
  twin caught by the upgrade's own gates, rolled back by the real rollback, healthy on 2.3.0 with every pre-drill
  row, the report's steps, RTO and pass/fail;
- a drill killed (SIGKILL to the playbook's process group) while its twins bake, then run again: the leftovers are
  swept, the second drill completes, nothing is left;
- a twin whose Docker host cannot be reached is removed by the last play through the Docker host's own connection;
- a --limit that would leave out the twins is refused before anything is made.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import requests

from engine_testkit import Fleet, brain, sweep, wait_until
from engine_testkit.ansible import REPO_ROOT, PlaybookRun, ansible_env, ensure_collection_link, run_playbook
from engine_testkit.fleet import Engine, unique_name
from engine_testkit.loadgen import LoadGenerator
from engine_testkit.proctree import descendants
from engine_testkit.settings import ANSIBLE_ENV, FAST_VARS, FORKS

pytestmark = pytest.mark.timeout(600)

BASE_PORT = 9480
BASELINE = "2.3.0"
DRILL_LABEL = "io.september.engine.drill"
OF_LABEL = "io.september.engine.drill-of"
#: The fleet's group variables: the fast test settings, which the drill copies from each Engine to its twin.
GROUP_VARS: dict[str, Any] = {
    **FAST_VARS,
    # shorter than the fast settings' 30 s on purpose: 2.4.1 never answers healthy, its twin's health gate fails in 10 s
    "engine_upgrade_health_timeout": 10,
}
#: 2.4.1 never answers healthy: its health gate catches it, a few probe turns are enough (2.4.2 gets the default 20).
FEW_PROBES = {"engine_drill_probe_turns": 10}
STEP_NAMES = ["snapshot", "pull", "drain", "switch", "detection", "image_rollback", "brain_restore",
              "time_to_healthy"]
PLAYBOOKS = REPO_ROOT / "tests" / "system" / "playbooks"
#: How the run's record names the tasks of the role.
ROLE = "september.engine.engine_drill : "


def sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


class Drill:
    """The fleet, one test's folders, the drill's runs and what they leave."""

    def __init__(self, fleet: Fleet, client: docker.DockerClient, tmp: Path):
        self.fleet = fleet
        self.client = client
        self.tmp = tmp
        self.state_dir = tmp / "state"
        self.report_dir = tmp / "reports"
        self.inventory = fleet.write_inventory(tmp / "inventory.yml", group_vars=GROUP_VARS)
        self.runs = 0

    @property
    def user(self) -> Engine:
        return next(e for e in self.fleet.engines if e.model == "container")

    @property
    def compose(self) -> Engine:
        return next(e for e in self.fleet.engines if e.model == "compose")

    def extra(self, broken: str, **extra: Any) -> dict[str, Any]:
        return {"engine_drill_broken_version": broken, "engine_drill_per_docker_host": 2,
                "engine_state_dir": str(self.state_dir), "engine_report_dir": str(self.report_dir), **extra}

    def run(self, broken: str, limit: str | None = None, **extra: Any) -> PlaybookRun:
        started = time.monotonic()
        run = run_playbook(REPO_ROOT / "playbooks" / "drill.yml", extra_vars=self.extra(broken, **extra),
                           inventory=self.inventory, limit=limit, args=FORKS, env=ANSIBLE_ENV, timeout=500)
        self.runs += 1
        (self.tmp / f"run{self.runs}.out").write_text(run.stdout + "\n" + run.stderr)
        print(f"--- drill to {broken}: rc={run.rc} {time.monotonic() - started:.1f}s\n{run.stdout[-2500:]}")
        return run

    def report(self) -> dict[str, Any]:
        found = sorted(self.report_dir.glob("*/drill.json"), key=lambda p: p.stat().st_mtime)
        assert found, f"no drill report under {self.report_dir}"
        return json.loads(found[-1].read_text())

    def entries(self) -> dict[str, dict[str, Any]]:
        return {e["engine"]: e for e in self.report()["engines"]}

    # ------------------------------------------------------------------ production, and what is left

    def production(self) -> dict[str, dict[str, Any]]:
        """Each Engine's container id, StartedAt, image reference and id, uptime, and brain (+ WAL) sha256."""
        out = {}
        for engine in self.fleet.engines:
            container = engine.container()
            container.reload()
            body = requests.get(f"{engine.url}/health", timeout=10).json()
            path = engine.brain_path()
            out[engine.engine_id] = dict(
                id=container.id, started_at=container.attrs["State"]["StartedAt"],
                image=container.attrs["Config"]["Image"], image_id=container.attrs["Image"],
                restart_count=container.attrs.get("RestartCount"), uptime=body["uptime_seconds"],
                brain=(sha256(path), sha256(Path(f"{path}-wal"))),
            )
        return out

    def assert_untouched(self, before: dict[str, dict[str, Any]], idle: Engine | None) -> None:
        after = self.production()
        for eid, was in before.items():
            now = after[eid]
            for key in ("id", "started_at", "image", "image_id", "restart_count"):
                assert now[key] == was[key], f"{eid}: {key} changed from {was[key]} to {now[key]}"
            assert now["uptime"] > was["uptime"], f"{eid}: its uptime went back: restarted"
        if idle is not None:
            assert after[idle.engine_id]["brain"] == before[idle.engine_id]["brain"], (
                f"{idle.engine_id}: its brain (or WAL) changed during the drill")

    def leftovers(self) -> dict[str, list[str]]:
        """This fleet's twins: containers and volumes with the drill's label, and drill folders."""
        mine = self.fleet.name
        containers = [c.name for c in self.client.containers.list(all=True, filters={"label": DRILL_LABEL})
                      if (c.labels or {}).get(OF_LABEL, "").startswith(mine)]
        volumes = [v.name for v in self.client.volumes.list(filters={"label": DRILL_LABEL}) if mine in v.name]
        drill_dir = self.state_dir / "drill"
        folders = sorted(str(p) for p in drill_dir.iterdir()) if drill_dir.is_dir() else []
        return {"containers": containers, "volumes": volumes, "folders": folders}

    def assert_nothing_left(self) -> None:
        assert self.leftovers() == {"containers": [], "volumes": [], "folders": []}


def remove_twins(client: docker.DockerClient, fleet_name: str) -> None:
    """Teardown: every twin of the fleet's Engines, whatever a failed test left."""
    for container in client.containers.list(all=True, filters={"label": DRILL_LABEL}):
        if (container.labels or {}).get(OF_LABEL, "").startswith(fleet_name):
            container.remove(force=True)
    for volume in client.volumes.list(filters={"label": DRILL_LABEL}):
        if fleet_name in volume.name:
            volume.remove(force=True)


@pytest.fixture(scope="module")
def fleet(docker_client: docker.DockerClient, engine_images: list[str]) -> Iterator[Fleet]:
    missing = [tag for tag in (BASELINE, "2.4.1", "2.4.2") if tag not in engine_images]
    if missing:
        pytest.fail(f"images engine:{', engine:'.join(missing)} not found: run `make images`", pytrace=False)
    made = Fleet(name=unique_name("drl"), base_port=BASE_PORT, client=docker_client)
    try:
        made.up(2, BASELINE, model="mixed")
        yield made
    finally:
        try:
            remove_twins(docker_client, made.name)
        finally:
            made.down()
            sweep(made.name, docker_client)


@pytest.fixture
def drill(fleet: Fleet, docker_client: docker.DockerClient, tmp_path: Path) -> Iterator[Drill]:
    made = Drill(fleet, docker_client, tmp_path)
    assert made.leftovers()["containers"] == [], "a twin of an earlier test is still there"
    yield made


def load_on(engine: Engine) -> LoadGenerator:
    """Light load on one Engine, running once it has an acknowledged turn."""
    lg = LoadGenerator([engine], rate=0.5, feedback_ratio=0.5, max_seconds=600)
    lg.start()
    lg.wait_acked(1, timeout=15)
    return lg


def assert_writes_kept(engine: Engine, lg: LoadGenerator) -> None:
    missing = brain.missing_acknowledged_detail(lg, engine)
    assert not missing["tasks"] and not missing["signals"], f"{engine.engine_id}: acknowledged writes lost: {missing}"


def assert_caught_and_back(entry: dict[str, Any], evidence: str, target: float = 60.0) -> None:
    """One Engine of a passed drill: caught by the upgrade's gates, rolled back, healthy on 2.3.0 with every row."""
    assert entry["passed"], entry["problems"]
    assert entry["caught"] and entry["rolled_back"], entry["upgrade"]
    assert entry["upgrade"]["status"] == "rolled_back" and entry["upgrade"]["evidence"] == evidence, entry["upgrade"]
    assert entry["upgrade"]["rollback_kind"] == "image+brain"  # both releases ran migration 0006
    verified = entry["verified"]
    assert verified["is_healthy"] and verified["version"] == BASELINE and verified["on_version"]
    assert verified["rows_kept"] and verified["missing_rows"] == 0 and verified["reference_rows"] > 0
    assert sorted(entry["steps"]) == sorted(STEP_NAMES)
    for name in STEP_NAMES:
        assert isinstance(entry["steps"][name]["seconds"], (int, float)), (name, entry["steps"][name])
    assert entry["steps"]["drain"]["recorded"] and entry["steps"]["switch"]["recorded"]
    assert entry["rto_seconds"] > 0 and entry["target_rto_seconds"] == target
    assert entry["rto_pass"] is (entry["rto_seconds"] <= target)
    assert entry["dominant_step"] in STEP_NAMES
    assert entry["rto_dominant_step"] in ("image_rollback", "brain_restore", "time_to_healthy", "rollback_checks")
    assert entry["removed"] is True


def assert_report_files(drill: Drill) -> None:
    folder = next(drill.report_dir.glob("*/drill.json")).parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("drill.json", "drill.md", "upgrade.json"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    text = (folder / "drill.md").read_text()
    assert "RTO **" in text and "What the upgrade role does not record" in text
    # No report, diagnostics file or output holds the Engines' key.
    for path in [p for p in folder.rglob("*") if p.is_file()] + list(drill.tmp.glob("run*.out")):
        assert drill.fleet.api_key not in path.read_text(errors="replace"), path


# ---------------------------------------------------------------------- engine_twin on its own


def test_engine_twin_makes_verifies_and_removes_twins(drill: Drill) -> None:
    before = drill.production()
    extra = {"twin_run_id": "mod-1", "twin_state_dir": str(drill.state_dir / "drill"), "twin_keep": True}
    run = run_playbook(PLAYBOOKS / "engine_twin.yml", extra_vars=extra, inventory=drill.inventory, args=FORKS,
                       env=ANSIBLE_ENV)
    assert run.rc == 0, run.stdout[-3000:]
    twins = {h: run.result("Make the twin", h)["twin"] for h in (drill.user.engine_id, drill.compose.engine_id)}
    for eid, twin in twins.items():
        engine = next(e for e in drill.fleet.engines if e.engine_id == eid)
        source = engine.container()
        made = drill.client.containers.get(twin["name"])
        assert twin["name"] == f"{source.name}--drill" and twin["volume"] == f"engine-drill-{source.name}"
        assert made.attrs["Image"] == source.attrs["Image"] and twin["version"] == BASELINE
        assert sorted(made.attrs["Config"]["Env"]) == sorted(source.attrs["Config"]["Env"])  # the same configuration
        assert made.attrs["HostConfig"]["RestartPolicy"] == source.attrs["HostConfig"]["RestartPolicy"]
        assert made.attrs["HostConfig"]["NetworkMode"] == source.attrs["HostConfig"]["NetworkMode"]
        assert made.labels[DRILL_LABEL] == "mod-1" and made.labels[OF_LABEL] == source.name
        assert not [k for k in made.labels if k.startswith("com.docker.compose.")]
        binding = made.attrs["HostConfig"]["PortBindings"]["8000/tcp"]
        assert binding == [{"HostIp": "127.0.0.1", "HostPort": str(twin["port"])}]
        assert twin["port"] != engine.port and requests.get(f"{twin['url']}/health", timeout=5).status_code == 200
        mounts = {m["Destination"]: m.get("Name") for m in made.attrs["Mounts"]}
        assert mounts == {"/data": twin["volume"]}
        for network in made.attrs["NetworkSettings"]["Networks"].values():
            assert not [a for a in network.get("Aliases") or [] if a not in (made.id[:12], made.name)]
        # The reference is the snapshot the twin's brain was made from, rows counted per table.
        assert sha256(Path(twin["reference"]["path"])) == twin["reference"]["sha256"]
        assert twin["reference"]["rows"] == sum(twin["reference"]["tables"].values()) > 0
        verified = run.result("Verify the twin", eid)["verification"]
        assert verified["is_verified"] and verified["missing_rows"] == 0
    assert "Compose" in " ".join(twins[drill.compose.engine_id]["notes"])
    assert twins[drill.user.engine_id]["notes"] == []
    assert run.result("Plan a twin (check mode)", drill.user.engine_id)["twin"]["url"] is None

    # A pre-drill row taken out of a twin's brain is named as missing.
    twin = twins[drill.user.engine_id]
    path = Path(drill.client.volumes.get(twin["volume"]).attrs["Mountpoint"]) / "brain.sqlite"
    conn = sqlite3.connect(path, timeout=30)
    try:
        with conn:
            conn.execute("DELETE FROM scheduled_jobs")
    finally:
        conn.close()
    check = run_playbook(PLAYBOOKS / "engine_twin_verify.yml", inventory=drill.inventory, args=FORKS,
                         env=ANSIBLE_ENV, limit=drill.user.engine_id,
                         extra_vars={"twin_name": twin["name"], "twin_run_id": "mod-1",
                                     "twin_state_dir": extra["twin_state_dir"]})
    assert check.rc == 0, check.stdout[-3000:]
    verification = check.result("Verify the twin", drill.user.engine_id)["verification"]
    assert not verification["is_verified"] and not verification["rows_kept"]
    assert verification["missing"]["scheduled_jobs"]["count"] == twin["reference"]["tables"]["scheduled_jobs"]
    assert verification["is_healthy"] and verification["on_version"]
    swept = check.result("Sweep the twins", drill.user.engine_id)["removed"]
    assert sorted(swept["containers"]) == sorted(t["name"] for t in twins.values())
    drill.assert_nothing_left()
    drill.assert_untouched(before, idle=drill.compose)


# ---------------------------------------------------------------------- drills to broken releases


def test_a_drill_to_241_is_caught_by_health_and_rolled_back(drill: Drill) -> None:
    before = drill.production()
    lg = load_on(drill.user)
    try:
        run = drill.run("2.4.1", **FEW_PROBES)
    finally:
        lg.stop(timeout=10)
    assert run.rc == 0, run.stdout[-4000:]
    report = drill.report()
    assert report["outcome"] == "passed" and report["counts"] == {"engines": 2, "passed": 2, "failed": 0}
    entries = drill.entries()
    for entry in entries.values():
        assert_caught_and_back(entry, evidence="health")
        # 2.4.1 never answers healthy: the role records no detection time, the drill estimates it and says so.
        assert entry["steps"]["detection"]["estimated"]
    assert "Compose" in " ".join(entries[drill.compose.engine_id]["twin"]["notes"])
    fields = [m["field"] for m in report["missing_fields"]]
    assert "engine_upgrade_result.timings.detection_seconds" in fields
    assert "engine_upgrade_result.timings.snapshot_seconds" in fields
    stats = run.result(ROLE + "Drill | Give the outcome to AWX")["ansible_stats"]["data"]["september_engine_drill"]
    assert stats["outcome"] == "passed" and stats["failed_engines"] == []
    assert_report_files(drill)
    drill.assert_nothing_left()
    drill.assert_untouched(before, idle=drill.compose)
    assert_writes_kept(drill.user, lg)


def test_a_drill_to_242_is_caught_by_its_measures_on_probe_turns(drill: Drill) -> None:
    before = drill.production()
    lg = load_on(drill.compose)
    try:
        run = drill.run("2.4.2")
    finally:
        lg.stop(timeout=10)
    assert run.rc == 0, run.stdout[-4000:]
    report = drill.report()
    assert report["outcome"] == "passed", report
    for entry in drill.entries().values():
        assert_caught_and_back(entry, evidence="fail")
        assert entry["upgrade"]["rule"], entry["upgrade"]  # a rule of the verdict fired, on evidence
        assert entry["steps"]["detection"]["recorded"] and not entry["steps"]["detection"]["estimated"]
    upgrade = json.loads(next(drill.report_dir.glob("*/upgrade.json")).read_text())
    for engine in upgrade["engines"]:
        assert engine["verdict"]["decision"] == "fail"
        assert engine["verdict"]["evidence"]["canary"]["turns"] >= 20  # the twins' probe turns after the switch
    drill.assert_nothing_left()
    drill.assert_untouched(before, idle=drill.user)
    assert_writes_kept(drill.compose, lg)


# ---------------------------------------------------------------------- a drill killed mid-way, then again


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_drill_killed_while_its_twins_bake_is_swept_by_the_next(drill: Drill) -> None:
    before = drill.production()
    ensure_collection_link()
    vars_file = drill.tmp / "kill.json"
    vars_file.write_text(json.dumps(drill.extra("2.4.2", **FEW_PROBES)))
    command = [str(Path(sys.executable).with_name("ansible-playbook")), str(REPO_ROOT / "playbooks" / "drill.yml"),
               "-i", str(drill.inventory), "-e", f"@{vars_file}", *FORKS]
    proc = subprocess.Popen(command, env=ansible_env(ANSIBLE_ENV), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    seen, workers = [], set()
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("TASK [") and "Upgrade | Bake: healthy at every check" in line:
            workers = descendants(proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=30)
    (drill.tmp / "killed.out").write_text("".join(seen))
    assert proc.returncode == -signal.SIGKILL, "the drill ended before its twins baked:\n" + "".join(seen[-40:])
    # ansible-core's workers run modules in sessions of their own: wait until the last one has ended.
    wait_until(lambda: not any(_alive(p) for p in workers), 120, "the killed run's module workers to end",
               interval=0.5, last=lambda: [p for p in workers if _alive(p)])
    left = drill.leftovers()
    assert len(left["containers"]) >= 2 and len(left["volumes"]) == 2 and left["folders"], left

    run = drill.run("2.4.1", limit=f"{drill.user.engine_id},september_engine_drill", **FEW_PROBES)
    assert run.rc == 0, run.stdout[-4000:]
    swept = run.result(ROLE + "Drill | Sweep the leftovers of earlier drills", drill.user.engine_id)["removed"]
    assert set(left["containers"]) <= set(swept["containers"]), (left, swept)
    assert set(left["volumes"]) <= set(swept["volumes"]) and len(swept["folders"]) == 1
    entries = drill.entries()
    assert list(entries) == [drill.user.engine_id]  # --limit: only that Engine
    assert_caught_and_back(entries[drill.user.engine_id], evidence="health")
    drill.assert_nothing_left()
    drill.assert_untouched(before, idle=None)


# ---------------------------------------------------------------------- the last play and --limit


def test_a_twin_host_that_cannot_be_reached_is_removed_by_the_last_play(drill: Drill) -> None:
    before = drill.production()
    unreachable = {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 1,
                   "ansible_user": "nobody", "ansible_ssh_common_args": "-o ConnectTimeout=5"}
    run = drill.run("2.4.1", limit=f"{drill.compose.engine_id},september_engine_drill",
                    engine_drill_twin_connection=unreachable, **FEW_PROBES)
    assert run.rc == 2, run.stdout[-4000:]
    report = drill.report()
    (entry,) = report["engines"]
    assert report["outcome"] == "failed" and not entry["passed"]
    assert "did not answer" in entry["problems"][0], entry["problems"]
    # The twin was made (play 1, through the Engine's own connection), never upgraded, and removed by the last play.
    (sweep_result,) = report["sweeps"]
    assert sweep_result["error"] is None and sweep_result["through"] == drill.compose.engine_id
    assert [c for c in sweep_result["removed"]["containers"] if c.endswith("--drill")], sweep_result
    assert entry["removed"] is True
    drill.assert_nothing_left()
    drill.assert_untouched(before, idle=drill.user)


def test_a_limit_that_leaves_out_the_twins_is_refused_before_anything_is_made(drill: Drill) -> None:
    run = drill.run("2.4.1", limit=drill.user.engine_id)
    assert run.rc == 2, run.stdout[-3000:]
    assert "september_engine_drill" in run.stdout and "Nothing was made" in run.stdout
    drill.assert_nothing_left()
    assert not drill.report_dir.exists()
