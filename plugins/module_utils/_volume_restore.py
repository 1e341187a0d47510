# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""volume_snapshot state=restored (the reflink provider's restore), and what decides whether a volume snapshot can be
restored at all (whose it is, which provider, its files and brain), for the module and for volume_snapshot_info."""

from __future__ import annotations

import os
import shutil
import sqlite3

from ansible_collections.september.engine.plugins.module_utils._brain import (
    reading,
    snapshot_brain_problem,
)
from ansible_collections.september.engine.plugins.module_utils._brain_rows import data_at_risk, table_row_counts
from ansible_collections.september.engine.plugins.module_utils._errors import (
    EngineBusyError,
    EngineModuleError,
    ForeignSnapshotError,
    InsufficientSpaceError,
    NotFoundError,
    OptionsError,
    SnapshotError,
)
from ansible_collections.september.engine.plugins.module_utils._fileops import check_space, is_disk_full
from ansible_collections.september.engine.plugins.module_utils._timeutil import utc_now
from ansible_collections.september.engine.plugins.module_utils._volume_copy import (
    REPLACED,
    STAGING,
    files_problem,
    holders_of,
    list_tree,
    predict_method,
    stage_tree,
    swap_in,
    tree_matches,
    tree_size,
    volume_facts,
)
from ansible_collections.september.engine.plugins.module_utils._volume_store import (
    BUILTIN,
    SAME,
    UNKNOWN,
    default_name,
    describe_owner,
    record_binding,
)


class VolumeRestore:
    """The restored state of VolumeSnapshot (a mixin: it uses the manager's store, location and _take())."""

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


def restore_problem(entry: dict, key: str | None, allow_other_engine: bool, warnings: list, builtin_only: bool = True):
    """Why `entry` cannot be restored over the Engine `key`'s volume (an EngineModuleError to raise), or None.

    Checks what the record says (whose it is, a raw copy, a reflink snapshot's files there; with `builtin_only`, this
    module's restore, a snapshot of another provider too: its own restore tasks restore it); the files' sha256 and the
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
    if builtin_only and entry["provider"] != BUILTIN:
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
    if entry["provider"] == BUILTIN and not entry["has_data"]:
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
    problem = snapshot_brain_problem(os.path.join(entry["path"], brain["file"]), most=3)
    if problem:
        raise SnapshotError(f"Volume snapshot {entry['name']}: its brain {problem}. Nothing was changed.")
