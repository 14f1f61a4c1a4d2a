"""The indexed collection of API keys that the Query API keys engine runs over."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from sortedcontainers import SortedKeyList  # type: ignore[import-untyped,unused-ignore]

from rotator.sandbox.query_fields import API_KEY_FIELDS, FieldSet

__all__ = [
    "SEQ_SPAN",
    "Doc",
    "FlatMetadata",
    "KeyIndex",
    "QueryDoc",
    "flatten_metadata",
]

#: ``seq`` must stay below this bound: date orderings pack ``value * SEQ_SPAN + seq`` into one int.
SEQ_SPAN = 1 << 40
_MEMO_SIZE = 256

_T = TypeVar("_T")
_K = TypeVar("_K", contravariant=True)


class _Sorted(Protocol[_T, _K]):
    """The typed subset of ``SortedKeyList`` this module uses."""

    def add(self, value: _T) -> None: ...

    def remove(self, value: _T) -> None: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[_T]: ...

    def irange_key(
        self,
        min_key: _K | None = None,
        max_key: _K | None = None,
        inclusive: tuple[bool, bool] = (True, True),
        reverse: bool = False,
    ) -> Iterator[_T]: ...

    def bisect_key_left(self, key: _K) -> int: ...

    def bisect_key_right(self, key: _K) -> int: ...


def _sorted_list(key: Callable[[_T], _K]) -> _Sorted[_T, _K]:
    return cast("_Sorted[_T, _K]", SortedKeyList(key=key))


class Doc(Protocol):
    """What the query engine needs of any searchable document (API key, role or user)."""

    @property
    def id(self) -> str:
        """The document id."""
        ...

    @property
    def seq(self) -> int:
        """Insertion order: the ``_doc`` order and the tiebreak between equal sort values."""
        ...

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata object (queried as a flattened field)."""
        ...


@dataclass(frozen=True, slots=True)
class QueryDoc:
    """The query-visible fields of one API key.

    Attributes:
        id: The key id (only reachable through the ``ids`` query).
        name: The key name; ``None`` for legacy unnamed keys.
        type: ``"rest"`` or ``"cross_cluster"``.
        creation: Creation time, epoch milliseconds.
        expiration: Expiration time, epoch milliseconds; ``None`` when the key never expires.
        invalidated: Whether the key was invalidated.
        invalidation: Invalidation time, epoch milliseconds, when known.
        username: The owner's principal.
        realm_name: The owner's realm name.
        metadata: The key's metadata object (queried as a flattened field).
        seq: Insertion order; the ``_doc`` order and the tiebreak between equal sort values.
    """

    id: str
    name: str | None
    type: str
    creation: int
    expiration: int | None
    invalidated: bool
    invalidation: int | None
    username: str
    realm_name: str
    metadata: dict[str, Any]
    seq: int


@dataclass(frozen=True, slots=True)
class FlatMetadata:
    """A key's metadata as Elasticsearch's ``flattened`` field type indexes it.

    Attributes:
        keyed: Dotted leaf path -> its distinct values, sorted (the doc values of
            ``metadata_flattened.<path>``).
        root: Every distinct leaf value, sorted (the doc values of ``metadata_flattened``).
    """

    keyed: dict[str, tuple[str, ...]]
    root: tuple[str, ...]


def _leaf_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return str(value)


def _walk(value: Any, path: str, out: dict[str, set[str]]) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _walk(sub, f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, list):
        for item in value:
            _walk(item, path, out)
    else:
        text = _leaf_text(value)
        if text is not None:
            out.setdefault(path, set()).add(text)


def flatten_metadata(metadata: dict[str, Any]) -> FlatMetadata:
    """Index a metadata object the way a ``flattened`` field does: leaves become keyword strings.

    Args:
        metadata: The API key's metadata.

    Returns:
        The keyed values per dotted path and the root values.
    """
    found: dict[str, set[str]] = {}
    _walk(metadata, "", found)
    keyed = {path: tuple(sorted(values)) for path, values in found.items()}
    root = tuple(sorted({v for values in found.values() for v in values}))
    return FlatMetadata(keyed, root)


def _date_key(value: int, seq: int) -> int:
    return value * SEQ_SPAN + seq


class KeyIndex:
    """API keys kept in the orderings the Query API needs.

    Orderings by ``creation``, ``expiration`` and ``name`` (ties broken by ``seq``) make a sorted,
    filtered page with ``search_after`` a bisect plus a short walk, and a ``range`` count on those
    fields a pair of bisects.
    """

    def __init__(self, docs: Iterable[QueryDoc] = ()) -> None:
        """Create an index, optionally filled with ``docs``."""
        self.fields: FieldSet = API_KEY_FIELDS
        self._docs: dict[str, QueryDoc] = {}
        self._by_seq = _sorted_list(_seq_of)
        self._by_creation = _sorted_list(_creation_key)
        self._by_expiration = _sorted_list(_expiration_key)
        self._no_expiration = _sorted_list(_seq_of)
        self._by_name = _sorted_list(_name_key)
        self._no_name = _sorted_list(_seq_of)
        self._flat: dict[str, FlatMetadata] = {}
        self._memo: dict[Hashable, Any] = {}
        self._memo_version = 0
        self.version = 0
        for doc in docs:
            self.add(doc)

    def add(self, doc: QueryDoc) -> None:
        """Add a key.

        Raises:
            ValueError: When the id is already present or ``seq`` is out of range.
        """
        if doc.id in self._docs:
            raise ValueError(f"API key [{doc.id}] is already indexed")
        if not 0 <= doc.seq < SEQ_SPAN:
            raise ValueError(f"seq [{doc.seq}] out of range")
        self._docs[doc.id] = doc
        self._insert(doc)
        self.version += 1

    def replace(self, doc: QueryDoc) -> None:
        """Replace the key with the same id (after invalidation or an update).

        Raises:
            KeyError: When no key has that id.
        """
        old = self._docs[doc.id]
        if not 0 <= doc.seq < SEQ_SPAN:
            raise ValueError(f"seq [{doc.seq}] out of range")
        self._discard(old)
        self._docs[doc.id] = doc
        self._insert(doc)
        self.version += 1

    def remove(self, key_id: str) -> None:
        """Remove a key (the remover deleted it).

        Raises:
            KeyError: When no key has that id.
        """
        self._discard(self._docs.pop(key_id))
        self.version += 1

    def get(self, key_id: str) -> QueryDoc | None:
        """Return the key with that id, if any."""
        return self._docs.get(key_id)

    def __len__(self) -> int:
        """Return the number of keys."""
        return len(self._docs)

    def __iter__(self) -> Iterator[QueryDoc]:
        """Iterate over the keys in ``seq`` order."""
        return iter(self._by_seq)

    def __contains__(self, key_id: object) -> bool:
        """Tell whether a key with that id is indexed."""
        return key_id in self._docs

    def flat_metadata(self, doc: Doc) -> FlatMetadata:
        """Return the flattened metadata of ``doc``, computed once and cached."""
        cached = self._flat.get(doc.id)
        if cached is None:
            cached = flatten_metadata(doc.metadata)
            self._flat[doc.id] = cached
        return cached

    def memo(self, key: Hashable, compute: Callable[[], _T]) -> _T:
        """Return ``compute()``, remembered under ``key`` until the index next changes.

        The query engine keeps query totals here, so that paging through a large result with
        ``search_after`` counts the matches once rather than once per page.
        """
        if self._memo_version != self.version or len(self._memo) >= _MEMO_SIZE:
            self._memo.clear()
            self._memo_version = self.version
        if key in self._memo:
            return cast("_T", self._memo[key])
        value = compute()
        self._memo[key] = value
        return value

    def date_range(
        self, field: str, lo: int | None, hi: int | None, *, reverse: bool = False
    ) -> Iterator[QueryDoc]:
        """Iterate over keys whose ``creation`` or ``expiration`` lies in ``[lo, hi]``.

        Args:
            field: ``"creation"`` or ``"expiration"``.
            lo: Inclusive lower bound, or ``None`` for unbounded.
            hi: Inclusive upper bound, or ``None`` for unbounded.
            reverse: Walk from the highest value down (ties still in ``seq`` order per value
                group is the caller's job).

        Returns:
            The keys in value order, ties by ``seq``. Keys missing the field are not included.
        """
        ordering = self._date_ordering(field)
        min_key = None if lo is None else _date_key(lo, 0)
        max_key = None if hi is None else _date_key(hi, SEQ_SPAN - 1)
        return ordering.irange_key(min_key, max_key, reverse=reverse)

    def date_order_after(
        self, field: str, value: int | None, seq: int
    ) -> Iterator[QueryDoc] | None:
        """Keys with ``field`` in (value, seq) order, strictly after ``(value, seq)``: a seek,
        however many keys share ``value``."""
        ordering = self._date_ordering(field)
        if value is None:
            return iter(ordering)
        if not 0 <= seq < SEQ_SPAN:  # not a position this ordering can seek to
            return None
        return ordering.irange_key(_date_key(value, seq), None, inclusive=(False, True))

    def count_date_range(self, field: str, lo: int | None, hi: int | None) -> int:
        """Count keys whose ``creation`` or ``expiration`` lies in ``[lo, hi]`` (inclusive)."""
        ordering = self._date_ordering(field)
        if lo is not None and hi is not None and lo > hi:
            return 0
        start = 0 if lo is None else ordering.bisect_key_left(_date_key(lo, 0))
        end = (
            len(ordering) if hi is None else ordering.bisect_key_right(_date_key(hi, SEQ_SPAN - 1))
        )
        return max(0, end - start)

    def name_range(
        self,
        lo: str | None,
        hi: str | None,
        *,
        inclusive: tuple[bool, bool] = (True, True),
        reverse: bool = False,
    ) -> Iterator[QueryDoc]:
        """Iterate over named keys whose name lies between ``lo`` and ``hi``, in name order."""
        min_key = None if lo is None else (lo, -1 if inclusive[0] else SEQ_SPAN)
        max_key = None if hi is None else (hi, SEQ_SPAN if inclusive[1] else -1)
        return self._by_name.irange_key(min_key, max_key, reverse=reverse)

    def count_name_range(
        self, lo: str | None, hi: str | None, *, inclusive: tuple[bool, bool] = (True, True)
    ) -> int:
        """Count named keys whose name lies between ``lo`` and ``hi``."""
        start = (
            0
            if lo is None
            else self._by_name.bisect_key_left((lo, -1 if inclusive[0] else SEQ_SPAN))
        )
        end = (
            len(self._by_name)
            if hi is None
            else self._by_name.bisect_key_right((hi, SEQ_SPAN if inclusive[1] else -1))
        )
        return max(0, end - start)

    def missing(self, field: str) -> Iterator[QueryDoc]:
        """Iterate, in ``seq`` order, over keys without ``expiration`` or without ``name``."""
        if field == "expiration":
            return iter(self._no_expiration)
        if field == "name":
            return iter(self._no_name)
        if field == "creation":
            return iter(())
        raise ValueError(f"field [{field}] has no ordering")

    def count_missing(self, field: str) -> int:
        """Count keys without ``expiration`` or without ``name``."""
        if field == "expiration":
            return len(self._no_expiration)
        if field == "name":
            return len(self._no_name)
        return 0

    def _date_ordering(self, field: str) -> _Sorted[QueryDoc, int]:
        if field == "creation":
            return self._by_creation
        if field == "expiration":
            return self._by_expiration
        raise ValueError(f"field [{field}] has no date ordering")

    def _insert(self, doc: QueryDoc) -> None:
        self._by_seq.add(doc)
        self._by_creation.add(doc)
        if doc.expiration is None:
            self._no_expiration.add(doc)
        else:
            self._by_expiration.add(doc)
        if doc.name is None:
            self._no_name.add(doc)
        else:
            self._by_name.add(doc)

    def _discard(self, doc: QueryDoc) -> None:
        self._flat.pop(doc.id, None)
        self._by_seq.remove(doc)
        self._by_creation.remove(doc)
        if doc.expiration is None:
            self._no_expiration.remove(doc)
        else:
            self._by_expiration.remove(doc)
        if doc.name is None:
            self._no_name.remove(doc)
        else:
            self._by_name.remove(doc)


def _seq_of(doc: QueryDoc) -> int:
    return doc.seq


def _creation_key(doc: QueryDoc) -> int:
    return _date_key(doc.creation, doc.seq)


def _expiration_key(doc: QueryDoc) -> int:
    assert doc.expiration is not None
    return _date_key(doc.expiration, doc.seq)


def _name_key(doc: QueryDoc) -> tuple[str, int]:
    assert doc.name is not None
    return (doc.name, doc.seq)
