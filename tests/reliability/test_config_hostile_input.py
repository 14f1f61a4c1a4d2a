"""Hostile config input: alias bombs, huge and deep documents, devices, FIFOs and directories.

Each must give one clear ``(file): ...`` line quickly: never a hang, a traceback or the input
echoed back whole.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rotator.config import load_config, parse_config
from rotator.errors import ConfigError

pytestmark = pytest.mark.timeout(20)

MAX_CONFIG_BYTES = 64 * 1024 * 1024  # the documented limit

BASE = """
elasticsearch: {username: rotator, password_env: PW}
sources:
  - name: web
    privileges: {cluster: [monitor]}
"""


def billion_laughs(levels: int = 9) -> str:
    """Nine nested lists of nine aliases each: 9**9 strings once expanded."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for n in range(1, levels):
        refs = ", ".join([f"*l{n - 1}"] * 9)
        lines.append(f"l{n}: &l{n} [{refs}]")
    return "\n".join(lines) + "\n"


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "hostile.yaml")
    return caught.value.problems


def test_alias_bomb_in_metadata_is_refused_at_once() -> None:
    # Anchors live under a section rotator ignores nothing of: the alias itself is the problem.
    bomb = billion_laughs().replace("\n", "\n    ").strip()
    text = BASE + "    metadata:\n      " + bomb.replace("\n    ", "\n      ") + "\n"
    problems = problems_of(text)
    assert len(problems) == 1
    assert problems[0].startswith(
        "(file): YAML anchors and aliases (&name, *name) are not accepted"
    )


def test_alias_bomb_in_log_level_is_refused_at_once() -> None:
    text = billion_laughs() + "log: {level: *l8}\n"
    problems = problems_of(text)
    assert len(problems) == 1
    assert "anchors and aliases" in problems[0]


def test_deep_nesting_gives_one_line_not_a_recursion_error() -> None:
    for opener, closer in (("[", "]"), ("{a: ", "}")):
        text = "metadata: " + opener * 100_000 + closer * 100_000 + "\n"
        problems = problems_of(text)
        assert len(problems) == 1
        assert problems[0].startswith("(file): nested deeper than 32 levels at line 1")


def test_a_huge_value_is_never_echoed_whole() -> None:
    value = "v" * 500_000
    for text in (
        f"log: {{level: {value}}}\n",
        f"defaults: {{lifetime: {value}}}\n",
        f"elasticsearch: {{hosts: [{value}]}}\n",
        BASE.replace("name: web", f"name: {value}"),
    ):
        problems = problems_of(text)
        assert all(len(p) < 400 for p in problems), [p[:200] for p in problems]
        assert any("(500000 characters)" in p for p in problems)


def test_a_config_larger_than_the_limit_is_refused_naming_the_file(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    with pytest.raises(ConfigError) as caught:
        load_config(big)
    assert caught.value.problems == [
        f"(file): {big} is larger than 65536 KiB, the limit for a config"
    ]


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda d: Path("/dev/zero"), "a character device"),
        (lambda d: d, "a directory"),
        (lambda d: (os.mkfifo(d / "fifo"), d / "fifo")[1], "a FIFO"),
    ],
    ids=["dev-zero", "directory", "fifo"],
)
def test_not_a_regular_file_is_refused_without_reading_it(
    tmp_path: Path, make: object, kind: str
) -> None:
    path: Path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [f"(file): {path} is {kind}, not a regular file"]


def test_bytes_that_are_not_utf8_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"log: {level: \xe9}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert caught.value.problems == [f"(file): {bad} is not UTF-8 text (byte 14)"]
