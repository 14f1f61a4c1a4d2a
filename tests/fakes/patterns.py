"""Elasticsearch wildcard patterns as languages, and the subset test privilege checks rest on.

Elasticsearch compiles index names and privilege actions into automata and answers "does this
role cover that" as a language inclusion (``Operations.subsetOf``). Here a pattern is a glob
(``*`` any run, ``?`` one character, ``\\`` escapes the next character) and a ``Patterns`` value
is a union of globs minus a union of globs; inclusion is decided exactly by walking the product
of the patterns' automata.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache


class Unmodelled(NotImplementedError):
    """The request needs behaviour this fake does not reproduce; it says which, instead of
    answering something Elasticsearch might not."""


@dataclass(frozen=True)
class Glob:
    """A compiled wildcard pattern: one ``(character or None for any, repeats)`` per position."""

    text: str
    atoms: tuple[tuple[str | None, bool], ...]

    def start(self) -> frozenset[int]:
        """The positions reachable before reading anything."""
        return self._closure({0})

    def step(self, states: frozenset[int], char: str) -> frozenset[int]:
        """The positions reachable after reading ``char``."""
        nxt = {
            pos if star else pos + 1
            for pos in states
            if pos < len(self.atoms)
            for wanted, star in (self.atoms[pos],)
            if wanted is None or wanted == char
        }
        return self._closure(nxt)

    def accepts(self, states: frozenset[int]) -> bool:
        """Whether the text read so far is in the language."""
        return len(self.atoms) in states

    def matches(self, text: str) -> bool:
        """Whether ``text`` is in the language."""
        states = self.start()
        for char in text:
            states = self.step(states, char)
        return self.accepts(states)

    def _closure(self, states: Iterable[int]) -> frozenset[int]:
        out = set(states)
        todo = list(out)
        while todo:
            pos = todo.pop()
            if pos < len(self.atoms) and self.atoms[pos][1] and pos + 1 not in out:
                out.add(pos + 1)
                todo.append(pos + 1)
        return frozenset(out)


@lru_cache(maxsize=4096)
def glob(text: str) -> Glob:
    """Compile a wildcard pattern.

    Raises:
        Unmodelled: a ``/regex/`` index pattern (Elasticsearch accepts them; this fake does not).
    """
    if len(text) > 1 and text.startswith("/") and text.endswith("/"):
        raise Unmodelled(f"regular-expression index pattern {text!r}")
    atoms: list[tuple[str | None, bool]] = []
    escaped = False
    for char in text:
        if escaped:
            atoms.append((char, False))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "*":
            if not atoms or atoms[-1] != (None, True):
                atoms.append((None, True))
        elif char == "?":
            atoms.append((None, False))
        else:
            atoms.append((char, False))
    if escaped:
        atoms.append(("\\", False))
    return Glob(text, tuple(atoms))


@dataclass(frozen=True)
class Patterns:
    """The strings matched by some glob of ``include`` and by no glob of ``exclude``."""

    include: tuple[Glob, ...]
    exclude: tuple[Glob, ...] = ()

    @classmethod
    def of(cls, include: Iterable[str], exclude: Iterable[str] = ()) -> Patterns:
        """Build from pattern texts."""
        return cls(
            tuple(glob(p) for p in sorted(set(include))),
            tuple(glob(p) for p in sorted(set(exclude))),
        )

    def matches(self, text: str) -> bool:
        """Whether ``text`` is in the set."""
        return any(g.matches(text) for g in self.include) and not any(
            g.matches(text) for g in self.exclude
        )

    def within(self, others: Sequence[Patterns]) -> bool:
        """Whether every string of this set is in the union of ``others``."""
        return _subset(self, tuple(others))


_State = tuple[frozenset[int], ...]


def _globs(sets: Sequence[Patterns]) -> list[Glob]:
    return [g for s in sets for g in (*s.include, *s.exclude)]


def _holds(sets: Sequence[Patterns], globs: Sequence[Glob], state: _State) -> bool:
    """Whether the text read so far, in the walk's ``state``, is in one of ``sets``."""
    offset = 0
    for s in sets:
        inc = any(g.accepts(state[offset + i]) for i, g in enumerate(s.include))
        offset += len(s.include)
        exc = any(g.accepts(state[offset + i]) for i, g in enumerate(s.exclude))
        offset += len(s.exclude)
        if inc and not exc:
            return True
    return False


@lru_cache(maxsize=8192)
def _subset(left: Patterns, rights: tuple[Patterns, ...]) -> bool:
    """Walk every text the left set can still reach, in lockstep with every glob involved.

    Characters no glob names behave alike, so one stand-in covers them all; the walk ends when a
    text of the left set lies outside every right set (not a subset) or no new state appears.
    """
    own = len(_globs((left,)))
    globs = _globs((left, *rights))
    named = {c for g in globs for c, _star in g.atoms if c is not None}
    other = next(chr(c) for c in range(0x100, 0x10FFFF) if chr(c) not in named)
    alphabet = [*sorted(named), other]
    n_left = len(left.include)
    start: _State = tuple(g.start() for g in globs)
    seen = {start}
    todo = [start]
    while todo:
        state = todo.pop()
        if not any(state[:n_left]):
            continue  # no text of the left set continues from here
        if _holds((left,), globs, state) and not _holds(rights, globs[own:], state[own:]):
            return False
        for char in alphabet:
            nxt = tuple(g.step(s, char) for g, s in zip(globs, state, strict=True))
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return True
