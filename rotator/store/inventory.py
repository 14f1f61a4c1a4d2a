"""The key inventory's rows: every key the track job sees, and one row per sweep.

Writes go by the page: one SELECT for the page's stored rows, one INSERT for the new ones and
one UPDATE (executemany) for the rest, however many keys the page holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from rotator.store.models import InventorySweep, TrackedKey, as_utc

GONE = "gone"
TRACKED: sa.Table = TrackedKey.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class KeyFilter:
    """What ``rotator keys`` asks of the inventory; every field narrows the listing."""

    key_class: str | None = None
    expiring_before: datetime | None = None  # active keys expiring at or before this time
    expired: bool = False  # keys that are expired now (not invalidated)
    owner: str | None = None
    finding: str | None = None
    include_gone: bool = False


class InventoryRepository:
    """Rows of ``tracked_keys`` and ``inventory_sweeps``."""

    def __init__(self, session: Session) -> None:
        self._session = session

    # --- sweeps -----------------------------------------------------------------------------

    def start_sweep(self, run_id: str, now: datetime, scope: str, principal: str) -> int:
        """Record that a sweep began; returns its id (a key seen by it carries the id)."""
        sweep = InventorySweep(
            run_id=run_id,
            started_at=as_utc(now),
            scope=scope,
            principal=principal,
            seen=0,
            pages=0,
            ok=False,
            counts_json={},
        )
        self._session.add(sweep)
        self._session.flush()
        return int(sweep.id)

    def finish_sweep(
        self,
        sweep_id: int,
        now: datetime,
        *,
        ok: bool,
        seen: int,
        pages: int,
        counts: Mapping[str, Any],
        error: str | None = None,
    ) -> None:
        """Record how the sweep ended."""
        self._session.execute(
            sa.update(InventorySweep)
            .where(InventorySweep.id == sweep_id)
            .values(
                finished_at=as_utc(now),
                ok=ok,
                seen=seen,
                pages=pages,
                counts_json=dict(counts),
                error=error,
            )
        )

    def last_sweep(self, *, ok_only: bool = True) -> InventorySweep | None:
        """The newest finished sweep (the newest that succeeded, with ``ok_only``)."""
        query = sa.select(InventorySweep).where(InventorySweep.finished_at.is_not(None))
        if ok_only:
            query = query.where(InventorySweep.ok.is_(True))
        return self._session.scalars(query.order_by(InventorySweep.id.desc()).limit(1)).first()

    def has_keys(self) -> bool:
        """Whether any key was ever tracked (the first sweep only takes a baseline)."""
        return self._session.scalar(sa.select(TrackedKey.es_id).limit(1)) is not None

    # --- keys -------------------------------------------------------------------------------

    def by_ids(self, ids: Sequence[str]) -> dict[str, TrackedKey]:
        """The stored rows of these keys, in one statement."""
        if not ids:
            return {}
        rows = self._session.scalars(sa.select(TrackedKey).where(TrackedKey.es_id.in_(ids)))
        return {row.es_id: row for row in rows}

    def get(self, es_id: str) -> TrackedKey | None:
        """One key's row, or None."""
        return self._session.get(TrackedKey, es_id)

    def insert_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert new keys in one executemany statement (every row names the same columns).

        Core, not the ORM's bulk insert: the ORM splits the rows wherever their ``None`` values
        differ, which would make one statement per key of a mixed page.
        """
        if rows:
            self._session.connection().execute(TRACKED.insert(), [dict(r) for r in rows])

    def update_many(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Update keys by id: one executemany per set of columns (each row names ``es_id``)."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            columns = tuple(sorted(k for k in row if k != "es_id"))
            groups.setdefault(columns, []).append(
                {"key_id": row["es_id"], **{f"v_{c}": row[c] for c in columns}}
            )
        for columns, params in groups.items():
            statement = (
                TRACKED.update()
                .where(TRACKED.c.es_id == sa.bindparam("key_id"))
                .values({c: sa.bindparam(f"v_{c}") for c in columns})
            )
            self._session.connection().execute(statement, params)

    def unseen(
        self, sweep_id: int, limit: int, *, owner: tuple[str, str] | None = None
    ) -> list[TrackedKey]:
        """Up to ``limit`` keys not gone and not seen by sweep ``sweep_id``.

        With ``owner`` (user, realm), only that owner's keys: a sweep that sees only its own
        keys says nothing of the others'.
        """
        query = sa.select(TrackedKey).where(
            TrackedKey.state != GONE, TrackedKey.sweep_id < sweep_id
        )
        if owner is not None:
            query = query.where(TrackedKey.owner == owner[0], TrackedKey.realm == owner[1])
        return list(self._session.scalars(query.order_by(TrackedKey.es_id).limit(limit)))

    def forget_gone(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` rows of keys gone before ``before``; returns how many."""
        doomed = (
            sa.select(TrackedKey.es_id)
            .where(TrackedKey.state == GONE, TrackedKey.gone_at < as_utc(before))
            .limit(limit)
        )
        ids = list(self._session.scalars(doomed))
        if ids:
            self._session.execute(sa.delete(TrackedKey).where(TrackedKey.es_id.in_(ids)))
        return len(ids)

    def listing(
        self, wanted: KeyFilter, now: datetime, page_size: int = 1000
    ) -> Iterator[TrackedKey]:
        """The keys ``wanted`` selects, soonest expiry first (never-expiring last), by page."""
        query = sa.select(TrackedKey)
        if not wanted.include_gone:
            query = query.where(TrackedKey.state != GONE)
        if wanted.key_class is not None:
            query = query.where(TrackedKey.key_class == wanted.key_class)
        if wanted.owner is not None:
            query = query.where(TrackedKey.owner == wanted.owner)
        if wanted.expiring_before is not None:
            query = query.where(
                TrackedKey.state == "active",
                TrackedKey.expires_at.is_not(None),
                TrackedKey.expires_at <= as_utc(wanted.expiring_before),
            )
        if wanted.expired:
            query = query.where(TrackedKey.state == "expired")
        order = (
            sa.case((TrackedKey.expires_at.is_(None), 1), else_=0),
            TrackedKey.expires_at,
            TrackedKey.es_id,
        )
        offset = 0
        while True:
            page = list(
                self._session.scalars(query.order_by(*order).offset(offset).limit(page_size))
            )
            for row in page:
                if wanted.finding is None or any(
                    f.get("kind") == wanted.finding for f in row.findings_json
                ):
                    yield row
            if len(page) < page_size:
                return
            offset += page_size

    def counts(self) -> dict[str, dict[str, int]]:
        """Keys by class and state (gone keys left out)."""
        query = (
            sa.select(TrackedKey.key_class, TrackedKey.state, sa.func.count())
            .where(TrackedKey.state != GONE)
            .group_by(TrackedKey.key_class, TrackedKey.state)
        )
        out: dict[str, dict[str, int]] = {}
        for key_class, state, n in self._session.execute(query):
            out.setdefault(str(key_class), {})[str(state)] = int(n)
        return out


def older_than(now: datetime, age: timedelta) -> datetime:
    """``now - age`` in UTC (the cut-off of a retention)."""
    return as_utc(now) - age
