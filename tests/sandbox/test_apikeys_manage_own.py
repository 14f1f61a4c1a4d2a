"""Who sees and invalidates which keys: manage_own_api_key vs manage_api_key and manage_security."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from elasticsearch import AuthorizationException, BadRequestError, Elasticsearch, NotFoundError

from rotator.sandbox import Sandbox

pytestmark = pytest.mark.usefixtures("clean")
INVALIDATE = "cluster:admin/xpack/security/api_key/invalidate"


@pytest.fixture
def people(es: Elasticsearch) -> dict[str, Elasticsearch]:
    """A manager (manage_api_key) and two users with manage_own_api_key, as clients."""
    es.security.put_role(name="admin_role", cluster=["manage_api_key"])
    es.security.put_role(name="user_role", cluster=["manage_own_api_key"])
    clients = {}
    for name, role in (("manager", "admin_role"), ("alice", "user_role"), ("bob", "user_role")):
        es.security.put_user(username=name, password=f"{name}-password", roles=[role])
        clients[name] = es.options(basic_auth=(name, f"{name}-password"))
    return clients


def key_of(client: Elasticsearch, name: str, **body: Any) -> dict[str, Any]:
    return dict(client.security.create_api_key(name=name, **body))


def reason(exc: Any) -> str:
    return str(exc.value.body["error"]["reason"])


def denied(user: str, action: str, privileges: str, roles: str = "user_role") -> str:
    return (
        f"action [{action}] is unauthorized for user [{user}] with effective roles [{roles}], "
        f"this action is granted by the cluster privileges [{privileges}]"
    )


# --- get ------------------------------------------------------------------------------------------


def test_owner_true_lists_only_own_keys(people: dict[str, Elasticsearch]) -> None:
    mine = key_of(people["alice"], "a")
    key_of(people["bob"], "b")
    found = people["alice"].security.get_api_key(owner=True)["api_keys"]
    assert [k["id"] for k in found] == [mine["id"]]


def test_get_by_id_without_owner_is_403_for_manage_own(people: dict[str, Elasticsearch]) -> None:
    mine = key_of(people["alice"], "a")
    with pytest.raises(AuthorizationException) as exc:
        people["alice"].security.get_api_key(id=mine["id"])
    assert reason(exc) == denied(
        "alice",
        "cluster:admin/xpack/security/api_key/get",
        "read_security,manage_api_key,manage_security,all",
    )


def test_get_by_id_with_owner_finds_own_and_404s_others(people: dict[str, Elasticsearch]) -> None:
    mine, theirs = key_of(people["alice"], "a"), key_of(people["bob"], "b")
    assert people["alice"].security.get_api_key(id=mine["id"], owner=True)["api_keys"]
    with pytest.raises(NotFoundError) as exc:
        people["alice"].security.get_api_key(id=theirs["id"], owner=True)
    assert exc.value.body == {"api_keys": []}


def test_username_and_realm_of_oneself_is_allowed(people: dict[str, Elasticsearch]) -> None:
    key_of(people["alice"], "a")
    found = people["alice"].security.get_api_key(username="alice", realm_name="default_native")
    assert len(found["api_keys"]) == 1
    with pytest.raises(AuthorizationException):
        people["alice"].security.get_api_key(username="bob", realm_name="default_native")


def test_manager_sees_all_keys(people: dict[str, Elasticsearch]) -> None:
    key_of(people["alice"], "a")
    key_of(people["bob"], "b")
    assert len(people["manager"].security.get_api_key()["api_keys"]) == 2


def test_a_key_may_get_itself_but_not_others(
    people: dict[str, Elasticsearch], es: Elasticsearch
) -> None:
    mine = key_of(people["alice"], "a")
    other = key_of(people["alice"], "b")
    as_key = es.options(api_key=mine["encoded"])
    assert as_key.security.get_api_key(id=mine["id"])["api_keys"][0]["id"] == mine["id"]
    with pytest.raises(AuthorizationException):
        as_key.security.get_api_key(id=other["id"])
    with pytest.raises(AuthorizationException):
        as_key.security.get_api_key(id=mine["id"], with_limited_by=True)


def test_a_key_with_manage_api_key_sees_its_limited_by(
    people: dict[str, Elasticsearch], es: Elasticsearch
) -> None:
    mine = key_of(people["manager"], "m")
    shown = es.options(api_key=mine["encoded"]).security.get_api_key(
        id=mine["id"], with_limited_by=True
    )["api_keys"][0]
    assert shown["limited_by"][0]["admin_role"]["cluster"] == ["manage_api_key"]


def test_get_filters_and_active_only(sandbox: Sandbox, es: Elasticsearch) -> None:
    es.security.create_api_key(name="alpha-1")
    es.security.create_api_key(name="alpha-2", expiration="1h")
    dead = es.security.create_api_key(name="beta")
    es.security.invalidate_api_key(ids=[dead["id"]])

    def names(**kw: Any) -> list[str]:
        return sorted(k["name"] for k in es.security.get_api_key(**kw)["api_keys"])

    assert names(name="alpha*") == ["alpha-1", "alpha-2"]
    assert names(name="*") == ["alpha-1", "alpha-2", "beta"]
    assert names(name="beta") == ["beta"]
    assert names(active_only=True) == ["alpha-1", "alpha-2"]
    sandbox.advance(timedelta(hours=2))
    assert names(active_only=True) == ["alpha-1"]
    assert names() == ["alpha-1", "alpha-2", "beta"]


# --- query ----------------------------------------------------------------------------------------


def test_query_is_filtered_to_own_keys(people: dict[str, Elasticsearch]) -> None:
    mine = key_of(people["alice"], "a")
    key_of(people["bob"], "b")
    result = people["alice"].security.query_api_keys(query={"match_all": {}})
    assert (result["total"], [k["id"] for k in result["api_keys"]]) == (1, [mine["id"]])
    assert people["manager"].security.query_api_keys()["total"] == 2


def test_query_as_a_manage_own_key_sees_only_itself(
    people: dict[str, Elasticsearch], es: Elasticsearch
) -> None:
    mine = key_of(people["alice"], "a")
    key_of(people["alice"], "b")
    result = es.options(api_key=mine["encoded"]).security.query_api_keys()
    assert [k["id"] for k in result["api_keys"]] == [mine["id"]]


def test_query_with_limited_by_as_manage_own_key_is_403(
    people: dict[str, Elasticsearch], es: Elasticsearch
) -> None:
    mine = key_of(people["alice"], "a")
    with pytest.raises(AuthorizationException):
        es.options(api_key=mine["encoded"]).security.query_api_keys(with_limited_by=True)


def test_query_response_shape_and_sort_values(es: Elasticsearch) -> None:
    es.security.create_api_key(name="b")
    es.security.create_api_key(name="a")
    result = es.security.query_api_keys(sort=["name"], size=1).body
    assert list(result) == ["total", "count", "api_keys"]
    assert (result["total"], result["count"]) == (2, 1)
    assert result["api_keys"][0]["name"] == "a"
    assert result["api_keys"][0]["_sort"] == ["a"]
    assert list(result["api_keys"][0])[-1] == "_sort"


def test_query_without_matches_is_empty_even_with_aggs(es: Elasticsearch) -> None:
    result = es.security.query_api_keys(
        query={"term": {"name": "none"}}, aggs={"names": {"terms": {"field": "name"}}}
    ).body
    assert result == {"total": 0, "count": 0, "api_keys": []}


def test_query_typed_keys(es: Elasticsearch) -> None:
    es.security.create_api_key(name="a")
    result = es.security.query_api_keys(
        aggs={"names": {"terms": {"field": "name"}}}, typed_keys=True, size=0
    )
    assert "sterms#names" in result["aggregations"]


def test_query_error_is_passed_through(es: Elasticsearch) -> None:
    with pytest.raises(BadRequestError) as exc:
        es.security.query_api_keys(query={"term": {"api_key_hash": "x"}})
    assert "is not allowed for querying" in reason(exc)


# --- invalidate -----------------------------------------------------------------------------------


def test_invalidate_by_username_alone_is_403_for_manage_own(
    people: dict[str, Elasticsearch],
) -> None:
    key_of(people["alice"], "a")
    with pytest.raises(AuthorizationException) as exc:
        people["alice"].security.invalidate_api_key(username="alice")
    assert reason(exc) == denied("alice", INVALIDATE, "manage_api_key,manage_security,all")


def test_invalidate_by_realm_alone_is_403_for_manage_own(people: dict[str, Elasticsearch]) -> None:
    with pytest.raises(AuthorizationException) as exc:
        people["alice"].security.invalidate_api_key(realm_name="default_native")
    assert reason(exc) == denied("alice", INVALIDATE, "manage_api_key,manage_security,all")


def test_invalidate_ids_needs_owner_flag_for_manage_own(people: dict[str, Elasticsearch]) -> None:
    mine = key_of(people["alice"], "a")
    with pytest.raises(AuthorizationException) as exc:
        people["alice"].security.invalidate_api_key(ids=[mine["id"]])
    assert reason(exc) == denied("alice", INVALIDATE, "manage_api_key,manage_security,all")
    done = people["alice"].security.invalidate_api_key(ids=[mine["id"]], owner=True)
    assert done.body == {
        "invalidated_api_keys": [mine["id"]],
        "previously_invalidated_api_keys": [],
        "error_count": 0,
    }


def test_owner_flag_cannot_reach_other_users_keys(people: dict[str, Elasticsearch]) -> None:
    theirs = key_of(people["bob"], "b")
    done = people["alice"].security.invalidate_api_key(ids=[theirs["id"]], owner=True)
    assert done["invalidated_api_keys"] == []
    assert people["bob"].security.get_api_key(owner=True)["api_keys"][0]["invalidated"] is False


def test_a_key_may_invalidate_only_itself(
    people: dict[str, Elasticsearch], es: Elasticsearch
) -> None:
    mine, other = key_of(people["alice"], "a"), key_of(people["alice"], "b")
    as_key = es.options(api_key=mine["encoded"])
    with pytest.raises(AuthorizationException):
        as_key.security.invalidate_api_key(ids=[other["id"]])
    with pytest.raises(AuthorizationException):
        as_key.security.invalidate_api_key(owner=True)
    assert as_key.security.invalidate_api_key(ids=[mine["id"]])["invalidated_api_keys"] == [
        mine["id"]
    ]


def test_invalidate_skips_invalidated_but_includes_expired(
    sandbox: Sandbox, es: Elasticsearch
) -> None:
    short = es.security.create_api_key(name="short", expiration="1m")
    sandbox.advance(timedelta(minutes=5))
    assert es.security.invalidate_api_key(ids=[short["id"]])["invalidated_api_keys"] == [
        short["id"]
    ]
    again = es.security.invalidate_api_key(ids=[short["id"]])
    assert again.body == {
        "invalidated_api_keys": [],
        "previously_invalidated_api_keys": [],
        "error_count": 0,
    }
    shown = es.security.get_api_key(id=short["id"])["api_keys"][0]
    assert shown["invalidated"] is True
    assert list(shown).index("invalidation") == list(shown).index("invalidated") + 1


def test_manage_api_key_cannot_invalidate_cross_cluster_keys(
    people: dict[str, Elasticsearch], es: Elasticsearch
) -> None:
    cc = es.security.create_cross_cluster_api_key(name="cc", access={"search": [{"names": ["*"]}]})
    result = people["manager"].security.invalidate_api_key(ids=[cc["id"]]).body
    assert result == {
        "invalidated_api_keys": [],
        "previously_invalidated_api_keys": [],
        "error_count": 1,
        "error_details": [
            {
                "type": "security_exception",
                "reason": f"Cannot invalidate cross-cluster API key [{cc['id']}]. This requires "
                "[manage_security] cluster privilege or higher",
            }
        ],
    }
    assert es.security.invalidate_api_key(ids=[cc["id"]])["invalidated_api_keys"] == [cc["id"]]


def test_invalidate_by_name_prefix(es: Elasticsearch) -> None:
    ids = {es.security.create_api_key(name=n)["id"] for n in ("job-1", "job-2")}
    es.security.create_api_key(name="other")
    assert set(es.security.invalidate_api_key(name="job-*")["invalidated_api_keys"]) == ids
