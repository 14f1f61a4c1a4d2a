"""Sort specifications, sort keys, ``_sort`` values and ``search_after`` for the Query API."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import total_ordering
from typing import Any

from rotator.sandbox.docindex import SearchIndex
from rotator.sandbox.keyindex import Doc
from rotator.sandbox.query_dates import format_date, parse_date
from rotator.sandbox.query_dsl import token_name
from rotator.sandbox.query_errors import (
    illegal_argument,
    parsing,
    query_shard,
    unknown_field,
)
from rotator.sandbox.query_fields import Field, FieldSet, Value

__all__ = ["LONG_MAX", "LONG_MIN", "SortKeys", "SortSpec", "check_sort", "parse_sort"]

LONG_MAX = (1 << 63) - 1
LONG_MIN = -(1 << 63)
_DOC = "_doc"
_SORT_OPTIONS = ("order", "missing", "mode", "unmapped_type", "nested", "numeric_type", "format")


@dataclass(frozen=True, slots=True)
class SortSpec:
    """One sort clause as parsed from the request."""

    field: str
    descending: bool = False
    missing: Any = None
    mode: str | None = None
    format: str | None = None
    nested: bool = False


def _order(value: Any) -> bool:
    text = str(value).lower() if isinstance(value, str) else None
    if text == "asc":
        return False
    if text == "desc":
        return True
    raise illegal_argument(f"Unknown SortOrder [{value}]")


def _parse_one(item: Any) -> SortSpec:
    if isinstance(item, str):
        return SortSpec(item)
    if not isinstance(item, Mapping):
        raise illegal_argument("mal-formatted sort object")
    if len(item) != 1:
        raise parsing(
            "Failed to parse object: expecting token of type [END_OBJECT] but found [FIELD_NAME]"
        )
    ((name, options),) = item.items()
    if isinstance(options, str):
        return SortSpec(name, _order(options))
    if not isinstance(options, Mapping):
        raise parsing(f"[field_sort] Expected START_OBJECT but was: {token_name(options)}")
    for key in options:
        if key not in _SORT_OPTIONS:
            raise unknown_field("field_sort", key, _SORT_OPTIONS)
    mode = options.get("mode")
    if mode is not None and str(mode).lower() not in ("min", "max", "sum", "avg", "median"):
        raise illegal_argument(f"Unknown SortMode [{mode}]")
    fmt = options.get("format")
    return SortSpec(
        name,
        _order(options.get("order", "asc")),
        options.get("missing"),
        None if mode is None else str(mode).lower(),
        None if fmt is None else str(fmt),
        "nested" in options,
    )


def parse_sort(raw: Any) -> list[SortSpec]:
    """Parse the ``sort`` element of the body (an array, or a single string/object).

    Raises:
        QueryError: The parser's error (the caller wraps it as a failure of field ``sort``).
    """
    items = raw if isinstance(raw, list) else [raw]
    return [_parse_one(item) for item in items]


def check_sort(specs: Sequence[SortSpec], fields: FieldSet) -> None:
    """Refuse what ``FieldNameTranslators.translateFieldSortBuilders`` refuses.

    Raises:
        QueryError: ``illegal_argument_exception`` for nested sorts and disallowed fields.
    """
    for spec in specs:
        if spec.nested:
            raise illegal_argument("nested sorting is not currently supported in this context")
        if spec.field != _DOC:
            fields.translate(spec.field, sort=True)


@total_ordering
class _Rev:
    """A string that sorts in reverse."""

    __slots__ = ("v",)

    def __init__(self, v: str) -> None:
        self.v = v

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Rev) and self.v == other.v

    def __lt__(self, other: _Rev) -> bool:
        return other.v < self.v

    def __hash__(self) -> int:
        return hash(self.v)


Component = Any


@dataclass(frozen=True, slots=True)
class _Column:
    """How one sort clause orders keys and shows their ``_sort`` value."""

    spec: SortSpec
    field: Field | None
    key: Callable[[Doc], Component]
    shown: Callable[[Doc], Any]
    after: Callable[[Any], Component]


class SortKeys:
    """The compiled sort of a request: total order, ``_sort`` values and ``search_after``."""

    def __init__(self, specs: Sequence[SortSpec], index: SearchIndex, now_ms: int) -> None:
        """Compile ``specs`` (already checked) for ``index``.

        Raises:
            QueryError: Shard-side errors (custom formats on fields that take none...).
        """
        self.index = index
        self.now_ms = now_ms
        self.specs = list(specs)
        self.columns = [self._column(spec) for spec in specs]

    @property
    def primary(self) -> _Column | None:
        """The first sort column, if any."""
        return self.columns[0] if self.columns else None

    def key(self, doc: Doc) -> tuple[Component, ...]:
        """Return the full ordering key of ``doc`` (ties broken by ``seq``)."""
        return (*(c.key(doc) for c in self.columns), doc.seq)

    def values(self, doc: Doc) -> list[Any]:
        """Return the ``_sort`` values of ``doc``."""
        return [c.shown(doc) for c in self.columns]

    def after_key(self, values: Sequence[Any]) -> tuple[Component, ...]:
        """Convert ``search_after`` values to an ordering key prefix.

        Raises:
            QueryError: Shard-side errors (wrong number of values, unparsable values).
        """
        if not self.columns:
            raise illegal_argument("Sort must contain at least one field.")
        if len(values) != len(self.columns):
            raise illegal_argument(
                f"search_after has {len(values)} value(s) but sort has {len(self.columns)}."
            )
        return tuple(c.after(v) for c, v in zip(self.columns, values, strict=True))

    # -- columns ----------------------------------------------------------------------------

    def _column(self, spec: SortSpec) -> _Column:
        if spec.field == _DOC:
            return self._doc_column(spec)
        field = self.index.fields.translate(spec.field, sort=True)
        if field.kind == "text":
            raise illegal_argument(
                f"Fielddata is disabled on [{field.index_name}] in [.security-7]. Text fields are "
                "not optimised for operations that require per-document field data like "
                "aggregations and sorting, so these operations are disabled by default. Please use "
                "a keyword field instead. Alternatively, set fielddata=true on "
                f"[{field.index_name}] in order to load field data by uninverting the inverted "
                "index. Note that this can use significant memory."
            )
        if spec.format is not None and field.kind != "date":
            raise illegal_argument(
                f"Field [{field.index_name}] of type [{field.type_name}] does not support custom "
                "formats"
            )
        if spec.mode in ("sum", "avg", "median") and field.kind == "keyword":
            raise query_shard("we only support AVG, MEDIAN and SUM on number based fields")
        if field.kind == "keyword":
            return self._keyword_column(spec, field)
        return self._numeric_column(spec, field)

    def _doc_column(self, spec: SortSpec) -> _Column:
        sign = -1 if spec.descending else 1

        def after(value: Any) -> Component:
            try:
                number = int(value) if isinstance(value, int | float) else int(str(value))
            except ValueError as exc:
                raise illegal_argument(
                    "Failed to parse search_after value for field [null]."
                ) from exc
            return sign * number

        return _Column(spec, None, lambda d: sign * d.seq, lambda d: d.seq, after)

    def _pick(self, spec: SortSpec) -> Callable[[tuple[Value, ...]], Value]:
        use_max = spec.mode == "max" or (spec.mode is None and spec.descending)
        return max if use_max else min

    def _keyword_column(self, spec: SortSpec, field: Field) -> _Column:
        index = self.index
        pick = self._pick(spec)
        missing_first = spec.missing == "_first"
        custom = None if spec.missing in (None, "_last", "_first") else _text(spec.missing)
        present_rank, missing_rank = (1, 0) if missing_first else (0, 1)
        desc = spec.descending

        def raw(d: Doc) -> str | None:
            values = field.values(d, index)
            if values:
                return str(pick(values))
            return custom

        def component(text: str | None) -> Component:
            if text is None:
                return (missing_rank, _Rev("") if desc else "")
            return (present_rank, _Rev(text) if desc else text)

        def after(value: Any) -> Component:
            return component(None if value is None else _text(value))

        return _Column(spec, field, lambda d: component(raw(d)), raw, after)

    def _numeric_column(self, spec: SortSpec, field: Field) -> _Column:
        index = self.index
        pick = self._pick(spec)
        desc = spec.descending
        first = spec.missing == "_first"
        sentinel = LONG_MAX if desc == first else LONG_MIN
        if spec.missing not in (None, "_last", "_first"):
            sentinel = self._parse_number(field, spec.missing, spec)
        sign = -1 if desc else 1
        is_date = field.kind == "date"
        fmt = spec.format

        def raw(d: Doc) -> int:
            values = field.values(d, index)
            return int(pick(values)) if values else sentinel

        def shown(d: Doc) -> Any:
            value = raw(d)
            return format_date(value, fmt) if is_date and fmt is not None else value

        def after(value: Any) -> Component:
            if value is None:
                return sign * sentinel
            return sign * self._parse_number(field, value, spec)

        return _Column(spec, field, lambda d: sign * raw(d), shown, after)

    def _parse_number(self, field: Field, value: Any, spec: SortSpec) -> int:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
        text = _text(value)
        if field.kind == "boolean":
            if text in ("true", "false"):
                return int(text == "true")
            raise illegal_argument(
                f"Cannot parse boolean [{text}], expected either [true] or [false]"
            )
        if text.startswith("now"):
            raise illegal_argument("now() is not allowed in [search_after] key")
        return parse_date(text, now_ms=self.now_ms, round_up=False, fmt=spec.format)

    # -- walking an ordering ----------------------------------------------------------------

    def walk(
        self, after: tuple[Component, ...] | None, bounds: tuple[Any, Any] | None
    ) -> Iterator[list[Doc]]:
        """Yield groups of keys with equal primary value, in primary order.

        Only valid when the primary column is ``creation``, ``expiration`` or ``name`` with the
        default mode and ``_first``/``_last`` missing handling (see ``can_walk``).

        Args:
            after: The ``search_after`` key, to start near it.
            bounds: Inclusive ``(lo, hi)`` raw bounds on the primary field from the query.
        """
        column = self.columns[0]
        assert column.field is not None
        name = column.field.name
        desc = column.spec.descending
        lo, hi = bounds if bounds is not None else (None, None)
        if after is not None:
            start = self._raw_after(column, after[0])
            if start is _SKIP_PRESENT:
                lo, hi = (1, 0) if name != "name" else ("b", "a")
            elif start is not None:
                if desc:
                    hi = start if hi is None or start < hi else hi
                else:
                    lo = start if lo is None or start > lo else lo
        present = self._present(name, lo, hi, desc)
        missing_first = column.spec.missing == "_first"
        if missing_first:
            yield from self._missing_group(name)
        yield from _groups(present, column.field.single())
        if not missing_first:
            yield from self._missing_group(name)

    def in_date_order(self, after: tuple[Component, ...] | None) -> Iterator[Doc] | None:
        """The keys in this sort's exact order, from just after ``after``, when the sort is a
        date the index orders (ascending, every key has it) then ``_doc`` ascending: the index's
        own order. None otherwise, or when the index cannot seek.

        A page is then a seek and a walk of the page, however many keys share a date (keys made
        in the same millisecond, as a fleet provisioned at once has).
        """
        if len(self.columns) != 2:
            return None
        first, second = self.columns
        if (
            first.field is None
            or first.field.name != "creation"
            or first.spec.descending
            or first.spec.mode is not None
            or first.spec.missing not in (None, "_last")
            or first.spec.format is not None
            or second.spec.field != _DOC
            or second.spec.descending
        ):
            return None
        if after is None:
            return self.index.date_order_after("creation", None, 0)
        value, seq = after
        if not isinstance(value, int) or not isinstance(seq, int):
            return None
        return self.index.date_order_after("creation", value, seq)

    def can_walk(self) -> bool:
        """Tell whether the primary column can be walked through an index ordering."""
        column = self.primary
        return (
            column is not None
            and column.field is not None
            and column.field.ordered
            and column.spec.mode is None
            and column.spec.missing in (None, "_last", "_first")
        )

    def _raw_after(self, column: _Column, component: Component) -> Any:
        spec = column.spec
        if column.field is not None and column.field.kind == "keyword":
            rank, value = component
            missing_rank = 0 if spec.missing == "_first" else 1
            if rank == missing_rank:
                return _SKIP_PRESENT if missing_rank == 1 else None
            return value.v if isinstance(value, _Rev) else value
        raw = -component if spec.descending else component
        sentinel_last = LONG_MIN if spec.descending else LONG_MAX
        if spec.missing != "_first" and raw == sentinel_last:
            return _SKIP_PRESENT
        return raw

    def _present(self, name: str, lo: Any, hi: Any, desc: bool) -> Iterator[Doc]:
        if name == "name":
            return self.index.name_range(lo, hi, reverse=desc)
        return self.index.date_range(name, lo, hi, reverse=desc)

    def _missing_group(self, name: str) -> Iterator[list[Doc]]:
        group = list(self.index.missing(name))
        if group:
            yield group


_SKIP_PRESENT = object()


def _groups(
    docs: Iterator[Doc], getter: Callable[[Doc], Value | None] | None
) -> Iterator[list[Doc]]:
    assert getter is not None
    group: list[Doc] = []
    current: Value | None = None
    for doc in docs:
        value = getter(doc)
        if group and value != current:
            yield group
            group = []
        current = value
        group.append(doc)
    if group:
        yield group


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
