# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the benchmarks share: timed ``ansible-playbook`` runs (wall and CPU), run reports read defensively, folders.

The benchmarks measure the collection through its public interface only (playbooks, inventory, extra vars, the run
reports' fields), so that they keep working while the roles are restructured; a field the report lacks is reported
as missing, never a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
HARNESS = REPO_ROOT / "tests" / "harness"
if str(HARNESS) not in sys.path:
    sys.path.insert(0, str(HARNESS))

from engine_testkit.ansible import COLLECTIONS_PATH, ansible_env, ensure_collection_link  # noqa: E402

#: Everything the benchmarks write: results.json, the playbook logs, the run reports, the brain template cache.
BUILD_DIR = Path(os.environ.get("BENCH_BUILD_DIR", REPO_ROOT / "build" / "bench"))
#: The Docker network of the per-user Engines (made here unlabelled, as `make system` does, so that no fleet's
#: teardown removes it under another helper's fleet).
NETWORK = "engine_net"


def collection_root() -> Path:
    """The collection under test: this checkout, or another tree (``BENCH_COLLECTION_ROOT``, e.g. an export of an
    older commit, to measure "before" and "after" with the same benchmarks)."""
    return Path(os.environ.get("BENCH_COLLECTION_ROOT") or REPO_ROOT).resolve()


def collections_path() -> Path:
    """An ``ANSIBLE_COLLECTIONS_PATH`` whose ``september.engine`` is :func:`collection_root`."""
    root = collection_root()
    if root == REPO_ROOT:
        ensure_collection_link()
        return COLLECTIONS_PATH
    base = BUILD_DIR / "collections"
    link = base / "ansible_collections" / "september" / "engine"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink() or link.resolve() != root:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(root)
    return base


def log(msg: str) -> None:
    """A progress line on stderr (the figures go to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages (the benchmarks run on a shared machine: every figure carries them)."""
    return [round(x, 2) for x in os.getloadavg()]


def median(values: Iterable[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 3) if vals else None


def ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return round(num / den, 3)


def ensure_network(client: Any) -> None:
    """``engine_net`` exists (created without the testkit's labels: no fleet teardown removes it)."""
    import docker.errors

    try:
        client.networks.get(NETWORK)
    except docker.errors.NotFound:
        with contextlib.suppress(docker.errors.APIError):  # another process made it in the meantime
            client.networks.create(NETWORK, driver="bridge")


def workdir(prefix: str) -> Path:
    """A fresh folder for one benchmark's state (snapshots, locks, inventory, reports), under build/bench/work."""
    root = BUILD_DIR / "work"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=root))


def write_private(path: Path, text: str) -> Path:
    """Write a file only its owner reads (inventories and env files hold the Engines' key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


@dataclass
class TimedRun:
    """One timed command: wall seconds, and the CPU seconds of the process and all its children."""

    label: str
    rc: int
    wall: float
    cpu_user: float
    cpu_sys: float
    log: str
    started_at: float
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)

    @property
    def cpu(self) -> float:
        return round(self.cpu_user + self.cpu_sys, 3)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cpu": self.cpu}


def timed(label: str, command: list[str], *, env: dict[str, str] | None = None, log_path: Path,
          timeout: float = 3600) -> TimedRun:
    """Run ``command`` to its end, output to ``log_path``; wall clock and the user+sys CPU of it and its children.

    The CPU comes from ``getrusage(RUSAGE_CHILDREN)`` before and after: it counts every process the command started
    and waited for (ansible-playbook, its worker forks, the modules they run). Nothing else of this process may
    start children meanwhile (the benchmarks run one command at a time).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_before = loadavg()
    started_at = time.time()
    t0 = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        # A session of its own: on a timeout or an interruption the command goes with every process it started.
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            rc = -9
            out.write(f"\n[bench] timed out after {timeout:g} s\n")
        except BaseException:
            _stop_group(proc)
            raise
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return TimedRun(
        label=label, rc=rc, wall=round(wall, 3),
        cpu_user=round(after.ru_utime - before.ru_utime, 3), cpu_sys=round(after.ru_stime - before.ru_stime, 3),
        log=str(log_path), started_at=started_at, load_before=load_before, load_after=loadavg(),
    )


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group of ``proc`` (a session this module started), SIGKILL after 10 s; reaped."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def exit_on_sigterm() -> None:
    """SIGTERM ends the benchmark like Ctrl-C: the ``finally`` blocks run, the fleets are torn down."""
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))


def playbook(label: str, name: str, *, inventory: Path, extra_vars: dict[str, Any], log_path: Path,
             limit: list[str] | None = None, forks: int | None = None, env: dict[str, str] | None = None,
             timeout: float = 3600) -> TimedRun:
    """``ansible-playbook playbooks/<name>`` as an operator runs it (default output callback, no test recorder),
    timed by :func:`timed`. Extra vars go through a 0600 file; ``env`` adds to the Ansible environment
    (pipelining on by default: every Engine is a local connection here, see the README's advice)."""
    collections = collections_path()
    vars_file = write_private(log_path.with_suffix(".vars.json"), json.dumps(extra_vars))
    command = [str(Path(sys.executable).with_name("ansible-playbook")), str(collection_root() / "playbooks" / name),
               "-i", str(inventory),
               "-e", f"@{vars_file}"]
    if forks:
        command += ["-f", str(forks)]
    if limit:
        command += ["--limit", ",".join(limit)]
    full_env = ansible_env({"ANSIBLE_PIPELINING": "True", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
                            **(env or {}), "ANSIBLE_COLLECTIONS_PATH": str(collections)})
    try:
        return timed(label, command, env=full_env, log_path=log_path, timeout=timeout)
    finally:
        with contextlib.suppress(OSError):
            vars_file.unlink()


def tail(path: str | Path, lines: int = 40) -> str:
    try:
        return "\n".join(Path(path).read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def newest_report(report_dir: Path, name: str = "upgrade.json") -> tuple[dict[str, Any] | None, str | None]:
    """The newest ``<report_dir>/<run id>/<name>`` as a dict; ``(None, why)`` when there is none or it is not JSON."""
    found = sorted(report_dir.glob(f"*/{name}"), key=lambda p: p.stat().st_mtime) if report_dir.is_dir() else []
    if not found:
        return None, f"no {name} under {report_dir}"
    try:
        data = json.loads(found[-1].read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{found[-1]}: {exc}"
    if not isinstance(data, dict):
        return None, f"{found[-1]}: not a JSON object"
    return data, None


def number(value: Any) -> float | None:
    """A report field as a float; None when absent, null or not a number (the report is read defensively)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def dig(data: Any, *path: str) -> Any:
    """``data[a][b]...``, None wherever a level is missing or not a mapping."""
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def finish(result: dict[str, Any], text: str, name: str) -> None:
    """The end of a benchmark run on its own: its printout, its figures as ``build/bench/<name>.json``, exit 0 when
    it ran (``result["ok"]``), else 1."""
    print(text)
    out = BUILD_DIR / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    sys.exit(0 if result["ok"] else 1)


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    t0 = time.monotonic()
    log(f"{name} ...")
    try:
        yield
    finally:
        log(f"{name}: {time.monotonic() - t0:.1f} s")
