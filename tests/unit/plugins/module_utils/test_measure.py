# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""engine_metrics' option checks, before any Docker call (the measuring itself: test_engine_metrics.py)."""

from __future__ import annotations

import pytest

from ansible_collections.september.engine.plugins.module_utils import _metrics as m
from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError
from ansible_collections.september.engine.plugins.module_utils._measure import (
    check_location,
    check_ranges,
    metrics_defaults,
    read_baseline,
)


def params(**given) -> dict:
    return {**metrics_defaults(), **given}


@pytest.mark.parametrize(
    "given",
    [
        dict(container="met-u001"),
        dict(deployment="container", container_name="met-u001"),
        dict(deployment="compose", compose_dir="/srv/team-a"),
        dict(source="brain", volume="team-a-data"),
        dict(source="brain", path="/srv/brain.sqlite"),
        dict(source="both", container="met-u001"),
    ],
)
def test_check_location_takes_each_way_to_name_the_engine(given):
    check_location(params(**given))


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (dict(container_name="met-u001"), "container_name locates the Engine with deployment"),
        (dict(compose_dir="/srv/team-a", container="met-u001"), "compose_dir locates the Engine with deployment"),
        (dict(deployment="container"), "deployment=container needs container_name"),
        (dict(deployment="compose", container_name="met-u001"), "deployment=compose needs compose_dir"),
        (dict(volume="team-a-data"), "source=logs reads the Engine's logs: give its container"),
        (dict(), "Give the Engine's container (or deployment"),
        (dict(source="brain"), "Give the Engine's container, deployment, volume or path to measure."),
    ],
)
def test_check_location_says_what_is_missing(given, message):
    with pytest.raises(OptionsError) as info:
        check_location(params(**given))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (dict(slices=0), "slices must be 1 to 100 (got 0)."),
        (dict(slices=101), "slices must be 1 to 100 (got 101)."),
        (dict(min_turns=0), "min_turns must be 1 or more (got 0)."),
        (dict(window_seconds=0), "window_seconds must be 1 or more (got 0)."),
        (dict(baseline_max_seconds=-1), "baseline_max_seconds must be 0 or more (got -1)."),
        (dict(error_rate_factor=-1.0), "error_rate_factor must be 0 or more (got -1.0)."),
    ],
)
def test_check_ranges(given, message):
    with pytest.raises(OptionsError) as info:
        check_ranges(params(**given))
    assert str(info.value) == message


def test_check_ranges_takes_the_defaults():
    check_ranges(params())


def test_read_baseline():
    measures = m.measure(m.log_turns([]), [])
    assert read_baseline(None) is None
    assert read_baseline({"metrics": {"measures": measures}}) == measures  # a registered result's metrics
    with pytest.raises(OptionsError, match=r"Pass the metrics\.measures of an earlier engine_metrics run"):
        read_baseline({"turns": 3})
