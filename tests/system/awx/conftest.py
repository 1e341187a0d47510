# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the AWX / Tower tests; their lab (fleet, jobs, kill) is in ``awxlab.py``."""

from __future__ import annotations

import docker
import pytest


@pytest.fixture(scope="module")
def awx_images(docker_client: docker.DockerClient, engine_images: list[str]) -> list[str]:
    missing = [tag for tag in ("2.3.0", "2.3.1", "2.4.0", "2.4.1") if tag not in engine_images]
    if missing:
        pytest.fail(f"images engine:{', engine:'.join(missing)} not found: run `make images`", pytrace=False)
    return engine_images
