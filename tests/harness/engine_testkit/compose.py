# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Find and run the Docker Compose command (v2 plugin or v1 ``docker-compose``).

The harness only uses flags that both generations accept: ``-p PROJECT``, ``-f FILE`` (several),
``--project-directory DIR``, ``--env-file FILE``, ``--profile NAME`` and the ``up -d`` /
``down -v --remove-orphans`` / ``ps`` sub-commands. v2 (``docker compose``) is what users run and what
:func:`compose_cmd` finds first; :data:`COMMANDS` names both, so that a test can run each
(``run(..., command="docker-compose")``). ``tests/harness/bootstrap.sh`` installs both.
"""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["CLEAN_ENV_VARS", "COMMANDS", "ComposeError", "available_commands", "compose_cmd", "generation", "run"]

#: The two Compose commands, v2 (the CLI plugin) first: what ``compose_command`` of engine_compose takes.
COMMANDS = ("docker compose", "docker-compose")

#: Variables stripped from the environment handed to Compose. Compose gives the shell environment
#: precedence over a project's ``.env`` file, so a stray ``ENGINE_TAG`` exported by a developer or CI
#: would silently override every project's tag (and ``ENGINE_API_KEY`` every project's key).
CLEAN_ENV_VARS = ("ENGINE_TAG", "ENGINE_API_KEY", "COMPOSE_PROJECT_NAME", "COMPOSE_FILE", "COMPOSE_PROFILES")


class ComposeError(RuntimeError):
    """Compose is missing or a Compose command failed."""


def _works(cmd: Sequence[str]) -> bool:
    try:
        proc = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


@functools.cache
def _detect(override: str | None) -> tuple[str, ...]:
    if override:
        cmd = tuple(shlex.split(override))
        if not cmd or not _works(cmd):
            raise ComposeError(f"ENGINE_COMPOSE_CMD={override!r} does not work (`{override} version` failed)")
        return cmd
    for candidate in (("docker", "compose"), ("docker-compose",)):
        if _works(candidate):
            return candidate
    raise ComposeError(
        "no Docker Compose found: neither `docker compose version` nor `docker-compose version` works; "
        "install the compose plugin or docker-compose (`make bootstrap`), or set ENGINE_COMPOSE_CMD"
    )


def available_commands() -> list[str]:
    """The entries of :data:`COMMANDS` that work on this machine (``<command> version`` succeeds)."""
    return [c for c in COMMANDS if _works(tuple(c.split()))]


@functools.cache
def generation(command: str) -> str:
    """``v2`` or ``v1``: what ``<command> version --short`` says."""
    proc = subprocess.run(
        [*command.split(), "version", "--short"], capture_output=True, text=True, timeout=30, check=False
    )
    return "v2" if proc.stdout.strip().lstrip("v").startswith("2") else "v1"


def compose_cmd() -> list[str]:
    """Return the Compose command as an argv prefix.

    ``ENGINE_COMPOSE_CMD`` (split like a shell word list) wins; otherwise ``docker compose`` if the
    plugin answers ``version``, otherwise ``docker-compose``. The answer is cached per override value.

    :raises ComposeError: when no working Compose is found.
    """
    return list(_detect(os.environ.get("ENGINE_COMPOSE_CMD") or None))


def compose_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a Compose run: ours minus :data:`CLEAN_ENV_VARS`, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV_VARS}
    if extra:
        env.update(extra)
    return env


def run(
    args: Sequence[str],
    cwd: str | os.PathLike[str],
    project: str | None,
    *,
    file: str | os.PathLike[str] | None = None,
    files: Sequence[str | os.PathLike[str]] | None = None,
    env_file: str | os.PathLike[str] | None = None,
    profiles: Sequence[str] = (),
    command: str | None = None,
    check: bool = True,
    timeout: float = 300,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``<compose> [-p PROJECT] -f FILE... --project-directory CWD [--env-file F] [--profile P]... ARGS...``.

    :param args: the sub-command and its arguments, e.g. ``["up", "-d"]``.
    :param cwd: the project directory (holds ``docker-compose.yml`` and ``.env``).
    :param project: the Compose project name (None: Compose chooses, from ``COMPOSE_PROJECT_NAME`` or the folder).
    :param file: the compose file; defaults to ``<cwd>/docker-compose.yml``.
    :param files: several compose files instead (relative to ``cwd`` or absolute); ``[]`` passes no ``-f`` at
        all, so that Compose finds them itself (its defaults, or ``COMPOSE_FILE`` of ``.env``).
    :param env_file: ``--env-file`` (default: Compose reads ``<cwd>/.env``).
    :param profiles: ``--profile`` for each.
    :param command: ``docker compose`` or ``docker-compose`` (default :func:`compose_cmd`).
    :param check: raise :class:`ComposeError` on a non-zero exit status.
    :param timeout: seconds before the command is killed (then :class:`ComposeError`).
    :param env: extra environment variables (after :data:`CLEAN_ENV_VARS` are removed).
    :returns: the completed process, output captured as text.
    """
    cwd = Path(cwd)
    if files is None:
        files = [Path(file) if file is not None else cwd / "docker-compose.yml"]
    argv = command.split() if command else compose_cmd()
    if project:
        argv += ["-p", project]
    for item in files:
        argv += ["-f", str(item)]
    argv += ["--project-directory", str(cwd)]
    if env_file is not None:
        argv += ["--env-file", str(env_file)]
    for profile in profiles:
        argv += ["--profile", profile]
    argv += list(args)
    try:
        proc = subprocess.run(
            argv, cwd=cwd, env=compose_env(env), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ComposeError(f"`{shlex.join(argv)}` timed out after {timeout:g}s") from exc
    except OSError as exc:
        raise ComposeError(f"`{shlex.join(argv)}` could not run: {exc}") from exc
    if check and proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-15:])
        raise ComposeError(f"`{shlex.join(argv)}` failed with exit status {proc.returncode}:\n{tail}")
    return proc
