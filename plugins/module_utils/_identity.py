# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which Engine this is, whatever the inventory calls it: the identity of its brain's storage.

One Engine = one brain = one user. The inventory name is a label (two inventories may name the same
Engine differently, a group_vars may give many Engines one snapshot folder), the container is
replaced by every upgrade; what stays is where ``/data`` comes from: the named volume, or the host
folder of a bind mount. Locks, snapshots and restores are keyed by that, so that no Engine ever takes
another Engine's lock or brain.

    key   "volume:engine-data-u001" | "bind:/srv/engine/data" | "container:engine-u001" (no /data mount)
    slug  a file-name-safe form of the key, unique per key: "engine-data-u001", "bind-data-3f2a9c1e"
"""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SIMPLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def slug_of(key: str) -> str:
    """A file-name-safe, unique form of an identity key (at most 80 characters)."""
    kind, _sep, value = key.partition(":")
    if kind == "volume" and _SIMPLE.match(value):
        return value  # Docker volume names are already safe, and unique on their host
    tail = value.rstrip("/").rsplit("/", 1)[-1] or kind
    readable = _UNSAFE.sub("-", tail).strip("-.")[:60] or kind
    return f"{kind}-{readable}-{_short_hash(key)}"


def identity_from_mount(mount: dict | None, container: str | None) -> dict:
    """The identity of an Engine from its /data mount (Docker's ``Mounts`` entry) and container name.

    ``mount`` is ``{"type": "volume"|"bind", "name": ..., "source": ...}`` (engine_info's ``brain_mount``)
    or Docker's own ``{"Type", "Name", "Source"}``; None when nothing is mounted at /data.
    """
    mount = mount or {}
    mount_type = mount.get("type") or mount.get("Type")
    name = mount.get("name") or mount.get("Name")
    source = mount.get("source") or mount.get("Source")
    if mount_type == "volume" and name:
        key = f"volume:{name}"
    elif source:
        key = f"bind:{source.rstrip('/') or '/'}"
    elif container:
        key = f"container:{container}"
    else:
        raise ValueError("an Engine needs a /data mount or a container name to be identified")
    return dict(key=key, slug=slug_of(key), volume=name if mount_type == "volume" else None,
                brain_source=source, container=container)


def identity_from_facts(facts: dict) -> dict:
    """The identity of an Engine from engine_info's facts (``brain_mount`` and ``container``)."""
    return identity_from_mount(facts.get("brain_mount"), facts.get("container"))


def check_key(key) -> str:
    """`key` if it is an identity key (``volume:``, ``bind:`` or ``container:`` and a value), else ValueError."""
    if not isinstance(key, str):
        raise ValueError(f"an Engine identity key must be a string, got {type(key).__name__}")
    kind, sep, value = key.partition(":")
    if not sep or kind not in ("volume", "bind", "container") or not value.strip():
        raise ValueError(
            f"'{key}' is not an Engine identity key: it must be volume:<name>, bind:<host path> or "
            "container:<name> (engine_info returns it as engine.identity.key)"
        )
    return key


def same_engine(recorded, key: str) -> bool | None:
    """Whether something recorded for an Engine (a manifest's ``engine`` dict, or a key) is the Engine `key`.

    None when nothing was recorded (an older manifest): the caller decides, never silently yes.
    """
    if isinstance(recorded, dict):
        recorded = recorded.get("key")
    if not recorded:
        return None
    return recorded == key
