"""The daemon: the jobs on an APScheduler BlockingScheduler, under the leader lease.

Every process runs the scheduler; only the one holding the leader lease runs jobs, the others
keep trying to take the lease and stay standby. SIGTERM and SIGINT stop scheduling, let the step
in progress finish (within ``service.shutdown_timeout``), release the lease and exit 0; SIGHUP
reloads the configuration, keeping the old one when the new one is invalid.
"""

from __future__ import annotations

import signal
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobEvent, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from rotator.clock import Clock, wall_now
from rotator.config import Config
from rotator.errors import ConfigError, RotatorError
from rotator.jobs.context import Fence
from rotator.leader import LeaderLease
from rotator.log import get_logger, redact_text
from rotator.model import specs_from_config
from rotator.scoping import Grants

_log = get_logger("rotator.service")

# The jobs this version runs, in the order they are registered.
JOBS = ("lifecycle", "track", "purge", "audit")
LEASE_JOB = "leader-lease"

# A job whose section is turned off is not registered, whatever its schedule.
JOB_ENABLED: dict[str, Callable[[Config], bool]] = {
    "track": lambda config: config.managed_keys.enabled,
    # The trail is always in the store; the job only copies it and applies its retention.
    "audit": lambda config: bool(
        config.audit.jsonl_path or config.audit.data_stream or config.audit.retention
    ),
    "purge": lambda config: config.purge.enabled,
}


def trigger_for(schedule: str) -> BaseTrigger:
    """A duration (``2s``, ``1m``, ``6h``) runs at that interval; five fields are a cron line.

    Raises:
        ValueError: neither a duration nor a valid cron expression.
    """
    from rotator.durations import parse_duration

    text = schedule.strip()
    if len(text.split()) == 5:
        return CronTrigger.from_crontab(text, timezone=UTC)
    return IntervalTrigger(seconds=parse_duration(text).total_seconds(), timezone=UTC)


def misfire_grace(trigger: BaseTrigger) -> int:
    """How late a run may still start: half an interval, at least a second, at most a minute."""
    if isinstance(trigger, IntervalTrigger):
        seconds = trigger.interval.total_seconds()
        return int(min(max(seconds / 2, 1), 60))
    return 60


@dataclass(frozen=True)
class JobSpec:
    """One scheduled job as registered: what the tests and the startup log read."""

    id: str
    trigger: BaseTrigger
    misfire_grace_time: int


def job_specs(config: Config) -> list[JobSpec]:
    """The jobs to register for ``config``: every job of this version that is enabled."""
    schedules = config.service.schedule
    out = []
    for job in JOBS:
        schedule = getattr(schedules, job)
        enabled = JOB_ENABLED.get(job)
        if schedule is None or (enabled is not None and not enabled(config)):
            continue
        trigger = trigger_for(schedule)
        out.append(JobSpec(job, trigger, misfire_grace(trigger)))
    return out


def build_scheduler(
    config: Config,
    run_job: Callable[[str], None],
    tick_lease: Callable[[], None],
    now: datetime,
    kind: type[BaseScheduler] = BlockingScheduler,
) -> BaseScheduler:
    """A scheduler in UTC, memory job store, jobs registered in code with explicit ids."""
    scheduler = kind(
        timezone=UTC,
        executors={"default": ThreadPoolExecutor(max_workers=len(JOBS) + 2)},
        job_defaults={"max_instances": 1, "coalesce": True},
    )
    ttl = config.service.lease_ttl.total_seconds()
    scheduler.add_job(
        tick_lease,
        IntervalTrigger(seconds=max(ttl / 3, 0.5), timezone=UTC),
        id=LEASE_JOB,
        name="renew or take the leader lease",
        misfire_grace_time=max(int(ttl / 3), 1),
        next_run_time=now,  # take or renew the lease first thing
    )
    for spec in job_specs(config):
        scheduler.add_job(
            run_job,
            spec.trigger,
            args=[spec.id],
            id=spec.id,
            name=spec.id,
            misfire_grace_time=spec.misfire_grace_time,
        )
    return scheduler


class StopAware:
    """The lease's fence, reporting ``lost`` also once the service is stopping: a job stops
    starting new actions, and finishes the one in progress."""

    def __init__(self, lease: LeaderLease, stopping: threading.Event) -> None:
        self._lease = lease
        self._stopping = stopping

    @property
    def lost(self) -> bool:
        """Whether the job must stop acting (lease lost, or shutting down)."""
        return self._lease.lost or self._stopping.is_set()

    def check(self, session: Session, now: datetime) -> None:
        """Fence the write with the lease (a stopping leader still finishes its step)."""
        self._lease.check(session, now)


class Service:
    """One ``rotator run`` process."""

    def __init__(
        self,
        config: Config,
        engine: Engine,
        clock: Clock,
        *,
        load_config: Callable[[], Config] | None = None,
        authority: Any = None,
    ) -> None:
        self._config = config
        self._engine = engine
        self._clock = clock
        self._load_config = load_config
        self._authority = authority
        self._stopping = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        from rotator.notify_sinks import build_notifier

        # The lease logs its own changes: its notices go to the notify sinks only.
        notifier = build_notifier(config, engine, clock, log=False)
        self.lease = LeaderLease(engine, clock, config.service.lease_ttl, notifier=notifier)
        self._fence: Fence = StopAware(self.lease, self._stopping)
        self._scheduler = build_scheduler(config, self.run_job, self.tick_lease, clock.now())
        self.counts: Counter[str] = Counter()
        self._scheduler.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
        # Health and metrics (rotator.health, rotator.metrics): served by serve().
        from rotator.health import HealthServer, Readiness
        from rotator.metrics import Metrics

        self.metrics = Metrics(engine, clock)
        self.metrics.schedule.jobs = lambda: job_specs(self._config)
        self.readiness = Readiness(
            engine=engine,
            clock=clock,
            metrics=self.metrics,
            lease=self.lease,
            lease_ttl=config.service.lease_ttl,
            jobs=lambda: job_specs(self._config),
            config=lambda: self._config,
            authority=authority,
        )
        self.health = HealthServer(self.readiness, self.metrics.registry)

    @property
    def scheduler(self) -> BaseScheduler:
        """The scheduler, with every job registered (started by :meth:`serve`)."""
        return self._scheduler

    # --- preflight ---------------------------------------------------------------------------

    def preflight(self) -> list[str]:
        """Everything that must hold before scheduling: one line per problem."""
        from rotator.app import build_authority

        authority = self._authority or build_authority(self._config)
        body = preflight_request(self._config)
        try:
            answer = authority.check_own_privileges(body)
        except RotatorError as exc:
            return [f"elasticsearch: {exc.message}"]
        return missing_privileges(self._config, answer)

    # --- the jobs ----------------------------------------------------------------------------

    def tick_lease(self) -> None:
        """Renew the lease while leading; otherwise try to take it (standby)."""
        if self._stopping.is_set():
            return
        ticked = False
        try:
            if self.lease.leading:
                self.lease.renew()
            elif self.lease.try_acquire():
                self._resume_interrupted()
            ticked = True
        except Exception as exc:
            _log.warning("lease_tick_failed", error=redact_text(str(exc))[:200])
        self.metrics.observe_lease(self.lease.leading, ticked=ticked)

    def run_job(self, job: str) -> None:
        """Run one job if this process leads; a failure is logged and never stops the scheduler."""
        if not self.lease.leading or self._stopping.is_set():
            return
        self._idle.clear()
        started, report, raised = self._clock.monotonic(), None, False
        try:
            report = self._runners[job]()
            if report.stopped:
                self.lease.audit_loss()
            elif job != "audit":
                self._copy_audit(retention=False)
        except Exception as exc:
            raised = True
            self.counts[f"failed:{job}"] += 1
            _log.error(
                "job_failed",
                job=job,
                error=redact_text(f"{type(exc).__name__}: {exc}")[:300],
                failed_total=self.counts[f"failed:{job}"],
            )
        finally:
            self.metrics.observe_job(job, report, started, raised=raised)
            self._idle.set()

    @property
    def _runners(self) -> dict[str, Callable[[], Any]]:
        """Each job's run, returning its report (``stopped`` says the lease was lost)."""
        return {
            "lifecycle": self._run_lifecycle,
            "track": self._run_track,
            "purge": self._run_purge,
            "audit": lambda: self._copy_audit(retention=True),
        }

    def _copy_audit(self, *, retention: bool) -> Any:
        """Bring the trail's copies up to date (and apply its retention): never raises."""
        from rotator.audit_mirror import sync_copies

        config = self._config
        if config.audit.jsonl_path is None and config.audit.data_stream is None and not retention:
            return None
        return sync_copies(
            config, self._engine, self._clock, retention=retention, authority=self._authority
        )

    def _run_lifecycle(self) -> Any:
        return self._lifecycle().run(specs_from_config(self._config))

    def _run_track(self) -> Any:
        from rotator.app import build_tracker

        tracker = build_tracker(
            self._config,
            self._engine,
            self._clock,
            authority=self._authority,
            fence=self._fence,
            on_drift=self._wake_lifecycle,
        )
        return tracker.run()

    def _run_purge(self) -> Any:
        from rotator.app import build_purger

        purger = build_purger(
            self._config, self._engine, self._clock, authority=self._authority, fence=self._fence
        )
        return purger.run()

    def _wake_lifecycle(self, sources: list[str]) -> None:
        """Run the lifecycle now: a current key changed in Elasticsearch (its planner decides)."""
        if self._scheduler.get_job("lifecycle") is None:
            return
        _log.info("lifecycle_woken", reason="current key drifted", sources=sources)
        self._scheduler.modify_job("lifecycle", next_run_time=wall_now())

    def _resume_interrupted(self) -> None:
        """A new leader first settles what the last one left unfinished."""
        self._idle.clear()
        try:
            self._lifecycle().recover(specs_from_config(self._config))
        except Exception as exc:
            _log.error("recovery_failed", error=redact_text(str(exc))[:300])
        finally:
            self._idle.set()

    def _lifecycle(self) -> Any:
        from rotator.app import build_lifecycle

        return build_lifecycle(
            self._config, self._engine, self._clock, authority=self._authority, fence=self._fence
        )

    def _on_event(self, event: JobEvent) -> None:
        """Count and log what the scheduler itself reports: missed runs and escaped errors."""
        if event.code == EVENT_JOB_MISSED:
            self.counts[f"missed:{event.job_id}"] += 1
            _log.warning(
                "job_missed",
                job=event.job_id,
                scheduled_at=str(event.scheduled_run_time),
                missed_total=self.counts[f"missed:{event.job_id}"],
            )
        elif isinstance(event, JobExecutionEvent) and event.exception is not None:
            self.counts[f"failed:{event.job_id}"] += 1
            _log.error(
                "job_failed",
                job=event.job_id,
                error=redact_text(f"{type(event.exception).__name__}: {event.exception}")[:300],
                failed_total=self.counts[f"failed:{event.job_id}"],
            )

    # --- running -----------------------------------------------------------------------------

    def serve(self) -> int:
        """Schedule the jobs and block until a signal stops the process; returns the exit code."""
        self._install_signals()
        for spec in job_specs(self._config):
            _log.info("job_scheduled", job=spec.id, trigger=str(spec.trigger))
        service = self._config.service
        self.health.start(service.listen, metrics_enabled=service.metrics_enabled)
        try:
            self._scheduler.start()  # returns once shutdown() is called
            finished = self._idle.wait(self._config.service.shutdown_timeout.total_seconds())
            self.lease.release()
            self.metrics.observe_lease(self.lease.leading, ticked=False)
        finally:
            self.health.stop()
        if not finished:
            _log.error("shutdown_timed_out", timeout=str(self._config.service.shutdown_timeout))
            return 1
        _log.info("stopped")
        return 0

    def stop(self, reason: str = "asked to stop") -> None:
        """Stop scheduling; the step in progress finishes."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        _log.info("stopping", reason=reason)
        self._scheduler.shutdown(wait=False)

    def reload(self) -> None:
        """Load the configuration again; an invalid one is logged and the old one kept."""
        if self._load_config is None:
            return
        try:
            config = self._load_config()
        except ConfigError as exc:
            for problem in exc.problems:
                _log.error("config_reload_refused", problem=problem)
            return
        self._config = config
        self._apply_schedules(config)
        _log.info("config_reloaded", sources=len(config.sources))

    def _apply_schedules(self, config: Config) -> None:
        """Bring the registered jobs in line with ``config``: reschedule, add or remove each.

        The lease TTL and the shutdown timeout take effect at the next start.
        """
        wanted = {spec.id: spec for spec in job_specs(config)}
        for job in JOBS:
            spec, registered = wanted.get(job), self._scheduler.get_job(job)
            if spec is None:
                if registered is not None:
                    self._scheduler.remove_job(job)
                    _log.info("job_unscheduled", job=job)
            elif registered is not None:
                self._scheduler.reschedule_job(job, trigger=spec.trigger)
                self._scheduler.modify_job(job, misfire_grace_time=spec.misfire_grace_time)
            else:
                self._scheduler.add_job(
                    self.run_job,
                    spec.trigger,
                    args=[job],
                    id=job,
                    name=job,
                    misfire_grace_time=spec.misfire_grace_time,
                )
            if spec is not None:
                _log.info("job_scheduled", job=job, trigger=str(spec.trigger))

    def _install_signals(self) -> None:
        def on_stop(signum: int, _frame: FrameType | None) -> None:
            self.stop(signal.Signals(signum).name)

        def on_hup(_signum: int, _frame: FrameType | None) -> None:
            threading.Thread(target=self.reload, name="reload", daemon=True).start()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)


# --- the privileges preflight ------------------------------------------------------------------

OWN_CLUSTER = ("manage_own_api_key",)


def delegated(config: Config) -> dict[str, Grants]:
    """What each source's key is given, which rotator's own identity must hold too (the specs,
    so rotator's implicit sources count: the audit trail's shipping key)."""
    return {s.name: s.grants for s in specs_from_config(config)}


def preflight_request(config: Config) -> dict[str, Any]:
    """One ``_has_privileges`` body asking everything rotator needs and delegates."""
    cluster = set(OWN_CLUSTER)
    index: dict[str, set[str]] = {}
    for grants in delegated(config).values():
        cluster.update(grants.cluster)
        for grant in grants.indices:
            for name in grant.names:
                index.setdefault(name, set()).update(grant.privileges)
    return {
        "cluster": sorted(cluster),
        "index": [{"names": [n], "privileges": sorted(p)} for n, p in sorted(index.items())],
    }


def missing_privileges(config: Config, answer: dict[str, Any]) -> list[str]:
    """One line per privilege rotator lacks, naming the source that needs it."""
    cluster = answer.get("cluster", {})
    index = answer.get("index", {})
    problems = [
        f"rotator's role lacks cluster privilege {p} (it creates and invalidates its keys)"
        for p in OWN_CLUSTER
        if cluster.get(p) is not True
    ]
    configured = {s.name for s in config.sources}
    for source, grants in delegated(config).items():
        where = (
            f"sources.{source}"
            if source in configured
            else f"audit.data_stream (source {source}, the audit trail's shipping key)"
        )
        problems += [
            f"{where}: rotator's role lacks cluster privilege {p}, which the source's "
            "key is given (Elasticsearch would silently leave it out)"
            for p in grants.cluster
            if cluster.get(p) is not True
        ]
        problems += [
            f"{where}: rotator's role lacks {p} on {n}, which the source's key is given "
            "(Elasticsearch would silently leave it out)"
            for g in grants.indices
            for n in g.names
            for p in g.privileges
            if index.get(n, {}).get(p) is not True
        ]
    return problems
