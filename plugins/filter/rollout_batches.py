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
  - The playbook C(september.engine.upgrade) does not size its batches with this filter directly: the module
    M(september.engine.rollout_plan) plans the whole run (same stage rules, plus the order of the Engines).
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

from ansible.errors import AnsibleFilterError

from ansible_collections.september.engine.plugins.module_utils import _plan, _settings


def rollout_batches(stages, total) -> list[int]:
    """Cumulative stages (a list, or a comma-separated string) -> batch sizes for `serial`."""
    try:
        total = int(total)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"rollout_batches needs the fleet size as a number, got {total!r}") from None
    try:
        return _plan.batch_sizes(stages, total)
    except _plan.StageError as exc:
        raise AnsibleFilterError(exc.msg) from None


def rollout_batch_of(batches, position) -> int:
    """1-based number of the batch that takes the Engine at 0-based `position` of the play's host order."""
    try:
        return _plan.batch_of(batches, position)
    except _plan.StageError as exc:
        raise AnsibleFilterError(exc.msg) from None


def docker_host_of(name: str, hostvars) -> str:
    """Where an Engine runs: engine_docker_host, else localhost for a local connection, else ansible_host (with
    ansible_port), else the inventory name (what Ansible connects to)."""
    explicit = hostvars.get("engine_docker_host")
    if explicit:
        return str(explicit)
    connection = str(hostvars.get("ansible_connection") or "")
    if connection in ("local", "ansible.builtin.local"):
        return "localhost"
    host = hostvars.get("ansible_host")
    if host:
        port = hostvars.get("ansible_port")
        return f"{host}:{port}" if port else str(host)
    return name


def _selected(hosts, only) -> list[str]:
    names = [str(host) for host in hosts or []]
    if only is None:
        return names
    keep = {str(host) for host in only}
    return [name for name in names if name in keep]


def rollout_engines(hosts, hostvars, only=None, canaries=None) -> list[dict]:
    """The Engines of a run for september.engine.rollout_plan: ``{name, docker_host, canary}`` per host."""
    allow = {str(host) for host in canaries or []}
    return [
        {"name": name, "docker_host": docker_host_of(name, hostvars[name]), "canary": name in allow}
        for name in _selected(hosts, only)
    ]


def rollout_settings(hosts, hostvars, only=None) -> dict:
    """The upgrade's settings as the first Engine of the run sees them (its inventory, group and extra vars)."""
    names = _selected(hosts, only)
    if not names:
        names = [str(host) for host in hosts or []]
    if not names:
        return {}
    variables = hostvars[names[0]]
    return {key: variables[key] for key in variables if _settings.NAME_RE.match(str(key))}


class FilterModule:
    def filters(self):
        return {
            "rollout_batches": rollout_batches,
            "rollout_batch_of": rollout_batch_of,
            "rollout_engines": rollout_engines,
            "rollout_settings": rollout_settings,
        }
