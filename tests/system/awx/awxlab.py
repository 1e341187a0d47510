# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The AWX / Tower tests' lab: a small fleet of real reference Engines (both hosting models) and its jobs.

An :class:`AwxLab` owns one fleet (named ``awx-<8 hex>``, on a network of its own, host ports from 9060 for the
cancelled-job tests and from 9080 for the ansible-runner ones, clear of the other suites), its state and report
folders and its inventory, and runs ``playbooks/upgrade.yml`` against it the way a job would: to its end
(:meth:`AwxLab.run`), or in a session of its own (:meth:`AwxLab.start`) that :func:`kill_job` kills, whole process
tree at once, like a cancelled job. Everything the fleet created is removed by :func:`make_lab` afterwards,
whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker

from engine_testkit import Fleet, sweep
from engine_testkit.ansible import REPO_ROOT, PlaybookRun, ansible_env, ensure_collection_link, run_playbook
from engine_testkit.fleet import Engine, unique_name
from engine_testkit.proctree import kill_tree
from engine_testkit.settings import ANSIBLE_ENV, FORKS, run_vars

PLAYBOOKS = REPO_ROOT / "playbooks"


def kill_job(pid: int) -> set[int]:
    """SIGKILL ``pid`` and every process under it at once, as when AWX cancels a job by removing its container
    (:func:`engine_testkit.proctree.kill_tree`: the tree frozen first, then killed); returns the pids signalled."""
    return kill_tree(pid)


class AwxLab:
    """One test module's fleet, folders and playbook runs."""

    def __init__(self, client: docker.DockerClient, tmp: Path, base_port: int):
        self.client = client
        self.tmp = tmp
        self.state_dir = tmp / "state"
        self.report_dir = tmp / "reports"
        self.inventory_path = tmp / "inventory.yml"
        name = unique_name("awx")
        # A network of its own: the shared engine_net is removed by whichever fleet's teardown finds no container
        # attached to it, and a stopped container (an Engine a killed job left down) does not count as attached.
        self.fleet = Fleet(
            name=name, base_port=base_port, client=client, workdir=tmp / "compose", network=f"{name}-net"
        )
        self.runs = 0
        #: The inventory group engine_canary: the first Engine, so that the tests know the canary.
        self.canaries: list[str] = []

    @property
    def engines(self) -> list[Engine]:
        return list(self.fleet.engines)

    def inventory(self) -> dict[str, Any]:
        """The fleet's inventory, its first Engine in the group engine_canary (the plan's canary)."""
        return self.fleet.inventory(canaries=self.canaries)

    @property
    def api_key(self) -> str:
        return self.fleet.api_key

    def up(self, count: int, version: str) -> list[Engine]:
        """``count`` Engines on ``version``, hosting models alternating (per-user container first, the canary)."""
        self.fleet.up(count, version, model="mixed", wait=False)
        self.fleet.wait_healthy(timeout=90)
        self.canaries = [self.engines[0].engine_id]
        self.fleet.write_inventory(self.inventory_path, canaries=self.canaries)
        return self.engines

    def close(self) -> None:
        try:
            self.fleet.down()
        finally:
            sweep(self.fleet.name, self.client)

    def extra_vars(self, **extra: Any) -> dict[str, Any]:
        return run_vars(self.state_dir, self.report_dir, **extra)

    def _log(self, name: str, text: str) -> Path:
        self.runs += 1
        path = self.tmp / f"run{self.runs:02d}-{name}.out"
        path.write_text(text)
        return path

    def run(self, label: str, **extra: Any) -> PlaybookRun:
        """``playbooks/upgrade.yml`` to its end; the output stays in the test's folder, its tail goes to the log."""
        started = time.monotonic()
        run = run_playbook(
            PLAYBOOKS / "upgrade.yml", extra_vars=self.extra_vars(**extra), inventory=self.inventory_path,
            args=FORKS, env=ANSIBLE_ENV, timeout=600,
        )
        path = self._log(label, run.stdout + "\n" + run.stderr)
        print(f"--- {label}: rc={run.rc} in {time.monotonic() - started:.1f}s ({path})\n{run.stdout[-2500:]}")
        return run

    def start(self, label: str, **extra: Any) -> tuple[subprocess.Popen, Path]:
        """``playbooks/upgrade.yml`` in a new session (its own process group, as a job's), output to a file."""
        ensure_collection_link()
        fd, vars_file = tempfile.mkstemp(suffix=".json", dir=self.tmp)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self.extra_vars(**extra), handle)
        self.runs += 1
        log = self.tmp / f"run{self.runs:02d}-{label}.out"
        command = [
            str(Path(sys.executable).with_name("ansible-playbook")), str(PLAYBOOKS / "upgrade.yml"),
            "-i", str(self.inventory_path), *FORKS, "-e", f"@{vars_file}",
        ]
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                command, env=ansible_env(ANSIBLE_ENV), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        return proc, log

    # ------------------------------------------------------------------ what Docker says

    def containers(self) -> list[Any]:
        """Every container of the fleet, running or not (per-user, kept --previous/--failed, Compose)."""
        return self.client.containers.list(all=True, filters={"label": f"io.september.fleet={self.fleet.name}"})

    def versions(self) -> dict[str, tuple[str, str | None]]:
        """Engine id -> (container status, image version label) of its current container."""
        out = {}
        for engine in self.engines:
            container = engine.container()
            container.reload()
            out[engine.engine_id] = (container.status, engine.image_version())
        return out


@contextlib.contextmanager
def make_lab(client: docker.DockerClient, tmp: Path, base_port: int) -> Iterator[AwxLab]:
    """An :class:`AwxLab` whose fleet is torn down (and swept) on the way out, whatever happened."""
    lab = AwxLab(client, tmp, base_port)
    try:
        yield lab
    finally:
        lab.close()
