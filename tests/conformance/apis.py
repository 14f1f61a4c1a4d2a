"""API name → HTTP method/path table, taken from Elastic's rest-api-spec JSON files.

Each entry mirrors ``rest-api-spec/src/main/resources/rest-api-spec/api/<name>.json`` of
``elastic/elasticsearch`` (paths, path parts, query parameters, whether a body is accepted or
required). The YAML runner validates a ``do`` against it the way the Java runner does (unknown
parameter, missing body, no matching path → the step fails) and the client executor falls back
to it when the official Python client has no method or argument for what the YAML sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

__all__ = [
    "API_SPECS",
    "GLOBAL_PARAMS",
    "ApiPath",
    "ApiSpec",
    "BoundRequest",
    "ParamError",
    "UnknownApiError",
    "bind_request",
]

BodyRule = Literal["none", "optional", "required"]

# _common.json: accepted by every endpoint.
GLOBAL_PARAMS = frozenset(
    {"pretty", "human", "error_trace", "source", "source_content_type", "filter_path"}
)


class UnknownApiError(Exception):
    """The YAML calls an API this runner has no spec for."""


class ParamError(Exception):
    """The call does not fit the API's spec (client-side error; ``catch: param`` expects it)."""


@dataclass(frozen=True)
class ApiPath:
    path: str
    methods: tuple[str, ...]
    parts: tuple[str, ...] = ()


@dataclass(frozen=True)
class ApiSpec:
    name: str
    paths: tuple[ApiPath, ...]
    params: frozenset[str] = frozenset()
    body: BodyRule = "none"
    # Keyword of the official client's method that takes the whole body ("body" nearly always;
    # put_privileges names it "privileges").
    client_body_arg: str = "body"


@dataclass(frozen=True)
class BoundRequest:
    """A call resolved against its spec: the path chosen and how the parameters split."""

    spec: ApiSpec
    path: ApiPath
    url: str
    path_params: dict[str, Any]
    query_params: dict[str, Any]


def _p(path: str, *methods: str, parts: tuple[str, ...] = ()) -> ApiPath:
    return ApiPath(path, tuple(methods), parts)


_REFRESH = frozenset({"refresh"})

_SPECS: tuple[ApiSpec, ...] = (
    ApiSpec(
        "cluster.health",
        (
            _p("/_cluster/health", "GET"),
            _p("/_cluster/health/{index}", "GET", parts=("index",)),
        ),
        frozenset(
            {
                "expand_wildcards",
                "level",
                "local",
                "master_timeout",
                "timeout",
                "wait_for_active_shards",
                "wait_for_nodes",
                "wait_for_events",
                "wait_for_no_relocating_shards",
                "wait_for_no_initializing_shards",
                "wait_for_status",
            }
        ),
    ),
    ApiSpec("security.authenticate", (_p("/_security/_authenticate", "GET"),)),
    ApiSpec(
        "security.bulk_update_api_keys",
        (_p("/_security/api_key/_bulk_update", "POST"),),
        body="required",
    ),
    ApiSpec(
        "security.clear_api_key_cache",
        (_p("/_security/api_key/{ids}/_clear_cache", "POST", parts=("ids",)),),
    ),
    ApiSpec(
        "security.create_api_key",
        (_p("/_security/api_key", "PUT", "POST"),),
        _REFRESH,
        body="required",
    ),
    ApiSpec(
        "security.create_cross_cluster_api_key",
        (_p("/_security/cross_cluster/api_key", "POST"),),
        body="required",
    ),
    ApiSpec(
        "security.delete_privileges",
        (
            _p(
                "/_security/privilege/{application}/{name}",
                "DELETE",
                parts=("application", "name"),
            ),
        ),
        _REFRESH,
    ),
    ApiSpec(
        "security.delete_role",
        (_p("/_security/role/{name}", "DELETE", parts=("name",)),),
        _REFRESH,
    ),
    ApiSpec(
        "security.delete_user",
        (_p("/_security/user/{username}", "DELETE", parts=("username",)),),
        _REFRESH,
    ),
    ApiSpec(
        "security.get_api_key",
        (_p("/_security/api_key", "GET"),),
        frozenset(
            {
                "id",
                "name",
                "username",
                "realm_name",
                "owner",
                "with_limited_by",
                "active_only",
                "with_profile_uid",
            }
        ),
    ),
    ApiSpec(
        "security.get_privileges",
        (
            _p("/_security/privilege", "GET"),
            _p("/_security/privilege/{application}", "GET", parts=("application",)),
            _p(
                "/_security/privilege/{application}/{name}",
                "GET",
                parts=("application", "name"),
            ),
        ),
    ),
    ApiSpec(
        "security.get_role",
        (
            _p("/_security/role/{name}", "GET", parts=("name",)),
            _p("/_security/role", "GET"),
        ),
    ),
    ApiSpec(
        "security.get_token",
        (_p("/_security/oauth2/token", "POST"),),
        body="required",
    ),
    ApiSpec(
        "security.get_user",
        (
            _p("/_security/user/{username}", "GET", parts=("username",)),
            _p("/_security/user", "GET"),
        ),
        frozenset({"with_profile_uid"}),
    ),
    ApiSpec(
        "security.grant_api_key",
        (_p("/_security/api_key/grant", "POST"),),
        _REFRESH,
        body="required",
    ),
    ApiSpec(
        "security.has_privileges",
        (
            _p("/_security/user/_has_privileges", "GET", "POST"),
            _p("/_security/user/{user}/_has_privileges", "GET", "POST", parts=("user",)),
        ),
        body="required",
    ),
    ApiSpec(
        "security.invalidate_api_key",
        (_p("/_security/api_key", "DELETE"),),
        body="required",
    ),
    ApiSpec(
        "security.invalidate_token",
        (_p("/_security/oauth2/token", "DELETE"),),
        body="required",
    ),
    ApiSpec(
        "security.put_privileges",
        (_p("/_security/privilege", "PUT", "POST"),),
        _REFRESH,
        body="required",
        client_body_arg="privileges",
    ),
    ApiSpec(
        "security.put_role",
        (_p("/_security/role/{name}", "PUT", "POST", parts=("name",)),),
        _REFRESH,
        body="required",
    ),
    ApiSpec(
        "security.put_user",
        (_p("/_security/user/{username}", "PUT", "POST", parts=("username",)),),
        _REFRESH,
        body="required",
    ),
    ApiSpec(
        "security.query_api_keys",
        (_p("/_security/_query/api_key", "GET", "POST"),),
        frozenset({"with_limited_by", "with_profile_uid", "typed_keys"}),
        body="optional",
    ),
    ApiSpec(
        "security.update_api_key",
        (_p("/_security/api_key/{id}", "PUT", parts=("id",)),),
        body="optional",
    ),
    ApiSpec(
        "security.update_cross_cluster_api_key",
        (_p("/_security/cross_cluster/api_key/{id}", "PUT", parts=("id",)),),
        body="required",
    ),
)

API_SPECS: Mapping[str, ApiSpec] = {spec.name: spec for spec in _SPECS}


def _path_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_path_text(v) for v in value)
    return str(value)


def bind_request(api: str, params: Mapping[str, Any], has_body: bool) -> BoundRequest:
    """Resolve a call as the Java runner does: best matching path, parameter split, body rule."""
    spec = API_SPECS.get(api)
    if spec is None:
        raise UnknownApiError(
            f"API [{api}] is not in the runner's API table (no rest-api-spec entry or client "
            f"method is known for it)"
        )
    given = set(params)
    candidates = [p for p in spec.paths if set(p.parts) <= given]
    if not candidates:
        wanted = [list(p.parts) for p in spec.paths]
        raise ParamError(f"no path of [{api}] matches the parameters {sorted(given)}: {wanted}")
    most = max(len(p.parts) for p in candidates)
    path = next(p for p in candidates if len(p.parts) == most)
    path_params: dict[str, Any] = {}
    query_params: dict[str, Any] = {}
    for key, value in params.items():
        if key in path.parts:
            path_params[key] = value
        elif key in spec.params or key in GLOBAL_PARAMS:
            query_params[key] = value
        else:
            raise ParamError(f"path/param [{key}] not supported by [{api}] api")
    if has_body and spec.body == "none":
        raise ParamError(f"body is not supported by [{api}] api")
    if not has_body and spec.body == "required":
        raise ParamError(f"body is required by [{api}] api")
    url = path.path
    for key, value in path_params.items():
        url = url.replace("{" + key + "}", quote(_path_text(value), safe=",*"))
    return BoundRequest(spec, path, url, path_params, query_params)
