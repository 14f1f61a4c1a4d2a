"""Engines, sessions and the schema: connection setup, Alembic in code, schema checks.

SQLite gets WAL, foreign keys and a busy timeout on every connection, and real transactions
(pysqlite's own handling would start them late, after the first read). PostgreSQL URLs are sent
to psycopg 3. Passwords go into the URL object only, never into a message: every error names the
store by its URL with the password hidden.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

import rotator
from rotator.errors import (
    RotatorError,
    SchemaBehind,
    SchemaUnknown,
    StoreUnavailable,
    UsageError,
)

DEFAULT_BUSY_TIMEOUT = timedelta(seconds=15)
FILE_TEMPLATE = "%(year)d%(month).2d%(day).2d_%(rev)s_%(slug)s"
UPGRADE_HINT = "run `rotator db upgrade`"

# SQLite reports a missing table as an OperationalError; that is a schema problem, not an outage.
_SCHEMA_MESSAGES = ("no such table", "no such column")
# SQLite's answer for a file that is not a database (or is encrypted): no retry fixes it.
_NOT_A_DATABASE = ("file is not a database", "database disk image is malformed")
# An execution option: transactions on such a connection only read (see read_only).
READ_ONLY = "rotator_read_only"


class StoreNotADatabase(RotatorError):
    """store.url points at a file that is not a SQLite database: a configuration error."""

    exit_code = 2


@dataclass(frozen=True)
class SchemaStatus:
    """Where the store's schema stands against the newest migration this rotator ships.

    Attributes:
        current: The revision the store is at, or None when it has no schema yet.
        head: The newest revision this rotator knows.
        is_current: The store is at ``head``.
        is_behind: The store is empty or at an older known revision: an upgrade fixes it.
        is_empty: The store has no schema yet.
    """

    current: str | None
    head: str
    is_current: bool
    is_behind: bool
    is_empty: bool

    @property
    def is_unknown(self) -> bool:
        """The store is at a revision this rotator does not know (a newer rotator wrote it)."""
        return not (self.is_current or self.is_behind)


# --- engines and sessions ------------------------------------------------------------------------


def make_engine(
    url: str,
    *,
    password: str | None = None,
    busy_timeout: timedelta = DEFAULT_BUSY_TIMEOUT,
    echo: bool = False,
) -> Engine:
    """Build the engine for the store at ``url``; nothing connects until it is used.

    Args:
        url: A SQLAlchemy URL; ``postgresql://`` is upgraded to the psycopg 3 driver.
        password: The database password, kept out of ``url`` and out of every message.
        busy_timeout: How long to wait for a locked SQLite database or a PostgreSQL connection.
        echo: Log every SQL statement (parameters hold no secrets).
    """
    target = _with_driver(make_url(url))
    if password is not None:
        target = target.set(password=password)
    if target.get_backend_name() == "sqlite":
        return _sqlite_engine(target, busy_timeout, echo)
    return _server_engine(target, busy_timeout, echo)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session maker; objects stay readable after the caller's transaction commits."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def read_only(engine: Engine) -> Engine:
    """The same engine (and pool) for transactions that only read.

    On SQLite they begin DEFERRED instead of IMMEDIATE, so they read a WAL snapshot without
    waiting for a writer's lock; a write in such a transaction is refused by SQLite.
    """
    return engine.execution_options(**{READ_ONLY: True})


def read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for reading only (``rotator status``, ``plan``): they never take the write lock."""
    return session_factory(read_only(engine))


def redacted_url(url: URL | str) -> str:
    """Render ``url`` with its password hidden, for messages and logs."""
    parsed = make_url(url) if isinstance(url, str) else url
    return parsed.render_as_string(hide_password=True)


@contextmanager
def store_errors(engine: Engine) -> Iterator[None]:
    """Turn "cannot reach" and "locked" database errors into :class:`StoreUnavailable`.

    Raises:
        StoreUnavailable: the database refused the connection, timed out or stayed locked.
    """
    try:
        yield
    except sa_exc.OperationalError as exc:
        if _is_schema_error(exc):
            raise
        raise _unavailable(engine.url, _driver_reason(exc)) from None
    except sa_exc.DatabaseError as exc:
        if not str(exc.orig).startswith(_NOT_A_DATABASE):
            raise
        raise StoreNotADatabase(
            f"the store at {redacted_url(engine.url)} is not a SQLite database "
            f"({_driver_reason(exc)}): check store.url"
        ) from None
    except sa_exc.TimeoutError:
        raise _unavailable(engine.url, "no free connection in the pool") from None


def _with_driver(url: URL) -> URL:
    if url.drivername in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    return url


def _sqlite_engine(url: URL, busy_timeout: timedelta, echo: bool) -> Engine:
    seconds = busy_timeout.total_seconds()
    engine = sa.create_engine(url, echo=echo, connect_args={"timeout": seconds})
    sa.event.listen(engine, "connect", partial(_sqlite_on_connect, busy_ms=int(seconds * 1000)))
    sa.event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _record: object, busy_ms: int) -> None:
    # Let SQLAlchemy, not pysqlite, decide when a transaction begins (see _sqlite_on_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    finally:
        cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    # A real BEGIN, so reads and writes of one unit of work see one snapshot and DDL is atomic.
    # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then writes
    # gets SQLITE_BUSY at once (no busy wait) when another writer got there first, which breaks
    # parallel workers. A read-only transaction begins DEFERRED: it takes no lock at all and
    # reads its WAL snapshot while a writer works.
    if connection.get_execution_options().get(READ_ONLY):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _server_engine(url: URL, busy_timeout: timedelta, echo: bool) -> Engine:
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = max(1, math.ceil(busy_timeout.total_seconds()))
    return sa.create_engine(url, echo=echo, pool_pre_ping=True, connect_args=connect_args)


def _is_schema_error(exc: sa_exc.OperationalError) -> bool:
    return str(exc.orig).startswith(_SCHEMA_MESSAGES)


def _driver_reason(exc: sa_exc.DBAPIError) -> str:
    lines = str(exc.orig).strip().splitlines()
    return lines[0] if lines else type(exc.orig).__name__


def _unavailable(url: URL, reason: str) -> StoreUnavailable:
    if url.password:
        reason = reason.replace(str(url.password), "***")
    return StoreUnavailable(f"the store at {redacted_url(url)} is unavailable: {reason}")


# --- migrations ----------------------------------------------------------------------------------


def migrations_dir() -> Path:
    """Return the migrations: ``migrations/`` of a checkout, or the copy an installed wheel holds.

    Raises:
        RotatorError: neither is present.
    """
    package = Path(rotator.__file__).resolve().parent
    candidates = (package.parent / "migrations", package / "_migrations")
    for path in candidates:
        if (path / "env.py").is_file():
            return path
    raise RotatorError(
        f"cannot find the database migrations (looked in {candidates[0]} and {candidates[1]}); "
        "reinstall rotator"
    )


def alembic_config(engine: Engine | None = None) -> Config:
    """Build the Alembic configuration in code, independent of the working directory.

    Args:
        engine: The store to migrate; ``migrations/env.py`` connects through it.
    """
    config = Config()
    config.set_main_option("script_location", _escape(str(migrations_dir())))
    config.set_main_option("file_template", _escape(FILE_TEMPLATE))
    config.set_main_option("timezone", "UTC")
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the store up to ``revision``.

    Raises:
        StoreUnavailable: the database could not be reached or stayed locked.
    """
    _run_alembic(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the store down to ``revision`` (``base`` drops every table).

    Raises:
        StoreUnavailable: the database could not be reached or stayed locked.
    """
    _run_alembic(engine, command.downgrade, revision)


def current_revision(engine: Engine) -> str | None:
    """Return the store's revision, or None when it has no schema yet.

    A SQLite file that does not exist has no schema: it is not created to find that out.

    Raises:
        StoreUnavailable: the database could not be reached or stayed locked.
        StoreNotADatabase: the SQLite file is not a database.
    """
    if _missing_sqlite_file(engine.url):
        return None
    with store_errors(engine), read_only(engine).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _missing_sqlite_file(url: URL) -> bool:
    if url.get_backend_name() != "sqlite" or url.query.get("uri"):
        return False
    database = url.database or ""
    if database in ("", ":memory:"):
        return False
    # A missing directory is left to SQLite, which says it cannot open the file (and creates none).
    path = Path(database)
    return path.parent.is_dir() and not path.exists()


def head_revision() -> str:
    """Return the newest revision this rotator ships."""
    head = _script().get_current_head()
    if head is None:
        raise RotatorError(f"no migrations found in {migrations_dir()}")
    return head


def schema_status(engine: Engine) -> SchemaStatus:
    """Compare the store's revision with the newest one this rotator ships.

    Raises:
        StoreUnavailable: the database could not be reached or stayed locked.
    """
    script = _script()
    head = head_revision()
    current = current_revision(engine)
    is_current = current == head
    known = current is None or _is_known(script, current)
    return SchemaStatus(
        current=current,
        head=head,
        is_current=is_current,
        is_behind=known and not is_current,
        is_empty=current is None,
    )


def require_current_schema(engine: Engine) -> SchemaStatus:
    """Return the schema status if the store is at head, or say exactly what to do.

    Raises:
        SchemaBehind: the store has no schema yet or an older one.
        SchemaUnknown: the store is at a revision this rotator does not know.
        StoreUnavailable: the database could not be reached or stayed locked.
    """
    status = schema_status(engine)
    where = f"the store at {redacted_url(engine.url)}"
    if status.is_empty:
        raise SchemaBehind(f"{where} has no schema yet: {UPGRADE_HINT}")
    if status.is_behind:
        raise SchemaBehind(
            f"{where} is at revision {status.current} but this rotator needs {status.head}: "
            f"{UPGRADE_HINT}"
        )
    if status.is_unknown:
        raise SchemaUnknown(
            f"{where} is at revision {status.current}, which this rotator does not know "
            f"(it needs {status.head}); a newer rotator migrated it: run that version"
        )
    return status


def _run_alembic(engine: Engine, action: Callable[[Config, str], None], revision: str) -> None:
    config = alembic_config(engine)
    if not revision.strip():
        raise _unknown_revision(revision, "no revision given")
    with store_errors(engine), engine.connect() as connection:
        config.attributes["connection"] = connection
        try:
            action(config, revision)
        except CommandError as exc:
            raise _unknown_revision(revision, str(exc).strip().splitlines()[0]) from None
        if connection.in_transaction():
            connection.commit()


def _unknown_revision(revision: str, reason: str) -> UsageError:
    known = [r.revision for r in _script().walk_revisions()]
    shown = revision if len(revision) <= 40 else f"{revision[:40]}..."
    return UsageError(
        f"cannot migrate to revision {shown!r}: {reason}; use head, base, a relative step "
        f"such as head-1, or one of {', '.join(reversed(known))}"
    )


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def _is_known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except (CommandError, ValueError, KeyError):
        return False


def _escape(value: str) -> str:
    # Config values go through ConfigParser interpolation, where "%" starts a reference.
    return value.replace("%", "%%")
