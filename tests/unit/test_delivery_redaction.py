"""Sink output never carries the credential, in any encoding, and failures have an output-free summary.

Real commands echo what they got on stdin in base64 and hex (as a careless or hostile delivery
script would); the failure's text must hold none of the credential's encodings, even with line
wrapping, and ``summary`` must hold no sink output at all.
"""

from __future__ import annotations

import base64
import re
import shutil
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from rotator.clock import ManualClock
from rotator.config import ExecSink
from rotator.delivery import ExecDelivery, SinkFailed
from rotator.delivery.scrub import excerpt
from rotator.errors import DeliveryFailed
from rotator.log import REDACTED
from rotator.ports import Credential

KEY_ID = "VuaCfGcBCdbkQm-e5aOx"
SECRET = "ui2lp2axTNmsyakw9tvNnw"
ENCODED = base64.b64encode(f"{KEY_ID}:{SECRET}".encode()).decode()
EXPIRATION = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
PY = sys.executable


def credential() -> Credential:
    return Credential(
        id=KEY_ID,
        name="rotator-web-3",
        api_key=SECRET,
        encoded=ENCODED,
        source="web",
        expiration=EXPIRATION,
    )


def encodings() -> dict[str, str]:
    """Every encoding of the credential a sink might print, computed independently of rotator."""
    forms: dict[str, str] = {"api_key": SECRET, "encoded": ENCODED}
    for label, value in (("api_key", SECRET), ("encoded", ENCODED), ("pair", f"{KEY_ID}:{SECRET}")):
        for suffix_label, suffix in (("", ""), ("+nl", "\n")):
            data = (value + suffix).encode()
            name = f"{label}{suffix_label}"
            forms[f"b64({name})"] = base64.b64encode(data).decode()
            forms[f"b64url({name})"] = base64.urlsafe_b64encode(data).decode()
            forms[f"b64nopad({name})"] = base64.b64encode(data).decode().rstrip("=")
            forms[f"b64urlnopad({name})"] = base64.urlsafe_b64encode(data).decode().rstrip("=")
            forms[f"hex({name})"] = data.hex()
            forms[f"HEX({name})"] = data.hex().upper()
    return forms


def leaked(text: str) -> list[str]:
    """The encodings found in ``text``, also across whitespace (wrapped or spaced output)."""
    compact = re.sub(r"\s+", "", text)
    found = [name for name, form in encodings().items() if form in text or form in compact]
    # The secret's own characters in any run of 10 or more (a piece of a wrapped form).
    found += [f"piece:{SECRET[i : i + 10]}" for i in range(13) if SECRET[i : i + 10] in compact]
    return found


def exec_sink(argv: list[str], **settings: Any) -> ExecDelivery:
    config = ExecSink(type="exec", argv=argv, **settings)
    return ExecDelivery(config, clock=ManualClock(EXPIRATION), source="web")


def hex_dumpers() -> list[str]:
    """Shell pipelines that print stdin in hex, for the tools this machine has."""
    commands = [
        f"{PY} -c 'import sys; print(sys.stdin.buffer.read().hex())'",
        f"{PY} -c 'import sys; print(sys.stdin.buffer.read().hex().upper())'",
    ]
    if shutil.which("od"):
        commands.append("od -An -tx1 -v")
    if shutil.which("xxd"):
        commands += ["xxd -p", "xxd"]
    return commands


ECHOES = [
    "base64",
    "base64 >&2",
    "base64 -w0",
    f"{PY} -c 'import base64, sys; print(base64.urlsafe_b64encode(sys.stdin.buffer.read()))'",
    f"{PY} -c 'import base64, sys; print(base64.b64encode(sys.stdin.buffer.read()).rstrip(b\"=\"))'",
    "cat",
    *hex_dumpers(),
]


@pytest.mark.parametrize("stdin_format", ["id:api_key", "encoded"])
@pytest.mark.parametrize("echo", ECHOES)
def test_failing_exec_sink_echoing_its_stdin_leaks_no_encoding(
    echo: str, stdin_format: str
) -> None:
    delivery = exec_sink(["/bin/sh", "-c", f"{echo}; exit 1"], stdin_format=stdin_format)
    with pytest.raises(DeliveryFailed) as caught:
        delivery.deliver(credential())
    failure = caught.value
    assert isinstance(failure, SinkFailed)
    assert leaked(str(failure)) == []
    assert leaked(failure.summary) == []
    assert failure.summary == "exec:/bin/sh: exited with status 1"
    # The output was captured and scrubbed, not merely dropped.
    assert REDACTED in str(failure)


def test_summary_holds_only_what_failed_and_the_message_the_output() -> None:
    delivery = exec_sink(["/bin/sh", "-c", "echo disk full >&2; echo retry later; exit 4"])
    with pytest.raises(SinkFailed) as caught:
        delivery.deliver(credential())
    assert caught.value.summary == "exec:/bin/sh: exited with status 4"
    assert "disk full" in str(caught.value)
    assert "retry later" in str(caught.value)
    assert "disk full" not in caught.value.summary


def test_killed_command_summary_names_the_signal_only() -> None:
    delivery = exec_sink(["/bin/sh", "-c", "echo going away >&2; kill -TERM $$"])
    with pytest.raises(SinkFailed) as caught:
        delivery.deliver(credential())
    assert caught.value.summary == "exec:/bin/sh: killed by signal SIGTERM"
    assert "going away" in str(caught.value)


def test_huge_output_is_capped_in_the_failure() -> None:
    noisy = f"{PY} -c 'import sys; [print(\"x\" * 5000, file=sys.stderr) for _ in range(200)]'"
    delivery = exec_sink(["/bin/sh", "-c", f"{noisy}; exit 2"])
    with pytest.raises(SinkFailed) as caught:
        delivery.deliver(credential())
    assert len(str(caught.value)) <= 600
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("shift", ["", "{", '{"k":"'])
def test_base64_of_a_document_holding_the_secret_is_redacted(shift: str) -> None:
    # Base64 of a larger document shifts the secret's bytes: every alignment must be caught.
    document = f'{shift}"api_key": "{SECRET}", "encoded": "{ENCODED}"}}'.encode()
    encoded_document = base64.b64encode(document).decode()
    scrubbed = excerpt("answer: " + encoded_document, credential())
    assert REDACTED in scrubbed
    for value in (SECRET, ENCODED):
        start = document.index(value.encode())
        # The characters that depend on the value's bytes alone.
        inner = encoded_document[-(-start * 4 // 3) + 1 : (start + len(value)) * 4 // 3 - 1]
        assert len(inner) >= 20
        assert inner not in scrubbed


def test_text_without_the_credential_is_kept() -> None:
    text = f"key {KEY_ID} refused: quota exceeded (code 0x1f2e3d)\nsee /var/log/x\n"
    assert excerpt(text, credential()) == (
        f"key {KEY_ID} refused: quota exceeded (code 0x1f2e3d) | see /var/log/x"
    )


def test_wrapped_base64_collapses_to_one_marker() -> None:
    wrapped = base64.encodebytes(f"{ENCODED}\n".encode()).decode()  # 76-column lines
    assert wrapped.count("\n") > 1
    assert excerpt(f"got\n{wrapped}done\n", credential()) == f"got | {REDACTED} | done"
