# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""migration_check's boot test: does the target start on this brain, and could the current image go back to it?

The brain is copied with SQLite's backup API into a private temporary folder; the target image is started on
that copy (its migrations run there), stopped, and the current image is started on the migrated copy. The
containers publish the Engine's port on a random loopback port, run with a throwaway API key, and are removed
with the copy whatever happens. The real brain is only read.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import time
import uuid

from ansible_collections.september.engine.plugins.module_utils._brain import ReadonlyBrain, database_facts
from ansible_collections.september.engine.plugins.module_utils._docker import DockerException
from ansible_collections.september.engine.plugins.module_utils._engine_api import ENGINE_PORT, published_engine_port
from ansible_collections.september.engine.plugins.module_utils._errors import (
    BrainError,
    EngineModuleError,
    InsufficientSpaceError,
)
from ansible_collections.september.engine.plugins.module_utils._health import migration_required_line, probe_health

LABEL = "io.september.engine.migration_check"
_PROBE = {"validate_certs": False, "use_proxy": False}
_SPACE_MARGIN = 64 * 1024 * 1024


def copy_brain(source: str, dest: str) -> int:
    """A consistent copy of the brain at `source` into `dest` (backup API, read-only source); its size in bytes."""
    with ReadonlyBrain(source) as src:
        facts = database_facts(src)
        wal = os.path.getsize(source + "-wal") if os.path.exists(source + "-wal") else 0
        need = int((facts["logical_size"] + wal) * 1.2) + _SPACE_MARGIN
        free = shutil.disk_usage(os.path.dirname(dest)).free
        if free < need:
            raise InsufficientSpaceError(
                f"The boot test needs about {need // (1024 * 1024)} MiB for a copy of the brain in "
                f"{os.path.dirname(os.path.dirname(dest))}, which has {free // (1024 * 1024)} MiB free: "
                "point boot_test_dir at a file system with room, or free some."
            )
        target = sqlite3.connect(dest)
        try:
            src.backup(target)
        except sqlite3.Error as exc:
            raise BrainError(f"Could not copy the brain at {source} for the boot test: {exc}") from exc
        finally:
            target.close()
    os.chmod(dest, 0o600)
    return os.path.getsize(dest)


def last_error_line(log_text: str, secret: str | None = None) -> str | None:
    """The message of the last ERROR / CRITICAL JSON log line (or the last line of plain text), secret masked."""
    chosen = None
    last = None
    for line in (log_text or "").splitlines():
        if not line.strip():
            continue
        last = line.strip()
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and str(record.get("level", "")).upper() in ("ERROR", "CRITICAL", "FATAL"):
            chosen = str(record.get("message") or line.strip())
    text = chosen or last
    if text and secret:
        text = text.replace(secret, "********")
    return text[:500] if text else None


class BootTest:
    """Run the target image, then the current image, on one throwaway copy of the brain."""

    def __init__(
        self,
        client,
        *,
        brain_path: str,
        brain_file: str,
        data_dir: str,
        target_image: str,
        current_image: str,
        api_key: str,
        api_key_env: str,
        env: dict | None,
        timeout: int,
        work_dir: str | None,
        read_applied,
    ):
        self.client = client
        self.brain_path = brain_path
        self.brain_file = brain_file
        self.data_dir = data_dir.rstrip("/") or "/"
        self.target_image = target_image
        self.current_image = current_image
        self.api_key = api_key
        self.api_key_env = api_key_env
        self.env = dict(env or {})
        self.timeout = timeout
        self.work_dir = work_dir
        self.read_applied = read_applied
        self.warnings: list[str] = []

    def run(self) -> dict:
        if self.work_dir:
            os.makedirs(self.work_dir, mode=0o700, exist_ok=True)
        folder = tempfile.mkdtemp(prefix="migration-check-", dir=self.work_dir)  # mode 0700
        try:
            copy = os.path.join(folder, self.brain_file)
            copy_brain(self.brain_path, copy)
            self._hand_to_brain_owner(folder, copy)
            target = self._boot(self.target_image, "target", folder)
            try:
                with ReadonlyBrain(copy) as conn:
                    applied_after = self.read_applied(conn)
            except EngineModuleError as exc:
                applied_after = None
                self.warnings.append(f"Could not read the migrations of the copy after the target ran: {exc.msg}")
            current = self._boot(self.current_image, "current", folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            if os.path.exists(folder):
                self.warnings.append(f"Could not remove all of the boot test's throwaway folder {folder}: remove it.")
        return dict(
            target_healthy=target["is_healthy"],
            image_rollback_works=current["is_healthy"],
            applied_after_target=applied_after,
            target=target,
            current=current,
        )

    def _hand_to_brain_owner(self, folder: str, copy: str) -> None:
        """The Engine may run as the brain's owner rather than root: let it write its copy."""
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            return
        owner = os.stat(self.brain_path)
        for path in (folder, copy):
            os.chown(path, owner.st_uid, owner.st_gid)

    def _environment(self) -> dict:
        environment = {"SQLITE_DB_PATH": f"{self.data_dir.rstrip('/')}/{self.brain_file}"}
        environment.update({str(key): str(value) for key, value in self.env.items()})
        environment[self.api_key_env] = self.api_key
        return environment

    def _boot(self, image: str, role: str, folder: str) -> dict:
        """Start `image` on the copy, wait until healthy, exited, or boot_timeout; stop and remove it."""
        container = None
        started = time.monotonic()
        try:
            container = self.client.containers.create(
                image,
                name=f"migration-check-{role}-{uuid.uuid4().hex[:12]}",
                detach=True,
                environment=self._environment(),
                volumes={folder: {"bind": self.data_dir, "mode": "rw"}},
                ports={ENGINE_PORT: ("127.0.0.1",)},
                labels={LABEL: "boot_test", f"{LABEL}.role": role},
            )
            container.start()
            result = self._watch(container, image, started)
            if result["is_healthy"]:
                container.stop(timeout=30)  # a graceful drain checkpoints the WAL of the copy
            return result
        except DockerException as exc:
            raise EngineModuleError(
                f"Docker could not run the boot test's {role} container from {image}: {exc}. Nothing was changed; "
                "the throwaway containers and the copy of the brain are removed."
            ) from exc
        finally:
            if container is not None:
                try:
                    container.remove(force=True)
                except DockerException as exc:
                    self.warnings.append(f"Could not remove the boot test's container {container.name}: {exc}")

    def _watch(self, container, image: str, started: float) -> dict:
        deadline = started + self.timeout
        probe = None
        while True:
            container.reload()
            state = container.attrs.get("State") or {}
            if state.get("Status") in ("exited", "dead"):
                logs = container.logs(stdout=True, stderr=True, tail=50).decode("utf-8", "replace")
                refused = migration_required_line(logs)
                return self._result(
                    image,
                    started,
                    failure="migration_required" if refused else "exited",
                    exit_code=state.get("ExitCode"),
                    http_status=probe.http_status if probe else None,
                    message=refused or last_error_line(logs, self.api_key),
                )
            published = published_engine_port(container.attrs)
            if published:
                remaining = max(1.0, min(5.0, deadline - time.monotonic()))
                probe = probe_health(f"http://127.0.0.1:{published[1]}", _PROBE, timeout=remaining)
                if probe.healthy:
                    return self._result(image, started, failure="none", http_status=probe.http_status)
            if time.monotonic() >= deadline:
                logs = container.logs(stdout=True, stderr=True, tail=50).decode("utf-8", "replace")
                answered = probe is not None and probe.answered
                return self._result(
                    image,
                    started,
                    failure="unhealthy" if answered else "unreachable",
                    http_status=probe.http_status if probe else None,
                    message=(
                        f"not healthy within boot_timeout ({self.timeout}s)"
                        + (f": HTTP {probe.http_status}, status {probe.status}" if answered else "")
                        + (f"; last error logged: {last_error_line(logs, self.api_key)}" if logs.strip() else "")
                    ),
                )
            time.sleep(0.5)

    @staticmethod
    def _result(image, started, *, failure, exit_code=None, http_status=None, message=None) -> dict:
        return dict(
            image=image,
            is_healthy=failure == "none",
            failure=failure,
            exit_code=exit_code,
            http_status=http_status,
            elapsed=round(time.monotonic() - started, 3),
            message=message,
        )
