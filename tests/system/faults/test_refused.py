# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults that upgrade.yml must refuse before anything changes (docs/faults.md, "refused before the switch").

One fleet for the module: a per-user container Engine (the one the faults hit) and a Compose Engine beside it,
both on 2.3.0 under light load. Each test runs ``upgrade.yml`` once with one fault and checks: the run fails with
one message that names the fault and what to do; the Engine was never stopped (same container, same start), its
brain and snapshot folder hold what they held (no snapshot was kept when the refusal came before it); no lock is
left; the report says the Engine failed at the pre-flight; the other Engine was not touched; every write the load
generator got acknowledged is in the brains.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from .conftest import Faults, failure_messages, wait_for

pytestmark = pytest.mark.timeout(240)
EVALS = Path(__file__).resolve().parents[3] / "roles" / "engine_upgrade" / "files" / "evals" / "reference.yml"
#: The image of a release whose extra migration SQLite cannot run here (a virtual table module it lacks).
UNCLASSIFIED_REPO = "september-faults-engine"
UNCLASSIFIED_TAG = "2.4.9"
UNCLASSIFIED_SQL = """-- 0007 (test only): a virtual table of a module this SQLite lacks: it cannot be classified.
CREATE VIRTUAL TABLE faults_search USING nosuchmodule(body);
"""


@pytest.fixture(scope="module")
def fleet(docker_client: docker.DockerClient, fault_images: list[str],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("refused")
    f = Faults(docker_client, tmp)
    try:
        f.up_engines(2, model="mixed")
        with f.load(rate=1.0) as lg:
            yield {"faults": f, "lg": lg}
        for engine in f.engines:
            f.assert_writes_kept(engine, lg)
    finally:
        f.close()


@pytest.fixture
def refused(fleet: dict[str, Any]) -> Iterator[Faults]:
    """The module's fleet, and after the test: nothing changed on either Engine, no lock, no snapshot, no temp file."""
    f: Faults = fleet["faults"]
    f.expected_state = f.state()
    brains = {e.engine_id: e.brain_path() for e in f.engines}
    snapshots = f.snapshot_files()
    yield f
    after = f.state()
    assert after == f.expected_state, f"an Engine was changed: {f.expected_state} -> {after}"
    for engine in f.engines:
        assert engine.is_healthy(), engine.engine_id
    assert f.snapshot_files() == snapshots, "a snapshot was kept although the upgrade was refused"
    assert f.lock_files() == [], "a lock was left"
    assert f.temp_files() == []
    assert {e.engine_id: e.brain_path() for e in f.engines} == brains


def refusal(f: Faults, run: Any, fault_engine: str, *parts: str) -> dict[str, Any]:
    """The run failed, its failures name ``parts``; the report has the Engine failed before its switch."""
    assert run.rc not in (0, 4), run.stdout[-3000:]
    messages = failure_messages(run)
    assert any(all(p in m for p in parts) for m in messages), messages
    report = f.report()
    (entry,) = [e for e in report["engines"] if e["engine"] == fault_engine]
    assert entry["status"] == "failed", entry
    assert report["outcome"] == "stopped_failed", report["outcome"]
    assert entry["reason"].startswith("pre-flight"), entry["reason"]
    return entry


def container_engine(f: Faults) -> Any:
    return next(e for e in f.engines if e.model == "container")


def test_pull_failure_of_a_tag_that_does_not_exist(refused: Faults) -> None:
    engine = container_engine(refused)
    run = refused.run("upgrade.yml", label="pull failure", limit=[engine.engine_id], engine_target_version="2.9.9",
                      engine_upgrade_pull="always")
    refusal(refused, run, engine.engine_id, "engine:2.9.9")


@pytest.fixture(scope="module")
def unclassified_image(docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """engine:2.4.0 plus a migration 0007 that no SQLite here can run, built offline from a tiny Dockerfile."""
    context = tmp_path_factory.mktemp("unclassified")
    (context / "0007_faults_search.sql").write_text(UNCLASSIFIED_SQL)
    (context / "Dockerfile").write_text(
        "FROM engine:2.4.0\n"
        "COPY 0007_faults_search.sql /app/migrations/0007_faults_search.sql\n"
        f'LABEL org.opencontainers.image.version="{UNCLASSIFIED_TAG}"\n'
        f"ENV ENGINE_VERSION={UNCLASSIFIED_TAG}\n")
    ref = f"{UNCLASSIFIED_REPO}:{UNCLASSIFIED_TAG}"
    built = subprocess.run(["docker", "build", "--pull=false", "-q", "-t", ref, str(context)],
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    yield ref
    docker_client.images.remove(ref, force=True)


def test_an_unclassifiable_migration_is_refused_like_a_destructive_one(refused: Faults, unclassified_image: str
                                                                       ) -> None:
    engine = container_engine(refused)
    run = refused.run("upgrade.yml", label="unclassifiable migration", limit=[engine.engine_id],
                      engine_target_version=UNCLASSIFIED_TAG, engine_image_repository=UNCLASSIFIED_REPO)
    entry = refusal(refused, run, engine.engine_id, "0007_faults_search", "could not classify",
                    "engine_upgrade_allow_destructive=true")
    assert entry["status"] == "failed"


@pytest.mark.parametrize("key", ["wrong", "missing"])
def test_a_wrong_or_missing_key_with_evals_on(refused: Faults, key: str) -> None:
    engine = container_engine(refused)
    refused.write_inventory({engine.engine_id: {"engine_api_key": "not-the-key-0123456789"} if key == "wrong"
                             else {"engine_api_key": ""}})
    try:
        run = refused.run("upgrade.yml", label=f"{key} key", limit=[engine.engine_id], engine_target_version="2.4.0",
                          engine_evals_file=str(EVALS))
    finally:
        refused.write_inventory()
    messages = [m for m in failure_messages(run) if "401" in m or "key" in m.lower()]
    assert messages, failure_messages(run)
    refusal(refused, run, engine.engine_id, "key")
    assert engine.api_key not in run.stdout


def test_an_unhealthy_engine_is_not_upgraded(refused: Faults) -> None:
    engine = container_engine(refused)
    engine.set_llm_outage(True)
    try:
        wait_for(lambda: not engine.is_healthy(), "the Engine to report its provider outage")
        run = refused.run("upgrade.yml", label="unhealthy before", limit=[engine.engine_id],
                          engine_target_version="2.4.0")
    finally:
        engine.set_llm_outage(False)
        wait_for(engine.is_healthy, "the Engine to be healthy again")
    refusal(refused, run, engine.engine_id, "not healthy before the upgrade")


def test_an_engine_stopped_by_its_operator_is_left_stopped(refused: Faults) -> None:
    engine = container_engine(refused)
    engine.container().stop(timeout=10)
    stopped = engine.container().attrs["State"]
    try:
        run = refused.run("upgrade.yml", label="stopped by the operator", limit=[engine.engine_id],
                          engine_target_version="2.4.0")
        container = engine.container()
        container.reload()
        assert container.attrs["State"]["Status"] == "exited", "the upgrade started an Engine its operator stopped"
        assert container.attrs["State"]["StartedAt"] == stopped["StartedAt"]
    finally:
        engine.container().start()
        refused.fleet.wait_healthy([engine], timeout=60)
        refused.expected_state = refused.state()  # started again by the test, not by the run
    refusal(refused, run, engine.engine_id, "not healthy before the upgrade")


def test_a_container_removed_outside_the_run(refused: Faults) -> None:
    engine = container_engine(refused)
    ghost = f"{engine.engine_id}-ghost"
    refused.write_inventory({engine.engine_id: {"engine_container_name": ghost}})
    try:
        run = refused.run("upgrade.yml", label="container gone", limit=[engine.engine_id],
                          engine_target_version="2.4.0")
    finally:
        refused.write_inventory()
    assert run.rc not in (0, 4), run.stdout[-3000:]
    assert any(ghost in m for m in failure_messages(run)), failure_messages(run)
    assert refused.containers_named(ghost) == []
