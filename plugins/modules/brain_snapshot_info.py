#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: brain_snapshot_info
short_description: List an Engine's brain snapshots with their manifests
version_added: 0.1.0
description:
  - Lists the snapshots that M(september.engine.brain_snapshot) wrote to a folder, newest first, with their
    manifests (what was taken when, from which Engine image, with which migrations applied, and how long it is
    retained).
  - Only files with a valid manifest are listed; anything else in the folder is ignored.
  - O(engine_key), O(kind) and O(version) list only the snapshots of one Engine, of one kind, taken on one release
    (chosen by manifest, never by name); the newest of them first.
  - With O(verify_checksums=true), checks every listed snapshot's files against the sha256 in its manifest.
author:
  - September Engine maintainers (@september-engine)
options:
  dest:
    description:
      - The folder that holds the Engine's snapshots (O(september.engine.brain_snapshot#module:dest)).
      - A folder that does not exist holds no snapshots (with a warning).
    type: path
    required: true
  name:
    description: List only the snapshot of this name.
    type: str
  engine_key:
    description:
      - List only the snapshots of the Engine with this identity key
        (RV(september.engine.engine_info#module:engine.identity.key)); older manifests match through the volume or
        bind mount they recorded.
    type: str
  kind:
    description: List only the snapshots of this kind.
    type: str
    choices: [pre-upgrade, scheduled, manual, pre-restore]
  version:
    description: List only the snapshots taken on this Engine release (C(engine_version) in the manifest).
    type: str
  verify_checksums:
    description: Compute the sha256 of each listed snapshot and compare it with its manifest (reads every file).
    type: bool
    default: false
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._attributes.READ_ONLY
seealso:
  - module: september.engine.brain_snapshot
"""

EXAMPLES = r"""
- name: List the snapshots of an Engine and check them
  september.engine.brain_snapshot_info:
    dest: /var/backups/engine/sept-u001
    verify_checksums: true
  register: engine_snapshots
  failed_when: engine_snapshots.snapshots | rejectattr('checksum_ok') | list | length > 0

- name: Find the newest pre-upgrade snapshot of this Engine taken on 2.3.0, in a folder Engines share
  september.engine.brain_snapshot_info:
    dest: /var/backups/engine
    engine_key: "{{ engine_found.engine.identity.key }}"
    kind: pre-upgrade
    version: 2.3.0
  register: engine_pre_upgrade
  failed_when: engine_pre_upgrade.snapshots | length == 0
"""

RETURN = r"""
snapshots:
  description: The snapshots, newest first.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Snapshot name.
      type: str
      returned: always
      sample: pre-upgrade-2.4.0
    path:
      description: The snapshot's database file.
      type: str
      returned: always
      sample: /var/backups/engine/sept-u001/pre-upgrade-2.4.0.sqlite
    manifest_path:
      description: The snapshot's manifest file.
      type: str
      returned: always
      sample: /var/backups/engine/sept-u001/pre-upgrade-2.4.0.json
    size:
      description: Size of the database file in bytes, null when it is missing.
      type: int
      returned: always
      sample: 1536000
    sha256:
      description: SHA-256 of the database file, as the manifest records it.
      type: str
      returned: always
      sample: 9f2c4e0d5b6a7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f
    created_at:
      description: When the backup began (ISO 8601, UTC).
      type: str
      returned: always
      sample: "2026-03-01T02:00:00Z"
    retain_until:
      description: Kept at least until then (ISO 8601, UTC), or null.
      type: str
      returned: always
      sample: "2026-03-08T02:00:00Z"
    reason:
      description: Why it was taken.
      type: str
      returned: always
      sample: pre-upgrade 2.3.0 -> 2.4.0
    raw_copy:
      description: A byte copy of a replaced brain that could not be read as a database.
      type: bool
      returned: always
      sample: false
    kind:
      description: C(pre-upgrade), C(scheduled), C(manual) or C(pre-restore); null for an older one of unknown kind.
      type: str
      returned: always
      sample: scheduled
    engine_key:
      description: Identity key of the Engine the snapshot belongs to (null when an older manifest cannot tell).
      type: str
      returned: always
      sample: volume:engine-data-sept-u001
    engine_version:
      description: The Engine release the snapshot was taken on, null when unknown.
      type: str
      returned: always
      sample: 2.3.0
    manifest:
      description: The whole manifest (see RV(september.engine.brain_snapshot#module:snapshot.manifest)).
      type: dict
      returned: always
      sample: {"format": "september.engine.snapshot/v1", "applied_migrations": ["0001", "0002"], "journal_mode": "wal"}
    checksum_ok:
      description: The files match the sha256 in the manifest.
      type: bool
      returned: when O(verify_checksums=true)
      sample: true
    checksum_problem:
      description: What does not match, or null.
      type: str
      returned: when O(verify_checksums=true)
      sample: null
"""

import os

from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError
from ansible_collections.september.engine.plugins.module_utils._identity import check_key
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule
from ansible_collections.september.engine.plugins.module_utils._snapshot_store import (
    ALL_KINDS,
    SnapshotStore,
    check_name,
    matching,
)


class SnapshotLister:
    """Reads the snapshots of one folder."""

    def __init__(self, module: EngineModule):
        self.module = module
        self.params = module.params
        self.store = SnapshotStore(self.params["dest"])

    def run(self) -> list[dict]:
        if not os.path.isdir(self.store.dest):
            self.module.warn(f"{self.store.dest} does not exist (or is not a folder): it holds no snapshots.")
            return []
        p = self.params
        name = p["name"] and check_name(p["name"])
        if p["engine_key"]:
            try:
                check_key(p["engine_key"])
            except ValueError as exc:
                raise OptionsError(f"engine_key: {exc}.") from exc
        snapshots = [entry for entry in matching(self.store.list(), key=p["engine_key"], kind=p["kind"],
                                                 version=p["version"]) if not name or entry["name"] == name]
        if self.params["verify_checksums"]:
            for entry in snapshots:
                entry["checksum_problem"] = self.store.checksum_problem(entry)
                entry["checksum_ok"] = entry["checksum_problem"] is None
        return snapshots


def main() -> None:
    module = EngineModule(
        dict(
            dest=dict(type="path", required=True),
            name=dict(type="str"),
            engine_key=dict(type="str", no_log=False),
            kind=dict(type="str", choices=list(ALL_KINDS)),
            version=dict(type="str"),
            verify_checksums=dict(type="bool", default=False),
        ),
    )
    module.run(lambda: dict(snapshots=SnapshotLister(module).run()))


if __name__ == "__main__":
    main()
