# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one way a module of the collection starts, fails and ends.

Every module is its options, a manager object (in module_utils) that does the work, and a few lines of
``main()``::

    module = EngineModule(dict(name=dict(type="str", required=True)), shared=[docker_argument_spec()], docker=True)
    module.run(lambda: Manager(module.params, module.check_mode).run())

``EngineModule`` merges the shared argument specs (each paired with its doc fragment), checks for the Docker SDK
when the module needs it, and ``run()`` turns an ``EngineModuleError`` into one ``fail_json`` with the message a
tired operator reads, keeps a ``diff`` only under ``--diff``, passes the manager's warnings on, and exits.
(community.docker's ``AnsibleDockerClient`` is the shape.)
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.september.engine.plugins.module_utils._docker import check_docker_sdk
from ansible_collections.september.engine.plugins.module_utils._errors import EngineModuleError
from ansible_collections.september.engine.plugins.module_utils._lock import lock_keeper


class EngineModule(AnsibleModule):
    """An AnsibleModule with the collection's shared options, its Docker check and its one error path."""

    def __init__(self, argument_spec: dict, *, shared=(), docker: bool = False, **kwargs):
        spec: dict = {}
        for part in shared:
            spec.update(part)
        spec.update(argument_spec)
        kwargs.setdefault("supports_check_mode", True)
        super().__init__(argument_spec=spec, **kwargs)
        #: Warnings a manager collects while it works: reported whether it succeeds or fails.
        self.notes: list[str] = []
        if docker:
            check_docker_sdk(self)

    def check_sdk(self) -> None:
        """For managers that reach Docker only sometimes: fail here, clearly, when the Docker SDK is missing."""
        check_docker_sdk(self)

    def run(self, work, *, locked: bool = False, fail_details=None) -> None:
        """Exit with what ``work()`` returns (the module's return values, ``changed`` among them).

        ``work`` builds the manager and runs it: whatever it raises goes through the one error path. ``locked``:
        hold (and keep alive) the Engine's lock of the module's ``lock`` option while it works. An
        ``EngineModuleError`` fails the module with its message and details (and ``fail_details()``, what the
        manager did before it failed). A ``diff`` in the result is returned only under ``--diff``. The
        ``notes`` are reported as warnings whether it succeeded or failed.
        """
        try:
            if locked:
                with lock_keeper(self.params.get("lock"), self.check_mode, self.warn):
                    result = work()
            else:
                result = work()
        except EngineModuleError as exc:
            self._warn_all()
            self.fail_json(msg=exc.msg, **dict(exc.details, **(fail_details() if fail_details else {})))
        self._warn_all()
        result = dict(result)
        result.setdefault("changed", False)
        diff = result.pop("diff", None)
        if diff is not None and self._diff:
            result["diff"] = diff
        self.exit_json(**result)

    def _warn_all(self) -> None:
        for note in self.notes:
            self.warn(note)
