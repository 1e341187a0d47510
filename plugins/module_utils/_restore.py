# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Restoring a snapshot over a brain: check first, stage second, install only after the Engine is stopped.

    plan = check_restore(store, location, entry, identity=..., client=..., engine_may_run=True)
    stage_restore(plan)             # the Engine may still run: a verified copy waits beside the brain
    ...                             # the caller stops the Engine
    previous = install_restore(plan, client=..., ...)   # re-checks, keeps the replaced brain, swaps by rename
    abort_restore(plan)             # always, at the end: removes a staged copy that was not installed

check_restore() refuses (raises) with nothing changed; stage_restore() writes only a hidden temporary file in
the brain's folder; install_restore() either replaces the brain and keeps the replaced one as a pre-restore
snapshot, or raises with the brain as it was. brain_snapshot state=restored runs the three in a row; the
rollback runs the first two before it stops the Engine and the third after.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
from dataclasses import dataclass, field
from urllib.parse import quote

from ansible_collections.september.engine.plugins.module_utils._brain import (
    MUTABLE_HEADER_RANGES,
    SIDE_SUFFIXES,
    BrainLocation,
    brain_migrations,
    content_sha256,
    database_facts,
    holders,
    journal_mode_in_header,
    processes_holding,
    reading,
    snapshot_brain_problem,
)
from ansible_collections.september.engine.plugins.module_utils._brain_rows import data_at_risk, table_row_counts
from ansible_collections.september.engine.plugins.module_utils._errors import (
    BrainError,
    EngineBusyError,
    ForeignSnapshotError,
    InsufficientSpaceError,
    NotFoundError,
    SnapshotError,
)
from ansible_collections.september.engine.plugins.module_utils._fileops import (
    check_space,
    copy_with_sha256,
    file_size,
    fsync_path,
    is_disk_full,
    remove,
    same_filesystem,
    sha256_file,
)
from ansible_collections.september.engine.plugins.module_utils._snapshot_store import (
    COLLECTION_VERSION,
    DATA_SUFFIX,
    FORMAT,
    OTHER,
    SAME,
    SnapshotStore,
    check_name,
    default_name,
    describe_engine,
    engine_binding,
    retain_until,
)
from ansible_collections.september.engine.plugins.module_utils._snapshot_take import raw_manifest
from ansible_collections.september.engine.plugins.module_utils._timeutil import iso, utc_now

# Errors of os.link() that mean "no hard link here" (another file system, or one without hard links): copy instead.
_NO_LINK = (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS)


@dataclass
class RestorePlan:
    """What check_restore() decided; stage_restore() and install_restore() carry it out."""

    store: SnapshotStore
    location: BrainLocation
    entry: dict
    identity: dict
    engine_container: str | None
    brain_exists: bool
    noop: bool = False
    same_filesystem: bool = True
    staged: str | None = None
    verified: bool = False
    pending_keep: object = None
    actions: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    @property
    def brain(self) -> str:
        return self.location.path

    @property
    def folder(self) -> str:
        return os.path.dirname(self.location.path)

    @property
    def staging_path(self) -> str:
        return os.path.join(self.folder, f".{os.path.basename(self.brain)}.restore.tmp")


def find_snapshot(store: SnapshotStore, snapshot: str) -> dict:
    """The snapshot to restore, by name in dest or by path to its .sqlite file (manifest beside it)."""
    if os.sep in snapshot:
        path = os.path.abspath(snapshot)
        name = os.path.basename(path)
        name = name[: -len(DATA_SUFFIX)] if name.endswith(DATA_SUFFIX) else name
        store = SnapshotStore(os.path.dirname(path))
    else:
        name = snapshot[: -len(DATA_SUFFIX)] if snapshot.endswith(DATA_SUFFIX) else snapshot
    entry = store.get(check_name(name, "snapshot"))
    if entry is None:
        raise NotFoundError(
            f"There is no snapshot {name} in {store.dest} (no {store.manifest_path(name)}): check the snapshot option "
            "(september.engine.brain_snapshot_info lists them)."
        )
    return entry


def _samples_differ(first: str, second: str, size: int, block: int = 65536) -> bool:
    """Whether blocks at the start (header masked), middle and end of two files of `size` bytes differ."""
    with open(first, "rb") as one, open(second, "rb") as two:
        for offset in sorted({0, max(0, size // 2 - block // 2), max(0, size - block)}):
            one.seek(offset)
            two.seek(offset)
            left, right = bytearray(one.read(block)), bytearray(two.read(block))
            if offset == 0:
                for start, end in MUTABLE_HEADER_RANGES:
                    left[start:end] = right[start:end] = bytes(end - start)
            if left != right:
                return True
    return False


def brain_matches(brain_path: str, entry: dict) -> bool:
    """True when the brain already holds exactly the snapshot's database (and no pending WAL).

    Cheap first (sizes, three sampled blocks), a full comparison of content hashes only when those agree.
    """
    if not os.path.isfile(brain_path) or file_size(brain_path + "-wal") or file_size(brain_path + "-journal"):
        return False
    if entry["size"] is None or file_size(brain_path) != entry["size"] or not os.path.isfile(entry["path"]):
        return False
    if _samples_differ(brain_path, entry["path"], entry["size"]):
        return False
    return content_sha256(brain_path) == content_sha256(entry["path"])


def _check_binding(
    entry: dict, identity: dict, container: str | None, path: str, allow_other_engine: bool, warnings: list
) -> None:
    binding = engine_binding(entry["manifest"], identity["key"], container, path)
    if binding == SAME:
        return
    owner = describe_engine(entry["manifest"])
    if allow_other_engine:
        warnings.append(
            f"Snapshot {entry['name']} belongs to {owner}, not to this Engine ({identity['key']}); it is "
            "restored anyway (allow_other_engine=true)."
        )
        return
    if binding == OTHER:
        raise ForeignSnapshotError(
            f"Snapshot {entry['name']} belongs to {owner}, not to this Engine ({identity['key']}): restoring it would "
            "give this Engine another Engine's brain (another user's memory). Nothing was changed. Restore a snapshot "
            f"of this Engine (september.engine.brain_snapshot_info with engine_key={identity['key']} lists them), or, "
            "to move that brain here on purpose (a migration), set allow_other_engine=true.",
            snapshot_engine=entry["engine_key"],
            engine=identity["key"],
        )
    raise ForeignSnapshotError(
        f"Snapshot {entry['name']} has an older manifest that records neither this Engine's volume or mount "
        f"({identity['key']}) nor its container or brain path, so it cannot be told whose brain it is. Nothing was "
        "changed. If you know it is this Engine's, set allow_other_engine=true.",
        snapshot_engine=None,
        engine=identity["key"],
    )


def _verify_snapshot(entry: dict, checksum: bool = True) -> None:
    problem = SnapshotStore.checksum_problem(entry) if checksum else None
    if problem:
        raise SnapshotError(
            f"Snapshot {entry['name']} fails its checksum: {problem}. It is damaged or was altered, and was not "
            "restored; nothing was changed. Choose another snapshot."
        )
    problem = snapshot_brain_problem(entry["path"])
    if problem:
        raise SnapshotError(
            f"Snapshot {entry['name']} {problem}; it was not restored and nothing was changed. Choose another snapshot."
        )


def busy_error(brain: str, reasons: list, engine_may_run: bool) -> EngineBusyError:
    if engine_may_run:
        advice = (
            "Stop or remove what else uses it (a sidecar container that mounts the Engine's volume, a process "
            "that has the brain open), then run again. The Engine was not stopped."
        )
    else:
        advice = "Stop the Engine first (docker stop --timeout 30 <container>), then run the restore again."
    return EngineBusyError(
        f"Refusing to restore over the brain at {brain}: it is in use ({'; '.join(reasons)}). {advice} "
        "Nothing was changed.",
        holders=reasons,
    )


def check_restore(
    store: SnapshotStore,
    location: BrainLocation,
    entry: dict,
    *,
    identity: dict,
    client,
    allow_other_engine: bool = False,
    engine_may_run: bool = False,
    engine_container: str | None = None,
    min_free_bytes: int = 0,
    verify: bool = True,
) -> RestorePlan:
    """Everything a restore of `entry` over the brain at `location` needs, checked before anything is stopped.

    Raises, with nothing changed:
      NotFoundError / BrainError  the brain's folder is missing, or the brain path is not a regular file;
      SnapshotError               a raw copy (cannot be restored), a checksum mismatch, a failed quick_check;
      ForeignSnapshotError        the manifest names another Engine than `identity["key"]` (or an older manifest
                                  cannot tell and its container / path do not match), unless `allow_other_engine`;
      EngineBusyError             a running container other than the Engine's own mounts the brain (a sidecar),
                                  or a process other than the Engine's holds it open; with `engine_may_run` false,
                                  the Engine's own running container too;
      InsufficientSpaceError      no room to stage the snapshot beside the brain (and, when the snapshot folder is
                                  on another file system, to copy the replaced brain there), plus `min_free_bytes`.
    `identity`: the target Engine's (_brain.brain_identity, or engine_info's engine.identity). `engine_container`:
    its container (default: the one the brain was located through). `verify`: check the snapshot's sha256 and
    quick_check here (reads it twice); with verify=False, stage_restore() checks both on its copy instead (one read
    of the snapshot less; still before anything is stopped). Returns the plan; plan.noop when the brain already
    holds the snapshot.
    """
    brain, folder = location.path, os.path.dirname(location.path)
    if not os.path.isdir(folder):
        raise NotFoundError(f"The brain's folder {folder} does not exist: check the location options.")
    if os.path.lexists(brain) and not os.path.isfile(brain):
        raise BrainError(f"The brain path {brain} is not a regular file: check the location options.")
    if entry["raw_copy"]:
        raise SnapshotError(
            f"Snapshot {entry['name']} is a raw copy of a brain that could not be read as a database (kept as "
            "evidence): it cannot be restored. Choose another snapshot."
        )
    container = engine_container or location.container or identity.get("container")
    plan = RestorePlan(
        store=store,
        location=location,
        entry=entry,
        identity=identity,
        engine_container=container,
        brain_exists=os.path.exists(brain),
    )
    _check_binding(entry, identity, container, brain, allow_other_engine, plan.warnings)
    reasons = holders(client, location, container, engine_may_run)
    if reasons:
        raise busy_error(brain, reasons, engine_may_run)
    if brain_matches(brain, entry):
        plan.noop = True
        return plan
    plan.same_filesystem = same_filesystem(store.dest, folder)
    current = sum(file_size(brain + suffix) for suffix in ("", *SIDE_SUFFIXES))
    # check_space says each size once ("staged snapshot 339968 bytes").
    check_space(
        [
            (folder, entry["size"], "staged snapshot"),
            (store.dest, 0 if plan.same_filesystem else current, "copy of the current brain"),
        ],
        min_free_bytes,
    )
    if verify:
        _verify_snapshot(entry)
        plan.verified = True
    return plan


def _remove_temp(temp: str) -> None:
    for path in (temp, temp + "-wal", temp + "-shm", temp + "-journal"):
        remove(path)


def _owner_and_mode(plan: RestorePlan) -> tuple:
    """The brain's owner and mode, for its replacement (a new brain: the folder's owner, mode 0600)."""
    if os.path.exists(plan.brain):
        ref = os.stat(plan.brain)
        return (ref.st_uid, ref.st_gid), stat.S_IMODE(ref.st_mode)
    ref = os.stat(plan.folder)
    return (ref.st_uid, ref.st_gid), 0o600


def _write_staged(plan: RestorePlan, temp: str) -> None:
    entry = plan.entry
    owner, mode = _owner_and_mode(plan)
    digest, _size = copy_with_sha256(entry["path"], temp)
    if digest != entry["manifest"]["sha256"]:
        raise SnapshotError(
            f"Snapshot {entry['name']} fails its checksum: its copy in {plan.folder} has sha256 {digest}, the "
            f"manifest says {entry['manifest']['sha256']}. It is damaged or was altered, and was not restored; "
            "nothing was changed. Choose another snapshot."
        )
    if not plan.verified:
        _verify_snapshot(dict(entry, path=temp), checksum=False)
        plan.verified = True
    if str(entry["manifest"].get("journal_mode") or "delete").lower() == "wal":
        _set_journal_mode(temp, "WAL")
    os.chown(temp, *owner)
    os.chmod(temp, mode)
    fsync_path(temp)
    fsync_path(plan.folder)


def stage_restore(plan: RestorePlan) -> None:
    """Copy the snapshot beside the brain as a hidden temporary file, hashing while copying (one pass), fsync.

    Safe while the Engine runs. SnapshotError when the copy does not match the manifest's sha256 (the snapshot
    changed since it was checked, or was never checked), or, when check_restore() did not verify it, when the copy
    fails quick_check; InsufficientSpaceError when the file system fills up; the staged file is removed then. Sets
    the brain's journal mode (as the manifest records it), owner and mode on the copy.
    """
    if plan.noop or plan.staged:
        return
    temp = plan.staging_path
    if os.path.exists(temp) and processes_holding(temp):
        raise SnapshotError(f"{temp} is in use: another restore of this brain is running right now.")
    _remove_temp(temp)
    try:
        _write_staged(plan, temp)
    except SnapshotError:
        _remove_temp(temp)
        raise
    except (OSError, sqlite3.DatabaseError) as exc:
        _remove_temp(temp)
        if is_disk_full(exc):
            raise InsufficientSpaceError(
                f"The file system of {plan.folder} filled up while staging the restore ({exc}); nothing was changed."
            ) from exc
        raise SnapshotError(f"Cannot stage the restore in {plan.folder}: {exc}. Nothing was changed.") from exc
    plan.staged = temp
    plan.actions.append(f"stage snapshot {plan.entry['name']} as {temp} (copy, sha256 while copying, fsync)")


def abort_restore(plan: RestorePlan) -> None:
    """Remove a staged copy that was not installed (call it at the end of every path; harmless after install)."""
    if plan.staged:
        _remove_temp(plan.staged)
        plan.staged = None


def _set_journal_mode(path: str, mode: str) -> None:
    conn = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, isolation_level=None, timeout=5)
    try:
        conn.execute(f"PRAGMA journal_mode={mode}").fetchone()
    finally:
        conn.close()


def previous_name(store: SnapshotStore, name: str | None, slug: str | None) -> str:
    """The name under which a restore keeps the replaced brain: `name`, or a new pre-restore name."""
    if name:
        if store.get(name) is not None:
            raise SnapshotError(f"A snapshot named {name} already exists in {store.dest}: choose another name.")
        return name
    base = default_name(utc_now(), slug, "pre-restore")
    for number in range(1, 1000):
        candidate = base if number == 1 else f"{base}-{number}"
        if store.get(candidate) is None:
            return candidate
    raise SnapshotError(f"Too many snapshots named {base}-* in {store.dest}.")


def _link_or_copy(source: str, target: str) -> str | None:
    """Hard-link `source` as `target` (same file system: no copy), else copy it; returns the sha256 if copied."""
    remove(target)
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
        return copy_with_sha256(source, target)[0]
    return None


class _Kept:
    """The replaced brain being kept in the snapshot folder: where it is on the way, and how to undo that."""

    def __init__(self, plan: RestorePlan, name: str, reason: str | None, retain_days: int | None, fields: dict):
        self.plan, self.name, self.committed = plan, name, None
        self.retain_days, self.started = retain_days, utc_now()
        why = f"pre-restore: brain replaced by restore of {plan.entry['name']}" + (f": {reason}" if reason else "")
        self.fields = dict(fields, kind="pre-restore", reason=why)
        self.was_wal = journal_mode_in_header(plan.brain) == "wal"
        self.facts = None  # the brain's facts once it is self-contained; None: kept as a raw copy
        self.renames = []  # (temporary path in the snapshot folder, suffix), the data file first
        self.digest = None  # sha256 of the data file, when known (a copy hashes while copying)
        self.linked = False
        self.side_copies = []  # (kept copy, original path) of side files of a raw copy

    def undo(self) -> None:
        """Put the replaced brain back as it was (best effort, each step on its own)."""
        for kept, original in self.side_copies:
            if not os.path.exists(original):
                with contextlib.suppress(OSError):
                    _link_or_copy(kept, original)
        if self.facts is not None and self.was_wal and os.path.isfile(self.plan.brain):
            with contextlib.suppress(sqlite3.DatabaseError, OSError):
                _set_journal_mode(self.plan.brain, "WAL")
        for temp, _suffix in self.renames:
            remove(temp)
        if self.committed:
            with contextlib.suppress(OSError):
                self.plan.store.delete(self.committed)


def _self_contained(brain: str, migrations: dict, warnings: list) -> dict | None:
    """Checkpoint the brain's WAL into it and switch it to rollback-journal mode (no -wal needed); its facts.

    None when it cannot be read as a database (then it is kept as a raw copy, side files and all): a read-only
    look first, so that a brain that cannot be read is never written to (its -wal is evidence).
    """
    try:
        with reading(brain, predict_only=True) as probe:
            database_facts(probe)
    except (BrainError, NotFoundError, sqlite3.DatabaseError):
        return None
    try:
        conn = sqlite3.connect(f"file:{quote(brain)}?mode=rw", uri=True, isolation_level=None, timeout=5)
    except sqlite3.DatabaseError:
        return None
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        conn.execute("PRAGMA journal_mode=DELETE").fetchone()
        facts = database_facts(conn)
        facts["applied_migrations"] = brain_migrations(conn, migrations, warnings)
    except sqlite3.DatabaseError:
        return None
    finally:
        conn.close()
    return facts


def _prepare_keep(plan: RestorePlan, kept: _Kept, migrations: dict, warnings: list) -> None:
    """Put the brain about to be replaced into the snapshot folder under hidden temporary names: by hard link (no
    copy) when the folder is on the brain's file system, else by a copy; the brain itself stays in place."""
    store, brain, slug = plan.store, plan.brain, plan.identity.get("slug") or ""
    store.ensure_dest(False, [])
    kept.facts = _self_contained(brain, migrations, warnings)
    data_temp = store.temp(kept.name, DATA_SUFFIX, slug)
    kept.renames.append((data_temp, DATA_SUFFIX))
    kept.digest = _link_or_copy(brain, data_temp)
    kept.linked = kept.digest is None
    if kept.facts is not None:
        return
    warnings.append(f"The replaced brain at {brain} cannot be read as a database: it is kept as a raw copy.")
    for suffix in SIDE_SUFFIXES:
        if file_size(brain + suffix):
            temp = store.temp(kept.name, DATA_SUFFIX + suffix, slug)
            kept.renames.append((temp, DATA_SUFFIX + suffix))
            _link_or_copy(brain + suffix, temp)


def _commit_keep(plan: RestorePlan, kept: _Kept) -> dict:
    """Hash the kept brain (unless a copy already did), write its manifest and commit it as a snapshot."""
    store, (data_temp, _suffix) = plan.store, kept.renames[0]
    digest = kept.digest or sha256_file(data_temp)
    if kept.facts is not None:
        facts = kept.facts
        manifest = dict(
            kept.fields,
            format=FORMAT,
            name=kept.name,
            created_at=iso(kept.started),
            retain_until=retain_until(kept.started, kept.retain_days),
            size=os.path.getsize(data_temp),
            sha256=digest,
            page_size=facts["page_size"],
            page_count=facts["page_count"],
            journal_mode="wal" if kept.was_wal else str(facts["journal_mode"]).lower(),
            applied_migrations=facts["applied_migrations"],
            sqlite_version=sqlite3.sqlite_version,
            method="link" if kept.linked else "copy",
            verify=dict(mode="none", result="skipped"),
            raw_copy=False,
            collection_version=COLLECTION_VERSION,
        )
    else:
        side_files = [
            dict(file=kept.name + suffix, size=os.path.getsize(temp), sha256=sha256_file(temp))
            for temp, suffix in kept.renames[1:]
        ]
        manifest = raw_manifest(
            kept.fields,
            kept.name,
            kept.started,
            kept.retain_days,
            os.path.getsize(data_temp),
            digest,
            journal_mode_in_header(data_temp),
            side_files,
        )
    kept.committed = store.commit(kept.name, kept.renames, manifest, tag=plan.identity.get("slug") or "")
    kept.renames = []
    kept.side_copies = [
        (
            os.path.join(store.dest, kept.committed + side["file"][len(kept.name) :]),
            plan.brain + side["file"][len(kept.name) + len(DATA_SUFFIX) :],
        )
        for side in manifest.get("side_files") or []
    ]
    plan.actions.append(
        f"keep the replaced brain as snapshot {kept.committed} "
        f"({'hard link' if kept.linked else 'copy'}, kind pre-restore)"
    )
    return manifest


def _summary(plan: RestorePlan, kept: _Kept, manifest: dict) -> dict:
    kept_path = plan.store.data_path(kept.committed)
    with contextlib.suppress(OSError):  # the kept inode is the snapshot folder's alone now
        os.chown(kept_path, os.getuid(), os.getgid())
        os.chmod(kept_path, 0o600)
    return dict(
        name=kept.committed,
        path=kept_path,
        sha256=manifest["sha256"],
        raw_copy=manifest["raw_copy"],
        retain_until=manifest["retain_until"],
    )


def install_restore(
    plan: RestorePlan,
    *,
    client,
    name: str | None = None,
    reason: str | None = None,
    retain_days: int | None = 30,
    fields: dict | None = None,
    migrations: dict | None = None,
    warnings: list | None = None,
    defer_keep: bool = False,
) -> dict | None:
    """Replace the brain with the staged snapshot; call it with the Engine stopped. Returns where the replaced
    brain was kept ({name, path, sha256, raw_copy, retain_until}), None when there was no brain (or plan.noop).

    Re-checks that nothing holds the brain (EngineBusyError, nothing changed; the staged copy stays for a retry).
    Then: the replaced brain's WAL is checkpointed into it and the brain kept as a `pre-restore` snapshot named
    `name` (default brain-<slug>-pre-restore-<time>) by hard link into the snapshot folder (a copy only across file
    systems; a brain that cannot be read is kept byte for byte with its -wal); stale -wal / -shm / -journal are
    removed; the staged copy is renamed over the brain (atomic: the brain path never misses); the folder fsynced.
    On any failure the replaced brain is put back as it was and SnapshotError / InsufficientSpaceError is raised.
    `fields` (engine, source ...) go into the kept brain's manifest; `migrations`: how applied migrations are read.

    `defer_keep`: hash the kept brain and commit its manifest only in complete_restore(), so that the Engine can
    be started right after this returns (the kept brain is linked into the snapshot folder before the swap, under
    a hidden name, and nothing touches it afterwards); the returned sha256 is None and path that hidden file until
    then (restore_data_at_risk() can count it either way). A raw copy, or a copy across file systems, is always
    committed before the swap.
    """
    if plan.noop:
        return None
    warnings = plan.warnings if warnings is None else warnings
    if not plan.staged:
        stage_restore(plan)
    reasons = holders(client, plan.location, plan.engine_container, engine_may_run=False)
    if reasons:
        raise busy_error(plan.brain, reasons, engine_may_run=False)
    kept = None
    if plan.brain_exists:
        kept = _Kept(
            plan, previous_name(plan.store, name, plan.identity.get("slug")), reason, retain_days, dict(fields or {})
        )
    try:
        manifest = _swap(plan, kept, migrations or {}, warnings, defer_keep)
    except (OSError, sqlite3.DatabaseError, SnapshotError) as exc:
        if kept is not None:
            kept.undo()
        raise _put_back_error(plan, exc) from exc
    try:
        fsync_path(plan.folder)
    except OSError as exc:  # the rename is done; only its durability is in doubt
        warnings.append(f"Could not fsync {plan.folder} after the restore ({exc}).")
    plan.actions.append(f"replace {plan.brain} with snapshot {plan.entry['name']} (rename of the staged copy)")
    if kept is None:
        return None
    if manifest is None:  # deferred: the kept brain waits under its hidden name (path), committed by complete
        plan.pending_keep = kept
        return dict(
            name=kept.name,
            path=kept.renames[0][0],
            sha256=None,
            raw_copy=False,
            retain_until=retain_until(kept.started, kept.retain_days),
        )
    return _summary(plan, kept, manifest)


def _swap(plan: RestorePlan, kept: _Kept | None, migrations: dict, warnings: list, defer_keep: bool):
    """Keep the replaced brain (committed now unless deferred), remove stale side files, rename the staged copy
    over the brain. Returns the kept brain's manifest (None: nothing kept, or its commit deferred)."""
    manifest = None
    if kept is not None:
        _prepare_keep(plan, kept, migrations, warnings)
        if not (defer_keep and kept.linked and kept.facts is not None):
            manifest = _commit_keep(plan, kept)
    else:
        plan.actions.append(f"no brain at {plan.brain} (empty volume): nothing to keep before the restore")
    for suffix in ("-wal", "-shm", "-journal"):
        if remove(plan.brain + suffix):
            plan.actions.append(f"remove stale {plan.brain + suffix}")
    os.replace(plan.staged, plan.brain)
    plan.staged = None
    return manifest


def _put_back_error(plan: RestorePlan, exc: BaseException):
    """The error of a failed install, once the replaced brain was put back."""
    if isinstance(exc, SnapshotError):
        return SnapshotError(f"{exc.msg} The replaced brain was put back as it was.")
    if is_disk_full(exc):
        return InsufficientSpaceError(
            f"A file system filled up during the restore ({exc}); the brain was not "
            "replaced (it was put back as it was)."
        )
    return SnapshotError(
        f"Cannot replace the brain at {plan.brain}: {exc}. The brain was not replaced (it was put back as it was)."
    )


def complete_restore(plan: RestorePlan) -> dict | None:
    """Finish what install_restore(defer_keep=True) left: hash the kept brain, write its manifest, commit it.

    Safe while the Engine runs (the kept brain is a file of the snapshot folder alone). Returns the kept brain as
    install_restore() does, None when nothing was deferred. SnapshotError when it cannot be committed: the kept
    brain then stays in the snapshot folder under its hidden temporary name (named in the message), never deleted.
    """
    kept = plan.pending_keep
    if kept is None:
        return None
    try:
        manifest = _commit_keep(plan, kept)
    except OSError as exc:
        raise SnapshotError(
            f"The replaced brain could not be committed as snapshot {kept.name} ({exc}); it is kept "
            f"as {kept.renames[0][0]}."
        ) from exc
    plan.pending_keep = None
    return _summary(plan, kept, manifest)


def predict_previous(plan: RestorePlan, name: str | None, retain_days: int | None) -> dict | None:
    """What install_restore() would keep (check mode): the name, no sha256; None when there is no brain."""
    if plan.noop or not plan.brain_exists:
        return None
    kept = previous_name(plan.store, name, plan.identity.get("slug"))
    plan.actions.extend(
        [
            f"stage snapshot {plan.entry['name']} beside {plan.brain} (copy, sha256 while copying)",
            f"keep the replaced brain as snapshot {kept} (kind pre-restore)",
            f"replace {plan.brain} with snapshot {plan.entry['name']} (rename of the staged copy)",
        ]
    )
    return dict(
        name=kept,
        path=plan.store.data_path(kept),
        sha256=None,
        raw_copy=journal_mode_in_header(plan.brain) is None,
        retain_until=retain_until(utc_now(), retain_days),
    )


def restore_data_at_risk(entry: dict, previous: dict | None, brain_path: str, warnings: list) -> dict | None:
    """{table: rows} the restore of `entry` takes away: rows written between the snapshot and the restore.

    Counted read-only in the kept replaced brain (`previous`; before it is kept, in check mode, the brain itself)
    against the snapshot. None when nothing was replaced, or the replaced brain cannot be counted.
    """
    if previous is None:
        return None
    if previous["raw_copy"]:
        warnings.append(
            "data_at_risk is unknown: the replaced brain was kept as a raw copy; its rows cannot be counted."
        )
        return None
    bad_window = previous["path"] if os.path.isfile(previous["path"]) else brain_path
    counts = []
    path = entry["path"]
    try:
        for path in (entry["path"], bad_window):
            with reading(path, predict_only=True) as conn:
                counts.append(table_row_counts(conn))
    except (BrainError, NotFoundError, sqlite3.DatabaseError) as exc:
        warnings.append(f"data_at_risk is unknown: could not count the rows of {path}: {getattr(exc, 'msg', exc)}")
        return None
    return data_at_risk(counts[0], counts[1])
