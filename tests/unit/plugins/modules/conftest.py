# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from engine_testkit.module_runner import patch_exits


@pytest.fixture(autouse=True)
def exits(monkeypatch):
    """Every module test: exit_json / fail_json raise ExitJson / FailJson (engine_testkit.module_runner)."""
    patch_exits(monkeypatch)
