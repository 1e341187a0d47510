# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Docker Compose for the modules: find the command (v2 plugin or v1 ``docker-compose``), run it, record switches.

Which project a service's container belongs to is read from the labels Compose v1 (1.29) and v2 both put on
it: ``com.docker.compose.project`` (the name), ``.project.working_dir``, ``.project.config_files`` (v1 writes
the names relative to the working dir when Compose found them itself, v2 absolute paths) and
``.project.environment_file`` (only when ``--env-file`` was given). A switch recreates the container from
exactly those files, name and env file (:func:`resolve_config`), unless the inventory names them; the
project's ``.env`` is read for ``COMPOSE_FILE``, ``COMPOSE_PATH_SEPARATOR`` and ``COMPOSE_PROJECT_NAME`` as
Compose does. A service with ``profiles:`` gets them passed (``--profile``), so that no command skips it.

Only flags that Compose v1 (1.29) and v2 both accept are used: the global ``--project-directory``, ``-f``,
``-p``, ``--env-file`` and ``--profile``, and ``ps -a -q``, ``stop --timeout``, ``start``, ``config``,
``up -d --no-deps --no-build``; ``up --pull never`` is added for v2 releases that know it (2.7+), and
``config --format json`` is asked of v2 only.

Where the tag is set, and how it is edited, is in ``_compose_file.py``; ComposeSwitch (the manager of the
engine_compose module) puts the two together: drain, edit, up, a check that ``/data`` still comes from the
same storage, and the record of the switch.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tempfile
import time
from dataclasses import dataclass, field

from ansible_collections.september.engine.plugins.module_utils._compose_file import (
    default_compose_files,
    load_yaml,
    locate_tag,
    parse_env,
    plan_tag_edit,
    require_yaml,
    service_profiles,
    target_ref,
    verify_edit,
)
from ansible_collections.september.engine.plugins.module_utils._compose_history import IN_PROGRESS, last_switch, settle
from ansible_collections.september.engine.plugins.module_utils._compose_labels import (
    CONFIG_FILES_LABEL,
    ENV_FILE_LABEL,
    ONEOFF_LABEL,
    PROJECT_LABEL,
    SERVICE_LABEL,
    WORKDIR_LABEL,
)
from ansible_collections.september.engine.plugins.module_utils._docker import (
    DockerException,
    RequestException,
    get_image,
)
from ansible_collections.september.engine.plugins.module_utils._errors import (
    ComposeError,
    ComposeFileError,
    EngineModuleError,
    NotFoundError,
    OptionsError,
)
from ansible_collections.september.engine.plugins.module_utils._identity import identity_from_mount
from ansible_collections.september.engine.plugins.module_utils._image_ref import ImageRef, image_tag, same_image
from ansible_collections.september.engine.plugins.module_utils._timeutil import iso

COMPOSE_COMMAND_CHOICES = ("auto", "docker compose", "docker-compose")
STATE_FORMAT = 1
HISTORY_LIMIT = 50
_VERSION_RE = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def compose_project_argument_spec() -> dict:
    """How a Compose project is run, when the inventory says more than its folder (engine_compose, engine_info)."""
    return dict(
        compose_file=dict(type="list", elements="path"),
        env_file=dict(type="path"),
        project_name=dict(type="str"),
    )


def compose_argument_spec() -> dict:
    """Options of engine_compose that say where the project is and which Compose runs it."""
    return dict(
        project_src=dict(type="path", required=True),
        service=dict(type="str", default="engine"),
        compose_command=dict(type="str", default="auto", choices=list(COMPOSE_COMMAND_CHOICES)),
        data_dir=dict(type="str", default="/data"),
        **compose_project_argument_spec(),
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
    """One Compose project as this module runs it: fixed files, project name, env file, profiles, environment."""

    def __init__(
        self,
        module,
        cli: ComposeCli,
        project_src: str,
        files: list,
        *,
        project_name: str | None = None,
        env_file: str | None = None,
        environ: dict | None = None,
        profiles: list | None = None,
    ):
        self.module = module
        self.cli = cli
        self.project_src = project_src
        self.files = list(files)
        self.project_name = project_name
        self.env_file = env_file
        self.environ = dict(environ or {})
        self.profiles = list(profiles or [])

    def argv(self, *args: str) -> list:
        """The full command line (global flags valid in v1 and v2 first, then the sub-command)."""
        argv = [*self.cli.argv, "--project-directory", self.project_src]
        for path in self.files:
            argv += ["-f", path]
        if self.project_name:
            argv += ["-p", self.project_name]
        if self.env_file:
            argv += ["--env-file", self.env_file]
        for profile in self.profiles:
            argv += ["--profile", profile]
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

    def config(self) -> dict | None:
        """The project as Compose resolves it (files merged, variables interpolated), None when it cannot be read.

        v2 answers JSON; v1 only YAML.
        """
        v2 = self.cli.generation == "v2"
        rc, out, _err = self.run("config", *(["--format", "json"] if v2 else []), check=False)
        if rc != 0:
            return None
        try:
            data = json.loads(out) if v2 else load_yaml(out, "the output of 'config'")
        except (ValueError, ComposeFileError):
            return None
        return data if isinstance(data, dict) else None


# ----------------------------------------------------------------------------- which project, from what


def default_project_name(directory: str) -> str:
    """The name Compose gives a project without ``-p``: its folder's name, lower case, [a-z0-9_-] only."""
    name = re.sub(r"[^a-z0-9_-]", "", os.path.basename(os.path.normpath(directory)).lower())
    return name.lstrip("_-") or "default"


def _absolute(path: str, base: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


@dataclass
class ProjectConfig:
    """How Compose must be run for one project: the files, the name, the env file, the service's profiles.

    ``sources`` says where each came from: ``option`` (the inventory), ``container`` (the labels of the running
    container), ``env_file`` (``COMPOSE_FILE`` / ``COMPOSE_PROJECT_NAME`` there) or ``default`` (Compose's own).
    """

    working_dir: str
    files: list
    project: str | None
    env_path: str
    env_explicit: bool
    profiles: list = field(default_factory=list)
    sources: dict = field(default_factory=dict)

    @property
    def project_name(self) -> str:
        """The project's name, as Compose will call it."""
        return self.project or default_project_name(self.working_dir)

    def as_dict(self) -> dict:
        return {
            "files": list(self.files),
            "project": self.project_name,
            "env_file": self.env_path if self.env_explicit or os.path.exists(self.env_path) else None,
            "profiles": list(self.profiles),
            "working_dir": self.working_dir,
            "sources": dict(self.sources),
        }


def env_values(path: str) -> dict:
    """KEY -> value of an env file ({} when it does not exist)."""
    text = read_text(path)
    return parse_env(text) if text is not None else {}


def _label_files(labels: dict, working_dir: str) -> list:
    return [_absolute(f, working_dir) for f in (labels.get(CONFIG_FILES_LABEL) or "").split(",") if f.strip()]


def _env_compose_files(values: dict, working_dir: str) -> list:
    sep = values.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
    return [_absolute(f, working_dir) for f in (values.get("COMPOSE_FILE") or "").split(sep) if f.strip()]


def _env_file_choice(src: str, env_file: str | None, labels: dict) -> tuple[str, bool, str]:
    """(path, given explicitly, source) of the env file: the inventory's, the container's, else ``.env``."""
    if env_file:
        return _absolute(env_file, src), True, "option"
    if labels.get(ENV_FILE_LABEL):
        return _absolute(labels[ENV_FILE_LABEL], src), True, "container"
    return os.path.join(src, ".env"), False, "default"


def _files_choice(
    src: str, service: str, files: list | None, from_labels: list, from_env: list, env_path: str, warn
) -> tuple[list, str]:
    """(compose files, source): the inventory's, the container's, ``COMPOSE_FILE``, else Compose's defaults."""
    if files:
        chosen = [_absolute(f, src) for f in files]
        if from_labels and chosen != from_labels:
            warn(
                f"compose_file names {', '.join(chosen)}, but the running container of '{service}' was created from "
                f"{', '.join(from_labels)}: the inventory's files are used."
            )
        return chosen, "option"
    if from_labels:
        if from_env and from_env != from_labels:
            warn(
                f"COMPOSE_FILE in {env_path} names {', '.join(from_env)}, but the running container of '{service}' "
                f"was created from {', '.join(from_labels)}: those are used (set compose_file to choose)."
            )
        return from_labels, "container"
    if from_env:
        return from_env, "env_file"
    return default_compose_files(src), "default"


def _project_choice(project_name: str | None, labels: dict, values: dict) -> tuple[str | None, str]:
    """(project name or None for Compose's default, source)."""
    if project_name:
        return project_name, "option"
    if labels.get(PROJECT_LABEL):
        return labels[PROJECT_LABEL], "container"
    if values.get("COMPOSE_PROJECT_NAME"):
        return values["COMPOSE_PROJECT_NAME"], "env_file"
    return None, "default"


def resolve_config(
    project_src: str,
    service: str,
    *,
    files: list | None = None,
    project_name: str | None = None,
    env_file: str | None = None,
    labels: dict | None = None,
    warn=None,
) -> ProjectConfig:
    """The files, project name, env file and profiles to run ``service`` of the project in ``project_src`` with.

    The inventory's options win; then what the running container was created from (its ``labels``); then
    ``COMPOSE_FILE`` / ``COMPOSE_PROJECT_NAME`` of the env file; then Compose's defaults. A disagreement between
    the inventory or the env file and the running container is warned about (the inventory, else the container,
    wins).
    """
    labels = labels or {}
    src = os.path.abspath(project_src)
    sources: dict = {}
    env_path, explicit, sources["env_file"] = _env_file_choice(src, env_file, labels)
    values = env_values(env_path)
    chosen, sources["files"] = _files_choice(
        src,
        service,
        files,
        _label_files(labels, src),
        _env_compose_files(values, src),
        env_path,
        warn or (lambda msg: None),
    )
    missing = next((path for path in chosen if not os.path.isfile(path)), None)
    if missing:
        raise NotFoundError(
            f"Compose file {missing} does not exist ({sources['files']}): check compose_file, or COMPOSE_FILE in "
            f"{env_path}."
        )
    project, sources["project"] = _project_choice(project_name, labels, values)
    profiles = list(dict.fromkeys(p for path in chosen for p in service_profiles(read_text(path) or "", service, path)))
    return ProjectConfig(src, chosen, project, env_path, explicit, profiles, sources)


def env_project_name(project_src: str, env_file: str | None = None) -> str | None:
    """``COMPOSE_PROJECT_NAME`` of the project's env file, if it sets one."""
    path = _absolute(env_file, project_src) if env_file else os.path.join(project_src, ".env")
    return env_values(path).get("COMPOSE_PROJECT_NAME") or None


def find_service_container(client, project_src: str, service: str, project: str | None = None):
    """The container of ``service`` in the Compose project of ``project_src`` (a running one first), or None.

    Found by the labels v1 and v2 both set: the service, and the working dir (or, when the project is named,
    the project). Several projects running the service from one folder must be told apart by ``project``.
    """
    wanted = os.path.realpath(project_src)
    filters = [f"{SERVICE_LABEL}={service}"] + ([f"{PROJECT_LABEL}={project}"] if project else [])
    # ignore_removed: another project's container listed a moment ago may be gone before it is inspected.
    listed = client.containers.list(all=True, filters={"label": filters}, ignore_removed=True)
    candidates = []
    for container in listed:
        labels = container.labels or {}
        if labels.get(SERVICE_LABEL) != service or labels.get(ONEOFF_LABEL, "False") == "True":
            continue
        if project and labels.get(PROJECT_LABEL) != project:
            continue
        candidates.append(container)
    in_dir = [c for c in candidates if os.path.realpath((c.labels or {}).get(WORKDIR_LABEL) or "/-") == wanted]
    found = in_dir or (candidates if project else [])
    projects = sorted({(c.labels or {}).get(PROJECT_LABEL) for c in found})
    if len(projects) > 1:
        default = default_project_name(project_src)
        if default not in projects:
            raise ComposeError(
                f"Service '{service}' runs in several Compose projects from {project_src} ({', '.join(projects)}): "
                "set project_name to say which one is the Engine."
            )
        found = [c for c in found if (c.labels or {}).get(PROJECT_LABEL) == default]
    found.sort(key=lambda c: (not (c.attrs.get("State") or {}).get("Running"), c.name))
    return found[0] if found else None


def brain_of(container, data_dir: str = "/data") -> dict | None:
    """The identity (``_identity``) of what is mounted at ``data_dir`` in a container, None when nothing is."""
    for mount in (container.attrs.get("Mounts") or []) if container is not None else []:
        if (mount.get("Destination") or "").rstrip("/") == data_dir.rstrip("/"):
            return identity_from_mount(mount, container.name)
    return None


def same_brain(a: dict | None, b: dict | None) -> bool:
    """Whether two identities name the same storage (bind paths compared once symlinks are resolved)."""
    if a is None or b is None:
        return a is b
    if a["key"] == b["key"]:
        return True
    if a["key"].startswith("bind:") and b["key"].startswith("bind:"):
        return os.path.realpath(a["key"][5:]) == os.path.realpath(b["key"][5:])
    return False


def planned_brain(config: dict, service: str, project: str, working_dir: str, data_dir: str = "/data") -> dict | None:
    """What ``compose config`` says the service will mount at ``data_dir``: an identity, or None when unsure.

    A named volume is ``<project>_<key>`` unless the top-level ``volumes:`` gives it a ``name`` or makes it
    ``external``; a bind source is made absolute against the working dir.
    """
    svc = ((config or {}).get("services") or {}).get(service)
    if not isinstance(svc, dict):
        return None
    for entry in svc.get("volumes") or []:
        if isinstance(entry, dict):
            kind, source, target = entry.get("type"), entry.get("source"), entry.get("target")
        elif isinstance(entry, str):
            parts = entry.split(":")
            if len(parts) < 2:
                continue
            source, target = parts[0], parts[1]
            kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
        else:
            continue
        if (target or "").rstrip("/") != data_dir.rstrip("/"):
            continue
        if kind == "bind" and source:
            return identity_from_mount({"type": "bind", "source": _absolute(source, working_dir)}, None)
        if kind == "volume" and source:
            top = ((config.get("volumes") or {}).get(source)) or {}
            external = top.get("external")
            name = (
                top.get("name")
                or ((external.get("name") if isinstance(external, dict) else None) or (source if external else None))
                or f"{project}_{source}"
            )
            return identity_from_mount({"type": "volume", "name": name}, None)
        return None
    return None


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
    return iso(clock())


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


def record(
    state: dict,
    service: str,
    *,
    image: str,
    previous_image: str | None,
    tag_location: dict,
    history: dict,
    rolled_back_from: str | None = None,
    image_id: str | None = None,
    previous_image_id: str | None = None,
    project: dict | None = None,
) -> dict:
    """A copy of ``state`` where ``service`` now uses ``image`` and rolls back to ``previous_image``.

    The image ids are recorded with the references, so that a rollback goes back to the exact image even when
    its tag was moved since. ``project`` (files, name, env file, profiles) is how Compose was run.
    ``history`` (action, from, to, result, at) is appended to the service's history (the last 50 kept).
    """
    data = json.loads(json.dumps(state))
    data["format"] = STATE_FORMAT
    data.setdefault("services", {})
    entry = service_record(data, service)
    entry.update(
        image=image,
        image_id=image_id,
        version=image_tag(image),
        previous_image=previous_image,
        previous_image_id=previous_image_id,
        previous_version=image_tag(previous_image),
        tag_location=tag_location,
        switched_at=history["at"],
    )
    if project is not None:
        entry["project"] = project
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


def explain(exc: BaseException) -> str:
    """The message of an error: this collection's, the Docker daemon's explanation, or the error itself."""
    return str(getattr(exc, "msg", None) or getattr(exc, "explanation", None) or exc)


class ComposeSwitch:
    """Reads the project, plans the switch, and carries it out (or only predicts it in check mode)."""

    def __init__(self, module, client):
        require_yaml()  # the compose files are read with PyYAML
        self.module = module
        self.p = p = module.params
        self.src = os.path.abspath(p["project_src"])
        if not os.path.isdir(self.src):
            raise NotFoundError(f"project_src {self.src} is not a directory.")
        self.service = p["service"]
        self.data_dir = p.get("data_dir") or "/data"
        self.state_path = p["state_file"] or os.path.join(self.src, ".september-engine.json")
        self.client = client
        self.cli = detect_compose(module, p["compose_command"])
        self.actions: list[str] = []
        self.timings = {"drain_seconds": 0.0, "switch_seconds": 0.0}
        self.diff = None
        self.warned_environ = False
        self.previous = self.previous_id = None
        hint = p["project_name"] or env_project_name(self.src, p["env_file"])
        running = find_service_container(client, self.src, self.service, hint)
        labels = (running.labels or {}) if running is not None else None
        self.config = resolve_config(
            self.src,
            self.service,
            files=p["compose_file"],
            project_name=p["project_name"],
            env_file=p["env_file"],
            labels=labels,
            warn=module.warn,
        )
        # What the running container was created from: what a failed switch brings back.
        self.origin = self.config
        if labels and any(p[k] for k in ("compose_file", "project_name", "env_file")):
            try:
                self.origin = resolve_config(self.src, self.service, labels=labels)
            except EngineModuleError:
                self.origin = self.config
        self.files = self.config.files
        self.env_path = self.config.env_path
        self.read()

    # -------------------------------------------------------------- reading
    def read(self) -> None:
        self.texts = [(path, read_text(path)) for path in self.files]
        self.env_text = read_text(self.env_path)
        self.setting = locate_tag(self.texts, self.service, self.env_path, self.env_text, dict(os.environ))

    def project(self, config: ProjectConfig | None = None) -> ComposeProject:
        config = config or self.config
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
        return ComposeProject(
            self.module,
            self.cli,
            config.working_dir,
            config.files,
            project_name=config.project,
            env_file=config.env_path if config.env_explicit else None,
            environ=environ,
            profiles=config.profiles,
        )

    def find(self):
        """The service's container object (a running one first; one-off C(run) containers are ignored)."""
        return find_service_container(self.client, self.src, self.service, self.config.project_name)

    def container(self) -> dict | None:
        c = self.find()
        if c is None:
            return None
        return {
            "id": c.id,
            "name": c.name,
            "status": c.status,
            "running": c.status == "running",
            "image": (c.attrs.get("Config") or {}).get("Image"),
            "image_id": c.attrs.get("Image"),
            "project": (c.labels or {}).get(PROJECT_LABEL),
            "brain": brain_of(c, self.data_dir),
        }

    def image_id(self, ref: str) -> str | None:
        try:
            return get_image(self.client, ref).id
        except NotFoundError:
            return None

    # -------------------------------------------------------------- states
    def present(self, rolled_back: bool = False) -> bool:
        record_ = service_record(load_state(self.state_path), self.service)
        self.previous, self.previous_id = record_.get("previous_image"), record_.get("previous_image_id")
        exact_id = None
        if rolled_back and not (self.p["version"] or self.p["image"]):
            if not self.previous:
                raise OptionsError(
                    f"No previous image of '{self.service}' is recorded in {self.state_path}: nothing to roll back "
                    "to. Give the version (or image) to go back to."
                )
            target, exact_id = self.previous, self.previous_id
        else:
            target = target_ref(self.setting, self.p["version"], self.p["image"], self.p["allow_repository_change"])
            if rolled_back and same_image(target, self.previous):
                exact_id = self.previous_id
        return self.switch(target, "rolled_back" if rolled_back else "present", exact_id)

    def resolve_target(self, target: str, exact_id: str | None) -> tuple[str | None, bool]:
        """(image id to run, whether ``target`` must be tagged on it again): the recorded id wins over a moved tag."""
        current = self.image_id(target)
        if not exact_id or current == exact_id:
            return current, False
        if self.image_id(exact_id) is not None:
            now = f"points at {current[:19]}" if current else "is gone from this host"
            self.module.warn(
                f"{target} {now}, not at the image recorded before the switch ({exact_id[:19]}): going back to the "
                f"recorded image, tagged {target} again."
            )
            return exact_id, True
        if current:
            self.module.warn(
                f"The image recorded before the switch ({exact_id[:19]}) is gone from this host; going back to "
                f"{target} as it is now ({current[:19]}), which may be another build."
            )
        return current, False

    def check_planned_brain(self, before: dict | None) -> None:
        """Refuse, before anything stops, a switch whose project would mount another storage at the data dir."""
        if before is None:
            return
        planned = planned_brain(
            self.project().config() or {},
            self.service,
            self.config.project_name,
            self.config.working_dir,
            self.data_dir,
        )
        if planned is not None and not same_brain(before, planned):
            raise ComposeError(
                f"Refusing to switch service '{self.service}': the project as it would be run "
                f"({', '.join(self.config.files)}, project {self.config.project_name}) mounts {planned['key']} at "
                f"{self.data_dir}, but the Engine runs on {before['key']}; it would come back on another brain. "
                "Nothing was stopped. Name the files the Engine was created from (compose_file, project_name, "
                "env_file).",
                brain={"running": before["key"], "planned": planned["key"]},
            )

    def switch(self, target: str, action: str, exact_id: str | None = None) -> bool:
        c = self.container()
        target_id, retag = self.resolve_target(target, exact_id)
        on_target = same_image(self.setting.image, target)
        if c and c["running"]:
            runs_target = c["image_id"] == target_id if target_id else same_image(c["image"], target)
        else:
            runs_target = False
        self.image = target
        if on_target and runs_target:
            return self.settle_record(c)  # nothing to switch; a record a dead run left "in progress" is settled
        if self.p["pull"] == "never" and target_id is None:
            raise NotFoundError(
                f"Image {target} is not on this Docker host and pull=never: pull it first (nothing was stopped)."
            )
        edit = None
        if not on_target:
            edit = plan_tag_edit(self.setting, dict(self.texts)[self.setting.compose_file], self.env_text, target)
            verify_edit(
                self.texts,
                edit,
                self.service,
                env_path=self.env_path,
                environ=dict(os.environ),
                env_text=self.env_text,
                expected=target,
            )
            self.diff = dict(before_header=edit.path, after_header=edit.path, before=edit.before, after=edit.after)
        before_brain = c["brain"] if c else None
        self.check_planned_brain(before_brain)
        old = (c["image"] if c else None) or self.setting.image
        old_id = c["image_id"] if c else None
        self.actions = (
            (["drain"] if c and c["running"] else [])
            + (["retag"] if retag else [])
            + (["edit"] if edit else [])
            + ["up"]
        )
        recorded = (self.previous, self.previous_id)
        self.previous, self.previous_id = old, old_id
        if self.module.check_mode:
            return True
        # Record the attempt before anything stops: a rollback after a crash of this run still knows where to go.
        rolled_back = action == "rolled_back"
        self.attempt = dict(
            base=load_state(self.state_path),
            old=old,
            old_id=old_id,
            target=target,
            target_id=target_id,
            where=self.setting.as_dict(),
            previous=recorded if rolled_back else (old, old_id),
            edit=edit,
            written=False,
            brain=before_brain,
            # Not verified until state=finalized says so: a re-run then knows the switch still needs verifying.
            history={
                "action": action,
                "from": old,
                "to": target,
                "at": now_iso(),
                "result": "in progress",
                "verified": False,
            },
        )
        after = (target, target_id)
        self.remember(after, after if rolled_back else (old, old_id), rolled_back_from=old if rolled_back else None)
        self.carry_out(c, edit, retag, target, target_id)
        self.remember(
            after, after if rolled_back else (old, old_id), rolled_back_from=old if rolled_back else None, result="ok"
        )
        return True

    def carry_out(self, c: dict | None, edit, retag: bool, target: str, target_id: str | None) -> None:
        """Drain, re-tag, edit, up, check the brain; any failure brings back what was serving, then raises."""
        stage = "drain"
        try:
            if c and c["running"]:
                started = time.monotonic()
                self.project().stop(self.service, self.p["stop_timeout"])
                self.timings["drain_seconds"] = round(time.monotonic() - started, 3)
            started = time.monotonic()
            stage = "switch"
            if retag:
                parsed = ImageRef.parse(target)
                self.client.api.tag(target_id, parsed.repository, parsed.tag, force=True)
            if edit:
                write_atomic(edit.path, edit.new_text)
                self.attempt["written"] = True
            self.read()
            rc, out, err = self.project().up(self.service, self.p["pull"], check=False)
            if rc != 0:
                raise ComposeError(f"'up' said: {(err or out).strip()[-800:]}")
            self.timings["switch_seconds"] = round(time.monotonic() - started, 3)
        except (EngineModuleError, OSError, DockerException, RequestException) as exc:  # all of them: undo
            self.restore(stage, explain(exc))
        before, now = self.attempt["brain"], (self.container() or {}).get("brain")
        if before is not None and not same_brain(before, now):
            self.restore(
                "brain",
                f"the new container mounts {now['key'] if now else 'nothing'} at {self.data_dir}, "
                f"not {before['key']} as before",
            )

    def remember(
        self, image: tuple, previous: tuple, rolled_back_from: str | None = None, result: str | None = None
    ) -> None:
        """Write the state file: the attempt's base state plus this outcome (one history entry per attempt)."""
        a = self.attempt
        history = dict(a["history"], result=result or a["history"]["result"])
        self.save(
            record(
                a["base"],
                self.service,
                image=image[0],
                image_id=image[1],
                previous_image=previous[0],
                previous_image_id=previous[1],
                tag_location=self.setting.as_dict(),
                history=history,
                rolled_back_from=rolled_back_from,
                project=self.config.as_dict(),
            )
        )

    def revive(self) -> str:
        """Start the service's container again as it is (after a failed drain): what was done, for the message."""
        container = self.find()
        if container is None:
            return "but found no container of it to start"
        try:
            container.reload()
            if container.status == "paused":
                container.unpause()
            elif container.status != "running":
                container.start()
        except (DockerException, RequestException) as exc:
            return f"but starting it again failed too: {explain(exc)}"
        return "and started it again"

    def restore(self, stage: str, cause: str) -> None:
        """A switch failed after the service stopped: bring back what was serving, then fail clearly. Raises.

        A failed drain starts the old container as it is; a later failure puts the previous setting back and runs
        ``up`` with what the old container was created from; a brain that would still be another is not served.
        """
        a = self.attempt
        edit = a["edit"]
        if stage == "drain":
            again = self.revive()
            self.remember((a["old"], a["old_id"]), a["previous"], result="drain failed, no change")
            raise ComposeError(
                f"Draining service '{self.service}' before its switch to {a['target']} failed: {cause} -- nothing "
                f"was changed, {again}.",
                changed=True,
            )
        if edit and a["written"]:
            if edit.old_text is None:
                os.unlink(edit.path)
            else:
                write_atomic(edit.path, edit.old_text)
        self.files = self.origin.files
        self.env_path = self.origin.env_path
        self.read()
        rc, out, err = self.project(self.origin).up(self.service, "missing", check=False)
        again = "and started it again"
        if rc != 0:
            again = f"but starting it again failed too: {(err or out).strip()[-500:]}"
        now = self.setting.image or a["old"]
        brain = (self.container() or {}).get("brain")
        wrong = rc == 0 and a["brain"] is not None and not same_brain(a["brain"], brain)
        if wrong:
            self.project(self.origin).stop(self.service, self.p["stop_timeout"])
            again = (
                f"but it came back on {brain['key'] if brain else 'no brain'} again, not on {a['brain']['key']}: "
                "it was STOPPED so that it does not serve another brain. Fix the project's files, then start it"
            )
        self.remember(
            (now, a["old_id"]),
            (now, a["old_id"]),
            rolled_back_from=a["target"],
            result="brain changed, previous setting restored"
            if stage == "brain"
            else "up failed, previous setting restored",
        )
        what = "came back on another brain" if stage == "brain" else "failed"
        raise ComposeError(
            f"Switching service '{self.service}' to {a['target']} {what}: {cause} -- put '{self.setting.raw}' back "
            f"in {a['where']['path']} {again}.",
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
            if c and c["status"] == "paused":
                self.actions = ["unpause"]
                self.find().unpause()
            elif c:
                self.project().start(self.service)
            else:
                self.project().up(self.service, self.p["pull"])
            self.timings["switch_seconds"] = round(time.monotonic() - started, 3)
        return True

    def settle_record(self, c: dict | None) -> bool:
        """Settle a switch the record says is "in progress" by what the service runs now (see _compose_history):
        a run that died mid-switch, or could not write its record, left it so. Returns whether the record changed."""
        state = load_state(self.state_path)
        done = self._settle(service_record(state, self.service), c)
        if done is None:
            return False
        self.actions = [f"settle the unfinished switch's record ({last_switch(done).get('result')})"]
        self.previous, self.previous_id = done.get("previous_image"), done.get("previous_image_id")
        if not self.module.check_mode:
            state.setdefault("services", {})[self.service] = done
            self.save(state)
        return True

    def _settle(self, entry: dict, c: dict | None = None) -> dict | None:
        """``entry`` with its "in progress" switch settled by the running container ``c``, else None."""
        if last_switch(entry).get("result") != IN_PROGRESS:
            return None
        c = c or self.container()
        return settle(entry, c["image"], c["image_id"], now_iso()) if c and c["running"] else None

    def finalized(self) -> bool:
        """Mark the last switch as verified (the upgrade's checks passed, or a rollback's health): nothing else
        changes. A switch still "in progress" is first settled by what the service runs (see :meth:`settle_record`).

        A switch that is not marked so (``verified: false`` in the state file's history) is one that a re-run
        verifies again, to the same standard as a fresh switch, and rolls back if it fails.
        """
        state = load_state(self.state_path)
        before = service_record(state, self.service)
        entry = self._settle(before) or before
        last = last_switch(entry)
        if last.get("verified") is False:
            if last.get("result") != "ok":
                raise ComposeError(
                    f"The last switch of '{self.service}' ({last.get('from')} -> {last.get('to')}) did not end "
                    f"({last.get('result')}): it cannot be marked verified. Roll it back, or switch again."
                )
            entry = dict(entry, history=[*entry["history"][:-1], dict(last, verified=True, verified_at=now_iso())])
        if entry == before:
            return False
        self.actions = ["mark the switch verified"]
        if not self.module.check_mode:
            state.setdefault("services", {})[self.service] = entry
            self.save(state)
        return True

    def save(self, state: dict) -> None:
        write_atomic(self.state_path, dump_state(state), new_mode=0o600)
        os.chmod(self.state_path, 0o600)

    # -------------------------------------------------------------- result
    def run(self) -> dict:
        state = self.p["state"]
        self.image = self.setting.image
        if state in ("present", "rolled_back"):
            changed = self.present(rolled_back=state == "rolled_back")
        else:
            changed = getattr(self, state)()
            entry = service_record(load_state(self.state_path), self.service)
            self.previous, self.previous_id = entry.get("previous_image"), entry.get("previous_image_id")
        c = self.container()
        project = self.config.as_dict()
        compose = {
            "project_src": self.src,
            "service": self.service,
            "compose_command": self.cli.argv,
            "compose_version": self.cli.generation,
            "compose_release": ".".join(map(str, self.cli.version_tuple)),
            "compose_files": self.files,
            "project": project["project"],
            "env_file": project["env_file"],
            "profiles": project["profiles"],
            "config_sources": project["sources"],
            "tag_location": self.setting.as_dict(),
            "image": self.image,
            "version": image_tag(self.image),
            "previous_image": self.previous,
            "previous_image_id": self.previous_id,
            "previous_version": image_tag(self.previous),
            "container": {k: v for k, v in c.items() if k not in ("running", "brain")} if c else None,
            "brain": (c or {}).get("brain"),
            "actions": self.actions,
            "timings": self.timings,
            "state_file": self.state_path,
        }
        result = {"changed": changed, "compose": compose}
        if self.module._diff and changed and self.diff:
            result["diff"] = self.diff
        for warning in self.setting.warnings:
            self.module.warn(warning)
        return result
