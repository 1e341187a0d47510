# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The engine_eval module as a whole: options, check mode, the verdict, command mode, the key kept out of returns."""

from __future__ import annotations

import json
import time

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.september.engine.plugins.module_utils._engine_api import EngineResponse
from ansible_collections.september.engine.plugins.modules import engine_eval
from engine_testkit.module_runner import ExitJson, FailJson

KEY = "s3cret-eval-key-0123"
URL = "http://127.0.0.1:9501"
CASES = [
    {"name": "add", "message": "what is 17 + 25", "checks": [{"equals": "42"}]},
    {"name": "echo", "message": "echo: hi", "checks": [{"equals": "hi"}]},
]


def sse_answer(answer: str) -> str:
    return (
        'event: task\ndata: {"task_id": "t-1", "conversation_id": "c"}\n\n'
        f"event: done\ndata: {json.dumps({'task_id': 't-1', 'status': 'completed', 'answer': answer})}\n\n"
    )


@pytest.fixture
def engine(monkeypatch):
    """Replace engine_stream: the reference Engine's answers, or per-message scripted responses."""
    state = {"script": {}, "sent": []}

    def fake_stream(method, url, **kwargs):
        state["sent"].append((method, url, kwargs))
        message = kwargs["body"]["message"]
        if message in state["script"]:
            planned = state["script"][message]
            return planned() if callable(planned) else planned
        if message.startswith("echo: "):
            return EngineResponse(200, text=sse_answer(message[6:]))
        return EngineResponse(200, text=sse_answer("42"))

    monkeypatch.setattr(engine_eval, "engine_stream", fake_stream)
    return state


def run(args, check_mode=False):
    if check_mode:
        args = {**args, "_ansible_check_mode": True}
    with patch_module_args(args), pytest.raises((ExitJson, FailJson)) as outcome:
        engine_eval.main()
    return outcome.type is ExitJson, outcome.value.args[0]


def test_inline_cases_pass(engine):
    ok, result = run({"url": URL + "/", "api_key": KEY, "cases": CASES})
    assert ok and result["changed"] is True  # two real turns were written to the brain
    ev = result["eval"]
    assert (ev["mode"], ev["ran"], ev["source"], ev["url"]) == ("cases", True, "inline", URL)
    assert (ev["total"], ev["passed"], ev["failed"], ev["pass_rate"]) == (2, 2, 0, 1.0)
    assert ev["planned"] == ["add", "echo"] and ev["verdict"] is None and ev["command"] is None
    assert [r["answer"] for r in ev["results"]] == ["42", "hi"]
    method, url, kwargs = engine["sent"][0]
    assert (method, url, kwargs["api_key"], kwargs["timeout"]) == ("POST", URL + "/execute", KEY, 10.0)


def test_a_whole_case_document_inline(engine):
    ok, result = run({"url": URL, "api_key": KEY, "cases": {"version": 1, "cases": CASES}})
    assert ok and result["eval"]["total"] == 2


def test_cases_file_and_baseline_verdict(engine, tmp_path):
    path = tmp_path / "evals.json"
    path.write_text(json.dumps({"cases": CASES}), encoding="utf-8")
    ok, before = run({"url": URL, "api_key": KEY, "cases_file": str(path)})
    assert ok and before["eval"]["source"] == str(path) and before["eval"]["pass_rate"] == 1.0
    engine["script"]["what is 17 + 25"] = EngineResponse(200, text=sse_answer("43"))
    ok, after = run({"url": URL, "api_key": KEY, "cases_file": str(path), "baseline": before["eval"]})
    verdict = after["eval"]["verdict"]
    assert ok and verdict["decision"] == "rollback"
    assert verdict["regressions"][0]["name"] == "add" and verdict["regressions"][0]["detail"] == (
        "answered 43, expected 42"
    )
    assert "add (answered 43, expected 42)" in verdict["reasons"][0]
    assert verdict["symptom"] == verdict["reasons"][0]  # the regression decides; the pass-rate line does not
    ok, tolerant = run(
        {"url": URL, "api_key": KEY, "cases_file": str(path), "baseline": before, "max_regressions": 1}
    )
    assert ok and tolerant["eval"]["verdict"]["decision"] == "ok" and tolerant["eval"]["verdict"]["symptom"] is None


def test_check_mode_sends_nothing(engine, tmp_path):
    ok, result = run({"url": URL, "api_key": KEY, "cases": CASES}, check_mode=True)
    ev = result["eval"]
    assert ok and result["changed"] is True and engine["sent"] == []  # would send two turns; sent none
    assert ev["ran"] is False and ev["planned"] == ["add", "echo"] and ev["total"] == 0 and ev["pass_rate"] is None
    # check mode still refuses what the real run would refuse
    ok, result = run({"url": URL, "api_key": KEY, "cases": [{"name": "x"}]}, check_mode=True)
    assert not ok and "case #1 (x): 'message'" in result["msg"]


def test_the_key_never_comes_back(engine):
    engine["script"][f"echo: {KEY}"] = EngineResponse(200, text=sse_answer(f"the key is {KEY}"))
    engine["script"]["leak"] = EngineResponse(503, {"error": "UNAVAILABLE", "message": f"bad key {KEY}"})
    cases = [
        {"name": "echo-key", "message": f"echo: {KEY}", "checks": [{"equals": "nope"}]},
        {"name": "leak", "message": "leak", "checks": [{"contains": "x"}]},
    ]
    ok, result = run({"url": URL, "api_key": KEY, "cases": cases})
    text = json.dumps(result)
    assert ok and KEY not in text
    assert result["eval"]["results"][0]["answer"] == "the key is ********"
    assert result["eval"]["results"][1]["error_message"] == "bad key ********"


def test_a_refused_key_fails_the_task(engine):
    engine["script"]["what is 17 + 25"] = EngineResponse(401, {"error": "INVALID_KEY", "message": "no"})
    ok, result = run({"url": URL, "cases": CASES})
    assert not ok and "api_key is missing or wrong" in result["msg"] and "HTTP 401" in result["msg"]


def test_cases_left_when_the_budget_is_spent_are_not_run_and_warned(engine, monkeypatch):
    warnings = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, text: warnings.append(text))

    def slow_answer():
        time.sleep(0.5)
        return EngineResponse(200, text=sse_answer("42"))

    engine["script"]["what is 17 + 25"] = slow_answer
    ok, result = run({"url": URL, "api_key": KEY, "cases": CASES, "time_budget": 0.3, "concurrency": 1})
    assert ok and result["eval"]["errors"] == {"NOT_RUN": 1}
    assert result["eval"]["results"][1]["error"] == "NOT_RUN"
    assert warnings == ["1 eval case(s) were not run: the time_budget of 0.3s was spent."]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"cases": CASES}, "one of the following is required: url, container"),
        ({"url": URL}, "one of the following is required: cases_file, cases, command"),
        ({"url": URL, "cases": CASES, "command": "true"}, "mutually exclusive"),
        ({"url": URL, "cases": CASES, "concurrency": 0}, "concurrency must be from 1 to 32"),
        ({"url": URL, "cases": CASES, "time_budget": 0}, "time_budget must be more than 0"),
        ({"url": URL, "cases": CASES, "timeout": -1}, "timeout must be more than 0"),
        ({"url": URL, "cases": CASES, "max_regressions": -1}, "max_regressions must be 0 or more"),
        ({"url": URL, "cases": CASES, "max_pass_rate_drop": 1.5}, "max_pass_rate_drop is a share from 0 to 1"),
        ({"url": URL, "cases": CASES, "chdir": "/tmp"}, "chdir is only used with command"),
        ({"url": "ftp://x", "cases": CASES}, "is not an http:// or https:// URL"),
        ({"url": URL, "cases_file": "/nonexistent/evals.yml"}, "does not exist on the managed node"),
        ({"url": URL, "cases": [{"name": "a", "message": "m", "checks": [{"startswith": "x"}]}]},
         "unknown check type 'startswith'"),
        ({"url": URL, "cases": CASES, "baseline": {"mode": "command", "results": []}},
         "compare runs of the same kind"),
        ({"url": URL, "command": "no-such-eval-tool-xyz"}, "was not found in the PATH"),
        ({"url": URL, "cases": CASES, "baseline": {"results": [{"name": "zzz", "passed": True}]}},
         "none of this run's cases"),
        ({"url": URL, "cases": "cases: [", "api_key": KEY}, "cases is not valid YAML"),
    ],
)
def test_bad_input_fails_with_a_clear_message(engine, args, expected):
    ok, result = run(args)
    assert not ok and expected in result["msg"], result["msg"]
    assert engine["sent"] == []


def test_command_mode(tmp_path):
    script = tmp_path / "eval.sh"
    script.write_text('#!/bin/sh\necho "testing $ENGINE_URL with $ENGINE_API_KEY"\nexit "${EVAL_RC:-0}"\n')
    script.chmod(0o755)
    ok, result = run({"url": URL, "api_key": KEY, "command": "./eval.sh", "chdir": str(tmp_path)})
    ev = result["eval"]
    assert ok and ev["mode"] == "command" and ev["source"] == "command" and ev["planned"] == ["command"]
    assert ev["passed"] == 1 and ev["results"][0]["name"] == "command"
    assert ev["command"]["rc"] == 0 and ev["command"]["argv"] == ["./eval.sh"]
    assert ev["command"]["stdout"] == f"testing {URL} with ********\n"
    assert KEY not in json.dumps(result)

    ok, failed = run(
        {"url": URL, "api_key": KEY, "command": ["sh", "-c", "echo broken >&2; exit 4"], "baseline": ev}
    )
    fev = failed["eval"]
    assert ok and fev["passed"] == 0 and fev["command"]["rc"] == 4 and fev["command"]["stderr"] == "broken\n"
    assert fev["results"][0]["error"] == "COMMAND_FAILED"
    assert fev["verdict"]["decision"] == "rollback"
    assert "command (failed with COMMAND_FAILED: exit status 4)" in fev["verdict"]["reasons"][0]


def test_command_mode_in_check_mode_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    ok, result = run({"url": URL, "command": ["touch", str(marker)]}, check_mode=True)
    assert ok and not marker.exists()
    assert result["eval"]["ran"] is False and result["eval"]["command"]["argv"] == ["touch", str(marker)]


class FakeContainer:
    def __init__(self, ports):
        self.attrs = {"NetworkSettings": {"Ports": {"8000/tcp": ports}}, "HostConfig": {}}


class FakeClient:
    def __init__(self, containers):
        self.containers = self
        self.by_name = containers

    def get(self, name):
        from docker.errors import NotFound

        if name not in self.by_name:
            raise NotFound("no such container")
        return self.by_name[name]


def test_url_from_the_container(engine, monkeypatch):
    client = FakeClient({"evl-u001": FakeContainer([{"HostIp": "0.0.0.0", "HostPort": "9507"}]),
                         "stopped": FakeContainer(None)})
    monkeypatch.setattr(engine_eval, "docker_client", lambda params: client)
    ok, result = run({"container": "evl-u001", "api_key": KEY, "cases": CASES})
    assert ok and result["eval"]["url"] == "http://127.0.0.1:9507"
    assert engine["sent"][0][1] == "http://127.0.0.1:9507/execute"
    ok, result = run({"container": "stopped", "api_key": KEY, "cases": CASES})
    assert not ok and "does not publish the Engine's port 8000/tcp" in result["msg"]
    ok, result = run({"container": "missing", "api_key": KEY, "cases": CASES})
    assert not ok and "missing" in result["msg"]
