"""The rotation pipeline: begin, create, verify, deliver, activate, and compensate on failure.

Make before break: an intent row is committed before Elasticsearch is called, the new key is
verified as itself, delivery is recorded as started before the first sink is called and each
sink's receipt right after it returns, then the key is activated. Any failure after the key was
created settles it: invalidated when no sink took it, kept for the sinks that did otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rotator.errors import RotatorError, VerificationFailed
from rotator.jobs import rows
from rotator.jobs.context import CREATE_WAITS, Deps, describe
from rotator.jobs.rows import StepFailed
from rotator.log import secrets_in_flight
from rotator.model import MANAGED_BY, Action, ActionKind, Reason, SourceSpec, iso
from rotator.notify import Notice, NoticeKind, Severity
from rotator.planner import jitter_for, renewal_at
from rotator.ports import Credential, DeliveryReceipt, Sink, UnitOfWork
from rotator.scoping import VerificationSet
from rotator.store.models import ApiKey, ApiKeyState, RotationState
from rotator.vocabulary import AuditAction, AuditOutcome, LogEvent

# Waits between delivery attempts to one sink within a rotation (seconds).
DELIVERY_BACKOFF = (1.0, 2.0)


@dataclass
class Attempt:
    """One rotation in flight: its ids, the credential once created, and the sinks that took it."""

    spec: SourceSpec
    rotation_id: str
    row_id: int
    name: str
    generation: int
    credential: Credential | None = None
    receipts: list[DeliveryReceipt] = field(default_factory=list)


class RotationPipeline:
    """Replaces one source's key, verifying and delivering the new one before it is current."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    def replace(self, spec: SourceSpec, action: Action) -> tuple[str, str]:
        """Provision or rotate; returns (what happened, the new key's id).

        Raises:
            StepFailed: the rotation failed and has been settled (the old key keeps serving).
        """
        # One session for every step: the rows the first step loads are not read again.
        with self._deps.store.held():
            return self._replace(spec, action)

    def _replace(self, spec: SourceSpec, action: Action) -> tuple[str, str]:
        cp = self._deps.checkpoint
        if action.reason is Reason.DRIFTED:
            self._audit_drift(spec, action)
        attempt = self._begin(spec, action)
        cp("intent-recorded")
        credential = attempt.credential = self._create(attempt)
        cp("key-created")
        # The secret is redacted from every log line while rotator holds it, and forgotten after.
        with secrets_in_flight(credential.api_key, credential.encoded):
            try:
                self._record_created(attempt, credential)
                cp("key-recorded")
                self._verify(attempt, credential)
                cp("key-verified")
                self._deliver(attempt, credential)
                cp("key-delivered")
                self._activate(attempt)
                cp("key-activated")
            except Exception as exc:
                raise StepFailed(self._settle_failure(attempt, exc)) from None
        verb = "provisioned" if action.kind is ActionKind.PROVISION else "rotated"
        return f"{verb}: {credential.id} verified, delivered and active", credential.id

    # --- steps -----------------------------------------------------------------------------

    def _audit_drift(self, spec: SourceSpec, action: Action) -> None:
        self._deps.log.warning(
            LogEvent.KEY_DRIFTED, source=spec.name, key_id=action.key_id, detail=action.detail
        )
        with self._deps.write() as uow:
            self._deps.audit_in(
                uow,
                AuditAction.KEY_DRIFTED,
                spec.name,
                AuditOutcome.WARNING,
                key_id=action.key_id,
                detail=action.detail,
            )

    def _begin(self, spec: SourceSpec, action: Action) -> Attempt:
        now = self._deps.now()
        with self._deps.write() as uow:
            generation = uow.sources.bump_generation(spec.name, now)
            # Planned and at once creating: the rows are written in the state they leave this
            # transaction in (one INSERT each, no UPDATE behind it).
            rotation = uow.rotations.start(
                spec.name,
                action.reason.value,
                now,
                previous_key_es_id=action.key_id,
                state=RotationState.CREATING,
            )
            name = f"rotator-{spec.name}-{generation}"
            row = uow.keys.add(
                ApiKey(
                    name=name,
                    source_name=spec.name,
                    generation=generation,
                    state=ApiKeyState.CREATING,
                    rotation_id=rotation.id,
                    planned_at=now,
                    updated_at=now,
                    config_fingerprint=spec.privileges_fingerprint,
                    policy_fingerprint=spec.policy_fingerprint,
                )
            )
            attempt = Attempt(spec, rotation.id, row.id, name, generation)
            self._deps.audit_in(
                uow,
                AuditAction.ROTATION_STARTED,
                spec.name,
                rotation_id=attempt.rotation_id,
                reason=action.reason.value,
                previous_key_id=action.key_id,
                key_name=name,
                justification=spec.justification,
            )
        return attempt

    def _create(self, attempt: Attempt) -> Credential:
        """Create the key; a lost answer is reconciled by the rotation id, never re-sent blindly.

        Raises:
            StepFailed: every attempt failed (the rotation is settled or left for recovery).
        """
        waits = list(CREATE_WAITS)
        while True:
            try:
                return self._create_once(attempt)
            except Exception as exc:
                retry = isinstance(exc, RotatorError) and exc.retryable and bool(waits)
                settled = self._reconcile_lost_create(attempt)
                if retry and settled:
                    wait = waits.pop(0)
                    self._deps.log.warning(
                        LogEvent.KEY_CREATE_RETRIED,
                        source=attempt.spec.name,
                        error=describe(exc),
                        retry_in_s=wait,
                    )
                    self._deps.clock.sleep(wait)
                    continue
                self._fail_create(attempt, exc, settled)
                raise StepFailed(f"creating the key failed: {describe(exc)}") from None

    def _create_once(self, attempt: Attempt) -> Credential:
        spec = attempt.spec
        metadata = {
            **spec.key_metadata,
            "managed_by": MANAGED_BY,
            "source": spec.name,
            "generation": attempt.generation,
            "rotation_id": attempt.rotation_id,
            "config_fingerprint": spec.privileges_fingerprint,
        }
        return self._deps.authority.create(
            attempt.name, int(spec.lifetime.total_seconds()), spec.role_descriptors, metadata
        )

    def _reconcile_lost_create(self, attempt: Attempt) -> bool:
        """Invalidate any key the failed call made after all; True when none is left valid."""
        authority = self._deps.authority
        try:
            found = self._deps.retrying(
                "find keys by rotation id",
                lambda: authority.find_by_metadata(
                    "rotation_id", attempt.rotation_id, valid_only=True
                ),
            )
            ids = [k.id for k in found]
            if ids:
                self._deps.retrying(
                    "invalidate", lambda: authority.invalidate(ids).raise_on_error()
                )
                self._deps.log.warning(
                    LogEvent.LOST_KEY_INVALIDATED, source=attempt.spec.name, key_ids=ids
                )
        except RotatorError:
            return False
        return True

    def _fail_create(self, attempt: Attempt, exc: Exception, settled: bool) -> None:
        if not isinstance(exc, RotatorError):
            self._deps.log.error(
                LogEvent.KEY_CREATE_UNEXPECTED_ERROR, source=attempt.spec.name, exc_info=exc
            )
        # Unsettled, the rotation stays open: the next run looks the key up by its rotation id.
        resolution = "invalidated" if settled else "unresolved"
        self._failed(attempt, f"create: {describe(exc)}", resolution)

    def _record_created(self, attempt: Attempt, credential: Credential) -> None:
        spec = attempt.spec
        now = self._deps.now()
        expires = credential.expiration or now + spec.lifetime
        renewal = renewal_at(expires, spec.rotate_before, spec.jitter, credential.id)
        with self._deps.write() as uow:
            uow.keys.record_created(
                rows.key_row(uow, attempt.row_id),
                es_id=credential.id,
                expires_at=expires,
                renewal_at=renewal,
                secret_fingerprint=credential.fingerprint,
                now=now,
                jitter_seconds=int(jitter_for(spec.jitter, credential.id).total_seconds()),
            )
            uow.rotations.advance(
                rows.rotation_row(uow, attempt.rotation_id),
                RotationState.CREATED,
                now,
                new_key_es_id=credential.id,
            )

    def _advance(
        self, uow: UnitOfWork, attempt: Attempt, key: ApiKeyState, rotation: RotationState
    ) -> None:
        now = self._deps.now()
        uow.keys.transition(rows.key_row(uow, attempt.row_id), key, now)
        uow.rotations.advance(rows.rotation_row(uow, attempt.rotation_id), rotation, now)

    def _verify(self, attempt: Attempt, credential: Credential) -> None:
        spec = attempt.spec
        checks = spec.verification
        authority = self._deps.authority
        answer = self._deps.retrying(
            "check the new key's privileges",
            lambda: authority.check_privileges(credential, checks.request_body()),
        )
        wrong = checks.mismatches(answer)
        if wrong:
            raise VerificationFailed(
                f"new key {credential.id} failed verification: "
                + "; ".join(wrong)
                + owner_lacks(self._deps, checks)
            )
        # Verified, and delivery starts: the sinks are called right after this commits, so a
        # recovery that finds it asks the sinks what they hold before undoing anything.
        with self._deps.write() as uow:
            self._advance(uow, attempt, ApiKeyState.VERIFIED, RotationState.VERIFIED)
            uow.keys.mark_delivery_started(rows.key_row(uow, attempt.row_id), self._deps.now())
            self._deps.audit_in(uow, AuditAction.KEY_VERIFIED, spec.name, key_id=credential.id)

    def _deliver(self, attempt: Attempt, credential: Credential) -> None:
        """Each sink's receipt is committed as soon as it returns; the activation that follows
        records the key delivered to all of them in the same transaction that makes it current."""
        for sink in self._deps.sinks(attempt.spec):
            receipt = self._deliver_to(sink, credential)
            attempt.receipts.append(receipt)
            self._deps.checkpoint("sink-returned")
            self._record_receipt(attempt, sink.name, receipt)
            self._deps.checkpoint("sink-delivered")

    def _record_receipt(self, attempt: Attempt, sink: str, receipt: DeliveryReceipt) -> None:
        now = self._deps.now()
        entry = receipt_entry(sink, receipt, now.isoformat())
        with self._deps.write() as uow:
            uow.keys.add_receipt(rows.key_row(uow, attempt.row_id), entry, now)
            self._deps.audit_in(
                uow,
                AuditAction.KEY_DELIVERED,
                attempt.spec.name,
                key_id=attempt.credential.id if attempt.credential else None,
                sink=receipt.sink,
                target=receipt.target,
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
                self._deps.log.warning(
                    LogEvent.DELIVERY_RETRIED, sink=sink.name, error=exc.message, retry_in_s=wait
                )
                self._deps.clock.sleep(wait)

    def _activate(self, attempt: Attempt) -> None:
        spec = attempt.spec
        now = self._deps.now()
        with self._deps.write() as uow:
            row = rows.key_row(uow, attempt.row_id)
            retired = rows.activate(
                uow,
                spec.name,
                row,
                rows.rotation_row(uow, attempt.rotation_id),
                now,
                spec.overlap,
            )
            uow.sources.reset_failures(spec.name, now)
            self._deps.audit_in(
                uow,
                AuditAction.KEY_ACTIVATED,
                spec.name,
                key_id=row.es_id,
                rotation_id=attempt.rotation_id,
                retiring=retired,
                retire_at=iso(now + spec.overlap),
            )

    # --- failures --------------------------------------------------------------------------

    def _settle_failure(self, attempt: Attempt, exc: Exception) -> str:
        """After creation, whatever failed: keep the key for sinks that took it, else undo it.

        Returns the whole story in one line (what failed, and what became of the new key).
        """
        if not isinstance(exc, RotatorError):
            self._deps.log.error(
                LogEvent.ROTATION_UNEXPECTED_ERROR, source=attempt.spec.name, exc_info=exc
            )
        error = describe(exc)
        try:
            if attempt.receipts:
                self._failed(attempt, error, "kept")
                return f"{error}; the new key is kept for the sinks that took it"
            return self._compensate(attempt, error)
        except Exception as inner:
            # The store may be what failed: the rotation stays open for the next run's recovery,
            # and a key no sink took is invalidated now rather than left valid meanwhile.
            self._deps.log.error(
                LogEvent.ROTATION_FAILURE_NOT_RECORDED,
                source=attempt.spec.name,
                error=describe(inner),
            )
            if not attempt.receipts and attempt.credential is not None:
                self._invalidate_quietly(attempt.credential.id)
            return f"{error}; recording the failure failed too: {describe(inner)}"

    def _invalidate_quietly(self, key_id: str) -> None:
        try:
            self._deps.authority.invalidate([key_id]).raise_on_error()
        except Exception as exc:
            self._deps.log.error(LogEvent.COMPENSATION_FAILED, key_id=key_id, error=describe(exc))

    def _compensate(self, attempt: Attempt, error: str) -> str:
        ids = [attempt.credential.id] if attempt.credential is not None else []
        try:
            self._deps.retrying(
                "invalidate", lambda: self._deps.authority.invalidate(ids).raise_on_error()
            )
            resolution = "invalidated"
        except RotatorError as exc:
            error = f"{error}; invalidating the new key failed too: {exc.message}"
            resolution = "unresolved"
        self._failed(attempt, error, resolution)
        return error

    def _failed(self, attempt: Attempt, error: str, resolution: str) -> None:
        """Record a failed rotation and back the source off.

        ``resolution`` says what became of the new key: ``invalidated`` (compensated),
        ``unresolved`` (the rotation stays open for the next run's recovery), or ``kept`` (some
        sinks took it: it stays valid for them until a newer key reaches every sink).
        """
        spec = attempt.spec
        now = self._deps.now()
        with self._deps.write() as uow:
            failures, retry_at = self._deps.record_source_failure(uow, spec.name, error)
            rows.settle_failed(uow, attempt.row_id, attempt.rotation_id, error, resolution, now)
            self._deps.audit_in(
                uow,
                AuditAction.ROTATION_FAILED,
                spec.name,
                AuditOutcome.FAILURE,
                rotation_id=attempt.rotation_id,
                error=error,
                new_key=resolution,
                next_attempt_at=iso(retry_at),
            )
        self._deps.log.error(
            LogEvent.ROTATION_FAILED,
            source=spec.name,
            error=error,
            next_attempt_at=iso(retry_at),
            failures=failures,
            new_key=resolution,
        )
        self._deps.notify(
            Notice(
                NoticeKind.ROTATION_FAILED,
                Severity.WARNING,
                spec.name,
                f"rotating the key of {spec.name} failed ({failures} in a row): {error}",
                f"{NoticeKind.ROTATION_FAILED.value}:{spec.name}",
                {
                    "source": spec.name,
                    "failures": failures,
                    "error": error,
                    "next_attempt_at": iso(retry_at),
                },
            )
        )


def receipt_entry(sink: str, receipt: DeliveryReceipt, at: str) -> dict[str, Any]:
    """A sink's receipt as the store keeps it (the sink's state never holds a secret)."""
    return {
        "name": sink,
        "sink": receipt.sink,
        "target": receipt.target,
        "state": dict(receipt.state),
        "at": at,
    }


def owner_lacks(deps: Deps, checks: VerificationSet) -> str:
    """Name what rotator's own identity lacks of what a key must hold (Elasticsearch gives a
    key only the intersection of its role descriptors and its owner's privileges)."""
    try:
        answer = deps.retrying(
            "check rotator's own privileges",
            lambda: deps.authority.check_own_privileges(checks.must_request_body()),
        )
    except RotatorError:
        return ""
    missing = checks.missing(answer)
    if not missing:
        return ""
    return (
        "; rotator's own role lacks "
        + ", ".join(missing)
        + " (Elasticsearch gives a key only what its owner holds)"
    )
