"""Authentication (Basic, Bearer, ApiKey, run-as) and the 401/403 errors Elasticsearch gives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rotator.sandbox.errors import EsError
from rotator.sandbox.privileges import (
    LimitedPermission,
    Permission,
    cluster_privileges_granting,
    index_privileges_granting,
)
from rotator.sandbox.security_state import (
    API_KEY_REALM,
    ApiKeyRecord,
    SecurityState,
    TokenRecord,
    UserRecord,
    verify_secret,
)

if TYPE_CHECKING:
    from rotator.sandbox.http import Call, Request
    from rotator.sandbox.state import SandboxState

RUN_AS_HEADER = "es-security-runas-user"
WWW_AUTHENTICATE = [
    'Basic realm="security" charset="UTF-8"',
    'Bearer realm="security"',
    "ApiKey",
]
EXPIRED_CHALLENGE = (
    'Bearer realm="security", error="invalid_token", error_description="The access token expired"'
)
UNSUCCESSFUL = (
    "unable to authenticate with provided credentials and anonymous access is not allowed "
    "for this request"
)
_B64 = {
    c: i for i, c in enumerate(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
}
_PAD = ord("=")

AnyPermission = Permission | LimitedPermission


@dataclass
class Principal:
    """Who is calling: the effective user, how they authenticated, and what they may do.

    For an API key, ``username`` and the user fields are the key owner's, the realm is
    ``_es_api_key`` and ``api_key`` is the key. Under run-as, the fields describe the run-as
    user and ``authenticating`` is the principal that authenticated.
    """

    username: str
    realm_name: str
    realm_type: str
    roles: list[str]
    full_name: str | None
    email: str | None
    metadata: dict[str, Any]
    authentication_type: str
    permission: AnyPermission
    api_key: ApiKeyRecord | None = None
    authenticating: Principal | None = None
    run_as_allowed: bool = True
    found_roles: list[str] = field(default_factory=list)
    token: TokenRecord | None = None

    @property
    def is_api_key(self) -> bool:
        """Whether the effective subject is an API key."""
        return self.api_key is not None

    @property
    def owner_realm(self) -> str:
        """The realm that owns what this principal creates (the key creator's for a key)."""
        return self.api_key.creator.realm if self.api_key is not None else self.realm_name

    @property
    def owner_realm_type(self) -> str:
        """The type of :attr:`owner_realm`."""
        return self.api_key.creator.realm_type if self.api_key is not None else self.realm_type

    @property
    def authenticated_by(self) -> Principal:
        """The principal that presented the credentials (itself unless run-as)."""
        return self.authenticating or self


# --- authentication ------------------------------------------------------------------------------


def authenticate(state: SandboxState, request: Request, now_ms: int) -> Principal:
    """Authenticate a REST request from its ``Authorization`` and run-as headers.

    Raises:
        EsError: 401 with Elasticsearch's reason, metadata and ``WWW-Authenticate`` header.
    """
    security = state.security
    principal = _authenticate_header(security, request, now_ms)
    run_as = request.headers.get(RUN_AS_HEADER)
    if run_as is not None:
        principal = _run_as(security, principal, run_as)
    return principal


def _authenticate_header(security: SecurityState, request: Request, now_ms: int) -> Principal:
    header = request.headers.get("authorization", "")
    bearer = credential_from_header(header, "Bearer")
    if bearer is not None:
        return authenticate_token(security, bearer, now_ms)
    api_key = credential_from_header(header, "ApiKey")
    if api_key is not None:
        return _authenticate_api_key(security, api_key, now_ms)
    basic = credential_from_header(header, "Basic")
    if basic is not None:
        return _authenticate_basic(security, basic, request_uri(request))
    raise authentication_error(
        f"missing authentication credentials for REST request [{request_uri(request)}]"
    )


def credential_from_header(header: str, scheme: str) -> str | None:
    """What follows ``<scheme> `` (matched case-insensitively), or None."""
    prefix = scheme + " "
    if len(header) > len(prefix) and header[: len(prefix)].lower() == prefix.lower():
        return header[len(prefix) :]
    return None


def request_uri(request: Request) -> str:
    """The request URI as Elasticsearch prints it: the path and the query string."""
    if not request.params:
        return request.path
    query = "&".join(k if v == "" else f"{k}={v}" for k, v in request.params.items())
    return f"{request.path}?{query}"


def authentication_error(
    reason: str,
    *,
    metadata: dict[str, Any] | None = None,
    caused_by: dict[str, Any] | None = None,
    challenge: list[str] | None = None,
) -> EsError:
    """A 401 ``security_exception`` with the ``WWW-Authenticate`` challenges."""
    return EsError(
        401,
        "security_exception",
        reason,
        metadata=metadata,
        caused_by=caused_by,
        headers={"WWW-Authenticate": list(challenge or WWW_AUTHENTICATE)},
    )


def unsuccessful(message: str) -> EsError:
    """The 401 given when credentials were presented but no authenticator accepted them."""
    return authentication_error(
        UNSUCCESSFUL, metadata={"additional_unsuccessful_credentials": message}
    )


def _authenticate_basic(security: SecurityState, credential: str, uri: str) -> Principal:
    try:
        decoded = java_base64_decode(credential.encode("utf-8")).decode("utf-8", "replace")
    except ValueError as exc:
        raise authentication_error(
            "invalid basic authentication header encoding",
            caused_by={"type": "illegal_argument_exception", "reason": str(exc)},
        ) from None
    username, colon, password = decoded.partition(":")
    if not colon:
        raise authentication_error("invalid basic authentication header value")
    user = security.authenticate_user(username, password)
    if user is None:
        raise authentication_error(
            f"unable to authenticate user [{username}] for REST request [{uri}]"
        )
    return user_principal(security, user, "realm")


def authenticate_token(security: SecurityState, credential: str, now_ms: int) -> Principal:
    """Authenticate an OAuth2 access token (also used by the access-token grant).

    Raises:
        EsError: 401 ``token expired`` or the unsuccessful-credentials 401.
    """
    token = security.find_token(credential)
    if token is None:
        raise unsuccessful("oauth2 token: invalid token")
    if not token.is_valid(now_ms):
        raise authentication_error("token expired", challenge=[EXPIRED_CHALLENGE])
    descriptors = security.resolve_roles(token.roles)
    return Principal(
        username=token.username,
        realm_name=token.realm_name,
        realm_type=token.realm_type,
        roles=list(token.roles),
        full_name=token.full_name,
        email=token.email,
        metadata=dict(token.metadata),
        authentication_type="token",
        permission=security.permission_for(descriptors),
        found_roles=[d.name for d in descriptors],
        token=token,
    )


def _authenticate_api_key(security: SecurityState, credential: str, now_ms: int) -> Principal:
    try:
        key_id, secret = parse_api_key_credential(credential)
    except ValueError as exc:
        raise unsuccessful(f"API key: {exc}") from None
    key = security.api_keys.get(key_id)
    if key is None:
        raise unsuccessful(f"API key: unable to find apikey with id {key_id}")
    if key.invalidated:
        raise unsuccessful(f"API key: api key [{key_id}] has been invalidated")
    if not verify_secret(secret, key.secret_hash):
        raise unsuccessful(f"API key: invalid credentials for API key [{key_id}]")
    if key.type != "rest":
        raise authentication_error(
            f"authentication expected API key type of [rest], but API key [{key_id}] "
            f"has type [{key.type}]"
        )
    if key.is_expired(now_ms):
        raise unsuccessful("API key: api key is expired")
    return key_principal(security, key)


def parse_api_key_credential(credential: str) -> tuple[str, str]:
    """Split an ``ApiKey`` credential into id and secret as ``ApiKeyService.parseApiKey`` does.

    Raises:
        ValueError: with the JDK's base64 message, or ``invalid ApiKey value``.
    """
    decoded = java_base64_decode(credential.encode("utf-8")).decode("utf-8", "replace")
    colon = decoded.find(":")
    if colon < 1:
        raise ValueError("invalid ApiKey value")
    return decoded[:colon], decoded[colon + 1 :]


def java_base64_decode(src: bytes) -> bytes:
    """Decode like Java's ``Base64.getDecoder()``: strict alphabet, optional padding.

    Raises:
        ValueError: with the JDK's exact message.
    """
    if not src:
        return b""
    if len(src) < 2:
        raise ValueError("Input byte[] should at least have 2 bytes for base64 bytes")
    out = bytearray()
    bits, shift, pos = 0, 18, 0
    while pos < len(src):
        value = _B64.get(src[pos])
        pos += 1
        if value is None:
            pos = _stop_at_padding(src, pos, shift)
            break
        bits |= value << shift
        shift -= 6
        if shift < 0:
            out += bits.to_bytes(3, "big")
            bits, shift = 0, 18
    _finish_unit(out, bits, shift)
    if pos < len(src):
        raise ValueError(f"Input byte array has incorrect ending byte at {pos}")
    return bytes(out)


def _stop_at_padding(src: bytes, pos: int, shift: int) -> int:
    byte = src[pos - 1]
    if byte != _PAD:
        raise ValueError(f"Illegal base64 character {_java_hex(byte)}")
    return _check_padding(src, pos, shift)


def _check_padding(src: bytes, pos: int, shift: int) -> int:
    if shift == 18:
        raise ValueError("Input byte array has wrong 4-byte ending unit")
    if shift == 6:
        if pos == len(src) or src[pos] != _PAD:
            raise ValueError("Input byte array has wrong 4-byte ending unit")
        pos += 1
    return pos


def _finish_unit(out: bytearray, bits: int, shift: int) -> None:
    if shift == 6:
        out.append((bits >> 16) & 0xFF)
    elif shift == 0:
        out += bytes(((bits >> 16) & 0xFF, (bits >> 8) & 0xFF))
    elif shift == 12:
        raise ValueError("Last unit does not have enough valid bits")


def _java_hex(byte: int) -> str:
    signed = byte - 256 if byte > 127 else byte
    return f"-{-signed:x}" if signed < 0 else f"{signed:x}"


# --- principals ----------------------------------------------------------------------------------


def user_principal(
    security: SecurityState, user: UserRecord, authentication_type: str
) -> Principal:
    """The principal of a realm user, with the permission of the roles that exist."""
    descriptors = security.resolve_roles(user.roles)
    return Principal(
        username=user.username,
        realm_name=user.realm_name,
        realm_type=user.realm_type,
        roles=list(user.roles),
        full_name=user.full_name,
        email=user.email,
        metadata=dict(user.metadata),
        authentication_type=authentication_type,
        permission=security.permission_for(descriptors),
        found_roles=[d.name for d in descriptors],
    )


def key_principal(security: SecurityState, key: ApiKeyRecord) -> Principal:
    """The principal of a request authenticated by ``key``: its owner, with no roles."""
    creator = key.creator
    return Principal(
        username=creator.principal,
        realm_name=API_KEY_REALM,
        realm_type=API_KEY_REALM,
        roles=[],
        full_name=creator.full_name,
        email=creator.email,
        metadata=dict(creator.metadata),
        authentication_type="api_key",
        permission=security.key_permission(key),
        api_key=key,
    )


def _run_as(security: SecurityState, auth: Principal, username: str) -> Principal:
    user = security.lookup_user(username) if username else None
    if user is None:
        effective = Principal(
            username=username,
            realm_name="",
            realm_type="",
            roles=[],
            full_name=None,
            email=None,
            metadata={},
            authentication_type=auth.authentication_type,
            permission=security.permission_for([]),
        )
    else:
        effective = user_principal(security, user, auth.authentication_type)
    effective.authenticating = auth
    effective.run_as_allowed = user is not None and auth.permission.can_run_as(username)
    return effective


def authentication_json(principal: Principal) -> dict[str, Any]:
    """The ``_authenticate`` body (and a token's ``authentication``), in Elasticsearch's order."""
    auth = principal.authenticated_by
    body: dict[str, Any] = {
        "username": principal.username,
        "roles": list(principal.roles),
        "full_name": principal.full_name,
        "email": principal.email,
        "metadata": principal.metadata,
        "enabled": True,
        "authentication_realm": {"name": auth.realm_name, "type": auth.realm_type},
        "lookup_realm": {"name": principal.realm_name, "type": principal.realm_type},
        "authentication_type": principal.authentication_type,
    }
    if principal.api_key is not None:
        body["api_key"] = {"id": principal.api_key.id, "name": principal.api_key.name}
    return body


# --- authorization -------------------------------------------------------------------------------


def principal_of(call: Call) -> Principal:
    """The authenticated principal of a call (routes that authenticate always have one)."""
    principal = call.principal
    if principal is None:
        raise EsError(500, "exception", "route needs authentication but none was done")
    return principal


def authorize_run_as(call: Call, action: str) -> Principal:
    """Refuse the call when its run-as is not allowed; return the principal.

    Raises:
        EsError: 403 with Elasticsearch's run-as text.
    """
    principal = principal_of(call)
    if not principal.run_as_allowed:
        auth = principal.authenticated_by
        who = subject_text(auth)
        raise forbidden(
            f"action [{action}] is unauthorized for {who}{roles_text(auth)}, "
            f"because {who} is unauthorized to run as [{principal.username}]"
        )
    return principal


def authorize_cluster(call: Call, action: str) -> Principal:
    """Allow the call only if the principal holds a cluster privilege covering ``action``.

    Raises:
        EsError: 403 ``action [X] is unauthorized for ...`` naming the granting privileges.
    """
    principal = authorize_run_as(call, action)
    if not principal.permission.allows_cluster_action(action):
        raise cluster_denied(principal, action)
    return principal


def authorize_index(call: Call, action: str, index: str) -> Principal:
    """Allow the call only if the principal may perform ``action`` on ``index``.

    Raises:
        EsError: 403 naming the index and the index privileges that grant the action.
    """
    principal = authorize_run_as(call, action)
    if not principal.permission.allows_index_action(action, index):
        text = f"{denied_text(principal, action)} on indices [{index}]"
        granting = index_privileges_granting(action)
        if granting:
            text += f", this action is granted by the index privileges [{','.join(granting)}]"
        raise forbidden(text)
    return principal


def authorize_index_action_name(call: Call, action: str) -> Principal:
    """Allow a composite request only if some index privilege grants ``action`` at all.

    This is ``RBACEngine``'s check for ``_bulk`` and single-document index and delete requests
    (``shouldAuthorizeIndexActionNameOnly``): the request is refused as a whole, with no
    ``on indices`` in the text, before any item is looked at.

    Raises:
        EsError: 403 naming the index privileges that grant the action.
    """
    principal = authorize_run_as(call, action)
    if not principal.permission.allows_index_action_anywhere(action):
        text = denied_text(principal, action)
        granting = index_privileges_granting(action)
        if granting:
            text += f", this action is granted by the index privileges [{','.join(granting)}]"
        raise forbidden(text)
    return principal


def cluster_denied(principal: Principal, action: str, *, own_ok: bool = False) -> EsError:
    """The 403 for a cluster action, listing the privileges that would allow this request.

    Args:
        principal: who was refused.
        action: the cluster action name.
        own_ok: whether ``manage_own_api_key`` would have allowed this particular request.
    """
    granting = cluster_privileges_granting(action, own_key_request=own_ok)
    text = denied_text(principal, action)
    if granting:
        text += f", this action is granted by the cluster privileges [{','.join(granting)}]"
    return forbidden(text)


def denied_text(principal: Principal, action: str) -> str:
    """``action [X] is unauthorized for <who>`` as ``AuthorizationDenialMessages`` words it."""
    who = subject_text(principal.authenticated_by)
    if principal.authenticating is not None:
        who += f" run as [{principal.username}]"
    return f"action [{action}] is unauthorized for {who}{roles_text(principal)}"


def subject_text(principal: Principal) -> str:
    """``user [u]`` or ``API key id [id] of user [owner]``."""
    if principal.api_key is not None:
        return f"API key id [{principal.api_key.id}] of user [{principal.username}]"
    return f"user [{principal.username}]"


def roles_text(principal: Principal) -> str:
    """`` with effective roles [...]`` (and the missing ones) for users; empty for keys."""
    if principal.api_key is not None:
        return ""
    found = sorted(principal.found_roles)
    text = f" with effective roles [{','.join(found)}]"
    missing = sorted(set(principal.roles) - set(found))
    if missing:
        text += f" (assigned roles [{','.join(missing)}] were not found)"
    return text


def forbidden(reason: str) -> EsError:
    """A 403 ``security_exception``."""
    return EsError(403, "security_exception", reason)
