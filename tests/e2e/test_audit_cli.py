"""``rotator audit``, ``audit verify`` and ``audit export`` as an operator and an auditor run
them, on SQLite and PostgreSQL: the questions the trail answers, each kind of tampering found at
its sequence, offline verification of an export, following new events, and ``rotator run``
refusing a broken chain."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from rotator.audit import AUDIT_TABLE, Anchor, AuditLog, ChainEvent, tail, verify
from rotator.clock import SystemClock
from rotator.ports import AuditEntry
from rotator.store.db import session_factory
from rotator.vocabulary import AuditAction, AuditOutcome
from tests.cli_runner import Result, Run, in_process
from tests.e2e.conftest import World
from tests.e2e.test_cli_lifecycle import setup_config

ROOT = Path(__file__).resolve().parents[2]
CLOCK = SystemClock()
A = AuditAction
OK, FAILED = AuditOutcome.SUCCESS, AuditOutcome.FAILURE
DAEMON = "rotator:svc@db1[4242] epoch 3"
ALICE = "rotator:alice@laptop[77]"
FOLLOW = ("audit", "--follow", "--source", "web", "-o", "ndjson")


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    return in_process(capsys)


@dataclass
class Store:
    """A migrated store of one backend, with a config file pointing at it."""

    engine: Engine
    config: Path

    def record(
        self,
        at: datetime,
        action: AuditAction,
        subject: str,
        details: dict[str, Any] | None = None,
        *,
        actor: str = DAEMON,
        outcome: AuditOutcome = OK,
    ) -> int:
        log = AuditLog(session_factory(self.engine), actor)
        return log.record(
            now=at, action=action, subject=subject, outcome=outcome, details=details or {}
        )

    def rotator(self, run: Run, *args: str) -> Result:
        return run("--config", str(self.config), *args)

    def sql(self, *statements: str) -> None:
        with self.engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)

    @property
    def postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def drop_update_guard(self) -> None:
        if self.postgres:
            self.sql("DROP TRIGGER audit_events_guard ON audit_events")
        else:
            self.sql("DROP TRIGGER audit_events_no_update")

    def drop_delete_guard(self) -> None:
        if self.postgres:
            self.sql("DROP TRIGGER audit_events_guard ON audit_events")
        else:
            self.sql("DROP TRIGGER audit_events_no_delete")


@pytest.fixture
def store(migrated_engine: Engine, tmp_path: Path) -> Store:
    url = migrated_engine.url.render_as_string(hide_password=False)
    config = tmp_path / "rotator.yaml"
    config.write_text(f"store: {{url: '{url}'}}\nlog: {{level: warning}}\n")
    return Store(migrated_engine, config)


@pytest.fixture
def week(store: Store) -> Store:
    """A trail over ten days: web rotated twice, db once, a key purged by an operator."""
    now = CLOCK.now()
    store.record(now - timedelta(days=10), A.KEY_ACTIVATED, "web", {"key_id": "w1"})  # 1
    store.record(now - timedelta(days=3), A.ROTATION_STARTED, "web", {"previous_key_id": "w1"})
    store.record(now - timedelta(days=3), A.KEY_ACTIVATED, "web", {"key_id": "w2"})  # 3
    store.record(now - timedelta(days=2), A.KEY_ACTIVATED, "db", {"key_id": "d1"})  # 4
    store.record(
        now - timedelta(days=2),
        A.ROTATION_FAILED,
        "db",
        {"reason": "delivery failed"},
        outcome=FAILED,
    )  # 5
    store.record(now - timedelta(days=1), A.KEY_INVALIDATED, "web", {"key_id": "w1"})  # 6
    store.record(
        now - timedelta(hours=1),
        A.KEYS_PURGED,
        "rotator",
        {"invalidated": ["x9", "w1"], "errors": {}},
        actor=ALICE,
    )  # 7
    return store


def seqs_of_table(out: str) -> list[int]:
    lines = out.splitlines()
    assert lines[0].split() == ["SEQ", "TIME", "ACTOR", "ACTION", "SUBJECT", "OUTCOME", "DETAILS"]
    rows = [line.split() for line in lines[1:] if not line.endswith("event(s)")]
    return [int(cells[0]) for cells in rows if cells]


def seqs_of_json(out: str) -> list[int]:
    doc = json.loads(out)
    assert doc["count"] == len(doc["events"])
    return [e["seq"] for e in doc["events"]]


# --- the questions the trail answers -------------------------------------------------------------


def test_what_happened_to_a_source_this_week(week: Store, run: Run) -> None:
    done = week.rotator(run, "audit", "--source", "web", "--since", "7d")

    assert done.returncode == 0, done.stderr
    assert seqs_of_table(done.stdout) == [2, 3, 6]
    lines = done.stdout.splitlines()
    assert "rotation.started" in lines[1]
    assert "previous_key_id=w1" in lines[1]
    assert DAEMON in lines[2]
    assert lines[-1] == "3 event(s)"


def test_who_invalidated_a_key(week: Store, run: Run) -> None:
    done = week.rotator(run, "audit", "--key", "w1", "-o", "json")

    assert done.returncode == 0, done.stderr
    events = json.loads(done.stdout)["events"]
    assert [e["seq"] for e in events] == [1, 2, 6, 7]
    invalidations = [e for e in events if e["action"] in ("key.invalidated", "keys.purged")]
    assert [(e["action"], e["actor"]) for e in invalidations] == [
        ("key.invalidated", DAEMON),
        ("keys.purged", ALICE),
    ]
    only = week.rotator(run, "audit", "--key", "w1", "--action", "key.invalidated")
    assert seqs_of_table(only.stdout) == [6]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--action", "key."], [1, 3, 4, 6]),
        (["--action", "rotation."], [2, 5]),
        (["--action", "key.activated", "--source", "db"], [4]),
        (["--outcome", "failure"], [5]),
        (["--actor", "alice"], [7]),
        (["--actor", "EPOCH 3", "--source", "db"], [4, 5]),
        (["--since", "36h"], [6, 7]),
        (["--until", "5d"], [1]),
        (["--since", "4d", "--until", "36h"], [2, 3, 4, 5]),
        (["--key", "d1"], [4]),
        (["--source", "nowhere"], []),
    ],
)
def test_filters(week: Store, run: Run, args: list[str], expected: list[int]) -> None:
    done = week.rotator(run, "audit", *args, "-o", "json")
    assert done.returncode == 0, done.stderr
    assert seqs_of_json(done.stdout) == expected


def test_absolute_times_are_iso_8601(week: Store, run: Run) -> None:
    listed = week.rotator(run, "audit", "-o", "ndjson").stdout.splitlines()
    at = ChainEvent.from_json(json.loads(listed[2])).at  # events 2 and 3: 3 days ago
    since = at.astimezone(timezone(timedelta(hours=1))).isoformat()  # the same time, at +01:00
    until = (at + timedelta(days=1, seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    done = week.rotator(run, "audit", "--since", since, "--until", until, "-o", "json")

    assert done.returncode == 0, done.stderr
    assert seqs_of_json(done.stdout) == [2, 3, 4, 5]
    day = at.strftime("%Y-%m-%d")  # midnight UTC
    by_day = week.rotator(run, "audit", "--since", day, "--until", until, "-o", "json")
    assert seqs_of_json(by_day.stdout) == [2, 3, 4, 5]
    before = week.rotator(run, "audit", "--until", since, "-o", "json")
    assert seqs_of_json(before.stdout) == [1]


# --- outputs -------------------------------------------------------------------------------------


def test_outputs_carry_the_same_events(week: Store, run: Run) -> None:
    as_json = json.loads(week.rotator(run, "audit", "-o", "json").stdout)
    as_ndjson = week.rotator(run, "audit", "-o", "ndjson").stdout.splitlines()
    table = week.rotator(run, "audit").stdout

    assert as_json["count"] == 7
    assert [json.loads(line) for line in as_ndjson] == as_json["events"]
    events = [ChainEvent.from_json(e) for e in as_json["events"]]
    assert all(e.recomputed() == e.hash for e in events)
    assert events[6].details == {"invalidated": ["x9", "w1"], "errors": {}}
    assert seqs_of_table(table) == list(range(1, 8))
    row = table.splitlines()[7]
    assert row.split()[2:6] == [ALICE, "keys.purged", "rotator", "success"]
    assert row.endswith('invalidated=["x9","w1"]')  # the empty errors are left out


def test_nothing_selected_says_so(week: Store, run: Run) -> None:
    table = week.rotator(run, "audit", "--source", "nowhere")
    assert table.returncode == 0
    assert table.stdout.splitlines()[-1] == "no audit event matches"
    assert json.loads(week.rotator(run, "audit", "--key", "zz", "-o", "json").stdout) == {
        "events": [],
        "count": 0,
    }
    assert week.rotator(run, "audit", "--key", "zz", "-o", "ndjson").stdout == ""


def test_limit_gives_the_newest_events_oldest_first(week: Store, run: Run) -> None:
    assert seqs_of_json(week.rotator(run, "audit", "--limit", "3", "-o", "json").stdout) == [
        5,
        6,
        7,
    ]
    by_source = week.rotator(run, "audit", "--source", "web", "--limit", "2", "-o", "json")
    assert seqs_of_json(by_source.stdout) == [3, 6]


@pytest.fixture
def audit_selects() -> Iterator[list[str]]:
    """The statements reading audit events, from every engine the commands build."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM audit_events" in statement and "ORDER BY audit_events.seq" in statement:
            seen.append(statement)

    sa.event.listen(Engine, "before_cursor_execute", count)
    yield seen
    sa.event.remove(Engine, "before_cursor_execute", count)


def test_a_large_trail_is_read_in_pages(store: Store, run: Run, audit_selects: list[str]) -> None:
    log = AuditLog(session_factory(store.engine), DAEMON)
    with session_factory(store.engine)() as session, session.begin():
        entries = [AuditEntry(A.KEY_ACTIVATED, "web", OK, {"key_id": f"k{i}"}) for i in range(1201)]
        log.write_many(session, now=CLOCK.now(), events=entries)
    audit_selects.clear()

    lines = store.rotator(run, "audit", "-o", "ndjson").stdout.splitlines()

    assert [json.loads(line)["seq"] for line in lines] == list(range(1, 1202))
    assert len(audit_selects) == 3  # 500 + 500 + 201
    audit_selects.clear()
    table = store.rotator(run, "audit", "--source", "web").stdout
    assert seqs_of_table(table) == list(range(1, 1202))
    assert table.splitlines()[-1] == "1201 event(s)"
    assert len(audit_selects) == 3
    audit_selects.clear()
    exported = store.rotator(run, "audit", "export").stdout.splitlines()
    assert len(exported) == 1201
    assert len(audit_selects) == 3


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "last tuesday"], "--since: 'last tuesday' is not a time"),
        (["--until", "2026-02-30"], "--until: '2026-02-30' is not a time"),
        (["--since", "1d", "--until", "2d"], "--since '1d' is not before --until '2d'"),
        (["--action", "rotate"], "--action: no audit action starts with 'rotate'"),
        (["--limit", "0"], "--limit: must be at least 1"),
        (["--follow", "-o", "json"], "use -o table or -o ndjson"),
        (["--follow", "--until", "1d"], "cannot be combined with --until"),
        (["export", "--since", "soon"], "--since: 'soon' is not a time"),
        (["-o", "json", "export"], "-o do not apply"),
        (["--source", "web", "verify"], "--source do(es) not apply"),
    ],
)
def test_bad_input_is_named_and_exits_2(
    week: Store, run: Run, args: list[str], message: str
) -> None:
    done = week.rotator(run, "audit", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""


def test_a_store_without_the_schema_is_refused(tmp_path: Path, run: Run) -> None:
    config = tmp_path / "rotator.yaml"
    config.write_text(f"store: {{url: 'sqlite:///{tmp_path / 'empty.db'}'}}\n")
    done = run("--config", str(config), "audit")
    assert done.returncode == 2
    assert "rotator db upgrade" in done.stderr


# --- verify and tampering ------------------------------------------------------------------------


def test_an_intact_chain_verifies(week: Store, run: Run) -> None:
    done = week.rotator(run, "audit", "verify")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "audit chain intact: 7 event(s) verified (sequence 1..7)"
    doc = json.loads(week.rotator(run, "audit", "verify", "-o", "json").stdout)
    assert doc["ok"] is True
    assert doc["events"] == 7
    assert doc["broken_at"] is None


def test_the_triggers_refuse_update_and_delete(week: Store) -> None:
    for statement in (
        "UPDATE audit_events SET outcome = 'failure' WHERE seq = 3",
        "DELETE FROM audit_events WHERE seq = 3",
        "DELETE FROM audit_events WHERE seq = 7",
    ):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            week.sql(statement)
    with session_factory(week.engine)() as session:
        assert verify(session).ok


def hash_of(store: Store, seq: int) -> str:
    with session_factory(store.engine)() as session:
        return str(
            session.execute(
                sa.text("SELECT hash FROM audit_events WHERE seq = :seq"), {"seq": seq}
            ).scalar_one()
        )


def broken(done: Result, seq: int) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    line = done.stdout.strip()
    assert line.startswith(f"audit chain broken at sequence {seq}: "), line
    return line


def test_an_update_with_the_trigger_dropped_is_found(week: Store, run: Run) -> None:
    stored = hash_of(week, 3)
    week.drop_update_guard()
    week.sql("UPDATE audit_events SET actor = 'rotator:mallory@host[1]' WHERE seq = 3")

    line = broken(week.rotator(run, "audit", "verify"), 3)

    assert "its content does not match its hash" in line
    assert f"found {stored})" in line
    doc = json.loads(week.rotator(run, "audit", "verify", "-o", "json").stdout)
    assert (doc["ok"], doc["broken_at"], doc["found"]) == (False, 3, stored)
    assert len(doc["expected"]) == 64
    assert doc["expected"] != stored


def test_a_deleted_row_is_found(week: Store, run: Run) -> None:
    week.drop_delete_guard()
    week.sql("DELETE FROM audit_events WHERE seq = 4")

    line = broken(week.rotator(run, "audit", "verify"), 4)

    assert "event(s) 4..4 are missing" in line
    assert "(expected 4, found 5)" in line


def test_two_swapped_rows_are_found(week: Store, run: Run) -> None:
    table = AUDIT_TABLE
    content = [table.c[name] for name in ("at", "actor", "action", "subject", "outcome")]
    content.append(table.c.details_json)
    with week.engine.connect() as connection:
        rows = {
            seq: connection.execute(sa.select(*content).where(table.c.seq == seq)).one()._asdict()
            for seq in (3, 6)
        }
    week.drop_update_guard()
    with week.engine.begin() as connection:
        for seq, other in ((3, 6), (6, 3)):
            connection.execute(sa.update(table).where(table.c.seq == seq).values(**rows[other]))

    line = broken(week.rotator(run, "audit", "verify"), 3)

    assert "its content does not match its hash" in line
    listed = json.loads(week.rotator(run, "audit", "-o", "json").stdout)["events"]
    assert [e["details"].get("key_id") for e in listed][2] == "w1", "the rows really were swapped"


def test_the_newest_rows_deleted_are_found_only_through_the_anchor(
    week: Store, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rotator.audit_mirror

    with session_factory(week.engine)() as session:
        head_hash, next_seq = tail(session)
    anchor = Anchor(next_seq - 1, head_hash, "the mirror")
    week.drop_delete_guard()
    week.sql("DELETE FROM audit_events WHERE seq >= 6")

    with session_factory(week.engine)() as session:
        assert verify(session).ok, "the rest of the chain is intact on its own"
        found = verify(session, [anchor])
    assert not found.ok
    assert found.broken_at == 6
    assert "the newest event(s) 6..7 were removed" in found.reason

    monkeypatch.setattr(rotator.audit_mirror, "anchors", lambda _config, **_kw: [anchor])
    line = broken(week.rotator(run, "audit", "verify"), 6)
    assert "the anchor in the mirror names event 7" in line


def test_an_anchor_that_differs_from_the_stored_head_is_found(
    week: Store, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rotator.audit_mirror

    forged = Anchor(7, "e" * 64, "Elasticsearch")
    monkeypatch.setattr(rotator.audit_mirror, "anchors", lambda _config, **_kw: [forged])
    line = broken(week.rotator(run, "audit", "verify"), 7)
    assert "differs from the anchor in Elasticsearch" in line


# --- export and offline verification -------------------------------------------------------------


def export(store: Store, run: Run, path: Path, *args: str) -> list[str]:
    done = store.rotator(run, "audit", "export", *args)
    assert done.returncode == 0, done.stderr
    path.write_text(done.stdout)
    return done.stdout.splitlines()


def verify_file(run: Run, path: Path | str, *args: str) -> Result:
    return run("audit", "verify", "--file", str(path), *args)


@pytest.fixture
def no_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no rotator.yaml and no $ROTATOR_CONFIG: offline."""
    here = tmp_path / "offline"
    here.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.delenv("ROTATOR_CONFIG", raising=False)
    return here


def test_an_export_verifies_offline(week: Store, run: Run, tmp_path: Path, no_config: Path) -> None:
    whole = tmp_path / "whole.ndjson"
    lines = export(week, run, whole)
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, 8))

    done = verify_file(run, whole)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "audit chain intact: 7 event(s) verified (sequence 1..7)"
    assert not (no_config / "rotator.db").exists()


def test_an_export_of_a_time_range_verifies_on_its_own(
    week: Store, run: Run, tmp_path: Path
) -> None:
    part = tmp_path / "part.ndjson"
    done = week.rotator(run, "audit", "export", "--since", "4d", "--until", "36h")
    assert "rotator audit export: 4 event(s) (sequence 2..5)" in done.stderr
    part.write_text(done.stdout)

    checked = verify_file(run, part)

    assert checked.returncode == 0
    assert "4 event(s) verified (sequence 2..5)" in checked.stdout


def test_a_filtered_export_says_it_does_not_verify_on_its_own(
    week: Store, run: Run, tmp_path: Path
) -> None:
    done = week.rotator(run, "audit", "export", "--source", "web")
    assert "does not verify on its own" in done.stderr
    path = tmp_path / "web.ndjson"
    path.write_text(done.stdout)
    line = broken(verify_file(run, path), 4)  # web's events are 1, 2, 3 and 6
    assert "event(s) 4..5 are missing" in line


def test_a_tampered_export_line_is_found_at_its_sequence(
    week: Store, run: Run, tmp_path: Path
) -> None:
    path = tmp_path / "export.ndjson"
    lines = export(week, run, path)
    doc = json.loads(lines[4])
    assert doc["seq"] == 5
    doc["outcome"] = "success"  # hide the failure
    lines[4] = json.dumps(doc)
    path.write_text("\n".join(lines) + "\n")

    line = broken(verify_file(run, path), 5)

    assert "its content does not match its hash" in line
    assert f"found {doc['hash']})" in line


def test_a_line_removed_from_an_export_is_found(week: Store, run: Run, tmp_path: Path) -> None:
    path = tmp_path / "export.ndjson"
    lines = export(week, run, path)
    path.write_text("\n".join(lines[:2] + lines[3:]) + "\n")

    line = broken(verify_file(run, path), 3)
    assert "event(s) 3..3 are missing" in line


def test_a_malformed_line_is_named_and_exits_2(week: Store, run: Run, tmp_path: Path) -> None:
    path = tmp_path / "export.ndjson"
    lines = export(week, run, path)
    for bad in ('{"seq": 3, "at": "then"', '{"seq": 3}', "[1, 2]", "not json"):
        path.write_text("\n".join([*lines[:2], bad, *lines[3:]]) + "\n")
        done = verify_file(run, path)
        assert done.returncode == 2, bad
        assert f"--file {path}: line 3: " in done.stderr
        assert done.stdout == ""
    path.write_bytes(b"\n".join([line.encode() for line in lines[:3]] + [b"\xff\xfe"]) + b"\n")
    done = verify_file(run, path)
    assert done.returncode == 2
    assert "line 4: not UTF-8 text" in done.stderr


def test_an_unreadable_file_is_named_and_exits_2(run: Run, tmp_path: Path, no_config: Path) -> None:
    missing = tmp_path / "nope.ndjson"
    done = verify_file(run, missing)
    assert done.returncode == 2
    assert f"--file {missing}: cannot read it: No such file or directory" in done.stderr
    folder = verify_file(run, tmp_path)
    assert folder.returncode == 2
    assert f"--file {tmp_path}: cannot read it" in folder.stderr


# --- following -----------------------------------------------------------------------------------


class Lines:
    """A process's standard output, read line by line in a thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self._process = process
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._queue.put(line)

    def next(self, timeout: float = 20) -> str:
        return self._queue.get(timeout=timeout)


def test_follow_prints_new_events_until_interrupted(week: Store) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "rotator", "--config", str(week.config), *FOLLOW],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=week.config.parent,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        output = Lines(process)
        assert [json.loads(output.next())["seq"] for _ in range(4)] == [1, 2, 3, 6]
        week.record(CLOCK.now(), A.KEY_ACTIVATED, "db", {"key_id": "d2"})  # 8: filtered out
        week.record(CLOCK.now(), A.KEY_INVALIDATED, "web", {"key_id": "w2"})  # 9
        appended = json.loads(output.next())
        assert (appended["seq"], appended["details"]) == (9, {"key_id": "w2"})
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# --- rotator run refuses a broken chain ----------------------------------------------------------


def test_run_refuses_to_start_on_a_broken_chain(world: World, tmp_path: Path, run: Run) -> None:
    config = setup_config(world, tmp_path)
    log = AuditLog(session_factory(world.engine), DAEMON)
    for key in ("a", "b", "c"):
        log.record(
            now=CLOCK.now(),
            action=A.KEY_ACTIVATED,
            subject="web",
            outcome=OK,
            details={"key_id": key},
        )
    with world.engine.begin() as connection:
        connection.exec_driver_sql("DROP TRIGGER audit_events_no_update")
        connection.exec_driver_sql(
            'UPDATE audit_events SET details_json = \'{"key_id": "z"}\' WHERE seq = 2'
        )

    done = run("--config", str(config), "run")

    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-2].startswith("audit chain broken at sequence 2: its content does not match")
    assert lines[-1].startswith("rotator run: the audit trail's hash chain is broken")
    assert "nothing was scheduled" in lines[-1]
    assert not world.key_file("web").exists(), "nothing was provisioned"
