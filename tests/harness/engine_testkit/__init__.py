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
- :mod:`engine_testkit.net` and :mod:`engine_testkit.waits`: a free host port; waits on a condition
  (:func:`~engine_testkit.waits.wait_until`, :func:`~engine_testkit.waits.wait_healthy`), never sleeps.
- :mod:`engine_testkit.settings`: the one set of fast test settings of every playbook run.

The names below are imported on first use: ``import engine_testkit`` alone needs no Docker SDK.

Command line: ``PYTHONPATH=tests/harness python -m engine_testkit {up,status,down,sweep,load} ...``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for linters and type checkers; at run time each name is imported on first use (below)
    from .brain import applied_migrations, missing_acknowledged, row_counts, signal_ids, task_ids
    from .fleet import Engine, Fleet, FleetError, ImageMissingError, UnhealthyError, sweep, sweep_all
    from .loadgen import LoadGenerator
    from .net import free_port
    from .waits import WaitTimeout, wait_healthy, wait_until

#: Where each public name lives; imported on first use (PEP 562), so that importing a pure helper
#: (``engine_testkit.waits``, ``engine_testkit.net``, ``engine_testkit.ansible``) needs no Docker SDK.
_EXPORTS = {
    "applied_migrations": "brain",
    "missing_acknowledged": "brain",
    "row_counts": "brain",
    "signal_ids": "brain",
    "task_ids": "brain",
    "Engine": "fleet",
    "Fleet": "fleet",
    "FleetError": "fleet",
    "ImageMissingError": "fleet",
    "UnhealthyError": "fleet",
    "sweep": "fleet",
    "sweep_all": "fleet",
    "LoadGenerator": "loadgen",
    "free_port": "net",
    "WaitTimeout": "waits",
    "wait_healthy": "waits",
    "wait_until": "waits",
}

__all__ = [
    "Engine",
    "Fleet",
    "FleetError",
    "ImageMissingError",
    "LoadGenerator",
    "UnhealthyError",
    "WaitTimeout",
    "applied_migrations",
    "free_port",
    "missing_acknowledged",
    "row_counts",
    "signal_ids",
    "sweep",
    "sweep_all",
    "task_ids",
    "wait_healthy",
    "wait_until",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
