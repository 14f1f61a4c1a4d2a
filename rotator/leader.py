"""The leader lease: one rotator acts at a time; the others wait; every write is fenced.

The lease is a row with a holder, an expiry and an epoch (rotator.store.lease). The holder
renews it every third of its TTL. Every write a job makes first checks, in the same transaction,
that the lease is still held under the same epoch (a conditional UPDATE of the lease row, which
also locks it on PostgreSQL until the write commits, so a takeover cannot interleave). A write
under a lost lease is refused and the job stops at once; the process becomes standby.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from rotator.audit import EPOCH_KEY, AuditLog, default_actor
from rotator.clock import Clock
from rotator.errors import DependencyUnavailable, LeaseLost
from rotator.log import get_logger
from rotator.model import iso
from rotator.notify import Notice, NoticeKind, Notifier, Severity
from rotator.store.db import session_factory
from rotator.store.lease import Lease, LeaseRepository
from rotator.store.models import LeaseRecord, as_utc
from rotator.vocabulary import AuditAction, AuditOutcome

LEASE_NAME = "lifecycle"
_log = get_logger("rotator.leader")


def holder_id() -> str:
    """Who holds the lease: host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaderLease:
    """Takes, renews and releases the leader lease, and fences every write under it."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        ttl: timedelta,
        *,
        holder: str | None = None,
        name: str = LEASE_NAME,
        on_change: Callable[[bool], None] | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self._sessions = session_factory(engine)
        self._clock = clock
        self._ttl = ttl
        self._name = name
        self.holder = holder or holder_id()
        self._audit = AuditLog(self._sessions, actor=default_actor())
        self._on_change = on_change
        self._notifier = notifier
        self._lease: Lease | None = None
        self._lost = False
        self._unaudited: tuple[int, str] | None = None
        self._lock = threading.Lock()

    # --- state -----------------------------------------------------------------------------

    @property
    def leading(self) -> bool:
        """Whether this process holds the lease (as far as it last knew)."""
        return self._lease is not None and not self._lost

    @property
    def lost(self) -> bool:
        """Whether a write was refused or a renewal failed since the lease was taken."""
        return self._lost

    @property
    def lease(self) -> Lease | None:
        """The lease as last granted to this process, or None."""
        return self._lease

    def current(self) -> Lease | None:
        """The lease as the store holds it now (whoever holds it)."""
        with self._sessions() as session:
            return LeaseRepository(session).get(self._name)

    # --- taking, renewing, releasing ---------------------------------------------------------

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it (or extend it if this process does)."""
        self.audit_loss()
        with self._lock:
            was_leading, held = self.leading, self._lease
            now = self._clock.now()
            with self._sessions.begin() as session:
                lease = LeaseRepository(session).try_acquire(
                    self._name, self.holder, now, self._ttl
                )
                if lease is not None and not was_leading:
                    self._audit.write(
                        session,
                        now=now,
                        action=AuditAction.LEADER_ACQUIRED,
                        subject=self._name,
                        outcome=AuditOutcome.SUCCESS,
                        details={"holder": self.holder, "epoch": lease.epoch},
                    )
            self._lease = lease
            if lease is not None:
                self._lost = False
        if lease is not None and not was_leading:
            _log.info("leader_acquired", holder=self.holder, epoch=lease.epoch, name=self._name)
        if self.leading != was_leading:
            self._changed("acquired" if self.leading else "lost", lease or held)
        return lease is not None

    def acquire_or_raise(self) -> Lease:
        """Take the lease for a one-off command.

        Raises:
            DependencyUnavailable: another rotator holds it (exit 3), naming who and until when.
        """
        if self.try_acquire() and self._lease is not None:
            return self._lease
        other = self.current()
        who = f"{other.holder} (epoch {other.epoch}) until {iso(other.expires_at)}" if other else ""
        raise DependencyUnavailable(
            f"another rotator holds the {self._name} lease: {who or 'unknown'}; "
            "it runs the jobs, or try again when it has stopped"
        )

    def renew(self) -> bool:
        """Extend the lease; a lease that expired or changed hands is lost (and audited)."""
        with self._lock:
            lease = self._lease
            if lease is None or self._lost:
                return False
            now = self._clock.now()
            with self._sessions.begin() as session:
                renewed = LeaseRepository(session).renew(lease, now, self._ttl)
            if renewed is not None:
                self._lease = renewed
                return True
        self._mark_lost("the lease expired or was taken before it could be renewed")
        self.audit_loss()
        return False

    def release(self) -> None:
        """Give the lease up so another rotator need not wait for it to expire."""
        with self._lock:
            lease, self._lease = self._lease, None
            if lease is None or self._lost:
                return
            now = self._clock.now()
            with self._sessions.begin() as session:
                if LeaseRepository(session).release(lease, now):
                    self._audit.write(
                        session,
                        now=now,
                        action=AuditAction.LEADER_RELEASED,
                        subject=self._name,
                        outcome=AuditOutcome.SUCCESS,
                        details={"holder": self.holder, "epoch": lease.epoch},
                    )
        _log.info("leader_released", holder=self.holder, epoch=lease.epoch, name=self._name)
        self._changed("released", lease)

    # --- fencing ---------------------------------------------------------------------------

    def check(self, session: Session, now: datetime) -> None:
        """Fence a write: refuse it unless the lease is held, live, under the same epoch.

        Raises:
            LeaseLost: the lease is lost; this process must stop acting.
        """
        lease = self._lease
        if lease is None or self._lost:
            raise LeaseLost(f"not the leader: writes under the {self._name} lease are refused")
        held = session.execute(
            sa.update(LeaseRecord)
            .where(
                LeaseRecord.name == lease.name,
                LeaseRecord.holder == lease.holder,
                LeaseRecord.epoch == lease.epoch,
                LeaseRecord.expires_at > as_utc(now),
            )
            .values(renewed_at=LeaseRecord.renewed_at)
            .execution_options(synchronize_session=False)
        )
        if held.rowcount != 1:  # type: ignore[attr-defined]
            self._mark_lost(f"a write under epoch {lease.epoch} found the lease lost")
            raise LeaseLost(
                f"the {self._name} lease (epoch {lease.epoch}) was lost: the write is refused"
            )
        session.info[EPOCH_KEY] = lease.epoch  # the audit events of this write carry it

    def _mark_lost(self, why: str) -> None:
        """Stop leading; the loss is audited in a transaction of its own, outside the write
        that found it (that one is being refused)."""
        with self._lock:
            if self._lost or self._lease is None:
                return
            self._lost = True
            lease = self._lease
            self._unaudited = (lease.epoch, why)
        _log.warning("leader_lost", holder=self.holder, epoch=lease.epoch, reason=why)
        self._changed("lost", lease, why)

    def audit_loss(self) -> None:
        """Write the ``leader.lost`` event of a loss found while writing (idempotent)."""
        with self._lock:
            pending, self._unaudited = self._unaudited, None
        if pending is None:
            return
        epoch, why = pending
        try:
            self._audit.record(
                now=self._clock.now(),
                action=AuditAction.LEADER_LOST,
                subject=self._name,
                outcome=AuditOutcome.WARNING,
                details={"holder": self.holder, "epoch": epoch, "reason": why},
            )
        except Exception as exc:  # the store may be what failed; the log has it
            _log.warning("leader_lost_not_audited", error=type(exc).__name__)

    def _changed(self, what: str, lease: Lease | None, why: str = "") -> None:
        if self._on_change is not None:
            self._on_change(self.leading)
        if self._notifier is not None:
            self._tell(self._notifier, what, lease, why)

    def _tell(self, notifier: Notifier, what: str, lease: Lease | None, why: str) -> None:
        """A ``leadership_changed`` notice, sent from a thread of its own: a slow receiver must
        not hold up the lease's renewal."""
        epoch = lease.epoch if lease is not None else None
        message = f"{self.holder} {what} the {self._name} lease (epoch {epoch})"
        notice = Notice(
            NoticeKind.LEADERSHIP_CHANGED,
            Severity.WARNING if what == "lost" else Severity.INFO,
            self._name,
            f"{message}: {why}" if why else message,
            f"{NoticeKind.LEADERSHIP_CHANGED.value}:{self.holder}:{epoch}:{what}",
            {"holder": self.holder, "epoch": epoch, "event": what, "lease": self._name},
        )
        threading.Thread(
            target=notifier.notify, args=(notice,), name="leader-notice", daemon=True
        ).start()


class Renewer:
    """Renews a held lease every third of its TTL in a background thread."""

    def __init__(self, lease: LeaderLease, ttl: timedelta) -> None:
        self._lease = lease
        self._interval = max(ttl.total_seconds() / 3, 0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lease-renewer", daemon=True)

    def __enter__(self) -> Renewer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval * 2)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if not self._lease.renew():
                    return
            except Exception as exc:  # a store hiccup: the next renewal may succeed
                _log.warning("lease_renewal_failed", error=type(exc).__name__)
