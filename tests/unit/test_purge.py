"""The purge's pure parts: which keys it selects (tables with an explicit cutoff), the query it
sends, how an invalidate answer maps to per-key outcomes; and the job over a stub authority."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.orm import Session

from rotator.app import build_deps
from rotator.audit import AuditLog
from rotator.clock import ManualClock
from rotator.config import validate_config
from rotator.elastic import _invalidation_errors
from rotator.errors import AuthorityRejected
from rotator.jobs.purge import (
    Outcome,
    Owner,
    Purger,
    PurgeSettings,
    excluded,
    name_prefix,
    outcome_of,
    purge_query,
    selectable,
)
from rotator.ports import InvalidationResult, KeyInfo
from rotator.service import job_specs
from rotator.store import db
from rotator.store.models import AuditEvent, PurgedKey
from rotator.store.tombstones import PurgeUnits

NOW = datetime(2030, 1, 1, tzinfo=UTC)
ME = Owner("rotator", "native1")
SETTINGS = PurgeSettings(exclude_names=("keep-*", "?-pin"), exclude_metadata={"a.b": True})


def key(**kw: Any) -> KeyInfo:
    values: dict[str, Any] = {
        "id": "k1",
        "name": "old-1",
        "creation": NOW - timedelta(days=30),
        "expiration": NOW - timedelta(seconds=1),
        "invalidated": False,
        "username": "rotator",
        "metadata": {},
        "realm": "native1",
    }
    values.update(kw)
    return KeyInfo(**values)


@pytest.mark.parametrize(
    ("changes", "taken"),
    [
        ({}, True),
        ({"expiration": NOW}, True),  # expired at the cutoff itself
        ({"expiration": NOW + timedelta(milliseconds=1)}, False),
        ({"expiration": None}, False),  # never expires
        ({"invalidated": True}, False),
        ({"username": "other"}, False),
        ({"realm": "file1"}, False),  # same name, another realm: another owner
        ({"type": "cross_cluster"}, False),
        ({"metadata": {"managed": True}}, False),
        ({"metadata": {"managed": "true"}}, True),  # Kibana checks for the boolean
        ({"name": "Alerting: .es-query/x"}, False),
        ({"name": "keep-me"}, False),
        ({"name": "x-pin"}, False),
        ({"name": "xy-pin"}, True),
        ({"metadata": {"a": {"b": True}}}, False),
        ({"metadata": {"a": {"b": [False, True]}}}, False),
        ({"metadata": {"a": {"b": "true"}}}, False),  # flattened fields compare keywords
        ({"metadata": {"a": {"b": False}}}, True),
    ],
)
def test_selectable(changes: dict[str, Any], taken: bool) -> None:
    assert selectable(key(**changes), ME, NOW, SETTINGS) is taken


def test_include_managed_and_name_prefix() -> None:
    managed = key(metadata={"managed": True}, name="rotator-x")
    assert selectable(managed, ME, NOW, PurgeSettings(include_managed=True))
    assert not selectable(key(), ME, NOW, PurgeSettings(name_prefix="rotator-"))
    assert selectable(managed, ME, NOW, PurgeSettings(include_managed=True, name_prefix="rot"))


def test_the_query_is_restricted_to_the_owner_and_says_what_is_excluded() -> None:
    query = purge_query(ME, NOW, SETTINGS)["bool"]
    assert {"term": {"username": "rotator"}} in query["filter"]
    assert {"term": {"realm_name": "native1"}} in query["filter"]
    assert {"term": {"invalidated": False}} in query["filter"]
    assert {"range": {"expiration": {"lte": int(NOW.timestamp() * 1000)}}} in query["filter"]
    assert query["must_not"] == [
        {"term": {"metadata.managed": True}},
        {"prefix": {"name": "Alerting: "}},
        {"wildcard": {"name": "keep-*"}},
        {"wildcard": {"name": "?-pin"}},
        {"term": {"metadata.a.b": True}},
    ]
    assert "must_not" not in purge_query(ME, NOW, PurgeSettings(include_managed=True))["bool"]


def test_excluded_names_match_whole_names_only() -> None:
    settings = PurgeSettings(exclude_names=("keep",))
    assert excluded(key(name="keep"), settings)
    assert not excluded(key(name="keep-1"), settings)
    assert excluded(key(name="keep1"), PurgeSettings(exclude_names=("keep?",)))
    assert not excluded(key(name="keep.1"), PurgeSettings(exclude_names=("keep?",)))


@pytest.mark.parametrize(
    ("name", "prefix"),
    [("old-1", "old-"), ("Alerting: x", "Alerting:"), ("plain", "plain"), ("-x", "-x")],
)
def test_name_prefix(name: str, prefix: str) -> None:
    assert name_prefix(name) == prefix


def test_owner_comes_from_authenticate() -> None:
    me = {"username": "u", "authentication_realm": {"name": "a"}, "lookup_realm": {"name": "l"}}
    assert Owner.of(me) == Owner("u", "l")
    with pytest.raises(AuthorityRejected, match="API key"):
        Owner.of({**me, "authentication_type": "api_key", "api_key": {"id": "x"}})
    with pytest.raises(AuthorityRejected):
        Owner.of({"username": "u"})


def test_outcomes_of_an_answer() -> None:
    result = InvalidationResult(("a",), ("b",), {"c": "boom"})
    assert [outcome_of(i, result) for i in "abcd"] == [
        (Outcome.INVALIDATED, ""),
        (Outcome.PREVIOUSLY_INVALIDATED, ""),
        (Outcome.ERROR, "boom"),
        (Outcome.NOT_FOUND, ""),
    ]
    anonymous = InvalidationResult(("a",), (), {"": "bulk failure"})
    assert outcome_of("d", anonymous) == (Outcome.ERROR, "bulk failure")
    assert result.not_found(["a", "b", "c", "d", "d"]) == ["d"]
    with pytest.raises(AuthorityRejected, match="c: boom"):
        result.raise_on_error()
    assert InvalidationResult(("a",)).raise_on_error().invalidated == ("a",)


def test_error_details_are_filed_under_the_id_they_name() -> None:
    details = [
        {"type": "security_exception", "reason": "Cannot invalidate cross-cluster API key [x1]."},
        {
            "type": "exception",
            "reason": "Error invalidating api key",
            "caused_by": {
                "type": "version_conflict_engine_exception",
                "reason": "[y2]: version conflict",
            },
        },
        {"type": "exception", "reason": "something [else]"},
    ]
    errors = _invalidation_errors(details, ["x1", "y2", "z3"])
    assert set(errors) == {"x1", "y2", ""}
    assert errors["x1"].startswith("security_exception: Cannot invalidate")
    assert "version_conflict" in errors["y2"]


# --- the job over a stub authority ---------------------------------------------------------------


class StubAuthority:
    """Pages of keys given up front; each DELETE answers with what ``answer`` decides."""

    def __init__(self, keys: list[KeyInfo], failing: Mapping[str, str]) -> None:
        self.keys = keys
        self.failing = failing
        self.deletes: list[list[str]] = []

    def whoami(self) -> dict[str, Any]:
        return {"username": "rotator", "lookup_realm": {"name": "native1"}}

    def query_pages(
        self, query: Mapping[str, Any], *, page_size: int = 1000
    ) -> Iterator[list[KeyInfo]]:
        for start in range(0, len(self.keys), page_size):
            yield self.keys[start : start + page_size]

    def invalidate(self, ids: Sequence[str]) -> InvalidationResult:
        self.deletes.append(list(ids))
        errors = {i: self.failing[i] for i in ids if i in self.failing}
        return InvalidationResult(tuple(i for i in ids if i not in errors), (), errors)


def stub_purger(tmp_path: Path, authority: StubAuthority) -> tuple[Purger, Any]:
    config = validate_config(
        {
            "elasticsearch": {"username": "rotator", "password_env": "UNUSED_PASSWORD"},
            "purge": {"batch_size": 3},
        },
        "test",
        references=False,
    )
    engine = db.make_engine(f"sqlite:///{tmp_path / 'rotator.db'}")
    db.upgrade(engine)
    clock = ManualClock(NOW)
    deps = build_deps(config, engine, clock, authority=authority)  # type: ignore[arg-type]
    units = PurgeUnits(
        db.session_factory(engine), AuditLog(db.session_factory(engine), "test"), clock.now
    )
    return Purger(deps, units, authority, PurgeSettings.of(config.purge)), engine


def test_a_per_key_error_does_not_fail_the_other_keys(tmp_path: Path) -> None:
    keys = [key(id=f"k{i}", name=f"old-{i}") for i in range(7)]
    stub = StubAuthority(keys, {"k1": "security_exception: no", "k5": "exception: lost"})
    job, engine = stub_purger(tmp_path, stub)
    report = job.run()
    assert [len(ids) for ids in stub.deletes] == [3, 3, 1]
    assert report.errors == {"k1": "security_exception: no", "k5": "exception: lost"}
    assert report.results[Outcome.INVALIDATED] == ["k0", "k2", "k3", "k4", "k6"]
    assert report.failed
    with Session(engine) as session:
        rows = {r.es_id: (r.outcome, r.error) for r in session.query(PurgedKey)}
        assert rows["k1"] == ("error", "security_exception: no")
        assert rows["k0"] == ("invalidated", None)
        outcomes = [e.outcome for e in session.query(AuditEvent).order_by(AuditEvent.seq)]
        assert outcomes == ["warning", "warning", "success"]
    engine.dispose()


def test_the_daemon_schedules_the_purge_hourly_only_when_enabled() -> None:
    base: dict[str, Any] = {"elasticsearch": {"username": "u", "password_env": "UNUSED_PASSWORD"}}
    assert "purge" not in [s.id for s in job_specs(validate_config(base, "t"))]
    on = validate_config({**base, "purge": {"enabled": True}}, "t")
    [spec] = [s for s in job_specs(on) if s.id == "purge"]
    assert isinstance(spec.trigger, IntervalTrigger)
    assert spec.trigger.interval == timedelta(hours=1)
    settings = PurgeSettings.of(on.purge)
    assert settings == PurgeSettings(retention=timedelta(days=90), batch_size=1000)
