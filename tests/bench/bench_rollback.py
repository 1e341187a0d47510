# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Rollback of one Engine with a big brain restore: ``playbooks/rollback.yml`` vs a bare script of the runbook.

Three equivalent per-user Engines (reference Engine 2.3.0, each with the same ~500 MB brain, grown by brainfill)
are upgraded together to 2.4.0 (a forward-only migration) by ``upgrade.yml``, which leaves each a pre-upgrade
snapshot. Then each is rolled back, the brain restored from that snapshot, by one of:

- ``rollback.yml``: ``ansible-playbook playbooks/rollback.yml --limit <engine>``, timed end to end, role
  defaults except the drain timeout (the script's ``docker stop --time``);
- ``rollback.yml streak=1``: the same with ``engine_rollback_healthy_streak=1`` (one healthy answer is enough, as
  for the script: shows what the default streak of health probes costs);
- ``bare script``: ``tests/bench/rollback_runbook.sh`` (stop, cp the snapshot in, docker rm + docker run of the old
  image with the same configuration, poll /health until 200).

Upgrade, then the three rollbacks in an order that rotates, ``repeat`` times; medians and ratios. Every rollback is
checked afterwards: the Engine runs 2.3.0, is healthy, and its brain holds the snapshot's migrations (not 0006) and
the snapshot's task count, so the restore was real. Figures only: nothing here asserts a timing.

    python tests/bench/bench_rollback.py [--repeat 3] [--brain-mb 500]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import brainfill
from benchlib import (
    BUILD_DIR,
    HERE,
    NETWORK,
    dig,
    ensure_network,
    exit_on_sigterm,
    finish,
    loadavg,
    log,
    median,
    newest_report,
    phase,
    playbook,
    ratio,
    tail,
    timed,
    workdir,
    write_private,
)

from engine_testkit import brain, sweep
from engine_testkit.fleet import Engine, Fleet, docker_client, unique_name
from engine_testkit.waits import WaitTimeout, wait_until

FROM, TO = "2.3.0", "2.4.0"
BASE_PORT = 9380
PLAYBOOK = "rollback.yml"
STREAK1 = "rollback.yml streak=1"
BARE = "bare script"
VARIANTS = (PLAYBOOK, STREAK1, BARE)
SCRIPT = HERE / "rollback_runbook.sh"
#: The setup upgrade (not timed): one batch, health gates only, no bake.
SETUP_VARS = {
    "engine_target_version": TO,
    "engine_rollout_stages": ["100%"],
    "engine_upgrade_canary_bake_seconds": 0,
    "engine_upgrade_canary_max_bake_seconds": 0,
    "engine_upgrade_undecided": "proceed",
    "engine_upgrade_checks": False,
    "engine_upgrade_healthy_streak": 1,
    "engine_upgrade_drain_timeout": 10,
}


def _state(engine: Engine) -> dict[str, Any]:
    """Version, health, and what the brain holds (migrations, tasks, size), read from the host."""
    path = engine.brain_path()
    out: dict[str, Any] = {"version": engine.image_version(), "healthy": engine.is_healthy()}
    try:
        out["migrations"] = brain.applied_migrations(path)
        out["tasks"] = brain.row_counts(path).get("tasks")
        out["brain_bytes"] = path.stat().st_size
    except (OSError, LookupError) as exc:
        out["brain_error"] = str(exc)
    return out


def _snapshot_facts(path: Path) -> dict[str, Any]:
    return {"migrations": brain.applied_migrations(path), "tasks": brain.row_counts(path).get("tasks"),
            "bytes": path.stat().st_size}


def _snapshot_of(report: dict[str, Any] | None, state_dir: Path, host: str) -> Path | None:
    """The pre-upgrade snapshot of ``host``: the report's ``snapshot.path``, else the newest pre-upgrade file."""
    for entry in (report or {}).get("engines") or []:
        if isinstance(entry, dict) and entry.get("engine") == host:
            path = dig(entry, "snapshot", "path")
            if isinstance(path, str) and Path(path).is_file():
                return Path(path)
    found = sorted((state_dir / "snapshots").glob(f"**/pre-upgrade-{FROM}-to-{TO}-*.sqlite"),
                   key=lambda p: p.stat().st_mtime)
    found = [p for p in found if host in p.parts] or found
    return found[-1] if found else None


def _bare_config(engine: Engine, work: Path, api_key: str) -> dict[str, str]:
    """The container's configuration as the runbook's operator knows it (read before the timed part)."""
    container = engine.container()
    container.reload()
    attrs = container.attrs
    labels = {k: v for k, v in (attrs["Config"].get("Labels") or {}).items() if k.startswith("io.september.")
              and not k.startswith("io.september.engine.")}
    env_file = write_private(work / f"{engine.engine_id}.env", f"ENGINE_API_KEY={api_key}\n")
    label_file = write_private(work / f"{engine.engine_id}.labels", "".join(f"{k}={v}\n" for k, v in labels.items()))
    return {
        "ENGINE_CONTAINER": container.name,
        "ENGINE_VOLUME": engine.volume,
        "ENGINE_IMAGE": f"engine:{FROM}",
        "ENGINE_PORT": str(engine.port),
        "ENGINE_NETWORK": NETWORK,
        "ENGINE_ENV_FILE": str(env_file),
        "ENGINE_LABEL_FILE": str(label_file),
    }


def _check(engine: Engine, snapshot: dict[str, Any], how: dict[str, Any]) -> dict[str, Any]:
    """Was the rollback real? On 2.3.0, healthy, the brain is the snapshot's (migrations, tasks)."""
    with contextlib.suppress(WaitTimeout):  # the script returns on one 200 already; still unhealthy: said below
        wait_until(engine.is_healthy, 30, f"{engine.engine_id} to be healthy", interval=0.5)
    now = _state(engine)
    problems = []
    if now.get("version") != FROM:
        problems.append(f"runs {now.get('version')}, not {FROM}")
    if not now.get("healthy"):
        problems.append("not healthy")
    if now.get("migrations") != snapshot["migrations"]:
        problems.append(f"brain migrations {now.get('migrations')} != the snapshot's {snapshot['migrations']}")
    if now.get("tasks") != snapshot["tasks"]:
        problems.append(f"brain tasks {now.get('tasks')} != the snapshot's {snapshot['tasks']}")
    if how.get("brain_restored") is False:
        problems.append("the rollback report says the brain was not restored")
    return {**now, **how, "restore_real": not problems, "problems": problems}


def _rollback_report(report_dir: Path, host: str) -> dict[str, Any]:
    report, why = newest_report(report_dir, "rollback.json")
    if report is None:
        return {"report": why}
    entry = next((e for e in report.get("engines") or [] if isinstance(e, dict) and e.get("engine") == host), None)
    if entry is None:
        return {"report": f"no entry for {host}", "failed": report.get("failed")}
    return {"brain_restored": entry.get("brain_restored"), "kind": entry.get("kind"), "snapshot": entry.get("snapshot")}


@dataclass
class _Bench:
    """The benchmark's fleet (one Engine a variant), its inventory and folders, and the drain timeout."""

    fleet: Fleet
    inventory: Path
    work: Path
    logs: Path
    drain: int

    @property
    def engines(self) -> dict[str, Engine]:
        return dict(zip(VARIANTS, self.fleet.engines, strict=True))

    def fill_brains(self, brain_mb: float) -> int:
        """The same brain of ``brain_mb`` MB in every Engine (grown once from the first one's); its size."""
        first = self.fleet.engines[0]
        first.container().stop(timeout=10)
        tpl = brainfill.template(first.brain_path(), brain_mb)
        for engine in self.fleet.engines:
            brainfill.install(engine, tpl)
        self.fleet.wait_healthy(timeout=300)
        return tpl.stat().st_size

    def upgrade(self, rep: int, repeat: int, common: dict[str, str]) -> dict[str, dict[str, Any]]:
        """The setup upgrade of repetition ``rep`` (not timed); each variant's pre-upgrade snapshot and its facts.
        Raises unless every Engine runs TO with 0006 and has its snapshot."""
        state_dir, report_dir = Path(common["engine_state_dir"]), Path(common["engine_report_dir"])
        with phase(f"rollback: repetition {rep + 1}/{repeat}: upgrade.yml to {TO} (setup, not timed)"):
            up = playbook(f"setup upgrade {rep + 1}", "upgrade.yml", inventory=self.inventory,
                          extra_vars={**SETUP_VARS, **common}, log_path=self.logs / f"rep{rep + 1}-upgrade.log",
                          forks=len(VARIANTS), timeout=1800)
        report, _why = newest_report(report_dir)
        if up.rc != 0:
            raise RuntimeError(f"the setup upgrade failed (rc {up.rc}): {up.log}\n{tail(up.log)}")
        snapshots: dict[str, dict[str, Any]] = {}
        for variant, engine in self.engines.items():
            now = _state(engine)
            if now.get("version") != TO or "0006" not in (now.get("migrations") or []):
                raise RuntimeError(f"{engine.engine_id} after the setup upgrade: {now}")
            snap = _snapshot_of(report, state_dir, engine.engine_id)
            if snap is None:
                raise RuntimeError(f"{engine.engine_id}: no pre-upgrade snapshot under {state_dir}")
            snapshots[variant] = {"path": snap, **_snapshot_facts(snap)}
        return snapshots

    def roll_back(self, rep: int, variant: str, snapshot: dict[str, Any], common: dict[str, str]) -> dict[str, Any]:
        """One timed rollback of the variant's Engine, checked; its entry. Raises when it failed or was not real."""
        engine = self.engines[variant]
        label = f"rep{rep + 1}-{variant.replace(' ', '_').replace('=', '')}"
        if variant == BARE:
            env = {**os.environ, **_bare_config(engine, self.work, self.fleet.api_key),
                   "SNAPSHOT": str(snapshot["path"]), "DRAIN_TIMEOUT": str(self.drain)}
            timing = timed(variant, ["bash", str(SCRIPT)], env=env, log_path=self.logs / f"{label}.log", timeout=600)
            how: dict[str, Any] = {}
        else:
            extra = {**common, "engine_rollback_drain_timeout": self.drain}
            if variant == STREAK1:
                extra["engine_rollback_healthy_streak"] = 1
            timing = playbook(variant, PLAYBOOK, inventory=self.inventory, extra_vars=extra,
                              log_path=self.logs / f"{label}.log", limit=[engine.engine_id], timeout=900)
            how = _rollback_report(Path(common["engine_report_dir"]), engine.engine_id)
        check = _check(engine, snapshot, how)
        entry = {"repetition": rep + 1, "variant": variant, "engine": engine.engine_id, **timing.as_dict(),
                 "check": check}
        log(f"rollback: rep {rep + 1} {variant}: rc={timing.rc} {timing.wall:.2f} s wall, "
            f"{timing.cpu:.2f} CPU-s, restore real: {check['restore_real']} {check['problems'] or ''}")
        return entry


def _repetitions(bench: _Bench, result: dict[str, Any], repeat: int, keep: bool) -> None:
    """``repeat`` times: the setup upgrade, then the rollbacks in an order that rotates; each run into ``result``."""
    for rep in range(repeat):
        rep_dir = bench.work / f"rep{rep + 1}"
        common = {"engine_state_dir": str(rep_dir / "state"), "engine_report_dir": str(rep_dir / "reports")}
        snapshots = bench.upgrade(rep, repeat, common)
        order = list(VARIANTS[rep % len(VARIANTS):] + VARIANTS[:rep % len(VARIANTS)])
        for variant in order:
            entry = bench.roll_back(rep, variant, snapshots[variant], common)
            result["runs"].append(entry)
            if entry["rc"] != 0 or not entry["check"]["restore_real"]:
                raise RuntimeError(f"{variant} on {entry['engine']} failed (rc {entry['rc']}, "
                                   f"{entry['check']['problems']}): {entry['log']}\n{tail(entry['log'])}")
        if not keep:
            shutil.rmtree(rep_dir, ignore_errors=True)


def run(repeat: int = 3, brain_mb: float = 500, base_port: int = BASE_PORT, drain: int = 10,
        keep: bool = False) -> dict[str, Any]:
    """The benchmark; returns its figures (``ok`` False and ``errors`` when it could not run)."""
    result: dict[str, Any] = {
        "name": "rollback", "ok": False, "errors": [], "load_start": loadavg(),
        "settings": {"repeat": repeat, "brain_mb": brain_mb, "from": FROM, "to": TO, "drain_timeout": drain,
                     "variants": list(VARIANTS), "base_port": base_port},
        "runs": [],
    }
    client = docker_client()
    ensure_network(client)
    work = workdir("rollback")
    fleet = Fleet(name=unique_name("bench-rb"), base_port=base_port, client=client, workdir=work / "compose")
    try:
        with phase(f"rollback: {len(VARIANTS)} Engines on {FROM}"):
            fleet.up(len(VARIANTS), FROM, model="container", wait=True, timeout=120)
        bench = _Bench(fleet=fleet, inventory=fleet.write_inventory(work / "inventory.yml"), work=work,
                       logs=BUILD_DIR / "logs" / "rollback", drain=drain)
        with phase(f"rollback: a {brain_mb:g} MB brain in each"):
            result["brain_bytes"] = bench.fill_brains(brain_mb)
        _repetitions(bench, result, repeat, keep)
        result["ok"] = True
    except Exception as exc:  # a benchmark that cannot run says why; the others still run
        result["errors"].append(f"{type(exc).__name__}: {exc}")
        log(f"rollback: ERROR {exc}")
    finally:
        with phase("rollback: teardown"):
            try:
                fleet.down()
            except Exception as exc:
                result["errors"].append(f"teardown: {exc}")
            with contextlib.suppress(Exception):
                sweep(fleet.name, client)
            if not keep:
                shutil.rmtree(work, ignore_errors=True)
    result["load_end"] = loadavg()
    _summarise(result)
    return result


def _summarise(result: dict[str, Any]) -> None:
    by = {v: [r for r in result["runs"] if r["variant"] == v] for v in VARIANTS}
    result["median_seconds"] = {v: median(r["wall"] for r in runs) for v, runs in by.items()}
    result["median_cpu_seconds"] = {v: median(r["cpu"] for r in runs) for v, runs in by.items()}
    result["seconds"] = {v: [r["wall"] for r in runs] for v, runs in by.items()}
    bare = result["median_seconds"].get(BARE)
    result["ratio"] = ratio(result["median_seconds"].get(PLAYBOOK), bare)
    result["ratio_streak1"] = ratio(result["median_seconds"].get(STREAK1), bare)
    result["restores_real"] = all(r["check"]["restore_real"] for r in result["runs"]) if result["runs"] else None


def render(result: dict[str, Any]) -> str:
    """The benchmark's own printout."""
    s = result["settings"]
    lines = [f"Rollback of one Engine with a {s['brain_mb']:g} MB brain restore ({s['to']} -> {s['from']}, "
             f"forward-only migration), {s['repeat']} repetitions, order rotating; "
             f"drain timeout {s['drain_timeout']} s",
             f"  load average at start {result.get('load_start')}, at end {result.get('load_end')}"]
    for v in VARIANTS:
        secs = ", ".join(f"{x:.2f}" for x in result.get("seconds", {}).get(v, []))
        med = result.get("median_seconds", {}).get(v)
        cpu = result.get("median_cpu_seconds", {}).get(v)
        lines.append(f"  {v:<24} median {med if med is not None else '-':>7} s   runs [{secs}]   "
                     f"CPU median {cpu if cpu is not None else '-'} s")
    lines.append(f"  ratio rollback.yml / bare script: {result.get('ratio')}   "
                 f"(healthy_streak=1: {result.get('ratio_streak1')})   "
                 f"brain restore verified in every run: {result.get('restores_real')}")
    for err in result.get("errors", []):
        lines.append(f"  ERROR: {err.splitlines()[0]}")
    return "\n".join(lines)


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--brain-mb", type=float, default=500)
    parser.add_argument("--base-port", type=int, default=BASE_PORT)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (snapshots, reports)")
    args = parser.parse_args()
    result = run(repeat=args.repeat, brain_mb=args.brain_mb, base_port=args.base_port, keep=args.keep)
    finish(result, render(result), "rollback")


if __name__ == "__main__":
    main()
