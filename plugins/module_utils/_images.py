# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Engine images kept for rollback: the retention of engine_images, and the pre-flight's rollback image check.

The Rollback runbook: "keep at least the last 5 versions of each image". Per repository, the local images are
ordered by their version and the newest ``keep`` versions are kept. An older one is removed only when nothing
may need it:

- a container uses it (running or stopped, an Engine or not; an Engine's kept ``--previous`` container too);
- an Engine's recorded rollback names it: the ``io.september.engine.previous-image`` / ``-image-id`` labels of
  a container, or ``image`` / ``previous_image`` (and their ids) in a Compose project's ``.september-engine.json``
  (the projects' folders come from the containers' ``com.docker.compose.project.working_dir`` label);
- the operator protects it (``protect``: references or ids);
- it carries a tag that is not a version (``latest``, ``stable``): somebody names it, it is left alone.

A tag is a version when it is a whole semantic version (``2.3.0``, ``v2.3.0``, ``2.4.0-rc.1``); ``2.4`` or
``latest`` are not. An image known in the repository only by digest is ordered by its
``org.opencontainers.image.version`` label. Removal goes reference by reference (the repository's tags, then its
digests), each checked to still point at the planned image id, never forced: Docker refuses what a container
uses, and that refusal is reported, not an error. References of OTHER repositories to the same image are never
touched (the image then stays, untagged in this repository only).

Everything reads Docker through the low-level API in a few list calls (one for the images, one for the
containers), so that a host of hundreds of Engines costs no more than one of ten.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ansible_collections.september.engine.plugins.module_utils._compose import (
    PROJECT_LABEL,
    SERVICE_LABEL,
    WORKDIR_LABEL,
    load_state,
)
from ansible_collections.september.engine.plugins.module_utils._docker import DockerException, RequestException
from ansible_collections.september.engine.plugins.module_utils._engine import (
    COMPOSE_STATE_FILE,
    PREVIOUS_IMAGE_ID_LABEL,
    PREVIOUS_IMAGE_LABEL,
    ROLLED_BACK_FROM_LABEL,
)
from ansible_collections.september.engine.plugins.module_utils._errors import EngineModuleError, OptionsError
from ansible_collections.september.engine.plugins.module_utils._image_ref import ImageRef, is_image_id

VERSION_LABEL = "org.opencontainers.image.version"
DEFAULT_KEEP = 5
_SEMVER = re.compile(r"^[vV]?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$")
_HEX_ID = re.compile(r"^(?:sha256:)?([0-9a-f]{12,64})$")


class ImageRetentionError(EngineModuleError):
    """The retention cannot decide safely (the daemon went away, a rollback record cannot be read)."""


def images_argument_spec() -> dict:
    """Options of engine_images (besides the Docker connection)."""
    return dict(
        repositories=dict(type="list", elements="str"),
        keep=dict(type="int", default=DEFAULT_KEEP),
        protect=dict(type="list", elements="str", default=[]),
        compose_dirs=dict(type="list", elements="path", default=[]),
        compose_services=dict(type="list", elements="str", default=["engine"]),
        volume_prefix=dict(type="str", default="engine-data-"),
        data_dir=dict(type="str", default="/data"),
        previous_suffix=dict(type="str", default="--previous"),
    )


# --------------------------------------------------------------------------- versions (pure)


def parse_semver(text: str | None) -> tuple | None:
    """A sort key of a whole semantic version (``2.3.0``, ``v2.4.0-rc.1``), None for anything else.

    Precedence as semver.org: a release sorts after its pre-releases; pre-release identifiers compare
    numerically when numeric (and then before alphanumeric ones), else as text.
    """
    match = _SEMVER.match((text or "").strip())
    if not match:
        return None
    major, minor, patch, pre = match.groups()
    if pre is None:
        return int(major), int(minor), int(patch), 1, ()
    idents = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return int(major), int(minor), int(patch), 0, idents


def repository_key(text: str) -> str:
    """The normalized repository of a reference or repository (``engine`` -> ``docker.io/library/engine``)."""
    return ImageRef.parse(text).normalized().repository


def _real_refs(refs) -> list:
    return [ref for ref in refs or [] if ref and not ref.startswith("<none>")]


@dataclass
class LocalImage:
    """One local image as the images list shows it."""

    id: str
    tags: list = field(default_factory=list)
    digests: list = field(default_factory=list)
    labels: dict = field(default_factory=dict)

    @classmethod
    def from_api(cls, entry: dict) -> LocalImage:
        return cls(entry.get("Id") or "", _real_refs(entry.get("RepoTags")), _real_refs(entry.get("RepoDigests")),
                   dict(entry.get("Labels") or {}))

    def refs(self) -> list:
        return [*self.tags, *self.digests]


@dataclass
class RepoImage:
    """One local image seen from one repository: its references there, and its version."""

    image: LocalImage
    version_tags: list  # [(ref, key)] newest first
    other_tags: list
    digests: list

    @property
    def id(self) -> str:
        return self.image.id

    @property
    def version_key(self) -> tuple | None:
        if self.version_tags:
            return self.version_tags[0][1]
        if not self.other_tags:  # known only by digest: the version label orders it
            return parse_semver(self.image.labels.get(VERSION_LABEL))
        return None

    @property
    def name(self) -> str:
        """The reference a report shows: the newest version tag, else any reference in the repository."""
        if self.version_tags:
            return self.version_tags[0][0]
        return ([*self.other_tags, *self.digests] or [""])[0]

    @property
    def removal_refs(self) -> list:
        return [ref for ref, _key in self.version_tags] + list(self.digests)


def repo_images(images: list, repository: str) -> list:
    """The images that have a reference in ``repository`` (normalized), as :class:`RepoImage`."""
    out = []
    for image in images:
        tags = [t for t in image.tags if repository_key(t) == repository]
        digests = [d for d in image.digests if repository_key(d) == repository]
        if not tags and not digests:
            continue
        versioned = [(t, parse_semver(ImageRef.parse(t).tag)) for t in tags]
        version_tags = sorted([(t, k) for t, k in versioned if k is not None], key=lambda tk: tk[1], reverse=True)
        other_tags = [t for t, k in versioned if k is None]
        out.append(RepoImage(image, version_tags, other_tags, digests))
    return out


# --------------------------------------------------------------------------- who needs an image (pure)


#: Kinds of reasons to keep an image, in the order a report gives them, and how each is said.
REASONS = {
    "used": "used by {n} container(s): {names}",
    "kept": "kept previous container(s) for a rollback: {names}",
    "label": "the rollback recorded in the labels of {names}",
    "state": "the rollback recorded in {names}",
    "compose": "the Compose Engine recorded in {names} runs it",
    "protect": "listed in protect: {names}",
}
#: How many names a reason shows before "and N more" (a host may run hundreds of Engines on one image).
SHOWN_NAMES = 3


class Protections:
    """Why each image must stay: ``{image id: {kind: [subject, ...]}}``, filled from references or ids."""

    def __init__(self, images: list):
        self.reasons: dict = {}
        self._by_ref: dict = {}
        self._ids = [image.id for image in images]
        for image in images:
            for ref in image.refs():
                self._by_ref[self._ref_key(ref)] = image.id

    @staticmethod
    def _ref_key(ref: str) -> str:
        parsed = ImageRef.parse(ref)
        return str(parsed.normalized() if parsed.tag or parsed.digest else parsed.normalized().with_tag("latest"))

    def resolve(self, text: str | None) -> str | None:
        """The local image id a reference or an id (full, or a prefix of 12+ hex) names, None when none here."""
        if not text:
            return None
        text = text.strip()
        match = _HEX_ID.match(text)
        if match:
            found = [i for i in self._ids if i.split(":", 1)[-1].startswith(match.group(1))]
            if len(found) == 1:
                return found[0]
            if match.group(0).startswith("sha256:") or len(match.group(1)) == 64:
                return None
        return self._by_ref.get(self._ref_key(text))

    def add(self, text: str | None, kind: str, subject: str) -> None:
        image_id = self.resolve(text)
        if image_id is None:
            return
        subjects = self.reasons.setdefault(image_id, {}).setdefault(kind, [])
        if subject not in subjects:
            subjects.append(subject)

    def why(self, image_id: str) -> list:
        """One sentence per kind of reason, each naming at most SHOWN_NAMES subjects."""
        found = self.reasons.get(image_id, {})
        out = []
        for kind, text in REASONS.items():
            subjects = found.get(kind)
            if subjects:
                names = ", ".join(subjects[:SHOWN_NAMES])
                if len(subjects) > SHOWN_NAMES:
                    names += f" and {len(subjects) - SHOWN_NAMES} more"
                out.append(text.format(n=len(subjects), names=names))
        return out


def container_name(summary: dict) -> str:
    names = summary.get("Names") or []
    return (names[0].lstrip("/") if names else "") or (summary.get("Id") or "")[:12]


def protect_containers(protections: Protections, containers: list, previous_suffix: str) -> None:
    """Every container's image (in use), and the rollback its labels record."""
    for summary in containers:
        name = container_name(summary)
        subject = f"{name} ({summary.get('State') or 'unknown'})"
        kept = bool(previous_suffix) and name.endswith(previous_suffix)
        protections.add(summary.get("ImageID"), "kept" if kept else "used", subject)
        labels = summary.get("Labels") or {}
        for label in (PREVIOUS_IMAGE_ID_LABEL, PREVIOUS_IMAGE_LABEL):
            protections.add(labels.get(label), "label", name)


def compose_dirs_of(containers: list, extra: list) -> list:
    """Compose project folders: the working_dir label of every Compose container, then ``extra``."""
    dirs = []
    for summary in containers:
        workdir = (summary.get("Labels") or {}).get(WORKDIR_LABEL)
        if workdir:
            dirs.append(workdir)
    dirs.extend(extra or [])
    seen, out = set(), []
    for path in dirs:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            out.append(real)
    return out


def state_records(compose_dirs: list) -> list:
    """[(state file, service, record)] of every Compose project folder that has a state file."""
    records = []
    for folder in compose_dirs:
        path = os.path.join(folder, COMPOSE_STATE_FILE)
        if not os.path.exists(path):
            continue
        try:
            state = load_state(path)
        except EngineModuleError as exc:
            raise ImageRetentionError(
                f"{exc.msg} It records what a Compose Engine rolls back to, so no image was removed (run as a user "
                "that can read it, e.g. become: true)."
            ) from exc
        for service, record in sorted((state.get("services") or {}).items()):
            records.append((path, service, record if isinstance(record, dict) else {}))
    return records


def protect_state_records(protections: Protections, records: list) -> None:
    for path, service, record in records:
        for key in ("previous_image_id", "previous_image"):
            protections.add(record.get(key), "state", f"{path} (service {service})")
        for key in ("image_id", "image"):
            protections.add(record.get(key), "compose", f"{path} (service {service})")


def protect_option(protections: Protections, protect: list) -> None:
    for item in protect or []:
        protections.add(item, "protect", item)


# --------------------------------------------------------------------------- which repositories (pure)


def is_engine_container(summary: dict, services: list, volume_prefix: str, data_dir: str) -> bool:
    """An Engine: a volume named ``<volume_prefix>*`` at the data dir, the collection's labels, or a Compose
    service named as an Engine (``engine``)."""
    labels = summary.get("Labels") or {}
    if labels.get(SERVICE_LABEL) in services and (labels.get(PROJECT_LABEL) or labels.get(WORKDIR_LABEL)):
        return True
    if any(labels.get(label) for label in (PREVIOUS_IMAGE_LABEL, PREVIOUS_IMAGE_ID_LABEL, ROLLED_BACK_FROM_LABEL)):
        return True
    for mount in summary.get("Mounts") or []:
        at_data = (mount.get("Destination") or "").rstrip("/") == data_dir.rstrip("/")
        if at_data and mount.get("Type") == "volume" and (mount.get("Name") or "").startswith(volume_prefix):
            return True
    return False


def _repository_of(ref: str | None) -> str | None:
    if not ref or is_image_id(ref):
        return None
    try:
        return ImageRef.parse(ref).validate().repository
    except ValueError:
        return None


def engine_repositories(containers: list, records: list, services: list, volume_prefix: str, data_dir: str) -> list:
    """The repositories of the Engines on this host (their images and recorded rollbacks), in first-seen order."""
    found = []
    for summary in containers:
        if is_engine_container(summary, services, volume_prefix, data_dir):
            labels = summary.get("Labels") or {}
            found += [_repository_of(summary.get("Image")), _repository_of(labels.get(PREVIOUS_IMAGE_LABEL))]
    for _path, service, record in records:
        if service in services:
            found += [_repository_of(record.get("image")), _repository_of(record.get("previous_image"))]
    out, seen = [], set()
    for repo in found:
        if repo and repository_key(repo) not in seen:
            seen.add(repository_key(repo))
            out.append(repo)
    return out


def check_repository(text: str) -> str:
    """A repository option entry, validated: no tag, no digest."""
    try:
        ref = ImageRef.parse(text).validate()
    except ValueError as exc:
        raise OptionsError(f"repositories: {exc}.") from exc
    if ref.tag or ref.digest:
        raise OptionsError(
            f"repositories: '{text}' names one image; give the repository only ({ref.repository}): every version "
            "of it is considered."
        )
    return ref.repository


# --------------------------------------------------------------------------- the plan (pure)


def plan_repository(images: list, keep: int, protections: Protections) -> dict:
    """What retention does in one repository (``images``: its :class:`RepoImage` list).

    ``kept``: the references of the newest ``keep`` versions; ``remove``: the images to remove (RepoImage);
    ``protected``: older images that stay, and why; ``skipped``: references that are not versions.
    """
    plan = dict(kept=[], remove=[], protected=[], skipped=[])
    for image in images:
        for ref in image.other_tags:
            plan["skipped"].append(dict(ref=ref, id=image.id, why="not a version tag: left alone"))
        if image.version_key is None and not image.other_tags:
            for ref in image.digests:
                plan["skipped"].append(dict(ref=ref, id=image.id,
                                            why=f"no tag and no {VERSION_LABEL} label that is a version: left alone"))
    versioned = sorted((i for i in images if i.version_key is not None), key=lambda i: i.version_key, reverse=True)
    kept_versions = sorted({i.version_key for i in versioned}, reverse=True)[: max(keep, 0)]
    for image in versioned:
        if image.version_key in kept_versions:
            plan["kept"].extend([ref for ref, _key in image.version_tags] or image.digests)
            continue
        why = list(protections.why(image.id))
        if image.other_tags:
            why.append(f"also tagged {', '.join(image.other_tags)} (not a version)")
        if why:
            entry = dict(ref=image.name, id=image.id, version=_version_text(image), why="; ".join(why))
            plan["protected"].append(entry)
        else:
            plan["remove"].append(image)
    return plan


def _version_text(image: RepoImage) -> str | None:
    if image.version_tags:
        return ImageRef.parse(image.version_tags[0][0]).tag
    return image.image.labels.get(VERSION_LABEL)


# --------------------------------------------------------------------------- the manager


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)


def _explain(exc: BaseException) -> str:
    return str(getattr(exc, "explanation", None) or exc)


class ImageRetention:
    """What engine_images does; ``run()`` returns the module result. Check mode plans and removes nothing."""

    def __init__(self, client, params: dict, check_mode: bool = False, warn=None):
        self.api = client.api
        self.p = params
        self.check_mode = check_mode
        self.warn = warn or (lambda msg: None)
        self.actions: list = []
        self.keep = DEFAULT_KEEP if params.get("keep") is None else int(params["keep"])
        if self.keep < 1:
            raise OptionsError(f"keep={self.keep}: keep at least 1 version per repository (the default is 5).")

    def _docker(self, what: str, call, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except (DockerException, RequestException) as exc:
            raise ImageRetentionError(f"Could not {what}: {_explain(exc)}. No image was removed by this step.") from exc

    def run(self) -> dict:
        images = [LocalImage.from_api(e) for e in self._docker("list the images", self.api.images) or []]
        containers = self._docker("list the containers", self.api.containers, all=True) or []
        records = state_records(compose_dirs_of(containers, self.p.get("compose_dirs")))
        protections = Protections(images)
        protect_containers(protections, containers, self.p.get("previous_suffix") or "")
        protect_state_records(protections, records)
        protect_option(protections, self.p.get("protect"))
        if self.p.get("repositories") is not None:
            repositories = [check_repository(r) for r in self.p["repositories"]]
        else:
            repositories = engine_repositories(containers, records, self.p.get("compose_services") or ["engine"],
                                               self.p.get("volume_prefix") or "", self.p.get("data_dir") or "/data")
            if not repositories:
                self.warn("No Engine was found on this Docker host and no repositories were given: nothing to do.")
        result, before, after = {}, {}, {}
        for repository in repositories:
            key = repository_key(repository)
            mine = repo_images(images, key)
            plan = plan_repository(mine, self.keep, protections)
            before[repository] = sorted(ref for i in mine for ref in i.image.refs() if repository_key(ref) == key)
            result[repository] = self._apply(plan)
            gone = set(result[repository]["removed"])
            after[repository] = [ref for ref in before[repository] if ref not in gone]
        changed = any(r["removed"] for r in result.values())
        return dict(changed=changed, images=result, repositories=repositories, actions=self.actions,
                    diff=dict(before=before, after=after))

    def _apply(self, plan: dict) -> dict:
        out = dict(kept=plan["kept"], removed=[], protected=plan["protected"],
                   skipped=[dict(ref=s["ref"], why=s["why"]) for s in plan["skipped"]], refused=[])
        for image in plan["remove"]:
            for ref in image.removal_refs:
                self.actions.append(f"remove {ref} ({image.id[:19]})")
                if self.check_mode:
                    out["removed"].append(ref)
                    continue
                outcome = self._remove(ref, image.id)
                if outcome is None:
                    out["removed"].append(ref)
                elif outcome != "gone":
                    out["refused"].append(dict(ref=ref, why=outcome))
                    self.warn(f"{ref} was not removed: {outcome}")
                    break
        return out

    def _remove(self, ref: str, image_id: str) -> str | None:
        """Remove one reference of ``image_id``: None when removed, 'gone' when it is already, else why not."""
        try:
            now = self.api.inspect_image(ref).get("Id")
        except (DockerException, RequestException) as exc:
            if _status(exc) == 404:
                return "gone"
            raise ImageRetentionError(f"Could not inspect {ref}: {_explain(exc)}.", actions=self.actions) from exc
        if now != image_id:
            return f"it points at {now[:19]} now, not at {image_id[:19]} as planned: left alone"
        try:
            self.api.remove_image(ref, force=False, noprune=False)
        except (DockerException, RequestException) as exc:
            status = _status(exc)
            if status == 404:
                return "gone"
            if status is not None:  # the daemon answered: a refusal (409 in use), reported
                return f"Docker refused: {_explain(exc)}"
            raise ImageRetentionError(f"Could not remove {ref}: {_explain(exc)}.", actions=self.actions) from exc
        return None


# --------------------------------------------------------------------------- the pre-flight's check


def rollback_image_problem(
    client, engine: dict, pull: str = "missing", registry_auth: dict | None = None
) -> str | None:
    """Why the image an upgrade of ``engine`` would roll back to is not available, or None when it is.

    ``engine``: engine_info's (or the pre-flight's ``from``) dict; its ``image`` (reference) and ``image_id`` are
    what a rollback goes back to. Present when the id (or, without an id, the reference) is on this Docker host;
    else, unless ``pull`` is ``never``, when the registry has the reference (a manifest lookup, nothing pulled).
    """
    ref, image_id = engine.get("image"), engine.get("image_id")
    if not ref and not image_id:
        return None  # nothing runs: nothing to go back to
    for candidate in (image_id, ref):
        if candidate and _present(client, candidate):
            return None
    shown = f"{ref or 'the image'}" + (f" ({image_id[:19]})" if image_id else "")
    fix = (f"Make it present again before upgrading (docker pull {ref}, docker load, or rebuild it from the "
           "release's git tag), or protect it from image retention.")
    if pull == "never" or not ref or is_image_id(ref):
        return f"its rollback image {shown} is not on this Docker host (and pull=never, or no reference to pull). {fix}"
    try:
        client.api.inspect_distribution(ref, auth_config=registry_auth)
    except (DockerException, RequestException) as exc:
        return (f"its rollback image {shown} is not on this Docker host, and the registry cannot give it back "
                f"({_explain(exc)}): a rollback would have nothing to go back to. {fix}")
    return None


def _present(client, ref: str) -> bool:
    try:
        client.api.inspect_image(ref)
    except (DockerException, RequestException) as exc:
        if _status(exc) == 404:
            return False
        raise ImageRetentionError(f"Could not inspect image {ref}: {_explain(exc)}.") from exc
    return True
