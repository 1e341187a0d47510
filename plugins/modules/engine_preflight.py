#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: engine_preflight
short_description: Lock an Engine and check everything an upgrade needs, before anything stops
version_added: 0.3.0
description:
  - The pre-flight of one Engine's upgrade, in one call. It takes the Engine's lock (keyed by the storage of its
    brain, so two inventories naming the Engine differently share one lock), finds the Engine, decides what the run
    does with it (RV(preflight.action)), probes its health, makes sure the target image is on the Docker host
    (pulling it when told to) and reads what the target's migrations will do to the brain.
  - A gate that refuses (an unhealthy Engine, a target older than the brain, a destructive or unclassifiable
    migration that was not acknowledged, a target that does not boot on a copy of the brain) fails the module
    with one message that says what to do. The lock it took is released first (with O(lock.release_held), also one
    the same run held since an earlier pre-flight), so nothing is left behind. No container is stopped by this
    module.
  - With O(baseline) and O(snapshot), it also measures the Engine's baseline and takes the pre-upgrade snapshot once
    the gates passed (the upgrade role does so when no probe or eval turns go to the Engine before its switch);
    without them, those are steps of their own (M(september.engine.engine_metrics),
    M(september.engine.brain_snapshot)). The switch is always a step of its own (M(september.engine.engine_container)
    or M(september.engine.engine_compose)).
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._attributes.ACTIONGROUP_ENGINE
  - september.engine._engine
  - september.engine._engine.COMPOSE_PROJECT
  - september.engine._docker
  - september.engine._engine_api
  - september.engine._brain.MIGRATIONS
  - september.engine._brain.MIGRATION_FILES
attributes:
  check_mode:
    support: full
    details:
      - Probes and reads as usual; takes no lock and pulls nothing, and says it would.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - The lock is re-taken by the same O(lock.run_id) without change; an image already present is not pulled.
options:
  inventory_name:
    description: The Engine's name in the inventory, used in messages and shown to a run that collides on its lock.
    type: str
  target_version:
    description: The release (image tag) to upgrade to.
    type: str
    required: true
  image_repository:
    description: Repository of the target image. By default the repository of the image the Engine runs now.
    type: str
  pull:
    description: Pull the target image V(missing) (only when absent), V(always), or V(never).
    type: str
    choices: [missing, always, never]
    default: missing
  registry_username:
    description: User name for the registry the target image is pulled from.
    type: str
  registry_password:
    description: Password or token for that registry; a secret, never logged.
    type: str
  require_healthy:
    description: Refuse to upgrade an Engine that is not healthy now.
    type: bool
    default: true
  allow_destructive:
    description:
      - Acknowledge pending migrations that are V(destructive), or that this host's SQLite could not classify
        (V(unknown), which are treated as destructive). Without it such an upgrade is refused.
    type: bool
    default: false
  boot_test:
    description:
      - Boot the target on a throwaway copy of the brain once the gates passed (then the current image on the
        migrated copy), as M(september.engine.migration_check) does with its C(boot_test) option,
        and refuse the upgrade when the target does not come up healthy there; nothing is stopped.
      - V(auto) for a major release or a migration that is destructive or unclassified
        (C(boot_test_reasons) in RV(preflight.migration)); V(always); V(never).
      - The boot-test containers get the Engine's own environment, with a throwaway API key. Check mode starts none.
    type: str
    choices: [auto, always, never]
    default: auto
  boot_timeout:
    description: Seconds each boot-test container gets to become healthy.
    type: int
    default: 120
  boot_test_dir:
    description: Where the copy of the brain is made (room for a full copy). Default O(snapshot.dest), else the
      system's temporary folder.
    type: path
  baseline:
    description:
      - Measure the Engine's baseline once the gates passed (V(upgrade)), as M(september.engine.engine_metrics) does,
        from its turns of the last O(baseline.window_seconds), reaching further back, doubling, up to
        O(baseline.max_seconds) while they are fewer than O(baseline.min_turns). For V(verify), the turns before the
        unverified switch (the kept previous container's log, else the brain's events).
      - Omitted, no baseline is measured (the role measures it after probe turns, when it sends them).
    type: dict
    suboptions:
      window_seconds:
        description: Seconds of the Engine's recent past measured.
        type: int
        default: 300
      max_seconds:
        description: How far back the baseline may reach when the window is thin (0, not further).
        type: int
        default: 0
      min_turns:
        description: Turns that make the window thick enough.
        type: int
        default: 20
      source:
        description: Where the turns are read, as in M(september.engine.engine_metrics).
        type: str
        choices: [logs, brain, both]
        default: logs
  snapshot:
    description:
      - Once the gates passed (V(upgrade)), take the pre-upgrade snapshot of the brain as
        M(september.engine.brain_snapshot) does (online backup API, verified, kind V(pre-upgrade), bound to this
        Engine), keeping the lock alive while it copies; retention then prunes this Engine's pre-upgrade snapshots.
      - Omitted, no snapshot is taken here.
    type: dict
    suboptions:
      dest:
        description: The folder of the Engine's snapshots on the Docker host (an absolute path).
        type: path
        required: true
      name:
        description: The snapshot's name; default C(pre-upgrade-<identity slug>-<from>-to-<to>-<run id>).
        type: str
      reason:
        description: Why it is taken (in its manifest); default says the upgrade and the run.
        type: str
      verify:
        description: How the copy is verified, as in M(september.engine.brain_snapshot).
        type: str
        choices: [quick, full, none]
        default: quick
      retain_days:
        description: Days the snapshot is never pruned.
        type: int
        default: 2
      destructive_retain_days:
        description: Days it is kept at least when a pending migration is destructive or unclassified.
        type: int
        default: 7
      keep_last:
        description: This Engine's pre-upgrade snapshots kept by the retention after it (retained ones never go).
        type: int
  rolled_back_release:
    description:
      - Refuse a release that was rolled back. Before anything else of an V(upgrade) (right after the lock), the
        pre-flight reads the record of rolled-back releases on the Docker host
        (C(<state_dir>/rolled-back-releases/), written by M(september.engine.engine_rollback)) and refuses an upgrade to
        O(target_version) when a rollback of that release is recorded and nobody acknowledged it; the message names
        when, where and why it was rolled back.
      - With O(rolled_back_release.allow) and a O(rolled_back_release.reason), the upgrade goes on and the entries are
        marked acknowledged (the reason, O(lock.owner), O(lock.run_id), the time); a later rollback of the release
        refuses again. See M(september.engine.engine_release_info).
      - Omitted, the gate still runs (not allowed) when the state folder is known (from O(lock.dir)).
    type: dict
    suboptions:
      allow:
        description: Acknowledge that the target release was rolled back, and upgrade to it all the same.
        type: bool
        default: false
      reason:
        description: Why it may be deployed again (required with O(rolled_back_release.allow)); returned and recorded.
        type: str
      state_dir:
        description:
          - The collection's state folder on the Docker host (C(engine_state_dir)). Default, the folder above
            O(lock.dir) (the roles keep their locks in C(<state dir>/locks)); without both there is no gate.
        type: path
  lock:
    description:
      - The Engine's lock; without it no lock is taken.
      - The lock file is C(<dir>/<identity slug>.lock) on the Docker host.
    type: dict
    suboptions:
      dir:
        description: Folder of the lock files on the Docker host (an absolute path).
        type: path
        required: true
      owner:
        description: Who takes it (shown to a run that collides with it).
        type: str
        required: true
      run_id:
        description: The run that takes it; taking it again with the same run id refreshes it.
        type: str
        required: true
      ttl:
        description: Seconds until the lock expires if it is never released (a dead run).
        type: int
        default: 1200
      release_held:
        description:
          - When the pre-flight refuses, fails or finds nothing to do, also release the lock if this run held it
            already (taken again with the same O(lock.run_id)). The upgrade role sets it for its second pre-flight
            of an Engine it brought back after a dead run.
          - With V(false), only a lock this pre-flight took is released, since another invocation sharing the run id
            (a pinned run id, a promotion) may hold it in the middle of a switch.
        type: bool
        default: false
author:
  - September Engine maintainers (@september-engine)
"""

EXAMPLES = r"""
- name: Pre-flight of the upgrade to 2.4.0
  september.engine.engine_preflight:
    deployment: container
    container_name: engine-u042
    inventory_name: engine-u042
    target_version: "2.4.0"
    lock:
      dir: /var/lib/september-engine/locks
      owner: "AWX job 1234"
      run_id: "20260504T020000Z-123456"
  register: preflight

- name: Snapshot the brain when the Engine is to be upgraded
  september.engine.brain_snapshot:
    container: "{{ preflight.preflight.engine.container }}"
    dest: /var/lib/september-engine/snapshots
    kind: pre-upgrade
  when: preflight.preflight.action == 'upgrade'
"""

RETURN = r"""
preflight:
  description: What the pre-flight found and decided.
  returned: success
  type: dict
  contains:
    action:
      description:
        - V(upgrade) snapshot, switch and verify; V(verify) the Engine runs the target but its switch was never
          verified (verify it like a fresh switch); V(resume) it is down after a dead run (bring it back, then run
          the pre-flight again); V(none) it runs the target and was verified, nothing to do.
      type: str
      sample: upgrade
    engine:
      description: The Engine as M(september.engine.engine_info) returns it.
      type: dict
      sample: {"container": "engine-u042", "image": "engine:2.3.0", "version": "2.3.0", "running": true}
    identity:
      description: The Engine's identity (the storage of its brain), see M(september.engine.engine_info).
      type: dict
      sample: {"key": "volume:engine-data-u042", "slug": "engine-data-u042"}
    from:
      description: The release the Engine is upgraded from (its current image, or the kept previous one).
      type: dict
      sample: {"version": "2.3.0", "image": "engine:2.3.0", "image_id": "sha256:05f8..."}
    image:
      description: The target image reference.
      type: str
      sample: engine:2.4.0
    target_version:
      description: The target release.
      type: str
      sample: 2.4.0
    target:
      description: The target image on the Docker host (V(upgrade) only), as M(september.engine.engine_image) says.
      type: dict
      sample: {"name": "engine:2.4.0", "present": true, "pulled": false, "version": "2.4.0"}
    health:
      description: The health probe before the upgrade (V(upgrade) and V(verify)).
      type: dict
      sample: {"is_healthy": true, "failure": "none"}
    migration:
      description: What the target will do to the brain (V(upgrade) only), as M(september.engine.migration_check).
      type: dict
      sample: {"bump": "minor", "rollback_strategy": "brain_restore", "is_destructive": false}
    lock:
      description: The lock (C(path), C(action), C(taken_over) by whom), null without O(lock).
      type: dict
      sample: {"path": "/var/lib/september-engine/locks/engine-data-u042.lock", "action": "acquire",
               "taken_over": null}
    switched_at:
      description: When the unverified switch happened, epoch seconds (V(verify) only).
      type: float
      sample: 1777860000.5
    baseline_container:
      description: The kept previous container, whose logs hold the Engine's history before the switch (V(verify)).
      type: str
      sample: engine-u042--previous
    baseline:
      description: The baseline's measures, as M(september.engine.engine_metrics) returns them (with O(baseline)).
      type: dict
      sample: {"window": {"seconds": 300, "extended": false}, "measures": {"turns": 42, "error_rate": 0.0}}
    snapshot:
      description: The pre-upgrade snapshot, as M(september.engine.brain_snapshot) returns it, and what retention
        C(pruned) (with O(snapshot) and V(upgrade)).
      type: dict
      sample: {"name": "pre-upgrade-engine-data-u042-2.3.0-to-2.4.0-20260504T020000Z-123456", "sha256": "9f2c...",
               "kind": "pre-upgrade", "pruned": []}
    rolled_back_release:
      description:
        - The rolled-back release gate (V(upgrade) only; null without a state folder) - C(release), C(rolled_back) (a
          rollback of it is recorded), C(pending) (entries nobody acknowledged before this run), C(acknowledge) and
          C(reason) (allowed and acknowledged now), C(acknowledged) (the entries this run acknowledged), C(entries)
          and C(path) (the record file).
      type: dict
      sample: {"release": "2.4.1", "rolled_back": true, "pending": 1, "acknowledge": true,
               "reason": "fixed by the config change INC-42",
               "path": "/var/lib/september-engine/rolled-back-releases/2.4.1.json"}
    resume:
      description:
        - How to bring the Engine back (V(resume) only).
        - V(how=container_back) puts the kept previous container back. When the brain holds migrations that the
          previous release does not ship (the dead run's new container applied them before it went down), V(how)
          is V(container_start) instead, and V(why) says so. The dead run's release serves again, and the second
          pre-flight refuses to go on from its unverified switch to another release than the target.
      type: dict
      sample: {"how": "container_back", "previous": "engine-u042--previous"}
"""

from ansible_collections.september.engine.plugins.module_utils._docker import docker_client
from ansible_collections.september.engine.plugins.module_utils._engine import ENGINE_REQUIRED_IF, engine_module_specs
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule
from ansible_collections.september.engine.plugins.module_utils._preflight import Preflight


def main() -> None:
    argument_spec = dict(
        inventory_name=dict(type="str"),
        target_version=dict(type="str", required=True),
        image_repository=dict(type="str"),
        pull=dict(type="str", choices=["missing", "always", "never"], default="missing"),
        registry_username=dict(type="str"),
        registry_password=dict(type="str", no_log=True),
        require_healthy=dict(type="bool", default=True),
        allow_destructive=dict(type="bool", default=False),
        boot_test=dict(type="str", choices=["auto", "always", "never"], default="auto"),
        boot_timeout=dict(type="int", default=120),
        boot_test_dir=dict(type="path"),
        baseline=dict(type="dict", options=dict(
            window_seconds=dict(type="int", default=300),
            max_seconds=dict(type="int", default=0),
            min_turns=dict(type="int", default=20),
            source=dict(type="str", choices=["logs", "brain", "both"], default="logs"),
        )),
        snapshot=dict(type="dict", options=dict(
            dest=dict(type="path", required=True),
            name=dict(type="str"),
            reason=dict(type="str"),
            verify=dict(type="str", choices=["quick", "full", "none"], default="quick"),
            retain_days=dict(type="int", default=2),
            destructive_retain_days=dict(type="int", default=7),
            keep_last=dict(type="int"),
        )),
        rolled_back_release=dict(type="dict", options=dict(
            allow=dict(type="bool", default=False),
            reason=dict(type="str"),
            state_dir=dict(type="path"),
        )),
        lock=dict(type="dict", options=dict(
            dir=dict(type="path", required=True),
            owner=dict(type="str", required=True),
            run_id=dict(type="str", required=True),
            ttl=dict(type="int", default=1200),
            release_held=dict(type="bool", default=False),
        )),
    )
    module = EngineModule(argument_spec, shared=engine_module_specs(), docker=True, required_if=ENGINE_REQUIRED_IF)

    def work() -> dict:
        preflight = Preflight(module.params, docker_client(module.params), check_mode=module.check_mode,
                              hide=module.no_log_values.add, warnings=module.notes)
        return dict(preflight=preflight.run(), changed=preflight.changed)

    module.run(work)


if __name__ == "__main__":
    main()
