# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The post-rollback drafts: the postmortem (timeline, symptoms, measures, data) and the proposed regression eval."""

from __future__ import annotations

import json

import yaml

from ansible_collections.september.engine.plugins.module_utils import _evals
from ansible_collections.september.engine.plugins.module_utils._metrics import parse_log_lines
from ansible_collections.september.engine.plugins.module_utils._postmortem import (
    failed_turns,
    postmortem_draft,
    regression_eval_case,
    timeline,
)

SWITCHED = 1796465962.142  # 2026-12-05T10:19:22.142Z


def line(ts: str, level: str, logger: str, text: str, task_id=None, **extra) -> str:
    return json.dumps(
        dict(
            timestamp=f"2026-12-05T10:{ts}Z",
            level=level,
            logger=logger,
            request_id="rq" + ts[-3:],
            task_id=task_id,
            message=text,
            extra=extra,
        )
    )


LINES = [
    "not json: docker's own line",
    line("19:21.801", "INFO", "engine", "engine starting", version="2.4.2", flaw="degraded_quality"),
    line("19:21.811", "INFO", "migrations", "applied migration 0006_episode_tags", version="0006"),
    line("19:21.900", "INFO", "engine", "engine ready", version="2.4.2"),
    line("19:23.100", "WARNING", "llm", "prompt cache miss: system prompt changed"),
    line("19:23.500", "INFO", "agent", "turn completed", "t1", latency_ms=1010, input_tokens=404, cache_hit_tokens=40),
    line(
        "19:24.000",
        "ERROR",
        "agent",
        "turn failed",
        "t2",
        error="TOOL_EXECUTION_FAILED",
        detail="tool 'calculator' returned malformed output",
        latency_ms=990,
        message="what is 17 + 25",
        conversation_id="c-7",
    ),
    line("19:24.300", "INFO", "http", "POST /execute 200", method="POST", path="/execute", status=200),
    line(
        "19:25.000",
        "ERROR",
        "agent",
        "turn failed",
        "t3",
        error="TOOL_EXECUTION_FAILED",
        latency_ms=1002,
        message="what is 6 * 7",
    ),
    line(
        "19:25.500",
        "ERROR",
        "agent",
        "turn failed",
        "t4",
        error="TOOL_EXECUTION_FAILED",
        latency_ms=995,
        message="what is 17 + 25",
    ),
    line("19:26.000", "INFO", "http", "POST /execute 400", method="POST", path="/execute", status=400),
    line("19:27.000", "INFO", "http", "POST /execute 503", method="POST", path="/execute", status=503),
    line("19:27.200", "INFO", "http", "GET /health 503", method="GET", path="/health", status=503),
    line("19:45.500", "INFO", "engine", "SIGTERM received: draining", in_flight=0),
]


# The measures of engine_metrics the postmortem reads, in the order of the rows below.
MEASURES = ("turns", "failed_turns", "refused_turns", "error_rate", "latency_p50_ms", "latency_p99_ms",
            "cache_hit_ratio")


def diagnostics(**changes) -> dict:
    diag = dict(
        engine="u001",
        deployment="container",
        batch=1,
        action="upgrade",
        status="rolled_back",
        step="verify",
        reason="verify: the batch: new ERROR kind TOOL_EXECUTION_FAILED (3 times)",
        decision="rollback",
        evidence="fail",
        policy=None,
        from_version="2.3.0",
        to_version="2.4.2",
        image="engine:2.4.2",
        identity="volume:engine-data-u001",
        run_id="20261205T101911Z-032722",
        switched_at=SWITCHED,
        seconds=40.0,
        snapshot=dict(name="pre-upgrade-engine-data-u001-2.3.0-to-2.4.2-r1", sha256="9f" * 32, path="/s/p.sqlite"),
        timings=dict(drain_seconds=0.6, switch_seconds=1.2, healthy_seconds=1.5, bake_seconds=15.0),
        measures=dict(
            before=dict(zip(MEASURES, (40, 0, 0, 0.0, 262.0, 306.0, 0.75), strict=True)),
            after=dict(zip(MEASURES, (30, 9, 0, 0.3, 1004.0, 1110.0, 0.1), strict=True),
                       errors_by_code={"TOOL_EXECUTION_FAILED": 9}),
        ),
        measures_before=dict(
            window=dict(start="2026-12-05T10:14:15.804Z", end="2026-12-05T10:19:15.804Z", seconds=300.0),
            measures=dict(turns=40, error_rate=0.0),
        ),
        verdict=dict(decision="fail", rule="new_error_kind", symptom="new ERROR kind TOOL_EXECUTION_FAILED"),
        evals_after=dict(verdict=dict(reasons=["2 eval case(s) that passed before now fail: add-17-25 (...)"])),
        rollback=dict(
            rolled_back=True,
            to_version="2.3.0",
            image="engine:2.3.0",
            kind="image+brain",
            brain_restored=True,
            snapshot="pre-upgrade-engine-data-u001-2.3.0-to-2.4.2-r1",
            healthy=True,
            failed_container="engine-u001--failed",
            health=dict(elapsed=1.1),
            timings=dict(restore_seconds=0.4, healthy_seconds=1.3),
            replay=dict(
                mode="replay",
                totals=dict(written=12, replayed=10),
                tables=dict(memory_tags=dict(not_replayable=2, reason="no such table in 2.3.0")),
            ),
            release_record=dict(
                release="2.4.2",
                docker_host="docker-a",
                started_at="2026-12-05T10:19:45.000Z",
                rolled_back_at="2026-12-05T10:19:46.500Z",
                path="/var/lib/september-engine/rolled-back-releases/2.4.2.json",
            ),
        ),
        data_at_risk=dict(tasks=5, conversations=10),
        bad_window_brain=dict(host="u001", path="/s/brain-pre-restore.sqlite", name="brain-pre-restore"),
    )
    diag.update(changes)
    return diag


def test_the_failed_turns_of_the_bad_window() -> None:
    turns = failed_turns(parse_log_lines("\n".join(LINES)))
    assert [(t["kind"], t["task_id"], t["message"]) for t in turns] == [
        ("TOOL_EXECUTION_FAILED", "t2", "what is 17 + 25"),
        ("TOOL_EXECUTION_FAILED", "t3", "what is 6 * 7"),
        ("TOOL_EXECUTION_FAILED", "t4", "what is 17 + 25"),
        ("HTTP_503", None, None),  # refused: 5xx only (a 400 is the client's, a /health 503 is no turn)
    ]
    assert turns[0]["detail"] == "tool 'calculator' returned malformed output" and turns[0]["conversation_id"] == "c-7"


def test_the_timeline_is_in_time_order_with_the_release_s_own_log_lines() -> None:
    events = timeline(diagnostics(), parse_log_lines("\n".join(LINES)), now=SWITCHED + 30)
    texts = [text for _ts, text in events]
    stamped = [ts for ts, _text in events if ts is not None]
    assert stamped == sorted(stamped)
    expected = [
        "run 20261205T101911Z-032722 planned (rollout_plan)",
        "pre-flight of u001 (batch 1)",
        "baseline measured: 40 turns over 300.0 s",
        "pre-upgrade snapshot pre-upgrade-engine-data-u001-2.3.0-to-2.4.2-r1",
        "drain and switch began (engine:2.4.2)",
        "log: engine: engine starting (2.4.2)",
        "log: migrations: applied migration 0006_episode_tags (0006)",
        "log: engine: engine ready (2.4.2)",
        "switched to 2.4.2 (drain 0.6 s, switch 1.2 s)",
        "log: first WARNING llm: prompt cache miss: system prompt changed",
        "healthy on 2.4.2 (1.5 s after the switch)",
        "first failed turn: TOOL_EXECUTION_FAILED",
        "last failed turn (4 in all): HTTP_503",
        "bake ended after 15.0 s",
        "verdict: fail (new_error_kind)",
        "decision: rollback (fail)",
        "rollback began (to 2.3.0)",
        "log: engine: SIGTERM received: draining",
        "brain restored from pre-upgrade-engine-data-u001-2.3.0-to-2.4.2-r1 (0.4 s)",
        "switched back to engine:2.3.0 (image+brain)",
        "healthy again on 2.3.0",
    ]
    positions = [next(i for i, text in enumerate(texts) if text.startswith(want)) for want in expected]
    assert positions == sorted(positions), texts
    when = dict((text, ts) for ts, text in events)
    assert when["run 20261205T101911Z-032722 planned (rollout_plan)"] == 1796465951.0
    assert when["healthy again on 2.3.0"] == 1796465986.5 + 1.3
    pre = next(ts for ts, text in events if text.startswith("pre-flight"))
    assert pre == SWITCHED + 30 - 40.0


def test_the_postmortem_draft_has_every_section() -> None:
    draft = postmortem_draft(diagnostics(), LINES, now=SWITCHED + 30)
    assert draft.startswith("# Postmortem draft: 2.4.2 on u001 (run 20261205T101911Z-032722)\n")
    for section in (
        "| turns | 40 | 30 | 5 |",
        "| error rate | 0.0% | 30.0% | 80.0% |",  # 4 of 5 turns
        "| latency p99 | 306 ms | 1110 ms |",
        "| failed / refused | 0 / 0 | 9 / 0 | 3 / 1 |",
        "- 2026-12-05T10:19:22.142Z switched to 2.4.2",
        "- 2026-12-05T10:19:11.000Z run 20261205T101911Z-032722 planned",
        "- (time not recorded) decision: rollback (fail): verify: the batch: new ERROR kind",
        "- Verdict (fail): new ERROR kind TOOL_EXECUTION_FAILED",
        "- Evals: 2 eval case(s) that passed before now fail",
        "- 4 turn(s) failed or were refused in the bad window: `TOOL_EXECUTION_FAILED` x3, `HTTP_503` x1",
        "- log: `ERROR agent: turn failed: TOOL_EXECUTION_FAILED` x3",
        "Errors by code in the bake: `TOOL_EXECUTION_FAILED` 9",
        "Errors by code in the bad window's logs: `HTTP_503` 1, `TOOL_EXECUTION_FAILED` 3",
        "- Decision: **rollback** on evidence `fail`",
        "the failed container is kept as `engine-u001--failed`",
        "Release 2.4.2 is recorded as rolled back on docker-a",
        "Rows written in the bad window (kept in the replaced brain): `conversations` 10, `tasks` 5",
        "kept on u001: `/s/brain-pre-restore.sqlite`",
        "- Replay (replay): replayed 10, written 12",
        "  - `memory_tags`: not replayable: no such table in 2.3.0",
        "- [ ] Review the proposed regression eval `regression-eval.proposed.yml`",
    ):
        assert section in draft


def test_a_postmortem_without_rollback_or_logs_says_what_is_missing() -> None:
    draft = postmortem_draft(
        diagnostics(
            rollback=None,
            status="held",
            decision="hold",
            data_at_risk=None,
            measures=None,
            verdict=None,
            evals_after=None,
        ),
        None,
    )
    assert "- Not rolled back: nothing was restored." in draft
    assert "| turns | 40 | - | - |" in draft  # the baseline from measures_before
    assert "| error rate | 0.0% | - | - |" in draft
    assert "rollback began" not in draft and "failed or were refused" not in draft


def test_the_proposed_eval_is_a_valid_set_one_case_per_logged_message_and_kind() -> None:
    text = regression_eval_case(diagnostics(), LINES)
    assert text.startswith("# PROPOSED regression eval (proposed; review before adding)")
    document = yaml.safe_load(text)
    cases = _evals.cases_from_document(document, "proposed.yml")  # what engine_eval would run
    assert [case.name for case in cases] == [
        "regression-2-4-2-tool-execution-failed-1",
        "regression-2-4-2-tool-execution-failed-2",
        "regression-2-4-2-http-503-3",
    ]
    first, second, refused = document["cases"]
    assert first["message"] == "what is 17 + 25" and first["conversation_id"] == "c-7"
    assert second["message"] == "what is 6 * 7" and "conversation_id" not in second
    assert first["description"].startswith("proposed; review before adding. On 2.4.2 (u001) this turn failed with ")
    assert "TOOL_EXECUTION_FAILED: tool 'calculator' returned malformed output" in first["description"]
    assert "(task t2)" in first["description"]
    assert refused["message"].startswith("REPLACE ME: the message that was refused")
    assert "does not log user messages" in refused["description"]
    assert all(case["checks"] == [{"regex": r"\S"}] for case in document["cases"])
    assert "failed turns in the bad window: TOOL_EXECUTION_FAILED x3, HTTP_503 x1" in document["description"]
    assert len(yaml.safe_load(regression_eval_case(diagnostics(), LINES, max_cases=1))["cases"]) == 1


def test_a_failed_turn_without_its_message_names_the_task_to_look_up() -> None:
    lines = [line("19:24.000", "ERROR", "agent", "turn failed", "t9", error="DATABASE_ERROR")] * 3
    (case,) = yaml.safe_load(regression_eval_case(diagnostics(), lines))["cases"]
    assert case["message"] == "REPLACE ME: the message of task t9 in the kept bad-window brain (tasks.message)"


def test_without_failed_turns_the_set_has_no_case_and_says_so() -> None:
    text = regression_eval_case(diagnostics(), LINES[:4])
    assert "# No failed turn was logged in the bad window" in text
    assert yaml.safe_load(text)["cases"] == []
