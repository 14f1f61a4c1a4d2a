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
from rotator.errors import RotatorError, UsageError
from rotator.jobs.context import Fence
from rotator.jobs.lifecycle import MANAGED_BY, Lifecycle, Outcome
from rotator.leader import LEASE_NAME, LeaderLease, Renewer
from rotator.log import get_logger
from rotator.model import Action, ActionKind, SourceSpec, iso, specs_from_config
from rotator.ports import KeyAuthority, KeyInfo
from rotator.store.lease import LeaseRepository
from rotator.store.models import ApiKey, ApiKeyState, Source
from rotator.store.repositories import ApiKeyRepository, RotationRepository, SourceRepository

_log = get_logger("rotator.status")


@contextmanager
def leadership(engine: Engine, clock: Clock, ttl: timedelta) -> Iterator[LeaderLease]:
    """Hold the leader lease for a one-off command, renewed while it runs.

    While a daemon (or another one-off command) leads, the command is refused. A lease left by
    a run that was killed on this host is taken over at once instead of after its TTL.

    Raises:
        DependencyUnavailable: another rotator holds the lease (exit 3), naming who.
    """
    lease = LeaderLease(engine, clock, ttl)
    other = lease.current()
    if other is not None and other.is_live(clock.now()) and _dead_local(other.holder):
        with Session(engine) as session, session.begin():
            LeaseRepository(session).release(other, clock.now())
    lease.acquire_or_raise()
    try:
        with Renewer(lease, ttl):
            yield lease
    finally:
        lease.release()


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
        [a.kind.value, a.source, a.key_id or "-", a.reason.value, iso(a.due_at) or "-", a.detail]
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
    known = [s.name for s in specs_from_config(config)]  # with rotator's implicit sources
    if every:
        return known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(
            f"unknown source {unknown[0]!r}; configured: {', '.join(known) or '(none)'}"
        )
    return list(names)


def run_once(
    lifecycle: Lifecycle,
    specs: Sequence[SourceSpec],
    job: str,
    forced: Sequence[str] = (),
    fence: Fence | None = None,
) -> list[Outcome]:
    """One pass of the jobs, every write fenced by the lease the command holds."""
    if fence is not None:
        lifecycle = lifecycle.fenced(fence)
    return lifecycle.run(specs, job=job, forced=forced).outcomes


# --- status --------------------------------------------------------------------------------------

STATUS_HEADERS = ["SOURCE", "KEY", "STATE", "ELASTICSEARCH", "EXPIRES", "NEXT", "FAILURES"]


def status(engine: Engine, config: Config, es: KeyLookup | None = None) -> list[dict[str, Any]]:
    """Per source: the current and retiring keys as the store and Elasticsearch see them.

    Elasticsearch is asked once (one paged query over rotator's keys); a key it calls
    invalidated, expired or missing while the store calls it current is flagged as a mismatch.
    When Elasticsearch cannot be asked, every key shows ``unknown`` and a warning says why.
    """
    if es is None:
        from rotator.app import build_authority
        from rotator.clock import SystemClock

        es = KeyLookup(build_authority(config), SystemClock().now())
    names = [s.name for s in specs_from_config(config)]  # with rotator's implicit sources
    seen = es.lookup()
    if es.error is not None:
        _log.warning("status_without_elasticsearch", error=es.error)
    with Session(engine) as session:
        stored = {s.name: s for s in SourceRepository(session).list_sources(include_retired=True)}
        names += sorted(n for n in stored if n not in names)
        configured = {s.name for s in specs_from_config(config)}
        return [
            _source_status(session, name, stored.get(name), name in configured, seen, es)
            for name in names
        ]


def leader_status(engine: Engine, now: datetime) -> dict[str, Any] | None:
    """The leader lease as the store holds it: holder, epoch, expires_at, and whether it is live."""
    with Session(engine) as session:
        lease = LeaseRepository(session).get(LEASE_NAME)
    if lease is None:
        return None
    return {
        "holder": lease.holder,
        "epoch": lease.epoch,
        "expires_at": iso(lease.expires_at),
        "live": lease.is_live(now),
    }


def leader_line(leader: dict[str, Any] | None) -> str:
    """The lease in one line for the status table."""
    if leader is None:
        return "leader: none (no rotator has run under the lease yet)"
    state = "until" if leader["live"] else "expired at"
    return f"leader: {leader['holder']} (epoch {leader['epoch']}) {state} {leader['expires_at']}"


class KeyLookup:
    """What Elasticsearch says about rotator's keys, read once with one paged query."""

    def __init__(self, authority: KeyAuthority, now: datetime) -> None:
        self._authority = authority
        self._now = now
        self.error: str | None = None

    def lookup(self) -> dict[str, KeyInfo] | None:
        """Every rotator key by id, or None (with ``error`` set) when it cannot be read."""
        try:
            found = self._authority.find_by_metadata("managed_by", MANAGED_BY)
        except RotatorError as exc:
            self.error = exc.message
            return None
        return {k.id: k for k in found}

    def state(self, seen: dict[str, KeyInfo] | None, key_id: str | None) -> str:
        """``valid``, ``invalidated``, ``expired``, ``missing`` or ``unknown``."""
        if seen is None or key_id is None:
            return "unknown"
        info = seen.get(key_id)
        if info is None:
            return "missing"
        if info.invalidated:
            return "invalidated"
        if info.expiration is not None and info.expiration <= self._now:
            return "expired"
        return "valid"


def _source_status(
    session: Session,
    name: str,
    source: Source | None,
    configured: bool,
    seen: dict[str, KeyInfo] | None,
    es: KeyLookup,
) -> dict[str, Any]:
    keys = ApiKeyRepository(session).for_source(
        name, states=[ApiKeyState.ACTIVE, ApiKeyState.RETIRING]
    )
    current = next((k for k in keys if k.state is ApiKeyState.ACTIVE), None)
    last = RotationRepository(session).latest(name)
    es_state = es.state(seen, current.es_id) if current else "unknown"
    return {
        "source": name,
        "configured": configured,
        "key_id": current.es_id if current else None,
        "state": current.state.value if current else ("retired" if not configured else "no key"),
        "elasticsearch": es_state if current else None,
        "mismatch": current is not None and es_state in ("invalidated", "expired", "missing"),
        "expires_at": iso(current.expires_at) if current else None,
        "renewal_at": iso(current.renewal_at) if current else None,
        "next_action": _next_action(current, source, es_state, configured, keys),
        "retiring": [
            {
                "key_id": k.es_id,
                "retire_at": iso(k.retire_at),
                "elasticsearch": es.state(seen, k.es_id),
            }
            for k in keys
            if k.state is ApiKeyState.RETIRING
        ],
        "last_rotation": None
        if last is None
        else {
            "id": last.id,
            "state": last.state.value,
            "reason": last.reason,
            "started_at": iso(last.started_at),
            "finished_at": iso(last.finished_at),
            "error": last.last_error,
        },
        "failures": source.failure_count if source else 0,
        "last_error": source.last_error if source else None,
        "next_attempt_at": iso(source.next_attempt_at) if source else None,
    }


def _next_action(
    current: ApiKey | None,
    source: Source | None,
    es_state: str,
    configured: bool,
    keys: Sequence[ApiKey],
) -> dict[str, Any] | None:
    """What the lifecycle will do next for the source, and when (None: nothing planned)."""
    retire = sorted(k.retire_at for k in keys if k.retire_at is not None)
    if not configured:
        return {"kind": "retire", "at": iso(retire[0])} if retire else None
    retry = source.next_attempt_at if source is not None and source.failure_count else None
    if current is None or es_state in ("invalidated", "expired", "missing"):
        return {"kind": "provision", "at": iso(retry) if retry else "now"}
    due = [("retire", r) for r in retire]
    if current.renewal_at is not None:
        due.append(("rotate", max(current.renewal_at, retry) if retry else current.renewal_at))
    kind, at = min(due, key=lambda item: item[1])
    return {"kind": kind, "at": iso(at)}


def _minutes(stamp: str | None) -> str:
    """``2030-01-31T00:00:00Z`` as the table shows it: ``2030-01-31 00:00Z``."""
    if stamp is None:
        return "-"
    if len(stamp) == 20 and stamp[10] == "T":
        return f"{stamp[:10]} {stamp[11:16]}Z"
    return stamp


def status_rows(entries: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Table rows for ``rotator status``: one per source, one more per retiring key."""
    rows = []
    for e in entries:
        es = e["elasticsearch"] or "-"
        nxt = e["next_action"]
        rows.append(
            [
                e["source"],
                e["key_id"] or "-",
                e["state"],
                f"{es} MISMATCH" if e["mismatch"] else es,
                _minutes(e["expires_at"]),
                f"{nxt['kind']} {_minutes(nxt['at'])}" if nxt else "-",
                str(e["failures"]),
            ]
        )
        rows.extend(
            [
                "",
                r["key_id"] or "-",
                "retiring",
                r["elasticsearch"],
                "-",
                f"retire {r['retire_at']}",
                "",
            ]
            for r in e["retiring"]
        )
    return rows


# --- rendering -----------------------------------------------------------------------------------


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, terminal: bool | None = None
) -> str:
    """The table as the command prints it: drawn with ``rich`` (coloured states, the terminal's
    width) when ``terminal`` is true, plain fixed-width text otherwise, which scripts read.

    ``terminal`` None asks whether standard output is a terminal.
    """
    from rotator import views

    if views.is_terminal() if terminal is None else terminal:
        return views.table_text(headers, rows)
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=False)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
        for row in (headers, *rows)
    ]
    return "\n".join(lines)


def copy_audit(config: Config, engine: Engine, clock: Clock) -> None:
    """Bring the audit trail's copies (JSONL mirror, Elasticsearch) up to date after a command.

    A copy that fails is logged; the command's result stands.
    """
    if config.audit.jsonl_path is None and config.audit.data_stream is None:
        return
    from rotator.audit_mirror import sync_copies

    sync_copies(config, engine, clock)


def specs(config: Config) -> list[SourceSpec]:
    """The configured sources as specs."""
    return specs_from_config(config)
