# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The rollout_plan module as a whole: the plan, check mode, every problem in one failure, the secret kept."""

from __future__ import annotations

import re

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.september.engine.plugins.modules import rollout_plan
from engine_testkit.module_runner import ExitJson, FailJson, patch_exits


@pytest.fixture(autouse=True)
def exits(monkeypatch, tmp_path):
    """exit_json / fail_json raise; warnings and the values the module hides are collected."""
    seen = {"warnings": [], "no_log": set()}
    patch_exits(monkeypatch)
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, msg: seen["warnings"].append(msg))
    real_init = basic.AnsibleModule.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        seen["no_log"] = self.no_log_values

    monkeypatch.setattr(basic.AnsibleModule, "__init__", init)
    monkeypatch.setenv("SEPTEMBER_ENGINE_REPORT_DIR", str(tmp_path / "reports"))
    return seen


def engines(count: int, hosts: int = 3) -> list[dict]:
    return [{"name": f"sept-u{i:03d}", "docker_host": f"dock-{i % hosts}"} for i in range(count)]


def run(args, expect=ExitJson):
    with patch_module_args(args), pytest.raises(expect) as info:
        rollout_plan.main()
    return info.value.args[0]


def test_plan_of_a_limited_run():
    result = run({"engines": engines(10), "settings": {"engine_target_version": "2.4.0"}})
    plan = result["plan"]
    assert result["changed"] is False
    assert plan["serial"] == [1, 4, 5] and plan["total"] == 10 and len(plan["canaries"]) == 1
    assert re.fullmatch(r"\d{8}T\d{6}Z-\d{6}", plan["run_id"])
    assert plan["stages"] == ["5%", "10%", "50%", "100%"]
    assert plan["docker_hosts"] == {"dock-0": 4, "dock-1": 3, "dock-2": 3}
    assert [len(plan["controls"][k]) for k in ("1", "2", "3")] == [5, 5, 0]


def test_check_mode_gives_the_same_plan():
    args = {"engines": engines(30), "run_id": "42", "settings": {"engine_target_version": "2.4.0"}}
    assert run(args) == run({**args, "_ansible_check_mode": True})


def test_stages_controls_and_run_id_from_the_settings_or_the_options():
    settings = {
        "engine_target_version": "2.4.0",
        "engine_rollout_stages": "1,100%",
        "engine_upgrade_control_engines": 2,
        "engine_run_id": "awx-77",
    }
    plan = run({"engines": engines(12), "settings": settings})["plan"]
    assert (plan["serial"], plan["run_id"], len(plan["controls"]["1"])) == ([1, 11], "awx-77", 2)
    plan = run({"engines": engines(12), "settings": settings, "stages": ["2", "100%"], "controls": 0, "run_id": "r-1"})[
        "plan"
    ]
    assert (plan["serial"], plan["run_id"], plan["controls"]["1"]) == ([2, 10], "r-1", [])


def test_every_problem_in_one_failure_before_anything():
    result = run(
        {
            "engines": [],
            "limit": "web*",
            "stages": "50%,5%",
            "controls": -1,
            "run_id": "a/b",
            "settings": {"engine_upgrade_bake_interval": 0, "engine_hosts": "engines_eu"},
        },
        FailJson,
    )
    problems = result["problems"]
    assert result["msg"].startswith(f"The upgrade's settings have {len(problems)} problems; nothing was changed:")
    joined = "\n".join(problems)
    for expected in (
        "engine_upgrade_target_version is not set",
        "engine_upgrade_bake_interval=0",
        "stages: rollout stages must grow",
        "controls=-1",
        "run_id='a/b'",
        "engine_hosts='engines_eu' matches no host of the inventory within --limit 'web*'",
    ):
        assert expected in joined, joined
    assert len(problems) == 6


def test_stages_that_shrink_with_this_many_engines():
    result = run(
        {"engines": engines(10), "stages": ["3", "10%"], "settings": {"engine_target_version": "2.4.0"}}, FailJson
    )
    assert result["problems"] == [
        "stages: rollout stages must grow: '10%' comes after a larger stage in "
        "['3', '10%'] (3 of 10 Engines are done before it)."
    ]


def test_the_default_pattern_is_named_when_nothing_matches():
    result = run({"engines": [], "settings": {"engine_target_version": "2.4.0"}}, FailJson)
    assert result["problems"] == [
        "engine_hosts='engines' (the default) matches no host of the inventory: nothing to upgrade; check the pattern "
        "(-e engine_hosts=<group or pattern>) and the inventory."
    ]


def test_the_webhook_url_is_hidden(exits):
    url = "https://hooks.example/services/SECRET"
    run({"engines": engines(3), "settings": {"engine_target_version": "2.4.0", "engine_webhook_url": url}})
    assert url in exits["no_log"]
    failed = run({"engines": engines(3), "settings": {"engine_webhook_url": "ftp://SECRET"}}, FailJson)
    assert "SECRET" not in str(failed) and "ftp://SECRET" in exits["no_log"]


def test_the_secret_settings_are_hidden_even_when_the_arguments_fail_their_check(monkeypatch, exits):
    # A paused_run that is no dict (an AWX artifact passed as a string) fails the argument check, before the module
    # reads the settings: the webhook URL, given in secret_settings, is hidden all the same (it showed at -vvv, in
    # the invocation's module_args).
    shown = {}

    def fail_json(self, **kwargs):
        shown["module_args"] = basic.remove_values(self.params, self.no_log_values)
        raise FailJson(kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    url = "https://hooks.example/services/SECRET"
    failed = run({"engines": engines(3), "settings": {"engine_target_version": "2.4.0"}, "paused_run": [1, 2],
                  "secret_settings": {"engine_webhook_url": url}}, FailJson)
    assert "paused_run" in failed["msg"] and "2.4.0" in str(shown["module_args"])
    assert "SECRET" not in str(shown["module_args"]), shown
    done = run({"engines": engines(3), "settings": {"engine_target_version": "2.4.0"},
                "secret_settings": {"engine_webhook_url": url}})
    assert url in exits["no_log"] and url not in str(done)


def test_warnings_for_unknown_names_and_counts_that_look_like_percentages(exits):
    run(
        {
            "engines": engines(20),
            "stages": "5,10,50,100",
            "settings": {"engine_target_version": "2.4.0", "engine_upgrade_bake_second": 3},
        }
    )
    assert exits["warnings"][0].startswith("engine_upgrade_bake_second is not a setting of the upgrade")
    assert "Did you mean engine_upgrade_bake_seconds?" in exits["warnings"][0]
    assert "are numbers of Engines, not percentages (the run has 20)" in exits["warnings"][1]


def test_duplicate_engines_fail():
    result = run({"engines": [{"name": "a"}, {"name": "a"}], "settings": {"engine_target_version": "1"}}, FailJson)
    assert "Engine a is listed twice" in result["msg"]


def test_every_engines_own_variables_are_checked_with_the_settings():
    """Defect D8: a typo in an Engine of a later batch stops the run in the plan, before the canary is touched;
    every problem of every Engine at once, each naming the Engine and the inventory variable."""
    names = [e["name"] for e in engines(6)]
    engine_vars = {
        "engine_deployment": {
            names[0]: None,
            names[1]: "docker",
            names[2]: "compose",
            names[3]: "compose",
            names[4]: "container",
            names[5]: None,
        },
        "engine_container_name": {names[0]: "u0", names[4]: None, names[5]: "u5"},
        "engine_compose_dir": {names[2]: None, names[3]: "engines/u3"},
        "engine_url": {names[0]: "127.0.0.1:9001", names[5]: "http://127.0.0.1:9005"},
        "engine_snapshot_dir": {names[5]: "snapshots"},
    }
    settings = {"engine_target_version": "2.4.0", "engine_upgrade_bake_interval": 0}
    failed = run({"engines": engines(6), "settings": settings, "engine_vars": engine_vars}, expect=FailJson)
    assert failed["msg"].startswith(
        "The upgrade's settings and the Engines' inventory variables have 7 problems; nothing was changed:"
    )
    problems = failed["problems"]
    assert problems[0].startswith("engine_upgrade_bake_interval=0")  # the settings first, then the Engines
    assert problems[1:] == [
        f"{names[0]}: engine_url='127.0.0.1:9001' is not an http:// or https:// URL with a host: give the Engine's "
        "base URL, e.g. http://127.0.0.1:9001.",
        f"{names[1]}: engine_deployment='docker': must be one of container, compose (a per-user container, or a "
        "service of a Compose project).",
        f"{names[2]}: engine_compose_dir is not set: a Compose Engine (engine_deployment=compose) needs its project's "
        "folder on the Docker host.",
        f"{names[3]}: engine_compose_dir='engines/u3': not an absolute path; the folder on the Docker host must be "
        f"absolute, e.g. /srv/engines/{names[3]}.",
        f"{names[4]}: engine_container_name is not set: a per-user container Engine (engine_deployment=container, "
        "the default) needs its container's name.",
        f"{names[5]}: engine_snapshot_dir='snapshots': not an absolute path; the folder on the Docker host must be "
        f"absolute, e.g. /srv/engines/{names[5]}.",
    ]


def test_two_hosts_naming_one_container_on_one_docker_host_are_refused():
    # engines(6, hosts=3): sept-u000 and sept-u003 are both on dock-0; sept-u001 is on dock-1.
    engine_vars = {"engine_container_name": {"sept-u000": "u1", "sept-u003": "u1 ", "sept-u001": "u1",
                                             "sept-u002": "u2", "sept-u004": "u4", "sept-u005": "u5"},
                   "engine_deployment": {"sept-u005": "compose"}, "engine_compose_dir": {"sept-u005": "/srv/u1"}}
    failed = run({"engines": engines(6), "settings": {"engine_target_version": "2.4.0"}, "engine_vars": engine_vars},
                 expect=FailJson)
    assert failed["problems"] == [
        "sept-u000, sept-u003: all name the container u1 on dock-0; an Engine is one host of the inventory: keep one "
        "of them (or set engine_container_name right)."
    ]
    engine_vars["engine_container_name"]["sept-u003"] = "u3"
    assert run({"engines": engines(6), "settings": {"engine_target_version": "2.4.0"},
                "engine_vars": engine_vars})["plan"]["total"] == 6


def test_good_engine_variables_plan_and_only_the_runs_engines_are_checked():
    engine_vars = {
        "engine_deployment": {"sept-u000": "compose", "sept-u001": None, "not-in-the-run": "docker"},
        "engine_compose_dir": {"sept-u000": "~/engine"},
        "engine_container_name": {"sept-u001": "u1"},
        "engine_url": {"sept-u000": "https://engine.example:8443/"},
    }
    result = run({"engines": engines(2), "settings": {"engine_target_version": "2.4.0"}, "engine_vars": engine_vars})
    assert result["plan"]["total"] == 2
    only_settings = run(
        {"engines": engines(2), "settings": {"engine_upgrade_bake_interval": 0, "engine_target_version": "2.4.0"}},
        expect=FailJson,
    )
    assert only_settings["msg"].startswith("The upgrade's settings have a problem; nothing was changed:")


def test_a_promotion_continues_the_paused_run_and_an_abort_names_its_canaries(tmp_path):
    import json

    fleet = engines(10)
    first = run({"engines": fleet, "settings": {"engine_target_version": "2.4.0",
                                                "engine_rollout_pause_after_canary": True}})["plan"]
    assert first["action"] == "upgrade" and first["pause_after_canary"] is True and first["paused"] is None
    canary = first["batches"][0][0]
    folder = tmp_path / "reports" / "paused-1"
    folder.mkdir(parents=True)
    (folder / "upgrade.json").write_text(json.dumps({
        "run_id": "paused-1", "target_version": "2.4.0", "outcome": "awaiting_promotion", "written_at": "t",
        "engines": [{"engine": canary, "batch": 1, "status": "upgraded", "from_version": "2.3.0"}]}))
    promote = run({"engines": fleet, "settings": {"engine_target_version": "2.4.0", "engine_rollout_promote": True,
                                                  "engine_rollout_pause_after_canary": True}})["plan"]
    assert promote["action"] == "promote" and promote["run_id"] == "paused-1"
    assert promote["batches"] == first["batches"] and promote["pause_after_canary"] is False
    abort = run({"engines": fleet, "settings": {"engine_target_version": "2.4.0", "engine_rollout_abort": True}})
    assert abort["plan"]["action"] == "abort"
    assert abort["plan"]["paused"]["canaries"] == [{"engine": canary, "from_version": "2.3.0"}]
    # Another --limit makes other canaries: not the same rollout.
    other = run({"engines": fleet[1:] if canary == fleet[0]["name"] else fleet[:1], "stages": "1,100%",
                 "settings": {"engine_target_version": "2.4.0", "engine_rollout_promote": True}}, FailJson)
    assert "is not the paused run's canaries" in other["msg"] and "nothing was changed" in other["msg"]
    # Nothing paused for that target: one clear error.
    none = run({"engines": fleet, "settings": {"engine_target_version": "2.4.2", "engine_rollout_promote": True}},
               FailJson)
    assert "nothing awaits promotion" in none["msg"]
