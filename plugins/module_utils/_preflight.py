# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Upgrade runbook's pre-flight for one Engine, before anything stops.

Lock the Engine (by its identity), find it, decide what this run does with it, probe its health, make
sure the target image is on the Docker host, and read what the target will do to the brain. Every gate
that refuses raises :class:`PreflightRefused` with a message that says what to do; the lock this run took
is released first, so a refusal leaves nothing behind.

What this run does with the Engine (``action``):
    upgrade   the Engine runs another release: snapshot, switch, verify
    verify    it runs the target, but a switch was never verified (a run died, or stopped for an outage):
              verify it to the same standard as a fresh switch, roll it back if it fails
    resume    it is down after a dead run (its lock expired, or its previous container is kept): the role
              brings it back first, then asks again
    none      it runs the target and nothing is left unverified: nothing to do (the lock is released)
"""

from __future__ import annotations

import sqlite3

from ansible_collections.september.engine.plugins.module_utils._compose_history import IN_PROGRESS, needs_resume
from ansible_collections.september.engine.plugins.module_utils._container import (
    EngineImage,
    env_without_image_defaults,
)
from ansible_collections.september.engine.plugins.module_utils._docker import DockerException, NotFound
from ansible_collections.september.engine.plugins.module_utils._engine import resolve_engine, split_repository
from ansible_collections.september.engine.plugins.module_utils._errors import EngineModuleError, OptionsError
from ansible_collections.september.engine.plugins.module_utils._health import EngineHealth
from ansible_collections.september.engine.plugins.module_utils._images import rollback_image_problem
from ansible_collections.september.engine.plugins.module_utils._lock import EngineLock, LockKeeper
from ansible_collections.september.engine.plugins.module_utils._measure import EngineMetrics, metrics_defaults
from ansible_collections.september.engine.plugins.module_utils._metrics import parse_time
from ansible_collections.september.engine.plugins.module_utils._migration_check import MigrationCheck
from ansible_collections.september.engine.plugins.module_utils._paths import require_absolute
from ansible_collections.september.engine.plugins.module_utils._release_record import preflight_gate
from ansible_collections.september.engine.plugins.module_utils._rollout import pre_upgrade_snapshot_options
from ansible_collections.september.engine.plugins.module_utils._snapshot_manager import BrainSnapshot, snapshot_defaults

NOTHING_CHANGED = "Nothing was changed."


class PreflightRefused(EngineModuleError):
    """A pre-flight gate refused the upgrade; nothing was changed."""


def target_image(engine: dict, repository: str | None, version: str) -> str:
    """The image to upgrade to: ``<repository>:<version>`` (the Engine's own repository by default)."""
    repo = repository or engine.get("repository") or split_repository((engine.get("previous") or {}).get("image"))[0]
    if not repo:
        raise OptionsError(
            "The Engine's image repository is not known (no container, no recorded previous image): give "
            "engine_image_repository (for example registry.example.com/september-engine)."
        )
    return f"{repo}:{version}"


def unverified_switch(engine: dict) -> bool:
    """Whether the Engine was switched and the switch never verified (a dead run, an outage stop).

    A Compose Engine's last switch, as its state file records it: one a run left "in progress" or never verified,
    unless it is a finished rollback or the Engine runs where going back would take it (the release the switch
    came from: the switch never happened or was undone), which an upgrade starts from (see _compose_history).
    """
    previous = engine.get("previous") or {}
    if engine.get("deployment") == "container":
        return bool(previous.get("container"))  # kept until the new container is verified (state=finalized)
    last = (engine.get("compose") or {}).get("last_switch") or {}
    return needs_resume(last, bool(engine.get("running")), engine.get("image"))


def decide_action(engine: dict, image: str, dead_run: bool = False) -> str:
    """upgrade | verify | resume | none, from what Docker says of the Engine (see the module docstring).

    `dead_run`: this run took the Engine's lock over from a run whose lock expired. An Engine that is down
    for another reason (an operator stopped it) is not started behind anyone's back: the health gate says so.
    """
    unverified = unverified_switch(engine)
    if not engine.get("running"):
        return "resume" if (unverified or dead_run) else "upgrade"
    if engine.get("image") != image:
        return "resume" if unverified else "upgrade"  # a dead run's switch to another release: go back first
    return "verify" if unverified else "none"


def switched_at(engine: dict, client) -> float | None:
    """When the Engine's current container was made (the switch), epoch seconds; None when unknown."""
    if not engine.get("container_id"):
        return None
    try:
        created = client.containers.get(engine["container_id"]).attrs.get("Created")
    except (NotFound, DockerException):
        return None
    try:
        return parse_time(created) if created else None
    except ValueError:
        return None


class Preflight:
    """One Engine's pre-flight; ``run()`` returns the module's ``preflight`` dict."""

    def __init__(self, params: dict, client, check_mode: bool = False, hide=None, warnings: list | None = None):
        self.p = params
        self.client = client
        self.check_mode = check_mode
        self.hide = hide
        self.lock: EngineLock | None = None
        self.lock_plan: dict | None = None
        self.changed = False
        self.warnings: list[str] = [] if warnings is None else warnings
        self.name = params.get("inventory_name") or params.get("container_name") or params.get("compose_dir")

    # ------------------------------------------------------------------ lock

    def _take_lock(self, engine: dict) -> dict | None:
        spec = self.p.get("lock")
        if not spec:
            return None
        identity = engine.get("identity") or {}
        # The lock is keyed by the Engine's identity (its brain's storage): two inventories naming the Engine
        # differently, or a second run, collide on it.
        self.lock = EngineLock(spec["dir"], self.name, key=identity.get("key"), option="lock.dir")
        plan = self.lock.acquire(spec["owner"], spec["run_id"], int(spec.get("ttl") or 1200), self.check_mode)
        self.lock_plan = plan
        self.changed = self.changed or (not self.check_mode and plan["action"] != "refresh")
        holder = plan["before"]
        return dict(
            path=self.lock.path,
            action=plan["action"],
            taken_over=(
                dict(
                    owner=holder.owner,
                    run_id=holder.run_id,
                    acquired_at=holder.acquired_at,
                    expired_at=holder.expires_at,
                )
                if plan["action"] == "take_over" and holder is not None
                else None
            ),
        )

    def _release_lock(self) -> bool:
        """Release the lock this pre-flight took; one the run held already ("refresh") only with lock.release_held
        (the role's second pre-flight of an Engine it brought back, resume.yml): another invocation sharing the run
        id (a pinned engine_run_id, a promotion) may hold that one in the middle of a switch."""
        if self.lock is None or self.check_mode or self.lock_plan is None:
            return False
        taken = ("acquire", "take_over", "refresh") if self.p["lock"].get("release_held") else ("acquire", "take_over")
        if self.lock_plan["action"] not in taken:
            return False
        self.lock.release(self.p["lock"]["run_id"])
        return True

    # ------------------------------------------------------------------ steps

    def _refuse(self, message: str, **details) -> None:
        raise PreflightRefused(f"{self.name}: {message} {NOTHING_CHANGED}", **details)

    def _health(self, engine: dict) -> dict:
        params = dict(
            self.p,
            container=engine.get("container") if engine.get("exists") else None,
            url=self.p.get("url") or engine.get("url"),
            wait=False,
            wait_timeout=0,
            interval=1.0,
            healthy_streak=1,
            fail_fast=True,
            crash_loop_restarts=3,
            log_lines=50,
        )
        if not params["container"] and not params["url"]:
            return dict(is_healthy=False, failure="unreachable", failure_detail="no container and no url to probe")
        return EngineHealth(params).run()

    def _image(self, image: str) -> dict:
        params = dict(
            name=image,
            pull=self.p["pull"],
            registry_username=self.p.get("registry_username"),
            registry_password=self.p.get("registry_password"),
        )
        result = EngineImage(self.client, params, check_mode=self.check_mode).run()
        self.changed = self.changed or (result["changed"] and not self.check_mode)
        return result["image"]

    def _registry_auth(self) -> dict | None:
        if not self.p.get("registry_username"):
            return None
        return dict(username=self.p["registry_username"], password=self.p.get("registry_password"))

    def _migration(self, engine: dict, image: str, current_image: str | None) -> tuple[dict, MigrationCheck]:
        params = dict(
            self.p,
            target_image=image,
            current_image=current_image,
            container=engine["container"],
            volume=None,
            path=None,
            brain_file=self.p.get("brain_file") or "brain.sqlite",
            boot_test=False,
            boot_timeout=self.p.get("boot_timeout") or 120,
            boot_test_dir=self.p.get("boot_test_dir") or (self.p.get("snapshot") or {}).get("dest"),
            api_key_env="ENGINE_API_KEY",
            env=None,
        )
        check = MigrationCheck(params, hide=self.hide, client=self.client)
        return check.run(), check

    def _boot_test(self, check: MigrationCheck, migration: dict, engine: dict) -> None:
        """The runbook's N-1 test in staging: the target booted on a copy of the brain (then the current image on
        the migrated copy), when O(boot_test) says so: V(auto) for a major release or a migration that may drop or
        rewrite data. Check mode starts no container (boot_test_reasons say whether it would)."""
        wanted = self.p.get("boot_test") or "auto"
        if wanted == "never" or (wanted == "auto" and not migration["boot_test_reasons"]) or self.check_mode:
            return
        if not migration["boot_test_reasons"]:
            migration["boot_test_reasons"] = ["engine_upgrade_boot_test=always"]
        check.params["env"] = self._engine_env(engine)
        check.boot_test(migration)
        self._boot_gate(migration, migration["target_image"])

    def _engine_env(self, engine: dict) -> dict:
        """The environment the Engine's creator gave it (not what its image sets: the target's own image does), for
        its boot-test containers, so that they boot as it would; without the key the boot test replaces by a
        throwaway one and the brain path it points at the copy."""
        try:
            container = self.client.containers.get(engine["container"])
            image_env = self.client.images.get(container.attrs.get("Image")).attrs.get("Config", {}).get("Env")
        except (NotFound, DockerException):
            return {}
        listed = env_without_image_defaults(container.attrs.get("Config", {}).get("Env"), image_env)
        env = dict(item.split("=", 1) for item in listed if "=" in item)
        for name in ("ENGINE_API_KEY", "SQLITE_DB_PATH"):
            env.pop(name, None)
        return env

    def _health_gate(self, health: dict) -> None:
        if not health.get("is_healthy") and self.p["require_healthy"]:
            self._refuse(
                f"it is not healthy before the upgrade ({health.get('failure')}: {health.get('failure_detail')}). "
                "Repair it first, or set engine_upgrade_require_healthy=false."
            )

    def _boot_gate(self, migration: dict, image: str) -> None:
        boot = migration.get("boot_test")
        if boot is None or boot["target_healthy"]:
            return
        target = boot.get("target") or {}
        self._refuse(
            f"{image} did not come up healthy on a copy of its brain ({target.get('failure')}: "
            f"{target.get('message')}); it was boot-tested first for {' and '.join(migration['boot_test_reasons'])}. "
            "Nothing was stopped: do not upgrade to this release (engine_upgrade_boot_test=never skips the test).",
            migration=migration,
        )

    def _gates(self, engine: dict, health: dict, migration: dict | None, image: str) -> None:
        self._health_gate(health)
        if migration is None:
            return
        if migration["is_downgrade"]:
            self._refuse(
                f"its brain holds migrations {', '.join(migration['not_shipped'])} that {image} does not ship: it "
                "would fail with MIGRATION_REQUIRED. Use the rollback playbook (it restores a snapshot) to go back."
            )
        if migration.get("needs_acknowledgement") and not self.p["allow_destructive"]:
            destructive = [m["name"] for m in migration["pending"] if m["classification"] == "destructive"]
            unknown = migration.get("unclassified") or []
            parts = []
            if destructive:
                parts.append(f"destructive migrations {', '.join(destructive)} (they drop or rewrite data)")
            if unknown:
                parts.append(
                    f"migrations {', '.join(unknown)} that this host's SQLite could not classify (treated as "
                    "destructive: they may drop or rewrite data)"
                )
            self._refuse(
                f"{image} ships {' and '.join(parts)}; a rollback would lose what is written after the snapshot. "
                "Read the migration guide, then acknowledge with engine_upgrade_allow_destructive=true (the "
                f"pre-upgrade snapshot is then kept at least {migration.get('snapshot_retention_days') or 7} days).",
                migration=migration,
            )

    # ------------------------------------------------------------------ run

    def run(self) -> dict:
        # Folders that later runs must find again: refused when relative, before anything.
        require_absolute(
            {
                "lock.dir": (self.p.get("lock") or {}).get("dir"),
                "snapshot.dest": (self.p.get("snapshot") or {}).get("dest"),
            }
        )
        engine = resolve_engine(self.client, self.p)
        lock = self._take_lock(engine)
        try:
            return self._run(engine, lock)
        except BaseException:
            self._release_lock()
            raise

    def _run(self, engine: dict, lock: dict | None) -> dict:
        image = target_image(engine, self.p.get("image_repository"), self.p["target_version"])
        action = decide_action(engine, image, dead_run=bool(lock and lock["taken_over"]))
        previous = engine.get("previous") or {}
        if action in ("verify", "resume") or (not engine.get("running") and previous.get("container")):
            origin = dict(
                version=previous.get("version"), image=previous.get("image"), image_id=previous.get("image_id")
            )
        else:
            origin = dict(version=engine.get("version"), image=engine.get("image"), image_id=engine.get("image_id"))
        result = dict(
            action=action,
            engine=engine,
            identity=engine.get("identity"),
            lock=lock,
            image=image,
            target_version=self.p["target_version"],
            **{"from": origin},
            target=None,
            health=None,
            migration=None,
            switched_at=None,
            baseline_container=None,
        )
        if action == "resume":
            if engine.get("running") and engine.get("image") != image:
                # Putting the old container back under a brain the new release may have migrated leaves the Engine
                # crash-looping; that is rollback.yml's work (brain restore), or this switch's verification.
                self._refuse(
                    f"a dead run switched it to {engine.get('image')}, which runs unverified. Re-run with that target "
                    f"version to verify the switch (rolled back with its brain if it fails), or roll it back with "
                    f"rollback.yml, before upgrading it to {image}.")
            result["resume"] = self._resume_plan(engine, image)
            if result["resume"]["how"] in ("container_back", "compose_back"):
                result["resume"] = self._back_unless_migrated(engine, result["resume"])
            return result
        if action == "none":
            released = self._release_lock()
            result["lock"] = None if lock is None else dict(lock, action="released" if released else lock["action"])
            return result
        health = self._health(engine)
        result["health"] = health
        if action == "verify":
            # Verify to the same standard as a fresh switch: measured since the switch, against the history of
            # the previous container (kept) or the brain's events before the switch.
            result["switched_at"] = switched_at(engine, self.client)
            result["baseline_container"] = previous.get("container")
            result["baseline"] = self._baseline(engine, end=result["switched_at"], previous=previous.get("container"))
            return result
        # A release that was rolled back is refused (until acknowledged) before anything else (_release_record).
        result["rolled_back_release"] = preflight_gate(self)
        self._health_gate(health)  # before a pull: an Engine that is not healthy is not upgraded anyway
        # What a rollback would go back to must be there (or pullable) before anything stops.
        problem = rollback_image_problem(self.client, origin, pull=self.p["pull"], registry_auth=self._registry_auth())
        if problem:
            self._refuse(problem)
        result["target"] = self._image(image)
        migration = check = None
        if result["target"]["present"]:
            migration, check = self._migration(engine, image, engine.get("image"))
        result["migration"] = migration
        self._gates(engine, health, migration, image)
        if migration is not None:
            self._boot_test(check, migration, engine)
        result["baseline"] = self._baseline(engine)
        result["snapshot"] = self._snapshot(engine, origin, migration)
        return result

    # ------------------------------------------------------------------ the baseline and the snapshot, in-process

    def _baseline(self, engine: dict, end: float | None = None, previous: str | None = None) -> dict | None:
        """The Engine's measures before its switch (engine_metrics' work): its recent turns, reaching further back
        while they are too few. For an unverified switch: the kept previous container's log, else the brain's
        events, up to the switch."""
        spec = self.p.get("baseline")
        if not spec:
            return None
        params = dict(
            metrics_defaults(),
            window_seconds=spec["window_seconds"],
            baseline_max_seconds=spec["max_seconds"],
            min_turns=spec["min_turns"],
            slices=1,
            source=spec["source"],
            container=previous or engine.get("container"),
            **{k: v for k, v in self.p.items() if k.startswith("docker_")},
        )
        if end is not None:
            params["end"] = end
            if not previous:
                params["source"] = "brain"  # the old container is gone: its turns are in the brain's events
        return EngineMetrics(params, client=self.client).measure()

    def _snapshot(self, engine: dict, origin: dict, migration: dict | None) -> dict | None:
        """The pre-upgrade snapshot (brain_snapshot's work), bound to this Engine, while its lock is kept alive."""
        spec = self.p.get("snapshot")
        if not spec:
            return None
        options = pre_upgrade_snapshot_options(
            dict(identity=engine.get("identity"), migration=migration, **{"from": origin}), spec,
            self.p["target_version"], (self.p.get("lock") or {}).get("run_id"))
        params = dict(
            snapshot_defaults(),
            state="present",
            engine_name=self.p.get("inventory_name"),
            **options,
            container=engine["container"],
            **{k: self.p[k] for k in ("migrations_source", "migrations_table", "migrations_column")},
            **{k: v for k, v in self.p.items() if k.startswith("docker_")},
        )
        manager = BrainSnapshot(params, self.check_mode, warn=self.warnings.append, client=self.client)
        if self.lock is not None and not self.check_mode:
            lock = self.p["lock"]
            with LockKeeper(self.lock, lock["owner"], lock["run_id"], int(lock.get("ttl") or 1200)):
                done = manager.run()
        else:
            done = manager.run()
        self.changed = self.changed or (done["changed"] and not self.check_mode)
        return dict(done["snapshot"] or {}, pruned=done.get("pruned") or [])

    def _back_unless_migrated(self, engine: dict, plan: dict) -> dict:
        """The dead run's new container may have migrated the brain before it went down: the kept container's
        release would then refuse it (MIGRATION_REQUIRED) and crash-loop. Start the dead run's container again
        instead: the Engine serves on that release, and the second pre-flight refuses to go on from an unverified
        switch (re-run with that target, or rollback.yml, which restores the brain). Unreadable: put back.
        Compose alike: going back is to the image the unfinished switch came from; starting is what the project
        names (the dead run's release once it edited the files, which it did before that release could run)."""
        if plan["how"] == "compose_back":
            last = plan.get("last_switch") or {}
            back_to = last.get("to") if last.get("action") == "rolled_back" else last.get("from")
            ref, start = back_to, "compose_start"
        else:
            previous = engine.get("previous") or {}
            ref, start = previous.get("image"), "container_start"
            back_to = previous.get("image_id") or ref
        if not back_to or not engine.get("exists"):
            return plan  # no container made after the rename (a run died between the two): nothing migrated it
        try:
            migration = self._migration(engine, back_to, engine.get("image"))[0]
        except (EngineModuleError, DockerException, sqlite3.Error, OSError) as exc:
            self.warnings.append(
                f"{self.name}: whether {ref} can start on the brain the dead run left could not be read ({exc}); "
                "what ran before is put back."
            )
            return plan
        if not migration["not_shipped"]:
            return plan
        return dict(
            plan,
            how=start,
            why=(
                f"the brain holds migration(s) {', '.join(migration['not_shipped'])}, which {ref} does not ship: "
                f"{engine.get('image')}, which applied them, is started again instead"
            ),
        )

    def _resume_plan(self, engine: dict, image: str) -> dict:
        """How to bring back an Engine a dead run left down (the role does it, then runs the pre-flight again)."""
        previous = engine.get("previous") or {}
        last = (engine.get("compose") or {}).get("last_switch") or {}
        if engine.get("deployment") == "compose":
            # Running, it runs something else than where going back leads (see unverified_switch): go back. Down:
            # go back from a switch left in progress, else start what the project names.
            back = last.get("result") == IN_PROGRESS or bool(engine.get("running"))
            return dict(how="compose_back" if back else "compose_start", last_switch=last or None)
        if previous.get("container") and engine.get("image") != image:
            return dict(how="container_back", previous=previous.get("container"))
        return dict(how="container_start", previous=previous.get("container"))
