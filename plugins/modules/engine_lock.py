#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: engine_lock
short_description: Take, refresh or release an expiring per-Engine lock, so that two runs never work on one Engine
version_added: 0.1.0
description:
  - Keeps one lock file per Engine on the host the module runs on (the Docker host), holding who took it (O(owner)),
    which run (O(run_id)), when, and until when (O(ttl)).
  - The lock is keyed by the Engine's identity, O(key) (what M(september.engine.engine_info) returns as
    RV(september.engine.engine_info#module:engine.identity.key)); the file is C(<lock_dir>/<slug of key>.lock), so
    two inventories that name one Engine differently take the same lock. Without O(key) (the older interface), O(engine)
    is the key and the file is C(<lock_dir>/<engine>.lock); then only runs that use the same name collide.
  - O(state=present) takes the lock. If another run holds it and it has not expired, the module fails with who holds
    it and until when. If it has expired, it is taken over, reported in RV(lock.taken_over) and with a warning.
    The same O(run_id) taking it again only extends the expiry (and reports no change).
  - O(state=refreshed) extends the expiry of the lock this O(run_id) holds (a long upgrade calls it between steps);
    it fails when the lock is free or held by another run, and never takes a lock.
  - O(state=absent) releases the lock, but only for the run that holds it (or with O(force=true)); releasing a lock
    held by another run changes nothing and warns.
  - Modules that change an Engine take the same lock through their C(lock) option and keep it refreshed while
    they work (doc fragment C(september.engine._lock)).
  - Taking, taking over and releasing are atomic between processes on this host; an AWX schedule and a manual run
    can never both hold the lock.
author:
  - September Engine maintainers (@september-engine)
options:
  engine:
    description:
      - The Engine's name for people (for example its inventory name), in messages and in the lock file.
      - Without O(key), it is the key and names the lock file (the older interface; two names of one Engine then
        do not collide).
      - One of O(engine) and O(key) is required.
    type: str
  key:
    description:
      - The Engine's identity key, C(volume:<name>), C(bind:<host path>) or C(container:<name>)
        (RV(september.engine.engine_info#module:engine.identity.key)); the lock file is named after it.
    type: str
  owner:
    description:
      - Who takes the lock, for the people reading the error of a run that has to wait (C(awx job 42), C(alice@laptop)).
      - Required with O(state=present) and O(state=refreshed).
    type: str
  run_id:
    description:
      - Unique per playbook run (for example the AWX job id, or a UUID made once per run). The same run taking the lock
        again refreshes it; only this run may release it.
    type: str
    required: true
  ttl:
    description:
      - Seconds the lock holds after it is taken (or refreshed). After that, another run takes it over.
      - Longer than the longest run for one Engine (drain, switch, health gate, bake).
    type: int
    default: 3600
  lock_dir:
    description:
      - Directory of the lock files; created with mode 0700 when missing.
      - An absolute path. A relative one is refused, as it would depend on where the module runs and other runs would
        not see the lock.
    type: path
    default: /var/lib/september-engine/locks
  state:
    description:
      - V(present) takes the lock (or refreshes it when this run holds it, or takes it over when it expired).
      - V(refreshed) only extends the expiry of the lock this run holds; fails when the lock is free or another run
        holds it.
      - V(absent) releases it.
    type: str
    choices: [present, refreshed, absent]
    default: present
  force:
    description: With O(state=absent), release the lock even when another run holds it (that run must be dead).
    type: bool
    default: false
extends_documentation_fragment:
  - september.engine._attributes
attributes:
  check_mode:
    support: full
    details:
      - Predicts whether the lock would be taken, taken over, refreshed or released, and fails as the real run would
        when another run holds it (or, refreshing, when this run does not hold it).
  diff_mode:
    support: full
    details:
      - The holder before and after.
  idempotent:
    support: full
    details:
      - Taking the lock again in the same run (or refreshing it) only extends its expiry and reports no change.
notes:
  - Expiry uses the wall clock in UTC, so that it means the same to every process; keep the host's clock in sync.
  - All runs that may work on an Engine must use the same O(lock_dir) on the same host, and O(key).
seealso:
  - module: september.engine.engine_compose
"""

EXAMPLES = r"""
- name: Find the Engine's identity
  september.engine.engine_info:
    deployment: container
    container_name: "{{ engine_container_name }}"
  register: engine_found

- name: Lock the Engine for this run, whatever this inventory calls it
  september.engine.engine_lock:
    key: "{{ engine_found.engine.identity.key }}"
    engine: "{{ inventory_hostname }}"
    owner: "{{ 'awx job ' ~ tower_job_id if tower_job_id is defined else lookup('env', 'USER') ~ '@' ~ ansible_host }}"
    run_id: "{{ engine_run_id }}"
    ttl: 5400
  register: engine_lock_taken

- name: Keep the lock between two long steps
  september.engine.engine_lock:
    key: "{{ engine_found.engine.identity.key }}"
    engine: "{{ inventory_hostname }}"
    owner: "{{ engine_lock_taken.lock.owner }}"
    run_id: "{{ engine_run_id }}"
    ttl: 5400
    state: refreshed

- name: Say when an expired lock was taken over
  ansible.builtin.debug:
    msg: "Took over the lock of {{ engine_lock_taken.lock.taken_over.owner }}"
  when: engine_lock_taken.lock.taken_over

- name: Release the lock at the end of the run
  september.engine.engine_lock:
    key: "{{ engine_found.engine.identity.key }}"
    run_id: "{{ engine_run_id }}"
    state: absent
  register: engine_lock_released
  failed_when: engine_lock_released.lock.is_held and engine_lock_released.lock.run_id == engine_run_id
"""

RETURN = r"""
lock:
  description: The lock after the run (predicted in check mode).
  returned: always
  type: dict
  contains:
    engine:
      description: The Engine's name (O(engine), else O(key)).
      type: str
      returned: always
      sample: sept-u001
    key:
      description: The key the lock is taken by (O(key), else O(engine)).
      type: str
      returned: always
      sample: volume:engine-data-u001
    path:
      description: The lock file.
      type: str
      returned: always
      sample: /var/lib/september-engine/locks/engine-data-u001.lock
    is_held:
      description: Whether a run holds the lock now.
      type: bool
      returned: always
      sample: true
    owner:
      description: Who holds it, null when free.
      type: str
      returned: always
      sample: awx job 42
    run_id:
      description: The run that holds it, null when free.
      type: str
      returned: always
      sample: "42"
    acquired_at:
      description: When it was taken (UTC, ISO 8601), null when free.
      type: str
      returned: always
      sample: "2026-05-04T02:00:00Z"
    expires_at:
      description: When it expires (UTC, ISO 8601), null when free.
      type: str
      returned: always
      sample: "2026-05-04T03:30:00Z"
    action:
      description: What was done, V(acquire), V(refresh), V(take_over), V(release), V(not_held) or V(refused).
      type: str
      returned: always
      sample: acquire
    taken_over:
      description: The expired lock that was taken over (C(owner), C(run_id), C(acquired_at), C(expired_at)), else null.
      type: dict
      returned: always
      sample: {"owner": "alice@laptop", "run_id": "b1c2", "acquired_at": "2026-05-04T00:00:00Z",
               "expired_at": "2026-05-04T01:00:00Z"}
"""

from ansible_collections.september.engine.plugins.module_utils._errors import LockedError, OptionsError
from ansible_collections.september.engine.plugins.module_utils._lock import EngineLock, Holder
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule


def _text(holder: Holder | None) -> str:
    return f"{holder.describe()}\n" if holder else "free\n"


class LockManager:
    """Takes or releases the lock of one Engine and shapes the result."""

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.lock = EngineLock(self.p["lock_dir"], self.p["engine"], key=self.p["key"])

    def run(self) -> dict:
        try:
            return self._run()
        except OSError as exc:  # the lock folder: missing permissions, a full disk, a file where a folder should be
            raise LockedError(f"Cannot use the lock directory {self.p['lock_dir']}: {exc}") from exc

    def _run(self) -> dict:
        p = self.p
        if p["state"] == "present":
            plan = self.lock.acquire(p["owner"], p["run_id"], p["ttl"], check_mode=self.module.check_mode)
            changed = plan["action"] in ("acquire", "take_over")
        elif p["state"] == "refreshed":
            plan = self.lock.refresh(p["owner"], p["run_id"], p["ttl"], check_mode=self.module.check_mode)
            changed = False
            if plan.get("was_expired"):
                self.module.warn(
                    f"The lock of Engine {self.lock.engine} had expired at {plan['before'].expires_at} (nobody took it "
                    "over); refreshed. Refresh more often than its ttl."
                )
        else:
            plan = self.lock.release(p["run_id"], p["force"], check_mode=self.module.check_mode)
            changed = plan["action"] == "release"
            if plan["action"] == "refused":
                self.module.warn(
                    f"Not releasing the lock of Engine {self.lock.engine}: it is held by {plan['before'].describe()}, "
                    f"not by run {p['run_id']} (force=true releases it)."
                )
        before, after = plan["before"], plan["after"]
        taken_over = None
        if plan["action"] == "take_over":
            taken_over = {
                "owner": before.owner,
                "run_id": before.run_id,
                "acquired_at": before.acquired_at,
                "expired_at": before.expires_at,
            }
            self.module.warn(
                f"Took over the expired lock of Engine {self.lock.engine}, held by {before.owner} (run "
                f"{before.run_id}) since {before.acquired_at}, expired at {before.expires_at}."
            )
        lock = {
            "engine": self.lock.engine,
            "key": self.lock.key,
            "path": self.lock.path,
            "is_held": after is not None,
            "owner": after.owner if after else None,
            "run_id": after.run_id if after else None,
            "acquired_at": after.acquired_at if after else None,
            "expires_at": after.expires_at if after else None,
            "action": plan["action"],
            "taken_over": taken_over,
        }
        result = {"changed": changed, "lock": lock}
        if self.module._diff and changed:
            result["diff"] = {
                "before": _text(before),
                "after": _text(after),
                "before_header": self.lock.path,
                "after_header": self.lock.path,
            }
        return result


def main() -> None:
    module = EngineModule(
        dict(
            engine=dict(type="str"),
            key=dict(type="str", no_log=False),
            owner=dict(type="str"),
            run_id=dict(type="str", required=True),
            ttl=dict(type="int", default=3600),
            lock_dir=dict(type="path", default="/var/lib/september-engine/locks"),
            state=dict(type="str", default="present", choices=["present", "refreshed", "absent"]),
            force=dict(type="bool", default=False),
        ),
        required_if=[("state", "present", ("owner",)), ("state", "refreshed", ("owner",))],
        required_one_of=[("engine", "key")],
    )

    def work() -> dict:
        if module.params["ttl"] < 1:
            raise OptionsError(f"ttl must be at least 1 second, not {module.params['ttl']}.")
        return LockManager(module).run()

    module.run(work)


if __name__ == "__main__":
    main()
