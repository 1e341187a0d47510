# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Where an Engine's brain is, and how to read it safely (paired with doc_fragments/_brain.py).

Everything here reads; nothing here writes to a brain.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sqlite3
from dataclasses import asdict, dataclass, field
from urllib.parse import quote

from ansible_collections.september.engine.plugins.module_utils._docker import (
    DockerException,
    NotFound,
    docker_argument_spec,
    get_container,
    image_version,
)
from ansible_collections.september.engine.plugins.module_utils._errors import (
    BrainError,
    NotFoundError,
    OptionsError,
)
from ansible_collections.september.engine.plugins.module_utils._fileops import hand_to_owner_of, sha256_file
from ansible_collections.september.engine.plugins.module_utils._identity import identity_from_mount
from ansible_collections.september.engine.plugins.module_utils._lock import lock_argument_spec

SQLITE_HEADER = b"SQLite format 3\x00"
LOCATION_OPTIONS = ("container", "volume", "path")
# Side files of a database beside it: a write-ahead log, or a rollback journal.
SIDE_SUFFIXES = ("-wal", "-journal")
# Header bytes that change without a change of content: journal mode (18-19), file change counter
# (24-27), version-valid-for and the writing library's version (92-99).
MUTABLE_HEADER_RANGES = ((18, 20), (24, 28), (92, 100))


def brain_argument_spec() -> dict:
    """Options of doc_fragments/_brain.py (use with BRAIN_MUTUALLY_EXCLUSIVE / BRAIN_REQUIRED_ONE_OF)."""
    return dict(
        container=dict(type="str"),
        volume=dict(type="str"),
        path=dict(type="path"),
        brain_file=dict(type="str", default="brain.sqlite"),
        data_dir=dict(type="str", default="/data"),
    )


BRAIN_MUTUALLY_EXCLUSIVE = [LOCATION_OPTIONS]
BRAIN_REQUIRED_ONE_OF = [LOCATION_OPTIONS]


def migrations_argument_spec() -> dict:
    """Options of doc_fragments/_brain.py MIGRATIONS."""
    return dict(
        migrations_source=dict(type="str", choices=["table", "user_version"], default="table"),
        migrations_table=dict(type="str", default="engine_schema_migrations"),
        migrations_column=dict(type="str", default="version"),
    )


def migration_files_argument_spec() -> dict:
    """Options of doc_fragments/_brain.py MIGRATION_FILES."""
    return dict(
        migrations_dir=dict(type="str", default="/app/migrations"),
        version_label=dict(type="str", default="org.opencontainers.image.version"),
    )


def brain_module_specs(*, migrations: bool = True, lock: bool = True) -> list:
    """The shared options of a module that works on a brain it locates, for ``EngineModule(shared=...)``.

    Docker (doc fragment ``september.engine._docker``), the brain's location (``._brain``), with ``migrations``
    how it records them (``._brain.MIGRATIONS``), with ``lock`` the Engine's lock (``._lock``). Use with
    BRAIN_MUTUALLY_EXCLUSIVE (and BRAIN_REQUIRED_ONE_OF where a location is always needed).
    """
    specs = [docker_argument_spec(), brain_argument_spec()]
    if migrations:
        specs.append(migrations_argument_spec())
    if lock:
        specs.append(lock_argument_spec())
    return specs


@dataclass
class BrainLocation:
    """A brain on the Docker host, and what we know of the Engine that owns it."""

    path: str
    source: str
    container: str | None = None
    container_id: str | None = None
    container_running: bool = False
    image: str | None = None
    image_id: str | None = None
    volume: str | None = None
    mount_type: str | None = None
    mount_source: str | None = None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        data = asdict(self)
        data.pop("extra")
        return data


def _volume_mountpoint(client, name: str) -> str:
    try:
        return client.volumes.get(name).attrs["Mountpoint"]
    except NotFound as exc:
        raise NotFoundError(
            f"No Docker volume named '{name}' on this host: check the 'volume' option (docker volume ls lists them)."
        ) from exc


def locate_brain(params: dict, client=None) -> BrainLocation:
    """Resolve container / volume / path (exactly one) to the brain's path on the Docker host."""
    given = [name for name in LOCATION_OPTIONS if params.get(name)]
    if len(given) != 1:
        raise OptionsError(f"Locate the brain with exactly one of container, volume or path (got: {given or 'none'}).")
    brain_file = params.get("brain_file") or "brain.sqlite"
    if params.get("path"):
        return BrainLocation(path=os.path.abspath(params["path"]), source="path")
    if params.get("volume"):
        mountpoint = _volume_mountpoint(client, params["volume"])
        return BrainLocation(
            path=os.path.join(mountpoint, brain_file),
            source="volume",
            volume=params["volume"],
            mount_type="volume",
            mount_source=mountpoint,
        )
    container = get_container(client, params["container"])
    data_dir = (params.get("data_dir") or "/data").rstrip("/") or "/"
    for mount in container.attrs.get("Mounts") or []:
        if mount.get("Destination", "").rstrip("/") != data_dir:
            continue
        if mount.get("Type") == "volume":
            source_dir = _volume_mountpoint(client, mount["Name"])
        else:
            source_dir = mount["Source"]
        state = container.attrs.get("State") or {}
        return BrainLocation(
            path=os.path.join(source_dir, brain_file),
            source="container",
            container=container.name,
            container_id=container.id,
            container_running=bool(state.get("Running") or state.get("Restarting")),
            image=(container.attrs.get("Config") or {}).get("Image"),
            image_id=container.attrs.get("Image"),
            volume=mount.get("Name"),
            mount_type=mount.get("Type"),
            mount_source=source_dir,
        )
    raise NotFoundError(
        f"Container '{container.name}' has nothing mounted at {data_dir}: is it an Engine? "
        "Set data_dir if its brain lives elsewhere, or use volume or path."
    )


def running_containers_using(client, location: BrainLocation) -> list[str]:
    """Names of running (or restarting) containers that mount the brain's volume or folder."""
    if client is None:
        return []
    folder = os.path.dirname(location.path)
    names = []
    # ignore_removed: on a busy host a container listed a moment ago may be gone before it is inspected.
    listed = client.containers.list(filters={"status": "running"}, ignore_removed=True)
    listed += client.containers.list(filters={"status": "restarting"}, ignore_removed=True)
    for container in listed:
        for mount in container.attrs.get("Mounts") or []:
            if (location.volume and mount.get("Name") == location.volume) or mount.get("Source") == folder:
                names.append(container.name)
                break
    return sorted(set(names))


def containers_using(client, location: BrainLocation, include_stopped: bool = False) -> list:
    """Containers (objects, running first, then newest) that mount the brain's volume or folder."""
    if client is None:
        return []
    folder = os.path.dirname(location.path)
    found = []
    for container in client.containers.list(all=include_stopped, ignore_removed=True):
        for mount in container.attrs.get("Mounts") or []:
            if (location.volume and mount.get("Name") == location.volume) or mount.get("Source") == folder:
                found.append(container)
                break
    found.sort(key=lambda c: c.attrs.get("Created") or "", reverse=True)
    found.sort(key=lambda c: not (c.attrs.get("State") or {}).get("Running"))
    return found


def processes_holding(path: str) -> list[int]:
    """PIDs that have `path` (or its -wal / -shm) open, found through /proc, whatever their mount namespace."""
    targets = set()
    for candidate in (path, path + "-wal", path + "-shm"):
        try:
            stat = os.stat(candidate)
        except OSError:
            continue
        targets.add((stat.st_dev, stat.st_ino))
    if not targets or not os.path.isdir("/proc"):
        return []
    holders = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                stat = os.stat(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) in targets:
                holders.add(int(pid))
                break
    holders.discard(os.getpid())
    return sorted(holders)


def require_sqlite_file(path: str, what: str = "brain") -> None:
    """BrainError unless `path` is an existing SQLite database file (header check, reads 16 bytes)."""
    if not os.path.exists(path):
        raise NotFoundError(
            f"There is no {what} at {path}: check the location options (container, volume, path, brain_file)."
        )
    if not os.path.isfile(path):
        raise BrainError(f"The {what} path {path} is not a regular file.")
    with open(path, "rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise BrainError(f"The {what} at {path} is not an SQLite database (bad header): check the path, or restore it.")


def connect_readonly(path: str, immutable: bool = False) -> sqlite3.Connection:
    """A read-only connection: never creates, never writes the database (WAL readers may touch -shm).

    With `immutable`, SQLite takes no locks and creates no -wal/-shm at all: only for a brain that
    nothing writes (a stopped Engine's brain without a -wal), e.g. to predict in check mode.
    """
    require_sqlite_file(path)
    uri = f"file:{quote(path)}?mode=ro" + ("&immutable=1" if immutable else "")
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BrainError(f"Cannot read the SQLite database at {path}: {exc}. It may be corrupt.") from exc
    return conn


def integrity_problems(conn: sqlite3.Connection, mode: str = "quick") -> list[str]:
    """[] when the database passes PRAGMA quick_check (mode quick) or integrity_check (mode full)."""
    pragma = "integrity_check" if mode == "full" else "quick_check"
    try:
        rows = [row[0] for row in conn.execute(f"PRAGMA {pragma}")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    return [] if rows == ["ok"] else rows


def snapshot_brain_problem(path: str, most: int = 5) -> str | None:
    """What is wrong with a snapshot's brain at ``path`` (opened read only, immutable): ``cannot be read (...)`` or
    ``fails quick_check (...)`` (the first ``most`` problems); None when it passes quick_check."""
    try:
        conn = connect_readonly(path, immutable=True)
    except BrainError as exc:
        return f"cannot be read ({exc.msg})"
    try:
        problems = integrity_problems(conn, "quick")
    finally:
        conn.close()
    return f"fails quick_check ({'; '.join(problems[:most])})" if problems else None


def database_facts(conn: sqlite3.Connection) -> dict:
    """Page size, page count, journal mode and size of an open database."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    page_count = conn.execute("PRAGMA page_count").fetchone()[0]
    return dict(
        page_size=page_size,
        page_count=page_count,
        journal_mode=conn.execute("PRAGMA journal_mode").fetchone()[0],
        logical_size=page_size * page_count,
    )


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_NUMBER = re.compile(r"^(\d+)")


def migration_number(value) -> int | None:
    """The number a migration is known by: 6 for '0006', '0006_episode_tags', '0006_episode_tags.sql' or 6."""
    if isinstance(value, int):
        return value
    match = _NUMBER.match(os.path.basename(str(value)).strip())
    return int(match.group(1)) if match else None


def applied_migrations(conn: sqlite3.Connection, params: dict) -> list[str]:
    """The migrations the brain says were applied, oldest first, as recorded (or '0007' style for user_version)."""
    if params.get("migrations_source", "table") == "user_version":
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        return [f"{number:04d}" for number in range(1, version + 1)]
    table = params.get("migrations_table") or "engine_schema_migrations"
    column = params.get("migrations_column") or "version"
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    if not exists:
        raise BrainError(
            f"The brain has no table '{table}' recording applied migrations: set migrations_table and "
            "migrations_column (or migrations_source=user_version) to how this Engine records them."
        )
    columns = [row[1] for row in conn.execute(f"PRAGMA table_info({quote_identifier(table)})")]
    if column not in columns:  # else SQLite would read a double-quoted unknown column as a string literal
        raise BrainError(
            f"Table '{table}' of the brain has no column '{column}' (it has {', '.join(columns)}). "
            "Check migrations_column."
        )
    try:
        values = [row[0] for row in conn.execute(f"SELECT {quote_identifier(column)} FROM {quote_identifier(table)}")]
    except sqlite3.OperationalError as exc:
        raise BrainError(f"Cannot read {table}.{column} from the brain: {exc}. Check migrations_column.") from exc
    return sorted((str(value) for value in values), key=_migration_sort_key)


def _migration_sort_key(value: str) -> tuple:
    number = migration_number(value)
    return (number is None, number or 0, value)


class ReadonlyBrain:
    """``with ReadonlyBrain(path) as conn:`` a connect_readonly() connection, closed on exit.

    A read-only reader of a WAL brain whose Engine is stopped creates ``-wal`` / ``-shm`` beside it; on exit,
    the ones this reader created are handed to the brain file's owner (when we may), so that an Engine running
    as another user can still open its brain.
    """

    def __init__(self, path: str):
        self.path = path
        self.conn = None
        self._sides = {}

    def __enter__(self) -> sqlite3.Connection:
        self._sides = {side: os.path.exists(side) for side in (self.path + "-wal", self.path + "-shm")}
        self.conn = connect_readonly(self.path)
        return self.conn

    def __exit__(self, *exc_info) -> None:
        if self.conn is not None:
            self.conn.close()
        try:
            owner = os.stat(self.path)
        except OSError:
            return
        for side, existed in self._sides.items():
            if existed or not os.path.exists(side):
                continue
            try:
                os.chown(side, owner.st_uid, owner.st_gid)
            except OSError:
                pass


# ---------------------------------------------------------------- reading a brain that may be live


def journal_mode_in_header(path: str) -> str | None:
    """'wal' or 'delete' as the file header says (byte 18: 1 rollback journal, 2 WAL), None when unreadable."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(20)
    except OSError:
        return None
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
        hand_to_owner_of(path, [side for side in sides if side not in existed and os.path.exists(side)])


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


def content_sha256(path: str, chunk: int = 4 * 1024 * 1024) -> str:
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


# ---------------------------------------------------------------- the Engine behind a brain


def _volume_at(client, folder: str) -> str | None:
    """The Docker volume whose mountpoint is `folder`, None when there is none (or Docker cannot say)."""
    if client is None:
        return None
    try:
        volumes = client.volumes.list()
    except (DockerException, AttributeError):
        return None
    real = os.path.realpath(folder)
    for volume in volumes:
        mountpoint = (volume.attrs or {}).get("Mountpoint")
        if mountpoint and os.path.realpath(mountpoint) == real:
            return volume.name
    return None


def brain_identity(client, location: BrainLocation, container: str | None = None) -> dict:
    """The identity of the Engine whose brain this is (``_identity.identity_from_mount``): the storage of /data.

    Located by container or volume: its /data mount. Located by path: the mount of a container (running or not)
    whose mount source is the brain's folder, else the Docker volume whose mountpoint it is, else the folder as a
    bind mount. So the key is the same whichever way the same brain is located, and what engine_info returns.
    `container` names the Engine's container when the location does not (for the record).
    """
    if location.mount_type:
        mount = dict(type=location.mount_type, name=location.volume, source=location.mount_source)
        return identity_from_mount(mount, location.container or container)
    folder = os.path.dirname(location.path)
    try:
        found = containers_using(client, location, include_stopped=True)
    except DockerException:
        found = []
    for candidate in found:
        for mount in candidate.attrs.get("Mounts") or []:
            if mount.get("Source") == folder:
                return identity_from_mount(mount, candidate.name)
    volume = _volume_at(client, folder)
    if volume:
        return identity_from_mount(dict(type="volume", name=volume, source=folder), container)
    return identity_from_mount(dict(type="bind", source=folder), container)


def engine_behind(client, location: BrainLocation) -> dict | None:
    """The Engine container behind a brain: its name, image and version; None when no container mounts it."""
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


def container_pids(client, container: str | None) -> set:
    """Host PIDs of the processes of a running container (docker top); empty when it is not running."""
    if client is None or not container:
        return set()
    try:
        top = client.containers.get(container).top()
    except DockerException:
        return set()
    titles = top.get("Titles") or []
    if "PID" not in titles:
        return set()
    column = titles.index("PID")
    return {int(row[column]) for row in top.get("Processes") or [] if str(row[column]).isdigit()}


def holders(client, location: BrainLocation, engine_container: str | None = None,
            engine_may_run: bool = False) -> list[str]:
    """Why the brain cannot be replaced now ([] when nothing holds it), asked of Docker and /proc right now.

    `engine_container` is the Engine's own container (default: the one the brain was located through). With
    `engine_may_run`, that container running (and its processes holding the brain) is not a reason: the caller
    stops it before the brain is replaced. Any other running container that mounts the brain's volume or folder
    (a sidecar), and any other process that holds the brain or its -wal / -shm open, is.
    """
    own = engine_container or location.container
    running = running_containers_using(client, location)
    own_running = own in running if client is not None else bool(own and location.container_running)
    reasons = []
    if own and own_running and not engine_may_run:
        reasons.append(f"container {own} is running")
    others = [name for name in running if name != own]
    if others:
        reasons.append(f"running container(s) {', '.join(others)} mount its folder")
    pids = set(processes_holding(location.path))
    if engine_may_run and own_running:
        pids -= container_pids(client, own)
    if pids:
        reasons.append(f"process(es) {', '.join(map(str, sorted(pids)))} hold it open")
    return reasons
