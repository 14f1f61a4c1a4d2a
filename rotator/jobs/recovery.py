"""Crash recovery: every rotation a crash or a lost answer left unfinished is finished or undone.

The rule: a key any sink may hold is never invalidated. Once delivery has started, a rotation
whose sinks all reported taking the key is finished (activated); one that may have reached only
some sinks keeps its key valid for them until a newer key has reached every sink. Only a key no
sink can hold is invalidated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rotator.errors import RotatorError
from rotator.jobs import rows
from rotator.jobs.context import Deps, describe
from rotator.jobs.rows import StepFailed
from rotator.model import Action, ActionKind, Reason, SourceSpec
from rotator.ports import UnitOfWork
from rotator.store.models import ApiKeyState, RotationState
from rotator.vocabulary import AuditAction, LogEvent


@dataclass(frozen=True)
class Interrupted:
    """An unfinished rotation as the store left it."""

    rotation_id: str
    source: str
    state: RotationState
    new_key: str | None
    delivery_started: bool
    delivered_to: frozenset[str]


@dataclass(frozen=True)
class Recovered:
    """What recovery did with one rotation."""

    action: Action
    ok: bool
    detail: str
    key_id: str | None


class Recovery:
    """Resumes or compensates interrupted rotations."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    def pending(self) -> list[Interrupted]:
        """Every unfinished rotation, oldest first."""
        with self._deps.read() as uow:
            keys = uow.keys
            out = []
            for rotation in uow.rotations.unfinished():
                row = keys.for_rotation(rotation.id)
                out.append(
                    Interrupted(
                        rotation.id,
                        rotation.source_name,
                        rotation.state,
                        rotation.new_key_es_id,
                        row is not None and row.delivery_started_at is not None,
                        frozenset(r.get("name", "") for r in (row.deliveries_json or []))
                        if row is not None
                        else frozenset(),
                    )
                )
            return out

    def run(self, specs: Sequence[SourceSpec], *, source: str | None = None) -> list[Recovered]:
        """Settle every unfinished rotation (of one source, if given); one that fails is
        reported and retried on the next run."""
        by_name = {s.name: s for s in specs}
        outcomes = []
        for item in self.pending():
            if source is not None and item.source != source:
                continue
            action = Action(
                ActionKind.RESUME,
                item.source,
                Reason.INTERRUPTED,
                self._deps.now(),
                item.new_key,
                f"rotation {item.rotation_id} was {item.state.value}",
            )
            try:
                detail = self._settle(by_name.get(item.source), item)
                outcomes.append(Recovered(action, True, detail, item.new_key))
            except Exception as exc:
                if not isinstance(exc, RotatorError):
                    self._deps.log.error(
                        LogEvent.RECOVERY_UNEXPECTED_ERROR, source=item.source, exc_info=exc
                    )
                self._deps.log.error(
                    LogEvent.RECOVERY_FAILED,
                    source=item.source,
                    rotation_id=item.rotation_id,
                    error=describe(exc),
                )
                outcomes.append(Recovered(action, False, describe(exc), None))
        return outcomes

    def _settle(self, spec: SourceSpec | None, item: Interrupted) -> str:
        if item.new_key and item.state in (RotationState.DELIVERED, RotationState.ACTIVE):
            return self._activate(item, "was delivered before an interruption")
        if item.new_key and item.delivery_started:
            if spec is not None and _all_sinks_took_it(spec, item, self._deps):
                return self._activate(item, "every sink took it before an interruption")
            self._close(
                item,
                f"interrupted while delivering; {item.new_key} kept for the sinks that may hold it",
                lambda uow, now: _keep(uow, item.rotation_id, now),
                {"kept": item.new_key, "was": item.state.value},
            )
            return f"kept {item.new_key}: some sinks may hold it; a newer key goes to every sink"
        ids = [item.new_key] if item.new_key else self._valid_keys_of(item.rotation_id)
        authority = self._deps.authority
        self._deps.retrying("invalidate", lambda: authority.invalidate(ids).raise_on_error())
        self._close(
            item,
            f"interrupted while {item.state.value}; compensated",
            lambda uow, now: rows.close_invalidated(uow, item.rotation_id, now),
            {"invalidated": ids, "was": item.state.value},
        )
        return f"compensated: invalidated {', '.join(ids) or 'nothing (no key was created)'}"

    def _activate(self, item: Interrupted, why: str) -> str:
        now = self._deps.now()
        new_key = item.new_key or ""
        with self._deps.write() as uow:
            row = uow.keys.get_by_es_id(new_key)
            if row is None:
                raise StepFailed(f"rotation {item.rotation_id}: key {new_key} is not in the store")
            overlap = rows.stored_overlap(uow.sources.get(item.source))
            rotation = rows.rotation_row(uow, item.rotation_id)
            rows.activate(uow, item.source, row, rotation, now, overlap)
            uow.sources.reset_failures(item.source, now)
            self._deps.audit_in(
                uow,
                AuditAction.KEY_ACTIVATED,
                item.source,
                key_id=new_key,
                rotation_id=item.rotation_id,
                recovered=True,
            )
        return f"activated {new_key}, which {why}"

    def _valid_keys_of(self, rotation_id: str) -> list[str]:
        """Keys a rotation created that are still valid (found by the nonce in their metadata)."""
        authority = self._deps.authority
        found = self._deps.retrying(
            "find keys by rotation id",
            lambda: authority.find_by_metadata("rotation_id", rotation_id, valid_only=True),
        )
        return [k.id for k in found]

    def _close(
        self,
        item: Interrupted,
        note: str,
        settle: Callable[[UnitOfWork, datetime], None],
        details: dict[str, Any],
    ) -> None:
        """Settle the rotation's key row and mark the rotation compensated, then audit it."""
        now = self._deps.now()
        with self._deps.write() as uow:
            settle(uow, now)
            rotation = rows.rotation_row(uow, item.rotation_id)
            rotation.last_error = note
            uow.rotations.advance(rotation, RotationState.COMPENSATED, now)
            self._deps.audit_in(
                uow,
                AuditAction.ROTATION_COMPENSATED,
                item.source,
                rotation_id=item.rotation_id,
                **details,
            )


def _all_sinks_took_it(spec: SourceSpec, item: Interrupted, deps: Deps) -> bool:
    names = {sink.name for sink in deps.sinks(spec)}
    return bool(names) and names <= item.delivered_to


def _keep(uow: UnitOfWork, rotation_id: str, now: datetime) -> None:
    row = uow.keys.for_rotation(rotation_id)
    if row is not None and row.state not in (ApiKeyState.INVALIDATED, ApiKeyState.FAILED):
        rows.keep_partial(uow, row, now)
