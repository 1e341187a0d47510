# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""module_utils/_evals.py: the case format, checks, SSE parsing, the runner, the verdict, the command, redaction.

The streamed request (engine_stream of _engine_api.py) runs against a real local HTTP server that
speaks SSE the way /execute does.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from ansible_collections.september.engine.plugins.module_utils import _evals
from ansible_collections.september.engine.plugins.module_utils._engine_api import (
    KEY_HEADER,
    EngineResponse,
    engine_stream,
)
from ansible_collections.september.engine.plugins.module_utils._errors import (
    EngineAuthError,
    EvalCasesError,
    NotFoundError,
    OptionsError,
)
from ansible_collections.september.engine.plugins.module_utils._evals import (
    Check,
    EvalRunner,
    baseline_eval,
    cases_from_document,
    command_argv,
    compare,
    failure_detail,
    find_command,
    outcome_of,
    parse_sse,
    read_cases_file,
    run_command,
    summarize,
    turn_outcome,
    validate_cases,
)
from ansible_collections.september.engine.plugins.module_utils._secrets import redact

REPO = Path(__file__).resolve().parents[4]
SAMPLE = REPO / "roles" / "engine_upgrade" / "files" / "evals" / "reference.yml"
KEY = "k3y-0f-the-engine-XYZ"


def case(name="c", message="what is 2 + 2", checks=None, **extra):
    return {"name": name, "message": message, "checks": checks or [{"equals": "4"}], **extra}


def sse(*events) -> str:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)


def done(answer, task_id="t-1"):
    return sse(
        ("task", {"task_id": task_id, "conversation_id": "c"}),
        ("token", {"text": answer[:1]}),
        ("token", {"text": answer[1:]}),
        ("usage", {"input_tokens": 404, "output_tokens": 1, "cache_hit_tokens": 303}),
        ("done", {"task_id": task_id, "status": "completed", "answer": answer}),
    )


# --------------------------------------------------------------------------- the format


def test_the_shipped_reference_set_is_valid():
    cases = read_cases_file(str(SAMPLE))
    assert 10 <= len(cases) <= 20
    assert len({c.name for c in cases}) == len(cases)
    kinds = {check.kind for c in cases for check in c.checks}
    assert kinds == {"equals", "contains", "not_contains", "regex"}
    assert all(c.attempts == 1 for c in cases)


def test_a_valid_document_in_full():
    [first, second] = cases_from_document(
        {
            "version": 1,
            "description": "demo",
            "cases": [
                case("a", checks=[{"equals": 4}, {"regex": "^4$"}], attempts=3, description="x"),
                case("b", conversation_id="conv-1"),
            ],
        },
        "evals.yml",
    )
    assert first.checks[0] == Check("equals", "4")  # a number is read as its text
    assert first.checks[1].pattern.search("4") and first.attempts == 3
    assert second.conversation_id == "conv-1" and second.attempts == 1


def test_a_bare_list_is_the_cases():
    assert [c.name for c in cases_from_document([case("x")], "cases")] == ["x"]


def test_text_is_parsed_as_a_case_file():
    text = "cases:\n  - name: t\n    message: hello\n    checks: [{equals: ack:2cf24dba5fb0}]\n"
    assert cases_from_document(text, "cases")[0].checks == (Check("equals", "ack:2cf24dba5fb0"),)
    assert cases_from_document(json.dumps({"cases": [case("j")]}), "cases")[0].name == "j"


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("cases", "must be a mapping with a 'cases:' list"),
        ({"tests": []}, "must be a mapping with a 'cases:' list"),
        ({"cases": []}, "'cases' must be a non-empty list"),
        ({"cases": {"a": 1}}, "'cases' must be a non-empty list"),
        ({"cases": [case()], "extra": 1}, "unknown top-level key(s) extra"),
        ({"cases": [case()], "version": 2}, "format version 2"),
        ({"cases": ["what is 2 + 2"]}, "case #1: a case is a mapping"),
        ({"cases": [{"message": "hi", "checks": [{"equals": "x"}]}]}, "case #1: 'name'"),
        ({"cases": [case("a"), case("a")]}, "case #2 (a): the name is used by an earlier case"),
        ({"cases": [{"name": "no-msg", "checks": [{"equals": "4"}]}]}, "case #1 (no-msg): 'message'"),
        ({"cases": [case("blank", message="   ")]}, "case #1 (blank): 'message'"),
        ({"cases": [{**case("typo"), "mesage": "x"}]}, "case #1 (typo): unknown key(s) mesage"),
        ({"cases": [{"name": "n", "message": "m"}]}, "case #1 (n): 'checks' must be a non-empty list"),
        ({"cases": [{"name": "n", "message": "m", "checks": []}]}, "'checks' must be a non-empty list"),
        ({"cases": [case("n", checks=[{"equals": "4", "contains": "4"}])]}, "check #1: a check is a mapping with one"),
        ({"cases": [case("n", checks=["4"])]}, "check #1: a check is a mapping with one"),
        ({"cases": [case("n", checks=[{"startswith": "4"}])]}, "check #1: unknown check type 'startswith'"),
        ({"cases": [case("n", checks=[{"equals": True}])]}, "the value of equals must be a string"),
        ({"cases": [case("n", checks=[{"equals": None}])]}, "the value of equals must be a string"),
        ({"cases": [case("n", checks=[{"contains": ""}])]}, "an empty contains value checks nothing"),
        ({"cases": [case("n", checks=[{"regex": "(unclosed"}])]}, "regex '(unclosed' does not compile"),
        ({"cases": [case("n", conversation_id="x" * 201)]}, "'conversation_id' must be a string of 1-200"),
        ({"cases": [case("n", conversation_id=7)]}, "'conversation_id' must be a string"),
        ({"cases": [case("n", attempts=0)]}, "'attempts' must be a whole number from 1 to 10"),
        ({"cases": [case("n", attempts=True)]}, "'attempts' must be a whole number"),
        ({"cases": [case("n", attempts="2")]}, "'attempts' must be a whole number"),
    ],
)
def test_malformed_documents_are_refused_with_the_case_and_the_problem(document, expected):
    with pytest.raises(EvalCasesError) as err:
        cases_from_document(document, "evals.yml")
    assert expected in err.value.msg
    assert err.value.msg.startswith("evals.yml")


def test_every_problem_is_reported_at_once():
    with pytest.raises(EvalCasesError) as err:
        validate_cases([case("a", checks=[{"bogus": 1}]), {"name": "b"}, case("a")], "set.yml")
    msg = err.value.msg
    assert "4 problem(s)" in msg
    for part in ("case #1 (a), check #1: unknown check type", "case #2 (b): 'message'", "case #2 (b): 'checks'",
                 "case #3 (a): the name is used"):
        assert part in msg


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("evals.json", "{not json", "is not valid JSON"),
        ("evals.yml", "cases: [unclosed", "is not valid YAML"),
        ("evals.yml", "- just\n- a list of strings\n", "case #1: a case is a mapping"),
        ("evals.yml", "", "must be a mapping with a 'cases:' list"),
    ],
)
def test_case_files_that_do_not_parse(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(EvalCasesError) as err:
        read_cases_file(str(path))
    assert expected in err.value.msg and str(path) in err.value.msg


def test_case_files_json_and_yaml(tmp_path):
    document = {"cases": [case("j", checks=[{"contains": "4"}])]}
    (tmp_path / "e.json").write_text(json.dumps(document), encoding="utf-8")
    (tmp_path / "e.yaml").write_text("cases:\n  - name: y\n    message: hi\n    checks: [{equals: '1'}]\n")
    assert read_cases_file(str(tmp_path / "e.json"))[0].name == "j"
    assert read_cases_file(str(tmp_path / "e.yaml"))[0].checks == (Check("equals", "1"),)


def test_case_file_missing_directory_or_not_text(tmp_path):
    with pytest.raises(NotFoundError, match="does not exist on the managed node"):
        read_cases_file(str(tmp_path / "nope.yml"))
    with pytest.raises(EvalCasesError, match="is a directory"):
        read_cases_file(str(tmp_path))
    (tmp_path / "bin.yml").write_bytes(b"\xff\xfe\x00cases")
    with pytest.raises(EvalCasesError, match="not UTF-8"):
        read_cases_file(str(tmp_path / "bin.yml"))


# --------------------------------------------------------------------------- checks


@pytest.mark.parametrize(
    ("kind", "value", "answer", "failure"),
    [
        ("equals", "42", "42", None),
        ("equals", "42", " 42\n", None),
        ("equals", "42", "43", "answered 43, expected 42"),
        ("equals", "", "", None),
        ("equals", "x", "", 'answered "", expected x'),
        ("contains", "line one", "line one\nline two", None),
        ("contains", "Paris", "ack:24b730a9a3a3", 'answered "ack:24b730a9a3a3", which does not contain Paris'),
        ("not_contains", "Paris", "London", None),
        ("not_contains", "echo:", "echo: x", 'answered "echo: x", which contains "echo:"'),
        ("equals", "hello world", "hello", 'answered hello, expected "hello world"'),
        ("equals", "-5", "-4", "answered -4, expected -5"),
        ("regex", "^ack:[0-9a-f]{12}$", "ack:2cf24dba5fb0", None),
        ("regex", "^81$", "810", "answered 810, which does not match /^81$/"),
        ("regex", "b", "abc", None),  # searched anywhere
    ],
)
def test_checks(kind, value, answer, failure):
    [parsed] = cases_from_document([case(checks=[{kind: value}])], "x")[0].checks
    assert parsed.failure(answer) == failure


def test_long_answers_are_cut_in_explanations():
    [check] = cases_from_document([case(checks=[{"equals": "short"}])], "x")[0].checks
    text = check.failure("y" * 500)
    assert len(text) < 120 and '..."' in text


# --------------------------------------------------------------------------- SSE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (done("42"), [("task", {"task_id": "t-1", "conversation_id": "c"}), ("token", {"text": "4"}),
                      ("token", {"text": "2"}),
                      ("usage", {"input_tokens": 404, "output_tokens": 1, "cache_hit_tokens": 303}),
                      ("done", {"task_id": "t-1", "status": "completed", "answer": "42"})]),
        ('event: done\r\ndata: {"answer": "x"}\r\n\r\n', [("done", {"answer": "x"})]),
        (": keep-alive\n\nevent: token\ndata:{\"text\": \"a\"}\n\n", [("token", {"text": "a"})]),
        ("data: first\ndata: second\n\n", [("message", "first\nsecond")]),
        ('event: token\ndata: {"text": "a"}\n\nevent: done\ndata: {"answer": "a"}\n', [("token", {"text": "a"})]),
        ("", []),
    ],
)
def test_parse_sse(text, expected):
    assert parse_sse(text) == expected


@pytest.mark.parametrize(
    ("text", "answer", "error"),
    [
        (done("42"), "42", None),
        (sse(("token", {"text": "4"}), ("token", {"text": "2"}), ("done", {"status": "completed"})), "42", None),
        (sse(("task", {"task_id": "t"}), ("usage", {}), ("error", {"task_id": "t", "error": "TOOL_EXECUTION_FAILED",
                                                                   "message": "tool 'calculator' broke"})),
         None, "TOOL_EXECUTION_FAILED"),
        (sse(("error", {})), None, "STREAM_ERROR"),
        (sse(("task", {"task_id": "t"}), ("token", {"text": "4"})), None, "STREAM_INCOMPLETE"),
    ],
)
def test_turn_outcome(text, answer, error):
    outcome = turn_outcome(parse_sse(text))
    assert (outcome.answer, outcome.error) == (answer, error)


@pytest.mark.parametrize(
    ("response", "error", "message"),
    [
        (EngineResponse(None, error="connection refused at x", error_kind="refused"), "UNREACHABLE", "refused"),
        (EngineResponse(None, error="no answer within", error_kind="timeout"), "TIMEOUT", "no answer"),
        (EngineResponse(503, {"error": "UNAVAILABLE", "message": "starting"}), "UNAVAILABLE", "starting"),
        (EngineResponse(502, {"error": "LLM_PROVIDER_ERROR", "message": "down"}), "LLM_PROVIDER_ERROR", "down"),
        (EngineResponse(500, None), "HTTP_500", None),
        (EngineResponse(200, text=sse(("task", {"task_id": "t"})), error="did not end", error_kind="timeout"),
         "TIMEOUT", "did not end"),
        (EngineResponse(200, text=sse(("task", {"task_id": "t"}))), "STREAM_INCOMPLETE", "without a done"),
    ],
)
def test_outcome_of_errors(response, error, message):
    outcome = outcome_of(response)
    assert outcome.error == error and outcome.answer is None
    assert (outcome.error_message is None) if message is None else (message in outcome.error_message)


def test_outcome_of_an_answer():
    outcome = outcome_of(EngineResponse(200, text=done("ack:2cf24dba5fb0", "task-9")))
    assert (outcome.answer, outcome.error, outcome.task_id) == ("ack:2cf24dba5fb0", None, "task-9")


@pytest.mark.parametrize("body", [{"error": "INVALID_KEY", "message": "missing or invalid X-Engine-Key"}, None])
def test_401_is_a_key_problem_not_a_failed_case(body):
    with pytest.raises(EngineAuthError) as err:
        outcome_of(EngineResponse(401, body))
    assert "HTTP 401 INVALID_KEY" in err.value.msg and "api_key is missing or wrong" in err.value.msg


# --------------------------------------------------------------------------- the runner


class FakeEngine:
    """send() for EvalRunner: answers like the reference Engine, or as scripted per message."""

    def __init__(self, script=None, delay=0.0):
        self.script = script or {}
        self.delay = delay
        self.sent = []
        self.lock = threading.Lock()
        self.active = self.peak = 0

    def __call__(self, body, timeout, deadline):
        with self.lock:
            self.sent.append(body)
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(self.delay)
            planned = self.script.get(body["message"])
            if isinstance(planned, list):
                planned = planned.pop(0)
            if isinstance(planned, EngineResponse):
                return planned
            answer = planned if planned is not None else body["message"].removeprefix("echo: ")
            return EngineResponse(200, text=done(answer, f"task-{len(self.sent)}"))
        finally:
            with self.lock:
                self.active -= 1


def cases_of(*raw):
    return validate_cases(list(raw), "t")


def test_runner_scores_each_case_in_order():
    engine = FakeEngine({"what is 2 + 2": "4", "what is 6 * 7": "43"})
    cases = cases_of(case("add"), case("mul", "what is 6 * 7", [{"equals": "42"}]), case("echo", "echo: x", [
        {"equals": "x"}]))
    results = EvalRunner(engine, timeout=5).run(cases)
    assert [(r.name, r.passed) for r in results] == [("add", True), ("mul", False), ("echo", True)]
    assert results[1].failed_checks == ["answered 43, expected 42"] and results[1].error is None
    assert results[0].attempts == 1 and results[0].task_id.startswith("task-")
    summary = summarize(results)
    assert (summary["total"], summary["passed"], summary["failed"], summary["pass_rate"]) == (3, 2, 1, 0.6667)


def test_runner_errors_fail_the_case_with_the_code():
    failing = EngineResponse(200, text=sse(("task", {"task_id": "t"}), ("error", {
        "task_id": "t", "error": "TOOL_EXECUTION_FAILED", "message": "tool 'calculator' returned malformed output"})))
    engine = FakeEngine({"what is 2 + 2": failing})
    [result] = EvalRunner(engine, timeout=5).run(cases_of(case("add")))
    assert not result.passed and result.error == "TOOL_EXECUTION_FAILED" and result.failed_checks == []
    assert failure_detail(result.as_dict()) == (
        "failed with TOOL_EXECUTION_FAILED: tool 'calculator' returned malformed output"
    )
    assert summarize([result])["errors"] == {"TOOL_EXECUTION_FAILED": 1}


def test_attempts_retry_until_one_passes():
    bad = EngineResponse(503, {"error": "UNAVAILABLE"})
    engine = FakeEngine({"what is 2 + 2": [bad, "5", "4", "4"]})
    [result] = EvalRunner(engine, timeout=5).run(cases_of(case("add", attempts=4)))
    assert result.passed and result.attempts == 3 and len(engine.sent) == 3
    engine = FakeEngine({"what is 2 + 2": [bad, "5"]})
    [result] = EvalRunner(engine, timeout=5).run(cases_of(case("add", attempts=2)))
    assert not result.passed and result.attempts == 2 and result.failed_checks == ["answered 5, expected 4"]


def test_cases_run_concurrently_but_a_conversation_runs_in_order():
    engine = FakeEngine(delay=0.2)
    cases = cases_of(*(case(f"e{i}", f"echo: {i}", [{"equals": str(i)}]) for i in range(8)))
    started = time.monotonic()
    results = EvalRunner(engine, timeout=5, concurrency=4).run(cases)
    assert all(r.passed for r in results)
    assert engine.peak == 4 and time.monotonic() - started < 1.2  # 8 turns of 0.2 s, 4 at a time

    engine = FakeEngine(delay=0.05)
    conv = [case(f"c{i}", f"echo: {i}", [{"equals": str(i)}], conversation_id="conv") for i in range(5)]
    results = EvalRunner(engine, timeout=5, concurrency=4).run(cases_of(*conv))
    assert engine.peak == 1 and [b["message"] for b in engine.sent] == [f"echo: {i}" for i in range(5)]
    assert all(b["conversation_id"] == "conv" for b in engine.sent)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_the_time_budget_leaves_later_cases_not_run():
    clock = Clock()

    def slow(body, timeout, deadline):
        clock.now += 40
        return EngineResponse(200, text=done(body["message"].removeprefix("echo: ")))

    cases = cases_of(*(case(f"e{i}", f"echo: {i}", [{"equals": str(i)}]) for i in range(4)))
    results = EvalRunner(slow, timeout=60, concurrency=1, time_budget=100, clock=clock).run(cases)
    assert [r.passed for r in results] == [True, True, True, False]
    assert results[3].error == "NOT_RUN" and results[3].attempts == 0
    assert failure_detail(results[3].as_dict()) == "not run: the time budget was spent"


def test_each_turn_gets_the_smaller_of_timeout_and_what_is_left():
    clock = Clock()
    seen = []

    def send(body, timeout, deadline):
        seen.append((timeout, deadline))
        clock.now += 25
        return EngineResponse(200, text=done("4"))

    EvalRunner(send, timeout=10, concurrency=1, time_budget=30, clock=clock).run(cases_of(case("a"), case("b")))
    assert seen == [(10, 110.0), (5.0, 130.0)]


def test_a_refused_key_stops_the_run_and_raises():
    engine = FakeEngine({"what is 2 + 2": EngineResponse(401, {"error": "INVALID_KEY"})}, delay=0.01)
    cases = cases_of(*(case(f"a{i}") for i in range(20)))
    with pytest.raises(EngineAuthError):
        EvalRunner(engine, timeout=5, concurrency=2).run(cases)
    assert len(engine.sent) < 20


# --------------------------------------------------------------------------- the verdict


def result(name, passed, answer=None, error=None, failed_checks=None):
    return {"name": name, "passed": passed, "answer": answer, "error": error, "error_message": None,
            "failed_checks": failed_checks or []}


BASE = {
    "mode": "cases",
    "ran": True,
    "results": [
        result("a", True, "4"),
        result("b", True, "42"),
        result("c", False, "x", failed_checks=["answered x, expected y"]),
    ],
}


@pytest.mark.parametrize(
    ("now", "options", "decision", "regressions", "reason"),
    [
        ([result("a", True), result("b", True), result("c", False)], {}, "ok", [],
         "all 2 eval case(s) that passed before still pass"),
        ([result("a", True), result("b", False, "43", failed_checks=["answered 43, expected 42"]), result("c", False)],
         {}, "rollback", ["b"],
         "1 eval case(s) that passed before now fail (more than max_regressions=0): b (answered 43, expected 42)"),
        ([result("a", True), result("b", False, error="TOOL_EXECUTION_FAILED"), result("c", False)],
         {"max_regressions": 1}, "ok", ["b"], "(within max_regressions=1): b (failed with TOOL_EXECUTION_FAILED)"),
        ([result("a", True), result("b", False, error="X"), result("c", False)],
         {"max_regressions": 1, "max_pass_rate_drop": 0.2}, "rollback", ["b"], "more than max_pass_rate_drop=20.0%"),
        ([result("a", True), result("b", False, error="X"), result("c", True)],
         {"max_regressions": 1, "max_pass_rate_drop": 0.0}, "ok", ["b"], "1 case(s) that failed before now pass: c"),
        ([result("a", False, error="LLM_PROVIDER_ERROR"), result("b", True), result("c", False)], {}, "rollback",
         ["a"], "1 of them got no answer (LLM_PROVIDER_ERROR)"),
        ([result("a", True), result("z", False)], {}, "ok", [], "1 case(s) not in the baseline, not compared: z"),
        ([result("a", True)], {}, "ok", [], "2 baseline case(s) not run now, not compared: b, c"),
    ],
)
def test_verdict_rules(now, options, decision, regressions, reason):
    verdict = compare(BASE, now, **options)
    assert verdict["decision"] == decision
    assert [r["name"] for r in verdict["regressions"]] == regressions
    assert any(reason in line for line in verdict["reasons"]), verdict["reasons"]


def test_verdict_numbers_and_regression_details():
    verdict = compare(BASE, [result("a", True), result("b", False, "43", failed_checks=["answered 43, expected 42"]),
                             result("c", False)])
    assert verdict["compared"] == 3 and verdict["not_compared"] == [] and verdict["fixed"] == []
    rates = (verdict["pass_rate_before"], verdict["pass_rate_after"], verdict["pass_rate_drop"])
    assert rates == (0.6667, 0.3333, 0.3333)
    assert verdict["regressions"] == [{"name": "b", "detail": "answered 43, expected 42", "answer": "43",
                                       "error": None, "baseline_answer": "42"}]
    assert "pass rate on the 3 case(s) both runs have: 67% before, 33% now" in verdict["reasons"]


def test_a_long_list_of_regressions_is_shortened():
    base = {"results": [result(f"r{i:02d}", True) for i in range(15)]}
    verdict = compare(base, [result(f"r{i:02d}", False, error="E") for i in range(15)])
    assert "r09 (failed with E), and 5 more" in verdict["reasons"][0]
    assert len(verdict["regressions"]) == 15


def test_a_baseline_of_another_case_set_is_refused():
    assert baseline_eval(BASE, "cases", ["a", "new"]) is BASE
    with pytest.raises(OptionsError, match="the baseline has none of this run's cases"):
        baseline_eval(BASE, "cases", ["x", "y"])


@pytest.mark.parametrize(
    ("baseline", "mode", "expected"),
    [
        ({"eval": BASE}, "cases", None),
        (BASE, "cases", None),
        ({"mode": "command", "results": [result("command", True)]}, "cases", "compare runs of the same kind"),
        ({"mode": "cases", "ran": False, "results": []}, "cases", "ran in check mode"),
        ({"changed": False}, "cases", "is not the result of an earlier september.engine.engine_eval run"),
        ({"results": [{"passed": True}]}, "cases", "must each have a name and passed"),
    ],
)
def test_baseline_checks(baseline, mode, expected):
    if expected is None:
        assert baseline_eval(baseline, mode) is BASE
    else:
        with pytest.raises(OptionsError) as err:
            baseline_eval(baseline, mode)
        assert expected in err.value.msg


# --------------------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"key={KEY}!", "key=********!"),
        ({"a": [KEY, {"b": f"x{KEY}"}], "n": 3, "none": None}, {"a": ["********", {"b": "x********"}], "n": 3,
                                                                "none": None}),
        (("t", KEY), ["t", "********"]),
        ("nothing secret", "nothing secret"),
    ],
)
def test_redact(value, expected):
    assert redact(value, [KEY, None, ""]) == expected


def test_redact_without_secrets_is_the_identity():
    value = {"a": KEY}
    assert redact(value, [None]) is value


# --------------------------------------------------------------------------- the command


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("make eval", ["make", "eval"]),
        ("pytest -k 'not slow' evals/", ["pytest", "-k", "not slow", "evals/"]),
        (["sh", "-c", "exit 0"], ["sh", "-c", "exit 0"]),
        (["python3", 3], ["python3", "3"]),
    ],
)
def test_command_argv(command, argv):
    assert command_argv(command) == argv


@pytest.mark.parametrize(
    ("command", "expected"),
    [("", "empty"), ([], "empty"), ("'unclosed", "cannot be split"), ({"a": 1}, "list of arguments or a string")],
)
def test_command_argv_refuses(command, expected):
    with pytest.raises(OptionsError, match=expected):
        command_argv(command)


def script(tmp_path, body, name="eval.sh"):
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(0o755)
    return path


def test_command_that_passes_sees_the_engine_in_its_environment(tmp_path):
    script(tmp_path, 'echo "url=$ENGINE_URL key=$ENGINE_API_KEY"; pwd; echo oops >&2\n')
    result, details = run_command(["./eval.sh"], str(tmp_path), {"ENGINE_URL": "http://e:1", "ENGINE_API_KEY": KEY},
                                  30)
    assert result.passed and result.name == "command" and result.error is None
    assert details["rc"] == 0 and not details["timed_out"]
    assert f"url=http://e:1 key={KEY}" in details["stdout"] and str(tmp_path) in details["stdout"]
    assert details["stderr"] == "oops\n"
    assert KEY not in json.dumps(redact(details, [KEY]))


def test_command_that_fails_reports_its_exit_code(tmp_path):
    script(tmp_path, "echo '2 of 10 evals failed'; exit 3\n")
    result, details = run_command([str(tmp_path / "eval.sh")], None, {}, 30)
    assert not result.passed and result.error == "COMMAND_FAILED" and result.error_message == "exit status 3"
    assert details["rc"] == 3 and "2 of 10 evals failed" in details["stdout"]


def test_command_over_budget_is_killed_with_its_children(tmp_path):
    marker = tmp_path / "child-alive"
    script(tmp_path, f"(sleep 3; touch {marker}) &\nsleep 30\n")
    started = time.monotonic()
    result, details = run_command(["./eval.sh"], str(tmp_path), {}, 0.5)
    assert time.monotonic() - started < 5
    assert result.error == "TIMEOUT" and details["timed_out"] and details["rc"] < 0
    time.sleep(3.5)
    assert not marker.exists(), "the command's children must be killed with it"


def test_long_output_keeps_its_end(tmp_path):
    script(tmp_path, "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done\n")
    details = run_command(["./eval.sh"], str(tmp_path), {}, 30)[1]
    assert details["stdout"].startswith("...") and details["stdout"].endswith("line-1999\n")
    assert len(details["stdout"]) <= _evals.OUTPUT_KEPT + 3


def test_find_command(tmp_path):
    path = script(tmp_path, "exit 0\n")
    assert find_command(["./eval.sh"], str(tmp_path)) == str(tmp_path / "eval.sh")
    assert find_command(["sh", "-c", "true"], None).endswith("/sh")
    with pytest.raises(NotFoundError, match="does not exist"):
        find_command(["./missing.sh"], str(tmp_path))
    with pytest.raises(NotFoundError, match="was not found in the PATH"):
        find_command(["no-such-eval-tool-xyz"], None)
    with pytest.raises(NotFoundError, match="is not a directory"):
        find_command(["sh"], str(tmp_path / "nowhere"))
    path.chmod(0o644)
    if os.geteuid() != 0:  # root may execute anything with an x bit somewhere; the file has none
        with pytest.raises(OptionsError, match="not executable"):
            find_command(["./eval.sh"], str(tmp_path))


# --------------------------------------------------------------------------- engine_stream over real HTTP


class _SSEHandler(BaseHTTPRequestHandler):
    keys: list = []  # noqa: RUF012 - what the server saw, read by the tests

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length))
        _SSEHandler.keys.append(self.headers.get(KEY_HEADER))
        if self.headers.get(KEY_HEADER) != KEY:
            raw = json.dumps({"error": "INVALID_KEY", "message": "missing or invalid X-Engine-Key"}).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        answer = body["message"].removeprefix("echo: ")
        pause = 0.4 if answer == "slow" else 0.01
        for name, data in (("task", {"task_id": "t"}), ("token", {"text": answer}), ("usage", {}),
                           ("done", {"task_id": "t", "status": "completed", "answer": answer})):
            time.sleep(pause)
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()


@pytest.fixture(scope="module")
def sse_server(serve_http):
    return serve_http(_SSEHandler)


def test_engine_stream_reads_a_turn(sse_server):
    response = engine_stream("POST", sse_server + "/execute", api_key=KEY, body={"message": "echo: hi"}, timeout=5)
    assert response.status == 200 and response.error is None
    assert turn_outcome(parse_sse(response.text)).answer == "hi"
    assert _SSEHandler.keys[-1] == KEY


def test_engine_stream_returns_the_401_body(sse_server):
    response = engine_stream("POST", sse_server + "/execute", body={"message": "echo: hi"}, timeout=5)
    assert response.status == 401 and response.data["error"] == "INVALID_KEY" and _SSEHandler.keys[-1] is None
    with pytest.raises(EngineAuthError):
        outcome_of(response)


def test_engine_stream_stops_at_the_deadline(sse_server):
    started = time.monotonic()
    response = engine_stream("POST", sse_server + "/execute", api_key=KEY, body={"message": "echo: slow"},
                             timeout=5, deadline=time.monotonic() + 0.5)
    assert time.monotonic() - started < 1.5
    assert response.status == 200 and response.error_kind == "timeout"
    assert outcome_of(response).error == "TIMEOUT"


def test_a_whole_run_over_http(sse_server):
    def send(body, timeout, deadline):
        return engine_stream("POST", sse_server + "/execute", api_key=KEY, body=body, timeout=timeout,
                             deadline=deadline)

    cases = cases_of(case("a", "echo: 4"), case("b", "echo: 5"), case("c", "echo: 4", conversation_id="c1"))
    results = EvalRunner(send, timeout=5).run(cases)
    assert [r.passed for r in results] == [True, False, True]
    assert results[1].failed_checks == ["answered 5, expected 4"]
