"""Expiry, invalidation and deletion (the remover and its retention), persistence, secret hygiene."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from elasticsearch import Elasticsearch, NotFoundError

from rotator.sandbox import Sandbox
from rotator.sandbox.authn import authenticate
from rotator.sandbox.errors import EsError
from rotator.sandbox.http import Request
from rotator.sandbox.security_state import (
    DAY_MS,
    ApiKeyRecord,
    Creator,
    SecurityState,
    hash_secret,
    verify_secret,
)
from rotator.sandbox.state import SandboxState

pytestmark = pytest.mark.usefixtures("clean")
NOW = 1_700_000_000_000


def record(security: SecurityState, key_id: str, **fields: Any) -> ApiKeyRecord:
    key = ApiKeyRecord(
        id=key_id,
        name=key_id,
        type="rest",
        secret_hash=hash_secret("s" * 22),
        creation=fields.pop("creation", NOW - DAY_MS),
        expiration=fields.pop("expiration", None),
        role_descriptors=[],
        limited_by=[],
        metadata=None,
        creator=Creator("u", None, None, {}, "default_native", "native"),
        seq=security.next_seq(),
        **fields,
    )
    security.add_key(key)
    return key


# --- the remover ----------------------------------------------------------------------------------


def test_expired_keys_go_after_the_retention_period() -> None:
    security = SecurityState()
    record(security, "kept", expiration=NOW - 7 * DAY_MS + 1)
    record(security, "edge", expiration=NOW - 7 * DAY_MS)
    record(security, "live")
    assert security.remove_inactive_keys(NOW) == ["edge"]
    assert set(security.api_keys) == {"kept", "live"}
    assert security.key_index.get("edge") is None


def test_invalidated_keys_go_after_the_retention_period() -> None:
    security = SecurityState()
    record(security, "recent", invalidated=True, invalidation=NOW - DAY_MS)
    record(security, "old", invalidated=True, invalidation=NOW - 7 * DAY_MS)
    record(security, "unknown-time", invalidated=True, invalidation=None)
    assert sorted(security.remove_inactive_keys(NOW)) == ["old", "unknown-time"]


def test_retention_is_settable() -> None:
    security = SecurityState()
    record(security, "k", expiration=NOW - 2 * DAY_MS)
    assert security.remove_inactive_keys(NOW) == []
    security.set_retention_period("1d")
    assert security.remove_inactive_keys(NOW) == ["k"]


@pytest.mark.parametrize("value", ["0s", "-1", "1.5d", "weekly"])
def test_retention_must_be_a_positive_time_value(value: str) -> None:
    with pytest.raises(EsError):
        SecurityState().set_retention_period(value)


def test_retention_survives_reset() -> None:
    security = SecurityState()
    security.set_retention_period("2d")
    security.reset()
    assert security.retention_ms == 2 * DAY_MS


def test_sandbox_removes_old_expired_keys_as_time_passes(
    sandbox: Sandbox, es: Elasticsearch
) -> None:
    key = es.security.create_api_key(name="short", expiration="1h")
    sandbox.advance(timedelta(hours=2))
    assert es.security.get_api_key(id=key["id"])["api_keys"][0]["name"] == "short"
    sandbox.advance(timedelta(days=7))
    with pytest.raises(NotFoundError):
        es.security.get_api_key(id=key["id"])


def test_invalidated_keys_stay_visible_until_removed(sandbox: Sandbox, es: Elasticsearch) -> None:
    key = es.security.create_api_key(name="k")
    es.security.invalidate_api_key(ids=[key["id"]])
    shown = es.security.get_api_key(id=key["id"])["api_keys"][0]
    assert shown["invalidated"] is True
    assert es.security.query_api_keys(query={"term": {"invalidated": True}})["total"] == 1
    sandbox.advance(timedelta(days=7, minutes=1))
    assert es.security.query_api_keys()["total"] == 0


# --- secrets --------------------------------------------------------------------------------------


def test_secret_hash_round_trip_and_salting() -> None:
    first, second = hash_secret("top-secret"), hash_secret("top-secret")
    assert first != second
    assert "top-secret" not in first
    assert verify_secret("top-secret", first)
    assert not verify_secret("top-secreT", first)
    assert not verify_secret("top-secret", "garbage")


def test_no_secret_or_password_is_kept_in_state(sandbox: Sandbox, es: Elasticsearch) -> None:
    es.security.put_user(username="someone", password="hunter2-password", roles=[])
    key = es.security.create_api_key(name="k")
    token = es.security.get_token(
        grant_type="password", username="someone", password="hunter2-password"
    )
    dumped = json.dumps(sandbox.state.security.to_json())
    for secret in (key["api_key"], key["encoded"], "hunter2-password", token["access_token"]):
        assert secret not in dumped
    assert token["refresh_token"] not in dumped
    assert key["api_key"] not in repr(sandbox.state.security.api_keys)


# --- persistence ----------------------------------------------------------------------------------


def _request(encoded: str) -> Request:
    return Request(
        "GET", "/_security/_authenticate", headers={"authorization": f"ApiKey {encoded}"}
    )


def test_state_round_trip_keeps_keys_authenticating(sandbox: Sandbox, es: Elasticsearch) -> None:
    es.security.put_role(
        name="reader",
        cluster=["manage_own_api_key"],
        indices=[{"names": ["logs-*"], "privileges": ["read"]}],
    )
    es.security.put_user(username="owner", password="owner-password", roles=["reader"])
    owner = es.options(basic_auth=("owner", "owner-password"))
    key = owner.security.create_api_key(
        name="k",
        role_descriptors={"r": {"indices": [{"names": ["logs-a"], "privileges": ["read"]}]}},
    )
    es.security.put_privileges(privileges={"app": {"read": {"actions": ["data:read/*"]}}})
    snapshot = json.loads(json.dumps(sandbox.state.security.to_json()))

    restored = SandboxState(version="8.17.4")
    restored.security.load_json(snapshot)
    principal = authenticate(restored, _request(key["encoded"]), sandbox.now_ms())
    assert principal.username == "owner"
    assert principal.api_key is not None
    assert principal.api_key.id == key["id"]
    assert principal.permission.allows_index_action("indices:data/read/search", "logs-a")
    assert not principal.permission.allows_index_action("indices:data/read/search", "logs-b")
    assert restored.security.app_privilege_list()[0].actions == ["data:read/*"]
    assert restored.security.authenticate_user("owner", "owner-password") is not None
    assert restored.security.key_index.get(key["id"]) is not None


def test_restored_state_keeps_invalidation_and_sequence(
    sandbox: Sandbox, es: Elasticsearch
) -> None:
    first = es.security.create_api_key(name="a")
    es.security.invalidate_api_key(ids=[first["id"]])
    restored = SecurityState()
    restored.load_json(json.loads(json.dumps(sandbox.state.security.to_json())))
    assert restored.api_keys[first["id"]].invalidated is True
    assert restored.next_seq() > sandbox.state.security.api_keys[first["id"]].seq
    with pytest.raises(EsError) as exc:
        authenticate(
            SandboxState(version="8.17.4", security=restored), _request(first["encoded"]), NOW
        )
    assert exc.value.metadata["additional_unsuccessful_credentials"].endswith(
        "has been invalidated"
    )


def test_load_keeps_bootstrap_users(sandbox: Sandbox) -> None:
    security = SecurityState()
    security.add_bootstrap_user("boot", "boot-password", ["superuser"])
    security.load_json({"users": []})
    assert security.authenticate_user("boot", "boot-password") is not None


def test_encoded_credential_is_standard_base64(es: Elasticsearch) -> None:
    key = es.security.create_api_key(name="k")
    assert (
        base64.b64decode(key["encoded"], validate=True) == f"{key['id']}:{key['api_key']}".encode()
    )
