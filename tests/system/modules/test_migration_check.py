# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""migration_check against brains made by real reference Engines and the real engine:<tag> images.

Brains come from running Engines: a 2.3.0 Engine and a 2.4.0 Engine each serve a few turns and are stopped
(their brains at rest), and a third 2.3.0 Engine keeps running. Every case runs playbooks/migration_check.yml
through real ansible-playbook: check, check again, check mode, diff; the playbook asserts changed=false, no diff
and the expected verdict on each run; pytest then checks the details, that the real brain is byte for byte
unchanged, and that no throwaway container or file is left. Fleets are named ``migr-<8 hex>``, ports 9400-9499.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from engine_testkit import Fleet, sweep
from engine_testkit.ansible import run_playbook
from engine_testkit.brain import applied_migrations
from engine_testkit.fleet import Engine, unique_name

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"
PLAYBOOK = PLAYBOOKS / "migration_check.yml"
BAD_INPUT = PLAYBOOKS / "migration_check_bad_input.yml"
MIGRATIONS = Path(__file__).resolve().parents[2] / "reference_engine" / "migrations"
BASE_PORT = 9400
NEEDED = ("2.3.0", "2.3.1", "2.4.0", "3.0.0")
LABEL = "io.september.engine.migration_check"
TASKS = (
    "Check the upgrade",
    "Check the upgrade again",
    "Check the upgrade in check mode",
    "Check the upgrade with diff",
)
FIVE = ["0001", "0002", "0003", "0004", "0005"]


@dataclass
class Brains:
    at_rest_230: Engine
    at_rest_240: Engine
    live_230: Engine


def serve_turns(engine: Engine, count: int = 3) -> None:
    """Real agent turns, so the brain holds rows (tasks, events, working memory) and not only a schema."""
    for n in range(count):
        with requests.post(
            f"{engine.url}/execute",
            json={"message": f"what is {n} + 2"},
            headers={"X-Engine-Key": engine.api_key},
            stream=True,
            timeout=30,
        ) as response:
            assert response.status_code == 200, response.text
            body = response.text
        assert "event: done" in body, body


@pytest.fixture(scope="module")
def brains(docker_client, engine_images) -> Brains:
    missing = [tag for tag in NEEDED if tag not in engine_images]
    if missing:
        pytest.fail(f"images engine:{', engine:'.join(missing)} not found: run `make images`", pytrace=False)
    fleet = Fleet(name=unique_name("migr"), base_port=BASE_PORT, client=docker_client)
    try:
        at_rest_230 = fleet.up(1, "2.3.0")[0]
        at_rest_240 = fleet.up(1, "2.4.0")[0]
        live_230 = fleet.up(1, "2.3.0")[0]
        for engine in (at_rest_230, at_rest_240, live_230):
            serve_turns(engine)
        for engine in (at_rest_230, at_rest_240):
            engine.container().stop(timeout=30)
        yield Brains(at_rest_230, at_rest_240, live_230)
    finally:
        try:
            fleet.down()
        finally:
            sweep(fleet.name, docker_client)


def fingerprint(engine_or_path) -> dict:
    """sha256 of the brain and of its -wal (a reader may create -wal/-shm, never change the brain's data)."""
    brain = Path(engine_or_path if isinstance(engine_or_path, (str, Path)) else engine_or_path.brain_path())
    found = {}
    for path in (brain, Path(f"{brain}-wal")):
        if path.exists() and path.stat().st_size:
            found[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def leftovers(docker_client) -> list[str]:
    return [c.name for c in docker_client.containers.list(all=True, filters={"label": LABEL})]


def check(expected_pending: list[str], expected_strategy: str, destructive=False, downgrade=False, **options):
    """Run the four-check playbook; returns the four migration results (rc and playbook asserts checked)."""
    extra = {f"mc_{name}": value for name, value in options.items()}
    extra.update(
        expected_pending=expected_pending,
        expected_strategy=expected_strategy,
        expected_destructive=destructive,
        expected_downgrade=downgrade,
    )
    run = run_playbook(PLAYBOOK, extra_vars=extra)
    assert run.rc == 0, run.stdout[-5000:] + run.stderr[-2000:]
    results = [run.result(task) for task in TASKS]
    for result in results:
        assert result["changed"] is False and "diff" not in result
    return [result["migration"] for result in results]


def bad_input(expected_msg: str, **options) -> None:
    extra = {f"mc_{name}": value for name, value in options.items()}
    run = run_playbook(BAD_INPUT, extra_vars={**extra, "expected_msg": expected_msg})
    assert run.rc == 0, run.stdout[-5000:] + run.stderr[-2000:]
    result = run.result("Check with bad input")
    assert "Traceback" not in result["msg"]


def hand_made_brain(path: Path, applied: int = 5, user_version: bool = True) -> Path:
    """An Engine-like brain without the reference Engine's bookkeeping table: the schema of 0001..applied."""
    conn = sqlite3.connect(path)
    for file in sorted(MIGRATIONS.glob("*.sql"))[:applied]:
        conn.executescript(file.read_text(encoding="utf-8"))
    if user_version:
        conn.execute(f"PRAGMA user_version = {applied}")
    conn.commit()
    conn.close()
    return path


# --------------------------------------------------------------------------- static analysis


def test_patch_2_3_0_to_2_3_1_rolls_back_with_the_image(brains, docker_client):
    before = fingerprint(brains.at_rest_230)
    results = check([], "image", container=brains.at_rest_230.container_name, target_image="engine:2.3.1")
    migration = results[0]
    assert (migration["current_image"], migration["current_version"]) == ("engine:2.3.0", "2.3.0")
    assert (migration["target_version"], migration["bump"]) == ("2.3.1", "patch")
    assert migration["applied"] == FIVE and migration["pending"] == []
    assert not migration["is_forward_only"] and migration["snapshot_retention_days"] is None
    assert migration["warnings"] == []
    assert migration["brain_path"] == str(brains.at_rest_230.brain_path())
    assert fingerprint(brains.at_rest_230) == before
    assert leftovers(docker_client) == []


def test_minor_2_3_0_to_2_4_0_needs_a_brain_restore(brains, docker_client):
    before = fingerprint(brains.at_rest_230)
    results = check(
        ["0006_episode_tags"],
        "brain_restore",
        volume=brains.at_rest_230.volume,
        current_image="engine:2.3.0",
        target_image="engine:2.4.0",
    )
    migration = results[0]
    assert migration["bump"] == "minor" and migration["is_forward_only"] and not migration["is_destructive"]
    (pending,) = migration["pending"]
    assert pending["version"] == "0006" and pending["classification"] == "additive"
    assert "adds column episodes.tag_count" in pending["reasons"]
    assert "creates table memory_tags" in pending["reasons"]
    assert migration["shipped"][-1] == "0006_episode_tags"
    assert fingerprint(brains.at_rest_230) == before
    assert applied_migrations(brains.at_rest_230.brain_path()) == FIVE
    assert leftovers(docker_client) == []


def test_major_3_0_0_is_destructive(brains):
    before = fingerprint(brains.at_rest_230)
    results = check(
        ["0006_episode_tags", "0007_turn_metrics", "0008_memory_v3"],
        "brain_restore",
        destructive=True,
        path=str(brains.at_rest_230.brain_path()),
        current_image="engine:2.3.0",
        target_image="engine:3.0.0",
    )
    migration = results[0]
    assert migration["bump"] == "major" and migration["snapshot_retention_days"] == 7
    verdicts = {item["name"]: item for item in migration["pending"]}
    assert verdicts["0006_episode_tags"]["classification"] == "additive"
    assert verdicts["0007_turn_metrics"]["classification"] == "additive"
    destructive = verdicts["0008_memory_v3"]
    assert destructive["classification"] == "destructive"
    assert destructive["reasons"] == [
        "drops table channel_state_snapshots with all its rows",
        "drops column working_memory_log.raw_payload",
        "deletes rows from observability_events",
    ]
    assert any("snapshot the brain first" in w and "7 days" in w for w in migration["warnings"])
    assert fingerprint(brains.at_rest_230) == before


def test_a_2_4_0_brain_against_2_3_0_is_a_downgrade(brains):
    before = fingerprint(brains.at_rest_240)
    results = check(
        [], "image", downgrade=True, container=brains.at_rest_240.container_name, target_image="engine:2.3.0"
    )
    migration = results[0]
    assert migration["applied"] == [*FIVE, "0006"] and migration["not_shipped"] == ["0006"]
    assert migration["bump"] == "downgrade"
    assert any("MIGRATION_REQUIRED" in w for w in migration["warnings"])
    assert fingerprint(brains.at_rest_240) == before


def test_a_live_engine_is_checked_while_it_serves(brains):
    engine = brains.live_230
    results = check(
        ["0006_episode_tags"], "brain_restore", container=engine.container_name, target_image="engine:2.4.0"
    )
    assert results[0]["current_version"] == "2.3.0"
    assert engine.is_healthy()
    serve_turns(engine, 1)
    assert applied_migrations(engine.brain_path()) == FIVE


def test_user_version_on_a_hand_made_brain(tmp_path):
    brain = hand_made_brain(tmp_path / "brain.sqlite", applied=5)
    before = fingerprint(brain)
    results = check(
        ["0006_episode_tags"],
        "brain_restore",
        path=str(brain),
        migrations_source="user_version",
        current_image="engine:2.3.0",
        target_image="engine:2.4.0",
    )
    assert results[0]["applied"] == FIVE
    assert results[0]["pending"][0]["classification"] == "additive"
    assert fingerprint(brain) == before


# --------------------------------------------------------------------------- boot test


def test_boot_test_2_3_0_to_2_4_0_proves_image_rollback_does_not_work(brains, docker_client, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    before = fingerprint(brains.at_rest_230)
    results = check(
        ["0006_episode_tags"],
        "brain_restore",
        container=brains.at_rest_230.container_name,
        target_image="engine:2.4.0",
        boot_test=True,
        boot_test_dir=str(scratch),
    )
    for migration in results:
        boot = migration["boot_test"]
        assert boot["target_healthy"] is True and boot["target"]["failure"] == "none"
        assert boot["applied_after_target"] == [*FIVE, "0006"]
        assert boot["image_rollback_works"] is False
        assert boot["current"]["image"] == "engine:2.3.0"
        assert boot["current"]["failure"] == "migration_required"
        assert boot["current"]["exit_code"] == 3
        assert boot["current"]["message"].startswith("MIGRATION_REQUIRED")
    assert fingerprint(brains.at_rest_230) == before
    assert applied_migrations(brains.at_rest_230.brain_path()) == FIVE
    assert brains.at_rest_230.container().status == "exited"
    assert leftovers(docker_client) == []
    assert os.listdir(scratch) == []


def test_boot_test_2_3_0_to_2_3_1_proves_image_rollback_works(brains, docker_client, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    before = fingerprint(brains.at_rest_230)
    results = check(
        [],
        "image",
        container=brains.at_rest_230.container_name,
        target_image="engine:2.3.1",
        boot_test=True,
        boot_test_dir=str(scratch),
    )
    for migration in results:
        boot = migration["boot_test"]
        assert boot["target_healthy"] is True and boot["image_rollback_works"] is True
        assert boot["current"]["failure"] == "none" and boot["applied_after_target"] == FIVE
    assert fingerprint(brains.at_rest_230) == before
    assert leftovers(docker_client) == []
    assert os.listdir(scratch) == []


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("case", "expected_msg"),
    [
        ("target_image_absent", r"Image 'engine:0\.0\.0-absent' is not present on this Docker host: pull or build it"),
        ("container_absent", r"No container named or identified by 'migr-no-such-engine'"),
        ("volume_absent", r"No Docker volume named 'migr-no-such-volume'"),
        ("path_absent", r"There is no brain at .*: check the location options"),
        ("not_sqlite", r"is not an SQLite database \(bad header\)"),
        ("migrations_dir_absent", r"Image engine:2\.4\.0 has no /app/not-here: set migrations_dir"),
        ("no_migrations_table", r"The brain has no table 'engine_schema_migrations'.*migrations_source=user_version"),
        ("boot_test_without_current", r"boot_test needs the current image"),
        ("docker_unreachable", r"Cannot reach the Docker daemon at tcp://127\.0\.0\.1:1"),
    ],
)
def test_bad_input(case, expected_msg, brains, docker_client, tmp_path):
    engine = brains.at_rest_230
    options = dict(container=engine.container_name, target_image="engine:2.4.0")
    if case == "target_image_absent":
        options["target_image"] = "engine:0.0.0-absent"
    elif case == "container_absent":
        options["container"] = "migr-no-such-engine"
    elif case == "volume_absent":
        options = dict(volume="migr-no-such-volume", target_image="engine:2.4.0")
    elif case == "path_absent":
        options = dict(path=str(tmp_path / "nothing.sqlite"), target_image="engine:2.4.0")
    elif case == "not_sqlite":
        text = tmp_path / "brain.sqlite"
        text.write_text("this is a text file, not a brain\n")
        options = dict(path=str(text), target_image="engine:2.4.0")
    elif case == "migrations_dir_absent":
        options["migrations_dir"] = "/app/not-here"
    elif case == "no_migrations_table":
        options = dict(path=str(hand_made_brain(tmp_path / "brain.sqlite")), target_image="engine:2.4.0")
    elif case == "boot_test_without_current":
        options = dict(path=str(engine.brain_path()), target_image="engine:2.4.0", boot_test=True)
    elif case == "docker_unreachable":
        options["docker_host"] = "tcp://127.0.0.1:1"
    before = fingerprint(engine)
    bad_input(expected_msg, **options)
    assert fingerprint(engine) == before
    assert leftovers(docker_client) == []
    assert not (tmp_path / "nothing.sqlite").exists()
