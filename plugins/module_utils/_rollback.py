# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Rollback runbook for one Engine: check first, stop second, and never leave the Engine down.

    1. find the Engine and what to go back to: the exact image recorded before the switch (id and reference),
       or a release the operator names;
    2. before anything stops: the image is on the Docker host, the brain is read against it (does it hold
       migrations the old release does not ship?), and when the brain must be restored, the snapshot is chosen
       by its manifest (this Engine's, taken on that release), checked (checksum, quick_check, that it is this
       Engine's, room to stage it, nothing else holding the brain) and staged beside the brain;
    3. drain and stop the Engine; install the staged brain (the replaced one is kept as a snapshot); switch the
       container (or the Compose service) back to the old image; wait until it is healthy.
    If a step after the stop fails, what was serving is started again (the brain as it was when the restore did
    not happen), and the error says so.
"""

from __future__ import annotations

import time

from ansible_collections.september.engine.plugins.module_utils._bad_window import replay_after_restore
from ansible_collections.september.engine.plugins.module_utils._brain import brain_identity, locate_brain
from ansible_collections.september.engine.plugins.module_utils._compose import ComposeSwitch
from ansible_collections.september.engine.plugins.module_utils._container import EngineContainer, EngineImage
from ansible_collections.september.engine.plugins.module_utils._engine import resolve_engine
from ansible_collections.september.engine.plugins.module_utils._errors import EngineModuleError, OptionsError
from ansible_collections.september.engine.plugins.module_utils._health import EngineHealth
from ansible_collections.september.engine.plugins.module_utils._image_ref import parse_image_ref
from ansible_collections.september.engine.plugins.module_utils._lock import lock_keeper
from ansible_collections.september.engine.plugins.module_utils._migration_check import MigrationCheck
from ansible_collections.september.engine.plugins.module_utils._migrations import version_bump
from ansible_collections.september.engine.plugins.module_utils._paths import require_absolute
from ansible_collections.september.engine.plugins.module_utils._release_record import record_rollback
from ansible_collections.september.engine.plugins.module_utils._restore import (
    abort_restore,
    check_restore,
    complete_restore,
    find_snapshot,
    install_restore,
    predict_previous,
    restore_data_at_risk,
    stage_restore,
)
from ansible_collections.september.engine.plugins.module_utils._snapshot_store import SnapshotStore, choose_snapshot

RESTORE_CHOICES = ("auto", "always", "never")


class RollbackRefused(EngineModuleError):
    """The rollback cannot be done as asked; nothing was changed."""


class RollbackFailed(EngineModuleError):
    """A step after the stop failed; what was serving was started again (see the message)."""


class _Params:
    """A module stand-in for the Compose manager: the rollback's module, with the manager's own options."""

    def __init__(self, module, params: dict):
        self._module = module
        self.params = params
        self.check_mode = module.check_mode

    def __getattr__(self, name):
        return getattr(self._module, name)


def choose_target(engine: dict, version: str | None, image: str | None) -> tuple[str, str | None]:
    """(image reference, exact image id or None) to go back to.

    An explicit ``image`` wins. Else the image recorded before the last switch (the kept previous container, its
    label, or the Compose state file), exactly (its id), when no ``version`` is asked or it is that release; else
    ``version`` in the Engine's repository. Never a reference rebuilt from a version label.
    """
    if image:
        return image, None
    previous = engine.get("previous") or {}
    recorded = previous.get("image")
    if recorded and (not version or previous.get("version") == version or _tag(recorded) == version):
        return recorded, previous.get("image_id")
    if not version and not recorded and engine.get("rolled_back_from") and engine.get("image"):
        # Rolled back already (a second rollback.yml, or one after the upgrade's own rollback): it stays where it is.
        return engine["image"], engine.get("image_id")
    if version:
        repository = engine.get("repository") or (_repository(recorded) if recorded else None)
        if not repository:
            raise RollbackRefused(
                "The Engine's image repository is not known (no container, no recorded previous image): give the "
                "image to go back to (engine_rollback_image). Nothing was changed."
            )
        return f"{repository}:{version}", None
    raise RollbackRefused(
        "No previous release is recorded for this Engine (no kept previous container, no label, no Compose state "
        "file): say where to go back to with engine_rollback_version=<tag>. Nothing was changed."
    )


def _tag(ref: str) -> str | None:
    return parse_image_ref(ref).tag


def _repository(ref: str) -> str:
    return parse_image_ref(ref).repository


class Rollback:
    """One Engine's rollback; ``run()`` returns the module's ``rollback`` dict."""

    def __init__(self, module, client):
        self.module = module
        self.p = module.params
        self.client = client
        self.check_mode = module.check_mode
        self.actions: list[str] = []
        self.warnings: list[str] = getattr(module, "notes", [])  # reported by the module, succeeded or not
        self.timings: dict = {}
        self.changed = False
        self.started = time.monotonic()

    # ------------------------------------------------------------------ the managers the modules use too

    def _container(self, state: str, image: str | None = None) -> dict:
        # state=rolled_back goes back to the image recorded before the switch by its id, whatever `image` points at.
        params = dict(name=self.engine["container"], image=image, state=state,
                      stop_timeout=self.p["drain_timeout"], previous_suffix=self.p["previous_suffix"],
                      failed_suffix=self.p["failed_suffix"], start=True, remove_failed=False, lock=None)
        manager = EngineContainer(self.client, params, self.check_mode, warn=self.warnings.append)
        result = manager.run()
        self.actions.extend(result["container"].get("actions") or [])
        self.changed = self.changed or result["changed"]
        return result

    def _compose(self, state: str, image: str | None = None) -> dict:
        params = dict(project_src=self.p["compose_dir"], service=self.p["compose_service"],
                      compose_file=self.p["compose_file"], project_name=self.p["project_name"],
                      env_file=self.p["env_file"], compose_command=self.p["compose_command"],
                      state=state, version=None, image=image, allow_repository_change=True,
                      stop_timeout=self.p["drain_timeout"], pull="never", state_file=None,
                      data_dir=self.p["data_dir"], lock=None, **{k: self.p[k] for k in self._docker_keys()})
        result = ComposeSwitch(_Params(self.module, params), self.client).run()
        self.actions.extend(result["compose"].get("actions") or [])
        self.changed = self.changed or result["changed"]
        return result

    def _docker_keys(self) -> list:
        return [k for k in self.p if k.startswith("docker_")]

    def _switch(self, state: str, image: str | None = None) -> dict:
        if self.p["deployment"] == "container":
            return self._container(state, image)
        return self._compose(state, image)

    def _health(self) -> dict:
        params = dict(self.p, container=self.engine["container"] if self.p["deployment"] == "container" else None,
                      url=self.p.get("url") or self.engine.get("url"), wait=True,
                      wait_timeout=self.p["health_timeout"], interval=0.5, healthy_streak=self.p["healthy_streak"],
                      fail_fast=True, crash_loop_restarts=3, log_lines=50)
        if not params["container"] and not params["url"]:
            return dict(is_healthy=False, failure="unreachable", failure_detail="no container and no url to probe")
        return EngineHealth(params).run()

    def _timed(self, name: str, started: float) -> None:
        self.timings[name] = round(time.monotonic() - started, 2)

    # ------------------------------------------------------------------ steps before the stop

    def _brain_container(self) -> str:
        """A container that mounts the Engine's brain: its own, or, when that one is gone (removed outside the run),
        the previous container a switch kept (the same volume at /data)."""
        previous = (self.engine.get("previous") or {}).get("container")
        if not self.engine.get("exists") and previous:
            return previous
        return self.engine["container"]

    def _image(self, ref: str) -> dict:
        result = EngineImage(self.client, dict(name=ref, pull=self.p["pull"]), check_mode=self.check_mode).run()
        if result["changed"] and not self.check_mode:
            self.changed = True
        image = result["image"]
        if not image["present"] and not self.check_mode:
            raise RollbackRefused(f"The image to go back to, {ref}, is not on this Docker host. Nothing was changed.")
        return image

    def _refuse_going_forward(self, target: str, version: str | None, migration: dict) -> None:
        """A rollback goes back. A release newer than the running one, or one that would migrate the brain, is an
        upgrade (a typo at 3 a.m.: the bad version for the good one): refused, unless it is the release recorded
        before the last switch (an operator's own downgrade being undone)."""
        if target == (self.engine.get("previous") or {}).get("image"):
            return
        newer = version_bump(self.engine.get("version"), version) in ("major", "minor", "patch")
        pending = [item["name"] for item in migration.get("pending") or []]
        if not (newer or pending):
            return
        why = f"{target} is newer than the running {self.engine.get('image')}" if newer else (
            f"{target} would apply migration(s) {', '.join(pending)} to the brain")
        raise RollbackRefused(
            f"{why}: a rollback only goes back. Check engine_rollback_version (the release to go back TO), or "
            "upgrade with upgrade.yml (snapshot, canary, verification). Nothing was changed."
        )

    def _needs_restore(self, target: str) -> tuple[bool, dict]:
        """(restore the brain?, the migration check of the brain against the target): the check always runs, it
        also tells a rollback from an upgrade (_refuse_going_forward)."""
        choice = self.p["restore_brain"]
        params = dict(self.p, target_image=target, current_image=None, container=self._brain_container(),
                      volume=None, path=None, boot_test=False, boot_timeout=120, boot_test_dir=None,
                      api_key_env="ENGINE_API_KEY", env=None)
        try:
            migration = MigrationCheck(params, client=self.client).run()
        except EngineModuleError as exc:
            if choice != "never":
                raise
            self.warnings.append(f"The brain was not read against {target} ({exc.msg}); restore_brain=never.")
            return False, {}
        return choice != "never" and (choice == "always" or migration["is_downgrade"]), migration

    def _plan_restore(self, version: str | None):
        location = locate_brain(dict(container=self._brain_container(), data_dir=self.p["data_dir"],
                                     brain_file=self.p["brain_file"]), self.client)
        identity = brain_identity(self.client, location, self.engine["container"])
        store = SnapshotStore(self.p["snapshot_dir"], option="snapshot_dir")
        if self.p["snapshot"]:
            entry = find_snapshot(store, self.p["snapshot"])
        else:
            entry = choose_snapshot(store, identity["key"], version=version, kind="pre-upgrade")
            if entry is None:
                raise RollbackRefused(
                    f"The brain holds migrations {version or 'the old release'} does not ship, and no pre-upgrade "
                    f"snapshot of this Engine ({identity['key']}) taken on {version or 'that release'} is in "
                    f"{store.dest}: give one with engine_rollback_snapshot=<name or path>. Nothing was changed."
                )
        # Outside check mode the staging copy is verified while it is made (its sha256, then quick_check on it):
        # one read of the snapshot instead of two.
        plan = check_restore(store, location, entry, identity=identity, client=self.client,
                             allow_other_engine=self.p["allow_other_engine"], engine_may_run=True,
                             engine_container=self.engine["container"], min_free_bytes=self.p["min_free_bytes"],
                             verify=self.check_mode)
        return plan, location, identity

    # ------------------------------------------------------------------ run

    def run(self) -> dict:
        self.engine = resolve_engine(self.client, self.p)
        spec = self.p.get("lock")
        if not spec:
            return self._run()
        # The Engine's lock, keyed by its identity: held (and refreshed) while the rollback works; a lock this run
        # held before (the upgrade's) stays held, one taken here is released at the end.
        key = (self.engine.get("identity") or {}).get("key")
        options = dict(spec, key=key or f"container:{self.engine.get('container')}",
                       engine=self.p.get("inventory_name"))
        with lock_keeper(options, self.check_mode, self.warnings.append):
            return self._run()

    def _run(self) -> dict:
        target, exact_id = choose_target(self.engine, self.p["version"], self.p["image"])
        result = dict(engine=self.p.get("inventory_name") or self.engine.get("container"), rolled_back=False,
                      from_version=self.engine.get("version"), to_version=None, image=target, image_id=exact_id,
                      reason=self.p["reason"], kind="none", brain_restored=False, snapshot=None, previous_brain=None,
                      data_at_risk=None, replay=None, failed_container=None, healthy=None, health=None,
                      brought_back=None, release_record=None)
        image = self._image(target)
        result["to_version"] = image.get("version") or _tag(target)
        result["image_id"] = exact_id or image.get("id")
        on_target = self.engine.get("image") == target and (not exact_id or self.engine.get("image_id") == exact_id)
        unfinished = bool((self.engine.get("previous") or {}).get("container"))
        if on_target and not unfinished:
            if not self.engine.get("running"):
                # Already on the old release but down (a drain that failed, a dead run): start it, nothing else.
                started = time.monotonic()
                self._switch("started")
                self._timed("start_seconds", started)
            result.update(self._finish(result))
            return result
        restore, migration = self._needs_restore(target)
        result["migration"] = migration or None
        self._refuse_going_forward(target, result["to_version"], migration)
        plan = None
        try:
            if restore:
                plan, _location, _identity = self._plan_restore(result["to_version"])
                result["snapshot"] = plan.entry["name"]
                if not self.check_mode:
                    started = time.monotonic()
                    stage_restore(plan)  # the Engine still serves while the verified copy waits beside its brain
                    self._timed("stage_seconds", started)
                    self._plan_actions(plan)
            self._stop_restore_switch(result, plan, target, exact_id)
        finally:
            if plan is not None:
                self._complete(plan)  # a kept brain whose commit waited is committed, whatever happened after
                self.actions.extend(plan.actions)
                self.warnings.extend(plan.warnings)
                abort_restore(plan)
        result["release_record"] = record_rollback(self, result)  # upgrades refuse this release until acknowledged
        result.update(self._finish(result))
        return result

    def _stop_restore_switch(self, result: dict, plan, target: str, exact_id: str | None) -> None:
        started = time.monotonic()
        if self.engine.get("exists") or self.p["deployment"] == "compose":
            self._switch("stopped")
        else:  # its container was removed outside the run: nothing serves, nothing to stop
            self.actions.append(f"no container {self.engine['container']} to stop (removed outside the run)")
        self._timed("stop_seconds", started)
        try:
            if plan is not None:
                started = time.monotonic()
                if self.check_mode:
                    previous = predict_previous(plan, None, self.p["previous_brain_retain_days"])
                else:
                    # The replaced brain's hash and manifest wait until the old release is back (complete_restore).
                    previous = install_restore(plan, client=self.client, reason=self.p["reason"],
                                               retain_days=self.p["previous_brain_retain_days"],
                                               fields=self._fields(), migrations=self.p, defer_keep=True)
                self._timed("restore_seconds", started)
                self._plan_actions(plan)
                result.update(brain_restored=not plan.noop, previous_brain=previous,
                              data_at_risk=restore_data_at_risk(plan.entry, previous, plan.brain, self.warnings))
                self.changed = self.changed or not plan.noop
                result["replay"] = self._replay(plan, previous)
            started = time.monotonic()
            switched = self._switch("rolled_back", target)
            self._timed("switch_seconds", started)
        except EngineModuleError as exc:
            result["brought_back"] = self._bring_back()
            raise RollbackFailed(
                f"The rollback to {target} failed after the Engine was stopped: {exc.msg} "
                f"{result['brought_back']}"
            ) from exc
        body = switched.get("container") or switched.get("compose") or {}
        result.update(rolled_back=True, kind="image+brain" if result["brain_restored"] else "image",
                      failed_container=body.get("failed_container"))
        if plan is not None and not self.check_mode:
            kept = complete_restore(plan)  # the Engine is starting meanwhile: hash and manifest of the kept brain
            if kept is not None:
                result["previous_brain"] = kept
                if isinstance(result.get("replay"), dict) and "bad_window" in result["replay"]:
                    result["replay"]["bad_window"] = dict(name=kept["name"], path=kept["path"])

    def _replay(self, plan, previous) -> dict | None:
        """What the bad release wrote, replayed onto the restored brain where the old schema holds it, while the
        Engine is stopped (brain_replay's work). It never fails the rollback: a replay that cannot be done leaves
        the restored brain as it was, the bad-window brain kept, and says why in a warning."""
        if self.p["replay"] == "off" or plan.noop:
            return None
        started = time.monotonic()
        try:
            replay = replay_after_restore(plan, previous, client=self.client, mode=self.p["replay"],
                                          tables=self.p.get("replay_tables"), migrations=self.p,
                                          check_mode=self.check_mode, warnings=self.warnings)
        except EngineModuleError as exc:
            self.warnings.append(f"The bad window was not replayed ({exc.msg}); what the failed release wrote stays "
                                 "in the kept brain.")
            return dict(mode=self.p["replay"], error=exc.msg)
        finally:
            self._timed("replay_seconds", started)
        if replay and replay.get("totals", {}).get("replayed"):
            self.changed = True
        return replay

    def _plan_actions(self, plan) -> None:
        """The restore's actions so far, in the order they happened: the stage before the stop, the install before the
        switch back (the rest, such as keeping the replaced brain, after it)."""
        self.actions.extend(plan.actions)
        plan.actions.clear()

    def _complete(self, plan) -> None:
        try:
            complete_restore(plan)
        except EngineModuleError as exc:
            self.warnings.append(exc.msg)

    def _bring_back(self) -> str:
        """Start what was serving again (never leave the Engine down); say what was done."""
        if self.check_mode:
            return ""
        try:
            self._switch("started")
        except EngineModuleError as exc:
            return f"Starting it again failed too ({exc.msg}): the Engine is DOWN and needs a hand."
        return "The Engine was started again as it was before the rollback (it still runs the release it ran)."

    def _finish(self, result: dict) -> dict:
        if self.check_mode:
            return dict(healthy=None)
        started = time.monotonic()
        self.engine = resolve_engine(self.client, self.p)  # the container may be a new one
        health = self._health()
        self._timed("healthy_seconds", started)
        if health.get("is_healthy") and self.p["deployment"] == "compose":
            self._settle_compose()
        self.timings["total_seconds"] = round(time.monotonic() - self.started, 2)
        return dict(healthy=health.get("is_healthy"), health=health)

    def _settle_compose(self) -> None:
        """Record the Compose service's last switch as verified (it runs what it went back to, healthy), so that a
        later upgrade starts from it; a record that cannot be written is a warning, not a failed rollback."""
        try:
            self._compose("finalized")
        except EngineModuleError as exc:
            self.warnings.append(f"The rollback was not marked verified in the Compose state file ({exc.msg}); a "
                                 "later upgrade still starts from the release that runs.")

    def _fields(self) -> dict:
        identity = self.engine.get("identity") or {}
        return dict(reason=self.p["reason"], kind="pre-restore",
                    engine=dict(identity, inventory_name=self.p.get("inventory_name"),
                                image=self.engine.get("image"), image_id=self.engine.get("image_id"),
                                version=self.engine.get("version")),
                    engine_version=self.engine.get("version"), image=self.engine.get("image"),
                    image_id=self.engine.get("image_id"))


def check_options(params: dict) -> None:
    """Bad input: one error that says what to fix, before anything is touched."""
    if params["restore_brain"] not in RESTORE_CHOICES:
        raise OptionsError(f"restore_brain must be one of {', '.join(RESTORE_CHOICES)}.")
    for name in ("drain_timeout", "health_timeout"):
        if params[name] < 0:
            raise OptionsError(f"{name} must be 0 or more seconds (got {params[name]}).")
    if params["healthy_streak"] < 1:
        raise OptionsError(f"healthy_streak must be 1 or more (got {params['healthy_streak']}).")
    require_absolute({"snapshot_dir": params.get("snapshot_dir"), "lock.dir": (params.get("lock") or {}).get("dir")})
