"""``rotator keys`` and ``rotator once track``: the inventory as people and scripts read it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from rotator.jobs.track import TrackReport, scope_words
from rotator.model import iso
from rotator.store.inventory import KeyFilter
from rotator.store.models import InventorySweep, TrackedKey
from rotator.tracking import days

KEY_HEADERS = ("CLASS", "NAME", "OWNER", "EXPIRES IN", "STATE", "FINDINGS", "ID")
NAME_WIDTH = 48


def expires_in(row: TrackedKey, now: datetime) -> str:
    """``13d``, ``5h``, ``never``, or ``-2d`` for a key that expired two days ago."""
    if row.expires_at is None:
        return "never"
    left = row.expires_at - now
    if left < timedelta(0):
        return f"-{days(-left)}"
    return days(left)


def key_json(row: TrackedKey, now: datetime) -> dict[str, Any]:
    """One key for ``-o json``: what the store holds, never a secret (none is stored)."""
    return {
        "id": row.es_id,
        "name": row.name,
        "type": row.key_type,
        "class": row.key_class,
        "sub_kind": row.sub_kind,
        "owner": row.owner,
        "realm": row.realm,
        "realm_type": row.realm_type,
        "state": row.state,
        "created_at": iso(row.created_at),
        "expires_at": iso(row.expires_at),
        "expires_in_s": (
            None if row.expires_at is None else int((row.expires_at - now).total_seconds())
        ),
        "invalidated_at": iso(row.invalidated_at),
        "roles": row.roles_json,
        "metadata": row.metadata_json,
        "findings": row.findings_json,
        "first_seen_at": iso(row.first_seen_at),
        "last_seen_at": iso(row.last_seen_at),
        "gone_at": iso(row.gone_at),
    }


def key_row(row: TrackedKey, now: datetime) -> tuple[str, ...]:
    """One key as a table row."""
    name = row.name if len(row.name) <= NAME_WIDTH else row.name[: NAME_WIDTH - 1] + "…"
    kind = row.key_class + (f"/{row.sub_kind}" if row.sub_kind else "")
    found = ",".join(f["kind"] for f in row.findings_json) or "-"
    return (kind, name, row.owner, expires_in(row, now), row.state, found, row.es_id)


def sweep_json(sweep: InventorySweep | None) -> dict[str, Any]:
    """What the last sweep could see, and when it ran."""
    if sweep is None:
        return {"scope": None, "last_sweep_at": None, "last_sweep_ok": None, "principal": None}
    return {
        "scope": sweep.scope,
        "scope_detail": scope_words(sweep.scope),
        "principal": sweep.principal,
        "last_sweep_at": iso(sweep.finished_at),
        "last_sweep_ok": sweep.ok,
        "last_sweep_error": sweep.error,
    }


def heading(sweep: InventorySweep | None) -> list[str]:
    """The lines said before any listing: the scope and the last sweep, always."""
    if sweep is None:
        return [
            "no sweep has run yet: run `rotator once track` (or the daemon's track job) first",
        ]
    state = "ok" if sweep.ok else f"FAILED: {sweep.error or 'unknown error'}"
    return [
        f"scope: {sweep.scope} ({scope_words(sweep.scope)}); as {sweep.principal}",
        f"last sweep: {iso(sweep.finished_at)} ({state}); {sweep.seen} keys seen",
    ]


def empty_words(wanted: KeyFilter, sweep: InventorySweep | None) -> str:
    """What an empty listing means: never "no managed keys" when they cannot be seen."""
    if sweep is None:
        return "nothing is known yet"
    if sweep.scope == "own" and wanted.key_class not in (None, "rotator"):
        return (
            f"no {wanted.key_class} keys among rotator's own; other owners' keys are not "
            "visible without read_security"
        )
    return "no key matches"


def track_rows(report: TrackReport) -> list[tuple[str, str]]:
    """``rotator once track`` as two columns."""
    out = [
        ("scope", f"{report.scope} ({scope_words(report.scope)})" if report.scope else "-"),
        ("principal", report.principal or "-"),
        ("keys seen", f"{report.seen} in {report.pages} page(s)"),
        ("baseline", "yes (first sweep)" if report.baseline else "no"),
        ("classes", _pairs(report.classes.items())),
        ("transitions", _pairs(report.transitions.items())),
        ("findings", _pairs(report.findings.items())),
        ("orphans invalidated", ", ".join(report.orphans_invalidated) or "-"),
        ("handed to lifecycle", ", ".join(sorted(set(report.drifted))) or "-"),
        ("duration", f"{report.duration_s}s"),
    ]
    out += [("FAILED", problem) for problem in report.failed]
    if report.stopped:
        out.append(("stopped", report.stopped))
    return out


def _pairs(items: Iterable[tuple[str, int]]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(items)) or "-"
