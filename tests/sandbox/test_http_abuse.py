"""The sandbox's HTTP server under abuse: oversized and malformed framing, slow clients, floods.

Every test talks to a sandbox on 127.0.0.1 over raw sockets, and every socket has a timeout, so
no test can hang: a server that does not answer makes the test fail on that timeout.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest

from rotator.sandbox import Sandbox
from rotator.sandbox.wire import Limits
from tests.sandbox.conftest import ADMIN

GUARD_S = 10.0
AUTH = "Basic " + base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()


@pytest.fixture(scope="module")
def small() -> Iterator[Sandbox]:
    """A sandbox with tight limits: 1 KiB bodies, short timeouts, three connections."""
    limits = Limits(max_body=1024, idle_timeout_s=0.5, request_timeout_s=1.5, max_connections=3)
    with Sandbox.start(users=[(*ADMIN, "superuser")], limits=limits) as running:
        yield running


def connect(sandbox: Sandbox) -> socket.socket:
    host, port = sandbox.url.removeprefix("http://").split(":")
    assert host == "127.0.0.1"
    sock = socket.create_connection((host, int(port)), timeout=GUARD_S)
    sock.settimeout(GUARD_S)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], Any]:
    """Read one response (status, lower-cased headers, parsed JSON body or None)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, json.loads(rest[:length]) if length else None


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closed the connection (EOF or reset) before the guard timeout."""
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def request_head(method: str, path: str, extra: str = "") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {AUTH}\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


def es_error(status: int, error_type: str, reason: str | None, **extra: Any) -> dict[str, Any]:
    inner = {"type": error_type, "reason": reason}
    return {"error": {"root_cause": [inner], **inner, **extra}, "status": status}


# --- body limits ---------------------------------------------------------------------------------


def test_chunked_body_is_limited_as_it_is_decoded(small: Sandbox) -> None:
    """``http.max_content_length`` applies to the decoded stream (ES answers 413), before the
    chunk that crosses it is read: the sandbox answers as soon as the chunk size is known."""
    with closing(connect(small)) as sock:
        sock.sendall(request_head("POST", "/_bulk", "Transfer-Encoding: chunked\r\n"))
        sock.sendall(b"200\r\n" + b"x" * 0x200 + b"\r\n")
        sock.sendall(b"201\r\n")  # 1025 bytes in total: over the 1 KiB limit, data never sent
        status, headers, body = read_response(sock)
        assert (status, body) == (413, None)
        assert headers["connection"] == "close"
        assert closed_by_server(sock)


def test_content_length_over_the_limit_is_413_without_reading_the_body(small: Sandbox) -> None:
    """ES refuses a declared length over ``http.max_content_length`` with 413 up front."""
    with closing(connect(small)) as sock:
        sock.sendall(request_head("POST", "/_bulk", "Content-Length: 1025\r\n"))
        status, _headers, body = read_response(sock)
        assert (status, body) == (413, None)


def test_a_body_within_the_limit_is_served(small: Sandbox) -> None:
    with closing(connect(small)) as sock:
        body = b'{"index":{"_index":"plain"}}\n{"a":1}\n'
        sock.sendall(request_head("POST", "/_bulk", "Transfer-Encoding: chunked\r\n"))
        sock.sendall(f"{len(body):x};ext=1\r\n".encode() + body + b"\r\n0\r\n\r\n")
        status, _headers, answer = read_response(sock)
        assert status == 200
        assert answer["errors"] is False


# --- malformed framing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "abc",
            es_error(
                400, "illegal_argument_exception", "Content-Length value is not a number: abc"
            ),
        ),
        (
            "-5",
            es_error(400, "illegal_argument_exception", "Content-Length value is not a number: -5"),
        ),
        (
            "12abc",
            es_error(
                400,
                "illegal_argument_exception",
                "Content-Length value is not a number: 12abc",
                caused_by={
                    "type": "number_format_exception",
                    "reason": 'For input string: "12abc"',
                },
            ),
        ),
    ],
)
def test_malformed_content_length_is_400(small: Sandbox, value: str, expected: Any) -> None:
    """Netty's ``HttpUtil.normalizeAndGetContentLength`` throws ``IllegalArgumentException``
    ("Content-Length value is not a number: ..."); ES's ``RestController.dispatchBadRequest``
    answers it with 400 and the exception as the body."""
    with closing(connect(small)) as sock:
        sock.sendall(request_head("POST", "/_bulk", f"Content-Length: {value}\r\n"))
        status, headers, body = read_response(sock)
        assert status == 400
        assert body == expected
        assert headers["x-elastic-product"] == "Elasticsearch"


def test_conflicting_content_lengths_are_400(small: Sandbox) -> None:
    """Netty refuses differing values: ``Multiple Content-Length values found: [...]``."""
    with closing(connect(small)) as sock:
        sock.sendall(request_head("POST", "/_bulk", "Content-Length: 3\r\nContent-Length: 4\r\n"))
        status, _headers, body = read_response(sock)
        assert status == 400
        assert body["error"]["reason"] == "Multiple Content-Length values found: [3, 4]"


def test_malformed_chunk_size_is_400(small: Sandbox) -> None:
    """Netty's ``HttpObjectDecoder.getChunkSize`` throws a bare ``NumberFormatException`` for a
    non-hex size; ES answers the decoder failure with 400."""
    with closing(connect(small)) as sock:
        sock.sendall(request_head("POST", "/_bulk", "Transfer-Encoding: chunked\r\n"))
        sock.sendall(b"zz\r\n")
        status, _headers, body = read_response(sock)
        assert status == 400
        assert body == es_error(400, "number_format_exception", None)
        assert closed_by_server(sock)


def test_deeply_nested_json_is_400_not_500(small: Sandbox) -> None:
    """Jackson's ``StreamReadConstraints`` (max nesting depth 1000, which ES keeps, see
    ``XContentImplUtils``) refuse deeper documents; ES answers 400 ``x_content_parse_exception``."""
    limits = Limits(max_body=1_000_000)
    with Sandbox.start(users=[(*ADMIN, "superuser")], limits=limits) as roomy:
        for depth in (1001, 200_000):
            body = ("[" * depth + "]" * depth).encode()
            with closing(connect(roomy)) as sock:
                sock.sendall(
                    request_head("PUT", "/_security/role/deep", f"Content-Length: {len(body)}\r\n")
                    + body
                )
                status, _headers, answer = read_response(sock)
            assert status == 400, answer
            assert answer["error"]["type"] == "x_content_parse_exception"
            assert answer["error"]["reason"] == (
                "[1:1001] Document nesting depth (1001) exceeds the maximum allowed (1000, from "
                "`StreamReadConstraints.getMaxNestingDepth()`)"
            )


def test_nesting_up_to_the_limit_is_parsed(small: Sandbox) -> None:
    from rotator.sandbox.http import parse_json

    value = parse_json("[" * 1000 + "]" * 1000)
    for _ in range(999):
        value = value[0]
    assert value == []


# --- slow and idle clients -----------------------------------------------------------------------


def test_an_idle_connection_is_closed(small: Sandbox) -> None:
    """A client that connects and says nothing is cut off after the idle timeout (ES closes
    idle channels too); the guard timeout is far longer than the 0.5 s idle timeout."""
    with closing(connect(small)) as sock:
        assert closed_by_server(sock)


def test_a_client_trickling_its_request_is_cut_off(small: Sandbox) -> None:
    """Each byte arrives within the idle timeout, but the request as a whole may not take longer
    than the request timeout (1.5 s): the connection is closed, the request never served."""
    clock_guard = 60  # bytes: at 0.2 s each, far past the deadline
    with closing(connect(small)) as sock:
        sock.settimeout(0.2)
        closed = False
        for byte in b"GET / HTTP/1.1\r\nX-Slow: " + b"a" * clock_guard:
            try:
                sock.send(bytes([byte]))
                if sock.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                closed = True
                break
        assert closed


def test_connections_over_the_cap_get_503_and_others_are_still_served() -> None:
    """Idle connections can hold at most the cap; one more is answered 503 and closed, and a
    slot freed by a closed connection serves a new client."""
    limits = Limits(idle_timeout_s=GUARD_S, max_connections=3)
    with Sandbox.start(users=[(*ADMIN, "superuser")], limits=limits) as capped:
        _check_cap(capped)


def _check_cap(small: Sandbox) -> None:
    holders = [connect(small) for _ in range(3)]
    try:
        # Make sure the three are being served (each answered one request) before the fourth.
        for sock in holders:
            sock.sendall(request_head("GET", "/"))
            assert read_response(sock)[0] == 200
        with closing(connect(small)) as extra:
            status, headers, body = read_response(extra)
            assert status == 503
            assert body == {
                "error": "too many open connections (the sandbox serves 3)",
                "status": 503,
            }
            assert headers["connection"] == "close"
    finally:
        for sock in holders:
            sock.close()
    for _attempt in range(50):
        with closing(connect(small)) as sock:
            sock.sendall(request_head("GET", "/"))
            if read_response(sock)[0] == 200:
                return
    pytest.fail("no slot was freed after the holders closed their connections")
