# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Watching an Engine after its switch, in one call: healthy within the wait, healthy at every check of the
watch, then its turns since the switch measured (engine_watch's work; one call per bake round of the upgrade)."""

from __future__ import annotations

import time

from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError
from ansible_collections.september.engine.plugins.module_utils._health import EngineHealth
from ansible_collections.september.engine.plugins.module_utils._measure import EngineMetrics, metrics_defaults
from ansible_collections.september.engine.plugins.module_utils._metrics import parse_time


def check_options(params: dict) -> None:
    """Bad input: one error naming the option and what to fix."""
    for name, low in (("wait_timeout", 0), ("watch_seconds", 0), ("healthy_streak", 1)):
        if params[name] < low:
            raise OptionsError(f"{name} must be {low} or more (got {params[name]}).")
    if params["interval"] <= 0:
        raise OptionsError(f"interval must be more than 0 seconds (got {params['interval']}).")
    try:
        parse_time(params["since"])
    except (ValueError, TypeError, OverflowError) as exc:
        raise OptionsError(f"since: {exc} (when the switch happened: epoch seconds or ISO 8601).") from exc


class EngineWatch:
    """One round: wait until healthy, stay healthy for watch_seconds, measure since the switch."""

    def __init__(self, params: dict, client=None, check_sdk=None):
        check_options(params)
        self.p = params
        self.client = client
        self.check_sdk = check_sdk or (lambda: None)
        self.since = parse_time(params["since"])

    def _health(self, **overrides) -> dict:
        params = dict(self.p, fail_fast=True, crash_loop_restarts=3, log_lines=50, **overrides)
        return EngineHealth(params).run()

    def _watch(self, seconds: float) -> dict:
        """Healthy at every probe for `seconds`, on time whatever each probe costs (a busy Docker host)."""
        params = dict(self.p, wait=True, wait_timeout=int(seconds + 2 * self.p["interval"]), healthy_streak=1,
                      fail_fast=True, crash_loop_restarts=3, log_lines=50)
        return EngineHealth(params).watch(seconds)

    def run(self) -> dict:
        p = self.p
        started = time.monotonic()
        health = self._health(wait=True, wait_timeout=p["wait_timeout"], interval=min(2.0, p["interval"]),
                              healthy_streak=p["healthy_streak"])
        result = dict(health=health, healthy_seconds=None, watched_seconds=0.0, metrics=None)
        if not health["is_healthy"]:
            return result
        result["healthy_seconds"] = round(time.time() - self.since, 1)
        if p["watch_seconds"] > 0:
            watched = time.monotonic()
            health = self._watch(p["watch_seconds"])
            result.update(health=health, watched_seconds=round(time.monotonic() - watched, 1))
            if not health["is_healthy"]:
                return result
        if p["measure"]:
            params = dict(metrics_defaults(), **{k: p[k] for k in ("container", "slices", "min_turns", "source")},
                          start=self.since, **{k: v for k, v in p.items() if k.startswith("docker_")})
            result["metrics"] = EngineMetrics(params, client=self.client, check_sdk=self.check_sdk).measure()
        result["seconds"] = round(time.monotonic() - started, 1)
        return result
