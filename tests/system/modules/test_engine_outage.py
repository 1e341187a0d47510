# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""engine_outage on real engine_health probes of real reference Engines, through real ansible-playbook.

One fleet of four 2.3.0 Engines (a canary and three controls). The LLM-provider outage of the reference Engine is
switched on and off per Engine; one control is stopped; the canary is switched onto engine:2.5.0, which crash-loops.
Each step runs playbooks/engine_outage.yml (run, again, check mode, diff). Fleets are named ``out-<8 hex>`` and
use host ports from 9580.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from engine_testkit.ansible import run_playbook
from engine_testkit.fleet import Engine, switch_container
from engine_testkit.waits import wait_until

PLAYBOOK = Path(__file__).resolve().parents[1] / "playbooks" / "engine_outage.yml"
BASE_PORT = 9580


def classify(canary: Engine, controls: list[Engine], expected: str) -> dict:
    run = run_playbook(PLAYBOOK, extra_vars=dict(canary_container=canary.container_name,
                                                 control_containers=[e.container_name for e in controls],
                                                 expected_kind=expected))
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-2000:]
    return run.result("Classify")["outage"]


@pytest.mark.timeout(600)
def test_outage_or_bad_release_from_real_health_probes(make_fleet, docker_client):
    fleet = make_fleet(name=f"out-{uuid.uuid4().hex[:8]}", base_port=BASE_PORT)
    canary, *controls = fleet.up(4, "2.3.0")
    c1, c2, c3 = controls

    assert classify(canary, controls, "none")["counts"]["upgraded_unhealthy"] == 0

    canary.set_llm_outage(True)
    alone = classify(canary, controls, "bad_release")
    assert alone["counts"]["control_unhealthy"] == 0 and "are healthy: a bad release" in alone["reason"]

    # Issue 10 item 6: one unhealthy neighbour is not an outage, even with llm_provider named.
    c1.set_llm_outage(True)
    neighbour = classify(canary, controls, "bad_release")
    assert neighbour["counts"]["control_provider"] == 1 and neighbour["counts"]["control_needed"] == 2
    assert f"{c1.container_name}: llm_provider=error" in neighbour["reason"]

    c2.set_llm_outage(True)
    most = classify(canary, controls, "provider_outage")
    assert most["reason"].startswith("LLM provider outage: 2 of 3 control Engines") and most["evidence"] == ["health"]

    # The provider comes back; one control is stopped, and the canary crash-loops on 2.5.0: a bad release.
    for engine in (canary, c1, c2):
        engine.set_llm_outage(False)
    c3.container().stop(timeout=10)
    switch_container(docker_client, canary, "2.5.0", stop_timeout=10)
    wait_until(lambda: canary.container().attrs["RestartCount"] >= 2, 90, "the canary to crash-loop")
    crash = classify(canary, controls, "bad_release")
    assert crash["upgraded"][0]["failure"] == "crash_loop" and crash["counts"]["control_unhealthy"] == 1
    assert f"{c3.container_name}: unreachable" in crash["reason"], crash["reason"]

    # The provider down for the controls too does not explain a crash loop.
    c1.set_llm_outage(True)
    c2.set_llm_outage(True)
    both = classify(canary, controls, "bad_release")
    assert "fails another way" in both["reason"] and both["evidence"] == ["health"]
