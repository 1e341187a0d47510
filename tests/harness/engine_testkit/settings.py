# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fast test settings of every playbook run the system tests make: one set, used by every suite.

The roles' defaults are minutes of drains, health waits and bakes; the tests' fleets are small and local. The
rollout suites (tests/system/rollout), the AWX jobs (tests/system/awx) and the Molecule scenarios
(``python -m engine_testkit up --test-settings`` writes them into the fleet's inventory) all take these, a test
overriding only what it is about.

The canary bakes :data:`CANARY_BAKE` seconds, then in rounds as long while its verdict is undecided, up to
:data:`CANARY_MAX_BAKE` seconds: at the tests' load (one or two turns a second per Engine) the canary gathers the
verdict's ``min_turns`` (20) within that. A test without load, where the canary cannot gather evidence, gives
probes (:func:`probe_vars`) or says which undecided policy it expects.
"""

from __future__ import annotations

import os
from typing import Any

#: The canary's first bake, and its longest while undecided (seconds).
CANARY_BAKE = 3
CANARY_MAX_BAKE = 30
#: The fast settings of every upgrade and rollback run.
FAST_VARS: dict[str, Any] = {
    "engine_upgrade_canary_bake_seconds": CANARY_BAKE,
    "engine_upgrade_canary_max_bake_seconds": CANARY_MAX_BAKE,
    "engine_upgrade_bake_interval": 1,
    "engine_upgrade_healthy_streak": 2,
    "engine_upgrade_health_timeout": 30,
    "engine_upgrade_drain_timeout": 10,
    "engine_rollback_health_timeout": 40,
    "engine_rollback_healthy_streak": 2,
    "engine_rollback_drain_timeout": 10,
}


#: ansible-playbook's forks for the tests' fleets (every Engine of a batch at once).
FORKS = ["-f", "20"]
#: Local connections: pipelining runs each module in one process instead of copy + chmod + run + rm.
ANSIBLE_ENV = {"ANSIBLE_PIPELINING": "True"}


def run_vars(state_dir: str | os.PathLike[str], report_dir: str | os.PathLike[str], **extra: Any) -> dict[str, Any]:
    """The extra vars of one test run of ``upgrade.yml`` / ``rollback.yml``: :data:`FAST_VARS`, the run's state and
    report folders, then ``extra`` (what the test is about) over them."""
    return {**FAST_VARS, "engine_state_dir": str(state_dir), "engine_report_dir": str(report_dir), **extra}


def probe_vars(turns: int = 12, min_turns: int = 10) -> dict[str, Any]:
    """Synthetic evidence for a fleet without load: ``turns`` probe turns per Engine before its switch and after
    it (each a real turn in its brain), and a verdict that decides on ``min_turns`` turns (at most ``turns``)."""
    if min_turns > turns:
        raise ValueError(f"{turns} probe turns can never reach min_turns={min_turns}")
    return {"engine_upgrade_probe_turns": turns, "engine_upgrade_metrics_min_turns": min_turns}
