"""The audit trail: append-only events in the store, each chained to the one before by SHA-256.

Every event's hash covers its sequence number, time, actor, action, subject, outcome, details and
the previous event's hash, so removing, reordering or editing any event breaks every hash after
it. Details are redacted before they are hashed and stored: no secret ever enters the trail.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rotator.log import get_logger, redact_mapping
from rotator.ports import AuditEntry
from rotator.store.models import AuditCheckpoint, AuditEvent
from rotator.store.repositories import AuditRepository
from rotator.vocabulary import AuditAction, AuditOutcome, LogEvent

GENESIS = "0" * 64
# The advisory lock that serialises appends to the chain on PostgreSQL (any fixed 64-bit number).
_CHAIN_LOCK = 0x726F7461746F72
_APPEND_ATTEMPTS = 5
_log = get_logger("rotator.audit")
AUDIT_TABLE: sa.Table = AuditEvent.__table__  # type: ignore[assignment]


def event_hash(
    prev_hash: str,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    outcome: str,
    details: Mapping[str, Any],
) -> str:
    """The hash of one event, over canonical JSON of all its fields and its predecessor's hash."""
    canonical = json.dumps(
        {
            "prev_hash": prev_hash,
            "seq": seq,
            "at": at.isoformat(),
            "actor": actor,
            "action": action,
            "subject": subject,
            "outcome": outcome,
            "details": details,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def default_actor(role: str = "rotator") -> str:
    """Who writes: ``role`` as OS user at host, with the process id (``rotator:svc@db1[4242]``)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        user = f"uid{os.getuid()}"
    return f"{role}:{user}@{socket.gethostname()}[{os.getpid()}]"


# Set on a write session by the leader lease's fence: the epoch its writes are made under.
EPOCH_KEY = "rotator.lease_epoch"
_PENDING_KEY = "rotator.audit_pending"


class AuditLog:
    """Appends events for one actor; safe to share between threads.

    Every event committed is also logged (``event.kind: audit``) once its transaction commits.
    """

    def __init__(self, session_factory: Callable[[], Session], actor: str) -> None:
        self._sessions = session_factory
        self.actor = actor
        self._lock = threading.Lock()

    def write(
        self,
        session: Session,
        *,
        now: datetime,
        action: AuditAction,
        subject: str,
        outcome: AuditOutcome,
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one event in the caller's transaction, beside the change it records.

        The event commits with the change or not at all. Writers are serialised on the chain's
        tail: SQLite's write transactions already are; on PostgreSQL a transaction-scoped advisory
        lock is taken first. Returns the event's sequence number.
        """
        entry = AuditEntry(action, subject, outcome, details or {})
        return self._insert(session, now, [entry])

    def write_many(self, session: Session, *, now: datetime, events: Sequence[AuditEntry]) -> None:
        """Append ``events`` in the caller's transaction, chained in order, in one insert.

        The tail is read once, however many events there are.
        """
        if events:
            self._insert(session, now, events)

    def record(
        self,
        *,
        now: datetime,
        action: AuditAction,
        subject: str,
        outcome: AuditOutcome,
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one event in its own transaction; returns its sequence number.

        Concurrent writers (other replicas) that chain to the same predecessor lose the race on
        the unique ``prev_hash``; the append is then retried on the new tail.
        """
        entry = AuditEntry(action, subject, outcome, details or {})
        with self._lock:
            for attempt in range(_APPEND_ATTEMPTS):
                try:
                    with self._sessions() as session, session.begin():
                        return self._insert(session, now, [entry])
                except IntegrityError:
                    _log.info("audit_append_raced", attempt=attempt + 1)
            raise RuntimeError(f"audit append failed {_APPEND_ATTEMPTS} times in a row")

    def _insert(self, session: Session, now: datetime, entries: Sequence[AuditEntry]) -> int:
        """Chain and insert ``entries`` (one statement); returns the last sequence number."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK})
        session.flush()  # pending ORM rows first, so the tail read below sees them
        prev, seq = tail(session)
        epoch = session.info.get(EPOCH_KEY)
        actor = self.actor if epoch is None else f"{self.actor} epoch {epoch}"
        rows = []
        for entry in entries:
            details = json.loads(json.dumps(redact_mapping(dict(entry.details)), default=str))
            action, outcome = entry.action.value, entry.outcome.value
            digest = event_hash(prev, seq, now, actor, action, entry.subject, outcome, details)
            rows.append(
                {
                    "seq": seq,
                    "at": now,
                    "actor": actor,
                    "action": action,
                    "subject": entry.subject,
                    "outcome": outcome,
                    "details_json": details,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev, seq = digest, seq + 1
        session.connection().execute(sa.insert(AUDIT_TABLE), rows)
        _mirror_after_commit(session, rows)
        return seq - 1


def tail(session: Session) -> tuple[str, int]:
    """The hash the next event chains to and its sequence number (after the newest event, or
    after the newest checkpoint when retention removed every event)."""
    last = session.execute(
        sa.select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    if last is not None:
        return str(last.hash), int(last.seq) + 1
    checkpoint = session.execute(
        sa.select(AuditCheckpoint.seq, AuditCheckpoint.hash)
        .order_by(AuditCheckpoint.seq.desc())
        .limit(1)
    ).first()
    if checkpoint is not None:
        return str(checkpoint.hash), int(checkpoint.seq) + 1
    return GENESIS, 1


def _mirror_after_commit(session: Session, rows: list[dict[str, Any]]) -> None:
    """Log the events once (and only if) their transaction commits."""
    pending: list[dict[str, Any]] | None = session.info.get(_PENDING_KEY)
    if pending is None:
        pending = session.info[_PENDING_KEY] = []

        def committed(s: Session) -> None:
            for row in s.info.pop(_PENDING_KEY, []):
                log_event(row)

        def rolled_back(s: Session, _previous: Any) -> None:
            s.info.pop(_PENDING_KEY, None)

        sa.event.listen(session, "after_commit", committed, once=True)
        sa.event.listen(session, "after_soft_rollback", rolled_back, once=True)
    pending.extend(rows)


_audit_log = get_logger("rotator.audit.events")


def log_event(row: Mapping[str, Any]) -> None:
    """One committed audit event as a log event (``event.kind: audit``, ECS-style fields)."""
    details = row["details_json"]
    run = {k: details[k] for k in ("job", "run_id") if isinstance(details.get(k), str)}
    _audit_log.info(
        LogEvent.AUDIT_EVENT,
        **run,
        **{
            "event.kind": "audit",
            "event.action": row["action"],
            "event.outcome": row["outcome"],
            "event.sequence": row["seq"],
            "rotator.audit.subject": row["subject"],
            "rotator.audit.actor": row["actor"],
            "rotator.audit.details": row["details_json"],
            "rotator.audit.hash": row["hash"],
        },
    )


# --- events outside the database -----------------------------------------------------------------


@dataclass(frozen=True)
class ChainEvent:
    """An event with its chain fields, as exported (one JSON object per line) and verified."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    outcome: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    @classmethod
    def from_row(cls, row: AuditEvent) -> ChainEvent:
        """From a stored event."""
        return cls(
            row.seq,
            row.at,
            row.actor,
            row.action,
            row.subject,
            row.outcome,
            dict(row.details_json),
            row.prev_hash,
            row.hash,
        )

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ChainEvent:
        """From an exported line's object.

        Raises:
            ValueError: a field is missing or malformed.
        """
        try:
            return cls(
                int(doc["seq"]),
                datetime.fromisoformat(str(doc["at"])),
                str(doc["actor"]),
                str(doc["action"]),
                str(doc["subject"]),
                str(doc["outcome"]),
                dict(doc["details"]),
                str(doc["prev_hash"]),
                str(doc["hash"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not an audit event: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        """The exported form: every field the hash covers, ``at`` to the microsecond."""
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "outcome": self.outcome,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    def recomputed(self) -> str:
        """The hash its fields give."""
        return event_hash(
            self.prev_hash,
            self.seq,
            self.at,
            self.actor,
            self.action,
            self.subject,
            self.outcome,
            self.details,
        )


@dataclass(frozen=True)
class Anchor:
    """The chain's head as written outside the chain (a mirror file, Elasticsearch): removing
    the newest events cannot go unnoticed while one anchor survives."""

    seq: int
    hash: str
    where: str


@dataclass(frozen=True)
class Verification:
    """The result of checking a chain: the first break, or how many events verified."""

    ok: bool
    events: int
    broken_at: int | None = None
    reason: str = ""
    expected: str | None = None
    found: str | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    anchor: Anchor | None = None

    def describe(self) -> str:
        """One line for people."""
        if self.ok:
            span = (
                "" if self.first_seq is None else f" (sequence {self.first_seq}..{self.last_seq})"
            )
            against = f"; matches the anchor in {self.anchor.where}" if self.anchor else ""
            return f"audit chain intact: {self.events} event(s) verified{span}{against}"
        detail = ""
        if self.expected is not None or self.found is not None:
            detail = f" (expected {self.expected}, found {self.found})"
        return f"audit chain broken at sequence {self.broken_at}: {self.reason}{detail}"


def verify(session: Session, anchors: Sequence[Anchor] = ()) -> Verification:
    """Walk the whole stored chain from its checkpoint (or the genesis), then check it against
    the newest anchor: the first break wins."""
    checkpoint = session.execute(
        sa.select(AuditCheckpoint.seq, AuditCheckpoint.hash)
        .order_by(AuditCheckpoint.seq.desc())
        .limit(1)
    ).first()
    start_prev, start_seq = (
        (str(checkpoint.hash), int(checkpoint.seq) + 1) if checkpoint else (GENESIS, 1)
    )
    events = (ChainEvent.from_row(e) for e in AuditRepository(session).iter_events())
    return verify_chain(events, start_prev=start_prev, start_seq=start_seq, anchors=anchors)


def verify_events(events: Iterable[AuditEvent]) -> Verification:
    """Check stored events in sequence order from the genesis hash; the first break wins."""
    return verify_chain(ChainEvent.from_row(e) for e in events)


def verify_chain(
    events: Iterable[ChainEvent],
    *,
    start_prev: str | None = GENESIS,
    start_seq: int | None = 1,
    anchors: Sequence[Anchor] = (),
) -> Verification:
    """Check events in order: no sequence missing, each chained to the one before, each hash
    its content's. ``start_prev``/``start_seq`` None takes the first event's word for where it
    starts (an export of part of the chain)."""
    prev, expected_seq = start_prev, start_seq
    count, first, last = 0, None, None
    newest = max(anchors, key=lambda a: a.seq, default=None)
    anchor_seen = False
    for event in events:
        count += 1
        if expected_seq is not None and event.seq != expected_seq:
            if event.seq > expected_seq:
                reason = f"event(s) {expected_seq}..{event.seq - 1} are missing"
            else:
                reason = "the sequence goes backwards (events reordered or repeated)"
            return _broken(count, expected_seq, reason, str(expected_seq), str(event.seq))
        if prev is not None and event.prev_hash != prev:
            return _broken(
                count, event.seq, "does not chain to the event before it", prev, event.prev_hash
            )
        digest = event.recomputed()
        if digest != event.hash:
            return _broken(
                count, event.seq, "its content does not match its hash", digest, event.hash
            )
        if newest is not None and event.seq == newest.seq:
            anchor_seen = True
            if event.hash != newest.hash:
                return _broken(
                    count,
                    event.seq,
                    f"it differs from the anchor in {newest.where}",
                    newest.hash,
                    event.hash,
                )
        first = event.seq if first is None else first
        last, prev, expected_seq = event.seq, event.hash, event.seq + 1
    if newest is not None and not anchor_seen and (last is None or newest.seq > last):
        after = 0 if last is None else last
        return Verification(
            False,
            count,
            after + 1,
            f"the newest event(s) {after + 1}..{newest.seq} were removed "
            f"(the anchor in {newest.where} names event {newest.seq})",
            newest.hash,
            None,
            first,
            last,
            newest,
        )
    return Verification(True, count, None, "", None, None, first, last, newest)


def _broken(count: int, seq: int, reason: str, expected: str, found: str) -> Verification:
    return Verification(False, count, seq, reason, expected, found)


def verify_lines(lines: Iterable[str], anchors: Sequence[Anchor] = ()) -> Verification:
    """Check an export (one event per line); its first event may be anywhere in the chain.

    Raises:
        ValueError: a line is not an exported audit event (names the line number).
    """

    def parse() -> Iterable[ChainEvent]:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield ChainEvent.from_json(json.loads(line))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"line {number}: {exc}") from None

    return verify_chain(parse(), start_prev=None, start_seq=None, anchors=anchors)


# --- retention -----------------------------------------------------------------------------------


def apply_retention(
    session: Session,
    *,
    before: datetime,
    now: datetime,
    up_to: int | None = None,
    batch: int = 10_000,
) -> int:
    """Remove the events older than ``before`` (never the newest, nor any after ``up_to``),
    recording first a checkpoint with the last removed event's sequence and hash so the rest
    still verifies.

    Runs in the caller's transaction; returns how many events were removed.
    """
    newest = session.scalar(sa.select(sa.func.max(AuditEvent.seq)))
    if newest is None:
        return 0
    query = sa.select(AuditEvent.seq, AuditEvent.hash).where(
        AuditEvent.at < before, AuditEvent.seq < newest
    )
    if up_to is not None:
        query = query.where(AuditEvent.seq <= up_to)
    cut = session.execute(query.order_by(AuditEvent.seq.desc()).limit(1)).first()
    if cut is None:
        return 0
    first = session.scalar(sa.select(sa.func.min(AuditEvent.seq))) or cut.seq
    removed = int(cut.seq) - int(first) + 1
    session.add(
        AuditCheckpoint(
            seq=int(cut.seq),
            hash=str(cut.hash),
            at=now,
            removed=removed,
            reason=f"retention: events before {before.isoformat()}",
        )
    )
    session.flush()
    low = int(first)
    while low <= cut.seq:
        high = min(low + batch - 1, int(cut.seq))
        session.execute(sa.delete(AuditEvent).where(AuditEvent.seq.between(low, high)))
        low = high + 1
    return removed
