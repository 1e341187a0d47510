# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""engine_watch's round (wait, watch, measure) and engine_rollback's choice of where to go back to."""

from __future__ import annotations

from types import SimpleNamespace
from typing import ClassVar

import pytest

from ansible_collections.september.engine.plugins.module_utils import _watch
from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError
from ansible_collections.september.engine.plugins.module_utils._rollback import (
    Rollback,
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


def test_an_engine_rolled_back_already_stays_where_it_is() -> None:
    # A second rollback.yml, or one after the upgrade's own rollback: the switch that recorded the previous release
    # is undone, the container carries what it was rolled back from. Not "nothing recorded" (which sent operators
    # to engine_rollback_version, and stopped a fleet's rollback at the first such Engine).
    back = dict(ENGINE, image="engine:2.3.0", image_id="sha256:230", previous=None, rolled_back_from="engine:2.4.0")
    assert choose_target(back, None, None) == ("engine:2.3.0", "sha256:230")
    assert choose_target(back, "2.2.9", None) == ("registry:5000/team/engine:2.2.9", None)  # asked: elsewhere
    with pytest.raises(RollbackRefused, match="engine_rollback_version=<tag>"):
        choose_target(dict(back, rolled_back_from=None), None, None)


def _forward(engine: dict, version: str, pending: list) -> Rollback:
    module = SimpleNamespace(params={"deployment": "container"}, check_mode=False, notes=[])
    done = Rollback(module, client=None)
    done.engine = engine
    with pytest.raises(RollbackRefused) as refused:
        done._refuse_going_forward(f"engine:{version}", version, {"pending": [{"name": n} for n in pending]})
    return refused.value.msg


RUNNING_230 = {"image": "engine:2.3.0", "version": "2.3.0", "previous": None}


def test_a_rollback_never_goes_forward() -> None:
    # The bad version typed for the good one: it would upgrade the Engine with no snapshot and no verification.
    message = _forward(RUNNING_230, "2.4.0", [])
    assert "engine:2.4.0 is newer than the running engine:2.3.0: a rollback only goes back" in message
    assert "Nothing was changed" in message
    # Not newer by its version (a tag that is no version), but it would migrate the brain: an upgrade all the same.
    message = _forward(dict(RUNNING_230, version=None), "nightly", ["0006_episode_tags"])
    assert "would apply migration(s) 0006_episode_tags" in message


@pytest.mark.parametrize(("engine", "target", "version", "pending"), [
    (RUNNING_230, "engine:2.2.9", "2.2.9", []),  # older: a rollback
    (RUNNING_230, "engine:2.3.0", "2.3.0", []),  # the same release
    # The release recorded before the last switch, newer: an operator's own downgrade undone.
    (dict(RUNNING_230, previous={"image": "engine:2.4.0"}), "engine:2.4.0", "2.4.0", []),
])
def test_going_back_is_not_refused(engine: dict, target: str, version: str, pending: list) -> None:
    module = SimpleNamespace(params={"deployment": "container"}, check_mode=False, notes=[])
    done = Rollback(module, client=None)
    done.engine = engine
    assert done._refuse_going_forward(target, version, {"pending": pending}) is None


@pytest.mark.parametrize(("change", "message"), [
    ({"restore_brain": "sometimes"}, "restore_brain must be one of"),
    ({"drain_timeout": -1}, "drain_timeout must be 0 or more"),
    ({"healthy_streak": 0}, "healthy_streak must be 1 or more"),
])
def test_bad_rollback_options(change: dict, message: str) -> None:
    params = {"restore_brain": "auto", "drain_timeout": 10, "health_timeout": 30, "healthy_streak": 2, **change}
    with pytest.raises(OptionsError, match=message):
        check_options(params)
