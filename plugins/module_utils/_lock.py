# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""An expiring per-Engine lock on the Docker host, so that two runs (an AWX schedule, a manual run) never collide.

The lock is keyed by the Engine's identity (``_identity``: ``volume:<name>``, ``bind:<path>``,
``container:<name>``, what engine_info returns as ``engine.identity.key``), so two inventories that name
one Engine differently take one lock: ``<lock_dir>/<slug of the key>.lock``. Without a key (the older
interface), the Engine's display name is the key and names the file: ``<lock_dir>/<engine>.lock``.

The file holds JSON ``{engine, key, owner, run_id, acquired_at, expires_at}`` (0600). Every decision
(free? ours? expired?) and the write that follows it happen while holding ``flock`` on the lock
directory, so two processes can never both decide the lock is theirs; a new lock is also created with
``link()``, which fails if the file exists (atomic like ``O_CREAT|O_EXCL``, but the file is never seen
empty), and a refresh or takeover renames a complete file over the old one. Expiry uses the wall clock
(UTC), since it must mean the same to every process and to the operator reading the file.

A long module keeps the lock of its run alive with :class:`LockKeeper` (a background thread refreshes
it every ttl/3 seconds); the modules that change an Engine take the shared ``lock`` option
(:func:`lock_argument_spec`, doc fragment ``september.engine._lock``) and run under :func:`lock_keeper`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass

from ansible_collections.september.engine.plugins.module_utils._errors import LockedError, OptionsError
from ansible_collections.september.engine.plugins.module_utils._identity import check_key, slug_of
from ansible_collections.september.engine.plugins.module_utils._paths import require_absolute
from ansible_collections.september.engine.plugins.module_utils._timeutil import iso, parse_time

ENGINE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,199}$")
#: A lock file that cannot be read is treated as held for this long after its last change (a writer is
#: never that slow), then as expired.
UNREADABLE_GRACE = 30
#: A writer's temporary file (written, then linked or renamed onto the lock) older than this was left by a process
#: that died between the two (a job killed, a Docker host frozen mid-write): it is removed under the flock. Writers
#: hold the flock from the write to the rename (a dead one's flock is gone with it), so this margin is only for a
#: writer that does not take it.
STALE_TEMP_SECONDS = 10
DEFAULT_LOCK_DIR = "/var/lib/september-engine/locks"
DEFAULT_TTL = 3600


def _wall_clock() -> float:
    return time.time()


def parse_iso(text: str) -> float:
    """Epoch seconds of a lock file's time (ISO 8601, UTC); ValueError when it is not one."""
    return parse_time(text)


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
    """The lock of one Engine in one directory; ``clock`` is the wall clock (patched in tests).

    :param engine: the Engine's display name (messages, the file's ``engine``); without ``key`` it is the key
        too and names the file (the older interface).
    :param key: the Engine's identity key (``volume:<name>``, ``bind:<path>``, ``container:<name>``); the file is
        named after its slug, so that every name of one Engine takes one lock.
    """

    def __init__(
        self, lock_dir: str, engine: str | None = None, clock=None, key: str | None = None, option: str = "lock_dir"
    ):
        require_absolute({option: lock_dir})  # every run must find the lock again (`option`: the module's name)
        if key:
            try:
                self.key = check_key(key)
            except ValueError as exc:
                raise OptionsError(f"key: {exc}.") from exc
            file_name = slug_of(key)
        elif not ENGINE_RE.match(engine or ""):
            raise OptionsError(
                f"engine '{engine}' cannot name a lock file: use letters, digits and . _ @ : + - (at most 200), "
                "starting with a letter or digit (or give key, the Engine's identity key)."
            )
        else:
            self.key = file_name = engine
        self.lock_dir = lock_dir
        self.engine = engine or self.key
        self.path = os.path.join(lock_dir, f"{file_name}.lock")
        self.clock = clock or _wall_clock

    def _name(self) -> str:
        """The Engine in messages: its display name, and its key when that says more."""
        return self.engine if self.engine == self.key else f"{self.engine} ({self.key})"

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
        return (
            json.dumps(
                {
                    "engine": self.engine,
                    "key": self.key,
                    "owner": holder.owner,
                    "run_id": holder.run_id,
                    "acquired_at": holder.acquired_at,
                    "expires_at": holder.expires_at,
                },
                indent=2,
            )
            + "\n"
        )

    def _temp(self, holder: Holder) -> str:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(self.path)}.", suffix=".tmp", dir=self.lock_dir)
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

    def _sweep_temps(self) -> None:
        """Remove this lock's temporary files that a dead writer left (older than STALE_TEMP_SECONDS): a live writer
        links or renames its file within the same flock, in milliseconds."""
        prefix, cutoff = f".{os.path.basename(self.path)}.", time.time() - STALE_TEMP_SECONDS
        with contextlib.suppress(OSError), os.scandir(self.lock_dir) as entries:
            for entry in entries:
                middle = entry.name[len(prefix):-len(".tmp")]
                if entry.name.startswith(prefix) and entry.name.endswith(".tmp") and middle and "." not in middle:
                    with contextlib.suppress(OSError):
                        if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                            os.unlink(entry.path)

    def guard(self):
        """An exclusive flock on the lock directory for one decide-and-write step (released on close)."""
        fd = os.open(self.lock_dir, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    @contextlib.contextmanager
    def _guarded(self):
        fd = self.guard()
        try:
            yield
        finally:
            os.close(fd)

    # -------------------------------------------------------------- decisions
    def _locked(self, before: Holder) -> LockedError:
        return LockedError(
            f"Engine {self._name()} is locked by {before.owner} (run {before.run_id}) since {before.acquired_at} "
            f"until {before.expires_at}: wait, or remove {self.path} if that run is dead.",
            holder={
                "owner": before.owner,
                "run_id": before.run_id,
                "acquired_at": before.acquired_at,
                "expires_at": before.expires_at,
            },
        )

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
            raise self._locked(before)
        return {"action": "take_over", "before": before, "after": after}

    def acquire(self, owner: str, run_id: str, ttl: int, check_mode: bool = False) -> dict:
        """Plan, and unless ``check_mode`` carry out, an acquisition; re-checked under the directory flock."""
        if check_mode:
            return self.plan_acquire(owner, run_id, ttl)
        self.ensure_dir()
        with self._guarded():
            self._sweep_temps()
            plan = self.plan_acquire(owner, run_id, ttl)
            if plan["action"] == "acquire":
                if not self._create(plan["after"]):  # a writer that does not take the flock got there first
                    return self.plan_acquire(owner, run_id, ttl)
            else:
                self._replace(plan["after"])
            return plan

    def plan_refresh(self, owner: str, run_id: str, ttl: int) -> dict:
        """Extending the expiry of the lock ``run_id`` holds: action refresh, holders before/after.

        :raises LockedError: the lock is free (this run lost it, or never took it) or another run holds it,
            expired or not: a refresh never takes a lock.
        """
        now = self.clock()
        before = self.read()
        if before is None:
            raise LockedError(
                f"The lock of Engine {self._name()} is not held by run {run_id}: it is free ({self.path} does not "
                "exist). Another run may have released it; take it again with state=present before going on."
            )
        if before.run_id != run_id or not before.readable:
            if not before.expired(now):
                raise self._locked(before)
            raise LockedError(
                f"The lock of Engine {self._name()} is held by {before.owner} (run {before.run_id}), not by run "
                f"{run_id}; it expired at {before.expires_at}. A refresh never takes a lock: take it over with "
                "state=present.",
                holder={
                    "owner": before.owner,
                    "run_id": before.run_id,
                    "acquired_at": before.acquired_at,
                    "expires_at": before.expires_at,
                },
            )
        after = Holder(owner or before.owner, run_id, before.acquired_at, iso(math.ceil(now + ttl)))
        return {"action": "refresh", "before": before, "after": after, "was_expired": before.expired(now)}

    def refresh(self, owner: str, run_id: str, ttl: int, check_mode: bool = False) -> dict:
        """Plan, and unless ``check_mode`` write, a refresh (see :meth:`plan_refresh`)."""
        if check_mode or not os.path.isdir(self.lock_dir):
            return self.plan_refresh(owner, run_id, ttl)
        with self._guarded():
            plan = self.plan_refresh(owner, run_id, ttl)
            self._replace(plan["after"])
            return plan

    def release(self, run_id: str, force: bool = False, check_mode: bool = False) -> dict:
        """Remove the lock if this run holds it (or ``force``): action released, not_held or refused."""
        if check_mode or not os.path.isdir(self.lock_dir):
            return self._plan_release(run_id, force)
        with self._guarded():
            self._sweep_temps()
            plan = self._plan_release(run_id, force)
            if plan["action"] == "release":
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    plan["action"] = "not_held"
            return plan

    def _plan_release(self, run_id: str, force: bool) -> dict:
        before = self.read()
        if before is None:
            return {"action": "not_held", "before": None, "after": None}
        if before.run_id == run_id or force:
            return {"action": "release", "before": before, "after": None}
        return {"action": "refused", "before": before, "after": before}


# --------------------------------------------------------------------------- keeping a lock during a long module


class LockKeeper:
    """Hold an Engine's lock for this run while a long piece of work runs: a context manager.

    On entry the lock is taken for ``run_id`` (refreshed when this run holds it already, taken when free,
    taken over when expired; :class:`LockedError` when another run holds it). A daemon thread then
    refreshes it every ``interval`` seconds (``ttl / 3`` by default), so a pull, a multi-GB snapshot or a
    long bake never lets it expire under the run. On exit the thread is stopped and joined; a lock this
    keeper took (it was free or expired on entry) is released again, one the run held before is left to
    the run. A refresh that failed (the lock was forced away) raises :class:`LockedError` on exit, unless
    the work itself raised. Check mode checks on entry and writes nothing.
    """

    def __init__(
        self,
        lock: EngineLock,
        owner: str,
        run_id: str,
        ttl: int = DEFAULT_TTL,
        *,
        interval: float | None = None,
        check_mode: bool = False,
        warn=None,
        release: bool = False,
    ):
        if ttl < 1:
            raise OptionsError(f"the lock's ttl must be at least 1 second, not {ttl}.")
        self.lock = lock
        self.owner = owner
        self.run_id = run_id
        self.ttl = ttl
        self.interval = interval if interval is not None else ttl / 3.0
        self.check_mode = check_mode
        self.warn = warn or (lambda msg: None)
        self.release = release
        self.entry: dict | None = None
        self.refreshes = 0
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def took_it(self) -> bool:
        """Whether this keeper took the lock (free or expired on entry) rather than finding it held by its run."""
        return bool(self.entry) and self.entry["action"] in ("acquire", "take_over")

    def __enter__(self) -> LockKeeper:
        self.entry = self.lock.acquire(self.owner, self.run_id, self.ttl, check_mode=self.check_mode)
        if self.entry["action"] == "take_over":
            before = self.entry["before"]
            self.warn(
                f"Took over the expired lock of Engine {self.lock.engine}, held by {before.owner} (run "
                f"{before.run_id}), expired at {before.expires_at}."
            )
        if not self.check_mode:
            self._thread = threading.Thread(target=self._keep, name=f"lock-keeper {self.lock.path}", daemon=True)
            self._thread.start()
        return self

    def _keep(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.lock.refresh(self.owner, self.run_id, self.ttl)
            except (LockedError, OSError) as exc:
                self.error = exc
                return
            self.refreshes += 1

    def stop(self) -> None:
        """Stop refreshing (idempotent); returns once the thread has ended."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __exit__(self, exc_type, exc, tb) -> None:
        self.stop()
        # `release`: the run's work on this Engine ends with this module (its last step succeeded): release the
        # lock whoever of the run took it. After a failure the run keeps it, for its rollback.
        if not self.check_mode and (self.took_it or (self.release and exc_type is None)):
            self.lock.release(self.run_id)
        if self.error is not None and exc_type is None:
            msg = getattr(self.error, "msg", None) or str(self.error)
            raise LockedError(
                f"This run lost the lock of Engine {self.lock.engine} while it worked ({msg}); another run may "
                "work on this Engine now: check it before going on."
            )


def lock_argument_spec() -> dict:
    """The shared ``lock`` option (doc fragment ``september.engine._lock``)."""
    return dict(
        lock=dict(
            type="dict",
            options=dict(
                dir=dict(type="path", default=DEFAULT_LOCK_DIR),
                key=dict(type="str", required=True, no_log=False),
                engine=dict(type="str"),
                run_id=dict(type="str", required=True),
                owner=dict(type="str", required=True),
                ttl=dict(type="int", default=DEFAULT_TTL),
                release=dict(type="bool", default=False),
            ),
        ),
    )


def lock_keeper(options: dict | None, check_mode: bool = False, warn=None):
    """A :class:`LockKeeper` for the module's ``lock`` option, or a context that does nothing without one."""
    if not options:
        return contextlib.nullcontext()
    lock = EngineLock(
        options.get("dir") or DEFAULT_LOCK_DIR, options.get("engine"), key=options["key"], option="lock.dir"
    )
    ttl = options.get("ttl") or DEFAULT_TTL
    return LockKeeper(
        lock,
        options["owner"],
        options["run_id"],
        ttl,
        check_mode=check_mode,
        warn=warn,
        release=bool(options.get("release")),
    )
