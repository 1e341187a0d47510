# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The test kit's own pure helpers (no Docker): ``pytest tests/harness/tests --ignore=tests/harness/tests/system``, with
``PYTHONPATH=tests/harness`` (the test kit's Docker tests, ``tests/harness/tests/system``, run in ``make system``)."""

from __future__ import annotations

import http.server
import importlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine_testkit.net import free_port, port_free
from engine_testkit.waits import WaitTimeout, health, stops_pending, wait_healthy, wait_stops_done, wait_until

HARNESS = Path(__file__).resolve().parents[1]


def test_the_package_imports_without_docker():
    """Importing engine_testkit and its pure helpers loads neither the Docker SDK nor requests."""
    code = (
        "import sys, engine_testkit, engine_testkit.net, engine_testkit.waits, engine_testkit.settings\n"
        "from engine_testkit import free_port, wait_until\n"
        "print(sorted(m for m in ('docker', 'requests') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env={"PYTHONPATH": str(HARNESS)}, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_public_names_resolve_lazily():
    package = importlib.import_module("engine_testkit")
    for name in package.__all__:
        if name not in ("Engine", "Fleet", "FleetError", "ImageMissingError", "UnhealthyError", "sweep", "sweep_all"):
            assert getattr(package, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        getattr(package, "nothing_here")  # noqa: B009


def test_free_port_is_free_and_in_range():
    assert port_free(free_port())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert not port_free(port)
        assert free_port(port, port + 5) != port
        assert free_port(port - 5, port, descending=True) != port
        with pytest.raises(AssertionError, match=f"no free port in {port}-{port}"):
            free_port(port, port)
    with pytest.raises(AssertionError, match="no free port"):
        free_port(port + 1, port + 1, exclude={port + 1})


def test_wait_until_returns_the_value_or_says_what_it_waited_for():
    calls = iter([0, None, "", "done"])
    assert wait_until(lambda: next(calls), 5, "the fourth call", interval=0.01) == "done"
    with pytest.raises(WaitTimeout, match=r"timed out after 0.05s waiting for nothing; last seen: \{'n': 1\}"):
        wait_until(lambda: False, 0.05, "nothing", interval=0.01, last=lambda: {"n": 1})
    assert issubclass(WaitTimeout, AssertionError)


class _Health(http.server.BaseHTTPRequestHandler):
    status = 503

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = b'{"status": "ok"}' if _Health.status == 200 else b'{"status": "degraded"}'
        self.send_response(_Health.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def engine_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_wait_healthy_needs_200_and_ok(engine_url):
    _Health.status = 503
    assert health(engine_url) == (503, {"status": "degraded"})
    with pytest.raises(WaitTimeout, match=r"to be healthy; last seen: \(503, \{'status': 'degraded'\}\)"):
        wait_healthy(engine_url, 0.3)
    _Health.status = 200
    wait_healthy(engine_url + "/", 5)
    assert health(f"http://127.0.0.1:{free_port()}") == (None, None)
    with pytest.raises(TypeError):
        wait_healthy(12, 1)


def _event(action: str, cid: str, **attrs: str) -> dict:
    return {"Type": "container", "Action": action, "Actor": {"ID": cid, "Attributes": {"name": cid, **attrs}}}


class _Events:
    """A Docker client's ``events`` over a list that a test grows: what the daemon logged so far."""

    def __init__(self, *events: dict) -> None:
        self.log = list(events)
        self.asked: list[dict] = []

    def events(self, **kwargs):
        self.asked.append(kwargs)
        return iter(list(self.log))


def test_stops_pending_pairs_each_sigterm_with_its_end():
    client = _Events(
        _event("kill", "a", signal="15"), _event("kill", "b", signal="9"), _event("kill", "c", signal="15"),
        _event("die", "c"), _event("kill", "d", signal="15"), _event("die", "d"), _event("start", "d"),
        _event("kill", "d", signal="15"),
    )
    assert stops_pending(client, 1000.9, "io.september.fleet=f") == {"a": "a", "d": "d"}
    asked = client.asked[0]
    assert asked["since"] == 999 and asked["filters"] == {"type": "container", "label": "io.september.fleet=f"}
    client.log += [_event("destroy", "a"), _event("die", "d")]
    wait_stops_done(client, 1000, "io.september.fleet=f", timeout=1)
    client.log.append(_event("kill", "e", signal="15"))
    with pytest.raises(WaitTimeout, match=r"to end; last seen: \{'e': 'e'\}"):
        wait_stops_done(client, 1000, "io.september.fleet=f", timeout=0.3)
