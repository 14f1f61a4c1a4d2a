"""What keeps a delivered credential file trustworthy: safe directories, and a later comparison.

A directory that other users may write to (group or other write permission without the sticky
bit) lets them rename or replace the credential file, so the file sink refuses it, and every
directory above it up to the root. The sticky bit (``/tmp``'s ``1777``) leaves each file to its
owner, so such a directory is accepted.

After a delivery the sink records the file's mode, owner, group, size and an HMAC-SHA256 of its
content keyed with a random salt drawn for that delivery. The store keeps this state; the salt
beside the digest means the store never holds a plain hash of the secret that could be matched
elsewhere, while the same file can still be recognised later.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rotator.delivery.common import SinkFailed

SALT_BYTES = 16
_KINDS = (
    (stat.S_ISLNK, "a symlink"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
)


def require_safe_directory(path: Path, sink: str) -> None:
    """Refuse a file whose directory, or any directory above it, others may write to.

    Symlinks in the path are followed: what counts is the directory the file really lands in.

    Raises:
        SinkFailed: a directory is missing or group/other-writable without the sticky bit.
    """
    directory = path.parent
    if not directory.is_dir():
        raise SinkFailed(
            f"{sink}: the directory {directory} does not exist (or is not a directory);"
            " create it first: rotator does not create directories"
        )
    real = Path(os.path.realpath(directory))
    for candidate in (real, *real.parents):
        mode = candidate.stat().st_mode
        if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
            raise SinkFailed(
                f"{sink}: the directory {candidate} has mode {stat.S_IMODE(mode):04o}: others "
                "could replace the credential file; remove group/other write access (chmod "
                "go-w) or set the sticky bit"
            )


def record(path: Path, content: bytes) -> dict[str, Any]:
    """Describe the delivered file for a later :func:`compare` (JSON-ready, no secret).

    Keys: ``path``, ``mode`` (octal text such as ``"0600"``), ``uid``, ``gid``, ``size`` (bytes),
    ``salt`` (hex of 16 random bytes) and ``hmac_sha256`` (hex HMAC-SHA256 of the content keyed
    with the salt).

    Raises:
        OSError: the file cannot be looked at.
    """
    info = os.lstat(path)
    salt = secrets.token_bytes(SALT_BYTES)
    return {
        "path": str(path),
        "mode": f"{stat.S_IMODE(info.st_mode):04o}",
        "uid": info.st_uid,
        "gid": info.st_gid,
        "size": len(content),
        "salt": salt.hex(),
        "hmac_sha256": _digest(salt, content),
    }


def compare(path: Path, state: Mapping[str, Any]) -> str | None:
    """Say what changed in a delivered file since :func:`record`, in one line without the secret.

    Returns:
        None when the file is as delivered, or when ``state`` is not a usable record (nothing to
        compare with); else what changed, such as ``mode is 0644, was 0600``, ``content
        replaced`` or ``file missing``.
    """
    expected = _expected(state)
    if expected is None:
        return None
    if expected["path"] != str(path):
        return f"delivered to {expected['path']}, this sink now writes {path}"
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return "file missing"
    except OSError as exc:
        return f"cannot be looked at: {exc.strerror or type(exc).__name__}"
    for test, kind in _KINDS:
        if test(info.st_mode):
            return f"replaced by {kind}"
    changes = _attribute_changes(info, expected)
    content = _content_change(path, info, expected)
    return "; ".join(changes + ([content] if content else [])) or None


def _expected(state: Mapping[str, Any]) -> dict[str, Any] | None:
    """The recorded values when all are present and well-formed, else None."""
    try:
        expected = {
            "path": state["path"],
            "mode": int(state["mode"], 8),
            "uid": state["uid"],
            "gid": state["gid"],
            "size": state["size"],
            "salt": bytes.fromhex(state["salt"]),
            "hmac_sha256": state["hmac_sha256"],
        }
    except (KeyError, TypeError, ValueError):
        return None
    numbers = (expected["uid"], expected["gid"], expected["size"])
    texts = (expected["path"], expected["hmac_sha256"])
    if not all(type(n) is int for n in numbers) or not all(isinstance(t, str) for t in texts):
        return None
    return expected


def _attribute_changes(info: os.stat_result, expected: Mapping[str, Any]) -> list[str]:
    changes = []
    mode = stat.S_IMODE(info.st_mode)
    if mode != expected["mode"]:
        changes.append(f"mode is {mode:04o}, was {expected['mode']:04o}")
    if info.st_uid != expected["uid"]:
        changes.append(f"owner is uid {info.st_uid}, was uid {expected['uid']}")
    if info.st_gid != expected["gid"]:
        changes.append(f"group is gid {info.st_gid}, was gid {expected['gid']}")
    return changes


def _content_change(path: Path, info: os.stat_result, expected: Mapping[str, Any]) -> str | None:
    if info.st_size != expected["size"]:
        return "content replaced"
    try:
        content = _read(path, expected["size"])
    except OSError as exc:
        return f"cannot be read: {exc.strerror or type(exc).__name__}"
    if not hmac.compare_digest(_digest(expected["salt"], content), expected["hmac_sha256"]):
        return "content replaced"
    return None


def _read(path: Path, size: int) -> bytes:
    """Read at most one byte more than expected, never through a symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(size + 1)


def _digest(salt: bytes, content: bytes) -> str:
    return hmac.new(salt, content, hashlib.sha256).hexdigest()
