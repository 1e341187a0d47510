# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """When error rate and latency count as sharply worse (private fragment, paired with
    module_utils/_metrics.py thresholds_argument_spec()).

    The reference is what a window is compared with: the baseline in engine_metrics, the baselines and the control
    cohort in engine_verdict.
    """

    DOCUMENTATION = r"""
options:
  error_rate_max_increase:
    description:
      - Error-rate increase over the reference, in absolute terms, that counts as sharply worse (V(0.10) is 10
        points). Both this and O(error_rate_factor) must be exceeded.
      - The reference is what the window is compared with, the baseline in M(september.engine.engine_metrics), the
        baselines and the control cohort in M(september.engine.engine_verdict).
    type: float
    default: 0.10
  error_rate_factor:
    description: Error rate, as a multiple of the reference's (at least O(error_rate_floor)), that counts as sharply
      worse.
    type: float
    default: 2.0
  error_rate_floor:
    description: The reference error rate O(error_rate_factor) applies to when the reference's is lower (e.g. zero).
    type: float
    default: 0.01
  latency_p50_factor:
    description: Median turn latency, as a multiple of the reference's, that counts as sharply worse.
    type: float
    default: 2.0
  latency_p99_factor:
    description: P99 turn latency, as a multiple of the reference's, that counts as sharply worse.
    type: float
    default: 2.0
"""
