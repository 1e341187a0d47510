# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""An expiring per-Engine lock on the Docker host, so that two runs (an AWX schedule, a manual run) never collide.

``<lock_dir>/<engine>.lock`` holds JSON ``{engine, owner, run_id, acquired_at, expires_at}`` (0600).
Every decision (free? ours? expired?) and the write that follows it happen while holding ``flock`` on
the lock directory, so two processes can never both decide the lock is theirs; a new lock is also
created with ``link()``, which fails if the file exists (atomic like ``O_CREAT|O_EXCL``, but the file is
never seen empty), and a refresh or takeover renames a complete file over the old one. Expiry uses the
wall clock (UTC), since it must mean the same to every process and to the operator reading the file.
"""

from __future__ import annotations

import calendar
import errno
import fcntl
import json
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass

from ansible_collections.september.engine.plugins.module_utils._errors import LockedError, OptionsError

ENGINE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,199}$")
#: A lock file that cannot be read is treated as held for this long after its last change (a writer is
#: never that slow), then as expired.
UNREADABLE_GRACE = 30


def _wall_clock() -> float:
    return time.time()


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def parse_iso(text: str) -> float:
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))


@dataclass
class Holder:
    """Who holds a lock, from its file."""

    owner: str
    run_id: str
    acquired_at: str
    expires_at: str
    readable: bool = True

    def expired(self, now: float) -> bool:
        return parse_iso(self.expires_at) <= now

    def describe(self) -> str:
        return f"{self.owner} (run {self.run_id}) until {self.expires_at}"


class EngineLock:
    """The lock of one Engine in one directory; ``clock`` is the wall clock (patched in tests)."""

    def __init__(self, lock_dir: str, engine: str, clock=None):
        if not ENGINE_RE.match(engine or ""):
            raise OptionsError(
                f"engine '{engine}' cannot name a lock file: use letters, digits and . _ @ : + - (at most 200), "
                "starting with a letter or digit."
            )
        self.lock_dir = lock_dir
        self.engine = engine
        self.path = os.path.join(lock_dir, f"{engine}.lock")
        self.clock = clock or _wall_clock

    # -------------------------------------------------------------- files
    def ensure_dir(self) -> None:
        if not os.path.isdir(self.lock_dir):
            os.makedirs(self.lock_dir, mode=0o700, exist_ok=True)
            os.chmod(self.lock_dir, 0o700)

    def read(self) -> Holder | None:
        """The current holder, None when free; an unreadable file is a holder that expires after a grace time."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
            holder = Holder(str(data["owner"]), str(data["run_id"]), str(data["acquired_at"]), str(data["expires_at"]))
            parse_iso(holder.acquired_at)
            parse_iso(holder.expires_at)
            return holder
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            try:
                mtime = os.stat(self.path).st_mtime
            except FileNotFoundError:
                return None
            return Holder("unknown (unreadable lock file)", "unknown", iso(mtime), iso(mtime + UNREADABLE_GRACE), False)

    def _content(self, holder: Holder) -> str:
        return json.dumps(
            {"engine": self.engine, "owner": holder.owner, "run_id": holder.run_id,
             "acquired_at": holder.acquired_at, "expires_at": holder.expires_at},
            indent=2,
        ) + "\n"

    def _temp(self, holder: Holder) -> str:
        fd, tmp = tempfile.mkstemp(prefix=f".{self.engine}.", suffix=".tmp", dir=self.lock_dir)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self._content(holder))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        return tmp

    def _create(self, holder: Holder) -> bool:
        """Create the lock file only if none exists (link() fails with EEXIST); False if one appeared."""
        tmp = self._temp(holder)
        try:
            os.link(tmp, self.path)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                return False
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            # file systems without hard links: O_CREAT|O_EXCL, then write (the flock keeps readers out)
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(self._content(holder))
        finally:
            os.unlink(tmp)
        return True

    def _replace(self, holder: Holder) -> None:
        os.replace(self._temp(holder), self.path)

    def guard(self):
        """An exclusive flock on the lock directory for one decide-and-write step (released on close)."""
        fd = os.open(self.lock_dir, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    # -------------------------------------------------------------- decisions
    def plan_acquire(self, owner: str, run_id: str, ttl: int) -> dict:
        """What acquiring would do now: action (acquire, refresh, take_over) and holders before/after.

        :raises LockedError: another run holds a lock that has not expired.
        """
        now = self.clock()
        before = self.read()
        if before is not None and before.run_id == run_id and before.readable:
            after = Holder(owner, run_id, before.acquired_at, iso(math.ceil(now + ttl)))
            return {"action": "refresh", "before": before, "after": after}
        after = Holder(owner, run_id, iso(now), iso(math.ceil(now + ttl)))
        if before is None:
            return {"action": "acquire", "before": None, "after": after}
        if not before.expired(now):
            raise LockedError(
                f"Engine {self.engine} is locked by {before.owner} (run {before.run_id}) since {before.acquired_at} "
                f"until {before.expires_at}: wait, or remove {self.path} if that run is dead.",
                holder={"owner": before.owner, "run_id": before.run_id, "acquired_at": before.acquired_at,
                        "expires_at": before.expires_at},
            )
        return {"action": "take_over", "before": before, "after": after}

    def acquire(self, owner: str, run_id: str, ttl: int, check_mode: bool = False) -> dict:
        """Plan, and unless ``check_mode`` carry out, an acquisition; re-checked under the directory flock."""
        if check_mode:
            return self.plan_acquire(owner, run_id, ttl)
        self.ensure_dir()
        fd = self.guard()
        try:
            plan = self.plan_acquire(owner, run_id, ttl)
            if plan["action"] == "acquire":
                if not self._create(plan["after"]):  # a writer that does not take the flock got there first
                    return self.plan_acquire(owner, run_id, ttl)
            else:
                self._replace(plan["after"])
            return plan
        finally:
            os.close(fd)

    def release(self, run_id: str, force: bool = False, check_mode: bool = False) -> dict:
        """Remove the lock if this run holds it (or ``force``): action released, not_held or refused."""
        if check_mode or not os.path.isdir(self.lock_dir):
            return self._plan_release(run_id, force)
        fd = self.guard()
        try:
            plan = self._plan_release(run_id, force)
            if plan["action"] == "release":
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    plan["action"] = "not_held"
            return plan
        finally:
            os.close(fd)

    def _plan_release(self, run_id: str, force: bool) -> dict:
        before = self.read()
        if before is None:
            return {"action": "not_held", "before": None, "after": None}
        if before.run_id == run_id or force:
            return {"action": "release", "before": before, "after": None}
        return {"action": "refused", "before": before, "after": before}
