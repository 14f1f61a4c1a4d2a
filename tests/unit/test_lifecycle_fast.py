"""The lifecycle over the in-memory unit of work: the real plan, pipeline and recovery, fast."""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import rotator.jobs
from rotator.clock import ManualClock
from rotator.errors import LeaseLost
from rotator.jobs.context import Deps, no_checkpoint
from rotator.jobs.lifecycle import JobReport, Lifecycle
from rotator.model import SourceSpec
from rotator.ports import KeyInfo
from rotator.scoping import Grants
from rotator.states import KeyState, RotationState
from rotator.store.models import ApiKey, Rotation
from rotator.vocabulary import AuditAction
from tests.fakes.authority import FakeKeyAuthority
from tests.fakes.sinks import MemorySink
from tests.fakes.store import InMemoryStore

JOBS = Path(rotator.jobs.__file__).parent


def _session_uses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and any(a.name == "Session" for a in node.names):
            found.append(f"{path.name}:{node.lineno} imports Session")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            found.append(f"{path.name}:{node.lineno} imports {node.module}")
        elif isinstance(node, ast.Import) and any(
            a.name.startswith("sqlalchemy") for a in node.names
        ):
            found.append(f"{path.name}:{node.lineno} imports sqlalchemy")
        elif isinstance(node, ast.Name) and node.id in {"session", "Session"}:
            found.append(f"{path.name}:{node.lineno} uses {node.id}")
        elif isinstance(node, ast.arg) and node.arg == "session":
            found.append(f"{path.name}:{node.lineno} takes a session")
    return found


def test_the_jobs_reach_the_store_only_through_the_unit_of_work() -> None:
    sources = sorted(JOBS.glob("*.py"))
    assert sources
    assert [use for path in sources for use in _session_uses(path)] == []


def test_the_scan_sees_a_session_call(tmp_path: Path) -> None:
    job = tmp_path / "job.py"
    job.write_text("from sqlalchemy.orm import Session\n\ndef f(session):\n    session.get(1)\n")
    assert len(_session_uses(job)) == 3


# --- the lifecycle over in-memory ports ----------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIFETIME, ROTATE_BEFORE, OVERLAP = timedelta(days=30), timedelta(days=10), timedelta(hours=24)


class Crash(BaseException):
    """The process dies here: nothing in the job catches it, nothing after it runs."""


def _spec(name: str = "web") -> SourceSpec:
    return SourceSpec(
        name=name,
        grants=Grants.build(["monitor"], [([f"logs-{name}-default"], ["create_doc"])]),
        metadata=(),
        lifetime=LIFETIME,
        rotate_before=ROTATE_BEFORE,
        overlap=OVERLAP,
        jitter=timedelta(0),
        critical_before=timedelta(hours=24),
    )


@dataclass
class World:
    """The real lifecycle wired to the in-memory store, authority and sink."""

    clock: ManualClock
    store: InMemoryStore
    authority: FakeKeyAuthority
    sink: MemorySink
    spec: SourceSpec

    def lifecycle(self, checkpoint: Callable[[str], None] = no_checkpoint) -> Lifecycle:
        deps = Deps(
            store=self.store,
            authority=self.authority,
            clock=self.clock,
            sinks=lambda _spec: [self.sink],
            checkpoint=checkpoint,
        )
        return Lifecycle(deps, max_parallel=1)

    def run(self) -> JobReport:
        return self.lifecycle().run([self.spec])

    def keys(self) -> list[ApiKey]:
        return sorted(self.store.snapshot().keys.values(), key=lambda k: k.id)

    def rotations(self) -> list[Rotation]:
        return sorted(self.store.snapshot().rotations.values(), key=lambda r: r.started_at)

    def actions(self) -> list[str]:
        return [e.action for e in self.store.snapshot().events]

    def es(self, key_id: str | None) -> KeyInfo:
        return self.authority.get([key_id or ""])[key_id or ""]


@pytest.fixture
def world() -> World:
    clock = ManualClock(T0)
    return World(clock, InMemoryStore(), FakeKeyAuthority(clock), MemorySink(), _spec())


def _kinds(report: JobReport) -> list[tuple[str, bool]]:
    return [(o.action.kind.value, o.ok) for o in report.outcomes]


def test_a_new_source_gets_a_verified_delivered_active_key(world: World) -> None:
    report = world.run()
    assert _kinds(report) == [("provision", True)]
    [row] = world.keys()
    assert row.state is KeyState.ACTIVE
    assert world.sink.current is not None
    assert world.sink.current.id == row.es_id == report.outcomes[0].key_id
    assert not world.es(row.es_id).invalidated
    assert world.actions() == [
        AuditAction.ROTATION_STARTED.value,
        AuditAction.KEY_VERIFIED.value,
        AuditAction.KEY_DELIVERED.value,
        AuditAction.KEY_ACTIVATED.value,
    ]
    assert world.store.verify_audit_chain() == (True, 4)
    assert _kinds(world.run()) == []


def test_a_renewed_key_overlaps_the_old_one_which_is_retired_after_the_overlap(
    world: World,
) -> None:
    world.run()
    [old] = world.keys()
    world.clock.advance(LIFETIME - ROTATE_BEFORE + timedelta(minutes=1))
    assert _kinds(world.run()) == [("rotate", True)]
    retiring, current = world.keys()
    assert (retiring.es_id, retiring.state) == (old.es_id, KeyState.RETIRING)
    assert retiring.retire_at == world.clock.now() + OVERLAP
    assert current.state is KeyState.ACTIVE
    assert current.generation == old.generation + 1
    assert world.sink.current is not None
    assert world.sink.current.id == current.es_id
    assert not world.es(old.es_id).invalidated  # the overlap: both keys work
    world.clock.advance(OVERLAP + timedelta(minutes=1))
    assert _kinds(world.run()) == [("retire", True)]
    retired, still_current = world.keys()
    assert retired.state is KeyState.INVALIDATED
    assert world.es(old.es_id).invalidated
    assert still_current.state is KeyState.ACTIVE
    assert not world.es(still_current.es_id).invalidated
    assert world.store.verify_audit_chain()[0]


def test_a_key_failing_verification_is_invalidated_and_never_delivered(world: World) -> None:
    world.authority.set_roles({"rotator": {"cluster": ["manage_own_api_key"], "indices": []}})
    report = world.run()
    assert ("provision", False) in _kinds(report)
    [row] = world.keys()
    assert row.state is KeyState.INVALIDATED
    assert world.es(row.es_id).invalidated
    assert world.sink.delivered == []
    [rotation] = world.rotations()
    assert rotation.state is RotationState.COMPENSATED
    source = world.store.snapshot().sources["web"]
    assert source.failure_count == 1
    assert source.next_attempt_at is not None
    assert "verification" in (source.last_error or "")


def test_a_lost_create_answer_is_reconciled_and_the_retry_provisions(world: World) -> None:
    world.authority.lose_next_create_answers(1)
    report = world.run()
    assert _kinds(report) == [("provision", True)]
    made = [k for k in world.authority.all_keys() if k.metadata.get("source") == "web"]
    assert len(made) == 2
    lost, kept = made
    assert lost.invalidated
    assert not kept.invalidated
    [row] = world.keys()
    assert (row.es_id, row.state) == (kept.id, KeyState.ACTIVE)
    assert lost.metadata["rotation_id"] == kept.metadata["rotation_id"] == row.rotation_id


def test_a_crash_after_the_sink_took_the_key_is_recovered_by_activating_it(
    world: World,
) -> None:
    def crash(name: str) -> None:
        if name == "sink-delivered":
            raise Crash(name)

    with pytest.raises(Crash):
        world.lifecycle(crash).run([world.spec])
    [row] = world.keys()
    assert row.state is KeyState.VERIFIED
    assert world.sink.current is not None
    assert world.sink.current.id == row.es_id
    report = world.run()
    assert _kinds(report) == [("resume", True)]
    [row] = world.keys()
    assert row.state is KeyState.ACTIVE
    assert not world.es(row.es_id).invalidated
    assert [r.state for r in world.rotations()] == [RotationState.COMPLETED]
    assert world.store.verify_audit_chain()[0]


class GoneLease:
    """A fence whose lease another replica holds now: every write is refused."""

    lost = False

    def check(self, session: object, now: datetime) -> None:
        self.lost = True
        raise LeaseLost("another replica holds the lease")


def test_a_lifecycle_fenced_by_a_lost_lease_stops_before_writing(world: World) -> None:
    report = world.lifecycle().fenced(GoneLease()).run([world.spec])
    assert report.stopped is not None
    assert world.store.snapshot().sources == {}
    assert world.authority.all_keys() == []
    assert world.sink.delivered == []
