# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The files a replay compares, and the rollback's entry point.

After a rollback with a brain restore, the brain the failed release wrote is kept as a `pre-restore` snapshot next
to the `pre-upgrade` snapshot it was replaced with. find_bad_window() and find_baseline() find that pair (by name,
by path, or from the manifests), check_owner() refuses another Engine's files, and the rollback calls
replay_after_restore() between install_restore() and the switch back:

    previous = install_restore(plan, client=..., defer_keep=True)       # the Engine is stopped
    replay = replay_after_restore(plan, previous, client=..., mode="replay", migrations=params)
    ...                                                                 # switch back, start, complete_restore()
"""

from __future__ import annotations

import os
import re

from ansible_collections.september.engine.plugins.module_utils._brain import holders
from ansible_collections.september.engine.plugins.module_utils._errors import (
    EngineBusyError,
    ForeignSnapshotError,
    NotFoundError,
    OptionsError,
    SnapshotError,
)
from ansible_collections.september.engine.plugins.module_utils._replay import BrainReplay, resolve_mode
from ansible_collections.september.engine.plugins.module_utils._restore import find_snapshot
from ansible_collections.september.engine.plugins.module_utils._snapshot_store import (
    DATA_SUFFIX,
    SAME,
    SnapshotStore,
    describe_engine,
    engine_binding,
    matching,
)
from ansible_collections.september.engine.plugins.module_utils._timeutil import parse_iso

# What _restore writes into the kept brain's reason: "pre-restore: brain replaced by restore of <snapshot>[: ...]".
_RESTORED_FROM = re.compile(r"brain replaced by restore of ([A-Za-z0-9][A-Za-z0-9._-]*)")


def _plain_file(path: str) -> dict:
    """A brain given by path that has no manifest beside it: what a snapshot entry says, as far as it is known."""
    path = os.path.abspath(path)
    return dict(name=None, path=path, manifest={}, kind=None, created_at=None, engine_key=None, raw_copy=False)


def find_file(store: SnapshotStore | None, value: str, option: str, warnings: list) -> dict:
    """The snapshot `value` (a name in dest, or a path of its .sqlite file) as a store entry; a path without a
    manifest beside it is taken as a plain SQLite file (with a warning: whose brain it is cannot be checked)."""
    if os.sep in value:
        path = os.path.abspath(value)
        name = os.path.basename(path)
        name = name[: -len(DATA_SUFFIX)] if name.endswith(DATA_SUFFIX) else name
        if os.path.isfile(path) and SnapshotStore(os.path.dirname(path)).load_manifest(name) is None:
            warnings.append(f"{option} {path} has no snapshot manifest beside it: it is used as it is, and whose "
                            "brain it is cannot be checked.")
            return _plain_file(path)
    elif store is None:
        raise OptionsError(f"{option}={value} names a snapshot: give dest (the snapshot folder), or a path.")
    return find_snapshot(store or SnapshotStore(os.path.dirname(os.path.abspath(value))), value)


def find_bad_window(store: SnapshotStore | None, value: str | None, key: str, warnings: list) -> dict:
    """The kept bad-window brain: `value` (name or path), else the newest pre-restore snapshot of the Engine `key`
    in the store."""
    if value:
        entry = find_file(store, value, "bad_window", warnings)
    else:
        if store is None:
            raise OptionsError("Give bad_window (a snapshot name or path), or dest to find the newest pre-restore "
                               "snapshot of this Engine in.")
        entry = next((e for e in matching(store.list(), key=key, kind="pre-restore") if not e["raw_copy"]), None)
        if entry is None:
            raise NotFoundError(
                f"There is no pre-restore snapshot of this Engine ({key}) in {store.dest}: nothing was restored "
                "over its brain (or it was kept elsewhere). Give bad_window=<name or path>."
            )
    if entry["raw_copy"]:
        raise SnapshotError(
            f"The bad-window brain {entry['name']} is a raw copy of a brain that could not be read as a database: "
            "its rows cannot be compared or replayed. It stays kept as evidence."
        )
    return entry


def restored_from(manifest: dict) -> str | None:
    """The snapshot a pre-restore snapshot's restore came from, when its manifest records it."""
    if manifest.get("restored_from"):
        return str(manifest["restored_from"])
    match = _RESTORED_FROM.search(str(manifest.get("reason") or ""))
    return match.group(1) if match else None


def find_baseline(store: SnapshotStore | None, value: str | None, bad_window: dict, key: str,
                  warnings: list) -> dict:
    """The snapshot the bad-window brain is compared with: `value` (name or path); else the one its restore came
    from, as its manifest records it; else the newest pre-upgrade snapshot of the Engine `key` taken before it."""
    if value:
        return find_file(store, value, "baseline", warnings)
    folder = SnapshotStore(os.path.dirname(bad_window["path"]))
    recorded = restored_from(bad_window["manifest"])
    for candidate in [folder] + ([store] if store is not None and store.dest != folder.dest else []):
        entry = candidate.get(recorded) if recorded else None
        if entry is not None and not entry["raw_copy"]:
            return entry
    if recorded:
        warnings.append(f"The bad-window brain was restored over from snapshot {recorded}, which is gone: the "
                        "newest pre-upgrade snapshot of this Engine taken before it is used instead.")
    before = parse_iso(bad_window.get("created_at"))
    for candidate in matching((store or folder).list(), key=key, kind="pre-upgrade"):
        created = parse_iso(candidate.get("created_at"))
        if not candidate["raw_copy"] and (before is None or created is None or created <= before):
            return candidate
    raise NotFoundError(
        f"No pre-upgrade snapshot of this Engine ({key}) to compare the bad-window brain with was found in "
        f"{(store or folder).dest}: give baseline=<name or path>."
    )


def check_owner(entry: dict, key: str, option: str, allow_other_engine: bool, warnings: list) -> None:
    """ForeignSnapshotError unless the snapshot belongs to the Engine `key` (or `allow_other_engine`): a replay of
    another Engine's rows would give this Engine another user's memory."""
    if not entry["manifest"] or engine_binding(entry["manifest"], key) == SAME:
        return
    owner = describe_engine(entry["manifest"])
    if allow_other_engine:
        warnings.append(f"{option} {entry['name']} belongs to {owner}, not to this Engine ({key}); used anyway "
                        "(allow_other_engine=true).")
        return
    raise ForeignSnapshotError(
        f"{option} {entry['name']} belongs to {owner}, not to this Engine ({key}): replaying its rows would give "
        "this Engine another Engine's memory (another user's). Nothing was changed. Name this Engine's snapshots, "
        "or set allow_other_engine=true for a deliberate migration.",
        snapshot_engine=entry["engine_key"], engine=key,
    )


def check_order(bad_window: dict, baseline: dict) -> None:
    """OptionsError when the bad-window brain was kept before its baseline was taken (the two swapped?)."""
    kept, taken = parse_iso(bad_window.get("created_at")), parse_iso(baseline.get("created_at"))
    if kept is not None and taken is not None and kept < taken:
        raise OptionsError(
            f"The bad-window brain {bad_window['name']} ({bad_window['created_at']}) is older than the baseline "
            f"{baseline['name']} ({baseline['created_at']}): are bad_window and baseline swapped? Nothing was changed."
        )


def require_stopped(client, location, engine_container: str | None = None) -> None:
    """EngineBusyError (nothing changed) when anything holds the restored brain: its Engine's container running,
    another running container that mounts its folder, or a process that has it open."""
    reasons = holders(client, location, engine_container, engine_may_run=False)
    if reasons:
        raise EngineBusyError(
            f"Refusing to replay onto the brain at {location.path}: it is in use ({'; '.join(reasons)}). A replay "
            "writes only while its Engine is stopped: stop it (september.engine.engine_container state=stopped), "
            "replay, then start it. Nothing was changed.",
            holders=reasons,
        )


# ---------------------------------------------------------------- the rollback's entry point


def default_mode(migration: dict | None) -> str:
    """The replay mode of a rollback, from the upgrade's migration report (migration_check's `migration`):
    "report" when a migration of the bad release is destructive or could not be classified, else "replay". (Without
    that report, mode "auto" decides from the two brains' schemas.)"""
    if migration and (migration.get("is_destructive") or migration.get("needs_acknowledgement")):
        return "report"
    return "replay"


def replay_after_restore(plan, previous: dict | None, *, client, mode: str = "replay", tables: dict | None = None,
                         migrations: dict | None = None, check_mode: bool = False,
                         warnings: list | None = None) -> dict | None:
    """engine_rollback: replay the bad window onto the brain install_restore() just restored (its Engine stopped).

    `plan`: the RestorePlan (the brain: plan.location; the snapshot restored, the baseline: plan.entry).
    `previous`: what install_restore() returned (the kept bad-window brain: previous["path"], its hidden path while
    its commit is deferred, and previous["name"]). `mode`: replay | report | off | auto (replay when the bad
    release's migrations only added to the old schema, else report). In check mode the restore did not
    happen: the current brain is compared with the snapshot and the result predicted (nothing is written; rows are
    not tried against the old schema's constraints). Returns the replay result (see brain_replay's RETURN), None
    when there is nothing to replay (mode off, nothing replaced, a raw copy kept). Raises EngineBusyError when
    something holds the brain, BrainError when the replay as a whole failed: in both cases the restored brain was
    not changed, and the rollback should go on (a warning): the bad-window brain stays kept.
    """
    if mode == "off" or plan.noop:
        return None
    if check_mode:
        mode, why = resolve_mode(mode, plan.brain, plan.entry["path"])
        result = BrainReplay(plan.entry["path"], plan.brain, plan.entry["path"], mode="report", tables=tables,
                             migrations=migrations, warnings=warnings).run()
        result.update(mode=mode, brain=plan.brain, predicted=True, actions=[])
    else:
        if previous is None or previous.get("raw_copy"):
            return None
        mode, why = resolve_mode(mode, previous["path"], plan.entry["path"])
        if mode == "replay":
            require_stopped(client, plan.location, plan.engine_container)
        replay = BrainReplay(plan.brain, previous["path"], plan.entry["path"], mode=mode, tables=tables,
                             migrations=migrations, warnings=warnings)
        result = replay.run()
        result["actions"] = replay.actions
    result["mode_reason"] = why
    result["bad_window"] = dict(name=(previous or {}).get("name"), path=(previous or {}).get("path"))
    result["baseline"] = dict(name=plan.entry["name"], path=plan.entry["path"])
    return result
