# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The load generator and the lost-write checker against real Engines, with negative controls."""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from collections.abc import Iterator

import docker
import pytest

from engine_testkit import Fleet, LoadGenerator, brain, sweep, wait_until
from engine_testkit.fleet import BASELINE_VERSION as BASELINE
from engine_testkit.fleet import TEST_BASE_PORT, Engine, unique_name


@pytest.fixture(scope="module")
def pair(docker_client: docker.DockerClient, engine_images: list[str]) -> Iterator[list[Engine]]:
    """Two healthy Engines: one per hosting model."""
    fleet = Fleet(name=unique_name(), base_port=TEST_BASE_PORT, client=docker_client)
    try:
        fleet.up(2, BASELINE, model="mixed")
        yield fleet.engines
    finally:
        fleet.down()
        sweep(fleet.name, docker_client)


@pytest.fixture(scope="module")
def loaded(pair: list[Engine]) -> LoadGenerator:
    """A finished run at 4 turns/s per Engine, feedback on half of the acknowledged turns: 6 acknowledged turns on
    each Engine, a mark (``mid_mono``), then 6 more."""
    gen = LoadGenerator(pair, rate=4.0, feedback_ratio=0.5, request_timeout=15, max_seconds=60)
    gen.start()
    mid = gen.wait_acked(6, timeout=30)
    gen.mid_mono = time.monotonic()  # type: ignore[attr-defined]
    gen.wait_acked(6, after=mid, timeout=30)
    assert gen.stop(timeout=10), "load generator threads did not stop"
    return gen


def test_load_is_acknowledged_and_steady(loaded: LoadGenerator, pair: list[Engine]) -> None:
    stats = loaded.stats()
    for engine in pair:
        s = stats["engines"][engine.engine_id]
        assert s["acked"] >= 12, s
        # steady: 4 turns/s scheduled per Engine; half of that is a loose floor for a slow machine
        assert s["acked"] / stats["duration_s"] >= 2, (s["acked"], stats["duration_s"])
        assert s["failures"] == {} and s["feedback_failures"] == {}, s
        assert s["feedback_acked"] >= 3, s
        assert s["wrong_answers"] == 0, s
        assert s["latency_ms"]["p50"] >= 200, s  # acknowledged at `done`, after a ~250 ms turn
        assert 0 < s["cache_hit_ratio"] < 1
    assert stats["totals"]["acked"] == sum(stats["engines"][e.engine_id]["acked"] for e in pair)


def test_every_acknowledged_write_is_in_the_brain(loaded: LoadGenerator, pair: list[Engine]) -> None:
    for engine in pair:
        path = engine.brain_path()
        tasks = loaded.acked_task_ids(engine.engine_id)
        signals = loaded.acked_signal_ids(engine.engine_id)
        assert tasks and signals
        assert tasks <= brain.task_ids(path)
        assert signals <= brain.signal_ids(path)
        assert brain.missing_acknowledged(loaded, engine) == set()
        counts = brain.row_counts(path)
        assert counts["tasks"] >= len(tasks) and counts["learning_signals"] >= len(signals)


def test_acked_before_splits_the_run(loaded: LoadGenerator, pair: list[Engine]) -> None:
    engine_id = pair[0].engine_id
    mid = loaded.mid_mono  # type: ignore[attr-defined]
    early = loaded.acked_before(engine_id, mid)
    everything = loaded.acked_task_ids(engine_id)
    assert early and early < everything
    assert loaded.acked_before(engine_id, time.time(), clock="wall") == everything
    assert loaded.acked_before(engine_id, 0) == set()


def test_checker_reports_fabricated_and_foreign_ids(loaded: LoadGenerator, pair: list[Engine]) -> None:
    """Negative controls: the checker can fail."""
    engine, other = pair

    class Tampered:
        """The real acknowledgements plus one task id and one signal id no Engine ever wrote."""

        def acked_task_ids(self, engine_id: str) -> set[str]:
            return loaded.acked_task_ids(engine_id) | {"00000000-fabricated-task"}

        def acked_signal_ids(self, engine_id: str) -> set[str]:
            return loaded.acked_signal_ids(engine_id) | {"00000000-fabricated-signal"}

    assert brain.missing_acknowledged(Tampered(), engine) == {"00000000-fabricated-task", "00000000-fabricated-signal"}
    detail = brain.missing_acknowledged_detail(Tampered(), engine)
    assert detail == {"tasks": {"00000000-fabricated-task"}, "signals": {"00000000-fabricated-signal"}}
    # The right ids checked against the wrong brain: every one of them is missing.
    foreign = brain.missing_acknowledged(loaded, engine, other.brain_path())
    assert foreign == loaded.acked_task_ids(engine.engine_id) | loaded.acked_signal_ids(engine.engine_id)


def test_wrong_key_is_recorded_as_401_with_no_acks(pair: list[Engine]) -> None:
    real_key = pair[0].api_key
    impostor = dataclasses.replace(pair[0], api_key="definitely-not-the-key")
    gen = LoadGenerator([impostor], rate=5.0, max_seconds=30)
    stats = gen.run_for(1.5)
    s = stats["engines"][impostor.engine_id]
    assert s["acked"] == 0 and s["feedback_attempts"] == 0
    assert set(s["failures"]) == {"http_401:INVALID_KEY"} and s["failures"]["http_401:INVALID_KEY"] >= 3
    assert gen.acked_task_ids(impostor.engine_id) == set()
    assert real_key not in json.dumps(stats) and real_key not in repr(gen)
    assert "definitely-not-the-key" not in json.dumps(stats)


def test_connection_refused_and_local_only() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    ghost = Engine(
        engine_id="ghost", model="container", container_name="ghost", volume="none", port=port,
        url=f"http://127.0.0.1:{port}", api_key="k" * 16, image="engine:none",
    )
    stats = LoadGenerator([ghost], rate=10.0, max_seconds=30).run_for(1.0)
    s = stats["engines"]["ghost"]
    assert s["acked"] == 0 and set(s["failures"]) == {"connection_refused"} and s["failed"] >= 5
    with pytest.raises(ValueError, match=r"only targets http://127\.0\.0\.1"):
        LoadGenerator([dataclasses.replace(ghost, url="http://example.com:9001")])


def test_stop_is_prompt_and_max_seconds_bounds_the_run(pair: list[Engine]) -> None:
    gen = LoadGenerator(pair, rate=20.0, workers_per_engine=4, max_seconds=60).start()
    gen.wait_acked(4, timeout=30)  # in full swing: turns in flight when it is told to stop
    t0 = time.monotonic()
    assert gen.stop(timeout=5)
    assert time.monotonic() - t0 < 5
    assert not gen.running
    bounded = LoadGenerator(pair, rate=2.0, max_seconds=1.0).start()
    wait_until(lambda: not bounded.running, 10, "the threads to end by themselves after max_seconds", interval=0.1)
    assert bounded.stop(timeout=1)
