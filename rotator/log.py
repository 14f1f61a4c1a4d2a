"""Logging: structlog with ECS-style JSON lines or console output, and secret redaction.

Every event, from rotator's own loggers or from libraries through the standard ``logging``
module (APScheduler, SQLAlchemy, elastic_transport), runs through the same processors, the last
of which before rendering is :func:`redact`. Redaction works on keys (``password``, ``api_key``,
``encoded``, ``authorization``...) and on values (``ApiKey``/``Basic``/``Bearer`` credentials,
base64 ``id:secret`` pairs, passwords in URLs, ``key=value`` text) in any nested structure.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import IO, Any

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from rotator.clock import Clock, SystemClock

REDACTED = "[REDACTED]"
ECS_VERSION = "8.11.0"

# Key names whose values are secrets, compared case-insensitively with '-' taken as '_'.
SECRET_KEYS = frozenset(
    {
        "api_key",
        "apikey",
        "encoded",
        "password",
        "passwd",
        "new_password",
        "secret",
        "client_secret",
        "hmac_secret",
        "token",
        "access_token",
        "refresh_token",
        "bearer_token",
        "authorization",
        "proxy_authorization",
        "credentials",
        "x_api_key",
        "cookie",
        "set_cookie",
    }
)
# Suffixes that mark a secret too (``es_password``), unless the key is a reference or metadata.
_SECRET_SUFFIXES = ("_password", "_secret", "_token", "_api_key")
_REFERENCE_SUFFIXES = ("_env", "_file", "_id", "_fingerprint", "_name", "_at", "_count", "_type")

_AUTH_SCHEME = re.compile(r"(?i)\b(ApiKey|Basic|Bearer)(\s+)([A-Za-z0-9+/=._~-]{8,})")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+):([^/\s@]+)@")
_KEY_VALUE = re.compile(
    r"(?i)([\"']?\b(?:[\w-]*(?:password|passwd|secret|token|api_key|apikey)|encoded|"
    r"authorization|pwd|pw)[\"']?\s*[:=]\s*)"
    r"(?!(?:ApiKey|Basic|Bearer)\s|\[REDACTED\])(\"[^\"]*\"|'[^']*'|[^\s,;}\]&]+)"
)
# An Elasticsearch API key id (20 chars) and secret (22 chars), joined by a colon.
_ID_SECRET = re.compile(r"\b([A-Za-z0-9_-]{20}):([A-Za-z0-9_-]{22})\b")
_BASE64_TOKEN = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")
# What _AUTH_SCHEME and _KEY_VALUE cannot match without (their words, in any case): text
# without it needs no search by them.
_SCHEME_HINT = re.compile("apikey|basic|bearer", re.IGNORECASE)
_KEY_HINT = re.compile("pass|secret|token|api_key|apikey|encoded|authorization|pw", re.IGNORECASE)

_known_lock = threading.Lock()
# Secrets rotator holds now. A bound, not a history: a key's secret is forgotten once its
# rotation is done with it (see ``secret_in_flight``); the cap only guards against a leak.
_MAX_KNOWN_SECRETS = 10_000
_known_secrets: dict[str, None] = {}  # insertion-ordered: the oldest goes first at the cap
_known_lengths: dict[int, int] = {}  # length -> how many known secrets have it
# Secrets with characters a run below cannot hold (a password with spaces or punctuation):
# few (the configuration's), so each is looked for as a substring.
_odd_secrets: dict[str, None] = {}
# A run of the characters credentials are made of; secrets are looked up inside such runs.
_TOKEN_RUN = re.compile(r"[A-Za-z0-9+/=_.~-]{8,}")
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9+/=_.~-]+")


def register_secret(value: str) -> None:
    """Remember a secret so that any later occurrence in any log event is redacted.

    Rotator registers every API key secret and encoded credential it handles, so that even a
    secret in an unexpected place (a library's exception text) never reaches a log line.
    """
    if len(value) < 8:
        return
    with _known_lock:
        if not _TOKEN_CHARS.fullmatch(value):
            _odd_secrets[value] = None
            return
        if value in _known_secrets:
            return
        if len(_known_secrets) >= _MAX_KNOWN_SECRETS:
            _drop(next(iter(_known_secrets)))
        _known_secrets[value] = None
        _known_lengths[len(value)] = _known_lengths.get(len(value), 0) + 1


def forget_secret(value: str) -> None:
    """Stop looking for a secret rotator no longer holds (its key was delivered or settled)."""
    with _known_lock:
        _odd_secrets.pop(value, None)
        if value in _known_secrets:
            _drop(value)


def _drop(value: str) -> None:
    del _known_secrets[value]
    left = _known_lengths[len(value)] - 1
    if left:
        _known_lengths[len(value)] = left
    else:
        del _known_lengths[len(value)]


@contextmanager
def secrets_in_flight(*values: str) -> Iterator[None]:
    """Redact these secrets while the block runs; forget them after it."""
    for value in values:
        register_secret(value)
    try:
        yield
    finally:
        for value in values:
            forget_secret(value)


def known_secret_count() -> int:
    """How many secrets are being looked for now."""
    with _known_lock:
        return len(_known_secrets) + len(_odd_secrets)


def _redact_known(text: str) -> str:
    """Replace every known secret in ``text``.

    One pass over the runs of credential characters; inside a run, one set lookup per distinct
    secret length and position. The cost does not depend on how many secrets are known.
    """
    with _known_lock:
        found: set[str] = {odd for odd in _odd_secrets if odd in text}
        if not _known_secrets:
            return _replace_all(text, found)
        lengths = sorted(_known_lengths, reverse=True)
        known = _known_secrets
        for match in _TOKEN_RUN.finditer(text):
            run = match[0]
            for length in lengths:
                if length > len(run):
                    continue
                for start in range(len(run) - length + 1):
                    piece = run[start : start + length]
                    if piece in known:
                        found.add(piece)
    return _replace_all(text, found)


def _replace_all(text: str, found: set[str]) -> str:
    for secret in sorted(found, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def is_secret_key(key: object) -> bool:
    """Tell whether a mapping key names a secret value."""
    if not isinstance(key, str):
        return False
    return _is_secret_name(key)


@functools.lru_cache(maxsize=4096)
def _is_secret_name(key: str) -> bool:
    name = key.lower().replace("-", "_").replace(".", "_")
    if name in SECRET_KEYS:
        return True
    if name.endswith(_REFERENCE_SUFFIXES):
        return False
    return name.endswith(_SECRET_SUFFIXES)


def redact_text(text: str) -> str:
    """Remove anything that looks like a credential from free text."""
    text = _redact_known(text)
    # Each pattern runs only when the text holds what it cannot match without (most strings
    # hold none of it). The checks read the text as the previous pattern left it.
    if _SCHEME_HINT.search(text):
        text = _AUTH_SCHEME.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)
    if "://" in text and "@" in text:
        text = _URL_USERINFO.sub(lambda m: f"{m[1]}:{REDACTED}@", text)
    if (":" in text or "=" in text) and _KEY_HINT.search(text):
        text = _KEY_VALUE.sub(lambda m: f"{m[1]}{REDACTED}", text)
    if ":" in text:
        text = _ID_SECRET.sub(lambda m: f"{m[1]}:{REDACTED}", text)
    if len(text) >= 40:
        text = _BASE64_TOKEN.sub(_redact_encoded_pair, text)
    return text


def _redact_encoded_pair(match: re.Match[str]) -> str:
    token = match[0]
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return token
    head, sep, tail = decoded.partition(":")
    if sep and head and tail and decoded.isprintable():
        return REDACTED
    return token


def redact_value(value: Any) -> Any:
    """Return ``value`` with secrets removed, recursing into mappings and sequences."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        return {k: REDACTED if is_secret_key(k) else redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact_value(v) for v in value]
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact_text(str(value))


def redact(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: redact every field of the event, at any depth."""
    return {
        key: REDACTED if is_secret_key(key) else redact_value(value)
        for key, value in event_dict.items()
    }


# --- ECS field names -----------------------------------------------------------------------------

_ECS_RENAMES = {
    "event": "message",
    "level": "log.level",
    "logger": "log.logger",
    "timestamp": "@timestamp",
    "action": "event.action",
    "outcome": "event.outcome",
    "reason": "event.reason",
    "duration": "event.duration",
    "error": "error.message",
    "error_type": "error.type",
    "exception": "error.stack_trace",
    "stack": "error.stack_trace",
}


def to_ecs(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """Rename fields to ECS names; rotator's own fields go under ``rotator.``."""
    out: dict[str, Any] = {}
    for key, value in event_dict.items():
        if key in _ECS_RENAMES:
            out[_ECS_RENAMES[key]] = value
        elif key.startswith("@") or "." in key:
            out[key] = value
        else:
            out[f"rotator.{key}"] = value
    out.setdefault("ecs.version", ECS_VERSION)
    ordered: dict[str, Any] = {
        k: out.pop(k) for k in ("@timestamp", "log.level", "message") if k in out
    }
    return {**ordered, **out}


def _timestamper(clock: Clock) -> Processor:
    def stamp(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
        now = clock.now()
        event_dict.setdefault(
            "timestamp", now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )
        return event_dict

    return stamp


_METHOD_LEVELS = {"warn": "warning", "exception": "error", "fatal": "critical", "msg": "info"}


def _level_name(_logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    if "level" in event_dict:
        event_dict["level"] = str(event_dict["level"]).lower()
    else:
        event_dict["level"] = _METHOD_LEVELS.get(method, method)
    return event_dict


# --- setup ---------------------------------------------------------------------------------------

# The lowest level each library logs at unless rotator runs at debug level. The Elasticsearch
# client warns on every retry and node failure, with a traceback each; rotator reports the
# outcome of the request itself in one line, so those warnings show only at debug level.
_LIBRARY_LEVELS = {
    "elastic_transport": logging.ERROR,
    "elasticsearch": logging.ERROR,
    "urllib3": logging.WARNING,
    "sqlalchemy": logging.WARNING,
    "alembic": logging.WARNING,
    # Every run of every job is announced at info; rotator logs one summary per run itself.
    "apscheduler": logging.WARNING,
}


def configure(
    level: str = "info",
    fmt: str = "auto",
    stream: IO[str] | None = None,
    clock: Clock | None = None,
) -> None:
    """Route structlog and the standard logging module through one redacting pipeline.

    Args:
        level: lowest level written (debug, info, warning, error).
        fmt: ``json``, ``console``, or ``auto`` (console when the stream is a terminal).
        stream: where log lines go; standard error by default, so that command output on
            standard output stays machine-readable.
        clock: the time source for ``@timestamp``.
    """
    stream = stream if stream is not None else sys.stderr
    numeric = logging.getLevelName(level.upper())
    use_json = fmt == "json" or (fmt == "auto" and not _isatty(stream))
    debug = numeric == logging.DEBUG
    pre_chain = _pre_chain(clock or SystemClock(), debug)
    renderer: list[Processor] = (
        [to_ecs, structlog.processors.JSONRenderer(sort_keys=False, default=str)]
        if use_json
        else [structlog.dev.ConsoleRenderer(colors=_isatty(stream))]
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, redact, *renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name, lib_level in _LIBRARY_LEVELS.items():
        logging.getLogger(name).setLevel(
            numeric if numeric == logging.DEBUG else max(lib_level, numeric)
        )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            *pre_chain,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def _pre_chain(clock: Clock, debug: bool) -> list[Processor]:
    return [
        structlog.stdlib.add_logger_name,
        _level_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        _timestamper(clock),
        _traceback_only_at_debug(debug),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.processors.UnicodeDecoder(),
    ]


def _traceback_only_at_debug(debug: bool) -> Processor:
    """Below debug level an exception becomes one ``error`` field; the traceback is dropped."""

    def one_line(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
        if debug or not event_dict.get("exc_info"):
            return event_dict
        exc = _exception_of(event_dict.pop("exc_info"))
        event_dict.pop("stack_info", None)
        if exc is not None and "error" not in event_dict:
            event_dict["error"] = one_line_error(exc)
        return event_dict

    return one_line


def _exception_of(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        value = exc_info[1]
        return value if isinstance(value, BaseException) else None
    return sys.exc_info()[1]


def one_line_error(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, cut to ``limit`` characters, for one log line."""
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return line if len(line) <= limit else f"{line[:limit]}..."


def debug_enabled() -> bool:
    """Whether rotator logs at debug level (tracebacks are shown only then)."""
    return logging.getLogger().isEnabledFor(logging.DEBUG)


def _isatty(stream: IO[str]) -> bool:
    isatty: Callable[[], bool] | None = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:
        return False


def get_logger(name: str = "rotator", **initial: Any) -> structlog.stdlib.BoundLogger:
    """Return a logger bound to ``initial`` fields."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger.bind(**initial) if initial else logger


def redact_mapping(values: MutableMapping[str, Any] | Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Redact a mapping meant for a place other than logs (notifications, error details)."""
    items = values.items() if isinstance(values, Mapping) else values
    return {k: REDACTED if is_secret_key(k) else redact_value(v) for k, v in items}
