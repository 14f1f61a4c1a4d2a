"""The sandbox's security objects: users, roles, application privileges, tokens and API keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field, replace
from typing import Any

from rotator.sandbox.errors import EsError
from rotator.sandbox.keyindex import KeyIndex, QueryDoc
from rotator.sandbox.privileges import AppPrivilegeDef, LimitedPermission, Permission
from rotator.sandbox.roles import BUILTIN_ROLES, RoleDescriptor, parse_role_descriptor
from rotator.sandbox.timevalue import parse_time_value

DAY_MS = 86_400_000
DEFAULT_RETENTION_MS = 7 * DAY_MS
ACCESS_TOKEN_LIFETIME_MS = 20 * 60 * 1000
REFRESH_TOKEN_LIFETIME_MS = DAY_MS
NATIVE_REALM = ("default_native", "native")
API_KEY_REALM = "_es_api_key"
RETENTION_SETTING = "xpack.security.authc.api_key.delete.retention_period"
# Permissions built from role descriptors (and the registered application privileges), kept
# because a role listing many index names costs milliseconds to build and every request needs
# its holder's. A permission is immutable and depends on nothing else, so sharing is safe.
_PERMISSIONS: dict[tuple[Any, ...], Permission] = {}
_PERMISSIONS_MAX = 1024
_HASH_ITERATIONS = 1000
_HASH_NAME = "pbkdf2_sha256"


# --- secrets -------------------------------------------------------------------------------------


def hash_secret(secret: str) -> str:
    """Hash ``secret`` with a fresh random salt; the result never contains the secret.

    Returns:
        ``pbkdf2_sha256$<iterations>$<salt hex>$<digest hex>``.
    """
    salt = secrets.token_bytes(16)
    digest = _digest(secret, salt, _HASH_ITERATIONS)
    return f"{_HASH_NAME}${_HASH_ITERATIONS}${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, stored: str) -> bool:
    """Whether ``secret`` matches a hash made by :func:`hash_secret` (constant time)."""
    try:
        name, iterations, salt_hex, digest_hex = stored.split("$")
        salt, expected = bytes.fromhex(salt_hex), bytes.fromhex(digest_hex)
    except ValueError:
        return False
    if name != _HASH_NAME:
        return False
    return hmac.compare_digest(_digest(secret, salt, int(iterations)), expected)


def _digest(secret: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8"), salt, iterations)


def new_key_id() -> str:
    """A 20-character URL-safe base64 id, like ``UUIDs.base64UUID()``."""
    return base64.urlsafe_b64encode(secrets.token_bytes(15)).decode("ascii")


def new_key_secret() -> str:
    """A 22-character URL-safe base64 secret, like ``UUIDs.randomBase64UUIDSecureString()``."""
    return base64.urlsafe_b64encode(secrets.token_bytes(16)).decode("ascii").rstrip("=")


def new_token() -> str:
    """An opaque bearer token string (standard base64, as Elasticsearch's tokens are)."""
    return base64.b64encode(secrets.token_bytes(48)).decode("ascii")


def token_digest(token: str) -> str:
    """The key under which a token is stored (tokens are random, so a plain SHA-256 suffices)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# --- records -------------------------------------------------------------------------------------


@dataclass
class UserRecord:
    """A user of the native realm, or a bootstrap user of the reserved or file realm."""

    username: str
    password_hash: str
    roles: list[str]
    full_name: str | None = None
    email: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    realm_name: str = NATIVE_REALM[0]
    realm_type: str = NATIVE_REALM[1]

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable form (with the password hash, never a password)."""
        return {
            "username": self.username,
            "password_hash": self.password_hash,
            "roles": list(self.roles),
            "full_name": self.full_name,
            "email": self.email,
            "metadata": self.metadata,
            "enabled": self.enabled,
            "realm_name": self.realm_name,
            "realm_type": self.realm_type,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UserRecord:
        """Rebuild a record made by :meth:`to_json`."""
        return cls(**data)


@dataclass(frozen=True)
class Creator:
    """Who owns an API key: the effective user at creation or last update."""

    principal: str
    full_name: str | None
    email: str | None
    metadata: dict[str, Any]
    realm: str
    realm_type: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable form."""
        return {
            "principal": self.principal,
            "full_name": self.full_name,
            "email": self.email,
            "metadata": self.metadata,
            "realm": self.realm,
            "realm_type": self.realm_type,
        }


@dataclass
class ApiKeyRecord:
    """One API key document; only a salted hash of the secret is kept."""

    id: str
    name: str
    type: str
    secret_hash: str
    creation: int
    expiration: int | None
    role_descriptors: list[RoleDescriptor]
    limited_by: list[RoleDescriptor]
    metadata: dict[str, Any] | None
    creator: Creator
    seq: int
    invalidated: bool = False
    invalidation: int | None = None

    def is_expired(self, now_ms: int) -> bool:
        """Whether the key has expired (an expiration equal to now counts as expired)."""
        return self.expiration is not None and self.expiration <= now_ms

    def is_active(self, now_ms: int) -> bool:
        """Neither invalidated nor expired."""
        return not self.invalidated and not self.is_expired(now_ms)

    def query_doc(self) -> QueryDoc:
        """The fields the Query API searches, sorts and aggregates on."""
        return QueryDoc(
            id=self.id,
            name=self.name,
            type=self.type,
            creation=self.creation,
            expiration=self.expiration,
            invalidated=self.invalidated,
            invalidation=self.invalidation,
            username=self.creator.principal,
            realm_name=self.creator.realm,
            metadata=self.metadata or {},
            seq=self.seq,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable form (the secret hash, never the secret)."""
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "secret_hash": self.secret_hash,
            "creation": self.creation,
            "expiration": self.expiration,
            "role_descriptors": descriptors_to_json(self.role_descriptors),
            "limited_by": descriptors_to_json(self.limited_by),
            "metadata": self.metadata,
            "creator": self.creator.to_json(),
            "seq": self.seq,
            "invalidated": self.invalidated,
            "invalidation": self.invalidation,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ApiKeyRecord:
        """Rebuild a record made by :meth:`to_json`."""
        values = dict(data)
        values["role_descriptors"] = descriptors_from_json(data["role_descriptors"])
        values["limited_by"] = descriptors_from_json(data["limited_by"])
        values["creator"] = Creator(**data["creator"])
        return cls(**values)


@dataclass
class TokenRecord:
    """An access token and its refresh token, stored by digest only."""

    access_digest: str
    refresh_digest: str | None
    username: str
    realm_name: str
    realm_type: str
    roles: list[str]
    full_name: str | None
    email: str | None
    metadata: dict[str, Any]
    creation: int
    expiration: int
    invalidated: bool = False
    refresh_used: bool = False

    def is_valid(self, now_ms: int) -> bool:
        """Whether the access token still authenticates."""
        return not self.invalidated and self.expiration > now_ms

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable form."""
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenRecord:
        """Rebuild a record made by :meth:`to_json`."""
        return cls(**data)


def descriptors_to_json(descriptors: list[RoleDescriptor]) -> list[list[Any]]:
    """Role descriptors as ``[name, normalized JSON]`` pairs, in order."""
    return [[d.name, d.to_json()] for d in descriptors]


def descriptors_from_json(pairs: list[list[Any]]) -> list[RoleDescriptor]:
    """Role descriptors back from :func:`descriptors_to_json`."""
    return [
        parse_role_descriptor(name, body, allow_restriction=True, validate=False)
        for name, body in pairs
    ]


# --- the state -----------------------------------------------------------------------------------


class SecurityState:
    """Every security object of one sandbox; callers hold the sandbox lock."""

    def __init__(self) -> None:
        self.bootstrap_users: dict[str, UserRecord] = {}
        self.retention_ms = DEFAULT_RETENTION_MS
        self._reset_contents()

    def _reset_contents(self) -> None:
        self.users: dict[str, UserRecord] = {}
        self.roles: dict[str, RoleDescriptor] = {}
        self.app_privileges: dict[str, dict[str, AppPrivilegeDef]] = {}
        self.tokens: dict[str, TokenRecord] = {}
        self.refresh_tokens: dict[str, str] = {}
        self.api_keys: dict[str, ApiKeyRecord] = {}
        self.key_index = KeyIndex()
        self._seq = 0

    def reset(self) -> None:
        """Wipe everything but the bootstrap users and the settings."""
        self._reset_contents()

    def set_retention_period(self, value: str) -> None:
        """Set ``xpack.security.authc.api_key.delete.retention_period`` from a time value.

        Raises:
            EsError: 400 when the value is not a time value or not positive.
        """
        millis = parse_time_value(value, RETENTION_SETTING).millis
        if millis <= 0:
            reason = (
                f"failed to parse value [{value}] for setting [{RETENTION_SETTING}], must be > [0s]"
            )
            raise EsError(400, "illegal_argument_exception", reason)
        self.retention_ms = millis

    # --- users ------------------------------------------------------------------------------

    def add_bootstrap_user(
        self,
        username: str,
        password: str,
        roles: list[str],
        realm_name: str = "file",
        realm_type: str = "file",
    ) -> None:
        """Add a user that survives :meth:`reset` (the reserved ``elastic``, file users)."""
        metadata: dict[str, Any] = {"_reserved": True} if realm_type == "reserved" else {}
        self.bootstrap_users[username] = UserRecord(
            username,
            hash_secret(password),
            list(roles),
            metadata=metadata,
            realm_name=realm_name,
            realm_type=realm_type,
        )

    def is_reserved(self, username: str) -> bool:
        """Whether ``username`` is a user of the reserved realm."""
        user = self.bootstrap_users.get(username)
        return user is not None and user.realm_type == "reserved"

    def realm_users(self, username: str) -> list[UserRecord]:
        """The users named ``username`` in realm-chain order (reserved, file, native)."""
        found = [u for u in (self.bootstrap_users.get(username), self.users.get(username)) if u]
        return sorted(found, key=lambda u: _REALM_ORDER.get(u.realm_type, 3))

    def authenticate_user(self, username: str, password: str) -> UserRecord | None:
        """The first enabled user of the realm chain whose password matches, if any."""
        for user in self.realm_users(username):
            if user.enabled and verify_secret(password, user.password_hash):
                return user
        return None

    def lookup_user(self, username: str) -> UserRecord | None:
        """The user a run-as lookup finds (first realm that knows the name)."""
        found = self.realm_users(username)
        return found[0] if found else None

    # --- roles and permissions --------------------------------------------------------------

    def find_role(self, name: str) -> RoleDescriptor | None:
        """A built-in role, or else a role created through the API."""
        builtin = BUILTIN_ROLES.get(name)
        return builtin if builtin is not None else self.roles.get(name)

    def resolve_roles(self, names: list[str]) -> list[RoleDescriptor]:
        """The descriptors of the roles that exist, in the given order, without duplicates."""
        seen: dict[str, RoleDescriptor] = {}
        for name in names:
            role = self.find_role(name)
            if role is not None and name not in seen:
                seen[name] = role
        return list(seen.values())

    def app_privilege_list(self) -> list[AppPrivilegeDef]:
        """Every registered application privilege."""
        return [p for by_name in self.app_privileges.values() for p in by_name.values()]

    def permission_for(self, descriptors: list[RoleDescriptor]) -> Permission:
        """The permission the given role descriptors grant.

        With the ``superuser`` role, Elasticsearch uses the superuser role alone, built once
        without stored application privileges (``CompositeRolesStore``), so its ``*``
        application privilege stays an action pattern that grants every application.
        """
        superuser = BUILTIN_ROLES["superuser"]
        if any(d == superuser for d in descriptors):
            return Permission.from_descriptors([superuser], ())
        apps = self.app_privilege_list()
        try:
            key = (tuple(descriptors), tuple(apps))
            cached = _PERMISSIONS.get(key)
        except TypeError:  # a descriptor holding something unhashable: build it every time
            return Permission.from_descriptors(descriptors, apps)
        if cached is None:
            cached = Permission.from_descriptors(descriptors, apps)
            if len(_PERMISSIONS) >= _PERMISSIONS_MAX:
                _PERMISSIONS.clear()
            _PERMISSIONS[key] = cached
        return cached

    def key_permission(self, key: ApiKeyRecord) -> LimitedPermission:
        """A key's effective permission: its own descriptors (if any) within its snapshot."""
        assigned = self.permission_for(key.role_descriptors) if key.role_descriptors else None
        return LimitedPermission(assigned, self.permission_for(key.limited_by))

    # --- API keys ---------------------------------------------------------------------------

    def next_seq(self) -> int:
        """A strictly increasing number for index order (``_doc`` sorting)."""
        self._seq += 1
        return self._seq

    def new_key_id(self) -> str:
        """A key id not used by any stored key."""
        key_id = new_key_id()
        while key_id in self.api_keys:
            key_id = new_key_id()
        return key_id

    def add_key(self, key: ApiKeyRecord) -> None:
        """Store a new key and index it for the Query API."""
        self.api_keys[key.id] = key
        self.key_index.add(key.query_doc())

    def replace_key(self, key: ApiKeyRecord) -> None:
        """Store a changed key (update, invalidation) and re-index it."""
        self.api_keys[key.id] = key
        self.key_index.replace(key.query_doc())

    def invalidate_key(self, key_id: str, now_ms: int) -> bool:
        """Flag a key as invalidated; False when it already was."""
        key = self.api_keys[key_id]
        if key.invalidated:
            return False
        self.replace_key(replace(key, invalidated=True, invalidation=now_ms))
        return True

    def remove_inactive_keys(self, now_ms: int) -> list[str]:
        """Delete keys expired or invalidated for longer than the retention period.

        Returns:
            The ids removed.
        """
        cutoff = now_ms - self.retention_ms
        doomed = [k.id for k in self.api_keys.values() if _is_removable(k, cutoff)]
        for key_id in doomed:
            del self.api_keys[key_id]
            self.key_index.remove(key_id)
        return doomed

    # --- tokens -----------------------------------------------------------------------------

    def add_token(self, token: TokenRecord) -> None:
        """Store a token pair by digest."""
        self.tokens[token.access_digest] = token
        if token.refresh_digest is not None:
            self.refresh_tokens[token.refresh_digest] = token.access_digest

    def find_token(self, access_token: str) -> TokenRecord | None:
        """The token record for an access token string."""
        return self.tokens.get(token_digest(access_token))

    def find_refresh(self, refresh_token: str) -> TokenRecord | None:
        """The token record a refresh token belongs to."""
        access = self.refresh_tokens.get(token_digest(refresh_token))
        return self.tokens.get(access) if access is not None else None

    # --- persistence ------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Everything needed to restart with the same users, roles, tokens and keys."""
        return {
            "settings": {"retention_period_ms": self.retention_ms},
            "users": [u.to_json() for u in self.users.values()],
            "roles": descriptors_to_json(list(self.roles.values())),
            "app_privileges": [_privilege_to_json(p) for p in self.app_privilege_list()],
            "tokens": [t.to_json() for t in self.tokens.values()],
            "api_keys": [k.to_json() for k in self.api_keys.values()],
            "seq": self._seq,
        }

    def load_json(self, data: dict[str, Any]) -> None:
        """Replace the contents (not the bootstrap users) with a :meth:`to_json` snapshot."""
        self._reset_contents()
        settings = data.get("settings", {})
        self.retention_ms = int(settings.get("retention_period_ms", DEFAULT_RETENTION_MS))
        for user in data.get("users", []):
            record = UserRecord.from_json(user)
            self.users[record.username] = record
        for role in descriptors_from_json(data.get("roles", [])):
            self.roles[role.name] = role
        for privilege in data.get("app_privileges", []):
            self.put_app_privilege(AppPrivilegeDef(**privilege))
        for token in data.get("tokens", []):
            self.add_token(TokenRecord.from_json(token))
        for key in data.get("api_keys", []):
            self.add_key(ApiKeyRecord.from_json(key))
        self._seq = max([int(data.get("seq", 0)), *(k.seq for k in self.api_keys.values())])

    def put_app_privilege(self, privilege: AppPrivilegeDef) -> bool:
        """Store an application privilege; True when it is new."""
        by_name = self.app_privileges.setdefault(privilege.application, {})
        created = privilege.name not in by_name
        by_name[privilege.name] = privilege
        return created


_REALM_ORDER = {"reserved": 0, "file": 1, "native": 2}


def _is_removable(key: ApiKeyRecord, cutoff: int) -> bool:
    if key.expiration is not None and key.expiration <= cutoff:
        return True
    return key.invalidated and (key.invalidation is None or key.invalidation <= cutoff)


def _privilege_to_json(privilege: AppPrivilegeDef) -> dict[str, Any]:
    return {
        "application": privilege.application,
        "name": privilege.name,
        "actions": list(privilege.actions),
        "metadata": dict(privilege.metadata),
    }
