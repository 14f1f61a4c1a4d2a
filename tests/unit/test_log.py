"""Redaction and ECS rendering of log events."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from rotator import log
from rotator.clock import ManualClock

KEY_ID = "VuaCfGcBCdbkQm-e5aOx"
SECRET = "ui2lp2axTNmsyakw9tvNnw"
ENCODED = base64.b64encode(f"{KEY_ID}:{SECRET}".encode()).decode()
PASSWORD = "correct-horse-battery"
NOW = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    log.configure(level="debug", fmt="json", stream=out, clock=ManualClock(NOW))
    yield out
    log.configure(level="info", fmt="json", stream=io.StringIO())


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def assert_clean(text: str) -> None:
    for secret in (SECRET, ENCODED, PASSWORD):
        assert secret not in text


# Each row: a field value that carries a secret somewhere.
CARRIERS = [
    pytest.param({"api_key": SECRET}, id="api_key-key"),
    pytest.param({"encoded": ENCODED}, id="encoded-key"),
    pytest.param(
        {"response": {"id": KEY_ID, "api_key": SECRET, "encoded": ENCODED}}, id="es-response"
    ),
    pytest.param([{"deep": [{"password": PASSWORD}]}], id="nested-list"),
    pytest.param({"headers": {"Authorization": f"ApiKey {ENCODED}"}}, id="auth-header-key"),
    pytest.param(f"sent header authorization: ApiKey {ENCODED} ok", id="apikey-in-text"),
    pytest.param(
        f"Basic {base64.b64encode(f'elastic:{PASSWORD}'.encode()).decode()}", id="basic-in-text"
    ),
    pytest.param(f"Bearer {SECRET}{SECRET}", id="bearer-in-text"),
    pytest.param(f"credential {ENCODED} leaked", id="bare-encoded"),
    pytest.param(f"id:key is {KEY_ID}:{SECRET}", id="id-colon-secret"),
    pytest.param(f"https://elastic:{PASSWORD}@es.example:9200/", id="url-userinfo"),
    pytest.param(f'{{"password": "{PASSWORD}", "user": "x"}}', id="json-text"),
    pytest.param(f"login password={PASSWORD} user=x", id="key-value-text"),
    pytest.param(("tuple", {"es_password": PASSWORD}), id="suffix-key-in-tuple"),
    pytest.param(ValueError(f"could not use {ENCODED}"), id="exception-object"),
    pytest.param(f"{ENCODED}".encode(), id="bytes"),
]


@pytest.mark.parametrize("value", CARRIERS)
def test_secret_in_any_field_is_redacted(stream: io.StringIO, value: object) -> None:
    log.get_logger("rotator.test").info("event", payload=value)
    out = stream.getvalue()
    assert_clean(out)
    assert log.REDACTED in out


@pytest.mark.parametrize("value", CARRIERS)
def test_secret_in_the_message_itself_is_redacted(stream: io.StringIO, value: object) -> None:
    log.get_logger("rotator.test").warning(f"failed with {value}")
    assert_clean(stream.getvalue())


def test_secret_keys_at_top_level_are_redacted(stream: io.StringIO) -> None:
    log.get_logger().info("x", password=PASSWORD, api_key=SECRET, Authorization="Basic abc")
    (event,) = lines(stream)
    assert event["rotator.password"] == log.REDACTED
    assert event["rotator.api_key"] == log.REDACTED
    assert event["rotator.Authorization"] == log.REDACTED


def test_references_and_ids_are_kept(stream: io.StringIO) -> None:
    log.get_logger().info(
        "x", password_env="ES_PW", key_id=KEY_ID, secret_fingerprint="ab" * 32, name="rotator-web-3"
    )
    (event,) = lines(stream)
    assert event["rotator.password_env"] == "ES_PW"
    assert event["rotator.key_id"] == KEY_ID
    assert event["rotator.secret_fingerprint"] == "ab" * 32
    assert event["rotator.name"] == "rotator-web-3"


def test_registered_secret_is_redacted_anywhere(stream: io.StringIO) -> None:
    odd = "Zq8-unusual_secret_value"
    log.register_secret(odd)
    log.get_logger().error("boom", detail=f"library said {odd}!")
    assert odd not in stream.getvalue()


def test_exception_traceback_is_redacted(stream: io.StringIO) -> None:
    try:
        raise RuntimeError(f"request failed: Authorization: ApiKey {ENCODED}")
    except RuntimeError:
        log.get_logger().exception("request failed")
    (event,) = lines(stream)
    assert event["log.level"] == "error"
    assert "RuntimeError" in str(event["error.stack_trace"])
    assert_clean(json.dumps(event))


def test_stdlib_loggers_go_through_the_same_pipeline(stream: io.StringIO) -> None:
    logging.getLogger("elastic_transport.transport").warning(
        "POST %s headers=%s",
        "https://es:9200/_security/api_key",
        {"authorization": f"ApiKey {ENCODED}"},
    )
    (event,) = lines(stream)
    assert event["log.logger"] == "elastic_transport.transport"
    assert event["log.level"] == "warning"
    assert_clean(json.dumps(event))


def test_ecs_field_names_and_timestamp_from_the_clock(stream: io.StringIO) -> None:
    log.get_logger("rotator.jobs").info(
        "key rotated", action="rotate", outcome="success", source="web"
    )
    (event,) = lines(stream)
    assert list(event)[:3] == ["@timestamp", "log.level", "message"]
    assert event["@timestamp"] == "2026-03-04T05:06:07.890Z"
    assert event["message"] == "key rotated"
    assert event["event.action"] == "rotate"
    assert event["event.outcome"] == "success"
    assert event["rotator.source"] == "web"
    assert event["log.logger"] == "rotator.jobs"
    assert event["ecs.version"] == log.ECS_VERSION


def test_level_filters_events() -> None:
    out = io.StringIO()
    log.configure(level="warning", fmt="json", stream=out)
    log.get_logger().info("hidden")
    log.get_logger().warning("shown")
    assert [e["message"] for e in lines(out)] == ["shown"]


def test_console_rendering_is_redacted_too() -> None:
    out = io.StringIO()
    log.configure(level="info", fmt="console", stream=out)
    log.get_logger().info("made key", encoded=ENCODED, note=f"ApiKey {ENCODED}")
    assert "made key" in out.getvalue()
    assert_clean(out.getvalue())


def test_capture_logs_still_works_for_tests() -> None:
    with structlog.testing.capture_logs() as captured:
        log.get_logger().info("hello", action="probe")
    assert captured[0]["event"] == "hello"
    assert captured[0]["action"] == "probe"


def test_ordinary_base64_is_not_redacted() -> None:
    plain = base64.b64encode(b"just some bytes without a separator here!").decode()
    assert log.redact_text(plain) == plain


def test_references_in_text_are_kept() -> None:
    text = "configure password_env=ES_PW and token_count=3"
    assert log.redact_text(text) == text


def _transport_warning_with_traceback() -> None:
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError:
        logging.getLogger("elastic_transport.transport").warning(
            "Retrying request after failure (attempt 0 of 3)", exc_info=True
        )


@pytest.mark.parametrize("level", ["info", "warning"])
def test_client_retry_warnings_stay_out_below_debug(level: str) -> None:
    out = io.StringIO()
    log.configure(level=level, fmt="json", stream=out, clock=ManualClock(NOW))
    _transport_warning_with_traceback()
    logging.getLogger("elasticsearch").warning("node failed")
    assert out.getvalue() == ""


def test_client_retry_warnings_and_tracebacks_show_at_debug() -> None:
    out = io.StringIO()
    log.configure(level="debug", fmt="json", stream=out, clock=ManualClock(NOW))
    _transport_warning_with_traceback()
    [event] = lines(out)
    assert event["message"] == "Retrying request after failure (attempt 0 of 3)"
    assert "Traceback" in str(event["error.stack_trace"])


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_an_error_with_an_exception_is_one_line_below_debug(fmt: str) -> None:
    out = io.StringIO()
    log.configure(level="info", fmt=fmt, stream=out, clock=ManualClock(NOW))
    try:
        raise ValueError(f"bad value\nsecond line with {PASSWORD}")
    except ValueError:
        log.get_logger("rotator.x").error("step_failed", exc_info=True)
        logging.getLogger("some.library").error("library failed", exc_info=True)
    text = out.getvalue()
    assert len(text.splitlines()) == 2, text
    assert "Traceback" not in text
    assert "ValueError: bad value" in text
    assert_clean(text)


def test_redacting_twice_changes_nothing_more() -> None:
    once = log.redact_text(f"near password={PASSWORD} and token: {PASSWORD}")
    assert once == "near password=[REDACTED] and token: [REDACTED]"
    assert log.redact_text(once) == once


def test_secrets_in_flight_are_redacted_then_forgotten() -> None:
    secret = "Zq8w3nLk-Rt5Yp2Xc7Vb1n"
    before = log.known_secret_count()
    with log.secrets_in_flight(secret):
        assert log.redact_text(f"key={secret}x and {secret}") == (
            f"key={log.REDACTED} and {log.REDACTED}"
        ) or secret not in log.redact_text(f"id:{secret} then {secret}.")
        assert secret not in log.redact_text(f"embedded{secret}tail")
        assert log.known_secret_count() == before + 1
    assert log.known_secret_count() == before
    assert secret in log.redact_text(f"after: {secret}")


def test_a_password_with_punctuation_is_redacted_too() -> None:
    odd = "p@ss w0rd!#with spaces"
    with log.secrets_in_flight(odd):
        assert odd not in log.redact_text(f"login failed for {odd} at host")


def _redact_every_pattern(text: str) -> str:
    """What redact_text did before it skipped patterns: every one, in order, on every text."""
    text = log._AUTH_SCHEME.sub(lambda m: f"{m[1]}{m[2]}{log.REDACTED}", text)
    text = log._URL_USERINFO.sub(lambda m: f"{m[1]}:{log.REDACTED}@", text)
    text = log._KEY_VALUE.sub(lambda m: f"{m[1]}{log.REDACTED}", text)
    text = log._ID_SECRET.sub(lambda m: f"{m[1]}:{log.REDACTED}", text)
    return log._BASE64_TOKEN.sub(log._redact_encoded_pair, text)


_PIECES = [
    "ApiKey ",
    "basic ",
    "BEARER\t",
    "https://",
    "user",
    ":",
    "=",
    "@",
    " ",
    ",",
    "'",
    '"',
    "Password",
    "pw",
    "secret",
    "token",
    "api_key",
    "encoded",
    "Authorization",
    "abcdefghijklmnopqrst",
    "0123456789abcdefghijkl",
    base64.b64encode(b"abcdefghijklmnopqrst:0123456789abcdefghijkl").decode(),
    "f" * 64,
    "[REDACTED]",
    "-",
    "_",
    "é",
]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=12))
def test_skipping_patterns_a_text_cannot_match_changes_nothing(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert log.redact_text(text) == _redact_every_pattern(text)
