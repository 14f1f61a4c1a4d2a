"""The verbs of the command line: what each ``rotator`` command does with its parsed arguments."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from rotator import __version__
from rotator.config import Config, load_config, validate_config
from rotator.errors import (
    ConfigError,
    NotImplementedYet,
    UsageError,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

DEFAULT_CONFIG_NAME = "rotator.yaml"

Handler = Callable[[argparse.Namespace, "Context"], int]


@dataclass
class Context:
    """What every verb gets: its streams and a way to load the selected config."""

    stdout: TextIO
    stderr: TextIO
    config_path: Path | None
    log_level: str | None = None
    log_format: str | None = None
    config: Config | None = None

    def load(self) -> Config:
        """Load and validate the selected config (or the embedded defaults when none).

        Logging is set up from the config's ``log`` section unless the command line overrides it.

        Raises:
            ConfigError: the file is missing or invalid.
        """
        from rotator import log

        if self.config_path is None:
            config = validate_config({}, "(embedded defaults)")
        else:
            config = load_config(self.config_path)
        log.configure(
            level=self.log_level or config.log.level, fmt=self.log_format or config.log.format
        )
        self.config = config
        return config

    def emit(self, line: str = "") -> None:
        """Write one line of command output."""
        print(line, file=self.stdout)

    def emit_json(self, value: Any) -> None:
        """Write a JSON document as command output."""
        print(json.dumps(value, indent=2, sort_keys=False, default=str), file=self.stdout)


# --- verbs that exist --------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace, ctx: Context) -> int:
    """Validate a config file and print every problem, or a one-line summary."""
    path = Path(args.path) if args.path else ctx.config_path
    label = str(path) if path is not None else "(embedded defaults)"
    references = not args.skip_secrets
    try:
        config = (
            load_config(path, references=references)
            if path is not None
            else validate_config({}, label, references=references)
        )
    except ConfigError as exc:
        if args.output == "json":
            ctx.emit_json({"file": label, "valid": False, "problems": split_problems(exc.problems)})
        else:
            for problem in exc.problems:
                ctx.emit(problem)
            print(f"{label}: {len(exc.problems)} problem(s)", file=ctx.stderr)
        return EXIT_USAGE
    if args.output == "json":
        ctx.emit_json({"file": label, "valid": True, "summary": config.summary()})
    else:
        ctx.emit(f"{label}: ok: {config.summary()}")
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace, ctx: Context) -> int:
    """Bring the store's schema to the newest revision."""
    config = ctx.load()
    from rotator.app import open_engine
    from rotator.store import db

    engine = open_engine(config)
    try:
        before = db.schema_status(engine)
        db.upgrade(engine, args.revision)
        after = db.schema_status(engine)
    finally:
        engine.dispose()
    if before.current == after.current:
        ctx.emit(f"store {db.redacted_url(engine.url)}: already at {after.current}")
    else:
        ctx.emit(
            f"store {db.redacted_url(engine.url)}: upgraded from {before.current or '(empty)'} "
            f"to {after.current}"
        )
    return EXIT_OK


def cmd_db_current(args: argparse.Namespace, ctx: Context) -> int:
    """Show the store's schema revision and whether it is the newest."""
    config = ctx.load()
    from rotator.app import open_engine
    from rotator.store import db

    engine = open_engine(config)
    try:
        status = db.schema_status(engine)
    finally:
        engine.dispose()
    state = "current" if status.is_current else ("empty" if status.is_empty else "behind")
    if args.output == "json":
        ctx.emit_json(
            {
                "store": db.redacted_url(engine.url),
                "current": status.current,
                "head": status.head,
                "state": state,
            }
        )
    else:
        ctx.emit(f"store:   {db.redacted_url(engine.url)}")
        ctx.emit(f"current: {status.current or '(no schema)'}")
        ctx.emit(f"head:    {status.head}")
        ctx.emit(f"state:   {state}" + ("" if status.is_current else f" ({_fix(status)})"))
    if not status.is_current:
        print(f"rotator: the store's schema is {state}: {_fix(status)}", file=ctx.stderr)
    return EXIT_OK if status.is_current else EXIT_USAGE


def _fix(status: Any) -> str:
    if status.is_unknown:
        return "a newer rotator migrated it: run that version"
    return "run `rotator db upgrade`"


def cmd_sandbox_serve(args: argparse.Namespace, ctx: Context) -> int:
    """Serve the emulated Elasticsearch until SIGTERM or SIGINT."""
    import signal
    import threading

    from rotator.sandbox import Sandbox, parse_user_spec

    ctx.load()
    try:
        users = [parse_user_spec(text) for text in args.user]
        sandbox = Sandbox.start(
            host=args.host, port=args.port, version=args.version, users=users, state_file=args.state
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    ctx.emit(f"listening on {sandbox.url}")
    if not any(u[0] == "elastic" for u in users):
        ctx.emit(f"superuser: elastic / {sandbox.elastic_password}")
    ctx.stdout.flush()
    while not stop.wait(0.5):
        pass
    sandbox.stop()
    if args.state:
        sandbox.save()
        print(f"state saved to {args.state}", file=ctx.stderr)
    return EXIT_OK


def _lifecycle_context(ctx: Context) -> tuple[Config, Any, Any]:
    """Load the config, open a current store and build the lifecycle."""
    from rotator.app import build_lifecycle, open_current_store
    from rotator.clock import SystemClock

    config = ctx.load()
    engine = open_current_store(config)
    clock = SystemClock()
    return config, engine, (build_lifecycle(config, engine, clock), clock)


def _emit_outcomes(ctx: Context, args: argparse.Namespace, outcomes: Sequence[Any]) -> int:
    from rotator import commands

    failed = [o for o in outcomes if not o.ok]
    if args.output == "json":
        ctx.emit_json({"outcomes": [o.to_json() for o in outcomes], "failed": len(failed)})
    elif outcomes:
        ctx.emit(commands.table(commands.OUTCOME_HEADERS, commands.outcome_rows(outcomes)))
    else:
        ctx.emit("nothing to do")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_once(args: argparse.Namespace, ctx: Context) -> int:
    """Run the jobs once: provision, rotate, or all; or one sweep of the key inventory (track),
    or one purge."""
    from rotator import commands

    if args.job == "track":
        return _once_track(args, ctx)
    if args.job == "purge":
        return _purge(ctx, args.output, False, None, None)

    config, engine, (lifecycle, clock) = _lifecycle_context(ctx)
    try:
        with commands.leadership(engine, clock, config.service.lease_ttl) as lease:
            outcomes = commands.run_once(lifecycle, commands.specs(config), args.job, fence=lease)
        commands.copy_audit(config, engine, clock)
    finally:
        engine.dispose()
    return _emit_outcomes(ctx, args, outcomes)


def _once_track(args: argparse.Namespace, ctx: Context) -> int:
    from rotator import commands
    from rotator.app import build_tracker, open_current_store
    from rotator.clock import SystemClock
    from rotator.keys_report import track_rows

    config = ctx.load()
    engine = open_current_store(config)
    clock = SystemClock()
    try:
        with commands.leadership(engine, clock, config.service.lease_ttl) as lease:
            report = build_tracker(config, engine, clock, fence=lease).run()
        commands.copy_audit(config, engine, clock)
    finally:
        engine.dispose()
    if args.output == "json":
        ctx.emit_json(report.to_json())
    else:
        ctx.emit(commands.table(("TRACK", ""), track_rows(report)))
    return EXIT_FAILED if report.failed or report.stopped else EXIT_OK


def cmd_keys(args: argparse.Namespace, ctx: Context) -> int:
    """The key inventory as the last sweeps left it in the store (no Elasticsearch request)."""
    from rotator import commands
    from rotator.app import open_current_store
    from rotator.clock import SystemClock
    from rotator.durations import DurationError, parse_duration
    from rotator.keys_report import KEY_HEADERS, empty_words, heading, key_json, key_row, sweep_json
    from rotator.store.db import read_session_factory
    from rotator.store.inventory import InventoryRepository, KeyFilter

    now = SystemClock().now()
    expiring = None
    if args.expiring is not None:
        try:
            expiring = now + parse_duration(args.expiring)
        except DurationError as exc:
            raise UsageError(f"--expiring {args.expiring!r}: {exc}") from None
    wanted = KeyFilter(
        key_class=args.key_class,
        expiring_before=expiring,
        expired=args.expired,
        owner=args.owner,
        finding=args.finding,
        include_gone=args.include_gone,
    )
    config = ctx.load()
    engine = open_current_store(config)
    try:
        with read_session_factory(engine)() as session:
            inventory = InventoryRepository(session)
            sweep = inventory.last_sweep(ok_only=False)
            if args.output == "json":
                found = [key_json(r, now) for r in inventory.listing(wanted, now)]
                ctx.emit_json({**sweep_json(sweep), "count": len(found), "keys": found})
                return EXIT_OK
            rows = [key_row(r, now) for r in inventory.listing(wanted, now)]
    finally:
        engine.dispose()
    for line in heading(sweep):
        ctx.emit(line)
    ctx.emit()
    ctx.emit(commands.table(KEY_HEADERS, rows) if rows else empty_words(wanted, sweep))
    if rows:
        ctx.emit(f"\n{len(rows)} key(s)")
    return EXIT_OK


def cmd_run(args: argparse.Namespace, ctx: Context) -> int:
    """The daemon: preflight, then every job on its schedule until a signal stops it."""
    from rotator.app import open_current_store
    from rotator.clock import SystemClock
    from rotator.service import Service

    config = ctx.load()
    engine = open_current_store(config)
    try:
        path = ctx.config_path

        def reload() -> Config:
            return load_config(path) if path is not None else validate_config({}, "(defaults)")

        service = Service(config, engine, SystemClock(), load_config=reload)
        problems = service.preflight()
        if problems:
            for problem in problems:
                print(problem, file=ctx.stderr)
            print(
                f"rotator run: {len(problems)} problem(s) found before starting; nothing was "
                "scheduled",
                file=ctx.stderr,
            )
            return EXIT_USAGE
        from rotator.audit_query import start_check

        broken = start_check(config, engine)
        if broken is not None:
            print(broken.describe(), file=ctx.stderr)
            print(
                "rotator run: the audit trail's hash chain is broken (audit.verify_on_start); "
                "nothing was scheduled: see `rotator audit verify`",
                file=ctx.stderr,
            )
            return EXIT_USAGE
        return service.serve()
    finally:
        engine.dispose()


def cmd_rotate(args: argparse.Namespace, ctx: Context) -> int:
    """Rotate the named source (or all) now, whatever its renewal time."""
    from rotator import commands

    config, engine, (lifecycle, clock) = _lifecycle_context(ctx)
    try:
        forced = commands.forced_sources(config, [args.source] if args.source else [], args.all)
        specs = commands.specs(config)
        if args.dry_run:
            actions = [a for a in lifecycle.plan(specs, forced=forced) if a.source in forced]
            return _emit_plan(ctx, args, actions)
        with commands.leadership(engine, clock, config.service.lease_ttl) as lease:
            outcomes = commands.run_once(lifecycle, specs, "all", forced, fence=lease)
        commands.copy_audit(config, engine, clock)
    finally:
        engine.dispose()
    return _emit_outcomes(ctx, args, outcomes)


def _emit_plan(ctx: Context, args: argparse.Namespace, actions: Sequence[Any]) -> int:
    from rotator import commands

    if args.output == "json":
        ctx.emit_json(
            {"summary": commands.summarize(actions), "actions": [a.to_json() for a in actions]}
        )
        return EXIT_OK
    ctx.emit(commands.summarize(actions))
    if actions:
        ctx.emit(commands.table(commands.PLAN_HEADERS, commands.plan_rows(actions)))
    return EXIT_OK


def cmd_plan(args: argparse.Namespace, ctx: Context) -> int:
    """Show what would be done now, and why, without changing anything."""
    from rotator import commands

    config, engine, (lifecycle, _clock) = _lifecycle_context(ctx)
    try:
        actions = lifecycle.plan(commands.specs(config))
    finally:
        engine.dispose()
    return _emit_plan(ctx, args, actions)


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    """Show each source's current key, its times, state, last rotation and failures; with
    ``--watch``, again every ``--interval`` seconds until interrupted."""
    from rotator.app import open_current_store
    from rotator.clock import SystemClock

    interval = getattr(args, "interval", 2.0)
    if not interval > 0:
        raise UsageError("--interval: must be a positive number of seconds")
    config = ctx.load()
    engine = open_current_store(config)
    clock = SystemClock()
    try:
        if getattr(args, "watch", False):
            return _watch_status(ctx, args.output, config, engine, clock, interval)
        leader, entries = _status_snapshot(config, engine, clock)
    finally:
        engine.dispose()
    if args.output == "json":
        ctx.emit_json({"leader": leader, "sources": entries})
        return EXIT_OK
    _emit_status(ctx, leader, entries)
    return EXIT_OK


def _status_snapshot(config: Config, engine: Any, clock: Any) -> tuple[Any, list[Any]]:
    """The lease and every source's entry, read without taking the store's write lock."""
    from rotator import commands
    from rotator.store import db

    # Reads only: never waits behind a rotation that holds the store's write lock.
    entries = commands.status(db.read_only(engine), config)
    leader = commands.leader_status(db.read_only(engine), clock.now())
    return leader, entries


def _emit_status(ctx: Context, leader: Any, entries: list[Any]) -> None:
    from rotator import commands

    ctx.emit(commands.leader_line(leader))
    if entries:
        ctx.emit(commands.table(commands.STATUS_HEADERS, commands.status_rows(entries)))
    else:
        ctx.emit("no sources configured or recorded")


def _watch_status(
    ctx: Context, output: str, config: Config, engine: Any, clock: Any, interval: float
) -> int:
    """``rotator status --watch``: a live view on a terminal; otherwise a dated snapshot (or one
    JSON object per line with ``-o json``) every ``interval`` seconds. Ctrl-C ends it (exit 0)."""
    from rotator import commands, views
    from rotator.model import iso

    live = None
    if output != "json" and views.is_terminal(ctx.stdout):
        from rich.live import Live

        live = Live(console=views.console(ctx.stdout), auto_refresh=False, transient=False)
        live.start()
    try:
        while True:
            now = clock.now()
            leader, entries = _status_snapshot(config, engine, clock)
            if live is not None:
                footer = f"{iso(now)}: every {interval:g}s, Ctrl-C to stop"
                live.update(views.status_view(commands.leader_line(leader), entries, footer))
                live.refresh()
            elif output == "json":
                doc = {"at": iso(now), "leader": leader, "sources": entries}
                ctx.emit(json.dumps(doc, sort_keys=False, default=str))
            else:
                ctx.emit(f"--- {iso(now)}")
                _emit_status(ctx, leader, entries)
                ctx.emit()
            ctx.stdout.flush()
            clock.sleep(interval)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        if live is not None:
            live.stop()


def cmd_sandbox_demo(args: argparse.Namespace, ctx: Context) -> int:
    """Run the guided demo: the daemon against an in-process sandbox on a sped-up clock."""
    from rotator import views
    from rotator.demo import DemoOptions, run_demo

    if not args.speed > 0:
        raise UsageError("--speed: must be a positive number")
    if args.duration is not None and not args.duration > 0:
        raise UsageError("--duration: must be a positive number of seconds")
    ctx.load()
    options = DemoOptions(
        version=args.version,
        work_dir=Path(args.dir) if args.dir else None,
        speed=args.speed,
        duration=args.duration,
        live=views.is_terminal(ctx.stdout),
        stream=ctx.stdout,
        # The story goes to standard output; the daemon's log to a file unless asked for.
        log_level=ctx.log_level,
        log_format=ctx.log_format,
    )
    return run_demo(ctx.emit, options)


def cmd_purge(args: argparse.Namespace, ctx: Context) -> int:
    """Invalidate rotator's identity's own expired keys in bulk, or list them (``--dry-run``)."""
    from rotator.durations import DurationError, parse_duration

    expired_for = None
    if args.expired_for is not None:
        try:
            expired_for = parse_duration(args.expired_for)
        except DurationError as exc:
            raise UsageError(f"--expired-for: {exc}") from None
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit: must be at least 1")
    return _purge(ctx, args.output, args.dry_run, expired_for, args.limit)


def _purge(ctx: Context, output: str, dry_run: bool, expired_for: Any, limit: int | None) -> int:
    from rotator import commands
    from rotator.app import build_purger, open_current_store
    from rotator.clock import SystemClock

    config = ctx.load()
    engine = open_current_store(config)
    clock = SystemClock()
    try:
        purger = build_purger(config, engine, clock)
        if dry_run:  # writes nothing, so it needs no lease
            report = purger.run(dry_run=True, expired_for=expired_for, limit=limit)
        else:
            with commands.leadership(engine, clock, config.service.lease_ttl) as lease:
                report = purger.fenced(lease).run(expired_for=expired_for, limit=limit)
            commands.copy_audit(config, engine, clock)
    finally:
        engine.dispose()
    if output == "json":
        ctx.emit_json(report.to_json())
    else:
        for line in _purge_lines(report):
            ctx.emit(line)
    if report.error or report.stopped:
        print(f"rotator purge: stopped: {report.error or report.stopped}", file=ctx.stderr)
    return EXIT_FAILED if report.failed else EXIT_OK


def _purge_lines(report: Any) -> list[str]:
    from rotator import commands

    chosen = report.selection
    verb = "would invalidate" if report.dry_run else "selected"
    lines = [f"{verb} {chosen.count} expired key(s) of {report.owner or '?'}"]
    if chosen.count:
        lines[0] += f", the oldest expired {chosen.oldest:%Y-%m-%d %H:%M:%S}Z"
        lines.append(
            commands.table(
                ["OWNER", "KEYS"], [[o, str(n)] for o, n in chosen.by_owner.most_common()]
            )
        )
        lines.append(
            commands.table(
                ["NAME PREFIX", "KEYS"], [[p, str(n)] for p, n in chosen.by_prefix.most_common()]
            )
        )
    if report.dry_run:
        return lines
    counts = report.counts()
    lines.append(
        f"invalidated {counts['invalidated']}, previously invalidated "
        f"{counts['previously_invalidated']}, no longer valid {counts['not_found']}, "
        f"failed {counts['error']}; tombstones deleted {report.tombstones_deleted}"
    )
    if report.errors:
        lines.append(commands.table(["KEY", "ERROR"], [[k, e] for k, e in report.errors.items()]))
    return lines


_AUDIT_FILTERS = ("source", "key", "action", "outcome", "since", "until", "actor")


def _audit_filter(args: argparse.Namespace, now: Any) -> Any:
    """The filter the options describe; a bad value is a usage error naming its option."""
    from rotator.audit_query import AuditFilter, InvalidTime, UnknownAction, parse_time

    times = {}
    for option in ("since", "until"):
        text = getattr(args, option, None)
        if text is not None:
            try:
                times[option] = parse_time(text, now)
            except InvalidTime as exc:
                raise UsageError(f"--{option}: {exc}") from None
    if times.get("since") and times.get("until") and times["since"] >= times["until"]:
        raise UsageError(f"--since {args.since!r} is not before --until {args.until!r}")
    try:
        return AuditFilter(
            source=getattr(args, "source", None),
            key=getattr(args, "key", None),
            action=getattr(args, "action", None),
            outcome=getattr(args, "outcome", None),
            actor=getattr(args, "actor", None),
            **times,
        )
    except UnknownAction as exc:
        raise UsageError(f"--action: {exc}") from None


def _audit_store(ctx: Context) -> tuple[Any, Any]:
    """The config and an engine on a store whose schema is current."""
    from rotator.app import open_current_store

    config = ctx.load()
    return config, open_current_store(config)


def _ndjson(event: Any) -> str:
    return json.dumps(event.to_json(), separators=(",", ":"), default=str)


def cmd_audit(args: argparse.Namespace, ctx: Context) -> int:
    """List the audit events the filters select, oldest first; ``--follow`` then streams the
    events committed later until SIGINT."""
    from rotator import audit_query
    from rotator.clock import SystemClock
    from rotator.store.db import read_session_factory

    clock = SystemClock()
    wanted = _audit_filter(args, clock.now())
    output = args.output or "table"
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit: must be at least 1")
    if args.follow and output == "json":
        raise UsageError("--follow streams events as they come: use -o table or -o ndjson")
    if args.follow and args.until is not None:
        raise UsageError("--follow waits for new events: it cannot be combined with --until")
    _config, engine = _audit_store(ctx)
    try:
        sessions = read_session_factory(engine)
        table = audit_query.TableWriter(ctx.emit)
        count = 0

        def emit(event: Any) -> None:
            nonlocal count
            count += 1
            if output == "table":
                table.add(event)
            elif output == "ndjson":
                ctx.emit(_ndjson(event))
            else:
                opening = "\n" if count == 1 else ",\n"
                ctx.stdout.write(opening + "    " + json.dumps(event.to_json(), default=str))

        if output == "json":
            ctx.stdout.write('{\n  "events": [')
        with sessions() as session:
            head = audit_query.newest_seq(session)
            start = (
                audit_query.start_of_newest(session, wanted, args.limit)
                if args.limit is not None
                else 0
            )
            cursor = start
            for event in audit_query.events(session, wanted, after_seq=start, limit=args.limit):
                emit(event)
                cursor = event.seq
        if output == "json":
            ctx.stdout.write(("\n  " if count else "") + f'],\n  "count": {count}\n}}\n')
            return EXIT_OK
        if output == "table":
            table.flush()
        if not args.follow:
            if output == "table":
                ctx.emit(f"\n{count} event(s)" if count else "no audit event matches")
            return EXIT_OK

        def emit_now(event: Any) -> None:
            emit(event)
            table.flush()
            ctx.stdout.flush()

        ctx.stdout.flush()
        try:
            audit_query.follow(
                sessions,
                wanted,
                after_seq=max(cursor, head),
                emit=emit_now,
                sleep=clock.sleep,
            )
        except KeyboardInterrupt:
            return EXIT_OK
    except BrokenPipeError:
        return _reader_gone(ctx)
    finally:
        engine.dispose()
    return EXIT_OK  # pragma: no cover (follow returns only by an exception)


def _reader_gone(ctx: Context) -> int:
    """Whoever read the output stopped (``| head``): stop quietly, like other filters."""
    import os
    import sys

    if ctx.stdout is sys.stdout:  # later flushes of the closed pipe go nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def cmd_audit_verify(args: argparse.Namespace, ctx: Context) -> int:
    """Verify the store's chain against its anchors, or an exported file offline: 0 intact,
    1 broken (the first break: sequence, expected, found)."""
    from rotator.audit_query import verify_store

    given = [f"--{name}" for name in _AUDIT_FILTERS if getattr(args, name, None) is not None]
    if args.follow or args.limit is not None:
        given += ["--follow"] if args.follow else []
        given += ["--limit"] if args.limit is not None else []
    if given:
        raise UsageError(
            f"audit verify checks the whole chain: {', '.join(given)} do(es) not apply to it"
        )
    output = args.output or "table"
    if output == "ndjson":
        raise UsageError("audit verify: -o table or -o json")
    if args.file is not None:
        result = _verify_file(args.file)
        where = args.file
    else:
        config, engine = _audit_store(ctx)
        try:
            result = verify_store(config, engine)
        finally:
            engine.dispose()
        from rotator.store.db import redacted_url

        where = redacted_url(engine.url)
    if output == "json":
        anchor = result.anchor
        ctx.emit_json(
            {
                "verified": where,
                "ok": result.ok,
                "events": result.events,
                "first_seq": result.first_seq,
                "last_seq": result.last_seq,
                "broken_at": result.broken_at,
                "reason": result.reason or None,
                "expected": result.expected,
                "found": result.found,
                "anchor": None
                if anchor is None
                else {"seq": anchor.seq, "hash": anchor.hash, "where": anchor.where},
            }
        )
    else:
        ctx.emit(result.describe())
    return EXIT_OK if result.ok else EXIT_FAILED


def _verify_file(path: str) -> Any:
    """Verify an exported file (``-`` for standard input) line by line, offline."""
    import sys
    from collections.abc import Iterable, Iterator

    from rotator.audit import verify_lines

    def decoded(raw: Iterable[bytes]) -> Iterator[str]:
        for number, line in enumerate(raw, start=1):
            try:
                yield line.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError(f"line {number}: not UTF-8 text") from None

    try:
        if path == "-":
            return verify_lines(decoded(sys.stdin.buffer))
        with open(path, "rb") as handle:
            return verify_lines(decoded(handle))
    except OSError as exc:
        raise UsageError(f"--file {path}: cannot read it: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"--file {path}: {exc}") from None


def cmd_audit_export(args: argparse.Namespace, ctx: Context) -> int:
    """Write the selected events as NDJSON with their chain fields, for evidence requests; a
    contiguous range (only --since/--until) verifies offline with ``audit verify --file``."""
    from rotator import audit_query
    from rotator.clock import SystemClock
    from rotator.store.db import read_session_factory

    if args.follow or args.limit is not None or args.output is not None:
        raise UsageError(
            "audit export writes every selected event as NDJSON: --follow, --limit and -o do "
            "not apply to it"
        )
    wanted = _audit_filter(args, SystemClock().now())
    _config, engine = _audit_store(ctx)
    count, first, last = 0, None, None
    try:
        with read_session_factory(engine)() as session:
            for event in audit_query.events(session, wanted):
                ctx.emit(_ndjson(event))
                count += 1
                first = event.seq if first is None else first
                last = event.seq
    except BrokenPipeError:
        return _reader_gone(ctx)
    finally:
        engine.dispose()
    span = f" (sequence {first}..{last})" if count else ""
    print(f"rotator audit export: {count} event(s){span}", file=ctx.stderr)
    if wanted.narrows and count:
        print(
            "rotator audit export: filters other than --since/--until leave events out, so "
            "this export does not verify on its own with `rotator audit verify --file`",
            file=ctx.stderr,
        )
    return EXIT_OK


def not_yet(feature: str) -> Handler:
    """A verb whose feature this version does not have: it says so, after checking the config."""

    def handler(args: argparse.Namespace, ctx: Context) -> int:
        ctx.load()
        raise NotImplementedYet(
            f"`rotator {args.verb_name}` is not available in rotator {__version__}: "
            f"{feature} is not part of this version"
        )

    return handler


def split_problems(problems: Sequence[str]) -> list[dict[str, str]]:
    """``path: message`` lines as ``{"path", "message"}`` objects for ``-o json``."""
    out = []
    for problem in problems:
        path, _, message = problem.partition(": ")
        out.append({"path": path, "message": message})
    return out
