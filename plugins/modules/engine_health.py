#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: engine_health
short_description: Probe an Engine's health and tell why it is not healthy
version_added: 0.1.0
description:
  - Probes C(GET /health) of an Engine. Healthy means what the Engine's contract says, HTTP 200 and a JSON body
    whose C(status) is C(ok).
  - When it is not healthy, tells why (RV(health.failure)), from the answer and from what the Docker API says about
    the Engine's container (state, restart count, exit code, OOM kill) and its last log lines,
    V(migration_required) (the container logged C(MIGRATION_REQUIRED), it refuses a brain migrated by a newer
    release), V(crash_loop) (restarting, restarted O(crash_loop_restarts) times or more, exited non-zero, or OOM
    killed), V(unhealthy) (it answers, but not healthy; RV(health.subsystems) names the failing part), or
    V(unreachable) (nothing answers, for example refused, timed out, TLS failure, container stopped).
  - With O(wait=true), probes every O(interval) seconds until O(healthy_streak) probes in a row are healthy or
    O(wait_timeout) passes (a monotonic clock), and stops early on a failure that waiting cannot cure (O(fail_fast)).
  - It only reports, with C(changed=false), and never fails because the Engine is unhealthy; the playbook decides
    (C(failed_when)). It fails on bad input only (no such container, Docker unreachable, a malformed O(url)).
  - Runs on the Docker host. Without O(container), a loopback O(url) is matched to the container that publishes
    its port, when the Docker SDK and daemon are available, to tell crash loops from outages; otherwise the probe
    alone decides.
author:
  - September Engine maintainers (@september-engine)
options:
  container:
    description:
      - Name or id of the Engine's container. Its state and logs explain a failure, and O(url) defaults to where it
        publishes port C(8000/tcp).
      - At least one of O(container) and O(url) is required.
    type: str
  wait:
    description: Poll until the Engine is healthy (O(healthy_streak) probes in a row) or O(wait_timeout) passes.
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait with O(wait=true).
    type: int
    default: 120
  interval:
    description: Seconds between two probes with O(wait=true).
    type: float
    default: 2
  healthy_streak:
    description:
      - Consecutive healthy probes needed with O(wait=true) (the orchestrator calls an Engine failed after 3
        misses; 3 good probes in a row show it is not flapping). Without O(wait), one probe decides.
    type: int
    default: 3
  fail_fast:
    description:
      - With O(wait=true), stop waiting as soon as the failure is V(crash_loop) or V(migration_required), since
        those do not heal by waiting.
    type: bool
    default: true
  crash_loop_restarts:
    description: Restart count from which an Engine that is not healthy counts as crash looping.
    type: int
    default: 3
  log_lines:
    description: How many of the container's last log lines to search for C(MIGRATION_REQUIRED); V(0) skips the logs.
    type: int
    default: 50
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._attributes.READ_ONLY
  - september.engine._engine_api
  - september.engine._docker
notes:
  - Uses C(ansible.module_utils.urls); TLS certificates are verified by default.
  - The Docker SDK is only needed with O(container) (or to explain a failure behind a loopback O(url)).
seealso:
  - name: The Engine's health contract
    description: Healthy is HTTP 200 with C(status=ok); 503 or another C(status) means unhealthy, starting or draining.
    link: https://example.invalid/september/engine/blob/main/tests/reference_engine/README.md
"""

EXAMPLES = r"""
- name: Probe an Engine once
  september.engine.engine_health:
    container: sept-u001
  register: engine_probe

- name: Health gate after an upgrade, stop early on a crash loop or MIGRATION_REQUIRED
  september.engine.engine_health:
    container: "{{ engine_container_name }}"
    wait: true
    wait_timeout: 180
    healthy_streak: 3
  register: engine_gate
  failed_when: not engine_gate.health.is_healthy

- name: Roll back when the old image refuses the migrated brain
  ansible.builtin.debug:
    msg: "Restore the brain snapshot: {{ engine_gate.health.failure_detail }}"
  when: engine_gate.health.failure == 'migration_required'

- name: Probe an Engine behind TLS with a private CA
  september.engine.engine_health:
    url: https://engine-17.internal:8443
    ca_path: /etc/pki/engine-ca.pem
  register: engine_tls_probe
  failed_when: engine_tls_probe.health.failure not in ['none', 'unhealthy']
"""

RETURN = r"""
health:
  description: What the probes found.
  returned: always
  type: dict
  contains:
    is_healthy:
      description: The last probe was healthy (and, with O(wait=true), O(healthy_streak) probes in a row were).
      type: bool
      returned: always
      sample: true
    status:
      description: The C(status) of the last health body (C(ok), C(starting), C(degraded), C(draining)), or null.
      type: str
      returned: always
      sample: ok
    subsystems:
      description: The C(subsystems) of the last health body; a failing one is not C(ok).
      type: dict
      returned: always
      sample: {"database": "ok", "llm_provider": "error", "asset_directory": "ok"}
    http_status:
      description: HTTP status of the last probe, null when nothing answered.
      type: int
      returned: always
      sample: 200
    uptime_seconds:
      description: The Engine's uptime from the last health body, or null.
      type: float
      returned: always
      sample: 5321.42
    probes:
      description: How many probes were made.
      type: int
      returned: always
      sample: 3
    streak:
      description: Healthy probes in a row at the end.
      type: int
      returned: always
      sample: 3
    elapsed:
      description: Seconds spent probing (monotonic clock).
      type: float
      returned: always
      sample: 4.013
    timed_out:
      description: With O(wait=true), O(wait_timeout) passed before the Engine was healthy.
      type: bool
      returned: always
      sample: false
    failure:
      description: Why it is not healthy.
      type: str
      returned: always
      sample: none
      choices: [none, unreachable, unhealthy, crash_loop, migration_required]
    failure_detail:
      description: One sentence for the operator on what was seen.
      type: str
      returned: always
      sample: >-
        container sept-u001 (engine:2.4.1) answers but is not healthy: HTTP 503, status degraded,
        failing subsystems: database=error.
    url:
      description:
        - The base URL probed (without credentials).
        - Null when there was none (the container is stopped and publishes no fixed port).
      type: str
      returned: always
      sample: http://127.0.0.1:9001
    container:
      description: What Docker said about the Engine's container at the last probe; null when no container is known.
      type: dict
      returned: always
      contains:
        name:
          description: Container name.
          type: str
          returned: success
          sample: sept-u001
        id:
          description: Short container id.
          type: str
          returned: success
          sample: 0d6793964889
        status:
          description: Docker's state (C(running), C(restarting), C(exited), ...; C(removed) if it vanished meanwhile).
          type: str
          returned: success
          sample: running
        running:
          description: The container is running.
          type: bool
          returned: success
          sample: true
        restarting:
          description: Docker is restarting the container (restart policy after an exit).
          type: bool
          returned: success
          sample: false
        restart_count:
          description: How often Docker restarted it since it was last started.
          type: int
          returned: success
          sample: 0
        exit_code:
          description: Exit code of the last run (0 while running).
          type: int
          returned: success
          sample: 0
        oom_killed:
          description: The last run was killed for lack of memory.
          type: bool
          returned: success
          sample: false
        error:
          description: Docker's error for the container, if any.
          type: str
          returned: success
          sample: null
        started_at:
          description: When the current (or last) run started.
          type: str
          returned: success
          sample: "2026-03-01T10:00:00.123456789Z"
        finished_at:
          description: When the last run ended.
          type: str
          returned: success
          sample: "0001-01-01T00:00:00Z"
        restart_policy:
          description: The container's restart policy.
          type: str
          returned: success
          sample: unless-stopped
        image:
          description: The image reference the container was created from.
          type: str
          returned: success
          sample: engine:2.3.0
        image_id:
          description: The image id.
          type: str
          returned: success
          sample: sha256:05f8a0332a59
        version:
          description: The release, from the C(org.opencontainers.image.version) label.
          type: str
          returned: success
          sample: 2.3.0
        published_port:
          description: Host port where port C(8000/tcp) is published.
          type: int
          returned: success
          sample: 9001
"""

import time
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.september.engine.plugins.module_utils._docker import (
    HAS_DOCKER,
    DockerException,
    NotFound,
    check_docker_sdk,
    docker_argument_spec,
    docker_client,
    get_container,
)
from ansible_collections.september.engine.plugins.module_utils._engine_api import (
    check_tls_options,
    check_url,
    engine_api_argument_spec,
    engine_url_from_container,
    safe_url,
)
from ansible_collections.september.engine.plugins.module_utils._errors import (
    DockerUnavailableError,
    EngineModuleError,
    OptionsError,
)
from ansible_collections.september.engine.plugins.module_utils._health import (
    HOPELESS,
    ContainerWatch,
    Probe,
    classify,
    find_container_by_port,
    probe_health,
)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class EngineHealth:
    """Probes one Engine (once, or until healthy) and explains what it saw."""

    def __init__(self, module: AnsibleModule):
        self.params = module.params
        self._check_numbers()
        check_tls_options(self.params)
        self.watch = self._find_container()
        self.url = self._base_url()

    def _check_numbers(self) -> None:
        p = self.params
        for name, low in (("wait_timeout", 0), ("log_lines", 0), ("healthy_streak", 1), ("crash_loop_restarts", 1)):
            if p[name] < low:
                raise OptionsError(f"{name} must be {low} or more (got {p[name]}).")
        for name in ("interval", "timeout"):
            if p[name] <= 0:
                raise OptionsError(f"{name} must be more than 0 seconds (got {p[name]}).")

    def _find_container(self) -> ContainerWatch | None:
        p = self.params
        if p["container"]:
            client = docker_client(p)
            try:
                return ContainerWatch(get_container(client, p["container"]), p["log_lines"])
            except DockerException as exc:
                raise DockerUnavailableError(f"Docker could not inspect container {p['container']}: {exc}") from exc
        parts = urlsplit(check_url(p["url"]))
        if not HAS_DOCKER or parts.hostname not in LOOPBACK:
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            found = find_container_by_port(docker_client(p), port)
        except (DockerUnavailableError, DockerException):
            return None  # the probe alone decides: Docker is optional with a url
        return ContainerWatch(found, p["log_lines"]) if found is not None else None

    def _base_url(self) -> str | None:
        if self.params["url"]:
            return check_url(self.params["url"])
        attrs = self.watch.container.attrs
        url = engine_url_from_container(attrs)
        if url is None and (attrs.get("State") or {}).get("Running"):
            raise OptionsError(
                f"Container {self.params['container']} does not publish the Engine's port 8000/tcp on the host: "
                "set url to where the Engine can be reached."
            )
        return url

    def _observe(self) -> dict | None:
        if self.watch is None:
            return None
        try:
            return self.watch.summary()
        except DockerException as exc:
            if isinstance(exc, NotFound):  # removed while we watch: nothing left to explain with
                return dict(name=self.watch.container.name, status="removed", running=False, restarting=False)
            raise DockerUnavailableError(
                f"Lost the Docker daemon while watching the Engine's container: {exc}"
            ) from exc

    def _probe(self, deadline: float | None) -> Probe:
        if self.url is None:
            return Probe(
                error="the container is not running and publishes no fixed host port to probe", error_kind="no_url"
            )
        timeout = self.params["timeout"]
        if deadline is not None:
            timeout = max(1.0, min(timeout, deadline - time.monotonic()))
        return probe_health(self.url, self.params, timeout=timeout)

    def _explain(self, probe: Probe) -> tuple[str, str, dict | None]:
        container = self._observe()
        migration_line = None
        if not probe.healthy and self.watch is not None and container and container.get("status") != "removed":
            try:
                migration_line = self.watch.migration_line()
            except DockerException:
                migration_line = None
        failure, detail = classify(probe, container, migration_line, self.params["crash_loop_restarts"])
        return failure, detail, container

    def run(self) -> dict:
        p = self.params
        started = time.monotonic()
        deadline = started + p["wait_timeout"] if p["wait"] else None
        probes = streak = 0
        timed_out = False
        while True:
            probe = self._probe(deadline)
            probes += 1
            streak = streak + 1 if probe.healthy else 0
            failure, detail, container = self._explain(probe)
            if not p["wait"] or streak >= p["healthy_streak"]:
                break
            if p["fail_fast"] and failure in HOPELESS:
                break
            if time.monotonic() + p["interval"] > deadline:
                timed_out = True
                break
            time.sleep(p["interval"])
        is_healthy = probe.healthy and (not p["wait"] or streak >= p["healthy_streak"])
        if probe.healthy and not is_healthy:
            failure = "unhealthy"
            detail = (
                f"healthy for only {streak} probe(s) in a row of the {p['healthy_streak']} required "
                f"before wait_timeout ({p['wait_timeout']}s): still starting, or flapping."
            )
        return dict(
            is_healthy=is_healthy,
            status=probe.status,
            subsystems=probe.subsystems,
            http_status=probe.http_status,
            uptime_seconds=probe.uptime_seconds,
            probes=probes,
            streak=streak,
            elapsed=round(time.monotonic() - started, 3),
            timed_out=timed_out,
            failure=failure,
            failure_detail=detail,
            url=safe_url(self.url) if self.url else None,
            container=container,
        )


def main() -> None:
    argument_spec = dict(
        container=dict(type="str"),
        wait=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=120),
        interval=dict(type="float", default=2.0),
        healthy_streak=dict(type="int", default=3),
        fail_fast=dict(type="bool", default=True),
        crash_loop_restarts=dict(type="int", default=3),
        log_lines=dict(type="int", default=50),
    )
    argument_spec.update(engine_api_argument_spec())
    argument_spec.update(docker_argument_spec())
    module = AnsibleModule(
        argument_spec=argument_spec, required_one_of=[("url", "container")], supports_check_mode=True
    )
    if module.params["container"]:
        check_docker_sdk(module)
    try:
        health = EngineHealth(module).run()
    except EngineModuleError as exc:
        module.fail_json(msg=exc.msg, **exc.details)
    module.exit_json(changed=False, health=health)


if __name__ == "__main__":
    main()
