# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ISO 8601 times in UTC, one way for the whole collection: written with a Z, read with or without one.

A naive time (no offset) is read as UTC. Python 3.9 on managed nodes: no datetime.UTC, and
fromisoformat() there does not read a trailing Z by itself.
"""

from __future__ import annotations

from datetime import datetime, timezone

# datetime.UTC needs Python 3.11; managed nodes may run 3.9.
UTC = timezone.utc  # noqa: UP017
OLDEST = datetime.min.replace(tzinfo=UTC)
TIMESPECS = ("seconds", "milliseconds", "microseconds")


def utc_now() -> datetime:
    """Now, timezone-aware, in UTC."""
    return datetime.now(UTC)


def iso(moment, timespec: str = "seconds") -> str | None:
    """ISO 8601 in UTC with a Z (``2026-03-10T12:00:00Z``) of a datetime or of epoch seconds; None stays None.

    `timespec`: seconds, milliseconds or microseconds. A naive datetime is taken as UTC.
    """
    if moment is None:
        return None
    if isinstance(moment, (int, float)) and not isinstance(moment, bool):
        moment = datetime.fromtimestamp(moment, tz=UTC)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if timespec not in TIMESPECS:
        raise ValueError(f"timespec must be one of {', '.join(TIMESPECS)}, not {timespec!r}")
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def parse_iso(value) -> datetime | None:
    """A timezone-aware datetime from an ISO 8601 text (Z or an offset; naive is UTC), or None when absent or
    unreadable. A datetime passes through (made aware)."""
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_time(value) -> float:
    """Epoch seconds from epoch seconds (a number or a numeric text) or an ISO 8601 text; ValueError otherwise."""
    if isinstance(value, bool) or value is None or value == "":
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        pass
    moment = parse_iso(value)
    if moment is None:
        raise ValueError(f"not ISO 8601 or epoch seconds: {value!r}")
    return moment.timestamp()
