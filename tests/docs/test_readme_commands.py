"""Every shell command in the README's and docs/'s ```sh blocks that can run here, runs.

Each document is played in a temporary directory of its own, block after block, command after
command, as a reader would type them:

- ``rotator ...`` runs as ``sys.executable -m rotator ...`` with PYTHONPATH set to this checkout,
  and must exit 0. ``rotator sandbox serve`` is started in the background (whether or not the
  line ends in ``&``), must print ``listening on http://...``, and is stopped with SIGTERM at the
  end of the document, which must make it exit 0. ``rotator ... run`` (the daemon) is started,
  must still be running after a few seconds, and must exit 0 on SIGTERM. A command that follows
  until interrupted (``--follow``, ``--watch``) must still be running after a few seconds too, and
  must exit 0 on SIGINT, as after Ctrl-C. ``> FILE`` sends a command's standard output to FILE;
  pipes and command lists are not played.
- ``curl`` runs when every address it names is this machine (the sandbox a document started);
  ``--fail`` is added, so an HTTP error fails. A curl to any other host needs a real cluster and
  is skipped.
- ``export NAME=VALUE`` and ``NAME=VALUE command`` set the environment of what follows.
- Programs in SKIPPED are not run; each says why. A program in neither list fails the test, so a
  new command in a document is classified on purpose.

What the directory holds before the first command, so that the commands mean what they say:
a copy of the checkout's ``config/`` (``rotator check-config config/rotator.example.yaml``), a
``rotator.yaml`` pointing at a sandbox started for the document (user ``elastic``, password
``changeme`` in ``ROTATOR_ES_PASSWORD``) with its SQLite store migrated (``rotator keys``,
``rotator once track``), and every ```yaml block whose first line is ``# NAME`` written to NAME
(``docs/operations.md``'s ``try.yaml``). Rewritten, so that documents can say what a reader types:
the ports 9200 (Elasticsearch) and 9464 (health and metrics) become free ports, and the directory
``/tmp/rotator-try`` becomes the temporary directory.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rotator.clock import SystemClock

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TRY_DIR = "/tmp/rotator-try"
WELL_KNOWN_PORTS = (9200, 9464)
PASSWORD = "changeme"
COMMAND_TIMEOUT = 120.0
DAEMON_SECONDS = 6.0
# These tests wait for real processes, so on the real clock.
CLOCK = SystemClock()

# Programs that cannot run here, and why. Anything not rotator, curl or export must be here.
SKIPPED = {
    # README, Quick start: they create .venv in the checkout and run the whole demo or the whole
    # test suite (this test is part of it); the demo is tested by tests/e2e/test_demo.py.
    "./scripts/quickstart": "sets up .venv and runs the demo (tests/e2e/test_demo.py)",
    "./scripts/test": "runs the whole suite, this test included",
    # `. .venv/bin/activate`: here every rotator command runs as `python -m rotator` instead.
    ".": "activates the virtual environment, which this test does by running python -m rotator",
    # docs/operations.md, systemd and container: they change the host (users, /opt, /etc,
    # services) or need a container engine, neither of which a test may do.
    "useradd": "creates a system user",
    "python3": "creates a virtual environment in /opt",
    "/opt/rotator/bin/pip": "installs into /opt",
    "install": "installs files into /etc",
    "systemctl": "needs systemd as the init system, and root",
    "sudo": "runs as another user",
    "podman": "needs a container engine and a network to build the image",
    # docs/performance.md: the benchmarks run for a minute (--quick) to most of an hour; the
    # quick run is itself a test (tests/bench, with ROTATOR_BENCH=1), and installing the bench
    # extra changes the checkout's environment.
    ".venv/bin/pip": "installs the bench extra into the checkout's environment",
    ".venv/bin/python": "runs the benchmarks (tests/bench runs bench/run --quick)",
}
# ``rotator`` commands that are documented but not run here, and why.
SKIPPED_ROTATOR = {
    ("sandbox", "demo"): "takes a minute; tests/e2e/test_demo.py runs it",
}
LOCAL_ADDRESS = re.compile(r"^(?:https?://)?(?:localhost|127\.0\.0\.1)(?::\d+)?(?:/|$)")
ANY_URL = re.compile(r"^(?:https?://)?[\w.-]+\.[a-z]{2,}(?::\d+)?(?:/|$)|^https?://")


@dataclass
class Command:
    """One command as written in a document."""

    line: int
    text: str

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text, comments=True)


@dataclass
class Document:
    """The commands of one document, and the files its ```yaml blocks name."""

    path: str
    commands: list[Command] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)


def parse(text: str, path: str = "doc") -> Document:
    """Collect the commands of every ```sh block, joining continued and multi-line commands."""
    document = Document(path)
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        fence = lines[index].strip()
        index += 1
        if fence not in ("```sh", "```yaml"):
            continue
        start = index
        while index < len(lines) and lines[index].strip() != "```":
            index += 1
        body = lines[start:index]
        index += 1
        if fence == "```yaml":
            name = re.fullmatch(r"#\s*([\w.-]+\.ya?ml)", body[0].strip()) if body else None
            if name:
                document.files[name[1]] = "\n".join(body[1:]) + "\n"
            continue
        document.commands.extend(_commands(body, start + 1))
    return document


def _commands(body: list[str], first_line: int) -> Iterator[Command]:
    pending: list[str] = []
    begun = first_line
    for offset, line in enumerate(body):
        if not pending:
            begun = first_line + offset
        pending.append(line)
        text = "\n".join(pending)
        if text.endswith("\\"):
            continue
        try:
            argv = shlex.split(text, comments=True)
        except ValueError:  # a quotation that continues on the next line
            continue
        pending = []
        if argv:
            yield Command(begun, text.replace("\\\n", " "))
    assert not pending, f"line {begun}: a command never ends: {pending}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Outcome:
    """What happened to one command."""

    command: Command
    status: str  # "ran", "skipped" or "failed"
    detail: str = ""


class Player:
    """Plays a document's commands in a directory, as the module docstring says."""

    def __init__(self, document: Document, workdir: Path) -> None:
        self.document = document
        self.workdir = workdir
        self.ports = {port: free_port() for port in WELL_KNOWN_PORTS}
        self.env = {
            key: value for key, value in os.environ.items() if not key.startswith("ROTATOR_")
        }
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        self.env["ROTATOR_ES_PASSWORD"] = PASSWORD
        self.background: list[tuple[Command, subprocess.Popen[bytes], Path]] = []
        self.outcomes: list[Outcome] = []

    def rewrite(self, text: str) -> str:
        for port, replacement in self.ports.items():
            text = re.sub(rf"\b{port}\b", str(replacement), text)
        return text.replace(TRY_DIR, str(self.workdir))

    # --- preparing the directory ------------------------------------------------------------

    def prepare(self) -> None:
        shutil.copytree(ROOT / "config", self.workdir / "config")
        url = self.start_sandbox(
            Command(0, "(the sandbox for rotator.yaml)"),
            ["--port", "0", "--user", f"elastic:{PASSWORD}:superuser"],
        )
        (self.workdir / "rotator.yaml").write_text(
            f"elasticsearch:\n  hosts: [{url!r}]\n  username: elastic\n"
            "  password_env: ROTATOR_ES_PASSWORD\nstore:\n  url: sqlite:///./rotator.db\n"
        )
        migrated = self.rotator(["db", "upgrade"])
        assert migrated.returncode == 0, migrated.stderr
        for name, content in self.document.files.items():
            (self.workdir / name).write_text(self.rewrite(content))

    def start_sandbox(self, command: Command, args: list[str]) -> str:
        log = self.workdir / f"sandbox-{len(self.background)}.out"
        process = self.spawn(["sandbox", "serve", *args], log)
        self.background.append((command, process, log))
        deadline = CLOCK.monotonic() + 30
        while CLOCK.monotonic() < deadline:
            found = re.search(r"listening on (http://\S+)", log.read_text(errors="replace"))
            if found:
                return found[1]
            if process.poll() is not None:
                break
            CLOCK.sleep(0.1)
        raise AssertionError(f"sandbox serve did not start: {log.read_text(errors='replace')}")

    # --- running ----------------------------------------------------------------------------

    def spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "rotator", *args],
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def rotator(
        self, args: list[str], env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rotator", *args],
            cwd=self.workdir,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )

    def play(self) -> list[Outcome]:
        try:
            self.prepare()
            for command in self.document.commands:
                self.outcomes.append(self.one(command))
        finally:
            self.stop_background()
        return self.outcomes

    def one(self, command: Command) -> Outcome:
        argv = shlex.split(self.rewrite(command.text), comments=True)
        background = argv[-1] == "&"
        if background:
            argv = argv[:-1]
        if argv[0] == "export":
            for assignment in argv[1:]:
                name, _, value = assignment.partition("=")
                self.env[name] = value
            return Outcome(command, "ran")
        env: dict[str, str] = {}
        while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]):
            name, _, value = argv.pop(0).partition("=")
            env[name] = value
        stdout: str | None = None
        if ">" in argv:
            at = argv.index(">")
            argv, stdout = argv[:at] + argv[at + 2 :], argv[at + 1]
        if {"|", "&&", "||"} & set(argv):
            return Outcome(command, "failed", "pipes and command lists are not played")
        program = argv[0]
        if program in SKIPPED:
            return Outcome(command, "skipped", SKIPPED[program])
        if program == "rotator":
            return self.run_rotator(command, argv[1:], env, stdout)
        if program == "curl":
            return self.run_curl(command, argv, env)
        return Outcome(
            command, "failed", f"{program!r} is not classified: add it to SKIPPED with a reason"
        )

    def run_rotator(
        self, command: Command, args: list[str], env: dict[str, str], stdout: str | None
    ) -> Outcome:
        verbs = _verbs(args)
        for skipped, reason in SKIPPED_ROTATOR.items():
            if tuple(verbs[: len(skipped)]) == skipped:
                return Outcome(command, "skipped", reason)
        if verbs[:2] == ["sandbox", "serve"]:
            try:
                self.start_sandbox(command, args[args.index("serve") + 1 :])
            except AssertionError as exc:
                return Outcome(command, "failed", str(exc))
            return Outcome(command, "ran")
        if verbs[:1] == ["run"]:
            # Stopped once it has scheduled its jobs: a signal during start-up proves nothing.
            return self.run_until(command, args, signal.SIGTERM, r"job_scheduled")
        if {"--follow", "--watch"} & set(args):
            return self.run_until(command, args, signal.SIGINT, r"\S")
        try:
            result = self.rotator(args, env)
        except subprocess.TimeoutExpired:
            return Outcome(command, "failed", f"still running after {COMMAND_TIMEOUT:.0f} s")
        if result.returncode != 0:
            return Outcome(command, "failed", _failure(result))
        if stdout is not None:
            (self.workdir / stdout).write_text(result.stdout)
        return Outcome(command, "ran")

    def run_until(
        self, command: Command, args: list[str], stop: signal.Signals, ready: str
    ) -> Outcome:
        """Run a command that goes on until stopped: it must print ``ready`` and still run
        DAEMON_SECONDS after its start; then ``stop`` must end it with exit 0."""
        log = self.workdir / f"until-{command.line}.out"
        process = self.spawn(args, log)
        start = CLOCK.monotonic()
        while process.poll() is None and CLOCK.monotonic() < start + COMMAND_TIMEOUT:
            waited = CLOCK.monotonic() - start
            if waited >= DAEMON_SECONDS and re.search(ready, log.read_text(errors="replace")):
                break
            CLOCK.sleep(0.2)
        if process.poll() is not None:
            return Outcome(command, "failed", f"exited early: {process.returncode}: {_tail(log)}")
        if not re.search(ready, log.read_text(errors="replace")):
            process.kill()
            process.wait()
            return Outcome(command, "failed", f"never printed {ready!r}: {_tail(log)}")
        process.send_signal(stop)
        try:
            code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return Outcome(command, "failed", f"ignored {stop.name}: {_tail(log)}")
        if code != 0:
            return Outcome(command, "failed", f"{stop.name}: exit {code}: {_tail(log)}")
        return Outcome(command, "ran")

    def run_curl(self, command: Command, argv: list[str], env: dict[str, str]) -> Outcome:
        addresses = [arg for arg in argv[1:] if ANY_URL.match(arg) or LOCAL_ADDRESS.match(arg)]
        if not addresses or not all(LOCAL_ADDRESS.match(arg) for arg in addresses):
            return Outcome(command, "skipped", "curl to a real cluster")
        if shutil.which("curl") is None:
            return Outcome(command, "skipped", "no curl here")
        result = subprocess.run(
            [*argv, "--fail", "--silent", "--show-error", "--max-time", "30"],
            cwd=self.workdir,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            return Outcome(command, "failed", _failure(result))
        return Outcome(command, "ran")

    def stop_background(self) -> None:
        for command, process, log in reversed(self.background):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                code = -1
            if command.line and code != 0:
                self.outcomes.append(
                    Outcome(command, "failed", f"on SIGTERM: exit {code}: {_tail(log)}")
                )


def _verbs(args: list[str]) -> list[str]:
    """The command words after the global options (``--config PATH`` and the like)."""
    words: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in ("--config", "-c", "--log-level", "--log-format"):
            skip = True
            continue
        if arg.startswith("-"):
            if words:
                break
            continue
        words.append(arg)
    return words


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-1500:]


def _failure(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n{result.stdout[-1500:]}\n{result.stderr[-1500:]}"


def _report(outcomes: list[Outcome], path: str) -> str:
    return "\n\n".join(
        f"{path}:{outcome.command.line}: {outcome.command.text}\n  {outcome.detail}"
        for outcome in outcomes
        if outcome.status == "failed"
    )


WITH_COMMANDS = [path for path in DOCUMENTS if parse(path.read_text()).commands]


@pytest.mark.parametrize("path", WITH_COMMANDS, ids=[path.name for path in WITH_COMMANDS])
def test_every_runnable_command_runs(path: Path, tmp_path: Path) -> None:
    document = parse(path.read_text(), str(path.relative_to(ROOT)))
    outcomes = Player(document, tmp_path).play()
    failed = [outcome for outcome in outcomes if outcome.status == "failed"]
    assert not failed, _report(outcomes, document.path)
    # Something ran, unless every command of the document is skipped with its reason (the
    # benchmark commands of docs/performance.md).
    assert any(outcome.status == "ran" for outcome in outcomes) or all(
        outcome.status == "skipped" for outcome in outcomes
    )


def test_the_documents_have_runnable_commands() -> None:
    readme = parse((ROOT / "README.md").read_text())
    texts = [command.text for command in readme.commands]
    assert "rotator --help" in texts
    assert any(text.startswith("rotator sandbox serve") for text in texts)
    operations = parse((ROOT / "docs" / "operations.md").read_text())
    assert "try.yaml" in operations.files
    assert any(command.argv[-1] == "run" for command in operations.commands)


def test_parse_joins_continued_and_quoted_lines() -> None:
    text = (
        "```sh\n"
        "rotator keys \\\n  --expired   # a comment\n"
        "curl -d '{\n  \"a\": 1}' localhost:9200/x\n"
        "\n"
        "```\n"
        "```yaml\n# x.yaml\nlog: {}\n```\n"
    )
    document = parse(text)
    assert [command.argv for command in document.commands] == [
        ["rotator", "keys", "--expired"],
        ["curl", "-d", '{\n  "a": 1}', "localhost:9200/x"],
    ]
    assert document.files == {"x.yaml": "log: {}\n"}


def test_a_failing_command_fails_the_document(tmp_path: Path) -> None:
    text = (
        "```sh\n"
        "rotator --help\n"
        "rotator check-config no-such-file.yaml\n"
        "frobnicate --all\n"
        "systemctl restart rotator\n"
        "```\n"
    )
    outcomes = Player(parse(text), tmp_path).play()
    assert [outcome.status for outcome in outcomes] == ["ran", "failed", "failed", "skipped"]
    assert "exit 2" in outcomes[1].detail
    assert "not classified" in outcomes[2].detail
