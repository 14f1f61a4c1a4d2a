"""The purge job's store: tombstones of purged keys, rotator's key rows it settles, and the units
of work (fenced, with the audit trail) it writes them through.

Writes go by the batch: one SELECT of the batch's stored tombstones, one INSERT of the new ones
and one UPDATE (executemany) of the rest, however many keys the batch holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from rotator.audit import AuditLog
from rotator.states import KeyState
from rotator.store.models import ApiKey, PurgedKey, as_utc
from rotator.store.uow import SqlUnitOfWork, SqlUnits

INVALIDATED = "invalidated"


@dataclass(frozen=True)
class Tombstone:
    """What the purge did to one key, as the store keeps it."""

    es_id: str
    name: str
    owner: str
    realm: str
    expired_at: datetime | None
    outcome: str
    reason: str
    run_id: str
    purged_at: datetime
    error: str | None = None

    def row(self) -> dict[str, Any]:
        """The column values."""
        return {
            "es_id": self.es_id,
            "name": self.name,
            "owner": self.owner,
            "realm": self.realm,
            "expired_at": None if self.expired_at is None else as_utc(self.expired_at),
            "outcome": self.outcome,
            "error": self.error,
            "reason": self.reason,
            "run_id": self.run_id,
            "purged_at": as_utc(self.purged_at),
        }


class TombstoneRepository:
    """Rows of ``purged_keys``."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def record(self, tombstones: Sequence[Tombstone]) -> None:
        """Insert or update one tombstone per key.

        A key already recorded as invalidated keeps that record (the run that invalidated it is
        the evidence); any other outcome is replaced by the newer one.
        """
        if not tombstones:
            return
        ids = [t.es_id for t in tombstones]
        stored = dict(
            self._session.execute(
                sa.select(PurgedKey.es_id, PurgedKey.outcome).where(PurgedKey.es_id.in_(ids))
            ).all()
        )
        new = [t.row() for t in tombstones if t.es_id not in stored]
        changed = [
            t.row() for t in tombstones if t.es_id in stored and stored[t.es_id] != INVALIDATED
        ]
        if new:
            self._session.execute(sa.insert(PurgedKey), new)
        if changed:
            self._session.execute(sa.update(PurgedKey), changed)

    def get(self, es_id: str) -> PurgedKey | None:
        """The tombstone of ``es_id``, or None."""
        return self._session.get(PurgedKey, es_id)

    def all(self) -> list[PurgedKey]:
        """Every tombstone, oldest first (for tests and small stores)."""
        query = sa.select(PurgedKey).order_by(PurgedKey.purged_at, PurgedKey.es_id)
        return list(self._session.scalars(query))

    def delete_older_than(self, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` tombstones recorded before ``before``; returns how many."""
        doomed = (
            sa.select(PurgedKey.es_id)
            .where(PurgedKey.purged_at < as_utc(before))
            .order_by(PurgedKey.purged_at)
            .limit(limit)
        )
        ids = list(self._session.scalars(doomed))
        if ids:
            self._session.execute(sa.delete(PurgedKey).where(PurgedKey.es_id.in_(ids)))
        return len(ids)

    # --- rotator's own key rows ---------------------------------------------------------------

    def key_rows(self, es_ids: Sequence[str]) -> list[ApiKey]:
        """Rotator's key rows for these Elasticsearch ids that are not invalidated yet."""
        if not es_ids:
            return []
        query = sa.select(ApiKey).where(
            ApiKey.es_id.in_(list(es_ids)), ApiKey.state != KeyState.INVALIDATED
        )
        return list(self._session.scalars(query))

    def unsettled_keys(self, expired_by: datetime) -> list[ApiKey]:
        """Rotator's keys it gave up (failed) or retired whose invalidation has not happened,
        and that expired by ``expired_by``."""
        query = (
            sa.select(ApiKey)
            .where(ApiKey.state.in_([KeyState.RETIRING, KeyState.FAILED]))
            .where(ApiKey.es_id.is_not(None))
            .where(ApiKey.expires_at <= as_utc(expired_by))
            .order_by(ApiKey.id)
        )
        return list(self._session.scalars(query))


class PurgeUnit(SqlUnitOfWork):
    """A unit of work that also reaches the tombstones."""

    def __init__(self, session: Session, audit: AuditLog) -> None:
        super().__init__(session, audit)
        self.tombstones = TombstoneRepository(session)


class PurgeUnits(SqlUnits[PurgeUnit]):
    """Where the purge job's units of work come from, every write checked against the fence."""

    unit_type = PurgeUnit


def tombstone_counts(rows: Sequence[PurgedKey]) -> Mapping[str, int]:
    """Tombstones by outcome."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.outcome] = counts.get(row.outcome, 0) + 1
    return counts
