"""What goes wrong on the wire becomes one line naming the host and the reason, never a traceback."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rotator.config import ElasticsearchConfig
from rotator.elastic import ElasticKeyAuthority, client_from_config
from rotator.errors import AuthorityUnavailable, NotElasticsearch


def _authority(url: str) -> ElasticKeyAuthority:
    config = ElasticsearchConfig.model_validate({"hosts": [url], "max_retries": 0})
    return ElasticKeyAuthority(client_from_config(config))


class _Server:
    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.requests.append((self.command, self.path))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[object]:
    servers: list[_Server] = []

    def start(status: int, body: bytes, headers: dict[str, str]) -> _Server:
        servers.append(_Server(status, body, headers))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_nothing_listening_names_the_host_and_the_reason() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(AuthorityUnavailable) as caught:
        _authority(url).whoami()
    message = caught.value.message
    assert "\n" not in message
    assert url in message
    assert "connection refused" in message.lower()


def test_an_endpoint_that_is_not_elasticsearch_says_so(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(404, b"Not Found", {"Content-Type": "text/plain"})
    with pytest.raises(NotElasticsearch) as caught:
        _authority(server.url).whoami()
    message = caught.value.message
    assert server.url in message
    assert "not Elasticsearch" in message
    assert "None" not in message
    assert caught.value.exit_code == 2


def test_an_html_error_page_is_not_echoed(serve) -> None:  # type: ignore[no-untyped-def]
    page = b"<html><body><h1>501 Not Implemented</h1>" + b"x" * 5000 + b"</body></html>"
    server = serve(501, page, {"Content-Type": "text/html", "X-Elastic-Product": "Elasticsearch"})
    with pytest.raises(AuthorityUnavailable) as caught:
        _authority(server.url).whoami()
    message = caught.value.message
    assert "<html>" not in message
    assert len(message) < 300
    assert "501" in message
    assert server.url in message


def test_a_create_answer_without_the_key_is_an_error_not_a_key_error(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(
        200,
        json.dumps({}).encode(),
        {"Content-Type": "application/json", "X-Elastic-Product": "Elasticsearch"},
    )
    with pytest.raises(AuthorityUnavailable) as caught:  # the key may exist: reconciled later
        _authority(server.url).create("rotator-web-1", 60, {}, {"source": "web"})
    assert "answered without id" in caught.value.message


def test_key_creation_is_never_resent_by_the_client(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(
        503,
        json.dumps({"error": {"type": "x", "reason": "busy"}, "status": 503}).encode(),
        {"Content-Type": "application/json", "X-Elastic-Product": "Elasticsearch"},
    )
    config = ElasticsearchConfig.model_validate({"hosts": [server.url], "max_retries": 3})
    authority = ElasticKeyAuthority(client_from_config(config))
    with pytest.raises(AuthorityUnavailable):
        authority.create("rotator-web-1", 60, {}, {"source": "web"})
    creates = [r for r in server.requests if r[1].startswith("/_security/api_key")]
    assert len(creates) == 1
