# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Switch a per-user Engine's container to another image, roll it back, finalize; make sure an image is present.

The per-user hosting model has no API to change the image of an existing Engine: an upgrade recreates the
container with the same configuration and volume. What "the same configuration" is, is decided here from the
old container's inspect data, by pure functions (unit tested):

- what the creator of the container set (port bindings, volumes and mounts, network and aliases, restart
  policy, log config, resources, env, labels, command...) is copied;
- what the OLD IMAGE contributed (its Env entries, labels, Cmd, Entrypoint, WorkingDir, User, StopSignal,
  Healthcheck, ExposedPorts, Volumes) is dropped, so that the NEW image's defaults apply (a copied
  ENGINE_VERSION=2.3.0 would otherwise follow the Engine onto 2.3.1);
- what Docker filled in at run time (addresses, endpoint ids, the generated hostname, the short-id alias) is
  dropped.

Used by the engine_container and engine_image modules (engine_container is the manager, EngineImage the other).
"""

from __future__ import annotations

import copy
import time

from ansible_collections.september.engine.plugins.module_utils._docker import (
    DockerException,
    ImageNotFound,
    NotFound,
    RequestException,
    image_version,
)
from ansible_collections.september.engine.plugins.module_utils._errors import (
    ContainerError,
    EngineModuleError,
    ImagePullError,
    NotFoundError,
    OptionsError,
)
from ansible_collections.september.engine.plugins.module_utils._image_ref import ImageRef, same_image, split_image_ref

VERSION_LABEL = "org.opencontainers.image.version"
#: Labels this module writes on a container it creates (never copied from the old container).
PREVIOUS_IMAGE_LABEL = "io.september.engine.previous-image"
PREVIOUS_IMAGE_ID_LABEL = "io.september.engine.previous-image-id"
ROLLED_BACK_FROM_LABEL = "io.september.engine.rolled-back-from"
RECORD_LABELS = (PREVIOUS_IMAGE_LABEL, PREVIOUS_IMAGE_ID_LABEL, ROLLED_BACK_FROM_LABEL)

#: Config keys an image supplies when the container's creator leaves them out (dropped when equal to the image's).
IMAGE_DEFAULT_KEYS = ("WorkingDir", "User", "StopSignal", "Healthcheck", "Shell")
#: Config maps the image contributes entries to (the image's entries are dropped, the creator's kept).
IMAGE_MAP_KEYS = ("ExposedPorts", "Volumes")
#: Config flags copied when set.
CONFIG_FLAGS = ("Tty", "OpenStdin", "StdinOnce", "AttachStdin", "AttachStdout", "AttachStderr", "NetworkDisabled")
#: Endpoint settings a creator can set; the others (NetworkID, EndpointID, IPAddress, Gateway, MacAddress,
#: DNSNames...) are filled in by Docker at run time.
ENDPOINT_KEYS = ("IPAMConfig", "Links", "DriverOpts")
#: States in which a container is up (and is drained with docker stop).
UP_STATES = ("running", "restarting", "paused")
#: States of a container that a start brings up.
STARTABLE_STATES = ("created", "exited")
NO_RESTART = {"Name": "no", "MaximumRetryCount": 0}
#: The contract's restart policy, used only when the original one cannot be known.
CONTRACT_RESTART = {"Name": "unless-stopped", "MaximumRetryCount": 0}


# --------------------------------------------------------------------------- pure helpers (unit tested)


def _unset(value) -> bool:
    return value is None or value in ("", [], {})


def same_setting(a, b) -> bool:
    """Equal, counting None, '', [] and {} alike as "not set"."""
    if _unset(a) or _unset(b):
        return _unset(a) and _unset(b)
    return a == b


def env_without_image_defaults(env: list | None, image_env: list | None) -> list:
    """Env entries the creator set: those not equal (name AND value) to an entry of the old image's Env."""
    defaults = set(image_env or [])
    return [item for item in env or [] if item not in defaults]


def labels_without_image_defaults(labels: dict | None, image_labels: dict | None) -> dict:
    """Labels the creator set: not equal (key AND value) to a label of the old image, not one of RECORD_LABELS."""
    image_labels = image_labels or {}
    return {
        key: value
        for key, value in (labels or {}).items()
        if key not in RECORD_LABELS and not (key in image_labels and image_labels[key] == value)
    }


def command_from_container(config: dict, image_config: dict) -> dict:
    """Entrypoint and Cmd as the container's creator set them ({} when both are the image's)."""
    entrypoint, cmd = config.get("Entrypoint"), config.get("Cmd")
    if same_setting(entrypoint, image_config.get("Entrypoint")):
        return {} if _unset(cmd) or same_setting(cmd, image_config.get("Cmd")) else {"Cmd": cmd}
    # An entrypoint of the creator's: Docker did not inherit the image's Cmd then, so Cmd is the creator's too.
    # Null while the image has one means the creator cleared it (docker run --entrypoint "").
    out = {"Entrypoint": entrypoint if not _unset(entrypoint) else [""]}
    if not _unset(cmd):
        out["Cmd"] = cmd
    return out


def image_settings_from_container(config: dict, image_config: dict) -> dict:
    """The IMAGE_DEFAULT_KEYS the creator set to other values, and the entries of IMAGE_MAP_KEYS the image lacks."""
    out = {
        key: config[key]
        for key in IMAGE_DEFAULT_KEYS
        if not _unset(config.get(key)) and not same_setting(config.get(key), image_config.get(key))
    }
    for key in IMAGE_MAP_KEYS:
        image_map = image_config.get(key) or {}
        extra = {k: v for k, v in (config.get(key) or {}).items() if k not in image_map}
        if extra:
            out[key] = extra
    return out


def runtime_settings_from_container(config: dict, container_id: str) -> dict:
    """Hostname (unless Docker's generated one), Domainname, the CONFIG_FLAGS set, and StopTimeout."""
    out: dict = {}
    hostname = config.get("Hostname")
    if hostname and hostname != container_id[:12]:
        out["Hostname"] = hostname
    if config.get("Domainname"):
        out["Domainname"] = config["Domainname"]
    out.update((key, True) for key in CONFIG_FLAGS if config.get(key))
    if config.get("StopTimeout") is not None:
        out["StopTimeout"] = config["StopTimeout"]
    return out


def config_from_container(config: dict, image_config: dict | None, container_id: str) -> dict:
    """The Config part of a create request: what the container's creator set, without the old image's defaults."""
    image_config = image_config or {}
    out: dict = {}
    env = env_without_image_defaults(config.get("Env"), image_config.get("Env"))
    if env:
        out["Env"] = env
    labels = labels_without_image_defaults(config.get("Labels"), image_config.get("Labels"))
    if labels:
        out["Labels"] = labels
    out.update(command_from_container(config, image_config))
    out.update(image_settings_from_container(config, image_config))
    out.update(runtime_settings_from_container(config, container_id))
    return out


def host_config_from_container(host_config: dict | None, mounts: list | None, config: dict | None = None) -> dict:
    """The container's HostConfig as a create request takes it, anonymous volumes carried over by name.

    HostConfig is the creator's configuration as Docker stored it (port bindings, binds, mounts, restart policy,
    network mode, log config, resources...), so it is passed back whole. An anonymous volume (an image's VOLUME, or
    ``-v /path``) would be a new, empty one in the new container: it is bound again by its name instead.
    """
    out = copy.deepcopy(host_config or {})
    out.pop("ContainerIDFile", None)
    binds = list(out.get("Binds") or [])
    named = {bind.split(":", 1)[0] for bind in binds}
    named |= {mount.get("Source") for mount in out.get("Mounts") or []}
    declared = (config or {}).get("Volumes") or {}
    for mount in mounts or []:
        name, destination = mount.get("Name"), mount.get("Destination")
        if mount.get("Type") == "volume" and name and name not in named and destination in declared:
            binds.append(f"{name}:{destination}" + ("" if mount.get("RW", True) else ":ro"))
    if binds:
        out["Binds"] = binds
    return out


def endpoint_from_container(settings: dict | None, container_id: str) -> dict:
    """One network endpoint as its creator set it: aliases (without Docker's short-id alias), links, IPAM, opts."""
    settings = settings or {}
    out = {key: settings[key] for key in ENDPOINT_KEYS if not _unset(settings.get(key))}
    aliases = [alias for alias in settings.get("Aliases") or [] if alias not in (container_id, container_id[:12])]
    if aliases:
        out["Aliases"] = aliases
    return out


def networks_from_container(host_config: dict | None, networks: dict | None, container_id: str) -> tuple[dict, dict]:
    """(endpoints for the create request, {network: endpoint} to connect before the start).

    A create request of Docker API < 1.44 takes one endpoint: that of the network mode; other networks are
    connected after the create. Host, none and container:<id> modes have no endpoints of their own.
    """
    mode = (host_config or {}).get("NetworkMode") or "default"
    if mode in ("host", "none") or mode.startswith("container:"):
        return {}, {}
    networks = networks or {}
    primary = "bridge" if mode == "default" else mode
    if mode == "default" and networks and primary not in networks:
        # Created with the default mode and one network's endpoint: Docker attached that network instead of bridge.
        primary = next(iter(networks))
    create: dict = {}
    connect: dict = {}
    for name, settings in (networks or {}).items():
        endpoint = endpoint_from_container(settings, container_id)
        network_id = (settings or {}).get("NetworkID") or ""
        if name == primary or (len(primary) >= 12 and network_id.startswith(primary)):
            if endpoint or name != "bridge":
                create[name] = endpoint
        else:
            connect[name] = endpoint
    return create, connect


def create_request(attrs: dict, image_config: dict | None, image_ref: str, labels: dict | None = None) -> tuple:
    """(create request body, networks to connect) recreating the container of ``attrs`` on ``image_ref``."""
    config = attrs.get("Config") or {}
    body = config_from_container(config, image_config, attrs["Id"])
    if labels:
        body["Labels"] = {**body.get("Labels", {}), **labels}
    body["Image"] = image_ref
    body["HostConfig"] = host_config_from_container(attrs.get("HostConfig"), attrs.get("Mounts"), config)
    create, connect = networks_from_container(
        attrs.get("HostConfig"), (attrs.get("NetworkSettings") or {}).get("Networks"), attrs["Id"]
    )
    if create:
        body["NetworkingConfig"] = {"EndpointsConfig": create}
    return body, connect


def split_reference(ref: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of an image reference; a port in the registry host is not a tag."""
    return split_image_ref(ref)


def explain(exc: BaseException) -> str:
    """The message of an error: the Docker daemon's explanation when there is one."""
    return str(getattr(exc, "msg", None) or getattr(exc, "explanation", None) or exc)


def pull_failure_kind(message: str) -> str:
    """What a pull error means, for a message an operator understands."""
    text = message.lower()
    if any(s in text for s in ("unauthorized", "authentication required", "denied", "forbidden")):
        return (
            "the registry refused access (or the repository does not exist): check registry_username and "
            "registry_password, or docker login on this host"
        )
    if any(s in text for s in ("manifest unknown", "not found", "no such manifest")):
        return "the tag does not exist in the registry"
    if any(
        s in text
        for s in ("no such host", "dial tcp", "timeout", "connection refused", "network is unreachable", "tls:", "eof")
    ):
        return "the registry is unreachable from this Docker host"
    return "the Docker daemon could not pull it"


# --------------------------------------------------------------------------- engine_container


class DockerActions:
    """What a manager that changes Docker objects shares (engine_container's, engine_twin's).

    Each Docker call that changes something is an action: recorded, and run unless in check mode, its Docker error
    turned into a ContainerError that says which action failed.
    """

    def __init__(self, client, check_mode: bool = False, warn=None):
        self.client = client
        self.api = client.api
        self.check_mode = check_mode
        self.warn = warn or (lambda msg: None)
        self.actions: list[str] = []
        self.changed = False

    def _find(self, name: str):
        """The container NAMED ``name`` (not an id prefix that happens to match), or None."""
        try:
            container = self.client.containers.get(name)
        except NotFound:
            return None
        return container if container.name == name else None

    def _do(self, action: str, call, *args, **kwargs):
        """Record ``action``; run ``call`` unless in check mode. Docker errors become ContainerError."""
        self.actions.append(action)
        self.changed = True
        if self.check_mode:
            return None
        try:
            return call(*args, **kwargs)
        except (DockerException, RequestException) as exc:
            raise ContainerError(f"Could not {action}: {explain(exc)}") from exc

    def _undo(self, steps: list) -> list:
        """Run the undo ``steps`` (what, call, args, kwargs) one after the other, whatever fails; the problems."""
        problems = []
        for what, call, args, kwargs in steps:
            try:
                call(*args, **kwargs)
                self.actions.append(f"undo: {what}")
            except (DockerException, RequestException) as exc:
                problems.append(f"could not {what}: {explain(exc)}")
        return problems


class _Undo:
    """What a switch did so far: enough to put the old container back when a later step fails."""

    def __init__(self, old, policy: dict, was_up: bool, ref: str):
        self.old = old
        self.policy = policy
        self.was_up = was_up
        self.ref = ref
        self.renamed = False
        self.new_id = None


class EngineContainer(DockerActions):
    """What engine_container does, state by state. Check mode plans the same actions and changes nothing."""

    def __init__(self, client, params: dict, check_mode: bool = False, warn=None):
        super().__init__(client, check_mode, warn)
        self.params = params
        self.name = params["name"]
        self.previous_name = self.name + params["previous_suffix"]
        self.failed_name = self.name + params["failed_suffix"]
        self.stop_timeout = params["stop_timeout"]
        self.timings: dict = {"drain_seconds": None, "switch_seconds": None}
        self.predicted: dict = {}
        self.pending_tag: tuple | None = None

    # ------------------------------------------------------------- lookups

    def _current(self, required: bool = True):
        current = self._find(self.name)
        if current is None and required:
            hint = ""
            if self._find(self.previous_name) is not None:
                hint = (
                    f" '{self.previous_name}' exists: a switch was interrupted; state=rolled_back brings the previous "
                    "container back."
                )
            raise NotFoundError(f"No container named '{self.name}' on this Docker host (docker ps -a).{hint}")
        return current

    def _image(self, ref: str):
        try:
            return self.client.images.get(ref)
        except ImageNotFound:
            return None

    @staticmethod
    def _ref(container) -> str:
        return (container.attrs.get("Config") or {}).get("Image") or ""

    def _on_image(self, container, image, ref: str) -> bool:
        """Runs ``ref`` already: the same image id, or (the image being gone locally) the same configured ref."""
        if image is not None:
            return container.attrs.get("Image") == image.id
        return self._ref(container) == ref

    def _version(self, container) -> str | None:
        image = self._image(container.attrs.get("Image") or "")
        return image_version(image, VERSION_LABEL) if image is not None else None

    def view(self) -> dict:
        """The state diffs compare: image, version, previous container, status."""
        current = self._find(self.name)
        return dict(
            image=self._ref(current) if current else None,
            version=self._version(current) if current else None,
            previous_container=self.previous_name if self._find(self.previous_name) else None,
            status=current.status if current else None,
        )

    def describe(self) -> dict:
        """The module's ``container`` return value (the real state; in check mode, the state before)."""
        current = self._find(self.name)
        labels = (current.labels or {}) if current else {}
        return dict(
            name=self.name,
            id=current.id if current else None,
            image=self._ref(current) if current else None,
            image_id=current.attrs.get("Image") if current else None,
            version=self._version(current) if current else None,
            previous_image=labels.get(PREVIOUS_IMAGE_LABEL),
            previous_container=self.previous_name if self._find(self.previous_name) else None,
            failed_container=self.failed_name if self._find(self.failed_name) else None,
            status=current.status if current else None,
            actions=self.actions,
            timings=self.timings,
        )

    # ------------------------------------------------------------- docker calls (each one an action)

    def _drain_stop(self, container, name: str) -> None:
        """docker stop with the drain window: SIGTERM, in-flight turns finish, SIGKILL after stop_timeout."""
        started = time.monotonic()
        action = f"drain-stop {name} (timeout {self.stop_timeout}s)"
        self._do(action, self.api.stop, container.id, timeout=self.stop_timeout)
        if self.check_mode:
            return
        self.timings["drain_seconds"] = round(time.monotonic() - started, 3)
        container.reload()
        exit_code = (container.attrs.get("State") or {}).get("ExitCode")
        if exit_code == 137:
            self.warn(
                f"{name} did not finish draining within stop_timeout={self.stop_timeout}s and was killed (exit 137): "
                "a turn in flight may have been lost."
            )

    def _set_restart(self, container, name: str, policy: dict) -> None:
        self._do(
            f"set restart policy of {name} to {policy.get('Name') or 'no'}",
            self.api.update_container,
            container.id,
            restart_policy=policy,
        )

    # ------------------------------------------------------------- states

    def run(self) -> dict:
        before = self.view()
        getattr(self, "state_" + self.params["state"])()
        after = {**before, **self.predicted} if self.check_mode else self.view()
        return dict(changed=self.changed, container=self.describe(), diff=dict(before=before, after=after))

    def state_present(self) -> None:
        ref = self._require_image_option()
        current = self._current()
        image = self._image(ref)
        previous = self._find(self.previous_name)
        if self._on_image(current, image, ref):
            if previous is not None:
                self._finish_switch(current, previous)
            self._ensure_running(current)
            return
        if previous is not None:
            raise OptionsError(
                f"Unfinished switch: '{self.name}' runs {self._ref(current)} and '{self.previous_name}' "
                f"({self._ref(previous)}) is still kept. Finalize it (state=finalized) or roll it back "
                f"(state=rolled_back) before switching to {ref}."
            )
        if image is None:
            self._image_missing(ref)
        labels = {PREVIOUS_IMAGE_LABEL: self._ref(current), PREVIOUS_IMAGE_ID_LABEL: current.attrs.get("Image") or ""}
        self._recreate(current, ref, image, self.previous_name, labels)

    def _ensure_running(self, current) -> None:
        """Never leave the Engine down: with start, a container on the right image that is not up is started."""
        if not self.params.get("start", True):
            return
        if current.status == "paused":
            self._do(f"unpause {self.name}", self.api.unpause, current.id)
        elif current.status in STARTABLE_STATES:
            self._do(f"start {self.name}", self.api.start, current.id)
        else:
            return
        self.predicted["status"] = "running"

    def _finish_switch(self, current, previous) -> None:
        """Finish a switch to the right image that was interrupted before its last steps (restart policy)."""
        if ((previous.attrs.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") not in ("no", "", None):
            self._set_restart(previous, self.previous_name, NO_RESTART)

    def state_rolled_back(self) -> None:
        previous = self._find(self.previous_name)
        current = self._find(self.name)
        if previous is not None:
            self._back_to_previous(current, previous)
            return
        current = self._current()
        labels = current.labels or {}
        recorded_ref, recorded_id = labels.get(PREVIOUS_IMAGE_LABEL), labels.get(PREVIOUS_IMAGE_ID_LABEL)
        ref = self.params.get("image") or recorded_ref
        if not ref:
            if self._find(self.failed_name) is not None:
                self._ensure_running(current)
                return  # rolled back already: the bad container is kept as failed_name
            raise OptionsError(
                f"'{self.name}' has no '{self.previous_name}' container to roll back to (finalized, or never "
                "switched by this module) and no recorded previous image: set image to the version to go back to."
            )
        exact_id = recorded_id if recorded_id and same_image(ref, recorded_ref) else None
        image = self._rollback_image(ref, exact_id)
        if self._on_image(current, image, ref):
            self._ensure_running(current)
            return
        if image is None:
            self._image_missing(ref)
        self._retag(ref, image)
        self._recreate(current, ref, image, self.failed_name, {ROLLED_BACK_FROM_LABEL: self._ref(current)})

    def _rollback_image(self, ref: str, exact_id: str | None):
        """The image to go back to: the one recorded before the switch (by id), whatever ``ref`` points at now.

        A reference re-tagged since (or removed) must not take the Engine to another build: the recorded id wins,
        and is tagged ``ref`` again before the container is created from it (:meth:`_retag`).
        """
        image = self._image(ref)
        if not exact_id or (image is not None and image.id == exact_id):
            return image
        recorded = self._image(exact_id)
        if recorded is not None:
            now = f"points at {image.id[:19]}" if image is not None else "is gone from this host"
            self.warn(
                f"{ref} {now}, not at the image recorded before the switch ({exact_id[:19]}): going back to the "
                f"recorded image, tagged {ref} again."
            )
            self.pending_tag = (exact_id, ref)
            return recorded
        if image is not None:
            self.warn(
                f"The image recorded before the switch ({exact_id[:19]}) is gone from this host; going back to {ref} "
                f"as it is now ({image.id[:19]}), which may be another build."
            )
        return image

    def _retag(self, ref: str, image) -> None:
        """Tag the recorded image ``ref`` again when :meth:`_rollback_image` chose it over what ``ref`` points at."""
        if not self.pending_tag or image is None or image.id != self.pending_tag[0]:
            return
        parsed = ImageRef.parse(ref)
        if parsed.digest or not parsed.tag:
            return  # a digest pins the content already
        image_id = self.pending_tag[0]
        self._do(f"tag {image_id[:19]} as {ref}", self.api.tag, image_id, parsed.repository, parsed.tag, force=True)

    def state_finalized(self) -> None:
        previous = self._find(self.previous_name)
        if previous is not None:
            current = self._find(self.name)
            if current is None:
                raise ContainerError(
                    f"Refusing to remove '{self.previous_name}': there is no '{self.name}', so it is the only copy "
                    "of the Engine's container. Roll back (state=rolled_back) instead."
                )
            if previous.status in UP_STATES:
                raise ContainerError(
                    f"Refusing to remove '{self.previous_name}': it is {previous.status}. Stop it, or roll back."
                )
            if current.status != "running":
                self.warn(f"'{self.name}' is {current.status}; its previous container is removed all the same.")
            self._do(f"remove {self.previous_name}", self.api.remove_container, previous.id, v=False)
            self.predicted["previous_container"] = None
        if self.params.get("remove_failed"):
            failed = self._find(self.failed_name)
            if failed is not None:
                self._do(f"remove {self.failed_name}", self.api.remove_container, failed.id, v=False, force=True)

    def state_stopped(self) -> None:
        current = self._current()
        if current.status in UP_STATES:
            self._drain_stop(current, self.name)
            self.predicted["status"] = "exited"

    def state_started(self) -> None:
        current = self._current()
        if current.status == "paused":
            self._do(f"unpause {self.name}", self.api.unpause, current.id)
            self.predicted["status"] = "running"
        elif current.status not in ("running", "restarting"):
            self._do(f"start {self.name}", self.api.start, current.id)
            self.predicted["status"] = "running"

    # ------------------------------------------------------------- the switch itself

    def _require_image_option(self) -> str:
        ref = self.params.get("image")
        if not ref:
            raise OptionsError("state=present needs image, the full reference to switch to (e.g. engine:2.3.1).")
        return ref

    def _image_missing(self, ref: str) -> None:
        msg = (
            f"Image '{ref}' is not present on this Docker host: nothing was stopped, '{self.name}' keeps running. "
            "Make it present first (september.engine.engine_image), then switch."
        )
        if not self.check_mode:
            raise NotFoundError(msg)
        self.warn(msg)

    def _recreate(self, current, ref: str, image, keep_as: str, labels: dict) -> None:
        """Drain-stop ``current``, keep it as ``keep_as``, create and start its twin on ``ref``.

        The kept container gets restart policy ``no`` last, once the new one started: until then it keeps its own,
        so that an interrupted switch can still be rolled back to exactly what ran before.
        """
        attrs = current.attrs
        policy = (attrs.get("HostConfig") or {}).get("RestartPolicy") or CONTRACT_RESTART
        if (attrs.get("HostConfig") or {}).get("AutoRemove"):
            raise ContainerError(
                f"'{self.name}' is created with AutoRemove (--rm): stopping it would delete it, so it cannot be kept "
                "as the previous container for a rollback. Recreate it without --rm first."
            )
        old_image = self._image(attrs.get("Image") or "")
        if old_image is None:
            raise ContainerError(
                f"The image of '{self.name}' ({self._ref(current)}, {attrs.get('Image')}) is gone from this host: "
                "what the old image set cannot be told from what the orchestrator set, so the container cannot be "
                "recreated faithfully. Pull that image again first."
            )
        body, connect = create_request(attrs, (old_image.attrs or {}).get("Config"), ref, labels)
        undo = _Undo(current, policy, current.status in UP_STATES, ref)
        started = time.monotonic()
        try:
            if undo.was_up:
                self._drain_stop(current, self.name)
            older = self._find(keep_as) if keep_as == self.failed_name else None
            if older is not None:
                self._do(f"remove {keep_as} (an older one)", self.api.remove_container, older.id, v=False, force=True)
            self._do(f"rename {self.name} to {keep_as}", self.api.rename, current.id, keep_as)
            undo.renamed = True
            create = self.api.create_container_from_config
            undo.new_id = (self._do(f"create {self.name} from {ref}", create, body, name=self.name) or {}).get("Id")
            for network, endpoint in connect.items():
                self._connect(undo.new_id, network, endpoint)
            if self.params.get("start", True):
                self._do(f"start {self.name}", self.api.start, undo.new_id)
            self._set_restart(current, keep_as, NO_RESTART)
        except (EngineModuleError, DockerException, RequestException) as exc:
            self._put_back(undo, exc)
        if not self.check_mode:
            self.timings["switch_seconds"] = round(time.monotonic() - started, 3)
        self.predicted.update(image=ref, version=image_version(image, VERSION_LABEL) if image else None)
        if keep_as == self.previous_name:
            self.predicted["previous_container"] = self.previous_name
        self.predicted["status"] = "running" if self.params.get("start", True) else "created"

    def _connect(self, container_id, network: str, endpoint: dict) -> None:
        ipam = endpoint.get("IPAMConfig") or {}
        links = [tuple(link.split(":", 1)) if ":" in link else (link, None) for link in endpoint.get("Links") or []]
        self._do(
            f"connect {self.name} to network {network}",
            self.api.connect_container_to_network,
            container_id,
            network,
            aliases=endpoint.get("Aliases") or None,
            links=links or None,
            ipv4_address=ipam.get("IPv4Address") or None,
            ipv6_address=ipam.get("IPv6Address") or None,
            link_local_ips=ipam.get("LinkLocalIPs") or None,
            driver_opt=endpoint.get("DriverOpts") or None,
        )

    def _put_back(self, undo: _Undo, cause: Exception) -> None:
        """Undo a failed switch: the Engine must not be left down by this module. Always raises."""
        old, api = undo.old, self.api
        steps = []
        if undo.new_id:
            steps.append(("remove the half-made new container", api.remove_container, (undo.new_id,), {"force": True}))
        if undo.renamed:
            steps.append((f"rename the old container back to {self.name}", api.rename, (old.id, self.name), {}))
            policy = {"restart_policy": undo.policy}
            steps.append(("restore its restart policy", api.update_container, (old.id,), policy))
        if undo.was_up:
            steps.append(("start it again", self.api.start, (old.id,), {}))
        problems = self._undo(steps)
        if problems:
            raise ContainerError(
                f"Switching '{self.name}' to {undo.ref} failed ({explain(cause)}), and putting the old container back "
                f"failed too ({'; '.join(problems)}). The Engine may be DOWN: check docker ps -a for '{self.name}' and "
                f"'{self.previous_name}'/'{self.failed_name}' and start the old one by hand.",
                actions=self.actions,
            )
        raise ContainerError(
            f"Switching '{self.name}' to {undo.ref} failed: {explain(cause)}. The old container was put back "
            f"({self._ref(old)}){' and started again' if undo.was_up else ''}; nothing else changed.",
            actions=self.actions,
        )

    def _back_to_previous(self, current, previous) -> None:
        """Keep the bad container as failed_name (stopped, restart policy no) and bring the previous one back.

        A step that fails puts back what was serving (the current container, under its name, with its restart
        policy, started) before the module fails: a rollback never leaves the Engine down by itself.
        """
        started = time.monotonic()
        undo = _Undo(current, {}, current is not None and current.status in UP_STATES, self._ref(previous))
        undo.previous = previous
        try:
            if current is not None:
                policy = (current.attrs.get("HostConfig") or {}).get("RestartPolicy") or CONTRACT_RESTART
                undo.policy = policy
                if undo.was_up:
                    self._drain_stop(current, self.name)
                self._set_restart(current, self.name, NO_RESTART)
                older = self._find(self.failed_name)
                if older is not None:
                    self._do(f"remove {self.failed_name} (an older one)", self.api.remove_container, older.id,
                             force=True)
                self._do(f"rename {self.name} to {self.failed_name}", self.api.rename, current.id, self.failed_name)
                undo.renamed = True
            else:
                policy = (previous.attrs.get("HostConfig") or {}).get("RestartPolicy") or {}
                if policy.get("Name") in ("no", "", None):
                    policy = CONTRACT_RESTART
                    self.warn(
                        f"'{self.name}' does not exist (an interrupted switch?) and '{self.previous_name}' has restart "
                        "policy no: it gets the contract's restart policy unless-stopped."
                    )
            image = self.params.get("image")
            if image and not self._on_image(previous, self._image(image), image):
                self.warn(
                    f"'{self.previous_name}' runs {self._ref(previous)}, not {image}: rolled back to the previous "
                    "container all the same (it holds the configuration that last worked)."
                )
            self._do(f"rename {self.previous_name} to {self.name}", self.api.rename, previous.id, self.name)
            undo.new_id = previous.id
            self._set_restart(previous, self.name, policy)
            if self.params.get("start", True):
                self._do(f"start {self.name}", self.api.start, previous.id)
        except (EngineModuleError, DockerException, RequestException) as exc:
            self._undo_back(undo, exc)
        if not self.check_mode:
            self.timings["switch_seconds"] = round(time.monotonic() - started, 3)
        self.predicted.update(
            image=self._ref(previous),
            version=self._version(previous),
            previous_container=None,
            status="running" if self.params.get("start", True) else previous.status,
        )

    def _undo_back(self, undo: _Undo, cause: Exception) -> None:
        """A rollback step failed: put the previous container back as it was, start what was serving. Raises."""
        api, old = self.api, undo.old
        steps = []
        if undo.new_id:
            steps.append((f"stop {self.name} (the previous container)", api.stop, (undo.new_id,), {"timeout": 10}))
            steps.append((f"rename it back to {self.previous_name}", api.rename, (undo.new_id, self.previous_name), {}))
            steps.append(("give it restart policy no again", api.update_container, (undo.new_id,),
                          {"restart_policy": NO_RESTART}))
        if undo.renamed:
            steps.append((f"rename {self.failed_name} back to {self.name}", api.rename, (old.id, self.name), {}))
        if old is not None and undo.policy:
            policy = {"restart_policy": undo.policy}
            steps.append(("restore its restart policy", api.update_container, (old.id,), policy))
        if undo.was_up:
            steps.append((f"start {self.name} again", api.start, (old.id,), {}))
        problems = self._undo(steps)
        if problems:
            raise ContainerError(
                f"Rolling '{self.name}' back to '{self.previous_name}' ({undo.ref}) failed ({explain(cause)}), and "
                f"putting back what was serving failed too ({'; '.join(problems)}). The Engine may be DOWN: check "
                f"docker ps -a for '{self.name}', '{self.previous_name}' and '{self.failed_name}'.",
                actions=self.actions,
            )
        serving = f"'{self.name}' ({self._ref(old)}) was put back and started again" if undo.was_up else (
            "nothing was serving before; nothing was started")
        raise ContainerError(
            f"Rolling '{self.name}' back to '{self.previous_name}' ({undo.ref}) failed: {explain(cause)}. {serving}; "
            f"'{self.previous_name}' is kept as it was.",
            actions=self.actions,
        )


# --------------------------------------------------------------------------- engine_image


class EngineImage:
    """What engine_image does: make sure an image is present, pulling it when told to. Check mode pulls nothing."""

    def __init__(self, client, params: dict, check_mode: bool = False):
        self.client = client
        self.params = params
        self.check_mode = check_mode
        self.ref = params["name"]

    def _local(self):
        try:
            return self.client.images.get(self.ref)
        except ImageNotFound:
            return None

    def describe(self, image, pulled: bool, actions: list) -> dict:
        return dict(
            name=self.ref,
            id=image.id if image is not None else None,
            version=image_version(image, VERSION_LABEL) if image is not None else None,
            pulled=pulled,
            present=image is not None,
            actions=actions,
        )

    def run(self) -> dict:
        try:
            ref = ImageRef.parse(self.ref).validate()
        except ValueError as exc:
            raise OptionsError(f"name: {exc}.") from exc
        if not ref.pinned:
            raise OptionsError(
                f"Image reference '{self.ref}' has no tag: pin the release (for example engine:2.3.1); Engines "
                "are never run from an implicit latest."
            )
        local = self._local()
        pull = self.params["pull"]
        before = dict(present=local is not None, id=local.id if local is not None else None)
        if local is not None and pull != "always":
            return dict(changed=False, image=self.describe(local, False, []), diff=dict(before=before, after=before))
        if local is None and pull == "never":
            raise NotFoundError(
                f"Image '{self.ref}' is not present on this Docker host and pull=never: build or load it first "
                "(docker load / docker build), or allow a pull."
            )
        actions = [f"pull {self.ref}"]
        if self.check_mode:
            after = dict(present=True, id=before["id"])
            return dict(changed=True, image=self.describe(local, False, actions), diff=dict(before=before, after=after))
        pulled = self._pull(*ref.pull_args())
        after = dict(present=True, id=pulled.id)
        changed = local is None or local.id != pulled.id
        return dict(changed=changed, image=self.describe(pulled, True, actions), diff=dict(before=before, after=after))

    def _pull(self, repository: str, tag: str):
        auth = None
        if self.params.get("registry_username"):
            auth = dict(username=self.params["registry_username"], password=self.params.get("registry_password"))
        try:
            for chunk in self.client.api.pull(repository, tag=tag, stream=True, decode=True, auth_config=auth):
                error = chunk.get("error") or (chunk.get("errorDetail") or {}).get("message")
                if error:
                    self._fail(error)
            return self.client.images.get(self.ref)
        except (DockerException, RequestException) as exc:
            self._fail(explain(exc))
        return None  # not reached: _fail raises

    def _fail(self, error: str) -> None:
        raise ImagePullError(
            f"Could not pull image '{self.ref}': {pull_failure_kind(error)}. Docker said: {error}. "
            "Nothing was changed on this host."
        )
