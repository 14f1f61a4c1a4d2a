"""Named leases (the leader lease): one holder at a time, taken over only after expiry.

Taking a lease is one conditional upsert (``INSERT ... ON CONFLICT DO UPDATE ... WHERE``), so two
replicas racing for it cannot both win: the row is inserted, or updated only if it has expired or
already belongs to the caller. Every takeover bumps the lease's epoch, a fencing token the holder
can attach to what it writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from rotator.store.models import LeaseRecord, as_utc


@dataclass(frozen=True)
class Lease:
    """A lease as granted: who holds it, until when, and under which epoch."""

    name: str
    holder: str
    epoch: int
    acquired_at: datetime
    expires_at: datetime
    renewed_at: datetime

    def is_live(self, now: datetime) -> bool:
        """Whether the lease still holds at ``now`` (it lapses at ``expires_at`` exactly)."""
        return as_utc(now) < self.expires_at


_COLUMNS = (
    LeaseRecord.name,
    LeaseRecord.holder,
    LeaseRecord.epoch,
    LeaseRecord.acquired_at,
    LeaseRecord.expires_at,
    LeaseRecord.renewed_at,
)


class LeaseRepository:
    """Acquires, renews and releases leases in the caller's transaction (it never commits)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, name: str) -> Lease | None:
        """Return the lease called ``name`` as stored (live or not), or None."""
        query = sa.select(*_COLUMNS).where(LeaseRecord.name == name)
        return _lease(self._session.execute(query).first())

    def try_acquire(self, name: str, holder: str, now: datetime, ttl: timedelta) -> Lease | None:
        """Take the lease for ``ttl`` unless another holder's lease is live at ``now``.

        The holder of a live lease extends it and keeps its epoch; anyone taking a lease that
        has expired (or was released) gets the next epoch.

        Returns:
            The lease as granted, or None when someone else holds it.
        """
        now = as_utc(now)
        statement = self._upsert(name, holder, now, now + _positive(ttl))
        return _lease(self._session.execute(statement.returning(*_COLUMNS)).first())

    def renew(self, lease: Lease, now: datetime, ttl: timedelta) -> Lease | None:
        """Extend a live lease to ``now + ttl``.

        Returns:
            The extended lease, or None when it expired or changed hands: the lease is lost.
        """
        now = as_utc(now)
        values = {"expires_at": now + _positive(ttl), "renewed_at": now}
        return self._update_if_held(lease, now, values)

    def release(self, lease: Lease, now: datetime) -> bool:
        """Give the lease up at ``now`` so another holder need not wait for it to expire.

        Returns:
            Whether the lease was still held and is now released.
        """
        now = as_utc(now)
        return self._update_if_held(lease, now, {"expires_at": now}) is not None

    def _upsert(self, name: str, holder: str, now: datetime, expires_at: datetime) -> sa.Insert:
        statement = _insert(self._dialect()).values(
            name=name,
            holder=holder,
            epoch=1,
            acquired_at=now,
            expires_at=expires_at,
            renewed_at=now,
        )
        mine_and_live = sa.and_(LeaseRecord.holder == holder, LeaseRecord.expires_at > now)
        return statement.on_conflict_do_update(
            index_elements=[LeaseRecord.name],
            set_={
                "holder": statement.excluded.holder,
                "epoch": sa.case((mine_and_live, LeaseRecord.epoch), else_=LeaseRecord.epoch + 1),
                "acquired_at": sa.case(
                    (mine_and_live, LeaseRecord.acquired_at), else_=statement.excluded.acquired_at
                ),
                "expires_at": statement.excluded.expires_at,
                "renewed_at": statement.excluded.renewed_at,
            },
            where=sa.or_(LeaseRecord.expires_at <= now, LeaseRecord.holder == holder),
        )

    def _update_if_held(
        self, lease: Lease, now: datetime, values: dict[str, datetime]
    ) -> Lease | None:
        statement = (
            sa.update(LeaseRecord)
            .where(
                LeaseRecord.name == lease.name,
                LeaseRecord.holder == lease.holder,
                LeaseRecord.epoch == lease.epoch,
                LeaseRecord.expires_at > now,
            )
            .values(values)
            .returning(*_COLUMNS)
            .execution_options(synchronize_session=False)
        )
        return _lease(self._session.execute(statement).first())

    def _dialect(self) -> str:
        return self._session.get_bind().dialect.name


def _insert(dialect: str) -> postgresql.Insert | sqlite.Insert:
    # Both dialects spell "INSERT ... ON CONFLICT DO UPDATE ... WHERE" the same way.
    if dialect == "postgresql":
        return postgresql.insert(LeaseRecord)
    return sqlite.insert(LeaseRecord)


def _lease(row: Sequence[Any] | None) -> Lease | None:
    # Writes return the row only when they changed it: no row means the lease was not granted.
    return None if row is None else Lease(*row)


def _positive(ttl: timedelta) -> timedelta:
    if ttl <= timedelta(0):
        raise ValueError(f"a lease needs a positive ttl, got {ttl}")
    return ttl
