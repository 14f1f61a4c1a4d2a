"""Dependencies point inward: the domain and the planner load no adapter library."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("sqlalchemy", "pydantic", "yaml", "elasticsearch", "structlog", "alembic")


@pytest.mark.parametrize("module", ["rotator.planner", "rotator.model", "rotator.states"])
def test_the_domain_imports_no_adapter_library(module: str) -> None:
    code = (
        f"import sys, json; import {module}; "
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(json.loads(out.stdout))
    assert not loaded & set(HEAVY), f"{module} loads {sorted(loaded & set(HEAVY))}"


def test_the_store_uses_the_domains_states() -> None:
    from rotator import states
    from rotator.store import models

    assert models.ApiKeyState is states.KeyState
    assert models.RotationState is states.RotationState
