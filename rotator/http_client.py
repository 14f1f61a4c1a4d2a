"""The one place rotator makes outbound HTTP requests (webhook delivery, notifications).

Every request goes through an :class:`httpx.Client` built by :func:`client`:

- a timeout for connecting, writing, reading and waiting for a connection;
- TLS certificates and host names always verified, against the system's trust store or a
  given CA file (``ca_file``); there is no switch to turn verification off;
- redirects never followed (a redirect could carry what is sent elsewhere): a 3xx is an answer
  like any other, for the caller to judge;
- proxy variables of the environment (``HTTPS_PROXY``, ``NO_PROXY``...) ignored: a proxy is used
  only when one is configured;
- a ``User-Agent`` naming rotator.

:func:`post` sends one POST and reads the status, a few headers and the start of the answer's
body (never more than a small, fixed number of bytes). Failures to reach the receiver raise
:class:`httpx.HTTPError` subclasses; :func:`failure_kind` and :func:`tls_refusal` say what kind
of failure one was without quoting the receiver.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import httpx

__all__ = [
    "USER_AGENT",
    "Reply",
    "client",
    "failure_kind",
    "post",
    "tls_context",
    "tls_refusal",
]


def _version() -> str:
    try:
        return version("rotator")
    except PackageNotFoundError:
        return "dev"


USER_AGENT = f"rotator/{_version()}"
# How much of an answer's body is read: enough for an error message, never a large download.
BODY_LIMIT = 2048


@dataclass(frozen=True)
class Reply:
    """What a receiver answered: status, reason phrase, a few headers, the start of the body."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    truncated: bool

    def header(self, name: str) -> str | None:
        """A header's value (case-insensitive name), or None."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The TLS settings of every outbound request: certificate and host name always checked.

    Args:
        ca_file: a PEM file of the certificates to trust instead of the system's trust store.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def client(
    *,
    timeout: float,
    ca_file: str | None = None,
    proxy: str | None = None,
) -> httpx.Client:
    """A client with rotator's settings (see the module's description); the caller closes it.

    Args:
        timeout: seconds allowed for each of connecting, writing, reading and pooling.
        ca_file: a PEM file of the certificates to trust (the system's trust store by default).
        proxy: the proxy URL to use; None means none (the environment's are ignored).
    """
    return httpx.Client(
        timeout=httpx.Timeout(timeout),
        verify=tls_context(ca_file),
        follow_redirects=False,
        trust_env=False,
        proxy=proxy,
        headers={"User-Agent": USER_AGENT},
    )


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    ca_file: str | None = None,
    proxy: str | None = None,
    limit: int = BODY_LIMIT,
) -> Reply:
    """POST ``body`` to ``url`` once and read the answer (at most ``limit`` bytes of its body).

    Raises:
        httpx.HTTPError: the receiver could not be reached or the exchange broke off (a
            :class:`httpx.TransportError`); see :func:`failure_kind` and :func:`tls_refusal`.
        httpx.InvalidURL: the URL cannot be sent.
        ValueError: a header cannot be sent.
    """
    with (
        client(timeout=timeout, ca_file=ca_file, proxy=proxy) as http,
        http.stream("POST", url, content=body, headers=dict(headers)) as response,
    ):
        data = bytearray()
        for chunk in response.iter_bytes():
            data.extend(chunk)
            if len(data) >= limit:
                break
        return Reply(
            status=response.status_code,
            reason=response.reason_phrase,
            headers=dict(response.headers),
            body=bytes(data[:limit]),
            truncated=len(data) >= limit,
        )


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from, outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def tls_refusal(exc: BaseException) -> str | None:
    """Why the receiver's certificate was not accepted, when that is what ``exc`` is; else None."""
    for link in _chain(exc):
        if isinstance(link, ssl.SSLCertVerificationError):
            return link.verify_message or link.reason or "verification failed"
    return None


def failure_kind(exc: BaseException) -> str:
    """The kind of a transport failure in a few words, quoting nothing the receiver sent:
    ``ConnectionRefusedError (Connection refused)``, ``ReadTimeout``."""
    for link in _chain(exc):
        if isinstance(link, OSError) and link.strerror:
            return f"{type(link).__name__} ({link.strerror})"
    return type(exc).__name__
