"""The stash and dotted-path lookups, with the semantics of Elastic's Java ``Stash``/``ObjectPath``."""

from __future__ import annotations

import re
from typing import Any

from .javaish import java_class, java_str

__all__ = ["ARBITRARY_KEY", "PathError", "Stash", "StashError", "evaluate_path", "parse_path"]

# ``${key}``; a preceding backslash escapes it (it is then kept literally, without the backslash).
EXTENDED_KEY = re.compile(r"(\\)?\$\{([^}]+)\}")
ARBITRARY_KEY = "_arbitrary_key_"
_JAVA_INT = re.compile(r"[+-]?[0-9]+")


class PathError(Exception):
    """A path could not be followed (a list index that is not a number or is out of bounds...)."""


class StashError(Exception):
    """A stash reference could not be resolved."""


def parse_path(path: str) -> list[str]:
    """Split ``a.b\\.c.0`` into ``["a", "b.c", "0"]`` exactly as ``ObjectPath.parsePath`` does.

    A backslash is dropped and makes the next ``.`` literal; empty parts are skipped, so ``""``
    is the whole object.
    """
    parts: list[str] = []
    current: list[str] = []
    escape = False
    for c in path:
        if c == "\\":
            escape = True
            continue
        if c == ".":
            if escape:
                escape = False
            else:
                if current:
                    parts.append("".join(current))
                    current = []
                continue
        current.append(c)
    if current:
        parts.append("".join(current))
    return parts


def evaluate_path(obj: Any, path: str, stash: Stash | None = None) -> Any:
    """The value at ``path`` in ``obj``, or ``None`` where a level is missing.

    Each part may itself be a stash reference (``nodes.$master.name``, ``a.${k}.b``); a list
    level needs a numeric, in-bounds index, otherwise :class:`PathError` (the Java runner fails
    the test there rather than returning null); ``_arbitrary_key_`` picks any key of a map.
    """
    result = obj
    for part in parse_path(path):
        result = _step(part, result, stash)
        if result is None:
            return None
    return result


def _step(key: str, obj: Any, stash: Stash | None) -> Any:
    if stash is not None and stash.contains(key):
        key = java_str(stash.get_value(key))
    if isinstance(obj, dict):
        if key == ARBITRARY_KEY:
            if not obj:
                raise PathError(f"requested [{key}] but the map was empty")
            if key in obj:
                raise PathError(f"requested meta-key [{key}] but the map unexpectedly contains it")
            return next(iter(obj))
        return obj.get(key)
    if isinstance(obj, list):
        if not _JAVA_INT.fullmatch(key):
            raise PathError(f"element was a list, but [{key}] was not numeric")
        index = int(key)
        if not 0 <= index < len(obj):
            raise PathError(
                f"element was a list with {len(obj)} elements, but [{key}] was out of bounds"
            )
        return obj[index]
    raise PathError(f"no object found for [{key}] within object of class [{java_class(obj)}]")


class Stash:
    """Values saved by ``set``/``transform_and_set`` (and ``body``, the last response body)."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}

    def stash_value(self, key: str, value: Any) -> None:
        self._values[key] = value

    def clear(self) -> None:
        self._values.clear()

    def keys(self) -> list[str]:
        return list(self._values)

    def contains(self, key: Any) -> bool:
        """Whether ``key`` refers to the stash: a string starting with ``$`` or holding ``${..}``."""
        if not isinstance(key, str) or not key:
            return False
        return key.startswith("$") or EXTENDED_KEY.search(key) is not None

    def get_value(self, key: str) -> Any:
        """``$name`` (a path into the stash, any type) or a string with ``${name}`` replaced."""
        if key.startswith("$") and not key.startswith("${"):
            if len(key) == 1:
                raise StashError("invalid stash reference [$]")
            return self._unstash(key[1:])
        pieces: list[str] = []
        last = 0
        found = False
        for match in EXTENDED_KEY.finditer(key):
            found = True
            pieces.append(key[last : match.start()])
            if match.group(1) is None:
                pieces.append(java_str(self._unstash(match.group(2))))
            else:
                pieces.append(match.group(0)[1:])
            last = match.end()
        if not found:
            raise StashError(f"Doesn't contain any stash keys [{key}]")
        pieces.append(key[last:])
        return "".join(pieces)

    def _unstash(self, key: str) -> Any:
        try:
            value = evaluate_path(self._values, key, self)
        except PathError as exc:
            raise StashError(f"stashed value not found for key [{key}]: {exc}") from exc
        if value is None:
            raise StashError(
                f"stashed value not found for key [{key}] (stash holds {sorted(self._values)})"
            )
        return value

    def replace(self, obj: Any) -> Any:
        """A copy of ``obj`` with stash references replaced in map keys, map values and items."""
        if isinstance(obj, list):
            return [self.get_value(o) if self.contains(o) else self.replace(o) for o in obj]
        if isinstance(obj, dict):
            result: dict[str, Any] = {}
            for key, value in obj.items():
                new_key = java_str(self.get_value(key)) if self.contains(key) else key
                new_value = self.get_value(value) if self.contains(value) else self.replace(value)
                if new_key in result:
                    raise StashError(
                        f"Unstashing has caused a key conflict! The key [{key}] unstashes to "
                        f"[{new_key}], which is already present"
                    )
                result[new_key] = new_value
            return result
        return obj
