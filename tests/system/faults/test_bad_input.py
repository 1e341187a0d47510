# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Bad input a user can plausibly type, to the playbooks that do not go through upgrade.yml's settings check.

upgrade.yml's settings are checked by its plan play before anything starts (every problem at once: the unit tests of
``_settings`` hold one case per problem, ``tests/system/test_rollout_plan.py`` the run). rollback.yml and
snapshot.yml take their variables through the roles' argument specs and the modules' own checks, and every playbook
reads the Engine's inventory variables. Each case here runs one playbook once with one bad value against a real
Engine and checks: the run fails; one failed task says what to fix, naming the variable or option and the value's
problem; nothing changed (the same container, never stopped; no snapshot; no lock).

The runs go four at a time (module fixture ``bad_runs``); each test checks its own.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
import pytest
import yaml

from .conftest import PLAYBOOKS, Faults, failure_messages

pytestmark = pytest.mark.timeout(600)

#: Relative folders a user may type: a module would resolve them against its working directory (on a local
#: connection, the playbook's folder); they are refused, and the test removes whatever a regression made there.
RELATIVE_STATE = "faults-relative-state"
RELATIVE_SNAPSHOTS = "faults-relative-snapshots"
#: id -> (playbook, extra vars, inventory variables of the Engine, what the one message must say)
CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any], tuple[str, ...]]] = {
    "rollback restore_brain not a choice": (
        "rollback.yml",
        {"engine_rollback_restore_brain": "sometimes"},
        {},
        ("engine_rollback_restore_brain", "sometimes", "auto, always, never"),
    ),
    "rollback drain timeout not a number": (
        "rollback.yml",
        {"engine_rollback_drain_timeout": "sixty"},
        {},
        ("engine_rollback_drain_timeout", "int"),
    ),
    "rollback drain timeout negative": (
        "rollback.yml",
        {"engine_rollback_drain_timeout": -5},
        {},
        ("drain_timeout must be 0 or more",),
    ),
    "rollback healthy streak zero": (
        "rollback.yml",
        {"engine_rollback_healthy_streak": 0},
        {},
        ("healthy_streak must be 1 or more",),
    ),
    "rollback to a release that does not exist": (
        "rollback.yml",
        {"engine_rollback_version": "2.9.9"},
        {},
        ("engine:2.9.9",),
    ),
    "rollback state dir not absolute": (
        "rollback.yml",
        {"engine_state_dir": RELATIVE_STATE, "engine_rollback_version": "2.3.0"},
        {},
        (RELATIVE_STATE, "absolute"),
    ),
    "snapshot kind not a choice": (
        "snapshot.yml",
        {"engine_snapshot_kind": "daily"},
        {},
        ("engine_snapshot_kind", "daily", "scheduled"),
    ),
    "snapshot verify not a choice": (
        "snapshot.yml",
        {"engine_snapshot_verify": "fast"},
        {},
        ("engine_snapshot_verify", "fast", "quick"),
    ),
    "snapshot keep_last negative": ("snapshot.yml", {"engine_snapshot_keep_last": -1}, {}, ("keep_last", "-1")),
    "snapshot lock ttl zero": ("snapshot.yml", {"engine_snapshot_lock_ttl": 0}, {}, ("ttl", "0")),
    "snapshot folder not absolute": (
        "snapshot.yml",
        {},
        {"engine_snapshot_dir": RELATIVE_SNAPSHOTS},
        (RELATIVE_SNAPSHOTS, "absolute"),
    ),
    "rollback host pattern matching nothing": (
        "rollback.yml",
        {"engine_hosts": "engines-typo"},
        {},
        ("engine_hosts=engines-typo matches no host", "Nothing was changed"),
    ),
    "snapshot host pattern matching nothing": (
        "snapshot.yml",
        {"engine_hosts": "engines-typo"},
        {},
        ("engine_hosts=engines-typo matches no host", "Nothing was changed"),
    ),
    "deployment not a hosting model": (
        "upgrade.yml",
        {"engine_target_version": "2.4.0"},
        {"engine_deployment": "kubernetes"},
        ("deployment", "kubernetes", "container, compose"),
    ),
    "container name missing": (
        "upgrade.yml",
        {"engine_target_version": "2.4.0"},
        {"engine_container_name": None},
        ("container_name",),
    ),
    "engine url without a scheme": (
        "upgrade.yml",
        {"engine_target_version": "2.4.0"},
        {"engine_url": "127.0.0.1:9001"},
        ("127.0.0.1:9001", "http"),
    ),
    "compose folder that does not exist": (
        "upgrade.yml",
        {"engine_target_version": "2.4.0"},
        {"engine_deployment": "compose", "engine_compose_dir": "/nonexistent/engine", "engine_container_name": None},
        ("/nonexistent/engine",),
    ),
}
PARALLEL = 4


@pytest.fixture(scope="module")
def bad_runs(
    docker_client: docker.DockerClient, fault_images: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    f = Faults(docker_client, tmp_path_factory.mktemp("bad-input"))
    try:
        (engine,) = f.up_engines(1)
        before = f.state()
        base = f.fleet.inventory()["all"]["children"]["engines"]["hosts"][engine.engine_id]

        def one(case: str) -> Any:
            playbook, extra, host_vars, _expected = CASES[case]
            hv = {k: v for k, v in {**base, **host_vars}.items() if v is not None}
            inventory = f.tmp / f"inventory-{case.replace(' ', '-')}.yml"
            inventory.write_text(
                yaml.safe_dump({"all": {"children": {"engines": {"hosts": {engine.engine_id: hv}}}}}, sort_keys=False)
            )
            # Each case its own state folder (locks): the cases run at once on one Engine, and a case refused by a
            # module after the role took the lock (a snapshot's keep_last) must not meet another case's lock.
            state = {"engine_state_dir": str(f.tmp / f"state-{case.replace(' ', '-')}")}
            return f.start(playbook, label=case, inventory=inventory, **{**state, **extra}).wait()

        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            results = dict(zip(CASES, pool.map(one, CASES), strict=True))
        yield {"faults": f, "engine": engine, "before": before, "runs": results}
    finally:
        f.close()
        for relative in (RELATIVE_STATE, RELATIVE_SNAPSHOTS):
            shutil.rmtree(PLAYBOOKS / relative, ignore_errors=True)


@pytest.mark.parametrize("case", list(CASES))
def test_one_clear_message_and_nothing_changed(bad_runs: dict[str, Any], case: str) -> None:
    f: Faults = bad_runs["faults"]
    run = bad_runs["runs"][case]
    expected = CASES[case][3]
    assert run.rc not in (0, 4), run.stdout[-3000:]
    messages = [m for m in failure_messages(run) if m]
    assert any(all(part in m for part in expected) for m in messages), messages
    # One message says it (the end-of-run summary may repeat it, nothing else fails).
    distinct = {m.split(": the upgrade to", 1)[-1][:80] for m in messages}
    assert len(distinct) <= 2, messages
    assert f.state() == bad_runs["before"], "the Engine was changed"
    assert f.lock_files() == [] and f.snapshot_files() == []
    held = [p for p in f.tmp.glob(f"state-{case.replace(' ', '-')}/locks/*.lock") if p.read_text().strip()]
    assert held == [], held
    assert not list(f.tmp.glob(f"state-{case.replace(' ', '-')}/snapshots/*/*.sqlite"))


def test_a_bad_inventory_variable_in_a_later_batch_stops_the_run_before_the_canary(faults: Faults) -> None:
    """The plan play checks every Engine's own variables with the settings (was defect D8: found only at that
    Engine's pre-flight, after the canary was upgraded)."""
    (engine,) = faults.up_engines(1)
    inventory = yaml.safe_load(faults.inventory_path.read_text())
    hosts = inventory["all"]["children"]["engines"]["hosts"]
    hosts[f"{engine.engine_id}-typo"] = {**hosts[engine.engine_id], "engine_deployment": "docker"}
    inventory["all"]["children"]["engine_canary"] = {"hosts": {engine.engine_id: None}}
    faults.inventory_path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    before = faults.state()
    run = faults.run(
        "upgrade.yml", label="typo in a later batch", engine_target_version="2.4.0", engine_upgrade_checks=False
    )
    assert run.rc not in (0, 4), run.stdout[-3000:]
    assert any("engine_deployment" in m and "docker" in m for m in failure_messages(run)), failure_messages(run)
    assert faults.state() == before, "the canary was upgraded before the typo of a later Engine was found"


def test_a_bad_rollback_variable_of_a_later_engine_stops_the_run_before_the_first(faults: Faults) -> None:
    """rollback.yml goes one Engine at a time: its first play checks every Engine's variables (the role's argument
    spec) before any is rolled back (a bad value on a later Engine was found after an earlier one was rolled back)."""
    (engine,) = faults.up_engines(1)
    with faults.load():  # evidence for the verification
        run = faults.run("upgrade.yml", label="to 2.4.0", engine_target_version="2.4.0")
    assert run.rc == 0, run.stdout[-3000:]
    inventory = yaml.safe_load(faults.inventory_path.read_text())
    hosts = inventory["all"]["children"]["engines"]["hosts"]
    good = hosts.pop(engine.engine_id)
    # rollback.yml goes in reverse inventory order: the Engine with the bad value comes after the good one.
    hosts[f"{engine.engine_id}-typo"] = {**good, "engine_rollback_restore_brain": "maybe"}
    hosts[engine.engine_id] = good
    faults.inventory_path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    before = faults.state()
    run = faults.run("rollback.yml", label="bad value on the later Engine")
    assert run.rc not in (0, 4), run.stdout[-3000:]
    assert any("engine_rollback_restore_brain" in m and "maybe" in m for m in failure_messages(run)), run.stdout[-3000:]
    assert faults.state() == before, "the first Engine was rolled back before the bad value of a later one was found"
