# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""module_utils/_lock.py: the lock's state machine with a patched clock, on real files."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest

from ansible_collections.september.engine.plugins.module_utils._errors import LockedError, OptionsError
from ansible_collections.september.engine.plugins.module_utils._lock import EngineLock, iso

T0 = 1_800_000_000.0


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def lock(tmp_path, clock):
    return EngineLock(str(tmp_path / "locks"), "sept-u001", clock=clock)


def content(lock):
    with open(lock.path, encoding="utf-8") as handle:
        return json.load(handle)


def test_acquire_creates_dir_0700_and_file_0600(lock):
    plan = lock.acquire("alice@laptop", "run-a", 60)
    assert plan["action"] == "acquire" and plan["before"] is None
    assert stat.S_IMODE(os.stat(lock.lock_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(lock.path).st_mode) == 0o600
    assert content(lock) == {"engine": "sept-u001", "owner": "alice@laptop", "run_id": "run-a",
                             "acquired_at": iso(T0), "expires_at": iso(T0 + 60)}
    assert os.listdir(lock.lock_dir) == ["sept-u001.lock"]  # no temporary file left


def test_same_run_refreshes_keeps_acquired_at(lock, clock):
    lock.acquire("alice", "run-a", 60)
    clock.now += 30
    plan = lock.acquire("alice", "run-a", 60)
    assert plan["action"] == "refresh"
    assert content(lock)["acquired_at"] == iso(T0) and content(lock)["expires_at"] == iso(T0 + 90)


def test_other_run_is_refused_with_owner_until_expiry(lock, clock):
    lock.acquire("awx job 42", "42", 60)
    clock.now += 59
    with pytest.raises(LockedError) as info:
        lock.acquire("alice", "run-b", 60)
    msg = info.value.msg
    assert "Engine sept-u001 is locked by awx job 42 (run 42)" in msg
    assert iso(T0) in msg and iso(T0 + 60) in msg and lock.path in msg
    assert content(lock)["run_id"] == "42"


def test_expired_lock_is_taken_over(lock, clock):
    lock.acquire("awx job 42", "42", 60)
    clock.now += 60
    plan = lock.acquire("alice", "run-b", 10)
    assert plan["action"] == "take_over"
    before = plan["before"]
    assert (before.owner, before.run_id, before.expires_at) == ("awx job 42", "42", iso(T0 + 60))
    assert content(lock)["run_id"] == "run-b" and content(lock)["expires_at"] == iso(T0 + 70)


def test_check_mode_predicts_and_writes_nothing(lock, clock):
    assert lock.acquire("alice", "run-a", 60, check_mode=True)["action"] == "acquire"
    assert not os.path.exists(lock.lock_dir)
    lock.acquire("bob", "run-b", 60)
    with pytest.raises(LockedError):
        lock.acquire("alice", "run-a", 60, check_mode=True)
    clock.now += 61
    assert lock.acquire("alice", "run-a", 60, check_mode=True)["action"] == "take_over"
    assert content(lock)["run_id"] == "run-b"
    assert lock.release("run-b", check_mode=True)["action"] == "release"
    assert os.path.exists(lock.path)


def test_release(lock):
    assert lock.release("run-a")["action"] == "not_held"  # the directory does not even exist
    lock.acquire("alice", "run-a", 60)
    assert lock.release("run-b")["action"] == "refused"
    assert os.path.exists(lock.path)
    assert lock.release("run-a")["action"] == "release"
    assert not os.path.exists(lock.path)
    assert lock.release("run-a")["action"] == "not_held"
    lock.acquire("alice", "run-a", 60)
    assert lock.release("run-b", force=True)["action"] == "release"


def test_unreadable_lock_is_held_for_a_grace_time_then_expired(lock, clock):
    os.makedirs(lock.lock_dir)
    with open(lock.path, "w", encoding="utf-8") as handle:
        handle.write("")
    clock.now = os.stat(lock.path).st_mtime + 5
    with pytest.raises(LockedError, match="unreadable"):
        lock.acquire("alice", "run-a", 60)
    clock.now += 60
    assert lock.acquire("alice", "run-a", 60)["action"] == "take_over"


@pytest.mark.parametrize("engine", ["", "../etc", "a/b", ".hidden", "x" * 201, "a b"])
def test_engine_names_that_cannot_be_files(tmp_path, engine):
    with pytest.raises(OptionsError, match="cannot name a lock file"):
        EngineLock(str(tmp_path), engine)


def test_threads_racing_exactly_one_wins(tmp_path):
    winners, losers = [], []
    barrier = threading.Barrier(8)

    def contender(i):
        lk = EngineLock(str(tmp_path / "locks"), "sept-u002")
        barrier.wait()
        try:
            lk.acquire(f"owner {i}", f"run-{i}", 60)
            winners.append(i)
        except LockedError:
            losers.append(i)

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and len(losers) == 7
