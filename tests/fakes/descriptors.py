"""Create-request validation, role descriptors as Elasticsearch shows them back, flattened metadata."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from tests.fakes.patterns import Unmodelled
from tests.fakes.privileges import UnknownPrivilege, index_actions, validate_cluster

_FIELDS = frozenset(
    {"cluster", "indices", "index", "applications", "run_as", "metadata", "transient_metadata"}
)
#: Descriptor fields Elasticsearch takes and this fake does not evaluate.
_UNMODELLED = frozenset(
    {"global", "remote_indices", "remote_cluster", "restriction", "description", "applications"}
)
_INDEX_FIELDS = frozenset(
    {"names", "privileges", "allow_restricted_indices", "field_security", "query"}
)


class InvalidDescriptor(ValueError):
    """Elasticsearch would refuse the descriptor with a 400; the text is its reason."""


def normalize(descriptors: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``role_descriptors`` and return them as Elasticsearch shows them.

    Raises:
        InvalidDescriptor: Elasticsearch answers 400 (unknown field or privilege, bad shape).
        Unmodelled: applications, run_as, remote or restricted-index grants.
    """
    if not isinstance(descriptors, Mapping):
        raise InvalidDescriptor("role_descriptors must be an object")
    return {name: _descriptor(name, body) for name, body in descriptors.items()}


def _descriptor(name: str, body: Any) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise InvalidDescriptor(f"failed to parse role [{name}]. expected an object")
    for key, value in body.items():
        if key not in _FIELDS | _UNMODELLED:
            raise InvalidDescriptor(f"failed to parse role [{name}]. unexpected field [{key}]")
        if (key in _UNMODELLED or key == "run_as") and value:
            raise Unmodelled(f"role descriptor field {key!r}")
    cluster = _strings(name, "cluster", body.get("cluster", []))
    for privilege in cluster:
        try:
            validate_cluster(privilege)
        except UnknownPrivilege as exc:
            raise InvalidDescriptor(str(exc)) from None
    entries = body.get("indices", body.get("index", []))
    if not isinstance(entries, list):
        raise InvalidDescriptor(f"failed to parse indices privileges for role [{name}]")
    return {
        "cluster": cluster,
        "indices": [_index(name, e) for e in entries],
        "applications": [],
        "run_as": [],
        "metadata": copy.deepcopy(dict(body.get("metadata") or {})),
        "transient_metadata": {"enabled": True},
    }


def _index(role: str, entry: Any) -> dict[str, Any]:
    if not isinstance(entry, Mapping):
        raise InvalidDescriptor(f"failed to parse indices privileges for role [{role}]")
    unknown = sorted(set(entry) - _INDEX_FIELDS)
    if unknown:
        raise InvalidDescriptor(
            f"failed to parse indices privileges for role [{role}]. unexpected field [{unknown[0]}]"
        )
    for unmodelled in ("allow_restricted_indices", "field_security", "query"):
        if entry.get(unmodelled):
            raise Unmodelled(f"{unmodelled} in a role descriptor")
    for required in ("names", "privileges"):
        if required not in entry:
            raise InvalidDescriptor(
                f"failed to parse indices privileges for role [{role}]. "
                f"missing required [{required}] field"
            )
    names = entry["names"] if isinstance(entry["names"], list) else [entry["names"]]
    names = _strings(role, "names", names)
    privileges = _strings(role, "privileges", entry["privileges"])
    if not names or not privileges:
        raise InvalidDescriptor(f"role [{role}]: an indices entry needs names and privileges")
    try:
        index_actions(privileges)
    except UnknownPrivilege as exc:
        raise InvalidDescriptor(str(exc)) from None
    return {"names": names, "privileges": privileges, "allow_restricted_indices": False}


def _strings(role: str, field: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidDescriptor(f"failed to parse role [{role}]. [{field}] must be strings")
    return list(value)


def create_problems(name: str, expiration_seconds: int, metadata: Mapping[str, Any]) -> list[str]:
    """Elasticsearch's create-request validation messages (AbstractCreateApiKeyRequest)."""
    problems = []
    if not name:
        problems.append("api key name is required")
    else:
        if len(name) > 256:
            problems.append("api key name may not be more than 256 characters long")
        if name != name.strip():
            problems.append("api key name may not begin or end with whitespace")
        if name.startswith("_"):
            problems.append("api key name may not begin with an underscore")
    if any(str(k).startswith("_") for k in metadata):
        problems.append("API key metadata keys may not start with [_]")
    if expiration_seconds < 0 and expiration_seconds != -1:
        problems.append(
            f"failed to parse [{expiration_seconds}s]: negative durations are not supported"
        )
    return problems


def flattened(metadata: Mapping[str, Any]) -> dict[str, set[str]]:
    """Dotted path -> keyword values, as a ``flattened`` field indexes an object."""
    out: dict[str, set[str]] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list):
            for item in value:
                walk(prefix, item)
        elif value is not None:
            text = ("true" if value else "false") if isinstance(value, bool) else str(value)
            out.setdefault(prefix, set()).add(text)

    walk("", metadata)
    return out
