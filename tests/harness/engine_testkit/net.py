# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host ports on ``127.0.0.1`` for the tests: one :func:`free_port` for every suite.

Pure standard library; the Docker SDK is needed only to ask which ports containers publish, and only
when a ``client`` is given (unit tests import this module without Docker).
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

__all__ = ["free_port", "port_free", "published_ports"]

LOOPBACK = "127.0.0.1"


def port_free(port: int, host: str = LOOPBACK) -> bool:
    """Nothing binds ``host:port`` now (a bind of our own succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def published_ports(client: Any) -> set[int]:
    """Host ports published by any container of this Docker ``client``, running or not (they come back)."""
    used: set[int] = set()
    for container in client.containers.list(all=True, sparse=False, ignore_removed=True):
        bindings = (container.attrs.get("HostConfig") or {}).get("PortBindings") or {}
        for binds in bindings.values():
            for bind in binds or []:
                with contextlib.suppress(TypeError, ValueError):
                    used.add(int(bind.get("HostPort")))
    return used


def free_port(
    low: int | None = None,
    high: int | None = None,
    *,
    client: Any = None,
    descending: bool = False,
    exclude: set[int] | frozenset[int] = frozenset(),
) -> int:
    """A port on ``127.0.0.1`` that nothing listens on, e.g. for "nothing answers here" or a container to publish.

    Without a range: one the kernel picks (an ephemeral port). With ``low``..``high`` (inclusive): the first port
    of that range, from the top when ``descending`` (clear of a fleet that takes ports from ``low`` upward), that
    binds, is not in ``exclude`` and, with a Docker ``client``, that no container publishes.

    :raises AssertionError: no port of the range is free.
    """
    if low is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            return sock.getsockname()[1]
    high = low if high is None else high
    used = (published_ports(client) if client is not None else set()) | set(exclude)
    ports = range(high, low - 1, -1) if descending else range(low, high + 1)
    for port in ports:
        if port not in used and port_free(port):
            return port
    raise AssertionError(f"no free port in {low}-{high}")
