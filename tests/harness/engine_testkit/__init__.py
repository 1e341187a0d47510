# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test kit for the September Engine collection: a fleet of reference Engines and a load generator.

- :mod:`engine_testkit.fleet`: bring Engines up in the per-user *container* model and the
  single-node *compose* model, wait for health, tear everything down, write an Ansible inventory.
- :mod:`engine_testkit.loadgen`: steady authenticated turns and feedback, recording what each
  Engine acknowledged.
- :mod:`engine_testkit.brain`: read-only checks of a brain file (and of acknowledged-but-lost writes).
- :mod:`engine_testkit.compose`: find and run Docker Compose (v2 plugin or v1).

Command line: ``PYTHONPATH=tests/harness python -m engine_testkit {up,status,down,sweep,load} ...``.
"""

from __future__ import annotations

from .brain import applied_migrations, missing_acknowledged, row_counts, signal_ids, task_ids
from .fleet import Engine, Fleet, FleetError, ImageMissingError, UnhealthyError, sweep, sweep_all
from .loadgen import LoadGenerator

__all__ = [
    "Engine",
    "Fleet",
    "FleetError",
    "ImageMissingError",
    "LoadGenerator",
    "UnhealthyError",
    "applied_migrations",
    "missing_acknowledged",
    "row_counts",
    "signal_ids",
    "sweep",
    "sweep_all",
    "task_ids",
]
