"""The lifecycle commands: once, plan, status and rotate (argument parsing lives in cli.py)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from rotator.clock import Clock
from rotator.config import Config
from rotator.errors import DependencyUnavailable, UsageError
from rotator.executor import Lifecycle, Outcome
from rotator.model import Action, ActionKind, SourceSpec, specs_from_config
from rotator.store.lease import LeaseRepository
from rotator.store.models import ApiKey, ApiKeyState, Rotation, Source

LEASE_NAME = "lifecycle"
# A one-off run holds the lease at most this long; a daemon renews it on its own schedule.
RUN_LEASE = timedelta(minutes=15)


def holder_id() -> str:
    """Who holds the lease: host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"


@contextmanager
def leadership(engine: Engine, clock: Clock) -> Iterator[None]:
    """Hold the lifecycle lease for one run, so two rotators never rotate the same source.

    Raises:
        DependencyUnavailable: another rotator holds the lease.
    """
    holder = holder_id()
    with Session(engine) as session, session.begin():
        leases = LeaseRepository(session)
        other = leases.get(LEASE_NAME)
        if other is not None and other.is_live(clock.now()) and _dead_local(other.holder):
            # A run on this host was killed while it held the lease: nobody will release it.
            leases.release(other, clock.now())
        lease = leases.try_acquire(LEASE_NAME, holder, clock.now(), RUN_LEASE)
        if lease is None:
            other = leases.get(LEASE_NAME)
            who = f"{other.holder} until {other.expires_at.isoformat()}" if other else "another"
            raise DependencyUnavailable(
                f"another rotator holds the lifecycle lease ({who}); try again later"
            )
    try:
        yield
    finally:
        with Session(engine) as session, session.begin():
            LeaseRepository(session).release(lease, clock.now())


def _dead_local(holder: str) -> bool:
    """Whether ``holder`` names a process on this host that no longer exists."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# --- plan ----------------------------------------------------------------------------------------


def summarize(actions: Sequence[Action]) -> str:
    """``provision N, rotate M, update K, retire J`` (plus the other kinds present)."""
    counts: dict[str, int] = {"provision": 0, "rotate": 0, "update": 0, "retire": 0}
    for action in actions:
        kind = "retire" if action.kind is ActionKind.RETIRE_SOURCE else action.kind.value
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{kind} {n}" for kind, n in counts.items())


def plan_rows(actions: Sequence[Action]) -> list[list[str]]:
    """Table rows for ``rotator plan``."""
    return [
        [a.kind.value, a.source, a.key_id or "-", a.reason.value, _iso(a.due_at) or "-", a.detail]
        for a in actions
    ]


PLAN_HEADERS = ["ACTION", "SOURCE", "KEY", "REASON", "DUE", "DETAIL"]


# --- once / rotate -------------------------------------------------------------------------------


def outcome_rows(outcomes: Sequence[Outcome]) -> list[list[str]]:
    """Table rows for ``rotator once`` and ``rotator rotate``."""
    return [
        [
            o.action.kind.value,
            o.action.source,
            "ok" if o.ok else "FAILED",
            o.key_id or o.action.key_id or "-",
            o.detail,
        ]
        for o in outcomes
    ]


OUTCOME_HEADERS = ["ACTION", "SOURCE", "RESULT", "KEY", "DETAIL"]


def forced_sources(config: Config, names: Sequence[str], every: bool) -> list[str]:
    """The sources ``rotator rotate`` names, checked against the config.

    Raises:
        UsageError: a name is not a configured source.
    """
    known = [s.name for s in config.sources]
    if every:
        return known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(
            f"unknown source {unknown[0]!r}; configured: {', '.join(known) or '(none)'}"
        )
    return list(names)


def run_once(
    lifecycle: Lifecycle, specs: Sequence[SourceSpec], job: str, forced: Sequence[str] = ()
) -> list[Outcome]:
    """One pass of the jobs."""
    return lifecycle.run(specs, job=job, forced=forced).outcomes


# --- status --------------------------------------------------------------------------------------

STATUS_HEADERS = [
    "SOURCE",
    "KEY",
    "STATE",
    "EXPIRES",
    "RENEWAL",
    "LAST ROTATION",
    "FAILURES",
    "NEXT ATTEMPT",
]


def status(engine: Engine, config: Config) -> list[dict[str, Any]]:
    """Per source: the current key, its times and state, the last rotation and failures."""
    names = [s.name for s in config.sources]
    with Session(engine) as session:
        stored = {s.name: s for s in session.query(Source).all()}
        names += sorted(n for n in stored if n not in names)
        return [
            _source_status(
                session, name, stored.get(name), name in {s.name for s in config.sources}
            )
            for name in names
        ]


def _source_status(
    session: Session, name: str, source: Source | None, configured: bool
) -> dict[str, Any]:
    keys = (
        session.query(ApiKey)
        .filter(ApiKey.source_name == name)
        .order_by(ApiKey.generation.desc(), ApiKey.id.desc())
        .all()
    )
    current = next((k for k in keys if k.state is ApiKeyState.ACTIVE), None)
    last = (
        session.query(Rotation)
        .filter(Rotation.source_name == name)
        .order_by(Rotation.started_at.desc())
        .first()
    )
    return {
        "source": name,
        "configured": configured,
        "key_id": current.es_id if current else None,
        "state": current.state.value if current else ("retired" if not configured else "no key"),
        "expires_at": _iso(current.expires_at) if current else None,
        "renewal_at": _iso(current.renewal_at) if current else None,
        "retiring": [k.es_id for k in keys if k.state is ApiKeyState.RETIRING],
        "last_rotation": None
        if last is None
        else {
            "id": last.id,
            "state": last.state.value,
            "reason": last.reason,
            "started_at": _iso(last.started_at),
            "finished_at": _iso(last.finished_at),
            "error": last.last_error,
        },
        "failures": source.failure_count if source else 0,
        "last_error": source.last_error if source else None,
        "next_attempt_at": _iso(source.next_attempt_at) if source else None,
    }


def status_rows(entries: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Table rows for ``rotator status``."""
    rows = []
    for e in entries:
        last = e["last_rotation"]
        last_text = (
            "-" if last is None else f"{last['state']} {last['finished_at'] or last['started_at']}"
        )
        rows.append(
            [
                e["source"],
                e["key_id"] or "-",
                e["state"],
                e["expires_at"] or "-",
                e["renewal_at"] or "-",
                last_text,
                str(e["failures"]),
                e["next_attempt_at"] or "-",
            ]
        )
    return rows


# --- rendering -----------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain fixed-width table."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
        for row in (headers, *rows)
    ]
    return "\n".join(lines)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def specs(config: Config) -> list[SourceSpec]:
    """The configured sources as specs."""
    return specs_from_config(config)
