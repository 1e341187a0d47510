# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A process and everything under it, from ``/proc``: :func:`descendants`, and :func:`kill_tree` (a cancelled job).

Pure standard library, Linux only (it reads ``/proc``).
"""

from __future__ import annotations

import contextlib
import os
import signal

__all__ = ["descendants", "kill_tree"]


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc (a process that ends meanwhile is left out)."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pid: int) -> set[int]:
    """Every process under ``pid`` (children, their children, ...), not ``pid`` itself."""
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def kill_tree(pid: int) -> set[int]:
    """SIGKILL ``pid`` and every process under it at once, as when AWX cancels a job by removing its container (or
    the controller dies); returns the pids signalled.

    Killing the playbook's process group is not enough: ansible-core's workers call setsid(), so the modules they
    run are in sessions of their own and would go on to the end of their task. The tree is frozen first (SIGSTOP,
    until no new process appears) so that nothing forks or moves on between the look-up and the kill.
    """
    frozen: set[int] = set()
    while True:
        pids = ({pid} | descendants(pid)) - frozen
        if not pids:
            break
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGSTOP)
        frozen |= pids
    for p in frozen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    return frozen
