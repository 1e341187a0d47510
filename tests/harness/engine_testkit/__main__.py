# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Command line: ``python -m engine_testkit {up,status,down,sweep,load,demo}`` (``PYTHONPATH=tests/harness``).

State between invocations is what the Docker engine holds: every command finds the fleet by the
``io.september.fleet`` label, never by a state file. The API key is never printed; ``up`` writes
it only into the inventory file (mode 0600).

Examples::

    python -m engine_testkit up --name sept --count 6 --version 2.3.0 --model mixed
    python -m engine_testkit up --name mol --count 2 --version 2.3.0 --test-settings --canary 1
    python -m engine_testkit status --name sept
    python -m engine_testkit load --name sept --seconds 20 --check-brain
    python -m engine_testkit down --name sept
    python -m engine_testkit sweep            # every testkit fleet; --name NAME for one
    python -m engine_testkit demo --count 8 --from 2.3.0 --to 2.4.0
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import brain
from .compose import ComposeError
from .fleet import WORKDIR_ROOT, Engine, Fleet, FleetError, sweep, sweep_all
from .loadgen import LoadGenerator
from .settings import FAST_VARS


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _where(e: Engine) -> str:
    return str(e.compose_dir) if e.model == "compose" else e.container_name


def cmd_up(args: argparse.Namespace) -> int:
    """Add ``--count`` Engines to fleet ``--name`` (created if new) and write its inventory."""
    workdir = args.workdir or WORKDIR_ROOT / args.name
    fleet = Fleet.attach(args.name, workdir=workdir, base_port=args.base_port, repository=args.repository)
    new = fleet.up(
        args.count,
        args.version,
        model=args.model,
        wait=not args.no_wait,
        timeout=args.timeout,
        compose_tag_in=args.compose_tag_in,
    )
    canaries = [e.engine_id for e in fleet.engines[: args.canary]]
    inventory = fleet.write_inventory(
        args.inventory or fleet.ensure_workdir() / "inventory.yml",
        canaries=canaries,
        group_vars=dict(FAST_VARS) if args.test_settings else None,
    )
    rows = [[e.engine_id, e.model, e.image, e.url, _where(e)] for e in new]
    print(_table(rows, ["ENGINE", "MODEL", "IMAGE", "URL", "CONTAINER / COMPOSE DIR"]))
    print(f"fleet {fleet.name}: {len(new)} engine(s) added, {len(fleet.engines)} in total")
    print(f"inventory: {inventory}")
    if canaries:
        print(f"canaries (group engine_canary): {', '.join(canaries)}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """One line per Engine: id, model, image version label, health status and HTTP code."""
    fleet = Fleet.attach(args.name)
    if not fleet.engines:
        print(f"fleet {args.name}: no engines")
        return 0
    rows = []
    for e in fleet.engines:
        code, body = e.health(timeout=args.timeout)
        health = (body or {}).get("status", "-") if code is not None else "unreachable"
        try:
            state = e.container().status
        except FleetError:
            state = "missing"
        rows.append([e.engine_id, e.model, e.image_version() or "-", health, str(code or "-"), state, e.url])
    print(_table(rows, ["ENGINE", "MODEL", "VERSION", "HEALTH", "HTTP", "STATE", "URL"]))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """Remove fleet ``--name`` entirely."""
    fleet = Fleet.attach(args.name)
    count = len(fleet.engines)
    fleet.down()
    print(f"fleet {args.name}: {count} engine(s) removed")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Remove leftovers by label: fleet ``--name``, or every testkit fleet when no name is given."""
    results = {args.name: sweep(args.name)} if args.name else sweep_all()
    for name, removed in results.items():
        summary = ", ".join(f"{len(v)} {k}" for k, v in removed.items() if v) or "nothing left"
        print(f"fleet {name}: {summary}")
    if not results:
        print("no testkit fleets found")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    """Run load against fleet ``--name`` and print the stats as JSON; ``--check-brain`` verifies."""
    fleet = Fleet.attach(args.name)
    if not fleet.engines:
        print(f"error: fleet {args.name} has no engines", file=sys.stderr)
        return 1
    gen = LoadGenerator(
        fleet.engines, rate=args.rate, feedback_ratio=args.feedback_ratio, max_seconds=args.seconds + 60
    )
    stats = gen.run_for(args.seconds)
    status = 0
    if args.check_brain:
        stats["missing_acknowledged"] = {}
        for e in fleet.engines:
            missing = brain.missing_acknowledged_detail(gen, e)
            stats["missing_acknowledged"][e.engine_id] = {k: sorted(v) for k, v in missing.items()}
            if missing["tasks"] or missing["signals"]:
                status = 2
    print(json.dumps(stats, indent=2, sort_keys=True))
    return status


def cmd_demo(args: argparse.Namespace) -> int:
    """The README's demo: see engine_testkit.demo."""
    from .demo import run_demo

    return run_demo(args.name, args.count, args.from_version, args.to_version, base_port=args.base_port)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m engine_testkit``."""
    parser = argparse.ArgumentParser(prog="python -m engine_testkit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="add Engines to a fleet and write its inventory")
    up.add_argument("--name", default="sept")
    up.add_argument("--count", type=int, default=1)
    up.add_argument("--version", required=True, help="image tag, e.g. 2.3.0")
    up.add_argument("--model", choices=["container", "compose", "mixed"], default="container")
    up.add_argument("--base-port", type=int, default=9001)
    up.add_argument("--repository", default="engine")
    up.add_argument("--workdir", help=f"compose project dirs (default {WORKDIR_ROOT}/<name>)")
    up.add_argument("--inventory", help="inventory file (default <workdir>/inventory.yml)")
    up.add_argument("--compose-tag-in", choices=["file", "env"], default="file")
    up.add_argument("--timeout", type=float, default=90, help="seconds to wait for health")
    up.add_argument("--no-wait", action="store_true", help="do not wait for health")
    up.add_argument(
        "--canary",
        type=int,
        default=0,
        metavar="N",
        help="put the fleet's first N Engines in the inventory group engine_canary (the plan's first)",
    )
    up.add_argument(
        "--test-settings",
        action="store_true",
        help="give the group engines the fast test settings (engine_testkit.settings.FAST_VARS)",
    )
    up.set_defaults(func=cmd_up)

    status = sub.add_parser("status", help="health of every Engine of a fleet")
    status.add_argument("--name", default="sept")
    status.add_argument("--timeout", type=float, default=5)
    status.set_defaults(func=cmd_status)

    down = sub.add_parser("down", help="remove a fleet and everything it created")
    down.add_argument("--name", default="sept")
    down.set_defaults(func=cmd_down)

    sw = sub.add_parser("sweep", help="remove leftovers by label (every testkit fleet unless --name)")
    sw.add_argument("--name", help="only this fleet (default: every fleet labelled io.september.testkit)")
    sw.set_defaults(func=cmd_sweep)

    load = sub.add_parser("load", help="drive turns and feedback against a fleet")
    load.add_argument("--name", default="sept")
    load.add_argument("--seconds", type=float, default=10)
    load.add_argument("--rate", type=float, default=2.0, help="turns per second per Engine")
    load.add_argument("--feedback-ratio", type=float, default=0.25)
    load.add_argument("--check-brain", action="store_true", help="exit 2 if an acknowledged write is missing")
    load.set_defaults(func=cmd_load)

    demo = sub.add_parser("demo", help="a fleet under load, upgraded canary first by playbooks/upgrade.yml")
    demo.add_argument("--name", default="demo")
    demo.add_argument("--count", type=int, default=8)
    demo.add_argument("--from", dest="from_version", default="2.3.0")
    demo.add_argument("--to", dest="to_version", default="2.4.0")
    demo.add_argument("--base-port", type=int, default=9001)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (1 on a fleet or compose error)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FleetError, ComposeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
