"""Units of work over the SQL store: a fenced transaction wrapping the repositories and the audit
trail, so a change and the audit event recording it commit together or not at all."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from rotator.audit import AuditLog
from rotator.ports import AuditEntry
from rotator.store.inventory import InventoryRepository
from rotator.store.models import ApiKey, Rotation
from rotator.store.repositories import ApiKeyRepository, RotationRepository, SourceRepository
from rotator.vocabulary import AuditAction, AuditOutcome


class Fence(Protocol):
    """Refuses a write made by a process that no longer holds the leader lease."""

    @property
    def lost(self) -> bool:
        """Whether a write was refused: the job must stop at once."""
        ...

    def check(self, session: Session, now: datetime) -> None:
        """Inside a write transaction, before anything is written.

        Raises:
            LeaseLost: the lease expired or changed hands; nothing is written.
        """
        ...


class Unfenced:
    """No lease: the writer is alone (tests, and stores no replica shares)."""

    lost = False

    def check(self, session: Session, now: datetime) -> None:
        """Every write is allowed."""


class SqlUnitOfWork:
    """One SQLAlchemy session's transaction, seen through the repositories."""

    def __init__(self, session: Session, audit: AuditLog) -> None:
        self._session = session
        self._audit = audit
        self.sources = SourceRepository(session)
        self.keys = ApiKeyRepository(session)
        self.rotations = RotationRepository(session)
        self.inventory = InventoryRepository(session)

    def key_row(self, row_id: int) -> ApiKey | None:
        """The key row with this id, or None."""
        return self._session.get(ApiKey, row_id)

    def rotation_row(self, rotation_id: str) -> Rotation | None:
        """The rotation with this id, or None."""
        return self.rotations.get(rotation_id)

    def audit(
        self,
        *,
        now: datetime,
        action: AuditAction,
        subject: str,
        outcome: AuditOutcome,
        details: Mapping[str, Any],
    ) -> int:
        """Append an audit event in this transaction; returns its sequence number."""
        return self._audit.write(
            self._session, now=now, action=action, subject=subject, outcome=outcome, details=details
        )

    def audit_many(self, *, now: datetime, events: Sequence[AuditEntry]) -> None:
        """Append several events in this transaction, in one insert."""
        self._audit.write_many(self._session, now=now, events=events)


class SqlUnitsOfWork:
    """Units of work on a database: fenced write transactions and read-only snapshots."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        audit: AuditLog,
        now: Callable[[], datetime],
        *,
        fence: Fence | None = None,
        reads: sessionmaker[Session] | None = None,
    ) -> None:
        self._sessions = sessions
        self._reads = reads or sessions
        self._audit = audit
        self._now = now
        self._fence: Fence = fence or Unfenced()

    @property
    def lost(self) -> bool:
        """Whether the fence refused a write: the lease is gone."""
        return self._fence.lost

    def fenced(self, fence: Fence) -> SqlUnitsOfWork:
        """The same database, every write checked against ``fence``."""
        return SqlUnitsOfWork(
            self._sessions, self._audit, self._now, fence=fence, reads=self._reads
        )

    @contextmanager
    def write(self) -> Iterator[SqlUnitOfWork]:
        """A fenced transaction: committed when the block ends, rolled back when it raises.

        Raises:
            LeaseLost: the lease is no longer held; nothing is written.
        """
        with self._sessions.begin() as session:
            self._fence.check(session, self._now())
            yield SqlUnitOfWork(session, self._audit)

    @contextmanager
    def read(self) -> Iterator[SqlUnitOfWork]:
        """A session that only reads (on SQLite a snapshot, never waiting for a writer)."""
        with self._reads() as session:
            yield SqlUnitOfWork(session, self._audit)
