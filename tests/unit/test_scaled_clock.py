"""ScaledClock: real time sped up, as the demo's daemon and sandbox share it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rotator import clock as clock_module
from rotator.clock import ScaledClock

START = datetime(2030, 1, 1, tzinfo=UTC)


class FakeTime:
    """Stands in for the ``time`` module: a monotonic reading moved by hand, sleeps recorded."""

    def __init__(self) -> None:
        self.reading = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.reading

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.reading += seconds


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(clock_module, "time", fake)
    return fake


def test_now_is_start_plus_real_elapsed_times_speed(fake_time: FakeTime) -> None:
    clock = ScaledClock(START, speed=3600)
    assert clock.now() == START
    fake_time.reading += 2.5
    assert clock.now() == START + timedelta(hours=2.5)
    assert clock.monotonic() == pytest.approx(9000.0)


def test_sleep_waits_the_scaled_time_divided_by_speed(fake_time: FakeTime) -> None:
    clock = ScaledClock(START, speed=86400)
    clock.sleep(86400 * 2)  # two scaled days
    assert fake_time.slept == [pytest.approx(2.0)]
    assert clock.now() == START + timedelta(days=2)
    clock.sleep(0)
    clock.sleep(-5)
    assert len(fake_time.slept) == 1
    assert clock.real_seconds(timedelta(days=1)) == pytest.approx(1.0)


def test_start_is_kept_in_utc(fake_time: FakeTime) -> None:
    from datetime import timezone

    plus_two = timezone(timedelta(hours=2))
    clock = ScaledClock(datetime(2030, 1, 1, 2, tzinfo=plus_two), speed=10)
    assert clock.now() == START
    assert clock.now().tzinfo == UTC
    assert clock.speed == 10.0


@pytest.mark.parametrize("speed", [0, -1.0])
def test_speed_must_be_positive(speed: float) -> None:
    with pytest.raises(ValueError, match="positive speed"):
        ScaledClock(START, speed)


def test_start_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ScaledClock(datetime(2030, 1, 1), 10)  # noqa: DTZ001 - the naive value under test
