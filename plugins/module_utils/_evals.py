# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Regression evals against an Engine: the collection's eval-case format, one turn per case, the score.

An eval case is a message sent to ``POST /execute`` and checks on the answer (docs/evals.md)::

    cases:
      - name: add-17-25
        message: what is 17 + 25
        checks:
          - equals: "42"

Each case runs as a real turn (the Engine records it like any user turn). A case passes when its
turn completes (the SSE stream's ``done`` event) and every check holds on the answer; a turn that
ends with ``event: error``, an HTTP error, a timeout or no answer at all fails with that error code.
A run is compared with a baseline run (the ``eval`` an earlier run returned): a regression is a
case that passed in the baseline and fails now. A user's own eval command (``make eval``) is scored
the same way, as one case named ``command`` that passes when it exits 0.

The API key never leaves the X-Engine-Key header (and the command's environment): every text that
goes back to the caller passes through redact().
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ansible.module_utils.common.yaml import HAS_YAML, yaml_load

from ansible_collections.september.engine.plugins.module_utils._errors import (
    EngineAuthError,
    EvalCasesError,
    NotFoundError,
    OptionsError,
)

try:
    from yaml import YAMLError
except ImportError:  # pragma: no cover - without PyYAML only JSON case files are read
    YAMLError = ValueError  # type: ignore[misc,assignment]

CHECK_TYPES = ("equals", "contains", "not_contains", "regex")
CASE_KEYS = ("name", "message", "checks", "conversation_id", "attempts", "description")
FILE_KEYS = ("cases", "description", "version")
FORMAT_VERSION = 1
MAX_ATTEMPTS = 10
MAX_CONVERSATION_ID = 200
#: Characters of an answer kept in a result, and of a value quoted in an explanation.
ANSWER_KEPT = 200
QUOTED = 60
#: Characters of the command's stdout and stderr kept (their end).
OUTPUT_KEPT = 4000
#: A value shown without quotes in an explanation (a number, a word); anything else is JSON-quoted.
_PLAIN = re.compile(r"^[A-Za-z0-9_.+-]+$")
COMMAND_CASE = "command"
#: Failures that say the Engine (or its LLM provider) was not serving, rather than answering wrong.
NOT_SERVING = ("LLM_PROVIDER_ERROR", "UNAVAILABLE", "DRAINING", "UNREACHABLE", "TIMEOUT", "NOT_RUN")
#: Regressions listed by name in a reason before "and N more".
LISTED = 10


@dataclass(frozen=True)
class Check:
    """One check on an answer: ``kind`` is one of CHECK_TYPES."""

    kind: str
    value: str
    pattern: re.Pattern | None = field(default=None, compare=False)

    def failure(self, answer: str) -> str | None:
        """None when the check holds on ``answer``, else why not (one short sentence)."""
        if self.kind == "equals":
            ok = answer.strip() == self.value.strip()
            return None if ok else f"answered {quote(answer)}, expected {quote(self.value)}"
        if self.kind == "contains":
            ok = self.value in answer
            return None if ok else f"answered {quote(answer)}, which does not contain {quote(self.value)}"
        if self.kind == "not_contains":
            ok = self.value not in answer
            return None if ok else f"answered {quote(answer)}, which contains {quote(self.value)}"
        ok = self.pattern is not None and self.pattern.search(answer) is not None
        return None if ok else f"answered {quote(answer)}, which does not match /{self.value}/"


@dataclass(frozen=True)
class EvalCase:
    name: str
    message: str
    checks: tuple[Check, ...]
    conversation_id: str | None = None
    attempts: int = 1


@dataclass
class TurnOutcome:
    """What one POST /execute gave: the answer, or an error code (and the Engine's message)."""

    answer: str | None = None
    error: str | None = None
    error_message: str | None = None
    task_id: str | None = None
    latency_ms: int = 0


@dataclass
class CaseResult:
    name: str
    passed: bool
    answer: str | None = None
    error: str | None = None
    error_message: str | None = None
    failed_checks: list[str] = field(default_factory=list)
    latency_ms: int = 0
    attempts: int = 0
    task_id: str | None = None

    def as_dict(self) -> dict:
        answer = self.answer
        if answer is not None and len(answer) > ANSWER_KEPT:
            answer = answer[:ANSWER_KEPT] + "..."
        return dict(
            name=self.name,
            passed=self.passed,
            answer=answer,
            error=self.error,
            error_message=self.error_message,
            failed_checks=list(self.failed_checks),
            latency_ms=self.latency_ms,
            attempts=self.attempts,
            task_id=self.task_id,
        )


def quote(text: str | None) -> str:
    """A value as shown in an explanation: as is when short and plain, else JSON-quoted and cut."""
    text = "" if text is None else str(text)
    if len(text) > QUOTED:
        return json.dumps(text[:QUOTED] + "...")
    return text if _PLAIN.match(text) else json.dumps(text)


# --------------------------------------------------------------------------- the case format


def _parse_text(text: str, source: str):
    if source.endswith(".json") or text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise EvalCasesError(f"{source} is not valid JSON: {exc}") from exc
    if not HAS_YAML:
        raise EvalCasesError(
            f"{source} is YAML, and PyYAML is not installed on the managed node: install it (python3-yaml), "
            "or write the cases as JSON."
        )
    try:
        return yaml_load(text)
    except YAMLError as exc:
        raise EvalCasesError(f"{source} is not valid YAML: {exc}") from exc


def read_cases_file(path: str) -> list[EvalCase]:
    """The cases of a YAML or JSON case file on this host; NotFoundError / EvalCasesError say what is wrong."""
    if not os.path.exists(path):
        raise NotFoundError(f"cases_file {path} does not exist on the managed node (it is read where the module runs).")
    if os.path.isdir(path):
        raise EvalCasesError(f"cases_file {path} is a directory: give the YAML or JSON file of the eval cases.")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except UnicodeDecodeError as exc:
        raise EvalCasesError(f"cases_file {path} is not UTF-8 text: {exc}") from exc
    except OSError as exc:
        raise EvalCasesError(f"cannot read cases_file {path}: {exc.strerror or exc}") from exc
    return cases_from_document(_parse_text(text, path), path)


def cases_from_document(document, source: str) -> list[EvalCase]:
    """Validate a case document (a mapping with ``cases:``; a bare list is taken as the cases; text is parsed)."""
    if isinstance(document, str):
        document = _parse_text(document, source)
    if isinstance(document, list):
        return validate_cases(document, source)
    if not isinstance(document, dict) or "cases" not in document:
        raise EvalCasesError(
            f"{source} must be a mapping with a 'cases:' list (each case: name, message, checks); see docs/evals.md."
        )
    unknown = sorted(str(key) for key in document if key not in FILE_KEYS)
    if unknown:
        raise EvalCasesError(
            f"{source} has unknown top-level key(s) {', '.join(unknown)}: allowed are {', '.join(FILE_KEYS)}."
        )
    if "version" in document and document["version"] != FORMAT_VERSION:
        raise EvalCasesError(f"{source} is format version {document['version']!r}; this collection reads version 1.")
    return validate_cases(document["cases"], source)


def _value(kind: str, value, where: str, problems: list[str]) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        problems.append(f"{where}: the value of {kind} must be a string (quote it in YAML), not {value!r}")
        return None
    text = str(value)
    if kind != "equals" and not text:
        problems.append(f"{where}: an empty {kind} value checks nothing")
        return None
    return text


def _checks(raw, where: str, problems: list[str]) -> tuple[Check, ...]:
    if not isinstance(raw, list) or not raw:
        problems.append(f"{where}: 'checks' must be a non-empty list, e.g. [{{equals: '42'}}]")
        return ()
    checks = []
    for number, item in enumerate(raw, 1):
        at = f"{where}, check #{number}"
        if not isinstance(item, dict) or len(item) != 1:
            problems.append(f"{at}: a check is a mapping with one key, one of {', '.join(CHECK_TYPES)}")
            continue
        kind, value = next(iter(item.items()))
        if kind not in CHECK_TYPES:
            problems.append(f"{at}: unknown check type {kind!r}; use one of {', '.join(CHECK_TYPES)}")
            continue
        text = _value(kind, value, at, problems)
        if text is None:
            continue
        pattern = None
        if kind == "regex":
            try:
                pattern = re.compile(text)
            except re.error as exc:
                problems.append(f"{at}: regex {text!r} does not compile: {exc}")
                continue
        checks.append(Check(kind, text, pattern))
    return tuple(checks)


def _case(raw, number: int, seen: set, problems: list[str]) -> EvalCase | None:
    where = f"case #{number}"
    known = len(problems)
    if not isinstance(raw, dict):
        problems.append(f"{where}: a case is a mapping (name, message, checks), not {type(raw).__name__}")
        return None
    name = raw.get("name")
    if isinstance(name, str) and name.strip():
        where = f"case #{number} ({name})"
        if name in seen:
            problems.append(f"{where}: the name is used by an earlier case; names must be unique")
        seen.add(name)
    else:
        problems.append(f"{where}: 'name' (a non-empty string, unique in the set) is missing")
    unknown = sorted(str(key) for key in raw if key not in CASE_KEYS)
    if unknown:
        problems.append(f"{where}: unknown key(s) {', '.join(unknown)}; allowed are {', '.join(CASE_KEYS)}")
    message = raw.get("message")
    if not isinstance(message, str) or not message.strip():
        problems.append(f"{where}: 'message' (the non-empty text sent to /execute) is missing")
    checks = _checks(raw.get("checks"), where, problems)
    conversation_id = raw.get("conversation_id")
    if conversation_id is not None and (
        not isinstance(conversation_id, str) or not 0 < len(conversation_id) <= MAX_CONVERSATION_ID
    ):
        problems.append(f"{where}: 'conversation_id' must be a string of 1-{MAX_CONVERSATION_ID} characters")
    attempts = raw.get("attempts", 1)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= MAX_ATTEMPTS:
        problems.append(f"{where}: 'attempts' must be a whole number from 1 to {MAX_ATTEMPTS}, not {attempts!r}")
    if len(problems) > known:
        return None
    return EvalCase(name, message, checks, conversation_id, attempts)


def validate_cases(raw, source: str) -> list[EvalCase]:
    """Every case checked; EvalCasesError lists every problem found (up to 10), each naming its case."""
    if not isinstance(raw, list) or not raw:
        raise EvalCasesError(f"{source}: 'cases' must be a non-empty list of cases (name, message, checks).")
    problems: list[str] = []
    seen: set = set()
    cases = [_case(item, number, seen, problems) for number, item in enumerate(raw, 1)]
    if problems:
        shown = problems[:10]
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise EvalCasesError(f"{source} has {len(problems)} problem(s){more}: " + "; ".join(shown) + ".")
    return [case for case in cases if case is not None]


# --------------------------------------------------------------------------- one turn


def parse_sse(text: str) -> list[tuple[str, object]]:
    """The events of a Server-Sent Events stream: (event name, data as JSON when it parses, else text)."""
    events: list[tuple[str, object]] = []
    name, data = "message", []
    # what follows the last line break is an unfinished line: it is dropped with its event
    for line in re.split(r"\r\n|\r|\n", text or "")[:-1]:
        if not line:
            if data:
                joined = "\n".join(data)
                try:
                    events.append((name, json.loads(joined)))
                except ValueError:
                    events.append((name, joined))
            name, data = "message", []
            continue
        if line.startswith(":"):
            continue
        key, value = line.split(":", 1) if ":" in line else (line, "")
        value = value[1:] if value.startswith(" ") else value
        if key == "event":
            name = value or "message"
        elif key == "data":
            data.append(value)
    return events  # an event not closed by a blank line is incomplete and dropped, as the SSE spec says


def turn_outcome(events: list[tuple[str, object]]) -> TurnOutcome:
    """The answer of a ``done`` event (or the tokens'), or the error of an ``error`` event."""
    outcome = TurnOutcome()
    tokens = []
    for name, raw in events:
        data = raw if isinstance(raw, dict) else {}
        outcome.task_id = data.get("task_id") or outcome.task_id
        if name == "token" and isinstance(data.get("text"), str):
            tokens.append(data["text"])
        elif name == "error":
            outcome.error = str(data.get("error") or "STREAM_ERROR")
            outcome.error_message = data.get("message") if isinstance(data.get("message"), str) else None
            return outcome
        elif name == "done":
            answer = data.get("answer")
            outcome.answer = answer if isinstance(answer, str) else "".join(tokens)
            return outcome
    outcome.error = "STREAM_INCOMPLETE"
    outcome.error_message = "the stream ended without a done or an error event"
    return outcome


def outcome_of(response) -> TurnOutcome:
    """A TurnOutcome from an EngineResponse of POST /execute; EngineAuthError on 401."""
    if response.status is None:
        kind = "TIMEOUT" if response.error_kind == "timeout" else "UNREACHABLE"
        return TurnOutcome(error=kind, error_message=response.error)
    body = response.data if isinstance(response.data, dict) else {}
    if response.status == 401:
        raise EngineAuthError(
            "The Engine refused the API key (HTTP 401 "
            f"{body.get('error') or 'INVALID_KEY'}): api_key is missing or wrong. Give the key the Engine runs with "
            "(its ENGINE_API_KEY); no eval case was scored."
        )
    if response.status != 200:
        message = body.get("message") if isinstance(body.get("message"), str) else None
        return TurnOutcome(error=str(body.get("error") or f"HTTP_{response.status}"), error_message=message)
    outcome = turn_outcome(parse_sse(response.text or ""))
    if outcome.error == "STREAM_INCOMPLETE" and response.error:
        outcome.error = "TIMEOUT" if response.error_kind == "timeout" else "STREAM_INCOMPLETE"
        outcome.error_message = response.error
    return outcome


# --------------------------------------------------------------------------- a run


class EvalRunner:
    """Runs cases against one Engine, ``concurrency`` at a time, within ``time_budget`` seconds.

    ``send(body, timeout, deadline)`` makes one POST /execute and returns an EngineResponse. Cases
    that share a conversation_id run one after the other, in their order, so that the conversation
    sees them in order.
    """

    def __init__(self, send, timeout: float, concurrency: int = 4, time_budget: float = 300.0, clock=time.monotonic):
        self.send = send
        self.timeout = timeout
        self.concurrency = concurrency
        self.time_budget = time_budget
        self.clock = clock
        self._stop = threading.Event()
        self._auth_errors: list[EngineAuthError] = []

    def _turn(self, case: EvalCase, deadline: float) -> TurnOutcome:
        body = {"message": case.message}
        if case.conversation_id:
            body["conversation_id"] = case.conversation_id
        started = self.clock()
        turn_deadline = min(started + self.timeout, deadline)
        outcome = outcome_of(self.send(body, max(1.0, min(self.timeout, turn_deadline - started)), turn_deadline))
        outcome.latency_ms = int((self.clock() - started) * 1000)
        return outcome

    def run_case(self, case: EvalCase, deadline: float) -> CaseResult:
        result = CaseResult(case.name, False, error="NOT_RUN", error_message="not run: the time budget was spent")
        for attempt in range(1, case.attempts + 1):
            if self._stop.is_set() or self.clock() >= deadline:
                break
            outcome = self._turn(case, deadline)
            failed = [] if outcome.error else [f for f in (c.failure(outcome.answer or "") for c in case.checks) if f]
            result = CaseResult(
                name=case.name,
                passed=not outcome.error and not failed,
                answer=outcome.answer,
                error=outcome.error,
                error_message=outcome.error_message,
                failed_checks=failed,
                latency_ms=outcome.latency_ms,
                attempts=attempt,
                task_id=outcome.task_id,
            )
            if result.passed:
                break
        return result

    def _work(self, cases: list[tuple[int, EvalCase]], results: list, deadline: float) -> None:
        for index, case in cases:
            try:
                results[index] = self.run_case(case, deadline)
            except EngineAuthError as exc:
                self._auth_errors.append(exc)
                self._stop.set()
                results[index] = CaseResult(case.name, False, error="INVALID_KEY")

    def run(self, cases: list[EvalCase]) -> list[CaseResult]:
        deadline = self.clock() + self.time_budget
        groups: dict = {}
        for index, case in enumerate(cases):
            key = ("conversation", case.conversation_id) if case.conversation_id else ("case", index)
            groups.setdefault(key, []).append((index, case))
        results: list = [None] * len(cases)
        workers = max(1, min(self.concurrency, len(groups)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(self._work, group, results, deadline) for group in groups.values()]
            for future in futures:
                future.result()
        if self._auth_errors:
            raise self._auth_errors[0]
        return results


def summarize(results: list[CaseResult]) -> dict:
    total = len(results)
    passed = sum(1 for r in results if r.passed)
    return dict(
        total=total,
        passed=passed,
        failed=total - passed,
        pass_rate=round(passed / total, 4) if total else None,
        errors=dict(Counter(r.error for r in results if r.error)),
        results=[r.as_dict() for r in results],
    )


# --------------------------------------------------------------------------- a command


def command_argv(command) -> list[str]:
    """The command as an argument list: a list as is, a string split like a shell would (no shell runs)."""
    if isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise OptionsError(f"command cannot be split into arguments: {exc}") from exc
    elif isinstance(command, list):
        argv = [str(item) for item in command]
    else:
        raise OptionsError("command must be a list of arguments or a string.")
    if not argv or not argv[0]:
        raise OptionsError("command is empty: give the eval command, for example ['make', 'eval'].")
    return argv


def find_command(argv: list[str], chdir: str | None) -> str:
    """The executable the command would run (a path is taken from ``chdir``), or NotFoundError."""
    if chdir and not os.path.isdir(chdir):
        raise NotFoundError(f"chdir {chdir} is not a directory on the managed node.")
    program = argv[0]
    if os.sep in program:
        path = os.path.normpath(os.path.join(chdir or os.getcwd(), program))
        if not os.path.isfile(path):
            raise NotFoundError(f"the eval command {program} does not exist (looked for {path}).")
        if not os.access(path, os.X_OK):
            raise OptionsError(
                f"the eval command {path} is not executable: chmod +x it, or run it through its interpreter."
            )
        return path
    found = shutil.which(program)
    if found is None:
        raise NotFoundError(f"the eval command {program} was not found in the PATH of the managed node.")
    return found


def _tail(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return text if len(text) <= OUTPUT_KEPT else "..." + text[-OUTPUT_KEPT:]


def run_command(argv: list[str], chdir: str | None, env_update: dict, time_budget: float, clock=time.monotonic):
    """Run the eval command; (CaseResult, details). NotFoundError when it cannot be started at all."""
    find_command(argv, chdir)
    env = dict(os.environ)
    env.update(env_update)
    started = clock()
    try:
        proc = subprocess.Popen(  # the user's own eval command, no shell
            argv,
            cwd=chdir or None,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise NotFoundError(f"the eval command {argv[0]} was not found on the managed node: {exc.strerror}.") from exc
    except PermissionError as exc:
        raise OptionsError(f"the eval command {argv[0]} cannot be run: {exc.strerror}.") from exc
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=time_budget)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stdout, stderr = proc.communicate()
    elapsed = clock() - started
    rc = proc.returncode
    if timed_out:
        error, message = "TIMEOUT", f"killed after the time budget of {time_budget:g}s"
    elif rc != 0:
        error, message = "COMMAND_FAILED", f"exit status {rc}"
    else:
        error = message = None
    result = CaseResult(
        COMMAND_CASE, error is None, error=error, error_message=message, latency_ms=int(elapsed * 1000), attempts=1
    )
    details = dict(
        argv=argv,
        chdir=chdir,
        rc=rc,
        timed_out=timed_out,
        stdout=_tail(stdout),
        stderr=_tail(stderr),
        elapsed=round(elapsed, 3),
    )
    return result, details


# --------------------------------------------------------------------------- the verdict


def failure_detail(result: dict) -> str:
    """Why a case result failed, for the operator (``answered 43, expected 42``)."""
    if result.get("error") == "NOT_RUN":
        return "not run: the time budget was spent"
    if result.get("error"):
        message = result.get("error_message")
        return f"failed with {result['error']}" + (f": {message}" if message else "")
    checks = result.get("failed_checks") or []
    return "; ".join(checks) if checks else "failed"


def baseline_eval(baseline, mode: str, names: list[str] | None = None) -> dict:
    """The baseline's eval (the registered result or its ``eval``), checked; OptionsError otherwise.

    With ``names`` (the cases of this run), a baseline that has none of them is refused too.
    """
    if isinstance(baseline, dict) and isinstance(baseline.get("eval"), dict):
        baseline = baseline["eval"]
    how = "register the earlier run and pass its 'eval' (baseline: \"{{ evals_before.eval }}\")"
    if not isinstance(baseline, dict) or not isinstance(baseline.get("results"), list):
        raise OptionsError(f"baseline is not the result of an earlier september.engine.engine_eval run: {how}.")
    if baseline.get("mode") not in (None, mode):
        raise OptionsError(
            f"baseline comes from a run in {baseline.get('mode')} mode and this run is in {mode} mode: "
            "compare runs of the same kind."
        )
    if baseline.get("ran") is False:
        raise OptionsError("the baseline run did not run any case (it ran in check mode): nothing to compare with.")
    for item in baseline["results"]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or "passed" not in item:
            raise OptionsError(f"baseline results must each have a name and passed: {how}.")
    if names is not None and baseline["results"] and not {r["name"] for r in baseline["results"]} & set(names):
        raise OptionsError(
            "the baseline has none of this run's cases (matched by name): it comes from another case set; "
            "take the baseline with the same cases."
        )
    return baseline


def _listed(items: list[str]) -> str:
    more = f", and {len(items) - LISTED} more" if len(items) > LISTED else ""
    return ", ".join(items[:LISTED]) + more


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def compare(baseline: dict, results: list[dict], max_regressions: int = 0, max_pass_rate_drop=None) -> dict:
    """The verdict of this run's results against the baseline's: ``rollback`` or ``ok``, and why."""
    before = {item["name"]: item for item in baseline["results"]}
    after = {item["name"]: item for item in results}
    common = [name for name in after if name in before]
    regressions = [n for n in common if before[n]["passed"] and not after[n]["passed"]]
    fixed = [n for n in common if not before[n]["passed"] and after[n]["passed"]]
    rate_before = sum(1 for n in common if before[n]["passed"]) / len(common) if common else None
    rate_after = sum(1 for n in common if after[n]["passed"]) / len(common) if common else None
    drop = round(rate_before - rate_after, 4) if common else 0.0
    too_many = len(regressions) > max_regressions
    too_low = max_pass_rate_drop is not None and drop > max_pass_rate_drop
    reasons = []
    symptom = []
    if regressions:
        listed = _listed([f"{n} ({failure_detail(after[n])})" for n in regressions])
        bound = "more than" if too_many else "within"
        reasons.append(
            f"{len(regressions)} eval case(s) that passed before now fail ({bound} max_regressions="
            f"{max_regressions}): {listed}"
        )
        if too_many:
            symptom.append(reasons[-1])
        not_serving = [n for n in regressions if after[n].get("error") in NOT_SERVING]
        if not_serving:
            codes = ", ".join(sorted({after[n]["error"] for n in not_serving}))
            reasons.append(
                f"{len(not_serving)} of them got no answer ({codes}): the Engine or its LLM provider was not serving; "
                "if Engines that were not upgraded fail alike, suspect an outage rather than the release"
            )
    elif common:
        kept = sum(1 for n in common if before[n]["passed"])
        reasons.append(f"all {kept} eval case(s) that passed before still pass")
    rate = (
        f"pass rate on the {len(common)} case(s) both runs have: {_rate(rate_before)} before, {_rate(rate_after)} now"
    )
    if too_low:
        rate += f", a drop of {drop:.1%}, more than max_pass_rate_drop={max_pass_rate_drop:.1%}"
    reasons.append(rate)
    if too_low:
        symptom.append(rate)
    if fixed:
        reasons.append(f"{len(fixed)} case(s) that failed before now pass: {_listed(fixed)}")
    new = [n for n in after if n not in before]
    gone = [n for n in before if n not in after]
    if new:
        reasons.append(f"{len(new)} case(s) not in the baseline, not compared: {_listed(new)}")
    if gone:
        reasons.append(f"{len(gone)} baseline case(s) not run now, not compared: {_listed(gone)}")
    return dict(
        decision="rollback" if too_many or too_low else "ok",
        reasons=reasons,
        symptom="; ".join(symptom) or None,
        regressions=[
            dict(
                name=n,
                detail=failure_detail(after[n]),
                answer=after[n].get("answer"),
                error=after[n].get("error"),
                baseline_answer=before[n].get("answer"),
            )
            for n in regressions
        ],
        fixed=fixed,
        compared=len(common),
        not_compared=new + gone,
        pass_rate_before=None if rate_before is None else round(rate_before, 4),
        pass_rate_after=None if rate_after is None else round(rate_after, 4),
        pass_rate_drop=drop,
    )
