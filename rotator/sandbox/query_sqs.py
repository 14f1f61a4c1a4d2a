"""The ``simple_query_string`` syntax, parsed as Lucene's ``SimpleQueryParser`` parses it."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "AND",
    "ESCAPE",
    "FUZZY",
    "NEAR",
    "NOT",
    "OR",
    "PHRASE",
    "PRECEDENCE",
    "PREFIX",
    "WHITESPACE",
    "SAll",
    "SBool",
    "SNode",
    "SNot",
    "STerm",
    "parse_simple",
]

AND, NOT, OR, PREFIX, PHRASE, PRECEDENCE, ESCAPE, WHITESPACE, FUZZY, NEAR = (
    1,
    2,
    4,
    8,
    16,
    32,
    64,
    128,
    256,
    512,
)
_MAX_EDITS = 2
MUST, SHOULD = "must", "should"


@dataclass(frozen=True, slots=True)
class STerm:
    """One token: a term, a prefix (``foo*``), a fuzzy term (``foo~1``) or a phrase."""

    text: str
    prefix: bool = False
    fuzziness: int = 0
    phrase: bool = False


@dataclass(frozen=True, slots=True)
class SAll:
    """The whole query was ``*``: every document."""


@dataclass(frozen=True, slots=True)
class SNot:
    """A negated branch: every document but those matching ``node``."""

    node: SNode


@dataclass(slots=True)
class SBool:
    """Clauses joined by one operator (``must`` for AND, ``should`` for OR)."""

    occur: str
    clauses: list[SNode] = field(default_factory=list)


SNode = STerm | SAll | SNot | SBool


@dataclass(slots=True)
class _State:
    text: str
    index: int
    end: int
    top: SNode | None = None
    current: str | None = None
    previous: str | None = None
    nots: int = 0


_SPACES = " \t\n\r"


class _Parser:
    def __init__(self, flags: int, default_and: bool) -> None:
        self.flags = flags
        self.default = MUST if default_and else SHOULD

    def on(self, flag: int) -> bool:
        return bool(self.flags & flag)

    def parse(self, text: str) -> SNode | None:
        if text.strip() == "*":
            return SAll()
        state = _State(text, 0, len(text))
        self.sub_query(state)
        return state.top

    def sub_query(self, s: _State) -> None:
        while s.index < s.end:
            c = s.text[s.index]
            if c == "(" and self.on(PRECEDENCE):
                self.consume_sub(s)
            elif c == ")" and self.on(PRECEDENCE):
                s.index += 1
            elif c == '"' and self.on(PHRASE):
                self.consume_phrase(s)
            elif c in "+|" and self.on(AND if c == "+" else OR):
                if s.current is None and s.top is not None:
                    s.current = MUST if c == "+" else SHOULD
                s.index += 1
            elif c == "-" and self.on(NOT):
                s.nots += 1
                s.index += 1
                continue
            elif c in _SPACES and self.on(WHITESPACE):
                s.index += 1
            else:
                self.consume_token(s)
            s.nots = 0

    def consume_sub(self, s: _State) -> None:
        start = s.index = s.index + 1
        depth, escaped = 1, False
        while s.index < s.end:
            c = s.text[s.index]
            if not escaped:
                if c == "\\" and self.on(ESCAPE):
                    escaped = True
                    s.index += 1
                    continue
                if c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                    if depth == 0:
                        break
            escaped = False
            s.index += 1
        if s.index == s.end:
            s.index = start
        elif s.index == start:
            s.current = None
            s.index += 1
        else:
            inner = _State(s.text, start, s.index)
            self.sub_query(inner)
            self.build(s, inner.top)
            s.index += 1

    def consume_phrase(self, s: _State) -> None:
        start = s.index = s.index + 1
        chars: list[str] = []
        escaped = has_slop = False
        while s.index < s.end:
            c = s.text[s.index]
            if not escaped:
                if c == "\\" and self.on(ESCAPE):
                    escaped = True
                    s.index += 1
                    continue
                if c == '"':
                    if s.end > s.index + 1 and s.text[s.index + 1] == "~" and self.on(NEAR):
                        s.index += 1
                        has_slop = s.end > s.index + 1
                    break
            escaped = False
            chars.append(c)
            s.index += 1
        if s.index == s.end:
            s.index = start
        elif s.index == start:
            s.current = None
            s.index += 1
        else:
            if has_slop:
                self.fuzziness(s)
            self.build(s, STerm("".join(chars), phrase=True))
            s.index += 1

    def finished(self, s: _State) -> bool:
        c = s.text[s.index]
        return (
            (c == '"' and self.on(PHRASE))
            or (c == "|" and self.on(OR))
            or (c == "+" and self.on(AND))
            or (c in "()" and self.on(PRECEDENCE))
            or (c in _SPACES and self.on(WHITESPACE))
        )

    def consume_token(self, s: _State) -> None:
        chars: list[str] = []
        escaped = prefix = fuzzy = False
        while s.index < s.end:
            c = s.text[s.index]
            if not escaped:
                if c == "\\" and self.on(ESCAPE):
                    escaped, prefix = True, False
                    s.index += 1
                    continue
                if self.finished(s):
                    break
                if chars and c == "~" and self.on(FUZZY):
                    fuzzy = True
                    break
                prefix = bool(chars) and c == "*" and self.on(PREFIX)
            escaped = False
            chars.append(c)
            s.index += 1
        if not chars:
            return
        token = "".join(chars)
        if fuzzy and self.on(FUZZY):
            edits = min(self.fuzziness(s), _MAX_EDITS)
            self.build(s, STerm(token, fuzziness=edits))
        elif prefix:
            self.build(s, STerm(token[:-1], prefix=True))
        else:
            self.build(s, STerm(token))

    def fuzziness(self, s: _State) -> int:
        if s.index >= s.end or s.text[s.index] != "~":
            return 0
        chars: list[str] = []
        while s.index < s.end:
            s.index += 1
            if s.index < s.end:
                if self.finished(s):
                    break
                chars.append(s.text[s.index])
        text = "".join(chars)
        if not text:
            return 2
        try:
            return max(0, int(text))
        except ValueError:
            return 0

    def build(self, s: _State, branch: SNode | None) -> None:
        if branch is None:
            return
        if s.nots % 2 == 1:
            branch = SNot(branch)
        if s.top is None:
            s.top = branch
        else:
            if s.current is None:
                s.current = self.default
            if s.previous != s.current or not isinstance(s.top, SBool):
                s.top = SBool(s.current, [s.top])
            s.top.clauses.append(branch)
            s.previous = s.current
        s.current = None


def parse_simple(text: str, *, flags: int = -1, default_and: bool = False) -> SNode | None:
    """Parse a ``simple_query_string`` text.

    Args:
        text: The query text.
        flags: Enabled operators (bit set; ``-1`` for all).
        default_and: Whether whitespace means AND (``default_operator: and``).

    Returns:
        The query tree, or ``None`` when the text holds no token (the query then matches nothing).
    """
    return _Parser(flags, default_and).parse(text)
