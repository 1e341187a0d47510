# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""brain_replay as a whole module on real SQLite brains (the reference Engine's code and migrations wrote them, a
real snapshot and restore kept them); Docker is faked."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from ansible_collections.september.engine.plugins.module_utils._fileops import sha256_file
from ansible_collections.september.engine.plugins.module_utils._replay import MIGRATIONS_RECORD
from ansible_collections.september.engine.plugins.module_utils._restore import (
    abort_restore,
    install_restore,
    stage_restore,
)
from ansible_collections.september.engine.plugins.module_utils._snapshot_store import SnapshotStore
from ansible_collections.september.engine.plugins.modules import brain_replay
from engine_testkit.bad_window import rows

MIGRATIONS = dict(migrations_source="table", migrations_table="engine_schema_migrations", migrations_column="version")


@pytest.fixture
def client(docker_host):
    return docker_host.serve(brain_replay)


def folder_state(folder) -> dict:
    return {name: sha256_file(os.path.join(folder, name)) for name in sorted(os.listdir(folder))}


@pytest.fixture
def engine(bad_window):
    """An Engine's brain after a rollback: the pre-upgrade snapshot (2.3.x) restored over what 2.4.x wrote in the
    bad window, which is kept as a pre-restore snapshot beside it."""
    scene = bad_window(upto=6, turns=8)
    try:
        stage_restore(scene.plan)
        previous = install_restore(scene.plan, client=None, fields=dict(engine=scene.identity, kind="pre-restore"),
                                   migrations=MIGRATIONS)
    finally:
        abort_restore(scene.plan)
    return dict(brain=scene.brain, folder=scene.folder, dest=scene.store.dest, written=scene.written,
                previous=previous, key=scene.key)


def test_check_apply_again_with_diff(engine, client, run_module):
    args = dict(path=engine["brain"], dest=engine["dest"])
    before = folder_state(engine["folder"])
    check = run_module(brain_replay, args, check=True, diff=True)
    assert not check["failed"], check
    assert check["changed"] and check["replay"]["predicted"]
    assert folder_state(engine["folder"]) == before, "check mode changed the brain's folder"
    assert check["replay"]["bad_window"]["name"] == engine["previous"]["name"]
    assert check["replay"]["baseline"]["name"] == "pre-upgrade-2.3.0"
    diff = check["diff"]
    assert diff["after"]["rows"]["tasks"] - diff["before"]["rows"]["tasks"] == 8
    assert "memory_tags" not in diff["after"]["rows"]  # the restored brain has no such table
    done = run_module(brain_replay, args, diff=True)
    assert done["changed"] and not done["replay"]["predicted"]
    assert done["replay"]["tables"] == check["replay"]["tables"] and done["diff"] == diff
    assert set(engine["written"]["tasks"]) <= {r[0] for r in rows(engine["brain"], "tasks", "task_id")}
    assert set(engine["written"]["signals"]) <= {r[0] for r in rows(engine["brain"], "learning_signals", "signal_id")}
    assert "insert 8 row(s) of tasks" in done["actions"]
    not_replayed = {t: [e["reason"] for e in v["not_replayable"]] for t, v in done["replay"]["tables"].items()
                    if v["not_replayable"]}
    assert not_replayed == {"memory_tags": ["table not in the old schema"],
                            "engine_schema_migrations": [MIGRATIONS_RECORD]}
    again = run_module(brain_replay, args, diff=True)
    assert not again["changed"] and again["actions"] == []
    assert again["replay"]["totals"]["already_there"] == sum(done["replay"]["totals"]["replayed"].values())
    assert again["diff"]["before"] == again["diff"]["after"]
    json.dumps(done)  # what Ansible gets back is JSON


def test_report_reads_only_even_while_the_engine_runs(engine, client, run_module):
    client.containers.add("sept-u1", engine["folder"])
    before = folder_state(engine["folder"])
    report = run_module(brain_replay, dict(path=engine["brain"], dest=engine["dest"], mode="report"))
    assert not report["failed"] and not report["changed"] and report["replay"]["predicted"]
    assert report["replay"]["totals"]["replayable"]["inserted"] > 0
    assert report["replay"]["totals"]["replayed"] == dict(inserted=0, updated=0)
    assert folder_state(engine["folder"]) == before


def test_a_running_engine_refuses_the_replay_and_check_mode_too(engine, client, run_module):
    client.containers.add("sept-u1", engine["folder"])
    before = folder_state(engine["folder"])
    for check in (False, True):
        result = run_module(brain_replay, dict(path=engine["brain"], dest=engine["dest"]), check=check)
        assert result["failed"] and "Refusing to replay onto the brain" in result["msg"]
        assert "running container(s) sept-u1 mount its folder" in result["msg"]
        assert result["holders"] and folder_state(engine["folder"]) == before


def test_auto_replays_the_additive_2_4_release(engine, client, run_module):
    result = run_module(brain_replay, dict(path=engine["brain"], dest=engine["dest"], mode="auto"))
    assert not result["failed"] and result["changed"] and result["replay"]["mode"] == "replay"
    assert result["replay"]["mode_reason"] == "the bad release's migrations only added to the old schema"
    assert set(engine["written"]["tasks"]) <= {r[0] for r in rows(engine["brain"], "tasks", "task_id")}


def test_off_does_nothing(engine, client, run_module):
    result = run_module(brain_replay, dict(path="/nonexistent/brain.sqlite", mode="off"))
    assert not result["failed"] and not result["changed"] and result["replay"] == dict(mode="off", brain=None)


def test_named_files_and_what_is_refused(engine, client, tmp_path, run_module):
    store = SnapshotStore(engine["dest"])
    bad, base = engine["previous"]["name"], "pre-upgrade-2.3.0"
    named = run_module(brain_replay, dict(path=engine["brain"], dest=engine["dest"], bad_window=bad, baseline=base,
                                          mode="report", tables=dict(exclude=["*_vec"])))
    assert not named["failed"], named
    excluded = named["replay"]["tables"]["episodes_vec"]["not_replayable"]
    assert [e["reason"] for e in excluded] == ["excluded by the tables option"]
    no_dest = run_module(brain_replay, dict(path=engine["brain"], bad_window=bad))
    assert no_dest["failed"] and "give dest" in no_dest["msg"]
    nothing = run_module(brain_replay, dict(path=engine["brain"], dest=str(tmp_path / "empty")))
    assert nothing["failed"] and "no pre-restore snapshot of this Engine" in nothing["msg"]
    # another Engine's kept brain: refused, unless allowed
    manifest_path = store.manifest_path(bad)
    manifest = json.loads(open(manifest_path, encoding="utf-8").read())
    manifest["engine"]["key"] = "volume:engine-data-someone-else"
    with open(manifest_path, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle)
    before = folder_state(engine["folder"])
    foreign = run_module(brain_replay, dict(path=engine["brain"], dest=engine["dest"], bad_window=bad))
    assert foreign["failed"] and "another user" in foreign["msg"] and folder_state(engine["folder"]) == before
    allowed = run_module(brain_replay, dict(path=engine["brain"], dest=engine["dest"], bad_window=bad,
                                            allow_other_engine=True), check=True)
    assert not allowed["failed"] and any("used anyway" in w for w in allowed["warnings"])
    # a plain file without a manifest: used, with a warning
    plain = str(tmp_path / "plain.sqlite")
    conn = sqlite3.connect(store.data_path(bad))
    conn.execute(f"VACUUM INTO '{plain}'")
    conn.close()
    loose = run_module(brain_replay, dict(path=engine["brain"], dest=engine["dest"], bad_window=plain, mode="report"))
    assert not loose["failed"] and any("no snapshot manifest beside it" in w for w in loose["warnings"])
    assert loose["replay"]["totals"]["written_in_bad_window"] == named["replay"]["totals"]["written_in_bad_window"]
