# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Steady, authenticated traffic against Engines, recording exactly what each Engine acknowledged.

A turn (``POST /execute``, Server-Sent Events) is *acknowledged* only when its ``done`` event has
arrived: the reference Engine sends it after the turn's rows are committed, so every acknowledged
task id must be in the brain afterwards, whatever happened to the Engine (upgrade, rollback, kill).
Feedback (``POST /feedback``) is acknowledged by ``201``. Everything else is a failure, counted by
kind: ``http_<status>:<CODE>`` (refused before streaming), ``error:<CODE>`` (an SSE ``error`` event),
``connection_refused``, ``timeout``, ``connection_error``, ``stream_incomplete``, ``bad_response``.

The API key is sent as ``X-Engine-Key`` and is never printed, logged or stored in a record.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from .waits import wait_until

__all__ = ["Failure", "FeedbackAck", "LoadGenerator", "TurnAck", "expected_answer", "iter_stream_lines", "parse_sse"]


class EngineLike(Protocol):
    """What the load generator needs of an Engine (``fleet.Engine`` fits)."""

    engine_id: str
    url: str
    api_key: str


@dataclass(frozen=True)
class TurnAck:
    """One acknowledged turn: ``wall`` is ``time.time()`` and ``mono`` ``time.monotonic()`` at ``done``."""

    task_id: str
    wall: float
    mono: float
    latency: float
    message: str
    answer: str | None
    answer_ok: bool | None
    usage: dict[str, Any] | None


@dataclass(frozen=True)
class FeedbackAck:
    """One acknowledged feedback (``201``): the ``learning_signals`` row's id and its task."""

    signal_id: str
    task_id: str
    wall: float
    mono: float


@dataclass(frozen=True)
class Failure:
    """One failed request: ``op`` is ``execute`` or ``feedback``; ``kind`` as in the module doc."""

    op: str
    kind: str
    wall: float
    mono: float
    detail: str = ""


@dataclass
class _Record:
    engine_id: str
    url: str
    acks: list[TurnAck] = field(default_factory=list)
    feedback: list[FeedbackAck] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    attempts: int = 0
    feedback_attempts: int = 0
    aborted: int = 0
    feedback_credit: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


_ARITH_RE = re.compile(r"^\s*what\s+is\s+(-?\d+)\s*([-+*])\s*(-?\d+)\s*\??\s*$", re.IGNORECASE)
_ECHO_RE = re.compile(r"^echo: ?(.*)$", re.DOTALL)


def expected_answer(message: str) -> str | None:
    """The reference Engine's deterministic answer to ``message`` (see its README), if known.

    ``what is A + B`` (``-``, ``*``) is computed, ``echo: X`` answers ``X``, anything else
    ``ack:`` plus the first 12 hex digits of the message's SHA-256.
    """
    m = _ARITH_RE.match(message)
    if m:
        a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
        return str(a + b if op == "+" else a - b if op == "-" else a * b)
    m = _ECHO_RE.match(message)
    if m:
        return m.group(1)
    return "ack:" + hashlib.sha256(message.encode("utf-8")).hexdigest()[:12]


def parse_sse(lines: Iterable[str]) -> Iterable[tuple[str, str]]:
    """Yield ``(event, data)`` pairs from Server-Sent-Event lines (``data`` lines joined by ``\\n``)."""
    event, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        else:
            name, _sep, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
    if data:
        yield event, "\n".join(data)


def iter_stream_lines(resp: requests.Response) -> Iterator[str]:
    """Lines of a streamed response as soon as they arrive.

    ``Response.iter_lines`` waits for a whole ``chunk_size`` (or the end) on a stream that is not
    chunk-encoded (the reference Engine streams SSE on a ``Connection: close`` response), which
    would delay every event to the end of the turn. ``read1`` returns what one read delivers.
    """
    read1 = getattr(resp.raw, "read1", None)
    if read1 is None:  # urllib3 < 2: byte by byte is slow but exact (SSE streams are small)
        yield from resp.iter_lines(chunk_size=1, decode_unicode=True)
        return
    buf = b""
    while True:
        chunk = read1(8192)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line.rstrip(b"\r").decode("utf-8", "replace")
    if buf:
        yield buf.rstrip(b"\r").decode("utf-8", "replace")


def _default_message(engine_id: str, n: int) -> str:
    kind = n % 3
    if kind == 0:
        return f"what is {n} + {n % 97 + 3}"
    if kind == 1:
        return f"echo: loadgen {engine_id} turn {n}"
    return f"summarise note {n} for {engine_id}"


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname != "127.0.0.1":
        raise ValueError(f"the load generator only targets http://127.0.0.1 URLs, not {url!r}")


class _StopLoad(Exception):
    pass


class _TurnFailed(Exception):
    """A turn that got no acknowledgement: the failure's ``kind`` (as in the module doc) and detail."""

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(kind, detail)
        self.kind, self.detail = kind, detail


#: The SSE events of a turn the load generator reads (the others are passed over).
_TURN_EVENTS = ("task", "done", "error", "usage")


def _event_payload(event: str, data: str) -> dict[str, Any]:
    """The JSON object of one of a turn's events; :class:`_TurnFailed` ``bad_response`` when it is not one."""
    try:
        payload = json.loads(data)
    except ValueError:
        raise _TurnFailed("bad_response", f"bad {event} event") from None
    if not isinstance(payload, dict):
        raise _TurnFailed("bad_response", f"bad {event} event")
    return payload


def _done_ack(
    payload: dict[str, Any], task_id: str | None, usage: dict[str, Any] | None, message: str, t0: float
) -> TurnAck:
    """The acknowledgement a ``done`` event gives (its answer checked against the expected one, when known);
    :class:`_TurnFailed` ``bad_response`` when it names no task or the task did not complete."""
    done_id = payload.get("task_id") or task_id
    if not done_id or payload.get("status", "completed") != "completed":
        raise _TurnFailed("bad_response", f"done without completed task: {payload!r}")
    answer = payload.get("answer")
    expected = expected_answer(message)
    return TurnAck(
        task_id=str(done_id),
        wall=time.time(),
        mono=time.monotonic(),
        latency=time.monotonic() - t0,
        message=message,
        answer=answer,
        answer_ok=None if expected is None or answer is None else answer == expected,
        usage=usage,
    )


class LoadGenerator:
    """Drive turns and feedback against Engines at a steady rate, from background threads.

    :param engines: objects with ``engine_id``, ``url`` (``http://127.0.0.1:<port>``) and ``api_key``.
    :param rate: turn starts per second per Engine (a late turn delays the next start, no bursts).
    :param feedback_ratio: fraction of acknowledged turns that get a ``POST /feedback`` (0 disables).
    :param request_timeout: seconds a whole turn (or feedback) may take before it counts as ``timeout``.
    :param messages: messages to send, cycled; by default a deterministic mix of arithmetic, echo and
        free text whose answers are checked (``wrong_answers`` in :meth:`stats`).
    :param workers_per_engine: threads per Engine, so a slow turn does not lower the rate.
    :param max_seconds: hard bound on the run; threads stop by themselves after it.
    """

    def __init__(
        self,
        engines: Sequence[EngineLike],
        rate: float = 2.0,
        feedback_ratio: float = 0.25,
        *,
        request_timeout: float = 30,
        messages: Sequence[str] | None = None,
        workers_per_engine: int = 2,
        max_seconds: float = 600,
    ):
        if rate <= 0:
            raise ValueError("rate must be > 0")
        if not 0 <= feedback_ratio <= 1:
            raise ValueError("feedback_ratio must be within [0, 1]")
        if workers_per_engine < 1:
            raise ValueError("workers_per_engine must be >= 1")
        ids = [e.engine_id for e in engines]
        if len(set(ids)) != len(ids):
            raise ValueError("engine ids must be unique")
        for e in engines:
            _check_url(e.url)
        self._engines = list(engines)
        self.rate = rate
        self.feedback_ratio = feedback_ratio
        self.request_timeout = request_timeout
        self.messages = list(messages) if messages else None
        self.workers_per_engine = workers_per_engine
        self.max_seconds = max_seconds
        self._records = {e.engine_id: _Record(e.engine_id, e.url.rstrip("/")) for e in self._engines}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._active: dict[str, requests.Response] = {}
        self._active_lock = threading.Lock()
        self._force_closed: set[str] = set()
        self.started_wall: float | None = None
        self.started_mono: float | None = None
        self.stopped_mono: float | None = None

    def __repr__(self) -> str:
        return f"LoadGenerator(engines={list(self._records)!r}, rate={self.rate}, running={self.running})"

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        """True while any worker thread is alive."""
        return any(t.is_alive() for t in self._threads)

    def start(self) -> LoadGenerator:
        """Start the worker threads (once)."""
        if self._threads:
            raise RuntimeError("a LoadGenerator starts only once")
        self.started_wall = time.time()
        self.started_mono = time.monotonic()
        deadline = self.started_mono + self.max_seconds
        for engine in self._engines:
            for idx in range(self.workers_per_engine):
                t = threading.Thread(
                    target=self._worker,
                    args=(engine, idx, deadline),
                    name=f"loadgen-{engine.engine_id}-{idx}",
                    daemon=True,
                )
                self._threads.append(t)
                t.start()
        return self

    def stop(self, timeout: float = 10) -> bool:
        """Stop and join the workers within ``timeout`` seconds; returns True if all ended.

        In-flight turns may finish until ``timeout``; after it their connections are closed (those
        turns count as ``aborted``, neither acknowledged nor failed) and the join waits 2 s more.
        """
        self._stop.set()
        end = time.monotonic() + max(timeout, 0)
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            with self._active_lock:
                self._force_closed.update(self._active)
                active = list(self._active.values())
            for resp in active:
                try:
                    resp.close()
                except Exception:  # closing a socket from another thread may raise anything
                    pass
            for t in self._threads:
                t.join(2)
        if self.stopped_mono is None:
            self.stopped_mono = time.monotonic()
        return not self.running

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def run_for(self, seconds: float) -> dict[str, Any]:
        """Start, run ``seconds``, stop; returns :meth:`stats`."""
        self.start()
        self._stop.wait(seconds)
        self.stop()
        return self.stats()

    # ------------------------------------------------------------------ workers

    def _message(self, engine_id: str, n: int) -> str:
        if self.messages:
            return self.messages[n % len(self.messages)]
        return _default_message(engine_id, n)

    def _worker(self, engine: EngineLike, idx: int, deadline: float) -> None:
        rec = self._records[engine.engine_id]
        interval = self.workers_per_engine / self.rate
        assert self.started_mono is not None
        next_due = self.started_mono + idx / self.rate
        n = idx
        session = requests.Session()
        session.headers["X-Engine-Key"] = engine.api_key
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= deadline:
                    break
                if next_due > now and self._stop.wait(min(next_due, deadline) - now):
                    break
                if time.monotonic() >= deadline:
                    break
                next_due = max(next_due + interval, time.monotonic())
                message = self._message(engine.engine_id, n)
                n += self.workers_per_engine
                ack = self._turn(session, rec, message)
                if ack is None or self.feedback_ratio <= 0 or self._stop.is_set():
                    continue
                with rec.lock:  # one credit per Engine: exactly floor(acked * ratio) feedbacks
                    rec.feedback_credit += self.feedback_ratio
                    due = rec.feedback_credit >= 1 - 1e-9
                    if due:
                        rec.feedback_credit -= 1
                if due:
                    self._feedback(session, rec, ack.task_id, n)
        finally:
            session.close()

    def _fail(self, rec: _Record, op: str, kind: str, detail: str = "") -> None:
        with rec.lock:
            rec.failures.append(Failure(op, kind, time.time(), time.monotonic(), detail[:200]))

    @staticmethod
    def _http_kind(resp: requests.Response) -> tuple[str, str]:
        code = ""
        msg = ""
        try:
            body = resp.json()
            if isinstance(body, dict):
                code = str(body.get("error") or "")
                msg = str(body.get("message") or "")
        except ValueError:
            pass
        return (f"http_{resp.status_code}:{code}" if code else f"http_{resp.status_code}"), msg

    @staticmethod
    def _exc_kind(exc: requests.RequestException) -> str:
        if isinstance(exc, requests.Timeout):
            return "timeout"
        text = str(exc).lower()
        if isinstance(exc, requests.ConnectionError) and ("refused" in text or "errno 111" in text):
            return "connection_refused"
        return "connection_error"

    def _post(self, session: requests.Session, key: str, url: str, payload: dict[str, Any]) -> requests.Response:
        resp = session.post(url, json=payload, stream=True, timeout=(3.05, self.request_timeout))
        with self._active_lock:
            self._active[key] = resp
        return resp

    def _release(self, key: str, resp: requests.Response | None) -> None:
        with self._active_lock:
            self._active.pop(key, None)
        if resp is not None:
            resp.close()

    def _turn(self, session: requests.Session, rec: _Record, message: str) -> TurnAck | None:
        key = threading.current_thread().name
        with rec.lock:
            rec.attempts += 1
        t0 = time.monotonic()
        resp: requests.Response | None = None
        try:
            resp = self._post(session, key, f"{rec.url}/execute", {"message": message})
            ack = self._read_turn(resp, message, t0)
            with rec.lock:
                rec.acks.append(ack)
            return ack
        except _TurnFailed as exc:
            self._fail(rec, "execute", exc.kind, exc.detail)
            return None
        except (requests.RequestException, AttributeError, OSError, ValueError) as exc:
            # A connection closed by stop() from another thread surfaces as any of these.
            with self._active_lock:
                aborted = key in self._force_closed
            if aborted:
                with rec.lock:
                    rec.aborted += 1
                return None
            kind = self._exc_kind(exc) if isinstance(exc, requests.RequestException) else "connection_error"
            self._fail(rec, "execute", kind, type(exc).__name__)
            return None
        finally:
            self._release(key, resp)

    def _read_turn(self, resp: requests.Response, message: str, t0: float) -> TurnAck:
        """The acknowledgement in the answer to ``POST /execute`` (its ``done`` event).

        :raises _TurnFailed: with the failure's kind, when the turn was refused, failed, timed out or its stream
            ended or went wrong before a completed ``done``.
        """
        if resp.status_code != 200:
            raise _TurnFailed(*self._http_kind(resp))
        task_id: str | None = None
        usage: dict[str, Any] | None = None
        for event, data in parse_sse(iter_stream_lines(resp)):
            if time.monotonic() - t0 > self.request_timeout:
                raise _TurnFailed("timeout", f"turn exceeded {self.request_timeout:g}s")
            if event not in _TURN_EVENTS:
                continue
            payload = _event_payload(event, data)
            if event == "task":
                task_id = payload.get("task_id")
            elif event == "usage":
                usage = payload
            elif event == "error":
                raise _TurnFailed(f"error:{payload.get('error') or 'UNKNOWN'}", str(payload.get("message", "")))
            else:
                return _done_ack(payload, task_id, usage, message, t0)
        raise _TurnFailed("stream_incomplete", f"stream ended without done (task {task_id})")

    def _feedback(self, session: requests.Session, rec: _Record, task_id: str, n: int) -> FeedbackAck | None:
        key = threading.current_thread().name
        with rec.lock:
            rec.feedback_attempts += 1
        resp: requests.Response | None = None
        try:
            resp = self._post(
                session,
                key,
                f"{rec.url}/feedback",
                {"task_id": task_id, "rating": n % 5 + 1, "comment": "engine_testkit load"},
            )
            if resp.status_code != 201:
                kind, msg = self._http_kind(resp)
                self._fail(rec, "feedback", kind, msg)
                return None
            body = resp.json()
            signal_id = body.get("signal_id") if isinstance(body, dict) else None
            if signal_id is None:
                self._fail(rec, "feedback", "bad_response", "201 without signal_id")
                return None
            ack = FeedbackAck(str(signal_id), task_id, time.time(), time.monotonic())
            with rec.lock:
                rec.feedback.append(ack)
            return ack
        except requests.RequestException as exc:
            self._fail(rec, "feedback", self._exc_kind(exc), type(exc).__name__)
            return None
        except (AttributeError, OSError, ValueError) as exc:
            self._fail(
                rec,
                "feedback",
                "bad_response" if isinstance(exc, ValueError) else "connection_error",
                type(exc).__name__,
            )
            return None
        finally:
            self._release(key, resp)

    # ------------------------------------------------------------------ results

    @property
    def engine_ids(self) -> list[str]:
        """The Engines under load, in the order given."""
        return list(self._records)

    def acks(self, engine_id: str) -> list[TurnAck]:
        """A copy of the acknowledged turns of ``engine_id``, in acknowledgement order."""
        rec = self._records[engine_id]
        with rec.lock:
            return list(rec.acks)

    def feedback_acks(self, engine_id: str) -> list[FeedbackAck]:
        """A copy of the acknowledged feedback of ``engine_id``."""
        rec = self._records[engine_id]
        with rec.lock:
            return list(rec.feedback)

    def failures(self, engine_id: str) -> list[Failure]:
        """A copy of the failures of ``engine_id``, in time order."""
        rec = self._records[engine_id]
        with rec.lock:
            return list(rec.failures)

    def ack_counts(self) -> dict[str, int]:
        """How many turns each Engine has acknowledged so far (a mark for :meth:`wait_acked`)."""
        return {engine_id: len(self.acks(engine_id)) for engine_id in self._records}

    def wait_acked(self, turns: int = 1, *, after: dict[str, int] | None = None, timeout: float = 60) -> dict[str, int]:
        """Wait until every Engine has acknowledged ``turns`` more turns than at the mark ``after`` (an earlier
        :meth:`ack_counts`; from the start when ``None``); returns the counts then.

        :raises engine_testkit.waits.WaitTimeout: after ``timeout`` seconds, with the counts last seen.
        """
        mark = after or {}

        def reached() -> dict[str, int] | None:
            counts = self.ack_counts()
            return counts if all(n >= mark.get(e, 0) + turns for e, n in counts.items()) else None

        return wait_until(
            reached,
            timeout,
            f"{turns} more acknowledged turn(s) on every Engine (from {mark or 'the start'})",
            interval=0.1,
            last=lambda: {"acks": self.ack_counts(), "failures": self.stats()["totals"]["failures"]},
        )

    def acked_task_ids(self, engine_id: str) -> set[str]:
        """Every acknowledged task id of ``engine_id``."""
        return {a.task_id for a in self.acks(engine_id)}

    def acked_signal_ids(self, engine_id: str) -> set[str]:
        """Every acknowledged feedback signal id of ``engine_id``."""
        return {f.signal_id for f in self.feedback_acks(engine_id)}

    def acked_before(self, engine_id: str, t: float, clock: str = "monotonic") -> set[str]:
        """Task ids of ``engine_id`` acknowledged at or before ``t``.

        :param clock: ``monotonic`` (``t`` from ``time.monotonic()``) or ``wall`` (``time.time()``).
        """
        if clock not in ("monotonic", "wall"):
            raise ValueError("clock must be monotonic or wall")
        return {a.task_id for a in self.acks(engine_id) if (a.mono if clock == "monotonic" else a.wall) <= t}

    def feedback_before(self, engine_id: str, t: float, clock: str = "monotonic") -> set[str]:
        """Signal ids of ``engine_id`` acknowledged at or before ``t`` (see :meth:`acked_before`)."""
        if clock not in ("monotonic", "wall"):
            raise ValueError("clock must be monotonic or wall")
        return {f.signal_id for f in self.feedback_acks(engine_id) if (f.mono if clock == "monotonic" else f.wall) <= t}

    @staticmethod
    def _percentile(sorted_values: list[float], q: float) -> float | None:
        if not sorted_values:
            return None
        idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
        return sorted_values[idx]

    def _engine_stats(self, rec: _Record) -> dict[str, Any]:
        with rec.lock:
            acks = list(rec.acks)
            failures = list(rec.failures)
            attempts, fb_attempts, fb, aborted = rec.attempts, rec.feedback_attempts, len(rec.feedback), rec.aborted
        lat = sorted(a.latency * 1000 for a in acks)
        exec_fail = [f for f in failures if f.op == "execute"]
        in_tok = sum(int((a.usage or {}).get("input_tokens") or 0) for a in acks)
        hit_tok = sum(int((a.usage or {}).get("cache_hit_tokens") or 0) for a in acks)
        finished = len(acks) + len(exec_fail)
        return {
            "attempts": attempts,
            "acked": len(acks),
            "failed": len(exec_fail),
            "aborted": aborted,
            "error_rate": round(len(exec_fail) / finished, 4) if finished else None,
            "failures": dict(Counter(f.kind for f in exec_fail)),
            "feedback_attempts": fb_attempts,
            "feedback_acked": fb,
            "feedback_failures": dict(Counter(f.kind for f in failures if f.op == "feedback")),
            "wrong_answers": sum(1 for a in acks if a.answer_ok is False),
            "cache_hit_ratio": round(hit_tok / in_tok, 4) if in_tok else None,
            "latency_ms": {
                "p50": self._percentile(lat, 0.5),
                "p95": self._percentile(lat, 0.95),
                "max": lat[-1] if lat else None,
                "mean": round(sum(lat) / len(lat), 1) if lat else None,
            },
        }

    def stats(self) -> dict[str, Any]:
        """A JSON-able summary: per Engine and totals (no secrets)."""
        per = {eid: self._engine_stats(rec) for eid, rec in self._records.items()}
        end = self.stopped_mono if self.stopped_mono is not None else time.monotonic()
        totals: dict[str, Any] = {
            k: sum(p[k] for p in per.values())
            for k in ("attempts", "acked", "failed", "aborted", "feedback_attempts", "feedback_acked", "wrong_answers")
        }
        kinds: Counter[str] = Counter()
        for p in per.values():
            kinds.update(p["failures"])
        totals["failures"] = dict(kinds)
        done = totals["acked"] + totals["failed"]
        totals["error_rate"] = round(totals["failed"] / done, 4) if done else None
        return {
            "duration_s": round(end - self.started_mono, 3) if self.started_mono is not None else 0.0,
            "rate_per_engine": self.rate,
            "engines": per,
            "totals": totals,
        }
