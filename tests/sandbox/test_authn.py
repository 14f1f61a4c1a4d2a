"""Authentication over HTTP: each 401 cause with its exact body and challenge, run-as, 403 texts."""

from __future__ import annotations

import base64
import http.client
import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from elasticsearch import Elasticsearch

from rotator.sandbox import Sandbox
from rotator.sandbox.authn import java_base64_decode, parse_api_key_credential
from tests.sandbox.conftest import ADMIN

pytestmark = pytest.mark.usefixtures("clean")
CHALLENGES = ['Basic realm="security" charset="UTF-8"', 'Bearer realm="security"', "ApiKey"]
UNSUCCESSFUL = (
    "unable to authenticate with provided credentials and anonymous access is not allowed for "
    "this request"
)


def raw(
    sandbox: Sandbox, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, Any, list[str]]:
    """Send a request without the client; return status, JSON body and WWW-Authenticate values."""
    parts = urlsplit(sandbox.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    connection.request(method, path, headers=headers or {})
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    challenges = response.headers.get_all("WWW-Authenticate") or []
    return response.status, json.loads(payload) if payload else None, challenges


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def api_key_header(value: str) -> dict[str, str]:
    return {"Authorization": f"ApiKey {value}"}


def admin(sandbox: Sandbox) -> Elasticsearch:
    return Elasticsearch(sandbox.url, basic_auth=ADMIN, request_timeout=10)


def create_key(sandbox: Sandbox, **body: Any) -> dict[str, Any]:
    return dict(admin(sandbox).security.create_api_key(name=body.pop("name", "k"), **body))


def assert_unsuccessful(status: int, body: Any, challenges: list[str], message: str) -> None:
    assert status == 401
    error = body["error"]
    assert error["type"] == "security_exception"
    assert error["reason"] == UNSUCCESSFUL
    assert error["additional_unsuccessful_credentials"] == message
    assert error["header"] == {"WWW-Authenticate": CHALLENGES}
    assert error["root_cause"][0]["additional_unsuccessful_credentials"] == message
    assert challenges == CHALLENGES


# --- missing and basic credentials ----------------------------------------------------------------


def test_no_credentials_gives_missing_credentials_with_the_uri(sandbox: Sandbox) -> None:
    status, body, challenges = raw(sandbox, "GET", "/_security/_authenticate?pretty")
    assert status == 401
    assert body["error"]["reason"] == (
        "missing authentication credentials for REST request [/_security/_authenticate?pretty]"
    )
    assert challenges == CHALLENGES


def test_unknown_scheme_counts_as_missing_credentials(sandbox: Sandbox) -> None:
    status, body, _ = raw(sandbox, "GET", "/_security/_authenticate", {"Authorization": "Foo x"})
    assert status == 401
    assert body["error"]["reason"].startswith("missing authentication credentials")


def test_wrong_password_names_the_user_and_uri(sandbox: Sandbox) -> None:
    status, body, _ = raw(sandbox, "GET", "/_security/_authenticate", basic(ADMIN[0], "nope"))
    assert status == 401
    assert body["error"]["reason"] == (
        "unable to authenticate user [x_pack_rest_user] for REST request [/_security/_authenticate]"
    )


def test_basic_header_that_is_not_base64(sandbox: Sandbox) -> None:
    headers = {"Authorization": "Basic a-b"}
    status, body, _ = raw(sandbox, "GET", "/_security/_authenticate", headers)
    assert status == 401
    assert body["error"]["reason"] == "invalid basic authentication header encoding"
    assert body["error"]["caused_by"]["reason"] == "Illegal base64 character 2d"


def test_basic_header_without_colon(sandbox: Sandbox) -> None:
    headers = {"Authorization": "Basic " + base64.b64encode(b"nocolon").decode()}
    status, body, _ = raw(sandbox, "GET", "/_security/_authenticate", headers)
    assert (status, body["error"]["reason"]) == (401, "invalid basic authentication header value")


def test_scheme_is_case_insensitive(sandbox: Sandbox) -> None:
    token = basic(*ADMIN)["Authorization"].split(" ", 1)[1]
    status, body, _ = raw(
        sandbox, "GET", "/_security/_authenticate", {"Authorization": f"bAsIc {token}"}
    )
    assert (status, body["username"]) == (200, ADMIN[0])


# --- API key causes ---------------------------------------------------------------------------------


def test_api_key_not_base64(sandbox: Sandbox) -> None:
    result = raw(sandbox, "GET", "/_security/_authenticate", api_key_header("abc-def"))
    assert_unsuccessful(*result, "API key: Illegal base64 character 2d")


def test_api_key_without_colon(sandbox: Sandbox) -> None:
    value = base64.b64encode(b"nocolon").decode()
    result = raw(sandbox, "GET", "/_security/_authenticate", api_key_header(value))
    assert_unsuccessful(*result, "API key: invalid ApiKey value")


def test_api_key_colon_first_is_invalid(sandbox: Sandbox) -> None:
    value = base64.b64encode(b":secret").decode()
    result = raw(sandbox, "GET", "/_security/_authenticate", api_key_header(value))
    assert_unsuccessful(*result, "API key: invalid ApiKey value")


def test_unknown_api_key_id(sandbox: Sandbox) -> None:
    value = base64.b64encode(b"no-such-id:secret").decode()
    result = raw(sandbox, "GET", "/_security/_authenticate", api_key_header(value))
    assert_unsuccessful(*result, "API key: unable to find apikey with id no-such-id")


def test_wrong_secret(sandbox: Sandbox) -> None:
    key = create_key(sandbox)
    value = base64.b64encode(f"{key['id']}:wrong-secret".encode()).decode()
    result = raw(sandbox, "GET", "/_security/_authenticate", api_key_header(value))
    assert_unsuccessful(*result, f"API key: invalid credentials for API key [{key['id']}]")


def test_invalidated_key(sandbox: Sandbox) -> None:
    key = create_key(sandbox)
    admin(sandbox).security.invalidate_api_key(ids=[key["id"]])
    result = raw(sandbox, "GET", "/_security/_authenticate", api_key_header(key["encoded"]))
    assert_unsuccessful(*result, f"API key: api key [{key['id']}] has been invalidated")


def test_expired_key(sandbox: Sandbox) -> None:
    key = create_key(sandbox, expiration="1h")
    sandbox.advance(timedelta(hours=1))
    result = raw(sandbox, "GET", "/_security/_authenticate", api_key_header(key["encoded"]))
    assert_unsuccessful(*result, "API key: api key is expired")


def test_key_works_until_just_before_expiration(sandbox: Sandbox) -> None:
    key = create_key(sandbox, expiration="1h")
    sandbox.advance(timedelta(minutes=59))
    status, body, _ = raw(
        sandbox, "GET", "/_security/_authenticate", api_key_header(key["encoded"])
    )
    assert (status, body["api_key"]) == (200, {"id": key["id"], "name": "k"})


def test_cross_cluster_key_on_rest_is_a_terminal_401(sandbox: Sandbox) -> None:
    key = admin(sandbox).security.create_cross_cluster_api_key(
        name="cc", access={"search": [{"names": ["logs*"]}]}
    )
    status, body, challenges = raw(
        sandbox, "GET", "/_security/_authenticate", api_key_header(key["encoded"])
    )
    assert status == 401
    assert body["error"]["reason"] == (
        f"authentication expected API key type of [rest], but API key [{key['id']}] has type "
        "[cross_cluster]"
    )
    assert "additional_unsuccessful_credentials" not in body["error"]
    assert challenges == CHALLENGES


def test_api_key_authenticate_body_in_elasticsearch_order(sandbox: Sandbox) -> None:
    key = create_key(sandbox, name="my-key")
    status, body, _ = raw(
        sandbox, "GET", "/_security/_authenticate", api_key_header(key["encoded"])
    )
    assert status == 200
    assert list(body) == [
        "username",
        "roles",
        "full_name",
        "email",
        "metadata",
        "enabled",
        "authentication_realm",
        "lookup_realm",
        "authentication_type",
        "api_key",
    ]
    assert body["username"] == ADMIN[0]
    assert body["roles"] == []
    assert body["authentication_realm"] == {"name": "_es_api_key", "type": "_es_api_key"}
    assert body["lookup_realm"] == {"name": "_es_api_key", "type": "_es_api_key"}
    assert body["authentication_type"] == "api_key"
    assert body["api_key"] == {"id": key["id"], "name": "my-key"}


# --- bearer tokens ----------------------------------------------------------------------------------


def test_unknown_bearer_token(sandbox: Sandbox) -> None:
    result = raw(sandbox, "GET", "/_security/_authenticate", {"Authorization": "Bearer nope"})
    assert_unsuccessful(*result, "oauth2 token: invalid token")


def test_expired_bearer_token_has_its_own_challenge(sandbox: Sandbox) -> None:
    token = admin(sandbox).security.get_token(grant_type="client_credentials")["access_token"]
    sandbox.advance(timedelta(minutes=20))
    status, body, challenges = raw(
        sandbox, "GET", "/_security/_authenticate", {"Authorization": f"Bearer {token}"}
    )
    expected = 'Bearer realm="security", error="invalid_token", error_description="The access token expired"'
    assert (status, body["error"]["reason"], challenges) == (401, "token expired", [expected])


def test_bearer_token_authenticates_as_its_user(sandbox: Sandbox) -> None:
    token = admin(sandbox).security.get_token(grant_type="client_credentials")["access_token"]
    status, body, _ = raw(
        sandbox, "GET", "/_security/_authenticate", {"Authorization": f"Bearer {token}"}
    )
    assert status == 200
    assert (body["username"], body["authentication_type"]) == (ADMIN[0], "token")


# --- run-as -----------------------------------------------------------------------------------------


def test_run_as_allowed_shows_both_realms(sandbox: Sandbox) -> None:
    es = admin(sandbox)
    es.security.put_user(username="target", password="target-pass", roles=[])
    headers = {**basic(*ADMIN), "es-security-runas-user": "target"}
    status, body, _ = raw(sandbox, "GET", "/_security/_authenticate", headers)
    assert status == 200
    assert body["username"] == "target"
    assert body["authentication_realm"] == {"name": "default_file", "type": "file"}
    assert body["lookup_realm"] == {"name": "default_native", "type": "native"}


def test_run_as_without_privilege_is_403(sandbox: Sandbox) -> None:
    es = admin(sandbox)
    es.security.put_role(name="plain", cluster=["monitor"])
    es.security.put_user(username="u1", password="u1-password", roles=["plain"])
    es.security.put_user(username="u2", password="u2-password", roles=[])
    headers = {**basic("u1", "u1-password"), "es-security-runas-user": "u2"}
    status, body, _ = raw(sandbox, "GET", "/_security/_authenticate", headers)
    assert status == 403
    assert body["error"]["reason"] == (
        "action [cluster:admin/xpack/security/user/authenticate] is unauthorized for user [u1] "
        "with effective roles [plain], because user [u1] is unauthorized to run as [u2]"
    )


def test_run_as_unknown_user_is_403_even_for_superuser(sandbox: Sandbox) -> None:
    headers = {**basic(*ADMIN), "es-security-runas-user": "ghost"}
    status, body, _ = raw(sandbox, "GET", "/_security/_authenticate", headers)
    assert status == 403
    assert body["error"]["reason"].endswith("is unauthorized to run as [ghost]")


def test_run_as_user_denied_action_names_both_users(sandbox: Sandbox) -> None:
    es = admin(sandbox)
    es.security.put_user(username="target", password="target-pass", roles=["missing_role"])
    headers = {**basic(*ADMIN), "es-security-runas-user": "target"}
    status, body, _ = raw(sandbox, "GET", "/_security/user", headers)
    assert status == 403
    assert body["error"]["reason"] == (
        "action [cluster:admin/xpack/security/user/get] is unauthorized for user "
        "[x_pack_rest_user] run as [target] with effective roles [] (assigned roles "
        "[missing_role] were not found), this action is granted by the cluster privileges "
        "[read_security,manage_security,all]"
    )


# --- 403 wording for API keys -------------------------------------------------------------------------


def test_api_key_denied_action_names_the_key_and_owner(sandbox: Sandbox) -> None:
    key = create_key(sandbox, role_descriptors={"r": {"cluster": ["monitor"]}})
    status, body, _ = raw(sandbox, "GET", "/_security/user", api_key_header(key["encoded"]))
    assert status == 403
    assert body["error"]["reason"] == (
        f"action [cluster:admin/xpack/security/user/get] is unauthorized for API key id "
        f"[{key['id']}] of user [x_pack_rest_user], this action is granted by the cluster "
        "privileges [read_security,manage_security,all]"
    )


# --- the decoders ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("QQ", b"A"),
        ("QQ==", b"A"),
        ("QUI", b"AB"),
        ("QUI=", b"AB"),
        ("QUJD", b"ABC"),
        ("", b""),
    ],
)
def test_java_decoder_accepts_optional_padding(text: str, expected: bytes) -> None:
    assert java_base64_decode(text.encode()) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Q", "Input byte[] should at least have 2 bytes for base64 bytes"),
        ("QQ=", "Input byte array has wrong 4-byte ending unit"),
        ("QUJD=", "Input byte array has wrong 4-byte ending unit"),
        ("QUJDR", "Last unit does not have enough valid bits"),
        ("QQ==QQ", "Input byte array has incorrect ending byte at 4"),
        ("ab_c", "Illegal base64 character 5f"),
        ("ab c", "Illegal base64 character 20"),
        ("abé", "Illegal base64 character -3d"),
    ],
)
def test_java_decoder_errors(text: str, message: str) -> None:
    with pytest.raises(
        ValueError, match="^" + message.replace("[", r"\[").replace("]", r"\]") + "$"
    ):
        java_base64_decode(text.encode())


def test_credential_splits_at_the_first_colon() -> None:
    value = base64.b64encode(b"id:se:cret").decode()
    assert parse_api_key_credential(value) == ("id", "se:cret")
