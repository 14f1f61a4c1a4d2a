"""The fake KeyAuthority's fault hooks and its refusal to guess (its semantics are the contract's)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rotator.clock import ManualClock
from rotator.errors import AuthorityRejected, AuthorityUnavailable, PermissionDenied
from rotator.log import redact_text
from tests.fakes import FakeKeyAuthority, Unmodelled

DESCRIPTORS = {"k": {"indices": [{"names": ["logs-web-default"], "privileges": ["create_doc"]}]}}


@pytest.fixture
def fake() -> FakeKeyAuthority:
    return FakeKeyAuthority(ManualClock(datetime(2030, 1, 1, tzinfo=UTC)))


def test_the_next_calls_of_a_method_raise_the_given_error_then_it_works(
    fake: FakeKeyAuthority,
) -> None:
    fake.fail_next("get", AuthorityUnavailable("get: timed out"), times=2)
    for _ in range(2):
        with pytest.raises(AuthorityUnavailable, match="get: timed out"):
            fake.get(["x"])
    assert fake.get(["x"]) == {}
    assert fake.calls == ["get", "get", "get"]


def test_an_injected_failure_happens_before_the_call_has_any_effect(
    fake: FakeKeyAuthority,
) -> None:
    key = fake.create("k", 60, DESCRIPTORS, {})
    fake.fail_next("invalidate", AuthorityRejected("invalidate: no"))
    with pytest.raises(AuthorityRejected):
        fake.invalidate([key.id])
    assert fake.get([key.id])[key.id].invalidated is False
    fake.fail_next("create", PermissionDenied("create: denied"))
    with pytest.raises(PermissionDenied):
        fake.create("k2", 60, DESCRIPTORS, {})
    assert [k.id for k in fake.all_keys()] == [key.id]


def test_faults_target_only_the_named_method(fake: FakeKeyAuthority) -> None:
    fake.fail_next("update", AuthorityUnavailable("update: down"))
    key = fake.create("k", 60, DESCRIPTORS, {})
    assert list(fake.invalidate([key.id]).invalidated) == [key.id]
    with pytest.raises(AuthorityUnavailable):
        fake.update(key.id, DESCRIPTORS)


def test_a_lost_create_answer_leaves_the_key_behind(fake: FakeKeyAuthority) -> None:
    fake.lose_next_create_answers()
    with pytest.raises(AuthorityUnavailable) as lost:
        fake.create("k", 60, DESCRIPTORS, {"rotation_id": "r-1"})
    assert "create API key k" in str(lost.value)
    found = fake.find_by_metadata("rotation_id", "r-1", valid_only=True)
    assert [k.name for k in found] == ["k"]
    assert list(fake.invalidate([found[0].id]).invalidated) == [found[0].id]
    assert fake.create("k", 60, DESCRIPTORS, {}).name == "k"  # the next answer arrives


def test_a_new_secret_is_registered_for_redaction_as_the_real_port_does(
    fake: FakeKeyAuthority,
) -> None:
    key = fake.create("k", 60, DESCRIPTORS, {})
    assert key.api_key not in redact_text(f"value {key.api_key} end")


def test_hooks_refuse_what_is_not_a_port_method_or_a_positive_count(
    fake: FakeKeyAuthority,
) -> None:
    with pytest.raises(ValueError, match="whoami"):
        fake.fail_next("whoami", AuthorityUnavailable("x"))
    with pytest.raises(ValueError, match="at least 1"):
        fake.fail_next("get", AuthorityUnavailable("x"), times=0)
    with pytest.raises(ValueError, match="at least 1"):
        fake.lose_next_create_answers(0)


def test_colleagues_share_keys_and_clock_but_not_faults(fake: FakeKeyAuthority) -> None:
    other = fake.colleague("someone", {"r": {"cluster": ["manage_own_api_key"]}})
    fake.fail_next("get", AuthorityUnavailable("x"))
    theirs = other.create("theirs", 60, {}, {})
    assert other.get([theirs.id])[theirs.id].username == "someone"
    assert [k.id for k in fake.all_keys()] == [theirs.id]


def test_what_the_fake_does_not_model_is_refused_not_guessed(fake: FakeKeyAuthority) -> None:
    with pytest.raises(Unmodelled, match="application"):
        fake.check_own_privileges(
            {"application": [{"application": "kibana", "privileges": ["read"], "resources": ["*"]}]}
        )
    with pytest.raises(Unmodelled, match="restricted"):
        fake.check_own_privileges({"index": [{"names": [".security-7"], "privileges": ["read"]}]})
    with pytest.raises(Unmodelled, match="monitor_ml"):
        fake.create("k", 60, {"k": {"cluster": ["monitor_ml"]}}, {})
