# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one validation of the upgrade's settings: every bad input gets one message that names it and says what to do."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from ansible_collections.september.engine.plugins.module_utils import _settings
from engine_testkit.settings import FAST_VARS

ROLE = Path(__file__).resolve().parents[4] / "roles" / "engine_upgrade"
#: Variables the role's restructure adds (issues 9, 10, 11, 13); they are checked against the role's defaults as
#: soon as they are there. Remove a name from here when roles/engine_upgrade/defaults/main.yml holds it.
PENDING: set = set()
#: Role defaults that are expressions: what they fall back to is in SETTINGS (alias) or computed (report dir).
DERIVED = {
    "engine_upgrade_target_version", "engine_upgrade_image_repository", "engine_upgrade_rollout_stages",
    "engine_upgrade_lock_owner", "engine_upgrade_state_dir", "engine_upgrade_report_dir",
    "engine_upgrade_evals_file", "engine_upgrade_eval_command", "engine_upgrade_webhook_url",
    "engine_upgrade_webhook_prefix",
}


@pytest.fixture
def env(tmp_path) -> dict:
    return {"HOME": str(tmp_path), "SEPTEMBER_ENGINE_REPORT_DIR": str(tmp_path / "reports")}


def problems_of(given: dict, env: dict) -> list[str]:
    return _settings.validate({"engine_target_version": "2.4.0", **given}, env)[1]


def test_the_defaults_have_no_problem(env):
    assert problems_of({}, env) == []


def test_the_test_suites_fast_settings_have_no_problem(env):
    assert problems_of({**FAST_VARS, "engine_rollout_stages": "100%"}, env) == []


# (settings, a part of the one message each must give). Every row is one problem: exactly one message.
ONE_PROBLEM = [
    # the target
    ({"engine_target_version": ""}, "engine_target_version is not set: set engine_target_version"),
    ({"engine_target_version": 2.1}, "YAML reads an unquoted 2.10 as 2.1"),
    ({"engine_target_version": "5%"}, "looks like a rollout stage, not a release"),
    ({"engine_target_version": "5%,10%,100%"}, "looks like a rollout stage"),
    ({"engine_target_version": "engine:2.4.0"}, "give the image tag only (2.4.0)"),
    ({"engine_target_version": "2.4 .0"}, "not a valid image tag"),
    ({"engine_target_version": " 2.4.0 "}, "spaces around the release; give the image tag alone, e.g. '2.4.0'"),
    ({"engine_upgrade_target_version": ""}, "engine_upgrade_target_version is not set"),
    ({"engine_image_repository": "registry:5000/engine:2.4.0"}, "holds a tag or digest"),
    # the stages
    ({"engine_rollout_stages": "5%,2.4.0"}, "it looks like a release: the release goes in engine_target_version"),
    ({"engine_rollout_stages": ["50%", "10%"]}, "rollout stages must grow: '10%' comes after a larger stage"),
    ({"engine_rollout_stages": ["5%", "150%"]}, "'150%' is neither a percentage in (0%, 100%]"),
    ({"engine_rollout_stages": "5%,,100%"}, "hold an empty stage"),
    ({"engine_rollout_stages": []}, "must be a non-empty list"),
    ({"engine_upgrade_rollout_stages": {"a": 1}}, "engine_upgrade_rollout_stages={'a': 1}: must be a list of stages"),
    # bakes
    ({"engine_upgrade_bake_interval": "0"}, "engine_upgrade_bake_interval=0: the bake checks the Engine every"),
    ({"engine_upgrade_bake_interval": 90}, "engine_upgrade_bake_interval=90 is longer than "
                                           "engine_upgrade_canary_bake_seconds=60 (the default)"),
    ({"engine_upgrade_bake_seconds": 3, "engine_upgrade_bake_interval": 5},
     "is longer than engine_upgrade_bake_seconds=3"),
    ({"engine_upgrade_canary_bake_seconds": -1}, "a bake cannot be negative"),
    ({"engine_upgrade_bake_seconds": -5}, "a bake cannot be negative"),
    ({"engine_upgrade_canary_max_bake_seconds": 30}, "engine_upgrade_canary_max_bake_seconds=30 is shorter than "
                                                     "engine_upgrade_canary_bake_seconds=60 (the default)"),
    ({"engine_upgrade_probe_cases": [{"name": "x"}]},
     "engine_upgrade_probe_cases=[{'name': 'x'}]: must be a non-empty list of eval cases, each with a name and a "
     "message"),
    ({"engine_upgrade_probe_cases": []}, "engine_upgrade_probe_cases=[]: must be a non-empty list of eval cases"),
    ({"engine_upgrade_bake_seconds": 400, "engine_upgrade_bake_max_seconds": 300},
     "engine_upgrade_bake_max_seconds=300 is shorter than engine_upgrade_bake_seconds=400"),
    ({"engine_upgrade_baseline_max_seconds": 100}, "raise engine_upgrade_baseline_max_seconds to at least 300"),
    # health and lock
    ({"engine_upgrade_health_timeout": 5}, "engine_upgrade_health_timeout=5 is shorter than "
                                           "engine_upgrade_healthy_streak=3 (the default) probes 2 s apart"),
    ({"engine_upgrade_healthy_streak": 0}, "engine_upgrade_healthy_streak=0: the healthy probes in a row"),
    ({"engine_upgrade_health_timeout": 0}, "engine_upgrade_health_timeout=0: the wait for the new release"),
    ({"engine_upgrade_drain_timeout": -1}, "the drain cannot be negative"),
    ({"engine_upgrade_lock_ttl": 300}, "engine_upgrade_lock_ttl=300 is shorter than one Engine's upgrade (drain 60 + "
                                       "health timeout 120 + longest bake 600 = 780 s)"),
    ({"engine_upgrade_lock_owner": " "}, "say who runs the upgrade"),
    # checks
    ({"engine_upgrade_metrics_min_turns": 0}, "engine_upgrade_metrics_min_turns=0: the measures need at least one"),
    ({"engine_upgrade_metrics_slices": 0}, "needs at least one slice"),
    ({"engine_upgrade_baseline_seconds": 0}, "the baseline is a window"),
    ({"engine_upgrade_error_rate_factor": 1}, "engine_upgrade_error_rate_factor=1.0: the error-rate factor is a "
                                              "multiple of the baseline and must be more than 1"),
    ({"engine_upgrade_latency_factor": 0.5}, "the latency factor is a multiple of the baseline"),
    ({"engine_upgrade_error_rate_max_increase": 10}, "the error-rate increase (absolute) must be in (0, 1]"),
    ({"engine_upgrade_error_rate_max_increase": 0}, "must be in (0, 1]"),
    ({"engine_upgrade_cache_hit_ratio_max_drop": 20}, "the cache hit ratio drop (absolute) must be in (0, 1]"),
    ({"engine_upgrade_new_error_kind_share": 0}, "the share of turns with a new error kind must be in (0, 1]"),
    ({"engine_upgrade_new_error_kind_share": 5}, "must be in (0, 1] (a share: 0.05 is 5%)"),
    ({"engine_upgrade_significance": 0.7}, "the significance of the one-sided test must be in (0, 0.5]"),
    ({"engine_upgrade_significance": 0}, "must be in (0, 0.5]"),
    ({"engine_upgrade_new_error_kind_min_count": 0}, "a new error kind must be seen at least once"),
    ({"engine_upgrade_probe_turns": -1}, "synthetic probe turns cannot be negative"),
    ({"engine_upgrade_control_engines": -2}, "engine_upgrade_control_engines=-2: control Engines cannot be negative"),
    ({"engine_upgrade_outage_controls": -1}, "engine_upgrade_outage_controls=-1: control Engines cannot be negative"),
    # policies and choices
    ({"engine_upgrade_undecided": "rolback"}, "engine_upgrade_undecided='rolback': must be one of rollback, hold, "
                                              "proceed"),
    ({"engine_upgrade_undecided_later": "continue"}, "must be one of rollback, hold, proceed"),
    ({"engine_upgrade_pull": "sometimes"}, "must be one of missing, always, never"),
    ({"engine_upgrade_snapshot_verify": "fast"}, "must be one of quick, full, none"),
    # evals
    ({"engine_upgrade_eval_command": ["make", "eval"], "engine_evals_file": "__EVALS__"},
     "engine_evals_file and engine_upgrade_eval_command are both set"),
    ({"engine_evals_file": "/nonexistent/evals.yml"}, "not a file on the controller"),
    ({"engine_upgrade_eval_timeout": 0}, "each eval case needs time"),
    ({"engine_upgrade_eval_max_regressions": -1}, "a number of tolerated regressions"),
    # webhook
    ({"engine_webhook_url": "hooks.slack.com/services/T0/B0/SECRET"}, "engine_webhook_url (value not shown) is not "
                                                                      "an http(s) URL (it has no http://"),
    ({"engine_upgrade_webhook_url": "ftp://hooks.example/SECRET"}, "(its scheme is 'ftp')"),
    ({"engine_upgrade_webhook_timeout": 0}, "the wait for the webhook"),
    # folders, retention
    ({"engine_report_dir": "__FILE__/reports"}, "is a file, not a folder, on the controller"),
    ({"engine_state_dir": "september"}, "engine_state_dir='september': not an absolute path"),
    ({"engine_upgrade_snapshot_retain_days": -1}, "days a snapshot is kept cannot be negative"),
    ({"engine_upgrade_destructive_retain_days": -7}, "days a snapshot is kept cannot be negative"),
    ({"engine_upgrade_snapshot_keep_last": -1}, "snapshots kept cannot be negative"),
    ({"engine_upgrade_diagnostics_log_lines": 0}, "the diagnostics bundle keeps log lines"),
    # the playbook's own
    ({"engine_rollout_max_fail_percentage": 150}, "engine_rollout_max_fail_percentage=150: a percentage of a batch's"),
    ({"engine_rollout_max_fail_percentage": -1}, "0 to 100"),
    ({"engine_rollout_promote": True, "engine_rollout_abort": "yes"}, "engine_rollout_promote and "
                                                                      "engine_rollout_abort are both true"),
    ({"engine_upgrade_allow_rolled_back_release": True}, "release=true needs engine_upgrade_rolled_back_release_rea"),
    ({"engine_upgrade_boot_test": "sometimes"}, "engine_upgrade_boot_test='sometimes'"),
    ({"engine_upgrade_replay": "all"}, "engine_upgrade_replay='all'"),
    ({"engine_run_id": "../../etc"}, "engine_run_id='../../etc': names the run's report folder"),
    # types
    ({"engine_upgrade_drain_timeout": "sixty"}, "engine_upgrade_drain_timeout='sixty': must be a whole number."),
    ({"engine_upgrade_drain_timeout": 1.5}, "must be a whole number"),
    ({"engine_upgrade_drain_timeout": True}, "must be a whole number"),
    ({"engine_upgrade_latency_factor": "twice"}, "engine_upgrade_latency_factor='twice': must be a number."),
    ({"engine_upgrade_significance": "nan"}, "must be a number"),
    ({"engine_upgrade_rollback": "maybe"}, "engine_upgrade_rollback='maybe': must be true or false."),
    ({"engine_upgrade_lock_owner": ["me"]}, "must be a string"),
    ({"engine_upgrade_eval_command": {"cmd": "x"}}, "must be a list or a string"),
]


@pytest.mark.parametrize(("given", "expected"), ONE_PROBLEM, ids=lambda v: str(v)[:60] if isinstance(v, dict) else "")
def test_each_bad_input_gets_one_clear_message(given, expected, env, tmp_path):
    evals = tmp_path / "evals.yml"
    evals.write_text("cases: []\n")
    (tmp_path / "a-file").write_text("x")
    given = {k: (v.replace("__EVALS__", str(evals)).replace("__FILE__", str(tmp_path / "a-file"))
                 if isinstance(v, str) else v) for k, v in given.items()}
    problems = problems_of(given, env)
    assert len(problems) == 1, problems
    assert expected in problems[0], problems[0]
    assert problems[0].endswith("."), problems[0]


def test_every_problem_is_reported_together(env):
    problems = problems_of({
        "engine_upgrade_bake_interval": 0, "engine_upgrade_significance": 0.9, "engine_rollout_stages": "50%,5%",
        "engine_upgrade_undecided": "maybe", "engine_upgrade_drain_timeout": "x",
    }, env)
    assert len(problems) == 5
    message = _settings.message(problems)
    assert message.startswith("The upgrade's settings have 5 problems; nothing was changed:\n- ")
    assert message.count("\n- ") == 5
    assert _settings.message(problems[:1]).startswith("The upgrade's settings have a problem; nothing was changed:")


def test_a_secret_never_appears(env):
    for url in ("hooks.slack.com/services/T0/B0/SECRET", "ftp://x/SECRET", "https:/SECRET"):
        problems = problems_of({"engine_webhook_url": url, "engine_upgrade_webhook_url": url}, env)
        assert problems and all("SECRET" not in p for p in problems), problems
    problems = problems_of({"engine_webhook_url": {"a": "SECRET"}}, env)
    assert problems and "SECRET" not in problems[0] and "engine_webhook_url (value not shown)" in problems[0]


def test_a_good_webhook_and_eval_set_pass(env, tmp_path):
    evals = tmp_path / "evals.yml"
    evals.write_text("cases: []\n")
    assert problems_of({"engine_webhook_url": "https://hooks.slack.com/services/T0/B0/x",
                        "engine_evals_file": str(evals), "engine_upgrade_eval_command": []}, env) == []


def test_the_roles_own_name_wins_over_the_short_one(env):
    s, problems = _settings.validate({"engine_target_version": "2.3.0", "engine_upgrade_target_version": "2.4.0"}, env)
    assert problems == [] and s.values["engine_upgrade_target_version"] == "2.4.0"
    s = _settings.validate({"engine_target_version": "2.3.0"}, env)[0]
    assert s.values["engine_upgrade_target_version"] == "2.3.0" and s.cite["engine_upgrade_target_version"] == (
        "engine_target_version")


def test_command_line_strings_are_read_like_the_role_reads_them(env):
    s, problems = _settings.validate({"engine_target_version": "2.4.0", "engine_upgrade_drain_timeout": "30",
                                      "engine_upgrade_rollback": "no", "engine_upgrade_latency_factor": "3",
                                      "engine_rollout_stages": "1,100%"}, env)
    assert problems == []
    assert (s.values["engine_upgrade_drain_timeout"], s.values["engine_upgrade_rollback"],
            s.values["engine_upgrade_latency_factor"]) == (30, False, 3.0)


def test_the_report_dir_default_follows_the_environment(tmp_path):
    s = _settings.validate({}, {"HOME": str(tmp_path)})[0]
    assert s.values["engine_upgrade_report_dir"] == str(tmp_path / "september-engine-reports")
    s = _settings.validate({}, {"HOME": "/x", "SEPTEMBER_ENGINE_REPORT_DIR": "/r"})[0]
    assert s.values["engine_upgrade_report_dir"] == "/r"


def test_an_unwritable_report_dir(env, monkeypatch, tmp_path):
    monkeypatch.setattr(_settings.os, "access", lambda path, mode: False)
    problems = problems_of({"engine_report_dir": str(tmp_path / "new" / "reports")}, env)
    assert len(problems) == 1 and "not writable on the controller (nor can" in problems[0]
    assert problems_of({"engine_report_dir": str(tmp_path / "new"), "engine_upgrade_write_report": False,
                        "engine_upgrade_diagnostics": False}, env) == []


def test_unknown_names_get_a_warning_with_a_guess():
    warnings = _settings.unknown_names({"engine_upgrade_canary_bake_second": 3, "engine_upgrade_zzz": 1,
                                        "engine_target_version": "2.4.0", "engine_url": "x"})
    assert warnings == [
        "engine_upgrade_canary_bake_second is not a setting of the upgrade: it is ignored. "
        "Did you mean engine_upgrade_canary_bake_seconds?",
        "engine_upgrade_zzz is not a setting of the upgrade: it is ignored.",
    ]


def test_the_filter_picks_every_setting_and_nothing_else():
    assert all(_settings.NAME_RE.match(name) for name in list(_settings.SETTINGS) + list(_settings.ALIASES))
    for other in ("engine_api_key", "engine_url", "engine_container_name", "engine_deployment", "engine_docker_host"):
        assert not _settings.NAME_RE.match(other)


# ---- in step with the role -----------------------------------------------------------------------------------

def test_the_settings_follow_the_roles_defaults():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    for name, value in defaults.items():
        assert name in _settings.SETTINGS, f"{name} (roles/engine_upgrade/defaults) is missing from _settings.SETTINGS"
        default, alias = _settings.SETTINGS[name][1:]
        if isinstance(value, str) and "{{" in value:
            assert name in DERIVED, f"{name}: the role's default became an expression; teach _settings its value"
            if alias:
                assert f"{alias} | default(" in value, f"{name}: the role falls back to another variable than {alias}"
        else:
            assert name not in DERIVED, f"{name}: the role's default is a plain value now"
            assert default == value, f"{name}: the role's default is {value!r}, _settings.SETTINGS says {default!r}"
    for name in _settings.SETTINGS:
        if name.startswith("engine_upgrade_"):
            assert name in defaults or name in PENDING, f"{name} is not a variable of the role"


def test_the_settings_follow_the_roles_argument_specs():
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    types = {"int": "int", "float": "float", "bool": "bool", "str": "str", "path": "str", "list": "stages",
             "raw": "command"}
    for name, option in spec.items():
        kind = _settings.SETTINGS[name][0]
        if option["type"] == "list" and option.get("elements") == "dict":
            assert kind == "cases", name
        elif "choices" in option:
            assert kind == tuple(option["choices"]), name
        else:
            assert kind == types[option["type"]], f"{name}: {option['type']} in argument_specs, {kind} here"


def test_env_is_not_needed(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SEPTEMBER_ENGINE_REPORT_DIR", raising=False)
    s, problems = _settings.validate({"engine_target_version": "2.4.0"})
    assert problems == [] and s.values["engine_upgrade_report_dir"] == os.path.join(str(tmp_path),
                                                                                    "september-engine-reports")


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        ("int", 3, 3),
        ("int", 3.0, 3),
        ("int", "7", 7),
        ("int", 2.5, ValueError),
        ("int", True, TypeError),
        ("int", None, TypeError),
        ("float", "0.5", 0.5),
        ("float", float("nan"), ValueError),
        ("float", float("inf"), ValueError),
        ("float", False, TypeError),
        ("bool", "yes", True),
        ("str", None, ""),
        ("str", 2.1, 2.1),  # kept a float: the target version's check says why 2.10 needs quotes
        ("str", 5, "5"),
        ("str", ["a"], TypeError),
        ("stages", "5%,100%", "5%,100%"),
        ("stages", 5, TypeError),
        ("command", None, []),
        ("command", "run evals", "run evals"),
        ("command", {"a": 1}, TypeError),
        ("cases", ({"name": "a", "message": "m"},), [{"name": "a", "message": "m"}]),
        ("cases", [], ValueError),
        ("cases", [{"name": "a"}], ValueError),
        ("cases", [{"name": "", "message": "m"}], ValueError),
        ("cases", ["a"], ValueError),
        (("missing", "always"), "always", "always"),
        (("missing", "always"), "sometimes", ValueError),
    ],
)
def test_coerce_by_kind(kind, raw, expected):
    if isinstance(expected, type) and issubclass(expected, Exception):
        with pytest.raises(expected):
            _settings._coerce(kind, raw)
    else:
        assert _settings._coerce(kind, raw) == expected
