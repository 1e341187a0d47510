# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Brain snapshots: take (SQLite online backup API), verify, list, prune, delete and restore.

A snapshot is a pair of files in a folder (`dest`) that holds one Engine's snapshots:
`<name>.sqlite`, a self-contained SQLite database (rollback-journal mode, no -wal needed), and
`<name>.json`, its manifest (format september.engine.snapshot/v1). Only pairs with a valid manifest
are ours: anything else in the folder is never touched. Files are 0600, the folder 0700.

Writes are all-or-nothing: a snapshot is built under a temporary name, verified, fsynced and renamed
into place; any failure removes the temporary files.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import sqlite3
import stat
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from ansible_collections.september.engine.plugins.module_utils._brain import (
    BrainLocation,
    applied_migrations,
    connect_readonly,
    containers_using,
    database_facts,
    fsync_path,
    integrity_problems,
    processes_holding,
    require_sqlite_file,
    running_containers_using,
    sha256_file,
)
from ansible_collections.september.engine.plugins.module_utils._docker import DockerException, image_version
from ansible_collections.september.engine.plugins.module_utils._errors import (
    BrainError,
    EngineBusyError,
    InsufficientSpaceError,
    NotFoundError,
    OptionsError,
    SnapshotError,
)
from ansible_collections.september.engine.plugins.module_utils._metrics import data_at_risk, table_row_counts

FORMAT = "september.engine.snapshot/v1"
COLLECTION_VERSION = "0.1.0"
DATA_SUFFIX = ".sqlite"
MANIFEST_SUFFIX = ".json"
# Side files of a database: a raw copy keeps them (as <name>.sqlite-wal ...), a restore removes them.
SIDE_SUFFIXES = ("-wal", "-journal")
JOURNAL_MODES = ("wal", "delete", "truncate", "persist")
# Header bytes that change without a change of content: journal mode (18-19), file change counter
# (24-27), version-valid-for and the writing library's version (92-99).
MUTABLE_HEADER_RANGES = ((18, 20), (24, 28), (92, 100))
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# datetime.UTC needs Python 3.11; managed nodes may run 3.9.
UTC = timezone.utc  # noqa: UP017
_OLDEST = datetime.min.replace(tzinfo=UTC)


# ---------------------------------------------------------------- names, times, pure helpers


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None, precise: bool = False) -> str | None:
    """ISO 8601 in UTC with a Z: to the second, or to the microsecond with `precise`."""
    if moment is None:
        return None
    text = moment.astimezone(UTC).isoformat(timespec="microseconds" if precise else "seconds")
    return text.replace("+00:00", "Z")


def parse_iso(value) -> datetime | None:
    """A timezone-aware datetime from an ISO 8601 text (Z allowed), or None when absent or unreadable."""
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def default_name(moment: datetime, suffix: str = "") -> str:
    return f"brain-{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}{suffix}"


def check_name(name: str, option: str = "name") -> str:
    """`name` as a snapshot name (a file name stem), or OptionsError."""
    if not _NAME.match(name or "") or name.endswith((DATA_SUFFIX, MANIFEST_SUFFIX)):
        raise OptionsError(
            f"{option}={name!r} is not a valid snapshot name: use 1-128 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit, without the {DATA_SUFFIX} or {MANIFEST_SUFFIX} suffix."
        )
    return name


def _newest_first_key(snapshot: dict):
    return (parse_iso(snapshot.get("created_at")) or _OLDEST, snapshot.get("name") or "")


def sort_newest_first(snapshots: list[dict]) -> list[dict]:
    return sorted(snapshots, key=_newest_first_key, reverse=True)


def select_prunable(snapshots, now: datetime, keep_last: int | None = None, keep_days: int | None = None,
                    protect=()) -> list[str]:
    """Names of the snapshots that retention removes, newest first (a pure function).

    The newest `keep_last` are kept, and so is any younger than `keep_days` days: when both are
    given, a snapshot survives if either keeps it. Never pruned: a snapshot whose retain_until is in
    the future (or unreadable), one without a readable created_at, and the names in `protect`.
    With neither keep_last nor keep_days, nothing is pruned.
    """
    if keep_last is None and keep_days is None:
        return []
    protect = set(protect)
    pruned = []
    for index, snapshot in enumerate(sort_newest_first(list(snapshots))):
        created = parse_iso(snapshot.get("created_at"))
        retain_until = snapshot.get("retain_until")
        if snapshot["name"] in protect or created is None:
            continue
        if retain_until and (parse_iso(retain_until) is None or parse_iso(retain_until) > now):
            continue
        if keep_last is not None and index < keep_last:
            continue
        if keep_days is not None and now - created < timedelta(days=keep_days):
            continue
        pruned.append(snapshot["name"])
    return pruned


def content_sha256(path: str, chunk: int = 1024 * 1024) -> str:
    """SHA-256 of a database file with the header bytes that change without a change of content zeroed.

    Two files with the same content_sha256 hold the same database, whatever their journal mode.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        header = bytearray(handle.read(100))
        for start, end in MUTABLE_HEADER_RANGES:
            if len(header) >= end:
                header[start:end] = bytes(end - start)
        digest.update(bytes(header))
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _existing_ancestor(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_space(needs, margin: int) -> None:
    """InsufficientSpaceError unless each file system has room for what goes on it plus `margin`.

    `needs`: (folder, bytes, what) triples; folders on the same file system add up.
    """
    by_device = {}
    for folder, size, what in needs:
        existing = _existing_ancestor(folder)
        fs = os.statvfs(existing)
        free = fs.f_bavail * fs.f_frsize
        entry = by_device.setdefault(os.stat(existing).st_dev, {"free": free, "size": 0, "parts": [], "folder": folder})
        entry["size"] += size
        entry["parts"].append(f"{what} {size} bytes")
    for entry in by_device.values():
        needed = entry["size"] + margin
        if needed > entry["free"]:
            raise InsufficientSpaceError(
                f"Not enough free space on the file system of {entry['folder']}: needs {needed} bytes "
                f"({', '.join(entry['parts'])}, margin min_free_bytes {margin} bytes) but only {entry['free']} bytes "
                "are free. Nothing was written. Free some space, choose another dest, or lower min_free_bytes.",
                needed=needed,
                free=entry["free"],
            )


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return "full" in str(exc).lower()


def _remove(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def _hand_to_owner_of(reference: str, created: list[str]) -> None:
    """chown files we created beside a brain to the brain's owner (an Engine may run as another user)."""
    try:
        ref = os.stat(reference)
    except OSError:
        return
    for path in created:
        with contextlib.suppress(OSError):
            os.chown(path, ref.st_uid, ref.st_gid)


def journal_mode_in_header(path: str) -> str | None:
    """'wal' or 'delete' as the file header says (byte 18: 1 rollback journal, 2 WAL)."""
    with open(path, "rb") as handle:
        header = handle.read(20)
    if len(header) < 20:
        return None
    return {1: "delete", 2: "wal"}.get(header[18])


@contextlib.contextmanager
def reading(path: str, predict_only: bool = False):
    """A connection that only reads a brain (BrainError when unreadable), closed on exit; leaves no side files.

    A WAL brain at rest (a stopped Engine's: no -wal, no -journal) is opened immutable in check mode
    (`predict_only`: SQLite creates nothing at all), otherwise read-write with query_only set, so that SQLite,
    as the last connection, removes the -wal and -shm it created when it closes (a read-only connection would
    leave them behind, owned by us). A live brain is opened read-only; side files it creates are handed to the
    brain's owner.
    """
    require_sqlite_file(path)
    sides = [path + "-wal", path + "-shm"]
    existed = [side for side in sides if os.path.exists(side)]
    at_rest = journal_mode_in_header(path) == "wal" and not any(
        os.path.exists(path + suffix) for suffix in SIDE_SUFFIXES
    )
    if at_rest and predict_only:
        conn = connect_readonly(path, immutable=True)
    elif at_rest:
        conn = _connect_query_only(path)
    else:
        conn = connect_readonly(path)
    try:
        yield conn
    finally:
        conn.close()
        _hand_to_owner_of(path, [side for side in sides if side not in existed and os.path.exists(side)])


def _connect_query_only(path: str) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, timeout=30, isolation_level=None)
    except sqlite3.OperationalError:
        return connect_readonly(path)  # e.g. a write-protected brain
    try:
        conn.execute("PRAGMA query_only=1")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise BrainError(f"Cannot read the SQLite database at {path}: {exc}. It may be corrupt.") from exc
    return conn


def brain_migrations(conn: sqlite3.Connection, params: dict, warnings: list) -> list[str]:
    """Applied migrations as configured; [] and a warning when the brain does not record them that way."""
    try:
        return applied_migrations(conn, params)
    except BrainError as exc:
        warnings.append(f"applied_migrations recorded as []: {exc.msg}")
        return []


def brain_state(path: str, params: dict) -> dict:
    """The brain as a diff shows it: path, sha256 and applied migrations (None where unknown); reads only."""
    if not os.path.isfile(path):
        return dict(path=path, sha256=None, applied_migrations=None)
    try:
        with reading(path, predict_only=True) as conn:
            applied = brain_migrations(conn, params, [])
    except BrainError:
        applied = None
    return dict(path=path, sha256=sha256_file(path), applied_migrations=applied)


def diff_after(state: str, before: dict, result: dict) -> dict:
    """The diff's after state from its before state and what the module did (or would do, in check mode)."""
    if not result["changed"]:
        return before
    after = dict(before)
    names = set(before["snapshots"]) - set(result["pruned"])
    if state == "absent":
        names.discard(result["snapshot"]["name"])
    elif state == "present":
        names.add(result["snapshot"]["name"])
    elif state == "restored":
        names.update([result["previous_brain"]["name"]] if result["previous_brain"] else [])
        snapshot = result["snapshot"]
        after["brain"] = dict(path=before["brain"]["path"], sha256=snapshot["sha256"],
                              applied_migrations=snapshot["manifest"].get("applied_migrations"))
    after["snapshots"] = sorted(names)
    return after


def engine_info(client, location: BrainLocation) -> dict | None:
    """The Engine behind a brain: its container and image, or None when no container mounts it."""
    if location.container:
        name, image_ref, image_id = location.container, location.image, location.image_id
    else:
        try:
            found = containers_using(client, location, include_stopped=True)
        except DockerException:
            found = []
        if not found:
            return None
        attrs = found[0].attrs
        name, image_ref, image_id = found[0].name, (attrs.get("Config") or {}).get("Image"), attrs.get("Image")
    version = None
    if client is not None and image_id:
        try:
            version = image_version(client.images.get(image_id))
        except DockerException:
            version = None
    return dict(container=name, image=image_ref, image_id=image_id, version=version)


def busy_reasons(client, location: BrainLocation) -> list[str]:
    """Why the brain cannot be replaced now ([] when nothing uses it)."""
    reasons = []
    if location.container and location.container_running:
        reasons.append(f"container {location.container} is running")
    others = [name for name in running_containers_using(client, location) if name != location.container]
    if others:
        reasons.append(f"running container(s) {', '.join(others)} mount its folder")
    pids = processes_holding(location.path)
    if pids:
        reasons.append(f"process(es) {', '.join(map(str, pids))} hold it open")
    return reasons


# ---------------------------------------------------------------- the folder of snapshots


class SnapshotStore:
    """The snapshots of one Engine in one folder."""

    def __init__(self, dest: str):
        self.dest = os.path.abspath(dest)

    def data_path(self, name: str) -> str:
        return os.path.join(self.dest, name + DATA_SUFFIX)

    def manifest_path(self, name: str) -> str:
        return os.path.join(self.dest, name + MANIFEST_SUFFIX)

    def _temp(self, name: str, suffix: str) -> str:
        return os.path.join(self.dest, f".{name}{suffix}.tmp")

    # ---- reading

    def _load_manifest(self, name: str) -> dict | None:
        """The manifest of `name` if it is one of ours, else None."""
        try:
            with open(self.manifest_path(name), encoding="utf-8") as handle:
                manifest = json.load(handle)
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("name") != name:
            return None
        return manifest

    def _entry(self, name: str, manifest: dict) -> dict:
        data = self.data_path(name)
        return dict(
            name=name,
            path=data,
            manifest_path=self.manifest_path(name),
            size=os.path.getsize(data) if os.path.isfile(data) else None,
            sha256=manifest.get("sha256"),
            created_at=manifest.get("created_at"),
            retain_until=manifest.get("retain_until"),
            reason=manifest.get("reason"),
            raw_copy=bool(manifest.get("raw_copy")),
            manifest=manifest,
        )

    def list(self) -> list[dict]:
        """Every snapshot with a valid manifest, newest first (other files are ignored)."""
        if not os.path.isdir(self.dest):
            return []
        entries = []
        for file_name in os.listdir(self.dest):
            if file_name.startswith(".") or not file_name.endswith(MANIFEST_SUFFIX):
                continue
            name = file_name[: -len(MANIFEST_SUFFIX)]
            manifest = self._load_manifest(name)
            if manifest is not None:
                entries.append(self._entry(name, manifest))
        return sort_newest_first(entries)

    def names(self) -> list[str]:
        return sorted(entry["name"] for entry in self.list())

    def get(self, name: str) -> dict | None:
        """The snapshot `name`, None when there is none; SnapshotError when its files are not a valid pair."""
        manifest = self._load_manifest(name)
        if manifest is not None:
            return self._entry(name, manifest)
        if os.path.exists(self.manifest_path(name)) or os.path.exists(self.data_path(name)):
            raise SnapshotError(
                f"{self.data_path(name)} / {self.manifest_path(name)} exist but are not a snapshot with a valid "
                "manifest (an interrupted or foreign file?): they are left as they are. Remove them, or choose "
                "another name."
            )
        return None

    @staticmethod
    def checksum_problem(entry: dict) -> str | None:
        """None when the snapshot's files match the sha256 in its manifest, else what is wrong."""
        manifest = entry["manifest"]
        if entry["size"] is None:
            return f"its data file {entry['path']} is missing"
        if manifest.get("size") is not None and entry["size"] != manifest["size"]:
            return f"{entry['path']} is {entry['size']} bytes, the manifest says {manifest['size']}"
        actual = sha256_file(entry["path"])
        if actual != manifest.get("sha256"):
            return f"{entry['path']} has sha256 {actual}, the manifest says {manifest.get('sha256')}"
        for side in manifest.get("side_files") or []:
            path = os.path.join(os.path.dirname(entry["path"]), side["file"])
            if not os.path.isfile(path) or sha256_file(path) != side["sha256"]:
                return f"{path} is missing or does not match its sha256 in the manifest"
        return None

    # ---- writing

    def ensure_dest(self, check_mode: bool, actions: list) -> str | None:
        """Create the folder (0700) or make it 0700; returns the topmost folder it created (None: none)."""
        if not os.path.isdir(self.dest):
            if os.path.exists(self.dest):
                raise OptionsError(f"dest {self.dest} exists and is not a folder: choose another dest.")
            actions.append(f"create folder {self.dest} (mode 0700)")
            top = self.dest
            while not os.path.exists(os.path.dirname(top)):
                top = os.path.dirname(top)
            if not check_mode:
                os.makedirs(self.dest, mode=0o700)
                os.chmod(self.dest, 0o700)
                fsync_path(os.path.dirname(top))
            return top
        if stat.S_IMODE(os.stat(self.dest).st_mode) != 0o700:
            actions.append(f"set mode 0700 on {self.dest}")
            if not check_mode:
                os.chmod(self.dest, 0o700)
        return None

    def _undo_dest(self, top: str | None) -> None:
        """Remove the (still empty) folders ensure_dest created, after a failure."""
        folder = self.dest
        while top:
            try:
                os.rmdir(folder)
            except OSError:
                return
            if folder == top:
                return
            folder = os.path.dirname(folder)

    def _new_temp(self, path: str) -> None:
        """Create `path` empty and 0600; a leftover that no process holds is removed first."""
        if os.path.exists(path):
            if processes_holding(path):
                raise SnapshotError(f"{path} is in use: another snapshot of this name is being written right now.")
            _remove(path)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.chmod(path, 0o600)

    def _write_manifest_temp(self, name: str, manifest: dict) -> str:
        temp = self._temp(name, MANIFEST_SUFFIX)
        self._new_temp(temp)
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        return temp

    def _cleanup(self, name: str) -> None:
        data_temp = self._temp(name, DATA_SUFFIX)
        for path in (data_temp, data_temp + "-journal", data_temp + "-wal", data_temp + "-shm",
                     self._temp(name, MANIFEST_SUFFIX)):
            _remove(path)
        for suffix in SIDE_SUFFIXES:
            _remove(self._temp(name, DATA_SUFFIX + suffix))

    def take(self, brain_path: str, name: str, *, verify: str, fields: dict, migrations: dict,
             min_free_bytes: int, warnings: list, actions: list, check_mode: bool = False,
             retain_days: int | None = None) -> dict:
        """A consistent snapshot of the (possibly live) brain through the online backup API, in one step.

        BrainError when the brain cannot be read or fails verification (the brain is corrupt),
        InsufficientSpaceError / SnapshotError when the snapshot cannot be written. Nothing partial remains.
        In check mode: the same checks (read-only), and the snapshot it would take.
        """
        data_temp = self._temp(name, DATA_SUFFIX)
        with reading(brain_path, predict_only=check_mode) as source:
            facts = database_facts(source)
            wal = file_size(brain_path + "-wal")
            check_space([(self.dest, facts["logical_size"] + wal, f"brain {facts['logical_size']} + WAL {wal}")],
                        min_free_bytes)
            planned = []
            created = self.ensure_dest(check_mode, planned)
            planned.append(f"snapshot {brain_path} to {self.data_path(name)} (online backup API, verify {verify})")
            if check_mode:
                problems = integrity_problems(source, verify) if verify != "none" else []
                if problems:
                    raise _corrupt(brain_path, verify, problems)
                actions.extend(planned)
                return dict(name=name, path=self.data_path(name), manifest_path=self.manifest_path(name),
                            size=facts["logical_size"], sha256=None, created_at=iso(utc_now()),
                            retain_until=_retain_until(utc_now(), retain_days), reason=fields.get("reason"),
                            raw_copy=False, manifest=None)
            try:
                self._new_temp(data_temp)
                copy = sqlite3.connect(data_temp, isolation_level=None)
                try:
                    started = utc_now()
                    try:
                        source.backup(copy)  # pages=-1: one step, one read transaction, a consistent copy
                    except sqlite3.DatabaseError as exc:
                        if _is_disk_full(exc):
                            raise InsufficientSpaceError(
                                f"The file system of {self.dest} filled up while writing the snapshot ({exc}); "
                                "nothing was kept. Free some space or choose another dest."
                            ) from exc
                        raise BrainError(
                            f"Cannot copy the brain at {brain_path} ({exc}): it may be corrupt. "
                            "No snapshot was written."
                        ) from exc
                    finished = utc_now()
                    copy.execute("PRAGMA journal_mode=DELETE").fetchone()
                    problems = integrity_problems(copy, verify) if verify != "none" else []
                    if problems:
                        raise _corrupt(brain_path, verify, problems)
                    copy_facts = database_facts(copy)
                    applied = brain_migrations(copy, migrations, warnings)
                finally:
                    copy.close()
                os.chmod(data_temp, 0o600)
                fsync_path(data_temp)
                manifest = dict(
                    fields,
                    format=FORMAT,
                    name=name,
                    created_at=iso(started),
                    backup_started_at=iso(started, precise=True),
                    backup_finished_at=iso(finished, precise=True),
                    retain_until=_retain_until(started, retain_days),
                    size=os.path.getsize(data_temp),
                    sha256=sha256_file(data_temp),
                    page_size=copy_facts["page_size"],
                    page_count=copy_facts["page_count"],
                    journal_mode=str(facts["journal_mode"]).lower(),
                    applied_migrations=applied,
                    verify=dict(mode=verify, result="skipped" if verify == "none" else "ok"),
                    raw_copy=False,
                    collection_version=COLLECTION_VERSION,
                )
                self._commit(name, [(data_temp, self.data_path(name))], manifest)
                created = None
            except OSError as exc:
                if _is_disk_full(exc):
                    raise InsufficientSpaceError(
                        f"The file system of {self.dest} filled up while writing the snapshot ({exc}); nothing was "
                        "kept. Free some space or choose another dest."
                    ) from exc
                raise SnapshotError(f"Cannot write the snapshot {self.data_path(name)}: {exc}") from exc
            finally:
                self._cleanup(name)
                self._undo_dest(created)
        actions.extend(planned)
        return self._entry(name, manifest)

    def save_raw(self, brain_path: str, name: str, *, fields: dict, min_free_bytes: int, actions: list,
                 check_mode: bool = False, retain_days: int | None = None) -> dict:
        """A byte copy of a brain that cannot be read as a database (with its -wal / -journal), kept as evidence."""
        sources = [(brain_path, DATA_SUFFIX)] + [
            (brain_path + suffix, DATA_SUFFIX + suffix) for suffix in SIDE_SUFFIXES if file_size(brain_path + suffix)
        ]
        total = sum(file_size(source[0]) for source in sources)
        check_space([(self.dest, total, f"raw copy of the brain {total}")], min_free_bytes)
        planned = []
        created = self.ensure_dest(check_mode, planned)
        planned.append(f"copy the unreadable brain {brain_path} byte for byte to {self.data_path(name)}")
        if check_mode:
            actions.extend(planned)
            return dict(name=name, path=self.data_path(name), manifest_path=self.manifest_path(name),
                        size=file_size(brain_path), sha256=None, created_at=iso(utc_now()),
                        retain_until=_retain_until(utc_now(), retain_days), reason=fields.get("reason"),
                        raw_copy=True, manifest=None)
        renames, side_files = [], []
        started = utc_now()
        try:
            for path, suffix in sources:
                temp = self._temp(name, suffix)
                self._new_temp(temp)
                digest = _copy_file(path, temp)
                renames.append((temp, os.path.join(self.dest, name + suffix)))
                if suffix != DATA_SUFFIX:
                    side_files.append(dict(file=name + suffix, size=os.path.getsize(temp), sha256=digest))
            manifest = dict(
                fields,
                format=FORMAT,
                name=name,
                created_at=iso(started),
                retain_until=_retain_until(started, retain_days),
                size=os.path.getsize(renames[0][0]),
                sha256=sha256_file(renames[0][0]),
                page_size=None,
                page_count=None,
                journal_mode=journal_mode_in_header(brain_path) if os.path.getsize(brain_path) >= 20 else None,
                applied_migrations=None,
                verify=dict(mode="none", result="skipped"),
                raw_copy=True,
                side_files=side_files,
                collection_version=COLLECTION_VERSION,
            )
            self._commit(name, renames, manifest)
            created = None
        except OSError as exc:
            if _is_disk_full(exc):
                raise InsufficientSpaceError(
                    f"The file system of {self.dest} filled up ({exc}); nothing was kept."
                ) from exc
            raise SnapshotError(f"Cannot write the raw copy {self.data_path(name)}: {exc}") from exc
        finally:
            self._cleanup(name)
            self._undo_dest(created)
        actions.extend(planned)
        return self._entry(name, manifest)

    def existing(self, name: str) -> dict | None:
        """The snapshot `name` if it exists and matches its checksum; SnapshotError if it does not match."""
        entry = self.get(name)
        problem = entry and self.checksum_problem(entry)
        if problem:
            raise SnapshotError(
                f"Snapshot {name} already exists but fails its checksum ({problem}); it is kept as evidence and not "
                "overwritten. Remove it (state=absent) or choose another name."
            )
        return entry

    def prune(self, keep_last: int | None, keep_days: int | None, *, protect=(), taken: dict | None = None,
              check_mode: bool = False, actions: list) -> list[str]:
        """Apply retention to the folder (`taken`: a snapshot check mode only predicts, counted as the newest)."""
        snapshots = self.list()
        if taken is not None and taken["name"] not in [entry["name"] for entry in snapshots]:
            snapshots.append(taken)
        pruned = select_prunable(snapshots, utc_now(), keep_last, keep_days, protect)
        for name in pruned:
            actions.append(f"prune snapshot {name}")
            if not check_mode:
                self.delete(name)
        return pruned

    def remove(self, name: str, force: bool, check_mode: bool, actions: list) -> dict | None:
        """Remove the snapshot `name` (None when there is none); refuses one retained until later unless `force`."""
        entry = self.get(name)
        if entry is None:
            return None
        retain_until = parse_iso(entry["retain_until"])
        if retain_until and retain_until > utc_now() and not force:
            raise SnapshotError(
                f"Snapshot {name} is retained until {entry['retain_until']} and was not removed. Set force=true to "
                "remove it anyway."
            )
        actions.append(f"remove snapshot {name}")
        if not check_mode:
            self.delete(name)
        return entry

    def _commit(self, name: str, renames: list, manifest: dict) -> None:
        """Data files into place, then the manifest that makes them a snapshot; then fsync the folder."""
        manifest_temp = self._write_manifest_temp(name, manifest)
        for temp, final in renames:
            os.replace(temp, final)
        os.replace(manifest_temp, self.manifest_path(name))
        fsync_path(self.dest)

    def delete(self, name: str) -> None:
        """Remove a snapshot: data files first, the manifest last (an interruption leaves it listed)."""
        for suffix in (DATA_SUFFIX, *(DATA_SUFFIX + side for side in SIDE_SUFFIXES)):
            _remove(os.path.join(self.dest, name + suffix))
        _remove(self.manifest_path(name))
        fsync_path(self.dest)


def _retain_until(moment: datetime, days: int | None) -> str | None:
    return iso(moment + timedelta(days=days)) if days is not None else None


def _corrupt(brain_path: str, verify: str, problems: list) -> BrainError:
    check = "integrity_check" if verify == "full" else "quick_check"
    return BrainError(
        f"The brain at {brain_path} fails {check} ({'; '.join(problems[:5])}): it is corrupt, and no snapshot was "
        "kept. Restore it from an earlier snapshot (state=restored)."
    )


def _copy_file(source: str, target: str, chunk: int = 1024 * 1024) -> str:
    """Copy bytes, fsync the target, return the sha256 of what was written."""
    digest = hashlib.sha256()
    with open(source, "rb") as reader, open(target, "wb") as writer:
        for block in iter(lambda: reader.read(chunk), b""):
            writer.write(block)
            digest.update(block)
        writer.flush()
        os.fsync(writer.fileno())
    return digest.hexdigest()


# ---------------------------------------------------------------- restore


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


def verify_for_restore(entry: dict) -> None:
    """SnapshotError unless the snapshot matches its sha256 and passes integrity_check."""
    if entry["raw_copy"]:
        raise SnapshotError(
            f"Snapshot {entry['name']} is a raw copy of a brain that could not be read as a database (kept as "
            "evidence): it cannot be restored. Choose another snapshot."
        )
    problem = SnapshotStore.checksum_problem(entry)
    if problem:
        raise SnapshotError(
            f"Snapshot {entry['name']} fails its checksum: {problem}. It is damaged or was altered, and was not "
            "restored; nothing was changed. Choose another snapshot."
        )
    conn = connect_readonly(entry["path"])
    try:
        problems = integrity_problems(conn, "full")
    finally:
        conn.close()
    if problems:
        raise SnapshotError(
            f"Snapshot {entry['name']} fails integrity_check ({'; '.join(problems[:5])}); it was not restored and "
            "nothing was changed. Choose another snapshot."
        )


def brain_matches(brain_path: str, entry: dict) -> bool:
    """True when the brain already holds exactly the snapshot's database (and no pending WAL)."""
    if not os.path.isfile(brain_path) or file_size(brain_path + "-wal") or file_size(brain_path + "-journal"):
        return False
    return content_sha256(brain_path) == content_sha256(entry["path"])


def install_brain(entry: dict, brain_path: str, actions: list, warnings: list, checkpoint: bool) -> None:
    """Replace the brain with the snapshot atomically: temporary copy, fsync, rename; keep owner and mode."""
    folder = os.path.dirname(brain_path)
    temp = os.path.join(folder, f".{os.path.basename(brain_path)}.restore.tmp")
    if os.path.exists(brain_path):
        ref = os.stat(brain_path)
        owner, mode = (ref.st_uid, ref.st_gid), stat.S_IMODE(ref.st_mode)
    else:
        ref = os.stat(folder)
        owner, mode = (ref.st_uid, ref.st_gid), 0o600
    if checkpoint:
        try:
            conn = sqlite3.connect(brain_path, timeout=30, isolation_level=None)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                conn.close()
            actions.append(f"checkpoint the WAL of {brain_path}")
        except sqlite3.DatabaseError as exc:
            warnings.append(f"Could not checkpoint the replaced brain ({exc}); its saved copy holds its WAL content.")
    journal_mode = str(entry["manifest"].get("journal_mode") or "delete").lower()
    try:
        _remove(temp)
        digest = _copy_file(entry["path"], temp)
        if digest != entry["manifest"]["sha256"]:
            raise SnapshotError(
                f"The copy of snapshot {entry['name']} in {folder} does not match its sha256; nothing was changed."
            )
        if journal_mode == "wal":
            conn = sqlite3.connect(temp, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL").fetchone()
            finally:
                conn.close()
        os.chown(temp, *owner)
        os.chmod(temp, mode)
        fsync_path(temp)
        for suffix in ("-wal", "-shm", "-journal"):
            if _remove(brain_path + suffix):
                actions.append(f"remove stale {brain_path + suffix}")
        os.replace(temp, brain_path)
        fsync_path(folder)
    except OSError as exc:
        if _is_disk_full(exc):
            raise InsufficientSpaceError(f"The file system of {folder} filled up during the restore ({exc}); the brain "
                                         "was not replaced.") from exc
        raise SnapshotError(f"Cannot replace the brain at {brain_path}: {exc}. The brain was not replaced.") from exc
    finally:
        for path in (temp, temp + "-wal", temp + "-shm", temp + "-journal"):
            _remove(path)


def _previous_name(store: SnapshotStore, name: str | None) -> str:
    """The name under which a restore keeps the replaced brain: `name`, or a new pre-restore name."""
    if name:
        if store.get(name) is not None:
            raise SnapshotError(f"A snapshot named {name} already exists in {store.dest}: choose another name.")
        return name
    base = default_name(utc_now(), "-pre-restore")
    for number in range(1, 1000):
        candidate = base if number == 1 else f"{base}-{number}"
        if store.get(candidate) is None:
            return candidate
    raise SnapshotError(f"Too many snapshots named {base}-* in {store.dest}.")


def restore_brain(store: SnapshotStore, location: BrainLocation, entry: dict, *, busy: list, name: str | None,
                  reason: str | None, retain_days: int, fields: dict, options: dict, check_mode: bool,
                  actions: list, warnings: list) -> dict | None:
    """Put a verified snapshot back as the brain; returns where the replaced brain was kept (None: no brain).

    Refuses (EngineBusyError) while anything uses the brain. Does nothing when the brain already holds the
    snapshot. The replaced brain is saved first, as a snapshot, or byte for byte when it cannot be read.
    """
    brain, folder = location.path, os.path.dirname(location.path)
    if not os.path.isdir(folder):
        raise NotFoundError(f"The brain's folder {folder} does not exist: check the location options.")
    if os.path.lexists(brain) and not os.path.isfile(brain):
        raise BrainError(f"The brain path {brain} is not a regular file: check the location options.")
    if busy:
        raise EngineBusyError(
            f"Refusing to restore over the brain at {brain}: it is in use ({'; '.join(busy)}). Stop the Engine first "
            "(docker stop --timeout 30 <container>), then run the restore again. Nothing was changed."
        )
    if brain_matches(brain, entry):
        return None
    current = sum(file_size(brain + suffix) for suffix in ("", "-wal", "-journal"))
    check_space([(store.dest, current, f"copy of the current brain {current}"),
                 (folder, entry["size"], f"restored brain {entry['size']}")], options["min_free_bytes"])
    previous = None
    if os.path.exists(brain):
        name = _previous_name(store, name)
        fields = dict(fields, reason=f"pre-restore: brain replaced by restore of {entry['name']}"
                      + (f": {reason}" if reason else ""))
        common = dict(fields=fields, min_free_bytes=options["min_free_bytes"], actions=actions,
                      check_mode=check_mode, retain_days=retain_days)
        try:
            previous = store.take(brain, name, verify="quick", migrations=options, warnings=warnings, **common)
        except BrainError as exc:
            warnings.append(f"The replaced brain cannot be read as a database ({exc.msg}): it is kept as a raw copy.")
            previous = store.save_raw(brain, name, **common)
    else:
        actions.append(f"no brain at {brain} (empty volume): nothing to keep before the restore")
    actions.append(f"replace {brain} with snapshot {entry['name']} (temporary copy, fsync, rename)")
    if not check_mode:
        install_brain(entry, brain, actions, warnings, checkpoint=previous is not None and not previous["raw_copy"])
    if previous is None:
        return None
    keys = ("name", "path", "sha256", "raw_copy", "retain_until")
    return {key: previous[key] for key in keys}


def restore_data_at_risk(entry: dict, previous: dict | None, brain_path: str, warnings: list) -> dict | None:
    """{table: rows} the restore of `entry` takes away: rows written between the snapshot and the restore.

    Counted read-only in the saved replaced brain (`previous`; before it is saved, in check mode, the brain
    itself) against the snapshot. None when nothing was replaced, or the replaced brain cannot be counted.
    """
    if previous is None:
        return None
    if previous["raw_copy"]:
        warnings.append("data_at_risk is unknown: the replaced brain was kept as a raw copy; its rows cannot be "
                        "counted.")
        return None
    bad_window = previous["path"] if os.path.isfile(previous["path"]) else brain_path
    counts = []
    try:
        for path in (entry["path"], bad_window):
            with reading(path, predict_only=True) as conn:
                counts.append(table_row_counts(conn))
    except (BrainError, NotFoundError, sqlite3.DatabaseError) as exc:
        warnings.append(f"data_at_risk is unknown: could not count the rows of {path}: {getattr(exc, 'msg', exc)}")
        return None
    return data_at_risk(counts[0], counts[1])
