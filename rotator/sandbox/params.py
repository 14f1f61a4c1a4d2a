"""Query parameters each endpoint accepts (from the REST spec); others get Elasticsearch's 400."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from rotator.sandbox.errors import EsError

# Accepted by every endpoint.
GLOBAL_PARAMS = frozenset(
    {"pretty", "human", "error_trace", "source", "source_content_type", "filter_path"}
)
_REFRESH = frozenset({"refresh"})
_GET_API_KEY = frozenset(
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
)
_QUERY_API_KEYS = frozenset({"with_limited_by", "with_profile_uid", "typed_keys"})
_NONE: frozenset[str] = frozenset()

# (method, route template) -> the endpoint's own parameters. Routes not listed are not checked.
ENDPOINT_PARAMS: dict[tuple[str, str], frozenset[str]] = {
    ("PUT", "/_security/api_key"): _REFRESH,
    ("POST", "/_security/api_key"): _REFRESH,
    ("GET", "/_security/api_key"): _GET_API_KEY,
    ("DELETE", "/_security/api_key"): _NONE,
    ("POST", "/_security/api_key/grant"): _REFRESH,
    ("PUT", "/_security/api_key/grant"): _REFRESH,
    ("POST", "/_security/api_key/_bulk_update"): _NONE,
    ("POST", "/_security/api_key/{ids}/_clear_cache"): _NONE,
    ("PUT", "/_security/api_key/{ids}"): _NONE,
    ("GET", "/_security/_query/api_key"): _QUERY_API_KEYS,
    ("POST", "/_security/_query/api_key"): _QUERY_API_KEYS,
    ("POST", "/_security/cross_cluster/api_key"): _NONE,
    ("PUT", "/_security/cross_cluster/api_key/{ids}"): _NONE,
    ("GET", "/_security/_authenticate"): _NONE,
    ("GET", "/_security/user/_has_privileges"): _NONE,
    ("POST", "/_security/user/_has_privileges"): _NONE,
    ("GET", "/_security/user/{user}/_has_privileges"): _NONE,
    ("POST", "/_security/user/{user}/_has_privileges"): _NONE,
    ("POST", "/_security/oauth2/token"): _NONE,
    ("DELETE", "/_security/oauth2/token"): _NONE,
    ("PUT", "/_security/user/{username}"): _REFRESH,
    ("POST", "/_security/user/{username}"): _REFRESH,
    ("DELETE", "/_security/user/{username}"): _REFRESH,
    ("PUT", "/_security/role/{name}"): _REFRESH,
    ("POST", "/_security/role/{name}"): _REFRESH,
    ("DELETE", "/_security/role/{name}"): _REFRESH,
}


def check_params(method: str, template: str, path: str, given: Iterable[str]) -> None:
    """Refuse parameters the endpoint does not know, as Elasticsearch's REST layer does.

    Raises:
        EsError: 400 ``illegal_argument_exception`` naming them (with a suggestion when one is
            close to a known parameter).
    """
    own = ENDPOINT_PARAMS.get((method, template))
    if own is None:
        return
    known = own | GLOBAL_PARAMS
    unknown = sorted(p for p in given if p not in known)
    if not unknown:
        return
    parts = [f"[{p}]{_suggestion(p, known)}" for p in unknown]
    noun = "parameter" if len(unknown) == 1 else "parameters"
    raise EsError(
        400,
        "illegal_argument_exception",
        f"request [{path}] contains unrecognized {noun}: {', '.join(parts)}",
    )


def _suggestion(name: str, known: frozenset[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f" -> did you mean [{close[0]}]?" if close else ""
