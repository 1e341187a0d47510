# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""engine_eval against real reference Engines on the local Docker engine, through real ansible-playbook.

Every case runs playbooks/engine_eval.yml: evaluate, evaluate again, check mode, diff; the playbook
asserts changed=true (every eval turn is written to the brain), no diff, the pass rate and the verdict;
pytest then checks the results against the Engine's brain (the turns are really there, check mode wrote
none) and searches every output for the API key. Fleets are named ``evl-<8 hex>`` and use host ports 9500-9549.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from engine_testkit import brain
from engine_testkit.ansible import PlaybookRun, run_playbook
from engine_testkit.fleet import Engine, Fleet

REPO = Path(__file__).resolve().parents[3]
PLAYBOOKS = REPO / "tests" / "system" / "playbooks"
PLAYBOOK = PLAYBOOKS / "engine_eval.yml"
BAD_INPUT = PLAYBOOKS / "engine_eval_bad_input.yml"
SCRIPT = PLAYBOOKS / "files" / "engine_eval_script.py"
REFERENCE_SET = REPO / "roles" / "engine_upgrade" / "files" / "evals" / "reference.yml"
BASE_PORT = 9500
TASKS = ("Evaluate the Engine", "Evaluate the Engine again", "Evaluate the Engine in check mode",
         "Evaluate the Engine with diff")
REAL_RUNS = (TASKS[0], TASKS[1], TASKS[3])
#: The reference set's arithmetic cases that 2.4.2 always answers off by one (SHA-256 of the message % 3 == 0).
OFF_BY_ONE = {"add-123-456": "579", "add-250-250": "500", "add-negative": "-5", "mul-12-12": "144"}


@pytest.fixture
def fleet(make_fleet) -> Fleet:
    return make_fleet(name=f"evl-{uuid.uuid4().hex[:8]}", base_port=BASE_PORT)


def reference_cases() -> list[dict]:
    return yaml.safe_load(REFERENCE_SET.read_text(encoding="utf-8"))["cases"]


def assert_no_key(run: PlaybookRun, key: str) -> None:
    """The key appears nowhere: not in the output, not in any task result."""
    assert key not in run.stdout and key not in run.stderr
    assert key not in json.dumps(run.data)


def evaluate(engine: Engine, **extra) -> PlaybookRun:
    """The four-run playbook; rc checked, the key searched for, the four results' evals returned in order."""
    run = run_playbook(PLAYBOOK, extra_vars={"eval_api_key": engine.api_key, **extra})
    assert run.rc == 0, run.stdout[-5000:] + run.stderr[-2000:]
    assert_no_key(run, engine.api_key)
    for task in TASKS:
        assert run.result(task)["changed"] is True  # eval turns are written to the brain (check mode: would be)
    return run


def recreate(engine: Engine, version: str, fleet: Fleet) -> None:
    """Upgrade in place: a container of ``version`` on the same volume, port, key, network and labels."""
    old = engine.container()
    labels = {k: v for k, v in (old.labels or {}).items() if k.startswith("io.september.")}
    env = [item for item in old.attrs["Config"]["Env"] if item.startswith("ENGINE_API_KEY=")]
    old.stop(timeout=30)
    old.remove()
    engine._client().containers.run(
        f"engine:{version}",
        name=engine.container_name,
        detach=True,
        environment=env,
        volumes={engine.volume: {"bind": "/data", "mode": "rw"}},
        ports={"8000/tcp": ("127.0.0.1", engine.port)},
        restart_policy={"Name": "unless-stopped"},
        network=fleet.network,
        labels=labels,
    )
    engine.image = f"engine:{version}"
    fleet.wait_healthy([engine], timeout=60)


@pytest.mark.parametrize("version", ["2.3.0", "2.4.0"])
def test_reference_set_passes_on_healthy_releases(fleet, version):
    engine = fleet.up(1, version)[0]
    before = brain.task_ids(engine.brain_path(), status=None)
    run = evaluate(engine, eval_container=engine.container_name, eval_cases_file=str(REFERENCE_SET),
                   expected_pass_rate=1.0)
    names = [c["name"] for c in reference_cases()]
    seen_tasks = set()
    for task in REAL_RUNS:
        ev = run.result(task)["eval"]
        assert ev["url"] == engine.url and ev["source"] == str(REFERENCE_SET)
        assert (ev["total"], ev["passed"], ev["failed"], ev["errors"]) == (len(names), len(names), 0, {})
        assert [r["name"] for r in ev["results"]] == names
        for r in ev["results"]:
            assert r["passed"] and r["error"] is None and r["failed_checks"] == [] and r["attempts"] == 1
            assert r["latency_ms"] >= 200  # a real turn of the reference Engine (250 ms +/- 10%)
        seen_tasks |= {r["task_id"] for r in ev["results"]}
    answers = {r["name"]: r["answer"] for r in run.result(TASKS[0])["eval"]["results"]}
    assert answers["add-17-25"] == "42" and answers["ack-hello"] == "ack:2cf24dba5fb0"
    assert answers["echo-unicode"] == "café ☕ naïve" and answers["echo-multiline"] == "line one\nline two"
    # three real runs wrote their turns, completed, in the brain; the check-mode run wrote none
    after = brain.task_ids(engine.brain_path(), status=None)
    assert len(after - before) == 3 * len(names)
    assert seen_tasks == after - before
    assert seen_tasks <= brain.task_ids(engine.brain_path(), status="completed")


@pytest.mark.parametrize(("target", "decision"), [("2.4.2", "rollback"), ("2.4.0", "ok")])
def test_upgrade_compared_with_the_baseline_of_the_same_engine(fleet, target, decision):
    engine = fleet.up(1, "2.3.0")[0]
    baseline_run = evaluate(engine, eval_container=engine.container_name, eval_cases_file=str(REFERENCE_SET),
                            expected_pass_rate=1.0)
    baseline = baseline_run.result(TASKS[0])["eval"]
    recreate(engine, target, fleet)
    run = evaluate(engine, eval_container=engine.container_name, eval_cases_file=str(REFERENCE_SET),
                   eval_baseline=baseline, expected_decision=decision)
    for task in REAL_RUNS:
        ev = run.result(task)["eval"]
        verdict = ev["verdict"]
        assert verdict["compared"] == len(reference_cases()) and verdict["not_compared"] == []
        assert verdict["pass_rate_before"] == 1.0
        if decision == "ok":
            assert ev["pass_rate"] == 1.0 and verdict["regressions"] == [] and verdict["pass_rate_drop"] == 0
            assert verdict["reasons"][0] == "all 16 eval case(s) that passed before still pass"
            continue
        regressions = {r["name"]: r for r in verdict["regressions"]}
        # the off-by-one answers are deterministic: each of them fails, wrong or with a tool failure
        assert set(OFF_BY_ONE) <= set(regressions)
        for name, right in OFF_BY_ONE.items():
            detail = regressions[name]["detail"]
            wrong = str(int(right) + 1)
            assert detail in (f"answered {wrong}, expected {right}",
                              "failed with TOOL_EXECUTION_FAILED: tool 'calculator' returned malformed output")
            assert regressions[name]["baseline_answer"] == right
        for regression in regressions.values():
            assert regression["error"] in (None, "TOOL_EXECUTION_FAILED")
        assert verdict["pass_rate_after"] == ev["pass_rate"] < 1.0
        assert verdict["pass_rate_drop"] == round(1.0 - ev["pass_rate"], 4)
        reason = verdict["reasons"][0]
        assert reason.startswith(f"{len(regressions)} eval case(s) that passed before now fail (more than "
                                 "max_regressions=0): ")
        assert all(name in reason for name in OFF_BY_ONE)
        assert ev["failed"] == len(regressions) and set(ev["errors"]) <= {"TOOL_EXECUTION_FAILED"}


def test_tolerated_regressions_still_listed(fleet):
    engine = fleet.up(1, "2.3.0")[0]
    baseline = evaluate(engine, eval_url=engine.url, eval_cases_file=str(REFERENCE_SET)).result(TASKS[0])["eval"]
    recreate(engine, "2.4.2", fleet)
    run = evaluate(engine, eval_url=engine.url, eval_cases_file=str(REFERENCE_SET), eval_baseline=baseline,
                   eval_max_regressions=16, expected_decision="ok")
    verdict = run.result(TASKS[0])["eval"]["verdict"]
    assert len(verdict["regressions"]) >= len(OFF_BY_ONE)
    assert "(within max_regressions=16)" in verdict["reasons"][0]


def test_inline_cases_with_a_conversation(fleet):
    engine = fleet.up(1, "2.3.0")[0]
    cases = [
        {"name": f"turn-{i}", "message": f"echo: turn {i}", "conversation_id": "evl-conversation",
         "checks": [{"equals": f"turn {i}"}]} for i in range(3)
    ] + [{"name": "wrong-on-purpose", "message": "what is 2 + 2", "checks": [{"equals": "5"}]}]
    run = evaluate(engine, eval_url=engine.url, eval_cases=cases, expected_pass_rate=0.75)
    ev = run.result(TASKS[0])["eval"]
    assert ev["source"] == "inline"
    assert ev["results"][3]["failed_checks"] == ["answered 4, expected 5"] and ev["results"][3]["error"] is None
    with brain.connect_ro(engine.brain_path()) as conn:
        rows = conn.execute(
            "SELECT message FROM tasks WHERE conversation_id = 'evl-conversation' ORDER BY created_at, rowid"
        ).fetchall()
    assert [r[0] for r in rows] == [f"echo: turn {i}" for i in range(3)] * 3  # in order, three real runs


def test_command_mode_pass_then_fail_against_the_baseline(fleet):
    engine = fleet.up(1, "2.3.0")[0]
    command = [sys.executable, str(SCRIPT), "--leak"]
    run = evaluate(engine, eval_url=engine.url, eval_command=command, expected_pass_rate=1.0)
    ev = run.result(TASKS[0])["eval"]
    assert ev["mode"] == "command" and ev["planned"] == ["command"] and ev["results"][0]["passed"]
    assert ev["command"]["rc"] == 0 and ev["command"]["timed_out"] is False
    assert "eval add-17-25: PASS (answered 42, expected 42)" in ev["command"]["stdout"]
    assert "debug: using key ********" in ev["command"]["stdout"]  # it printed the key: redacted
    assert run.result(TASKS[2])["eval"]["command"]["rc"] is None  # check mode ran nothing

    failing = evaluate(engine, eval_url=engine.url, eval_command=[*command, "--expect", "41"], eval_baseline=ev,
                       expected_pass_rate=0.0, expected_decision="rollback")
    fev = failing.result(TASKS[0])["eval"]
    assert fev["command"]["rc"] == 1 and fev["results"][0]["error"] == "COMMAND_FAILED"
    assert "eval add-17-25: FAIL (answered 42, expected 41)" in fev["command"]["stdout"]
    assert fev["verdict"]["regressions"][0]["name"] == "command"
    assert "command (failed with COMMAND_FAILED: exit status 1)" in fev["verdict"]["reasons"][0]


def test_command_mode_without_the_key(fleet):
    engine = fleet.up(1, "2.3.0")[0]
    run = run_playbook(PLAYBOOK, extra_vars={"eval_url": engine.url, "eval_command": [sys.executable, str(SCRIPT)],
                                             "expected_pass_rate": 0.0})
    assert run.rc == 0, run.stdout[-5000:]
    ev = run.result(TASKS[0])["eval"]
    assert ev["command"]["rc"] == 2 and "ENGINE_API_KEY must be set" in ev["command"]["stderr"]


def _bad(engine: Engine, expected_msg: str, with_key: bool = True, check: bool = False, **extra) -> dict:
    extra_vars = {"eval_url": engine.url, "expected_msg": expected_msg, **extra}
    if with_key:
        extra_vars["eval_api_key"] = engine.api_key
    run = run_playbook(BAD_INPUT, extra_vars=extra_vars, check=check)
    assert run.rc == 0, run.stdout[-5000:] + run.stderr[-2000:]
    assert_no_key(run, engine.api_key)
    result = run.result("Evaluate with bad input")
    assert result["failed"] is True and result["changed"] is False and "eval" not in result
    assert run.stats["localhost"]["rescued"] == 1
    return result


@pytest.mark.parametrize("check", [False, True])
def test_bad_case_files(fleet, tmp_path, check):
    engine = fleet.up(1, "2.3.0")[0]
    _bad(engine, r"cases_file .*/missing\.yml does not exist on the managed node", check=check,
         eval_cases_file=str(tmp_path / "missing.yml"))
    no_message = tmp_path / "no-message.yml"
    no_message.write_text("cases:\n  - name: silent\n    checks:\n      - equals: '4'\n", encoding="utf-8")
    _bad(engine, r"case #1 \(silent\): 'message' \(the non-empty text sent to /execute\) is missing", check=check,
         eval_cases_file=str(no_message))
    _bad(engine, r"case #1 \(odd\), check #1: unknown check type 'startswith'; use one of equals, contains",
         check=check, eval_cases=[{"name": "odd", "message": "hello", "checks": [{"startswith": "ack"}]}])
    broken = tmp_path / "broken.yml"
    broken.write_text("cases: [\n", encoding="utf-8")
    _bad(engine, r"broken\.yml is not valid YAML", check=check, eval_cases_file=str(broken))
    # nothing was sent: the brain has no turn
    assert brain.task_ids(engine.brain_path(), status=None) == set()


def test_a_missing_or_wrong_key_is_not_a_regression(fleet):
    engine = fleet.up(1, "2.3.0")[0]
    message = r"refused the API key \(HTTP 401 INVALID_KEY\): api_key is missing or wrong"
    _bad(engine, message, with_key=False, eval_cases_file=str(REFERENCE_SET))
    _bad(engine, message, with_key=False, eval_api_key="not-the-key-at-all", eval_cases_file=str(REFERENCE_SET))
    assert brain.task_ids(engine.brain_path(), status=None) == set()  # the Engine refused every turn
