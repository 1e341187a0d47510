#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: engine_rollback
short_description: Roll an Engine back to its previous release, restoring its brain when needed, in one call
version_added: 0.3.0
description:
  - Puts an Engine (a per-user container or a Compose service) back on the release it ran before its last switch,
    the exact image recorded before the switch (its id, whatever the tag points at now), or on the release
    O(version).
  - Everything that can be checked is checked before the Engine stops. The image must be on the Docker host (pulled
    when missing); the brain is read against it; when it holds migrations the old release does not ship (or with
    O(restore_brain=always)) the snapshot to restore is chosen by its manifest (this Engine's pre-upgrade snapshot
    taken on that release, unless O(snapshot) names one), its checksum and C(quick_check) are verified, it must
    belong to this Engine, there must be room to stage it, and nothing but the Engine may hold the brain. The
    snapshot is then staged beside the brain while the Engine still serves.
  - Then the Engine is drained and stopped, the staged brain is installed (the replaced brain, with everything the
    failed release wrote, is kept as a C(pre-restore) snapshot), the container or service is switched back, and the
    module waits until the Engine is healthy.
  - If a step after the stop fails, what was serving is started again before the module fails, and the message says
    so. An Engine already on the release asked for but stopped is started. The collection never leaves an Engine
    stopped.
  - A rollback only goes back. A release newer than the running one, or one that would apply migrations to the
    brain, is refused before anything changes (that is an upgrade, with a snapshot and a verification), unless it
    is the release recorded before the last switch.
  - The role P(september.engine.engine_rollback#role) runs it (and so the playbook C(september.engine.rollback) and
    the upgrade's automatic rollback).
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._attributes.ACTIONGROUP_ENGINE
  - september.engine._engine
  - september.engine._engine.COMPOSE_PROJECT
  - september.engine._engine_api
  - september.engine._brain.MIGRATIONS
  - september.engine._brain.MIGRATION_FILES
  - september.engine._docker
attributes:
  check_mode:
    support: full
    details:
      - Runs every check of the rollback (image, brain, snapshot) and reports the actions it would take.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - An Engine already running the release asked for, with nothing left of a switch, is not touched.
      - An Engine rolled back already (its container kept as failed, or its rolled-back-from label, or the Compose
        state file's record), with no O(version) asked, stays where it is; a second rollback.yml changes nothing.
options:
  inventory_name:
    description: The Engine's name in the inventory, for messages and the kept brain's manifest.
    type: str
  version:
    description:
      - The release (image tag) to go back to. Empty, the one recorded before the last switch.
      - When the recorded image has this release, that exact image is used (whatever its repository), else this tag
        in the Engine's repository.
    type: str
  image:
    description: The exact image reference to go back to (overrides O(version)).
    type: str
  pull:
    description: Pull the image to go back to when it is V(missing) from the Docker host, or V(never).
    type: str
    choices: [missing, never]
    default: missing
  restore_brain:
    description:
      - V(auto) restores the brain when it holds migrations the old release does not ship (it would refuse it with
        C(MIGRATION_REQUIRED)); V(always) restores it whatever it holds; V(never) does not.
    type: str
    choices: [auto, always, never]
    default: auto
  snapshot:
    description:
      - The snapshot to restore (a name in O(snapshot_dir), or the path of its C(.sqlite) file). Empty, the newest
        pre-upgrade snapshot of this Engine taken on the release to go back to, chosen by its manifest.
    type: str
  snapshot_dir:
    description: The folder of the Engine's snapshots on the Docker host (an absolute path; a relative one is refused).
    type: path
    required: true
  allow_other_engine:
    description:
      - Restore a snapshot whose manifest names another Engine (a deliberate migration of a brain). Without it such
        a snapshot is refused, so that no Engine ever gets another Engine's brain by accident.
    type: bool
    default: false
  replay:
    description:
      - What the failed release wrote during its bad window, after a brain restore, as M(september.engine.brain_replay)
        does, while the Engine is stopped. V(replay) writes back onto the restored brain what the old schema can hold
        (inserted rows, updates; never deletes; one transaction); V(report) only counts and lists it; V(auto) replays
        when the failed release's migrations only added to the old schema, else reports; V(off) does neither.
      - Whatever is not replayed stays in the kept bad-window brain. A replay that fails never fails the rollback.
    type: str
    choices: [auto, replay, report, "off"]
    default: "off"
  replay_tables:
    description: Which tables the replay considers, C(include) and C(exclude) lists of shell patterns.
    type: dict
  previous_brain_retain_days:
    description: Days the replaced brain (what the failed release wrote) is kept at least.
    type: int
    default: 30
  min_free_bytes:
    description: Free bytes that must remain on the brain's file system after staging the snapshot.
    type: int
    default: 67108864
  brain_file:
    description: The brain's file name under O(data_dir).
    type: str
    default: brain.sqlite
  compose_command:
    description: The Compose command, for O(deployment=compose); V(auto) prefers C(docker compose) (v2).
    type: str
    choices: [auto, docker compose, docker-compose]
    default: auto
  drain_timeout:
    description: Seconds the Engine gets to finish its in-flight turns when it is stopped.
    type: int
    default: 60
  health_timeout:
    description: Seconds to wait until the Engine is healthy on the old release.
    type: int
    default: 120
  healthy_streak:
    description: Healthy probes in a row needed.
    type: int
    default: 3
  reason:
    description: Why the rollback happens; recorded in the kept brain's manifest and returned.
    type: str
    default: requested
  record_release:
    description:
      - After a successful rollback, record the release the Engine rolled back from in O(state_dir) (which Engine,
        when, in which run, O(reason)), so that an upgrade to it is refused until acknowledged (see
        M(september.engine.engine_release_info)). A record that cannot be written is a warning; the
        rollback still succeeds.
    type: bool
    default: true
  state_dir:
    description:
      - The collection's state folder on the Docker host (C(engine_state_dir)); the record is
        C(<state_dir>/rolled-back-releases/<release>.json) (folder C(0700), files C(0600)).
      - Default, the folder above O(lock.dir) (the roles keep their locks in C(<state dir>/locks)); without both,
        nothing is recorded.
    type: path
  lock:
    description:
      - The Engine's lock, keyed by its identity (the storage of its brain, see M(september.engine.engine_lock)),
        held and refreshed while the rollback works. A lock this run holds already (the upgrade's) stays held; one
        taken here is released at the end. Another run's lock refuses the rollback before anything changes.
      - Without it no lock is taken.
    type: dict
    suboptions:
      dir:
        description: Folder of the lock files on the Docker host.
        type: path
        default: /var/lib/september-engine/locks
      owner:
        description: Who takes it (shown to a run that collides with it).
        type: str
        required: true
      run_id:
        description: The run that takes it.
        type: str
        required: true
      ttl:
        description: Seconds each refresh extends the lock by.
        type: int
        default: 1200
author:
  - September Engine maintainers (@september-engine)
"""

EXAMPLES = r"""
- name: Roll engine-u042 back to the release it ran before its last switch
  september.engine.engine_rollback:
    deployment: container
    container_name: engine-u042
    inventory_name: engine-u042
    snapshot_dir: /var/lib/september-engine/snapshots/engine-u042
    reason: "p99 latency 4x the baseline"
  register: rollback

- name: Roll a Compose project back to 2.3.1, restoring a chosen snapshot
  september.engine.engine_rollback:
    deployment: compose
    compose_dir: /srv/engine
    version: "2.3.1"
    restore_brain: always
    snapshot: pre-upgrade-engine_data-2.3.1-to-2.4.0-20260504T020000Z-123456
    snapshot_dir: /var/lib/september-engine/snapshots/shared-engine
  register: rollback
  failed_when: not rollback.rollback.healthy
"""

RETURN = r"""
rollback:
  description: What the rollback did.
  returned: success
  type: dict
  contains:
    rolled_back:
      description: The Engine was switched back (false when it already ran the release asked for).
      type: bool
      sample: true
    from_version:
      description: The release the Engine ran before.
      type: str
      sample: 2.4.2
    to_version:
      description: The release it runs now.
      type: str
      sample: 2.3.0
    image:
      description: The image it runs now, and RV(rollback.image_id) its id.
      type: str
      sample: engine:2.3.0
    image_id:
      description: The id of that image.
      type: str
      sample: sha256:05f8a0...
    kind:
      description: V(none), V(image) (image only) or V(image+brain) (the brain was restored too).
      type: str
      sample: image+brain
    brain_restored:
      description: The brain was restored from RV(rollback.snapshot).
      type: bool
      sample: true
    snapshot:
      description: The snapshot restored (or that would be), null when none.
      type: str
      sample: pre-upgrade-engine-data-u042-2.3.0-to-2.4.2-20260504T020000Z-123456
    previous_brain:
      description: Where the replaced brain (what the failed release wrote) is kept, as a C(pre-restore) snapshot.
      type: dict
      sample: {"name": "brain-engine-data-u042-pre-restore-20260504T021502Z", "path": "/var/lib/...sqlite"}
    data_at_risk:
      description: Rows per table written between the snapshot and the restore; they stay in the kept brain.
      type: dict
      sample: {"tasks": 12, "conversations": 12}
    replay:
      description:
        - What the failed release wrote in its bad window and what was replayed, as M(september.engine.brain_replay)
          returns it (per table C(written_in_bad_window), C(replayed), C(not_replayable) with the reasons, and where
          the bad-window brain is kept); null without a brain restore or with O(replay=off).
      type: dict
      sample: {"mode": "replay", "totals": {"replayed": 42}, "bad_window": {"path": "/var/lib/...sqlite"}}
    failed_container:
      description: The container of the failed release, kept for diagnostics (per-user Engines).
      type: str
      sample: engine-u042--failed
    healthy:
      description: The Engine is healthy on the old release (null in check mode).
      type: bool
      sample: true
    health:
      description: The last health probe, as M(september.engine.engine_health) returns it.
      type: dict
      sample: {"is_healthy": true, "failure": "none"}
    brought_back:
      description: When a step after the stop failed, what was done to keep the Engine serving.
      type: str
      sample: null
    release_record:
      description:
        - The rolled-back release as recorded on the Docker host (C(release), C(engine), C(identity), C(docker_host),
          C(run_id), C(reason), C(rolled_back_to), C(started_at), C(rolled_back_at), C(path), ...); null when nothing
          was rolled back or recorded.
      type: dict
      sample: {"release": "2.4.1", "engine": "engine-u042", "docker_host": "docker-a",
               "rolled_back_at": "2026-05-04T02:14:10Z",
               "path": "/var/lib/september-engine/rolled-back-releases/2.4.1.json"}
    timings:
      description: Seconds of each step (C(stage_seconds), C(stop_seconds), C(restore_seconds), C(switch_seconds),
        C(healthy_seconds), C(total_seconds)).
      type: dict
      sample: {"stop_seconds": 1.2, "restore_seconds": 0.4, "switch_seconds": 1.1, "healthy_seconds": 1.5}
    actions:
      description: What was done (or would be, in check mode).
      type: list
      elements: str
      sample: ["stop engine-u042", "replace /var/lib/docker/volumes/.../brain.sqlite with snapshot ..."]
"""

from ansible_collections.september.engine.plugins.module_utils._docker import docker_client
from ansible_collections.september.engine.plugins.module_utils._engine import ENGINE_REQUIRED_IF, engine_module_specs
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule
from ansible_collections.september.engine.plugins.module_utils._rollback import Rollback, check_options


def main() -> None:
    argument_spec = dict(
        inventory_name=dict(type="str"),
        version=dict(type="str"),
        image=dict(type="str"),
        pull=dict(type="str", choices=["missing", "never"], default="missing"),
        restore_brain=dict(type="str", choices=["auto", "always", "never"], default="auto"),
        snapshot=dict(type="str"),
        snapshot_dir=dict(type="path", required=True),
        allow_other_engine=dict(type="bool", default=False),
        replay=dict(type="str", choices=["auto", "replay", "report", "off"], default="off"),
        replay_tables=dict(type="dict"),
        previous_brain_retain_days=dict(type="int", default=30),
        min_free_bytes=dict(type="int", default=64 * 1024 * 1024),
        brain_file=dict(type="str", default="brain.sqlite"),
        compose_command=dict(type="str", default="auto", choices=["auto", "docker compose", "docker-compose"]),
        drain_timeout=dict(type="int", default=60),
        health_timeout=dict(type="int", default=120),
        healthy_streak=dict(type="int", default=3),
        reason=dict(type="str", default="requested"),
        record_release=dict(type="bool", default=True),
        state_dir=dict(type="path"),
        lock=dict(type="dict", options=dict(
            dir=dict(type="path", default="/var/lib/september-engine/locks"),
            owner=dict(type="str", required=True),
            run_id=dict(type="str", required=True),
            ttl=dict(type="int", default=1200),
        )),
    )
    module = EngineModule(argument_spec, shared=engine_module_specs(), docker=True, required_if=ENGINE_REQUIRED_IF,
                          mutually_exclusive=[("version", "image")])
    done: dict = {}

    def work() -> dict:
        check_options(module.params)
        rollback = done["rollback"] = Rollback(module, docker_client(module.params))
        result = rollback.run()
        result.update(timings=rollback.timings, actions=rollback.actions)
        return dict(rollback=result, changed=rollback.changed)

    def fail_details() -> dict:  # what the rollback did before it failed (the Engine was brought back, or not)
        rollback = done.get("rollback")
        return dict(actions=rollback.actions, timings=rollback.timings) if rollback else {}

    module.run(work, fail_details=fail_details)


if __name__ == "__main__":
    main()
