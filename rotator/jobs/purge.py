"""The purge job: invalidate the caller's own expired keys in bulk, record what became of each
key (tombstones and the audit trail), and delete tombstones past their retention.

It needs no more than ``manage_own_api_key``: the query is restricted to the caller's username
and realm (with ``read_security`` the query API would otherwise see every owner's keys), and the
invalidation names ids with ``owner: true``. One query page and one invalidate request serve
``batch_size`` keys. Its entry point for the scheduler is :meth:`Purger.run`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from rotator.config_models import PurgeConfig
from rotator.errors import AuthorityRejected, LeaseLost, RotatorError
from rotator.jobs.context import Deps, Fence
from rotator.model import iso
from rotator.notify import Notice, NoticeKind, Severity, resolve
from rotator.ports import InvalidationResult, KeyInfo
from rotator.states import KEY_TRANSITIONS, KeyState
from rotator.store.tombstones import PurgeUnit, PurgeUnits, Tombstone
from rotator.vocabulary import AuditAction, AuditOutcome, LogEvent

JOB = "purge"
# Kibana counts a key as managed when its metadata says so or its name has this prefix (keys the
# Alerting plugin created before metadata.managed existed).
MANAGED_NAME_PREFIX = "Alerting: "
_PREFIX_END = re.compile(r"[\s:/_.\-]")


class PurgeAuthority(Protocol):
    """What the purge asks of Elasticsearch (``ElasticKeyAuthority`` answers it)."""

    def whoami(self) -> dict[str, Any]:
        """The authenticated identity (``_security/_authenticate``)."""
        ...

    def query_pages(
        self, query: Mapping[str, Any], *, page_size: int = 1000
    ) -> Iterator[list[KeyInfo]]:
        """The keys matching ``query``, one request per page, oldest first."""
        ...

    def invalidate(self, ids: Sequence[str]) -> InvalidationResult:
        """Invalidate own keys by id in one request, with a result per id."""
        ...


class Outcome(StrEnum):
    """What became of one key the purge asked Elasticsearch to invalidate."""

    INVALIDATED = "invalidated"
    PREVIOUSLY_INVALIDATED = "previously_invalidated"
    NOT_FOUND = "not_found"  # no longer valid when asked: invalidated or deleted meanwhile
    ERROR = "error"


class Why(StrEnum):
    """Why a key was selected."""

    EXPIRED = "expired"
    RETIRED = "retired"  # rotator's own key whose retirement (or compensation) did not finish


@dataclass(frozen=True)
class PurgeSettings:
    """The ``purge`` section, as the job uses it."""

    expired_for: timedelta = timedelta(0)
    batch_size: int = 1000
    include_managed: bool = False
    exclude_names: tuple[str, ...] = ()
    exclude_metadata: Mapping[str, str | int | bool] = field(default_factory=dict)
    name_prefix: str | None = None
    retention: timedelta = timedelta(days=90)

    @classmethod
    def of(cls, config: PurgeConfig) -> PurgeSettings:
        """The settings of a validated ``purge`` section."""
        return cls(
            expired_for=config.expired_for,
            batch_size=config.batch_size,
            include_managed=config.include_managed,
            exclude_names=tuple(config.exclude.names),
            exclude_metadata=dict(config.exclude.metadata),
            name_prefix=config.name_prefix,
            retention=config.retention,
        )


@dataclass(frozen=True)
class Owner:
    """The identity the purge acts for: its keys are the only ones it selects."""

    username: str
    realm: str

    @classmethod
    def of(cls, me: Mapping[str, Any]) -> Owner:
        """The owner of the keys an ``_authenticate`` answer's identity creates.

        Raises:
            AuthorityRejected: the identity is an API key (it may see and invalidate only
                itself) or the answer names no user or realm.
        """
        if me.get("authentication_type") == "api_key" or me.get("api_key"):
            raise AuthorityRejected(
                "purge: rotator authenticates with an API key, which may only see itself; "
                "configure elasticsearch.username or a bearer token"
            )
        realm = (me.get("lookup_realm") or me.get("authentication_realm") or {}).get("name")
        username = me.get("username")
        if not username or not realm:
            raise AuthorityRejected("purge: _authenticate named no username or realm")
        return cls(str(username), str(realm))

    def __str__(self) -> str:
        return f"{self.username}@{self.realm}"


# --- selection (pure) ----------------------------------------------------------------------------


def is_managed(key: KeyInfo) -> bool:
    """Kibana's rule for a managed key: ``metadata.managed`` true or an ``Alerting: `` name."""
    return key.metadata.get("managed") is True or key.name.startswith(MANAGED_NAME_PREFIX)


def _keyword(value: Any) -> str:
    """A metadata value as Elasticsearch's flattened field compares it."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _metadata_values(metadata: Mapping[str, Any], path: str) -> list[Any]:
    node: Any = metadata
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return []
        node = node[part]
    return list(node) if isinstance(node, list) else [node]


def _name_matches(name: str, pattern: str) -> bool:
    """Wildcards as Elasticsearch's ``wildcard`` query reads them: ``*`` any run, ``?`` one."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.DOTALL) is not None


def excluded(key: KeyInfo, settings: PurgeSettings) -> bool:
    """Whether ``purge.exclude`` protects the key (a name pattern or a metadata match)."""
    if any(_name_matches(key.name, p) for p in settings.exclude_names):
        return True
    return any(
        _keyword(v) == _keyword(want)
        for path, want in settings.exclude_metadata.items()
        for v in _metadata_values(key.metadata, path)
    )


def selectable(key: KeyInfo, owner: Owner, cutoff: datetime, settings: PurgeSettings) -> bool:
    """Whether the purge may invalidate ``key``: the owner's REST key, valid, expired at or
    before ``cutoff``, neither managed (unless included) nor excluded."""
    return (
        key.username == owner.username
        and key.realm == owner.realm
        and not key.invalidated
        and key.type == "rest"
        and key.expiration is not None
        and key.expiration <= cutoff
        and (settings.name_prefix is None or key.name.startswith(settings.name_prefix))
        and (settings.include_managed or not is_managed(key))
        and not excluded(key, settings)
    )


def purge_query(owner: Owner, cutoff: datetime, settings: PurgeSettings) -> dict[str, Any]:
    """The query API's query for what :func:`selectable` accepts (which checks it again)."""
    cutoff_ms = int(cutoff.timestamp() * 1000)
    filters: list[dict[str, Any]] = [
        {"term": {"username": owner.username}},
        {"term": {"realm_name": owner.realm}},
        {"term": {"invalidated": False}},
        {"term": {"type": "rest"}},
        {"range": {"expiration": {"lte": cutoff_ms}}},
    ]
    if settings.name_prefix is not None:
        filters.append({"prefix": {"name": settings.name_prefix}})
    must_not: list[dict[str, Any]] = []
    if not settings.include_managed:
        must_not += [
            {"term": {"metadata.managed": True}},
            {"prefix": {"name": MANAGED_NAME_PREFIX}},
        ]
    must_not += [{"wildcard": {"name": p}} for p in settings.exclude_names]
    must_not += [{"term": {f"metadata.{k}": v}} for k, v in settings.exclude_metadata.items()]
    query: dict[str, Any] = {"filter": filters}
    if must_not:
        query["must_not"] = must_not
    return {"bool": query}


def name_prefix(name: str) -> str:
    """What a key's name starts with, for the summary: up to its first separator."""
    match = _PREFIX_END.search(name)
    return name[: match.end()] if match and match.end() > 1 else name


@dataclass(frozen=True)
class Candidate:
    """A key the purge selected."""

    id: str
    name: str
    username: str
    realm: str
    expiration: datetime | None
    why: Why = Why.EXPIRED

    def tombstone(
        self, outcome: Outcome, run_id: str, now: datetime, error: str | None
    ) -> Tombstone:
        """The store's record of what became of it."""
        return Tombstone(
            es_id=self.id,
            name=self.name,
            owner=self.username,
            realm=self.realm,
            expired_at=self.expiration,
            outcome=outcome.value,
            reason=self.why.value,
            run_id=run_id,
            purged_at=now,
            error=error,
        )


@dataclass
class Selection:
    """What a run selected (a dry run: what it would invalidate)."""

    count: int = 0
    oldest: datetime | None = None  # the earliest expiration
    by_owner: Counter[str] = field(default_factory=Counter)
    by_prefix: Counter[str] = field(default_factory=Counter)
    ids: list[str] = field(default_factory=list)

    def add(self, candidate: Candidate) -> None:
        """Count one more selected key."""
        self.count += 1
        if candidate.expiration is not None and (
            self.oldest is None or candidate.expiration < self.oldest
        ):
            self.oldest = candidate.expiration
        self.by_owner[f"{candidate.username}@{candidate.realm}"] += 1
        self.by_prefix[name_prefix(candidate.name)] += 1
        self.ids.append(candidate.id)

    def to_json(self) -> dict[str, Any]:
        """The selection for ``-o json``."""
        return {
            "count": self.count,
            "oldest_expiration": iso(self.oldest) if self.oldest else None,
            "by_owner": dict(self.by_owner.most_common()),
            "by_name_prefix": dict(self.by_prefix.most_common()),
            "ids": self.ids,
        }


@dataclass
class PurgeReport:
    """Everything one purge run did."""

    job: str = JOB
    run_id: str = ""
    dry_run: bool = False
    owner: str = ""
    cutoff: datetime | None = None
    selection: Selection = field(default_factory=Selection)
    results: dict[Outcome, list[str]] = field(default_factory=lambda: {o: [] for o in Outcome})
    errors: dict[str, str] = field(default_factory=dict)  # key id -> reason
    batches: int = 0
    tombstones_deleted: int = 0
    error: str | None = None  # why the run stopped short
    stopped: str | None = None  # the lease was lost
    duration_s: float = 0.0

    @property
    def failed(self) -> bool:
        """Whether some key could not be invalidated, or the run stopped short."""
        return bool(self.errors) or self.error is not None or self.stopped is not None

    def counts(self) -> dict[str, int]:
        """Keys by outcome."""
        return {o.value: len(ids) for o, ids in self.results.items()}

    def to_json(self) -> dict[str, Any]:
        """The report for ``-o json``."""
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "owner": self.owner,
            "expired_before": iso(self.cutoff) if self.cutoff else None,
            "selected": self.selection.to_json(),
        }
        if not self.dry_run:
            out["outcome"] = {o.value: ids for o, ids in self.results.items()}
            out["errors"] = self.errors
            out["tombstones_deleted"] = self.tombstones_deleted
        out["error"] = self.error or self.stopped
        return out


def outcome_of(key_id: str, result: InvalidationResult) -> tuple[Outcome, str]:
    """What became of ``key_id`` according to an invalidate answer (and the error, if any)."""
    if key_id in result.invalidated:
        return Outcome.INVALIDATED, ""
    if key_id in result.previously_invalidated:
        return Outcome.PREVIOUSLY_INVALIDATED, ""
    if key_id in result.errors:
        return Outcome.ERROR, result.errors[key_id]
    if "" in result.errors:  # an error naming no id: the ids no list accounts for failed
        return Outcome.ERROR, result.errors[""]
    return Outcome.NOT_FOUND, ""


def batched(items: Iterator[Candidate], size: int) -> Iterator[list[Candidate]]:
    """``items`` in lists of at most ``size``."""
    batch: list[Candidate] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- the job -------------------------------------------------------------------------------------


class Purger:
    """Invalidates the caller's expired keys in batches and keeps the evidence."""

    def __init__(
        self,
        deps: Deps,
        units: PurgeUnits,
        authority: PurgeAuthority,
        settings: PurgeSettings,
    ) -> None:
        self._base = deps
        self._units = units
        self._authority = authority
        self.settings = settings

    def fenced(self, fence: Fence) -> Purger:
        """The same job, every write checked against ``fence``."""
        deps = replace(self._base, store=self._base.store.fenced(fence))
        return Purger(deps, self._units.fenced(fence), self._authority, self.settings)

    def run(
        self,
        *,
        dry_run: bool = False,
        expired_for: timedelta | None = None,
        limit: int | None = None,
    ) -> PurgeReport:
        """One pass: select, invalidate in batches (unless ``dry_run``), expire tombstones."""
        deps = self._base.for_run(JOB)
        report = PurgeReport(run_id=deps.run_id, dry_run=dry_run)
        started = deps.clock.monotonic()
        try:
            self._pass(deps, report, expired_for, limit)
        except LeaseLost as exc:
            report.stopped = exc.message
            deps.log.error(LogEvent.JOB_STOPPED_LEASE_LOST, error=exc.message)
        except RotatorError as exc:
            report.error = exc.message
            deps.log.error(LogEvent.PURGE_STOPPED, error=exc.message, batches=report.batches)
        report.duration_s = round(deps.clock.monotonic() - started, 3)
        if not dry_run and report.owner:
            _tell(deps, report)
        deps.log.info(
            LogEvent.JOB_FINISHED,
            dry_run=dry_run,
            owner=report.owner,
            selected=report.selection.count,
            batches=report.batches,
            failed=len(report.errors),
            tombstones_deleted=report.tombstones_deleted,
            duration_s=report.duration_s,
            **report.counts(),
        )
        return report

    def _pass(
        self,
        deps: Deps,
        report: PurgeReport,
        expired_for: timedelta | None,
        limit: int | None,
    ) -> None:
        owner = Owner.of(deps.retrying("authenticate", self._authority.whoami))
        now = deps.now()
        cutoff = now - (self.settings.expired_for if expired_for is None else expired_for)
        report.owner, report.cutoff = str(owner), cutoff
        chosen = self._candidates(deps, owner, cutoff, now, limit)
        for batch in batched(chosen, self.settings.batch_size):
            for candidate in batch:
                report.selection.add(candidate)
            if not report.dry_run:
                self._invalidate(deps, report, batch)
        if not report.dry_run:
            self._expire_tombstones(deps, report, now)

    def _candidates(
        self, deps: Deps, owner: Owner, cutoff: datetime, now: datetime, limit: int | None
    ) -> Iterator[Candidate]:
        """Rotator's unsettled retired keys first, then the owner's expired keys, oldest first."""
        budget = limit if limit is not None else -1
        with self._units.read() as uow:
            unsettled = [
                Candidate(r.es_id or "", r.name, owner.username, owner.realm, r.expires_at)
                for r in uow.tombstones.unsettled_keys(now)
            ]
        seen = {c.id for c in unsettled}
        for candidate in unsettled:
            if budget == 0:
                return
            budget -= 1
            yield replace(candidate, why=Why.RETIRED)
        query = purge_query(owner, cutoff, self.settings)
        for page in self._authority.query_pages(query, page_size=self.settings.batch_size):
            for key in page:
                if key.id in seen or not selectable(key, owner, cutoff, self.settings):
                    continue
                if budget == 0:
                    return
                budget -= 1
                yield Candidate(key.id, key.name, key.username, key.realm, key.expiration)

    def _invalidate(self, deps: Deps, report: PurgeReport, batch: list[Candidate]) -> None:
        """One invalidate request for the batch (retried with backoff when it fails as a
        whole); each key's outcome is recorded. A batch refused for itself (a 4xx) leaves the
        next batches to go on; Elasticsearch unavailable, or refusing rotator's identity, stops
        the run (the next run takes up what is left)."""
        ids = [c.id for c in batch]
        failure: RotatorError | None = None
        try:
            result = deps.retrying("invalidate", lambda: self._authority.invalidate(ids))
        except RotatorError as exc:
            failure = exc
            result = InvalidationResult(errors={"": exc.message})
        report.batches += 1
        self._record(deps, report, batch, result)
        if failure is not None and type(failure) is not AuthorityRejected:
            raise failure

    def _record(
        self, deps: Deps, report: PurgeReport, batch: list[Candidate], result: InvalidationResult
    ) -> None:
        now = deps.now()
        outcomes = {c.id: outcome_of(c.id, result) for c in batch}
        with self._units.write() as uow:
            uow.tombstones.record(
                [
                    c.tombstone(outcomes[c.id][0], deps.run_id, now, outcomes[c.id][1] or None)
                    for c in batch
                ]
            )
            settled = [i for i, (o, _e) in outcomes.items() if o is not Outcome.ERROR]
            self._settle_rows(deps, uow, settled, now)
            self._audit_batch(deps, uow, report, outcomes)
        for key_id, (outcome, error) in outcomes.items():
            report.results[outcome].append(key_id)
            if outcome is Outcome.ERROR:
                report.errors[key_id] = error
                deps.log.warning(LogEvent.PURGE_KEY_FAILED, key_id=key_id, error=error)
        deps.log.info(
            LogEvent.PURGE_BATCH_DONE,
            batch=report.batches,
            keys=len(batch),
            **Counter(o.value for o, _e in outcomes.values()),
        )

    def _settle_rows(
        self, deps: Deps, uow: PurgeUnit, settled: Sequence[str], now: datetime
    ) -> None:
        """Rotator's own key rows among the settled ids are invalidated now."""
        for row in uow.tombstones.key_rows(settled):
            if KeyState.INVALIDATED not in KEY_TRANSITIONS[row.state]:
                continue
            uow.keys.transition(row, KeyState.INVALIDATED, now)
            deps.audit_in(
                uow,
                AuditAction.KEY_INVALIDATED,
                row.source_name or "-",
                key_id=row.es_id,
                reason="purged",
                run_id=deps.run_id,
            )

    def _audit_batch(
        self,
        deps: Deps,
        uow: PurgeUnit,
        report: PurgeReport,
        outcomes: Mapping[str, tuple[Outcome, str]],
    ) -> None:
        """One audit event per batch, listing the ids under each outcome."""
        listed: dict[str, Any] = {o.value: [] for o in Outcome if o is not Outcome.ERROR}
        errors: dict[str, str] = {}
        for key_id, (outcome, error) in outcomes.items():
            if outcome is Outcome.ERROR:
                errors[key_id] = error
            else:
                listed[outcome.value].append(key_id)
        if not errors:
            result = AuditOutcome.SUCCESS
        elif len(errors) < len(outcomes):
            result = AuditOutcome.WARNING
        else:
            result = AuditOutcome.FAILURE
        deps.audit_in(
            uow,
            AuditAction.KEYS_PURGED,
            report.owner,
            result,
            run_id=deps.run_id,
            batch=report.batches,
            **listed,
            errors=errors,
        )

    def _expire_tombstones(self, deps: Deps, report: PurgeReport, now: datetime) -> None:
        """Delete the tombstones older than the retention, one batch per transaction."""
        before = now - self.settings.retention
        size = self.settings.batch_size
        while True:
            with self._units.write() as uow:
                deleted = uow.tombstones.delete_older_than(before, size)
                if deleted:
                    deps.audit_in(
                        uow,
                        AuditAction.PURGE_TOMBSTONES_DELETED,
                        report.owner,
                        run_id=deps.run_id,
                        deleted=deleted,
                        recorded_before=iso(before),
                    )
            report.tombstones_deleted += deleted
            if deleted < size:
                break
        if report.tombstones_deleted:
            deps.log.info(
                LogEvent.PURGE_TOMBSTONES_DELETED,
                deleted=report.tombstones_deleted,
                recorded_before=iso(before),
            )


def _tell(deps: Deps, report: PurgeReport) -> None:
    """One ``purge_errors`` notice for a run with keys it could not invalidate; a run that went
    through without any ends the condition."""
    key = f"{NoticeKind.PURGE_ERRORS.value}:{report.owner}"
    if not report.errors:
        if report.error is None and report.stopped is None:
            resolve(deps.notifier, key)
        return
    reasons = sorted(set(report.errors.values()))
    deps.notify(
        Notice(
            NoticeKind.PURGE_ERRORS,
            Severity.WARNING,
            report.owner,
            f"the purge could not invalidate {len(report.errors)} key(s) of {report.owner}: "
            f"{reasons[0]}",
            key,
            {
                "owner": report.owner,
                "failed": len(report.errors),
                "key_ids": sorted(report.errors)[:20],
                "errors": reasons[:5],
            },
        )
    )
