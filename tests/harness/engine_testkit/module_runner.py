# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run a whole module in-process in unit tests: exit_json / fail_json raise instead of exiting."""

from __future__ import annotations

from ansible.module_utils import basic


class ExitJson(Exception):
    """The module called exit_json; args[0] holds what it returned."""


class FailJson(Exception):
    """The module called fail_json; args[0] holds what it returned."""


def patch_exits(monkeypatch) -> None:
    """Make AnsibleModule.exit_json / fail_json raise ExitJson / FailJson with the module's result."""

    def exit_json(self, **kwargs):
        raise ExitJson(kwargs)

    def fail_json(self, **kwargs):
        raise FailJson(kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
