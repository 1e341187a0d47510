# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""JSON log lines on stdout, one object per line, flushed at once.

Every line has exactly the fields ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``,
``request_id``, ``task_id``, ``message`` and ``extra``.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import UTC, datetime
from typing import Any

_lock = threading.Lock()


def utc_now() -> str:
    """The current time as ISO 8601 UTC with milliseconds, e.g. ``2026-01-31T12:00:00.123Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def log(
    level: str,
    logger: str,
    message: str,
    *,
    request_id: str | None = None,
    task_id: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write one JSON log line. ``level`` is DEBUG, INFO, WARNING, ERROR or CRITICAL."""
    line = json.dumps(
        {
            "timestamp": utc_now(),
            "level": level,
            "logger": logger,
            "request_id": request_id,
            "task_id": task_id,
            "message": message,
            "extra": extra or {},
        },
        default=str,
        separators=(",", ":"),
    )
    with _lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
