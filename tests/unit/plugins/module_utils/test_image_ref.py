# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""module_utils/_image_ref.py: the one image reference parser, and the callers that now use it."""

from __future__ import annotations

import pytest

from ansible_collections.september.engine.plugins.module_utils import _compose_file, _container, _engine
from ansible_collections.september.engine.plugins.module_utils._image_ref import (
    ImageRef,
    image_tag,
    is_image_id,
    parse_image_ref,
    same_image,
    same_repository,
    split_image_ref,
)

DIGEST = "sha256:" + "ab" * 32

# reference -> (registry, path, tag, digest)
REFERENCES = [
    ("engine", (None, "engine", None, None)),
    ("engine:2.3.0", (None, "engine", "2.3.0", None)),
    ("library/engine:2.3.0", (None, "library/engine", "2.3.0", None)),
    ("september/engine:v2.3.0-rc.1", (None, "september/engine", "v2.3.0-rc.1", None)),
    ("registry:5000/a/b:tag", ("registry:5000", "a/b", "tag", None)),
    ("registry:5000/a/b", ("registry:5000", "a/b", None, None)),
    ("localhost/engine:2.3.0", ("localhost", "engine", "2.3.0", None)),
    ("localhost:5000/engine", ("localhost:5000", "engine", None, None)),
    ("registry.example.com/team/september-engine:2.3.1",
     ("registry.example.com", "team/september-engine", "2.3.1", None)),
    (f"engine@{DIGEST}", (None, "engine", None, DIGEST)),
    (f"engine:2.3.0@{DIGEST}", (None, "engine", "2.3.0", DIGEST)),
    (f"registry:5000/a/b:2.3.0@{DIGEST}", ("registry:5000", "a/b", "2.3.0", DIGEST)),
    (f"registry:5000/a/b@{DIGEST}", ("registry:5000", "a/b", None, DIGEST)),
    ("[::1]:5000/engine:1", ("[::1]:5000", "engine", "1", None)),
]


@pytest.mark.parametrize(("text", "parts"), REFERENCES)
def test_parse(text, parts):
    ref = ImageRef.parse(text)
    assert (ref.registry, ref.path, ref.tag, ref.digest) == parts
    assert str(ref) == text  # it writes back what it read
    repository = f"{parts[0]}/{parts[1]}" if parts[0] else parts[1]
    assert split_image_ref(text) == (repository, parts[2], parts[3])
    assert image_tag(text) == parts[2]


@pytest.mark.parametrize(("text", "parts"), [r for r in REFERENCES if not r[0].startswith("[")])
def test_the_old_helpers_agree(text, parts):
    repository = f"{parts[0]}/{parts[1]}" if parts[0] else parts[1]
    assert _container.split_reference(text) == (repository, parts[2], parts[3])
    assert _compose_file.split_image_ref(text) == (repository, parts[2], parts[3])
    assert _engine.split_repository(text) == (repository, parts[2])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Engine:2.3.0", "not a repository path"),
        ("engine:-2.3.0", "not a tag"),
        ("engine:" + "1" * 129, "not a tag"),
        ("engine@sha256:xyz", "not a digest"),
        ("-registry:5000/engine:1", "not a registry"),
        ("registry:port/engine:1", "not a registry"),
        ("", "not a repository path"),
        ("engine//x:1", "not a repository path"),
    ],
)
def test_validate(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_image_ref(text, validate=True)


@pytest.mark.parametrize("text", [t for t, _p in REFERENCES if not t.startswith("[")])
def test_valid_references_validate(text):
    assert parse_image_ref(text, validate=True) == ImageRef.parse(text)


def test_pinned_and_pull_args():
    assert not ImageRef.parse("registry:5000/a/b").pinned
    assert ImageRef.parse("registry:5000/a/b:2.3.0").pull_args() == ("registry:5000/a/b", "2.3.0")
    assert ImageRef.parse(f"a/b:2.3.0@{DIGEST}").pull_args() == ("a/b", DIGEST)  # the digest pins the pull
    assert str(ImageRef.parse(f"registry:5000/a/b:2.3.0@{DIGEST}").with_tag("2.4.0")) == "registry:5000/a/b:2.4.0"


@pytest.mark.parametrize(
    ("a", "b", "repository", "image"),
    [
        ("engine:2.3.0", "docker.io/library/engine:2.3.0", True, True),
        ("engine:2.3.0", "index.docker.io/library/engine:2.3.1", True, False),
        ("september/engine", "docker.io/september/engine", True, True),
        ("registry:5000/engine:2.3.0", "engine:2.3.0", False, False),
        ("registry:5000/a/b:2.3.0", "registry:5000/a/b:2.3.0", True, True),
        (f"engine@{DIGEST}", "engine", True, False),
        ("engine:2.3.0", None, False, False),
    ],
)
def test_same(a, b, repository, image):
    assert same_repository(a, b) is repository
    assert same_image(a, b) is image
    assert _compose_file.normalize_repository(a) == _compose_file.normalize_repository(b or "") or not image


def test_image_ids_are_not_references():
    assert is_image_id("sha256:" + "0" * 64) and is_image_id("0" * 64)
    assert not is_image_id("engine:2.3.0") and not is_image_id(None)
    with pytest.raises(ValueError, match="must be a string"):
        ImageRef.parse(None)
