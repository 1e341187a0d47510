# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The switches of a Compose Engine as its state file records them, and what a switch left unfinished means.

engine_compose records a switch before anything stops (``result: "in progress"``) and again when it ends (``ok``, or
what went wrong). A run that dies in between (a cancelled job), or that cannot write its record (a full disk), leaves
``in progress`` behind. What really happened is read from what the service runs now (:func:`settle`):

- it runs the switch's target (``to``): the switch happened; the result is ``ok`` (an upgrade then still needs
  verifying: a re-run verifies it to the same standard as a fresh switch);
- it runs what the switch came from (``from``): the switch never happened, or was undone; the result is
  ``rolled back`` and verified (the Engine runs the release it ran), and the record points at that release again.

:func:`needs_resume` is what the upgrade's pre-flight asks of the last switch: does it leave something to finish (go
back, or verify), or is it settled (a finished rollback, or an Engine that runs where going back would take it)?
"""

from __future__ import annotations

from ansible_collections.september.engine.plugins.module_utils._image_ref import image_tag, same_image

IN_PROGRESS = "in progress"
SETTLED_BACK = "rolled back"


def last_switch(entry: dict | None) -> dict:
    """The last switch the service's record holds ({} when none)."""
    history = (entry or {}).get("history") or []
    return dict(history[-1]) if history and isinstance(history[-1], dict) else {}


def way_back(last: dict) -> str | None:
    """Where going back from the last switch leads: a rollback's target, else the release the switch came from."""
    return last.get("to") if last.get("action") == "rolled_back" else last.get("from")


def needs_resume(last: dict, running: bool, image: str | None) -> bool:
    """Whether the last switch is left unfinished or unverified (a run that died, an outage stop, a failed rollback).

    A finished rollback is settled. So is a switch whose Engine runs, healthy or not, where going back would take it
    (a switch that never happened or was undone): the upgrade starts from there.
    """
    if not last:
        return False
    if last.get("action") == "rolled_back" and last.get("result") == "ok":
        return False
    if running and same_image(image, way_back(last)):
        return False
    return last.get("result") == IN_PROGRESS or last.get("verified") is False


def settle(entry: dict, running: str | None, running_id: str | None, at: str) -> dict | None:
    """The service's record with its ``in progress`` last switch settled by what runs now; None when there is
    nothing to settle (no switch in progress, or the service runs neither its ``from`` nor its ``to``)."""
    last = last_switch(entry)
    if last.get("result") != IN_PROGRESS:
        return None
    history = list(entry["history"])
    if same_image(running, last.get("to")):
        history[-1] = dict(last, result="ok", settled_at=at)
        return dict(entry, history=history)
    if not same_image(running, last.get("from")):
        return None
    history[-1] = dict(last, result=SETTLED_BACK, verified=True, settled_at=at)
    settled = dict(entry, history=history, image=running, image_id=running_id, version=image_tag(running))
    if last.get("action") == "rolled_back":
        # The rollback never happened: a rollback still goes where this one was to go.
        settled.update(
            previous_image=entry.get("image"),
            previous_image_id=entry.get("image_id"),
            previous_version=image_tag(entry.get("image")),
        )
        settled.pop("rolled_back_from", None)
    else:
        # As after a rollback: it runs the release it ran; nothing further back is recorded.
        settled.update(
            previous_image=running,
            previous_image_id=running_id,
            previous_version=image_tag(running),
            rolled_back_from=last.get("to"),
        )
    return settled
