"""The lifecycle job: recover, gather, plan and execute; one failing source never stops the others.

The steps of a rotation live in :mod:`rotator.jobs.pipeline`, crash recovery in
:mod:`rotator.jobs.recovery`, gathering in :mod:`rotator.jobs.inventory`; this module runs the
planned actions in a bounded pool through a table with one handler per action kind, runs the
actions that are not rotations (update, retire, orphans), and ends every run with one summary
event. Its entry point for the scheduler is :func:`run`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from rotator.errors import LeaseLost, RotatorError, VerificationFailed
from rotator.jobs.context import Deps, Fence, describe
from rotator.jobs.inventory import gather_inventory
from rotator.jobs.pipeline import RotationPipeline, owner_lacks
from rotator.jobs.recovery import Recovery
from rotator.jobs.rows import StepFailed, stored_overlap
from rotator.model import (
    MANAGED_BY,
    Action,
    ActionKind,
    EsStatus,
    Inventory,
    Reason,
    SourceSpec,
    iso,
)
from rotator.notify import Notice, NoticeKind, Severity
from rotator.planner import plan
from rotator.ports import Credential, CurrentKey, SourceFailures
from rotator.store.models import ApiKeyState
from rotator.vocabulary import AuditAction, AuditOutcome, LogEvent

__all__ = [
    "HANDLERS",
    "JOB_KINDS",
    "MANAGED_BY",
    "JobContext",
    "JobReport",
    "Lifecycle",
    "Outcome",
    "StepFailed",
    "run",
]

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
class JobReport:
    """Everything one run of a job did; unhealthy sources are failed outcomes too."""

    job: str = "lifecycle"
    run_id: str = ""
    outcomes: list[Outcome] = field(default_factory=list)
    duration_s: float = 0.0
    stopped: str | None = None  # why the run stopped early (the lease was lost)

    @property
    def failed(self) -> list[Outcome]:
        """The actions that did not succeed."""
        return [o for o in self.outcomes if not o.ok]

    def counts(self) -> dict[str, dict[str, int]]:
        """Outcomes by action kind: ``{"rotate": {"ok": 2, "failed": 1}}``."""
        tally: dict[str, Counter[str]] = defaultdict(Counter)
        for o in self.outcomes:
            tally[o.action.kind.value]["ok" if o.ok else "failed"] += 1
        return {kind: dict(c) for kind, c in sorted(tally.items())}


# A run report was called RunReport before jobs had names.
RunReport = JobReport


@dataclass(frozen=True)
class JobContext:
    """What the scheduler hands the lifecycle job for one run."""

    deps: Deps
    specs: Sequence[SourceSpec]
    max_parallel: int = 4
    forced: frozenset[str] = frozenset()
    kinds: str = "all"


def run(ctx: JobContext) -> JobReport:
    """The lifecycle job's entry point: one pass over every source."""
    lifecycle = Lifecycle(ctx.deps, max_parallel=ctx.max_parallel)
    return lifecycle.run(ctx.specs, job=ctx.kinds, forced=ctx.forced)


Handler = Callable[["Lifecycle", SourceSpec | None, Action], tuple[str, str | None]]


class Lifecycle:
    """Keeps one current, verified, delivered key per source."""

    def __init__(self, deps: Deps, *, max_parallel: int = 4) -> None:
        self._base = deps
        self._deps = deps
        self._max_parallel = max_parallel
        self._pipeline = RotationPipeline(deps)
        self._recovery = Recovery(deps)

    def fenced(self, fence: Fence) -> Lifecycle:
        """The same lifecycle, every write checked against ``fence`` (the leader lease)."""
        deps = replace(self._base, store=self._base.store.fenced(fence))
        return Lifecycle(deps, max_parallel=self._max_parallel)

    # --- the run ---------------------------------------------------------------------------

    def run(
        self, specs: Sequence[SourceSpec], *, job: str = "all", forced: Iterable[str] = ()
    ) -> JobReport:
        """Recover, gather, plan and execute once; then report every source left unhealthy."""
        self._bind(self._base.for_run("lifecycle"))
        started = self._deps.clock.monotonic()
        report = JobReport(job="lifecycle", run_id=self._deps.run_id)
        try:
            self._run(specs, job, frozenset(forced), report)
        except LeaseLost as exc:
            report.stopped = exc.message
            self._deps.log.warning(LogEvent.JOB_STOPPED_LEASE_LOST, error=exc.message)
        finally:
            report.duration_s = round(self._deps.clock.monotonic() - started, 3)
            self._deps.log.info(
                LogEvent.JOB_FINISHED,
                counts=report.counts(),
                failed=len(report.failed),
                duration_s=report.duration_s,
                stopped=report.stopped,
            )
        return report

    def _run(
        self, specs: Sequence[SourceSpec], job: str, forced: frozenset[str], report: JobReport
    ) -> None:
        self.sync_specs(specs)
        report.outcomes.extend(
            Outcome(r.action, r.ok, r.detail, r.key_id) for r in self._recovery.run(specs)
        )
        inventory = self.gather(specs, self._deps.now(), forced)
        actions = plan(specs, inventory, self._deps.now())
        wanted = [a for a in actions if a.kind in JOB_KINDS[job]]
        report.outcomes.extend(self.execute(specs, wanted))
        if self._deps.store.lost:
            raise LeaseLost("stopped early: the leader lease was lost, or the service is stopping")
        report.outcomes.extend(self.health(specs, inventory, report.outcomes))

    def _bind(self, deps: Deps) -> None:
        self._deps = deps
        self._pipeline = RotationPipeline(deps)
        self._recovery = Recovery(deps)

    def plan(self, specs: Sequence[SourceSpec], *, forced: Iterable[str] = ()) -> list[Action]:
        """What ``run`` would do now (read-only: gathers from the store and Elasticsearch)."""
        now = self._deps.now()
        return plan(specs, self.gather(specs, now, frozenset(forced)), now)

    def sync_specs(self, specs: Sequence[SourceSpec]) -> None:
        """Record each source's desired state; a changed spec resets its failures."""
        now = self._deps.now()
        with self._deps.write() as uow:
            repo = uow.sources
            # One read of every source's fingerprint; only a new, changed or returning source is
            # written (and read whole).
            stored = repo.fingerprints()
            for spec in specs:
                old_fp, retired = stored.get(spec.name, (None, False))
                if old_fp == spec.stored_fingerprint and not retired:
                    continue
                source = repo.upsert_spec(spec.name, spec.snapshot(), now)
                if old_fp is not None and old_fp != source.spec_fingerprint:
                    repo.reset_failures(spec.name, now)

    def gather(
        self, specs: Sequence[SourceSpec], now: datetime, forced: frozenset[str] = frozenset()
    ) -> Inventory:
        """The planner's view: store rows, what Elasticsearch and the sinks say about them."""
        fingerprints = {s.name: s.stored_fingerprint for s in specs}
        return gather_inventory(self._deps, specs, fingerprints, now, forced)

    # --- health ----------------------------------------------------------------------------

    def health(
        self, specs: Sequence[SourceSpec], before: Inventory, outcomes: Sequence[Outcome]
    ) -> list[Outcome]:
        """A failed outcome for each source without a valid, delivered, current key now."""
        now = self._deps.now()
        failed_now = {o.action.source for o in outcomes if not o.ok}
        statuses = {k.es_id: k.es_status for k in before.keys}
        out = []
        with self._deps.read() as uow:
            # Two reads of a few columns for every source at once, not two per source.
            failures = uow.sources.failures()
            current = uow.keys.current_by_source()
        for spec in specs:
            problem = _problem(current.get(spec.name), failures.get(spec.name), statuses, now)
            if problem is None or spec.name in failed_now:
                continue
            action = Action(ActionKind.HEALTH, spec.name, Reason.UNHEALTHY, now)
            out.append(Outcome(action, False, problem))
        return out

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
        out = []
        for action in actions:
            if self._deps.store.lost:  # another replica leads now: stop acting at once
                break
            out.append(self._run_action(specs.get(action.source), action))
        return out

    def _run_action(self, spec: SourceSpec | None, action: Action) -> Outcome:
        log = self._deps.log.bind(
            source=action.source, action=action.kind.value, reason=action.reason.value
        )
        try:
            detail, key_id = HANDLERS[action.kind](self, spec, action)
        except RotatorError as exc:
            log.error(LogEvent.ACTION_FAILED, error=exc.message, key_id=action.key_id)
            return Outcome(action, False, exc.message)
        except Exception as exc:
            log.error(LogEvent.ACTION_FAILED_UNEXPECTEDLY, key_id=action.key_id, exc_info=exc)
            return Outcome(action, False, describe(exc))
        log.info(LogEvent.ACTION_SUCCEEDED, detail=detail, key_id=action.key_id, new_key_id=key_id)
        return Outcome(action, True, detail, key_id)

    def _replace(self, spec: SourceSpec | None, action: Action) -> tuple[str, str | None]:
        detail, key_id = self._pipeline.replace(_need(spec, action), action)
        return detail, key_id

    def _alert(self, _spec: SourceSpec | None, action: Action) -> tuple[str, str | None]:
        self._deps.log.error(
            LogEvent.KEY_EXPIRING_WHILE_FAILING,
            source=action.source,
            key_id=action.key_id,
            detail=action.detail,
        )
        self._deps.notify(
            Notice(
                NoticeKind.EXPIRING_WHILE_FAILING,
                Severity.CRITICAL,
                action.source,
                f"the key of {action.source} expires soon and its rotation keeps failing: "
                f"{action.detail}",
                f"{NoticeKind.EXPIRING_WHILE_FAILING.value}:{action.source}:{action.key_id}",
                {"source": action.source, "key_id": action.key_id, "detail": action.detail},
            )
        )
        return "alerted", None

    def _hold(self, _spec: SourceSpec | None, action: Action) -> tuple[str, str | None]:
        return f"backing off: {action.detail}", None

    def _resume(self, spec: SourceSpec | None, action: Action) -> tuple[str, str | None]:
        results = self._recovery.run([spec] if spec is not None else [], source=action.source)
        failed = [r for r in results if not r.ok]
        if failed:
            raise StepFailed(failed[0].detail)
        return "; ".join(r.detail for r in results) or "nothing left to recover", None

    def _check_health(self, spec: SourceSpec | None, action: Action) -> tuple[str, str | None]:
        with self._deps.read() as uow:
            row = uow.keys.current_for_source(action.source)
            stored = uow.sources.get(action.source)
            current = None if row is None else CurrentKey(row.es_id, row.expires_at)
            failures = (
                None
                if stored is None
                else SourceFailures(stored.failure_count, stored.next_attempt_at, stored.last_error)
            )
        problem = _problem(current, failures, {}, self._deps.now())
        if problem is not None:
            raise StepFailed(problem)
        return "healthy", None

    # --- other actions ---------------------------------------------------------------------

    def _update(self, spec: SourceSpec | None, action: Action) -> tuple[str, str | None]:
        """Change the key's privileges in place, then verify them as a new key's are verified.

        The key's secret is not kept, so its effective privileges are checked as what they are:
        the role descriptors read back, intersected with what rotator's own identity holds.
        """
        spec = _need(spec, action)
        key_id = action.key_id or ""
        authority = self._deps.authority
        wanted = spec.role_descriptors
        try:
            authority.update(key_id, wanted)
            stored = self._deps.retrying("read back", lambda: authority.get([key_id])).get(key_id)
            if stored is None or _normalized(stored.role_descriptors) != _normalized(wanted):
                raise VerificationFailed(f"key {key_id} does not show the updated privileges")
            lacks = owner_lacks(self._deps, spec.verification)
            if lacks:
                raise VerificationFailed(
                    f"key {key_id} was updated but lacks privileges its source needs{lacks}"
                )
        except RotatorError as exc:
            with self._deps.write() as uow:
                _n, retry_at = self._deps.record_source_failure(uow, spec.name, exc.message)
                self._deps.audit_in(
                    uow,
                    AuditAction.KEY_UPDATE_FAILED,
                    spec.name,
                    AuditOutcome.FAILURE,
                    key_id=key_id,
                    error=exc.message,
                    next_attempt_at=iso(retry_at),
                )
            raise
        now = self._deps.now()
        with self._deps.write() as uow:
            row = uow.keys.get_by_es_id(key_id)
            if row is not None:
                row.config_fingerprint = spec.privileges_fingerprint
                row.updated_at = now
            uow.sources.reset_failures(spec.name, now)
            self._deps.audit_in(
                uow, AuditAction.KEY_UPDATED, spec.name, key_id=key_id, role_descriptors=wanted
            )
        return f"updated the privileges of {key_id} in place and verified them", None

    def _retire(self, spec: SourceSpec | None, action: Action) -> tuple[str, str | None]:
        key_id = action.key_id or ""
        if spec is not None:
            current = self._current_view(spec)
            waiting = [
                s.name for s in self._deps.sinks(spec) if current and not s.acknowledge(current)
            ]
            if waiting:
                names = ", ".join(waiting)
                return f"kept {key_id}: waiting for {names} to acknowledge the new key", None
        self._deps.retrying(
            "invalidate", lambda: self._deps.authority.invalidate([key_id]).raise_on_error()
        )
        now = self._deps.now()
        with self._deps.write() as uow:
            row = uow.keys.get_by_es_id(key_id)
            if row is not None and row.state is not ApiKeyState.INVALIDATED:
                uow.keys.transition(row, ApiKeyState.INVALIDATED, now)
            self._deps.audit_in(
                uow,
                AuditAction.KEY_INVALIDATED,
                action.source,
                key_id=key_id,
                reason=action.reason.value,
            )
        return f"invalidated {key_id} after its overlap", None

    def _current_view(self, spec: SourceSpec) -> Credential | None:
        """The source's current key as an acknowledgement sees it: ids only, never a secret."""
        with self._deps.read() as uow:
            row = uow.keys.current_for_source(spec.name)
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

    def _retire_source(self, _spec: SourceSpec | None, action: Action) -> tuple[str, str | None]:
        now = self._deps.now()
        with self._deps.write() as uow:
            source = uow.sources.get(action.source)
            overlap = stored_overlap(source)
            keys = uow.keys
            row = keys.get_by_es_id(action.key_id or "")
            if row is not None and row.state is ApiKeyState.ACTIVE:
                keys.schedule_retirement(row, retire_at=now + overlap, now=now)
            elif row is not None and row.state is ApiKeyState.RETIRING:
                row.retire_at = now + overlap
            if source is not None and source.retired_at is None:
                source.retired_at = now
            self._deps.audit_in(
                uow,
                AuditAction.SOURCE_REMOVED,
                action.source,
                key_id=action.key_id,
                retire_at=iso(now + overlap),
            )
        when = iso(now + overlap)
        return f"source removed: {action.key_id} will be invalidated at {when}", None

    def _invalidate_orphan(
        self, _spec: SourceSpec | None, action: Action
    ) -> tuple[str, str | None]:
        key_id = action.key_id or ""
        self._deps.retrying(
            "invalidate", lambda: self._deps.authority.invalidate([key_id]).raise_on_error()
        )
        with self._deps.write() as uow:
            self._deps.audit_in(
                uow, AuditAction.KEY_INVALIDATED, "-", key_id=key_id, reason="orphaned"
            )
        return f"invalidated untracked key {key_id} (its secret was never delivered)", None

    # --- recovery --------------------------------------------------------------------------

    def recover(self, specs: Sequence[SourceSpec]) -> list[Outcome]:
        """Resume or compensate every rotation a crash or a lost answer left unfinished."""
        return [Outcome(r.action, r.ok, r.detail, r.key_id) for r in self._recovery.run(specs)]


# One handler per action kind; a kind without one is a bug the test of this table catches.
HANDLERS: dict[ActionKind, Handler] = {
    ActionKind.PROVISION: Lifecycle._replace,
    ActionKind.ROTATE: Lifecycle._replace,
    ActionKind.UPDATE: Lifecycle._update,
    ActionKind.RETIRE: Lifecycle._retire,
    ActionKind.RETIRE_SOURCE: Lifecycle._retire_source,
    ActionKind.RESUME: Lifecycle._resume,
    ActionKind.INVALIDATE_ORPHAN: Lifecycle._invalidate_orphan,
    ActionKind.HOLD: Lifecycle._hold,
    ActionKind.ALERT: Lifecycle._alert,
    ActionKind.HEALTH: Lifecycle._check_health,
}


# --- helpers -------------------------------------------------------------------------------------


def _need(spec: SourceSpec | None, action: Action) -> SourceSpec:
    if spec is None:
        raise StepFailed(f"source {action.source} is not configured")
    return spec


def _problem(
    row: CurrentKey | None,
    stored: SourceFailures | None,
    statuses: dict[str, EsStatus],
    now: datetime,
) -> str | None:
    """Why a source has no valid delivered current key, or None when it has one."""
    waiting = ""
    if stored is not None and stored.failure_count:
        waiting = (
            f"; {stored.failure_count} failure(s), next attempt at {iso(stored.next_attempt_at)}"
        )
    if row is None or row.es_id is None:
        return f"no current key{waiting}"
    status = statuses.get(row.es_id, EsStatus.VALID)
    if status not in (EsStatus.VALID, EsStatus.UNKNOWN):
        return f"current key {row.es_id} is {status.value} in Elasticsearch{waiting}"
    if row.expires_at is not None and row.expires_at <= now:
        return f"current key {row.es_id} expired at {iso(row.expires_at)}{waiting}"
    if stored is not None and stored.failure_count:
        return f"rotation is failing: {stored.last_error or 'unknown error'}{waiting}"
    return None


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
