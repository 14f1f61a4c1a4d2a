"""Resolution of secret references (``*_env`` and ``*_file``) at the moment they are needed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from rotator.errors import ConfigError


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
        ConfigError: the variable is unset or empty, or the file cannot be read or is empty.
            The message names the reference, never the secret.
    """
    environ = os.environ if environ is None else environ
    if env:
        value = environ.get(env, "").strip()
        if not value:
            raise ConfigError([f"{at}_env: the environment variable {env} is not set or empty"])
        return value
    if file:
        try:
            value = Path(file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise ConfigError([f"{at}_file: cannot read {file}: {reason}"]) from None
        if not value:
            raise ConfigError([f"{at}_file: {file} is empty"])
        return value
    return None
