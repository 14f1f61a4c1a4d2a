"""Query role and query user APIs (``/_security/_query/role``, ``/_security/_query/user``).

Elasticsearch references (8.17): ``RestQueryRoleAction`` / ``RestQueryUserAction`` (body parsers
``query_role_request_payload`` / ``query_user_request_payload``: query, from, size, sort,
search_after; no aggregations), ``FieldNameTranslators`` (``ROLE_FIELD_NAME_TRANSLATORS``,
``USER_FIELD_NAME_TRANSLATORS``), ``QueryRoleResponse`` / ``QueryUserResponse`` (total, count,
roles/users, ``_sort`` when sorted), ``SecuritySystemIndices`` (field mappings) and the query
role / query user API pages (native roles and users only; ``read_security``).
"""

from __future__ import annotations

from typing import Any

import pytest
from elasticsearch import ApiError, Elasticsearch

pytestmark = pytest.mark.usefixtures("clean")


def call(es: Elasticsearch, what: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
    return es.perform_request(
        "POST",
        f"/_security/_query/{what}",
        params=params or None,
        headers={"accept": "application/json", "content-type": "application/json"},
        body=body,
    ).body


def error(es: Elasticsearch, what: str, body: dict[str, Any], **params: Any) -> Any:
    with pytest.raises(ApiError) as caught:
        call(es, what, body, **params)
    return caught.value.meta.status, caught.value.body


def seed_roles(es: Elasticsearch) -> None:
    es.security.put_role(
        name="logs-reader",
        description="Read access to the logs",
        indices=[{"names": ["logs-*"], "privileges": ["read"]}],
        applications=[{"application": "kibana", "privileges": ["read"], "resources": ["*"]}],
        metadata={"env": "prod", "team": "obs"},
    )
    es.security.put_role(name="auditor", cluster=["monitor"], metadata={"env": "dev"})
    es.security.put_role(name="writer", description="Writes metrics", cluster=["monitor"])


def seed_users(es: Elasticsearch) -> None:
    es.security.put_user(
        username="jdoe",
        password="jdoe-password",
        roles=["logs-reader", "auditor"],
        full_name="John Doe",
        email="John.Doe@Example.com",
    )
    es.security.put_user(username="asmith", password="asmith-password", roles=["auditor"])
    es.security.put_user(
        username="bwayne",
        password="bwayne-password",
        roles=["writer"],
        full_name="Bruce Wayne",
        enabled=False,
    )


def test_query_role_returns_native_roles_with_name_and_descriptor(es: Elasticsearch) -> None:
    """QueryRoleResponse.Item: ``name`` then the descriptor; only native roles (not built-in)."""
    seed_roles(es)
    everything = call(es, "role")
    assert (everything["total"], everything["count"]) == (3, 3)
    assert [r["name"] for r in everything["roles"]] == ["logs-reader", "auditor", "writer"]
    found = call(es, "role", {"query": {"term": {"metadata.env": "prod"}}})
    assert found["total"] == 1
    role = found["roles"][0]
    assert next(iter(role)) == "name"
    assert role == {
        "name": "logs-reader",
        **es.security.get_role(name="logs-reader")["logs-reader"],
    }
    assert "_sort" not in role


def test_query_role_fields_sort_and_search_after(es: Elasticsearch) -> None:
    """ROLE_FIELD_NAME_TRANSLATORS: name, description (text), applications.*, metadata.*."""
    seed_roles(es)
    by_app = call(es, "role", {"query": {"term": {"applications.application": "kibana"}}})
    assert [r["name"] for r in by_app["roles"]] == ["logs-reader"]
    words = call(es, "role", {"query": {"match": {"description": "LOGS metrics"}}})
    assert sorted(r["name"] for r in words["roles"]) == ["logs-reader", "writer"]
    page = call(es, "role", {"sort": [{"name": "desc"}], "size": 2})
    assert [(r["name"], r["_sort"]) for r in page["roles"]] == [
        ("writer", ["writer"]),
        ("logs-reader", ["logs-reader"]),
    ]
    assert (page["total"], page["count"]) == (3, 2)
    rest = call(es, "role", {"sort": [{"name": "desc"}], "search_after": ["logs-reader"]})
    assert [r["name"] for r in rest["roles"]] == ["auditor"]
    none = call(es, "role", {"query": {"prefix": {"name": "zzz"}}})
    assert none == {"total": 0, "count": 0, "roles": []}


def test_query_role_refuses_fields_outside_its_table(es: Elasticsearch) -> None:
    """FieldNameTranslators.translate: 400 illegal_argument_exception for other fields."""
    status, body = error(es, "role", {"query": {"term": {"cluster": "monitor"}}})
    assert status == 400
    assert body["error"]["type"] == "illegal_argument_exception"
    assert body["error"]["reason"] == "Field [cluster] is not allowed for querying or aggregation"
    status, body = error(es, "role", {"sort": ["username"]})
    assert body["error"]["reason"] == "Field [username] is not allowed for querying or aggregation"


def test_query_role_body_has_no_aggregations(es: Elasticsearch) -> None:
    """RestQueryRoleAction's parser declares no aggs: an unknown field of its payload."""
    status, body = error(es, "role", {"aggs": {"n": {"terms": {"field": "name"}}}})
    assert status == 400
    assert body["error"]["type"] == "x_content_parse_exception"
    assert body["error"]["reason"].endswith("[query_role_request_payload] unknown field [aggs]")


def test_query_role_sorting_a_text_field_fails_on_the_shard(es: Elasticsearch) -> None:
    """``description`` is ``text`` without fielddata: the search phase fails (400)."""
    seed_roles(es)
    status, body = error(es, "role", {"sort": ["description"]})
    assert status == 400
    assert body["error"]["type"] == "search_phase_execution_exception"
    cause = body["error"]["caused_by"]
    assert cause["type"] == "illegal_argument_exception"
    assert cause["reason"].startswith("Fielddata is disabled on [description] in [.security-7].")


def test_query_user_returns_native_users_only(es: Elasticsearch) -> None:
    """Query user API page: built-in (reserved) and file users are excluded."""
    seed_users(es)
    result = call(es, "user", {"sort": ["username"]})
    assert (result["total"], result["count"]) == (3, 3)
    first = result["users"][0]
    assert first == {
        "username": "asmith",
        "roles": ["auditor"],
        "full_name": None,
        "email": None,
        "metadata": {},
        "enabled": True,
        "_sort": ["asmith"],
    }
    assert [u["username"] for u in result["users"]] == ["asmith", "bwayne", "jdoe"]


def test_query_user_fields(es: Elasticsearch) -> None:
    """USER_FIELD_NAME_TRANSLATORS: username, roles, enabled, full_name and email (text)."""
    seed_users(es)

    def names(query: dict[str, Any]) -> list[str]:
        return sorted(u["username"] for u in call(es, "user", {"query": query})["users"])

    assert names({"term": {"roles": "auditor"}}) == ["asmith", "jdoe"]
    assert names({"term": {"enabled": False}}) == ["bwayne"]
    assert names({"match": {"full_name": "doe"}}) == ["jdoe"]
    assert names({"term": {"full_name": "John Doe"}}) == []
    assert names({"term": {"email": "example.com"}}) == ["jdoe"]
    assert names({"match": {"email": "john.doe@example.com"}}) == ["jdoe"]
    assert names({"exists": {"field": "full_name"}}) == ["bwayne", "jdoe"]
    assert names({"bool": {"must_not": [{"prefix": {"username": "j"}}]}}) == ["asmith", "bwayne"]


def test_query_user_refusals(es: Elasticsearch) -> None:
    """No metadata for users; full_name and email may not be sorted on (translate, sort)."""
    status, body = error(es, "user", {"query": {"term": {"metadata.env": "x"}}})
    assert (status, body["error"]["reason"]) == (
        400,
        "Field [metadata.env] is not allowed for querying or aggregation",
    )
    status, body = error(es, "user", {"sort": ["full_name"]})
    assert (status, body["error"]["type"], body["error"]["reason"]) == (
        400,
        "illegal_argument_exception",
        "sorting is not supported for field [full_name]",
    )
    status, body = error(es, "user", {"query": {"fuzzy": {"username": "x"}}})
    assert (
        body["error"]["reason"] == "Query type [fuzzy] is not currently supported in this context"
    )
    status, body = error(es, "user", {"from": -1})
    assert body["error"]["type"] == "action_request_validation_exception"


def test_query_user_with_profile_uid(es: Elasticsearch) -> None:
    """``with_profile_uid`` is a boolean; users without a profile get no ``profile_uid``."""
    seed_users(es)
    result = call(es, "user", {"query": {"term": {"username": "jdoe"}}}, with_profile_uid="true")
    assert result["count"] == 1
    assert "profile_uid" not in result["users"][0]
    status, body = error(es, "user", {}, with_profile_uid="maybe")
    assert (status, body["error"]["type"]) == (400, "illegal_argument_exception")


def test_query_apis_need_read_security(es: Elasticsearch) -> None:
    """Actions cluster:admin/xpack/security/{role,user}/query are granted by read_security."""
    es.security.put_role(name="reader", cluster=["read_security"])
    es.security.put_role(name="watcher", cluster=["monitor"])
    es.security.put_user(username="ro", password="ro-password", roles=["reader"])
    es.security.put_user(username="mon", password="mon-password", roles=["watcher"])
    ro = es.options(basic_auth=("ro", "ro-password"))
    assert call(ro, "role")["total"] == 2
    assert call(ro, "user")["total"] == 2
    mon = es.options(basic_auth=("mon", "mon-password"))
    for what in ("role", "user"):
        status, body = error(mon, what, {})
        assert status == 403
        assert body["error"]["reason"].startswith(
            f"action [cluster:admin/xpack/security/{what}/query] is unauthorized for user [mon]"
        )
