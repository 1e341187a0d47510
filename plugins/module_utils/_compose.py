# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Docker Compose for the modules: find the command (v2 plugin or v1 ``docker-compose``), run it, record switches.

Only flags that Compose v1 (1.29) and v2 both accept are used: the global ``--project-directory``,
``-f``, ``-p`` and ``--env-file``, and ``ps -a -q``, ``stop --timeout``, ``start``,
``up -d --no-deps --no-build``; ``up --pull never`` is added for v2 releases that know it (2.7+).
Where the tag is set, and how it is edited, is in ``_compose_file.py``; ComposeSwitch (the manager of
the engine_compose module) puts the two together: drain, edit, up, and the record of the switch.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tempfile
import time

from ansible_collections.september.engine.plugins.module_utils._compose_file import (
    default_compose_files,
    locate_tag,
    normalize_repository,
    plan_tag_edit,
    split_image_ref,
    target_ref,
    verify_edit,
)
from ansible_collections.september.engine.plugins.module_utils._docker import NotFound, get_image
from ansible_collections.september.engine.plugins.module_utils._errors import (
    ComposeError,
    ComposeFileError,
    NotFoundError,
    OptionsError,
)

COMPOSE_COMMAND_CHOICES = ("auto", "docker compose", "docker-compose")
STATE_FORMAT = 1
HISTORY_LIMIT = 50
_VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def compose_argument_spec() -> dict:
    """Options of engine_compose that say where the project is and which Compose runs it."""
    return dict(
        project_src=dict(type="path", required=True),
        service=dict(type="str", default="engine"),
        compose_file=dict(type="list", elements="path"),
        env_file=dict(type="path"),
        project_name=dict(type="str"),
        compose_command=dict(type="str", default="auto", choices=list(COMPOSE_COMMAND_CHOICES)),
    )


class ComposeCli:
    """A working Compose command: its argv prefix, generation (v1 or v2) and version."""

    def __init__(self, argv: list, version: str):
        self.argv = list(argv)
        self.version = version
        m = _VERSION_RE.search(version)
        self.version_tuple = tuple(int(x) for x in m.groups()) if m else (0, 0, 0)
        self.generation = "v2" if self.version_tuple[0] >= 2 else "v1"

    @property
    def supports_up_pull(self) -> bool:
        return self.version_tuple >= (2, 7, 0)


def _probe(module, argv: list) -> str | None:
    """``<argv> version`` output when it works, else None (a missing binary is not an error here)."""
    if not argv or module.get_bin_path(argv[0]) is None:
        return None
    full = [module.get_bin_path(argv[0]), *argv[1:]]
    rc, out, err = module.run_command([*full, "version"])
    if rc != 0:
        return None
    text = out or err
    return text if _VERSION_RE.search(text) else None


def detect_compose(module, choice: str = "auto") -> ComposeCli:
    """The Compose to use: ``auto`` prefers ``docker compose`` (v2 plugin), then ``docker-compose``."""
    candidates = [["docker", "compose"], ["docker-compose"]] if choice == "auto" else [choice.split()]
    for argv in candidates:
        out = _probe(module, argv)
        if out is not None:
            return ComposeCli([module.get_bin_path(argv[0]), *argv[1:]], out.strip().splitlines()[0])
    if choice == "auto":
        raise ComposeError(
            "No Docker Compose found on this host: neither 'docker compose version' (v2 plugin) nor "
            "'docker-compose version' (v1) works. Install one of them, or set compose_command."
        )
    raise ComposeError(f"compose_command is '{choice}' but '{choice} version' does not work on this host.")


class ComposeProject:
    """One Compose project as this module runs it: fixed files, project name, env file and environment."""

    def __init__(self, module, cli: ComposeCli, project_src: str, files: list, *, project_name: str | None = None,
                 env_file: str | None = None, environ: dict | None = None):
        self.module = module
        self.cli = cli
        self.project_src = project_src
        self.files = list(files)
        self.project_name = project_name
        self.env_file = env_file
        self.environ = dict(environ or {})

    def argv(self, *args: str) -> list:
        """The full command line (global flags valid in v1 and v2 first, then the sub-command)."""
        argv = [*self.cli.argv, "--project-directory", self.project_src]
        for path in self.files:
            argv += ["-f", path]
        if self.project_name:
            argv += ["-p", self.project_name]
        if self.env_file:
            argv += ["--env-file", self.env_file]
        return argv + list(args)

    def run(self, *args: str, check: bool = True) -> tuple[int, str, str]:
        argv = self.argv(*args)
        rc, out, err = self.module.run_command(argv, cwd=self.project_src, environ_update=self.environ)
        if check and rc != 0:
            tail = "\n".join((err or out or "").strip().splitlines()[-12:])
            raise ComposeError(f"'{shlex.join(argv)}' failed (exit status {rc}): {tail}", rc=rc, stderr=err)
        return rc, out, err

    def container_ids(self, service: str) -> list:
        """Ids of the service's containers, running or not (``ps -a -q``: read-only, also in check mode)."""
        _rc, out, _err = self.run("ps", "-a", "-q", service)
        return [line.strip() for line in out.splitlines() if re.match(r"^[0-9a-f]{12,64}$", line.strip())]

    def stop(self, service: str, timeout: int) -> None:
        self.run("stop", "--timeout", str(timeout), service)

    def start(self, service: str) -> None:
        self.run("start", service)

    def up(self, service: str, pull: str = "never", check: bool = True) -> tuple[int, str, str]:
        args = ["up", "-d", "--no-deps", "--no-build"]
        if self.cli.generation == "v2" and self.cli.supports_up_pull:
            args += ["--pull", pull]
        return self.run(*args, service, check=check)


# ----------------------------------------------------------------------------- files


def read_text(path: str) -> str | None:
    """The file's text, or None when it does not exist."""
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ComposeFileError(f"Cannot read {path}: {exc}") from exc


def write_atomic(path: str, text: str, new_mode: int = 0o600) -> None:
    """Replace ``path`` with ``text`` atomically, keeping its mode and owner (``new_mode`` for a new file).

    The temporary file is created 0600 in the same directory, so a secret never sits in a readable file.
    """
    directory = os.path.dirname(path) or "."
    try:
        st = os.stat(path)
        mode, owner = st.st_mode & 0o7777, (st.st_uid, st.st_gid)
    except FileNotFoundError:
        mode, owner = new_mode, None
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if owner is not None and os.geteuid() == 0:
            os.chown(tmp, *owner)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise ComposeFileError(f"Cannot write {path}: {exc}") from exc
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# ----------------------------------------------------------------------------- the switch record


def now_iso(clock=time.time) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock()))


def load_state(path: str) -> dict:
    """The state file (empty skeleton when missing); a damaged file is an error, never silently reset."""
    text = read_text(path)
    if text is None:
        return {"format": STATE_FORMAT, "services": {}}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ComposeFileError(
            f"The state file {path} is not valid JSON ({exc}): fix or remove it (it records the previous version)."
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise ComposeFileError(f"The state file {path} does not look like one written by engine_compose.")
    return data


def service_record(state: dict, service: str) -> dict:
    """What the state file says about ``service`` (empty dict when nothing was recorded)."""
    return dict((state.get("services") or {}).get(service) or {})


def record(state: dict, service: str, *, image: str, previous_image: str | None, tag_location: dict,
           history: dict, rolled_back_from: str | None = None) -> dict:
    """A copy of ``state`` where ``service`` now uses ``image`` and rolls back to ``previous_image``.

    ``history`` (action, from, to, result, at) is appended to the service's history (the last 50 kept).
    """
    data = json.loads(json.dumps(state))
    data["format"] = STATE_FORMAT
    data.setdefault("services", {})
    entry = service_record(data, service)
    entry.update(
        image=image,
        version=split_image_ref(image)[1] if image else None,
        previous_image=previous_image,
        previous_version=split_image_ref(previous_image)[1] if previous_image else None,
        tag_location=tag_location,
        switched_at=history["at"],
    )
    if rolled_back_from:
        entry["rolled_back_from"] = rolled_back_from
    else:
        entry.pop("rolled_back_from", None)
    entry["history"] = [*(entry.get("history") or []), history][-HISTORY_LIMIT:]
    data["services"][service] = entry
    return data


def dump_state(state: dict) -> str:
    return json.dumps(state, indent=2, sort_keys=True) + "\n"


# ----------------------------------------------------------------------------- the switch


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and normalize_repository(a) == normalize_repository(b)


class ComposeSwitch:
    """Reads the project, plans the switch, and carries it out (or only predicts it in check mode)."""

    def __init__(self, module, client):
        self.module = module
        self.p = p = module.params
        self.src = os.path.abspath(p["project_src"])
        if not os.path.isdir(self.src):
            raise NotFoundError(f"project_src {self.src} is not a directory.")
        files = [os.path.join(self.src, f) for f in p["compose_file"] or []] or default_compose_files(self.src)
        for path in files:
            if not os.path.isfile(path):
                raise NotFoundError(f"Compose file {path} does not exist: check compose_file.")
        self.files = files
        self.env_path = os.path.abspath(p["env_file"] or os.path.join(self.src, ".env"))
        self.state_path = p["state_file"] or os.path.join(self.src, ".september-engine.json")
        self.service = p["service"]
        self.cli = detect_compose(module, p["compose_command"])
        self.client = client
        self.actions: list[str] = []
        self.timings = {"drain_seconds": 0.0, "switch_seconds": 0.0}
        self.diff = None
        self.warned_environ = False
        self.read()

    # -------------------------------------------------------------- reading
    def read(self) -> None:
        self.texts = [(path, read_text(path)) for path in self.files]
        self.env_text = read_text(self.env_path)
        self.setting = locate_tag(self.texts, self.service, self.env_path, self.env_text, dict(os.environ))

    def project(self) -> ComposeProject:
        environ = {}
        s = self.setting
        if s.location == "env" and s.image is not None:
            value = s.image if s.whole_ref else s.tag
            if os.environ.get(s.variable) not in (None, value) and not self.warned_environ:
                self.warned_environ = True
                self.module.warn(f"{s.variable} is set in the environment too; the value of {self.env_path} is used.")
            environ[s.variable] = value
        if self.p["docker_host"]:
            environ["DOCKER_HOST"] = self.p["docker_host"]
            if self.p["docker_tls_verify"]:
                environ["DOCKER_TLS_VERIFY"] = "1"
            if self.p["docker_ca_path"]:
                environ["DOCKER_CERT_PATH"] = os.path.dirname(self.p["docker_ca_path"])
        env_file = self.env_path if self.p["env_file"] else None
        return ComposeProject(self.module, self.cli, self.src, self.files, project_name=self.p["project_name"],
                              env_file=env_file, environ=environ)

    def container(self) -> dict | None:
        """The service's container, a running one first (one-off C(run) containers are ignored)."""
        found = []
        for cid in self.project().container_ids(self.service):
            try:
                c = self.client.containers.get(cid)
            except NotFound:
                continue
            if (c.labels or {}).get("com.docker.compose.oneoff") == "True":
                continue
            found.append({"id": c.id, "name": c.name, "status": c.status, "running": c.status == "running",
                          "image": (c.attrs.get("Config") or {}).get("Image"), "image_id": c.attrs.get("Image"),
                          "project": (c.labels or {}).get("com.docker.compose.project")})
        found.sort(key=lambda c: not c["running"])
        return found[0] if found else None

    def image_id(self, ref: str) -> str | None:
        try:
            return get_image(self.client, ref).id
        except NotFoundError:
            return None

    # -------------------------------------------------------------- states
    def present(self, rolled_back: bool = False) -> bool:
        record_ = service_record(load_state(self.state_path), self.service)
        self.previous = record_.get("previous_image")
        if rolled_back and not (self.p["version"] or self.p["image"]):
            if not self.previous:
                raise OptionsError(
                    f"No previous image of '{self.service}' is recorded in {self.state_path}: nothing to roll back "
                    "to. Give the version (or image) to go back to."
                )
            target = self.previous
        else:
            target = target_ref(self.setting, self.p["version"], self.p["image"], self.p["allow_repository_change"])
        return self.switch(target, "rolled_back" if rolled_back else "present")

    def switch(self, target: str, action: str) -> bool:
        c = self.container()
        target_id = self.image_id(target)
        on_target = _same(self.setting.image, target)
        if c and c["running"]:
            runs_target = c["image_id"] == target_id if target_id else _same(c["image"], target)
        else:
            runs_target = False
        self.image = target
        if on_target and runs_target:
            return False
        if self.p["pull"] == "never" and target_id is None:
            raise NotFoundError(
                f"Image {target} is not on this Docker host and pull=never: pull it first (nothing was stopped)."
            )
        edit = None
        if not on_target:
            edit = plan_tag_edit(self.setting, dict(self.texts)[self.setting.compose_file], self.env_text, target)
            verify_edit(self.texts, edit, self.service, env_path=self.env_path, environ=dict(os.environ),
                        env_text=self.env_text, expected=target)
            self.diff = dict(before_header=edit.path, after_header=edit.path, before=edit.before, after=edit.after)
        old = (c["image"] if c else None) or self.setting.image
        self.actions = (["drain"] if c and c["running"] else []) + (["edit"] if edit else []) + ["up"]
        recorded_previous, self.previous = self.previous, old
        if self.module.check_mode:
            return True
        # Record the attempt before anything stops: a rollback after a crash of this run still knows where to go.
        rolled_back = action == "rolled_back"
        self.attempt = dict(
            base=load_state(self.state_path), old=old, target=target, where=self.setting.as_dict(),
            previous=recorded_previous if rolled_back else old,
            history={"action": action, "from": old, "to": target, "at": now_iso(), "result": "in progress"},
        )
        self.remember(image=target, previous_image=target if rolled_back else old,
                      rolled_back_from=old if rolled_back else None)
        if "drain" in self.actions:
            started = time.monotonic()
            try:
                self.project().stop(self.service, self.p["stop_timeout"])
            except ComposeError:
                self.remember(image=old, previous_image=self.attempt["previous"], result="drain failed, no change")
                raise
            self.timings["drain_seconds"] = round(time.monotonic() - started, 3)
        started = time.monotonic()
        if edit:
            write_atomic(edit.path, edit.new_text)
        self.read()
        rc, out, err = self.project().up(self.service, self.p["pull"], check=False)
        if rc != 0:
            self.restore(edit, err or out)
        self.timings["switch_seconds"] = round(time.monotonic() - started, 3)
        self.remember(image=target, previous_image=target if rolled_back else old,
                      rolled_back_from=old if rolled_back else None, result="ok")
        return True

    def remember(self, image: str, previous_image: str | None, rolled_back_from: str | None = None,
                 result: str | None = None) -> None:
        """Write the state file: the attempt's base state plus this outcome (one history entry per attempt)."""
        a = self.attempt
        history = dict(a["history"], result=result or a["history"]["result"])
        self.save(record(a["base"], self.service, image=image, previous_image=previous_image,
                         tag_location=self.setting.as_dict(), history=history, rolled_back_from=rolled_back_from))

    def restore(self, edit, output: str) -> None:
        """``up`` failed: put the previous setting back, start the service again, then fail clearly."""
        if edit and edit.old_text is None:
            os.unlink(edit.path)
        elif edit:
            write_atomic(edit.path, edit.old_text)
        self.read()
        rc, out, err = self.project().up(self.service, "missing", check=False)
        if rc == 0:
            again = "and started it again"
        else:
            again = f"but starting it again failed too: {(err or out).strip()[-500:]}"
        now = self.setting.image or self.attempt["old"]
        self.remember(image=now, previous_image=now, rolled_back_from=self.attempt["target"],
                      result="up failed, previous setting restored")
        raise ComposeError(
            f"Switching service '{self.service}' to {self.attempt['target']} failed, 'up' said: "
            f"{output.strip()[-800:]} -- put '{self.setting.raw}' back in {self.attempt['where']['path']} {again}.",
            changed=True,
        )

    def stopped(self) -> bool:
        c = self.container()
        if not (c and c["running"]):
            return False
        self.actions = ["drain"]
        self.diff = {"before": "status: running\n", "after": "status: exited\n"}
        if not self.module.check_mode:
            started = time.monotonic()
            self.project().stop(self.service, self.p["stop_timeout"])
            self.timings["drain_seconds"] = round(time.monotonic() - started, 3)
        return True

    def started(self) -> bool:
        c = self.container()
        if c and c["running"]:
            return False
        self.actions = ["start"] if c else ["up"]
        self.diff = {"before": f"status: {c['status'] if c else 'absent'}\n", "after": "status: running\n"}
        if not self.module.check_mode:
            started = time.monotonic()
            if c:
                self.project().start(self.service)
            else:
                self.project().up(self.service, self.p["pull"])
            self.timings["switch_seconds"] = round(time.monotonic() - started, 3)
        return True

    def save(self, state: dict) -> None:
        write_atomic(self.state_path, dump_state(state), new_mode=0o600)
        os.chmod(self.state_path, 0o600)

    # -------------------------------------------------------------- result
    def run(self) -> dict:
        state = self.p["state"]
        self.image, self.previous = self.setting.image, None
        if state in ("present", "rolled_back"):
            changed = self.present(rolled_back=state == "rolled_back")
        else:
            changed = getattr(self, state)()
            self.previous = service_record(load_state(self.state_path), self.service).get("previous_image")
        c = self.container()
        compose = {
            "project_src": self.src, "service": self.service, "compose_command": self.cli.argv,
            "compose_version": self.cli.generation, "compose_release": ".".join(map(str, self.cli.version_tuple)),
            "compose_files": self.files, "tag_location": self.setting.as_dict(), "image": self.image,
            "version": split_image_ref(self.image)[1] if self.image else None,
            "previous_image": self.previous,
            "previous_version": split_image_ref(self.previous)[1] if self.previous else None,
            "container": {k: v for k, v in c.items() if k != "running"} if c else None,
            "actions": self.actions, "timings": self.timings, "state_file": self.state_path,
        }
        result = {"changed": changed, "compose": compose}
        if self.module._diff and changed and self.diff:
            result["diff"] = self.diff
        for warning in self.setting.warnings:
            self.module.warn(warning)
        return result
