# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The engine_logs module as a whole, with a fake container whose logs come with Docker's timestamps."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.september.engine.plugins.module_utils import _docker
from ansible_collections.september.engine.plugins.module_utils._errors import NotFoundError
from ansible_collections.september.engine.plugins.modules import engine_logs
from engine_testkit.module_runner import ExitJson, FailJson

T0 = 1_800_000_000.0
KEY = "k3y-Zq8vR2pL9sX4"


def stamp(ts: float) -> str:
    """Docker's RFC 3339 timestamp with nanoseconds."""
    moment = datetime.fromtimestamp(ts, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}123Z"


def engine_line(ts: float, message: str) -> str:
    return json.dumps(dict(timestamp=datetime.fromtimestamp(ts, tz=UTC).isoformat(), level="INFO", logger="agent",
                           message=message, extra={}))


class FakeContainer:
    def __init__(self, entries):
        self.name = "log-u001"
        self.attrs = {"Config": {"Image": "engine:2.4.2"}}
        self.entries = entries  # (ts, line)
        self.calls = []
        self.docker_error = ""  # what the Docker API answers instead of the logs, when set

    def logs(self, **kwargs):
        self.calls.append(kwargs)
        if self.docker_error:
            raise _docker.DockerException(self.docker_error)
        return "".join(f"{stamp(ts)} {line}\n" for ts, line in self.entries).encode()


@pytest.fixture
def engine(monkeypatch):
    """Ten lines one second apart from T0 (the JSON lines of turn 0 ... 9) and a stderr traceback at T0 + 4.5."""
    entries = [(T0 + i, engine_line(T0 + i, f"turn {i}")) for i in range(10)]
    entries.insert(5, (T0 + 4.5, "Traceback (most recent call last):"))
    container = FakeContainer(entries)

    def get_container(client, name):
        if name not in (container.name, "3f1c9a"):
            raise NotFoundError(f"No container named or identified by '{name}' on this Docker host: check the "
                                "'container' option (docker ps -a lists them).")
        return container

    monkeypatch.setattr(engine_logs, "docker_client", lambda params: object())
    monkeypatch.setattr(engine_logs, "get_container", get_container)
    return container


def run(args, expect=ExitJson):
    with patch_module_args(args), pytest.raises(expect) as info:
        engine_logs.main()
    return info.value.args[0]


def messages(lines):
    return [json.loads(line)["message"] if line.startswith("{") else line for line in lines]


def test_the_whole_log_by_default(engine):
    result = run({"container": "log-u001"})
    logs = result["logs"]
    assert result["changed"] is False
    assert logs["container"] == "log-u001" and logs["image"] == "engine:2.4.2"
    assert logs["window"] == {"start": None, "end": None}
    assert logs["count"] == 11 and logs["truncated"] is False
    assert messages(logs["lines"])[4:6] == ["turn 4", "Traceback (most recent call last):"]
    assert logs["lines"][0] == engine.entries[0][1]  # Docker's timestamp is gone, the Engine's line is whole
    call = engine.calls[0]
    assert call == {"stdout": True, "stderr": True, "timestamps": True, "tail": 5001}


def test_a_window_is_asked_of_docker_and_cut_by_each_line_s_own_time(engine):
    logs = run({"container": "log-u001", "start": "2027-01-15T08:00:03", "end": T0 + 6})["logs"]
    assert datetime.fromisoformat("2027-01-15T08:00:03+00:00").timestamp() == T0 + 3
    call = engine.calls[0]
    assert call["since"] == T0 + 3 - 1 and call["until"] == T0 + 6 + 1 and "tail" not in call
    assert call["timestamps"] is True and call["stderr"] is True
    assert messages(logs["lines"]) == ["turn 3", "turn 4", "Traceback (most recent call last):", "turn 5"]
    assert logs["window"] == {"start": "2027-01-15T08:00:03.000Z", "end": "2027-01-15T08:00:06.000Z"}
    assert logs["count"] == 4 and logs["truncated"] is False


def test_start_alone_asks_docker_for_one_line_more_than_tail(engine):
    logs = run({"container": "log-u001", "start": str(T0 + 8), "tail": 1})["logs"]
    assert engine.calls[0]["since"] == T0 + 7 and engine.calls[0]["tail"] == 2
    assert messages(logs["lines"]) == ["turn 9"] and logs["truncated"] is True
    assert logs["window"]["end"] is None


@pytest.mark.parametrize(("tail", "expected", "truncated"), [
    (2, ["turn 8", "turn 9"], True),
    (11, None, False),
    (12, None, False),
])
def test_tail_keeps_the_last_lines_of_the_window(engine, tail, expected, truncated):
    logs = run({"container": "log-u001", "end": T0 + 100, "tail": tail})["logs"]
    assert logs["truncated"] is truncated and logs["count"] == len(logs["lines"]) == min(tail, 11)
    if expected:
        assert messages(logs["lines"]) == expected


def test_a_window_before_the_container_started_is_empty(engine):
    logs = run({"container": "log-u001", "start": T0 - 3600, "end": T0 - 60})["logs"]
    assert logs["lines"] == [] and logs["count"] == 0 and logs["truncated"] is False


def test_secrets_are_replaced_in_every_line_and_every_occurrence(engine):
    engine.entries[2] = (T0 + 2, engine_line(T0 + 2, f"key {KEY} and again {KEY}"))
    engine.entries.append((T0 + 20, f"stderr: bad key={KEY}-rotated"))
    result = run({"container": "log-u001", "redact": ["", "Zq8v", KEY, f"{KEY}-rotated"]})
    logs = result["logs"]
    assert KEY not in json.dumps(result) and "Zq8v" not in json.dumps(result)
    assert messages(logs["lines"])[2] == "key ******** and again ********"
    assert logs["lines"][-1] == "stderr: bad key=********"
    assert logs["count"] == 12


def test_the_containers_own_key_is_redacted_without_being_given(engine):
    # The key set only in the container's env (or a Compose .env): the inventory does not know it, an Engine that
    # logs request paths quotes it.
    engine.attrs["Config"]["Env"] = [f"ENGINE_API_KEY={KEY}", "SQLITE_DB_PATH=/data/brain.sqlite", "EMPTY="]
    engine.entries.append((T0 + 20, f"GET /leak/{KEY} 404"))
    result = run({"container": "log-u001"})
    assert KEY not in json.dumps(result) and result["logs"]["lines"][-1] == "GET /leak/******** 404"


@pytest.mark.parametrize("container", ["log-u001", "3f1c9a"])
def test_check_mode_reads_the_same(engine, container):
    args = {"container": container, "start": T0 + 1, "end": T0 + 3}
    assert run({**args, "_ansible_check_mode": True}) == run(args)
    assert run(args)["changed"] is False and run(args)["logs"]["count"] == 2


def test_a_missing_container_says_which_and_what_to_do(engine):
    result = run({"container": "log-u404"}, FailJson)
    assert "No container named or identified by 'log-u404'" in result["msg"]
    assert "check the 'container' option (docker ps -a lists them)" in result["msg"]
    assert engine.calls == []


@pytest.mark.parametrize(("args", "message"), [
    ({"start": "yesterday"}, "start: not ISO 8601 or epoch seconds: 'yesterday'. Use ISO 8601 such as "),
    ({"end": "2026-13-45T99:00:00Z"}, "end: not ISO 8601 or epoch seconds: '2026-13-45T99:00:00Z'"),
    ({"start": True}, "start: not a time: True"),
    ({"start": T0 + 5, "end": T0 + 5}, "The window is empty: start (2027-01-15T08:00:05.000Z) must be before end"),
    ({"tail": 0}, "tail must be 1 or more (got 0)."),
])
def test_bad_options_name_the_option(engine, args, message):
    result = run({"container": "log-u001", **args}, FailJson)
    assert message in result["msg"], result["msg"]
    assert engine.calls == []


def test_logs_docker_cannot_read_back(engine):
    engine.docker_error = "configured logging driver does not support reading"
    msg = run({"container": "log-u001"}, FailJson)["msg"]
    assert msg.startswith("Cannot read the logs of container log-u001: configured logging driver")


def test_without_the_docker_sdk(engine, monkeypatch):
    monkeypatch.setattr(_docker, "HAS_DOCKER", False)
    monkeypatch.setattr(_docker, "DOCKER_IMPORT_ERROR", "ImportError: No module named 'docker'")
    result = run({"container": "log-u001"}, FailJson)
    assert "Failed to import the required Python library (docker (Docker SDK for Python >= 7.0))" in result["msg"]


@pytest.mark.parametrize(("text", "expected"), [
    ("2027-01-15T08:00:03.000000000Z", T0 + 3),
    ("2027-01-15T08:00:03.5Z", T0 + 3.5),
    ("2027-01-15T08:00:03Z", T0 + 3),
    ("2027-01-15T08:00:03.123456789+01:00", None),
    ("{\"timestamp\":", None),
    ("", None),
])
def test_docker_time(text, expected):
    assert engine_logs.docker_time(text) == (pytest.approx(expected) if expected else None)


def test_split_lines_keeps_blank_and_unstamped_lines_in_place():
    raw = f"{stamp(T0)} first\r\n{stamp(T0 + 1)} \ncontinued\n\n".encode()
    entries = engine_logs.split_lines(raw)
    assert [text for _ts, text in entries] == ["first", "", "continued"]
    assert [ts for ts, _text in entries] == pytest.approx([T0, T0 + 1, T0 + 1], abs=1e-6)
