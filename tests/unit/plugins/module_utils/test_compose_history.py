# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a Compose Engine's last recorded switch leaves to do, and a switch left "in progress" settled by what runs."""

from __future__ import annotations

import pytest

from ansible_collections.september.engine.plugins.module_utils._compose_history import (
    last_switch,
    needs_resume,
    settle,
    way_back,
)

UP = {"action": "present", "from": "engine:2.3.0", "to": "engine:2.4.0"}
BACK = {"action": "rolled_back", "from": "engine:2.4.0", "to": "engine:2.3.0"}


def switch(base: dict, result: str, verified: bool | None = False) -> dict:
    entry = dict(base, result=result)
    if verified is not None:
        entry["verified"] = verified
    return entry


@pytest.mark.parametrize(
    ("last", "running", "image", "resume"),
    [
        ({}, True, "engine:2.3.0", False),
        (switch(UP, "ok", None), True, "engine:2.4.0", False),  # an older record: verified
        (switch(UP, "ok", True), True, "engine:2.4.0", False),
        (switch(UP, "ok"), True, "engine:2.4.0", True),  # switched, never verified
        (switch(UP, "in progress"), False, "engine:2.3.0", True),  # a run died mid-switch, the Engine down
        (switch(UP, "in progress"), True, "engine:2.4.0", True),
        (switch(UP, "in progress"), True, "engine:2.3.0", False),  # the switch never happened: upgrade it
        (switch(UP, "up failed, previous setting restored"), True, "engine:2.3.0", False),
        (switch(UP, "up failed, previous setting restored"), False, "engine:2.3.0", True),  # still down: bring it back
        (switch(BACK, "ok"), True, "engine:2.3.0", False),  # a finished rollback (D3)
        (switch(BACK, "ok"), False, "engine:2.3.0", False),  # down: the health gate says so
        (switch(BACK, "ok", True), True, "engine:2.3.0", False),
        (switch(BACK, "in progress"), True, "engine:2.4.0", True),  # a rollback a run left half done
        (switch(BACK, "in progress"), True, "engine:2.3.0", False),
        (switch(BACK, "up failed, previous setting restored"), True, "engine:2.4.0", True),
    ],
)
def test_what_the_last_switch_leaves_to_do(last, running, image, resume) -> None:
    assert needs_resume(last, running, image) is resume


def test_the_way_back_of_an_upgrade_and_of_a_rollback() -> None:
    assert way_back(UP) == "engine:2.3.0" and way_back(BACK) == "engine:2.3.0"
    assert last_switch(None) == {} and last_switch({"history": [UP, BACK]}) == BACK


def entry(last: dict) -> dict:
    """A service's record right after engine_compose wrote its attempt (what it writes again with the result)."""
    if last["action"] == "rolled_back":
        fields = dict(
            image="engine:2.3.0",
            image_id="sha256:230",
            previous_image="engine:2.3.0",
            previous_image_id="sha256:230",
            rolled_back_from="engine:2.4.0",
        )
    else:
        fields = dict(
            image="engine:2.4.0", image_id="sha256:240", previous_image="engine:2.3.0", previous_image_id="sha256:230"
        )
    return dict(fields, version=fields["image"].split(":")[1], history=[switch(UP, "ok", True), last])


def test_nothing_to_settle_unless_a_switch_is_in_progress_and_what_runs_is_one_of_its_ends() -> None:
    assert settle(entry(switch(UP, "ok")), "engine:2.4.0", "sha256:240", "t") is None
    assert settle({}, "engine:2.4.0", "sha256:240", "t") is None
    assert settle(entry(switch(UP, "in progress")), "engine:2.5.0", "sha256:250", "t") is None


def test_an_upgrade_that_got_there_is_ok_and_still_to_be_verified() -> None:
    done = settle(entry(switch(UP, "in progress")), "engine:2.4.0", "sha256:240", "t")
    assert done["history"][-1] == dict(UP, result="ok", verified=False, settled_at="t")
    assert (done["image"], done["previous_image"]) == ("engine:2.4.0", "engine:2.3.0")
    assert needs_resume(last_switch(done), True, "engine:2.4.0")


def test_an_upgrade_that_never_happened_is_rolled_back_and_verified() -> None:
    done = settle(entry(switch(UP, "in progress")), "engine:2.3.0", "sha256:230", "t")
    assert done["history"][-1] == dict(UP, result="rolled back", verified=True, settled_at="t")
    assert (done["image"], done["image_id"], done["version"]) == ("engine:2.3.0", "sha256:230", "2.3.0")
    assert (done["previous_image"], done["rolled_back_from"]) == ("engine:2.3.0", "engine:2.4.0")
    assert len(done["history"]) == 2 and not needs_resume(last_switch(done), True, "engine:2.3.0")


def test_a_rollback_that_never_happened_still_goes_where_it_was_to_go() -> None:
    done = settle(entry(switch(BACK, "in progress")), "engine:2.4.0", "sha256:240", "t")
    assert done["history"][-1]["result"] == "rolled back"
    assert (done["image"], done["previous_image"], done["previous_image_id"]) == (
        "engine:2.4.0",
        "engine:2.3.0",
        "sha256:230",
    )
    assert "rolled_back_from" not in done


def test_a_rollback_that_got_there_is_ok() -> None:
    done = settle(entry(switch(BACK, "in progress")), "engine:2.3.0", "sha256:230", "t")
    assert done["history"][-1]["result"] == "ok" and done["rolled_back_from"] == "engine:2.4.0"
    assert not needs_resume(last_switch(done), True, "engine:2.3.0")
