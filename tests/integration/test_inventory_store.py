"""The inventory's rows on SQLite and PostgreSQL: batch writes, unseen keys, forgetting, listing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from rotator.store.inventory import InventoryRepository, KeyFilter

T0 = datetime(2030, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def row(es_id: str, sweep_id: int, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "es_id": es_id,
        "name": f"key {es_id}",
        "key_type": "rest",
        "key_class": "user",
        "sub_kind": None,
        "owner": "bob",
        "realm": "native1",
        "realm_type": "native",
        "state": "active",
        "created_at": T0 - DAY,
        "expires_at": None,
        "invalidated_at": None,
        "roles_json": {},
        "metadata_json": {},
        "findings_json": [],
        "warned_json": [],
        "first_seen_at": T0,
        "last_seen_at": T0,
        "gone_at": None,
        "sweep_id": sweep_id,
    }
    return {**base, **kw}


def test_mixed_rows_insert_and_update_in_batches(session: Session) -> None:
    repo = InventoryRepository(session)
    with session.begin():
        sweep = repo.start_sweep("r1", T0, "all", "rotator (native1)")
        repo.insert_many(
            [
                row("a", sweep, expires_at=T0 + DAY, sub_kind="alerting"),
                row("b", sweep, findings_json=[{"kind": "no_expiration"}]),
            ]
        )
        repo.update_many(
            [
                {"es_id": "a", "state": "expired", "warned_json": [86400]},
                {"es_id": "b", "state": "gone", "gone_at": T0},
            ]
        )
    with session.begin():
        got = repo.by_ids(["a", "b", "c"])

    assert set(got) == {"a", "b"}
    assert (got["a"].state, got["a"].warned_json, got["a"].expires_at) == (
        "expired",
        [86400],
        T0 + DAY,
    )
    assert (got["b"].state, got["b"].gone_at) == ("gone", T0)
    assert got["b"].findings_json == [{"kind": "no_expiration"}]


def test_unseen_keys_are_those_an_earlier_sweep_saw_and_only_the_owners_when_asked(
    session: Session,
) -> None:
    repo = InventoryRepository(session)
    with session.begin():
        first = repo.start_sweep("r1", T0, "all", "rotator (native1)")
        repo.insert_many(
            [row("old", first), row("theirs", first, owner="kibana"), row("gone", first)]
        )
        repo.update_many([{"es_id": "gone", "state": "gone", "gone_at": T0}])
        second = repo.start_sweep("r2", T0 + DAY, "own", "bob (native1)")
        repo.insert_many([row("new", second)])

        assert [r.es_id for r in repo.unseen(second, 10)] == ["old", "theirs"]
        assert [r.es_id for r in repo.unseen(second, 1)] == ["old"]
        assert [r.es_id for r in repo.unseen(second, 10, owner=("bob", "native1"))] == ["old"]


def test_gone_rows_are_forgotten_after_the_cutoff_in_batches(session: Session) -> None:
    repo = InventoryRepository(session)
    with session.begin():
        sweep = repo.start_sweep("r1", T0, "all", "x")
        repo.insert_many(
            [row(f"g{i}", sweep, state="gone", gone_at=T0 - 40 * DAY) for i in range(3)]
            + [row("recent", sweep, state="gone", gone_at=T0 - DAY), row("live", sweep)]
        )
        assert repo.forget_gone(T0 - 30 * DAY, 2) == 2
        assert repo.forget_gone(T0 - 30 * DAY, 2) == 1
        assert repo.forget_gone(T0 - 30 * DAY, 2) == 0
        assert set(repo.by_ids(["g0", "g1", "g2", "recent", "live"])) == {"recent", "live"}


def test_listing_filters_and_orders_soonest_expiry_first(session: Session) -> None:
    repo = InventoryRepository(session)
    with session.begin():
        sweep = repo.start_sweep("r1", T0, "all", "x")
        repo.insert_many(
            [
                row("never", sweep, findings_json=[{"kind": "no_expiration"}]),
                row("later", sweep, expires_at=T0 + 30 * DAY, key_class="kibana-managed"),
                row("soon", sweep, expires_at=T0 + 2 * DAY, key_class="kibana-managed"),
                row("expired", sweep, expires_at=T0 - DAY, state="expired"),
                row("gone", sweep, state="gone", gone_at=T0),
            ]
        )
        repo.finish_sweep(sweep, T0, ok=True, seen=5, pages=1, counts={})

        def ids(wanted: KeyFilter, page_size: int = 1000) -> list[str]:
            return [r.es_id for r in repo.listing(wanted, T0, page_size)]

        assert ids(KeyFilter()) == ["expired", "soon", "later", "never"]
        assert ids(KeyFilter(), page_size=1) == ["expired", "soon", "later", "never"]
        assert ids(KeyFilter(include_gone=True))[-1] in ("gone", "never")
        assert ids(KeyFilter(key_class="kibana-managed")) == ["soon", "later"]
        assert ids(KeyFilter(expiring_before=T0 + 14 * DAY)) == ["soon"]
        assert ids(KeyFilter(expired=True)) == ["expired"]
        assert ids(KeyFilter(finding="no_expiration")) == ["never"]
        assert ids(KeyFilter(owner="nobody")) == []
        last = repo.last_sweep()
        assert last is not None
        assert (last.ok, last.seen, last.scope) == (True, 5, "all")
