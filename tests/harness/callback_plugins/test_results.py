# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Test-only stdout callback: the human output of `default`, plus every task result as JSON in a file.

The tests read $SEPTEMBER_TEST_RESULTS (plays -> tasks -> hosts -> result, and stats) to assert on what
each module really returned, while the run's own output stays readable in the test log.
"""

from __future__ import annotations

import json
import os

from ansible.plugins.callback.default import CallbackModule as DefaultCallback

DOCUMENTATION = r"""
name: test_results
type: stdout
short_description: default output, plus task results as JSON for the test suite
description: Writes plays, tasks, per-host results and stats to the file named by E(SEPTEMBER_TEST_RESULTS).
extends_documentation_fragment:
  - default_callback
"""


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "test_results"

    def __init__(self):
        super().__init__()
        self._record = {"plays": [], "stats": {}}

    def v2_playbook_on_play_start(self, play):
        self._record["plays"].append({"play": {"name": play.get_name()}, "tasks": []})
        super().v2_playbook_on_play_start(play)

    def _task_entry(self, task):
        if not self._record["plays"]:
            self._record["plays"].append({"play": {"name": ""}, "tasks": []})
        tasks = self._record["plays"][-1]["tasks"]
        if not tasks or tasks[-1]["task"]["id"] != task._uuid:
            tasks.append({"task": {"name": task.get_name(), "id": task._uuid}, "hosts": {}})
        return tasks[-1]

    def _store(self, result, **flags):
        entry = self._task_entry(result._task)
        data = dict(result._result)
        data.update(flags)
        entry["hosts"][result._host.get_name()] = data

    def v2_runner_on_ok(self, result):
        self._store(result)
        super().v2_runner_on_ok(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._store(result, failed=True)
        super().v2_runner_on_failed(result, ignore_errors)

    def v2_runner_on_skipped(self, result):
        self._store(result, skipped=True)
        super().v2_runner_on_skipped(result)

    def v2_runner_on_unreachable(self, result):
        self._store(result, unreachable=True)
        super().v2_runner_on_unreachable(result)

    def v2_playbook_on_stats(self, stats):
        self._record["stats"] = {host: stats.summarize(host) for host in sorted(stats.processed)}
        path = os.environ.get("SEPTEMBER_TEST_RESULTS")
        if path:
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(self._record, handle, default=str)
        super().v2_playbook_on_stats(stats)
