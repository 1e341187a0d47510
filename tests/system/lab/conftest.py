# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the lab tests: real Docker hosts (containers running dockerd and sshd) reached over SSH.

Every test here is marked ``lab`` (``pytest -m lab``, or ``pytest tests/system/lab``) as well as ``system``.
The lab host image is built by ``tests/harness/lab/build-image.sh`` (kept while its recipe is unchanged; the
:func:`lab_image` fixture runs the script, which answers at once when the image is current). Nothing is skipped:
without Docker, the image or the reference Engine images every test fails with what to run.

- :func:`lab_image`: the image, built when missing or stale (session).
- :func:`make_lab`: a factory of :class:`engine_testkit.dockerhosts.DockerLab` (hosts with the Engine images
  loaded); every lab is removed after the test, whatever happened.
- :func:`standard_lab`: for a module, 2 lab hosts x 2 Engines (a per-user container and a Compose project each;
  h1 has Compose v2 when the image has it, h2 Compose v1 only) plus 1 local Engine, and the inventory that holds
  all five (``StandardLab``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from engine_testkit import dockerhosts
from engine_testkit.dockerhosts import DockerLab, LabError
from engine_testkit.fleet import BASELINE_VERSION, TEST_BASE_PORT, Fleet, sweep, unique_name

HERE = Path(__file__).resolve().parent
#: Seconds for a lab test (a lab comes up in about 20 s; a playbook over SSH takes seconds).
LAB_TIMEOUT = 300


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: runs against the lab of Docker hosts reached over SSH (tests/system/lab)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab_image(docker_client: docker.DockerClient) -> str:
    """The lab host image, built (about a minute) when missing or when its recipe changed."""
    try:
        line = dockerhosts.build_image()
    except LabError as exc:
        pytest.fail(f"cannot build the lab host image: {exc}", pytrace=False)
    print(line)
    return dockerhosts.LAB_IMAGE


@pytest.fixture
def make_lab(
    docker_client: docker.DockerClient, lab_image: str, engine_images: list[str], tmp_path: Path
) -> Iterator[Callable[..., DockerLab]]:
    """``make_lab(hosts=2, versions=("2.3.0",))``: a started lab, images loaded; removed after the test."""
    labs: list[DockerLab] = []

    def factory(hosts: int = 2, versions: tuple[str, ...] = (BASELINE_VERSION,), **kwargs: object) -> DockerLab:
        lab = DockerLab(unique_name("lt"), tmp_path / f"lab{len(labs)}", client=docker_client, **kwargs)  # type: ignore[arg-type]
        labs.append(lab)
        lab.up(hosts)
        if versions:
            lab.load_images(versions)
        return lab

    yield factory
    for lab in labs:
        lab.down()


@dataclass
class StandardLab:
    """2 lab hosts x (1 per-user container + 1 Compose project) and 1 local Engine, in one inventory."""

    lab: DockerLab
    local: Fleet
    inventory: Path
    #: The local Engine's state folder (snapshots) on this machine.
    local_state: Path
    #: Seconds the lab took to come up: hosts, images loaded, Engines healthy.
    up_seconds: float


@pytest.fixture(scope="module")
def standard_lab(
    docker_client: docker.DockerClient,
    lab_image: str,
    engine_images: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[StandardLab]:
    tmp = tmp_path_factory.mktemp("lab")
    started = time.monotonic()
    lab = DockerLab(unique_name("lt"), tmp / "lab", client=docker_client)
    local = Fleet(name=unique_name(), base_port=TEST_BASE_PORT, api_key=lab.api_key, client=docker_client)
    try:
        # h1 with Compose v2 (when the image has the plugin), h2 with Compose v1 only: both generations in one fleet.
        lab.up(2, compose_v2=[True, False])
        lab.load_images([BASELINE_VERSION])
        for host in lab.hosts:
            lab.add_engines(host, 2, BASELINE_VERSION, model="mixed")
        local.up(1, BASELINE_VERSION, model="container")
        local_state = tmp / "local-state"
        inventory = lab.write_inventory(local=[local], local_vars={"engine_state_dir": str(local_state)})
        yield StandardLab(lab, local, inventory, local_state, time.monotonic() - started)
    finally:
        try:
            local.down()
        finally:
            sweep(local.name, docker_client)
            lab.down()
