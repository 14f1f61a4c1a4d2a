"""The audit trail: append-only events in the store, each chained to the one before by SHA-256.

Every event's hash covers its sequence number, time, actor, action, subject, outcome, details and
the previous event's hash, so removing, reordering or editing any event breaks every hash after
it. Details are redacted before they are hashed and stored: no secret ever enters the trail.
"""

from __future__ import annotations

import hashlib
import json
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
from rotator.store.models import AuditEvent
from rotator.store.repositories import AuditRepository
from rotator.vocabulary import AuditAction, AuditOutcome

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


class AuditLog:
    """Appends events for one actor; safe to share between threads."""

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
        clean = json.loads(json.dumps(redact_mapping(dict(details or {})), default=str))
        if session.get_bind().dialect.name == "postgresql":
            session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK})
        return self._append_in(session, now, action.value, subject, outcome.value, clean)

    def write_many(self, session: Session, *, now: datetime, events: Sequence[AuditEntry]) -> None:
        """Append ``events`` in the caller's transaction, chained in order, in one insert.

        The tail is read once, however many events there are.
        """
        if not events:
            return
        if session.get_bind().dialect.name == "postgresql":
            session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK})
        repo = AuditRepository(session)
        last = repo.last()
        prev = last.hash if last is not None else GENESIS
        seq = 1 if last is None else last.seq + 1
        rows = []
        for entry in events:
            clean = json.loads(json.dumps(redact_mapping(dict(entry.details)), default=str))
            action, outcome = entry.action.value, entry.outcome.value
            digest = event_hash(prev, seq, now, self.actor, action, entry.subject, outcome, clean)
            rows.append(
                {
                    "seq": seq,
                    "at": now,
                    "actor": self.actor,
                    "action": action,
                    "subject": entry.subject,
                    "outcome": outcome,
                    "details_json": clean,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev, seq = digest, seq + 1
        # Core executemany: one statement for the batch.
        session.connection().execute(sa.insert(AUDIT_TABLE), rows)

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
        clean = json.loads(json.dumps(redact_mapping(dict(details or {})), default=str))
        with self._lock:
            for attempt in range(_APPEND_ATTEMPTS):
                try:
                    return self._append(now, action.value, subject, outcome.value, clean)
                except IntegrityError:
                    _log.info("audit_append_raced", attempt=attempt + 1)
            raise RuntimeError(f"audit append failed {_APPEND_ATTEMPTS} times in a row")

    def _append(
        self, now: datetime, action: str, subject: str, outcome: str, details: dict[str, Any]
    ) -> int:
        with self._sessions() as session, session.begin():
            return self._append_in(session, now, action, subject, outcome, details)

    def _append_in(
        self,
        session: Session,
        now: datetime,
        action: str,
        subject: str,
        outcome: str,
        details: dict[str, Any],
    ) -> int:
        repo = AuditRepository(session)
        last = repo.last()
        prev = last.hash if last is not None else GENESIS
        seq = repo.next_seq()
        digest = event_hash(prev, seq, now, self.actor, action, subject, outcome, details)
        event = AuditEvent(
            seq=seq,
            at=now,
            actor=self.actor,
            action=action,
            subject=subject,
            outcome=outcome,
            details_json=details,
            prev_hash=prev,
            hash=digest,
        )
        repo.append(event)
        return seq


@dataclass(frozen=True)
class Verification:
    """The result of checking the whole chain."""

    ok: bool
    events: int
    broken_at: int | None = None
    reason: str = ""


def verify(session: Session) -> Verification:
    """Recompute every hash in sequence order and report the first break."""
    return verify_events(AuditRepository(session).iter_events())


def verify_events(events: Iterable[AuditEvent]) -> Verification:
    """Check a run of events in sequence order, from the genesis hash; the first break wins."""
    prev = GENESIS
    count = 0
    for event in events:
        count += 1
        if event.prev_hash != prev:
            return Verification(False, count, event.seq, "does not chain to the event before it")
        expected = event_hash(
            prev,
            event.seq,
            event.at,
            event.actor,
            event.action,
            event.subject,
            event.outcome,
            event.details_json,
        )
        if expected != event.hash:
            return Verification(False, count, event.seq, "its content does not match its hash")
        prev = event.hash
    return Verification(True, count)
