"""Units of work over the SQL store: a fenced transaction wrapping the repositories and the audit
trail, so a change and the audit event recording it commit together or not at all."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Generic, Protocol, Self, TypeVar

import sqlalchemy as sa
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


U = TypeVar("U", bound=SqlUnitOfWork)


class SqlUnits(Generic[U]):
    """Units of work on a database: fenced write transactions and read-only snapshots.

    Inside :meth:`held`, the thread's write units share one session: each still commits on its
    own, but the rows one unit loaded stay in the session's identity map for the next, so a
    multi-step change (a rotation) reads each row once instead of once per step.
    """

    unit_type: type[U]

    def __init__(
        self,
        sessions: sessionmaker[Session],
        audit: AuditLog,
        now: Callable[[], datetime],
        *,
        fence: Fence | None = None,
        reads: sessionmaker[Session] | None = None,
        _held: threading.local | None = None,
    ) -> None:
        self._sessions = sessions
        self._reads = reads or sessions
        self._audit = audit
        self._now = now
        self._fence: Fence = fence or Unfenced()
        self._held = _held if _held is not None else threading.local()

    @property
    def lost(self) -> bool:
        """Whether the fence refused a write: the lease is gone."""
        return self._fence.lost

    def fenced(self, fence: Fence) -> Self:
        """The same database, every write checked against ``fence``."""
        return type(self)(
            self._sessions, self._audit, self._now, fence=fence, reads=self._reads, _held=self._held
        )

    @contextmanager
    def held(self) -> Iterator[None]:
        """The write units this thread opens in the block share one session (re-entrant).

        Each unit is still its own transaction; a unit that rolls back expires what the session
        holds, so the next one reads again what it needs.
        """
        if getattr(self._held, "session", None) is not None:
            yield
            return
        session = self._sessions()
        # The identity map holds rows weakly: keep every row the block loads or adds, so the
        # next unit finds it there instead of reading it again.
        kept: list[object] = []
        sa.event.listen(session, "loaded_as_persistent", lambda _s, row: kept.append(row))
        sa.event.listen(session, "pending_to_persistent", lambda _s, row: kept.append(row))
        self._held.session = session
        try:
            yield
        finally:
            self._held.session = None
            session.close()

    @contextmanager
    def write(self) -> Iterator[U]:
        """A fenced transaction: committed when the block ends, rolled back when it raises.

        Raises:
            LeaseLost: the lease is no longer held; nothing is written.
        """
        held: Session | None = getattr(self._held, "session", None)
        if held is None:
            with self._sessions.begin() as session:
                self._fence.check(session, self._now())
                yield self.unit_type(session, self._audit)
            return
        with held.begin():
            self._fence.check(held, self._now())
            yield self.unit_type(held, self._audit)

    @contextmanager
    def read(self) -> Iterator[U]:
        """A session that only reads (on SQLite a snapshot, never waiting for a writer)."""
        with self._reads() as session:
            yield self.unit_type(session, self._audit)


class SqlUnitsOfWork(SqlUnits[SqlUnitOfWork]):
    """The lifecycle's units of work: sources, keys, rotations, inventory and the audit trail."""

    unit_type = SqlUnitOfWork
