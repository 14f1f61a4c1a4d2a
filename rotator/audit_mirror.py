"""Copies of the audit trail outside the store, and the anchors they give.

The JSONL mirror (``audit.jsonl_path``) gets every event, one :class:`~rotator.audit.ChainEvent`
per line with its chain fields, so the file verifies on its own (``rotator audit verify --file``)
and its last line is an anchor: the newest head the trail ever had. It is created 0600, appended
to a batch at a time with one fsync per batch, and rotated by size (``PATH.1`` the newest of
``audit.jsonl_backups``). Shipping to Elasticsearch (``audit.data_stream``) is the other copy,
in :mod:`rotator.audit_ship`.

:func:`sync_copies` brings every copy up to date; the daemon runs it after each job and as its
own ``audit`` job, which also applies ``audit.retention``. A copy that fails is logged and retried
next time: it never fails the job that triggered it.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from rotator.audit import Anchor, AuditLog, ChainEvent, apply_retention, default_actor
from rotator.clock import Clock
from rotator.config import Config
from rotator.log import get_logger, redact_text
from rotator.store.db import read_session_factory, session_factory
from rotator.store.models import AuditCursor, AuditEvent
from rotator.vocabulary import AuditAction, AuditOutcome

_log = get_logger("rotator.audit.copies")
BATCH = 500


@dataclass
class CopyReport:
    """What one sync did: events written per copy, and the problems met."""

    written: dict[str, int] = field(default_factory=dict)
    retained_removed: int = 0
    problems: list[str] = field(default_factory=list)
    stopped: str | None = None  # as every job's report: a copy never loses the lease


class JsonlMirror:
    """An append-only JSONL copy of the trail, rotated by size."""

    def __init__(self, path: str | Path, *, max_bytes: int, backups: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups

    @property
    def where(self) -> str:
        """How anchors from this mirror are named."""
        return f"jsonl:{self.path}"

    def files(self) -> list[Path]:
        """The mirror's files, newest first (the live file, then ``.1``, ``.2``, ...)."""
        out = [self.path] if self.path.exists() else []
        n = 1
        while (older := self.path.with_name(f"{self.path.name}.{n}")).exists():
            out.append(older)
            n += 1
        return out

    def head(self) -> ChainEvent | None:
        """The newest event written (the last line of the newest file that has one)."""
        for path in self.files():
            line = _last_line(path)
            if line:
                try:
                    return ChainEvent.from_json(json.loads(line))
                except ValueError:
                    _log.error("audit_mirror_unreadable", path=str(path))
                    return None
        return None

    def anchor(self) -> Anchor | None:
        """The mirror's head as an anchor."""
        head = self.head()
        return None if head is None else Anchor(head.seq, head.hash, self.where)

    def append(self, events: list[ChainEvent]) -> None:
        """Write a batch, then fsync once; rotate first when the file is full."""
        if not events:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size >= self.max_bytes:
            self._rotate()
        data = "".join(
            json.dumps(e.to_json(), sort_keys=True, separators=(",", ":")) + "\n" for e in events
        ).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.fchmod(fd, 0o600)
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)

    def _rotate(self) -> None:
        if self.backups == 0:
            self.path.unlink()
            return
        oldest = self.path.with_name(f"{self.path.name}.{self.backups}")
        if oldest.exists():
            oldest.unlink()
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                older.rename(self.path.with_name(f"{self.path.name}.{n + 1}"))
        self.path.rename(self.path.with_name(f"{self.path.name}.1"))
        _log.info("audit_mirror_rotated", path=str(self.path))

    def sync(self, session: Session) -> int:
        """Append every stored event newer than the mirror's head; returns how many.

        Raises:
            MirrorAhead: the mirror holds events the store no longer has (the newest events
                were removed from the store): nothing is written, ``verify`` names them.
        """
        head = self.head()
        after = 0 if head is None else head.seq
        newest = session.scalar(sa.select(sa.func.max(AuditEvent.seq))) or 0
        if newest < after:
            raise MirrorAhead(
                f"the mirror {self.path} ends at event {after} but the store at {newest}: "
                "run `rotator audit verify`"
            )
        written = 0
        for batch in _batches(session, after):
            self.append(batch)
            written += len(batch)
        return written


class MirrorAhead(Exception):
    """The mirror is ahead of the store: events were removed from the store."""


def _batches(session: Session, after: int) -> Iterator[list[ChainEvent]]:
    cursor = after
    while True:
        rows = list(
            session.scalars(
                sa.select(AuditEvent)
                .where(AuditEvent.seq > cursor)
                .order_by(AuditEvent.seq)
                .limit(BATCH)
            )
        )
        if not rows:
            return
        yield [ChainEvent.from_row(r) for r in rows]
        cursor = rows[-1].seq
        if len(rows) < BATCH:
            return


def _last_line(path: Path) -> str:
    """The last non-empty line of a file, read from its end."""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        block, data = 4096, b""
        while size > 0:
            step = min(block, size)
            size -= step
            handle.seek(size)
            data = handle.read(step) + data
            lines = data.rstrip(b"\n").split(b"\n")
            if len(lines) > 1 or size == 0:
                return lines[-1].decode("utf-8", "replace").strip()
    return ""


def mirror_of(config: Config) -> JsonlMirror | None:
    """The configured JSONL mirror, or None."""
    audit = config.audit
    if audit.jsonl_path is None:
        return None
    return JsonlMirror(
        audit.jsonl_path, max_bytes=audit.jsonl_max_bytes, backups=audit.jsonl_backups
    )


def anchors(config: Config, *, engine: Engine | None = None) -> list[Anchor]:
    """Every head recorded outside the chain that can be read now (mirror, Elasticsearch)."""
    out = []
    mirror = mirror_of(config)
    if mirror is not None:
        anchor = mirror.anchor()
        if anchor is not None:
            out.append(anchor)
    if config.audit.data_stream is not None:
        shipped = _shipped_anchor(config)
        if shipped is not None:
            out.append(shipped)
    return out


def _shipping() -> Any:
    """The shipping module (imported late: it pulls in the Elasticsearch client)."""
    return importlib.import_module("rotator.audit_ship")


def _shipped_anchor(config: Config) -> Anchor | None:
    found: Any = _shipping().shipped_anchor(config)
    return found if isinstance(found, Anchor) else None


def sync_copies(
    config: Config, engine: Engine, clock: Clock, *, retention: bool = False, authority: Any = None
) -> CopyReport:
    """Bring every copy up to date; with ``retention``, then apply ``audit.retention``.

    Never raises: a copy that fails is logged and listed in the report.
    """
    report = CopyReport()
    mirror = mirror_of(config)
    if mirror is not None:
        try:
            with read_session_factory(engine)() as session:
                report.written["jsonl"] = mirror.sync(session)
        except (OSError, MirrorAhead, sa.exc.SQLAlchemyError) as exc:
            _problem(report, "jsonl", exc)
    if config.audit.data_stream is not None:
        try:
            shipped: Any = _shipping().ship_pending(config, engine, clock, authority=authority)
            report.written["elasticsearch"] = int(getattr(shipped, "shipped", 0) or 0)
            for problem in getattr(shipped, "problems", []) or []:
                report.problems.append(f"elasticsearch: {problem}")
        except Exception as exc:
            _problem(report, "elasticsearch", exc)
    if retention and config.audit.retention is not None:
        try:  # a copy that could not be read holds the retention back (see _retain)
            report.retained_removed = _retain(config, engine, clock.now(), mirror)
        except sa.exc.SQLAlchemyError as exc:
            _problem(report, "retention", exc)
    return report


def _problem(report: CopyReport, copy: str, exc: BaseException) -> None:
    text = redact_text(f"{type(exc).__name__}: {exc}")[:300]
    report.problems.append(f"{copy}: {text}")
    _log.error("audit_copy_failed", copy=copy, error=text)


def _retain(config: Config, engine: Engine, now: datetime, mirror: JsonlMirror | None) -> int:
    """Remove events older than ``audit.retention``, but never one a copy has not got yet."""
    assert config.audit.retention is not None
    before = now - config.audit.retention
    with session_factory(engine)() as session, session.begin():
        copied_up_to: list[int] = []
        if mirror is not None:
            try:
                head = mirror.head()
            except OSError:
                head = None  # unreadable: nothing counts as copied
            copied_up_to.append(0 if head is None else head.seq)
        if config.audit.data_stream is not None:
            cursor = session.scalar(
                sa.select(AuditCursor.seq).where(
                    AuditCursor.name == f"elasticsearch:{config.audit.data_stream}"
                )
            )
            copied_up_to.append(int(cursor or 0))
        limit = min(copied_up_to) if copied_up_to else None
        removed = apply_retention(session, before=before, now=now, up_to=limit)
        if removed:
            AuditLog(session_factory(engine), default_actor()).write(
                session,
                now=now,
                action=AuditAction.AUDIT_RETENTION_APPLIED,
                subject="audit",
                outcome=AuditOutcome.SUCCESS,
                details={"removed": removed, "before": before.isoformat()},
            )
    if removed:
        _log.info("audit_retention_applied", removed=removed, before=before.isoformat())
    return removed
