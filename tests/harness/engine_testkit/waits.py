# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Wait on a condition, never for a while: :func:`wait_until` and :func:`wait_healthy`.

A test that needs something to have happened (turns acknowledged, an Engine healthy, a container running) polls for
it with a deadline on the monotonic clock, and fails with what it waited for and what it last saw. Pure standard
library: no Docker, no requests (:func:`wait_stops_done` is given a Docker client, it imports none).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["WaitTimeout", "health", "stops_pending", "wait_healthy", "wait_stops_done", "wait_until"]

T = TypeVar("T")
#: The Engines under test are local: no proxy from the environment in between.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class WaitTimeout(AssertionError):
    """A condition did not come true in time; a test failure, with what was awaited and last seen."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 60,
    what: str = "a condition",
    *,
    interval: float = 0.2,
    last: Callable[[], Any] | None = None,
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy; return that.

    :param what: what is awaited, for the message (``"turns on both Engines"``).
    :param last: called once on a timeout; what it returns goes into the message (the state last seen).
    :raises WaitTimeout: after ``timeout`` seconds (the predicate is called at least once).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    seen = f"; last seen: {last()!r}" if last is not None else ""
    raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}{seen}")


def _url_of(target: Any) -> str:
    url = target if isinstance(target, str) else getattr(target, "url", None)
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise TypeError(f"wait_healthy takes a base URL or an Engine (with .url), not {target!r}")
    return url.rstrip("/")


def health(target: Any, timeout: float = 2.0) -> tuple[int | None, dict[str, Any] | None]:
    """``GET <url>/health`` of a base URL or an Engine: ``(status, body)``; ``(None, None)`` when nothing answered.

    ``body`` is ``None`` when the answer is not a JSON object.
    """
    url = _url_of(target) + "/health"
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            code, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        code, raw = exc.code, exc.read()
    except (OSError, ValueError):
        return None, None
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    return code, body if isinstance(body, dict) else None


def wait_healthy(target: Any, timeout: float = 60) -> None:
    """Wait until ``target`` (a base URL such as ``http://127.0.0.1:9101``, or an Engine) answers ``/health`` with
    200 and ``status: ok`` (the contract's healthy).

    :raises WaitTimeout: after ``timeout`` seconds, with the last status and body seen.
    """
    url = _url_of(target)
    name = getattr(target, "engine_id", None) or url

    def healthy() -> bool:
        code, body = health(url)
        return code == 200 and body is not None and body.get("status") == "ok"

    wait_until(healthy, timeout, f"{name} to be healthy", interval=0.25, last=lambda: health(url))


def stops_pending(client: Any, since: float, label: str) -> dict[str, str]:
    """The containers labelled ``label`` (``key=value``) that Docker sent a SIGTERM (``docker stop``, a drain)
    since ``since`` (epoch seconds) and that have not ended (died or been removed) since: ``{id: name}``.

    Read from Docker's event stream, in order: a container stopped, started again and stopped anew is pending.
    ``client`` is a ``docker.DockerClient``.
    """
    pending: dict[str, str] = {}
    events = client.events(
        since=int(since) - 1,
        until=f"{time.time():.3f}",  # the events so far: the stream ends at once
        decode=True,
        filters={"type": "container", "label": label},
    )
    for event in events:
        actor = event.get("Actor") or {}
        cid = actor.get("ID") or event.get("id") or ""
        attrs = actor.get("Attributes") or {}
        action = event.get("Action") or event.get("status") or ""
        if action == "kill" and str(attrs.get("signal")) in ("15", "SIGTERM"):
            pending[cid] = attrs.get("name", cid[:12])
        elif action in ("die", "destroy"):
            pending.pop(cid, None)
    return pending


def wait_stops_done(client: Any, since: float, label: str, timeout: float = 60) -> None:
    """Wait until every stop Docker was asked for since ``since`` on the containers labelled ``label`` has ended:
    what Docker still finishes by itself after the process that asked for it was killed (a drain under way).

    :raises WaitTimeout: after ``timeout`` seconds, with the containers still stopping.
    """
    wait_until(
        lambda: not stops_pending(client, since, label),
        timeout,
        f"the stops Docker was asked for ({label}) to end",
        interval=0.2,
        last=lambda: stops_pending(client, since, label),
    )
