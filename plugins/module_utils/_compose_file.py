# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Where a Compose project sets a service's image tag, and how to change only that.

The compose files are read with PyYAML's composer (``yaml.compose``): its nodes follow anchors, aliases and
``<<:`` merge keys as Compose does, and know where in the text each scalar is written. The tag is set either

- in a compose FILE: ``image: engine:2.3.0`` (plain, quoted, flow style, through an anchor or a merge key):
  the value is replaced at its exact place, in its own quoting, and every other byte of the file is kept; or
- in the ENV file: ``image: engine:${ENGINE_TAG}`` (``${VAR:-default}``, ``${VAR-default}``, ``$VAR``, also for
  the whole reference ``image: ${ENGINE_IMAGE}``): only the ``VAR=`` line of ``.env`` is rewritten (or appended).

A value that other services share through an anchor is not edited (it would switch them too); anything else
that cannot be read with certainty raises ComposeFileError saying what was found. Every edit is read back
before it is written: the project must resolve to the target, and nothing but the service may change.
"""

from __future__ import annotations

import os
import re
import traceback
from dataclasses import dataclass, field
from typing import NamedTuple

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.september.engine.plugins.module_utils._errors import ComposeFileError
from ansible_collections.september.engine.plugins.module_utils._image_ref import ImageRef, is_tag
from ansible_collections.september.engine.plugins.module_utils._image_ref import split_image_ref as _split_ref

try:
    import yaml

    HAS_YAML = True
    YAML_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised through missing_required_lib
    HAS_YAML = False
    YAML_IMPORT_ERROR = traceback.format_exc()

#: Compose's default file names, in the order Compose v2 looks for them.
DEFAULT_COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
DEFAULT_OVERRIDE_FILES = (
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
)

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# A Compose interpolation: $$ (a literal $), ${VAR}, ${VAR:-default} (and -, :?, ?, :+, +), $VAR.
_VAR_RE = re.compile(
    r"\$\$|\$\{(?P<bname>" + _NAME + r")(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|\$(?P<name>" + _NAME + r")|\$\{[^}]*\}?"
)
_ENV_LINE_RE = re.compile(r"^(?P<lead>\s*(?:export\s+)?)(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)(?P<eq>\s*=\s*)(?P<rest>.*)$")
# The properties written before a node (an optional tag, then its anchor): where its anchor's name is.
_ANCHOR_RE = re.compile(r"(?:![^\s&]*\s+)?&([^\s,\[\]{}]+)")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TAG = "tag:yaml.org,2002:null"


@dataclass
class Scalar:
    """A YAML scalar as written in a file: its value, its 1-based line and its span (inside any quotes)."""

    text: str
    line: int
    start: int  # index into the file's text of the value's first character
    end: int
    quote: str = ""


@dataclass
class VarRef:
    """One ``${VAR...}`` / ``$VAR`` reference inside an image value."""

    name: str
    op: str | None
    arg: str | None
    start: int
    end: int
    arg_start: int = -1  # where the default (``arg``) starts


@dataclass
class TagSetting:
    """Where the tag of a service's image is set, and what it resolves to now."""

    location: str  # "file" or "env"
    compose_file: str  # the file whose image: value decides
    line: int  # 1-based line number of that image: value
    raw: str  # the image value as written in the compose file
    image: str | None  # the resolved reference now (None: cannot be resolved, e.g. unset variable)
    repository: str | None
    tag: str | None
    variable: str | None = None  # with location "env"
    whole_ref: bool = False  # the variable holds the whole reference, not only the tag
    env_file: str | None = None
    value_source: str | None = None  # env: where the value came from (env_file, environment, default, unset)
    anchor: str | None = None
    warnings: list = field(default_factory=list)
    scalar: Scalar | None = field(default=None, repr=False)
    tag_span: tuple | None = field(default=None, repr=False)  # (start, end) of the literal tag in raw
    ref_span: tuple | None = field(default=None, repr=False)  # (start, end) of the literal reference in raw

    def as_dict(self) -> dict:
        data = {
            "location": self.location,
            "path": self.env_file if self.location == "env" else self.compose_file,
            "compose_file": self.compose_file,
            "line": self.line,
            "raw": self.raw,
            "variable": self.variable,
            "whole_ref": self.whole_ref,
        }
        if self.anchor:
            data["anchor"] = self.anchor
        return data


@dataclass
class Edit:
    """A planned change of one file: full old and new text, and the one-line diff to show."""

    path: str
    old_text: str | None  # None: the file does not exist yet
    new_text: str
    before: str
    after: str
    line: int

    @property
    def changed(self) -> bool:
        return self.old_text != self.new_text


class _Doc(NamedTuple):
    """One compose file: its path, its text, and the root node PyYAML composed from it (None when empty)."""

    path: str
    text: str
    root: object


# ----------------------------------------------------------------------------- image references


def split_image_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``repo[:tag][@digest]`` -> (repository, tag, digest), by the one parser (``_image_ref``)."""
    return _split_ref(ref)


def normalize_repository(ref: str) -> str:
    """A form of a reference (or repository) in which Docker Hub's spellings are one (for comparisons)."""
    return str(ImageRef.parse(ref).normalized())


def check_tag(tag: str) -> str:
    if not is_tag(tag):
        raise ComposeFileError(
            f"'{tag}' is not a valid image tag (letters, digits, '_', '.', '-', at most 128, "
            "not starting with '.' or '-')."
        )
    return tag


# ----------------------------------------------------------------------------- YAML, through PyYAML


def require_yaml() -> None:
    """Fail the standard way when PyYAML is missing on the managed node."""
    if not HAS_YAML:
        raise ComposeFileError(missing_required_lib("PyYAML", reason="to read Compose files"),
                               exception=YAML_IMPORT_ERROR)


def _yaml_error(path: str, exc: Exception) -> ComposeFileError:
    return ComposeFileError(f"{path} cannot be read as YAML: {str(exc).replace('<unicode string>', path)}")


def load_yaml(text: str, path: str):
    """The data of one YAML document (PyYAML's safe loader), for ``compose config`` and the checks."""
    require_yaml()
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(path, exc) from exc


def _read_doc(path: str, text: str) -> _Doc:
    require_yaml()
    try:
        return _Doc(path, text, yaml.compose(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise _yaml_error(path, exc) from exc


def _merged(node) -> list:
    """The mappings a mapping node merges (``<<: *a`` or ``<<: [*a, *b]``), the first one first."""
    out = []
    for key, value in node.value:
        if key.tag == _MERGE_TAG:
            out.extend(value.value if isinstance(value, yaml.SequenceNode) else [value])
    return out


def _find(node, key: str, seen: tuple = ()) -> tuple | None:
    """(the mapping that holds it, value node) of ``key`` in a mapping node, or None.

    Its own keys first (the last of duplicates, as PyYAML loads them), then the mappings it merges, in order:
    YAML's merge keys, as Compose reads them.
    """
    if not isinstance(node, yaml.MappingNode) or node in seen:
        return None
    own = [(node, v) for k, v in node.value if k.tag != _MERGE_TAG and k.value == key]
    if own:
        return own[-1]
    return next(filter(None, (_find(m, key, (*seen, node)) for m in _merged(node))), None)


def _keys(node, seen: tuple = ()) -> list[str]:
    """The keys of a mapping node, merged ones included ([] for anything else)."""
    if not isinstance(node, yaml.MappingNode) or node in seen:
        return []
    own = [k.value for k, _v in node.value if k.tag != _MERGE_TAG and isinstance(k, yaml.ScalarNode)]
    merged = [k for m in _merged(node) for k in _keys(m, (*seen, node))]
    return list(dict.fromkeys(own + merged))


def _services(doc: _Doc):
    """The ``services`` mapping node of a file, None when it has none."""
    hit = _find(doc.root, "services")
    if hit is None or (isinstance(hit[1], yaml.ScalarNode) and hit[1].tag == _NULL_TAG):
        return None
    if not isinstance(hit[1], yaml.MappingNode):
        raise ComposeFileError(f"{doc.path} line {hit[1].start_mark.line + 1}: 'services' is not a mapping.")
    return hit[1]


def _service(doc: _Doc, service: str):
    hit = _find(_services(doc), service)
    return hit[1] if hit else None


def _anchor(text: str, node) -> str | None:
    """The name of the anchor written on a node (``&name``), None without."""
    m = _ANCHOR_RE.match(text, node.start_mark.index)
    return m.group(1) if m else None


def _scalar(doc: _Doc, node) -> Scalar:
    """Where the image value is written: a one-line scalar whose text is its value (inside its quotes)."""
    where = f"{doc.path} line {node.start_mark.line + 1}"
    if not isinstance(node, yaml.ScalarNode):
        kind = "list" if isinstance(node, yaml.SequenceNode) else "mapping"
        raise ComposeFileError(f"{where}: the image is a {kind}, not an image reference.")
    if node.style in ("|", ">"):
        raise ComposeFileError(f"{where}: the image is a block scalar ({node.style}); write it on one line.")
    if not node.value or node.tag == _NULL_TAG:
        raise ComposeFileError(f"{where}: the image is empty.")
    quote = node.style or ""
    end = node.end_mark.index - len(quote)
    start = end - len(node.value)
    written = doc.text[start - len(quote) : end + len(quote)]
    if start - len(quote) < node.start_mark.index or written != quote + node.value + quote or "\n" in written:
        raise ComposeFileError(
            f"{where}: the image is written with escapes or over several lines; write it plainly on one line."
        )
    return Scalar(node.value, doc.text.count("\n", 0, start) + 1, start, end, quote)


def _image(docs: list[_Doc], service: str) -> tuple | None:
    """(file, service node, mapping holding ``image``, image node) of the last file that sets it, or None."""
    for doc in reversed(docs):
        svc = _service(doc, service)
        hit = _find(svc, "image")
        if hit is not None:
            return doc, svc, hit[0], hit[1]
    return None


def _service_names(docs: list[_Doc]) -> list[str]:
    return list(dict.fromkeys(name for doc in docs for name in _keys(_services(doc))))


def service_profiles(text: str, service: str, path: str = "compose file") -> list[str]:
    """The ``profiles:`` of ``services.<service>`` in one file (a list, or one name), [] without."""
    hit = _find(_service(_read_doc(path, text), service), "profiles")
    if hit is None:
        return []
    items = hit[1].value if isinstance(hit[1], yaml.SequenceNode) else [hit[1]]
    return [item.value for item in items if isinstance(item, yaml.ScalarNode) and item.value]


# ----------------------------------------------------------------------------- interpolation


def var_refs(value: str) -> list[VarRef]:
    """The variable references of a Compose value (``$$`` is a literal ``$``, not a reference)."""
    refs = []
    for m in _VAR_RE.finditer(value):
        if m.group(0) == "$$":
            continue
        name = m.group("bname") or m.group("name")
        if name is None:
            raise ComposeFileError(f"cannot read the variable reference '{m.group(0)}' in '{value}'.")
        arg = m.group("arg")
        if arg is not None and "$" in arg:
            raise ComposeFileError(f"nested variables ('{m.group(0)}') in the image value are not supported.")
        refs.append(VarRef(name, m.group("op"), arg, m.start(), m.end(), m.start("arg")))
    return refs


def resolve_var(ref: VarRef, values: dict) -> tuple[str | None, str]:
    """Compose's value of one reference given ``values`` (name -> str): (value or None, source)."""
    present = ref.name in values
    value = values.get(ref.name)
    if ref.op is None:
        return (value, "set") if present else (None, "unset")
    if ref.op in (":-", "-"):
        empty = ref.op == ":-" and value == ""
        return (value, "set") if present and not empty else (ref.arg, "default")
    if ref.op in (":?", "?"):
        empty = ref.op == ":?" and value == ""
        return (value, "set") if present and not empty else (None, "unset")
    raise ComposeFileError(f"the '{ref.op}' form of ${{{ref.name}}} cannot hold an image tag.")


def interpolate(value: str, values: dict) -> str | None:
    """The value with every reference resolved (None when one is unset without a default)."""
    out, pos = [], 0
    for m in _VAR_RE.finditer(value):
        out.append(value[pos : m.start()])
        pos = m.end()
        resolved = "$" if m.group(0) == "$$" else resolve_var(var_refs(m.group(0))[0], values)[0]
        if resolved is None:
            return None
        out.append(resolved)
    out.append(value[pos:])
    return "".join(out)


# ----------------------------------------------------------------------------- .env files


def parse_env(text: str) -> dict:
    """KEY -> value of a ``.env`` file (the subset both Compose generations agree on; last one wins)."""
    values = {}
    for line in text.splitlines():
        m = _ENV_LINE_RE.match(line)
        if not m or line.lstrip().startswith("#"):
            continue
        values[m.group("key")] = _env_value(m.group("rest"))[0]
    return values


def _env_value(rest: str) -> tuple[str, int, int, str]:
    """(value, start, end, quote) of the value part of an env line."""
    if rest[:1] in "\"'":
        close = rest.find(rest[0], 1)
        if close > 0:
            return rest[1:close], 1, close, rest[0]
    m = re.search(r"\s+#", rest)
    end = m.start() if m else len(rest.rstrip())
    return rest[:end].strip(), 0, end, ""


def plan_env_edit(path: str, old_text: str | None, variable: str, value: str) -> Edit:
    """Set ``variable=value`` in an env file: replace the value of its (last) line, else append a line."""
    text = old_text or ""
    lines = text.splitlines(keepends=True)
    last = None
    for i, line in enumerate(lines):
        m = _ENV_LINE_RE.match(line.rstrip("\r\n"))
        if m and m.group("key") == variable and not line.lstrip().startswith("#"):
            last = i
    if last is None:
        new_line = f"{variable}={value}"
        sep = "" if not text or text.endswith("\n") else "\n"
        return Edit(path, old_text, text + sep + new_line + "\n", "", new_line + "\n", len(lines) + 1)
    line = lines[last]
    ending = line[len(line.rstrip("\r\n")) :]
    body = line.rstrip("\r\n")
    m = _ENV_LINE_RE.match(body)
    _old, start, end, _quote = _env_value(m.group("rest"))
    offset = m.start("rest")
    new_body = body[: offset + start] + value + body[offset + end :]
    lines[last] = new_body + ending
    return Edit(path, old_text, "".join(lines), body + "\n", new_body + "\n", last + 1)


# ----------------------------------------------------------------------------- the tag setting


def locate_tag(files: list[tuple[str, str]], service: str, env_path: str, env_text: str | None,
               environ: dict) -> TagSetting:
    """Where the project sets the tag of ``service``'s image.

    :param files: (path, text) of the project's compose files in Compose's order (later ones override).
    :param env_path: the project's env file; ``env_text`` its text (None when it does not exist).
    :param environ: the process environment (Compose lets it override ``.env`` for other variables).
    """
    docs = [_read_doc(path, text) for path, text in files]
    found = _image(docs, service)
    if found is None:
        raise _no_image(docs, service)
    doc, svc, holder, node = found
    scalar = _scalar(doc, node)
    setting = _interpret(scalar, doc.path, env_path, parse_env(env_text or ""), environ)
    setting.scalar = scalar
    setting.anchor = next(filter(None, (_anchor(doc.text, n) for n in (node, holder, svc))), None)
    _check_shared(setting, docs, service, node)
    return setting


def _no_image(docs: list[_Doc], service: str) -> ComposeFileError:
    """Why no file of the project sets ``services.<service>.image``, and what to do."""
    names = _service_names(docs)
    keys = sorted({k for doc in docs for k in _keys(_service(doc, service))})
    where = ", ".join(doc.path for doc in docs)
    if service not in names:
        return ComposeFileError(
            f"Service '{service}' is not defined in {where} (services found: {', '.join(sorted(names)) or 'none'}): "
            "set the 'service' option."
        )
    if "build" in keys:
        return ComposeFileError(
            f"Service '{service}' builds its image (build:) and sets no image: in {where}; "
            "there is no tag to switch. Give the service an 'image: <repository>:<tag>'."
        )
    if "extends" in keys:
        return ComposeFileError(
            f"Service '{service}' takes its settings from 'extends:' and sets no image: in {where}; "
            "set 'image:' on the service itself."
        )
    return ComposeFileError(f"Service '{service}' has no 'image:' setting in {where} (keys: {', '.join(keys)}).")


def _check_shared(setting: TagSetting, docs: list[_Doc], service: str, node) -> None:
    """Refuse to edit a value other services share (through an anchor); warn when the shared part is a variable."""
    others = [name for name in _service_names(docs) if name != service and (_image(docs, name) or [None])[-1] is node]
    where = f"{setting.compose_file} line {setting.line}" + (f" (anchor &{setting.anchor})" if setting.anchor else "")
    if others and setting.location == "file":
        raise ComposeFileError(
            f"The image of service '{service}' is set at {where}, which service(s) {', '.join(others)} use too: "
            f"editing it would switch them as well. Give '{service}' an 'image:' of its own, then run again."
        )
    if others:
        setting.warnings.append(
            f"Service(s) {', '.join(others)} take their image from {where} too: they change with "
            f"{setting.variable} the next time they are created."
        )
    if setting.location == "env":
        pattern = re.compile(r"\$\{?" + re.escape(setting.variable) + r"\b")
        text = next(doc.text for doc in docs if doc.path == setting.compose_file)
        uses = [i for i, line in enumerate(text.splitlines(), 1) if i != setting.line and pattern.search(line)]
        if uses:
            setting.warnings.append(
                f"{setting.variable} is also used on line(s) {', '.join(map(str, uses))} of {setting.compose_file}: "
                "those settings change too the next time their services are created."
            )


def _tag_span(ref: str, offset: int = 0) -> tuple[int, int]:
    """(start, end) of the tag in a reference without variables (empty, at its end, when it has none)."""
    colon = ref.rfind(":")
    start = colon + 1 if colon > ref.rfind("/") else len(ref)
    return offset + start, offset + len(ref)


def _interpret(scalar: Scalar, path: str, env_path: str, env_values: dict, environ: dict) -> TagSetting:
    """What an image value means: a literal tag or a variable's default (edit the file), a variable (the .env)."""
    raw = scalar.text
    refs = var_refs(raw)
    # mask variables so that ':', '/' and '@' inside ${VAR:-default} do not count
    masked = "".join("\0" if any(r.start <= i < r.end for r in refs) else c for i, c in enumerate(raw))
    base = {"compose_file": path, "line": scalar.line, "raw": raw}
    where = f"{path} line {scalar.line}"
    if "@" in masked:
        raise ComposeFileError(
            f"{where}: the image '{raw}' is pinned by digest (@sha256:...); the tag alone would not change the image. "
            "Remove the digest to let the tag be switched."
        )
    # values other than the tag variable: environment first, then .env (Compose's own precedence)
    others = {**env_values, **environ}
    tag_start = _tag_span(masked)[0]
    whole = tag_start == len(raw)  # no ':tag' outside variables
    repo_part = raw if whole else raw[: tag_start - 1]
    in_tag = [r for r in refs if whole or r.start >= tag_start]
    if not in_tag:
        repo, tag = interpolate(repo_part, others), raw[tag_start:] or None
        image = None if repo is None else repo + (f":{tag}" if tag else "")
        return TagSetting(location="file", image=image, repository=repo, tag=tag, tag_span=(tag_start, len(raw)),
                          ref_span=(0, len(raw)), **base)
    ref = in_tag[0]
    if len(in_tag) > 1 or (ref.start, ref.end) != (0 if whole else tag_start, len(raw)):
        raise ComposeFileError(
            f"{where}: cannot tell where the tag of '{raw}' is set; write it as repository:tag, repository:${{VAR}} "
            "or ${VAR} (with the whole reference in the variable)." if whole else
            f"{where}: the tag of '{raw}' is only partly a variable; it must be either literal (engine:2.3.0) or "
            "exactly one variable (engine:${ENGINE_TAG})."
        )
    value, source = _tag_var_value(ref, env_values, environ)
    return _variable(ref, None if whole else interpolate(repo_part, others), base, env_path, value, source)


def _variable(ref: VarRef, repo: str | None, base: dict, env_path: str, value: str | None,
              source: str) -> TagSetting:
    """The setting of a tag (``repo`` given) or whole reference held by a variable; its default when it is unset."""
    whole, tag = repo is None, value
    if whole and value is not None:
        repo, tag, digest = split_image_ref(value)
        if digest:
            raise ComposeFileError(f"{ref.name} holds an image pinned by digest; remove the digest.")
    image = None if value is None or repo is None else (value if whole else f"{repo}:{value}")
    setting = TagSetting(location="env", image=image, repository=repo, tag=tag, variable=ref.name, whole_ref=whole,
                         env_file=env_path, value_source=source, **base)
    if source == "default":  # the variable is set nowhere: the tag is the default written in the compose file
        arg_end = ref.arg_start + len(ref.arg)
        setting.location, setting.env_file = "file", None
        setting.tag_span = _tag_span(ref.arg, ref.arg_start) if whole else (ref.arg_start, arg_end)
        setting.ref_span = (ref.arg_start, arg_end) if whole else None
    return setting


def _tag_var_value(ref: VarRef, env_values: dict, environ: dict) -> tuple[str | None, str]:
    """The tag variable's value as this module runs Compose: the env file wins (we pass it explicitly)."""
    if ref.name in env_values:
        value, source = resolve_var(ref, env_values)
        return value, "env_file" if source == "set" else source
    if ref.name in environ:
        value, source = resolve_var(ref, environ)
        return value, "environment" if source == "set" else source
    return resolve_var(ref, {})


def target_ref(setting: TagSetting, version: str | None, image: str | None, allow_repository_change: bool) -> str:
    """The full reference the service should use, from a target ``version`` or ``image``."""
    if setting.repository is None and not (setting.whole_ref and image):
        unset = " (a variable in it is not set)" if "$" in setting.raw else ""
        raise ComposeFileError(
            f"The image '{setting.raw}' of {setting.compose_file} line {setting.line} cannot be resolved{unset}: "
            "set the variable in the env file, or give the full reference with the 'image' option."
        )
    if not image:
        check_tag(version)
        return f"{setting.repository}:{version}"
    repo, tag, digest = split_image_ref(image)
    if digest or not tag:
        raise ComposeFileError(f"image '{image}' must be a repository:tag reference (no digest, tag required).")
    check_tag(tag)
    if setting.repository is None or normalize_repository(repo) == normalize_repository(setting.repository):
        return image
    if not allow_repository_change:
        raise ComposeFileError(
            f"image '{image}' is from repository '{repo}' but the project uses '{setting.repository}': "
            "set allow_repository_change=true if that is intended."
        )
    if setting.variable and not setting.whole_ref:
        raise ComposeFileError(
            f"The repository is written in {setting.compose_file} and the tag in ${{{setting.variable}}}: change "
            "the repository by hand; this module changes the tag only."
        )
    return image


def _line_at(text: str, index: int) -> str:
    """The line of ``text`` that holds ``index``, with a plain newline (for the diff)."""
    end = text.find("\n", index)
    return text[text.rfind("\n", 0, index) + 1 : len(text) if end < 0 else end].rstrip("\r") + "\n"


def plan_tag_edit(setting: TagSetting, file_text: str, env_text: str | None, new_ref: str) -> Edit:
    """The one edit that makes the project's setting resolve to ``new_ref``: one value, every other byte kept."""
    repo, tag, _digest = split_image_ref(new_ref)
    if setting.location == "env":
        value = new_ref if setting.whole_ref else tag
        return plan_env_edit(setting.env_file, env_text, setting.variable, value)
    scalar, raw = setting.scalar, setting.scalar.text
    if setting.repository is not None and normalize_repository(repo) == normalize_repository(setting.repository):
        (start, end), piece = setting.tag_span, tag
        piece = piece if start < end else f":{tag}"
    else:
        (start, end), piece = setting.ref_span, new_ref
    new_raw = raw[:start] + piece + raw[end:]
    new_text = file_text[: scalar.start] + new_raw + file_text[scalar.end :]
    return Edit(setting.compose_file, file_text, new_text, _line_at(file_text, scalar.start),
                _line_at(new_text, scalar.start), scalar.line)


def verify_edit(files: list[tuple[str, str]], edit: Edit, service: str, *, env_path: str, environ: dict,
                env_text: str | None, expected: str) -> None:
    """Re-read the project as it would be after ``edit`` and make sure the service resolves to ``expected``.

    An edited compose file must also load (PyYAML) to the same data as before but for the service's own settings
    and ``x-`` extension fields (where its anchor may live).
    """
    new_files = [(p, edit.new_text if p == edit.path else t) for p, t in files]
    new_env = edit.new_text if edit.path == env_path else env_text
    after = locate_tag(new_files, service, env_path, new_env, environ)
    if after.image is None or normalize_repository(after.image) != normalize_repository(expected):
        raise ComposeFileError(
            f"Internal check failed: after the edit the image would be '{after.image}', not '{expected}'. "
            "Nothing was written; please report this with the shape of the compose file."
        )
    if edit.path == env_path or edit.old_text is None:
        return
    old, new = load_yaml(edit.old_text, edit.path), load_yaml(edit.new_text, edit.path)
    image = ((new.get("services") or {}).get(service) or {}).get("image") if isinstance(new, dict) else None
    others = [".".join(map(str, p)) or "the whole file" for p in _differences(old, new) if not _own(p, service)]
    if image != after.raw or others:
        raise ComposeFileError(
            f"The edit of {edit.path} would change more than the image of service '{service}' "
            f"({', '.join(others) or f'its image would read {image!r}'}): nothing was written. Give '{service}' an "
            "'image:' of its own (not shared through an anchor), then run again."
        )


def _own(path: tuple, service: str) -> bool:
    """Whether a setting's path is the service's own, or in an ``x-`` extension field (ignored by Compose)."""
    return path[:2] == ("services", service) or (bool(path) and str(path[0]).startswith("x-"))


def _differences(old, new, path: tuple = ()) -> list[tuple]:
    """The paths at which two loaded YAML documents differ."""
    if isinstance(old, dict) and isinstance(new, dict) and old.keys() == new.keys():
        return [d for key in old for d in _differences(old[key], new[key], (*path, key))]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, item in enumerate(old) for d in _differences(item, new[i], (*path, i))]
    return [] if old == new else [path]


def default_compose_files(project_src: str) -> list[str]:
    """Compose's own choice without -f: the first default file, plus its override file when present."""
    base = next((n for n in DEFAULT_COMPOSE_FILES if os.path.isfile(os.path.join(project_src, n))), None)
    if base is None:
        raise ComposeFileError(
            f"No compose file in {project_src} (looked for {', '.join(DEFAULT_COMPOSE_FILES)}): "
            "check project_src or set compose_file."
        )
    files = [os.path.join(project_src, base)]
    override = next((n for n in DEFAULT_OVERRIDE_FILES if os.path.isfile(os.path.join(project_src, n))), None)
    if override:
        files.append(os.path.join(project_src, override))
    return files
