# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""engine_preflight's decisions: what a run does with an Engine, the target image, the gates that refuse."""

from __future__ import annotations

from types import SimpleNamespace
from typing import ClassVar

import pytest

from ansible_collections.september.engine.plugins.module_utils import _preflight
from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError
from ansible_collections.september.engine.plugins.module_utils._lock import EngineLock
from ansible_collections.september.engine.plugins.module_utils._preflight import (
    Preflight,
    PreflightRefused,
    decide_action,
    target_image,
    unverified_switch,
)

RUNNING = {
    "deployment": "container",
    "running": True,
    "exists": True,
    "image": "engine:2.3.0",
    "repository": "engine",
    "previous": None,
    "container": "u1",
}


def engine(**changes) -> dict:
    return {**RUNNING, **changes}


@pytest.mark.parametrize(
    ("facts", "dead_run", "action"),
    [
        (engine(), False, "upgrade"),
        (engine(image="engine:2.4.0"), False, "none"),
        (engine(image="engine:2.4.0", previous={"container": "u1--previous"}), False, "verify"),
        (engine(running=False), False, "upgrade"),  # an operator stopped it: the health gate says so
        (engine(running=False), True, "resume"),  # a dead run left it down
        (engine(running=False, previous={"container": "u1--previous"}), False, "resume"),
        (engine(image="engine:2.3.1", previous={"container": "u1--previous"}), False, "resume"),  # other target
    ],
)
def test_decide_action(facts: dict, dead_run: bool, action: str) -> None:
    assert decide_action(facts, "engine:2.4.0", dead_run) == action


@pytest.mark.parametrize(
    ("last", "unverified"),
    [
        (None, False),
        ({"result": "ok"}, False),  # an older record: verified
        ({"result": "ok", "verified": True}, False),
        ({"result": "ok", "verified": False}, True),
        ({"result": "in progress"}, True),
    ],
)
def test_a_compose_switch_is_unverified_until_finalized(last, unverified: bool) -> None:
    facts = engine(deployment="compose", image="engine:2.4.0", compose={"last_switch": last})
    assert unverified_switch(facts) is unverified


UPGRADE = {"action": "present", "from": "engine:2.3.0", "to": "engine:2.4.0", "verified": False}
ROLLBACK = {"action": "rolled_back", "from": "engine:2.4.0", "to": "engine:2.3.0", "result": "ok", "verified": False}


@pytest.mark.parametrize(
    ("facts", "dead_run", "action", "how"),
    [
        # D3: a rolled-back Compose Engine (rollback.yml, a canary's rescue) upgrades like any other.
        (engine(deployment="compose", compose={"last_switch": ROLLBACK}), False, "upgrade", None),
        # D3: the switch put 2.3.0 back but could not record it (a full disk): it runs what it came from.
        (
            engine(deployment="compose", compose={"last_switch": dict(UPGRADE, result="in progress")}),
            False,
            "upgrade",
            None,
        ),
        # A dead run's switch left the Engine down: go back first.
        (
            engine(deployment="compose", running=False, compose={"last_switch": dict(UPGRADE, result="in progress")}),
            True,
            "resume",
            "compose_back",
        ),
        # An unverified switch to 2.3.1, and the run now targets 2.4.0: go back first (never start it as it is).
        (
            engine(
                deployment="compose",
                image="engine:2.3.1",
                compose={"last_switch": dict(UPGRADE, to="engine:2.3.1", result="ok")},
            ),
            False,
            "resume",
            "compose_back",
        ),
        # Down after a switch that ended unverified: start what the project names, then decide again.
        (
            engine(
                deployment="compose",
                running=False,
                image="engine:2.4.0",
                compose={"last_switch": dict(UPGRADE, result="ok")},
            ),
            True,
            "resume",
            "compose_start",
        ),
        (
            engine(deployment="compose", image="engine:2.4.0", compose={"last_switch": dict(UPGRADE, result="ok")}),
            False,
            "verify",
            None,
        ),
        (engine(deployment="compose", image="engine:2.4.0", compose={"last_switch": ROLLBACK}), False, "none", None),
    ],
)
def test_a_compose_engine_after_a_rollback_or_an_unfinished_switch(facts, dead_run, action, how) -> None:
    assert decide_action(facts, "engine:2.4.0", dead_run) == action
    if how:
        pre = Preflight({"inventory_name": "c1"}, client=None)
        assert pre._resume_plan(facts, "engine:2.4.0")["how"] == how


def test_target_image_from_the_engine_or_the_recorded_previous() -> None:
    assert target_image(engine(), None, "2.4.0") == "engine:2.4.0"
    assert target_image(engine(), "registry:5000/team/engine", "2.4.0") == "registry:5000/team/engine:2.4.0"
    gone = engine(repository=None, image=None, previous={"image": "registry:5000/team/engine:2.3.0"})
    assert target_image(gone, None, "2.4.0") == "registry:5000/team/engine:2.4.0"
    with pytest.raises(OptionsError, match="engine_image_repository"):
        target_image(engine(repository=None, image=None), None, "2.4.0")


def gates(migration: dict | None, healthy: bool = True, allow: bool = False, require_healthy: bool = True):
    pre = Preflight(
        {"inventory_name": "u1", "require_healthy": require_healthy, "allow_destructive": allow}, client=None
    )
    pre._gates(
        engine(),
        {"is_healthy": healthy, "failure": "unhealthy", "failure_detail": "HTTP 503"},
        migration,
        "engine:3.0.0",
    )


def migration(**changes) -> dict:
    base = {
        "is_downgrade": False,
        "needs_acknowledgement": False,
        "not_shipped": [],
        "pending": [],
        "unclassified": [],
        "snapshot_retention_days": None,
    }
    return {**base, **changes}


def test_gates_refuse_an_unhealthy_engine_unless_told() -> None:
    with pytest.raises(PreflightRefused, match=r"u1: it is not healthy .*HTTP 503.*Nothing was changed"):
        gates(migration(), healthy=False)
    gates(migration(), healthy=False, require_healthy=False)


def test_gates_refuse_a_downgrade() -> None:
    with pytest.raises(PreflightRefused, match="MIGRATION_REQUIRED"):
        gates(migration(is_downgrade=True, not_shipped=["0008"]))


def test_gates_refuse_destructive_and_unclassified_migrations_until_acknowledged() -> None:
    destructive = migration(
        needs_acknowledgement=True,
        snapshot_retention_days=7,
        pending=[{"name": "0008_memory_v3", "classification": "destructive"}],
    )
    with pytest.raises(PreflightRefused, match=r"destructive migrations 0008_memory_v3 .*at least 7 days"):
        gates(destructive)
    unknown = migration(
        needs_acknowledgement=True,
        unclassified=["0009_vec"],
        pending=[{"name": "0009_vec", "classification": "unknown"}],
    )
    with pytest.raises(PreflightRefused, match=r"0009_vec that this host's SQLite could not classify"):
        gates(unknown)
    gates(destructive, allow=True)
    gates(unknown, allow=True)


def test_a_refusal_releases_the_lock_the_preflight_took(monkeypatch, tmp_path) -> None:
    facts = engine(identity={"key": "volume:engine-data-u1", "slug": "engine-data-u1"})
    monkeypatch.setattr(_preflight, "resolve_engine", lambda client, params: facts)
    params = {
        "inventory_name": "u1",
        "target_version": "2.4.0",
        "image_repository": None,
        "pull": "never",
        "require_healthy": True,
        "allow_destructive": False,
        "url": None,
        "lock": {"dir": str(tmp_path), "owner": "me", "run_id": "r1", "ttl": 60},
    }
    pre = Preflight(params, client=None)
    monkeypatch.setattr(
        pre, "_health", lambda e: {"is_healthy": False, "failure": "unreachable", "failure_detail": "nothing answered"}
    )
    with pytest.raises(PreflightRefused, match="not healthy"):
        pre.run()
    assert list(tmp_path.iterdir()) == []  # the lock file is gone: nothing was left behind


def test_a_refused_second_pre_flight_after_a_resume_releases_the_lock_its_run_holds(monkeypatch, tmp_path) -> None:
    # resume.yml brought the Engine back under the lock of this run's first pre-flight; the second one refuses.
    facts = engine(identity={"key": "volume:engine-data-u1", "slug": "engine-data-u1"})
    monkeypatch.setattr(_preflight, "resolve_engine", lambda client, params: facts)
    EngineLock(str(tmp_path), "u1", key="volume:engine-data-u1").acquire("me", "r1", 60)
    other = tmp_path / "other"
    EngineLock(str(other), "u1", key="volume:engine-data-u1").acquire("someone", "r0", 60)
    params = {
        "inventory_name": "u1",
        "target_version": "2.4.0",
        "image_repository": None,
        "require_healthy": True,
        "url": None,
        "lock": {"dir": str(tmp_path), "owner": "me", "run_id": "r1", "ttl": 60},
    }

    def refused(lock: dict) -> Preflight:
        pre = Preflight(dict(params, lock=dict(params["lock"], **lock)), client=None)
        monkeypatch.setattr(
            pre, "_health",
            lambda e: {"is_healthy": False, "failure": "unreachable", "failure_detail": "nothing answered"})
        with pytest.raises(PreflightRefused, match="not healthy"):
            pre.run()
        assert pre.lock_plan["action"] == "refresh"
        return pre

    # Without release_held (the default): another invocation sharing the run id (a pinned engine_run_id, two
    # promotions) may hold it in the middle of a switch: left alone.
    refused({})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine-data-u1.lock", "other"]
    refused({"release_held": True})  # the role's second pre-flight after resume.yml
    assert [p.name for p in tmp_path.iterdir()] == ["other"]  # this run's lock is gone
    with pytest.raises(Exception, match="locked by someone"):  # another run's lock is never released by this one
        Preflight(dict(params, lock=dict(params["lock"], dir=str(other))), client=None).run()
    assert len(list(other.iterdir())) == 1


def test_an_unverified_switch_to_another_release_is_refused_not_put_back(monkeypatch, tmp_path) -> None:
    # A run died after its new container (2.4.0) migrated the brain; the re-run names another target (a typo). The
    # old container put back over that brain would crash-loop: refuse, with the Engine serving on as it is.
    facts = engine(image="engine:2.4.0", previous={"container": "u1--previous"},
                   identity={"key": "volume:engine-data-u1", "slug": "engine-data-u1"})
    monkeypatch.setattr(_preflight, "resolve_engine", lambda client, params: facts)
    params = {
        "inventory_name": "u1",
        "target_version": "2.9.9",
        "image_repository": None,
        "lock": {"dir": str(tmp_path), "owner": "me", "run_id": "r1", "ttl": 60},
    }
    with pytest.raises(PreflightRefused, match=r"u1: a dead run switched it to engine:2\.4\.0, .*rollback\.yml"):
        Preflight(params, client=None).run()
    assert list(tmp_path.iterdir()) == []  # the lock it took is released
    down = dict(facts, running=False)  # down, and the brain was not migrated: bringing back what ran before
    monkeypatch.setattr(_preflight, "resolve_engine", lambda client, params: down)
    monkeypatch.setattr(Preflight, "_migration", lambda self, e, image, current: ({"not_shipped": []}, None))
    assert Preflight(params, client=None).run()["resume"]["how"] == "container_back"


def test_a_down_engine_whose_brain_the_dead_run_migrated_is_not_put_back_on_the_old_release(monkeypatch) -> None:
    # The dead run's 2.4.0 container applied a forward-only migration, then went down; the re-run names another
    # target. 2.3.0 would refuse that brain (MIGRATION_REQUIRED) and crash-loop: start 2.4.0 again instead.
    facts = engine(image="engine:2.4.0", running=False,
                   previous={"container": "u1--previous", "image": "engine:2.3.0", "image_id": "sha256:230"},
                   identity={"key": "volume:engine-data-u1", "slug": "engine-data-u1"})
    monkeypatch.setattr(_preflight, "resolve_engine", lambda client, params: facts)
    params = {"inventory_name": "u1", "target_version": "2.9.9", "image_repository": None}
    asked = []

    def migration(self, e, image, current):
        asked.append((image, current))
        return {"not_shipped": ["0007_add_episodes.sql"]}, None

    monkeypatch.setattr(Preflight, "_migration", migration)
    resume = Preflight(params, client=None).run()["resume"]
    assert asked == [("sha256:230", "engine:2.4.0")]  # the kept release, by its image id
    assert resume["how"] == "container_start" and "0007_add_episodes.sql" in resume["why"], resume

    def unreadable(self, e, image, current):
        raise _preflight.EngineModuleError("no brain at /data/brain.sqlite")

    monkeypatch.setattr(Preflight, "_migration", unreadable)
    pre = Preflight(params, client=None)
    assert pre.run()["resume"]["how"] == "container_back"  # no evidence of a migration: what ran before
    assert any("could not be read (no brain" in w for w in pre.warnings), pre.warnings


def test_a_container_a_dead_run_renamed_and_never_replaced_is_put_back_without_reading_the_brain(monkeypatch) -> None:
    # No container made after the rename: nothing can have migrated the brain (and there is no container to find
    # it through: reading it only warned, wrongly, that it could not be read).
    facts = engine(exists=False, running=False, image=None, previous={"container": "u1--previous",
                   "image": "engine:2.3.0", "image_id": "sha256:230"})
    monkeypatch.setattr(_preflight, "resolve_engine", lambda client, params: facts)
    monkeypatch.setattr(Preflight, "_migration", lambda *a: pytest.fail("the brain was read"))
    pre = Preflight({"inventory_name": "u1", "target_version": "2.4.0", "image_repository": None}, client=None)
    assert pre.run()["resume"]["how"] == "container_back" and pre.warnings == []


def test_a_down_compose_engine_whose_brain_the_dead_run_migrated_is_started_as_the_project_names(monkeypatch) -> None:
    last = {"action": "present", "from": "engine:2.3.0", "to": "engine:2.4.0", "result": "in progress"}
    facts = engine(deployment="compose", image="engine:2.4.0", running=False, compose={"last_switch": last},
                   identity={"key": "volume:e_engine_data", "slug": "e_engine_data"})
    monkeypatch.setattr(_preflight, "resolve_engine", lambda client, params: facts)
    params = {"inventory_name": "c1", "target_version": "2.4.0", "image_repository": None}
    asked, held = [], {"not_shipped": ["0006"]}

    def migration(self, e, image, current):
        asked.append(image)
        return dict(held), None

    monkeypatch.setattr(Preflight, "_migration", migration)
    resume = Preflight(params, client=None).run()["resume"]
    assert asked == ["engine:2.3.0"] and resume["how"] == "compose_start" and "0006" in resume["why"], resume
    # A rollback left unfinished (from 2.4.0 to 2.3.0) whose brain was restored already: it goes on to 2.3.0.
    rolling_back = dict(last, action="rolled_back", **{"from": "engine:2.4.0", "to": "engine:2.3.0"})
    facts["compose"] = {"last_switch": rolling_back}
    held["not_shipped"] = []
    assert Preflight(params, client=None).run()["resume"]["how"] == "compose_back"
    assert asked[-1] == "engine:2.3.0"  # where going back leads: the rollback's target


def test_an_engine_already_on_the_target_releases_its_lock_and_does_nothing(monkeypatch, tmp_path) -> None:
    facts = engine(image="engine:2.4.0", identity={"key": "volume:engine-data-u1", "slug": "engine-data-u1"})
    monkeypatch.setattr(_preflight, "resolve_engine", lambda client, params: facts)
    params = {
        "inventory_name": "u1",
        "target_version": "2.4.0",
        "image_repository": None,
        "lock": {"dir": str(tmp_path), "owner": "me", "run_id": "r1", "ttl": 60},
    }
    result = Preflight(params, client=None).run()
    assert result["action"] == "none" and result["lock"]["action"] == "released"
    assert list(tmp_path.iterdir()) == []


def test_an_upgrade_without_its_rollback_image_is_refused_before_anything_stops(monkeypatch, tmp_path) -> None:
    facts = engine(identity={"key": "volume:engine-data-u1", "slug": "engine-data-u1"}, image_id="sha256:230")
    monkeypatch.setattr(_preflight, "resolve_engine", lambda client, params: facts)
    monkeypatch.setattr(
        _preflight,
        "rollback_image_problem",
        lambda client, origin, pull, registry_auth: f"its rollback image {origin['image']} is gone.",
    )
    params = {
        "inventory_name": "u1",
        "target_version": "2.4.0",
        "image_repository": None,
        "pull": "missing",
        "require_healthy": True,
        "allow_destructive": False,
        "url": None,
        "lock": {"dir": str(tmp_path), "owner": "me", "run_id": "r1", "ttl": 60},
    }
    pre = Preflight(params, client=None)
    monkeypatch.setattr(pre, "_health", lambda e: {"is_healthy": True, "failure": "none"})
    monkeypatch.setattr(pre, "_image", lambda image: pytest.fail("no pull before the rollback image is known"))
    with pytest.raises(PreflightRefused, match=r"u1: its rollback image engine:2.3.0 is gone\. Nothing was changed"):
        pre.run()
    assert list(tmp_path.iterdir()) == []


class FakeCheck:
    """MigrationCheck after run(): boot_test() fills the report with what the boot saw."""

    def __init__(self, healthy: bool = True) -> None:
        self.params: dict = {}
        self.healthy = healthy
        self.booted = 0

    def boot_test(self, report: dict) -> dict:
        self.booted += 1
        target = {"failure": "none" if self.healthy else "exited", "message": None if self.healthy else "exit 3"}
        report["boot_test"] = {"target_healthy": self.healthy, "image_rollback_works": False, "target": target}
        return report["boot_test"]


def boot(wanted: str | None, reasons: list[str], healthy: bool = True, check_mode: bool = False):
    pre = Preflight({"inventory_name": "u1", "boot_test": wanted}, client=None, check_mode=check_mode)
    pre._engine_env = lambda engine: {"LLM_PROVIDER": "x"}
    check = FakeCheck(healthy)
    report = migration(boot_test=None, boot_test_reasons=list(reasons), target_image="engine:3.0.0")
    pre._boot_test(check, report, engine())
    return check, report


@pytest.mark.parametrize(
    ("wanted", "reasons", "booted"),
    [
        (None, ["a major upgrade (2.4.0 to 3.0.0)"], 1),  # auto is the default
        ("auto", ["destructive migration(s) 0007_x"], 1),
        ("auto", [], 0),  # a minor release with additive migrations: no boot test
        ("always", [], 1),
        ("never", ["a major upgrade (2.4.0 to 3.0.0)"], 0),
    ],
)
def test_the_boot_test_runs_for_a_major_or_destructive_upgrade(wanted, reasons, booted) -> None:
    check, report = boot(wanted, reasons)
    assert check.booted == booted
    assert (report["boot_test"] is not None) == bool(booted)
    if booted:
        assert check.params["env"] == {"LLM_PROVIDER": "x"}  # the boot-test containers boot as the Engine would


def test_check_mode_starts_no_boot_test_container() -> None:
    check, report = boot("always", ["a major upgrade (2.4.0 to 3.0.0)"], check_mode=True)
    assert check.booted == 0 and report["boot_test"] is None


def test_a_target_that_does_not_come_up_on_the_copy_is_refused_with_nothing_stopped() -> None:
    with pytest.raises(PreflightRefused) as refused:
        boot("auto", ["a major upgrade (2.4.0 to 3.0.0)"], healthy=False)
    message = refused.value.msg
    assert "engine:3.0.0 did not come up healthy on a copy of its brain (exited: exit 3)" in message
    assert "for a major upgrade (2.4.0 to 3.0.0)" in message and message.endswith("Nothing was changed.")


class RecordingSnapshot:
    """Stands in for BrainSnapshot (its own tests cover the copy): records the options the pre-flight gives it."""

    seen: ClassVar[list] = []

    def __init__(self, params, check_mode, warn=None, client=None) -> None:
        RecordingSnapshot.seen.append(params)

    def run(self) -> dict:
        return {"changed": True, "snapshot": {"name": RecordingSnapshot.seen[-1]["name"]}, "pruned": []}


@pytest.mark.parametrize(("destructive", "retain"), [(False, 2), (True, 9)])
def test_the_pre_flight_snapshot_is_named_bound_and_kept_by_the_shared_rule(monkeypatch, destructive, retain) -> None:
    monkeypatch.setattr(_preflight, "BrainSnapshot", RecordingSnapshot)
    RecordingSnapshot.seen = []
    params = {
        "inventory_name": "u1",
        "target_version": "2.4.0",
        "lock": {"dir": "/nowhere", "owner": "me", "run_id": "r1", "ttl": 60},
        "snapshot": {"dest": "/s/u1", "verify": "quick", "retain_days": 2, "destructive_retain_days": 9,
                     "keep_last": 3, "name": None, "reason": None},
        "migrations_source": "auto", "migrations_table": None, "migrations_column": None,
    }
    pre = Preflight(params, client=None)
    identity = {"key": "volume:engine-data-u1", "slug": "engine-data-u1"}
    taken = pre._snapshot({"identity": identity, "container": "u1"}, {"version": "2.3.0"},
                          {"needs_acknowledgement": destructive})
    options = RecordingSnapshot.seen[-1]
    assert taken["name"] == options["name"] == "pre-upgrade-engine-data-u1-2.3.0-to-2.4.0-r1"
    assert options["engine_key"] == "volume:engine-data-u1" and options["engine_name"] == "u1"
    assert options["kind"] == "pre-upgrade" and options["retain_days"] == retain and options["keep_last"] == 3
    assert options["reason"] == "pre-upgrade: 2.3.0 -> 2.4.0 (run r1)" and options["dest"] == "/s/u1"


def test_a_renamed_container_is_locked_by_its_brain_so_the_run_renaming_it_is_seen(monkeypatch, tmp_path) -> None:
    # Run r0 renamed engine-u1 to engine-u1--previous and has not created the new container yet (alive, or killed
    # there). A second run must collide with r0's lock, which is keyed by the brain's volume (docs/faults.md D10).
    from ansible_collections.september.engine.plugins.module_utils import _engine

    kept = SimpleNamespace(
        name="u1--previous", id="c0ffee", labels={},
        attrs={"Image": "sha256:230", "Config": {"Image": "engine:2.3.0"}, "State": {"Status": "exited"},
               "Mounts": [{"Type": "volume", "Name": "engine-data-u1", "Destination": "/data"}]})

    def get(name):
        if name == kept.name:
            return kept
        raise _engine.NotFound(name)

    def no_image(ref):
        raise _engine.NotFound(ref)

    client = SimpleNamespace(containers=SimpleNamespace(get=get), images=SimpleNamespace(get=no_image))
    EngineLock(str(tmp_path), "u1", key="volume:engine-data-u1").acquire("someone", "r0", 60)
    params = {
        "inventory_name": "u1",
        "deployment": "container",
        "container_name": "u1",
        "target_version": "2.4.0",
        "image_repository": None,
        "lock": {"dir": str(tmp_path), "owner": "me", "run_id": "r1", "ttl": 60},
    }
    with pytest.raises(Exception, match="locked by someone"):
        Preflight(params, client=client).run()
    assert [p.name for p in tmp_path.iterdir()] == ["engine-data-u1.lock"]  # no second lock under the name
