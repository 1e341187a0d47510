# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Engine's process: HTTP API, start-up (migrations), flaws and the SIGTERM drain.

Start-up order matters and is observable: the HTTP server listens first (``/health`` answers
503 ``starting``), then the brain is migrated, then the Engine turns healthy (or, depending on
the release's flaw, degraded or dead). The main thread owns start-up and shutdown; request
threads share only :class:`Engine`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import re
import signal
import sqlite3
import sys
import threading
import time
import traceback
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit

from . import agent, brain, memory
from .config import Config, ConfigError
from .logs import log, utc_now

MAX_BODY_BYTES = 256 * 1024 * 1024
MAX_MESSAGE_CHARS = 32_000
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_ROUTES = {
    "/health": ("GET",),
    "/execute": ("POST",),
    "/feedback": ("POST",),
    "/memory/export": ("GET",),
    "/memory/import": ("POST",),
}


def _exit(code: int) -> NoReturn:
    """Leave at once with ``code``. ``os._exit`` because request threads may still be alive (a
    drain that timed out, idle keep-alive connections); everything durable is already committed."""
    sys.stdout.flush()
    os._exit(code)


class Engine:
    """Process-wide state shared by the request threads."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started = time.monotonic()
        self.phase = "starting"  # starting -> ok | degraded (health_503)
        # Set from the signal handler: plain attribute assignments only (a handler that took a
        # lock could deadlock against the main thread holding it).
        self.draining = False
        self.term_signal: int | None = None
        self.features = agent.Features(memory_tags=False, turn_metrics=False, memory_v3=False)
        self._rng = random.Random(config.seed)
        self._rng_lock = threading.Lock()
        self._turns = threading.Condition()
        self._in_flight = 0
        # A connection held open for the life of the process, as a long-running Engine does: the
        # -wal and -shm files stay next to the brain while it runs (closing the last connection
        # would checkpoint and delete them). Used by the main thread only.
        self.keeper: sqlite3.Connection | None = None

    # --- state -----------------------------------------------------------------------------------

    def llm_outage(self) -> bool:
        return os.path.exists(self.config.llm_outage_file)

    def plan(self, message: str) -> agent.TurnPlan:
        with self._rng_lock:
            return agent.plan_turn(message, self.config.turn_latency_ms, self.config.flaw, self._rng)

    def begin_turn(self) -> bool:
        """Count a new turn in, unless draining (the check and the count are atomic)."""
        with self._turns:
            if self.draining:
                return False
            self._in_flight += 1
            return True

    def end_turn(self) -> None:
        with self._turns:
            self._in_flight -= 1
            self._turns.notify_all()

    def in_flight(self) -> int:
        with self._turns:
            return self._in_flight

    def wait_idle(self, timeout: float) -> int:
        """Wait until no turn is in flight or ``timeout`` passed; returns the turns still running."""
        with self._turns:
            self._turns.wait_for(lambda: self._in_flight == 0, timeout=timeout)
            return self._in_flight

    # --- health ----------------------------------------------------------------------------------

    def health(self) -> tuple[int, dict[str, Any]]:
        subsystems = {"database": "ok", "llm_provider": "ok", "asset_directory": "ok"}
        if self.phase == "starting":
            subsystems["database"] = "starting"
        elif self.phase == "degraded":
            subsystems["database"] = "error"
        else:
            try:
                with brain.opened(self.config.db_path, readonly=True) as conn:
                    conn.execute(f"SELECT count(*) FROM {brain.MIGRATIONS_TABLE}").fetchone()
            except sqlite3.Error:
                subsystems["database"] = "error"
        if self.llm_outage():
            subsystems["llm_provider"] = "error"
        if not os.access(os.path.dirname(os.path.abspath(self.config.db_path)), os.W_OK):
            subsystems["asset_directory"] = "error"

        if self.draining:
            status = "draining"
        elif self.phase == "starting":
            status = "starting"
        elif "error" in subsystems.values():
            status = "degraded"
        else:
            status = "ok"
        body = {
            "status": status,
            "uptime_seconds": round(time.monotonic() - self.started, 3),
            "subsystems": subsystems,
        }
        return (200 if status == "ok" else 503), body

    def execute_refusal(self) -> tuple[int, str, str] | None:
        """Why a new turn cannot start now, as (HTTP status, error code, message), or None."""
        if self.draining:
            return 503, "DRAINING", "the engine is shutting down and accepts no new turns"
        if self.phase == "starting":
            return 503, "UNAVAILABLE", "the engine is starting"
        if self.phase == "degraded":
            return 503, "UNAVAILABLE", "the engine is degraded: database subsystem unavailable"
        if self.llm_outage():
            return 502, "LLM_PROVIDER_ERROR", "the LLM provider is unavailable"
        return None


class RequestError(Exception):
    """An error answered as ``{"error": code, "message": message}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.close = close


class EngineHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], engine: Engine) -> None:
        self.engine = engine
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Errors outside a request handler's own try (e.g. a reset while reading the request line).
        exc = sys.exc_info()[1]
        log("WARNING", "http", "connection error", extra={"error": type(exc).__name__, "detail": str(exc)})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SeptemberEngine"
    sys_version = ""
    timeout = 120  # seconds an idle keep-alive connection keeps its thread
    server: EngineHTTPServer

    request_id = ""
    task_id: str | None = None
    status_sent: int | None = None
    client_gone = False

    # --- plumbing --------------------------------------------------------------------------------

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the base class's stderr access log: every request gets a JSON ``http`` line."""

    def send_response(self, code: int, message: str | None = None) -> None:
        self.status_sent = code
        super().send_response(code, message)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors the base class raises itself (malformed request line, unknown method): JSON too."""
        try:
            name = HTTPStatus(code).name
        except ValueError:
            name = "ERROR"
        self.close_connection = True
        self._send_json(code, {"error": name, "message": message or explain or name.lower()}, close=True)

    def _send_json(self, status: int, payload: Any, close: bool = False) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", self.request_id or "-")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, close: bool = False) -> None:
        self._send_json(status, {"error": code, "message": message}, close=close)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        raw = self.headers.get("Content-Length")
        if not raw:
            return b""
        try:
            length = int(raw)
        except ValueError as exc:
            raise RequestError(400, "BAD_REQUEST", "invalid Content-Length", close=True) from exc
        if length < 0:
            raise RequestError(400, "BAD_REQUEST", "invalid Content-Length", close=True)
        if length > MAX_BODY_BYTES:
            raise RequestError(413, "PAYLOAD_TOO_LARGE", f"body larger than {MAX_BODY_BYTES} bytes", close=True)
        data = self.rfile.read(length)
        if len(data) != length:
            raise RequestError(400, "BAD_REQUEST", "body shorter than Content-Length", close=True)
        return data

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise RequestError(400, "BAD_REQUEST", "malformed chunked body", close=True) from exc
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields, ignored
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise RequestError(413, "PAYLOAD_TOO_LARGE", f"body larger than {MAX_BODY_BYTES} bytes", close=True)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)  # the CRLF after each chunk

    def _json_body(self, body: bytes, code: str = "BAD_REQUEST") -> Any:
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise RequestError(400, code, f"the body must be JSON: {exc}") from exc

    def _check_key(self) -> None:
        key = self.headers.get("X-Engine-Key")
        # A refused request's body is never read, so the connection cannot be reused after a 401.
        if not key:
            raise RequestError(401, "INVALID_KEY", "missing X-Engine-Key header", close=True)
        # Compare digests, in constant time: neither the key nor its length leaks through timing.
        offered = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
        if not hmac.compare_digest(offered, self.server.engine.config.key_sha256):
            raise RequestError(401, "INVALID_KEY", "invalid X-Engine-Key", close=True)

    # --- dispatch --------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        offered_id = self.headers.get("X-Request-Id", "")
        self.request_id = offered_id if _REQUEST_ID.match(offered_id) else uuid.uuid4().hex
        self.task_id = None
        self.status_sent = None
        self.client_gone = False
        started = time.monotonic()
        path = unquote(urlsplit(self.path).path)
        try:
            if path != "/health":
                self._check_key()  # before reading a body: no unauthenticated uploads
            self._route(path, self._read_body())
        except RequestError as exc:
            self._error(exc.status, exc.code, exc.message, close=exc.close)
        except sqlite3.Error as exc:
            log("ERROR", "http", f"database error: {exc}", request_id=self.request_id, task_id=self.task_id,
                extra={"error": "DATABASE_ERROR", "path": path})
            if self.status_sent is None:
                self._error(500, "DATABASE_ERROR", f"database error: {exc}")
            else:
                self.close_connection = True
        except OSError as exc:
            # The client went away mid-request; nothing left to answer.
            self.close_connection = True
            log("WARNING", "http", "client connection lost", request_id=self.request_id, task_id=self.task_id,
                extra={"error": type(exc).__name__, "path": path})
        except Exception as exc:
            # The one catch-all: a bug in a handler becomes a 500 and a log line, never a dead thread.
            log("ERROR", "http", f"unhandled error: {type(exc).__name__}: {exc}", request_id=self.request_id,
                task_id=self.task_id, extra={"error": "INTERNAL_ERROR", "traceback": traceback.format_exc()})
            if self.status_sent is None:
                self._error(500, "INTERNAL_ERROR", "internal error", close=True)
            else:
                self.close_connection = True
        finally:
            log("INFO", "http", f"{self.command} {path} {self.status_sent}", request_id=self.request_id,
                task_id=self.task_id,
                extra={"method": self.command, "path": path, "status": self.status_sent,
                       "duration_ms": round((time.monotonic() - started) * 1000, 1)})

    def _route(self, path: str, body: bytes) -> None:
        method = self.command
        if path == "/health":
            if method != "GET":
                raise RequestError(405, "METHOD_NOT_ALLOWED", "use GET /health")
            status, payload = self.server.engine.health()
            self._send_json(status, payload)
            return

        allowed = ("GET",) if path.startswith("/tasks/") else _ROUTES.get(path)
        if allowed is None:
            raise RequestError(404, "NOT_FOUND", f"no such endpoint: {path}")
        if method not in allowed:
            raise RequestError(405, "METHOD_NOT_ALLOWED", f"use {allowed[0]} {path}")
        if self.server.engine.phase == "starting":
            raise RequestError(503, "UNAVAILABLE", "the engine is starting")

        if path == "/execute":
            self._execute(body)
        elif path.startswith("/tasks/"):
            self._get_task(path[len("/tasks/"):])
        elif path == "/feedback":
            self._feedback(body)
        elif path == "/memory/export":
            self._send_json(200, memory.export_memory(self.server.engine.config.db_path))
        else:
            self._import(body)

    # --- endpoints -------------------------------------------------------------------------------

    def _get_task(self, task_id: str) -> None:
        with brain.opened(self.server.engine.config.db_path) as conn:
            cursor = conn.execute("SELECT * FROM tasks WHERE task_id = ?", (task_id,))
            row = cursor.fetchone()
            names = [d[0] for d in cursor.description]
        if row is None:
            raise RequestError(404, "TASK_NOT_FOUND", f"no task {task_id}")
        self.task_id = task_id
        self._send_json(200, dict(zip(names, row, strict=True)))

    def _feedback(self, body: bytes) -> None:
        request = self._json_body(body)
        if not isinstance(request, dict):
            raise RequestError(400, "BAD_REQUEST", "the body must be a JSON object")
        task_id, rating, comment = request.get("task_id"), request.get("rating"), request.get("comment")
        if not isinstance(task_id, str) or not task_id:
            raise RequestError(400, "BAD_REQUEST", "task_id (string) is required")
        if not isinstance(rating, int) or isinstance(rating, bool):
            raise RequestError(400, "BAD_REQUEST", "rating (integer) is required")
        if comment is not None and not isinstance(comment, str):
            raise RequestError(400, "BAD_REQUEST", "comment must be a string")
        self.task_id = task_id
        signal_id = str(uuid.uuid4())
        with brain.opened(self.server.engine.config.db_path) as conn, brain.transaction(conn):
            if conn.execute("SELECT 1 FROM tasks WHERE task_id = ?", (task_id,)).fetchone() is None:
                raise RequestError(404, "TASK_NOT_FOUND", f"no task {task_id}")
            conn.execute(
                "INSERT INTO learning_signals (signal_id, task_id, rating, comment, created_at) VALUES (?, ?, ?, ?, ?)",
                (signal_id, task_id, rating, comment, utc_now()),
            )
        self._send_json(201, {"signal_id": signal_id, "task_id": task_id})

    def _import(self, body: bytes) -> None:
        bundle = self._json_body(body, code="BAD_BUNDLE")
        try:
            result = memory.import_memory(self.server.engine.config.db_path, bundle)
        except memory.BadBundle as exc:
            raise RequestError(400, "BAD_BUNDLE", str(exc)) from exc
        except (sqlite3.IntegrityError, sqlite3.InterfaceError) as exc:
            raise RequestError(400, "BAD_BUNDLE", f"rows do not fit the brain's schema: {exc}") from exc
        log("INFO", "memory", "memory bundle imported", request_id=self.request_id, extra=result)
        self._send_json(200, result)

    # --- the agent turn (SSE) --------------------------------------------------------------------

    def _sse(self, event: str, data: dict[str, Any]) -> None:
        """Send one event and flush it. A client that went away does not stop the turn: it still
        completes and commits (a turn in flight is finished, not abandoned)."""
        if self.client_gone:
            return
        try:
            self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()
        except OSError:
            self.client_gone = True

    def _execute(self, body: bytes) -> None:
        engine = self.server.engine
        refusal = engine.execute_refusal()
        if refusal:
            raise RequestError(*refusal)
        request = self._json_body(body)
        if not isinstance(request, dict):
            raise RequestError(400, "BAD_REQUEST", "the body must be a JSON object")
        message = request.get("message")
        if not isinstance(message, str) or not message.strip():
            raise RequestError(400, "BAD_REQUEST", "message (non-empty string) is required")
        if len(message) > MAX_MESSAGE_CHARS:
            raise RequestError(400, "BAD_REQUEST", f"message longer than {MAX_MESSAGE_CHARS} characters")
        conversation_id = request.get("conversation_id")
        if conversation_id is None:
            conversation_id = str(uuid.uuid4())
        elif not isinstance(conversation_id, str) or not 0 < len(conversation_id) <= 200:
            raise RequestError(400, "BAD_REQUEST", "conversation_id must be a string of 1-200 characters")

        if not engine.begin_turn():
            raise RequestError(503, "DRAINING", "the engine is shutting down and accepts no new turns")
        try:
            self._run_turn(message, conversation_id, body.decode("utf-8"))
        finally:
            engine.end_turn()

    def _run_turn(self, message: str, conversation_id: str, request_body: str) -> None:
        engine = self.server.engine
        db_path = engine.config.db_path
        task_id = str(uuid.uuid4())
        self.task_id = task_id
        started = time.monotonic()
        started_at = utc_now()
        plan = engine.plan(message)

        try:
            with brain.opened(db_path) as conn:
                agent.insert_running_task(conn, task_id, conversation_id, message, started_at)
        except sqlite3.Error as exc:
            log("ERROR", "agent", f"could not record the task: {exc}", request_id=self.request_id, task_id=task_id,
                extra={"error": "DATABASE_ERROR"})
            raise RequestError(500, "DATABASE_ERROR", "could not record the task") from exc

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Request-Id", self.request_id)
        self.send_header("Connection", "close")  # the stream ends when the connection closes
        self.end_headers()
        self.close_connection = True
        self._sse("task", {"task_id": task_id, "conversation_id": conversation_id})

        # Tokens spread over the turn: one interval before each token and one before the end.
        streamed = plan.tokens if plan.fail_after is None else plan.tokens[:plan.fail_after]
        interval = plan.duration_s / (len(plan.tokens) + 1)
        for text in streamed:
            time.sleep(interval)
            self._sse("token", {"text": text})
        # A failing turn stalls (a tool timing out) for the rest of its duration.
        time.sleep(interval * (len(plan.tokens) - len(streamed) + 1))

        status, error_code, error_message = "completed", None, None
        if plan.error_code:
            status, error_code, error_message = "failed", plan.error_code, plan.error_message
        elif engine.llm_outage():  # the provider went down during the turn
            status, error_code, error_message = "failed", "LLM_PROVIDER_ERROR", "the LLM provider is unavailable"
        if engine.config.flaw == "degraded_quality":
            log("WARNING", "llm", "prompt cache miss: system prompt changed", request_id=self.request_id,
                task_id=task_id, extra={"input_tokens": plan.input_tokens, "cache_hit_tokens": plan.cache_hit_tokens})
        self._sse("usage", {"input_tokens": plan.input_tokens, "output_tokens": plan.output_tokens,
                            "cache_hit_tokens": plan.cache_hit_tokens})

        latency_ms = int((time.monotonic() - started) * 1000)
        record = agent.TurnRecord(
            task_id=task_id, conversation_id=conversation_id, message=message, request_body=request_body,
            plan=plan, status=status, error_code=error_code, error_message=error_message,
            started_at=started_at, finished_at=utc_now(), latency_ms=latency_ms,
        )
        try:
            with brain.opened(db_path) as conn, brain.transaction(conn):
                agent.record_turn(conn, engine.features, record)
        except sqlite3.Error as exc:
            status, error_code, error_message = "failed", "DATABASE_ERROR", f"could not record the turn: {exc}"
            self._mark_failed(task_id, latency_ms)

        usage = {"input_tokens": plan.input_tokens, "output_tokens": plan.output_tokens,
                 "cache_hit_tokens": plan.cache_hit_tokens}
        if status == "completed":
            # Only now, after COMMIT: a done event acknowledges the write.
            self._sse("done", {"task_id": task_id, "status": "completed", "answer": plan.answer})
            log("INFO", "agent", "turn completed", request_id=self.request_id, task_id=task_id,
                extra={"conversation_id": conversation_id, "skill": plan.skill, "latency_ms": latency_ms, **usage})
        else:
            self._sse("error", {"task_id": task_id, "error": error_code, "message": error_message})
            log("ERROR", "agent", "turn failed", request_id=self.request_id, task_id=task_id,
                extra={"conversation_id": conversation_id, "skill": plan.skill, "latency_ms": latency_ms,
                       "error": error_code, "detail": error_message, **usage})

    def _mark_failed(self, task_id: str, latency_ms: int) -> None:
        """Best effort after a failed turn transaction: the task row should not stay ``running``."""
        try:
            with brain.opened(self.server.engine.config.db_path) as conn:
                conn.execute(
                    "UPDATE tasks SET status = 'failed', error = 'DATABASE_ERROR', latency_ms = ?, completed_at = ?"
                    " WHERE task_id = ?",
                    (latency_ms, utc_now(), task_id),
                )
        except sqlite3.Error as exc:
            log("ERROR", "agent", f"could not mark the task failed: {exc}", request_id=self.request_id,
                task_id=task_id, extra={"error": "DATABASE_ERROR"})


# --- process life cycle --------------------------------------------------------------------------


def _start_up(engine: Engine) -> None:
    """Migrate the brain and apply the release's flaw. Exits the process on a fatal condition."""
    config = engine.config
    try:
        brain.open_brain(config.db_path)
        engine.keeper = brain.connect(config.db_path)
        shipped = brain.shipped_migrations(config.migrations_dir)
        versions = brain.migrate(config.db_path, shipped)
    except brain.MigrationRequired as exc:
        newest = shipped[-1].version if shipped else None
        log("ERROR", "migrations",
            f"MIGRATION_REQUIRED: the brain holds migrations {', '.join(exc.unknown)} that version {config.version} "
            f"does not ship (newest shipped: {newest}); run a newer image or restore the pre-upgrade snapshot",
            extra={"error": "MIGRATION_REQUIRED", "unknown_migrations": exc.unknown, "shipped_max": newest,
                   "version": config.version})
        _exit(3)
    except (brain.MigrationError, sqlite3.Error, OSError) as exc:
        log("CRITICAL", "migrations", f"start-up failed: {exc}", extra={"error": "STARTUP_FAILED"})
        _exit(1)
    log("INFO", "migrations", "brain schema up to date",
        extra={"applied": versions, "latest": versions[-1] if versions else None})

    if config.flaw == "crash_after_migrate":
        # 2.5.0's bug: boot dies right after the migration; a restart policy makes it a crash loop.
        log("CRITICAL", "engine", "unhandled error during boot: KeyError: 'turn_metrics_retention_days'",
            extra={"error": "BOOT_FAILED", "version": config.version})
        _exit(1)

    engine.features = agent.Features.from_versions(versions)
    try:
        with brain.opened(config.db_path) as conn:
            interrupted = agent.interrupt_running_tasks(conn, utc_now())
    except sqlite3.Error as exc:
        log("CRITICAL", "engine", f"start-up failed: {exc}", extra={"error": "STARTUP_FAILED"})
        _exit(1)
    if interrupted:
        log("WARNING", "engine", f"{interrupted} turns were interrupted by the previous shutdown",
            extra={"interrupted_tasks": interrupted})

    if config.flaw == "health_503":
        # 2.4.1's bug: a self-check that can never pass on the migrated schema.
        engine.phase = "degraded"
        log("ERROR", "health", "database self-check failed: expected index idx_memory_tags_episode is missing",
            extra={"error": "SELF_CHECK_FAILED", "subsystem": "database"})
        log("WARNING", "engine", "engine started degraded", extra={"version": config.version, "phase": engine.phase})
    else:
        engine.phase = "ok"
        log("INFO", "engine", "engine ready", extra={"version": config.version, "phase": engine.phase})


def _drain_and_exit(engine: Engine, server: EngineHTTPServer) -> NoReturn:
    config = engine.config
    signame = signal.Signals(engine.term_signal).name if engine.term_signal else "signal"
    log("INFO", "engine", f"{signame} received: draining",
        extra={"in_flight": engine.in_flight(), "drain_timeout": config.drain_timeout})
    left = engine.wait_idle(config.drain_timeout)
    if left:
        log("WARNING", "engine", f"drain timed out: {left} turns abandoned", extra={"abandoned": left})
    else:
        log("INFO", "engine", "drain complete: no turn in flight")
    wal_path = config.db_path + "-wal"
    wal_bytes = os.path.getsize(wal_path) if os.path.exists(wal_path) else 0
    keeper = engine.keeper or brain.connect(config.db_path)
    try:
        busy, wal_pages, checkpointed = brain.checkpoint(keeper)
        log("INFO", "engine", "WAL checkpointed (TRUNCATE)",
            extra={"wal_bytes_before": wal_bytes, "busy": busy, "wal_pages": wal_pages,
                   "checkpointed_pages": checkpointed})
    except sqlite3.Error as exc:
        log("ERROR", "engine", f"WAL checkpoint failed: {exc}", extra={"error": "CHECKPOINT_FAILED"})
    finally:
        keeper.close()
    server.shutdown()
    server.server_close()
    log("INFO", "engine", "engine stopped", extra={"exit_code": 0})
    _exit(0)


def main() -> None:
    try:
        config = Config.from_env()
    except ConfigError as exc:
        log("ERROR", "engine", f"configuration error: {exc}", extra={"error": "CONFIG_ERROR"})
        _exit(2)

    engine = Engine(config)

    def on_signal(signum: int, _frame: Any) -> None:
        engine.term_signal = signum
        engine.draining = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        server = EngineHTTPServer(("0.0.0.0", config.port), engine)
    except OSError as exc:
        log("CRITICAL", "engine", f"cannot listen on port {config.port}: {exc}", extra={"error": "LISTEN_FAILED"})
        _exit(1)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True).start()
    log("INFO", "engine", "engine starting",
        extra={"version": config.version, "flaw": config.flaw, "port": config.port, "db_path": config.db_path,
               "migrations_dir": config.migrations_dir, "turn_latency_ms": config.turn_latency_ms})

    _start_up(engine)

    while not engine.draining:
        time.sleep(0.1)
    _drain_and_exit(engine, server)


if __name__ == "__main__":
    main()
