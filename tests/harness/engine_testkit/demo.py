# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""`make demo`: a local fleet under load, upgraded canary first by the collection's upgrade.yml.

1. a fresh fleet of Engines on loopback, in both hosting models, at the starting release;
2. the load generator drives authenticated turns and feedback against every Engine, recording each
   acknowledged write;
3. ``ansible-playbook playbooks/upgrade.yml`` upgrades the fleet (canary, 10%, 50%, 100%), output live. The
   load is the evidence: each batch bakes until its verdict decides, judged against its Engines' own baselines
   (their turns before the switch) and against control Engines not upgraded yet, measured over the same window;
4. the load stops, and every acknowledged write is looked for in the brains;
5. each batch's verdict (decision, rule, turns per cohort) is printed, then ``playbooks/health.yml`` shows each
   Engine's version and health, and the run's report is printed.

The fleet stays up afterwards (``make demo-down`` removes it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def _kept_brains(state_dir: Path, engine_id: str) -> list[Path]:
    """The brains a restore replaced and kept (snapshots of kind pre-restore) in the Engine's snapshot folder."""
    folder = state_dir / "snapshots" / engine_id
    kept = []
    for manifest in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if json.loads(manifest.read_text(encoding="utf-8")).get("kind") == "pre-restore":
            kept.append(manifest.with_suffix(".sqlite"))
    return kept


def _lost_writes(fleet: Fleet, load: LoadGenerator, state_dir: Path) -> tuple[int, dict[str, tuple[int, int, str]]]:
    """(acknowledged turns, {engine: (missing from its live brain, of those in none of its kept brains, where)})."""
    missing, acked = {}, 0
    for engine in fleet.engines:
        acked += len(load.acked_task_ids(engine.engine_id))
        lost = brain.missing_acknowledged(load, engine)
        if lost:
            kept = _kept_brains(state_dir, engine.engine_id)
            nowhere = set(lost)
            for path in kept:
                nowhere &= brain.missing_acknowledged(load, engine, path)  # what this kept brain lacks too
            where = ", ".join(str(p) for p in kept) or "no kept brain"
            missing[engine.engine_id] = (len(lost), len(nowhere), where)
    return acked, missing


#: The load: turns per second per Engine. upgrade.yml starts once every Engine has MIN_TURNS acknowledged turns.
RATE = 2.0
#: The verdict decides on this many turns per cohort (the role's default is 20: demo-sized windows).
MIN_TURNS = 10


def _cohort(part: dict[str, Any] | None) -> str:
    if not part:
        return "none"
    rate = part.get("error_rate")
    errors = "n/a" if rate is None else f"{rate * 100:.1f}% errors"
    return (
        f"{part.get('turns', 0)} turns on {part.get('engines', '?')} Engine(s), {errors}, "
        f"p99 {part.get('latency_p99_ms')} ms"
    )


def _verdicts(report: dict[str, Any]) -> None:
    """Each batch's verdict as the run recorded it: on what evidence the release was judged."""
    by_batch: dict[int, list[dict[str, Any]]] = {}
    for entry in report.get("engines") or []:
        by_batch.setdefault(int(entry.get("batch") or 0), []).append(entry)
    for batch, entries in sorted(by_batch.items()):
        names = ", ".join(e["engine"] for e in entries)
        first = entries[0]
        verdict = first.get("verdict") or {}
        label = "canary" if batch == 1 else f"batch {batch}"
        print(
            f"{label} ({names}): {first.get('status')}, evidence {first.get('evidence')}"
            + (f", policy {first.get('policy')}" if first.get("policy") else "")
        )
        if verdict:
            evidence = verdict.get("evidence") or {}
            print(
                f"  verdict {verdict.get('decision')}" + (f" (rule {verdict['rule']})" if verdict.get("rule") else "")
            )
            print(f"  upgraded: {_cohort(evidence.get('canary'))}")
            print(f"  controls, same window: {_cohort(evidence.get('control'))}")
            print(f"  own baselines, before the switch: {_cohort(evidence.get('baseline'))}")
            if verdict.get("symptom"):
                print(f"  fired: {verdict['symptom']}")
            if verdict.get("decision") == "undecided" and verdict.get("missing"):
                print(f"  missing: {'; '.join(verdict['missing'])}")
        if first.get("reason"):
            print(f"  reason: {first['reason']}")


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

    bake = int(os.environ.get("DEMO_BAKE_SECONDS", "15"))
    longest = max(60, bake)
    _banner(f"load: turns and feedback against every Engine while upgrade.yml takes them to {to_version}")
    print(
        f"The load ({RATE:g} turns/s per Engine) is the evidence, no synthetic probe is sent: the canary bakes {bake} s"
        f" (about {int(RATE * bake)} turns of its own), then in rounds until its verdict decides (at most {longest} s);"
        f" it is judged against its own baseline (its turns before the switch) and against up to 5 control Engines"
        f" not upgraded yet, measured over the same window. The verdict decides on {MIN_TURNS} turns per cohort (the"
        f" role's default is 20); a canary still undecided after {longest} s would be rolled back. The later batches"
        f" bake 6 s each, so that they are judged too. An Engine not healthy within 30 s of its switch is rolled"
        f" back on its health alone."
    )
    # The demo's own settings (its text above says them), not the test suites' fast ones (engine_testkit.settings).
    settings = {
        "engine_target_version": to_version,
        "engine_state_dir": state_dir,
        "engine_report_dir": report_dir,
        "engine_upgrade_canary_bake_seconds": bake,
        "engine_upgrade_canary_max_bake_seconds": longest,
        "engine_upgrade_bake_seconds": 6,
        "engine_upgrade_bake_interval": 2,
        "engine_upgrade_metrics_min_turns": MIN_TURNS,
        "engine_upgrade_baseline_seconds": 120,
        "engine_upgrade_drain_timeout": 30,
        # A reference Engine is healthy within seconds of its start: a broken release (2.4.1) is caught in 30 s.
        "engine_upgrade_health_timeout": 30,
    }
    extra = [arg for name, value in settings.items() for arg in ("-e", f"{name}={value}")]
    extra += ["-f", str(max(count, 5))]
    with LoadGenerator(fleet.engines, rate=RATE, feedback_ratio=0.25) as load:
        # Every Engine's baseline: the measures before its switch are compared with those after it.
        load.wait_acked(MIN_TURNS, timeout=120)
        rc = _playbook("upgrade.yml", inventory, extra)
    stats = load.stats()

    _banner("every acknowledged write, looked for in the brains")
    acked, missing = _lost_writes(fleet, load, state_dir)
    print(f"{acked} turns acknowledged during the upgrade, failures by kind: {stats['totals']['failures'] or 'none'}")
    if missing:
        print("not in the live brain (a rolled-back Engine keeps what the bad release wrote in its bad-window brain):")
        for engine_id, (lost, nowhere, where) in sorted(missing.items()):
            found = "all of them in" if not nowhere else f"{nowhere} of them LOST, in neither the live brain nor"
            print(f"  {engine_id}: {lost}, {found} the kept brain {where}")
    else:
        print("all of them are in the brains")

    reports = sorted(report_dir.glob("*/upgrade.json"), key=lambda p: p.stat().st_mtime)
    if reports:
        report = json.loads(reports[-1].read_text(encoding="utf-8"))
        _banner(f"the verdicts: outcome {report.get('outcome')}, on what evidence each batch was judged")
        _verdicts(report)

    _banner("the fleet now")
    _playbook("health.yml", inventory, [])
    if reports:
        markdown = reports[-1].with_suffix(".md")
        _banner(f"the run's report: {markdown}")
        print(markdown.read_text(encoding="utf-8"))
    print(f"upgrade.yml exited {rc}. The fleet stays up: `make demo-down` removes it.")
    return rc
