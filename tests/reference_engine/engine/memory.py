# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``/memory/export`` and ``/memory/import``: the memory tables as a JSON bundle.

BLOB values (embeddings) travel as ``{"$blob": "<base64>"}``. Import is lenient about schema
drift between versions (columns or tables the brain does not have are skipped and reported) and
strict about the bundle's shape (anything malformed is refused before a row is written).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from . import brain
from .logs import utc_now

BUNDLE_FORMAT = "september.engine.memory/v1"

# The memory tables, in import order. Tables a brain does not have (memory_tags before 0006) are
# left out of an export and skipped on import.
MEMORY_TABLES = (
    "conversations",
    "episodes",
    "episodes_vec",
    "memory_tags",
    "knowledge_store",
    "knowledge_store_vec",
    "social_graph_nodes",
    "social_graph_edges",
    "working_memory_log",
)


class BadBundle(Exception):
    """The import body is not a well-formed memory bundle (400 BAD_BUNDLE)."""


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$blob": base64.b64encode(value).decode("ascii")}
    return value


def _decode(value: Any, where: str) -> Any:
    if value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool)):
        return value
    if isinstance(value, dict) and set(value) == {"$blob"} and isinstance(value["$blob"], str):
        try:
            return base64.b64decode(value["$blob"], validate=True)
        except binascii.Error as exc:
            raise BadBundle(f"{where}: invalid base64 in $blob") from exc
    raise BadBundle(f"{where}: values must be strings, numbers, null or {{\"$blob\": base64}}")


def export_memory(db_path: str) -> dict[str, Any]:
    """Every row of every memory table the brain has, read in one consistent snapshot."""
    tables: dict[str, list[dict[str, Any]]] = {}
    with brain.opened(db_path) as conn:
        conn.execute("BEGIN")  # a read transaction: one snapshot for all tables
        try:
            for table in MEMORY_TABLES:
                columns = brain.table_columns(conn, table)
                if not columns:
                    continue
                cursor = conn.execute(f'SELECT * FROM "{table}" ORDER BY rowid')
                names = [d[0] for d in cursor.description]
                tables[table] = [{n: _encode(v) for n, v in zip(names, row, strict=True)} for row in cursor]
        finally:
            conn.execute("COMMIT")
    return {"format": BUNDLE_FORMAT, "exported_at": utc_now(), "tables": tables}


def _validate(bundle: Any) -> dict[str, list[dict[str, Any]]]:
    """Check the bundle's shape and decode its values; nothing is written yet."""
    if not isinstance(bundle, dict):
        raise BadBundle("the bundle must be a JSON object")
    if bundle.get("format") != BUNDLE_FORMAT:
        raise BadBundle(f"format must be {BUNDLE_FORMAT!r}")
    tables = bundle.get("tables")
    if not isinstance(tables, dict):
        raise BadBundle("tables must be an object of table name to list of rows")
    decoded: dict[str, list[dict[str, Any]]] = {}
    for table, rows in tables.items():
        if not isinstance(rows, list):
            raise BadBundle(f"tables.{table} must be a list of rows")
        decoded_rows = []
        for index, row in enumerate(rows):
            if not isinstance(row, dict) or not row:
                raise BadBundle(f"tables.{table}[{index}] must be a non-empty object")
            decoded_rows.append({str(k): _decode(v, f"tables.{table}[{index}].{k}") for k, v in row.items()})
        decoded[str(table)] = decoded_rows
    return decoded


def import_memory(db_path: str, bundle: Any) -> dict[str, Any]:
    """Insert the bundle's rows (``INSERT OR IGNORE``: existing primary keys are kept) in one
    transaction. Returns ``{"imported": {table: rows inserted}, "skipped_tables": [...],
    "skipped_columns": {table: [...]}}``."""
    tables = _validate(bundle)
    imported: dict[str, int] = {}
    skipped_tables = sorted(t for t in tables if t not in MEMORY_TABLES)
    skipped_columns: dict[str, list[str]] = {}
    with brain.opened(db_path) as conn, brain.transaction(conn):
        for table in MEMORY_TABLES:
            if table not in tables:
                continue
            columns = set(brain.table_columns(conn, table))
            if not columns:
                skipped_tables.append(table)
                continue
            count = 0
            dropped: set[str] = set()
            for row in tables[table]:
                kept = {k: v for k, v in row.items() if k in columns}
                dropped.update(k for k in row if k not in columns)
                if not kept:
                    continue
                names = list(kept)
                sql = (f'INSERT OR IGNORE INTO "{table}" (' + ", ".join(f'"{n}"' for n in names)
                       + ") VALUES (" + ", ".join(["?"] * len(names)) + ")")
                count += conn.execute(sql, [kept[n] for n in names]).rowcount
            imported[table] = count
            if dropped:
                skipped_columns[table] = sorted(dropped)
    return {"imported": imported, "skipped_tables": sorted(skipped_tables), "skipped_columns": skipped_columns}


__all__ = ["BUNDLE_FORMAT", "MEMORY_TABLES", "BadBundle", "export_memory", "import_memory"]
