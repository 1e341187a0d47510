# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A Docker API that fails on demand: the real daemon behind a relay on ``tcp://127.0.0.1:<port>``.

The modules (and Compose, through ``DOCKER_HOST``) talk to the relay by ``docker_host``; every request goes to
the local daemon's socket and its answer comes back, except those a test armed a fault for: they get HTTP 500
``{"message": "injected fault ..."}``, after the daemon did the work (``after=True``: the worst case, a
container stopped while the caller is told the stop failed) or instead of it. Only plain request/response
calls are relayed (no attach, no streamed logs or events), which is all a switch uses.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DOCKER_SOCKET = "/var/run/docker.sock"
#: ``POST /v1.41/containers/<id>/stop`` with or without ``?t=``.
STOP = r"^/v[\d.]+/containers/[^/]+/stop(\?|$)"


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=600)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.unix_path)


class DockerFaultProxy:
    """``with DockerFaultProxy() as proxy: proxy.fail("POST", STOP)`` then give modules ``docker_host=proxy.url``."""

    def __init__(self, socket_path: str = DOCKER_SOCKET):
        self.socket_path = socket_path
        self.faults: list[dict] = []
        self.seen: list[tuple[str, str, bool]] = []
        self._lock = threading.Lock()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args) -> None:
                pass

            def handle_request(self) -> None:
                relay.relay(self)

            do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = handle_request

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"tcp://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="docker-fault-proxy", daemon=True)

    def fail(self, method: str, pattern: str, *, after: bool = True, times: int = 1) -> None:
        """Answer the next ``times`` requests ``method`` on a path matching ``pattern`` with HTTP 500."""
        with self._lock:
            self.faults.append({"method": method, "re": re.compile(pattern), "after": after, "left": times})

    def calls(self, method: str, pattern: str) -> list[tuple[str, bool]]:
        """(path, failed) of the requests seen so far that match."""
        rx = re.compile(pattern)
        return [(path, failed) for m, path, failed in self.seen if m == method and rx.search(path)]

    def _take_fault(self, method: str, path: str) -> dict | None:
        with self._lock:
            for fault in self.faults:
                if fault["left"] and fault["method"] == method and fault["re"].search(path):
                    fault["left"] -= 1
                    return fault
        return None

    def relay(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        fault = self._take_fault(handler.command, handler.path)
        self.seen.append((handler.command, handler.path, fault is not None))
        status, headers, data = 500, [], b""
        if fault is None or fault["after"]:
            conn = _UnixConnection(self.socket_path)
            try:
                forward = {k: v for k, v in handler.headers.items() if k.lower() != "connection"}
                conn.request(handler.command, handler.path, body=body, headers=forward)
                resp = conn.getresponse()
                status, headers, data = resp.status, resp.getheaders(), resp.read()
            finally:
                conn.close()
        if fault is not None:
            status, headers = 500, [("Content-Type", "application/json")]
            data = json.dumps({"message": f"injected fault on {handler.command} {handler.path}"}).encode()
        handler.send_response(status)
        for key, value in headers:
            if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    def __enter__(self) -> DockerFaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.server.shutdown()
        self.server.server_close()
