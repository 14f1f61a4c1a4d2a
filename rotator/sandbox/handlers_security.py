"""Security endpoints other than API keys: authenticate, privileges, users, roles, tokens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rotator.sandbox.authn import (
    Principal,
    authentication_error,
    authentication_json,
    authorize_cluster,
    authorize_run_as,
    user_principal,
)
from rotator.sandbox.errors import EsError, bad_request, parse_error, validation_failed
from rotator.sandbox.handlers_apikeys import Body, check_valid
from rotator.sandbox.http import Call, Response, Router
from rotator.sandbox.privileges import AppPrivilegeDef, has_privileges_response
from rotator.sandbox.role_query import check_role_queries
from rotator.sandbox.roles import BUILTIN_ROLES, parse_role_descriptor
from rotator.sandbox.roles import token as token_name
from rotator.sandbox.security_state import (
    ACCESS_TOKEN_LIFETIME_MS,
    SecurityState,
    TokenRecord,
    UserRecord,
    hash_secret,
    new_token,
    token_digest,
)

PREFIX = "cluster:admin/xpack/security/"
AUTHENTICATE = PREFIX + "user/authenticate"
HAS_PRIVILEGES = PREFIX + "user/has_privileges"
PUT_USER = PREFIX + "user/put"
DELETE_USER = PREFIX + "user/delete"
GET_USERS = PREFIX + "user/get"
CHANGE_PASSWORD = PREFIX + "user/change_password"
SET_ENABLED = PREFIX + "user/set_enabled"
PUT_ROLE = PREFIX + "role/put"
GET_ROLES = PREFIX + "role/get"
DELETE_ROLE = PREFIX + "role/delete"
PUT_PRIVILEGES = PREFIX + "privilege/put"
GET_PRIVILEGES = PREFIX + "privilege/get"
DELETE_PRIVILEGES = PREFIX + "privilege/delete"
CREATE_TOKEN = PREFIX + "token/create"
REFRESH_TOKEN = PREFIX + "token/refresh"
INVALIDATE_TOKEN = PREFIX + "token/invalidate"
MIN_PASSWORD = 6
NEW_USER_TEXT = "password must be specified unless you are updating an existing user"
MAX_NAME = 1024
GRANT_TYPES = "[password, _kerberos, refresh_token, client_credentials]"
INVALID_NAME = (
    "{} names must be at least 1 and no more than 1024 characters. They can contain alphanumeric "
    "characters (a-z, A-Z, 0-9), spaces, punctuation, and printable symbols in the Basic Latin "
    "(ASCII) block. Leading or trailing whitespace is not allowed."
)

Handler = Callable[[Call], Response]


def register(router: Router) -> None:
    """Register the authenticate, privileges, user, role, app-privilege and token endpoints."""
    router.add("GET", "/_security/_authenticate", authenticate_endpoint)
    for method in ("GET", "POST"):
        router.add(method, "/_security/user/_has_privileges", has_privileges)
        router.add(method, "/_security/user/{user}/_has_privileges", has_privileges)
    _register_users(router)
    _register_roles(router)
    _register_app_privileges(router)
    router.add("POST", "/_security/oauth2/token", get_token)
    router.add("DELETE", "/_security/oauth2/token", invalidate_token)


def _register_users(router: Router) -> None:
    for method in ("PUT", "POST"):
        router.add(method, "/_security/user/_password", change_password)
        router.add(method, "/_security/user/{username}/_password", change_password)
        router.add(method, "/_security/user/{username}/_enable", _set_enabled(True))
        router.add(method, "/_security/user/{username}/_disable", _set_enabled(False))
        router.add(method, "/_security/user/{username}", put_user)
    router.add("DELETE", "/_security/user/{username}", delete_user)
    router.add("GET", "/_security/user", get_users)
    router.add("GET", "/_security/user/{username}", get_users)


def _register_roles(router: Router) -> None:
    for method in ("PUT", "POST"):
        router.add(method, "/_security/role/{name}", put_role)
    router.add("GET", "/_security/role", get_roles)
    router.add("GET", "/_security/role/{name}", get_roles)
    router.add("DELETE", "/_security/role/{name}", delete_role)


def _register_app_privileges(router: Router) -> None:
    for method in ("PUT", "POST"):
        router.add(method, "/_security/privilege", put_privileges)
        router.add(method, "/_security/privilege/", put_privileges)
    router.add("GET", "/_security/privilege", get_privileges)
    router.add("GET", "/_security/privilege/", get_privileges)
    router.add("GET", "/_security/privilege/{application}", get_privileges)
    router.add("GET", "/_security/privilege/{application}/{name}", get_privileges)
    router.add("DELETE", "/_security/privilege/{application}/{name}", delete_privileges)


def _names(value: str | None) -> list[str]:
    return [n for n in (value or "").split(",") if n]


# --- authenticate and has_privileges --------------------------------------------------------------


def authenticate_endpoint(call: Call) -> Response:
    """``GET /_security/_authenticate``: who the caller is (no privilege needed)."""
    principal = authorize_run_as(call, AUTHENTICATE)
    return Response(body=authentication_json(principal))


def has_privileges(call: Call) -> Response:
    """``GET|POST /_security/user[/{user}]/_has_privileges`` for the caller's own account."""
    body = call.request.json_object()
    principal = authorize_run_as(call, HAS_PRIVILEGES)
    user = call.request.path_params.get("user")
    if user is not None and user != principal.username:
        raise bad_request("users may only check the privileges of their own account")
    return Response(body=has_privileges_response(principal.permission, principal.username, body))


# --- users ---------------------------------------------------------------------------------------

USER_FIELDS = ("password", "password_hash", "roles", "full_name", "email", "metadata", "enabled")


def put_user(call: Call) -> Response:
    """``PUT|POST /_security/user/{username}``: create or update a native user."""
    username = call.request.path_params["username"]
    body = _user_body(call.request.json_object(required=True), username)
    roles = body.get("roles")
    check_valid(_user_request_errors(roles, body.get("metadata")))
    authorize_cluster(call, PUT_USER)
    check_valid(_user_errors(call.state.security, username, roles or []))
    security = call.state.security
    existing = security.users.get(username)
    password = body.get("password")
    if existing is None and password is None:
        raise EsError(400, "validation_exception", f"Validation Failed: 1: {NEW_USER_TEXT};")
    security.users[username] = UserRecord(
        username=username,
        password_hash=hash_secret(password) if password is not None else _old_hash(existing),
        roles=list(roles or []),
        full_name=body.get("full_name"),
        email=body.get("email"),
        metadata=dict(body.get("metadata") or {}),
        enabled=bool(body.get("enabled", True)),
    )
    return Response(body={"created": existing is None})


def _old_hash(existing: UserRecord | None) -> str:
    return existing.password_hash if existing is not None else ""


def _user_body(raw: dict[str, Any], username: str) -> dict[str, Any]:
    if "username" in raw:
        # PutUserRequestBuilder: accepted when it names the user of the path.
        if raw["username"] != username:
            raise bad_request(
                f"[username] in source does not match the username provided [{username}]"
            )
        raw = {k: v for k, v in raw.items() if k != "username"}
    for key in raw:
        if key not in USER_FIELDS:
            raise parse_error(f"failed to parse add user request. unexpected field [{key}]")
    if "password_hash" in raw:
        raise bad_request(
            "The provided password hash is not a hash or it could not be resolved to a supported "
            "hash algorithm."
        )
    body = dict(raw)
    if isinstance(body.get("roles"), str):
        body["roles"] = [body["roles"]]
    _check_user_types(body)
    password = body.get("password")
    if password is not None and len(password) < MIN_PASSWORD:
        raise EsError(
            400,
            "validation_exception",
            f"Validation Failed: 1: passwords must be at least [{MIN_PASSWORD}] characters long;",
        )
    return body


_USER_FIELD_TYPES: dict[str, tuple[str, tuple[type, ...]]] = {
    "password": ("string", (str,)),
    "full_name": ("string", (str, type(None))),
    "email": ("string", (str, type(None))),
    "metadata": ("object", (dict, type(None))),
    "enabled": ("boolean", (bool,)),
}


def _check_user_types(body: dict[str, Any]) -> None:
    for key, (label, kinds) in _USER_FIELD_TYPES.items():
        if key in body and not isinstance(body[key], kinds):
            found = token_name(body[key])
            raise parse_error(
                f"expected field [{key}] to be of type {label}, but found [{found}] instead"
            )
    roles = body.get("roles", [])
    if not isinstance(roles, list):
        raise parse_error(
            f"could not parse [roles] field. expected a string array but found "
            f"[{token_name(roles)}] value instead"
        )
    for role in roles:
        if not isinstance(role, str):
            raise parse_error(
                "could not parse [null] field. expected a string array but one of the value in "
                f"the array is [{token_name(role)}]"
            )


def _user_request_errors(roles: Any, metadata: Any) -> list[str]:
    errors = []
    if roles is None:
        errors.append("roles are missing")
    if isinstance(metadata, dict) and any(k.startswith("_") for k in metadata):
        errors.append("metadata keys may not start with [_]")
    return errors


def _user_errors(security: SecurityState, username: str, roles: list[str]) -> list[str]:
    errors = []
    if security.is_reserved(username):
        errors.append(f"user [{username}] is reserved and only the password can be changed")
    elif not valid_name(username):
        errors.append(INVALID_NAME.format("User"))
    errors += [INVALID_NAME.format("Role") for r in roles if not valid_name(r)]
    return errors


def valid_name(name: str) -> bool:
    """``Validation.isValidUserOrRoleName``: 1-1024 printable ASCII, no edge spaces."""
    if not 1 <= len(name) <= MAX_NAME:
        return False
    if any(not " " <= ch <= "~" for ch in name):
        return False
    return not (name.startswith(" ") or name.endswith(" "))


def delete_user(call: Call) -> Response:
    """``DELETE /_security/user/{username}``: ``{"found": bool}``, 404 when absent."""
    username = call.request.path_params["username"]
    authorize_cluster(call, DELETE_USER)
    security = call.state.security
    if security.is_reserved(username):
        raise bad_request(f"user [{username}] is reserved and cannot be deleted")
    found = security.users.pop(username, None) is not None
    return Response(200 if found else 404, {"found": found})


def get_users(call: Call) -> Response:
    """``GET /_security/user[/{names}]``: reserved and native users."""
    names = _names(call.request.path_params.get("username"))
    authorize_cluster(call, GET_USERS)
    security = call.state.security
    reserved = [u for u in security.bootstrap_users.values() if u.realm_type == "reserved"]
    native = sorted(security.users.values(), key=lambda u: u.username)
    users = [u for u in reserved + native if not names or u.username in names]
    body = {u.username: user_json(u) for u in users}
    return Response(404 if names and not users else 200, body)


def user_json(user: UserRecord) -> dict[str, Any]:
    """A user as ``GET /_security/user`` renders it."""
    return {
        "username": user.username,
        "roles": list(user.roles),
        "full_name": user.full_name,
        "email": user.email,
        "metadata": user.metadata,
        "enabled": user.enabled,
    }


def change_password(call: Call) -> Response:
    """``PUT|POST /_security/user[/{username}]/_password``."""
    body = call.request.json_object(required=True)
    principal = authorize_run_as(call, CHANGE_PASSWORD)
    username = call.request.path_params.get("username") or principal.username
    if username != principal.username or principal.api_key is not None:
        authorize_cluster(call, CHANGE_PASSWORD)
    password = body.get("password")
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise validation_failed(f"passwords must be at least [{MIN_PASSWORD}] characters long")
    user = _password_user(call.state.security, username)
    user.password_hash = hash_secret(password)
    return Response(body={})


def _password_user(security: SecurityState, username: str) -> UserRecord:
    user = security.users.get(username)
    if user is None and security.is_reserved(username):
        user = security.bootstrap_users[username]
    if user is None:
        raise bad_request("user must exist in order to change password")
    return user


def _set_enabled(enabled: bool) -> Handler:
    def handler(call: Call) -> Response:
        username = call.request.path_params["username"]
        principal = authorize_cluster(call, SET_ENABLED)
        if username == principal.username and not enabled:
            raise bad_request("users may not update the enabled status of their own account")
        security = call.state.security
        user = security.users.get(username) or security.bootstrap_users.get(username)
        if user is None:
            raise bad_request("user must exist in order to change enabled status")
        user.enabled = enabled
        return Response(body={})

    return handler


# --- roles ---------------------------------------------------------------------------------------


def put_role(call: Call) -> Response:
    """``PUT|POST /_security/role/{name}``: ``{"role": {"created": bool}}``."""
    name = call.request.path_params["name"]
    descriptor = parse_role_descriptor(name, call.request.json_object(required=True))
    check_valid(_role_errors(name))
    authorize_cluster(call, PUT_ROLE)
    check_role_queries(descriptor)
    roles = call.state.security.roles
    created = name not in roles
    roles[name] = descriptor
    return Response(body={"role": {"created": created}})


def _role_errors(name: str) -> list[str]:
    if not valid_name(name):
        return [INVALID_NAME.format("Role")]
    if name in BUILTIN_ROLES:
        return [f"Role [{name}] is reserved and may not be used."]
    return []


def get_roles(call: Call) -> Response:
    """``GET /_security/role[/{names}]``: built-in and stored roles, 404 when none match."""
    names = _names(call.request.path_params.get("name"))
    authorize_cluster(call, GET_ROLES)
    security = call.state.security
    all_roles = {**BUILTIN_ROLES, **security.roles}
    wanted = names or list(all_roles)
    body = {n: all_roles[n].to_json() for n in wanted if n in all_roles}
    return Response(404 if names and not body else 200, body)


def delete_role(call: Call) -> Response:
    """``DELETE /_security/role/{name}``: ``{"found": bool}``, 404 when absent."""
    name = call.request.path_params["name"]
    authorize_cluster(call, DELETE_ROLE)
    if name in BUILTIN_ROLES:
        raise bad_request(f"role [{name}] is reserved and cannot be deleted")
    found = call.state.security.roles.pop(name, None) is not None
    return Response(200 if found else 404, {"found": found})


# --- application privileges ----------------------------------------------------------------------


def put_privileges(call: Call) -> Response:
    """``PUT|POST /_security/privilege``: ``{app: {name: {"created": bool}}}``."""
    privileges = _parse_privileges(call.request.json_object(required=True))
    check_valid(
        [
            f"Application privilege [{p.application}:{p.name}] must have at least one action"
            for p in privileges
            if not p.actions
        ]
    )
    authorize_cluster(call, PUT_PRIVILEGES)
    result: dict[str, dict[str, Any]] = {}
    for privilege in privileges:
        created = call.state.security.put_app_privilege(privilege)
        result.setdefault(privilege.application, {})[privilege.name] = {"created": created}
    return Response(body=result)


def _parse_privileges(body: dict[str, Any]) -> list[AppPrivilegeDef]:
    privileges = []
    for application, by_name in body.items():
        if not isinstance(by_name, dict):
            raise parse_error(f"failed to parse privileges for application [{application}]")
        for name, spec in by_name.items():
            privileges.append(_parse_privilege(application, name, spec))
    return privileges


def _parse_privilege(application: str, name: str, spec: Any) -> AppPrivilegeDef:
    if not isinstance(spec, dict):
        raise parse_error(f"failed to parse privilege [{name}] for application [{application}]")
    for key, expected in (("application", application), ("name", name)):
        if key in spec and spec[key] != expected:
            raise bad_request(
                f"privilege {key} [{spec[key]}] in source does not match the provided {key} "
                f"[{expected}]"
            )
    unknown = [k for k in spec if k not in ("application", "name", "actions", "metadata")]
    if unknown:
        raise parse_error(f"failed to parse privilege [{name}]. unexpected field [{unknown[0]}]")
    actions = spec.get("actions") or []
    return AppPrivilegeDef(application, name, list(actions), dict(spec.get("metadata") or {}))


def get_privileges(call: Call) -> Response:
    """``GET /_security/privilege[/{application}[/{names}]]``."""
    application = call.request.path_params.get("application")
    names = _names(call.request.path_params.get("name"))
    authorize_cluster(call, GET_PRIVILEGES)
    result: dict[str, dict[str, Any]] = {}
    for privilege in call.state.security.app_privilege_list():
        if application and privilege.application != application:
            continue
        if names and privilege.name not in names:
            continue
        result.setdefault(privilege.application, {})[privilege.name] = _privilege_json(privilege)
    return Response(404 if application and not result else 200, result)


def _privilege_json(privilege: AppPrivilegeDef) -> dict[str, Any]:
    return {
        "application": privilege.application,
        "name": privilege.name,
        "actions": list(privilege.actions),
        "metadata": dict(privilege.metadata),
    }


def delete_privileges(call: Call) -> Response:
    """``DELETE /_security/privilege/{application}/{names}``."""
    application = call.request.path_params["application"]
    names = _names(call.request.path_params["name"])
    authorize_cluster(call, DELETE_PRIVILEGES)
    stored = call.state.security.app_privileges.get(application, {})
    found = {n: stored.pop(n, None) is not None for n in names}
    if not stored:
        call.state.security.app_privileges.pop(application, None)
    body = {application: {n: {"found": f} for n, f in found.items()}}
    return Response(200 if any(found.values()) else 404, body)


# --- tokens --------------------------------------------------------------------------------------

TOKEN_FIELDS = (
    "grant_type",
    "username",
    "password",
    "kerberos_ticket",
    "scope",
    "refresh_token",
    "service_account_token",
)


def get_token(call: Call) -> Response:
    """``POST /_security/oauth2/token``: password, client_credentials and refresh_token grants."""
    body = Body.of(call, "token_request")
    body.check_fields(TOKEN_FIELDS)
    fields = {f: body.string(f) for f in TOKEN_FIELDS}
    problems = _token_request_errors(fields)
    if problems:
        kind = (
            "unsupported_grant_type"
            if any("grant_type" in p for p in problems)
            else "invalid_request"
        )
        text = "".join(f"{i}: {p};" for i, p in enumerate(problems, start=1))
        return Response(400, {"error": kind, "error_description": f"Validation Failed: {text}"})
    grant_type = fields["grant_type"]
    authorize_cluster(call, REFRESH_TOKEN if grant_type == "refresh_token" else CREATE_TOKEN)
    if grant_type == "refresh_token":
        return _refresh(call, fields["refresh_token"] or "")
    owner = _token_owner(call, grant_type or "", fields)
    return Response(body=_issue_token(call, owner, with_refresh=grant_type != "client_credentials"))


def _token_request_errors(fields: dict[str, str | None]) -> list[str]:
    kind = fields["grant_type"]
    rules = {
        "password": (("kerberos_ticket", "refresh_token"), ("username", "password")),
        "_kerberos": (("username", "password", "refresh_token"), ("kerberos_ticket",)),
        "refresh_token": (("username", "password", "kerberos_ticket"), ("refresh_token",)),
        "client_credentials": (("username", "password", "kerberos_ticket", "refresh_token"), ()),
    }
    if kind not in rules:
        return [f"grant_type only supports the values: {GRANT_TYPES}"]
    unsupported, required = rules[kind]
    errors = [
        f"{f} is not supported with the {kind} grant_type"
        for f in unsupported
        if fields[f] is not None
    ]
    return errors + [f"{f} is missing" for f in required if not fields[f]]


def _token_owner(call: Call, grant_type: str, fields: dict[str, str | None]) -> Principal:
    security = call.state.security
    if grant_type == "client_credentials":
        return _caller(call)
    if grant_type == "_kerberos":
        raise authentication_error(
            f"unable to authenticate user [_kerberos] for action [{CREATE_TOKEN}]"
        )
    username = fields["username"] or ""
    user = security.authenticate_user(username, fields["password"] or "")
    if user is None:
        raise authentication_error(
            f"unable to authenticate user [{username}] for action [{CREATE_TOKEN}]"
        )
    return user_principal(security, user, "realm")


def _caller(call: Call) -> Principal:
    principal = authorize_run_as(call, CREATE_TOKEN)
    if principal.api_key is not None:
        raise bad_request("client_credentials grant is not supported for API key authentication")
    return principal


def _issue_token(call: Call, owner: Principal, *, with_refresh: bool) -> dict[str, Any]:
    access, refresh = new_token(), new_token() if with_refresh else None
    call.state.security.add_token(_token_record(owner, access, refresh, call.now_ms))
    body: dict[str, Any] = {
        "access_token": access,
        "type": "Bearer",
        "expires_in": ACCESS_TOKEN_LIFETIME_MS // 1000,
    }
    if refresh is not None:
        body["refresh_token"] = refresh
    body["authentication"] = authentication_json(owner)
    return body


def _token_record(owner: Principal, access: str, refresh: str | None, now_ms: int) -> TokenRecord:
    return TokenRecord(
        access_digest=token_digest(access),
        refresh_digest=token_digest(refresh) if refresh is not None else None,
        username=owner.username,
        realm_name=owner.realm_name,
        realm_type=owner.realm_type,
        roles=list(owner.roles),
        full_name=owner.full_name,
        email=owner.email,
        metadata=dict(owner.metadata),
        creation=now_ms,
        expiration=now_ms + ACCESS_TOKEN_LIFETIME_MS,
    )


def _refresh(call: Call, refresh_token: str) -> Response:
    security = call.state.security
    token = security.find_refresh(refresh_token)
    if token is None or token.refresh_used or token.creation + 86_400_000 <= call.now_ms:
        return Response(
            400,
            {
                "error": "invalid_grant",
                "error_description": "could not refresh the requested token",
            },
        )
    token.refresh_used = True
    token.invalidated = True
    owner = authenticate_token_owner(security, token)
    return Response(body=_issue_token(call, owner, with_refresh=True))


def authenticate_token_owner(security: SecurityState, token: TokenRecord) -> Principal:
    """The realm principal a token was issued to (for refreshed tokens' ``authentication``)."""
    user = UserRecord(
        username=token.username,
        password_hash="",
        roles=list(token.roles),
        full_name=token.full_name,
        email=token.email,
        metadata=dict(token.metadata),
        realm_name=token.realm_name,
        realm_type=token.realm_type,
    )
    return user_principal(security, user, "realm")


def invalidate_token(call: Call) -> Response:
    """``DELETE /_security/oauth2/token``: by token, refresh token, realm or username."""
    body = Body.of(call, "invalidate_token")
    body.check_fields(("token", "refresh_token", "realm_name", "username"))
    fields = {f: body.string(f) for f in ("token", "refresh_token", "realm_name", "username")}
    if fields["token"] and fields["refresh_token"]:
        raise bad_request("only one of [token, refresh_token] may be sent per request")
    check_valid(_invalidate_token_errors(fields))
    authorize_cluster(call, INVALIDATE_TOKEN)
    if fields["token"] and not call.state.security.tokens:
        # TokenService.invalidateAccessToken: no tokens index yet -> 400.
        raise EsError(400, "security_exception", "failed to invalidate token")
    targets = _token_targets(call.state.security, fields)
    fresh = [t for t in targets if not t.invalidated]
    for token in fresh:
        token.invalidated = True
    body_out = {
        "invalidated_tokens": len(fresh),
        "previously_invalidated_tokens": len(targets) - len(fresh),
        "error_count": 0,
    }
    single = fields["token"] or fields["refresh_token"]
    return Response(404 if single and not targets else 200, body_out)


def _invalidate_token_errors(fields: dict[str, str | None]) -> list[str]:
    token_string = fields["token"] or fields["refresh_token"]
    if fields["realm_name"] or fields["username"]:
        if token_string:
            return [
                "token string must not be provided when realm name or username is specified",
                "token type must not be provided when realm name or username is specified",
            ]
        return []
    if not token_string:
        return ["token string must be provided when not specifying a realm name or a username"]
    return []


def _token_targets(security: SecurityState, fields: dict[str, str | None]) -> list[TokenRecord]:
    if fields["token"]:
        found = security.find_token(fields["token"])
        return [found] if found is not None else []
    if fields["refresh_token"]:
        found = security.find_refresh(fields["refresh_token"])
        return [found] if found is not None else []
    return [
        t
        for t in security.tokens.values()
        if (not fields["username"] or t.username == fields["username"])
        and (not fields["realm_name"] or t.realm_name == fields["realm_name"])
    ]
