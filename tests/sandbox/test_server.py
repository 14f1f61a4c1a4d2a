"""The sandbox over real HTTP: wire behaviour, bad input, control API, faults, ingestion."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import (
    ApiError,
    AuthenticationException,
    AuthorizationException,
    BadRequestError,
    ConnectionError,
    Elasticsearch,
    NotFoundError,
)
from freezegun import freeze_time

from rotator.sandbox import Sandbox
from tests.sandbox.conftest import ADMIN

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean(sandbox: Sandbox) -> Iterator[None]:
    sandbox.reset()
    sandbox.clear_faults()
    yield
    sandbox.clear_faults()


def admin(sandbox: Sandbox, **kw: Any) -> Elasticsearch:
    return Elasticsearch(sandbox.url, basic_auth=ADMIN, request_timeout=10, **kw)


def raw(
    sandbox: Sandbox,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = ADMIN,
) -> tuple[int, dict[str, str], Any]:
    host, port = sandbox.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    all_headers = dict(headers or {})
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        all_headers.setdefault("Authorization", f"Basic {token}")
    if body is not None:
        all_headers.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=body, headers=all_headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    parsed = json.loads(data) if data else None
    return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed


# --- wire behaviour ------------------------------------------------------------------------------


def test_root_reports_the_emulated_version_and_product_header(sandbox: Sandbox) -> None:
    info = admin(sandbox).info()
    assert info["version"]["number"] == "8.17.4"
    assert info.meta.headers["x-elastic-product"] == "Elasticsearch"


def test_every_response_carries_the_product_header(sandbox: Sandbox) -> None:
    for path in ("/", "/nope/nope/nope", "/_security/_authenticate"):
        _status, headers, _body = raw(sandbox, "GET", path)
        assert headers["x-elastic-product"] == "Elasticsearch"


def test_an_8x_sandbox_rejects_compatible_with_9(sandbox: Sandbox) -> None:
    status, _h, body = raw(
        sandbox,
        "GET",
        "/",
        headers={"Accept": "application/vnd.elasticsearch+json; compatible-with=9"},
    )
    assert status == 400
    assert body["error"]["type"] == "media_type_header_exception"
    assert body["error"]["reason"] == "Invalid media-type value on headers [Content-Type, Accept]"
    assert body["error"]["caused_by"]["reason"].startswith(
        "Accept version must be either version 8 or 7, but found 9."
    )


def test_a_9x_sandbox_accepts_the_8x_client() -> None:
    with Sandbox.start(version="9.1.0", users=[(*ADMIN, "superuser")]) as nine:
        assert admin(nine).info()["version"]["number"] == "9.1.0"


def test_unknown_endpoint_and_wrong_method(sandbox: Sandbox) -> None:
    status, _h, body = raw(sandbox, "GET", "/_security/nothing/here/at/all")
    assert status == 400
    assert body == {
        "error": "no handler found for uri [/_security/nothing/here/at/all] and method [GET]",
        "status": 400,
    }
    status, _h, body = raw(sandbox, "PATCH", "/_sandbox/reset")
    assert status == 405
    assert "Incorrect HTTP method for uri [/_sandbox/reset] and method [PATCH]" in body["error"]


def test_unknown_query_parameters_are_refused(sandbox: Sandbox) -> None:
    status, _h, body = raw(sandbox, "GET", "/_security/api_key?ownr=true")
    assert status == 400
    assert body["error"]["type"] == "illegal_argument_exception"
    assert body["error"]["reason"] == (
        "request [/_security/api_key] contains unrecognized parameter: [ownr] -> did you mean "
        "[owner]?"
    )
    status, _h, body = raw(sandbox, "GET", "/_security/_authenticate?zzz=1&yyy=2")
    assert body["error"]["reason"] == (
        "request [/_security/_authenticate] contains unrecognized parameters: [yyy], [zzz]"
    )
    status, _h, _b = raw(sandbox, "GET", "/_security/api_key?owner=true&pretty&filter_path=x")
    assert status == 200


def test_malformed_json_is_a_400_not_a_traceback(sandbox: Sandbox) -> None:
    status, _h, body = raw(sandbox, "PUT", "/_security/api_key", body=b'{"name": ')
    assert status == 400
    assert body["error"]["root_cause"][0]["type"] == body["error"]["type"]
    assert body["status"] == 400


def test_missing_credentials_get_401_with_www_authenticate(sandbox: Sandbox) -> None:
    status, headers, body = raw(sandbox, "GET", "/_security/_authenticate", auth=None)
    assert status == 401
    assert body["error"]["type"] == "security_exception"
    assert "www-authenticate" in headers


def test_bad_base64_api_key_header_is_401(sandbox: Sandbox) -> None:
    status, _h, body = raw(
        sandbox, "GET", "/_security/_authenticate", headers={"Authorization": "ApiKey !!!notbase64"}
    )
    assert status == 401
    assert body["error"]["type"] == "security_exception"


# --- control API ---------------------------------------------------------------------------------


def test_reset_keeps_bootstrap_users_and_drops_the_rest(sandbox: Sandbox) -> None:
    es = admin(sandbox)
    es.security.put_user(username="u1", password="password-1", roles=[])
    key = es.security.create_api_key(name="k")
    es.perform_request("POST", "/_sandbox/reset", headers={"accept": "application/json"})
    with pytest.raises(NotFoundError):
        es.security.get_user(username="u1")
    with pytest.raises(NotFoundError):
        es.security.get_api_key(id=key["id"])
    assert es.security.authenticate()["username"] == ADMIN[0]


def test_control_api_is_for_superusers_only(sandbox: Sandbox) -> None:
    es = admin(sandbox)
    es.security.put_user(username="plain", password="password-1", roles=[])
    status, _h, _body = raw(sandbox, "POST", "/_sandbox/reset", auth=("plain", "password-1"))
    assert status == 403
    key = es.security.create_api_key(name="k")
    status, _h, _b = raw(
        sandbox,
        "GET",
        "/_sandbox/clock",
        auth=None,
        headers={"Authorization": f"ApiKey {key['encoded']}"},
    )
    assert status == 403


def test_clock_can_be_read_set_and_advanced(sandbox: Sandbox) -> None:
    status, _h, body = raw(sandbox, "POST", "/_sandbox/clock", body=b'{"now": 1700000000000}')
    assert status == 200
    assert abs(body["now"] - 1_700_000_000_000) < 1000
    status, _h, body = raw(sandbox, "POST", "/_sandbox/clock", body=b'{"advance": "10d"}')
    assert abs(body["now"] - (1_700_000_000_000 + 10 * 86_400_000)) < 1000
    status, _h, body = raw(sandbox, "POST", "/_sandbox/clock", body=b'{"advance": "ten days"}')
    assert status == 400
    sandbox.state.clock.reset()


def test_keys_expire_when_the_clock_moves(sandbox: Sandbox) -> None:
    key = admin(sandbox).security.create_api_key(name="short", expiration="1h")
    as_key = Elasticsearch(sandbox.url, api_key=key["encoded"])
    assert as_key.security.authenticate()["api_key"]["id"] == key["id"]
    sandbox.advance(timedelta(hours=1, seconds=1))
    with pytest.raises(AuthenticationException) as expired:
        as_key.security.authenticate()
    assert "api key is expired" in json.dumps(expired.value.body)
    sandbox.state.clock.reset()


def test_in_process_sandbox_follows_freezegun(sandbox: Sandbox) -> None:
    with freeze_time(datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)):
        key = admin(sandbox).security.create_api_key(name="frozen", expiration="1d")
    assert key["expiration"] == int(datetime(2031, 5, 7, 7, 8, 9, tzinfo=UTC).timestamp() * 1000)


def test_expired_keys_disappear_after_the_retention_period(sandbox: Sandbox) -> None:
    es = admin(sandbox)
    key = es.security.create_api_key(name="gone-soon", expiration="1d")
    sandbox.advance(timedelta(days=1, hours=1))
    assert es.security.get_api_key(id=key["id"])["api_keys"][0]["id"] == key["id"]
    sandbox.advance(timedelta(days=7))
    with pytest.raises(NotFoundError):
        es.security.get_api_key(id=key["id"])
    sandbox.state.clock.reset()


def test_retention_period_is_settable(sandbox: Sandbox) -> None:
    es = admin(sandbox)
    es.cluster.put_settings(
        persistent={"xpack.security.authc.api_key.delete.retention_period": "1d"}
    )
    key = es.security.create_api_key(name="short-retention", expiration="1h")
    sandbox.advance(timedelta(hours=1, minutes=30))
    assert es.security.get_api_key(id=key["id"])["api_keys"][0]["id"] == key["id"]
    sandbox.advance(timedelta(days=1))
    with pytest.raises(NotFoundError):
        es.security.get_api_key(id=key["id"])
    with pytest.raises(BadRequestError):
        es.cluster.put_settings(persistent={"indices.recovery.max_bytes_per_sec": "50mb"})
    es.cluster.put_settings(
        persistent={"xpack.security.authc.api_key.delete.retention_period": "7d"}
    )
    sandbox.state.clock.reset()


def test_stats_count_requests_by_route_and_status(sandbox: Sandbox) -> None:
    es = admin(sandbox)
    sandbox.clear_stats()
    es.security.create_api_key(name="a")
    es.security.create_api_key(name="b")
    with pytest.raises(NotFoundError):
        es.security.get_api_key(id="missing-id-000000000")
    rows = {(r["method"], r["route"], r["status"]): r["count"] for r in sandbox.stats()["requests"]}
    assert rows[("PUT", "/_security/api_key", 200)] == 2
    assert rows[("GET", "/_security/api_key", 404)] == 1
    _status, _h, body = raw(sandbox, "GET", "/_sandbox/stats")
    assert body["total"] == 3  # the stats request itself is counted after it answers
    raw(sandbox, "DELETE", "/_sandbox/stats")
    assert sandbox.stats()["total"] == 1


# --- faults --------------------------------------------------------------------------------------


def test_fault_status_429_with_retry_after_for_the_next_n_requests(sandbox: Sandbox) -> None:
    status, _h, _b = raw(
        sandbox,
        "POST",
        "/_sandbox/faults",
        body=json.dumps(
            [
                {
                    "method": "PUT",
                    "path": "/_security/api_key",
                    "times": 2,
                    "status": 429,
                    "retry_after": 7,
                }
            ]
        ).encode(),
    )
    assert status == 200
    es = admin(sandbox, max_retries=0)
    for _ in range(2):
        with pytest.raises(ApiError) as rejected:
            es.security.create_api_key(name="x")
        assert rejected.value.status_code == 429
        assert rejected.value.meta.headers["retry-after"] == "7"
        assert rejected.value.error == "es_rejected_execution_exception"
    assert es.security.create_api_key(name="x")["name"] == "x"


def test_fault_probability_is_repeatable_with_a_seed(sandbox: Sandbox) -> None:
    def outcomes() -> list[int]:
        sandbox.clear_faults()
        sandbox.add_faults(
            [{"path": "/_security/_authenticate", "probability": 0.5, "seed": 42, "status": 503}]
        )
        codes = []
        for _ in range(20):
            status, _h, _b = raw(sandbox, "GET", "/_security/_authenticate")
            codes.append(status)
        return codes

    first = outcomes()
    assert first == outcomes()
    assert set(first) == {200, 503}


def test_fault_drop_and_truncate_are_connection_errors(sandbox: Sandbox) -> None:
    es = admin(sandbox, max_retries=0)
    sandbox.add_faults([{"path": "/_security/_authenticate", "times": 1, "drop": True}])
    with pytest.raises(ConnectionError):
        es.security.authenticate()
    sandbox.add_faults([{"path": "/_security/_authenticate", "times": 1, "truncate": True}])
    with pytest.raises((ConnectionError, ApiError, ValueError)):
        es.security.authenticate()
    assert es.security.authenticate()["username"] == ADMIN[0]


def test_bad_fault_rules_are_refused(sandbox: Sandbox) -> None:
    for rules in (
        [],
        [{"path": "/x"}],
        [{"status": 200}],
        [{"status": 500, "times": -1}],
        [{"status": 500, "colour": "red"}],
    ):
        status, _h, body = raw(sandbox, "POST", "/_sandbox/faults", body=json.dumps(rules).encode())
        assert status == 400, rules
        assert body["error"]["type"] == "illegal_argument_exception"


# --- ingestion -----------------------------------------------------------------------------------


def shipper_key(sandbox: Sandbox, index: str) -> str:
    es = admin(sandbox)
    es.security.put_role(
        name="shipper",
        cluster=["manage_own_api_key"],
        indices=[{"names": ["logs-*"], "privileges": ["all"]}],
    )
    es.security.put_user(username="shipper-owner", password="password-1", roles=["shipper"])
    owner = Elasticsearch(sandbox.url, basic_auth=("shipper-owner", "password-1"))
    key = owner.security.create_api_key(
        name="filebeat",
        role_descriptors={
            "ship": {
                "indices": [{"names": [index], "privileges": ["create_doc", "auto_configure"]}]
            }
        },
    )
    return str(key["encoded"])


def test_scoped_key_ships_to_its_data_stream_only(sandbox: Sandbox) -> None:
    encoded = shipper_key(sandbox, "logs-app-default")
    es = Elasticsearch(sandbox.url, api_key=encoded)
    created = es.index(index="logs-app-default", document={"message": "one"})
    assert created["result"] == "created"
    assert created["_index"].startswith(".ds-logs-app-default-")
    with pytest.raises(AuthorizationException) as refused:
        es.index(index="logs-other-default", document={"message": "two"})
    assert "is unauthorized for API key id" in str(refused.value.body)
    with pytest.raises(BadRequestError):
        es.index(index="logs-app-default", id="1", document={"m": 1})  # op_type index on a stream
    bulk = es.bulk(
        operations=[
            {"create": {"_index": "logs-app-default"}},
            {"message": "b1"},
            {"create": {"_index": "logs-denied-default"}},
            {"message": "b2"},
        ]
    )
    assert bulk["errors"] is True
    assert [next(iter(i.values()))["status"] for i in bulk["items"]] == [201, 403]
    assert admin(sandbox).count(index="logs-app-default")["count"] == 2


def test_create_with_id_conflicts_on_the_second_write(sandbox: Sandbox) -> None:
    es = admin(sandbox)
    es.create(index="plain-index", id="a", document={"x": 1})
    with pytest.raises(ApiError) as conflict:
        es.create(index="plain-index", id="a", document={"x": 1})
    assert conflict.value.status_code == 409
    with pytest.raises(NotFoundError):
        es.count(index="never-written")


# --- the serve command ---------------------------------------------------------------------------


def test_serve_prints_its_url_first_and_keeps_state_across_restarts(tmp_path: Path) -> None:
    state = tmp_path / "state.json"

    def serve() -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rotator",
                "sandbox",
                "serve",
                "--port",
                "0",
                "--user",
                "elastic:elastic-password:superuser",
                "--state",
                str(state),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.startswith("listening on http://127.0.0.1:"), first
        return proc, first.removeprefix("listening on ")

    proc, url = serve()
    es = Elasticsearch(url, basic_auth=("elastic", "elastic-password"))
    key = es.security.create_api_key(name="survivor")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert state.is_file()
    proc, url = serve()
    try:
        again = Elasticsearch(url, api_key=key["encoded"])
        assert again.security.authenticate()["api_key"]["id"] == key["id"]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
