# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""module_utils/_compose_file.py: where a project sets its tag, and the minimal edit, over many file shapes."""

from __future__ import annotations

import re

import pytest
import yaml

from ansible_collections.september.engine.plugins.module_utils import _compose_file as cf
from ansible_collections.september.engine.plugins.module_utils._errors import ComposeFileError

ENV = "/p/.env"
KEY_LINE = "ENGINE_API_KEY=s3cret-key-value"

# name, compose text, env text, location, variable, current image, expected edited line (file or env)
SHAPES = [
    (
        "plain",
        "services:\n  engine:\n    image: engine:2.3.0\n    restart: unless-stopped\n",
        None, "file", None, "engine:2.3.0", "    image: engine:2.3.1\n",
    ),
    (
        "double quoted, comment kept",
        'services:\n  engine:\n    image: "engine:2.3.0"   # pinned by ops\n',
        None, "file", None, "engine:2.3.0", '    image: "engine:2.3.1"   # pinned by ops\n',
    ),
    (
        "single quoted",
        "services:\n  engine:\n    image: 'engine:2.3.0'\n",
        None, "file", None, "engine:2.3.0", "    image: 'engine:2.3.1'\n",
    ),
    (
        "registry with port",
        "services:\n  engine:\n    image: registry.local:5000/team/september-engine:2.3.0\n",
        None, "file", None, "registry.local:5000/team/september-engine:2.3.0",
        "    image: registry.local:5000/team/september-engine:2.3.1\n",
    ),
    (
        "other services around, same key names",
        "version: '3.8'\nservices:\n  proxy:\n    image: nginx:1.25\n  engine:\n    # the Engine\n\n"
        "    image: engine:2.3.0\n    environment:\n      image: not-this\n  worker:\n    image: engine-worker:2.3.0\n",
        None, "file", None, "engine:2.3.0", "    image: engine:2.3.1\n",
    ),
    (
        "four-space indentation, quoted service key",
        'services:\n    "engine":\n        image: engine:2.3.0\n',
        None, "file", None, "engine:2.3.0", "        image: engine:2.3.1\n",
    ),
    (
        "value on the next line",
        "services:\n  engine:\n    image:\n      engine:2.3.0\n",
        None, "file", None, "engine:2.3.0", "      engine:2.3.1\n",
    ),
    (
        "merge key from an anchor",
        "x-engine: &engine-defaults\n  image: engine:2.3.0\n  restart: always\nservices:\n  engine:\n"
        "    <<: *engine-defaults\n    ports:\n      - '127.0.0.1:9001:8000'\n",
        None, "file", None, "engine:2.3.0", "  image: engine:2.3.1\n",
    ),
    (
        "alias of a scalar anchor",
        "x-image: &engine_image engine:2.3.0\nservices:\n  engine:\n    image: *engine_image\n",
        None, "file", None, "engine:2.3.0", "x-image: &engine_image engine:2.3.1\n",
    ),
    (
        "no tag (implicit latest) gets one",
        "services:\n  engine:\n    image: engine\n",
        None, "file", None, "engine", "    image: engine:2.3.1\n",
    ),
    (
        "repository variable, literal tag",
        "services:\n  engine:\n    image: ${REG:-registry.local}/engine:2.3.0\n",
        None, "file", None, "registry.local/engine:2.3.0", "    image: ${REG:-registry.local}/engine:2.3.1\n",
    ),
    (
        "CRLF line endings",
        "services:\r\n  engine:\r\n    image: engine:2.3.0\r\n",
        None, "file", None, "engine:2.3.0", "    image: engine:2.3.1\n",
    ),
    (
        "tag in .env",
        "services:\n  engine:\n    image: engine:${ENGINE_TAG}\n",
        f"{KEY_LINE}\nENGINE_TAG=2.3.0\n", "env", "ENGINE_TAG", "engine:2.3.0", "ENGINE_TAG=2.3.1\n",
    ),
    (
        "tag in .env, quoted with a comment",
        "services:\n  engine:\n    image: \"engine:${ENGINE_TAG}\"\n",
        f'# keys\n{KEY_LINE}\nENGINE_TAG="2.3.0"  # the release\n', "env", "ENGINE_TAG", "engine:2.3.0",
        'ENGINE_TAG="2.3.1"  # the release\n',
    ),
    (
        "unbraced $VAR, export prefix",
        "services:\n  engine:\n    image: engine:$ENGINE_TAG\n",
        f"{KEY_LINE}\nexport ENGINE_TAG=2.3.0\n", "env", "ENGINE_TAG", "engine:2.3.0", "export ENGINE_TAG=2.3.1\n",
    ),
    (
        "default in the file, variable set nowhere: the default is edited",
        "services:\n  engine:\n    image: engine:${ENGINE_TAG:-2.3.0}\n",
        f"{KEY_LINE}\n", "file", "ENGINE_TAG", "engine:2.3.0", "    image: engine:${ENGINE_TAG:-2.3.1}\n",
    ),
    (
        "default in the file, variable set in .env: .env is edited",
        "services:\n  engine:\n    image: engine:${ENGINE_TAG:-2.2.0}\n",
        f"{KEY_LINE}\nENGINE_TAG=2.3.0\n", "env", "ENGINE_TAG", "engine:2.3.0", "ENGINE_TAG=2.3.1\n",
    ),
    (
        "registry and tag both variables",
        "services:\n  engine:\n    image: \"${REG}/engine:${TAG:-2.3.0}\"\n",
        f"REG=registry.local\nTAG=2.3.0\n{KEY_LINE}\n", "env", "TAG", "registry.local/engine:2.3.0", "TAG=2.3.1\n",
    ),
    (
        "whole reference in a variable",
        "services:\n  engine:\n    image: ${ENGINE_IMAGE}\n",
        f"ENGINE_IMAGE=engine:2.3.0\n{KEY_LINE}\n", "env", "ENGINE_IMAGE", "engine:2.3.0",
        "ENGINE_IMAGE=engine:2.3.1\n",
    ),
    (
        "whole reference with a default, no .env at all",
        "services:\n  engine:\n    image: ${ENGINE_IMAGE:-engine:2.3.0}\n",
        None, "file", "ENGINE_IMAGE", "engine:2.3.0", "    image: ${ENGINE_IMAGE:-engine:2.3.1}\n",
    ),
    (
        "whole reference, ${VAR-default} form, variable set in .env",
        "services:\n  engine:\n    image: ${ENGINE_IMAGE-engine:2.2.0}\n",
        f"ENGINE_IMAGE=engine:2.3.0\n{KEY_LINE}\n", "env", "ENGINE_IMAGE", "engine:2.3.0",
        "ENGINE_IMAGE=engine:2.3.1\n",
    ),
]


@pytest.mark.parametrize(("compose", "env", "location", "variable", "image", "line"),
                         [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES])
def test_locate_and_edit(compose, env, location, variable, image, line):
    setting = cf.locate_tag([("/p/docker-compose.yml", compose)], "engine", ENV, env, {})
    assert (setting.location, setting.variable, setting.image) == (location, variable, image)
    target = cf.target_ref(setting, "2.3.1", None, False)
    edit = cf.plan_tag_edit(setting, compose, env, target)
    assert edit.after == line
    cf.verify_edit([("/p/docker-compose.yml", compose)], edit, "engine", env_path=ENV, environ={}, env_text=env,
                   expected=target)
    old_lines = (edit.old_text or "").splitlines()
    new_lines = edit.new_text.splitlines()
    # exactly one line differs (or one appended), everything else is byte-identical
    if len(new_lines) == len(old_lines):
        assert sum(a != b for a, b in zip(old_lines, new_lines, strict=True)) == 1
    else:
        assert new_lines[: len(old_lines)] == old_lines and len(new_lines) == len(old_lines) + 1
    assert edit.new_text.replace(line.rstrip("\n"), "").count("2.3.1") == 0
    if location == "env":
        assert edit.path == ENV
        assert KEY_LINE not in edit.before + edit.after  # the diff never shows the key
        if env:
            assert KEY_LINE in edit.new_text
        # the project now resolves to the target
        after = cf.locate_tag([("/p/docker-compose.yml", compose)], "engine", ENV, edit.new_text, {})
    else:
        after = cf.locate_tag([("/p/docker-compose.yml", edit.new_text)], "engine", ENV, env, {})
        assert yaml.safe_load(edit.new_text) is not None
    assert after.image.endswith(":2.3.1")


# --------------------------------------------------------------------------- byte for byte
# Each file is written once, the value that changes marked «before|after»: before the edit the file holds
# `before` there, after it exactly the same bytes with `after` there instead. A file without a mark is unchanged.

MARK = re.compile("«([^|»]*)\\|([^»]*)»")
BASE, OVERRIDE = "/p/docker-compose.yml", "/p/docker-compose.override.yml"


def version(marked: str | None, which: int) -> str | None:
    return None if marked is None else MARK.sub(lambda m: m.group(which), marked)


# name, {compose file: marked text}, marked .env text (or None: no .env), where the tag is, target image option
EXACT = [
    ("an anchored flow mapping merged into the service",
     {BASE: "# defaults\nx-engine: &engine {image: engine:«2.3.0|2.3.1», restart: always}\n\nservices:\n"
            "  engine:\n    <<: *engine\n    ports: [\"127.0.0.1:9001:8000\"]  # local only\n"
            "  proxy:\n    image: nginx:1.25\n"}, None, "file", None),
    ("comments on and around the line, a tab in a comment",
     {BASE: "#\tthe Engine: image: engine:2.3.0\nservices:\n  # image: engine:1.0 (old)\n  engine: # the one\n"
            "    image: engine:«2.3.0|2.3.1»   #\tpinned by ops, image: engine:2.3.0\n"
            "    # image: engine:2.2.0\n    restart: always # 2.3.0\n"}, None, "file", None),
    ("single quoted",
     {BASE: "services:\n  engine:\n    image: 'engine:«2.3.0|2.3.1»'  # quoted\n"}, None, "file", None),
    ("double quoted, registry with a port",
     {BASE: "services:\n  engine:\n    image: \"registry.local:5000/team/engine:«2.3.0|2.3.1»\"\n"}, None, "file",
     None),
    ("a flow mapping, another service with the same literal image",
     {BASE: "services:\n  engine: {image: \"engine:«2.3.0|2.3.1»\", restart: always}  # flow\n"
            "  twin: {image: \"engine:2.3.0\"}\n"}, None, "file", None),
    ("CRLF line endings",
     {BASE: "# CRLF\r\nservices:\r\n  engine:\r\n    image: engine:«2.3.0|2.3.1» # pinned\r\n"
            "    restart: always\r\n"}, None, "file", None),
    ("a byte order mark, a document marker and non-ASCII comments",
     {BASE: "\ufeff---\n# Moteur — été 🚀\nservices:\n  engine:  # ¿qué?\n    image: engine:«2.3.0|2.3.1»\n"},
     None, "file", None),
    ("value on the next line, with a tag and an anchor",
     {BASE: "services:\n  engine:\n    image: !!str &img\n      engine:«2.3.0|2.3.1»\n"}, None, "file", None),
    ("no tag (implicit latest) gets one",
     {BASE: "services:\n  engine:\n    image: \"engine«|:2.3.1»\"\n"}, None, "file", None),
    ("${ENGINE_TAG} in .env",
     {BASE: "services:\n  engine:\n    image: engine:${ENGINE_TAG}  # from .env\n"},
     f"{KEY_LINE}\nENGINE_TAG=«2.3.0|2.3.1»  # the release\n", "env", None),
    ("${ENGINE_TAG:-2.3.0}, set nowhere: the default",
     {BASE: "services:\n  engine:\n    image: \"engine:${ENGINE_TAG:-«2.3.0|2.3.1»}\"\n"}, f"{KEY_LINE}\n", "file",
     None),
    ("${ENGINE_TAG:-2.2.0}, set in a CRLF .env",
     {BASE: "services:\n  engine:\n    image: engine:${ENGINE_TAG:-2.2.0}\n"},
     f"{KEY_LINE}\r\nENGINE_TAG='«2.3.0|2.3.1»'\r\nOTHER=1\r\n", "env", None),
    ("${ENGINE_TAG-2.3.0}, set nowhere: the default",
     {BASE: "services:\n  engine:\n    image: 'engine:${ENGINE_TAG-«2.3.0|2.3.1»}'\n"}, None, "file", None),
    ("${ENGINE_IMAGE:-engine:2.3.0}, the whole reference's default",
     {BASE: "services:\n  engine:\n    image: ${ENGINE_IMAGE:-engine:«2.3.0|2.3.1»}\n"}, None, "file", None),
    ("an override file that sets the image",
     {BASE: "services:\n  engine:\n    image: engine:2.2.0  # the base\n    restart: always\n",
      OVERRIDE: "services:\n  engine:\n    image: engine:«2.3.0|2.3.1»\n"}, None, "file", None),
    ("another repository, quotes kept",
     {BASE: "services:\n  engine:\n    image: \"«engine:2.3.0|registry.local/engine:2.4.0»\"  # moved\n"}, None,
     "file", "registry.local/engine:2.4.0"),
    ("another repository in the whole reference's default",
     {BASE: "services:\n  engine:\n    image: ${IMG:-«engine:2.3.0|registry.local/engine:2.4.0»}\n"}, None,
     "file", "registry.local/engine:2.4.0"),
]


@pytest.mark.parametrize(("files", "env", "location", "image"), [e[1:] for e in EXACT], ids=[e[0] for e in EXACT])
def test_only_the_value_changes_byte_for_byte(files, env, location, image):
    before = {path: version(text, 1) for path, text in files.items()}
    setting = cf.locate_tag(list(before.items()), "engine", ENV, version(env, 1), {})
    assert setting.location == location
    target = cf.target_ref(setting, None if image else "2.3.1", image, bool(image))
    edit = cf.plan_tag_edit(setting, before[setting.compose_file], version(env, 1), target)
    cf.verify_edit(list(before.items()), edit, "engine", env_path=ENV, environ={}, env_text=version(env, 1),
                   expected=target)
    now = {**before, ENV: version(env, 1), edit.path: edit.new_text}
    expected = {**{path: version(text, 2) for path, text in files.items()}, ENV: version(env, 2)}
    assert {p: t.encode() for p, t in now.items() if t is not None} == {
        p: t.encode() for p, t in expected.items() if t is not None
    }
    edited = [p for p in expected if expected[p] != version(files.get(p, env), 1)]
    assert edited == [edit.path]
    assert edit.before.count("\n") == edit.after.count("\n") == 1 and "\r" not in edit.before + edit.after


def test_edit_with_image_option_and_repository_change():
    compose = "services:\n  engine:\n    image: engine:2.3.0 # x\n"
    setting = cf.locate_tag([("f", compose)], "engine", ENV, None, {})
    with pytest.raises(ComposeFileError, match="allow_repository_change"):
        cf.target_ref(setting, None, "registry.local/engine:2.4.0", False)
    target = cf.target_ref(setting, None, "registry.local/engine:2.4.0", True)
    assert cf.plan_tag_edit(setting, compose, None, target).after == "    image: registry.local/engine:2.4.0 # x\n"
    # docker.io/library/engine is the same repository as engine
    assert cf.target_ref(setting, None, "docker.io/library/engine:2.4.0", False) == "docker.io/library/engine:2.4.0"


def test_override_file_wins():
    base = ("/p/docker-compose.yml", "services:\n  engine:\n    image: engine:2.3.0\n")
    override = ("/p/docker-compose.override.yml", "services:\n  engine:\n    image: engine:2.3.5\n")
    setting = cf.locate_tag([base, override], "engine", ENV, None, {})
    assert (setting.compose_file, setting.tag) == ("/p/docker-compose.override.yml", "2.3.5")
    only_ports = ("/p/docker-compose.override.yml", "services:\n  engine:\n    ports: ['1:2']\n")
    assert cf.locate_tag([base, only_ports], "engine", ENV, None, {}).compose_file == "/p/docker-compose.yml"


def test_env_file_beats_environment_for_the_tag_variable_but_not_for_others():
    compose = "services:\n  engine:\n    image: ${REG}/engine:${ENGINE_TAG}\n"
    env = "REG=from-env-file\nENGINE_TAG=2.3.0\n"
    setting = cf.locate_tag([("f", compose)], "engine", ENV, env, {"ENGINE_TAG": "9.9.9", "REG": "from-shell"})
    assert setting.image == "from-shell/engine:2.3.0"
    assert setting.value_source == "env_file"


def test_warns_when_the_variable_is_shared():
    compose = ("services:\n  engine:\n    image: engine:${ENGINE_TAG}\n  worker:\n    image: worker:${ENGINE_TAG}\n")
    setting = cf.locate_tag([("f", compose)], "engine", ENV, "ENGINE_TAG=2.3.0\n", {})
    assert any("also used on line(s) 5" in w for w in setting.warnings)
    # an anchor that holds the variable: the .env edit switches both services, and a warning says so
    compose = "x-e: &e\n  image: engine:${ENGINE_TAG}\nservices:\n  engine:\n    <<: *e\n  engine2:\n    <<: *e\n"
    setting = cf.locate_tag([("f", compose)], "engine", ENV, "ENGINE_TAG=2.3.0\n", {})
    assert (setting.anchor, setting.location) == ("e", "env")
    assert setting.warnings == [
        "Service(s) engine2 take their image from f line 2 (anchor &e) too: they change with ENGINE_TAG the next "
        "time they are created."
    ]


SHARED = [
    ("a merge key two services use",
     "x-e: &e\n  image: engine:2.3.0\nservices:\n  engine:\n    <<: *e\n  engine2:\n    <<: *e\n", "engine2"),
    ("a scalar alias",
     "services:\n  engine:\n    image: &img engine:2.3.0\n  worker:\n    image: *img\n", "worker"),
    ("the whole service aliased",
     "services:\n  engine: &svc\n    image: engine:2.3.0\n  replica: *svc\n", "replica"),
    ("merge lists: the first mapping wins, an own key beats them",
     "x-a: &a {image: 'engine:2.3.0'}\nx-b: &b {image: other:1}\nservices:\n  engine: {<<: [*a, *b]}\n"
     "  w1: {<<: [*b, *a]}\n  w2: {<<: [*a], image: own:1}\n  w3: {<<: *a}\n", "w3"),
    ("the image of an anchored service merged into another",
     "services:\n  engine: &base\n    image: engine:2.3.0\n    restart: always\n  worker:\n    <<: *base\n"
     "    command: work\n", "worker"),
]


@pytest.mark.parametrize(("compose", "sharer"), [s[1:] for s in SHARED], ids=[s[0] for s in SHARED])
def test_an_image_shared_through_an_alias_is_refused(compose, sharer):
    message = rf"at f line \d+.*, which service\(s\) {sharer} use too: editing it would switch them as well"
    with pytest.raises(ComposeFileError, match=message):
        cf.locate_tag([("f", compose)], "engine", ENV, None, {})


def test_an_anchor_is_ours_once_the_override_gives_the_other_service_its_own_image():
    base = ("/p/docker-compose.yml",
            "x-e: &e\n  image: engine:2.3.0\nservices:\n  engine:\n    <<: *e\n  worker:\n    <<: *e\n")
    override = ("/p/docker-compose.override.yml", "services:\n  worker:\n    image: worker:1.0\n")
    setting = cf.locate_tag([base, override], "engine", ENV, None, {})
    assert (setting.compose_file, setting.line, setting.anchor) == ("/p/docker-compose.yml", 2, "e")


def test_a_scalar_anchor_used_elsewhere_is_not_edited():
    """The image is the service's own, but its anchor feeds another service's label too: refused before writing."""
    compose = ("services:\n  engine:\n    image: &img engine:2.3.0\n  worker:\n    image: worker:1\n"
               "    labels:\n      engine: *img\n")
    setting = cf.locate_tag([("f", compose)], "engine", ENV, None, {})
    edit = cf.plan_tag_edit(setting, compose, None, "engine:2.3.1")
    message = r"would change more than the image of service 'engine' \(services\.worker\.labels\.engine\)"
    with pytest.raises(ComposeFileError, match=message):
        cf.verify_edit([("f", compose)], edit, "engine", env_path=ENV, environ={}, env_text=None,
                       expected="engine:2.3.1")


@pytest.mark.parametrize(
    ("compose", "message"),
    [
        ("services:\n  engine:\n    build: .\n", "builds its image"),
        ("services:\n  engine:\n    extends:\n      service: base\n", "extends"),
        ("services:\n  engine:\n    restart: always\n", "no 'image:' setting"),
        ("services:\n  web:\n    image: nginx:1\n", "not defined .*services found: web"),
        ("services:\n  engine:\n    image: engine:2.3.0@sha256:" + "a" * 64 + "\n", "pinned by digest"),
        ("services:\n  engine:\n    image: engine:v${TAG}\n", "only partly a variable"),
        ("services:\n  engine:\n    image: ${A}${B}\n", "cannot tell where the tag"),
        ("services:\n  engine:\n    image: >\n      engine:2.3.0\n", "block scalar"),
        ("services:\n  engine:\n    image: \"engine:\\x32\"\n", "escapes"),
        ("services:\n  engine:\n    image: 'engine:''2.3.0'''\n", "escapes"),
        ("services:\n  engine:\n    image: 'engine:\n      2.3.0'\n", "over several lines"),
        ("services:\n  engine:\n    image:\n", "is empty"),
        ("services:\n  engine:\n    image: ~\n", "is empty"),
        ("services:\n  engine:\n    image: [engine, 2.3.0]\n", "the image is a list"),
        ("services:\n  engine:\n    image: engine:${TAG:+x}\n", "cannot hold an image tag"),
        ("services:\n  engine:\n    image: engine:${TAG:-${OTHER}}\n", "nested"),
        ("services:\n  engine:\n    <<: *missing\n", "f cannot be read as YAML: found undefined alias 'missing'"),
        ("services:\n\tengine: {}\n", "(?s)f cannot be read as YAML.*in \"f\", line 2, column 1"),
        ("services: [engine]\n", "'services' is not a mapping"),
        ("services:\n  engine: {image: [x\n", "cannot be read as YAML"),
    ],
)
def test_errors_say_what_was_found(compose, message):
    with pytest.raises(ComposeFileError, match=message):
        setting = cf.locate_tag([("f", compose)], "engine", ENV, "", {})
        cf.target_ref(setting, "2.3.1", None, False)


def test_unset_variable_without_default():
    setting = cf.locate_tag([("f", "services:\n  engine:\n    image: ${REG}/engine:2.3.0\n")], "engine", ENV, "", {})
    assert setting.image is None
    with pytest.raises(ComposeFileError, match="cannot be resolved"):
        cf.target_ref(setting, "2.3.1", None, False)
    whole = cf.locate_tag([("f", "services:\n  engine:\n    image: ${IMG}\n")], "engine", ENV, None, {})
    assert cf.target_ref(whole, None, "engine:2.3.1", False) == "engine:2.3.1"


@pytest.mark.parametrize("tag", ["", "-x", ".x", "a" * 129, "2.3.1 ", "2.3/1", "latest:1"])
def test_bad_tags(tag):
    setting = cf.locate_tag([("f", "services:\n  engine:\n    image: engine:2.3.0\n")], "engine", ENV, None, {})
    with pytest.raises(ComposeFileError, match="not a valid image tag"):
        cf.target_ref(setting, tag, None, False)


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("engine", ("engine", None, None)),
        ("engine:2.3.0", ("engine", "2.3.0", None)),
        ("reg:5000/engine", ("reg:5000/engine", None, None)),
        ("reg:5000/a/engine:2.3.0@sha256:ab", ("reg:5000/a/engine", "2.3.0", "sha256:ab")),
    ],
)
def test_split_image_ref(ref, expected):
    assert cf.split_image_ref(ref) == expected


@pytest.mark.parametrize(
    ("old", "expected"),
    [
        (None, "ENGINE_TAG=2.3.1\n"),
        ("", "ENGINE_TAG=2.3.1\n"),
        ("A=1", "A=1\nENGINE_TAG=2.3.1\n"),
        ("ENGINE_TAG=2.3.0\nENGINE_TAG=2.3.0 # last wins\n", "ENGINE_TAG=2.3.0\nENGINE_TAG=2.3.1 # last wins\n"),
        ("# ENGINE_TAG=1.0\nENGINE_TAG='2.3.0'\r\nB=2\n", "# ENGINE_TAG=1.0\nENGINE_TAG='2.3.1'\r\nB=2\n"),
        ("ENGINE_TAG = 2.3.0\n", "ENGINE_TAG = 2.3.1\n"),
    ],
)
def test_plan_env_edit(old, expected):
    assert cf.plan_env_edit(ENV, old, "ENGINE_TAG", "2.3.1").new_text == expected


def test_parse_env_and_interpolate():
    values = cf.parse_env("# c\nA=1\nexport B='two words'\nC=\"x\" # note\nD=d # trailing\n")
    assert values == {"A": "1", "B": "two words", "C": "x", "D": "d"}
    assert cf.interpolate("$$A-${A}-${Z:-z}-${Z-y}-$B", values) == "$A-1-z-y-two words"
    assert cf.interpolate("${Z}", values) is None
    assert cf.interpolate("${A:?must}", values) == "1"


def test_yaml_cross_check_catches_a_bad_edit():
    compose = "services:\n  engine:\n    image: engine:2.3.0\n"
    setting = cf.locate_tag([("f", compose)], "engine", ENV, None, {})
    edit = cf.plan_tag_edit(setting, compose, None, "engine:2.3.1")
    edit.new_text += "  extra:\n    image: x\n"
    with pytest.raises(ComposeFileError, match=r"would change more than the image of service 'engine' \(services\)"):
        cf.verify_edit([("f", compose)], edit, "engine", env_path=ENV, environ={}, env_text=None,
                       expected="engine:2.3.1")
    edit.new_text = compose.replace("2.3.0", "2.3.2")
    with pytest.raises(ComposeFileError, match=r"Internal check failed: after the edit the image would be "
                                               r"'engine:2\.3\.2', not 'engine:2\.3\.1'"):
        cf.verify_edit([("f", compose)], edit, "engine", env_path=ENV, environ={}, env_text=None,
                       expected="engine:2.3.1")


def test_default_compose_files(tmp_path):
    with pytest.raises(ComposeFileError, match="No compose file"):
        cf.default_compose_files(str(tmp_path))
    (tmp_path / "docker-compose.yml").write_text("services: {}\n")
    (tmp_path / "docker-compose.override.yml").write_text("services: {}\n")
    assert cf.default_compose_files(str(tmp_path)) == [
        str(tmp_path / "docker-compose.yml"), str(tmp_path / "docker-compose.override.yml")
    ]
    (tmp_path / "compose.yaml").write_text("services: {}\n")
    assert cf.default_compose_files(str(tmp_path))[0] == str(tmp_path / "compose.yaml")


@pytest.mark.parametrize(
    ("text", "profiles"),
    [
        ("services:\n  engine:\n    image: engine:2.3.0\n", []),
        ("services:\n  engine:\n    profiles: [engine, \"ops\"]  # why\n", ["engine", "ops"]),
        ("services:\n  engine:\n    profiles:\n      - engine\n      # a comment\n      - 'debug'\n  x:\n"
         "    profiles: [x]\n", ["engine", "debug"]),
        ("services:\n  other:\n    profiles: [x]\n", []),
        ("x-p: &p\n  profiles: [engine]\nservices:\n  engine:\n    <<: *p\n    image: engine:2.3.0\n", ["engine"]),
        ("services:\n  engine: {profiles: ops}\n", ["ops"]),
        ("volumes: {}\n", []),
    ],
)
def test_service_profiles(text, profiles):
    assert cf.service_profiles(text, "engine") == profiles


def test_without_pyyaml_the_module_fails_the_standard_way(monkeypatch):
    monkeypatch.setattr(cf, "HAS_YAML", False)
    monkeypatch.setattr(cf, "YAML_IMPORT_ERROR", "Traceback (most recent call last): ImportError: No module named yaml")
    message = r"Failed to import the required Python library \(PyYAML\) on .*This is required to read Compose files"
    with pytest.raises(ComposeFileError, match=message) as info:
        cf.locate_tag([("f", "services:\n  engine:\n    image: engine:2.3.0\n")], "engine", ENV, None, {})
    assert "No module named yaml" in info.value.details["exception"]
    with pytest.raises(ComposeFileError, match=message):
        cf.service_profiles("services: {}\n", "engine")
