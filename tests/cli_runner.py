"""Running ``rotator ARGS`` in-process, as the CLI tests do: its exit code and what it printed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from rotator import cli


@dataclass
class Result:
    """What a command printed and returned."""

    returncode: int
    stdout: str
    stderr: str


Run = Callable[..., Result]


def in_process(capsys: pytest.CaptureFixture[str]) -> Run:
    """A runner calling ``cli.main`` with the arguments given, capturing both streams."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = cli.main(list(args))
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return run
