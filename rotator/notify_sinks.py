"""Notification sinks (signed JSON webhook, Slack-compatible webhook, exec) and the dispatcher.

:func:`build_notifier` turns the ``notify`` section into the daemon's :class:`Notifier`: every
notice goes to the log, and to each sink whose filters take it, once per condition (see
:mod:`rotator.notify` for the deduplication rules), with retries.

What each sink is sent, always passed through the log's redaction first (so a secret that slipped
into a message, or any registered secret, never leaves)::

    {"kind": "rotation_failed", "severity": "warning", "subject": "web",
     "message": "...", "dedup_key": "rotation_failed:web", "details": {...},
     "reason": "new", "sent_at": "2026-11-30T12:00:00Z"}

``reason`` is ``new`` (first time), ``recurred`` (the condition came back after it ended, or a
failure streak started over) or ``reminder`` (``renotify_after`` passed).

- ``webhook``: POSTs that document as JSON, signed like the webhook delivery sink:
  ``X-Rotator-Timestamp`` (Unix seconds) and ``X-Rotator-Signature: sha256=<hex>``, the
  HMAC-SHA256 keyed with the shared secret (``hmac_secret_env``/``hmac_secret_file``) of
  ``<timestamp>.<body>``. A receiver recomputes it over the raw body with
  ``hmac.compare_digest`` and refuses old timestamps (no replays).
- ``slack``: POSTs ``{"text": "[WARNING] rotation_failed web: ..."}`` to an incoming webhook
  (Slack, Mattermost, Rocket.Chat and the like). Its URL is itself a secret: give it through
  ``url_env``/``url_file``.
- ``exec``: runs ``argv`` (no shell) with the document as one JSON line on its stdin, in its own
  process group killed at ``timeout``, with a few inherited variables (PATH, HOME, LANG...) and
  ``ROTATOR_NOTICE_KIND``/``ROTATOR_NOTICE_SEVERITY``.

Each attempt that fails for a reason another attempt may cure (connection failure, timeout, 429,
5xx, a command that failed) is retried ``retries`` times, waiting 1s, 2s, 4s... (at most 30s,
``Retry-After`` honoured) through the clock. Redirects, other 4xx answers, an untrusted
certificate or a missing secret fail at once. Outbound HTTP goes through
:mod:`rotator.http_client` (timeouts, TLS verification, no redirects, no proxy from the
environment).
"""

from __future__ import annotations

import http
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from rotator import http_client
from rotator.clock import Clock
from rotator.config_models import (
    Config,
    NotifyConfig,
    NotifyExec,
    NotifySinkBase,
    NotifySlack,
    NotifyWebhook,
)
from rotator.delivery.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from rotator.errors import ConfigError
from rotator.log import get_logger, redact_text, redact_value, register_secret
from rotator.model import iso
from rotator.notify import LogNotifier, Notice, NoticeKind, Notifier, Severity, at_least, ended_by
from rotator.secrets import resolve_secret

__all__ = [
    "Dispatcher",
    "ExecChannel",
    "NotifyFailed",
    "Route",
    "SentRecord",
    "SlackChannel",
    "SqlLedger",
    "WebhookChannel",
    "build_notifier",
    "render_document",
    "render_slack",
]

_log = get_logger("rotator.notify")


class NotifyFailed(Exception):
    """A sink did not take a notice. The message never holds a secret nor the receiver's text."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class Outgoing:
    """A notice on its way to one sink: why it is sent and when."""

    notice: Notice
    reason: str  # new, recurred, reminder
    sent_at: datetime


class Channel(Protocol):
    """Where a sink sends a notice (one attempt)."""

    @property
    def name(self) -> str:
        """How logs and the store name the sink."""
        ...

    def send(self, outgoing: Outgoing) -> None:
        """Send once.

        Raises:
            NotifyFailed: not taken; ``retryable`` says whether another attempt may succeed.
        """
        ...


# --- what is sent --------------------------------------------------------------------------------


def render_document(outgoing: Outgoing) -> dict[str, Any]:
    """The notice as the webhook and exec sinks send it, redacted."""
    document = {
        **outgoing.notice.to_json(),
        "reason": outgoing.reason,
        "sent_at": iso(outgoing.sent_at),
    }
    redacted: dict[str, Any] = redact_value(document)
    return redacted


def render_slack(outgoing: Outgoing) -> dict[str, str]:
    """``{"text": ...}`` for an incoming webhook: plain text, no emoji, redacted."""
    notice = outgoing.notice
    lines = [f"[{notice.severity.value.upper()}] {notice.kind.value} {notice.subject}"]
    lines.append(notice.message)
    details = {k: v for k, v in redact_value(dict(notice.details)).items() if v not in (None, "")}
    if details:
        lines.append(", ".join(f"{k}={_plain(v)}" for k, v in sorted(details.items())))
    if outgoing.reason != "new":
        lines.append(f"({outgoing.reason}; condition {notice.dedup_key})")
    return {"text": redact_text("\n".join(lines))}


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _json_bytes(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True, default=str).encode()


# --- HTTP sinks ----------------------------------------------------------------------------------


def _status(status: int) -> str:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP {status} {phrase}".rstrip()


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


@dataclass(frozen=True)
class _Http:
    """What the HTTP sinks share: where and how to POST."""

    timeout: float
    ca_file: str | None
    proxy: str | None
    allow_insecure: bool

    def post(self, name: str, url: str, body: bytes, headers: Mapping[str, str]) -> None:
        """POST once; a 2xx is success.

        Raises:
            NotifyFailed: naming the sink and what failed, never the URL (it may be a secret)
                nor what the receiver answered.
        """
        parts = urlsplit(url)
        if parts.scheme == "http" and not self.allow_insecure:
            raise NotifyFailed(f"{name}: plain http is refused; use https", retryable=False)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NotifyFailed(f"{name}: expected an https:// URL with a host", retryable=False)
        try:
            reply = http_client.post(
                url, body, headers, timeout=self.timeout, ca_file=self.ca_file, proxy=self.proxy
            )
        except httpx.TransportError as exc:
            if http_client.tls_refusal(exc) is not None:
                raise NotifyFailed(
                    f"{name}: TLS certificate not accepted", retryable=False
                ) from None
            kind = http_client.failure_kind(exc)
            raise NotifyFailed(f"{name}: connection failed: {kind}", retryable=True) from None
        except (httpx.InvalidURL, httpx.HTTPError, ValueError, OSError) as exc:
            raise NotifyFailed(
                f"{name}: the request cannot be sent ({type(exc).__name__})", retryable=False
            ) from None
        if 200 <= reply.status < 300:
            return
        if 300 <= reply.status < 400:
            raise NotifyFailed(
                f"{name}: {_status(reply.status)}: a redirect, never followed", retryable=False
            )
        retryable = reply.status == 429 or reply.status >= 500
        raise NotifyFailed(
            f"{name}: {_status(reply.status)}",
            retryable=retryable,
            retry_after=_retry_after(reply.header("Retry-After")),
        )


class WebhookChannel:
    """POSTs the notice as JSON signed with HMAC-SHA256 (see the module's description)."""

    def __init__(
        self,
        config: NotifyWebhook,
        name: str,
        clock: Clock,
        *,
        proxy: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._config = config
        self._name = name
        self._clock = clock
        self._environ = environ
        self._http = _Http(
            config.timeout.total_seconds(), config.ca_file, proxy, config.allow_insecure
        )

    @property
    def name(self) -> str:
        """The sink's name."""
        return self._name

    def send(self, outgoing: Outgoing) -> None:
        """POST the signed document once."""
        key = _secret(
            self._config.hmac_secret_env,
            self._config.hmac_secret_file,
            f"notify.sinks[{self._name}].hmac_secret",
            self._name,
            self._environ,
        )
        body = _json_bytes(render_document(outgoing))
        timestamp = str(int(self._clock.now().timestamp()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(key.encode(), timestamp, body),
        }
        self._http.post(self._name, self._config.url, body, headers)


class SlackChannel:
    """POSTs ``{"text": ...}`` to a Slack-compatible incoming webhook."""

    def __init__(
        self,
        config: NotifySlack,
        name: str,
        *,
        proxy: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._config = config
        self._name = name
        self._environ = environ
        self._http = _Http(
            config.timeout.total_seconds(), config.ca_file, proxy, config.allow_insecure
        )

    @property
    def name(self) -> str:
        """The sink's name."""
        return self._name

    def send(self, outgoing: Outgoing) -> None:
        """POST the text once."""
        config = self._config
        url = config.url or _secret(
            config.url_env,
            config.url_file,
            f"notify.sinks[{self._name}].url",
            self._name,
            self._environ,
        )
        register_secret(url)
        body = _json_bytes(render_slack(outgoing))
        self._http.post(self._name, url, body, {"Content-Type": "application/json"})


class ExecChannel:
    """Runs a command with the notice as one JSON line on its stdin."""

    def __init__(
        self, config: NotifyExec, name: str, *, environ: Mapping[str, str] | None = None
    ) -> None:
        self._config = config
        self._name = name
        self._environ = os.environ if environ is None else environ

    @property
    def name(self) -> str:
        """The sink's name."""
        return self._name

    def send(self, outgoing: Outgoing) -> None:
        """Run the command once; exit 0 is success."""
        from rotator.delivery.exec import INHERITED_VARIABLES, _execute

        notice = outgoing.notice
        env = {k: self._environ[k] for k in INHERITED_VARIABLES if k in self._environ}
        env.setdefault("PATH", os.defpath)
        env["ROTATOR_NOTICE_KIND"] = notice.kind.value
        env["ROTATOR_NOTICE_SEVERITY"] = notice.severity.value
        stdin = _json_bytes(render_document(outgoing)) + b"\n"
        timeout = self._config.timeout.total_seconds()
        try:
            outcome = _execute(self._config.argv, stdin=stdin, env=env, timeout=timeout)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise NotifyFailed(f"{self._name}: cannot run it: {reason}", retryable=False) from None
        except ValueError:
            raise NotifyFailed(f"{self._name}: cannot run it", retryable=False) from None
        if outcome.returncode is None:
            raise NotifyFailed(f"{self._name}: timed out after {timeout:g}s", retryable=True)
        if outcome.returncode != 0:
            raise NotifyFailed(
                f"{self._name}: exited with status {outcome.returncode}", retryable=True
            )


def _secret(
    env: str | None,
    file: str | None,
    at: str,
    name: str,
    environ: Mapping[str, str] | None,
) -> str:
    try:
        value = resolve_secret(env, file, at, environ)
    except ConfigError as exc:
        raise NotifyFailed(f"{name}: {'; '.join(exc.problems)}", retryable=False) from None
    if value is None:
        raise NotifyFailed(f"{name}: {at}_env or {at}_file must name it", retryable=False)
    register_secret(value)
    return value


# --- what was sent -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentRecord:
    """What a sink was last told about a condition."""

    sent_count: int
    failures: int | None
    last_sent_at: datetime
    resolved_at: datetime | None


class Ledger(Protocol):
    """Where the dispatcher remembers what each sink was told."""

    def get(self, sink: str, dedup_key: str) -> SentRecord | None:
        """The sink's record of the condition, or None."""
        ...

    def seen(self, sink: str, notice: Notice, now: datetime) -> None:
        """A notice of the condition came and was held back."""
        ...

    def sent(self, sink: str, notice: Notice, now: datetime) -> None:
        """The sink took a notice of the condition."""
        ...

    def resolve(self, dedup_key: str, now: datetime) -> None:
        """The condition ended (for every sink)."""
        ...


def _failures(notice: Notice) -> int | None:
    value = notice.details.get("failures")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class SqlLedger:
    """The ledger in the store's ``notices_sent`` table."""

    def __init__(self, engine: Engine) -> None:
        from rotator.store.db import session_factory

        self._sessions = session_factory(engine)

    def get(self, sink: str, dedup_key: str) -> SentRecord | None:
        """The sink's record of the condition, or None."""
        from rotator.store.models import NoticeSent

        with self._sessions() as session:
            row = session.get(NoticeSent, (sink, dedup_key))
            if row is None:
                return None
            return SentRecord(row.sent_count, row.failures, row.last_sent_at, row.resolved_at)

    def seen(self, sink: str, notice: Notice, now: datetime) -> None:
        """Note that the condition still holds (and its failure streak)."""
        from rotator.store.models import NoticeSent

        with self._sessions.begin() as session:
            row = session.get(NoticeSent, (sink, notice.dedup_key))
            if row is not None:
                row.last_seen_at = now
                row.failures = _failures(notice)

    def sent(self, sink: str, notice: Notice, now: datetime) -> None:
        """Record that the sink took a notice of the condition."""
        from rotator.store.models import NoticeSent

        try:
            with self._sessions.begin() as session:
                row = session.get(NoticeSent, (sink, notice.dedup_key))
                if row is None:
                    row = NoticeSent(
                        sink=sink, dedup_key=notice.dedup_key, sent_count=0, first_sent_at=now
                    )
                    session.add(row)
                row.kind = notice.kind.value
                row.severity = notice.severity.value
                row.subject = notice.subject[:1024]
                row.sent_count += 1
                row.failures = _failures(notice)
                row.last_sent_at = now
                row.last_seen_at = now
                row.resolved_at = None
        except IntegrityError:
            pass  # another thread recorded the same condition at the same moment

    def resolve(self, dedup_key: str, now: datetime) -> None:
        """Mark the condition ended for every sink."""
        from rotator.store.models import NoticeSent

        with self._sessions.begin() as session:
            session.execute(
                sa.update(NoticeSent)
                .where(NoticeSent.dedup_key == dedup_key, NoticeSent.resolved_at.is_(None))
                .values(resolved_at=now)
            )


# --- the dispatcher ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """A sink with its filters and retries."""

    channel: Channel
    kinds: frozenset[NoticeKind] = frozenset()  # empty: every kind
    min_severity: Severity = Severity.INFO
    retries: int = 3

    def accepts(self, notice: Notice) -> bool:
        """Whether the sink's filters take the notice."""
        if self.kinds and notice.kind not in self.kinds:
            return False
        return at_least(notice.severity, self.min_severity)


@dataclass
class Dispatcher:
    """Logs every notice and sends it to each route that takes it, once per condition."""

    routes: Sequence[Route]
    ledger: Ledger
    clock: Clock
    renotify_after: timedelta | None = timedelta(hours=24)
    also: Notifier = field(default_factory=LogNotifier)
    backoff: float = 1.0
    max_backoff: float = 30.0

    def notify(self, notice: Notice) -> None:
        """Log the notice, then send it where it is due. Never raises."""
        self._guard("log", lambda: self.also.notify(notice))
        ended = ended_by(notice)
        if ended is not None:
            self.resolve(ended)
        for route in self.routes:
            if route.accepts(notice):
                self._guard(route.channel.name, partial(self._route, route, notice))

    def resolve(self, dedup_key: str) -> None:
        """The condition ``dedup_key`` ended: its next notice is sent again. Never raises."""
        self._guard("store", lambda: self.ledger.resolve(dedup_key, self.clock.now()))

    def _guard(self, where: str, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception as exc:
            _log.warning(
                "notice_not_delivered",
                sink=where,
                error=redact_text(str(exc))[:300] or type(exc).__name__,
            )

    def _route(self, route: Route, notice: Notice) -> None:
        name = route.channel.name
        now = self.clock.now()
        try:
            record = self.ledger.get(name, notice.dedup_key)
        except Exception as exc:  # the store is down: better told twice than not at all
            _log.warning("notice_ledger_unavailable", sink=name, error=type(exc).__name__)
            record = None
        reason = self._due(record, notice, now)
        if reason is None:
            _log.debug("notice_held_back", sink=name, dedup_key=notice.dedup_key)
            self.ledger.seen(name, notice, now)
            return
        if self._send(route, Outgoing(notice, reason, now)):
            try:
                self.ledger.sent(name, notice, self.clock.now())
            except Exception as exc:  # sent, but not remembered: it may be sent again
                _log.warning("notice_not_recorded", sink=name, error=type(exc).__name__)

    def _due(self, record: SentRecord | None, notice: Notice, now: datetime) -> str | None:
        """Why the notice is to be sent (new, recurred, reminder), or None to hold it back."""
        if record is None:
            return "new"
        if record.resolved_at is not None:
            return "recurred"
        failures = _failures(notice)
        if failures is not None and record.failures is not None and failures <= record.failures:
            return "recurred"
        if self.renotify_after is not None and now - record.last_sent_at >= self.renotify_after:
            return "reminder"
        return None

    def _send(self, route: Route, outgoing: Outgoing) -> bool:
        """Send with retries; True once the sink took it."""
        name = route.channel.name
        attempts = route.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                route.channel.send(outgoing)
            except NotifyFailed as exc:
                last = attempt == attempts or not exc.retryable
                if last:
                    _log.warning(
                        "notice_not_delivered",
                        sink=name,
                        dedup_key=outgoing.notice.dedup_key,
                        error=redact_text(exc.message),
                        attempts=attempt,
                    )
                    return False
                wait = self._delay(attempt, exc.retry_after)
                _log.info("notice_retry", sink=name, attempt=attempt + 1, wait=wait)
                self.clock.sleep(wait)
                outgoing = Outgoing(outgoing.notice, outgoing.reason, self.clock.now())
                continue
            _log.info(
                "notice_sent",
                sink=name,
                dedup_key=outgoing.notice.dedup_key,
                reason=outgoing.reason,
                attempt=attempt,
            )
            return True
        return False

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff))
        return delay


# --- wiring --------------------------------------------------------------------------------------


def sink_name(config: NotifySinkBase, index: int) -> str:
    """The sink's configured name, or ``<type>[<index>]``."""
    return config.name or f"{getattr(config, 'type', 'sink')}[{index}]"


def build_channel(
    config: NotifySinkBase,
    name: str,
    clock: Clock,
    *,
    proxy: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Channel:
    """The channel a sink setting describes."""
    if isinstance(config, NotifyWebhook):
        return WebhookChannel(config, name, clock, proxy=proxy, environ=environ)
    if isinstance(config, NotifySlack):
        return SlackChannel(config, name, proxy=proxy, environ=environ)
    if isinstance(config, NotifyExec):
        return ExecChannel(config, name, environ=environ)
    raise TypeError(f"not a notify sink setting: {type(config).__name__}")


def build_routes(
    config: NotifyConfig, clock: Clock, environ: Mapping[str, str] | None = None
) -> list[Route]:
    """One route per configured sink."""
    routes = []
    for index, sink in enumerate(config.sinks):
        channel = build_channel(
            sink, sink_name(sink, index), clock, proxy=config.proxy, environ=environ
        )
        routes.append(
            Route(
                channel,
                frozenset(NoticeKind(k) for k in sink.kinds),
                Severity(sink.min_severity),
                sink.retries,
            )
        )
    return routes


class Unlogged:
    """A notifier that tells nobody: stands in for the log where the caller logs for itself."""

    def notify(self, notice: Notice) -> None:
        """Drop the notice."""


def build_notifier(
    config: Config,
    engine: Engine,
    clock: Clock,
    *,
    environ: Mapping[str, str] | None = None,
    log: bool = True,
) -> Notifier:
    """The daemon's notifier: the log, plus the ``notify`` sinks (deduplicated in the store).

    Args:
        config: the whole configuration (its ``notify`` section is used).
        engine: the store, where what each sink was told is kept.
        clock: the time of records and signatures; waits between attempts.
        environ: where ``*_env`` secrets are looked up (the process environment by default).
        log: also write each notice to the log; False for a caller that logs the same events
            itself (the leader lease).
    """
    notify = config.notify
    also: Notifier = LogNotifier() if log else Unlogged()
    if not notify.sinks:
        return also
    return Dispatcher(
        build_routes(notify, clock, environ),
        SqlLedger(engine),
        clock,
        renotify_after=notify.renotify_after,
        also=also,
    )
