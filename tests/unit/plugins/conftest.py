# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ansible_collections.september.engine.plugins.module_utils._brain import BrainLocation
from ansible_collections.september.engine.plugins.module_utils._restore import check_restore
from ansible_collections.september.engine.plugins.module_utils._snapshot_store import SnapshotStore
from ansible_collections.september.engine.plugins.module_utils._snapshot_take import take_snapshot
from engine_testkit.bad_window import make_brain, migrate, write_turns

MIGRATIONS = dict(migrations_source="table", migrations_table="engine_schema_migrations", migrations_column="version")


@pytest.fixture
def bad_window(tmp_path):
    """The real sequence up to a rollback's restore: ``bad_window(upto=6, turns=6)``.

    A brain of 2.3.x (tmp_path/data/brain.sqlite, migrations up to 5, 6 turns) snapshotted as pre-upgrade-2.3.0 in
    tmp_path/snaps; then 2.4.x migrates it up to ``upto`` and writes ``turns`` turns (the bad window). Returns
    ``store``, ``plan`` (the restore of the snapshot, checked), ``identity``, ``written`` (the bad window's rows),
    ``brain``, ``folder`` and ``key``.
    """

    def scene(upto: int = 6, turns: int = 6) -> SimpleNamespace:
        folder = tmp_path / "data"
        folder.mkdir()
        brain = make_brain(folder / "brain.sqlite", 5)
        write_turns(brain, 6, seed=1)
        key = f"bind:{folder}"
        identity = dict(key=key, slug="data", container=None)
        store = SnapshotStore(str(tmp_path / "snaps"))
        entry = take_snapshot(store, brain, "pre-upgrade-2.3.0", verify="quick",
                              fields=dict(reason="pre-upgrade 2.3.0 -> 2.4.2", kind="pre-upgrade", engine=identity),
                              migrations=MIGRATIONS, min_free_bytes=0, warnings=[], actions=[], key=key, slug="data")
        migrate(brain, upto)
        written = write_turns(brain, turns, seed=2)
        plan = check_restore(store, BrainLocation(path=brain, source="path"), entry, identity=identity, client=None)
        return SimpleNamespace(store=store, plan=plan, identity=identity, written=written, brain=brain,
                               folder=str(folder), key=key)

    return scene


class FakeTime:
    """``time.monotonic`` and ``time.sleep`` without sleeping: the clock moves only when something sleeps."""

    def __init__(self, now: float):
        self.now = now
        self.sleeps: list = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time(monkeypatch):
    """``fake_time(module, now=1000.0)``: the ``time`` a module imported, replaced by a FakeTime (returned)."""

    def patch(module, now: float = 1000.0) -> FakeTime:
        fake = FakeTime(now)
        monkeypatch.setattr(module, "time", fake)
        return fake

    return patch
