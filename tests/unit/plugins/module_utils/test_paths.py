# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Folders later runs must find again are absolute (defect D7): the helper, and the managers that use it."""

from __future__ import annotations

import pytest

from ansible_collections.september.engine.plugins.module_utils import _preflight
from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError
from ansible_collections.september.engine.plugins.module_utils._lock import EngineLock, lock_keeper
from ansible_collections.september.engine.plugins.module_utils._paths import relative_paths, require_absolute
from ansible_collections.september.engine.plugins.module_utils._preflight import Preflight
from ansible_collections.september.engine.plugins.module_utils._snapshot_store import SnapshotStore

MESSAGE = "must be an absolute path on the Docker host, e.g. /var/lib/september-engine"


def test_relative_paths_are_named_and_none_is_fine() -> None:
    assert relative_paths({"a": "/srv/x", "b": None, "c": "", "d": "x/y", "e": "./z"}) == ["d='x/y'", "e='./z'"]
    require_absolute({"dest": "/var/lib/september-engine/snapshots", "lock.dir": None})
    with pytest.raises(
        OptionsError,
        match=r"^dest='snaps': must be an absolute path on the Docker host, e\.g\. "
        r"/var/lib/september-engine .*Nothing was changed\.$",
    ):
        require_absolute({"dest": "snaps"})
    with pytest.raises(OptionsError, match=r"^a='x', b='y': each must be"):
        require_absolute({"a": "x", "b": "y"})


def test_a_lock_in_a_relative_folder_is_refused_before_the_folder_is_made(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OptionsError, match="lock_dir='locks': " + MESSAGE):
        EngineLock("locks", "u1")
    keeper_options = {"dir": "state/locks", "key": "volume:engine-data-u1", "owner": "me", "run_id": "r1"}
    with pytest.raises(OptionsError, match=r"lock\.dir='state/locks': " + MESSAGE):
        lock_keeper(keeper_options)
    assert list(tmp_path.iterdir()) == []


def test_a_snapshot_folder_must_be_absolute(tmp_path) -> None:
    assert SnapshotStore(str(tmp_path)).dest == str(tmp_path)
    with pytest.raises(OptionsError, match="dest='snapshots/u1': " + MESSAGE):
        SnapshotStore("snapshots/u1")
    with pytest.raises(OptionsError, match="snapshot_dir='s': " + MESSAGE):
        SnapshotStore("s", option="snapshot_dir")


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ({"lock": {"dir": "state/locks", "owner": "me", "run_id": "r1"}}, "lock.dir='state/locks'"),
        ({"snapshot": {"dest": "state/snapshots/u1"}}, "snapshot.dest='state/snapshots/u1'"),
    ],
)
def test_the_preflight_refuses_relative_folders_before_it_looks_at_the_engine(monkeypatch, spec, named) -> None:
    def never(client, params):
        raise AssertionError("the Engine was looked up")

    monkeypatch.setattr(_preflight, "resolve_engine", never)
    with pytest.raises(OptionsError, match=f"{named}: {MESSAGE}"):
        Preflight({"inventory_name": "u1", "target_version": "2.4.0", **spec}, client=None).run()
