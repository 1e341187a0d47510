# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """How the modules reach the Docker engine (private fragment, paired with module_utils/_docker.py)."""

    DOCUMENTATION = r"""
options:
  docker_host:
    description:
      - The Docker daemon to talk to, as the Docker SDK for Python takes it, for example
        C(unix:///var/run/docker.sock) or C(tcp://127.0.0.1:2376).
      - When not set, the environment decides as for the C(docker) CLI (E(DOCKER_HOST), E(DOCKER_TLS_VERIFY),
        E(DOCKER_CERT_PATH)), falling back to the local socket.
      - The brain is read and written through the Docker host's file system, so the module must run on the
        Docker host itself (the managed node).
    type: str
  docker_api_version:
    description: Docker API version to use; C(auto) negotiates with the daemon.
    type: str
    default: auto
  docker_timeout:
    description: Timeout in seconds for a Docker API call.
    type: int
    default: 60
  docker_tls:
    description: Connect to O(docker_host) over TLS.
    type: bool
    default: false
  docker_tls_verify:
    description: Verify the daemon's TLS certificate (implies O(docker_tls)).
    type: bool
    default: false
  docker_ca_path:
    description: CA certificate to verify the daemon with.
    type: path
  docker_client_cert:
    description: Client certificate for TLS client authentication.
    type: path
  docker_client_key:
    description: Client key for TLS client authentication.
    type: path
requirements:
  - Docker SDK for Python >= 7.0 (C(docker)) on the managed node
"""
