# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The rollout plan's math: batch sizes of the Engines a run really has, canary placement, stability, controls."""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter

import pytest

from ansible_collections.september.engine.plugins.module_utils import _plan
from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError

DEFAULT = ("5%", "10%", "50%", "100%")


def fleet(count: int, hosts: int = 3, prefix: str = "sept-u", canary=()) -> list[dict]:
    return _plan.check_engines([
        {"name": f"{prefix}{i:03d}", "docker_host": f"dock-{i % hosts}", "canary": f"{prefix}{i:03d}" in canary}
        for i in range(count)
    ])


def plan(engines, stages=DEFAULT, controls=5) -> dict:
    return _plan.make_plan(engines, stages, "run-1", controls)


def canaries(p: dict) -> list[str]:
    return [c["engine"] for c in p["canaries"]]


# ---- sizes -------------------------------------------------------------------------------------------------------

def test_limit_to_10_of_100_makes_a_canary_of_one_not_five():
    """Issue 11 item 1 / issue 10 item 12: the batches come from the Engines the run has, not the whole group."""
    whole = plan(fleet(100))
    assert whole["serial"] == [5, 5, 40, 50]
    limited = plan(fleet(100)[:10])
    assert limited["serial"] == [1, 4, 5]
    assert len(limited["batches"][0]) == 1 and len(limited["canaries"]) == 1
    assert limited["total"] == 10 and sorted(limited["order"]) == sorted(e["name"] for e in fleet(100)[:10])


@pytest.mark.parametrize(("count", "stages", "serial"), [
    (1, DEFAULT, [1]),
    (2, DEFAULT, [1, 1]),
    (12, DEFAULT, [1, 1, 4, 6]),
    (40, "5%, 10%, 50%, 100%", [2, 2, 16, 20]),
    (7, ["100%"], [7]),
    (50, ["1", "10%", "100%"], [1, 4, 45]),
    (10, ["10%", "50%"], [1, 4, 5]),
])
def test_batches_are_slices_of_the_order(count, stages, serial):
    p = plan(fleet(count), stages)
    assert p["serial"] == serial
    assert [len(b) for b in p["batches"]] == serial
    assert [name for batch in p["batches"] for name in batch] == p["order"]
    assert all(p["batch_of"][name] == number for number, batch in enumerate(p["batches"], 1) for name in batch)
    assert set(p["controls"]) == {str(n) for n in range(1, len(serial) + 1)}


def test_no_engine_gives_an_empty_plan():
    p = plan([])
    assert (p["total"], p["serial"], p["batches"], p["order"], p["canaries"], p["controls"]) == (0, [], [], [], [], {})


@pytest.mark.parametrize("stages", [["0%"], ["150%"], ["abc"], [-1], [], ["50%", "10%"], "", "5%,,100%", None, 5,
                                    [True], ["2.4.0"]])
def test_bad_stages_raise(stages):
    with pytest.raises(_plan.StageError):
        _plan.batch_sizes(stages, 10)


def test_a_stage_that_looks_like_a_release_says_so():
    with pytest.raises(_plan.StageError, match="looks like a release"):
        _plan.batch_sizes(["5%", "2.4.0"], 10)


def test_stages_that_shrink_with_this_fleet_say_where():
    with pytest.raises(_plan.StageError, match=r"'10%' comes after a larger stage .*\(3 of 10 Engines"):
        _plan.batch_sizes(["3", "10%"], 10)


@pytest.mark.parametrize(("stages", "problems"), [
    (DEFAULT, 0), ("5%,10%", 0), (["1", "10%", "5"], 0),  # counts and shares compare only with the fleet's size
    (["50%", "10%"], 1), (["5", "2"], 1), (["x", "0%", "10%"], 2), ("5%,,1", 1), ([], 1),
])
def test_stage_problems_name_each_bad_stage(stages, problems):
    assert len(_plan.stage_problems(stages)) == problems


def test_batch_of():
    assert [_plan.batch_of([1, 1, 4, 6], i) for i in (0, 1, 2, 5, 6, 11)] == [1, 2, 3, 3, 4, 4]
    with pytest.raises(_plan.StageError, match="beyond"):
        _plan.batch_of([1, 1], 2)


# ---- placement ---------------------------------------------------------------------------------------------------

def test_canaries_are_spread_across_docker_hosts():
    p = plan(fleet(100, hosts=3))
    assert sorted(Counter(c["docker_host"] for c in p["canaries"]).values()) == [1, 2, 2]
    first_three = {c["docker_host"] for c in p["canaries"][:3]}
    assert first_three == {"dock-0", "dock-1", "dock-2"}
    assert all(c["why"].startswith("spread across Docker hosts: the first on") for c in p["canaries"][:3])
    assert all("already had 1" in c["why"] for c in p["canaries"][3:])
    # Every batch is spread the same way (the hosts are the same size, so no host gets two more than another).
    for batch in p["batches"]:
        counts = Counter(name_host(p, name) for name in batch)
        assert max(counts.values()) - min(counts.values()) <= 1 and len(counts) == min(3, len(batch))


def name_host(p: dict, name: str) -> str:
    return f"dock-{int(name[-3:]) % 3}"


def test_no_second_canary_on_a_host_while_another_has_none():
    engines = _plan.check_engines(
        [{"name": f"a{i}", "docker_host": "big"} for i in range(20)] + [{"name": "b0", "docker_host": "small"}]
    )
    p = plan(engines, ["3", "100%"])
    hosts = [c["docker_host"] for c in p["canaries"]]
    assert sorted(hosts) == ["big", "big", "small"]
    assert "b0" in canaries(p)


def test_within_a_host_the_order_is_the_sha256_of_the_name():
    engines = _plan.check_engines([{"name": f"e{i}", "docker_host": "one"} for i in range(30)])
    p = plan(engines)
    assert p["order"] == sorted(p["order"], key=_plan.name_hash)
    assert _plan.name_hash("e1") == hashlib.sha256(b"e1").hexdigest()


def test_the_order_does_not_depend_on_the_inventory_order():
    engines = fleet(60)
    shuffled = engines[:]
    random.Random(7).shuffle(shuffled)
    assert plan(engines) == plan(shuffled)


def test_allowlisted_engines_come_first_then_the_spread_counts_them():
    engines = fleet(30, hosts=3, canary=("sept-u003", "sept-u006"))  # both on dock-0
    p = plan(engines, ["4", "100%"])
    assert canaries(p)[:2] == sorted(["sept-u003", "sept-u006"], key=_plan.name_hash)
    assert all("allowlist" in c["why"] for c in p["canaries"][:2])
    # dock-0 already has two canaries: the next two go to dock-1 and dock-2, not to dock-0.
    assert sorted(c["docker_host"] for c in p["canaries"][2:]) == ["dock-1", "dock-2"]
    assert all("allowlist" not in c["why"] for c in p["canaries"][2:])


def test_more_allowlisted_than_the_canary_batch_go_next():
    engines = fleet(20, canary=("sept-u001", "sept-u002", "sept-u004"))
    p = plan(engines, ["1", "100%"])
    assert len(p["canaries"]) == 1 and p["canaries"][0]["engine"] in ("sept-u001", "sept-u002", "sept-u004")
    assert set(p["order"][:3]) == {"sept-u001", "sept-u002", "sept-u004"}


def test_a_rerun_keeps_the_plan_but_for_the_run_id():
    a = _plan.make_plan(fleet(50), DEFAULT, "run-a", 5)
    b = _plan.make_plan(fleet(50), DEFAULT, "run-b", 5)
    assert {**a, "run_id": None} == {**b, "run_id": None}


@pytest.mark.parametrize("seed", range(25))
def test_a_changed_inventory_keeps_the_other_canaries(seed):
    """Removing an Engine keeps every other canary; an added Engine can only take one canary's place itself."""
    rng = random.Random(seed)
    engines = fleet(40 + seed, hosts=1 + seed % 4)
    stages = ["4", "10", "100%"]
    before = set(canaries(plan(engines, stages)))
    removed = rng.choice(engines)
    after_removal = set(canaries(plan([e for e in engines if e is not removed], stages)))
    assert before - {removed["name"]} <= after_removal
    if removed["name"] not in before:
        assert after_removal == before
    added = {"name": f"new-{seed}", "docker_host": rng.choice(["dock-0", "dock-1", "dock-9"]), "canary": False}
    after_adding = set(canaries(plan([*engines, added], stages)))
    assert after_adding <= before | {added["name"]}
    assert len(before - after_adding) <= 1
    if added["name"] not in after_adding:
        assert after_adding == before


def test_a_canary_that_left_is_replaced_and_the_others_stay():
    engines = fleet(100)
    before = canaries(plan(engines))
    gone = before[0]
    after = canaries(plan([e for e in engines if e["name"] != gone]))
    assert set(before[1:]) <= set(after) and gone not in after


# ---- controls ----------------------------------------------------------------------------------------------------

def test_controls_come_from_later_batches_spread_and_the_batchs_hosts_first():
    engines = fleet(30, hosts=3, canary=("sept-u003",))  # the canary is on dock-0
    p = plan(engines, ["1", "50%", "100%"], controls=4)
    first = p["controls"]["1"]
    hosts = [f"dock-{int(name[-3:]) % 3}" for name in first]
    assert hosts[0] == "dock-0"  # the canary's own host first
    assert sorted(hosts[:3]) == ["dock-0", "dock-1", "dock-2"] and hosts[3] == "dock-0"
    later = set(p["order"][1:])
    assert set(first) <= later
    for number in range(1, len(p["batches"]) + 1):
        chosen = p["controls"][str(number)]
        assert not set(chosen) & set(name for b in p["batches"][:number] for name in b)
    assert p["controls"]["3"] == []


def test_controls_are_as_many_as_asked_or_as_there_are():
    p = plan(fleet(6), ["1", "3", "100%"], controls=10)
    assert [len(p["controls"][k]) for k in ("1", "2", "3")] == [5, 3, 0]
    assert all(v == [] for v in plan(fleet(6), controls=0)["controls"].values())


def test_controls_stay_the_same_between_runs():
    assert plan(fleet(40))["controls"] == plan(list(reversed(fleet(40))))["controls"]


# ---- engines, run id ---------------------------------------------------------------------------------------------

def test_check_engines():
    assert _plan.check_engines([{"name": "a"}]) == [{"name": "a", "docker_host": "a", "canary": False}]
    with pytest.raises(OptionsError, match="listed twice"):
        _plan.check_engines([{"name": "a"}, {"name": "a"}])
    with pytest.raises(OptionsError, match=r"engines\[1\] must be a dict with a name"):
        _plan.check_engines([{"name": "a"}, {"docker_host": "x"}])


def test_new_run_id():
    run_id = _plan.new_run_id(1_800_000_000)
    assert re.fullmatch(r"20270115T080000Z-\d{6}", run_id)
    assert _plan.RUN_ID_RE.match(run_id)
    assert len({_plan.new_run_id(1_800_000_000) for _i in range(5)}) > 1


def test_docker_hosts_are_counted():
    assert plan(fleet(10, hosts=3))["docker_hosts"] == {"dock-0": 4, "dock-1": 3, "dock-2": 3}
