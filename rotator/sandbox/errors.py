"""Elasticsearch-shaped errors: the exception the sandbox raises and the body it renders."""

from __future__ import annotations

from typing import Any


class EsError(Exception):
    """An error answered exactly as Elasticsearch answers it.

    Attributes:
        status: the HTTP status.
        error_type: ``error.type`` (e.g. ``security_exception``).
        reason: ``error.reason``.
        metadata: extra fields shown inside ``error`` and its root cause.
        headers: HTTP response headers (lists of values), also shown as ``error.header``.
        response_headers: HTTP response headers that the body does not show (``Retry-After``).
        caused_by: an optional ``caused_by`` object.
    """

    def __init__(
        self,
        status: int,
        error_type: str,
        reason: str | None,
        *,
        metadata: dict[str, Any] | None = None,
        headers: dict[str, list[str]] | None = None,
        caused_by: dict[str, Any] | None = None,
        root_cause: list[dict[str, Any]] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.error_type = error_type
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.headers = dict(headers or {})
        self.caused_by = caused_by
        self.root_cause = root_cause
        self.response_headers = dict(response_headers or {})

    def as_object(self) -> dict[str, Any]:
        """The error as the inner object (``error`` of a response, or an ``error_details`` item)."""
        inner: dict[str, Any] = {"type": self.error_type, "reason": self.reason}
        inner.update(self.metadata)
        if self.headers:
            inner["header"] = {k: v if len(v) > 1 else v[0] for k, v in self.headers.items()}
        if self.caused_by is not None:
            inner["caused_by"] = self.caused_by
        return inner

    def body(self) -> dict[str, Any]:
        """The whole response body: ``{"error": {...}, "status": N}``."""
        inner = self.as_object()
        root = self.root_cause
        if root is None:
            root = [{k: v for k, v in inner.items() if k != "caused_by"}]
        return {"error": {"root_cause": root, **inner}, "status": self.status}


def bad_request(reason: str, error_type: str = "illegal_argument_exception") -> EsError:
    """A 400 with the given type (``illegal_argument_exception`` by default)."""
    return EsError(400, error_type, reason)


def validation_failed(*messages: str) -> EsError:
    """A 400 ``action_request_validation_exception`` listing numbered messages."""
    text = "".join(f"{i}: {m};" for i, m in enumerate(messages, start=1))
    return EsError(400, "action_request_validation_exception", f"Validation Failed: {text}")


def parse_error(reason: str) -> EsError:
    """A 400 ``parse_exception``."""
    return EsError(400, "parse_exception", reason)


def not_found(reason: str, error_type: str = "resource_not_found_exception") -> EsError:
    """A 404."""
    return EsError(404, error_type, reason)
