"""Composition root: the only place that builds concrete adapters from a Config."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from rotator.config import Config
from rotator.secrets import resolve_secret
from rotator.store.db import make_engine, require_current_schema


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
