# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""`make demo`: a local fleet under load, upgraded canary first by the collection's upgrade.yml.

1. a fresh fleet of Engines on loopback, in both hosting models, at the starting release;
2. the load generator drives authenticated turns and feedback against every Engine, recording each
   acknowledged write;
3. ``ansible-playbook playbooks/upgrade.yml`` upgrades the fleet (canary, 10%, 50%, 100%), output live;
4. the load stops, and every acknowledged write is looked for in the brains;
5. ``playbooks/health.yml`` shows each Engine's version and health, and the run's report is printed.

The fleet stays up afterwards (``make demo-down`` removes it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from . import brain
from .ansible import REPO_ROOT, ansible_env, ensure_collection_link
from .fleet import WORKDIR_ROOT, Fleet, sweep
from .loadgen import LoadGenerator


def _banner(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _playbook(name: str, inventory: Path, extra: list[str]) -> int:
    command = [str(Path(sys.executable).with_name("ansible-playbook")), str(REPO_ROOT / "playbooks" / name)]
    command += ["-i", str(inventory), *extra]
    env = ansible_env({"PYTHONUNBUFFERED": "1", "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "false"})
    return subprocess.run(command, env=env, check=False).returncode


def _lost_writes(fleet: Fleet, load: LoadGenerator) -> tuple[int, dict[str, int]]:
    """(acknowledged turns, {engine: acknowledged turns missing from its brain})."""
    missing, acked = {}, 0
    for engine in fleet.engines:
        acked += len(load.acked_task_ids(engine.engine_id))
        lost = brain.missing_acknowledged(load, engine)
        if lost:
            missing[engine.engine_id] = len(lost)
    return acked, missing


def run_demo(name: str, count: int, from_version: str, to_version: str, base_port: int = 9001) -> int:
    workdir = WORKDIR_ROOT / name
    ensure_collection_link()
    _banner(f"a fresh fleet '{name}': {count} Engines at {from_version}, both hosting models")
    sweep(name)
    fleet = Fleet(name=name, base_port=base_port, workdir=workdir)
    fleet.up(count, from_version, model="mixed", timeout=120)
    inventory = fleet.write_inventory(workdir / "inventory.yml")
    state_dir, report_dir = workdir / "state", workdir / "reports"
    print(f"inventory: {inventory}\nsnapshots and locks: {state_dir}\nreports: {report_dir}")

    _banner(f"load: turns and feedback against every Engine while upgrade.yml takes them to {to_version}")
    extra = [
        "-e", f"engine_target_version={to_version}",
        "-e", f"engine_state_dir={state_dir}",
        "-e", f"engine_report_dir={report_dir}",
        "-e", f"engine_upgrade_canary_bake_seconds={os.environ.get('DEMO_BAKE_SECONDS', '15')}",
        "-e", "engine_upgrade_bake_interval=2",
        # A demo-sized baseline and bake: the measures decide on 10 turns (the default is 20).
        "-e", "engine_upgrade_metrics_min_turns=10",
        "-e", "engine_upgrade_baseline_seconds=120",
        "-e", "engine_upgrade_drain_timeout=30",
        "-f", str(max(count, 5)),
    ]
    with LoadGenerator(fleet.engines, rate=2.0, feedback_ratio=0.25) as load:
        # Every Engine's baseline: the measures before its switch are compared with those after it.
        time.sleep(float(os.environ.get("DEMO_WARMUP_SECONDS", "10")))
        rc = _playbook("upgrade.yml", inventory, extra)
    stats = load.stats()

    _banner("every acknowledged write, looked for in the brains")
    acked, missing = _lost_writes(fleet, load)
    print(f"{acked} turns acknowledged during the upgrade, failures by kind: {stats['totals']['failures'] or 'none'}")
    if missing:
        print("not in the live brain (a rolled-back Engine keeps them in its saved bad-window brain):")
        for engine_id, lost in sorted(missing.items()):
            print(f"  {engine_id}: {lost}")
    else:
        print("all of them are in the brains")

    _banner("the fleet now")
    _playbook("health.yml", inventory, [])
    reports = sorted(report_dir.glob("*/upgrade.md"))
    if reports:
        _banner(f"the run's report: {reports[-1]}")
        print(reports[-1].read_text(encoding="utf-8"))
    print(f"upgrade.yml exited {rc}. The fleet stays up: `make demo-down` removes it.")
    return rc
