"""The inventory's rules: classes, sub-kinds, findings, expiry warnings, what is kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rotator.ports import KeyInfo
from rotator.tracking import (
    REDACTED,
    KeyClass,
    Policy,
    TrackedState,
    classify,
    due_warning,
    evaluate,
    js_truthy,
    kept_metadata,
    observe,
    roles_summary,
    state_of,
    sub_kind,
)

NOW = datetime(2030, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)
LEADS = (timedelta(days=14), timedelta(days=3), timedelta(days=1))


# --- the classification table --------------------------------------------------------------------

CLASSES: list[tuple[str, str, dict[str, Any], KeyClass, str | None]] = [
    # (type, name, metadata, class, sub-kind)
    ("rest", "rotator-web-3", {"managed_by": "rotator"}, KeyClass.ROTATOR, None),
    (
        "rest",
        "Alerting: .es-query/High CPU",
        {"managed": True},
        KeyClass.KIBANA_MANAGED,
        "alerting",
    ),
    ("rest", "Alerting: .index-threshold/disk", {}, KeyClass.KIBANA_MANAGED, "alerting"),
    ("rest", "AlertingV2: rule/x", {"managed": True}, KeyClass.KIBANA_MANAGED, "alerting"),
    ("rest", "TaskManager: elastic", {"managed": True}, KeyClass.KIBANA_MANAGED, "task-manager"),
    (
        "rest",
        "Scheduled Reporting csv API Key",
        {"managed": True},
        KeyClass.KIBANA_MANAGED,
        "reporting",
    ),
    (
        "rest",
        "Default (1a2b)",
        {"managed_by": "fleet", "managed": True, "type": "enroll", "policy_id": "p"},
        KeyClass.KIBANA_MANAGED,
        "fleet",
    ),
    ("rest", "agentless-policy-1", {"managed": True}, KeyClass.KIBANA_MANAGED, "fleet"),
    ("rest", "some internal key", {"managed": True}, KeyClass.KIBANA_MANAGED, None),
    # The name rule holds only at the start, and exactly (case and the space after the colon).
    ("rest", "Not Alerting: look-alike", {}, KeyClass.USER, None),
    ("rest", " Alerting: leading space", {}, KeyClass.USER, None),
    ("rest", "alerting: lower case", {}, KeyClass.USER, None),
    ("rest", "Alerting:no-space", {}, KeyClass.USER, None),
    ("rest", "TaskManager: elastic", {}, KeyClass.USER, None),  # no metadata, no Alerting name
    # metadata.managed is read the way JavaScript reads it.
    ("rest", "flagged", {"managed": "false"}, KeyClass.KIBANA_MANAGED, None),
    ("rest", "flagged", {"managed": 1}, KeyClass.KIBANA_MANAGED, None),
    ("rest", "flagged", {"managed": []}, KeyClass.KIBANA_MANAGED, None),
    ("rest", "not flagged", {"managed": False}, KeyClass.USER, None),
    ("rest", "not flagged", {"managed": 0}, KeyClass.USER, None),
    ("rest", "not flagged", {"managed": ""}, KeyClass.USER, None),
    ("rest", "not flagged", {"managed": None}, KeyClass.USER, None),
    ("rest", "not flagged", {"managed_by": "someone-else"}, KeyClass.USER, None),
    # Kibana's rule is for REST keys only; a cross-cluster key is its own class.
    ("cross_cluster", "Alerting: cross", {"managed": True}, KeyClass.CROSS_CLUSTER, None),
    ("cross_cluster", "ccs", {}, KeyClass.CROSS_CLUSTER, None),
    ("rest", "nightly export", {}, KeyClass.USER, None),
]


@pytest.mark.parametrize(("key_type", "name", "metadata", "expected", "kind"), CLASSES)
def test_classification_table(
    key_type: str,
    name: str,
    metadata: dict[str, Any],
    expected: KeyClass,
    kind: str | None,
) -> None:
    got = classify(key_type, name, metadata)

    assert got is expected
    assert sub_kind(got, name, metadata) == kind


def test_rotator_metadata_wins_over_a_managed_flag() -> None:
    assert classify("rest", "Alerting: x", {"managed_by": "rotator"}) is KeyClass.ROTATOR


@pytest.mark.parametrize(
    ("value", "truthy"),
    [(True, True), ("x", True), ({}, True), (0.5, True), (float("nan"), False), (0.0, False)],
)
def test_js_truthiness(value: Any, truthy: bool) -> None:
    assert js_truthy(value) is truthy


# --- findings ------------------------------------------------------------------------------------


def key(**kw: Any) -> KeyInfo:
    base: dict[str, Any] = {
        "id": "k1",
        "name": "script",
        "creation": NOW - 10 * DAY,
        "expiration": NOW + 10 * DAY,
        "invalidated": False,
        "username": "bob",
        "metadata": {},
        "role_descriptors": {"r": {"cluster": ["monitor"]}},
        "realm": "native1",
        "realm_type": "native",
    }
    return KeyInfo(**{**base, **kw})


def kinds(info: KeyInfo, policy: Policy | None = None, owner: bool | None = True) -> set[str]:
    klass = classify(info.type, info.name, info.metadata)
    found = evaluate(info, klass, NOW, policy or Policy(), owner_exists=owner)
    return {f.kind.value for f in found}


def test_a_well_kept_key_raises_nothing() -> None:
    assert kinds(key()) == set()


def test_each_rule_raises_its_finding() -> None:
    assert kinds(key(expiration=None)) == {"no_expiration"}
    assert kinds(key(expiration=NOW + 200 * DAY)) == {"lifetime_exceeds"}
    assert kinds(key(role_descriptors={})) == {"unrestricted"}
    assert kinds(key(creation=NOW - 400 * DAY, expiration=NOW + DAY)) == {
        "stale",
        "lifetime_exceeds",
    }
    assert kinds(key(), owner=False) == {"owner_missing"}


def test_a_lifetime_of_exactly_the_limit_is_allowed() -> None:
    assert kinds(key(creation=NOW, expiration=NOW + 90 * DAY)) == set()
    assert kinds(key(creation=NOW, expiration=NOW + 90 * DAY + timedelta(seconds=1))) == {
        "lifetime_exceeds"
    }


def test_rules_turned_off_raise_nothing() -> None:
    off = Policy(
        no_expiration=False,
        max_lifetime=None,
        unrestricted=False,
        max_age=None,
        owner_missing=False,
    )
    worst = key(expiration=None, role_descriptors={}, creation=NOW - 999 * DAY)

    assert kinds(worst, off, owner=False) == set()


def test_an_unknown_owner_is_not_a_missing_one() -> None:
    assert kinds(key(), owner=None) == set()


def test_a_cross_cluster_key_is_never_unrestricted() -> None:
    assert kinds(key(type="cross_cluster", role_descriptors={})) == set()


def test_kibana_managed_keys_are_a_lower_severity_for_by_design_choices() -> None:
    managed = key(name="Alerting: r", expiration=None, role_descriptors={})
    found = evaluate(managed, KeyClass.KIBANA_MANAGED, NOW, Policy(), owner_exists=True)

    assert {f.kind.value: f.severity.value for f in found} == {
        "no_expiration": "low",
        "unrestricted": "low",
    }


def test_rotator_keys_are_never_stale() -> None:
    old = key(metadata={"managed_by": "rotator"}, creation=NOW - 999 * DAY, expiration=NOW + DAY)

    assert "stale" not in kinds(old)


def test_an_inactive_key_raises_no_findings() -> None:
    for info in (key(invalidated=True, expiration=None), key(expiration=NOW - DAY)):
        assert observe(info, NOW, Policy(), owner_exists=False).findings == []


# --- states and warnings -------------------------------------------------------------------------


def test_states() -> None:
    assert state_of(key(), NOW) is TrackedState.ACTIVE
    assert state_of(key(expiration=NOW), NOW) is TrackedState.EXPIRED
    assert state_of(key(expiration=None), NOW) is TrackedState.ACTIVE
    assert state_of(key(invalidated=True, expiration=NOW - DAY), NOW) is TrackedState.INVALIDATED


def test_each_lead_time_is_warned_once() -> None:
    expiry = NOW + 20 * DAY
    warned: list[int] = []
    said = []
    for day in range(25):
        warning, warned = due_warning(expiry, NOW + day * DAY, LEADS, warned)
        if warning is not None:
            said.append((day, warning.lead.days, warning.critical))

    assert said == [(6, 14, False), (17, 3, False), (19, 1, True)]


def test_crossing_several_lead_times_at_once_warns_once_for_the_shortest() -> None:
    warning, warned = due_warning(NOW + 2 * DAY, NOW, LEADS, [])

    assert warning is not None
    assert warning.lead == 3 * DAY
    assert warned == [3 * 86400, 14 * 86400]
    again, _ = due_warning(NOW + 2 * DAY, NOW + timedelta(hours=1), LEADS, warned)
    assert again is None


@given(
    st.lists(st.integers(min_value=0, max_value=40 * 24), min_size=1, max_size=30),
    st.integers(min_value=1, max_value=40 * 24),
)
def test_no_lead_time_is_ever_warned_twice(hours: list[int], expires_in_h: int) -> None:
    expiry = NOW + timedelta(hours=expires_in_h)
    warned: list[int] = []
    leads_said: list[int] = []
    for h in sorted(hours):
        warning, warned = due_warning(expiry, NOW + timedelta(hours=h), LEADS, warned)
        if warning is not None:
            leads_said.append(int(warning.lead.total_seconds()))
            assert warning.left <= warning.lead

    assert len(leads_said) == len(set(leads_said))
    assert leads_said == sorted(leads_said, reverse=True)


def test_no_warning_without_an_expiry_or_after_it() -> None:
    assert due_warning(None, NOW, LEADS, []) == (None, [])
    assert due_warning(NOW - DAY, NOW, LEADS, [])[0] is None


# --- what is kept --------------------------------------------------------------------------------


def test_credential_looking_metadata_is_not_kept() -> None:
    metadata = {
        "managed": True,
        "webhook_token": "s3cr3t",
        "nested": {"Password": "hunter2", "team": "ops"},
        "apiKey": "abc",
    }

    kept = kept_metadata(metadata)

    assert kept == {
        "managed": True,
        "webhook_token": REDACTED,
        "nested": {"Password": REDACTED, "team": "ops"},
        "apiKey": REDACTED,
    }


def test_roles_summary_names_what_is_granted() -> None:
    summary = roles_summary(
        "rest",
        {
            "writer": {
                "cluster": ["monitor"],
                "indices": [{"names": ["logs-a", "logs-b"], "privileges": ["create_doc"]}],
            }
        },
    )

    assert summary["descriptors"] == ["writer"]
    assert summary["indices"] == ["logs-a", "logs-b"]
    assert summary["privileges"] == ["create_doc"]
    assert summary["unrestricted"] is False
    assert roles_summary("rest", {})["unrestricted"] is True
