# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A big brain, fast: grow a copy of a reference Engine's own brain with realistic rows, straight through SQLite.

A year-old brain is 0.5-2 GB (engine-contract.md). Growing one through ``/execute`` would take hours, so the
benchmarks take the brain a fresh Engine made (its schema and migration records are the Engine's own), grow a copy
with rows shaped like the ones a turn writes (tasks, conversations, trajectories, working memory, observability
events, episodes and their embeddings, knowledge, social graph, feedback, ingested chunks), and cache it under
build/bench/cache keyed by schema and size. :func:`install` puts that template into a stopped Engine's volume.

    python tests/bench/brainfill.py SOURCE.sqlite DEST.sqlite --mb 500
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import sqlite3
import struct
import time
import uuid
from pathlib import Path
from typing import Any

from benchlib import BUILD_DIR, log

EMBEDDING_DIM = 16  # the reference Engine's (engine/agent.py)
SKILLS = ("arithmetic", "recall", "summarise", "plan", "search", "chat")


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def schema_key(path: Path) -> str:
    """12 hex of the brain's schema (``sqlite_master`` SQL) and applied migrations: the template cache key."""
    uri = f"file:{path}?mode=ro&immutable=1"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        sql = [r[0] or "" for r in conn.execute("SELECT sql FROM sqlite_master ORDER BY type, name")]
        migrations: list[Any] = []
        if "engine_schema_migrations" in _tables(conn):
            migrations = [list(r) for r in conn.execute("SELECT version, checksum FROM engine_schema_migrations "
                                                        "ORDER BY version")]
    return hashlib.sha256(json.dumps([sql, migrations]).encode()).hexdigest()[:12]


class _Text:
    """Deterministic, incompressible-enough prose: sentences from a pool of made-up words."""

    def __init__(self, rng: random.Random):
        letters = "etaoinshrdlucmfwypvbgkjqxz"
        weights = [12, 9, 8, 7, 7, 6, 6, 6, 5, 4, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1]
        words = ["".join(rng.choices(letters, weights, k=rng.randint(2, 10))) for _word in range(4000)]
        self.rng = rng
        self.sentences = [
            " ".join(rng.choices(words, k=rng.randint(6, 22))).capitalize() + "." for _sentence in range(30000)
        ]

    def __call__(self, sentences: int) -> str:
        return " ".join(self.rng.choices(self.sentences, k=sentences))


def _embedding(rng: random.Random) -> bytes:
    return struct.pack(f"<{EMBEDDING_DIM}f", *(rng.uniform(-1, 1) for _value in range(EMBEDDING_DIM)))


#: The columns of every table a turn writes, in the order the rows of a batch are inserted.
COLUMNS: dict[str, tuple[str, ...]] = {
    "tasks": ("task_id", "conversation_id", "status", "message", "answer", "error", "latency_ms", "input_tokens",
              "output_tokens", "cache_hit_tokens", "created_at", "completed_at"),
    "conversations": ("message_id", "conversation_id", "task_id", "role", "content", "created_at"),
    "trajectories": ("step_id", "task_id", "step_index", "kind", "content", "created_at"),
    "working_memory_log": ("entry_id", "task_id", "conversation_id", "slot", "value", "raw_payload", "created_at"),
    "observability_events": ("event_type", "task_id", "latency_ms", "input_tokens", "output_tokens",
                             "cache_hit_tokens", "error_code", "payload", "created_at"),
    "episodes": ("episode_id", "task_id", "conversation_id", "kind", "summary", "importance", "created_at"),
    "episodes_vec": ("episode_id", "dim", "embedding"),
    "knowledge_store": ("fact_id", "subject", "predicate", "object", "source_task_id", "confidence", "created_at",
                        "updated_at"),
    "knowledge_store_vec": ("fact_id", "dim", "embedding"),
    "learning_signals": ("signal_id", "task_id", "rating", "comment", "created_at"),
    "ingestion_sources": ("source_id", "uri", "kind", "status", "created_at", "updated_at"),
    "ingestion_chunks": ("chunk_id", "source_id", "chunk_index", "content", "created_at"),
    "ingestion_chunks_vec": ("chunk_id", "dim", "embedding"),
    "channel_state_snapshots": ("snapshot_id", "channel", "conversation_id", "turn_count", "last_task_id",
                                "state_json", "updated_at"),
}


def _ts(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


class _Turns:
    """The rows turns write, one turn a minute from ``base`` on, in 3000 conversations; deterministic for an ``rng``
    (every draw in a fixed order)."""

    def __init__(self, rng: random.Random, text: _Text, base: float):
        self.rng, self.text, self.base = rng, text, base
        self.count = 0
        self.conversations = [str(uuid.UUID(int=rng.getrandbits(128))) for _conversation in range(3000)]
        self.rows: dict[str, list[tuple[Any, ...]]] = {}

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def add(self, table: str, row: tuple[Any, ...]) -> None:
        self.rows.setdefault(table, []).append(row)

    def turn(self) -> None:
        """One more turn's rows: its task, messages, trajectory, working memory, events and episode (and, every
        few turns, a fact, a rating, an ingested document, a channel snapshot)."""
        self.count += 1
        rng, text, add = self.rng, self.text, self.add
        at = self.base + self.count * 60.0 + rng.random()
        start, end = _ts(at), _ts(at + rng.uniform(0.3, 4.0))
        conv = rng.choice(self.conversations)
        task = self.uid()
        skill = rng.choice(SKILLS)
        message = text(rng.randint(1, 3))
        answer = text(rng.randint(2, 6))
        latency = rng.randint(200, 4000)
        tokens = (rng.randint(200, 3000), rng.randint(20, 600), rng.randint(0, 2000))
        add("tasks", (task, conv, "completed", message, answer, None, latency, *tokens, start, end))
        add("conversations", (self.uid(), conv, task, "user", message, start))
        add("conversations", (self.uid(), conv, task, "assistant", answer, end))
        for i, kind in enumerate(("plan", "tool_call", "tool_result", "respond")):
            add("trajectories", (self.uid(), task, i, kind, json.dumps({"skill": skill, "note": text(1)}), end))
        add("working_memory_log", (self.uid(), task, conv, "user_message", message,
                                   json.dumps({"message": message}), end))
        add("working_memory_log", (self.uid(), task, conv, "answer", answer, None, end))
        add("observability_events", ("turn_started", task, None, None, None, None, None,
                                     json.dumps({"conversation_id": conv}), start))
        add("observability_events", ("turn_completed", task, latency, *tokens, None,
                                     json.dumps({"conversation_id": conv, "skill": skill}), end))
        episode = self.uid()
        add("episodes", (episode, task, conv, skill, text(rng.randint(1, 3)), round(rng.random(), 3), end))
        add("episodes_vec", (episode, EMBEDDING_DIM, _embedding(rng)))
        self._every_few_turns(task, conv, end)

    def _every_few_turns(self, task: str, conv: str, end: str) -> None:
        rng, text, add, turns = self.rng, self.text, self.add, self.count
        if turns % 4 == 0:
            fact = hashlib.sha256(f"{turns}".encode()).hexdigest()[:32]
            add("knowledge_store", (fact, text(1)[:40], rng.choice(("likes", "works_at", "lives_in", "knows")),
                                    text(1), task, 1.0, end, end))
            add("knowledge_store_vec", (fact, EMBEDDING_DIM, _embedding(rng)))
        if turns % 3 == 0:
            add("learning_signals", (self.uid(), task, rng.choice((-1, 1)), text(1) if rng.random() < 0.3 else None,
                                     end))
        if turns % 10 == 0:
            source = self.uid()
            add("ingestion_sources", (source, f"file:///docs/{source}.md", "markdown", "done", end, end))
            for i in range(3):
                chunk = self.uid()
                add("ingestion_chunks", (chunk, source, i, text(rng.randint(6, 14)), end))
                add("ingestion_chunks_vec", (chunk, EMBEDDING_DIM, _embedding(rng)))
        if turns % 25 == 0:
            add("channel_state_snapshots", (self.uid(), "web", conv, turns, task,
                                            json.dumps({"summary": text(2)}), end))


def _insert(conn: sqlite3.Connection, have: set[str], rows: dict[str, list[tuple[Any, ...]]]) -> None:
    """The rows of a batch, table after table (those the brain has), in one transaction."""
    conn.execute("BEGIN")
    for table, columns in COLUMNS.items():
        batch = rows.get(table, [])
        if table in have and batch:
            marks = ", ".join("?" * len(columns))
            conn.executemany(f'INSERT OR IGNORE INTO "{table}" ({", ".join(columns)}) VALUES ({marks})', batch)
    conn.execute("COMMIT")


def grow(path: Path, target_mb: float, seed: int = 11) -> dict[str, Any]:
    """Add turns to the (closed, not in use) brain at ``path`` until it holds ``target_mb`` MB; returns a summary.

    The brain stays in WAL mode and is checkpointed and closed at the end (no ``-wal`` left).
    """
    rng = random.Random(seed)
    text = _Text(rng)
    target = int(target_mb * 1024 * 1024)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -200000")
    have = _tables(conn)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    t0 = time.monotonic()
    turns = _Turns(rng, text, base=time.time() - 365 * 86400.0)
    size = page_size * conn.execute("PRAGMA page_count").fetchone()[0]
    while size < target:
        turns.rows.clear()
        for _turn in range(2000):
            turns.turn()
        _insert(conn, have, turns.rows)
        size = page_size * conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {"turns": turns.count, "bytes": path.stat().st_size, "seconds": round(time.monotonic() - t0, 1)}


def template(source: Path, target_mb: float) -> Path:
    """A cached brain of ``target_mb`` MB grown from ``source`` (a closed brain of a stopped Engine)."""
    cache = BUILD_DIR / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    dest = cache / f"brain-{schema_key(source)}-{int(target_mb)}mb.sqlite"
    if dest.is_file():
        log(f"brain template: {dest} (cached, {dest.stat().st_size / 1e6:.0f} MB)")
        return dest
    tmp = dest.with_suffix(".tmp")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    shutil.copyfile(source, tmp)
    summary = grow(tmp, target_mb)
    os.replace(tmp, dest)
    log(f"brain template: {dest} grown: {summary}")
    return dest


def install(engine: Any, brain: Path, stop_timeout: int = 10) -> None:
    """Stop ``engine`` (an engine_testkit Engine), put ``brain`` in its volume as its brain, start it again.

    The copy lands next to the brain and is renamed over it (one filesystem), the old WAL side files removed.
    The caller waits for health.
    """
    container = engine.container()
    container.stop(timeout=stop_timeout)
    folder = engine.volume_mountpoint()
    target = folder / "brain.sqlite"
    st = target.stat() if target.exists() else None
    staged = folder / "brain.sqlite.bench-staged"
    shutil.copyfile(brain, staged)
    if st is not None:
        os.chown(staged, st.st_uid, st.st_gid)
    for side in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{target}{side}").unlink()
    os.replace(staged, target)
    container.start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--mb", type=float, default=500)
    args = parser.parse_args()
    shutil.copyfile(args.source, args.dest)
    print(json.dumps(grow(args.dest, args.mb)))


if __name__ == "__main__":
    main()
