"""Reading requests off the socket safely: body limits, malformed framing, slow clients.

Elasticsearch's HTTP layer (Netty's ``HttpObjectDecoder`` behind ``Netty4HttpServerTransport``)
answers a request it cannot frame with 400 (``RestController.dispatchBadRequest``), refuses a body
over ``http.max_content_length`` (100 MB) with 413 whether it comes with ``Content-Length`` or
chunked, and closes connections that stay silent. The helpers here do the same for the sandbox.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from rotator.sandbox.errors import EsError

MAX_BODY = 100 * 1024 * 1024
MAX_LINE = 4096
MAX_TRAILERS = 100


@dataclass(frozen=True)
class Limits:
    """How much a client may ask of the server.

    Attributes:
        max_body: the largest decoded request body, in bytes (``http.max_content_length``).
        idle_timeout_s: how long a connection may stay silent (between requests or mid-request).
        request_timeout_s: how long one request (head and body) may take to arrive once started.
        max_connections: open connections served at once; more are answered 503 and closed.

    The defaults leave room for test suites that open a client per check and keep its
    connections alive until they idle out (Elasticsearch itself sets no cap).
    """

    max_body: int = MAX_BODY
    idle_timeout_s: float = 30.0
    request_timeout_s: float = 120.0
    max_connections: int = 512


class Reader(Protocol):
    """What the body readers need of a buffered socket file."""

    def read(self, size: int = -1, /) -> bytes:
        """Read up to ``size`` bytes."""
        ...

    def readline(self, size: int = -1, /) -> bytes:
        """Read one line of at most ``size`` bytes."""
        ...


class BodyTooLarge(Exception):
    """The request body is over the limit (answered 413)."""


def content_length(values: list[str]) -> int | None:
    """The ``Content-Length`` of a request, validated as Netty's ``HttpUtil`` does.

    Args:
        values: every ``Content-Length`` header value the request carried.

    Raises:
        EsError: 400 ``illegal_argument_exception`` with Netty's text for a value that is not a
            number or for several different values.
    """
    if not values:
        return None
    fields = [part.strip() for value in values for part in value.split(",")]
    if len(set(fields)) > 1:
        raise EsError(
            400,
            "illegal_argument_exception",
            f"Multiple Content-Length values found: [{', '.join(fields)}]",
        )
    text = fields[0]
    reason = f"Content-Length value is not a number: {text}"
    if not text or text[0] not in "0123456789":
        raise EsError(400, "illegal_argument_exception", reason)
    if not (text.isascii() and text.isdigit()) or int(text) >= 2**63:
        cause = {"type": "number_format_exception", "reason": f'For input string: "{text}"'}
        raise EsError(400, "illegal_argument_exception", reason, caused_by=cause)
    return int(text)


def _chunk_size(line: bytes) -> int:
    """A chunk-size line's value; Netty's ``getChunkSize`` rules (extensions after ``;``)."""
    text = line.split(b";", 1)[0].strip()
    try:
        if not text or not all(c in b"0123456789abcdefABCDEF" for c in text):
            raise ValueError(line)
        return int(text, 16)
    except ValueError:
        # Netty throws a NumberFormatException without a message; ES renders it as is.
        raise EsError(400, "number_format_exception", None) from None


def read_chunked(rfile: Reader, limit: int) -> bytes:
    """Read a chunked body, counting the decoded bytes against ``limit`` as they arrive.

    Raises:
        BodyTooLarge: the decoded body would exceed ``limit`` (nothing past it is buffered).
        EsError: 400 for a malformed chunk size or a line longer than Netty accepts.
    """
    chunks: list[bytes] = []
    total = 0
    while True:
        size = _chunk_size(_line(rfile))
        if size == 0:
            break
        total += size
        if total > limit:
            raise BodyTooLarge
        data = rfile.read(size)
        if len(data) < size:
            raise ConnectionError("client closed the connection mid-chunk")
        chunks.append(data)
        _line(rfile)
    for _ in range(MAX_TRAILERS):
        if not _line(rfile).strip():
            return b"".join(chunks)
    raise EsError(400, "too_long_http_header_exception", "too many trailer lines")


def _line(rfile: Reader) -> bytes:
    line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise EsError(
            400,
            "too_long_http_line_exception",
            f"An HTTP line is larger than {MAX_LINE} bytes.",
        )
    if not line:
        raise ConnectionError("client closed the connection mid-body")
    return line


class DeadlineSocketReader(io.RawIOBase):
    """A socket reader with an idle timeout per read and a deadline per request.

    The first byte of a request starts its deadline; :meth:`request_done` clears it. Every read
    waits at most the idle timeout, and never past the deadline, so a client that trickles bytes
    cannot hold a worker longer than the request timeout.
    """

    def __init__(self, sock: socket.socket, limits: Limits, monotonic: Callable[[], float]):
        super().__init__()
        self._sock = sock
        self._limits = limits
        self._monotonic = monotonic
        self._deadline: float | None = None

    def readable(self) -> bool:
        """Always true: this is a reader."""
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        """Receive into ``buffer``.

        Raises:
            TimeoutError: the connection was idle too long or the request took too long.
        """
        timeout = self._limits.idle_timeout_s
        if self._deadline is not None:
            remaining = self._deadline - self._monotonic()
            if remaining <= 0:
                raise TimeoutError("request took longer than the request timeout")
            timeout = min(timeout, remaining)
        self._sock.settimeout(timeout)
        received = self._sock.recv_into(buffer)
        if received and self._deadline is None:
            self._deadline = self._monotonic() + self._limits.request_timeout_s
        return received

    def request_done(self) -> None:
        """The current request is fully read: the next one starts a new deadline."""
        self._deadline = None
