"""Migrations build and remove the schema on every backend and agree with the models."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from rotator.errors import SchemaBehind, SchemaUnknown, StoreUnavailable
from rotator.store import db
from rotator.store.db import (
    alembic_config,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    migrations_dir,
    redacted_url,
    require_current_schema,
    schema_status,
    upgrade,
)
from rotator.store.models import Base

TABLES = {
    "sources",
    "rotations",
    "api_keys",
    "tracked_keys",
    "inventory_sweeps",
    "audit_events",
    "leases",
}
TABLES |= {"purged_keys"}  # the purge job's tombstones
TABLES |= {"audit_checkpoints", "audit_cursors"}  # retention checkpoints, copies' progress
TABLES |= {"notices_sent"}  # what each notification sink was told
CHECKS = {
    "api_keys": {"ck_api_keys_state"},
    "rotations": {"ck_rotations_state"},
    "audit_events": {"ck_audit_events_hash_length"},
}
UPGRADE_HINT = "run `rotator db upgrade`"


def tables(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


# --- upgrade, downgrade, models ------------------------------------------------------------------


def test_upgrade_head_on_an_empty_database_creates_every_table(engine: Engine) -> None:
    assert tables(engine) == set()

    upgrade(engine)

    assert tables(engine) == TABLES
    assert current_revision(engine) == head_revision()


def test_downgrade_to_base_removes_everything_and_upgrade_works_again(engine: Engine) -> None:
    upgrade(engine)

    downgrade(engine, "base")
    assert tables(engine) == set()
    assert current_revision(engine) is None

    upgrade(engine)
    assert tables(engine) == TABLES


def test_models_and_migrations_agree(migrated_engine: Engine) -> None:
    with migrated_engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)

    assert differences == []


def test_check_constraints_exist_under_their_conventional_names(migrated_engine: Engine) -> None:
    inspector = sa.inspect(migrated_engine)

    found = {
        table: {check["name"] for check in inspector.get_check_constraints(table)}
        for table in CHECKS
    }

    assert found == CHECKS


def test_no_column_has_a_server_default_or_reads_the_database_clock(
    migrated_engine: Engine,
) -> None:
    inspector = sa.inspect(migrated_engine)
    defaults = {
        f"{table}.{column['name']}": column.get("default")
        for table in TABLES
        for column in inspector.get_columns(table)
        if column.get("default") is not None and "nextval" not in str(column.get("default"))
    }
    sources = "\n".join(p.read_text() for p in (migrations_dir() / "versions").glob("*.py"))

    assert defaults == {}
    assert not re.search(r"server_default|func\.now|CURRENT_TIMESTAMP|now\(\)", sources)


# --- the SQLite connection -----------------------------------------------------------------------


def test_sqlite_connections_use_wal_foreign_keys_and_the_busy_timeout(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'pragmas.db'}", busy_timeout=timedelta(seconds=7))
    try:
        with engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            assert pragma("PRAGMA busy_timeout").scalar() == 7000
    finally:
        engine.dispose()


def test_sqlite_migrations_leave_foreign_keys_on(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'fk.db'}")
    try:
        upgrade(engine)
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


# --- schema checks -------------------------------------------------------------------------------


def test_an_empty_store_has_no_schema_yet(engine: Engine) -> None:
    with pytest.raises(SchemaBehind) as raised:
        require_current_schema(engine)

    assert raised.value.message == (
        f"the store at {redacted_url(engine.url)} has no schema yet: {UPGRADE_HINT}"
    )
    status = schema_status(engine)
    assert (status.is_empty, status.is_behind, status.is_current) == (True, True, False)


def test_a_store_at_head_passes(migrated_engine: Engine) -> None:
    status = require_current_schema(migrated_engine)

    assert status.current == status.head == head_revision()
    assert (status.is_current, status.is_behind, status.is_empty) == (True, False, False)


def test_a_store_downgraded_to_base_needs_an_upgrade(migrated_engine: Engine) -> None:
    downgrade(migrated_engine, "base")

    with pytest.raises(SchemaBehind, match="has no schema yet"):
        require_current_schema(migrated_engine)


def test_a_store_at_an_older_revision_says_what_to_run(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_head = head_revision()
    upgrade(engine)
    new_head = _ship_a_newer_revision(tmp_path, monkeypatch, after=old_head)

    with pytest.raises(SchemaBehind) as raised:
        require_current_schema(engine)

    assert raised.value.message == (
        f"the store at {redacted_url(engine.url)} is at revision {old_head} "
        f"but this rotator needs {new_head}: {UPGRADE_HINT}"
    )
    upgrade(engine)
    assert require_current_schema(engine).current == new_head


def test_a_store_at_an_unknown_revision_is_refused(migrated_engine: Engine) -> None:
    with migrated_engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0123456789ab'")

    with pytest.raises(SchemaUnknown, match="0123456789ab, which this rotator does not know"):
        require_current_schema(migrated_engine)
    assert schema_status(migrated_engine).is_unknown


def test_a_failing_migration_leaves_the_store_as_it_was(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_head = head_revision()
    upgrade(engine)
    _ship_a_newer_revision(
        tmp_path,
        monkeypatch,
        after=old_head,
        upgrade_body='op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))\n'
        '    raise RuntimeError("migration failed halfway")',
    )

    with pytest.raises(RuntimeError, match="halfway"):
        upgrade(engine)

    assert "half_done" not in sa.inspect(engine).get_table_names()
    assert current_revision(engine) == old_head


def _ship_a_newer_revision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after: str, upgrade_body: str = "pass"
) -> str:
    copy = tmp_path / "migrations"
    shutil.copytree(migrations_dir(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    revision = "feedc0ffee00"
    (copy / "versions" / f"20991231_{revision}_next.py").write_text(
        f'"""Next."""\n\nimport sqlalchemy as sa\nfrom alembic import op\n\n'
        f'revision = "{revision}"\ndown_revision = "{after}"\n'
        "branch_labels = None\ndepends_on = None\n\n\n"
        f"def upgrade() -> None:\n    {upgrade_body}\n\n\n"
        "def downgrade() -> None:\n    pass\n"
    )
    monkeypatch.setattr(db, "migrations_dir", lambda: copy)
    return revision


# --- an unreachable store ------------------------------------------------------------------------

STORE_CALLS: list[Callable[[Engine], object]] = [current_revision, schema_status, upgrade]


@pytest.mark.parametrize("call", STORE_CALLS, ids=lambda call: call.__name__)
def test_an_unreachable_postgresql_is_unavailable_without_leaking_the_password(
    call: Callable[[Engine], object],
) -> None:
    engine = make_engine(
        "postgresql://rotator:url-s3cret-pw@127.0.0.1:1/rotator", busy_timeout=timedelta(seconds=2)
    )
    try:
        with pytest.raises(StoreUnavailable) as raised:
            call(engine)
    finally:
        engine.dispose()

    message = str(raised.value)
    assert "127.0.0.1:1/rotator" in message
    assert "url-s3cret-pw" not in message + repr(raised.value.args)
    assert raised.value.__cause__ is None
    assert raised.value.retryable


def test_a_password_given_apart_never_shows_in_the_error() -> None:
    engine = make_engine(
        "postgresql://rotator@127.0.0.1:1/rotator",
        password="kw-s3cret-pw",
        busy_timeout=timedelta(seconds=2),
    )
    try:
        assert engine.url.password == "kw-s3cret-pw"
        assert "kw-s3cret-pw" not in str(engine.url) + repr(engine)
        with pytest.raises(StoreUnavailable) as raised:
            require_current_schema(engine)
    finally:
        engine.dispose()

    assert "kw-s3cret-pw" not in str(raised.value)


def test_an_unopenable_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")
    try:
        with pytest.raises(StoreUnavailable, match="unable to open database file"):
            current_revision(engine)
    finally:
        engine.dispose()


def test_postgresql_urls_get_the_psycopg3_driver() -> None:
    for url in ("postgresql://u@db/rotator", "postgres://u@db/rotator"):
        assert make_engine(url).url.drivername == "postgresql+psycopg"
    assert make_engine("postgresql+psycopg://u@db/rotator").url.drivername == "postgresql+psycopg"


# --- the migration scripts themselves ------------------------------------------------------------


def test_revision_files_are_dated_static_and_reversible() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    revisions = list(script.walk_revisions())

    assert revisions, "no migrations found"
    for revision in revisions:
        path = Path(revision.path)
        source = path.read_text()
        assert re.fullmatch(rf"\d{{8}}_{revision.revision}_[a-z0-9_]+\.py", path.name), path.name
        assert "def downgrade() -> None:" in source
        assert not re.search(r"reflect|autoload|\.inspect\(", source), path.name


def test_the_alembic_config_does_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert head_revision() == ScriptDirectory(str(migrations_dir())).get_current_head()


def test_the_alembic_cli_runs_from_anywhere_with_the_url_from_the_environment(
    tmp_path: Path,
) -> None:
    ini = migrations_dir().parent / "alembic.ini"
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "ROTATOR_DB_URL": url}
    alembic = [sys.executable, "-m", "alembic", "-c", str(ini)]

    offline = subprocess.run(
        [*alembic, "upgrade", "head", "--sql"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    online = subprocess.run(
        [*alembic, "upgrade", "head"], cwd=tmp_path, env=env, capture_output=True, text=True
    )

    assert offline.returncode == 0, offline.stderr
    assert "CREATE TABLE sources" in offline.stdout
    assert online.returncode == 0, online.stderr
    engine = make_engine(url)
    try:
        assert tables(engine) == TABLES
    finally:
        engine.dispose()
