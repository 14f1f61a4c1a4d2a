"""An in-memory KeyAuthority with Elasticsearch's API-key semantics, and fault hooks.

What it reproduces, as rotator's ``ElasticKeyAuthority`` sees a real cluster through a user
holding ``manage_own_api_key``:

- ``create``: a random 20-character id and 22-character secret, ``encoded`` =
  base64(``id:api_key``), expiration = now + ``expiration_seconds`` on the injected clock (epoch
  milliseconds); names, metadata and role descriptors validated as Elasticsearch does (a 400
  becomes AuthorityRejected). The owner's roles are snapshotted as the key's ``limited_by``.
- ``update``: owner only (an unknown or foreign id is a 404: AuthorityRejected); invalidated or
  expired keys are refused; a no-op (same descriptors, same owner roles) answers False; every
  update re-snapshots the owner's roles.
- ``invalidate``: own keys only, idempotent (unknown, foreign and already invalidated ids are
  ignored; expired keys are invalidated).
- ``get`` / ``find_by_metadata``: own keys, invalidated and expired ones included (``valid_only``
  leaves out the invalidated ones, as rotator's query does); metadata is matched as Elasticsearch's
  flattened field matches a ``term`` (dotted paths, arrays, values as keyword strings), sorted by
  creation then name.
- ``check_privileges``: authenticates with ``encoded`` (a wrong secret, an unknown, invalidated or
  expired key fails with AuthenticationFailed, as a 401 does), then answers ``_has_privileges``
  with the key's descriptors intersected with the owner snapshot (no descriptors: the snapshot
  alone). ``check_own_privileges`` answers for the owner's current roles.

Anything outside that (application privileges, restricted indices, regex patterns, privileges it
has no definition for) raises Unmodelled instead of guessing.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hmac
import secrets
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rotator.clock import Clock
from rotator.errors import (
    AuthenticationFailed,
    AuthorityRejected,
    AuthorityUnavailable,
    PermissionDenied,
)
from rotator.log import register_secret
from rotator.ports import Credential, InvalidationResult, KeyInfo, secret_fingerprint
from tests.fakes.descriptors import InvalidDescriptor, create_problems, flattened, normalize
from tests.fakes.patterns import Unmodelled
from tests.fakes.privileges import Role, UnknownPrivilege, has_privileges

__all__ = ["DEFAULT_ROLES", "WHERE", "FakeKeyAuthority", "Unmodelled"]

WHERE = "fake Elasticsearch"
#: A rotator identity that may delegate the ingestion privileges on any index.
DEFAULT_ROLES: Mapping[str, Any] = {
    "rotator": {
        "cluster": ["manage_own_api_key", "monitor", "read_ilm", "read_pipeline", "read_slm"],
        "indices": [
            {
                "names": ["*"],
                "privileges": ["write", "auto_configure", "view_index_metadata", "read", "monitor"],
            }
        ],
    }
}
METHODS = (
    "create",
    "update",
    "invalidate",
    "get",
    "find_by_metadata",
    "check_privileges",
    "check_own_privileges",
)
_API_KEY = "cluster:admin/xpack/security/api_key/"
_GRANTED_BY = "manage_own_api_key,manage_api_key,manage_security,all"


@dataclass
class _Key:
    id: str
    name: str
    secret_hash: str
    creation: datetime
    expiration: datetime | None
    username: str
    metadata: dict[str, Any]
    role_descriptors: dict[str, Any]
    limited_by: dict[str, Any]
    invalidated: bool = False
    invalidation: datetime | None = None

    def info(self) -> KeyInfo:
        return KeyInfo(
            id=self.id,
            name=self.name,
            creation=self.creation,
            expiration=self.expiration,
            invalidated=self.invalidated,
            username=self.username,
            metadata=copy.deepcopy(self.metadata),
            role_descriptors=copy.deepcopy(self.role_descriptors),
        )

    def expired(self, now: datetime) -> bool:
        return self.expiration is not None and self.expiration <= now


@dataclass
class _Cluster:
    """What every authority sharing one fake cluster sees: the clock and the keys."""

    clock: Clock
    keys: dict[str, _Key] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)


def _millis(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _rejected(what: str, status: int, kind: str, reason: str) -> AuthorityRejected:
    return AuthorityRejected(f"{what}: {WHERE} answered {status} {kind}: {reason}")


class FakeKeyAuthority:
    """Elasticsearch's API-key service in memory, as one user holding ``roles`` sees it.

    Args:
        clock: the time source for creation, expiration and invalidation (a ManualClock).
        username: the owner of the keys this authority creates.
        roles: the owner's role descriptors by role name (DEFAULT_ROLES when None).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        username: str = "rotator",
        roles: Mapping[str, Any] | None = None,
        _cluster: _Cluster | None = None,
    ) -> None:
        self._cluster = _cluster or _Cluster(clock)
        self.username = username
        self._roles = normalize(DEFAULT_ROLES if roles is None else roles)
        self._faults: dict[str, list[BaseException]] = {}
        self._lost_creates = 0
        self.calls: list[str] = []

    # --- test controls ---------------------------------------------------------------------

    def colleague(self, username: str, roles: Mapping[str, Any]) -> FakeKeyAuthority:
        """Another user of the same cluster (same keys and clock), with faults of its own."""
        return FakeKeyAuthority(
            self._cluster.clock, username=username, roles=roles, _cluster=self._cluster
        )

    def set_roles(self, roles: Mapping[str, Any]) -> None:
        """Change the owner's roles; existing keys keep their snapshot until updated."""
        self._roles = normalize(roles)

    def fail_next(self, method: str, error: BaseException, times: int = 1) -> None:
        """Make the next ``times`` calls of ``method`` raise ``error`` before doing anything."""
        if method not in METHODS:
            raise ValueError(f"{method!r} is not a KeyAuthority method; one of {METHODS}")
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        self._faults.setdefault(method, []).extend(copy.copy(error) for _ in range(times))

    def lose_next_create_answers(self, times: int = 1) -> None:
        """Make the next ``times`` creates make their key, then raise AuthorityUnavailable."""
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        self._lost_creates += times

    def all_keys(self) -> list[KeyInfo]:
        """Every key of the cluster, whoever owns it, in creation order (an admin's view)."""
        with self._cluster.lock:
            return [k.info() for k in self._cluster.keys.values()]

    # --- KeyAuthority ----------------------------------------------------------------------

    def create(
        self,
        name: str,
        expiration_seconds: int,
        role_descriptors: Mapping[str, Any],
        metadata: Mapping[str, Any],
    ) -> Credential:
        """Create a key owned by this user; see the module docstring for the rules."""
        what = f"create API key {name}"
        with self._call("create", what, "create"):
            problems = create_problems(name, expiration_seconds, metadata)
            descriptors = self._descriptors(what, role_descriptors, problems)
            now = _millis(self._cluster.clock.now())
            key_id = secrets.token_urlsafe(15)
            secret = secrets.token_urlsafe(16)
            expiration = now + timedelta(seconds=expiration_seconds)
            self._cluster.keys[key_id] = _Key(
                key_id,
                name,
                secret_fingerprint(secret),
                now,
                expiration,
                self.username,
                copy.deepcopy(dict(metadata)),
                descriptors,
                copy.deepcopy(self._roles),
            )
            encoded = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
            register_secret(secret)
            register_secret(encoded)
            if self._lost_creates:
                self._lost_creates -= 1
                raise AuthorityUnavailable(
                    f"{what}: cannot reach Elasticsearch at {WHERE}: timed out"
                )
            return Credential(
                id=key_id,
                name=name,
                api_key=secret,
                encoded=encoded,
                source=str(metadata.get("source", "")),
                expiration=expiration,
            )

    def update(self, key_id: str, role_descriptors: Mapping[str, Any]) -> bool:
        """Replace an own key's descriptors and re-snapshot the owner's roles."""
        what = f"update API key {key_id}"
        with self._call("update", what, "update"):
            descriptors = self._descriptors(what, role_descriptors, [])
            key = self._cluster.keys.get(key_id)
            if key is None or key.username != self.username:
                reason = f"no API key owned by requesting user found for ID [{key_id}]"
                raise _rejected(what, 404, "resource_not_found_exception", reason)
            if key.invalidated:
                reason = f"cannot update invalidated API key [{key_id}]"
                raise _rejected(what, 400, "illegal_argument_exception", reason)
            if key.expired(self._cluster.clock.now()):
                reason = f"cannot update expired API key [{key_id}]"
                raise _rejected(what, 400, "illegal_argument_exception", reason)
            if key.role_descriptors == descriptors and key.limited_by == self._roles:
                return False
            key.role_descriptors = descriptors
            key.limited_by = copy.deepcopy(self._roles)
            return True

    def invalidate(self, ids: Sequence[str]) -> InvalidationResult:
        """Invalidate own keys by id; the ids invalidated by this call are in ``invalidated``."""
        what = f"invalidate {len(ids)} API key(s)"
        with self._call("invalidate", what, "invalidate"):
            if not ids:
                return InvalidationResult()
            for i, key_id in enumerate(ids):
                if not key_id.strip():
                    reason = f"Field [ids] must not contain blank id, but got blank id at index position: [{i}]"
                    raise _rejected(what, 400, "action_request_validation_exception", reason)
            now = _millis(self._cluster.clock.now())
            done: list[str] = []
            for key_id in dict.fromkeys(ids):
                key = self._cluster.keys.get(key_id)
                if key is None or key.username != self.username or key.invalidated:
                    continue
                key.invalidated, key.invalidation = True, now
                done.append(key_id)
            return InvalidationResult(invalidated=tuple(done))

    def get(self, ids: Sequence[str]) -> dict[str, KeyInfo]:
        """Own keys by id (unknown and foreign ids are absent)."""
        with self._call("get", "query API keys", "query"):
            wanted = set(ids)
            return {k.id: k.info() for k in self._own() if k.id in wanted}

    def find_by_metadata(
        self, field: str, value: str, *, valid_only: bool = False
    ) -> list[KeyInfo]:
        """Own keys whose flattened ``metadata.<field>`` holds ``value``."""
        with self._call("find_by_metadata", "query API keys", "query"):
            found = [
                k
                for k in self._own()
                if value in flattened(k.metadata).get(field, ())
                and not (valid_only and k.invalidated)
            ]
            return [k.info() for k in sorted(found, key=lambda k: (k.creation, k.name))]

    def iter_by_metadata(self, field: str, value: str) -> Iterator[KeyInfo]:
        """The keys ``find_by_metadata`` finds, one at a time."""
        return iter(self.find_by_metadata(field, value))

    def check_privileges(self, credential: Credential, body: Mapping[str, Any]) -> dict[str, Any]:
        """Authenticate with ``credential.encoded``, then ``_has_privileges`` as the key."""
        with self._call("check_privileges", "", None):
            key = self._authenticate(credential)
            if key.id != credential.id:
                raise AuthorityRejected(
                    f"authenticating as key {credential.id} gave another identity"
                )
            roles = [Role.of(key.limited_by.values())]
            if key.role_descriptors:
                roles.insert(0, Role.of(key.role_descriptors.values()))
            what = f"check privileges of key {credential.id}"
            return self._has_privileges(what, roles, key.username, body)

    def check_own_privileges(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``_has_privileges`` as this user, with its current roles."""
        with self._call("check_own_privileges", "", None):
            role = Role.of(self._roles.values())
            return self._has_privileges(
                "check rotator's own privileges", [role], self.username, body
            )

    # --- internals -------------------------------------------------------------------------

    @contextmanager
    def _call(self, method: str, what: str, action: str | None) -> Iterator[None]:
        """Record the call, raise an injected fault, hold the lock, check the cluster action."""
        self.calls.append(method)
        queued = self._faults.get(method)
        if queued:
            raise queued.pop(0)
        with self._cluster.lock:
            if action is not None:
                self._authorize(what, action)
            yield

    def _authorize(self, what: str, action: str) -> None:
        full = _API_KEY + action
        if not Role.of(self._roles.values()).allows_cluster_action(full):
            roles = ",".join(self._roles)
            raise PermissionDenied(
                f"{what}: {WHERE} answered 403 security_exception: action [{full}] is "
                f"unauthorized for user [{self.username}] with effective roles [{roles}], this "
                f"action is granted by the cluster privileges [{_GRANTED_BY}]"
            )

    def _descriptors(
        self, what: str, descriptors: Mapping[str, Any], problems: list[str]
    ) -> dict[str, Any]:
        try:
            normalized = normalize(descriptors)
        except InvalidDescriptor as exc:
            problems = [*problems, str(exc)]
            normalized = {}
        if problems:
            reason = "".join(f"{i}: {p};" for i, p in enumerate(problems, 1))
            raise _rejected(
                what, 400, "action_request_validation_exception", f"Validation Failed: {reason}"
            )
        return normalized

    def _own(self) -> list[_Key]:
        return [k for k in self._cluster.keys.values() if k.username == self.username]

    def _authenticate(self, credential: Credential) -> _Key:
        what = f"authenticate as new key {credential.id}"
        reason = "unable to authenticate with provided credentials and anonymous access is not allowed for this request"
        try:
            key_id, _, secret = (
                base64.b64decode(credential.encoded, validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            key_id, secret = "", ""
        key = self._cluster.keys.get(key_id)
        valid = (
            key is not None
            and bool(secret)
            and hmac.compare_digest(key.secret_hash, secret_fingerprint(secret))
            and not key.invalidated
            and not key.expired(self._cluster.clock.now())
        )
        if key is None or not valid:
            raise AuthenticationFailed(f"{what}: {WHERE} answered 401 security_exception: {reason}")
        return key

    def _has_privileges(
        self, what: str, roles: list[Role], username: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        try:
            return has_privileges(roles, username, body)
        except UnknownPrivilege as exc:
            raise _rejected(what, 400, "illegal_argument_exception", str(exc)) from None
        except (ValueError, KeyError) as exc:
            raise _rejected(what, 400, "action_request_validation_exception", str(exc)) from None
