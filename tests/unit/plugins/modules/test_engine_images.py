# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The engine_images module as a whole (options, check mode, diff, warnings, the one error path), against the
in-memory Docker of tests/unit/plugins/module_utils/test_images.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ansible_collections.september.engine.plugins.modules import engine_images

_SPEC = importlib.util.spec_from_file_location(
    "engine_images_fakes", Path(__file__).resolve().parents[1] / "module_utils" / "test_images.py"
)
fakes = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fakes)

R = fakes.R
SEVEN = fakes.SEVEN


@pytest.fixture
def fake(monkeypatch):
    d = fakes.FakeDocker()
    monkeypatch.setattr(engine_images, "docker_client", lambda params: d)
    return d


def test_defaults_keep_five_and_report(fake, run_module):
    fakes.versions(fake, *SEVEN)
    out = run_module(engine_images, {"repositories": [R]})
    assert not out["failed"], out
    assert out["changed"] is True
    assert out["images"][R]["removed"] == [f"{R}:2.3.1", f"{R}:2.3.0"]
    assert len(out["images"][R]["kept"]) == 5
    assert set(out["images"][R]) == {"kept", "removed", "protected", "skipped", "refused"}
    assert "diff" not in out


def test_check_mode_with_diff_removes_nothing(fake, run_module):
    fakes.versions(fake, *SEVEN)
    fake.container("u1--previous", 1, state="exited")
    out = run_module(engine_images, {"repositories": [R], "keep": 5}, check=True, diff=True)
    assert out["changed"] is True
    assert out["images"][R]["removed"] == [f"{R}:2.3.1"]
    assert out["images"][R]["protected"][0]["why"] == "kept previous container(s) for a rollback: u1--previous (exited)"
    assert out["diff"]["before"][R] == sorted(f"{R}:{v}" for v in SEVEN)
    assert f"{R}:2.3.1" not in out["diff"]["after"][R]
    assert fake.api.removals == [] and len(fake.api.imgs) == 7


def test_second_run_changes_nothing(fake, run_module):
    fakes.versions(fake, *SEVEN)
    assert run_module(engine_images, {"repositories": [R], "keep": 3})["changed"] is True
    out = run_module(engine_images, {"repositories": [R], "keep": 3}, diff=True)
    assert out["changed"] is False
    assert out["images"][R]["removed"] == []
    assert out["diff"]["before"] == out["diff"]["after"]


def test_a_refusal_is_a_warning_not_a_failure(fake, run_module):
    fakes.versions(fake, *SEVEN)
    fake.api.refuse[f"{R}:2.3.0"] = "conflict: image is being used"
    out = run_module(engine_images, {"repositories": [R]})
    assert not out["failed"]
    assert out["images"][R]["refused"][0]["ref"] == f"{R}:2.3.0"
    assert any("was not removed" in w for w in out["warnings"])


def test_bad_options_fail_with_the_one_error_path(fake, run_module):
    out = run_module(engine_images, {"repositories": ["engine:2.3.0"]})
    assert out["failed"] and "names one image; give the repository only (engine)" in out["msg"]
    out = run_module(engine_images, {"repositories": [R], "keep": 0})
    assert out["failed"] and "keep at least 1" in out["msg"]


def test_docker_unreachable_fails_clearly(fake, run_module):
    fake.api.down = True
    out = run_module(engine_images, {"repositories": [R]})
    assert out["failed"] and out["msg"].startswith("Could not list the images")


def test_protect_option_reaches_the_plan(fake, run_module):
    fakes.versions(fake, *SEVEN)
    out = run_module(engine_images, {"repositories": [R], "protect": [f"{R}:2.3.0", f"{R}:2.3.1"]})
    assert out["changed"] is False
    assert [p["ref"] for p in out["images"][R]["protected"]] == [f"{R}:2.3.1", f"{R}:2.3.0"]
