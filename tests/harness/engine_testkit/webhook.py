# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A local Slack-compatible webhook receiver: records every JSON message POSTed to it.

    with WebhookReceiver() as hook:
        run the playbook with -e engine_webhook_url=<hook.url>
        hook.messages  # the decoded bodies, in the order they came

The path holds a random token, like Slack's: a test can then check that the URL never shows in any output.
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class WebhookReceiver:
    """A threaded HTTP server on 127.0.0.1 (a free port) that answers 200 to every POST with a JSON body."""

    def __init__(self, status: int = 200):
        self.status = status
        self.token = secrets.token_hex(16)
        self.messages: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw.decode("utf-8"))
                except ValueError:
                    body = None
                with receiver._lock:
                    receiver.requests.append(
                        {
                            "path": self.path,
                            "content_type": self.headers.get("Content-Type"),
                            "raw": raw.decode("utf-8", "replace"),
                            "body": body,
                        }
                    )
                    if isinstance(body, dict) and self.path == f"/hooks/{receiver.token}":
                        receiver.messages.append(body)
                self.send_response(receiver.status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:  # quiet
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks/{self.token}"

    def texts(self, event: str | None = None) -> list[str]:
        """The ``text`` of every message (of one ``event`` when given)."""
        with self._lock:
            return [m.get("text", "") for m in self.messages if event is None or m.get("event") == event]

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
