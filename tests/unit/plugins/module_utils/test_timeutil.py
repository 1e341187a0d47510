# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""module_utils/_timeutil.py: ISO 8601 in UTC, written with a Z, read with or without one."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from ansible_collections.september.engine.plugins.module_utils._timeutil import iso, parse_iso, parse_time, utc_now

NOW = datetime(2026, 3, 10, 12, 0, 0, tzinfo=timezone.utc)  # noqa: UP017


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-10T12:00:00Z", NOW),
        ("2026-03-10T12:00:00z", NOW),
        ("2026-03-10T13:00:00+01:00", NOW),
        ("2026-03-10T12:00:00", NOW),
        ("2026-03-10T12:00:00.000000Z", NOW),
        (NOW.replace(tzinfo=None), NOW),
        (None, None),
        ("", None),
        ("yesterday", None),
    ],
)
def test_parse_iso(text, expected):
    assert parse_iso(text) == expected


def test_iso():
    assert iso(NOW) == "2026-03-10T12:00:00Z"
    assert iso(NOW, "microseconds") == "2026-03-10T12:00:00.000000Z"
    assert iso(NOW.timestamp() + 0.123, "milliseconds") == "2026-03-10T12:00:00.123Z"
    assert iso(NOW.replace(tzinfo=None)) == "2026-03-10T12:00:00Z"
    assert iso(None) is None
    with pytest.raises(ValueError, match="timespec"):
        iso(NOW, "minutes")
    assert utc_now().tzinfo is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1773144000, 1773144000.0), ("1773144000.5", 1773144000.5), ("2026-03-10T12:00:00Z", NOW.timestamp())],
)
def test_parse_time(value, expected):
    assert parse_time(value) == expected


@pytest.mark.parametrize("value", [None, True, "", "soon"])
def test_parse_time_refuses(value):
    with pytest.raises(ValueError, match="not"):
        parse_time(value)
