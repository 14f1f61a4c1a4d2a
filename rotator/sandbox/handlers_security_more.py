"""More security endpoints: own privileges, built-in privileges, cache clearing, bulk roles.

``register_first`` must run before the user and application-privilege routes, so that
``/_security/user/_privileges`` and ``/_security/privilege/_builtin`` are not taken for a user
named ``_privileges`` or an application named ``_builtin``.
"""

from __future__ import annotations

from typing import Any

from rotator.sandbox.authn import authorize_cluster, authorize_run_as
from rotator.sandbox.errors import EsError, bad_request
from rotator.sandbox.handlers_apikeys import nodes_response
from rotator.sandbox.http import Call, Handler, Response, Router
from rotator.sandbox.privileges import (
    REMOTE_CLUSTER_PRIVILEGES,
    cluster_privilege_names,
    index_privilege_names,
)
from rotator.sandbox.role_query import check_role_queries
from rotator.sandbox.roles import (
    BUILTIN_ROLES,
    RoleDescriptor,
    parse_role_descriptor,
    validation_errors,
)

PREFIX = "cluster:admin/xpack/security/"
BUILTIN_PRIVILEGES = PREFIX + "privilege/builtin/get"
CLEAR_ROLES = PREFIX + "roles/cache/clear"
CLEAR_REALMS = PREFIX + "realm/cache/clear"
CLEAR_PRIVILEGES = PREFIX + "privilege/cache/clear"
BULK_PUT_ROLES = PREFIX + "role/bulk_put"
BULK_DELETE_ROLES = PREFIX + "role/bulk_delete"
API_KEY_WITH_ROLES = (
    "Cannot retrieve privileges for API keys with assigned role descriptors. Please use the Get "
    "API key information API https://ela.st/es-api-get-api-key"
)


def register_first(router: Router) -> None:
    """Register the routes that must win over ``/_security/user/{username}`` and friends."""
    router.add("GET", "/_security/user/_privileges", user_privileges)
    router.add("GET", "/_security/privilege/_builtin", builtin_privileges)
    router.add("POST", "/_security/role/{name}/_clear_cache", _clear(CLEAR_ROLES))
    router.add("POST", "/_security/realm/{realms}/_clear_cache", _clear(CLEAR_REALMS))
    router.add("POST", "/_security/privilege/{application}/_clear_cache", _clear(CLEAR_PRIVILEGES))
    router.add("POST", "/_security/role", bulk_put_roles)
    router.add("DELETE", "/_security/role", bulk_delete_roles)


# --- privileges ----------------------------------------------------------------------------------


def user_privileges(call: Call) -> Response:
    """``GET /_security/user/_privileges``: what the caller's roles grant (any user may ask).

    An API key with assigned role descriptors gets ES's 400 (``RBACEngine.getUserPrivileges``).
    """
    principal = authorize_run_as(call, PREFIX + "user/list_privileges")
    security = call.state.security
    if principal.api_key is not None:
        if principal.api_key.role_descriptors:
            raise bad_request(API_KEY_WITH_ROLES)
        descriptors = list(principal.api_key.limited_by)
    else:
        descriptors = security.resolve_roles(principal.roles)
    return Response(body=privileges_body(descriptors))


def privileges_body(descriptors: list[RoleDescriptor]) -> dict[str, Any]:
    """``GetUserPrivilegesResponse``: sorted cluster names, one entry per indices group."""
    superuser = BUILTIN_ROLES["superuser"]
    if any(d == superuser for d in descriptors):
        descriptors = [superuser]
    indices: list[dict[str, Any]] = []
    for descriptor in descriptors:
        for entry in descriptor.indices:
            item: dict[str, Any] = {
                "names": sorted(entry.names),
                "privileges": sorted(entry.privileges),
            }
            if entry.field_security is not None and entry.field_security.is_used():
                item["field_security"] = [entry.field_security.to_json()]
            if entry.query is not None:
                item["query"] = [entry.query]
            item["allow_restricted_indices"] = entry.allow_restricted_indices
            if item not in indices:
                indices.append(item)
    applications: list[dict[str, Any]] = []
    for descriptor in descriptors:
        for app in descriptor.applications:
            app_item = {
                "application": app.application,
                "privileges": sorted(app.privileges),
                "resources": sorted(app.resources),
            }
            if app_item not in applications:
                applications.append(app_item)
    return {
        "cluster": sorted({c for d in descriptors for c in d.cluster}),
        "global": [g for d in descriptors for g in _global(d)],
        "indices": indices,
        "applications": applications,
        "run_as": sorted({u for d in descriptors for u in d.run_as}),
    }


def _global(descriptor: RoleDescriptor) -> list[dict[str, Any]]:
    return [dict(descriptor.global_privileges)] if descriptor.global_privileges else []


def builtin_privileges(call: Call) -> Response:
    """``GET /_security/privilege/_builtin``: every cluster, index and remote-cluster name."""
    authorize_cluster(call, BUILTIN_PRIVILEGES)
    return Response(
        body={
            "cluster": sorted(cluster_privilege_names()),
            "index": sorted(index_privilege_names()),
            "remote_cluster": sorted(REMOTE_CLUSTER_PRIVILEGES),
        }
    )


# --- caches --------------------------------------------------------------------------------------


def _clear(action: str) -> Handler:
    def handler(call: Call) -> Response:
        authorize_cluster(call, action)
        return Response(body=nodes_response(call))

    handler.__doc__ = f"Clear a cache ({action}): nothing is cached, so only the reply."
    return handler


# --- bulk roles ----------------------------------------------------------------------------------


def bulk_put_roles(call: Call) -> Response:
    """``POST /_security/role``: ``{"roles": {name: descriptor}}``, per-role results."""
    body = call.request.json_object(required=True)
    roles = body.get("roles")
    if set(body) - {"roles"} or not isinstance(roles, dict):
        raise EsError(
            400, "x_content_parse_exception", "[1:2] [BulkPutRoleRequest] failed to parse"
        )
    authorize_cluster(call, BULK_PUT_ROLES)
    stored = call.state.security.roles
    created: list[str] = []
    updated: list[str] = []
    noop: list[str] = []
    errors: dict[str, Any] = {}
    for name, raw in roles.items():
        try:
            descriptor = parse_role_descriptor(name, raw if isinstance(raw, dict) else {})
            problems = validation_errors(descriptor)
            if name in BUILTIN_ROLES:
                problems.insert(0, f"Role [{name}] is reserved and may not be used.")
            if problems:
                text = "".join(f"{i}: {p};" for i, p in enumerate(problems, start=1))
                raise EsError(
                    400, "action_request_validation_exception", f"Validation Failed: {text}"
                )
            check_role_queries(descriptor)
        except EsError as error:
            errors[name] = {"type": error.error_type, "reason": error.reason}
            continue
        previous = stored.get(name)
        stored[name] = descriptor
        target = created if previous is None else noop if previous == descriptor else updated
        target.append(name)
    return Response(
        body=_bulk_result(("created", created), ("updated", updated), ("noop", noop), errors=errors)
    )


def bulk_delete_roles(call: Call) -> Response:
    """``DELETE /_security/role``: ``{"names": [...]}``, per-role results."""
    body = call.request.json_object(required=True)
    names = body.get("names")
    if set(body) - {"names"} or not isinstance(names, list) or not names:
        raise EsError(
            400, "x_content_parse_exception", "[1:2] [BulkDeleteRolesRequest] failed to parse"
        )
    authorize_cluster(call, BULK_DELETE_ROLES)
    deleted: list[str] = []
    not_found: list[str] = []
    errors: dict[str, Any] = {}
    for name in names:
        if name in BUILTIN_ROLES:
            errors[name] = {
                "type": "illegal_argument_exception",
                "reason": f"role [{name}] is reserved and cannot be deleted",
            }
        elif call.state.security.roles.pop(name, None) is not None:
            deleted.append(name)
        else:
            not_found.append(name)
    return Response(
        body=_bulk_result(("deleted", deleted), ("not_found", not_found), errors=errors)
    )


def _bulk_result(*groups: tuple[str, list[str]], errors: dict[str, Any]) -> dict[str, Any]:
    """``BulkRolesResponse``: each non-empty list, then ``errors`` when any."""
    out: dict[str, Any] = {key: names for key, names in groups if names}
    if errors:
        out["errors"] = {"count": len(errors), "details": errors}
    return out
