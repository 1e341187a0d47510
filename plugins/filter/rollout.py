# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The upgrade role's decisions as filters: the logic is in module_utils/_rollout.py (unit-tested there)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.september.engine.plugins.module_utils._promotion import abort_report, paused_record
from ansible_collections.september.engine.plugins.module_utils._rollout import (
    bake_done,
    bake_round_evidence,
    bake_rounds,
    cohort_evidence,
    cohort_health,
    cohort_start,
    control_evidence,
    diagnostics_record,
    engine_decision,
    engine_end_message,
    pre_upgrade_snapshot,
    pre_upgrade_snapshot_options,
    preflight_summary,
    probe_set,
    replay_summary,
    rescue_decision,
    rescue_status,
    rollout_message,
    rollout_outcome,
    switch_record,
    upgrade_result,
    verdict_summary,
)

FILTERS = (
    engine_decision, bake_done, bake_round_evidence, bake_rounds, rollout_outcome, probe_set, cohort_evidence,
    cohort_health, cohort_start, control_evidence, switch_record, verdict_summary, preflight_summary, rescue_decision,
    rescue_status, upgrade_result, rollout_message, engine_end_message, diagnostics_record, replay_summary,
    paused_record, abort_report, pre_upgrade_snapshot, pre_upgrade_snapshot_options,
)


def _wrap(function):
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (ValueError, TypeError, KeyError) as exc:
            raise AnsibleFilterError(f"september.engine.{function.__name__}: {exc}") from exc

    call.__name__ = function.__name__
    call.__doc__ = function.__doc__
    return call


class FilterModule:
    def filters(self):
        return {f.__name__: _wrap(f) for f in FILTERS}
