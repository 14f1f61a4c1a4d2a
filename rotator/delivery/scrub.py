"""Scrubbing sink output: no encoding of the credential being delivered survives, in any piece.

A command or a receiver may print what it got back in many shapes: raw, base64 (standard or
URL-safe, padded or not, wrapped at 76 columns, shifted inside a larger document), or hex (one
string, or spaced and wrapped like ``od`` and ``xxd``). Rather than trying to recognise each
tool's layout, the scrubber derives every such encoding of the secret-bearing values (``api_key``,
``encoded`` and ``id:api_key``, with and without a trailing newline), cuts them into all their
runs of :data:`WINDOW` characters, and looks for those runs in the output with whitespace ignored.
Every character covered by a run is replaced, and markers separated only by whitespace merge into
one. A piece of the secret shorter than the window could survive only at the very edge of a cut,
so cutting always happens after scrubbing.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass

from rotator.log import REDACTED, redact_text
from rotator.ports import Credential

WINDOW = 10
"""How many characters of an encoding of the secret count as a piece of it."""
MIN_FORM = 4
"""Values shorter than this are not searched for (they would match ordinary words)."""
LINE_CHARS = 300
"""The longest line an excerpt keeps; longer ones are shortened with ``...``."""
EXCERPT_CHARS = 400
"""The longest excerpt of sink output a failure carries."""
INPUT_BYTES = 64 * 1024
"""How much of a sink's output is scrubbed and considered for the excerpt."""
_TOKEN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-")
_STUB = 3


@dataclass(frozen=True)
class Forms:
    """The runs of characters that betray the credential, grouped by length."""

    runs: dict[int, frozenset[str]]

    @classmethod
    def of(cls, credential: Credential) -> Forms:
        """Derive every encoding of a credential's secret-bearing values."""
        runs: dict[int, set[str]] = {}
        for form in _encodings(credential):
            size = min(WINDOW, len(form))
            if size < MIN_FORM:
                continue
            bucket = runs.setdefault(size, set())
            bucket.update(form[i : i + size] for i in range(len(form) - size + 1))
        return cls({size: frozenset(found) for size, found in runs.items()})


def _encodings(credential: Credential) -> Iterable[str]:
    """The credential's secret-bearing values in every encoding, whitespace removed."""
    values = [credential.api_key, credential.encoded, f"{credential.id}:{credential.api_key}"]
    yield credential.api_key
    yield credential.encoded
    yield _urlsafe(credential.encoded)
    for value in values:
        if not credential.api_key:
            break
        for suffix in ("", "\n"):
            data = (value + suffix).encode()
            yield data.hex()
            yield data.hex().upper()
            for shift in range(3):
                standard = _base64_inside(data, shift)
                yield standard
                yield _urlsafe(standard)


def _base64_inside(data: bytes, shift: int) -> str:
    """The base64 characters that depend on ``data`` alone, when ``shift`` bytes precede it.

    Characters that mix in bits of the bytes before or after are left out, and so is padding,
    so the result is found whatever surrounds ``data`` (padded, unpadded, inside a document).
    """
    text = base64.b64encode(b"\0" * shift + data).decode().rstrip("=")
    first = {0: 0, 1: 2, 2: 3}[shift]
    last = len(text) if (shift + len(data)) % 3 == 0 else len(text) - 1
    return text[first:last]


def _urlsafe(text: str) -> str:
    return text.replace("+", "-").replace("/", "_")


def scrub(text: str, forms: Forms) -> str:
    """Replace every piece of the credential in ``text`` with one marker per run.

    Whitespace is ignored while searching, so a form wrapped over lines or spaced into bytes is
    found; the whole stretch it covers (whitespace included) becomes a single marker.
    """
    positions = [i for i, char in enumerate(text) if not char.isspace()]
    compact = "".join(text[i] for i in positions)
    hit = bytearray(len(compact))
    for size, runs in forms.runs.items():
        for start in range(len(compact) - size + 1):
            if compact[start : start + size] in runs:
                hit[start : start + size] = b"\x01" * size
    pieces: list[str] = []
    cursor = 0
    index = 0
    while index < len(compact):
        if not hit[index]:
            index += 1
            continue
        end = index
        while end + 1 < len(compact) and hit[end + 1]:
            end += 1
        first, last = _widen(text, positions[index], positions[end] + 1)
        pieces += [text[cursor:first], REDACTED]
        cursor = last
        index = end + 1
    pieces.append(text[cursor:])
    return "".join(pieces)


def _widen(text: str, start: int, end: int) -> tuple[int, int]:
    """Take in the last few characters of a token a run stops short of.

    A run leaves out the base64 characters that mix the secret's bits with padding or with the
    bytes around it; when only such a stub is left before the token ends, it goes too.
    """
    after = end
    while after < len(text) and after - end <= _STUB and text[after] in _TOKEN:
        after += 1
    if after - end <= _STUB and (after == len(text) or text[after] not in _TOKEN):
        end = after
    before = start
    while before > 0 and start - before <= _STUB and text[before - 1] in _TOKEN:
        before -= 1
    if start - before <= _STUB and (before == 0 or text[before - 1] not in _TOKEN):
        start = before
    return start, end


def excerpt(
    output: str | bytes, credential: Credential, *, keep: str = "tail", limit: int = EXCERPT_CHARS
) -> str:
    """Return a scrubbed, capped, one-line excerpt of a sink's output.

    Args:
        output: what the command printed or the receiver answered (only the last, or first,
            :data:`INPUT_BYTES` are looked at).
        credential: the credential being delivered; none of its encodings survives.
        keep: ``tail`` keeps the last lines (a command's error comes last), ``head`` the first.
        limit: the longest excerpt, in characters.

    Returns:
        The non-blank lines, stripped and joined by `` | ``, or an empty string.
    """
    data = output if isinstance(output, bytes) else output.encode("utf-8", "replace")
    data = _bounded(data, keep)
    text = redact_text(scrub(data.decode("utf-8", "replace"), Forms.of(credential)))
    lines = [_shorten(line.strip()) for line in text.splitlines() if line.strip()]
    return _fit(lines, keep, limit)


def _bounded(data: bytes, keep: str) -> bytes:
    """At most :data:`INPUT_BYTES`, cut at a line boundary (a cut line may hold a piece)."""
    if len(data) <= INPUT_BYTES:
        return data
    if keep == "head":
        return data[:INPUT_BYTES].rpartition(b"\n")[0]
    return data[-INPUT_BYTES:].partition(b"\n")[2]


def _fit(lines: list[str], keep: str, limit: int) -> str:
    ordered = lines if keep == "head" else list(reversed(lines))
    chosen: list[str] = []
    used = 0
    for line in ordered:
        cost = len(line) + (3 if chosen else 0)
        if used + cost > limit:
            if not chosen:
                chosen.append(_shorten(line, limit))
            break
        chosen.append(line)
        used += cost
    return " | ".join(chosen if keep == "head" else reversed(chosen))


def _shorten(line: str, limit: int = LINE_CHARS) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."
