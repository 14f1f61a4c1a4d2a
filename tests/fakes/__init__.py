"""In-memory test doubles of rotator's ports, faithful to the behaviour rotator relies on."""

from tests.fakes.authority import FakeKeyAuthority, Unmodelled

__all__ = ["FakeKeyAuthority", "Unmodelled"]
