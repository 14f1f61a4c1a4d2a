"""The queryable fields of the security index: API keys, roles and users.

Each query API allows its own fields (Elasticsearch's ``FieldNameTranslators``:
``API_KEY_FIELD_NAME_TRANSLATORS``, ``ROLE_FIELD_NAME_TRANSLATORS``,
``USER_FIELD_NAME_TRANSLATORS``); a ``FieldSet`` is one such table.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Literal, Protocol

from rotator.sandbox.query_errors import illegal_argument

if TYPE_CHECKING:
    from rotator.sandbox.keyindex import FlatMetadata

__all__ = [
    "API_KEY_FIELDS",
    "Field",
    "FieldSet",
    "Kind",
    "Value",
    "is_pattern",
]

Kind = Literal["keyword", "date", "boolean", "text"]
#: A field value: keyword strings (text tokens), dates as epoch milliseconds, booleans.
Value = str | int | bool
Getter = Callable[[Any], Any]
Analyzer = Callable[[str], tuple[str, ...]]


class MetadataSource(Protocol):
    """What a field needs from the index: the flattened metadata of a document."""

    def flat_metadata(self, doc: Any) -> FlatMetadata: ...


@dataclass(frozen=True, slots=True)
class Field:
    """A field as a query API exposes it.

    Attributes:
        name: The query-level name (``expiration``, ``metadata.env``...).
        index_name: The index-level name (``expiration_time``, ``metadata_flattened.env``...),
            used in some error messages.
        kind: ``keyword``, ``date``, ``boolean`` or ``text`` (analyzed: its values are tokens).
        type_name: The mapping type Elasticsearch reports in errors.
        path: For ``metadata.<sub>``, the dotted sub-path; ``""`` for ``metadata`` itself.
        getter: Reads the raw value (a value, a list of values, or ``None``) from a document.
        ordered: Whether the index keeps an ordering on this field (ranges and walks use it).
        always: Whether every document has a value (``exists`` then matches everything).
        sortable: Whether the translator allows sorting on it.
        analyzer: For text fields, how a value and a query string become tokens.
        multi: Whether a document may hold several values (an array of keywords).
    """

    name: str
    index_name: str
    kind: Kind
    type_name: str
    path: str | None = None
    getter: Getter | None = None
    ordered: bool = False
    always: bool = False
    sortable: bool = True
    analyzer: Analyzer | None = None
    multi: bool = False

    def values(self, doc: Any, index: MetadataSource) -> tuple[Value, ...]:
        """Return the doc values of this field (distinct, sorted for keywords and tokens)."""
        if self.path is not None:
            flat = index.flat_metadata(doc)
            return flat.root if self.path == "" else flat.keyed.get(self.path, ())
        assert self.getter is not None
        raw = self.getter(doc)
        if raw is None:
            return ()
        items: list[Any] = list(raw) if isinstance(raw, list | tuple) else [raw]
        if self.analyzer is not None:
            return tuple(sorted({t for item in items for t in self.analyzer(str(item))}))
        if len(items) == 1:
            return (items[0],)
        return tuple(sorted(set(items)))

    def single(self) -> Callable[[Any], Value | None] | None:
        """Return a fast getter when the field has at most one value per doc, else ``None``."""
        if self.path is not None or self.analyzer is not None or self.multi:
            return None
        return self.getter


class FieldSet:
    """The fields one query API allows, with the flattened ``metadata`` field.

    Args:
        fields: The plain fields.
        metadata: Whether ``metadata`` and its sub-fields are queryable (a flattened field).
    """

    def __init__(self, fields: tuple[Field, ...], *, metadata: bool = True) -> None:
        """Create the table; see the class arguments."""
        table = {f.name: f for f in fields}
        if metadata:
            table["metadata"] = Field("metadata", "metadata_flattened", "keyword", "flattened", "")
        self.fields: Mapping[str, Field] = table
        self.metadata = metadata

    def lookup(self, name: str) -> Field | None:
        """Return the field named ``name`` (``metadata.<sub>`` included), or ``None``."""
        found = self.fields.get(name)
        if found is not None:
            return found
        if self.metadata and name.startswith("metadata."):
            sub = name[len("metadata.") :]
            return Field(name, f"metadata_flattened.{sub}", "keyword", "flattened", sub)
        return None

    def translate(self, name: str, *, sort: bool = False) -> Field:
        """Resolve a query-level field name, as ``FieldNameTranslators.translate`` does.

        Raises:
            QueryError: ``illegal_argument_exception`` for patterns, for fields that may not be
                queried, sorted or aggregated on (``id`` among them), and for sorting on a field
                whose mapping keeps no doc values (``full_name`` and ``email`` of users).
        """
        if is_pattern(name):
            raise illegal_argument(
                f"Field name pattern [{name}] is not allowed for querying or aggregation"
            )
        found = self.lookup(name)
        if found is None:
            raise illegal_argument(f"Field [{name}] is not allowed for querying or aggregation")
        if sort and not found.sortable:
            raise illegal_argument(f"sorting is not supported for field [{name}]")
        return found

    def translate_pattern(self, pattern: str) -> list[Field]:
        """Resolve a field name or pattern for ``simple_query_string``; unknown names: none.

        A pattern matches the top-level names only: ``metadata.*`` matches nothing, since the
        sub-fields of a flattened field cannot be listed, while ``meta*`` matches ``metadata``.
        """
        if not is_pattern(pattern):
            found = self.lookup(pattern)
            return [] if found is None else [found]
        return [f for name, f in self.fields.items() if _simple_match(pattern, name)]


def is_pattern(name: str) -> bool:
    """Tell whether a field name is a pattern (Elasticsearch's ``Regex.isSimpleMatchPattern``)."""
    return "*" in name


def _simple_match(pattern: str, text: str) -> bool:
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, text, flags=re.DOTALL) is not None


def _key_field(name: str, index_name: str, kind: Kind, **extra: Any) -> Field:
    return Field(name, index_name, kind, kind, getter=attrgetter(name), **extra)


API_KEY_FIELDS = FieldSet(
    (
        _key_field("username", "creator.principal", "keyword", always=True),
        _key_field("realm_name", "creator.realm", "keyword", always=True),
        _key_field("name", "name", "keyword", ordered=True),
        _key_field("type", "runtime_key_type", "keyword", always=True),
        _key_field("creation", "creation_time", "date", ordered=True, always=True),
        _key_field("expiration", "expiration_time", "date", ordered=True),
        _key_field("invalidated", "api_key_invalidated", "boolean", always=True),
        _key_field("invalidation", "invalidation_time", "date"),
    )
)
