# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The test kit's own tests on real Docker (the reference Engine, the fleet, the load generator): ``make system``
runs them, ``make units`` leaves them out. Their fixtures are the system tests' (:mod:`engine_testkit.fixtures`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[2]
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
