"""The health and metrics endpoint of ``rotator run``, on ``service.listen``.

- ``GET /healthz``: 200 while the process serves HTTP at all (alive).
- ``GET /readyz``: 200 when every check passes, 503 otherwise; the JSON body names each check,
  whether it passed and why, and lists the failed ones. The checks: the store answers;
  Elasticsearch answers (``_security/_authenticate`` as rotator, cached for a few seconds); the
  leader lease ticks (this process is ``leader`` or ``standby``); and, on the leader, every
  scheduled job has run within two of its intervals plus its misfire grace.
- ``GET /metrics``: the service's registry in the Prometheus text format (404 when
  ``service.metrics_enabled`` is false).

The server runs on daemon threads (one per request) beside the scheduler.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy.engine import Engine

from rotator.clock import Clock
from rotator.config import Config
from rotator.errors import ConfigError, RotatorError
from rotator.leader import LeaderLease
from rotator.log import get_logger, redact_text
from rotator.metrics import Metrics, ScheduledJob, schedule_interval

_log = get_logger("rotator.health")

ES_CACHE_SECONDS = 5.0
REQUEST_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Check:
    """One readiness check: its name, whether it passed, and a short reason."""

    name: str
    ok: bool
    detail: str


def staleness_limit(job: ScheduledJob, now: datetime) -> timedelta:
    """How long a job may go without a run before the process is not ready: two intervals
    plus the misfire grace."""
    return 2 * schedule_interval(job.trigger, now) + timedelta(seconds=job.misfire_grace_time)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6; port 0 picks a free one).

    Raises:
        ConfigError: not an address with a port from 0 to 65535.
    """
    host, sep, port = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError([f"service.listen: expected HOST:PORT, got {text!r}"])
    return host, int(port)


def _seconds(delta: timedelta) -> str:
    return f"{int(delta.total_seconds())}s"


class Readiness:
    """The checks behind ``/readyz``."""

    def __init__(
        self,
        *,
        engine: Engine,
        clock: Clock,
        metrics: Metrics,
        lease: LeaderLease,
        lease_ttl: timedelta,
        jobs: Callable[[], Iterable[ScheduledJob]],
        config: Callable[[], Config],
        authority: Any = None,
        es_cache_seconds: float = ES_CACHE_SECONDS,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._metrics = metrics
        self._lease = lease
        self._lease_ttl = lease_ttl
        self._jobs = jobs
        self._config = config
        self._given_authority = authority
        self._authority: tuple[object, Any] | None = None  # (the settings it was built for, it)
        self._es_cache_seconds = es_cache_seconds
        self._es_lock = threading.Lock()
        self._es_checked: tuple[float, Check] | None = None

    def checks(self) -> list[Check]:
        """Every check, in order: store, elasticsearch, role, then one per scheduled job."""
        return [self._store(), self._elasticsearch(), self._role(), *self._job_checks()]

    def report(self) -> tuple[bool, dict[str, Any]]:
        """Whether the process is ready, and the JSON body saying why."""
        checks = self.checks()
        failed = [c.name for c in checks if not c.ok]
        body = {
            "status": "ready" if not failed else "not ready",
            "failed": failed,
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks},
        }
        return not failed, body

    # --- each check --------------------------------------------------------------------------

    def _store(self) -> Check:
        try:
            with self._engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except Exception as exc:
            return Check("store", False, f"the store did not answer: {_why(exc)}")
        return Check("store", True, "answers")

    def _elasticsearch(self) -> Check:
        with self._es_lock:
            now = self._clock.monotonic()
            cached = self._es_checked
            if cached is not None and now - cached[0] < self._es_cache_seconds:
                return cached[1]
            check = self._ask_elasticsearch()
            self._es_checked = (now, check)
            return check

    def _ask_elasticsearch(self) -> Check:
        try:
            self._current_authority().whoami()
        except Exception as exc:
            return Check("elasticsearch", False, _why(exc))
        return Check("elasticsearch", True, "answers")

    def _current_authority(self) -> Any:
        if self._given_authority is not None:
            return self._given_authority
        settings = self._config().elasticsearch
        if self._authority is None or self._authority[0] is not settings:
            from rotator.app import build_authority

            self._authority = (settings, build_authority(self._config()))
        return self._authority[1]

    def _role(self) -> Check:
        ticked = self._metrics.last_tick
        if ticked is None:
            return Check("role", False, "starting: the leader lease has not been tried yet")
        age = self._clock.now() - ticked
        if age > self._lease_ttl:
            return Check(
                "role",
                False,
                f"the leader lease was last tried {_seconds(age)} ago "
                f"(it is tried every {_seconds(self._lease_ttl / 3)})",
            )
        return Check("role", True, "leader" if self._lease.leading else "standby")

    def _job_checks(self) -> list[Check]:
        jobs = list(self._jobs())
        if not self._lease.leading:
            return [Check(f"job.{j.id}", True, "standby: the leader runs it") for j in jobs]
        now = self._clock.now()
        out = []
        for job in jobs:
            name = f"job.{job.id}"
            last_run = self._metrics.last_run_of(job.id)
            marks = [m for m in (last_run, self._metrics.leading_since) if m is not None]
            if not marks:
                out.append(Check(name, False, "has not run since this process started"))
                continue
            age, limit = now - max(marks), staleness_limit(job, now)
            ran = last_run is not None and last_run == max(marks)
            what = f"last ran {_seconds(age)} ago" if ran else f"leading for {_seconds(age)}"
            if age > limit:
                out.append(Check(name, False, f"{what}, more than {_seconds(limit)}"))
            else:
                out.append(Check(name, True, what))
        return out


def _why(exc: BaseException) -> str:
    """A failure in one line, without a secret."""
    text = exc.message if isinstance(exc, RotatorError) else f"{type(exc).__name__}: {exc}"
    return redact_text(" ".join(text.split()))[:300]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class HealthServer:
    """Serves ``/healthz``, ``/readyz`` and ``/metrics`` on a daemon thread."""

    def __init__(self, readiness: Readiness, registry: CollectorRegistry) -> None:
        self._readiness = readiness
        self._registry = registry
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The host and port served (the real port when ``listen`` asked for 0)."""
        if self._server is None:
            raise RuntimeError("the health server is not running")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:9464``."""
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self, listen: str, *, metrics_enabled: bool = True) -> bool:
        """Bind ``listen`` and serve on a daemon thread; False when the address cannot be bound
        (in use, not local): that is logged as an error and the jobs run on without the
        endpoint, since keeping keys fresh matters more than being watched.

        Raises:
            ConfigError: ``listen`` is not ``HOST:PORT``.
        """
        host, port = parse_listen(listen)
        server_class = type(
            "_Server",
            (_Server,),
            {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET},
        )
        try:
            server = server_class((host, port), self._handler(metrics_enabled))
        except OSError as exc:
            _log.error(
                "health_listen_failed",
                listen=listen,
                error=exc.strerror or type(exc).__name__,
                hint="set service.listen to a free address (port 0 picks one)",
            )
            return False
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="health", kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()
        _log.info("health_listening", url=self.url, metrics=metrics_enabled)
        return True

    def stop(self) -> None:
        """Stop serving and close the socket (nothing when not running)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _handler(self, metrics_enabled: bool) -> type[BaseHTTPRequestHandler]:
        readiness, registry = self._readiness, self._registry

        class Handler(BaseHTTPRequestHandler):
            server_version = "rotator"
            sys_version = ""
            timeout = REQUEST_TIMEOUT_SECONDS

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                if path == "/healthz":
                    self._send(HTTPStatus.OK, b"ok\n", "text/plain; charset=utf-8")
                elif path == "/readyz":
                    ready, body = readiness.report()
                    status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
                    text = json.dumps(body, indent=2) + "\n"
                    self._send(status, text.encode(), "application/json")
                elif path == "/metrics" and metrics_enabled:
                    self._send(HTTPStatus.OK, generate_latest(registry), CONTENT_TYPE_LATEST)
                else:
                    self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

            def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                _log.debug("health_request", request=self.requestline[:200])

        return Handler
