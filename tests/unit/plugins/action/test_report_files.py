# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""report_files: private folders and files on the controller, written atomically, left alone when unchanged."""

from __future__ import annotations

import os
import stat

from ansible_collections.september.engine.plugins.action.report_files import ensure_private_dir, write_private


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_folder_and_file_are_private(tmp_path) -> None:
    folder = tmp_path / "reports" / "run1"
    assert ensure_private_dir(str(folder)) is True
    assert mode(folder) == 0o700
    assert write_private(str(folder / "upgrade.json"), "{}\n") is True
    assert mode(folder / "upgrade.json") == 0o600 and (folder / "upgrade.json").read_text() == "{}\n"
    assert [p.name for p in folder.iterdir()] == ["upgrade.json"]  # no temporary file left


def test_unchanged_text_is_not_written_again_and_loose_modes_are_tightened(tmp_path) -> None:
    path = tmp_path / "upgrade.md"
    write_private(str(path), "# run\n")
    before = os.stat(path).st_mtime_ns
    assert write_private(str(path), "# run\n") is False and os.stat(path).st_mtime_ns == before
    os.chmod(path, 0o644)
    assert write_private(str(path), "# run\n") is True and mode(path) == 0o600
    os.chmod(tmp_path, 0o755)
    assert ensure_private_dir(str(tmp_path)) is True and mode(tmp_path) == 0o700
    assert ensure_private_dir(str(tmp_path)) is False
