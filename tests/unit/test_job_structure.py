"""The lifecycle job's structure: a handler for every action kind, closed vocabularies."""

from __future__ import annotations

from rotator.jobs.lifecycle import HANDLERS
from rotator.model import ActionKind


def test_every_action_kind_has_a_handler() -> None:
    assert set(HANDLERS) == set(ActionKind)


def test_no_handler_is_shared_by_kinds_that_differ() -> None:
    # Provisioning and rotation are one pipeline; every other kind has its own handler.
    shared = {k for k in HANDLERS if HANDLERS[k] is HANDLERS[ActionKind.ROTATE]}
    assert shared == {ActionKind.PROVISION, ActionKind.ROTATE}
