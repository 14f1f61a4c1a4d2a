"""Cost of the track job's sweep over 1,000, 10,000 and 100,000 API keys.

Run:  .venv/bin/python bench/inventory.py [--sizes 1000,10000,100000] [--page-size 1000]
                                         [--json bench/results/inventory.json]

For each size N a fresh sandbox (in this process) is seeded with N keys written straight into
its state: a third Kibana-managed keys granted for another native user (``Alerting: ...`` names,
``metadata.managed``, task manager, reporting and Fleet keys, none expiring), a third users' keys
with expirations (some already expired, some within the warning lead times, some owned by
deleted users), and the rest cross-cluster keys, invalidated keys, non-expiring keys of a file
user and rotator's own keys (three of them orphans the sweep invalidates).

Then two sweeps run, each in a child process of its own over HTTP, through rotator's normal
path (``build_tracker`` with a config naming a native user that holds ``read_security`` and
``manage_own_api_key``) into one SQLite store: the first takes the baseline, the second is a
steady sweep over the same keys. Per sweep it reports the sandbox's request counters by route,
the wall time of ``Tracker.run()``, the store statements it sent (``before_cursor_execute``) and
the peak resident memory of the sweeping process (``VmHWM``; the sandbox's own memory is not in
it), then the peak's growth from one N to the next.

The requirement checked: a sweep of N keys sends exactly ceil(N / page_size) query requests.
The exit status is 1 when any sweep sent another number, saw other than N keys, or failed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from elasticsearch import Elasticsearch

from rotator.clock import SystemClock
from rotator.sandbox import Sandbox
from rotator.sandbox.roles import RoleDescriptor, parse_role_descriptor
from rotator.sandbox.security_state import (
    ApiKeyRecord,
    Creator,
    SecurityState,
    hash_secret,
)

QUERY_ROUTE = "/_security/_query/api_key"
ADMIN = ("bench_admin", "bench-admin-password")
ROTATOR = ("rotator", "rotator-bench-password")
KIBANA = ("kibana_alerting", "kibana-bench-password")
KIBANA_USER = KIBANA[0]
DEVELOPER = ("user-NN", "user-bench-password")  # every user-NN has this password
CREDENTIAL_VAR = "ROTATOR_BENCH_ES_PASSWORD"
USERS = 20  # user-00 .. user-19 own users' keys; the last two do not exist (owner_missing)
MISSING_USERS = 2
ORPHANS = 3
DAY_MS = 86_400_000
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "inventory.json"


# --- seeding -------------------------------------------------------------------------------------


def set_up_users(url: str) -> None:
    """Rotator's role and user, the Kibana user and the users who own keys (over HTTP)."""
    admin = Elasticsearch(url, basic_auth=ADMIN, request_timeout=60)
    admin.security.put_role(
        name="rotator", cluster=["manage_own_api_key", "read_security", "monitor"], indices=[]
    )
    admin.security.put_role(name="rule_author", cluster=["monitor"], indices=[])
    admin.security.put_role(
        name="developer", indices=[{"names": ["logs-*"], "privileges": ["read"]}]
    )
    admin.security.put_user(username=ROTATOR[0], password=ROTATOR[1], roles=["rotator"])
    admin.security.put_user(username=KIBANA_USER, password=KIBANA[1], roles=["rule_author"])
    for n in range(USERS - MISSING_USERS):
        admin.security.put_user(username=f"user-{n:02}", password=DEVELOPER[1], roles=["developer"])


class Seeder:
    """Writes API key records into a sandbox's state the way its create and grant APIs do."""

    def __init__(self, security: SecurityState, now_ms: int, seed: int) -> None:
        self.security = security
        self.now_ms = now_ms
        self.rng = random.Random(seed)
        # Never used to authenticate: one hash for every key keeps seeding fast.
        self.secret_hash = hash_secret("not-a-secret")
        self.limited = {
            "rotator": self._limited_by(["rotator"]),
            "kibana": self._limited_by(["rule_author"]),
            "user": self._limited_by(["developer"]),
            "admin": self._limited_by(["superuser"]),
        }
        self.restricted = [
            parse_role_descriptor(
                "writer", {"indices": [{"names": [f"logs-{n}-*"], "privileges": ["create_doc"]}]}
            )
            for n in range(50)
        ]
        self.cross_cluster = parse_role_descriptor(
            "cross_cluster",
            {
                "cluster": ["cross_cluster_search"],
                "indices": [
                    {
                        "names": ["logs-*"],
                        "privileges": ["read", "read_cross_cluster", "view_index_metadata"],
                    }
                ],
            },
        )

    def _limited_by(self, roles: list[str]) -> list[RoleDescriptor]:
        return [replace(d, description=None) for d in self.security.resolve_roles(roles)]

    @staticmethod
    def _creator(principal: str, realm: str = "default_native", kind: str = "native") -> Creator:
        return Creator(principal, None, None, {}, realm, kind)

    def _add(
        self,
        *,
        name: str,
        creator: Creator,
        limited_by: list[RoleDescriptor],
        creation: int,
        expiration: int | None = None,
        role_descriptors: list[RoleDescriptor] | None = None,
        metadata: dict[str, Any] | None = None,
        key_type: str = "rest",
        invalidation: int | None = None,
    ) -> None:
        security = self.security
        security.add_key(
            ApiKeyRecord(
                id=security.new_key_id(),
                name=name,
                type=key_type,
                secret_hash=self.secret_hash,
                creation=creation,
                expiration=expiration,
                role_descriptors=role_descriptors or [],
                limited_by=limited_by,
                metadata=metadata,
                creator=creator,
                seq=security.next_seq(),
                invalidated=invalidation is not None,
                invalidation=invalidation,
            )
        )

    def _days_ago(self, low: float, high: float) -> int:
        return self.now_ms - int(self.rng.uniform(low, high) * DAY_MS)

    def seed(self, total: int) -> Counter[str]:
        """Add ``total`` keys; returns how many of each kind."""
        kinds: Counter[str] = Counter()
        kibana = self._creator(KIBANA_USER)
        for i in range(total):
            slot = i % 12
            if slot < 4:
                kinds[self._kibana(i, slot, kibana)] += 1
            elif slot < 8:
                kinds[self._user(i)] += 1
            elif slot == 8:
                self._add(
                    name=f"ccs-remote-{i}",
                    creator=self._creator(ADMIN[0], "default_file", "file"),
                    limited_by=[],
                    creation=self._days_ago(1, 300),
                    role_descriptors=[self.cross_cluster],
                    metadata={"team": "search"},
                    key_type="cross_cluster",
                )
                kinds["cross_cluster"] += 1
            elif slot == 9:
                self._add(
                    name=f"retired-{i}",
                    creator=self._creator(f"user-{i % USERS:02}"),
                    limited_by=self.limited["user"],
                    creation=self._days_ago(30, 200),
                    expiration=self._days_ago(-200, -30),
                    role_descriptors=[self.restricted[i % 50]],
                    invalidation=self._days_ago(0.1, 6),
                )
                kinds["user invalidated"] += 1
            elif slot == 10:
                self._add(
                    name=f"ops-script-{i}",
                    creator=self._creator(ADMIN[0], "default_file", "file"),
                    limited_by=self.limited["admin"],
                    creation=self._days_ago(1, 500),
                    metadata={"owner": "ops"},
                )
                kinds["user no expiration"] += 1
            else:
                kinds[self._rotator(i, orphan=kinds["rotator orphan"] < ORPHANS)] += 1
        return kinds

    def _kibana(self, i: int, slot: int, creator: Creator) -> str:
        limited = self.limited["kibana"]
        created = self._days_ago(1, 400)
        managed = {"managed": True}
        if slot < 3:
            name = f"Alerting: .es-query/rule-{i}"
            self._add(
                name=name, creator=creator, limited_by=limited, creation=created, metadata=managed
            )
            return "kibana alerting"
        which = (i // 12) % 3
        if which == 0:
            self._add(
                name=f"TaskManager: {KIBANA_USER}",
                creator=creator,
                limited_by=limited,
                creation=created,
                metadata=managed,
            )
            return "kibana task-manager"
        if which == 1:
            self._add(
                name="Scheduled Reporting csv API Key",
                creator=creator,
                limited_by=limited,
                creation=created,
                metadata=managed,
            )
            return "kibana reporting"
        self._add(
            name=f"Default ({i:08x})",
            creator=creator,
            limited_by=limited,
            creation=created,
            role_descriptors=[parse_role_descriptor("fleet-apikey-enroll", {"cluster": []})],
            metadata={"managed_by": "fleet", "managed": True, "type": "enroll", "policy_id": "p1"},
        )
        return "kibana fleet"

    def _user(self, i: int) -> str:
        """A user's key with an expiration: mostly far off, some due soon, some just past."""
        roll = self.rng.random()
        if roll < 0.05:
            expires, kind = self._days_ago(0.1, 6), "user expired"  # kept: within retention
        elif roll < 0.15:
            expires, kind = self._days_ago(-14, -0.1), "user expiring within 14d"
        else:
            expires, kind = self._days_ago(-365, -14), "user expiring later"
        created = min(expires - DAY_MS, self._days_ago(1, 300))
        self._add(
            name=f"script-{i}",
            creator=self._creator(f"user-{i % USERS:02}"),
            limited_by=self.limited["user"],
            creation=created,
            expiration=expires,
            role_descriptors=[self.restricted[i % 50]],
            metadata={"app": f"app-{i % 7}"},
        )
        return kind

    def _rotator(self, i: int, *, orphan: bool) -> str:
        """Rotator's own key: within the orphan grace (so left alone), or an old orphan."""
        created = (
            self._days_ago(2, 20) if orphan else self.now_ms - self.rng.randint(1, 50) * 60_000
        )
        self._add(
            name=f"rotator-src-{i}",
            creator=self._creator(ROTATOR[0]),
            limited_by=self.limited["rotator"],
            creation=created,
            expiration=created + 30 * DAY_MS,
            role_descriptors=[self.restricted[i % 50]],
            metadata={"managed_by": "rotator", "source": f"src-{i}", "rotation_id": f"r-{i}"},
        )
        return "rotator orphan" if orphan else "rotator"


# --- the sweep, in a process of its own ---------------------------------------------------------


def config_text(url: str, store: str, page_size: int) -> str:
    return "\n".join(
        [
            "elasticsearch:",
            f"  hosts: ['{url}']",
            f"  username: {ROTATOR[0]}",
            f"  password_env: {CREDENTIAL_VAR}",
            "  max_retries: 0",
            "  request_timeout: 120s",
            f"store: {{url: '{store}'}}",
            f"managed_keys: {{page_size: {page_size}}}",
            "",
        ]
    )


def peak_rss_kib() -> int:
    """The peak resident set size of this process so far, in KiB (``VmHWM``).

    Not ``ru_maxrss``: a child started by ``subprocess`` inherits in it the resident size of
    the parent it was forked from (here the sandbox with every key), while ``VmHWM`` belongs to
    the address space the child's own program has used since it started.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def sweep_child(spec_path: str) -> int:
    """One sweep: build the tracker as rotator does, run it, write what it cost."""
    import sqlalchemy as sa

    from rotator import log
    from rotator.app import build_tracker
    from rotator.config import parse_config
    from rotator.store import db

    spec = json.loads(Path(spec_path).read_text())
    clock = SystemClock()
    with open(spec["log"], "a", encoding="utf-8") as log_stream:
        log.configure(level="info", fmt="json", stream=log_stream, clock=clock)
        config = parse_config(spec["config"])
        engine = db.make_engine(config.store.url)
        tracker = build_tracker(config, engine, clock)
        statements: Counter[str] = Counter()

        def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            statements[statement.lstrip().split(None, 1)[0].upper()] += 1

        sa.event.listen(engine, "before_cursor_execute", count)
        before = peak_rss_kib()
        started = clock.monotonic()
        report = tracker.run()
        seconds = clock.monotonic() - started
        peak = peak_rss_kib()
        engine.dispose()
    result = {
        "seen": report.seen,
        "pages": report.pages,
        "baseline": report.baseline,
        "failed": report.failed,
        "classes": dict(report.classes),
        "transitions": dict(report.transitions),
        "findings": dict(report.findings),
        "orphans_invalidated": len(report.orphans_invalidated),
        "seconds": round(seconds, 3),
        "statements": dict(statements),
        "rss_before_kib": before,
        "rss_peak_kib": peak,
    }
    Path(spec["out"]).write_text(json.dumps(result))
    return 0


# --- the driver ----------------------------------------------------------------------------------


def log_lines(path: Path) -> dict[str, int]:
    """The sweep's log lines by level and message."""
    counts: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            counts["(not json)"] += 1
            continue
        counts[f"{entry.get('log.level')} {entry.get('message')}"] += 1
    return dict(sorted(counts.items()))


def run_sweep(sandbox: Sandbox, work: Path, store: str, page_size: int, n: int) -> dict[str, Any]:
    """Clear the counters, sweep in a child process, return its figures and the requests."""
    spec = {
        "config": config_text(sandbox.url, store, page_size),
        "log": str(work / f"track-{n}.log"),
        "out": str(work / f"sweep-{n}.json"),
    }
    spec_path = work / f"spec-{n}.json"
    spec_path.write_text(json.dumps(spec))
    sandbox.clear_stats()
    env = {**os.environ, CREDENTIAL_VAR: ROTATOR[1]}
    done = subprocess.run(
        [sys.executable, __file__, "--sweep-child", str(spec_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the sweep process failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(Path(spec["out"]).read_text())
    result["log_lines"] = log_lines(Path(spec["log"]))
    rows = sandbox.stats()["requests"]
    by_route: Counter[str] = Counter()
    for row in rows:
        by_route[f"{row['method']} {row['route']} {row['status']}"] += row["count"]
    result["requests"] = dict(sorted(by_route.items()))
    result["query_requests"] = sum(row["count"] for row in rows if row["route"] == QUERY_ROUTE)
    return result


def bench_size(n: int, page_size: int, clock: SystemClock) -> dict[str, Any]:
    """Seed a fresh sandbox with ``n`` keys and sweep it twice."""
    from rotator.store import db

    with (
        tempfile.TemporaryDirectory(prefix="rotator-inventory-") as tmp,
        Sandbox.start(users=[(*ADMIN, "superuser")]) as sandbox,
    ):
        work = Path(tmp)
        set_up_users(sandbox.url)
        started = clock.monotonic()
        with sandbox.state.lock:
            seeder = Seeder(sandbox.state.security, sandbox.now_ms(), seed=n)
            kinds = seeder.seed(n)
        seed_seconds = clock.monotonic() - started
        store = f"sqlite:///{work / 'rotator.db'}"
        engine = db.make_engine(store)
        db.upgrade(engine)
        engine.dispose()
        expected = math.ceil(n / page_size)
        sweeps: dict[str, dict[str, Any]] = {}
        for label in ("baseline", "steady"):
            result = run_sweep(sandbox, work, store, page_size, len(sweeps))
            problems = []
            if result["query_requests"] != expected:
                problems.append(f"{result['query_requests']} query requests, expected {expected}")
            if result["seen"] != n:
                problems.append(f"saw {result['seen']} keys, expected {n}")
            if result["failed"]:
                problems.append(f"failed: {result['failed']}")
            if result["baseline"] != (label == "baseline"):
                problems.append(f"baseline={result['baseline']}")
            result["problems"] = problems
            sweeps[label] = result
    return {
        "keys": n,
        "page_size": page_size,
        "expected_query_requests": expected,
        "seed_seconds": round(seed_seconds, 2),
        "seeded": dict(sorted(kinds.items())),
        "sweeps": sweeps,
    }


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def print_table(results: list[dict[str, Any]]) -> None:
    header = (
        f"{'keys':>7} {'sweep':<8} {'query':>5} {'expect':>6} {'other':>5} {'wall s':>7} "
        f"{'stmts':>6} {'stmt/pg':>7} {'rss0 MiB':>8} {'peak MiB':>8} {'grew MiB':>8}  problems"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        for label, s in r["sweeps"].items():
            other = sum(s["requests"].values()) - s["query_requests"]
            statements = sum(s["statements"].values())
            per_page = statements / max(1, s["pages"])
            print(
                f"{r['keys']:>7} {label:<8} {s['query_requests']:>5} "
                f"{r['expected_query_requests']:>6} {other:>5} {s['seconds']:>7.2f} "
                f"{statements:>6} {per_page:>7.1f} {mib(s['rss_before_kib']):>8} "
                f"{mib(s['rss_peak_kib']):>8} "
                f"{mib(s['rss_peak_kib'] - s['rss_before_kib']):>8}  "
                f"{'; '.join(s['problems']) or 'ok'}"
            )
    print()
    print("requests by route (method route status: baseline / steady):")
    for r in results:
        routes = sorted(
            set(r["sweeps"]["baseline"]["requests"]) | set(r["sweeps"]["steady"]["requests"])
        )
        for route in routes:
            counts = [r["sweeps"][label]["requests"].get(route, 0) for label in r["sweeps"]]
            print(f"  {r['keys']:>7}  {route:<50} {' / '.join(map(str, counts))}")
    print()
    print("store statements by kind (baseline / steady):")
    for r in results:
        kinds = sorted(
            set(r["sweeps"]["baseline"]["statements"]) | set(r["sweeps"]["steady"]["statements"])
        )
        text = ", ".join(
            f"{k} {'/'.join(str(r['sweeps'][lb]['statements'].get(k, 0)) for lb in r['sweeps'])}"
            for k in kinds
        )
        print(f"  {r['keys']:>7}  {text}")
    print()
    print("seeded keys and what the baseline sweep found:")
    for r in results:
        base = r["sweeps"]["baseline"]
        print(f"  {r['keys']:>7}  seeded in {r['seed_seconds']}s: {r['seeded']}")
        print(f"  {'':>7}  classes {base['classes']}, findings {base['findings']}")
        print(
            f"  {'':>7}  transitions {base['transitions']}, "
            f"orphans invalidated {base['orphans_invalidated']}, log lines {base['log_lines']}"
        )
    print()
    print("peak RSS growth between sizes (sweeping process):")
    for prev, cur in itertools.pairwise(results):
        for label in ("baseline", "steady"):
            a, b = prev["sweeps"][label]["rss_peak_kib"], cur["sweeps"][label]["rss_peak_kib"]
            added = cur["keys"] - prev["keys"]
            print(
                f"  {prev['keys']:>7} -> {cur['keys']:<7} {label:<8} {mib(b - a):>7} MiB"
                f"  ({(b - a) * 1024 / added:.1f} bytes per added key)"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated key counts")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument("--sweep-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sweep_child:
        return sweep_child(args.sweep_child)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    clock = SystemClock()
    results = []
    for n in sizes:
        print(f"seeding {n} keys and sweeping twice...", file=sys.stderr, flush=True)
        results.append(bench_size(n, args.page_size, clock))
    print_table(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"results": results}, indent=2) + "\n")
    print(f"\nwritten to {args.json}")
    held = all(
        s["query_requests"] == r["expected_query_requests"]
        for r in results
        for s in r["sweeps"].values()
    )
    print(f"query requests == ceil(N / page_size) in every sweep: {'yes' if held else 'NO'}")
    failed = [s for r in results for s in r["sweeps"].values() if s["problems"]]
    if failed:
        print(f"FAILED: {len(failed)} sweep(s) broke the bound or the count", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
