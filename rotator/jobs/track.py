"""The track job: an inventory of every API key rotator's identity can see.

One sweep pages through the keys with the query API (``search_after``, one request per page) and
compares each page with the store as it goes, so its memory is one page whatever the number of
keys. Per page it reads the stored rows in one statement, inserts and updates them in one each,
and appends the page's audit events in one insert. Then it marks the keys it no longer saw as
deleted, page by page too.

What a sweep reports (audit trail and log; every transition is also a notice):

- transitions of keys rotator did not create: appeared, expired, invalidated, deleted;
- expiry warnings at each lead time of ``managed_keys.warn_before``, once per key and lead time;
- policy findings raised and cleared (:mod:`rotator.tracking` has the rules);
- rotator's own keys: a key the store does not know, older than ``orphan_grace``, from no live
  rotation, is invalidated; a current key Elasticsearch says is invalidated, expired or gone is
  handed to the lifecycle job, whose planner replaces it.

The first sweep of a store takes a baseline: the keys and findings it finds are summed up in one
audit event instead of one event each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from rotator.errors import LeaseLost, RotatorError
from rotator.jobs.context import Deps
from rotator.model import iso
from rotator.notify import Notice, NoticeKind, Severity
from rotator.ports import AuditEntry, KeyDirectory, KeyInfo
from rotator.states import KeyState
from rotator.store.inventory import GONE
from rotator.store.models import TrackedKey
from rotator.tracking import (
    ExpiryWarning,
    Finding,
    KeyClass,
    Observation,
    Policy,
    TrackedState,
    days,
    due_warning,
    is_native,
    kept_metadata,
    observe,
    roles_summary,
)
from rotator.vocabulary import AuditAction, AuditOutcome, LogEvent

__all__ = ["SCOPE_PRIVILEGES", "TrackReport", "TrackSettings", "Tracker", "scope_of"]

# Seeing every key takes one of these; without them the query API shows only the caller's own.
SCOPE_PRIVILEGES = ("read_security", "manage_api_key", "manage_security")
USER_READERS = ("read_security", "manage_security")
MATCH_ALL: Mapping[str, Any] = {"match_all": {}}

DriftHandler = Callable[[list[str]], None]
_NOTICE_KINDS = {
    AuditAction.INVENTORY_KEY_APPEARED: NoticeKind.MANAGED_KEY_APPEARED,
    AuditAction.INVENTORY_KEY_EXPIRING: NoticeKind.MANAGED_KEY_EXPIRING,
    AuditAction.INVENTORY_KEY_EXPIRED: NoticeKind.MANAGED_KEY_EXPIRED,
    AuditAction.INVENTORY_KEY_INVALIDATED: NoticeKind.MANAGED_KEY_INVALIDATED,
    AuditAction.INVENTORY_KEY_DELETED: NoticeKind.MANAGED_KEY_DELETED,
    AuditAction.INVENTORY_FINDING_RAISED: NoticeKind.POLICY_FINDING,
    AuditAction.INVENTORY_FINDING_CLEARED: NoticeKind.POLICY_FINDING_CLEARED,
}
# What every sighting changes; a row whose other columns are unchanged is written only these.
_SEEN = frozenset({"es_id", "last_seen_at", "gone_at", "sweep_id"})

# Scopes already said in this process's log: (principal, scope).
_announced: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class TrackSettings:
    """The ``managed_keys`` section as the job uses it."""

    page_size: int = 1000
    leads: tuple[timedelta, ...] = (timedelta(days=14), timedelta(days=3), timedelta(days=1))
    warn_classes: frozenset[str] = frozenset({"kibana-managed", "user", "cross_cluster"})
    orphan_grace: timedelta = timedelta(hours=1)
    forget_after: timedelta = timedelta(days=30)
    policy: Policy = field(default_factory=Policy)


@dataclass
class TrackReport:
    """What one sweep saw and did."""

    job: str = "track"
    run_id: str = ""
    scope: str = ""
    principal: str = ""
    baseline: bool = False
    seen: int = 0
    pages: int = 0
    classes: Counter[str] = field(default_factory=Counter)
    transitions: Counter[str] = field(default_factory=Counter)
    findings: Counter[str] = field(default_factory=Counter)
    orphans_invalidated: list[str] = field(default_factory=list)
    drifted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str | None = None
    stopped: str | None = None
    duration_s: float = 0.0

    @property
    def failed(self) -> list[str]:
        """What went wrong: the sweep itself, or an orphan that could not be invalidated."""
        return ([self.error] if self.error else []) + self.problems

    def to_json(self) -> dict[str, Any]:
        """The report for ``-o json``."""
        return {
            "job": self.job,
            "run_id": self.run_id,
            "scope": self.scope,
            "principal": self.principal,
            "baseline": self.baseline,
            "seen": self.seen,
            "pages": self.pages,
            "classes": dict(sorted(self.classes.items())),
            "transitions": dict(sorted(self.transitions.items())),
            "findings": dict(sorted(self.findings.items())),
            "orphans_invalidated": self.orphans_invalidated,
            "drifted": self.drifted,
            "failed": self.failed,
            "stopped": self.stopped,
            "duration_s": self.duration_s,
        }


def scope_of(answer: Mapping[str, Any]) -> tuple[str, bool]:
    """From ``_has_privileges`` over :data:`SCOPE_PRIVILEGES`: ``all`` or ``own``, and whether
    users may be read (for ``owner_missing``)."""
    cluster = answer.get("cluster") or {}
    scope = "all" if any(cluster.get(p) for p in SCOPE_PRIVILEGES) else "own"
    return scope, any(cluster.get(p) for p in USER_READERS)


class Tracker:
    """Runs sweeps of the key inventory."""

    def __init__(
        self,
        deps: Deps,
        directory: KeyDirectory,
        settings: TrackSettings,
        *,
        on_drift: DriftHandler | None = None,
    ) -> None:
        self._base = deps
        self._directory = directory
        self._settings = settings
        self._on_drift = on_drift

    def run(self) -> TrackReport:
        """One sweep; a failure is reported, never raised (the lease's loss stops it)."""
        deps = self._base.for_run("track")
        report = TrackReport(run_id=deps.run_id)
        started = deps.clock.monotonic()
        try:
            _Sweep(deps, self._directory, self._settings, report).run()
        except LeaseLost as exc:
            report.stopped = exc.message
            deps.log.warning(LogEvent.JOB_STOPPED_LEASE_LOST, error=exc.message)
        except RotatorError as exc:
            report.error = exc.message
            deps.log.error(LogEvent.INVENTORY_SWEEP_FAILED, error=exc.message)
        finally:
            report.duration_s = round(deps.clock.monotonic() - started, 3)
            deps.log.info(
                LogEvent.JOB_FINISHED,
                scope=report.scope,
                seen=report.seen,
                pages=report.pages,
                transitions=dict(report.transitions),
                failed=len(report.failed),
                duration_s=report.duration_s,
                stopped=report.stopped,
            )
        if report.drifted and self._on_drift is not None and report.stopped is None:
            deps.log.info(LogEvent.INVENTORY_DRIFT_HANDED_OVER, sources=report.drifted)
            self._on_drift(sorted(set(report.drifted)))
        return report


class _Sweep:
    """One pass: scope, pages, keys no longer seen, summary."""

    def __init__(
        self, deps: Deps, directory: KeyDirectory, settings: TrackSettings, report: TrackReport
    ) -> None:
        self.deps = deps
        self.directory = directory
        self.settings = settings
        self.report = report
        self.now = deps.now()
        self.sweep_id = 0
        self.users_readable = False
        self.me: tuple[str, str] = ("", "")
        self.owners: dict[str, bool] = {}  # native user -> exists (bounded by distinct owners)
        self.live_rotations: set[str] = set()

    # --- the pass ----------------------------------------------------------------------------

    def run(self) -> None:
        self._start()
        ok = False
        try:
            after: list[Any] | None = None
            remaining: int | None = None  # by the first page's total: no empty page at the end
            while True:
                page = self.deps.retrying(
                    "query API keys",
                    lambda a=after: self.directory.query_page(  # type: ignore[misc]
                        MATCH_ALL, page_size=self.settings.page_size, after=a
                    ),
                )
                if page.keys:
                    self.report.pages += 1
                    self._page(page.keys)
                elif self.report.pages == 0:
                    self.report.pages = 1
                remaining = (page.total if remaining is None else remaining) - len(page.keys)
                if page.after is None or remaining <= 0:
                    break
                after = page.after
            self._gone()
            self._forget()
            ok = True
        finally:
            self._finish(ok)

    def _start(self) -> None:
        deps, report = self.deps, self.report
        me = deps.retrying("authenticate", self.directory.whoami)
        realm = (me.get("lookup_realm") or me.get("authentication_realm") or {}).get("name", "")
        self.me = (str(me.get("username", "")), str(realm))
        answer = deps.retrying(
            "check inventory privileges",
            lambda: self.directory.check_own_privileges({"cluster": list(SCOPE_PRIVILEGES)}),
        )
        report.scope, self.users_readable = scope_of(answer)
        report.principal = f"{self.me[0]} ({self.me[1]})"
        with deps.write() as uow:
            inventory = uow.inventory
            previous = inventory.last_sweep(ok_only=False)
            report.baseline = inventory.last_sweep() is None
            self.sweep_id = inventory.start_sweep(
                deps.run_id, self.now, report.scope, report.principal
            )
            self.live_rotations = {r.id for r in uow.rotations.unfinished()}
            changed = previous is not None and previous.scope != report.scope
            if changed:
                deps.audit_in(
                    uow,
                    AuditAction.INVENTORY_SCOPE_CHANGED,
                    report.principal,
                    AuditOutcome.WARNING if report.scope == "own" else AuditOutcome.SUCCESS,
                    scope=report.scope,
                    was=previous.scope if previous is not None else None,
                )
        key = (report.principal, report.scope)
        if changed or key not in _announced:
            _announced.add(key)
            say = deps.log.warning if report.scope == "own" else deps.log.info
            say(
                LogEvent.INVENTORY_SCOPE,
                scope=report.scope,
                principal=report.principal,
                detail=scope_words(report.scope),
            )

    def _finish(self, ok: bool) -> None:
        report = self.report
        counts = {
            "classes": dict(report.classes),
            "transitions": dict(report.transitions),
            "findings": dict(report.findings),
            "orphans_invalidated": len(report.orphans_invalidated),
        }
        try:
            with self.deps.write() as uow:
                uow.inventory.finish_sweep(
                    self.sweep_id,
                    self.deps.now(),
                    ok=ok,
                    seen=report.seen,
                    pages=report.pages,
                    counts=counts,
                    error=None if ok else (report.error or "the sweep stopped early"),
                )
                if ok and report.baseline:
                    self.deps.audit_in(
                        uow,
                        AuditAction.INVENTORY_BASELINED,
                        report.principal,
                        scope=report.scope,
                        keys=report.seen,
                        classes=dict(report.classes),
                        findings=dict(report.findings),
                    )
        except LeaseLost:
            if ok:
                raise

    # --- one page ----------------------------------------------------------------------------

    def _page(self, keys: list[KeyInfo]) -> None:
        self._learn_owners(keys)
        observations = [
            observe(k, self.now, self.settings.policy, owner_exists=self._owner_exists(k))
            for k in keys
        ]
        ids = [k.id for k in keys]
        orphans: list[str] = []
        with self.deps.write() as uow:
            stored = uow.inventory.by_ids(ids)
            rotator_ids = [o.info.id for o in observations if o.key_class is KeyClass.ROTATOR]
            ours = uow.keys.states_among(rotator_ids)
            inserts: list[dict[str, Any]] = []
            updates: list[dict[str, Any]] = []
            events: list[AuditEntry] = []
            notices: list[Notice] = []
            for obs in observations:
                row = stored.get(obs.info.id)
                values = self._compare(obs, row, events, notices)
                (inserts if row is None else updates).append(values)
                if obs.key_class is KeyClass.ROTATOR:
                    orphans.extend(self._rotator_key(obs, ours.get(obs.info.id)))
            uow.inventory.insert_many(inserts)
            uow.inventory.update_many(updates)
            uow.audit_many(now=self.now, events=events)
        self.report.seen += len(keys)
        self._say(notices)
        if orphans:
            self._invalidate_orphans(orphans)

    def _learn_owners(self, keys: Sequence[KeyInfo]) -> None:
        """Ask once per sweep whether each native owner seen still exists (one request a page)."""
        if not (self.users_readable and self.settings.policy.owner_missing):
            return
        names = sorted({k.username for k in keys if is_native(k) and k.username} - set(self.owners))
        if not names:
            return
        found = self.deps.retrying(
            "look up key owners", lambda: self.directory.existing_users(names)
        )
        for name in names:
            self.owners[name] = name in found

    def _owner_exists(self, key: KeyInfo) -> bool | None:
        if not self.users_readable or not is_native(key):
            return None
        return self.owners.get(key.username)

    def _compare(
        self,
        obs: Observation,
        row: TrackedKey | None,
        events: list[AuditEntry],
        notices: list[Notice],
    ) -> dict[str, Any]:
        """The row's new values; the transitions, warnings and findings go to the lists."""
        info, report = obs.info, self.report
        report.classes[obs.key_class.value] += 1
        findings = [f.to_json() for f in obs.findings]
        if (
            row is not None
            and self._owner_exists(info) is None
            and obs.state is TrackedState.ACTIVE
        ):
            # Users cannot be read now: what was found of the owner before still stands.
            findings += [f for f in row.findings_json if f.get("kind") == Finding.OWNER_MISSING]
        for f in findings:
            report.findings[f["kind"]] += 1
        warned = list(row.warned_json) if row is not None else []
        if row is not None and row.expires_at != info.expiration:
            warned = []  # a new expiry: its lead times are warned afresh
        warning = None
        if obs.state is TrackedState.ACTIVE and obs.key_class.value in self.settings.warn_classes:
            warning, warned = due_warning(info.expiration, self.now, self.settings.leads, warned)
        values: dict[str, Any] = {
            "es_id": info.id,
            "name": info.name[:1024],
            "key_type": info.type,
            "key_class": obs.key_class.value,
            "sub_kind": obs.sub_kind,
            "owner": info.username,
            "realm": info.realm,
            "realm_type": info.realm_type,
            "state": obs.state.value,
            "created_at": info.creation,
            "expires_at": info.expiration,
            "invalidated_at": info.invalidation,
            "roles_json": roles_summary(info.type, info.role_descriptors),
            "metadata_json": kept_metadata(info.metadata),
            "findings_json": findings,
            "warned_json": warned,
            "last_seen_at": self.now,
            "gone_at": None,
            "sweep_id": self.sweep_id,
        }
        self._transitions(obs, row, events, notices)
        if warning is not None:
            self._event(
                events,
                notices,
                obs,
                AuditAction.INVENTORY_KEY_EXPIRING,
                Severity.CRITICAL if warning.critical else Severity.WARNING,
                expiring_words(info, warning),
                lead=days(warning.lead),
                expires_at=iso(info.expiration),
            )
        self._findings(obs, row, findings, events, notices)
        if row is None:
            values["first_seen_at"] = self.now
        elif row.gone_at is None and all(
            getattr(row, name) == value for name, value in values.items() if name not in _SEEN
        ):
            # Unchanged: only the sighting is written.
            return {"es_id": info.id, "last_seen_at": self.now, "sweep_id": self.sweep_id}
        return values

    def _transitions(
        self,
        obs: Observation,
        row: TrackedKey | None,
        events: list[AuditEntry],
        notices: list[Notice],
    ) -> None:
        if obs.key_class is KeyClass.ROTATOR:
            return  # the lifecycle job's own trail records what happens to rotator's keys
        info = obs.info
        if row is None or row.state == GONE:
            if self.report.baseline and row is None:
                return
            self._event(
                events,
                notices,
                obs,
                AuditAction.INVENTORY_KEY_APPEARED,
                Severity.INFO,
                f"new {obs.key_class.value} key {info.name!r} of {obs.owner}"
                + (f", {obs.state.value}" if obs.state is not TrackedState.ACTIVE else ""),
                created_at=iso(info.creation),
                expires_at=iso(info.expiration),
            )
            return
        if row.state == obs.state.value:
            return
        if obs.state is TrackedState.EXPIRED:
            severity = (
                Severity.CRITICAL if obs.key_class is KeyClass.KIBANA_MANAGED else Severity.WARNING
            )
            self._event(
                events,
                notices,
                obs,
                AuditAction.INVENTORY_KEY_EXPIRED,
                severity,
                f"expired at {iso(info.expiration)}"
                + (": the tasks using it stop running" if severity is Severity.CRITICAL else ""),
                expires_at=iso(info.expiration),
            )
        elif obs.state is TrackedState.INVALIDATED:
            self._event(
                events,
                notices,
                obs,
                AuditAction.INVENTORY_KEY_INVALIDATED,
                Severity.INFO,
                f"invalidated at {iso(info.invalidation) or 'an unknown time'}",
                invalidated_at=iso(info.invalidation),
            )

    def _findings(
        self,
        obs: Observation,
        row: TrackedKey | None,
        findings: list[dict[str, Any]],
        events: list[AuditEntry],
        notices: list[Notice],
    ) -> None:
        if self.report.baseline and row is None:
            return  # summed up in the baseline event
        if obs.state is not TrackedState.ACTIVE:
            return  # an expired or invalidated key's findings end with it, silently
        before = {f.get("kind"): f for f in (row.findings_json if row is not None else [])}
        after = {f["kind"]: f for f in findings}
        for kind in sorted(set(after) - set(before)):
            f = after[kind]
            self._event(
                events,
                notices,
                obs,
                AuditAction.INVENTORY_FINDING_RAISED,
                Severity(f["severity"]),
                f"{kind}: {f['detail']}",
                finding=kind,
            )
        for kind in sorted(k for k in set(before) - set(after) if k is not None):
            self._event(
                events,
                notices,
                obs,
                AuditAction.INVENTORY_FINDING_CLEARED,
                Severity.INFO,
                f"{kind} no longer applies",
                finding=kind,
            )

    def _event(
        self,
        events: list[AuditEntry],
        notices: list[Notice],
        obs: Observation,
        action: AuditAction,
        severity: Severity,
        detail: str,
        **details: Any,
    ) -> None:
        info = obs.info
        self.report.transitions[action.value.removeprefix("inventory.")] += 1
        outcome = (
            AuditOutcome.WARNING
            if severity in (Severity.WARNING, Severity.CRITICAL, Severity.HIGH)
            else AuditOutcome.SUCCESS
        )
        events.append(
            AuditEntry(
                action,
                f"key:{info.id}",
                outcome,
                {
                    "key_id": info.id,
                    "name": info.name,
                    "owner": info.username,
                    "realm": info.realm,
                    "class": obs.key_class.value,
                    "sub_kind": obs.sub_kind,
                    "severity": severity.value,
                    "detail": detail,
                    **details,
                    **self.deps.run_details(),
                },
            )
        )
        kind = _NOTICE_KINDS[action]
        condition = details.get("lead") or details.get("finding") or ""
        notices.append(
            Notice(
                kind,
                severity,
                f"key:{info.id}",
                f"{obs.key_class.value} key {info.name!r} of {obs.owner}: {detail}",
                f"{kind.value}:{info.id}:{condition}".rstrip(":"),
                {
                    "key_id": info.id,
                    "name": info.name,
                    "owner": info.username,
                    "realm": info.realm,
                    "class": obs.key_class.value,
                    "sub_kind": obs.sub_kind,
                    **details,
                },
            )
        )

    def _say(self, notices: Sequence[Notice]) -> None:
        for notice in notices:
            self.deps.notify(notice)

    # --- rotator's own keys ------------------------------------------------------------------

    def _rotator_key(self, obs: Observation, ours: tuple[KeyState, str | None] | None) -> list[str]:
        """An orphan to invalidate (as a one-item list), or a drift handed over; else nothing."""
        info = obs.info
        if ours is None:
            mine = (info.username, info.realm) == self.me
            grace_over = info.creation <= self.now - self.settings.orphan_grace
            live = info.metadata.get("rotation_id") in self.live_rotations
            if obs.state is TrackedState.ACTIVE and mine and grace_over and not live:
                return [info.id]
            return []
        state, source = ours
        if state is KeyState.ACTIVE and obs.state is not TrackedState.ACTIVE:
            self.report.drifted.append(source or str(info.metadata.get("source", "")))
        return []

    def _invalidate_orphans(self, ids: list[str]) -> None:
        deps = self.deps
        try:
            deps.retrying("invalidate orphaned keys", lambda: deps.authority.invalidate(ids))
        except RotatorError as exc:
            self.report.problems.append(f"invalidate orphaned keys {', '.join(ids)}: {exc.message}")
            return
        with deps.write() as uow:
            for key_id in ids:
                deps.audit_in(
                    uow,
                    AuditAction.KEY_INVALIDATED,
                    "-",
                    key_id=key_id,
                    reason="orphaned",
                    detail="rotator key unknown to the store for over "
                    + days(self.settings.orphan_grace),
                )
            uow.inventory.update_many(
                [{"es_id": key_id, "state": TrackedState.INVALIDATED.value} for key_id in ids]
            )
        self.report.orphans_invalidated.extend(ids)
        deps.log.warning(LogEvent.LOST_KEY_INVALIDATED, key_ids=ids, reason="orphaned")

    # --- keys no longer returned -------------------------------------------------------------

    def _gone(self) -> None:
        """Mark the keys this sweep did not see as deleted, a page at a time."""
        owner = self.me if self.report.scope == "own" else None
        while True:
            notices: list[Notice] = []
            with self.deps.write() as uow:
                rows = uow.inventory.unseen(self.sweep_id, self.settings.page_size, owner=owner)
                if not rows:
                    return
                ours = uow.keys.states_among(
                    [r.es_id for r in rows if r.key_class == KeyClass.ROTATOR.value]
                )
                events: list[AuditEntry] = []
                for row in rows:
                    self._deleted(row, ours.get(row.es_id), events, notices)
                uow.inventory.update_many(
                    [
                        {"es_id": r.es_id, "state": GONE, "gone_at": self.now, "findings_json": []}
                        for r in rows
                    ]
                )
                uow.audit_many(now=self.now, events=events)
            self._say(notices)
            if len(rows) < self.settings.page_size:
                return

    def _deleted(
        self,
        row: TrackedKey,
        ours: tuple[KeyState, str | None] | None,
        events: list[AuditEntry],
        notices: list[Notice],
    ) -> None:
        if row.key_class == KeyClass.ROTATOR.value:
            if ours is not None and ours[0] is KeyState.ACTIVE:
                self.report.drifted.append(ours[1] or "")
            return
        obs = Observation(
            KeyInfo(
                id=row.es_id,
                name=row.name,
                creation=row.created_at,
                expiration=row.expires_at,
                invalidated=row.state == TrackedState.INVALIDATED.value,
                username=row.owner,
                metadata={},
                realm=row.realm,
            ),
            KeyClass(row.key_class),
            row.sub_kind,
            TrackedState.GONE,
        )
        was_active = row.state == TrackedState.ACTIVE.value
        self._event(
            events,
            notices,
            obs,
            AuditAction.INVENTORY_KEY_DELETED,
            Severity.WARNING if was_active else Severity.INFO,
            "no longer in Elasticsearch"
            + (" while still valid: deleted outside its expiry" if was_active else ""),
            last_state=row.state,
            last_seen_at=iso(row.last_seen_at),
        )

    def _forget(self) -> None:
        """Drop the rows of keys gone for longer than ``forget_after``, in batches."""
        cutoff = self.now - self.settings.forget_after
        while True:
            with self.deps.write() as uow:
                removed = uow.inventory.forget_gone(cutoff, 10_000)
            if removed < 10_000:
                return


def scope_words(scope: str) -> str:
    """What a scope means, for the log and ``rotator keys``."""
    if scope == "all":
        return "every API key in the cluster is visible"
    return (
        "only keys owned by rotator's own user are visible; give it read_security to "
        "track Kibana, Fleet and users' keys"
    )


def expiring_words(info: KeyInfo, warning: ExpiryWarning) -> str:
    """``expires in 2d (at 2027-01-01T00:00:00Z); warned at the 3d lead time``."""
    return (
        f"expires in {days(warning.left)} (at {iso(info.expiration)}); "
        f"lead time {days(warning.lead)}"
    )


def settings_from(config: Any) -> TrackSettings:
    """The job's settings from a ``ManagedKeysConfig``."""
    policy = config.policy
    return TrackSettings(
        page_size=config.page_size,
        leads=tuple(config.warn_before),
        warn_classes=frozenset(config.warn_classes),
        orphan_grace=config.orphan_grace,
        forget_after=config.forget_after,
        policy=Policy(
            no_expiration=policy.no_expiration,
            max_lifetime=policy.max_lifetime,
            unrestricted=policy.unrestricted,
            max_age=policy.max_age,
            owner_missing=policy.owner_missing,
        ),
    )
