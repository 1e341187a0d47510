# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The inventory plugin september.engine.engines on the lab: two real Docker hosts, read through their Docker APIs.

Lab host h1 runs Compose v2 (when the image has the plugin), h2 Compose v1 only; each has a per-user Engine and a
Compose project, publishing on 127.0.0.1:9001/9002 of its own loopback. The plugin reads each host's daemon through
its API (``tcp://127.0.0.1:<port>`` of this machine, as an operator would use ``tcp://docker1:2376``); Ansible
reaches the hosts over SSH. Tested: ``ansible-inventory --list`` (and ``--export``, as AWX runs it) gives one host
per Engine with the variables the lab's hand-written inventory has, ``health.yml`` on that inventory reports all
four healthy over SSH, a paused lab host (its Docker API frozen) is a warning within the time limit while the other
host's Engines are listed, and a cached discovery is used while that host is frozen.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from engine_testkit.ansible import REPO_ROOT, ansible_env, ensure_collection_link, run_playbook
from engine_testkit.dockerhosts import SSH_COMMON_ARGS, DockerLab
from engine_testkit.fleet import BASELINE_VERSION, unique_name

PLAYBOOKS = REPO_ROOT / "playbooks"
#: The discovery's time limit per Docker host in these tests (a frozen host costs this much).
TIMEOUT = 4

pytestmark = pytest.mark.timeout(400)


def ansible_inventory(config: Path, *args: str, env: dict | None = None) -> tuple[int, dict | None, str, float]:
    """``ansible-inventory -i <config> --list [args]``: exit status, the JSON, its output, seconds taken."""
    ensure_collection_link()
    command = [str(Path(sys.executable).with_name("ansible-inventory")), "-i", str(config), "--list", *args]
    started = time.monotonic()
    proc = subprocess.run(command, env=ansible_env(env), capture_output=True, text=True, timeout=120, check=False)
    data = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None
    return proc.returncode, data, proc.stdout + proc.stderr, time.monotonic() - started


def role_results(run, name: str) -> dict:
    return {
        host: result
        for play in (run.data or {}).get("plays", [])
        for task in play.get("tasks", [])
        if task["task"]["name"].split(" : ", 1)[-1] == name
        for host, result in task["hosts"].items()
    }


def lab_config(lab: DockerLab, path: Path, *, over_ssh: bool = False, **options) -> Path:
    """What an operator writes for these hosts: the Docker API URL, the SSH details, and vars for every Engine."""
    config = {
        "plugin": "september.engine.engines",
        "docker_hosts": [
            {
                "name": host.name,
                "docker_host": (
                    f"ssh://root@127.0.0.1:{host.ssh_port}" if over_ssh else f"tcp://127.0.0.1:{host.docker_port}"
                ),
                "ansible_host": "127.0.0.1",
                "ansible_port": host.ssh_port,
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(lab.key_file),
                "vars": {
                    "ansible_ssh_common_args": SSH_COMMON_ARGS,
                    "ansible_control_path_dir": str(lab.control_path_dir),
                    "ansible_python_interpreter": "/usr/bin/python3",
                },
            }
            for host in lab.hosts
        ],
        # the lab's Engine ids already name their host (lab-<lab>-h1-u001)
        "hostname_template": "{{ engine_id }}",
        "timeout": TIMEOUT,
        **options,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def lab(docker_client, lab_image, engine_images, tmp_path_factory):
    """2 lab hosts (h1 Compose v2 when available, h2 Compose v1) x (a per-user Engine + a Compose project)."""
    tmp = tmp_path_factory.mktemp("inv-lab")
    lab = DockerLab(unique_name("li"), tmp / "lab", client=docker_client)
    try:
        lab.up(2, compose_v2=[True, False])
        lab.load_images([BASELINE_VERSION])
        for host in lab.hosts:
            lab.add_engines(host, 2, BASELINE_VERSION, model="mixed")
        yield lab
    finally:
        lab.down()


def test_one_host_per_engine_with_the_variables_of_the_hand_written_inventory(lab, tmp_path):
    config = lab_config(lab, tmp_path / "lab.engines.yml")
    rc, data, output, seconds = ansible_inventory(config)
    print(f"ansible-inventory over {len(lab.hosts)} lab hosts: {seconds:.1f}s")
    assert rc == 0, output
    assert "WARNING" not in output, output
    hostvars = data["_meta"]["hostvars"]
    assert sorted(hostvars) == sorted(e.engine_id for e in lab.engines)
    for engine in lab.engines:
        want = {k: v for k, v in lab.host_vars(engine).items() if k != "engine_api_key"}
        got = hostvars[engine.engine_id]
        assert {k: got.get(k) for k in want} == want, engine.engine_id
        assert got["engine_version"] == BASELINE_VERSION
        assert got["engine_url"].startswith("http://127.0.0.1:900")  # the lab host's own loopback
        if engine.model == "compose":
            cdir = str(engine.compose_dir)
            assert got["engine_compose_project"] == engine.compose_project
            assert got["engine_compose_files"] == [f"{cdir}/docker-compose.yml"]
            # the env file when Compose recorded one (v2 given --env-file); else the modules take the folder's .env
            recorded = engine.container().labels.get("com.docker.compose.project.environment_file")
            assert got.get("engine_compose_env_file") == recorded, engine.host.name
    for host in lab.hosts:
        group = f"docker_host_{host.name.replace('-', '_')}"
        assert sorted(data[group]["hosts"]) == sorted(e.engine_id for e in host.engines)
    assert sorted(data["engines_compose"]["hosts"]) == sorted(e.engine_id for e in lab.engines if e.model == "compose")
    assert sorted(data["engine_version_2_3_0"]["hosts"]) == sorted(e.engine_id for e in lab.engines)
    assert lab.api_key not in output

    # AWX imports an inventory source with --export: the same hosts and variables
    rc, exported, output, _seconds = ansible_inventory(config, "--export")
    assert rc == 0, output
    assert exported["_meta"]["hostvars"] == hostvars
    assert "__ansible_unsafe" not in output  # plain values, as AWX stores them

    # the playbooks over SSH on that inventory: every Engine found on its own Docker host, healthy
    run = run_playbook(PLAYBOOKS / "health.yml", inventory=config)
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
    lines = {host: result["msg"] for host, result in role_results(run, "Health | Engine").items()}
    assert lines == {e.engine_id: f"{e.engine_id}: {BASELINE_VERSION} healthy" for e in lab.engines}
    found = role_results(run, "Health | Find the Engine")
    for engine in lab.engines:
        assert found[engine.engine_id]["engine"]["container_id"] == engine.container().id
    summary = next(iter(role_results(run, "Health | Fleet summary").values()))["msg"]
    assert summary.startswith("4 Engines, 4 healthy"), summary


def test_a_frozen_docker_host_is_a_warning_and_the_cache_keeps_what_was_found(lab, tmp_path):
    h1, h2 = lab.hosts
    cache = tmp_path / "cache"
    cached = lab_config(
        lab,
        tmp_path / "cached.engines.yml",
        cache=True,
        cache_plugin="ansible.builtin.jsonfile",
        cache_connection=str(cache),
        cache_timeout=600,
    )
    plain_config = lab_config(lab, tmp_path / "plain.engines.yml")
    rc, before, output, _seconds = ansible_inventory(cached)  # fills the cache
    assert rc == 0 and len(before["_meta"]["hostvars"]) == 4, output
    assert list(cache.iterdir())
    with h2.unreachable("pause"):  # its dockerd and sshd frozen: connections hang
        rc, data, output, seconds = ansible_inventory(plain_config)
        assert rc == 0, output
        assert sorted(data["_meta"]["hostvars"]) == sorted(e.engine_id for e in h1.engines)
        assert f"Docker host {h2.name} (tcp://127.0.0.1:{h2.docker_port}):" in output, output
        assert "its Engines are not in the inventory" in output
        assert seconds < TIMEOUT + 15, seconds  # the frozen host costs its time limit, not a hang
        # the cached discovery answers without asking the frozen host
        rc, data, output, seconds = ansible_inventory(cached)
        assert rc == 0, output
        assert data["_meta"]["hostvars"] == before["_meta"]["hostvars"]
        assert "WARNING" not in output, output
        assert seconds < TIMEOUT, seconds


def test_docker_apis_over_ssh(lab, tmp_path):
    """``ssh://`` Docker URLs: the Docker SDK runs the controller's ssh client (``docker system dial-stdio`` on the
    host). Its options come from where a user keeps them (``~/.ssh/config``); here from an ``ssh`` earlier in PATH
    that adds the lab key and skips host-key bookkeeping, then runs the real client."""
    try:
        import paramiko  # noqa: F401
    except ImportError:
        pytest.fail("ssh:// Docker URLs need paramiko on the controller: add docker[ssh] to requirements-dev.txt")
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "ssh").write_text(
        "#!/bin/sh\n"
        f"exec /usr/bin/ssh -i {lab.key_file} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no"
        ' -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=5 "$@"\n'
    )
    (shim / "ssh").chmod(0o755)
    env = {"PATH": f"{shim}:{os.environ['PATH']}"}
    rc, over_tcp, output, _seconds = ansible_inventory(lab_config(lab, tmp_path / "tcp.engines.yml"))
    assert rc == 0, output
    rc, over_ssh, output, seconds = ansible_inventory(
        lab_config(lab, tmp_path / "ssh.engines.yml", over_ssh=True), env=env
    )
    print(f"ansible-inventory over ssh:// to {len(lab.hosts)} lab hosts: {seconds:.1f}s")
    assert rc == 0, output
    assert "WARNING" not in output, output
    assert over_ssh["_meta"]["hostvars"] == over_tcp["_meta"]["hostvars"]
    assert len(over_ssh["_meta"]["hostvars"]) == 4
    for host in lab.hosts:
        assert "Accepted publickey for root" in host.exec(["cat", "/var/log/sshd.log"]).stdout


def paramiko_home(lab: DockerLab, home: Path) -> Path:
    """A HOME whose ~/.ssh gives the Docker SDK's paramiko client the lab key and the lab hosts' host keys."""
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700, parents=True)
    (ssh / "config").write_text(f"Host 127.0.0.1\n  IdentityFile {lab.key_file}\n")
    keys = [
        subprocess.run(
            ["ssh-keyscan", "-T", "10", "-p", str(host.ssh_port), "127.0.0.1"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        for host in lab.hosts
    ]
    (ssh / "known_hosts").write_text("".join(keys))
    return home


def engine_info(docker_host: str, container_name: str, env: dict) -> subprocess.CompletedProcess:
    """``ansible localhost -m september.engine.engine_info`` for a per-user container on `docker_host`."""
    ensure_collection_link()
    args = {"deployment": "container", "container_name": container_name, "docker_host": docker_host}
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible")),
            "localhost",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            "-m",
            "september.engine.engine_info",
            "-a",
            json.dumps(args),
            "-o",
        ],
        env=ansible_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_modules_reach_a_docker_host_over_ssh(lab, tmp_path):
    """A module given ``docker_host: ssh://...`` talks to that host's daemon through the SDK's paramiko transport.

    The modules load the Docker SDK without paramiko (it costs each module call about 0.08 CPU-s) and give the SDK
    its SSH transport back when the host is ``ssh://``: here each lab host's per-user Engine is found through it, and
    an SSH port that refuses is one clear error, not a traceback.
    """
    env = {"HOME": str(paramiko_home(lab, tmp_path / "home"))}
    for engine in (e for e in lab.engines if e.model == "container"):
        proc = engine_info(f"ssh://root@127.0.0.1:{engine.host.ssh_port}", engine.container_name, env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(proc.stdout.split(" => ", 1)[1])
        assert result["engine"]["container_id"] == engine.container().id
        assert result["engine"]["version"] == BASELINE_VERSION
        assert "Accepted publickey for root" in engine.host.exec(["cat", "/var/log/sshd.log"]).stdout

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    proc = engine_info(f"ssh://root@127.0.0.1:{closed}", "engine-u001", env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"Cannot reach the Docker daemon at ssh://root@127.0.0.1:{closed}" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
