# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The post-rollback filters: the release gate over several Docker hosts, and the filter wrappers."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.september.engine.plugins.filter.postmortem import FilterModule
from ansible_collections.september.engine.plugins.module_utils._release_record import make_entry

FILTERS = FilterModule().filters()


def entry(engine, release="2.4.1", acknowledged=None):
    found = make_entry(
        release,
        engine=engine,
        identity=None,
        run_id="r1",
        reason="verify: health: 503",
        now=1777860850.0,
        docker_host=f"docker-{engine}",
    )
    return dict(found, acknowledged=acknowledged)


def info(*entries):
    return {"changed": False, "release_record": {"entries": list(entries)}}


def test_the_gate_refuses_when_any_docker_host_recorded_the_release() -> None:
    looped = {"results": [info(), info(entry("u2"), entry("u3", release="2.4.2")), {"skipped": True}]}
    reports = info(entry("u9", acknowledged={"reason": "old"}))
    gate = FILTERS["release_gate"]([looped, reports], "2.4.1")
    assert gate["refuse"] and gate["pending"] == 1
    assert gate["message"].startswith("release 2.4.1 was rolled back once: on u2 (Docker host docker-u2)")
    assert len(gate["entries"]) == 2  # the other release's entry is not counted
    assert FILTERS["release_gate"](looped, "2.4.1", True, "")["refuse"]  # allowed without a reason
    allowed = FILTERS["release_gate"](looped, "2.4.1", True, "root cause fixed")
    assert not allowed["refuse"] and allowed["acknowledge"] and allowed["reason"] == "root cause fixed"
    clean = FILTERS["release_gate"](looped, "2.4.0")
    assert clean["refuse"] is False and clean["message"] == "" and clean["entries"] == []
    assert not FILTERS["release_gate"]([entry("u5", acknowledged={"reason": "x"})], "2.4.1")["refuse"]
    # One rollback seen on its Docker host and in a run report is one; acknowledged in either place, it is answered.
    host, report = entry("u6"), dict(entry("u6"), docker_host=None, source="/r/upgrade.json")
    assert "rolled back once" in FILTERS["release_gate"]([info(host), info(report)], "2.4.1")["message"]
    answered = dict(report, acknowledged={"reason": "fixed"})
    assert not FILTERS["release_gate"]([info(host), info(answered)], "2.4.1")["refuse"]


def test_the_postmortem_filters_need_the_diagnostics_record() -> None:
    with pytest.raises(AnsibleFilterError, match="postmortem_draft"):
        FILTERS["postmortem_draft"]("not a record")
    with pytest.raises(AnsibleFilterError, match="regression_eval_case"):
        FILTERS["regression_eval_case"](["a list"])
    assert FILTERS["postmortem_draft"]({"engine": "u1", "to_version": "2.4.1"}).startswith("# Postmortem draft: 2.4.1")


def test_one_reader_per_docker_host_and_state_folder() -> None:
    hostvars = {
        "u1": {"ansible_connection": "local"},
        "u2": {"ansible_connection": "local"},
        "u3": {"ansible_connection": "local", "engine_state_dir": "/srv/state"},
        "r1": {"ansible_host": "10.0.0.7", "engine_upgrade_state_dir": "/data/se"},
        "r2": {"ansible_host": "10.0.0.7", "engine_upgrade_state_dir": "/data/se", "engine_state_dir": "/other"},
    }
    assert FILTERS["release_record_readers"](["u1", "u2", "u3", "r1", "r2"], hostvars) == [
        {"engine": "u1", "docker_host": "localhost", "state_dir": "/var/lib/september-engine"},
        {"engine": "u3", "docker_host": "localhost", "state_dir": "/srv/state"},
        {"engine": "r1", "docker_host": "10.0.0.7", "state_dir": "/data/se"},
    ]
