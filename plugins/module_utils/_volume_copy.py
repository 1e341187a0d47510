# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The built-in ``reflink`` volume snapshot provider: the folder behind an Engine's /data, copied whole.

Taking: every running container that mounts the volume is paused (``docker pause``: the cgroup freezer, so no
process writes while the files are copied; with ``quiesce=brain``, a read transaction on the brain pins it
instead), every file is cloned (ioctl FICLONE: XFS with reflink, Btrfs; milliseconds whatever the size, the blocks
shared copy-on-write) or, where the file system cannot clone, copied; then the containers go on. The copy is a
crash-consistent image of the whole volume, as a block-level snapshot would be. Afterwards, with the Engine
running again, the copy's brain is settled (its WAL or hot journal recovered into it, as SQLite would on its first
open), verified (quick_check), and every file hashed into the record.

Restoring (the Engine stopped): the snapshot's files are staged into a hidden folder inside the volume (cloned or
copied, the recorded owner, mode and time set), the volume's current content is kept as a ``pre-restore`` volume
snapshot, then the top-level entries are swapped by rename (the current ones into a hidden folder, the staged ones
into place), and the hidden folders removed. A failure puts the current content back.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import stat
import time
from urllib.parse import quote

from ansible_collections.september.engine.plugins.module_utils._brain import (
    BrainLocation,
    brain_migrations,
    database_facts,
    integrity_problems,
    processes_holding,
    running_containers_using,
)
from ansible_collections.september.engine.plugins.module_utils._docker import (
    DockerException,
    NotFound,
    RequestException,
)
from ansible_collections.september.engine.plugins.module_utils._errors import (
    BrainError,
    ContainerError,
    NotFoundError,
    SnapshotError,
    VolumeUnsupportedError,
)
from ansible_collections.september.engine.plugins.module_utils._fileops import (
    CHUNK,
    CLONE_UNSUPPORTED,
    clone_file,
    fsync_path,
    mount_point,
    remove,
    same_filesystem,
    sha256_file,
)

PREFIX = ".september-volume-"  # our hidden folders inside a volume: never part of a snapshot
STAGING = PREFIX + "restore.tmp"
REPLACED = PREFIX + "replaced.tmp"
SKIP_TOP = ("lost+found",)  # a file system's own folder when the volume is the root of one
CLONING_FILE_SYSTEMS = ("xfs", "btrfs", "bcachefs")
CLONE_CHOICES = ("auto", "always", "never")
QUIESCE_CHOICES = ("pause", "brain")


# ---------------------------------------------------------------- where the volume's content is


def filesystem_type(path: str) -> str | None:
    """The type of the file system `path` is on (xfs, ext4, btrfs ...), from /proc/self/mounts; None if unknown."""
    point = mount_point(path)
    try:
        with open("/proc/self/mounts", encoding="utf-8") as handle:
            found = [line.split() for line in handle]
    except OSError:
        return None
    types = [fields[2] for fields in found if len(fields) > 2 and fields[1].replace("\\040", " ") == point]
    return types[-1] if types else None


def _local_folder(name: str, attrs: dict) -> tuple[str | None, str | None]:
    """(host folder of a local volume whether a container mounts it or not, None) or (None, why there is none)."""
    options = attrs.get("Options") or {}
    if not options:
        return attrs.get("Mountpoint"), None
    if options.get("type") == "none" and "bind" in str(options.get("o") or "").split(",") and options.get("device"):
        return options["device"], None  # the Mountpoint is a bind mount of it only while a container uses the volume
    return None, (
        f"Volume {name} is a local volume that mounts {options.get('device') or 'a device'} (type "
        f"{options.get('type') or '?'}) only while a container uses it: its content is not a folder on this host "
        "while the Engine is stopped, so the reflink provider cannot copy or restore it. Snapshot the device with "
        "your platform's provider (engine_volume_snapshot_tasks, see docs/volume-snapshots.md), or use "
        "brain_snapshot. Nothing was changed."
    )


def describe_volume(client, location: BrainLocation) -> dict:
    """Where the content of the Engine's /data is on the Docker host, and what it is (never raises for a volume
    the reflink provider cannot copy: `problem` says why, `folder` is None).

    {folder, mount_type, volume, driver, options, mountpoint, filesystem, problem}. A provider's task files get
    these (the driver and its options name the device or cloud disk behind a volume).
    """
    facts = dict(
        mount_type=location.mount_type or "bind",
        volume=location.volume,
        driver=None,
        options={},
        mountpoint=location.mount_source or os.path.dirname(location.path),
        filesystem=None,
        problem=None,
    )
    folder = facts["mountpoint"]
    if location.mount_type == "volume":
        try:
            attrs = client.volumes.get(location.volume).attrs
        except NotFound as exc:
            raise NotFoundError(f"No Docker volume named {location.volume} on this host.") from exc
        facts.update(driver=attrs.get("Driver"), options=attrs.get("Options") or {}, mountpoint=attrs.get("Mountpoint"))
        if facts["driver"] != "local":
            folder, facts["problem"] = (
                None,
                (
                    f"Volume {location.volume} uses the volume driver {facts['driver']}: its content is not a folder "
                    "on this host, so the reflink provider cannot copy or restore it. Use your platform's provider "
                    "(engine_volume_snapshot_tasks, see docs/volume-snapshots.md). Nothing was changed."
                ),
            )
        else:
            folder, facts["problem"] = _local_folder(location.volume, attrs)
    if folder is not None and not os.path.isdir(folder):
        folder, facts["problem"] = None, f"The Engine's data folder {folder} does not exist on this host."
    facts.update(folder=folder, filesystem=filesystem_type(folder) if folder else None)
    return facts


def volume_facts(client, location: BrainLocation) -> dict:
    """describe_volume(), or VolumeUnsupportedError when the content is not a folder of this host."""
    facts = describe_volume(client, location)
    if facts["problem"]:
        raise VolumeUnsupportedError(facts["problem"], volume=location.volume)
    return facts


def predict_method(source: str, target: str, clone: str) -> str:
    """reflink or copy: what a snapshot from `source` into `target` will do (both on a cloning file system)."""
    if clone == "never":
        return "copy"
    if same_filesystem(source, target) and filesystem_type(source) in CLONING_FILE_SYSTEMS:
        return "reflink"
    return "copy"


# ---------------------------------------------------------------- the tree


def _skipped(top: bool, entry: os.DirEntry, names: set) -> bool:
    if top and (entry.name.startswith(PREFIX) or entry.name in SKIP_TOP):
        return True
    # SQLite's shared-memory index beside a database (rebuilt on open), and an empty WAL or journal (nothing in it):
    # never part of a snapshot, never a difference between a volume and its snapshot.
    if entry.name.endswith("-shm") and entry.name[:-4] in names:
        return True
    for suffix in ("-wal", "-journal"):
        if entry.name.endswith(suffix) and entry.name[: -len(suffix)] in names:
            return entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_size == 0
    return False


def list_tree(folder: str, warnings: list, relative: str = "") -> list[dict]:
    """The entries under `folder` (folders before their content, sorted): path (relative), kind (file, dir,
    symlink), size, mode, uid, gid, mtime_ns, target (symlinks). Sockets, pipes and devices are skipped (warned)."""
    items = []
    base = os.path.join(folder, relative) if relative else folder
    with os.scandir(base) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    names = {entry.name for entry in entries}
    for entry in entries:
        if _skipped(not relative, entry, names):
            continue
        path = f"{relative}/{entry.name}" if relative else entry.name
        info = entry.stat(follow_symlinks=False)
        item = dict(
            path=path,
            size=0,
            mode=stat.S_IMODE(info.st_mode),
            uid=info.st_uid,
            gid=info.st_gid,
            mtime_ns=info.st_mtime_ns,
        )
        if entry.is_symlink():
            items.append(dict(item, kind="symlink", target=os.readlink(entry.path)))
        elif entry.is_dir(follow_symlinks=False):
            items.append(dict(item, kind="dir"))
            items.extend(list_tree(folder, warnings, path))
        elif entry.is_file(follow_symlinks=False):
            items.append(dict(item, kind="file", size=info.st_size))
        else:
            warnings.append(f"{entry.path} is not a file, folder or link (a socket, pipe or device): not copied.")
    return items


def tree_size(items) -> int:
    return sum(item["size"] for item in items if item["kind"] == "file")


def _plain_copy(source: str, target: str) -> str:
    """Copy a file (no fsync: the caller syncs once, later); returns its sha256."""
    digest = hashlib.sha256()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with open(source, "rb", buffering=0) as reader:
            while True:
                block = reader.read(CHUNK)
                if not block:
                    break
                view, written = memoryview(block), 0
                while written < len(block):
                    written += os.write(fd, view[written:])
                digest.update(block)
    finally:
        os.close(fd)
    return digest.hexdigest()


def copy_file(source: str, target: str, clone: str, hint: str | None = None) -> tuple[str, str | None]:
    """Clone `source` into the new file `target` where the file system can (and `clone` allows), else copy it.

    Returns (reflink | copy, sha256 of a copy or None for a clone). With clone=always, SnapshotError where the
    file system cannot clone. `hint`: copy at once without trying (an earlier file could not be cloned).
    """
    if clone != "never" and hint != "copy":
        try:
            clone_file(source, target)
            return "reflink", None
        except OSError as exc:
            if exc.errno not in CLONE_UNSUPPORTED:
                raise
            if clone == "always":
                raise SnapshotError(
                    f"clone=always: the file system cannot clone {source} into {os.path.dirname(target)} ({exc}): "
                    "clones need XFS with reflink or Btrfs, with the snapshot folder on the volume's file system. "
                    "Use clone=auto (copies where it cannot clone). Nothing was kept."
                ) from exc
    return "copy", _plain_copy(source, target)


def copy_tree(items, source: str, target: str, clone: str) -> dict:
    """Copy the entries `items` of `source` into the new folder `target` (folders 0700, files 0600).

    Returns {path: sha256 or None (a clone, hashed later)}, and the method used under the key None.
    """
    os.mkdir(target, 0o700)
    digests: dict = {}
    method = None
    for item in items:
        here, there = os.path.join(source, item["path"]), os.path.join(target, item["path"])
        if item["kind"] == "dir":
            os.mkdir(there, 0o700)
        elif item["kind"] == "symlink":
            os.symlink(item["target"], there)
        else:
            used, digest = copy_file(here, there, clone, hint=method)
            method = "copy" if "copy" in (method, used) else used
            digests[item["path"]] = digest
    digests[None] = method or "reflink"
    return digests


def sync_tree(folder: str) -> None:
    """fsync every file and folder under `folder`, and the folder itself."""
    for root, folders, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                fsync_path(path)
        for name in folders:
            fsync_path(os.path.join(root, name))
    fsync_path(folder)


def hash_files(items, folder: str, digests: dict) -> list[dict]:
    """The record's file list: every file of `items` with its sha256 (taken from `digests` or read now)."""
    files = []
    for item in items:
        if item["kind"] == "file":
            path = os.path.join(folder, item["path"])
            digest = digests.get(item["path"]) or sha256_file(path)
            files.append(dict(item, size=os.path.getsize(path), sha256=digest))
        else:
            files.append(item)
    return files


# ---------------------------------------------------------------- quiescing the Engine while it is copied


@contextlib.contextmanager
def paused(client, location: BrainLocation, actions: list, timing: dict):
    """Pause every running container that mounts the Engine's volume (a container someone else paused is left as
    it is), unpause them on the way out, whatever happened; timing["paused_seconds"] says for how long."""
    names = running_containers_using(client, location)
    frozen = []
    started = time.monotonic()
    try:
        for name in names:
            try:
                container = client.containers.get(name)
                if container.status == "running":
                    container.pause()
                    frozen.append(container)
            except (DockerException, RequestException) as exc:
                raise ContainerError(
                    f"Cannot pause container {name} for the volume snapshot ({exc}); nothing was kept."
                ) from exc
        yield [container.name for container in frozen]
    finally:
        timing["paused_seconds"] = round(time.monotonic() - started, 4)
        stuck = []
        for container in frozen:
            try:
                container.unpause()
            except (DockerException, RequestException) as exc:
                stuck.append(f"{container.name} ({exc})")
        if frozen:
            actions.append(f"paused {', '.join(c.name for c in frozen)} for {timing['paused_seconds']} s")
        if stuck:
            raise ContainerError(
                f"Container(s) {', '.join(stuck)} could not be unpaused and stay PAUSED: run "
                "docker unpause on them now."
            )


@contextlib.contextmanager
def brain_pinned(brain: str):
    """A read transaction on the brain for the with block: its database and WAL cannot lose what it sees."""
    if not os.path.isfile(brain):
        yield
        return
    try:
        conn = sqlite3.connect(f"file:{quote(brain)}?mode=ro", uri=True, timeout=30, isolation_level=None)
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BrainError(f"Cannot read the brain at {brain} ({exc}); nothing was kept.") from exc
    try:
        yield
    finally:
        with contextlib.suppress(sqlite3.DatabaseError):
            conn.execute("COMMIT")
        conn.close()


# ---------------------------------------------------------------- the copy's brain


def settle_brain(path: str, verify: str, migrations: dict, warnings: list) -> dict | None:
    """Recover the copied brain's WAL or hot journal into it (as SQLite would on its first open), verify it, and
    say what it is: {file, journal_mode, page_size, page_count, applied_migrations, verify}. None when there is
    no brain in the copy. BrainError when it cannot be read or fails verification (the Engine's brain is corrupt).
    """
    if not os.path.isfile(path):
        return None
    try:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, timeout=5, isolation_level=None)
    except sqlite3.DatabaseError as exc:
        raise BrainError(f"The copy of the brain cannot be opened ({exc}); nothing was kept.") from exc
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        problems = integrity_problems(conn, verify) if verify != "none" else []
        facts = database_facts(conn)
        applied = brain_migrations(conn, migrations, warnings)
    except sqlite3.DatabaseError as exc:
        problems, facts, applied = [str(exc)], {}, []
    finally:
        conn.close()
    for suffix in ("-wal", "-shm"):
        remove(path + suffix)
    if problems:
        check = "integrity_check" if verify == "full" else "quick_check"
        raise BrainError(
            f"The brain fails {check} ({'; '.join(problems[:5])}): it is corrupt, and no volume snapshot "
            "was kept. Restore it from an earlier snapshot."
        )
    return dict(
        file=os.path.basename(path),
        journal_mode=str(facts.get("journal_mode") or "").lower(),
        page_size=facts.get("page_size"),
        page_count=facts.get("page_count"),
        applied_migrations=applied,
        verify=dict(mode=verify, result="skipped" if verify == "none" else "ok"),
    )


# ---------------------------------------------------------------- restoring


def holders_of(client, location: BrainLocation, folder: str, brain_file: str) -> list[str]:
    """Why the volume's content cannot be replaced now ([] when nothing uses it)."""
    reasons = []
    running = running_containers_using(client, location)
    if running:
        reasons.append(f"running container(s) {', '.join(running)} mount it")
    pids = processes_holding(os.path.join(folder, brain_file))
    if pids:
        reasons.append(f"process(es) {', '.join(map(str, pids))} hold the brain open")
    return reasons


def files_problem(snapshot_dir: str, files) -> str | None:
    """None when the snapshot's files are all there with the sizes and sha256 of its record, else what is wrong."""
    if not os.path.isdir(snapshot_dir):
        return f"its folder {snapshot_dir} is missing"
    for item in files:
        path = os.path.join(snapshot_dir, item["path"])
        if item["kind"] == "dir" and not os.path.isdir(path):
            return f"{path} is missing"
        if item["kind"] == "symlink" and not os.path.islink(path):
            return f"{path} is missing"
        if item["kind"] == "file":
            if not os.path.isfile(path) or os.path.getsize(path) != item["size"]:
                return f"{path} is missing or not {item['size']} bytes"
            if sha256_file(path) != item["sha256"]:
                return f"{path} does not match its sha256 in the record"
    return None


def tree_matches(folder: str, files, warnings: list) -> bool:
    """Whether the volume already holds exactly the snapshot's files (names, sizes, then sha256)."""
    current = {item["path"]: item for item in list_tree(folder, warnings)}
    wanted = {item["path"]: item for item in files}
    if set(current) != set(wanted):
        return False
    for path, item in wanted.items():
        if item["kind"] != current[path]["kind"]:
            return False
        if item["kind"] == "file" and item["size"] != current[path]["size"]:
            return False
    return all(
        sha256_file(os.path.join(folder, path)) == item["sha256"]
        for path, item in wanted.items()
        if item["kind"] == "file"
    )


def _set_attributes(path: str, item: dict) -> None:
    os.lchown(path, item["uid"], item["gid"])
    if item["kind"] != "symlink":
        os.chmod(path, item["mode"])
        os.utime(path, ns=(item["mtime_ns"], item["mtime_ns"]))


def stage_tree(snapshot_dir: str, files, staging: str, clone: str) -> str:
    """The snapshot's files into the new folder `staging` with their recorded owner, mode and time; returns the
    method (reflink or copy). A copy that does not match its record's sha256 raises SnapshotError."""
    digests = copy_tree(files, snapshot_dir, staging, clone)
    for item in files:
        if item["kind"] == "file" and digests.get(item["path"]) not in (None, item["sha256"]):
            raise SnapshotError(
                f"The copy of {item['path']} does not match its sha256 in the record: the snapshot "
                "changed while it was restored. Nothing was changed."
            )
    for item in reversed(files):  # a folder's time after its content
        _set_attributes(os.path.join(staging, item["path"]), item)
    sync_tree(staging)
    return digests[None]


def top_level(folder: str) -> list[str]:
    return sorted(name for name in os.listdir(folder) if not name.startswith(PREFIX) and name not in SKIP_TOP)


def swap_in(folder: str, staging: str, actions: list) -> None:
    """Replace the top-level entries of `folder` with those of `staging`, by rename; on failure put them back."""
    replaced = os.path.join(folder, REPLACED)
    os.mkdir(replaced, 0o700)
    moved, installed = [], []
    try:
        for name in top_level(folder):
            os.rename(os.path.join(folder, name), os.path.join(replaced, name))
            moved.append(name)
        for name in sorted(os.listdir(staging)):
            os.rename(os.path.join(staging, name), os.path.join(folder, name))
            installed.append(name)
        fsync_path(folder)
    except OSError as exc:
        for name in installed:
            with contextlib.suppress(OSError):
                os.rename(os.path.join(folder, name), os.path.join(staging, name))
        for name in moved:
            with contextlib.suppress(OSError):
                os.rename(os.path.join(replaced, name), os.path.join(folder, name))
        raise SnapshotError(f"Cannot swap the volume's content ({exc}); what was there was put back.") from exc
    shutil.rmtree(replaced, ignore_errors=True)
    actions.append(f"swap the content of {folder} for the staged snapshot (rename of {len(installed)} entries)")
