"""Running `rotator sandbox serve` and `rotator run` as real processes, with short real lifetimes."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elasticsearch import AuthenticationException, Elasticsearch

from rotator.clock import SystemClock

ROOT = Path(__file__).resolve().parents[2]
CLOCK = SystemClock()


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = CLOCK.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if CLOCK.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        CLOCK.sleep(every)


@dataclass
class Served:
    """A `rotator sandbox serve` process with a rotator user holding the recommended role."""

    url: str
    admin: tuple[str, str]
    password: str
    process: subprocess.Popen[str]

    def client(self, **auth: Any) -> Elasticsearch:
        return Elasticsearch(self.url, **(auth or {"basic_auth": self.admin}))

    def valid(self, key_id: str, secret: str) -> bool:
        try:
            me = self.client(api_key=(key_id, secret)).security.authenticate()
        except AuthenticationException:
            return False
        return bool(me["api_key"]["id"] == key_id)

    def rotator_keys(self) -> list[dict[str, Any]]:
        return list(self.client().security.get_api_key(username="rotator")["api_keys"])


@contextmanager
def served_sandbox(sources: Sequence[str]) -> Iterator[Served]:
    admin = ("admin", secrets.token_urlsafe(12))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rotator",
            "sandbox",
            "serve",
            "--port",
            "0",
            "--user",
            f"{admin[0]}:{admin[1]}:superuser",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("listening on "), first + process.stderr.read()  # type: ignore[union-attr]
        served = Served(first.split()[-1], admin, secrets.token_urlsafe(16), process)
        es = served.client()
        es.security.put_role(
            name="rotator",
            cluster=["manage_own_api_key", "monitor"],
            indices=[
                {
                    "names": [f"logs-{s}-default" for s in sources],
                    "privileges": ["create_doc", "auto_configure"],
                }
            ],
        )
        es.security.put_user(username="rotator", password=served.password, roles=["rotator"])
        yield served
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def config_text(
    url: str,
    store: str,
    keys: Path,
    sources: Sequence[str],
    *,
    lifetime: str,
    rotate_before: str,
    overlap: str,
    lifecycle: str = "2s",
    lease_ttl: str = "6s",
    extra_sinks: dict[str, list[dict[str, Any]]] | None = None,
) -> str:
    lines = [
        f"elasticsearch: {{hosts: ['{url}'], username: rotator, password_env: ROTATOR_TEST_ES_PASSWORD, max_retries: 0}}",
        f"store: {{url: '{store}'}}",
        f"defaults: {{lifetime: {lifetime}, rotate_before: {rotate_before}, overlap: {overlap}, jitter: 0s, critical_before: 10s}}",
        f"service: {{schedule: {{lifecycle: {lifecycle}}}, lease_ttl: {lease_ttl}, backoff_initial: 1s, backoff_max: 4s, shutdown_timeout: 30s, listen: '127.0.0.1:0'}}",
        "log: {format: json}",
        "sources:",
    ]
    for name in sources:
        sinks = [{"type": "file", "path": str(keys / f"{name}.key"), "format": "id:api_key"}]
        sinks += (extra_sinks or {}).get(name, [])
        lines.append(
            f"  - {{name: {name}, preset: logs-writer, dataset: {name}, deliver: {json.dumps(sinks)}}}"
        )
    return "\n".join(lines) + "\n"


@dataclass
class Daemon:
    """One `rotator run` process; its JSON log lines are read from a file."""

    process: subprocess.Popen[str]
    log_path: Path
    name: str
    _seen: list[dict[str, Any]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"message": line})
        return out

    def names(self) -> list[str]:
        return [str(e.get("message")) for e in self.events()]

    def stop(self, timeout: float = 40) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


def start_daemon(config: Path, password: str, name: str) -> Daemon:
    log_path = config.parent / f"{name}.log"
    handle = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "rotator", "--config", str(config), "run"],
        cwd=config.parent,
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "ROTATOR_TEST_ES_PASSWORD": password, "PYTHONPATH": str(ROOT)},
    )
    handle.close()
    return Daemon(process, log_path, name)


def rotator(
    config: Path, password: str, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rotator", "--config", str(config), *args],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "ROTATOR_TEST_ES_PASSWORD": password, "PYTHONPATH": str(ROOT)},
    )


def delivered(keys: Path, source: str) -> tuple[str, str] | None:
    path = keys / f"{source}.key"
    if not path.exists():
        return None
    key_id, _, secret = path.read_text().strip().partition(":")
    return key_id, secret
