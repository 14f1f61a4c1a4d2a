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
killed as a whole when the timeout passes. Its stdout is discarded; the last lines of its stderr,
scrubbed of the secret, go into the error of a failed delivery.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rotator.clock import Clock
from rotator.config import ExecSink
from rotator.delivery.common import iso, require_source
from rotator.errors import DeliveryFailed
from rotator.log import REDACTED, get_logger, redact_text
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
_STDERR_TAIL_BYTES = 64 * 1024
_STDERR_LINES = 10
_LINE_CHARS = 300
# How long to wait for the pipes to close after the process group was killed.
_REAP_SECONDS = 5.0


@dataclass(frozen=True)
class _Outcome:
    """How a command ended: its exit status (None when it timed out) and its stderr."""

    returncode: int | None
    stderr: bytes


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
        """``exec:<program>``."""
        return f"exec:{self._config.argv[0]}"

    def deliver(self, credential: Credential) -> DeliveryReceipt:
        """Run the command with the credential (in ``stdin_format``) and a newline on its stdin.

        Raises:
            DeliveryFailed: the command could not start, exited non-zero or timed out.
        """
        require_source(credential, self._source, self.name)
        started = self._clock.monotonic()
        value = (
            credential.encoded
            if self._config.stdin_format == "encoded"
            else (f"{credential.id}:{credential.api_key}")
        )
        secret = f"{value}\n".encode()
        timeout = self._config.timeout.total_seconds()
        outcome = self._run(self._config.argv, secret, credential, timeout)
        if outcome.returncode != 0:
            raise DeliveryFailed(self._failure(outcome, credential))
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
        except DeliveryFailed as exc:
            self._log.warning("ack_command_unavailable", command=command[0], error=exc.message)
            return False
        if outcome.returncode is None:
            self._log.warning("ack_command_timed_out", command=command[0], timeout=timeout)
        elif outcome.returncode != 0:
            self._log.info("ack_command_declined", command=command[0], status=outcome.returncode)
        return outcome.returncode == 0

    def _run(
        self, argv: Sequence[str], stdin: bytes | None, credential: Credential, timeout: float
    ) -> _Outcome:
        try:
            return _execute(argv, stdin=stdin, env=self._environment(credential), timeout=timeout)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise DeliveryFailed(f"{self.name}: cannot run {argv[0]}: {reason}") from None

    def _environment(self, credential: Credential) -> dict[str, str]:
        env = {name: self._environ[name] for name in INHERITED_VARIABLES if name in self._environ}
        env.setdefault("PATH", os.defpath)
        env["ROTATOR_KEY_ID"] = credential.id
        env["ROTATOR_KEY_NAME"] = credential.name
        env["ROTATOR_SOURCE"] = self._source
        env["ROTATOR_KEY_EXPIRATION"] = iso(credential.expiration) or ""
        return env

    def _failure(self, outcome: _Outcome, credential: Credential) -> str:
        if outcome.returncode is None:
            limit = _seconds(self._config.timeout.total_seconds())
            what = f"timed out after {limit}; its process group was killed"
        elif outcome.returncode < 0:
            what = f"killed by signal {_signal_name(-outcome.returncode)}"
        else:
            what = f"exited with status {outcome.returncode}"
        tail = _stderr_tail(outcome.stderr, (credential.encoded, credential.api_key))
        return f"{self.name}: {what}" + (f"; stderr: {tail}" if tail else "")


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
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(env),
        close_fds=True,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process.pid)
        return _Outcome(None, _reap(process))
    return _Outcome(process.returncode, stderr or b"")


def _kill_group(pgid: int) -> None:
    # The leader is not reaped yet, so its pid (the group id) cannot have been reused.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _reap(process: subprocess.Popen[bytes]) -> bytes:
    """Collect a killed process and what it wrote to stderr."""
    try:
        _, stderr = process.communicate(timeout=_REAP_SECONDS)
    except subprocess.TimeoutExpired:
        # A process outside the group still holds the pipe: give up on the output.
        if process.stderr is not None:
            process.stderr.close()
        process.wait()
        return b""
    return stderr or b""


def _stderr_tail(stderr: bytes, secrets: Sequence[str]) -> str:
    """Return the last lines of a command's stderr, joined by `` | ``, with secrets removed.

    The secrets are replaced before the text is cut, so a cut can never leave part of one.
    """
    data = stderr[-_STDERR_TAIL_BYTES:]
    if len(stderr) > _STDERR_TAIL_BYTES:
        _, _, data = data.partition(b"\n")  # drop the partial first line (it may hold a piece)
    text = data.decode("utf-8", "replace")
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    lines = [line.strip() for line in redact_text(text).splitlines() if line.strip()]
    return " | ".join(_shorten(line) for line in lines[-_STDERR_LINES:])


def _shorten(line: str) -> str:
    return line if len(line) <= _LINE_CHARS else line[: _LINE_CHARS - 3] + "..."


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _took(elapsed: float) -> str:
    return f"exit 0 in {elapsed:.2f}s"
