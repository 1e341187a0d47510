# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """Where an Engine's brain is (private fragment, paired with module_utils/_brain.py)."""

    DOCUMENTATION = r"""
options:
  container:
    description:
      - Name or id of the Engine's container. Its brain is found through the Docker API, on whatever is mounted at
        O(data_dir) inside it (a named volume or a bind mount).
      - Exactly one of O(container), O(volume) and O(path) locates the brain.
    type: str
  volume:
    description: Name of the Docker volume that holds the brain (the Engine's C(/data)).
    type: str
  path:
    description:
      - Path to the brain file on the Docker host.
      - With O(path), O(brain_file) is ignored.
    type: path
  brain_file:
    description: File name of the brain inside the volume or mount.
    type: str
    default: brain.sqlite
  data_dir:
    description: Where the Engine mounts its data inside the container (with O(container)).
    type: str
    default: /data
"""

    # How an Engine records the migrations it applied: not documented by the Engine, so configurable.
    MIGRATIONS = r"""
options:
  migrations_source:
    description:
      - How the brain records the migrations applied to it.
      - V(table) reads the versions from O(migrations_table).O(migrations_column)
        (the reference Engine's way is C(engine_schema_migrations.version)).
      - V(user_version) reads C(PRAGMA user_version) and takes every migration numbered up to it as applied.
      - A version is the number a migration's file name starts with (C(0006_episode_tags.sql) is 6).
    type: str
    choices: [table, user_version]
    default: table
  migrations_table:
    description: Table holding one row per applied migration (with O(migrations_source=table)).
    type: str
    default: engine_schema_migrations
  migrations_column:
    description: Column of O(migrations_table) holding the migration's version or file name.
    type: str
    default: version
"""

    # Where the Engine's images ship their migrations and say their release.
    MIGRATION_FILES = r"""
options:
  migrations_dir:
    description: Folder inside the images where they ship their migration files C(NNNN_name.sql).
    type: str
    default: /app/migrations
  version_label:
    description: Image label holding the release version; when an image lacks it, the version is its tag.
    type: str
    default: org.opencontainers.image.version
"""
