#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: volume_snapshot_info
short_description: List an Engine's volume snapshots, choose the one a rollback restores, describe its volume
version_added: 0.4.0
description:
  - Lists the volume snapshot records (M(september.engine.volume_snapshot), any provider) in an Engine's snapshot
    folder, newest first, filtered by Engine, kind, release and provider (by record, never by name).
  - Chooses the snapshot a rollback restores (RV(chosen)), O(name) or the newest restorable one of the Engine of
    O(kind) taken on O(version), and says whether it can be restored (RV(is_restorable), RV(problems)); a snapshot of
    another Engine, a raw copy or a reflink snapshot whose files are gone cannot; with O(verify), a reflink snapshot
    whose files fail their sha256 or whose brain fails C(quick_check) neither.
  - With a location (O(container), O(volume) or O(path)), describes the Engine's volume (RV(volume)) and its identity
    (RV(engine)); with O(hook) too, returns the variables a provider's task files receive (RV(hook), the contract of
    docs/volume-snapshots.md).
author:
  - September Engine maintainers (@september-engine)
options:
  dest:
    description: The Engine's snapshot folder (O(september.engine.volume_snapshot#module:dest)).
    type: path
    required: true
  name:
    description: The snapshot to check and return as RV(chosen) (else the newest restorable one is chosen).
    type: str
  engine_key:
    description:
      - The Engine's identity key (RV(september.engine.engine_info#module:engine.identity.key)), when no location is
        given; with a location, the task fails unless the located volume is this Engine's.
    type: str
  kind:
    description: List and choose only snapshots of this kind.
    type: str
    choices: [pre-upgrade, scheduled, manual, pre-restore]
  version:
    description: List and choose only snapshots taken on this Engine release.
    type: str
  provider:
    description: List only the snapshots of this provider.
    type: str
  allow_other_engine:
    description: A RV(chosen) snapshot of another Engine is not a problem (a deliberate move of a volume).
    type: bool
    default: false
  verify:
    description: Check a RV(chosen) reflink snapshot's files against their sha256 and its brain with C(quick_check).
    type: bool
    default: false
  hook:
    description:
      - What the caller says of the run, to build RV(hook) (the C(engine_volume_hook) of a provider's task files).
    type: dict
    suboptions:
      action:
        description: V(snapshot) or V(restore).
        type: str
        choices: [snapshot, restore]
        default: snapshot
      phase:
        description:
          - V(snapshot) (the snapshot tasks), V(check) (the restore tasks with the Engine still running, changing
            nothing) or V(restore) (the restore tasks with the Engine stopped).
        type: str
        choices: [snapshot, check, restore]
      reason:
        description: Why, in a word (C(pre-upgrade), C(scheduled), C(manual), C(rollback)).
        type: str
      description:
        description: Why, for people (a cloud snapshot's description); default O(hook.reason).
        type: str
      run_id:
        description: The run's id.
        type: str
      snapshot_name:
        description: The name the snapshot is recorded under.
        type: str
      host:
        description: The inventory host whose Docker host runs the Engine (to delegate host-side tasks to).
        type: str
      inventory_name:
        description: The Engine's inventory name.
        type: str
notes:
  - The role C(september.engine.engine_volume_snapshot) chooses and checks the snapshot to restore with this module,
    and builds the variables of the provider's task files with it (docs/volume-snapshots.md).
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._attributes.READ_ONLY
  - september.engine._docker
  - september.engine._brain
seealso:
  - module: september.engine.volume_snapshot
"""

EXAMPLES = r"""
- name: Choose the pre-upgrade volume snapshot of this Engine taken on 2.3.0, and check it
  september.engine.volume_snapshot_info:
    container: sept-u001
    dest: /var/lib/september-engine/snapshots/sept-u001
    kind: pre-upgrade
    version: 2.3.0
    verify: true
  register: volume_choice
  failed_when: not volume_choice.is_restorable

- name: List every volume snapshot of an Engine whose snapshots share a folder with others
  september.engine.volume_snapshot_info:
    dest: /var/lib/september-engine/snapshots
    engine_key: volume:engine-data-u001
  register: volume_list
"""

RETURN = r"""
snapshots:
  description: The matching volume snapshots, newest first (the keys of RV(chosen)).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "volume-pre-upgrade-u001-run42", "provider": "reflink", "kind": "pre-upgrade"}]
chosen:
  description: The snapshot O(name), or the newest restorable one of the Engine (null when there is none).
  returned: always
  type: dict
  contains:
    name:
      description: Its name.
      type: str
      returned: success
      sample: volume-pre-upgrade-u001-run42
    provider:
      description: The provider that took it.
      type: str
      returned: success
      sample: reflink
    id:
      description: The provider's snapshot id.
      type: str
      returned: success
      sample: snap-0123456789abcdef0
    created_at:
      description: When it was taken (ISO 8601, UTC).
      type: str
      returned: success
      sample: "2026-03-01T02:00:00Z"
    retain_until:
      description: Kept at least until then, or null.
      type: str
      returned: success
      sample: null
    size:
      description: Bytes, when known.
      type: int
      returned: success
      sample: 1536000
    kind:
      description: Its kind.
      type: str
      returned: success
      sample: pre-upgrade
    reason:
      description: Why it was taken.
      type: str
      returned: success
      sample: "pre-upgrade: 2.3.0 -> 2.4.0 (run 42)"
    run_id:
      description: The run that took it.
      type: str
      returned: success
      sample: "42"
    engine_key:
      description: The Engine it belongs to.
      type: str
      returned: success
      sample: volume:engine-data-u001
    engine_version:
      description: The release it was taken on.
      type: str
      returned: success
      sample: 2.3.0
    method:
      description: C(reflink) or C(copy) (reflink provider only).
      type: str
      returned: success
      sample: copy
    raw_copy:
      description: Kept as evidence only, never restored.
      type: bool
      returned: success
      sample: false
    has_data:
      description: Whether its files are in the folder (reflink provider).
      type: bool
      returned: success
      sample: true
    path:
      description: The folder of its files, or null.
      type: str
      returned: success
      sample: /var/lib/september-engine/snapshots/u001/volume-pre-upgrade-u001-run42.volume
    record_path:
      description: Its record.
      type: str
      returned: success
      sample: /var/lib/september-engine/snapshots/u001/volume-pre-upgrade-u001-run42.volume.json
    data:
      description: What its provider recorded for the restore.
      type: dict
      returned: success
      sample: {"region": "eu-west-1", "volume_id": "vol-0fedcba9876543210"}
    record:
      description: The whole record (see M(september.engine.volume_snapshot)).
      type: dict
      returned: success
      sample: {"format": "september.engine.volume-snapshot/v1"}
is_restorable:
  description: A snapshot was chosen and nothing stands in the way of restoring it (as far as this module checks).
  returned: always
  type: bool
  sample: true
problems:
  description: Why RV(chosen) cannot be restored, or why nothing was chosen.
  returned: always
  type: list
  elements: str
  sample: ["Volume snapshot v1 belongs to Engine volume:engine-data-u002, not to this Engine (volume:engine-data-u001)"]
engine:
  description: The located Engine (null without a location).
  returned: always
  type: dict
  sample: {"identity": {"key": "volume:engine-data-u001", "slug": "engine-data-u001"}, "container": "u001",
           "image": "engine:2.3.0", "version": "2.3.0"}
volume:
  description:
    - The located Engine's volume (null without a location). C(folder) is where its content is on the Docker host
      (null, with C(problem) saying why, when it is not a folder there, for example another volume driver);
      C(driver) and C(options) are Docker's; C(filesystem) the file system type of the folder.
  returned: always
  type: dict
  sample: {"folder": "/var/lib/docker/volumes/engine-data-u001/_data", "mount_type": "volume",
           "volume": "engine-data-u001", "driver": "local", "options": {}, "filesystem": "ext4", "problem": null,
           "mountpoint": "/var/lib/docker/volumes/engine-data-u001/_data"}
hook:
  description:
    - With O(hook), the C(engine_volume_hook) a provider's task files receive (docs/volume-snapshots.md).
  returned: when hook is given
  type: dict
  sample: {"action": "snapshot", "phase": "snapshot", "reason": "pre-upgrade",
           "description": "pre-upgrade 2.3.0 -> 2.4.0 (u001, run 42)", "run_id": "42", "engine": "u001",
           "host": "u001", "container": "u001", "version": "2.3.0",
           "identity": {"key": "volume:engine-data-u001", "slug": "engine-data-u001"}, "volume": "engine-data-u001",
           "mount_type": "volume", "source": "/var/lib/docker/volumes/engine-data-u001/_data", "driver": "local",
           "options": {}, "filesystem": "ext4", "snapshot_name": "volume-pre-upgrade-u001-run42",
           "snapshot_dir": "/var/lib/september-engine/snapshots/u001", "snapshot": null, "check_mode": false,
           "tags": {"september.engine/engine": "u001"}}
"""

from ansible_collections.september.engine.plugins.module_utils._brain import (
    BRAIN_MUTUALLY_EXCLUSIVE,
    brain_module_specs,
)
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule
from ansible_collections.september.engine.plugins.module_utils._volume_info import VolumeSnapshotInfo
from ansible_collections.september.engine.plugins.module_utils._volume_store import ALL_KINDS


def main() -> None:
    argument_spec = dict(
        dest=dict(type="path", required=True),
        name=dict(type="str"),
        engine_key=dict(type="str", no_log=False),
        kind=dict(type="str", choices=list(ALL_KINDS)),
        version=dict(type="str"),
        provider=dict(type="str"),
        allow_other_engine=dict(type="bool", default=False),
        verify=dict(type="bool", default=False),
        hook=dict(
            type="dict",
            options=dict(
                action=dict(type="str", default="snapshot", choices=["snapshot", "restore"]),
                phase=dict(type="str", choices=["snapshot", "check", "restore"]),
                reason=dict(type="str"),
                description=dict(type="str"),
                run_id=dict(type="str"),
                snapshot_name=dict(type="str"),
                host=dict(type="str"),
                inventory_name=dict(type="str"),
            ),
        ),
    )
    module = EngineModule(argument_spec, shared=brain_module_specs(migrations=False, lock=False),
                          mutually_exclusive=BRAIN_MUTUALLY_EXCLUSIVE)
    module.run(
        lambda: VolumeSnapshotInfo(module.params, module.check_mode, warn=module.warn, check_sdk=module.check_sdk).run()
    )


if __name__ == "__main__":
    main()
