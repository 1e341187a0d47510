# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: rollout_batches
short_description: Turn cumulative rollout stages into C(serial) batch sizes
version_added: 0.1.0
description:
  - The runbook's stages are cumulative shares of the fleet (canary V(5%), then V(10%), V(50%), V(100%) of all
    Engines upgraded). Ansible's C(serial) wants the size of each batch. This filter converts the former into
    the latter for a fleet of a given size.
  - A stage is a percentage (V(5%)) or an absolute number of Engines (V(1)). Each stage's cumulative count is
    rounded up, so the canary is always at least one Engine; stages that add no Engine are dropped; the last
    stage is raised to the whole fleet.
  - The stages may also be one comma-separated string (V(5%,10%,50%,100%)), as an AWX survey gives them (a survey
    has no list type).
options:
  _input:
    description: The stages, in order, each larger than the one before; a list, or a comma-separated string.
    type: raw
    required: true
  total:
    description: Number of Engines in the fleet.
    type: int
    required: true
"""

EXAMPLES = r"""
- name: Batches of a fleet of 40 Engines
  ansible.builtin.debug:
    msg: "{{ ['5%', '10%', '50%', '100%'] | september.engine.rollout_batches(40) }}"
  # -> [2, 2, 16, 20]

- name: The same stages from an AWX survey (a text answer)
  ansible.builtin.debug:
    msg: "{{ '5%, 10%, 50%, 100%' | september.engine.rollout_batches(40) }}"
  # -> [2, 2, 16, 20]

- name: In a play
  hosts: engines
  serial: "{{ engine_rollout_stages | september.engine.rollout_batches(ansible_play_hosts_all | length) }}"
  tasks: []
"""

RETURN = r"""
_value:
  description: Batch sizes, summing to O(total).
  type: list
  elements: int
"""

import math

from ansible.errors import AnsibleFilterError


def _cumulative(stage, total: int) -> int:
    text = str(stage).strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            if not 0 < share <= 100:
                raise ValueError
            return max(1, math.ceil(total * share / 100 - 1e-9))
        count = int(text)
        if count <= 0:
            raise ValueError
        return min(count, total)
    except ValueError:
        raise AnsibleFilterError(
            f"rollout stage {stage!r} is neither a percentage in (0%, 100%] nor a positive number of Engines"
        ) from None


def _stage_list(stages) -> list:
    """The stages as a list: a list as given, a string split at its commas (an AWX survey answer)."""
    if isinstance(stages, str) and stages.strip():
        parts = [part.strip() for part in stages.split(",")]
        if not all(parts):
            raise AnsibleFilterError(f"rollout stages {stages!r} hold an empty stage: write them as '5%,10%,50%,100%'")
        stages = parts
    if not isinstance(stages, (list, tuple)) or not stages:
        raise AnsibleFilterError(
            "rollout stages must be a non-empty list, for example ['5%', '10%', '50%', '100%'], "
            "or a comma-separated string such as '5%,10%,50%,100%'"
        )
    return list(stages)


def rollout_batches(stages, total) -> list[int]:
    """Cumulative stages (a list, or a comma-separated string) -> batch sizes for `serial`."""
    try:
        total = int(total)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"rollout_batches needs the fleet size as a number, got {total!r}") from None
    stages = _stage_list(stages)
    if total <= 0:
        return [1]
    batches, done = [], 0
    for stage in stages:
        target = _cumulative(stage, total)
        if target < done:
            raise AnsibleFilterError(
                f"rollout stages must grow: {stage!r} comes after a larger stage in {list(stages)!r}"
            )
        if target > done:
            batches.append(target - done)
            done = target
    if done < total:
        batches.append(total - done)
    return batches


def rollout_batch_of(batches, position) -> int:
    """1-based number of the batch that takes the Engine at 0-based `position` of the play's host order."""
    done = 0
    for number, size in enumerate(batches, start=1):
        done += int(size)
        if int(position) < done:
            return number
    raise AnsibleFilterError(f"position {position!r} is beyond the {done} Engines of batches {list(batches)!r}")


class FilterModule:
    def filters(self):
        return {"rollout_batches": rollout_batches, "rollout_batch_of": rollout_batch_of}
