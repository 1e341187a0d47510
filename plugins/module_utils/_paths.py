# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Folders on the Docker host that later runs must find again (locks, snapshots, state): absolute paths only.

A relative folder would be resolved against wherever the module happens to run (on a local connection the
playbook's folder, over SSH the login's home): a lock that no other run sees, a snapshot no rollback looks for.
The modules refuse one in their option checks, before anything changes.
"""

from __future__ import annotations

import os

from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError

EXAMPLE = "/var/lib/september-engine"


def relative_paths(named: dict) -> list[str]:
    """``option='value'`` for each of ``named`` (option -> path or None) that is set but not absolute."""
    return [f"{option}={value!r}" for option, value in named.items() if value and not os.path.isabs(str(value))]


def require_absolute(named: dict, example: str = EXAMPLE) -> None:
    """OptionsError naming every folder of ``named`` (option -> path or None) that is relative; None is fine."""
    bad = relative_paths(named)
    if not bad:
        return
    each = "each " if len(bad) > 1 else ""
    raise OptionsError(
        f"{', '.join(bad)}: {each}must be an absolute path on the Docker host, e.g. {example} (a relative one is "
        "taken from wherever the module runs, where no later run looks; in the playbooks: engine_state_dir, "
        "engine_snapshot_dir). Nothing was changed."
    )
