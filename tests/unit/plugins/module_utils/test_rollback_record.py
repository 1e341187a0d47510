# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""engine_rollback's end: a Compose Engine back on its release and healthy is recorded as verified (defect D3: a
rolled-back Compose Engine could never be upgraded again), and relative folders are refused first (defect D7)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ansible_collections.september.engine.plugins.module_utils import _rollback
from ansible_collections.september.engine.plugins.module_utils._errors import ComposeFileError, OptionsError
from ansible_collections.september.engine.plugins.module_utils._rollback import Rollback, check_options


def rollback(monkeypatch, deployment: str, healthy: bool, fail: Exception | None = None):
    module = SimpleNamespace(params={"deployment": deployment}, check_mode=False, notes=[])
    done = Rollback(module, client=None)
    calls = []

    def compose(state, image=None):
        calls.append(state)
        if fail is not None:
            raise fail
        return {"changed": True, "compose": {"actions": ["mark the switch verified"]}}

    monkeypatch.setattr(_rollback, "resolve_engine", lambda client, params: {"container": "c1"})
    monkeypatch.setattr(done, "_health", lambda: {"is_healthy": healthy})
    monkeypatch.setattr(done, "_compose", compose)
    return done, calls


@pytest.mark.parametrize(
    ("deployment", "healthy", "finalized"),
    [
        ("compose", True, ["finalized"]),
        ("compose", False, []),  # not healthy: the record stays unverified, the next upgrade's health gate says so
        ("container", True, []),  # a per-user container keeps no switch record
    ],
)
def test_a_healthy_compose_rollback_is_recorded_as_verified(monkeypatch, deployment, healthy, finalized) -> None:
    done, calls = rollback(monkeypatch, deployment, healthy)
    assert done._finish({})["healthy"] is healthy
    assert calls == finalized


def test_a_record_that_cannot_be_written_is_a_warning_not_a_failed_rollback(monkeypatch) -> None:
    done, calls = rollback(monkeypatch, "compose", True, ComposeFileError("Cannot write x: No space left on device"))
    assert done._finish({})["healthy"] is True and calls == ["finalized"]
    assert any("No space left" in warning and "not marked verified" in warning for warning in done.warnings)


BASE = {
    "restore_brain": "auto",
    "drain_timeout": 10,
    "health_timeout": 30,
    "healthy_streak": 2,
    "snapshot_dir": "/var/lib/september-engine/snapshots/u1",
    "lock": None,
}


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"snapshot_dir": "state/snapshots/u1"}, ["snapshot_dir='state/snapshots/u1'"]),
        ({"lock": {"dir": "state/locks"}}, ["lock.dir='state/locks'"]),
        ({"snapshot_dir": "s", "lock": {"dir": "l"}}, ["snapshot_dir='s'", "lock.dir='l'"]),
    ],
)
def test_relative_folders_are_refused_before_anything(change: dict, names: list) -> None:
    with pytest.raises(OptionsError) as info:
        check_options(dict(BASE, **change))
    assert all(name in info.value.msg for name in names), info.value.msg
    assert "must be an absolute path on the Docker host, e.g. /var/lib/september-engine" in info.value.msg


def test_absolute_folders_pass() -> None:
    check_options(dict(BASE, lock={"dir": "/var/lib/september-engine/locks"}))
