"""The wheel holds every subpackage, the migrations and the demo's config, and works installed."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_every_subpackage_is_listed_for_the_wheel() -> None:
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "rotator").rglob("__init__.py")
    }
    assert found <= listed, f"missing from [tool.setuptools] packages: {sorted(found - listed)}"


@pytest.mark.slow
def test_wheel_contains_the_migrations_and_upgrades_a_store(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("rotator-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    revisions = sorted(p.name for p in (ROOT / "migrations" / "versions").glob("*.py"))
    for revision in revisions:
        assert f"rotator/_migrations/versions/{revision}" in names
    assert "rotator/_migrations/env.py" in names
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    work = tmp_path / "work"
    work.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "from rotator.cli import main; sys.exit(main(['db', 'upgrade']))",
            str(target),
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "upgraded from (empty) to" in result.stdout


def _build_wheel(into: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(into), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = into.glob("rotator-*.whl")
    return wheel


@pytest.mark.slow
def test_demo_runs_from_the_installed_wheel(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path / "dist")
    assert "rotator/demo.yaml" in zipfile.ZipFile(wheel).namelist()
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The dependencies come from the test's own environment; rotator only from the wheel.
    Path(site, "rotator-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "-q",
            *[str(wheel)],
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ROTATOR_CONFIG", "PYTHONPATH")}
    env["TMPDIR"] = str(work)
    result = subprocess.run(
        [str(venv / "bin" / "rotator"), "sandbox", "demo"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hash chain verified" in result.stdout
    where = subprocess.run(
        [str(python), "-c", "import rotator; print(rotator.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(venv)), where
    assert list(work.iterdir()) == []
