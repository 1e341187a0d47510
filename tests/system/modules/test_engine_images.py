# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""engine_images and the image retention playbook on the real Docker engine, with real images and real Engines.

A test-only repository ``rt-<8 hex>/engine`` gets one real image per version, each built ``FROM engine:2.3.0`` with
its own ``org.opencontainers.image.version`` label (so every version has an id of its own and runs as a reference
Engine), plus ``latest`` on the newest and a ``nightly`` image. The real ``engine:*`` images are never tagged,
untagged or removed (their ids are checked), and the test repository is removed whatever happens.

What protects each older version, recorded the way an upgrade records it, by the collection's own modules:

    1.8.0, 1.9.0   nothing: removed
    2.0.0          the protect option
    2.1.0          the Compose Engine C's state file (C was switched 2.1.0 -> 2.9.0 by engine_compose)
    2.2.0          Engine B's kept previous container (B switched 2.2.0 -> 2.7.0, not finalized)
    2.3.0          a stopped container that is not an Engine
    2.4.0          Engine A's labels only (A switched 2.4.0 -> 2.8.0 and finalized)
    2.5.0 - 2.9.0  the last five versions: kept
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest
import yaml

from engine_testkit import Fleet, sweep
from engine_testkit.ansible import COLLECTIONS_PATH, ensure_collection_link, run_playbook
from engine_testkit.fleet import LABEL_FLEET, LABEL_TESTKIT, TEST_BASE_PORT

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"
VERSION_LABEL = "org.opencontainers.image.version"
BASE = "engine:2.3.0"
VERSIONS = ["1.8.0", "1.9.0", "2.0.0", "2.1.0", "2.2.0", "2.3.0", "2.4.0", "2.5.0", "2.6.0", "2.7.0", "2.8.0", "2.9.0"]
KEPT = ["2.9.0", "2.8.0", "2.7.0", "2.6.0", "2.5.0"]

pytestmark = pytest.mark.timeout(900)


def collection(module: str):
    """A module_utils module of the collection, imported from build/ (the pre-flight's Python API)."""
    ensure_collection_link()
    if str(COLLECTIONS_PATH) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS_PATH))
    return importlib.import_module(f"ansible_collections.september.engine.plugins.module_utils.{module}")


def build(client: docker.DockerClient, repo: str, tag: str, version: str) -> str:
    """A real image ``repo:tag`` of its own id: the reference Engine with another version label."""
    image, _logs = client.images.build(fileobj=io.BytesIO(f"FROM {BASE}\n".encode()), tag=f"{repo}:{tag}",
                                       labels={VERSION_LABEL: version, LABEL_TESTKIT: "engine_images"}, rm=True)
    return image.id


def tags_of(client: docker.DockerClient, repo: str) -> list[str]:
    return sorted(t for image in client.images.list(name=repo) for t in image.tags if t.startswith(f"{repo}:"))


def remove_repository(client: docker.DockerClient, repo: str) -> None:
    for tag in tags_of(client, repo):
        with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
            client.images.remove(tag, force=True)


class World:
    """The test repository, three Engines that record their rollbacks, one container that is not an Engine."""

    def __init__(self, client: docker.DockerClient, tmp: Path):
        self.client = client
        self.tmp = tmp
        self.repo = f"rt-{uuid.uuid4().hex[:8]}/engine"
        self.ids: dict[str, str] = {}
        self.fleet: Fleet | None = None
        self.real = {image.id: sorted(image.tags) for image in client.images.list(name="engine")}

    def build(self) -> None:
        for version in VERSIONS:
            self.ids[version] = build(self.client, self.repo, version, version)
        self.ids["nightly"] = build(self.client, self.repo, "nightly", "2.10.0-nightly")
        self.client.images.get(f"{self.repo}:2.9.0").tag(self.repo, "latest")

    def up(self) -> None:
        self.fleet = Fleet(f"rt-{uuid.uuid4().hex[:6]}", TEST_BASE_PORT, repository=self.repo, client=self.client)
        self.a = self.fleet.up(1, "2.4.0", "container", wait=False)[0]
        self.b = self.fleet.up(1, "2.2.0", "container", wait=False)[0]
        self.c = self.fleet.up(1, "2.1.0", "compose", wait=False)[0]
        self.fleet.wait_healthy(timeout=120)
        self.tool = f"{self.fleet.name}-tool"
        self.client.containers.create(f"{self.repo}:2.3.0", name=self.tool, command=["true"],
                                      labels={LABEL_FLEET: self.fleet.name, LABEL_TESTKIT: "engine_images"})
        run = run_playbook(PLAYBOOKS / "engine_images_setup.yml", extra_vars={
            "ret_repo": self.repo, "ret_a": self.a.container_name, "ret_b": self.b.container_name,
            "ret_c_dir": str(self.c.compose_dir)})
        assert run.rc == 0, run.stdout[-6000:] + run.stderr[-2000:]

    def inventory(self, docker_hosts: dict[str, str] | None = None) -> Path:
        inventory = self.fleet.inventory()
        for name, host in (docker_hosts or {}).items():
            inventory["all"]["children"]["engines"]["hosts"][name]["engine_docker_host"] = host
        path = self.tmp / f"inventory-{uuid.uuid4().hex[:6]}.yml"
        path.write_text(yaml.safe_dump(inventory), encoding="utf-8")
        path.chmod(0o600)
        return path

    def present(self, version: str) -> bool:
        try:
            return self.client.images.get(self.ids[version]).id == self.ids[version]
        except docker.errors.ImageNotFound:
            return False

    def down(self) -> None:
        try:
            if self.fleet is not None:
                with contextlib.suppress(Exception):
                    self.fleet.down()
                sweep(self.fleet.name, self.client)
        finally:
            remove_repository(self.client, self.repo)

    def check_real_images_untouched(self) -> None:
        now = {image.id: sorted(image.tags) for image in self.client.images.list(name="engine")}
        for image_id, tags in self.real.items():
            assert set(tags) <= set(now.get(image_id, [])), f"the real {tags} lost a tag: {now.get(image_id)}"


@pytest.fixture(scope="module")
def world(docker_client, engine_images, tmp_path_factory):
    w = World(docker_client, tmp_path_factory.mktemp("engine-images"))
    try:
        w.build()
        w.up()
        yield w
    finally:
        w.down()
    assert tags_of(docker_client, w.repo) == [], "the test repository must be gone"
    w.check_real_images_untouched()


def ref(world: World, tag: str) -> str:
    return f"{world.repo}:{tag}"


def test_keeps_five_versions_and_every_image_a_rollback_needs(world):
    run = run_playbook(PLAYBOOKS / "engine_images.yml",
                       extra_vars={"ret_repo": world.repo, "ret_protect": [ref(world, "2.0.0")]})
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-2000:]
    plan = run.result("Plan in check mode")["images"][world.repo]
    applied = run.result("Apply with diff")
    repo = applied["images"][world.repo]

    assert repo["kept"] == [ref(world, v) for v in KEPT]
    assert repo["removed"] == [ref(world, "1.9.0"), ref(world, "1.8.0")] == plan["removed"]
    assert applied["actions"] == [f"remove {ref(world, v)} ({world.ids[v][:19]})" for v in ("1.9.0", "1.8.0")]
    whys = {p["ref"]: p["why"] for p in repo["protected"]}
    assert list(whys) == [ref(world, v) for v in ("2.4.0", "2.3.0", "2.2.0", "2.1.0", "2.0.0")]
    assert whys[ref(world, "2.4.0")] == f"the rollback recorded in the labels of {world.a.container_name}"
    assert whys[ref(world, "2.3.0")] == f"used by 1 container(s): {world.tool} (created)"
    assert f"kept previous container(s) for a rollback: {world.b.container_name}--previous (exited)" in whys[
        ref(world, "2.2.0")]
    assert whys[ref(world, "2.1.0")] == (
        f"the rollback recorded in {Path(world.c.compose_dir).resolve()}/.september-engine.json (service engine)")
    assert whys[ref(world, "2.0.0")] == f"listed in protect: {ref(world, '2.0.0')}"
    assert sorted(s["ref"] for s in repo["skipped"]) == [ref(world, "latest"), ref(world, "nightly")]
    assert repo["refused"] == []
    assert ref(world, "1.8.0") not in applied["diff"]["after"][world.repo]

    # The images themselves: the two oldest are gone, everything else is here under its tags.
    assert not world.present("1.8.0") and not world.present("1.9.0")
    assert all(world.present(v) for v in [*VERSIONS[2:], "nightly"])
    assert tags_of(world.client, world.repo) == sorted(ref(world, t) for t in [*VERSIONS[2:], "latest", "nightly"])
    world.check_real_images_untouched()
    # The Engines still run where they were switched to.
    world.fleet.wait_healthy(timeout=60)


def test_without_repositories_the_engines_repositories_are_found(world):
    before = tags_of(world.client, world.repo)
    run = run_playbook(PLAYBOOKS / "engine_images_discover.yml", extra_vars={"ret_repo": world.repo})
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-2000:]
    found = run.result("Plan for every Engine repository on this host")
    assert world.repo in found["repositories"]
    protected = [p["ref"] for p in found["images"][world.repo]["protected"]]
    assert {ref(world, v) for v in ("2.1.0", "2.2.0", "2.3.0", "2.4.0")} <= set(protected)
    assert tags_of(world.client, world.repo) == before
    world.check_real_images_untouched()


def test_the_playbook_runs_once_per_docker_host(world):
    world.ids["1.7.0"] = build(world.client, world.repo, "1.7.0", "1.7.0")
    engines = [world.a.engine_id, world.b.engine_id, world.c.engine_id]
    extra = {"engine_image_retention_repositories": [world.repo],
             "engine_image_retention_protect": [ref(world, "2.0.0")]}
    task = ("september.engine.engine_image_retention : "
            "Image retention | Keep the last versions of each Engine image on this Docker host")

    # Check mode, all Engines on this one Docker host: one Engine runs the retention, nothing is removed.
    checked = run_playbook("september.engine.images", inventory=world.inventory(), extra_vars=extra, check=True)
    assert checked.rc == 0, checked.stdout[-6000:] + checked.stderr[-2000:]
    ran = [r for r in checked.task_results(task) if not r.get("skipped")]
    assert len(ran) == 1 and len(checked.task_results(task)) == 3, checked.stdout[-6000:]
    assert ref(world, "1.7.0") in ran[0]["images"][world.repo]["removed"]
    assert world.present("1.7.0")

    # Two Docker hosts in the inventory: one run on each.
    split = world.inventory({engines[0]: "dock-a", engines[1]: "dock-a", engines[2]: "dock-b"})
    checked = run_playbook("september.engine.images", inventory=split, extra_vars=extra, check=True)
    assert checked.rc == 0, checked.stdout[-6000:] + checked.stderr[-2000:]
    ran = {name for name in engines if not checked.result(task, name).get("skipped")}
    assert ran == {engines[0], engines[2]}
    assert world.present("1.7.0")

    # For real: 1.7.0 goes, the protected ones stay; again: nothing changes.
    applied = run_playbook("september.engine.images", inventory=world.inventory(), extra_vars=extra)
    assert applied.rc == 0, applied.stdout[-6000:] + applied.stderr[-2000:]
    ran = [r for r in applied.task_results(task) if not r.get("skipped")]
    assert len(ran) == 1 and ran[0]["changed"]
    assert ref(world, "1.7.0") in ran[0]["images"][world.repo]["removed"]
    assert not world.present("1.7.0")
    assert all(world.present(v) for v in VERSIONS[2:])
    again = run_playbook("september.engine.images", inventory=world.inventory(), extra_vars=extra)
    assert again.rc == 0, again.stdout[-6000:] + again.stderr[-2000:]
    assert not any(r.get("changed") for r in again.task_results(task))
    assert again.stats and all(s.get("changed", 0) == 0 for s in again.stats.values())
    world.check_real_images_untouched()


def test_the_preflight_check_on_real_images(world):
    """rollback_image_problem (what the pre-flight calls) against this Docker host: an Engine as engine_info resolves
    it has its rollback image; a removed one, with no registry reachable from here, is a problem that says so."""
    _images, _engine = collection("_images"), collection("_engine")
    engine = _engine.resolve_engine(world.client, dict(deployment="container", container_name=world.a.container_name))
    assert engine["image"] == ref(world, "2.8.0")
    assert _images.rollback_image_problem(world.client, engine) is None
    # Its recorded previous image (2.4.0: only its labels keep it) is present too.
    assert _images.rollback_image_problem(world.client, engine["previous"]) is None

    gone_id = build(world.client, world.repo, "0.0.1", "0.0.1")
    world.client.images.remove(ref(world, "0.0.1"))
    gone = dict(image=ref(world, "0.0.1"), image_id=gone_id)
    problem = _images.rollback_image_problem(world.client, gone)
    assert problem.startswith(f"its rollback image {ref(world, '0.0.1')} ({gone_id[:19]}) is not on this Docker host, "
                              "and the registry cannot give it back (")
    assert "pull=never" in _images.rollback_image_problem(world.client, gone, pull="never")
    # The tag is gone but the exact image is here under another tag: a rollback tags it again.
    moved = dict(image=ref(world, "0.0.1"), image_id=world.ids["2.9.0"])
    assert _images.rollback_image_problem(world.client, moved) is None
