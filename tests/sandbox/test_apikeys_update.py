"""Update and bulk update: owner-only, the no-op rules, limited-by refresh, per-key errors."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from elasticsearch import BadRequestError, Elasticsearch, NotFoundError

from rotator.sandbox import Sandbox

pytestmark = pytest.mark.usefixtures("clean")


@pytest.fixture
def owner(es: Elasticsearch) -> Elasticsearch:
    es.security.put_role(name="owner_role", cluster=["manage_own_api_key"])
    es.security.put_user(
        username="owner", password="owner-password", roles=["owner_role"], full_name="Owner"
    )
    return es.options(basic_auth=("owner", "owner-password"))


def reason(exc: Any) -> str:
    return str(exc.value.body["error"]["reason"])


def updated(client: Elasticsearch, key_id: str, **body: Any) -> bool:
    return bool(client.security.update_api_key(id=key_id, **body)["updated"])


# --- no-op rules ----------------------------------------------------------------------------------


def test_update_without_body_right_after_create_is_a_noop(owner: Elasticsearch) -> None:
    key = owner.security.create_api_key(name="k", metadata={"a": 1})
    assert updated(owner, key["id"]) is False


def test_any_expiration_makes_an_update(owner: Elasticsearch) -> None:
    key = owner.security.create_api_key(name="k", expiration="1d")
    assert updated(owner, key["id"], expiration="1d") is True


def test_same_metadata_is_a_noop_and_different_is_not(owner: Elasticsearch) -> None:
    key = owner.security.create_api_key(name="k", metadata={"a": 1})
    assert updated(owner, key["id"], metadata={"a": 1}) is False
    assert updated(owner, key["id"], metadata={"a": 2}) is True
    assert owner.security.get_api_key(id=key["id"], owner=True)["api_keys"][0]["metadata"] == {
        "a": 2
    }


def test_empty_metadata_on_a_key_created_without_metadata_is_an_update(
    owner: Elasticsearch,
) -> None:
    key = owner.security.create_api_key(name="k")
    assert updated(owner, key["id"], metadata={}) is True
    assert updated(owner, key["id"], metadata={}) is False


def test_same_role_descriptors_are_a_noop(owner: Elasticsearch) -> None:
    descriptors = {
        "r": {"cluster": ["monitor"], "indices": [{"names": ["a"], "privileges": ["read"]}]}
    }
    key = owner.security.create_api_key(name="k", role_descriptors=descriptors)
    assert updated(owner, key["id"], role_descriptors=descriptors) is False
    assert updated(owner, key["id"], role_descriptors={"r": {"cluster": ["manage"]}}) is True
    assert updated(owner, key["id"], role_descriptors={}) is True


def test_owner_role_change_refreshes_limited_by_once(
    es: Elasticsearch, owner: Elasticsearch
) -> None:
    key = owner.security.create_api_key(name="k")
    es.security.put_role(name="owner_role", cluster=["manage_own_api_key", "monitor"])
    assert updated(owner, key["id"]) is True
    assert updated(owner, key["id"]) is False
    shown = owner.security.get_api_key(id=key["id"], owner=True, with_limited_by=True)
    limited = shown["api_keys"][0]["limited_by"][0]["owner_role"]
    assert limited["cluster"] == ["manage_own_api_key", "monitor"]


def test_owner_user_details_change_makes_an_update(es: Elasticsearch, owner: Elasticsearch) -> None:
    key = owner.security.create_api_key(name="k")
    es.security.put_user(username="owner", roles=["owner_role"], full_name="New Name")
    assert updated(owner, key["id"]) is True
    as_key = es.options(api_key=key["encoded"])
    assert as_key.security.authenticate()["full_name"] == "New Name"


def test_update_keeps_the_secret_and_name(es: Elasticsearch, owner: Elasticsearch) -> None:
    key = owner.security.create_api_key(name="k")
    updated(owner, key["id"], metadata={"x": 1})
    assert es.options(api_key=key["encoded"]).security.authenticate()["api_key"]["name"] == "k"


# --- who may update, and which keys ---------------------------------------------------------------


def test_other_users_key_is_not_found(es: Elasticsearch, owner: Elasticsearch) -> None:
    theirs = es.security.create_api_key(name="admin-key")
    with pytest.raises(NotFoundError) as exc:
        owner.security.update_api_key(id=theirs["id"])
    assert exc.value.body["error"]["type"] == "resource_not_found_exception"
    assert reason(exc) == f"no API key owned by requesting user found for ID [{theirs['id']}]"


def test_even_a_superuser_cannot_update_another_users_key(
    es: Elasticsearch, owner: Elasticsearch
) -> None:
    mine = owner.security.create_api_key(name="k")
    with pytest.raises(NotFoundError):
        es.security.update_api_key(id=mine["id"], metadata={"x": 1})


def test_unknown_id_is_not_found(owner: Elasticsearch) -> None:
    with pytest.raises(NotFoundError) as exc:
        owner.security.update_api_key(id="nope")
    assert reason(exc) == "no API key owned by requesting user found for ID [nope]"


def test_an_api_key_cannot_update_even_itself(es: Elasticsearch, owner: Elasticsearch) -> None:
    key = owner.security.create_api_key(name="k")
    with pytest.raises(BadRequestError) as exc:
        es.options(api_key=key["encoded"]).security.update_api_key(id=key["id"])
    assert reason(exc) == (
        "authentication via API key not supported: only the owner user can update an API key"
    )


def test_invalidated_and_expired_keys_cannot_be_updated(
    sandbox: Sandbox, owner: Elasticsearch
) -> None:
    dead = owner.security.create_api_key(name="dead")
    owner.security.invalidate_api_key(ids=[dead["id"]], owner=True)
    with pytest.raises(BadRequestError) as exc:
        owner.security.update_api_key(id=dead["id"])
    assert reason(exc) == f"cannot update invalidated API key [{dead['id']}]"
    old = owner.security.create_api_key(name="old", expiration="1m")
    sandbox.advance(timedelta(minutes=2))
    with pytest.raises(BadRequestError) as exc:
        owner.security.update_api_key(id=old["id"])
    assert reason(exc) == f"cannot update expired API key [{old['id']}]"


def test_type_mismatch_both_ways(es: Elasticsearch) -> None:
    cc = es.security.create_cross_cluster_api_key(name="cc", access={"search": [{"names": ["*"]}]})
    with pytest.raises(BadRequestError) as exc:
        es.security.update_api_key(id=cc["id"])
    assert (
        reason(exc) == "cannot update API key of type [cross_cluster] while expected type is [rest]"
    )
    rest = es.security.create_api_key(name="rest")
    with pytest.raises(BadRequestError) as exc:
        es.security.update_cross_cluster_api_key(
            id=rest["id"], access={"search": [{"names": ["*"]}]}
        )
    assert (
        reason(exc) == "cannot update API key of type [rest] while expected type is [cross_cluster]"
    )


def test_expiration_must_be_in_the_future(owner: Elasticsearch) -> None:
    key = owner.security.create_api_key(name="k")
    with pytest.raises(BadRequestError) as exc:
        owner.security.update_api_key(id=key["id"], expiration="0s")
    assert reason(exc) == "Validation Failed: 1: API key expiration must be in the future;"


# --- bulk -----------------------------------------------------------------------------------------


def test_bulk_update_reports_in_request_order(owner: Elasticsearch) -> None:
    first = owner.security.create_api_key(name="one")["id"]
    second = owner.security.create_api_key(name="two")["id"]
    result = owner.security.bulk_update_api_keys(ids=[first, second], metadata={"x": 1}).body
    assert result == {"updated": [first, second], "noops": []}
    again = owner.security.bulk_update_api_keys(ids=[first, second]).body
    assert again == {"updated": [], "noops": [first, second]}


def test_bulk_update_errors_per_key(owner: Elasticsearch) -> None:
    good = owner.security.create_api_key(name="good")["id"]
    dead = owner.security.create_api_key(name="dead")["id"]
    owner.security.invalidate_api_key(ids=[dead], owner=True)
    result = owner.security.bulk_update_api_keys(ids=[good, dead, "nope"], metadata={"v": 2}).body
    assert result["updated"] == [good]
    assert result["noops"] == []
    assert result["errors"]["count"] == 2
    assert result["errors"]["details"][dead] == {
        "type": "illegal_argument_exception",
        "reason": f"cannot update invalidated API key [{dead}]",
    }
    assert result["errors"]["details"]["nope"] == {
        "type": "resource_not_found_exception",
        "reason": "no API key owned by requesting user found for ID [nope]",
    }


def test_bulk_update_needs_ids(owner: Elasticsearch) -> None:
    with pytest.raises(BadRequestError) as exc:
        owner.security.bulk_update_api_keys(ids=[])
    assert reason(exc) == "Validation Failed: 1: Field [ids] cannot be empty;"


def test_cross_cluster_update_noop_on_same_access(es: Elasticsearch) -> None:
    access = {"replication": [{"names": ["archive"]}]}
    cc = es.security.create_cross_cluster_api_key(name="cc", access=access, metadata={"t": 1})
    same = es.security.update_cross_cluster_api_key(id=cc["id"], access=access, metadata={"t": 1})
    assert same["updated"] is False
    changed = es.security.update_cross_cluster_api_key(
        id=cc["id"], access={"search": [{"names": ["x"]}]}
    )
    assert changed["updated"] is True
    shown = es.security.get_api_key(id=cc["id"])["api_keys"][0]
    assert shown["access"] == {"search": [{"names": ["x"], "allow_restricted_indices": False}]}
