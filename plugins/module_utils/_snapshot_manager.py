# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""brain_snapshot's work, state by state (take, prune, remove, restore), for the module and for engine_preflight,
which takes the pre-upgrade snapshot in the same call as its checks."""

from __future__ import annotations

from ansible_collections.september.engine.plugins.module_utils._brain import (
    brain_identity,
    brain_state,
    engine_behind,
    locate_brain,
)
from ansible_collections.september.engine.plugins.module_utils._docker import docker_client
from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError
from ansible_collections.september.engine.plugins.module_utils._identity import check_key
from ansible_collections.september.engine.plugins.module_utils._restore import (
    abort_restore,
    check_restore,
    find_snapshot,
    install_restore,
    predict_previous,
    restore_data_at_risk,
    stage_restore,
)
from ansible_collections.september.engine.plugins.module_utils._snapshot_store import (
    SnapshotStore,
    check_name,
    default_name,
    diff_after,
)
from ansible_collections.september.engine.plugins.module_utils._snapshot_take import take_snapshot
from ansible_collections.september.engine.plugins.module_utils._timeutil import utc_now


def snapshot_defaults() -> dict:
    """brain_snapshot's options with their defaults, for a caller that snapshots in-process."""
    return dict(state="present", dest=None, name=None, kind="manual", engine_name=None, engine_key=None,
                allow_other_engine=False, method="backup", reason=None, verify="quick", retain_days=None,
                keep_last=None, keep_days=None, snapshot=None, previous_brain_retain_days=30, force=False,
                min_free_bytes=64 * 1024 * 1024, container=None, volume=None, path=None, brain_file="brain.sqlite",
                data_dir="/data", migrations_source="table", migrations_table="engine_schema_migrations",
                migrations_column="version")


NUMBERS = ("retain_days", "keep_last", "keep_days", "previous_brain_retain_days", "min_free_bytes")


class BrainSnapshot:
    """One state of a snapshot folder for one Engine: plans in check mode, acts otherwise."""

    def __init__(self, params: dict, check_mode: bool = False, *, diff: bool = False, warn=None, check_sdk=None,
                 client=None):
        """`params`: brain_snapshot's options. `warn(msg)` reports a warning, `check_sdk()` fails when the Docker
        SDK is missing, `client` an existing Docker client (engine_preflight snapshots in-process)."""
        self.params = params
        self.check_mode = check_mode
        self.diff = diff
        self.warn = warn or (lambda msg: None)
        self.check_sdk = check_sdk or (lambda: None)
        self.store = SnapshotStore(self.params["dest"])
        self.actions: list[str] = []
        self.warnings: list[str] = []
        self.result = dict(changed=False, snapshot=None, pruned=[], actions=self.actions)
        self.location = self.identity = self.engine = None
        self.client = client
        for option in NUMBERS:
            if (self.params[option] or 0) < 0:
                raise OptionsError(f"{option} must be 0 or more (got {self.params[option]}).")
        if self.params["engine_key"]:
            try:
                check_key(self.params["engine_key"])
            except ValueError as exc:
                raise OptionsError(f"engine_key: {exc}.") from exc

    def _locate(self) -> None:  # the brain, the Engine behind it, and who that Engine is
        if self.client is None:
            self.check_sdk()
            self.client = docker_client(self.params)
        self.location = locate_brain(self.params, self.client)
        self.engine = engine_behind(self.client, self.location) or {}
        self.identity = brain_identity(self.client, self.location, self.engine.get("container"))
        wanted = self.params["engine_key"]
        if wanted and wanted != self.identity["key"]:
            raise OptionsError(
                f"The brain at {self.location.path} belongs to Engine {self.identity['key']}, not to "
                f"engine_key={wanted}: check the location options and engine_key. Nothing was changed."
            )

    @property
    def key(self) -> str | None:
        return self.identity["key"] if self.identity else self.params["engine_key"]

    def _fields(self, reason: str | None, kind: str | None) -> dict:
        engine = dict(self.identity, inventory_name=self.params["engine_name"],
                      container=self.identity.get("container") or self.engine.get("container"),
                      image=self.engine.get("image"), image_id=self.engine.get("image_id"),
                      version=self.engine.get("version"))
        return dict(reason=reason, kind=kind, engine=engine, engine_version=engine["version"], image=engine["image"],
                    image_id=engine["image_id"], source=self.location.as_dict())

    def present(self) -> None:
        p = self.params
        name = check_name(p["name"] or default_name(utc_now(), self.identity["slug"], p["kind"]))
        name, existing, warning = self.store.resolve_name(name, self.key, self.identity["slug"],
                                                          self.identity.get("container"), self.location.path)
        if warning:
            self.warnings.append(warning)
        if existing is not None:
            self.store.ensure_dest(self.check_mode, self.actions)
        self.result["snapshot"] = existing or take_snapshot(
            self.store, self.location.path, name, verify=p["verify"], fields=self._fields(p["reason"], p["kind"]),
            migrations=p, min_free_bytes=p["min_free_bytes"], warnings=self.warnings, actions=self.actions,
            check_mode=self.check_mode, retain_days=p["retain_days"], method=p["method"], key=self.key,
            slug=self.identity["slug"],
        )
        self.pruned(protect=[self.result["snapshot"]["name"]])

    def _retention_key(self) -> str | None:
        """The Engine whose snapshots retention considers: located, given, or the only one in dest."""
        if self.key:
            return self.key
        keys = self.store.engine_keys(self.params["kind"]) - {None}
        if len(keys) > 1:
            raise OptionsError(
                f"{self.store.dest} holds {self.params['kind']} snapshots of several Engines "
                f"({', '.join(sorted(keys))}): say whose to prune with engine_key (or a location). Nothing was pruned."
            )
        return next(iter(keys), None)

    def pruned(self, protect=()) -> None:
        p = self.params
        if p["keep_last"] is not None or p["keep_days"] is not None:
            self.result["pruned"] = self.store.prune(
                p["keep_last"], p["keep_days"], kind=p["kind"], key=self._retention_key(), protect=protect,
                taken=self.result["snapshot"], check_mode=self.check_mode, actions=self.actions,
            )

    def absent(self) -> None:
        p = self.params
        self.result["snapshot"] = self.store.remove(check_name(p["name"]), p["force"], self.check_mode, self.actions)

    def restored(self) -> None:
        p = self.params
        entry = find_snapshot(self.store, p["snapshot"])
        plan = check_restore(self.store, self.location, entry, identity=self.identity, client=self.client,
                             allow_other_engine=p["allow_other_engine"], min_free_bytes=p["min_free_bytes"],
                             verify=self.check_mode)  # else staging verifies its copy: one read of the snapshot less
        self.result["snapshot"] = entry
        name = p["name"] and check_name(p["name"])
        try:
            if self.check_mode:
                previous = predict_previous(plan, name, p["previous_brain_retain_days"])
            else:
                stage_restore(plan)
                previous = install_restore(plan, client=self.client, name=name, reason=p["reason"],
                                           retain_days=p["previous_brain_retain_days"],
                                           fields=self._fields(None, "pre-restore"), migrations=p)
        finally:
            abort_restore(plan)
            self.actions.extend(plan.actions)
            self.warnings.extend(plan.warnings)
        self.result["previous_brain"] = previous
        self.result["data_at_risk"] = restore_data_at_risk(entry, previous, self.location.path, self.warnings)

    def diff_state(self) -> dict:
        state = dict(snapshots=self.store.names())
        if self.params["state"] == "restored":
            state["brain"] = brain_state(self.location.path, self.params)
        return state

    def run(self) -> dict:
        state = self.params["state"]
        if state in ("present", "restored"):
            self._locate()
        before = self.diff_state() if self.diff else None
        getattr(self, state)()
        self.result["changed"] = bool(self.actions)
        for warning in self.warnings:
            self.warn(warning)
        if before is not None:
            self.result["diff"] = dict(before=before, after=diff_after(self.params["state"], before, self.result))
        return self.result
