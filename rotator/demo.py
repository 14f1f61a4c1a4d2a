"""``rotator sandbox demo``: the daemon, a shipper and a key's whole life, in under a minute.

The real daemon (:class:`rotator.service.Service`: scheduler, jobs, leader lease) runs in this
process against an in-process sandbox. Both run on one :class:`rotator.clock.ScaledClock`, so
days of key time pass in seconds; the scheduler's intervals stay in real time (every job runs
each second). Meanwhile:

- a shipper (a thread) indexes a document for each source every few hours of key time, with
  whatever key was last delivered to the source's credential file, counting what fails;
- a "Kibana" user creates an alerting key (``metadata.managed: true``) that expires in a few days,
  which the inventory warns about and then calls expired;
- "an old export script" leaves keys under rotator's user that expire a day later, which the
  purge invalidates;
- the narrator follows the audit trail and tells each step as it happens.

The story ends when every step has been seen (or after ``--duration`` seconds): the daemon is
stopped, the audit chain verified, and the shipper's failures counted (any is exit 1).
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TextIO

from rotator.clock import ScaledClock, SystemClock
from rotator.config import Config, parse_config
from rotator.model import SourceSpec, iso, specs_from_config
from rotator.scoping import Grants, role_descriptors

if TYPE_CHECKING:
    from rich.console import RenderableType

    from rotator.audit import ChainEvent
    from rotator.ports import KeyAuthority
    from rotator.service import Service

# The demo's config, shipped inside the package (rotator/demo.yaml), so an installed wheel has it.
DEMO_CONFIG = "demo.yaml"
PASSWORD_ENV = "ROTATOR_DEMO_ES_PASSWORD"  # noqa: S105 - the name of a variable, not a secret
KIBANA_PASSWORD_ENV = "ROTATOR_DEMO_KIBANA_PASSWORD"  # noqa: S105 - a variable's name
KIBANA_USER = "kibana-demo"
Emit = Callable[[str], None]

DEFAULT_SPEED = 21_600  # six hours of key time per real second: a day every 4 s
SHIP_EVERY = timedelta(hours=3)  # key time between two rounds of the shipper
MANAGED_EXPIRES_IN = timedelta(days=4)  # the Kibana alerting key's lifetime
LEFTOVER_EXPIRES_IN = timedelta(days=1)  # the export script's keys
LEFTOVERS = 3
LEASE_RENEW_EVERY_S = 0.5  # real seconds between two renewals of the leader lease
LEASE_TTL_REAL_S = 5  # the lease's time to live, in real seconds of the scaled clock
POLL_EVERY_S = 0.1  # real seconds between two reads of the audit trail
SHIPPED_AFTER = 2  # rounds the shipper runs after the last retirement before the story ends


def rotator_role(specs: Sequence[SourceSpec], *, inventory: bool = False) -> dict[str, Any]:
    """The role rotator's own user needs: manage_own_api_key plus what it hands out.

    A key can never hold more than its owner, so the owner must hold every privilege its keys
    get. ``inventory`` adds ``read_security``, with which the key inventory sees every user's
    keys (Kibana's among them) instead of rotator's own only.
    """
    merged = Grants()
    for spec in specs:
        merged = merged.union(spec.grants)
    body = role_descriptors("owner", merged)["rotator-owner"]
    extra = {"read_security"} if inventory else set()
    body["cluster"] = sorted({"manage_own_api_key", *extra, *body["cluster"]})
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


@dataclass(frozen=True)
class DemoOptions:
    """How the demo runs: what ``rotator sandbox demo`` takes on its command line."""

    version: str = "8.17.4"
    work_dir: Path | None = None
    speed: float = DEFAULT_SPEED
    duration: float | None = None  # real seconds; None: until the story is told
    live: bool = False  # a live terminal view instead of timestamped lines
    stream: TextIO | None = None  # where the live view draws (standard output when None)
    log_level: str | None = None  # the daemon's log to standard error at this level; None:
    log_format: str | None = None  # to rotator.log in the demo's directory, at info


def run_demo(emit: Emit, options: DemoOptions | None = None) -> int:
    """Run the whole demo, telling each step; returns the exit code (0: nothing failed).

    Args:
        emit: prints one line.
        options: version, directory, speed, duration and view; the defaults when None.
    """
    options = options or DemoOptions()
    with _work_dir(options.work_dir) as demo_dir:
        code = _run_in(emit, options, demo_dir)
        if options.work_dir is None:
            emit(f"removed {demo_dir} (use --dir DIR to keep the store and the credential files)")
        return code


def _run_in(emit: Emit, options: DemoOptions, demo_dir: Path) -> int:
    from rotator.elastic import ClusterAdmin
    from rotator.sandbox import Sandbox

    (demo_dir / "keys").mkdir(exist_ok=True)
    clock = ScaledClock(SystemClock().now().replace(microsecond=0), options.speed)
    admin_password = secrets.token_urlsafe(12)
    with (
        _daemon_log(options, demo_dir, clock) as log_path,
        Sandbox.start(version=options.version, elastic_password=admin_password, clock=clock) as sb,
    ):
        config = _demo_config(sb.url, demo_dir, options.speed)
        specs = specs_from_config(config)
        day = timedelta(days=1) / timedelta(seconds=options.speed)
        emit(
            f"sandbox: Elasticsearch {options.version} emulated at {sb.url}, sharing a clock "
            f"with rotator that runs {options.speed:g} times faster than real time "
            f"(a day every {day:.1f} s)"
        )
        admin = ClusterAdmin(sb.url, "elastic", admin_password)
        _create_users(admin, specs, emit)
        story = Story(config, specs, clock, demo_dir, options)
        code = story.tell(emit)
    story.summary(emit, log_path)
    return code


@contextmanager
def _daemon_log(options: DemoOptions, demo_dir: Path, clock: ScaledClock) -> Iterator[Path | None]:
    """Where the daemon logs: standard error with ``--log-level``, else ``rotator.log``."""
    from rotator import log

    if options.log_level is not None:
        log.configure(level=options.log_level, fmt=options.log_format or "auto", clock=clock)
        yield None
        return
    path = demo_dir / "rotator.log"
    handle: IO[str] = path.open("a", encoding="utf-8")
    try:
        log.configure(level="info", fmt="json", stream=handle, clock=clock)
        yield path
    finally:
        log.configure(level="warning", fmt=options.log_format or "auto")
        handle.close()


def _demo_config(url: str, demo_dir: Path, speed: float) -> Config:
    lease_ttl = f"{max(int(speed * LEASE_TTL_REAL_S), 30)}s"
    text = (
        demo_config_text()
        .replace("{sandbox_url}", url)
        .replace("{demo_dir}", str(demo_dir))
        .replace("{lease_ttl}", lease_ttl)
    )
    return parse_config(text, f"rotator/{DEMO_CONFIG}")


def _create_users(admin: Any, specs: Sequence[SourceSpec], emit: Emit) -> None:
    role = rotator_role(specs, inventory=True)
    password = secrets.token_urlsafe(16)
    os.environ[PASSWORD_ENV] = password
    admin.put_role("rotator", role)
    admin.put_user("rotator", password, ["rotator"])
    indices = "; ".join(
        f"{','.join(i['privileges'])} on {','.join(i['names'])}" for i in role["indices"]
    )
    emit(f"rotator user: role 'rotator' = cluster [{', '.join(role['cluster'])}]; {indices}")
    kibana_password = secrets.token_urlsafe(16)
    os.environ[KIBANA_PASSWORD_ENV] = kibana_password
    admin.put_role(KIBANA_USER, {"cluster": ["manage_own_api_key"]})
    admin.put_user(KIBANA_USER, kibana_password, [KIBANA_USER])
    emit(f"kibana user: '{KIBANA_USER}' (manage_own_api_key), playing Kibana's alerting")


# --- what the demo shows ---------------------------------------------------------------------


@dataclass
class SourceView:
    """One source as the story has seen it."""

    current: str = "-"
    retiring: dict[str, str] = field(default_factory=dict)  # key id -> until (day)
    used: list[str] = field(default_factory=list)  # key ids the shipper used, in order
    shipped: int = 0
    failed: int = 0


# The steps every telling shows, in the order they usually happen, with their summary words.
STEPS = {
    "provisioned": "every source provisioned",
    "purged": "expired keys purged",
    "warned": "the Kibana-managed key warned about",
    "expired": "the Kibana-managed key called expired",
    "rotated": "every source rotated with overlap",
    "retired": "every previous key retired",
}


class Story:
    """The daemon, the shipper and the narrator, around one shared clock."""

    def __init__(
        self,
        config: Config,
        specs: Sequence[SourceSpec],
        clock: ScaledClock,
        demo_dir: Path,
        options: DemoOptions,
    ) -> None:
        self.config, self.specs, self.clock = config, list(specs), clock
        self.demo_dir, self.options = demo_dir, options
        self.start = clock.now()
        self.lock = threading.Lock()
        self.sources = {s.name: SourceView() for s in self.specs}
        self.seen: set[str] = set()  # the steps shown so far
        self.failures: list[str] = []
        self.told: list[str] = []  # every line of the story
        self.lines: deque[str] = deque(maxlen=14)  # the latest, as the live view shows them
        self.finished = threading.Event()  # the shipper and the narrator stop
        self.cut_short = False
        self.managed: dict[str, str] = {}  # the Kibana key: id, name, state
        self.leftovers: set[str] = set()
        self.purged: set[str] = set()
        self.chain: Any = None
        # The secrets of the keys the shipper read, by id: the narrator checks that a previous
        # key still works during the overlap and no longer after it, as a shipper holding it.
        self.secrets: dict[str, str] = {}
        self._rounds_after_retirement = 0
        self._emit: Emit = lambda _line: None

    # --- telling -----------------------------------------------------------------------------

    def day(self, at: datetime | None = None) -> float:
        """Days of key time since the story began."""
        return ((at or self.clock.now()) - self.start) / timedelta(days=1)

    def step(self, text: str) -> None:
        """One line of the story, stamped with the day it is told."""
        with self.lock:  # stamped and printed in one go: the lines come in time order
            line = f"[day {self.day():4.1f}] {text}"
            self.told.append(line)
            self.lines.append(line)
            if not self.options.live:
                self._emit(line)

    def fail(self, text: str) -> None:
        """Something went wrong: told, and the demo will exit 1."""
        with self.lock:
            self.failures.append(text)
        self.step(f"FAILED: {text}")

    def tell(self, emit: Emit) -> int:
        """Run the daemon until every step was seen (or ``--duration``); the exit code."""
        from rotator.store import db

        self._emit = emit
        engine = db.make_engine(self.config.store.url)
        db.upgrade(engine)
        try:
            service = self._service(engine, emit)
            if service is None:
                return 1
            narrator = Narrator(self, service, engine)
            shipper = threading.Thread(target=Shipper(self).run, name="shipper", daemon=True)
            teller = threading.Thread(target=narrator.run, name="narrator", daemon=True)
            with self._view(), _signals_restored():
                shipper.start()
                teller.start()
                try:
                    code = service.serve()  # the daemon, in this thread, until the story ends
                finally:
                    self.finished.set()
                    teller.join()
                    shipper.join()
            self._after(engine)
        finally:
            engine.dispose()
        ok = code == 0 and not self.failures and self.chain is not None and self.chain.ok
        return 0 if ok and self.shipper_failed == 0 else 1

    def _service(self, engine: Any, emit: Emit) -> Service | None:
        """The daemon as ``rotator run`` builds it, its lease renewed in real time."""
        from apscheduler.triggers.interval import IntervalTrigger

        from rotator.service import LEASE_JOB, Service, job_specs

        service = Service(self.config, engine, self.clock)
        problems = service.preflight()
        if problems:
            for problem in problems:
                emit(f"daemon: preflight: {problem}")
            return None
        # The scheduler runs in real time; the lease lives LEASE_TTL_REAL_S real seconds of the
        # scaled clock, so it is renewed (and first taken) on a real-time interval.
        real_now = SystemClock().now()
        service.scheduler.modify_job(
            LEASE_JOB,
            trigger=IntervalTrigger(seconds=LEASE_RENEW_EVERY_S, timezone=UTC),
            next_run_time=real_now,
        )
        # The lifecycle starts as soon as the lease is taken rather than a whole interval later.
        start_at = real_now + timedelta(seconds=LEASE_RENEW_EVERY_S)
        service.scheduler.modify_job("lifecycle", next_run_time=start_at)
        jobs = ", ".join(spec.id for spec in job_specs(self.config))
        emit(
            f"daemon: preflight passed; jobs {jobs} every second of real time, under a leader "
            f"lease renewed every {LEASE_RENEW_EVERY_S:g} s"
        )
        return service

    @contextmanager
    def _view(self) -> Iterator[None]:
        if not self.options.live:
            yield
            return
        from rich.live import Live

        from rotator import views

        with Live(
            get_renderable=self.renderable,
            console=views.console(self.options.stream),
            refresh_per_second=4,
            transient=True,
        ):
            yield

    def _after(self, engine: Any) -> None:
        """Once the daemon stopped: bring the audit copy up to date and verify the chain."""
        from sqlalchemy.orm import Session

        from rotator import audit, commands

        commands.copy_audit(self.config, engine, self.clock)
        with Session(engine) as session:
            self.chain = audit.verify(session)

    # --- what the shipper and the narrator report ---------------------------------------------

    @property
    def shipper_failed(self) -> int:
        """Documents the shipper could not index."""
        return sum(v.failed for v in self.sources.values())

    def shipped(self, source: str, key_id: str, error: str | None) -> None:
        """The shipper indexed a document for ``source`` with ``key_id`` (or failed)."""
        with self.lock:
            view = self.sources[source]
            first = not view.used or view.used[-1] != key_id
            if first:
                view.used.append(key_id)
            if error is None:
                view.shipped += 1
            else:
                view.failed += 1
        spec = next(s for s in self.specs if s.name == source)
        target = Path(spec.sinks[0].path).name  # type: ignore[union-attr]
        if error is not None:
            self.step(f"shipper: {source} could not ship with key {key_id}: {error}")
        elif first:
            self.step(f"shipper: {source} ships with key {key_id} (read from {target}): created")

    def round_done(self) -> None:
        """The shipper finished a round; the story ends a few rounds after the last step."""
        with self.lock:
            if "retired" in self.seen:
                self._rounds_after_retirement += 1
            if self._rounds_after_retirement >= SHIPPED_AFTER and set(STEPS) <= self.seen:
                self.finished.set()

    def summary(self, emit: Emit, log_path: Path | None) -> None:
        """The end of the story: what was shown, the shipper's count, the chain, the files."""
        if self.options.live:  # the live view is gone: the whole story stays on the screen
            for line in self.told:
                emit(line)
        missing = [words for step, words in STEPS.items() if step not in self.seen]
        real = self.clock.monotonic() / self.clock.speed
        if self.cut_short:
            emit(
                f"stopped after --duration {self.options.duration:g}s "
                f"({self.day():.1f} days of key time); not shown: {', '.join(missing)}"
            )
        elif missing:  # interrupted (Ctrl-C, SIGTERM) or stopped by a failure
            emit(
                f"stopped after {real:.0f} s ({self.day():.1f} days of key time); "
                f"not shown: {', '.join(missing)}"
            )
        else:
            emit(f"story told in {real:.0f} s ({self.day():.1f} days of key time)")
        for name, view in self.sources.items():
            emit(
                f"shipper: {name}: {view.shipped} documents, {view.failed} failed, with "
                f"{len(view.used)} {'key' if len(view.used) == 1 else 'keys'} "
                f"({', '.join(view.used)})"
            )
        emit(f"shipper: {self.shipper_failed} failed ingestions")
        if self.chain is not None:
            emit(
                f"audit trail: {self.chain.events} events, hash chain "
                f"{'verified' if self.chain.ok else 'BROKEN: ' + self.chain.describe()}"
            )
        emit(
            f"credentials delivered to {self.demo_dir / 'keys'}; "
            f"store: {self.demo_dir / 'rotator.db'}"
        )
        audit_copy = self.config.audit.jsonl_path
        emit(
            f"audit copy: {audit_copy}"
            + (f"; daemon log: {log_path}" if log_path is not None else "")
        )

    def renderable(self) -> RenderableType:
        """The live view: the clock, each source's keys and shipments, the latest steps."""
        from rich.console import Group
        from rich.panel import Panel
        from rich.text import Text

        from rotator import views

        with self.lock:
            rows = [
                [
                    name,
                    v.current,
                    ", ".join(f"{k} until day {d}" for k, d in v.retiring.items()) or "-",
                    str(v.shipped),
                    str(v.failed),
                ]
                for name, v in self.sources.items()
            ]
            lines = list(self.lines)
            managed = dict(self.managed)
            purged = f"{len(self.purged)}/{len(self.leftovers) or LEFTOVERS}"
        now = self.clock.now()
        head = Text(
            f"day {self.day(now):4.1f}  {iso(now)}  (key time at {self.clock.speed:g}x)",
            style="bold",
        )
        table = views.rich_table(["SOURCE", "CURRENT KEY", "RETIRING", "SHIPPED", "FAILED"], rows)
        kibana = (
            f"Kibana-managed key {managed.get('name', '-')}: {managed.get('state', 'not yet')}"
            f"   expired keys purged: {purged}"
        )
        return Panel(
            Group(head, table, Text(kibana), Text(""), Text("\n".join(lines))),
            title="rotator sandbox demo",
            title_align="left",
        )


@contextmanager
def _signals_restored() -> Iterator[None]:
    """The daemon takes SIGTERM, SIGINT and SIGHUP while it runs; give them back afterwards."""
    import signal

    taken = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    before = {number: signal.getsignal(number) for number in taken}
    try:
        yield
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)


# --- the shipper -------------------------------------------------------------------------------


class Shipper:
    """Indexes a document per source every few hours of key time, with the delivered key."""

    def __init__(self, story: Story) -> None:
        self.story = story

    def run(self) -> None:
        from rotator.elastic import ship

        story = self.story
        url = story.config.elasticsearch.hosts[0]
        while not story.finished.is_set():
            for spec in story.specs:
                delivered = read_delivered(spec)
                if delivered is None:
                    continue  # not provisioned yet
                key_id, secret = delivered
                with story.lock:
                    story.secrets[key_id] = secret
                index = spec.grants.indices[0].names[0]
                doc = {"message": f"hello from {spec.name}", "@timestamp": iso(story.clock.now())}
                try:
                    ship(url, key_id, secret, index, doc)
                except Exception as exc:
                    story.shipped(spec.name, key_id, f"{type(exc).__name__}: {exc}"[:200])
                else:
                    story.shipped(spec.name, key_id, None)
            story.round_done()
            story.clock.sleep(SHIP_EVERY.total_seconds())


def read_delivered(spec: SourceSpec) -> tuple[str, str] | None:
    """The key id and secret in the source's first file sink, as a shipper reads it (None
    while there is no file yet)."""
    import base64

    sink: Any = spec.sinks[0]
    try:
        text = Path(sink.path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if sink.format == "json":
        doc = json.loads(text)
        return str(doc["id"]), str(doc["api_key"])
    if sink.format == "env":
        text = base64.b64decode(text.split("=", 1)[1]).decode()
    key_id, secret = text.split(":", 1)
    return key_id, secret


# --- the narrator ------------------------------------------------------------------------------


class Narrator:
    """Follows the audit trail and tells each step; plays Kibana and the export script; stops
    the daemon when the story is told or the duration is up."""

    def __init__(self, story: Story, service: Service, engine: Any) -> None:
        self.story, self.service, self.engine = story, service, engine
        self.cursor = 0
        self.provisioned: set[str] = set()
        self.rotated: set[str] = set()
        self.retired: set[str] = set()

    def run(self) -> None:
        story = self.story
        try:
            while not self.service.scheduler.running and not story.finished.is_set():
                story.clock.sleep(POLL_EVERY_S * story.clock.speed)
            while not story.finished.is_set():
                self._read()
                if self._out_of_time():
                    story.cut_short = True
                    break
                story.clock.sleep(POLL_EVERY_S * story.clock.speed)
            self._read()
        except Exception as exc:
            with suppress(OSError):  # standard output may be what failed (a closed pipe)
                story.fail(f"the demo stopped: {type(exc).__name__}: {exc}"[:300])
        finally:
            story.finished.set()
            self.service.stop("the story is told")

    def _out_of_time(self) -> bool:
        limit = self.story.options.duration
        clock = self.story.clock
        return limit is not None and clock.monotonic() / clock.speed >= limit

    def _read(self) -> None:
        from sqlalchemy.orm import Session

        from rotator.audit_query import events

        with Session(self.engine) as session:
            batch = list(events(session, after_seq=self.cursor))
        for event in batch:
            self.cursor = event.seq
            self._tell(event)

    def _tell(self, event: ChainEvent) -> None:
        handler = getattr(self, "_on_" + event.action.replace(".", "_"), None)
        if handler is not None:
            handler(event)
        elif event.outcome == "failure":
            self.story.fail(f"{event.action} {event.subject}: {event.details}")

    def _mark(self, step: str) -> None:
        with self.story.lock:
            self.story.seen.add(step)

    # --- the daemon's steps --------------------------------------------------------------------

    def _on_leader_acquired(self, event: ChainEvent) -> None:
        self.story.step(f"daemon: took the leader lease (epoch {event.details['epoch']})")

    def _on_key_activated(self, event: ChainEvent) -> None:
        story, source, details = self.story, event.subject, event.details
        key_id, retiring = details["key_id"], details.get("retiring") or []
        view = story.sources.get(source)
        spec = next((s for s in story.specs if s.name == source), None)
        if view is None or spec is None:
            return
        with story.lock:
            view.current = key_id
        renewal = story.day(event.at + spec.lifetime - spec.rotate_before)
        if not retiring:
            story.step(
                f"provisioned {source}: key {key_id} verified, delivered and active "
                f"(renewal at day {renewal:.1f})",
            )
            self.provisioned.add(source)
            if self.provisioned >= set(story.sources):
                self._mark("provisioned")
            return
        until = story.day(event.at + spec.overlap)
        with story.lock:
            view.retiring.update(dict.fromkeys(retiring, f"{until:.1f}"))
        story.step(
            f"rotated {source}: key {key_id} verified, delivered and active (replaces "
            f"{', '.join(retiring)}, which keeps working until day {until:.1f}: the overlap)",
        )
        for old in retiring:
            self._check(source, old, alive=True)
        self.rotated.add(source)
        if self.rotated >= set(story.sources):
            self._mark("rotated")

    def _on_key_invalidated(self, event: ChainEvent) -> None:
        story, source, key_id = self.story, event.subject, event.details["key_id"]
        view = story.sources.get(source)
        if view is None or event.details.get("reason") != "overlap-elapsed":
            return
        with story.lock:
            view.retiring.pop(key_id, None)
        story.step(f"retired {source}'s previous key {key_id}: the overlap is over")
        self._check(source, key_id, alive=False)
        self.retired.add(source)
        if self.retired >= set(story.sources) and "rotated" in story.seen:
            self._mark("retired")

    def _check(self, source: str, key_id: str, *, alive: bool) -> None:
        """Whether the previous key still authenticates, as a shipper holding it would see."""
        from rotator.elastic import key_authenticates

        with self.story.lock:
            secret = self.story.secrets.get(key_id)
        if secret is None:
            return
        works = key_authenticates(self.story.config.elasticsearch.hosts[0], key_id, secret)
        word = "still authenticates (overlap)" if works else "no longer authenticates"
        self.story.step(f"  previous key {key_id} of {source}: {word}")
        if works != alive:
            self.story.fail(f"previous key {key_id} of {source}: expected the other way round")

    # --- the inventory ----------------------------------------------------------------------

    def _on_inventory_baselined(self, event: ChainEvent) -> None:
        details = event.details
        self.story.step(
            f"inventory: first sweep saw {details.get('keys', 0)} keys (scope "
            f"{details.get('scope', '?')}), taken as the baseline",
        )
        self._play_kibana()
        self._play_export_script()

    def _managed(self, event: ChainEvent) -> bool:
        return event.details.get("key_id") == self.story.managed.get("id")

    def _on_inventory_key_appeared(self, event: ChainEvent) -> None:
        if self._managed(event):
            self.story.step(f"inventory: {event.details['detail']}")

    def _on_inventory_key_expiring(self, event: ChainEvent) -> None:
        if not self._managed(event):
            return
        details = event.details
        severity = str(details.get("severity", "warning")).upper()
        self.story.step(
            f"inventory: {severity}: Kibana-managed key {details['name']!r} {details['detail']}",
        )
        with self.story.lock:
            self.story.managed["state"] = f"warned ({details.get('lead', '?')} lead time)"
        self._mark("warned")

    def _on_inventory_key_expired(self, event: ChainEvent) -> None:
        if not self._managed(event):
            return
        details = event.details
        severity = str(details.get("severity", "warning")).upper()
        self.story.step(
            f"inventory: {severity}: Kibana-managed key {details['name']!r} {details['detail']}",
        )
        with self.story.lock:
            self.story.managed["state"] = "expired"
        self._mark("expired")

    # --- the purge ----------------------------------------------------------------------------

    def _on_keys_purged(self, event: ChainEvent) -> None:
        story = self.story
        ids = list(event.details.get("invalidated") or [])
        if event.outcome == "failure" or event.details.get("errors"):
            story.fail(f"purge: {event.details.get('errors')}")
        if not ids:
            return
        with story.lock:
            story.purged.update(ids)
            done = bool(story.leftovers) and story.leftovers <= story.purged
        story.step(
            f"purge: invalidated {len(ids)} expired keys of {event.subject}: {', '.join(ids)}",
        )
        if done:
            self._mark("purged")

    # --- the other parties --------------------------------------------------------------------

    def _play_kibana(self) -> None:
        """Kibana's alerting creates a managed key, here with a short expiration."""
        from rotator.app import build_authority

        story = self.story
        kibana = build_authority(_as_user(story.config, KIBANA_USER, KIBANA_PASSWORD_ENV))
        name = "Alerting: CPU usage above 90%"
        key = kibana.create(
            name,
            int(MANAGED_EXPIRES_IN.total_seconds()),
            {},
            {"managed": True, "kibana": {"version": "8.17.4"}},
        )
        with story.lock:
            story.managed.update(id=key.id, name=repr(name), state="created")
        story.step(
            f"kibana: {KIBANA_USER} created managed key {name!r} ({key.id}), expiring in "
            f"{MANAGED_EXPIRES_IN.days}d"
        )

    def _play_export_script(self) -> None:
        """An old export script leaves keys under rotator's user that expire a day later."""
        authority: KeyAuthority = _rotator_authority(self.story.config)
        made = [
            authority.create(
                f"nightly-export-{n}",
                int(LEFTOVER_EXPIRES_IN.total_seconds()),
                {"export": {"cluster": ["monitor"]}},
                {"created_by": "nightly-export"},
            ).id
            for n in range(1, LEFTOVERS + 1)
        ]
        with self.story.lock:
            self.story.leftovers.update(made)
        self.story.step(
            f"an old export script left {len(made)} keys under rotator's user, expiring in "
            f"{LEFTOVER_EXPIRES_IN.days}d: {', '.join(made)}"
        )


def _rotator_authority(config: Config) -> KeyAuthority:
    from rotator.app import build_authority

    return build_authority(config)


def _as_user(config: Config, username: str, password_env: str) -> Config:
    """``config`` with another user's credentials (the demo plays Kibana with it)."""
    es = config.elasticsearch.model_copy(
        update={"username": username, "password_env": password_env}
    )
    return config.model_copy(update={"elasticsearch": es})
