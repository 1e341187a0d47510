# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The agent turn: a deterministic answer, a realistic duration and usage, and the brain rows.

No model is involved: answers are computed from the message so that eval cases can check them
(``what is A + B``, ``echo: X``, otherwise ``ack:<12 hex digits of the message's SHA-256>``).
The ``degraded_quality`` flaw (2.4.2) changes what is planned here: 4x duration, a cache-hit
collapse, about 30% failed turns and off-by-one arithmetic for about a third of the messages.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
import sqlite3
import struct
import uuid
from dataclasses import dataclass

EMBEDDING_DIM = 16

_ARITHMETIC = re.compile(r"^\s*what\s+is\s+(-?\d+)\s*([-+*])\s*(-?\d+)\s*\??\s*$", re.IGNORECASE)
_ECHO = re.compile(r"^echo: ?(.*)$", re.DOTALL)

# Shares of the input tokens served from the prompt cache.
_CACHE_HIT_SHARE = 0.75
_DEGRADED_CACHE_HIT_SHARE = 0.10
_DEGRADED_FAILURE_RATE = 0.30
_DEGRADED_LATENCY_FACTOR = 4


@dataclass(frozen=True)
class Features:
    """What the brain's schema allows, derived from the applied migrations (not from the version)."""

    memory_tags: bool  # 0006: episodes.tag_count and memory_tags
    turn_metrics: bool  # 0007: turn_metrics
    memory_v3: bool  # 0008: no channel_state_snapshots, no working_memory_log.raw_payload, no turn_started

    @classmethod
    def from_versions(cls, versions: list[str]) -> Features:
        applied = set(versions)
        return cls(memory_tags="0006" in applied, turn_metrics="0007" in applied, memory_v3="0008" in applied)


@dataclass(frozen=True)
class TurnPlan:
    """Everything decided before the turn streams: the answer, its tokens, timing and outcome."""

    skill: str  # arithmetic / echo / chat
    answer: str
    tokens: list[str]
    duration_s: float
    input_tokens: int
    output_tokens: int
    cache_hit_tokens: int
    fact: tuple[str, str, str] | None  # (subject, predicate, object) learned by the turn
    fail_after: int | None = None  # tokens streamed before the turn fails; None: it completes
    error_code: str | None = None
    error_message: str | None = None


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def embed(text: str) -> bytes:
    """A deterministic little-endian float32 embedding of ``EMBEDDING_DIM`` values in [-1, 1]."""
    raw = hashlib.sha256(text.encode("utf-8")).digest()[:EMBEDDING_DIM]
    return struct.pack(f"<{EMBEDDING_DIM}f", *((b - 127.5) / 127.5 for b in raw))


def answer_for(message: str) -> tuple[str, str, tuple[str, str, str] | None]:
    """``(skill, answer, fact)`` for a message, exactly as a healthy Engine answers it."""
    match = _ARITHMETIC.match(message)
    if match:
        left, op, right = int(match.group(1)), match.group(2), int(match.group(3))
        result = left + right if op == "+" else left - right if op == "-" else left * right
        return "arithmetic", str(result), (f"{left} {op} {right}", "equals", str(result))
    match = _ECHO.match(message)
    if match:
        return "echo", match.group(1), None
    return "chat", "ack:" + digest(message)[:12], None


def _split_tokens(answer: str) -> list[str]:
    """At most 8 roughly equal pieces whose concatenation is the answer."""
    if not answer:
        return [""]
    count = min(8, len(answer))
    size = -(-len(answer) // count)  # ceiling division
    return [answer[i:i + size] for i in range(0, len(answer), size)]


def plan_turn(message: str, latency_ms: int, flaw: str, rng: random.Random) -> TurnPlan:
    """Plan one turn. Duration has a small jitter (+/-10%) derived from the message, so it is
    deterministic; only the ``degraded_quality`` failures draw from ``rng``."""
    skill, answer, fact = answer_for(message)
    message_hash = int(digest(message), 16)
    degraded = flaw == "degraded_quality"

    if degraded and skill == "arithmetic" and message_hash % 3 == 0:
        # 2.4.2's subtle regression: an off-by-one in the calculator tool for a third of the messages.
        answer = str(int(answer) + 1)
        fact = (fact[0], fact[1], answer) if fact else None

    jitter = 0.9 + 0.2 * ((message_hash >> 32) % 1000) / 999
    duration_s = latency_ms * (_DEGRADED_LATENCY_FACTOR if degraded else 1) * jitter / 1000.0

    tokens = _split_tokens(answer)
    input_tokens = 400 + len(message.split())
    share = _DEGRADED_CACHE_HIT_SHARE if degraded else _CACHE_HIT_SHARE
    plan = TurnPlan(
        skill=skill,
        answer=answer,
        tokens=tokens,
        duration_s=duration_s,
        input_tokens=input_tokens,
        output_tokens=max(len(tokens), (len(answer) + 3) // 4),
        cache_hit_tokens=int(input_tokens * share),
        fact=fact,
    )
    if degraded and rng.random() < _DEGRADED_FAILURE_RATE:
        tool = "calculator" if skill == "arithmetic" else "memory_search"
        return dataclasses.replace(
            plan,
            fail_after=rng.randrange(len(tokens) + 1),
            error_code="TOOL_EXECUTION_FAILED",
            error_message=f"tool '{tool}' returned malformed output",
        )
    return plan


@dataclass(frozen=True)
class TurnRecord:
    """What a finished turn writes to the brain."""

    task_id: str
    conversation_id: str
    message: str
    request_body: str
    plan: TurnPlan
    status: str  # completed / failed
    error_code: str | None
    error_message: str | None
    started_at: str
    finished_at: str
    latency_ms: int


def _new_id() -> str:
    return str(uuid.uuid4())


def insert_running_task(conn: sqlite3.Connection, task_id: str, conversation_id: str, message: str,
                        created_at: str) -> None:
    """The task row written before the turn streams (``event: task`` follows it)."""
    conn.execute(
        "INSERT INTO tasks (task_id, conversation_id, status, message, created_at) VALUES (?, ?, 'running', ?, ?)",
        (task_id, conversation_id, message, created_at),
    )


def record_turn(conn: sqlite3.Connection, features: Features, rec: TurnRecord) -> None:
    """Write every row of a finished turn. The caller holds the transaction."""
    plan = rec.plan
    completed = rec.status == "completed"
    answer = plan.answer if completed else None
    conn.execute(
        "UPDATE tasks SET status = ?, answer = ?, error = ?, latency_ms = ?, input_tokens = ?, output_tokens = ?,"
        " cache_hit_tokens = ?, completed_at = ? WHERE task_id = ?",
        (rec.status, answer, rec.error_code, rec.latency_ms, plan.input_tokens, plan.output_tokens,
         plan.cache_hit_tokens, rec.finished_at, rec.task_id),
    )

    # Conversation: the user's message, and the assistant's answer when there is one.
    conn.execute(
        "INSERT INTO conversations (message_id, conversation_id, task_id, role, content, created_at)"
        " VALUES (?, ?, ?, 'user', ?, ?)",
        (_new_id(), rec.conversation_id, rec.task_id, rec.message, rec.started_at),
    )
    if completed:
        conn.execute(
            "INSERT INTO conversations (message_id, conversation_id, task_id, role, content, created_at)"
            " VALUES (?, ?, ?, 'assistant', ?, ?)",
            (_new_id(), rec.conversation_id, rec.task_id, plan.answer, rec.finished_at),
        )

    # Trajectory: plan, tool call (arithmetic), then respond or error.
    steps = [("plan", json.dumps({"skill": plan.skill}))]
    if plan.skill == "arithmetic" and plan.fact:
        steps.append(("tool_call", json.dumps({"tool": "calculator", "input": plan.fact[0]})))
    if completed:
        steps.append(("respond", plan.answer))
    else:
        steps.append(("error", json.dumps({"error": rec.error_code, "message": rec.error_message})))
    conn.executemany(
        "INSERT INTO trajectories (step_id, task_id, step_index, kind, content, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        [(_new_id(), rec.task_id, i, kind, content, rec.finished_at) for i, (kind, content) in enumerate(steps)],
    )

    # Working memory: the slots the loop persists at its boundaries.
    slots = [("user_message", rec.message)] + ([("answer", plan.answer)] if completed else [])
    for slot, value in slots:
        if features.memory_v3:
            conn.execute(
                "INSERT INTO working_memory_log (entry_id, task_id, conversation_id, slot, value, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (_new_id(), rec.task_id, rec.conversation_id, slot, value, rec.finished_at),
            )
        else:
            conn.execute(
                "INSERT INTO working_memory_log (entry_id, task_id, conversation_id, slot, value, raw_payload,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (_new_id(), rec.task_id, rec.conversation_id, slot, value, rec.request_body, rec.finished_at),
            )

    conn.execute(
        "INSERT INTO skill_library (skill_id, name, description, success_count, failure_count, updated_at)"
        " VALUES (?, ?, '', ?, ?, ?) ON CONFLICT (skill_id) DO UPDATE SET"
        " success_count = success_count + excluded.success_count,"
        " failure_count = failure_count + excluded.failure_count, updated_at = excluded.updated_at",
        (plan.skill, plan.skill, int(completed), int(not completed), rec.finished_at),
    )

    if completed:
        _record_memory(conn, features, rec)

    if not features.memory_v3:
        conn.execute(
            "INSERT INTO observability_events (event_type, task_id, payload, created_at)"
            " VALUES ('turn_started', ?, ?, ?)",
            (rec.task_id, json.dumps({"conversation_id": rec.conversation_id}), rec.started_at),
        )
    conn.execute(
        "INSERT INTO observability_events (event_type, task_id, latency_ms, input_tokens, output_tokens,"
        " cache_hit_tokens, error_code, payload, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ("turn_completed" if completed else "turn_failed", rec.task_id, rec.latency_ms, plan.input_tokens,
         plan.output_tokens, plan.cache_hit_tokens, rec.error_code,
         json.dumps({"conversation_id": rec.conversation_id, "skill": plan.skill}), rec.finished_at),
    )
    if features.turn_metrics:
        conn.execute(
            "INSERT INTO turn_metrics (task_id, status, latency_ms, input_tokens, output_tokens, cache_hit_tokens,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (rec.task_id, rec.status, rec.latency_ms, plan.input_tokens, plan.output_tokens, plan.cache_hit_tokens,
             rec.finished_at),
        )


def _record_memory(conn: sqlite3.Connection, features: Features, rec: TurnRecord) -> None:
    """Long-term memory of a completed turn: episode (+tags, +embedding), facts, graph, channel state."""
    plan = rec.plan
    now = rec.finished_at
    episode_id = _new_id()
    summary = f"user: {rec.message[:200]} | assistant: {plan.answer[:200]}"
    importance = 0.7 if plan.skill == "arithmetic" else 0.5
    tags = [plan.skill, "channel:api"]
    if features.memory_tags:
        conn.execute(
            "INSERT INTO episodes (episode_id, task_id, conversation_id, kind, summary, importance, tag_count,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (episode_id, rec.task_id, rec.conversation_id, plan.skill, summary, importance, len(tags), now),
        )
        conn.executemany(
            "INSERT OR IGNORE INTO memory_tags (episode_id, tag, created_at) VALUES (?, ?, ?)",
            [(episode_id, tag, now) for tag in tags],
        )
    else:
        conn.execute(
            "INSERT INTO episodes (episode_id, task_id, conversation_id, kind, summary, importance, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (episode_id, rec.task_id, rec.conversation_id, plan.skill, summary, importance, now),
        )
    conn.execute(
        "INSERT INTO episodes_vec (episode_id, dim, embedding) VALUES (?, ?, ?)",
        (episode_id, EMBEDDING_DIM, embed(summary)),
    )

    if plan.fact:
        subject, predicate, obj = plan.fact
        fact_id = digest(f"{subject}|{predicate}")[:32]
        conn.execute(
            "INSERT INTO knowledge_store (fact_id, subject, predicate, object, source_task_id, confidence,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, 1.0, ?, ?) ON CONFLICT (fact_id) DO UPDATE SET"
            " object = excluded.object, source_task_id = excluded.source_task_id, updated_at = excluded.updated_at",
            (fact_id, subject, predicate, obj, rec.task_id, now, now),
        )
        conn.execute(
            "INSERT OR REPLACE INTO knowledge_store_vec (fact_id, dim, embedding) VALUES (?, ?, ?)",
            (fact_id, EMBEDDING_DIM, embed(f"{subject} {predicate} {obj}")),
        )

    # Social graph: the owner talks in this conversation; the edge's weight counts the turns.
    conversation_node = f"conversation:{rec.conversation_id}"
    conn.executemany(
        "INSERT INTO social_graph_nodes (node_id, kind, label, attributes, created_at, updated_at)"
        " VALUES (?, ?, ?, '{}', ?, ?) ON CONFLICT (node_id) DO UPDATE SET updated_at = excluded.updated_at",
        [("person:owner", "person", "owner", now, now),
         (conversation_node, "conversation", rec.conversation_id, now, now)],
    )
    conn.execute(
        "INSERT INTO social_graph_edges (edge_id, src_node_id, dst_node_id, relation, weight, created_at, updated_at)"
        " VALUES (?, 'person:owner', ?, 'talks_in', 1.0, ?, ?) ON CONFLICT (src_node_id, dst_node_id, relation)"
        " DO UPDATE SET weight = weight + 1, updated_at = excluded.updated_at",
        (_new_id(), conversation_node, now, now),
    )

    if not features.memory_v3:
        conn.execute(
            "INSERT INTO channel_state_snapshots (snapshot_id, channel, conversation_id, turn_count, last_task_id,"
            " state_json, updated_at) VALUES (?, 'api', ?, 1, ?, ?, ?) ON CONFLICT (snapshot_id) DO UPDATE SET"
            " turn_count = turn_count + 1, last_task_id = excluded.last_task_id,"
            " state_json = excluded.state_json, updated_at = excluded.updated_at",
            (f"api:{rec.conversation_id}", rec.conversation_id, rec.task_id,
             json.dumps({"last_answer": plan.answer[:200]}), now),
        )


def interrupt_running_tasks(conn: sqlite3.Connection, now: str) -> int:
    """At start-up: turns that were running when the last process died are lost; mark them so."""
    cursor = conn.execute(
        "UPDATE tasks SET status = 'interrupted', error = 'ENGINE_RESTARTED', completed_at = ?"
        " WHERE status = 'running'",
        (now,),
    )
    return cursor.rowcount
