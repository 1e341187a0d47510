#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: brain_snapshot
short_description: Take, prune, remove and restore consistent snapshots of an Engine's brain
version_added: 0.1.0
description:
  - V(present) takes a consistent snapshot of the brain, even while the Engine keeps writing, with SQLite's online
    backup API (one read transaction; never a plain copy of a live database) into a temporary file that is
    verified, hashed and fsynced in one pass over the copy, and renamed into O(dest). A manifest beside it
    (C(<name>.json)) records the Engine it belongs to (its identity, the storage of its brain), its O(kind), the
    release, image and migrations it was taken on, its size and sha256, the SQLite library and the brain's journal
    mode. Free space is checked before copying; a failed snapshot leaves no partial file.
  - One O(dest) may hold the snapshots of several Engines. A snapshot O(name) that belongs to another Engine is
    never re-used; this Engine's snapshot is then named C(<name>-<slug>) (with a warning).
  - Retention (O(keep_last), O(keep_days)) runs after a successful snapshot, or alone with V(pruned). It only ever
    considers the snapshots of this Engine and of this O(kind); it never prunes a snapshot whose C(retain_until) is
    in the future, nor touches files without a valid manifest.
  - V(absent) removes the snapshot O(name).
  - V(restored) puts the snapshot O(snapshot) back as the brain. Before anything changes it refuses a snapshot of
    another Engine (unless O(allow_other_engine)), a raw copy, a snapshot that fails its sha256 or C(quick_check),
    a brain held by a running container or process, and a file system without room. It then copies the snapshot
    beside the brain (hashing while copying), keeps the replaced brain as a C(pre-restore) snapshot in O(dest) (by
    hard link when on the same file system, never destroyed), removes stale C(-wal) and C(-shm) files and renames
    the copy over the brain; on failure the replaced brain is put back.
  - Files are mode C(0600), O(dest) is mode C(0700).
author:
  - September Engine maintainers (@september-engine)
options:
  state:
    description:
      - V(present) takes the snapshot O(name) (then applies retention), V(absent) removes it, V(pruned) only
        applies retention, V(restored) restores O(snapshot) over the brain.
      - V(present) and V(restored) need the brain's location (O(container), O(volume) or O(path)).
    type: str
    choices: [present, absent, pruned, restored]
    default: present
  dest:
    description:
      - Folder on the Docker host for snapshots; created C(0700) if missing. Engines may share it.
      - An absolute path. A relative one is refused before anything changes, as it would depend on where the module
        runs and no rollback would look there.
    type: path
    required: true
  name:
    description:
      - Name of the snapshot (files C(<name>.sqlite) and C(<name>.json)); letters, digits, C(.), C(_) and C(-).
      - With V(present), defaults to C(brain-<slug>-<kind>-<UTC time as YYYYmmddTHHMMSSZ>); give a fixed name to make
        the task idempotent. Required with V(absent).
      - With V(restored), names the snapshot that keeps the replaced brain (default
        C(brain-<slug>-pre-restore-<UTC time>)).
    type: str
  kind:
    description:
      - What the snapshot is for, recorded in its manifest; retention only considers snapshots of this kind.
      - A restore keeps the brain it replaces as kind C(pre-restore).
    type: str
    choices: [pre-upgrade, scheduled, manual]
    default: manual
  engine_name:
    description: The Engine's name for people (for example its inventory name), recorded in the manifest.
    type: str
  engine_key:
    description:
      - The Engine's identity key (RV(september.engine.engine_info#module:engine.identity.key)).
      - With a location, the task fails unless the brain found there is this Engine's.
      - With V(pruned) and no location, the Engine whose snapshots retention considers (needed only when O(dest)
        holds snapshots of O(kind) of several Engines).
    type: str
  allow_other_engine:
    description:
      - With V(restored), restore a snapshot whose manifest names another Engine (or an older manifest that cannot
        tell whose it is), for a deliberate migration of a brain. A warning says whose it was.
    type: bool
    default: false
  method:
    description:
      - How V(present) copies the brain. V(backup), SQLite's online backup API. V(reflink) clones the brain's file
        and its C(-wal) (ioctl C(FICLONE), XFS with reflink or Btrfs, O(dest) on the brain's file system) under a
        read transaction, then checkpoints the clone; it fails where the file system cannot clone.
    type: str
    choices: [backup, reflink]
    default: backup
  reason:
    description: Why the snapshot is taken (for example C(pre-upgrade 2.3.0 -> 2.4.0)); kept in the manifest.
    type: str
  verify:
    description:
      - How the copy is checked before it is kept, V(quick) with C(PRAGMA quick_check), V(full) with C(PRAGMA
        integrity_check) (slower, also checks indexes), V(none) not at all. A brain that fails is corrupt (the task
        fails, nothing is kept).
    type: str
    choices: [quick, full, none]
    default: quick
  retain_days:
    description:
      - Keep the new snapshot at least this many days (sets C(retain_until) in its manifest); retention and
        V(absent) without O(force) never remove it before then.
    type: int
  keep_last:
    description: Retention, keep the newest O(keep_last) snapshots of this Engine and O(kind).
    type: int
  keep_days:
    description:
      - Retention, keep every snapshot of this Engine and O(kind) younger than O(keep_days) days.
      - With both O(keep_last) and O(keep_days), a snapshot is kept if either keeps it.
    type: int
  snapshot:
    description:
      - With V(restored), the snapshot to restore, a name in O(dest), or the path of its C(.sqlite) file (its
        manifest must be beside it).
    type: str
  previous_brain_retain_days:
    description: With V(restored), keep the saved replaced brain at least this many days.
    type: int
    default: 30
  force:
    description: With V(absent), remove the snapshot even though its C(retain_until) is in the future.
    type: bool
    default: false
  min_free_bytes:
    description: Free space to leave on the file system after writing; checked before anything is written.
    type: int
    default: 67108864
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._attributes.ACTIONGROUP_ENGINE
  - september.engine._docker
  - september.engine._brain
  - september.engine._brain.MIGRATIONS
  - september.engine._lock
attributes:
  check_mode:
    support: full
    details:
      - Reads the brain and O(dest) and reports what would be taken, pruned, kept and restored; writes nothing.
  diff_mode:
    support: full
    details:
      - The snapshot names in O(dest) before and after; for V(restored), the brain's sha256 and applied migrations.
  idempotent:
    support: partial
    details:
      - Only with a fixed O(name) for V(present); V(restored) does nothing when the brain already holds the snapshot.
notes:
  - A raw copy (a replaced brain that could not be read as a database) keeps its C(-wal) as C(<name>.sqlite-wal);
    copy both before opening them with SQLite.
  - Older manifests (without C(kind) or C(engine.key)) are matched by their reason and by the volume, mount,
    container or path they recorded; a snapshot whose kind or Engine cannot be told is never pruned.
seealso:
  - module: september.engine.brain_snapshot_info
  - module: september.engine.engine_info
"""

EXAMPLES = r"""
- name: Find the Engine and its identity
  september.engine.engine_info:
    deployment: container
    container_name: sept-u001
  register: engine_found

- name: Snapshot the brain before an upgrade and keep it a week
  september.engine.brain_snapshot:
    container: sept-u001
    dest: /var/backups/engine
    kind: pre-upgrade
    engine_name: "{{ inventory_hostname }}"
    engine_key: "{{ engine_found.engine.identity.key }}"
    name: "pre-upgrade-2.4.0-{{ engine_found.engine.identity.slug }}"
    reason: pre-upgrade 2.3.0 -> 2.4.0
    retain_days: 7
    keep_last: 5
  register: engine_snapshot

- name: Nightly snapshot of a volume, full integrity check, keep two weeks of nightly snapshots
  september.engine.brain_snapshot:
    volume: engine-data-sept-u002
    dest: /var/backups/engine
    kind: scheduled
    verify: full
    keep_days: 14

- name: Restore the pre-upgrade snapshot (the Engine's container is stopped)
  september.engine.brain_snapshot:
    container: sept-u001
    dest: /var/backups/engine
    state: restored
    snapshot: "{{ engine_snapshot.snapshot.name }}"
  register: engine_restore
  failed_when: engine_restore.failed or engine_restore.previous_brain is none

- name: Remove an old snapshot, even though it is retained
  september.engine.brain_snapshot:
    dest: /var/backups/engine
    state: absent
    name: pre-upgrade-2.3.1
    force: true
"""

RETURN = r"""
snapshot:
  description:
    - The snapshot taken or found (V(present)), removed (V(absent)) or restored (V(restored)), else null.
    - In check mode, what would be taken (C(sha256) and C(manifest) null, C(size) an estimate).
  returned: always
  type: dict
  contains:
    name:
      description: Snapshot name.
      type: str
      returned: success
      sample: pre-upgrade-2.4.0
    path:
      description: The snapshot's database file.
      type: str
      returned: success
      sample: /var/backups/engine/pre-upgrade-2.4.0.sqlite
    manifest_path:
      description: The snapshot's manifest file.
      type: str
      returned: success
      sample: /var/backups/engine/pre-upgrade-2.4.0.json
    sha256:
      description: SHA-256 of the database file.
      type: str
      returned: success
      sample: 9f2c4e0d5b6a7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f
    size:
      description: Size of the database file in bytes.
      type: int
      returned: success
      sample: 1536000
    created_at:
      description: When the backup began (ISO 8601, UTC); the snapshot holds everything committed before.
      type: str
      returned: success
      sample: "2026-03-01T02:00:00Z"
    retain_until:
      description: Kept at least until then (ISO 8601, UTC), or null.
      type: str
      returned: success
      sample: "2026-03-08T02:00:00Z"
    reason:
      description: Why it was taken.
      type: str
      returned: success
      sample: pre-upgrade 2.3.0 -> 2.4.0
    raw_copy:
      description: A byte copy of a brain that could not be read as a database (a replaced brain only).
      type: bool
      returned: success
      sample: false
    kind:
      description: C(pre-upgrade), C(scheduled), C(manual) or C(pre-restore); null for an older one of unknown kind.
      type: str
      returned: success
      sample: pre-upgrade
    engine_key:
      description: Identity key of the Engine the snapshot belongs to (null when an older manifest cannot tell).
      type: str
      returned: success
      sample: volume:engine-data-sept-u001
    engine_version:
      description: The Engine release the snapshot was taken on, null when unknown.
      type: str
      returned: success
      sample: 2.3.0
    manifest:
      description:
        - The manifest (format C(september.engine.snapshot/v1)), the keys above plus C(kind), C(engine)
          (C(key), C(slug), C(inventory_name), C(container), C(volume), C(brain_source), C(image), C(image_id),
          C(version)), C(engine_version), C(image), C(image_id), C(backup_started_at), C(backup_finished_at),
          C(page_size), C(page_count), C(journal_mode) (the brain's), C(applied_migrations), C(sqlite_version),
          C(method), C(source) (where the brain was), C(verify) (C(mode), C(result)), C(timings) and
          C(collection_version).
      type: dict
      returned: success
      sample: {"format": "september.engine.snapshot/v1", "kind": "pre-upgrade", "applied_migrations": ["0001", "0002"],
               "journal_mode": "wal", "sqlite_version": "3.40.1",
               "engine": {"key": "volume:engine-data-sept-u001", "slug": "engine-data-sept-u001",
                          "inventory_name": "sept-u001", "container": "sept-u001"}}
pruned:
  description: Names of the snapshots removed (or, in check mode, that would be removed) by retention.
  returned: always
  type: list
  elements: str
  sample: [brain-20260201T020000Z]
previous_brain:
  description: Where the replaced brain was kept (a snapshot in O(dest)); null when nothing was replaced.
  returned: when state is restored
  type: dict
  contains:
    name:
      description: Snapshot name of the replaced brain.
      type: str
      returned: success
      sample: brain-engine-data-sept-u001-pre-restore-20260301T031500Z
    path:
      description: Its database file.
      type: str
      returned: success
      sample: /var/backups/engine/brain-engine-data-sept-u001-pre-restore-20260301T031500Z.sqlite
    sha256:
      description: SHA-256 of that file (null in check mode).
      type: str
      returned: success
      sample: 0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9
    raw_copy:
      description: True when the replaced brain could not be read as a database and was copied byte for byte.
      type: bool
      returned: success
      sample: false
    retain_until:
      description: Kept at least until then (O(previous_brain_retain_days)).
      type: str
      returned: success
      sample: "2026-03-31T03:15:00Z"
data_at_risk:
  description:
    - Rows written between the snapshot and the restore, per table, that the restore takes away (they stay in the
      saved replaced brain, RV(previous_brain)); only tables that grew, and every row of tables the snapshot lacks.
    - Counted read only; updates and deletes are not seen. Null when nothing was replaced, or the replaced brain
      could not be counted.
  returned: when state is restored
  type: dict
  sample: {"tasks": 42, "conversations": 84, "memory_tags": 40}
actions:
  description: The steps performed (or, in check mode, planned), in order.
  returned: always
  type: list
  elements: str
  sample: ["snapshot /var/lib/docker/volumes/engine-data-sept-u001/_data/brain.sqlite to /var/backups/x.sqlite"]
"""

from ansible_collections.september.engine.plugins.module_utils._brain import (
    BRAIN_MUTUALLY_EXCLUSIVE,
    LOCATION_OPTIONS,
    brain_module_specs,
)
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule
from ansible_collections.september.engine.plugins.module_utils._paths import relative_paths
from ansible_collections.september.engine.plugins.module_utils._snapshot_manager import BrainSnapshot
from ansible_collections.september.engine.plugins.module_utils._snapshot_store import KINDS
from ansible_collections.september.engine.plugins.module_utils._snapshot_take import METHODS


def main() -> None:
    argument_spec = dict(
        state=dict(type="str", default="present", choices=["present", "absent", "pruned", "restored"]),
        dest=dict(type="path", required=True),
        name=dict(type="str"),
        kind=dict(type="str", default="manual", choices=list(KINDS)),
        engine_name=dict(type="str"),
        engine_key=dict(type="str", no_log=False),
        allow_other_engine=dict(type="bool", default=False),
        method=dict(type="str", default="backup", choices=list(METHODS)),
        reason=dict(type="str"),
        verify=dict(type="str", default="quick", choices=["quick", "full", "none"]),
        retain_days=dict(type="int"),
        keep_last=dict(type="int"),
        keep_days=dict(type="int"),
        snapshot=dict(type="str"),
        previous_brain_retain_days=dict(type="int", default=30),
        force=dict(type="bool", default=False),
        min_free_bytes=dict(type="int", default=64 * 1024 * 1024),
    )
    module = EngineModule(
        argument_spec,
        shared=brain_module_specs(),
        mutually_exclusive=BRAIN_MUTUALLY_EXCLUSIVE,
        required_if=[
            ("state", "present", LOCATION_OPTIONS, True),
            ("state", "restored", LOCATION_OPTIONS, True),
            ("state", "restored", ("snapshot",)),
            ("state", "absent", ("name",)),
            ("state", "pruned", ("keep_last", "keep_days"), True),
        ],
    )
    # A multi-GB snapshot or restore keeps the Engine's lock alive while it works. A relative dest is refused by
    # BrainSnapshot before anything, the lock too.
    module.run(
        lambda: BrainSnapshot(
            module.params, module.check_mode, diff=module._diff, warn=module.warn, check_sdk=module.check_sdk
        ).run(),
        locked=not relative_paths({"dest": module.params["dest"]}),
    )


if __name__ == "__main__":
    main()
