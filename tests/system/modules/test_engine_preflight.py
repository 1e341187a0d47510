# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""engine_preflight's boot test (issue 12.6) on a real reference Engine, through real ansible-playbook runs.

For a major release or a destructive migration the pre-flight boots the target on a throwaway copy of the brain
(then the current image on the migrated copy) and refuses the upgrade when the target does not come up there; the
Engine itself is never stopped, its brain never written, and the throwaway containers and copy never left.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from engine_testkit import Fleet, sweep
from engine_testkit.ansible import REPO_ROOT, PlaybookRun, run_playbook
from engine_testkit.fleet import TEST_BASE_PORT, unique_name
from engine_testkit.settings import ANSIBLE_ENV

PLAYBOOK = REPO_ROOT / "tests" / "system" / "playbooks" / "preflight_boot_test.yml"
TASK = "Pre-flight of the upgrade"
BOOT_LABEL = "io.september.engine.migration_check"


class Scene:
    def __init__(self, client: docker.DockerClient, fleet: Fleet, tmp: Path) -> None:
        self.client, self.fleet, self.tmp = client, fleet, tmp
        self.engine = fleet.engines[0]

    def run(self, target: str, boot: str, check: bool = False) -> dict[str, Any]:
        run: PlaybookRun = run_playbook(
            PLAYBOOK,
            extra_vars={"target": target, "boot": boot, "state_dir": str(self.tmp / "state")},
            inventory=self.tmp / "inventory.yml",
            check=check,
            env=ANSIBLE_ENV,
            timeout=600,
        )
        assert run.rc == 0, run.stdout[-4000:]
        return run.result(TASK, self.engine.engine_id)

    def state(self) -> tuple:
        """The Engine as it serves: container id, start time, image; its brain's sha256."""
        container = self.engine.container()
        container.reload()
        brain = hashlib.sha256(self.engine.brain_path().read_bytes()).hexdigest()
        return container.id, container.attrs["State"]["StartedAt"], container.attrs["Config"]["Image"], brain

    def leftovers(self) -> list[str]:
        """Throwaway boot-test containers, copies of the brain and lock files left behind."""
        containers = [c.name for c in self.client.containers.list(all=True, filters={"label": BOOT_LABEL})]
        state = self.tmp / "state"
        files = [str(p) for p in state.rglob("*") if p.is_file()] if state.exists() else []
        return containers + files


@pytest.fixture(scope="module")
def scene(docker_client: docker.DockerClient, engine_images: list[str], tmp_path_factory) -> Iterator[Scene]:
    missing = [tag for tag in ("2.4.0", "3.0.0", "2.5.0") if tag not in engine_images]
    if missing:
        pytest.fail(f"images engine:{', engine:'.join(missing)} not found: run `make images`", pytrace=False)
    tmp = tmp_path_factory.mktemp("preflight-boot")
    fleet = Fleet(name=unique_name("pfb"), base_port=TEST_BASE_PORT + 40, client=docker_client, workdir=tmp / "fleet")
    try:
        fleet.up(1, "2.4.0", model="container", timeout=90)
        fleet.write_inventory(tmp / "inventory.yml")
        yield Scene(docker_client, fleet, tmp)
    finally:
        try:
            fleet.down()
        finally:
            sweep(fleet.name, docker_client)


def test_a_major_release_is_boot_tested_on_a_copy_and_goes_on(scene: Scene) -> None:
    before = scene.state()
    result = scene.run("3.0.0", "auto")
    assert not result.get("failed"), result.get("msg")
    migration = result["preflight"]["migration"]
    assert migration["boot_test_reasons"][0] == "a major upgrade (2.4.0 to 3.0.0)"
    assert any(reason.startswith("destructive migration(s)") for reason in migration["boot_test_reasons"])
    boot = migration["boot_test"]
    assert boot["target_healthy"] is True, boot
    assert boot["target"]["image"] == "engine:3.0.0"
    assert scene.state() == before  # the Engine was never stopped, its brain never written
    # the run holds its lock until the role releases it; nothing else of the boot test is left
    assert [Path(p).parent.name for p in scene.leftovers()] == ["locks"]
    (scene.tmp / "state" / "locks").joinpath(Path(scene.leftovers()[0]).name).unlink()


def test_a_target_that_does_not_come_up_on_the_copy_is_refused_with_nothing_stopped(scene: Scene) -> None:
    before = scene.state()
    result = scene.run("2.5.0", "always")  # 2.5.0 crash-loops right after its migration
    assert result.get("failed"), result
    assert "engine:2.5.0 did not come up healthy on a copy of its brain" in result["msg"]
    assert result["msg"].endswith("Nothing was changed.")
    assert scene.state() == before
    assert scene.leftovers() == []  # the refusal released the lock; no container, no copy left


def test_a_minor_release_is_not_boot_tested_by_default_and_check_mode_boots_nothing(scene: Scene) -> None:
    before = scene.state()
    minor = scene.run("2.5.0", "auto", check=True)
    assert not minor.get("failed"), minor.get("msg")
    assert minor["preflight"]["migration"]["boot_test_reasons"] == []
    assert minor["preflight"]["migration"]["boot_test"] is None
    major = scene.run("3.0.0", "always", check=True)
    assert major["preflight"]["migration"]["boot_test_reasons"] and major["preflight"]["migration"]["boot_test"] is None
    assert scene.state() == before and scene.leftovers() == []
