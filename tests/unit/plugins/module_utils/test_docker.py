# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""_docker: the SDK is loaded without paramiko, and ssh:// still gets its transport (and a clear error).

Each case runs in a fresh interpreter: what is imported is the subject, and this one has imported everything.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

pytest.importorskip("paramiko")

PROBE = """
import json, sys
from ansible_collections.september.engine.plugins.module_utils import _docker
from ansible_collections.september.engine.plugins.module_utils._errors import DockerUnavailableError
out = {"paramiko_after_import": "paramiko" in sys.modules, "has_docker": _docker.HAS_DOCKER}
if sys.argv[1] == "client":
    try:
        _docker.docker_client({"docker_host": sys.argv[2] or None, "docker_timeout": 3})
    except DockerUnavailableError as exc:
        out["error"] = str(exc)
    out["paramiko_after_client"] = "paramiko" in sys.modules
    out["adapter"] = getattr(sys.modules["docker.api.client"], "SSHHTTPAdapter", None) is not None
print(json.dumps(out))
"""


def probe(*args: str, docker_host_env: str | None = None) -> dict:
    """Run PROBE: `probe()` imports only; `probe("client", url)` also asks for a client ("" for from_env)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.pop("DOCKER_HOST", None)
    if docker_host_env:
        env["DOCKER_HOST"] = docker_host_env
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *(args or ("import",))],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def closed_port():
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_loading_the_sdk_leaves_paramiko_out():
    out = probe()
    assert out["has_docker"] is True
    assert out["paramiko_after_import"] is False


def test_a_local_socket_does_not_load_paramiko(tmp_path):
    out = probe("client", f"unix://{tmp_path}/no.sock")
    assert "Cannot reach the Docker daemon" in out["error"]
    assert out["paramiko_after_client"] is False


def test_ssh_gets_its_transport_back_and_a_refused_host_a_clear_error(closed_port):
    out = probe("client", f"ssh://nobody@127.0.0.1:{closed_port}")
    assert out["paramiko_after_client"] is True
    assert out["adapter"] is True
    # Without the transport the SDK would say "Install paramiko package"; a refused SSH connection used to escape
    # as a bare OSError with a traceback.
    assert "Install paramiko" not in out["error"]
    assert out["error"].startswith(f"Cannot reach the Docker daemon at ssh://nobody@127.0.0.1:{closed_port}:")


def test_docker_host_from_the_environment_counts_too(closed_port):
    url = f"ssh://nobody@127.0.0.1:{closed_port}"
    assert probe(docker_host_env=url)["paramiko_after_import"] is False
    out = probe("client", "", docker_host_env=url)
    assert out["adapter"] is True
    assert "Install paramiko" not in out["error"]
    assert "Cannot reach the Docker daemon at the local Docker socket (or DOCKER_HOST)" in out["error"]
