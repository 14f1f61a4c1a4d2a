"""Failures the command line must turn into one clear line and a documented exit code.

A broken store file, an unknown migration, Elasticsearch not running, a refused password, an
unexpected exception: each gives one line naming what and where, no traceback below debug level,
and nothing created on the way.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

import pytest

from rotator import cli
from rotator.errors import AuthenticationFailed
from tests.cli_runner import Run, in_process

PASSWORD = "pw-that-must-never-show-1234"


@pytest.fixture
def rotator(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Run:
    """Run ``rotator ARGS`` in-process in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROTATOR_CONFIG", raising=False)
    monkeypatch.setenv("ROTATOR_TEST_PW", PASSWORD)
    return in_process(capsys)


def config(tmp_path: Path, extra: str = "", es: str = "http://127.0.0.1:9") -> Path:
    path = tmp_path / "rotator.yaml"
    path.write_text(
        f"elasticsearch: {{hosts: ['{es}'], username: rotator, password_env: ROTATOR_TEST_PW,"
        " max_retries: 1, request_timeout: 5s}\n"
        f"store: {{url: 'sqlite:///{tmp_path}/rotator.db', busy_timeout: 1s}}\n"
        "sources:\n  - {name: web, privileges: {cluster: [monitor]}}\n" + extra
    )
    return path


def assert_one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    assert PASSWORD not in text
    return lines[0]


def test_a_garbage_sqlite_file_is_one_line_naming_it(rotator: Run, tmp_path: Path) -> None:
    cfg = config(tmp_path)
    (tmp_path / "rotator.db").write_bytes(b"this is not a database at all\n" * 200)
    for verb in (["status"], ["db", "current"], ["db", "upgrade"], ["once"]):
        result = rotator("-c", str(cfg), *verb)
        assert result.returncode == 2, (verb, result)
        line = assert_one_line(result.stderr)
        assert line == (
            f"rotator: the store at sqlite:///{tmp_path}/rotator.db is not a SQLite database "
            "(file is not a database): check store.url"
        )


def test_db_upgrade_to_an_unknown_revision_is_one_line(rotator: Run, tmp_path: Path) -> None:
    result = rotator("-c", str(config(tmp_path)), "db", "upgrade", "nonsense")
    assert result.returncode == 2
    line = assert_one_line(result.stderr)
    assert line.startswith(
        "rotator: cannot migrate to revision 'nonsense': Can't locate revision identified by "
        "'nonsense'; use head, base, a relative step such as head-1, or one of "
    )


def test_db_current_on_an_empty_store_is_not_success(rotator: Run, tmp_path: Path) -> None:
    result = rotator("-c", str(config(tmp_path)), "db", "current")
    assert result.returncode == 2
    assert "state:   empty (run `rotator db upgrade`)" in result.stdout
    assert assert_one_line(result.stderr) == (
        "rotator: the store's schema is empty: run `rotator db upgrade`"
    )
    assert not (tmp_path / "rotator.db").exists()


@pytest.mark.parametrize("verb", [["status"], ["plan"], ["once"], ["db", "current"]], ids=" ".join)
def test_a_refused_command_creates_no_store_file(
    rotator: Run, tmp_path: Path, verb: list[str]
) -> None:
    result = rotator("-c", str(config(tmp_path)), *verb)
    assert result.returncode == 2
    assert not (tmp_path / "rotator.db").exists()


def test_reading_the_schema_does_not_wait_for_a_writer(rotator: Run, tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert rotator("-c", str(cfg), "db", "upgrade").returncode == 0
    writer = sqlite3.connect(tmp_path / "rotator.db", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # holds the write lock, as a running rotation does
        result = rotator("-c", str(cfg), "db", "current")
        assert result.returncode == 0, result
        assert "state:   current" in result.stdout
        status = rotator("-c", str(cfg), "status")
        assert status.returncode == 0, status
    finally:
        writer.rollback()
        writer.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_elasticsearch_not_running_is_one_line_with_the_host(rotator: Run, tmp_path: Path) -> None:
    host = f"http://127.0.0.1:{_closed_port()}"
    cfg = config(tmp_path, es=host)
    assert rotator("-c", str(cfg), "db", "upgrade").returncode == 0
    result = rotator("-c", str(cfg), "--log-format", "json", "once")
    assert result.returncode == 3, result
    *events, last = result.stderr.strip().splitlines()
    assert last.startswith("rotator: "), last
    assert host in last, last
    assert "Traceback" not in result.stderr
    for event in map(json.loads, events):  # each log event is one JSON line
        assert event["log.logger"].startswith("rotator"), event
        assert "error.stack_trace" not in event


def test_elasticsearch_client_tracebacks_show_at_debug(rotator: Run, tmp_path: Path) -> None:
    cfg = config(tmp_path, es=f"http://127.0.0.1:{_closed_port()}")
    assert rotator("-c", str(cfg), "db", "upgrade").returncode == 0
    result = rotator("-c", str(cfg), "--log-level", "debug", "--log-format", "json", "once")
    assert result.returncode == 3
    assert "Retrying request after failure" in result.stderr
    assert "Traceback" in result.stderr
    assert PASSWORD not in result.stderr


def test_a_refused_password_names_the_user_and_the_reference(
    rotator: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(_args: object, ctx: cli.Context) -> int:
        ctx.load()
        raise AuthenticationFailed("authenticate: Elasticsearch answered 401 security_exception")

    monkeypatch.setattr(cli, "cmd_status", refused)
    result = rotator("-c", str(config(tmp_path)), "status")
    assert result.returncode == 2
    assert assert_one_line(result.stderr) == (
        "rotator: authenticate: Elasticsearch answered 401 security_exception; rotator "
        "authenticated as user 'rotator' with the password from the environment variable "
        "ROTATOR_TEST_PW (elasticsearch.password_env)"
    )


def _crash(_args: object, ctx: cli.Context) -> int:
    ctx.load()
    raise ValueError(f"embedded null byte near password={PASSWORD}\nand a second line")


def test_an_unexpected_error_is_one_redacted_line_and_exit_1(
    rotator: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "cmd_status", _crash)
    result = rotator("-c", str(config(tmp_path)), "--log-format", "json", "status")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert PASSWORD not in result.stderr
    assert lines[-1] == (
        "rotator: unexpected error: ValueError: embedded null byte near password=[REDACTED] "
        "(run with --log-level debug for the traceback)"
    )
    assert len(lines) == 2  # the error event in the log, and the line above
    assert '"message": "unexpected_error"' in lines[0]


def test_an_unexpected_error_has_its_traceback_at_debug(
    rotator: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "cmd_status", _crash)
    result = rotator(
        "-c", str(config(tmp_path)), "--log-level", "debug", "--log-format", "json", "status"
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert PASSWORD not in result.stderr
