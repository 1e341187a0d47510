# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one parser of image references: ``[registry[:port]/]path[:tag][@digest]``.

Every module util that takes a reference apart (the repository an Engine runs, the tag Compose sets,
the pull of a target, the exact image a rollback goes back to) does it here, so that a registry with a
port (``registry:5000/a/b:2.3.0``), a digest (``@sha256:...``), a tag AND a digest, or no tag at all
are read the same way everywhere. The rules are Docker's (distribution/reference):

- the tag is what follows the LAST ``:`` when no ``/`` comes after it (a port is followed by a path);
- the first path component is a registry only when it holds a ``.`` or a ``:`` or is ``localhost``;
- ``engine``, ``library/engine``, ``docker.io/engine`` and ``docker.io/library/engine`` are one
  repository (:meth:`ImageRef.normalized`).

Nothing here talks to Docker. Image ids (``sha256:<64 hex>``) are not references: :func:`is_image_id`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
IMAGE_ID_RE = re.compile(r"^(?:sha256:)?[0-9a-f]{64}$")
#: Names of Docker Hub's registry (all normalized to the first).
DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")


def is_tag(text: str | None) -> bool:
    return bool(text) and TAG_RE.match(text) is not None


def is_digest(text: str | None) -> bool:
    return bool(text) and DIGEST_RE.match(text) is not None


def is_image_id(text: str | None) -> bool:
    """``sha256:<64 hex>`` (or the bare 64 hex): an image id, not a reference."""
    return bool(text) and IMAGE_ID_RE.match(text) is not None


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference; ``registry`` is None when the reference names none (Docker Hub)."""

    registry: str | None
    path: str
    tag: str | None = None
    digest: str | None = None

    # ------------------------------------------------------------------ reading
    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Take ``text`` apart (no validation: :meth:`validate` says whether Docker would accept it)."""
        if not isinstance(text, str):
            raise ValueError(f"an image reference must be a string, not {type(text).__name__}")
        name, _at, digest = text.strip().partition("@")
        tag = None
        head, colon, tail = name.rpartition(":")
        if colon and "/" not in tail:
            name, tag = head, tail
        registry = None
        first, slash, rest = name.partition("/")
        if slash and ("." in first or ":" in first or first == "localhost"):
            registry, name = first, rest
        return cls(registry, name, tag, digest or None)

    def validate(self) -> ImageRef:
        """``self`` when Docker would accept the reference, else ValueError saying which part is wrong."""
        if self.registry is not None:
            host, _colon, port = self.registry.partition(":")
            if not host or host[0] == "-" or host[-1] == "-" or (_colon and not port.isdigit()):
                raise ValueError(f"'{self.registry}' is not a registry (host[:port]) in '{self}'")
        if not PATH_RE.match(self.path or ""):
            raise ValueError(
                f"'{self.path}' is not a repository path in '{self}' (lower-case letters, digits, and . _ - "
                "between them, components separated by /)"
            )
        if self.tag is not None and not is_tag(self.tag):
            raise ValueError(
                f"'{self.tag}' is not a tag in '{self}' (letters, digits, _ . -, at most 128, not starting with . or -)"
            )
        if self.digest is not None and not is_digest(self.digest):
            raise ValueError(f"'{self.digest}' is not a digest in '{self}' (algorithm:hex, e.g. sha256:<64 hex>)")
        return self

    # ------------------------------------------------------------------ parts
    @property
    def repository(self) -> str:
        """The reference without tag and digest, as written (``registry:5000/a/b``)."""
        return f"{self.registry}/{self.path}" if self.registry else self.path

    @property
    def pinned(self) -> bool:
        """Whether it names one release (a tag or a digest): Engines never run an implicit ``latest``."""
        return bool(self.tag or self.digest)

    def normalized(self) -> ImageRef:
        """The same reference with Docker Hub's implicit parts written out (``docker.io/library/engine``)."""
        registry = self.registry
        path = self.path
        if registry is None or registry in DOCKER_HUB:
            registry = DOCKER_HUB[0]
            if "/" not in path:
                path = f"library/{path}"
        return ImageRef(registry, path, self.tag, self.digest)

    def same_repository(self, other: ImageRef | str | None) -> bool:
        """Whether ``other`` names the same repository (Docker Hub's spellings being one)."""
        if other is None:
            return False
        other = other if isinstance(other, ImageRef) else ImageRef.parse(other)
        return self.normalized().repository == other.normalized().repository

    def same_image(self, other: ImageRef | str | None) -> bool:
        """Whether ``other`` is the same reference: same repository, tag and digest."""
        if other is None:
            return False
        other = other if isinstance(other, ImageRef) else ImageRef.parse(other)
        return self.same_repository(other) and (self.tag, self.digest) == (other.tag, other.digest)

    def with_tag(self, tag: str | None) -> ImageRef:
        """This repository with ``tag`` (and no digest: a digest would pin another release)."""
        return replace(self, tag=tag, digest=None)

    def pull_args(self) -> tuple[str, str | None]:
        """(repository, tag or digest) as the Docker API's pull takes them; the digest wins when both are set."""
        return self.repository, self.digest or self.tag

    def __str__(self) -> str:
        text = self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


# ---------------------------------------------------------------------- small helpers for the callers


def parse_image_ref(text: str, *, validate: bool = False) -> ImageRef:
    """:meth:`ImageRef.parse`, and with ``validate`` :meth:`ImageRef.validate` too (ValueError)."""
    ref = ImageRef.parse(text)
    return ref.validate() if validate else ref


def split_image_ref(text: str) -> tuple[str, str | None, str | None]:
    """(repository, tag, digest) of a reference."""
    ref = ImageRef.parse(text)
    return ref.repository, ref.tag, ref.digest


def image_tag(text: str | None) -> str | None:
    """The tag of a reference, None without one (or without a reference)."""
    return ImageRef.parse(text).tag if text else None


def same_repository(a: str | None, b: str | None) -> bool:
    """Whether two references (or repositories) name one repository; False when either is missing."""
    return bool(a) and bool(b) and ImageRef.parse(a).same_repository(b)


def same_image(a: str | None, b: str | None) -> bool:
    """Whether two references are the same (repository, tag, digest); False when either is missing."""
    return bool(a) and bool(b) and ImageRef.parse(a).same_image(b)
