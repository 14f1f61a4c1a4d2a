"""Planning alone: ``rotator.planner.plan`` over N sources with 1% due, at 1k, 10k and 100k.

Run:  .venv/bin/python bench/planning.py [--sizes 1000,10000,100000] [--json PATH]

Builds N specs and an inventory in memory (one current key per source; 1% of them past their
renewal time), times ``plan()`` (best of 3), and checks that the cost grows linearly: the time per
source at the largest N may be at most 3x the time per source at the smallest. Exits 1 otherwise,
or when planning 100k sources takes 1 s or more. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rotator.model import EsStatus, Inventory, KeyState, KeyView, SourceSpec, SourceView
from rotator.planner import plan
from rotator.scoping import Grants

NOW = datetime(2030, 6, 1, tzinfo=UTC)
LIFETIME = timedelta(days=30)
BEFORE = timedelta(days=10)


def world(n: int) -> tuple[list[SourceSpec], Inventory]:
    """N sources, each with a current key; every hundredth is due for rotation."""
    specs, keys, views = [], [], []
    for i in range(n):
        name = f"src-{i:06d}"
        spec = SourceSpec(
            name=name,
            grants=Grants.build(["monitor"], [([f"logs-{name}-default"], ["create_doc"])]),
            metadata=(),
            lifetime=LIFETIME,
            rotate_before=BEFORE,
            overlap=timedelta(hours=24),
            jitter=timedelta(0),
            critical_before=timedelta(hours=24),
        )
        created = NOW - (timedelta(days=25) if i % 100 == 0 else timedelta(days=1))
        specs.append(spec)
        views.append(SourceView(name))
        keys.append(
            KeyView(
                es_id=f"id-{i}",
                source=name,
                generation=1,
                state=KeyState.ACTIVE,
                created_at=created,
                expires_at=created + LIFETIME,
                renewal_at=created + LIFETIME - BEFORE,
                privileges_fingerprint=spec.privileges_fingerprint,
                policy_fingerprint=spec.policy_fingerprint,
                delivered_at=created,
                es_status=EsStatus.VALID,
            )
        )
    return specs, Inventory(tuple(views), tuple(keys))


def measure(n: int) -> dict[str, float]:
    best = float("inf")
    due = 0
    for _ in range(3):
        specs, inventory = world(n)  # fresh specs and inventory: nothing cached between runs
        started = time.perf_counter()
        actions = plan(specs, inventory, NOW)
        best = min(best, time.perf_counter() - started)
        due = len(actions)
    return {
        "sources": n,
        "seconds": round(best, 4),
        "us_per_source": round(best / n * 1e6, 2),
        "due": due,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--json", default="bench/results/planning.json")
    args = parser.parse_args()
    rows = [measure(int(n)) for n in args.sizes.split(",")]
    print(f"{'sources':>8} {'plan s':>8} {'us/source':>10} {'due':>6}")
    for r in rows:
        print(f"{r['sources']:>8} {r['seconds']:>8} {r['us_per_source']:>10} {r['due']:>6}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=2))
    failures = []
    if rows[-1]["us_per_source"] > 3 * rows[0]["us_per_source"]:
        failures.append("planning does not grow linearly")
    big = [r for r in rows if r["sources"] >= 100_000]
    if big and big[0]["seconds"] >= 1.0:
        failures.append(f"planning 100k sources took {big[0]['seconds']} s (target < 1 s)")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
