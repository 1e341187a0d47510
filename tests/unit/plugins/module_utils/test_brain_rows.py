# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Rows per table, and what a restore takes away (the rows written between the snapshot and the restore)."""

from __future__ import annotations

import sqlite3

import pytest

from ansible_collections.september.engine.plugins.module_utils import _brain_rows as m


@pytest.mark.parametrize("snapshot, bad_window, expected", [
    ({}, {}, {}),
    ({"tasks": 10}, {"tasks": 10}, {}),
    ({"tasks": 10, "episodes": 5}, {"tasks": 14, "episodes": 5}, {"tasks": 4}),
    ({"tasks": 10}, {"tasks": 12, "memory_tags": 3, "turn_metrics": 0}, {"memory_tags": 3, "tasks": 2}),
    ({"tasks": 10, "channel_state_snapshots": 4}, {"tasks": 9}, {}),
])
def test_data_at_risk(snapshot, bad_window, expected):
    assert m.data_at_risk(snapshot, bad_window) == expected


def test_table_row_counts_leaves_sqlite_tables_out():
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY AUTOINCREMENT, x)")
    conn.execute("CREATE TABLE empty (x)")
    conn.executemany("INSERT INTO tasks (x) VALUES (?)", [(1,), (2,)])
    assert m.table_row_counts(conn) == {"empty": 0, "tasks": 2}
