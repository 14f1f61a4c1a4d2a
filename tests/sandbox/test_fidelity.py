"""Divergences from Elasticsearch found from outside, each pinned to what ES 8.17 does."""

from __future__ import annotations

import pytest
from elasticsearch import Elasticsearch

from rotator.sandbox import Sandbox
from tests.sandbox.test_documents import call, key_with, user_with

V7 = "application/vnd.elasticsearch+json; compatible-with=7"


@pytest.fixture(autouse=True)
def _clean(clean: None) -> None:
    """Every test starts from an empty sandbox."""


# --- divergence 4: routes taken as something else ------------------------------------------------


def test_own_privileges_are_not_a_user_named_privileges(
    es: Elasticsearch, sandbox: Sandbox
) -> None:
    """``GET /_security/user/_privileges`` (RestGetUserPrivilegesAction) answers any
    authenticated user with ``GetUserPrivilegesResponse``; an API key with assigned role
    descriptors gets 400 (``RBACEngine.getUserPrivileges``)."""
    reader = user_with(es, sandbox, "reader", [{"names": ["logs-*"], "privileges": ["read"]}])
    assert call(reader, "GET", "/_security/user/_privileges") == (
        200,
        {
            "cluster": [],
            "global": [],
            "indices": [
                {"names": ["logs-*"], "privileges": ["read"], "allow_restricted_indices": False}
            ],
            "applications": [],
            "run_as": [],
        },
    )
    status, body = call(es, "GET", "/_security/user/_privileges")
    assert status == 200
    assert body["cluster"] == ["all"]
    assert body["run_as"] == ["*"]
    _id, key = key_with(es, sandbox, [{"names": ["x"], "privileges": ["read"]}])
    status, body = call(key, "GET", "/_security/user/_privileges")
    assert status == 400
    assert body["error"]["reason"] == (
        "Cannot retrieve privileges for API keys with assigned role descriptors. Please use the "
        "Get API key information API https://ela.st/es-api-get-api-key"
    )


def test_builtin_privileges_are_not_an_application_named_builtin(es: Elasticsearch) -> None:
    """``GET /_security/privilege/_builtin`` (RestGetBuiltinPrivilegesAction) lists every
    cluster and index privilege name and, since 8.15, the remote-cluster ones."""
    status, body = call(es, "GET", "/_security/privilege/_builtin")
    assert status == 200
    assert set(body) == {"cluster", "index", "remote_cluster"}
    assert {"all", "manage_own_api_key", "manage_security", "monitor"} <= set(body["cluster"])
    assert {"all", "create_doc", "auto_configure", "read"} <= set(body["index"])
    assert body["remote_cluster"] == ["monitor_enrich", "monitor_stats"]
    assert body["cluster"] == sorted(body["cluster"])


# --- divergence 5: endpoints that were missing ---------------------------------------------------


def test_cache_clearing_endpoints_answer_a_nodes_response(es: Elasticsearch) -> None:
    """Clear roles / realms / privileges caches answer ``{_nodes, cluster_name, nodes}``
    (ClearRolesCacheResponse, ClearRealmCacheResponse, ClearPrivilegesCacheResponse)."""
    for path in (
        "/_security/role/r1,r2/_clear_cache",
        "/_security/realm/default_native/_clear_cache",
        "/_security/privilege/myapp/_clear_cache",
    ):
        status, body = call(es, "POST", path)
        assert status == 200, path
        assert body["_nodes"] == {"total": 1, "successful": 1, "failed": 0}
        assert len(body["nodes"]) == 1


def test_bulk_put_and_delete_roles(es: Elasticsearch, sandbox: Sandbox) -> None:
    """``POST /_security/role`` and ``DELETE /_security/role`` (8.15+) answer per role:
    ``created``/``updated``/``noop`` or ``deleted``/``not_found``, with ``errors`` counted
    (BulkRolesResponse); they need ``manage_security``."""
    roles = {
        "good": {"cluster": ["monitor"]},
        "bad": {"cluster": ["no_such_privilege"]},
    }
    status, body = call(es, "POST", "/_security/role", {"roles": roles})
    assert status == 200
    assert body["created"] == ["good"]
    assert body["errors"]["count"] == 1
    assert body["errors"]["details"]["bad"]["type"] == "action_request_validation_exception"
    status, body = call(
        es, "POST", "/_security/role", {"roles": {"good": {"cluster": ["monitor"]}}}
    )
    assert body == {"noop": ["good"]}
    status, body = call(es, "DELETE", "/_security/role", {"names": ["good", "gone"]})
    assert body == {"deleted": ["good"], "not_found": ["gone"]}
    reader = user_with(es, sandbox, "reader", [{"names": ["x"], "privileges": ["read"]}])
    status, body = call(reader, "DELETE", "/_security/role", {"names": ["x"]})
    assert status == 403
    assert "cluster:admin/xpack/security/role/bulk_delete" in body["error"]["reason"]


# --- divergence 6: put_user with username in the body --------------------------------------------


def test_put_user_accepts_its_own_username_in_the_body(es: Elasticsearch) -> None:
    """``PutUserRequestBuilder`` accepts ``username`` when it matches the path (the Node.js
    client always sends it) and otherwise fails with ``[username] in source does not match
    the username provided [...]``."""
    body = {"username": "ann", "password": "s3cret-pass", "roles": []}
    assert call(es, "PUT", "/_security/user/ann", body) == (200, {"created": True})
    status, answer = call(es, "PUT", "/_security/user/bob", body)
    assert status == 400
    assert answer["error"]["type"] == "illegal_argument_exception"
    assert answer["error"]["reason"] == (
        "[username] in source does not match the username provided [bob]"
    )


# --- divergence 7: superuser and applications without stored privileges -------------------------


def test_superuser_has_every_application_privilege_even_with_others_stored(
    es: Elasticsearch,
) -> None:
    """``CompositeRolesStore`` builds the superuser role once without stored application
    privileges, so its ``*`` application privilege grants every application."""
    es.security.put_privileges(privileges={"myapp": {"read": {"actions": ["data:read/*"]}}})
    answer = es.security.has_privileges(
        application=[{"application": "otherapp", "privileges": ["read"], "resources": ["*"]}]
    )
    assert answer["has_all_requested"] is True
    assert answer["application"] == {"otherapp": {"*": {"read": True}}}


# --- divergence 8: role queries are validated ----------------------------------------------------


@pytest.mark.parametrize(
    ("query", "cause_type", "cause_reason"),
    [
        (
            {"terms": {"user": {"index": "users", "id": "1", "path": "names"}}},
            "illegal_argument_exception",
            "terms query with terms lookup isn't supported as part of a role query",
        ),
        (
            {"bool": {"filter": [{"has_child": {"type": "c", "query": {"match_all": {}}}}]}},
            "illegal_argument_exception",
            "has_child query isn't supported as part of a role query",
        ),
        ({"zzzzqqqqxxxx": {}}, "parsing_exception", "unknown query [zzzzqqqqxxxx]"),
    ],
)
def test_role_queries_are_validated(
    es: Elasticsearch, query: object, cause_type: str, cause_reason: str
) -> None:
    """``DLSRoleQueryValidator.validateQueryField``: 400 ``parse_exception`` "failed to parse
    field 'query' for indices [...] at index privilege [i] of role descriptor", caused by the
    parser's or the verifier's exception."""
    indices = [
        {"names": ["a"], "privileges": ["read"]},
        {"names": ["idx1", "idx2"], "privileges": ["read"], "query": query},
    ]
    status, body = call(es, "PUT", "/_security/role/dls", {"indices": indices})
    assert status == 400
    assert body["error"]["type"] == "parse_exception"
    assert body["error"]["reason"] == (
        "failed to parse field 'query' for indices [idx1,idx2] at index privilege [1] of role "
        "descriptor"
    )
    assert body["error"]["caused_by"] == {"type": cause_type, "reason": cause_reason}
    ok = [{"names": ["a"], "privileges": ["read"], "query": {"term": {"owner": "me"}}}]
    assert call(es, "PUT", "/_security/role/dls", {"indices": ok})[0] == 200


# --- divergence 9: small ones --------------------------------------------------------------------


def test_unknown_refresh_value_is_refused(es: Elasticsearch) -> None:
    """``WriteRequest.RefreshPolicy.parse``: ``Unknown value for refresh: [foo].`` (400)."""
    status, body = call(es, "PUT", "/_security/role/r?refresh=foo", {"cluster": []})
    assert status == 400
    assert body["error"]["type"] == "illegal_argument_exception"
    assert body["error"]["reason"] == "Unknown value for refresh: [foo]."
    assert call(es, "PUT", "/_security/role/r?refresh=wait_for", {"cluster": []})[0] == 200
    assert call(es, "PUT", "/app/_doc/1?refresh=nope", {"a": 1})[0] == 400


def test_invalidating_a_token_before_any_token_exists_is_400(es: Elasticsearch) -> None:
    """``TokenService.invalidateAccessToken``: with no tokens index yet, ES answers 400
    ``security_exception`` "failed to invalidate token"."""
    status, body = call(es, "DELETE", "/_security/oauth2/token", {"token": "dGhpcyBpcyBub3Q="})
    assert status == 400
    assert body["error"]["type"] == "security_exception"
    assert body["error"]["reason"] == "failed to invalidate token"
    es.security.get_token(grant_type="client_credentials")
    status, body = call(es, "DELETE", "/_security/oauth2/token", {"token": "dGhpcyBpcyBub3Q="})
    assert status == 404


def test_v7_compatible_invalidate_accepts_the_deprecated_id(
    es: Elasticsearch, sandbox: Sandbox
) -> None:
    """``RestInvalidateApiKeyAction`` declares ``id`` for REST API version 7 only: with
    ``compatible-with=7`` it names one key; in version 8 it is an unknown field."""
    key_id, _key = key_with(es, sandbox, [])
    headers = {"content-type": V7, "accept": V7}
    response = es.options(ignore_status=[400], headers=headers).perform_request(
        "DELETE", "/_security/api_key", headers=headers, body={"id": key_id}
    )
    assert response.meta.status == 200
    assert response.body["invalidated_api_keys"] == [key_id]
    status, body = call(es, "DELETE", "/_security/api_key", {"id": key_id})
    assert status == 400
    assert "unknown field [id]" in body["error"]["reason"]
