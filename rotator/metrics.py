"""Prometheus metrics of one ``rotator run`` process, in a registry of its own.

Two kinds of series:

- what the process saw: counters fed from each job's report (provisions, rotations, updates,
  invalidations and purged keys by result), job durations and last runs, Elasticsearch requests
  by endpoint and status, and whether this process leads;
- what the store says now: read at scrape time by :class:`StoreCollector` (each source's current
  key expiry and renewal time and its consecutive failures, the inventory by class, state and
  finding, the purge tombstones kept).

Labels are bounded: job names, action kinds, results, source names (from the configuration),
Elasticsearch API names and HTTP statuses, key classes, finding kinds. No key id, name or secret
is ever a label or a value.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from rotator.clock import Clock
from rotator.log import get_logger
from rotator.states import KeyState
from rotator.store.db import read_session_factory
from rotator.store.models import ApiKey, PurgedKey, Source, TrackedKey

_log = get_logger("rotator.metrics")

# Lifecycle action kinds counted by the four named counters (every kind is in actions_total).
COUNTED_KINDS = {
    "provision": "provisions",
    "rotate": "rotations",
    "update": "updates",
    "retire": "invalidations",
    "retire-source": "invalidations",
    "invalidate-orphan": "invalidations",
}
JOB_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
GONE = "gone"


def job_result(report: Any) -> str:
    """How a job run ended: ``ok``, ``stopped`` (the lease was lost) or ``failed`` (the run
    itself failed: the sweep or the purge stopped short, a copy of the audit trail failed).

    Failed actions of a run that completed (a source whose rotation failed) do not fail the run;
    the action counters and ``rotator_source_consecutive_failures`` show them.
    """
    if report is None:
        return "ok"
    if getattr(report, "stopped", None):
        return "stopped"
    if getattr(report, "error", None):
        return "failed"
    if type(report).__name__ == "CopyReport" and getattr(report, "problems", None):
        return "failed"
    return "ok"


class ScheduledJob(Protocol):
    """A registered job as :func:`rotator.service.job_specs` describes it."""

    @property
    def id(self) -> str: ...

    @property
    def trigger(self) -> Any: ...

    @property
    def misfire_grace_time(self) -> int: ...


def schedule_interval(trigger: Any, now: datetime) -> timedelta:
    """The time between two runs of a trigger: an interval's own, or the gap between a cron
    line's next two firings from ``now``."""
    interval = getattr(trigger, "interval", None)
    if isinstance(interval, timedelta):
        return interval
    first = trigger.get_next_fire_time(None, now)
    if first is None:
        return timedelta(0)
    second = trigger.get_next_fire_time(first, first + timedelta(seconds=1))
    return (second - first) if second is not None else timedelta(0)


class Metrics:
    """The registry of one service and what feeds it."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.leader = Gauge(
            "rotator_leader",
            "1 while this process holds the leader lease and runs the jobs, 0 on standby.",
            registry=registry,
        )
        self.actions = Counter(
            "rotator_lifecycle_actions",
            "Lifecycle actions by kind and result (ok or failed).",
            ["action", "result"],
            registry=registry,
        )
        self.by_kind = {
            name: Counter(
                f"rotator_{name}",
                f"Lifecycle {name} by source and result (ok or failed).",
                ["source", "result"],
                registry=registry,
            )
            for name in sorted(set(COUNTED_KINDS.values()))
        }
        self.job_runs = Counter(
            "rotator_job_runs",
            "Job runs by job and result (ok, failed, stopped: the lease was lost).",
            ["job_name", "result"],
            registry=registry,
        )
        self.job_duration = Histogram(
            "rotator_job_duration_seconds",
            "How long each job run took.",
            ["job_name"],
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.job_last_success = Gauge(
            "rotator_job_last_success_timestamp_seconds",
            "When each job last completed a run (Unix time).",
            ["job_name"],
            registry=registry,
        )
        self.job_last_run = Gauge(
            "rotator_job_last_run_timestamp_seconds",
            "When each job last ended a run, whatever its result (Unix time).",
            ["job_name"],
            registry=registry,
        )
        self.es_requests = Counter(
            "rotator_elasticsearch_requests",
            "Elasticsearch API calls by endpoint (the API name) and HTTP status "
            "(unreachable: no answer).",
            ["endpoint", "status"],
            registry=registry,
        )
        self.transitions = Counter(
            "rotator_inventory_transitions",
            "Keys of other owners seen appearing, expiring, being invalidated or deleted, and "
            "findings raised and cleared, by the track job.",
            ["transition"],
            registry=registry,
        )
        self.purged = Counter(
            "rotator_purge_keys",
            "Keys the purge job asked Elasticsearch to invalidate, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.last_tick: datetime | None = None
        self.leading_since: datetime | None = None
        self.last_run: dict[str, datetime] = {}
        self.store = StoreCollector(engine)
        registry.register(self.store)
        self.schedule = ScheduleCollector(clock)
        registry.register(self.schedule)
        self._observe_elasticsearch()

    # --- the lease ---------------------------------------------------------------------------

    def observe_lease(self, leading: bool, ticked: bool) -> None:
        """Record a tick of the lease: whether it worked (the store answered) and the role."""
        now = self._clock.now()
        with self._lock:
            if ticked:
                self.last_tick = now
            if leading and self.leading_since is None:
                self.leading_since = now
            elif not leading:
                self.leading_since = None
        self.leader.set(1 if leading else 0)

    # --- the jobs ----------------------------------------------------------------------------

    def observe_job(self, job: str, report: Any, started: float, *, raised: bool) -> None:
        """Record one run of ``job``: duration, result, last run and success, and what its
        report says (``started`` is the clock's monotonic reading when it began)."""
        self.job_duration.labels(job).observe(max(self._clock.monotonic() - started, 0.0))
        result = "failed" if raised else job_result(report)
        self.job_runs.labels(job, result).inc()
        now = self._clock.now()
        with self._lock:
            self.last_run[job] = now
        self.job_last_run.labels(job).set(now.timestamp())
        if result == "ok":
            self.job_last_success.labels(job).set(now.timestamp())
        if report is not None and not raised:
            try:
                self._count_report(job, report)
            except Exception as exc:  # a report of another shape must not fail the job
                _log.warning("metrics_report_unread", job=job, error=type(exc).__name__)

    def _count_report(self, job: str, report: Any) -> None:
        if job == "lifecycle":
            for outcome in getattr(report, "outcomes", ()):
                kind = str(outcome.action.kind.value)
                result = "ok" if outcome.ok else "failed"
                self.actions.labels(kind, result).inc()
                counter = COUNTED_KINDS.get(kind)
                if counter is not None:
                    self.by_kind[counter].labels(outcome.action.source, result).inc()
        elif job == "track":
            for transition, n in getattr(report, "transitions", Tally()).items():
                self.transitions.labels(str(transition)).inc(n)
        elif job == "purge" and not getattr(report, "dry_run", False):
            for outcome, ids in getattr(report, "results", {}).items():
                if ids:
                    self.purged.labels(str(getattr(outcome, "value", outcome))).inc(len(ids))

    def last_run_of(self, job: str) -> datetime | None:
        """When ``job`` last ended a run in this process (None: not yet)."""
        with self._lock:
            return self.last_run.get(job)

    # --- Elasticsearch -----------------------------------------------------------------------

    def observe_request(self, endpoint: str, status: str) -> None:
        """Count one Elasticsearch API call."""
        self.es_requests.labels(endpoint, status).inc()

    def _observe_elasticsearch(self) -> None:
        from rotator.elastic import set_request_observer

        set_request_observer(self.observe_request)


class ScheduleCollector(Collector):
    """``rotator_job_interval_seconds``: how often each registered job is scheduled."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.jobs: Callable[[], Iterable[ScheduledJob]] = list

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "rotator_job_interval_seconds",
            "The time between two scheduled runs of each registered job.",
            labels=["job_name"],
        )
        now = self._clock.now()
        for job in self.jobs():
            family.add_metric([job.id], schedule_interval(job.trigger, now).total_seconds())
        return [family]


class StoreCollector(Collector):
    """Series read from the store at scrape time; a store that does not answer yields only
    ``rotator_store_up 0`` (the scrape itself still succeeds)."""

    def __init__(self, engine: Engine) -> None:
        self._sessions = read_session_factory(engine)

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("rotator_store_up", "1 when the store answered this scrape.")
        try:
            families = list(self._families(read=True))
        except Exception as exc:
            _log.warning("metrics_store_unavailable", error=type(exc).__name__)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *families]

    def _families(self, *, read: bool = False) -> Iterator[GaugeMetricFamily]:
        expiry = GaugeMetricFamily(
            "rotator_key_expiry_timestamp_seconds",
            "When the current key of each source expires (Unix time).",
            labels=["source"],
        )
        renewal = GaugeMetricFamily(
            "rotator_key_renewal_timestamp_seconds",
            "When the current key of each source is due to be replaced (Unix time).",
            labels=["source"],
        )
        failures = GaugeMetricFamily(
            "rotator_source_consecutive_failures",
            "Failed attempts in a row at each source (0 once an attempt succeeds).",
            labels=["source"],
        )
        inventory = GaugeMetricFamily(
            "rotator_inventory_keys",
            "API keys the track job last saw, by class and state (gone: no longer returned).",
            labels=["key_class", "state"],
        )
        findings = GaugeMetricFamily(
            "rotator_inventory_findings",
            "Policy findings standing now, by key class and finding.",
            labels=["key_class", "finding"],
        )
        tombstones = GaugeMetricFamily(
            "rotator_purge_tombstones",
            "Keys the purge job acted on, kept for purge.retention, by outcome and reason.",
            labels=["outcome", "reason"],
        )
        if read:
            with self._sessions() as session:
                self._read_sources(session, expiry, renewal, failures)
                self._read_inventory(session, inventory, findings)
                rows = session.execute(
                    sa.select(PurgedKey.outcome, PurgedKey.reason, sa.func.count()).group_by(
                        PurgedKey.outcome, PurgedKey.reason
                    )
                )
                for outcome, reason, n in rows:
                    tombstones.add_metric([outcome, reason], n)
        yield from (expiry, renewal, failures, inventory, findings, tombstones)

    @staticmethod
    def _read_sources(
        session: Session,
        expiry: GaugeMetricFamily,
        renewal: GaugeMetricFamily,
        failures: GaugeMetricFamily,
    ) -> None:
        sources = session.execute(
            sa.select(Source.name, Source.failure_count)
            .where(Source.retired_at.is_(None))
            .order_by(Source.name)
        ).all()
        current: dict[str, tuple[datetime | None, datetime | None]] = {}
        keys = session.execute(
            sa.select(ApiKey.source_name, ApiKey.expires_at, ApiKey.renewal_at)
            .where(ApiKey.state == KeyState.ACTIVE, ApiKey.source_name.is_not(None))
            .order_by(ApiKey.generation)
        )
        for source, expires_at, renewal_at in keys:
            current[str(source)] = (expires_at, renewal_at)  # the newest generation wins
        for name, failure_count in sources:
            failures.add_metric([name], failure_count)
            expires_at, renewal_at = current.get(name, (None, None))
            if expires_at is not None:
                expiry.add_metric([name], expires_at.timestamp())
            if renewal_at is not None:
                renewal.add_metric([name], renewal_at.timestamp())

    @staticmethod
    def _read_inventory(
        session: Session, inventory: GaugeMetricFamily, findings: GaugeMetricFamily
    ) -> None:
        rows = session.execute(
            sa.select(TrackedKey.key_class, TrackedKey.state, sa.func.count())
            .group_by(TrackedKey.key_class, TrackedKey.state)
            .order_by(TrackedKey.key_class, TrackedKey.state)
        )
        for key_class, state, n in rows:
            inventory.add_metric([key_class, state], n)
        standing: Tally[tuple[str, str]] = Tally()
        listed = session.execute(
            sa.select(TrackedKey.key_class, TrackedKey.findings_json).where(
                TrackedKey.state != GONE
            )
        )
        for key_class, found in listed:
            for kind in {str(f.get("kind")) for f in found or () if f.get("kind")}:
                standing[(key_class, kind)] += 1
        for (key_class, kind), n in sorted(standing.items()):
            findings.add_metric([key_class, kind], n)
