# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""module_utils/_engine_api.py: URL handling, and requests against a real local HTTP server."""

from __future__ import annotations

import json
import socket
import ssl
import time
from http.server import BaseHTTPRequestHandler

import pytest

from ansible_collections.september.engine.plugins.module_utils._engine_api import (
    KEY_HEADER,
    _describe,
    check_tls_options,
    check_url,
    engine_api_argument_spec,
    engine_request,
    engine_url_from_container,
    safe_url,
)
from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError
from engine_testkit.net import free_port


def test_argument_spec_hides_the_key():
    spec = engine_api_argument_spec()
    assert spec["api_key"]["no_log"] is True
    assert spec["validate_certs"]["default"] is True
    assert spec["timeout"]["default"] == 10.0


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:9001", "http://127.0.0.1:9001"),
        ("http://127.0.0.1:9001/", "http://127.0.0.1:9001"),
        (" https://engine.example:8443/prefix/ ", "https://engine.example:8443/prefix"),
        ("http://[::1]:9001", "http://[::1]:9001"),
    ],
)
def test_check_url_accepts_base_urls(given, expected):
    assert check_url(given) == expected


@pytest.mark.parametrize(
    "given",
    [
        "",
        "127.0.0.1:9001",
        "ftp://127.0.0.1/",
        "http://",
        "http://host:99999",
        "http://host:abc",
        "http://h/x?y=1",
        "http://h:0",
    ],
)
def test_check_url_refuses_what_is_not_a_base_url(given):
    with pytest.raises(OptionsError, match="url"):
        check_url(given)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:9001", "http://127.0.0.1:9001"),
        ("https://user:secret@engine:8443/x", "https://engine:8443/x"),
        ("http://user@[::1]/", "http://[::1]/"),
    ],
)
def test_safe_url_drops_credentials(given, expected):
    assert safe_url(given) == expected


def test_check_url_message_never_shows_a_password():
    with pytest.raises(OptionsError) as err:
        check_url("ftp://user:hunter2@host/")
    assert "hunter2" not in err.value.msg


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        (
            {"NetworkSettings": {"Ports": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9001"}]}}},
            "http://127.0.0.1:9001",
        ),
        (
            {"NetworkSettings": {"Ports": {"8000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "9002"}]}}},
            "http://127.0.0.1:9002",
        ),
        ({"NetworkSettings": {"Ports": {"8000/tcp": [{"HostIp": "", "HostPort": "9003"}]}}}, "http://127.0.0.1:9003"),
        ({"NetworkSettings": {"Ports": {"8000/tcp": [{"HostIp": "::", "HostPort": "9004"}]}}}, "http://127.0.0.1:9004"),
        (
            {"NetworkSettings": {"Ports": {"8000/tcp": [{"HostIp": "10.0.0.5", "HostPort": "9005"}]}}},
            "http://10.0.0.5:9005",
        ),
        (
            {"NetworkSettings": {"Ports": {"8000/tcp": [{"HostIp": "fd00::5", "HostPort": "9006"}]}}},
            "http://[fd00::5]:9006",
        ),
        # a stopped container has no live bindings: the configured ones count, when they name a port
        (
            {
                "NetworkSettings": {"Ports": {}},
                "HostConfig": {"PortBindings": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "9007"}]}},
            },
            "http://127.0.0.1:9007",
        ),
        (
            {
                "NetworkSettings": {"Ports": {}},
                "HostConfig": {"PortBindings": {"8000/tcp": [{"HostIp": "", "HostPort": ""}]}},
            },
            None,
        ),
        ({"NetworkSettings": {"Ports": {"9000/tcp": [{"HostIp": "", "HostPort": "9008"}]}}}, None),
        ({"NetworkSettings": {"Ports": {"8000/tcp": None}}}, None),
        ({}, None),
    ],
)
def test_engine_url_from_container(attrs, expected):
    assert engine_url_from_container(attrs) == expected


def test_check_tls_options():
    check_tls_options({"ca_path": "/ca.pem", "validate_certs": True})
    check_tls_options({"ca_path": None, "validate_certs": False})
    with pytest.raises(OptionsError, match="ca_path"):
        check_tls_options({"ca_path": "/ca.pem", "validate_certs": False})


class _Handler(BaseHTTPRequestHandler):
    seen: list[dict] = []  # noqa: RUF012 - shared on purpose: the test reads what the server saw

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _answer(self, status, body, content_type="application/json"):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        _Handler.seen.append({"path": self.path, "key": self.headers.get(KEY_HEADER)})
        if self.path == "/health":
            self._answer(200, {"status": "ok", "uptime_seconds": 1.5, "subsystems": {"database": "ok"}})
        elif self.path == "/sick/health":
            self._answer(503, {"status": "degraded", "subsystems": {"database": "error"}})
        elif self.path == "/text":
            self._answer(200, b"<html>proxy</html>", "text/html")
        elif self.path == "/slow":
            time.sleep(1.5)
            self._answer(200, {"status": "ok"})
        else:
            self._answer(404, {"error": "NOT_FOUND", "message": "no such path"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        _Handler.seen.append({"path": self.path, "key": self.headers.get(KEY_HEADER), "body": body})
        self._answer(201, {"echo": body})


@pytest.fixture(scope="module")
def server(serve_http):
    return serve_http(_Handler)


def test_request_ok_without_key(server):
    _Handler.seen.clear()
    response = engine_request("GET", server + "/health")
    assert response.status == 200 and response.answered
    assert response.data["status"] == "ok"
    assert _Handler.seen[-1]["key"] is None


def test_request_sends_key_and_body(server):
    _Handler.seen.clear()
    response = engine_request("POST", server + "/feedback", api_key="s3cret-key", body={"rating": 5})
    assert response.status == 201
    assert response.data == {"echo": {"rating": 5}}
    assert _Handler.seen[-1]["key"] == "s3cret-key"


@pytest.mark.parametrize(("path", "status"), [("/sick/health", 503), ("/nowhere", 404)])
def test_request_never_raises_on_http_errors(server, path, status):
    response = engine_request("GET", server + path)
    assert response.status == status
    assert isinstance(response.data, dict)
    assert response.error is None


def test_request_body_that_is_not_json(server):
    response = engine_request("GET", server + "/text")
    assert response.status == 200 and response.data is None


def test_request_refused():
    response = engine_request("GET", f"http://127.0.0.1:{free_port()}/health", timeout=2)
    assert response.status is None and not response.answered
    assert response.error_kind == "refused"
    assert "nothing listens" in response.error


def test_request_timeout(server):
    response = engine_request("GET", server + "/slow", timeout=0.3)
    assert response.status is None
    assert response.error_kind == "timeout"


def test_request_tls_to_plain_http(server):
    response = engine_request("GET", server.replace("http://", "https://") + "/health", timeout=2)
    assert response.status is None
    assert response.error_kind == "tls"
    assert "http://" in response.error


def test_request_error_hides_credentials():
    response = engine_request("GET", f"http://user:hunter2@127.0.0.1:{free_port()}/health", timeout=2)
    assert "hunter2" not in response.error


def _cert_error() -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = "self-signed certificate"
    return exc


@pytest.mark.parametrize(
    ("exc", "kind", "words"),
    [
        (_cert_error(), "tls", "certificate verification failed for https://e.example: self-signed certificate"),
        (ssl.SSLError(1, "wrong version number"), "tls", "Does the Engine serve plain HTTP?"),
        (TimeoutError("timed out"), "timeout", "no answer from https://e.example within the timeout"),
        (ConnectionRefusedError(111, "Connection refused"), "refused", "nothing listens there"),
        (socket.gaierror(-2, "Name or service not known"), "dns", "cannot resolve the host of https://e.example"),
        (OSError(101, "Network is unreachable"), "connection", "cannot talk to https://e.example"),
        (ValueError("odd"), "connection", "request to https://e.example failed: odd"),
    ],
)
def test_describe_names_what_went_wrong_before_an_answer(exc, kind, words):
    assert _describe(exc, "https://e.example")[0] == kind
    assert words in _describe(exc, "https://e.example")[1]


def test_describe_reads_the_reason_of_a_url_error():
    class URLErrorLike(OSError):
        reason = ConnectionRefusedError(111, "Connection refused")

    assert _describe(URLErrorLike(), "http://e.example")[0] == "refused"
