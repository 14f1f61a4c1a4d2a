"""An in-memory unit of work with the SQL store's semantics, for fast lifecycle tests.

The committed state is dicts of the store's mapped rows (used as plain data holders, never
attached to a session). Each unit works on its own copy of every row and the copy replaces the
committed state only when a ``write()`` block ends without raising: a failed unit leaves nothing
behind, and rows a caller kept from an earlier unit are never changed by a later one. Writers are
serialised, as SQLite serialises its write transactions. The audit events are chained by the
same SHA-256 hashes as ``rotator.audit`` and redacted the same way.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rotator.audit import GENESIS, event_hash, verify_events
from rotator.clock import Clock, SystemClock
from rotator.errors import LeaseLost
from rotator.log import redact_mapping
from rotator.store.models import ApiKey, AuditEvent, Rotation, as_utc
from rotator.store.uow import Fence
from rotator.vocabulary import AuditAction, AuditOutcome
from tests.fakes.repositories import InMemoryKeys, InMemoryRotations, InMemorySources, Tables

__all__ = ["InMemoryStore", "InMemoryUnitOfWork"]


class InMemoryUnitOfWork:
    """One unit's working copy of the store."""

    def __init__(self, tables: Tables, ids: Iterator[int], actor: str) -> None:
        self.tables = tables
        self._actor = actor
        self.sources = InMemorySources(tables)
        self.keys = InMemoryKeys(tables, ids)
        self.rotations = InMemoryRotations(tables)

    def key_row(self, row_id: int) -> ApiKey | None:
        """The key row with this id, or None."""
        return self.tables.keys.get(row_id)

    def rotation_row(self, rotation_id: str) -> Rotation | None:
        """The rotation with this id, or None."""
        return self.tables.rotations.get(rotation_id)

    def audit(
        self,
        *,
        now: datetime,
        action: AuditAction,
        subject: str,
        outcome: AuditOutcome,
        details: Mapping[str, Any],
    ) -> int:
        """Append a redacted event chained to the last one; returns its sequence number."""
        clean = json.loads(json.dumps(redact_mapping(dict(details)), default=str))
        events = self.tables.events
        prev = events[-1].hash if events else GENESIS
        seq = events[-1].seq + 1 if events else 1
        at = as_utc(now)
        digest = event_hash(prev, seq, at, self._actor, action.value, subject, outcome.value, clean)
        events.append(
            AuditEvent(
                seq=seq,
                at=at,
                actor=self._actor,
                action=action.value,
                subject=subject,
                outcome=outcome.value,
                details_json=clean,
                prev_hash=prev,
                hash=digest,
            )
        )
        return seq


@dataclass
class _Shared:
    """What every fenced view of one in-memory store shares."""

    committed: Tables = field(default_factory=Tables)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)
    writer: int | None = None
    lease_lost: bool = False


class InMemoryStore:
    """Units of work over the in-memory store.

    ``lose_lease`` makes every later write refused; ``fenced`` gives a view of the same store whose
    writes a lease fence checks first (it is handed the store itself in place of a session).
    """

    def __init__(
        self,
        actor: str = "rotator@test",
        *,
        fence: Fence | None = None,
        clock: Clock | None = None,
        _shared: _Shared | None = None,
    ) -> None:
        self.actor = actor
        self._fence = fence
        self._clock: Clock = clock or SystemClock()
        self._shared = _shared or _Shared()

    @property
    def lost(self) -> bool:
        """Whether a write was refused because the lease is gone."""
        return self._shared.lease_lost or (self._fence is not None and self._fence.lost)

    def lose_lease(self) -> None:
        """From now on a write raises LeaseLost before anything is written."""
        self._shared.lease_lost = True

    def fenced(self, fence: Fence) -> InMemoryStore:
        """The same store, every write checked against ``fence``."""
        return InMemoryStore(self.actor, fence=fence, clock=self._clock, _shared=self._shared)

    @contextmanager
    def write(self) -> Iterator[InMemoryUnitOfWork]:
        """A unit whose changes become the store's when the block ends without raising.

        Raises:
            LeaseLost: the lease was lost, or the fence refused the write.
            RuntimeError: a write was opened inside another on the same thread.
        """
        shared = self._shared
        if shared.writer == threading.get_ident():
            raise RuntimeError("a write unit was opened inside another one")
        with shared.lock:
            if shared.lease_lost:
                raise LeaseLost("the leader lease was lost: nothing is written")
            if self._fence is not None:
                self._fence.check(self, self._clock.now())  # type: ignore[arg-type]
            shared.writer = threading.get_ident()
            try:
                work = shared.committed.copy()
                yield InMemoryUnitOfWork(work, shared.ids, self.actor)
                shared.committed = work
            finally:
                shared.writer = None

    @contextmanager
    def held(self) -> Iterator[None]:
        """Units share nothing here: every unit already works on the committed tables."""
        yield

    @contextmanager
    def read(self) -> Iterator[InMemoryUnitOfWork]:
        """A unit over a snapshot; whatever changes through it is discarded."""
        yield InMemoryUnitOfWork(self.snapshot(), self._shared.ids, self.actor)

    def snapshot(self) -> Tables:
        """A copy of the committed state, for assertions."""
        with self._shared.lock:
            return self._shared.committed.copy()

    def verify_audit_chain(self) -> tuple[bool, int]:
        """Recompute every event's hash in order: (whether the chain holds, how many events)."""
        events = self.snapshot().events
        return verify_events(events).ok, len(events)
