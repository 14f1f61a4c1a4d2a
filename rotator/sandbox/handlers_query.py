"""The query role and query user APIs: ``GET|POST /_security/_query/{role,user}``.

Both run the shared query engine over the native roles or users, with their own field tables
(``security_docs``), body parser names and response shapes (Elasticsearch 8.17's
``RestQueryRoleAction``/``QueryRoleResponse`` and ``RestQueryUserAction``/``QueryUserResponse``).
"""

from __future__ import annotations

from typing import Any

from rotator.sandbox.authn import authorize_cluster
from rotator.sandbox.docindex import DocIndex
from rotator.sandbox.handlers_apikeys import query_error
from rotator.sandbox.handlers_security import user_json
from rotator.sandbox.http import Call, Response, Router
from rotator.sandbox.query import QueryError, QueryResult, execute_query
from rotator.sandbox.security_docs import RoleDoc, UserDoc, role_index, user_index

PREFIX = "cluster:admin/xpack/security/"
QUERY_ROLE = PREFIX + "role/query"
QUERY_USER = PREFIX + "user/query"


def register(router: Router) -> None:
    """Register both query APIs for GET and POST."""
    for method in ("GET", "POST"):
        router.add(method, "/_security/_query/role", query_roles)
        router.add(method, "/_security/_query/user", query_users)


def _run(call: Call, index: DocIndex, payload: str) -> QueryResult:
    body = call.request.json()
    try:
        return execute_query(index, body, now_ms=call.now_ms, payload=payload, aggs=False)
    except QueryError as exc:
        raise query_error(exc, call.request.body, body) from None


def _item(doc_json: dict[str, Any], sort_values: list[Any] | None) -> dict[str, Any]:
    if sort_values:
        doc_json["_sort"] = list(sort_values)
    return doc_json


def query_roles(call: Call) -> Response:
    """``GET|POST /_security/_query/role``: native roles, ``name`` first in each item."""
    authorize_cluster(call, QUERY_ROLE)
    result = _run(call, role_index(call.state.security.roles), "query_role_request_payload")
    roles = []
    for doc, sort_values in result.hits:
        assert isinstance(doc, RoleDoc)
        roles.append(_item({"name": doc.name, **doc.descriptor.to_json()}, sort_values))
    return Response(body={"total": result.total, "count": len(roles), "roles": roles})


def query_users(call: Call) -> Response:
    """``GET|POST /_security/_query/user``: native users (reserved and file users excluded).

    ``with_profile_uid`` adds a user's profile uid when the user has a profile; the sandbox
    keeps no profiles, so the parameter is validated and adds nothing.
    """
    call.request.param_bool("with_profile_uid")
    authorize_cluster(call, QUERY_USER)
    users = call.state.security.users
    result = _run(call, user_index(users.values()), "query_user_request_payload")
    items = []
    for doc, sort_values in result.hits:
        assert isinstance(doc, UserDoc)
        items.append(_item(user_json(users[doc.username]), sort_values))
    return Response(body={"total": result.total, "count": len(items), "users": items})
