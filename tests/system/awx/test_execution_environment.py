# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""execution-environment.yml: `make ee`'s steps run offline and give a build context that holds the collection.

What `make ee` does is done here step by step, in a network namespace of its own when the host allows it (so
nothing can be fetched): the collection tarball, then ``ansible-builder create`` into a temporary context. The
context must hold the tarball (with the collection's meta/execution-environment.yml, requirements.txt and
bindep.txt), the Python and system requirements, and a galaxy requirement that installs that tarball and
nothing else. Then ansible-builder's own introspection script, run on the collection installed from that tarball,
must find the Docker SDK, and system packages only in the Docker hosts' profiles (none the image would install).
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from engine_testkit.ansible import REPO_ROOT

pytestmark = pytest.mark.timeout(180)

BIN = Path(sys.executable).parent
EE_FILE = REPO_ROOT / "execution-environment.yml"
TARBALL = REPO_ROOT / "build" / "ee" / "september-engine.tar.gz"


def offline_prefix() -> list[str]:
    """``unshare -rn`` (no network at all) when this host allows it, else nothing (the env below blocks proxies)."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True, check=False).returncode == 0:
        return [unshare, "-rn"]
    return []


OFFLINE_ENV = {
    "PATH": f"{BIN}:/usr/bin:/bin",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "PIP_NO_INDEX": "1",
    "ANSIBLE_NOCOLOR": "1",
    "HOME": str(REPO_ROOT / "build"),
}


def run(*command: str | Path, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*offline_prefix(), *map(str, command)], cwd=cwd, env=OFFLINE_ENV, capture_output=True, text=True,
        check=False, timeout=120,
    )
    assert proc.returncode == 0, f"{command} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make ee`, offline: the collection tarball in build/ee, then the build context in a temporary folder."""
    out = TARBALL.parent
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    run(BIN / "ansible-galaxy", "collection", "build", "--force", "--output-path", out, REPO_ROOT)
    built = list(out.glob("september-engine-*.tar.gz"))
    assert len(built) == 1, built
    built[0].rename(TARBALL)
    ctx = tmp_path_factory.mktemp("ee") / "context"
    proc = run(BIN / "ansible-builder", "create", "-f", EE_FILE, "-c", ctx, "-v", "3")
    assert "No matches" not in proc.stdout + proc.stderr, proc.stdout
    return ctx


def members(tarball: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(tarball) as tar:
        return {m.name: m for m in tar.getmembers()}


def read_member(tarball: Path, name: str) -> str:
    with tarfile.open(tarball) as tar:
        handle = tar.extractfile(name)
        assert handle is not None, name
        return io.TextIOWrapper(handle, encoding="utf-8").read()


def test_context_holds_the_collection_and_its_requirements(context: Path) -> None:
    build = context / "_build"
    tarball = build / "collections" / "september-engine.tar.gz"
    assert tarball.is_file(), sorted(p.relative_to(context).as_posix() for p in context.rglob("*"))
    names = members(tarball)
    manifest = json.loads(read_member(tarball, "MANIFEST.json"))["collection_info"]
    galaxy = yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text())
    assert (manifest["namespace"], manifest["name"], manifest["version"]) == ("september", "engine", galaxy["version"])
    for needed in ("meta/execution-environment.yml", "meta/runtime.yml", "requirements.txt", "bindep.txt",
                   "playbooks/upgrade.yml", "roles/engine_upgrade/tasks/main.yml", "plugins/modules/engine_lock.py"):
        assert needed in names, f"{needed} is not in the collection tarball"
    assert not any(name.startswith((".venv/", "build/")) for name in names)
    meta = yaml.safe_load(read_member(tarball, "meta/execution-environment.yml"))
    assert meta["dependencies"] == {"python": "requirements.txt", "system": "bindep.txt"}
    # The EE's own requirements are the collection's files, copied as they are.
    assert (build / "requirements.txt").read_text() == (REPO_ROOT / "requirements.txt").read_text()
    assert (build / "bindep.txt").read_text() == (REPO_ROOT / "bindep.txt").read_text()
    assert "docker>=" in (build / "requirements.txt").read_text()
    # Galaxy installs that tarball and nothing else, offline.
    requirements = yaml.safe_load((build / "requirements.yml").read_text())
    assert requirements == {"collections": [{"name": "collections/september-engine.tar.gz", "type": "file"}]}
    containerfile = next(p for p in (context / "Containerfile", context / "Dockerfile") if p.exists()).read_text()
    assert 'ARG EE_BASE_IMAGE="quay.io/ansible/awx-ee:' in containerfile
    assert 'ARG ANSIBLE_GALAXY_CLI_COLLECTION_OPTS="--offline"' in containerfile
    assert "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml" in containerfile
    assert "ansible-core>=2.17,<2.20" in containerfile and "ansible-runner>=2.4" in containerfile


def test_introspection_finds_the_collection_needs(context: Path, tmp_path: Path) -> None:
    """What the image build's builder stage does: install the tarball, then introspect the installed collections."""
    collections = tmp_path / "collections"
    run(BIN / "ansible-galaxy", "collection", "install", "--offline", "-p", collections,
        context / "_build" / "collections" / "september-engine.tar.gz")
    installed = collections / "ansible_collections" / "september" / "engine"
    assert (installed / "meta" / "execution-environment.yml").is_file()
    proc = run(
        sys.executable, context / "_build" / "scripts" / "introspect.py", "introspect", collections,
        f"--user-pip={context / '_build' / 'requirements.txt'}",
        f"--user-bindep={context / '_build' / 'bindep.txt'}",
        f"--write-pip={tmp_path / 'pip.txt'}", f"--write-bindep={tmp_path / 'bindep.txt'}",
    )
    data = yaml.safe_load(proc.stdout.split("---", 1)[1])
    python = data["python"]
    assert any(line.startswith("docker>=") and "september.engine" in line for line in python), python
    assert "docker>=" in (tmp_path / "pip.txt").read_text()
    # System packages: only for the Docker hosts (profiles docker-host, compose). The build's assemble step lists the
    # default profile of what introspection wrote, which must be empty: the EE installs no system package.
    system = data["system"]
    assert any("september.engine" in line for line in system), system
    assert all("docker-host" in line or "compose" in line for line in system), system
    listed = run(BIN / "bindep", "-f", tmp_path / "bindep.txt", "-l", "newline")
    assert listed.stdout.strip() == "", listed.stdout
    docker_host = run(BIN / "bindep", "-f", tmp_path / "bindep.txt", "-l", "newline", "docker-host", "compose")
    assert docker_host.stdout.strip(), "the docker-host and compose profiles list nothing"
