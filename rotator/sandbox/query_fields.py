"""The query-level fields of API keys, their index-level names, types and values."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Literal

from rotator.sandbox.keyindex import KeyIndex, QueryDoc
from rotator.sandbox.query_errors import illegal_argument

__all__ = [
    "FIELDS",
    "Field",
    "Kind",
    "Value",
    "is_pattern",
    "translate",
    "translate_pattern",
]

Kind = Literal["keyword", "date", "boolean"]
#: A field value: keyword strings, dates as epoch milliseconds, booleans.
Value = str | int | bool


@dataclass(frozen=True, slots=True)
class Field:
    """A field of an API key as the Query API exposes it.

    Attributes:
        name: The query-level name (``expiration``, ``metadata.env``...).
        index_name: The index-level name (``expiration_time``, ``metadata_flattened.env``...),
            used in some error messages.
        kind: ``keyword``, ``date`` or ``boolean``.
        type_name: The mapping type Elasticsearch reports in errors.
        path: For ``metadata.<sub>``, the dotted sub-path; ``""`` for ``metadata`` itself.
    """

    name: str
    index_name: str
    kind: Kind
    type_name: str
    path: str | None = None

    @property
    def ordered(self) -> bool:
        """Whether the key index keeps an ordering on this field."""
        return self.name in ("creation", "expiration", "name")

    def values(self, doc: QueryDoc, index: KeyIndex) -> tuple[Value, ...]:
        """Return the doc values of this field (distinct, sorted for keywords)."""
        if self.path is not None:
            flat = index.flat_metadata(doc)
            return flat.root if self.path == "" else flat.keyed.get(self.path, ())
        value = _GETTERS[self.name](doc)
        return () if value is None else (value,)

    def single(self) -> Callable[[QueryDoc], Value | None] | None:
        """Return a fast getter when the field has at most one value per key, else ``None``."""
        if self.path is not None:
            return None
        return _GETTERS[self.name]


_GETTERS: dict[str, Callable[[QueryDoc], Value | None]] = {
    name: attrgetter(name)
    for name in (
        "username",
        "realm_name",
        "name",
        "type",
        "creation",
        "expiration",
        "invalidated",
        "invalidation",
    )
}

FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("username", "creator.principal", "keyword", "keyword"),
        Field("realm_name", "creator.realm", "keyword", "keyword"),
        Field("name", "name", "keyword", "keyword"),
        Field("type", "runtime_key_type", "keyword", "keyword"),
        Field("creation", "creation_time", "date", "date"),
        Field("expiration", "expiration_time", "date", "date"),
        Field("invalidated", "api_key_invalidated", "boolean", "boolean"),
        Field("invalidation", "invalidation_time", "date", "date"),
        Field("metadata", "metadata_flattened", "keyword", "flattened", ""),
    )
}


def is_pattern(name: str) -> bool:
    """Tell whether a field name is a pattern (Elasticsearch's ``Regex.isSimpleMatchPattern``)."""
    return "*" in name


def _lookup(name: str) -> Field | None:
    found = FIELDS.get(name)
    if found is not None:
        return found
    if name.startswith("metadata."):
        sub = name[len("metadata.") :]
        return Field(name, f"metadata_flattened.{sub}", "keyword", "flattened", sub)
    return None


def translate(name: str) -> Field:
    """Resolve a query-level field name, as ``FieldNameTranslators.translate`` does.

    Raises:
        QueryError: ``illegal_argument_exception`` for patterns and for fields that may not be
            queried, sorted or aggregated on (``id`` among them).
    """
    if is_pattern(name):
        raise illegal_argument(
            f"Field name pattern [{name}] is not allowed for querying or aggregation"
        )
    found = _lookup(name)
    if found is None:
        raise illegal_argument(f"Field [{name}] is not allowed for querying or aggregation")
    return found


def _simple_match(pattern: str, text: str) -> bool:
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, text, flags=re.DOTALL) is not None


def translate_pattern(pattern: str) -> list[Field]:
    """Resolve a field name or pattern for ``simple_query_string``; unknown names resolve to none.

    A pattern matches the top-level names only: ``metadata.*`` matches nothing, since the sub-fields
    of a flattened field cannot be listed, while ``meta*`` matches ``metadata`` itself.
    """
    if not is_pattern(pattern):
        found = _lookup(pattern)
        return [] if found is None else [found]
    return [f for name, f in FIELDS.items() if _simple_match(pattern, name)]
