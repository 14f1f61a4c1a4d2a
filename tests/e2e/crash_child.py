"""Run one lifecycle pass and kill this very process with SIGKILL at a named step.

Used by the crash tests: ``python -m tests.e2e.crash_child CONFIG STEP``.
"""

from __future__ import annotations

import os
import signal
import sys

from rotator.app import build_lifecycle, open_current_store
from rotator.clock import SystemClock
from rotator.config import load_config
from rotator.model import specs_from_config


def main() -> int:
    config_path, step = sys.argv[1], sys.argv[2]
    config = load_config(config_path)

    def checkpoint(name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    engine = open_current_store(config)
    lifecycle = build_lifecycle(config, engine, SystemClock(), checkpoint=checkpoint)
    lifecycle.run(specs_from_config(config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
