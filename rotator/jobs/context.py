"""What the lifecycle's steps share: ports, clock, audit, fencing, retries, failure bookkeeping."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog

from rotator.clock import Clock
from rotator.errors import RotatorError
from rotator.log import get_logger
from rotator.model import SourceSpec
from rotator.notify import LogNotifier, Notice, Notifier
from rotator.planner import backoff_delay
from rotator.ports import KeyAuthority, Sink, UnitOfWork, UnitsOfWork
from rotator.store.uow import Fence, Unfenced
from rotator.vocabulary import AuditAction, AuditOutcome, LogEvent

SinkFactory = Callable[[SourceSpec], Sequence[Sink]]
Checkpoint = Callable[[str], None]
T = TypeVar("T")

__all__ = ["CREATE_WAITS", "READ_WAITS", "Deps", "Fence", "Unfenced", "describe", "no_checkpoint"]

# Waits between attempts at an idempotent Elasticsearch call within one run (seconds).
READ_WAITS = (0.5, 1.0, 2.0)
# Waits between attempts at creating a key, each preceded by a look-up of what the last made.
CREATE_WAITS = (1.0, 2.0)


def no_checkpoint(_name: str) -> None:
    """The checkpoint used outside tests: nothing happens between steps."""


@dataclass(frozen=True)
class Deps:
    """The ports and settings every lifecycle step works through, for one job run."""

    store: UnitsOfWork
    authority: KeyAuthority
    clock: Clock
    sinks: SinkFactory
    backoff_initial: timedelta = timedelta(minutes=1)
    backoff_max: timedelta = timedelta(hours=1)
    checkpoint: Checkpoint = no_checkpoint
    job: str = "lifecycle"
    run_id: str = ""
    log: Any = field(default_factory=lambda: get_logger("rotator.lifecycle"))
    notifier: Notifier = field(default_factory=LogNotifier)

    def for_run(self, job: str) -> Deps:
        """The same ports for one run of ``job``: a fresh run id every event carries."""
        run_id = uuid.uuid4().hex[:12]
        log: structlog.stdlib.BoundLogger = get_logger("rotator.lifecycle", job=job, run_id=run_id)
        return replace(self, job=job, run_id=run_id, log=log)

    def now(self) -> datetime:
        """The current time, from the injected clock."""
        return self.clock.now()

    def read(self) -> AbstractContextManager[UnitOfWork]:
        """A unit that only reads (on SQLite: a snapshot, never waiting for a writer)."""
        return self.store.read()

    def write(self) -> AbstractContextManager[UnitOfWork]:
        """A unit of work, fenced: a writer that lost the lease writes nothing.

        Raises:
            LeaseLost: the lease is no longer held.
        """
        return self.store.write()

    def audit_in(
        self,
        uow: UnitOfWork,
        action: AuditAction,
        subject: str,
        outcome: AuditOutcome = AuditOutcome.SUCCESS,
        **details: Any,
    ) -> None:
        """Record an audit event in the unit of the change it records (with the run it is of)."""
        uow.audit(
            now=self.now(),
            action=action,
            subject=subject,
            outcome=outcome,
            details={**details, **self.run_details()},
        )

    def notify(self, notice: Notice) -> None:
        """Hand a notice to the notifier, with the job and run it comes from."""
        self.notifier.notify(replace(notice, details={**notice.details, **self.run_details()}))

    def run_details(self) -> dict[str, str]:
        """The job and run an audit event belongs to (nothing outside a run)."""
        return {"job": self.job, "run_id": self.run_id} if self.run_id else {}

    def retrying(self, what: str, call: Callable[[], T]) -> T:
        """Run an idempotent call, retrying a retryable failure with a short backoff.

        Raises:
            RotatorError: the last attempt failed, or the failure is not retryable.
        """
        waits = list(READ_WAITS)
        while True:
            try:
                return call()
            except RotatorError as exc:
                if not exc.retryable or not waits:
                    raise
                wait = waits.pop(0)
                self.log.warning(
                    LogEvent.ELASTICSEARCH_CALL_RETRIED,
                    what=what,
                    error=exc.message,
                    retry_in_s=wait,
                )
                self.clock.sleep(wait)

    def record_source_failure(
        self, uow: UnitOfWork, source: str, error: str
    ) -> tuple[int, datetime]:
        """Count one more failure of ``source`` and back it off; returns (failures, retry_at)."""
        now = self.now()
        sources = uow.sources
        failures = sources.require(source).failure_count + 1
        retry_at = now + backoff_delay(failures, self.backoff_initial, self.backoff_max)
        sources.record_failure(source, error, now=now, next_attempt_at=retry_at)
        return failures, retry_at


def describe(exc: BaseException) -> str:
    """One line for the store and the audit trail: never a sink's output, never a secret.

    A sink's failure may carry a ``summary`` without its captured output; rotator's own errors
    carry a message written without secrets; anything else is named by its type alone (its text
    may hold anything, so it goes only to the redacted log).
    """
    summary = getattr(exc, "summary", None)
    if isinstance(summary, str) and summary:
        return summary
    if isinstance(exc, RotatorError):
        return exc.message
    return f"unexpected {type(exc).__name__}"
