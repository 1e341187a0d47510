# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""End to end: playbooks/upgrade.yml and rollback.yml on 12 real Engines (both hosting models) under load.

Every scenario of issue 4 runs real ``ansible-playbook`` against a fresh fleet (see ``conftest.py``) and
checks from the outside what happened: Docker (container ids, StartedAt, images, version labels), the
Engines' ``/health``, the brains (every acknowledged write of the load generator), the snapshot folders
(modes, manifests, kept bad-window brains) and the run report. The fleet's inventory order is
``u001 c001 u002 c002 u003 c003 ...`` (per-user container, Compose); the rollout order is the plan's: the group
``engine_canary`` first, then the stable sha256 order of names (all these Engines are on one Docker host), cut by
the default stages into batches of 1, 1, 4 and 6. A test that needs a known canary puts it in ``engine_canary``.
Under the load, the canary gathers enough turns to be judged against the control Engines within its bake rounds.
"""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from engine_testkit import brain
from engine_testkit.ansible import PlaybookRun
from engine_testkit.webhook import WebhookReceiver

pytestmark = pytest.mark.timeout(900)

#: The test's fleet: a ``Rollout`` of conftest.py (fixture ``rollout``).
Rollout = Any
BASELINE = "2.3.0"
BASELINE_MIGRATIONS = ["0001", "0002", "0003", "0004", "0005"]
#: Default stages (5%, 10%, 50%, 100%) on 12 Engines.
DEFAULT_BATCHES = [1, 1, 4, 6]


def iso_ts(text: str) -> float:
    """An ISO 8601 UTC time (``...Z``) as a POSIX timestamp."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def expected_batches(rollout: Rollout, sizes: list[int] | None = None) -> list[list[str]]:
    """The Engines of each batch in the plan's documented order (default: the default stages on this fleet)."""
    return rollout.planned_batches(DEFAULT_BATCHES if sizes is None else sizes)


def results_named(run: PlaybookRun, prefix: str) -> list[tuple[int, str, dict[str, Any]]]:
    """(position, host, result) of every task whose name (without its role) starts with ``prefix``, in run order."""
    found = []
    position = 0
    for play in (run.data or {}).get("plays", []):
        for task in play.get("tasks", []):
            position += 1
            if task["task"]["name"].split(" : ", 1)[-1].startswith(prefix):
                found.extend((position, host, result) for host, result in task["hosts"].items())
    return found


def task_results(run: PlaybookRun) -> list[tuple[str, str, dict[str, Any]]]:
    """(task name without its role, host, result) of every task result of the run, in run order."""
    return [(task["task"]["name"].split(" : ", 1)[-1], host, result)
            for play in (run.data or {}).get("plays", []) for task in play.get("tasks", [])
            for host, result in task["hosts"].items()]


def switched_by_batch(run: PlaybookRun) -> list[set[str]]:
    """The Engines whose image switch task changed, per batch, in the order the batches ran."""
    batches: list[set[str]] = []
    events = results_named(run, "Upgrade | Announce the batch") + results_named(run, "Upgrade | Drain and switch")
    for _pos, host, result in sorted(events, key=lambda item: item[0]):
        if "msg" in result and str(result.get("msg", "")).startswith("Batch "):
            batches.append(set())
        elif result.get("changed"):
            batches[-1].add(host)
    return batches


def assert_all_on(rollout: Rollout, version: str, states: dict | None = None) -> None:
    """Every Engine runs ``engine:<version>`` (image, version label, Compose setting) and is healthy."""
    states = states or rollout.state()
    for engine in rollout.engines:
        st = states[engine.engine_id]
        assert st.image == f"engine:{version}", f"{engine.engine_id} runs {st.image}"
        assert st.version == version, f"{engine.engine_id} reports version {st.version}"
        assert st.status == "running", f"{engine.engine_id} is {st.status}"
        if engine.model == "compose":
            assert rollout.configured_tag(engine) == f"engine:{version}", engine.engine_id
    rollout.fleet.wait_healthy(timeout=20)


def assert_untouched(rollout: Rollout, before: dict, after: dict, engine_ids: list[str]) -> None:
    """Same container (id, StartedAt: never stopped), same image, no snapshot folder."""
    for eid in engine_ids:
        assert after[eid] == before[eid], f"{eid} was touched: {before[eid]} -> {after[eid]}"
        assert not rollout.snapshot_dir(eid).exists(), f"{eid} got a snapshot folder"


def pre_upgrade(rollout: Rollout, eid: str, target: str) -> dict[str, Any]:
    """The one pre-upgrade snapshot of ``eid`` toward ``target`` (its manifest: named after and naming ``eid``)."""
    found = rollout.pre_upgrade_snapshots(eid, BASELINE, target)
    assert len(found) == 1, f"{eid}: pre-upgrade snapshots {list(rollout.snapshots(eid))}"
    return found[0]


def pre_restore(rollout: Rollout, eid: str) -> list[dict[str, Any]]:
    """The snapshots that keep a brain replaced by a restore."""
    return rollout.pre_restore_snapshots(eid)


def assert_restored(rollout: Rollout, eid: str, target: str, lg: Any, bad_migration: str) -> dict[str, Any]:
    """``eid`` runs the restored pre-upgrade brain; the replaced one (``bad_migration`` applied) is kept."""
    engine = rollout.engine(eid)
    snap = pre_upgrade(rollout, eid, target)
    kept = pre_restore(rollout, eid)
    assert len(kept) == 1, f"{eid}: expected one kept bad-window brain, got {kept}"
    kept_path = rollout.snapshot_dir(eid) / f"{kept[0]['name']}.sqlite"
    assert bad_migration in brain.applied_migrations(kept_path), f"{eid}: the kept brain lacks {bad_migration}"
    assert brain.applied_migrations(engine.brain_path()) == BASELINE_MIGRATIONS, f"{eid}: brain not restored"
    rollout.assert_writes_kept_restored(engine, snap, kept[0], lg)
    return kept[0]


# ---------------------------------------------------------------------- 1 and 2: 2.3.0 -> 2.4.0


@pytest.fixture(scope="class")
def upgraded(fleets: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One fleet for scenarios 1 and 2: a --check run on 2.3.0, then the upgrade to 2.4.0 under load.

    The check run goes first and without load (the brains must stay byte for byte the same); the tests
    below assert on what each run did, and the last one runs the upgrade a second time.
    """
    with fleets.open(tmp_path_factory.mktemp("roll-240")) as rollout:
        out: dict[str, Any] = {"rollout": rollout}
        out["check_before"] = (rollout.state(), rollout.compose_files(), rollout.brain_sha256())
        out["check"] = rollout.run("upgrade.yml", check=True, label="check", engine_target_version="2.4.0")
        out["check_after"] = (rollout.state(), rollout.compose_files(), rollout.brain_sha256())
        out["check_snapshot_files"] = rollout.snapshot_files()
        out["before"] = rollout.state()
        with rollout.load() as lg:
            out["loadgen"] = lg
            out["run"] = rollout.run("upgrade.yml", label="upgrade", engine_target_version="2.4.0")
        out["report"] = rollout.report() if out["run"].rc == 0 else None
        yield out


class TestUpgrade240:
    def test_check_mode_changes_nothing_and_shows_the_plan(self, upgraded: dict) -> None:
        rollout, run = upgraded["rollout"], upgraded["check"]
        assert run.rc == 0, run.stdout[-4000:]
        states_before, files_before, brains_before = upgraded["check_before"]
        states_after, files_after, brains_after = upgraded["check_after"]
        assert states_after == states_before  # same container ids, StartedAt, images
        assert files_after == files_before  # compose files, .env, no state record written
        assert brains_after == brains_before  # brains byte for byte
        assert upgraded["check_snapshot_files"] == []  # no snapshot written
        assert not (rollout.state_dir / "locks").exists() or not any((rollout.state_dir / "locks").iterdir())
        # The plan: the canary first (no allowlist here: the first in the stable hash order), then the stages.
        planned = [r["plan"] for _pos, _host, r in results_named(run, "Plan | Check the settings") if "plan" in r]
        assert len(planned) == 1, planned
        assert planned[0]["batches"] == expected_batches(rollout) and planned[0]["serial"] == DEFAULT_BATCHES
        assert planned[0]["canaries"][0]["engine"] == rollout.planned_order()[0]
        plans = {host: result["msg"] for _pos, host, result in results_named(run, "Upgrade | Plan")
                 if not result.get("skipped")}  # (not "Upgrade | Plan the rollout" of a play of your own)
        assert set(plans) == {e.engine_id for e in rollout.engines}
        for host, msg in plans.items():
            assert f"{host}:" in msg and f"{BASELINE} -> 2.4.0" in msg, msg
            assert "snapshot" in msg and "switch" in msg, msg
            assert "rollback brain_restore" in msg, msg
            assert "0006" in msg, msg
        for host, result in ((h, r) for _p, h, r in results_named(run, "Upgrade | Drain and switch")):
            if not result.get("skipped"):
                assert result.get("changed"), f"{host}: check mode should predict the switch"

    def test_upgrade_canary_first_then_stages(self, upgraded: dict) -> None:
        rollout, run, lg = upgraded["rollout"], upgraded["run"], upgraded["loadgen"]
        assert run.rc == 0, run.stdout[-6000:]
        before, after = upgraded["before"], rollout.state()
        assert_all_on(rollout, "2.4.0", after)
        for engine in rollout.engines:
            assert after[engine.engine_id].container_id != before[engine.engine_id].container_id
            if engine.model == "container":
                assert rollout.containers_named(f"{engine.container_name}--previous") == []
        # Batches in canary / 10% / 50% / 100% order: in the report and in the order of the switches.
        expected = expected_batches(rollout)
        report = upgraded["report"]
        assert report["batches"] == DEFAULT_BATCHES
        assert not report["stopped"] and report["untouched"] == [] and report["lost"] == []
        assert report["outcome"] == "completed"
        assert report["plan"]["total"] == len(rollout.engines)
        assert [c["engine"] for c in report["plan"]["canaries"]] == expected[0]
        batch_of = {e["engine"]: int(e["batch"]) for e in report["engines"]}
        assert batch_of == {eid: n for n, ids in enumerate(expected, 1) for eid in ids}
        assert {e["status"] for e in report["engines"]} == {"upgraded"}
        assert switched_by_batch(run) == [set(ids) for ids in expected]
        # The canary was judged on evidence (its turns and the controls' over the same window), never promoted on
        # none; a later batch without a bake of its own may be promoted undecided (policy proceed), and says so.
        entries = {e["engine"]: e for e in report["engines"]}
        canary = entries[expected[0][0]]
        assert canary["evidence"] == "pass" and canary["verdict"]["decision"] == "pass", canary["verdict"]
        assert canary["verdict"]["evidence"]["control"]["turns"] > 0, canary["verdict"]
        assert canary["engine"] not in report["promoted_undecided"]
        for eid in report["promoted_undecided"]:
            assert (entries[eid]["evidence"], entries[eid]["policy"]) == ("undecided", "proceed"), entries[eid]
            assert entries[eid]["batch"] > 1
        # Snapshots: one pre-upgrade snapshot per Engine, 0600 files in a 0700 folder, taken on 2.3.0.
        for engine in rollout.engines:
            folder = rollout.snapshot_dir(engine.engine_id)
            assert file_mode(folder) == 0o700
            snap = pre_upgrade(rollout, engine.engine_id, "2.4.0")
            assert snap["applied_migrations"] == BASELINE_MIGRATIONS
            for suffix in (".sqlite", ".json"):
                assert file_mode(folder / f"{snap['name']}{suffix}") == 0o600
            assert brain.applied_migrations(engine.brain_path()) == [*BASELINE_MIGRATIONS, "0006"]
            rollout.assert_writes_kept(engine, lg)
        assert lg.stats()["totals"]["wrong_answers"] == 0

    def test_second_run_is_a_no_op(self, upgraded: dict) -> None:
        rollout = upgraded["rollout"]
        assert upgraded["run"].rc == 0, "the first upgrade failed"
        before = rollout.state()
        snapshots_before = rollout.snapshot_files()
        reports_before = sorted(rollout.report_dir.iterdir())
        with rollout.load() as lg:
            run = rollout.run("upgrade.yml", label="again", engine_target_version="2.4.0",
                              engine_upgrade_write_report=False)
        assert run.rc == 0, run.stdout[-4000:]
        # No task changed anything. (The plan play's add_host changes only the run's in-memory inventory, lining the
        # Engines up in the group september_engine_rollout: Ansible reports that as changed, so it is left out.)
        changed = [(task, host) for task, host, result in task_results(run) if result.get("changed")
                   and task != "Plan | Line the Engines up in rollout order"]
        assert changed == [], changed
        assert set(run.stats) == {e.engine_id for e in rollout.engines}
        assert all(s["failures"] == 0 for s in run.stats.values())
        # Every Engine was found on the target and verified: nothing to do (its lock taken and released).
        entries = [r["ansible_facts"]["engine_upgrade_result"]
                   for _p, _h, r in results_named(run, "Upgrade | Record the result of this Engine")]
        assert sorted(e["engine"] for e in entries) == sorted(e.engine_id for e in rollout.engines)
        assert {(e["action"], e["status"]) for e in entries} == {("none", "verified")}, entries
        assert rollout.lock_files() == [] and sorted(rollout.report_dir.iterdir()) == reports_before
        assert rollout.state() == before
        assert rollout.snapshot_files() == snapshots_before
        for engine in rollout.engines:
            rollout.assert_writes_kept(engine, lg)


# ---------------------------------------------------------------------- 3: patch, then rollback.yml


def test_patch_then_image_only_rollback(rollout: Rollout) -> None:
    with rollout.load() as lg:
        # One batch: the stages are scenario 1's; here the rollback is under test.
        up = rollout.run("upgrade.yml", label="to 2.3.1", engine_target_version="2.3.1", engine_rollout_stages=["100%"])
        assert up.rc == 0
        assert_all_on(rollout, "2.3.1")
        back = rollout.run("rollback.yml", label="rollback", engine_rollback_serial=len(rollout.engines))
    assert back.rc == 0
    assert_all_on(rollout, BASELINE)
    results = {host: r["ansible_facts"]["engine_rollback_result"]
               for _p, host, r in results_named(back, "Rollback | Record the result on")}
    assert set(results) == {e.engine_id for e in rollout.engines}
    for engine in rollout.engines:
        eid = engine.engine_id
        result = results[eid]
        assert result["rolled_back"] is True and result["brain_restored"] is False, result
        assert (result["from_version"], result["to_version"]) == ("2.3.1", BASELINE)
        assert pre_restore(rollout, eid) == []  # the brain was not replaced
        assert list(rollout.snapshots(eid)) == [pre_upgrade(rollout, eid, "2.3.1")["name"]]
        assert brain.applied_migrations(engine.brain_path()) == BASELINE_MIGRATIONS
        rollout.assert_writes_kept(engine, lg)
    # The rollback run's own report: every Engine, image only, nothing at risk.
    (path,) = rollout.report_dir.glob("*/rollback.json")
    report = json.loads(path.read_text())
    assert report["failed"] == [] and report["not_reached"] == []
    assert {e["engine"]: (e["kind"], e["to_version"], e["data_at_risk"]) for e in report["engines"]} == {
        e.engine_id: ("image", BASELINE, None) for e in rollout.engines
    }
    assert file_mode(path) == 0o600 and file_mode(path.parent) == 0o700
    assert "| image |" in (path.parent / "rollback.md").read_text()


# ---------------------------------------------------------------------- 4, 5: the canary fails


@pytest.mark.parametrize(
    ("target", "bad_migration", "why"),
    [("2.4.1", "0006", "status degraded"), ("2.5.0", "0007", "keeps dying")],
    ids=["health-gate-2.4.1", "crash-loop-2.5.0"],
)
def test_canary_fails_and_is_rolled_back_with_its_brain(
    rollout: Rollout, target: str, bad_migration: str, why: str
) -> None:
    canary, *others = [e.engine_id for e in rollout.engines]
    rollout.write_inventory(canaries=[canary])
    before = rollout.state()
    with rollout.load() as lg:
        run = rollout.run("upgrade.yml", label=f"to {target}", engine_target_version=target,
                          engine_upgrade_health_timeout=20)
    assert run.rc != 0
    after = rollout.state()
    # The canary: back on 2.3.0, healthy, its brain restored from the pre-upgrade snapshot, the bad one kept.
    assert after[canary].image == f"engine:{BASELINE}" and after[canary].version == BASELINE
    rollout.fleet.wait_healthy(timeout=20)
    assert rollout.containers_named(f"{rollout.engine(canary).container_name}--failed")  # kept for a post-mortem
    kept = assert_restored(rollout, canary, target, lg, bad_migration)
    report = rollout.report()
    assert report["stopped"] is True and report["batches_run"] == 1
    (entry,) = report["engines"]
    assert entry["engine"] == canary and entry["status"] == "rolled_back"
    assert entry["evidence"] == "health" and report["outcome"] == "stopped_rolled_back"
    assert entry["reason"].startswith("verify: health: ") and why in entry["reason"], entry["reason"]  # step, why
    assert entry["rollback"]["brain_restored"] is True
    assert entry["rollback"]["snapshot"] == pre_upgrade(rollout, canary, target)["name"]
    assert entry["rollback"]["previous_brain"]["name"] == kept["name"]
    assert sorted(report["untouched"]) == sorted(others)
    # Nobody else was touched.
    assert_untouched(rollout, before, after, others)
    for eid in others:
        rollout.assert_writes_kept(rollout.engine(eid), lg)
    assert f"{canary}: the upgrade to {target} failed at verify: " in run.stdout


# ---------------------------------------------------------------------- 6: destructive migration


def test_destructive_release_needs_acknowledgement(rollout: Rollout) -> None:
    # Acknowledged, the upgrade runs on 4 Engines of the 12 in one batch, for speed: both hosting models, the
    # tag in the compose file and in .env.
    chosen = [e.engine_id for e in rollout.engines[:4]]
    before = rollout.state()
    with rollout.load() as lg:
        refused = rollout.run("upgrade.yml", label="3.0.0 refused", engine_target_version="3.0.0")
        after_refusal = rollout.state()
        snapshots_after_refusal = rollout.snapshot_files()
        done = rollout.run("upgrade.yml", label="3.0.0 acknowledged", limit=chosen, engine_target_version="3.0.0",
                           engine_upgrade_allow_destructive=True, engine_rollout_stages=["100%"])
    assert refused.rc != 0
    assert "0008_memory_v3" in refused.stdout and "destructive" in refused.stdout
    assert after_refusal == before
    assert snapshots_after_refusal == []
    assert done.rc == 0
    after = rollout.state()
    assert_untouched(rollout, before, after, [eid for eid in before if eid not in chosen])
    for engine in (rollout.engine(eid) for eid in chosen):
        st = after[engine.engine_id]
        assert (st.image, st.version) == ("engine:3.0.0", "3.0.0"), st
        if engine.model == "compose":
            assert rollout.configured_tag(engine) == "engine:3.0.0"
    rollout.fleet.wait_healthy(timeout=20)
    for engine in (rollout.engine(eid) for eid in chosen):
        snap = pre_upgrade(rollout, engine.engine_id, "3.0.0")
        retained = iso_ts(snap["retain_until"]) - iso_ts(snap["created_at"])
        assert retained >= timedelta(days=7).total_seconds(), snap
        assert "0008" in brain.applied_migrations(engine.brain_path())
    for engine in rollout.engines:
        rollout.assert_writes_kept(engine, lg)


# ---------------------------------------------------------------------- 7: missing tag


def test_missing_tag_fails_before_any_engine_stops(rollout: Rollout) -> None:
    before = rollout.state()
    with rollout.load() as lg:
        run = rollout.run("upgrade.yml", label="9.9.9", engine_target_version="9.9.9")
    assert run.rc != 0
    assert "engine:9.9.9" in run.stdout
    after = rollout.state()
    assert_untouched(rollout, before, after, [e.engine_id for e in rollout.engines])
    assert rollout.snapshot_files() == []
    for engine in rollout.engines:
        rollout.assert_writes_kept(engine, lg)


# ---------------------------------------------------------------------- 8: unwind


FAULT_IMAGE = "rollfault/engine:2.4.0"


@pytest.fixture
def fault_image(docker_client: docker.DockerClient) -> Iterator[str]:
    """``rollfault/engine:2.4.0``: 2.4.1 (fails its health gate) under the 2.4.0 tag of another repository."""
    image = docker_client.images.get("engine:2.4.1")
    image.tag("rollfault/engine", "2.4.0")
    try:
        yield FAULT_IMAGE
    finally:
        for tag in docker_client.images.get(image.id).tags:
            if tag.startswith("rollfault/"):
                docker_client.images.remove(tag, noprune=True)


def test_failure_in_the_50_percent_batch_unwinds_everything(rollout: Rollout, fault_image: str) -> None:
    # Six Engines in engine_canary, which the plan puts first: they make the batches of 1, 1 and 4. Two per-user
    # containers and the four Compose projects that set the whole image in their compose file (the faulty image is
    # of another repository: the collection changes a tag in .env, never a repository written elsewhere), so the 50%
    # batch holds at least two of them; the faulty Engine is the last of those.
    chosen = ["u001", "u002", "c001", "c003", "c004", "c005"]
    rollout.write_inventory(canaries=[f"{rollout.fleet.name}-{suffix}" for suffix in chosen])
    batches = expected_batches(rollout)
    faulty = [eid for eid in batches[2] if rollout.engine(eid).model == "compose"][-1]
    assert "${ENGINE_TAG}" not in (rollout.engine(faulty).compose_dir / "docker-compose.yml").read_text()
    rollout.write_inventory({faulty: {"engine_image_repository": "rollfault/engine"}})
    before = rollout.state()
    with WebhookReceiver() as hook, rollout.load() as lg:
        run = rollout.run("upgrade.yml", label="unwind", engine_target_version="2.4.0", engine_upgrade_unwind=True,
                          engine_upgrade_health_timeout=20, engine_webhook_url=hook.url)
    assert run.rc != 0
    after = rollout.state()
    assert_all_on(rollout, BASELINE, after)
    report = rollout.report()
    assert report["stopped"] is True and report["unwound"] is True and report["batches_run"] == 3
    status = {e["engine"]: e["status"] for e in report["engines"]}
    upgraded_then_unwound = [eid for batch in batches[:3] for eid in batch if eid != faulty]
    assert status == {**dict.fromkeys(upgraded_then_unwound, "unwound"), faulty: "rolled_back"}
    assert sorted(report["untouched"]) == sorted(batches[3])
    # The faulty Engine is rolled back by its own rescue, then the others are unwound newest first (the webhook
    # hears of each rollback as it starts).
    rolled = [re.match(r"Rolling back (\S+) to ", text).group(1) for text in hook.texts("rollback")]
    assert rolled == [faulty, *reversed(upgraded_then_unwound)], rolled
    assert hook.texts("rollback")[0].startswith(f"Rolling back {faulty} to {BASELINE} due to verify: health: ")
    assert all("due to unwind: the upgrade to 2.4.0 failed in batch 3" in t for t in hook.texts("rollback")[1:])
    assert_untouched(rollout, before, after, batches[3])
    for eid in batches[3]:
        rollout.assert_writes_kept(rollout.engine(eid), lg)
    # Every upgraded Engine ran 2.4.0 (migration 0006): unwound with its brain restored, the 2.4.0 brain kept.
    rollbacks = {e["engine"]: e["rollback"] for e in report["engines"]}
    for eid in [*upgraded_then_unwound, faulty]:
        assert after[eid].container_id != before[eid].container_id
        kept = assert_restored(rollout, eid, "2.4.0", lg, "0006")
        assert rollbacks[eid]["brain_restored"] is True, rollbacks[eid]
        assert rollbacks[eid]["snapshot"] == pre_upgrade(rollout, eid, "2.4.0")["name"]
        assert rollbacks[eid]["previous_brain"]["name"] == kept["name"]
