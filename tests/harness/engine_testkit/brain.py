# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read-only looks into a brain (the Engine's SQLite file) from the Docker host.

Every connection is opened with the ``file:<path>?mode=ro`` URI, so nothing here can write the
brain, and a look leaves no trace:

- a running Engine holds its WAL-mode brain open, so ``-wal`` and ``-shm`` exist and SQLite reads
  the committed state consistently through them (nothing is created);
- a stopped Engine checkpointed and closed its brain (no ``-wal``): the file is then opened with
  ``immutable=1`` as well, because a plain read-only open of a WAL-mode file would *create* empty
  ``-wal``/``-shm`` side files next to it (which would change what a snapshot sees). Do not read a
  brain this way while an Engine is starting on it.

Should side files appear anyway, they are handed to the brain file's owner so that an Engine
running as another user can still open them.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = [
    "applied_migrations",
    "connect_ro",
    "missing_acknowledged",
    "missing_acknowledged_detail",
    "row_counts",
    "signal_ids",
    "tables",
    "task_ids",
]

MIGRATIONS_TABLE = "engine_schema_migrations"
MIGRATIONS_COLUMN = "version"


@contextlib.contextmanager
def connect_ro(path: str | os.PathLike[str], timeout: float = 10) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the brain at ``path`` (closed on exit).

    :raises FileNotFoundError: when there is no brain at ``path`` (``mode=ro`` never creates one).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no brain at {path}")
    sides = [Path(f"{path}-wal"), Path(f"{path}-shm")]
    existed = {p: p.exists() for p in sides}
    immutable = "&immutable=1" if not existed[sides[0]] else ""
    conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro{immutable}", uri=True, timeout=timeout)
    try:
        yield conn
    finally:
        conn.close()
        st = path.stat()
        for p in sides:
            if not existed[p] and p.exists():
                with contextlib.suppress(OSError):
                    os.chown(p, st.st_uid, st.st_gid)


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]


def _id_column(conn: sqlite3.Connection, table: str, preferred: str) -> str:
    cols = _columns(conn, table)
    if not cols:
        raise LookupError(f"brain has no table {table!r}")
    for name in (preferred, "id"):
        if name in cols:
            return name
    raise LookupError(f"table {table!r} has neither {preferred!r} nor 'id' (columns: {cols})")


def tables(path: str | os.PathLike[str]) -> list[str]:
    """Names of the brain's tables (``sqlite_*`` internals excluded), sorted."""
    with connect_ro(path) as conn:
        return sorted(
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        )


def task_ids(path: str | os.PathLike[str], status: str | None = "completed") -> set[str]:
    """Task ids in the brain's ``tasks`` table with ``status`` (any status when ``None``)."""
    with connect_ro(path) as conn:
        col = _id_column(conn, "tasks", "task_id")
        if status is None:
            rows = conn.execute(f'SELECT "{col}" FROM tasks')
        else:
            rows = conn.execute(f'SELECT "{col}" FROM tasks WHERE status = ?', (status,))
        return {str(r[0]) for r in rows}


def signal_ids(path: str | os.PathLike[str]) -> set[str]:
    """Ids of the feedback rows in ``learning_signals``."""
    with connect_ro(path) as conn:
        col = _id_column(conn, "learning_signals", "signal_id")
        return {str(r[0]) for r in conn.execute(f'SELECT "{col}" FROM learning_signals')}


def applied_migrations(
    path: str | os.PathLike[str], table: str = MIGRATIONS_TABLE, column: str = MIGRATIONS_COLUMN
) -> list[str]:
    """Applied migration versions, sorted (the reference Engine's ``engine_schema_migrations.version``).

    An empty list when the table does not exist yet.
    """
    with connect_ro(path) as conn:
        if not _columns(conn, table):
            return []
        return sorted(str(r[0]) for r in conn.execute(f'SELECT "{column}" FROM "{table}"'))


def row_counts(path: str | os.PathLike[str]) -> dict[str, int]:
    """Row count of every table of the brain."""
    with connect_ro(path) as conn:
        names = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        ]
        return {n: int(conn.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0]) for n in sorted(names)}


def _engine_id(engine: Any) -> str:
    return engine if isinstance(engine, str) else engine.engine_id


def missing_acknowledged_detail(
    loadgen: Any, engine: Any, brain_path: str | os.PathLike[str] | None = None
) -> dict[str, set[str]]:
    """Acknowledged ids of ``engine`` that the brain lacks: ``{"tasks": ..., "signals": ...}``.

    A task counts as present only with status ``completed`` (its ``done`` event promised that).

    :param loadgen: a :class:`engine_testkit.loadgen.LoadGenerator` (or anything with
        ``acked_task_ids(engine_id)`` and ``acked_signal_ids(engine_id)``).
    :param engine: a :class:`engine_testkit.fleet.Engine` or an engine id.
    :param brain_path: the brain to check; by default ``engine.brain_path()``.
    """
    engine_id = _engine_id(engine)
    if brain_path is None:
        if isinstance(engine, str):
            raise ValueError("brain_path is required when engine is given as an id")
        brain_path = engine.brain_path()
    acked_tasks = set(loadgen.acked_task_ids(engine_id))
    acked_signals = set(loadgen.acked_signal_ids(engine_id))
    present_tasks = task_ids(brain_path, status="completed")
    present_signals = signal_ids(brain_path) if acked_signals else set()
    return {"tasks": acked_tasks - present_tasks, "signals": acked_signals - present_signals}


def missing_acknowledged(loadgen: Any, engine: Any, brain_path: str | os.PathLike[str] | None = None) -> set[str]:
    """Acknowledged task ids and signal ids of ``engine`` absent from the brain (empty set = no loss).

    See :func:`missing_acknowledged_detail` for the parameters and for the two sets kept apart.
    """
    detail = missing_acknowledged_detail(loadgen, engine, brain_path)
    return detail["tasks"] | detail["signals"]
