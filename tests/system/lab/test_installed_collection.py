# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection as users get it (issue 13, part 5): built with ``ansible-galaxy collection build``, installed with
``ansible-galaxy collection install`` into an empty collections path, and run as ``ansible-playbook
september.engine.upgrade`` (the playbook by its name) from a folder outside the checkout, against the lab: two Docker
hosts over SSH and a local Engine.

Nothing of the checkout is on any path of that run: the environment keeps no ``ANSIBLE_*`` variable of the test
session and no ``PYTHONPATH``; ``ANSIBLE_COLLECTIONS_PATH`` is the test's own folder only (so ``~/.ansible/collections``
and the checkout's ``build/collections`` are not looked at); Ansible's default output (no test callback). The tools
themselves (ansible-galaxy, ansible-playbook) are the virtualenv's, as a user's own installation of ansible-core.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from engine_testkit.ansible import REPO_ROOT
from engine_testkit.pathimport import import_path
from engine_testkit.settings import FAST_VARS, probe_vars
from engine_testkit.webhook import WebhookReceiver

HERE = Path(__file__).resolve().parent


H: Any = import_path("september_lab_rollout_helpers", HERE / "labrollout.py")
pytestmark = pytest.mark.timeout(600)
BIN = Path(sys.executable).parent
TARGET = "2.4.0"


def clean_env(collections: Path) -> dict[str, str]:
    """This process's environment without Ansible settings or PYTHONPATH, with only ``collections`` to look in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_") and k != "PYTHONPATH"}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR="1", ANSIBLE_PIPELINING="True")
    return env


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: int = 540) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    print(
        f"--- {' '.join(Path(a).name if a.startswith('/') else a for a in argv[:4])}: rc={proc.returncode} "
        f"{time.monotonic() - started:.1f}s"
    )
    return proc


def galaxy(*args: str, work: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run([str(BIN / "ansible-galaxy"), "collection", *args], cwd=work, env=env)


def install_collection(dist: Path, collections: Path, work: Path, env: dict[str, str]) -> Path:
    """Build the tarball from the checkout into ``dist``, install it into the empty ``collections`` (never ~/.ansible
    nor a shared one), check that it is a real copy found there; returns the installed collection's root."""
    built = galaxy("build", str(REPO_ROOT), "--output-path", str(dist), work=work, env=env)
    assert built.returncode == 0, built.stdout + built.stderr
    (tarball,) = dist.glob("september-engine-*.tar.gz")
    assert not collections.exists()
    installed = galaxy("install", str(tarball), "-p", str(collections), "--offline", work=work, env=env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    root = collections / "ansible_collections" / "september" / "engine"
    assert root.is_dir() and not root.is_symlink() and (root / "MANIFEST.json").is_file()
    assert not any(p.is_symlink() for p in root.rglob("*")), "the installed collection links into somewhere"
    listed = galaxy("list", "september.engine", work=work, env=env)
    assert listed.returncode == 0 and str(collections / "ansible_collections") in listed.stdout, listed.stdout
    assert "/root/.ansible" not in listed.stdout and str(REPO_ROOT) not in listed.stdout.replace(str(BIN), "")
    return root


def controller_files(std: Any) -> set[Path]:
    """Every file under the controller's state folders (the lab's default one and the local Engine's)."""
    return {p for root in (Path(H.STATE_DIR), std.local_state) if root.exists() for p in root.rglob("*") if p.is_file()}


def write_vars(path: Path, extra: dict[str, Any]) -> Path:
    """The extra vars as a file only its owner reads (they hold the webhook URL)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(extra, handle)
    return path


def assert_ran_only_the_installed_collection(out: str, root: Path) -> None:
    """Its playbook, its roles, its modules: nothing of the checkout (the -vvv output says what was used)."""
    assert "running playbook inside collection september.engine" in out
    assert f"2 plays in {root}/playbooks/upgrade.yml" in out
    modules = set(re.findall(r"Using module file (\S+)", out))
    assert any(m.startswith(f"{root}/plugins/modules/") for m in modules), sorted(modules)[:5]
    strays = sorted(m for m in modules if not m.startswith(f"{root}/") and "/site-packages/ansible/modules/" not in m)
    assert strays == [], f"modules from outside the installed collection: {strays}"
    imported = re.findall(r"statically imported: (\S+)", out)
    assert imported and all(p.startswith(f"{root}/") for p in imported), imported[:5]


def assert_on_the_controller(std: Any, reports: Path, messages: list[dict[str, Any]], end: list[str]) -> Path:
    """Every Engine on the target; the report and the webhook's messages on the controller. Returns the report's
    path."""
    assert H.versions(std) == {e.engine_id: TARGET for e in H.all_engines(std)}
    path, report = H.newest_report(reports)
    assert report["outcome"] == "completed" and report["untouched"] == [] and report["lost"] == [], report["outcome"]
    assert sorted(e["engine"] for e in report["engines"]) == sorted(e.engine_id for e in H.all_engines(std))
    assert {e["status"] for e in report["engines"]} == {"upgraded"}
    (canary,) = [e for e in report["engines"] if e["batch"] == 1]
    assert canary["evidence"] == "pass" and canary["evals"]["before"]["total"] == 8, canary
    assert [m["event"] for m in messages] == ["start", "end"], messages
    assert end[0].startswith(f"All clear: the upgrade to {TARGET} is done on 5 Engines"), end
    return path


def assert_on_each_docker_host(std: Any, locks: Any, run_id: str) -> None:
    """Snapshots and locks on each Engine's own Docker host; no report on a Docker host."""
    for host in std.lab.hosts:
        assert sorted(H.listdir(host, f"{H.STATE_DIR}/snapshots")) == sorted(e.engine_id for e in host.engines)
        for engine in host.engines:
            kinds = {m["kind"] for m in H.manifests(host, engine.engine_id).values()}
            assert kinds == {"pre-upgrade"}, kinds
        # Each Engine's lock (named after its brain's volume) held on its own host during the run, and released.
        assert locks.on_host[host.name] == {f"{e.volume}.lock" for e in host.engines}, locks.on_host
        assert H.held_locks(host) == []
        assert H.reports_on_host(host, run_id) == []


def assert_no_lab_state_on_the_controller(std: Any, locks: Any, before: set[Path]) -> None:
    """The local Engine's snapshot and lock on the controller, none of a lab Engine's."""
    (local,) = std.local.engines
    assert sorted(p.name for p in (std.local_state / "snapshots").iterdir()) == [local.engine_id]
    lab_marks = {e.engine_id for e in std.lab.engines} | {e.volume for e in std.lab.engines}
    assert not [p for p in controller_files(std) - before if any(m in str(p) for m in lab_marks)]
    assert f"{local.volume}.lock" in locks.on_controller, locks.on_controller
    assert not {f"{e.volume}.lock" for e in std.lab.engines} & locks.on_controller, locks.on_controller


def test_installed_collection_upgrades_the_lab(standard_lab: Any, tmp_path: Path) -> None:
    std = standard_lab
    std.lab.load_images([TARGET])
    dist, collections, work, reports = (tmp_path / d for d in ("dist", "collections", "work", "reports"))
    work.mkdir()
    assert REPO_ROOT not in work.resolve().parents and REPO_ROOT not in collections.parents
    env = clean_env(collections)
    root = install_collection(dist, collections, work, env)

    # Upgrade the lab by the playbook's name, from a folder outside the checkout.
    inventory = H.write_inventory(std, work / "inventory.yml")
    controller_before = controller_files(std)
    lock_dirs = [Path(H.STATE_DIR) / "locks", std.local_state / "locks"]
    with WebhookReceiver() as hook, H.LockWatcher(std.lab.hosts, lock_dirs) as locks:
        extra = {
            **FAST_VARS,
            **probe_vars(8, 8),
            "engine_target_version": TARGET,
            "engine_rollout_stages": "1,100%",
            "engine_report_dir": str(reports),
            "engine_webhook_url": hook.url,
        }
        vars_file = write_vars(work / "vars.json", extra)
        upgrade = run(
            [
                str(BIN / "ansible-playbook"),
                "september.engine.upgrade",
                "-i",
                str(inventory),
                "-e",
                f"@{vars_file}",
                "-f",
                "20",
                "-vvv",
            ],
            cwd=work,
            env=env,
        )
        vars_file.unlink()
        (tmp_path / "upgrade.out").write_text(upgrade.stdout + "\n--- stderr\n" + upgrade.stderr)
        print(upgrade.stdout[-3000:])
        messages = list(hook.messages)
        end = hook.texts("end")
    assert upgrade.returncode == 0, upgrade.stdout[-4000:] + upgrade.stderr[-2000:]

    # It ran the installed collection, and only it: its playbook, its roles, its modules.
    assert_ran_only_the_installed_collection(upgrade.stdout, root)
    # What it did, read on each side: every Engine on 2.4.0, the report and the webhook on the controller...
    path = assert_on_the_controller(std, reports, messages, end)
    # ...snapshots and locks on each Engine's own Docker host, none of a lab Engine on the controller, no report on
    # a Docker host.
    assert_on_each_docker_host(std, locks, path.parent.name)
    assert_no_lab_state_on_the_controller(std, locks, controller_before)
    # The key and the webhook URL are nowhere in that -vvv output.
    for secret in (std.lab.api_key, hook.url, hook.token):
        assert secret not in upgrade.stdout and secret not in upgrade.stderr
