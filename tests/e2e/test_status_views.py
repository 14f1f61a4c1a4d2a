"""The terminal views: tables drawn with rich on a terminal and plain text otherwise, and
``rotator status --watch`` refreshing until interrupted."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from rotator import cli, commands, views
from rotator.clock import SystemClock
from tests.e2e.conftest import SOURCES, World, config_text

HEADERS = ["SOURCE", "KEY", "STATE"]
ROWS = [["web", "k1", "active"], ["db-long-name", "-", "no key"]]


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_plain_table_is_fixed_width_text() -> None:
    assert commands.table(HEADERS, ROWS, terminal=False) == (
        "SOURCE        KEY  STATE\nweb           k1   active\ndb-long-name  -    no key"
    )


def test_terminal_table_is_drawn_with_rich_and_coloured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    text = commands.table(HEADERS, ROWS, terminal=True)
    assert "\x1b[" in text  # styled
    plain = "\n".join(line.rstrip() for line in _strip_ansi(text).splitlines())
    for word in ("SOURCE", "db-long-name", "no key"):
        assert word in plain
    assert "─" in plain  # the header rule
    assert plain != commands.table(HEADERS, ROWS, terminal=False)


def test_the_default_follows_standard_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert commands.table(HEADERS, ROWS) == commands.table(HEADERS, ROWS, terminal=False)
    monkeypatch.setattr("sys.stdout", Terminal())
    monkeypatch.setenv("TERM", "xterm-256color")
    assert commands.table(HEADERS, ROWS) == commands.table(HEADERS, ROWS, terminal=True)


def test_is_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    assert views.is_terminal(Terminal())
    assert not views.is_terminal(io.StringIO())
    monkeypatch.setenv("TERM", "dumb")
    assert not views.is_terminal(Terminal())
    closed = io.StringIO()
    closed.close()
    assert not views.is_terminal(closed)


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# --- rotator status --watch ------------------------------------------------------------------


def _provisioned(world: World, tmp_path: Path) -> Path:
    world.sandbox.state.clock.reset()  # the CLI reads the real clock
    path = tmp_path / "rotator.yaml"
    path.write_text(config_text(world.sandbox.url, world.out, str(world.engine.url)))
    from rotator.app import build_lifecycle

    report = build_lifecycle(world.config, world.engine, SystemClock()).run(world.specs)
    assert not report.failed
    return path


class Ticks:
    """Stands in for SystemClock.sleep: records the waits, interrupts after ``rounds``."""

    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:  # set on the class, so called unbound
        self.waits.append(seconds)
        if len(self.waits) >= self.rounds:
            raise KeyboardInterrupt


def test_watch_prints_a_dated_snapshot_each_interval_until_interrupted(
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = _provisioned(world, tmp_path)
    ticks = Ticks(rounds=2)
    monkeypatch.setattr(SystemClock, "sleep", ticks)
    capsys.readouterr()  # what provisioning logged
    code = cli.main(["--config", str(config), "status", "--watch", "--interval", "0.5"])
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, captured.err
    assert ticks.waits == [0.5, 0.5]
    snapshots = [s for s in out.split("--- ") if s.strip()]
    assert len(snapshots) == 2
    for snapshot in snapshots:
        lines = snapshot.splitlines()
        assert lines[1].startswith("leader: none")
        assert lines[2].split() == commands.STATUS_HEADERS
        assert {line.split()[0] for line in lines[3:] if line.strip()} == set(SOURCES)
        assert "\x1b[" not in snapshot  # not a terminal: plain text


def test_watch_as_json_prints_one_object_per_line(
    world: World,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = _provisioned(world, tmp_path)
    monkeypatch.setattr(SystemClock, "sleep", Ticks(rounds=3))
    capsys.readouterr()  # what provisioning logged
    code = cli.main(["--config", str(config), "status", "--watch", "-o", "json"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert len(lines) == 3
    for line in lines:
        doc = json.loads(line)
        assert [s["source"] for s in doc["sources"]] == list(SOURCES)
        assert all(s["state"] == "active" for s in doc["sources"])
        assert doc["at"].endswith("Z")


def test_watch_on_a_terminal_draws_a_live_view(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _provisioned(world, tmp_path)
    screen = Terminal()
    monkeypatch.setattr("sys.stdout", screen)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setattr(SystemClock, "sleep", Ticks(rounds=2))
    assert cli.main(["--config", str(config), "status", "--watch"]) == 0
    shown = _strip_ansi(screen.getvalue())
    assert "\x1b[" in screen.getvalue()
    for source in SOURCES:
        assert source in shown
    assert "every 2s, Ctrl-C to stop" in shown


def test_interval_must_be_positive(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _provisioned(world, tmp_path)
    assert cli.main(["--config", str(config), "status", "--watch", "--interval", "0"]) == 2
    assert "--interval: must be a positive number" in capsys.readouterr().err
