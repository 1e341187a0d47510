# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""module_utils/_lock.py: the lock's state machine with a patched clock, on real files."""

from __future__ import annotations

import json
import os
import stat
import threading
import time

import pytest

from ansible_collections.september.engine.plugins.module_utils._errors import LockedError, OptionsError
from ansible_collections.september.engine.plugins.module_utils._identity import slug_of
from ansible_collections.september.engine.plugins.module_utils._lock import (
    STALE_TEMP_SECONDS,
    EngineLock,
    LockKeeper,
    iso,
    lock_argument_spec,
    lock_keeper,
)
from engine_testkit.waits import wait_until

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
    assert content(lock) == {"engine": "sept-u001", "key": "sept-u001", "owner": "alice@laptop", "run_id": "run-a",
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


def test_temporary_files_a_dead_writer_left_are_swept_under_the_flock(lock):
    # A Docker host frozen (or a job killed) between writing the temporary file and renaming it onto the lock.
    os.makedirs(lock.lock_dir, mode=0o700)
    stale = os.path.join(lock.lock_dir, ".sept-u001.lock.dead1.tmp")
    fresh = os.path.join(lock.lock_dir, ".sept-u001.lock.live1.tmp")  # a writer that does not take the flock, now
    other = os.path.join(lock.lock_dir, ".sept-u002.lock.dead2.tmp")  # another Engine's: its own lock sweeps it
    clash = os.path.join(lock.lock_dir, ".sept-u001.lock.x.lock.dead3.tmp")  # Engine "sept-u001.lock.x"'s
    for path in (stale, fresh, other, clash):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("{}")
    old = time.time() - STALE_TEMP_SECONDS - 5
    for path in (stale, other, clash):
        os.utime(path, (old, old))
    lock.acquire("alice", "run-a", 60)
    left = [os.path.basename(fresh), os.path.basename(other), os.path.basename(clash), "sept-u001.lock"]
    assert sorted(os.listdir(lock.lock_dir)) == sorted(left)
    os.utime(fresh, (old, old))
    lock.release("run-a")
    assert sorted(os.listdir(lock.lock_dir)) == sorted([os.path.basename(other), os.path.basename(clash)])


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


# --------------------------------------------------------------------------- keyed by the Engine's identity


def test_two_names_of_one_engine_take_one_lock(tmp_path, clock):
    key = "volume:engine-data-u001"
    first = EngineLock(str(tmp_path), "inventory-a-u001", clock=clock, key=key)
    second = EngineLock(str(tmp_path), "u001.example.org", clock=clock, key=key)
    assert first.path == second.path == str(tmp_path / f"{slug_of(key)}.lock")
    first.acquire("awx job 1", "run-1", 60)
    with pytest.raises(LockedError, match=r"u001\.example\.org \(volume:engine-data-u001\) is locked by awx job 1"):
        second.acquire("alice", "run-2", 60)
    assert content(first) == {"engine": "inventory-a-u001", "key": key, "owner": "awx job 1", "run_id": "run-1",
                              "acquired_at": iso(T0), "expires_at": iso(T0 + 60)}
    # a bind mount: the slug is file-name safe and unique per path
    bind = EngineLock(str(tmp_path), None, clock=clock, key="bind:/srv/engines/u 001/data")
    assert os.path.dirname(bind.path) == str(tmp_path) and "/" not in os.path.basename(bind.path)
    assert bind.engine == "bind:/srv/engines/u 001/data"


@pytest.mark.parametrize("key", ["engine-u001", "volume:", "disk:/x", 42])
def test_keys_that_are_not_identity_keys(tmp_path, key):
    with pytest.raises(OptionsError, match=r"not an Engine identity key|must be a string"):
        EngineLock(str(tmp_path), "name", key=key)


def test_refresh_extends_only_this_runs_lock(lock, clock):
    with pytest.raises(LockedError, match="not held by run run-a: it is free"):
        lock.refresh("alice", "run-a", 60)
    lock.acquire("alice", "run-a", 60)
    clock.now += 50
    plan = lock.refresh("alice", "run-a", 60)
    assert plan["action"] == "refresh" and plan["was_expired"] is False
    assert content(lock)["expires_at"] == iso(T0 + 110) and content(lock)["acquired_at"] == iso(T0)
    clock.now += 200  # expired, nobody took it: still ours to extend
    assert lock.refresh("alice", "run-a", 60)["was_expired"] is True
    with pytest.raises(LockedError, match="is locked by alice \\(run run-a\\)"):
        lock.refresh("bob", "run-b", 60)
    clock.now += 61
    with pytest.raises(LockedError, match="A refresh never takes a lock"):
        lock.refresh("bob", "run-b", 60)
    assert content(lock)["run_id"] == "run-a"
    assert lock.refresh("alice", "run-a", 60, check_mode=True)["action"] == "refresh"


# --------------------------------------------------------------------------- LockKeeper


def test_keeper_refreshes_while_working_and_leaves_a_held_lock_held(tmp_path, clock):
    lk = EngineLock(str(tmp_path), "u001", clock=clock, key="volume:engine-data-u001")
    lk.acquire("awx job 1", "run-1", 3)
    with LockKeeper(lk, "awx job 1", "run-1", 3, interval=0.02) as keeper:
        assert keeper.entry["action"] == "refresh" and not keeper.took_it
        clock.now += 100  # long work: without the keeper the lock would have expired
        seen = keeper.refreshes
        wait_until(lambda: keeper.refreshes >= seen + 2)
        assert content(lk)["expires_at"] == iso(T0 + 103)
        thread = keeper._thread
    assert not thread.is_alive()  # stopped and joined on exit
    assert content(lk)["run_id"] == "run-1" and content(lk)["acquired_at"] == iso(T0)


def test_keeper_takes_a_free_lock_and_releases_it_after(tmp_path):
    lk = EngineLock(str(tmp_path), "u001", key="volume:engine-data-u001")
    with LockKeeper(lk, "awx job 1", "run-1", 60) as keeper:
        assert keeper.took_it and content(lk)["run_id"] == "run-1"
    assert not os.path.exists(lk.path)


def test_keeper_with_release_frees_a_held_lock_only_after_success(tmp_path):
    lk = EngineLock(str(tmp_path), "u001", key="volume:engine-data-u001")
    lk.acquire("awx job 1", "run-1", 60)
    with pytest.raises(RuntimeError), LockKeeper(lk, "awx job 1", "run-1", 60, release=True):
        raise RuntimeError("the finalize failed")
    assert content(lk)["run_id"] == "run-1"  # kept for the run's rollback
    with LockKeeper(lk, "awx job 1", "run-1", 60, release=True) as keeper:
        assert not keeper.took_it
    assert not os.path.exists(lk.path)  # the run's last step on this Engine succeeded


def test_keeper_refuses_a_lock_another_run_holds(tmp_path):
    lk = EngineLock(str(tmp_path), "u001", key="volume:engine-data-u001")
    lk.acquire("awx job 1", "run-1", 60)
    worked = []
    with pytest.raises(LockedError, match="locked by awx job 1"), LockKeeper(lk, "alice", "run-2", 60):
        worked.append(True)
    assert worked == [] and content(lk)["run_id"] == "run-1"


def test_keeper_says_when_the_lock_was_lost_while_working(tmp_path):
    lk = EngineLock(str(tmp_path), "u001", key="volume:engine-data-u001")
    lk.acquire("awx job 1", "run-1", 60)
    with pytest.raises(LockedError, match="lost the lock"), LockKeeper(lk, "awx job 1", "run-1", 60,
                                                                       interval=0.02) as keeper:
        lk.release("run-1", force=True)  # an operator removed it
        wait_until(lambda: keeper.error is not None)
    # an error of the work itself is not hidden behind the lock's
    lk.acquire("awx job 1", "run-1", 60)
    with pytest.raises(RuntimeError, match="the work failed"), LockKeeper(lk, "awx job 1", "run-1", 60,
                                                                          interval=0.02) as keeper:
        lk.release("run-1", force=True)
        wait_until(lambda: keeper.error is not None)
        raise RuntimeError("the work failed")


def test_keeper_in_check_mode_writes_nothing(tmp_path):
    lk = EngineLock(str(tmp_path / "locks"), "u001", key="volume:engine-data-u001")
    with LockKeeper(lk, "alice", "run-1", 60, check_mode=True) as keeper:
        assert keeper.entry["action"] == "acquire" and keeper._thread is None
    assert not os.path.exists(lk.lock_dir)


def test_lock_option_spec_and_factory(tmp_path):
    spec = lock_argument_spec()["lock"]
    assert spec["type"] == "dict" and spec["options"]["key"]["required"] is True
    assert sorted(spec["options"]) == ["dir", "engine", "key", "owner", "release", "run_id", "ttl"]
    with lock_keeper(None) as nothing:
        assert nothing is None
    options = {"dir": str(tmp_path), "key": "volume:engine-data-u001", "engine": None, "run_id": "r", "owner": "o",
               "ttl": 30}
    with lock_keeper(options) as keeper:
        assert isinstance(keeper, LockKeeper) and keeper.interval == 10
        assert content(keeper.lock)["key"] == "volume:engine-data-u001"
