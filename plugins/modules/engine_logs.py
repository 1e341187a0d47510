#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: engine_logs
short_description: The log lines of an Engine's container over a time window, with secrets redacted
version_added: 0.1.0
description:
  - Returns the log lines (stdout and stderr, in order) an Engine's container wrote in a time window, read through
    the Docker API like C(docker logs), from a running, stopped or renamed container (such as C(<name>--failed)).
  - Each line is placed in the window by the time Docker recorded it; Docker's timestamps are not part of the
    returned lines, which are the Engine's own.
  - Every occurrence of a string given in O(redact) (for example the Engine's API key) is replaced by C(********)
    before the lines leave the module.
  - It changes nothing.
author:
  - September Engine maintainers (@september-engine)
options:
  container:
    description: Name or id of the Engine's container (a stopped or renamed one too).
    type: str
    required: true
  start:
    description:
      - Start of the window (included), ISO 8601 (C(2026-03-01T10:00:00Z); without a zone, UTC) or epoch seconds.
      - Default the beginning of the log.
    type: raw
  end:
    description:
      - End of the window (excluded), in the same formats.
      - Default the end of the log.
    type: raw
  tail:
    description: Keep at most the last O(tail) lines of the window (RV(logs.truncated) says when some were dropped).
    type: int
    default: 5000
  redact:
    description:
      - Strings that must never appear in the result, such as the Engine's API key; each occurrence in a line is
        replaced by C(********). Empty strings are ignored.
      - The container's own C(ENGINE_API_KEY) (from its environment, as Docker or a Compose C(.env) file set it) is
        always redacted, given here or not.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._attributes.ACTIONGROUP_ENGINE
  - september.engine._attributes.READ_ONLY
  - september.engine._docker
notes:
  - A container whose logging driver cannot be read back (for example C(none) or C(syslog)) has no logs to return.
seealso:
  - module: september.engine.engine_info
  - module: september.engine.engine_metrics
"""

EXAMPLES = r"""
- name: Read the failed container's log lines since the switch, without the API key
  september.engine.engine_logs:
    container: engine-u042--failed
    start: "{{ switch_started }}"
    redact:
      - "{{ engine_api_key }}"
  register: engine_failed_logs

- name: Read the last 200 lines of an Engine's log in a fixed window
  september.engine.engine_logs:
    container: engine-u042
    start: "2026-03-01T10:00:00Z"
    end: "2026-03-01T10:15:00Z"
    tail: 200
  register: engine_window_logs
  failed_when: engine_window_logs.logs.count == 0
"""

RETURN = r"""
logs:
  description: The container's log lines in the window.
  returned: success
  type: dict
  contains:
    container:
      description: Name of the container read.
      type: str
      sample: engine-u042--failed
    image:
      description: The image reference the container was created from.
      type: str
      sample: engine:2.4.2
    window:
      description: C(start) and C(end) of the window in ISO 8601 UTC, each null when not given (the log's start or end).
      type: dict
      sample: {"start": "2026-03-01T10:00:00.000Z", "end": null}
    lines:
      description: The lines in order, stdout and stderr, without Docker's timestamps, redacted.
      type: list
      elements: str
      sample: ['{"timestamp":"2026-03-01T10:00:01.204Z","level":"INFO","logger":"engine","message":"engine ready"}']
    count:
      description: Number of lines returned.
      type: int
      sample: 1
    truncated:
      description: Whether the window held more than O(tail) lines, of which only the last O(tail) are returned.
      type: bool
      sample: false
"""

import re
from datetime import datetime

from ansible_collections.september.engine.plugins.module_utils._docker import (
    DockerException,
    check_docker_sdk,
    docker_argument_spec,
    docker_client,
    get_container,
)
from ansible_collections.september.engine.plugins.module_utils._errors import (
    ContainerError,
    OptionsError,
)
from ansible_collections.september.engine.plugins.module_utils._metrics import iso
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule
from ansible_collections.september.engine.plugins.module_utils._secrets import container_secrets, redact
from ansible_collections.september.engine.plugins.module_utils._timeutil import UTC, parse_time

MARGIN = 1  # seconds around the window asked of Docker; each line is then placed by its own Docker timestamp
_DOCKER_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$")


def docker_time(text: str) -> float | None:
    """Epoch seconds of a Docker log timestamp (RFC 3339, nanoseconds, UTC), or None."""
    match = _DOCKER_TIME.match(text)
    if not match:
        return None
    moment = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return moment.timestamp() + float("0." + (match.group(2) or "0"))


def split_lines(raw) -> list[tuple[float | None, str]]:
    """(Docker time, line) of each line of `docker logs --timestamps` output; a line without one keeps the last."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    entries, last = [], None
    for line in raw.split("\n"):
        if not line:
            continue
        stamp, _sep, text = line.partition(" ")
        moment = docker_time(stamp)
        if moment is None:
            text = line
        else:
            last = moment
        entries.append((last, text.rstrip("\r")))
    return entries


class EngineLogs:
    """Reads one container's log lines for a window, keeps the last `tail`, redacts them."""

    def __init__(self, module: EngineModule):
        self.module = module
        self.params = p = module.params
        if p["tail"] < 1:
            raise OptionsError(f"tail must be 1 or more (got {p['tail']}).")
        self.since, self.until = self._time("start"), self._time("end")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise OptionsError(f"The window is empty: start ({iso(self.since)}) must be before end "
                               f"({iso(self.until)}).")
        # Longest first, so that a secret holding another is masked whole.
        self.secrets = sorted({s for s in p["redact"] or [] if s}, key=len, reverse=True)

    def _time(self, name: str) -> float | None:
        value = self.params[name]
        if value in (None, ""):
            return None
        try:
            moment = parse_time(value)
            iso(moment)  # a time that cannot be shown (year out of range) is refused here too
        except (ValueError, OverflowError, OSError) as exc:
            raise OptionsError(f"{name}: {exc}. Use ISO 8601 such as 2026-03-01T10:00:00Z (without a zone, UTC), "
                               "or epoch seconds.") from exc
        return moment

    def read(self) -> dict:
        p = self.params
        check_docker_sdk(self.module)
        container = get_container(docker_client(p), p["container"])
        own = container_secrets(container.attrs)  # its key, also when the inventory does not know it
        self.module.no_log_values.update(own)
        self.secrets = sorted(set(self.secrets) | set(own), key=len, reverse=True)
        kwargs = dict(stdout=True, stderr=True, timestamps=True)
        if self.since is not None and self.since - MARGIN > 0:
            kwargs["since"] = float(self.since - MARGIN)
        if self.until is not None:
            kwargs["until"] = float(max(self.until + MARGIN, 1))
        else:
            kwargs["tail"] = p["tail"] + 1  # the last lines of the log are the last of the window: ask no more
        try:
            raw = container.logs(**kwargs)
        except DockerException as exc:
            raise ContainerError(f"Cannot read the logs of container {container.name}: {exc}. Its logging driver "
                                 "may not keep logs for docker logs (json-file, local and journald do).") from exc
        lines = [text for moment, text in split_lines(raw) if self._in_window(moment)]
        truncated = len(lines) > p["tail"]
        lines = [redact(text, self.secrets) for text in lines[-p["tail"]:]]
        image = (container.attrs.get("Config") or {}).get("Image")
        return dict(
            container=redact(container.name, self.secrets),
            image=redact(image, self.secrets) if image else image,
            window=dict(start=None if self.since is None else iso(self.since),
                        end=None if self.until is None else iso(self.until)),
            lines=lines,
            count=len(lines),
            truncated=truncated,
        )

    def _in_window(self, moment: float | None) -> bool:
        if moment is None:
            return self.since is None
        return (self.since is None or moment >= self.since) and (self.until is None or moment < self.until)


def main() -> None:
    module = EngineModule(
        dict(
            container=dict(type="str", required=True),
            start=dict(type="raw"),
            end=dict(type="raw"),
            tail=dict(type="int", default=5000),
            redact=dict(type="list", elements="str", default=[], no_log=True),
            **docker_argument_spec(),
        ),
    )
    module.run(lambda: dict(logs=EngineLogs(module).read()))


if __name__ == "__main__":
    main()
