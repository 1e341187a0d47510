# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The engine_outage module as a whole: health results in, a classification out."""

from __future__ import annotations

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.september.engine.plugins.modules import engine_outage
from engine_testkit.module_runner import ExitJson, FailJson


def health(ok=True, llm="ok", name="u1", failure=None, **subsystems):
    body = dict(is_healthy=ok, status="ok" if ok else "degraded", failure=failure or ("none" if ok else "unhealthy"),
                subsystems={"database": "ok", "llm_provider": llm, "asset_directory": "ok", **subsystems},
                container={"name": name})
    return {"changed": False, "health": body}


def measures(turns, provider_errors):
    return {"metrics": {"measures": dict(
        turns=turns, failed_turns=0, refused_turns=provider_errors, error_rate=provider_errors / turns,
        errors_by_code={"HTTP_502": provider_errors} if provider_errors else {}, latency_samples=0,
        latency_p50_ms=None, latency_p99_ms=None, cache_hit_ratio=None, warning_kinds={})}}


def run(args, expect=ExitJson):
    with patch_module_args(args), pytest.raises(expect) as info:
        engine_outage.main()
    return info.value.args[0]


def test_most_controls_down_with_the_provider_is_an_outage():
    controls = [health(False, "error", "u2"), health(False, "error", "u3"), health(name="u4")]
    result = run({"canary": health(False, "error"), "control": controls})
    assert result["changed"] is False and result["outage"]["kind"] == "provider_outage"
    assert result["outage"]["counts"]["control_provider"] == 2 and result["outage"]["evidence"] == ["health"]


def test_a_crash_looping_canary_and_one_unrelated_unhealthy_control_is_a_bad_release():
    # Issue 10 item 6: this used to be called a provider outage, and the canary was left running.
    args = {"canary": health(False, failure="crash_loop"),
            "control": [health(False, "ok", "u2", database="error"), health(name="u3"), health(name="u4")]}
    outage = run(args)["outage"]
    assert outage["kind"] == "bad_release" and "u2: database=error" in outage["reason"]
    assert run({**args, "_ansible_check_mode": True})["outage"] == outage


def test_turns_failing_with_the_provider_in_both_cohorts_are_evidence():
    outage = run({"canary": [health(False, "error")], "control": [health(name="u2")],
                  "canary_measures": [measures(20, 18)], "control_measures": [measures(40, 30)]})["outage"]
    assert outage["kind"] == "provider_outage" and outage["evidence"] == ["turns"]
    stricter = run({"canary": [health(False, "error")], "control": [health(name="u2")],
                    "canary_measures": [measures(20, 18)], "control_measures": [measures(40, 30)],
                    "provider_error_min_count": 31})["outage"]
    assert stricter["kind"] == "bad_release"


def test_all_healthy_is_none():
    assert run({"canary": health(), "control": [health(name="u2")]})["outage"]["kind"] == "none"


@pytest.mark.parametrize("args, message", [
    ({}, "missing required arguments: canary"),
    ({"canary": "up"}, "canary[0] must be an engine_health result"),
    ({"canary": health(), "control": [{"is_healthy": "yes"}]}, "control[0] must be an engine_health result"),
    ({"canary": health(), "canary_measures": [measures(10, 0)]}, "canary_measures and control_measures go together"),
    ({"canary": health(), "provider_error_share": 2.0}, "provider_error_share is a share from 0 to 1"),
    ({"canary": health(), "provider_error_min_count": 0}, "provider_error_min_count must be 1 or more"),
    ({"canary": health(), "significance": 1.0}, "significance is a p-value between 0 and 1"),
])
def test_bad_input(args, message):
    assert message in run(args, expect=FailJson)["msg"]
