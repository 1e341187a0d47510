# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""End to end, "Don't redeploy in panic" (issue 12.5): real reference Engines, real ansible-playbook, real files.

Two Engines on 2.3.0 (``u001`` the canary, ``u002``), under a steady load. ``upgrade.yml`` to 2.4.1 (its /health
stays 503, /execute answers 503) rolls the canary back; the release is recorded on the Docker host. ``upgrade.yml`` to
2.4.1 again refuses at the canary's pre-flight, before anything changes (container ids and start times, images,
brains and their WAL, snapshots, locks all as they were), naming when, where and why 2.4.1 was rolled back. With
``engine_upgrade_allow_rolled_back_release=true`` and a reason it goes on (and 2.4.1, still broken, is rolled back
and recorded again), the reason in the report. The diagnostics bundle of the first run holds the postmortem draft
and the proposed regression eval.

The steps share one fleet (module scope) and run in order; each names the wiring of the role it needs when that is
not there yet (roles/engine_upgrade is the integrator's).
"""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from engine_testkit import Fleet, sweep
from engine_testkit.ansible import REPO_ROOT, PlaybookRun, run_playbook
from engine_testkit.fleet import TEST_BASE_PORT, unique_name
from engine_testkit.loadgen import LoadGenerator
from engine_testkit.settings import ANSIBLE_ENV, FAST_VARS, FORKS

pytestmark = pytest.mark.timeout(900)

BASELINE = "2.3.0"
BROKEN = "2.4.1"
UPGRADE = REPO_ROOT / "playbooks" / "upgrade.yml"
ROLE_TASKS = REPO_ROOT / "roles" / "engine_upgrade" / "tasks"
DRAFTS = REPO_ROOT / "tests" / "system" / "playbooks" / "postmortem_bundle.yml"
EVAL_CHECK = REPO_ROOT / "tests" / "system" / "playbooks" / "postmortem_eval_check.yml"
PREFLIGHT = REPO_ROOT / "tests" / "system" / "playbooks" / "preflight_rolled_back.yml"
#: A short health wait: 2.4.1 never becomes healthy, so the wait is the bad window.
VARS = {"engine_upgrade_health_timeout": 12, "engine_target_version": BROKEN}
REASON = "INC-4711: root cause found (index migration); retrying 2.4.1 on the canary only"


def wired(path: Path, text: str) -> bool:
    return path.is_file() and text in path.read_text(encoding="utf-8")


def sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


@dataclass
class Scene:
    """The module's fleet, folders and runs."""

    client: docker.DockerClient
    fleet: Fleet
    tmp: Path
    runs: list[PlaybookRun] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.tmp / "state"

    @property
    def report_dir(self) -> Path:
        return self.tmp / "reports"

    def run(self, label: str, **extra: Any) -> PlaybookRun:
        extra_vars = {
            **FAST_VARS,
            **VARS,
            "engine_state_dir": str(self.state_dir),
            "engine_report_dir": str(self.report_dir),
            **extra,
        }
        run = run_playbook(
            UPGRADE,
            extra_vars=extra_vars,
            inventory=self.tmp / "inventory.yml",
            args=FORKS,
            env=ANSIBLE_ENV,
            timeout=900,
        )
        self.runs.append(run)
        (self.tmp / f"run{len(self.runs):02d}.out").write_text(run.stdout + "\n" + run.stderr)
        print(f"--- {label}: rc={run.rc}\n{run.stdout[-2500:]}")
        return run

    def reports(self) -> list[dict[str, Any]]:
        paths = sorted(self.report_dir.glob("*/upgrade.json"), key=lambda p: p.stat().st_mtime)
        return [json.loads(p.read_text()) for p in paths]

    def state(self) -> dict[str, tuple]:
        """Per Engine: container id, start time, image, status; its brain's and WAL's sha256."""
        out = {}
        for engine in self.fleet.engines:
            container = engine.container()
            container.reload()
            path = engine.brain_path()
            out[engine.engine_id] = (
                container.id,
                container.attrs["State"]["StartedAt"],
                container.attrs["Config"]["Image"],
                container.status,
                sha256(path),
                sha256(Path(f"{path}-wal")),
            )
        return out

    def state_files(self) -> dict[str, str | None]:
        """Every file under the state folder (snapshots, locks, the record) and its sha256."""
        return {str(p.relative_to(self.state_dir)): sha256(p) for p in sorted(self.state_dir.rglob("*")) if p.is_file()}

    def record(self) -> dict[str, Any]:
        return json.loads((self.state_dir / "rolled-back-releases" / f"{BROKEN}.json").read_text())


@pytest.fixture(scope="module")
def scene(
    docker_client: docker.DockerClient, engine_images: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scene]:
    missing = [tag for tag in (BASELINE, BROKEN) if tag not in engine_images]
    if missing:
        pytest.fail(f"images engine:{', engine:'.join(missing)} not found: run `make images`", pytrace=False)
    tmp = tmp_path_factory.mktemp("release-record")
    fleet = Fleet(name=unique_name("rbr"), base_port=TEST_BASE_PORT, client=docker_client, workdir=tmp / "fleet")
    try:
        fleet.up(2, BASELINE, model="container", timeout=90)
        fleet.write_inventory(tmp / "inventory.yml", canaries=[fleet.engines[0].engine_id])
        yield Scene(docker_client, fleet, tmp)
    finally:
        try:
            fleet.down()
        finally:
            sweep(fleet.name, docker_client)


@pytest.fixture(scope="module")
def rolled_back(scene: Scene) -> dict[str, Any]:
    """Step 1: upgrade.yml to 2.4.1 under load; the canary is rolled back. Returns the run's report entry."""
    load = LoadGenerator(scene.fleet.engines, rate=2.0, feedback_ratio=0.0, max_seconds=600)
    load.start()
    try:
        run = scene.run("upgrade to 2.4.1 (rolled back)")
    finally:
        load.stop(timeout=10)
    assert run.rc == 2, run.stdout[-4000:]
    (report,) = scene.reports()
    (entry,) = report["engines"]
    canary = scene.fleet.engines[0].engine_id
    assert entry["engine"] == canary and entry["status"] == "rolled_back", entry
    return dict(entry, run_id=report["run_id"])


def test_the_rollback_records_the_release_on_the_docker_host(scene: Scene, rolled_back: dict[str, Any]) -> None:
    canary = scene.fleet.engines[0]
    assert scene.state()[canary.engine_id][2] == f"engine:{BASELINE}"  # back on the old release
    folder = scene.state_dir / "rolled-back-releases"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / f"{BROKEN}.json").stat().st_mode) == 0o600
    document = scene.record()
    (recorded,) = document["entries"]
    assert recorded["release"] == BROKEN and recorded["engine"] == canary.engine_id
    assert recorded["identity"] == f"volume:{canary.volume}" and recorded["run_id"] == rolled_back["run_id"]
    assert recorded["reason"] == rolled_back["rollback"]["reason"] and recorded["reason"].startswith("verify: health")
    assert recorded["rolled_back_to"] == BASELINE and recorded["acknowledged"] is None
    assert recorded["started_at"] <= recorded["rolled_back_at"] and recorded["docker_host"]
    # The rollback's own result says so too (the run report carries it).
    assert rolled_back["rollback"]["release_record"]["path"] == str(folder / f"{BROKEN}.json")


def test_upgrading_to_it_again_is_refused_before_anything_changes(scene: Scene, rolled_back: dict[str, Any]) -> None:
    before, files, reports = scene.state(), scene.state_files(), len(scene.reports())
    run = scene.run("upgrade to 2.4.1 again (refused)")
    assert run.rc == 2, run.stdout[-4000:]
    output = run.stdout + run.stderr
    canary = scene.fleet.engines[0].engine_id
    assert f"release {BROKEN} was rolled back once: on {canary} (Docker host " in output, output[-4000:]
    assert f"in run {rolled_back['run_id']}, back to {BASELINE}: verify: health" in output
    assert "engine_upgrade_allow_rolled_back_release=true" in output and "Nothing was changed." in output
    # Nothing changed: containers, images, brains, snapshots, locks; the record as it was.
    assert scene.state() == before
    assert scene.state_files() == files
    if wired(UPGRADE, "engine_release_info"):  # refused by the plan, for the whole fleet: no Engine was touched
        assert not run.task_results("Upgrade | Pre-flight of {{ inventory_hostname }}")
        assert len(scene.reports()) == reports
        return
    # Refused by the canary's pre-flight: the rollout stops at the canary, the other Engine untouched.
    assert f"{canary}: release {BROKEN} was rolled back once" in output
    report = scene.reports()[-1]
    (entry,) = report["engines"]
    assert entry["engine"] == canary and entry["status"] == "failed" and entry["step"] == "pre-flight", entry
    assert report["untouched"] == [scene.fleet.engines[1].engine_id]


def test_the_canary_pre_flight_refuses_it_on_its_own(scene: Scene, rolled_back: dict[str, Any]) -> None:
    """engine_preflight on the real Engine, as the role calls it: refused (check mode too); allowed with a reason in
    check mode it would acknowledge; nothing changes either way."""
    before, files = scene.state(), scene.state_files()
    canary = scene.fleet.engines[0].engine_id
    run = run_playbook(
        PREFLIGHT,
        extra_vars={"release": BROKEN, "state_dir": str(scene.state_dir)},
        inventory=scene.tmp / "inventory.yml",
        limit=canary,
        env=ANSIBLE_ENV,
        timeout=300,
    )
    assert run.rc == 0, run.stdout[-4000:]
    refused = run.result(f"Pre-flight of the upgrade to {BROKEN}", canary)
    assert refused["msg"].startswith(f"{canary}: release {BROKEN} was rolled back once: on {canary} (Docker host ")
    assert scene.state() == before and scene.state_files() == files
    assert scene.record()["entries"][0]["acknowledged"] is None


def test_the_plan_play_refuses_for_the_whole_fleet(scene: Scene, rolled_back: dict[str, Any]) -> None:
    if not wired(UPGRADE, "engine_release_info"):
        pytest.skip(
            "playbooks/upgrade.yml's plan play does not read the rolled-back releases yet (integration: the "
            "engine_release_info + release_gate tasks of the H18 report); the canary's pre-flight refuses"
        )
    run = scene.run(
        "upgrade to 2.4.1 without a reason (refused by the plan)", engine_upgrade_allow_rolled_back_release=True
    )
    assert run.rc != 0 and "engine_upgrade_allow_rolled_back_release=true needs" in run.stdout + run.stderr
    assert not run.task_results("Upgrade | Pre-flight of {{ inventory_hostname }}")


def test_the_diagnostics_hold_a_postmortem_draft_and_a_proposed_eval(scene: Scene, rolled_back: dict[str, Any]) -> None:
    bundle = Path(rolled_back["diagnostics"])
    assert bundle == scene.report_dir / rolled_back["run_id"] / "diagnostics" / rolled_back["engine"]
    if not wired(ROLE_TASKS / "diagnostics.yml", "postmortem_draft"):
        # The filters on this run's real diagnostics.json and engine.log, written as the role will write them.
        run = run_playbook(DRAFTS, extra_vars={"bundle": str(bundle)}, env=ANSIBLE_ENV, timeout=300)
        assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
    for name in ("postmortem.md", "regression-eval.proposed.yml"):
        assert stat.S_IMODE((bundle / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o700
    check_postmortem((bundle / "postmortem.md").read_text(), rolled_back)
    check_eval((bundle / "regression-eval.proposed.yml").read_text(), tmp=scene.tmp)
    if not wired(ROLE_TASKS / "diagnostics.yml", "postmortem_draft"):
        pytest.skip(
            "roles/engine_upgrade/tasks/diagnostics.yml does not write postmortem.md and "
            "regression-eval.proposed.yml yet (integration: the report_files task of the H18 report); the "
            "drafts were written from this run's bundle by tests/system/playbooks/postmortem_bundle.yml"
        )


def check_postmortem(draft: str, entry: dict[str, Any]) -> None:
    assert draft.startswith(f"# Postmortem draft: {BROKEN} on {entry['engine']} (run {entry['run_id']})")
    timeline = draft.split("## Timeline", 1)[1].split("## Symptoms", 1)[0]
    stamped = [line for line in timeline.splitlines() if line.startswith("- 20")]
    order = [line.split(" ", 2)[1] for line in stamped]
    assert order == sorted(order), timeline  # in time order
    for event in (
        "planned",
        "switched to 2.4.1",
        "log: engine: engine starting (2.4.1)",
        "log: first ERROR health: database self-check failed",
        "first failed turn: HTTP_503",
        "switched back to engine:2.3.0",
        "healthy again on 2.3.0",
    ):
        assert any(event in line for line in stamped), (event, timeline)
    assert "decision: rollback (health)" in timeline
    assert "## Measures before and after" in draft and "| error rate |" in draft
    assert f"Release {BROKEN} is recorded as rolled back on" in draft
    assert "regression-eval.proposed.yml" in draft and "Root cause" in draft


def check_eval(text: str, tmp: Path) -> None:
    assert text.startswith("# PROPOSED regression eval (proposed; review before adding)")
    document = yaml.safe_load(text)
    assert document["description"].startswith("PROPOSED; review before adding")
    (case,) = document["cases"]  # 2.4.1 refuses every turn the same way: one case
    assert case["name"] == "regression-2-4-1-http-503-1" and "HTTP_503" in case["description"]
    assert case["message"].startswith("REPLACE ME") and case["checks"] == [{"regex": r"\S"}]
    # engine_eval takes the file as it is (check mode: it validates the set and sends nothing).
    path = tmp / "proposed.yml"
    path.write_text(text)
    run = run_playbook(EVAL_CHECK, extra_vars={"cases_file": str(path)}, env=ANSIBLE_ENV, timeout=300)
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert run.result("Validate the proposed eval set")["eval"]["planned"] == [case["name"]]


def test_with_allow_and_a_reason_it_proceeds_and_the_reason_is_in_the_report(
    scene: Scene, rolled_back: dict[str, Any]
) -> None:
    if not wired(ROLE_TASKS / "preflight_check.yml", "rolled_back_release"):
        pytest.skip(
            "roles/engine_upgrade/tasks/preflight_check.yml does not pass engine_upgrade_allow_rolled_back_"
            "release / engine_upgrade_rolled_back_release_reason to engine_preflight yet (integration: H18 "
            "report)"
        )
    run = scene.run(
        "upgrade to 2.4.1 acknowledged",
        engine_upgrade_allow_rolled_back_release=True,
        engine_upgrade_rolled_back_release_reason=REASON,
    )
    assert run.rc == 2, run.stdout[-4000:]  # it went on: 2.4.1 is still broken and was rolled back again
    report = scene.reports()[-1]
    (entry,) = report["engines"]
    assert entry["status"] == "rolled_back" and entry["step"] == "verify", entry
    assert entry["rolled_back_release"]["reason"] == REASON
    assert REASON in (scene.report_dir / report["run_id"] / "upgrade.md").read_text()
    first, second = scene.record()["entries"]
    assert first["acknowledged"]["reason"] == REASON and first["acknowledged"]["run_id"] == report["run_id"]
    assert second["run_id"] == report["run_id"] and second["acknowledged"] is None  # refuses again next time
