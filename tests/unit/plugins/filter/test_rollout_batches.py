# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.september.engine.plugins.filter.rollout_batches import (
    rollout_batch_of,
    rollout_batches,
    rollout_engines,
    rollout_settings,
)

DEFAULT = ["5%", "10%", "50%", "100%"]


@pytest.mark.parametrize(
    ("stages", "total", "expected"),
    [
        (DEFAULT, 1, [1]),
        (DEFAULT, 2, [1, 1]),
        (DEFAULT, 12, [1, 1, 4, 6]),
        (DEFAULT, 40, [2, 2, 16, 20]),
        (DEFAULT, 100, [5, 5, 40, 50]),
        (DEFAULT, 300, [15, 15, 120, 150]),
        (["1", "10%", "100%"], 50, [1, 4, 45]),
        (["10%", "50%"], 10, [1, 4, 5]),  # the rest of the fleet always follows the last stage
        (["100%"], 7, [7]),
        ([1], 3, [1, 2]),
        (["5%", "5%", "100%"], 20, [1, 19]),  # a stage that adds nobody is dropped
    ],
)
def test_batches(stages, total, expected):
    batches = rollout_batches(stages, total)
    assert batches == expected
    assert sum(batches) == total


# An AWX survey has no list type: the stages come as one comma-separated text answer.
@pytest.mark.parametrize(
    ("stages", "total", "expected"),
    [
        ("5%,10%,50%,100%", 12, [1, 1, 4, 6]),
        ("5%, 10%, 50%, 100%", 40, [2, 2, 16, 20]),
        (" 1 ,100% ", 3, [1, 2]),
        ("5%", 10, [1, 9]),
        ("100%", 3, [3]),
        ("2", 5, [2, 3]),
    ],
)
def test_batches_from_a_survey_string(stages, total, expected):
    batches = rollout_batches(stages, total)
    assert batches == expected
    assert sum(batches) == total


@pytest.mark.parametrize(
    "stages",
    [["0%"], ["150%"], ["abc"], [-1], [], ["50%", "10%"], "", "  ", "5%,,100%", "5%,", "50%,10%", "5% 10%", None, 5],
)
def test_bad_stages(stages):
    with pytest.raises(AnsibleFilterError):
        rollout_batches(stages, 10)


def test_bad_total():
    with pytest.raises(AnsibleFilterError, match="fleet size"):
        rollout_batches(DEFAULT, "many")


@pytest.mark.parametrize(("position", "expected"), [(0, 1), (1, 2), (2, 3), (5, 3), (6, 4), (11, 4)])
def test_batch_of(position, expected):
    assert rollout_batch_of([1, 1, 4, 6], position) == expected


def test_batch_of_beyond():
    with pytest.raises(AnsibleFilterError, match="beyond"):
        rollout_batch_of([1, 1], 2)


# ---- the filters that feed september.engine.rollout_plan ---------------------------------------------------------

HOSTVARS = {
    "u1": {"engine_docker_host": "dock-a", "ansible_host": "10.0.0.9"},
    "u2": {"ansible_connection": "local", "ansible_host": "10.0.0.9"},
    "u3": {"ansible_host": "10.0.0.7", "ansible_port": 2222},
    "u4": {"ansible_host": "docker-b.example"},
    "u5": {},
    "u6": {"ansible_connection": "ansible.builtin.local"},
}


def test_engines_with_their_docker_host():
    engines = rollout_engines(list(HOSTVARS), HOSTVARS, canaries=["u3", "other"])
    assert engines == [
        {"name": "u1", "docker_host": "dock-a", "canary": False},
        {"name": "u2", "docker_host": "localhost", "canary": False},
        {"name": "u3", "docker_host": "10.0.0.7:2222", "canary": True},
        {"name": "u4", "docker_host": "docker-b.example", "canary": False},
        {"name": "u5", "docker_host": "u5", "canary": False},
        {"name": "u6", "docker_host": "localhost", "canary": False},
    ]


def test_engines_only_of_the_pattern_in_play_order():
    engines = rollout_engines(["u5", "u1", "u3", "x"], HOSTVARS, only=["u3", "u5", "u6"])
    assert [e["name"] for e in engines] == ["u5", "u3"]
    assert rollout_engines(["u1"], HOSTVARS, only=[]) == []


def test_settings_of_the_first_engine():
    hostvars = {
        "web": {"engine_upgrade_bake_seconds": 1},
        "u1": {"engine_upgrade_bake_seconds": 30, "engine_target_version": "2.4.0", "engine_api_key": "secret",
               "engine_url": "http://x", "engine_rollout_stages": "1,100%", "ansible_host": "h"},
        "u2": {"engine_upgrade_bake_seconds": 99},
    }
    assert rollout_settings(["web", "u1", "u2"], hostvars, only=["u1", "u2"]) == {
        "engine_upgrade_bake_seconds": 30, "engine_target_version": "2.4.0", "engine_rollout_stages": "1,100%"}
    assert rollout_settings(["web", "u1"], hostvars, only=[]) == {"engine_upgrade_bake_seconds": 1}
    assert rollout_settings([], hostvars) == {}


def test_the_secret_settings_come_apart_from_the_others():
    hostvars = {"u1": {"engine_target_version": "2.4.0", "engine_webhook_url": "https://hooks/SECRET",
                       "engine_upgrade_webhook_url": "https://hooks/OTHER"}}
    assert rollout_settings(["u1"], hostvars) == {"engine_target_version": "2.4.0"}
    assert rollout_settings(["u1"], hostvars, secrets=True) == {
        "engine_webhook_url": "https://hooks/SECRET", "engine_upgrade_webhook_url": "https://hooks/OTHER"}
