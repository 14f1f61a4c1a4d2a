"""The sandbox's HTTP layer: requests, responses, routing and Elasticsearch's wire behaviour."""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from rotator.sandbox.errors import EsError

if TYPE_CHECKING:
    from rotator.sandbox.authn import Principal
    from rotator.sandbox.state import SandboxState

_COMPAT = re.compile(r"compatible-with\s*=\s*(\d+)")
# Jackson's StreamReadConstraints default, which Elasticsearch keeps (XContentImplUtils).
MAX_NESTING_DEPTH = 1000
_SHALLOW = 200
_DEEP_PARSE = threading.Lock()
_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_TRUE = {"true", ""}
_FALSE = {"false"}


@dataclass
class Request:
    """One HTTP request as the handlers see it."""

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    path_params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, method: str, target: str, headers: dict[str, str], body: bytes) -> Request:
        """Build a request from the raw request line target, headers and body."""
        parts = urlsplit(target)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        lowered = {k.lower(): v for k, v in headers.items()}
        return cls(method.upper(), unquote(parts.path) or "/", params, lowered, body)

    def json(self, *, required: bool = False) -> Any:
        """Parse the body as JSON; None when it is empty and not required.

        Raises:
            EsError: 400 when the body is required and missing, or not valid JSON.
        """
        text = self.body.decode("utf-8", "replace").strip()
        if not text:
            if required:
                raise EsError(400, "parse_exception", "request body is required")
            return None
        return parse_json(text)

    def json_object(self, *, required: bool = False) -> dict[str, Any]:
        """Parse the body as a JSON object ({} when empty and not required)."""
        value = self.json(required=required)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise EsError(
                400,
                "parse_exception",
                "request body must be a JSON object, not " + type(value).__name__,
            )
        return value

    def param_bool(self, name: str, default: bool = False) -> bool:
        """An Elasticsearch boolean query parameter (``true``, ``false`` or empty for true)."""
        if name not in self.params:
            return default
        value = self.params[name]
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise EsError(
            400,
            "illegal_argument_exception",
            f"Failed to parse value [{value}] as only [true] or [false] are allowed.",
        )

    def param_bool_safe(self, name: str) -> bool:
        """A boolean query parameter, false when absent or malformed (for rendering options)."""
        try:
            return self.param_bool(name)
        except EsError:
            return False


def parse_json(text: str) -> Any:
    """Parse JSON text as Elasticsearch's parser would accept it.

    Raises:
        EsError: 400 ``x_content_parse_exception`` with a ``[line:col]`` prefix for invalid JSON
            or for nesting deeper than Jackson's limit of 1000.
    """
    deepest = _deepest(text)
    try:
        if deepest <= _SHALLOW:
            return json.loads(text)
        with _DEEP_PARSE:
            # Python's json recurses once per level; make room for Jackson's 1000 levels.
            previous = sys.getrecursionlimit()
            sys.setrecursionlimit(max(previous, MAX_NESTING_DEPTH * 3))
            try:
                return json.loads(text)
            finally:
                sys.setrecursionlimit(previous)
    except json.JSONDecodeError as exc:
        raise EsError(
            400,
            "x_content_parse_exception",
            f"[{exc.lineno}:{exc.colno}] Unexpected character or end of input: {exc.msg}",
        ) from None


def _deepest(text: str) -> int:
    """The deepest nesting of ``text`` (a lower bound when it is shallow).

    Raises:
        EsError: the nesting goes past Jackson's limit (at the bracket that does).
    """
    if text.count("[") + text.count("{") <= _SHALLOW:
        return 0
    depth = deepest = 0
    for match in _STRUCTURE.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
            if depth > MAX_NESTING_DEPTH:
                raise _too_deep(text, match.start())
        elif token in ("]", "}"):
            depth -= 1
    return deepest


def _too_deep(text: str, position: int) -> EsError:
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)
    return EsError(
        400,
        "x_content_parse_exception",
        f"[{line}:{column}] Document nesting depth ({MAX_NESTING_DEPTH + 1}) exceeds the maximum "
        f"allowed ({MAX_NESTING_DEPTH}, from `StreamReadConstraints.getMaxNestingDepth()`)",
    )


@dataclass
class Response:
    """What a handler answers: a status, a JSON-serialisable body and extra headers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str | list[str]] = field(default_factory=dict)


@dataclass
class Call:
    """Everything a handler gets for one request."""

    request: Request
    principal: Principal | None
    state: SandboxState
    now_ms: int


Handler = Callable[[Call], Response]


@dataclass(frozen=True)
class Route:
    """One endpoint: method, path pattern and handler."""

    method: str
    pattern: re.Pattern[str]
    template: str
    handler: Handler
    authenticate: bool


class Router:
    """Maps method and path to handlers; path templates use ``{name}`` placeholders."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(
        self, method: str, template: str, handler: Handler, *, authenticate: bool = True
    ) -> None:
        """Register ``handler`` for ``method`` on a template like ``/_security/api_key/{id}``."""
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self._routes.append(
            Route(method.upper(), re.compile(f"^{regex}$"), template, handler, authenticate)
        )

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """Find the route for a request.

        Raises:
            EsError: 405 when the path exists with other methods; 400 when nothing matches,
                both with Elasticsearch's texts.
        """
        allowed: list[str] = []
        for route in self._routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            if route.method == method or (method == "HEAD" and route.method == "GET"):
                return route, match.groupdict()
            allowed.append(route.method)
        if allowed:
            methods = ", ".join(sorted(set(allowed)))
            raise EsError(
                405,
                "",
                f"Incorrect HTTP method for uri [{path}] and method [{method}], "
                f"allowed: [{methods}]",
            )
        raise EsError(400, "", f"no handler found for uri [{path}] and method [{method}]")

    @property
    def templates(self) -> list[str]:
        """Every registered ``METHOD template``, for stats and docs."""
        return [f"{r.method} {r.template}" for r in self._routes]


REFRESH_VALUES = ("true", "false", "wait_for", "")


def check_refresh(params: dict[str, str]) -> None:
    """``WriteRequest.RefreshPolicy.parse`` of a ``refresh`` parameter.

    Raises:
        EsError: 400 ``illegal_argument_exception`` ``Unknown value for refresh: [x].``
    """
    value = params.get("refresh")
    if value is not None and value not in REFRESH_VALUES:
        raise EsError(400, "illegal_argument_exception", f"Unknown value for refresh: [{value}].")


def requested_compat(headers: dict[str, str]) -> int | None:
    """The REST API version a request asks for with ``compatible-with`` (None when it does not)."""
    for name in ("content-type", "accept"):
        value = headers.get(name, "")
        match = _COMPAT.search(value)
        if match and "vnd.elasticsearch" in value:
            return int(match[1])
    return None


def check_compatibility(headers: dict[str, str], major: int) -> None:
    """Refuse ``compatible-with`` versions the emulated major does not accept.

    A server of major N accepts N and N-1 (an 8.x node accepts 8 and 7, a 9.x node 9 and 8).
    """
    found: dict[str, int] = {}
    for name in ("content-type", "accept"):
        value = headers.get(name, "")
        match = _COMPAT.search(value)
        if match and "vnd.elasticsearch" in value:
            found[name] = int(match[1])
    bad = {k: v for k, v in found.items() if v not in (major, major - 1)}
    if not bad:
        return
    name, version = next(iter(bad.items()))
    label = "Accept" if name == "accept" else "Content-Type"
    raise EsError(
        400,
        "media_type_header_exception",
        "Invalid media-type value on headers [Content-Type, Accept]",
        caused_by={
            "type": "status_exception",
            "reason": f"{label} version must be either version {major} or {major - 1}, but found "
            f"{version}. {label}={headers.get(name)}",
        },
    )


def render_body(value: Any, *, pretty: bool = False) -> bytes:
    """Serialise a response body the way Elasticsearch does (compact JSON unless ``pretty``)."""
    if value is None:
        return b""
    if pretty:
        return json.dumps(value, indent=2).encode() + b"\n"
    return json.dumps(value, separators=(",", ":")).encode()


def error_response(error: EsError) -> Response:
    """Turn an EsError into a response; its ``headers`` go out as HTTP headers too."""
    headers: dict[str, str | list[str]] = dict(error.response_headers)
    headers.update(error.headers)
    if error.error_type == "":
        # Elasticsearch answers unknown endpoints with a bare string error.
        return Response(error.status, {"error": error.reason, "status": error.status}, headers)
    return Response(error.status, error.body(), headers)
