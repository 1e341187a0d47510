#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: migration_check
short_description: Tell what upgrading an Engine's brain to a target image would do, and how to roll it back
version_added: 0.1.0
description:
  - Compares the migrations applied to an Engine's brain (read over a read-only connection, as O(migrations_source)
    says) with the migrations a target image ships (its O(migrations_dir), read from a container that is created and
    removed again, never started), and classifies each pending migration as V(additive), V(destructive) or
    V(unknown) (RV(migration.pending)).
  - From that it derives the version bump, whether the upgrade is forward-only, destructive or a downgrade, and the
    rollback strategy (RV(migration.rollback_strategy)); V(brain_restore) whenever a migration would run.
  - With O(boot_test=true), it also starts the target image on a throwaway copy of the brain, then the current image
    on the migrated copy, to see whether an image-only rollback works.
  - It only reports, with C(changed=false); the playbook decides (C(failed_when)). It fails on bad input only.
author:
  - September Engine maintainers (@september-engine)
options:
  target_image:
    description:
      - The image to upgrade to, for example C(engine:2.4.0). It must be present on the Docker host; nothing is
        pulled.
    type: str
    required: true
  current_image:
    description:
      - The image the Engine runs now, for the version bump, the rollback strategy and the boot test.
      - Defaults to the image of O(container). Without O(container), RV(migration.bump) is null unless this is
        given; O(boot_test=true) requires it.
    type: str
  boot_test:
    description:
      - Start O(target_image) on a throwaway copy of the brain until its C(/health) is ok (its migrations run on
        the copy), stop it, then start O(current_image) on the migrated copy to see whether it becomes healthy or
        refuses the brain (C(MIGRATION_REQUIRED)).
      - The copy is taken into a private folder (mode C(0700)) under O(boot_test_dir) and bind-mounted at
        O(data_dir); the containers publish port C(8000/tcp) on a random loopback port and run with a throwaway API
        key. Containers and copy are removed whatever happens. The real brain is only read.
      - When the current image does not come back on the migrated copy, RV(migration.rollback_strategy) is
        V(brain_restore) whatever the static analysis said.
    type: bool
    default: false
  boot_timeout:
    description: Seconds each boot-test container gets to become healthy.
    type: int
    default: 120
  boot_test_dir:
    description:
      - Where the boot test creates its private folder for the copy of the brain (it needs room for a full copy).
      - Defaults to the system's temporary directory.
    type: path
  api_key_env:
    description: Environment variable through which the boot-test containers get their throwaway API key.
    type: str
    default: ENGINE_API_KEY
  env:
    description:
      - Extra environment for the boot-test containers, for example what the Engine needs to report healthy.
      - C(SQLITE_DB_PATH) is set to O(data_dir)/O(brain_file) unless given here; O(api_key_env) is always the
        throwaway key. Values are not logged.
    type: dict
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._attributes.ACTIONGROUP_ENGINE
  - september.engine._attributes.READ_ONLY
  - september.engine._brain
  - september.engine._brain.MIGRATIONS
  - september.engine._brain.MIGRATION_FILES
  - september.engine._docker
notes:
  - Runs in check mode as well, boot test included; the boot test's containers and copy are gone when it returns.
  - The classification cannot foresee failures that depend on the rows (a unique index over duplicates, for
    example); O(boot_test=true) runs the migrations on a real copy.
  - Must run on the Docker host, since it reads the brain and bind-mounts its copy through the host's file system.
  - See docs/modules.md in the collection for how migrations are classified and what the strategy means.
seealso:
  - module: september.engine.engine_preflight
  - module: september.engine.brain_snapshot
"""

EXAMPLES = r"""
- name: What would upgrading this Engine to 2.4.0 do?
  september.engine.migration_check:
    container: sept-u001
    target_image: engine:2.4.0
  register: upgrade_plan

- name: Refuse a destructive upgrade without an acknowledged, retained snapshot
  ansible.builtin.assert:
    that: not upgrade_plan.migration.is_destructive or destructive_upgrade_acknowledged | default(false)
    fail_msg: "{{ upgrade_plan.migration.warnings | join(' ') }}"

- name: Prove on a throwaway copy that the target boots and whether an image-only rollback works
  september.engine.migration_check:
    container: "{{ engine_container_name }}"
    target_image: engine:2.4.0
    boot_test: true
    boot_timeout: 180
  register: upgrade_boot
  failed_when: not upgrade_boot.migration.boot_test.target_healthy

- name: A brain that records its schema version in PRAGMA user_version, on a volume
  september.engine.migration_check:
    volume: engine-data-sept-u002
    target_image: registry.example.com/september-engine:3.0.0
    current_image: registry.example.com/september-engine:2.4.0
    migrations_source: user_version
  register: upgrade_plan_v3
"""

RETURN = r"""
migration:
  description: What upgrading the brain to O(target_image) would do.
  returned: success
  type: dict
  contains:
    brain_path:
      description: The brain that was read, on the Docker host.
      type: str
      returned: success
      sample: /var/lib/docker/volumes/engine-data-sept-u001/_data/brain.sqlite
    current_image:
      description: The image the Engine runs now (O(current_image) or that of O(container)), or null.
      type: str
      returned: success
      sample: engine:2.3.0
    current_version:
      description: The current image's version (O(version_label), else its tag), or null.
      type: str
      returned: success
      sample: 2.3.0
    target_image:
      description: O(target_image).
      type: str
      returned: success
      sample: engine:2.4.0
    target_version:
      description: The target image's version (O(version_label), else its tag), or null.
      type: str
      returned: success
      sample: 2.4.0
    bump:
      description: From the current to the target version; null when either is unknown or not MAJOR.MINOR.PATCH.
      type: str
      returned: success
      sample: minor
      choices: [none, patch, minor, major, downgrade]
    applied:
      description: The migrations the brain records as applied, as recorded, oldest first.
      type: list
      elements: str
      returned: success
      sample: ["0001", "0002", "0003", "0004", "0005"]
    shipped:
      description: The migrations the target image ships (file names without C(.sql)), in order.
      type: list
      elements: str
      returned: success
      sample: ["0001_core", "0002_memory", "0003_social_graph", "0004_learning", "0005_ingestion", "0006_episode_tags"]
    pending:
      description: The shipped migrations the brain lacks, in the order the target would apply them.
      type: list
      elements: dict
      returned: success
      contains:
        name:
          description: File name without C(.sql).
          type: str
          returned: success
          sample: 0006_episode_tags
        version:
          description: The number the file name starts with, as written.
          type: str
          returned: success
          sample: "0006"
        classification:
          description: What it does to data.
          type: str
          returned: success
          sample: additive
          choices: [additive, destructive, unknown]
        reasons:
          description: What it does, destructive actions first (or why it could not be classified).
          type: list
          elements: str
          returned: success
          sample: ["adds column episodes.tag_count", "creates table memory_tags", "creates index idx_memory_tags_tag"]
      sample: [{"name": "0006_episode_tags", "version": "0006", "classification": "additive",
                "reasons": ["adds column episodes.tag_count", "creates table memory_tags"]}]
    not_shipped:
      description: Applied migrations the target does not ship (they make RV(migration.is_downgrade) true).
      type: list
      elements: str
      returned: success
      sample: []
    is_forward_only:
      description: Migrations would run, after which the current version can no longer start on the brain.
      type: bool
      returned: success
      sample: true
    is_destructive:
      description: At least one pending migration is V(destructive).
      type: bool
      returned: success
      sample: false
    unclassified:
      description:
        - Pending migrations whose effect could not be classified (V(unknown)), because this node's SQLite could not run
          them on the schema copy (a C(DROP COLUMN) on SQLite older than 3.35, a virtual-table module it lacks).
          They may drop or rewrite data as well; treat them as destructive.
      type: list
      elements: str
      returned: success
      sample: []
    needs_acknowledgement:
      description:
        - A pending migration is V(destructive) or V(unknown), so an upgrade must not proceed without an explicit
          acknowledgement and a snapshot retained at least RV(migration.snapshot_retention_days) days.
      type: bool
      returned: success
      sample: false
    is_downgrade:
      description:
        - The brain holds migrations the target does not ship; the target would refuse it (C(MIGRATION_REQUIRED)).
      type: bool
      returned: success
      sample: false
    rollback_strategy:
      description:
        - V(none) nothing would change (same release, no pending migration).
        - V(image) the brain stays as it is, going back to the current image is enough.
        - V(brain_restore) the brain would be migrated, going back needs the brain snapshot taken before the upgrade.
      type: str
      returned: success
      sample: brain_restore
      choices: [none, image, brain_restore]
    snapshot_retention_days:
      description:
        - Days to keep the pre-upgrade snapshot at least, V(7) when a pending migration is destructive or could not be
          classified; null otherwise (keep it by the usual retention).
      type: int
      returned: success
      sample: null
    warnings:
      description: What the operator should know before upgrading (empty when nothing stands out).
      type: list
      elements: str
      returned: success
      sample: ["engine:2.3.1 is a patch release but ships migration(s) 0006_episode_tags: ..."]
    boot_test_reasons:
      description:
        - Why this upgrade should be boot-tested on a copy of the brain first (a major release, destructive or
          unclassified migrations); empty when none applies. M(september.engine.engine_preflight) boot-tests when
          it is not empty.
      type: list
      elements: str
      returned: success
      sample: ["a major upgrade (2.4.0 to 3.0.0)", "destructive migration(s) 0007_drop_legacy"]
    boot_test:
      description: What the boot test saw (O(boot_test=true)); null otherwise.
      type: dict
      returned: success
      contains:
        target_healthy:
          description: The target became healthy on the copy of the brain.
          type: bool
          returned: success
          sample: true
        image_rollback_works:
          description: The current image became healthy on the copy migrated by the target.
          type: bool
          returned: success
          sample: false
        applied_after_target:
          description: The migrations the copy records after the target ran (null if it could not be read).
          type: list
          elements: str
          returned: success
          sample: ["0001", "0002", "0003", "0004", "0005", "0006"]
        target:
          description: How the target's container did.
          type: dict
          returned: success
          contains:
            image:
              description: The image started.
              type: str
              returned: success
              sample: engine:2.4.0
            is_healthy:
              description: C(/health) answered 200 with status C(ok) within O(boot_timeout).
              type: bool
              returned: success
              sample: true
            failure:
              description: Why it did not become healthy.
              type: str
              returned: success
              sample: none
              choices: [none, migration_required, exited, unhealthy, unreachable]
            exit_code:
              description: Exit code when it exited by itself, else null.
              type: int
              returned: success
              sample: null
            http_status:
              description: HTTP status of the last health probe, or null.
              type: int
              returned: success
              sample: 200
            elapsed:
              description: Seconds from creating the container to the verdict.
              type: float
              returned: success
              sample: 1.84
            message:
              description: The last error it logged (the C(MIGRATION_REQUIRED) line when it refused the brain), or null.
              type: str
              returned: success
              sample: null
        current:
          description:
            - How the current image's container did on the copy the target had migrated.
            - Same keys as RV(migration.boot_test.target).
          type: dict
          returned: success
          sample: {"image": "engine:2.3.0", "is_healthy": false, "failure": "migration_required", "exit_code": 3,
                   "http_status": null, "elapsed": 1.2, "message": "MIGRATION_REQUIRED: the brain holds ..."}
"""

from ansible_collections.september.engine.plugins.module_utils._brain import (
    BRAIN_MUTUALLY_EXCLUSIVE,
    BRAIN_REQUIRED_ONE_OF,
    brain_module_specs,
    migration_files_argument_spec,
)
from ansible_collections.september.engine.plugins.module_utils._migration_check import MigrationCheck
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule


def main() -> None:
    argument_spec = dict(
        target_image=dict(type="str", required=True),
        current_image=dict(type="str"),
        boot_test=dict(type="bool", default=False),
        boot_timeout=dict(type="int", default=120),
        boot_test_dir=dict(type="path"),
        api_key_env=dict(type="str", default="ENGINE_API_KEY", no_log=False),
        env=dict(type="dict", no_log=True),
    )
    module = EngineModule(argument_spec, shared=[*brain_module_specs(lock=False), migration_files_argument_spec()],
                          docker=True, mutually_exclusive=BRAIN_MUTUALLY_EXCLUSIVE,
                          required_one_of=BRAIN_REQUIRED_ONE_OF)
    module.run(lambda: dict(migration=MigrationCheck(module.params, hide=module.no_log_values.add).run()))


if __name__ == "__main__":
    main()
