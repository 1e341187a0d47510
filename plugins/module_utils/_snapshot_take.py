# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Taking a snapshot of a (possibly live) brain: one read of the brain, one write of the copy, verified once.

method backup: SQLite's online backup API in one step (one read transaction: a consistent copy; in WAL mode
readers never block the Engine's writers). The copy is written without SQLite's own syncs or journal (it is a
temporary file until it is renamed into place), and its writeback is started as it is written (so the Engine's
commits never queue behind a large flush). Then, in parallel: quick_check (or integrity_check) of the copy, its
sha256, and one fsync; all three read the copy from the page cache.

method reflink: the brain's file (and its -wal) cloned with ioctl FICLONE (XFS, Btrfs) under a read transaction
that pins a consistent state, then the clone's WAL checkpointed into it; only where the file system can clone.

Writes are all-or-nothing: a snapshot is built under a hidden temporary name, verified, fsynced and renamed into
place with its manifest; any failure removes the temporary files.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

from ansible_collections.september.engine.plugins.module_utils._brain import (
    SIDE_SUFFIXES,
    brain_migrations,
    connect_readonly,
    database_facts,
    integrity_problems,
    journal_mode_in_header,
    processes_holding,
    reading,
)
from ansible_collections.september.engine.plugins.module_utils._errors import (
    BrainError,
    InsufficientSpaceError,
    SnapshotError,
)
from ansible_collections.september.engine.plugins.module_utils._fileops import (
    CLONE_UNSUPPORTED,
    WriteBehind,
    check_space,
    clone_file,
    copy_with_sha256,
    file_size,
    fsync_path,
    is_disk_full,
    remove,
    sha256_file,
)
from ansible_collections.september.engine.plugins.module_utils._snapshot_store import (
    COLLECTION_VERSION,
    DATA_SUFFIX,
    FORMAT,
    MANIFEST_SUFFIX,
    SnapshotStore,
    retain_until,
)
from ansible_collections.september.engine.plugins.module_utils._timeutil import iso, utc_now

METHODS = ("backup", "reflink")
_METHOD_TEXT = dict(backup="online backup API", reflink="reflink clone")
#: A temporary file of this Engine written to less than this long ago may be a snapshot's being committed right now
#: (it is held by no process between the copy and its rename); older and held by none, a killed snapshot left it.
LEFTOVER_GRACE_SECONDS = 10.0


def clear_leftovers(
    store: SnapshotStore, slug: str, actions: list, check_mode: bool = False, now: float | None = None
) -> list[str]:
    """Remove the hidden temporary files a killed snapshot of this Engine (`slug`) left in the folder, whatever its
    name (each run names its snapshot anew): those no process holds and nobody wrote to for a while."""
    now = time.time() if now is None else now
    removed = []
    for path in store.temps_of(slug):
        try:
            age = now - os.stat(path).st_mtime
        except FileNotFoundError:
            continue
        if age < LEFTOVER_GRACE_SECONDS or processes_holding(path):
            continue
        actions.append(f"remove {path} (left by a snapshot that did not end)")
        if check_mode or remove(path):
            removed.append(path)
    return removed


def _prepare_temp(path: str) -> None:
    """Make room for a new temporary file: a leftover that no process holds is removed."""
    if os.path.exists(path):
        if processes_holding(path):
            raise SnapshotError(f"{path} is in use: another snapshot of this name is being written right now.")
        remove(path)
    for suffix in ("-journal", "-wal", "-shm"):
        remove(path + suffix)


def _cleanup(store: SnapshotStore, name: str, tag: str) -> None:
    data_temp = store.temp(name, DATA_SUFFIX, tag)
    for path in (
        data_temp,
        data_temp + "-journal",
        data_temp + "-wal",
        data_temp + "-shm",
        store.temp(name, MANIFEST_SUFFIX, tag),
    ):
        remove(path)
    for suffix in SIDE_SUFFIXES:
        remove(store.temp(name, DATA_SUFFIX + suffix, tag))


def _corrupt(brain_path: str, verify: str, problems: list) -> BrainError:
    check = "integrity_check" if verify == "full" else "quick_check"
    return BrainError(
        f"The brain at {brain_path} fails {check} ({'; '.join(problems[:5])}): it is corrupt, and no snapshot was "
        "kept. Restore it from an earlier snapshot (state=restored)."
    )


def _full(store: SnapshotStore, exc: BaseException) -> InsufficientSpaceError:
    return InsufficientSpaceError(
        f"The file system of {store.dest} filled up while writing the snapshot ({exc}); nothing was kept. Free some "
        "space or choose another dest."
    )


def _make_room(store: SnapshotStore, slug: str, need: int, what: str, min_free_bytes: int, check_mode: bool) -> tuple:
    """Before a snapshot is written: (planned actions, the dest folder created or None).

    Leftovers of an interrupted run go first (they take room too), then the room for ``need`` bytes (``what``) is
    checked, then O(dest) is made.
    """
    planned: list = []
    clear_leftovers(store, slug, planned, check_mode)
    check_space([(store.dest, need, what)], min_free_bytes)
    created = store.ensure_dest(check_mode, planned)
    return planned, created


def _predicted(store: SnapshotStore, name: str, size: int, fields: dict, retain_days: int | None, *,
               raw_copy: bool, key: str | None = None) -> dict:
    """In check mode, the store entry the snapshot would have (sha256 and manifest None)."""
    now = utc_now()
    return dict(
        name=name,
        path=store.data_path(name),
        manifest_path=store.manifest_path(name),
        size=size,
        sha256=None,
        created_at=iso(now),
        retain_until=retain_until(now, retain_days),
        reason=fields.get("reason"),
        raw_copy=raw_copy,
        kind=fields.get("kind"),
        engine_key=key,
        engine_version=None if raw_copy else fields.get("engine_version"),
        manifest=None,
    )


def finish_copy(path: str, verify: str) -> tuple[str, list]:
    """sha256, verification (quick_check / integrity_check / none) and fsync of a finished copy, in parallel.

    Returns (sha256, problems). All three read the copy once more, from the page cache; they run at once.
    """
    results, failures = {}, []

    def hashing():
        try:
            results["sha256"] = sha256_file(path)
        except OSError as exc:
            failures.append(exc)

    def checking():
        try:
            conn = connect_readonly(path, immutable=True)
            try:
                results["problems"] = integrity_problems(conn, verify)
            finally:
                conn.close()
        except BrainError as exc:
            results["problems"] = [exc.msg]

    threads = [threading.Thread(target=hashing)]
    if verify != "none":
        threads.append(threading.Thread(target=checking))
    for thread in threads:
        thread.start()
    try:
        fsync_path(path)
    finally:
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]
    return results["sha256"], results.get("problems") or []


def _backup(source: sqlite3.Connection, temp: str, brain_path: str) -> sqlite3.Connection:
    """The online backup of `source` into the new file `temp`, in one step; returns the open copy."""
    copy = sqlite3.connect(temp, isolation_level=None)
    try:
        os.chmod(temp, 0o600)
        # A temporary file until it is renamed into place: no journal, no syncs of SQLite's own (one fsync later).
        copy.execute("PRAGMA journal_mode=OFF")
        copy.execute("PRAGMA synchronous=OFF")
        with WriteBehind(temp):
            try:
                source.backup(copy)  # pages=-1: one step, one read transaction, a consistent copy
            except sqlite3.DatabaseError as exc:
                if is_disk_full(exc):
                    raise
                raise BrainError(
                    f"Cannot copy the brain at {brain_path} ({exc}): it may be corrupt. No snapshot was written."
                ) from exc
        copy.execute("PRAGMA journal_mode=DELETE").fetchone()
    except BaseException:
        copy.close()
        raise
    return copy


def _clone(source: sqlite3.Connection, temp: str, brain_path: str) -> sqlite3.Connection:
    """A reflink clone of the brain (and its WAL) into `temp`, made consistent; returns the open copy."""
    source.execute("BEGIN")
    try:
        source.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the read transaction pins a state
        try:
            clone_file(brain_path, temp)
            if file_size(brain_path + "-wal"):
                clone_file(brain_path + "-wal", temp + "-wal")
        except OSError as exc:
            if exc.errno in CLONE_UNSUPPORTED:
                raise SnapshotError(
                    f"method=reflink: the file system cannot clone {brain_path} into {os.path.dirname(temp)} ({exc}): "
                    "it needs XFS with reflink or Btrfs, with dest on the same file system. Use method=backup."
                ) from exc
            raise
    finally:
        source.execute("COMMIT")
    copy = sqlite3.connect(temp, isolation_level=None)
    try:
        copy.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()  # the clone's WAL (recovered) into its file
        copy.execute("PRAGMA journal_mode=DELETE").fetchone()
    except sqlite3.DatabaseError as exc:
        copy.close()
        raise BrainError(
            f"The clone of the brain at {brain_path} cannot be read ({exc}); no snapshot was kept."
        ) from exc
    return copy


def take_snapshot(
    store: SnapshotStore,
    brain_path: str,
    name: str,
    *,
    verify: str,
    fields: dict,
    migrations: dict,
    min_free_bytes: int,
    warnings: list,
    actions: list,
    check_mode: bool = False,
    retain_days: int | None = None,
    method: str = "backup",
    key: str | None = None,
    slug: str = "",
) -> dict:
    """A consistent snapshot of the (possibly live) brain at `brain_path`, kept as `name` in `store`.

    `fields` go into the manifest as they are (reason, kind, engine, engine_version, image, image_id, source);
    the manifest adds what the copy is (size, sha256, page size and count, the brain's journal mode, applied
    migrations, sqlite_version, verify, method, timings). `key` / `slug`: the Engine's identity (temporary names,
    and a name another Engine committed meanwhile, see SnapshotStore.commit). Returns the store entry.

    BrainError when the brain cannot be read or fails verification (it is corrupt), InsufficientSpaceError /
    SnapshotError when the snapshot cannot be written. Nothing partial remains. In check mode: the same checks
    (read-only) and the snapshot it would take (sha256 and manifest None).
    """
    data_temp = store.temp(name, DATA_SUFFIX, slug)
    with reading(brain_path, predict_only=check_mode) as source:
        facts = database_facts(source)
        wal = file_size(brain_path + "-wal")
        need = wal if method == "reflink" else facts["logical_size"] + wal
        planned, created = _make_room(store, slug, need, f"brain {facts['logical_size']} + WAL {wal}", min_free_bytes,
                                      check_mode)
        planned.append(f"snapshot {brain_path} to {store.data_path(name)} ({_METHOD_TEXT[method]}, verify {verify})")
        if check_mode:
            problems = integrity_problems(source, verify) if verify != "none" else []
            if problems:
                raise _corrupt(brain_path, verify, problems)
            actions.extend(planned)
            return _predicted(store, name, facts["logical_size"], fields, retain_days, raw_copy=False, key=key)
        try:
            _prepare_temp(data_temp)
            started, clock = utc_now(), time.monotonic()
            copy = (_clone if method == "reflink" else _backup)(source, data_temp, brain_path)
            finished, copied = utc_now(), time.monotonic()
            try:
                copy_facts = database_facts(copy)
                applied = brain_migrations(copy, migrations, warnings)
            finally:
                copy.close()
            digest, problems = finish_copy(data_temp, verify)
            if problems:
                raise _corrupt(brain_path, verify, problems)
            manifest = dict(
                fields,
                format=FORMAT,
                name=name,
                created_at=iso(started),
                backup_started_at=iso(started, "microseconds"),
                backup_finished_at=iso(finished, "microseconds"),
                retain_until=retain_until(started, retain_days),
                size=os.path.getsize(data_temp),
                sha256=digest,
                page_size=copy_facts["page_size"],
                page_count=copy_facts["page_count"],
                journal_mode=str(facts["journal_mode"]).lower(),
                applied_migrations=applied,
                sqlite_version=sqlite3.sqlite_version,
                method=method,
                verify=dict(mode=verify, result="skipped" if verify == "none" else "ok"),
                raw_copy=False,
                timings=dict(copy_s=round(copied - clock, 3), verify_hash_fsync_s=round(time.monotonic() - copied, 3)),
                collection_version=COLLECTION_VERSION,
            )
            committed = store.commit(name, [(data_temp, DATA_SUFFIX)], manifest, key=key, slug=slug, tag=slug)
            created = None
        except (OSError, sqlite3.DatabaseError) as exc:
            if is_disk_full(exc):
                raise _full(store, exc) from exc
            if isinstance(exc, sqlite3.DatabaseError):
                raise BrainError(
                    f"The copy of the brain at {brain_path} cannot be read ({exc}): the brain is corrupt, "
                    "and no snapshot was kept. Restore it from an earlier snapshot."
                ) from exc
            raise SnapshotError(f"Cannot write the snapshot {store.data_path(name)}: {exc}") from exc
        finally:
            _cleanup(store, name, slug)
            store.undo_dest(created)
    actions.extend(planned)
    return store.get(committed)


def save_raw(
    store: SnapshotStore,
    brain_path: str,
    name: str,
    *,
    fields: dict,
    min_free_bytes: int,
    actions: list,
    check_mode: bool = False,
    retain_days: int | None = None,
    slug: str = "",
) -> dict:
    """A byte copy of a brain that cannot be read as a database (with its -wal / -journal), kept as evidence."""
    sources = [(brain_path, DATA_SUFFIX)] + [
        (brain_path + suffix, DATA_SUFFIX + suffix) for suffix in SIDE_SUFFIXES if file_size(brain_path + suffix)
    ]
    total = sum(file_size(source[0]) for source in sources)
    planned, created = _make_room(store, slug, total, "raw copy of the brain", min_free_bytes, check_mode)
    planned.append(f"copy the unreadable brain {brain_path} byte for byte to {store.data_path(name)}")
    if check_mode:
        actions.extend(planned)
        return _predicted(store, name, file_size(brain_path), fields, retain_days, raw_copy=True)
    renames, side_files, digests = [], [], {}
    started = utc_now()
    try:
        for path, suffix in sources:
            temp = store.temp(name, suffix, slug)
            _prepare_temp(temp)
            digests[suffix], _size = copy_with_sha256(path, temp)
            renames.append((temp, suffix))
            if suffix != DATA_SUFFIX:
                side_files.append(dict(file=name + suffix, size=os.path.getsize(temp), sha256=digests[suffix]))
        manifest = raw_manifest(
            fields,
            name,
            started,
            retain_days,
            os.path.getsize(renames[0][0]),
            digests[DATA_SUFFIX],
            journal_mode_in_header(brain_path),
            side_files,
        )
        store.commit(name, renames, manifest, tag=slug)
        created = None
    except OSError as exc:
        if is_disk_full(exc):
            raise InsufficientSpaceError(
                f"The file system of {store.dest} filled up ({exc}); nothing was kept."
            ) from exc
        raise SnapshotError(f"Cannot write the raw copy {store.data_path(name)}: {exc}") from exc
    finally:
        _cleanup(store, name, slug)
        store.undo_dest(created)
    actions.extend(planned)
    return store.get(name)


def raw_manifest(fields: dict, name: str, started, retain_days, size: int, digest: str, journal_mode, side_files):
    """The manifest of a byte copy of a brain that could not be read as a database."""
    return dict(
        fields,
        format=FORMAT,
        name=name,
        created_at=iso(started),
        retain_until=retain_until(started, retain_days),
        size=size,
        sha256=digest,
        page_size=None,
        page_count=None,
        journal_mode=journal_mode,
        applied_migrations=None,
        sqlite_version=sqlite3.sqlite_version,
        method="copy",
        verify=dict(mode="none", result="skipped"),
        raw_copy=True,
        side_files=side_files,
        collection_version=COLLECTION_VERSION,
    )
