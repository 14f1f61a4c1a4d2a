"""The ``rotator`` command line: verbs, config selection, output formats and exit codes.

Exit codes: 0 everything done, 1 some actions failed, 2 a config or usage error, 3 a dependency
(Elasticsearch, the store) unavailable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from rotator import __version__
from rotator.config import Config, load_config, validate_config
from rotator.errors import (
    AuthenticationFailed,
    ConfigError,
    NotImplementedYet,
    RotatorError,
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
            ctx.emit_json({"file": label, "valid": False, "problems": _split(exc.problems)})
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
    """Run the jobs once: provision, rotate, or all."""
    from rotator import commands

    config, engine, (lifecycle, clock) = _lifecycle_context(ctx)
    try:
        with commands.leadership(engine, clock, config.service.lease_ttl) as lease:
            outcomes = commands.run_once(lifecycle, commands.specs(config), args.job, fence=lease)
    finally:
        engine.dispose()
    return _emit_outcomes(ctx, args, outcomes)


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
    """Show each source's current key, its times, state, last rotation and failures."""
    from rotator import commands
    from rotator.app import open_current_store
    from rotator.clock import SystemClock
    from rotator.store import db

    config = ctx.load()
    engine = open_current_store(config)
    try:
        # Reads only: never waits behind a rotation that holds the store's write lock.
        entries = commands.status(db.read_only(engine), config)
        leader = commands.leader_status(db.read_only(engine), SystemClock().now())
    finally:
        engine.dispose()
    if args.output == "json":
        ctx.emit_json({"leader": leader, "sources": entries})
        return EXIT_OK
    ctx.emit(commands.leader_line(leader))
    if entries:
        ctx.emit(commands.table(commands.STATUS_HEADERS, commands.status_rows(entries)))
    else:
        ctx.emit("no sources configured or recorded")
    return EXIT_OK


def cmd_sandbox_demo(args: argparse.Namespace, ctx: Context) -> int:
    """Run the guided demo against an in-process sandbox."""
    from rotator import log
    from rotator.demo import run_demo

    config = ctx.load()
    # The story goes to standard output; only warnings and errors go to the log.
    log.configure(level=ctx.log_level or "warning", fmt=ctx.log_format or config.log.format)
    return run_demo(ctx.emit, version=args.version, work_dir=Path(args.dir) if args.dir else None)


def not_yet(feature: str) -> Handler:
    """A verb whose feature this version does not have: it says so, after checking the config."""

    def handler(args: argparse.Namespace, ctx: Context) -> int:
        ctx.load()
        raise NotImplementedYet(
            f"`rotator {args.verb_name}` is not available in rotator {__version__}: "
            f"{feature} is not part of this version"
        )

    return handler


# --- parser ------------------------------------------------------------------------------------


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        "-o",
        choices=("table", "json"),
        default="table",
        help="output format (default: table)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every verb."""
    parser = argparse.ArgumentParser(
        prog="rotator",
        description="Keeps the Elasticsearch API keys of ingestion pipelines valid, minimally "
        "scoped and rotated before they expire.",
        epilog="Exit codes: 0 ok, 1 some actions failed, 2 config or usage error, "
        "3 Elasticsearch or the store unavailable.",
    )
    parser.add_argument("--version", action="version", version=f"rotator {__version__}")
    parser.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        help=f"config file (default: $ROTATOR_CONFIG, else ./{DEFAULT_CONFIG_NAME} if present, "
        "else the embedded defaults)",
    )
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    parser.add_argument("--log-format", choices=("auto", "json", "console"))
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb(name: str, handler: Handler, help_text: str, **kw: Any) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text, **kw)
        sub.set_defaults(handler=handler, verb_name=name)
        return sub

    check = verb("check-config", cmd_check_config, "validate a config file and list every problem")
    check.add_argument("path", nargs="?", help="the file to check (default: the selected config)")
    check.add_argument(
        "--skip-secrets",
        action="store_true",
        help="do not check the secrets the config references (that each *_env variable is set "
        "and each *_file is a readable file not every user may read); for checking a config "
        "where its secrets are not present",
    )
    _add_output(check)

    db = verbs.add_parser(
        "db", help="manage the store's schema", description="manage the store's schema"
    )
    db_verbs = db.add_subparsers(dest="db_verb", metavar="ACTION", required=True)
    up = db_verbs.add_parser("upgrade", help="migrate the store to the newest schema")
    up.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    up.set_defaults(handler=cmd_db_upgrade, verb_name="db upgrade")
    cur = db_verbs.add_parser("current", help="show the store's schema revision")
    _add_output(cur)
    cur.set_defaults(handler=cmd_db_current, verb_name="db current")

    verb(
        "run",
        cmd_run,
        "run the daemon: every job on its schedule, under the leader lease, until SIGTERM",
    )
    once = verb("once", cmd_once, "run the jobs once and exit (0 ok, 1 some actions failed)")
    once.add_argument("job", nargs="?", choices=("provision", "rotate", "all"), default="all")
    _add_output(once)
    _add_output(verb("plan", cmd_plan, "show what would be done now, and why (changes nothing)"))
    _add_output(verb("status", cmd_status, "show each source's key, times, state and failures"))
    rotate = verb("rotate", cmd_rotate, "rotate a source's key now, whatever its renewal time")
    target = rotate.add_mutually_exclusive_group(required=True)
    target.add_argument("source", nargs="?", help="the source to rotate")
    target.add_argument("--all", action="store_true", help="rotate every source")
    rotate.add_argument("--dry-run", action="store_true", help="show what would happen")
    _add_output(rotate)
    _add_output(
        verb(
            "keys",
            not_yet("the managed-key inventory"),
            "list tracked managed keys (not in this version)",
        )
    )
    purge = verb(
        "purge",
        not_yet("bulk invalidation"),
        "invalidate expired keys in bulk (not in this version)",
    )
    purge.add_argument("--dry-run", action="store_true", help="list what would be invalidated")
    audit = verb(
        "audit",
        not_yet("the audit trail reader"),
        "read and verify the audit trail (not in this version)",
    )
    _add_output(audit)
    audit.add_argument("--verify", action="store_true", help="check the hash chain")
    sandbox = verbs.add_parser(
        "sandbox",
        help="an emulated Elasticsearch for demos and tests",
        description="an emulated Elasticsearch for demos and tests",
    )
    sb_verbs = sandbox.add_subparsers(dest="sandbox_verb", metavar="ACTION", required=True)
    serve = sb_verbs.add_parser(
        "serve",
        help="serve the emulated Elasticsearch over HTTP",
        description="Serve the emulated Elasticsearch security API over HTTP until SIGTERM or "
        "SIGINT. The first line printed is `listening on http://HOST:PORT`.",
    )
    serve.set_defaults(handler=cmd_sandbox_serve, verb_name="sandbox serve")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, default=9200, help="port (default: 9200; 0 for any free)"
    )
    serve.add_argument("--version", default="8.17.4", help="Elasticsearch version to emulate")
    serve.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="NAME:PASSWORD:ROLE",
        help="a bootstrap user (repeatable); `elastic` sets the superuser's password, which is "
        "random and printed otherwise",
    )
    serve.add_argument("--state", metavar="FILE", help="load state from FILE and save it on exit")
    demo = sb_verbs.add_parser(
        "demo",
        help="provision, rotate and retire keys against an in-process sandbox",
        description="Start an in-process sandbox, create a rotator user with only the role the "
        "README recommends, provision the sources of rotator/demo.yaml into a temporary "
        "directory (or --dir), move both clocks past renewal and past the overlap, and print "
        "each step.",
    )
    demo.add_argument("--version", default="8.17.4", help="Elasticsearch version to emulate")
    demo.add_argument(
        "--dir",
        metavar="DIR",
        help="keep the store and the delivered credentials in DIR (default: a temporary "
        "directory, removed at the end)",
    )
    demo.set_defaults(handler=cmd_sandbox_demo, verb_name="sandbox demo")
    return parser


# --- entry point -------------------------------------------------------------------------------


def _select_config(arg: str | None) -> Path | None:
    if arg:
        return Path(arg)
    from_env = os.environ.get("ROTATOR_CONFIG")
    if from_env:
        return Path(from_env)
    local = Path(DEFAULT_CONFIG_NAME)
    return local if local.is_file() else None


def _split(problems: Sequence[str]) -> list[dict[str, str]]:
    out = []
    for problem in problems:
        path, _, message = problem.partition(": ")
        out.append({"path": path, "message": message})
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    from rotator import log

    parser = build_parser()
    args = parser.parse_args(argv)
    log.configure(level=args.log_level or "info", fmt=args.log_format or "auto")
    ctx = Context(
        stdout=sys.stdout,
        stderr=sys.stderr,
        config_path=_select_config(args.config),
        log_level=args.log_level,
        log_format=args.log_format,
    )
    handler: Handler = args.handler
    try:
        return handler(args, ctx)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=ctx.stderr)
        print(f"rotator: {exc.source}: invalid configuration, nothing was done", file=ctx.stderr)
        return EXIT_USAGE
    except AuthenticationFailed as exc:
        _report(ctx, f"{exc.message}; {_credentials_used(ctx.config)}")
        return exc.exit_code
    except RotatorError as exc:
        _report(ctx, exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rotator: interrupted", file=ctx.stderr)
        return 130
    except Exception as exc:
        return _unexpected(ctx, exc)


def _report(ctx: Context, message: str) -> None:
    """One line for an error rotator expected; its traceback only at debug level."""
    from rotator import log

    print(f"rotator: {log.redact_text(message)}", file=ctx.stderr)
    if log.debug_enabled():
        log.get_logger("rotator.cli").debug("error_traceback", exc_info=True)


def _unexpected(ctx: Context, exc: Exception) -> int:
    """The last resort: one redacted line (the traceback at debug level), exit 1."""
    from rotator import log

    logger = log.get_logger("rotator.cli")
    what = log.redact_text(log.one_line_error(exc))
    if log.debug_enabled():
        logger.error("unexpected_error", error=what, exc_info=True)
    else:
        logger.error("unexpected_error", error=what)
    hint = "" if log.debug_enabled() else " (run with --log-level debug for the traceback)"
    print(f"rotator: unexpected error: {what}{hint}", file=ctx.stderr)
    return EXIT_FAILED


def _credentials_used(config: Config | None) -> str:
    """Say which user and which secret reference rotator authenticated with, never the secret."""
    from rotator.secrets import describe_reference

    if config is None:
        return "check elasticsearch.username and its password reference"
    es = config.elasticsearch
    if es.auth_method == "basic":
        source = describe_reference(es.password_env, es.password_file, "elasticsearch.password")
        return f"rotator authenticated as user {es.username!r} with the password from {source}"
    if es.auth_method == "bearer":
        source = describe_reference(
            es.bearer_token_env, es.bearer_token_file, "elasticsearch.bearer_token"
        )
        return f"rotator authenticated with the bearer token from {source}"
    if es.auth_method == "api_key":
        source = describe_reference(es.api_key_env, es.api_key_file, "elasticsearch.api_key")
        return f"rotator authenticated with the API key from {source}"
    return (
        "no credentials are configured (elasticsearch.username with password_env or password_file)"
    )
