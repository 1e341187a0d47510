#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: volume_snapshot
short_description: Snapshot, record, restore and remove volume snapshots of an Engine's whole /data volume
version_added: 0.4.0
description:
  - A volume snapshot is a snapshot of the whole storage behind an Engine's C(/data) (its Docker volume or bind
    mount), taken by a provider. This module is the built-in provider C(reflink), and the record keeper of every
    provider (docs/volume-snapshots.md describes the hook that plugs in C(amazon.aws), C(google.cloud) and others).
  - V(present) takes a C(reflink) snapshot. Every running container that mounts the volume is paused (C(docker
    pause), O(quiesce=pause)) while the volume's folder is copied file by file into O(dest), cloned (ioctl C(FICLONE),
    milliseconds whatever the size) where the file system can (XFS with reflink, Btrfs, with O(dest) on the volume's
    file system), else copied. The copy is a crash-consistent image of the whole volume; its brain is then settled
    (WAL recovered into it), verified (C(quick_check)) and every file hashed into a record C(<name>.volume.json)
    beside the copy C(<name>.volume/), which names the Engine (its identity), the kind, the release and the
    provider. Retention (O(keep_last), O(keep_days)) then prunes this Engine's reflink snapshots of O(kind).
  - V(recorded) records a snapshot another provider took (the C(engine_volume_snapshot) fact its task files set,
    O(record)) in the same kind of record, bound to the Engine's identity, so that a rollback finds it by record.
  - V(restored) puts a C(reflink) snapshot back, with the Engine stopped. Before anything changes it refuses a
    snapshot of another Engine (unless O(allow_other_engine)), of another provider, a raw copy, one whose files fail
    their sha256 or whose brain fails C(quick_check), a volume a running container or a process uses, and a file
    system without room. It then stages the snapshot inside the volume (hidden folder), keeps the current content as
    a C(pre-restore) volume snapshot in O(dest), and swaps the top-level entries by rename; a failure puts the
    content back.
  - V(absent) removes the volume snapshot O(name) (for another provider, only its record, with a warning).
  - Files in O(dest) are C(0600), folders C(0700); a restore gives every file back its recorded owner, mode and time.
author:
  - September Engine maintainers (@september-engine)
options:
  state:
    description:
      - V(present) takes a reflink snapshot, V(recorded) records another provider's, V(restored) restores
        O(snapshot), V(absent) removes O(name).
      - Every state but V(absent) needs the Engine's location (O(container), O(volume) or O(path)).
    type: str
    choices: [present, recorded, restored, absent]
    default: present
  dest:
    description:
      - The Engine's snapshot folder on the Docker host (the folder of its file-level snapshots too); created
        C(0700) if missing. Engines may share it.
      - For clones, it must be on the volume's file system.
    type: path
    required: true
  name:
    description:
      - The snapshot's name (record C(<name>.volume.json)); letters, digits, C(.), C(_) and C(-).
      - With V(present) and V(recorded) it defaults to C(volume-<slug>-<kind>-<UTC time>); give a fixed name to make
        the task idempotent. Required with V(absent).
      - With V(restored), the name of the snapshot that keeps the replaced content (default
        C(volume-<slug>-pre-restore-<UTC time>)).
    type: str
  snapshot:
    description: With V(restored), the name of the volume snapshot to restore.
    type: str
  kind:
    description: What the snapshot is for, recorded; retention only considers this Engine's snapshots of this kind.
    type: str
    choices: [pre-upgrade, scheduled, manual]
    default: manual
  record:
    description:
      - With V(recorded), what the provider's task files returned (the C(engine_volume_snapshot) fact).
    type: dict
    suboptions:
      id:
        description: The provider's snapshot id (for example an EBS C(snap-...) id).
        type: str
        required: true
      provider:
        description: The provider's name (letters, digits, C(.), C(_), C(-)), for example C(aws-ebs).
        type: str
        required: true
      created:
        description: When the snapshot was taken (ISO 8601); default now.
        type: str
      size:
        description: Its size in bytes, when the provider says.
        type: int
      data:
        description: Anything the provider's restore tasks need back (region, zone, source volume id ...).
        type: dict
  engine_name:
    description: The Engine's name for people (its inventory name), recorded.
    type: str
  engine_key:
    description:
      - The Engine's identity key (RV(september.engine.engine_info#module:engine.identity.key)); the task fails,
        before anything changes, unless the located volume is this Engine's.
    type: str
  run_id:
    description: The run that takes the snapshot (for example the upgrade's run id), recorded.
    type: str
  reason:
    description: Why the snapshot is taken or the restore made (for example C(pre-upgrade 2.3.0 -> 2.4.0)), recorded.
    type: str
  allow_other_engine:
    description: With V(restored), restore a snapshot whose record names another Engine (or none), on purpose.
    type: bool
    default: false
  clone:
    description:
      - V(auto) clones each file where the file system can and copies it where it cannot; V(always) fails (before
        the Engine is paused) where it cannot clone; V(never) always copies.
    type: str
    choices: [auto, always, never]
    default: auto
  quiesce:
    description:
      - How V(present) gets a consistent image of a running Engine's volume. V(pause) pauses every running container
        that mounts the volume while its files are cloned or copied (crash-consistent for every file; with clones a
        few milliseconds, with copies as long as the copy takes). V(brain) pauses nothing and holds a read
        transaction on the brain instead (the brain is consistent; other files are copied as they are).
    type: str
    choices: [pause, brain]
    default: pause
  verify:
    description: How the snapshot's brain is checked before it is kept (V(quick) quick_check, V(full) integrity_check).
    type: str
    choices: [quick, full, none]
    default: quick
  retain_days:
    description: Keep the new snapshot (or record) at least this many days (C(retain_until)).
    type: int
  keep_last:
    description: Retention after V(present), keep the newest O(keep_last) reflink snapshots of this Engine and O(kind).
    type: int
  keep_days:
    description: Retention after V(present), keep every reflink snapshot of this Engine and O(kind) younger than this.
    type: int
  previous_retain_days:
    description: With V(restored), keep the snapshot of the replaced content at least this many days.
    type: int
    default: 30
  force:
    description: With V(absent), remove the snapshot even though its C(retain_until) is in the future.
    type: bool
    default: false
  min_free_bytes:
    description: Free space to leave on each file system written to; checked before anything is written.
    type: int
    default: 67108864
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._docker
  - september.engine._brain
  - september.engine._brain.MIGRATIONS
  - september.engine._lock
attributes:
  check_mode:
    support: full
    details:
      - Reads the volume and O(dest), checks everything a real run checks, and reports what would be taken, recorded,
        kept, swapped and pruned; writes nothing and pauses nothing.
  diff_mode:
    support: full
    details:
      - The volume snapshot names in O(dest) before and after; for V(restored), the volume's files and their sha256.
  idempotent:
    support: partial
    details:
      - V(present) and V(recorded) with a fixed O(name); V(restored) does nothing when the volume already holds the
        snapshot's files.
notes:
  - The module runs on the Docker host; the Engine's volume must be a folder there (a local volume, also one that
    binds a folder with C(type=none,o=bind), or a bind mount). A volume of another driver, or one that mounts a
    device only while a container uses it, is refused with a pointer to the provider hook.
  - Pausing freezes the Engine's processes; its connections wait (they are not refused) and resume after.
  - The role C(september.engine.engine_volume_snapshot) runs this module as the built-in provider of the volume
    snapshot hook, and the upgrade and rollback roles through it (docs/volume-snapshots.md).
seealso:
  - module: september.engine.volume_snapshot_info
  - module: september.engine.brain_snapshot
"""

EXAMPLES = r"""
- name: Find the Engine
  september.engine.engine_info:
    deployment: container
    container_name: sept-u001
  register: engine_found

- name: Take a volume snapshot before an upgrade (the Engine paused for the clone)
  september.engine.volume_snapshot:
    container: sept-u001
    dest: /var/lib/september-engine/snapshots/sept-u001
    kind: pre-upgrade
    name: "volume-pre-upgrade-{{ engine_found.engine.identity.slug }}-2.3.0-to-2.4.0"
    engine_name: "{{ inventory_hostname }}"
    engine_key: "{{ engine_found.engine.identity.key }}"
    reason: pre-upgrade 2.3.0 -> 2.4.0
    retain_days: 7
    keep_last: 3
  register: volume_taken
  failed_when: volume_taken.failed or volume_taken.volume_snapshot.record is none

- name: Record an EBS snapshot that amazon.aws.ec2_snapshot took (the hook's engine_volume_snapshot fact)
  september.engine.volume_snapshot:
    state: recorded
    container: sept-u001
    dest: /var/lib/september-engine/snapshots/sept-u001
    kind: pre-upgrade
    name: volume-pre-upgrade-sept-u001-run42
    record:
      id: snap-0123456789abcdef0
      provider: aws-ebs
      size: 107374182400
      data:
        region: eu-west-1
        volume_id: vol-0fedcba9876543210

- name: Restore it with the Engine stopped
  september.engine.volume_snapshot:
    state: restored
    container: sept-u001
    dest: /var/lib/september-engine/snapshots/sept-u001
    snapshot: "{{ volume_taken.volume_snapshot.name }}"
  register: volume_restored
"""

RETURN = r"""
volume_snapshot:
  description:
    - The snapshot taken, found, recorded, restored or removed; null when V(absent) found none.
    - In check mode, what would be taken (C(record) null).
  returned: always
  type: dict
  contains:
    name:
      description: Its name.
      type: str
      returned: success
      sample: volume-pre-upgrade-engine-data-u001-2.3.0-to-2.4.0-run42
    provider:
      description: The provider that took it (C(reflink) for this module's own).
      type: str
      returned: success
      sample: reflink
    id:
      description: The provider's snapshot id (the name, for C(reflink)).
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
      sample: "2026-03-08T02:00:00Z"
    size:
      description: Bytes of its files (C(reflink)), or what the provider said, or null.
      type: int
      returned: success
      sample: 1536000
    kind:
      description: C(pre-upgrade), C(scheduled), C(manual) or C(pre-restore).
      type: str
      returned: success
      sample: pre-upgrade
    engine_key:
      description: Identity key of the Engine it belongs to.
      type: str
      returned: success
      sample: volume:engine-data-u001
    engine_version:
      description: The release the Engine ran when it was taken.
      type: str
      returned: success
      sample: 2.3.0
    method:
      description: C(reflink) (cloned) or C(copy), for this module's own snapshots; null for other providers.
      type: str
      returned: success
      sample: reflink
    raw_copy:
      description: A replaced volume whose brain could not be read, kept byte for byte (never restored).
      type: bool
      returned: success
      sample: false
    path:
      description: The folder of its files (C(reflink)), null for other providers.
      type: str
      returned: success
      sample: /var/lib/september-engine/snapshots/u001/volume-pre-upgrade-u001.volume
    record_path:
      description: Its record.
      type: str
      returned: success
      sample: /var/lib/september-engine/snapshots/u001/volume-pre-upgrade-u001.volume.json
    data:
      description: What the provider recorded for its restore.
      type: dict
      returned: success
      sample: {"region": "eu-west-1"}
    record:
      description:
        - The record (format C(september.engine.volume-snapshot/v1)), the keys above plus C(engine) (C(key), C(slug),
          C(inventory_name), C(container), C(volume), C(image), C(version)), C(reason), C(run_id), C(source) (the
          volume, its driver and folder); for C(reflink) also C(files) (path, kind, size, sha256, mode, uid, gid,
          mtime_ns), C(brain) (file, journal mode, applied migrations, verify), C(quiesce), C(paused),
          C(paused_seconds) and C(sqlite_version).
      type: dict
      returned: success
      sample: {"format": "september.engine.volume-snapshot/v1", "provider": "reflink", "method": "reflink",
               "paused_seconds": 0.004, "brain": {"file": "brain.sqlite", "journal_mode": "wal"}}
volume:
  description: The Engine's volume (V(present), V(restored)) as volume_snapshot_info returns it.
  returned: when state is present or restored
  type: dict
  sample: {"folder": "/var/lib/docker/volumes/engine-data-u001/_data", "volume": "engine-data-u001",
           "driver": "local", "filesystem": "xfs", "mount_type": "volume"}
previous:
  description: With V(restored), the volume snapshot that keeps the replaced content (null when nothing changed).
  returned: when state is restored
  type: dict
  sample: {"name": "volume-engine-data-u001-pre-restore-20260301T031500Z", "raw_copy": false,
           "path": "/var/lib/september-engine/snapshots/u001/volume-u001-pre-restore-20260301T031500Z.volume",
           "size": 1536000, "retain_until": "2026-03-31T03:15:00Z"}
data_at_risk:
  description: With V(restored), rows per table the restore takes away (in the replaced brain, not in the snapshot's).
  returned: when state is restored
  type: dict
  sample: {"tasks": 42}
pruned:
  description: Names of the snapshots retention removed (or would remove).
  returned: always
  type: list
  elements: str
  sample: [volume-engine-data-u001-pre-upgrade-20260201T020000Z]
actions:
  description: The steps performed (or, in check mode, planned), in order.
  returned: always
  type: list
  elements: str
  sample: ["snapshot the volume folder /var/lib/docker/volumes/engine-data-u001/_data to /x.volume (reflink, pause)"]
"""

from ansible_collections.september.engine.plugins.module_utils._brain import (
    BRAIN_MUTUALLY_EXCLUSIVE,
    LOCATION_OPTIONS,
    brain_module_specs,
)
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule
from ansible_collections.september.engine.plugins.module_utils._volume_copy import CLONE_CHOICES, QUIESCE_CHOICES
from ansible_collections.september.engine.plugins.module_utils._volume_snapshot import VolumeSnapshot
from ansible_collections.september.engine.plugins.module_utils._volume_store import KINDS


def main() -> None:
    argument_spec = dict(
        state=dict(type="str", default="present", choices=["present", "recorded", "restored", "absent"]),
        dest=dict(type="path", required=True),
        name=dict(type="str"),
        snapshot=dict(type="str"),
        kind=dict(type="str", default="manual", choices=list(KINDS)),
        record=dict(
            type="dict",
            options=dict(
                id=dict(type="str", required=True),
                provider=dict(type="str", required=True),
                created=dict(type="str"),
                size=dict(type="int"),
                data=dict(type="dict"),
            ),
        ),
        engine_name=dict(type="str"),
        engine_key=dict(type="str", no_log=False),
        run_id=dict(type="str"),
        reason=dict(type="str"),
        allow_other_engine=dict(type="bool", default=False),
        clone=dict(type="str", default="auto", choices=list(CLONE_CHOICES)),
        quiesce=dict(type="str", default="pause", choices=list(QUIESCE_CHOICES)),
        verify=dict(type="str", default="quick", choices=["quick", "full", "none"]),
        retain_days=dict(type="int"),
        keep_last=dict(type="int"),
        keep_days=dict(type="int"),
        previous_retain_days=dict(type="int", default=30),
        force=dict(type="bool", default=False),
        min_free_bytes=dict(type="int", default=64 * 1024 * 1024),
    )
    module = EngineModule(
        argument_spec,
        shared=brain_module_specs(),
        mutually_exclusive=BRAIN_MUTUALLY_EXCLUSIVE,
        required_if=[
            ("state", "present", LOCATION_OPTIONS, True),
            ("state", "recorded", LOCATION_OPTIONS, True),
            ("state", "recorded", ("record",)),
            ("state", "restored", LOCATION_OPTIONS, True),
            ("state", "restored", ("snapshot",)),
            ("state", "absent", ("name",)),
        ],
    )
    # A large copy keeps the Engine's lock alive while it works.
    module.run(
        lambda: VolumeSnapshot(
            module.params, module.check_mode, diff=module._diff, warn=module.warn, check_sdk=module.check_sdk
        ).run(),
        locked=True,
    )


if __name__ == "__main__":
    main()
