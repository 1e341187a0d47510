# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The reference Engine's graceful drain on SIGTERM (``docker stop``), under real load.

While draining, ``/health`` is 503 ``draining`` and new turns get ``503 DRAINING``; turns in flight
finish and are acknowledged (``done``) before the process exits 0; after a restart every
acknowledged task and feedback is in the brain. When the drain times out, the abandoned turns
are never acknowledged and show as ``interrupted`` after the next start.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import requests

from engine_testkit import LoadGenerator, brain
from engine_testkit.fleet import Engine
from engine_testkit.lab import EngineLab
from engine_testkit.loadgen import expected_answer, iter_stream_lines, parse_sse
from engine_testkit.waits import wait_until

LONG_TURN_MS = "3000"


class LongTurn(threading.Thread):
    """A turn by hand in a thread: ``started`` is set at its ``task`` event; ``events`` holds all."""

    def __init__(self, engine: Engine, message: str):
        super().__init__(daemon=True)
        self.engine = engine
        self.message = message
        self.started = threading.Event()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.status: int | None = None
        self.exc: BaseException | None = None

    def run(self) -> None:
        try:
            with requests.post(
                f"{self.engine.url}/execute",
                json={"message": self.message},
                headers={"X-Engine-Key": self.engine.api_key},
                stream=True,
                timeout=60,
            ) as resp:
                self.status = resp.status_code
                for name, data in parse_sse(iter_stream_lines(resp)):
                    self.events.append((name, json.loads(data)))
                    if name == "task":
                        self.started.set()
        except (requests.RequestException, OSError, ValueError) as exc:
            self.exc = exc

    def event(self, name: str) -> dict[str, Any] | None:
        return next((data for n, data in self.events if n == name), None)


def start_long_turns(engine: Engine, count: int, tag: str) -> list[LongTurn]:
    turns = [LongTurn(engine, f"echo: {tag} long turn {i}") for i in range(count)]
    for t in turns:
        t.start()
    for t in turns:
        assert t.started.wait(10), f"turn {t.message!r} did not start: {t.status} {t.exc}"
    return turns


def wait_health(engine: Engine, status: str, timeout: float) -> tuple[int | None, dict[str, Any] | None]:
    deadline = time.monotonic() + timeout
    code, body = engine.health(timeout=2)
    while time.monotonic() < deadline and (body or {}).get("status") != status:
        time.sleep(0.05)
        code, body = engine.health(timeout=2)
    return code, body


def messages(lines: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [line for line in lines if str(line["message"]).startswith(prefix)]


def assert_draining_refuses_new_turns(e: Engine, in_flight: list[LongTurn]) -> None:
    """While the drain runs: /health is 503 draining, a new turn gets 503 DRAINING, the turns in flight go on."""
    code, body = wait_health(e, "draining", timeout=5)
    assert code == 503 and body is not None and body["status"] == "draining", (code, body)
    refused = requests.post(f"{e.url}/execute", json={"message": "echo: too late"},
                            headers={"X-Engine-Key": e.api_key}, timeout=10)
    assert refused.status_code == 503 and refused.json()["error"] == "DRAINING", refused.text
    still = e.health(timeout=2)
    assert still[0] == 503 and (still[1] or {}).get("status") == "draining", "the drain ended too early"
    assert all(t.is_alive() for t in in_flight), "in-flight turns ended before the refusal was checked"


def assert_finished(turns: list[LongTurn]) -> None:
    """Each turn ended with its ``done`` event: completed, with the right answer."""
    for t in turns:
        t.join(30)
        assert not t.is_alive() and t.exc is None, (t.message, t.exc)
        assert [n for n, _data in t.events][-1] == "done", (t.message, t.events)
        done = t.event("done") or {}
        assert done["status"] == "completed" and done["answer"] == expected_answer(t.message)


def assert_clean_drain_logged(lines: list[dict[str, Any]], in_flight: int) -> None:
    """The Engine's log of a drain that completed: one SIGTERM with the turns in flight, the drain complete (not
    timed out), one WAL checkpoint with nothing busy, exit code 0."""
    sigterm = messages(lines, "SIGTERM received: draining")
    assert len(sigterm) == 1 and sigterm[0]["extra"]["in_flight"] >= in_flight, sigterm
    assert messages(lines, "drain complete: no turn in flight") and not messages(lines, "drain timed out")
    checkpoint = messages(lines, "WAL checkpointed (TRUNCATE)")
    assert len(checkpoint) == 1 and checkpoint[0]["extra"]["busy"] == 0, checkpoint
    assert messages(lines, "engine stopped")[0]["extra"]["exit_code"] == 0


@pytest.mark.timeout(150)
def test_sigterm_finishes_in_flight_turns_refuses_new_ones_and_loses_no_ack(eng_lab: EngineLab) -> None:
    e = eng_lab.run("2.4.0", env={"ENGINE_TURN_LATENCY_MS": LONG_TURN_MS}, restart="unless-stopped")
    gen = LoadGenerator([e], rate=3.0, feedback_ratio=0.5, request_timeout=30, workers_per_engine=12, max_seconds=90)
    gen.start()
    try:
        # A first round of 3 s turns acknowledged; the load keeps its next ones in flight.
        acked_before_stop = wait_until(lambda: gen.acked_task_ids(e.engine_id), 30, "a first acknowledged turn",
                                       last=gen.stats)
        assert acked_before_stop, gen.stats()
        in_flight = start_long_turns(e, 5, "drain")

        stop: dict[str, Any] = {}
        t_stop = time.monotonic()
        stopper = threading.Thread(target=lambda: stop.update(code=eng_lab.stop(e, timeout=30)), daemon=True)
        stopper.start()

        assert_draining_refuses_new_turns(e, in_flight)
        assert_finished(in_flight)
        stopper.join(40)
        drain_seconds = time.monotonic() - t_stop
        assert stop.get("code") == 0, stop
        assert drain_seconds < 15, f"the drain took {drain_seconds:.1f}s (SIGKILL after 30 s?)"
    finally:
        gen.stop(timeout=10)

    stats = gen.stats()["engines"][e.engine_id]
    kinds = set(stats["failures"])
    assert "http_503:DRAINING" in kinds, stats
    assert not {k for k in kinds if k.startswith("error:") or k == "stream_incomplete"}, stats  # no turn was cut
    assert stats["wrong_answers"] == 0 and stats["aborted"] == 0, stats
    assert len(gen.acked_task_ids(e.engine_id)) > len(acked_before_stop)  # load turns in flight were finished too

    assert_clean_drain_logged(eng_lab.log_lines(e), len(in_flight))

    eng_lab.start_again(e, timeout=60)
    path = e.brain_path()
    detail = brain.missing_acknowledged_detail(gen, e)
    assert detail == {"tasks": set(), "signals": set()}, detail
    assert len(gen.acked_signal_ids(e.engine_id)) >= 1
    hand = {str((t.event("task") or {})["task_id"]) for t in in_flight}
    assert hand <= brain.task_ids(path, status="completed")
    assert brain.task_ids(path, status="interrupted") == set()
    assert brain.task_ids(path, status="running") == set()
    restarted = eng_lab.log_lines(e)
    assert len(messages(restarted, "engine starting")) == 2
    assert not messages(restarted, "turns were interrupted")


@pytest.mark.timeout(120)
def test_drain_timeout_abandons_turns_which_show_as_interrupted(eng_lab: EngineLab) -> None:
    e = eng_lab.run("2.3.0", env={"ENGINE_TURN_LATENCY_MS": "6000", "ENGINE_DRAIN_TIMEOUT": "1"})
    turns = start_long_turns(e, 2, "abandoned")
    t_stop = time.monotonic()
    assert eng_lab.stop(e, timeout=30) == 0
    assert time.monotonic() - t_stop < 10
    for t in turns:
        t.join(20)
        assert not t.is_alive()
        assert t.event("done") is None, "an abandoned turn must never be acknowledged"
    lines = eng_lab.log_lines(e)
    timed_out = messages(lines, "drain timed out")
    assert len(timed_out) == 1 and timed_out[0]["extra"]["abandoned"] == 2

    eng_lab.start_again(e, timeout=60)
    ids = {str((t.event("task") or {})["task_id"]) for t in turns}
    path = e.brain_path()
    assert ids <= brain.task_ids(path, status="interrupted")
    assert not ids & brain.task_ids(path, status="completed")
    rows = [requests.get(f"{e.url}/tasks/{i}", headers={"X-Engine-Key": e.api_key}, timeout=5).json() for i in ids]
    assert {(r["status"], r["error"]) for r in rows} == {("interrupted", "ENGINE_RESTARTED")}
    interrupted = messages(eng_lab.log_lines(e), "2 turns were interrupted")
    assert len(interrupted) == 1 and interrupted[0]["extra"]["interrupted_tasks"] == 2
