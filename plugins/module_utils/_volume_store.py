# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The records of volume snapshots: which Engine, which provider, which snapshot id, and how to choose one.

A volume snapshot is a snapshot of the whole storage behind an Engine's /data (its Docker volume or bind mount),
taken by a *provider*: the built-in ``reflink`` provider (a copy of the volume's folder on the Docker host, cloned
where the file system can), or a team's own task files (an EBS or persistent-disk snapshot, see
docs/volume-snapshots.md). Whichever took it, the collection keeps a *record* of it in the Engine's snapshot folder,
beside the file-level snapshots::

    <dest>/<name>.volume.json   the record (format september.engine.volume-snapshot/v1, 0600)
    <dest>/<name>.volume/       the files of a reflink snapshot (0700; absent for other providers)

A record names the Engine it belongs to (its identity key, see _identity.py), its kind (pre-upgrade, scheduled,
manual, pre-restore), the release it was taken on, the provider and the provider's snapshot id. Records are never
mistaken for file-level snapshots (another format, another suffix) and file-level snapshots never for records.
The rollback chooses a record by these fields, never by its name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import datetime

from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError, SnapshotError
from ansible_collections.september.engine.plugins.module_utils._fileops import folder_lock, fsync_path, remove
from ansible_collections.september.engine.plugins.module_utils._snapshot_store import (
    OTHER,
    SAME,
    UNKNOWN,
    SnapshotStore,
    select_prunable,
    sort_newest_first,
)
from ansible_collections.september.engine.plugins.module_utils._timeutil import UTC, iso, parse_iso

FORMAT = "september.engine.volume-snapshot/v1"
RECORD_SUFFIX = ".volume.json"
DATA_SUFFIX = ".volume"
BUILTIN = "reflink"
KINDS = ("pre-upgrade", "scheduled", "manual")
ALL_KINDS = (*KINDS, "pre-restore")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_PROVIDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RECORD_KEYS = ("id", "provider", "created", "size", "data")


def default_name(moment: datetime, slug: str, kind: str) -> str:
    """``volume-<slug>-<kind>-<UTC time>``: never the name of a file-level snapshot (those start ``brain-`` or
    ``pre-upgrade-``)."""
    return f"volume-{slug}-{kind}-{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}"


def check_name(name, option: str = "name") -> str:
    """`name` as a volume snapshot name (letters, digits, ``.``, ``_``, ``-``), or OptionsError."""
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith((DATA_SUFFIX, ".json")):
        raise OptionsError(
            f"{option}={name!r} is not a valid volume snapshot name: use 1-128 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit, without the {DATA_SUFFIX} or .json suffix."
        )
    return name


def _as_size(value) -> int | None:
    """A size in bytes from an int or a numeric text; None when absent, -1 when it is not one."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return -1
    try:
        size = int(value)
    except (TypeError, ValueError):
        return -1
    return size if size >= 0 else -1


def check_record(record, now: datetime) -> dict:
    """What a provider's task file returned (the ``engine_volume_snapshot`` fact), checked and normalized.

    It must be a dict with ``id`` (the provider's snapshot id, a non-empty string) and ``provider`` (a name such as
    ``aws-ebs``), and may have ``created`` (ISO 8601; default now), ``size`` (bytes, 0 or more) and ``data`` (a dict
    the provider's restore tasks get back: region, zone, source volume id ...). OptionsError lists every problem at
    once, and says that nothing was recorded.
    """
    if not isinstance(record, dict):
        raise OptionsError(
            f"record must be a dict (the engine_volume_snapshot fact a provider's tasks set), got "
            f"{type(record).__name__}. Nothing was recorded."
        )
    problems = [f"unknown key {key!r}" for key in sorted(set(record) - set(RECORD_KEYS))]
    snapshot_id, provider = record.get("id"), record.get("provider")
    if not isinstance(snapshot_id, str) or not snapshot_id.strip():
        problems.append("id must be the provider's snapshot id (a non-empty string)")
    if not isinstance(provider, str) or not _PROVIDER.match(provider):
        problems.append("provider must be a name of 1-64 letters, digits, '.', '_' or '-' (for example aws-ebs)")
    created = parse_iso(record.get("created")) if record.get("created") else now
    if created is None:
        problems.append(f"created={record.get('created')!r} is not an ISO 8601 time")
    size = _as_size(record.get("size"))
    if size == -1:
        problems.append(f"size={record.get('size')!r} must be a number of bytes (0 or more)")
    data = record.get("data")
    if data is not None and not isinstance(data, dict):
        problems.append("data must be a dict")
    if problems:
        raise OptionsError(f"The volume snapshot record is not valid: {'; '.join(problems)}. Nothing was recorded.")
    return dict(id=snapshot_id.strip(), provider=provider, created=iso(created), size=size, data=data or {})


def record_binding(record: dict, key: str | None) -> str:
    """Whether a record belongs to the Engine `key`: SAME, OTHER, or UNKNOWN (a record that names no Engine)."""
    engine = record.get("engine") if isinstance(record.get("engine"), dict) else {}
    recorded = engine.get("key")
    if not recorded:
        return UNKNOWN
    return SAME if key and recorded == key else OTHER


def describe_owner(record: dict) -> str:
    engine = record.get("engine") if isinstance(record.get("engine"), dict) else {}
    if not engine.get("key"):
        return "an unknown Engine (the record names none)"
    name = f" ({engine['inventory_name']})" if engine.get("inventory_name") else ""
    return f"Engine {engine['key']}{name}"


def matching(
    entries, key: str | None = None, kind: str | None = None, version: str | None = None, provider: str | None = None
) -> list[dict]:
    """The entries (VolumeStore.list()) of the Engine `key`, of `kind`, taken on `version`, by `provider` (each
    filter only when given), newest first."""
    chosen = [
        entry
        for entry in entries
        if (key is None or record_binding(entry["record"], key) == SAME)
        and (kind is None or entry["kind"] == kind)
        and (version is None or entry["engine_version"] == version)
        and (provider is None or entry["provider"] == provider)
    ]
    return sort_newest_first(chosen)


def choose(entries, key: str, version: str | None = None, kind: str | None = "pre-upgrade") -> dict | None:
    """The newest restorable volume snapshot of the Engine `key`, of `kind`, taken on `version` (any when None).

    Chosen by record, never by name. A raw copy (a replaced volume whose brain could not be read) is never chosen;
    a reflink snapshot whose files are gone neither. None when there is none.
    """
    for entry in matching(entries, key=key, kind=kind, version=version):
        if entry["raw_copy"]:
            continue
        if entry["provider"] == BUILTIN and not entry["has_data"]:
            continue
        return entry
    return None


def prunable(
    entries, now: datetime, key: str, kind: str, keep_last: int | None, keep_days: int | None, protect=()
) -> list[str]:
    """Names of this Engine's reflink snapshots of `kind` that retention removes (see select_prunable).

    Only reflink snapshots: the records of other providers stand for snapshots the collection does not own (their
    provider's retention removes them), so they are never pruned here.
    """
    own = matching(entries, key=key, kind=kind, provider=BUILTIN)
    return select_prunable(own, now, keep_last, keep_days, protect)


def diff_after(state: str, before: dict, result: dict) -> dict:
    """The diff's after state (snapshot names, and for a restore the volume's files) from its before state."""
    if not result["changed"]:
        return before
    after = dict(before)
    names = set(before["snapshots"]) - set(result.get("pruned") or [])
    taken = result.get("volume_snapshot") or {}
    if state == "absent":
        names.discard(taken.get("name"))
    elif state in ("present", "recorded"):
        names.add(taken.get("name"))
    elif state == "restored":
        previous = result.get("previous") or {}
        names.update([previous["name"]] if previous.get("name") else [])
        after["files"] = {item["path"]: item["sha256"] for item in (taken.get("record") or {}).get("files") or []}
    after["snapshots"] = sorted(names)
    return after


class VolumeStore:
    """The volume snapshot records (and reflink data folders) in one snapshot folder."""

    def __init__(self, dest: str):
        self.dest = os.path.abspath(dest)
        self.files = SnapshotStore(self.dest)  # the folder's 0700 handling and lock are the file snapshots' own

    def record_path(self, name: str) -> str:
        return os.path.join(self.dest, name + RECORD_SUFFIX)

    def data_path(self, name: str) -> str:
        return os.path.join(self.dest, name + DATA_SUFFIX)

    def temp(self, name: str, suffix: str, tag: str = "") -> str:
        return os.path.join(self.dest, f".{name}{'.' + tag if tag else ''}{suffix}.tmp")

    def load(self, name: str) -> dict | None:
        """The record of `name` if it is one of ours, else None."""
        try:
            with open(self.record_path(name), encoding="utf-8") as handle:
                record = json.load(handle)
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("name") != name:
            return None
        return record

    def entry(self, name: str, record: dict) -> dict:
        """What the modules return for a volume snapshot (see volume_snapshot_info's RETURN)."""
        engine = record.get("engine") if isinstance(record.get("engine"), dict) else {}
        data = self.data_path(name)
        has_data = os.path.isdir(data)
        return dict(
            name=name,
            provider=record.get("provider"),
            id=record.get("id"),
            created_at=record.get("created_at"),
            retain_until=record.get("retain_until"),
            size=record.get("size"),
            kind=record.get("kind"),
            reason=record.get("reason"),
            run_id=record.get("run_id"),
            engine_key=engine.get("key"),
            engine_version=record.get("engine_version"),
            method=record.get("method"),
            raw_copy=bool(record.get("raw_copy")),
            has_data=has_data,
            path=data if has_data else None,
            record_path=self.record_path(name),
            data=record.get("data") or {},
            record=record,
        )

    def list(self) -> list[dict]:
        """Every volume snapshot with a valid record, newest first (anything else in the folder is ignored)."""
        if not os.path.isdir(self.dest):
            return []
        entries = []
        for file_name in os.listdir(self.dest):
            if file_name.startswith(".") or not file_name.endswith(RECORD_SUFFIX):
                continue
            name = file_name[: -len(RECORD_SUFFIX)]
            record = self.load(name)
            if record is not None:
                entries.append(self.entry(name, record))
        return sort_newest_first(entries)

    def names(self) -> list[str]:
        return sorted(entry["name"] for entry in self.list())

    def get(self, name: str) -> dict | None:
        """The volume snapshot `name`; None when there is none; SnapshotError for a record that is not ours."""
        record = self.load(name)
        if record is not None:
            return self.entry(name, record)
        if os.path.exists(self.record_path(name)):
            raise SnapshotError(
                f"{self.record_path(name)} exists but is not a volume snapshot record (an interrupted or foreign "
                "file?): it is left as it is. Remove it, or choose another name."
            )
        return None

    def ensure_dest(self, check_mode: bool, actions: list) -> str | None:
        return self.files.ensure_dest(check_mode, actions)

    def commit(self, name: str, record: dict, data_temp: str | None = None) -> None:
        """The data folder (if any) into place, then the record that makes it a snapshot; fsync the folder.

        Under the folder's lock, a record of this name that appeared meanwhile is never overwritten."""
        with folder_lock(self.dest):
            if os.path.exists(self.record_path(name)) or (data_temp and os.path.exists(self.data_path(name))):
                raise SnapshotError(
                    f"A volume snapshot named {name} appeared in {self.dest} while this one was "
                    "written: it is left alone and this one was not kept. Run again."
                )
            temp = self.temp(name, RECORD_SUFFIX)
            remove(temp)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(record, handle, indent=2, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            if data_temp:
                os.replace(data_temp, self.data_path(name))
            os.replace(temp, self.record_path(name))
            fsync_path(self.dest)

    def delete(self, name: str) -> None:
        """Remove a volume snapshot: its data folder first, its record last (an interruption leaves it listed)."""
        shutil.rmtree(self.data_path(name), ignore_errors=True)
        remove(self.record_path(name))
        fsync_path(self.dest)
