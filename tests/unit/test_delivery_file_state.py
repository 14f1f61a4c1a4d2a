"""The file sink's directory checks and what it records to compare the delivered file later."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rotator.clock import ManualClock
from rotator.config import ExecSink, FileSink, WebhookSink
from rotator.delivery import ExecDelivery, FileDelivery, SinkFailed, WebhookDelivery
from rotator.errors import DeliveryFailed
from rotator.ports import Credential

KEY_ID = "VuaCfGcBCdbkQm-e5aOx"
SECRET = "ui2lp2axTNmsyakw9tvNnw"
ENCODED = base64.b64encode(f"{KEY_ID}:{SECRET}".encode()).decode()
EXPIRATION = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
STATE_KEYS = {"path", "mode", "uid", "gid", "size", "salt", "hmac_sha256"}


def credential() -> Credential:
    return Credential(
        id=KEY_ID,
        name="rotator-web-3",
        api_key=SECRET,
        encoded=ENCODED,
        source="web",
        expiration=EXPIRATION,
    )


def sink(path: Path, **settings: Any) -> FileDelivery:
    return FileDelivery(FileSink(type="file", path=str(path), **settings), source="web")


def directory(parent: Path, mode: int, name: str = "dir") -> Path:
    made = parent / name
    made.mkdir()
    made.chmod(mode)
    return made


# --- directories ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757, 0o2770, 0o730])
def test_writable_directory_without_sticky_bit_is_refused(tmp_path: Path, mode: int) -> None:
    shared = directory(tmp_path, mode)
    target = shared / "key"
    with pytest.raises(DeliveryFailed) as caught:
        sink(target).deliver(credential())
    message = str(caught.value)
    assert message.startswith(f"file:{target}: the directory {shared} has mode {mode:04o}")
    assert "sticky" in message
    assert not target.exists()
    assert list(shared.iterdir()) == []


def test_writable_ancestor_without_sticky_bit_is_refused(tmp_path: Path) -> None:
    shared = directory(tmp_path, 0o777, "shared")
    inner = directory(shared, 0o700, "inner")
    with pytest.raises(DeliveryFailed, match=f"the directory {shared} has mode 0777"):
        sink(inner / "key").deliver(credential())
    assert list(inner.iterdir()) == []


def test_sticky_world_writable_directory_is_accepted(tmp_path: Path) -> None:
    sticky = directory(tmp_path, 0o1777)
    sink(sticky / "key").deliver(credential())
    assert (sticky / "key").exists()


def test_symlinked_directory_is_judged_by_where_it_leads(tmp_path: Path) -> None:
    shared = directory(tmp_path, 0o777, "shared")
    (tmp_path / "link").symlink_to(shared)
    with pytest.raises(DeliveryFailed, match=f"the directory {shared} has mode 0777"):
        sink(tmp_path / "link" / "key").deliver(credential())


def test_private_directory_is_accepted(tmp_path: Path) -> None:
    private = directory(tmp_path, 0o750)
    sink(private / "key").deliver(credential())
    assert (private / "key").exists()


# --- the receipt's state --------------------------------------------------------------------------


def test_state_records_mode_owner_size_and_a_keyed_hash(tmp_path: Path) -> None:
    target = tmp_path / "key"
    receipt = sink(target, mode="0640").deliver(credential())
    state = dict(receipt.state)
    assert set(state) == STATE_KEYS
    info = target.stat()
    content = target.read_bytes()
    assert state["path"] == str(target)
    assert state["mode"] == "0640"
    assert (state["uid"], state["gid"], state["size"]) == (info.st_uid, info.st_gid, len(content))
    salt = bytes.fromhex(state["salt"])
    assert len(salt) == 16
    assert state["hmac_sha256"] == hmac.new(salt, content, hashlib.sha256).hexdigest()
    json.dumps(state)  # the store keeps it as JSON


def test_state_holds_no_secret_and_no_unkeyed_hash(tmp_path: Path) -> None:
    target = tmp_path / "key"
    state = json.dumps(dict(sink(target, format="id:api_key").deliver(credential()).state))
    content = target.read_bytes()
    for value in (SECRET, ENCODED, f"{KEY_ID}:{SECRET}"):
        assert value not in state
    for data in (content, SECRET.encode(), ENCODED.encode(), content.rstrip(b"\n")):
        assert hashlib.sha256(data).hexdigest() not in state
        assert hashlib.sha256(data).hexdigest()[:12] not in state


def test_each_delivery_has_its_own_salt(tmp_path: Path) -> None:
    delivery = sink(tmp_path / "key")
    first, second = (delivery.deliver(credential()).state for _ in range(2))
    assert first["salt"] != second["salt"]
    assert first["hmac_sha256"] != second["hmac_sha256"]


# --- check ----------------------------------------------------------------------------------------


def delivered(tmp_path: Path, **settings: Any) -> tuple[FileDelivery, dict[str, Any], Path]:
    target = tmp_path / "key"
    delivery = sink(target, **settings)
    return delivery, dict(delivery.deliver(credential()).state), target


def test_check_is_none_while_the_file_is_as_delivered(tmp_path: Path) -> None:
    delivery, state, target = delivered(tmp_path)
    assert delivery.check(state) is None
    # The same content written again in place (by a configuration tool) is no change.
    content = target.read_bytes()
    target.write_bytes(content)
    assert delivery.check(state) is None


def test_check_reports_a_changed_mode(tmp_path: Path) -> None:
    delivery, state, target = delivered(tmp_path)
    target.chmod(0o644)
    assert delivery.check(state) == "mode is 0644, was 0600"


def test_check_reports_a_changed_owner_and_group(tmp_path: Path) -> None:
    delivery, state, target = delivered(tmp_path)
    info = target.stat()
    state.update(uid=info.st_uid + 1, gid=info.st_gid + 1)
    assert delivery.check(state) == (
        f"owner is uid {info.st_uid}, was uid {info.st_uid + 1}; "
        f"group is gid {info.st_gid}, was gid {info.st_gid + 1}"
    )


@pytest.mark.parametrize("replacement", ["same size", "longer"])
def test_check_reports_replaced_content_without_the_secret(
    tmp_path: Path, replacement: str
) -> None:
    delivery, state, target = delivered(tmp_path)
    content = target.read_bytes()
    forged = content.replace(SECRET.encode(), b"x" * len(SECRET))
    target.write_bytes(forged if replacement == "same size" else forged + b"\n")
    report = delivery.check(state)
    assert report == "content replaced"


def test_check_reports_a_missing_file(tmp_path: Path) -> None:
    delivery, state, target = delivered(tmp_path)
    target.unlink()
    assert delivery.check(state) == "file missing"


def test_check_reports_a_file_replaced_by_a_symlink(tmp_path: Path) -> None:
    delivery, state, target = delivered(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(elsewhere)
    assert delivery.check(state) == "replaced by a symlink"


def test_check_reports_a_file_delivered_elsewhere(tmp_path: Path) -> None:
    _, state, target = delivered(tmp_path)
    moved = sink(tmp_path / "other")
    assert moved.check(state) == f"delivered to {target}, this sink now writes {tmp_path / 'other'}"


@pytest.mark.parametrize(
    "state",
    [{}, {"path": "x"}, {"mode": 5, "uid": "a"}],
    ids=["empty", "partial", "malformed"],
)
def test_check_cannot_tell_without_a_usable_state(tmp_path: Path, state: dict[str, Any]) -> None:
    delivery, good, _ = delivered(tmp_path)
    assert delivery.check({**state, "path": good["path"]} if state else state) is None


def test_exec_and_webhook_sinks_cannot_tell() -> None:
    clock = ManualClock(EXPIRATION)
    exec_sink = ExecDelivery(ExecSink(type="exec", argv=["true"]), clock=clock, source="web")
    webhook = WebhookDelivery(
        WebhookSink(type="webhook", url="https://example.invalid/x", hmac_secret_env="X"),
        clock=clock,
        source="web",
    )
    assert exec_sink.check({"anything": 1}) is None
    assert webhook.check({}) is None


def test_refusal_is_a_sink_failure_with_a_summary(tmp_path: Path) -> None:
    shared = directory(tmp_path, 0o777)
    with pytest.raises(SinkFailed) as caught:
        sink(shared / "key").deliver(credential())
    assert caught.value.summary == str(caught.value)
    assert os.listdir(shared) == []
