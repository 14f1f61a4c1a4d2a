"""Shared fixtures: a database URL for every store backend, engines and migrated sessions.

``db_url`` is a fresh SQLite file always, and a fresh PostgreSQL schema too when
``ROTATOR_TEST_DATABASE_URL`` names a server (for example
``postgresql://postgres@127.0.0.1:5432/test``); the schema is dropped after the test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from rotator.store.db import make_engine, session_factory, upgrade

POSTGRES_ENV = "ROTATOR_TEST_DATABASE_URL"


def _backends() -> list[object]:
    backends: list[object] = [pytest.param("sqlite", id="sqlite")]
    if os.environ.get(POSTGRES_ENV):
        backends.append(pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres))
    return backends


@pytest.fixture(params=_backends())
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty database of each configured backend, private to the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rotator.db'}"
    else:
        yield from _postgres_schema_url(os.environ[POSTGRES_ENV])


def _postgres_schema_url(server_url: str) -> Iterator[str]:
    schema = f"rotator_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(server_url)
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = make_url(server_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on the test's empty database."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def migrated_engine(engine: Engine) -> Engine:
    """An engine on a database built by the migrations (never ``create_all``)."""
    upgrade(engine)
    return engine


@pytest.fixture
def session(migrated_engine: Engine) -> Iterator[Session]:
    """A session on the migrated database; tests open their own ``session.begin()``."""
    with session_factory(migrated_engine)() as session:
        yield session
