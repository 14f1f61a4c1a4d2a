"""Loading a config with N sources: read, parse, validate, resolve (``rotator.config.load_config``).

Run:  .venv/bin/python bench/config_load.py [--sizes 1000,10000,100000] [--json PATH]

Writes a config with N sources (preset logs-writer, one file sink each) to a temp dir and times
``load_config`` (best of 3), as YAML (parsed by rapidyaml when installed and the text is large,
see rotator/config_yaml.py) and as the same config written as JSON (which rotator parses with
the C JSON parser). Exits 1 when 100k sources take 1 s or more both ways. Prints a table, with
the machine's load average (other work on the machine slows every number), and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml

from rotator.config import load_config

HEAD = """elasticsearch:
  hosts: ['http://127.0.0.1:9200']
  username: rotator
  password_env: ROTATOR_BENCH_PASSWORD
store: {url: 'sqlite:///bench.db'}
sources:
"""


def config_text(n: int, out: Path) -> str:
    lines = [HEAD]
    for i in range(n):
        name = f"src-{i:06d}"
        lines.append(
            f"  - name: {name}\n    preset: logs-writer\n    dataset: {name.replace('-', '_')}\n"
            f"    deliver: [{{type: file, path: '{out}/{name}.key'}}]\n"
        )
    return "".join(lines)


def best_of_3(path: Path, n: int) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        config = load_config(path)
        best = min(best, time.perf_counter() - started)
    assert len(config.sources) == n
    return round(best, 3)


def measure(n: int, work: Path) -> dict[str, float]:
    path = work / f"rotator-{n}.yaml"
    path.write_text(config_text(n, work))
    as_json = work / f"rotator-{n}.json"  # the same config as JSON (YAML's subset)
    as_json.write_text(json.dumps(yaml.safe_load(path.read_text())))
    return {
        "sources": n,
        "bytes": path.stat().st_size,
        "seconds": best_of_3(path, n),
        "json_seconds": best_of_3(as_json, n),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--json", default="bench/results/config_load.json")
    args = parser.parse_args()
    started_load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(int(n), Path(tmp)) for n in args.sizes.split(",")]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average before and after: {started_load}; {load}")
    print(f"{'sources':>8} {'MB':>6} {'YAML s':>7} {'JSON s':>7}")
    for r in rows:
        print(
            f"{r['sources']:>8} {r['bytes'] / 1e6:>6.1f} {r['seconds']:>7} {r['json_seconds']:>7}"
        )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(rows, indent=2))
    big = [r for r in rows if r["sources"] >= 100_000]
    if big and min(big[0]["seconds"], big[0]["json_seconds"]) >= 1.0:
        print(
            f"FAIL: 100k sources took {big[0]['seconds']} s as YAML, {big[0]['json_seconds']} s "
            "as JSON (target < 1 s)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
