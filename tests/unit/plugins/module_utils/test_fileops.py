# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""module_utils/_fileops.py and _brain_rows.py on real files."""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
import stat
import threading

import pytest

from ansible_collections.september.engine.plugins.module_utils import _fileops
from ansible_collections.september.engine.plugins.module_utils._brain_rows import data_at_risk, table_row_counts
from ansible_collections.september.engine.plugins.module_utils._fileops import (
    CLONE_UNSUPPORTED,
    WriteBehind,
    clone_file,
    copy_with_sha256,
    folder_lock,
    same_filesystem,
    sha256_file,
)


def test_copy_with_sha256_hashes_what_it_writes(tmp_path):
    source = tmp_path / "a"
    source.write_bytes(os.urandom(5 * 1024 * 1024 + 17))
    digest, size = copy_with_sha256(str(source), str(tmp_path / "b"), chunk=1024 * 1024)
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest() == sha256_file(str(tmp_path / "b"))
    assert size == source.stat().st_size and stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        copy_with_sha256(str(source), str(tmp_path / "b"))


def test_clone_file_where_the_file_system_cannot(tmp_path, monkeypatch):
    source = tmp_path / "a"
    source.write_bytes(b"x" * 100)

    def unsupported(fd, request, arg):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(_fileops.fcntl, "ioctl", unsupported)
    with pytest.raises(OSError) as info:
        clone_file(str(source), str(tmp_path / "b"))
    assert info.value.errno in CLONE_UNSUPPORTED and not (tmp_path / "b").exists()


def test_write_behind_and_same_filesystem(tmp_path):
    target = tmp_path / "big"
    with WriteBehind(str(target), interval=0.001):
        with open(target, "wb") as handle:
            handle.write(b"y" * 1024 * 1024)
    assert target.stat().st_size == 1024 * 1024
    assert same_filesystem(str(tmp_path / "not" / "yet"), str(target))


def test_folder_lock_serializes(tmp_path):
    order = []
    with folder_lock(str(tmp_path)):
        thread = threading.Thread(target=lambda: order.append("second") if folder_lock(str(tmp_path)).__enter__()
                                  is None else None)
        thread.start()
        thread.join(0.2)
        order.append("first")
    thread.join()
    assert order == ["first", "second"]


def test_table_row_counts_and_data_at_risk(tmp_path):
    conn = sqlite3.connect(tmp_path / "db.sqlite")
    conn.execute("CREATE TABLE tasks (x)")
    conn.execute('CREATE TABLE "odd ""name""" (x)')
    conn.executemany("INSERT INTO tasks VALUES (?)", [(1,), (2,)])
    assert table_row_counts(conn) == {"odd \"name\"": 0, "tasks": 2}
    conn.close()
    assert data_at_risk({"tasks": 2, "gone": 5}, {"tasks": 5, "new": 3, "gone": 1}) == {"new": 3, "tasks": 3}
