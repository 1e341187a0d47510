# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fleets of per-user Engines through ``upgrade.yml``: wall time vs the ideal critical path, controller CPU.

For each fleet size (default 20, 50 and 100): that many per-user reference Engines on 2.3.0 (no load), upgraded to
2.4.0 (a forward-only migration) by ``ansible-playbook playbooks/upgrade.yml`` with the default stages and a 10 s
canary bake, the role's other defaults, ``forks = min(50, size)`` (``--forks`` to change), pipelining on. Measured:

- wall: the ``ansible-playbook`` process, start to exit;
- ideal critical path, from the run's own report (``upgrade.json``): per batch, the slowest Engine's
  downtime + time to healthy + bake, summed over the batches (see :func:`ideal_path`): what a bare script doing the
  same steps, every Engine of a batch in parallel, would take;
- controller CPU: user + sys seconds of ``ansible-playbook`` and every process it waited for (worker forks, the
  modules: the Engines are local connections here, so the modules' CPU counts too; Docker's own does not), per
  Engine;
- the same with ``--limit`` to a tenth of the fleet (those Engines rolled back to 2.3.0 first by ``rollback.yml``,
  not timed): the batches the limited run made, its canary among them.

Figures only, nothing asserted. Fleets are brought up in shards in parallel (host ports from 9400) and torn down
whatever happens.

    python tests/bench/bench_fleet.py [--sizes "20 50 100"] [--forks N] [--bake 10]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import (
    BUILD_DIR,
    dig,
    ensure_network,
    exit_on_sigterm,
    finish,
    loadavg,
    log,
    newest_report,
    number,
    phase,
    playbook,
    ratio,
    tail,
    workdir,
    write_private,
)

from engine_testkit import sweep
from engine_testkit.fleet import Fleet, docker_client, unique_name

FROM, TO = "2.3.0", "2.4.0"
BASE_PORT = 9400
DEFAULT_SIZES = (20, 50, 100)


def fleet_vars(bake: float) -> dict[str, Any]:
    """The run's settings besides the target and the state folders: a canary bake of ``bake`` seconds, no longer.

    With no load an Engine sees no turn, so a role that bakes an undecided canary on (and rolls it back after its
    longest bake) is told to bake the canary once and go on: the benchmark measures the rollout's path, not a verdict.
    Variables a role does not know are ignored; BENCH_UPGRADE_VARS (JSON) adds or overrides.
    """
    return {"engine_upgrade_canary_bake_seconds": bake, "engine_upgrade_canary_max_bake_seconds": bake,
            "engine_upgrade_undecided": "proceed"}


TIMINGS = ("drain_seconds", "switch_seconds", "healthy_seconds", "bake_seconds")

IDEAL_FORMULA = (
    "ideal = sum over batches of (max over the batch's Engines of (downtime + healthy_seconds) + the batch's "
    "configured bake: the canary bake for the first batch, engine_upgrade_bake_seconds (0) for the others); "
    "downtime = switch_seconds for a per-user container (engine_container's switch_seconds runs from the start of "
    "the drain to the new container started, so it holds drain_seconds), drain_seconds + switch_seconds for Compose"
)


def default_forks(size: int) -> int:
    return min(50, size)


# ---------------------------------------------------------------------- the report, read defensively


def report_engines(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's per-Engine entries: a list of objects (or a mapping of them, by Engine)."""
    engines = report.get("engines")
    if isinstance(engines, dict):
        engines = list(engines.values())
    return [e for e in engines or [] if isinstance(e, dict)]


def _by_batch(engines: list[dict[str, Any]], absent: Counter[str]) -> dict[int, list[dict[str, Any]]]:
    """The Engines by their batch number (0 where the report has none, counted in ``absent``)."""
    batches: dict[int, list[dict[str, Any]]] = {}
    for e in engines:
        batch = number(e.get("batch"))
        if batch is None:
            absent["engines[].batch"] += 1
            batch = 0
        batches.setdefault(int(batch), []).append(e)
    return batches


def _timings(e: dict[str, Any], absent: Counter[str]) -> dict[str, float | None]:
    """One Engine's :data:`TIMINGS` as numbers; what is missing (and expected of an upgraded one) counted in
    ``absent``."""
    t = e.get("timings") if isinstance(e.get("timings"), dict) else None
    if t is None:
        absent["engines[].timings"] += 1
        t = {}
    vals = {k: number(t.get(k)) for k in TIMINGS}
    if e.get("status") == "upgraded":  # switched in this run: these are expected
        for k in ("drain_seconds", "switch_seconds", "healthy_seconds"):
            if vals[k] is None:
                absent[f"engines[].timings.{k}"] += 1
    return vals


def _batch_path(no: int, engines: list[dict[str, Any]], bake: float, absent: Counter[str]) -> dict[str, Any]:
    """One batch's part of the ideal path: its slowest Engine's downtime + time to healthy, plus the batch's
    configured ``bake`` (and the same with the whole brief: drain + switch + healthy)."""
    worst = worst_brief = None
    bakes = []
    for e in engines:
        vals = _timings(e, absent)
        if vals["bake_seconds"] is not None:
            bakes.append(vals["bake_seconds"])
        if vals["switch_seconds"] is None and vals["healthy_seconds"] is None:
            continue  # not switched (verified only, or failed before the switch)
        drain, switch, healthy = vals["drain_seconds"] or 0.0, vals["switch_seconds"] or 0.0, \
            vals["healthy_seconds"] or 0.0
        downtime = switch if e.get("deployment", "container") == "container" else drain + switch
        worst = max(worst or 0.0, downtime + healthy)
        worst_brief = max(worst_brief or 0.0, drain + switch + healthy)
    return {
        "batch": no, "engines": len(engines), "bake_configured": bake,
        "bake_measured_max": max(bakes) if bakes else None,
        "critical_seconds": round(worst + bake, 2) if worst is not None else None,
        "brief_sum_seconds": round(worst_brief + bake, 2) if worst_brief is not None else None,
    }


def ideal_path(report: dict[str, Any] | None, canary_bake: float, later_bake: float = 0.0) -> dict[str, Any]:
    """The ideal critical path of a run from its report (formula: :data:`IDEAL_FORMULA`), and what was missing.

    The bakes are the configured ones (``canary_bake`` for the first batch, ``later_bake`` for the others): a bare
    script waits that long and no longer; what the role spends beyond them (its bake rounds, probes, measures) is
    overhead. Never raises: every field is optional; what is missing is named in ``missing`` (the figure is then a
    lower bound, or None when no batch could be computed).
    """
    out: dict[str, Any] = {"ideal_seconds": None, "brief_sum_seconds": None, "batches": [], "missing": []}
    if not isinstance(report, dict):
        out["missing"].append("the run report (upgrade.json)")
        return out
    engines = report_engines(report)
    if not engines:
        out["missing"].append("engines[] in the report")
        return out
    absent: Counter[str] = Counter()
    batches = _by_batch(engines, absent)
    out["batches"] = [_batch_path(no, batches[no], canary_bake if no == min(batches) else later_bake, absent)
                      for no in sorted(batches)]
    crit = [b["critical_seconds"] for b in out["batches"] if b["critical_seconds"] is not None]
    brief = [b["brief_sum_seconds"] for b in out["batches"] if b["brief_sum_seconds"] is not None]
    out["ideal_seconds"] = round(sum(crit), 2) if crit else None
    out["brief_sum_seconds"] = round(sum(brief), 2) if brief else None
    out["missing"] += [f"{k} ({n} of {len(engines)} Engines)" for k, n in sorted(absent.items())]
    return out


def summarise_report(report: dict[str, Any] | None) -> dict[str, Any]:
    """Outcome, statuses, the planned and the observed batches, per-Engine role seconds."""
    if not isinstance(report, dict):
        return {}
    engines = report_engines(report)
    sizes = Counter(int(n) for n in (number(e.get("batch")) for e in engines) if n is not None)
    seconds = [s for s in (number(e.get("seconds")) for e in engines) if s is not None]
    planned = report.get("batches")
    return {
        "outcome": report.get("outcome"),
        "statuses": dict(Counter(str(e.get("status")) for e in engines)),
        "engines_in_report": len(engines),
        "untouched": len(report.get("untouched") or []),
        "batches_planned": planned if isinstance(planned, list) else None,
        "batch_sizes": [sizes[k] for k in sorted(sizes)],
        "canary_size": sizes[min(sizes)] if sizes else None,
        "engine_seconds_median": round(statistics.median(seconds), 1) if seconds else None,
        "engine_seconds_max": max(seconds) if seconds else None,
    }


# ---------------------------------------------------------------------- fleets


class ShardedFleet:
    """``count`` per-user Engines as a few testkit fleets brought up (and down) in parallel, one inventory."""

    def __init__(self, count: int, base_port: int, work: Path, shards: int = 4):
        shards = max(1, min(shards, count))
        tag = unique_name("bench")
        per = [count // shards + (1 if i < count % shards else 0) for i in range(shards)]
        span = max(per) + 10
        self.counts = per
        self.fleets = [
            Fleet(name=f"{tag}-{i}", base_port=base_port + i * span, client=docker_client(),
                  workdir=work / "compose" / str(i))
            for i in range(shards)
        ]

    def _parallel(self, fn: Any, args: list[tuple[Any, ...]]) -> list[str]:
        errors: list[str] = []

        def call(*a: Any) -> None:
            try:
                fn(*a)
            except Exception as exc:  # collected, raised by the caller
                errors.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=call, args=a) for a in args]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return errors

    def up(self, version: str, timeout: float) -> None:
        def one(fleet: Fleet, count: int) -> None:
            fleet.up(count, version, model="container", wait=False)
            fleet.wait_healthy(timeout=timeout)

        errors = self._parallel(one, list(zip(self.fleets, self.counts, strict=True)))
        if errors:
            raise RuntimeError("bringing the fleet up failed: " + "; ".join(errors))

    def down(self) -> list[str]:
        def one(fleet: Fleet) -> None:
            try:
                fleet.down()
            finally:
                sweep(fleet.name, fleet.client)

        return self._parallel(one, [(f,) for f in self.fleets])

    @property
    def engines(self) -> list[Any]:
        return [e for f in self.fleets for e in f.engines]

    def write_inventory(self, path: Path) -> Path:
        hosts: dict[str, Any] = {}
        for fleet in self.fleets:
            hosts.update(fleet.inventory()["all"]["children"]["engines"]["hosts"])
        return write_private(path, json.dumps({"all": {"children": {"engines": {"hosts": hosts}}}}, indent=1))


def _versions(engines: list[Any]) -> Counter[str]:
    return Counter(str(e.image_version()) for e in engines)


def _measured(label: str, run: Any, report: dict[str, Any] | None, why: str | None, engines: int,
              canary_bake: float, later_bake: float) -> dict[str, Any]:
    ideal = ideal_path(report, canary_bake, later_bake)
    if why:
        ideal["missing"].insert(0, why)
    out = {
        "label": label, "rc": run.rc, "engines": engines, "wall_seconds": run.wall, "cpu_seconds": run.cpu,
        "cpu_user": run.cpu_user, "cpu_sys": run.cpu_sys,
        "cpu_per_engine": round(run.cpu / engines, 2) if engines else None,
        "ideal_seconds": ideal["ideal_seconds"], "ratio": ratio(run.wall, ideal["ideal_seconds"]),
        "brief_sum_seconds": ideal["brief_sum_seconds"], "ideal_batches": ideal["batches"],
        "missing": ideal["missing"], "load_before": run.load_before, "load_after": run.load_after, "log": run.log,
        **summarise_report(report),
    }
    log(f"fleet: {label}: rc={run.rc} wall {run.wall:.1f} s, ideal {out['ideal_seconds']} s, ratio {out['ratio']}, "
        f"CPU {run.cpu:.1f} s ({out['cpu_per_engine']} per Engine), batches {out.get('batch_sizes')}")
    return out


@dataclass
class _Runs:
    """What the playbook runs of one fleet size share: the inventory, the forks, the variables and the folders."""

    size: int
    forks: int
    bake: float
    base_vars: dict[str, Any]
    ansible_env: dict[str, str]
    inventory: Path
    work: Path
    logs: Path

    @property
    def later_bake(self) -> float:
        return number(self.base_vars.get("engine_upgrade_bake_seconds")) or 0.0

    def upgrade(self, step: str, label: str, run_label: str, name: str, engines: int, timeout: float,
                limit: list[str] | None = None) -> tuple[Any, dict[str, Any]]:
        """A timed ``upgrade.yml`` run (the phase ``step``; its log and report kept as ``upgrade-<name>``), measured
        against its ideal path: the run and its figures."""
        reports = self.work / f"reports-{name}"
        extra = {**self.base_vars, "engine_report_dir": str(reports)}
        if limit:
            # The tenth was rolled back by the bench itself (roll_back): the rolled-back release gate is acknowledged.
            extra.update(engine_upgrade_allow_rolled_back_release=True,
                         engine_upgrade_rolled_back_release_reason="the benchmark rolled these Engines back itself")
        with phase(step):
            run = playbook(run_label, "upgrade.yml", inventory=self.inventory, forks=self.forks, limit=limit,
                           env=self.ansible_env, extra_vars=extra,
                           log_path=self.logs / f"upgrade-{name}.log", timeout=timeout)
        report, why = newest_report(reports)
        measured = _measured(label, run, report, why, engines, self.bake, self.later_bake)
        _keep_report(reports, self.logs / f"upgrade-{name}.json")
        return run, measured

    def roll_back(self, fleet: ShardedFleet, limited: list[str], state_dir: Path) -> None:
        """``rollback.yml`` of the Engines ``limited`` to (setup, not timed); raises unless all are back on FROM."""
        k = len(limited)
        with phase(f"fleet {self.size}: rollback.yml of the {k} Engines of the --limit run (setup, not timed)"):
            back = playbook(f"rollback {k}", "rollback.yml", inventory=self.inventory, forks=min(self.forks, k),
                            limit=limited, env=self.ansible_env,
                            extra_vars={"engine_state_dir": str(state_dir), "engine_report_dir": str(self.work / "rb"),
                                        "engine_rollback_serial": k, "engine_rollback_drain_timeout": 10,
                                        "engine_rollback_healthy_streak": 1},
                            log_path=self.logs / "rollback-tenth.log", timeout=1800)
        chosen = [e for e in fleet.engines if e.engine_id in limited]
        if back.rc != 0 or _versions(chosen).get(FROM, 0) != k:
            raise RuntimeError(f"rolling the tenth back failed (rc {back.rc}): {back.log}\n{tail(back.log)}")


def _spread(hosts: list[str], share: float) -> list[str]:
    """``share`` of ``hosts`` (at least one), spread evenly over the list: the Engines of the --limit run."""
    k = max(1, round(len(hosts) * share))
    step = len(hosts) // k
    return [hosts[i * step + step - 1] for i in range(k)]


def _sized_runs(res: dict[str, Any], fleet: ShardedFleet, runs: _Runs, limit_share: float, state_dir: Path) -> None:
    """The timed runs of one size into ``res``: the full upgrade, a tenth rolled back, the --limit upgrade of it."""
    size = runs.size
    run, res["full"] = runs.upgrade(f"fleet {size}: upgrade.yml, {size} Engines, forks {runs.forks}",
                                    f"{size} Engines", f"upgrade {size}", "full", size, 7200)
    versions = _versions(fleet.engines)
    res["full"]["versions_after"] = dict(versions)
    if run.rc != 0 or versions.get(TO, 0) != size:
        raise RuntimeError(f"the full upgrade did not complete (rc {run.rc}, versions {dict(versions)}): "
                           f"{run.log}\n{tail(run.log)}")

    limited = _spread([e.engine_id for e in fleet.engines], limit_share)
    k = len(limited)
    runs.roll_back(fleet, limited, state_dir)
    run, res["limit"] = runs.upgrade(f"fleet {size}: upgrade.yml --limit {k} of {size} Engines",
                                     f"--limit {k} of {size}", f"upgrade --limit {k}/{size}", "limit", k, 3600,
                                     limit=limited)
    res["limit"]["hosts"] = limited
    if run.rc != 0:
        raise RuntimeError(f"the --limit upgrade failed (rc {run.rc}): {run.log}\n{tail(run.log)}")


def one_size(size: int, *, forks: int | None, bake: float, base_port: int, limit_share: float,
             extra_vars: dict[str, Any], ansible_env: dict[str, str], keep: bool) -> dict[str, Any]:
    """One fleet size: bring up, full run, roll a tenth back, ``--limit`` run, tear down."""
    forks = forks or default_forks(size)
    res: dict[str, Any] = {"size": size, "forks": forks, "ok": False, "errors": [], "load_start": loadavg()}
    client = docker_client()
    ensure_network(client)
    work = workdir(f"fleet{size}")
    fleet = ShardedFleet(size, base_port, work)
    state_dir = work / "state"
    base_vars = {"engine_target_version": TO, **fleet_vars(bake), "engine_state_dir": str(state_dir), **extra_vars}
    try:
        with phase(f"fleet {size}: bring up {size} Engines on {FROM} ({len(fleet.fleets)} shards)"):
            fleet.up(FROM, timeout=120 + 3 * size)
        runs = _Runs(size=size, forks=forks, bake=bake, base_vars=base_vars, ansible_env=ansible_env,
                     inventory=fleet.write_inventory(work / "inventory.json"), work=work,
                     logs=BUILD_DIR / "logs" / f"fleet-{size}")
        _sized_runs(res, fleet, runs, limit_share, state_dir)
        res["ok"] = True
    except Exception as exc:  # a size that cannot run says why; the next size still runs
        res["errors"].append(f"{type(exc).__name__}: {exc}")
        log(f"fleet {size}: ERROR {exc}")
    finally:
        with phase(f"fleet {size}: teardown"):
            res["errors"] += [f"teardown: {e}" for e in fleet.down()]
            if not keep:
                shutil.rmtree(work, ignore_errors=True)
    res["load_end"] = loadavg()
    return res


def _keep_report(reports: Path, dest: Path) -> None:
    found = sorted(reports.glob("*/upgrade.json"), key=lambda p: p.stat().st_mtime) if reports.is_dir() else []
    if found:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found[-1], dest)


def run(sizes: tuple[int, ...] = DEFAULT_SIZES, forks: int | None = None, bake: float = 10,
        base_port: int = BASE_PORT, limit_share: float = 0.1, keep: bool = False) -> dict[str, Any]:
    """Every size, one after the other; the wall-time growth between consecutive sizes."""
    extra_vars = json.loads(os.environ.get("BENCH_UPGRADE_VARS") or "{}")
    ansible_env = json.loads(os.environ.get("BENCH_ANSIBLE_ENV") or "{}")
    result: dict[str, Any] = {
        "name": "fleet", "ok": True, "errors": [],
        "settings": {"sizes": list(sizes), "forks": forks or "min(50, size)", "canary_bake_seconds": bake,
                     "stages": "role default", "from": FROM, "to": TO, "limit_share": limit_share,
                     "pipelining": ansible_env.get("ANSIBLE_PIPELINING", "True"), "run_vars": fleet_vars(bake),
                     "extra_vars": extra_vars,
                     "ansible_env": ansible_env, "base_port": base_port},
        "ideal_formula": IDEAL_FORMULA,
        "sizes": {},
    }
    for size in sizes:
        res = one_size(size, forks=forks, bake=bake, base_port=base_port, limit_share=limit_share,
                       extra_vars=extra_vars, ansible_env=ansible_env, keep=keep)
        result["sizes"][str(size)] = res
        if not res["ok"]:
            result["ok"] = False
            result["errors"] += [f"{size} Engines: {e}" for e in res["errors"]]
    walls = [(s, dig(result["sizes"][str(s)], "full", "wall_seconds")) for s in sizes]
    result["growth"] = [
        {"from": a, "to": b, "wall_ratio": ratio(wb, wa)} for (a, wa), (b, wb) in itertools.pairwise(walls)
    ]
    return result


def render(result: dict[str, Any]) -> str:
    s = result["settings"]
    lines = [f"Fleets of per-user Engines, {s['from']} -> {s['to']} through upgrade.yml: default stages, canary bake "
             f"{s['canary_bake_seconds']:g} s, no load, forks {s['forks']}, pipelining {s['pipelining']}; "
             f"vars {s.get('run_vars')}"
             + (f", extra vars {s['extra_vars']}" if s["extra_vars"] else ""),
             f"  {result['ideal_formula']}",
             f"  {'run':<20} {'forks':>5} {'wall s':>8} {'ideal s':>8} {'ratio':>6} {'CPU s':>8} {'CPU/Eng':>8} "
             f"{'batches':<18} {'outcome':<10} load before"]
    for size, res in result["sizes"].items():
        for key in ("full", "limit"):
            m = res.get(key)
            if not m:
                continue
            lines.append(f"  {m['label']:<20} {res['forks']:>5} {m['wall_seconds']:>8.1f} "
                         f"{m['ideal_seconds'] if m['ideal_seconds'] is not None else '-':>8} "
                         f"{m['ratio'] if m['ratio'] is not None else '-':>6} {m['cpu_seconds']:>8.1f} "
                         f"{m['cpu_per_engine'] if m['cpu_per_engine'] is not None else '-':>8} "
                         f"{m.get('batch_sizes')!s:<18} {m.get('outcome')!s:<10} {m['load_before']}")
            crit = [b.get("critical_seconds") for b in m.get("ideal_batches") or []]
            lines.append(f"  {'':<20} ideal per batch {crit}; per-Engine role seconds median "
                         f"{m.get('engine_seconds_median')}, max {m.get('engine_seconds_max')}; "
                         f"CPU user {m['cpu_user']:.1f} + sys {m['cpu_sys']:.1f} s")
        for err in res.get("errors", []):
            lines.append(f"  {size} Engines ERROR: {err.splitlines()[0]}")
    for g in result.get("growth", []):
        lines.append(f"  wall {g['to']} Engines / {g['from']} Engines: {g['wall_ratio']}")
    missing = sorted({m for res in result["sizes"].values() for k in ("full", "limit")
                      for m in (res.get(k) or {}).get("missing", [])})
    if missing:
        lines.append("  missing from the report for the ideal path: " + "; ".join(missing))
    return "\n".join(lines)


def parse_sizes(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.replace(",", " ").split())


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=os.environ.get("BENCH_SIZES") or " ".join(map(str, DEFAULT_SIZES)))
    parser.add_argument("--forks", type=int, default=int(os.environ.get("BENCH_FORKS") or 0) or None)
    parser.add_argument("--bake", type=float, default=10)
    parser.add_argument("--base-port", type=int, default=BASE_PORT)
    parser.add_argument("--keep", action="store_true", help="keep the work folders (inventory, state, reports)")
    args = parser.parse_args()
    result = run(parse_sizes(args.sizes), forks=args.forks, bake=args.bake, base_port=args.base_port, keep=args.keep)
    finish(result, render(result), "fleet")


if __name__ == "__main__":
    main()
