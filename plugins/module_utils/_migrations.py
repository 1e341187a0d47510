# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What upgrading a brain to a target image would do: the logic of the migration_check module.

- the migrations an image ships are read out of its file system (a container is created, never
  started, and its ``migrations_dir`` is copied out as a tar archive);
- each pending migration is classified by SQLite itself: it is run on an in-memory copy of the
  brain's schema (no rows) under an authorizer that records what each statement does, and the
  schema before and after is compared;
- the bump, the rollback strategy and the warnings follow from that (pure functions).

The boot test (starting the images on a throwaway copy of the brain) lives in _boot_test.py.
"""

from __future__ import annotations

import io
import re
import sqlite3
import tarfile
import uuid
from dataclasses import dataclass

from ansible_collections.september.engine.plugins.module_utils._brain import migration_number
from ansible_collections.september.engine.plugins.module_utils._docker import DockerException, NotFound
from ansible_collections.september.engine.plugins.module_utils._errors import (
    EngineModuleError,
    NotFoundError,
)

CLASSIFICATIONS = ("additive", "destructive", "unknown")
STRATEGIES = ("none", "image", "brain_restore")
BUMPS = ("none", "patch", "minor", "major", "downgrade")
DESTRUCTIVE_RETENTION_DAYS = 7

_MIGRATION_FILE = re.compile(r"^(\d+)_[^/]*\.sql$")
_VERSION = re.compile(r"^[vV]?(\d+)\.(\d+)(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_GO_MODE_DIR = 1 << 31  # Docker's archive stat header carries Go's os.FileMode
_MAX_ARCHIVE = 64 * 1024 * 1024


# --------------------------------------------------------------------------- versions


def parse_version(text) -> tuple | None:
    """(major, minor, patch, prerelease) of a semver-like version ('2.4.0', 'v3.0', '2.4.0-rc1'), or None."""
    match = _VERSION.match(str(text or "").strip())
    if not match:
        return None
    major, minor, patch, pre = match.groups()
    return int(major), int(minor), int(patch or 0), pre or ""


def _order(version: tuple) -> tuple:
    # A release sorts after its pre-releases (2.4.0-rc1 < 2.4.0).
    return version[0], version[1], version[2], 0 if version[3] else 1, version[3]


def version_bump(current, target) -> str | None:
    """none | patch | minor | major | downgrade from current to target, or None when either is not a version."""
    old, new = parse_version(current), parse_version(target)
    if old is None or new is None:
        return None
    if _order(new) == _order(old):
        return "none"
    if _order(new) < _order(old):
        return "downgrade"
    if new[0] != old[0]:
        return "major"
    if new[1] != old[1]:
        return "minor"
    return "patch"


def boot_test_reasons(report: dict) -> list[str]:
    """Why an upgrade should boot its target on a copy of the brain first (the Upgrade runbook's "test in staging
    with a copy of production's brain"): a major release, or a migration that may drop or rewrite data. Empty when
    neither applies."""
    reasons = []
    if report.get("bump") == "major":
        reasons.append(f"a major upgrade ({report.get('current_version')} to {report.get('target_version')})")
    destructive = [m["name"] for m in report.get("pending") or [] if m.get("classification") == "destructive"]
    if destructive:
        reasons.append(f"destructive migration(s) {', '.join(destructive)}")
    if report.get("unclassified"):
        reasons.append(f"unclassified migration(s) {', '.join(report['unclassified'])}")
    return reasons


# --------------------------------------------------------------------------- shipped migrations


@dataclass
class ShippedMigration:
    """One NNNN_name.sql file of an image."""

    name: str  # the file stem, 0006_episode_tags
    version: str  # the number as written, 0006
    sql: str

    @property
    def number(self) -> int:
        return int(self.version)


def parse_migrations_archive(data: bytes, migrations_dir: str) -> list[ShippedMigration]:
    """The NNNN_name.sql files directly inside the archived folder (Docker's get_archive format), by number."""
    found: dict[int, ShippedMigration] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive.getmembers():
            parts = member.name.strip("/").split("/")
            if len(parts) != 2 or not _MIGRATION_FILE.match(parts[1]):
                continue
            handle = archive.extractfile(member) if (member.isfile() or member.issym() or member.islnk()) else None
            if handle is None:
                continue
            raw = handle.read()
            try:
                sql = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise EngineModuleError(
                    f"Migration {migrations_dir}/{parts[1]} is not UTF-8 text ({exc}): is migrations_dir right?"
                ) from exc
            migration = ShippedMigration(name=parts[1][: -len(".sql")], version=parts[1].split("_", 1)[0], sql=sql)
            if migration.number in found:
                raise EngineModuleError(
                    f"The image ships two migrations numbered {migration.number} in {migrations_dir} "
                    f"({found[migration.number].name}, {migration.name}): the image is broken, do not deploy it."
                )
            found[migration.number] = migration
    return [found[number] for number in sorted(found)]


def shipped_migrations(client, image_ref: str, migrations_dir: str) -> list[ShippedMigration]:
    """The migrations `image_ref` ships in `migrations_dir`, read from its file system without starting it."""
    container = None
    try:
        container = client.containers.create(
            image_ref,
            command=["/migration-check-never-starts-this-container"],
            name=f"migration-check-read-{uuid.uuid4().hex[:12]}",
            network_disabled=True,
            labels={"io.september.engine.migration_check": "read"},
        )
        try:
            stream, stat = container.get_archive(migrations_dir.rstrip("/") + "/")
        except NotFound as exc:
            raise NotFoundError(
                f"Image {image_ref} has no {migrations_dir}: set migrations_dir to the folder where this image "
                "ships its NNNN_name.sql migration files."
            ) from exc
        if not int(stat.get("mode") or 0) & _GO_MODE_DIR:
            raise NotFoundError(f"{migrations_dir} in image {image_ref} is not a folder: set migrations_dir to one.")
        data = bytearray()
        for chunk in stream:
            data.extend(chunk)
            if len(data) > _MAX_ARCHIVE:
                raise EngineModuleError(
                    f"{migrations_dir} in image {image_ref} is larger than {_MAX_ARCHIVE // (1024 * 1024)} MiB: "
                    "is migrations_dir the folder of the migration files only?"
                )
    except DockerException as exc:
        raise EngineModuleError(f"Docker could not read {migrations_dir} out of image {image_ref}: {exc}") from exc
    finally:
        if container is not None:
            try:
                container.remove(force=True)
            except DockerException:  # pragma: no cover - removal of a never-started container
                pass
    return parse_migrations_archive(bytes(data), migrations_dir)


# --------------------------------------------------------------------------- schema copy


def schema_statements(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    """(type, name, sql) of the brain's schema in an order that rebuilds it: virtual tables, tables, indexes,
    views, triggers (SQLite's own sqlite_* objects left out)."""
    rows = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
        "ORDER BY rowid"
    ).fetchall()

    def rank(row) -> int:
        kind, sql = row[0], row[2]
        if kind == "table":
            return 0 if sql.lstrip().upper().startswith("CREATE VIRTUAL") else 1
        return {"index": 2, "view": 3, "trigger": 4}.get(kind, 5)

    return sorted(rows, key=rank)


def build_schema_copy(statements) -> tuple[sqlite3.Connection, list[str]]:
    """An in-memory database with the given schema and no rows, and what could not be copied."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    problems = []
    for kind, name, sql in statements:
        try:
            conn.execute(sql)
        except sqlite3.Error as exc:
            if "already exists" in str(exc):  # shadow tables of a virtual table created just before
                continue
            problems.append(f"{kind} {name}: {exc}")
    return conn, problems


def capture_schema(conn: sqlite3.Connection) -> dict:
    """tables -> column names (PRAGMA table_xinfo), indexes/triggers -> their table, views -> True."""
    schema: dict = {"tables": {}, "indexes": {}, "views": {}, "triggers": {}}
    rows = conn.execute(
        "SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    ).fetchall()
    for kind, name, table in rows:
        if kind == "table":
            try:
                columns = [row[1] for row in conn.execute(f"PRAGMA table_xinfo({_quote(name)})")]
            except sqlite3.Error:
                columns = []
            schema["tables"][name] = columns
        elif kind == "index":
            schema["indexes"][name] = table
        elif kind == "trigger":
            schema["triggers"][name] = table
        elif kind == "view":
            schema["views"][name] = True
    return schema


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ActionRecorder:
    """sqlite3 authorizer callback: records what statements do to the main database, allows everything
    except attaching a database file (ATTACH, VACUUM INTO), which must never touch the managed node's disk."""

    RECORDED = frozenset(
        (
            sqlite3.SQLITE_DELETE,
            sqlite3.SQLITE_UPDATE,
            sqlite3.SQLITE_INSERT,
            sqlite3.SQLITE_CREATE_TABLE,
            sqlite3.SQLITE_CREATE_VTABLE,
            sqlite3.SQLITE_DROP_TABLE,
            sqlite3.SQLITE_DROP_VTABLE,
            sqlite3.SQLITE_ALTER_TABLE,
        )
    )

    def __init__(self):
        self.active = False
        self.actions: list[tuple[int, str | None, str | None]] = []
        self.refused: list[str] = []

    def reset(self) -> None:
        self.actions = []
        self.refused = []

    def __call__(self, action, arg1, arg2, db_name, _trigger):
        if not self.active:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_ATTACH and arg1 not in ("", ":memory:"):
            self.refused.append(arg1)
            return sqlite3.SQLITE_DENY
        if action not in self.RECORDED:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_ALTER_TABLE:  # arg1 is the database, arg2 the table
            db_name, arg1, arg2 = arg1, arg2, None
        if db_name == "main" and arg1 and not arg1.startswith("sqlite_"):
            self.actions.append((action, arg1, arg2))
        return sqlite3.SQLITE_OK

    def tables(self, *actions) -> set:
        return {table for action, table, _column in self.actions if action in actions}


class _Judgement:
    """What one migration did, from the schema before and after it and the actions it was authorised for; each
    finding is destructive, additive or a note, in the order found."""

    def __init__(self, before: dict, after: dict, recorder: ActionRecorder):
        self.before, self.after, self.recorder = before, after, recorder
        self.old, self.new = before["tables"], after["tables"]
        self.dropped = recorder.tables(sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_DROP_VTABLE)
        self.created = recorder.tables(sqlite3.SQLITE_CREATE_TABLE, sqlite3.SQLITE_CREATE_VTABLE)
        self.destructive: list[str] = []
        self.additive: list[str] = []
        self.notes: list[str] = []

    def tables(self) -> None:
        """Tables gone (dropped, renamed or removed) and tables created."""
        gone = [table for table in self.old if table not in self.new]
        appeared = [table for table in self.new if table not in self.old]
        altered = self.recorder.tables(sqlite3.SQLITE_ALTER_TABLE)
        renamed_to = [table for table in appeared if table not in self.created]
        renamed_from = [table for table in gone if table not in self.dropped and table in altered]
        for table in gone:
            if table in self.dropped:
                self.destructive.append(f"drops table {table} with all its rows")
            elif table in renamed_from:
                target = f" to {renamed_to[0]}" if len(renamed_to) == 1 and len(renamed_from) == 1 else ""
                self.destructive.append(f"renames table {table}{target}")
            else:
                self.destructive.append(f"removes table {table}")
        self.additive.extend(f"creates table {table}" for table in appeared if table in self.created)

    def columns(self) -> None:
        """Columns lost and gained by the tables that are there before and after (rebuilt ones said as such)."""
        for table in (name for name in self.old if name in self.new):
            lost = [column for column in self.old[table] if column not in self.new[table]]
            gained = [column for column in self.new[table] if column not in self.old[table]]
            if table in self.dropped:
                text = f"rebuilds table {table} (drops it and copies its rows into a new one)"
                self.destructive.append(text + (f" without column(s) {', '.join(lost)}" if lost else ""))
            else:
                verb = "drops or renames" if gained else "drops"
                self.destructive.extend(f"{verb} column {table}.{column}" for column in lost)
            self.additive.extend(f"adds column {table}.{column}" for column in gained)

    def rows(self) -> None:
        """Rows deleted, rewritten or inserted in the tables kept as they were."""
        deleted = self.recorder.tables(sqlite3.SQLITE_DELETE)
        inserted = self.recorder.tables(sqlite3.SQLITE_INSERT)
        for table in (name for name in self.old if name not in self.dropped and name in self.new):
            if table in deleted:
                self.destructive.append(f"deletes rows from {table}")
            columns = sorted({column for action, name, column in self.recorder.actions
                              if action == sqlite3.SQLITE_UPDATE and name == table} - {None})
            if columns:
                self.destructive.append(f"rewrites rows of {table} (column(s) {', '.join(columns)})")
            if table in inserted:
                self.additive.append(f"inserts rows into {table}")

    def objects(self) -> None:
        """Indexes, views and triggers created or dropped (they hold no data)."""
        for kind, plural in (("index", "indexes"), ("view", "views"), ("trigger", "triggers")):
            before, after = self.before[plural], self.after[plural]
            self.additive.extend(f"creates {kind} {name}" for name in after if name not in before)
            self.notes.extend(f"drops {kind} {name} ({plural} hold no data)" for name, table in before.items()
                              if name not in after and (kind == "view" or table in self.new))


def judge(before: dict, after: dict, recorder: ActionRecorder) -> tuple[str, list[str]]:
    """(additive | destructive, reasons) from the schema before and after one migration and what it did."""
    found = _Judgement(before, after, recorder)
    found.tables()
    found.columns()
    found.rows()
    found.objects()
    if found.destructive:
        return "destructive", found.destructive + found.additive + found.notes
    return "additive", found.additive + found.notes or ["changes neither the schema nor existing rows"]


def classify_migrations(statements, migrations: list[ShippedMigration]) -> tuple[list[dict], list[str]]:
    """Run `migrations` in order on an in-memory copy of the schema `statements`; one verdict per migration
    ({name, version, classification, reasons}) and the problems met while copying the schema."""
    conn, problems = build_schema_copy(statements)
    recorder = ActionRecorder()
    conn.set_authorizer(recorder)
    verdicts = []
    try:
        for migration in migrations:
            verdict = dict(name=migration.name, version=migration.version)
            saved = sqlite3.connect(":memory:")
            conn.backup(saved)
            before = capture_schema(conn)
            recorder.reset()
            recorder.active = True
            error = None
            try:
                conn.executescript(migration.sql)
            except sqlite3.Error as exc:
                error = exc
            finally:
                recorder.active = False
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if error is not None:
                saved.backup(conn)  # later migrations run on the schema as it was before this one
                reason = f"does not run on a copy of the brain's schema: {error}"
                if recorder.refused:
                    reason = (
                        f"attaches a database file ({', '.join(recorder.refused)}), which migration_check never "
                        "runs: review it by hand"
                    )
                verdict.update(classification="unknown", reasons=[reason])
            else:
                classification, reasons = judge(before, capture_schema(conn), recorder)
                verdict.update(classification=classification, reasons=reasons)
            saved.close()
            verdicts.append(verdict)
    finally:
        conn.close()
    return verdicts, problems


# --------------------------------------------------------------------------- the verdict


def rollback_strategy(has_pending: bool, is_downgrade: bool, same_release: bool) -> str:
    """none: nothing changes; image: the brain stays as it is, the old image can run it; brain_restore: the
    brain is migrated, going back needs the pre-upgrade snapshot."""
    if has_pending:
        return "brain_restore"
    if same_release and not is_downgrade:
        return "none"
    return "image"


def compare(applied: list[str], shipped: list[ShippedMigration]) -> tuple[list[ShippedMigration], list[str], list[str]]:
    """(pending, not_shipped, unreadable): shipped migrations the brain lacks, applied ones the image lacks, and
    applied entries without a number."""
    numbers = {}
    unreadable = []
    for value in applied:
        number = migration_number(value)
        if number is None:
            unreadable.append(value)
        else:
            numbers[number] = value
    shipped_numbers = {migration.number for migration in shipped}
    pending = [migration for migration in shipped if migration.number not in numbers]
    not_shipped = [numbers[number] for number in sorted(numbers) if number not in shipped_numbers]
    return pending, not_shipped, unreadable


def _bump_warnings(bump: str | None, current_image: str | None, current_version: str | None, target_image: str,
                   target_version: str | None) -> list[str]:
    """Why the bump is null: no current image, or an image whose version does not read as MAJOR.MINOR.PATCH."""
    if current_image is None:
        return [
            "No current image is known (give current_image, or locate the brain with container): bump is null and "
            "rollback_strategy cannot be none."
        ]
    if bump is not None:
        return []
    images = (("current", current_image, current_version), ("target", target_image, target_version))
    return [
        f"The {label} image {ref} carries no version that reads as MAJOR.MINOR.PATCH ({version!r}): "
        "bump is null. Set version_label to the label that holds it, or tag the image with its version."
        for label, ref, version in images
        if parse_version(version) is None
    ]


def assess(
    *,
    applied: list[str],
    shipped: list[ShippedMigration],
    verdicts: list[dict],
    current_image: str | None,
    current_version: str | None,
    target_image: str,
    target_version: str | None,
    same_image: bool = False,
) -> dict:
    """The `migration` return value (without boot_test) from what was read (pure function)."""
    pending, not_shipped, unreadable = compare(applied, shipped)
    by_name = {verdict["name"]: verdict for verdict in verdicts}
    unclassified = dict(classification="unknown", reasons=["not classified"])
    pending_out = [by_name.get(m.name) or dict(unclassified, name=m.name, version=m.version) for m in pending]
    destructive = [item["name"] for item in pending_out if item["classification"] == "destructive"]
    unknown = [item["name"] for item in pending_out if item["classification"] == "unknown"]
    bump = version_bump(current_version, target_version)
    same_release = same_image or bump == "none"
    is_downgrade = bool(not_shipped)
    warnings = _bump_warnings(bump, current_image, current_version, target_image, target_version)
    if unreadable:
        warnings.append(
            f"The brain records migrations without a leading number ({', '.join(unreadable)}); they were ignored: "
            "check migrations_table and migrations_column."
        )
    if is_downgrade:
        warnings.append(
            f"The brain holds migration(s) {', '.join(not_shipped)} that {target_image} does not ship: it will refuse "
            "this brain (MIGRATION_REQUIRED). Deploy a release that ships them, or restore a snapshot taken before "
            "they were applied."
        )
    elif bump == "downgrade":
        warnings.append(f"{target_image} ({target_version}) is older than {current_image} ({current_version}).")
    if bump == "patch" and pending:
        warnings.append(
            f"{target_image} is a patch release but ships migration(s) {', '.join(m.name for m in pending)}: the "
            "upgrade is forward-only, rolling back needs the pre-upgrade brain snapshot."
        )
    if destructive:
        warnings.append(
            f"Destructive migration(s) {', '.join(destructive)}: snapshot the brain first, keep the snapshot at least "
            f"{DESTRUCTIVE_RETENTION_DAYS} days, and do not count on rollback."
        )
    if unknown:
        warnings.append(
            f"Migration(s) {', '.join(unknown)} could not be classified (see pending[].reasons): review them by hand "
            "and treat them as destructive."
        )
    return dict(
        current_image=current_image,
        current_version=current_version,
        target_image=target_image,
        target_version=target_version,
        bump=bump,
        applied=list(applied),
        shipped=[migration.name for migration in shipped],
        pending=pending_out,
        not_shipped=not_shipped,
        is_forward_only=bool(pending),
        is_destructive=bool(destructive),
        # A migration the scratch copy could not run (a DROP COLUMN on an old SQLite, a virtual-table module this
        # SQLite lacks ...) may drop or rewrite data as well: it is treated as destructive until acknowledged.
        unclassified=unknown,
        needs_acknowledgement=bool(destructive or unknown),
        is_downgrade=is_downgrade,
        rollback_strategy=rollback_strategy(bool(pending), is_downgrade, same_release),
        snapshot_retention_days=DESTRUCTIVE_RETENTION_DAYS if destructive or unknown else None,
        warnings=warnings,
    )
