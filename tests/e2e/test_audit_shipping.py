"""Shipping the audit trail to a data stream of the sandbox: ids are sequence numbers, nothing is
lost or duplicated under faults, no secret is shipped, the stream gives the head back as an
anchor, and the key that ships is rotator's own source ``rotator-audit``."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from elasticsearch import ApiError, Elasticsearch
from sqlalchemy.orm import Session

from rotator import commands
from rotator.audit import verify
from rotator.audit_mirror import anchors, sync_copies
from rotator.audit_ship import (
    SOURCE,
    ShipReport,
    cursor_name,
    key_path,
    ship_pending,
    shipped_anchor,
)
from rotator.config import parse_config
from rotator.elastic import AuditShipClient, BulkItem, ElasticKeyAuthority, client_from_config
from rotator.service import missing_privileges, preflight_request
from rotator.store.models import ApiKey, ApiKeyState, AuditCursor, AuditEvent, Source
from tests.e2e.conftest import ROTATOR_ROLE, SOURCES, World, config_text

STREAM = "logs-rotator.audit-default"
# What the README tells operators to add to rotator's role for shipping: the shipping key's
# privileges (rotator can only hand out what it holds) and read, for the anchor.
SHIPPING_ROLE = {
    **ROTATOR_ROLE,
    "indices": [
        *ROTATOR_ROLE["indices"],
        {"names": [STREAM], "privileges": ["create_doc", "auto_configure", "read"]},
    ],
}


def shipping(world: World, batch: int = 5, role: dict[str, Any] | None = None) -> None:
    """Turn shipping on: the audit section, and rotator's role extended for the data stream."""
    world.admin().security.put_role(name="rotator", **(role or SHIPPING_ROLE))
    text = config_text(world.sandbox.url, world.out, str(world.engine.url))
    text += (
        f"audit: {{data_stream: {STREAM}, ship_batch_size: {batch}, "
        f"ship_key_path: '{world.out / 'rotator-audit.key'}'}}\n"
    )
    world.config = parse_config(text)


def run_lifecycle(world: World) -> None:
    report = world.lifecycle().run(world.specs)
    assert not report.failed, [o.detail for o in report.outcomes if not o.ok]


def ship(world: World, **kw: Any) -> ShipReport:
    return ship_pending(world.config, world.engine, world.clock, **kw)


def store_events(world: World) -> dict[int, str]:
    with world.engine.connect() as conn:
        return dict(conn.execute(sa.select(AuditEvent.seq, AuditEvent.hash)).all())  # type: ignore[arg-type]


def shipped(world: World) -> list[dict[str, Any]]:
    """Every document in the data stream, with its id."""
    admin = world.admin()
    count = admin.count(index=STREAM)["count"]
    hits = admin.search(index=STREAM, size=10_000, query={"match_all": {}})["hits"]["hits"]
    assert len(hits) == count
    return [{"_id": h["_id"], **h["_source"]} for h in hits]


def assert_exactly_once(world: World) -> list[dict[str, Any]]:
    """Every stored event is in the stream once, under its sequence number, with its hash."""
    docs = shipped(world)
    ids = [d["_id"] for d in docs]
    events = store_events(world)
    assert len(ids) == len(set(ids)) == len(events)
    assert sorted(int(i) for i in ids) == sorted(events)
    for doc in docs:
        assert doc["event"]["sequence"] == int(doc["_id"])
        assert doc["rotator"]["audit"]["hash"] == events[int(doc["_id"])]
    return docs


def cursor(world: World) -> int | None:
    with world.engine.connect() as conn:
        seq = conn.execute(
            sa.select(AuditCursor.seq).where(AuditCursor.name == cursor_name(STREAM))
        ).scalar()
    return None if seq is None else int(seq)


def bulk_requests(world: World) -> int:
    return sum(
        r["count"]
        for r in world.sandbox.stats()["requests"]
        if r["route"] in ("/_bulk", "fault:status", "fault:drop")
    )


def shipping_key(world: World) -> dict[str, Any]:
    return dict(json.loads(key_path(world.config).read_text()))


def key_client(world: World) -> AuditShipClient:
    return AuditShipClient.with_key(world.config.elasticsearch, shipping_key(world)["encoded"])


# --- shipping ------------------------------------------------------------------------------------


def test_shipping_waits_for_its_key_then_ships_each_event_once_with_its_sequence_as_id(
    world: World,
) -> None:
    shipping(world)
    waiting = ship(world)  # before the lifecycle ran: no key yet
    assert waiting.waiting is not None
    assert "no key yet" in waiting.waiting
    assert (waiting.shipped, waiting.problems) == (0, [])
    run_lifecycle(world)
    assert key_path(world.config).stat().st_mode & 0o777 == 0o600

    first = ship(world)
    events = store_events(world)
    assert first.ok
    assert first.waiting is None
    assert first.shipped == len(events) > 5  # several batches of 5
    assert first.batches >= 2
    assert first.already_there == 0
    assert cursor(world) == first.up_to == max(events)
    docs = assert_exactly_once(world)
    sample = next(d for d in docs if d["event"]["action"] == "key.activated")
    assert sample["event"]["kind"] == "audit"
    assert sample["@timestamp"].endswith("Z")
    assert {"subject", "actor", "details", "prev_hash", "hash", "at"} <= set(
        sample["rotator"]["audit"]
    )

    world.sandbox.clear_stats()
    again = ship(world)
    assert (again.shipped, again.problems) == (0, [])
    assert bulk_requests(world) == 0  # nothing above the mark: no request at all
    assert_exactly_once(world)

    world.advance(timedelta(days=20, minutes=1))  # every key is due: rotation adds events
    run_lifecycle(world)
    later = ship(world)
    assert later.ok
    assert later.shipped == len(store_events(world)) - len(events)
    assert_exactly_once(world)


def test_the_anchor_is_the_newest_shipped_event(world: World) -> None:
    shipping(world)
    assert shipped_anchor(world.config) is None  # nothing shipped yet: no anchor
    run_lifecycle(world)
    ship(world)
    events = store_events(world)
    anchor = shipped_anchor(world.config)
    assert anchor is not None
    assert (anchor.seq, anchor.hash) == (max(events), events[max(events)])
    assert anchor.where == f"elasticsearch:{STREAM}"
    off = world.config.model_copy(
        update={"audit": world.config.audit.model_copy(update={"data_stream": None})}
    )
    assert shipped_anchor(off) is None


def test_the_anchor_needs_read_and_says_so_without_raising(world: World) -> None:
    shipping(world)
    run_lifecycle(world)
    assert ship(world).ok
    no_read = {
        **SHIPPING_ROLE,
        "indices": [
            *ROTATOR_ROLE["indices"],
            {"names": [STREAM], "privileges": ["create_doc", "auto_configure"]},
        ],
    }
    world.admin().security.put_role(name="rotator", **no_read)
    assert shipped_anchor(world.config) is None


# --- under faults --------------------------------------------------------------------------------


def test_unavailable_answers_are_retried_with_the_clocks_backoff(world: World) -> None:
    shipping(world, batch=100)
    run_lifecycle(world)
    world.sandbox.add_faults([{"path": "/_bulk", "status": 503, "times": 2}])
    before = world.clock.now()
    report = ship(world)
    assert report.ok
    assert report.retries == 2
    assert world.clock.now() - before == timedelta(seconds=3)  # waited 1s, then 2s
    assert_exactly_once(world)


def test_an_outage_is_reported_without_raising_and_the_mark_stays(world: World) -> None:
    shipping(world)
    run_lifecycle(world)
    world.sandbox.add_faults([{"path": "/_bulk", "status": 503}])
    report = ship(world)
    assert report.shipped == 0
    assert cursor(world) is None
    assert len(report.problems) == 1
    assert "not shipped after 4 attempts" in report.problems[0]
    assert "503" in report.problems[0]
    assert world.sandbox.state.docs.count(STREAM) == 0
    world.sandbox.clear_faults()
    assert ship(world).ok
    assert_exactly_once(world)


def test_a_lost_answer_after_the_bulk_landed_is_not_shipped_twice(world: World) -> None:
    shipping(world, batch=100)
    run_lifecycle(world)
    total = len(store_events(world))
    # The bulk is applied, then the answer is cut short: the retry finds every document there.
    world.sandbox.add_faults([{"path": "/_bulk", "truncate": True, "times": 1}])
    report = ship(world)
    assert report.ok
    assert report.retries == 1
    assert report.shipped == report.already_there == total
    assert_exactly_once(world)


class RejectingClient:
    """Elasticsearch refusing single items, as a shard whose write queue is full does: the
    chosen documents are withheld from the real request and answered with 429
    ``es_rejected_execution_exception``; the others go to the sandbox and land."""

    def __init__(self, inner: AuditShipClient, reject: set[str]) -> None:
        self._inner = inner
        self.reject = reject

    def bulk_create(
        self, index: str, documents: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[BulkItem]:
        sent = [(i, d) for i, d in documents if i not in self.reject]
        answers = iter(self._inner.bulk_create(index, sent) if sent else [])
        return [
            BulkItem(i, 429, "es_rejected_execution_exception", "rejected execution")
            if i in self.reject
            else next(answers)
            for i, _ in documents
        ]

    def newest(self, index: str, field: str) -> dict[str, Any] | None:
        return self._inner.newest(index, field)


def test_a_refused_item_stops_the_mark_there_and_the_next_run_fills_the_gap(
    world: World,
) -> None:
    shipping(world, batch=100)
    run_lifecycle(world)
    events = sorted(store_events(world))
    refused = events[3]
    client = RejectingClient(key_client(world), {str(refused)})
    report = ship(world, client=client)
    assert report.shipped == 3
    assert cursor(world) == events[2]
    assert report.problems == [
        f"event {refused} refused (429 es_rejected_execution_exception: rejected execution)"
    ]
    # The items after the refused one landed all the same: the stream has a gap at `refused`.
    assert sorted(int(d["_id"]) for d in shipped(world)) == [e for e in events if e != refused]

    client.reject = set()
    again = ship(world, client=client)
    assert again.ok
    assert again.shipped == len(events) - 3
    assert again.already_there == len(events) - 4  # all but the refused one were there
    assert cursor(world) == events[-1]
    assert_exactly_once(world)


class MappingConflict(RejectingClient):
    """Elasticsearch refusing an event's details because an earlier document mapped one of their
    fields as another type (400 ``document_parsing_exception``); the same details as one string
    are taken."""

    def bulk_create(
        self, index: str, documents: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[BulkItem]:
        conflicting = {
            i for i, d in documents if i in self.reject and "details" in d["rotator"]["audit"]
        }
        sent = [(i, d) for i, d in documents if i not in conflicting]
        answers = iter(self._inner.bulk_create(index, sent) if sent else [])
        return [
            BulkItem(i, 400, "document_parsing_exception", "[1:80] failed to parse field")
            if i in conflicting
            else next(answers)
            for i, _ in documents
        ]


def test_details_the_mapping_refuses_are_shipped_as_one_json_string(world: World) -> None:
    shipping(world, batch=100)
    run_lifecycle(world)
    events = sorted(store_events(world))
    odd = events[5]
    report = ship(world, client=MappingConflict(key_client(world), {str(odd)}))
    assert report.ok
    assert report.details_as_text == [odd]
    assert cursor(world) == events[-1]
    docs = {int(d["_id"]): d for d in assert_exactly_once(world)}
    audit = docs[odd]["rotator"]["audit"]
    assert "details" not in audit
    with Session(world.engine) as session:
        stored = session.get(AuditEvent, odd)
        assert stored is not None
        assert json.loads(audit["details_json"]) == stored.details_json
    assert all("details" in d["rotator"]["audit"] for seq, d in docs.items() if seq != odd)


@pytest.mark.parametrize("seed", range(4))
def test_repeated_runs_converge_under_mixed_faults(world: World, seed: int) -> None:
    shipping(world, batch=4)
    run_lifecycle(world)
    world.advance(timedelta(days=20, minutes=1))
    run_lifecycle(world)  # a rotation too: more events, two keys in the store's history
    world.sandbox.add_faults(
        [
            {"path": "/_bulk", "truncate": True, "probability": 0.25, "seed": seed},
            {"path": "/_bulk", "drop": True, "probability": 0.15, "seed": seed + 100},
            {"path": "/_bulk", "status": 503, "probability": 0.25, "seed": seed + 200},
            {"path": "/_bulk", "status": 429, "probability": 0.1, "seed": seed + 300},
        ]
    )
    client = RejectingClient(key_client(world), set())
    events = sorted(store_events(world))
    for attempt in range(12):
        client.reject = {str(events[(seed * 5 + attempt * 7) % len(events)])}
        if attempt >= 8:
            client.reject = set()
        report = ship(world, client=client)
        if report.ok and cursor(world) == events[-1]:
            break
    else:
        pytest.fail(f"shipping did not converge: mark {cursor(world)}, head {events[-1]}")
    assert_exactly_once(world)


# --- no secret ships -----------------------------------------------------------------------------


def test_no_secret_of_any_key_reaches_a_shipped_document(world: World) -> None:
    shipping(world, batch=50)
    secrets: set[str] = set()

    def collect() -> None:
        for path in world.out.iterdir():
            text = path.read_text()
            if path.name == "rotator-audit.key":
                doc = json.loads(text)
                secrets.update({doc["api_key"], doc["encoded"]})
                key_id, secret = doc["id"], doc["api_key"]
            else:
                key_id, secret = text.strip().split(":")
            secrets.update({secret, base64.b64encode(f"{key_id}:{secret}".encode()).decode()})

    run_lifecycle(world)
    collect()
    ship(world)
    world.advance(timedelta(days=20, minutes=1))
    run_lifecycle(world)
    collect()
    world.advance(timedelta(days=2))  # past the overlap: the old keys are retired
    run_lifecycle(world)
    assert ship(world).ok
    assert len(secrets) == 2 * 2 * (len(SOURCES) + 1)  # two keys per source, two encodings
    assert world.config.elasticsearch.password_env is not None
    secrets.add(world.password)
    text = json.dumps(assert_exactly_once(world))
    assert '"key.invalidated"' in text  # retirement was shipped too
    leaked = [s for s in secrets if s in text]
    assert leaked == []


# --- the shipping key is a source ----------------------------------------------------------------


def test_the_shipping_key_is_the_source_rotator_audit_with_only_its_two_privileges(
    world: World,
) -> None:
    shipping(world)
    assert SOURCE == "rotator-audit"
    assert [s.name for s in world.specs] == [*SOURCES, SOURCE]
    run_lifecycle(world)
    with world.engine.connect() as conn:
        assert conn.execute(sa.select(Source.name).where(Source.name == SOURCE)).scalar() == SOURCE
        active = conn.execute(
            sa.select(ApiKey.es_id).where(
                ApiKey.source_name == SOURCE, ApiKey.state == ApiKeyState.ACTIVE
            )
        ).scalar()
    key = shipping_key(world)
    assert key["id"] == active
    info = world.admin().security.get_api_key(id=key["id"])["api_keys"][0]
    descriptors = info["role_descriptors"]
    assert list(descriptors) == ["rotator-rotator-audit"]
    assert descriptors["rotator-rotator-audit"]["cluster"] == []
    assert [
        (i["names"], sorted(i["privileges"]))
        for i in descriptors["rotator-rotator-audit"]["indices"]
    ] == [([STREAM], ["auto_configure", "create_doc"])]

    # What the key may not do: read the trail back, or write anywhere else.
    as_key = Elasticsearch(world.sandbox.url, api_key=key["encoded"])
    assert ship(world).ok
    with pytest.raises(ApiError) as caught:
        as_key.search(index=STREAM)
    assert caught.value.status_code == 403
    items = key_client(world).bulk_create("logs-web-default", [("1", {"@timestamp": "2030"})])
    assert [item.status for item in items] == [403]

    # rotator status lists it as a configured source with its current key.
    lookup = commands.KeyLookup(
        ElasticKeyAuthority(client_from_config(world.config.elasticsearch)), world.clock.now()
    )
    rows = {r["source"]: r for r in commands.status(world.engine, world.config, lookup)}
    assert rows[SOURCE]["configured"] is True
    assert rows[SOURCE]["key_id"] == active
    assert rows[SOURCE]["elasticsearch"] == "valid"


def test_the_shipping_key_is_rotated_like_any_source_and_shipping_follows(world: World) -> None:
    shipping(world)
    run_lifecycle(world)
    first = shipping_key(world)["id"]
    assert ship(world).ok
    world.advance(timedelta(days=20, minutes=1))
    run_lifecycle(world)
    second = shipping_key(world)["id"]
    assert second != first
    world.advance(timedelta(days=2))  # past the overlap: the first key is invalidated
    run_lifecycle(world)
    info = world.admin().security.get_api_key(id=first)["api_keys"][0]
    assert info["invalidated"] is True
    report = ship(world)
    assert report.ok
    assert report.shipped > 0
    assert_exactly_once(world)


def test_the_preflight_names_the_shipping_privileges_rotator_lacks(world: World) -> None:
    shipping(world, role=ROTATOR_ROLE)  # the role as it was before shipping
    es = client_from_config(world.config.elasticsearch)
    answer = dict(es.security.has_privileges(**preflight_request(world.config)))
    problems = missing_privileges(world.config, answer)
    assert problems == [
        f"audit.data_stream (source {SOURCE}, the audit trail's shipping key): rotator's role "
        f"lacks {p} on {STREAM}, which the source's key is given (Elasticsearch would silently "
        "leave it out)"
        for p in ("auto_configure", "create_doc")
    ]


def test_default_key_path_is_beside_the_sqlite_store(world: World, tmp_path: Path) -> None:
    text = config_text(world.sandbox.url, world.out, f"sqlite:///{tmp_path / 'db' / 'r.db'}")
    config = parse_config(text + f"audit: {{data_stream: {STREAM}}}\n")
    assert key_path(config) == tmp_path / "db" / "rotator-audit.key"


def test_turning_shipping_off_retires_the_shipping_key(world: World) -> None:
    shipping(world)
    run_lifecycle(world)
    key_id = shipping_key(world)["id"]
    world.config = parse_config(config_text(world.sandbox.url, world.out, str(world.engine.url)))
    assert SOURCE not in [s.name for s in world.specs]
    run_lifecycle(world)
    world.advance(timedelta(days=2))  # past the overlap
    run_lifecycle(world)
    info = world.admin().security.get_api_key(id=key_id)["api_keys"][0]
    assert info["invalidated"] is True


def test_the_copies_sync_ships_and_verify_uses_the_shipped_anchor(world: World) -> None:
    shipping(world)
    run_lifecycle(world)
    report = sync_copies(world.config, world.engine, world.clock)
    events = store_events(world)
    assert report.problems == []
    assert report.written["elasticsearch"] == len(events)
    assert_exactly_once(world)
    found = anchors(world.config)
    assert [(a.seq, a.where) for a in found] == [(max(events), f"elasticsearch:{STREAM}")]
    with Session(world.engine) as session:
        assert verify(session, found).ok
