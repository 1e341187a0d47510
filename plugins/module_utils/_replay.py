# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Bad-window writes: what a failed release wrote after the pre-upgrade snapshot, replayed onto the restored brain.

Three brains on one connection:

    main  the restored brain: written by a replay (one transaction), read only by a report;
    new   the kept bad-window brain (the pre-restore snapshot): read only;
    old   the pre-upgrade snapshot it was restored from: read only.

Per table of `new`, rows are matched with `old` by primary key (by rowid for a rowid table without one): rows
inserted, updated (same key, other values in the columns both schemas have) and deleted in the bad window. A
replay then writes into `main` what its schema can hold: inserted rows (columns it lacks dropped, columns the rows
lack left to their defaults), and updates of rows that `main` still holds as the snapshot had them. It never
deletes; a row `main` already holds with the same values is "already there" (so a second replay writes nothing); a
row whose key `main` holds with other values is a conflict, never overwritten. Each row is one statement under its
own savepoint, with ``PRAGMA foreign_keys=ON`` and ``OR ABORT``: a row that violates a NOT NULL, CHECK, UNIQUE or
FOREIGN KEY constraint of the old schema is skipped and listed with SQLite's reason (rows refused for a foreign key
are tried again once the other rows are in); the transaction commits the rest.

    result = BrainReplay(brain, bad_window, baseline, mode="replay").run()     # or mode="report", dry_run=True

Which files to compare, and the rollback's entry point (replay_after_restore), are in _bad_window.py.
"""

from __future__ import annotations

import fnmatch
import os
import re
import sqlite3
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from ansible_collections.september.engine.plugins.module_utils._brain import (
    SIDE_SUFFIXES,
    processes_holding,
    quote_identifier,
    require_sqlite_file,
)
from ansible_collections.september.engine.plugins.module_utils._errors import BrainError, OptionsError
from ansible_collections.september.engine.plugins.module_utils._fileops import hand_to_owner_of

MODES = ("replay", "report", "off", "auto")
SAMPLE = 5  # sample keys per reason

NEW_TABLE = "table not in the old schema"
MIGRATIONS_RECORD = ("the bad release's record of its migrations: replaying it would make the old release refuse the "
                     "brain (MIGRATION_REQUIRED)")
EXCLUDED = "excluded by the tables option"
DELETED = "deleted in the bad window: a replay never deletes (the restored brain keeps the row)"
DROPPED_TABLE = "table dropped by the bad release: a replay never deletes (the restored brain keeps its rows)"
# Tables that cannot be matched row by row count the rows they have more than the snapshot.
KEY_CHANGED = "the primary key differs between the old and the new schema: rows cannot be matched"
NO_KEY = "no primary key and no usable rowid: rows cannot be matched"
VIRTUAL = "a virtual table: its rows belong to its module, they are not replayed"
NULL_KEY = "NULL in the primary key: the row cannot be matched"
COLLISION = "the restored brain holds another row with this key (written after the restore?): not overwritten"
CHANGED = "changed in the restored brain since the snapshot: not overwritten"
GONE = "no longer in the restored brain: updates apply only to rows that still exist"
CONSTRAINT = "violates the old schema: {}"

_WITHOUT_ROWID = re.compile(r"\bWITHOUT\s+ROWID\b", re.IGNORECASE)
_AUTOINCREMENT = re.compile(r"\bAUTOINCREMENT\b", re.IGNORECASE)
_q = quote_identifier


# ---------------------------------------------------------------- schemas


@dataclass
class Shape:
    """A table as one brain's schema has it: its columns (generated ones left out) and how rows are keyed."""

    name: str
    columns: list
    key: list
    key_kind: str  # "primary key", "integer primary key" (the rowid), "rowid" (no declared key), "none"
    virtual: bool = False  # a virtual table, or one of the shadow tables that hold a virtual table's data
    autoincrement: bool = False
    shadow: bool = False

    @property
    def values(self) -> list:
        """Columns that are not the key."""
        keys = {name.lower() for name in self.key}
        return [name for name in self.columns if name.lower() not in keys]

    def shared(self, other: Shape | None) -> list:
        """Value columns of this table that `other` has too (this table's spelling)."""
        theirs = {name.lower() for name in other.values} if other else set()
        return [name for name in self.values if name.lower() in theirs]

    def same_key(self, other: Shape) -> bool:
        return self.key_kind == other.key_kind and [k.lower() for k in self.key] == [k.lower() for k in other.key]


def _shape(conn: sqlite3.Connection, schema: str, name: str, sql: str, kind: str, without_rowid: bool) -> Shape:
    if kind in ("virtual", "shadow"):
        return Shape(name, [], [], "none", virtual=True, shadow=kind == "shadow")
    info = conn.execute(f"PRAGMA {schema}.table_info({_q(name)})").fetchall()
    columns = [row[1] for row in info]
    primary = [row for row in sorted(info, key=lambda row: row[5]) if row[5]]
    if primary:
        alias = len(primary) == 1 and not without_rowid and str(primary[0][2]).strip().upper() == "INTEGER"
        key, kind = [row[1] for row in primary], "integer primary key" if alias else "primary key"
    else:
        taken = {column.lower() for column in columns}
        free = [candidate for candidate in ("rowid", "_rowid_", "oid") if candidate not in taken]
        key, kind = (free[:1], "rowid") if free else ([], "none")
    return Shape(name, columns, key, kind, autoincrement=bool(_AUTOINCREMENT.search(sql)))


def _table_kinds(conn: sqlite3.Connection, schema: str, rows: list) -> dict:
    """{name: (kind, without rowid)}: kind table, virtual or shadow (PRAGMA table_list; before SQLite 3.37, read
    from the SQL: a shadow table is named after its virtual table)."""
    try:
        listed = conn.execute(f"PRAGMA {schema}.table_list").fetchall()
    except sqlite3.OperationalError:
        listed = None
    if listed:
        return {row[1]: (row[2], bool(row[4])) for row in listed}
    virtual = [name for name, sql in rows if (sql or "").lstrip().upper().startswith("CREATE VIRTUAL")]
    kinds = {}
    for name, sql in rows:
        shadow = any(name.lower().startswith(v.lower() + "_") for v in virtual)
        kind = "virtual" if name in virtual else "shadow" if shadow else "table"
        kinds[name] = (kind, bool(_WITHOUT_ROWID.search((sql or "")[(sql or "").rfind(")"):])))
    return kinds


def read_shapes(conn: sqlite3.Connection, schema: str) -> dict:
    """{lower-case table name: Shape} of the tables of `schema` (main, new or old), SQLite's own left out."""
    rows = conn.execute(
        f"SELECT name, sql FROM {schema}.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    ).fetchall()
    kinds = _table_kinds(conn, schema, rows)
    return {name.lower(): _shape(conn, schema, name, sql or "", *kinds.get(name, ("table", False)))
            for name, sql in rows}


def _parents_first(conn: sqlite3.Connection, names: list, shapes: dict) -> list:
    """`names` (lower case) ordered so that a table comes after the tables its foreign keys (in main) refer to."""
    parents = {}
    for name in names:
        shape = shapes.get(name)
        rows = conn.execute(f"PRAGMA main.foreign_key_list({_q(shape.name)})").fetchall() if shape else []
        parents[name] = sorted({str(row[2]).lower() for row in rows} - {name})
    ordered, placed = [], set()

    def place(name: str, path: tuple) -> None:
        if name in placed or name in path or name not in parents:
            return
        for parent in parents[name]:
            place(parent, (*path, name))
        placed.add(name)
        ordered.append(name)

    for name in names:
        place(name, ())
    return ordered


# ---------------------------------------------------------------- what one table reports


def plain_key(key: tuple):
    """A key as a report shows it: the value (a list for a composite key), BLOBs in hex."""
    values = [value.hex() if isinstance(value, bytes) else value for value in key]
    return values[0] if len(values) == 1 else values


@dataclass
class TableReport:
    """Counts and reasons of one table."""

    name: str
    written: dict = field(default_factory=lambda: dict(inserted=0, updated=0, deleted=0))
    replayable: dict = field(default_factory=lambda: dict(inserted=0, updated=0))
    replayed: dict = field(default_factory=lambda: dict(inserted=0, updated=0))
    already_there: int = 0
    reasons: dict = field(default_factory=dict)
    dropped_columns: list = field(default_factory=list)
    defaulted_columns: list = field(default_factory=list)

    def skip(self, reason: str, count: int = 1, keys=()) -> None:
        if count <= 0:
            return
        entry = self.reasons.setdefault(reason, dict(reason=reason, count=0, sample=[]))
        entry["count"] += count
        for key in keys:
            if len(entry["sample"]) >= SAMPLE:
                break
            entry["sample"].append(plain_key(key))

    @property
    def not_replayable(self) -> int:
        return sum(entry["count"] for entry in self.reasons.values())

    def worth_reporting(self) -> bool:
        return bool(sum(self.written.values()) or self.reasons or self.already_there or self.dropped_columns)

    def as_dict(self) -> dict:
        return dict(written_in_bad_window=dict(self.written), replayable=dict(self.replayable),
                    replayed=dict(self.replayed), already_there=self.already_there,
                    not_replayable=list(self.reasons.values()), dropped_columns=list(self.dropped_columns),
                    defaulted_columns=list(self.defaulted_columns))


def totals(reports: list) -> dict:
    """The sums of the tables' counts."""
    out = dict(written_in_bad_window=dict(inserted=0, updated=0, deleted=0), replayable=dict(inserted=0, updated=0),
               replayed=dict(inserted=0, updated=0), already_there=0, not_replayable=0, tables=len(reports))
    for report in reports:
        for part, counts in (("written_in_bad_window", report.written), ("replayable", report.replayable),
                             ("replayed", report.replayed)):
            for name, count in counts.items():
                out[part][name] += count
        out["already_there"] += report.already_there
        out["not_replayable"] += report.not_replayable
    return out


# ---------------------------------------------------------------- SQL of the comparison


def _match(left: str, right: str, key: list) -> str:
    return " AND ".join(f"{left}.{_q(k)} IS {right}.{_q(k)}" for k in key)


def _columns(alias: str, names: list) -> str:
    return ", ".join(f"{alias}.{_q(name)}" for name in names)


def _key_present(alias: str, shape: Shape) -> str:
    if shape.key_kind != "primary key":
        return "1"
    return " AND ".join(f"{alias}.{_q(k)} IS NOT NULL" for k in shape.key)


class _Sql:
    """The queries that compare one table of `new` with `old` (None when the old schema lacks it)."""

    def __init__(self, new: Shape, old: Shape | None):
        self.new, self.old = new, old
        self.table_new = f"new.{_q(new.name)}"
        self.table_old = f"old.{_q(old.name)}" if old else None

    def inserted(self, select: str) -> str:
        where = _key_present("n", self.new)
        if self.old is not None:
            where += f" AND NOT EXISTS (SELECT 1 FROM {self.table_old} AS o WHERE {_match('o', 'n', self.new.key)})"
        return f"SELECT {select} FROM {self.table_new} AS n WHERE {where}"

    def updated(self, select: str) -> str | None:
        shared = self.new.shared(self.old)
        if self.old is None or not shared:
            return None
        differs = " OR ".join(f"n.{_q(c)} IS NOT o.{_q(c)}" for c in shared)
        return (f"SELECT {select} FROM {self.table_new} AS n JOIN {self.table_old} AS o "
                f"ON {_match('o', 'n', self.new.key)} WHERE {_key_present('n', self.new)} AND ({differs})")

    def deleted(self, select: str) -> str | None:
        if self.old is None:
            return None
        return (f"SELECT {select} FROM {self.table_old} AS o WHERE NOT EXISTS "
                f"(SELECT 1 FROM {self.table_new} AS n WHERE {_match('o', 'n', self.new.key)})")

    def null_keys(self) -> str | None:
        if self.new.key_kind != "primary key":
            return None
        return f"SELECT count(*) FROM {self.table_new} WHERE " + " OR ".join(f"{_q(k)} IS NULL" for k in self.new.key)


def _count(conn: sqlite3.Connection, sql: str | None) -> int:
    return conn.execute(sql).fetchone()[0] if sql else 0


def _sample(conn: sqlite3.Connection, sql: str | None) -> list:
    return [tuple(row) for row in conn.execute(f"{sql} LIMIT {SAMPLE}")] if sql else []


# ---------------------------------------------------------------- the replay


def _readonly_uri(path: str) -> str:
    """A read-only URI; immutable (no locks, no side files) when nothing writes the file (no -wal, no holder)."""
    at_rest = not any(os.path.exists(path + suffix) for suffix in SIDE_SUFFIXES) and not processes_holding(path)
    return f"file:{quote(os.path.abspath(path))}?mode=ro" + ("&immutable=1" if at_rest else "")


def schema_losses(bad_window: str, baseline: str) -> list:
    """What the bad release took away from the old schema, read from both files: tables dropped, columns dropped,
    primary keys changed ([] when its migrations only added)."""
    for what, path in (("bad-window brain", bad_window), ("baseline", baseline)):
        require_sqlite_file(path, what)
    conn = sqlite3.connect(":memory:", uri=True, isolation_level=None)
    try:
        for alias, path in (("new", bad_window), ("old", baseline)):
            conn.execute(f"ATTACH DATABASE ? AS {alias}", (_readonly_uri(path),))
        new, old = read_shapes(conn, "new"), read_shapes(conn, "old")
    except sqlite3.DatabaseError as exc:
        raise BrainError(f"Cannot read the schemas of {bad_window} and {baseline}: {exc}.") from exc
    finally:
        conn.close()
    losses = []
    for name, shape in sorted(old.items()):
        if shape.shadow:
            continue
        if name not in new:
            losses.append(f"table {shape.name} dropped")
            continue
        kept = {column.lower() for column in new[name].columns}
        losses.extend(f"column {shape.name}.{column} dropped" for column in shape.columns if column.lower() not in kept)
        if not shape.virtual and not new[name].same_key(shape):
            losses.append(f"primary key of {shape.name} changed")
    return losses


def resolve_mode(mode: str, bad_window: str, baseline: str) -> tuple:
    """(mode, why): `auto` becomes `replay` when the bad release's schema change was additive, else `report`."""
    if mode != "auto":
        return mode, None
    losses = schema_losses(bad_window, baseline)
    if losses:
        return "report", f"the bad release's migrations were destructive ({'; '.join(losses[:5])})"
    return "replay", "the bad release's migrations only added to the old schema"


class BrainReplay:
    """One comparison of a bad-window brain with its snapshot, and (mode replay) its replay onto the restored brain.

    `mode`: "replay" writes (in one transaction; `dry_run` rolls it back: check mode), "report" only reads.
    `tables`: {"include": [patterns], "exclude": [patterns]} (fnmatch, case-sensitive) of the tables to replay;
    the others are compared and reported, not replayed. `migrations`: how the brain records its migrations (the
    _brain MIGRATIONS options); that table is never replayed.
    """

    def __init__(self, brain: str, bad_window: str, baseline: str, *, mode: str = "replay", dry_run: bool = False,
                 tables: dict | None = None, migrations: dict | None = None, warnings: list | None = None):
        if mode not in ("replay", "report"):
            raise OptionsError(f"mode must be replay or report here (got {mode}).")
        self.paths = dict(main=brain, new=bad_window, old=baseline)
        for what, path in (("restored brain", brain), ("bad-window brain", bad_window), ("baseline", baseline)):
            require_sqlite_file(path, what)
        if os.path.realpath(bad_window) in (os.path.realpath(brain), os.path.realpath(baseline)):
            raise OptionsError(f"The bad-window brain {bad_window} is the restored brain or the baseline itself: "
                               "give the kept pre-restore snapshot as bad_window.")
        self.mode, self.dry_run = mode, dry_run
        self.write = mode == "replay"
        self.tables = tables or {}
        migrations = migrations or {}
        self.migrations_table = ((migrations.get("migrations_table") or "engine_schema_migrations").lower()
                                 if migrations.get("migrations_source", "table") == "table" else None)
        self.warnings = warnings if warnings is not None else []
        self.reports: list = []
        self.actions: list = []
        self._pending: list = []  # rows refused for a foreign key, tried again at the end
        self._shapes: dict = {}
        self.conn = None

    # ---- connection

    def _connect(self) -> sqlite3.Connection:
        brain = self.paths["main"]
        uri = f"file:{quote(os.path.abspath(brain))}?mode=rw" if self.write else _readonly_uri(brain)
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=10)
        except sqlite3.DatabaseError as exc:
            raise BrainError(f"Cannot open the restored brain {brain}: {exc}.") from exc
        try:
            for alias in ("new", "old"):
                conn.execute(f"ATTACH DATABASE ? AS {alias}", (_readonly_uri(self.paths[alias]),))
            if self.write:
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute("BEGIN IMMEDIATE")
            self._shapes = {alias: read_shapes(conn, alias) for alias in ("main", "new", "old")}
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise BrainError(f"Cannot read the brains to compare ({exc}): {self.paths}. Nothing was changed.") from exc
        return conn

    def run(self) -> dict:
        started = time.monotonic()
        sides = {self.paths["main"] + suffix for suffix in ("-wal", "-shm", "-journal")}
        existed = {side for side in sides if os.path.exists(side)}
        self.conn = self._connect()
        try:
            self._compare_and_replay()
            if self.write:
                self.conn.execute("ROLLBACK" if self.dry_run else "COMMIT")
        except sqlite3.DatabaseError as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise BrainError(f"The replay onto {self.paths['main']} failed ({exc}); it was rolled back, the restored "
                             "brain was not changed.") from exc
        except BrainError:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        finally:
            self.conn.close()
            hand_to_owner_of(self.paths["main"], [side for side in sides - existed if os.path.exists(side)])
        return self._result(round(time.monotonic() - started, 3))

    def _result(self, seconds: float) -> dict:
        reported = [report for report in self.reports if report.worth_reporting()]
        return dict(mode=self.mode, brain=self.paths["main"], predicted=self.dry_run or not self.write,
                    tables={report.name: report.as_dict() for report in reported}, totals=totals(self.reports),
                    seconds=seconds)

    # ---- tables

    def _compare_and_replay(self) -> None:
        new, old, main = (self._shapes[alias] for alias in ("new", "old", "main"))
        for name in _parents_first(self.conn, sorted(new), main):
            self._table(new[name], old.get(name), main.get(name))
        for name in sorted(set(old) - set(new)):
            self._dropped(old[name])
        self._retry_pending()
        for report in self.reports:
            for verb, count in (("insert", report.replayed["inserted"]), ("update", report.replayed["updated"])):
                if count and self.write:
                    self.actions.append(f"{verb} {count} row(s) of {report.name}")

    def _dropped(self, old: Shape) -> None:
        """A table of the snapshot that the bad-window brain lacks: the bad release dropped it with its rows."""
        report = TableReport(old.name)
        self.reports.append(report)
        if old.virtual:
            self.reports.remove(report)
            return
        table = f"old.{_q(old.name)}"
        report.written["deleted"] = _count(self.conn, f"SELECT count(*) FROM {table}")
        keys = _sample(self.conn, f"SELECT {_columns('o', old.key)} FROM {table} AS o") if old.key else []
        report.skip(DROPPED_TABLE, report.written["deleted"], keys)

    def _unmatched(self, report: TableReport, new: Shape, old: Shape | None, reason: str) -> None:
        """A table whose rows cannot be matched: not compared row by row; listed with the rows it has more than the
        snapshot (all of them, with sample keys, when the snapshot lacks it)."""
        if new.shadow:
            self.reports.remove(report)  # its virtual table is listed
            return
        try:
            count = _count(self.conn, f"SELECT count(*) FROM new.{_q(new.name)}")
            if old is not None:
                count -= _count(self.conn, f"SELECT count(*) FROM old.{_q(old.name)}")
            table = f"new.{_q(new.name)}"
            keys = _sample(self.conn, f"SELECT {_columns('n', new.key)} FROM {table} AS n") if new.key else []
        except sqlite3.OperationalError as exc:  # e.g. a virtual table whose module this SQLite lacks
            self.warnings.append(f"Table {new.name} of the bad-window brain cannot be read ({exc}); not replayed.")
            return
        report.written["inserted"] = max(count, 0)
        report.skip(reason, max(count, 0), keys if old is None else [])

    def _table(self, new: Shape, old: Shape | None, main: Shape | None) -> None:
        report = TableReport(new.name)
        self.reports.append(report)
        if new.virtual:
            return self._unmatched(report, new, old, VIRTUAL)
        if new.key_kind == "none":
            return self._unmatched(report, new, old, NO_KEY)
        if old is not None and not new.same_key(old):
            return self._unmatched(report, new, old, KEY_CHANGED)
        sql = _Sql(new, old)
        report.written["deleted"] = _count(self.conn, sql.deleted("count(*)"))
        report.skip(DELETED, report.written["deleted"], _sample(self.conn, sql.deleted(_columns("o", new.key))))
        report.skip(NULL_KEY, _count(self.conn, sql.null_keys()))
        why = self._why_not(new, main)
        if why is None:
            return self._replay_rows(report, sql, new, old, main)
        key = _columns("n", new.key)
        report.written.update(inserted=_count(self.conn, sql.inserted("count(*)")),
                              updated=_count(self.conn, sql.updated("count(*)")))
        samples = (_sample(self.conn, sql.inserted(key)) + _sample(self.conn, sql.updated(key)))[:SAMPLE]
        report.skip(why, report.written["inserted"] + report.written["updated"], samples)
        return None

    def _why_not(self, new: Shape, main: Shape | None) -> str | None:
        """Why the rows of table `new` are not replayed at all (None: they are, row by row)."""
        if self.migrations_table and new.name.lower() == self.migrations_table:
            return MIGRATIONS_RECORD
        include, exclude = self.tables.get("include") or ["*"], self.tables.get("exclude") or []
        if not any(fnmatch.fnmatchcase(new.name, p) for p in include) or any(
                fnmatch.fnmatchcase(new.name, p) for p in exclude):
            return EXCLUDED
        if main is None or main.virtual:
            return NEW_TABLE
        if not new.same_key(main):
            return KEY_CHANGED
        return None

    # ---- rows

    def _replay_rows(self, report: TableReport, sql: _Sql, new: Shape, old: Shape | None, main: Shape) -> None:
        """Compare row by row with the restored brain; write (mode replay) what it can hold."""
        new_values, old_values = new.shared(main), old.shared(main) if old else []
        main_columns = {name.lower() for name in main.values}
        report.dropped_columns = [name for name in new.values if name.lower() not in main_columns]
        lookup = (f"SELECT {_columns('m', main.values) or '1'} FROM main.{_q(main.name)} AS m WHERE "
                  + " AND ".join(f"m.{_q(k)} IS ?" for k in main.key))
        width = len(new.key)
        # The cursors read `new` and `old` only, while the rows go into `main`: they stream, whatever the size.
        for row in self.conn.execute(sql.inserted(_columns("n", new.key + new_values))):
            report.written["inserted"] += 1
            self._inserted(report, main, lookup, tuple(row[:width]), dict(zip(new_values, row[width:], strict=True)))
        if report.written["inserted"]:
            new_columns = {name.lower() for name in new.values}
            report.defaulted_columns = [name for name in main.values if name.lower() not in new_columns]
        parts = [_columns("n", new.key + new_values), _columns("o", old_values)]
        updated = sql.updated(", ".join(part for part in parts if part))
        for row in self.conn.execute(updated) if updated else ():
            report.written["updated"] += 1
            values = dict(zip(new_values, row[width:width + len(new_values)], strict=True))
            before = dict(zip(old_values, row[width + len(new_values):], strict=True))
            self._updated(report, main, lookup, tuple(row[:width]), values, before)

    def _main_row(self, main: Shape, lookup: str, key: tuple) -> dict | None:
        row = self.conn.execute(lookup, key).fetchone()
        return None if row is None else {name.lower(): value for name, value in zip(main.values, row, strict=False)}

    @staticmethod
    def _same(current: dict, values: dict) -> bool:
        return all(current.get(name.lower()) == value for name, value in values.items())

    def _inserted(self, report: TableReport, main: Shape, lookup: str, key: tuple, values: dict) -> None:
        current = self._main_row(main, lookup, key)
        if current is not None:
            if self._same(current, values):
                report.already_there += 1
            else:
                report.skip(COLLISION, 1, [key])
            return
        report.replayable["inserted"] += 1
        if not self.write:
            return
        names = [*main.key, *values]
        statement = (f"INSERT OR ABORT INTO main.{_q(main.name)} ({', '.join(_q(n) for n in names)}) "
                     f"VALUES ({', '.join(['?'] * len(names))})")
        self._write(report, "inserted", statement, (*key, *values.values()), key)

    def _updated(self, report: TableReport, main: Shape, lookup: str, key: tuple, values: dict,
                 before: dict) -> None:
        current = self._main_row(main, lookup, key)
        if current is None:
            report.skip(GONE, 1, [key])
        elif self._same(current, values):
            report.already_there += 1
        elif not self._same(current, before):
            report.skip(CHANGED, 1, [key])
        else:
            report.replayable["updated"] += 1
            if not self.write:
                return
            changes = {name: value for name, value in values.items() if current.get(name.lower()) != value}
            statement = (f"UPDATE OR ABORT main.{_q(main.name)} SET "
                         + ", ".join(f"{_q(name)} = ?" for name in changes) + " WHERE "
                         + " AND ".join(f"{_q(k)} IS ?" for k in main.key))
            self._write(report, "updated", statement, (*changes.values(), *key), key)

    def _write(self, report: TableReport, kind: str, statement: str, params: tuple, key: tuple) -> bool:
        """One row, under its own savepoint; a constraint it violates skips it (listed), the rest goes on."""
        self.conn.execute("SAVEPOINT replay_row")
        try:
            self.conn.execute(statement, params)
        except sqlite3.IntegrityError as exc:
            if not self.conn.in_transaction:  # a RAISE(ROLLBACK) of the old schema's triggers ended it all
                raise BrainError(f"A trigger of the old schema rolled the whole replay back on a row of {report.name} "
                                 f"({exc}); the restored brain was not changed. Replay with tables.exclude: "
                                 f"[{report.name}].") from exc
            self.conn.execute("ROLLBACK TO replay_row")
            self.conn.execute("RELEASE replay_row")
            if "FOREIGN KEY" in str(exc):
                self._pending.append((report, kind, statement, params, key))
            else:
                report.skip(CONSTRAINT.format(exc), 1, [key])
            return False
        self.conn.execute("RELEASE replay_row")
        report.replayed[kind] += 1
        return True

    def _retry_pending(self) -> None:
        """Rows refused for a foreign key whose parent came later: again, while that lets more rows in."""
        while self._pending:
            pending, self._pending = self._pending, []
            done = [self._write(*item) for item in pending]  # every one is tried (no short cut)
            if not any(done):
                for report, _kind, _statement, _params, key in self._pending:
                    report.skip(CONSTRAINT.format("FOREIGN KEY constraint failed"), 1, [key])
                self._pending = []
