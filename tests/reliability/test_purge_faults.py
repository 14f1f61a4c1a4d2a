"""The purge under failures: a batch refused or lost is reported per key and the next run
converges; a failure of the whole request is retried with backoff; keys invalidated by someone
else meanwhile are reported as such; a per-key error leaves the other keys of its batch done."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from elasticsearch import Elasticsearch
from sqlalchemy.orm import Session

from rotator.app import build_purger
from rotator.elastic import ElasticKeyAuthority
from rotator.jobs.purge import Outcome
from rotator.ports import InvalidationResult
from rotator.sandbox.security_state import ApiKeyRecord, Creator, hash_secret
from rotator.store.models import AuditEvent, PurgedKey
from tests.e2e.conftest import World
from tests.e2e.test_purge import deletes, invalidated, make, purger, setup_owners

BATCHED = "purge: {enabled: true, batch_size: 2}\n"


def seed_expired(world: World, count: int = 6) -> list[str]:
    mine = setup_owners(world, ["manage_own_api_key"], BATCHED)
    ids = [make(mine, f"old-{i}", "1d") for i in range(count)]
    world.advance(timedelta(days=2))
    return ids


def tombstones(world: World) -> dict[str, PurgedKey]:
    with Session(world.engine) as session:
        return {r.es_id: r for r in session.query(PurgedKey).all()}


def test_a_refused_batch_is_reported_per_key_and_the_next_run_converges(world: World) -> None:
    ids = seed_expired(world)
    world.sandbox.add_faults(
        [{"method": "DELETE", "path": "/_security/api_key", "status": 400, "times": 1}]
    )
    report = purger(world).run()
    assert report.failed
    assert set(report.errors) == set(ids[:2])  # the first batch; the others went on
    assert all("400" in e for e in report.errors.values())
    assert report.results[Outcome.INVALIDATED] == ids[2:]
    rows = tombstones(world)
    assert {i: rows[i].outcome for i in ids} == {
        **dict.fromkeys(ids[:2], "error"),
        **dict.fromkeys(ids[2:], "invalidated"),
    }
    assert rows[ids[0]].error is not None
    with Session(world.engine) as session:
        events = session.query(AuditEvent).filter(AuditEvent.action == "keys.purged").all()
        assert [e.outcome for e in events] == ["failure", "success", "success"]
        assert set(events[0].details_json["errors"]) == set(ids[:2])

    again = purger(world).run()
    assert not again.failed
    assert again.results[Outcome.INVALIDATED] == ids[:2]
    assert {r.outcome for r in tombstones(world).values()} == {"invalidated"}
    assert all(invalidated(world)[i] for i in ids)


def test_an_unavailable_elasticsearch_is_retried_with_backoff(world: World) -> None:
    ids = seed_expired(world)
    world.sandbox.add_faults(
        [{"method": "DELETE", "path": "/_security/api_key", "status": 503, "times": 2}]
    )
    world.sandbox.clear_stats()
    before = world.clock.now()
    report = purger(world).run()
    assert not report.failed
    assert report.results[Outcome.INVALIDATED] == ids
    assert deletes(world) == 3 + 2  # three batches, the first one sent three times
    assert world.clock.now() - before == timedelta(seconds=0.5 + 1.0)  # the backoff waited


def test_a_lasting_outage_stops_the_run_and_the_next_run_converges(world: World) -> None:
    ids = seed_expired(world)
    world.sandbox.add_faults([{"method": "DELETE", "path": "/_security/api_key", "status": 503}])
    world.sandbox.clear_stats()
    report = purger(world).run()
    assert report.error is not None
    assert "503" in report.error
    assert set(report.errors) == set(ids[:2])
    assert deletes(world) == 4  # one batch, tried four times; the rest waits for the next run
    assert not any(invalidated(world)[i] for i in ids)
    world.sandbox.clear_faults()
    again = purger(world).run()
    assert not again.failed
    assert again.results[Outcome.INVALIDATED] == ids
    assert {r.outcome for r in tombstones(world).values()} == {"invalidated"}


class RacingAuthority(ElasticKeyAuthority):
    """Someone else invalidates ``victims`` between the query and the DELETE."""

    def __init__(self, client: Elasticsearch, rival: Elasticsearch, victims: set[str]) -> None:
        super().__init__(client)
        self._rival = rival
        self._victims = victims

    def invalidate(self, ids: Sequence[str]) -> InvalidationResult:
        hit = [i for i in ids if i in self._victims]
        if hit:
            self._rival.security.invalidate_api_key(ids=hit, owner=True)
        return super().invalidate(ids)


def test_keys_invalidated_meanwhile_are_reported_per_key(world: World) -> None:
    ids = seed_expired(world, 4)
    mine = Elasticsearch(world.sandbox.url, basic_auth=("rotator", world.password))
    racing = RacingAuthority(mine, mine, {ids[1], ids[2]})
    report = build_purger(world.config, world.engine, world.clock, authority=racing).run()
    assert not report.failed
    assert report.results[Outcome.INVALIDATED] == [ids[0], ids[3]]
    assert report.results[Outcome.NOT_FOUND] == [ids[1], ids[2]]
    rows = tombstones(world)
    assert [rows[i].outcome for i in ids] == [
        "invalidated",
        "not_found",
        "not_found",
        "invalidated",
    ]
    assert purger(world).run().selection.count == 0


def test_a_per_key_error_leaves_the_other_keys_of_the_request_done(world: World) -> None:
    mine = setup_owners(world, ["manage_own_api_key"], BATCHED)
    rest = make(mine, "old-rest", "1d")
    state = world.sandbox.state
    with state.lock:  # a cross-cluster key of rotator's (only manage_security may create one)
        security = state.security
        now = world.sandbox.now_ms()
        cross = ApiKeyRecord(
            id=security.new_key_id(),
            name="old-cross",
            type="cross_cluster",
            secret_hash=hash_secret("not-a-real-secret-0000"),
            creation=now,
            expiration=now + 1000,
            role_descriptors=[],
            limited_by=[],
            metadata={},
            creator=Creator("rotator", None, None, {}, "default_native", "native"),
            seq=security.next_seq(),
        )
        security.add_key(cross)
    result = ElasticKeyAuthority(mine).invalidate([rest, cross.id])
    assert result.invalidated == (rest,)
    assert list(result.errors) == [cross.id]
    assert "manage_security" in result.errors[cross.id]
    assert result.not_found([rest, cross.id]) == []
    world.advance(timedelta(days=2))
    # The purge leaves cross-cluster keys alone: manage_own_api_key may not invalidate them.
    assert purger(world).run(dry_run=True).selection.count == 0
