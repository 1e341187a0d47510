# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""migration_check's pure logic: versions and bumps, SQLite's verdict on sample migrations, the strategy table."""

from __future__ import annotations

import io
import os
import sqlite3
import tarfile
from pathlib import Path

import pytest

from ansible_collections.september.engine.plugins.module_utils._brain import ReadonlyBrain, applied_migrations
from ansible_collections.september.engine.plugins.module_utils._errors import BrainError, EngineModuleError
from ansible_collections.september.engine.plugins.module_utils._migrations import (
    ShippedMigration,
    _bump_warnings,
    assess,
    boot_test_reasons,
    build_schema_copy,
    classify_migrations,
    compare,
    parse_migrations_archive,
    parse_version,
    rollback_strategy,
    schema_statements,
    version_bump,
)

MIGRATIONS = Path(__file__).resolve().parents[4] / "tests" / "reference_engine" / "migrations"

SAMPLE_SCHEMA = """
CREATE TABLE tasks (task_id TEXT PRIMARY KEY, status TEXT NOT NULL, answer TEXT, created_at TEXT NOT NULL);
CREATE INDEX idx_tasks_status ON tasks (status);
CREATE TABLE events (event_id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, payload TEXT);
CREATE TABLE notes (note_id TEXT PRIMARY KEY, body TEXT);
CREATE VIEW open_tasks AS SELECT task_id FROM tasks WHERE status = 'running';
CREATE TRIGGER tasks_done AFTER UPDATE OF status ON tasks BEGIN INSERT INTO events (kind) VALUES ('done'); END;
"""


def statements_of(sql: str):
    conn = sqlite3.connect(":memory:")
    conn.executescript(sql)
    try:
        return schema_statements(conn)
    finally:
        conn.close()


def migration(name: str, sql: str) -> ShippedMigration:
    return ShippedMigration(name=name, version=name.split("_", 1)[0], sql=sql)


def verdict(sql: str) -> dict:
    verdicts, problems = classify_migrations(statements_of(SAMPLE_SCHEMA), [migration("0009_sample", sql)])
    assert problems == []
    return verdicts[0]


# --------------------------------------------------------------------------- versions


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.4.0", (2, 4, 0, "")),
        ("v3.0.1", (3, 0, 1, "")),
        ("2.4", (2, 4, 0, "")),
        ("2.4.0-rc1", (2, 4, 0, "rc1")),
        ("2.4.0+build.7", (2, 4, 0, "")),
        ("latest", None),
        ("", None),
        (None, None),
        ("2", None),
        ("2.4.0.1", None),
    ],
)
def test_parse_version(text, expected):
    assert parse_version(text) == expected


@pytest.mark.parametrize(
    ("current", "target", "bump"),
    [
        ("2.3.0", "2.3.1", "patch"),
        ("2.3.0", "2.4.0", "minor"),
        ("2.3.1", "2.4.2", "minor"),
        ("2.3.0", "3.0.0", "major"),
        ("2.4.0", "2.3.0", "downgrade"),
        ("3.0.0", "2.5.0", "downgrade"),
        ("2.4.0", "2.4.0", "none"),
        ("2.4", "2.4.0", "none"),
        ("2.4.0-rc1", "2.4.0", "patch"),
        ("2.4.0", "2.4.0-rc1", "downgrade"),
        ("2.4.0", "latest", None),
        (None, "2.4.0", None),
    ],
)
def test_version_bump(current, target, bump):
    assert version_bump(current, target) == bump


# --------------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("sql", "classification", "reasons"),
    [
        (
            "ALTER TABLE tasks ADD COLUMN tag_count INTEGER NOT NULL DEFAULT 0;",
            "additive",
            ["adds column tasks.tag_count"],
        ),
        (
            "CREATE TABLE tags (tag TEXT PRIMARY KEY); CREATE INDEX idx_tags ON tags (tag);",
            "additive",
            ["creates table tags", "creates index idx_tags"],
        ),
        ("INSERT INTO notes (note_id, body) VALUES ('welcome', 'hi');", "additive", ["inserts rows into notes"]),
        ("CREATE VIEW done_tasks AS SELECT task_id FROM tasks;", "additive", ["creates view done_tasks"]),
        (
            "CREATE TRIGGER notes_log AFTER INSERT ON notes BEGIN INSERT INTO events (kind) VALUES ('note'); END;",
            "additive",
            ["creates trigger notes_log"],
        ),
        ("DROP INDEX idx_tasks_status;", "additive", ["drops index idx_tasks_status (indexes hold no data)"]),
        ("DROP VIEW open_tasks;", "additive", ["drops view open_tasks (views hold no data)"]),
        ("-- nothing to do\n", "additive", ["changes neither the schema nor existing rows"]),
        ("DROP TABLE notes;", "destructive", ["drops table notes with all its rows"]),
        ("ALTER TABLE tasks DROP COLUMN answer;", "destructive", ["drops column tasks.answer"]),
        (
            "ALTER TABLE tasks RENAME COLUMN answer TO reply;",
            "destructive",
            ["drops or renames column tasks.answer", "adds column tasks.reply"],
        ),
        ("ALTER TABLE notes RENAME TO memos;", "destructive", ["renames table notes to memos"]),
        ("DELETE FROM events WHERE kind = 'started';", "destructive", ["deletes rows from events"]),
        ("DELETE FROM events;", "destructive", ["deletes rows from events"]),
        (
            "UPDATE tasks SET answer = upper(answer), status = 'x' WHERE 0;",
            "destructive",
            ["rewrites rows of tasks (column(s) answer, status)"],
        ),
        (
            # the documented 12-step table rebuild: the table keeps its name, not its rows
            "CREATE TABLE notes_new (note_id TEXT PRIMARY KEY);"
            "INSERT INTO notes_new SELECT note_id FROM notes;"
            "DROP TABLE notes;"
            "ALTER TABLE notes_new RENAME TO notes;",
            "destructive",
            ["rebuilds table notes (drops it and copies its rows into a new one) without column(s) body"],
        ),
        (
            # a trigger that deletes is judged by what it does when the migration fires it
            "CREATE TRIGGER purge AFTER INSERT ON notes BEGIN DELETE FROM events; END;"
            "INSERT INTO notes VALUES ('x', 'y');",
            "destructive",
            ["deletes rows from events"],
        ),
        (
            # rows of a table created in the same migration are not existing data
            "CREATE TABLE staging (k TEXT); INSERT INTO staging VALUES ('a'); UPDATE staging SET k = 'b';"
            "DELETE FROM staging;",
            "additive",
            ["creates table staging"],
        ),
        ("BEGIN; ALTER TABLE notes ADD COLUMN pinned INTEGER; COMMIT;", "additive", ["adds column notes.pinned"]),
    ],
)
def test_classification(sql, classification, reasons):
    result = verdict(sql)
    assert result["classification"] == classification, result
    for reason in reasons:
        assert reason in result["reasons"], result


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE missing ADD COLUMN x INTEGER;",
        "CREATE TABLE tasks (x);",
        "this is not sql;",
        "CREATE TABLE fresh (x); INSERT INTO nowhere VALUES (1);",
    ],
)
def test_sql_that_does_not_run_is_unknown(sql):
    result = verdict(sql)
    assert result["classification"] == "unknown"
    assert result["reasons"][0].startswith("does not run on a copy of the brain's schema: ")


@pytest.mark.parametrize("sql", ["ATTACH '{path}' AS other;", "VACUUM INTO '{path}';"])
def test_attaching_a_file_is_never_run(sql, tmp_path):
    target = tmp_path / "written.db"
    result = verdict(sql.format(path=target))
    assert result["classification"] == "unknown"
    assert "attaches a database file" in result["reasons"][0]
    assert not target.exists()


def test_a_failed_migration_is_rolled_back_before_the_next_one():
    first = migration("0009_half", "CREATE TABLE half (x); ALTER TABLE nowhere ADD COLUMN y;")
    second = migration("0010_again", "CREATE TABLE half (x);")
    verdicts = classify_migrations(statements_of(SAMPLE_SCHEMA), [first, second])[0]
    assert [v["classification"] for v in verdicts] == ["unknown", "additive"]
    assert verdicts[1]["reasons"] == ["creates table half"]


def test_migrations_apply_in_order_on_the_schema_left_by_the_previous_one():
    first = migration("0009_add", "CREATE TABLE scratch (k TEXT);")
    second = migration("0010_drop", "DROP TABLE scratch;")
    verdicts = classify_migrations(statements_of(SAMPLE_SCHEMA), [first, second])[0]
    assert [v["classification"] for v in verdicts] == ["additive", "destructive"]
    assert [v["name"] for v in verdicts] == ["0009_add", "0010_drop"]


def test_reference_migrations_on_a_2_3_brain_schema():
    """The reference Engine's own files: 0006 and 0007 additive, 0008 destructive for every reason it has."""
    shipped = [migration(path.stem, path.read_text(encoding="utf-8")) for path in sorted(MIGRATIONS.glob("*.sql"))]
    schema = "".join(m.sql for m in shipped[:5])
    verdicts, problems = classify_migrations(statements_of(schema), shipped[5:])
    assert problems == []
    by_name = {v["name"]: v for v in verdicts}
    assert by_name["0006_episode_tags"]["classification"] == "additive"
    assert "adds column episodes.tag_count" in by_name["0006_episode_tags"]["reasons"]
    assert by_name["0007_turn_metrics"]["classification"] == "additive"
    destructive = by_name["0008_memory_v3"]
    assert destructive["classification"] == "destructive"
    assert destructive["reasons"] == [
        "drops table channel_state_snapshots with all its rows",
        "drops column working_memory_log.raw_payload",
        "deletes rows from observability_events",
    ]


def test_schema_statements_order_and_sqlite_internals():
    statements = statements_of(SAMPLE_SCHEMA)
    kinds = [statement[0] for statement in statements]
    assert kinds == sorted(kinds, key=["table", "index", "view", "trigger"].index)
    assert all(not name.startswith("sqlite_") for _kind, name, _sql in statements)  # sqlite_sequence left out


def test_schema_copy_with_a_virtual_table_skips_its_shadow_tables():
    statements = statements_of("CREATE VIRTUAL TABLE docs USING fts5(body); CREATE TABLE plain (x);")
    assert any(name == "docs_data" for _kind, name, _sql in statements)  # fts5 shadow tables are in sqlite_master
    conn, problems = build_schema_copy(statements)
    conn.close()
    assert problems == []


def test_schema_copy_reports_what_it_cannot_rebuild():
    conn, problems = build_schema_copy([("table", "vectors", "CREATE VIRTUAL TABLE vectors USING vec0(x)")])
    conn.close()
    assert problems and "vectors" in problems[0] and "vec0" in problems[0]


# --------------------------------------------------------------------------- shipped migrations


def archive(files: dict) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        folder = tarfile.TarInfo("migrations")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, text in files.items():
            data = text.encode("utf-8") if isinstance(text, str) else text
            info = tarfile.TarInfo(f"migrations/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_parse_migrations_archive_keeps_only_numbered_sql_files_in_order():
    data = archive(
        {
            "0010_later.sql": "SELECT 10;",
            "0002_second.sql": "SELECT 2;",
            "README.md": "not a migration",
            "notes.sql": "no number",
            "old/0003_nested.sql": "nested folders are not shipped migrations",
        }
    )
    found = parse_migrations_archive(data, "/app/migrations")
    assert [(m.name, m.version, m.number, m.sql) for m in found] == [
        ("0002_second", "0002", 2, "SELECT 2;"),
        ("0010_later", "0010", 10, "SELECT 10;"),
    ]


def test_parse_migrations_archive_refuses_two_files_with_one_number():
    with pytest.raises(EngineModuleError, match="two migrations numbered 6"):
        parse_migrations_archive(archive({"0006_a.sql": "", "006_b.sql": ""}), "/app/migrations")


def test_parse_migrations_archive_refuses_binary_files():
    with pytest.raises(EngineModuleError, match="not UTF-8"):
        parse_migrations_archive(archive({"0001_blob.sql": b"\xff\xfe\x00"}), "/app/migrations")


# --------------------------------------------------------------------------- strategy and verdict


@pytest.mark.parametrize(
    ("has_pending", "is_downgrade", "same_release", "strategy"),
    [
        (False, False, True, "none"),
        (False, False, False, "image"),
        (False, True, False, "image"),
        (False, True, True, "image"),
        (True, False, False, "brain_restore"),
        (True, False, True, "brain_restore"),
        (True, True, False, "brain_restore"),
    ],
)
def test_rollback_strategy(has_pending, is_downgrade, same_release, strategy):
    assert rollback_strategy(has_pending, is_downgrade, same_release) == strategy


def shipped_up_to(last: int) -> list[ShippedMigration]:
    return [migration(f"{n:04d}_m{n}", "") for n in range(1, last + 1)]


def test_compare_finds_pending_gaps_not_shipped_and_unreadable_entries():
    pending, not_shipped, unreadable = compare(["0001", "0003_x", "9", "legacy"], shipped_up_to(4))
    assert [m.name for m in pending] == ["0002_m2", "0004_m4"]
    assert not_shipped == ["9"]
    assert unreadable == ["legacy"]


def report(applied, last_shipped, verdicts=(), current="2.3.0", target="2.4.0", **kwargs):
    return assess(
        applied=applied,
        shipped=shipped_up_to(last_shipped),
        verdicts=list(verdicts),
        current_image=None if current is None else f"engine:{current}",
        current_version=current,
        target_image=f"engine:{target}",
        target_version=target,
        **kwargs,
    )


FIVE = ["0001", "0002", "0003", "0004", "0005"]


def additive(name):
    return dict(name=name, version=name[:4], classification="additive", reasons=["creates table t"])


def test_patch_without_migration_rolls_back_with_the_image():
    result = report(FIVE, 5, current="2.3.0", target="2.3.1")
    assert (result["bump"], result["rollback_strategy"], result["is_forward_only"]) == ("patch", "image", False)
    assert result["warnings"] == []
    assert result["snapshot_retention_days"] is None


def test_same_release_changes_nothing():
    result = report(FIVE, 5, current="2.3.0", target="2.3.0")
    assert result["rollback_strategy"] == "none"
    assert report(FIVE, 5, current="2.3.0", target="x", same_image=True)["rollback_strategy"] == "none"


def test_minor_with_additive_migration_needs_a_brain_restore():
    result = report(FIVE, 6, [additive("0006_m6")])
    assert result["pending"] == [additive("0006_m6")]
    assert (result["is_forward_only"], result["is_destructive"], result["rollback_strategy"]) == (
        True,
        False,
        "brain_restore",
    )
    assert result["warnings"] == []


def test_patch_that_ships_a_migration_is_warned_about():
    result = report(FIVE, 6, [additive("0006_m6")], current="2.3.0", target="2.3.2")
    assert any("patch release but ships migration(s) 0006_m6" in w for w in result["warnings"])


def test_destructive_migration_keeps_the_snapshot_a_week():
    bad = dict(name="0006_m6", version="0006", classification="destructive", reasons=["drops table t"])
    result = report(FIVE, 6, [bad], target="3.0.0")
    assert result["is_destructive"] and result["snapshot_retention_days"] == 7
    assert any("snapshot the brain first" in w and "7 days" in w for w in result["warnings"])


def test_unknown_migration_is_treated_like_a_destructive_one():
    odd = dict(name="0006_m6", version="0006", classification="unknown", reasons=["does not run"])
    result = report(FIVE, 6, [odd])
    assert not result["is_destructive"]
    assert result["unclassified"] == ["0006_m6"] and result["needs_acknowledgement"] is True
    assert result["snapshot_retention_days"] == 7
    assert any("could not be classified" in w for w in result["warnings"])


def test_an_additive_migration_needs_no_acknowledgement():
    ok = dict(name="0006_m6", version="0006", classification="additive", reasons=[])
    result = report(FIVE, 6, [ok])
    assert result["unclassified"] == [] and result["needs_acknowledgement"] is False


def test_downgrade_brain_holds_migrations_the_target_lacks():
    result = report([*FIVE, "0006"], 5, current="2.4.0", target="2.3.0")
    assert result["is_downgrade"] and result["not_shipped"] == ["0006"]
    assert result["bump"] == "downgrade"
    assert result["rollback_strategy"] == "image"
    assert any("MIGRATION_REQUIRED" in w for w in result["warnings"])


def test_unknown_current_image_or_unparseable_versions_give_a_null_bump():
    result = report(FIVE, 5, current=None)
    assert result["bump"] is None and result["rollback_strategy"] == "image"
    assert any("No current image is known" in w for w in result["warnings"])
    result = report(FIVE, 5, current="2.3.0", target="nightly")
    assert result["bump"] is None
    assert any("The target image engine:nightly carries no version" in w for w in result["warnings"])


# --------------------------------------------------------------------------- reading the brain (_brain helpers)


def test_readonly_brain_hands_the_side_files_it_creates_to_the_brain_owner(tmp_path):
    brain = tmp_path / "brain.sqlite"
    conn = sqlite3.connect(brain)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()  # the last writer leaves no -wal / -shm behind
    assert sorted(os.listdir(tmp_path)) == ["brain.sqlite"]
    if os.geteuid() == 0:
        os.chown(brain, 4321, 4321)
    with ReadonlyBrain(str(brain)) as reader:
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (0,)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.execute("INSERT INTO t VALUES (1)")
    owner = (os.stat(brain).st_uid, os.stat(brain).st_gid)
    for side in ("brain.sqlite-wal", "brain.sqlite-shm"):
        if (tmp_path / side).exists():
            assert (os.stat(tmp_path / side).st_uid, os.stat(tmp_path / side).st_gid) == owner


def test_applied_migrations_refuses_a_column_the_table_lacks():
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE engine_schema_migrations (version TEXT)")
    conn.execute("INSERT INTO engine_schema_migrations VALUES ('0001')")
    assert applied_migrations(conn, {"migrations_column": "version"}) == ["0001"]
    # SQLite would read "nope" as a string literal and report the migration 'nope' once per row
    with pytest.raises(BrainError, match="has no column 'nope'"):
        applied_migrations(conn, {"migrations_column": "nope"})


@pytest.mark.parametrize(
    ("bump", "current", "versions", "expected"),
    [
        ("minor", "engine:2.3.0", ("2.3.0", "2.4.0"), []),
        (None, None, (None, "2.4.0"), ["No current image is known"]),
        (None, "engine:latest", ("latest", "2.4.0"), ["The current image engine:latest carries no version"]),
        (None, "engine:2.3.0", ("2.3.0", "next"), ["The target image engine:next carries no version"]),
        (None, "engine:a", ("a", "b"), ["The current image engine:a", "The target image engine:b"]),
    ],
)
def test_bump_warnings_say_why_the_bump_is_null(bump, current, versions, expected):
    target = "engine:" + versions[1]
    warnings = _bump_warnings(bump, current, versions[0], target, versions[1])
    assert len(warnings) == len(expected)
    for warning, start in zip(warnings, expected, strict=True):
        assert warning.startswith(start)


def test_boot_test_reasons_name_a_major_release_and_migrations_that_may_lose_data():
    bad = dict(name="0006_m6", version="0006", classification="destructive", reasons=["drops table t"])
    odd = dict(name="0007_m7", version="0007", classification="unknown", reasons=["does not run"])
    result = report(FIVE, 7, [bad, odd], current="2.4.0", target="3.0.0")
    assert boot_test_reasons(result) == [
        "a major upgrade (2.4.0 to 3.0.0)",
        "destructive migration(s) 0006_m6",
        "unclassified migration(s) 0007_m7",
    ]


@pytest.mark.parametrize(
    "applied, last, verdicts, current, target",
    [
        (FIVE, 6, [additive("0006_m6")], "2.3.0", "2.4.0"),  # minor, additive
        (FIVE, 5, [], "2.3.0", "2.3.1"),  # patch, nothing pending
        (FIVE, 5, [], None, "3.0.0"),  # no known current version: no bump to call major
    ],
)
def test_no_boot_test_reason_for_a_minor_or_patch_release_with_additive_migrations(
    applied, last, verdicts, current, target
):
    assert boot_test_reasons(report(applied, last, verdicts, current=current, target=target)) == []
