#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: engine_eval
short_description: Run regression evals against an Engine and compare them with a baseline run
version_added: 0.1.0
description:
  - Runs eval cases (O(cases_file) or O(cases)) against an Engine's C(POST /execute) and scores each answer, or runs
    your own eval command (O(command)) and scores its exit code as one case named C(command).
  - A case passes when its turn completes and every check holds; otherwise it fails with an error code (for example
    C(TOOL_EXECUTION_FAILED) or C(TIMEOUT)).
  - With O(baseline), compares the two runs and returns RV(eval.verdict), V(rollback) when more than
    O(max_regressions) cases that passed in the baseline now fail (or the pass rate dropped by more than
    O(max_pass_rate_drop)), else V(ok). It only reports; the playbook decides.
  - Fails only on bad input (a missing or malformed case set, a command that cannot be found) and on an Engine that
    refuses the key (HTTP 401); none of these is scored.
  - Eval turns are written to the Engine's brain like any user turn, so a run that sends turns (or runs the command)
    reports C(changed=true).
author:
  - September Engine maintainers (@september-engine)
options:
  container:
    description:
      - Name or id of the Engine's container; O(url) defaults to where it publishes port C(8000/tcp). Needs the
        Docker SDK.
      - At least one of O(container) and O(url) is required.
    type: str
  cases_file:
    description:
      - Path, on the host the module runs on, of a YAML or JSON file of eval cases (a mapping with C(cases), and
        optionally C(version) V(1) and C(description)). YAML needs PyYAML there; JSON is always read.
      - Exactly one of O(cases_file), O(cases) and O(command) is required.
    type: path
  cases:
    description:
      - The eval cases inline, a list of cases, or a mapping with C(cases) as in a case file, or the text of a case
        file (YAML or JSON).
    type: raw
  command:
    description:
      - Your own eval command, as a list of arguments or as a string split like a shell would (it does not run in a
        shell). It gets E(ENGINE_URL) and, when O(api_key) is set, E(ENGINE_API_KEY) in its environment.
      - It passes when it exits 0; its process group is killed after O(time_budget) seconds.
    type: raw
  chdir:
    description: Directory to run O(command) in.
    type: path
  baseline:
    description:
      - The C(eval) returned by an earlier run of this module on the same Engine, of the same kind (cases or
        command), or that registered result itself.
      - Cases are matched by name; cases in only one of the runs are listed, not compared. A baseline that has none
        of this run's cases is refused.
    type: dict
  max_regressions:
    description: How many cases that passed in the baseline may fail now before the verdict is V(rollback).
    type: int
    default: 0
  max_pass_rate_drop:
    description:
      - Also decide V(rollback) when the pass rate, over the cases both runs have, dropped by more than this share
        (V(0.1) is ten points). When not set, O(max_regressions) alone decides.
    type: float
  concurrency:
    description: How many cases run at the same time (1 to 32).
    type: int
    default: 4
  time_budget:
    description:
      - Seconds the whole run may take. Cases not started by then fail with C(NOT_RUN); a turn still running then
        fails with C(TIMEOUT); a command is killed.
      - O(timeout) bounds each turn.
    type: float
    default: 300
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._attributes.ACTIONGROUP_ENGINE
  - september.engine._engine_api
  - september.engine._docker
attributes:
  check_mode:
    support: full
    details:
      - No turn is sent and no command runs. The cases (or the command and O(chdir)) and the O(baseline) are checked
        as in a real run, and the run is planned (RV(eval.ran=false), RV(eval.planned)).
  diff_mode:
    support: N/A
    details:
      - The module changes nothing that Ansible manages.
  idempotent:
    support: none
    details:
      - Every run sends its turns again and each is written to the Engine's brain, so C(changed=true) whenever turns
        were sent or the command ran (in check mode, when they would be).
notes:
  - The API key goes in the C(X-Engine-Key) header and in the command's environment only; it is replaced by
    C(********) in every answer, error and command output returned.
  - O(timeout) bounds each turn, O(time_budget) the whole run.
  - The eval-case format, how a case is scored and how the verdict is reached are in docs/evals.md of the
    collection; why the module works this way is in docs/modules.md.
seealso:
  - module: september.engine.engine_health
"""

EXAMPLES = r"""
- name: Baseline evals before the upgrade
  september.engine.engine_eval:
    container: "{{ engine_container_name }}"
    api_key: "{{ engine_api_key }}"
    cases_file: /etc/september/evals.yml
  register: evals_before
  failed_when: evals_before.eval.pass_rate < 1

- name: The same evals after the upgrade, compared with the baseline
  september.engine.engine_eval:
    container: "{{ engine_container_name }}"
    api_key: "{{ engine_api_key }}"
    cases_file: /etc/september/evals.yml
    baseline: "{{ evals_before.eval }}"
  register: evals_after
  failed_when: evals_after.eval.verdict.decision == 'rollback'

- name: Eval cases kept on the controller
  september.engine.engine_eval:
    url: http://127.0.0.1:9001
    api_key: "{{ engine_api_key }}"
    cases: "{{ lookup('ansible.builtin.file', 'files/evals.yml') | from_yaml }}"
    concurrency: 8
    time_budget: 120
  register: evals_now

- name: The team's own eval suite, told where the Engine is through ENGINE_URL and ENGINE_API_KEY
  september.engine.engine_eval:
    url: "{{ engine_url }}"
    api_key: "{{ engine_api_key }}"
    command: make eval
    chdir: /opt/engine-evals
    time_budget: 900
  register: make_eval
  failed_when: make_eval.eval.passed == 0
"""

RETURN = r"""
eval:
  description: What the evals found.
  returned: always
  type: dict
  contains:
    mode:
      description: V(cases) (eval cases sent to C(/execute)) or V(command) (the eval command).
      type: str
      returned: always
      sample: cases
    ran:
      description: The cases or the command really ran (false in check mode).
      type: bool
      returned: always
      sample: true
    url:
      description: The Engine's base URL (without credentials).
      type: str
      returned: always
      sample: http://127.0.0.1:9001
    source:
      description: Where the cases came from, the O(cases_file) path, V(inline), or V(command).
      type: str
      returned: always
      sample: /etc/september/evals.yml
    started_at:
      description: When the run started (UTC, ISO 8601).
      type: str
      returned: always
      sample: "2026-03-01T10:00:00Z"
    elapsed:
      description: Seconds the run took.
      type: float
      returned: always
      sample: 1.274
    planned:
      description: The names of the cases of the run (V(command) in command mode).
      type: list
      elements: str
      returned: always
      sample: [add-17-25, echo-plain]
    total:
      description: Cases scored (0 in check mode).
      type: int
      returned: always
      sample: 16
    passed:
      description: Cases that passed.
      type: int
      returned: always
      sample: 16
    failed:
      description: Cases that failed (wrong answer, error, not run).
      type: int
      returned: always
      sample: 0
    pass_rate:
      description: RV(eval.passed) / RV(eval.total), null when nothing was scored.
      type: float
      returned: always
      sample: 1.0
    errors:
      description: How many cases failed with each error code.
      type: dict
      returned: always
      sample: {"TOOL_EXECUTION_FAILED": 3}
    results:
      description: One result per case, in the order of the cases.
      type: list
      elements: dict
      returned: always
      contains:
        name:
          description: The case's name.
          type: str
          returned: always
          sample: add-17-25
        passed:
          description: The turn completed and every check held (command mode, it exited 0).
          type: bool
          returned: always
          sample: false
        answer:
          description: The answer (cut after 200 characters), null when there was none.
          type: str
          returned: always
          sample: "43"
        error:
          description:
            - Why there was no answer, the Engine's error code (for example C(TOOL_EXECUTION_FAILED)),
              C(HTTP_<status>), C(UNREACHABLE), C(TIMEOUT), C(STREAM_INCOMPLETE) or C(NOT_RUN); in command mode
              C(COMMAND_FAILED) or C(TIMEOUT). Null otherwise.
          type: str
          returned: always
          sample: null
        error_message:
          description: The Engine's message with the error (or the exit status of the command).
          type: str
          returned: always
          sample: null
        failed_checks:
          description: Why each failing check failed.
          type: list
          elements: str
          returned: always
          sample: ["answered 43, expected 42"]
        latency_ms:
          description: Milliseconds of the (last) turn, or of the command.
          type: int
          returned: always
          sample: 262
        attempts:
          description: Turns sent for the case (0 when it was not run).
          type: int
          returned: always
          sample: 1
        task_id:
          description: The Engine's task id of the (last) turn, to find it in the brain and the logs.
          type: str
          returned: always
          sample: 0b6f3c52-8f1e-4a55-9d7c-3d1b2f0e9a41
    command:
      description: In command mode, what the command did; null in cases mode.
      type: dict
      returned: always
      contains:
        argv:
          description: The command's arguments.
          type: list
          elements: str
          returned: success
          sample: [make, eval]
        chdir:
          description: The directory it ran in.
          type: str
          returned: success
          sample: /opt/engine-evals
        rc:
          description: Its exit code (negative, the signal, when it was killed); null in check mode.
          type: int
          returned: success
          sample: 0
        timed_out:
          description: It was killed after O(time_budget) seconds.
          type: bool
          returned: success
          sample: false
        stdout:
          description: The end of its standard output (the last 4000 characters), the key replaced by C(********).
          type: str
          returned: success
          sample: "42 passed, 0 failed"
        stderr:
          description: The end of its standard error, the key replaced by C(********).
          type: str
          returned: success
          sample: ""
        elapsed:
          description: Seconds it ran.
          type: float
          returned: success
          sample: 12.5
    verdict:
      description: The comparison with O(baseline); null without a baseline and in check mode.
      type: dict
      returned: always
      contains:
        decision:
          description: V(rollback) or V(ok).
          type: str
          returned: success
          sample: rollback
        reasons:
          description: Why, in sentences for the operator.
          type: list
          elements: str
          returned: success
          sample:
            - "2 eval case(s) that passed before now fail (more than max_regressions=0): mul-12-12 (answered 145,
              expected 144), add-2-2 (failed with TOOL_EXECUTION_FAILED)"
            - "pass rate on the 16 case(s) both runs have: 100% before, 88% now"
        symptom:
          description: What decides the rollback, in one line; null with V(ok).
          type: str
          returned: success
          sample: "2 eval case(s) that passed before now fail (more than max_regressions=0): mul-12-12 (answered 145,
            expected 144), add-2-2 (failed with TOOL_EXECUTION_FAILED)"
        regressions:
          description: The cases that passed in the baseline and fail now.
          type: list
          elements: dict
          returned: success
          sample:
            - name: mul-12-12
              detail: answered 145, expected 144
              answer: "145"
              error: null
              baseline_answer: "144"
        fixed:
          description: Names of the cases that failed in the baseline and pass now.
          type: list
          elements: str
          returned: success
          sample: []
        compared:
          description: Cases both runs have.
          type: int
          returned: success
          sample: 16
        not_compared:
          description: Names of the cases in only one of the runs.
          type: list
          elements: str
          returned: success
          sample: []
        pass_rate_before:
          description: The baseline's pass rate over the compared cases.
          type: float
          returned: success
          sample: 1.0
        pass_rate_after:
          description: This run's pass rate over the compared cases.
          type: float
          returned: success
          sample: 0.875
        pass_rate_drop:
          description: RV(eval.verdict.pass_rate_before) minus RV(eval.verdict.pass_rate_after).
          type: float
          returned: success
          sample: 0.125
"""

import time
from urllib.parse import urlsplit

from ansible_collections.september.engine.plugins.module_utils._docker import (
    DockerException,
    docker_argument_spec,
    docker_client,
    get_container,
)
from ansible_collections.september.engine.plugins.module_utils._engine_api import (
    check_tls_options,
    check_url,
    engine_api_argument_spec,
    engine_stream,
    engine_url_from_container,
    safe_url,
)
from ansible_collections.september.engine.plugins.module_utils._errors import (
    DockerUnavailableError,
    EngineModuleError,
    OptionsError,
)
from ansible_collections.september.engine.plugins.module_utils._evals import (
    COMMAND_CASE,
    EvalRunner,
    baseline_eval,
    cases_from_document,
    command_argv,
    compare,
    find_command,
    read_cases_file,
    run_command,
    summarize,
)
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule
from ansible_collections.september.engine.plugins.module_utils._secrets import redact

MAX_CONCURRENCY = 32


class EngineEval:
    """One eval run against one Engine: the cases (or the command), the score and the verdict."""

    def __init__(self, module: EngineModule):
        self.module = module
        self.params = module.params
        self._check_numbers()
        check_tls_options(self.params)
        p = self.params
        self.mode = "command" if p["command"] is not None else "cases"
        self.cases = []
        self.argv = None
        if self.mode == "command":
            self.source = "command"
            self.argv = command_argv(p["command"])
            find_command(self.argv, p["chdir"])
        elif p["cases_file"]:
            self.source = p["cases_file"]
            self.cases = read_cases_file(p["cases_file"])
        else:
            self.source = "inline"
            self.cases = cases_from_document(p["cases"], "cases")
        self.planned = [case.name for case in self.cases] if self.mode == "cases" else [COMMAND_CASE]
        self.baseline = None
        if p["baseline"] is not None:
            self.baseline = baseline_eval(p["baseline"], self.mode, self.planned)
        self.url = self._base_url()
        password = urlsplit(self.url).password
        self.secrets = [s for s in (p["api_key"], password) if s]

    def _check_numbers(self) -> None:
        p = self.params
        if not 1 <= p["concurrency"] <= MAX_CONCURRENCY:
            raise OptionsError(f"concurrency must be from 1 to {MAX_CONCURRENCY} (got {p['concurrency']}).")
        for name in ("timeout", "time_budget"):
            if p[name] <= 0:
                raise OptionsError(f"{name} must be more than 0 seconds (got {p[name]}).")
        if p["max_regressions"] < 0:
            raise OptionsError(f"max_regressions must be 0 or more (got {p['max_regressions']}).")
        drop = p["max_pass_rate_drop"]
        if drop is not None and not 0 <= drop <= 1:
            raise OptionsError(f"max_pass_rate_drop is a share from 0 to 1, for example 0.1 (got {drop}).")
        if p["chdir"] and p["command"] is None:
            raise OptionsError("chdir is only used with command.")

    def _base_url(self) -> str:
        p = self.params
        if p["url"]:
            return check_url(p["url"])
        try:
            container = get_container(docker_client(p), p["container"])
        except DockerException as exc:
            raise DockerUnavailableError(f"Docker could not inspect container {p['container']}: {exc}") from exc
        url = engine_url_from_container(container.attrs)
        if url is None:
            raise OptionsError(
                f"Container {p['container']} does not publish the Engine's port 8000/tcp on the host (is it running?): "
                "start it, or set url to where the Engine can be reached."
            )
        return url

    def _send(self, body: dict, timeout: float, deadline: float):
        p = self.params
        return engine_stream(
            "POST",
            self.url + "/execute",
            api_key=p["api_key"],
            body=body,
            timeout=timeout,
            deadline=deadline,
            validate_certs=p["validate_certs"],
            ca_path=p["ca_path"],
            use_proxy=p["use_proxy"],
        )

    def _command(self):
        env = {"ENGINE_URL": self.url}
        if self.params["api_key"]:
            env["ENGINE_API_KEY"] = self.params["api_key"]
        case, details = run_command(self.argv, self.params["chdir"], env, self.params["time_budget"])
        return [case], details

    def run(self) -> dict:
        p = self.params
        started = time.monotonic()
        result = dict(
            mode=self.mode,
            ran=not self.module.check_mode,
            url=safe_url(self.url),
            source=self.source,
            started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            planned=self.planned,
            command=None,
            verdict=None,
        )
        if self.module.check_mode:
            if self.argv is not None:
                result["command"] = dict(argv=self.argv, chdir=p["chdir"], rc=None, timed_out=False)
            result.update(summarize([]), elapsed=0.0)
            return redact(result, self.secrets)
        if self.mode == "cases":
            runner = EvalRunner(self._send, p["timeout"], p["concurrency"], p["time_budget"])
            results = runner.run(self.cases)
        else:
            results, result["command"] = self._command()
        result.update(summarize(results))
        not_run = result["errors"].get("NOT_RUN")
        if not_run:
            self.module.warn(
                f"{not_run} eval case(s) were not run: the time_budget of {p['time_budget']:g}s was spent."
            )
        if self.baseline is not None:
            result["verdict"] = compare(
                self.baseline, result["results"], p["max_regressions"], p["max_pass_rate_drop"]
            )
        result["elapsed"] = round(time.monotonic() - started, 3)
        return redact(result, self.secrets)


def main() -> None:
    argument_spec = dict(
        container=dict(type="str"),
        cases_file=dict(type="path"),
        cases=dict(type="raw"),
        command=dict(type="raw"),
        chdir=dict(type="path"),
        baseline=dict(type="dict"),
        max_regressions=dict(type="int", default=0),
        max_pass_rate_drop=dict(type="float", no_log=False),
        concurrency=dict(type="int", default=4),
        time_budget=dict(type="float", default=300.0),
    )
    argument_spec.update(engine_api_argument_spec())
    argument_spec.update(docker_argument_spec())
    module = EngineModule(argument_spec, required_one_of=[("url", "container"), ("cases_file", "cases", "command")],
                          mutually_exclusive=[("cases_file", "cases", "command")])
    if not module.params["url"]:
        module.check_sdk()

    def work() -> dict:
        try:
            result = EngineEval(module).run()
            # Each eval turn is written to the Engine's brain: a run that sent turns (or would) changed it.
            return dict(eval=result, changed=bool(result.get("ran") or result.get("planned")))
        except EngineModuleError as exc:  # a command's output may quote the key it was given
            exc.msg = redact(exc.msg, [module.params["api_key"]])
            raise

    module.run(work)


if __name__ == "__main__":
    main()
