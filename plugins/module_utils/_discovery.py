# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Finding the Engines of Docker hosts (the inventory plugin ``september.engine.engines``).

Nothing here knows Ansible's inventory: :func:`discover_host` reads one Docker daemon through the low-level API
(``containers``, ``inspect_image``, ``inspect_container``: three kinds of calls, the list once) and returns one
plain, JSON-able record per Engine; :func:`discover_hosts` does that for many daemons at once in a pool of
worker threads, each within its own time limit, and reports a daemon that does not answer instead of failing.

Which containers are Engines (``Rules``):

- a *per-user container* (the orchestrator of the contract): a container that is not part of a Compose project and
  carries one of ``container_labels`` (``key`` or ``key=value``), or runs an image of one of ``container_images``
  (repositories), or mounts a named volume ``<volume_prefix><engine id>`` at ``data_dir``
  (``engine-data-<engine_id>`` at ``/data`` by default). The containers ``engine_container`` keeps beside an
  Engine (``<name>--previous``, ``<name>--failed``) are not Engines of their own: an Engine is known by its name
  without those suffixes, and is still found when only its ``--previous`` container exists (an upgrade stopped
  between the rename and the new container).
- a *Compose project*: the containers of service ``compose_service`` (``engine``) of one project, by the labels
  Compose v1 and v2 both set (one-off ``run`` containers aside). The project's folder, files and env file are
  read from the labels; the modules run there, on the Docker host.
- every Engine, of either model, carries all of ``required_labels`` (given to Docker as a filter, and checked).
- a rollback drill's staging twin (label ``io.september.engine.drill``, made by ``engine_twin``) carries its
  Engine's labels and image but is never an Engine of the inventory.

The record holds no secret: the containers' environment (where the Engine key lives) is never read.
"""

from __future__ import annotations

import posixpath
import threading
import time
from dataclasses import dataclass, field, replace

from ansible_collections.september.engine.plugins.module_utils._compose_labels import (
    CONFIG_FILES_LABEL,
    ENV_FILE_LABEL,
    NUMBER_LABEL,
    ONEOFF_LABEL,
    PROJECT_LABEL,
    SERVICE_LABEL,
    WORKDIR_LABEL,
)
from ansible_collections.september.engine.plugins.module_utils._image_ref import (
    image_tag,
    is_image_id,
    same_repository,
)

#: The label engine_twin puts on a rollback drill's staging twins (and their volumes).
DRILL_LABEL = "io.september.engine.drill"
DEPLOYMENTS = ("container", "compose")
#: Seconds a Docker host may overrun its time limit before it is no longer waited for.
GRACE_SECONDS = 1.0
#: Host addresses that mean "every interface": the Engine is reached on the Docker host's loopback.
_ANY = ("", "0.0.0.0", "::")


class DiscoveryError(Exception):
    """A Docker host could not be read; the message says which and why."""


class HostTimeout(DiscoveryError):
    """A Docker host did not answer all of the discovery's calls within its time limit."""


def parse_selector(text) -> tuple[str, str | None]:
    """``key`` -> (key, None): the label is present; ``key=value`` -> (key, value). ValueError when empty."""
    if not isinstance(text, str) or not text.strip() or text.strip().startswith("="):
        raise ValueError(f"a label selector is 'key' or 'key=value', not {text!r}")
    key, sep, value = text.strip().partition("=")
    return key.strip(), (value.strip() if sep else None)


def label_matches(labels: dict | None, selector: str) -> bool:
    key, value = parse_selector(selector)
    labels = labels or {}
    return key in labels and (value is None or labels[key] == value)


@dataclass(frozen=True)
class Rules:
    """How Engines are recognised, and what is read of them (the plugin's options)."""

    deployments: tuple = DEPLOYMENTS
    required_labels: tuple = ()
    container_labels: tuple = ()
    container_images: tuple = ()
    volume_prefix: str = "engine-data-"
    compose_service: str = "engine"
    data_dir: str = "/data"
    engine_port: int = 8000
    engine_id_label: str | None = None
    version_label: str = "org.opencontainers.image.version"
    include_stopped: bool = True
    suffixes: tuple = ("--previous", "--failed")

    def with_required(self, extra) -> Rules:
        """These rules with more required labels (a Docker host entry's own)."""
        if not extra:
            return self
        merged = tuple(self.required_labels) + tuple(s for s in extra if s not in self.required_labels)
        return replace(self, required_labels=merged)

    def docker_filters(self) -> dict:
        """The filters of the one ``containers`` call: every required label (Docker ANDs them)."""
        labels = []
        for selector in self.required_labels:
            key, value = parse_selector(selector)
            labels.append(key if value is None else f"{key}={value}")
        return {"label": labels} if labels else {}


class Deadline:
    """A monotonic time limit; :meth:`check` raises :class:`HostTimeout` once it passed."""

    def __init__(self, seconds: float, clock=time.monotonic):
        self.seconds = float(seconds)
        self._clock = clock
        self._end = clock() + self.seconds

    def remaining(self) -> float:
        return self._end - self._clock()

    def check(self, what: str) -> float:
        left = self.remaining()
        if left <= 0:
            raise HostTimeout(f"no complete answer within {self.seconds:g}s (stopped before {what})")
        return left


# ---------------------------------------------------------------------------------------------- reading containers


def container_name(summary: dict) -> str:
    names = summary.get("Names") or []
    return (names[0] if names else summary.get("Id", "")[:12]).lstrip("/")


def data_mount(mounts, data_dir: str) -> dict | None:
    """The mount at ``data_dir`` (Docker's ``Mounts`` entry), None when nothing is mounted there."""
    wanted = data_dir.rstrip("/") or "/"
    for mount in mounts or []:
        if (mount.get("Destination") or "").rstrip("/") == wanted:
            return mount
    return None


def _url_of(bindings, network_mode: str | None, port: int) -> str | None:
    """``http://<addr>:<port>`` from ``[(host_ip, host_port)]``: the loopback for any-interface bindings."""
    if network_mode == "host":
        return f"http://127.0.0.1:{port}"
    best = None
    for given_ip, host_port in bindings:
        if not host_port:
            continue
        host_ip = given_ip or ""
        if host_ip == "127.0.0.1" or host_ip in _ANY:
            rank, addr = (0 if host_ip == "127.0.0.1" else 1), "127.0.0.1"
        elif host_ip == "::1":
            rank, addr = 2, "[::1]"
        else:
            rank, addr = 3, (f"[{host_ip}]" if ":" in host_ip else host_ip)
        if best is None or rank < best[0]:
            best = (rank, f"http://{addr}:{int(host_port)}")
    return best[1] if best else None


def url_from_summary(summary: dict, port: int) -> str | None:
    """The URL of a running container's published ``port/tcp`` (the list's ``Ports``)."""
    bindings = [
        (p.get("IP"), p.get("PublicPort"))
        for p in summary.get("Ports") or []
        if p.get("PrivatePort") == port and (p.get("Type") or "tcp") == "tcp"
    ]
    return _url_of(bindings, (summary.get("HostConfig") or {}).get("NetworkMode"), port)


def url_from_inspect(attrs: dict, port: int) -> str | None:
    """The URL a container publishes ``port/tcp`` on, from its configuration (a stopped container has no Ports)."""
    host_config = attrs.get("HostConfig") or {}
    bound = (host_config.get("PortBindings") or {}).get(f"{port}/tcp") or []
    live = ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{port}/tcp") or []
    bindings = [(b.get("HostIp"), b.get("HostPort")) for b in [*live, *bound]]
    return _url_of(bindings, host_config.get("NetworkMode"), port)


def _strip_suffix(name: str, suffixes) -> tuple[str, str]:
    for suffix in suffixes:
        if suffix and name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], suffix
    return name, ""


def _is_compose(labels: dict) -> bool:
    return bool(labels.get(PROJECT_LABEL)) and bool(labels.get(SERVICE_LABEL))


def _running(summary: dict) -> bool:
    return (summary.get("State") or "") == "running"


def _is_container_engine(summary: dict, rules: Rules) -> bool:
    labels = summary.get("Labels") or {}
    if any(label_matches(labels, s) for s in rules.container_labels):
        return True
    image = summary.get("Image") or ""
    if image and not is_image_id(image) and any(same_repository(image, repo) for repo in rules.container_images):
        return True
    if rules.volume_prefix:
        mount = data_mount(summary.get("Mounts"), rules.data_dir)
        name = (mount or {}).get("Name") or ""
        if (mount or {}).get("Type") == "volume" and name.startswith(rules.volume_prefix):
            return len(name) > len(rules.volume_prefix)
    return False


def _absolute(path: str, base: str | None) -> str:
    return path if posixpath.isabs(path) or not base else posixpath.normpath(posixpath.join(base, path))


class _HostReader:
    """One pass over one Docker daemon: its containers once, each Engine image once, stopped Engines inspected."""

    def __init__(self, api, rules: Rules, deadline: Deadline, missing: tuple = (LookupError,)):
        self.api, self.rules, self.deadline, self.missing = api, rules, deadline, missing
        self._images: dict = {}
        self.problems: list = []

    def _image(self, image_id: str | None) -> dict:
        if not image_id:
            return {}
        if image_id not in self._images:
            self.deadline.check(f"inspecting image {image_id[:19]}")
            try:
                self._images[image_id] = self.api.inspect_image(image_id) or {}
            except self.missing:  # removed since the list: the container's own reference still says something
                self._images[image_id] = {}
        return self._images[image_id]

    def _image_facts(self, summary: dict) -> tuple[str, str | None]:
        """(image reference, version): the version label, else the tag the container runs, else the image's tag."""
        attrs = self._image(summary.get("ImageID"))
        tags = [t for t in attrs.get("RepoTags") or [] if t and not t.startswith("<none>")]
        ref = summary.get("Image") or ""
        if not ref or is_image_id(ref):
            ref = tags[0] if tags else (summary.get("ImageID") or ref)
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        version = labels.get(self.rules.version_label) or image_tag(ref if not is_image_id(ref) else None)
        if not version:
            version = next((image_tag(t) for t in tags if image_tag(t)), None)
        return ref, version

    def _url(self, summary: dict) -> str | None:
        if _running(summary):
            return url_from_summary(summary, self.rules.engine_port)
        self.deadline.check(f"inspecting container {container_name(summary)}")
        try:
            attrs = self.api.inspect_container(summary["Id"]) or {}
        except self.missing:
            return None
        return url_from_inspect(attrs, self.rules.engine_port)

    def _common(self, summary: dict, deployment: str, fallback_id: str) -> dict:
        labels = summary.get("Labels") or {}
        mount = data_mount(summary.get("Mounts"), self.rules.data_dir) or {}
        image, version = self._image_facts(summary)
        engine_id = (labels.get(self.rules.engine_id_label) if self.rules.engine_id_label else None) or fallback_id
        record = {
            "engine_id": engine_id,
            "deployment": deployment,
            "container": container_name(summary),
            "state": summary.get("State") or "unknown",
            "image": image,
            "version": version,
            "url": self._url(summary),
            "volume": mount.get("Name") if mount.get("Type") == "volume" else None,
            "brain_source": mount.get("Source"),
            "labels": dict(labels),
        }
        return record

    def read(self) -> list:
        rules = self.rules
        self.deadline.check("listing containers")
        summaries = self.api.containers(all=True, filters=rules.docker_filters()) or []
        singles: dict = {}
        projects: dict = {}
        for summary in summaries:
            labels = summary.get("Labels") or {}
            if DRILL_LABEL in labels or not all(label_matches(labels, s) for s in rules.required_labels):
                continue
            if _is_compose(labels):
                if (
                    "compose" in rules.deployments
                    and labels.get(SERVICE_LABEL) == rules.compose_service
                    and labels.get(ONEOFF_LABEL, "False") != "True"
                ):
                    projects.setdefault(labels[PROJECT_LABEL], []).append(summary)
            elif "container" in rules.deployments and _is_container_engine(summary, rules):
                base, suffix = _strip_suffix(container_name(summary), rules.suffixes)
                singles.setdefault(base, []).append((suffix, summary))
        engines = [self._container_engine(base, found) for base, found in sorted(singles.items())]
        engines += [self._compose_engine(project, found) for project, found in sorted(projects.items())]
        engines = [e for e in engines if e is not None]
        if not rules.include_stopped:
            engines = [e for e in engines if e["state"] == "running"]
        return engines

    def _container_engine(self, base: str, found: list) -> dict | None:
        order = {"": 0, **{s: i + 1 for i, s in enumerate(self.rules.suffixes)}}
        found.sort(key=lambda pair: (order.get(pair[0], 9), not _running(pair[1])))
        suffix, summary = found[0]
        mount = data_mount(summary.get("Mounts"), self.rules.data_dir) or {}
        volume = mount.get("Name") or ""
        prefix = self.rules.volume_prefix
        fallback = volume[len(prefix) :] if prefix and volume.startswith(prefix) and len(volume) > len(prefix) else base
        record = self._common(summary, "container", fallback)
        record["container_name"] = base
        if suffix:
            record["note"] = f"only {container_name(summary)} exists (an upgrade or rollback did not finish)"
        return record

    def _compose_engine(self, project: str, found: list) -> dict | None:
        def rank(summary):
            labels = summary.get("Labels") or {}
            number = labels.get(NUMBER_LABEL) or "0"
            return (not _running(summary), int(number) if number.isdigit() else 0, container_name(summary))

        found.sort(key=rank)
        summary = found[0]
        labels = summary.get("Labels") or {}
        working_dir = labels.get(WORKDIR_LABEL)
        if not working_dir:
            self.problems.append(
                f"Compose project {project} (container {container_name(summary)}) has no {WORKDIR_LABEL} label "
                "(Compose older than 1.25?): its folder is unknown, so it is left out; recreate it with a newer "
                "Compose, or list it in a hand-written inventory."
            )
            return None
        record = self._common(summary, "compose", project)
        record.update(
            compose_dir=working_dir,
            compose_service=labels.get(SERVICE_LABEL),
            compose_project=project,
            compose_files=[
                _absolute(f.strip(), working_dir)
                for f in (labels.get(CONFIG_FILES_LABEL) or "").split(",")
                if f.strip()
            ],
            compose_env_file=_absolute(labels[ENV_FILE_LABEL], working_dir) if labels.get(ENV_FILE_LABEL) else None,
        )
        if len({container_name(s) for s in found}) > 1:
            record["note"] = (
                f"{len(found)} containers of service {record['compose_service']}; {record['container']} read"
            )
        return record


def discover_host(
    api, rules: Rules, deadline: Deadline | None = None, missing: tuple = (LookupError,)
) -> tuple[list, list]:
    """(Engine records, problems) of one Docker daemon's low-level API client.

    ``missing`` are the exceptions of an object gone since the list (the SDK's ``NotFound``): not a failure.

    :raises HostTimeout: when ``deadline`` passes before the answer is complete.
    """
    reader = _HostReader(api, rules, deadline or Deadline(3600), missing)
    return reader.read(), reader.problems


# ---------------------------------------------------------------------------------------------- many hosts


@dataclass
class Target:
    """One Docker host to read: ``connect(timeout)`` returns its low-level API client (closed afterwards)."""

    name: str
    connect: object
    rules: Rules
    timeout: float = 10.0


@dataclass
class HostResult:
    name: str
    engines: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


def _read_target(target: Target, errors: tuple, missing: tuple) -> HostResult:
    started = time.monotonic()
    deadline = Deadline(target.timeout)
    result = HostResult(target.name)
    api = None
    try:
        api = target.connect(deadline.check("connecting"))
        if hasattr(api, "timeout"):
            api.timeout = max(0.5, deadline.remaining())
        result.engines, result.problems = discover_host(api, target.rules, deadline, missing)
    except HostTimeout as exc:
        result.error = str(exc)
    except errors as exc:
        result.error = _explain(exc)
    finally:
        if api is not None and hasattr(api, "close"):
            try:
                api.close()
            except errors:
                pass
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _explain(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


def discover_hosts(
    targets, *, errors: tuple = (OSError,), missing: tuple = (LookupError,), max_workers: int = 8
) -> dict:
    """Read every target in a pool of worker threads; name -> :class:`HostResult` (``error`` set for a host that
    failed).

    Each host has ``timeout`` seconds from the moment its reading starts (its client's socket timeout is the time
    left, so a TCP client gives up about then too); one that has not answered a second later is reported as such
    and not waited for. The workers are daemon threads: a client that never returns (an ``ssh://`` one waiting on
    a frozen host) does not keep the process from ending. ``errors`` are the exceptions that mean "this host could
    not be read" (the Docker SDK's, its HTTP layer's, the network's); anything else is a bug and is raised here.
    """
    targets = list(targets)
    if not targets:
        return {}
    return _Discovery(targets, tuple(errors), tuple(missing), max(1, min(int(max_workers), len(targets)))).run()


#: The error of a host that no worker got to before every host's time was up.
NOT_READ = "not read: every worker was still waiting on hosts that did not answer"


class _Discovery:
    """One discover_hosts() call: the workers take targets from `todo`; the caller's thread waits for their results
    and gives up on a host that has not answered in time (``cond`` guards every attribute the threads share)."""

    def __init__(self, targets: list, errors: tuple, missing: tuple, workers: int):
        self.targets, self.errors, self.missing, self.workers = targets, errors, missing, workers
        rounds = -(-len(targets) // workers)
        self.hard_end = time.monotonic() + (max(t.timeout for t in targets) + GRACE_SECONDS) * rounds + GRACE_SECONDS
        self.cond = threading.Condition()
        self.todo = list(targets)
        self.starts: dict = {}
        self.results: dict = {}
        self.bugs: list = []

    def run(self) -> dict:
        for index in range(self.workers):
            threading.Thread(target=self.worker, name=f"engines-discovery-{index}", daemon=True).start()
        with self.cond:
            while True:
                if self.bugs:
                    raise self.bugs[0]
                now = time.monotonic()
                ends = self.give_up_on_late(now)
                if len(self.results) == len(self.targets):
                    return {t.name: self.results[t.name] for t in self.targets}
                self.cond.wait(timeout=max(0.05, min([self.hard_end, *ends]) - now))

    def worker(self) -> None:
        while True:
            with self.cond:
                if not self.todo or self.bugs:
                    return
                target = self.todo.pop(0)
                self.starts[target.name] = time.monotonic()
            try:
                result = _read_target(target, self.errors, self.missing)
            except BaseException as exc:  # not swallowed: raised again in the caller's thread
                with self.cond:
                    self.bugs.append(exc)
                    self.cond.notify_all()
                return
            with self.cond:
                self.results.setdefault(target.name, result)  # unless it was given up on meanwhile
                self.cond.notify_all()

    def give_up_on_late(self, now: float) -> list[float]:
        """Results for the hosts that are out of time at `now`; the ends of those still being read (under cond)."""
        ends = []
        for target in self.targets:
            if target.name in self.results:
                continue
            late = self._late(target, now)
            if late is not None:
                self.results[target.name] = late
            elif target.name in self.starts:
                ends.append(self.starts[target.name] + target.timeout + GRACE_SECONDS)
        return ends

    def _late(self, target, now: float) -> HostResult | None:
        """The result of a host given up on at `now`, or None while it still has time (or waits for a worker)."""
        started = self.starts.get(target.name)
        if started is None:
            if now < self.hard_end:
                return None
            return HostResult(target.name, error=NOT_READ)
        if now < started + target.timeout + GRACE_SECONDS and now < self.hard_end:
            return None
        return HostResult(target.name, error=f"no answer within {target.timeout:g}s", seconds=target.timeout)
