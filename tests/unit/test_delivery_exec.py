"""The exec sink: the secret only on stdin, a minimal environment, failures, timeouts and acks."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from rotator.clock import ManualClock
from rotator.config import ExecSink
from rotator.delivery import ExecDelivery, build_sink
from rotator.delivery.scrub import excerpt
from rotator.errors import DeliveryFailed
from rotator.log import REDACTED
from rotator.ports import Credential

KEY_ID = "VuaCfGcBCdbkQm-e5aOx"
SECRET = "ui2lp2axTNmsyakw9tvNnw"
ENCODED = base64.b64encode(f"{KEY_ID}:{SECRET}".encode()).decode()
EXPIRATION = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
PY = sys.executable

# Records what the child sees: its argv, its cmdline and environ as the kernel shows them to
# other processes, and its stdin.
RECORDER = textwrap.dedent(
    """
    import json, os, sys
    pid = os.getpid()
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmdline = f.read().decode()
    with open(f"/proc/{pid}/environ", "rb") as f:
        environ = f.read().decode()
    record = {"argv": sys.argv, "env": dict(os.environ), "cmdline": cmdline,
              "environ": environ, "stdin": sys.stdin.read()}
    with open(sys.argv[1], "w") as f:
        json.dump(record, f)
    """
)


def credential(source: str = "web", expiration: datetime | None = EXPIRATION) -> Credential:
    return Credential(
        id=KEY_ID,
        name="rotator-web-3",
        api_key=SECRET,
        encoded=ENCODED,
        source=source,
        expiration=expiration,
    )


def sink(argv: list[str], environ: dict[str, str] | None = None, **settings: Any) -> ExecDelivery:
    config = ExecSink(type="exec", argv=argv, **settings)
    return ExecDelivery(config, clock=ManualClock(EXPIRATION), source="web", environ=environ)


def script(tmp_path: Path, body: str, name: str = "child.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def assert_no_secret(exc: BaseException) -> None:
    cred = credential()
    assert cred.api_key not in str(exc)
    assert cred.encoded not in str(exc)


def record_of(tmp_path: Path, environ: dict[str, str] | None = None) -> dict[str, Any]:
    out = tmp_path / "record.json"
    recorder = script(tmp_path, RECORDER, "recorder.py")
    sink([PY, recorder, str(out)], environ=environ).deliver(credential())
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# --- where the secret goes ------------------------------------------------------------------------


def test_secret_arrives_on_stdin_as_id_colon_api_key_by_default(tmp_path: Path) -> None:
    assert record_of(tmp_path)["stdin"] == f"{KEY_ID}:{SECRET}\n"


def test_stdin_format_encoded_sends_the_base64_credential(tmp_path: Path) -> None:
    out = tmp_path / "record.json"
    recorder = script(tmp_path, RECORDER, "recorder.py")
    sink([PY, recorder, str(out)], stdin_format="encoded").deliver(credential())
    assert json.loads(out.read_text())["stdin"] == f"{ENCODED}\n"


def test_stdin_without_newline_for_tools_that_keep_it_byte_for_byte(tmp_path: Path) -> None:
    # `filebeat keystore add --stdin` stores all of stdin: a newline would end up in the key.
    out = tmp_path / "record.json"
    recorder = script(tmp_path, RECORDER, "recorder.py")
    sink([PY, recorder, str(out)], stdin_newline=False).deliver(credential())
    assert json.loads(out.read_text())["stdin"] == f"{KEY_ID}:{SECRET}"


def test_secret_is_absent_from_argv_and_proc_cmdline(tmp_path: Path) -> None:
    record = record_of(tmp_path)
    for secret in (SECRET, ENCODED):
        assert secret not in " ".join(record["argv"])
        assert secret not in record["cmdline"]


def test_secret_is_absent_from_the_environment(tmp_path: Path) -> None:
    record = record_of(tmp_path)
    for secret in (SECRET, ENCODED):
        assert secret not in record["environ"]
        assert all(secret not in value for value in record["env"].values())


def test_environment_is_minimal_plus_key_metadata(tmp_path: Path) -> None:
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/home/rotator",
        "LANG": "C.UTF-8",
        "ES_PASSWORD": "rotators-own-password",
        "AWS_SECRET_ACCESS_KEY": "not-for-children",
    }
    env = record_of(tmp_path, environ)["env"]
    env.pop("LC_CTYPE", None)  # Python's C-locale coercion may add it in the child
    assert env == {
        "PATH": environ["PATH"],
        "HOME": "/home/rotator",
        "LANG": "C.UTF-8",
        "ROTATOR_KEY_ID": KEY_ID,
        "ROTATOR_KEY_NAME": "rotator-web-3",
        "ROTATOR_SOURCE": "web",
        "ROTATOR_KEY_EXPIRATION": "2026-03-04T05:06:07Z",
    }


def test_expiration_is_empty_for_a_key_that_never_expires(tmp_path: Path) -> None:
    out = tmp_path / "record.json"
    recorder = script(tmp_path, RECORDER, "recorder.py")
    sink([PY, recorder, str(out)]).deliver(credential(expiration=None))
    assert json.loads(out.read_text())["env"]["ROTATOR_KEY_EXPIRATION"] == ""


def test_receipt_names_the_program(tmp_path: Path) -> None:
    receipt = sink(["true"]).deliver(credential())
    assert (receipt.sink, receipt.target) == ("exec", "true")
    assert receipt.detail.startswith("exit 0")


# --- failures -------------------------------------------------------------------------------------


def test_non_zero_exit_fails_with_status_and_scrubbed_stderr(tmp_path: Path) -> None:
    child = script(
        tmp_path,
        """
        import sys
        value = sys.stdin.read().strip()
        print("starting", file=sys.stderr)
        print("cannot store " + value, file=sys.stderr)
        print("raw secret was " + sys.argv[1], file=sys.stderr)
        sys.exit(3)
        """,
    )
    # The raw secret is passed in argv here only to make the child echo it: a test device.
    with pytest.raises(DeliveryFailed) as caught:
        sink([PY, child, SECRET]).deliver(credential())
    message = str(caught.value)
    assert "exited with status 3" in message
    assert caught.value.summary == f"exec:{PY}: exited with status 3"  # type: ignore[attr-defined]
    assert "starting" in message
    assert f"cannot store {KEY_ID}:{REDACTED}" in message
    assert_no_secret(caught.value)


def test_missing_program_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(DeliveryFailed, match="cannot run /nonexistent/tool") as caught:
        sink(["/nonexistent/tool"]).deliver(credential())
    assert_no_secret(caught.value)


def test_killed_by_signal_is_named(tmp_path: Path) -> None:
    child = script(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    with pytest.raises(DeliveryFailed, match="killed by signal SIGTERM") as caught:
        sink([PY, child]).deliver(credential())
    assert_no_secret(caught.value)


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    child = script(
        tmp_path,
        f"""
        import subprocess, sys, time
        sys.stdin.read()
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pid_file)!r}, "w").write(str(grandchild.pid))
        print("waiting " + sys.argv[1], file=sys.stderr, flush=True)
        time.sleep(60)
        """,
    )
    delivery = sink([PY, child, ENCODED], timeout=timedelta(seconds=1))
    with pytest.raises(
        DeliveryFailed, match="timed out after 1s; its process group was killed"
    ) as caught:
        delivery.deliver(credential())
    assert_no_secret(caught.value)
    assert dies_soon(int(pid_file.read_text()))


def dies_soon(pid: int) -> bool:
    """True when the process is gone, or a zombie waiting for its reaper, within 5 seconds."""
    for _ in range(100):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return True
        state = next(line for line in status.splitlines() if line.startswith("State:"))
        if state.split()[1] in ("Z", "X"):
            return True
        threading.Event().wait(0.05)
    return False


def test_output_excerpt_scrubs_before_cutting() -> None:
    noise = b"x" * 70_000 + b"\n"
    output = noise + f"key {ENCODED} and {SECRET}\n".encode() + b"last\n"
    assert excerpt(output, credential()) == f"key {REDACTED} and {REDACTED} | last"


def test_output_excerpt_keeps_only_the_last_lines_that_fit() -> None:
    output = "".join(f"line {n:03}\n" for n in range(500)).encode()
    kept = excerpt(output, credential(), limit=100)
    assert kept.endswith("line 498 | line 499")
    assert kept.split(" | ")[0] == "line 491"
    assert len(kept) <= 100


def test_stdout_and_stderr_both_reach_the_failure(tmp_path: Path) -> None:
    delivery = sink(["/bin/sh", "-c", "echo on stdout; echo on stderr >&2; exit 1"])
    with pytest.raises(DeliveryFailed, match=re.escape("output: on stdout | on stderr")):
        delivery.deliver(credential())


@pytest.mark.parametrize(
    ("argv", "bad"),
    [
        (["/bin/echo", "a\0b"], "argv[1] contains a NUL byte"),
        (["/bin/ec\0ho"], "argv[0] contains a NUL byte"),
    ],
)
def test_nul_byte_in_argv_fails_in_one_line_naming_the_sink(argv: list[str], bad: str) -> None:
    config = ExecSink.model_construct(
        type="exec",
        argv=argv,
        stdin_format="id:api_key",
        timeout=timedelta(seconds=5),
        ack_command=None,
        ack_timeout=timedelta(seconds=5),
    )
    delivery = ExecDelivery(config, clock=ManualClock(EXPIRATION), source="web")
    with pytest.raises(DeliveryFailed) as caught:
        delivery.deliver(credential())
    message = str(caught.value)
    assert message.startswith(f"{delivery.name}: cannot run it: {bad}")
    assert message.isprintable()
    assert "\0" not in delivery.name


def test_nul_byte_in_ack_command_means_not_yet() -> None:
    config = ExecSink.model_construct(
        type="exec",
        argv=["true"],
        stdin_format="id:api_key",
        timeout=timedelta(seconds=5),
        ack_command=["/bin/echo", "a\0b"],
        ack_timeout=timedelta(seconds=5),
    )
    delivery = ExecDelivery(config, clock=ManualClock(EXPIRATION), source="web")
    with capture_logs() as logs:
        assert delivery.acknowledge(credential()) is False
    assert [e["event"] for e in logs] == ["ack_command_unavailable"]
    assert "argv[1] contains a NUL byte" in logs[0]["error"]


def test_credential_of_another_source_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "record.json"
    recorder = script(tmp_path, RECORDER, "recorder.py")
    with pytest.raises(DeliveryFailed, match="source 'db'") as caught:
        sink([PY, recorder, str(out)]).deliver(credential(source="db"))
    assert not out.exists()
    assert_no_secret(caught.value)


# --- acknowledgement ------------------------------------------------------------------------------


def test_acknowledge_without_ack_command_is_true() -> None:
    assert sink(["true"]).acknowledge(credential()) is True


def test_ack_command_exit_zero_is_true() -> None:
    assert sink(["true"], ack_command=["true"]).acknowledge(credential()) is True


def test_ack_command_non_zero_is_false() -> None:
    assert sink(["true"], ack_command=["false"]).acknowledge(credential()) is False


def test_ack_command_gets_the_environment_and_no_secret(tmp_path: Path) -> None:
    out = tmp_path / "record.json"
    recorder = script(tmp_path, RECORDER, "recorder.py")
    delivery = sink(["true"], ack_command=[PY, recorder, str(out)])
    assert delivery.acknowledge(credential()) is True
    record = json.loads(out.read_text())
    assert record["stdin"] == ""
    assert record["env"]["ROTATOR_KEY_ID"] == KEY_ID
    assert SECRET not in json.dumps(record)
    assert ENCODED not in json.dumps(record)


def test_missing_ack_command_is_false_with_a_warning() -> None:
    delivery = sink(["true"], ack_command=["/nonexistent/ack"])
    with capture_logs() as logs:
        assert delivery.acknowledge(credential()) is False
    assert [(e["event"], e["log_level"]) for e in logs] == [("ack_command_unavailable", "warning")]


def test_ack_command_timeout_is_false(tmp_path: Path) -> None:
    child = script(tmp_path, "import time\ntime.sleep(60)\n")
    delivery = sink(["true"], ack_command=[PY, child], ack_timeout=timedelta(seconds=1))
    assert delivery.acknowledge(credential()) is False


# --- wiring ---------------------------------------------------------------------------------------


def test_build_sink_makes_an_exec_delivery() -> None:
    config = ExecSink(type="exec", argv=["/usr/bin/true"])
    built = build_sink(config, clock=ManualClock(EXPIRATION), source="web")
    assert isinstance(built, ExecDelivery)
    assert built.name == "exec:/usr/bin/true"
