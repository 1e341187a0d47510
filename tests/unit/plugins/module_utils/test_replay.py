# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""module_utils/_replay.py and _bad_window.py on real SQLite brains written by the reference Engine's own code and
migrations: 0001-0005 is the old schema (2.3.x), 0006 the additive 2.4.x one, 0006-0008 the destructive 3.0.0."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time

import pytest

from ansible_collections.september.engine.plugins.module_utils import _replay
from ansible_collections.september.engine.plugins.module_utils._bad_window import (
    check_order,
    check_owner,
    default_mode,
    find_bad_window,
    find_baseline,
    replay_after_restore,
    require_stopped,
    restored_from,
)
from ansible_collections.september.engine.plugins.module_utils._brain import BrainLocation
from ansible_collections.september.engine.plugins.module_utils._errors import (
    BrainError,
    EngineBusyError,
    ForeignSnapshotError,
    NotFoundError,
    OptionsError,
)
from ansible_collections.september.engine.plugins.module_utils._fileops import sha256_file
from ansible_collections.september.engine.plugins.module_utils._replay import (
    BrainReplay,
    read_shapes,
    resolve_mode,
    schema_losses,
)
from ansible_collections.september.engine.plugins.module_utils._restore import (
    abort_restore,
    complete_restore,
    install_restore,
    stage_restore,
)
from engine_testkit.bad_window import make_brain, migrate, rows, write_turns

MIGRATIONS = dict(migrations_source="table", migrations_table="engine_schema_migrations", migrations_column="version")
OLD = [f"000{n}" for n in range(1, 6)]


def connect(path):
    return sqlite3.connect(path, isolation_level=None)


def copy(source, target) -> str:
    """A copy of a brain file, its WAL checkpointed into it first (what a snapshot holds)."""
    conn = connect(source)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    shutil.copyfile(source, target)
    return str(target)


def keyed(path, table) -> dict:
    """{primary key: {column: value}} of a table, read with plain SQL (the test's own oracle)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
        if not info:
            return {}
        key = [row[1] for row in sorted(info, key=lambda row: row[5]) if row[5]] or ["rowid"]
        names = [row[1] for row in info]
        out = {}
        for row in conn.execute(f'SELECT {", ".join(key)}, * FROM "{table}"'):
            out[tuple(row[:len(key)])] = dict(zip(names, row[len(key):], strict=True))
        return out
    finally:
        conn.close()


def oracle(old, new, table) -> dict:
    """Inserted / updated / deleted between two brains for one table, computed in Python."""
    before, after = keyed(old, table), keyed(new, table)
    updated = 0
    for key in set(before) & set(after):
        shared = set(before[key]) & set(after[key])
        updated += any(before[key][c] != after[key][c] for c in shared)
    return dict(inserted=len(set(after) - set(before)), updated=updated, deleted=len(set(before) - set(after)))


def everything(folder) -> dict:
    return {name: sha256_file(os.path.join(folder, name)) for name in sorted(os.listdir(folder))}


class Scene:
    """An Engine's brain on 2.3.x, its pre-upgrade copy, the bad window on a newer schema, and the restored brain."""

    def __init__(self, tmp_path, upto=6, prepare=None, bad_window=None, bad_turns=10):
        self.folder = tmp_path / "data"
        self.folder.mkdir()
        live = make_brain(tmp_path / "live.sqlite", 5)
        self.before = write_turns(live, 8, seed=1)
        if prepare:
            conn = connect(live)
            prepare(conn)
            conn.close()
        self.baseline = copy(live, tmp_path / "baseline.sqlite")
        migrate(live, upto)
        self.written = write_turns(live, bad_turns, seed=2, conversation_id="c-1000")
        if bad_window:
            conn = connect(live)
            bad_window(conn)
            conn.close()
        self.bad = copy(live, tmp_path / "bad.sqlite")
        self.brain = copy(self.baseline, self.folder / "brain.sqlite")

    def replay(self, **kwargs) -> dict:
        kwargs.setdefault("migrations", MIGRATIONS)
        return BrainReplay(self.brain, self.bad, self.baseline, **kwargs).run()


def reasons(result, table) -> dict:
    return {entry["reason"]: entry for entry in result["tables"][table]["not_replayable"]}


# ---------------------------------------------------------------- the comparison


def test_finds_inserted_updated_and_deleted_rows_per_table(tmp_path):
    def bad_window(conn):
        conn.execute("DELETE FROM learning_signals WHERE rowid IN (SELECT rowid FROM learning_signals LIMIT 2)")
        conn.execute("UPDATE tasks SET answer = 'corrected' WHERE message IN ('what is 1000 + 0', 'hello 1001', "
                     "'what is 1002 + 2')")  # three turns of before the upgrade

    scene = Scene(tmp_path, bad_window=bad_window)
    result = scene.replay(mode="report")
    assert result["predicted"] and result["mode"] == "report"
    new = sqlite3.connect(f"file:{scene.bad}?mode=ro&immutable=1", uri=True)
    tables = [row[0] for row in new.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                                            "'sqlite%'")]
    new.close()
    checked = 0
    for table in tables:
        expected = oracle(scene.baseline, scene.bad, table)
        if not any(expected.values()):
            assert table not in result["tables"], table
            continue
        assert result["tables"][table]["written_in_bad_window"] == expected, table
        checked += 1
    assert checked >= 10
    tasks = result["tables"]["tasks"]["written_in_bad_window"]
    assert tasks["inserted"] == 10 and tasks["updated"] >= 3 and tasks["deleted"] == 0
    deleted = reasons(result, "learning_signals")[_replay.DELETED]
    assert deleted["count"] == 2 and len(deleted["sample"]) == 2
    assert result["tables"]["skill_library"]["written_in_bad_window"]["updated"] > 0
    assert result["tables"]["episodes"]["dropped_columns"] == ["tag_count"]
    assert result["totals"]["replayed"] == dict(inserted=0, updated=0)
    assert result["totals"]["replayable"]["inserted"] == sum(
        t["written_in_bad_window"]["inserted"] for name, t in result["tables"].items()
        if name not in ("memory_tags", "engine_schema_migrations"))


def test_shapes_keys_of_every_kind(tmp_path):
    path = str(tmp_path / "shapes.sqlite")
    with connect(path) as conn:
        conn.executescript("""
            CREATE TABLE a (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
            CREATE TABLE b (k TEXT PRIMARY KEY, v TEXT);
            CREATE TABLE c (x TEXT, y TEXT, PRIMARY KEY (y, x)) WITHOUT ROWID;
            CREATE TABLE d (v TEXT);
            CREATE TABLE e (rowid TEXT, _rowid_ TEXT, oid TEXT);
            CREATE TABLE f (id INT PRIMARY KEY, v TEXT);
            CREATE VIRTUAL TABLE g USING fts5(body);
        """)
        shapes = read_shapes(conn, "main")
    assert (shapes["a"].key, shapes["a"].key_kind, shapes["a"].autoincrement) == (["id"], "integer primary key", True)
    assert (shapes["b"].key, shapes["b"].key_kind, shapes["b"].values) == (["k"], "primary key", ["v"])
    assert (shapes["c"].key, shapes["c"].key_kind) == (["y", "x"], "primary key")
    assert (shapes["d"].key, shapes["d"].key_kind, shapes["d"].values) == (["rowid"], "rowid", ["v"])
    assert (shapes["e"].key, shapes["e"].key_kind) == ([], "none")
    assert shapes["f"].key_kind == "primary key"  # INT is not INTEGER: not the rowid
    assert shapes["g"].virtual and not shapes["g"].shadow and shapes["g_data"].shadow


# ---------------------------------------------------------------- the replay


def test_replay_writes_what_the_old_schema_holds_and_drops_the_rest(tmp_path):
    scene = Scene(tmp_path)
    result = scene.replay()
    assert not result["predicted"]
    totals = result["totals"]
    assert totals["replayed"] == totals["replayable"] and totals["replayed"]["inserted"] > 100
    assert totals["replayed"]["updated"] > 0 and totals["already_there"] == 0
    # every turn of the bad window, its conversation and its feedback are in the restored brain now
    assert set(scene.written["tasks"]) <= {row[0] for row in rows(scene.brain, "tasks", "task_id")}
    assert set(scene.written["signals"]) <= {row[0] for row in rows(scene.brain, "learning_signals", "signal_id")}
    assert rows(scene.brain, "conversations") == rows(scene.bad, "conversations")
    # the embeddings, BLOB for BLOB; the counters and graph weights as the bad window left them
    for table in ("episodes_vec", "knowledge_store_vec", "skill_library", "social_graph_edges", "tasks"):
        assert rows(scene.brain, table) == rows(scene.bad, table), table
    # columns the old schema lacks were dropped, tables it lacks and the migrations record were not replayed
    assert "tag_count" not in [row[1] for row in connect(scene.brain).execute("PRAGMA table_info(episodes)")]
    assert rows(scene.brain, "episodes", "episode_id") == rows(scene.bad, "episodes", "episode_id")
    assert rows(scene.brain, "memory_tags") == []
    assert reasons(result, "memory_tags")[_replay.NEW_TABLE]["count"] == len(rows(scene.bad, "memory_tags")) > 0
    assert reasons(result, "engine_schema_migrations")[_replay.MIGRATIONS_RECORD]["sample"] == ["0006"]
    assert [row[0] for row in rows(scene.brain, "engine_schema_migrations", "version")] == OLD
    # the AUTOINCREMENT sequence follows the replayed events
    conn = connect(scene.brain)
    top = conn.execute("SELECT max(event_id) FROM observability_events").fetchone()[0]
    assert conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'observability_events'").fetchone()[0] == top
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_a_second_replay_adds_nothing(tmp_path):
    scene = Scene(tmp_path)
    first = scene.replay()
    digest = sha256_file(scene.brain)
    second = scene.replay()
    assert second["totals"]["replayed"] == dict(inserted=0, updated=0)
    assert second["totals"]["replayable"] == dict(inserted=0, updated=0)
    assert second["totals"]["already_there"] == first["totals"]["replayed"]["inserted"] + first["totals"][
        "replayed"]["updated"]
    assert second["totals"]["not_replayable"] == first["totals"]["not_replayable"]
    assert sha256_file(scene.brain) == digest


def test_check_mode_dry_run_predicts_and_changes_nothing(tmp_path):
    scene = Scene(tmp_path)
    before = everything(scene.folder)
    predicted = scene.replay(dry_run=True)
    assert everything(scene.folder) == before, "the dry run changed the folder of the brain"
    assert predicted["predicted"]
    done = scene.replay()
    assert predicted["tables"] == done["tables"] and predicted["totals"] == done["totals"]
    assert everything(scene.folder) != before


def test_report_reads_only(tmp_path):
    scene = Scene(tmp_path)
    before = everything(scene.folder)
    report = scene.replay(mode="report")
    assert everything(scene.folder) == before
    done = scene.replay()
    assert report["totals"]["replayable"] == done["totals"]["replayed"]


def _strict_old_schema(conn):
    """Old-schema tables with a foreign key (one to tasks, one to itself), named to sort before their parents."""
    conn.executescript("""
        CREATE TABLE a_notes (note_id TEXT PRIMARY KEY, task_id TEXT NOT NULL REFERENCES tasks (task_id),
                              body TEXT NOT NULL);
        CREATE TABLE a_threads (thread_id TEXT PRIMARY KEY, parent_id TEXT REFERENCES a_threads (thread_id));
    """)


def _violations(conn):
    """What a newer release writes that the old schema refuses."""
    tasks = [row[0] for row in conn.execute("SELECT task_id FROM tasks WHERE message LIKE '% 2%' LIMIT 4")]
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.executemany("INSERT INTO a_notes VALUES (?, ?, 'ok')", [(f"n{i}", task) for i, task in enumerate(tasks[:3])])
    conn.execute("INSERT INTO a_notes VALUES ('n-orphan', 'no-such-task', 'orphan')")
    # a child before its parent (in key order): refused for the foreign key at first, in on the second pass
    conn.executemany("INSERT INTO a_threads VALUES (?, ?)", [("t0-child", "t9-parent"), ("t9-parent", None)])
    conn.execute("PRAGMA ignore_check_constraints=ON")  # a release whose CHECK allows another task status
    conn.execute("UPDATE tasks SET status = 'archived' WHERE task_id = ?", (tasks[3],))
    conn.execute("PRAGMA ignore_check_constraints=OFF")
    conn.execute("ALTER TABLE trajectories DROP COLUMN kind")  # the old schema requires it (NOT NULL, no default)


def test_constraint_violations_are_skipped_and_listed_the_rest_commits(tmp_path):
    scene = Scene(tmp_path, prepare=_strict_old_schema, bad_window=_violations)
    result = scene.replay()
    notes = reasons(result, "a_notes")
    assert notes == {"violates the old schema: FOREIGN KEY constraint failed": dict(
        reason="violates the old schema: FOREIGN KEY constraint failed", count=1, sample=["n-orphan"])}
    assert result["tables"]["a_notes"]["replayed"]["inserted"] == 3
    assert result["tables"]["a_threads"]["replayed"]["inserted"] == 2, "the retry pass let the child in"
    check = reasons(result, "tasks")
    assert list(check) == ["violates the old schema: CHECK constraint failed: status IN ('running', 'completed', "
                           "'failed', 'interrupted')"]
    assert check[next(iter(check))]["count"] == 1
    trajectories = result["tables"]["trajectories"]
    assert trajectories["defaulted_columns"] == ["kind"]
    assert reasons(result, "trajectories") == {"violates the old schema: NOT NULL constraint failed: trajectories."
                                               "kind": dict(reason="violates the old schema: NOT NULL constraint "
                                                                   "failed: trajectories.kind",
                                                            count=trajectories["written_in_bad_window"]["inserted"],
                                                            sample=trajectories["not_replayable"][0]["sample"])}
    assert rows(scene.brain, "trajectories") == rows(scene.baseline, "trajectories")
    # the rest committed: the other turns are in, the refused task is not
    tasks = {row[0]: row[1] for row in rows(scene.brain, "tasks", "task_id, status")}
    assert len(set(scene.written["tasks"]) & set(tasks)) == 9 and "archived" not in tasks.values()
    assert {row[0] for row in rows(scene.brain, "a_notes", "note_id")} == {"n0", "n1", "n2"}
    conn = connect(scene.brain)
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()
    again = scene.replay()
    assert again["totals"]["replayed"] == dict(inserted=0, updated=0)
    assert again["totals"]["not_replayable"] == result["totals"]["not_replayable"]


def test_conflicts_with_rows_written_after_the_restore_are_not_overwritten(tmp_path):
    scene = Scene(tmp_path)
    task = scene.written["tasks"][0]
    gone = rows(scene.bad, "social_graph_nodes", "node_id")[0][0]
    with connect(scene.brain) as conn:
        # the same key with other values (a collision), a rowid another row took, a counter changed since the
        # snapshot, and a row updated in the bad window that the restored brain no longer has
        conn.execute("INSERT INTO tasks (task_id, conversation_id, status, message, created_at) VALUES "
                     "(?, 'other', 'completed', 'written after the restore', 'now')", (task,))
        conn.execute("INSERT INTO observability_events (event_type, payload, created_at) VALUES ('x', '{}', 'now')")
        event = conn.execute("SELECT max(event_id) FROM observability_events").fetchone()[0]
        conn.execute("UPDATE skill_library SET success_count = success_count + 100 WHERE skill_id = 'chat'")
        conn.execute("DELETE FROM social_graph_nodes WHERE node_id = ?", (gone,))
    result = scene.replay()
    assert reasons(result, "tasks")[_replay.COLLISION] == dict(reason=_replay.COLLISION, count=1, sample=[task])
    assert reasons(result, "observability_events")[_replay.COLLISION]["sample"] == [event]
    assert reasons(result, "skill_library")[_replay.CHANGED]["sample"] == ["chat"]
    assert reasons(result, "social_graph_nodes")[_replay.GONE]["sample"] == [gone]
    conn = connect(scene.brain)
    assert conn.execute("SELECT message FROM tasks WHERE task_id = ?", (task,)).fetchone()[0] == (
        "written after the restore")
    assert conn.execute("SELECT event_type FROM observability_events WHERE event_id = ?", (event,)).fetchone() == (
        "x",)
    assert conn.execute("SELECT count(*) FROM social_graph_nodes WHERE node_id = ?", (gone,)).fetchone()[0] == 0
    conn.close()


def test_rowid_and_without_rowid_tables(tmp_path):
    def prepare(conn):
        conn.executescript("""
            CREATE TABLE plain (a TEXT, b BLOB);
            CREATE TABLE compact (k TEXT, n INTEGER, v TEXT, PRIMARY KEY (k, n)) WITHOUT ROWID;
            INSERT INTO plain VALUES ('one', x'01'), ('two', x'02');
            INSERT INTO compact VALUES ('a', 1, 'x'), ('a', 2, 'y');
        """)

    def bad_window(conn):
        conn.executescript("""
            INSERT INTO plain VALUES ('three', x'03');
            UPDATE plain SET b = x'ff' WHERE a = 'one';
            INSERT INTO compact VALUES ('b', 1, 'z');
            UPDATE compact SET v = 'changed' WHERE k = 'a' AND n = 2;
        """)

    scene = Scene(tmp_path, prepare=prepare, bad_window=bad_window)
    result = scene.replay()
    assert result["tables"]["plain"]["replayed"] == dict(inserted=1, updated=1)
    assert result["tables"]["compact"]["replayed"] == dict(inserted=1, updated=1)
    assert rows(scene.brain, "plain", "rowid, a, b") == rows(scene.bad, "plain", "rowid, a, b")
    assert rows(scene.brain, "compact") == rows(scene.bad, "compact")
    assert scene.replay()["totals"]["replayed"] == dict(inserted=0, updated=0)


def test_tables_include_and_exclude(tmp_path):
    scene = Scene(tmp_path)
    result = scene.replay(tables=dict(exclude=["*_vec"]))
    excluded = reasons(result, "episodes_vec")[_replay.EXCLUDED]
    assert excluded["count"] == 10 and rows(scene.brain, "episodes_vec") == rows(scene.baseline, "episodes_vec")
    assert result["tables"]["tasks"]["replayed"]["inserted"] == 10
    only = scene.replay(tables=dict(include=["episodes_vec"]))
    assert only["totals"]["replayed"]["inserted"] == 10 and rows(scene.brain, "episodes_vec") == rows(
        scene.bad, "episodes_vec")


def test_a_destructive_release_is_reported_and_what_it_kept_replays(tmp_path):
    scene = Scene(tmp_path, upto=8)
    report = scene.replay(mode="report")
    dropped = reasons(report, "channel_state_snapshots")[_replay.DROPPED_TABLE]
    assert dropped["count"] == len(rows(scene.baseline, "channel_state_snapshots")) > 0
    assert report["tables"]["channel_state_snapshots"]["written_in_bad_window"]["deleted"] == dropped["count"]
    started = len([r for r in rows(scene.baseline, "observability_events", "event_type") if r[0] == "turn_started"])
    assert reasons(report, "observability_events")[_replay.DELETED]["count"] == started > 0
    assert report["tables"]["working_memory_log"]["defaulted_columns"] == ["raw_payload"]
    for table in ("turn_metrics", "memory_tags"):
        assert reasons(report, table)[_replay.NEW_TABLE]["count"] > 0, table
    migrations = reasons(report, "engine_schema_migrations")[_replay.MIGRATIONS_RECORD]
    assert migrations["sample"] == ["0006", "0007", "0008"]
    done = scene.replay()
    assert set(scene.written["tasks"]) <= {row[0] for row in rows(scene.brain, "tasks", "task_id")}
    assert rows(scene.brain, "channel_state_snapshots") == rows(scene.baseline, "channel_state_snapshots")
    kept = [r for r in rows(scene.brain, "observability_events", "event_type") if r[0] == "turn_started"]
    assert len(kept) == started, "a replay never deletes"
    payloads = dict(rows(scene.brain, "working_memory_log", "entry_id, raw_payload"))
    assert all(payloads[entry] is None for (entry,) in rows(scene.bad, "working_memory_log", "entry_id")
               if (entry,) not in rows(scene.baseline, "working_memory_log", "entry_id"))
    assert done["totals"]["not_replayable"] == report["totals"]["not_replayable"]


def test_auto_replays_an_additive_release_and_reports_a_destructive_one(tmp_path):
    (tmp_path / "a").mkdir()
    additive = Scene(tmp_path / "a")
    assert schema_losses(additive.bad, additive.baseline) == []
    assert resolve_mode("auto", additive.bad, additive.baseline) == (
        "replay", "the bad release's migrations only added to the old schema")
    (tmp_path / "d").mkdir()
    destructive = Scene(tmp_path / "d", upto=8)
    assert schema_losses(destructive.bad, destructive.baseline) == [
        "table channel_state_snapshots dropped", "column working_memory_log.raw_payload dropped"]
    mode, why = resolve_mode("auto", destructive.bad, destructive.baseline)
    assert mode == "report" and "table channel_state_snapshots dropped" in why
    assert resolve_mode("replay", destructive.bad, destructive.baseline) == ("replay", None)


def test_refuses_what_it_cannot_compare(tmp_path):
    scene = Scene(tmp_path)
    with pytest.raises(OptionsError, match="is the restored brain or the baseline itself"):
        BrainReplay(scene.brain, scene.baseline, scene.baseline).run()
    text = tmp_path / "text.sqlite"
    text.write_text("not a database\n" * 50)
    with pytest.raises(BrainError, match="not an SQLite database"):
        BrainReplay(scene.brain, str(text), scene.baseline).run()
    with pytest.raises(OptionsError, match="mode must be replay or report"):
        BrainReplay(scene.brain, scene.bad, scene.baseline, mode="off")


def test_a_trigger_that_rolls_everything_back_leaves_the_brain_unchanged(tmp_path):
    scene = Scene(tmp_path)
    conn = connect(scene.brain)
    conn.execute("CREATE TRIGGER no_more BEFORE INSERT ON learning_signals BEGIN "
                 "SELECT RAISE(ROLLBACK, 'learning is closed'); END")
    conn.close()
    digest = sha256_file(scene.brain)
    with pytest.raises(BrainError, match="rolled the whole replay back on a row of learning_signals"):
        scene.replay()
    assert sha256_file(scene.brain) == digest
    assert scene.replay(tables=dict(exclude=["learning_signals"]))["totals"]["replayed"]["inserted"] > 0


# ---------------------------------------------------------------- the files and the rollback's entry point


def test_finds_the_bad_window_and_its_baseline_from_the_manifests(tmp_path, bad_window):
    scene = bad_window()
    store, plan, identity = scene.store, scene.plan, scene.identity
    try:
        stage_restore(plan)
        previous = install_restore(plan, client=None, fields=dict(engine=identity), migrations=MIGRATIONS)
    finally:
        abort_restore(plan)
    warnings = []
    bad = find_bad_window(store, None, identity["key"], warnings)
    assert bad["name"] == previous["name"] and bad["kind"] == "pre-restore"
    assert restored_from(bad["manifest"]) == "pre-upgrade-2.3.0"
    assert find_baseline(store, None, bad, identity["key"], warnings)["name"] == "pre-upgrade-2.3.0"
    assert find_baseline(None, None, bad, identity["key"], warnings)["name"] == "pre-upgrade-2.3.0"
    by_path = find_bad_window(None, bad["path"], identity["key"], warnings)
    assert by_path["name"] == bad["name"] and warnings == []
    check_owner(bad, identity["key"], "bad_window", False, warnings)
    baseline = store.get("pre-upgrade-2.3.0")
    check_order(bad, baseline)
    with pytest.raises(OptionsError, match="are bad_window and baseline swapped"):
        check_order(dict(bad, created_at="2026-01-01T00:00:00Z"), dict(baseline, created_at="2026-01-02T00:00:00Z"))
    with pytest.raises(ForeignSnapshotError, match=r"belongs to Engine bind:.*another user"):
        check_owner(bad, "volume:someone-else", "bad_window", False, warnings)
    check_owner(bad, "volume:someone-else", "bad_window", True, warnings)
    assert "used anyway" in warnings[-1]
    with pytest.raises(NotFoundError, match="no pre-restore snapshot of this Engine"):
        find_bad_window(store, None, "volume:someone-else", [])
    with pytest.raises(OptionsError, match="give dest"):
        find_bad_window(None, "by-name", identity["key"], [])
    plain = copy(bad["path"], tmp_path / "copy.sqlite")
    assert find_bad_window(None, plain, identity["key"], warnings)["manifest"] == {}
    assert "has no snapshot manifest beside it" in warnings[-1]


def test_the_rollbacks_entry_point_between_install_and_start(bad_window):
    scene = bad_window()
    plan, identity, written = scene.plan, scene.identity, scene.written
    predicted = replay_after_restore(plan, dict(name="kept", path="/nowhere"), client=None, check_mode=True,
                                     migrations=MIGRATIONS)
    assert predicted["predicted"] and predicted["totals"]["replayable"]["inserted"] > 0
    assert predicted["totals"]["replayed"] == dict(inserted=0, updated=0)
    try:
        stage_restore(plan)
        previous = install_restore(plan, client=None, fields=dict(engine=identity), migrations=MIGRATIONS,
                                   defer_keep=True)
        result = replay_after_restore(plan, previous, client=None, mode="auto", migrations=MIGRATIONS)
        kept = complete_restore(plan) or previous
    finally:
        abort_restore(plan)
    assert set(written["tasks"]) <= {row[0] for row in rows(plan.brain, "tasks", "task_id")}
    assert [row[0] for row in rows(plan.brain, "engine_schema_migrations", "version")] == OLD
    assert result["totals"]["replayed"] == predicted["totals"]["replayable"]
    assert result["mode"] == "replay" and "only added" in result["mode_reason"]
    assert result["baseline"]["name"] == "pre-upgrade-2.3.0" and result["bad_window"]["name"] == kept["name"]
    assert any(action.startswith("insert ") for action in result["actions"])
    assert replay_after_restore(plan, previous, client=None, mode="off") is None
    assert default_mode(dict(is_destructive=True)) == "report" and default_mode(dict(is_destructive=False)) == "replay"
    assert default_mode(None) == "replay"


class _Containers:
    def __init__(self, running):
        self.running = running

    def list(self, all=False, filters=None, ignore_removed=False):
        return [] if filters and filters.get("status") == "restarting" else list(self.running)


class _Container:
    def __init__(self, name, source):
        self.name = name
        self.attrs = {"Mounts": [{"Type": "bind", "Source": source, "Destination": "/data"}]}


class _Client:
    def __init__(self, running=()):
        self.containers = _Containers(running)


def test_a_running_holder_refuses_with_nothing_changed(tmp_path):
    scene = Scene(tmp_path)
    location = BrainLocation(path=scene.brain, source="path")
    before = everything(scene.folder)
    with pytest.raises(EngineBusyError, match=r"running container.*sept-u1 mount its folder.*Nothing was changed"):
        require_stopped(_Client([_Container("sept-u1", str(scene.folder))]), location)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time\n"
        f"conn = sqlite3.connect({scene.brain!r}); conn.execute('SELECT count(*) FROM tasks').fetchone()\n"
        "print('open', flush=True); time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                require_stopped(_Client(), location)
            except EngineBusyError as exc:
                assert f"process(es) {holder.pid} hold it open" in exc.msg
                break
            time.sleep(0.05)
        else:
            pytest.fail("a process holding the brain open did not refuse the replay")
    finally:
        holder.kill()
        holder.wait()
    assert {k: v for k, v in everything(scene.folder).items() if not k.endswith(("-wal", "-shm"))} == before
    require_stopped(_Client(), location)
