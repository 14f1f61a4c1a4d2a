"""``rotator sandbox demo``: provision, ship, rotate and retire against an in-process sandbox."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from rotator import audit
from rotator.app import build_lifecycle
from rotator.clock import ManualClock, SystemClock
from rotator.config import Config, parse_config
from rotator.durations import format_duration
from rotator.jobs.lifecycle import Lifecycle, Outcome
from rotator.model import ActionKind, SourceSpec, specs_from_config
from rotator.scoping import Grants, role_descriptors
from rotator.store import db

# The demo's sources, shipped inside the package (rotator/demo.yaml), so an installed wheel has it.
DEMO_CONFIG = "demo.yaml"
PASSWORD_ENV = "ROTATOR_DEMO_ES_PASSWORD"  # noqa: S105 - the name of a variable, not a secret
Emit = Callable[[str], None]


def rotator_role(specs: Sequence[SourceSpec]) -> dict[str, Any]:
    """The role rotator's own user needs: manage_own_api_key plus what it hands out.

    A key can never hold more than its owner, so the owner must hold every privilege its keys
    get, and nothing else.
    """
    merged = Grants()
    for spec in specs:
        merged = merged.union(spec.grants)
    body = role_descriptors("owner", merged)["rotator-owner"]
    body["cluster"] = sorted({"manage_own_api_key", *body["cluster"]})
    return dict(body)


def demo_config_text() -> str:
    """The demo's config template, read from the installed package."""
    from importlib import resources

    return resources.files("rotator").joinpath(DEMO_CONFIG).read_text(encoding="utf-8")


@contextmanager
def _work_dir(keep_in: Path | None) -> Iterator[Path]:
    """``keep_in`` (created, kept), or a temporary directory removed afterwards."""
    if keep_in is not None:
        keep_in.mkdir(parents=True, exist_ok=True)
        yield keep_in
        return
    with tempfile.TemporaryDirectory(prefix="rotator-demo-") as temp:
        yield Path(temp)


def run_demo(emit: Emit, version: str = "8.17.4", work_dir: Path | None = None) -> int:
    """Run the whole demo, printing each step; returns an exit code.

    Args:
        emit: prints one line of the story.
        version: the Elasticsearch version the sandbox emulates.
        work_dir: where the store and the delivered credentials go, kept afterwards; without
            it a temporary directory is used and removed at the end.
    """
    with _work_dir(work_dir) as demo_dir:
        code = _run_in(emit, version, demo_dir)
        if work_dir is None:
            emit(f"removed {demo_dir} (use --dir DIR to keep the store and the credential files)")
        return code


def _run_in(emit: Emit, version: str, demo_dir: Path) -> int:
    from rotator.elastic import ClusterAdmin
    from rotator.sandbox import Sandbox

    (demo_dir / "keys").mkdir(exist_ok=True)
    admin_password = secrets.token_urlsafe(12)
    with Sandbox.start(version=version, elastic_password=admin_password) as sandbox:
        config = _demo_config(sandbox.url, demo_dir)
        specs = specs_from_config(config)
        emit(f"sandbox: Elasticsearch {version} emulated at {sandbox.url}")
        admin = ClusterAdmin(sandbox.url, "elastic", admin_password)
        _create_rotator_user(admin, specs, emit)
        clock = ManualClock(SystemClock().now().replace(microsecond=0))
        sandbox.set_clock(_ms(clock.now()))
        engine = db.make_engine(config.store.url)
        db.upgrade(engine)
        try:
            lifecycle = build_lifecycle(config, engine, clock)
            failed = _Story(emit, clock, sandbox, lifecycle, specs, demo_dir).tell()
            with Session(engine) as session:
                chain = audit.verify(session)
        finally:
            engine.dispose()
    emit(f"audit trail: {chain.events} events, hash chain {'verified' if chain.ok else 'BROKEN'}")
    emit(f"credentials delivered to {demo_dir / 'keys'}; store: {demo_dir / 'rotator.db'}")
    return 1 if failed or not chain.ok else 0


def _demo_config(url: str, demo_dir: Path) -> Config:
    text = demo_config_text().replace("{sandbox_url}", url).replace("{demo_dir}", str(demo_dir))
    return parse_config(text, f"rotator/{DEMO_CONFIG}")


def _create_rotator_user(admin: Any, specs: Sequence[SourceSpec], emit: Emit) -> None:
    role = rotator_role(specs)
    password = secrets.token_urlsafe(16)
    os.environ[PASSWORD_ENV] = password
    admin.put_role("rotator", role)
    admin.put_user("rotator", password, ["rotator"])
    indices = "; ".join(
        f"{','.join(i['privileges'])} on {','.join(i['names'])}" for i in role["indices"]
    )
    emit(f"rotator user: role 'rotator' = cluster [{', '.join(role['cluster'])}]; {indices}")


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


class _Story:
    """The demo's steps, each printed as it happens."""

    def __init__(
        self,
        emit: Emit,
        clock: ManualClock,
        sandbox: Any,
        lifecycle: Lifecycle,
        specs: Sequence[SourceSpec],
        demo_dir: Path,
    ) -> None:
        self.emit, self.clock, self.sandbox = emit, clock, sandbox
        self.lifecycle, self.specs, self.demo_dir = lifecycle, specs, demo_dir
        self.start = clock.now()
        self.failed = False

    def tell(self) -> bool:
        self._run("provisioning every source")
        previous = {spec.name: self._delivered(spec) for spec in self.specs}
        self._ship()
        renewal = min(s.lifetime - s.rotate_before for s in self.specs)
        self._advance(renewal, "past the renewal time")
        self._run("rotating")
        self._check(previous, still_valid=True)
        self._ship()
        overlap = max(s.overlap for s in self.specs)
        self._advance(overlap, "past the overlap")
        self._run("retiring the previous keys")
        self._check(previous, still_valid=False)
        self._ship()
        return self.failed

    def _day(self) -> str:
        days = (self.clock.now() - self.start) / timedelta(days=1)
        return f"[day {days:>4.1f}]"

    def _advance(self, delta: timedelta, why: str) -> None:
        self.clock.advance(delta)
        self.sandbox.set_clock(_ms(self.clock.now()))
        self.emit(f"{self._day()} both clocks moved {format_duration(delta)} ahead, {why}")

    def _run(self, what: str) -> dict[str, str]:
        self.emit(f"{self._day()} {what}")
        report = self.lifecycle.run(self.specs)
        for outcome in report.outcomes:
            self.emit(f"{self._day()}   {_describe(outcome)}")
        self.failed = self.failed or bool(report.failed)
        return {o.action.source: o.action.key_id or "" for o in report.outcomes}

    def _ship(self) -> None:
        from rotator.elastic import ship

        for spec in self.specs:
            key_id, secret = self._delivered(spec)
            index = spec.grants.indices[0].names[0]
            document = {
                "message": "hello from the demo",
                "@timestamp": self.clock.now().isoformat(),
            }
            result = ship(self.sandbox.url, key_id, secret, index, document)
            self.emit(
                f"{self._day()}   {spec.name} shipped a document to {index} with key "
                f"{key_id}: {result}"
            )

    def _delivered(self, spec: SourceSpec) -> tuple[str, str]:
        import json

        sink = spec.sinks[0]
        text = Path(sink.path).read_text(encoding="utf-8").strip()  # type: ignore[union-attr]
        if sink.format == "json":  # type: ignore[union-attr]
            doc = json.loads(text)
            return doc["id"], doc["api_key"]
        if sink.format == "env":  # type: ignore[union-attr]
            import base64

            encoded = text.split("=", 1)[1]
            key_id, secret = base64.b64decode(encoded).decode().split(":", 1)
            return key_id, secret
        key_id, secret = text.split(":", 1)
        return key_id, secret

    def _check(self, previous: dict[str, tuple[str, str]], *, still_valid: bool) -> None:
        from rotator.elastic import key_authenticates

        for source, (key_id, secret) in sorted(previous.items()):
            alive = key_authenticates(self.sandbox.url, key_id, secret)
            word = "still authenticates (overlap)" if alive else "no longer authenticates"
            self.emit(f"{self._day()}   previous key {key_id} of {source}: {word}")
            self.failed = self.failed or alive != still_valid


def _describe(outcome: Outcome) -> str:
    action = outcome.action
    if not outcome.ok:
        return f"{action.source}: {action.kind.value} FAILED: {outcome.detail}"
    if action.kind in (ActionKind.PROVISION, ActionKind.ROTATE):
        return f"{action.source}: {outcome.detail}" + (
            f" (replaces {action.key_id})" if action.key_id else ""
        )
    return f"{action.source}: {outcome.detail}"
