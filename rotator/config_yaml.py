"""Reading a config file safely: a regular file of bounded size, and strict YAML.

Strict: no duplicate keys (YAML would keep the last one silently), no anchors or aliases (a few
lines of them can expand into billions of values), and a bounded nesting depth.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from rotator.config_errors import EXCERPT_CHARS
from rotator.errors import ConfigError

# A config is a few kilobytes, or a few megabytes for a fleet of 100,000 sources; anything near
# this is a mistake or an attack.
MAX_CONFIG_BYTES = 64 * 1024 * 1024
# Deeper than any real config (sources[0].privileges.indices[0].names[0] is 6 levels).
MAX_DEPTH = 32


def read_config_file(file: Path) -> str:
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; a regular file ignores it.
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError([f"(file): {file} does not exist"], str(file)) from None
    except OSError as exc:
        raise ConfigError([f"(file): cannot read {file}: {_os_reason(exc)}"], str(file)) from None
    try:
        kind = _file_kind(os.fstat(fd).st_mode)
        if kind != "a regular file":
            raise ConfigError([f"(file): {file} is {kind}, not a regular file"], str(file))
        data = _read_at_most(fd, MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"(file): cannot read {file}: {_os_reason(exc)}"], str(file)) from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            [
                f"(file): {file} is larger than {MAX_CONFIG_BYTES // 1024} KiB, "
                "the limit for a config"
            ],
            str(file),
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"(file): {file} is not UTF-8 text (byte {exc.start + 1})"], str(file)
        ) from None


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, min(65536, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


class YamlRefused(Exception):
    """YAML that is well formed but not accepted in a config (aliases, too deep)."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors and aliases, and with a bounded nesting depth.

    Aliases let a few lines expand into billions of values (an "alias bomb"); a config has no
    need for them. The depth bound keeps deeply nested input from exhausting the stack.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise YamlRefused(
                f"YAML anchors and aliases (&name, *name) are not accepted in a config, "
                f"found one at {_mark(event.start_mark)}; write the value out"
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlRefused(
                    f"nested deeper than {MAX_DEPTH} levels at {_mark(event.start_mark)}"
                )
            return super().compose_node(parent, index)  # type: ignore[arg-type]
        finally:
            self._depth -= 1


# Text that may hold an anchor or an alias (``&name``, ``*name`` after a separator). Quoted index
# patterns such as "logs-*" do not match; a false match only costs the slower strict parse.
_MAY_ALIAS = re.compile(r"(?:^|[\s\[{,:?-])[&*][A-Za-z0-9_]", re.MULTILINE)


def load_yaml(text: str) -> tuple[Any, list[str]]:
    """Parse one YAML document; returns the data and a problem for each duplicate key.

    Text that cannot hold an anchor is parsed in C: by rapidyaml (see ``_load_ryml``), else by
    libyaml, then checked for shared nodes (aliases) and depth before anything is built; any
    doubt goes to the strict pure-Python loader, which names the anchor or the depth exactly.
    """
    if text.lstrip().startswith("{"):
        as_json = _load_json(text)
        if as_json is not None:
            return as_json
    if not (("&" in text or "*" in text) and _MAY_ALIAS.search(text)):
        fast = _load_ryml(text) if len(text) >= RYML_MIN_CHARS else None
        if fast is None and _CLoader is not None:
            fast = _load_fast(text)
        if fast is not None:
            return fast
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        return loader.construct_document(node), _duplicate_keys(node, "")
    finally:
        loader.dispose()


_CLoader: type[Any] | None = getattr(yaml, "CSafeLoader", None)


def _load_json(text: str) -> tuple[Any, list[str]] | None:
    """A config written as JSON (YAML's subset, what generators write for large fleets),
    parsed in C. None when it is not plain JSON within the depth bound: YAML decides then."""
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(items)  # the last value of a repeated key, at the place of its first
        if len(out) != len(items):
            seen: set[str] = set()
            for key, _ in items:
                if key in seen:
                    duplicates.append(f"{_short(key)}: duplicate key in a JSON object")
                seen.add(key)
        return out

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return None
    if _json_depth(data) > MAX_DEPTH:
        return None
    return data, duplicates


def _json_depth(root: Any) -> int:
    """How deep the parsed JSON goes (a value inside the root is at depth 2), counted up to
    one level past MAX_DEPTH. Walks level by level, looking only into lists and mappings."""
    deepest = 1
    level = [root]
    while deepest <= MAX_DEPTH:
        below: list[Any] = []
        for value in level:
            if type(value) is dict:
                below += value.values()
            elif type(value) is list:
                below += value
        if not below:
            break
        deepest += 1
        level = [value for value in below if type(value) is dict or type(value) is list]
    return deepest


def _load_fast(text: str) -> tuple[Any, list[str]] | None:
    """Parse with libyaml; None when the strict loader must decide (an alias, too deep)."""
    assert _CLoader is not None
    loader = _CLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError:
            return None  # the strict loader says what is wrong, in its own words
        if node is None:
            return None, []
        if not _plain_tree(node):
            return None
        return loader.construct_document(node), _duplicate_keys(node, "")
    finally:
        loader.dispose()


def _plain_tree(root: yaml.Node) -> bool:
    """No node reached twice (an alias) and nothing nested deeper than MAX_DEPTH."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH or id(node) in seen:
            return False
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, depth + 1) for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append((key, depth + 1))
                stack.append((value, depth + 1))
    return True


def _duplicate_keys(node: yaml.Node, path: str) -> list[str]:
    problems: list[str] = []
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems.extend(_duplicate_keys(item, f"{path or '(root)'}[{index}]"))
    elif isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue
            at = f"{path}.{_short(key.value)}" if path else _short(key.value)
            line = key.start_mark.line + 1
            if (key.tag, key.value) in first:
                seen = first[(key.tag, key.value)]
                problems.append(f"{at}: duplicate key at line {line} (first at line {seen})")
            else:
                first[(key.tag, key.value)] = line
            problems.extend(_duplicate_keys(value, at))
    return problems


# --- the rapidyaml path --------------------------------------------------------------------------
#
# rapidyaml (C++) parses the text and writes it out as JSON, which the C JSON parser reads. Both
# are YAML 1.2 tools, rotator's YAML is PyYAML's 1.1: so every scalar that PyYAML could read as
# something other than a string (yes, 0x10, ~, 2030-01-01, 1e3 ...) is looked up in rapidyaml's
# tree and typed by PyYAML's own resolver and constructors, as the strict loader would. Anything
# else this path is unsure of (tags, several documents, a duplicate key, tabs, a parse error)
# leaves the text to PyYAML.

# Smaller texts go to libyaml, which takes a few milliseconds for them: rapidyaml prints its
# own message to the process's stderr when it cannot parse a text (which PyYAML then reports in
# rotator's words), and a config a person edits should not show that.
RYML_MIN_CHARS = 256 * 1024

_ryml: Any
try:
    _ryml = importlib.import_module("ryml")
except ImportError:  # pragma: no cover - the libyaml and strict paths still read every config
    _ryml = None

# Text the rapidyaml path leaves to PyYAML: tags, complex keys and block scalars (``!``, ``?``,
# ``|``, ``>`` after a separator; rapidyaml chomps a last line without a line break otherwise),
# "\\u" escapes (rapidyaml joins surrogate pairs, PyYAML does not), directives and document
# markers, merge keys, tabs, line breaks other than \n, a byte order mark, and the characters
# PyYAML's reader refuses. Substrings first: each is a fast scan, where one regular expression
# over megabytes of text is not.
_RYML_REFUSES = (
    *("\\u", "\\U", "<<", "\t", "\r", "\x85", "\u2028", "\u2029", "\ufeff"),
    *("\n---", "\n...", "\n%"),
)
# Stricter than _MAY_ALIAS: any character may follow (rapidyaml reads ``&:`` as an anchor).
_ANCHOR_OR_ALIAS = re.compile(r"(?:^|[\s\[{,:?])[&*]", re.MULTILINE)
_INDICATOR = re.compile(r"(?:^|[\s\[{,:?-])[!?|>]", re.MULTILINE)
_UNPRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


def _ryml_may_read(text: str) -> bool:
    if ("&" in text or "*" in text) and _ANCHOR_OR_ALIAS.search(text):
        return False  # the strict loader names the anchor or alias
    if text.startswith(("---", "...", "%")) or any(part in text for part in _RYML_REFUSES):
        return False
    if any(mark in text for mark in "!?|>") and _INDICATOR.search(text):
        return False
    return _UNPRINTABLE.search(text) is None


_RESOLVER = yaml.resolver.Resolver()
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_STR_TAG = "tag:yaml.org,2002:str"
# The tags of the scalars this path types itself (the others leave the text to PyYAML).
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("bool", "int", "float", "null", "timestamp")
)
# First characters of the plain scalars PyYAML may read as something else than a string ('' is
# the empty scalar, null); every other string needs no look-up.
_TYPED_FIRST = frozenset(_RESOLVER.yaml_implicit_resolvers) - {None}
_MAY_BE_TYPED = None in _RESOLVER.yaml_implicit_resolvers  # a resolver for any first character
# Characters PyYAML does not let a plain scalar start with (rapidyaml lets some: ``%x``, ``@x``);
# a string starting with one is looked up, and a plain one leaves the text to PyYAML.
_NOT_PLAIN_FIRST = frozenset("%@`!&*|>'\"#,[]{}?:")
_LOOK_UP_FIRST = _TYPED_FIRST | _NOT_PLAIN_FIRST


# Between NUL separators: a string whose first character may make PyYAML read it, written
# plain, as something else than this string (each such string is checked once; a fleet config
# has a handful: "name", "type", "file"). Empty strings are found as two NULs in a row.
_LOOK_UP_CANDIDATE = re.compile(
    f"\\x00([{re.escape(''.join(sorted(_LOOK_UP_FIRST - {''})))}][^\\x00]*)"
)
_NOT_PLAIN_INSIDE = re.compile(r"[,?\[\]{}]")


def _plain_tag(text: str) -> str:
    """The tag PyYAML's resolver gives ``text`` written as a plain scalar."""
    tag: str = _RESOLVER.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return tag


def _typed_when_plain(text: str) -> bool:
    return _plain_tag(text) != _STR_TAG


def _plain_refused(text: str, *, flow: bool = True) -> bool:
    """PyYAML cannot read ``text`` as one plain scalar (``- x`` is an item of a list, `` #``
    starts a comment; in a flow collection ``,?[]{}`` end the scalar)."""
    return (
        text[:1] in _NOT_PLAIN_FIRST
        or (text[:1] == "-" and text[1:2] in ("", " "))
        or " #" in text
        or ": " in text
        or text.endswith(":")
        or (flow and any(mark in text for mark in ",?[]{}"))
    )


def _has_multiline_flow(tree: Any) -> bool:
    """A [list] or {mapping} written over several lines: PyYAML refuses a key in one that spans
    lines (``{a\n b: c}``), rapidyaml folds it. rapidyaml writes such a collection out with its
    opening bracket alone on a line (one written on one line stays on one line)."""
    written = _ryml.emit_yaml(tree)
    return not isinstance(written, str) or "[\n" in written or "{\n" in written


class _Undecided(Exception):
    """The rapidyaml path cannot be sure it reads the text as PyYAML does."""


def _load_ryml(text: str) -> tuple[Any, list[str]] | None:
    """Parse with rapidyaml; None when PyYAML must decide. Never reports duplicate keys: text
    with one goes to PyYAML, which names their lines."""
    if _ryml is None or _MAY_BE_TYPED or not text.strip() or not _ryml_may_read(text):
        return None
    try:
        tree = _ryml.parse_in_arena(text.encode("utf-8"))
        emitted = _ryml.emit_json(tree)
    except _ryml.ExceptionBasic:
        return None
    if not isinstance(emitted, str) or tree.is_stream(tree.root_id()):
        return None
    if ("[" in text or "{" in text) and _has_multiline_flow(tree):
        return None
    repeated = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        out = dict(items)
        repeated = repeated or len(out) != len(items)
        return out

    try:
        data = json.loads(emitted, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return None
    if repeated:
        return None
    if _needs_no_typing(data):
        return data, []
    try:
        return _Typer(tree).document(data), []
    except _Undecided:
        return None


def _needs_no_typing(data: Any) -> bool:
    """True when every scalar in ``data`` (a mapping or list within the depth bound) is a
    string that PyYAML reads the same, written plain or quoted: what generated fleet configs
    hold. Checks all strings with one regular expression, level by level, without a look-up."""
    if type(data) is not dict and type(data) is not list:
        return False
    strings: list[str] = []
    level = [data]
    depth = 1
    while level:
        below: list[Any] = []
        for value in level:
            if type(value) is dict:
                strings += value.keys()
                below += value.values()
            else:
                below += value
        if below and depth >= MAX_DEPTH:
            return False  # the strict loader names the depth
        depth += 1
        level = [value for value in below if type(value) is dict or type(value) is list]
        scalars = [value for value in below if type(value) is str]
        if len(scalars) + len(level) != len(below):
            return False  # a number, true, false or null: typed by look-ups
        strings += scalars
    joined = "\x00" + "\x00".join(strings) + "\x00"
    if (
        "\x00\x00" in joined
        or " #" in joined
        or ": " in joined
        or ":\x00" in joined
        or _NOT_PLAIN_INSIDE.search(joined)
    ):
        return False
    candidates = set(_LOOK_UP_CANDIDATE.findall(joined))
    return not any(_plain_refused(text) or _typed_when_plain(text) for text in candidates)


class _Typer:
    """Types the scalars of rapidyaml's JSON as PyYAML would, looking up the few that need it.

    rapidyaml numbers the nodes of a parsed tree in document order (the root 0, then each entry
    of a mapping or item of a list as it comes), the order this walk visits the JSON in; every
    look-up checks the node's parent and the walk checks the count, so a tree numbered any
    other way leaves the text to PyYAML.
    """

    def __init__(self, tree: Any) -> None:
        self.tree = tree
        self.next_id = 1
        # Strings that, written plain, PyYAML reads as strings too: no look-up needed.
        self.plain_strings: set[str] = set()

    def document(self, data: Any) -> Any:
        tree = self.tree
        if tree.root_id() != 0:
            raise _Undecided
        kind = type(data)
        typed: Any
        if kind is dict:
            typed = self.mapping(data, 0, 1)
        elif kind is list:
            typed = self.sequence(data, 0, 1)
        elif kind is str and self.is_plain_string(data):
            typed = data
        else:
            typed = self.scalar(0, -1, data)
        if self.next_id != tree.size():
            raise _Undecided
        return typed

    def is_plain_string(self, text: str) -> bool:
        """True when ``text`` needs no look-up: written plain, PyYAML reads it as this string
        (a quoted scalar that only looks like a number or a date is looked up)."""
        if text in self.plain_strings:
            return True
        if _plain_refused(text):
            return False  # quoted, or text PyYAML refuses: looked up
        if text[:1] in _TYPED_FIRST and _typed_when_plain(text):
            return False
        self.plain_strings.add(text)
        return True

    def mapping(self, value: dict[str, Any], node: int, depth: int) -> dict[Any, Any]:
        if depth >= MAX_DEPTH and value:
            raise _Undecided  # its keys and values are one level too deep
        out: dict[Any, Any] = {}
        for key, item in value.items():
            child = self.next_id
            self.next_id += 1
            kind = type(item)
            if kind is dict:
                item = self.mapping(item, child, depth + 1)
            elif kind is list:
                item = self.sequence(item, child, depth + 1)
            elif kind is not str or not self.is_plain_string(item):
                item = self.scalar(child, node, item)
            if not self.is_plain_string(key):
                key = self.scalar(child, node, key, is_key=True)
            out[key] = item  # keys that PyYAML reads as equal: the last value, the first place
        return out

    def sequence(self, value: list[Any], node: int, depth: int) -> list[Any]:
        if depth >= MAX_DEPTH and value:
            raise _Undecided
        out = value
        for position, item in enumerate(value):
            child = self.next_id
            self.next_id += 1
            kind = type(item)
            if kind is dict:
                typed: Any = self.mapping(item, child, depth + 1)
            elif kind is list:
                typed = self.sequence(item, child, depth + 1)
            elif kind is not str or not self.is_plain_string(item):
                typed = self.scalar(child, node, item)
            else:
                continue
            if out is value:
                out = list(value)
            out[position] = typed
        return out

    def scalar(self, node: int, parent: int, emitted: Any, *, is_key: bool = False) -> Any:
        """The scalar of node ``node`` (a child of ``parent``) as PyYAML constructs it."""
        tree = self.tree
        if parent >= 0 and tree.parent(node) != parent:
            raise _Undecided
        if is_key:
            if (
                not tree.has_key(node)
                or tree.is_key_ref(node)
                or tree.has_key_tag(node)
                or tree.has_key_anchor(node)
            ):
                raise _Undecided
            plain, raw = tree.is_key_plain(node), tree.key(node)
        else:
            if (
                not tree.has_val(node)
                or tree.is_container(node)
                or tree.is_val_ref(node)
                or tree.has_val_tag(node)
                or tree.has_val_anchor(node)
            ):
                raise _Undecided
            plain, raw = tree.is_val_plain(node), tree.val(node)
        text = "" if raw is None else bytes(raw).decode("utf-8")
        if not plain:  # quoted: a string (rapidyaml writes '.NaN' out as ".nan", so its own)
            if type(emitted) is not str:
                raise _Undecided
            return text
        if (is_key and not text) or _plain_refused(text, flow=parent >= 0 and tree.is_flow(parent)):
            raise _Undecided  # PyYAML refuses most empty keys and these, in its own words
        tag = _plain_tag(text)
        if tag == _STR_TAG:
            return text
        if tag not in _SCALAR_TAGS:
            raise _Undecided  # a merge key or '=' (PyYAML refuses it): PyYAML says so
        return _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, yaml.ScalarNode(tag, text))


def _short(text: str) -> str:
    return text if len(text) <= EXCERPT_CHARS else f"{text[:EXCERPT_CHARS]}..."


def _mark(mark: yaml.Mark | None) -> str:
    return (
        "an unknown position" if mark is None else f"line {mark.line + 1}, column {mark.column + 1}"
    )


def yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(problem)
