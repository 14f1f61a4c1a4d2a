"""The lifecycle executor: applies planned actions through the ports, compensates, records.

Make before break, then collect late: an intent row is committed before Elasticsearch is called,
the new key is verified as itself, delivered to every sink, activated, and only after the overlap
(and the sinks' acknowledgement) is the previous key invalidated. A failure at any step
invalidates the new key and leaves the previous one serving; a crash at any step is resumed or
compensated by :meth:`Lifecycle.recover` on the next run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from rotator.audit import AuditLog
from rotator.clock import Clock
from rotator.errors import RotatorError, VerificationFailed
from rotator.log import get_logger
from rotator.model import (
    Action,
    ActionKind,
    EsStatus,
    Inventory,
    KeyView,
    Reason,
    SourceSpec,
    SourceView,
)
from rotator.planner import backoff_delay, jitter_for, plan, renewal_at
from rotator.ports import Credential, DeliveryReceipt, KeyAuthority, Sink
from rotator.store.models import ApiKey, ApiKeyState, Rotation, RotationState, Source
from rotator.store.repositories import ApiKeyRepository, RotationRepository, SourceRepository

_log = get_logger("rotator.lifecycle")

MANAGED_BY = "rotator"
JOB_KINDS: dict[str, frozenset[ActionKind]] = {
    "provision": frozenset({ActionKind.PROVISION, ActionKind.HOLD, ActionKind.ALERT}),
    "rotate": frozenset(
        {
            ActionKind.ROTATE,
            ActionKind.UPDATE,
            ActionKind.RETIRE,
            ActionKind.RETIRE_SOURCE,
            ActionKind.INVALIDATE_ORPHAN,
            ActionKind.HOLD,
            ActionKind.ALERT,
        }
    ),
}
JOB_KINDS["all"] = JOB_KINDS["provision"] | JOB_KINDS["rotate"]

# Waits between delivery attempts to one sink within a rotation (seconds).
DELIVERY_BACKOFF = (1.0, 2.0)

SinkFactory = Callable[[SourceSpec], Sequence[Sink]]
Checkpoint = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    """What happened to one action."""

    action: Action
    ok: bool
    detail: str = ""
    key_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The outcome for ``--output json``."""
        return {
            **self.action.to_json(),
            "ok": self.ok,
            "result": self.detail,
            "new_key_id": self.key_id,
        }


@dataclass
class RunReport:
    """Everything one run did."""

    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        """The actions that did not succeed."""
        return [o for o in self.outcomes if not o.ok]


class StepFailed(RotatorError):
    """A lifecycle step failed; the new key (if any) has been dealt with."""


def _no_checkpoint(_name: str) -> None:
    return None


class Lifecycle:
    """Keeps one current, verified, delivered key per source."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        authority: KeyAuthority,
        clock: Clock,
        audit: AuditLog,
        sinks: SinkFactory,
        backoff_initial: timedelta = timedelta(minutes=1),
        backoff_max: timedelta = timedelta(hours=1),
        max_parallel: int = 4,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        self._sessions = sessions
        self._authority = authority
        self._clock = clock
        self._audit = audit
        self._sinks = sinks
        self._backoff = (backoff_initial, backoff_max)
        self._max_parallel = max_parallel
        self._checkpoint = checkpoint or _no_checkpoint

    # --- the run ---------------------------------------------------------------------------

    def run(
        self, specs: Sequence[SourceSpec], *, job: str = "all", forced: Iterable[str] = ()
    ) -> RunReport:
        """Recover, gather, plan and execute once; one failing source never stops the others."""
        report = RunReport()
        self.sync_specs(specs)
        report.outcomes.extend(self.recover(specs))
        actions = self.plan(specs, forced=forced)
        wanted = [a for a in actions if a.kind in JOB_KINDS[job]]
        report.outcomes.extend(self.execute(specs, wanted))
        return report

    def plan(self, specs: Sequence[SourceSpec], *, forced: Iterable[str] = ()) -> list[Action]:
        """What is due now (read-only: gathers from the store and Elasticsearch)."""
        now = self._clock.now()
        return plan(specs, self.gather(specs, now, frozenset(forced)), now)

    def sync_specs(self, specs: Sequence[SourceSpec]) -> None:
        """Record each source's desired state; a changed spec resets its failures."""
        now = self._clock.now()
        with self._sessions.begin() as session:
            repo = SourceRepository(session)
            for spec in specs:
                before = repo.get(spec.name)
                old_fp = before.spec_fingerprint if before is not None else None
                source = repo.upsert_spec(spec.name, spec.snapshot(), now)
                if old_fp is not None and old_fp != source.spec_fingerprint:
                    repo.reset_failures(spec.name, now)

    # --- gather ----------------------------------------------------------------------------

    def gather(
        self, specs: Sequence[SourceSpec], now: datetime, forced: frozenset[str] = frozenset()
    ) -> Inventory:
        """Build the planner's view: store rows plus what Elasticsearch says about them."""
        with self._sessions() as session:
            sources = SourceRepository(session).list_sources(include_retired=True)
            live = (
                session.query(ApiKey)
                .filter(ApiKey.state.in_([ApiKeyState.ACTIVE, ApiKeyState.RETIRING]))
                .all()
            )
            unfinished = RotationRepository(session).unfinished()
            known_ids = {k for (k,) in session.query(ApiKey.es_id) if k is not None}
            rotation_ids = {r for (r,) in session.query(Rotation.id)}
            views = [_source_view(s) for s in sources]
            pending = tuple((r.source_name, r.id) for r in unfinished)
            rows = [(k.es_id, _key_view_parts(k)) for k in live if k.es_id]
        statuses = self._es_statuses([es_id for es_id, _ in rows if es_id], now)
        keys = tuple(
            KeyView(**parts, es_status=statuses.get(es_id, EsStatus.MISSING))
            for es_id, parts in rows
        )
        orphans = self._orphans(known_ids, rotation_ids)
        return Inventory(tuple(views), keys, pending, orphans, forced)

    def _es_statuses(self, ids: list[str], now: datetime) -> dict[str, EsStatus]:
        found = self._authority.get(ids) if ids else {}
        statuses = {}
        for es_id in ids:
            info = found.get(es_id)
            if info is None:
                statuses[es_id] = EsStatus.MISSING
            elif info.invalidated:
                statuses[es_id] = EsStatus.INVALIDATED
            elif info.expiration is not None and info.expiration <= now:
                statuses[es_id] = EsStatus.EXPIRED
            else:
                statuses[es_id] = EsStatus.VALID
        return statuses

    def _orphans(self, known_ids: set[str], rotation_ids: set[str]) -> tuple[str, ...]:
        """Valid rotator keys this store started but never recorded (their secret is lost).

        Keys from rotations this store does not know are left alone: another store (or a lost
        one) may have delivered them, and invalidating them could cut a shipper off.
        """
        found = self._authority.find_by_metadata("managed_by", MANAGED_BY, valid_only=True)
        return tuple(
            sorted(
                k.id
                for k in found
                if not k.invalidated
                and k.id not in known_ids
                and k.metadata.get("rotation_id") in rotation_ids
            )
        )

    # --- execute ---------------------------------------------------------------------------

    def execute(self, specs: Sequence[SourceSpec], actions: Sequence[Action]) -> list[Outcome]:
        """Run the actions: sources in parallel (bounded), each source's actions in order."""
        by_spec = {s.name: s for s in specs}
        groups: dict[str, list[Action]] = defaultdict(list)
        for action in actions:
            groups[action.source].append(action)
        if not groups:
            return []
        with ThreadPoolExecutor(max_workers=self._max_parallel) as pool:
            results = pool.map(lambda g: self._run_group(by_spec, g), groups.values())
            return [outcome for group in results for outcome in group]

    def _run_group(self, specs: dict[str, SourceSpec], actions: list[Action]) -> list[Outcome]:
        return [self._run_action(specs.get(a.source), a) for a in actions]

    def _run_action(self, spec: SourceSpec | None, action: Action) -> Outcome:
        log = _log.bind(source=action.source, action=action.kind.value, reason=action.reason.value)
        try:
            detail, key_id = self._dispatch(spec, action)
        except RotatorError as exc:
            log.error("action failed", error=exc.message, key_id=action.key_id)
            return Outcome(action, False, exc.message)
        except Exception as exc:
            log.exception("action failed unexpectedly", key_id=action.key_id)
            return Outcome(action, False, f"unexpected {type(exc).__name__}")
        log.info(detail, key_id=action.key_id, new_key_id=key_id)
        return Outcome(action, True, detail, key_id)

    def _dispatch(self, spec: SourceSpec | None, action: Action) -> tuple[str, str | None]:
        kind = action.kind
        if kind in (ActionKind.PROVISION, ActionKind.ROTATE):
            return self._replace(_need(spec, action), action)
        if kind is ActionKind.UPDATE:
            return self._update(_need(spec, action), action), None
        if kind is ActionKind.RETIRE:
            return self._retire(spec, action), None
        if kind is ActionKind.RETIRE_SOURCE:
            return self._retire_source(action), None
        if kind is ActionKind.INVALIDATE_ORPHAN:
            return self._invalidate_orphan(action), None
        if kind is ActionKind.ALERT:
            _log.error(
                "key expires soon and rotation keeps failing",
                source=action.source,
                key_id=action.key_id,
                detail=action.detail,
                action="alert",
            )
            return "alerted", None
        if kind is ActionKind.HOLD:
            return f"backing off: {action.detail}", None
        return "resumed at the start of the run", None

    # --- replacing a key -------------------------------------------------------------------

    def _replace(self, spec: SourceSpec, action: Action) -> tuple[str, str]:
        rotation_id, row_id, name, generation = self._begin(spec, action)
        self._checkpoint("intent-recorded")
        credential = self._create(spec, rotation_id, row_id, name, generation)
        self._checkpoint("key-created")
        self._record_created(spec, rotation_id, row_id, credential)
        self._checkpoint("key-recorded")
        self._guarded(
            spec,
            rotation_id,
            row_id,
            credential,
            self._verify,
            ApiKeyState.VERIFIED,
            RotationState.VERIFIED,
        )
        self._checkpoint("key-verified")
        self._guarded(
            spec,
            rotation_id,
            row_id,
            credential,
            lambda s, c: self._deliver(s, c, row_id),
            ApiKeyState.DELIVERED,
            RotationState.DELIVERED,
        )
        self._checkpoint("key-delivered")
        self._activate(spec, rotation_id, row_id)
        self._checkpoint("key-activated")
        verb = "provisioned" if action.kind is ActionKind.PROVISION else "rotated"
        return f"{verb}: {credential.id} verified, delivered and active", credential.id

    def _begin(self, spec: SourceSpec, action: Action) -> tuple[str, int, str, int]:
        now = self._clock.now()
        with self._sessions.begin() as session:
            generation = SourceRepository(session).bump_generation(spec.name, now)
            rotation = RotationRepository(session).start(
                spec.name, action.reason.value, now, previous_key_es_id=action.key_id
            )
            name = f"rotator-{spec.name}-{generation}"
            row = ApiKeyRepository(session).add(
                ApiKey(
                    name=name,
                    source_name=spec.name,
                    generation=generation,
                    state=ApiKeyState.PLANNED,
                    rotation_id=rotation.id,
                    planned_at=now,
                    updated_at=now,
                    config_fingerprint=spec.privileges_fingerprint,
                    policy_fingerprint=spec.policy_fingerprint,
                )
            )
            ApiKeyRepository(session).transition(row, ApiKeyState.CREATING, now)
            RotationRepository(session).advance(rotation, RotationState.CREATING, now)
            ids = rotation.id, row.id
        self._audit.record(
            now=now,
            action="rotation.started",
            subject=spec.name,
            outcome="success",
            details={
                "rotation_id": ids[0],
                "reason": action.reason.value,
                "previous_key_id": action.key_id,
                "key_name": name,
                "justification": spec.justification,
            },
        )
        return ids[0], ids[1], name, generation

    def _create(
        self, spec: SourceSpec, rotation_id: str, row_id: int, name: str, generation: int
    ) -> Credential:
        metadata = {
            **spec.key_metadata,
            "managed_by": MANAGED_BY,
            "source": spec.name,
            "generation": generation,
            "rotation_id": rotation_id,
            "config_fingerprint": spec.privileges_fingerprint,
        }
        try:
            return self._authority.create(
                name, int(spec.lifetime.total_seconds()), spec.role_descriptors, metadata
            )
        except RotatorError as exc:
            # The key may exist even though the answer was lost: the rotation stays unfinished,
            # so the next run looks it up by its rotation id and invalidates it.
            self._failed(
                spec, rotation_id, row_id, f"create: {exc.message}", resolution="unresolved"
            )
            raise StepFailed(f"creating the key failed: {exc.message}") from None

    def _record_created(
        self, spec: SourceSpec, rotation_id: str, row_id: int, credential: Credential
    ) -> None:
        now = self._clock.now()
        expires = credential.expiration or now + spec.lifetime
        renewal = renewal_at(expires, spec.rotate_before, spec.jitter, credential.id)
        with self._sessions.begin() as session:
            row = _row(session, row_id)
            ApiKeyRepository(session).record_created(
                row,
                es_id=credential.id,
                expires_at=expires,
                renewal_at=renewal,
                secret_fingerprint=credential.fingerprint,
                now=now,
                jitter_seconds=int(jitter_for(spec.jitter, credential.id).total_seconds()),
            )
            RotationRepository(session).advance(
                _rotation(session, rotation_id),
                RotationState.CREATED,
                now,
                new_key_es_id=credential.id,
            )

    def _guarded(
        self,
        spec: SourceSpec,
        rotation_id: str,
        row_id: int,
        credential: Credential,
        step: Callable[[SourceSpec, Credential], None],
        key_state: ApiKeyState,
        rotation_state: RotationState,
    ) -> None:
        """Run a step; on failure invalidate the new key and record the failure."""
        try:
            step(spec, credential)
        except RotatorError as exc:
            if self._reached_a_sink(row_id):
                self._failed(spec, rotation_id, row_id, exc.message, resolution="kept")
            else:
                self._compensate(spec, rotation_id, row_id, credential.id, exc.message)
            raise StepFailed(exc.message) from None
        now = self._clock.now()
        with self._sessions.begin() as session:
            ApiKeyRepository(session).transition(_row(session, row_id), key_state, now)
            RotationRepository(session).advance(
                _rotation(session, rotation_id), rotation_state, now
            )

    def _verify(self, spec: SourceSpec, credential: Credential) -> None:
        checks = spec.verification
        answer = self._authority.check_privileges(credential, checks.request_body())
        wrong = checks.mismatches(answer)
        if wrong:
            raise VerificationFailed(
                f"new key {credential.id} failed verification: " + "; ".join(wrong)
            )
        self._audit.record(
            now=self._clock.now(),
            action="key.verified",
            subject=spec.name,
            outcome="success",
            details={"key_id": credential.id},
        )

    def _deliver(self, spec: SourceSpec, credential: Credential, row_id: int) -> None:
        for position, sink in enumerate(self._sinks(spec)):
            receipt = self._deliver_to(sink, credential)
            if position == 0:
                self._mark_reached_a_sink(row_id)
            self._checkpoint("sink-delivered")
            self._audit.record(
                now=self._clock.now(),
                action="key.delivered",
                subject=spec.name,
                outcome="success",
                details={"key_id": credential.id, "sink": receipt.sink, "target": receipt.target},
            )

    def _deliver_to(self, sink: Sink, credential: Credential) -> DeliveryReceipt:
        """Deliver to one sink, retrying a retryable failure with a short backoff."""
        waits = list(DELIVERY_BACKOFF)
        while True:
            try:
                return sink.deliver(credential)
            except RotatorError as exc:
                if not waits or not exc.retryable:
                    raise
                wait = waits.pop(0)
                _log.warning(
                    "delivery failed; retrying",
                    sink=sink.name,
                    error=exc.message,
                    retry_in_s=wait,
                )
                self._clock.sleep(wait)

    def _mark_reached_a_sink(self, row_id: int) -> None:
        """Stamp ``delivered_at`` at the first sink: from then on a consumer may hold the key."""
        with self._sessions.begin() as session:
            _row(session, row_id).delivered_at = self._clock.now()

    def _activate(self, spec: SourceSpec, rotation_id: str, row_id: int) -> None:
        now = self._clock.now()
        with self._sessions.begin() as session:
            retired = _activate_rows(
                session,
                spec.name,
                _row(session, row_id),
                _rotation(session, rotation_id),
                now,
                spec.overlap,
            )
            SourceRepository(session).reset_failures(spec.name, now)
            key_id = _row(session, row_id).es_id
        self._audit.record(
            now=now,
            action="key.activated",
            subject=spec.name,
            outcome="success",
            details={
                "key_id": key_id,
                "rotation_id": rotation_id,
                "retiring": retired,
                "retire_at": (now + spec.overlap).isoformat(),
            },
        )

    # --- failures --------------------------------------------------------------------------

    def _reached_a_sink(self, row_id: int) -> bool:
        with self._sessions() as session:
            return _row(session, row_id).delivered_at is not None

    def _compensate(
        self, spec: SourceSpec, rotation_id: str, row_id: int, es_id: str, error: str
    ) -> None:
        try:
            self._authority.invalidate([es_id])
            resolution = "invalidated"
        except RotatorError as exc:
            error = f"{error}; invalidating the new key failed too: {exc.message}"
            resolution = "unresolved"
        self._failed(spec, rotation_id, row_id, error, resolution=resolution)

    def _failed(
        self, spec: SourceSpec, rotation_id: str, row_id: int, error: str, *, resolution: str
    ) -> None:
        """Record a failed rotation and back the source off.

        ``resolution`` says what became of the new key: ``invalidated`` (compensated),
        ``unresolved`` (the rotation stays open for the next run's recovery), or ``kept`` (some
        sinks already took it: it stays valid for them until a newer key supersedes it).
        """
        now = self._clock.now()
        with self._sessions.begin() as session:
            sources = SourceRepository(session)
            failures = sources.require(spec.name).failure_count + 1
            retry_at = now + backoff_delay(failures, *self._backoff)
            sources.record_failure(spec.name, error, now=now, next_attempt_at=retry_at)
            _resolve_failed_rows(session, row_id, rotation_id, error, resolution, now)
        _log.error(
            "rotation failed; the previous key keeps serving",
            source=spec.name,
            error=error,
            next_attempt_at=retry_at.isoformat(),
            failures=failures,
            new_key=resolution,
            action="rotation.failed",
        )
        self._audit.record(
            now=now,
            action="rotation.failed",
            subject=spec.name,
            outcome="failure",
            details={
                "rotation_id": rotation_id,
                "error": error,
                "new_key": resolution,
                "next_attempt_at": retry_at.isoformat(),
            },
        )

    # --- other actions ---------------------------------------------------------------------

    def _update(self, spec: SourceSpec, action: Action) -> str:
        key_id = action.key_id or ""
        self._authority.update(key_id, spec.role_descriptors)
        stored = self._authority.get([key_id]).get(key_id)
        wanted = spec.role_descriptors
        if stored is None or _normalized(stored.role_descriptors) != _normalized(wanted):
            raise VerificationFailed(f"key {key_id} does not show the updated privileges")
        now = self._clock.now()
        with self._sessions.begin() as session:
            row = ApiKeyRepository(session).get_by_es_id(key_id)
            if row is not None:
                row.config_fingerprint = spec.privileges_fingerprint
                row.updated_at = now
        self._audit.record(
            now=now,
            action="key.updated",
            subject=spec.name,
            outcome="success",
            details={"key_id": key_id, "role_descriptors": wanted},
        )
        return f"updated the privileges of {key_id} in place"

    def _retire(self, spec: SourceSpec | None, action: Action) -> str:
        key_id = action.key_id or ""
        if spec is not None:
            current = self._current_view(spec)
            waiting = [s.name for s in self._sinks(spec) if current and not s.acknowledge(current)]
            if waiting:
                return f"kept {key_id}: waiting for {', '.join(waiting)} to acknowledge the new key"
        self._authority.invalidate([key_id])
        now = self._clock.now()
        with self._sessions.begin() as session:
            row = ApiKeyRepository(session).get_by_es_id(key_id)
            if row is not None and row.state is not ApiKeyState.INVALIDATED:
                ApiKeyRepository(session).transition(row, ApiKeyState.INVALIDATED, now)
        self._audit.record(
            now=now,
            action="key.invalidated",
            subject=action.source,
            outcome="success",
            details={"key_id": key_id, "reason": action.reason.value},
        )
        return f"invalidated {key_id} after its overlap"

    def _current_view(self, spec: SourceSpec) -> Credential | None:
        """The source's current key as an acknowledgement sees it: ids only, never a secret."""
        with self._sessions() as session:
            row = ApiKeyRepository(session).current_for_source(spec.name)
            if row is None or row.es_id is None:
                return None
            return Credential(
                id=row.es_id,
                name=row.name,
                api_key="",
                encoded="",
                source=spec.name,
                expiration=row.expires_at,
            )

    def _retire_source(self, action: Action) -> str:
        now = self._clock.now()
        with self._sessions.begin() as session:
            source = SourceRepository(session).get(action.source)
            overlap = _stored_overlap(source)
            row = ApiKeyRepository(session).get_by_es_id(action.key_id or "")
            if row is not None:
                ApiKeyRepository(session).schedule_retirement(row, retire_at=now + overlap, now=now)
            if source is not None and source.retired_at is None:
                source.retired_at = now
        self._audit.record(
            now=now,
            action="source.removed",
            subject=action.source,
            outcome="success",
            details={"key_id": action.key_id, "retire_at": (now + overlap).isoformat()},
        )
        return (
            f"source removed: {action.key_id} will be invalidated at {(now + overlap).isoformat()}"
        )

    def _invalidate_orphan(self, action: Action) -> str:
        key_id = action.key_id or ""
        self._authority.invalidate([key_id])
        self._audit.record(
            now=self._clock.now(),
            action="key.invalidated",
            subject="-",
            outcome="success",
            details={"key_id": key_id, "reason": "orphaned"},
        )
        return f"invalidated untracked key {key_id} (its secret was never delivered)"

    # --- recovery --------------------------------------------------------------------------

    def recover(self, specs: Sequence[SourceSpec]) -> list[Outcome]:
        """Resume or compensate every rotation a crash or a lost answer left unfinished."""
        with self._sessions() as session:
            pending = [
                (r.id, r.source_name, r.state, r.new_key_es_id)
                for r in RotationRepository(session).unfinished()
            ]
        by_name = {s.name: s for s in specs}
        outcomes = []
        for rotation_id, source, state, new_key in pending:
            action = Action(
                ActionKind.RESUME,
                source,
                Reason.INTERRUPTED,
                self._clock.now(),
                new_key,
                f"rotation {rotation_id} was {state.value}",
            )
            try:
                detail = self._recover_one(by_name.get(source), rotation_id, source, state, new_key)
                outcomes.append(Outcome(action, True, detail, new_key))
            except RotatorError as exc:
                _log.error(
                    "recovery failed", source=source, rotation_id=rotation_id, error=exc.message
                )
                outcomes.append(Outcome(action, False, exc.message))
        return outcomes

    def _partially_delivered(self, es_id: str) -> bool:
        with self._sessions() as session:
            row = ApiKeyRepository(session).get_by_es_id(es_id)
            return (
                row is not None
                and row.delivered_at is not None
                and row.state in (ApiKeyState.CREATED, ApiKeyState.VERIFIED, ApiKeyState.FAILED)
            )

    def _recover_one(
        self,
        spec: SourceSpec | None,
        rotation_id: str,
        source: str,
        state: RotationState,
        new_key: str | None,
    ) -> str:
        if state in (RotationState.DELIVERED, RotationState.ACTIVE) and new_key:
            overlap = spec.overlap if spec is not None else timedelta(hours=24)
            now = self._clock.now()
            with self._sessions.begin() as session:
                row = ApiKeyRepository(session).get_by_es_id(new_key)
                if row is None:
                    raise StepFailed(f"rotation {rotation_id}: key {new_key} is not in the store")
                _activate_rows(session, source, row, _rotation(session, rotation_id), now, overlap)
            self._audit.record(
                now=now,
                action="key.activated",
                subject=source,
                outcome="success",
                details={"key_id": new_key, "rotation_id": rotation_id, "recovered": True},
            )
            return f"activated {new_key}, which was delivered before an interruption"
        if new_key and self._partially_delivered(new_key):
            self._close_compensated(
                source,
                rotation_id,
                f"interrupted while delivering; {new_key} kept for its sinks",
                lambda session, now: _keep_rows(session, new_key, now),
                {"kept": new_key, "was": state.value},
            )
            return f"kept {new_key}: some sinks took it before the interruption"
        ids = [new_key] if new_key else self._valid_keys_of(rotation_id)
        self._authority.invalidate(ids)
        self._close_compensated(
            source,
            rotation_id,
            f"interrupted while {state.value}; compensated",
            lambda session, now: _close_rows(session, rotation_id, now),
            {"invalidated": ids, "was": state.value},
        )
        return f"compensated: invalidated {', '.join(ids) or 'nothing (no key was created)'}"

    def _valid_keys_of(self, rotation_id: str) -> list[str]:
        """Keys a rotation created that are still valid (found by the nonce in their metadata)."""
        found = self._authority.find_by_metadata("rotation_id", rotation_id, valid_only=True)
        return [k.id for k in found]

    def _close_compensated(
        self,
        source: str,
        rotation_id: str,
        note: str,
        rows: Callable[[Session, datetime], None],
        details: dict[str, Any],
    ) -> None:
        """Settle the rotation's key rows and mark it compensated, then audit it."""
        now = self._clock.now()
        with self._sessions.begin() as session:
            rows(session, now)
            rotation = _rotation(session, rotation_id)
            rotation.last_error = note
            RotationRepository(session).advance(rotation, RotationState.COMPENSATED, now)
        self._audit.record(
            now=now,
            action="rotation.compensated",
            subject=source,
            outcome="success",
            details={"rotation_id": rotation_id, **details},
        )


# --- helpers -------------------------------------------------------------------------------------


def _need(spec: SourceSpec | None, action: Action) -> SourceSpec:
    if spec is None:
        raise StepFailed(f"source {action.source} is not configured")
    return spec


def _row(session: Session, row_id: int) -> ApiKey:
    row = session.get(ApiKey, row_id)
    if row is None:
        raise StepFailed(f"api key row {row_id} vanished from the store")
    return row


def _rotation(session: Session, rotation_id: str) -> Rotation:
    rotation = RotationRepository(session).get(rotation_id)
    if rotation is None:
        raise StepFailed(f"rotation {rotation_id} vanished from the store")
    return rotation


def _activate_rows(
    session: Session,
    source: str,
    row: ApiKey,
    rotation: Rotation,
    now: datetime,
    overlap: timedelta,
) -> list[str]:
    """Make ``row`` the current key; every other active key of the source starts retiring."""
    keys = ApiKeyRepository(session)
    retiring = []
    for old in keys.for_source(source, states=[ApiKeyState.ACTIVE]):
        if old.id != row.id:
            keys.schedule_retirement(old, retire_at=now + overlap, now=now)
            retiring.append(old.es_id or "")
    for partial in keys.for_source(source, states=[ApiKeyState.RETIRING]):
        # A key only some sinks took is superseded now: it retires with the others.
        if partial.retire_at is None or partial.retire_at > now + overlap:
            partial.retire_at = now + overlap
            retiring.append(partial.es_id or "")
    if row.state is ApiKeyState.DELIVERED:
        keys.transition(row, ApiKeyState.ACTIVE, now)
    RotationRepository(session).advance(rotation, RotationState.COMPLETED, now)
    return retiring


def _resolve_failed_rows(
    session: Session, row_id: int, rotation_id: str, error: str, resolution: str, now: datetime
) -> None:
    keys, row, rotation = (
        ApiKeyRepository(session),
        _row(session, row_id),
        _rotation(session, rotation_id),
    )
    rotations = RotationRepository(session)
    if resolution == "kept":
        _keep_partial(session, row, now)
    else:
        keys.transition(row, ApiKeyState.FAILED, now)
    if resolution == "unresolved":
        rotations.fail(rotation, error, now=now, next_attempt_at=None)
        return
    if resolution == "invalidated":
        keys.transition(row, ApiKeyState.INVALIDATED, now)
    rotation.last_error = error[:2000]
    rotations.advance(rotation, RotationState.COMPENSATED, now)


def _keep_partial(session: Session, row: ApiKey, now: datetime) -> None:
    """A key some sinks took: it serves them until a newer key supersedes it (or it expires)."""
    keys = ApiKeyRepository(session)
    if row.state is not ApiKeyState.DELIVERED:
        keys.transition(row, ApiKeyState.DELIVERED, now)
    keys.transition(row, ApiKeyState.RETIRING, now)
    row.retire_at = row.expires_at or now


def _keep_rows(session: Session, es_id: str, now: datetime) -> None:
    row = ApiKeyRepository(session).get_by_es_id(es_id)
    if row is not None:
        _keep_partial(session, row, now)


def _close_rows(session: Session, rotation_id: str, now: datetime) -> None:
    for row in session.query(ApiKey).filter(ApiKey.rotation_id == rotation_id):
        _close_row(session, row, now)


def _close_row(session: Session, row: ApiKey, now: datetime) -> None:
    keys = ApiKeyRepository(session)
    if row.state in (ApiKeyState.INVALIDATED,):
        return
    if row.state is not ApiKeyState.FAILED:
        keys.transition(row, ApiKeyState.FAILED, now)
    keys.transition(row, ApiKeyState.INVALIDATED, now)


def _source_view(source: Source) -> SourceView:
    return SourceView(
        source.name, source.failure_count, source.next_attempt_at, _stored_overlap(source)
    )


def _stored_overlap(source: Source | None) -> timedelta:
    seconds = (source.spec_json or {}).get("overlap_s") if source is not None else None
    return timedelta(seconds=float(seconds)) if seconds else timedelta(hours=24)


def _key_view_parts(row: ApiKey) -> dict[str, Any]:
    created = row.created_at or row.planned_at
    return {
        "es_id": row.es_id,
        "source": row.source_name or "",
        "generation": row.generation,
        "state": row.state,
        "created_at": created,
        "expires_at": row.expires_at or created,
        "renewal_at": row.renewal_at or created,
        "privileges_fingerprint": row.config_fingerprint or "",
        "policy_fingerprint": row.policy_fingerprint or "",
        "delivered_at": row.delivered_at,
        "retire_at": row.retire_at,
    }


def _normalized(descriptors: Any) -> dict[str, Any]:
    out = {}
    for name, body in dict(descriptors or {}).items():
        indices = body.get("indices") or body.get("index") or []
        out[name] = {
            "cluster": sorted(body.get("cluster") or []),
            "indices": sorted(
                (tuple(sorted(i.get("names", []))), tuple(sorted(i.get("privileges", []))))
                for i in indices
            ),
        }
    return out
