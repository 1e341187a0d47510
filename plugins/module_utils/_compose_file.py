# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Where a Compose project sets a service's image tag, and how to change only that.

Pure text work (no Docker, no Compose, no PyYAML needed): a careful line-based reading of the block
style YAML that Compose files are written in, and of ``.env`` files. The tag is set either

- in the compose FILE: ``image: engine:2.3.0`` (also quoted, with a comment, through an anchor or a
  ``<<:`` merge key): only the tag characters of that one line are rewritten; or
- in the ENV file: ``image: engine:${ENGINE_TAG}`` (``${VAR:-default}``, ``$VAR``, also for the whole
  reference ``image: ${ENGINE_IMAGE}``): only the ``VAR=`` line of ``.env`` is rewritten (or appended).

Anything the reader cannot be sure about raises ComposeFileError saying what it found, rather than
guessing. When PyYAML happens to be importable, every edit is cross-checked with it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ansible_collections.september.engine.plugins.module_utils._errors import ComposeFileError
from ansible_collections.september.engine.plugins.module_utils._image_ref import ImageRef, is_tag
from ansible_collections.september.engine.plugins.module_utils._image_ref import split_image_ref as _split_ref

try:
    import yaml

    HAS_YAML = True
except ImportError:  # pragma: no cover - PyYAML is optional on managed nodes
    HAS_YAML = False

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
# A block-style mapping key line: indentation, key (plain or quoted), colon, rest.
_KEY_RE = re.compile(r"""^(?P<indent> *)(?P<key>"[^"]*"|'[^']*'|[^\s#'"{\[\]}&*!|>-][^#]*?|<<)\s*:(?:\s+|$)""")
_ENV_LINE_RE = re.compile(r"^(?P<lead>\s*(?:export\s+)?)(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)(?P<eq>\s*=\s*)(?P<rest>.*)$")


@dataclass
class Scalar:
    """A YAML scalar as written on one line: its text and where it sits."""

    text: str
    line: int  # 0-based index into the file's lines
    start: int  # column of the first character of the text (inside the quotes)
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


@dataclass
class TagSetting:
    """Where the tag of a service's image is set, and what it resolves to now."""

    location: str  # "file" or "env"
    compose_file: str  # the file whose image: line decides
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


# ----------------------------------------------------------------------------- YAML, line by line


def _strip_comment(rest: str) -> str:
    """The part of a plain (unquoted) value before a `` #`` comment, right-stripped."""
    m = re.search(r"(^|\s)#", rest)
    return (rest[: m.start()] if m else rest).rstrip()


def _is_content(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _key_of(line: str) -> tuple[int, str, int] | None:
    """(indent, unquoted key, column after ``key:``) of a block mapping line, or None."""
    if "\t" in line[: _indent(line) + 1]:
        return None
    m = _KEY_RE.match(line)
    if not m:
        return None
    key = m.group("key").strip()
    if key[:1] in "\"'" and key[-1:] == key[:1]:
        key = key[1:-1]
    return len(m.group("indent")), key, m.end()


def _block_end(lines: list[str], start: int, indent: int) -> int:
    """Index of the first content line after ``start`` indented at most ``indent`` (or len(lines))."""
    for i in range(start + 1, len(lines)):
        if _is_content(lines[i]) and (_indent(lines[i]) <= indent or lines[i].startswith(("---", "..."))):
            return i
    return len(lines)


def _children(lines: list[str], start: int, end: int) -> dict[str, tuple[int, int]]:
    """Keys of the block mapping in lines (start, end): key -> (line index, column after the colon)."""
    child_indent = None
    found: dict[str, tuple[int, int]] = {}
    for i in range(start + 1, end):
        line = lines[i]
        if not _is_content(line):
            continue
        if child_indent is None:
            child_indent = _indent(line)
            if line.lstrip().startswith("- "):
                raise ComposeFileError(f"line {i + 1}: expected a mapping here, found a list item.")
        if _indent(line) != child_indent:
            continue
        parsed = _key_of(line)
        if parsed is not None:
            found.setdefault(parsed[1], (i, parsed[2]))
    return found


def _value_rest(lines: list[str], index: int, col: int) -> str:
    return lines[index][col:].rstrip("\r\n")


def _parse_scalar(lines: list[str], index: int, col: int, what: str) -> tuple[Scalar | None, str | None]:
    """The scalar value after ``key:`` at (index, col): (Scalar, None) or (None, alias name).

    Handles an anchor (``&name``) and a ``!!str`` tag before the value, quotes, trailing comments, and a
    value on the next, deeper-indented line. Anything else (block scalars, flow collections, escapes)
    raises ComposeFileError.
    """
    line = lines[index].rstrip("\r\n")
    pos = col
    while pos < len(line) and line[pos] == " ":
        pos += 1
    # node properties: &anchor and/or !tag
    while True:
        m = re.match(r"(?:&\S+|!\S*)(?:\s+|$)", line[pos:])
        if not m:
            break
        pos += m.end()
    rest = line[pos:]
    if not _strip_comment(rest):
        # the value may sit on the next content line, indented deeper than the key
        key_indent = _indent(line)
        for j in range(index + 1, len(lines)):
            if not _is_content(lines[j]):
                continue
            if _indent(lines[j]) > key_indent and _key_of(lines[j]) is None:
                nxt = _block_end(lines, j, key_indent)
                if any(_is_content(lines[k]) for k in range(j + 1, nxt)):
                    raise ComposeFileError(f"line {j + 1}: {what} spans several lines; put it on one line.")
                return _parse_scalar(lines, j, _indent(lines[j]), what)
            break
        raise ComposeFileError(f"line {index + 1}: {what} is empty.")
    first = rest[0]
    if first == "*":
        return None, _strip_comment(rest[1:])
    if first in "|>":
        raise ComposeFileError(f"line {index + 1}: {what} is a block scalar ({first}); write it on one line.")
    if first in "[{":
        raise ComposeFileError(f"line {index + 1}: {what} is a flow collection, not an image reference.")
    if first in "\"'":
        close = rest.find(first, 1)
        if close < 0:
            raise ComposeFileError(f"line {index + 1}: {what} has an unterminated quoted string.")
        text = rest[1:close]
        if "\\" in text or (first == "'" and rest[close : close + 2] == "''"):
            raise ComposeFileError(f"line {index + 1}: {what} uses escapes inside quotes; write the reference plainly.")
        tail = rest[close + 1 :]
        if tail.strip() and not tail.strip().startswith("#"):
            raise ComposeFileError(f"line {index + 1}: unexpected text after the quoted {what}.")
        return Scalar(text, index, pos + 1, pos + 1 + len(text), first), None
    text = _strip_comment(rest)
    return Scalar(text, index, pos, pos + len(text)), None


def _find_anchor(lines: list[str], name: str) -> tuple[int, int] | None:
    """(line index, column after the anchor) of ``&name`` used on a mapping key line."""
    pat = re.compile(r"(?:^|[\s:])&" + re.escape(name) + r"(?=\s|$)")
    for i, line in enumerate(lines):
        if not _is_content(line):
            continue
        m = pat.search(line)
        if m and _key_of(line) is not None:
            return i, m.end()
    return None


def _anchored_image(lines: list[str], names: list[str], seen: set) -> tuple[Scalar, str] | None:
    """The ``image:`` of the first anchored mapping (as a ``<<:`` merge lists them) that has one."""
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        where = _find_anchor(lines, name)
        if where is None:
            raise ComposeFileError(f"the anchor &{name} used by a merge key (<<: *{name}) is not defined.")
        index = where[0]
        block_end = _block_end(lines, index, _indent(lines[index]))
        keys = _children(lines, index, block_end)
        if "image" in keys:
            scalar = _image_scalar(lines, *keys["image"])
            return scalar, name
        if "<<" in keys:
            found = _anchored_image(lines, _merge_names(lines, *keys["<<"]), seen)
            if found:
                return found
    return None


def _merge_names(lines: list[str], index: int, col: int) -> list[str]:
    rest = _strip_comment(_value_rest(lines, index, col)).strip()
    if rest.startswith("*"):
        return [rest[1:].strip()]
    if rest.startswith("[") and rest.endswith("]"):
        return [part.strip().lstrip("*") for part in rest[1:-1].split(",") if part.strip()]
    raise ComposeFileError(f"line {index + 1}: cannot read the merge key (<<:) value '{rest}'.")


def _image_scalar(lines: list[str], index: int, col: int) -> Scalar:
    scalar, alias = _parse_scalar(lines, index, col, "the image value")
    if alias is not None:
        where = _find_scalar_anchor(lines, alias)
        if where is None:
            raise ComposeFileError(f"line {index + 1}: the image is an alias (*{alias}) of an anchor not defined.")
        scalar, _alias = _parse_scalar(lines, where[0], where[1], f"the value of anchor &{alias}")
        if scalar is None:
            raise ComposeFileError(f"line {where[0] + 1}: anchor &{alias} is itself an alias.")
    return scalar


def _find_scalar_anchor(lines: list[str], name: str) -> tuple[int, int] | None:
    pat = re.compile(r"&" + re.escape(name) + r"\s+")
    for i, line in enumerate(lines):
        m = pat.search(line)
        if m and _is_content(line) and _strip_comment(line[m.end() :]):
            return i, m.start()
    return None


def locate_image_value(text: str, service: str, path: str = "compose file") -> tuple[Scalar, str | None] | None:
    """The scalar that sets ``services.<service>.image`` in one compose file, and the anchor it lives under.

    Returns None when the file does not mention the service or sets no image for it (another file of
    the project may). Raises ComposeFileError when the file cannot be read with certainty.
    """
    lines = text.splitlines(keepends=True)
    top = None
    for i, line in enumerate(lines):
        parsed = _key_of(line)
        if parsed and parsed[0] == 0 and parsed[1] == "services":
            rest = _strip_comment(_value_rest(lines, i, parsed[2])).strip()
            if rest:
                raise ComposeFileError(f"{path} line {i + 1}: 'services:' is not a block mapping ({rest[:20]}...).")
            top = i
            break
    if top is None:
        return None
    services = _children(lines, top, _block_end(lines, top, 0))
    if service not in services:
        return None
    index, col = services[service]
    rest = _strip_comment(_value_rest(lines, index, col)).strip()
    rest = re.sub(r"^&\S+\s*", "", rest)
    if rest.startswith("*"):
        found = _anchored_image(lines, [rest[1:].strip()], set())
        if found is None:
            return None
        return found
    if rest:
        raise ComposeFileError(
            f"{path} line {index + 1}: service '{service}' is written in flow style ({rest[:30]}); "
            "write it as a block mapping to let the tag be changed."
        )
    keys = _children(lines, index, _block_end(lines, index, _indent(lines[index])))
    if "image" in keys:
        return _image_scalar(lines, *keys["image"]), None
    if "<<" in keys:
        found = _anchored_image(lines, _merge_names(lines, *keys["<<"]), set())
        if found is not None:
            return found
    return None


def service_keys(text: str, service: str) -> list[str]:
    """The keys of ``services.<service>`` in one file (for error messages: build, extends...)."""
    lines = text.splitlines(keepends=True)
    block = _service_block(lines, service)
    return list(_children(lines, *block)) if block else []


def _service_block(lines: list[str], service: str) -> tuple[int, int] | None:
    """(line index of ``services.<service>:``, end of its block), or None when the file does not define it."""
    for i, line in enumerate(lines):
        parsed = _key_of(line)
        if parsed and parsed[0] == 0 and parsed[1] == "services":
            services = _children(lines, i, _block_end(lines, i, 0))
            if service not in services:
                return None
            index = services[service][0]
            return index, _block_end(lines, index, _indent(lines[index]))
    return None


def _scalar_item(text: str) -> str:
    text = _strip_comment(text).strip()
    if len(text) >= 2 and text[0] in "\"'" and text[-1] == text[0]:
        return text[1:-1]
    return text


def service_profiles(text: str, service: str) -> list[str]:
    """The ``profiles:`` of ``services.<service>`` in one file (flow ``[a, b]`` or a block list), [] without."""
    lines = text.splitlines(keepends=True)
    block = _service_block(lines, service)
    if block is None:
        return []
    keys = _children(lines, *block)
    if "profiles" not in keys:
        return []
    index, col = keys["profiles"]
    rest = _strip_comment(_value_rest(lines, index, col)).strip()
    if rest.startswith("[") and rest.endswith("]"):
        return [_scalar_item(part) for part in rest[1:-1].split(",") if part.strip()]
    if rest:
        return [_scalar_item(rest)]
    found = []
    for j in range(index + 1, _block_end(lines, index, _indent(lines[index]))):
        item = lines[j].strip()
        if item.startswith("- "):
            found.append(_scalar_item(item[2:]))
        elif _is_content(lines[j]):
            raise ComposeFileError(f"line {j + 1}: cannot read the profiles of service '{service}'.")
    return found


def service_names(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        parsed = _key_of(line)
        if parsed and parsed[0] == 0 and parsed[1] == "services":
            return list(_children(lines, i, _block_end(lines, i, 0)))
    return []


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
        refs.append(VarRef(name, m.group("op"), arg, m.start(), m.end()))
    return refs


def resolve_var(ref: VarRef, values: dict) -> tuple[str | None, str]:
    """Compose's value of one reference given ``values`` (name -> str): (value or None, source)."""
    present = ref.name in values
    value = values.get(ref.name)
    if ref.op in (None,):
        return (value, "set") if present else (None, "unset")
    if ref.op == ":-":
        return (value, "set") if present and value != "" else (ref.arg, "default")
    if ref.op == "-":
        return (value, "set") if present else (ref.arg, "default")
    if ref.op in (":?", "?"):
        if not present or (ref.op == ":?" and value == ""):
            return None, "unset"
        return value, "set"
    raise ComposeFileError(f"the '{ref.op}' form of ${{{ref.name}}} cannot hold an image tag.")


def interpolate(value: str, values: dict) -> str | None:
    """The value with every reference resolved (None when one is unset without a default)."""
    out, pos = [], 0
    for m in _VAR_RE.finditer(value):
        out.append(value[pos : m.start()])
        pos = m.end()
        if m.group(0) == "$$":
            out.append("$")
            continue
        resolved, _source = resolve_var(var_refs(m.group(0))[0], values)
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
    rest = m.group("rest")
    _old, start, end, _quote = _env_value(rest)
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
    found = None
    for path, text in reversed(files):
        located = locate_image_value(text, service, path)
        if located is not None:
            found = (path, text, located)
            break
    if found is None:
        names = sorted({n for _p, t in files for n in service_names(t)})
        keys = sorted({k for _p, t in files for k in service_keys(t, service)})
        where = ", ".join(p for p, _t in files)
        if service not in names:
            raise ComposeFileError(
                f"Service '{service}' is not defined in {where} (services found: {', '.join(names) or 'none'}): "
                "set the 'service' option."
            )
        if "build" in keys:
            raise ComposeFileError(
                f"Service '{service}' builds its image (build:) and sets no image: in {where}; "
                "there is no tag to switch. Give the service an 'image: <repository>:<tag>'."
            )
        if "extends" in keys:
            raise ComposeFileError(
                f"Service '{service}' takes its settings from 'extends:' and sets no image: in {where}; "
                "set 'image:' on the service itself."
            )
        raise ComposeFileError(f"Service '{service}' has no 'image:' setting in {where} (keys: {', '.join(keys)}).")
    path, text, (scalar, anchor) = found
    env_values = parse_env(env_text) if env_text is not None else {}
    setting = _interpret(scalar, path, env_path, env_values, environ)
    setting.anchor = anchor
    setting.scalar = scalar
    _usage_warnings(setting, text)
    return setting


def _interpret(scalar: Scalar, path: str, env_path: str, env_values: dict, environ: dict) -> TagSetting:
    raw = scalar.text
    refs = var_refs(raw)
    # mask variables so that ':', '/' and '@' inside ${VAR:-default} do not count
    masked = list(raw)
    for ref in refs:
        masked[ref.start : ref.end] = ["\0"] * (ref.end - ref.start)
    masked_s = "".join(masked)
    # values other than the tag variable: environment first, then .env (Compose's own precedence)
    others = dict(env_values)
    others.update(environ)
    line = scalar.line + 1
    base = {"compose_file": path, "line": line, "raw": raw}
    if "@" in masked_s:
        raise ComposeFileError(
            f"{path} line {line}: the image '{raw}' is pinned by digest (@sha256:...); the tag alone would not change "
            "the image. Remove the digest to let the tag be switched."
        )
    slash, colon = masked_s.rfind("/"), masked_s.rfind(":")
    if colon > slash:
        tag_start, tag_end = colon + 1, len(raw)
        tag_refs = [r for r in refs if r.start >= tag_start]
        if not tag_refs:
            tag = raw[tag_start:tag_end]
            repo = interpolate(raw[:colon], others)
            return TagSetting(location="file", image=None if repo is None else f"{repo}:{tag}", repository=repo,
                              tag=tag, tag_span=(tag_start, tag_end), **base)
        if len(tag_refs) == 1 and tag_refs[0].start == tag_start and tag_refs[0].end == tag_end:
            ref = tag_refs[0]
            value, source = _tag_var_value(ref, env_values, environ)
            repo = interpolate(raw[:colon], others)
            image = None if value is None or repo is None else f"{repo}:{value}"
            return TagSetting(location="env", image=image, repository=repo, tag=value, variable=ref.name,
                              env_file=env_path, value_source=source, **base)
        raise ComposeFileError(
            f"{path} line {line}: the tag of '{raw}' is only partly a variable; it must be either literal "
            "(engine:2.3.0) or exactly one variable (engine:${ENGINE_TAG})."
        )
    if len(refs) == 1 and refs[0].start == 0 and refs[0].end == len(raw):
        ref = refs[0]
        value, source = _tag_var_value(ref, env_values, environ)
        repo = tag = None
        if value is not None:
            repo, tag, digest = split_image_ref(value)
            if digest:
                raise ComposeFileError(f"{ref.name} holds an image pinned by digest; remove the digest.")
        return TagSetting(location="env", image=value, repository=repo, tag=tag, variable=ref.name, whole_ref=True,
                          env_file=env_path, value_source=source, **base)
    if not refs:
        return TagSetting(location="file", image=raw, repository=raw, tag=None, tag_span=(len(raw), len(raw)), **base)
    raise ComposeFileError(
        f"{path} line {line}: cannot tell where the tag of '{raw}' is set; write it as repository:tag, "
        "repository:${VAR} or ${VAR} (with the whole reference in the variable)."
    )


def _tag_var_value(ref: VarRef, env_values: dict, environ: dict) -> tuple[str | None, str]:
    """The tag variable's value as this module runs Compose: the env file wins (we pass it explicitly)."""
    if ref.name in env_values:
        value, source = resolve_var(ref, env_values)
        return value, "env_file" if source == "set" else source
    if ref.name in environ:
        value, source = resolve_var(ref, environ)
        return value, "environment" if source == "set" else source
    return resolve_var(ref, {})


def _usage_warnings(setting: TagSetting, text: str) -> None:
    if setting.location == "env" and setting.variable:
        uses = [
            i + 1
            for i, line in enumerate(text.splitlines())
            if i != (setting.scalar.line if setting.scalar else -1)
            and re.search(r"\$\{?" + re.escape(setting.variable) + r"\b", line)
        ]
        if uses:
            setting.warnings.append(
                f"{setting.variable} is also used on line(s) {', '.join(map(str, uses))} of {setting.compose_file}: "
                "those settings change too the next time their services are created."
            )
    if setting.anchor:
        users = len(re.findall(r"\*" + re.escape(setting.anchor) + r"\b", text))
        if users > 1:
            setting.warnings.append(
                f"The image is set in anchor &{setting.anchor} of {setting.compose_file}, which {users} places use: "
                "the tag changes for all of them the next time they are created."
            )


def target_ref(setting: TagSetting, version: str | None, image: str | None, allow_repository_change: bool) -> str:
    """The full reference the service should use, from a target ``version`` or ``image``."""
    if setting.repository is None and not (setting.whole_ref and image):
        unset = " (a variable in it is not set)" if "$" in setting.raw else ""
        raise ComposeFileError(
            f"The image '{setting.raw}' of {setting.compose_file} line {setting.line} cannot be resolved{unset}: "
            "set the variable in the env file, or give the full reference with the 'image' option."
        )
    if image:
        repo, tag, digest = split_image_ref(image)
        if digest or not tag:
            raise ComposeFileError(f"image '{image}' must be a repository:tag reference (no digest, tag required).")
        check_tag(tag)
        if setting.repository is not None and normalize_repository(repo) != normalize_repository(setting.repository):
            if not allow_repository_change:
                raise ComposeFileError(
                    f"image '{image}' is from repository '{repo}' but the project uses '{setting.repository}': "
                    "set allow_repository_change=true if that is intended."
                )
            if setting.location == "env" and not setting.whole_ref:
                raise ComposeFileError(
                    f"The repository is written in {setting.compose_file} and the tag in {setting.env_file} "
                    f"(${{{setting.variable}}}): change the repository by hand; this module changes the tag only."
                )
        return image
    check_tag(version)
    return f"{setting.repository}:{version}"


def plan_tag_edit(setting: TagSetting, file_text: str, env_text: str | None, new_ref: str) -> Edit:
    """The one edit that makes the project's setting resolve to ``new_ref``."""
    repo, tag, _digest = split_image_ref(new_ref)
    if setting.location == "env":
        value = new_ref if setting.whole_ref else tag
        return plan_env_edit(setting.env_file, env_text, setting.variable, value)
    scalar = setting.scalar
    raw = scalar.text
    if setting.repository is not None and normalize_repository(repo) == normalize_repository(setting.repository):
        start, end = setting.tag_span
        new_raw = raw[:start] + tag + raw[end:] if start < end else f"{raw}:{tag}"
    else:
        new_raw = new_ref
    lines = file_text.splitlines(keepends=True)
    line = lines[scalar.line]
    new_line = line[: scalar.start] + new_raw + line[scalar.end :]
    lines[scalar.line] = new_line
    new_text = "".join(lines)
    return Edit(setting.compose_file, file_text, new_text, line.rstrip("\r\n") + "\n",
                new_line.rstrip("\r\n") + "\n", scalar.line + 1)


def verify_edit(files: list[tuple[str, str]], edit: Edit, service: str, *, env_path: str, environ: dict,
                env_text: str | None, expected: str) -> None:
    """Re-read the project as it would be after ``edit`` and make sure the service resolves to ``expected``.

    With PyYAML importable, also check that the compose file still parses and that nothing but the
    service's image changed in it.
    """
    new_files = [(p, edit.new_text if p == edit.path else t) for p, t in files]
    new_env = edit.new_text if edit.path == env_path else env_text
    after = locate_tag(new_files, service, env_path, new_env, environ)
    if after.image is None or normalize_repository(after.image) != normalize_repository(expected):
        raise ComposeFileError(
            f"Internal check failed: after the edit the image would be '{after.image}', not '{expected}'. "
            "Nothing was written; please report this with the shape of the compose file."
        )
    if HAS_YAML and edit.path != env_path and edit.old_text is not None:
        before = locate_tag(files, service, env_path, env_text, environ)
        try:
            old_doc = yaml.safe_load(edit.old_text)
            new_doc = yaml.safe_load(edit.new_text)
        except yaml.YAMLError as exc:
            raise ComposeFileError(f"Internal check failed: the edited {edit.path} would not parse ({exc}).") from exc
        new_image = ((new_doc or {}).get("services") or {}).get(service, {}).get("image")
        if new_image != after.raw or _masked(old_doc, before.raw) != _masked(new_doc, after.raw):
            raise ComposeFileError(
                f"Internal check failed: the edit of {edit.path} would change more than the image of '{service}'. "
                "Nothing was written; please report this with the shape of the compose file."
            )


def _masked(doc, value: str):
    """``doc`` with every scalar equal to ``value`` replaced by a marker (to compare everything else)."""
    if isinstance(doc, dict):
        return {k: _masked(v, value) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_masked(v, value) for v in doc]
    return "\0image" if doc == value else doc


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
