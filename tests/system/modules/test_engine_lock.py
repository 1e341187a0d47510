# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""engine_lock through real ansible-playbook runs: the state machine, an expired takeover, and a real race.

The lock is a file on the Docker host; no Engine container is needed. Engine ids are ``cmp-<8 hex>``.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import uuid
from pathlib import Path

import pytest

from engine_testkit.ansible import PlaybookRun, run_playbook

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"


@pytest.fixture
def lock_vars(tmp_path) -> dict:
    return {
        "lock_dir": str(tmp_path / "var" / "locks"),
        "lock_engine": f"cmp-{uuid.uuid4().hex[:8]}",
        "lock_owner": "awx job 42",
        "lock_run": uuid.uuid4().hex,
        "other_owner": "alice@laptop",
        "other_run": uuid.uuid4().hex,
    }


def play(name: str, **extra) -> PlaybookRun:
    run = run_playbook(PLAYBOOKS / name, extra_vars=extra)
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-2000:]
    return run


def test_take_refresh_refuse_release(lock_vars):
    run = play("engine_lock.yml", **lock_vars)
    path = Path(run.result("Take the lock")["lock"]["path"])
    assert path == Path(lock_vars["lock_dir"]) / f"{lock_vars['lock_engine']}.lock"
    assert stat.S_IMODE(os.stat(lock_vars["lock_dir"]).st_mode) == 0o700
    assert not path.exists()
    assert os.listdir(lock_vars["lock_dir"]) == []


def test_expired_lock_is_taken_over(lock_vars):
    run = play("engine_lock_takeover.yml", **lock_vars)
    path = Path(run.result("Take the expired lock from another run")["lock"]["path"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert set(data) == {"engine", "owner", "run_id", "acquired_at", "expires_at"}
    assert (data["owner"], data["run_id"]) == (lock_vars["other_owner"], lock_vars["other_run"])
    assert "Took over the expired lock" in run.stdout + run.stderr


@pytest.mark.parametrize("contenders", [2, 4])
def test_concurrent_runs_exactly_one_wins(lock_vars, contenders):
    runs: dict[int, PlaybookRun] = {}
    barrier = threading.Barrier(contenders)

    def contender(i: int) -> None:
        barrier.wait()
        runs[i] = run_playbook(
            PLAYBOOKS / "engine_lock_acquire.yml",
            extra_vars=dict(lock_vars, lock_owner=f"contender {i}", lock_run=f"run-{i}"),
        )

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, r in runs.items() if r.rc == 0]
    assert len(winners) == 1, {i: r.stdout[-1500:] for i, r in runs.items()}
    winner = winners[0]
    path = Path(lock_vars["lock_dir"]) / f"{lock_vars['lock_engine']}.lock"
    assert json.loads(path.read_text())["run_id"] == f"run-{winner}"
    for i, r in runs.items():
        if i != winner:
            failed = r.result("Take the lock")
            assert failed["failed"] is True
            assert f"is locked by contender {winner} (run run-{winner})" in failed["msg"]
