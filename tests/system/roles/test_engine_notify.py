# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The engine_notify role through real ansible-playbook runs against a local webhook receiver.

The message arrives as Slack-compatible JSON; a webhook that answers 500, or is not there at all, is a warning
and the play goes on; check mode sends nothing; the webhook's URL (a secret, like Slack's) is in no output, even
at -vvv.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from engine_testkit.ansible import PlaybookRun, run_playbook
from engine_testkit.webhook import WebhookReceiver

PLAYBOOK = Path(__file__).resolve().parents[1] / "playbooks" / "engine_notify.yml"


def notify(url: str, *, check: bool = False, **extra: str) -> PlaybookRun:
    return run_playbook(PLAYBOOK, extra_vars={"notify_url": url, "notify_text": "Rolling back u001 to 2.3.0 due to x",
                                              **extra}, check=check, args=["-vvv"], timeout=120)


def output(run: PlaybookRun) -> str:
    return run.stdout + run.stderr


def test_the_message_arrives_as_slack_json_and_the_url_stays_secret() -> None:
    with WebhookReceiver() as hook:
        run = notify(hook.url, notify_prefix="[prod-eu]", notify_event="rollback")
    assert run.rc == 0, output(run)[-3000:]
    assert hook.messages == [{"text": "[prod-eu] Rolling back u001 to 2.3.0 due to x", "event": "rollback"}]
    assert hook.requests[0]["content_type"].startswith("application/json")
    assert hook.token not in output(run) and hook.token not in str(run.data)
    assert "the play went on" in run.stdout


@pytest.mark.parametrize("status", [500, 404])
def test_a_failing_webhook_is_a_warning_and_the_play_goes_on(status: int) -> None:
    with WebhookReceiver(status=status) as hook:
        run = notify(hook.url)
    assert run.rc == 0, output(run)[-3000:]
    assert len(hook.requests) == 1
    assert f"The webhook notification (message) failed: HTTP status {status}" in run.stdout
    assert "the play went on" in run.stdout
    assert hook.token not in output(run)


def test_a_webhook_that_is_not_there_is_a_warning() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hooks/d0e5c7a1b2f3secret"
    run = notify(url)
    assert run.rc == 0, output(run)[-3000:]
    assert "The webhook notification (message) failed" in run.stdout
    assert "d0e5c7a1b2f3secret" not in output(run)


def test_check_mode_and_an_empty_url_send_nothing() -> None:
    with WebhookReceiver() as hook:
        checked = notify(hook.url, check=True)
        empty = notify("")
    assert checked.rc == 0 and empty.rc == 0
    assert hook.requests == []
    for run in (checked, empty):
        assert "The webhook notification" not in run.stdout  # skipped, not failed
        assert "the play went on" in run.stdout
