"""Notices: what a person may need to know, as the jobs hand it to the notifier.

A job says what happened as a :class:`Notice` (never a secret: ids, names, times, reasons) and
gives it to the :class:`Notifier` its dependencies carry. The notifier decides who hears of it;
the default one writes each notice to the log. ``dedup_key`` names the condition (and threshold):
a notifier that remembers what it sent says it once per condition, not once per run.
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
