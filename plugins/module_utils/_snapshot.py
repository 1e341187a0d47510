# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Where the snapshot code used to live; kept only so that older imports keep working.

One concern per file now: reading a brain in _brain.py, the folder of snapshots in _snapshot_store.py, taking a
snapshot in _snapshot_take.py, restoring one in _restore.py, times in _timeutil.py. Import from there.
"""

from __future__ import annotations

from ansible_collections.september.engine.plugins.module_utils._brain import reading

__all__ = ["reading"]
