# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Brains on real SQLite files for the snapshot and restore tests; local HTTP servers for the Engine API tests."""

from __future__ import annotations

import sqlite3
import threading
from http.server import ThreadingHTTPServer

import pytest


def _make_brain(path, rows: int = 50, start: int | None = None, wal: bool = True,
                migrations: tuple = ("0001", "0002")) -> str:
    """A brain at ``path`` (made, or added to): ``migrations`` applied, ``rows`` more tasks of 200 bytes.

    The tasks are ``t<start>`` on; by default they follow the tasks already there.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS engine_schema_migrations(version TEXT PRIMARY KEY)")
    conn.executemany("INSERT OR IGNORE INTO engine_schema_migrations VALUES (?)", [(m,) for m in migrations])
    conn.execute("CREATE TABLE IF NOT EXISTS tasks(task_id TEXT PRIMARY KEY, body TEXT)")
    if start is None:
        start = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
    conn.executemany("INSERT INTO tasks VALUES (?, ?)", [(f"t{start + i}", "x" * 200) for i in range(rows)])
    conn.close()
    return str(path)


@pytest.fixture
def make_brain():
    """``make_brain(path, rows=50, start=None, wal=True, migrations=("0001", "0002"))``: a brain of tasks."""
    return _make_brain


@pytest.fixture
def brain(tmp_path):
    """A brain of 50 tasks at tmp_path/data/brain.sqlite (in WAL mode)."""
    folder = tmp_path / "data"
    folder.mkdir()
    return _make_brain(folder / "brain.sqlite")


@pytest.fixture(scope="module")
def serve_http():
    """``serve_http(handler)``: the URL of a local HTTP server answering with ``handler`` (a request handler class),
    up until the test module ends."""
    servers = []

    def serve(handler) -> str:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield serve
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()
