# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``make bench``: every benchmark of the scale issue in one go, and one table of the figures next to their targets.

Runs, one after the other (each measures side by side within itself; none runs alongside another):

1. the snapshot benchmark, ``tests/bench/bench_snapshot.py`` (a live brain under a writer vs ``cp`` + ``sync``);
2. the rollback benchmark, :mod:`bench_rollback` (``rollback.yml`` vs a bare script of the runbook);
3. the fleet benchmark, :mod:`bench_fleet` (``upgrade.yml`` on fleets of per-user Engines, and with ``--limit``).

Prints each benchmark's own figures, then the table of the targets (met / NOT met: figures, not assertions), and
writes it all to ``build/bench/results.json``. Exit 0 whatever the figures; 1 when a benchmark could not run (or
its figures could not be read).

    python tests/bench/run.py [--sizes "20 50 100"] [--repeat 3] [--brain-mb 500] [--only rollback,fleet]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bench_fleet
import bench_rollback
from benchlib import BUILD_DIR, HERE, collection_root, dig, exit_on_sigterm, loadavg, log, ratio, tail, timed

SNAPSHOT_SCRIPT = HERE / "bench_snapshot.py"
BENCHES = ("snapshot", "rollback", "fleet")


# ---------------------------------------------------------------------- the snapshot benchmark (another file)


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip(".").lower(): data}


def _pick(flat: dict[str, Any], *patterns: tuple[str, ...]) -> float | None:
    """The first number whose dotted key holds every word of one of ``patterns`` (tried in order)."""
    for words in patterns:
        for key, value in flat.items():
            if all(w in key for w in words) and isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
    return None


def snapshot_figures(data: dict[str, Any] | None, stdout: str) -> dict[str, Any]:
    """The snapshot benchmark's figures, from the JSON it wrote (preferred) or from its printed summary.

    JSON keys looked for (any nesting): ``ratio`` (snapshot / cp+sync), ``snapshot_seconds``, ``cp_sync_seconds``,
    ``writer_p99_ms``, ``writer_max_ms``. Printed lines understood: ``snapshot median X s, cp + sync median Y s:
    ratio Zx`` and ``writer during the snapshots: p99 P ms, max M ms``.
    """
    figures: dict[str, Any] = {"source": None}
    if data:
        flat = _flat(data)
        figures["snapshot_seconds"] = _pick(flat, ("snapshot", "seconds"), ("snapshot", "median"))
        figures["cp_sync_seconds"] = _pick(flat, ("cp", "sync", "seconds"), ("cp", "seconds"), ("cp", "median"))
        figures["ratio"] = _pick(flat, ("ratio", "sync"), ("snapshot", "ratio"), ("ratio",))
        figures["writer_p99_ms"] = _pick(flat, ("snapshot", "p99"), ("writer", "p99"), ("p99",))
        figures["writer_max_ms"] = _pick(flat, ("snapshot", "max", "ms"), ("writer", "max"), ("max", "ms"))
        figures["source"] = "json"
    text = stdout or ""
    m = re.search(r"snapshot median ([\d.]+) s, cp \+ sync median ([\d.]+) s: ratio ([\d.]+)x", text)
    if m and figures.get("ratio") is None:
        figures.update(snapshot_seconds=float(m[1]), cp_sync_seconds=float(m[2]), ratio=float(m[3]), source="stdout")
    m = re.search(r"writer during the snapshots: p99 ([\d.]+) ms, max ([\d.]+) ms", text)
    if m and figures.get("writer_p99_ms") is None:
        figures.update(writer_p99_ms=float(m[1]), writer_max_ms=float(m[2]), source=figures["source"] or "stdout")
    if figures.get("ratio") is None:
        figures["ratio"] = ratio(figures.get("snapshot_seconds"), figures.get("cp_sync_seconds"))
    return figures


def run_snapshot(brain_mb: float) -> dict[str, Any]:
    """``tests/bench/bench_snapshot.py`` as a subprocess (``BENCH_SNAPSHOT_JSON`` says where it may write JSON)."""
    result: dict[str, Any] = {"name": "snapshot", "ok": False, "errors": [], "script": str(SNAPSHOT_SCRIPT)}
    if not SNAPSHOT_SCRIPT.is_file():
        result["errors"].append(f"{SNAPSHOT_SCRIPT} is not there")
        return result
    out_json = BUILD_DIR / "snapshot.json"
    out_json.unlink(missing_ok=True)
    command = [sys.executable, str(SNAPSHOT_SCRIPT)]
    if "--size-mb" in SNAPSHOT_SCRIPT.read_text(encoding="utf-8"):
        command += ["--size-mb", str(int(brain_mb))]
    command += (os.environ.get("BENCH_SNAPSHOT_ARGS") or "").split()
    env = {**os.environ, "BENCH_SNAPSHOT_JSON": str(out_json)}
    log_path = BUILD_DIR / "logs" / "snapshot.log"
    log(f"snapshot: {' '.join(command)} (output: {log_path})")
    run = timed("snapshot", command, env=env, log_path=log_path, timeout=3600)
    stdout = Path(log_path).read_text(encoding="utf-8", errors="replace")
    data = None
    if out_json.is_file():
        try:
            data = json.loads(out_json.read_text(encoding="utf-8"))
        except ValueError as exc:
            result["errors"].append(f"{out_json}: {exc}")
    result.update(rc=run.rc, wall=run.wall, load_before=run.load_before, load_after=run.load_after,
                  output=stdout.splitlines()[-30:], data=data, figures=snapshot_figures(data, stdout))
    if run.rc != 0:
        result["errors"].append(f"exit {run.rc}: {log_path}\n{tail(log_path)}")
    missing = [k for k in ("ratio", "writer_p99_ms") if result["figures"].get(k) is None]
    if missing:
        result["errors"].append(f"figures not found in its output: {', '.join(missing)} ({log_path})")
    result["ok"] = not result["errors"]
    return result


# ---------------------------------------------------------------------- the table


def _row(target: str, figure: float | None, limit: float, unit: str, detail: str, applies: bool = True,
         info: bool = False) -> dict[str, Any]:
    if info:
        status = "info"
    elif not applies or figure is None:
        status = "n/a"
    else:
        status = "met" if figure <= limit else "NOT met"
    return {"target": target, "figure": figure, "limit": limit, "unit": unit, "status": status, "detail": detail}


def targets(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every figure of the issue's Targets section next to its target, plus the figures that explain them."""
    rows = []
    snap = dig(results, "snapshot", "figures") or {}
    why = "" if results.get("snapshot", {}).get("ok") else "not measured"
    rows.append(_row("snapshot / (cp --reflink=never + sync) of the same live brain", snap.get("ratio"), 1.3, "x",
                     why or f"snapshot {snap.get('snapshot_seconds')} s, cp + sync {snap.get('cp_sync_seconds')} s"))
    rows.append(_row("writer p99 insert stall during the snapshot", snap.get("writer_p99_ms"), 50, "ms",
                     why or f"max {snap.get('writer_max_ms')} ms"))
    rb = results.get("rollback") or {}
    med = rb.get("median_seconds") or {}
    rows.append(_row("rollback.yml / bare runbook script, brain restore included", rb.get("ratio"), 1.3, "x",
                     (f"median rollback.yml {med.get(bench_rollback.PLAYBOOK)} s, bare script "
                      f"{med.get(bench_rollback.BARE)} s; restores verified: {rb.get('restores_real')}")
                     if rb.get("runs") else "not measured"))
    if rb.get("ratio_streak1") is not None:
        rows.append(_row("  (rollback.yml with engine_rollback_healthy_streak=1) / bare script",
                         rb.get("ratio_streak1"), 1.3, "x", f"median {med.get(bench_rollback.STREAK1)} s", info=True))
    fleet = results.get("fleet") or {}
    sizes = fleet.get("sizes") or {}
    for size, res in sizes.items():
        full, lim = res.get("full") or {}, res.get("limit") or {}
        main = size == "50"
        note = "" if main else " (the target is for 50)"
        rows.append(_row(f"{size} Engines: wall / ideal critical path", full.get("ratio"), 1.5, "x",
                         f"wall {full.get('wall_seconds')} s, ideal {full.get('ideal_seconds')} s, "
                         f"forks {res.get('forks')}, batches {full.get('batch_sizes')}{note}", info=not main))
        rows.append(_row(f"{size} Engines: controller CPU per Engine", full.get("cpu_per_engine"), 2, "CPU-s",
                         f"{full.get('cpu_seconds')} CPU-s in all{note}", info=not main))
        if lim:
            rows.append(_row(f"  --limit {lim.get('engines')} of {size}: wall / ideal", lim.get("ratio"), 1.5, "x",
                             f"wall {lim.get('wall_seconds')} s, ideal {lim.get('ideal_seconds')} s, "
                             f"{lim.get('cpu_per_engine')} CPU-s per Engine, batches {lim.get('batch_sizes')} "
                             f"(canary {lim.get('canary_size')}; the report's plan {lim.get('batches_planned')})",
                             info=True))
    growth = {(g["from"], g["to"]): g["wall_ratio"] for g in fleet.get("growth") or []}
    w50, w100 = dig(sizes, "50", "full", "wall_seconds"), dig(sizes, "100", "full", "wall_seconds")
    rows.append(_row("100 Engines wall / 50 Engines wall", ratio(w100, w50), 1.3, "x",
                     f"100: {w100} s, 50: {w50} s" if w50 and w100 else "needs sizes 50 and 100"))
    for (a, b), r in growth.items():
        if (a, b) != (50, 100):
            rows.append(_row(f"  {b} Engines wall / {a} Engines wall", r, 1.3, "x", "(the target is for 100 / 50)",
                             info=True))
    missing = sorted({m for res in sizes.values() for k in ("full", "limit")
                      for m in (res.get(k) or {}).get("missing", [])})
    if missing:
        rows.append({"target": "report fields missing for the ideal path", "figure": None, "limit": None, "unit": "",
                     "status": "info", "detail": "; ".join(missing)})
    return rows


def _with_unit(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x" if unit == "x" else f"{value:.2f} {unit}"


def render_table(rows: list[dict[str, Any]]) -> str:
    width = max(len(r["target"]) for r in rows)
    lines = [f"{'target':<{width}}  {'figure':>12}  {'limit':>12}  {'status':<7}  detail"]
    for r in rows:
        limit = f"<= {_with_unit(r['limit'], r['unit'])}" if r["limit"] is not None else ""
        lines.append(f"{r['target']:<{width}}  {_with_unit(r['figure'], r['unit']):>12}  {limit:>12}  "
                     f"{r['status']:<7}  {r['detail']}")
    return "\n".join(lines)


def _git_head(root: Path) -> str | None:
    """The commit of the collection under test (and whether its tracked files differ from it); None outside git."""
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "--short", "HEAD"],
                             capture_output=True, text=True, check=False, timeout=10)
        top, _sep, head = out.stdout.strip().partition("\n")
        if out.returncode != 0 or Path(top).resolve() != root:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return head + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def main() -> None:
    exit_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=os.environ.get("BENCH_SIZES") or "20 50 100",
                        help="fleet sizes (BENCH_SIZES)")
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEAT") or 3),
                        help="rollback repetitions (BENCH_REPEAT)")
    parser.add_argument("--brain-mb", type=float, default=float(os.environ.get("BENCH_BRAIN_MB") or 500),
                        help="brain size of the snapshot and rollback benchmarks (BENCH_BRAIN_MB)")
    parser.add_argument("--forks", type=int, default=int(os.environ.get("BENCH_FORKS") or 0) or None,
                        help="forks of the fleet runs (BENCH_FORKS; default min(50, size))")
    parser.add_argument("--only", default=os.environ.get("BENCH_ONLY") or ",".join(BENCHES),
                        help="comma-separated subset of snapshot,rollback,fleet (BENCH_ONLY)")
    parser.add_argument("--collection-root", default=os.environ.get("BENCH_COLLECTION_ROOT") or "",
                        help="measure another tree of the collection (e.g. an export of an older commit)")
    parser.add_argument("--label", default=os.environ.get("BENCH_LABEL") or "",
                        help="what is measured, printed and recorded (e.g. 'before: 053b8d3')")
    args = parser.parse_args()
    if args.collection_root:
        os.environ["BENCH_COLLECTION_ROOT"] = str(Path(args.collection_root).resolve())
    only = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = set(only) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")

    started = time.time()
    meta = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "cpus": os.cpu_count(),
            "load_start": loadavg(), "collection_root": str(collection_root()),
            "git_head": _git_head(collection_root()), "label": args.label,
            "settings": {"sizes": args.sizes, "repeat": args.repeat, "brain_mb": args.brain_mb, "forks": args.forks,
                         "only": only}}
    log(f"bench: {meta}")
    results: dict[str, dict[str, Any]] = {}
    if "snapshot" in only:
        results["snapshot"] = run_snapshot(args.brain_mb)
        print("\n".join(results["snapshot"].get("output") or []))
    if "rollback" in only:
        results["rollback"] = bench_rollback.run(repeat=args.repeat, brain_mb=args.brain_mb)
        print(bench_rollback.render(results["rollback"]), "\n", sep="")
    if "fleet" in only:
        results["fleet"] = bench_fleet.run(bench_fleet.parse_sizes(args.sizes), forks=args.forks)
        print(bench_fleet.render(results["fleet"]), "\n", sep="")

    rows = targets(results)
    meta.update(load_end=loadavg(), seconds=round(time.time() - started, 1))
    errors = [f"{name}: {e}" for name, res in results.items() for e in res.get("errors", [])]
    failed = [name for name, res in results.items() if not res.get("ok")]
    what = f"{args.label}: " if args.label else ""
    head = f" at {meta['git_head']}" if meta["git_head"] else ""
    print(f"Targets of issue 11 (figures, not assertions); {what}collection {meta['collection_root']}{head}; "
          f"{meta['cpus']} CPUs, load average {meta['load_start']} at start, {meta['load_end']} at end; "
          f"{meta['seconds']:.0f} s")
    print(render_table(rows))
    for err in errors:
        print(f"ERROR {err.splitlines()[0]}")
    out = BUILD_DIR / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**meta, "targets": rows, "errors": errors, "failed": failed, "benchmarks": results},
                              indent=2, default=str) + "\n")
    print(f"results: {out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
