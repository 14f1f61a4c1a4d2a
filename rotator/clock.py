"""The one place that reads the time: a Clock protocol, the system clock and a manual clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Tells the current UTC time and waits; everything else takes ``now`` as an argument."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware in UTC."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait for ``seconds``."""
        ...

    def monotonic(self) -> float:
        """Return a monotonic reading in seconds, for measuring durations."""
        ...


class SystemClock:
    """The wall clock of the machine."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that only moves when told to; sleeping advances it."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)
        self._mono = 0.0

    def now(self) -> datetime:
        return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(timedelta(seconds=max(seconds, 0.0)))

    def monotonic(self) -> float:
        return self._mono

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward by ``delta``."""
        if delta < timedelta(0):
            raise ValueError("a clock never goes backwards")
        self._now += delta
        self._mono += delta.total_seconds()


def utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime (naive values are taken to be UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
