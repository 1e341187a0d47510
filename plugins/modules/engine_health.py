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
  - Probes C(GET /health) of an Engine. Healthy is HTTP 200 and a JSON body whose C(status) is C(ok).
  - When it is not healthy, tells why (RV(health.failure), RV(health.failure_detail)) from the answer, from the
    container's state as the Docker API reports it (state, restart count, exit code, OOM kill) and from its last log
    lines.
  - With O(wait=true), probes every O(interval) seconds until O(healthy_streak) probes in a row are healthy or
    O(wait_timeout) passes (a monotonic clock), and stops early on a failure that waiting cannot cure (O(fail_fast)).
  - It only reports, with C(changed=false), and never fails because the Engine is unhealthy; the playbook decides
    (C(failed_when)). It fails on bad input only (no such container, Docker unreachable, a malformed O(url)).
  - Runs on the Docker host. Without O(container), a loopback O(url) is matched to the container that publishes
    its port when the Docker SDK and daemon are available; otherwise the probe alone decides.
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
      - Consecutive healthy probes needed with O(wait=true). Without O(wait), one probe decides.
    type: int
    default: 3
  fail_fast:
    description:
      - With O(wait=true), stop waiting as soon as the failure is V(crash_loop) or V(migration_required).
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
  - september.engine._attributes.ACTIONGROUP_ENGINE
  - september.engine._attributes.READ_ONLY
  - september.engine._engine_api
  - september.engine._docker
notes:
  - Uses C(ansible.module_utils.urls); TLS certificates are verified by default.
  - The Docker SDK is only needed with O(container) (or to explain a failure behind a loopback O(url)).
  - See docs/modules.md in the collection for the health contract and how a failure is classified.
seealso:
  - module: september.engine.engine_watch
  - module: september.engine.engine_outage
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
      description:
        - Why it is not healthy. V(migration_required) the container logged C(MIGRATION_REQUIRED) (it refuses a
          brain migrated by a newer release); V(crash_loop) restarting, restarted O(crash_loop_restarts) times or
          more, exited non-zero, or OOM killed; V(unhealthy) it answers, but not healthy (RV(health.subsystems)
          names the failing part); V(unreachable) nothing answers (refused, timed out, TLS failure, container
          stopped).
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

from ansible_collections.september.engine.plugins.module_utils._docker import docker_argument_spec
from ansible_collections.september.engine.plugins.module_utils._engine_api import engine_api_argument_spec
from ansible_collections.september.engine.plugins.module_utils._health import EngineHealth
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule


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
    module = EngineModule(argument_spec, required_one_of=[("url", "container")])
    if module.params["container"]:
        module.check_sdk()
    module.run(lambda: dict(health=EngineHealth(module.params).run()))


if __name__ == "__main__":
    main()
