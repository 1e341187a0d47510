# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The rollout plan: which Engines go in which batch, who the canaries are and why, which Engines are the controls.

Pure functions (no Docker, no files, no clock except for a new run id). One plan is computed once per run on the
controller (module ``rollout_plan``) and used by the play's ``serial`` and by the role, so that both always agree.

- Stages (``5%``, ``10%``, ...) are cumulative shares of the Engines the run is given (after ``--limit``); each
  stage's count is rounded up, so the canary is at least one Engine. :func:`batch_sizes` is also the
  ``rollout_batches`` filter.
- Order: Engines allowlisted as canaries first, then spread across Docker hosts (a host gets its second Engine only
  when every host has one), and within a host a stable hash order (sha256 of the name), so a re-run, or an
  inventory where other Engines were added or removed, keeps the same canaries. The later batches are the next
  slices of the same order, so every batch is spread the same way.
- Controls of a batch: Engines of LATER batches (not upgraded while the batch is watched), one per Docker host in
  turn, the hosts of the batch's own Engines first (same host, same clock, same neighbours), then the others.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
import re
import time

from ansible_collections.september.engine.plugins.module_utils._errors import OptionsError

DEFAULT_STAGES = ("5%", "10%", "50%", "100%")
DEFAULT_CONTROLS = 5
#: A run id names report folders and snapshot manifests: letters, digits and ``._-`` only.
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: A stage that looks like a release rather than a share of the fleet (a typo between two fields).
VERSION_LIKE = re.compile(r"^v?\d+\.\d+(\.\d+)?([-+.][0-9A-Za-z.-]+)?$")


class StageError(OptionsError):
    """A rollout stage, or the list of them, that cannot be turned into batches."""


# ---- stages -> batch sizes -------------------------------------------------------------------------------------


def stage_list(stages) -> list:
    """The stages as a list: a list as given, a string split at its commas (an AWX survey answer)."""
    if isinstance(stages, str) and stages.strip():
        parts = [part.strip() for part in stages.split(",")]
        if not all(parts):
            raise StageError(f"rollout stages {stages!r} hold an empty stage: write them as '5%,10%,50%,100%'")
        stages = parts
    if not isinstance(stages, (list, tuple)) or not stages:
        raise StageError(
            "rollout stages must be a non-empty list, for example ['5%', '10%', '50%', '100%'], "
            "or a comma-separated string such as '5%,10%,50%,100%'"
        )
    return list(stages)


def parse_stage(stage) -> tuple[str, float]:
    """``('share', percent)`` or ``('count', engines)``; a StageError that says what a stage may be."""
    text = str(stage).strip()
    try:
        if isinstance(stage, bool):
            raise ValueError
        if text.endswith("%"):
            share = float(text[:-1])
            if not 0 < share <= 100 or math.isnan(share):
                raise ValueError
            return "share", share
        count = int(text)
        if count <= 0:
            raise ValueError
        return "count", count
    except ValueError:
        hint = (
            " (it looks like a release: the release goes in engine_target_version)" if VERSION_LIKE.match(text) else ""
        )
        raise StageError(
            f"rollout stage {stage!r} is neither a percentage in (0%, 100%] nor a positive number of Engines{hint}"
        ) from None


def _cumulative(stage, total: int) -> int:
    kind, value = parse_stage(stage)
    if kind == "share":
        return max(1, math.ceil(total * value / 100 - 1e-9))
    return min(int(value), total)


def batch_sizes(stages, total: int) -> list[int]:
    """Cumulative stages (a list, or a comma-separated string) -> batch sizes for ``serial``, summing to total.

    Stages that add no Engine are dropped; the rest of the fleet follows the last stage. A fleet of 0 gives ``[1]``
    (what ``serial`` needs to run nothing). Raises StageError for a bad stage or stages that do not grow.
    """
    stages = stage_list(stages)
    total = int(total)
    if total <= 0:
        return [1]
    batches, done = [], 0
    for stage in stages:
        target = _cumulative(stage, total)
        if target < done:
            raise StageError(
                f"rollout stages must grow: {stage!r} comes after a larger stage in {list(stages)!r} "
                f"({done} of {total} Engines are done before it)"
            )
        if target > done:
            batches.append(target - done)
            done = target
    if done < total:
        batches.append(total - done)
    return batches


def stage_problems(stages) -> list[str]:
    """Every problem of the stages themselves (each bad stage named), whatever the fleet's size."""
    try:
        stages = stage_list(stages)
    except StageError as exc:
        return [exc.msg]
    problems, last = [], {}
    for stage in stages:
        try:
            kind, value = parse_stage(stage)
        except StageError as exc:
            problems.append(exc.msg)
            continue
        if value < last.get(kind, 0):
            problems.append(f"rollout stages must grow: {stage!r} comes after a larger stage in {stages!r}")
        last[kind] = value
    return problems


def batch_of(batches, position) -> int:
    """1-based number of the batch that takes the Engine at 0-based ``position`` of the rollout order."""
    done = 0
    for number, size in enumerate(batches, start=1):
        done += int(size)
        if int(position) < done:
            return number
    raise StageError(f"position {position!r} is beyond the {done} Engines of batches {list(batches)!r}")


# ---- run id ------------------------------------------------------------------------------------------------------


def new_run_id(now: float | None = None) -> str:
    """``YYYYmmddTHHMMSSZ-<6 digits>``: sorts by time, unique enough for two runs started in the same second."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{random.SystemRandom().randrange(1_000_000):06d}"


# ---- order, canaries, controls -----------------------------------------------------------------------------------


def name_hash(name: str) -> str:
    """The stable hash order of Engines: sha256 of the name (the same on every controller, in every run)."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def _spread(engines: list[dict], placed: dict[str, int]) -> list[tuple[dict, str]]:
    """Engines in spread order, each with why it came where it did.

    Repeatedly takes, among the Docker hosts with the fewest Engines placed so far (``placed`` counts the ones
    already ahead in the order), the host whose next Engine has the lowest hash, and takes that Engine. So no host
    gets a second Engine while another has none, and within a host the order is the hash order.
    """
    queues: dict[str, list[dict]] = {}
    for engine in sorted(engines, key=lambda e: (name_hash(e["name"]), e["name"])):
        queues.setdefault(engine["docker_host"], []).append(engine)
    placed = dict(placed)
    heap = [(placed.get(host, 0), name_hash(queue[0]["name"]), host) for host, queue in queues.items()]
    heapq.heapify(heap)
    out = []
    while heap:
        count, _hash, host = heapq.heappop(heap)
        engine = queues[host].pop(0)
        hosts_total = len(queues)
        if count == 0:
            why = (
                f"spread across Docker hosts: the first on {host} (of {hosts_total} hosts); "
                f"chosen there by the stable sha256 order of names"
            )
        else:
            why = (
                f"{host} already had {count} (every Docker host had at least {count}); "
                f"next on it in the stable sha256 order of names"
            )
        out.append((engine, why))
        placed[host] = count + 1
        if queues[host]:
            heapq.heappush(heap, (count + 1, name_hash(queues[host][0]["name"]), host))
    return out


def rollout_order(engines: list[dict]) -> list[tuple[dict, str]]:
    """The whole rollout's order with the reason of each place: allowlisted first, then spread, then hash."""
    allowed = [e for e in engines if e.get("canary")]
    others = [e for e in engines if not e.get("canary")]
    first = [(e, f"in the canary allowlist (group engine_canary); {why}") for e, why in _spread(allowed, {})]
    placed: dict[str, int] = {}
    for engine in allowed:
        placed[engine["docker_host"]] = placed.get(engine["docker_host"], 0) + 1
    return first + _spread(others, placed)


def pick_controls(batch: list[dict], later: list[dict], count: int) -> list[str]:
    """Up to ``count`` Engines of later batches, one per Docker host in turn, the batch's own hosts first."""
    if count <= 0 or not later:
        return []
    in_batch: dict[str, int] = {}
    for engine in batch:
        in_batch[engine["docker_host"]] = in_batch.get(engine["docker_host"], 0) + 1
    queues: dict[str, list[str]] = {}
    for engine in later:  # the rollout order: hash order within a host
        queues.setdefault(engine["docker_host"], []).append(engine["name"])
    hosts = sorted(queues, key=lambda h: (0, -in_batch[h], h) if h in in_batch else (1, 0, h))
    chosen: list[str] = []
    while len(chosen) < count and any(queues[h] for h in hosts):
        for host in hosts:
            if queues[host] and len(chosen) < count:
                chosen.append(queues[host].pop(0))
    return chosen


def check_engines(engines) -> list[dict]:
    """The Engines as ``{name, docker_host, canary}`` dicts; OptionsError for a malformed or repeated one."""
    out, seen = [], set()
    for index, engine in enumerate(engines or []):
        if not isinstance(engine, dict) or not str(engine.get("name") or "").strip():
            raise OptionsError(f"engines[{index}] must be a dict with a name (and docker_host, canary), not {engine!r}")
        name = str(engine["name"])
        if name in seen:
            raise OptionsError(f"Engine {name} is listed twice in engines: every Engine must appear once")
        seen.add(name)
        out.append(
            {
                "name": name,
                "docker_host": str(engine.get("docker_host") or name),
                "canary": bool(engine.get("canary", False)),
            }
        )
    return out


def make_plan(engines: list[dict], stages, run_id: str, controls: int = DEFAULT_CONTROLS) -> dict:
    """The plan of a rollout of ``engines`` (checked by :func:`check_engines`), as the module returns it."""
    ordered = rollout_order(engines)
    order = [engine["name"] for engine, _why in ordered]
    serial = batch_sizes(stages, len(order))
    batches, start = [], 0
    for size in serial:
        batches.append(order[start : start + size])
        start += size
    by_name = {engine["name"]: engine for engine in engines}
    canaries = (
        [
            {"engine": engine["name"], "docker_host": engine["docker_host"], "why": why}
            for engine, why in ordered[: len(batches[0])]
        ]
        if order
        else []
    )
    control_map = {}
    for number, batch in enumerate(batches, start=1):
        later = [by_name[name] for later_batch in batches[number:] for name in later_batch]
        control_map[str(number)] = pick_controls([by_name[name] for name in batch], later, controls)
    docker_hosts: dict[str, int] = {}
    for engine in engines:
        docker_hosts[engine["docker_host"]] = docker_hosts.get(engine["docker_host"], 0) + 1
    return {
        "run_id": run_id,
        "total": len(order),
        "stages": [str(stage).strip() for stage in stage_list(stages)],
        "serial": serial if order else [],
        "batches": batches if order else [],
        "order": order,
        "batch_of": {name: number for number, batch in enumerate(batches, start=1) for name in batch} if order else {},
        "canaries": canaries,
        "controls": control_map if order else {},
        "docker_hosts": dict(sorted(docker_hosts.items())),
    }
