"""The purge job against the naive way, on a sandbox holding many expired keys.

Run:  .venv/bin/python bench/purge.py [--sizes 1000,10000,100000] [--batch 1000]
                                      [--naive-budget 60]

For each size N, a sandbox (in its own process) is seeded with N expired keys of the ``bench``
user (who holds only ``manage_own_api_key``), plus N/10 of its keys still active and N/10
expired keys of another user, written straight into the sandbox's state. Then, each in a fresh
process talking to it over HTTP:

- rotator: ``Purger.run()`` as the daemon runs it (query pages restricted to the owner, one
  ``DELETE /_security/api_key`` per batch of ids, tombstones and audit events in a SQLite store);
- naive: what scripts do: ``GET /_security/api_key?owner=true`` (every key in one answer), then one
  ``DELETE`` per expired key.

Both must leave exactly the N expired keys invalidated. Printed per run: the requests the
sandbox answered, the wall time, and the peak RSS of the client process (and its growth over the
process after imports). When the naive way runs past ``--naive-budget`` seconds it stops and its
time and request count are extrapolated linearly from the keys it did (marked ``*``); its peak
RSS, which the full listing dominates, is measured. The last table gives the naive/rotator
ratios.

The sandbox does work linear in the number of keys for every request (each query page counts its
total over every key, each invalidate scans every key for the ids it names), so wall times grow
faster with N than against Elasticsearch and most of the rotator's wall time at 100,000 keys is
the sandbox's; the request counts and the client's CPU time and memory are what carry over.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ADMIN = ("bench-admin", "bench-admin-password")
USER = ("bench", "bench-password-1")
OTHER = ("bench-other", "bench-other-password")
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def rss_kib() -> int:
    """Resident set size of this process now (KiB)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def cpu_seconds() -> float:
    """User plus system CPU time this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_kib() -> int:
    """Peak resident set size of this process so far (KiB; Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# --- the sandbox process ---------------------------------------------------------------------


def seed(sandbox: Any, expired: int) -> None:
    """Write the keys straight into the sandbox's state (creating them over HTTP is slow)."""
    from rotator.sandbox.security_state import ApiKeyRecord, Creator, hash_secret

    state = sandbox.state
    security = state.security
    secret_hash = hash_secret("bench-secret-not-used-000")  # nobody authenticates as these
    now = sandbox.now_ms()
    plan = [(USER[0], now - HOUR_MS)] * expired
    plan += [(USER[0], now + 30 * DAY_MS)] * (expired // 10)
    plan += [(OTHER[0], now - HOUR_MS)] * (expired // 10)
    with state.lock:
        for i, (owner, expiration) in enumerate(plan):
            security.add_key(
                ApiKeyRecord(
                    id=security.new_key_id(),
                    name=f"pipeline-{i % 500:03d}-{i}",
                    type="rest",
                    secret_hash=secret_hash,
                    creation=now - 2 * DAY_MS + i,
                    expiration=expiration,
                    role_descriptors=[],
                    limited_by=[],
                    metadata={"n": i},
                    creator=Creator(owner, None, None, {}, "default_native", "native"),
                    seq=security.next_seq(),
                )
            )


def serve(expired: int, conn: Connection) -> None:
    """Run a seeded sandbox until told to stop; answer stats requests on ``conn``."""
    from elasticsearch import Elasticsearch

    from rotator.sandbox import Sandbox

    with Sandbox.start(users=[(*ADMIN, "superuser")]) as sandbox:
        admin = Elasticsearch(sandbox.url, basic_auth=ADMIN)
        admin.security.put_role(name="bench", cluster=["manage_own_api_key"])
        for name, password in (USER, OTHER):
            admin.security.put_user(username=name, password=password, roles=["bench"])
        seed(sandbox, expired)
        sandbox.clear_stats()
        conn.send(sandbox.url)
        while True:
            message = conn.recv()
            if message == "stop":
                return
            if message == "stats":
                conn.send(sandbox.stats())
            elif message == "clear":
                sandbox.clear_stats()
                conn.send(True)
            elif message == "invalidated":
                with sandbox.state.lock:
                    keys = sandbox.state.security.api_keys.values()
                    conn.send(sum(1 for k in keys if k.invalidated))


# --- the client processes ----------------------------------------------------------------------


def run_rotator(url: str, batch: int, conn: Connection) -> None:
    """Purge as the daemon does, with a SQLite store of its own."""
    from rotator import log
    from rotator.app import build_purger
    from rotator.clock import SystemClock
    from rotator.config import validate_config
    from rotator.store import db

    os.environ["BENCH_PASSWORD"] = USER[1]
    log.configure(level="warning", fmt="console")  # the audit trail mirrors each batch's ids
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/rotator.db"
        config = validate_config(
            {
                "elasticsearch": {
                    "hosts": [url],
                    "username": USER[0],
                    "password_env": "BENCH_PASSWORD",
                    "request_timeout": "600s",
                },
                "store": {"url": store},
                "purge": {"enabled": True, "batch_size": batch},
            },
            "bench",
            references=True,
        )
        engine = db.make_engine(store)
        db.upgrade(engine)
        clock = SystemClock()
        purger = build_purger(config, engine, clock)
        baseline, cpu = rss_kib(), cpu_seconds()
        started = clock.monotonic()
        report = purger.run()
        seconds = clock.monotonic() - started
        cpu = cpu_seconds() - cpu
        engine.dispose()
    conn.send(
        {
            "seconds": seconds,
            "cpu": cpu,
            "peak_rss_kib": peak_rss_kib(),
            "baseline_kib": baseline,
            "done": report.selection.count,
            "failed": report.failed,
            "extrapolated": False,
        }
    )


def run_naive(url: str, budget: float, conn: Connection) -> None:
    """List every own key in one answer, then one DELETE per expired key."""
    from elasticsearch import Elasticsearch

    from rotator.clock import SystemClock

    clock = SystemClock()
    es = Elasticsearch(url, basic_auth=USER, request_timeout=600)
    baseline, cpu = rss_kib(), cpu_seconds()
    started = clock.monotonic()
    keys = es.security.get_api_key(owner=True)["api_keys"]
    now_ms = int(clock.now().timestamp() * 1000)
    expired = [
        k["id"]
        for k in keys
        if not k["invalidated"] and k.get("expiration") and k["expiration"] <= now_ms
    ]
    done = 0
    for key_id in expired:
        es.security.invalidate_api_key(ids=[key_id], owner=True)
        done += 1
        if clock.monotonic() - started > budget:
            break
    seconds = clock.monotonic() - started
    conn.send(
        {
            "seconds": seconds,
            "cpu": cpu_seconds() - cpu,
            "peak_rss_kib": peak_rss_kib(),
            "baseline_kib": baseline,
            "done": done,
            "todo": len(expired),
            "failed": False,
            "extrapolated": done < len(expired),
        }
    )


def measure(size: int, method: str, args: argparse.Namespace) -> dict[str, Any]:
    """One method on a freshly seeded sandbox of ``size`` expired keys."""
    ctx = mp.get_context("fork")
    ours, theirs = ctx.Pipe()
    server = ctx.Process(target=serve, args=(size, theirs), daemon=True)
    server.start()
    url = ours.recv()
    back, forth = ctx.Pipe()
    if method == "rotator":
        worker = ctx.Process(target=run_rotator, args=(url, args.batch, forth))
    else:
        worker = ctx.Process(target=run_naive, args=(url, args.naive_budget, forth))
    worker.start()
    forth.close()
    try:
        result: dict[str, Any] = back.recv()
    except EOFError:
        ours.send("stop")
        raise SystemExit(f"{method} at {size}: the client process failed") from None
    worker.join()
    ours.send("stats")
    stats = ours.recv()
    ours.send("invalidated")
    invalidated = ours.recv()
    ours.send("stop")
    server.join()
    requests = stats["total"]
    deletes = sum(r["count"] for r in stats["requests"] if r["method"] == "DELETE")
    if result["extrapolated"]:
        scale = result["todo"] / result["done"]
        result["seconds"] *= scale
        result["cpu"] *= scale
        requests = 1 + result["todo"]
        deletes = result["todo"]
    elif invalidated != size:
        raise SystemExit(f"{method} at {size}: {invalidated} keys invalidated, expected {size}")
    return {**result, "requests": requests, "deletes": deletes, "size": size, "method": method}


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--naive-budget", type=float, default=60.0)
    parser.add_argument("--json", default="bench/results/purge.json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {(n, m): measure(n, m, args) for n in sizes for m in ("rotator", "naive")}
    headers = ["expired keys", "method", "requests", "DELETEs", "wall s", "client CPU s"]
    rows = [[*headers, "peak RSS MiB", "growth MiB"]]
    for (n, method), r in results.items():
        mark = "*" if r["extrapolated"] else ""
        rows.append(
            [
                str(n),
                method,
                f"{r['requests']}{mark}",
                f"{r['deletes']}{mark}",
                f"{r['seconds']:.2f}{mark}",
                f"{r['cpu']:.2f}{mark}",
                f"{r['peak_rss_kib'] / 1024:.1f}",
                f"{(r['peak_rss_kib'] - r['baseline_kib']) / 1024:.1f}",
            ]
        )
    print(table(rows))
    print()
    ratios = [["expired keys", "requests naive/rotator", "wall naive/rotator"]]
    for n in sizes:
        ours, naive = results[(n, "rotator")], results[(n, "naive")]
        ratios.append(
            [
                str(n),
                f"{naive['requests'] / ours['requests']:.1f}x",
                f"{naive['seconds'] / ours['seconds']:.1f}x",
            ]
        )
    print(table(ratios))
    if any(r["extrapolated"] for r in results.values()):
        print(f"\n* extrapolated from the keys done within {args.naive_budget:.0f}s")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(list(results.values()), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
