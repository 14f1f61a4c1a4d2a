"""The dispatcher: filters by kind and severity, one notification per condition across runs
(remembered in the store), resolution, reminders, retries with backoff; purge and leadership
notices."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from rotator.app import build_deps
from rotator.audit import AuditLog
from rotator.clock import ManualClock
from rotator.config import validate_config
from rotator.jobs.purge import Purger, PurgeSettings
from rotator.leader import LeaderLease
from rotator.notify import (
    LogNotifier,
    Notice,
    NoticeKind,
    Severity,
    at_least,
    ended_by,
    resolve,
)
from rotator.notify_sinks import (
    Dispatcher,
    NotifyFailed,
    Outgoing,
    Route,
    SqlLedger,
    Unlogged,
    build_notifier,
)
from rotator.store import db
from rotator.store.models import NoticeSent
from rotator.store.tombstones import PurgeUnits
from tests.unit.test_purge import StubAuthority, key

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@dataclass
class FakeChannel:
    """Records what it is sent; fails as scripted (a list of errors, one per attempt)."""

    name: str = "fake"
    failures: list[NotifyFailed] = field(default_factory=list)
    sent: list[Outgoing] = field(default_factory=list)
    attempts: int = 0

    def send(self, outgoing: Outgoing) -> None:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(outgoing)


class Silent:
    """A notifier standing in for the log."""

    def notify(self, notice: Notice) -> None:
        return


def failed_rotation(source: str = "web", failures: int = 1) -> Notice:
    return Notice(
        NoticeKind.ROTATION_FAILED,
        Severity.WARNING,
        source,
        f"rotating the key of {source} failed ({failures} in a row): sink refused",
        f"rotation_failed:{source}",
        {"source": source, "failures": failures, "error": "sink refused"},
    )


def finding(cleared: bool = False) -> Notice:
    kind = NoticeKind.POLICY_FINDING_CLEARED if cleared else NoticeKind.POLICY_FINDING
    return Notice(
        kind,
        Severity.INFO if cleared else Severity.HIGH,
        "key:abc",
        "user key 'x' of bob: no_expiration",
        f"{kind.value}:abc:no_expiration",
        {"key_id": "abc", "finding": "no_expiration"},
    )


@pytest.fixture
def ledger(migrated_engine: Engine) -> SqlLedger:
    return SqlLedger(migrated_engine)


def dispatcher(
    ledger: SqlLedger,
    clock: ManualClock,
    *routes: Route,
    renotify_after: timedelta | None = timedelta(hours=24),
) -> Dispatcher:
    """A fresh dispatcher, as each job run builds one: only the store remembers."""
    return Dispatcher(list(routes), ledger, clock, renotify_after=renotify_after, also=Silent())


# --- filters --------------------------------------------------------------------------------------


def test_severity_order() -> None:
    assert at_least(Severity.CRITICAL, Severity.WARNING)
    assert at_least(Severity.WARNING, Severity.WARNING)
    assert at_least(Severity.HIGH, Severity.MEDIUM)
    assert not at_least(Severity.INFO, Severity.LOW)
    assert not at_least(Severity.WARNING, Severity.HIGH)


def test_a_sink_gets_only_the_kinds_it_asks_for(ledger: SqlLedger) -> None:
    rotations, everything = FakeChannel("rotations"), FakeChannel("all")
    clock = ManualClock(NOW)
    notifier = dispatcher(
        ledger,
        clock,
        Route(rotations, kinds=frozenset({NoticeKind.ROTATION_FAILED})),
        Route(everything),
    )
    notifier.notify(failed_rotation())
    notifier.notify(finding())
    assert [o.notice.kind for o in rotations.sent] == [NoticeKind.ROTATION_FAILED]
    assert [o.notice.kind for o in everything.sent] == [
        NoticeKind.ROTATION_FAILED,
        NoticeKind.POLICY_FINDING,
    ]


def test_a_sink_gets_only_notices_of_its_minimum_severity_or_more(ledger: SqlLedger) -> None:
    pager = FakeChannel("pager")
    notifier = dispatcher(ledger, ManualClock(NOW), Route(pager, min_severity=Severity.HIGH))
    notifier.notify(failed_rotation())  # warning: below high
    notifier.notify(finding())  # high
    notifier.notify(finding(cleared=True))  # info
    critical = Notice(
        NoticeKind.EXPIRING_WHILE_FAILING, Severity.CRITICAL, "web", "expires", "ewf:web:k1"
    )
    notifier.notify(critical)
    assert [o.notice.severity for o in pager.sent] == [Severity.HIGH, Severity.CRITICAL]


# --- deduplication --------------------------------------------------------------------------------


def test_the_same_condition_is_sent_once_across_runs(
    ledger: SqlLedger, migrated_engine: Engine
) -> None:
    channel = FakeChannel()
    clock = ManualClock(NOW)
    for failures in (1, 2, 3):
        dispatcher(ledger, clock, Route(channel)).notify(failed_rotation(failures=failures))
        clock.advance(timedelta(minutes=5))
    assert len(channel.sent) == 1
    assert channel.sent[0].reason == "new"
    with Session(migrated_engine) as session:
        row = session.get(NoticeSent, ("fake", "rotation_failed:web"))
        assert row is not None
        assert (row.sent_count, row.failures) == (1, 3)
        assert row.last_seen_at == NOW + timedelta(minutes=10)


def test_another_condition_is_sent_on_its_own(ledger: SqlLedger) -> None:
    channel = FakeChannel()
    notifier = dispatcher(ledger, ManualClock(NOW), Route(channel))
    notifier.notify(failed_rotation("web"))
    notifier.notify(failed_rotation("db"))
    assert [o.notice.subject for o in channel.sent] == ["web", "db"]


def test_a_failure_streak_that_started_over_is_sent_again(ledger: SqlLedger) -> None:
    channel = FakeChannel()
    clock = ManualClock(NOW)
    for failures in (1, 2, 1):  # the source succeeded between the second and the third
        dispatcher(ledger, clock, Route(channel)).notify(failed_rotation(failures=failures))
        clock.advance(timedelta(minutes=5))
    assert [o.reason for o in channel.sent] == ["new", "recurred"]


def test_a_resolved_condition_that_comes_back_is_sent_again(ledger: SqlLedger) -> None:
    channel = FakeChannel()
    clock = ManualClock(NOW)
    notice = Notice(NoticeKind.PURGE_ERRORS, Severity.WARNING, "me", "2 failed", "purge_errors:me")
    dispatcher(ledger, clock, Route(channel)).notify(notice)
    dispatcher(ledger, clock, Route(channel)).notify(notice)
    resolve(dispatcher(ledger, clock, Route(channel)), "purge_errors:me")
    dispatcher(ledger, clock, Route(channel)).notify(notice)
    dispatcher(ledger, clock, Route(channel)).notify(notice)
    assert [o.reason for o in channel.sent] == ["new", "recurred"]


def test_a_cleared_finding_ends_the_finding_and_the_other_way_round(ledger: SqlLedger) -> None:
    assert ended_by(finding(cleared=True)) == "policy_finding:abc:no_expiration"
    assert ended_by(finding()) == "policy_finding_cleared:abc:no_expiration"
    assert ended_by(failed_rotation()) is None
    channel = FakeChannel()
    clock = ManualClock(NOW)
    for notice in (finding(), finding(), finding(cleared=True), finding(), finding(cleared=True)):
        dispatcher(ledger, clock, Route(channel)).notify(notice)
    assert [(o.notice.kind.value, o.reason) for o in channel.sent] == [
        ("policy_finding", "new"),
        ("policy_finding_cleared", "new"),
        ("policy_finding", "recurred"),
        ("policy_finding_cleared", "recurred"),
    ]


def test_a_condition_that_still_holds_is_recalled_after_renotify_after(ledger: SqlLedger) -> None:
    channel = FakeChannel()
    clock = ManualClock(NOW)
    hours = (0, 23, 24, 30, 48)
    for hour in hours:
        clock.advance(NOW + timedelta(hours=hour) - clock.now())
        dispatcher(ledger, clock, Route(channel)).notify(failed_rotation(failures=hour + 1))
    assert [(o.sent_at - NOW, o.reason) for o in channel.sent] == [
        (timedelta(0), "new"),
        (timedelta(hours=24), "reminder"),
        (timedelta(hours=48), "reminder"),
    ]


def test_no_reminder_when_renotify_after_is_off(ledger: SqlLedger) -> None:
    channel = FakeChannel()
    clock = ManualClock(NOW)
    for days in (0, 5, 50):
        clock.advance(NOW + timedelta(days=days) - clock.now())
        notifier = dispatcher(ledger, clock, Route(channel), renotify_after=None)
        notifier.notify(failed_rotation(failures=days + 1))
    assert len(channel.sent) == 1


def test_each_sink_remembers_for_itself(ledger: SqlLedger) -> None:
    good, flaky = FakeChannel("good"), FakeChannel("flaky")
    flaky.failures = [NotifyFailed("flaky: HTTP 400 Bad Request", retryable=False)]
    clock = ManualClock(NOW)
    for failures in (1, 2):
        notifier = dispatcher(ledger, clock, Route(good), Route(flaky))
        notifier.notify(failed_rotation(failures=failures))
    assert len(good.sent) == 1
    # the sink that refused the first one was never told: the second goes to it as new
    assert [(o.notice.details["failures"], o.reason) for o in flaky.sent] == [(2, "new")]


# --- retries --------------------------------------------------------------------------------------


def test_retries_with_backoff_through_the_clock_until_taken(ledger: SqlLedger) -> None:
    channel = FakeChannel()
    channel.failures = [
        NotifyFailed("fake: HTTP 503 Service Unavailable", retryable=True),
        NotifyFailed("fake: connection failed", retryable=True),
    ]
    clock = ManualClock(NOW)
    dispatcher(ledger, clock, Route(channel, retries=3)).notify(failed_rotation())
    assert channel.attempts == 3
    assert clock.monotonic() == 3.0  # waited 1s, then 2s
    assert len(channel.sent) == 1
    assert channel.sent[0].sent_at == NOW + timedelta(seconds=3)


def test_retry_after_is_honoured(ledger: SqlLedger) -> None:
    channel = FakeChannel()
    channel.failures = [NotifyFailed("fake: HTTP 429", retryable=True, retry_after=7)]
    clock = ManualClock(NOW)
    dispatcher(ledger, clock, Route(channel)).notify(failed_rotation())
    assert clock.monotonic() == 7.0
    assert len(channel.sent) == 1


def test_gives_up_after_the_retries_and_does_not_remember(ledger: SqlLedger) -> None:
    channel = FakeChannel()
    channel.failures = [NotifyFailed("fake: HTTP 502", retryable=True)] * 3
    clock = ManualClock(NOW)
    dispatcher(ledger, clock, Route(channel, retries=2)).notify(failed_rotation())
    assert (channel.attempts, channel.sent) == (3, [])
    assert ledger.get("fake", "rotation_failed:web") is None
    dispatcher(ledger, clock, Route(channel, retries=2)).notify(failed_rotation(failures=2))
    assert len(channel.sent) == 1


def test_a_refusal_is_not_retried(ledger: SqlLedger) -> None:
    channel = FakeChannel()
    channel.failures = [NotifyFailed("fake: a redirect, never followed", retryable=False)]
    clock = ManualClock(NOW)
    dispatcher(ledger, clock, Route(channel)).notify(failed_rotation())
    assert channel.attempts == 1
    assert clock.monotonic() == 0.0


def test_a_broken_sink_never_raises_nor_stops_the_others(ledger: SqlLedger) -> None:
    class Broken:
        name = "broken"

        def send(self, outgoing: Outgoing) -> None:
            raise RuntimeError("boom")

    after = FakeChannel("after")
    notifier = dispatcher(ledger, ManualClock(NOW), Route(Broken()), Route(after))
    notifier.notify(failed_rotation())
    assert len(after.sent) == 1


# --- wiring ---------------------------------------------------------------------------------------


def config(**notify: object) -> object:
    return validate_config(
        {
            "elasticsearch": {"username": "rotator", "password_env": "UNUSED_PASSWORD"},
            "purge": {"batch_size": 3},
            "notify": notify,
        },
        "test",
    )


def test_without_sinks_the_notifier_is_the_log(migrated_engine: Engine) -> None:
    notifier = build_notifier(config(), migrated_engine, ManualClock(NOW))  # type: ignore[arg-type]
    assert isinstance(notifier, LogNotifier)


def test_the_leases_notifier_leaves_logging_to_the_lease(migrated_engine: Engine) -> None:
    quiet = build_notifier(config(), migrated_engine, ManualClock(NOW), log=False)  # type: ignore[arg-type]
    assert isinstance(quiet, Unlogged)
    settings = config(sinks=[{"type": "exec", "argv": ["/bin/true"]}])
    routed = build_notifier(settings, migrated_engine, ManualClock(NOW), log=False)  # type: ignore[arg-type]
    assert isinstance(routed, Dispatcher)
    assert isinstance(routed.also, Unlogged)


def test_build_notifier_routes_each_sink_with_its_filters(migrated_engine: Engine) -> None:
    settings = config(
        renotify_after="2h",
        sinks=[
            {"type": "exec", "argv": ["/bin/true"], "kinds": ["purge_errors"], "retries": 1},
            {
                "type": "slack",
                "name": "ops",
                "url_env": "SLACK_URL",
                "min_severity": "critical",
            },
        ],
    )
    notifier = build_notifier(settings, migrated_engine, ManualClock(NOW))  # type: ignore[arg-type]
    assert isinstance(notifier, Dispatcher)
    assert notifier.renotify_after == timedelta(hours=2)
    first, second = notifier.routes
    assert (first.channel.name, first.kinds, first.retries) == (
        "exec[0]",
        frozenset({NoticeKind.PURGE_ERRORS}),
        1,
    )
    assert (second.channel.name, second.min_severity) == ("ops", Severity.CRITICAL)


def test_a_purge_with_errors_notifies_once_and_a_clean_run_ends_the_condition(
    tmp_path: Path,
) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'rotator.db'}")
    db.upgrade(engine)
    clock = ManualClock(NOW)
    channel = FakeChannel()
    notifier = Dispatcher([Route(channel)], SqlLedger(engine), clock, also=Silent())
    failing = {"k1": "security_exception: no"}

    def purge(keys: list[str]) -> None:
        stub = StubAuthority([key(id=k, name=f"old-{k}") for k in keys], failing)
        deps = build_deps(config(), engine, clock, authority=stub, notifier=notifier)  # type: ignore[arg-type]
        units = PurgeUnits(
            db.session_factory(engine), AuditLog(db.session_factory(engine), "test"), clock.now
        )
        Purger(deps, units, stub, PurgeSettings(batch_size=3)).run()

    purge(["k0", "k1"])
    purge(["k1"])  # the same key fails again: the same condition
    assert len(channel.sent) == 1
    notice = channel.sent[0].notice
    assert (notice.kind, notice.dedup_key) == (
        NoticeKind.PURGE_ERRORS,
        "purge_errors:rotator@native1",
    )
    assert notice.details["key_ids"] == ["k1"]
    assert notice.details["job"] == "purge"
    failing = {}
    purge(["k1"])  # a clean run
    failing = {"k2": "exception: lost"}
    purge(["k2"])
    assert [o.reason for o in channel.sent] == ["new", "recurred"]
    engine.dispose()


def test_leadership_changes_are_notified(migrated_engine: Engine) -> None:
    received: list[Notice] = []

    class Capture:
        def notify(self, notice: Notice) -> None:
            received.append(notice)

    clock = ManualClock(NOW)
    lease = LeaderLease(
        migrated_engine, clock, timedelta(seconds=30), holder="host-a:1", notifier=Capture()
    )
    assert lease.try_acquire()
    lease.release()
    for _ in range(200):  # the notices go out on threads of their own
        if len(received) == 2:
            break
        threading.Event().wait(0.01)
    assert [(n.kind, n.details["event"], n.severity) for n in received] == [
        (NoticeKind.LEADERSHIP_CHANGED, "acquired", Severity.INFO),
        (NoticeKind.LEADERSHIP_CHANGED, "released", Severity.INFO),
    ]
    assert received[0].dedup_key == "leadership_changed:host-a:1:1:acquired"


@pytest.mark.parametrize(
    ("sink", "problem"),
    [
        (
            {"type": "exec", "argv": ["/bin/true"], "kinds": ["rotation_faild"]},
            "notify.sinks[0].kinds[0]: unknown notice kind 'rotation_faild'; expected one of "
            "rotation_failed, ",
        ),
        (
            {"type": "exec", "argv": ["/bin/true"], "min_severity": "urgent"},
            "notify.sinks[0].min_severity: expected one of 'info', 'low', 'medium', 'warning', "
            "'high' or 'critical', got 'urgent'",
        ),
        (
            {"type": "webhook", "url": "https://alerts.example/x"},
            "notify.sinks[0]: hmac_secret_env or hmac_secret_file must name the signing secret",
        ),
        (
            {"type": "webhook", "url": "http://alerts.example/x", "hmac_secret_env": "S"},
            "notify.sinks[0]: url: plain http would send notices unencrypted",
        ),
        (
            {"type": "slack", "url_env": "A", "url_file": "/run/b"},
            "notify.sinks[0].slack: give exactly one of url, url_env or url_file",
        ),
    ],
)
def test_notify_config_problems_are_named(sink: dict[str, object], problem: str) -> None:
    from rotator.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        config(sinks=[sink])
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems
