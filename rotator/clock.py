"""The one place that reads the time: a Clock protocol, the system clock, a manual clock and a
scaled clock (real time sped up, for the demo)."""

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


class ScaledClock:
    """Real time sped up: ``now`` is ``start`` plus the real time elapsed since creation times
    ``speed``; sleeping ``s`` seconds waits ``s / speed`` real seconds.

    ``rotator sandbox demo`` gives it to the daemon and to the sandbox, so a month of key
    lifetimes passes in under a minute while both agree on the time.
    """

    def __init__(self, start: datetime, speed: float) -> None:
        if start.tzinfo is None:
            raise ValueError("ScaledClock needs a timezone-aware start time")
        if not speed > 0:
            raise ValueError("ScaledClock needs a positive speed")
        self._start = start.astimezone(UTC)
        self._speed = float(speed)
        self._origin = time.monotonic()

    @property
    def speed(self) -> float:
        """Scaled seconds per real second."""
        return self._speed

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.monotonic())

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self._speed)

    def monotonic(self) -> float:
        """Scaled seconds elapsed since creation."""
        return (time.monotonic() - self._origin) * self._speed

    def real_seconds(self, scaled: timedelta) -> float:
        """How many real seconds ``scaled`` of this clock's time takes."""
        return scaled.total_seconds() / self._speed


def wall_now() -> datetime:
    """The real time now, for the scheduler's own triggers, which always run on real time
    (whatever clock the jobs decide by)."""
    return datetime.now(UTC)


def utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime (naive values are taken to be UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
