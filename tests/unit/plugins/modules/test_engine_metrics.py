# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The engine_metrics module as a whole, with a fake container's logs, a real SQLite brain and a fixed clock."""

from __future__ import annotations

import json
import sqlite3

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.september.engine.plugins.module_utils import _measure, _metrics
from ansible_collections.september.engine.plugins.module_utils._errors import NotFoundError
from ansible_collections.september.engine.plugins.modules import engine_metrics
from engine_testkit.module_runner import ExitJson, FailJson

T0 = 1_800_000_000.0


def line(ts, level="INFO", logger="agent", message="turn completed", **extra):
    return json.dumps(dict(timestamp=_metrics.iso(ts), level=level, logger=logger, request_id="r", task_id="t",
                           message=message, extra=extra))


def turn_line(ts, failed=False, latency=250, cache=303):
    extra = dict(latency_ms=latency, input_tokens=405, output_tokens=8, cache_hit_tokens=cache)
    if failed:
        return line(ts, "ERROR", message="turn failed", error="TOOL_EXECUTION_FAILED", **extra)
    return line(ts, **extra)


def refused_line(ts):
    return line(ts, logger="http", message="POST /execute 502", method="POST", path="/execute", status=502)


def healthy(n, start=T0):
    return [turn_line(start + i * 0.5, latency=250 + i % 10) for i in range(n)]


def bad_release(n, start):
    lines = []
    for i in range(n):
        lines.append(turn_line(start + i * 0.5, failed=i % 3 == 0, latency=1000 + i % 10, cache=40))
        lines.append(line(start + i * 0.5, "WARNING", "llm", "prompt cache miss: system prompt changed"))
    return lines


NOW = T0 + 60


class FakeContainer:
    def __init__(self, lines):
        self.name = "met-u001"
        self.text = "\n".join(["not json at all", *lines]) + "\n"
        self.calls = []

    def logs(self, **kwargs):
        self.calls.append(kwargs)
        return self.text.encode()


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    monkeypatch.setattr(_measure.time, "time", lambda: NOW)


@pytest.fixture
def engine(monkeypatch):
    """The container the module reads: set .text to what it logged."""
    container = FakeContainer(healthy(40, start=T0))

    def get_container(client, name):
        if name != container.name:
            raise NotFoundError(f"No container named or identified by '{name}' on this Docker host")
        return container

    monkeypatch.setattr(_measure, "docker_client", lambda params: object())
    monkeypatch.setattr(_measure, "get_container", get_container)
    return container


def run(args, expect=ExitJson):
    with patch_module_args(args), pytest.raises(expect) as info:
        engine_metrics.main()
    return info.value.args[0]


def test_measures_the_default_window_in_slices(engine):
    result = run({"container": "met-u001", "window_seconds": 30, "_ansible_check_mode": True})
    metrics = result["metrics"]
    assert result["changed"] is False and "verdict" not in metrics and "outage" not in result
    assert metrics["window"] == {"start": _metrics.iso(NOW - 30), "end": _metrics.iso(NOW), "seconds": 30.0,
                                 "requested_seconds": 30.0, "extended": False}
    assert metrics["measures"]["turns"] == 0  # the turns were logged from T0 to T0 + 19.5, before the window
    call = engine.calls[0]
    assert call["since"] == int(NOW - 30) - 2 and call["until"] == int(NOW) + 2 and call["timestamps"] is False


def test_a_window_by_since_and_until_and_its_slices(engine):
    result = run({"container": "met-u001", "start": _metrics.iso(T0), "end": T0 + 15, "slices": 3})
    metrics = result["metrics"]
    assert metrics["measures"]["turns"] == 30 and metrics["measures"]["source"] == "logs"
    assert [s["measures"]["turns"] for s in metrics["slices"]] == [10, 10, 10]
    assert metrics["slices"][1]["start"] == _metrics.iso(T0 + 5) and metrics["container"] == "met-u001"
    assert metrics["brain"] is None and "by_source" not in metrics


def test_until_in_the_future_is_cut_to_now(engine):
    metrics = run({"container": "met-u001", "since": T0, "end": NOW + 3600, "slices": 1})["metrics"]
    assert metrics["window"]["end"] == _metrics.iso(NOW) and metrics["slices"] == []


def test_a_verdict_against_a_baseline(engine):
    baseline = run({"container": "met-u001", "start": T0, "end": T0 + 20})["metrics"]["measures"]
    engine.text = "\n".join(bad_release(40, start=T0 + 30))
    result = run({"container": "met-u001", "start": T0 + 30, "end": T0 + 50, "baseline": baseline})
    verdict = result["metrics"]["verdict"]
    assert verdict["decision"] == "rollback"
    assert verdict["reasons"][0].startswith("error rate 35.0% vs 0.0% baseline")
    # The symptom names the standing breaches only: not the cache drop and the new kinds that do not decide alone.
    assert verdict["symptom"].startswith("error rate 35.0% vs 0.0% baseline") and "cache" not in verdict["symptom"]
    assert "WARNING llm: prompt cache miss: system prompt changed" in verdict["new_warning_kinds"]
    # The whole registered result is accepted as a baseline too, and thresholds are options.
    relaxed = run({"container": "met-u001", "start": T0 + 30, "end": T0 + 50, "latency_p99_factor": 10.0,
                   "latency_p50_factor": 10.0, "error_rate_max_increase": 0.5,
                   "baseline": {"metrics": {"measures": baseline}}})
    assert relaxed["metrics"]["verdict"]["decision"] == "ok" and relaxed["metrics"]["verdict"]["symptom"] is None


def test_an_outage_that_ends_is_improving(engine):
    engine.text = "\n".join([refused_line(T0 + i * 0.25) for i in range(20)]
                            + [turn_line(T0 + 5 + i * 0.25) for i in range(40)])
    baseline = _metrics.measure(_metrics.log_turns(_metrics.parse_log_lines("\n".join(healthy(40)))), [])
    verdict = run({"container": "met-u001", "since": T0, "end": T0 + 15, "baseline": baseline})["metrics"]["verdict"]
    assert verdict["decision"] == "ok" and "but improving" in verdict["reasons"][0]


def brain(path, rows):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE observability_events (event_id INTEGER PRIMARY KEY AUTOINCREMENT, event_type TEXT, "
                 "task_id TEXT, latency_ms INTEGER, input_tokens INTEGER, output_tokens INTEGER, "
                 "cache_hit_tokens INTEGER, error_code TEXT, payload TEXT DEFAULT '{}', created_at TEXT)")
    conn.executemany("INSERT INTO observability_events (event_type, latency_ms, input_tokens, output_tokens, "
                     "cache_hit_tokens, error_code, created_at) VALUES (?, ?, 405, 8, 303, ?, ?)", rows)
    conn.commit()
    conn.close()
    return str(path)


def test_the_brain_source_reads_rows_and_changes_nothing(tmp_path):
    rows = [("turn_completed", 250, None, _metrics.iso(T0 + i)) for i in range(10)]
    rows.append(("turn_failed", 900, "TOOL_EXECUTION_FAILED", _metrics.iso(T0 + 10.5)))
    path = brain(tmp_path / "brain.sqlite", rows)
    before = sorted(p.name for p in tmp_path.iterdir())
    metrics = run({"path": path, "source": "brain", "since": T0, "end": T0 + 30, "slices": 1})["metrics"]
    assert metrics["measures"]["turns"] == 11 and metrics["measures"]["errors_by_code"] == {"TOOL_EXECUTION_FAILED": 1}
    assert metrics["measures"]["warning_kinds"] is None and metrics["brain"] == path and metrics["container"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_both_sources_side_by_side(engine, monkeypatch, tmp_path):
    path = brain(tmp_path / "brain.sqlite", [("turn_completed", 250, None, _metrics.iso(T0 + i)) for i in range(10)])

    def locate(params, client):
        assert params["container"] == "met-u001"
        return type("Loc", (), {"path": path, "container": "met-u001"})()

    monkeypatch.setattr(_measure, "locate_brain", locate)
    metrics = run({"container": "met-u001", "source": "both", "since": T0, "end": T0 + 10})["metrics"]
    assert metrics["by_source"]["logs"]["turns"] == 20 and metrics["by_source"]["brain"]["turns"] == 10
    assert metrics["measures"]["source"] == "logs" and metrics["brain"] == path


@pytest.mark.parametrize("events, message", [
    ({"table": "events"}, "the brain has no table 'events'"),
    ({"error_column": "code"}, "has no column code"),
])
def test_brain_events_that_do_not_exist(tmp_path, events, message):
    path = brain(tmp_path / "brain.sqlite", [])
    failed = run({"path": path, "source": "brain", "brain_events": events}, expect=FailJson)
    assert message in failed["msg"] and "Set brain_events" in failed["msg"]


# ---------------------------------------------------------------- locating the Engine as the inventory names it


@pytest.fixture
def resolved(engine, monkeypatch):
    """resolve_engine as engine_info runs it, answering for one container or one Compose project."""
    calls = []

    def resolve(client, params):
        calls.append(params)
        if params["deployment"] == "container" and params["container_name"] == "met-u001":
            return dict(deployment="container", exists=True, container="met-u001")
        if params["deployment"] == "compose" and params["compose_dir"] == "/srv/team-a":
            return dict(deployment="compose", exists=True, container="met-u001")
        if params["deployment"] == "compose" and params["compose_dir"] == "/srv/stopped":
            return dict(deployment="compose", exists=False, container=None)
        raise NotFoundError(f"No container named '{params['container_name']}'")

    monkeypatch.setattr(_measure, "resolve_engine", resolve)
    return calls


@pytest.mark.parametrize("args", [
    {"deployment": "container", "container_name": "met-u001"},
    {"deployment": "compose", "compose_dir": "/srv/team-a"},
])
def test_deployment_locates_the_container(resolved, args):
    metrics = run({**args, "since": T0, "end": T0 + 15, "slices": 1})["metrics"]
    assert metrics["container"] == "met-u001" and metrics["measures"]["turns"] == 30
    assert resolved[0]["deployment"] == args["deployment"] and resolved[0]["compose_service"] == "engine"
    assert resolved[0]["data_dir"] == "/data"


def test_deployment_finds_the_brain_through_the_resolved_container(resolved, monkeypatch, tmp_path):
    path = brain(tmp_path / "brain.sqlite", [("turn_completed", 250, None, _metrics.iso(T0 + i)) for i in range(4)])
    seen = []

    def locate(params, client):
        seen.append(params["container"])
        return type("Loc", (), {"path": path, "container": params["container"]})()

    monkeypatch.setattr(_measure, "locate_brain", locate)
    metrics = run({"deployment": "compose", "compose_dir": "/srv/team-a", "source": "brain", "since": T0,
                   "end": T0 + 10, "slices": 1})["metrics"]
    assert seen == ["met-u001"] and metrics["measures"]["turns"] == 4 and metrics["container"] == "met-u001"


@pytest.mark.parametrize("args, message", [
    ({"deployment": "compose", "compose_dir": "/srv/stopped"},
     "service engine of the Compose project in /srv/stopped has no container"),
    ({"deployment": "container", "container_name": "nope"}, "No container named 'nope'"),
    ({"deployment": "container"}, "deployment=container needs container_name"),
    ({"deployment": "compose", "container_name": "met-u001"}, "deployment=compose needs compose_dir"),
    ({"container_name": "met-u001"}, "container_name locates the Engine with deployment"),
    ({"compose_dir": "/srv/team-a"}, "compose_dir locates the Engine with deployment"),
    ({"deployment": "container", "container_name": "met-u001", "container": "met-u001"}, "mutually exclusive"),
    ({"deployment": "compose", "compose_dir": "/srv/team-a", "volume": "v"}, "mutually exclusive"),
])
def test_deployment_bad_input(resolved, args, message):
    assert message in run(args, expect=FailJson)["msg"]


# ---------------------------------------------------------------- reaching back when the window is thin


def test_a_thin_window_reaches_back_to_where_the_turns_are(engine):
    # 40 turns from T0 to T0 + 19.5; now is T0 + 60: the last 30 s hold none, 60 s hold all 40.
    result = run({"container": "met-u001", "window_seconds": 30, "baseline_max_seconds": 3600, "slices": 1})
    window, measures = result["metrics"]["window"], result["metrics"]["measures"]
    assert window == {"start": _metrics.iso(NOW - 60), "end": _metrics.iso(NOW), "seconds": 60.0,
                      "requested_seconds": 30.0, "extended": True}
    assert measures["turns"] == 40 and len(measures["latencies_ms"]) == 40
    # Docker was asked for the window, then once for the longest one.
    assert [c["since"] for c in engine.calls] == [int(NOW - 30) - 2, int(NOW - 3600) - 2]


def test_reaching_back_stops_at_the_maximum(engine):
    result = run({"container": "met-u001", "window_seconds": 5, "baseline_max_seconds": 30, "slices": 1})
    window = result["metrics"]["window"]
    assert window["seconds"] == 30.0 and window["extended"] is True and result["metrics"]["measures"]["turns"] == 0


@pytest.mark.parametrize("args", [
    {"window_seconds": 30},                                             # off by default
    {"window_seconds": 30, "baseline_max_seconds": 20},                 # not longer than the window
    {"start": NOW - 30, "baseline_max_seconds": 3600},                  # an explicit start is kept
    {"window_seconds": 50, "baseline_max_seconds": 3600, "min_turns": 20},  # enough turns already
])
def test_no_reaching_back(engine, args):
    window = run({"container": "met-u001", "slices": 1, **args})["metrics"]["window"]
    assert window["extended"] is False and len(engine.calls) == 1


def test_reaching_back_through_the_brain_when_the_log_is_short(engine, monkeypatch, tmp_path):
    # The container was recreated: its log holds 2 turns; the brain holds 25 more from 10 minutes ago.
    engine.text = "\n".join(healthy(2, start=NOW - 10))
    rows = [("turn_completed", 250, None, _metrics.iso(NOW - 600 + i)) for i in range(25)]
    path = brain(tmp_path / "brain.sqlite", rows)
    monkeypatch.setattr(_measure, "locate_brain",
                        lambda params, client: type("Loc", (), {"path": path, "container": "met-u001"})())
    metrics = run({"container": "met-u001", "source": "both", "window_seconds": 60, "baseline_max_seconds": 3600,
                   "slices": 1})["metrics"]
    assert metrics["window"]["seconds"] == 960.0 and metrics["window"]["extended"] is True
    assert metrics["measures"]["source"] == "brain" and metrics["measures"]["turns"] == 25
    assert metrics["by_source"]["logs"]["turns"] == 2 and metrics["by_source"]["brain"]["turns"] == 25


@pytest.mark.parametrize("args, message", [
    ({}, "Give the Engine's container"),
    ({"container": "nope"}, "No container named or identified by 'nope'"),
    ({"container": "met-u001", "since": T0 + 20, "end": T0 + 10}, "The window is empty: start"),
    ({"container": "met-u001", "since": "last tuesday"}, "start/end: not ISO 8601 or epoch seconds"),
    ({"container": "met-u001", "baseline": {"turns": 3}}, "baseline is not the metrics.measures"),
    ({"container": "met-u001", "slices": 0}, "slices must be 1 to 100"),
    ({"container": "met-u001", "min_turns": 0}, "min_turns must be 1 or more"),
    ({"container": "met-u001", "error_rate_factor": -1.0}, "error_rate_factor must be 0 or more"),
    ({"volume": "engine-data-x"}, "source=logs reads the Engine's logs: give its container"),
    ({"container": "met-u001", "baseline_max_seconds": -1}, "baseline_max_seconds must be 0 or more"),
    ({"container": "met-u001", "outage_check": {"canary": "up"}}, "Unsupported parameters"),
])
def test_bad_input(engine, args, message):
    assert message in run(args, expect=FailJson)["msg"]
