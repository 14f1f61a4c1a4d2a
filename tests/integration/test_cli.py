"""The command line as a user runs it: help for every verb, exit codes, absent features."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

VERBS = [
    ["run"],
    ["once"],
    ["plan"],
    ["status"],
    ["rotate"],
    ["keys"],
    ["purge"],
    ["audit"],
    ["audit", "verify"],
    ["audit", "export"],
    ["check-config"],
    ["db"],
    ["db", "upgrade"],
    ["db", "current"],
    ["sandbox"],
    ["sandbox", "serve"],
    ["sandbox", "demo"],
]
# Verbs whose feature this version does not have (none at present).
NOT_YET: list[list[str]] = []


def rotator(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ROTATOR_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "rotator", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("verb", VERBS, ids=" ".join)
def test_every_verb_has_help(verb: list[str], tmp_path: Path) -> None:
    result = rotator(*verb, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: rotator")


def test_an_absent_feature_says_so_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rotator import cli, cli_verbs

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROTATOR_CONFIG", raising=False)
    parser = cli.build_parser()
    args = parser.parse_args(["status"])
    args.handler = cli_verbs.not_yet("the status reader")
    monkeypatch.setattr(cli, "build_parser", lambda: _Fixed(parser, args))

    assert cli.main(["status"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert "`rotator status` is not available in rotator" in out.err
    assert "the status reader is not part of this version" in out.err
    assert not (tmp_path / "rotator.db").exists()


class _Fixed:
    """A parser that answers the arguments it was given."""

    def __init__(self, parser: object, args: object) -> None:
        self._args = args

    def parse_args(self, _argv: object) -> object:
        return self._args


def test_usage_error_exits_2(tmp_path: Path) -> None:
    result = rotator("no-such-verb", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_version(tmp_path: Path) -> None:
    result = rotator("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("rotator ")


def test_embedded_defaults_when_no_config(tmp_path: Path) -> None:
    result = rotator("check-config", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("(embedded defaults): ok: 0 source(s)")


def test_local_rotator_yaml_is_picked_up(tmp_path: Path) -> None:
    (tmp_path / "rotator.yaml").write_text("log: {level: loud}\n")
    result = rotator("check-config", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout.startswith("log.level:")


def test_help_says_which_verbs_are_not_in_this_version(tmp_path: Path) -> None:
    listing = " ".join(rotator("--help", cwd=tmp_path).stdout.split())
    descriptions = {
        "run": "run the daemon: all jobs on their schedules",
        "keys": "list tracked managed keys",
        "purge": "invalidate expired keys in bulk",
        "audit": "read and verify the audit trail",
    }
    for verb in NOT_YET:
        assert f"{verb[0]} {descriptions[verb[0]]} (not in this version)" in listing
        own = " ".join(rotator(*verb, "--help", cwd=tmp_path).stdout.split())
        assert "(not in this version)" in own
    assert listing.count("not in this version") == len(NOT_YET)


EXAMPLE = ROOT / "config" / "rotator.example.yaml"
# Settings the example shows that this version validates but does not act on yet.
UNUSED_SETTINGS = [
    "  listen:",
    "  metrics_enabled:",
]


@pytest.mark.parametrize("setting", UNUSED_SETTINGS)
def test_example_config_marks_settings_that_do_nothing_yet(setting: str) -> None:
    lines = EXAMPLE.read_text().splitlines()
    section = not setting.startswith(" ")
    [index] = [
        i
        for i, line in enumerate(lines)
        if (
            line.startswith(setting)
            if section
            else line.startswith(" ") and line.strip().startswith(setting.strip())
        )
    ]
    if lines[index].startswith(" "):  # a setting: its own line says so
        assert "(not in this version)" in lines[index]
    else:  # a section: its opening comment says so
        comment = " ".join(line for line in lines[index + 1 : index + 4] if "#" in line)
        assert "not in this version: these settings do nothing yet" in comment, comment
