# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json

import pytest

from ansible_collections.september.engine.plugins.module_utils import _engine
from ansible_collections.september.engine.plugins.module_utils._errors import NotFoundError


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("engine:2.3.0", ("engine", "2.3.0")),
        ("registry.example:5000/september-engine:2.3.1", ("registry.example:5000/september-engine", "2.3.1")),
        ("registry.example:5000/september-engine", ("registry.example:5000/september-engine", None)),
        ("engine@sha256:abc", ("engine", None)),
        ("engine", ("engine", None)),
        (None, (None, None)),
    ],
)
def test_split_repository(ref, expected):
    assert _engine.split_repository(ref) == expected


class _Images:
    def get(self, ref):
        raise _engine.NotFound("no image")


class _Containers:
    def __init__(self, containers):
        self._containers = containers

    def get(self, name):
        if name in self._containers:
            return self._containers[name]
        raise _engine.NotFound(name)

    def list(self, **_kwargs):
        return list(self._containers.values())


class _Client:
    def __init__(self, containers):
        self.containers = _Containers(containers)
        self.images = _Images()


def test_missing_container_says_what_to_fix():
    with pytest.raises(NotFoundError, match="engine_container_name"):
        _engine.resolve_engine(_Client({}), {"deployment": "container", "container_name": "engine-u1"})


def test_missing_compose_dir_says_what_to_fix(tmp_path):
    with pytest.raises(NotFoundError, match="engine_compose_dir"):
        _engine.resolve_engine(_Client({}), {"deployment": "compose", "compose_dir": str(tmp_path / "nope")})


@pytest.mark.parametrize(("rolled_back", "expected"), [(None, "engine:2.3.0"), ("engine:2.4.1", None)])
def test_compose_previous_comes_from_the_state_file(tmp_path, rolled_back, expected):
    record = {"image": "engine:2.4.1", "previous_image": "engine:2.3.0", "rolled_back_from": rolled_back}
    (tmp_path / ".september-engine.json").write_text(json.dumps({"services": {"engine": record}}))
    engine = _engine.resolve_engine(_Client({}), {"deployment": "compose", "compose_dir": str(tmp_path)})
    assert engine["exists"] is False
    assert (engine["previous"] or {}).get("image") == expected


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        (None, None),
        ([], None),
        ([{"action": "present", "from": "engine:2.3.0", "to": "engine:2.4.0", "result": "ok"},
          {"action": "present", "from": "engine:2.4.0", "to": "engine:2.4.1", "result": "in progress"}],
         {"action": "present", "from": "engine:2.4.0", "to": "engine:2.4.1", "result": "in progress"}),
    ],
)
def test_compose_last_switch_comes_from_the_state_file(tmp_path, history, expected):
    record = {"image": "engine:2.4.1", "previous_image": "engine:2.4.0"}
    if history is not None:
        record["history"] = history
    (tmp_path / ".september-engine.json").write_text(json.dumps({"services": {"engine": record}}))
    engine = _engine.resolve_engine(_Client({}), {"deployment": "compose", "compose_dir": str(tmp_path)})
    assert engine["compose"]["last_switch"] == expected
