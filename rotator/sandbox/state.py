"""The sandbox's whole state: security objects, documents, clock, settings, faults and stats."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from rotator.clock import Clock, SystemClock
from rotator.sandbox.documents import DocumentStore, Index
from rotator.sandbox.security_state import SecurityState


class SandboxClock:
    """The sandbox's notion of now: the base clock plus an offset set through the control API.

    The base clock is rotator's SystemClock, which freezegun controls in tests, so an in-process
    sandbox follows freezegun; ``set``/``advance`` move it further for demos and tests. Another
    base (``Sandbox.start(clock=...)``, e.g. the demo's ScaledClock) makes the sandbox share it.
    """

    def __init__(self, base: Clock | None = None) -> None:
        self._base = base or SystemClock()
        self._offset_ms = 0

    def now_ms(self) -> int:
        """Current time in epoch milliseconds."""
        return int(self._base.now().timestamp() * 1000) + self._offset_ms

    def set(self, epoch_ms: int) -> None:
        """Make now equal ``epoch_ms`` (the base clock keeps running from there)."""
        self._offset_ms += epoch_ms - self.now_ms()

    def advance(self, delta: timedelta) -> None:
        """Move now forward by ``delta``."""
        self._offset_ms += int(delta.total_seconds() * 1000)

    def reset(self) -> None:
        """Follow the base clock again."""
        self._offset_ms = 0


@dataclass
class SandboxState:
    """Everything a sandbox holds; every handler runs with ``lock`` held."""

    version: str
    cluster_name: str = "rotator-sandbox"
    security: SecurityState = field(default_factory=SecurityState)
    docs: DocumentStore = field(default_factory=DocumentStore)
    clock: SandboxClock = field(default_factory=SandboxClock)
    lock: threading.RLock = field(default_factory=threading.RLock)
    stats: Counter[tuple[str, str, int]] = field(default_factory=Counter)

    @property
    def major(self) -> int:
        """The emulated major version."""
        return int(self.version.split(".")[0])

    def reset(self) -> None:
        """Wipe everything but the bootstrap users."""
        with self.lock:
            self.security.reset()
            self.docs.reset()

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot for ``--state`` files."""
        with self.lock:
            return {
                "version": self.version,
                "security": self.security.to_json(),
                "indices": self.docs.to_json(),
            }

    def load_json(self, data: dict[str, Any]) -> None:
        """Restore a snapshot made by :meth:`to_json`."""
        with self.lock:
            self.security.load_json(data.get("security", {}))
            self.docs.load_json(data.get("indices", {}))
            self._load_id_only(data)

    def _load_id_only(self, data: dict[str, Any]) -> None:
        """Snapshots from before sources were kept list ids only: restore them with ``{}``."""
        created = data.get("created_at_ms", {})
        for name, ids in data.get("document_ids", {}).items():
            if name not in self.docs.indices:
                index = self.docs.indices[name] = Index(name, int(created.get(name, 0)))
                for doc_id in ids:
                    index.put(str(doc_id), {})
