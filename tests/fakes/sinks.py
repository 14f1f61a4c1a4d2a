"""An in-memory sink: it keeps what it was handed, and can be told to refuse deliveries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rotator.errors import DeliveryFailed
from rotator.ports import Credential, DeliveryReceipt

__all__ = ["MemorySink"]


class MemorySink:
    """A ``rotator.ports.Sink`` whose consumer is a list: the last credential is the one in use."""

    def __init__(self, name: str = "memory:web", *, acknowledges: bool = True) -> None:
        self._name = name
        self.delivered: list[Credential] = []
        self.acknowledges = acknowledges
        self._refusals = 0

    @property
    def name(self) -> str:
        """The sink's name in logs, receipts and the audit trail."""
        return self._name

    @property
    def current(self) -> Credential | None:
        """The credential the consumer reads now, or None before the first delivery."""
        return self.delivered[-1] if self.delivered else None

    def refuse_next(self, times: int = 1) -> None:
        """Make the next ``times`` deliveries fail with a retryable DeliveryFailed."""
        self._refusals += times

    def deliver(self, credential: Credential) -> DeliveryReceipt:
        """Keep the credential; the receipt names the key, never its secret."""
        if self._refusals:
            self._refusals -= 1
            raise DeliveryFailed(f"{self._name} refused the key")
        self.delivered.append(credential)
        return DeliveryReceipt(self._name, "memory", state={"key_id": credential.id})

    def acknowledge(self, credential: Credential) -> bool:
        """Whether the consumer has moved to ``credential`` (when it acknowledges at all)."""
        current = self.current
        return self.acknowledges and current is not None and current.id == credential.id

    def check(self, state: Mapping[str, Any]) -> str | None:
        """Whether the consumer still holds the key its receipt names."""
        current = self.current
        if current is None or current.id != state.get("key_id"):
            return f"{self._name} no longer holds key {state.get('key_id')}"
        return None
