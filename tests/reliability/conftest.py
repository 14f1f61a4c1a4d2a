"""The reliability suites share the end-to-end world: a sandbox, a store and a scoped rotator."""

from tests.e2e.conftest import sandbox, world

__all__ = ["sandbox", "world"]
