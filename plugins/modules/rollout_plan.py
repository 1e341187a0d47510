#!/usr/bin/python
# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: rollout_plan
short_description: Plan a rollout once (batches, canaries, controls, run id) and check the upgrade's settings first
version_added: 0.3.0
description:
  - Computes, on the controller, the one plan of an upgrade run that the play's C(serial) and the role
    P(september.engine.engine_upgrade#role) both use, so that they always agree.
  - The stages are cumulative shares of the Engines given in O(engines) (the ones the run really targets); each
    stage's count is rounded up, so the canary is at least one Engine, and the rest of the fleet follows the last
    stage.
  - The order of the rollout, and so its canaries, is chosen, not whatever is first in the inventory. Engines marked
    O(engines[].canary) (the group C(engine_canary)) come first; then the Engines are spread across Docker hosts (no
    host gets a second Engine while another has none); within a host, a stable hash order (sha256 of the name), so a
    re-run, or an inventory where other Engines were added or removed, keeps the same canaries. The later batches are
    the next slices of the same order. RV(plan.canaries) says why each canary was chosen.
  - The controls of a batch are Engines of later batches (not upgraded while the batch is watched), one per Docker
    host in turn, the hosts where the batch has Engines first; the last batch has none.
  - Before planning, checks the upgrade's settings (O(settings)) - types, ranges and combinations a user can get
    wrong (a target version that is empty or looks like a stage, stages that do not grow, a bake interval longer
    than the bake, a health timeout no Engine can meet, a lock TTL shorter than one Engine's upgrade, thresholds out
    of range, evals set twice, a webhook URL that is not http(s), a report folder the controller cannot write, a
    host pattern that matches no Engine, ...). Every problem is reported at once, one line each naming the
    variable and what to fix, and the module fails before anything changes.
  - Pure computation on the controller; changes nothing. Run it once per run (C(run_once), C(delegate_to=localhost)).
author:
  - September Engine maintainers (@september-engine)
options:
  engines:
    description:
      - The Engines of the run, after C(--limit), one entry each, in inventory order.
      - The filter P(september.engine.rollout_engines#filter) builds this list from C(ansible_play_hosts_all) and
        C(hostvars).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The Engine's inventory name.
        type: str
        required: true
      docker_host:
        description:
          - The Docker host the Engine runs on (canaries and controls are spread across them).
          - Defaults to O(engines[].name).
        type: str
      canary:
        description: Allowlisted as a canary (a member of the group C(engine_canary)).
        type: bool
        default: false
  stages:
    description:
      - The rollout stages, cumulative, each a percentage (V(5%)) or a number of Engines (V(1)); a list, or one
        comma-separated string as an AWX survey gives it.
      - Defaults to C(engine_upgrade_rollout_stages) or C(engine_rollout_stages) in O(settings), else
        V(5%,10%,50%,100%).
    type: raw
  run_id:
    description:
      - The run's id (report folder, snapshot manifests, locks). Letters, digits, V(.), V(_) and V(-).
      - Defaults to C(engine_run_id) in O(settings), else a new one, V(YYYYmmddTHHMMSSZ-<6 digits>) in UTC.
    type: str
  controls:
    description:
      - Control Engines per batch. Defaults to C(engine_upgrade_control_engines) in O(settings), else V(5).
    type: int
  settings:
    description:
      - The upgrade's variables as the run sees them, by name (C(engine_upgrade_*), C(engine_rollout_*), their short
        inventory names such as C(engine_target_version), C(engine_hosts), C(engine_run_id)). A variable not given
        takes the role's default; a short name counts when the role's name is not set. Names that look like a setting
        but are none get a warning.
      - The filter P(september.engine.rollout_settings#filter) picks them from an Engine's C(hostvars).
      - Give the secret ones (the webhook URLs) in O(secret_settings). Given here they are kept out of the module's
        result, but not out of its arguments shown at C(-vvv) when they fail their check.
    type: dict
    default: {}
  secret_settings:
    description:
      - The secret settings (C(engine_upgrade_webhook_url), C(engine_webhook_url)), never shown.
      - The filter P(september.engine.rollout_settings#filter) picks them with C(secrets=true).
    type: dict
    default: {}
  limit:
    description: The run's C(--limit) (C(ansible_limit)), only to say it in the message when no Engine is left.
    type: str
  engine_vars:
    description:
      - Each Engine's own inventory variables, by variable then by Engine (V(null) when an Engine does not set it),
        among C(engine_deployment), C(engine_container_name), C(engine_compose_dir), C(engine_url) and
        C(engine_snapshot_dir).
      - The Engines of O(engines) are checked with the settings, every problem of every Engine at once, naming the
        Engine and the variable (a hosting model that does not exist, a container name or Compose folder that is
        missing, a URL without http(s), a folder that is not absolute), so that a typo in a later batch stops the run
        before its canary is touched. What only the Docker host can tell (a folder or container that does not exist)
        is found at the Engine's pre-flight.
      - The playbook C(september.engine.upgrade) passes them from C(hostvars). Not given, no Engine variable is
        checked here.
    type: dict
    default: {}
  paused_run:
    description:
      - With C(engine_rollout_promote) or C(engine_rollout_abort) in O(settings), the AWX artifact of the run that
        paused after its canary (C(september_engine_upgrade), which an AWX workflow passes on to the next job).
        Without it (or when it is not a paused run), the newest report of a rollout to the target in
        C(engine_upgrade_report_dir) (of C(engine_run_id) when set) is the paused run.
      - A promotion continues that run (its run id; the plan's canaries must be that run's); an abort rolls its
        canaries back (RV(plan.paused)). When nothing awaits promotion, the module fails saying what it found.
    type: dict
extends_documentation_fragment:
  - september.engine._attributes
  - september.engine._attributes.READ_ONLY
notes:
  - How the playbook C(september.engine.upgrade) and the role P(september.engine.engine_upgrade#role) share the plan
    (the fact C(september_engine_rollout)) is in docs/modules.md of the collection.
  - Settings that differ per Engine (host or group variables) are checked as the first Engine of the run sees them.
seealso:
  - module: september.engine.engine_lock
"""

EXAMPLES = r"""
- name: Plan the rollout of the Engines this run targets
  september.engine.rollout_plan:
    engines: >-
      {{ ansible_play_hosts_all | september.engine.rollout_engines(hostvars,
         canaries=groups['engine_canary'] | default([])) }}
    settings: "{{ ansible_play_hosts_all | september.engine.rollout_settings(hostvars) }}"
    secret_settings: "{{ ansible_play_hosts_all | september.engine.rollout_settings(hostvars, secrets=true) }}"
    limit: "{{ ansible_limit | default(omit) }}"
  delegate_to: localhost
  run_once: true
  register: rollout

- name: Say who the canaries are, and why
  ansible.builtin.debug:
    msg: "{{ rollout.plan.canaries | map(attribute='engine') | zip(rollout.plan.canaries | map(attribute='why')) }}"
  run_once: true

- name: A plan from explicit Engines (no inventory), the role's settings from this play's variables
  september.engine.rollout_plan:
    engines:
      - {name: sept-u001, docker_host: docker-a}
      - {name: sept-u002, docker_host: docker-a}
      - {name: sept-u003, docker_host: docker-b, canary: true}
    stages: "1,100%"
    run_id: "{{ awx_job_id | default(omit) }}"
    settings: "{{ dict(names | zip(query('ansible.builtin.vars', *names))) }}"
  vars:
    names: "{{ query('ansible.builtin.varnames', '^engine_(upgrade|rollout)_|^engine_target_version$') }}"
  delegate_to: localhost
  run_once: true
  register: rollout
  failed_when: rollout.plan.total != 3
"""

RETURN = r"""
plan:
  description: The rollout plan.
  returned: success
  type: dict
  contains:
    run_id:
      description: The run's id.
      type: str
      returned: always
      sample: 20260504T020000Z-042137
    total:
      description: Number of Engines in the run.
      type: int
      returned: always
      sample: 10
    stages:
      description: The stages, as given (a survey's string split at its commas).
      type: list
      elements: str
      returned: always
      sample: ["5%", "10%", "50%", "100%"]
    serial:
      description: Batch sizes, for the play's C(serial); they sum to RV(plan.total).
      type: list
      elements: int
      returned: always
      sample: [1, 4, 5]
    batches:
      description: The Engines of each batch, in order; the first batch is the canary.
      type: list
      elements: list
      returned: always
      sample: [["sept-u007"], ["sept-u002", "sept-u009", "sept-u001", "sept-u004"], ["sept-u003", "sept-u010",
               "sept-u005", "sept-u006", "sept-u008"]]
    order:
      description: Every Engine in rollout order (the batches, flat).
      type: list
      elements: str
      returned: always
      sample: ["sept-u007", "sept-u002", "sept-u009"]
    batch_of:
      description: The 1-based batch number of each Engine.
      type: dict
      returned: always
      sample: {"sept-u007": 1, "sept-u002": 2}
    canaries:
      description: The Engines of the first batch, each with its Docker host and why it was chosen.
      type: list
      elements: dict
      returned: always
      sample: [{"engine": "sept-u007", "docker_host": "docker-b",
                "why": "spread across Docker hosts: the first on docker-b (of 3 hosts); chosen there by the stable
                        sha256 order of names"}]
    controls:
      description:
        - Per batch number (a string key), the control Engines measured next to it; V([]) for the last batch.
      type: dict
      returned: always
      sample: {"1": ["sept-u002", "sept-u003", "sept-u009"], "2": ["sept-u003", "sept-u005"], "3": []}
    docker_hosts:
      description: Number of Engines of the run per Docker host.
      type: dict
      returned: always
      sample: {"docker-a": 4, "docker-b": 3, "docker-c": 3}
    settings:
      description:
        - The resolved settings the plan play of C(upgrade.yml) needs before any Engine is touched (to read the
          record of rolled-back releases) - C(engine_upgrade_target_version), C(engine_upgrade_state_dir),
          C(engine_upgrade_report_dir), C(engine_upgrade_allow_rolled_back_release),
          C(engine_upgrade_rolled_back_release_reason).
      type: dict
      returned: always
      sample: {"engine_upgrade_target_version": "2.4.0", "engine_upgrade_state_dir": "/var/lib/september-engine",
               "engine_upgrade_report_dir": "/home/ops/september-engine-reports",
               "engine_upgrade_allow_rolled_back_release": false, "engine_upgrade_rolled_back_release_reason": ""}
    action:
      description: V(upgrade), V(promote) (continue a rollout paused after its canary) or V(abort) (roll its canaries
        back).
      type: str
      returned: always
      sample: upgrade
    pause_after_canary:
      description: The run ends after its canary batch, awaiting promotion (C(engine_rollout_pause_after_canary), not
        a promotion).
      type: bool
      returned: always
      sample: false
    paused:
      description: The paused run a promotion continues or an abort ends (C(run_id), C(target_version), C(canaries),
        each C(engine) and C(from_version)); null for V(upgrade).
      type: dict
      returned: always
      sample: {"run_id": "20260504T020000Z-042137", "target_version": "2.4.0",
               "canaries": [{"engine": "sept-u007", "from_version": "2.3.0"}]}
problems:
  description: On failure, every problem of the settings and of the Engines' variables, one line each (the message
    holds them too).
  returned: failure
  type: list
  elements: str
  sample: ["engine_upgrade_bake_interval=0: the bake checks the Engine every this many seconds; set it to 1 or more."]
"""

from ansible_collections.september.engine.plugins.module_utils import _plan, _promotion, _settings
from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError
from ansible_collections.september.engine.plugins.module_utils._module import EngineModule


class RolloutPlanner:
    """Checks the settings and the Engines, then computes the plan; all problems in one OptionsError."""

    def __init__(self, module):
        self.module = module
        self.p = module.params

    def run(self) -> dict:
        p = self.p
        given = dict(p["settings"] or {}, **(p["secret_settings"] or {}))
        self._read_given(given)
        settings, problems = _settings.validate(given)
        v = settings.values
        stages, stages_name, stage_problems = self._stages(settings, problems)
        controls = p["controls"] if p["controls"] is not None else v["engine_upgrade_control_engines"]
        if controls < 0:
            problems.append(f"controls={controls}: control Engines per batch cannot be negative (0: none).")
        run_id = p["run_id"] or v["engine_run_id"] or _plan.new_run_id()
        if p["run_id"] and not _plan.RUN_ID_RE.match(p["run_id"]):
            problems.append(
                f"run_id={p['run_id']!r}: names the run's report folder; use letters, digits, '.', '_' "
                f"and '-' only (at most 128)."
            )
        engines = _plan.check_engines(p["engines"])
        if not engines:
            pattern = settings.show("engine_hosts")
            limit = f" within --limit {p['limit']!r}" if p["limit"] else ""
            problems.append(
                f"{pattern} matches no host of the inventory{limit}: nothing to upgrade; check the "
                f"pattern (-e engine_hosts=<group or pattern>) and the inventory."
            )
        elif not stage_problems:
            problems += self._batch_problems(stages, stages_name, len(engines))
        engine_problems = _settings.engine_problems([e["name"] for e in engines], p["engine_vars"] or {})
        engine_problems += _settings.shared_container_problems(engines, p["engine_vars"] or {})
        if problems or engine_problems:
            what = "The upgrade's settings" + (" and the Engines' inventory variables" if engine_problems else "")
            problems += engine_problems
            raise OptionsError(_settings.message(problems, what), problems=problems)
        self._warn_counts(stages, len(engines))
        paused = self._paused(v)
        plan = _plan.make_plan(engines, stages, paused["run_id"] if paused else run_id, controls)
        if paused and v["engine_rollout_promote"]:
            problems = _promotion.check_promotion(paused, plan["batches"][0] if plan["batches"] else [])
            if problems:
                raise OptionsError(_settings.message(problems, "The promotion's checks"), problems=problems)
        # What upgrade.yml's plan play needs before any Engine is touched (the release gate, the promotion), as the
        # role will see it.
        plan["settings"] = {name: v[name] for name in _settings.PLAN_SETTINGS}
        plan["action"] = _promotion.action_of(v["engine_rollout_promote"], v["engine_rollout_abort"])
        plan["paused"] = paused
        plan["pause_after_canary"] = bool(v["engine_rollout_pause_after_canary"]) and plan["action"] == "upgrade"
        return {"changed": False, "plan": plan}

    def _paused(self, v: dict) -> dict | None:
        """The rollout paused after its canary that this run promotes or aborts (None for a plain upgrade)."""
        if not (v["engine_rollout_promote"] or v["engine_rollout_abort"]):
            return None
        return _promotion.find_paused(
            str(v["engine_upgrade_report_dir"]),
            str(v["engine_upgrade_target_version"]),
            artifact=self.p["paused_run"],
            run_id=str(v["engine_run_id"] or ""),
        )

    def _read_given(self, given: dict) -> None:
        """Keep the secrets among the settings out of the output, and warn of names that are no setting."""
        for name in _settings.SECRETS:
            if given.get(name):
                self.module.no_log_values.add(str(given[name]))
        for warning in _settings.unknown_names(given):
            self.module.warn(warning)

    def _stages(self, settings: _settings.Settings, problems: list) -> tuple:
        """(stages, the name they were given under, their problems): the stages option, or else the setting
        (whose problems validate() has said already); the option's problems go to `problems`."""
        if self.p["stages"] is None:
            stages = settings.values["engine_upgrade_rollout_stages"]
            return stages, settings.cite["engine_upgrade_rollout_stages"], _plan.stage_problems(stages)
        stage_problems = _plan.stage_problems(self.p["stages"])
        problems += [f"stages: {problem}." for problem in stage_problems]
        return self.p["stages"], "stages", stage_problems

    @staticmethod
    def _batch_problems(stages, stages_name: str, total: int) -> list[str]:
        try:
            _plan.batch_sizes(stages, total)
        except _plan.StageError as exc:
            return [f"{stages_name}: {exc.msg}."]
        return []

    def _warn_counts(self, stages, total: int) -> None:
        """Stages that are all plain numbers ending at 100 were most likely meant as percentages."""
        parsed = [_plan.parse_stage(stage) for stage in _plan.stage_list(stages)]
        counts_only = all(kind == "count" for kind, _value in parsed)
        if len(parsed) > 1 and counts_only and parsed[-1][1] == 100 and total != 100:
            self.module.warn(
                f"The rollout stages {_plan.stage_list(stages)} are numbers of Engines, not percentages (the run has "
                f"{total}); write them with % (5%,10%,50%,100%) if you meant shares of the fleet."
            )


def main() -> None:
    module = EngineModule(
        argument_spec=dict(
            engines=dict(
                type="list",
                elements="dict",
                required=True,
                options=dict(
                    name=dict(type="str", required=True),
                    docker_host=dict(type="str"),
                    canary=dict(type="bool", default=False),
                ),
            ),
            stages=dict(type="raw"),
            run_id=dict(type="str"),
            controls=dict(type="int"),
            settings=dict(type="dict", default={}),
            secret_settings=dict(type="dict", default={}, no_log=True),
            limit=dict(type="str"),
            engine_vars=dict(type="dict", default={}),
            paused_run=dict(type="dict"),
        ),
    )
    module.run(lambda: RolloutPlanner(module).run())


if __name__ == "__main__":
    main()
