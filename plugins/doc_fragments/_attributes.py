# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """The attributes every module of the collection documents (private fragment)."""

    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and predict the change (and the planned actions) without modifying anything.
  diff_mode:
    description:
      - Returns before and after states of what changed (or would change in check mode) when run with C(--diff).
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second run reports no change.
      - This assumes that the Engine and its brain have not changed in a relevant way in between.
"""

    # For modules that only read: use with the default fragment.
    READ_ONLY = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This module changes nothing; it runs (and probes or reads) in check mode too.
  diff_mode:
    support: N/A
    details:
      - This module changes nothing.
  idempotent:
    support: full
    details:
      - This module changes nothing.
"""

    # For the modules of the action group september.engine.engine (meta/runtime.yml): every module that reaches
    # Docker, so that module_defaults: group/september.engine.engine sets their Docker options once.
    ACTIONGROUP_ENGINE = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/september.engine.engine) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - september.engine.engine
"""
