"""rotator.sandbox: an emulated Elasticsearch security API over real HTTP, for tests and demos."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rotator.clock import Clock
    from rotator.sandbox.server import Dispatcher, ServerThread
    from rotator.sandbox.state import SandboxState
    from rotator.sandbox.wire import Limits

DEFAULT_VERSION = "8.17.4"
SUPPORTED_MAJORS = (8, 9)
ELASTIC_USER = "elastic"

UserSpec = tuple[str, str, str]

__all__ = ["DEFAULT_VERSION", "Sandbox", "UserSpec", "build_dispatcher", "parse_user_spec"]


def parse_user_spec(text: str) -> UserSpec:
    """Parse ``NAME:PASSWORD:ROLE[,ROLE...]`` as given to ``--user``.

    Raises:
        ValueError: the text does not have three non-empty parts.
    """
    parts = text.split(":")
    if len(parts) < 3 or not parts[0] or not parts[-1] or not ":".join(parts[1:-1]):
        raise ValueError(f"--user expects NAME:PASSWORD:ROLE, got {parts[0]!r}:...")
    return parts[0], ":".join(parts[1:-1]), parts[-1]


def build_dispatcher(state: SandboxState) -> Dispatcher:
    """Assemble every endpoint the sandbox serves around ``state``."""
    from rotator.sandbox import (
        control,
        handlers_apikeys,
        handlers_query,
        handlers_security,
        handlers_security_more,
        ingest,
    )
    from rotator.sandbox.authn import authenticate
    from rotator.sandbox.faults import FaultInjector
    from rotator.sandbox.http import Router
    from rotator.sandbox.server import Dispatcher

    faults = FaultInjector()
    router = Router()
    control.register_control(router, faults)
    control.register_root(router)
    handlers_security_more.register_first(router)
    handlers_security.register(router)
    handlers_apikeys.register(router)
    handlers_query.register(router)
    ingest.register(router)
    return Dispatcher(state, router, authenticate, faults)


class Sandbox:
    """A running emulated Elasticsearch: its URL and its controls for tests and demos."""

    def __init__(
        self,
        state: SandboxState,
        dispatcher: Dispatcher,
        thread: ServerThread,
        elastic_password: str,
    ) -> None:
        self.state = state
        self.dispatcher = dispatcher
        self._thread = thread
        self.elastic_password = elastic_password
        self.state_file: Path | None = None

    @classmethod
    def start(
        cls,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        version: str = DEFAULT_VERSION,
        users: Iterable[UserSpec | str] = (),
        elastic_password: str | None = None,
        state_file: str | Path | None = None,
        limits: Limits | None = None,
        clock: Clock | None = None,
    ) -> Sandbox:
        """Start a sandbox on a background thread (port 0 picks a free port).

        Args:
            host: the address to listen on.
            port: the port; 0 for any free one.
            version: the Elasticsearch version to emulate (8.x or 9.x).
            users: bootstrap users as (name, password, role) tuples or ``NAME:PASSWORD:ROLE``
                strings, in the file realm; they survive ``reset()``.
            elastic_password: the password of the superuser ``elastic`` (random when None, or
                taken from ``users`` when it names ``elastic``).
            state_file: load state from this file if it exists; ``save()`` writes it back.
            limits: body size, timeouts and connection cap of the HTTP server
                (``rotator.sandbox.wire.Limits``; its defaults when None).
            clock: the time the sandbox follows (the system clock when None); the demo gives
                it the scaled clock its daemon runs on, so both agree on when keys expire.

        Raises:
            ValueError: an unsupported version or a malformed user.
            OSError: the address cannot be bound.
        """
        from rotator.sandbox.server import ServerThread
        from rotator.sandbox.state import SandboxClock, SandboxState

        _check_version(version)
        specs = [parse_user_spec(u) if isinstance(u, str) else u for u in users]
        state = SandboxState(version=version, clock=SandboxClock(clock))
        password = _bootstrap(state, specs, elastic_password)
        if state_file is not None and Path(state_file).is_file():
            state.load_json(json.loads(Path(state_file).read_text(encoding="utf-8")))
        dispatcher = build_dispatcher(state)
        thread = ServerThread(dispatcher, host, port, limits)
        sandbox = cls(state, dispatcher, thread, password)
        sandbox.state_file = Path(state_file) if state_file is not None else None
        thread.start()
        return sandbox

    # --- facts ---------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321``."""
        host, port = self._thread.address
        return f"http://{host}:{port}"

    @property
    def version(self) -> str:
        """The emulated Elasticsearch version."""
        return self.state.version

    # --- controls (the same as the /_sandbox routes) -------------------------------------------

    def reset(self) -> None:
        """Wipe all state but the bootstrap users."""
        self.state.reset()

    def now_ms(self) -> int:
        """The sandbox's current time in epoch milliseconds."""
        return self.state.clock.now_ms()

    def set_clock(self, epoch_ms: int) -> None:
        """Set the sandbox's current time."""
        with self.state.lock:
            self.state.clock.set(epoch_ms)

    def advance(self, delta: timedelta) -> None:
        """Move the sandbox's clock forward."""
        with self.state.lock:
            self.state.clock.advance(delta)

    def add_faults(self, rules: Sequence[dict[str, Any]]) -> None:
        """Add fault rules (see ``POST /_sandbox/faults``).

        Raises:
            ValueError: a rule is invalid.
        """
        from rotator.sandbox.errors import EsError
        from rotator.sandbox.faults import parse_rules

        try:
            self.dispatcher.faults.add(parse_rules(list(rules)))
        except EsError as exc:
            raise ValueError(exc.reason) from None

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self.dispatcher.faults.clear()

    def stats(self) -> dict[str, Any]:
        """Request counts by method, route and status."""
        with self.state.lock:
            rows = [
                {"method": m, "route": r, "status": s, "count": c}
                for (m, r, s), c in sorted(self.state.stats.items())
            ]
        return {"total": sum(r["count"] for r in rows), "requests": rows}

    def clear_stats(self) -> None:
        """Reset the request counters."""
        with self.state.lock:
            self.state.stats.clear()

    def save(self, path: str | Path | None = None) -> None:
        """Write the state to ``path`` (or the ``state_file`` given at start) atomically."""
        target = Path(path) if path is not None else self.state_file
        if target is None:
            raise ValueError("no state file: pass a path")
        data = json.dumps(self.state.to_json())
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".sandbox-state-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)

    def stop(self) -> None:
        """Stop serving (the state stays readable)."""
        self._thread.stop()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _check_version(version: str) -> None:
    parts = version.split(".")
    valid = len(parts) == 3 and all(p.isdigit() for p in parts)
    if not valid or int(parts[0]) not in SUPPORTED_MAJORS:
        raise ValueError(
            f"unsupported version {version!r}: use 8.x.y or 9.x.y, e.g. {DEFAULT_VERSION}"
        )


def _bootstrap(state: SandboxState, users: list[UserSpec], elastic_password: str | None) -> str:
    password = elastic_password
    for name, user_password, _role in users:
        if name == ELASTIC_USER:
            password = user_password
    password = password or secrets.token_urlsafe(12)
    state.security.add_bootstrap_user(
        ELASTIC_USER, password, ["superuser"], realm_name="reserved", realm_type="reserved"
    )
    for name, user_password, role in users:
        if name != ELASTIC_USER:
            state.security.add_bootstrap_user(
                name, user_password, role.split(","), realm_name="default_file", realm_type="file"
            )
    return password
