"""File sink: writes a credential atomically with a fixed mode and owner, then reads it back.

The directory must not be writable by others (see :mod:`rotator.delivery.filecheck`); the receipt's
``state`` records the file's mode, owner, size and a keyed hash, which :meth:`FileDelivery.check`
later compares with what is on disk.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from rotator.config import FileSink
from rotator.delivery.common import SinkFailed, credential_document, require_source
from rotator.delivery.filecheck import compare, record, require_safe_directory
from rotator.errors import ConfigError
from rotator.ports import Credential, DeliveryReceipt

# O_EXCL: the temp file is always new; O_NOFOLLOW: never write through a planted symlink.
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def render(credential: Credential, fmt: str, env_var: str = "ES_API_KEY") -> str:
    """Return the file content of a credential in one of the file formats.

    Args:
        credential: the credential to render.
        fmt: ``json``, ``env`` or ``id:api_key``.
        env_var: the variable name of the ``env`` format.

    Raises:
        ValueError: the format is unknown.
    """
    if fmt == "json":
        document = credential_document(credential)
        return json.dumps(document, indent=2) + "\n"
    if fmt == "env":
        return f"{env_var}={credential.encoded}\n"
    if fmt == "id:api_key":
        return f"{credential.id}:{credential.api_key}\n"
    raise ValueError(f"unknown file format {fmt!r}")


class FileDelivery:
    """Writes the credential to a file that the source reads (a Sink)."""

    def __init__(self, config: FileSink, *, source: str) -> None:
        """Prepare the sink.

        Args:
            config: the sink's settings.
            source: the name of the source this sink delivers for.

        Raises:
            ConfigError: the mode would let every user read the file.
        """
        self._config = config
        self._source = source
        self._path = Path(config.path)
        self._mode = int(config.mode, 8)
        if self._mode & 0o007:
            raise ConfigError([f"{self.name}: mode {config.mode} lets every user read the key"])

    @property
    def name(self) -> str:
        """``file:<path>``."""
        return f"file:{self._path}"

    def deliver(self, credential: Credential) -> DeliveryReceipt:
        """Write the credential atomically and check what landed on disk.

        The receipt's ``state`` is :func:`rotator.delivery.filecheck.record` of the file.

        Raises:
            SinkFailed: the directory is missing or writable by others, the owner or group is
                unknown or cannot be set, the write failed, or the file read back differs from
                what was written.
        """
        require_source(credential, self._source, self.name)
        content = render(credential, self._config.format, self._config.env_var).encode()
        owner = self._owner()
        try:
            require_safe_directory(self._path, self.name)
            _write_atomically(self._path, content, self._mode, owner)
        except OSError as exc:
            raise SinkFailed(f"{self.name}: cannot write the file: {_reason(exc)}") from exc
        self._verify(content)
        try:
            state = record(self._path, content)
        except OSError as exc:
            raise SinkFailed(f"{self.name}: cannot look at the file: {_reason(exc)}") from None
        detail = f"format={self._config.format} mode={self._mode:04o}"
        return DeliveryReceipt(sink="file", target=str(self._path), detail=detail, state=state)

    def acknowledge(self, credential: Credential) -> bool:
        """A file has no acknowledgement: always True."""
        return True

    def check(self, state: Mapping[str, Any]) -> str | None:
        """Compare the file with a receipt's ``state``: None when it is as delivered.

        Returns:
            None when mode, owner, group and content are as delivered (or ``state`` is not a
            usable record); else one line such as ``mode is 0644, was 0600``, ``content
            replaced``, ``file missing`` or ``replaced by a symlink``, never the content.
        """
        return compare(self._path, state)

    def _owner(self) -> _Owner:
        owner, group = self._config.owner, self._config.group
        uid = _lookup(owner, "owner", "user", _user_id, self.name)
        gid = _lookup(group, "group", "group", _group_id, self.name)
        label = " and ".join(
            f"{field} {value!r}" for field, value in (("owner", owner), ("group", group)) if value
        )
        return _Owner(uid, gid, f"{self.name}: {label}")

    def _verify(self, expected: bytes) -> None:
        try:
            found = _read_back(self._path)
        except OSError as exc:
            raise SinkFailed(f"{self.name}: cannot read the file back: {_reason(exc)}") from exc
        if found != expected:
            # No digest of either: the message reaches the audit trail.
            raise SinkFailed(
                f"{self.name}: read-back mismatch: {len(found)} bytes found where "
                f"{len(expected)} were written"
            )


class _Owner(NamedTuple):
    """Who the file is given to (-1: unchanged) and how to name that in a message."""

    uid: int
    gid: int
    label: str


def _lookup(
    value: str | None, field: str, kind: str, resolve: Callable[[str], int], sink: str
) -> int:
    """Resolve a user or group name (or a numeric id) to an id; -1 when not configured."""
    if value is None:
        return -1
    if value.isascii() and value.isdigit():
        return int(value)
    try:
        return resolve(value)
    except KeyError:
        raise SinkFailed(f"{sink}: {field} {value!r} is not a known {kind}") from None


def _user_id(name: str) -> int:
    return pwd.getpwnam(name).pw_uid


def _group_id(name: str) -> int:
    return grp.getgrnam(name).gr_gid


def _write_atomically(path: Path, content: bytes, mode: int, owner: _Owner) -> None:
    """Write ``content`` to a new temp file beside ``path`` and rename it over ``path``.

    The temp file is created with ``mode`` (the umask can only narrow it), so the credential is
    never readable by anyone the final file would not admit, not even for a moment.
    """
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, _CREATE_FLAGS, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            _set_owner(handle.fileno(), owner)
            os.fchmod(handle.fileno(), mode)
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        _unlink_quietly(temp)
        raise
    _fsync_directory(path.parent)


def _set_owner(fd: int, owner: _Owner) -> None:
    if owner.uid == -1 and owner.gid == -1:
        return
    try:
        os.fchown(fd, owner.uid, owner.gid)
    except PermissionError:
        raise SinkFailed(
            f"{owner.label}: not permitted to give the file away; rotator must run as root, "
            "or as that owner and a member of that group"
        ) from None


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable: fsync the directory entry."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    # Best effort while another error is on its way up: never mask that one.
    with contextlib.suppress(OSError):
        path.unlink()


def _read_back(path: Path) -> bytes:
    """Read the delivered file (a seam for tests that simulate a corrupted write)."""
    return path.read_bytes()


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
