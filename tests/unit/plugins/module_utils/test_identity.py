# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import pytest

from ansible_collections.september.engine.plugins.module_utils._identity import (
    check_key,
    identity_from_facts,
    identity_from_mount,
    same_engine,
    slug_of,
)


def test_named_volume_is_the_identity_whatever_the_container() -> None:
    a = identity_from_mount({"type": "volume", "name": "engine-data-u001", "source": "/v/_data"}, "engine-u001")
    b = identity_from_mount({"Type": "volume", "Name": "engine-data-u001", "Source": "/v/_data"}, "renamed")
    assert a["key"] == b["key"] == "volume:engine-data-u001"
    assert a["slug"] == "engine-data-u001"
    assert a["volume"] == "engine-data-u001"


def test_bind_mount_is_keyed_by_its_host_path() -> None:
    ident = identity_from_mount({"type": "bind", "source": "/srv/engine/data/"}, "engine-1")
    assert ident["key"] == "bind:/srv/engine/data"
    assert ident["slug"].startswith("bind-data-") and len(ident["slug"]) == len("bind-data-") + 8
    other = identity_from_mount({"type": "bind", "source": "/srv/other/data"}, "engine-1")
    assert other["slug"] != ident["slug"]  # same folder name, other path: other Engine


def test_no_mount_falls_back_to_the_container_and_nothing_is_an_error() -> None:
    assert identity_from_mount(None, "engine-x")["key"] == "container:engine-x"
    with pytest.raises(ValueError, match="needs a /data mount"):
        identity_from_mount(None, None)


def test_identity_from_engine_info_facts() -> None:
    facts = {"container": "c", "brain_mount": {"type": "volume", "name": "vol", "source": "/x"}}
    assert identity_from_facts(facts)["key"] == "volume:vol"


@pytest.mark.parametrize("key", ["volume:a b/c", "bind:/", "container:x" * 30])
def test_slugs_are_file_name_safe_and_short(key: str) -> None:
    slug = slug_of(key)
    assert "/" not in slug and " " not in slug and len(slug) <= 80


@pytest.mark.parametrize("bad", ["", "vol", "disk:x", "volume:", None, 3])
def test_check_key_refuses_what_is_not_a_key(bad) -> None:
    with pytest.raises(ValueError):
        check_key(bad)


def test_same_engine_never_says_yes_without_a_record() -> None:
    assert same_engine({"key": "volume:a"}, "volume:a") is True
    assert same_engine({"key": "volume:a"}, "volume:b") is False
    assert same_engine({}, "volume:a") is None
    assert same_engine(None, "volume:a") is None
