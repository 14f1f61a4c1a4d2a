"""The notification sinks against a local receiver and real commands: the signed webhook (checked
as a receiver would, with hmac.compare_digest), the Slack format, exec, no secret in any body,
and the shared HTTP client (no redirects, no proxy from the environment, TLS verified)."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rotator import http_client
from rotator.clock import ManualClock
from rotator.config_models import NotifyExec, NotifySlack, NotifyWebhook
from rotator.log import REDACTED, register_secret
from rotator.notify import Notice, NoticeKind, Severity
from rotator.notify_sinks import (
    ExecChannel,
    NotifyFailed,
    Outgoing,
    SlackChannel,
    WebhookChannel,
    render_slack,
)

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
HMAC_SECRET = "notify-signing-secret-for-tests"
SECRET_ENV = "ROTATOR_TEST_NOTIFY_SECRET"
SIGNATURE = "X-Rotator-Signature"
TIMESTAMP = "X-Rotator-Timestamp"


@dataclass(frozen=True)
class Request:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A local HTTP receiver: answers with scripted statuses (200 once they run out)."""

    statuses: list[int] = field(default_factory=list)
    secret: str = HMAC_SECRET
    requests: list[Request] = field(default_factory=list)
    verified: list[bool] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    location: str = "/elsewhere"

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = Request(self.path, dict(self.headers), body)
                receiver.requests.append(request)
                receiver.verified.append(verify(request, receiver.secret))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.answered.append(status)
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/notify"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verify(request: Request, secret: str = HMAC_SECRET, max_age: int = 300) -> bool:
    """What a receiver does: recompute ``sha256=HMAC(secret, "<timestamp>.<body>")`` over the raw
    body, compare in constant time, refuse a timestamp far from its own time."""
    timestamp = request.headers.get(TIMESTAMP, "")
    given = request.headers.get(SIGNATURE, "")
    if not timestamp.isdigit() or abs(int(timestamp) - int(NOW.timestamp())) > max_age:
        return False
    signed = timestamp.encode() + b"." + request.body
    expected = "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def signing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, HMAC_SECRET)


def notice(message: str = "rotating the key of web failed (1 in a row): sink refused") -> Notice:
    return Notice(
        NoticeKind.ROTATION_FAILED,
        Severity.WARNING,
        "web",
        message,
        "rotation_failed:web",
        {"source": "web", "failures": 1, "error": "sink refused", "job": "lifecycle"},
    )


def outgoing(n: Notice | None = None, reason: str = "new") -> Outgoing:
    return Outgoing(n or notice(), reason, NOW)


def webhook(url: str, clock: ManualClock | None = None, **settings: Any) -> WebhookChannel:
    settings.setdefault("allow_insecure", True)
    settings.setdefault("hmac_secret_env", SECRET_ENV)
    config = NotifyWebhook(type="webhook", url=url, **settings)
    return WebhookChannel(config, "hook", clock or ManualClock(NOW))


# --- the signed webhook ---------------------------------------------------------------------------


def test_webhook_sends_the_documented_json_signed(receiver: Receiver) -> None:
    webhook(receiver.url).send(outgoing())
    [request] = receiver.requests
    assert receiver.verified == [True]
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers[TIMESTAMP] == str(int(NOW.timestamp()))
    assert request.headers["User-Agent"].startswith("rotator/")
    assert json.loads(request.body) == {
        "kind": "rotation_failed",
        "severity": "warning",
        "subject": "web",
        "message": "rotating the key of web failed (1 in a row): sink refused",
        "dedup_key": "rotation_failed:web",
        "details": {"source": "web", "failures": 1, "error": "sink refused", "job": "lifecycle"},
        "reason": "new",
        "sent_at": "2030-01-01T12:00:00Z",
    }


def test_a_receiver_with_another_secret_or_a_replayed_request_refuses_it(
    receiver: Receiver,
) -> None:
    webhook(receiver.url).send(outgoing())
    [request] = receiver.requests
    assert not verify(request, secret="another-secret")
    later = str(int(request.headers[TIMESTAMP]) + 3600)
    replayed = Request(request.path, {**request.headers, TIMESTAMP: later}, request.body)
    assert not verify(replayed)  # stale timestamp
    assert not verify(replayed, max_age=10**9)  # and the signature covers the timestamp
    tampered = Request(request.path, request.headers, request.body.replace(b"web", b"wab"))
    assert not verify(tampered)


def test_the_signing_secret_may_come_from_a_file(receiver: Receiver, tmp_path: Path) -> None:
    secret_file = tmp_path / "hmac"
    secret_file.write_text(f"{HMAC_SECRET}\n")
    secret_file.chmod(0o600)
    webhook(receiver.url, hmac_secret_env=None, hmac_secret_file=str(secret_file)).send(outgoing())
    assert receiver.verified == [True]


def test_a_missing_signing_secret_fails_without_sending(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV)
    with pytest.raises(NotifyFailed, match=SECRET_ENV) as caught:
        webhook(receiver.url).send(outgoing())
    assert not caught.value.retryable
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (400, False), (404, False)]
)
def test_answers_say_whether_to_retry(receiver: Receiver, status: int, retryable: bool) -> None:
    receiver.statuses = [status]
    with pytest.raises(NotifyFailed, match=f"HTTP {status}") as caught:
        webhook(receiver.url).send(outgoing())
    assert caught.value.retryable is retryable


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_never_followed(receiver: Receiver, status: int) -> None:
    receiver.statuses = [status]
    with pytest.raises(NotifyFailed, match="never followed") as caught:
        webhook(receiver.url).send(outgoing())
    assert not caught.value.retryable
    assert [r.path for r in receiver.requests] == ["/notify"]


def test_plain_http_is_refused_without_allow_insecure(receiver: Receiver) -> None:
    with pytest.raises(ValueError, match="plain http"):
        webhook(receiver.url, allow_insecure=False)  # the config refuses it
    unchecked = NotifyWebhook.model_construct(
        type="webhook", url=receiver.url, hmac_secret_env=SECRET_ENV, allow_insecure=False
    )
    with pytest.raises(NotifyFailed, match="plain http"):  # and so does the sink
        WebhookChannel(unchecked, "hook", ManualClock(NOW)).send(outgoing())
    assert receiver.requests == []


def test_an_unreachable_receiver_is_a_retryable_failure() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(NotifyFailed, match="connection failed") as caught:
        webhook(f"http://127.0.0.1:{port}/x", timeout=timedelta(seconds=2)).send(outgoing())
    assert caught.value.retryable


# --- Slack ----------------------------------------------------------------------------------------


def test_slack_text_is_plain_and_complete() -> None:
    assert render_slack(outgoing()) == {
        "text": "[WARNING] rotation_failed web\n"
        "rotating the key of web failed (1 in a row): sink refused\n"
        "error=sink refused, failures=1, job=lifecycle, source=web"
    }
    again = render_slack(outgoing(reason="reminder"))["text"]
    assert again.endswith("\n(reminder; condition rotation_failed:web)")
    assert again.isascii()


def test_slack_posts_text_to_the_url_from_the_environment(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROTATOR_TEST_SLACK_URL", receiver.url)
    config = NotifySlack(type="slack", url_env="ROTATOR_TEST_SLACK_URL", allow_insecure=True)
    SlackChannel(config, "ops").send(outgoing())
    [request] = receiver.requests
    assert set(json.loads(request.body)) == {"text"}
    assert json.loads(request.body)["text"].startswith("[WARNING] rotation_failed web\n")


def test_slack_failures_never_name_the_url(receiver: Receiver) -> None:
    receiver.statuses = [403]
    url = receiver.url + "/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"
    config = NotifySlack(type="slack", url=url, allow_insecure=True)
    with pytest.raises(NotifyFailed) as caught:
        SlackChannel(config, "ops").send(outgoing())
    assert str(caught.value) == "ops: HTTP 403 Forbidden"


# --- exec -----------------------------------------------------------------------------------------


def test_exec_gets_the_notice_as_json_on_stdin(tmp_path: Path) -> None:
    out = tmp_path / "got.json"
    script = (
        "import os, sys, json; data = sys.stdin.read(); "
        f"open({str(out)!r}, 'w').write(json.dumps([data, os.environ['ROTATOR_NOTICE_KIND'], "
        "os.environ['ROTATOR_NOTICE_SEVERITY'], sorted(os.environ)]))"
    )
    config = NotifyExec(type="exec", argv=[sys.executable, "-c", script])
    ExecChannel(config, "cmd", environ={"PATH": "/usr/bin:/bin", "SECRET_THING": "x"}).send(
        outgoing()
    )
    stdin, kind, severity, names = json.loads(out.read_text())
    assert stdin.endswith("\n")
    assert stdin.count("\n") == 1
    assert json.loads(stdin)["dedup_key"] == "rotation_failed:web"
    assert (kind, severity) == ("rotation_failed", "warning")
    assert "SECRET_THING" not in names  # only a few variables are inherited


def test_exec_failing_or_timing_out_is_retryable_and_a_missing_program_is_not() -> None:
    failing = NotifyExec(type="exec", argv=[sys.executable, "-c", "import sys; sys.exit(3)"])
    with pytest.raises(NotifyFailed, match="exited with status 3") as caught:
        ExecChannel(failing, "cmd").send(outgoing())
    assert caught.value.retryable
    slow = NotifyExec(
        type="exec",
        argv=[sys.executable, "-c", "import time; time.sleep(30)"],
        timeout=timedelta(seconds=0.3),
    )
    with pytest.raises(NotifyFailed, match="timed out") as caught:
        ExecChannel(slow, "cmd").send(outgoing())
    assert caught.value.retryable
    missing = NotifyExec(type="exec", argv=["/nonexistent/notify-me"])
    with pytest.raises(NotifyFailed, match="cannot run it") as caught:
        ExecChannel(missing, "cmd").send(outgoing())
    assert not caught.value.retryable


# --- never a secret -------------------------------------------------------------------------------


def test_no_secret_reaches_any_body(
    receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-VALUE-that-must-never-leave-42"
    register_secret(secret)
    leaky = Notice(
        NoticeKind.ROTATION_FAILED,
        Severity.WARNING,
        "web",
        f"rotating the key of web failed: the sink said {secret}",
        "rotation_failed:web",
        {"error": f"answer: {secret}", "password": "hunter2-hunter2", "failures": 1},
    )
    webhook(receiver.url).send(outgoing(leaky))
    monkeypatch.setenv("ROTATOR_TEST_SLACK_URL", receiver.url)
    slack = NotifySlack(type="slack", url_env="ROTATOR_TEST_SLACK_URL", allow_insecure=True)
    SlackChannel(slack, "ops").send(outgoing(leaky))
    out = tmp_path / "stdin"
    script = f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())"
    ExecChannel(NotifyExec(type="exec", argv=[sys.executable, "-c", script]), "cmd").send(
        outgoing(leaky)
    )
    bodies = [r.body.decode() for r in receiver.requests] + [out.read_text()]
    assert len(bodies) == 3
    for body in bodies:
        assert secret not in body
        assert "hunter2-hunter2" not in body
        assert REDACTED in body
    assert receiver.verified[0]  # the signature covers the redacted body that was sent


# --- the shared HTTP client -----------------------------------------------------------------------


def test_the_client_ignores_proxy_variables(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9/")  # nothing listens there
    reply = http_client.post(receiver.url, b"{}", {}, timeout=5)
    assert reply.status == 200
    assert len(receiver.requests) == 1


def test_the_client_never_follows_redirects(receiver: Receiver) -> None:
    receiver.statuses = [302]
    reply = http_client.post(receiver.url, b"{}", {}, timeout=5)
    assert (reply.status, reply.header("location")) == (302, "/elsewhere")
    assert len(receiver.requests) == 1
    with http_client.client(timeout=1) as made:
        assert made.follow_redirects is False


def test_tls_is_always_verified() -> None:
    context = http_client.tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[Receiver, Path]]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, private = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(private), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, private)
    running = Receiver()
    running.server.socket = context.wrap_socket(running.server.socket, server_side=True)
    yield running, cert
    running.stop()


def test_an_untrusted_certificate_fails_at_once_and_a_given_ca_file_is_trusted(
    tls_receiver: tuple[Receiver, Path],
) -> None:
    running, cert = tls_receiver
    url = running.url.replace("http://", "https://")
    with pytest.raises(NotifyFailed, match="TLS certificate not accepted") as caught:
        webhook(url, allow_insecure=False, timeout=timedelta(seconds=5)).send(outgoing())
    assert not caught.value.retryable
    assert running.requests == []
    webhook(url, allow_insecure=False, ca_file=str(cert)).send(outgoing())
    assert running.verified == [True]
