"""One lifecycle sweep over 1,000, 10,000 and 100,000 sources with 1% due, against the naive way.

Run:  .venv/bin/python bench/lifecycle.py [--sizes 1000,10000,100000] [--max-parallel 4]
                                         [--naive-budget 60] [--json bench/results/lifecycle.json]

For each size N a fresh sandbox (in this process) gets rotator's role as the README recommends
(``manage_own_api_key``, ``monitor``, and ``create_doc`` + ``auto_configure`` on one index name
per source, ``logs-<source>-default``) and a config of N sources (preset ``logs-writer``, one
file sink each). Then, written straight into their state, the sandbox holds one current key per
source (the ids, names and metadata rotator gives its keys: ``managed_by``, ``source``,
``generation``, ``rotation_id``, ``config_fingerprint``), the store (SQLite, schema by
``rotator.store.db.upgrade``) holds each source, its completed rotation and its active key with
the file sink's receipt, and each key file exists as delivered. Every hundredth key was created
25 days ago (lifetime 30d, rotate_before 10d: past its renewal time); the rest a day ago.

In a child process (so the sandbox's memory is not counted), the sweep runs as the daemon runs it:
``build_lifecycle(config, engine, clock).run(specs)``. Reported: the wall time of ``run()``, the
process's CPU time during it, the requests the sandbox answered by route, the store statements
(``before_cursor_execute``), the peak RSS of the sweeping process (``VmHWM``) and how long
loading the config took.

The bound asserted, exactly: the sweep sends ceil(N / 1000) query requests and, for each due
source, the requests of one rotation and nothing else. A rotation's requests (``ROTATION``,
checked by a one-source run first) are: create the key (``PUT /_security/api_key``),
authenticate as it (``GET /_security/_authenticate``) and ask ``_has_privileges`` as it.

Beside it, on the same seeded keys (the sandbox is reset and seeded again), the naive way a
script does the same job: list every key of rotator's user with one ``GET
/_security/api_key?owner=true``, then one ``GET /_security/api_key?id=`` per key to check it, and
for each due key one create and one ``DELETE /_security/api_key`` to retire the old key (no
verification, no delivery). When it runs past ``--naive-budget`` seconds it stops; its time and
requests are then extrapolated linearly from the keys it checked (marked ``*``).

Exits 1 when a sweep broke the request bound, failed an action, or did not rotate every due source.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elasticsearch import Elasticsearch

from rotator.clock import SystemClock
from rotator.sandbox import Sandbox

ADMIN = ("bench_admin", "bench-admin-password")
ROTATOR = ("rotator", "rotator-bench-password")
CREDENTIAL_VAR = "ROTATOR_BENCH_ES_PASSWORD"
QUERY_ROUTE = "/_security/_query/api_key"
PAGE_SIZE = 1000
DUE_EVERY = 100  # 1% of the sources are past their renewal time
LIFETIME = timedelta(days=30)
ROTATE_BEFORE = timedelta(days=10)
# The requests of one rotation (method, route), as a one-source run shows them.
ROTATION: dict[tuple[str, str], int] = {
    ("PUT", "/_security/api_key"): 1,
    ("GET", "/_security/_authenticate"): 1,
    ("POST", "/_security/user/_has_privileges"): 1,
}
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "lifecycle.json"


def source_name(i: int) -> str:
    return f"src{i:06d}"


def rotator_role(n: int) -> dict[str, Any]:
    """The README's role: manage_own_api_key, monitor, and one index name per source."""
    return {
        "cluster": ["manage_own_api_key", "monitor"],
        "indices": [
            {
                "names": [f"logs-{source_name(i)}-default" for i in range(n)],
                "privileges": ["create_doc", "auto_configure"],
            }
        ],
    }


def config_text(url: str, store: str, out: Path, n: int, max_parallel: int) -> str:
    lines = [
        "elasticsearch:",
        f"  hosts: ['{url}']",
        f"  username: {ROTATOR[0]}",
        f"  password_env: {CREDENTIAL_VAR}",
        "  max_retries: 0",
        "  request_timeout: 300s",
        f"store: {{url: '{store}'}}",
        "defaults: {lifetime: 30d, rotate_before: 10d, overlap: 24h, jitter: 0s}",
        f"service: {{max_parallel: {max_parallel}}}",
        "sources:",
    ]
    for i in range(n):
        name = source_name(i)
        lines.append(
            f"  - name: {name}\n    preset: logs-writer\n    dataset: {name}\n"
            f"    deliver: [{{type: file, path: '{out / name}.key', format: 'id:api_key'}}]"
        )
    return "\n".join(lines) + "\n"


def set_up(url: str, n: int) -> None:
    """Rotator's role and user, over HTTP as an administrator would."""
    admin = Elasticsearch(url, basic_auth=ADMIN, request_timeout=300)
    admin.security.put_role(name="rotator", **rotator_role(n))
    admin.security.put_user(username=ROTATOR[0], password=ROTATOR[1], roles=["rotator"])


# --- seeding -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    """One source's current key as both sides know it."""

    source: str
    key_id: str
    rotation_id: str
    created: datetime
    due: bool


def plan_world(n: int, now: datetime) -> list[Seeded]:
    """Which key each source has: ids fixed here, so the sandbox can be seeded again alike."""
    from rotator.sandbox.security_state import new_key_id

    ids: set[str] = set()
    out = []
    for i in range(n):
        key_id = new_key_id()
        while key_id in ids:
            key_id = new_key_id()
        ids.add(key_id)
        due = i % DUE_EVERY == 0
        created = now - (timedelta(days=25) if due else timedelta(days=1))
        out.append(Seeded(source_name(i), key_id, str(uuid.uuid4()), created, due))
    return out


def key_metadata(spec: Any, seeded: Seeded) -> dict[str, Any]:
    """The metadata rotator gives a key (see rotator/jobs/pipeline.py ``_create_once``)."""
    from rotator.model import MANAGED_BY

    return {
        **spec.key_metadata,
        "managed_by": MANAGED_BY,
        "source": spec.name,
        "generation": 1,
        "rotation_id": seeded.rotation_id,
        "config_fingerprint": spec.privileges_fingerprint,
    }


def seed_sandbox(sandbox: Sandbox, specs: list[Any], world: list[Seeded]) -> None:
    """Write each source's current key into the sandbox's state, as its create API would."""
    from rotator.sandbox.roles import parse_role_descriptor
    from rotator.sandbox.security_state import ApiKeyRecord, Creator, hash_secret

    security = sandbox.state.security
    with sandbox.state.lock:
        secret_hash = hash_secret("never-used-to-authenticate")
        limited_by = [replace(d, description=None) for d in security.resolve_roles(["rotator"])]
        creator = Creator(ROTATOR[0], None, None, {}, "default_native", "native")
        for spec, seeded in zip(specs, world, strict=True):
            created_ms = int(seeded.created.timestamp() * 1000)
            security.add_key(
                ApiKeyRecord(
                    id=seeded.key_id,
                    name=f"rotator-{spec.name}-1",
                    type="rest",
                    secret_hash=secret_hash,
                    creation=created_ms,
                    expiration=created_ms + int(LIFETIME.total_seconds() * 1000),
                    role_descriptors=[
                        parse_role_descriptor(name, body)
                        for name, body in spec.role_descriptors.items()
                    ],
                    limited_by=limited_by,
                    metadata=key_metadata(spec, seeded),
                    creator=creator,
                    seq=security.next_seq(),
                    invalidated=False,
                    invalidation=None,
                )
            )


def seed_store(store: str, specs: list[Any], world: list[Seeded], now: datetime) -> None:
    """The store as rotator leaves it after provisioning: a completed rotation and an active,
    delivered key per source; each key file written as the file sink writes it."""
    import sqlalchemy as sa

    from rotator.delivery import build_sink, render
    from rotator.delivery.filecheck import record
    from rotator.planner import renewal_at
    from rotator.ports import Credential, secret_fingerprint
    from rotator.store import db
    from rotator.store.models import ApiKey, ApiKeyState, Rotation, RotationState, Source
    from rotator.store.repositories import spec_fingerprint

    clock = SystemClock()
    engine = db.make_engine(store)
    db.upgrade(engine)
    sources, rotations, keys = [], [], []
    for spec, seeded in zip(specs, world, strict=True):
        snapshot = json.loads(json.dumps(spec.snapshot(), sort_keys=True))
        created = seeded.created
        expires = created + LIFETIME
        sources.append(
            {
                "name": spec.name,
                "spec_json": snapshot,
                "spec_fingerprint": spec_fingerprint(spec.snapshot()),
                "generation": 1,
                "failure_count": 0,
                "created_at": created,
                "updated_at": created,
            }
        )
        rotations.append(
            {
                "id": seeded.rotation_id,
                "source_name": spec.name,
                "reason": "provision",
                "state": RotationState.COMPLETED,
                "new_key_es_id": seeded.key_id,
                "attempt_count": 1,
                "failure_count": 0,
                "started_at": created,
                "updated_at": created,
                "finished_at": created,
            }
        )
        secret = f"bench-{seeded.key_id}"
        credential = Credential(
            seeded.key_id, f"rotator-{spec.name}-1", secret, "", spec.name, expires
        )
        sink = build_sink(spec.sinks[0], clock=clock, source=spec.name)
        path = Path(spec.sinks[0].path)
        content = render(credential, "id:api_key", "").encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        receipt = {
            "name": sink.name,
            "sink": "file",
            "target": str(path),
            "state": record(path, content),
            "at": created.isoformat(),
        }
        keys.append(
            {
                "es_id": seeded.key_id,
                "name": credential.name,
                "source_name": spec.name,
                "generation": 1,
                "state": ApiKeyState.ACTIVE,
                "rotation_id": seeded.rotation_id,
                "planned_at": created,
                "created_at": created,
                "updated_at": created,
                "expires_at": expires,
                "renewal_at": renewal_at(expires, ROTATE_BEFORE, timedelta(0), seeded.key_id),
                "jitter_seconds": 0,
                "delivered_at": created,
                "delivery_started_at": created,
                "deliveries_json": [receipt],
                "activated_at": created,
                "secret_fingerprint": secret_fingerprint(secret),
                "config_fingerprint": spec.privileges_fingerprint,
                "policy_fingerprint": spec.policy_fingerprint,
            }
        )
    with engine.begin() as conn:
        for table, rows in (
            (Source.__table__, sources),
            (Rotation.__table__, rotations),
            (ApiKey.__table__, keys),
        ):
            for start in range(0, len(rows), 5000):
                conn.execute(sa.insert(table), rows[start : start + 5000])
    engine.dispose()
    assert now >= max(w.created for w in world)


# --- the sweep and the naive way, each in a process of its own -----------------------------------


def peak_rss_kib() -> int:
    """The peak resident set size of this process so far (``VmHWM``, KiB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def sweep_child(spec_path: str) -> int:
    """One lifecycle sweep as the daemon runs it; writes what it cost."""
    import time

    import sqlalchemy as sa

    from rotator import log
    from rotator.app import build_lifecycle
    from rotator.config import load_config
    from rotator.model import specs_from_config
    from rotator.store import db

    job = json.loads(Path(spec_path).read_text())
    profiler = None
    if job.get("profile"):  # the sweeping thread, config load included (not the workers)
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    clock = SystemClock()
    with open(job["log"], "a", encoding="utf-8") as log_stream:
        log.configure(level="info", fmt="json", stream=log_stream, clock=clock)
        started = clock.monotonic()
        config = load_config(Path(job["config"]))
        specs = specs_from_config(config)
        config_seconds = clock.monotonic() - started
        engine = db.make_engine(config.store.url)
        lifecycle = build_lifecycle(config, engine, clock)
        statements: Counter[str] = Counter()

        def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            statements[statement.lstrip().split(None, 1)[0].upper()] += 1

        sa.event.listen(engine, "before_cursor_execute", count)
        before = peak_rss_kib()
        cpu = time.process_time()
        started = clock.monotonic()
        report = lifecycle.run(specs)
        seconds = clock.monotonic() - started
        cpu = time.process_time() - cpu
        peak = peak_rss_kib()
        engine.dispose()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(job["profile"])
    result = {
        "counts": report.counts(),
        "failed": [f"{o.action.kind.value} {o.action.source}: {o.detail}" for o in report.failed],
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "config_seconds": round(config_seconds, 3),
        "statements": dict(statements),
        "rss_before_kib": before,
        "rss_peak_kib": peak,
    }
    Path(job["out"]).write_text(json.dumps(result))
    return 0


def naive_child(spec_path: str) -> int:
    """What scripts do: list every key, check each by id, create and delete for each due one."""
    job = json.loads(Path(spec_path).read_text())
    clock = SystemClock()
    es = Elasticsearch(job["url"], basic_auth=ROTATOR, request_timeout=300)
    budget = float(job["budget"])
    before = peak_rss_kib()
    started = clock.monotonic()
    listed = es.security.get_api_key(owner=True).body["api_keys"]
    mine = [k for k in listed if (k.get("metadata") or {}).get("managed_by") == "rotator"]
    now_ms = int(clock.now().timestamp() * 1000)
    lead_ms = int(ROTATE_BEFORE.total_seconds() * 1000)
    checked = rotated = 0
    for key in mine:
        if clock.monotonic() - started > budget:
            break
        found = es.security.get_api_key(id=key["id"], owner=True).body["api_keys"]
        checked += 1
        doc = found[0] if found else key
        expiration = doc.get("expiration")
        if doc.get("invalidated") or expiration is None or expiration - now_ms > lead_ms:
            continue
        es.security.create_api_key(
            name=doc["name"],
            expiration=f"{int(LIFETIME.total_seconds())}s",
            role_descriptors=doc.get("role_descriptors") or {},
            metadata=doc.get("metadata") or {},
        )
        es.security.invalidate_api_key(ids=[doc["id"]], owner=True)
        rotated += 1
    seconds = clock.monotonic() - started
    result = {
        "keys": len(mine),
        "checked": checked,
        "rotated": rotated,
        "complete": checked == len(mine),
        "seconds": round(seconds, 3),
        "rss_before_kib": before,
        "rss_peak_kib": peak_rss_kib(),
    }
    Path(job["out"]).write_text(json.dumps(result))
    return 0


def run_child(flag: str, job: dict[str, Any], work: Path, label: str) -> dict[str, Any]:
    path = work / f"{label}-job.json"
    job = {**job, "out": str(work / f"{label}-out.json")}
    path.write_text(json.dumps(job))
    done = subprocess.run(
        [sys.executable, __file__, flag, str(path)],
        env={**os.environ, CREDENTIAL_VAR: ROTATOR[1]},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the {label} process failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(Path(job["out"]).read_text())
    return result


def requests_by_route(sandbox: Sandbox) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for row in sandbox.stats()["requests"]:
        counts[f"{row['method']} {row['route']} {row['status']}"] += row["count"]
    return dict(sorted(counts.items()))


def expected_requests(n: int, due: int) -> dict[str, int]:
    """The exact bound: ceil(N / page) query pages, and each due source's rotation."""
    expected = Counter({f"POST {QUERY_ROUTE} 200": math.ceil(n / PAGE_SIZE)})
    for (method, route), count in ROTATION.items():
        expected[f"{method} {route} 200"] += count * due
    return dict(sorted(expected.items()))


# --- the driver ----------------------------------------------------------------------------------


def bench_size(
    n: int, max_parallel: int, naive_budget: float, naive: bool, profile: Path | None = None
) -> dict[str, Any]:
    """Seed a fresh sandbox and store with ``n`` sources, sweep once, then the naive way."""
    from rotator.config import parse_config
    from rotator.model import specs_from_config

    clock = SystemClock()
    with (
        tempfile.TemporaryDirectory(prefix="rotator-lifecycle-") as tmp,
        Sandbox.start(users=[(*ADMIN, "superuser")]) as sandbox,
    ):
        work = Path(tmp)
        out = work / "keys"
        out.mkdir(mode=0o700)
        store = f"sqlite:///{work / 'rotator.db'}"
        started = clock.monotonic()
        set_up(sandbox.url, n)
        text = config_text(sandbox.url, store, out, n, max_parallel)
        (work / "rotator.yaml").write_text(text)
        specs = specs_from_config(parse_config(text))
        now = clock.now()
        world = plan_world(n, now)
        seed_sandbox(sandbox, specs, world)
        seed_store(store, specs, world, now)
        seed_seconds = clock.monotonic() - started
        due = sum(1 for w in world if w.due)

        sandbox.clear_stats()
        job = {"config": str(work / "rotator.yaml"), "log": str(work / "sweep.log")}
        if profile is not None:
            job["profile"] = str(profile / f"lifecycle-{n}.prof")
        sweep = run_child("--sweep-child", job, work, "sweep")
        sweep["requests"] = requests_by_route(sandbox)

        naive_result: dict[str, Any] | None = None
        if naive:
            sandbox.reset()
            set_up(sandbox.url, n)
            seed_sandbox(sandbox, specs, world)
            sandbox.clear_stats()
            job = {"url": sandbox.url, "budget": naive_budget}
            naive_result = run_child("--naive-child", job, work, "naive")
            naive_result["requests"] = requests_by_route(sandbox)
            naive_result.update(extrapolate(naive_result))

    expected = expected_requests(n, due)
    problems = []
    if sweep["requests"] != expected:
        problems.append(f"requests {sweep['requests']} != expected {expected}")
    if sweep["failed"]:
        problems.append(f"{len(sweep['failed'])} failed: {sweep['failed'][:3]}")
    if sweep["counts"].get("rotate", {}).get("ok", 0) != due:
        problems.append(f"rotated {sweep['counts']}, expected {due} rotations")
    return {
        "sources": n,
        "due": due,
        "max_parallel": max_parallel,
        "seed_seconds": round(seed_seconds, 2),
        "expected_requests": expected,
        "sweep": sweep,
        "naive": naive_result,
        "problems": problems,
    }


def extrapolate(naive: dict[str, Any]) -> dict[str, Any]:
    """The naive way's whole cost, extrapolated linearly when the budget stopped it."""
    sent = sum(naive["requests"].values())
    if naive["complete"] or not naive["checked"]:
        return {"total_requests": sent, "total_seconds": naive["seconds"], "extrapolated": False}
    scale = naive["keys"] / naive["checked"]
    return {
        "total_requests": round(1 + (sent - 1) * scale),
        "total_seconds": round(naive["seconds"] * scale, 2),
        "extrapolated": True,
    }


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def print_table(results: list[dict[str, Any]]) -> None:
    header = (
        f"{'sources':>7} {'due':>5} {'query':>5} {'other':>5} {'bound':>5} {'wall s':>7} "
        f"{'cpu s':>7} {'cfg s':>6} {'stmts':>7} {'peak MiB':>8} {'naive req':>10} "
        f"{'naive s':>9} {'req x':>6} {'time x':>6}  problems"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        s = r["sweep"]
        query = sum(c for k, c in s["requests"].items() if QUERY_ROUTE in k)
        total = sum(s["requests"].values())
        bound = sum(r["expected_requests"].values())
        naive = r["naive"]
        if naive:
            star = "*" if naive["extrapolated"] else " "
            naive_cols = (
                f"{naive['total_requests']:>9}{star} {naive['total_seconds']:>8.2f}{star} "
                f"{naive['total_requests'] / max(1, total):>6.1f} "
                f"{naive['total_seconds'] / max(1e-9, s['seconds']):>6.1f}"
            )
        else:
            naive_cols = f"{'-':>10} {'-':>9} {'-':>6} {'-':>6}"
        print(
            f"{r['sources']:>7} {r['due']:>5} {query:>5} {total - query:>5} {bound:>5} "
            f"{s['seconds']:>7.2f} {s['cpu_seconds']:>7.2f} {s['config_seconds']:>6.2f} "
            f"{sum(s['statements'].values()):>7} {mib(s['rss_peak_kib']):>8} {naive_cols}  "
            f"{'; '.join(r['problems']) or 'ok'}"
        )
    print()
    print("requests by route (rotator's sweep | naive):")
    for r in results:
        routes = sorted(set(r["sweep"]["requests"]) | set((r["naive"] or {}).get("requests", {})))
        for route in routes:
            naive = (r["naive"] or {}).get("requests", {}).get(route, 0)
            print(
                f"  {r['sources']:>7}  {route:<48} {r['sweep']['requests'].get(route, 0):>6}"
                f" | {naive}"
            )
    print()
    print("store statements by kind:")
    for r in results:
        kinds = ", ".join(f"{k} {c}" for k, c in sorted(r["sweep"]["statements"].items()))
        print(f"  {r['sources']:>7}  {kinds}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated counts")
    parser.add_argument("--max-parallel", type=int, default=4)
    parser.add_argument(
        "--naive-budget", type=float, default=60.0, help="seconds, then extrapolate"
    )
    parser.add_argument("--no-naive", action="store_true", help="skip the naive way")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument(
        "--profile", type=Path, help="write cProfile stats of each sweep to DIR/lifecycle-N.prof"
    )
    parser.add_argument("--sweep-child", help=argparse.SUPPRESS)
    parser.add_argument("--naive-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sweep_child:
        return sweep_child(args.sweep_child)
    if args.naive_child:
        return naive_child(args.naive_child)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print("one source, due, to check what one rotation sends...", file=sys.stderr, flush=True)
    calibration = bench_size(1, 1, args.naive_budget, naive=False)
    results = []
    for n in sizes:
        print(f"seeding {n} sources and sweeping...", file=sys.stderr, flush=True)
        results.append(
            bench_size(n, args.max_parallel, args.naive_budget, not args.no_naive, args.profile)
        )
    print("one rotation sends: " + ", ".join(f"{m} {r} x{c}" for (m, r), c in ROTATION.items()))
    print_table([calibration, *results])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    document = {"page_size": PAGE_SIZE, "calibration": calibration, "results": results}
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwritten to {args.json}")
    failed = [r for r in [calibration, *results] if r["problems"]]
    held = not failed
    print(
        f"requests == ceil(N / {PAGE_SIZE}) queries + due x one rotation: {'yes' if held else 'NO'}"
    )
    if failed:
        print(f"FAILED: {len(failed)} size(s) broke the bound or failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
