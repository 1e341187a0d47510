# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Rollback runbook's "Post-rollback" as filters (documented in postmortem_draft.yml, regression_eval_case.yml,
release_gate.yml and release_record_readers.yml): the postmortem draft and the proposed regression eval of a diagnostics
bundle, and the gate on a rolled-back release. The logic is in module_utils/_postmortem.py and _release_record.py."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.september.engine.plugins.filter.rollout_batches import docker_host_of
from ansible_collections.september.engine.plugins.module_utils import _postmortem, _release_record
from ansible_collections.september.engine.plugins.module_utils._errors import (
    EngineModuleError,
    RolledBackReleaseError,
)


def postmortem_draft(diagnostics, lines=None, now=None, eval_file="regression-eval.proposed.yml") -> str:
    """Markdown: the postmortem draft of one Engine's failed upgrade."""
    try:
        return _postmortem.postmortem_draft(diagnostics, lines, now, eval_file)
    except (TypeError, ValueError, KeyError) as exc:
        raise AnsibleFilterError(f"september.engine.postmortem_draft: {exc}") from exc


def regression_eval_case(diagnostics, lines=None, max_cases=_postmortem.MAX_CASES) -> str:
    """YAML: the proposed regression eval set built from the bad window's failed turns."""
    try:
        return _postmortem.regression_eval_case(diagnostics, lines, int(max_cases))
    except (TypeError, ValueError, KeyError) as exc:
        raise AnsibleFilterError(f"september.engine.regression_eval_case: {exc}") from exc


def _entries(found) -> list[dict]:
    """Entries from engine_release_info results: a registered loop, a list of results, of release_record dicts or
    of entries."""
    if isinstance(found, dict):
        if "results" in found:
            return _entries(found["results"])
        if "release_record" in found:
            return _entries(found["release_record"])
        if "entries" in found:
            return [entry for entry in found["entries"] if isinstance(entry, dict)]
        return [found] if found.get("release") else []
    if isinstance(found, (list, tuple)):
        return [entry for item in found for entry in _entries(item)]
    return []


def release_gate(found, release, allow=False, reason="") -> dict:
    """Whether an upgrade to ``release`` must be refused, given what engine_release_info found (on any number of Docker
    hosts and report folders): ``refuse``, ``message``, ``pending``, ``acknowledge`` and ``entries``."""
    entries = _release_record.merge([entry for entry in _entries(found) if str(entry.get("release")) == str(release)])
    try:
        gate = _release_record.check_release(str(release), entries, bool(allow), reason)
    except RolledBackReleaseError as exc:
        return dict(
            release=str(release),
            refuse=True,
            message=exc.msg,
            pending=len(exc.details["entries"]),
            acknowledge=False,
            entries=entries,
        )
    except EngineModuleError as exc:  # allowed without a reason
        return dict(
            release=str(release),
            refuse=True,
            message=exc.msg,
            pending=len(_release_record.pending(entries)),
            acknowledge=False,
            entries=entries,
        )
    return dict(gate, refuse=False, message="")


DEFAULT_STATE_DIR = "/var/lib/september-engine"


def release_record_readers(names, hostvars) -> list[dict]:
    """One Engine per Docker host and state folder of ``names``, to read the record there: ``{engine, docker_host,
    state_dir}`` (the state folder as the roles default it: engine_upgrade_state_dir, engine_state_dir)."""
    readers, seen = [], set()
    for name in [str(name) for name in names or []]:
        variables = hostvars[name]
        state_dir = str(
            variables.get("engine_upgrade_state_dir") or variables.get("engine_state_dir") or DEFAULT_STATE_DIR
        )
        key = (docker_host_of(name, variables), state_dir)
        if key not in seen:
            seen.add(key)
            readers.append(dict(engine=name, docker_host=key[0], state_dir=state_dir))
    return readers


class FilterModule:
    def filters(self):
        return {
            "postmortem_draft": postmortem_draft,
            "regression_eval_case": regression_eval_case,
            "release_gate": release_gate,
            "release_record_readers": release_record_readers,
        }
