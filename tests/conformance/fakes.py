"""Test doubles for the YAML runner: an in-process executor and a recording HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .apis import bind_request
from .executor import ApiRequest, ApiResponse

__all__ = ["FakeExecutor", "Recorded", "RecordingServer", "Reply"]


class FakeExecutor:
    """Answers each :class:`ApiRequest` with ``responder(request)`` and records the requests.

    The responder returns an :class:`ApiResponse` or ``(status, body)``. With ``validate`` the
    request is first checked against the API table, as the client executor does.
    """

    def __init__(
        self,
        responder: Callable[[ApiRequest], ApiResponse | tuple[int, Any]],
        *,
        validate: bool = True,
    ) -> None:
        self.responder = responder
        self.validate = validate
        self.requests: list[ApiRequest] = []

    def call(self, request: ApiRequest) -> ApiResponse:
        self.requests.append(request)
        if self.validate:
            bind_request(request.api, request.params, bool(request.bodies))
        answer = self.responder(request)
        if isinstance(answer, ApiResponse):
            return answer
        status, body = answer
        return ApiResponse(status=status, body=body)

    @property
    def apis(self) -> list[str]:
        return [r.api for r in self.requests]


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)
    headers: list[tuple[str, str]] = field(default_factory=list)
    product: bool = True  # send X-Elastic-Product: Elasticsearch


class RecordingServer:
    """A tiny HTTP server on 127.0.0.1 that records requests and answers ``handler(request)``."""

    def __init__(self, handler: Callable[[Recorded], Reply] | None = None) -> None:
        self.handler = handler or (lambda _request: Reply())
        self.requests: list[Recorded] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                recorded = Recorded(
                    self.command,
                    parts.path,
                    parse_qs(parts.query, keep_blank_values=True),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                owner.requests.append(recorded)
                reply = owner.handler(recorded)
                payload = b"" if reply.body is None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if reply.product:
                    self.send_header("X-Elastic-Product", "Elasticsearch")
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
