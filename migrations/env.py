"""Alembic environment: runs the migrations on a given connection, a given engine or a URL.

``rotator db upgrade`` passes its connection in ``config.attributes["connection"]``. Run as
``alembic upgrade head`` from the repository root, the URL comes from ``ROTATOR_DB_URL`` or, failing
that, from ``sqlalchemy.url`` in alembic.ini.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection, Engine

from rotator.store.db import make_engine
from rotator.store.models import Base

URL_ENV = "ROTATOR_DB_URL"

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    """Return the URL from the environment or the ini file."""
    url = os.environ.get(URL_ENV) or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(f"no database URL: set {URL_ENV} or sqlalchemy.url in alembic.ini")
    return url


def run_offline() -> None:
    """Write the migration SQL for the URL's dialect instead of running it."""
    url = database_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
        compare_type=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run the migrations on the given connection, or connect through an engine."""
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    given: Engine | None = config.attributes.get("engine")
    engine = given or make_engine(database_url())
    try:
        with engine.connect() as own_connection:
            run_on(own_connection)
    finally:
        if given is None:
            engine.dispose()


def run_on(connection: Connection) -> None:
    """Run every pending migration in one transaction on ``connection``."""
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=sqlite,
        # rotator's SQLite engine emits a real BEGIN, so DDL there is transactional too.
        transactional_ddl=True if sqlite else None,
    )
    deferred = foreign_keys_deferred(connection) if sqlite else nullcontext()
    with deferred, context.begin_transaction():
        context.run_migrations()
        if sqlite:
            check_foreign_keys(connection)


@contextmanager
def foreign_keys_deferred(connection: Connection) -> Iterator[None]:
    """Turn SQLite's foreign keys off while batch migrations copy and rename tables.

    The pragma only takes effect outside a transaction, so it goes straight to the driver.
    """
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys=ON")


def check_foreign_keys(connection: Connection) -> None:
    """Fail the migration (and roll it back) if it left a dangling reference."""
    problems = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if problems:
        raise RuntimeError(f"the migration broke foreign keys: {problems[:10]}")


if context.is_offline_mode():
    run_offline()
else:
    run_online()
