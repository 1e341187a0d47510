# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One validation of the upgrade's settings, before anything changes: every problem found, each said once.

The role's ``meta/argument_specs.yml`` checks types when the role starts, host by host. This module checks what a
user can plausibly get wrong beyond that (ranges, combinations, things only the controller can see: the report
folder, the eval file) and the types too, so that one run answers every bad input at once, with one message per
problem naming the variable as the user wrote it and saying what to fix.

:data:`SETTINGS` mirrors ``roles/engine_upgrade/defaults/main.yml`` (a unit test keeps the two in step): the
playbook's plan play runs before the role is loaded, so the role's defaults are not visible there and are filled
in here. A setting given under its short inventory name (``engine_target_version``) counts when the role's own
name (``engine_upgrade_target_version``) is not set, as in the role's defaults.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from urllib.parse import urlsplit

from ansible.module_utils.common.validation import check_type_bool, check_type_float, check_type_int

from ansible_collections.september.engine.plugins.module_utils import _plan

UNDECIDED_POLICIES = ("rollback", "hold", "proceed")
#: engine_health's probe interval while waiting for the new release to become healthy (seconds).
HEALTH_PROBE_INTERVAL = 2
#: A Docker image tag (what engine_target_version must be).
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
#: Settings whose value is a secret: never shown in a message.
SECRETS = frozenset({"engine_upgrade_webhook_url", "engine_webhook_url"})


def _report_dir_default(environ) -> str:
    home = environ.get("HOME") or os.path.expanduser("~")
    return environ.get("SEPTEMBER_ENGINE_REPORT_DIR") or os.path.join(home, "september-engine-reports")


# name: (type, default, short inventory name the role's default falls back to). A callable default is computed
# from the environment of the controller (where the plan runs).
SETTINGS: dict[str, tuple] = {
    "engine_upgrade_target_version": ("str", "", "engine_target_version"),
    "engine_upgrade_image_repository": ("str", "", "engine_image_repository"),
    "engine_upgrade_pull": (("missing", "always", "never"), "missing", None),
    "engine_upgrade_rollout_stages": ("stages", list(_plan.DEFAULT_STAGES), "engine_rollout_stages"),
    "engine_upgrade_drain_timeout": ("int", 60, None),
    "engine_upgrade_health_timeout": ("int", 120, None),
    "engine_upgrade_healthy_streak": ("int", 3, None),
    "engine_upgrade_canary_bake_seconds": ("int", 60, None),
    "engine_upgrade_canary_max_bake_seconds": ("int", 600, None),
    "engine_upgrade_bake_interval": ("int", 5, None),
    "engine_upgrade_allow_destructive": ("bool", False, None),
    "engine_upgrade_snapshot_method": (("file", "volume", "both"), "file", None),
    "engine_upgrade_volume_snapshot_tasks": ("str", "", None),
    "engine_upgrade_volume_restore_tasks": ("str", "", None),
    "engine_upgrade_boot_test": (("auto", "always", "never"), "auto", None),
    "engine_upgrade_boot_timeout": ("int", 120, None),
    "engine_upgrade_allow_rolled_back_release": ("bool", False, None),
    "engine_upgrade_rolled_back_release_reason": ("str", "", None),
    "engine_upgrade_replay": (("auto", "replay", "report", "off"), "auto", None),
    "engine_upgrade_snapshot_retain_days": ("int", 2, None),
    "engine_upgrade_destructive_retain_days": ("int", 7, None),
    "engine_upgrade_snapshot_keep_last": ("int", 5, None),
    "engine_upgrade_snapshot_verify": (("quick", "full", "none"), "quick", None),
    "engine_upgrade_require_healthy": ("bool", True, None),
    "engine_upgrade_rollback": ("bool", True, None),
    "engine_upgrade_unwind": ("bool", False, None),
    "engine_upgrade_lock_owner": ("str", "ansible-playbook", None),
    "engine_upgrade_lock_ttl": ("int", 1200, None),
    "engine_upgrade_state_dir": ("str", "/var/lib/september-engine", "engine_state_dir"),
    "engine_upgrade_report_dir": ("str", _report_dir_default, "engine_report_dir"),
    "engine_upgrade_write_report": ("bool", True, None),
    "engine_upgrade_checks": ("bool", True, None),
    "engine_upgrade_baseline_seconds": ("int", 300, None),
    "engine_upgrade_baseline_max_seconds": ("int", 86400, None),
    "engine_upgrade_bake_seconds": ("int", 0, None),
    "engine_upgrade_bake_max_seconds": ("int", 0, None),
    "engine_upgrade_metrics_slices": ("int", 3, None),
    "engine_upgrade_metrics_min_turns": ("int", 20, None),
    "engine_upgrade_error_rate_max_increase": ("float", 0.10, None),
    "engine_upgrade_error_rate_factor": ("float", 2.0, None),
    "engine_upgrade_latency_factor": ("float", 2.0, None),
    "engine_upgrade_cache_hit_ratio_max_drop": ("float", 0.2, None),
    "engine_upgrade_fail_on_cache_drop": ("bool", False, None),
    "engine_upgrade_fail_on_new_warnings": ("bool", False, None),
    "engine_upgrade_significance": ("float", 0.05, None),
    "engine_upgrade_new_error_kind_share": ("float", 0.05, None),
    "engine_upgrade_new_error_kind_min_count": ("int", 3, None),
    "engine_upgrade_probe_turns": ("int", 0, None),
    "engine_upgrade_probe_cases": (
        "cases",
        [
            {"name": "probe-sum", "message": "what is 17 + 25", "checks": [{"equals": "42"}]},
            {"name": "probe-product", "message": "what is 6 * 7", "checks": [{"equals": "42"}]},
            {"name": "probe-difference", "message": "what is 50 - 8", "checks": [{"equals": "42"}]},
            {"name": "probe-echo", "message": "echo: september probe", "checks": [{"equals": "september probe"}]},
        ],
        None,
    ),
    "engine_upgrade_control_engines": ("int", _plan.DEFAULT_CONTROLS, None),
    "engine_upgrade_undecided": (UNDECIDED_POLICIES, "rollback", None),
    "engine_upgrade_undecided_later": (UNDECIDED_POLICIES, "proceed", None),
    "engine_upgrade_evals_file": ("str", "", "engine_evals_file"),
    "engine_upgrade_eval_command": ("command", [], "engine_eval_command"),
    "engine_upgrade_eval_max_regressions": ("int", 0, None),
    "engine_upgrade_eval_timeout": ("int", 30, None),
    "engine_upgrade_outage_controls": ("int", 3, None),
    "engine_upgrade_webhook_url": ("str", "", "engine_webhook_url"),
    "engine_upgrade_webhook_timeout": ("int", 10, None),
    "engine_upgrade_webhook_prefix": ("str", "", "engine_webhook_prefix"),
    "engine_upgrade_diagnostics": ("bool", True, None),
    "engine_upgrade_diagnostics_log_lines": ("int", 5000, None),
    # The playbook's own settings.
    "engine_rollout_max_fail_percentage": ("int", 0, None),
    "engine_rollout_pause_after_canary": ("bool", False, None),
    "engine_rollout_promote": ("bool", False, None),
    "engine_rollout_abort": ("bool", False, None),
    "engine_hosts": ("str", "engines", None),
    "engine_run_id": ("str", "", None),
}
#: The resolved settings the plan returns (upgrade.yml's plan play reads the rolled-back releases with them).
PLAN_SETTINGS = (
    "engine_upgrade_target_version",
    "engine_upgrade_state_dir",
    "engine_upgrade_report_dir",
    "engine_upgrade_allow_rolled_back_release",
    "engine_upgrade_rolled_back_release_reason",
    "engine_upgrade_lock_owner",
    "engine_upgrade_lock_ttl",
    "engine_upgrade_drain_timeout",
    "engine_upgrade_webhook_prefix",
    "engine_upgrade_write_report",
    "engine_upgrade_replay",
    "engine_rollout_pause_after_canary",
    "engine_rollout_promote",
    "engine_rollout_abort",
)
ALIASES = {spec[2]: name for name, spec in SETTINGS.items() if spec[2]}
#: What the rollout_settings filter picks from an Engine's variables: every setting, under either of its names.
NAME_RE = re.compile(
    r"^engine_(upgrade_|rollout_)|^(" + "|".join([*sorted(ALIASES), "engine_hosts", "engine_run_id"]) + ")$"
)
_KIND = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "stages": "a list of stages or a comma-separated string",
    "command": "a list or a string",
    "cases": "a non-empty list of eval cases, each with a name and a message (docs/evals.md)",
}


class Settings:
    """The resolved settings: ``values`` by the role's name, ``cite[name]`` the name the user set (or the role's),
    ``given`` the names the user set, ``problems`` found so far (type errors first)."""

    def __init__(self, given: dict, environ=None):
        environ = os.environ if environ is None else environ
        self.values: dict = {}
        self.cite: dict[str, str] = {}
        self.given: set[str] = set()
        self.problems: list[str] = []
        for name, (kind, default, alias) in SETTINGS.items():
            if name in given:
                raw, self.cite[name] = given[name], name
            elif alias and alias in given:
                raw, self.cite[name] = given[alias], alias
            else:
                self.cite[name] = name
                self.values[name] = default(environ) if callable(default) else default
                continue
            self.given.add(name)
            try:
                self.values[name] = _coerce(kind, raw)
            except (TypeError, ValueError):
                self.values[name] = default(environ) if callable(default) else default
                self.problems.append(f"{self.show(name, raw)}: must be {_describe(kind)}.")

    def show(self, name: str, value=None) -> str:
        """``name=value`` as the user wrote it (a secret's value never shown); ``(the default)`` if not set."""
        value = self.values.get(name) if value is None else value
        cited = self.cite.get(name, name)
        if name in SECRETS or cited in SECRETS:
            return f"{cited} (value not shown)"
        text = f"{cited}={value!r}" if isinstance(value, str) else f"{cited}={value}"
        return text if name in self.given else f"{text} (the default)"


def _describe(kind) -> str:
    if isinstance(kind, tuple):
        return "one of " + ", ".join(kind)
    return _KIND[kind]


def _number_input(raw) -> None:
    """A boolean or a null is no number, though Python would take True for 1."""
    if isinstance(raw, bool) or raw is None:
        raise TypeError(raw)


def _as_int(raw) -> int:
    _number_input(raw)
    if isinstance(raw, float):
        if not raw.is_integer():
            raise ValueError(raw)
        return int(raw)
    return check_type_int(raw)


def _as_float(raw) -> float:
    _number_input(raw)
    value = check_type_float(raw)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(raw)
    return value


def _as_str(raw):
    if raw is None:
        return ""
    if isinstance(raw, (dict, list, tuple, bool)):
        raise TypeError(raw)
    return raw if isinstance(raw, (str, float)) else str(raw)  # a float stays one: _target() explains it


def _as_list_or_string(raw):
    if not isinstance(raw, (str, list, tuple)):
        raise TypeError(raw)
    return raw


def _as_command(raw):
    return [] if raw is None else _as_list_or_string(raw)


def _is_case(case) -> bool:
    return all(isinstance(case, dict) and isinstance(case.get(key), str) and case[key] for key in ("name", "message"))


def _as_cases(raw) -> list:
    if not isinstance(raw, (list, tuple)) or not raw or not all(_is_case(case) for case in raw):
        raise ValueError(raw)
    return list(raw)


#: kind -> the function that returns a value of that kind, or raises TypeError / ValueError.
_COERCE = {
    "int": _as_int,
    "float": _as_float,
    "bool": check_type_bool,
    "str": _as_str,
    "stages": _as_list_or_string,
    "cases": _as_cases,
    "command": _as_command,
}


def _coerce(kind, raw):
    if isinstance(kind, tuple):  # a choice
        if str(raw) not in kind:
            raise ValueError(raw)
        return str(raw)
    return _COERCE[kind](raw)


def unknown_names(given: dict) -> list[str]:
    """Warnings for names that look like settings but are none (a typo is otherwise silently ignored)."""
    warnings = []
    # Compared without the common "engine_" prefix, which would make every name look close to every other.
    known = {name[len("engine_") :]: name for name in list(SETTINGS) + list(ALIASES)}
    for name in sorted(given):
        if name in SETTINGS or name in ALIASES or not re.match(r"^engine_(upgrade|rollout)_", name):
            continue
        close = difflib.get_close_matches(name[len("engine_") :], list(known), n=1, cutoff=0.8)
        hint = f" Did you mean {known[close[0]]}?" if close else ""
        warnings.append(f"{name} is not a setting of the upgrade: it is ignored.{hint}")
    return warnings


# ---- the checks -------------------------------------------------------------------------------------------------


def _at_least(s: Settings, name: str, low: int, what: str) -> list[str]:
    value = s.values[name]
    if value < low:
        return [f"{s.show(name)}: {what}; set it to {low} or more."]
    return []


def _share(s: Settings, name: str, high: float, what: str) -> list[str]:
    value = s.values[name]
    if not 0 < value <= high:
        return [f"{s.show(name)}: {what} must be in (0, {high:g}] (a share: 0.05 is 5%); set e.g. {SETTINGS[name][1]}."]
    return []


def _factor(s: Settings, name: str, what: str) -> list[str]:
    if s.values[name] <= 1:
        return [
            f"{s.show(name)}: {what} is a multiple of the baseline and must be more than 1 (2.0 is twice as bad); "
            f"at {s.values[name]} every Engine would count as worse."
        ]
    return []


def _target(s: Settings) -> list[str]:
    name, raw = "engine_upgrade_target_version", s.values["engine_upgrade_target_version"]
    if isinstance(raw, float):
        return [
            f"{s.show(name)}: a number, not a tag (YAML reads an unquoted 2.10 as 2.1); quote the release, e.g. '2.10'."
        ]
    text = str(raw).strip()
    if not text:
        return [
            f"{s.cite[name]} is not set: set engine_target_version to the release to upgrade to "
            f"(for example -e engine_target_version=2.4.0)."
        ]
    # The first that applies: (is it so, what to say).
    checks = (
        # An AWX survey field does not trim: the role would ask the Docker host for "engine: 2.4.0".
        (text != str(raw), f"spaces around the release; give the image tag alone, e.g. {text!r}."),
        (text.endswith("%") or "," in text,
         "looks like a rollout stage, not a release; the release (an image tag such as 2.4.0) goes in "
         "engine_target_version, the stages in engine_rollout_stages."),
        (":" in text or "/" in text or "@" in text,
         "give the image tag only (2.4.0); the repository goes in engine_image_repository."),
        (not TAG_RE.match(text),
         "not a valid image tag (letters, digits, '.', '_' and '-', at most 128); give the release's tag, e.g. 2.4.0."),
    )
    return next(([f"{s.show(name)}: {why}"] for wrong, why in checks if wrong), [])


def _repository(s: Settings) -> list[str]:
    name = "engine_upgrade_image_repository"
    text = str(s.values[name]).strip()
    last = text.rsplit("/", 1)[-1]
    if ":" in last or "@" in last:
        return [
            f"{s.show(name)}: holds a tag or digest; give the repository only (registry.example.com/engine) "
            f"and the release in engine_target_version."
        ]
    return []


def _bakes(s: Settings) -> list[str]:
    v, out = s.values, []
    out += _at_least(s, "engine_upgrade_bake_interval", 1, "the bake checks the Engine every this many seconds")
    out += _at_least(s, "engine_upgrade_canary_bake_seconds", 0, "a bake cannot be negative")
    out += _at_least(s, "engine_upgrade_bake_seconds", 0, "a bake cannot be negative")
    for bake in ("engine_upgrade_canary_bake_seconds", "engine_upgrade_bake_seconds"):
        if v["engine_upgrade_bake_interval"] >= 1 and 0 < v[bake] < v["engine_upgrade_bake_interval"]:
            out.append(
                f"{s.show('engine_upgrade_bake_interval')} is longer than {s.show(bake)}: the bake would "
                f"check only once; make the interval at most the bake (or the bake longer)."
            )
    for short, long in (
        ("engine_upgrade_canary_bake_seconds", "engine_upgrade_canary_max_bake_seconds"),
        ("engine_upgrade_bake_seconds", "engine_upgrade_bake_max_seconds"),
        ("engine_upgrade_baseline_seconds", "engine_upgrade_baseline_max_seconds"),
    ):
        # 0 means "no longer than the usual"; any other value shorter than the usual is a mistake.
        if v[long] != 0 and v[long] < v[short]:
            out.append(
                f"{s.show(long)} is shorter than {s.show(short)}: the longest may not be shorter than the "
                f"usual; raise {s.cite[long]} to at least {v[short]} (or 0: no longer than the usual)."
            )
    return out


def _health(s: Settings) -> list[str]:
    v, out = s.values, []
    out += _at_least(s, "engine_upgrade_healthy_streak", 1, "the healthy probes in a row needed after the switch")
    out += _at_least(s, "engine_upgrade_health_timeout", 1, "the wait for the new release to become healthy")
    out += _at_least(s, "engine_upgrade_drain_timeout", 0, "the drain cannot be negative (0: stop at once)")
    need = v["engine_upgrade_healthy_streak"] * HEALTH_PROBE_INTERVAL
    if v["engine_upgrade_healthy_streak"] >= 1 and 1 <= v["engine_upgrade_health_timeout"] < need:
        out.append(
            f"{s.show('engine_upgrade_health_timeout')} is shorter than "
            f"{s.show('engine_upgrade_healthy_streak')} probes {HEALTH_PROBE_INTERVAL} s apart: no Engine "
            f"could ever pass; raise the timeout to at least {need} or lower the streak."
        )
    longest = max(
        v["engine_upgrade_canary_bake_seconds"],
        v["engine_upgrade_canary_max_bake_seconds"],
        v["engine_upgrade_bake_seconds"],
        v["engine_upgrade_bake_max_seconds"],
    )
    need = max(0, v["engine_upgrade_drain_timeout"]) + max(0, v["engine_upgrade_health_timeout"]) + longest
    if v["engine_upgrade_lock_ttl"] < need:
        out.append(
            f"{s.show('engine_upgrade_lock_ttl')} is shorter than one Engine's upgrade (drain "
            f"{v['engine_upgrade_drain_timeout']} + health timeout {v['engine_upgrade_health_timeout']} + "
            f"longest bake {longest} = {need} s): another run could take the lock mid-upgrade; raise "
            f"{s.cite['engine_upgrade_lock_ttl']} to at least {need} (with margin)."
        )
    if not str(v["engine_upgrade_lock_owner"]).strip():
        out.append(
            f"{s.show('engine_upgrade_lock_owner')}: empty; say who runs the upgrade (shown to a colliding run)"
            f", or leave it unset."
        )
    return out


def _checks(s: Settings) -> list[str]:
    v, out = s.values, []
    out += _at_least(s, "engine_upgrade_baseline_seconds", 1, "the baseline is a window of the Engine's recent past")
    out += _at_least(s, "engine_upgrade_metrics_slices", 1, "the window since the switch needs at least one slice")
    out += _at_least(s, "engine_upgrade_metrics_min_turns", 1, "the measures need at least one turn to decide")
    out += _share(s, "engine_upgrade_error_rate_max_increase", 1, "the error-rate increase (absolute)")
    out += _factor(s, "engine_upgrade_error_rate_factor", "the error-rate factor")
    out += _factor(s, "engine_upgrade_latency_factor", "the latency factor")
    out += _share(s, "engine_upgrade_cache_hit_ratio_max_drop", 1, "the cache hit ratio drop (absolute)")
    out += _share(s, "engine_upgrade_new_error_kind_share", 1, "the share of turns with a new error kind")
    out += _at_least(s, "engine_upgrade_new_error_kind_min_count", 1, "a new error kind must be seen at least once")
    out += _at_least(s, "engine_upgrade_probe_turns", 0, "synthetic probe turns cannot be negative (0: none)")
    out += _at_least(s, "engine_upgrade_control_engines", 0, "control Engines cannot be negative (0: none)")
    out += _at_least(s, "engine_upgrade_outage_controls", 0, "control Engines cannot be negative (0: none)")
    if not 0 < v["engine_upgrade_significance"] <= 0.5:
        out.append(
            f"{s.show('engine_upgrade_significance')}: the significance of the one-sided test must be in "
            f"(0, 0.5] (0.05 is the usual 5%); set e.g. 0.05."
        )
    return out


def _evals(s: Settings) -> list[str]:
    v, out = s.values, []
    evals_file, command = str(v["engine_upgrade_evals_file"]).strip(), v["engine_upgrade_eval_command"]
    if evals_file and (command.strip() if isinstance(command, str) else len(command)):
        out.append(
            f"{s.cite['engine_upgrade_evals_file']} and {s.cite['engine_upgrade_eval_command']} are both "
            f"set: the upgrade runs one kind of evals; keep the one you mean and empty the other."
        )
    if evals_file and not os.path.isfile(os.path.expanduser(evals_file)):
        out.append(
            f"{s.show('engine_upgrade_evals_file')}: not a file on the controller; give the path of an eval "
            f"set (format: docs/evals.md), or leave it empty for no evals."
        )
    out += _at_least(s, "engine_upgrade_eval_timeout", 1, "each eval case needs time to run")
    out += _at_least(s, "engine_upgrade_eval_max_regressions", 0, "a number of tolerated regressions")
    return out


def _webhook(s: Settings) -> list[str]:
    url = str(s.values["engine_upgrade_webhook_url"]).strip()
    out = _at_least(s, "engine_upgrade_webhook_timeout", 1, "the wait for the webhook")
    if url:
        try:
            parts = urlsplit(url)
            scheme, host = parts.scheme, parts.hostname
        except ValueError:
            scheme, host = "", None
        if scheme not in ("http", "https") or not host:
            said = f"its scheme is {scheme!r}" if scheme else "it has no http:// or https:// scheme"
            out.append(
                f"{s.show('engine_upgrade_webhook_url')} is not an http(s) URL ({said}); give the webhook's "
                f"full https:// URL, or leave it empty for no notifications."
            )
    return out


def _report_dir(s: Settings) -> list[str]:
    v = s.values
    if not (v["engine_upgrade_write_report"] or v["engine_upgrade_diagnostics"]):
        return []
    path = os.path.abspath(os.path.expanduser(str(v["engine_upgrade_report_dir"])))
    probe = path
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        return [
            f"{s.show('engine_upgrade_report_dir')}: {probe} is a file, not a folder, on the controller; point "
            f"{s.cite['engine_upgrade_report_dir']} at a folder you can write (or set "
            f"engine_upgrade_write_report=false and engine_upgrade_diagnostics=false)."
        ]
    if not os.access(probe, os.W_OK | os.X_OK):
        where = "" if probe == path else f" (nor can {path} be made: {probe} is not writable)"
        return [
            f"{s.show('engine_upgrade_report_dir')}: not writable on the controller{where}; point "
            f"{s.cite['engine_upgrade_report_dir']} at a folder you can write."
        ]
    return []


def _release_gate(s: Settings) -> list[str]:
    v = s.values
    reason = str(v["engine_upgrade_rolled_back_release_reason"]).strip()
    if v["engine_upgrade_allow_rolled_back_release"] and not reason:
        return [
            f"{s.cite['engine_upgrade_allow_rolled_back_release']}=true needs "
            f"{s.cite['engine_upgrade_rolled_back_release_reason']}: say why a release that was rolled back may be "
            f"deployed again (it is recorded with the release and goes into the report)."
        ]
    return []


def _retention(s: Settings) -> list[str]:
    out = []
    out += _at_least(s, "engine_upgrade_snapshot_retain_days", 0, "days a snapshot is kept cannot be negative")
    out += _at_least(s, "engine_upgrade_destructive_retain_days", 0, "days a snapshot is kept cannot be negative")
    out += _at_least(s, "engine_upgrade_snapshot_keep_last", 0, "snapshots kept cannot be negative")
    if s.values["engine_upgrade_diagnostics"]:
        out += _at_least(s, "engine_upgrade_diagnostics_log_lines", 1, "the diagnostics bundle keeps log lines")
    state_dir = str(s.values["engine_upgrade_state_dir"])
    if not state_dir.startswith("/"):
        out.append(
            f"{s.show('engine_upgrade_state_dir')}: not an absolute path; the state folder on the Docker host "
            f"must be absolute, e.g. /var/lib/september-engine."
        )
    return out


def _rollout(s: Settings) -> list[str]:
    v, out = s.values, []
    out += [
        f"{s.cite['engine_upgrade_rollout_stages']}: {problem}."
        for problem in _plan.stage_problems(v["engine_upgrade_rollout_stages"])
    ]
    if not 0 <= v["engine_rollout_max_fail_percentage"] <= 100:
        out.append(
            f"{s.show('engine_rollout_max_fail_percentage')}: a percentage of a batch's Engines, 0 to 100 "
            f"(0: the first failed Engine stops the rollout)."
        )
    if v["engine_rollout_promote"] and v["engine_rollout_abort"]:
        out.append(
            f"{s.cite['engine_rollout_promote']} and {s.cite['engine_rollout_abort']} are both true: promote "
            f"continues the paused rollout, abort rolls its canary back; choose one."
        )
    run_id = str(v["engine_run_id"])
    if run_id and not _plan.RUN_ID_RE.match(run_id):
        out.append(
            f"{s.show('engine_run_id')}: names the run's report folder; use letters, digits, '.', '_' and '-' "
            f"only (at most 128)."
        )
    return out


def validate(given: dict, environ=None) -> tuple[Settings, list[str]]:
    """The resolved settings and every problem found (an empty list: good to go)."""
    s = Settings(given or {}, environ)
    problems = list(s.problems)
    for check in (_target, _repository, _rollout, _health, _bakes, _checks, _evals, _webhook, _report_dir, _retention,
                  _release_gate):
        problems += check(s)
    return s, problems


def message(problems: list[str], what: str = "The upgrade's settings") -> str:
    """One message for all the problems: what is wrong, each on its own line, and that nothing was changed."""
    head = f"{what} have a problem" if len(problems) == 1 else f"{what} have {len(problems)} problems"
    return head + "; nothing was changed:\n" + "\n".join(f"- {problem}" for problem in problems)


# ---- each Engine's own inventory variables ----------------------------------------------------------------------

#: The variables of one Engine that say where and what it is (the role's pre-flight takes them as module options).
ENGINE_VARS = ("engine_deployment", "engine_container_name", "engine_compose_dir", "engine_url", "engine_snapshot_dir")
DEPLOYMENTS = ("container", "compose")


def _set(value) -> bool:
    return value is not None and (not isinstance(value, str) or bool(value.strip()))


def _folder(engine: str, name: str, value) -> list[str]:
    if not isinstance(value, str):
        return [f"{engine}: {name}={value!r}: must be a path (a string)."]
    if not value.startswith(("/", "~")):
        return [
            f"{engine}: {name}={value!r}: not an absolute path; the folder on the Docker host must be absolute, "
            f"e.g. /srv/engines/{engine}."
        ]
    return []


def _where(engine: str, v: dict) -> list[str]:
    """The Engine's hosting model and what it needs: a container's name, or a Compose project's folder."""
    deployment = v.get("engine_deployment") if _set(v.get("engine_deployment")) else "container"
    if deployment not in DEPLOYMENTS:
        return [
            f"{engine}: engine_deployment={deployment!r}: must be one of {', '.join(DEPLOYMENTS)} (a per-user "
            f"container, or a service of a Compose project)."
        ]
    if deployment == "compose":
        if not _set(v.get("engine_compose_dir")):
            return [
                f"{engine}: engine_compose_dir is not set: a Compose Engine (engine_deployment=compose) needs "
                f"its project's folder on the Docker host."
            ]
        return _folder(engine, "engine_compose_dir", v["engine_compose_dir"])
    name = v.get("engine_container_name")
    if not _set(name):
        return [
            f"{engine}: engine_container_name is not set: a per-user container Engine (engine_deployment="
            f"container, the default) needs its container's name."
        ]
    if not isinstance(name, str):
        return [f"{engine}: engine_container_name={name!r}: must be a container's name (a string)."]
    return []


def _engine_url(engine: str, url) -> list[str]:
    if not _set(url):
        return []
    try:
        parts = urlsplit(str(url).strip())
        scheme, host = parts.scheme, parts.hostname
    except ValueError:
        scheme, host = "", None
    if not isinstance(url, str) or scheme not in ("http", "https") or not host:
        return [
            f"{engine}: engine_url={url!r} is not an http:// or https:// URL with a host: give the Engine's base "
            f"URL, e.g. http://127.0.0.1:9001."
        ]
    return []


def engine_problems(engines: list[str], engine_vars: dict) -> list[str]:
    """Every problem of every Engine's own variables (``engine_vars``: variable -> Engine -> value, None when not
    set), one line each naming the Engine and the variable; [] when all can be upgraded as far as the controller can
    tell (a folder or a container that does not exist is found on the Docker host, at the Engine's pre-flight).
    Without ``engine_vars`` (the module given its Engines alone) nothing is checked."""
    problems = []
    for engine in engines if engine_vars else []:
        v = {name: (engine_vars.get(name) or {}).get(engine) for name in ENGINE_VARS}
        problems += _where(engine, v)
        problems += _engine_url(engine, v["engine_url"])
        if _set(v["engine_snapshot_dir"]):
            problems += _folder(engine, "engine_snapshot_dir", v["engine_snapshot_dir"])
    return problems


def shared_container_problems(engines: list[dict], engine_vars: dict) -> list[str]:
    """Inventory hosts that name one per-user container on one Docker host (``engines``: ``{name, docker_host}``):
    one Engine under two names would be its own canary's control, locked against itself, and its snapshots filed
    under two folders. One line per container; [] without ``engine_vars``."""
    named: dict[tuple, list[str]] = {}
    deployments = engine_vars.get("engine_deployment") or {}
    containers = engine_vars.get("engine_container_name") or {}
    for engine in engines if engine_vars else []:
        container = containers.get(engine["name"])
        if (deployments.get(engine["name"]) or "container") == "container" and isinstance(container, str) and container:
            named.setdefault((str(engine.get("docker_host") or ""), container.strip()), []).append(engine["name"])
    return [
        f"{', '.join(names)}: all name the container {container} on {docker_host or 'the same Docker host'}; an "
        f"Engine is one host of the inventory: keep one of them (or set engine_container_name right)."
        for (docker_host, container), names in named.items()
        if len(names) > 1
    ]
