# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared fixtures of the system tests: real Docker, real reference Engine containers, no mocks.

The fixtures are :mod:`engine_testkit.fixtures` (the test kit's own Docker tests in ``tests/harness/tests/system``
import the same ones). ``engine_testkit`` lives in ``tests/harness``. The Makefile exports
``PYTHONPATH=tests/harness``; so that a bare ``pytest tests/system`` works too, this conftest puts that directory on
``sys.path`` when it is missing (a conftest is imported before the test modules of its directory).

Nothing is skipped: without a Docker engine or without the ``engine:<tag>`` images every test fails with a message
that says what to run. Every system test gets a pytest-timeout so a hang fails instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[1] / "harness"
if str(HARNESS) not in sys.path:
    sys.path.insert(0, str(HARNESS))

from engine_testkit.fixtures import (  # noqa: E402 (pytest finds the fixtures by their names here)
    docker_client,
    eng_lab,
    engine_images,
    fleet_name,
    make_fleet,
    mark_docker_tests,
)

# The fixtures pytest takes from this conftest by their names (shared with the other suite, not copied).
__all__ = ["docker_client", "eng_lab", "engine_images", "fleet_name", "make_fleet"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test of this directory ``system`` and give it a timeout unless it has one."""
    mark_docker_tests(items, Path(__file__).parent)
