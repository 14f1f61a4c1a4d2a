"""Delivery sinks: where a new credential is handed to its source (file, exec, webhook)."""

from __future__ import annotations

from rotator.clock import Clock
from rotator.config import ExecSink, FileSink, WebhookSink
from rotator.delivery.common import SinkFailed
from rotator.delivery.exec import ExecDelivery
from rotator.delivery.file import FileDelivery, render
from rotator.delivery.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookDelivery, sign
from rotator.ports import Sink

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "ExecDelivery",
    "FileDelivery",
    "SinkFailed",
    "WebhookDelivery",
    "build_sink",
    "render",
    "sign",
]


def build_sink(config: FileSink | ExecSink | WebhookSink, *, clock: Clock, source: str) -> Sink:
    """Build the sink a delivery setting describes.

    Args:
        config: one entry of a source's ``deliver`` list.
        clock: the time source (command durations, webhook timestamps and backoff).
        source: the name of the source the sink delivers for; the sink refuses credentials of
            any other source.

    Raises:
        ConfigError: the setting cannot describe a working sink (a world-readable file mode).
        TypeError: ``config`` is not a sink setting.
    """
    if isinstance(config, FileSink):
        return FileDelivery(config, source=source)
    if isinstance(config, ExecSink):
        return ExecDelivery(config, clock=clock, source=source)
    if isinstance(config, WebhookSink):
        return WebhookDelivery(config, clock=clock, source=source)
    raise TypeError(f"not a sink setting: {type(config).__name__}")
