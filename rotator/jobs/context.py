"""What the lifecycle's steps share: ports, clock, audit log, retries and failure bookkeeping."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker

from rotator.audit import AuditLog
from rotator.clock import Clock
from rotator.errors import RotatorError
from rotator.log import get_logger
from rotator.model import SourceSpec
from rotator.planner import backoff_delay
from rotator.ports import KeyAuthority, Sink
from rotator.store.repositories import SourceRepository

SinkFactory = Callable[[SourceSpec], Sequence[Sink]]
Checkpoint = Callable[[str], None]
T = TypeVar("T")

# Waits between attempts at an idempotent Elasticsearch call within one run (seconds).
READ_WAITS = (0.5, 1.0, 2.0)
# Waits between attempts at creating a key, each preceded by a look-up of what the last made.
CREATE_WAITS = (1.0, 2.0)

_log = get_logger("rotator.lifecycle")


def no_checkpoint(_name: str) -> None:
    """The checkpoint used outside tests: nothing happens between steps."""


@dataclass(frozen=True)
class Deps:
    """The ports and settings every lifecycle step works through."""

    sessions: sessionmaker[Session]
    authority: KeyAuthority
    clock: Clock
    audit: AuditLog
    sinks: SinkFactory
    backoff_initial: timedelta = timedelta(minutes=1)
    backoff_max: timedelta = timedelta(hours=1)
    checkpoint: Checkpoint = no_checkpoint

    def now(self) -> datetime:
        """The current time, from the injected clock."""
        return self.clock.now()

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
                _log.warning(
                    "elasticsearch_call_retried", what=what, error=exc.message, retry_in_s=wait
                )
                self.clock.sleep(wait)

    def record_source_failure(self, source: str, error: str) -> tuple[int, datetime]:
        """Count one more failure of ``source`` and back it off; returns (failures, retry_at)."""
        now = self.now()
        with self.sessions.begin() as session:
            sources = SourceRepository(session)
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
