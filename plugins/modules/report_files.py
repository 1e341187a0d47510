#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: report_files
short_description: Write a run's report files on the controller, private to the user who runs it
version_added: 0.3.0
description:
  - Writes text files (a run's JSON and Markdown report, a diagnostics bundle) into a folder on the controller.
    The folder is made (and kept) mode C(0700), each file is written atomically, mode C(0600). A file that already
    holds the same text is left alone.
  - An action plugin; it runs on the controller, never on a managed node.
notes:
  - See docs/modules.md in the collection for why it is an action plugin.
extends_documentation_fragment:
  - september.engine._attributes
attributes:
  check_mode:
    support: full
    details:
      - Writes nothing in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
  action:
    description: Runs on the controller as an action plugin.
    support: full
options:
  dest:
    description: The folder on the controller (created with its parents).
    type: path
    required: true
  files:
    description: File names (plain names, no folder) and their text.
    type: dict
    required: true
author:
  - September Engine maintainers (@september-engine)
"""

EXAMPLES = r"""
- name: Write the run report
  september.engine.report_files:
    dest: "{{ engine_report_dir }}/{{ run_id }}"
    files:
      upgrade.json: "{{ report | to_nice_json }}"
      upgrade.md: "{{ lookup('ansible.builtin.template', 'report.md.j2') }}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
dest:
  description: The folder, absolute.
  returned: success
  type: str
  sample: /home/ops/september-engine-reports/20260504T020000Z-123456
written:
  description: The files written (the others already held the same text).
  returned: success
  type: list
  elements: str
  sample: [upgrade.json, upgrade.md]
"""
