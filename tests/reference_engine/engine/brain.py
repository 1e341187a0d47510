# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The brain: one SQLite file in WAL mode, and the migrations the image ships.

Connections are opened per request (``sqlite3`` connections are not shared between threads) in
autocommit mode (``isolation_level=None``); every write is wrapped in an explicit
``BEGIN IMMEDIATE`` ... ``COMMIT`` by :func:`transaction`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sqlite3
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

from .logs import log, utc_now

MIGRATIONS_TABLE = "engine_schema_migrations"

_MIGRATION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<slug>[A-Za-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """A shipped migration could not be read or applied."""


class MigrationRequired(Exception):
    """The brain holds migrations this image does not ship: this version cannot run on it."""

    def __init__(self, unknown: list[str]) -> None:
        super().__init__(", ".join(unknown))
        self.unknown = unknown


@dataclass(frozen=True)
class Migration:
    version: str  # "0006"
    name: str  # file stem, "0006_episode_tags"
    path: str
    checksum: str  # hex SHA-256 of the file
    sql: str


def connect(db_path: str, readonly: bool = False) -> sqlite3.Connection:
    """Open a connection to the brain with the Engine's pragmas (autocommit mode). A read-only
    connection never creates the file (a health probe must not conjure up an empty brain)."""
    if readonly:
        uri = "file:" + urllib.parse.quote(os.path.abspath(db_path)) + "?mode=ro"
        conn = sqlite3.connect(uri, timeout=5.0, isolation_level=None, uri=True)
    else:
        conn = sqlite3.connect(db_path, timeout=5.0, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


@contextlib.contextmanager
def opened(db_path: str, readonly: bool = False) -> Iterator[sqlite3.Connection]:
    """``with opened(path) as conn``: a connection that is always closed afterwards."""
    conn = connect(db_path, readonly=readonly)
    try:
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: ``BEGIN IMMEDIATE`` (takes the write lock up front, so concurrent
    writers queue on ``busy_timeout`` instead of failing on a lock upgrade), ``COMMIT`` on success,
    ``ROLLBACK`` on any error (the error propagates)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:  # SQLite may already have rolled back (e.g. on SQLITE_FULL)
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def open_brain(db_path: str) -> None:
    """Create the brain's directory and file if missing and switch it to WAL mode (persistent)."""
    parent = os.path.dirname(os.path.abspath(db_path))
    os.makedirs(parent, exist_ok=True)
    with opened(db_path) as conn:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"could not switch the brain to WAL mode (journal_mode={mode})")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ("
            "version TEXT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )


def shipped_migrations(directory: str) -> list[Migration]:
    """The migrations this image ships, sorted by version."""
    found: dict[str, Migration] = {}
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise MigrationError(f"cannot list migrations directory {directory}: {exc}") from exc
    for filename in names:
        match = _MIGRATION_FILE.match(filename)
        if not match:
            continue
        path = os.path.join(directory, filename)
        with open(path, "rb") as handle:
            raw = handle.read()
        version = match.group("version")
        if version in found:
            raise MigrationError(f"two migrations share version {version}: {found[version].path}, {path}")
        found[version] = Migration(
            version=version,
            name=filename[: -len(".sql")],
            path=path,
            checksum=hashlib.sha256(raw).hexdigest(),
            sql=raw.decode("utf-8"),
        )
    return [found[v] for v in sorted(found)]


def applied_migrations(conn: sqlite3.Connection) -> dict[str, str]:
    """``{version: checksum}`` of the migrations recorded in the brain."""
    rows = conn.execute(f"SELECT version, checksum FROM {MIGRATIONS_TABLE}").fetchall()
    return {str(version): str(checksum) for version, checksum in rows}


def split_statements(sql: str) -> list[str]:
    """Split a migration file into single statements.

    ``sqlite3.complete_statement`` understands string literals, comments and trigger bodies, so
    a statement ends at the first line where the accumulated text is complete. Migration files
    keep one statement per line-ending semicolon and hold no transaction control of their own.
    """
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    leftover = "\n".join(
        ln for ln in buffer.splitlines() if ln.strip() and not ln.strip().startswith("--")
    )
    if leftover:
        raise MigrationError(f"incomplete SQL statement at end of migration: {leftover[:80]!r}")
    return statements


def migrate(db_path: str, migrations: list[Migration]) -> list[str]:
    """Apply every pending migration, each in its own transaction with its bookkeeping row.

    Raises :class:`MigrationRequired` when the brain holds a version this image does not ship,
    before touching anything. Returns the versions now applied (all of them).
    """
    shipped = {m.version: m for m in migrations}
    with opened(db_path) as conn:
        applied = applied_migrations(conn)
        unknown = sorted(set(applied) - set(shipped))
        if unknown:
            raise MigrationRequired(unknown)
        for version, checksum in sorted(applied.items()):
            if shipped[version].checksum != checksum:
                log(
                    "WARNING",
                    "migrations",
                    f"migration {shipped[version].name} was applied with a different checksum",
                    extra={"version": version, "applied_checksum": checksum,
                           "shipped_checksum": shipped[version].checksum},
                )
        for migration in migrations:
            if migration.version in applied:
                continue
            statements = split_statements(migration.sql)
            try:
                with transaction(conn):
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(
                        f"INSERT INTO {MIGRATIONS_TABLE} (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
                        (migration.version, migration.name, migration.checksum, utc_now()),
                    )
            except sqlite3.Error as exc:
                raise MigrationError(f"migration {migration.name} failed and was rolled back: {exc}") from exc
            applied[migration.version] = migration.checksum
            log(
                "INFO",
                "migrations",
                f"applied migration {migration.name}",
                extra={"version": migration.version, "name": migration.name, "checksum": migration.checksum,
                       "statements": len(statements)},
            )
        return sorted(applied)


def table_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    """Column names of ``table`` (empty when the table does not exist)."""
    return [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")').fetchall()]


def checkpoint(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """``PRAGMA wal_checkpoint(TRUNCATE)``: returns (busy, wal pages, checkpointed pages)."""
    busy, log_pages, done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return int(busy), int(log_pages), int(done)
