"""Rotation throughput: provisions and rotations per second at ``service.max_parallel`` 1, 2, 4, 8.

Run:  .venv/bin/python bench/throughput.py [--sources 200] [--fast-sources 500] [--pg URL]
                                          [--quick] [--json bench/results/throughput.json]

The sandbox runs in a process of its own (``python -m rotator sandbox serve --port 0``), so the
CPU time this process uses (``time.process_time()``) is rotator's alone. Rotator's user holds the
README's role (``manage_own_api_key``, ``monitor``, ``create_doc`` + ``auto_configure`` on one
index name per source); each source has preset ``logs-writer`` and one file sink.

For each store (SQLite; PostgreSQL too when ``--pg`` or ``ROTATOR_TEST_DATABASE_URL`` names a
server, in a fresh schema) and each ``max_parallel`` of 1, 2, 4, 8, with 20 ms of latency injected
into every request (a sandbox fault rule), on a reset sandbox and an empty store:

- provision: one lifecycle run (``build_lifecycle(...).run(specs)``) provisions every source;
- rotate: a second run rotates every source (``forced``), each rotation making the old key retire.

Per run: wall time, actions per second, and rotator's CPU milliseconds per action. Then, with no
injected latency, provisioning end to end at ``max_parallel`` 1 and 8 (``--fast-sources``
sources), which gives the provisions per second this machine reaches and the CPU per rotation
without waiting.

Targets (the issue's): max_parallel 8 at least 5x max_parallel 1 with 20 ms latency; at most
5 ms of rotator's CPU per rotation; at least 200 provisions per second end to end. Exits 1
when any action failed, and (except with ``--quick``, whose runs are too short to judge) when a
target is missed. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rotator import log
from rotator.app import build_lifecycle
from rotator.clock import SystemClock
from rotator.config import parse_config
from rotator.model import specs_from_config
from rotator.store import db

ADMIN = ("bench_admin", "bench-admin-password")
ROTATOR = ("rotator", "rotator-bench-password")
CREDENTIAL_VAR = "ROTATOR_BENCH_ES_PASSWORD"
LATENCY_MS = 20
PARALLEL = (1, 2, 4, 8)
TARGET_SPEEDUP = 5.0
TARGET_CPU_MS = 5.0
TARGET_RATE = 200.0
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "throughput.json"


class SandboxProcess:
    """``rotator sandbox serve`` in a child process, driven over HTTP."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rotator",
                "sandbox",
                "serve",
                "--port",
                "0",
                "--user",
                f"{ADMIN[0]}:{ADMIN[1]}:superuser",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.stop()
            raise SystemExit(f"the sandbox did not start: {line!r}")
        self.url = line.removeprefix("listening on ").split()[0]
        self._auth = "Basic " + base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One request as the administrator; raises on an error status."""
        data = None if body is None else json.dumps(body).encode()
        # The URL is the sandbox's own http:// address, printed by the child it started.
        request = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        request.add_header("Authorization", self._auth)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=120) as answer:  # noqa: S310
            content = answer.read()
        return json.loads(content) if content else None

    def prepare(self, sources: list[str], latency_ms: int) -> None:
        """Reset, give rotator its role and user, set the latency, clear the counters."""
        self.call("POST", "/_sandbox/reset")
        role = {
            "cluster": ["manage_own_api_key", "monitor"],
            "indices": [
                {
                    "names": [f"logs-{name}-default" for name in sources],
                    "privileges": ["create_doc", "auto_configure"],
                }
            ],
        }
        self.call("PUT", "/_security/role/rotator", role)
        self.call(
            "PUT", f"/_security/user/{ROTATOR[0]}", {"password": ROTATOR[1], "roles": ["rotator"]}
        )
        self.call("DELETE", "/_sandbox/faults")
        if latency_ms:
            self.call("POST", "/_sandbox/faults", [{"latency_ms": latency_ms}])
        self.call("DELETE", "/_sandbox/stats")

    def requests(self) -> int:
        return int(self.call("GET", "/_sandbox/stats")["total"])

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class PostgresSchemas:
    """A fresh schema per run on a PostgreSQL server, dropped afterwards."""

    def __init__(self, server_url: str) -> None:
        from sqlalchemy.engine import make_url

        self.server_url = server_url
        self.admin = db.make_engine(server_url)
        self.made: list[str] = []
        self._make_url = make_url

    def new(self) -> str:
        schema = f"rotator_bench_{uuid.uuid4().hex[:12]}"
        with self.admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        self.made.append(schema)
        url = self._make_url(self.server_url).update_query_dict(
            {"options": f"-csearch_path={schema}"}
        )
        return url.render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.admin.begin() as connection:
            for schema in self.made:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        self.admin.dispose()


def config_text(url: str, store: str, out: Path, sources: list[str], parallel: int) -> str:
    lines = [
        "elasticsearch:",
        f"  hosts: ['{url}']",
        f"  username: {ROTATOR[0]}",
        f"  password_env: {CREDENTIAL_VAR}",
        "  max_retries: 0",
        "  request_timeout: 120s",
        f"store: {{url: '{store}'}}",
        "defaults: {lifetime: 30d, rotate_before: 10d, overlap: 24h, jitter: 0s}",
        f"service: {{max_parallel: {parallel}}}",
        "sources:",
    ]
    for name in sources:
        lines.append(
            f"  - name: {name}\n    preset: logs-writer\n    dataset: {name}\n"
            f"    deliver: [{{type: file, path: '{out / name}.key', format: 'id:api_key'}}]"
        )
    return "\n".join(lines) + "\n"


def one_setting(
    sandbox: SandboxProcess,
    store: str,
    work: Path,
    count: int,
    parallel: int,
    latency_ms: int,
    rotate: bool,
) -> dict[str, Any]:
    """Provision ``count`` sources (then rotate them all) on a reset sandbox and empty store."""
    clock = SystemClock()
    sources = [f"tp{i:05d}" for i in range(count)]
    sandbox.prepare(sources, latency_ms)
    out = work / f"keys-{uuid.uuid4().hex[:8]}"
    out.mkdir(mode=0o700)
    config = parse_config(config_text(sandbox.url, store, out, sources, parallel))
    specs = specs_from_config(config)
    engine = db.make_engine(store)
    db.upgrade(engine)
    lifecycle = build_lifecycle(config, engine, clock)
    passes: dict[str, Any] = {}
    try:
        for label, forced in (("provision", ()), ("rotate", sources))[: 2 if rotate else 1]:
            before = sandbox.requests()
            cpu = time.process_time()
            started = clock.monotonic()
            report = lifecycle.run(specs, forced=forced)
            seconds = clock.monotonic() - started
            cpu = time.process_time() - cpu
            kind = "provision" if label == "provision" else "rotate"
            done = report.counts().get(kind, {}).get("ok", 0)
            passes[label] = {
                "actions": done,
                "failed": [f"{o.action.source}: {o.detail}" for o in report.failed][:5],
                "seconds": round(seconds, 3),
                "per_second": round(done / seconds, 1) if seconds else 0.0,
                "cpu_ms_per_action": round(cpu * 1000 / max(1, done), 2),
                "requests": sandbox.requests() - before - 1,  # less the stats read itself
            }
    finally:
        engine.dispose()
    return passes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=200, help="sources per latency run")
    parser.add_argument("--fast-sources", type=int, default=500, help="sources, no latency")
    parser.add_argument("--pg", default=os.environ.get("ROTATOR_TEST_DATABASE_URL"))
    parser.add_argument("--quick", action="store_true", help="small runs; targets not enforced")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    args = parser.parse_args()
    if args.quick:
        args.sources, args.fast_sources = min(args.sources, 32), min(args.fast_sources, 64)
    os.environ[CREDENTIAL_VAR] = ROTATOR[1]
    clock = SystemClock()
    sandbox = SandboxProcess()
    pg = PostgresSchemas(args.pg) if args.pg else None
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rotator-throughput-") as tmp:
        work = Path(tmp)
        log_stream = open(work / "rotator.log", "a", encoding="utf-8")  # noqa: SIM115
        log.configure(level="info", fmt="json", stream=log_stream, clock=clock)
        try:
            stores = [("sqlite", lambda: f"sqlite:///{work / uuid.uuid4().hex}.db")]
            if pg is not None:
                stores.append(("postgresql", pg.new))
            plan = [
                (backend, make, parallel, LATENCY_MS, args.sources, True)
                for backend, make in stores
                for parallel in PARALLEL
            ]
            plan += [("sqlite", stores[0][1], p, 0, args.fast_sources, False) for p in (1, 8)]
            for backend, make, parallel, latency, count, rotate in plan:
                print(
                    f"{backend} max_parallel {parallel} latency {latency} ms: {count} sources...",
                    file=sys.stderr,
                    flush=True,
                )
                passes = one_setting(sandbox, make(), work, count, parallel, latency, rotate)
                runs.append(
                    {
                        "store": backend,
                        "max_parallel": parallel,
                        "latency_ms": latency,
                        "sources": count,
                        "passes": passes,
                    }
                )
        finally:
            log_stream.close()
            sandbox.stop()
            if pg is not None:
                pg.drop_all()
    summary = judge(runs, enforce=not args.quick)
    print_table(runs, summary)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"runs": runs, "summary": summary}, indent=2) + "\n")
    print(f"\nwritten to {args.json}")
    if summary["problems"]:
        print("FAILED: " + "; ".join(summary["problems"]), file=sys.stderr)
        return 1
    return 0


def judge(runs: list[dict[str, Any]], *, enforce: bool) -> dict[str, Any]:
    """The speedups, the CPU per rotation, the best provisioning rate, and what missed."""
    problems = [
        f"{r['store']} p{r['max_parallel']} {label}: {p['failed']}"
        for r in runs
        for label, p in r["passes"].items()
        if p["failed"]
    ]
    speedup: dict[str, dict[str, float]] = {}
    for store in sorted({r["store"] for r in runs}):
        latent = {r["max_parallel"]: r for r in runs if r["store"] == store and r["latency_ms"]}
        if 1 in latent and 8 in latent:
            speedup[store] = {
                label: round(
                    latent[8]["passes"][label]["per_second"]
                    / max(1e-9, latent[1]["passes"][label]["per_second"]),
                    2,
                )
                for label in latent[1]["passes"]
            }
    fast = [r for r in runs if not r["latency_ms"]]
    cpu_ms = min(
        (r["passes"]["provision"]["cpu_ms_per_action"] for r in fast if r["max_parallel"] == 1),
        default=None,
    )
    rotate_cpu = [
        r["passes"]["rotate"]["cpu_ms_per_action"]
        for r in runs
        if r["store"] == "sqlite" and r["max_parallel"] == 1 and "rotate" in r["passes"]
    ]
    best_rate = max((r["passes"]["provision"]["per_second"] for r in fast), default=0.0)
    targets = {
        "speedup_8_vs_1": {"target": f">= {TARGET_SPEEDUP}x", "value": speedup},
        "cpu_ms_per_provision": {"target": f"<= {TARGET_CPU_MS}", "value": cpu_ms},
        "cpu_ms_per_rotation": {
            "target": f"<= {TARGET_CPU_MS}",
            "value": rotate_cpu[0] if rotate_cpu else None,
        },
        "provisions_per_second": {"target": f">= {TARGET_RATE}", "value": best_rate},
    }
    met = {
        "speedup_8_vs_1": bool(speedup)
        and all(v >= TARGET_SPEEDUP for s in speedup.values() for v in s.values()),
        "cpu_ms_per_provision": cpu_ms is not None and cpu_ms <= TARGET_CPU_MS,
        "cpu_ms_per_rotation": bool(rotate_cpu) and rotate_cpu[0] <= TARGET_CPU_MS,
        "provisions_per_second": best_rate >= TARGET_RATE,
    }
    for name, ok in met.items():
        targets[name]["met"] = ok
        if enforce and not ok:
            problems.append(f"{name} missed: {targets[name]['value']} ({targets[name]['target']})")
    return {"targets": targets, "enforced": enforce, "problems": problems}


def print_table(runs: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    header = (
        f"{'store':<10} {'par':>3} {'lat ms':>6} {'n':>5} {'pass':<9} {'s':>7} {'/s':>7} "
        f"{'cpu ms':>7} {'req':>6}  failed"
    )
    print(header)
    print("-" * len(header))
    for r in runs:
        for label, p in r["passes"].items():
            print(
                f"{r['store']:<10} {r['max_parallel']:>3} {r['latency_ms']:>6} {r['sources']:>5} "
                f"{label:<9} {p['seconds']:>7.2f} {p['per_second']:>7.1f} "
                f"{p['cpu_ms_per_action']:>7.2f} {p['requests']:>6}  {len(p['failed'])}"
            )
    print()
    for name, t in summary["targets"].items():
        print(
            f"  {name:<24} {t['value']!s:<48} target {t['target']:<8} "
            f"{'met' if t['met'] else 'NOT met'}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
