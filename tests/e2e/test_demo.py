"""The demo, as the README's first command runs it, and what it leaves behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def run_demo(*args: str, cwd: Path, tmpdir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ROTATOR_CONFIG"}
    env["TMPDIR"] = str(tmpdir)
    return subprocess.run(
        [sys.executable, "-m", "rotator", "sandbox", "demo", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_demo_provisions_rotates_and_retires(tmp_path: Path) -> None:
    kept = tmp_path / "demo"
    result = run_demo("--dir", str(kept), cwd=tmp_path, tmpdir=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.startswith("sandbox: Elasticsearch 8.17.4 emulated at http://127.0.0.1:")
    assert "role 'rotator' = cluster [manage_own_api_key, monitor]" in out
    assert len(re.findall(r": provisioned: \S+ verified, delivered and active", out)) == 3
    assert len(re.findall(r": rotated: \S+ verified, delivered and active \(replaces", out)) == 3
    assert out.count("still authenticates (overlap)") == 3
    assert out.count("no longer authenticates") == 3
    assert out.count("shipped a document") == 9
    assert "hash chain verified" in out
    assert f"credentials delivered to {kept / 'keys'}; store: {kept / 'rotator.db'}" in out
    keys = kept / "keys"
    assert sorted(p.name for p in keys.iterdir()) == [
        "agent-metrics.json",
        "filebeat-web.key",
        "logstash-app.env",
    ]
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in keys.iterdir())
    assert (kept / "rotator.db").is_file()
    assert result.stderr == ""


def test_demo_without_dir_removes_its_temporary_directory(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    result = run_demo(cwd=tmp_path, tmpdir=temp)
    assert result.returncode == 0, result.stdout + result.stderr
    removed = re.search(r"^removed (\S+) \(use --dir DIR to keep", result.stdout, re.MULTILINE)
    assert removed is not None, result.stdout
    assert Path(removed[1]).parent == temp
    assert list(temp.iterdir()) == []
    assert list(tmp_path.iterdir()) == [temp]
