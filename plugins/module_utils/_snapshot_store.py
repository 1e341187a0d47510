# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The folder of snapshots: names, manifests, which Engine and kind each belongs to, listing, choosing, retention.

A snapshot is a pair of files in a folder (`dest`): `<name>.sqlite`, a self-contained SQLite database
(rollback-journal mode, no -wal needed), and `<name>.json`, its manifest (format september.engine.snapshot/v1).
Only pairs with a valid manifest are ours: anything else in the folder is never touched. Files are 0600, the
folder 0700. One folder may hold the snapshots of several Engines (a group_vars `engine_snapshot_dir`): each
manifest records the Engine it belongs to (`engine.key`, the identity of its brain's storage, see _identity.py)
and its `kind` (pre-upgrade, scheduled, manual, pre-restore). Retention, the choice of a snapshot to restore and
the re-use of an existing name only ever consider the snapshots of one Engine (and one kind).

Older manifests (no `kind`, no `engine.key`): the kind is read from the reason or name they were written with
(pre-upgrade, pre-restore, scheduled), the Engine from where the brain was (`source`: its volume or bind mount,
else its container or path). What cannot be told is never pruned, re-used or restored without an override.
"""

from __future__ import annotations

import json
import os
import re
import stat
from datetime import datetime, timedelta

from ansible_collections.september.engine.plugins.module_utils._errors import (
    OptionsError,
    SnapshotError,
)
from ansible_collections.september.engine.plugins.module_utils._fileops import (
    folder_lock,
    fsync_path,
    remove,
    sha256_file,
)
from ansible_collections.september.engine.plugins.module_utils._paths import require_absolute
from ansible_collections.september.engine.plugins.module_utils._timeutil import OLDEST, UTC, iso, parse_iso

FORMAT = "september.engine.snapshot/v1"
COLLECTION_VERSION = "0.1.0"
DATA_SUFFIX = ".sqlite"
MANIFEST_SUFFIX = ".json"
# Kinds a user asks for; a restore keeps the brain it replaces as kind pre-restore.
KINDS = ("pre-upgrade", "scheduled", "manual")
ALL_KINDS = (*KINDS, "pre-restore")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SAME, OTHER, UNKNOWN = "same", "other", "unknown"


# ---------------------------------------------------------------- names


def default_name(moment: datetime, slug: str | None = None, kind: str | None = None) -> str:
    """`brain-<slug>-<kind>-<UTC time>`: unique per Engine and kind to the second (the parts given)."""
    parts = ["brain", slug, kind, f"{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}"]
    return "-".join(part for part in parts if part)


def check_name(name: str, option: str = "name") -> str:
    """`name` as a snapshot name (a file name stem), or OptionsError."""
    if not _NAME.match(name or "") or name.endswith((DATA_SUFFIX, MANIFEST_SUFFIX)):
        raise OptionsError(
            f"{option}={name!r} is not a valid snapshot name: use 1-128 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit, without the {DATA_SUFFIX} or {MANIFEST_SUFFIX} suffix."
        )
    return name


def retain_until(moment: datetime, days: int | None) -> str | None:
    return iso(moment + timedelta(days=days)) if days is not None else None


# ---------------------------------------------------------------- what a manifest says


def manifest_kind(manifest: dict) -> str | None:
    """The kind of a snapshot: recorded, or for an older manifest read from its reason or name; None if unknown."""
    if manifest.get("kind"):
        return manifest["kind"]
    reason = str(manifest.get("reason") or "").strip().lower()
    name = str(manifest.get("name") or "")
    for kind in ("pre-upgrade", "pre-restore", "scheduled"):
        if reason.startswith(kind) or name.startswith(kind + "-"):
            return kind
    return "pre-restore" if name.endswith("-pre-restore") else None


def recorded_key(manifest: dict) -> str | None:
    """The identity key of the Engine a snapshot belongs to: recorded, or derived from where an older
    manifest says the brain was (its volume or bind mount); None when neither tells."""
    engine = manifest.get("engine") if isinstance(manifest.get("engine"), dict) else {}
    if engine.get("key"):
        return engine["key"]
    source = manifest.get("source") if isinstance(manifest.get("source"), dict) else {}
    if source.get("mount_type") == "volume" and source.get("volume"):
        return f"volume:{source['volume']}"
    if source.get("mount_type") == "bind" and source.get("mount_source"):
        return "bind:" + (source["mount_source"].rstrip("/") or "/")
    return None


def _recorded_container(manifest: dict) -> str | None:
    engine = manifest.get("engine") if isinstance(manifest.get("engine"), dict) else {}
    source = manifest.get("source") if isinstance(manifest.get("source"), dict) else {}
    return engine.get("container") or source.get("container")


def engine_binding(manifest: dict, key: str | None, container: str | None = None, path: str | None = None) -> str:
    """Whether a snapshot belongs to the Engine `key`: SAME, OTHER or UNKNOWN.

    By the recorded (or derived) identity key when there is one. An older manifest without one: SAME when it
    recorded the same brain path or the same container (`container`, `path`: the target's), OTHER when it
    recorded another container, UNKNOWN when it recorded neither.
    """
    recorded = recorded_key(manifest)
    if recorded:
        return SAME if key and recorded == key else OTHER
    source = manifest.get("source") if isinstance(manifest.get("source"), dict) else {}
    if path and source.get("path") == path:
        return SAME
    recorded_container = _recorded_container(manifest)
    if container and recorded_container:
        return SAME if recorded_container == container else OTHER
    return UNKNOWN


def describe_engine(manifest: dict) -> str:
    """The Engine a snapshot belongs to, for people: its key, inventory name and container as recorded."""
    engine = manifest.get("engine") if isinstance(manifest.get("engine"), dict) else {}
    key = recorded_key(manifest)
    details = [f"inventory name {engine['inventory_name']}"] if engine.get("inventory_name") else []
    if _recorded_container(manifest):
        details.append(f"container {_recorded_container(manifest)}")
    if key:
        return f"Engine {key}" + (f" ({', '.join(details)})" if details else "")
    if details:
        return f"an Engine recorded only by its {' and '.join(details)} (an older manifest)"
    return "an unknown Engine (an older manifest records neither its volume, its mount nor its container)"


def manifest_version(manifest: dict) -> str | None:
    """The Engine release the snapshot was taken on (engine_version, or an older manifest's engine.version)."""
    engine = manifest.get("engine") if isinstance(manifest.get("engine"), dict) else {}
    return manifest.get("engine_version") or engine.get("version")


# ---------------------------------------------------------------- retention (pure)


def _newest_first_key(snapshot: dict):
    return (parse_iso(snapshot.get("created_at")) or OLDEST, snapshot.get("name") or "")


def sort_newest_first(snapshots: list[dict]) -> list[dict]:
    return sorted(snapshots, key=_newest_first_key, reverse=True)


def select_prunable(
    snapshots, now: datetime, keep_last: int | None = None, keep_days: int | None = None, protect=()
) -> list[str]:
    """Names of the snapshots that retention removes, newest first (a pure function).

    `snapshots` are those of one Engine and one kind (SnapshotStore.prune chooses them). The newest `keep_last`
    are kept, and so is any younger than `keep_days` days: when both are given, a snapshot survives if either
    keeps it. Never pruned: a snapshot whose retain_until is in the future (or unreadable), one without a
    readable created_at, and the names in `protect`. With neither keep_last nor keep_days, nothing is pruned.
    """
    if keep_last is None and keep_days is None:
        return []
    protect = set(protect)
    pruned = []
    for index, snapshot in enumerate(sort_newest_first(list(snapshots))):
        created = parse_iso(snapshot.get("created_at"))
        until = snapshot.get("retain_until")
        if snapshot["name"] in protect or created is None:
            continue
        if until and (parse_iso(until) is None or parse_iso(until) > now):
            continue
        if keep_last is not None and index < keep_last:
            continue
        if keep_days is not None and now - created < timedelta(days=keep_days):
            continue
        pruned.append(snapshot["name"])
    return pruned


def matching(snapshots, key: str | None = None, kind: str | None = None, version: str | None = None) -> list[dict]:
    """The listed snapshots (store.list() entries) of the Engine `key`, of `kind`, taken on `version` (each
    filter only when given), newest first. Older manifests match a key only through their volume or bind mount."""
    chosen = [
        entry
        for entry in snapshots
        if (key is None or engine_binding(entry["manifest"], key) == SAME)
        and (kind is None or entry["kind"] == kind)
        and (version is None or entry["engine_version"] == version)
    ]
    return sort_newest_first(chosen)


def choose_snapshot(store: SnapshotStore, key: str, version: str | None = None, kind: str = "pre-upgrade"):
    """The newest snapshot (a store.list() entry) of `kind` that belongs to the Engine `key` and was taken on
    release `version` (any release when None), chosen by manifest, never by name; None when there is none.

    Raw copies (a replaced brain that could not be read) are never chosen. The choice does not verify the
    snapshot: check_restore() does (checksum, quick_check, binding) before anything is stopped.
    """
    for entry in matching(store.list(), key=key, kind=kind, version=version):
        if not entry["raw_copy"]:
            return entry
    return None


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
        after["brain"] = dict(
            path=before["brain"]["path"],
            sha256=snapshot["sha256"],
            applied_migrations=snapshot["manifest"].get("applied_migrations"),
        )
    after["snapshots"] = sorted(names)
    return after


# ---------------------------------------------------------------- the folder


class SnapshotStore:
    """The snapshots in one folder (of one Engine, or of several that share the folder)."""

    def __init__(self, dest: str, option: str = "dest"):
        require_absolute({option: dest})  # a rollback must find the snapshots again (`option`: the module's name)
        self.dest = os.path.abspath(dest)

    def data_path(self, name: str) -> str:
        return os.path.join(self.dest, name + DATA_SUFFIX)

    def manifest_path(self, name: str) -> str:
        return os.path.join(self.dest, name + MANIFEST_SUFFIX)

    def temp(self, name: str, suffix: str, tag: str = "") -> str:
        """A hidden temporary path for `name` (+ `tag`: one per Engine, so Engines sharing the folder never
        write the same temporary file)."""
        return os.path.join(self.dest, f".{name}{'.' + tag if tag else ''}{suffix}.tmp")

    def temps_of(self, tag: str) -> list[str]:
        """Every hidden temporary file of the Engine `tag` in the folder, whatever the snapshot's name (what
        :meth:`temp` names, and SQLite's journals of them): a killed snapshot's are among them."""
        if not tag or not os.path.isdir(self.dest):
            return []
        pattern = re.compile(
            rf"^\..+\.{re.escape(tag)}(?:{re.escape(DATA_SUFFIX)}(?:-wal|-journal)?|"
            rf"{re.escape(MANIFEST_SUFFIX)})\.tmp(?:-journal|-wal|-shm)?$"
        )
        return sorted(os.path.join(self.dest, name) for name in os.listdir(self.dest) if pattern.match(name))

    # ---- reading

    def load_manifest(self, name: str) -> dict | None:
        """The manifest of `name` if it is one of ours, else None."""
        try:
            with open(self.manifest_path(name), encoding="utf-8") as handle:
                manifest = json.load(handle)
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("name") != name:
            return None
        return manifest

    def entry(self, name: str, manifest: dict) -> dict:
        """What the modules return for a snapshot (see brain_snapshot_info's RETURN)."""
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
            kind=manifest_kind(manifest),
            engine_key=recorded_key(manifest),
            engine_version=manifest_version(manifest),
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
            manifest = self.load_manifest(name)
            if manifest is not None:
                entries.append(self.entry(name, manifest))
        return sort_newest_first(entries)

    def names(self) -> list[str]:
        return sorted(entry["name"] for entry in self.list())

    def get(self, name: str) -> dict | None:
        """The snapshot `name`, None when there is none; SnapshotError when its files are not a valid pair."""
        manifest = self.load_manifest(name)
        if manifest is not None:
            return self.entry(name, manifest)
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

    def engine_keys(self, kind: str | None = None) -> set:
        """The Engine keys that snapshots (of `kind`) in the folder belong to (None for those that do not say)."""
        return {entry["engine_key"] for entry in self.list() if kind is None or entry["kind"] == kind}

    def resolve_name(
        self, name: str, key: str, slug: str, container: str | None = None, path: str | None = None
    ) -> tuple[str, dict | None, str | None]:
        """The name a new snapshot of the Engine `key` takes when it asks for `name`, and whether one exists.

        Returns (name, existing entry of this Engine to re-use or None, warning or None). A snapshot of that
        name that belongs to another Engine (or to one an older manifest cannot tell) is never re-used: this
        Engine's snapshot is then named `<name>-<slug>` (deterministic, so a re-run finds it again), with a
        warning. SnapshotError when this Engine's existing snapshot fails its checksum (kept as evidence).
        """
        existing = self.get(name)
        if existing is None:
            return name, None, None
        binding = engine_binding(existing["manifest"], key, container, path)
        if binding == SAME:
            return name, self._unless_damaged(existing), None
        distinct = check_name(f"{name}-{slug}", "name")
        warning = (
            f"Snapshot {name} in {self.dest} belongs to {describe_engine(existing['manifest'])}, not to this "
            f"Engine ({key}): it is left alone, and this Engine's snapshot is named {distinct}. Include the "
            "Engine's identity slug in snapshot names when Engines share a folder."
        )
        other = self.get(distinct)
        if other is None:
            return distinct, None, warning
        if engine_binding(other["manifest"], key, container, path) != SAME:
            raise SnapshotError(
                f"Snapshots {name} and {distinct} in {self.dest} both belong to other Engines than {key}: "
                "choose another name. Nothing was written."
            )
        return distinct, self._unless_damaged(other), warning

    def _unless_damaged(self, entry: dict) -> dict:
        problem = self.checksum_problem(entry)
        if problem:
            raise SnapshotError(
                f"Snapshot {entry['name']} already exists but fails its checksum ({problem}); it is kept as evidence "
                "and not overwritten. Remove it (state=absent) or choose another name."
            )
        return entry

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

    def undo_dest(self, top: str | None) -> None:
        """Remove the folders ensure_dest created (still empty but for our lock file), after a failure."""
        folder = self.dest
        while top:
            if folder == self.dest:
                remove(os.path.join(folder, ".lock"))
            try:
                os.rmdir(folder)
            except OSError:
                return
            if folder == top:
                return
            folder = os.path.dirname(folder)

    def write_manifest_temp(self, name: str, manifest: dict, tag: str = "") -> str:
        temp = self.temp(name, MANIFEST_SUFFIX, tag)
        remove(temp)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        return temp

    def commit(
        self, name: str, renames: list, manifest: dict, *, key: str | None = None, slug: str = "", tag: str = ""
    ) -> str:
        """Data files into place, then the manifest that makes them a snapshot; then fsync the folder.

        `renames`: (temporary path, suffix) pairs, the data file first. Under the folder's lock, the name is
        checked again: if another Engine committed a snapshot of this name meanwhile (Engines sharing a folder,
        in parallel), this one is committed as `<name>-<slug>`. Returns the name committed.
        """
        with folder_lock(self.dest):
            if key is not None:
                existing = self.load_manifest(name)
                if existing is not None and engine_binding(existing, key) != SAME:
                    name = check_name(f"{name}-{slug}", "name")
                    manifest = dict(manifest, name=name)
            if os.path.exists(self.manifest_path(name)) or os.path.exists(self.data_path(name)):
                raise SnapshotError(
                    f"A snapshot named {name} appeared in {self.dest} while this one was written: "
                    "it is left alone and this one was not kept. Run again."
                )
            manifest_temp = self.write_manifest_temp(name, manifest, tag)
            for temp, suffix in renames:
                os.replace(temp, os.path.join(self.dest, name + suffix))
            os.replace(manifest_temp, self.manifest_path(name))
            fsync_path(self.dest)
        return name

    def delete(self, name: str) -> None:
        """Remove a snapshot: data files first, the manifest last (an interruption leaves it listed)."""
        for suffix in (DATA_SUFFIX, DATA_SUFFIX + "-wal", DATA_SUFFIX + "-journal"):
            remove(os.path.join(self.dest, name + suffix))
        remove(self.manifest_path(name))
        fsync_path(self.dest)

    def prune(
        self,
        keep_last: int | None,
        keep_days: int | None,
        *,
        kind: str,
        key: str | None,
        protect=(),
        taken: dict | None = None,
        now: datetime | None = None,
        check_mode: bool = False,
        actions: list,
    ) -> list[str]:
        """Apply retention to the snapshots of one Engine (`key`) and one `kind`; every other snapshot in the
        folder is left alone (another Engine's, another kind's, one whose kind or Engine cannot be told).

        `taken`: a snapshot check mode only predicts, counted as the newest. Returns the names pruned.
        """
        if key is None:
            return []
        snapshots = matching(self.list(), key=key, kind=kind)
        if taken is not None and taken["name"] not in [entry["name"] for entry in snapshots]:
            snapshots.append(taken)
        pruned = select_prunable(snapshots, now or datetime.now(UTC), keep_last, keep_days, protect)
        for name in pruned:
            actions.append(f"prune {kind} snapshot {name}")
            if not check_mode:
                self.delete(name)
        return pruned

    def remove(self, name: str, force: bool, check_mode: bool, actions: list, now: datetime | None = None):
        """Remove the snapshot `name` (None when there is none); refuses one retained until later unless `force`."""
        entry = self.get(name)
        if entry is None:
            return None
        until = parse_iso(entry["retain_until"])
        if until and until > (now or datetime.now(UTC)) and not force:
            raise SnapshotError(
                f"Snapshot {name} is retained until {entry['retain_until']} and was not removed. Set force=true to "
                "remove it anyway."
            )
        actions.append(f"remove snapshot {name}")
        if not check_mode:
            self.delete(name)
        return entry
