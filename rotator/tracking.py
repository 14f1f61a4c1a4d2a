"""The key inventory's rules: how a key is classified, which policy findings it raises, and
which transitions one sweep sees. Pure functions of what Elasticsearch returned and a time.

Classes:

- ``rotator``: ``metadata.managed_by == "rotator"`` (rotator's own keys).
- ``kibana-managed``: a REST key Kibana shows as managed: ``metadata.managed`` is truthy (in
  JavaScript's sense) or the name starts with ``"Alerting: "`` (Kibana's ``getApiKeyType`` in the
  API keys grid; the name rule covers alerting keys made before 8.14). Its sub-kind is
  ``alerting``, ``task-manager``, ``reporting`` or ``fleet`` when the name or metadata tells.
- ``cross_cluster``: a cross-cluster key.
- ``user``: every other REST key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from rotator.model import MANAGED_BY
from rotator.notify import Severity
from rotator.ports import KeyInfo

KIBANA_ALERTING_PREFIX = "Alerting: "


class KeyClass(StrEnum):
    """What produced a key, as far as its name, type and metadata say."""

    ROTATOR = "rotator"
    KIBANA_MANAGED = "kibana-managed"
    USER = "user"
    CROSS_CLUSTER = "cross_cluster"


class TrackedState(StrEnum):
    """A tracked key's state as of the last sweep."""

    ACTIVE = "active"
    EXPIRED = "expired"
    INVALIDATED = "invalidated"
    GONE = "gone"  # no longer returned: Elasticsearch's remover deleted it


class Finding(StrEnum):
    """The policy rules a key can break."""

    NO_EXPIRATION = "no_expiration"
    LIFETIME_EXCEEDS = "lifetime_exceeds"
    UNRESTRICTED = "unrestricted"
    STALE = "stale"
    OWNER_MISSING = "owner_missing"


def js_truthy(value: Any) -> bool:
    """Whether JavaScript would take ``value`` (decoded from JSON) as true.

    Kibana tests ``apiKey.metadata?.managed`` in the browser, so ``"false"``, ``[]`` and ``{}``
    count as managed there, and ``0`` and ``""`` do not.
    """
    if value is None or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0 and not math.isnan(value)
    if isinstance(value, str):
        return value != ""
    return True


def classify(key_type: str, name: str, metadata: Mapping[str, Any]) -> KeyClass:
    """The key's class (see the module docstring)."""
    if key_type == "cross_cluster":
        return KeyClass.CROSS_CLUSTER
    if metadata.get("managed_by") == MANAGED_BY:
        return KeyClass.ROTATOR
    if js_truthy(metadata.get("managed")) or name.startswith(KIBANA_ALERTING_PREFIX):
        return KeyClass.KIBANA_MANAGED
    return KeyClass.USER


_SUB_KINDS: tuple[tuple[str, str], ...] = (
    ("Alerting: ", "alerting"),
    ("AlertingV2: ", "alerting"),
    ("TaskManager: ", "task-manager"),
    ("Scheduled Reporting ", "reporting"),
    ("agentless-", "fleet"),
)


def sub_kind(key_class: KeyClass, name: str, metadata: Mapping[str, Any]) -> str | None:
    """Which Kibana or Fleet feature made a managed key, when its name or metadata tells."""
    if key_class is not KeyClass.KIBANA_MANAGED:
        return None
    if metadata.get("managed_by") == "fleet":
        return "fleet"
    for prefix, kind in _SUB_KINDS:
        if name.startswith(prefix):
            return kind
    return None


# --- what is kept of a key -----------------------------------------------------------------------

_SECRET_LOOKING = re.compile(r"pass|secret|token|credential|api_?key|private|auth", re.IGNORECASE)
REDACTED = "[not kept]"


def kept_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The key's metadata as stored: values under credential-looking names are dropped."""
    out: dict[str, Any] = {}
    for name, value in metadata.items():
        if _SECRET_LOOKING.search(str(name)):
            out[str(name)] = REDACTED
        elif isinstance(value, Mapping):
            out[str(name)] = kept_metadata(value)
        else:
            out[str(name)] = value
    return out


def roles_summary(key_type: str, descriptors: Mapping[str, Any]) -> dict[str, Any]:
    """What the key's role descriptors grant, in a few words: names, cluster and index names."""
    cluster: set[str] = set()
    indices: set[str] = set()
    privileges: set[str] = set()
    remote = False
    for body in descriptors.values():
        if not isinstance(body, Mapping):
            continue
        cluster.update(str(c) for c in body.get("cluster") or [])
        for entry in body.get("indices") or body.get("index") or []:
            indices.update(str(n) for n in entry.get("names") or [])
            privileges.update(str(p) for p in entry.get("privileges") or [])
        remote = remote or bool(body.get("remote_indices") or body.get("remote_cluster"))
    return {
        "descriptors": sorted(descriptors),
        "cluster": sorted(cluster),
        "indices": sorted(indices)[:50],
        "index_count": len(indices),
        "privileges": sorted(privileges),
        "remote": remote,
        "unrestricted": key_type != "cross_cluster" and not descriptors,
    }


# --- policy --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """The rules findings are raised against; a ``None`` limit turns its rule off."""

    no_expiration: bool = True
    max_lifetime: timedelta | None = timedelta(days=90)
    unrestricted: bool = True
    max_age: timedelta | None = timedelta(days=365)
    owner_missing: bool = True


@dataclass(frozen=True)
class FindingRecord:
    """One standing finding: the rule, how serious, and what the key does."""

    kind: Finding
    severity: Severity
    detail: str

    def to_json(self) -> dict[str, str]:
        """As stored and printed."""
        return {"kind": self.kind.value, "severity": self.severity.value, "detail": self.detail}


def days(delta: timedelta) -> str:
    """A duration in whole days (or hours below a day), for findings and warnings."""
    if delta >= timedelta(days=1):
        return f"{delta.days}d"
    return f"{max(int(delta.total_seconds() // 3600), 0)}h"


def evaluate(
    info: KeyInfo,
    key_class: KeyClass,
    now: datetime,
    policy: Policy,
    *,
    owner_exists: bool | None,
) -> list[FindingRecord]:
    """The findings an active key raises now; ``owner_exists`` is None when it is not known."""
    managed = key_class is KeyClass.KIBANA_MANAGED
    owner = f"{info.username} ({info.realm or 'unknown realm'})"
    out = []
    if info.expiration is None:
        if policy.no_expiration:
            sev = Severity.LOW if managed else Severity.HIGH
            out.append(FindingRecord(Finding.NO_EXPIRATION, sev, "the key never expires"))
    elif policy.max_lifetime is not None:
        lifetime = info.expiration - info.creation
        if lifetime > policy.max_lifetime:
            detail = f"lifetime {days(lifetime)} exceeds {days(policy.max_lifetime)}"
            out.append(FindingRecord(Finding.LIFETIME_EXCEEDS, Severity.MEDIUM, detail))
    if policy.unrestricted and info.type != "cross_cluster" and not info.role_descriptors:
        sev = Severity.LOW if managed else Severity.HIGH
        detail = f"no role descriptors: it holds every privilege of its owner {owner}"
        out.append(FindingRecord(Finding.UNRESTRICTED, sev, detail))
    if policy.max_age is not None and key_class is not KeyClass.ROTATOR:
        age = now - info.creation
        if age > policy.max_age:
            detail = f"created {days(age)} ago and never replaced (limit {days(policy.max_age)})"
            out.append(FindingRecord(Finding.STALE, Severity.MEDIUM, detail))
    if policy.owner_missing and owner_exists is False:
        detail = f"its owner {owner} no longer exists"
        out.append(FindingRecord(Finding.OWNER_MISSING, Severity.HIGH, detail))
    return out


# --- states and warnings -------------------------------------------------------------------------


def state_of(info: KeyInfo, now: datetime) -> TrackedState:
    """Invalidated wins over expired; a key with no expiration never expires."""
    if info.invalidated:
        return TrackedState.INVALIDATED
    if info.expiration is not None and info.expiration <= now:
        return TrackedState.EXPIRED
    return TrackedState.ACTIVE


@dataclass(frozen=True)
class ExpiryWarning:
    """An expiry warning due now: the lead time crossed and how long is left."""

    lead: timedelta
    left: timedelta
    critical: bool


def due_warning(
    expiration: datetime | None,
    now: datetime,
    leads: Sequence[timedelta],
    warned: Iterable[int],
) -> tuple[ExpiryWarning | None, list[int]]:
    """The warning to give now (at most one: the shortest lead time crossed), and the lead
    times (in seconds) to remember as warned.

    Each lead time is warned once per key; crossing several at once (a key first seen two days
    before it expires) gives one warning, for the shortest, and marks the longer ones too.
    """
    done = sorted(set(warned))
    if expiration is None or expiration <= now or not leads:
        return None, done
    left = expiration - now
    crossed = sorted((lead for lead in leads if left <= lead), key=lambda d: d.total_seconds())
    if not crossed:
        return None, done
    new = [int(lead.total_seconds()) for lead in crossed if int(lead.total_seconds()) not in done]
    if not new:
        return None, done
    shortest = crossed[0]
    warning = ExpiryWarning(shortest, left, critical=shortest == min(leads))
    return warning, sorted(set(done) | set(new))


@dataclass
class Observation:
    """One key as one sweep sees it: what is stored of it and what it raises."""

    info: KeyInfo
    key_class: KeyClass
    sub_kind: str | None
    state: TrackedState
    findings: list[FindingRecord] = field(default_factory=list)

    @property
    def owner(self) -> str:
        """``user (realm)``."""
        return f"{self.info.username} ({self.info.realm})"


def observe(
    info: KeyInfo, now: datetime, policy: Policy, *, owner_exists: bool | None
) -> Observation:
    """Classify a key and, while it is active, evaluate the policy on it."""
    key_class = classify(info.type, info.name, info.metadata)
    state = state_of(info, now)
    findings = (
        evaluate(info, key_class, now, policy, owner_exists=owner_exists)
        if state is TrackedState.ACTIVE
        else []
    )
    return Observation(
        info, key_class, sub_kind(key_class, info.name, info.metadata), state, findings
    )


def is_native(info: KeyInfo) -> bool:
    """Whether the owner lives in a native realm (the only users Elasticsearch can list)."""
    if info.realm_type is not None:
        return info.realm_type == "native"
    return info.realm in ("default_native", "native", "native1")
