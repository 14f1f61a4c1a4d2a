"""Shipping the audit trail to an Elasticsearch data stream (``audit.data_stream``).

Entry points (called by :mod:`rotator.audit_mirror` after job runs and when verifying):

``ship_pending(config, engine, clock, *, authority=None, client=None) -> ShipReport``
    Sends every event above the stored high-water mark, ``audit.ship_batch_size`` at a time, with
    ``_bulk`` (``op_type: create``, document id = the event's sequence number). The mark (table
    ``audit_cursors``, row ``elasticsearch:<data_stream>``) is advanced only after Elasticsearch
    answered, and only over the events it holds: delivery is at least once, and a batch sent again
    after a lost answer finds its documents there (409 ``version_conflict_engine_exception``,
    counted as shipped), so the stream never holds an event twice. An event whose details the
    stream's mapping refuses (a field an earlier event mapped as another type) is sent again with
    them as one JSON string, ``rotator.audit.details_json``; an item refused for any other reason
    stops the batch at that event. No answer, 429 and 5xx are retried with the clock's
    backoff, then reported. Never raises for Elasticsearch's sake: everything is in the report.

``shipped_anchor(config, *, client=None) -> Anchor | None``
    The newest shipped event's sequence and hash, read back from the data stream as rotator
    itself (its role needs ``read`` on the stream): the head recorded outside the chain. None when
    shipping is off or the stream cannot be read (the log says why).

The events go in with a key rotator provisions and rotates for itself like any source: the
implicit source ``rotator-audit`` (:func:`shipping_spec`), which exists while
``audit.data_stream`` is set, may only ``create_doc`` and ``auto_configure`` on that data stream,
and is delivered as JSON (mode 0600) to ``audit.ship_key_path``. The shipper reads the current key
from that file; until the lifecycle has provisioned it, shipping waits (``no key yet``).

Documents are ECS-style: ``@timestamp`` (the event's time), ``event.kind: audit``,
``event.action``, ``event.outcome``, ``event.sequence``, and ``rotator.audit.{subject, actor,
details, prev_hash, hash}``. Details were redacted before the event was stored; no secret is ever
part of a document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from rotator.audit import Anchor, ChainEvent
from rotator.clock import Clock, utc
from rotator.config import Config
from rotator.errors import AuthorityUnavailable, RotatorError
from rotator.log import get_logger, redact_text, register_secret
from rotator.store.db import read_session_factory, session_factory
from rotator.store.models import AuditCursor, AuditEvent

if TYPE_CHECKING:
    from rotator.elastic import BulkItem
    from rotator.model import SourceSpec

__all__ = [
    "KEY_FILE_NAME",
    "PRIVILEGES",
    "SOURCE",
    "ShipReport",
    "cursor_name",
    "document",
    "key_path",
    "ship_pending",
    "shipped_anchor",
    "shipping_spec",
]

# The implicit source whose key ships the trail, and what that key may do (nothing else).
SOURCE = "rotator-audit"
PRIVILEGES = ("auto_configure", "create_doc")
KEY_FILE_NAME = "rotator-audit.key"
# Whole-batch retries after no answer, a 429 or a 5xx: waits of 1s, 2s, 4s (the clock's).
ATTEMPTS = 4
# Item errors saying the stream's mapping refused a value (a field mapped as another type).
MAPPING_ERRORS = ("document_parsing_exception", "mapper_parsing_exception")
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 30.0

_log = get_logger("rotator.audit.ship")


class ShipClient(Protocol):
    """What the shipper needs from Elasticsearch (:class:`rotator.elastic.AuditShipClient`)."""

    def bulk_create(self, index: str, documents: Any) -> list[BulkItem]:
        """Create each (id, document) in ``index``; one item per document, in order."""
        ...

    def newest(self, index: str, field: str) -> dict[str, Any] | None:
        """The source of the document with the highest ``field`` (None when there is none)."""
        ...


@dataclass
class ShipReport:
    """What one :func:`ship_pending` did.

    ``shipped`` counts the events the stream holds now that it did not before this call was
    sure of (created, or found there after a lost answer: ``already_there``); ``up_to`` is the
    high-water mark afterwards; ``waiting`` says why nothing was attempted (no key yet);
    ``details_as_text`` lists the events shipped with their details as a JSON string.
    """

    data_stream: str | None = None
    shipped: int = 0
    already_there: int = 0
    batches: int = 0
    retries: int = 0
    up_to: int = 0
    waiting: str | None = None
    details_as_text: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing went wrong (waiting for the key is not wrong)."""
        return not self.problems


def cursor_name(data_stream: str) -> str:
    """The high-water mark's row name (also the anchor's ``where``)."""
    return f"elasticsearch:{data_stream}"


def key_path(config: Config) -> Path:
    """Where the shipping key is delivered: ``audit.ship_key_path``, else ``rotator-audit.key``
    beside a SQLite store, else in the working directory (made absolute)."""
    if config.audit.ship_key_path is not None:
        return Path(config.audit.ship_key_path)
    url = make_url(config.store.url)
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database and database != ":memory:":
        return Path(database).absolute().parent / KEY_FILE_NAME
    return Path.cwd() / KEY_FILE_NAME


def shipping_spec(config: Config) -> SourceSpec | None:
    """The implicit source ``rotator-audit`` while ``audit.data_stream`` is set, else None.

    Its key may only ``create_doc`` and ``auto_configure`` on the data stream; it follows
    ``defaults`` for lifetime, renewal and overlap like a source without overrides, and is
    delivered as JSON (0600) to :func:`key_path`.
    """
    stream = config.audit.data_stream
    if stream is None:
        return None
    from rotator.config import FileSink
    from rotator.config_models import resolve_policy
    from rotator.model import SourceSpec
    from rotator.scoping import Grants

    policy = resolve_policy(config.defaults, None)
    sink = FileSink(type="file", path=str(key_path(config)), format="json", mode="0600")
    return SourceSpec(
        name=SOURCE,
        grants=Grants.build([], [([stream], PRIVILEGES)]),
        metadata=(("purpose", "audit-shipping"),),
        lifetime=policy.lifetime,
        rotate_before=policy.rotate_before,
        overlap=policy.overlap,
        jitter=policy.jitter,
        critical_before=policy.critical_before,
        sinks=(sink,),
        justification=None,
    )


def document(event: ChainEvent, *, details_as_text: bool = False) -> dict[str, Any]:
    """The ECS-style document of one event (its id is the sequence number).

    With ``details_as_text`` the details go as one JSON string, ``rotator.audit.details_json``:
    for an event whose details the stream's mapping refuses as an object.
    """
    details: dict[str, Any] = (
        {"details_json": json.dumps(event.details, sort_keys=True)}
        if details_as_text
        else {"details": event.details}
    )
    return {
        "@timestamp": utc(event.at).isoformat().replace("+00:00", "Z"),
        "message": f"{event.action} {event.subject}: {event.outcome}",
        "event": {
            "kind": "audit",
            "action": event.action,
            "outcome": event.outcome,
            "sequence": event.seq,
        },
        "rotator": {
            "audit": {
                "subject": event.subject,
                "actor": event.actor,
                **details,
                "at": event.at.isoformat(),
                "prev_hash": event.prev_hash,
                "hash": event.hash,
            }
        },
    }


# --- shipping ------------------------------------------------------------------------------------


def ship_pending(
    config: Config,
    engine: Engine,
    clock: Clock,
    *,
    authority: Any = None,
    client: ShipClient | None = None,
) -> ShipReport:
    """Ship every event above the high-water mark; see the module docstring.

    ``authority`` (rotator's own key authority) is not needed: events go in with the shipping
    key. ``client`` replaces the client built from that key (tests).
    """
    del authority  # the shipping key writes, not rotator's own identity
    stream = config.audit.data_stream
    report = ShipReport(data_stream=stream)
    if stream is None:
        report.waiting = "shipping is off (audit.data_stream is not set)"
        return report
    name = cursor_name(stream)
    report.up_to = _cursor(engine, name)
    if client is None:
        client, report.waiting = _key_client(config)
        if client is None:
            _log.info("audit_ship_waiting", data_stream=stream, reason=report.waiting)
            return report
    batch = config.audit.ship_batch_size
    as_text: set[int] = set()
    while True:
        events = _pending(engine, report.up_to, batch)
        if not events:
            break
        items = _send(client, stream, events, as_text, clock, report)
        if items is None:
            break
        shipped, refused = _contiguous(events, items, report)
        if shipped:
            last = shipped[-1]
            _advance(engine, name, last.seq, last.hash, clock.now())
            report.up_to = last.seq
        report.batches += 1
        if refused is not None:
            seq, item = refused
            if item.error_type in MAPPING_ERRORS and seq not in as_text:
                # The stream maps a field of these details as another type (set by an earlier
                # event): send this event again with its details as one JSON string.
                as_text.add(seq)
                report.details_as_text.append(seq)
                continue
            why = f"{item.status} {item.error_type}: {item.reason}".strip()
            if item.doc_id != str(seq):
                why = f"the answer is for document {item.doc_id}"
            report.problems.append(f"event {seq} refused ({redact_text(why)})")
            break
        if len(events) < batch:
            break
    if report.shipped or report.problems:
        log = _log.warning if report.problems else _log.info
        log(
            "audit_shipped",
            data_stream=stream,
            shipped=report.shipped,
            already_there=report.already_there,
            up_to=report.up_to,
            problems=report.problems,
        )
    return report


def _key_client(config: Config) -> tuple[ShipClient | None, str | None]:
    """A client with the delivered shipping key, or None and why there is none yet."""
    path = key_path(config)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, f"no key yet: {path} does not exist (source {SOURCE} not provisioned yet)"
    except OSError as exc:
        return None, f"no key yet: cannot read {path}: {exc.strerror or exc}"
    try:
        credential = json.loads(text)
        encoded = str(credential["encoded"])
        register_secret(str(credential["api_key"]))
    except (ValueError, KeyError, TypeError):
        return None, f"no key yet: {path} does not hold a delivered key (JSON with encoded)"
    from rotator.elastic import AuditShipClient

    return AuditShipClient.with_key(config.elasticsearch, encoded), None


def _pending(engine: Engine, after: int, limit: int) -> list[ChainEvent]:
    with read_session_factory(engine)() as session:
        rows = session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.seq > after)
            .order_by(AuditEvent.seq)
            .limit(limit)
        )
        return [ChainEvent.from_row(row) for row in rows]


def _send(
    client: ShipClient,
    stream: str,
    events: list[ChainEvent],
    as_text: set[int],
    clock: Clock,
    report: ShipReport,
) -> list[BulkItem] | None:
    """One bulk request, retried on no answer, 429 and 5xx; None (reported) when it failed."""
    documents = [(str(e.seq), document(e, details_as_text=e.seq in as_text)) for e in events]
    wait = BACKOFF_INITIAL
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return client.bulk_create(stream, documents)
        except AuthorityUnavailable as exc:
            if attempt == ATTEMPTS:
                report.problems.append(
                    f"events {events[0].seq}..{events[-1].seq} not shipped after {attempt} "
                    f"attempts: {redact_text(exc.message)}"
                )
                return None
            report.retries += 1
            _log.info(
                "audit_ship_retry", attempt=attempt, wait_s=wait, error=redact_text(exc.message)
            )
            clock.sleep(wait)
            wait = min(wait * 2, BACKOFF_MAX)
        except RotatorError as exc:
            report.problems.append(
                f"events {events[0].seq}..{events[-1].seq} refused: {redact_text(exc.message)}"
            )
            return None
    return None


def _contiguous(
    events: list[ChainEvent], items: list[BulkItem], report: ShipReport
) -> tuple[list[ChainEvent], tuple[int, BulkItem] | None]:
    """The events up to the first one Elasticsearch does not hold, and that one's answer."""
    done: list[ChainEvent] = []
    for event, item in zip(events, items, strict=True):
        if item.doc_id != str(event.seq) or not item.ok:
            return done, (event.seq, item)
        if item.already_there:
            report.already_there += 1
        report.shipped += 1
        done.append(event)
    return done, None


def _cursor(engine: Engine, name: str) -> int:
    with read_session_factory(engine)() as session:
        seq = session.scalar(sa.select(AuditCursor.seq).where(AuditCursor.name == name))
    return int(seq or 0)


def _advance(engine: Engine, name: str, seq: int, digest: str, now: datetime) -> None:
    """Move the high-water mark forward (never back: another writer may be ahead)."""
    with session_factory(engine)() as session, session.begin():
        row = session.get(AuditCursor, name)
        if row is None:
            session.add(AuditCursor(name=name, seq=seq, hash=digest, updated_at=now))
        elif row.seq < seq:
            row.seq, row.hash, row.updated_at = seq, digest, now


# --- the anchor ----------------------------------------------------------------------------------


def shipped_anchor(config: Config, *, client: ShipClient | None = None) -> Anchor | None:
    """The newest shipped event's (sequence, hash) as the data stream holds it; see the module
    docstring. ``client`` replaces the one built with rotator's own credentials."""
    stream = config.audit.data_stream
    if stream is None:
        _log.debug("audit_anchor_skipped", reason="shipping is off")
        return None
    try:
        if client is None:
            from rotator.elastic import AuditShipClient

            client = AuditShipClient.as_rotator(config.elasticsearch)
        newest = client.newest(stream, "event.sequence")
    except RotatorError as exc:
        _log.warning("audit_anchor_unavailable", data_stream=stream, error=redact_text(exc.message))
        return None
    if newest is None:
        _log.info("audit_anchor_unavailable", data_stream=stream, error="nothing shipped yet")
        return None
    try:
        seq = int(newest["event"]["sequence"])
        digest = str(newest["rotator"]["audit"]["hash"])
    except (KeyError, TypeError, ValueError):
        _log.warning(
            "audit_anchor_unavailable",
            data_stream=stream,
            error="the newest document is not a shipped audit event",
        )
        return None
    return Anchor(seq, digest, cursor_name(stream))
