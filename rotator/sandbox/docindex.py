"""A small searchable collection of roles or users for the query role and query user APIs.

The query engine runs over a ``SearchIndex``: the API keys' ``KeyIndex`` (kept up to date, with
orderings), or a ``DocIndex`` built from the current roles or users for one request.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from rotator.sandbox.keyindex import Doc, FlatMetadata, flatten_metadata
from rotator.sandbox.query_fields import FieldSet

__all__ = ["DocIndex", "SearchIndex"]

_T = TypeVar("_T")


class SearchIndex(Protocol):
    """What the query engine needs of the documents it searches.

    The range methods serve fields marked ``ordered`` in ``fields``; an index without such
    fields answers them by scanning.
    """

    fields: FieldSet
    version: int

    def __iter__(self) -> Iterator[Doc]: ...

    def __len__(self) -> int: ...

    def flat_metadata(self, doc: Doc) -> FlatMetadata: ...

    def memo(self, key: Hashable, compute: Callable[[], _T]) -> _T: ...

    def date_range(
        self, field: str, lo: int | None, hi: int | None, *, reverse: bool = False
    ) -> Iterator[Doc]: ...

    def count_date_range(self, field: str, lo: int | None, hi: int | None) -> int: ...

    def date_order_after(self, field: str, value: int | None, seq: int) -> Iterator[Doc] | None:
        """Docs with ``field`` in (value, seq) order, strictly after ``(value, seq)`` (from the
        start when ``value`` is None); None when the index keeps no such order."""
        ...

    def name_range(
        self,
        lo: str | None,
        hi: str | None,
        *,
        inclusive: tuple[bool, bool] = (True, True),
        reverse: bool = False,
    ) -> Iterator[Doc]: ...

    def count_name_range(
        self, lo: str | None, hi: str | None, *, inclusive: tuple[bool, bool] = (True, True)
    ) -> int: ...

    def missing(self, field: str) -> Iterator[Doc]: ...

    def count_missing(self, field: str) -> int: ...


class DocIndex:
    """Documents in ``seq`` order, searched by scanning (roles and users are few).

    Args:
        fields: The fields the query API allows on these documents.
        docs: The documents, each with ``id``, ``seq`` and ``metadata``.
    """

    def __init__(self, fields: FieldSet, docs: Iterable[Doc]) -> None:
        """Create the index; see the class arguments."""
        self.fields = fields
        self.version = 0
        self._docs = sorted(docs, key=lambda d: d.seq)
        self._flat: dict[str, FlatMetadata] = {}

    def __iter__(self) -> Iterator[Doc]:
        """Iterate over the documents in ``seq`` order."""
        return iter(self._docs)

    def __len__(self) -> int:
        """Return the number of documents."""
        return len(self._docs)

    def flat_metadata(self, doc: Doc) -> FlatMetadata:
        """Return the flattened metadata of ``doc``, computed once."""
        cached = self._flat.get(doc.id)
        if cached is None:
            cached = flatten_metadata(doc.metadata)
            self._flat[doc.id] = cached
        return cached

    def memo(self, key: Hashable, compute: Callable[[], _T]) -> _T:
        """Return ``compute()``: an index built for one request has nothing to remember."""
        del key
        return compute()

    def _between(self, field: str, lo: Any, hi: Any, inclusive: tuple[bool, bool]) -> list[Doc]:
        found = self.fields.translate(field)
        out = []
        for doc in self._docs:
            values = found.values(doc, self)
            if any(_inside(v, lo, hi, inclusive) for v in values):
                out.append(doc)
        return out

    def date_range(
        self, field: str, lo: int | None, hi: int | None, *, reverse: bool = False
    ) -> Iterator[Doc]:
        """Iterate, in ``seq`` order, over documents with a value of ``field`` in ``[lo, hi]``."""
        docs = self._between(field, lo, hi, (True, True))
        return reversed(docs) if reverse else iter(docs)

    def date_order_after(self, field: str, value: int | None, seq: int) -> Iterator[Doc] | None:
        """None: documents are kept in ``seq`` order only."""
        return None

    def count_date_range(self, field: str, lo: int | None, hi: int | None) -> int:
        """Count documents with a value of ``field`` in ``[lo, hi]``."""
        return len(self._between(field, lo, hi, (True, True)))

    def name_range(
        self,
        lo: str | None,
        hi: str | None,
        *,
        inclusive: tuple[bool, bool] = (True, True),
        reverse: bool = False,
    ) -> Iterator[Doc]:
        """Iterate over documents whose ``name`` lies between ``lo`` and ``hi``."""
        docs = self._between("name", lo, hi, inclusive)
        return reversed(docs) if reverse else iter(docs)

    def count_name_range(
        self, lo: str | None, hi: str | None, *, inclusive: tuple[bool, bool] = (True, True)
    ) -> int:
        """Count documents whose ``name`` lies between ``lo`` and ``hi``."""
        return len(self._between("name", lo, hi, inclusive))

    def missing(self, field: str) -> Iterator[Doc]:
        """Iterate, in ``seq`` order, over documents without a value of ``field``."""
        found = self.fields.translate(field)
        return (d for d in self._docs if not found.values(d, self))

    def count_missing(self, field: str) -> int:
        """Count documents without a value of ``field``."""
        return sum(1 for _ in self.missing(field))


def _inside(value: Any, lo: Any, hi: Any, inclusive: tuple[bool, bool]) -> bool:
    if lo is not None and (value < lo or (value == lo and not inclusive[0])):
        return False
    return not (hi is not None and (value > hi or (value == hi and not inclusive[1])))
