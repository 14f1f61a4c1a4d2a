"""The file sink: exact content per format, mode, ownership, atomic replace and read-back."""

from __future__ import annotations

import base64
import grp
import json
import os
import pwd
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rotator.clock import ManualClock
from rotator.config import FileSink
from rotator.delivery import FileDelivery, build_sink
from rotator.delivery import file as file_module
from rotator.errors import ConfigError, DeliveryFailed
from rotator.ports import Credential

KEY_ID = "VuaCfGcBCdbkQm-e5aOx"
SECRET = "ui2lp2axTNmsyakw9tvNnw"
ENCODED = base64.b64encode(f"{KEY_ID}:{SECRET}".encode()).decode()
EXPIRATION = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def credential(source: str = "web", expiration: datetime | None = EXPIRATION) -> Credential:
    return Credential(
        id=KEY_ID,
        name="rotator-web-3",
        api_key=SECRET,
        encoded=ENCODED,
        source=source,
        expiration=expiration,
    )


def sink(path: Path, **settings: Any) -> FileDelivery:
    return FileDelivery(FileSink(type="file", path=str(path), **settings), source="web")


def assert_no_secret(exc: BaseException) -> None:
    cred = credential()
    assert cred.api_key not in str(exc)
    assert cred.encoded not in str(exc)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """A umask that narrows nothing: the mode must come from rotator alone."""
    previous = os.umask(0)
    yield
    os.umask(previous)


# --- formats --------------------------------------------------------------------------------------


def test_json_format_has_exactly_the_documented_fields(tmp_path: Path) -> None:
    target = tmp_path / "key.json"
    sink(target, format="json").deliver(credential())
    assert target.read_text() == (
        "{\n"
        f'  "id": "{KEY_ID}",\n'
        '  "name": "rotator-web-3",\n'
        f'  "api_key": "{SECRET}",\n'
        f'  "encoded": "{ENCODED}",\n'
        '  "expiration": "2026-03-04T05:06:07Z"\n'
        "}\n"
    )


def test_json_format_writes_null_for_a_key_that_never_expires(tmp_path: Path) -> None:
    target = tmp_path / "key.json"
    sink(target).deliver(credential(expiration=None))
    assert json.loads(target.read_text())["expiration"] is None


def test_json_expiration_is_converted_to_utc(tmp_path: Path) -> None:
    target = tmp_path / "key.json"
    local = datetime.fromisoformat("2026-03-04T07:06:07+02:00")
    sink(target).deliver(credential(expiration=local))
    assert json.loads(target.read_text())["expiration"] == "2026-03-04T05:06:07Z"


def test_env_format_uses_the_default_variable(tmp_path: Path) -> None:
    target = tmp_path / "key.env"
    sink(target, format="env").deliver(credential())
    assert target.read_text() == f"ES_API_KEY={ENCODED}\n"


def test_env_format_uses_the_configured_variable(tmp_path: Path) -> None:
    target = tmp_path / "key.env"
    sink(target, format="env", env_var="FILEBEAT_KEY").deliver(credential())
    assert target.read_text() == f"FILEBEAT_KEY={ENCODED}\n"


def test_id_api_key_format_is_what_beats_takes(tmp_path: Path) -> None:
    target = tmp_path / "key"
    sink(target, format="id:api_key").deliver(credential())
    assert target.read_text() == f"{KEY_ID}:{SECRET}\n"


def test_receipt_names_the_file_and_no_secret(tmp_path: Path) -> None:
    target = tmp_path / "key"
    delivery = sink(target, format="id:api_key")
    receipt = delivery.deliver(credential())
    assert (receipt.sink, receipt.target) == ("file", str(target))
    assert delivery.name == f"file:{target}"
    assert SECRET not in repr(receipt)
    assert ENCODED not in repr(receipt)
    assert delivery.acknowledge(credential()) is True


# --- permissions ----------------------------------------------------------------------------------


def test_default_mode_is_0600_even_with_umask_zero(tmp_path: Path, umask_zero: None) -> None:
    target = tmp_path / "key"
    sink(target).deliver(credential())
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_configured_mode_is_applied_exactly(tmp_path: Path, umask_zero: None) -> None:
    target = tmp_path / "key"
    sink(target, mode="0640").deliver(credential())
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


@pytest.mark.parametrize("mode", ["0600", "0640"])
def test_temp_file_is_never_wider_than_the_target_mode(
    tmp_path: Path, umask_zero: None, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    seen: list[tuple[int, int]] = []
    real_open = os.open

    def watching_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = real_open(path, flags, *args, **kwargs)
        if str(path).endswith(".tmp"):
            seen.append((stat.S_IMODE(os.fstat(fd).st_mode), os.fstat(fd).st_size))
        return fd

    monkeypatch.setattr(os, "open", watching_open)
    sink(tmp_path / "key", mode=mode).deliver(credential())
    assert seen == [(int(mode, 8), 0)]


def test_world_readable_mode_is_refused_even_if_config_checks_were_bypassed(
    tmp_path: Path,
) -> None:
    config = FileSink.model_construct(
        type="file",
        path=str(tmp_path / "key"),
        format="json",
        mode="0644",
        owner=None,
        group=None,
        env_var="ES_API_KEY",
    )
    with pytest.raises(ConfigError, match="0644"):
        FileDelivery(config, source="web")


# --- atomic replace -------------------------------------------------------------------------------


def test_existing_file_is_replaced_atomically(tmp_path: Path) -> None:
    target = tmp_path / "key"
    target.write_text("old-content\n")
    old_inode = target.stat().st_ino
    sink(target, format="id:api_key").deliver(credential())
    assert target.read_text() == f"{KEY_ID}:{SECRET}\n"
    assert target.stat().st_ino != old_inode  # a new file was renamed over the old one
    assert leftovers(tmp_path) == []


def test_existing_wide_file_gets_the_configured_mode(tmp_path: Path) -> None:
    target = tmp_path / "key"
    target.write_text("old")
    target.chmod(0o644)
    sink(target).deliver(credential())
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_failed_write_leaves_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "key"
    target.write_text("old-content\n")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(DeliveryFailed, match="Input/output error") as caught:
        sink(target).deliver(credential())
    assert target.read_text() == "old-content\n"
    assert leftovers(tmp_path) == []
    assert_no_secret(caught.value)


def test_failed_rename_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_replace(src: Any, dst: Any) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(DeliveryFailed, match="Permission denied") as caught:
        sink(tmp_path / "key").deliver(credential())
    assert list(tmp_path.iterdir()) == []
    assert_no_secret(caught.value)


def test_missing_directory_is_named_clearly(tmp_path: Path) -> None:
    target = tmp_path / "absent" / "key"
    with pytest.raises(DeliveryFailed, match=r"directory .*absent does not exist") as caught:
        sink(target).deliver(credential())
    assert not target.parent.exists()
    assert_no_secret(caught.value)


# --- read-back ------------------------------------------------------------------------------------


def test_read_back_mismatch_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_module, "_read_back", lambda path: b"something else\n")
    with pytest.raises(DeliveryFailed, match="read-back mismatch") as caught:
        sink(tmp_path / "key", format="id:api_key").deliver(credential())
    assert_no_secret(caught.value)
    assert leftovers(tmp_path) == []


def test_unreadable_file_after_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable(path: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(file_module, "_read_back", unreadable)
    with pytest.raises(DeliveryFailed, match="cannot read the file back") as caught:
        sink(tmp_path / "key").deliver(credential())
    assert_no_secret(caught.value)


# --- owner and group ------------------------------------------------------------------------------


def current_user() -> str:
    return pwd.getpwuid(os.getuid()).pw_name


def current_group() -> str:
    return grp.getgrgid(os.getgid()).gr_name


def test_owner_and_group_by_name(tmp_path: Path) -> None:
    target = tmp_path / "key"
    sink(target, owner=current_user(), group=current_group()).deliver(credential())
    info = target.stat()
    assert (info.st_uid, info.st_gid) == (os.getuid(), os.getgid())


def test_numeric_owner_and_group(tmp_path: Path) -> None:
    target = tmp_path / "key"
    sink(target, owner=str(os.getuid()), group=str(os.getgid())).deliver(credential())
    assert (target.stat().st_uid, target.stat().st_gid) == (os.getuid(), os.getgid())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"owner": "no-such-user-rotator"}, "owner 'no-such-user-rotator' is not a known user"),
        ({"group": "no-such-group-rotator"}, "group 'no-such-group-rotator' is not a known group"),
    ],
)
def test_unknown_owner_or_group_fails_before_writing(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    with pytest.raises(DeliveryFailed, match=message) as caught:
        sink(tmp_path / "key", **settings).deliver(credential())
    assert list(tmp_path.iterdir()) == []
    assert_no_secret(caught.value)


def test_owner_not_permitted_fails_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "key"
    target.write_text("old-content\n")

    def refused(fd: int, uid: int, gid: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchown", refused)
    with pytest.raises(DeliveryFailed, match=r"owner 'root'.*not permitted") as caught:
        sink(target, owner="root").deliver(credential())
    assert target.read_text() == "old-content\n"
    assert leftovers(tmp_path) == []
    assert_no_secret(caught.value)


# --- wiring ---------------------------------------------------------------------------------------


def test_credential_of_another_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DeliveryFailed, match="source 'db'") as caught:
        sink(tmp_path / "key").deliver(credential(source="db"))
    assert list(tmp_path.iterdir()) == []
    assert_no_secret(caught.value)


def test_build_sink_makes_a_file_delivery(tmp_path: Path) -> None:
    config = FileSink(type="file", path=str(tmp_path / "key"))
    built = build_sink(config, clock=ManualClock(EXPIRATION), source="web")
    assert isinstance(built, FileDelivery)
    assert built.name == f"file:{tmp_path / 'key'}"
