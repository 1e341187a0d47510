# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The engine_images module as a whole (options, check mode, diff, warnings, the one error path), against the
in-memory Docker of tests/unit/plugins/module_utils/test_images.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.september.engine.plugins.modules import engine_images
from engine_testkit.module_runner import ExitJson, FailJson

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


def run(args, check=False, diff=False):
    if check:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    warned = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AnsibleModule, "warn", lambda self, message: warned.append(message))
        with patch_module_args(args):
            with pytest.raises((ExitJson, FailJson)) as info:
                engine_images.main()
    result = info.value.args[0]
    result["failed"] = info.type is FailJson
    result["warnings"] = warned
    return result


def test_defaults_keep_five_and_report(fake):
    fakes.versions(fake, *SEVEN)
    out = run({"repositories": [R]})
    assert not out["failed"], out
    assert out["changed"] is True
    assert out["images"][R]["removed"] == [f"{R}:2.3.1", f"{R}:2.3.0"]
    assert len(out["images"][R]["kept"]) == 5
    assert set(out["images"][R]) == {"kept", "removed", "protected", "skipped", "refused"}
    assert "diff" not in out


def test_check_mode_with_diff_removes_nothing(fake):
    fakes.versions(fake, *SEVEN)
    fake.container("u1--previous", 1, state="exited")
    out = run({"repositories": [R], "keep": 5}, check=True, diff=True)
    assert out["changed"] is True
    assert out["images"][R]["removed"] == [f"{R}:2.3.1"]
    assert out["images"][R]["protected"][0]["why"] == "kept previous container(s) for a rollback: u1--previous (exited)"
    assert out["diff"]["before"][R] == sorted(f"{R}:{v}" for v in SEVEN)
    assert f"{R}:2.3.1" not in out["diff"]["after"][R]
    assert fake.api.removals == [] and len(fake.api.imgs) == 7


def test_second_run_changes_nothing(fake):
    fakes.versions(fake, *SEVEN)
    assert run({"repositories": [R], "keep": 3})["changed"] is True
    out = run({"repositories": [R], "keep": 3}, diff=True)
    assert out["changed"] is False
    assert out["images"][R]["removed"] == []
    assert out["diff"]["before"] == out["diff"]["after"]


def test_a_refusal_is_a_warning_not_a_failure(fake):
    fakes.versions(fake, *SEVEN)
    fake.api.refuse[f"{R}:2.3.0"] = "conflict: image is being used"
    out = run({"repositories": [R]})
    assert not out["failed"]
    assert out["images"][R]["refused"][0]["ref"] == f"{R}:2.3.0"
    assert any("was not removed" in w for w in out["warnings"])


def test_bad_options_fail_with_the_one_error_path(fake):
    out = run({"repositories": ["engine:2.3.0"]})
    assert out["failed"] and "names one image; give the repository only (engine)" in out["msg"]
    out = run({"repositories": [R], "keep": 0})
    assert out["failed"] and "keep at least 1" in out["msg"]


def test_docker_unreachable_fails_clearly(fake):
    fake.api.down = True
    out = run({"repositories": [R]})
    assert out["failed"] and out["msg"].startswith("Could not list the images")


def test_protect_option_reaches_the_plan(fake):
    fakes.versions(fake, *SEVEN)
    out = run({"repositories": [R], "protect": [f"{R}:2.3.0", f"{R}:2.3.1"]})
    assert out["changed"] is False
    assert [p["ref"] for p in out["images"][R]["protected"]] == [f"{R}:2.3.1", f"{R}:2.3.0"]
