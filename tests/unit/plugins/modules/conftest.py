# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from engine_testkit.module_runner import ExitJson, FailJson, patch_exits


@pytest.fixture(autouse=True)
def exits(monkeypatch):
    """Every module test: exit_json / fail_json raise ExitJson / FailJson (engine_testkit.module_runner)."""
    patch_exits(monkeypatch)


@pytest.fixture
def run_module(monkeypatch):
    """Run a whole module in-process: ``run_module(module, args, check=False, diff=False)``.

    Returns what the module exited or failed with, plus ``failed`` (it failed) and ``warnings`` (what it warned
    during this run).
    """
    warned: list = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, message: warned.append(message))

    def run(module, args: dict, check: bool = False, diff: bool = False) -> dict:
        args = dict(args)
        if check:
            args["_ansible_check_mode"] = True
        if diff:
            args["_ansible_diff"] = True
        warned.clear()
        with patch_module_args(args), pytest.raises((ExitJson, FailJson)) as info:
            module.main()
        return dict(info.value.args[0], failed=info.type is FailJson, warnings=list(warned))

    return run
