"""The sandbox's HTTP server: one thread per connection, Elasticsearch's headers and errors.

The server holds under abuse: bodies are limited as they are decoded (``Content-Length`` or
chunked), malformed framing is answered 400, silent or trickling clients are cut off by an idle
timeout and a per-request deadline, and the number of connections served at once is capped.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rotator.clock import SystemClock
from rotator.log import get_logger
from rotator.sandbox.errors import EsError
from rotator.sandbox.faults import FaultDecision, FaultInjector
from rotator.sandbox.http import (
    Call,
    Request,
    Response,
    Router,
    check_compatibility,
    check_refresh,
    error_response,
    render_body,
)
from rotator.sandbox.params import check_params
from rotator.sandbox.state import SandboxState
from rotator.sandbox.wire import (
    MAX_BODY,
    BodyTooLarge,
    DeadlineSocketReader,
    Limits,
    content_length,
    read_chunked,
)

# How often (in sandbox time) the remover of expired and invalidated keys runs.
REMOVER_INTERVAL_MS = 60_000
__all__ = ["MAX_BODY", "Dispatcher", "Limits", "SandboxHTTPServer", "ServerThread"]

_log = get_logger("rotator.sandbox")

Authenticator = Callable[[SandboxState, Request, int], Any]


class Dispatcher:
    """Turns a parsed request into a response: routing, authentication, the handler, errors."""

    def __init__(
        self,
        state: SandboxState,
        router: Router,
        authenticate: Authenticator,
        faults: FaultInjector | None = None,
    ) -> None:
        self.state = state
        self.router = router
        self.authenticate = authenticate
        self.faults = faults or FaultInjector()
        self._last_remover_ms: int | None = None

    def dispatch(self, request: Request) -> tuple[Response, str]:
        """Answer one request; returns the response and the route template it matched."""
        template = "unmatched"
        try:
            check_compatibility(request.headers, self.state.major)
            route, request.path_params = self.router.resolve(request.method, request.path)
            template = route.template
            check_params(request.method, template, request.path, request.params)
            with self.state.lock:
                now_ms = self.state.clock.now_ms()
                self._maybe_remove_keys(now_ms)
                principal = (
                    self.authenticate(self.state, request, now_ms) if route.authenticate else None
                )
                if not template.endswith("/_refresh"):
                    check_refresh(request.params)
                response = route.handler(Call(request, principal, self.state, now_ms))
        except EsError as error:
            response = error_response(error)
        except Exception:
            _log.exception("sandbox handler failed", method=request.method, path=request.path)
            response = error_response(EsError(500, "exception", "internal sandbox error"))
        return response, template

    def _maybe_remove_keys(self, now_ms: int) -> None:
        last = self._last_remover_ms
        if last is None or now_ms - last >= REMOVER_INTERVAL_MS or now_ms < last:
            self._last_remover_ms = now_ms
            self.state.security.remove_inactive_keys(now_ms)

    def record(self, method: str, template: str, status: int) -> None:
        """Count one answered request for ``GET /_sandbox/stats``."""
        with self.state.lock:
            self.state.stats[(method, template, status)] += 1


def _handler_class(dispatcher: Dispatcher, limits: Limits) -> type[BaseHTTPRequestHandler]:
    clock = SystemClock()

    class SandboxRequestHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "rotator-sandbox"
        sys_version = ""
        # Headers and body go out in separate writes: without this, Nagle's algorithm and
        # delayed ACKs add ~40 ms to every keep-alive request.
        disable_nagle_algorithm = True

        def setup(self) -> None:
            """Read through a socket reader that enforces the idle timeout and the deadline."""
            super().setup()
            self._reader = DeadlineSocketReader(self.connection, limits, clock.monotonic)
            self.rfile = io.BufferedReader(self._reader, 65536)

        def log_message(self, format: str, *args: Any) -> None:
            """Silence the default stderr access log."""

        def _serve(self) -> None:
            body = self._read_body()
            self._reader.request_done()
            if body is None:
                return
            request = Request.parse(self.command, self.path, dict(self.headers.items()), body)
            decision = dispatcher.faults.decide(request.method, request.path)
            if decision.latency_ms:
                clock.sleep(decision.latency_ms / 1000)
            if decision.drop:
                dispatcher.record(request.method, "fault:drop", 0)
                self._drop()
                return
            if decision.error is not None:
                response, template = error_response(decision.error), "fault:status"
            else:
                response, template = dispatcher.dispatch(request)
            dispatcher.record(request.method, template, response.status)
            self._write(request, response, decision)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _serve

        def _read_body(self) -> bytes | None:
            """The decoded body, or None once a 400/413 has been answered or the peer left."""
            try:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    return read_chunked(self.rfile, limits.max_body)
                length = content_length(self.headers.get_all("Content-Length") or [])
                if length is not None and length > limits.max_body:
                    raise BodyTooLarge
                return self._read_exact(length or 0)
            except BodyTooLarge:
                self._refuse(413, None)
            except EsError as error:
                self._refuse(error.status, error_response(error).body)
            except ConnectionError:
                self.close_connection = True
            return None

        def _read_exact(self, length: int) -> bytes:
            data = self.rfile.read(length) if length else b""
            if len(data) < length:
                raise ConnectionError("client closed the connection mid-body")
            return data

        def _refuse(self, status: int, body: Any) -> None:
            """Answer a request that cannot be read, then close the connection."""
            payload = render_body(body)
            self.send_response(status)
            self.send_header("X-Elastic-Product", "Elasticsearch")
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
            dispatcher.record(self.command, "unread", status)
            self.close_connection = True

        def _write(self, request: Request, response: Response, decision: FaultDecision) -> None:
            payload = render_body(response.body, pretty=request.param_bool_safe("pretty"))
            self.send_response(response.status)
            self.send_header("X-Elastic-Product", "Elasticsearch")
            if response.body is not None:
                self.send_header("Content-Type", _content_type(request, dispatcher.state.major))
            for name, value in response.headers.items():
                for item in value if isinstance(value, list) else [value]:
                    self.send_header(name, item)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if request.method == "HEAD":
                return
            if decision.truncate:
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                self._drop()
                return
            self.wfile.write(payload)

        def _drop(self) -> None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    return SandboxRequestHandler


def _content_type(request: Request, major: int) -> str:
    if "vnd.elasticsearch" in request.headers.get("accept", ""):
        return f"application/vnd.elasticsearch+json;compatible-with={major}"
    return "application/json"


class SandboxHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that serves at most ``limits.max_connections`` at once.

    A connection over the cap is answered 503 and closed at once, so slow or idle clients can
    hold only a bounded number of worker threads. Worker threads never block interpreter exit.
    """

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], limits: Limits
    ) -> None:
        super().__init__(address, handler)
        self.limits = limits
        self._slots = threading.BoundedSemaphore(limits.max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection on a thread if a slot is free; refuse it otherwise."""
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection, then free its slot."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        limit = self.limits.max_connections
        body = json.dumps(
            {"error": f"too many open connections (the sandbox serves {limit})", "status": 503}
        ).encode()
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nX-Elastic-Product: Elasticsearch\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        with contextlib.suppress(OSError):
            request.settimeout(1.0)
            request.sendall(head + body)
        self.shutdown_request(request)


class ServerThread:
    """Runs a SandboxHTTPServer on a background thread."""

    def __init__(
        self, dispatcher: Dispatcher, host: str, port: int, limits: Limits | None = None
    ) -> None:
        limits = limits or Limits()
        self.httpd = SandboxHTTPServer((host, port), _handler_class(dispatcher, limits), limits)
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound."""
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Start serving in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and release the port."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
