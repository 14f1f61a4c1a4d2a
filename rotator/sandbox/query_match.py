"""Compiling a parsed query into a predicate over keys, plus the index range it is confined to."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rotator.sandbox.docindex import SearchIndex
from rotator.sandbox.keyindex import Doc
from rotator.sandbox.query_dates import parse_date, parse_zone
from rotator.sandbox.query_dsl import (
    QBool,
    QExists,
    QIds,
    QMatch,
    QMatchAll,
    QNode,
    QPrefix,
    QRange,
    QSimple,
    QTerm,
    QTerms,
    QWildcard,
)
from rotator.sandbox.query_errors import QueryError, illegal_argument, query_shard
from rotator.sandbox.query_fields import Field, Value
from rotator.sandbox.query_sqs import SAll, SBool, SNode, SNot, STerm, parse_simple

__all__ = ["Hint", "Matcher", "Pred", "compile_query", "min_should_match"]

Pred = Callable[[Doc], bool]


def _all(_: Doc) -> bool:
    return True


def _none(_: Doc) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class Hint:
    """Every match has ``field`` within ``[lo, hi]`` (bounds inclusive unless flagged)."""

    field: str
    lo: int | str | None
    hi: int | str | None
    lo_inc: bool = True
    hi_inc: bool = True


@dataclass(frozen=True, slots=True)
class Matcher:
    """A compiled query.

    Attributes:
        pred: Whether a key matches.
        hint: An index range every match lies in, when known.
        exact: Whether matching is exactly "lies in ``hint``" (or, without hint, everything).
        dates: Every date the query resolved (date math included): with the query itself, what
            decides which keys match.
    """

    pred: Pred
    hint: Hint | None = None
    exact: bool = False
    dates: tuple[int, ...] = ()


_EVERYTHING = Matcher(_all, None, True)
_NOTHING = Matcher(_none, Hint("creation", 1, 0), True)


class _Compiler:
    def __init__(self, index: SearchIndex, now_ms: int) -> None:
        self.index = index
        self.fields = index.fields
        self.now_ms = now_ms
        self.resolved: list[int] = []

    def compile(self, node: QNode, filter_ctx: bool = False) -> Matcher:
        if isinstance(node, QBool):
            return self.bool_(node, filter_ctx)
        if isinstance(node, QMatchAll):
            return _EVERYTHING
        if isinstance(node, QIds):
            ids = frozenset(node.values)
            return Matcher(lambda d: d.id in ids)
        if isinstance(node, QTerm):
            return self.term(self.fields.translate(node.field), node.value, node.case_insensitive)
        if isinstance(node, QTerms):
            return self.terms(self.fields.translate(node.field), node.values)
        if isinstance(node, QPrefix):
            return self.prefix(self.fields.translate(node.field), node.value, node.case_insensitive)
        if isinstance(node, QWildcard):
            return self.wildcard(
                self.fields.translate(node.field), node.value, node.case_insensitive
            )
        if isinstance(node, QExists):
            return self.exists(self.fields.translate(node.field))
        if isinstance(node, QRange):
            return self.range_(node)
        if isinstance(node, QMatch):
            return self.match(node)
        if isinstance(node, QSimple):
            return self.simple(node)
        raise illegal_argument(f"Query type [{node}] is not currently supported in this context")

    # -- value predicates -------------------------------------------------------------------

    def on_values(self, field: Field, test: Callable[[Value], bool]) -> Pred:
        single = field.single()
        if single is not None:
            getter = single

            def pred(d: Doc) -> bool:
                v = getter(d)
                return v is not None and test(v)

            return pred
        index = self.index
        return lambda d: any(test(v) for v in field.values(d, index))

    def equals(self, field: Field, wanted: Value) -> Pred:
        getter = field.single()
        if getter is None:
            return self.on_values(field, lambda v: v == wanted)
        get = getter
        return lambda d: get(d) == wanted

    def exists(self, field: Field) -> Matcher:
        if field.always:
            return _EVERYTHING
        if field.ordered:
            return Matcher(
                self.on_values(field, lambda _: True), Hint(field.name, None, None), True
            )
        return Matcher(self.on_values(field, lambda _: True))

    def term(self, field: Field, value: object, case_insensitive: bool = False) -> Matcher:
        if field.kind in ("keyword", "text"):
            text = _keyword(value)
            if case_insensitive:
                low = text.lower()
                return Matcher(self.on_values(field, lambda v: str(v).lower() == low))
            hint = Hint(field.name, text, text) if field.ordered else None
            return Matcher(self.equals(field, text), hint, hint is not None)
        if field.kind == "boolean":
            return Matcher(self.equals(field, _boolean(value)))
        lo = self.date(str(_keyword(value)), False)
        hi = self.date(str(_keyword(value)), True)
        return self.date_between(field, lo, hi)

    def terms(self, field: Field, values: Sequence[object]) -> Matcher:
        if not values:
            return _NOTHING
        if field.kind in ("keyword", "text"):
            wanted: frozenset[Value] = frozenset(_keyword(v) for v in values)
        elif field.kind == "boolean":
            wanted = frozenset(_boolean(v) for v in values)
        else:
            parts = [self.term(field, v) for v in values]
            preds = [p.pred for p in parts]
            return Matcher(lambda d: any(p(d) for p in preds))
        return Matcher(self.on_values(field, lambda v: v in wanted))

    def date(
        self, text: str, round_up: bool, fmt: str | None = None, zone: str | None = None
    ) -> int:
        tz = None if zone is None else parse_zone(zone)
        value = parse_date(text, now_ms=self.now_ms, round_up=round_up, fmt=fmt, zone=tz)
        self.resolved.append(value)
        return value

    def date_between(self, field: Field, lo: int | None, hi: int | None) -> Matcher:
        lo_v = -math.inf if lo is None else lo
        hi_v = math.inf if hi is None else hi
        getter = field.single()
        if getter is not None:
            get = getter

            def pred(d: Doc) -> bool:
                v = get(d)
                return v is not None and lo_v <= v <= hi_v  # type: ignore[operator]

        else:
            pred = self.on_values(field, lambda v: lo_v <= v <= hi_v)  # type: ignore[operator,assignment]
        if field.ordered:
            return Matcher(pred, Hint(field.name, lo, hi), True)
        return Matcher(pred)

    def _text_only(self, field: Field, kind: str) -> None:
        if field.kind not in ("keyword", "text"):
            raise query_shard(
                f"Can only use {kind} queries on keyword, text and wildcard fields - not on "
                f"[{field.index_name}] which is of type [{field.type_name}]"
            )

    def prefix(self, field: Field, value: str, case_insensitive: bool) -> Matcher:
        self._text_only(field, "prefix")
        if case_insensitive:
            low = value.lower()
            return Matcher(self.on_values(field, lambda v: str(v).lower().startswith(low)))
        hint = Hint(field.name, value, None) if field.ordered else None
        return Matcher(self.on_values(field, lambda v: str(v).startswith(value)), hint)

    def wildcard(self, field: Field, value: str, case_insensitive: bool) -> Matcher:
        self._text_only(field, "wildcard")
        regex = _wildcard_regex(value, case_insensitive)
        return Matcher(self.on_values(field, lambda v: regex.fullmatch(str(v)) is not None))

    def fuzzy(self, field: Field, value: str, edits: int) -> Matcher:
        if field.kind not in ("keyword", "text"):
            raise query_shard(
                f"Can only use fuzzy queries on keyword and text fields - not on "
                f"[{field.index_name}] which is of type [{field.type_name}]"
            )
        return Matcher(self.on_values(field, lambda v: _osa(str(v), value) <= edits))

    def range_(self, node: QRange) -> Matcher:
        field = self.fields.translate(node.field)
        if field.kind == "date":
            lo = hi = None
            if node.lower is not None:
                lo = self.date(
                    _keyword(node.lower), not node.include_lower, node.format, node.time_zone
                )
                lo += 0 if node.include_lower else 1
            if node.upper is not None:
                hi = self.date(
                    _keyword(node.upper), node.include_upper, node.format, node.time_zone
                )
                hi -= 0 if node.include_upper else 1
            return self.date_between(field, lo, hi)
        if field.kind == "boolean":
            lo_b = (
                None if node.lower is None else int(_boolean(node.lower)) + (not node.include_lower)
            )
            hi_b = (
                None if node.upper is None else int(_boolean(node.upper)) - (not node.include_upper)
            )
            low = -1 if lo_b is None else lo_b
            high = 2 if hi_b is None else hi_b
            return Matcher(self.on_values(field, lambda v: low <= int(v) <= high))
        return self.keyword_range(field, node)

    def keyword_range(self, field: Field, node: QRange) -> Matcher:
        lo = None if node.lower is None else _keyword(node.lower)
        hi = None if node.upper is None else _keyword(node.upper)
        inc_lo, inc_hi = node.include_lower, node.include_upper

        def test(v: Value) -> bool:
            s = str(v)
            if lo is not None and (s < lo or (s == lo and not inc_lo)):
                return False
            return not (hi is not None and (s > hi or (s == hi and not inc_hi)))

        pred = self.on_values(field, test)
        if field.ordered:
            return Matcher(pred, Hint(field.name, lo, hi, inc_lo, inc_hi), True)
        return Matcher(pred)

    def match(self, node: QMatch) -> Matcher:
        field = self.fields.translate(node.field)
        text = _keyword(node.query)
        if field.analyzer is not None:
            return self.analyzed(field, text, node.zero_terms_all)
        if field.kind == "keyword" and text == "":
            return _EVERYTHING if node.zero_terms_all else _NOTHING
        edits = _fuzziness(node.fuzziness, text) if field.kind == "keyword" else 0
        try:
            if edits:
                return self.fuzzy(field, text, edits)
            return self.term(field, node.query)
        except QueryError:
            if node.lenient:
                return _NOTHING
            raise

    # -- simple_query_string ----------------------------------------------------------------

    def simple(self, node: QSimple) -> Matcher:
        requested = node.fields or ("*",)
        lenient = True if "*" in requested else bool(node.lenient)
        fields: dict[str, Field] = {}
        for name in requested:
            for f in self.fields.translate_pattern(name):
                fields.setdefault(f.name, f)
        if not fields:
            return _NOTHING
        tree = parse_simple(node.query, flags=node.flags, default_and=node.default_and)
        if tree is None:
            return _NOTHING
        pred = self.sqs(tree, list(fields.values()), lenient)
        if pred is None:
            return _NOTHING
        if (
            node.minimum_should_match is not None
            and isinstance(tree, SBool)
            and tree.occur == "should"
        ):
            preds = [self.sqs(c, list(fields.values()), lenient) or _none for c in tree.clauses]
            needed = min_should_match(len(preds), node.minimum_should_match)
            if needed > 0:
                return Matcher(lambda d: sum(1 for p in preds if p(d)) >= needed)
        return Matcher(pred)

    def sqs(self, node: SNode, fields: list[Field], lenient: bool) -> Pred | None:
        if isinstance(node, SAll):
            return _all
        if isinstance(node, SNot):
            inner = self.sqs(node.node, fields, lenient)
            if inner is None:
                return _all
            return lambda d: not inner(d)
        if isinstance(node, SBool):
            parts = [p for p in (self.sqs(c, fields, lenient) for c in node.clauses) if p]
            if not parts:
                return None
            if node.occur == "must":
                return lambda d: all(p(d) for p in parts)
            return lambda d: any(p(d) for p in parts)
        preds: list[Pred] = []
        for field in fields:
            try:
                preds.append(self.sqs_term(field, node).pred)
            except QueryError:
                if not lenient:
                    raise
        if not preds:
            return None
        return lambda d: any(p(d) for p in preds)

    def sqs_term(self, field: Field, term: STerm) -> Matcher:
        if term.prefix:
            return self.prefix(field, term.text, False)
        if term.fuzziness:
            return self.fuzzy(field, term.text, term.fuzziness)
        if field.analyzer is not None:
            return self.analyzed(field, term.text, False)
        return self.term(field, term.text)

    def analyzed(self, field: Field, text: str, zero_terms_all: bool) -> Matcher:
        """Match a text field: the text's tokens, any of them (the ``or`` operator)."""
        assert field.analyzer is not None
        tokens = frozenset(field.analyzer(text))
        if not tokens:
            return _EVERYTHING if zero_terms_all else _NOTHING
        return Matcher(self.on_values(field, lambda v: v in tokens))

    # -- bool -------------------------------------------------------------------------------

    def bool_(self, node: QBool, filter_ctx: bool) -> Matcher:
        required = [self.compile(c, filter_ctx) for c in node.must]
        required += [self.compile(c, True) for c in node.filter]
        excluded = [self.compile(c, True).pred for c in node.must_not]
        optional = [self.compile(c, filter_ctx).pred for c in node.should]
        msm_spec = node.minimum_should_match
        if msm_spec is None and filter_ctx and optional:
            msm_spec = "1"
        needed = min_should_match(len(optional), msm_spec) if msm_spec is not None else 0
        if msm_spec is None and optional and not required:
            needed = 1
        if needed > len(optional):
            return _NOTHING
        preds = [m.pred for m in required]
        pred = _conjunction(preds, excluded, optional if needed else [], needed)
        hint, exact = _merge_hints(required)
        exact = exact and not excluded and not needed
        if not required and not excluded and not optional:
            return _EVERYTHING
        return Matcher(pred, hint, exact)


def _conjunction(
    required: list[Pred], excluded: list[Pred], optional: list[Pred], needed: int
) -> Pred:
    if not excluded and not optional:
        if len(required) == 1:
            return required[0]
        if len(required) == 2:
            first, second = required
            return lambda d: first(d) and second(d)

    def pred(d: Doc) -> bool:
        for p in required:
            if not p(d):
                return False
        for p in excluded:
            if p(d):
                return False
        if needed:
            count = 0
            for p in optional:
                if p(d):
                    count += 1
                    if count >= needed:
                        return True
            return False
        return True

    return pred


def _merge_hints(required: list[Matcher]) -> tuple[Hint | None, bool]:
    hints = [m.hint for m in required if m.hint is not None]
    if not hints:
        return None, all(m.exact and m.hint is None for m in required)
    field = hints[0].field
    same = [h for h in hints if h.field == field]
    merged = same[0]
    for h in same[1:]:
        merged = _intersect(merged, h)
    exact = len(same) == len(required) and all(m.exact for m in required)
    return merged, exact


def _intersect(a: Hint, b: Hint) -> Hint:
    lo, lo_inc = a.lo, a.lo_inc
    if b.lo is not None and (lo is None or b.lo > lo or (b.lo == lo and not b.lo_inc)):  # type: ignore[operator]
        lo, lo_inc = b.lo, b.lo_inc
    hi, hi_inc = a.hi, a.hi_inc
    if b.hi is not None and (hi is None or b.hi < hi or (b.hi == hi and not b.hi_inc)):  # type: ignore[operator]
        hi, hi_inc = b.hi, b.hi_inc
    return Hint(a.field, lo, hi, lo_inc, hi_inc)


def min_should_match(optional: int, spec: str | None) -> int:
    """Compute how many optional clauses must match (``Queries.calculateMinShouldMatch``).

    Raises:
        QueryError: ``illegal_argument_exception`` for a malformed specification.
    """
    if spec is None:
        return 0
    try:
        return max(0, _msm(optional, spec.strip()))
    except ValueError as exc:
        raise illegal_argument(f'For input string: "{spec}"') from exc


def _msm(optional: int, spec: str) -> int:
    result = optional
    if "<" in spec:
        spec = re.sub(r"\s*<\s*", "<", spec)
        for part in spec.split():
            bound, _, rest = part.partition("<")
            if optional <= int(bound):
                return result
            result = _msm(optional, rest)
        return result
    if spec.endswith("%"):
        percent = int(spec[:-1])
        calc = result * percent / 100
        return result + int(calc) if calc < 0 else int(calc)
    calc_int = int(spec)
    return result + calc_int if calc_int < 0 else calc_int


def _keyword(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = _keyword(value)
    if text in ("true", "false", ""):
        return text == "true"
    raise illegal_argument(f"Can't parse boolean value [{text}], expected [true] or [false]")


def _wildcard_regex(pattern: str, case_insensitive: bool) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if case_insensitive else 0))


def _fuzziness(raw: object, text: str) -> int:
    if raw is None:
        return 0
    spec = _keyword(raw).upper()
    if spec.startswith("AUTO"):
        low, high = 3, 6
        if ":" in spec:
            bounds = spec.split(":", 1)[1].split(",")
            low, high = int(bounds[0]), int(bounds[1])
        return 0 if len(text) < low else 1 if len(text) < high else 2
    return min(2, int(float(spec)))


def _osa(a: str, b: str) -> int:
    """Optimal string alignment distance (Levenshtein with adjacent transpositions)."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def compile_query(node: QNode | None, index: SearchIndex, now_ms: int) -> Matcher:
    """Compile a checked query (``None`` meaning ``match_all``) against ``index``.

    Raises:
        QueryError: What the shard raises while building the query (unparsable dates, prefix
            queries on dates...), not yet wrapped as a search-phase failure.
    """
    if node is None:
        return _EVERYTHING
    compiler = _Compiler(index, now_ms)
    matcher = compiler.compile(node)
    return Matcher(matcher.pred, matcher.hint, matcher.exact, tuple(compiler.resolved))
