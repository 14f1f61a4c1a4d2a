"""Scale of the Query API keys engine alone: a KeyIndex of many keys, paged through in full.

Run:  .venv/bin/python bench/sandbox_query_scale.py [--keys 100000] [--page 1000]

Builds the index, then pages through every key sorted by ``expiration`` (ties by name) with
``search_after`` and a ``range`` filter on ``expiration``, the way the rotator scans keys.
Prints the build rate, the full paging time, the time per page and the memory per key
(tracemalloc).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rotator.sandbox.keyindex import KeyIndex, QueryDoc
from rotator.sandbox.query import execute_query

NOW_MS = 1_750_000_000_000
DAY_MS = 86_400_000


def make_doc(i: int, rng: random.Random) -> QueryDoc:
    """A key like the ones a fleet of pipelines owns: 1 in 10 never expires."""
    expiration = None if i % 10 == 0 else NOW_MS + rng.randrange(-30, 365) * DAY_MS
    return QueryDoc(
        id=f"key-{i:08d}",
        name=f"pipeline-{i % 5000:05d}-key-{i:08d}",
        type="rest",
        creation=NOW_MS - rng.randrange(0, 400) * DAY_MS,
        expiration=expiration,
        invalidated=i % 50 == 0,
        invalidation=NOW_MS - DAY_MS if i % 50 == 0 else None,
        username=f"user-{i % 100}",
        realm_name="native1",
        metadata={"pipeline": f"p-{i % 5000}", "managed": i % 3 == 0},
        seq=i,
    )


def build(total: int) -> tuple[KeyIndex, float]:
    """Build the index; return it and the seconds taken."""
    rng = random.Random(42)
    started = time.perf_counter()
    index = KeyIndex()
    for i in range(total):
        index.add(make_doc(i, rng))
    return index, time.perf_counter() - started


def bytes_per_key(total: int) -> int:
    """Build the index again under tracemalloc and return the bytes it holds per key."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    index, _ = build(total)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del index
    return round(held / total)


RANGE = {"range": {"expiration": {"gte": "now-60d/d"}}}
SCENARIOS: dict[str, dict[str, Any]] = {
    # the range alone: totals come from two bisects, pages from a walk of the ordering
    "range": {"bool": {"filter": [RANGE]}},
    # a range plus another condition: totals need one pass over the range, pages still walk
    "range_and_valid": {"bool": {"filter": [RANGE, {"term": {"invalidated": False}}]}},
}


def page_all(
    index: KeyIndex, query: dict[str, Any], page: int, visible: Any = None
) -> dict[str, Any]:
    """Page through every matching key, sorted by expiration then name, with search_after."""
    body: dict[str, Any] = {
        "query": query,
        "sort": [{"expiration": {"order": "asc"}}, "name"],
        "size": page,
    }
    seen = pages = 0
    slowest = 0.0
    total = None
    started = time.perf_counter()
    while True:
        tick = time.perf_counter()
        result = execute_query(index, body, now_ms=NOW_MS, visible=visible)
        slowest = max(slowest, time.perf_counter() - tick)
        total = result.total
        if not result.hits:
            break
        pages += 1
        seen += len(result.hits)
        body["search_after"] = result.hits[-1][1]
    elapsed = time.perf_counter() - started
    if seen != total:
        raise SystemExit(f"paging visited {seen} keys, expected {total}")
    return {
        "matching_keys": total,
        "pages": pages,
        "paging_seconds": round(elapsed, 3),
        "seconds_per_page": round(elapsed / max(pages, 1), 5),
        "slowest_page_seconds": round(slowest, 5),
    }


def main() -> None:
    """Run the benchmark and print one JSON document."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=1000)
    args = parser.parse_args()
    index, build_seconds = build(args.keys)
    report = {
        "keys": args.keys,
        "build_seconds": round(build_seconds, 3),
        "build_docs_per_second": round(args.keys / build_seconds),
        **{name: page_all(index, query, args.page) for name, query in SCENARIOS.items()},
        "range_owner_only": page_all(
            index, SCENARIOS["range"], args.page, visible=lambda d: d.username == "user-7"
        ),
        "bytes_per_key": bytes_per_key(args.keys),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
