# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The engine_release_info module as a whole: the record on a Docker host and the run reports, read only."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.september.engine.plugins.module_utils._release_record import ReleaseRecord, make_entry
from ansible_collections.september.engine.plugins.modules import engine_release_info
from engine_testkit.module_runner import ExitJson, FailJson


def run(args, expect=ExitJson):
    with patch_module_args(args), pytest.raises(expect) as info:
        engine_release_info.main()
    return info.value.args[0]


def record(state, release="2.4.1", engine="u001", reason="verify: health: 503") -> None:
    ReleaseRecord(str(state)).record(
        make_entry(
            release,
            engine=engine,
            identity=f"volume:{engine}",
            run_id="r1",
            reason=reason,
            now=1777860850.0,
            docker_host="docker-a",
        )
    )


def test_a_release_rolled_back_on_the_host_is_reported_with_the_refusal_it_would_get(tmp_path) -> None:
    record(tmp_path)
    record(tmp_path, release="2.4.2", engine="u002")
    found = run({"release": "2.4.1", "state_dir": str(tmp_path)})["release_record"]
    assert found["is_rolled_back"] and found["pending"] == 1 and [e["engine"] for e in found["entries"]] == ["u001"]
    assert found["message"].startswith("release 2.4.1 was rolled back once: on u001 (Docker host docker-a)")
    assert found["paths"] == [str(tmp_path / "rolled-back-releases")]
    every = run({"state_dir": str(tmp_path)})
    assert every["changed"] is False and sorted(e["release"] for e in every["release_record"]["entries"]) == [
        "2.4.1",
        "2.4.2",
    ]
    assert every["release_record"]["message"] == ""  # no release asked: no refusal to say
    clean = run({"release": "2.4.0", "state_dir": str(tmp_path / "nothing")})["release_record"]
    assert clean["entries"] == [] and not clean["is_rolled_back"]
    assert not (tmp_path / "nothing").exists()  # read only


def test_the_reports_count_too_and_a_corrupt_record_fails_clearly(tmp_path) -> None:
    (tmp_path / "reports" / "r1").mkdir(parents=True)
    (tmp_path / "reports" / "r1" / "rollback.json").write_text(
        json.dumps(
            {
                "run_id": "r1",
                "written_at": "2026-05-04T02:15:00Z",
                "engines": [{"engine": "u003", "rolled_back": True, "from_version": "2.4.1", "reason": "requested"}],
            }
        )
    )
    found = run({"release": "2.4.1", "report_dir": str(tmp_path / "reports")})["release_record"]
    assert found["is_rolled_back"] and found["entries"][0]["engine"] == "u003"
    assert "(report " in found["message"]
    folder = tmp_path / "state" / "rolled-back-releases"
    folder.mkdir(parents=True)
    (folder / "2.4.1.json").write_text("[]")
    failed = run({"release": "2.4.1", "state_dir": str(tmp_path / "state")}, expect=FailJson)
    assert "cannot be read" in failed["msg"] and str(folder / "2.4.1.json") in failed["msg"]
    assert "Give state_dir" in run({"release": "2.4.1"}, expect=FailJson)["msg"]
