# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pytest fixtures of every test on real Docker: the collection's (``tests/system``) and the test kit's own
(``tests/harness/tests/system``). Each of those folders' ``conftest.py`` imports them from here (one copy).

Nothing is skipped: without a Docker engine or without the ``engine:<tag>`` images every test fails with a message
that says what to run. Fleets are named ``t-<8 hex>`` (unique per test) and take host ports from 9101 upward, clear
of the demo fleet (9001+) and of ``refeng-dev-*`` (9500-9599 is simply skipped when bound). Every test of such a
folder gets a pytest-timeout (:func:`mark_docker_tests`) so a hang fails instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from .fleet import BASELINE_VERSION as BASELINE
from .fleet import TEST_BASE_PORT, Fleet, sweep, unique_name
from .lab import EngineLab

__all__ = ["DEFAULT_TIMEOUT", "ENG_PORTS", "docker_client", "eng_lab", "engine_images", "fleet_name", "make_fleet",
           "mark_docker_tests"]

#: Seconds after which pytest-timeout fails a test on Docker that carries no timeout of its own.
DEFAULT_TIMEOUT = 300
#: Host ports of the reference Engine's own tests (test_reference_engine.py, test_engine_drain.py).
ENG_PORTS = (9800, 9899)


def mark_docker_tests(items: list[pytest.Item], here: Path) -> None:
    """Mark every test under ``here`` ``system`` (the marker of pytest.ini) and give it a timeout unless it has one
    (a conftest's ``pytest_collection_modifyitems`` calls this with its own folder)."""
    here = here.resolve()
    for item in items:
        if here not in Path(str(item.fspath)).resolve().parents:
            continue
        item.add_marker(pytest.mark.system)
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A Docker client that answers ``ping``; fails (not skips) every test otherwise."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"the Docker engine is not reachable ({exc}): run `make bootstrap`", pytrace=False)
    yield client
    client.close()


@pytest.fixture(scope="session")
def engine_images(docker_client: docker.DockerClient) -> list[str]:
    """The reference Engine image tags present; fails if the baseline ``engine:2.3.0`` is missing."""
    try:
        docker_client.images.get(f"engine:{BASELINE}")
    except docker.errors.ImageNotFound:
        pytest.fail(f"image engine:{BASELINE} not found: run `make images`", pytrace=False)
    return sorted(
        tag.split(":", 1)[1] for image in docker_client.images.list(name="engine") for tag in image.tags
    )


@pytest.fixture
def fleet_name() -> str:
    """A unique fleet name for this test."""
    return unique_name()


@pytest.fixture
def make_fleet(docker_client: docker.DockerClient, engine_images: list[str]) -> Iterator[Callable[..., Fleet]]:
    """Factory of :class:`Fleet` objects on test ports; all of them are torn down (and swept) after the test."""
    fleets: list[Fleet] = []

    def factory(name: str | None = None, **kwargs: object) -> Fleet:
        kwargs.setdefault("base_port", TEST_BASE_PORT)
        kwargs.setdefault("client", docker_client)
        fleet = Fleet(name=name or unique_name(), **kwargs)  # type: ignore[arg-type]
        fleets.append(fleet)
        return fleet

    yield factory
    for fleet in fleets:
        try:
            fleet.down()
        finally:
            sweep(fleet.name, docker_client)


@pytest.fixture(scope="module")
def eng_lab(docker_client: docker.DockerClient, engine_images: list[str]) -> Iterator[EngineLab]:
    """An :class:`engine_testkit.lab.EngineLab` named ``eng-<8 hex>`` on ports 9800-9899 for one module.

    Hand-configured single Engines (extra environment, restart policy, several images in turn on
    one brain volume); everything the lab created is removed (by label) after the module.
    """
    lab = EngineLab(unique_name("eng"), docker_client, ports=ENG_PORTS)
    try:
        yield lab
    finally:
        lab.down()
