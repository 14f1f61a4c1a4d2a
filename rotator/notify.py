"""Notices: what a person may need to know, as the jobs hand it to the notifier.

A job says what happened as a :class:`Notice` (never a secret: ids, names, times, reasons) and
gives it to the :class:`Notifier` its dependencies carry. The notifier decides who hears of it;
the default one writes each notice to the log. ``dedup_key`` names the condition (and threshold):
a notifier that remembers what it sent says it once per condition, not once per run.

The notifier the daemon uses (:func:`rotator.notify_sinks.build_notifier`) logs every notice and
hands it to each configured sink whose filters take it (its ``kinds``, when given, and at least
its ``min_severity``, in the order of :data:`SEVERITY_ORDER`). Per sink and ``dedup_key`` it
remembers in the store what it sent, and sends a notice of the same condition again only when:

- the condition was resolved in between: :func:`resolve` was called with its key (the purge after
  a run without errors), or a notice of the opposite kind came (``policy_finding_cleared`` ends
  ``policy_finding`` of the same key and finding, and the other way round);
- a failure streak started over: the notice's ``failures`` count (rotation failures in a row) is
  not above the last one seen, so the source succeeded in between;
- ``notify.renotify_after`` (24 hours by default; null for never) passed since it was last sent:
  a reminder that the condition still holds.

A sink that failed (after its retries) has not been told: the next notice of the condition is
sent to it as if new.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from rotator.log import get_logger
from rotator.vocabulary import LogEvent


class Severity(StrEnum):
    """How much a notice or a finding needs someone."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    WARNING = "warning"
    CRITICAL = "critical"


# From least to most pressing: what a sink's ``min_severity`` compares against.
SEVERITY_ORDER: tuple[Severity, ...] = (
    Severity.INFO,
    Severity.LOW,
    Severity.MEDIUM,
    Severity.WARNING,
    Severity.HIGH,
    Severity.CRITICAL,
)


def at_least(severity: Severity, minimum: Severity) -> bool:
    """Whether ``severity`` is ``minimum`` or more pressing."""
    return SEVERITY_ORDER.index(severity) >= SEVERITY_ORDER.index(minimum)


class NoticeKind(StrEnum):
    """What a notice is about; sinks filter on these."""

    ROTATION_FAILED = "rotation_failed"
    EXPIRING_WHILE_FAILING = "expiring_while_failing"
    MANAGED_KEY_APPEARED = "managed_key_appeared"
    MANAGED_KEY_EXPIRING = "managed_key_expiring"
    MANAGED_KEY_EXPIRED = "managed_key_expired"
    MANAGED_KEY_INVALIDATED = "managed_key_invalidated"
    MANAGED_KEY_DELETED = "managed_key_deleted"
    POLICY_FINDING = "policy_finding"
    POLICY_FINDING_CLEARED = "policy_finding_cleared"
    PURGE_ERRORS = "purge_errors"
    LEADERSHIP_CHANGED = "leadership_changed"


@dataclass(frozen=True)
class Notice:
    """One thing to tell people. ``subject`` is a source name or ``key:<id>``."""

    kind: NoticeKind
    severity: Severity
    subject: str
    message: str
    dedup_key: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The notice as sinks send it."""
        return {
            "kind": self.kind.value,
            "severity": self.severity.value,
            "subject": self.subject,
            "message": self.message,
            "dedup_key": self.dedup_key,
            "details": dict(self.details),
        }


# A notice of the first kind ends the condition of the second with the same rest of key.
_ENDS: dict[NoticeKind, NoticeKind] = {
    NoticeKind.POLICY_FINDING_CLEARED: NoticeKind.POLICY_FINDING,
    NoticeKind.POLICY_FINDING: NoticeKind.POLICY_FINDING_CLEARED,
}


def ended_by(notice: Notice) -> str | None:
    """The dedup key of the condition ``notice`` ends (a finding cleared ends the finding)."""
    other = _ENDS.get(notice.kind)
    prefix = f"{notice.kind.value}:"
    if other is None or not notice.dedup_key.startswith(prefix):
        return None
    return f"{other.value}:{notice.dedup_key.removeprefix(prefix)}"


class Notifier(Protocol):
    """Where notices go."""

    def notify(self, notice: Notice) -> None:
        """Hand over one notice; never raises (a notifier that fails logs it)."""
        ...


_LEVELS = {Severity.CRITICAL: "error", Severity.HIGH: "warning", Severity.WARNING: "warning"}


class LogNotifier:
    """Writes every notice to the log (``notice``; error level when critical)."""

    def __init__(self) -> None:
        self._log = get_logger("rotator.notify")

    def notify(self, notice: Notice) -> None:
        """Log the notice."""
        say = getattr(self._log, _LEVELS.get(notice.severity, "info"))
        say(LogEvent.NOTICE, **notice.to_json())


def resolve(notifier: Notifier, dedup_key: str) -> None:
    """Say that the condition ``dedup_key`` names has ended, to a notifier that remembers what it
    sent (a notifier that does not ignores it): its next notice is sent again. Never raises."""
    end = getattr(notifier, "resolve", None)
    if callable(end):
        try:
            end(dedup_key)
        except Exception as exc:
            get_logger("rotator.notify").warning(
                "notice_resolve_failed", dedup_key=dedup_key, error=type(exc).__name__
            )
