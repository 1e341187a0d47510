# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""engine_metrics against real reference Engines under real load, through real ansible-playbook.

One fleet for the module: engine:2.3.0 (the baseline, a per-user container), engine:2.4.0 (a Compose
service) and engine:2.4.2 (healthy but failing and slow), all under the same LoadGenerator traffic for
~20 s. Each case runs playbooks/engine_metrics.yml: measure the 2.3.0 baseline over that window, then
measure an Engine against it four times (run, again, check mode, diff; changed=false throughout, same
verdict), by its container or as the inventory names it (deployment). At the end, 200 s after the load, a thin
recent window reaches back to the turns. Fleets are named ``met-<8 hex>`` and use host ports 9550-9599.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine_testkit import Fleet, sweep
from engine_testkit.ansible import run_playbook
from engine_testkit.fleet import Engine
from engine_testkit.loadgen import LoadGenerator

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"
PLAYBOOK = PLAYBOOKS / "engine_metrics.yml"
BAD_INPUT = PLAYBOOKS / "engine_metrics_bad_input.yml"
LOOKBACK = PLAYBOOKS / "engine_metrics_lookback.yml"
BASE_PORT = 9550
LOAD_SECONDS = 20
TASKS = ("Measure the Engine", "Measure the Engine again", "Measure the Engine in check mode",
         "Measure the Engine with diff")
CACHE_MISS = "WARNING llm: prompt cache miss: system prompt changed"


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Loaded:
    fleet: Fleet
    baseline: Engine
    healthy: Engine
    bad: Engine
    start: float
    end: float
    stats: dict


@pytest.fixture(scope="module")
def loaded(docker_client, engine_images) -> Loaded:
    """2.3.0, 2.4.0 (compose) and 2.4.2 under the same load for LOAD_SECONDS; the window is [start, end)."""
    fleet = Fleet(name=f"met-{uuid.uuid4().hex[:8]}", base_port=BASE_PORT, client=docker_client)
    try:
        baseline = fleet.up(1, "2.3.0")[0]
        healthy = fleet.up(1, "2.4.0", model="compose")[0]
        bad = fleet.up(1, "2.4.2")[0]
        load = LoadGenerator([baseline, healthy, bad], rate=4, feedback_ratio=0, workers_per_engine=6).start()
        try:
            load.wait_acked(1, timeout=30)  # the load is flowing on every Engine: the window starts
            start = time.time()
            time.sleep(LOAD_SECONDS)  # the measured window is LOAD_SECONDS long by design (its slices, the lookback)
            end = time.time()
        finally:
            load.stop()
        yield Loaded(fleet, baseline, healthy, bad, start, end, load.stats())
    finally:
        try:
            fleet.down()
        finally:
            sweep(fleet.name, docker_client)


def measure(loaded: Loaded, engine: Engine, expected: str, **extra) -> list[dict]:
    """Run the measuring playbook against the 2.3.0 baseline; returns the four metrics results."""
    extra_vars = dict(
        baseline_container=loaded.baseline.container_name, baseline_since=iso(loaded.start),
        baseline_until=loaded.end, metrics_container=engine.container_name, metrics_since=iso(loaded.start),
        metrics_until=loaded.end, expected_decision=expected,
    )
    extra_vars = {name: value for name, value in {**extra_vars, **extra}.items() if value is not None}
    run = run_playbook(PLAYBOOK, extra_vars=extra_vars)
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-2000:]
    baseline = run.result("Measure the baseline")["metrics"]["measures"]
    assert baseline["turns"] >= 40 and baseline["error_rate"] == 0, baseline
    results = [run.result(task) for task in TASKS]
    for result in results:
        assert result["changed"] is False and "diff" not in result
    return [result["metrics"] for result in results]


def test_a_healthy_release_is_ok(loaded):
    metrics = measure(loaded, loaded.healthy, "ok")[0]
    measures, verdict = metrics["measures"], metrics["verdict"]
    assert metrics["container"] == loaded.healthy.container_name
    assert measures["turns"] >= 40 and measures["error_rate"] == 0 and measures["failed_turns"] == 0
    assert 200 <= measures["latency_p50_ms"] <= 400 and measures["cache_hit_ratio"] == pytest.approx(0.75, abs=0.01)
    assert verdict["reasons"] == [] and verdict["enough_turns"] is True
    assert CACHE_MISS not in verdict["new_warning_kinds"]
    assert [s["measures"]["turns"] > 0 for s in metrics["slices"]] == [True, True, True]
    # what the load generator saw agrees with what the Engine logged
    seen = loaded.stats["engines"][loaded.healthy.engine_id]
    assert abs(seen["acked"] - measures["turns"]) <= 12


def test_a_bad_release_is_rolled_back(loaded):
    metrics = measure(loaded, loaded.bad, "rollback")[0]
    measures, verdict = metrics["measures"], metrics["verdict"]
    assert 0.1 < measures["error_rate"] < 0.6 and set(measures["errors_by_code"]) == {"TOOL_EXECUTION_FAILED"}
    assert measures["latency_p50_ms"] > 800 and measures["cache_hit_ratio"] == pytest.approx(0.1, abs=0.01)
    reasons = " | ".join(verdict["reasons"])
    assert "error rate" in reasons and "p99 latency" in reasons and "cache hit ratio" in reasons, reasons
    assert verdict["checks"]["latency_p99"]["decisive"] and verdict["checks"]["latency_p99"]["last_slice_breached"]
    assert CACHE_MISS in verdict["new_warning_kinds"]
    assert "ERROR agent: turn failed: TOOL_EXECUTION_FAILED" in verdict["new_warning_kinds"]
    # One cache-miss warning per turn; a turn in flight when the window closes has logged its warning but not yet
    # its end, so it may count once more (a CI run saw 81 warnings for 80 turns).
    assert measures["turns"] <= measures["warning_kinds"][CACHE_MISS] <= measures["turns"] + 1


def test_too_few_turns_decide_nothing(loaded):
    metrics = measure(loaded, loaded.bad, "ok", metrics_since=loaded.end - 3, metrics_slices=1)[0]
    assert metrics["measures"]["turns"] < 20 and metrics["slices"] == []
    assert metrics["verdict"]["reasons"][0].startswith("not enough turns to decide: ")
    assert metrics["verdict"]["enough_turns"] is False


@pytest.mark.parametrize("how", ["deployment=container", "deployment=compose"])
def test_an_engine_located_as_the_inventory_names_it(loaded, how):
    if how == "deployment=container":
        engine, extra = loaded.bad, dict(metrics_deployment="container",
                                         metrics_container_name=loaded.bad.container_name)
        expected = "rollback"
    else:
        engine, extra = loaded.healthy, dict(metrics_deployment="compose", metrics_compose_dir=str(
            loaded.healthy.compose_dir))
        expected = "ok"
    metrics = measure(loaded, engine, expected, metrics_container=None, **extra)[0]
    assert metrics["container"] == engine.container().name and metrics["measures"]["turns"] >= 40


def brain_digest(engine: Engine) -> str:
    digest = hashlib.sha256()
    for suffix in ("", "-wal"):
        path = Path(str(engine.brain_path()) + suffix)
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_the_brain_agrees_with_the_logs(loaded):
    before = brain_digest(loaded.healthy)
    both = measure(loaded, loaded.healthy, "ok", metrics_source="both")[0]
    logs, brain = both["by_source"]["logs"], both["by_source"]["brain"]
    assert brain["source"] == "brain" and brain["warning_kinds"] is None
    assert abs(logs["turns"] - brain["turns"]) <= 2 and logs["turns"] >= 40
    assert brain["latency_p50_ms"] == pytest.approx(logs["latency_p50_ms"], abs=30)
    assert both["measures"] == logs and both["brain"] == str(loaded.healthy.brain_path())
    only = measure(loaded, loaded.bad, "rollback", metrics_container=None,
                   metrics_path=str(loaded.bad.brain_path()), metrics_source="brain")[0]
    assert only["measures"]["source"] == "brain" and only["measures"]["failed_turns"] > 0
    assert only["verdict"]["new_warning_kinds"] == []  # the brain has no log kinds to compare
    assert brain_digest(loaded.healthy) == before, "reading the brain changed it"


def test_an_outage_that_ends_is_not_a_rollback(make_fleet):
    fleet = make_fleet(name=f"met-{uuid.uuid4().hex[:8]}", base_port=BASE_PORT)
    engine = fleet.up(1, "2.3.0")[0]
    load = LoadGenerator([engine], rate=5, feedback_ratio=0, workers_per_engine=4).start()
    try:
        load.wait_acked(1, timeout=30)
        baseline_start = time.time()
        # The windows are wall-clock by design: 10 s of baseline, then 18 s measured in three 6 s slices (the
        # verdict's slices are equal lengths of time), the first of them the outage.
        time.sleep(10)
        start = time.time()
        engine.set_llm_outage(True)
        time.sleep(6)
        engine.set_llm_outage(False)
        time.sleep(12)
        end = time.time()
    finally:
        load.stop()
    run = run_playbook(PLAYBOOK, extra_vars=dict(
        baseline_container=engine.container_name, baseline_since=baseline_start, baseline_until=iso(start),
        metrics_container=engine.container_name, metrics_since=start, metrics_until=iso(end),
        expected_decision="ok",
    ))
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-2000:]
    metrics = run.result("Measure the Engine")["metrics"]
    measures, check = metrics["measures"], metrics["verdict"]["checks"]["error_rate"]
    assert measures["refused_turns"] >= 10 and "HTTP_502" in measures["errors_by_code"]
    first, last = metrics["slices"][0]["measures"], metrics["slices"][-1]["measures"]
    assert first["error_rate"] > 0.5 and last["error_rate"] == 0 and last["turns"] >= 20
    assert check["breached"] is True and check["last_slice_breached"] is False
    assert any("but improving: 0.0% in the last slice" in r for r in metrics["verdict"]["reasons"])


@pytest.mark.parametrize("case", ["missing container", "start after end", "baseline not measures"])
def test_bad_input(loaded, case):
    options = {
        "missing container": dict(metrics_container=f"met-missing-{uuid.uuid4().hex[:6]}",
                                  expected_msg="No container named or identified by 'met-missing-"),
        "start after end": dict(metrics_since=iso(loaded.end), metrics_until=loaded.start,
                                expected_msg="The window is empty: start .* must be before end"),
        "baseline not measures": dict(metrics_baseline={"turns": 40, "errors": 3},
                                      expected_msg="baseline is not the metrics.measures of an engine_metrics run"),
    }[case]
    options.setdefault("metrics_container", loaded.baseline.container_name)
    run = run_playbook(BAD_INPUT, extra_vars=options)
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-2000:]


@pytest.mark.timeout(600)
def test_a_thin_window_reaches_back_200_seconds(loaded):
    """The load ended 200 s ago: the last minute is empty; doubling (to 240 s) finds the turns, in the log and brain."""
    deadline = loaded.end + 200
    time.sleep(max(0.0, deadline - time.time()))  # wall-clock by design: the condition is the age of the last turns
    for args in (dict(deployment="container", container_name=loaded.baseline.container_name, source="both"),
                 dict(deployment="compose", compose_dir=str(loaded.healthy.compose_dir))):
        run = run_playbook(LOOKBACK, extra_vars=dict(lookback_args=dict(
            args, window_seconds=60, baseline_max_seconds=900, min_turns=20)))
        assert run.rc == 0, run.stdout[-6000:] + run.stderr[-2000:]
        metrics = run.result("Measure the last window, reaching back")["metrics"]
        window, measures = metrics["window"], metrics["measures"]
        assert window["requested_seconds"] == 60 and window["extended"] is True, window
        # 60 -> 120 -> 240 s (more when the earlier tests took long): the first length that reaches the load.
        assert window["seconds"] in (240.0, 480.0, 900.0), window
        assert datetime.fromisoformat(window["start"].replace("Z", "+00:00")).timestamp() <= loaded.end
        assert measures["turns"] >= 20 and measures["source"] == "logs", measures
        if args.get("source") == "both":
            assert metrics["by_source"]["brain"]["turns"] >= 20
    # Without baseline_max_seconds the same window stays thin.
    run = run_playbook(LOOKBACK, extra_vars=dict(lookback_args=dict(container=loaded.bad.container_name,
                                                                    window_seconds=60)))
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-2000:]
    metrics = run.result("Measure the last window, reaching back")["metrics"]
    assert metrics["window"]["extended"] is False and metrics["measures"]["turns"] == 0
