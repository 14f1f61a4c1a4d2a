"""Composition root: the only place that builds concrete adapters from a Config."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from sqlalchemy.engine import Engine

from rotator.audit import AuditLog, default_actor
from rotator.clock import Clock
from rotator.config import Config
from rotator.jobs.context import Deps, Fence, no_checkpoint
from rotator.jobs.lifecycle import Lifecycle
from rotator.jobs.purge import PurgeAuthority, Purger, PurgeSettings
from rotator.model import SourceSpec
from rotator.notify import Notifier
from rotator.ports import KeyAuthority, KeyDirectory, Sink
from rotator.secrets import resolve_secret
from rotator.store.db import (
    make_engine,
    read_session_factory,
    require_current_schema,
    session_factory,
)
from rotator.store.tombstones import PurgeUnits
from rotator.store.uow import SqlUnitsOfWork

if TYPE_CHECKING:
    from rotator.jobs.track import Tracker


def open_engine(config: Config) -> Engine:
    """Build the store's engine from the config, resolving the password reference."""
    store = config.store
    password = resolve_secret(store.password_env, store.password_file, "store.password")
    return make_engine(
        store.url, password=password, busy_timeout=store.busy_timeout, echo=store.echo
    )


def open_current_store(config: Config) -> Engine:
    """Build the engine and refuse to go on when the schema is not at the head revision.

    Raises:
        SchemaBehind: the database has no schema yet or an older one.
        StoreUnavailable: the database cannot be reached.
    """
    engine = open_engine(config)
    try:
        require_current_schema(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def build_authority(config: Config) -> KeyAuthority:
    """The Elasticsearch key authority rotator's identity acts through."""
    from rotator.elastic import ElasticKeyAuthority, client_from_config

    return ElasticKeyAuthority(client_from_config(config.elasticsearch))


def build_deps(
    config: Config,
    engine: Engine,
    clock: Clock,
    *,
    authority: KeyAuthority | None = None,
    checkpoint: Callable[[str], None] | None = None,
    fence: Fence | None = None,
    notifier: Notifier | None = None,
) -> Deps:
    """The ports every job works through: store sessions, the Elasticsearch authority, the
    sinks, the audit log, and the fence of the leader lease (none for a lone writer)."""
    from rotator.delivery import build_sink

    if notifier is None:
        from rotator.notify_sinks import build_notifier

        notifier = build_notifier(config, engine, clock)
    sessions = session_factory(engine)
    if authority is None:
        authority = build_authority(config)
    cache: dict[str, list[Sink]] = {}

    def sinks(spec: SourceSpec) -> list[Sink]:
        if spec.name not in cache:
            cache[spec.name] = [build_sink(c, clock=clock, source=spec.name) for c in spec.sinks]
        return cache[spec.name]

    audit = AuditLog(sessions, actor=default_actor())
    store = SqlUnitsOfWork(
        sessions, audit, clock.now, fence=fence, reads=read_session_factory(engine)
    )
    return Deps(
        store=store,
        authority=authority,
        clock=clock,
        sinks=sinks,
        backoff_initial=config.service.backoff_initial,
        backoff_max=config.service.backoff_max,
        checkpoint=checkpoint or no_checkpoint,
        notifier=notifier,
    )


def build_lifecycle(
    config: Config,
    engine: Engine,
    clock: Clock,
    *,
    authority: KeyAuthority | None = None,
    checkpoint: Callable[[str], None] | None = None,
    fence: Fence | None = None,
) -> Lifecycle:
    """Wire the lifecycle job over :func:`build_deps`."""
    deps = build_deps(
        config, engine, clock, authority=authority, checkpoint=checkpoint, fence=fence
    )
    return Lifecycle(deps, max_parallel=config.service.max_parallel)


def build_tracker(
    config: Config,
    engine: Engine,
    clock: Clock,
    *,
    authority: KeyAuthority | None = None,
    fence: Fence | None = None,
    on_drift: Callable[[list[str]], None] | None = None,
    notifier: Notifier | None = None,
) -> Tracker:
    """Wire the track job (the key inventory) over :func:`build_deps`."""
    from rotator.jobs.track import Tracker, settings_from

    deps = build_deps(config, engine, clock, authority=authority, fence=fence, notifier=notifier)
    directory = cast("KeyDirectory", deps.authority)
    return Tracker(deps, directory, settings_from(config.managed_keys), on_drift=on_drift)


def build_purger(
    config: Config,
    engine: Engine,
    clock: Clock,
    *,
    authority: KeyAuthority | None = None,
    fence: Fence | None = None,
) -> Purger:
    """Wire the purge job over :func:`build_deps`; its tombstones share the store, the audit
    trail and the fence."""
    from typing import cast

    deps = build_deps(config, engine, clock, authority=authority, fence=fence)
    audit = AuditLog(session_factory(engine), actor=default_actor())
    units = PurgeUnits(
        session_factory(engine), audit, clock.now, fence=fence, reads=read_session_factory(engine)
    )
    purge_authority = cast("PurgeAuthority", deps.authority)
    return Purger(deps, units, purge_authority, PurgeSettings.of(config.purge))
