"""The demo, as the README's first command runs it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_provisions_rotates_and_retires(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rotator", "sandbox", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
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
    keys = Path(re.search(r"credentials delivered to (\S+);", out)[1])  # type: ignore[index]
    assert sorted(p.name for p in keys.iterdir()) == [
        "agent-metrics.json",
        "filebeat-web.key",
        "logstash-app.env",
    ]
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in keys.iterdir())
    assert result.stderr == ""
