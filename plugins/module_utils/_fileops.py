# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""File plumbing for snapshots and restores: free space, one-pass copy and hash, clones, folder locks."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import os
import re
import threading

from ansible_collections.september.engine.plugins.module_utils._errors import InsufficientSpaceError

CHUNK = 4 * 1024 * 1024
# ioctl FICLONE (linux/fs.h: _IOW(0x94, 9, int)): share the extents of a file (XFS with reflink, Btrfs).
FICLONE = 0x40049409
CLONE_UNSUPPORTED = (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EBADF)
SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range():
    """libc's sync_file_range (Linux), or None where there is none."""
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_SYNC_FILE_RANGE = _load_sync_file_range()


def start_writeback(fd: int) -> None:
    """Start writing a file's dirty pages to disk without waiting (sync_file_range WRITE); no-op where missing.

    Keeps the dirty data of a large copy small, so that the copy's final fsync is short and the other writers
    of the file system (an Engine committing with synchronous=FULL) never wait behind gigabytes of writeback.
    """
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, 0, 0, SYNC_FILE_RANGE_WRITE)


class WriteBehind:
    """``with WriteBehind(path):`` a thread that starts the writeback of `path` every `interval` seconds while
    something else (SQLite's backup) writes it; see start_writeback()."""

    def __init__(self, path: str, interval: float = 0.02):
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="write-behind", daemon=True)

    def _run(self) -> None:
        fd = None
        try:
            while not self._stop.wait(self.interval):
                if fd is None:
                    try:
                        fd = os.open(self.path, os.O_RDONLY)
                    except OSError:
                        continue
                start_writeback(fd)
        finally:
            if fd is not None:
                os.close(fd)

    def __enter__(self):
        if _SYNC_FILE_RANGE is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def remove(path: str) -> bool:
    """Unlink `path`; False when it did not exist."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def file_size(path: str) -> int:
    """Size of `path` in bytes, 0 when it does not exist."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def is_disk_full(exc: BaseException) -> bool:
    """Whether an OSError or an SQLite error says the file system is full (or the quota reached)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return "full" in str(exc).lower()


def existing_ancestor(path: str) -> str:
    """`path` or its nearest existing parent folder."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def mount_point(path: str) -> str | None:
    """The mount point `path` (or its nearest existing parent) is under, from /proc/self/mounts; None if unknown."""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as handle:
            points = [_unescape(line.split()[1]) for line in handle if len(line.split()) > 1]
    except OSError:
        return None
    real = os.path.realpath(existing_ancestor(path))
    under = [point for point in points if real == point or real.startswith(point.rstrip("/") + "/")]
    return max(under, key=len) if under else None


def same_filesystem(first: str, second: str) -> bool:
    """Whether a rename or a hard link works between two paths (or their nearest existing parents): one file
    system and one mount of it (a bind mount of the same disk is another mount: Linux refuses links across)."""
    if os.stat(existing_ancestor(first)).st_dev != os.stat(existing_ancestor(second)).st_dev:
        return False
    return mount_point(first) == mount_point(second)


def check_space(needs, margin: int) -> None:
    """InsufficientSpaceError unless each file system has room for what goes on it plus `margin`.

    `needs`: (folder, bytes, what) triples; folders on the same file system add up; 0 bytes need nothing.
    """
    by_device = {}
    for folder, size, what in needs:
        if not size:
            continue
        existing = existing_ancestor(folder)
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


def hand_to_owner_of(reference: str, created) -> None:
    """chown files we created beside a brain to the brain's owner (an Engine may run as another user)."""
    try:
        ref = os.stat(reference)
    except OSError:
        return
    for path in created:
        with contextlib.suppress(OSError):
            os.chown(path, ref.st_uid, ref.st_gid)


def fsync_path(path: str) -> None:
    """fsync a file or a folder (so that a rename into it is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: str, chunk: int = CHUNK) -> str:
    """SHA-256 of a file, read once in large blocks into one buffer."""
    digest = hashlib.sha256()
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            count = handle.readinto(buffer)
            if not count:
                break
            digest.update(view[:count])
    return digest.hexdigest()


def copy_with_sha256(source: str, target: str, chunk: int = CHUNK, mode: int = 0o600) -> tuple[str, int]:
    """Copy `source` to a new file `target` in one pass, hashing the bytes as they are written; fsync.

    Returns (sha256 hex, bytes). `target` must not exist (O_EXCL): a caller removes leftovers first.
    """
    digest = hashlib.sha256()
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    total = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with open(source, "rb", buffering=0) as reader:
            while True:
                count = reader.readinto(buffer)
                if not count:
                    break
                block = view[:count]
                written = 0
                while written < count:
                    written += os.write(fd, block[written:])
                digest.update(block)
                total += count
                start_writeback(fd)
        os.fsync(fd)
    finally:
        os.close(fd)
    return digest.hexdigest(), total


def clone_file(source: str, target: str, mode: int = 0o600) -> None:
    """Clone `source` into a new file `target` (ioctl FICLONE: the blocks are shared, copy on write).

    OSError with errno in CLONE_UNSUPPORTED when the file system cannot clone (ext4, tmpfs, two file systems);
    the target is removed then.
    """
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with open(source, "rb", buffering=0) as reader:
            fcntl.ioctl(fd, FICLONE, reader.fileno())
    except OSError:
        os.close(fd)
        remove(target)
        raise
    os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: str):
    """An exclusive lock (flock) on `folder`'s hidden `.lock` file, held for the with block.

    Serializes the short critical sections of several processes writing to one snapshot folder (choosing a name,
    committing a snapshot); never held while data is copied.
    """
    fd = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
