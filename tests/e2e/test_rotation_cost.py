"""What one rotation costs the store: one transaction per step, and no row read twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from tests.e2e.conftest import World


@contextmanager
def counted(world: World) -> Iterator[Counter[str]]:
    """Statements sent to the store in the block, by their first words (table included)."""
    seen: Counter[str] = Counter()

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        words = statement.split()
        if words[0].upper() == "SELECT":  # name the table the rows come from
            table = words[words.index("FROM") + 1] if "FROM" in words else "?"
            seen[f"SELECT {table}"] += 1
        else:
            seen[" ".join(words[:3]).upper()] += 1

    sa.event.listen(world.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(world.engine, "before_cursor_execute", count)


def test_a_rotation_commits_once_per_step_and_reads_its_rows_once(world: World) -> None:
    lifecycle = world.lifecycle()
    lifecycle.run(world.specs)  # provision every source
    with counted(world) as steady:
        lifecycle.run(world.specs)  # nothing due: the sweep's own reads
    with counted(world) as rotating:
        report = lifecycle.run(world.specs, forced=["web"])
    assert report.counts() == {"rotate": {"ok": 1}}

    rotation = rotating - steady
    # Five write transactions: intent, created, verified (delivery starting), the file sink's
    # receipt, activation. SQLite opens each with BEGIN IMMEDIATE.
    assert rotation["BEGIN IMMEDIATE"] == 5, rotation
    # The source, key and rotation rows are read once, by the first step, and kept.
    assert rotation["SELECT sources"] <= 1, rotation
    assert rotation["SELECT rotations"] == 0, rotation
    # The only key read is the activation's look for the keys it supersedes.
    assert rotation["SELECT api_keys"] <= 1, rotation
    # One audit event per step but the creation: each chains to the tail it reads.
    assert rotation["INSERT INTO AUDIT_EVENTS"] == 4, rotation
    assert sum(rotation.values()) <= 28, rotation
