"""The API key endpoints: create, grant, get, query, invalidate, update, cross-cluster, cache."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from typing import Any

from rotator.sandbox.authn import (
    Principal,
    authenticate_token,
    authentication_error,
    authorize_run_as,
    cluster_denied,
    forbidden,
    roles_text,
    user_principal,
)
from rotator.sandbox.errors import EsError, not_found, validation_failed
from rotator.sandbox.http import Call, Response, Router, requested_compat
from rotator.sandbox.query import QueryError, QueryResult, Visible, execute_query
from rotator.sandbox.query_locate import locate
from rotator.sandbox.roles import (
    RoleDescriptor,
    parse_role_descriptor,
    parse_role_descriptors,
    validation_errors,
    wrap_field_error,
)
from rotator.sandbox.roles import token as token_type
from rotator.sandbox.security_state import (
    ApiKeyRecord,
    Creator,
    SecurityState,
    hash_secret,
    new_key_secret,
)
from rotator.sandbox.timevalue import TimeValue, parse_time_value

PREFIX = "cluster:admin/xpack/security/"
CREATE = PREFIX + "api_key/create"
GRANT = PREFIX + "api_key/grant"
GET = PREFIX + "api_key/get"
QUERY = PREFIX + "api_key/query"
INVALIDATE = PREFIX + "api_key/invalidate"
UPDATE = PREFIX + "api_key/update"
BULK_UPDATE = PREFIX + "api_key/bulk_update"
CC_CREATE = PREFIX + "cross_cluster/api_key/create"
CC_UPDATE = PREFIX + "cross_cluster/api_key/update"
CLEAR_CACHE = PREFIX + "cache/clear"
AUTHENTICATE = PREFIX + "user/authenticate"
NODE_ID = "c0ffee00sandboxnode0"
NODE_NAME = "sandbox-node-0"
CCS_PRIVILEGES = ["read", "read_cross_cluster", "view_index_metadata"]
CCR_PRIVILEGES = ["cross_cluster_replication", "cross_cluster_replication_internal"]


def register(router: Router) -> None:
    """Register every API key endpoint on ``router``."""
    router.add("PUT", "/_security/api_key", create_api_key)
    router.add("POST", "/_security/api_key", create_api_key)
    router.add("GET", "/_security/api_key", get_api_keys)
    router.add("DELETE", "/_security/api_key", invalidate_api_keys)
    router.add("POST", "/_security/api_key/grant", grant_api_key)
    router.add("PUT", "/_security/api_key/grant", grant_api_key)
    router.add("POST", "/_security/api_key/_bulk_update", bulk_update_api_keys)
    router.add("POST", "/_security/api_key/{ids}/_clear_cache", clear_api_key_cache)
    router.add("PUT", "/_security/api_key/{ids}", update_api_key)
    router.add("GET", "/_security/_query/api_key", query_api_keys)
    router.add("POST", "/_security/_query/api_key", query_api_keys)
    router.add("POST", "/_security/cross_cluster/api_key", create_cross_cluster_api_key)
    router.add("PUT", "/_security/cross_cluster/api_key/{ids}", update_cross_cluster_api_key)


# --- strict body parsing (ObjectParser's behaviour and texts) -------------------------------------


class Body:
    """A JSON object request body read the way Elasticsearch's strict object parsers read it."""

    def __init__(self, values: dict[str, Any], parser: str, raw: str = "") -> None:
        self.values = values
        self.parser = parser
        self.raw = raw

    @classmethod
    def of(cls, call: Call, parser: str, *, required: bool = True) -> Body:
        """Parse the request body (``{}`` when empty and not required)."""
        values = call.request.json_object(required=required)
        return cls(values, parser, call.request.body.decode("utf-8", "replace"))

    def nested(self, key: str, parser: str) -> Body:
        """The object under ``key`` as a body of its own parser."""
        return Body(self.object(key) or {}, parser, self.raw)

    def check_fields(self, allowed: tuple[str, ...]) -> None:
        """Refuse unknown fields: ``[L:C] [parser] unknown field [f]``."""
        for key in self.values:
            if key not in allowed:
                raise self.error(key, f"unknown field [{key}]")

    def error(
        self, key: str, message: str, caused_by: EsError | None = None, *, at_value: bool = False
    ) -> EsError:
        """An ``x_content_parse_exception`` located at ``key`` (or at its value)."""
        cause = caused_by.as_object() if caused_by is not None else None
        reason = f"[{location(self.raw, key, value=at_value)}] [{self.parser}] {message}"
        return EsError(400, "x_content_parse_exception", reason, caused_by=cause)

    def type_error(self, key: str, value: Any) -> EsError:
        """``[L:C] [parser] <key> doesn't support values of type: <token>``."""
        return self.error(
            key, f"{key} doesn't support values of type: {token_type(value)}", at_value=True
        )

    def _typed(self, key: str, allowed: tuple[type, ...]) -> Any:
        value = self.values.get(key)
        if key in self.values and not isinstance(value, allowed):
            raise self.type_error(key, value)
        if isinstance(value, bool) and bool not in allowed:
            raise self.type_error(key, value)
        return value

    def string(self, key: str) -> str | None:
        """A string field (numbers are refused, as ``declareString`` does)."""
        value = self._typed(key, (str,))
        return value if isinstance(value, str) else None

    def object(self, key: str) -> dict[str, Any] | None:
        """An object field."""
        value = self._typed(key, (dict,))
        return value if isinstance(value, dict) else None

    def boolean(self, key: str) -> bool | None:
        """A boolean field; ``"true"`` and ``"false"`` strings are accepted."""
        value = self._typed(key, (bool, str))
        if isinstance(value, str):
            if value not in ("true", "false"):
                raise self.error(
                    key, f"Failed to parse value [{value}] as only [true] or [false] are allowed."
                )
            return value == "true"
        return value if isinstance(value, bool) else None

    def string_list(self, key: str) -> list[str] | None:
        """A string array field (a single string counts as a one-element array)."""
        value = self._typed(key, (list, str))
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            for item in value:
                if not isinstance(item, str):
                    raise self.type_error(key, item)
            return list(value)
        return None


def location(raw: str, key: str, *, value: bool = False) -> str:
    """``line:column`` of the field ``key`` (or of its value) in the raw body; ``1:1`` if absent."""
    at = raw.find(json.dumps(key))
    if at < 0:
        return "1:1"
    if value:
        colon = raw.find(":", at + len(json.dumps(key)))
        at = colon + 1 + (len(raw[colon + 1 :]) - len(raw[colon + 1 :].lstrip()))
    line = raw.count("\n", 0, at) + 1
    column = at - (raw.rfind("\n", 0, at) + 1) + 1
    return f"{line}:{column}"


def build_failure(body: Body, cause: EsError) -> EsError:
    """The error a ``ConstructingObjectParser`` gives when building the request fails."""
    return EsError(
        400,
        "x_content_parse_exception",
        f"Failed to build [{body.parser}] after last required field arrived",
        caused_by=cause.as_object(),
    )


def parse_expiration(body: Body) -> TimeValue | None:
    """The ``expiration`` field as a time value.

    Raises:
        EsError: a parse failure wrapped as the request parser wraps it.
    """
    text = body.string("expiration")
    if text is None:
        return None
    try:
        return parse_time_value(text, "expiration")
    except EsError as exc:
        raise build_failure(body, exc) from None


# --- key requests --------------------------------------------------------------------------------


@dataclass
class KeySpec:
    """What a create, grant or update request asks for."""

    name: str | None = None
    role_descriptors: list[RoleDescriptor] | None = None
    expiration: TimeValue | None = None
    metadata: dict[str, Any] | None = None


def parse_key_spec(body: Body) -> KeySpec:
    """Parse the body of a create request (also the ``api_key`` object of a grant)."""
    body.check_fields(("name", "role_descriptors", "expiration", "metadata"))
    if "name" not in body.values:
        raise EsError(400, "illegal_argument_exception", "Required [name]")
    return KeySpec(
        name=body.string("name"),
        role_descriptors=parse_descriptors(body),
        expiration=parse_expiration(body),
        metadata=body.object("metadata"),
    )


def parse_update_spec(body: Body) -> KeySpec:
    """Parse the body of an update request (every field optional)."""
    body.check_fields(("role_descriptors", "expiration", "metadata"))
    return KeySpec(
        role_descriptors=parse_descriptors(body),
        expiration=parse_expiration(body),
        metadata=body.object("metadata"),
    )


def parse_descriptors(body: Body) -> list[RoleDescriptor] | None:
    """The ``role_descriptors`` object as role descriptors (None when absent).

    Raises:
        EsError: a descriptor's parse error, wrapped as ObjectParser wraps field errors.
    """
    value = body.object("role_descriptors")
    if value is None:
        return None
    try:
        return parse_role_descriptors(value, validate=False)
    except EsError as exc:
        where = location(body.raw, "role_descriptors")
        raise wrap_field_error(exc, body.parser, "role_descriptors", where) from None


def name_errors(name: str | None) -> list[str]:
    """The validation messages for an API key name."""
    if not name:
        return ["api key name is required"]
    errors = []
    if len(name) > 256:
        errors.append("api key name may not be more than 256 characters long")
    if name != name.strip():
        errors.append("api key name may not begin or end with whitespace")
    if name.startswith("_"):
        errors.append("api key name may not begin with an underscore")
    return errors


def metadata_errors(metadata: dict[str, Any] | None) -> list[str]:
    """The validation message for reserved metadata keys, if any."""
    if metadata is not None and any(k.startswith("_") for k in metadata):
        return ["API key metadata keys may not start with [_]"]
    return []


def descriptor_errors(descriptors: list[RoleDescriptor] | None) -> list[str]:
    """Validation messages for role descriptors (unknown privileges and the like)."""
    return [message for d in descriptors or [] for message in validation_errors(d)]


def check_valid(messages: list[str]) -> None:
    """Raise the 400 ``action_request_validation_exception`` when there are messages."""
    if messages:
        raise validation_failed(*messages)


def validate_create(spec: KeySpec) -> None:
    """Validate a create (or grant) request as ``AbstractCreateApiKeyRequest`` does."""
    messages = name_errors(spec.name) + metadata_errors(spec.metadata)
    check_valid(messages + descriptor_errors(spec.role_descriptors))


def validate_update(spec: KeySpec, extra: list[str] | None = None) -> None:
    """Validate an update request as ``BaseUpdateApiKeyRequest`` does."""
    messages = metadata_errors(spec.metadata) + descriptor_errors(spec.role_descriptors)
    if spec.expiration is not None and spec.expiration.nanos <= 0:
        messages.append("API key expiration must be in the future")
    check_valid(messages + (extra or []))


# --- permissions ---------------------------------------------------------------------------------


def allows(principal: Principal, action: str) -> bool:
    """Whether a plain cluster privilege (not ``manage_own_api_key``) allows ``action``."""
    return bool(principal.permission.allows_cluster_action(action))


def manages_own(principal: Principal) -> bool:
    """Whether the principal holds ``manage_own_api_key``."""
    return bool(principal.permission.holds_manage_own_api_key())


def owns_request(
    principal: Principal,
    key_id: str | None,
    username: str | None,
    realm_name: str | None,
    owner: bool,
) -> bool:
    """``ManageOwnApiKeyClusterPrivilege.checkIfUserIsOwnerOfApiKeys``."""
    if principal.api_key is not None:
        return bool(key_id) and key_id == principal.api_key.id
    if owner:
        return True
    if username and realm_name:
        return username == principal.username and realm_name == principal.realm_name
    return False


def authorize_key_action(call: Call, action: str, own_ok: bool) -> Principal:
    """Allow ``action`` by a cluster privilege, or by ``manage_own_api_key`` when ``own_ok``.

    Raises:
        EsError: 403 (run-as or action denied).
    """
    principal = authorize_run_as(call, action)
    if allows(principal, action) or (own_ok and manages_own(principal)):
        return principal
    raise cluster_denied(principal, action, own_ok=own_ok)


def owner_descriptors(security: SecurityState, principal: Principal) -> list[RoleDescriptor]:
    """The owner's current role descriptors: the limited-by snapshot (none for an API key)."""
    if principal.api_key is not None:
        return []
    return [_without_description(d) for d in security.resolve_roles(principal.roles)]


def _without_description(descriptor: RoleDescriptor) -> RoleDescriptor:
    return replace(descriptor, description=None)


def creator_of(principal: Principal) -> Creator:
    """The ``creator`` recorded for keys made by (or updated by) ``principal``."""
    return Creator(
        principal=principal.username,
        full_name=principal.full_name,
        email=principal.email,
        metadata=dict(principal.metadata),
        realm=principal.realm_name,
        realm_type=principal.realm_type,
    )


# --- create and grant ----------------------------------------------------------------------------


def create_api_key(call: Call) -> Response:
    """``PUT|POST /_security/api_key``."""
    spec = parse_key_spec(Body.of(call, "api_key_request"))
    validate_create(spec)
    principal = authorize_key_action(call, CREATE, own_ok=True)
    if principal.api_key is not None and _grants_any(spec.role_descriptors):
        raise EsError(
            400,
            "illegal_argument_exception",
            "creating derived api keys requires an explicit role descriptor that is empty "
            "(has no privileges)",
        )
    return Response(body=_create(call, principal, spec, "rest"))


def _grants_any(descriptors: list[RoleDescriptor] | None) -> bool:
    return not descriptors or not all(d.is_empty() for d in descriptors)


def _create(call: Call, owner: Principal, spec: KeySpec, key_type: str) -> dict[str, Any]:
    security = call.state.security
    secret = new_key_secret()
    limited_by = owner_descriptors(security, owner) if key_type == "rest" else []
    key = ApiKeyRecord(
        id=security.new_key_id(),
        name=spec.name or "",
        type=key_type,
        secret_hash=hash_secret(secret),
        creation=call.now_ms,
        expiration=_expiration(call.now_ms, spec.expiration),
        role_descriptors=list(spec.role_descriptors or []),
        limited_by=limited_by,
        metadata=spec.metadata,
        creator=creator_of(owner),
        seq=security.next_seq(),
    )
    security.add_key(key)
    return created_json(key, secret)


def _expiration(now_ms: int, expiration: TimeValue | None) -> int | None:
    return None if expiration is None else now_ms + expiration.seconds * 1000


def created_json(key: ApiKeyRecord, secret: str) -> dict[str, Any]:
    """The create/grant response: ``id, name, expiration?, api_key, encoded``."""
    body: dict[str, Any] = {"id": key.id, "name": key.name}
    if key.expiration is not None:
        body["expiration"] = key.expiration
    body["api_key"] = secret
    body["encoded"] = base64.b64encode(f"{key.id}:{secret}".encode()).decode("ascii")
    return body


GRANT_FIELDS = (
    "api_key",
    "grant_type",
    "username",
    "password",
    "access_token",
    "run_as",
    "client_authentication",
)


@dataclass
class GrantSpec:
    """A parsed grant request."""

    key: KeySpec
    grant_type: str | None
    username: str | None
    password: str | None
    access_token: str | None
    run_as: str | None


def grant_api_key(call: Call) -> Response:
    """``POST|PUT /_security/api_key/grant``: a key owned by the user in the body."""
    grant = _parse_grant(Body.of(call, "grant_api_key_request"))
    _validate_grant(grant)
    authorize_key_action(call, GRANT, own_ok=False)
    owner = _grant_owner(call, grant)
    return Response(body=_create(call, owner, grant.key, "rest"))


def _parse_grant(body: Body) -> GrantSpec:
    body.check_fields(GRANT_FIELDS)
    key = _parse_grant_key(body) if "api_key" in body.values else KeySpec()
    return GrantSpec(
        key=key,
        grant_type=body.string("grant_type"),
        username=body.string("username"),
        password=body.string("password"),
        access_token=body.string("access_token"),
        run_as=body.string("run_as"),
    )


def _parse_grant_key(body: Body) -> KeySpec:
    key_body = body.nested("api_key", "api_key_request")
    try:
        return parse_key_spec(key_body)
    except EsError as exc:
        raise body.error("api_key", "failed to parse field [api_key]", exc) from None


def _validate_grant(grant: GrantSpec) -> None:
    key = grant.key
    messages = name_errors(key.name) + metadata_errors(key.metadata)
    messages += descriptor_errors(key.role_descriptors)
    kind = grant.grant_type
    if kind is None:
        messages.append("[grant_type] is required")
    elif kind == "password":
        messages += _required(kind, ("username", grant.username), ("password", grant.password))
        messages += _unsupported(kind, ("access_token", grant.access_token))
    elif kind == "access_token":
        messages += _required(kind, ("access_token", grant.access_token))
        messages += _unsupported(kind, ("username", grant.username), ("password", grant.password))
    else:
        messages.append(f"grant_type [{kind}] is not supported")
    check_valid(messages)


def _required(kind: str, *fields: tuple[str, str | None]) -> list[str]:
    return [f"[{name}] is required for grant_type [{kind}]" for name, value in fields if not value]


def _unsupported(kind: str, *fields: tuple[str, str | None]) -> list[str]:
    return [f"[{name}] is not supported for grant_type [{kind}]" for name, value in fields if value]


def _grant_owner(call: Call, grant: GrantSpec) -> Principal:
    try:
        owner = _grant_authenticate(call, grant)
    except EsError as exc:
        if exc.status != 401:
            raise
        raise EsError(
            403,
            "security_exception",
            "Failed to authenticate api key grant",
            caused_by=exc.as_object(),
            root_cause=[{k: v for k, v in exc.as_object().items() if k != "caused_by"}],
        ) from None
    return _grant_run_as(call, owner, grant.run_as)


def _grant_authenticate(call: Call, grant: GrantSpec) -> Principal:
    security = call.state.security
    if grant.grant_type == "access_token":
        return _grant_token_principal(call, grant.access_token or "")
    user = security.authenticate_user(grant.username or "", grant.password or "")
    if user is None:
        raise authentication_error(
            f"unable to authenticate user [{grant.username}] for action [{GRANT}]"
        )
    return user_principal(security, user, "realm")


def _grant_token_principal(call: Call, access_token: str) -> Principal:
    return authenticate_token(call.state.security, access_token, call.now_ms)


def _grant_run_as(call: Call, owner: Principal, run_as: str | None) -> Principal:
    if run_as is None:
        return owner
    security = call.state.security
    user = security.lookup_user(run_as)
    if user is None or not owner.permission.can_run_as(run_as):
        who = f"user [{owner.username}]"
        raise forbidden(
            f"action [{AUTHENTICATE}] is unauthorized for {who}{roles_text(owner)}, "
            f"because {who} is unauthorized to run as [{run_as}]"
        )
    effective = user_principal(security, user, owner.authentication_type)
    effective.authenticating = owner
    return effective


# --- the API key object --------------------------------------------------------------------------


def api_key_json(key: ApiKeyRecord, *, with_limited_by: bool) -> dict[str, Any]:
    """One key as ``ApiKey.innerToXContent`` renders it, in the same field order."""
    body: dict[str, Any] = {
        "id": key.id,
        "name": key.name,
        "type": key.type,
        "creation": key.creation,
    }
    if key.expiration is not None:
        body["expiration"] = key.expiration
    body["invalidated"] = key.invalidated
    if key.invalidation is not None:
        body["invalidation"] = key.invalidation
    body["username"] = key.creator.principal
    body["realm"] = key.creator.realm
    body["realm_type"] = key.creator.realm_type
    body["metadata"] = key.metadata or {}
    body["role_descriptors"] = {d.name: d.to_json() for d in key.role_descriptors}
    if key.type == "cross_cluster":
        body["access"] = access_json(key.role_descriptors)
    elif with_limited_by:
        body["limited_by"] = [{d.name: d.to_json() for d in key.limited_by}]
    return body


def access_json(descriptors: list[RoleDescriptor]) -> dict[str, Any]:
    """The ``access`` of a cross-cluster key, rebuilt from its role descriptor."""
    search: list[dict[str, Any]] = []
    replication: list[dict[str, Any]] = []
    for descriptor in descriptors:
        for entry in descriptor.to_json().get("indices", []):
            target = search if entry.get("privileges") == CCS_PRIVILEGES else replication
            target.append({k: v for k, v in entry.items() if k != "privileges"})
    access: dict[str, Any] = {}
    if search:
        access["search"] = search
    if replication:
        access["replication"] = replication
    return access


# --- get -----------------------------------------------------------------------------------------


@dataclass
class KeyFilter:
    """Which keys a get or invalidate request selects."""

    ids: list[str] | None = None
    name: str | None = None
    username: str | None = None
    realms: list[str] | None = None
    active_only: bool = False
    skip_invalidated: bool = False

    def matches(self, key: ApiKeyRecord, now_ms: int) -> bool:
        """Whether ``key`` is selected."""
        if self.ids is not None and key.id not in self.ids:
            return False
        if self.username and key.creator.principal != self.username:
            return False
        if self.realms is not None and key.creator.realm not in self.realms:
            return False
        if (self.active_only or self.skip_invalidated) and key.invalidated:
            return False
        if self.active_only and key.is_expired(now_ms):
            return False
        return self.name is None or name_matches(self.name, key.name)


def name_matches(pattern: str, name: str) -> bool:
    """Exact name, ``*`` for all, or a trailing ``*`` for a prefix."""
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


def select_keys(security: SecurityState, selection: KeyFilter, now_ms: int) -> list[ApiKeyRecord]:
    """The matching keys in index order."""
    keys = sorted(security.api_keys.values(), key=lambda k: k.seq)
    return [k for k in keys if selection.matches(k, now_ms)]


def _text(value: str | None) -> str | None:
    return value if value and value.strip() else None


@dataclass
class GetParams:
    """The query parameters of a get request (blank strings count as absent)."""

    key_id: str | None
    name: str | None
    username: str | None
    realm: str | None
    owner: bool
    with_limited_by: bool
    active_only: bool

    @classmethod
    def of(cls, call: Call) -> GetParams:
        """Read (and type-check) the parameters of ``call``."""
        request = call.request
        request.param_bool("with_profile_uid")
        return cls(
            key_id=_text(request.params.get("id")),
            name=_text(request.params.get("name")),
            username=_text(request.params.get("username")),
            realm=_text(request.params.get("realm_name")),
            owner=request.param_bool("owner"),
            with_limited_by=request.param_bool("with_limited_by"),
            active_only=request.param_bool("active_only"),
        )

    def errors(self) -> list[str]:
        """``GetApiKeyRequest.validate`` messages."""
        errors = []
        if (self.key_id or self.name) and (self.realm or self.username):
            errors.append(
                "username or realm name must not be specified when the api key id or api key "
                "name is specified"
            )
        if self.owner and (self.realm or self.username):
            errors.append(
                "neither username nor realm-name may be specified when retrieving owned API keys"
            )
        if self.key_id and self.name:
            errors.append("only one of [api key id, api key name] can be specified")
        return errors


def get_api_keys(call: Call) -> Response:
    """``GET /_security/api_key``: 404 (with an empty list) when an asked id is not found."""
    params = GetParams.of(call)
    check_valid(params.errors())
    principal = authorize_run_as(call, GET)
    _authorize_get(principal, params)
    keys = select_keys(call.state.security, _get_selection(principal, params), call.now_ms)
    body = {"api_keys": [api_key_json(k, with_limited_by=params.with_limited_by) for k in keys]}
    return Response(404 if params.key_id and not keys else 200, body)


def _authorize_get(principal: Principal, params: GetParams) -> None:
    own_ok = not (principal.api_key is not None and params.with_limited_by) and owns_request(
        principal, params.key_id, params.username, params.realm, params.owner
    )
    if not (allows(principal, GET) or (own_ok and manages_own(principal))):
        raise cluster_denied(principal, GET, own_ok=own_ok)


def _get_selection(principal: Principal, params: GetParams) -> KeyFilter:
    username = params.username
    realms: list[str] | None = [params.realm] if params.realm else None
    if params.owner:
        username, realms = principal.username, [principal.owner_realm]
    ids = [params.key_id] if params.key_id else None
    return KeyFilter(ids, params.name, username, realms, params.active_only)


# --- query ---------------------------------------------------------------------------------------


def query_api_keys(call: Call) -> Response:
    """``GET|POST /_security/_query/api_key``."""
    request = call.request
    with_limited_by = request.param_bool("with_limited_by")
    typed_keys = request.param_bool("typed_keys")
    request.param_bool("with_profile_uid")
    body = request.json_object()
    principal = authorize_run_as(call, QUERY)
    visible = _query_visibility(principal, with_limited_by)
    security = call.state.security
    try:
        result = execute_query(
            security.key_index, body, visible=visible, now_ms=call.now_ms, typed_keys=typed_keys
        )
    except QueryError as exc:
        raise query_error(exc, call.request.body, body) from None
    return Response(body=_query_response(security, result, with_limited_by))


def query_error(exc: QueryError, text: bytes, body: Any) -> EsError:
    """The engine's error as the EsError the server renders, positioned in the request text."""
    locate(exc, text.decode("utf-8", "replace"), body)
    body = exc.error_body()
    return EsError(
        exc.status,
        exc.error_type,
        exc.reason,
        metadata=dict(exc.extra),
        caused_by=body.get("caused_by"),
        root_cause=body["root_cause"],
    )


def _query_visibility(principal: Principal, with_limited_by: bool) -> Visible | None:
    if allows(principal, QUERY):
        return None
    own_ok = not (principal.api_key is not None and with_limited_by)
    if not (own_ok and manages_own(principal)):
        raise cluster_denied(principal, QUERY, own_ok=own_ok)
    if principal.api_key is not None:
        return OneKey(principal.api_key.id)
    return OwnKeys(principal.username, principal.realm_name)


@dataclass(frozen=True, slots=True)
class OwnKeys:
    """What a user with ``manage_own_api_key`` may query: the keys it owns.

    Equal for the same owner, so the engine remembers a query's total across the pages of one
    paged read instead of counting every key again for each page.
    """

    username: str
    realm: str

    def __call__(self, doc: Any) -> bool:
        """Whether the owner may see ``doc``."""
        return bool(doc.username == self.username and doc.realm_name == self.realm)


@dataclass(frozen=True, slots=True)
class OneKey:
    """What an API key with ``manage_own_api_key`` may query: itself."""

    key_id: str

    def __call__(self, doc: Any) -> bool:
        """Whether ``doc`` is that key."""
        return bool(doc.id == self.key_id)


def _query_response(
    security: SecurityState, result: QueryResult, with_limited_by: bool
) -> dict[str, Any]:
    if result.total == 0:
        return {"total": 0, "count": 0, "api_keys": []}
    items = []
    for doc, sort_values in result.hits:
        item = api_key_json(security.api_keys[doc.id], with_limited_by=with_limited_by)
        if sort_values is not None:
            item["_sort"] = list(sort_values)
        items.append(item)
    response: dict[str, Any] = {"total": result.total, "count": len(items), "api_keys": items}
    if result.aggregations is not None:
        response["aggregations"] = result.aggregations
    return response


# --- invalidate ----------------------------------------------------------------------------------


@dataclass
class InvalidateSpec:
    """A parsed invalidate request."""

    ids: list[str] | None
    name: str | None
    username: str | None
    realm: str | None
    owner: bool


def invalidate_api_keys(call: Call) -> Response:
    """``DELETE /_security/api_key``."""
    body = Body.of(call, "invalidate_api_key")
    v7_id = _v7_id(call, body)
    spec = _parse_invalidate(body)
    if v7_id is not None:
        spec = InvalidateSpec([v7_id], spec.name, spec.username, spec.realm, spec.owner)
    check_valid(_invalidate_errors(spec))
    principal = authorize_run_as(call, INVALIDATE)
    if not allows(principal, INVALIDATE):
        ids: list[str | None] = [*spec.ids] if spec.ids else [None]
        own_ok = all(owns_request(principal, i, spec.username, spec.realm, spec.owner) for i in ids)
        if not (own_ok and manages_own(principal)):
            raise cluster_denied(principal, INVALIDATE, own_ok=own_ok)
    return Response(body=_invalidate(call, principal, spec))


def _v7_id(call: Call, body: Body) -> str | None:
    """The deprecated ``id`` field, which the parser accepts only in REST API version 7 mode.

    ``RestInvalidateApiKeyAction`` declares ``id`` ``forRestApiVersion(V_7)``; with both ``id``
    and ``ids`` the request fails validation.
    """
    if "id" not in body.values or requested_compat(call.request.headers) != 7:
        return None
    value = body.string("id")
    body.values = {k: v for k, v in body.values.items() if k != "id"}
    if "ids" in body.values:
        raise validation_failed("Must use either [id] or [ids], not both at the same time")
    return value


def _parse_invalidate(body: Body) -> InvalidateSpec:
    body.check_fields(("realm_name", "username", "name", "owner", "ids"))
    spec = InvalidateSpec(
        ids=body.string_list("ids"),
        name=_text(body.string("name")),
        username=_text(body.string("username")),
        realm=_text(body.string("realm_name")),
        owner=bool(body.boolean("owner")),
    )
    if spec.ids is not None:
        _check_ids(body, spec.ids)
    return spec


def _check_ids(body: Body, ids: list[str]) -> None:
    if not ids:
        raise build_failure(body, validation_failed("Field [ids] cannot be an empty array"))
    blank = [i for i, value in enumerate(ids) if not value.strip()]
    if blank:
        noun, place = ("id", "position") if len(blank) == 1 else ("ids", "positions")
        message = (
            f"Field [ids] must not contain blank id, but got blank {noun} at index {place}: "
            f"[{', '.join(map(str, blank))}]"
        )
        raise build_failure(body, validation_failed(message))


def _invalidate_errors(spec: InvalidateSpec) -> list[str]:
    errors = []
    if not (spec.realm or spec.username or spec.ids is not None or spec.name or spec.owner):
        errors.append(
            "One of [api key id(s), api key name, username, realm name] must be specified if "
            "[owner] flag is false"
        )
    if (spec.ids is not None or spec.name) and (spec.realm or spec.username):
        errors.append(
            "username or realm name must not be specified when the api key id(s) or api key "
            "name are specified"
        )
    if spec.owner and (spec.realm or spec.username):
        errors.append(
            "neither username nor realm-name may be specified when invalidating owned API keys"
        )
    if spec.ids is not None and spec.name:
        errors.append("only one of [api key id(s), api key name] can be specified")
    return errors


def _invalidate(call: Call, principal: Principal, spec: InvalidateSpec) -> dict[str, Any]:
    username, realm = spec.username, spec.realm
    if spec.owner:
        username, realm = principal.username, principal.owner_realm
    selection = KeyFilter(
        spec.ids, spec.name, username, [realm] if realm else None, skip_invalidated=True
    )
    security = call.state.security
    keys = select_keys(security, selection, call.now_ms)
    include_cross_cluster = bool(principal.permission.has_cluster_privilege("manage_security"))
    invalidated: list[str] = []
    errors: list[dict[str, Any]] = []
    for key in keys:
        if key.type == "cross_cluster" and not include_cross_cluster:
            errors.append(_cross_cluster_refusal(key.id))
        elif security.invalidate_key(key.id, call.now_ms):
            invalidated.append(key.id)
    return invalidate_response(invalidated, [], errors)


def _cross_cluster_refusal(key_id: str) -> dict[str, Any]:
    return EsError(
        403,
        "security_exception",
        f"Cannot invalidate cross-cluster API key [{key_id}]. This requires [manage_security] "
        "cluster privilege or higher",
    ).as_object()


def invalidate_response(
    invalidated: list[str], previously: list[str], errors: list[dict[str, Any]]
) -> dict[str, Any]:
    """The invalidate response in ``InvalidateApiKeyResponse`` order."""
    body: dict[str, Any] = {
        "invalidated_api_keys": invalidated,
        "previously_invalidated_api_keys": previously,
        "error_count": len(errors),
    }
    if errors:
        body["error_details"] = errors
    return body


# --- update --------------------------------------------------------------------------------------


def update_api_key(call: Call) -> Response:
    """``PUT /_security/api_key/{id}``: owner-only, ``{"updated": bool}``."""
    key_id = call.request.path_params["ids"]
    body = Body.of(call, "update_api_key_request_payload", required=False)
    spec = parse_update_spec(body)
    validate_update(spec)
    principal = authorize_key_action(call, UPDATE, own_ok=True)
    outcome = _update_one(call, principal, key_id, spec, "rest")
    if isinstance(outcome, EsError):
        raise outcome
    return Response(body={"updated": outcome})


def bulk_update_api_keys(call: Call) -> Response:
    """``POST /_security/api_key/_bulk_update``."""
    body = Body.of(call, "bulk_update_api_key_request")
    body.check_fields(("ids", "role_descriptors", "metadata", "expiration"))
    if "ids" not in body.values:
        raise EsError(400, "illegal_argument_exception", "Required [ids]")
    ids = body.string_list("ids") or []
    spec = parse_update_spec(
        Body({k: v for k, v in body.values.items() if k != "ids"}, body.parser, body.raw)
    )
    validate_update(spec, [] if ids else ["Field [ids] cannot be empty"])
    principal = authorize_key_action(call, BULK_UPDATE, own_ok=True)
    _refuse_api_key_update(principal)
    updated: list[str] = []
    noops: list[str] = []
    errors: dict[str, Any] = {}
    for key_id in dict.fromkeys(ids):
        outcome = _update_one(call, principal, key_id, spec, "rest")
        if isinstance(outcome, EsError):
            errors[key_id] = outcome.as_object()
        else:
            (updated if outcome else noops).append(key_id)
    return Response(body=_bulk_response(updated, noops, errors))


def _bulk_response(updated: list[str], noops: list[str], errors: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"updated": updated, "noops": noops}
    if errors:
        body["errors"] = {"count": len(errors), "details": errors}
    return body


def _refuse_api_key_update(principal: Principal) -> None:
    if principal.api_key is not None:
        raise EsError(
            400,
            "illegal_argument_exception",
            "authentication via API key not supported: only the owner user can update an API key",
        )


def _update_one(
    call: Call, principal: Principal, key_id: str, spec: KeySpec, key_type: str
) -> bool | EsError:
    """Update one key; True when changed, False for a no-op, or the per-key error."""
    _refuse_api_key_update(principal)
    security = call.state.security
    key = security.api_keys.get(key_id)
    if key is None or not _owned_by(key, principal):
        return not_found(f"no API key owned by requesting user found for ID [{key_id}]")
    problem = _update_problem(key, call.now_ms, key_type)
    if problem is not None:
        return EsError(400, "illegal_argument_exception", problem)
    limited_by = owner_descriptors(security, principal) if key_type == "rest" else []
    if is_noop(key, principal, spec, limited_by):
        return False
    security.replace_key(_updated(key, principal, spec, limited_by, call.now_ms))
    return True


def _owned_by(key: ApiKeyRecord, principal: Principal) -> bool:
    return key.creator.principal == principal.username and key.creator.realm == principal.realm_name


def _update_problem(key: ApiKeyRecord, now_ms: int, key_type: str) -> str | None:
    if key.invalidated:
        return f"cannot update invalidated API key [{key.id}]"
    if key.expiration is not None and now_ms > key.expiration:
        return f"cannot update expired API key [{key.id}]"
    if not key.name:
        return f"cannot update legacy API key [{key.id}] without name"
    if key.type != key_type:
        return f"cannot update API key of type [{key.type}] while expected type is [{key_type}]"
    return None


def is_noop(
    key: ApiKeyRecord, principal: Principal, spec: KeySpec, limited_by: list[RoleDescriptor]
) -> bool:
    """``ApiKeyService.isNoop``: nothing the update would write differs from the stored key."""
    if spec.expiration is not None:
        return False
    if creator_of(principal) != key.creator:
        return False
    if spec.metadata is not None and spec.metadata != key.metadata:
        return False
    if spec.role_descriptors is not None and not same_descriptors(
        spec.role_descriptors, key.role_descriptors
    ):
        return False
    return same_descriptors(limited_by, key.limited_by)


def same_descriptors(new: list[RoleDescriptor], current: list[RoleDescriptor]) -> bool:
    """Same size and every current descriptor among the new ones (name and content)."""
    return len(new) == len(current) and all(d in new for d in current)


def _updated(
    key: ApiKeyRecord,
    principal: Principal,
    spec: KeySpec,
    limited_by: list[RoleDescriptor],
    now_ms: int,
) -> ApiKeyRecord:
    return replace(
        key,
        expiration=key.expiration
        if spec.expiration is None
        else _expiration(now_ms, spec.expiration),
        role_descriptors=key.role_descriptors
        if spec.role_descriptors is None
        else list(spec.role_descriptors),
        limited_by=limited_by,
        metadata=key.metadata if spec.metadata is None else spec.metadata,
        creator=creator_of(principal),
    )


# --- cross-cluster keys --------------------------------------------------------------------------


def create_cross_cluster_api_key(call: Call) -> Response:
    """``POST /_security/cross_cluster/api_key`` (needs ``manage_security``)."""
    body = Body.of(call, "cross_cluster_api_key_request")
    body.check_fields(("name", "access", "expiration", "metadata"))
    missing = [f for f in ("name", "access") if f not in body.values]
    if missing:
        raise EsError(400, "illegal_argument_exception", f"Required [{', '.join(missing)}]")
    spec = KeySpec(
        name=body.string("name"),
        role_descriptors=[cross_cluster_descriptor(body.nested("access", ACCESS_PARSER))],
        expiration=parse_expiration(body),
        metadata=body.object("metadata"),
    )
    check_valid(name_errors(spec.name) + metadata_errors(spec.metadata))
    principal = authorize_key_action(call, CC_CREATE, own_ok=False)
    if principal.api_key is not None:
        raise EsError(
            400,
            "illegal_argument_exception",
            "authentication via API key not supported: An API key cannot be used to create a "
            "cross-cluster API key",
        )
    return Response(body=_create(call, principal, spec, "cross_cluster"))


def update_cross_cluster_api_key(call: Call) -> Response:
    """``PUT /_security/cross_cluster/api_key/{id}``."""
    key_id = call.request.path_params["ids"]
    body = Body.of(call, "update_cross_cluster_api_key_request_payload", required=False)
    body.check_fields(("access", "expiration", "metadata"))
    access = body.nested("access", ACCESS_PARSER) if "access" in body.values else None
    spec = KeySpec(
        role_descriptors=None if access is None else [cross_cluster_descriptor(access)],
        expiration=parse_expiration(body),
        metadata=body.object("metadata"),
    )
    validate_update(spec)
    principal = authorize_key_action(call, CC_UPDATE, own_ok=False)
    outcome = _update_one(call, principal, key_id, spec, "cross_cluster")
    if isinstance(outcome, EsError):
        raise outcome
    return Response(body={"updated": outcome})


ACCESS_PARSER = "cross_cluster_api_key_request_access"
_ACCESS_ENTRY_FIELDS = ("names", "query", "field_security", "allow_restricted_indices")


def cross_cluster_descriptor(access: Body) -> RoleDescriptor:
    """The single ``cross_cluster`` role descriptor an ``access`` object stands for."""
    access.check_fields(("search", "replication"))
    search = _access_entries(access, "search", CCS_PRIVILEGES)
    replication = _access_entries(access, "replication", CCR_PRIVILEGES)
    if not search and not replication:
        raise EsError(
            400,
            "illegal_argument_exception",
            "must specify non-empty access for either [search] or [replication]",
        )
    if any("query" in e or "field_security" in e for e in replication):
        raise EsError(
            400,
            "illegal_argument_exception",
            "replication does not support document or field level security",
        )
    cluster = (["cross_cluster_search"] if search else []) + (
        ["cross_cluster_replication"] if replication else []
    )
    return parse_role_descriptor(
        "cross_cluster", {"cluster": cluster, "indices": search + replication}
    )


def _access_entries(access: Body, key: str, privileges: list[str]) -> list[dict[str, Any]]:
    entries = access.values.get(key)
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise access.type_error(key, entries)
    result = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise access.type_error(key, entry)
        for field_name in entry:
            if field_name not in _ACCESS_ENTRY_FIELDS:
                raise EsError(
                    400,
                    "parse_exception",
                    f"failed to parse indices privileges for role [cross_cluster]. "
                    f"field [{field_name}] must not present",
                )
        result.append({**entry, "privileges": list(privileges)})
    return result


# --- cache ---------------------------------------------------------------------------------------


def clear_api_key_cache(call: Call) -> Response:
    """``POST /_security/api_key/{ids}/_clear_cache``: nothing is cached, so only the reply."""
    principal = authorize_run_as(call, CLEAR_CACHE)
    if not allows(principal, CLEAR_CACHE):
        raise cluster_denied(principal, CLEAR_CACHE)
    return Response(body=nodes_response(call))


def nodes_response(call: Call) -> dict[str, Any]:
    """The body of a one-node nodes response (``_nodes``, ``cluster_name``, ``nodes``)."""
    return {
        "_nodes": {"total": 1, "successful": 1, "failed": 0},
        "cluster_name": call.state.cluster_name,
        "nodes": {NODE_ID: {"name": NODE_NAME}},
    }
