# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""engine_verdict over measures of real reference Engines under real load, through real ansible-playbook.

One fleet of four engine:2.3.0 Engines: two controls (a per-user container and a Compose service) and two canaries.
LoadGenerator drives one turn per second on each. After a baseline window the canaries' baselines are measured,
then the canaries are switched (their containers recreated on the same volume and port, as an upgrade does), one
onto 2.4.2 (healthy but failing a third of its turns with TOOL_EXECUTION_FAILED, slower) and one onto 2.4.0 (a good
release); the bake runs under load; then the canaries go idle while the controls keep their load. Each case runs
playbooks/engine_verdict.yml: measure the canaries since the switch and the controls (located as the inventory names
them) over the same window, and decide four times (run, again, check mode, diff). Fleets are named ``ver-<8 hex>``
and use host ports from 9570.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine_testkit import Fleet, sweep
from engine_testkit.ansible import run_playbook
from engine_testkit.fleet import Engine, switch_container
from engine_testkit.loadgen import LoadGenerator
from engine_testkit.waits import wait_until

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"
PLAYBOOK = PLAYBOOKS / "engine_verdict.yml"
BASELINE = PLAYBOOKS / "engine_verdict_baseline.yml"
BASE_PORT = 9570
BASELINE_SECONDS = 30
BAKE_SECONDS = 45
IDLE_SECONDS = 25
TOOL = "ERROR agent: turn failed: TOOL_EXECUTION_FAILED"

pytestmark = pytest.mark.timeout(900)


@dataclass
class Batch:
    controls: list[Engine]
    bad: Engine
    good: Engine
    baselines: dict
    switched: float
    baked: float
    idle_start: float
    idle_end: float
    stats: dict


def pause(seconds: float) -> float:
    """Let the load run for a window of `seconds`; returns its end. The window is the condition."""
    end = time.time() + seconds
    while time.time() < end:
        time.sleep(min(1.0, max(end - time.time(), 0.05)))
    return time.time()


@pytest.fixture(scope="module")
def batch(docker_client, engine_images) -> Batch:
    fleet = Fleet(name=f"ver-{uuid.uuid4().hex[:8]}", base_port=BASE_PORT, client=docker_client)
    try:
        c1 = fleet.up(1, "2.3.0")[0]
        c2 = fleet.up(1, "2.3.0", model="compose")[0]
        bad, good = fleet.up(2, "2.3.0")
        controls_load = LoadGenerator([c1, c2], rate=1, feedback_ratio=0, workers_per_engine=2).start()
        canaries_load = LoadGenerator([bad, good], rate=1, feedback_ratio=0, workers_per_engine=2).start()
        try:
            started = pause(0.5)
            ended = pause(BASELINE_SECONDS)
            run = run_playbook(BASELINE, extra_vars=dict(containers=[bad.container_name, good.container_name],
                                                         since=started, until=ended))
            assert run.rc == 0, run.stdout[-6000:] + run.stderr[-2000:]
            results = run.result("Measure the baselines")["results"]
            baselines = {r["item"]: r for r in results}
            switched = time.time()
            switch_container(docker_client, bad, "2.4.2", stop_timeout=30)  # an upgrade, by hand
            switch_container(docker_client, good, "2.4.0", stop_timeout=30)
            wait_until(lambda: bad.is_healthy(1) and good.is_healthy(1), 60, "the canaries to be healthy")
            baked = pause(BAKE_SECONDS)
        finally:
            canaries_load.stop()
        try:
            idle_start = time.time()
            idle_end = pause(IDLE_SECONDS)
        finally:
            controls_load.stop()
        yield Batch([c1, c2], bad, good, baselines, switched, baked, idle_start, idle_end,
                    dict(canaries=canaries_load.stats(), controls=controls_load.stats()))
    finally:
        try:
            fleet.down()
        finally:
            sweep(fleet.name, docker_client)


def decide(batch: Batch, canaries: list[Engine], since: float, until: float, expected: str,
           rule: str | None = None) -> dict:
    controls = [dict(name="control-1", deployment="container", container_name=batch.controls[0].container_name),
                dict(name="control-2", deployment="compose", compose_dir=str(batch.controls[1].compose_dir))]
    extra = dict(canaries=[dict(name=e.engine_id, container=e.container_name,
                                baseline=batch.baselines[e.container_name]) for e in canaries],
                 controls=controls, since=since, until=until, expected_decision=expected)
    if rule:
        extra["expected_rule"] = rule
    run = run_playbook(PLAYBOOK, extra_vars=extra)
    assert run.rc == 0, run.stdout[-8000:] + run.stderr[-2000:]
    return run.result("Decide")["verdict"]


def test_baselines_hold_enough_turns(batch):
    for result in batch.baselines.values():
        measures = result["metrics"]["measures"]
        assert measures["turns"] >= 20 and measures["error_rate"] == 0, measures
        assert measures["warning_kinds"] == {} and len(measures["latencies_ms"]) == measures["latency_samples"]


def test_2_4_2_fails_on_its_new_tool_execution_failed_kind(batch):
    verdict = decide(batch, [batch.bad], batch.switched, batch.baked, "fail", "new_error_kind")
    assert TOOL in verdict["new_error_kinds"] and f"new ERROR kind '{TOOL}'" in verdict["symptom"]
    assert "error rate" in verdict["symptom"] and "in 2 controls" in verdict["symptom"]
    canary, control = verdict["evidence"]["canary"], verdict["evidence"]["control"]
    assert canary["engines"] == 1 and canary["turns"] >= 20 and 0.1 < canary["error_rate"] < 0.6
    assert control["engines"] == 2 and control["turns"] >= 60 and control["error_rate"] == 0
    assert verdict["evidence"]["baseline"]["turns"] >= 20
    assert verdict["engines"][batch.bad.engine_id]["decision"] == "fail"
    p50 = [t for t in verdict["evidence"]["tests"] if t["rule"] == "latency_p50" and t["reference"] == "control"]
    assert p50[0]["fired"] and p50[0]["p_value"] < 0.001
    assert verdict["missing"] == ["no eval set"] and verdict["outage"] is False


def test_2_4_0_passes(batch):
    verdict = decide(batch, [batch.good], batch.switched, batch.baked, "pass")
    assert verdict["rule"] is None and verdict["symptom"] is None and verdict["new_error_kinds"] == []
    assert verdict["evidence"]["canary"]["turns"] >= 20 and verdict["enough_turns"] is True
    assert all(t["evaluated"] for t in verdict["evidence"]["tests"] if t["rule"] == "error_rate")
    assert verdict["engines"][batch.good.engine_id]["decision"] == "pass"


def test_a_batch_of_both_fails_for_the_bad_one(batch):
    verdict = decide(batch, [batch.bad, batch.good], batch.switched, batch.baked, "fail")
    assert verdict["evidence"]["canary"]["engines"] == 2
    assert verdict["engines"][batch.bad.engine_id]["decision"] == "fail"
    assert verdict["engines"][batch.good.engine_id]["decision"] == "pass"


def test_idle_canaries_are_undecided(batch):
    verdict = decide(batch, [batch.good, batch.bad], batch.idle_start + 3, batch.idle_end, "undecided")
    assert verdict["evidence"]["canary"]["turns"] == 0 and verdict["evidence"]["control"]["turns"] >= 20
    assert verdict["missing"][0] == "the canary cohort saw 0 turns since the switch (20 needed)"
    assert verdict["reasons"][-1].startswith("not enough evidence to decide: the canary cohort saw 0 turns")
    assert verdict["engines"][batch.bad.engine_id]["decision"] == "undecided"
