"""The demo, as the README's first command runs it: the daemon on a sped-up clock shared with the
sandbox, a shipper that never fails, and every step of the story told."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rotator.demo import KIBANA_PASSWORD_ENV, PASSWORD_ENV, DemoOptions, run_demo
from tests.cli_runner import Run, in_process

SOURCES = ("filebeat-web", "logstash-app", "agent-metrics")
STAMP = re.compile(r"^\[day +(\d+\.\d)\] ")


def demo(*args: str, cwd: Path, tmpdir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ROTATOR_CONFIG"}
    env["TMPDIR"] = str(tmpdir)
    return subprocess.run(
        [sys.executable, "-m", "rotator", "sandbox", "demo", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_demo_tells_the_whole_story(tmp_path: Path) -> None:
    kept = tmp_path / "demo"
    # Half a day of key time per real second (every job runs twice a day): some 25 s.
    result = demo(
        "--dir", str(kept), "--speed", "43200", "--duration", "90", cwd=tmp_path, tmpdir=tmp_path
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert result.stderr == ""  # not a terminal: plain lines, the daemon's log in a file
    assert "\x1b[" not in out
    lines = out.splitlines()
    assert lines[0].startswith("sandbox: Elasticsearch 8.17.4 emulated at http://127.0.0.1:")
    assert "runs 43200 times faster than real time (a day every 2.0 s)" in lines[0]
    assert "role 'rotator' = cluster [manage_own_api_key, monitor, read_security]" in out
    assert "daemon: preflight passed; jobs lifecycle, track, purge, audit" in out
    story = [line for line in lines if STAMP.match(line)]
    assert story, out
    days = [float(STAMP.match(line)[1]) for line in story]  # type: ignore[index]
    assert days == sorted(days), "the story is told in order"

    # The daemon took the lease, provisioned every source, then rotated it with overlap.
    assert "daemon: took the leader lease (epoch 1)" in out
    provisioned = dict(
        re.findall(r"provisioned (\S+): key (\S+) verified, delivered and active", out)
    )
    rotated = dict(
        re.findall(r"rotated (\S+): key (\S+) verified, delivered and active \(replaces", out)
    )
    assert set(provisioned) == set(rotated) == set(SOURCES)
    for source in SOURCES:
        old, new = provisioned[source], rotated[source]
        assert old != new
        assert f"(replaces {old}, which keeps working until day" in out
        assert f"previous key {old} of {source}: still authenticates (overlap)" in out
        assert f"retired {source}'s previous key {old}: the overlap is over" in out
        assert f"previous key {old} of {source}: no longer authenticates" in out
        # The shipper used the provisioned key, then the rotated one, and never failed.
        summary = re.search(
            rf"^shipper: {source}: (\d+) documents, (\d+) failed, with 2 keys \((\S+), (\S+)\)$",
            out,
            re.M,
        )
        assert summary is not None, out
        assert int(summary[1]) > 2
        assert summary[2] == "0"
        assert (summary[3], summary[4]) == (old, new)
    assert _index(lines, "provisioned") < _index(lines, "rotated") < _index(lines, "retired")

    # Kibana's managed key: created, seen, warned about at its lead times, then expired.
    assert re.search(
        r"kibana: kibana-demo created managed key 'Alerting: CPU usage above 90%' \(\S+\), expiring in 4d",
        out,
    )
    assert "inventory: new kibana-managed key 'Alerting: CPU usage above 90%' of kibana-demo" in out
    assert re.search(
        r"inventory: WARNING: Kibana-managed key 'Alerting: [^']+' expires in \S+ .*; lead time 14d",
        out,
    )
    assert re.search(
        r"inventory: CRITICAL: Kibana-managed key 'Alerting: [^']+' expires in \S+ .*; lead time 1d",
        out,
    )
    assert re.search(
        r"inventory: CRITICAL: Kibana-managed key 'Alerting: [^']+' expired at \S+: the tasks using it stop running",
        out,
    )

    # The export script's keys expired and were purged.
    left = re.search(
        r"an old export script left 3 keys under rotator's user, expiring in 1d: (.+)$", out, re.M
    )
    assert left is not None, out
    # (one purge run may see some of them expired and the next one the others)
    purged = re.findall(r"purge: invalidated \d expired keys of rotator@\S+: (.+)$", out, re.M)
    assert purged, out
    assert {k for line in purged for k in line.split(", ")} == set(left[1].split(", "))

    # The end: the shipper's count, the verified chain, where the files are.
    assert re.search(r"^story told in \d+ s \(\d+\.\d days of key time\)$", out, re.M)
    assert "shipper: 0 failed ingestions" in lines
    chain = re.search(r"^audit trail: (\d+) events, hash chain verified$", out, re.M)
    assert chain is not None, out
    assert f"credentials delivered to {kept / 'keys'}; store: {kept / 'rotator.db'}" in out
    assert f"audit copy: {kept / 'audit.jsonl'}; daemon log: {kept / 'rotator.log'}" in out
    keys = kept / "keys"
    assert sorted(p.name for p in keys.iterdir()) == sorted(
        ["agent-metrics.json", "filebeat-web.key", "logstash-app.env"]
    )
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in keys.iterdir())
    assert (kept / "rotator.db").is_file()
    copied = [json.loads(line) for line in (kept / "audit.jsonl").read_text().splitlines()]
    assert len(copied) == int(chain[1])
    assert {"key.activated", "keys.purged", "inventory.key_expired"} <= {
        e["action"] for e in copied
    }
    log = (kept / "rotator.log").read_text()
    assert '"message": "job_finished"' in log
    filebeat = (keys / "filebeat-web.key").read_text().strip()
    secret = filebeat.split(":", 1)[1]
    for text in (out, log, (kept / "audit.jsonl").read_text()):
        assert secret not in text


def _index(lines: list[str], word: str) -> int:
    return next(i for i, line in enumerate(lines) if STAMP.sub("", line).startswith(word))


def test_duration_cuts_the_story_short_and_the_temporary_directory_goes(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    result = demo("--speed", "86400", "--duration", "3", cwd=tmp_path, tmpdir=temp)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert re.search(
        r"^stopped after --duration 3s \(\d+\.\d days of key time\); not shown: .*every previous key retired",
        out,
        re.M,
    ), out
    assert "shipper: 0 failed ingestions" in out
    assert "hash chain verified" in out
    removed = re.search(r"^removed (\S+) \(use --dir DIR to keep", out, re.M)
    assert removed is not None, out
    assert Path(removed[1]).parent == temp
    assert list(temp.iterdir()) == []
    assert list(tmp_path.iterdir()) == [temp]


def test_a_failed_ingestion_is_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rotator import elastic
    from rotator.errors import RotatorError

    real_ship = elastic.ship

    def ship(url: str, key_id: str, secret: str, index: str, document: dict[str, object]) -> str:
        if index.startswith("metrics-"):
            raise RotatorError("index a document: refused (as the test wants)")
        return real_ship(url, key_id, secret, index, document)

    monkeypatch.setattr(elastic, "ship", ship)
    monkeypatch.delenv("ROTATOR_CONFIG", raising=False)
    for name in (PASSWORD_ENV, KIBANA_PASSWORD_ENV):  # the demo sets them; put them back after
        monkeypatch.setenv(name, "")
    sigint = signal.getsignal(signal.SIGINT)
    lines: list[str] = []
    options = DemoOptions(work_dir=tmp_path / "demo", speed=86400, duration=5)
    assert run_demo(lines.append, options) == 1
    assert signal.getsignal(signal.SIGINT) is sigint  # the daemon gave it back
    out = "\n".join(lines)
    assert re.search(r"shipper: agent-metrics could not ship with key \S+: RotatorError", out), out
    failed = re.search(r"^shipper: (\d+) failed ingestions$", out, re.M)
    assert failed is not None, out
    assert int(failed[1]) > 0
    assert re.search(r"^shipper: filebeat-web: \d+ documents, 0 failed, with", out, re.M), out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--speed", "0"], "--speed: must be a positive number"),
        (["--duration", "-1"], "--duration: must be a positive number of seconds"),
    ],
)
def test_bad_speed_or_duration_is_a_usage_error(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run: Run = in_process(capsys)
    result = run("sandbox", "demo", *args)
    assert result.returncode == 2
    assert message in result.stderr
