"""The files in deploy/: the systemd unit verifies and is hardened; the Containerfile runs as a
non-root user from a pinned base image and checks /healthz."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "rotator.service"
CONTAINERFILE = ROOT / "deploy" / "container" / "Containerfile"

# Settings the unit must carry, with the value each must have.
HARDENING = {
    "User": "rotator",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "StateDirectory": "rotator",
    "WorkingDirectory": "/var/lib/rotator",
    "Restart": "on-failure",
    "ExecReload": "/bin/kill -HUP $MAINPID",
    "CapabilityBoundingSet": "",
    "UMask": "0077",
}


def read_unit(path: Path = UNIT) -> dict[str, dict[str, list[str]]]:
    """Parse a unit file: section -> key -> every value it was given (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"line {number} is outside a section: {raw!r}"
        key, sep, value = line.partition("=")
        assert sep, f"line {number} is not key=value: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_unit_parses_as_ini() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    assert parser.sections() == ["Unit", "Service", "Install"]
    assert parser["Install"]["WantedBy"] == "multi-user.target"


def test_unit_is_hardened() -> None:
    service = read_unit()["Service"]
    for key, value in HARDENING.items():
        assert service.get(key, [None])[-1] == value, f"{key} should be {value!r}"
    assert service["AmbientCapabilities"] == [""]


def test_unit_starts_the_daemon_with_the_config() -> None:
    service = read_unit()["Service"]
    (exec_start,) = service["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[:2] == ["/usr/bin/env", "rotator"]
    assert argv[-1] == "run"
    assert argv[argv.index("--config") + 1] == "/etc/rotator/rotator.yaml"
    # The venv is found through PATH, first.
    path = next(v for v in service["Environment"] if v.startswith("PATH="))
    assert path.removeprefix("PATH=").split(":")[0] == "/opt/rotator/bin"
    # Stopping waits longer than rotator's own shutdown_timeout (30s).
    assert int(service["TimeoutStopSec"][0].removesuffix("s")) > 30
    assert service["RestartPreventExitStatus"] == ["2"]


def test_unit_documents_where_secrets_come_from() -> None:
    text = UNIT.read_text()
    assert "EnvironmentFile=-/etc/rotator/rotator.env" in text
    assert re.search(r"^# LoadCredential=\S+:\S+", text, re.MULTILINE)
    assert "/run/credentials/rotator.service/" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    copy = tmp_path / "rotator.service"
    shutil.copy(UNIT, copy)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Unknown keys and bad values are only warnings: any line about the unit is a failure.
    about_unit = [line for line in output.splitlines() if "rotator.service" in line]
    assert about_unit == []


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify_would_catch_a_typo(tmp_path: Path) -> None:
    broken = tmp_path / "rotator.service"
    broken.write_text(UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystem=strikt"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "rotator.service" in result.stdout + result.stderr


def containerfile() -> list[tuple[str, str]]:
    """The Containerfile's instructions as (INSTRUCTION, arguments), continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in CONTAINERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    assert not pending, "the Containerfile ends in a continuation"
    return instructions


def test_containerfile_pins_the_base_image() -> None:
    froms = [args for word, args in containerfile() if word == "FROM"]
    assert len(froms) == 1
    image = froms[0].split()[0]
    name, _, tag = image.partition(":")
    assert name == "python"
    # A version tag (3.11-slim-bookworm), never latest or no tag.
    assert re.fullmatch(r"3\.1[1-9](\.\d+)?-slim-[a-z]+", tag), image


def test_containerfile_runs_as_a_non_root_user() -> None:
    users = [args for word, args in containerfile() if word == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # The last USER comes after every RUN (nothing installs as the unprivileged user later).
    words = [word for word, _ in containerfile()]
    last_user = len(words) - 1 - words[::-1].index("USER")
    assert "RUN" not in words[last_user:]


def test_containerfile_installs_from_the_source_tree_and_runs_rotator() -> None:
    instructions = containerfile()
    copies = " ".join(args for word, args in instructions if word == "COPY")
    for needed in ("pyproject.toml", "rotator", "migrations"):
        assert needed in copies
    assert any(word == "RUN" and "pip install" in args for word, args in instructions)
    entry = [args for word, args in instructions if word == "ENTRYPOINT"]
    assert entry == ['["rotator"]']
    cmd = [args for word, args in instructions if word == "CMD"]
    assert cmd
    assert cmd[-1].endswith('"run"]')


def test_containerfile_health_check_asks_healthz() -> None:
    checks = [args for word, args in containerfile() if word == "HEALTHCHECK"]
    assert len(checks) == 1
    assert "http://127.0.0.1:9464/healthz" in checks[0]
    assert re.search(r"--interval=\d+s", checks[0])
    assert re.search(r"--timeout=\d+s", checks[0])
