"""What rotator does with API keys, done through the official client as a manage_own_api_key user.

These run against the sandbox, and unchanged against a real cluster when ROTATOR_TEST_ES_URL is set.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest
from elasticsearch import AuthenticationException, AuthorizationException, Elasticsearch

from tests.contract.conftest import Cluster, RotatorIdentity

DAY_MS = 86_400_000


def as_user(cluster: Cluster, identity: RotatorIdentity) -> Elasticsearch:
    return cluster.client(basic_auth=(identity.username, identity.password))


def scoped_descriptor(identity: RotatorIdentity, dataset: str) -> dict[str, Any]:
    return {
        "rotator-source": {
            "cluster": ["monitor"],
            "indices": [
                {
                    "names": [f"logs-{identity.index_prefix}.{dataset}-default"],
                    "privileges": ["create_doc", "auto_configure"],
                }
            ],
        }
    }


def create_key(
    es: Elasticsearch, identity: RotatorIdentity, dataset: str = "web", **extra: Any
) -> dict[str, Any]:
    response = es.security.create_api_key(
        name=f"rotator-{dataset}-1",
        expiration="30d",
        role_descriptors=scoped_descriptor(identity, dataset),
        metadata={"managed_by": "rotator", "source": dataset, "rotation_id": str(uuid.uuid4())},
        **extra,
    )
    return dict(response.body)


def test_create_returns_a_usable_credential(
    cluster: Cluster, rotator_user: RotatorIdentity
) -> None:
    es = as_user(cluster, rotator_user)
    key = create_key(es, rotator_user)
    assert list(key)[:2] == ["id", "name"]
    assert key["name"] == "rotator-web-1"
    assert base64.b64decode(key["encoded"]).decode() == f"{key['id']}:{key['api_key']}"
    as_key = cluster.client(api_key=key["encoded"])
    me = as_key.security.authenticate()
    assert me["username"] == rotator_user.username
    assert me["authentication_type"] == "api_key"
    assert me["api_key"]["id"] == key["id"]


def test_expiration_is_thirty_days_from_now(
    cluster: Cluster, rotator_user: RotatorIdentity
) -> None:
    es = as_user(cluster, rotator_user)
    key = create_key(es, rotator_user)
    info = es.security.get_api_key(id=key["id"], owner=True)["api_keys"][0]
    assert key["expiration"] == info["expiration"]
    assert abs(info["expiration"] - info["creation"] - 30 * DAY_MS) < 2_000


def test_get_by_id_needs_owner_flag_for_manage_own(
    cluster: Cluster, rotator_user: RotatorIdentity
) -> None:
    es = as_user(cluster, rotator_user)
    key = create_key(es, rotator_user)
    with pytest.raises(AuthorizationException):
        es.security.get_api_key(id=key["id"])
    found = es.security.get_api_key(id=key["id"], owner=True)["api_keys"]
    assert [k["id"] for k in found] == [key["id"]]
    assert found[0]["metadata"]["managed_by"] == "rotator"
    assert found[0]["invalidated"] is False


def test_query_sees_only_own_keys_and_finds_by_rotation_id(
    cluster: Cluster, rotator_user: RotatorIdentity
) -> None:
    admin = cluster.client()
    foreign = admin.security.create_api_key(name="someone-else", metadata={"managed_by": "rotator"})
    es = as_user(cluster, rotator_user)
    keys = [create_key(es, rotator_user, dataset) for dataset in ("a", "b", "c")]
    mine = es.security.query_api_keys(query={"term": {"metadata.managed_by": "rotator"}}, size=100)
    ids = {k["id"] for k in mine["api_keys"]}
    assert ids == {k["id"] for k in keys}
    assert foreign["id"] not in ids
    wanted = es.security.get_api_key(id=keys[1]["id"], owner=True)["api_keys"][0]
    by_nonce = es.security.query_api_keys(
        query={"term": {"metadata.rotation_id": wanted["metadata"]["rotation_id"]}}
    )
    assert [k["id"] for k in by_nonce["api_keys"]] == [keys[1]["id"]]
    admin.security.invalidate_api_key(ids=[foreign["id"]])


def test_query_pages_with_search_after(cluster: Cluster, rotator_user: RotatorIdentity) -> None:
    es = as_user(cluster, rotator_user)
    created = {create_key(es, rotator_user, f"d{i}")["id"] for i in range(5)}
    seen: list[str] = []
    after: list[Any] | None = None
    while True:
        page = es.security.query_api_keys(size=2, sort=["expiration", "name"], search_after=after)
        if not page["api_keys"]:
            break
        seen.extend(k["id"] for k in page["api_keys"])
        after = page["api_keys"][-1]["_sort"]
    assert sorted(seen) == sorted(created)
    assert len(seen) == len(set(seen))


def test_new_key_has_exactly_the_scoped_privileges(
    cluster: Cluster, rotator_user: RotatorIdentity
) -> None:
    key = create_key(as_user(cluster, rotator_user), rotator_user)
    own_index = f"logs-{rotator_user.index_prefix}.web-default"
    other_index = f"logs-{rotator_user.index_prefix}.other-default"
    answer = cluster.client(api_key=key["encoded"]).security.has_privileges(
        cluster=["monitor", "manage_security", "manage_api_key", "all"],
        index=[
            {"names": [own_index], "privileges": ["create_doc", "auto_configure", "delete_index"]},
            {"names": [other_index], "privileges": ["create_doc"]},
        ],
    )
    assert answer["cluster"] == {
        "monitor": False,  # the owner holds no monitor: the intersection drops it
        "manage_security": False,
        "manage_api_key": False,
        "all": False,
    }
    assert answer["index"][own_index] == {
        "create_doc": True,
        "auto_configure": True,
        "delete_index": False,
    }
    assert answer["index"][other_index] == {"create_doc": False}


def test_key_can_ship_to_its_index_and_nowhere_else(
    cluster: Cluster, rotator_user: RotatorIdentity
) -> None:
    key = create_key(as_user(cluster, rotator_user), rotator_user)
    shipper = cluster.client(api_key=key["encoded"])
    own_index = f"logs-{rotator_user.index_prefix}.web-default"
    result = shipper.index(index=own_index, document={"message": "hello"})
    assert result["result"] == "created"
    with pytest.raises(AuthorizationException):
        shipper.index(index=f"logs-{rotator_user.index_prefix}.other-default", document={"x": 1})


def test_owner_updates_role_descriptors_in_place(
    cluster: Cluster, rotator_user: RotatorIdentity
) -> None:
    es = as_user(cluster, rotator_user)
    key = create_key(es, rotator_user)
    narrower = scoped_descriptor(rotator_user, "web")
    narrower["rotator-source"]["cluster"] = []
    assert es.security.update_api_key(id=key["id"], role_descriptors=narrower)["updated"] is True
    assert es.security.update_api_key(id=key["id"], role_descriptors=narrower)["updated"] is False
    stored = es.security.get_api_key(id=key["id"], owner=True)["api_keys"][0]
    assert stored["role_descriptors"]["rotator-source"]["cluster"] == []


def test_invalidate_own_key_stops_authentication(
    cluster: Cluster, rotator_user: RotatorIdentity
) -> None:
    es = as_user(cluster, rotator_user)
    key = create_key(es, rotator_user)
    result = es.security.invalidate_api_key(ids=[key["id"]], owner=True)
    assert result["invalidated_api_keys"] == [key["id"]]
    assert result["error_count"] == 0
    with pytest.raises(AuthenticationException):
        cluster.client(api_key=key["encoded"]).security.authenticate()
    again = es.security.invalidate_api_key(ids=[key["id"]], owner=True)
    assert again["invalidated_api_keys"] == []


def test_manage_own_cannot_invalidate_by_username(
    cluster: Cluster, rotator_user: RotatorIdentity
) -> None:
    es = as_user(cluster, rotator_user)
    with pytest.raises(AuthorizationException) as denied:
        es.security.invalidate_api_key(username=rotator_user.username)
    assert "manage_api_key,manage_security,all" in str(denied.value.body)


def test_manage_own_cannot_invalidate_someone_elses_key(
    cluster: Cluster, rotator_user: RotatorIdentity
) -> None:
    admin = cluster.client()
    foreign = admin.security.create_api_key(name="not-rotators")
    es = as_user(cluster, rotator_user)
    result = es.security.invalidate_api_key(ids=[foreign["id"]], owner=True)
    assert result["invalidated_api_keys"] == []
    assert admin.security.get_api_key(id=foreign["id"])["api_keys"][0]["invalidated"] is False
    admin.security.invalidate_api_key(ids=[foreign["id"]])


def test_a_delivered_key_cannot_mint_keys(cluster: Cluster, rotator_user: RotatorIdentity) -> None:
    key = create_key(as_user(cluster, rotator_user), rotator_user)
    with pytest.raises(AuthorizationException):
        cluster.client(api_key=key["encoded"]).security.create_api_key(
            name="derived", role_descriptors=scoped_descriptor(rotator_user, "x")
        )
