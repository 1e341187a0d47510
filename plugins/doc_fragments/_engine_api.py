# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """How the modules reach an Engine over HTTP (private fragment, paired with module_utils/_engine_api.py)."""

    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the Engine's HTTP API, for example C(http://127.0.0.1:9001); paths such as C(/health) are
        added to it.
      - When not set, it is derived from the container (O(container)) through the Docker API, from where it
        publishes the Engine's port C(8000/tcp) on the host; a binding on all interfaces (C(0.0.0.0)) is reached
        on C(127.0.0.1).
      - User name and password in the URL are never returned.
    type: str
  api_key:
    description:
      - The Engine's API key, sent as the C(X-Engine-Key) header to every endpoint that needs it.
      - A secret; never logged nor returned. C(GET /health) does not need it.
    type: str
  validate_certs:
    description:
      - Verify the Engine's TLS certificate for an C(https://) O(url).
      - Set to V(false) only on hosts you control, for tests.
    type: bool
    default: true
  ca_path:
    description: PEM bundle of the CA certificates to verify the Engine's certificate with (instead of the system's).
    type: path
  timeout:
    description:
      - Seconds one request may take before it counts as failed.
    type: float
    default: 10
  use_proxy:
    description:
      - Honour the proxy environment variables (E(https_proxy), E(http_proxy), E(no_proxy)).
      - Set to V(false) when a proxy is configured that cannot reach the Engines.
    type: bool
    default: true
"""
