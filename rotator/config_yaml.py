"""Reading a config file safely: a regular file of bounded size, and strict YAML.

Strict: no duplicate keys (YAML would keep the last one silently), no anchors or aliases (a few
lines of them can expand into billions of values), and a bounded nesting depth.
"""

from __future__ import annotations

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

    With libyaml, text that cannot hold an anchor is parsed in C, then checked for shared nodes
    (aliases) and depth before anything is built; any doubt goes to the strict pure-Python
    loader, which names the anchor or the depth exactly.
    """
    if text.lstrip().startswith("{"):
        as_json = _load_json(text)
        if as_json is not None:
            return as_json
    if _CLoader is not None and not _MAY_ALIAS.search(text):
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
