# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/upgrade.yml through ansible-runner, as an AWX job runs it, on two real Engines (both hosting models).

The private data dir is laid out as AWX lays it out (the inventory under ``inventory/``, the survey answers as
extra vars, the collection on ``ANSIBLE_COLLECTIONS_PATH``, ``awx_job_id`` set). Two jobs run: a good upgrade
(2.3.0 -> 2.4.0, with the survey's answers typed as AWX sends them: stages as comma-separated text,
yes/no strings, integers) and a bad one (2.4.1, whose canary never gets healthy). The Engines see no traffic of
their own: the survey asks for probe turns, so that each batch is judged on evidence (an undecided canary would be
rolled back). Checked: the runner's status and rc, the events in ``artifacts/<ident>/job_events`` (the role's tasks,
the per-host stats), the ``set_stats`` summary (``artifact_data`` of the ``playbook_on_stats`` event, which AWX
shows as the job's artifacts), and that the Engines' API key appears in no artifact.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ansible_runner
import docker
import pytest
import yaml

from engine_testkit.ansible import COLLECTIONS_PATH, REPO_ROOT, ensure_collection_link
from engine_testkit.settings import CANARY_BAKE, probe_vars

from .awxlab import AwxLab, make_lab

pytestmark = pytest.mark.timeout(420)

BASE_PORT = 9080
#: The survey's other answers, typed as AWX sends them: text, yes/no multiple choice, integer; probe turns give the
#: idle Engines evidence (each a real turn in the brain), judged on 10 turns.
SURVEY = {
    "engine_rollout_stages": "50%,100%",
    "engine_upgrade_allow_destructive": "no",
    "engine_upgrade_unwind": "no",
    "engine_upgrade_canary_bake_seconds": CANARY_BAKE,
    **probe_vars(turns=12, min_turns=10),
}
PYTHON_BIN = Path(sys.executable).parent


def runner_job(lab: AwxLab, ident: str, job_id: int, **survey: Any) -> tuple[Any, Path]:
    """One job through ansible_runner.run(); returns the runner and its private data dir."""
    ensure_collection_link()
    pdd = lab.tmp / f"job-{ident}"
    (pdd / "inventory").mkdir(parents=True)
    inventory = pdd / "inventory" / "hosts.yml"
    fd = os.open(inventory, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(lab.inventory(), handle, sort_keys=False)
    runner = ansible_runner.run(
        private_data_dir=str(pdd),
        project_dir=str(REPO_ROOT),
        playbook="playbooks/upgrade.yml",
        inventory=str(inventory),
        extravars=lab.extra_vars(awx_job_id=job_id, awx_job_template_name="Upgrade Engines", **survey),
        envvars={
            "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS_PATH),
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_NOCOLOR": "1",
            "PATH": f"{PYTHON_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        },
        forks=20,
        ident=ident,
        quiet=True,
        timeout=300,
    )
    print(f"--- job {ident}: status={runner.status} rc={runner.rc}\n{runner.stdout.read()[-2500:]}")
    return runner, pdd


def job_events(pdd: Path, ident: str) -> list[dict]:
    folder = pdd / "artifacts" / ident / "job_events"
    assert folder.is_dir(), f"no job_events in {pdd / 'artifacts' / ident}"
    events = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    return sorted(events, key=lambda e: e["counter"])


def summary(events: list[dict]) -> dict:
    """The set_stats data of the job: artifact_data of its playbook_on_stats event."""
    stats = [e for e in events if e["event"] == "playbook_on_stats"]
    assert len(stats) == 1, [e["event"] for e in events][-5:]
    return stats[0]["event_data"]["artifact_data"]["september_engine_upgrade"]


def task_names(events: list[dict], event: str) -> set[str]:
    return {e["event_data"]["task"] for e in events if e["event"] == event}


@pytest.fixture(scope="module")
def jobs(docker_client: docker.DockerClient, awx_images: list[str], tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[dict[str, Any]]:
    """Two Engines on 2.3.0; the good job (to 2.4.0), then the bad one (to 2.4.1)."""
    with make_lab(docker_client, tmp_path_factory.mktemp("awx-runner"), BASE_PORT) as lab:
        lab.up(2, "2.3.0")
        out: dict[str, Any] = {"lab": lab}
        out["good"] = runner_job(lab, "good", 41, engine_target_version="2.4.0", **SURVEY)
        out["good_versions"] = lab.versions()
        out["bad"] = runner_job(lab, "bad", 42, engine_target_version="2.4.1", **SURVEY)
        out["bad_versions"] = lab.versions()
        yield out


def test_good_job_succeeds_with_its_events_and_summary(jobs: dict[str, Any]) -> None:
    lab: AwxLab = jobs["lab"]
    runner, pdd = jobs["good"]
    assert runner.status == "successful" and runner.rc == 0
    assert (pdd / "artifacts" / "good" / "rc").read_text().strip() == "0"
    assert (pdd / "artifacts" / "good" / "status").read_text().strip() == "successful"
    events = job_events(pdd, "good")
    ok = task_names(events, "runner_on_ok")
    for task in ("Upgrade | Snapshot the brain before the switch", "Upgrade | Judge the batch",
                 "Upgrade | Wait until the Engine is healthy on 2.4.0",
                 "Upgrade | Drop the previous container now that the Engine is verified"):
        assert task in ok, f"{task!r} not among the job's ok events"
    preflights = {e["event_data"]["host"]: e["event_data"]["res"] for e in events if e["event"] == "runner_on_ok"
                  and e["event_data"]["task"].startswith("Upgrade | Pre-flight of")}
    assert set(preflights) == {e.engine_id for e in lab.engines}
    assert all(r["preflight"]["lock"]["action"] == "acquire" for r in preflights.values()), preflights
    switched = {e["event_data"]["host"] for e in events
                if e["event"] == "runner_on_ok" and e["event_data"]["task"].startswith("Upgrade | Drain and switch")}
    assert switched == {e.engine_id for e in lab.engines}
    roles = {e["event_data"].get("role") for e in events if e["event"] == "runner_on_ok"}
    assert "engine_upgrade" in roles
    # Per-host stats as AWX shows them, and the run's summary from set_stats.
    assert runner.stats["failures"] == {} and set(runner.stats["ok"]) == {e.engine_id for e in lab.engines}
    data = summary(events)
    assert data["target_version"] == "2.4.0" and data["stopped"] is False and data["outcome"] == "completed"
    assert data["counts"] == {"upgraded": 2}
    report = Path(data["report"])
    assert report.is_file() and report.parent.parent == lab.report_dir
    full = json.loads((report.parent / "upgrade.json").read_text())
    assert full["stopped"] is False and full["promoted_undecided"] == []
    # Both batches passed on the probes' evidence, the canary first.
    assert [(e["engine"], e["batch"], e["evidence"]) for e in full["engines"]] == [
        (lab.engines[0].engine_id, 1, "pass"), (lab.engines[1].engine_id, 2, "pass")]
    assert all(e["evals"]["before"]["total"] == SURVEY["engine_upgrade_probe_turns"] for e in full["engines"])
    assert jobs["good_versions"] == {e.engine_id: ("running", "2.4.0") for e in lab.engines}


def test_bad_job_fails_and_says_the_rollout_stopped(jobs: dict[str, Any]) -> None:
    lab: AwxLab = jobs["lab"]
    runner, pdd = jobs["bad"]
    assert runner.status == "failed" and runner.rc != 0
    events = job_events(pdd, "bad")
    canary, rest = lab.engines
    # The health wait on 2.4.1 never got a healthy streak; the verification ended the canary (rescued: rolled back),
    # and the Engine ended failed, which stops the rollout.
    waited = [e["event_data"]["res"] for e in events if e["event"] == "runner_on_ok"
              and e["event_data"]["task"] == "Upgrade | Wait until the Engine is healthy on 2.4.1"]
    assert [w["health"]["is_healthy"] for w in waited] == [False], waited
    failed = task_names(events, "runner_on_failed")
    assert "Upgrade | End the verification (rollback)" in failed, failed
    assert "Upgrade | End the Engine as failed (rolled_back)" in failed, failed
    data = summary(events)
    assert data["target_version"] == "2.4.1" and data["stopped"] is True and data["outcome"] == "stopped_rolled_back"
    assert data["counts"] == {"rolled_back": 1}, data
    assert runner.stats["failures"] == {canary.engine_id: 1}
    # The canary is back on 2.4.0, the other Engine was never touched.
    assert jobs["bad_versions"] == {canary.engine_id: ("running", "2.4.0"), rest.engine_id: ("running", "2.4.0")}
    lab.fleet.wait_healthy(timeout=20)


def test_no_artifact_holds_the_api_key(jobs: dict[str, Any]) -> None:
    lab: AwxLab = jobs["lab"]
    for _runner, pdd in (jobs["good"], jobs["bad"]):
        artifacts = pdd / "artifacts"
        files = [p for p in artifacts.rglob("*") if p.is_file()]
        assert files
        leaking = [str(p) for p in files if lab.api_key in p.read_text(errors="replace")]
        assert not leaking, f"the API key is in {leaking}"
