# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    """The shared ``lock`` option (private fragment, paired with module_utils/_lock.py ``lock_argument_spec``).

    A module that changes an Engine, or works on it for long, applies it in three lines::

        argument_spec.update(lock_argument_spec())                 # 1. the option
        ...
        with lock_keeper(module.params["lock"], module.check_mode, module.warn):   # 2. hold it while working
            result = Manager(module, ...).run()                     # 3. the work

    with ``from ...module_utils._lock import lock_argument_spec, lock_keeper`` and
    ``extends_documentation_fragment: [september.engine._lock]``. A LockedError raised on entry (another run
    holds the lock) or on exit (the lock was lost while working) is an EngineModuleError: the module's one
    error path turns it into fail_json.
    """

    DOCUMENTATION = r"""
options:
  lock:
    description:
      - The Engine's lock (see M(september.engine.engine_lock)) that this run holds, kept alive while the module works.
      - On start the module takes it for O(lock.run_id) (it refreshes the lock when this run holds it, takes it when
        it is free or expired), and fails before changing anything when another run holds it. While it works, a
        background thread refreshes it every O(lock.ttl)/3 seconds, so that a long pull, snapshot or bake never lets
        it expire under the run. At the end it releases a lock it took itself; a lock the run held before stays held.
      - Without it, the module takes no lock (the playbook takes one with M(september.engine.engine_lock)).
    type: dict
    suboptions:
      key:
        description:
          - The Engine's identity key, C(volume:<name>), C(bind:<host path>) or C(container:<name>), as
            M(september.engine.engine_info) returns it in C(engine.identity.key). Names the lock file.
        type: str
        required: true
      engine:
        description: The Engine's name for people (its inventory name), in messages and in the lock file.
        type: str
      run_id:
        description: The run that holds the lock (as given to M(september.engine.engine_lock)).
        type: str
        required: true
      owner:
        description: Who holds it, for the error of a run that has to wait.
        type: str
        required: true
      ttl:
        description: Seconds each refresh extends the lock by; it is refreshed every O(lock.ttl)/3 seconds.
        type: int
        default: 3600
      release:
        description:
          - Release the lock when the module succeeds, even when the run held it before, because this is the run's last
            step on this Engine (an upgrade's finalize). After a failure the lock stays with the run (for its rollback).
        type: bool
        default: false
      dir:
        description: Directory of the lock files, the same for every run on this host (an absolute path).
        type: path
        default: /var/lib/september-engine/locks
"""
