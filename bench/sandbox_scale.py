"""Scale of the sandbox: create many API keys over HTTP, then page through all of them.

Run:  .venv/bin/python bench/sandbox_scale.py [--keys 100000] [--page 1000] [--threads 4]

Reports the create rate, the time to page through every key with the query API (sorted by
expiration, search_after, and a range filter on expiration), the slowest page, and the resident
memory the sandbox grew by per key. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elasticsearch import Elasticsearch

from rotator.clock import SystemClock
from rotator.sandbox import Sandbox

USER = ("bench", "bench-password-1")


def rss_bytes() -> int:
    """Resident set size of this process, from /proc."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def create_keys(url: str, total: int, threads: int) -> None:
    """Create ``total`` keys with varied expirations, in parallel batches."""

    def work(start: int) -> None:
        es = Elasticsearch(url, basic_auth=USER, request_timeout=60)
        for i in range(start, total, threads):
            es.security.create_api_key(
                name=f"bench-{i}",
                expiration=f"{1 + i % 365}d",
                role_descriptors={
                    "r": {
                        "indices": [{"names": [f"logs-b{i % 50}-*"], "privileges": ["create_doc"]}]
                    }
                },
                metadata={"managed_by": "rotator", "n": i},
            )

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))


def page_all(url: str, page_size: int, clock: SystemClock) -> dict[str, Any]:
    """Page through every key with a range filter, sorted by expiration."""
    es = Elasticsearch(url, basic_auth=USER, request_timeout=60)
    seen = 0
    pages: list[float] = []
    after: list[Any] | None = None
    while True:
        started = clock.monotonic()
        body: dict[str, Any] = {
            "size": page_size,
            "sort": [{"expiration": "asc"}, "name"],
            "query": {"range": {"expiration": {"gte": "now", "lte": "now+400d"}}},
        }
        if after is not None:
            body["search_after"] = after
        page = es.security.query_api_keys(body=body)
        pages.append(clock.monotonic() - started)
        keys = page["api_keys"]
        if not keys:
            break
        seen += len(keys)
        after = keys[-1]["_sort"]
    return {"seen": seen, "pages": len(pages), "seconds": sum(pages), "slowest_page": max(pages)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    clock = SystemClock()
    with Sandbox.start(users=[(*USER, "superuser")]) as sandbox:
        before = rss_bytes()
        started = clock.monotonic()
        create_keys(sandbox.url, args.keys, args.threads)
        create_seconds = clock.monotonic() - started
        grown = rss_bytes() - before
        paging = page_all(sandbox.url, args.page, clock)
        report = {
            "keys": args.keys,
            "create_seconds": round(create_seconds, 2),
            "create_rate_per_s": round(args.keys / create_seconds, 1),
            "paging_seconds": round(paging["seconds"], 3),
            "pages": paging["pages"],
            "keys_seen": paging["seen"],
            "slowest_page_ms": round(paging["slowest_page"] * 1000, 1),
            "mean_page_ms": round(paging["seconds"] / paging["pages"] * 1000, 1),
            "rss_growth_per_key_bytes": round(grown / args.keys),
            "requests": sandbox.stats()["total"],
        }
    print(json.dumps(report, indent=2))
    return 0 if report["keys_seen"] == args.keys else 1


if __name__ == "__main__":
    raise SystemExit(main())
