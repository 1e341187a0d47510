# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Volume snapshots (issue 12.4) on real reference Engines, through the real playbook and the hook's task files.

playbooks/volume_snapshot.yml runs the same entry points of the role engine_volume_snapshot that the upgrade (after its
pre-upgrade snapshot) and the rollback (in place of the file-level restore) include. The built-in reflink provider
is tested on the Docker host's own file system (ext4 here: copies) and, where this host can make one, on an XFS file
system with reflink on a loop device (clones); a team's own provider (tests/system/playbooks/files/volume_provider/,
an archive standing in for a cloud snapshot) is plugged into the same hook. Engines are a lab ``vol-<8 hex>`` on
host ports 9900-9919; every container and volume is removed afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import docker
import pytest

from engine_testkit import LoadGenerator, task_ids
from engine_testkit.ansible import run_playbook
from engine_testkit.brain import applied_migrations, row_counts
from engine_testkit.fleet import unique_name
from engine_testkit.lab import EngineLab
from engine_testkit.settings import run_vars
from engine_testkit.waits import wait_until

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "volume_snapshot.yml"
ROLLBACK = Path(__file__).resolve().parent / "playbooks" / "volume_snapshot_rollback.yml"
PROVIDER = Path(__file__).resolve().parent / "playbooks" / "files" / "volume_provider"
PORTS = (9900, 9919)


@pytest.fixture
def lab(docker_client: docker.DockerClient, engine_images: list[str]):
    lab = EngineLab(unique_name("vol"), docker_client, ports=PORTS)
    try:
        yield lab
    finally:
        lab.down()


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def inventory(tmp_path: Path, hosts: dict, **common) -> Path:
    """An inventory of local Engines: {inventory name: host vars}."""
    path = tmp_path / "inventory.json"
    group_vars = dict(
        ansible_connection="local",
        ansible_python_interpreter=sys.executable,
        engine_state_dir=str(tmp_path / "state"),
        **common,
    )
    path.write_text(json.dumps({"all": {"children": {"engines": {"vars": group_vars, "hosts": hosts}}}}))
    return path


def play(inv: Path, check: bool = False, limit: str | None = None, **extra):
    return run_playbook(PLAYBOOK, extra_vars=extra, inventory=inv, check=check, limit=limit)


def records(folder: Path) -> dict[str, dict]:
    if not folder.is_dir():
        return {}
    return {
        name[: -len(".volume.json")]: json.loads((folder / name).read_text())
        for name in os.listdir(folder)
        if name.endswith(".volume.json")
    }


def container_facts(engine) -> tuple[str, str, bool]:
    container = engine.container()
    container.reload()
    state = container.attrs["State"]
    return container.id, state["StartedAt"], state["Running"]


def under_load(engine, minimum: int):
    """A LoadGenerator on `engine` that has at least `minimum` acknowledged turns."""
    load = LoadGenerator([engine], rate=6, feedback_ratio=0.3, workers_per_engine=3).start()
    wait_until(lambda: len(load.acks(engine.engine_id)) >= minimum, 60, f"{minimum} acknowledged turns")
    return load


@contextlib.contextmanager
def loaded(engine, minimum: int, then: int = 0):
    """A LoadGenerator on `engine` with at least `minimum` acknowledged turns for the block; when the block went
    through, `then` more turns acknowledged after it (the bad window after a snapshot). Stopped whatever happens."""
    load = under_load(engine, minimum)
    try:
        yield load
        if then:
            at_snapshot = len(load.acks(engine.engine_id))
            wait_until(lambda: len(load.acks(engine.engine_id)) >= at_snapshot + then, 60, "turns after the snapshot")
    finally:
        load.stop()


def wall(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def assert_reflink_record(record: dict, engine, snaps: Path) -> None:
    """The built-in provider's record of snapshot s1 (pre-upgrade, the Engine paused briefly, its brain verified),
    and the folder's modes (0700, records 0600)."""
    assert record["provider"] == "reflink" and record["id"] == "s1" and record["kind"] == "pre-upgrade"
    assert record["engine"]["key"] == f"volume:{engine.volume}" and record["engine_version"] == "2.3.0"
    assert record["paused"] == [engine.container_name] and record["paused_seconds"] < 30
    assert record["brain"]["verify"] == {"mode": "quick", "result": "ok"} and record["reason"] == "system test"
    assert oct(os.stat(snaps).st_mode & 0o777) == "0o700"
    assert all(oct(os.stat(snaps / n).st_mode & 0o777) == "0o600" for n in os.listdir(snaps) if n.endswith(".json"))


def test_snapshot_under_load_then_restore_gives_exactly_the_snapshot(lab, tmp_path):
    engine = lab.run("2.3.0")
    inv = inventory(tmp_path, {"u1": {"engine_container_name": engine.container_name}})
    snaps = tmp_path / "state" / "snapshots" / "u1"
    with loaded(engine, 10, then=10) as load:
        check = play(inv, check=True, engine_volume_snapshot_name="s1", engine_volume_snapshot_kind="pre-upgrade")
        assert check.rc == 0, check.stdout[-4000:]
        assert records(snaps) == {}, "check mode must write no snapshot"
        taken = play(
            inv,
            engine_volume_snapshot_name="s1",
            engine_volume_snapshot_kind="pre-upgrade",
            engine_volume_snapshot_reason="system test",
        )
        assert taken.rc == 0, taken.stdout[-4000:]
    record = records(snaps)["s1"]
    data = snaps / "s1.volume"
    assert_reflink_record(record, engine, snaps)
    by_path = {f["path"]: f for f in record["files"]}
    assert sha256(data / "brain.sqlite") == by_path["brain.sqlite"]["sha256"]
    acked = load.acked_before(engine.engine_id, wall(record["created_at"]), clock="wall")
    assert acked and acked <= task_ids(data / "brain.sqlite"), "a turn acknowledged before the snapshot is missing"
    later = load.acked_task_ids(engine.engine_id) - task_ids(data / "brain.sqlite")
    assert later, "turns acknowledged after the snapshot must not be in it"
    snapshot_rows = row_counts(data / "brain.sqlite")

    # check mode of the restore: the Engine keeps serving, its brain and the snapshot folder stay as they are
    before = container_facts(engine)
    brain_before = sha256(engine.brain_path())
    check = play(inv, check=True, engine_volume_snapshot_action="restore", engine_volume_snapshot_restore_name="s1")
    assert check.rc == 0, check.stdout[-4000:]
    assert container_facts(engine) == before and sha256(engine.brain_path()) == brain_before
    assert set(records(snaps)) == {"s1"}

    # the restore, left stopped: the volume holds exactly the snapshot's files
    restored = play(
        inv,
        engine_volume_snapshot_action="restore",
        engine_volume_snapshot_restore_name="s1",
        engine_volume_snapshot_restore_start=False,
    )
    assert restored.rc == 0, restored.stdout[-4000:]
    assert not container_facts(engine)[2], "the Engine was left stopped as asked"
    assert sha256(engine.brain_path()) == by_path["brain.sqlite"]["sha256"]
    assert row_counts(engine.brain_path()) == snapshot_rows
    assert not later & task_ids(engine.brain_path())
    kept = [name for name, rec in records(snaps).items() if rec["kind"] == "pre-restore"]
    assert len(kept) == 1, records(snaps)
    assert later <= task_ids(snaps / f"{kept[0]}.volume" / "brain.sqlite"), "the bad window's turns are kept"
    assert [n for n in os.listdir(engine.volume_mountpoint()) if n.startswith(".september-volume-")] == []

    # again, with the Engine started by the playbook: nothing to restore, and it comes up healthy on its brain
    again = play(inv, engine_volume_snapshot_action="restore", engine_volume_snapshot_restore_name="s1")
    assert again.rc == 0, again.stdout[-4000:]
    assert len([r for r in records(snaps).values() if r["kind"] == "pre-restore"]) == 1
    assert engine.is_healthy() and engine.image_version() == "2.3.0"
    assert acked <= task_ids(engine.brain_path())


def test_another_engines_snapshot_is_refused_before_anything_changes(lab, tmp_path):
    first, second = lab.run("2.3.0"), lab.run("2.3.0")
    shared = tmp_path / "shared-snapshots"
    inv = inventory(
        tmp_path,
        {"e1": {"engine_container_name": first.container_name}, "e2": {"engine_container_name": second.container_name}},
        engine_snapshot_dir=str(shared),
    )
    taken = play(inv, limit="e1", engine_volume_snapshot_name="of-e1")
    assert taken.rc == 0, taken.stdout[-4000:]
    before, brain = container_facts(second), sha256(second.brain_path())
    refused = play(
        inv, limit="e2", engine_volume_snapshot_action="restore", engine_volume_snapshot_restore_name="of-e1"
    )
    assert refused.rc != 0
    assert f"belongs to Engine volume:{first.volume}" in refused.stdout and "another user's memory" in refused.stdout
    assert container_facts(second) == before and sha256(second.brain_path()) == brain
    assert set(records(shared)) == {"of-e1"}


def test_bad_input_is_one_error_before_anything_changes(lab, tmp_path):
    engine = lab.run("2.3.0")
    inv = inventory(tmp_path, {"u1": {"engine_container_name": engine.container_name}})
    snaps = tmp_path / "state" / "snapshots" / "u1"
    before = container_facts(engine)
    bad_choice = play(inv, engine_volume_snapshot_clone="sometimes")
    assert bad_choice.rc != 0 and "engine_volume_snapshot_clone" in bad_choice.stdout
    bad_provider = tmp_path / "bad_provider.yml"
    bad_provider.write_text(
        "---\n- name: A provider that returns no id\n  ansible.builtin.set_fact:\n"
        "    engine_volume_snapshot_provided: {provider: nowhere}\n"
    )
    wrong = play(inv, engine_volume_snapshot_tasks=str(bad_provider))
    assert wrong.rc != 0 and "must set the fact engine_volume_snapshot_provided" in wrong.stdout
    assert "Nothing was recorded" in wrong.stdout
    nothing = play(inv, engine_volume_snapshot_action="restore")
    assert nothing.rc != 0 and "no volume snapshot can be restored" in nothing.stdout
    assert records(snaps) == {} and container_facts(engine) == before


def test_a_teams_provider_through_the_hook(lab, tmp_path):
    engine = lab.run("2.3.0")
    archives, log = tmp_path / "archives", tmp_path / "provider.log"
    archives.mkdir()
    inv = inventory(
        tmp_path,
        {"u1": {"engine_container_name": engine.container_name}},
        engine_volume_snapshot_tasks=str(PROVIDER / "snapshot.yml"),
        engine_volume_snapshot_restore_tasks=str(PROVIDER / "restore.yml"),
        test_provider_dir=str(archives),
        test_provider_log=str(log),
    )
    snaps = tmp_path / "state" / "snapshots" / "u1"
    with loaded(engine, 5, then=5):
        taken = play(inv, engine_volume_snapshot_name="team1", engine_volume_snapshot_kind="pre-upgrade")
        assert taken.rc == 0, taken.stdout[-4000:]
    record = records(snaps)["team1"]
    assert record["provider"] == "test-tar" and record["id"] == str(archives / "team1.tar")
    assert record["engine"]["key"] == f"volume:{engine.volume}" and record["kind"] == "pre-upgrade"
    assert record["data"] == {"volume": engine.volume, "identity": f"volume:{engine.volume}"}
    restored = play(inv, engine_volume_snapshot_action="restore")  # chosen by record: the newest pre-upgrade one
    assert restored.rc == 0, restored.stdout[-4000:]
    assert log.read_text().split("\n")[:3] == [
        "snapshot snapshot running=true",
        "restore check running=true",
        "restore restore running=false",
    ]
    assert engine.is_healthy()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    subprocess.run(["tar", "-C", str(scratch), "-xf", str(archives / "team1.tar")], check=True)
    # the Engine started again on the restored brain: every task of the archive is there, none written after it
    assert task_ids(engine.brain_path()) == task_ids(scratch / "brain.sqlite")


# ---------------------------------------------------------------- clones on XFS with reflink


def _xfs_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a loop device and a mount)"
    for tool in ("losetup", "mkfs.xfs", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: xfsprogs, mount)"
    return None


@pytest.fixture
def xfs(lab, tmp_path):
    """An XFS file system with reflink on a loop device at tmp_path/xfs (removed with the lab's Engines first)."""
    problem = _xfs_problem()
    if problem:
        pytest.skip(f"no XFS file system with reflink here: {problem}")
    image, mount = tmp_path / "xfs.img", tmp_path / "xfs"
    mount.mkdir()
    with open(image, "wb") as handle:
        handle.truncate(512 * 1024 * 1024)
    made = subprocess.run(["losetup", "-f", "--show", str(image)], check=False, capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"no loop device here: {made.stderr.strip()}")
    device = made.stdout.strip()
    try:
        subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", device], check=True, capture_output=True)
        subprocess.run(["mount", device, str(mount)], check=True, capture_output=True)
        yield mount
    finally:
        lab.down()  # its containers hold the volume's bind mount
        with contextlib.suppress(subprocess.CalledProcessError):
            subprocess.run(["umount", str(mount)], check=True, capture_output=True)
        subprocess.run(["losetup", "-d", device], check=False, capture_output=True)


def test_reflink_clones_on_xfs(lab, xfs, tmp_path, docker_client):
    folder = xfs / "engine-data"
    folder.mkdir()
    volume = f"engine-data-{lab.name}-xfs"
    docker_client.volumes.create(
        name=volume,
        driver="local",
        labels=lab.labels(),
        driver_opts={"type": "none", "o": "bind", "device": str(folder)},
    )
    engine = lab.run("2.3.0", volume=volume)
    snaps = xfs / "snapshots"
    inv = inventory(
        tmp_path, {"x1": {"engine_container_name": engine.container_name, "engine_snapshot_dir": str(snaps)}}
    )
    with loaded(engine, 10, then=10) as load:
        taken = play(inv, engine_volume_snapshot_name="x1", engine_volume_snapshot_clone="always")
        assert taken.rc == 0, taken.stdout[-4000:]
    record = records(snaps)["x1"]
    assert record["method"] == "reflink" and record["source"]["filesystem"] == "xfs"
    assert record["source"]["folder"] == str(folder), "the volume's content is the folder it binds, not its Mountpoint"
    snapshot_tasks = task_ids(snaps / "x1.volume" / "brain.sqlite")
    assert load.acked_before(engine.engine_id, wall(record["created_at"]), clock="wall") <= snapshot_tasks
    restored = play(
        inv,
        engine_volume_snapshot_action="restore",
        engine_volume_snapshot_restore_name="x1",
        engine_volume_snapshot_clone="always",
    )
    assert restored.rc == 0, restored.stdout[-4000:]
    assert engine.is_healthy() and task_ids(folder / "brain.sqlite") == snapshot_tasks
    kept = [rec for rec in records(snaps).values() if rec["kind"] == "pre-restore"]
    assert len(kept) == 1 and kept[0]["method"] == "reflink"


# ---------------------------------------------------------------- wired as the upgrade and the rollback will


@pytest.mark.parametrize(("to", "restored"), [("2.4.0", True), ("2.3.1", False)])
def test_the_rollback_wiring_restores_the_volume_only_when_the_brain_needs_it(lab, tmp_path, to, restored):
    engine = lab.run("2.3.0")
    inv = inventory(tmp_path, {"u1": {"engine_container_name": engine.container_name}})
    snaps = tmp_path / "state" / "snapshots" / "u1"
    with loaded(engine, 5) as load:
        run = run_playbook(ROLLBACK, extra_vars=dict(vol_run="run7", vol_to=to, vol_restored=restored), inventory=inv)
    assert run.rc == 0, run.stdout[-6000:]
    name = f"volume-pre-upgrade-{engine.volume}-2.3.0-to-{to}-run7"
    record = records(snaps)[name]
    assert record["kind"] == "pre-upgrade" and record["engine_version"] == "2.3.0" and record["run_id"] == "run7"
    assert engine.is_healthy() and engine.image_version() == "2.3.0"
    snapshot_brain = snaps / f"{name}.volume" / "brain.sqlite"
    assert (
        applied_migrations(engine.brain_path())
        == applied_migrations(snapshot_brain)
        == [f"000{i}" for i in range(1, 6)]
    )
    assert task_ids(snapshot_brain) <= task_ids(engine.brain_path())
    kept = [rec for rec in records(snaps).values() if rec["kind"] == "pre-restore"]
    if restored:
        assert len(kept) == 1 and kept[0]["brain"]["applied_migrations"][-1] > "0005", "the 2.4.0 brain is kept"
    else:  # an image rollback: what was written on 2.3.1 stays in the brain
        assert kept == []
        assert load.acked_task_ids(engine.engine_id) <= task_ids(engine.brain_path())


def test_a_compose_engine_is_stopped_restored_and_started_through_compose(make_fleet, tmp_path):
    fleet = make_fleet(name=unique_name("volc"), base_port=PORTS[1] + 1)
    engine = fleet.up(1, "2.3.0", model="compose")[0]
    inv = fleet.write_inventory(tmp_path / "inventory.yml", group_vars={"engine_state_dir": str(tmp_path / "state")})
    snaps = tmp_path / "state" / "snapshots" / engine.engine_id
    taken = play(inv, engine_volume_snapshot_name="c1")
    assert taken.rc == 0, taken.stdout[-4000:]
    record = records(snaps)["c1"]
    assert record["engine"]["key"] == f"volume:{engine.volume}" and record["paused"] == [engine.container_name]
    load = under_load(engine, 5)
    load.stop()
    assert load.acked_task_ids(engine.engine_id) - task_ids(snaps / "c1.volume" / "brain.sqlite")
    restored = play(inv, engine_volume_snapshot_action="restore", engine_volume_snapshot_restore_name="c1")
    assert restored.rc == 0, restored.stdout[-4000:]
    for step in ("Drain and stop the Compose service", "Start the Compose service again"):
        name = f"september.engine.engine_volume_snapshot : Volume restore | {step}"
        assert [r["changed"] for r in restored.task_results(name, engine.engine_id)] == [True], step
    assert engine.is_healthy()
    assert task_ids(engine.brain_path()) == task_ids(snaps / "c1.volume" / "brain.sqlite")


def test_the_upgrade_takes_a_volume_snapshot_and_its_rescue_restores_it(lab, tmp_path):
    """upgrade.yml with engine_upgrade_snapshot_method=volume (no file-level snapshot): 2.4.1 fails its health gate,
    the rescue's rollback restores the brain's volume from the upgrade's own volume snapshot (the Engine stopped),
    then switches the image back without a file-level restore."""
    engine = lab.run("2.3.0")
    inv = inventory(tmp_path, {"u1": {"engine_container_name": engine.container_name}})
    snaps = tmp_path / "state" / "snapshots" / "u1"
    with loaded(engine, 5):
        run = run_playbook(
            ROOT / "playbooks" / "upgrade.yml",
            extra_vars=run_vars(tmp_path / "state", tmp_path / "reports", engine_target_version="2.4.1",
                                engine_rollout_stages=["100%"], engine_upgrade_snapshot_method="volume",
                                engine_run_id="volrun"),
            inventory=inv,
        )
    assert run.rc == 2, run.stdout[-6000:]
    (report,) = [json.loads(p.read_text()) for p in (tmp_path / "reports").glob("*/upgrade.json")]
    (entry,) = report["engines"]
    assert entry["status"] == "rolled_back" and entry["snapshot"] is None, entry  # no file-level snapshot
    assert entry["rollback"]["kind"] == "image" and entry["rollback"]["brain_restored"] is False, entry["rollback"]
    name = f"volume-pre-upgrade-{engine.volume}-2.3.0-to-2.4.1-volrun"
    record = records(snaps)[name]
    assert record["kind"] == "pre-upgrade" and record["run_id"] == "volrun"
    assert not [n for n in os.listdir(snaps) if n.startswith("pre-upgrade-")], os.listdir(snaps)
    # Back on 2.3.0, healthy, on the brain the volume snapshot holds (2.4.1's migration 0006 gone), with every turn
    # acknowledged before the snapshot; the 2.4.1 brain is kept.
    wait_until(engine.is_healthy, 60, "the Engine healthy on 2.3.0")
    assert engine.image_version() == "2.3.0"
    snapshot_brain = snaps / f"{name}.volume" / "brain.sqlite"
    baseline = [f"000{i}" for i in range(1, 6)]
    assert applied_migrations(engine.brain_path()) == applied_migrations(snapshot_brain) == baseline
    assert task_ids(snapshot_brain) <= task_ids(engine.brain_path())
    kept = [rec for rec in records(snaps).values() if rec["kind"] == "pre-restore"]
    assert len(kept) == 1 and kept[0]["brain"]["applied_migrations"][-1] == "0006", kept
    assert not list((tmp_path / "state" / "locks").glob("*.lock")), "a lock was left"
