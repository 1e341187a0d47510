# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""engine_compose against real Compose projects of reference Engines, through real ansible-playbook.

Compose v1 (``docker-compose`` 1.29) is what this machine has, so it is used for real (detected with
``compose_command: auto`` and named explicitly); the v2 command lines are covered by the unit tests.
Each switch runs under load: every acknowledged write must still be in the brain afterwards. Fleets are
named ``cmp-<8 hex>`` and use host ports 9700-9799.
"""

from __future__ import annotations

import json
import os
import stat
import time
import uuid
from pathlib import Path

import pytest

from engine_testkit import LoadGenerator, missing_acknowledged
from engine_testkit.ansible import run_playbook
from engine_testkit.fleet import Engine, Fleet

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"
SWITCH = PLAYBOOKS / "engine_compose.yml"
ROLLBACK = PLAYBOOKS / "engine_compose_rollback.yml"
BAD_TAG = PLAYBOOKS / "engine_compose_bad_tag.yml"
BASE_PORT = 9700


@pytest.fixture
def fleet(make_fleet) -> Fleet:
    return make_fleet(name=f"cmp-{uuid.uuid4().hex[:8]}", base_port=BASE_PORT)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def changed_lines(before: bytes, after: bytes) -> list[tuple[str, str]]:
    """(old, new) of every line that differs; an appended line shows as ('', new)."""
    old, new = before.decode().splitlines(), after.decode().splitlines()
    old += [""] * (len(new) - len(old))
    return [(a, b) for a, b in zip(old, new, strict=False) if a != b]


def running_version(engine: Engine) -> str | None:
    container = engine.container()
    container.reload()
    return container.status == "running" and engine.image_version()


def play(playbook: Path, **extra):
    run = run_playbook(playbook, extra_vars=extra, diff=True)
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-2000:]
    return run


@pytest.mark.timeout(420)
@pytest.mark.parametrize(("tag_in", "command"), [("file", "auto"), ("env", "docker-compose")])
def test_switch_and_roll_back_under_load(fleet, tag_in, command):
    engine = fleet.up(1, "2.3.0", model="compose", compose_tag_in=tag_in)[0]
    src = engine.compose_dir
    compose_file, env_file = src / "docker-compose.yml", src / ".env"
    compose_before, env_before = compose_file.read_bytes(), env_file.read_bytes()
    volume = engine.volume
    load = LoadGenerator([engine], rate=6, feedback_ratio=0.2, workers_per_engine=3).start()
    try:
        time.sleep(2)
        run = play(SWITCH, cmp_src=str(src), cmp_from="2.3.0", cmp_to="2.3.1", cmp_command=command)
        fleet.wait_healthy([engine], timeout=60)
        time.sleep(2)
    finally:
        load.stop()
    first = run.result("Switch the Engine to the target tag")["compose"]
    assert first["compose_version"] == "v1" and first["compose_command"][-1].endswith("docker-compose")
    assert first["tag_location"]["location"] == tag_in

    # the setting was edited minimally: one line, the key line and every other line byte for byte the same
    if tag_in == "file":
        assert env_file.read_bytes() == env_before
        assert changed_lines(compose_before, compose_file.read_bytes()) == [
            ("    image: engine:2.3.0", "    image: engine:2.3.1")
        ]
    else:
        assert compose_file.read_bytes() == compose_before
        assert changed_lines(env_before, env_file.read_bytes()) == [("ENGINE_TAG=2.3.0", "ENGINE_TAG=2.3.1")]
    assert mode(env_file) == 0o600
    assert f"ENGINE_API_KEY={engine.api_key}" in env_file.read_text()
    # the diff showed the tag, never the key
    assert "+    image: engine:2.3.1" in run.stdout or "+ENGINE_TAG=2.3.1" in run.stdout
    assert engine.api_key not in run.stdout + run.stderr + json.dumps(run.data)

    # the service runs 2.3.1, healthy, on the same volume, with every acknowledged write
    assert running_version(engine) == "2.3.1" and engine.is_healthy()
    assert [m.get("Name") for m in engine.container().attrs["Mounts"]] == [volume]
    assert load.acked_task_ids(engine.engine_id), "the load must have written before and after the switch"
    assert not missing_acknowledged(load, engine)

    state_file = src / ".september-engine.json"
    assert mode(state_file) == 0o600
    record = json.loads(state_file.read_text())["services"]["engine"]
    assert (record["version"], record["previous_version"]) == ("2.3.1", "2.3.0")
    assert [h["result"] for h in record["history"]] == ["ok"]

    back = play(ROLLBACK, cmp_src=str(src), cmp_from="2.3.0", cmp_command=command)
    fleet.wait_healthy([engine], timeout=60)
    assert running_version(engine) == "2.3.0" and engine.is_healthy()
    assert compose_file.read_bytes() == compose_before and env_file.read_bytes() == env_before
    assert back.result("Roll back to the recorded previous version")["compose"]["previous_version"] == "2.3.1"
    record = json.loads(state_file.read_text())["services"]["engine"]
    assert (record["version"], record["rolled_back_from"]) == ("2.3.0", "engine:2.3.1")
    assert not missing_acknowledged(load, engine)


@pytest.mark.timeout(300)
def test_missing_tag_fails_and_the_project_stays_on_its_version(fleet):
    engine = fleet.up(1, "2.3.0", model="compose", compose_tag_in="file")[0]
    src = engine.compose_dir
    compose_before = (src / "docker-compose.yml").read_bytes()
    started_at = engine.container().attrs["State"]["StartedAt"]

    # pull=never: refused before anything stops
    play(BAD_TAG, cmp_src=str(src), cmp_to="0.0.404", cmp_pull="never", cmp_expect_changed=False,
         expected_msg="not on this Docker host and pull=never.*nothing was stopped")
    assert engine.container().attrs["State"]["StartedAt"] == started_at
    assert (src / "docker-compose.yml").read_bytes() == compose_before
    assert not (src / ".september-engine.json").exists()

    # pull=missing: Compose tries, fails; the previous tag is put back and the Engine started again
    play(BAD_TAG, cmp_src=str(src), cmp_to="0.0.404", cmp_pull="missing", cmp_expect_changed=True,
         expected_msg="(?s)Switching service 'engine' to engine:0.0.404 failed"
                      ".*put 'engine:2.3.0' back.*started it again")
    fleet.wait_healthy([engine], timeout=60)
    assert running_version(engine) == "2.3.0" and engine.is_healthy()
    assert (src / "docker-compose.yml").read_bytes() == compose_before
    record = json.loads((src / ".september-engine.json").read_text())["services"]["engine"]
    assert (record["image"], record["previous_image"], record["rolled_back_from"]) == (
        "engine:2.3.0", "engine:2.3.0", "engine:0.0.404")
    assert record["history"][-1]["result"] == "up failed, previous setting restored"
