"""How a ``do`` reaches the server: request/response types and the official-client executor."""

from __future__ import annotations

import copy
import inspect
import keyword
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from elasticsearch import ApiError, Elasticsearch, ElasticsearchWarning

from .apis import BoundRequest, bind_request

__all__ = [
    "ApiRequest",
    "ApiResponse",
    "ClientExecutor",
    "Executor",
    "ProductHeaderError",
    "split_warning_headers",
]

# One RFC 7234 warning-value as Elasticsearch writes it; several get joined with ", ".
_WARNING_VALUE = re.compile(r'299 Elasticsearch-\S+ "(?:[^"\\]|\\.)*"(?: "[^"]*")?')


@dataclass(frozen=True)
class ApiRequest:
    """One ``do`` after stash substitution: API name, parameters, bodies, headers, ``ignore``."""

    api: str
    params: Mapping[str, Any] = field(default_factory=dict)
    bodies: tuple[Any, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    ignore: frozenset[int] = frozenset()


@dataclass
class ApiResponse:
    """What came back, error or not; ``body`` is parsed JSON, text, or ``None``."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    warning_headers: list[str] = field(default_factory=list)
    method: str = ""
    error_class: str | None = None


class ProductHeaderError(Exception):
    """A response lacked ``X-Elastic-Product: Elasticsearch``."""


class Executor(Protocol):
    """Sends an :class:`ApiRequest`; returns the response for any HTTP status."""

    def call(self, request: ApiRequest) -> ApiResponse: ...


def split_warning_headers(joined: str) -> list[str]:
    """Split a ``Warning`` header whose repeated values were joined with ``", "``."""
    found: list[str] = []
    position = 0
    for match in _WARNING_VALUE.finditer(joined):
        gap = joined[position : match.start()].strip(" ,")
        if gap:
            found.append(gap)
        found.append(match.group(0))
        position = match.end()
    tail = joined[position:].strip(" ,")
    if tail:
        found.append(tail)
    return found


def _python_name(name: str) -> str:
    return name + "_" if keyword.iskeyword(name) else name


class ClientExecutor:
    """Runs each call through the official ``elasticsearch`` client.

    The client's own method (``client.security.create_api_key(...)``) is used whenever it takes
    every argument the YAML gives, so the request on the wire is what the real client sends;
    otherwise the call goes through ``client.perform_request`` with the method and path from
    :mod:`.apis`. Default credentials are the client's ``basic_auth``; an ``Authorization`` in
    the YAML ``headers`` replaces them for that call. ``ApiError`` (any status the client treats
    as an error) becomes an :class:`ApiResponse` carrying its status and body.

    With ``require_product_header`` every response, error or not, must carry
    ``X-Elastic-Product: Elasticsearch`` (the client itself only checks the first 2xx one).
    """

    def __init__(
        self,
        url: str,
        username: str,
        password: str,
        *,
        request_timeout: float = 30.0,
        require_product_header: bool = True,
    ) -> None:
        self.require_product_header = require_product_header
        self.client = Elasticsearch(
            url,
            basic_auth=(username, password),
            max_retries=0,
            retry_on_status=(),
            retry_on_timeout=False,
            request_timeout=request_timeout,
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> ClientExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, request: ApiRequest) -> ApiResponse:
        bound = bind_request(request.api, request.params, bool(request.bodies))
        client = self._client_for(request)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ElasticsearchWarning)
            try:
                method = self.client_call(client, bound, request)
                if method is not None:
                    response = method()
                    used = ""
                else:
                    used, response = self._perform(client, bound, request)
            except ApiError as exc:
                return self._checked(
                    request.api,
                    self._convert(exc.meta.status, exc.meta.headers, exc.body, type(exc)),
                )
        return self._checked(
            request.api,
            self._convert(response.meta.status, response.meta.headers, response.body, None, used),
        )

    def raw(self, method: str, path: str, body: Any = None) -> ApiResponse:
        """A plain request with the default credentials (used for ``POST /_sandbox/reset``)."""
        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/json"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ElasticsearchWarning)
            try:
                response = self.client.perform_request(method, path, headers=headers, body=body)
            except ApiError as exc:
                converted = self._convert(exc.meta.status, exc.meta.headers, exc.body, type(exc))
                return self._checked(f"{method} {path}", converted)
        converted = self._convert(response.meta.status, response.meta.headers, response.body, None)
        return self._checked(f"{method} {path}", converted)

    def _checked(self, what: str, response: ApiResponse) -> ApiResponse:
        if self.require_product_header:
            product = response.headers.get("x-elastic-product")
            if product != "Elasticsearch":
                raise ProductHeaderError(
                    f"the response to [{what}] ({response.status}) carries X-Elastic-Product "
                    f"{product!r}, not 'Elasticsearch'"
                )
        return response

    def server_version(self) -> str | None:
        """``version.number`` from ``GET /``, or ``None`` when the server does not say."""
        try:
            response = self.raw("GET", "/")
        except Exception:
            return None
        body = response.body
        if response.status != 200 or not isinstance(body, dict):
            return None
        version = body.get("version")
        number = version.get("number") if isinstance(version, dict) else None
        return number if isinstance(number, str) else None

    def _client_for(self, request: ApiRequest) -> Elasticsearch:
        options: dict[str, Any] = {}
        if request.headers:
            options["headers"] = dict(request.headers)
        if request.ignore:
            options["ignore_status"] = tuple(sorted(request.ignore))
        return self.client.options(**options) if options else self.client

    @staticmethod
    def client_call(
        client: Elasticsearch, bound: BoundRequest, request: ApiRequest
    ) -> Callable[[], Any] | None:
        """The client's method bound to the YAML's arguments, or ``None`` when it cannot take them."""
        target: Any = client
        for part in request.api.split("."):
            target = getattr(target, part, None)
            if target is None:
                return None
        if not callable(target) or len(request.bodies) > 1:
            return None
        kwargs = {_python_name(k): v for k, v in request.params.items()}
        if request.bodies:
            kwargs[bound.spec.client_body_arg] = copy.deepcopy(request.bodies[0])
        try:
            signature = inspect.signature(target)
        except (TypeError, ValueError):
            return None
        accepted = {
            name
            for name, p in signature.parameters.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }
        if not set(kwargs) <= accepted:
            return None
        fn: Callable[..., Any] = target
        return lambda: fn(**kwargs)

    @staticmethod
    def _perform(
        client: Elasticsearch, bound: BoundRequest, request: ApiRequest
    ) -> tuple[str, Any]:
        methods = bound.path.methods
        method = methods[0]
        if request.bodies and method == "GET" and "POST" in methods:
            method = "POST"
        headers = {"accept": "application/json"}
        body: Any = None
        if len(request.bodies) == 1:
            headers["content-type"] = "application/json"
            body = copy.deepcopy(request.bodies[0])
        elif request.bodies:
            headers["content-type"] = "application/x-ndjson"
            body = list(copy.deepcopy(request.bodies))
        response = client.perform_request(
            method, bound.url, params=bound.query_params or None, headers=headers, body=body
        )
        return method, response

    @staticmethod
    def _convert(
        status: int,
        headers: Mapping[str, str],
        body: Any,
        error: type[Exception] | None,
        method: str = "",
    ) -> ApiResponse:
        lowered = {k.lower(): v for k, v in headers.items()}
        warning = lowered.get("warning")
        return ApiResponse(
            status=status,
            body=body,
            headers=lowered,
            warning_headers=split_warning_headers(warning) if warning else [],
            method=method,
            error_class=error.__name__ if error is not None else None,
        )
