"""KeyAuthority over elasticsearch-py: the only module that imports ``elasticsearch``.

Library exceptions are translated here into rotator's errors, so nothing above this module knows
the client exists. Messages carry the status, the error type and reason Elasticsearch gave, and
never a credential.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from elasticsearch import (
    ApiError,
    ConnectionTimeout,
    Elasticsearch,
    NotFoundError,
    SerializationError,
    SSLError,
    TransportError,
    UnsupportedProductError,
)

from rotator.config import ElasticsearchConfig
from rotator.errors import (
    AuthenticationFailed,
    AuthorityRejected,
    AuthorityUnavailable,
    NotElasticsearch,
    PermissionDenied,
    RotatorError,
)
from rotator.log import register_secret
from rotator.ports import Credential, InvalidationResult, KeyInfo, KeyPage
from rotator.secrets import resolve_secret

PAGE_SIZE = 1000
RETRY_STATUSES = (429, 502, 503, 504)
T = TypeVar("T")


def client_from_config(config: ElasticsearchConfig) -> Elasticsearch:
    """Build the client rotator authenticates with, resolving the secret references."""
    auth: dict[str, Any] = {}
    if config.username is not None:
        password = resolve_secret(
            config.password_env, config.password_file, "elasticsearch.password"
        )
        auth["basic_auth"] = (config.username, password)
    elif config.bearer_token_env or config.bearer_token_file:
        token = resolve_secret(
            config.bearer_token_env, config.bearer_token_file, "elasticsearch.bearer_token"
        )
        auth["bearer_auth"] = token
    elif config.api_key_env or config.api_key_file:
        auth["api_key"] = resolve_secret(
            config.api_key_env, config.api_key_file, "elasticsearch.api_key"
        )
    for value in auth.values():
        register_secret(value if isinstance(value, str) else value[1])
    if config.ca_certs is not None:
        auth["ca_certs"] = config.ca_certs
    return ObservedElasticsearch(
        list(config.hosts),
        verify_certs=config.verify_certs,
        request_timeout=config.request_timeout.total_seconds(),
        max_retries=config.max_retries,
        retry_on_status=RETRY_STATUSES,
        retry_on_timeout=True,
        **auth,
    )


@contextmanager
def translated(what: str, where: str = "Elasticsearch") -> Iterator[None]:
    """Turn client exceptions into one-line rotator errors naming what was done and where."""
    try:
        yield
    except ApiError as exc:
        raise _api_error(what, where, exc) from None
    except TransportError as exc:
        raise AuthorityUnavailable(
            f"{what}: cannot reach Elasticsearch at {where}: {_transport_reason(exc)}"
        ) from None


def _api_error(what: str, where: str, exc: ApiError) -> RotatorError:
    status = exc.status_code
    headers = exc.meta.headers if exc.meta is not None else {}
    if isinstance(exc, UnsupportedProductError) or headers.get("x-elastic-product") is None:
        if status in RETRY_STATUSES:  # a proxy or load balancer in front of Elasticsearch
            return AuthorityUnavailable(
                f"{what}: {where} answered {status} without reaching Elasticsearch"
            )
        return NotElasticsearch(
            f"{what}: {where} answered {status} but is not Elasticsearch (no X-Elastic-Product "
            "header); check elasticsearch.hosts"
        )
    detail = f"{what}: {where} answered {status} {_reason(exc)}"
    if status == 401:
        return AuthenticationFailed(detail)
    if status == 403:
        return PermissionDenied(detail)
    if status in RETRY_STATUSES or status >= 500:
        return AuthorityUnavailable(detail)
    return AuthorityRejected(detail)


def _reason(exc: ApiError) -> str:
    """Elasticsearch's error type and reason; a body that is not Elasticsearch's is not echoed."""
    body = exc.body
    if not isinstance(body, dict):
        kind = (exc.meta.headers.get("content-type") if exc.meta is not None else None) or "text"
        return f"with a {kind.split(';')[0]} body, not an Elasticsearch error"
    error = body.get("error")
    if isinstance(error, dict):
        text = f"{error.get('type', 'error')}: {error.get('reason', '')}"
    else:
        text = str(error or "")
    return _short(text)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^)\]'\"]+)")


def _transport_reason(exc: TransportError) -> str:
    """The root cause of a transport failure in a few words (``Connection refused``)."""
    if isinstance(exc, ConnectionTimeout):
        return "timed out"
    if isinstance(exc, SSLError):
        return "TLS handshake failed (check elasticsearch.ca_certs and verify_certs)"
    if isinstance(exc, SerializationError):
        return "the answer could not be read"
    cause: BaseException | None = exc
    while cause is not None:  # the client keeps the root cause (an OSError) in the chain
        if isinstance(cause, OSError) and cause.strerror:
            return str(cause.strerror)
        found = _ERRNO.search(str(cause))
        if found:
            return found.group(1).strip()
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


def _ms(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, UTC)


def _info(doc: Mapping[str, Any]) -> KeyInfo:
    creation = _ms(doc.get("creation"))
    return KeyInfo(
        id=doc["id"],
        name=doc.get("name") or "",
        creation=creation or datetime.fromtimestamp(0, UTC),
        expiration=_ms(doc.get("expiration")),
        invalidated=bool(doc.get("invalidated")),
        username=doc.get("username", ""),
        metadata=doc.get("metadata") or {},
        role_descriptors=doc.get("role_descriptors") or {},
        type=doc.get("type") or "rest",
        realm=doc.get("realm") or "",
        realm_type=doc.get("realm_type"),
        invalidation=_ms(doc.get("invalidation")),
    )


def _invalidation_errors(details: Sequence[Any], ids: Sequence[str]) -> dict[str, str]:
    """Each ``error_details`` entry under the asked id its reason names (``""`` when none)."""
    asked = set(ids)
    errors: dict[str, str] = {}
    for detail in details:
        entry = detail if isinstance(detail, Mapping) else {}
        reason = f"{entry.get('type', 'error')}: {entry.get('reason', '')}"
        cause = entry.get("caused_by")
        if isinstance(cause, Mapping) and cause.get("reason"):
            reason += f" (caused by {cause.get('type', 'error')}: {cause['reason']})"
        named = [m for m in re.findall(r"\[([^\]\s]+)\]", reason) if m in asked]
        key = named[0] if named else ""
        errors[key] = f"{errors[key]}; {reason}" if key in errors else reason
    return errors


class ElasticKeyAuthority:
    """Rotator's own API keys, through the official client, as a manage_own_api_key user."""

    def __init__(
        self, client: Elasticsearch, key_client: Callable[[str], Elasticsearch] | None = None
    ):
        self._es = client
        self._key_client = key_client or self._client_for_key
        self._where = ", ".join(str(n.base_url) for n in client.transport.node_pool.all())

    def _client_for_key(self, encoded: str) -> Elasticsearch:
        return self._es.options(api_key=encoded)

    def whoami(self) -> dict[str, Any]:
        """The authenticated identity (``_security/_authenticate``)."""
        with translated("authenticate", self._where):
            return dict(self._es.security.authenticate().body)

    def create(
        self,
        name: str,
        expiration_seconds: int,
        role_descriptors: Mapping[str, Any],
        metadata: Mapping[str, Any],
    ) -> Credential:
        """Create a key; the secret is registered for log redaction before anything else."""
        # Never re-sent by the client: a lost answer may hide a created key, which the caller
        # reconciles by the rotation id in its metadata instead.
        once = self._es.options(max_retries=0, retry_on_timeout=False)
        with translated(f"create API key {name}", self._where):
            body = once.security.create_api_key(
                name=name,
                expiration=f"{expiration_seconds}s",
                role_descriptors=dict(role_descriptors),
                metadata=dict(metadata),
            ).body
        missing = [f for f in ("id", "name", "api_key", "encoded") if not body.get(f)]
        if missing:
            raise AuthorityUnavailable(
                f"create API key {name}: {self._where} answered without {', '.join(missing)}"
            )
        register_secret(body["api_key"])
        register_secret(body["encoded"])
        return Credential(
            id=body["id"],
            name=body["name"],
            api_key=body["api_key"],
            encoded=body["encoded"],
            source=str(metadata.get("source", "")),
            expiration=_ms(body.get("expiration")),
        )

    def update(self, key_id: str, role_descriptors: Mapping[str, Any]) -> bool:
        """Replace the key's role descriptors (the owner may do this without a new secret)."""
        with translated(f"update API key {key_id}", self._where):
            body = self._es.security.update_api_key(
                id=key_id, role_descriptors=dict(role_descriptors)
            )
        return bool(body["updated"])

    def invalidate(self, ids: Sequence[str]) -> InvalidationResult:
        """Invalidate own keys by id, in one request; the answer says what became of each id.

        Ids unknown, another owner's or already invalidated are in no list. A failed request
        raises; an error for some ids (``error_details``) is reported per id instead.
        """
        if not ids:
            return InvalidationResult()
        with translated(f"invalidate {len(ids)} API key(s)", self._where):
            body = self._es.security.invalidate_api_key(ids=list(ids), owner=True).body
        return InvalidationResult(
            invalidated=tuple(body.get("invalidated_api_keys") or ()),
            previously_invalidated=tuple(body.get("previously_invalidated_api_keys") or ()),
            errors=_invalidation_errors(body.get("error_details") or [], ids),
        )

    def get(self, ids: Sequence[str]) -> dict[str, KeyInfo]:
        """Own keys by id, through one query (unknown ids are absent)."""
        found: dict[str, KeyInfo] = {}
        for start in range(0, len(ids), PAGE_SIZE):
            chunk = list(ids[start : start + PAGE_SIZE])
            query = {"ids": {"values": chunk}}
            found.update((k.id, k) for k in self._query(query, len(chunk)))
        return found

    def find_by_metadata(
        self, field: str, value: str, *, valid_only: bool = False
    ) -> list[KeyInfo]:
        """Own keys whose ``metadata.<field>`` equals ``value`` (all pages).

        With ``valid_only``, invalidated keys are left out by the query itself.
        """
        match: dict[str, Any] = {"term": {f"metadata.{field}": value}}
        if valid_only:
            match = {"bool": {"filter": [match, {"term": {"invalidated": False}}]}}
        return list(self.iter_query(match))

    def iter_by_metadata(self, field: str, value: str) -> Iterator[KeyInfo]:
        """Own keys whose ``metadata.<field>`` equals ``value``, a page at a time."""
        return self.iter_query({"term": {f"metadata.{field}": value}})

    def iter_query(
        self, query: Mapping[str, Any], *, page_size: int = PAGE_SIZE
    ) -> Iterator[KeyInfo]:
        """Every key matching ``query`` that this identity may see, paged with search_after."""
        for page in self.query_pages(query, page_size=page_size):
            yield from page

    def query_pages(
        self, query: Mapping[str, Any], *, page_size: int = PAGE_SIZE
    ) -> Iterator[list[KeyInfo]]:
        """The keys matching ``query`` one page (one request) at a time; see :meth:`query_page`."""
        after: list[Any] | None = None
        remaining: int | None = None
        while True:
            page = self.query_page(query, page_size=page_size, after=after)
            if remaining is None:
                remaining = page.total
            remaining -= len(page.keys)
            if page.keys:
                yield page.keys
            if page.after is None or remaining <= 0:
                return
            after = page.after

    def query_page(
        self, query: Mapping[str, Any], *, page_size: int = PAGE_SIZE, after: list[Any] | None
    ) -> KeyPage:
        """One page of the keys matching ``query``, after the page that ended at ``after``.

        Sorted by creation time, then index order (``_doc``), so keys created in the same
        millisecond are neither skipped nor repeated between pages. ``after`` of the answer is
        None on a short page: no empty page is ever fetched after the last one.
        """
        with translated("query API keys", self._where):
            body = self._es.security.query_api_keys(
                query=dict(query),
                size=page_size,
                sort=["creation", "_doc"],
                search_after=after,
            ).body
        docs = body.get("api_keys", [])
        last = docs[-1].get("_sort") if len(docs) == page_size else None
        return KeyPage([_info(d) for d in docs], int(body.get("total", len(docs))), last)

    def _query(self, query: Mapping[str, Any], size: int) -> list[KeyInfo]:
        with translated("query API keys", self._where):
            body = self._es.security.query_api_keys(query=dict(query), size=size).body
        return [_info(d) for d in body.get("api_keys", [])]

    def existing_users(self, names: Sequence[str]) -> set[str]:
        """Which of these users exist in the native realm (one request; needs read_security)."""
        if not names:
            return set()
        with translated(f"look up {len(names)} user(s)", self._where):
            try:
                body = self._es.security.get_user(username=list(names)).body
            except NotFoundError:
                return set()
        return {str(name) for name in body}

    def check_privileges(self, credential: Credential, body: Mapping[str, Any]) -> dict[str, Any]:
        """Authenticate as the new key, then ask ``_has_privileges`` as that key."""
        as_key = self._key_client(credential.encoded)
        with translated(f"authenticate as new key {credential.id}", self._where):
            me = as_key.security.authenticate().body
        if (me.get("api_key") or {}).get("id") != credential.id:
            raise AuthorityRejected(f"authenticating as key {credential.id} gave another identity")
        with translated(f"check privileges of key {credential.id}", self._where):
            return dict(as_key.security.has_privileges(**dict(body)).body)

    def check_own_privileges(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``_has_privileges`` as rotator's own identity."""
        with translated("check rotator's own privileges", self._where):
            return dict(self._es.security.has_privileges(**dict(body)).body)


# --- other parties, as the demo and operators' tooling play them ---------------------------------


class ClusterAdmin:
    """A security administrator: sets up rotator's role and user (the demo plays this part)."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self._es = Elasticsearch(url, basic_auth=(username, password))
        self._where = url

    def put_role(self, name: str, body: Mapping[str, Any]) -> None:
        """Create or replace a role."""
        with translated(f"put role {name}", self._where):
            self._es.security.put_role(name=name, **dict(body))

    def put_user(self, username: str, password: str, roles: Sequence[str]) -> None:
        """Create or replace a native user (the password is registered for redaction)."""
        register_secret(password)
        with translated(f"put user {username}", self._where):
            self._es.security.put_user(username=username, password=password, roles=list(roles))


def key_authenticates(url: str, key_id: str, secret: str) -> bool:
    """Whether Elasticsearch accepts this key now (a shipper's view of its credential)."""
    es = Elasticsearch(url, api_key=(key_id, secret))
    try:
        with translated(f"authenticate as key {key_id}", url):
            me = es.security.authenticate().body
    except AuthenticationFailed:
        return False
    return bool((me.get("api_key") or {}).get("id") == key_id)


def ship(url: str, key_id: str, secret: str, index: str, document: Mapping[str, Any]) -> str:
    """Index one document as a shipper holding this key; returns Elasticsearch's ``result``."""
    es = Elasticsearch(url, api_key=(key_id, secret))
    with translated(f"index a document into {index}", url):
        return str(es.index(index=index, document=dict(document)).body["result"])


# --- shipping the audit trail (rotator.audit_ship) -----------------------------------------------


class BulkItem:
    """One item of a ``_bulk`` answer: the document id, its status and, when it failed, why."""

    __slots__ = ("doc_id", "error_type", "reason", "status")

    def __init__(self, doc_id: str, status: int, error_type: str = "", reason: str = "") -> None:
        self.doc_id = doc_id
        self.status = status
        self.error_type = error_type
        self.reason = reason

    def __repr__(self) -> str:
        return f"BulkItem({self.doc_id!r}, {self.status}, {self.error_type!r})"

    @property
    def ok(self) -> bool:
        """Whether the document is in the index now (created, or there already: a 409 conflict)."""
        return self.status in (200, 201) or self.already_there

    @property
    def already_there(self) -> bool:
        """A create refused because a document with this id exists (an earlier attempt landed)."""
        return self.status == 409 and self.error_type == "version_conflict_engine_exception"


class AuditShipClient:
    """Writes audit documents into a data stream with ``_bulk``, and reads back the newest one.

    Built with the shipping key to write (:meth:`with_key`), or as rotator itself to read
    (:meth:`as_rotator`). The client never retries on its own: the shipper retries whole batches
    with its clock's backoff.
    """

    def __init__(self, client: Elasticsearch) -> None:
        self._es = client
        self._where = ", ".join(str(n.base_url) for n in client.transport.node_pool.all())

    @classmethod
    def with_key(cls, config: ElasticsearchConfig, encoded: str) -> AuditShipClient:
        """A client authenticating with an API key (``encoded``: base64 of ``id:api_key``)."""
        register_secret(encoded)
        tls: dict[str, Any] = {} if config.ca_certs is None else {"ca_certs": config.ca_certs}
        return cls(
            ObservedElasticsearch(
                list(config.hosts),
                api_key=encoded,
                verify_certs=config.verify_certs,
                request_timeout=config.request_timeout.total_seconds(),
                max_retries=0,
                retry_on_timeout=False,
                **tls,
            )
        )

    @classmethod
    def as_rotator(cls, config: ElasticsearchConfig) -> AuditShipClient:
        """A client with rotator's own credentials (which must be able to read the stream)."""
        return cls(client_from_config(config).options(max_retries=0, retry_on_timeout=False))

    def bulk_create(
        self, index: str, documents: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[BulkItem]:
        """Create each ``(id, document)`` in ``index`` (``op_type: create``), in one request.

        Raises:
            AuthorityUnavailable: no answer, a 429 or 5xx, or an answer that is not a bulk one.
            AuthenticationFailed, PermissionDenied, AuthorityRejected: the request was refused.
        """
        operations: list[Mapping[str, Any]] = []
        for doc_id, document in documents:
            operations += [{"create": {"_index": index, "_id": doc_id}}, document]
        with translated(f"ship {len(documents)} audit event(s) to {index}", self._where):
            body = self._es.bulk(operations=operations).body
        items = body.get("items") if isinstance(body, Mapping) else None
        if not isinstance(items, list) or len(items) != len(documents):
            raise AuthorityUnavailable(
                f"ship audit events to {index}: {self._where} answered without one item per "
                "document"
            )
        out = []
        for (doc_id, _), item in zip(documents, items, strict=True):
            result: Any = next(iter(item.values()), {}) if isinstance(item, Mapping) else {}
            error = result.get("error") if isinstance(result, Mapping) else None
            error = error if isinstance(error, Mapping) else {}
            out.append(
                BulkItem(
                    str(result.get("_id", doc_id)),
                    int(result.get("status", 0)),
                    str(error.get("type", "")),
                    _short(str(error.get("reason", ""))),
                )
            )
        return out

    def newest(self, index: str, field: str) -> dict[str, Any] | None:
        """The ``_source`` of the document with the highest ``field`` in ``index`` (None: none).

        Raises:
            RotatorError: the search failed (a missing data stream is no error: None).
        """
        with translated(f"read the newest document of {index}", self._where):
            try:
                body = self._es.search(
                    index=index,
                    size=1,
                    sort=[{field: {"order": "desc", "unmapped_type": "long"}}],
                    query={"match_all": {}},
                ).body
            except NotFoundError:
                return None
        hits = (body.get("hits") or {}).get("hits") or []
        return dict(hits[0].get("_source") or {}) if hits else None


# --- request metrics ----------------------------------------------------------------------------

RequestObserver = Callable[[str, str], None]
_request_observer: RequestObserver | None = None


def set_request_observer(observer: RequestObserver | None) -> None:
    """Have ``observer(endpoint, status)`` told of every API call rotator's own clients make.

    ``endpoint`` is the client's name for the API (``security.query_api_keys``, ``bulk``),
    never a URL with ids in it; ``status`` the HTTP status of the answer, or ``unreachable``
    when none came (after the client's own retries). None stops telling.
    """
    global _request_observer
    _request_observer = observer


def _observed(endpoint: str | None, status: str) -> None:
    observer = _request_observer
    if observer is not None:
        observer(endpoint or "other", status)


class ObservedElasticsearch(Elasticsearch):
    """The client rotator acts through, telling the request observer of each API call
    (copies made by ``options()`` are of this class too)."""

    def perform_request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any | None = None,
        endpoint_id: str | None = None,
        path_parts: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            response = super().perform_request(
                method,
                path,
                params=params,
                headers=headers,
                body=body,
                endpoint_id=endpoint_id,
                path_parts=path_parts,
            )
        except ApiError as exc:
            _observed(endpoint_id, str(exc.status_code))
            raise
        except TransportError:
            _observed(endpoint_id, "unreachable")
            raise
        _observed(endpoint_id, str(response.meta.status))
        return response
