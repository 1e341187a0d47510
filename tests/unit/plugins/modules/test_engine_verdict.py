# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The engine_verdict module as a whole: options in, one verdict out, the same in check mode."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.september.engine.plugins.module_utils import _metrics
from ansible_collections.september.engine.plugins.modules import engine_verdict
from engine_testkit.module_runner import ExitJson, FailJson

T0 = 1_800_000_000.0


def turn(ts, failed=False, latency=250, error="TOOL_EXECUTION_FAILED"):
    extra = dict(latency_ms=latency, input_tokens=405, output_tokens=8, cache_hit_tokens=303)
    if failed:
        extra["error"] = error
    return json.dumps(dict(timestamp=_metrics.iso(ts), level="ERROR" if failed else "INFO", logger="agent",
                           request_id="r", task_id="t", message="turn failed" if failed else "turn completed",
                           extra=extra))


def result(lines, start=T0, end=T0 + 90):
    """A registered engine_metrics result of these log lines."""
    entries = _metrics.parse_log_lines("\n".join(lines))
    measures = _metrics.measure(_metrics.log_turns(entries), entries)
    return {"changed": False, "failed": False, "metrics": {
        "source": "logs", "container": "engine-x", "measures": measures, "slices": [],
        "window": {"start": _metrics.iso(start), "end": _metrics.iso(end), "seconds": end - start}}}


def healthy(n=40, latency=250):
    return result([turn(T0 + i, latency=latency + i % 10) for i in range(n)])


def bad(n=30):
    return result([turn(T0 + i, failed=i % 3 == 0, latency=1000 + i % 10) for i in range(n)])


def run(args, expect=ExitJson):
    with patch_module_args(args), pytest.raises(expect) as info:
        engine_verdict.main()
    return info.value.args[0]


def test_a_bad_canary_fails_and_check_mode_says_the_same():
    args = {"canary": [{"name": "u1", "window": bad(), "baseline": healthy()["metrics"]["measures"]}],
            "control": [{"name": "c1", "window": healthy()}, {"name": "c2", "window": healthy()}]}
    first = run(args)
    verdict = first["verdict"]
    assert first["changed"] is False and verdict["decision"] == "fail" and verdict["rule"] == "new_error_kind"
    assert verdict["evidence"]["window"] == {"since": _metrics.iso(T0), "until": _metrics.iso(T0 + 90),
                                             "seconds": 90.0}
    assert verdict["evidence"]["control"]["engines"] == 2 and verdict["engines"]["u1"]["decision"] == "fail"
    assert run({**args, "_ansible_check_mode": True})["verdict"] == verdict


def test_a_healthy_canary_passes():
    got = run({"canary": [{"name": "u1", "window": healthy(latency=260), "baseline": healthy()}],
               "control": [{"name": "c1", "window": healthy()}]})["verdict"]
    assert got["decision"] == "pass" and got["missing"] == ["no eval set"]


def test_an_idle_canary_is_undecided():
    got = run({"canary": [{"name": "u1", "window": healthy(0), "baseline": healthy(2)}], "control": []})["verdict"]
    assert got["decision"] == "undecided"
    assert got["missing"][:3] == ["the canary cohort saw 0 turns since the switch (20 needed)",
                                  "no control Engine was measured over the same window",
                                  "the canaries' baselines saw 2 turns before the switch (20 needed)"]


def test_thresholds_are_options():
    args = {"canary": [{"name": "u1", "window": healthy(10), "baseline": healthy(10)}], "control": []}
    assert run(args)["verdict"]["decision"] == "undecided"
    assert run({**args, "min_turns": 10})["verdict"]["decision"] == "pass"
    failing = {"canary": [{"name": "u1", "window": bad(), "baseline": healthy()}], "control": []}
    relaxed = run({**failing, "new_error_kind_share": 0.5, "error_rate_max_increase": 0.5, "latency_p50_factor": 10.0,
                   "latency_p99_factor": 10.0})["verdict"]
    assert relaxed["decision"] == "pass"


@pytest.mark.parametrize("args, message", [
    ({}, "missing required arguments: canary"),
    ({"canary": []}, "canary must be a list of at least one upgraded Engine"),
    ({"canary": [{"name": "u1"}]}, "canary[0].window is missing"),
    ({"canary": [{"name": "u1", "window": {"turns": 3}}]}, "canary[0].window is not the metrics.measures"),
    ({"canary": [{"name": "u1", "window": healthy(), "color": 1}]}, "canary[0] has unknown keys color"),
    ({"canary": [{"name": "u1", "window": healthy()}], "control": [{"window": {"x": 1}}]},
     "control[0].window is not the metrics.measures"),
    ({"min_turns": 0}, "min_turns must be 1 or more (got 0)"),
    ({"slices": 101}, "slices must be from 1 to 100"),
    ({"significance": 0.0}, "significance is a p-value between 0 and 1"),
    ({"significance": 5.0}, "significance is a p-value between 0 and 1"),
    ({"new_error_kind_share": 5.0}, "new_error_kind_share is a share from 0 to 1"),
    ({"error_rate_factor": -1.0}, "error_rate_factor must be 0 or more"),
    ({"eval_max_regressions": -1}, "eval_max_regressions must be 0 or more"),
])
def test_bad_input(args, message):
    args = {"canary": [{"name": "u1", "window": healthy()}], **args} if "canary" not in args and args else args
    assert message in run(args, expect=FailJson)["msg"]
