"""The webhook sink against a local receiver: signature, retries, refusals, redirects, TLS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rotator.clock import ManualClock
from rotator.config import WebhookSink
from rotator.delivery import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SinkFailed,
    WebhookDelivery,
    build_sink,
)
from rotator.delivery.webhook import tls_context
from rotator.errors import DeliveryFailed
from rotator.log import REDACTED
from rotator.ports import Credential

KEY_ID = "VuaCfGcBCdbkQm-e5aOx"
SECRET = "ui2lp2axTNmsyakw9tvNnw"
ENCODED = base64.b64encode(f"{KEY_ID}:{SECRET}".encode()).decode()
EXPIRATION = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
HMAC_SECRET = "shared-signing-secret-for-tests"
SECRET_ENV = "ROTATOR_TEST_WEBHOOK_SECRET"


@dataclass(frozen=True)
class Answer:
    """One scripted answer of the receiver."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0
    echo: bool = False  # answer with the request body (a careless receiver)
    reason: str | None = None  # a reason phrase other than the standard one


@dataclass(frozen=True)
class Request:
    """One request the receiver got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class QuietServer(ThreadingHTTPServer):
    """A threaded server that keeps failed TLS handshakes out of the test output."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        return


class Receiver:
    """A plain-HTTP receiver on 127.0.0.1 that records requests and plays scripted answers."""

    def __init__(self, answers: list[Answer], tls: ssl.SSLContext | None = None) -> None:
        self.answers = list(answers)
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self.server = QuietServer(("127.0.0.1", 0), self._handler())
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/web?team=a"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer = receiver.record(Request("POST", self.path, dict(self.headers), body))
                threading.Event().wait(answer.delay)
                payload = body if answer.echo else answer.body
                self.send_response(answer.status, answer.reason)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler

    def record(self, request: Request) -> Answer:
        with self._lock:
            self.requests.append(request)
            return self.answers.pop(0) if self.answers else Answer()


@pytest.fixture
def receiver_factory() -> Iterator[Any]:
    started: list[Receiver] = []

    def start(*answers: Answer, tls: ssl.SSLContext | None = None) -> Receiver:
        receiver = Receiver(list(answers), tls)
        receiver.thread.start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.server.shutdown()
        receiver.server.server_close()


@pytest.fixture(autouse=True)
def signing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, HMAC_SECRET)


def credential(source: str = "web", expiration: datetime | None = EXPIRATION) -> Credential:
    return Credential(
        id=KEY_ID,
        name="rotator-web-3",
        api_key=SECRET,
        encoded=ENCODED,
        source=source,
        expiration=expiration,
    )


def sink(url: str, clock: ManualClock | None = None, **settings: Any) -> WebhookDelivery:
    settings.setdefault("allow_insecure", True)
    settings.setdefault("hmac_secret_env", SECRET_ENV)
    config = WebhookSink(type="webhook", url=url, **settings)
    return WebhookDelivery(config, clock=clock or ManualClock(NOW), source="web")


def assert_no_secret(exc: BaseException) -> None:
    cred = credential()
    assert cred.api_key not in str(exc)
    assert cred.encoded not in str(exc)


def verify(request: Request, secret: str = HMAC_SECRET) -> bool:
    """What a receiver does: recompute the signature over ``<timestamp>.<body>``."""
    timestamp = request.headers[TIMESTAMP_HEADER]
    signed = timestamp.encode() + b"." + request.body
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request.headers[SIGNATURE_HEADER])


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# --- the request ----------------------------------------------------------------------------------


def test_delivers_the_documented_body_and_headers(receiver_factory: Any) -> None:
    receiver = receiver_factory(Answer(204))
    receipt = sink(receiver.url).deliver(credential())
    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/hooks/web?team=a")
    assert json.loads(request.body) == {
        "id": KEY_ID,
        "name": "rotator-web-3",
        "api_key": SECRET,
        "encoded": ENCODED,
        "expiration": "2026-03-04T05:06:07Z",
        "source": "web",
    }
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers[TIMESTAMP_HEADER] == str(int(NOW.timestamp()))
    assert receipt.sink == "webhook"
    assert receipt.target == receiver.url.split("?")[0]
    assert SECRET not in repr(receipt)


def test_signature_verifies_with_the_shared_secret(receiver_factory: Any) -> None:
    receiver = receiver_factory(Answer(200))
    sink(receiver.url).deliver(credential())
    [request] = receiver.requests
    assert verify(request)
    assert not verify(request, secret="another-secret")


def test_signature_covers_the_timestamp(receiver_factory: Any) -> None:
    receiver = receiver_factory(Answer(200))
    sink(receiver.url).deliver(credential())
    [request] = receiver.requests
    later = str(int(request.headers[TIMESTAMP_HEADER]) + 600)
    replayed = Request(
        request.method, request.path, {**request.headers, TIMESTAMP_HEADER: later}, request.body
    )
    assert not verify(replayed)


def test_secret_from_a_file_is_stripped(receiver_factory: Any, tmp_path: Path) -> None:
    secret_file = tmp_path / "hmac"
    secret_file.write_text(f"{HMAC_SECRET}\n")
    receiver = receiver_factory(Answer(200))
    sink(receiver.url, hmac_secret_env=None, hmac_secret_file=str(secret_file)).deliver(
        credential()
    )
    assert verify(receiver.requests[0])


def test_expiration_is_null_for_a_key_that_never_expires(receiver_factory: Any) -> None:
    receiver = receiver_factory(Answer(200))
    sink(receiver.url).deliver(credential(expiration=None))
    assert json.loads(receiver.requests[0].body)["expiration"] is None


def test_missing_signing_secret_fails_before_sending(
    receiver_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV)
    receiver = receiver_factory()
    with pytest.raises(DeliveryFailed, match=SECRET_ENV) as caught:
        sink(receiver.url).deliver(credential())
    assert receiver.requests == []
    assert_no_secret(caught.value)


# --- retries --------------------------------------------------------------------------------------


def test_retries_on_503_then_succeeds(receiver_factory: Any) -> None:
    clock = ManualClock(NOW)
    receiver = receiver_factory(Answer(503), Answer(503), Answer(200))
    receipt = sink(receiver.url, clock, retries=3).deliver(credential())
    assert len(receiver.requests) == 3
    assert clock.monotonic() == 3.0  # waited 1s, then 2s
    assert receipt.detail == "HTTP 200 on attempt 3 of 4"
    # each attempt is signed afresh with its own time
    stamps = [int(r.headers[TIMESTAMP_HEADER]) - int(NOW.timestamp()) for r in receiver.requests]
    assert stamps == [0, 1, 3]
    assert all(verify(r) for r in receiver.requests)


def test_429_honours_retry_after(receiver_factory: Any) -> None:
    clock = ManualClock(NOW)
    receiver = receiver_factory(Answer(429, {"Retry-After": "7"}), Answer(200))
    sink(receiver.url, clock).deliver(credential())
    assert len(receiver.requests) == 2
    assert clock.monotonic() == 7.0


def test_gives_up_after_the_configured_retries(receiver_factory: Any) -> None:
    clock = ManualClock(NOW)
    receiver = receiver_factory(*[Answer(502, echo=True)] * 4)
    with pytest.raises(DeliveryFailed, match=r"HTTP 502 .*after 3 attempt") as caught:
        sink(receiver.url, clock, retries=2).deliver(credential())
    assert len(receiver.requests) == 3
    assert clock.monotonic() == 3.0
    assert_no_secret(caught.value)


def test_zero_retries_means_one_attempt(receiver_factory: Any) -> None:
    receiver = receiver_factory(Answer(503), Answer(200))
    with pytest.raises(DeliveryFailed, match="after 1 attempt") as caught:
        sink(receiver.url, retries=0).deliver(credential())
    assert len(receiver.requests) == 1
    assert_no_secret(caught.value)


def test_connection_refused_is_retried_then_fails() -> None:
    clock = ManualClock(NOW)
    url = f"http://127.0.0.1:{unused_port()}/hook"
    with pytest.raises(DeliveryFailed, match=r"connection failed.*after 3 attempt") as caught:
        sink(url, clock, retries=2).deliver(credential())
    assert clock.monotonic() == 3.0
    assert_no_secret(caught.value)


def test_timeout_is_retried(receiver_factory: Any) -> None:
    receiver = receiver_factory(Answer(200, delay=1.5), Answer(200))
    receipt = sink(receiver.url, timeout=timedelta(seconds=0.3)).deliver(credential())
    assert receipt.detail == "HTTP 200 on attempt 2 of 4"


# --- refusals -------------------------------------------------------------------------------------


def test_400_fails_at_once_with_a_scrubbed_answer(receiver_factory: Any) -> None:
    clock = ManualClock(NOW)
    receiver = receiver_factory(Answer(400, echo=True), Answer(200))
    with pytest.raises(DeliveryFailed, match="HTTP 400 Bad Request") as caught:
        sink(receiver.url, clock).deliver(credential())
    assert len(receiver.requests) == 1
    assert clock.monotonic() == 0.0
    assert REDACTED in str(caught.value)  # the echoed body, with the secret taken out
    assert_no_secret(caught.value)


def test_refusal_summary_holds_no_answer_and_the_answer_holds_no_encoding(
    receiver_factory: Any,
) -> None:
    pair = f"{KEY_ID}:{SECRET}\n".encode()
    body = b"got " + base64.b64encode(pair) + b" hex " + pair.hex().encode() + b" bad shape"
    receiver = receiver_factory(Answer(409, body=body, reason=f"No {SECRET}"))
    with pytest.raises(SinkFailed) as caught:
        sink(receiver.url).deliver(credential())
    port = receiver.server.server_address[1]
    assert caught.value.summary == (
        f"webhook:http://127.0.0.1:{port}/hooks/web: HTTP 409 Conflict: "
        "the receiver refused the credential"
    )
    assert caught.value.output == f"No {REDACTED}: got {REDACTED} hex {REDACTED} bad shape"
    assert_no_secret(caught.value)
    assert base64.b64encode(pair).decode() not in str(caught.value)
    assert pair.hex() not in str(caught.value)


def test_failure_after_retries_summarises_without_the_answer(receiver_factory: Any) -> None:
    receiver = receiver_factory(Answer(503, body=b"overloaded, try later"))
    with pytest.raises(SinkFailed) as caught:
        sink(receiver.url, retries=0).deliver(credential())
    assert caught.value.summary.endswith(": HTTP 503 Service Unavailable (after 1 attempt(s))")
    assert "overloaded" in str(caught.value)
    assert "overloaded" not in caught.value.summary


@pytest.mark.parametrize(
    "path", ["/hooks/w\u00e9b", "/hooks/a b", "/hooks/a\r\nX-Injected: 1", "/hooks/\u2603"]
)
def test_url_that_cannot_be_sent_fails_in_one_line_without_sending(
    receiver_factory: Any, path: str
) -> None:
    receiver = receiver_factory()
    port = receiver.server.server_address[1]
    clock = ManualClock(NOW)
    delivery = sink(f"http://127.0.0.1:{port}{path}", clock)
    with pytest.raises(SinkFailed) as caught:
        delivery.deliver(credential())
    message = str(caught.value)
    assert message.startswith(f"{delivery.name}: the URL")
    assert "percent-encode" in message
    assert message.isprintable()
    assert receiver.requests == []
    assert clock.monotonic() == 0.0  # refused at once, not retried


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_not_followed(receiver_factory: Any, status: int) -> None:
    receiver = receiver_factory()
    elsewhere = f"http://127.0.0.1:{receiver.server.server_address[1]}/elsewhere"
    receiver.answers.append(Answer(status, {"Location": elsewhere}))
    with pytest.raises(DeliveryFailed, match="never followed") as caught:
        sink(receiver.url).deliver(credential())
    assert [r.path for r in receiver.requests] == ["/hooks/web?team=a"]
    assert_no_secret(caught.value)


def test_plain_http_is_refused_without_allow_insecure(receiver_factory: Any) -> None:
    receiver = receiver_factory()
    with pytest.raises(DeliveryFailed, match="plain http") as caught:
        sink(receiver.url, allow_insecure=False).deliver(credential())
    assert receiver.requests == []
    assert_no_secret(caught.value)


def test_other_schemes_are_refused() -> None:
    with pytest.raises(DeliveryFailed, match="expected an https:// URL") as caught:
        sink("ftp://example.invalid/hook").deliver(credential())
    assert_no_secret(caught.value)


def test_credential_of_another_source_is_refused(receiver_factory: Any) -> None:
    receiver = receiver_factory()
    with pytest.raises(DeliveryFailed, match="source 'db'") as caught:
        sink(receiver.url).deliver(credential(source="db"))
    assert receiver.requests == []
    assert_no_secret(caught.value)


# --- TLS ------------------------------------------------------------------------------------------


def test_tls_context_always_verifies() -> None:
    context = tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def test_untrusted_certificate_fails_at_once(
    receiver_factory: Any, self_signed: ssl.SSLContext
) -> None:
    clock = ManualClock(NOW)
    receiver = receiver_factory(tls=self_signed)
    url = receiver.url.replace("http://", "https://")
    with pytest.raises(DeliveryFailed, match="TLS certificate not accepted") as caught:
        sink(url, clock, allow_insecure=False).deliver(credential())
    assert receiver.requests == []
    assert clock.monotonic() == 0.0
    assert_no_secret(caught.value)


# --- wiring ---------------------------------------------------------------------------------------


def test_build_sink_makes_a_webhook_delivery() -> None:
    config = WebhookSink(
        type="webhook", url="https://user:pw@hooks.example:8443/k?token=x", hmac_secret_env="X"
    )
    built = build_sink(config, clock=ManualClock(NOW), source="web")
    assert isinstance(built, WebhookDelivery)
    assert built.name == "webhook:https://hooks.example:8443/k"
    assert built.acknowledge(credential()) is True
