# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Brains written by the reference Engine's own code, without a container: for the bad-window replay tests.

:func:`make_brain` creates a brain with the reference Engine's migrations up to a number (5: the 2.3.x schema,
6: 2.4.x, 8: 3.0.0) exactly as its start-up applies them; :func:`migrate` applies more of them to an existing brain
(what an upgrade's start-up does); :func:`write_turns` writes completed turns (and feedback) with the Engine's own
``record_turn``, so the rows, the updates (skill counters, graph weights, channel state) and the schema-dependent
choices (tags from 0006 on, no ``raw_payload`` from 0008 on) are the real ones.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import sqlite3
import sys
import uuid
from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[2] / "reference_engine"
MIGRATIONS = REFERENCE / "migrations"

__all__ = ["MIGRATIONS", "make_brain", "migrate", "rows", "write_turns"]


def _engine():
    """The reference Engine's ``engine.brain`` and ``engine.agent`` modules (standard library only)."""
    if str(REFERENCE) not in sys.path:
        sys.path.insert(0, str(REFERENCE))
    from engine import agent, brain  # the reference Engine's tree, on sys.path from here on

    return brain, agent


def migrate(path: str | Path, upto: int) -> list[str]:
    """Apply the reference migrations numbered up to ``upto`` (those not applied yet); returns the versions."""
    brain, _agent = _engine()
    shipped = [m for m in brain.shipped_migrations(str(MIGRATIONS)) if int(m.version) <= upto]
    with contextlib.redirect_stdout(io.StringIO()):  # the Engine's JSON log lines
        brain.open_brain(str(path))
        return brain.migrate(str(path), shipped)


def make_brain(path: str | Path, upto: int = 5) -> str:
    """A new brain (WAL mode) with the reference migrations up to ``upto``; returns its path."""
    migrate(path, upto)
    return str(path)


def write_turns(
    path: str | Path, count: int, *, seed: int = 0, feedback_every: int = 2, conversation_id: str | None = None
) -> dict[str, list[str]]:
    """Write ``count`` completed turns (each committed as the Engine commits it: the running task first, then the
    turn's rows) and a feedback row for every ``feedback_every``-th turn. Returns ``{"tasks": [...], "signals":
    [...]}``. Arithmetic and chat messages alternate, so facts, skills and graph rows are written and updated."""
    brain, agent = _engine()
    rng = random.Random(seed)
    written: dict[str, list[str]] = {"tasks": [], "signals": []}
    with brain.opened(str(path)) as conn:
        features = agent.Features.from_versions(list(brain.applied_migrations(conn)))
        for index in range(count):
            number = seed * 1000 + index
            message = f"what is {number} + {index % 7}" if index % 2 == 0 else f"hello {number}"
            plan = agent.plan_turn(message, 250, "none", rng)
            task_id, conversation = str(uuid.UUID(int=rng.getrandbits(128))), conversation_id or f"c-{number}"
            now = f"2026-03-01T02:{index // 60 % 60:02d}:{index % 60:02d}.000Z"
            with brain.transaction(conn):
                agent.insert_running_task(conn, task_id, conversation, message, now)
            record = agent.TurnRecord(
                task_id=task_id,
                conversation_id=conversation,
                message=message,
                request_body=json.dumps({"message": message}),
                plan=plan,
                status="completed",
                error_code=None,
                error_message=None,
                started_at=now,
                finished_at=now,
                latency_ms=250,
            )
            with brain.transaction(conn):
                agent.record_turn(conn, features, record)
                if feedback_every and index % feedback_every == 0:
                    signal_id = str(uuid.UUID(int=rng.getrandbits(128)))
                    conn.execute(
                        "INSERT INTO learning_signals (signal_id, task_id, rating, comment, created_at)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (signal_id, task_id, index % 5 + 1, "replay test", now),
                    )
                    written["signals"].append(signal_id)
            written["tasks"].append(task_id)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return written


def rows(path: str | Path, table: str, columns: str = "*") -> list[tuple]:
    """Every row of ``table`` (sorted), read only; [] when the brain has no such table."""
    immutable = "" if Path(f"{path}-wal").exists() else "&immutable=1"  # creates no side files at rest
    conn = sqlite3.connect(f"file:{path}?mode=ro{immutable}", uri=True)
    try:
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
        return sorted(conn.execute(f'SELECT {columns} FROM "{table}"').fetchall(), key=repr) if exists else []
    finally:
        conn.close()
