"""Redaction cost per log string, against the number of secrets rotator is holding.

Run:  .venv/bin/python bench/redaction.py [--json PATH]

Registers 0, 100, 1,000 and 10,000 secrets (the cap) shaped like API key secrets and encoded
credentials, then times ``redact_text`` on a typical log line (median of many). Redaction must
cost the same whatever the number of secrets: exits 1 when the time at 10,000 is more than 3x
the time with none registered. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rotator import log

LINE = (
    "action_failed source=web-frontend-17 key_id=VuaCfGcBCdbkQm-e5aOx reason='rotation failed: "
    "POST https://es.example:9200/_security/api_key answered 503 service_unavailable' "
    "next_attempt_at=2030-01-01T00:05:00Z duration_s=0.42 run_id=5ff1423c6be3"
)


def per_call(samples: int = 2000) -> float:
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        log.redact_text(LINE)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default="bench/results/redaction.json")
    args = parser.parse_args()
    rows = []
    held: list[str] = []
    for count in (0, 100, 1000, 10_000):
        while len(held) < count:
            key_id, secret = secrets.token_urlsafe(15), secrets.token_urlsafe(16)
            encoded = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
            log.register_secret(secret)
            log.register_secret(encoded)
            held += [secret, encoded]
        rows.append({"secrets": log.known_secret_count(), "us_per_line": per_call() * 1e6})
    print(f"{'secrets held':>12} {'us/line':>8}")
    for r in rows:
        print(f"{r['secrets']:>12} {r['us_per_line']:>8.1f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=2))
    if rows[-1]["us_per_line"] > 3 * rows[0]["us_per_line"]:
        print("FAIL: redaction grows with the number of secrets", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
