# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""engine_logs against a real reference Engine container, through real ansible-playbook.

One engine:2.3.0 container for the module: a request before the window, then inside the window a few real turns,
a request whose path holds the Engine's API key (the Engine logs the path twice per line: a leak the module must
mask) and a line on the container's stderr, then a request after the window. Each case runs
playbooks/engine_logs.yml with ``-v`` (so the results are printed too) and asserts on the lines and on everything
the run printed or returned. Fleets are named ``logs-<8 hex>`` and use host ports 9650-9669.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from engine_testkit import Fleet, sweep
from engine_testkit.ansible import PlaybookRun, run_playbook
from engine_testkit.fleet import Engine
from engine_testkit.loadgen import LoadGenerator
from engine_testkit.waits import wait_until

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"
PLAYBOOK = PLAYBOOKS / "engine_logs.yml"
BAD_INPUT = PLAYBOOKS / "engine_logs_bad_input.yml"
BASE_PORT = 9650
STOPPED_PORT = 9660
STDERR_LINE = "Traceback (most recent call last): engine_logs system test on stderr"
MASK = "********"


def iso(epoch: float, zone: bool = True) -> str:
    text = datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z" if zone else "")


@dataclass
class Logged:
    engine: Engine
    key: str
    started: float
    start: float
    end: float
    acked: set[str]


def get(engine: Engine, path: str) -> int:
    return requests.get(engine.url + path, headers={"X-Engine-Key": engine.api_key}, timeout=10).status_code


def in_docker_log(engine: Engine, text: str, timeout: float = 30) -> None:
    """Wait until the Engine's container log (as Docker keeps it, stdout and stderr) holds ``text``."""
    wait_until(lambda: text in engine.container().logs().decode("utf-8", "replace"), timeout,
               f"{text!r} in the log of {engine.container_name}")


@pytest.fixture(scope="module")
def logged(docker_client, engine_images) -> Logged:
    """An Engine with a request before the window, turns, a key leak and a stderr line in it, one after it."""
    fleet = Fleet(name=f"logs-{uuid.uuid4().hex[:8]}", base_port=BASE_PORT, client=docker_client)
    try:
        started = time.time()
        engine = fleet.up(1, "2.3.0")[0]
        assert get(engine, "/before-window") == 404
        in_docker_log(engine, "GET /before-window 404")  # Docker stamped it: the window starts after it
        start = time.time()
        load = LoadGenerator([engine], rate=3, feedback_ratio=0, workers_per_engine=2)
        stats = load.run_for(3)
        assert stats["engines"][engine.engine_id]["acked"] >= 5, stats
        assert get(engine, f"/probe-{fleet.api_key}") == 404
        exit_code, _output = engine.container().exec_run(["sh", "-c", f"echo '{STDERR_LINE}' > /proc/1/fd/2"])
        assert exit_code == 0
        in_docker_log(engine, STDERR_LINE)  # the window ends once Docker has the last line of it
        end = time.time()
        assert get(engine, "/after-window") == 404
        in_docker_log(engine, "GET /after-window 404")
        yield Logged(engine, fleet.api_key, started, start, end, load.acked_task_ids(engine.engine_id))
    finally:
        try:
            fleet.down()
        finally:
            sweep(fleet.name, docker_client)


def read(container: str, key: str, **extra) -> PlaybookRun:
    run = run_playbook(PLAYBOOK, extra_vars=dict(logs_container=container, logs_redact=[key], **extra), args=["-v"])
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-2000:]
    printed = run.stdout + run.stderr + json.dumps(run.data)
    assert key not in printed, "the API key given in redact was printed or returned"
    return run


def messages(lines: list[str]) -> list[str]:
    return [json.loads(line)["message"] for line in lines if line.startswith("{")]


def test_a_window_holds_the_engine_s_json_lines_of_that_window_only(logged):
    run = read(logged.engine.container_name, logged.key, logs_start=iso(logged.start, zone=False),
               logs_end=logged.end, past_start=logged.started - 3600, past_end=iso(logged.started - 60))
    logs = run.result("Read the window")["logs"]
    assert logs["container"] == logged.engine.container_name and logs["image"] == "engine:2.3.0"
    assert logs["window"] == {"start": iso(logged.start), "end": iso(logged.end)}
    assert logs["truncated"] is False and logs["count"] == len(logs["lines"]) >= 10
    entries = [json.loads(line) for line in logs["lines"] if line != STDERR_LINE]
    assert len(entries) == logs["count"] - 1  # every other line is one of the Engine's JSON lines, no Docker stamp
    for entry in entries:
        assert {"timestamp", "level", "logger", "message", "extra"} <= set(entry)
        moment = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
        assert logged.start - 0.05 <= moment < logged.end, entry
    # exactly the turns the Engine acknowledged in the window, and nothing logged before or after it
    turns = {entry["task_id"] for entry in entries if entry["message"] == "turn completed"}
    assert turns == logged.acked
    said = messages(logs["lines"])
    assert "GET /before-window 404" not in said and "GET /after-window 404" not in said
    assert "engine ready" not in said
    # the stderr line is there, in its place after the turns
    assert logs["lines"].index(STDERR_LINE) > max(i for i, m in enumerate(said) if m == "turn completed")
    # the key the Engine logged (twice in one line) is masked in both places
    probe = [line for line in logs["lines"] if "/probe-" in line]
    assert len(probe) == 1 and probe[0].count(f"/probe-{MASK}") == 2
    assert f"/probe-{MASK}" in run.stdout  # -v printed the lines, masked


def test_a_window_before_the_container_started_is_empty(logged):
    run = read(logged.engine.container_name, logged.key, logs_start=logged.start, logs_end=logged.end,
               past_start=logged.started - 3600, past_end=iso(logged.started - 60))
    past = run.result("Read a window before the container started")
    assert past["changed"] is False
    assert past["logs"]["lines"] == [] and past["logs"]["count"] == 0 and past["logs"]["truncated"] is False
    assert past["logs"]["window"]["end"] == iso(logged.started - 60)


def test_tail_and_the_whole_log(logged):
    run = read(logged.engine.container_name, logged.key, logs_start=logged.start, logs_end=logged.end,
               past_start=logged.started - 3600, past_end=iso(logged.started - 60), logs_tail=3)
    window, last = run.result("Read the window")["logs"], run.result("Read the last lines of the window")["logs"]
    assert last["lines"] == window["lines"][-3:] and last["count"] == 3 and last["truncated"] is True
    whole = run.result("Read the whole log")["logs"]
    assert whole["window"] == {"start": None, "end": None} and whole["truncated"] is False
    said = messages(whole["lines"])
    assert said[0] == "engine starting" and said[-1] == "GET /after-window 404"
    assert "GET /before-window 404" in said and STDERR_LINE in whole["lines"]
    assert whole["count"] > window["count"]
    assert [line for line in whole["lines"] if line in window["lines"]] == window["lines"]


def test_a_stopped_and_renamed_container_by_name_and_by_id(make_fleet, docker_client):
    fleet = make_fleet(name=f"logs-{uuid.uuid4().hex[:8]}", base_port=STOPPED_PORT)
    engine = fleet.up(1, "2.3.0")[0]
    assert get(engine, f"/probe-{fleet.api_key}") == 404
    container = engine.container()
    container.stop(timeout=20)
    failed = f"{engine.container_name}--failed"
    container.rename(failed)
    for name in (failed, container.id):
        run = read(name, fleet.api_key, past_start=0, past_end=1)
        logs = run.result("Read the window")["logs"]
        assert logs["container"] == failed and logs["window"] == {"start": None, "end": None}
        said = messages(logs["lines"])
        assert said[0] == "engine starting" and f"GET /probe-{MASK} 404" in said
        assert docker_client.containers.get(failed).status == "exited"


@pytest.mark.parametrize("case", ["missing container", "start not a time", "end before start"])
def test_bad_input(logged, case):
    options = {
        "missing container": dict(logs_container=f"logs-missing-{uuid.uuid4().hex[:6]}",
                                  expected_msg="No container named or identified by 'logs-missing-[0-9a-f]{6}' on "
                                               r"this Docker host: check the 'container' option \(docker ps -a"),
        "start not a time": dict(logs_start="last tuesday",
                                 expected_msg="^start: not ISO 8601 or epoch seconds: 'last tuesday'. Use ISO 8601"),
        "end before start": dict(logs_start=logged.end, logs_end=logged.start,
                                 expected_msg="The window is empty: start .* must be before end"),
    }[case]
    options.setdefault("logs_container", logged.engine.container_name)
    run = run_playbook(BAD_INPUT, extra_vars=options)
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-2000:]
