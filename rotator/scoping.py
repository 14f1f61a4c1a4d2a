"""Least privilege: the role descriptor a source's key gets, the lint, and the verification set.

Everything here is pure data in, data out; the config loader runs the lint, the executor sends the
descriptor and checks the verification set with ``_has_privileges`` as the new key.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Cluster privileges an ingestion source may hold without a justification.
INGEST_CLUSTER_PRIVILEGES = frozenset({"monitor", "read_ilm", "read_pipeline", "read_slm"})
# Index privileges at or below ``write`` (plus what shippers need to set an index up and read it).
INGEST_INDEX_PRIVILEGES = frozenset(
    {
        "create_doc",
        "create",
        "index",
        "write",
        "delete",
        "auto_configure",
        "view_index_metadata",
        "read",
        "monitor",
    }
)
# What a verified key must NOT have, whatever its source asks for (unless granted broadly).
FORBIDDEN_CLUSTER = ("all", "manage", "manage_security", "manage_api_key", "manage_own_api_key")
FORBIDDEN_OWN_INDEX = ("delete_index", "manage")

PRESETS: dict[str, dict[str, Any]] = {
    "logs-writer": {
        "type": "logs",
        "cluster": ["monitor"],
        "privileges": ["create_doc", "auto_configure"],
    },
    "metrics-writer": {
        "type": "metrics",
        "cluster": ["monitor"],
        "privileges": ["create_doc", "auto_configure"],
    },
    "traces-writer": {
        "type": "traces",
        "cluster": ["monitor"],
        "privileges": ["create_doc", "auto_configure"],
    },
}


@dataclass(frozen=True)
class IndexGrant:
    """Index privileges on a set of index names or patterns."""

    names: tuple[str, ...]
    privileges: tuple[str, ...]


@dataclass(frozen=True)
class Grants:
    """What a source's key may do: cluster privileges and index grants, normalized."""

    cluster: tuple[str, ...] = ()
    indices: tuple[IndexGrant, ...] = ()

    @classmethod
    def build(
        cls, cluster: Iterable[str], indices: Iterable[tuple[Iterable[str], Iterable[str]]]
    ) -> Grants:
        """Normalize: sorted unique names, index grants merged by identical name sets."""
        merged: dict[tuple[str, ...], set[str]] = {}
        for names, privileges in indices:
            key = tuple(sorted(set(names)))
            merged.setdefault(key, set()).update(privileges)
        grants = tuple(IndexGrant(names, tuple(sorted(p))) for names, p in sorted(merged.items()))
        return cls(tuple(sorted(set(cluster))), grants)

    def union(self, other: Grants) -> Grants:
        """Both sets of grants together."""
        return Grants.build(
            [*self.cluster, *other.cluster],
            [(g.names, g.privileges) for g in (*self.indices, *other.indices)],
        )

    @property
    def index_patterns(self) -> tuple[str, ...]:
        """Every index name or pattern the grants mention."""
        return tuple(sorted({n for g in self.indices for n in g.names}))

    def is_empty(self) -> bool:
        """No privilege at all (a key with such a descriptor could do nothing)."""
        return not self.cluster and not self.indices


def preset_grants(preset: str, dataset: str, namespace: str) -> Grants:
    """The grants of a named preset for one dataset and namespace.

    Raises:
        KeyError: the preset is unknown.
    """
    spec = PRESETS[preset]
    index = f"{spec['type']}-{dataset}-{namespace}"
    return Grants.build(spec["cluster"], [([index], spec["privileges"])])


def descriptor_name(source: str) -> str:
    """The name of the one role descriptor a source's key carries."""
    return f"rotator-{source}"


def role_descriptors(source: str, grants: Grants) -> dict[str, Any]:
    """The ``role_descriptors`` body for create/update API key."""
    return {
        descriptor_name(source): {
            "cluster": list(grants.cluster),
            "indices": [
                {"names": list(g.names), "privileges": list(g.privileges)} for g in grants.indices
            ],
        }
    }


def fingerprint(value: Any) -> str:
    """SHA-256 of a JSON-serialisable value in canonical form."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- lint ----------------------------------------------------------------------------------------


def lint(grants: Grants, at: str, *, allow_broad: bool) -> list[str]:
    """Problems that make a grant broader than ingestion needs, as ``path: message`` lines.

    Args:
        grants: the source's effective grants (preset and explicit privileges together).
        at: the config path of the source (``sources[2]``).
        allow_broad: the source set ``allow_broad_privileges: true`` with a justification.
    """
    if allow_broad:
        return []
    problems = [_cluster_problem(p, at) for p in grants.cluster]
    for grant in grants.indices:
        problems.extend(_pattern_problem(name, at) for name in grant.names)
        problems.extend(_index_privilege_problem(p, at) for p in grant.privileges)
    hint = " (or set allow_broad_privileges: true with a justification)"
    return [f"{p}{hint}" for p in problems if p]


def _cluster_problem(privilege: str, at: str) -> str:
    where = f"{at}.privileges.cluster"
    if privilege in INGEST_CLUSTER_PRIVILEGES:
        return ""
    if privilege == "all" or privilege.startswith("manage") or "security" in privilege:
        return f"{where}: {privilege!r} would let the key administer the cluster or its security"
    allowed = ", ".join(sorted(INGEST_CLUSTER_PRIVILEGES))
    return f"{where}: {privilege!r} is not needed to ship data; allowed: {allowed}"


def _pattern_problem(name: str, at: str) -> str:
    where = f"{at}.privileges.indices"
    if name == "*" or name.startswith("*"):
        return (
            f"{where}: index pattern {name!r} reaches every index; name the data stream or a prefix"
        )
    if name.startswith(".") or name.startswith("*."):
        return f"{where}: index pattern {name!r} reaches system or hidden indices"
    return ""


def _index_privilege_problem(privilege: str, at: str) -> str:
    if privilege in INGEST_INDEX_PRIVILEGES:
        return ""
    return (
        f"{at}.privileges.indices: index privilege {privilege!r} goes beyond writing documents; "
        f"allowed: {', '.join(sorted(INGEST_INDEX_PRIVILEGES))}"
    )


# --- verification --------------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexCheck:
    """One index privilege to check on one index name or pattern."""

    index: str
    privilege: str


@dataclass(frozen=True)
class VerificationSet:
    """What must be true and what must be false when the new key asks ``_has_privileges``."""

    cluster_true: tuple[str, ...] = ()
    cluster_false: tuple[str, ...] = ()
    index_true: tuple[IndexCheck, ...] = ()
    index_false: tuple[IndexCheck, ...] = field(default_factory=tuple)

    def request_body(self) -> dict[str, Any]:
        """The ``_has_privileges`` body asking every privilege of both sets."""
        by_index: dict[str, set[str]] = {}
        for check in (*self.index_true, *self.index_false):
            by_index.setdefault(check.index, set()).add(check.privilege)
        return {
            "cluster": sorted({*self.cluster_true, *self.cluster_false}),
            "index": [{"names": [i], "privileges": sorted(p)} for i, p in sorted(by_index.items())],
        }

    def must_request_body(self) -> dict[str, Any]:
        """The ``_has_privileges`` body asking only what must be granted."""
        by_index: dict[str, set[str]] = {}
        for check in self.index_true:
            by_index.setdefault(check.index, set()).add(check.privilege)
        return {
            "cluster": sorted(set(self.cluster_true)),
            "index": [{"names": [i], "privileges": sorted(p)} for i, p in sorted(by_index.items())],
        }

    def missing(self, answer: dict[str, Any]) -> list[str]:
        """What must be granted and is not, as ``cluster:<p>`` and ``<p> on <index>``."""
        cluster = answer.get("cluster", {})
        index = answer.get("index", {})
        out = [f"cluster:{p}" for p in self.cluster_true if cluster.get(p) is not True]
        out += [
            f"{c.privilege} on {c.index}"
            for c in self.index_true
            if index.get(c.index, {}).get(c.privilege) is not True
        ]
        return out

    def mismatches(self, answer: dict[str, Any]) -> list[str]:
        """Every expectation the ``_has_privileges`` answer breaks, as readable lines."""
        cluster = answer.get("cluster", {})
        index = answer.get("index", {})
        wrong = [f"cluster {p} is missing" for p in self.cluster_true if cluster.get(p) is not True]
        wrong += [
            f"cluster {p} is granted" for p in self.cluster_false if cluster.get(p) is not False
        ]
        wrong += [
            f"{c.privilege} on {c.index} is missing"
            for c in self.index_true
            if index.get(c.index, {}).get(c.privilege) is not True
        ]
        wrong += [
            f"{c.privilege} on {c.index} is granted"
            for c in self.index_false
            if index.get(c.index, {}).get(c.privilege) is not False
        ]
        return wrong


def verification_set(source: str, grants: Grants) -> VerificationSet:
    """Derive the checks from the grants: all granted must hold, the dangerous ones must not.

    Beside each granted name or pattern, indices just outside it (a prefix or suffix added, a
    character or segment dropped, a segment changed) must not be writable: a key holding a
    broader pattern than its source asked for (``logs-*`` for ``logs-web-default``) fails.
    """
    granted_cluster = set(grants.cluster)
    index_true = tuple(
        IndexCheck(name, privilege)
        for grant in grants.indices
        for name in grant.names
        for privilege in grant.privileges
    )
    own = grants.index_patterns
    own_false = tuple(
        IndexCheck(name, privilege)
        for name in own
        for privilege in FORBIDDEN_OWN_INDEX
        if not _granted(grants, name, privilege)
    )
    neighbours = tuple(
        IndexCheck(probe, privilege)
        for grant in grants.indices
        for probe in neighbour_probes(grant.names, own)
        for privilege in grant.privileges
    )
    outside = outside_probe(source, own)
    outside_false = (IndexCheck(outside, "create_doc"),) if grants.indices and outside else ()
    return VerificationSet(
        cluster_true=tuple(sorted(granted_cluster)),
        cluster_false=tuple(p for p in FORBIDDEN_CLUSTER if p not in granted_cluster),
        index_true=index_true,
        index_false=tuple(dict.fromkeys(own_false + neighbours + outside_false)),
    )


_SEGMENT = re.compile(r"[-._]")


def neighbour_probes(names: Sequence[str], granted: Sequence[str]) -> list[str]:
    """Concrete index names next to ``names`` that none of ``granted`` covers."""
    probes: list[str] = []
    for name in names:
        sample = name.replace("*", "probe").replace("?", "p")
        segments = _SEGMENT.split(sample)
        candidates = [f"x{sample}", f"{sample}x", sample[:-1]]
        separators = _SEGMENT.findall(sample)
        if len(segments) > 1:
            candidates.append(sample[: len(sample) - len(segments[-1]) - 1])
        for i in range(len(segments)):
            changed = [*segments[:i], f"zz{segments[i]}", *segments[i + 1 :]]
            candidates.append(_join(changed, separators))
        probes += [c for c in candidates if _usable(c) and not _covered(c, granted)]
    return list(dict.fromkeys(probes))


def _join(segments: Sequence[str], separators: Sequence[str]) -> str:
    out = segments[0]
    for sep, segment in zip(separators, segments[1:], strict=True):
        out += sep + segment
    return out


def _usable(name: str) -> bool:
    return bool(name) and name[0] not in "-_+." and name == name.lower()


def _covered(name: str, granted: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in granted)


def _granted(grants: Grants, name: str, privilege: str) -> bool:
    return any(name in g.names and privilege in g.privileges for g in grants.indices)


def outside_probe(source: str, patterns: Sequence[str]) -> str | None:
    """An index name that none of ``patterns`` matches (None if they match everything)."""
    for candidate in (f"rotator-probe-outside-{source}", f"zz-probe-{source}", "0-rotator-probe"):
        if not any(fnmatch.fnmatchcase(candidate, p) for p in patterns):
            return candidate
    return None
