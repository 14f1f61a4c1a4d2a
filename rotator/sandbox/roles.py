"""Role descriptors: Elasticsearch's strict parser, its validation and its normalized output."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rotator.sandbox.errors import EsError, bad_request, parse_error, validation_failed
from rotator.sandbox.privileges import (
    REMOTE_CLUSTER_PRIVILEGES,
    application_name_error,
    application_privilege_error,
    cluster_privilege_error,
    index_privilege_error,
)

#: Workflow names a ``restriction`` may list (WorkflowResolver, 8.17).
WORKFLOWS = ("search_application_query",)
_RESERVED_PREFIX = "_"


@dataclass(frozen=True)
class FieldSecurity:
    """Field-level security of an ``indices`` entry (``grant`` / ``except``, each optional)."""

    grant: tuple[str, ...] | None = None
    except_: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, list[str]]:
        """The ``field_security`` object as ES renders it."""
        out: dict[str, list[str]] = {}
        if self.grant is not None:
            out["grant"] = list(self.grant)
        if self.except_ is not None:
            out["except"] = list(self.except_)
        return out

    def is_used(self) -> bool:
        """ES ``isUsingFieldLevelSecurity``: ``grant: ["*"]`` alone counts as no FLS."""
        granted = self.grant is not None and self.grant != ("*",)
        return bool(self.except_) or granted


@dataclass(frozen=True)
class IndicesPrivileges:
    """One ``indices`` entry of a role descriptor."""

    names: tuple[str, ...]
    privileges: tuple[str, ...]
    allow_restricted_indices: bool = False
    field_security: FieldSecurity | None = None
    query: str | None = None

    def to_json(self) -> dict[str, Any]:
        """ES's rendering: names, privileges, field_security?, query? (a string), flag."""
        out: dict[str, Any] = {"names": list(self.names), "privileges": list(self.privileges)}
        if self.field_security is not None:
            out["field_security"] = self.field_security.to_json()
        if self.query is not None:
            out["query"] = self.query
        out["allow_restricted_indices"] = self.allow_restricted_indices
        return out


@dataclass(frozen=True)
class RemoteIndicesPrivileges:
    """One ``remote_indices`` entry: an ``indices`` entry plus cluster aliases."""

    indices: IndicesPrivileges
    clusters: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """ES's rendering: the ``indices`` fields, then ``clusters``."""
        return {**self.indices.to_json(), "clusters": list(self.clusters)}


@dataclass(frozen=True)
class RemoteClusterPrivileges:
    """One ``remote_cluster`` group."""

    privileges: tuple[str, ...]
    clusters: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """ES's rendering: ``privileges`` then ``clusters``."""
        return {"privileges": list(self.privileges), "clusters": list(self.clusters)}


@dataclass(frozen=True)
class ApplicationPrivileges:
    """One ``applications`` entry of a role descriptor."""

    application: str
    privileges: tuple[str, ...]
    resources: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """ES's rendering: application, privileges, resources."""
        return {
            "application": self.application,
            "privileges": list(self.privileges),
            "resources": list(self.resources),
        }


def _enabled() -> dict[str, Any]:
    return {"enabled": True}


@dataclass(frozen=True)
class RoleDescriptor:
    """A role descriptor as Elasticsearch holds it after parsing.

    ``transient_metadata`` is what ES shows (``{"enabled": true}``); ES drops any given value and
    leaves it out of equality, as here. ``global_privileges`` keeps a ``global`` object verbatim.
    """

    name: str
    cluster: tuple[str, ...] = ()
    indices: tuple[IndicesPrivileges, ...] = ()
    applications: tuple[ApplicationPrivileges, ...] = ()
    run_as: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)
    transient_metadata: Mapping[str, Any] = field(
        default_factory=_enabled, hash=False, compare=False
    )
    global_privileges: Mapping[str, Any] = field(default_factory=dict, hash=False)
    remote_indices: tuple[RemoteIndicesPrivileges, ...] = ()
    remote_cluster: tuple[RemoteClusterPrivileges, ...] = ()
    restriction: tuple[str, ...] | None = None
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        """ES's normalized output (GET API key, ``limited_by``, GET role), in ES's field order."""
        out: dict[str, Any] = {"cluster": list(self.cluster)}
        if self.global_privileges:
            out["global"] = dict(self.global_privileges)
        out["indices"] = [i.to_json() for i in self.indices]
        out["applications"] = [a.to_json() for a in self.applications]
        out["run_as"] = list(self.run_as)
        out["metadata"] = dict(self.metadata)
        out["transient_metadata"] = dict(self.transient_metadata)
        if self.remote_indices:
            out["remote_indices"] = [r.to_json() for r in self.remote_indices]
        if self.remote_cluster:
            out["remote_cluster"] = [r.to_json() for r in self.remote_cluster]
        if self.restriction:
            out["restriction"] = {"workflows": list(self.restriction)}
        if self.description:
            out["description"] = self.description
        return out

    def is_empty(self) -> bool:
        """ES ``RoleDescriptor.isEmpty``: grants nothing and carries no metadata.

        This is the derived-key rule: an API key may only create keys whose descriptors are all
        empty (e.g. ``{"no-privilege": {}}``); ``{"cluster": ["none"]}`` is *not* empty.
        """
        return not (
            self.cluster
            or self.global_privileges
            or self.indices
            or self.applications
            or self.run_as
            or self.metadata
            or self.remote_indices
            or self.remote_cluster
            or self.restriction
        )


# ---------------------------------------------------------------------------------------------
# Parsing (RoleDescriptor.parse, 8.17) with ES's error texts.
# ---------------------------------------------------------------------------------------------


def token(value: object) -> str:
    """The Jackson token name ES prints for a JSON value."""
    if value is None:
        return "VALUE_NULL"
    if isinstance(value, bool):
        return "VALUE_BOOLEAN"
    if isinstance(value, int | float):
        return "VALUE_NUMBER"
    if isinstance(value, str):
        return "VALUE_STRING"
    if isinstance(value, list | tuple):
        return "START_ARRAY"
    return "START_OBJECT"


def _wrapped(reason: str, inner: EsError) -> EsError:
    """A ``parse_exception`` caused by ``inner`` (root cause: the innermost error)."""
    root = inner.root_cause or [{"type": inner.error_type, "reason": inner.reason}]
    return EsError(400, "parse_exception", reason, caused_by=inner.as_object(), root_cause=root)


def _string_array(value: object, field_name: str | None, *, allow_null: bool) -> list[str] | None:
    """``XContentUtils.readStringArray``."""
    if value is None:
        if allow_null:
            return None
        raise parse_error(
            f"could not parse [{field_name}] field. expected a string array but found null value "
            "instead"
        )
    if not isinstance(value, list):
        raise parse_error(
            f"could not parse [{field_name}] field. expected a string array but found "
            f"[{token(value)}] value instead"
        )
    for item in value:
        if not isinstance(item, str):
            raise parse_error(
                "could not parse [null] field. expected a string array but one of the value in the "
                f"array is [{token(item)}]"
            )
    return list(value)


def _role_strings(role: str, value: object, field_name: str, allow_null: bool) -> list[str] | None:
    """``RoleDescriptor.readStringArray``: the same, re-wrapped with the role name."""
    try:
        return _string_array(value, field_name, allow_null=allow_null)
    except EsError as exc:
        raise _wrapped(f"failed to parse role [{role}]", exc) from None


@dataclass
class _Draft:
    """Fields collected while parsing one descriptor."""

    cluster: list[str] | None = None
    indices: list[IndicesPrivileges] | None = None
    applications: list[ApplicationPrivileges] | None = None
    run_as: list[str] | None = None
    metadata: dict[str, Any] | None = None
    global_privileges: dict[str, Any] | None = None
    remote_indices: list[RemoteIndicesPrivileges] | None = None
    remote_cluster: list[RemoteClusterPrivileges] | None = None
    restriction: list[str] | None = None
    description: str | None = None


def parse_role_descriptor(
    name: str,
    body: object,
    *,
    allow_restriction: bool = True,
    allow_description: bool = True,
    validate: bool = True,
) -> RoleDescriptor:
    """Parse one role descriptor strictly, as ``RoleDescriptor.parse`` does.

    The defaults accept every field (so stored descriptors round-trip through
    :meth:`RoleDescriptor.to_json`); the put role API passes ``allow_restriction=False`` and API
    keys ``allow_description=False`` (see :func:`parse_role_descriptors`).

    Args:
        name: the role (or key role descriptor) name.
        body: the decoded JSON value.
        allow_restriction: accept ``restriction`` (ES allows it for API key descriptors only).
        allow_description: accept ``description`` (ES allows it for roles, not API keys).
        validate: also run :func:`validation_errors` and raise on any.

    Raises:
        EsError: 400 ``parse_exception`` (or ``x_content_parse_exception`` /
            ``illegal_argument_exception`` where ES throws those while parsing) for a malformed
            descriptor; 400 ``action_request_validation_exception`` listing every validation
            message (unknown privileges, bad application names, reserved metadata).
    """
    if not isinstance(body, dict):
        raise parse_error(
            f"failed to parse role [{name}]. expected an object but found [{token(body)}] instead"
        )
    draft = _Draft()
    for key, value in body.items():
        _parse_field(name, key, value, draft, allow_restriction, allow_description)
    descriptor = _build(name, draft)
    if validate:
        messages = validation_errors(descriptor)
        if messages:
            raise validation_failed(*messages)
    return descriptor


def _parse_field(
    role: str, key: str, value: object, draft: _Draft, restriction: bool, description: bool
) -> None:
    handler = _FIELD_HANDLERS.get(key)
    if key == "restriction" and not restriction:
        handler = None
    if key == "description" and not description:
        handler = None
    if handler is None:
        raise parse_error(f"failed to parse role [{role}]. unexpected field [{key}]")
    handler(role, key, value, draft)


def _on_indices(role: str, key: str, value: object, draft: _Draft) -> None:
    draft.indices = parse_indices(role, key, value)


def _on_cluster(role: str, key: str, value: object, draft: _Draft) -> None:
    draft.cluster = _role_strings(role, value, key, True)


def _on_run_as(role: str, key: str, value: object, draft: _Draft) -> None:
    draft.run_as = _role_strings(role, value, key, True)


def _on_applications(role: str, key: str, value: object, draft: _Draft) -> None:
    draft.applications = parse_applications(role, key, value)


def _on_global(role: str, key: str, value: object, draft: _Draft) -> None:
    if not isinstance(value, dict):
        raise parse_error(f"failed to parse role [{role}]. unexpected field [{key}]")
    draft.global_privileges = value


def _on_metadata(role: str, key: str, value: object, draft: _Draft) -> None:
    if not isinstance(value, dict):
        raise parse_error(
            f"expected field [{key}] to be of type object, but found [{token(value)}] instead"
        )
    draft.metadata = value


def _on_transient(role: str, key: str, value: object, draft: _Draft) -> None:
    if not isinstance(value, dict):
        raise parse_error(f"failed to parse role [{role}]. unexpected field [{key}]")


def _on_remote_indices(role: str, key: str, value: object, draft: _Draft) -> None:
    if not isinstance(value, list):
        raise parse_error(
            f"failed to parse remote indices privileges for role [{role}]. expected field [{key}] "
            f"value to be an array, but found [{token(value)}] instead"
        )
    draft.remote_indices = [_parse_remote_index(role, item) for item in value]


def _on_remote_cluster(role: str, key: str, value: object, draft: _Draft) -> None:
    draft.remote_cluster = parse_remote_cluster(role, key, value)


def _on_restriction(role: str, key: str, value: object, draft: _Draft) -> None:
    draft.restriction = _parse_restriction(role, value)


def _on_description(role: str, key: str, value: object, draft: _Draft) -> None:
    if not isinstance(value, str):
        raise parse_error(
            f"failed to parse role [{role}]. expected field [{key}] value to be a string, but "
            f"found [{token(value)}] instead"
        )
    draft.description = value


def _on_type(role: str, key: str, value: object, draft: _Draft) -> None:
    """``type`` (stored documents) is accepted and ignored."""


_FIELD_HANDLERS: dict[str, Callable[[str, str, object, _Draft], None]] = {
    "index": _on_indices,
    "indices": _on_indices,
    "run_as": _on_run_as,
    "cluster": _on_cluster,
    "applications": _on_applications,
    "application": _on_applications,
    "global": _on_global,
    "metadata": _on_metadata,
    "transient_metadata": _on_transient,
    "remote_indices": _on_remote_indices,
    "remote_cluster": _on_remote_cluster,
    "restriction": _on_restriction,
    "description": _on_description,
    "type": _on_type,
}


def _build(name: str, draft: _Draft) -> RoleDescriptor:
    return RoleDescriptor(
        name=name,
        cluster=tuple(draft.cluster or ()),
        indices=tuple(draft.indices or ()),
        applications=tuple(draft.applications or ()),
        run_as=tuple(draft.run_as or ()),
        metadata=dict(draft.metadata or {}),
        global_privileges=dict(draft.global_privileges or {}),
        remote_indices=tuple(draft.remote_indices or ()),
        remote_cluster=tuple(draft.remote_cluster or ()),
        restriction=tuple(draft.restriction) if draft.restriction else None,
        description=draft.description,
    )


def parse_indices(role: str, key: str, value: object) -> list[IndicesPrivileges]:
    """Parse an ``indices`` (or ``index``) array of a role or a has-privileges request.

    Raises:
        EsError: 400 with ES's ``failed to parse indices privileges for role [...]`` texts.
    """
    if not isinstance(value, list):
        raise parse_error(
            f"failed to parse indices privileges for role [{role}]. expected field [{key}] value "
            f"to be an array, but found [{token(value)}] instead"
        )
    return [_parse_index(role, item, remote=False)[0] for item in value]


def _parse_remote_index(role: str, item: object) -> RemoteIndicesPrivileges:
    indices, clusters = _parse_index(role, item, remote=True)
    if clusters is None:
        raise parse_error(
            f"failed to parse remote indices privileges for role [{role}]. missing required "
            "[clusters] field"
        )
    if not clusters:
        raise bad_request(
            "the [remote_indices] sub-field [clusters] must refer to at least one cluster alias or "
            "cluster alias pattern"
        )
    return RemoteIndicesPrivileges(indices, tuple(clusters))


@dataclass
class _IndexDraft:
    names: list[str] | None = None
    privileges: list[str] | None = None
    allow_restricted: bool = False
    query: str | None = None
    grant: list[str] | None = None
    denied: list[str] | None = None
    field_security: bool = False
    clusters: list[str] | None = None


def _parse_index(
    role: str, item: object, *, remote: bool
) -> tuple[IndicesPrivileges, list[str] | None]:
    prefix = f"failed to parse indices privileges for role [{role}]."
    if not isinstance(item, dict):
        raise parse_error(
            f"{prefix} expected field [null] value to be an array of objects, but found an array "
            f"element of type [{token(item)}]"
        )
    draft = _IndexDraft()
    for key, value in item.items():
        _parse_index_field(role, prefix, key, value, draft, remote)
    return _build_index(prefix, draft), draft.clusters


def _parse_index_field(
    role: str, prefix: str, key: str, value: object, draft: _IndexDraft, remote: bool
) -> None:
    """Dispatch one field of an ``indices`` entry (``clusters`` only in ``remote_indices``)."""
    handler = _INDEX_FIELDS.get(key)
    if handler is None or (key == "clusters" and not remote):
        raise parse_error(f"{prefix} unexpected field [{key}]")
    handler(role, prefix, key, value, draft)


def _on_names(role: str, prefix: str, key: str, value: object, draft: _IndexDraft) -> None:
    draft.names = _index_names(role, prefix, key, value)


def _on_allow_restricted(
    role: str, prefix: str, key: str, value: object, draft: _IndexDraft
) -> None:
    if not isinstance(value, bool):
        raise parse_error(
            f"{prefix} expected field [{key}] value to be a boolean, but found "
            f"[{token(value)}] instead"
        )
    draft.allow_restricted = value


def _on_query(role: str, prefix: str, key: str, value: object, draft: _IndexDraft) -> None:
    draft.query = _index_query(prefix, key, value)


def _on_field_security(role: str, prefix: str, key: str, value: object, draft: _IndexDraft) -> None:
    _field_security(role, prefix, value, draft)


def _on_privileges(role: str, prefix: str, key: str, value: object, draft: _IndexDraft) -> None:
    draft.privileges = _role_strings(role, value, key, True)


def _on_fields_2x(role: str, prefix: str, key: str, value: object, draft: _IndexDraft) -> None:
    raise parse_error(
        f'["fields": [...]] format has changed for field permissions in role [{role}], use '
        '["field_security": {"grant":[...],"except":[...]}] instead'
    )


def _on_index_transient(
    role: str, prefix: str, key: str, value: object, draft: _IndexDraft
) -> None:
    if not isinstance(value, dict):
        raise parse_error(
            f"failed to parse transient metadata for role [{role}]. expected START_OBJECT but "
            f'got {token(value)} in "transient_metadata".'
        )


def _on_clusters(role: str, prefix: str, key: str, value: object, draft: _IndexDraft) -> None:
    draft.clusters = _role_strings(role, value, key, False)


_INDEX_FIELDS: dict[str, Callable[[str, str, str, object, _IndexDraft], None]] = {
    "names": _on_names,
    "allow_restricted_indices": _on_allow_restricted,
    "query": _on_query,
    "field_security": _on_field_security,
    "privileges": _on_privileges,
    "fields": _on_fields_2x,
    "transient_metadata": _on_index_transient,
    "clusters": _on_clusters,
}


def _index_names(role: str, prefix: str, key: str, value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        names = _role_strings(role, value, key, False) or []
        if not names:
            raise parse_error(f"{prefix} [{key}] cannot be an empty array")
        return names
    raise parse_error(
        f"{prefix} expected field [{key}] value to be a string or an array of strings, but found "
        f"[{token(value)}] instead"
    )


def _index_query(prefix: str, key: str, value: object) -> str | None:
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, str):
        return value or None
    if value is None:
        return None
    raise parse_error(
        f"{prefix} expected field [{key}] value to be null, a string, an array, or an object, but "
        f"found [{token(value)}] instead"
    )


def _field_security(role: str, prefix: str, value: object, draft: _IndexDraft) -> None:
    if not isinstance(value, dict):
        raise parse_error(
            f'{prefix} expected START_OBJECT but got {token(value)} in "field_security".'
        )
    if not value:
        raise parse_error(f'{prefix} "field_security" must not be empty.')
    draft.field_security = True
    for key, inner in value.items():
        if key not in ("grant", "except"):
            raise parse_error(
                f'{prefix} "field_security" only accepts options grant and except, but got: {key}'
            )
        strings = _role_strings(role, inner, key, True)
        if strings is None:
            raise parse_error(f"{prefix} {key} must not be null.")
        if key == "grant":
            draft.grant = strings
        else:
            draft.denied = strings


def _build_index(prefix: str, draft: _IndexDraft) -> IndicesPrivileges:
    if draft.names is None:
        raise parse_error(f"{prefix} missing required [names] field")
    if draft.privileges is None:
        raise parse_error(f"{prefix} missing required [privileges] field")
    if draft.denied is not None and draft.grant is None:
        raise parse_error(f"{prefix} field_security requires grant if except is given")
    if not draft.privileges:
        raise bad_request("indices privileges must define at least one privilege")
    security = None
    if draft.field_security:
        security = FieldSecurity(
            tuple(draft.grant) if draft.grant is not None else None,
            tuple(draft.denied) if draft.denied is not None else None,
        )
    return IndicesPrivileges(
        tuple(draft.names), tuple(draft.privileges), draft.allow_restricted, security, draft.query
    )


def parse_applications(role: str, key: str, value: object) -> list[ApplicationPrivileges]:
    """Parse an ``applications`` (or ``application``) array.

    Raises:
        EsError: 400 with ES's ``failed to parse application privileges for role [...]`` texts.
    """
    prefix = f"failed to parse application privileges for role [{role}]."
    if not isinstance(value, list):
        raise parse_error(
            f"{prefix} expected field [{key}] value to be an array, but found [{token(value)}] "
            "instead"
        )
    return [_parse_application(prefix, item) for item in value]


def _object_parser_error(reason: str) -> EsError:
    """An ``ObjectParser`` failure (ES prefixes a ``[line:col]`` location we do not know)."""
    return EsError(400, "x_content_parse_exception", reason)


def _parse_application(prefix: str, item: object) -> ApplicationPrivileges:
    if not isinstance(item, dict):
        raise parse_error(
            f"{prefix} expected field [null] value to be an array of objects, but found an array "
            f"element of type [{token(item)}]"
        )
    application: str | None = None
    arrays: dict[str, list[str]] = {}
    for key, value in item.items():
        if key == "application":
            if not isinstance(value, str):
                raise _object_parser_error(
                    f"[application] application doesn't support values of type: {token(value)}"
                )
            application = value
        elif key in ("privileges", "resources"):
            arrays[key] = _object_parser_strings(key, value)
        else:
            raise _object_parser_error(f"[application] unknown field [{key}]")
    for required in ("resources", "privileges"):
        if required not in arrays:
            raise parse_error(f"{prefix} missing required [{required}] field")
    return ApplicationPrivileges(
        application or "", tuple(arrays["privileges"]), tuple(arrays["resources"])
    )


def _object_parser_strings(key: str, value: object) -> list[str]:
    """``ObjectParser.declareStringArray``: an array of strings, or one string."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if not isinstance(item, str):
            raise _object_parser_error(
                f"[application] {key} doesn't support values of type: {token(item)}"
            )
    return [str(i) for i in items]


def parse_remote_cluster(role: str, key: str, value: object) -> list[RemoteClusterPrivileges]:
    """Parse a ``remote_cluster`` array (RemoteClusterPermissions, 8.17).

    Raises:
        EsError: 400 ``parse_exception`` (``failed to parse remote_cluster for role [...]``) or
            ``illegal_argument_exception`` for a group with neither field.
    """
    prefix = f"failed to parse remote_cluster for role [{role}]."
    if not isinstance(value, list):
        raise parse_error(
            f"{prefix} expected field [{key}] value to be an array, but found [{token(value)}] "
            "instead"
        )
    return [_parse_remote_group(role, prefix, item) for item in value]


def _parse_remote_group(role: str, prefix: str, item: object) -> RemoteClusterPrivileges:
    if not isinstance(item, dict):
        raise parse_error(
            f"{prefix} expected field [null] value to be an array of objects, but found an array "
            f"element of type [{token(item)}]"
        )
    fields: dict[str, list[str]] = {}
    for key, value in item.items():
        if key not in ("privileges", "clusters"):
            raise parse_error(f"{prefix} unexpected field [{key}]")
        fields[key] = _role_strings(role, value, key, False) or []
    privileges, clusters = fields.get("privileges"), fields.get("clusters")
    if privileges is None and clusters is None:
        raise bad_request("remote cluster groups must not be null or empty")
    if clusters is None:
        raise parse_error(f"{prefix} [clusters] must be defined when [privileges] are defined")
    if privileges is None:
        raise parse_error(f"{prefix} [privileges] must be defined when [clusters] are defined")
    if any(p not in REMOTE_CLUSTER_PRIVILEGES for p in privileges):
        allowed = ", ".join(REMOTE_CLUSTER_PRIVILEGES)
        raise parse_error(
            f"{prefix} [{allowed}] are the only values allowed for [privileges] within "
            f"[remote_cluster]. Found [{', '.join(privileges)}]"
        )
    return RemoteClusterPrivileges(tuple(privileges), tuple(clusters))


def _parse_restriction(role: str, value: object) -> list[str] | None:
    prefix = f"failed to parse restriction for role [{role}]."
    if not isinstance(value, dict):
        raise parse_error(f"failed to parse role [{role}]. unexpected field [restriction]")
    workflows: list[str] | None = None
    for key, inner in value.items():
        if key != "workflows":
            raise parse_error(f"{prefix} unexpected field [{key}]")
        try:
            workflows = _string_array(inner, key, allow_null=False)
        except EsError as exc:
            raise parse_error(f"{prefix} {exc.reason}") from None
        if not workflows:
            raise parse_error(f"{prefix} [workflows] cannot be an empty array")
    return workflows


def parse_role_descriptors(body: object, *, validate: bool = True) -> list[RoleDescriptor]:
    """Parse the ``role_descriptors`` map of create / update / grant API key.

    API key descriptors accept ``restriction`` and not ``description``. ``{}`` gives ``[]``.

    Raises:
        EsError: as :func:`parse_role_descriptor`; a non-object map gives the ObjectParser
            ``x_content_parse_exception``. Create API key wraps parse errors: see
            :func:`wrap_field_error`.
    """
    if not isinstance(body, dict):
        raise _object_parser_error(
            f"[api_key_request] role_descriptors doesn't support values of type: {token(body)}"
        )
    return [
        parse_role_descriptor(
            name, value, allow_restriction=True, allow_description=False, validate=validate
        )
        for name, value in body.items()
    ]


def wrap_field_error(
    error: EsError, parser: str, field_name: str, location: str | None = None
) -> EsError:
    """How ES's ObjectParser reports ``error`` raised while parsing a request field.

    E.g. create API key: ``[api_key_request] failed to parse field [role_descriptors]`` with the
    descriptor's error as ``caused_by``. ES prefixes ``[line:col]``; pass it as ``location``.
    """
    reason = f"[{parser}] failed to parse field [{field_name}]"
    if location:
        reason = f"[{location}] {reason}"
    if error.error_type in ("action_request_validation_exception",):
        return error
    return EsError(
        400,
        "x_content_parse_exception",
        reason,
        caused_by=error.as_object(),
        root_cause=[{"type": "x_content_parse_exception", "reason": reason}],
    )


# ---------------------------------------------------------------------------------------------
# Validation (RoleDescriptorRequestValidator): messages for action_request_validation_exception.
# ---------------------------------------------------------------------------------------------


def validation_errors(descriptor: RoleDescriptor) -> list[str]:
    """Every validation message ES's request validator gives for ``descriptor``, in its order."""
    messages = [m for c in descriptor.cluster if (m := cluster_privilege_error(c)) is not None]
    messages += _indices_errors(descriptor.indices)
    for remote in descriptor.remote_indices:
        if "" in remote.clusters:
            messages.append("remote index cluster alias cannot be an empty string")
        messages += _indices_errors([remote.indices])
    messages += _application_errors(descriptor.applications)
    if any(str(k).startswith(_RESERVED_PREFIX) for k in descriptor.metadata):
        messages.append(f"role descriptor metadata keys may not start with [{_RESERVED_PREFIX}]")
    messages += [_workflow_error(w) for w in descriptor.restriction or () if _workflow_error(w)]
    return messages


def _indices_errors(indices: Sequence[IndicesPrivileges]) -> list[str]:
    """One message per entry: the first of its privileges that does not resolve."""
    out = []
    for entry in indices:
        for privilege in entry.privileges:
            message = index_privilege_error(privilege)
            if message is not None:
                out.append(message)
                break
    return out


def _application_errors(applications: Sequence[ApplicationPrivileges]) -> list[str]:
    out = []
    for entry in applications:
        message = application_name_error(entry.application, allow_wildcard=True)
        if message is not None:
            out.append(message)
        out += [m for p in entry.privileges if (m := application_privilege_error(p)) is not None]
    return out


def _workflow_error(name: str) -> str:
    if name.strip().lower() in WORKFLOWS:
        return ""
    return (
        f"Unknown workflow [{name}]. A workflow must be one of the predefined workflow names "
        f"[{','.join(WORKFLOWS)}]."
    )


# ---------------------------------------------------------------------------------------------
# The _has_privileges request body (RoleDescriptor.parsePrivilegesToCheck).
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrivilegesCheck:
    """What a ``_has_privileges`` body asks for."""

    cluster: tuple[str, ...] = ()
    indices: tuple[IndicesPrivileges, ...] = ()
    applications: tuple[ApplicationPrivileges, ...] = ()


def parse_privileges_check(username: str, body: object) -> PrivilegesCheck:
    """Parse a ``_has_privileges`` body (fields ``cluster``, ``index``, ``application(s)``).

    Raises:
        EsError: 400 with ES's ``failed to parse privileges check [<user>]`` texts; the
            ``indices`` and ``applications`` parts report as for a role named ``<user>``.
    """
    prefix = f"failed to parse privileges check [{username}]."
    if not isinstance(body, dict):
        raise parse_error(f"{prefix} expected an object but found [{token(body)}] instead")
    found: dict[str, Any] = {}
    for key, value in body.items():
        if key == "index":
            found["index"] = parse_indices(username, key, value)
        elif key == "cluster":
            found["cluster"] = _role_strings(username, value, key, True)
        elif key in ("application", "applications"):
            found["application"] = parse_applications(username, key, value)
        else:
            raise parse_error(f"{prefix} unexpected field [{key}]")
    if all(found.get(k) is None for k in ("index", "cluster", "application")):
        raise parse_error(f"{prefix} All privilege fields [cluster,index,applications] are missing")
    indices: list[IndicesPrivileges] = found.get("index") or []
    _reject_document_security(indices)
    return PrivilegesCheck(
        tuple(found.get("cluster") or ()), tuple(indices), tuple(found.get("application") or ())
    )


def _reject_document_security(indices: Sequence[IndicesPrivileges]) -> None:
    if any(i.field_security is not None and i.field_security.is_used() for i in indices):
        raise parse_error("Field [field_security] is not supported in a has_privileges request")
    if any(i.query is not None for i in indices):
        raise parse_error("Field [query] is not supported in a has_privileges request")


# ---------------------------------------------------------------------------------------------
# Built-in roles (ReservedRolesStore, 8.17).
# ---------------------------------------------------------------------------------------------

_SUPERUSER_READ = ("monitor", "read", "view_index_metadata", "read_cross_cluster")

SUPERUSER = RoleDescriptor(
    name="superuser",
    cluster=("all",),
    indices=(
        IndicesPrivileges(("*",), ("all",), allow_restricted_indices=False),
        IndicesPrivileges(("*",), _SUPERUSER_READ, allow_restricted_indices=True),
    ),
    applications=(ApplicationPrivileges("*", ("*",), ("*",)),),
    run_as=("*",),
    metadata={"_reserved": True},
    remote_indices=(
        RemoteIndicesPrivileges(IndicesPrivileges(("*",), ("all",), False), ("*",)),
        RemoteIndicesPrivileges(IndicesPrivileges(("*",), _SUPERUSER_READ, True), ("*",)),
    ),
    remote_cluster=(RemoteClusterPrivileges(REMOTE_CLUSTER_PRIVILEGES, ("*",)),),
    description=(
        "Grants full access to cluster management and data indices. "
        "This role also grants direct read-only access to restricted indices like .security. "
        "A user with this role can impersonate any other user in the system, "
        "manage security and create roles with unlimited privileges. "
        "Take extra care when assigning it to a user."
    ),
)

#: Reserved roles by name (the sandbox defines ``superuser`` only).
BUILTIN_ROLES: Mapping[str, RoleDescriptor] = {"superuser": SUPERUSER}
