# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Staging twins of Engines for the rollback drill (the Rollback runbook's "Practice rollback").

A twin is a new per-user container of the SAME image and configuration as a production Engine, on its Docker host,
with a brain that is a fresh online snapshot of the Engine's brain, in a named volume of its own
(``engine-drill-<id>``), its own name (``<container>--drill``) and a free loopback port. The drill upgrades the twin
to a broken release with the real upgrade role, lets the rollback bring it back, and checks that every row of the
pre-drill brain is still there. The production Engine is only read: one inspect and one online snapshot (SQLite's
backup API, the code every snapshot of the collection uses); it is never stopped, restarted or written to.

What a twin takes from the Engine's container, and what it does not (decided by pure functions, unit tested):

- the create request ``engine_container`` would use to recreate the container (``_container.create_request``: the
  creator's env, labels, command, restart policy, log config, resources, networks), on the same image;
- without Compose's ``com.docker.compose.*`` labels: a twin of a Compose-hosted Engine is a per-user container made
  from the Compose container's configuration (Compose must never take it for a container of its project);
- with the labels ``io.september.engine.drill=<run id>``, ``io.september.engine.drill-twin=<twin name>`` and
  ``io.september.engine.drill-of=<container>`` (the sweep finds every twin, and every container the drill's upgrade
  and rollback made of it, by them);
- ``/data`` from the twin's own volume; any other writable mount of the Engine read-only (the twin must never write
  into the Engine's storage); ``VolumesFrom`` dropped (it would share the Engine's volumes);
- one published port: the Engine's port ``8000/tcp`` on ``<bind address>:<free port>``; the Engine's other
  published ports are dropped (the twin gets no production traffic and takes no port the Engine may need again);
- on the Engine's networks, without its aliases and fixed addresses (nothing resolves the Engine's names to the
  twin, nothing clashes with its address). Network modes ``host`` and ``container:`` are refused.

Every state of the module lives here (``EngineTwin``): ``present`` (make the twin and wait until it is healthy),
``absent`` (remove one twin: its containers, its volume, its drill folder), ``swept`` (remove every twin a drill
left on the Docker host, by label), ``verified`` (the twin healthy on a version, with every row of its pre-drill
reference still in its brain).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import socket
import sqlite3
import stat
import time
from urllib.parse import quote

from ansible_collections.september.engine.plugins.module_utils._brain import (
    connect_readonly,
    locate_brain,
    quote_identifier,
    reading,
)
from ansible_collections.september.engine.plugins.module_utils._brain_rows import table_row_counts
from ansible_collections.september.engine.plugins.module_utils._container import (
    DockerActions,
    create_request,
    explain,
)
from ansible_collections.september.engine.plugins.module_utils._discovery import DRILL_LABEL
from ansible_collections.september.engine.plugins.module_utils._docker import (
    DockerException,
    NotFound,
    RequestException,
    image_version,
)
from ansible_collections.september.engine.plugins.module_utils._engine import resolve_engine, split_repository
from ansible_collections.september.engine.plugins.module_utils._engine_api import ENGINE_PORT
from ansible_collections.september.engine.plugins.module_utils._errors import (
    BrainError,
    ContainerError,
    EngineModuleError,
    NotFoundError,
    OptionsError,
    SnapshotError,
)
from ansible_collections.september.engine.plugins.module_utils._fileops import copy_with_sha256, fsync_path, remove
from ansible_collections.september.engine.plugins.module_utils._health import EngineHealth
from ansible_collections.september.engine.plugins.module_utils._snapshot_manager import (
    BrainSnapshot,
    snapshot_defaults,
)
from ansible_collections.september.engine.plugins.module_utils._timeutil import iso, utc_now

TWIN_LABEL = "io.september.engine.drill-twin"
OF_LABEL = "io.september.engine.drill-of"
#: Labels of Compose: a twin is a per-user container, never a container of the Engine's Compose project.
COMPOSE_LABEL_PREFIX = "com.docker.compose."
VOLUME_PREFIX = "engine-drill-"
#: The file that marks a folder as a drill's (nothing else is ever removed by the module).
MARKER = ".september-engine-drill"
RECORD = "twin.json"
BRAIN_FILE = "brain.sqlite"
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_VOLUME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
#: Docker's messages when a host port is taken (a race with another process between our check and the start).
PORT_CLASH = ("port is already allocated", "address already in use", "bind for")
PORT_TRIES = 5
#: How many missing keys of a table the verification names.
MISSING_SAMPLE = 10
COMPOSE_NOTE = ("made as a per-user container from the Compose container's configuration (its own name, volume and "
                "port; Compose's labels dropped, so the Compose project never sees it)")


# --------------------------------------------------------------------------- pure helpers (unit tested)


def check_run_id(run_id: str | None, option: str = "run_id") -> str:
    """`run_id` as a drill run id (a folder name and a label value), or OptionsError."""
    if not run_id or not RUN_ID_RE.match(str(run_id)):
        raise OptionsError(f"{option}={run_id!r} is not a drill run id: use 1-100 letters, digits, '.', '_' or '-', "
                           "starting with a letter or digit (e.g. drill-20260504T020000Z).")
    return str(run_id)


def twin_name_of(container: str, suffix: str = "--drill") -> str:
    """The twin's container name: the Engine's container name and the suffix."""
    return f"{container}{suffix}"


def volume_name_of(container: str) -> str:
    """The twin's volume: ``engine-drill-<id>``, the id being the Engine's container name (made fit for a name)."""
    ident = _VOLUME_UNSAFE.sub("-", container).strip("-.") or "engine"
    return f"{VOLUME_PREFIX}{ident}"


def drill_labels(run_id: str, twin: str, of: str) -> dict:
    """The labels every container and volume of a twin carries."""
    return {DRILL_LABEL: run_id, TWIN_LABEL: twin, OF_LABEL: of}


def _is_data_bind(bind: str, data_dir: str) -> bool:
    parts = bind.split(":")
    return len(parts) >= 2 and parts[1].rstrip("/") == data_dir


def _read_only_bind(bind: str) -> str:
    """A ``src:dst[:opts]`` bind made read-only (``rw`` replaced by ``ro``, ``ro`` added when absent)."""
    parts = bind.split(":")
    if len(parts) == 2:
        return f"{bind}:ro"
    options = [o for o in parts[2].split(",") if o and o != "rw"]
    if "ro" not in options:
        options.append("ro")
    return ":".join([*parts[:2], ",".join(options)])


def _twin_mounts(host: dict, volume: str, data_dir: str) -> list:
    """/data from the twin's own volume, the Engine's other writable mounts read-only (in place); their targets."""
    binds, read_only = [], []
    for bind in host.get("Binds") or []:
        if _is_data_bind(bind, data_dir):
            continue
        made = _read_only_bind(bind)
        if made != bind:
            read_only.append(bind.split(":")[1])
        binds.append(made)
    host["Binds"] = [*binds, f"{volume}:{data_dir}"]
    mounts = []
    for mount in host.get("Mounts") or []:
        if (mount.get("Target") or "").rstrip("/") == data_dir:
            continue
        kept = dict(mount)
        if not kept.get("ReadOnly") and kept.get("Type") in ("bind", "volume"):
            kept["ReadOnly"] = True
            read_only.append(kept.get("Target"))
        mounts.append(kept)
    host.pop("Mounts", None)
    if mounts:
        host["Mounts"] = mounts
    return read_only


def twin_request(body: dict, connect: dict, *, volume: str, port: int, labels: dict, bind_address: str = "127.0.0.1",
                 data_dir: str = "/data", engine_port: str = ENGINE_PORT) -> tuple[dict, dict, list]:
    """(create request, networks to connect, notes) of a twin, from the create request that would recreate the
    Engine's container (``_container.create_request``). Pure: the inputs are not changed.

    Raises OptionsError for a network mode a twin cannot share (``host``, ``container:<id>``).
    """
    body = copy.deepcopy(body)
    notes: list[str] = []
    data_dir = data_dir.rstrip("/") or "/"
    config_labels = {k: v for k, v in (body.get("Labels") or {}).items() if not k.startswith(COMPOSE_LABEL_PREFIX)}
    body["Labels"] = {**config_labels, **labels}
    host = body.setdefault("HostConfig", {})
    mode = host.get("NetworkMode") or "default"
    if mode == "host" or mode.startswith("container:"):
        raise OptionsError(
            f"The Engine's container runs with network mode {mode!r}: a twin would share its network stack and ports. "
            "Nothing was made; drill another Engine, or one that publishes its port on a network of its own."
        )
    read_only = _twin_mounts(host, volume, data_dir)
    if read_only:
        notes.append(f"the Engine's other mounts are read-only in the twin: {', '.join(sorted(read_only))}")
    if host.get("VolumesFrom"):
        notes.append(f"VolumesFrom {', '.join(host['VolumesFrom'])} dropped (it would share the Engine's volumes)")
    host.pop("VolumesFrom", None)
    # One published port: the Engine's, on a free loopback port.
    others = sorted(p for p in (host.get("PortBindings") or {}) if p != engine_port)
    if others:
        notes.append(f"the Engine's other published ports are not published by the twin: {', '.join(others)}")
    host["PortBindings"] = {engine_port: [{"HostIp": bind_address, "HostPort": str(port)}]}
    host["PublishAllPorts"] = False
    body["ExposedPorts"] = {**(body.get("ExposedPorts") or {}), engine_port: {}}
    # The Engine's networks, without its names and fixed addresses.
    endpoints = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    if endpoints:
        body["NetworkingConfig"] = {"EndpointsConfig": {n: _twin_endpoint(e) for n, e in endpoints.items()}}
    connect = {n: _twin_endpoint(e) for n, e in (connect or {}).items()}
    body.pop("MacAddress", None)
    return body, connect, notes


def _twin_endpoint(endpoint: dict | None) -> dict:
    """An endpoint of the Engine's without aliases (DNS names of the Engine) and fixed addresses."""
    return {k: v for k, v in (endpoint or {}).items() if k not in ("Aliases", "IPAMConfig", "MacAddress")}


def host_ports_in_use(containers_attrs: list) -> set:
    """Every host port a container publishes or is configured to publish (running or not)."""
    ports = set()
    for attrs in containers_attrs:
        sources = [((attrs.get("HostConfig") or {}).get("PortBindings") or {}),
                   ((attrs.get("NetworkSettings") or {}).get("Ports") or {})]
        for bindings in sources:
            for binding_list in bindings.values():
                for binding in binding_list or []:
                    text = str((binding or {}).get("HostPort") or "")
                    if text.isdigit():
                        ports.add(int(text))
    return ports


def free_port(used: set, bind_address: str = "127.0.0.1", tries: int = 50) -> int:
    """A port nothing listens on at `bind_address` (the kernel's choice) that no container publishes."""
    family = socket.AF_INET6 if ":" in bind_address else socket.AF_INET
    for _attempt in range(tries):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((bind_address, 0))
            port = sock.getsockname()[1]
        if port not in used:
            return port
    raise ContainerError(f"No free port found on {bind_address} after {tries} tries: the host is out of ports.")


def is_port_clash(message: str) -> bool:
    text = message.lower()
    return any(clash in text for clash in PORT_CLASH)


def key_columns(table_info: list, without_rowid: bool) -> list | None:
    """The columns that identify a row of a table (its primary key, in key order), None for "by rowid".

    `table_info` are the rows of ``PRAGMA table_info`` (cid, name, type, notnull, default, pk). A table without a
    declared primary key is compared by rowid; so is a rowid table whose key is one INTEGER column (that column is
    the rowid).
    """
    keyed = sorted((row[5], row[1]) for row in table_info if row[5])
    if not keyed:
        return None if not without_rowid else [row[1] for row in table_info]
    return [name for _position, name in keyed]


def missing_rows_sql(table: str, keys: list | None, reference: str = "ref", live: str = "main",
                     limit: int | None = None) -> str:
    """SELECT of the key (or rowid) of every row of `reference`.`table` that `live`.`table` does not hold."""
    quoted = quote_identifier(table)
    if keys is None:
        selected, match = "r.rowid", "m.rowid = r.rowid"
    else:
        cols = [quote_identifier(k) for k in keys]
        selected = ", ".join(f"r.{c}" for c in cols)
        match = " AND ".join(f"m.{c} IS r.{c}" for c in cols)
    sql = (f"SELECT {selected} FROM {reference}.{quoted} AS r "
           f"WHERE NOT EXISTS (SELECT 1 FROM {live}.{quoted} AS m WHERE {match})")
    return sql + (f" LIMIT {int(limit)}" if limit is not None else "")


def _tables(conn: sqlite3.Connection, schema: str) -> dict:
    """{table: (without_rowid, [table_info rows])} of the user tables of `schema`."""
    rows = conn.execute(
        f"SELECT name, sql FROM {schema}.sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
    ).fetchall()
    out = {}
    for name, sql in rows:
        info = conn.execute(f"PRAGMA {schema}.table_info({quote_identifier(name)})").fetchall()
        out[name] = ("WITHOUT ROWID" in (sql or "").upper(), info)
    return out


def rows_missing(conn: sqlite3.Connection, reference: str = "ref", live: str = "main") -> dict:
    """Per table of the `reference` schema, the rows the `live` schema no longer holds (by key or rowid).

    Returns ``{table: {"count": n, "by": "primary key (cols)" | "rowid", "sample": [...]} }`` for the tables that miss
    rows (a table the live brain lacks misses all of them; a key column it lacks is said in "by").
    """
    ref_tables = _tables(conn, reference)
    live_tables = _tables(conn, live)
    missing = {}
    for table, (without_rowid, info) in ref_tables.items():
        keys = key_columns(info, without_rowid)
        by = "rowid" if keys is None else f"primary key ({', '.join(keys)})"
        total = conn.execute(f"SELECT count(*) FROM {reference}.{quote_identifier(table)}").fetchone()[0]
        if table not in live_tables:
            if total:
                missing[table] = dict(count=total, by=by, sample=[], reason="the table is gone")
            continue
        live_columns = {row[1] for row in live_tables[table][1]}
        if keys is not None and not set(keys) <= live_columns:
            if total:
                gone = sorted(set(keys) - live_columns)
                missing[table] = dict(count=total, by=by, sample=[], reason=f"key column(s) gone: {', '.join(gone)}")
            continue
        if keys is None and live_tables[table][0]:
            if total:
                missing[table] = dict(count=total, by=by, sample=[], reason="the table has no rowid any more")
            continue
        count = conn.execute(f"SELECT count(*) FROM ({missing_rows_sql(table, keys, reference, live)})").fetchone()[0]
        if count:
            sample = conn.execute(missing_rows_sql(table, keys, reference, live, MISSING_SAMPLE)).fetchall()
            keys_of = [row[0] if len(row) == 1 else list(row) for row in sample]
            missing[table] = dict(count=count, by=by, sample=keys_of)
    return missing


def select_swept(containers: list, volumes: list, run_id: str | None = None, keep_run: str | None = None
                 ) -> tuple[list, list]:
    """(containers, volumes) a sweep removes: those with the drill label, of `run_id` (all runs when None),
    except `keep_run`'s. Each item is ``{"name": ..., "labels": {...}}``."""
    def chosen(item: dict) -> bool:
        run = (item.get("labels") or {}).get(DRILL_LABEL)
        if not run:
            return False
        if run_id is not None and run != run_id:
            return False
        return keep_run is None or run != keep_run
    return [c for c in containers if chosen(c)], [v for v in volumes if chosen(v)]


def is_marked(folder: str) -> dict | None:
    """The marker of a drill folder (its JSON), None when `folder` is not a drill's."""
    path = os.path.join(folder, MARKER)
    if os.path.islink(folder) or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# --------------------------------------------------------------------------- files


def _make_folder(path: str, marker: dict) -> None:
    os.makedirs(path, mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)
    _write_json(os.path.join(path, MARKER), marker)


def _write_json(path: str, data: dict) -> None:
    temp = path + ".tmp"
    remove(temp)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write("\n")
    os.replace(temp, path)


def _remove_folder(path: str, actions: list, check_mode: bool) -> bool:
    """Remove a drill folder (marked) and everything in it."""
    if is_marked(path) is None:
        return False
    actions.append(f"remove folder {path}")
    if not check_mode:
        shutil.rmtree(path)
    return True


def _set_journal_mode(path: str, mode: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA journal_mode={mode}").fetchone()
    finally:
        conn.close()


# --------------------------------------------------------------------------- the module's work


class EngineTwin(DockerActions):
    """engine_twin's work, state by state. Check mode plans the same actions and changes nothing."""

    def __init__(self, client, params: dict, check_mode: bool = False, warn=None):
        super().__init__(client, check_mode, warn)
        self.p = params
        self.timings: dict = {}
        self.state_dir = os.path.abspath(params["state_dir"])
        self.data_dir = (params.get("data_dir") or "/data").rstrip("/") or "/"
        self.notes: list[str] = []

    # ------------------------------------------------------------- docker helpers

    def _labelled(self, selector: str) -> tuple[list, list]:
        """(containers, volumes) carrying the label `selector` (``key`` or ``key=value``)."""
        try:
            containers = self.client.containers.list(all=True, filters={"label": selector}, ignore_removed=True)
            volumes = self.client.volumes.list(filters={"label": selector})
        except (DockerException, RequestException) as exc:
            raise ContainerError(f"Could not list the drill's containers and volumes: {explain(exc)}") from exc
        return containers, volumes

    def _remove_containers(self, containers: list, removed: dict) -> None:
        for container in sorted(containers, key=lambda c: c.name):
            self._do(f"remove container {container.name}", self.api.remove_container, container.id, v=False,
                     force=True)
            removed["containers"].append(container.name)

    def _remove_volumes(self, volumes: list, removed: dict) -> None:
        for volume in sorted(volumes, key=lambda v: v.name):
            self._do(f"remove volume {volume.name}", self.api.remove_volume, volume.name, force=True)
            removed["volumes"].append(volume.name)

    # ------------------------------------------------------------- run

    def run(self) -> dict:
        state = self.p["state"]
        result = getattr(self, f"state_{state}")()
        result.update(changed=self.changed, actions=self.actions)
        return result

    # ------------------------------------------------------------- present

    def state_present(self) -> dict:
        p = self.p
        run_id = check_run_id(p["run_id"])
        engine = resolve_engine(self.client, p)
        if not engine.get("exists") or not engine.get("container_id"):
            raise NotFoundError(f"The Engine {p.get('inventory_name') or ''} has no container to make a twin of: "
                                "is it up? Nothing was made.")
        source = self.client.containers.get(engine["container_id"])
        name = p["twin_name"] or twin_name_of(source.name, p["twin_suffix"])
        existing = self._find(name)
        if existing is not None:
            return self._existing(existing, run_id, name)
        volume = volume_name_of(source.name)
        folder = os.path.join(self.state_dir, run_id, name)
        labels = drill_labels(run_id, name, source.name)
        planned = self._plan(source, engine, name, volume, folder, labels)
        if self.check_mode:
            self.actions.extend(planned["actions"])
            self.changed = True
            return dict(twin=planned["twin"])
        return dict(twin=self._make(source, engine, name, volume, folder, labels, run_id))

    def _existing(self, container, run_id: str, name: str) -> dict:
        run = (container.labels or {}).get(DRILL_LABEL)
        if run != run_id:
            raise OptionsError(
                f"A container named {name} is there already ({'left by drill ' + run if run else 'not a twin'}): "
                f"{'sweep the leftovers first (state=swept)' if run else 'choose another twin_name'}. Nothing was made."
            )
        record = self._record(run_id, name)
        if record is None:
            raise ContainerError(f"Twin {name} of this drill exists but its record {RECORD} is gone: remove it "
                                 "(state=absent) and make it again.")
        container.reload()
        if container.status != "running":
            self._do(f"start {name}", self.api.start, container.id)
        return dict(twin=record)

    def _record(self, run_id: str, name: str) -> dict | None:
        path = os.path.join(self.state_dir, run_id, name, RECORD)
        try:
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def _plan(self, source, engine: dict, name: str, volume: str, folder: str, labels: dict) -> dict:
        """What present would do, and the twin it would make (check mode returns it as is)."""
        snap = self._snapshot(source, folder, engine, check_mode=True) if self.check_mode else None
        actions = [
            f"snapshot the brain of {source.name} online into {folder}/reference",
            f"create volume {volume} and fill it with that snapshot",
            f"create container {name} from {self._image_ref(source)} (the configuration of {source.name}) with "
            f"{volume} at {self.data_dir} on {self.p['bind_address']}:<a free port>",
            f"start {name} and wait until it is healthy",
        ]
        twin = self._describe(None, source, engine, name, volume, folder, labels, port=None,
                              reference=(snap or {}).get("entry"), counts=None, notes=self._notes(engine))
        return dict(actions=actions, twin=twin)

    @staticmethod
    def _notes(engine: dict) -> list:
        return [COMPOSE_NOTE] if engine.get("deployment") == "compose" else []

    def _image_ref(self, source) -> str:
        """The image the Engine runs: its reference when that still names the same image, else the image id."""
        ref = (source.attrs.get("Config") or {}).get("Image") or ""
        image_id = source.attrs.get("Image")
        try:
            if ref and self.client.images.get(ref).id == image_id:
                return ref
        except NotFound:
            pass
        if not image_id:
            raise ContainerError(f"Cannot tell which image {source.name} runs: nothing was made.")
        self.warn(f"{source.name} runs {image_id}, which {ref or 'its reference'} no longer names: the twin runs that "
                  "image by id (set engine_image_repository for the drill's upgrade).")
        return image_id

    def _snapshot(self, source, folder: str, engine: dict, check_mode: bool = False) -> dict:
        """The online snapshot of the Engine's brain (the code every snapshot of the collection uses)."""
        params = dict(snapshot_defaults(), state="present", container=source.name,
                      dest=os.path.join(folder, "reference"), kind="manual",
                      name=f"pre-drill-{check_run_id(self.p['run_id'])}",
                      engine_name=self.p.get("inventory_name") or source.name,
                      reason=f"drill {self.p['run_id']}: the pre-drill reference of a staging twin of {source.name}",
                      verify=self.p["snapshot_verify"], data_dir=self.data_dir,
                      engine_key=(engine.get("identity") or {}).get("key"))
        started = time.monotonic()
        result = BrainSnapshot(params, check_mode, warn=self.warn, client=self.client).run()
        self.timings["snapshot_seconds"] = round(time.monotonic() - started, 3)
        location = locate_brain(dict(container=source.name, data_dir=self.data_dir), self.client)
        return dict(entry=result["snapshot"], location=location)

    def _make(self, source, engine: dict, name: str, volume: str, folder: str, labels: dict, run_id: str) -> dict:
        started = time.monotonic()
        image_ref = self._image_ref(source)
        made: dict = dict(containers=[], volume=None, folder=None)
        self.notes = self._notes(engine)
        try:
            if not os.path.isdir(self.state_dir):
                os.makedirs(self.state_dir, mode=0o700)
            run_folder = os.path.join(self.state_dir, run_id)
            _make_folder(run_folder, dict(run_id=run_id))
            _make_folder(folder, dict(run_id=run_id, twin=name))
            made["folder"] = folder
            snap = self._snapshot(source, folder, engine)
            entry = snap["entry"]
            counts = self._counts(entry["path"])
            made["volume"] = self._fill_volume(volume, labels, entry, snap["location"])
            container, port = self._create(source, image_ref, name, volume, labels, made)
            health = self._wait(name, port)
            twin = self._describe(container, source, engine, name, volume, folder, labels, port, entry, counts,
                                  self.notes)
            twin["health"] = health
            self.timings["total_seconds"] = round(time.monotonic() - started, 3)
            twin["timings"] = dict(self.timings)
            _write_json(os.path.join(folder, RECORD), twin)
            return twin
        except (EngineModuleError, OSError, sqlite3.DatabaseError, DockerException, RequestException) as exc:
            self._undo(made, name)
            if isinstance(exc, EngineModuleError):
                raise
            raise ContainerError(f"Could not make the twin {name}: {explain(exc)}. What was made of it is removed, "
                                 "the Engine was not touched.") from exc

    def _counts(self, path: str) -> dict:
        conn = connect_readonly(path, immutable=True)
        try:
            return table_row_counts(conn)
        finally:
            conn.close()

    def _fill_volume(self, volume: str, labels: dict, entry: dict, location) -> str:
        """Create the twin's volume and put the snapshot in it as its brain (owner, mode, journal mode of the
        Engine's)."""
        started = time.monotonic()
        if self._volume_exists(volume):
            raise ContainerError(f"Volume {volume} exists already (left by an earlier drill?): sweep the leftovers "
                                 "first (state=swept). Nothing was made.")
        self._do(f"create volume {volume}", self.api.create_volume, name=volume, driver="local", labels=labels)
        mountpoint = self.client.volumes.get(volume).attrs["Mountpoint"]
        brain_ref = os.stat(location.path)
        folder_ref = os.stat(os.path.dirname(location.path))
        os.chown(mountpoint, folder_ref.st_uid, folder_ref.st_gid)
        os.chmod(mountpoint, stat.S_IMODE(folder_ref.st_mode))
        temp = os.path.join(mountpoint, f".{BRAIN_FILE}.drill.tmp")
        remove(temp)
        digest, _size = copy_with_sha256(entry["path"], temp)
        if digest != entry["sha256"]:
            raise SnapshotError(f"The copy of the pre-drill snapshot in {volume} has sha256 {digest}, the snapshot "
                                f"{entry['sha256']}: the disk or the snapshot is damaged. Nothing was kept.")
        if str(entry["manifest"].get("journal_mode") or "").lower() == "wal":
            _set_journal_mode(temp, "WAL")
        os.chown(temp, brain_ref.st_uid, brain_ref.st_gid)
        os.chmod(temp, stat.S_IMODE(brain_ref.st_mode))
        os.replace(temp, os.path.join(mountpoint, BRAIN_FILE))
        fsync_path(mountpoint)
        self.actions.append(f"fill volume {volume} with snapshot {entry['name']} (sha256 {entry['sha256'][:12]})")
        self.timings["volume_seconds"] = round(time.monotonic() - started, 3)
        return volume

    def _volume_exists(self, volume: str) -> bool:
        try:
            self.client.volumes.get(volume)
        except NotFound:
            return False
        return True

    def _create(self, source, image_ref: str, name: str, volume: str, labels: dict, made: dict):
        """Create, connect and start the twin on a free loopback port (another one when Docker says it is taken)."""
        started = time.monotonic()
        image = self.client.images.get(source.attrs["Image"])
        request, connect = create_request(source.attrs, (image.attrs or {}).get("Config"), image_ref)
        fixed = self.p.get("port")
        for attempt in range(PORT_TRIES):
            port = fixed or free_port(self._ports_in_use(), self.p["bind_address"])
            body, networks, notes = twin_request(request, connect, volume=volume, port=port, labels=labels,
                                                 bind_address=self.p["bind_address"], data_dir=self.data_dir)
            created = self._do(f"create container {name} from {image_ref}", self.api.create_container_from_config,
                               body, name=name)
            made["containers"].append(name)
            for network, endpoint in networks.items():
                self._do(f"connect {name} to network {network}", self.api.connect_container_to_network,
                         created["Id"], network, driver_opt=endpoint.get("DriverOpts") or None,
                         links=[tuple(link.split(":", 1)) for link in endpoint.get("Links") or []] or None)
            try:
                self._do(f"start {name} on {self.p['bind_address']}:{port}", self.api.start, created["Id"])
            except ContainerError as exc:
                if fixed or attempt == PORT_TRIES - 1 or not is_port_clash(exc.msg):
                    raise
                self._do(f"remove container {name} (port {port} was taken meanwhile)", self.api.remove_container,
                         created["Id"], force=True)
                made["containers"].remove(name)
                continue
            self.notes = self.notes + notes
            self.timings["create_seconds"] = round(time.monotonic() - started, 3)
            return self.client.containers.get(created["Id"]), port
        raise ContainerError(f"No free port for {name} after {PORT_TRIES} tries.")  # pragma: no cover

    def _ports_in_use(self) -> set:
        try:
            containers = self.client.containers.list(all=True, ignore_removed=True)
        except (DockerException, RequestException) as exc:
            raise ContainerError(f"Could not list the containers' ports: {explain(exc)}") from exc
        return host_ports_in_use([c.attrs for c in containers])

    def _health_params(self, name: str | None, url: str, wait: bool) -> dict:
        return dict(container=name, url=url, wait=wait, wait_timeout=self.p["wait_timeout"],
                    interval=self.p["interval"], healthy_streak=self.p["healthy_streak"], fail_fast=True,
                    crash_loop_restarts=3, log_lines=50, timeout=5.0, validate_certs=True, ca_path=None,
                    api_key=None, use_proxy=False,
                    **{k: v for k, v in self.p.items() if k.startswith("docker_")})

    def _url(self, port) -> str:
        address = self.p["bind_address"]
        host = f"[{address}]" if ":" in address else address
        return f"http://{host}:{port}"

    def _wait(self, name: str, port: int) -> dict:
        started = time.monotonic()
        health = EngineHealth(self._health_params(name, self._url(port), True)).run()
        self.timings["healthy_seconds"] = round(time.monotonic() - started, 3)
        if not health["is_healthy"]:
            raise ContainerError(
                f"The twin {name} did not become healthy within {self.p['wait_timeout']}s "
                f"({health['failure']}: {health['failure_detail']}); it is removed, the Engine was not touched.",
                health=health,
            )
        return dict(is_healthy=True, elapsed=health["elapsed"], version=(health.get("container") or {}).get("version"))

    def _undo(self, made: dict, name: str) -> None:
        """Remove what a failed present made; a failure here is a warning (state=swept finds what is left)."""
        if self.p["keep_on_failure"]:
            self.warn(f"keep_on_failure: what was made of twin {name} is kept for a look; remove it with state=absent.")
            return
        for step, call in (
            ("containers", lambda: [self.api.remove_container(n, v=False, force=True) for n in made["containers"]]),
            ("volume", lambda: made["volume"] and self.api.remove_volume(made["volume"], force=True)),
            ("folder", lambda: made["folder"] and is_marked(made["folder"]) and shutil.rmtree(made["folder"])),
        ):
            try:
                call()
            except (DockerException, RequestException, OSError) as exc:
                self.warn(f"Could not remove the {step} of the failed twin {name} ({exc}): state=swept removes it.")

    def _describe(self, container, source, engine: dict, name: str, volume: str, folder: str, labels: dict, port,
                  reference: dict | None, counts: dict | None, notes: list) -> dict:
        ref = (source.attrs.get("Config") or {}).get("Image")
        repository, _tag = split_repository(ref)
        return dict(
            name=name,
            container_id=container.id if container is not None else None,
            image=ref,
            image_id=source.attrs.get("Image"),
            repository=repository,
            version=engine.get("version"),
            url=self._url(port) if port else None,
            port=port,
            bind_address=self.p["bind_address"],
            volume=volume,
            folder=folder,
            state_dir=os.path.join(folder, "state"),
            run_id=labels[DRILL_LABEL],
            labels=labels,
            of=dict(inventory_name=self.p.get("inventory_name"), container=source.name, container_id=source.id,
                    deployment=engine.get("deployment"), identity=(engine.get("identity") or {}).get("key"),
                    compose_project=(engine.get("compose") or {}).get("project"), url=engine.get("url")),
            reference=dict(name=reference.get("name"), path=reference.get("path"), sha256=reference.get("sha256"),
                           size=reference.get("size"), created_at=reference.get("created_at"),
                           tables=counts, rows=sum(counts.values()) if counts is not None else None)
            if reference else None,
            notes=notes,
            made_at=iso(utc_now()),
        )

    # ------------------------------------------------------------- absent / swept

    def state_absent(self) -> dict:
        name = self.p["twin_name"]
        if not name:
            raise OptionsError("state=absent needs twin_name (the twin's container name).")
        containers, volumes = self._labelled(f"{TWIN_LABEL}={name}")
        containers = [c for c in containers if (c.labels or {}).get(DRILL_LABEL)]
        volumes = [v for v in volumes if ((v.attrs or {}).get("Labels") or {}).get(DRILL_LABEL)]
        runs = {(c.labels or {}).get(DRILL_LABEL) for c in containers}
        runs |= {((v.attrs or {}).get("Labels") or {}).get(DRILL_LABEL) for v in volumes}
        if self.p["run_id"]:
            runs.add(check_run_id(self.p["run_id"]))
        removed: dict = dict(containers=[], volumes=[], folders=[])
        self._remove_containers(containers, removed)
        self._remove_volumes(volumes, removed)
        for run in sorted(r for r in runs if r):
            folder = os.path.join(self.state_dir, run, name)
            if _remove_folder(folder, self.actions, self.check_mode):
                removed["folders"].append(folder)
                self.changed = True
            self._remove_empty_run(run, removed)
        return dict(removed=removed)

    def _remove_empty_run(self, run: str, removed: dict) -> None:
        folder = os.path.join(self.state_dir, run)
        if is_marked(folder) is None or self.check_mode:
            return
        left = [n for n in os.listdir(folder) if n != MARKER]
        if not left:
            shutil.rmtree(folder)
            removed["folders"].append(folder)

    def state_swept(self) -> dict:
        run_id = check_run_id(self.p["run_id"]) if self.p["run_id"] else None
        keep = check_run_id(self.p["keep_run"], "keep_run") if self.p["keep_run"] else None
        containers, volumes = self._labelled(DRILL_LABEL)
        chosen_c, chosen_v = select_swept(
            [dict(name=c.name, labels=c.labels or {}, obj=c) for c in containers],
            [dict(name=v.name, labels=(v.attrs or {}).get("Labels") or {}, obj=v) for v in volumes],
            run_id, keep)
        removed: dict = dict(containers=[], volumes=[], folders=[])
        self._remove_containers([c["obj"] for c in chosen_c], removed)
        self._remove_volumes([v["obj"] for v in chosen_v], removed)
        if os.path.isdir(self.state_dir):
            for entry in sorted(os.listdir(self.state_dir)):
                folder = os.path.join(self.state_dir, entry)
                marker = is_marked(folder)
                if marker is None or entry == keep or (run_id is not None and entry != run_id):
                    continue
                if _remove_folder(folder, self.actions, self.check_mode):
                    removed["folders"].append(folder)
                    self.changed = True
        return dict(removed=removed)

    # ------------------------------------------------------------- verified

    def state_verified(self) -> dict:
        name = self.p["twin_name"]
        if not name:
            raise OptionsError("state=verified needs twin_name (the twin's container name).")
        container = self._find(name)
        if container is None:
            raise NotFoundError(f"No twin named {name} on this Docker host: it was never made, or is removed.")
        run_id = (container.labels or {}).get(DRILL_LABEL)
        if not run_id:
            raise OptionsError(f"{name} is not a twin (no {DRILL_LABEL} label): nothing to verify.")
        record = self._record(run_id, name) or {}
        reference = self.p["reference"] or (record.get("reference") or {}).get("path")
        if not reference or not os.path.isfile(reference):
            raise NotFoundError(f"The pre-drill reference of twin {name} ({reference or 'not recorded'}) is not there: "
                                "give it with reference=<path of the snapshot>.")
        expected = self.p["version"] or record.get("version")
        container.reload()
        image = self.client.images.get(container.attrs["Image"])
        version = image_version(image) or split_repository((container.attrs.get("Config") or {}).get("Image"))[1]
        url = record.get("url") or self._url(self._published(container))
        health = EngineHealth(self._health_params(name, url, True)).run()
        location = locate_brain(dict(container=name, data_dir=self.data_dir), self.client)
        missing, counts, problem = self._compare(location.path, reference)
        ref_rows = (record.get("reference") or {}).get("rows")
        rows_kept = problem is None and not missing
        verification = dict(
            twin=name, run_id=run_id, is_healthy=health["is_healthy"], health_failure=health["failure"],
            health_detail=health["failure_detail"], version=version, expected_version=expected,
            on_version=bool(expected) and version == expected, rows_kept=rows_kept,
            missing=missing, missing_rows=sum(m["count"] for m in missing.values()), problem=problem,
            reference=dict(path=reference, sha256=(record.get("reference") or {}).get("sha256"), rows=ref_rows,
                           tables=(record.get("reference") or {}).get("tables")),
            brain_rows=counts,
        )
        verification["is_verified"] = bool(verification["is_healthy"] and verification["on_version"] and rows_kept)
        result = dict(verification=verification)
        drill = self.p.get("drill")
        if drill:
            upgrade = drill.get("upgrade_result") or {}
            result["drill"] = drill_entry(
                upgrade, verification, broken_version=str(drill.get("broken_version") or ""),
                target_rto=float(drill.get("target_rto_seconds") or 60),
                snapshot_manifest=self._manifest((upgrade.get("snapshot") or {}).get("path")),
                image_present=drill.get("image_present"), health_timeout=drill.get("health_timeout") or 120,
                fallback_rollback_timings=drill.get("rollback_timings"))
        return result

    @staticmethod
    def _manifest(path: str | None) -> dict | None:
        """The manifest of the snapshot at `path` (the upgrade's pre-upgrade snapshot of the twin), None if unread."""
        if not path:
            return None
        try:
            with open(os.path.splitext(path)[0] + ".json", encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def _published(container) -> str | None:
        bindings = ((container.attrs.get("HostConfig") or {}).get("PortBindings") or {}).get(ENGINE_PORT) or []
        return next((b.get("HostPort") for b in bindings if b.get("HostPort")), None)

    @staticmethod
    def _compare(brain: str, reference: str) -> tuple[dict, dict | None, str | None]:
        """(missing rows per table, row counts of the brain, a problem that kept the check from running)."""
        try:
            with reading(brain) as conn:
                counts = table_row_counts(conn)
                conn.execute("ATTACH DATABASE ? AS ref", (f"file:{quote(reference)}?mode=ro&immutable=1",))
                try:
                    return rows_missing(conn, "ref", "main"), counts, None
                finally:
                    with contextlib.suppress(sqlite3.DatabaseError):
                        conn.execute("DETACH DATABASE ref")
        except (BrainError, sqlite3.DatabaseError) as exc:
            return {}, None, f"the brains could not be compared: {getattr(exc, 'msg', exc)}"


# --------------------------------------------------------------------------- the drill's judgement of a twin (pure)

#: The steps of a drill, in order, and what each one is.
STEPS = (
    ("snapshot", "pre-upgrade snapshot of the brain"),
    ("pull", "pull of the broken release's image"),
    ("drain", "drain (docker stop of the old release)"),
    ("switch", "switch to the broken release (after the drain)"),
    ("detection", "detection: from the switch to the verdict or health decision"),
    ("image_rollback", "image rollback: stop the broken release, switch back"),
    ("brain_restore", "brain restore: stage, install (and replay) the pre-upgrade snapshot"),
    ("time_to_healthy", "time to healthy on the old release"),
)
#: What the upgrade role does not record (yet) and the drill needs: the field, and what it would make exact.
MISSING_FIELDS = {
    "snapshot": ("engine_upgrade_result.timings.snapshot_seconds",
                 "the seconds of the pre-upgrade snapshot (the drill reads them from the snapshot's manifest)"),
    "pull": ("engine_upgrade_result.timings.pull_seconds",
             "the seconds the pre-flight spent pulling the target image, 0 when it was present (the drill knows only "
             "whether the image was there before it started)"),
    "detection": ("engine_upgrade_result.timings.detection_seconds",
                  "the seconds from the switch to the verdict or health decision, also when the Engine never became "
                  "healthy (healthy_seconds is null then, and the drill estimates the health wait by "
                  "engine_upgrade_health_timeout)"),
    "rollback": ("engine_upgrade_result.rollback.timings",
                 "empty: roles/engine_rollback/tasks/main.yml records __engine_rollback_run.timings, but the "
                 "engine_rollback module returns its timings in rollback.timings, so the combine() there replaces "
                 "them with {}; the drill read them from the module's own registered result (__engine_rollback_run)"),
    "rto": ("engine_upgrade_result.timings.decided_at and engine_upgrade_result.rollback.timings.started_at",
            "when the decision was made and when the rollback module started (epoch seconds), so that the RTO is "
            "healthy minus decided_at; the drill takes the rollback module's total_seconds, which leaves out the "
            "seconds between the decision and the rollback's start (the bad window's logs, the outage check)"),
}


def _num(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _sum(*values) -> float | None:
    known = [n for n in (_num(v) for v in values) if n is not None]
    return round(sum(known), 2) if known else None


def _step(seconds, source: str, estimated: bool = False, recorded: bool = True) -> dict:
    value = _num(seconds)
    return dict(seconds=round(value, 2) if value is not None else None, source=source, estimated=estimated,
                recorded=recorded and value is not None)


def rollback_timings(upgrade: dict | None, fallback: dict | None = None) -> tuple[dict, bool]:
    """(the rollback's timings, whether they come from `fallback`): the upgrade's record of them, else the rollback
    module's own result."""
    recorded = (((upgrade or {}).get("rollback") or {}).get("timings")) or {}
    if recorded or not fallback:
        return recorded, False
    return dict(fallback), True


def drill_steps(upgrade: dict | None, snapshot_manifest: dict | None = None, image_present: bool | None = None,
                health_timeout: float = 120, fallback_rollback_timings: dict | None = None) -> dict:
    """Per step of the drill, its seconds and where they come from (the upgrade's own result first).

    ``recorded`` is false for a figure the upgrade's result does not hold (read elsewhere, estimated, or missing).
    """
    upgrade = upgrade or {}
    timings = upgrade.get("timings") or {}
    rollback = upgrade.get("rollback") or {}
    rb, fallback = rollback_timings(upgrade, fallback_rollback_timings)
    read = dict(recorded=not fallback)
    steps = {}
    copied = (snapshot_manifest or {}).get("timings") or {}
    steps["snapshot"] = _step(_sum(copied.get("copy_s"), copied.get("verify_hash_fsync_s")),
                              "the snapshot's manifest (timings.copy_s + timings.verify_hash_fsync_s)"
                              if copied else "not recorded", recorded=False)
    if image_present:
        steps["pull"] = _step(0.0, "none: the image was on the Docker host before the drill", recorded=False)
    else:
        steps["pull"] = _step(None, "not recorded" + (" (the pre-flight pulled the image)" if image_present is False
                                                      else ""), recorded=False)
    steps["drain"] = _step(timings.get("drain_seconds"), "timings.drain_seconds")
    drain, switch = _num(timings.get("drain_seconds")), _num(timings.get("switch_seconds"))
    steps["switch"] = (_step(switch - drain, "timings.switch_seconds - timings.drain_seconds")
                       if switch is not None and drain is not None else _step(switch, "timings.switch_seconds"))
    healthy, bake = _num(timings.get("healthy_seconds")), _num(timings.get("bake_seconds"))
    if healthy is not None and bake is not None:
        steps["detection"] = _step(healthy + bake, "timings.healthy_seconds + timings.bake_seconds")
    elif bake is not None:
        steps["detection"] = _step(float(health_timeout) + bake,
                                   "estimate: engine_upgrade_health_timeout (the health wait ran out; its seconds are "
                                   "not recorded) + timings.bake_seconds", estimated=True, recorded=False)
    else:
        steps["detection"] = _step(None, "not recorded (the upgrade did not reach its verification)", recorded=False)
    where = "the rollback module's result: " if fallback else ""
    steps["image_rollback"] = _step(_sum(rb.get("start_seconds"), rb.get("stop_seconds"), rb.get("switch_seconds")),
                                    f"{where}rollback.timings.stop_seconds + switch_seconds", **read)
    if rollback and rollback.get("rolled_back") and not rollback.get("brain_restored"):
        steps["brain_restore"] = _step(0.0, "none: an image-only rollback")
    else:
        steps["brain_restore"] = _step(_sum(rb.get("stage_seconds"), rb.get("restore_seconds"),
                                            rb.get("replay_seconds")),
                                       f"{where}rollback.timings.stage_seconds + restore_seconds + replay_seconds",
                                       **read)
    steps["time_to_healthy"] = _step(rb.get("healthy_seconds"), f"{where}rollback.timings.healthy_seconds", **read)
    return steps


def _dominant(parts: dict) -> str | None:
    known = {k: v for k, v in parts.items() if v is not None}
    return max(known, key=lambda k: known[k]) if known else None


def _verification_problems(verification: dict) -> list:
    problems = []
    if not verification.get("is_healthy"):
        problems.append(f"the twin is not healthy after the rollback: {verification.get('health_detail')}")
    if not verification.get("on_version"):
        problems.append(f"the twin runs {verification.get('version')}, not {verification.get('expected_version')}")
    if not verification.get("rows_kept"):
        missing = verification.get("missing") or {}
        problems.append(verification.get("problem") or (
            f"{verification.get('missing_rows')} pre-drill rows are missing ("
            + ", ".join(f"{table}: {m.get('count')}" for table, m in sorted(missing.items())) + ")"))
    return problems


def _upgrade_problems(upgrade: dict, broken_version: str, rolled_back: bool, rto: float | None) -> list:
    status = upgrade.get("status")
    if not upgrade:
        return ["the upgrade recorded no result for the twin"]
    if status in ("upgraded", "verified"):
        return [f"the upgrade's gates did not catch {broken_version}: the twin was {status} on it"]
    if status == "rollback_failed":
        return [f"the rollback failed: {upgrade.get('reason')}"]
    if not rolled_back:
        return [f"the twin was not rolled back ({status}: {upgrade.get('reason') or 'no reason given'})"]
    if rto is None:
        return ["the rollback's timings are recorded nowhere: no RTO"]
    return []


def _missing_fields(upgrade: dict, steps: dict, fallback: bool, rto: float | None) -> list:
    missing = []
    for step, (field, why) in MISSING_FIELDS.items():
        if step == "rollback":
            needed = fallback
        elif step == "rto":
            needed = rto is not None
        else:
            needed = bool(upgrade) and not steps[step]["recorded"]
        if needed:
            missing.append(dict(step=step, field=field, why=why))
    return missing


def drill_entry(upgrade: dict | None, verification: dict, *, broken_version: str, target_rto: float,
                snapshot_manifest: dict | None = None, image_present: bool | None = None,
                health_timeout: float = 120, fallback_rollback_timings: dict | None = None) -> dict:
    """The drill's judgement of one twin: was the broken release caught and rolled back, is the twin healthy on its
    old release with every pre-drill row, how long each step took, the RTO against the target, what dominated, and
    which figures the upgrade role does not record."""
    upgrade = upgrade or {}
    rollback = upgrade.get("rollback") or {}
    steps = drill_steps(upgrade, snapshot_manifest, image_present, health_timeout, fallback_rollback_timings)
    rb, fallback = rollback_timings(upgrade, fallback_rollback_timings)
    status = upgrade.get("status")
    rolled_back = status == "rolled_back" and bool(rollback.get("rolled_back"))
    rto = _num(rb.get("total_seconds")) if rolled_back else None
    rto_parts = {k: steps[k]["seconds"] for k in ("image_rollback", "brain_restore", "time_to_healthy")}
    if rto is not None:
        rto_parts["rollback_checks"] = round(max(rto - sum(v for v in rto_parts.values() if v is not None), 0.0), 2)
    problems = _upgrade_problems(upgrade, broken_version, rolled_back, rto)
    problems += _verification_problems(verification or {})
    if rto is not None and rto > target_rto:
        problems.append(f"RTO {rto:g} s is over the target {target_rto:g} s (most of it: {_dominant(rto_parts)})")
    missing = _missing_fields(upgrade, steps, fallback, rto)
    verdict = upgrade.get("verdict") or {}
    return dict(
        from_version=upgrade.get("from_version"),
        broken_version=broken_version,
        upgrade=dict(status=status, decision=upgrade.get("decision"), evidence=upgrade.get("evidence"),
                     step=upgrade.get("step"), reason=upgrade.get("reason"), rule=verdict.get("rule"),
                     symptom=verdict.get("symptom"), rollback_kind=upgrade.get("rollback_kind"),
                     snapshot=(upgrade.get("snapshot") or {}).get("name")) if upgrade else None,
        caught=status in ("rolled_back", "rollback_failed"),
        rolled_back=rolled_back,
        steps=steps,
        dominant_step=_dominant({k: v["seconds"] for k, v in steps.items()}),
        rto_seconds=rto,
        rto_source=(("the rollback module's result: " if fallback else "")
                    + "rollback.timings.total_seconds: from the rollback module's start to healthy on the old release "
                    "(a lower bound, see missing_fields)") if rto is not None else None,
        rto_breakdown=rto_parts if rto is not None else None,
        rto_dominant_step=_dominant(rto_parts) if rto is not None else None,
        target_rto_seconds=target_rto,
        rto_pass=(rto <= target_rto) if rto is not None else None,
        verified=dict(is_verified=verification.get("is_verified"), is_healthy=verification.get("is_healthy"),
                      version=verification.get("version"), on_version=verification.get("on_version"),
                      rows_kept=verification.get("rows_kept"), missing_rows=verification.get("missing_rows"),
                      missing=verification.get("missing") or {},
                      reference_rows=(verification.get("reference") or {}).get("rows")),
        passed=not problems and rto is not None and bool(verification.get("is_verified")),
        problems=problems,
        missing_fields=missing,
    )
