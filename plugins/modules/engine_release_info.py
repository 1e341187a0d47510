#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: engine_release_info
short_description: The releases that were rolled back, as the collection recorded them on a Docker host
version_added: 0.4.0
description:
  - After a successful rollback, M(september.engine.engine_rollback) records the release it rolled back from in the
    collection's state folder on the Engine's Docker host, C(<state_dir>/rolled-back-releases/<release>.json) (which
    Engine, when, in which run, why, and whether someone acknowledged it since). This module reads that record, and
    the run reports of a report folder (C(<report_dir>/<run id>/upgrade.json) and C(rollback.json)) when
    O(report_dir) is given.
  - The upgrade refuses a release that was rolled back until it is acknowledged (see
    O(september.engine.engine_preflight#module:rolled_back_release)). Its plan play can read every Docker host of the
    run with this module (and the controller's reports, delegated to C(localhost)) and refuse before the canary batch
    starts, with the P(september.engine.release_gate#filter) filter.
  - Read-only. It reports, and never fails because a release was rolled back.
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._attributes.READ_ONLY
options:
  release:
    description: The release (image tag) to look up. Omitted, every recorded release.
    type: str
  state_dir:
    description:
      - The collection's state folder (C(engine_state_dir)) on the host the module runs on.
      - Omitted, only O(report_dir) is read.
    type: path
  report_dir:
    description:
      - A folder of run reports to read too, on the host the module runs on (delegate to C(localhost) for the
        controller's C(engine_report_dir)). Reports that cannot be read are skipped with a warning.
    type: path
notes:
  - A record file that cannot be read fails the module with a message naming it; the upgrade refuses too until it is
    repaired or moved aside.
seealso:
  - module: september.engine.engine_rollback
  - module: september.engine.engine_preflight
author:
  - September Engine maintainers (@september-engine)
"""

EXAMPLES = r"""
- name: Was 2.4.1 rolled back on this Docker host?
  september.engine.engine_release_info:
    release: "2.4.1"
    state_dir: /var/lib/september-engine
  register: rolled_back

- name: Say so
  ansible.builtin.debug:
    msg: "{{ rolled_back.release_record.message }}"
  when: rolled_back.release_record.is_rolled_back

- name: Every release the controller's run reports saw rolled back
  september.engine.engine_release_info:
    report_dir: "{{ lookup('ansible.builtin.env', 'HOME') }}/september-engine-reports"
  delegate_to: localhost
  run_once: true
  register: from_reports
"""

RETURN = r"""
release_record:
  description: What was recorded.
  returned: success
  type: dict
  contains:
    release:
      description: The release looked up (O(release)), null for all.
      type: str
      sample: 2.4.1
    entries:
      description:
        - Each rollback recorded (oldest first), with C(release), C(engine), C(identity), C(docker_host), C(run_id),
          C(reason), C(rolled_back_to), C(started_at), C(rolled_back_at), C(image), C(kind), C(acknowledged) (null, or
          C(reason), C(by), C(run_id), C(engine), C(at)); C(source) names the report for entries read from reports.
      type: list
      elements: dict
      sample: [{"release": "2.4.1", "engine": "engine-u042", "docker_host": "docker-a", "run_id": "20260504T020000Z-1",
                "reason": "verify: health: /health answered 503", "rolled_back_at": "2026-05-04T02:14:10Z",
                "acknowledged": null}]
    pending:
      description: How many entries nobody acknowledged.
      type: int
      sample: 1
    is_rolled_back:
      description: Some entry is not acknowledged (an upgrade to that release would be refused).
      type: bool
      sample: true
    message:
      description: The refusal an upgrade would get, empty when nothing is pending (with O(release)).
      type: str
      sample: "release 2.4.1 was rolled back once: on engine-u042 (Docker host docker-a) at 2026-05-04T02:14:10Z ..."
    paths:
      description: Where the entries were read (the record folder, the report folder).
      type: list
      elements: str
      sample: [/var/lib/september-engine/rolled-back-releases]
"""

from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule
from ansible_collections.september.engine.plugins.module_utils._release_record import (
    ReleaseRecord,
    merge,
    pending,
    refusal,
    report_entries,
)


class ReleaseInfo:
    """Reads the record of one state folder and the reports of one report folder."""

    def __init__(self, params: dict, warnings: list):
        self.p = params
        self.warnings = warnings

    def run(self) -> dict:
        release, state_dir, report_dir = self.p["release"], self.p["state_dir"], self.p["report_dir"]
        if not state_dir and not report_dir:
            raise OptionsError("Give state_dir (the collection's state folder), report_dir (run reports), or both.")
        entries, paths = [], []
        if state_dir:
            record = ReleaseRecord(state_dir)
            paths.append(record.folder)
            if release:
                entries += record.lookup(release)
            else:
                entries += [entry for found in record.releases().values() for entry in found]
        if report_dir:
            paths.append(report_dir)
            entries += report_entries(report_dir, release, self.warnings)
        entries = merge(entries)  # a rollback both recorded on the host and in a report is one
        waiting = pending(entries)
        message = refusal(release, waiting) if release and waiting else ""
        return dict(
            changed=False,
            release_record=dict(
                release=release,
                entries=entries,
                pending=len(waiting),
                is_rolled_back=bool(waiting),
                message=message,
                paths=paths,
            ),
        )


def main() -> None:
    module = EngineModule(
        dict(
            release=dict(type="str"),
            state_dir=dict(type="path"),
            report_dir=dict(type="path"),
        )
    )
    module.run(lambda: ReleaseInfo(module.params, module.notes).run())


if __name__ == "__main__":
    main()
