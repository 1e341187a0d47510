# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""engine_watch's round (wait, watch, measure) and engine_rollback's choice of where to go back to."""

from __future__ import annotations

from typing import ClassVar

import pytest

from ansible_collections.september.engine.plugins.module_utils import _watch
from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError
from ansible_collections.september.engine.plugins.module_utils._rollback import (
    RollbackRefused,
    check_options,
    choose_target,
)
from ansible_collections.september.engine.plugins.module_utils._watch import EngineWatch

PARAMS = {"container": "u1", "since": 1000.0, "wait_timeout": 30, "healthy_streak": 2, "watch_seconds": 10,
          "interval": 2.0, "measure": True, "slices": 3, "min_turns": 20, "source": "logs", "url": None}


class FakeHealth:
    """engine_health's manager, scripted: each run() pops the next answer and records its options."""

    answers: ClassVar[list] = []
    calls: ClassVar[list] = []

    def __init__(self, params: dict):
        self.params = params

    def run(self) -> dict:
        FakeHealth.calls.append(self.params)
        return {"is_healthy": FakeHealth.answers.pop(0), "failure": "none"}

    def watch(self, seconds: float) -> dict:
        FakeHealth.calls.append(dict(self.params, watched=seconds))
        return {"is_healthy": FakeHealth.answers.pop(0), "failure": "none"}


class FakeMetrics:
    seen: ClassVar[list] = []

    def __init__(self, params: dict, client=None, check_sdk=None):
        FakeMetrics.seen.append(params)

    def measure(self) -> dict:
        return {"measures": {"turns": 7}}


@pytest.fixture
def fakes(monkeypatch):
    FakeHealth.answers, FakeHealth.calls, FakeMetrics.seen = [], [], []
    monkeypatch.setattr(_watch, "EngineHealth", FakeHealth)
    monkeypatch.setattr(_watch, "EngineMetrics", FakeMetrics)
    monkeypatch.setattr(_watch.time, "time", lambda: 1003.0)


def test_a_round_waits_watches_then_measures_since_the_switch(fakes) -> None:
    FakeHealth.answers = [True, True]
    result = EngineWatch(dict(PARAMS)).run()
    assert result["healthy_seconds"] == 3.0 and result["metrics"] == {"measures": {"turns": 7}}
    wait, watch = FakeHealth.calls
    assert (wait["healthy_streak"], wait["wait_timeout"]) == (2, 30)
    assert (watch["watched"], watch["interval"]) == (10, 2.0)  # on time, whatever each probe costs
    (measured,) = FakeMetrics.seen
    assert measured["start"] == 1000.0 and measured["container"] == "u1" and measured["slices"] == 3


@pytest.mark.parametrize("answers", [[False], [True, False]])
def test_an_unhealthy_engine_is_reported_not_measured(fakes, answers: list) -> None:
    FakeHealth.answers = list(answers)
    result = EngineWatch(dict(PARAMS)).run()
    assert result["health"]["is_healthy"] is False and result["metrics"] is None
    assert FakeMetrics.seen == []


def test_no_watch_and_no_measure(fakes) -> None:
    FakeHealth.answers = [True]
    result = EngineWatch(dict(PARAMS, watch_seconds=0, measure=False)).run()
    assert len(FakeHealth.calls) == 1 and result["metrics"] is None and result["watched_seconds"] == 0.0


@pytest.mark.parametrize(("change", "message"), [
    ({"watch_seconds": -1}, "watch_seconds must be 0 or more"),
    ({"healthy_streak": 0}, "healthy_streak must be 1 or more"),
    ({"interval": 0}, "interval must be more than 0"),
    ({"since": "yesterday"}, "since: "),
])
def test_bad_watch_options(change: dict, message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        EngineWatch(dict(PARAMS, **change))


# ---------------------------------------------------------------- engine_rollback: where to go back to

ENGINE = {"image": "registry:5000/team/engine:2.4.2", "repository": "registry:5000/team/engine",
          "previous": {"image": "mirror/engine:2.3.0", "image_id": "sha256:230", "version": "2.3.0"}}


def test_back_to_the_exact_recorded_image() -> None:
    assert choose_target(ENGINE, None, None) == ("mirror/engine:2.3.0", "sha256:230")
    assert choose_target(ENGINE, "2.3.0", None) == ("mirror/engine:2.3.0", "sha256:230")


def test_another_release_comes_from_the_engines_repository_never_from_a_version_label() -> None:
    assert choose_target(ENGINE, "2.2.9", None) == ("registry:5000/team/engine:2.2.9", None)
    labelled = dict(ENGINE, previous={"image": "engine:2.3.0", "image_id": "sha256:1", "version": "v2.3.0"})
    assert choose_target(labelled, "2.3.0", None) == ("engine:2.3.0", "sha256:1")  # the tag matches


def test_an_explicit_image_wins_and_nothing_recorded_is_refused() -> None:
    assert choose_target(ENGINE, None, "engine:2.3.1") == ("engine:2.3.1", None)
    with pytest.raises(RollbackRefused, match="engine_rollback_version=<tag>"):
        choose_target(dict(ENGINE, previous=None), None, None)


@pytest.mark.parametrize(("change", "message"), [
    ({"restore_brain": "sometimes"}, "restore_brain must be one of"),
    ({"drain_timeout": -1}, "drain_timeout must be 0 or more"),
    ({"healthy_streak": 0}, "healthy_streak must be 1 or more"),
])
def test_bad_rollback_options(change: dict, message: str) -> None:
    params = {"restore_brain": "auto", "drain_timeout": 10, "health_timeout": 30, "healthy_streak": 2, **change}
    with pytest.raises(OptionsError, match=message):
        check_options(params)
