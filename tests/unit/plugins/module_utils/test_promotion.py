# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A rollout paused after its canary, found again by the run that promotes or aborts it (_promotion), and the
outcome and message of a paused run (_rollout)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError
from ansible_collections.september.engine.plugins.module_utils._promotion import (
    abort_report,
    action_of,
    check_promotion,
    find_paused,
    paused_record,
)
from ansible_collections.september.engine.plugins.module_utils._rollout import rollout_message, rollout_outcome


def report(run_id: str, outcome: str, target: str = "2.4.0", written: str = "2026-12-05T10:00:00Z") -> dict:
    return {
        "run_id": run_id, "target_version": target, "outcome": outcome, "written_at": written,
        "engines": [
            {"engine": "u1", "batch": 1, "status": "upgraded", "from_version": "2.3.0"},
            {"engine": "u9", "batch": 1, "status": "failed", "from_version": "2.3.0"},
            {"engine": "u2", "batch": 2, "status": "upgraded", "from_version": "2.3.0"},
        ],
    }


def write(folder: Path, data: dict, mtime: float | None = None) -> None:
    (folder / data["run_id"]).mkdir(parents=True)
    path = folder / data["run_id"] / "upgrade.json"
    path.write_text(json.dumps(data))
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def test_the_record_of_a_report_names_the_upgraded_canaries_and_where_they_came_from() -> None:
    assert paused_record(report("r1", "awaiting_promotion")) == {
        "run_id": "r1", "target_version": "2.4.0", "canaries": [{"engine": "u1", "from_version": "2.3.0"}]}
    artifact = {"run_id": "r2", "target_version": "2.4.0", "outcome": "awaiting_promotion",
                "canaries": [{"engine": "u5", "from_version": "2.3.1"}]}
    assert paused_record(artifact)["canaries"] == [{"engine": "u5", "from_version": "2.3.1"}]


def test_the_newest_report_of_the_target_is_the_paused_run(tmp_path: Path) -> None:
    write(tmp_path, report("old", "awaiting_promotion", written="2026-12-01T10:00:00Z"))
    write(tmp_path, report("new", "awaiting_promotion", written="2026-12-05T10:00:00Z"))
    write(tmp_path, report("other", "completed", target="3.0.0", written="2026-12-06T10:00:00Z"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "upgrade.json").write_text("{not json")
    assert find_paused(str(tmp_path), "2.4.0")["run_id"] == "new"
    assert find_paused(str(tmp_path), "2.4.0", run_id="old")["run_id"] == "old"


def test_nothing_paused_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match=r"no report of a rollout to 2\.4\.0 in .*nothing awaits promotion"):
        find_paused(str(tmp_path), "2.4.0")
    write(tmp_path, report("r1", "awaiting_promotion", written="2026-12-01T10:00:00Z"))
    write(tmp_path, report("r2", "completed", written="2026-12-02T10:00:00Z"))
    with pytest.raises(OptionsError, match=r"run r2, written 2026-12-02T10:00:00Z\) says 'completed'"):
        find_paused(str(tmp_path), "2.4.0")  # already promoted: a second promotion changes nothing
    with pytest.raises(OptionsError, match="Nothing was changed"):
        find_paused(str(tmp_path / "missing"), "2.4.0")


def test_an_awx_artifact_of_a_paused_run_is_taken_before_the_reports(tmp_path: Path) -> None:
    artifact = {"run_id": "awx-7", "target_version": "2.4.0", "outcome": "awaiting_promotion",
                "canaries": [{"engine": "u3", "from_version": "2.3.0"}]}
    assert find_paused(str(tmp_path), "2.4.0", artifact=artifact)["run_id"] == "awx-7"
    # An artifact of another target, or of a run that did not pause, is not it.
    with pytest.raises(OptionsError):
        find_paused(str(tmp_path), "2.5.0", artifact=artifact)
    with pytest.raises(OptionsError):
        find_paused(str(tmp_path), "2.4.0", artifact=dict(artifact, outcome="completed"))


def test_a_promotion_needs_the_same_canaries() -> None:
    paused = {"run_id": "r1", "target_version": "2.4.0", "canaries": [{"engine": "u1", "from_version": "2.3.0"}]}
    assert check_promotion(paused, ["u1"]) == []
    (problem,) = check_promotion(paused, ["u4"])
    assert "canary batch (u4) is not the paused run's canaries (u1, run r1)" in problem
    assert action_of(True, False) == "promote" and action_of(False, True) == "abort" and action_of(False, False) == \
        "upgrade"


def test_the_abort_report_marks_each_canary_unwound_or_failed() -> None:
    paused = {"run_id": "r1", "target_version": "2.4.0",
              "canaries": [{"engine": "u1", "from_version": "2.3.0"}, {"engine": "u7", "from_version": "2.3.0"}]}
    out = abort_report(report("r1", "awaiting_promotion"), paused,
                       {"u1": {"kind": "image+brain", "to_version": "2.3.0"}, "u7": None}, "2026-12-05T11:00:00Z")
    assert out["outcome"] == "aborted" and out["stopped"] is True and out["written_at"] == "2026-12-05T11:00:00Z"
    by = {e["engine"]: e for e in out["engines"]}
    assert by["u1"]["status"] == "unwound" and by["u1"]["rollback_kind"] == "image+brain"
    assert by["u7"]["status"] == "rollback_failed" and by["u7"]["batch"] == 1  # not in the report: added
    assert by["u2"]["status"] == "upgraded"  # not a canary: untouched
    minimal = abort_report(None, paused, {"u1": {"kind": "image"}, "u7": {"kind": "image"}}, "t")
    assert minimal["plan"]["canaries"][0]["engine"] == "u1" and minimal["batches_run"] == 1
    message = rollout_message(out, "/r/upgrade.md")
    assert message.startswith("ABORTED by the operator after the canary: the upgrade to 2.4.0 (run r1): u1 unwound; "
                              "u7 rollback failed.")


def test_a_paused_canary_batch_awaits_promotion_and_says_how_to_go_on() -> None:
    results = [{"engine": "u1", "batch": 1, "status": "upgraded"}]
    out = rollout_outcome(results, ["u1"], 1, 3, pause=True)
    assert out["outcome"] == "awaiting_promotion" and out["stopped"] is False
    assert rollout_outcome(results, ["u1"], 1, 3)["outcome"] == "in_progress"
    assert rollout_outcome(results, ["u1"], 1, 1, pause=True)["outcome"] == "completed"  # nothing left to promote
    failed = [{"engine": "u1", "batch": 1, "status": "rolled_back", "evidence": "fail"}]
    assert rollout_outcome(failed, ["u1"], 1, 3, pause=True)["outcome"] == "stopped_rolled_back"
    text = rollout_message({"target_version": "2.4.0", "run_id": "r1", "outcome": "awaiting_promotion",
                            "engines": [{"engine": "u1", "status": "upgraded"}], "untouched": ["u2", "u3"]}, "/r.md")
    assert text.startswith("PAUSED: the canary of the upgrade to 2.4.0 passed (run r1): u1 on 2.4.0, 2 Engines to go.")
    assert "engine_rollout_promote=true" in text and "engine_rollout_abort=true" in text
