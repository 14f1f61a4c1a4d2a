"""Planning reads a snapshot: `rotator plan` answers while a writer holds SQLite's write lock."""

from __future__ import annotations

import sqlite3
import threading

from tests.e2e.conftest import World


def test_plan_does_not_wait_for_a_writer(world: World) -> None:
    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)
    path = str(world.engine.url.database)
    writer = sqlite3.connect(path, isolation_level=None, timeout=0)
    writer.execute("BEGIN IMMEDIATE")  # another rotator in the middle of a write
    try:
        done = threading.Event()
        result: list[object] = []

        def plan() -> None:
            result.append(lifecycle.plan(world.specs))
            done.set()

        threading.Thread(target=plan, daemon=True).start()
        assert done.wait(3), "plan waited for the writer's lock"
        assert result == [[]]
    finally:
        writer.execute("ROLLBACK")
        writer.close()
