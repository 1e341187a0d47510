# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The record of rolled-back releases and its gate: real files, real flock, threads and processes that write at once."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import threading
import time
from types import SimpleNamespace

import pytest

from ansible_collections.september.engine.plugins.module_utils import _preflight, _release_record, _rollback
from ansible_collections.september.engine.plugins.module_utils._errors import (
    OptionsError,
    ReleaseRecordError,
    RolledBackReleaseError,
)
from ansible_collections.september.engine.plugins.module_utils._release_record import (
    FOLDER,
    ReleaseRecord,
    check_release,
    file_name,
    make_entry,
    preflight_gate,
    record_rollback,
    report_entries,
    state_dir_of,
)

NOW = 1777860850.0  # 2026-05-04T02:14:10Z


def entry(
    release="2.4.1",
    engine="u001",
    run_id="20260504T020000Z-1",
    reason="verify: health: /health answered 503",
    now=NOW,
    **details,
):
    return make_entry(
        release,
        engine=engine,
        identity=f"volume:engine-data-{engine}",
        run_id=run_id,
        reason=reason,
        now=now,
        started=now - 12,
        docker_host=details.pop("docker_host", "docker-a"),
        **details,
    )


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# ---------------------------------------------------------------- the file


def test_a_recorded_release_is_found_again_in_a_private_file(tmp_path) -> None:
    record = ReleaseRecord(str(tmp_path / "state"))
    assert record.lookup("2.4.1") == []  # nothing recorded: nothing made either
    assert not (tmp_path / "state").exists()
    record.record(entry(rolled_back_to="2.3.0", image="engine:2.4.1"))
    found = record.lookup("2.4.1")
    assert len(found) == 1 and found[0]["engine"] == "u001" and found[0]["docker_host"] == "docker-a"
    assert (
        found[0]["rolled_back_at"] == "2026-05-04T02:14:10.000Z"
        and found[0]["started_at"] == "2026-05-04T02:13:58.000Z"
    )
    assert found[0]["acknowledged"] is None and found[0]["rolled_back_to"] == "2.3.0"
    folder = tmp_path / "state" / FOLDER
    assert mode(folder) == 0o700 and mode(folder / "2.4.1.json") == 0o600
    assert json.loads((folder / "2.4.1.json").read_text())["format"] == 1
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "2.4.1.json"]  # no temporary file left
    assert record.lookup("2.4.2") == [] and list(record.releases()) == ["2.4.1"]


def test_the_same_engine_run_and_release_recorded_twice_is_one_entry(tmp_path) -> None:
    record = ReleaseRecord(str(tmp_path))
    record.record(entry())
    record.record(entry(reason="again"))
    record.record(entry(run_id="another run"))
    found = record.lookup("2.4.1")
    assert [(e["run_id"], e["reason"]) for e in found] == [
        ("20260504T020000Z-1", "again"),
        ("another run", "verify: health: /health answered 503"),
    ]


@pytest.mark.parametrize("release, name", [("2.4.1", "2.4.1.json"), ("v2_rc-1", "v2_rc-1.json")])
def test_a_tag_names_its_file_anything_else_a_hash(release: str, name: str) -> None:
    assert file_name(release) == name
    odd = file_name("../../etc/passwd")
    assert odd.startswith("release-") and "/" not in odd and odd != file_name("../etc/passwd")
    assert file_name(".hidden").startswith("release-")


def test_two_threads_writing_at_once_lose_nothing(tmp_path) -> None:
    record = ReleaseRecord(str(tmp_path))
    start = threading.Barrier(8)

    def write(number: int) -> None:
        mine = ReleaseRecord(str(tmp_path))  # every writer opens its own lock file, as two module runs do
        start.wait()
        for round_ in range(10):
            mine.record(entry(engine=f"u{number:03d}", run_id=f"r{round_}"))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = record.lookup("2.4.1")
    assert len(found) == 80
    assert {(e["engine"], e["run_id"]) for e in found} == {(f"u{n:03d}", f"r{r}") for n in range(8) for r in range(10)}


def _process_writer(state_dir: str, engine: str, go) -> None:
    go.wait()
    for round_ in range(15):
        ReleaseRecord(state_dir).record(entry(engine=engine, run_id=f"r{round_}"))


def test_two_processes_writing_at_once_lose_nothing(tmp_path) -> None:
    context = multiprocessing.get_context("fork")
    go = context.Event()
    writers = [context.Process(target=_process_writer, args=(str(tmp_path), f"u{n}", go)) for n in range(2)]
    for writer in writers:
        writer.start()
    go.set()
    for writer in writers:
        writer.join(60)
        assert writer.exitcode == 0
    found = ReleaseRecord(str(tmp_path)).lookup("2.4.1")
    assert sorted((e["engine"], e["run_id"]) for e in found) == sorted(
        (f"u{n}", f"r{r}") for n in range(2) for r in range(15)
    )


def test_the_lock_is_what_keeps_both_entries(tmp_path, monkeypatch) -> None:
    """Without the folder's flock the read-modify-write of two writers loses one entry: the test can fail."""
    record = ReleaseRecord(str(tmp_path))
    record.record(entry(engine="u000"))
    read = ReleaseRecord._read
    both_read = threading.Barrier(2, timeout=1)

    def slow_read(self, path, release=None):
        document = read(self, path, release)
        if threading.current_thread().name.startswith("writer"):
            try:
                both_read.wait()  # both have read before either writes: only the lock prevents that
            except threading.BrokenBarrierError:
                pass
        return document

    monkeypatch.setattr(ReleaseRecord, "_read", slow_read)
    threads = [
        threading.Thread(
            target=lambda n=n: ReleaseRecord(str(tmp_path)).record(entry(engine=f"u{n}")), name=f"writer-{n}"
        )
        for n in (1, 2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(e["engine"] for e in record.lookup("2.4.1")) == ["u000", "u1", "u2"]
    assert both_read.broken  # the second writer waited on the lock until the first had written


@pytest.mark.parametrize(
    "text, why",
    [
        ("{not json", "not JSON"),
        ('["a list"]', "not an object with a list 'entries'"),
        ('{"entries": [{"engine": "u1"}]}', "an entry is not an object with a 'release'"),
        ('{"entries": [{"release": "2.5.0"}]}', "entries of another release than 2.4.1"),
    ],
)
def test_a_corrupt_file_is_a_clear_error_and_is_never_overwritten(tmp_path, text: str, why: str) -> None:
    record = ReleaseRecord(str(tmp_path))
    os.makedirs(record.folder)
    path = record.path("2.4.1")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    with pytest.raises(ReleaseRecordError) as info:
        record.lookup("2.4.1")
    assert path in info.value.msg and why in info.value.msg and "move it aside" in info.value.msg
    with pytest.raises(ReleaseRecordError):
        record.record(entry())
    with pytest.raises(ReleaseRecordError):
        record.acknowledge("2.4.1", "fixed")
    assert open(path, encoding="utf-8").read() == text


# ---------------------------------------------------------------- acknowledging and the gate


def test_acknowledging_needs_a_reason_and_a_new_rollback_refuses_again(tmp_path) -> None:
    record = ReleaseRecord(str(tmp_path), clock=lambda: NOW + 3600)
    record.record(entry())
    record.record(entry(engine="u002"))
    with pytest.raises(OptionsError, match="needs a reason"):
        record.acknowledge("2.4.1", "  ")
    marked = record.acknowledge("2.4.1", " root cause fixed in INC-42 ", by="AWX job 7", run_id="r2", engine="u001")
    assert [e["engine"] for e in marked] == ["u001", "u002"]
    found = record.lookup("2.4.1")
    assert all(
        e["acknowledged"]
        == dict(
            reason="root cause fixed in INC-42", by="AWX job 7", run_id="r2", engine="u001", at="2026-05-04T03:14:10Z"
        )
        for e in found
    )
    assert check_release("2.4.1", found)["pending"] == 0  # acknowledged: no refusal
    assert record.acknowledge("2.4.1", "again") == []  # nothing left to acknowledge: nothing written
    record.record(entry(engine="u003", run_id="r3", now=NOW + 7200, reason="verify: evals: 4 regressions"))
    with pytest.raises(RolledBackReleaseError, match="rolled back once: on u003"):
        check_release("2.4.1", record.lookup("2.4.1"))
    assert record.acknowledge("nothing-recorded", "why") == []
    assert not os.path.exists(record.path("nothing-recorded"))


def test_the_refusal_says_when_where_and_why_and_how_to_go_on() -> None:
    entries = [entry(now=NOW + n, engine=f"u{n}", reason=f"reason {n}") for n in range(5)]
    with pytest.raises(RolledBackReleaseError) as info:
        check_release("2.4.1", entries)
    message = info.value.msg
    assert message.startswith("release 2.4.1 was rolled back 5 times: on u4 (Docker host docker-a) at ")
    assert "in run 20260504T020000Z-1: reason 4; on u3" in message and "(and 2 more)" in message
    assert "Don't redeploy in panic" in message
    assert "engine_upgrade_allow_rolled_back_release=true" in message
    assert "engine_upgrade_rolled_back_release_reason" in message
    assert info.value.details["release"] == "2.4.1" and len(info.value.details["entries"]) == 5
    with pytest.raises(OptionsError, match="engine_upgrade_allow_rolled_back_release=true needs"):
        check_release("2.4.1", entries, allow=True, reason="")
    gate = check_release("2.4.1", entries, allow=True, reason="fixed upstream")
    assert gate["acknowledge"] is True and gate["reason"] == "fixed upstream" and gate["pending"] == 5
    assert check_release("2.4.0", []) == dict(
        release="2.4.0", rolled_back=False, entries=[], pending=0, acknowledge=False, reason=None
    )


def test_the_state_dir_is_given_or_the_folder_above_the_locks() -> None:
    assert state_dir_of({"lock": {"dir": "/var/lib/september-engine/locks/"}}) == "/var/lib/september-engine"
    assert state_dir_of({"state_dir": "/srv/state", "lock": {"dir": "/x/locks"}}) == "/srv/state"
    assert state_dir_of({"lock": {"dir": "/x/locks"}}, {"state_dir": "/y"}) == "/y"
    assert state_dir_of({"lock": None}) is None


def preflight(tmp_path, check_mode=False, **spec):
    params = {
        "target_version": "2.4.1",
        "rolled_back_release": spec or None,
        "lock": {"dir": str(tmp_path / "locks"), "owner": "AWX job 7", "run_id": "r2"},
    }
    return SimpleNamespace(p=params, name="u001", check_mode=check_mode, warnings=[], changed=False)


def test_the_preflight_gate_refuses_then_acknowledges_when_allowed(tmp_path) -> None:
    assert preflight_gate(preflight(tmp_path))["rolled_back"] is False  # nothing recorded: nothing refused
    ReleaseRecord(str(tmp_path)).record(entry())
    with pytest.raises(RolledBackReleaseError) as info:
        preflight_gate(preflight(tmp_path))
    assert info.value.msg.startswith(
        "u001: release 2.4.1 was rolled back once: on u001 (Docker host docker-a) at "
        "2026-05-04T02:14:10.000Z in run 20260504T020000Z-1: verify: health: /health "
    )
    assert info.value.msg.endswith("Nothing was changed.")
    with pytest.raises(OptionsError):
        preflight_gate(preflight(tmp_path, allow=True))
    checking = preflight(tmp_path, check_mode=True, allow=True, reason="fixed")
    gate = checking_gate = preflight_gate(checking)
    assert checking_gate["acknowledge"] and len(gate["acknowledged"]) == 1 and checking.changed is False
    assert ReleaseRecord(str(tmp_path)).lookup("2.4.1")[0]["acknowledged"] is None  # check mode wrote nothing
    allowed = preflight(tmp_path, allow=True, reason="fixed in 2.4.1-hotfix config")
    gate = preflight_gate(allowed)
    assert allowed.changed is True and gate["path"].endswith("rolled-back-releases/2.4.1.json")
    assert "upgrading all the same as acknowledged: fixed in 2.4.1-hotfix config" in allowed.warnings[0]
    ack = ReleaseRecord(str(tmp_path)).lookup("2.4.1")[0]["acknowledged"]
    assert ack["reason"] == "fixed in 2.4.1-hotfix config" and ack["by"] == "AWX job 7" and ack["run_id"] == "r2"
    assert preflight_gate(preflight(tmp_path))["pending"] == 0  # the next run goes on without allow
    assert (
        preflight_gate(
            SimpleNamespace(p={"target_version": "2.4.1"}, name="x", check_mode=False, warnings=[], changed=False)
        )
        is None
    )  # no state folder: no gate


def test_the_preflight_refuses_a_rolled_back_release_before_any_pull_and_releases_its_lock(monkeypatch, tmp_path):
    facts = dict(
        container="engine-u001",
        image="engine:2.3.0",
        image_id="sha256:230",
        version="2.3.0",
        running=True,
        exists=True,
        deployment="container",
        repository="engine",
        identity={"key": "volume:engine-data-u001", "slug": "engine-data-u001"},
    )
    monkeypatch.setattr(_preflight, "resolve_engine", lambda client, params: facts)
    monkeypatch.setattr(_preflight, "rollback_image_problem", lambda *a, **k: pytest.fail("no gate after the refusal"))
    ReleaseRecord(str(tmp_path)).record(entry())
    params = {
        "inventory_name": "u001",
        "target_version": "2.4.1",
        "image_repository": None,
        "pull": "missing",
        "require_healthy": True,
        "allow_destructive": False,
        "url": None,
        "lock": {"dir": str(tmp_path / "locks"), "owner": "me", "run_id": "r1", "ttl": 60},
    }
    pre = _preflight.Preflight(params, client=None)
    monkeypatch.setattr(pre, "_health", lambda e: {"is_healthy": True, "failure": "none"})
    monkeypatch.setattr(pre, "_image", lambda image: pytest.fail("no pull of a refused release"))
    with pytest.raises(RolledBackReleaseError, match=r"^u001: release 2\.4\.1 was rolled back once"):
        pre.run()
    assert list((tmp_path / "locks").iterdir()) == []  # the lock taken first is released


# ---------------------------------------------------------------- written by the rollback


def rollback(tmp_path, check_mode=False, **params):
    engine = dict(
        container="engine-u001",
        image="engine:2.4.1",
        image_id="sha256:241",
        version="2.4.1",
        identity={"key": "volume:engine-data-u001"},
    )
    p = dict(inventory_name="u001", lock={"dir": str(tmp_path / "locks"), "owner": "me", "run_id": "r9"}, **params)
    return SimpleNamespace(
        p=p, engine=engine, check_mode=check_mode, warnings=[], actions=[], started=time.monotonic() - 20
    )


RESULT = dict(
    rolled_back=True,
    from_version="2.4.1",
    to_version="2.3.0",
    reason="verify: health: 503",
    kind="image+brain",
    snapshot="pre-upgrade-engine-data-u001-2.3.0-to-2.4.1-r9",
)


def test_a_successful_rollback_records_the_release_it_left(tmp_path) -> None:
    done = rollback(tmp_path)
    recorded = record_rollback(done, dict(RESULT))
    found = ReleaseRecord(str(tmp_path)).lookup("2.4.1")
    assert len(found) == 1 and recorded["path"] == str(tmp_path / FOLDER / "2.4.1.json")
    got = found[0]
    assert (got["engine"], got["identity"], got["run_id"], got["reason"]) == (
        "u001",
        "volume:engine-data-u001",
        "r9",
        "verify: health: 503",
    )
    assert (got["image"], got["rolled_back_to"], got["kind"]) == ("engine:2.4.1", "2.3.0", "image+brain")
    assert got["started_at"] < got["rolled_back_at"] and got["docker_host"]
    assert done.actions == [f"record release 2.4.1 as rolled back in {tmp_path / FOLDER / '2.4.1.json'}"]


def test_what_the_rollback_does_not_record(tmp_path) -> None:
    assert record_rollback(rollback(tmp_path), dict(RESULT, rolled_back=False)) is None
    assert record_rollback(rollback(tmp_path, record_release=False), dict(RESULT)) is None
    checking = rollback(tmp_path, check_mode=True)
    assert record_rollback(checking, dict(RESULT))["release"] == "2.4.1" and checking.actions
    assert not (tmp_path / FOLDER).exists()  # check mode predicts, writes nothing
    nowhere = rollback(tmp_path)
    nowhere.p["lock"] = None
    assert record_rollback(nowhere, dict(RESULT)) is None and "not recorded" in nowhere.warnings[0]
    by_tag = rollback(tmp_path, state_dir=str(tmp_path / "other"))
    assert record_rollback(by_tag, dict(RESULT, from_version=None))["release"] == "2.4.1"  # from the image's tag


def test_a_record_that_cannot_be_written_is_a_warning_not_a_failed_rollback(tmp_path) -> None:
    os.makedirs(tmp_path / FOLDER)
    (tmp_path / FOLDER / "2.4.1.json").write_text("garbage")
    done = rollback(tmp_path)
    assert record_rollback(done, dict(RESULT)) is None
    assert "cannot be read" in done.warnings[0] and "The rollback itself succeeded" in done.warnings[0]


# ---------------------------------------------------------------- the rollback's actions in their order


class FakePlan:
    def __init__(self):
        self.actions, self.warnings = [], []
        self.entry = {"name": "pre-upgrade-snap"}
        self.noop = False
        self.brain = "/data/brain.sqlite"


def test_the_rollback_reports_its_actions_in_the_order_they_happened(monkeypatch, tmp_path) -> None:
    plan = FakePlan()
    monkeypatch.setattr(_rollback, "stage_restore", lambda p: p.actions.append("stage snapshot pre-upgrade-snap"))
    monkeypatch.setattr(
        _rollback,
        "install_restore",
        lambda p, **k: p.actions.append("replace brain with snapshot pre-upgrade-snap") or None,
    )
    monkeypatch.setattr(_rollback, "restore_data_at_risk", lambda *a: None)

    def complete(p) -> None:  # the replaced brain is kept once, after the switch back (called again: nothing to do)
        if not getattr(p, "kept", False):
            p.kept = True
            p.actions.append("keep the replaced brain")

    monkeypatch.setattr(_rollback, "complete_restore", complete)
    monkeypatch.setattr(_rollback, "abort_restore", lambda p: None)
    module = SimpleNamespace(
        params=dict(
            version=None,
            image=None,
            reason="verify: health",
            deployment="container",
            replay="off",
            previous_brain_retain_days=30,
            inventory_name="u001",
            state_dir=str(tmp_path),
            record_release=True,
            lock=None,
        ),
        check_mode=False,
        notes=[],
    )
    rb = _rollback.Rollback(module, client=None)
    rb.engine = dict(
        container="engine-u001",
        exists=True,
        image="engine:2.4.1",
        version="2.4.1",
        previous={"image": "engine:2.3.0", "image_id": "sha256:230", "version": "2.3.0"},
    )
    monkeypatch.setattr(rb, "_image", lambda ref: {"present": True, "version": "2.3.0", "id": "sha256:230"})
    monkeypatch.setattr(rb, "_needs_restore", lambda target: (True, {"is_downgrade": True}))
    monkeypatch.setattr(rb, "_plan_restore", lambda version: (plan, None, None))
    monkeypatch.setattr(rb, "_replay", lambda p, previous: None)

    def switch(state, image=None):
        rb.actions.append(f"{state} engine-u001")
        return {"container": {}}

    monkeypatch.setattr(rb, "_switch", switch)
    monkeypatch.setattr(rb, "_finish", lambda result: dict(healthy=True, health={}))
    result = rb._run()
    assert rb.actions == [
        "stage snapshot pre-upgrade-snap",
        "stopped engine-u001",
        "replace brain with snapshot pre-upgrade-snap",
        "rolled_back engine-u001",
        "keep the replaced brain",
        f"record release 2.4.1 as rolled back in {tmp_path / FOLDER / '2.4.1.json'}",
    ]
    assert result["rolled_back"] and result["release_record"]["release"] == "2.4.1"
    assert ReleaseRecord(str(tmp_path)).lookup("2.4.1")[0]["rolled_back_to"] == "2.3.0"


# ---------------------------------------------------------------- the controller's run reports


def write_report(folder, name, report) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "w", encoding="utf-8") as handle:
        json.dump(report, handle)


def test_the_run_reports_hold_rollbacks_and_acknowledgements(tmp_path) -> None:
    recorded = dict(entry(), path="/state/rolled-back-releases/2.4.1.json")
    write_report(
        tmp_path / "r1",
        "upgrade.json",
        {
            "run_id": "r1",
            "written_at": "2026-05-04T02:15:00Z",
            "target_version": "2.4.1",
            "engines": [
                {
                    "engine": "u001",
                    "status": "rolled_back",
                    "to_version": "2.4.1",
                    "identity": "volume:engine-data-u001",
                    "reason": "verify: health",
                    "rollback": {
                        "rolled_back": True,
                        "reason": "verify: health: 503",
                        "to_version": "2.3.0",
                        "release_record": recorded,
                    },
                },
                {"engine": "u002", "status": "upgraded", "to_version": "2.4.1", "rollback": None},
            ],
        },
    )
    write_report(
        tmp_path / "r0",
        "rollback.json",
        {
            "run_id": "r0",
            "written_at": "2026-05-01T00:00:00Z",
            "engines": [
                {
                    "engine": "u003",
                    "rolled_back": True,
                    "from_version": "2.4.2",
                    "to_version": "2.3.0",
                    "reason": "requested",
                },
                {"engine": "u004", "rolled_back": False, "from_version": "2.3.0"},
            ],
        },
    )
    write_report(
        tmp_path / "dry",
        "upgrade.json",
        {
            "run_id": "dry",
            "check_mode": True,
            "engines": [{"engine": "u009", "to_version": "2.4.1", "rollback": {"rolled_back": True}}],
        },
    )
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "upgrade.json").write_text("{")
    warnings: list = []
    found = report_entries(str(tmp_path), warnings=warnings)
    assert sorted((e["release"], e["engine"]) for e in found) == [("2.4.1", "u001"), ("2.4.2", "u003")]
    mine = report_entries(str(tmp_path), "2.4.1")
    assert mine[0]["docker_host"] == "docker-a" and mine[0]["rolled_back_at"] == "2026-05-04T02:14:10.000Z"
    assert mine[0]["reason"] == "verify: health: 503" and mine[0]["source"].endswith("r1/upgrade.json")
    assert len(warnings) == 1 and "broken/upgrade.json" in warnings[0]
    write_report(
        tmp_path / "r2",
        "upgrade.json",
        {
            "run_id": "r2",
            "written_at": "2026-05-05T09:00:00Z",
            "engines": [
                {
                    "engine": "u001",
                    "status": "upgraded",
                    "to_version": "2.4.1",
                    "rolled_back_release": {"release": "2.4.1", "acknowledge": True, "reason": "fixed by INC-42"},
                }
            ],
        },
    )
    acknowledged = report_entries(str(tmp_path), "2.4.1")[0]["acknowledged"]
    assert acknowledged == dict(
        reason="fixed by INC-42", by=None, run_id="r2", engine="u001", at="2026-05-05T09:00:00Z"
    )
    assert _release_record.pending(report_entries(str(tmp_path), "2.4.2"))  # another release stays pending
