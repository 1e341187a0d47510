# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""volume_snapshot's work, state by state, and volume_snapshot_info's: take (reflink provider), record (any
provider), restore (reflink provider), remove; list, choose, verify and the variables a provider's task files get.

    VolumeSnapshot(params, check_mode).run()        present | recorded | restored | absent
    VolumeSnapshotInfo(params, check_mode).run()    snapshots, chosen, volume, engine, hook, problems
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3

from ansible_collections.september.engine.plugins.module_utils._brain import (
    BrainLocation,
    brain_identity,
    connect_readonly,
    engine_behind,
    integrity_problems,
    locate_brain,
    reading,
)
from ansible_collections.september.engine.plugins.module_utils._brain_rows import data_at_risk, table_row_counts
from ansible_collections.september.engine.plugins.module_utils._docker import docker_client
from ansible_collections.september.engine.plugins.module_utils._errors import (
    BrainError,
    EngineBusyError,
    EngineModuleError,
    ForeignSnapshotError,
    InsufficientSpaceError,
    NotFoundError,
    OptionsError,
    SnapshotError,
)
from ansible_collections.september.engine.plugins.module_utils._fileops import check_space, is_disk_full
from ansible_collections.september.engine.plugins.module_utils._identity import check_key
from ansible_collections.september.engine.plugins.module_utils._snapshot_store import COLLECTION_VERSION, retain_until
from ansible_collections.september.engine.plugins.module_utils._timeutil import iso, parse_iso, utc_now
from ansible_collections.september.engine.plugins.module_utils._volume_copy import (
    REPLACED,
    STAGING,
    brain_pinned,
    copy_tree,
    describe_volume,
    files_problem,
    hash_files,
    holders_of,
    list_tree,
    paused,
    predict_method,
    settle_brain,
    stage_tree,
    swap_in,
    sync_tree,
    tree_matches,
    tree_size,
    volume_facts,
)
from ansible_collections.september.engine.plugins.module_utils._volume_store import (
    BUILTIN,
    DATA_SUFFIX,
    FORMAT,
    SAME,
    UNKNOWN,
    VolumeStore,
    check_name,
    check_record,
    choose,
    default_name,
    describe_owner,
    diff_after,
    matching,
    prunable,
    record_binding,
)

NUMBERS = ("retain_days", "keep_last", "keep_days", "previous_retain_days", "min_free_bytes")


class _Located:
    """The Engine behind a location option: its brain's location, its container and who it is."""

    def __init__(self, params: dict, client):
        self.client = client
        self.location = locate_brain(params, client)
        self.engine = engine_behind(client, self.location) or {}
        self.identity = brain_identity(client, self.location, self.engine.get("container"))
        wanted = params.get("engine_key")
        if wanted and wanted != self.identity["key"]:
            raise OptionsError(
                f"The volume at {os.path.dirname(self.location.path)} belongs to Engine {self.identity['key']}, not "
                f"to engine_key={wanted}: check the location options and engine_key. Nothing was changed."
            )

    @property
    def volume_location(self) -> BrainLocation:
        """The location as a mount (a brain located by path inside a volume is that volume's)."""
        if self.location.mount_type or not self.identity.get("volume"):
            return self.location
        return BrainLocation(
            path=self.location.path,
            source="path",
            volume=self.identity["volume"],
            mount_type="volume",
            mount_source=os.path.dirname(self.location.path),
        )

    def describe(self) -> dict:
        return describe_volume(self.client, self.volume_location)

    def fields(self, params: dict, kind: str, reason: str | None) -> dict:
        engine = dict(
            self.identity,
            inventory_name=params.get("engine_name"),
            container=self.identity.get("container") or self.engine.get("container"),
            image=self.engine.get("image"),
            image_id=self.engine.get("image_id"),
            version=self.engine.get("version"),
        )
        return dict(
            kind=kind,
            reason=reason,
            run_id=params.get("run_id"),
            engine=engine,
            engine_version=engine["version"],
            image=engine["image"],
            image_id=engine["image_id"],
        )


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


class VolumeSnapshot:
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
        self.at: _Located | None = None

    def _locate(self) -> None:
        if self.client is None:
            self.check_sdk()
            self.client = docker_client(self.p)
        self.at = _Located(self.p, self.client)

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
                created_at=iso(started),
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
                created_at=iso(started),
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

    def restored(self) -> None:
        entry = self.store.get(self.p["snapshot"])
        if entry is None:
            raise NotFoundError(
                f"There is no volume snapshot {self.p['snapshot']} in {self.store.dest} (no "
                f"{self.store.record_path(self.p['snapshot'])}): september.engine.volume_snapshot_info lists them. "
                "Nothing was changed."
            )
        self.result["volume_snapshot"] = entry
        self.result["previous"] = None
        self.result["data_at_risk"] = None
        problem = restore_problem(entry, self.at.identity["key"], self.p["allow_other_engine"], self.warnings)
        if problem:
            raise problem
        volume = volume_facts(self.client, self.at.volume_location)
        self.result["volume"] = volume
        folder = volume["folder"]
        self._leftovers(folder)
        reasons = holders_of(self.client, self.at.volume_location, folder, self.p["brain_file"])
        if reasons:
            raise EngineBusyError(
                f"Refusing to restore over the volume at {folder}: it is in use ({'; '.join(reasons)}). Stop the "
                "Engine first (the role engine_volume_snapshot does), then run again. Nothing was changed.",
                holders=reasons,
            )
        files = entry["record"].get("files") or []
        if tree_matches(folder, files, self.warnings):
            return
        verify_reflink(entry)
        self._restore(entry, volume, files)

    def _leftovers(self, folder: str) -> None:
        if os.path.lexists(os.path.join(folder, REPLACED)):
            raise SnapshotError(
                f"An interrupted restore left {os.path.join(folder, REPLACED)}: it holds the volume's content from "
                "before that restore (kept as a pre-restore volume snapshot too when that restore got so far). Move "
                "it out of the volume, then run again. Nothing was changed."
            )
        if os.path.lexists(os.path.join(folder, STAGING)):
            self.actions.append(f"remove {os.path.join(folder, STAGING)} (an interrupted restore's staged copy)")
            if not self.check_mode:
                shutil.rmtree(os.path.join(folder, STAGING), ignore_errors=True)

    def _restore(self, entry: dict, volume: dict, files) -> None:
        folder, clone = volume["folder"], self.p["clone"]
        stage = predict_method(entry["path"], folder, clone)
        keep = predict_method(folder, self.store.dest, clone)
        current = list_tree(folder, self.warnings)
        check_space(
            [
                (folder, 0 if stage == "reflink" else entry["size"] or tree_size(files), "staged snapshot"),
                (self.store.dest, 0 if keep == "reflink" else tree_size(current), "copy of the current content"),
            ],
            self.p["min_free_bytes"],
        )
        name = self._previous_name()
        reason = f"pre-restore: volume replaced by restore of {entry['name']}" + (
            f": {self.p['reason']}" if self.p["reason"] else ""
        )
        self.actions.append(f"stage volume snapshot {entry['name']} in {os.path.join(folder, STAGING)} ({stage})")
        if self.check_mode:
            previous = self._take(name, volume, "pre-restore", reason, self.p["previous_retain_days"], None)
            self.actions.append(f"swap the content of {folder} for the staged snapshot")
            self.result["previous"] = _summary(previous)
            self.result["data_at_risk"] = self._at_risk(entry, os.path.join(folder, self.p["brain_file"]))
            return
        staging = os.path.join(folder, STAGING)
        try:
            stage_tree(entry["path"], files, staging, clone)
            previous = self._take(
                name, volume, "pre-restore", reason, self.p["previous_retain_days"], None, raw_ok=True
            )
            self.result["previous"] = _summary(previous)
            swap_in(folder, staging, self.actions)
        except OSError as exc:
            if is_disk_full(exc):
                raise InsufficientSpaceError(
                    f"A file system filled up while the volume was restored ({exc}); the volume was not changed."
                ) from exc
            raise SnapshotError(
                f"Cannot stage the volume snapshot in {folder} ({exc}); the volume was not changed."
            ) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if previous and not previous["raw_copy"]:
            self.result["data_at_risk"] = self._at_risk(entry, os.path.join(previous["path"], self.p["brain_file"]))

    def _previous_name(self) -> str:
        if self.p["name"]:
            if self.store.get(self.p["name"]) is not None:
                raise SnapshotError(
                    f"A volume snapshot named {self.p['name']} exists already: choose another name "
                    "for the replaced content. Nothing was changed."
                )
            return self.p["name"]
        base = default_name(utc_now(), self.at.identity["slug"], "pre-restore")
        for number in range(1, 1000):
            candidate = base if number == 1 else f"{base}-{number}"
            if self.store.get(candidate) is None:
                return candidate
        raise SnapshotError(f"Too many volume snapshots named {base}-* in {self.store.dest}.")

    def _at_risk(self, entry: dict, replaced_brain: str) -> dict | None:
        """{table: rows} the restore takes away (rows of the replaced brain the snapshot's lacks); None if unknown."""
        counts = []
        try:
            for path in (os.path.join(entry["path"], self.p["brain_file"]), replaced_brain):
                with reading(path, predict_only=True) as conn:
                    counts.append(table_row_counts(conn))
        except (EngineModuleError, sqlite3.DatabaseError) as exc:
            self.warnings.append(f"data_at_risk is unknown: {getattr(exc, 'msg', exc)}")
            return None
        return data_at_risk(counts[0], counts[1])

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


def _summary(entry: dict | None) -> dict | None:
    if entry is None:
        return None
    return dict(
        name=entry["name"],
        path=entry["path"],
        size=entry["size"],
        raw_copy=entry["raw_copy"],
        retain_until=entry["retain_until"],
    )


def restore_problem(entry: dict, key: str | None, allow_other_engine: bool, warnings: list):
    """Why `entry` cannot be restored over the Engine `key`'s volume (an EngineModuleError to raise), or None.

    Checks what the record says (whose it is, which provider, a raw copy, its files there); the files' sha256 and the
    brain's quick_check are verify_reflink()'s."""
    binding = record_binding(entry["record"], key)
    if binding != SAME:
        owner = describe_owner(entry["record"])
        if not allow_other_engine:
            reason = "names no Engine" if binding == UNKNOWN else f"belongs to {owner}, not to this Engine ({key})"
            return ForeignSnapshotError(
                f"Volume snapshot {entry['name']} {reason}: restoring it would give this Engine another Engine's "
                "volume (another user's memory). Nothing was changed. Choose a snapshot of this Engine, or set "
                "allow_other_engine=true to move it here on purpose.",
                snapshot_engine=entry["engine_key"],
                engine=key,
            )
        warnings.append(
            f"Volume snapshot {entry['name']} belongs to {owner}, not to this Engine ({key}); it is "
            "restored anyway (allow_other_engine=true)."
        )
    if entry["provider"] != BUILTIN:
        return OptionsError(
            f"Volume snapshot {entry['name']} was taken by provider {entry['provider']} (id {entry['id']}): restore it "
            "with that provider's restore tasks (engine_volume_snapshot_restore_tasks, see docs/volume-snapshots.md); "
            f"this module restores {BUILTIN} snapshots only. Nothing was changed."
        )
    if entry["raw_copy"]:
        return SnapshotError(
            f"Volume snapshot {entry['name']} is a raw copy of a volume whose brain could not be read "
            "(kept as evidence): it cannot be restored. Choose another snapshot. Nothing was changed."
        )
    if not entry["has_data"]:
        return SnapshotError(
            f"Volume snapshot {entry['name']} has no files ({entry['record_path']} names a folder "
            f"{entry['record_path'][:-5]} that is missing). Nothing was changed."
        )
    return None


def verify_reflink(entry: dict) -> None:
    """SnapshotError unless a reflink snapshot's files match their record and its brain passes quick_check."""
    record = entry["record"]
    problem = files_problem(entry["path"], record.get("files") or [])
    if problem:
        raise SnapshotError(
            f"Volume snapshot {entry['name']} fails its checksums ({problem}): it is damaged or was "
            "altered, and was not restored. Nothing was changed."
        )
    brain = record.get("brain") or {}
    if not brain.get("file"):
        return
    try:
        conn = connect_readonly(os.path.join(entry["path"], brain["file"]), immutable=True)
    except BrainError as exc:
        raise SnapshotError(
            f"Volume snapshot {entry['name']}: its brain cannot be read ({exc.msg}). Nothing was changed."
        ) from exc
    try:
        problems = integrity_problems(conn, "quick")
    finally:
        conn.close()
    if problems:
        raise SnapshotError(
            f"Volume snapshot {entry['name']}: its brain fails quick_check ({'; '.join(problems[:3])})."
            " Nothing was changed."
        )


# ---------------------------------------------------------------------- volume_snapshot_info


def hook_vars(hook: dict, engine: dict, volume: dict, dest: str, check_mode: bool, chosen: dict | None) -> dict:
    """The ``engine_volume_hook`` a provider's task files receive (docs/volume-snapshots.md, "The contract").

    `hook`: what the caller says of the run (action, reason, run_id, snapshot_name, host, inventory_name, phase);
    `engine`: the located identity and container; `volume`: describe_volume(); `chosen`: the snapshot to restore.
    """
    action = hook.get("action") or "snapshot"
    identity = engine.get("identity") or {}
    snapshot = None
    if chosen is not None:
        snapshot = {
            key: chosen.get(key)
            for key in (
                "name",
                "provider",
                "id",
                "created_at",
                "size",
                "kind",
                "engine_version",
                "data",
                "path",
                "record_path",
            )
        }
    return dict(
        action=action,
        phase=hook.get("phase") or ("snapshot" if action == "snapshot" else "check"),
        reason=hook.get("reason"),
        description=hook.get("description") or hook.get("reason"),
        run_id=hook.get("run_id"),
        engine=hook.get("inventory_name") or identity.get("container"),
        host=hook.get("host"),
        container=engine.get("container"),
        version=engine.get("version"),
        identity=dict(key=identity.get("key"), slug=identity.get("slug")),
        volume=volume.get("volume"),
        mount_type=volume.get("mount_type"),
        source=volume.get("folder") or volume.get("mountpoint"),
        driver=volume.get("driver"),
        options=volume.get("options") or {},
        filesystem=volume.get("filesystem"),
        snapshot_name=hook.get("snapshot_name") or (chosen or {}).get("name"),
        snapshot_dir=dest,
        snapshot=snapshot,
        check_mode=check_mode,
        tags={
            "september.engine/engine": hook.get("inventory_name") or identity.get("container") or "",
            "september.engine/identity": identity.get("key") or "",
            "september.engine/run": hook.get("run_id") or "",
            "september.engine/reason": hook.get("reason") or "",
        },
    )


class VolumeSnapshotInfo:
    """volume_snapshot_info: an Engine's volume snapshots, the one a rollback would restore, and its volume."""

    def __init__(self, params: dict, check_mode: bool = False, *, warn=None, check_sdk=None, client=None):
        if params.get("engine_key"):
            try:
                check_key(params["engine_key"])
            except ValueError as exc:
                raise OptionsError(f"engine_key: {exc}.") from exc
        if params.get("name"):
            check_name(params["name"])
        self.p = params
        self.check_mode = check_mode
        self.warn = warn or (lambda msg: None)
        self.check_sdk = check_sdk or (lambda: None)
        self.client = client
        self.store = VolumeStore(params["dest"])

    def _located(self) -> _Located | None:
        if not any(self.p.get(option) for option in ("container", "volume", "path")):
            return None
        if self.client is None:
            self.check_sdk()
            self.client = docker_client(self.p)
        return _Located(self.p, self.client)

    def _chosen(self, key: str | None, warnings: list) -> tuple[dict | None, list]:
        p = self.p
        if p.get("name"):
            entry = self.store.get(p["name"])
            if entry is None:
                return None, [f"There is no volume snapshot {p['name']} in {self.store.dest}."]
        elif key:
            entry = choose(self.store.list(), key, version=p.get("version"), kind=p.get("kind"))
            if entry is None:
                return None, [
                    f"No {p.get('kind') or ''} volume snapshot of Engine {key}"
                    f"{' taken on ' + p['version'] if p.get('version') else ''} in {self.store.dest}."
                ]
        else:
            return None, []
        problem = restore_problem(entry, key, p.get("allow_other_engine"), warnings)
        if problem:
            return entry, [problem.msg]
        if p.get("verify") and entry["provider"] == BUILTIN:
            try:
                verify_reflink(entry)
            except SnapshotError as exc:
                return entry, [exc.msg]
        return entry, []

    def run(self) -> dict:
        at = self._located()
        key = at.identity["key"] if at else self.p.get("engine_key")
        warnings: list[str] = []
        entries = self.store.list()
        listed = matching(
            entries, key=key, kind=self.p.get("kind"), version=self.p.get("version"), provider=self.p.get("provider")
        )
        chosen, problems = self._chosen(key, warnings)
        engine = volume = None
        if at is not None:
            engine = dict(
                identity=at.identity,
                container=at.identity.get("container") or at.engine.get("container"),
                image=at.engine.get("image"),
                version=at.engine.get("version"),
            )
            volume = at.describe()
        result = dict(
            changed=False,
            snapshots=listed,
            chosen=chosen,
            is_restorable=chosen is not None and not problems,
            problems=problems,
            engine=engine,
            volume=volume,
        )
        for warning in warnings:
            self.warn(warning)
        if self.p.get("hook") is not None:
            if at is None:
                raise OptionsError("hook needs the Engine's location (container, volume or path).")
            result["hook"] = hook_vars(self.p["hook"], engine, volume, self.store.dest, self.check_mode, chosen)
        return result
