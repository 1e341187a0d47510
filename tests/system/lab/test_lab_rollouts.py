# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Rollouts as users run them (issue 13): upgrade.yml and rollback.yml over SSH across two lab Docker hosts and a
local Engine, in one inventory.

One lab for the module (``standard_lab``): hosts h1 (Compose v2) and h2 (Compose v1), each with a per-user container
Engine and a Compose project Engine on its own loopback, plus one local per-user Engine. In file order:

1. upgrade.yml to 2.4.0 across the five under light load, at ``-vvv`` over SSH (no pipelining: the modules are
   copied to the hosts as files): every Engine on 2.4.0, every acknowledged write kept; then, on the same run, the
   key and the webhook URL are nowhere in its output, its report or the files left on the lab hosts;
2. rollback.yml on h1's per-user container and h2's Compose project: 2.3.0, brains restored on their hosts;
3. upgrade.yml to 2.4.1 (health never ok) with h1's per-user container allowlisted as the canary: rolled back with
   its brain restored on h1, nobody else touched;
4. the Engines rolled back in 2 and 3 upgraded again (the Compose one was defect D3, fixed).

Each test states the versions it starts from; when they are not so (a test before it failed, or it runs alone), the
playbooks themselves bring the Engines there first (``LabRollouts.ensure``) and the output says so.

What each side must hold after a run: the report, the diagnostics and the webhook's messages on the CONTROLLER (the
webhook receiver listens on the controller's loopback: a message sent from a Docker host never arrives); snapshots and
locks on each Engine's own Docker host under /var/lib/september-engine (read there, through the lab host); nothing of
a lab Engine's state on the controller, no report on a lab host.

Load: the lab Engines listen on their host's loopback only, so the load generator on the controller reaches them
through a relay (labrollout.Relay: a TCP forwarder inside each lab host and one in the test process); the local
Engine directly. Every acknowledged turn and feedback is looked for in the brains, read on their own hosts.
"""

from __future__ import annotations

import json
import re
import stat
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from engine_testkit.ansible import REPO_ROOT, PlaybookRun, run_playbook
from engine_testkit.dockerhosts import LabEngine, LabHost
from engine_testkit.fleet import BASELINE_VERSION, Engine
from engine_testkit.loadgen import LoadGenerator
from engine_testkit.pathimport import import_path
from engine_testkit.settings import ANSIBLE_ENV, FAST_VARS, FORKS, probe_vars
from engine_testkit.waits import wait_until
from engine_testkit.webhook import WebhookReceiver

HERE = Path(__file__).resolve().parent


H: Any = import_path("september_lab_rollout_helpers", HERE / "labrollout.py")
pytestmark = pytest.mark.timeout(600)
PLAYBOOKS = REPO_ROOT / "playbooks"
GOOD, BAD = "2.4.0", "2.4.1"
#: The reference Engine's migrations on 2.3.0 end at 0005; 2.4.x adds 0006.
BASELINE_LAST = "0005"
#: About one turn a second per Engine: light, and enough for the canary to be judged within its bake.
RATE = 1.0
#: The fast settings, two batches (the canary, then the rest), a verdict on 10 turns.
RUN_VARS: dict[str, Any] = {
    **FAST_VARS,
    "engine_rollout_stages": "1,100%",
    "engine_upgrade_metrics_min_turns": 10,
    "engine_upgrade_canary_max_bake_seconds": 40,
}


class LabRollouts:
    """The module's lab, its runs (output kept under the module's folder) and what they left, by side."""

    def __init__(self, std: Any, tmp: Path):
        self.std, self.tmp = std, tmp
        self.report_dir = tmp / "reports"
        self.runs: list[tuple[str, float, int]] = []
        #: Engines whose last change was a rollback (rollback.yml, or a canary's rescue).
        self.rolled_back: set[str] = set()

    @property
    def hosts(self) -> list[LabHost]:
        return self.std.lab.hosts

    @property
    def key(self) -> str:
        return self.std.lab.api_key

    def engines(self) -> list[Engine]:
        return H.all_engines(self.std)

    def engine(self, engine_id: str) -> Engine:
        return next(e for e in self.engines() if e.engine_id == engine_id)

    def on(self, host: int, model: str) -> LabEngine:
        """The lab Engine of ``model`` on host h<host>."""
        return next(e for e in self.hosts[host - 1].engines if e.model == model)

    def run(
        self,
        playbook: str,
        label: str,
        *,
        canaries: tuple[str, ...] = (),
        limit: list[str] | None = None,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        **extra: Any,
    ) -> PlaybookRun:
        inventory = H.write_inventory(self.std, self.tmp / f"inventory-{len(self.runs) + 1:02d}.yml", canaries)
        started = time.monotonic()
        run = run_playbook(
            PLAYBOOKS / playbook,
            inventory=inventory,
            limit=",".join(limit) if limit else None,
            extra_vars={**RUN_VARS, "engine_report_dir": str(self.report_dir), **extra},
            args=[*FORKS, *(args or [])],
            env=ANSIBLE_ENV if env is None else env,
            timeout=540,
        )
        seconds = time.monotonic() - started
        self.runs.append((label, seconds, run.rc))
        out = self.tmp / f"run{len(self.runs):02d}-{re.sub(r'[^A-Za-z0-9]+', '-', label)}"
        Path(f"{out}.out").write_text(run.stdout + "\n--- stderr\n" + run.stderr)
        Path(f"{out}.json").write_text(json.dumps(run.data))
        print(f"--- {label}: rc={run.rc} {seconds:.1f}s ({out}.out)")
        print(run.stdout[-2500:])
        return run

    def ensure(self, wanted: dict[str, str]) -> None:
        """Bring Engines to the versions a test starts from (2.3.0 or 2.4.0), with the playbooks, when they are not."""
        now = H.versions(self.std)
        down = sorted(e for e, v in wanted.items() if v == BASELINE_VERSION and now[e] != BASELINE_VERSION)
        up = sorted(e for e, v in wanted.items() if v == GOOD and now[e] != GOOD)
        if down:
            print(f"restoring the starting state: rollback.yml on {down}")
            assert self.run("rollback.yml", "restore 2.3.0", limit=down).rc == 0, "could not restore 2.3.0"
        if up:
            print(f"restoring the starting state: upgrade.yml to {GOOD} on {up}")
            run = self.run(
                "upgrade.yml",
                f"restore {GOOD}",
                limit=up,
                engine_target_version=GOOD,
                engine_upgrade_undecided="proceed",
            )
            assert run.rc == 0, f"could not restore {GOOD}"
        now = H.versions(self.std)
        assert {e: now[e] for e in wanted} == wanted, now

    def controller_state(self) -> set[Path]:
        """Every file under the controller's /var/lib/september-engine and the local Engine's state folder."""
        roots = [Path(H.STATE_DIR), self.std.local_state]
        return {p for root in roots if root.exists() for p in root.rglob("*") if p.is_file()}

    def assert_sides(self, run_dir: Path, controller_before: set[Path]) -> None:
        """The run's report on the controller only; no lab Engine's snapshot or lock on the controller; locks
        released on every host."""
        run_id = run_dir.name
        assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
        for path in run_dir.glob("*.*"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        for host in self.hosts:
            assert H.reports_on_host(host, run_id) == [], f"a report on the Docker host {host.name}"
            assert H.held_locks(host) == [], f"a lock left held on {host.name}"
        lab_marks = {e.engine_id for e in self.std.lab.engines} | {e.volume for e in self.std.lab.engines}
        new = self.controller_state() - controller_before
        wrong = sorted(str(p) for p in new if any(mark in str(p) for mark in lab_marks))
        assert wrong == [], f"lab Engines' state written on the controller: {wrong}"


@pytest.fixture(scope="module")
def lab(standard_lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRollouts]:
    std = standard_lab
    started = time.monotonic()
    std.lab.load_images([GOOD, BAD])
    print(f"lab up in {std.up_seconds:.1f}s, images {GOOD} and {BAD} loaded in {time.monotonic() - started:.1f}s")
    rollouts = LabRollouts(std, tmp_path_factory.mktemp("lab-rollouts"))
    yield rollouts
    for label, seconds, rc in rollouts.runs:
        print(f"run {label}: rc={rc} {seconds:.1f}s")


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def start_load(lab: LabRollouts, stack: ExitStack) -> LoadGenerator:
    """Light load on all five Engines (lab Engines through the relays); returns once each acknowledged a turn."""
    targets: list[Any] = []
    for host in lab.hosts:
        targets += stack.enter_context(H.Relay(host)).targets
    targets += lab.std.local.engines
    lg = LoadGenerator(targets, rate=RATE, feedback_ratio=0.5, max_seconds=480)
    lg.start()
    stack.callback(lg.stop, 10)
    wait_until(lambda: all(lg.acked_task_ids(t.engine_id) for t in targets), 30,
               "the load to get going (a turn acknowledged on each Engine)", last=lambda: lg.stats()["totals"])
    return lg


def entries(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["engine"]: e for e in report["engines"]}


# ---------------------------------------------------------------------------------------------- a good release

#: Probe turns per Engine in the good upgrade: evidence next to the load, and the key given to a module on each host.
PROBES = 5


@pytest.fixture(scope="module")
def good(lab: LabRollouts) -> dict[str, Any]:
    """upgrade.yml to 2.4.0 across the five Engines under light load, at -vvv over SSH without pipelining (the modules
    are copied to the lab hosts as files), a webhook receiver on the controller: run once, judged by two tests."""
    lab.ensure({e.engine_id: BASELINE_VERSION for e in lab.engines()})
    controller_before = lab.controller_state()
    env = {k: v for k, v in ANSIBLE_ENV.items() if k != "ANSIBLE_PIPELINING"}
    locks = [Path(H.STATE_DIR) / "locks", lab.std.local_state / "locks"]
    with WebhookReceiver() as receiver, ExitStack() as stack, H.LockWatcher(lab.hosts, locks) as seen:
        lg = start_load(lab, stack)
        run = lab.run(
            "upgrade.yml",
            f"{GOOD} under load at -vvv",
            args=["-vvv"],
            env=env,
            engine_target_version=GOOD,
            engine_webhook_url=receiver.url,
            engine_upgrade_probe_turns=PROBES,
        )
        stack.close()
        hook = {
            "url": receiver.url,
            "token": receiver.token,
            "messages": list(receiver.messages),
            "end": receiver.texts("end"),
        }
    print("load:", json.dumps(lg.stats()["totals"]), f"lock polls unanswered: {seen.missed}")
    assert seen.error is None, seen.error
    return {"run": run, "lg": lg, "hook": hook, "controller_before": controller_before, "locks": seen}


def test_good_release_to_all_five_engines_under_light_load(lab: LabRollouts, good: dict[str, Any]) -> None:
    run, lg, hook = good["run"], good["lg"], good["hook"]
    assert run.rc == 0, run.stdout[-4000:]
    path, report = H.newest_report(lab.report_dir)
    assert report["outcome"] == "completed" and report["untouched"] == [] and report["lost"] == [], report["outcome"]
    found = entries(report)
    assert sorted(found) == sorted(e.engine_id for e in lab.engines())
    assert {e["status"] for e in found.values()} == {"upgraded"}, {k: e["status"] for k, e in found.items()}
    # Every Engine on 2.4.0 (read from its own Docker daemon), every acknowledged write in its brain (read on its host).
    assert H.versions(lab.std) == {e.engine_id: GOOD for e in lab.engines()}
    for engine in lab.engines():
        assert lg.acked_task_ids(engine.engine_id), f"{engine.engine_id}: no acknowledged turn"
        assert H.writes_missing(lg, engine) == {"tasks": set(), "signals": set()}, engine.engine_id
        assert H.brain_of(engine)["migrations"][-1] == "0006"
    assert lg.stats()["totals"]["wrong_answers"] == 0
    # The canary was judged on evidence: its turns against the controls', measured over SSH on their own hosts.
    (canary,) = [e for e in found.values() if e["batch"] == 1]
    assert canary["evidence"] == "pass" and canary["verdict"]["decision"] == "pass", canary["verdict"]
    assert canary["verdict"]["evidence"]["canary"]["turns"] > 0, canary["verdict"]
    assert canary["verdict"]["evidence"]["control"]["turns"] > 0, canary["verdict"]
    assert canary["evals"]["before"]["total"] == PROBES, canary["evals"]
    assert report["plan"]["canaries"][0]["why"], report["plan"]
    # Snapshots and locks on each Engine's own host (the local one's in its own folder on the controller), the
    # checksums those of the files there; nothing of a lab Engine on the controller, no report on a lab host.
    for host in lab.hosts:
        assert sorted(H.listdir(host, f"{H.STATE_DIR}/snapshots")) == sorted(e.engine_id for e in host.engines)
        for engine in host.engines:
            snap = found[engine.engine_id]["snapshot"]
            name = snap["name"] if isinstance(snap, dict) else snap
            manifest = H.manifests(host, engine.engine_id)[name]
            assert manifest["kind"] == "pre-upgrade" and manifest["engine"]["inventory_name"] == engine.engine_id
            assert manifest["applied_migrations"][-1] == BASELINE_LAST
            folder = f"{H.STATE_DIR}/snapshots/{engine.engine_id}"
            assert host.sha256(f"{folder}/{name}.sqlite") == manifest["sha256"]
            assert H.sh(host, ["stat", "-c", "%a", folder]) == (0, "700\n")
        # Each Engine's lock (named after its brain's volume) was held on its own host during the run, and only there.
        assert good["locks"].on_host[host.name] == {f"{e.volume}.lock" for e in host.engines}, good["locks"].on_host
    (local,) = lab.std.local.engines
    assert sorted(p.name for p in (lab.std.local_state / "snapshots").iterdir()) == [local.engine_id]
    seen = good["locks"].on_controller
    assert f"{local.volume}.lock" in seen, seen
    lab_locks = {f"{e.volume}.lock" for e in lab.std.lab.engines}
    assert not lab_locks & seen, f"a lab Engine's lock on the controller: {seen}"
    lab.assert_sides(path.parent, good["controller_before"])
    # The webhook on the controller: start and end, all clear on the five.
    assert [m["event"] for m in hook["messages"]] == ["start", "end"], hook["messages"]
    assert hook["end"][0].startswith(f"All clear: the upgrade to {GOOD} is done on 5 Engines"), hook["end"]


def test_key_and_webhook_url_never_shown_by_the_vvv_upgrade_over_ssh(lab: LabRollouts, good: dict[str, Any]) -> None:
    """Neither the key nor the webhook URL is in the -vvv upgrade's output, its results, the report, or any file
    Ansible or the collection left on the lab hosts (/tmp, /root/.ansible, the state folder)."""
    run, hook = good["run"], good["hook"]
    # It went over SSH, verbosely, copying the modules to the hosts...
    assert "ESTABLISH SSH CONNECTION FOR USER: root" in run.stdout
    assert "PUT " in run.stdout and "AnsiballZ_" in run.stdout
    # ...with the key given to the modules (masked as they show it) and the webhook called.
    assert '"api_key": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"' in run.stdout
    assert hook["messages"], "the webhook was never called"
    secrets = {"key": lab.key, "webhook URL": hook["url"], "webhook token": hook["token"]}
    texts = {"stdout": run.stdout, "stderr": run.stderr, "results": json.dumps(run.data)}
    for what, secret in secrets.items():
        for where, text in texts.items():
            assert secret not in text, f"the {what} is in the run's {where}"
        for host in lab.hosts:
            found = H.files_holding(host, secret, ["/tmp", "/root/.ansible", H.STATE_DIR])
            assert found == [], f"the {what} is in files on {host.name}: {found}"
        on_controller = [str(p) for p in lab.report_dir.rglob("*") if p.is_file() and secret in p.read_text()]
        assert on_controller == [], f"the {what} is in report files: {on_controller}"


# ---------------------------------------------------------------------------------------------- rollback.yml


def test_rollback_playbook_on_a_lab_engine_of_each_model(lab: LabRollouts) -> None:
    """After a good upgrade: rollback.yml on h1's per-user container and h2's Compose (v1) project, over SSH."""
    chosen = [lab.on(1, "container"), lab.on(2, "compose")]
    ids = [e.engine_id for e in chosen]
    lab.ensure(dict.fromkeys(ids, GOOD))
    before = H.containers(lab.std)
    controller_before = lab.controller_state()
    run = lab.run("rollback.yml", "rollback.yml on h1-u001 and h2-c001", limit=ids)
    assert run.rc == 0, run.stdout[-4000:]
    lab.rolled_back.update(ids)
    path, report = H.newest_report(lab.report_dir, "rollback")
    assert report["failed"] == [] and report["not_reached"] == [], report
    by_engine = entries(report)
    assert sorted(by_engine) == sorted(ids)
    after = H.containers(lab.std)
    for engine in chosen:
        host = engine.host
        assert host is not None
        entry = by_engine[engine.engine_id]
        assert (entry["kind"], entry["to_version"]) == ("image+brain", BASELINE_VERSION), entry
        assert engine.image_version() == BASELINE_VERSION
        H.wait_healthy([engine], 30)
        assert H.brain_on_host(engine)["migrations"][-1] == BASELINE_LAST
        # The brain it replaced is kept on its own host, as a snapshot of kind pre-restore.
        kinds = [m["kind"] for m in H.manifests(host, engine.engine_id).values()]
        assert "pre-restore" in kinds, kinds
        other = next(h for h in lab.hosts if h is not host)
        assert not H.exists(other, f"{H.STATE_DIR}/snapshots/{engine.engine_id}")
    for eid, state in before.items():
        if eid not in ids:
            assert after[eid] == state, eid
    lab.assert_sides(path.parent, controller_before)


# ---------------------------------------------------------------------------------------------- a bad release


def test_bad_release_canary_on_a_lab_host_is_rolled_back_there(lab: LabRollouts, hook: WebhookReceiver) -> None:
    """2.4.1 (health never ok) with the canary allowlisted on h1 (its per-user container): rolled back with its
    brain restored on h1; nobody else touched; the report, the diagnostics and the webhook on the controller."""
    canary = lab.on(1, "container")
    host = canary.host
    assert host is not None
    lab.ensure({canary.engine_id: BASELINE_VERSION})
    others = sorted(e.engine_id for e in lab.engines() if e.engine_id != canary.engine_id)
    before = H.containers(lab.std)
    controller_before = lab.controller_state()
    run = lab.run(
        "upgrade.yml",
        f"{BAD} canary on h1",
        canaries=(canary.engine_id,),
        engine_target_version=BAD,
        engine_webhook_url=hook.url,
        engine_upgrade_health_timeout=20,
    )
    assert run.rc == 2, run.stdout[-4000:]
    lab.rolled_back.add(canary.engine_id)
    path, report = H.newest_report(lab.report_dir)
    assert report["outcome"] == "stopped_rolled_back", report["outcome"]
    # The plan put the allowlisted Engine first, and says why.
    (chosen,) = report["plan"]["canaries"]
    assert chosen["engine"] == canary.engine_id and "engine_canary" in chosen["why"], chosen
    (entry,) = report["engines"]
    assert entry["engine"] == canary.engine_id and entry["status"] == "rolled_back", entry
    assert entry["evidence"] == "health" and entry["reason"].startswith("verify: health: "), entry["reason"]
    assert entry["rollback_kind"] == "image+brain" and entry["rollback"]["brain_restored"] is True, entry["rollback"]
    assert sorted(report["untouched"]) == others
    # On its host: back on 2.3.0, healthy, its brain's migrations back to 0005, the failed container kept there.
    after = H.containers(lab.std)
    assert after[canary.engine_id][2] == f"engine:{BASELINE_VERSION}"
    assert canary.image_version() == BASELINE_VERSION
    H.wait_healthy([canary], 30)
    assert H.brain_on_host(canary)["migrations"][-1] == BASELINE_LAST
    assert f"{canary.container_name}--failed" in host.docker_ps(all_=True)
    # The snapshot it was restored from, and the bad-window brain kept, are on h1, in the canary's folder.
    kept = H.manifests(host, canary.engine_id)
    folder = f"{H.STATE_DIR}/snapshots/{canary.engine_id}"
    assert entry["rollback"]["snapshot"] in kept, (entry["rollback"]["snapshot"], H.find(host, folder))
    restored = kept[entry["rollback"]["snapshot"]]
    assert restored["kind"] == "pre-upgrade" and restored["applied_migrations"][-1] == BASELINE_LAST, restored
    assert restored["engine"]["inventory_name"] == canary.engine_id
    previous = kept[entry["rollback"]["previous_brain"]["name"]]
    assert previous["kind"] == "pre-restore" and previous["applied_migrations"][-1] == "0006", previous
    assert not H.exists(lab.hosts[1], f"{H.STATE_DIR}/snapshots/{canary.engine_id}")
    # Nobody else touched: same containers, same start times, same images.
    for eid in others:
        assert after[eid] == before[eid], eid
    # The controller holds the report and the diagnostics; no Docker host holds either; locks released.
    assert (path.parent / "upgrade.md").is_file()
    assert (path.parent / "diagnostics" / canary.engine_id / "engine.log").is_file()
    lab.assert_sides(path.parent, controller_before)
    # The webhook reached the controller's loopback: start, the rollback, the end.
    assert [m["event"] for m in hook.messages] == ["start", "rollback", "end"], hook.messages
    assert canary.engine_id in hook.texts("rollback")[0] and BASELINE_VERSION in hook.texts("rollback")[0]
    assert hook.texts("end")[0].startswith("ABORTED"), hook.texts("end")


# ---------------------------------------------------------------------------------------------- after a rollback


@pytest.mark.parametrize(("host", "model"), [(1, "container"), (2, "compose")])
def test_a_rolled_back_engine_can_be_upgraded_again(lab: LabRollouts, host: int, model: str) -> None:
    """The release is fixed, the job runs again: an Engine rolled back (h1's per-user container by the 2.4.1 canary's
    rescue, h2's Compose project by rollback.yml) upgrades like any other."""
    engine = lab.on(host, model)
    if engine.engine_id not in lab.rolled_back:  # run alone: roll it back first
        lab.ensure({engine.engine_id: GOOD})
        assert lab.run("rollback.yml", "roll back first", limit=[engine.engine_id]).rc == 0
        lab.rolled_back.add(engine.engine_id)
    assert engine.image_version() == BASELINE_VERSION
    run = lab.run(
        "upgrade.yml",
        f"{GOOD} again after a rollback of {model}",
        limit=[engine.engine_id],
        engine_target_version=GOOD,
        # rollback.yml recorded the release it rolled back from (Don't redeploy in panic): the fix is acknowledged.
        engine_upgrade_allow_rolled_back_release=True,
        engine_upgrade_rolled_back_release_reason="fixed; lab test of the upgrade after a rollback",
        **probe_vars(6, 6),
    )
    _path, report = H.newest_report(lab.report_dir)
    (entry,) = report["engines"]
    assert run.rc == 0 and entry["status"] == "upgraded", (entry["status"], entry.get("reason"))
    assert engine.image_version() == GOOD
    assert H.brain_on_host(engine)["migrations"][-1] == "0006"
