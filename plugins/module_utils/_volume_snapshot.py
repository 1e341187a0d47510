# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""volume_snapshot's work, state by state: take (the reflink provider), record (any provider), restore (the reflink
provider, _volume_restore.py), remove.

    VolumeSnapshot(params, check_mode).run()        present | recorded | restored | absent
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3

from ansible_collections.september.engine.plugins.module_utils._docker import docker_client
from ansible_collections.september.engine.plugins.module_utils._errors import (
    BrainError,
    EngineModuleError,
    InsufficientSpaceError,
    OptionsError,
    SnapshotError,
)
from ansible_collections.september.engine.plugins.module_utils._fileops import check_space, is_disk_full
from ansible_collections.september.engine.plugins.module_utils._identity import check_key
from ansible_collections.september.engine.plugins.module_utils._snapshot_store import COLLECTION_VERSION, retain_until
from ansible_collections.september.engine.plugins.module_utils._timeutil import iso, parse_iso, utc_now
from ansible_collections.september.engine.plugins.module_utils._volume_copy import (
    brain_pinned,
    copy_tree,
    files_problem,
    hash_files,
    list_tree,
    paused,
    predict_method,
    settle_brain,
    sync_tree,
    tree_size,
    volume_facts,
)
from ansible_collections.september.engine.plugins.module_utils._volume_info import Located
from ansible_collections.september.engine.plugins.module_utils._volume_restore import VolumeRestore
from ansible_collections.september.engine.plugins.module_utils._volume_store import (
    BUILTIN,
    DATA_SUFFIX,
    FORMAT,
    SAME,
    VolumeStore,
    check_name,
    check_record,
    default_name,
    describe_owner,
    diff_after,
    prunable,
    record_binding,
)

NUMBERS = ("retain_days", "keep_last", "keep_days", "previous_retain_days", "min_free_bytes")


def _check_options(params: dict) -> None:
    for option in NUMBERS:
        if (params.get(option) or 0) < 0:
            raise OptionsError(f"{option} must be 0 or more (got {params[option]}). Nothing was changed.")
    if params.get("engine_key"):
        try:
            check_key(params["engine_key"])
        except ValueError as exc:
            raise OptionsError(f"engine_key: {exc}. Nothing was changed.") from exc
    for option in ("name", "snapshot"):
        if params.get(option):
            check_name(params[option], option)


class VolumeSnapshot(VolumeRestore):
    """One state of an Engine's volume snapshots: plans in check mode, acts otherwise."""

    def __init__(
        self, params: dict, check_mode: bool = False, *, diff: bool = False, warn=None, check_sdk=None, client=None
    ):
        _check_options(params)
        self.p = params
        self.check_mode = check_mode
        self.diff = diff
        self.warn = warn or (lambda msg: None)
        self.check_sdk = check_sdk or (lambda: None)
        self.client = client
        self.store = VolumeStore(params["dest"])
        self.actions: list[str] = []
        self.warnings: list[str] = []
        self.result = dict(changed=False, volume_snapshot=None, pruned=[], actions=self.actions)
        self.record_input = check_record(params["record"], utc_now()) if params["state"] == "recorded" else None
        self.at: Located | None = None

    def _locate(self) -> None:
        if self.client is None:
            self.check_sdk()
            self.client = docker_client(self.p)
        self.at = Located(self.p, self.client)

    def _name(self, kind: str) -> str:
        return check_name(self.p["name"] or default_name(utc_now(), self.at.identity["slug"], kind))

    # ------------------------------------------------------------------ present: the reflink provider takes one

    def present(self) -> None:
        kind = self.p["kind"]
        name = self._name(kind)
        existing = self.store.get(name)
        if existing is not None:
            self.result["volume_snapshot"] = self._reuse(existing)
        else:
            volume = volume_facts(self.client, self.at.volume_location)
            self.result["volume"] = volume
            self.result["volume_snapshot"] = self._take(
                name, volume, kind, self.p["reason"], self.p["retain_days"], self.p["quiesce"]
            )
        self._prune(protect=[name])

    def _reuse(self, existing: dict) -> dict:
        """An existing snapshot of this name: re-used when it is this Engine's, by reflink, intact; else refused."""
        key = self.at.identity["key"]
        if record_binding(existing["record"], key) != SAME:
            raise SnapshotError(
                f"Volume snapshot {existing['name']} in {self.store.dest} belongs to "
                f"{describe_owner(existing['record'])}, not to this Engine ({key}): it is left alone. Choose another "
                "name. Nothing was changed."
            )
        if existing["provider"] != BUILTIN:
            raise SnapshotError(
                f"Volume snapshot {existing['name']} was taken by provider {existing['provider']} (id "
                f"{existing['id']}), not by {BUILTIN}: choose another name. Nothing was changed."
            )
        problem = files_problem(self.store.data_path(existing["name"]), existing["record"].get("files") or [])
        if problem:
            raise SnapshotError(
                f"Volume snapshot {existing['name']} already exists but is damaged ({problem}); it is kept as evidence "
                "and not overwritten. Remove it (state=absent) or choose another name."
            )
        return existing

    def _quiesced(self, quiesce: str | None, timing: dict):
        if quiesce == "pause":
            return paused(self.client, self.at.volume_location, self.actions, timing)
        if quiesce == "brain":
            return brain_pinned(os.path.join(self.result["volume"]["folder"], self.p["brain_file"]))
        return contextlib.nullcontext()

    def _take(
        self,
        name: str,
        volume: dict,
        kind: str,
        reason: str | None,
        retain_days: int | None,
        quiesce: str | None,
        raw_ok: bool = False,
    ) -> dict:
        """A snapshot of the volume folder, committed as `name`; its store entry (predicted in check mode).

        `raw_ok` (the content a restore replaces): a brain that cannot be settled is kept byte for byte instead."""
        folder, clone = volume["folder"], self.p["clone"]
        items = list_tree(folder, self.warnings)
        method = predict_method(folder, self.store.dest, clone)
        if clone == "always" and method != "reflink":
            raise SnapshotError(
                f"clone=always: {folder} ({volume.get('filesystem') or 'unknown file system'}) cannot be cloned into "
                f"{self.store.dest}: clones need XFS with reflink or Btrfs, with dest on the volume's file system. Use "
                "clone=auto (copies where it cannot clone). Nothing was changed."
            )
        check_space(
            [(self.store.dest, 0 if method == "reflink" else tree_size(items), "copy of the volume")],
            self.p["min_free_bytes"],
        )
        planned = []
        created = self.store.ensure_dest(self.check_mode, planned)
        planned.append(
            f"snapshot the volume folder {folder} to {self.store.data_path(name)} ({method}"
            f"{', ' + quiesce if quiesce else ''}, kind {kind})"
        )
        fields = self.at.fields(self.p, kind, reason)
        started = utc_now()
        if self.check_mode:
            self.actions.extend(planned)
            return dict(
                name=name,
                provider=BUILTIN,
                id=name,
                created_at=iso(started, "milliseconds"),
                size=tree_size(items),
                kind=kind,
                engine_key=self.at.identity["key"],
                engine_version=fields["engine_version"],
                method=method,
                raw_copy=False,
                path=self.store.data_path(name),
                record_path=self.store.record_path(name),
                record=None,
                retain_until=retain_until(started, retain_days),
            )
        self.actions.extend(planned)
        temp = self.store.temp(name, DATA_SUFFIX)
        shutil.rmtree(temp, ignore_errors=True)  # a dead run's hidden leftover: ours
        try:
            record = self._copy(temp, folder, quiesce, raw_ok)
            record.update(
                fields,
                format=FORMAT,
                name=name,
                provider=BUILTIN,
                id=name,
                created_at=iso(started, "milliseconds"),
                retain_until=retain_until(started, retain_days),
                source=volume,
                collection_version=COLLECTION_VERSION,
                data={},
            )
            self.store.commit(name, record, temp)
            created = None
        except (OSError, sqlite3.DatabaseError) as exc:
            if is_disk_full(exc):
                raise InsufficientSpaceError(
                    f"The file system of {self.store.dest} filled up while writing the volume "
                    f"snapshot ({exc}); nothing was kept."
                ) from exc
            raise SnapshotError(
                f"Cannot write the volume snapshot {self.store.data_path(name)}: {exc}. Nothing was kept."
            ) from exc
        finally:
            shutil.rmtree(temp, ignore_errors=True)
            self.store.files.undo_dest(created)
        return self.store.get(name)

    def _copy(self, temp: str, folder: str, quiesce: str | None, raw_ok: bool) -> dict:
        """Copy the folder into `temp` (quiesced), settle and verify its brain, hash it: the record's own part."""
        timing: dict = {}
        with self._quiesced(quiesce, timing) as frozen:
            items = list_tree(folder, self.warnings)  # listed again in the quiet: exactly what is copied
            digests = copy_tree(items, folder, temp, self.p["clone"])
        brain_path = os.path.join(temp, self.p["brain_file"])
        raw = False
        try:
            brain = settle_brain(brain_path, self.p["verify"], self.p, self.warnings)
        except BrainError as exc:
            if not raw_ok:
                raise
            self.warnings.append(f"The replaced volume's brain cannot be read ({exc.msg}): it is kept as a raw copy.")
            shutil.rmtree(temp)
            digests = copy_tree(items, folder, temp, self.p["clone"])
            brain, raw = None, True
        else:
            for suffix in ("", "-wal", "-journal"):
                digests.pop(self.p["brain_file"] + suffix, None)  # settled: hashed afresh
        if brain is None and not raw:
            self.warnings.append(f"There is no {self.p['brain_file']} in the volume: it was copied as it is.")
        kept = [item for item in items if os.path.lexists(os.path.join(temp, item["path"]))]
        files = hash_files(kept, temp, digests)
        sync_tree(temp)
        return dict(
            method=digests[None],
            quiesce=quiesce,
            paused=frozen or [],
            paused_seconds=timing.get("paused_seconds"),
            files=files,
            size=tree_size(files),
            brain=brain,
            raw_copy=raw,
            sqlite_version=sqlite3.sqlite_version,
        )

    def _prune(self, protect=()) -> None:
        p = self.p
        if p["keep_last"] is None and p["keep_days"] is None:
            return
        names = prunable(
            self.store.list(), utc_now(), self.at.identity["key"], p["kind"], p["keep_last"], p["keep_days"], protect
        )
        for name in names:
            self.actions.append(f"prune {p['kind']} volume snapshot {name}")
            if not self.check_mode:
                self.store.delete(name)
        self.result["pruned"] = names

    # ------------------------------------------------------------------ recorded: what another provider took

    def recorded(self) -> None:
        given = self.record_input
        name = self._name(self.p["kind"])
        existing = self.store.get(name)
        if existing is not None:
            same = record_binding(existing["record"], self.at.identity["key"]) == SAME and (
                existing["provider"],
                existing["id"],
            ) == (given["provider"], given["id"])
            if not same:
                raise SnapshotError(
                    f"{self.store.record_path(name)} already records {existing['provider']} snapshot {existing['id']} "
                    f"of {describe_owner(existing['record'])}: it is left alone. Choose another name. Nothing was "
                    "recorded."
                )
            self.result["volume_snapshot"] = existing
            return
        created = parse_iso(given["created"])
        record = dict(
            self.at.fields(self.p, self.p["kind"], self.p["reason"]),
            format=FORMAT,
            name=name,
            provider=given["provider"],
            id=given["id"],
            created_at=given["created"],
            size=given["size"],
            data=given["data"],
            retain_until=retain_until(created, self.p["retain_days"]),
            source=self.at.describe(),
            raw_copy=False,
            collection_version=COLLECTION_VERSION,
        )
        self.store.ensure_dest(self.check_mode, self.actions)
        self.actions.append(f"record {given['provider']} snapshot {given['id']} as volume snapshot {name}")
        if self.check_mode:
            self.result["volume_snapshot"] = dict(self.store.entry(name, record), has_data=False, path=None)
            return
        self.store.commit(name, record)
        self.result["volume_snapshot"] = self.store.get(name)

    # ------------------------------------------------------------------ restored: the reflink provider restores

    # ------------------------------------------------------------------ absent

    def absent(self) -> None:
        entry = self.store.get(self.p["name"])
        self.result["volume_snapshot"] = entry
        if entry is None:
            return
        until = parse_iso(entry["retain_until"])
        if until and until > utc_now() and not self.p["force"]:
            raise SnapshotError(
                f"Volume snapshot {entry['name']} is retained until {entry['retain_until']} and was "
                "not removed. Set force=true to remove it anyway."
            )
        self.actions.append(f"remove volume snapshot {entry['name']}")
        if entry["provider"] != BUILTIN:
            self.warnings.append(
                f"Only the record of {entry['provider']} snapshot {entry['id']} was removed: the "
                "snapshot itself is the provider's, delete it there."
            )
        if not self.check_mode:
            self.store.delete(entry["name"])

    # ------------------------------------------------------------------ run

    def _diff_state(self) -> dict:
        state = dict(snapshots=self.store.names())
        if self.p["state"] == "restored":
            with contextlib.suppress(EngineModuleError, OSError):
                folder = volume_facts(self.client, self.at.volume_location)["folder"]
                state["files"] = {
                    item["path"]: item["sha256"]
                    for item in hash_files(list_tree(folder, []), folder, {})
                    if item["kind"] == "file"
                }
        return state

    def run(self) -> dict:
        state = self.p["state"]
        if state != "absent":
            self._locate()
        before = self._diff_state() if self.diff else None
        getattr(self, state)()
        self.result["changed"] = bool(self.actions)
        for warning in self.warnings:
            self.warn(warning)
        if before is not None:
            self.result["diff"] = dict(before=before, after=diff_after(state, before, self.result))
        return self.result
