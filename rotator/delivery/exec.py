"""Exec sink: runs a command, without a shell, that reads the credential from its stdin.

The secret travels only through the command's standard input: never in its argv (which any user
can read in ``/proc/<pid>/cmdline``) nor in its environment (``/proc/<pid>/environ``, inherited by
every child). Standard input carries one line: by default ``id:api_key`` (``stdin_format:
id:api_key``), what Beats, Logstash and Elastic Agent take for their ``api_key`` setting (Beats
base64-encodes it itself), e.g. ``filebeat keystore add ES_API_KEY --stdin --force``; or, with
``stdin_format: encoded``, the base64 ``encoded`` credential that an ``Authorization: ApiKey``
header takes. The newline lets line-oriented tools (``read``, ``head -n1``) see a complete line.

The command's environment holds a few inherited variables (PATH, HOME, LANG...) and
``ROTATOR_KEY_ID``, ``ROTATOR_KEY_NAME``, ``ROTATOR_SOURCE`` and ``ROTATOR_KEY_EXPIRATION``
(ISO-8601 UTC, or empty when the key does not expire). It runs in its own process group, which is
killed as a whole when the timeout passes. Its stdout and stderr are read together; when the
delivery fails, their last lines, scrubbed of every encoding of the credential (raw, base64, hex)
and capped, go into the failure's message, while its ``summary`` says only how the command ended.
Nothing it prints is kept when it succeeds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rotator.clock import Clock
from rotator.config import ExecSink
from rotator.delivery.common import SinkFailed, iso, printable, require_source
from rotator.delivery.scrub import excerpt
from rotator.log import get_logger
from rotator.ports import Credential, DeliveryReceipt

INHERITED_VARIABLES = (
    "PATH",
    "HOME",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "TZ",
    "USER",
    "LOGNAME",
    "TMPDIR",
)
# How long to wait for the pipes to close after the process group was killed.
_REAP_SECONDS = 5.0


@dataclass(frozen=True)
class _Outcome:
    """How a command ended: its exit status (None when it timed out) and what it printed."""

    returncode: int | None
    output: bytes


class ExecDelivery:
    """Runs a command with the credential on its stdin (a Sink)."""

    def __init__(
        self,
        config: ExecSink,
        *,
        clock: Clock,
        source: str,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """Prepare the sink.

        Args:
            config: the sink's settings.
            clock: measures how long the command took.
            source: the name of the source this sink delivers for.
            environ: the environment to inherit PATH, HOME, LANG... from (the process's own by
                default).
        """
        self._config = config
        self._clock = clock
        self._source = source
        self._environ = os.environ if environ is None else environ
        self._log = get_logger("rotator.delivery.exec", sink=self.name, source=source)

    @property
    def name(self) -> str:
        """``exec:<program>`` (control characters escaped)."""
        return f"exec:{printable(self._config.argv[0])}"

    def deliver(self, credential: Credential) -> DeliveryReceipt:
        """Run the command with the credential (in ``stdin_format``) and a newline on its stdin.

        Raises:
            SinkFailed: the command could not start, exited non-zero or timed out; ``summary``
                says which, the message adds the scrubbed end of its output.
        """
        require_source(credential, self._source, self.name)
        started = self._clock.monotonic()
        value = (
            credential.encoded
            if self._config.stdin_format == "encoded"
            else (f"{credential.id}:{credential.api_key}")
        )
        secret = (f"{value}\n" if self._config.stdin_newline else value).encode()
        timeout = self._config.timeout.total_seconds()
        outcome = self._run(self._config.argv, secret, credential, timeout)
        if outcome.returncode != 0:
            raise SinkFailed(self._ending(outcome), excerpt(outcome.output, credential))
        elapsed = self._clock.monotonic() - started
        return DeliveryReceipt(sink="exec", target=self._config.argv[0], detail=_took(elapsed))

    def acknowledge(self, credential: Credential) -> bool:
        """Run ``ack_command`` (no secret on its stdin); True when it exits 0 or is not set.

        Never raises: a command that fails, times out or cannot start means "not yet".
        """
        command = self._config.ack_command
        if not command:
            return True
        timeout = self._config.ack_timeout.total_seconds()
        try:
            outcome = self._run(command, None, credential, timeout)
        except SinkFailed as exc:
            self._log.warning("ack_command_unavailable", command=command[0], error=exc.summary)
            return False
        if outcome.returncode is None:
            self._log.warning("ack_command_timed_out", command=command[0], timeout=timeout)
        elif outcome.returncode != 0:
            self._log.info(
                "ack_command_declined",
                command=command[0],
                status=outcome.returncode,
                output=excerpt(outcome.output, credential),
            )
        return outcome.returncode == 0

    def check(self, state: Mapping[str, Any]) -> str | None:
        """A command keeps nothing rotator could look at later: always None (cannot tell).

        Whether the consumer still uses the credential is what ``ack_command`` answers.
        """
        return None

    def _run(
        self, argv: Sequence[str], stdin: bytes | None, credential: Credential, timeout: float
    ) -> _Outcome:
        try:
            return _execute(argv, stdin=stdin, env=self._environment(credential), timeout=timeout)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise SinkFailed(f"{self.name}: cannot run {printable(argv[0])}: {reason}") from None
        except ValueError:
            # subprocess refuses NUL bytes (and unencodable text) in argv and the environment.
            raise SinkFailed(f"{self.name}: cannot run it: {_unusable(argv)}") from None

    def _environment(self, credential: Credential) -> dict[str, str]:
        env = {name: self._environ[name] for name in INHERITED_VARIABLES if name in self._environ}
        env.setdefault("PATH", os.defpath)
        env["ROTATOR_KEY_ID"] = credential.id
        env["ROTATOR_KEY_NAME"] = credential.name
        env["ROTATOR_SOURCE"] = self._source
        env["ROTATOR_KEY_EXPIRATION"] = iso(credential.expiration) or ""
        return env

    def _ending(self, outcome: _Outcome) -> str:
        """How the command ended, in one line without its output."""
        if outcome.returncode is None:
            limit = _seconds(self._config.timeout.total_seconds())
            what = f"timed out after {limit}; its process group was killed"
        elif outcome.returncode < 0:
            what = f"killed by signal {_signal_name(-outcome.returncode)}"
        else:
            what = f"exited with status {outcome.returncode}"
        return f"{self.name}: {what}"


def _unusable(argv: Sequence[str]) -> str:
    """Say which argument a command cannot be started with."""
    for index, argument in enumerate(argv):
        if "\0" in argument:
            return f"argv[{index}] contains a NUL byte"
        try:
            argument.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return f"argv[{index}] is not encodable text"
    return "its environment holds a NUL byte or unencodable text"


def _execute(
    argv: Sequence[str], *, stdin: bytes | None, env: Mapping[str, str], timeout: float
) -> _Outcome:
    """Run ``argv`` in a new process group; kill the whole group when ``timeout`` passes.

    Raises:
        OSError: the program cannot be started (missing, not executable).
    """
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env),
        close_fds=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process.pid)
        return _Outcome(None, _reap(process))
    return _Outcome(process.returncode, output or b"")


def _kill_group(pgid: int) -> None:
    # The leader is not reaped yet, so its pid (the group id) cannot have been reused.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _reap(process: subprocess.Popen[bytes]) -> bytes:
    """Collect a killed process and what it printed."""
    try:
        output, _ = process.communicate(timeout=_REAP_SECONDS)
    except subprocess.TimeoutExpired:
        # A process outside the group still holds the pipe: give up on the output.
        if process.stdout is not None:
            process.stdout.close()
        process.wait()
        return b""
    return output or b""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _took(elapsed: float) -> str:
    return f"exit 0 in {elapsed:.2f}s"
