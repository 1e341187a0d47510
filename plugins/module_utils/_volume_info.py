# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which Engine a location names (its brain's location, container, identity and volume), and volume_snapshot_info:
an Engine's volume snapshots, the one a rollback restores, and the variables a provider's task files receive."""

from __future__ import annotations

import os

from ansible_collections.september.engine.plugins.module_utils._brain import (
    BrainLocation,
    brain_identity,
    engine_behind,
    locate_brain,
)
from ansible_collections.september.engine.plugins.module_utils._docker import docker_client
from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError, SnapshotError
from ansible_collections.september.engine.plugins.module_utils._identity import check_key
from ansible_collections.september.engine.plugins.module_utils._volume_copy import describe_volume
from ansible_collections.september.engine.plugins.module_utils._volume_restore import restore_problem, verify_reflink
from ansible_collections.september.engine.plugins.module_utils._volume_store import (
    BUILTIN,
    VolumeStore,
    check_name,
    choose,
    matching,
)


class Located:
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


def hook_vars(hook: dict, engine: dict, volume: dict, dest: str, check_mode: bool, chosen: dict | None) -> dict:
    """The ``engine_volume_hook`` a provider's task files receive (docs/volume-snapshots.md, "The contract").

    `hook`: what the caller says of the run (action, reason, run_id, snapshot_name, host, inventory_name, phase);
    `engine`: the located identity and container; `volume`: describe_volume(); `chosen`: the snapshot to restore.
    """
    action = hook.get("action") or "snapshot"
    identity = engine.get("identity") or {}
    snapshot = None
    if chosen is not None:
        keys = ("name", "provider", "id", "created_at", "size", "kind", "engine_version", "data", "path", "record_path")
        snapshot = {key: chosen.get(key) for key in keys}
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

    def _located(self) -> Located | None:
        if not any(self.p.get(option) for option in ("container", "volume", "path")):
            return None
        if self.client is None:
            self.check_sdk()
            self.client = docker_client(self.p)
        return Located(self.p, self.client)

    def _chosen(self, key: str | None, warnings: list) -> tuple[dict | None, list]:
        p = self.p
        if p.get("name"):
            entry = self.store.get(p["name"])
            if entry is None:
                return None, [f"There is no volume snapshot {p['name']} in {self.store.dest}. Nothing was changed."]
        elif key:
            entry = choose(self.store.list(), key, version=p.get("version"), kind=p.get("kind"))
            if entry is None:
                kind = f"{p['kind']} " if p.get("kind") else ""
                taken = f" taken on {p['version']}" if p.get("version") else ""
                return None, [
                    f"No {kind}volume snapshot of Engine {key}{taken} in {self.store.dest}. Nothing was changed."
                ]
        else:
            return None, []
        problem = restore_problem(entry, key, p.get("allow_other_engine"), warnings, builtin_only=False)
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
