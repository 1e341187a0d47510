# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Rows of a brain: how many each table holds, and what a restore takes away (reads only)."""

from __future__ import annotations

import sqlite3


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_row_counts(conn: sqlite3.Connection) -> dict:
    """{table: rows} of the user tables of a database (SQLite's own tables left out)."""
    names = [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
    )]
    counts = {}
    for name in names:
        try:
            counts[name] = conn.execute(f"SELECT count(*) FROM {_quote(name)}").fetchone()[0]
        except sqlite3.DatabaseError:
            continue  # e.g. a virtual table whose module this Python lacks
    return counts


def data_at_risk(snapshot_counts: dict, bad_window_counts: dict) -> dict:
    """{table: rows} written between a snapshot and its restore: the growth of each table (only > 0),
    and every row of the tables the snapshot does not have. Updates and deletes are not seen."""
    risk = {}
    for table, count in sorted(bad_window_counts.items()):
        grown = count - snapshot_counts.get(table, 0)
        if grown > 0:
            risk[table] = grown
    return risk
