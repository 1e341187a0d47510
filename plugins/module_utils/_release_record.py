# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Rollback runbook's "Don't redeploy in panic": a record of the releases that were rolled back, and the gate.

After a successful rollback, engine_rollback records the release it rolled back from on the Engine's Docker host,
with the collection's other state (locks, snapshots)::

    <state dir>/rolled-back-releases/          0700
        .lock                                  flock of the writers (0600)
        2.4.1.json                             one file per release (0600), written atomically

    {"format": 1, "release": "2.4.1", "entries": [
        {"release": "2.4.1", "image": "engine:2.4.1", "engine": "u001", "identity": "volume:engine-data-u001",
         "docker_host": "docker-a", "run_id": "20260504T020000Z-123456", "reason": "verify: health: ...",
         "rolled_back_to": "2.3.0", "kind": "image+brain", "started_at": "...Z", "rolled_back_at": "...Z",
         "acknowledged": null}, ...]}

Every change is a read-modify-write under ``flock`` on the folder's ``.lock`` and ends with an atomic rename, so
Engines of one Docker host rolled back at the same time (one ansible-playbook, or two runs) never lose each other's
entries, and a reader never sees half a file. A file that cannot be read is never overwritten: it is an error that
names the file (the gate then refuses, the rollback warns).

The gate (engine_preflight's ``rolled_back_release``; the plan play reads every Docker host and the controller's run
reports with engine_release_info and the ``release_gate`` filter): an upgrade to a release with an entry nobody
acknowledged refuses before anything changes, with one message naming when, where and why it was rolled back, until
the operator acknowledges it (``engine_upgrade_allow_rolled_back_release=true`` with
``engine_upgrade_rolled_back_release_reason``). The acknowledgement (reason, who, which run, when) is written into
the entries it answers; a later rollback of the same release adds a new entry, which refuses again.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import socket
import tempfile
import time

from ansible_collections.september.engine.plugins.module_utils._errors import (
    OptionsError,
    ReleaseRecordError,
    RolledBackReleaseError,
)
from ansible_collections.september.engine.plugins.module_utils._fileops import folder_lock, fsync_path
from ansible_collections.september.engine.plugins.module_utils._timeutil import OLDEST, iso, parse_iso

FOLDER = "rolled-back-releases"
FORMAT = 1
#: A release that is a plain image tag names its file as it is; anything else by a hash.
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
ALLOW_VAR = "engine_upgrade_allow_rolled_back_release"
REASON_VAR = "engine_upgrade_rolled_back_release_reason"
#: Entries named one by one in the refusal; the rest are counted.
NAMED = 3


def file_name(release: str) -> str:
    """The record file of a release: ``<release>.json`` for an image tag, ``release-<hash>.json`` otherwise."""
    if _TAG.match(release) and not release.startswith("."):
        return f"{release}.json"
    return f"release-{hashlib.sha256(release.encode('utf-8')).hexdigest()[:16]}.json"


def state_dir_of(params: dict, spec: dict | None = None) -> str | None:
    """The collection's state folder on the Docker host: ``spec['state_dir']`` or ``params['state_dir']`` when given,
    else the folder above the lock folder (the roles keep their locks in ``<state dir>/locks``); None without both."""
    for source in (spec or {}, params):
        if source.get("state_dir"):
            return os.path.abspath(source["state_dir"])
    lock = params.get("lock") or {}
    if lock.get("dir"):
        return os.path.dirname(os.path.abspath(str(lock["dir"]).rstrip("/") or "/"))
    return None


class ReleaseRecord:
    """The rolled-back releases recorded in one state folder (see the module docstring)."""

    def __init__(self, state_dir: str, clock=time.time):
        self.state_dir = os.path.abspath(state_dir)
        self.folder = os.path.join(self.state_dir, FOLDER)
        self.clock = clock

    def path(self, release: str) -> str:
        return os.path.join(self.folder, file_name(release))

    # ------------------------------------------------------------------ reading

    def _read(self, path: str, release: str | None = None) -> dict:
        """The file's document, an empty one when there is none; ReleaseRecordError when it cannot be read."""
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            return dict(format=FORMAT, release=release, entries=[])
        except (OSError, UnicodeDecodeError) as exc:
            raise self._unreadable(path, str(exc)) from exc
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise self._unreadable(path, f"not JSON: {exc}") from exc
        if not isinstance(document, dict) or not isinstance(document.get("entries"), list):
            raise self._unreadable(path, "not an object with a list 'entries'")
        if not all(isinstance(entry, dict) and entry.get("release") for entry in document["entries"]):
            raise self._unreadable(path, "an entry is not an object with a 'release'")
        if release is not None and any(entry["release"] != release for entry in document["entries"]):
            raise self._unreadable(path, f"it holds entries of another release than {release}")
        return document

    @staticmethod
    def _unreadable(path: str, why: str) -> ReleaseRecordError:
        return ReleaseRecordError(
            f"The record of rolled-back releases {path} cannot be read ({why}). It is what stops an upgrade to a "
            "release that was rolled back: look at it, then repair it (a JSON object with a list 'entries') or "
            "move it aside. Nothing was changed.",
            path=path,
        )

    def lookup(self, release: str) -> list[dict]:
        """The entries of ``release`` (oldest first); [] when it was never recorded. Reads only."""
        return list(self._read(self.path(release), release)["entries"])

    def releases(self) -> dict[str, list[dict]]:
        """Every recorded release and its entries."""
        found: dict[str, list[dict]] = {}
        for path in sorted(glob.glob(os.path.join(self.folder, "*.json"))):
            document = self._read(path)
            for entry in document["entries"]:
                found.setdefault(entry["release"], []).append(entry)
        return found

    # ------------------------------------------------------------------ writing

    def _ensure_folder(self) -> None:
        try:
            if not os.path.isdir(self.folder):
                os.makedirs(self.folder, mode=0o700, exist_ok=True)
            if os.stat(self.folder).st_uid == os.getuid():
                os.chmod(self.folder, 0o700)
        except OSError as exc:
            raise ReleaseRecordError(
                f"Cannot make the folder {self.folder} for the record of rolled-back releases: {exc}.", path=self.folder
            ) from exc

    def _write(self, path: str, document: dict) -> None:
        fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=1, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o600)
            os.replace(temp, path)
            fsync_path(self.folder)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise ReleaseRecordError(
                f"Cannot write the record of rolled-back releases {path}: {exc}.", path=path
            ) from exc

    @contextlib.contextmanager
    def _changing(self, release: str):
        """The document of ``release`` to change in place, written back atomically, all under the folder's flock."""
        self._ensure_folder()
        path = self.path(release)
        try:
            with folder_lock(self.folder):
                document = self._read(path, release)
                document.update(format=FORMAT, release=release)
                before = json.dumps(document, sort_keys=True)
                yield document
                if json.dumps(document, sort_keys=True) != before:
                    self._write(path, document)
        except OSError as exc:  # reading and writing raise ReleaseRecordError: this is the lock file
            raise ReleaseRecordError(
                f"Cannot lock {self.folder} to change the record of rolled-back releases: {exc}.", path=self.folder
            ) from exc

    def record(self, entry: dict) -> dict:
        """Add ``entry`` (see :func:`make_entry`) to its release's file; the same Engine, run and release again replace
        the entry they recorded before (a re-run never doubles it). Returns the entry."""
        if not entry.get("release"):
            raise OptionsError("A rolled-back release to record needs its release.")
        with self._changing(entry["release"]) as document:
            same = [index for index, old in enumerate(document["entries"]) if _same_event(old, entry)]
            if same:
                document["entries"][same[0]] = dict(
                    entry, acknowledged=document["entries"][same[0]].get("acknowledged")
                )
            else:
                document["entries"].append(entry)
        return entry

    def acknowledge(
        self, release: str, reason: str, by: str | None = None, run_id: str | None = None, engine: str | None = None
    ) -> list[dict]:
        """Mark every entry of ``release`` nobody acknowledged yet as acknowledged (reason, who, run, when, on which
        Engine's pre-flight). Returns the entries it marked ([] when there was nothing to acknowledge)."""
        if not str(reason or "").strip():
            raise OptionsError(f"Acknowledging the rolled-back release {release} needs a reason ({REASON_VAR}).")
        marked = []
        if not self.lookup(release):
            return marked
        acknowledgement = acknowledgement_of(reason, by, run_id, engine, self.clock())
        with self._changing(release) as document:
            for entry in document["entries"]:
                if not entry.get("acknowledged"):
                    entry["acknowledged"] = dict(acknowledgement)
                    marked.append(entry)
        return marked


def _same_event(old: dict, new: dict) -> bool:
    return all(old.get(key) == new.get(key) for key in ("release", "identity", "engine", "run_id"))


def acknowledgement_of(reason: str, by: str | None, run_id: str | None, engine: str | None, now: float) -> dict:
    return dict(reason=str(reason).strip(), by=by, run_id=run_id, engine=engine, at=iso(now))


def make_entry(
    release: str,
    *,
    engine: str | None,
    identity: str | None,
    run_id: str | None,
    reason: str | None,
    now: float,
    started: float | None = None,
    **details,
) -> dict:
    """One rolled-back release: which release, which Engine (its name and identity key), on which Docker host, in which
    run, why, when (``started``: when the rollback began), and ``details`` (image, rolled_back_to, kind, ...)."""
    entry = dict(
        release=str(release),
        engine=engine,
        identity=identity,
        docker_host=details.pop("docker_host", None) or socket.gethostname(),
        run_id=run_id,
        reason=reason or "requested",
        started_at=iso(started, "milliseconds") if started is not None else None,
        rolled_back_at=iso(now, "milliseconds"),
        acknowledged=None,
    )
    entry.update(details)
    return entry


# ---------------------------------------------------------------- the gate


def _when(entry: dict) -> str:
    return str(entry.get("rolled_back_at") or "an unknown time")


def describe(entry: dict) -> str:
    """One entry for people: ``on u001 (Docker host docker-a) at 2026-05-04T02:14:10Z in run R: <reason>``."""
    where = entry.get("engine") or entry.get("identity") or "an Engine"
    if entry.get("docker_host"):
        where += f" (Docker host {entry['docker_host']})"
    elif entry.get("source"):
        where += f" (report {entry['source']})"
    run = f" in run {entry['run_id']}" if entry.get("run_id") else ""
    back = f", back to {entry['rolled_back_to']}" if entry.get("rolled_back_to") else ""
    return f"on {where} at {_when(entry)}{run}{back}: {entry.get('reason') or 'no reason recorded'}"


def merge(entries: list[dict]) -> list[dict]:
    """One entry per rollback (release, Engine, run) from several places (Docker hosts, run reports), in order: the
    first seen, or the first that is acknowledged (an acknowledgement in one place answers the others)."""
    merged: dict[tuple, dict] = {}
    for entry in entries:
        key = (str(entry.get("release")), entry.get("engine") or entry.get("identity"), entry.get("run_id"))
        if key not in merged or (entry.get("acknowledged") and not merged[key].get("acknowledged")):
            merged[key] = entry
    return list(merged.values())


def pending(entries: list[dict]) -> list[dict]:
    """The entries nobody acknowledged, newest first."""
    waiting = [entry for entry in entries if not entry.get("acknowledged")]
    return sorted(waiting, key=lambda entry: parse_iso(entry.get("rolled_back_at")) or OLDEST, reverse=True)


def refusal(release: str, entries: list[dict]) -> str:
    """The message that refuses an upgrade to ``release`` (``entries``: the ones nobody acknowledged)."""
    named = "; ".join(describe(entry) for entry in entries[:NAMED])
    more = f" (and {len(entries) - NAMED} more)" if len(entries) > NAMED else ""
    times = "once" if len(entries) == 1 else f"{len(entries)} times"
    return (
        f"release {release} was rolled back {times}: {named}{more}. Don't redeploy in panic: what broke needs its "
        f"root cause first. To upgrade to {release} all the same, set {ALLOW_VAR}=true and say why in "
        f"{REASON_VAR} (it goes into the report)."
    )


def check_release(release: str, entries: list[dict], allow: bool = False, reason: str | None = None) -> dict:
    """The gate for an upgrade to ``release``, given its recorded ``entries`` (from any number of places).

    Returns ``release``, ``rolled_back`` (any entry), ``entries``, ``pending`` (entries nobody acknowledged) and
    ``acknowledge`` (True when they are to be acknowledged now, with ``reason``). RolledBackReleaseError when some
    entry is pending and the upgrade is not allowed; OptionsError when it is allowed without a reason.
    """
    waiting = pending(entries)
    result = dict(
        release=release,
        rolled_back=bool(entries),
        entries=list(entries),
        pending=len(waiting),
        acknowledge=False,
        reason=None,
    )
    if not waiting:
        return result
    if not allow:
        raise RolledBackReleaseError(refusal(release, waiting), release=release, entries=waiting)
    if not str(reason or "").strip():
        raise OptionsError(
            f"{ALLOW_VAR}=true needs {REASON_VAR}: say why release {release} may be deployed again after its "
            f"rollback ({describe(waiting[0])}); the reason goes into the report."
        )
    result.update(acknowledge=True, reason=str(reason).strip())
    return result


def preflight_gate(preflight) -> dict | None:
    """engine_preflight's gate (``rolled_back_release``) for an Engine about to be upgraded; None without a state dir.

    ``preflight``: the pre-flight (its ``p``, ``name``, ``check_mode``, ``warnings``, ``changed``). Refuses with
    RolledBackReleaseError (the pre-flight releases its lock) before anything else is done; an allowed upgrade
    acknowledges the entries (outside check mode) and says so in a warning.
    """
    params = preflight.p
    spec = params.get("rolled_back_release") or {}
    state_dir = state_dir_of(params, spec)
    if state_dir is None:
        return None
    release = str(params["target_version"])
    record = ReleaseRecord(state_dir)
    try:
        gate = check_release(release, record.lookup(release), bool(spec.get("allow")), spec.get("reason"))
    except RolledBackReleaseError as exc:
        raise RolledBackReleaseError(f"{preflight.name}: {exc.msg} Nothing was changed.", **exc.details) from exc
    gate["path"] = record.path(release)
    gate["acknowledged"] = []
    if gate["acknowledge"]:
        lock = params.get("lock") or {}
        if preflight.check_mode:
            gate["acknowledged"] = pending(gate["entries"])
        else:
            gate["acknowledged"] = record.acknowledge(
                release, gate["reason"], lock.get("owner"), lock.get("run_id"), preflight.name
            )
            preflight.changed = preflight.changed or bool(gate["acknowledged"])
        preflight.warnings.append(
            f"{preflight.name}: release {release} was rolled back before ({describe(pending(gate['entries'])[0])}); "
            f"upgrading all the same as acknowledged: {gate['reason']}"
        )
    return gate


# ---------------------------------------------------------------- written by the rollback


def record_rollback(rollback, result: dict) -> dict | None:
    """After engine_rollback switched an Engine back: record the release it rolled back from (the entry, or None).

    ``rollback``: the Rollback (its ``p``, ``engine`` as it was before, ``check_mode``, ``warnings``, ``actions``,
    ``started``); ``result``: its result so far. Never fails the rollback: a record that cannot be written is a
    warning (the Engine is back on its old release either way).
    """
    params = rollback.p
    if not result.get("rolled_back") or params.get("record_release") is False:
        return None
    state_dir = state_dir_of(params)
    release = result.get("from_version") or _tag_of(rollback.engine.get("image"))
    if state_dir is None or not release:
        rollback.warnings.append(
            "The rolled-back release was not recorded (no state_dir, or the release the Engine ran is unknown): "
            "the upgrade will not refuse it on this Docker host."
        )
        return None
    lock = params.get("lock") or {}
    engine = rollback.engine  # as it was before the rollback (called before the Engine is resolved again)
    now = time.time()
    entry = make_entry(
        release,
        engine=params.get("inventory_name") or engine.get("container"),
        identity=(engine.get("identity") or {}).get("key"),
        run_id=lock.get("run_id"),
        reason=result.get("reason"),
        now=now,
        started=now - (time.monotonic() - rollback.started),
        image=engine.get("image"),
        image_id=engine.get("image_id"),
        container=engine.get("container"),
        rolled_back_to=result.get("to_version"),
        kind=result.get("kind"),
        snapshot=result.get("snapshot"),
    )
    record = ReleaseRecord(state_dir)
    rollback.actions.append(f"record release {release} as rolled back in {record.path(release)}")
    if rollback.check_mode:
        return dict(entry, path=record.path(release))
    try:
        record.record(entry)
    except (ReleaseRecordError, OptionsError) as exc:
        rollback.warnings.append(
            f"{exc.msg} The rollback itself succeeded; the upgrade will not refuse {release} "
            "on this Docker host until the record is repaired."
        )
        return None
    return dict(entry, path=record.path(release))


def _tag_of(image: str | None) -> str | None:
    if not image or ":" not in image.rsplit("/", 1)[-1]:
        return None
    return image.rsplit(":", 1)[1].split("@", 1)[0] or None


# ---------------------------------------------------------------- the controller's run reports


def _load_report(path: str, warnings: list) -> dict | None:
    try:
        with open(path, encoding="utf-8") as handle:
            report = json.load(handle)
    except (OSError, ValueError) as exc:
        warnings.append(f"The run report {path} could not be read ({exc}); its rollbacks are not counted.")
        return None
    return report if isinstance(report, dict) else None


def _report_entry(release, engine: dict, rollback: dict, report: dict, path: str) -> dict:
    recorded = rollback.get("release_record") or {}
    return dict(
        release=str(release),
        engine=engine.get("engine"),
        identity=engine.get("identity") or recorded.get("identity"),
        docker_host=recorded.get("docker_host"),
        run_id=report.get("run_id"),
        reason=rollback.get("reason") or engine.get("reason"),
        rolled_back_to=rollback.get("to_version"),
        rolled_back_at=recorded.get("rolled_back_at") or report.get("written_at"),
        source=path,
        acknowledged=None,
    )


def _read_report(path: str, warnings: list) -> tuple[list, list]:
    """(entries, acknowledgements) of one run report: its Engines rolled back, and the releases its Engines'
    pre-flights acknowledged (``rolled_back_release`` with a reason)."""
    report = _load_report(path, warnings)
    if report is None or report.get("check_mode"):
        return [], []
    upgrade = os.path.basename(path) == "upgrade.json"
    entries, acknowledgements = [], []
    for engine in report.get("engines") or []:
        if not isinstance(engine, dict):
            continue
        rollback = engine.get("rollback") if upgrade else engine
        gone = engine.get("to_version") if upgrade else engine.get("from_version")
        if isinstance(rollback, dict) and rollback.get("rolled_back") and gone:
            entries.append(_report_entry(gone, engine, rollback, report, path))
        gate = engine.get("rolled_back_release") if upgrade else None
        if isinstance(gate, dict) and gate.get("reason") and (gate.get("acknowledge") or gate.get("acknowledged")):
            acknowledgements.append((gate, report, engine))
    return entries, acknowledgements


def report_entries(report_dir: str, release: str | None = None, warnings: list | None = None) -> list[dict]:
    """Rolled-back releases the controller's run reports hold (``<report dir>/<run id>/upgrade.json`` and
    ``rollback.json``), as entries; an upgrade report whose Engines acknowledged a release (their
    ``rolled_back_release`` with a reason) acknowledges the entries of that release written before it."""
    warnings = [] if warnings is None else warnings
    entries, acknowledgements = [], []
    paths = glob.glob(os.path.join(report_dir, "*", "upgrade.json")) + glob.glob(
        os.path.join(report_dir, "*", "rollback.json")
    )
    for path in sorted(paths):
        found, acknowledged = _read_report(path, warnings)
        entries += found
        acknowledgements += acknowledged
    for gate, report, engine in acknowledgements:
        written = parse_iso(report.get("written_at"))
        for entry in entries:
            moment = parse_iso(entry.get("rolled_back_at"))
            if entry["release"] != gate.get("release") or entry["acknowledged"]:
                continue
            if written is None or moment is None or moment <= written:
                entry["acknowledged"] = dict(
                    reason=gate["reason"],
                    by=None,
                    run_id=report.get("run_id"),
                    engine=engine.get("engine"),
                    at=report.get("written_at"),
                )
    return [entry for entry in entries if release is None or entry["release"] == release]
