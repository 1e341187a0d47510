# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The playbooks over SSH against Engines on two lab Docker hosts (each with its own filesystem) and one local Engine.

One lab per module (``standard_lab``): lab hosts h1 and h2, each with a per-user container Engine and a Compose
project Engine (both publishing on 127.0.0.1:9001/9002 of their own host), and one local per-user Engine.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from engine_testkit import brain
from engine_testkit.ansible import REPO_ROOT, PlaybookRun, run_playbook
from engine_testkit.dockerhosts import Trigger, leftovers

PLAYBOOKS = REPO_ROOT / "playbooks"
HERE = Path(__file__).resolve().parent
STATE_DIR = Path("/var/lib/september-engine")


def role_results(run: PlaybookRun, name: str) -> dict[str, dict]:
    """Per host, the result of the role task called ``name`` (role task names carry their role as a prefix)."""
    return {
        host: result
        for play in (run.data or {}).get("plays", [])
        for task in play.get("tasks", [])
        if task["task"]["name"].split(" : ", 1)[-1] == name
        for host, result in task["hosts"].items()
    }


def snapshots_taken(run: PlaybookRun) -> dict[str, dict]:
    """Per host, the result of the task that took a snapshot (the one that returned ``snapshot.sha256``)."""
    return {
        host: result
        for play in (run.data or {}).get("plays", [])
        for task in play.get("tasks", [])
        for host, result in task["hosts"].items()
        if isinstance(result.get("snapshot"), dict) and result["snapshot"].get("sha256")
    }


def all_ids(std) -> list[str]:
    return [e.engine_id for e in std.lab.engines] + [e.engine_id for e in std.local.engines]


def test_lab_is_two_docker_hosts_with_their_own_engines(standard_lab):
    std = standard_lab
    print(f"lab up in {std.up_seconds:.1f}s: {std.lab.hosts}")
    assert len(std.lab.hosts) == 2
    for host in std.lab.hosts:
        # Each host runs its own Docker daemon with its own two Engines, on the same ports as its neighbour.
        assert host.docker_ps() == sorted(e.container_name for e in host.engines)
        assert sorted(e.model for e in host.engines) == ["compose", "container"]
        assert sorted(e.port for e in host.engines) == [9001, 9002]
        assert host.exec(["hostname"]).stdout.strip() == host.name
        assert host.ssh("hostname").stdout.strip() == host.name
        # Root by key only: a password login is not even offered.
        argv = host.ssh_argv()
        password = subprocess.run(
            [*argv[:-1], "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password", argv[-1], "true"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert password.returncode == 255 and "Permission denied (publickey)" in password.stderr, password.stderr
    # Compose v1 on h2; v2 on h1 when the image has the plugin. The project's container is named accordingly.
    h1, h2 = std.lab.hosts
    assert h2.compose_version == "v1"
    has_v2 = h1.exec(["test", "-x", "/usr/libexec/docker/cli-plugins/docker-compose"]).rc == 0
    assert h1.compose_version == ("v2" if has_v2 else "v1")
    for host in std.lab.hosts:
        (project,) = [e for e in host.engines if e.model == "compose"]
        sep = "-" if host.compose_version == "v2" else "_"
        assert project.container_name == f"{project.compose_project}{sep}engine{sep}1"
    assert std.inventory.stat().st_mode & 0o777 == 0o600
    assert std.lab.key_file.stat().st_mode & 0o777 == 0o600


def test_health_playbook_over_ssh_reports_all_five_healthy(standard_lab):
    std = standard_lab
    started = time.monotonic()
    run = run_playbook(PLAYBOOKS / "health.yml", inventory=std.inventory)
    print(f"health.yml over SSH: {time.monotonic() - started:.1f}s")
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
    ids = all_ids(std)
    lines = {host: result["msg"] for host, result in role_results(run, "Health | Engine").items()}
    assert lines == {i: f"{i}: 2.3.0 healthy" for i in ids}
    summary = next(iter(role_results(run, "Health | Fleet summary").values()))["msg"]
    assert summary.startswith("5 Engines, 5 healthy"), summary
    # The modules ran on each Engine's own Docker host: they found the container that host's daemon runs.
    found = role_results(run, "Health | Find the Engine")
    for engine in std.lab.engines:
        assert found[engine.engine_id]["engine"]["container_id"] == engine.container().id
        assert found[engine.engine_id]["engine"]["url"] == engine.url
    for host in std.lab.hosts:
        log = host.exec(["cat", "/var/log/sshd.log"]).stdout
        assert "Accepted publickey for root" in log


def test_snapshot_playbook_writes_on_each_lab_host_not_on_the_controller(standard_lab):
    std = standard_lab
    before = set(STATE_DIR.rglob("*")) if STATE_DIR.exists() else set()
    run = run_playbook(PLAYBOOKS / "snapshot.yml", inventory=std.inventory)
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
    taken = snapshots_taken(run)
    assert sorted(taken) == sorted(all_ids(std)), sorted(taken)
    for host in std.lab.hosts:
        others = [e.engine_id for h in std.lab.hosts if h is not host for e in h.engines]
        names = host.listdir(STATE_DIR / "snapshots")
        # This host holds the snapshots of its own Engines, and only of them.
        assert sorted(names) == sorted(e.engine_id for e in host.engines), names
        assert not set(names) & set(others)
        for engine in host.engines:
            folder = STATE_DIR / "snapshots" / engine.engine_id
            assert host.exec(["stat", "-c", "%a", str(folder)]).stdout.strip() == "700"
            snapshot = taken[engine.engine_id]["snapshot"]
            files = host.listdir(folder)
            assert f"{snapshot['name']}.sqlite" in files and f"{snapshot['name']}.json" in files, files
            # The checksum the module recorded is the one of the file on that host, and the copy is a brain.
            path = folder / f"{snapshot['name']}.sqlite"
            assert host.sha256(path) == snapshot["sha256"]
            manifest = json.loads(host.read_file(folder / f"{snapshot['name']}.json"))
            assert manifest["sha256"] == snapshot["sha256"]
            local_copy = host.fetch(path, std.local_state.parent / "fetched" / engine.engine_id / "brain.sqlite")
            assert brain.applied_migrations(local_copy)[-1].startswith("0005")
    # The controller: the local Engine's snapshot in its own state folder, nothing of a lab Engine anywhere.
    local_id = std.local.engines[0].engine_id
    assert sorted(p.name for p in (std.local_state / "snapshots").iterdir()) == [local_id]
    after = set(STATE_DIR.rglob("*")) if STATE_DIR.exists() else set()
    lab_ids = {e.engine_id for e in std.lab.engines}
    assert not {p for p in after - before if lab_ids & set(p.parts)}, sorted(after - before)[:5]


def test_key_never_shows_in_a_vvv_run_over_ssh(standard_lab):
    std = standard_lab
    key = std.lab.api_key
    runs = [
        run_playbook(HERE / "playbooks" / "key_probe.yml", inventory=std.inventory, args=["-vvv"]),
        run_playbook(PLAYBOOKS / "health.yml", inventory=std.inventory, args=["-vvv"]),
    ]
    for run in runs:
        assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
        # It went over SSH, verbosely (the module invocations and their results are in the output)...
        assert "ESTABLISH SSH CONNECTION FOR USER: root" in run.stdout
        assert "SSH: EXEC ssh" in run.stdout
        # ...and the key is nowhere: not in stdout, stderr, nor in any result.
        assert key not in run.stdout
        assert key not in run.stderr
        assert key not in json.dumps(run.data)
    probe = runs[0]
    # The key was in play: passed to the modules (masked in the invocation shown) and printed by the command.
    assert '"api_key": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"' in probe.stdout
    assert "key is ********" in probe.stdout
    printed = {
        h: r["eval"]
        for h, r in role_results(probe, "Key probe | An eval command that prints the key it was given").items()
    }
    assert set(printed) == set(all_ids(std))
    for host in std.lab.hosts:
        # Nothing Ansible left on the lab host holds the key either.
        found = host.exec(["grep", "-rlF", key, "/root/.ansible", "/tmp", "/var/lib/september-engine"])
        assert found.stdout.strip() == "", found.stdout


@pytest.mark.parametrize("how", ["pause", "sshd"])
def test_unreachable_lab_host_is_reported_and_the_others_are_healthy(standard_lab, how):
    std = standard_lab
    down = std.lab.hosts[1]
    lost = {e.engine_id for e in down.engines}
    with down.unreachable(how):
        assert not down.is_reachable(timeout=3)
        started = time.monotonic()
        run = run_playbook(PLAYBOOKS / "health.yml", inventory=std.inventory)
        print(f"health.yml with {down.name} unreachable ({how}): {time.monotonic() - started:.1f}s")
        print("\n".join(line for line in run.stdout.splitlines() if "UNREACHABLE" in line))
    assert run.rc == 4, run.stdout[-3000:]
    for engine_id in all_ids(std):
        stats = run.stats[engine_id]
        if engine_id in lost:
            assert stats["unreachable"] == 1, (engine_id, stats)
        else:
            assert stats["unreachable"] == 0 and stats["failures"] == 0, (engine_id, stats)
    lines = {host: result["msg"] for host, result in role_results(run, "Health | Engine").items()}
    assert lines == {i: f"{i}: 2.3.0 healthy" for i in all_ids(std) if i not in lost}
    summary = next(iter(role_results(run, "Health | Fleet summary").values()))["msg"]
    assert summary.startswith("3 Engines, 3 healthy"), summary
    # Back afterwards: reachable over SSH, its Engines healthy.
    assert down.is_reachable()
    down.fleet(std.lab.api_key).wait_healthy(down.engines, 30)


def test_a_host_lost_in_the_middle_of_a_task_ends_unreachable_not_hung(standard_lab):
    """The inventory's SSH keep-alives turn a Docker host that stops answering mid-module into UNREACHABLE."""
    std = standard_lab
    down = std.lab.hosts[1]
    lost = {e.engine_id for e in down.engines}
    for engine in down.engines:
        engine.set_llm_outage(True)  # its health wait keeps the module running on that host
    extra = {"engine_health_report_wait": True, "engine_health_report_wait_timeout": 300}
    result: dict[str, PlaybookRun] = {}

    def module_running() -> bool:
        return down.exec(["pgrep", "-f", "AnsiballZ_engine_health"]).rc == 0

    paused_at: list[float] = []

    def cut_off() -> None:
        down.pause()
        paused_at.append(time.monotonic())

    try:
        with Trigger(module_running, cut_off, timeout=120) as trigger:
            result["run"] = run_playbook(PLAYBOOKS / "health.yml", inventory=std.inventory, extra_vars=extra)
        ended = time.monotonic()
    finally:
        down.unpause()
        for engine in down.engines:
            engine.set_llm_outage(False)
    assert trigger.error is None and trigger.fired.is_set(), trigger.error
    run = result["run"]
    print(f"UNREACHABLE {ended - paused_at[0]:.1f}s after the pause")
    # Well before the module's own 300 s wait: the SSH keep-alives gave up on the silent host.
    assert ended - paused_at[0] < 90
    assert run.rc == 4, run.stdout[-3000:]
    for engine_id in all_ids(std):
        assert run.stats[engine_id]["unreachable"] == (1 if engine_id in lost else 0), (engine_id, run.stats[engine_id])
    down.wait_ssh(30)
    down.fleet(std.lab.api_key).wait_healthy(down.engines, 60)


def test_docker_daemon_restart_on_a_lab_host_brings_its_engines_back(standard_lab):
    std = standard_lab
    host = std.lab.hosts[0]
    started = {e.engine_id: e.container().attrs["State"]["StartedAt"] for e in host.engines}
    host.stop_dockerd()
    assert host.exec(["lab-dockerd", "status"]).rc == 3
    assert host.probe_health([e.url for e in host.engines], 0)["pending"]  # down with their daemon
    host.start_dockerd()
    host.fleet(std.lab.api_key).wait_healthy(host.engines, 60)
    host.restart_dockerd()
    host.fleet(std.lab.api_key).wait_healthy(host.engines, 60)
    for engine in host.engines:
        assert engine.container().attrs["State"]["StartedAt"] != started[engine.engine_id]
    assert host.is_reachable()


def test_lab_down_removes_everything_even_a_paused_host(make_lab):
    lab = make_lab(hosts=1)
    host = lab.hosts[0]
    lab.add_engines(host, 1, model="container")
    assert leftovers(lab.name, lab.client)["cgroups"], "the Engine's cgroups are looked for where they are"
    host.pause()
    name = lab.name
    lab.down()
    assert leftovers(name, lab.client) == {"containers": [], "volumes": [], "cgroups": []}
