# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Rollout filters (documented in the sidecar files rollout_batches.yml, rollout_batch_of.yml, rollout_engines.yml and
rollout_settings.yml): the stage math is in module_utils/_plan.py, the settings' names in module_utils/_settings.py."""

from __future__ import annotations

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


def rollout_settings(hosts, hostvars, only=None, secrets=False) -> dict:
    """The upgrade's settings as the first Engine of the run sees them (its inventory, group and extra vars).

    The secret ones (webhook URLs) only with ``secrets=True``, for rollout_plan's ``no_log`` option
    ``secret_settings``: in ``settings`` they would be shown at -vvv when the module's arguments fail their check.
    """
    names = _selected(hosts, only)
    if not names:
        names = [str(host) for host in hosts or []]
    if not names:
        return {}
    variables = hostvars[names[0]]
    return {
        key: variables[key]
        for key in variables
        if _settings.NAME_RE.match(str(key)) and (str(key) in _settings.SECRETS) == bool(secrets)
    }


class FilterModule:
    def filters(self):
        return {
            "rollout_batches": rollout_batches,
            "rollout_batch_of": rollout_batch_of,
            "rollout_engines": rollout_engines,
            "rollout_settings": rollout_settings,
        }
