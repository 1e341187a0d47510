#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: brain_replay
short_description: Find what a rolled back release wrote in its bad window, and replay it onto the restored brain
version_added: 0.4.0
description:
  - Compares the brain a rollback replaced (O(bad_window), kept as a C(pre-restore) snapshot) with the snapshot the
    brain was restored from (O(baseline)), both opened read only, and finds per table the rows inserted, updated and
    deleted in the bad window, by primary key (by rowid for a table without one).
  - With O(mode=replay), writes onto the restored brain, in one transaction while the Engine is stopped, what the
    old schema can hold, inserted rows of tables it has (without the columns it lacks), and updates of rows the
    restored brain still holds as the snapshot had them. It never deletes, and never overwrites a row whose key the
    restored brain holds with other values (a conflict).
  - A row that violates a constraint of the old schema is skipped and listed with SQLite's reason while the rest
    commits.
  - What is not replayed is listed per table with the reason and sample keys (RV(replay.tables)); it stays in the
    bad-window brain (RV(replay.bad_window.path)).
  - O(mode=report) compares and lists only (the Engine may run). O(mode=off) does nothing.
author:
  - September Engine maintainers (@september-engine)
options:
  mode:
    description:
      - V(replay) writes onto the restored brain (its Engine must be stopped; the module refuses with nothing changed
        while a running container mounts the brain or a process holds it open). V(report) only compares and lists.
        V(off) does nothing (for a role variable that turns the step off).
      - V(auto) is V(replay) when the bad release's migrations only added to the old schema, and V(report) when they
        took something away (a table, a column or a primary key of the old schema is missing from the bad-window
        brain); RV(replay.mode) says which, RV(replay.mode_reason) why.
    type: str
    choices: [replay, report, "off", auto]
    default: replay
  bad_window:
    description:
      - The kept bad-window brain, a snapshot name in O(dest) or the path of its C(.sqlite) file. A path without a
        manifest beside it is used as a plain SQLite file (with a warning, since whose brain it is cannot be
        checked).
      - Default, the newest C(pre-restore) snapshot of this Engine in O(dest).
    type: str
  baseline:
    description:
      - The pre-upgrade snapshot the brain was restored from, a snapshot name in O(dest) or a path.
      - Default, the snapshot the bad-window brain's restore came from (its manifest records it), else the newest
        C(pre-upgrade) snapshot of this Engine in O(dest) taken before the bad-window brain was kept.
    type: str
  dest:
    description: The snapshot folder on the Docker host; needed unless both O(bad_window) and O(baseline) are paths.
    type: path
  tables:
    description: Which tables to replay; the others are compared and listed as excluded. Shell patterns (C(*_vec)).
    type: dict
    suboptions:
      include:
        description: Replay only the tables that match one of these (default every table).
        type: list
        elements: str
      exclude:
        description: Never replay the tables that match one of these.
        type: list
        elements: str
        default: []
  allow_other_engine:
    description:
      - Use a bad-window brain or baseline whose manifest names another Engine (a deliberate migration). Without it
        they are refused.
    type: bool
    default: false
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
      - With O(mode=replay), does the whole replay in a transaction that is rolled back, so the counts (constraint
        violations included) are what a real run would do; the brain is not changed. The same refusals apply.
  diff_mode:
    support: full
    details:
      - Rows per table of the restored brain, before and after, for the tables the bad window wrote to.
  idempotent:
    support: full
    details:
      - Rows already replayed are C(already_there); a second replay writes nothing.
notes:
  - The table that records migrations (O(migrations_table)) is never replayed.
  - A table whose primary key differs between the two schemas, a virtual table, and a table without a key or usable
    rowid cannot be matched row by row; their rows are listed as not replayable.
  - Deferred foreign keys (C(DEFERRABLE INITIALLY DEFERRED)) are checked only when the transaction commits; a
    violation there fails the whole replay (nothing changed).
  - See docs/modules.md in the collection for how rows are matched and what is never replayed, and why.
seealso:
  - module: september.engine.brain_snapshot
  - module: september.engine.engine_rollback
"""

EXAMPLES = r"""
- name: Replay what the bad release wrote, as far as the old schema holds it (the Engine stopped)
  september.engine.brain_replay:
    container: sept-u001
    dest: /var/backups/engine
  register: engine_replay
  failed_when: engine_replay.failed or engine_replay.replay.totals.not_replayable > 100

- name: Only list what a destructive release wrote, from named snapshots
  september.engine.brain_replay:
    volume: engine-data-sept-u002
    dest: /var/backups/engine
    mode: report
    bad_window: brain-engine-data-sept-u002-pre-restore-20260301T031500Z
    baseline: pre-upgrade-2.3.0-to-3.0.0
    tables:
      exclude: ["observability_events"]
  register: engine_bad_window
"""

RETURN = r"""
replay:
  description: What the bad window wrote, what was replayed, what could not be and why.
  returned: always
  type: dict
  contains:
    mode:
      description: V(replay), V(report) or V(off); what V(auto) became.
      type: str
      returned: always
      sample: replay
    mode_reason:
      description: Why V(auto) chose the mode (null unless O(mode=auto)).
      type: str
      returned: unless mode is off
      sample: "the bad release's migrations were destructive (table channel_state_snapshots dropped)"
    brain:
      description: The restored brain (written to with V(replay)); null with V(off).
      type: str
      returned: always
      sample: /var/lib/docker/volumes/engine-data-sept-u001/_data/brain.sqlite
    bad_window:
      description: The bad-window brain; what was not replayed stays there.
      type: dict
      returned: unless mode is off
      contains:
        name:
          description: Its snapshot name (null for a plain file given by path).
          type: str
          returned: success
          sample: brain-engine-data-sept-u001-pre-restore-20260301T031500Z
        path:
          description: Its database file.
          type: str
          returned: success
          sample: /var/backups/engine/brain-engine-data-sept-u001-pre-restore-20260301T031500Z.sqlite
    baseline:
      description: The snapshot compared with.
      type: dict
      returned: unless mode is off
      contains:
        name:
          description: Its snapshot name (null for a plain file given by path).
          type: str
          returned: success
          sample: pre-upgrade-2.3.0-to-2.4.2
        path:
          description: Its database file.
          type: str
          returned: success
          sample: /var/backups/engine/pre-upgrade-2.3.0-to-2.4.2.sqlite
    predicted:
      description: Nothing was written (check mode, or V(report)); the counts say what a replay does or would do.
      type: bool
      returned: unless mode is off
      sample: false
    tables:
      description:
        - Per table the bad window wrote to (or that could not be compared), C(written_in_bad_window) (C(inserted),
          C(updated), C(deleted)), C(replayable) (C(inserted), C(updated), what the old schema can hold and the
          restored brain lacks), C(replayed) (C(inserted), C(updated); zero with V(report)), C(already_there),
          C(not_replayable) (a list of C(reason), C(count), C(sample) keys), C(dropped_columns) (columns of the new
          schema the old one lacks, not replayed) and C(defaulted_columns) (columns the rows lack, left to their
          default).
      type: dict
      returned: unless mode is off
      sample:
        tasks:
          written_in_bad_window: {"inserted": 120, "updated": 2, "deleted": 0}
          replayable: {"inserted": 120, "updated": 2}
          replayed: {"inserted": 120, "updated": 2}
          already_there: 0
          not_replayable: []
          dropped_columns: []
          defaulted_columns: []
        memory_tags:
          written_in_bad_window: {"inserted": 80, "updated": 0, "deleted": 0}
          replayable: {"inserted": 0, "updated": 0}
          replayed: {"inserted": 0, "updated": 0}
          already_there: 0
          not_replayable:
            - {"reason": "table not in the old schema", "count": 80, "sample": [["5f0c1e2a", "arithmetic"]]}
          dropped_columns: []
          defaulted_columns: []
    totals:
      description: The sums over the tables (C(not_replayable) a count), and C(tables), the number compared.
      type: dict
      returned: unless mode is off
      sample: {"written_in_bad_window": {"inserted": 900, "updated": 40, "deleted": 0},
               "replayable": {"inserted": 820, "updated": 40}, "replayed": {"inserted": 820, "updated": 40},
               "already_there": 0, "not_replayable": 81, "tables": 24}
    seconds:
      description: How long the comparison and replay took.
      type: float
      returned: unless mode is off
      sample: 0.42
actions:
  description: What was written (or, in check mode, would be).
  returned: always
  type: list
  elements: str
  sample: ["insert 120 row(s) of tasks", "update 2 row(s) of skill_library"]
"""

from ansible_collections.september.engine.plugins.module_utils._bad_window import (
    check_order,
    check_owner,
    find_bad_window,
    find_baseline,
    require_stopped,
)
from ansible_collections.september.engine.plugins.module_utils._brain import (
    BRAIN_MUTUALLY_EXCLUSIVE,
    BRAIN_REQUIRED_ONE_OF,
    brain_identity,
    brain_module_specs,
    locate_brain,
    reading,
)
from ansible_collections.september.engine.plugins.module_utils._brain_rows import table_row_counts
from ansible_collections.september.engine.plugins.module_utils._docker import (
    check_docker_sdk,
    docker_client,
)
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule
from ansible_collections.september.engine.plugins.module_utils._replay import MODES, BrainReplay, resolve_mode
from ansible_collections.september.engine.plugins.module_utils._snapshot_store import SnapshotStore


class BrainReplayModule:
    """Find the bad-window brain and its baseline for one Engine's restored brain; compare; replay."""

    def __init__(self, module: EngineModule):
        self.module = module
        self.params = module.params
        self.warnings: list[str] = module.notes  # reported by the module, succeeded or not

    def run(self) -> dict:
        p = self.params
        if p["mode"] == "off":
            return dict(changed=False, replay=dict(mode="off", brain=None), actions=[])
        check_docker_sdk(self.module)
        client = docker_client(p)
        location = locate_brain(p, client)
        key = brain_identity(client, location)["key"]
        store = SnapshotStore(p["dest"]) if p["dest"] else None
        bad = find_bad_window(store, p["bad_window"], key, self.warnings)
        base = find_baseline(store, p["baseline"], bad, key, self.warnings)
        for option, entry in (("bad_window", bad), ("baseline", base)):
            check_owner(entry, key, option, p["allow_other_engine"], self.warnings)
        check_order(bad, base)
        mode, why = resolve_mode(p["mode"], bad["path"], base["path"])
        if mode == "replay":
            require_stopped(client, location)
        before = self._rows(location.path) if self.module._diff else None  # before anything is written
        replay = BrainReplay(location.path, bad["path"], base["path"], mode=mode, dry_run=self.module.check_mode,
                             tables=p["tables"], migrations=p, warnings=self.warnings)
        result = replay.run()
        result.update(bad_window=dict(name=bad["name"], path=bad["path"]),
                      baseline=dict(name=base["name"], path=base["path"]), mode_reason=why)
        replayed = result["totals"]["replayed"]
        out = dict(changed=mode == "replay" and bool(replayed["inserted"] + replayed["updated"]),
                   replay=result, actions=replay.actions)
        if before is not None:
            out["diff"] = self._diff(location.path, before, result)
        return out

    @staticmethod
    def _rows(path: str) -> dict:
        with reading(path, predict_only=True) as conn:
            return table_row_counts(conn)

    @staticmethod
    def _diff(path: str, rows: dict, result: dict) -> dict:
        """Rows of the tables the bad window wrote to, before and after (the tables the restored brain has)."""
        names = [name for name in result["tables"] if name in rows]
        inserted = {name: result["tables"][name]["replayed"]["inserted"] for name in names}
        return dict(before=dict(brain=path, rows={name: rows[name] for name in names}),
                    after=dict(brain=path, rows={name: rows[name] + inserted[name] for name in names}))


def main() -> None:
    argument_spec = dict(
        mode=dict(type="str", default="replay", choices=list(MODES)),
        bad_window=dict(type="str"),
        baseline=dict(type="str"),
        dest=dict(type="path"),
        tables=dict(type="dict", options=dict(
            include=dict(type="list", elements="str"),
            exclude=dict(type="list", elements="str", default=[]),
        )),
        allow_other_engine=dict(type="bool", default=False),
    )
    module = EngineModule(argument_spec, shared=brain_module_specs(), mutually_exclusive=BRAIN_MUTUALLY_EXCLUSIVE,
                          required_one_of=BRAIN_REQUIRED_ONE_OF)
    module.run(lambda: BrainReplayModule(module).run(), locked=True)


if __name__ == "__main__":
    main()
