# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Write a run's report files on the controller, in the worker process (see the module's documentation).

A report is written after every batch of a rollout (and after every Engine of a serial rollback): as three
module calls (file, copy, template) it cost about a second and a half of controller CPU each time.
"""

from __future__ import annotations

import os
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

DIR_MODE = 0o700
FILE_MODE = 0o600


def write_private(path: str, text: str) -> bool:
    """Write `text` to `path` atomically, mode 0600; False when it already holds exactly that (nothing written)."""
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == text and (os.stat(path).st_mode & 0o777) == FILE_MODE:
                return False
    except FileNotFoundError:
        pass
    folder = os.path.dirname(path)
    fd, temp = tempfile.mkstemp(prefix=".report.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, FILE_MODE)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    return True


def ensure_private_dir(path: str) -> bool:
    """Create `path` (and its parents) with mode 0700, or tighten it to 0700; whether anything changed."""
    if os.path.isdir(path):
        if (os.stat(path).st_mode & 0o777) != DIR_MODE:
            os.chmod(path, DIR_MODE)
            return True
        return False
    os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    os.chmod(path, DIR_MODE)  # makedirs' mode is filtered by the umask
    return True


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("dest", "files"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        dest, files = args.get("dest"), args.get("files")
        if not isinstance(dest, str) or not dest.strip():
            raise AnsibleActionFail("dest must be the report's folder on the controller (a non-empty path).")
        if not isinstance(files, dict) or not files:
            raise AnsibleActionFail("files must map file names to their text, for example {upgrade.md: '...'}.")
        for name, text in files.items():
            if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
                raise AnsibleActionFail(f"files: {name!r} is not a plain file name (no folder, not hidden).")
            if not isinstance(text, str):
                raise AnsibleActionFail(f"files: the text of {name} must be a string (render it first).")
        dest = os.path.abspath(os.path.expanduser(dest))
        written = []
        if self._task.check_mode:
            result.update(changed=False, dest=dest, written=[], skipped_reason="check mode")
            return result
        try:
            changed = ensure_private_dir(dest)
            for name, text in files.items():
                if write_private(os.path.join(dest, name), text):
                    written.append(name)
        except OSError as exc:
            raise AnsibleActionFail(f"Cannot write the report in {dest}: {exc}. Set engine_report_dir to a folder "
                                    "the controller can write.") from exc
        result.update(changed=changed or bool(written), dest=dest, written=written)
        return result
