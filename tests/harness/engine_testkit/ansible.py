# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run real `ansible-playbook` against the collection from tests, and read what each task returned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
COLLECTIONS_PATH = REPO_ROOT / "build" / "collections"
CALLBACK_PLUGINS = Path(__file__).resolve().parents[1] / "callback_plugins"


def ensure_collection_link() -> Path:
    """build/collections/ansible_collections/september/engine -> the repository (what `make collection` does)."""
    link = COLLECTIONS_PATH / "ansible_collections" / "september" / "engine"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink() or link.resolve() != REPO_ROOT:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(REPO_ROOT)
    return link


def ansible_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_PATH),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_HOST_KEY_CHECKING="False",
        ANSIBLE_RETRY_FILES_ENABLED="False",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
    )
    env.update(extra or {})
    return env


@dataclass
class PlaybookRun:
    """The outcome of one ansible-playbook run: exit code, output, and the recorded task results."""

    rc: int
    stdout: str
    stderr: str
    data: dict | None

    def task_results(self, task_name: str, host: str | None = None) -> list[dict]:
        """Every result of the task(s) named `task_name` (one per host), in order."""
        found = []
        for play in (self.data or {}).get("plays", []):
            for task in play.get("tasks", []):
                if task["task"]["name"] != task_name:
                    continue
                for name, result in task.get("hosts", {}).items():
                    if host is None or name == host:
                        found.append(result)
        return found

    def result(self, task_name: str, host: str | None = None) -> dict:
        results = self.task_results(task_name, host)
        if len(results) != 1:
            raise AssertionError(
                f"expected one result of task {task_name!r}, got {len(results)}\n{self.stdout[-3000:]}"
            )
        return results[0]

    @property
    def stats(self) -> dict:
        return (self.data or {}).get("stats", {})


def run_playbook(
    playbook: str | Path,
    extra_vars: dict | None = None,
    inventory: str | Path | None = None,
    check: bool = False,
    diff: bool = False,
    limit: str | None = None,
    env: dict | None = None,
    timeout: int = 900,
    args: list[str] | None = None,
) -> PlaybookRun:
    """ansible-playbook with the test_results callback; extra vars go through a temp file (keys stay off argv)."""
    ensure_collection_link()
    command = [str(Path(sys.executable).with_name("ansible-playbook")), str(playbook)]
    command += ["-i", str(inventory) if inventory else "localhost,"]
    if check:
        command.append("--check")
    if diff:
        command.append("--diff")
    if limit:
        command += ["--limit", limit]
    command += args or []
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(extra_vars or {}, handle)
        vars_file = handle.name
    os.chmod(vars_file, 0o600)
    results_fd, results_file = tempfile.mkstemp(suffix=".results.json")
    os.close(results_fd)
    command += ["-e", f"@{vars_file}"]
    if not inventory:
        command += ["-e", "ansible_connection=local"]
    try:
        proc = subprocess.run(
            command,
            env=ansible_env(
                {
                    "ANSIBLE_STDOUT_CALLBACK": "test_results",
                    "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_PLUGINS),
                    "SEPTEMBER_TEST_RESULTS": results_file,
                    **(env or {}),
                }
            ),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        with open(results_file, encoding="utf-8") as handle:
            text = handle.read()
        data = json.loads(text) if text.strip() else None
    finally:
        os.unlink(vars_file)
        os.unlink(results_file)
    return PlaybookRun(rc=proc.returncode, stdout=proc.stdout, stderr=proc.stderr, data=data)
