# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""How the modules reach Docker: one argument spec (paired with doc_fragments/_docker.py) and one client."""

from __future__ import annotations

import os
import sys
import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.september.engine.plugins.module_utils._errors import (
    DockerUnavailableError,
    NotFoundError,
)
from ansible_collections.september.engine.plugins.module_utils._image_ref import image_tag


def _import_sdk_without_paramiko():
    """Import the Docker SDK, leaving out its paramiko-based SSH transport.

    The SDK imports paramiko whenever it is installed, for ssh:// hosts only: about 0.08 CPU-s of each module call,
    and a rollout makes some ten module calls per Engine. The modules nearly always talk to a local socket, so the
    transport is loaded only when a client asks for ssh:// (_load_ssh_transport). A paramiko already imported is
    left alone.
    """
    blocked = "paramiko" not in sys.modules
    if blocked:
        sys.modules["paramiko"] = None  # `import paramiko` raises ImportError, which the SDK expects and skips
    try:
        import docker  # noqa: PLC0415  # pylint: disable=import-outside-toplevel
    finally:
        if blocked and sys.modules.get("paramiko", False) is None:
            del sys.modules["paramiko"]
    return docker


try:
    docker = _import_sdk_without_paramiko()
    from docker.errors import DockerException, ImageNotFound, NotFound
    from requests.exceptions import RequestException

    HAS_DOCKER = True
    DOCKER_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised through missing_required_lib
    HAS_DOCKER = False
    DOCKER_IMPORT_ERROR = traceback.format_exc()

    class DockerException(Exception):  # type: ignore[no-redef]
        """Stand-in so that except clauses stay valid without the SDK."""

    class RequestException(Exception):  # type: ignore[no-redef]
        """Stand-in for requests' base exception."""

    NotFound = ImageNotFound = DockerException  # type: ignore[misc]

# What a Docker API call can raise: the SDK's errors (DockerException), and those of its HTTP layer
# (RequestException: a read timeout during a long stop). Callers catch both, written out (pylint follows a tuple
# written in the except clause, not one kept in a constant).


def docker_argument_spec() -> dict:
    """Options of doc_fragments/_docker.py."""
    return dict(
        docker_host=dict(type="str"),
        docker_api_version=dict(type="str", default="auto"),
        docker_timeout=dict(type="int", default=60),
        docker_tls=dict(type="bool", default=False),
        docker_tls_verify=dict(type="bool", default=False),
        docker_ca_path=dict(type="path"),
        docker_client_cert=dict(type="path"),
        docker_client_key=dict(type="path"),
    )


def check_docker_sdk(module) -> None:
    """Fail the standard way when the Docker SDK for Python is missing on the managed node."""
    if not HAS_DOCKER:
        module.fail_json(
            msg=missing_required_lib("docker (Docker SDK for Python >= 7.0)"), exception=DOCKER_IMPORT_ERROR
        )


def _load_ssh_transport() -> tuple:
    """Give the SDK back the SSH transport _import_sdk_without_paramiko left out; returns what SSH can raise.

    The SDK's APIClient looks SSHHTTPAdapter up in its own module when it meets an ssh:// base URL; without paramiko
    it raises its own DockerException ("Install paramiko package to enable ssh:// support"), as it would anyway.
    A host that refuses the connection raises OSError; paramiko's own failures (authentication, host key) its
    SSHException.
    """
    try:
        from docker.transport.sshconn import SSHHTTPAdapter  # noqa: PLC0415  # pylint: disable=import-outside-toplevel
        from paramiko import SSHException  # noqa: PLC0415  # pylint: disable=import-outside-toplevel
    except ImportError:
        return (OSError,)
    sys.modules["docker.api.client"].SSHHTTPAdapter = SSHHTTPAdapter
    return (OSError, SSHException)


def docker_client(params: dict):
    """A connected DockerClient, or DockerUnavailableError saying how to fix the connection."""
    version = params.get("docker_api_version") or "auto"
    timeout = params.get("docker_timeout") or 60
    ssh_errors: tuple = ()
    if (params.get("docker_host") or os.environ.get("DOCKER_HOST") or "").startswith("ssh://"):
        ssh_errors = _load_ssh_transport()
    try:
        if params.get("docker_host"):
            tls = None
            if params.get("docker_tls") or params.get("docker_tls_verify"):
                client_cert = None
                if params.get("docker_client_cert") or params.get("docker_client_key"):
                    client_cert = (params.get("docker_client_cert"), params.get("docker_client_key"))
                tls = docker.tls.TLSConfig(
                    client_cert=client_cert,
                    ca_cert=params.get("docker_ca_path"),
                    verify=params.get("docker_ca_path") if params.get("docker_tls_verify") else False,
                )
            client = docker.DockerClient(base_url=params["docker_host"], version=version, timeout=timeout, tls=tls)
        else:
            client = docker.from_env(version=version, timeout=timeout)
        client.ping()
    except (DockerException, RequestException, *ssh_errors) as exc:
        where = params.get("docker_host") or "the local Docker socket (or DOCKER_HOST)"
        raise DockerUnavailableError(
            f"Cannot reach the Docker daemon at {where}: {exc}. Is Docker running on this host, "
            "and may this user use it (root, or the docker group)? Set docker_host to reach another daemon."
        ) from exc
    return client


def get_container(client, name: str):
    """The container called or identified by `name`, or NotFoundError."""
    try:
        return client.containers.get(name)
    except NotFound as exc:
        raise NotFoundError(
            f"No container named or identified by '{name}' on this Docker host: check the 'container' option "
            "(docker ps -a lists them)."
        ) from exc


def get_image(client, ref: str):
    """The local image `ref`, or NotFoundError (nothing is pulled here)."""
    try:
        return client.images.get(ref)
    except ImageNotFound as exc:
        raise NotFoundError(
            f"Image '{ref}' is not present on this Docker host: pull or build it first "
            f"(docker pull {ref}), or fix the image reference."
        ) from exc


def image_version(image, label: str = "org.opencontainers.image.version") -> str | None:
    """The release an image carries: its version label, else the tag of its first reference."""
    labels = (image.attrs.get("Config") or {}).get("Labels") or {}
    if labels.get(label):
        return labels[label]
    for ref in image.tags or []:
        tag = image_tag(ref)
        if tag:
            return tag
    return None
