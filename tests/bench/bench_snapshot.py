# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Snapshot of a live brain vs `cp --reflink=never` + `sync` of the same file, side by side in one run.

    .venv/bin/python tests/bench/bench_snapshot.py [--size-mb 500] [--rate 100] [--runs 2] [--verify quick]

Builds (once, then reuses) a brain of about --size-mb MB under build/bench/ with the reference Engine's
schema (migrations 0001-0005, the tables of engine 2.3.0) and realistic rows; starts a writer process that
inserts one turn (a task, two messages, an observability event) per transaction at --rate per second with the
Engine's own settings (WAL, synchronous=FULL, BEGIN IMMEDIATE) and records each insert's latency; then, --runs
times and alternating, takes a snapshot through the collection's python path (the code brain_snapshot runs)
and copies the brain with `cp --reflink=never` followed by `sync`. It prints the seconds of each, the ratio,
and the writer's insert latency (p50, p99, max) during each and while idle. It prints figures; it asserts
nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "harness"))

from engine_testkit.ansible import COLLECTIONS_PATH, ensure_collection_link  # noqa: E402
from engine_testkit.waits import wait_until  # noqa: E402

ensure_collection_link()
sys.path.insert(0, str(COLLECTIONS_PATH))

from ansible_collections.september.engine.plugins.module_utils._snapshot_store import SnapshotStore  # noqa: E402
from ansible_collections.september.engine.plugins.module_utils._snapshot_take import take_snapshot  # noqa: E402

MIGRATIONS = ROOT / "tests" / "reference_engine" / "migrations"
SCHEMA_VERSIONS = ("0001", "0002", "0003", "0004", "0005")  # engine 2.3.0
WORDS = ("memory engine user task plan answer tool search result note reminder meeting travel budget code review "
         "draft email summary context project weekly report idea question follow up schedule document").split()
MIGRATION_OPTIONS = dict(migrations_source="table", migrations_table="engine_schema_migrations",
                         migrations_column="version")


def now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _word in range(words))


# ---------------------------------------------------------------- the brain


def build_brain(path: Path, size_mb: int) -> None:
    """A WAL brain with the 2.3.0 schema and about `size_mb` MB of turns (kept for the next run)."""
    marker = path.with_suffix(".size")
    if path.is_file() and marker.is_file() and marker.read_text() == str(size_mb):
        return
    for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), marker):
        stale.unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("CREATE TABLE engine_schema_migrations (version TEXT PRIMARY KEY, name TEXT NOT NULL, "
                 "checksum TEXT NOT NULL, applied_at TEXT NOT NULL)")
    for version in SCHEMA_VERSIONS:
        sql_file = next(MIGRATIONS.glob(f"{version}_*.sql"))
        conn.executescript(sql_file.read_text())
        conn.execute("INSERT INTO engine_schema_migrations VALUES (?, ?, ?, ?)",
                     (version, sql_file.stem, "bench", now_text()))
    rng = random.Random(42)
    target = size_mb * 1024 * 1024
    turn = 0
    while os.path.getsize(path) < target:
        conn.execute("BEGIN")
        for _turn in range(2000):
            insert_turn(conn, rng, turn, embedding=True)
            turn += 1
        conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    marker.write_text(str(size_mb))
    print(f"built {path}: {os.path.getsize(path) / 2**20:.0f} MB, {turn} turns, "
          f"{time.monotonic() - started:.1f} s")


def insert_turn(conn: sqlite3.Connection, rng: random.Random, number: int, embedding: bool = False) -> None:
    task, conversation, at = f"task-{uuid.uuid4().hex}", f"conv-{number % 5000}", now_text()
    message = sentence(rng, 30)
    answer = sentence(rng, 120)
    conn.execute("INSERT INTO tasks (task_id, conversation_id, status, message, answer, latency_ms, input_tokens, "
                 "output_tokens, created_at, completed_at) VALUES (?, ?, 'completed', ?, ?, ?, ?, ?, ?, ?)",
                 (task, conversation, message, answer, rng.randint(200, 4000), 900, 300, at, at))
    conn.execute("INSERT INTO conversations VALUES (?, ?, ?, 'user', ?, ?)",
                 (uuid.uuid4().hex, conversation, task, message, at))
    conn.execute("INSERT INTO conversations VALUES (?, ?, ?, 'assistant', ?, ?)",
                 (uuid.uuid4().hex, conversation, task, answer, at))
    conn.execute("INSERT INTO observability_events (event_type, task_id, latency_ms, payload, created_at) "
                 "VALUES ('turn', ?, ?, ?, ?)", (task, rng.randint(200, 4000), '{"model": "bench"}', at))
    if embedding:
        for step in range(3):
            conn.execute("INSERT INTO trajectories VALUES (?, ?, ?, 'tool', ?, ?)",
                         (uuid.uuid4().hex, task, step, sentence(rng, 40), at))
        episode = uuid.uuid4().hex
        conn.execute("INSERT INTO episodes VALUES (?, ?, ?, 'turn', ?, 0.5, ?)",
                     (episode, task, conversation, sentence(rng, 25), at))
        conn.execute("INSERT INTO episodes_vec VALUES (?, 384, ?)", (episode, rng.randbytes(384 * 4)))


# ---------------------------------------------------------------- the writer (another process, like the Engine)


def writer(path: str, rate: float, stop, out, inserted) -> None:
    """Insert one turn per transaction at `rate` per second until `stop`, counting them in `inserted` (a shared
    integer); send [(start, seconds)] to `out`."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA synchronous = FULL")
    rng = random.Random(os.getpid())
    samples = []
    interval = 1.0 / rate
    number = 0
    following = time.monotonic()
    while not stop.is_set():
        start = time.monotonic()
        conn.execute("BEGIN IMMEDIATE")
        insert_turn(conn, rng, number)
        conn.execute("COMMIT")
        samples.append((start, time.monotonic() - start))
        number += 1
        inserted.value = number
        following += interval
        pause = following - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # the writer's pace: `rate` inserts per second
        else:
            following = time.monotonic()
    conn.close()
    out.send(samples)
    out.close()


# ---------------------------------------------------------------- the two ways of copying


def python_path(brain: Path, dest: Path, verify: str, method: str) -> dict:
    store = SnapshotStore(str(dest))
    name = f"bench-{uuid.uuid4().hex[:8]}"
    warnings, actions = [], []
    entry = take_snapshot(store, str(brain), name, verify=verify, fields=dict(reason="bench", kind="manual"),
                          migrations=MIGRATION_OPTIONS, min_free_bytes=0, warnings=warnings, actions=actions,
                          method=method, key="bind:bench", slug="bench")
    return dict(entry["manifest"].get("timings") or {}, size=entry["size"])


def cp_sync(brain: Path, dest: Path) -> dict:
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / f"cp-{uuid.uuid4().hex[:8]}.sqlite"
    subprocess.run(["cp", "--reflink=never", str(brain), str(target)], check=True)
    subprocess.run(["sync"], check=True)
    return dict(size=target.stat().st_size)


def measure(label: str, action) -> dict:
    started = time.monotonic()
    detail = action()
    finished = time.monotonic()
    return dict(label=label, start=started, end=finished, seconds=finished - started, detail=detail)


def latencies(samples, start: float, end: float) -> list[float]:
    """Latencies (ms) of the inserts that overlapped [start, end]."""
    return [seconds * 1000 for begun, seconds in samples if begun <= end and begun + seconds >= start]


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def describe(values: list[float]) -> str:
    if not values:
        return "no inserts"
    return (f"{len(values):5d} inserts, p50 {statistics.median(values):6.1f} ms, p99 {percentile(values, 0.99):6.1f} "
            f"ms, max {max(values):7.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--rate", type=float, default=100.0, help="writer inserts per second")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--verify", choices=["quick", "full", "none"], default="quick")
    parser.add_argument("--method", choices=["backup", "reflink"], default="backup")
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "bench")
    args = parser.parse_args()

    brain = args.workdir / "data" / "brain.sqlite"
    build_brain(brain, args.size_mb)
    dest = args.workdir / "snapshots"
    shutil.rmtree(dest, ignore_errors=True)
    print(f"brain {brain}: {os.path.getsize(brain) / 2**20:.0f} MB; writer {args.rate:.0f} inserts/s; "
          f"snapshot verify={args.verify} method={args.method}; SQLite {sqlite3.sqlite_version}")

    stop = multiprocessing.Event()
    receive, send = multiprocessing.Pipe(duplex=False)
    inserted = multiprocessing.Value("q", 0)
    process = multiprocessing.Process(target=writer, args=(str(brain), args.rate, stop, send, inserted))
    process.start()
    results = []
    try:
        # The writer is in its stride once it has written a second's worth of inserts.
        wait_until(lambda: inserted.value >= args.rate, 120, "a second's worth of inserts by the writer",
                   last=lambda: inserted.value)
        # the baseline: the writer alone for 2 s (a window of time by design)
        results.append(measure("idle (writer alone)", lambda: time.sleep(2) or {}))
        for _run in range(args.runs):
            results.append(measure("snapshot (python path)",
                                   lambda: python_path(brain, dest, args.verify, args.method)))
            shutil.rmtree(dest, ignore_errors=True)
            subprocess.run(["sync"], check=True)
            results.append(measure("cp --reflink=never + sync", lambda: cp_sync(brain, dest)))
            shutil.rmtree(dest, ignore_errors=True)
            subprocess.run(["sync"], check=True)
        # The insert the last copy held up has ended, and another after it: every sample overlapping it is in.
        done = inserted.value
        wait_until(lambda: inserted.value >= done + 2, 120, "inserts by the writer after the last copy")
    finally:
        stop.set()
        samples = receive.recv()
        process.join()
        shutil.rmtree(dest, ignore_errors=True)

    print()
    for result in results:
        detail = ", ".join(f"{key} {value:.2f}" if isinstance(value, float) else f"{key} {value}"
                           for key, value in result["detail"].items())
        print(f"{result['label']:28s} {result['seconds']:7.2f} s   writer: "
              f"{describe(latencies(samples, result['start'], result['end']))}" + (f"   [{detail}]" if detail else ""))
    snaps = [r["seconds"] for r in results if r["label"].startswith("snapshot")]
    cps = [r["seconds"] for r in results if r["label"].startswith("cp")]
    snap_lat = [v for r in results if r["label"].startswith("snapshot") for v in latencies(samples, r["start"],
                                                                                           r["end"])]
    cp_lat = [v for r in results if r["label"].startswith("cp") for v in latencies(samples, r["start"], r["end"])]
    print()
    print(f"snapshot median {statistics.median(snaps):.2f} s, cp + sync median {statistics.median(cps):.2f} s: "
          f"ratio {statistics.median(snaps) / statistics.median(cps):.2f}x (target <= 1.3x)")
    print(f"writer during the snapshots: p99 {percentile(snap_lat, 0.99):.1f} ms, max {max(snap_lat or [0]):.1f} ms "
          "(target p99 <= 50 ms)")
    print(f"writer during cp + sync:     p99 {percentile(cp_lat, 0.99):.1f} ms, max {max(cp_lat or [0]):.1f} ms")


if __name__ == "__main__":
    main()
