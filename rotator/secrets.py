"""Resolution of secret references (``*_env`` and ``*_file``) at the moment they are needed.

``check-config`` checks the same references without reading them into any message:
:func:`reference_problems` says which variable is unset or which file is missing, empty, not a
regular file or readable by every user, never what a secret is.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rotator.errors import ConfigError

if TYPE_CHECKING:
    from rotator.config import ElasticsearchConfig, SourceConfig, StoreConfig

# A password, token or API key is a few hundred bytes; a secret file larger than this is not one.
MAX_SECRET_BYTES = 64 * 1024


def resolve_secret(
    env: str | None,
    file: str | None,
    at: str,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """Return the secret that a ``*_env`` or ``*_file`` reference points to.

    Args:
        env: name of the environment variable holding the secret, if configured.
        file: path of the file holding the secret, if configured.
        at: the config path of the reference (``elasticsearch.password``), for messages.
        environ: the environment to read (the process environment by default).

    Returns:
        The secret with surrounding whitespace removed, or None when neither is configured.

    Raises:
        ConfigError: the variable is unset or empty, or the file cannot be read, is not a
            regular file, is too large or is empty. The message names the reference, never the
            secret.
    """
    environ = os.environ if environ is None else environ
    if env:
        value = environ.get(env, "").strip()
        if not value:
            raise ConfigError([f"{at}_env: the environment variable {env} is not set or empty"])
        return value
    if file:
        value, _mode = _read_secret_file(file, at)
        return value
    return None


def _read_secret_file(file: str, at: str) -> tuple[str, int]:
    """Read a secret file that must be a regular file; returns its text and permission bits."""
    try:
        # O_NONBLOCK: a FIFO put where the secret should be must not block the read.
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ConfigError([f"{at}_file: cannot read {file}: {_reason(exc)}"]) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError([f"{at}_file: {file} is not a regular file"])
        data = os.read(fd, MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{at}_file: cannot read {file}: {_reason(exc)}"]) from None
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_BYTES:
        raise ConfigError([f"{at}_file: {file} is larger than {MAX_SECRET_BYTES // 1024} KiB"])
    try:
        value = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError([f"{at}_file: {file} is not UTF-8 text"]) from None
    if not value:
        raise ConfigError([f"{at}_file: {file} is empty"])
    return value, stat.S_IMODE(mode)


def _reason(exc: OSError) -> str:
    return exc.strerror or "unreadable"


def reference_problems(
    es: ElasticsearchConfig | None,
    store: StoreConfig | None,
    sources: Sequence[SourceConfig | None],
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """Check every secret reference of a config without showing a secret.

    Each ``*_env`` variable must be set and not empty; each ``*_file`` must be a readable,
    non-empty regular file that not every user may read.

    Returns:
        One ``path: message`` problem per broken reference.
    """
    problems = []
    for at, env, file in _references(es, store, sources):
        try:
            if file and not env:
                _value, mode = _read_secret_file(file, at)
                if mode & 0o007:
                    problems.append(
                        f"{at}_file: {file} has mode {mode:04o}, so every user may read the "
                        "secret; chmod 0600 (or 0640 for a group)"
                    )
            else:
                resolve_secret(env, None, at, environ)
        except ConfigError as exc:
            problems.extend(exc.problems)
    return problems


def _references(
    es: ElasticsearchConfig | None,
    store: StoreConfig | None,
    sources: Sequence[SourceConfig | None],
) -> Iterator[tuple[str, str | None, str | None]]:
    if es is not None:
        for name in ("password", "bearer_token", "api_key"):
            env, file = getattr(es, f"{name}_env"), getattr(es, f"{name}_file")
            if env or file:
                yield f"elasticsearch.{name}", env, file
    if store is not None and (store.password_env or store.password_file):
        yield "store.password", store.password_env, store.password_file
    for index, source in enumerate(sources):
        if source is None:
            continue
        for number, sink in enumerate(source.deliver):
            env = getattr(sink, "hmac_secret_env", None)
            file = getattr(sink, "hmac_secret_file", None)
            if env or file:
                yield f"sources[{index}].deliver[{number}].hmac_secret", env, file


def describe_reference(env: str | None, file: str | None, at: str) -> str:
    """Say where a secret comes from (``environment variable X (at_env)``), never what it is."""
    if env:
        return f"the environment variable {env} ({at}_env)"
    if file:
        return f"the file {Path(file)} ({at}_file)"
    return f"nowhere ({at}_env and {at}_file are unset)"
