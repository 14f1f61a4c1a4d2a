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
``http://`` is refused unless ``allow_insecure`` is true. Proxy variables are not used.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from rotator.clock import Clock
from rotator.config import WebhookSink
from rotator.delivery.common import credential_document, require_source
from rotator.errors import ConfigError, DeliveryFailed
from rotator.log import REDACTED, get_logger, redact_text, register_secret
from rotator.ports import Credential, DeliveryReceipt
from rotator.secrets import resolve_secret

SIGNATURE_HEADER = "X-Rotator-Signature"
TIMESTAMP_HEADER = "X-Rotator-Timestamp"
_SNIPPET_BYTES = 2048
_SNIPPET_CHARS = 200
_TRAILING_TOKEN = re.compile(r"[^\s\"',;<>]+$")


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
        """``webhook:<url>`` without credentials, query or fragment."""
        return f"webhook:{_display_url(self._url)}"

    def deliver(self, credential: Credential) -> DeliveryReceipt:
        """POST the signed credential, retrying transient failures.

        Raises:
            DeliveryFailed: the URL is not allowed, the HMAC secret is missing, the receiver
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

    def _require_allowed_url(self) -> None:
        scheme = self._url.scheme
        if scheme == "http" and not self._config.allow_insecure:
            raise DeliveryFailed(
                f"{self.name}: plain http would send the credential unencrypted; use https or "
                "set allow_insecure: true"
            )
        if scheme not in ("http", "https") or not self._url.hostname or not _valid_port(self._url):
            raise DeliveryFailed(f"{self.name}: expected an https:// URL with a host (and port)")

    def _hmac_key(self) -> bytes:
        at = f"sources[{self._source}].deliver[webhook].hmac_secret"
        config = self._config
        try:
            secret = resolve_secret(
                config.hmac_secret_env, config.hmac_secret_file, at, self._environ
            )
        except ConfigError as exc:
            raise DeliveryFailed(f"{self.name}: {'; '.join(exc.problems)}") from None
        if secret is None:
            raise DeliveryFailed(f"{self.name}: {at}_env or {at}_file must name the signing secret")
        register_secret(secret)
        return secret.encode()

    def _send(self, body: bytes, key: bytes, credential: Credential) -> DeliveryReceipt:
        attempts = self._config.retries + 1
        problem, wait = "", 0.0
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                self._log.warning("webhook_retry", attempt=attempt, after=problem, wait=wait)
                self._clock.sleep(wait)
            reply, problem = self._attempt(body, key, credential)
            if reply is not None and 200 <= reply.status < 300:
                detail = f"HTTP {reply.status} on attempt {attempt} of {attempts}"
                target = _display_url(self._url)
                return DeliveryReceipt(sink="webhook", target=target, detail=detail)
            wait = self._delay(attempt, reply.retry_after if reply else None)
        raise DeliveryFailed(f"{self.name}: {problem} (after {attempts} attempt(s))")

    def _attempt(
        self, body: bytes, key: bytes, credential: Credential
    ) -> tuple[_Reply | None, str]:
        """Make one attempt: a reply worth retrying or a transient problem, else raise."""
        try:
            reply = _post(self._url, body, self._headers(body, key), self._timeout)
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or exc.reason or "verification failed"
            raise DeliveryFailed(f"{self.name}: TLS certificate not accepted: {reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            return None, _scrub(f"connection failed: {_describe(exc)}", credential)
        if 200 <= reply.status < 300 or reply.retryable:
            return reply, _scrub(f"HTTP {reply.status} {reply.reason}".strip(), credential)
        raise DeliveryFailed(self._refusal(reply, credential))

    def _headers(self, body: bytes, key: bytes) -> dict[str, str]:
        timestamp = str(int(self._clock.now().timestamp()))
        return {
            "Content-Type": "application/json",
            "User-Agent": "rotator-webhook",
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

    def _refusal(self, reply: _Reply, credential: Credential) -> str:
        status = _scrub(f"{self.name}: HTTP {reply.status} {reply.reason}".rstrip(), credential)
        if 300 <= reply.status < 400:
            target = _scrub(reply.location or "(no Location)", credential)[:_SNIPPET_CHARS]
            return (
                f"{status}: a redirect to {target}; redirects are never followed, so that the "
                "credential cannot be carried elsewhere"
            )
        snippet = _scrub(" ".join(reply.text.split()), credential)[:_SNIPPET_CHARS]
        return f"{status}: the receiver refused the credential" + (
            f": {snippet}" if snippet else ""
        )


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
    """Send one POST and read the answer; http.client never follows redirects."""
    connection = _connection(url, timeout)
    try:
        connection.request("POST", _request_target(url), body=body, headers=dict(headers))
        response = connection.getresponse()
        text = _head(response.read(_SNIPPET_BYTES))
        return _Reply(
            status=response.status,
            reason=response.reason or "",
            retry_after=_retry_after(response.getheader("Retry-After")),
            location=response.getheader("Location"),
            text=text,
        )
    finally:
        connection.close()


def _head(data: bytes) -> str:
    """Decode the start of a response body, dropping a token the byte limit may have cut.

    A cut secret could not be recognised and replaced later, so the partial token goes.
    """
    text = data.decode("utf-8", "replace")
    return _TRAILING_TOKEN.sub("", text) if len(data) >= _SNIPPET_BYTES else text


def _connection(url: SplitResult, timeout: float) -> http.client.HTTPConnection:
    host = url.hostname or ""
    if url.scheme == "https":
        return http.client.HTTPSConnection(host, url.port, timeout=timeout, context=tls_context())
    return http.client.HTTPConnection(host, url.port, timeout=timeout)


def tls_context() -> ssl.SSLContext:
    """The TLS settings of every webhook: system trust store, certificate and host name checked."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _request_target(url: SplitResult) -> str:
    path = url.path or "/"
    return f"{path}?{url.query}" if url.query else path


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


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _scrub(text: str, credential: Credential) -> str:
    for secret in (credential.encoded, credential.api_key):
        if secret:
            text = text.replace(secret, REDACTED)
    return redact_text(text)
