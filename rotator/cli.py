"""The ``rotator`` command line: the parser, config selection, error reporting and exit codes.

Exit codes: 0 everything done, 1 some actions failed, 2 a config or usage error, 3 a dependency
(Elasticsearch, the store) unavailable.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rotator import __version__
from rotator.cli_verbs import (
    DEFAULT_CONFIG_NAME,
    EXIT_FAILED,
    EXIT_USAGE,
    Context,
    Handler,
    cmd_audit,
    cmd_audit_export,
    cmd_audit_verify,
    cmd_check_config,
    cmd_db_current,
    cmd_db_upgrade,
    cmd_keys,
    cmd_once,
    cmd_plan,
    cmd_purge,
    cmd_rotate,
    cmd_run,
    cmd_sandbox_demo,
    cmd_sandbox_serve,
    cmd_status,
)
from rotator.config import Config
from rotator.errors import (
    AuthenticationFailed,
    ConfigError,
    RotatorError,
)

__all__ = ["Context", "build_parser", "main"]

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
    once.add_argument(
        "job",
        nargs="?",
        choices=("provision", "rotate", "all", "track", "purge"),
        default="all",
        help="provision, rotate or all (the lifecycle job; the default), track (one sweep of "
        "the key inventory) or purge (one bulk invalidation of expired keys)",
    )
    _add_output(once)
    _add_output(verb("plan", cmd_plan, "show what would be done now, and why (changes nothing)"))
    status = verb("status", cmd_status, "show each source's key, times, state and failures")
    status.add_argument(
        "--watch",
        action="store_true",
        help="show it again every --interval seconds until Ctrl-C (a live view on a terminal)",
    )
    status.add_argument(
        "--interval",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds between two views with --watch (default: 2)",
    )
    _add_output(status)
    rotate = verb("rotate", cmd_rotate, "rotate a source's key now, whatever its renewal time")
    target = rotate.add_mutually_exclusive_group(required=True)
    target.add_argument("source", nargs="?", help="the source to rotate")
    target.add_argument("--all", action="store_true", help="rotate every source")
    rotate.add_argument("--dry-run", action="store_true", help="show what would happen")
    _add_output(rotate)
    keys = verb(
        "keys",
        cmd_keys,
        "list the key inventory from the store: class, owner, expiry, findings (the track job "
        "fills it)",
    )
    keys.add_argument(
        "--class",
        dest="key_class",
        choices=("kibana-managed", "rotator", "user", "cross_cluster"),
        help="only keys of this class",
    )
    keys.add_argument(
        "--expiring", metavar="DURATION", help="only active keys expiring within this (e.g. 14d)"
    )
    keys.add_argument("--expired", action="store_true", help="only expired keys")
    keys.add_argument("--owner", metavar="NAME", help="only keys owned by this user")
    keys.add_argument(
        "--finding",
        choices=("no_expiration", "lifetime_exceeds", "unrestricted", "stale", "owner_missing"),
        help="only keys with this policy finding",
    )
    keys.add_argument(
        "--all", dest="include_gone", action="store_true", help="include keys gone from ES"
    )
    _add_output(keys)
    purge = verb(
        "purge",
        cmd_purge,
        "invalidate expired keys in bulk (0 done, 1 some keys could not be invalidated)",
    )
    purge.add_argument(
        "--dry-run", action="store_true", help="list what would be invalidated; change nothing"
    )
    purge.add_argument(
        "--expired-for",
        metavar="DURATION",
        help="only keys expired for at least this long, e.g. 7d (default: purge.expired_for)",
    )
    purge.add_argument(
        "--limit", type=int, metavar="N", help="invalidate at most N keys (the oldest first)"
    )
    _add_output(purge)
    audit = verb(
        "audit",
        cmd_audit,
        "read the audit trail (oldest first), verify its hash chain, export it",
        epilog="Relative times count back from now (24h, 7d); absolute ones are ISO 8601 "
        "(2026-11-30, 2026-11-30T08:00:00Z; UTC when no offset is given). --since includes "
        "its time, --until excludes it.",
    )

    def audit_filters(parser: argparse.ArgumentParser, default: Any) -> None:
        parser.add_argument(
            "--source",
            metavar="S",
            default=default,
            help="events of this source (subject or details.source)",
        )
        parser.add_argument(
            "--key",
            metavar="ID",
            default=default,
            help="events about this key id (subject "
            "key:ID, a key id in the details, or listed in a purge batch)",
        )
        parser.add_argument(
            "--action",
            metavar="PREFIX",
            default=default,
            help="actions starting with this (key.invalidated, key., inventory.)",
        )
        parser.add_argument(
            "--outcome",
            choices=("success", "failure", "warning"),
            default=default,
            help="only events with this outcome",
        )
        parser.add_argument(
            "--since", metavar="T", default=default, help="events at or after T (24h, 7d, ISO 8601)"
        )
        parser.add_argument(
            "--until", metavar="T", default=default, help="events before T (24h, 7d, ISO 8601)"
        )
        parser.add_argument(
            "--actor",
            metavar="TEXT",
            default=default,
            help="actors containing this text (case-insensitive): an OS user, a host",
        )

    audit_filters(audit, None)
    audit.add_argument(
        "--output",
        "-o",
        choices=("table", "json", "ndjson"),
        help="table (default), json (one document) or ndjson (one event per line, with its "
        "chain fields)",
    )
    audit.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="only the newest N selected events (still oldest first)",
    )
    audit.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="then print new events as they are committed, until interrupted (Ctrl-C)",
    )
    audit_verbs = audit.add_subparsers(dest="audit_verb", metavar="[verify|export]")
    audit_verify = audit_verbs.add_parser(
        "verify",
        help="walk the hash chain and report its first break (0 intact, 1 broken)",
        description="Walk the whole chain in the store and check it against the newest "
        "anchor (the head recorded in the JSONL mirror or Elasticsearch), or check an "
        "exported file offline with --file (no store needed). Exit 0 intact, 1 broken: the "
        "first broken sequence, what was expected and what was found.",
    )
    audit_verify.add_argument(
        "--file", metavar="PATH", help="an export of `rotator audit export` (- for stdin)"
    )
    audit_verify.add_argument(
        "--output", "-o", choices=("table", "json"), default=argparse.SUPPRESS
    )
    audit_verify.set_defaults(handler=cmd_audit_verify, verb_name="audit verify")
    audit_export = audit_verbs.add_parser(
        "export",
        help="write the selected events as NDJSON with their chain fields (evidence)",
        description="Write the selected events to standard output, one JSON object per line "
        "with every field the hash covers. An export of a contiguous range (--since/--until "
        "only) verifies offline with `rotator audit verify --file`.",
    )
    audit_filters(audit_export, argparse.SUPPRESS)
    audit_export.set_defaults(handler=cmd_audit_export, verb_name="audit export")
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
    from rotator.demo import DEFAULT_SPEED as DEMO_SPEED

    demo = sb_verbs.add_parser(
        "demo",
        help="the daemon, a shipper and a key's whole life against an in-process sandbox",
        description="Start an in-process sandbox and rotator's daemon on one clock running "
        "--speed times faster than real time, with the sources of rotator/demo.yaml in a "
        "temporary directory (or --dir). A shipper ships with each delivered key while the "
        "daemon provisions, rotates with overlap and retires them, warns about a Kibana-managed "
        "key and purges expired keys; at the end the audit chain is verified and the shipper's "
        "failed ingestions counted (exit 1 unless 0). A live view on a terminal, timestamped "
        "lines otherwise.",
    )
    demo.add_argument("--version", default="8.17.4", help="Elasticsearch version to emulate")
    demo.add_argument(
        "--dir",
        metavar="DIR",
        help="keep the store, the delivered credentials, the audit copy and the daemon's log in "
        "DIR (default: a temporary directory, removed at the end)",
    )
    demo.add_argument(
        "--speed",
        type=float,
        default=DEMO_SPEED,
        metavar="N",
        help=f"key time runs N times faster than real time (default: {DEMO_SPEED}, a day "
        "every 4 s: the story takes about 40 s)",
    )
    demo.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help="stop after S seconds of real time, told or not (default: when the story is told)",
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
