# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The engine_lock module as a whole: results, warnings, diff, check mode, with a patched wall clock."""

from __future__ import annotations

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.september.engine.plugins.module_utils import _lock
from ansible_collections.september.engine.plugins.modules import engine_lock
from engine_testkit.module_runner import ExitJson, FailJson, patch_exits

T0 = 1_800_000_000.0


@pytest.fixture(autouse=True)
def exits(monkeypatch):
    """exit_json / fail_json raise (as for every module test), and warnings are collected."""
    warnings = []
    patch_exits(monkeypatch)
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, msg: warnings.append(msg))
    return warnings


@pytest.fixture
def clock(monkeypatch):
    state = {"now": T0}
    monkeypatch.setattr(_lock.time, "time", lambda: state["now"])
    return state


def run(args, expect=ExitJson):
    with patch_module_args(args), pytest.raises(expect) as info:
        engine_lock.main()
    return info.value.args[0]


@pytest.fixture
def base(tmp_path):
    return {"engine": "sept-c001", "lock_dir": str(tmp_path / "locks"), "ttl": 60}


def test_acquire_refresh_refuse_takeover_release(base, clock, exits):
    a = dict(base, owner="awx job 42", run_id="42")
    b = dict(base, owner="alice@laptop", run_id="b1")
    first = run(dict(a, _ansible_diff=True))
    assert first["changed"] is True and first["lock"]["action"] == "acquire"
    assert first["lock"]["expires_at"] == _lock.iso(T0 + 60) and first["lock"]["is_held"] is True
    assert first["diff"]["before"] == "free\n" and "awx job 42 (run 42)" in first["diff"]["after"]
    clock["now"] += 10
    again = run(a)
    assert again["changed"] is False and again["lock"]["action"] == "refresh"
    assert again["lock"]["expires_at"] == _lock.iso(T0 + 70)
    refused = run(b, expect=FailJson)
    assert refused["msg"].startswith("Engine sept-c001 is locked by awx job 42 (run 42) since")
    assert "wait, or remove" in refused["msg"] and refused["holder"]["run_id"] == "42"
    clock["now"] += 61
    taken = run(dict(b, _ansible_check_mode=True))
    assert taken["changed"] is True and taken["lock"]["action"] == "take_over"
    taken = run(b)
    assert taken["lock"]["taken_over"] == {"owner": "awx job 42", "run_id": "42", "acquired_at": _lock.iso(T0),
                                           "expired_at": _lock.iso(T0 + 70)}
    assert any("Took over the expired lock" in w for w in exits)
    wrong = run(dict(a, state="absent"))
    assert wrong["changed"] is False and wrong["lock"]["action"] == "refused" and wrong["lock"]["run_id"] == "b1"
    assert any("Not releasing" in w for w in exits)
    released = run(dict(b, state="absent", _ansible_diff=True))
    assert released["changed"] is True and released["lock"]["is_held"] is False
    assert released["diff"]["after"] == "free\n"
    assert run(dict(b, state="absent"))["changed"] is False


def test_force_release_and_options(base, clock):
    run(dict(base, owner="x", run_id="1"))
    assert run(dict(base, run_id="2", state="absent", force=True))["changed"] is True
    assert "owner" in run(dict(base, run_id="1"), expect=FailJson)["msg"]
    assert "ttl must be at least 1" in run(dict(base, owner="x", run_id="1", ttl=0), expect=FailJson)["msg"]
    assert "cannot name a lock file" in run(dict(base, engine="../x", owner="x", run_id="1"), expect=FailJson)["msg"]


def test_keyed_by_identity_two_names_collide(base, clock):
    keyed = {"lock_dir": base["lock_dir"], "key": "volume:engine-data-u001", "ttl": 60}
    first = run(dict(keyed, engine="inventory-a/u001", owner="awx job 1", run_id="1"))
    assert first["lock"]["key"] == "volume:engine-data-u001" and first["lock"]["engine"] == "inventory-a/u001"
    assert first["lock"]["path"].endswith("/engine-data-u001.lock")
    refused = run(dict(keyed, engine="u001.example.org", owner="alice", run_id="2"), expect=FailJson)
    assert "u001.example.org (volume:engine-data-u001) is locked by awx job 1 (run 1)" in refused["msg"]
    # the older interface (engine alone) is keyed by the name: another file
    assert run(dict(base, owner="alice", run_id="2"))["lock"]["path"].endswith("/sept-c001.lock")
    bad = run(dict(keyed, key="engine-data-u001", owner="x", run_id="1"), expect=FailJson)
    assert "not an Engine identity key" in bad["msg"]
    assert "one of the following is required: engine, key" in run({"run_id": "1", "owner": "x"}, expect=FailJson)["msg"]


def test_refreshed(base, clock, exits):
    a = dict(base, owner="awx job 42", run_id="42")
    assert "not held by run 42: it is free" in run(dict(a, state="refreshed"), expect=FailJson)["msg"]
    run(a)
    clock["now"] += 50
    refreshed = run(dict(a, state="refreshed", _ansible_check_mode=True))
    assert refreshed["changed"] is False and refreshed["lock"]["action"] == "refresh"
    refreshed = run(dict(a, state="refreshed"))
    assert refreshed["lock"]["expires_at"] == _lock.iso(T0 + 110) and refreshed["lock"]["acquired_at"] == _lock.iso(T0)
    other = run(dict(base, owner="alice", run_id="b1", state="refreshed"), expect=FailJson)
    assert "is locked by awx job 42 (run 42)" in other["msg"]
    clock["now"] += 200
    assert run(dict(a, state="refreshed"))["lock"]["is_held"] is True
    assert any("had expired" in w for w in exits)
    assert "owner" in run(dict(base, run_id="42", state="refreshed"), expect=FailJson)["msg"]
