# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The rollout plan through real ansible-playbook runs: the batches the play really runs are the plan's.

``playbooks/rollout_plan.yml`` holds upgrade.yml's plan play (verbatim, checked here) and a second play shaped like
upgrade.yml's that only records ``ansible_play_batch`` per batch. The hosts are local (no Engine is needed): 100
"Engines" on 3 fake Docker hosts (``engine_docker_host``), and two hosts that are not Engines, first in the
inventory, whose group variables would fail the plan if it read them. Tested: ``--limit`` to 10 of 100, an
``engine_hosts`` pattern, an inventory that changes between two runs, the ``engine_canary`` allowlist, check mode,
bad settings (every problem in one failure, the second play never starts, the webhook URL never shown, even at
-vvv) and a pattern that matches nothing.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest
import yaml

from engine_testkit.ansible import REPO_ROOT, PlaybookRun, run_playbook

PLAYBOOK = Path(__file__).resolve().parent / "playbooks" / "rollout_plan.yml"
PLAN_TASK = "Plan | Check the settings and plan batches, canaries and controls"
RECORD_TASK = "Record the batch"
DOCKER_HOSTS = ("dock-a", "dock-b", "dock-c")
SECRET_URL = "hooks.example.invalid/services/T000/B000/SECRETXYZ"

pytestmark = pytest.mark.timeout(300)


def engine_names(count: int) -> list[str]:
    return [f"sept-u{i:03d}" for i in range(count)]


def write_inventory(path: Path, names: list[str], canaries: tuple[str, ...] = ()) -> Path:
    """Local hosts: the Engines (group engines, and one group per Docker host) and two hosts that are not Engines."""
    # Each Engine names its container, as the plan play checks before anything (no container is needed here).
    engines = {name: {"engine_docker_host": DOCKER_HOSTS[int(name[-3:]) % 3] if name[-3:].isdigit() else "dock-a",
                      "engine_container_name": name}
               for name in names}
    per_host = {
        host.replace("-", "_"): {"hosts": {n: None for n, v in engines.items() if v["engine_docker_host"] == host}}
        for host in DOCKER_HOSTS
    }
    inventory = {"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "children": {
            # First in the inventory, so a run_once task of a play on all hosts runs on them: the plan must not
            # take its settings from them.
            "web": {"hosts": {"web1": None, "web2": None}, "vars": {"engine_upgrade_bake_interval": 0}},
            "engines": {"hosts": engines, "vars": {"engine_target_version": "2.4.0"}},
            **per_host,
            **({"engine_canary": {"hosts": dict.fromkeys(canaries)}} if canaries else {}),
        },
    }}
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    return path


def play(inventory: Path, limit: str | None = None, check: bool = False, args: list[str] | None = None,
         **extra) -> PlaybookRun:
    return run_playbook(PLAYBOOK, inventory=inventory, limit=limit, check=check, extra_vars=extra, args=args,
                        timeout=240)


def planned(run: PlaybookRun) -> dict:
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return run.result(PLAN_TASK)["plan"]


def batches_run(run: PlaybookRun) -> list[list[str]]:
    return [result["msg"] for result in run.task_results(RECORD_TASK)]


def docker_host(name: str) -> str:
    return DOCKER_HOSTS[int(name[-3:]) % 3]


def test_the_plan_play_is_upgrade_ymls():
    ours = yaml.safe_load(PLAYBOOK.read_text())
    upgrade = yaml.safe_load((REPO_ROOT / "playbooks" / "upgrade.yml").read_text())
    assert ours[0] == upgrade[0]
    assert {k: v for k, v in ours[1].items() if k not in ("name", "tasks")} == {
        k: v for k, v in upgrade[1].items() if k not in ("name", "roles")}


def test_the_whole_fleet_and_a_limit_to_10_of_100(tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", engine_names(100))
    run = play(inventory)
    plan = planned(run)
    assert plan["serial"] == [5, 5, 40, 50] and plan["total"] == 100
    assert batches_run(run) == plan["batches"]
    assert sorted(Counter(c["docker_host"] for c in plan["canaries"]).values()) == [1, 2, 2]
    assert plan["docker_hosts"] == {"dock-a": 34, "dock-b": 33, "dock-c": 33}
    assert not {"web1", "web2"} & set(plan["order"])

    limited = play(inventory, limit="engines[0:9]")
    plan = planned(limited)
    assert plan["serial"] == [1, 4, 5], "a --limit to 10 of 100 Engines makes a canary of 1, not 5"
    assert batches_run(limited) == plan["batches"]
    assert sorted(plan["order"]) == engine_names(10)

    check = play(inventory, limit="engines[0:9]", check=True)
    assert {**planned(check), "run_id": None} == {**plan, "run_id": None}
    assert batches_run(check) == plan["batches"]


def test_an_engine_hosts_pattern_and_a_limit(tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", engine_names(100))
    run = play(inventory, engine_hosts="engines:&dock_b")
    plan = planned(run)
    assert plan["total"] == 33 and set(plan["docker_hosts"]) == {"dock-b"}
    assert plan["serial"] == [2, 2, 13, 16]
    assert batches_run(run) == plan["batches"]

    run = play(inventory, limit="sept-u00*", engine_hosts="engines:!dock_a")  # u000..u009 but dock-a's
    plan = planned(run)
    assert sorted(plan["order"]) == [n for n in engine_names(10) if docker_host(n) != "dock-a"]
    assert batches_run(run) == plan["batches"] and plan["serial"][0] == 1


def test_an_inventory_that_changes_between_two_runs_keeps_the_canaries(tmp_path):
    names = engine_names(100)
    first = planned(play(write_inventory(tmp_path / "one.yml", names)))
    canaries = [c["engine"] for c in first["canaries"]]
    # Remove an Engine that is not a canary; add one that comes last on its Docker host in the hash order.
    removed = next(n for n in reversed(first["order"]) if n not in canaries)
    dock_a_max = max(hashlib.sha256(n.encode()).hexdigest() for n in names if docker_host(n) == "dock-a")
    added = next(f"sept-new{i}" for i in range(1000)
                 if hashlib.sha256(f"sept-new{i}".encode()).hexdigest() > dock_a_max)
    changed = [n for n in names if n != removed] + [added]
    run = play(write_inventory(tmp_path / "two.yml", changed))
    second = planned(run)
    assert [c["engine"] for c in second["canaries"]] == canaries
    assert second["run_id"] != first["run_id"]
    assert batches_run(run) == second["batches"]
    # A canary that left: the other canaries stay, and its place is taken on the same Docker host.
    gone = canaries[0]
    third = planned(play(write_inventory(tmp_path / "three.yml", [n for n in names if n != gone])))
    after = [c["engine"] for c in third["canaries"]]
    assert set(canaries[1:]) <= set(after) and gone not in after


def test_the_allowlist_goes_first(tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", engine_names(100), canaries=("sept-u042", "sept-u077"))
    run = play(inventory)
    plan = planned(run)
    assert {c["engine"] for c in plan["canaries"][:2]} == {"sept-u042", "sept-u077"}
    assert all("allowlist" in c["why"] for c in plan["canaries"][:2])
    assert all("allowlist" not in c["why"] for c in plan["canaries"][2:])
    assert batches_run(run)[0] == plan["batches"][0]


def test_bad_settings_fail_the_plan_and_nothing_else_starts(tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", engine_names(12))
    run = play(inventory, args=["-vvv"], engine_upgrade_bake_interval="0", engine_upgrade_significance=0.7,
               engine_rollout_stages="5%,2.4.0", engine_webhook_url=SECRET_URL, engine_upgrade_lock_ttl=60)
    assert run.rc != 0
    failed = run.result(PLAN_TASK)
    assert failed["msg"].startswith("The upgrade's settings have 5 problems; nothing was changed:")
    for expected in ("engine_upgrade_bake_interval=0: the bake checks the Engine every this many seconds",
                     "engine_upgrade_significance=0.7: the significance of the one-sided test must be in (0, 0.5]",
                     "engine_rollout_stages: rollout stage '2.4.0' is neither a percentage",
                     "engine_webhook_url (value not shown) is not an http(s) URL",
                     "engine_upgrade_lock_ttl=60 is shorter than one Engine's upgrade"):
        assert expected in failed["msg"], failed["msg"]
    assert [p["play"]["name"] for p in run.data["plays"]] == ["Plan the rollout"]
    assert run.task_results(RECORD_TASK) == []
    assert "SECRETXYZ" not in run.stdout + run.stderr


def test_a_pattern_that_matches_no_host_says_so(tmp_path):
    inventory = write_inventory(tmp_path / "inventory.yml", engine_names(5))
    run = play(inventory, engine_hosts="engines_eu")
    assert run.rc != 0
    assert "engine_hosts='engines_eu' matches no host of the inventory: nothing to upgrade" in run.result(
        PLAN_TASK)["msg"]
    run = play(inventory, limit="web1")
    assert run.rc != 0
    assert "engine_hosts='engines' (the default) matches no host of the inventory within --limit 'web1'" in (
        run.result(PLAN_TASK)["msg"])
    assert run.task_results(RECORD_TASK) == []
