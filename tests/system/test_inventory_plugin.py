# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The inventory plugin september.engine.engines against real Engines on this machine's Docker (no mocks).

One small fleet (a per-user Engine and a Compose project at 2.3.0, a per-user Engine at 2.3.1), found by the real
``ansible-inventory`` through the plugin with the variables the fleet's hand-written inventory has, then the real
``health.yml`` run on that inventory. Also: a Docker host that refuses connections (a warning, or with ``strict``
an error) and the key, which is in the containers' environment, never in the inventory.
The same over SSH on the lab's Docker hosts: ``tests/system/lab/test_inventory_plugin.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine_testkit.ansible import REPO_ROOT, ansible_env, ensure_collection_link, run_playbook
from engine_testkit.fleet import Fleet
from engine_testkit.net import free_port

PLAYBOOKS = REPO_ROOT / "playbooks"

pytestmark = pytest.mark.timeout(300)


def ansible_inventory(config: Path, *args: str, env: dict | None = None) -> tuple[int, dict | None, str]:
    """``ansible-inventory -i <config> --list`` (or ``args``): exit status, the JSON, output.

    A source that fails does not fail ansible-inventory (it warns and lists nothing) unless
    ``ANSIBLE_INVENTORY_UNPARSED_FAILED`` is true, as AWX sets it for an inventory update.
    """
    ensure_collection_link()
    command = [str(Path(sys.executable).with_name("ansible-inventory")), "-i", str(config), *(args or ("--list",))]
    proc = subprocess.run(command, env=ansible_env(env), capture_output=True, text=True, timeout=120, check=False)
    data = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None
    return proc.returncode, data, proc.stdout + proc.stderr


def members(data: dict, group: str) -> list:
    return sorted((data.get(group) or {}).get("hosts") or [])


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump({"plugin": "september.engine.engines", **config}, sort_keys=False))
    return path


def role_results(run, name: str) -> dict:
    return {
        host: result
        for play in (run.data or {}).get("plays", [])
        for task in play.get("tasks", [])
        if task["task"]["name"].split(" : ", 1)[-1] == name
        for host, result in task["hosts"].items()
    }


def test_local_engines_found_listed_and_healthy(make_fleet, engine_images, tmp_path):
    assert "2.3.1" in engine_images, "run `make images`"
    fleet: Fleet = make_fleet()
    fleet.up(2, "2.3.0", model="mixed")
    fleet.up(1, "2.3.1", model="container")
    state = tmp_path / "state"
    config = write_config(
        tmp_path / "local.engines.yml",
        {
            "docker_hosts": [{"name": "local", "vars": {"engine_state_dir": str(state)}}],
            # this machine's Docker runs other tests' Engines too: only this fleet's
            "required_labels": [f"io.september.fleet={fleet.name}"],
        },
    )
    rc, data, output = ansible_inventory(config)
    assert rc == 0, output
    assert "WARNING" not in output, output
    # plain values (as AWX imports them), not {"__ansible_unsafe": ...}: nothing from Docker here holds { or }
    assert "__ansible_unsafe" not in output
    expected = fleet.inventory()["all"]["children"]["engines"]["hosts"]
    names = {f"local-{engine_id}": engine_id for engine_id in expected}
    hostvars = data["_meta"]["hostvars"]
    assert sorted(hostvars) == sorted(names)
    for name, engine_id in names.items():
        want = {k: v for k, v in expected[engine_id].items() if k != "engine_api_key"}
        got = hostvars[name]
        # what the hand-written inventory of the fleet says, from Docker alone...
        assert {k: got.get(k) for k in want} == want, name
        # ...and more: the version, the Docker host, the state, the Compose project as it runs
        engine = next(e for e in fleet.engines if e.engine_id == engine_id)
        assert got["engine_version"] == engine.image.split(":")[1]
        assert (got["engine_docker_host"], got["engine_container_state"]) == ("local", "running")
        assert got["engine_state_dir"] == str(state)
        if engine.model == "compose":
            assert got["engine_compose_project"] == engine.compose_project
            assert got["engine_compose_files"] == [str(engine.compose_dir / "docker-compose.yml")]
    by_model = {
        m: sorted(n for n, i in names.items() if expected[i]["engine_deployment"] == m)
        for m in ("container", "compose")
    }
    assert members(data, "engines") == sorted(names)
    assert members(data, "engines_container") == by_model["container"]
    assert members(data, "engines_compose") == by_model["compose"]
    assert members(data, "docker_host_local") == sorted(names)
    assert len(members(data, "engine_version_2_3_0")) == 2 and len(members(data, "engine_version_2_3_1")) == 1
    # the Engines' key is in their containers' environment and in the Compose .env: never in the inventory
    assert fleet.api_key not in output

    run = run_playbook(PLAYBOOKS / "health.yml", inventory=config)
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
    lines = {host: result["msg"] for host, result in role_results(run, "Health | Engine").items()}
    assert lines == {name: f"{name}: {hostvars[name]['engine_version']} healthy" for name in names}, lines
    found = role_results(run, "Health | Find the Engine")
    for name, engine_id in names.items():
        engine = next(e for e in fleet.engines if e.engine_id == engine_id)
        assert found[name]["engine"]["container_id"] == engine.container().id


def test_a_docker_host_that_refuses_is_a_warning_or_with_strict_an_error(make_fleet, tmp_path):
    fleet: Fleet = make_fleet()
    (engine,) = fleet.up(1, "2.3.0", model="container")
    ghost = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    config = {
        "docker_hosts": [
            {"name": "local"},
            {"name": "ghost", "docker_host": ghost, "ansible_host": "127.0.0.1", "timeout": 5},
        ],
        "required_labels": [f"io.september.fleet={fleet.name}"],
    }
    rc, data, output = ansible_inventory(write_config(tmp_path / "one.engines.yml", config))
    assert rc == 0, output
    assert sorted(data["_meta"]["hostvars"]) == [f"local-{engine.engine_id}"]
    assert f"Docker host ghost ({ghost}):" in output and "its Engines are not in the inventory" in output
    assert members(data, "docker_host_ghost") == []

    strict = write_config(tmp_path / "strict.engines.yml", {**config, "strict": True})
    rc, data, output = ansible_inventory(strict)
    assert rc == 0 and data["_meta"]["hostvars"] == {}, output  # the whole source failed: no Engine at all
    assert f"Docker host ghost ({ghost}):" in output
    rc, data, output = ansible_inventory(strict, env={"ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"})
    assert rc != 0 and data is None, output
    assert f"Docker host ghost ({ghost}):" in output


def test_a_bad_configuration_stops_with_one_message(tmp_path):
    config = write_config(tmp_path / "bad.engines.yml", {"docker_hosts": [{"name": "h1", "ansible_host": "10.0.0.9"}]})
    rc, data, output = ansible_inventory(config, env={"ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"})
    assert rc != 0 and data is None
    assert "docker_hosts[0] (h1): docker_host is required when ansible_host is set" in output
    assert "the september.engine.engines configuration has 1 problem(s)" in output
