"""Webhook sink: POSTs the credential as JSON over HTTPS, signed with HMAC-SHA256.

The request::

    POST <url>
    Content-Type: application/json
    X-Rotator-Timestamp: 1767225600
    X-Rotator-Signature: sha256=<hex>

    {"id":"...","name":"...","api_key":"...","encoded":"...","expiration":"...Z","source":"..."}

``expiration`` is ISO-8601 UTC, or null when the key does not expire. ``X-Rotator-Timestamp`` is
the sending time in whole Unix seconds. The signature is the lowercase hex HMAC-SHA256, keyed with
the shared secret (``hmac_secret_env`` / ``hmac_secret_file``, UTF-8, surrounding whitespace
stripped), of the timestamp, a dot, and the exact body bytes::

    signed = timestamp.encode() + b"." + body
    expected = "sha256=" + hmac.new(secret, signed, hashlib.sha256).hexdigest()

A receiver verifies with a constant-time comparison (``hmac.compare_digest``) over the raw body,
before parsing it, and refuses timestamps more than a few minutes from its own clock, so that a
captured request cannot be replayed later. Each attempt is signed afresh.

Any 2xx answer means delivered. Connection errors, timeouts, 429 and 5xx are retried ``retries``
times with exponential backoff (honouring a ``Retry-After`` in seconds); other answers, redirects
included, fail at once. Redirects are never followed: one could carry the credential elsewhere.
TLS certificates and host names are always verified against the system's trust store; plain
``http://`` is refused unless ``allow_insecure`` is true. Proxy variables are not used. The URL
must be ASCII without spaces or control characters (percent-encode anything else); userinfo in it
is never sent. Requests go through :mod:`rotator.http_client`, rotator's one outbound HTTP client.

A failed delivery raises :class:`~rotator.delivery.common.SinkFailed`: its ``summary`` names the
sink and the HTTP status (with the standard phrase) or the kind of connection failure, and nothing
the receiver sent; the message adds the receiver's answer (reason phrase, body start or redirect
target), scrubbed of every encoding of the credential and capped.
"""

from __future__ import annotations

import hashlib
import hmac
import http
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpx

from rotator import http_client
from rotator.clock import Clock
from rotator.config import WebhookSink
from rotator.delivery.common import SinkFailed, credential_document, printable, require_source
from rotator.delivery.scrub import excerpt
from rotator.errors import ConfigError
from rotator.http_client import tls_context
from rotator.log import get_logger, register_secret
from rotator.ports import Credential, DeliveryReceipt
from rotator.secrets import resolve_secret

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookDelivery", "sign", "tls_context"]

SIGNATURE_HEADER = "X-Rotator-Signature"
TIMESTAMP_HEADER = "X-Rotator-Timestamp"
_SNIPPET_BYTES = 2048
_SNIPPET_CHARS = 200
# What can be put on the request line: printable ASCII without spaces.
_SENDABLE = re.compile(r"[!-~]*")
_TRAILING_TOKEN = re.compile(r"[^\s\"',;<>]+$")


@dataclass(frozen=True)
class _Problem:
    """Why an attempt failed: what to summarise and what the receiver sent (scrubbed)."""

    summary: str
    output: str = ""


@dataclass(frozen=True)
class _Reply:
    """What the receiver answered to one attempt."""

    status: int
    reason: str
    retry_after: float | None
    location: str | None
    text: str

    @property
    def retryable(self) -> bool:
        """Whether another attempt may succeed (429 and 5xx)."""
        return self.status == 429 or self.status >= 500


class WebhookDelivery:
    """POSTs the credential, signed, to a receiver (a Sink)."""

    def __init__(
        self,
        config: WebhookSink,
        *,
        clock: Clock,
        source: str,
        environ: Mapping[str, str] | None = None,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
    ) -> None:
        """Prepare the sink.

        Args:
            config: the sink's settings.
            clock: the time for the timestamp header; waits between attempts.
            source: the name of the source this sink delivers for.
            environ: where ``hmac_secret_env`` is looked up (the process environment by default).
            backoff: the wait before the first retry, in seconds; it doubles with each retry.
            max_backoff: the longest wait between two attempts, in seconds.
        """
        self._config = config
        self._clock = clock
        self._source = source
        self._environ = environ
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._url = urlsplit(config.url)
        self._log = get_logger("rotator.delivery.webhook", sink=self.name, source=source)

    @property
    def name(self) -> str:
        """``webhook:<url>`` without userinfo, query or fragment; control characters escaped."""
        return f"webhook:{printable(_display_url(self._url))}"

    def deliver(self, credential: Credential) -> DeliveryReceipt:
        """POST the signed credential, retrying transient failures.

        Raises:
            SinkFailed: the URL is not allowed, the HMAC secret is missing, the receiver
                refused the credential, or every attempt failed.
        """
        require_source(credential, self._source, self.name)
        self._require_allowed_url()
        key = self._hmac_key()
        body = _body(credential, self._source)
        return self._send(body, key, credential)

    def acknowledge(self, credential: Credential) -> bool:
        """A webhook has no acknowledgement beyond its 2xx answer: always True."""
        return True

    def check(self, state: Mapping[str, Any]) -> str | None:
        """A receiver keeps nothing rotator could look at later: always None (cannot tell).

        Its 2xx answer is the only evidence of delivery; asking it again would mean sending the
        credential again.
        """
        return None

    def _require_allowed_url(self) -> None:
        scheme = self._url.scheme
        if not _SENDABLE.fullmatch(self._config.url):
            raise SinkFailed(
                f"{self.name}: the URL holds non-ASCII, space or control characters, which "
                "cannot be sent; percent-encode them"
            )
        if scheme == "http" and not self._config.allow_insecure:
            raise SinkFailed(
                f"{self.name}: plain http would send the credential unencrypted; use https or "
                "set allow_insecure: true"
            )
        if scheme not in ("http", "https") or not self._url.hostname or not _valid_port(self._url):
            raise SinkFailed(f"{self.name}: expected an https:// URL with a host (and port)")

    def _hmac_key(self) -> bytes:
        at = f"sources[{self._source}].deliver[webhook].hmac_secret"
        config = self._config
        try:
            secret = resolve_secret(
                config.hmac_secret_env, config.hmac_secret_file, at, self._environ
            )
        except ConfigError as exc:
            raise SinkFailed(f"{self.name}: {'; '.join(exc.problems)}") from None
        if secret is None:
            raise SinkFailed(f"{self.name}: {at}_env or {at}_file must name the signing secret")
        register_secret(secret)
        return secret.encode()

    def _send(self, body: bytes, key: bytes, credential: Credential) -> DeliveryReceipt:
        attempts = self._config.retries + 1
        problem, wait = _Problem(""), 0.0
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                self._log.warning(
                    "webhook_retry", attempt=attempt, after=problem.summary, wait=wait
                )
                self._clock.sleep(wait)
            reply, problem = self._attempt(body, key, credential)
            if reply is not None and 200 <= reply.status < 300:
                detail = f"HTTP {reply.status} on attempt {attempt} of {attempts}"
                target = _display_url(self._url)
                return DeliveryReceipt(sink="webhook", target=target, detail=detail)
            wait = self._delay(attempt, reply.retry_after if reply else None)
        summary = f"{self.name}: {problem.summary} (after {attempts} attempt(s))"
        raise SinkFailed(summary, problem.output, label="answer")

    def _attempt(
        self, body: bytes, key: bytes, credential: Credential
    ) -> tuple[_Reply | None, _Problem]:
        """Make one attempt: a reply worth retrying or a transient problem, else raise."""
        try:
            reply = _post(self._url, body, self._headers(body, key), self._timeout)
        except httpx.TransportError as exc:
            reason = http_client.tls_refusal(exc)
            if reason is not None:
                raise SinkFailed(
                    f"{self.name}: TLS certificate not accepted", excerpt(reason, credential)
                ) from None
            return None, _connection_problem(exc, credential)
        except (httpx.InvalidURL, httpx.HTTPError, ValueError) as exc:
            # What cannot be put on the wire (UnicodeEncodeError included).
            raise SinkFailed(
                f"{self.name}: the request cannot be sent ({type(exc).__name__})"
            ) from None
        if 200 <= reply.status < 300 or reply.retryable:
            return reply, _Problem(_status(reply.status), _answer(reply, credential))
        raise self._refusal(reply, credential)

    def _headers(self, body: bytes, key: bytes) -> dict[str, str]:
        timestamp = str(int(self._clock.now().timestamp()))
        return {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(key, timestamp, body),
        }

    @property
    def _timeout(self) -> float:
        return self._config.timeout.total_seconds()

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self._max_backoff, self._backoff * 2.0 ** (attempt - 1))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self._max_backoff))
        return delay

    def _refusal(self, reply: _Reply, credential: Credential) -> SinkFailed:
        status = f"{self.name}: {_status(reply.status)}"
        if 300 <= reply.status < 400:
            target = excerpt(reply.location or "(no Location)", credential, limit=_SNIPPET_CHARS)
            return SinkFailed(
                f"{status}: a redirect, never followed so that the credential cannot be carried "
                "elsewhere",
                target,
                label="to",
            )
        summary = f"{status}: the receiver refused the credential"
        return SinkFailed(summary, _answer(reply, credential), label="answer")


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    """Return the ``X-Rotator-Signature`` value for a body sent at ``timestamp``."""
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _body(credential: Credential, source: str) -> bytes:
    document = {
        **credential_document(credential),
        "source": source,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def _post(url: SplitResult, body: bytes, headers: Mapping[str, str], timeout: float) -> _Reply:
    """Send one POST through the shared client (which never follows redirects) and read the
    answer's start."""
    reply = http_client.post(
        _request_url(url), body, headers, timeout=timeout, limit=_SNIPPET_BYTES
    )
    return _Reply(
        status=reply.status,
        reason=reply.reason,
        retry_after=_retry_after(reply.header("Retry-After")),
        location=reply.header("Location"),
        text=_head(reply.body, reply.truncated),
    )


def _head(data: bytes, truncated: bool) -> str:
    """Decode the start of a response body, dropping a token the byte limit may have cut.

    A cut secret could not be recognised and replaced later, so the partial token goes.
    """
    text = data.decode("utf-8", "replace")
    return _TRAILING_TOKEN.sub("", text) if truncated else text


def _request_url(url: SplitResult) -> str:
    """The URL to send to: no userinfo (never sent as credentials), no fragment."""
    host = url.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = f":{url.port}" if url.port else ""
    path = url.path or "/"
    query = f"?{url.query}" if url.query else ""
    return f"{url.scheme}://{host}{port}{path}{query}"


def _display_url(url: SplitResult) -> str:
    if not url.hostname:
        return ""
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    port = f":{url.port}" if _valid_port(url) and url.port else ""
    return f"{url.scheme}://{host}{port}{url.path}"


def _valid_port(url: SplitResult) -> bool:
    try:
        _ = url.port
    except ValueError:
        return False
    return True


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def _status(status: int) -> str:
    """``HTTP 503 Service Unavailable``: the phrase is the standard one, not the receiver's."""
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP {status} {phrase}".rstrip()


def _answer(reply: _Reply, credential: Credential) -> str:
    """The receiver's reason phrase (when not the standard one) and body start, scrubbed."""
    parts = [" ".join(reply.text.split())]
    standard = _status(reply.status).partition(" ")[2].partition(" ")[2]
    if reply.reason and reply.reason != standard:
        parts.insert(0, reply.reason)
    text = ": ".join(part for part in parts if part)
    return excerpt(text, credential, keep="head", limit=_SNIPPET_CHARS)


def _connection_problem(exc: httpx.TransportError, credential: Credential) -> _Problem:
    """Name the failure's kind in the summary; its text (which may quote the receiver) apart."""
    kind = http_client.failure_kind(exc)
    if "(" in kind:
        return _Problem(f"connection failed: {kind}")
    return _Problem(f"connection failed: {kind}", excerpt(str(exc), credential))
