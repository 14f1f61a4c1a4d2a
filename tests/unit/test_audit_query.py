"""Reading the audit trail: time arguments, filters and paging on every store backend, following
new events with a fake sleep, the table, and the chain check ``rotator run`` makes on start."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from rotator import audit_query
from rotator.audit import Anchor, AuditLog, ChainEvent
from rotator.audit_query import AuditFilter, InvalidTime, UnknownAction, parse_time
from rotator.config import validate_config
from rotator.ports import AuditEntry
from rotator.store.db import read_session_factory, session_factory
from rotator.vocabulary import AuditAction, AuditOutcome

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
A = AuditAction
OK, FAILED, WARN = AuditOutcome.SUCCESS, AuditOutcome.FAILURE, AuditOutcome.WARNING

# (days before NOW, actor, action, subject, outcome, details)
TRAIL: list[tuple[float, str, AuditAction, str, AuditOutcome, dict[str, Any]]] = [
    (9, "rotator:svc@db1[10] epoch 1", A.ROTATION_STARTED, "web", OK, {"previous_key_id": None}),
    (9, "rotator:svc@db1[10] epoch 1", A.KEY_ACTIVATED, "web", OK, {"key_id": "k-web-1"}),
    (
        6,
        "rotator:svc@db1[10] epoch 1",
        A.ROTATION_STARTED,
        "web",
        OK,
        {"previous_key_id": "k-web-1"},
    ),
    (6, "rotator:svc@db1[10] epoch 1", A.ROTATION_FAILED, "web", FAILED, {"reason": "timeout"}),
    (5, "rotator:alice@laptop[77]", A.KEY_ACTIVATED, "db", OK, {"key_id": "k-db-1"}),
    (3, "rotator:svc@db2[11] epoch 2", A.KEY_INVALIDATED, "web", OK, {"key_id": "k-web-1"}),
    (
        2,
        "rotator:svc@db2[11] epoch 2",
        A.INVENTORY_KEY_EXPIRING,
        "key:k-other",
        WARN,
        {"key_id": "k-other", "source": "web"},
    ),
    (
        1,
        "rotator:bob@ops[5]",
        A.KEYS_PURGED,
        "rotator",
        OK,
        {"invalidated": ["k-old", "k-web-1"], "errors": {}},
    ),
    (0.5, "rotator:svc@db2[11] epoch 2", A.LEADER_ACQUIRED, "-", OK, {}),
]


def record(engine: Engine, at: datetime, action: AuditAction = A.KEY_ACTIVATED, **kw: Any) -> int:
    log = AuditLog(session_factory(engine), kw.pop("actor", "rotator:test@host[1]"))
    return log.record(
        now=at,
        action=action,
        subject=kw.pop("subject", "web"),
        outcome=kw.pop("outcome", OK),
        details=kw.pop("details", {}),
    )


@pytest.fixture
def trail(migrated_engine: Engine) -> Engine:
    for days, actor, action, subject, outcome, details in TRAIL:
        log = AuditLog(session_factory(migrated_engine), actor)
        log.record(
            now=NOW - timedelta(days=days),
            action=action,
            subject=subject,
            outcome=outcome,
            details=details,
        )
    return migrated_engine


def selected(engine: Engine, **filters: Any) -> list[int]:
    with read_session_factory(engine)() as session:
        return [e.seq for e in audit_query.events(session, AuditFilter(**filters))]


# --- times ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", NOW - timedelta(hours=24)),
        ("7d", NOW - timedelta(days=7)),
        ("90m", NOW - timedelta(minutes=90)),
        ("2026-11-23", datetime(2026, 11, 23, tzinfo=UTC)),
        ("2026-11-23T08:30:00Z", datetime(2026, 11, 23, 8, 30, tzinfo=UTC)),
        ("2026-11-23T09:30:00+01:00", datetime(2026, 11, 23, 8, 30, tzinfo=UTC)),
        ("2026-11-23 08:30", datetime(2026, 11, 23, 8, 30, tzinfo=UTC)),
    ],
)
def test_times_are_relative_to_now_or_iso_8601_in_utc(text: str, expected: datetime) -> None:
    parsed = parse_time(text, NOW)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize("text", ["yesterday", "7 days", "-7d", "2026-13-01", ""])
def test_a_value_that_is_no_time_is_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(InvalidTime) as caught:
        parse_time(text, NOW)
    assert repr(text) in str(caught.value)
    assert "24h" in str(caught.value)
    assert "ISO 8601" in str(caught.value)


def test_an_action_prefix_must_begin_some_action_of_the_vocabulary() -> None:
    assert AuditFilter(action="key.").action == "key."
    assert AuditFilter(action="inventory.key_exp").action == "inventory.key_exp"
    with pytest.raises(UnknownAction, match=r"'rotate'.*key\., keys\."):
        AuditFilter(action="rotate")


def test_only_content_filters_narrow_a_time_range() -> None:
    assert not AuditFilter(since=NOW, until=NOW).narrows
    for field in ("source", "key", "outcome", "actor"):
        assert AuditFilter(**{field: "x"}).narrows
    assert AuditFilter(action="key.").narrows


# --- filters, on every backend ------------------------------------------------------------------


def test_no_filter_selects_every_event_oldest_first(trail: Engine) -> None:
    assert selected(trail) == list(range(1, len(TRAIL) + 1))


def test_source_matches_the_subject_or_the_details_source(trail: Engine) -> None:
    assert selected(trail, source="web") == [1, 2, 3, 4, 6, 7]
    assert selected(trail, source="db") == [5]
    assert selected(trail, source="nope") == []


def test_key_matches_the_subject_a_key_field_or_a_listed_id(trail: Engine) -> None:
    # activated, the previous key of a rotation, invalidated, listed in a purge batch
    assert selected(trail, key="k-web-1") == [2, 3, 6, 8]
    assert selected(trail, key="k-other") == [7]
    assert selected(trail, key="k-old") == [8]
    assert selected(trail, key="k-web") == []  # whole ids only


def test_action_is_a_prefix(trail: Engine) -> None:
    assert selected(trail, action="rotation.") == [1, 3, 4]
    assert selected(trail, action="key.activated") == [2, 5]
    assert selected(trail, action="key.") == [2, 5, 6]
    assert selected(trail, action="key") == [2, 5, 6, 8]  # keys.purged too
    assert selected(trail, action="inventory.key_") == [7]


def test_a_like_wildcard_in_a_filter_is_taken_literally(trail: Engine) -> None:
    for prefix in ("%", "inventory.key%", "key_"):
        with pytest.raises(UnknownAction):
            AuditFilter(action=prefix)
    assert selected(trail, actor="%") == []
    assert selected(trail, actor="_") == []
    assert selected(trail, key="%") == []


def test_outcome(trail: Engine) -> None:
    assert selected(trail, outcome="failure") == [4]
    assert selected(trail, outcome="warning") == [7]


def test_since_includes_and_until_excludes(trail: Engine) -> None:
    assert selected(trail, since=NOW - timedelta(days=3)) == [6, 7, 8, 9]
    assert selected(trail, until=NOW - timedelta(days=6)) == [1, 2]
    assert selected(trail, since=NOW - timedelta(days=6), until=NOW - timedelta(days=2)) == [
        3,
        4,
        5,
        6,
    ]


def test_since_and_until_relative_to_now(trail: Engine) -> None:
    assert selected(trail, since=parse_time("24h", NOW)) == [8, 9]
    assert selected(trail, since=parse_time("7d", NOW), until=parse_time("4d", NOW)) == [3, 4, 5]


def test_actor_is_a_case_insensitive_substring(trail: Engine) -> None:
    assert selected(trail, actor="ALICE") == [5]
    assert selected(trail, actor="@db2") == [6, 7, 9]
    assert selected(trail, actor="epoch 1") == [1, 2, 3, 4]


def test_filters_combine(trail: Engine) -> None:
    assert selected(trail, source="web", action="key.", since=NOW - timedelta(days=4)) == [6]
    assert selected(trail, key="k-web-1", actor="bob") == [8]


# --- paging --------------------------------------------------------------------------------------


@pytest.fixture
def statements(migrated_engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM audit_events" in statement:
            seen.append(statement)

    sa.event.listen(migrated_engine, "before_cursor_execute", count)
    yield seen
    sa.event.remove(migrated_engine, "before_cursor_execute", count)


def bulk(engine: Engine, count: int, start: datetime = NOW) -> None:
    log = AuditLog(session_factory(engine), "rotator:test@host[1]")
    entries = [
        AuditEntry(A.KEY_ACTIVATED, "web" if i % 2 else "db", OK, {"key_id": f"k{i}"})
        for i in range(count)
    ]
    with session_factory(engine)() as session, session.begin():
        log.write_many(session, now=start, events=entries)


def test_events_are_read_a_page_at_a_time(migrated_engine: Engine, statements: list[str]) -> None:
    bulk(migrated_engine, 23)
    statements.clear()
    with read_session_factory(migrated_engine)() as session:
        reader = audit_query.events(session, AuditFilter(), page_size=5)
        first = [next(reader) for _ in range(5)]
        assert len(statements) == 1, "the first page only, before it is consumed"
        rest = list(reader)
    assert [e.seq for e in first + rest] == list(range(1, 24))
    assert len(statements) == 5  # 5+5+5+5+3: the short page ends it
    assert all("LIMIT" in s.upper() for s in statements)


def test_a_filtered_page_continues_after_the_last_event_it_selected(
    migrated_engine: Engine,
) -> None:
    bulk(migrated_engine, 40)
    with read_session_factory(migrated_engine)() as session:
        web = [e.seq for e in audit_query.events(session, AuditFilter(source="web"), page_size=4)]
    assert web == list(range(2, 41, 2))


def test_limit_stops_reading_and_the_newest_n_start_where_they_should(
    migrated_engine: Engine, statements: list[str]
) -> None:
    bulk(migrated_engine, 30)
    with read_session_factory(migrated_engine)() as session:
        statements.clear()
        limited = list(audit_query.events(session, AuditFilter(), limit=7, page_size=5))
        assert [e.seq for e in limited] == list(range(1, 8))
        assert len(statements) == 2  # 5, then the 2 left
        start = audit_query.start_of_newest(session, AuditFilter(source="db"), 3)
        newest = list(audit_query.events(session, AuditFilter(source="db"), after_seq=start))
        assert [e.seq for e in newest] == [25, 27, 29]
        assert audit_query.start_of_newest(session, AuditFilter(), 100) == 0
        assert audit_query.newest_seq(session) == 30


# --- following -----------------------------------------------------------------------------------


class Stop(Exception):
    """Ends a follow loop in a test (SIGINT does in real life)."""


def test_follow_emits_events_as_they_are_committed_and_polls_every_second(
    migrated_engine: Engine,
) -> None:
    record(migrated_engine, NOW)  # seq 1, before following starts
    waits: list[float] = []
    emitted: list[ChainEvent] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 1:
            record(migrated_engine, NOW, subject="web")  # seq 2
            record(migrated_engine, NOW, subject="db")  # seq 3, filtered out
        elif len(waits) == 3:
            record(migrated_engine, NOW, subject="web")  # seq 4
        elif len(waits) == 5:
            raise Stop

    with pytest.raises(Stop):
        audit_query.follow(
            read_session_factory(migrated_engine),
            AuditFilter(source="web"),
            after_seq=1,
            emit=emitted.append,
            sleep=sleep,
        )
    assert [e.seq for e in emitted] == [2, 4]
    assert waits == [1.0] * 5


# --- the table -----------------------------------------------------------------------------------


def event(seq: int, **kw: Any) -> ChainEvent:
    fields: dict[str, Any] = {
        "seq": seq,
        "at": NOW,
        "actor": "rotator:svc@db1[10] epoch 3",
        "action": "key.activated",
        "subject": "web",
        "outcome": "success",
        "details": {"key_id": "k1"},
        "prev_hash": "0" * 64,
        "hash": "1" * 64,
    }
    fields.update(kw)
    return ChainEvent(**fields)


def test_the_table_prints_as_events_come_sized_on_the_first_page() -> None:
    lines: list[str] = []
    table = audit_query.TableWriter(lines.append, size_on=2)
    table.add(event(1))
    assert lines == []
    table.add(event(2))
    assert len(lines) == 3, "the header and the first page once the page is full"
    assert lines[0].split() == list(audit_query.TABLE_HEADERS)
    table.add(event(3, actor="rotator:someone-with-a-much-longer-name@host[1]"))
    assert len(lines) == 4, "later rows are printed at once"
    assert lines[1].index("key.activated") == lines[0].index("ACTION")
    assert lines[1].split()[:2] == ["1", "2026-11-30T12:00:00Z"]
    table.flush()
    assert len(lines) == 4
    assert table.count == 3


def test_a_short_table_is_printed_on_flush() -> None:
    lines: list[str] = []
    table = audit_query.TableWriter(lines.append)
    table.add(event(7))
    table.flush()
    assert [line.split()[0] for line in lines] == ["SEQ", "7"]


def test_short_details_put_identifying_fields_first_and_are_cut() -> None:
    text = audit_query.short_details(
        {"zeta": 1, "reason": "expiring", "key_id": "k1", "job": "lifecycle", "empty": ""}
    )
    assert text == "key_id=k1 reason=expiring job=lifecycle zeta=1"
    listed = audit_query.short_details({"invalidated": ["a", "b"]})
    assert listed == 'invalidated=["a","b"]'
    long = audit_query.short_details({"detail": "x" * 300}, width=40)
    assert len(long) == 40
    assert long.endswith("...")


# --- the check on start ---------------------------------------------------------------------------


def config_for(engine: Engine, verify_on_start: bool) -> Any:
    url = engine.url.render_as_string(hide_password=False)
    return validate_config({"store": {"url": url}, "audit": {"verify_on_start": verify_on_start}})


def break_an_event(engine: Engine, seq: int) -> None:
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("DROP TRIGGER audit_events_guard ON audit_events")
        else:
            connection.exec_driver_sql("DROP TRIGGER audit_events_no_update")
        connection.execute(
            sa.text("UPDATE audit_events SET actor = 'rotator:mallory@host[6]' WHERE seq = :seq"),
            {"seq": seq},
        )


def test_the_start_check_passes_an_intact_chain(trail: Engine) -> None:
    assert audit_query.start_check(config_for(trail, True), trail) is None


def test_the_start_check_names_the_break(trail: Engine) -> None:
    break_an_event(trail, 4)
    found = audit_query.start_check(config_for(trail, True), trail)
    assert found is not None
    assert found.broken_at == 4
    assert "sequence 4" in found.describe()


def test_the_start_check_is_skipped_when_turned_off(trail: Engine) -> None:
    break_an_event(trail, 4)
    assert audit_query.start_check(config_for(trail, False), trail) is None


def test_the_start_check_uses_the_anchors_outside_the_chain(
    trail: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rotator.audit_mirror

    config = config_for(trail, True)
    head = Anchor(len(TRAIL) + 2, "f" * 64, "the test's mirror")  # two events the store lacks
    monkeypatch.setattr(rotator.audit_mirror, "anchors", lambda _config, **_kw: [head])
    assert audit_query.configured_anchors(config) == [head]
    found = audit_query.start_check(config, trail)
    assert found is not None
    assert found.broken_at == len(TRAIL) + 1
    assert "the test's mirror" in found.reason
