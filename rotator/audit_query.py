"""Reading the audit trail: filters, paging by sequence, time arguments, following new events,
and the chain check ``rotator run`` makes before it schedules anything.

Every read pages through the trail by sequence number (never one query for everything), so a
listing or an export of millions of events holds one page in memory at a time.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from rotator.audit import Anchor, ChainEvent, Verification, verify
from rotator.config import Config
from rotator.durations import DurationError, parse_duration
from rotator.store.models import AuditEvent
from rotator.vocabulary import AuditAction

PAGE_SIZE = 500
FOLLOW_INTERVAL = 1.0
# The detail fields that name a key an event is about (besides a ``key:<id>`` subject).
KEY_FIELDS = ("key_id", "new_key_id", "previous_key_id")
# The details shown first in the table's short DETAILS column, in this order.
_NOTABLE = ("key_id", "previous_key_id", "new_key_id", "name", "key_name", "source", "reason")
_DETAILS_WIDTH = 100

TIME_FORMS = (
    "a duration back from now (45s, 90m, 24h, 7d) or an ISO 8601 time "
    "(2026-11-30, 2026-11-30T08:00:00Z, 2026-11-30T09:00:00+01:00; UTC when no offset is given)"
)


class InvalidTime(ValueError):
    """A ``--since``/``--until`` value that is neither a duration nor an ISO 8601 time."""


class UnknownAction(ValueError):
    """An ``--action`` prefix no action of the vocabulary starts with."""


def parse_time(text: str, now: datetime) -> datetime:
    """``24h``/``7d`` (that long before ``now``) or an ISO 8601 date or time, as aware UTC.

    Raises:
        InvalidTime: the text is neither; the message shows the accepted forms.
    """
    value = text.strip()
    try:
        return now - parse_duration(value)
    except DurationError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidTime(f"{text!r} is not a time: use {TIME_FORMS}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class AuditFilter:
    """Which events a listing or an export selects; every field given must match."""

    source: str | None = None
    key: str | None = None
    action: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None

    def __post_init__(self) -> None:
        if self.action is not None and not any(
            a.value.startswith(self.action) for a in AuditAction
        ):
            families = sorted({a.value.split(".")[0] + "." for a in AuditAction})
            raise UnknownAction(
                f"no audit action starts with {self.action!r} "
                f"(actions start with {', '.join(families)})"
            )

    @property
    def narrows(self) -> bool:
        """Whether it leaves out events inside its time range (an export is then not a
        contiguous piece of the chain, and does not verify on its own)."""
        return any(
            v is not None for v in (self.source, self.key, self.action, self.outcome, self.actor)
        )

    def conditions(self) -> list[sa.ColumnElement[bool]]:
        """The SQL conditions, portable between SQLite and PostgreSQL."""
        details = AuditEvent.details_json
        where: list[sa.ColumnElement[bool]] = []
        if self.source is not None:
            where.append(
                sa.or_(
                    AuditEvent.subject == self.source,
                    details["source"].as_string() == self.source,
                )
            )
        if self.key is not None:
            # Named by the subject, by a key field, or listed in the details (a purge batch
            # lists the ids it invalidated): the JSON text holds the id as a JSON string.
            needle = json.dumps(self.key)
            where.append(
                sa.or_(
                    AuditEvent.subject == f"key:{self.key}",
                    *(details[f].as_string() == self.key for f in KEY_FIELDS),
                    sa.cast(details, sa.Text).contains(needle, autoescape=True),
                )
            )
        if self.action is not None:
            where.append(AuditEvent.action.startswith(self.action, autoescape=True))
        if self.outcome is not None:
            where.append(AuditEvent.outcome == self.outcome)
        if self.since is not None:
            where.append(AuditEvent.at >= self.since)
        if self.until is not None:
            where.append(AuditEvent.at < self.until)
        if self.actor is not None:
            where.append(
                sa.func.lower(AuditEvent.actor).contains(self.actor.lower(), autoescape=True)
            )
        return where


def events(
    session: Session,
    wanted: AuditFilter = AuditFilter(),
    *,
    after_seq: int = 0,
    limit: int | None = None,
    page_size: int = PAGE_SIZE,
) -> Iterator[ChainEvent]:
    """The events ``wanted`` selects with ``seq`` above ``after_seq``, oldest first, at most
    ``limit``, read ``page_size`` at a time."""
    where = wanted.conditions()
    cursor, left = after_seq, limit
    while left is None or left > 0:
        size = page_size if left is None else min(page_size, left)
        query = (
            sa.select(AuditEvent)
            .where(AuditEvent.seq > cursor, *where)
            .order_by(AuditEvent.seq)
            .limit(size)
        )
        page = [ChainEvent.from_row(row) for row in session.scalars(query)]
        yield from page
        if len(page) < size:
            return
        cursor = page[-1].seq
        if left is not None:
            left -= len(page)


def start_of_newest(session: Session, wanted: AuditFilter, count: int) -> int:
    """The ``after_seq`` that makes :func:`events` yield the newest ``count`` events selected."""
    nth = session.scalar(
        sa.select(AuditEvent.seq)
        .where(*wanted.conditions())
        .order_by(AuditEvent.seq.desc())
        .offset(count - 1)
        .limit(1)
    )
    return 0 if nth is None else int(nth) - 1


def newest_seq(session: Session) -> int:
    """The sequence number of the newest event (0 when there is none)."""
    return int(session.scalar(sa.select(sa.func.max(AuditEvent.seq))) or 0)


def follow(
    sessions: Callable[[], Session],
    wanted: AuditFilter,
    *,
    after_seq: int,
    emit: Callable[[ChainEvent], None],
    sleep: Callable[[float], None],
    interval: float = FOLLOW_INTERVAL,
) -> None:
    """Emit every selected event committed after ``after_seq``, polling every ``interval``
    seconds, until ``sleep`` or ``emit`` raises (``KeyboardInterrupt`` on SIGINT).

    Appends commit in sequence order, so nothing committed later can get a smaller sequence
    number than one already seen.
    """
    cursor = after_seq
    while True:
        with sessions() as session:
            for event in events(session, wanted, after_seq=cursor):
                emit(event)
                cursor = event.seq
        sleep(interval)


# --- presentation --------------------------------------------------------------------------------

TABLE_HEADERS = ("SEQ", "TIME", "ACTOR", "ACTION", "SUBJECT", "OUTCOME", "DETAILS")


def table_cells(event: ChainEvent) -> list[str]:
    """One table row: every column but the details in full, the details shortened."""
    return [
        str(event.seq),
        event.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        event.actor,
        event.action,
        event.subject,
        event.outcome,
        short_details(event.details),
    ]


def short_details(details: dict[str, Any], width: int = _DETAILS_WIDTH) -> str:
    """``key=value`` pairs, the usual identifying ones first, cut at ``width`` characters."""
    names = [n for n in _NOTABLE if n in details] + sorted(k for k in details if k not in _NOTABLE)
    parts = []
    for name in names:
        value = details[name]
        if value is None or value in ("", [], {}):
            continue
        shown = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        parts.append(f"{name}={shown}")
    text = " ".join(parts)
    return text if len(text) <= width else text[: width - 3] + "..."


class TableWriter:
    """Prints table rows as they come: the columns are sized on the first page (the header and
    the first rows) and wider values later simply push the line."""

    def __init__(self, write: Callable[[str], None], size_on: int = PAGE_SIZE) -> None:
        self._write = write
        self._size_on = size_on
        self._pending: list[list[str]] = []
        self._widths: list[int] | None = None
        self.count = 0

    def add(self, event: ChainEvent) -> None:
        """One event; printed now if the columns are sized, else once they are."""
        self.count += 1
        cells = table_cells(event)
        if self._widths is not None:
            self._line(cells)
            return
        self._pending.append(cells)
        if len(self._pending) >= self._size_on:
            self.flush()

    def flush(self) -> None:
        """Size the columns on what has come so far and print it."""
        if self._widths is None:
            rows = [list(TABLE_HEADERS), *self._pending]
            self._widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_HEADERS))]
            self._line(list(TABLE_HEADERS))
        for cells in self._pending:
            self._line(cells)
        self._pending.clear()

    def _line(self, cells: list[str]) -> None:
        assert self._widths is not None
        self._write(
            "  ".join(c.ljust(w) for c, w in zip(cells, self._widths, strict=True)).rstrip()
        )


# --- the chain --------------------------------------------------------------------------------


def configured_anchors(config: Config) -> list[Anchor]:
    """The heads recorded outside the chain that can be read now (the JSONL mirror,
    Elasticsearch); none when this installation records none."""
    try:
        mirror = importlib.import_module("rotator.audit_mirror")
    except ModuleNotFoundError:
        return []
    reader: Any = getattr(mirror, "anchors", None)
    if reader is None:
        return []
    return [a for a in reader(config) if isinstance(a, Anchor)]


def verify_store(config: Config, engine: Engine) -> Verification:
    """Walk the stored chain and check it against the newest anchor that can be read."""
    from rotator.store.db import read_session_factory

    anchors = configured_anchors(config)
    with read_session_factory(engine)() as session:
        return verify(session, anchors)


def start_check(config: Config, engine: Engine) -> Verification | None:
    """With ``audit.verify_on_start``, the chain's verification when it is broken (``rotator
    run`` then refuses to start); None when intact or not asked for."""
    if not config.audit.verify_on_start:
        return None
    result = verify_store(config, engine)
    return None if result.ok else result
