"""docs/consumers.md: the receiver and the shipper it shows work against rotator's real sinks.

The Python blocks of the doc are executed as they are written: the webhook receiver's ``verify``
accepts what the webhook sink really sends (over HTTP, to a local server) and refuses a changed
body, a wrong secret and an old timestamp; the custom shipper's ``KeyFile`` picks up each key the
file sink writes. The request the doc describes (headers, body fields) is the sink's.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rotator.clock import ManualClock
from rotator.config import FileSink, WebhookSink
from rotator.delivery.file import FileDelivery, render
from rotator.delivery.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookDelivery
from rotator.ports import Credential

DOC = Path(__file__).resolve().parents[2] / "docs" / "consumers.md"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
HMAC_SECRET = "doc-receiver-signing-secret"
SECRET_ENV = "ROTATOR_DOC_WEBHOOK_SECRET"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)


def doc_namespace() -> dict[str, Any]:
    """Run every Python block of the doc and return what they define."""
    namespace: dict[str, Any] = {"__name__": "consumers_doc"}
    for block in python_blocks():
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - the doc's own code
    return namespace


def credential(number: int) -> Credential:
    key_id = f"VuaCfGcBCdbkQm-e5aO{number}"
    secret = f"ui2lp2axTNmsyakw9tvNn{number}"
    return Credential(
        id=key_id,
        name=f"rotator-custom-{number}",
        api_key=secret,
        encoded=base64.b64encode(f"{key_id}:{secret}".encode()).decode(),
        source="custom",
        expiration=datetime(2026, 2, 1, tzinfo=UTC),
    )


@pytest.fixture
def received() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A local receiver that records each request's headers and raw body and answers 204."""
    requests: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            requests.append((dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/custom", requests
    finally:
        server.shutdown()
        server.server_close()


def test_the_doc_has_the_receiver_and_the_shipper() -> None:
    namespace = doc_namespace()
    assert callable(namespace["verify"])
    assert callable(namespace["KeyFile"])


def test_the_receiver_in_the_doc_verifies_what_the_webhook_sink_sends(
    received: tuple[str, list[tuple[dict[str, str], bytes]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, requests = received
    monkeypatch.setenv(SECRET_ENV, HMAC_SECRET)
    config = WebhookSink(type="webhook", url=url, hmac_secret_env=SECRET_ENV, allow_insecure=True)
    sink = WebhookDelivery(config, clock=ManualClock(NOW), source="custom")
    sink.deliver(credential(1))
    ((headers, body),) = requests
    verify: Callable[..., bool] = doc_namespace()["verify"]
    timestamp, signature = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    now = NOW.timestamp()
    secret = HMAC_SECRET.encode()

    assert verify(secret, timestamp, signature, body, now=now)
    assert not verify(secret, timestamp, signature, body.replace(b"custom", b"cust0m"), now=now)
    assert not verify(b"another secret", timestamp, signature, body, now=now)
    assert not verify(secret, timestamp, signature, body, now=now + 3600)  # a replay, later
    assert not verify(secret, "not-a-time", signature, body, now=now)


def test_the_doc_describes_the_webhook_request_as_sent(
    received: tuple[str, list[tuple[dict[str, str], bytes]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, requests = received
    monkeypatch.setenv(SECRET_ENV, HMAC_SECRET)
    config = WebhookSink(type="webhook", url=url, hmac_secret_env=SECRET_ENV, allow_insecure=True)
    WebhookDelivery(config, clock=ManualClock(NOW), source="custom").deliver(credential(1))
    ((headers, body),) = requests
    text = DOC.read_text()
    section = text[text.index("## A webhook receiver") :]
    for name in ("Content-Type", "User-Agent", TIMESTAMP_HEADER, SIGNATURE_HEADER):
        assert f"{name}: " in section, name
        assert name in headers
    version = headers["User-Agent"].removeprefix("rotator/")
    assert headers["User-Agent"] == f"rotator/{version}"
    assert "User-Agent: rotator/<version>" in section
    assert headers[TIMESTAMP_HEADER] == str(int(NOW.timestamp()))
    document = json.loads(body)
    example = re.search(r"\n(\{\"id\".*\})\n", section)
    assert example is not None
    assert list(json.loads(example[1])) == list(document)
    for name in document:
        assert f"`{name}`" in section


def test_the_shipper_in_the_doc_follows_each_new_file(tmp_path: Path) -> None:
    key_file = doc_namespace()["KeyFile"]
    path = tmp_path / "custom.json"
    sink = FileDelivery(FileSink(type="file", path=str(path), format="json"), source="custom")
    sink.deliver(credential(1))
    reader = key_file(str(path))
    assert reader.header() == {"Authorization": f"ApiKey {credential(1).encoded}"}
    assert reader.header() == {"Authorization": f"ApiKey {credential(1).encoded}"}
    sink.deliver(credential(2))
    assert reader.header() == {"Authorization": f"ApiKey {credential(2).encoded}"}


def test_the_json_example_has_the_file_sinks_fields() -> None:
    text = DOC.read_text()
    section = text[text.index("## A custom shipper") : text.index("## A webhook receiver")]
    example = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert example is not None
    assert list(json.loads(example[1])) == list(json.loads(render(credential(1), "json")))
