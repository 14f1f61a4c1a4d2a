"""What every sink shares: the failure type, the source guard and the credential as JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rotator.clock import utc
from rotator.errors import DeliveryFailed
from rotator.ports import Credential


class SinkFailed(DeliveryFailed):
    """A sink did not take the credential.

    Attributes:
        summary: one line saying only what failed (the sink, an exit status, an HTTP status, a
            signal, a timeout) and never anything the sink printed or answered: what the audit
            trail records.
        output: an excerpt of what the command printed or the receiver answered, scrubbed of
            every encoding of the credential and capped; empty when there is none.

    The message (``str()``) is the summary followed by the labelled excerpt, for logs and the
    operator.
    """

    def __init__(self, summary: str, output: str = "", *, label: str = "output") -> None:
        """Build the failure.

        Args:
            summary: what failed, without sink output.
            output: the scrubbed, capped excerpt (see :func:`rotator.delivery.scrub.excerpt`).
            label: what the excerpt is (``output`` of a command, ``answer`` of a receiver).
        """
        self.summary = summary
        self.output = output
        super().__init__(f"{summary}; {label}: {output}" if output else summary)


def require_source(credential: Credential, source: str, sink: str) -> None:
    """Refuse a credential meant for another source (a wiring mistake would leak it).

    Raises:
        SinkFailed: the credential belongs to another source.
    """
    if credential.source != source:
        raise SinkFailed(
            f"{sink}: refusing a credential of source {credential.source!r}: "
            f"this sink delivers for {source!r}"
        )


def printable(text: str) -> str:
    """``text`` with control characters escaped, for a name in a one-line message."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


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
