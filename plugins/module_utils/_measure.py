# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Measuring one Engine's turns over a window, from its log lines or its brain (engine_metrics' work).

Also used in-process by engine_preflight (the baseline) and engine_watch (the window since the switch), so that an
Engine's upgrade is a few module calls, not one per measure. The pure parts are in _metrics.py.
"""

from __future__ import annotations

import sqlite3
import time

from ansible_collections.september.engine.plugins.module_utils._brain import LOCATION_OPTIONS, locate_brain, reading
from ansible_collections.september.engine.plugins.module_utils._docker import (
    DockerException,
    docker_client,
    get_container,
)
from ansible_collections.september.engine.plugins.module_utils._engine import resolve_engine
from ansible_collections.september.engine.plugins.module_utils._errors import (
    BrainError,
    ContainerError,
    NotFoundError,
    OptionsError,
)
from ansible_collections.september.engine.plugins.module_utils._metrics import (
    DEFAULT_BRAIN_EVENTS,
    DEFAULT_THRESHOLDS,
    brain_turns,
    check_measures,
    compare,
    in_window,
    iso,
    log_turns,
    measure,
    parse_log_lines,
    parse_time,
    reach_back,
    slice_bounds,
)


def metrics_defaults() -> dict:
    """engine_metrics' options with their defaults, for a caller that measures in-process."""
    params = dict(source="logs", deployment=None, container_name=None, compose_dir=None, compose_service="engine",
                  start=None, end=None, window_seconds=300, baseline_max_seconds=0, slices=3, baseline=None,
                  brain_events=dict(DEFAULT_BRAIN_EVENTS), container=None, volume=None, path=None,
                  brain_file="brain.sqlite", data_dir="/data")
    params.update(DEFAULT_THRESHOLDS)
    return params


LOG_MARGIN = 2  # seconds around the window asked of Docker; each line is then placed by its own timestamp
ENGINE_OPTIONS = ("deployment", "container_name", "compose_dir")


def check_ranges(p: dict) -> None:
    """OptionsError unless slices, min_turns, the window's lengths and the thresholds are in range."""
    if p["slices"] < 1 or p["slices"] > 100:
        raise OptionsError(f"slices must be 1 to 100 (got {p['slices']}).")
    for name, low in (("min_turns", 1), ("window_seconds", 1), ("baseline_max_seconds", 0)):
        if p[name] < low:
            raise OptionsError(f"{name} must be {low} or more (got {p[name]}).")
    for name in DEFAULT_THRESHOLDS:
        if isinstance(p[name], float) and p[name] < 0:
            raise OptionsError(f"{name} must be 0 or more (got {p[name]}).")


def read_baseline(baseline) -> dict | None:
    """The baseline option as measures (None when not given); OptionsError when it is not measures."""
    if baseline is None:
        return None
    try:
        return check_measures(baseline)
    except ValueError as exc:
        raise OptionsError(f"{exc}. Pass the metrics.measures of an earlier engine_metrics run.") from exc


def check_location(p: dict) -> None:
    """OptionsError unless the options locate the Engine in a way that its `source` can be read from."""
    for name in ("container_name", "compose_dir"):
        if p[name] and not p["deployment"]:
            raise OptionsError(f"{name} locates the Engine with deployment: set deployment (container or "
                               "compose), or give its container.")
    needed = "container_name" if p["deployment"] == "container" else "compose_dir"
    if p["deployment"] and not p[needed]:
        raise OptionsError(f"deployment={p['deployment']} needs {needed}, as the inventory names the Engine.")
    if p["source"] in ("logs", "both") and not (p["container"] or p["deployment"]):
        if p["volume"] or p["path"]:
            raise OptionsError(f"source={p['source']} reads the Engine's logs: give its container (or deployment),"
                               " not a volume or a path.")
        raise OptionsError("Give the Engine's container (or deployment with container_name or compose_dir; with "
                           "source=brain, a volume or path) to measure.")
    if not any(p[name] for name in LOCATION_OPTIONS) and not p["deployment"]:
        raise OptionsError("Give the Engine's container, deployment, volume or path to measure.")


class EngineMetrics:
    """Reads one Engine's turns for a window (logs, brain or both), measures them, and judges them."""

    def __init__(self, params: dict, client=None, check_sdk=None):
        """`params`: engine_metrics' options; `client`: a Docker client (made from the options when needed);
        `check_sdk()`: fails the module when the Docker SDK is missing (called before the first Docker call)."""
        self.params = p = params
        self.client = client
        self.check_sdk = check_sdk or (lambda: None)
        check_ranges(p)
        self.baseline = read_baseline(p["baseline"])
        check_location(p)
        self.container = p["container"]

    def _docker(self):
        if self.client is None:
            self.check_sdk()
            self.client = docker_client(self.params)
        return self.client

    def resolve(self) -> None:
        """With deployment: the container the inventory's names point at (as engine_info finds it)."""
        p = self.params
        if not p["deployment"]:
            return
        engine = resolve_engine(self._docker(), dict(
            deployment=p["deployment"], container_name=p["container_name"], compose_dir=p["compose_dir"],
            compose_service=p["compose_service"], data_dir=p["data_dir"]))
        if not engine.get("exists") or not engine.get("container"):
            where = (f"container {p['container_name']}" if p["deployment"] == "container"
                     else f"service {p['compose_service']} of the Compose project in {p['compose_dir']}")
            raise NotFoundError(f"The Engine's {where} has no container on this Docker host to measure: is it "
                                "deployed?")
        self.container = engine["container"]

    def window(self) -> tuple[float, float]:
        p, now = self.params, time.time()
        try:
            until = now if p["end"] in (None, "") else parse_time(p["end"])
            since = until - p["window_seconds"] if p["start"] in (None, "") else parse_time(p["start"])
        except (ValueError, OverflowError) as exc:
            raise OptionsError(f"start/end: {exc} (use ISO 8601 such as 2026-03-01T10:00:00Z, or epoch seconds).") \
                from exc
        until = min(until, now)
        if since >= until:
            raise OptionsError(f"The window is empty: start ({iso(since)}) must be before end ({iso(until)}, "
                               "never later than now).")
        return since, until

    def log_entries(self, since: float, until: float) -> tuple[str, list]:
        container = get_container(self._docker(), self.container)
        try:
            raw = container.logs(stdout=True, stderr=True, timestamps=False,
                                 since=max(int(since) - LOG_MARGIN, 1), until=int(until) + LOG_MARGIN)
        except DockerException as exc:
            raise ContainerError(f"Cannot read the logs of container {container.name}: {exc}. Its logging driver "
                                 "may not keep logs for docker logs; measure with source=brain instead.") from exc
        return container.name, in_window(parse_log_lines(raw), since, until)

    def brain_rows(self, since: float, until: float) -> tuple:
        p = self.params
        params = dict(p, container=self.container)
        location = locate_brain(params, None if p["path"] else self._docker())
        events = {**DEFAULT_BRAIN_EVENTS, **{k: v for k, v in (p["brain_events"] or {}).items() if v}}
        try:
            with reading(location.path, predict_only=True) as conn:
                turns = brain_turns(conn, events, since, until)
        except LookupError as exc:
            raise BrainError(f"Cannot read turns from the brain at {location.path}: {exc}. Set brain_events to how "
                             "this Engine records its turns.") from exc
        except sqlite3.DatabaseError as exc:
            raise BrainError(f"Cannot read the brain at {location.path}: {exc}.") from exc
        return location, turns

    def read(self, since: float, until: float) -> dict:
        """The log lines and turns (and brain rows) of [since, until), per source."""
        p = self.params
        got = dict(container=None, brain=None, entries=None, turns=None, rows=None)
        if p["source"] in ("logs", "both"):
            got["container"], got["entries"] = self.log_entries(since, until)
            got["turns"] = log_turns(got["entries"])
        if p["source"] in ("brain", "both"):
            location, got["rows"] = self.brain_rows(since, until)
            got["brain"], got["container"] = location.path, got["container"] or location.container
        return got

    def measure(self) -> dict:
        p = self.params
        since, until = self.window()
        requested = until - since
        got = self.read(since, until)
        counted = max(len(got[key]) for key in ("turns", "rows") if got[key] is not None)
        lookback = p["start"] in (None, "") and p["baseline_max_seconds"] > requested
        if lookback and counted < p["min_turns"]:
            widest = self.read(until - p["baseline_max_seconds"], until)
            starts = [reach_back(widest[key], until, requested, p["baseline_max_seconds"], p["min_turns"])
                      for key in ("turns", "rows") if widest[key] is not None]
            since = max(starts)
            got = dict(widest, **{key: in_window(widest[key], since, until)
                                  for key in ("entries", "turns", "rows") if widest[key] is not None})
        result = dict(source=p["source"], container=got["container"], brain=got["brain"],
                      window=dict(start=iso(since), end=iso(until), seconds=round(until - since, 3),
                                  requested_seconds=round(requested, 3), extended=until - since > requested + 1e-6))
        entries, turns, source = got["entries"], got["turns"], "logs"
        if turns is None:
            turns, source = got["rows"], "brain"
        elif got["rows"] is not None:
            result["by_source"] = dict(logs=measure(turns, entries, "logs"), brain=measure(got["rows"], None, "brain"))
            if lookback and len(turns) < p["min_turns"] and len(got["rows"]) > len(turns):
                entries, turns, source = None, got["rows"], "brain"
        result["measures"] = measure(turns, entries, source)
        result["slices"] = []
        if p["slices"] > 1:
            for start, end in slice_bounds(since, until, p["slices"]):
                part = in_window(turns, start, end)
                lines = None if entries is None else in_window(entries, start, end)
                result["slices"].append(dict(start=iso(start), end=iso(end), measures=measure(part, lines, source)))
        if self.baseline is not None:
            thresholds = {name: p[name] for name in DEFAULT_THRESHOLDS}
            last = result["slices"][-1]["measures"] if result["slices"] else None
            result["verdict"] = compare(self.baseline, result["measures"], thresholds, last, p["slices"])
        return result

    def run(self) -> dict:
        self.resolve()
        return dict(changed=False, metrics=self.measure())
