"""What every sink shares: the source guard and the credential as a JSON document."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rotator.clock import utc
from rotator.errors import DeliveryFailed
from rotator.ports import Credential


def require_source(credential: Credential, source: str, sink: str) -> None:
    """Refuse a credential meant for another source (a wiring mistake would leak it).

    Raises:
        DeliveryFailed: the credential belongs to another source.
    """
    if credential.source != source:
        raise DeliveryFailed(
            f"{sink}: refusing a credential of source {credential.source!r}: "
            f"this sink delivers for {source!r}"
        )


def iso(value: datetime | None) -> str | None:
    """ISO-8601 UTC with a ``Z``, or None."""
    return None if value is None else utc(value).isoformat().replace("+00:00", "Z")


def credential_document(credential: Credential) -> dict[str, Any]:
    """``{"id", "name", "api_key", "encoded", "expiration"}``: what file and webhook sinks send."""
    return {
        "id": credential.id,
        "name": credential.name,
        "api_key": credential.api_key,
        "encoded": credential.encoded,
        "expiration": iso(credential.expiration),
    }
