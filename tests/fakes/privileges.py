"""Roles and ``_has_privileges`` as Elasticsearch evaluates them, for the privileges rotator uses.

Facts (Elasticsearch 8.x sources): each named privilege stands for a set of action patterns
(``IndexPrivilege``, ``ClusterPrivilegeResolver``); a privilege is held when its actions are a
subset of the actions granted. For an index name or pattern, only ``indices`` entries whose names
cover the whole requested pattern count, and their privileges are pooled
(``IndicesPermission.checkResourcePrivileges``). An API key answers with its own descriptors
intersected with its owner's snapshot: each side must grant (``LimitedRole``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tests.fakes.patterns import Patterns, Unmodelled

_BULK = ("indices:data/write/bulk*", "indices:data/write/simulate/bulk*")
_AUTO_PUT_MAPPING = "indices:admin/mapping/auto_put"
_AUTO_CREATE = "indices:admin/auto_create"
_RESOLVE = ("indices:admin/resolve/index", "indices:admin/resolve/cluster")
_FIELD_CAPS = "indices:data/read/field_caps*"

#: Index privileges this fake evaluates, with their action patterns (IndexPrivilege, 8.x).
INDEX_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "none": (),
    "all": ("indices:*", "internal:transport/proxy/indices:*"),
    "manage": ("indices:monitor/*", "indices:admin/*", _FIELD_CAPS),
    "create_index": ("indices:admin/create", _AUTO_CREATE, "indices:admin/data_stream/create"),
    "monitor": ("indices:monitor/*",),
    "read": ("indices:data/read/*", *_RESOLVE),
    "index": ("indices:data/write/index*", "indices:data/write/update*", *_BULK),
    "delete": ("indices:data/write/delete*", "indices:data/write/bulk*"),
    "write": ("indices:data/write/*", _AUTO_PUT_MAPPING),
    "create": ("indices:data/write/index*", *_BULK),
    "create_doc": (
        "indices:data/write/index",
        "indices:data/write/index[*",
        "indices:data/write/index:op_type/create",
        *_BULK,
    ),
    "delete_index": ("indices:admin/delete", "indices:admin/data_stream/delete"),
    "view_index_metadata": (
        "indices:admin/aliases/get",
        "indices:admin/get",
        "indices:admin/mappings/fields/get*",
        "indices:admin/mappings/get",
        "indices:admin/shards/search_shards",
        "indices:admin/search/search_shards",
        "indices:admin/validate/query*",
        "indices:monitor/settings/get",
        "indices:admin/ilm/explain",
        "indices:admin/data_stream/get",
        *_RESOLVE,
        _FIELD_CAPS,
    ),
    "maintenance": (
        "indices:admin/refresh*",
        "indices:admin/flush*",
        "indices:admin/synced_flush",
        "indices:admin/forcemerge*",
    ),
    "manage_ilm": ("indices:admin/ilm/*",),
    "auto_configure": (_AUTO_PUT_MAPPING, _AUTO_CREATE),
}
#: Index privileges Elasticsearch knows and this fake does not evaluate.
UNMODELLED_INDEX = frozenset(
    {
        "read_cross_cluster",
        "manage_follow_index",
        "manage_leader_index",
        "manage_data_stream_lifecycle",
        "cross_cluster_replication",
        "cross_cluster_replication_internal",
        "read_failure_store",
        "manage_failure_store",
    }
)

_SECURITY = "cluster:admin/xpack/security/"
_ILM_STATUS = "cluster:admin/ilm/operation_mode/get"
_ALL_CLUSTER = ("cluster:*", "indices:admin/template/*", "indices:admin/index_template/*")
#: Cluster privileges this fake evaluates: (action patterns, excluded patterns).
CLUSTER_PRIVILEGES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "none": ((), ()),
    "all": (_ALL_CLUSTER, ()),
    "manage": (_ALL_CLUSTER, (_SECURITY + "*",)),
    "monitor": (
        (
            "cluster:monitor/*",
            "indices:admin/template/get",
            "indices:admin/index_template/get",
            "cluster:admin/component_template/get",
        ),
        (),
    ),
    "manage_security": ((_SECURITY + "*",), (_SECURITY + "delegate_pki",)),
    "manage_api_key": ((_SECURITY + "api_key/*",), ()),
    "grant_api_key": ((_SECURITY + "api_key/grant*",), ()),
    "manage_own_api_key": ((_SECURITY + "api_key/*",), ()),
    "manage_ilm": (("cluster:admin/ilm/*",), ()),
    "read_ilm": (("cluster:admin/ilm/get", _ILM_STATUS), ()),
    "manage_slm": (
        ("cluster:admin/slm/*", "cluster:admin/ilm/start", "cluster:admin/ilm/stop", _ILM_STATUS),
        (),
    ),
    "read_slm": (("cluster:admin/slm/status", "cluster:admin/slm/get", _ILM_STATUS), ()),
    "manage_pipeline": (("cluster:admin/ingest/pipeline/*",), ()),
    "manage_ingest_pipelines": (("cluster:admin/ingest/pipeline/*",), ()),
    "read_pipeline": (
        ("cluster:admin/ingest/pipeline/get", "cluster:admin/ingest/pipeline/simulate"),
        (),
    ),
    "manage_index_templates": (
        (
            "indices:admin/template/*",
            "indices:admin/index_template/*",
            "cluster:admin/component_template/*",
        ),
        (),
    ),
}
#: The request-conditional privilege: held only through itself (ManageOwnApiKeyClusterPrivilege).
MANAGE_OWN_API_KEY = "manage_own_api_key"
#: Cluster privileges Elasticsearch knows and this fake does not evaluate.
UNMODELLED_CLUSTER = frozenset(
    {
        "cancel_task",
        "create_snapshot",
        "cross_cluster_replication",
        "cross_cluster_search",
        "delegate_pki",
        "manage_autoscaling",
        "manage_behavioral_analytics",
        "manage_ccr",
        "manage_connector",
        "manage_data_frame_transforms",
        "manage_data_stream_global_retention",
        "manage_enrich",
        "manage_inference",
        "manage_logstash_pipelines",
        "manage_ml",
        "manage_oidc",
        "manage_rollup",
        "manage_saml",
        "manage_search_application",
        "manage_search_query_rules",
        "manage_search_synonyms",
        "manage_service_account",
        "manage_token",
        "manage_transform",
        "manage_user_profile",
        "manage_watcher",
        "monitor_connector",
        "monitor_data_frame_transforms",
        "monitor_data_stream_global_retention",
        "monitor_enrich",
        "monitor_inference",
        "monitor_ml",
        "monitor_rollup",
        "monitor_snapshot",
        "monitor_stats",
        "monitor_text_structure",
        "monitor_transform",
        "monitor_watcher",
        "post_behavioral_analytics_event",
        "read_ccr",
        "read_connector_secrets",
        "read_fleet_secrets",
        "read_security",
        "transport_client",
        "write_connector_secrets",
        "write_fleet_secrets",
    }
)


class UnknownPrivilege(ValueError):
    """A privilege name Elasticsearch does not know (it answers 400)."""


def _cluster(name: str) -> tuple[Patterns, bool]:
    """The actions of a cluster privilege (name or action pattern) and whether it is conditional.

    Raises:
        UnknownPrivilege: Elasticsearch would refuse the name.
        Unmodelled: a real privilege this fake does not evaluate.
    """
    lowered = name.lower()
    if lowered in CLUSTER_PRIVILEGES:
        include, exclude = CLUSTER_PRIVILEGES[lowered]
        return Patterns.of(include, exclude), lowered == MANAGE_OWN_API_KEY
    if lowered in UNMODELLED_CLUSTER:
        raise Unmodelled(f"cluster privilege {lowered!r}")
    if Patterns.of(_ALL_CLUSTER).matches(lowered):
        return Patterns.of([lowered + "*"]), False
    raise UnknownPrivilege(f"unknown cluster privilege [{lowered}]")


def index_actions(names: Iterable[str]) -> Patterns:
    """The pooled actions of index privileges (names or action patterns).

    Raises:
        UnknownPrivilege: Elasticsearch would refuse a name.
        Unmodelled: a real privilege this fake does not evaluate.
    """
    patterns: list[str] = []
    for name in names:
        lowered = name.lower()
        if lowered in INDEX_PRIVILEGES:
            patterns.extend(INDEX_PRIVILEGES[lowered])
        elif lowered in UNMODELLED_INDEX:
            raise Unmodelled(f"index privilege {lowered!r}")
        elif Patterns.of(["indices:*", "internal:transport/proxy/indices:*"]).matches(lowered):
            patterns.append(lowered + "*")
        else:
            raise UnknownPrivilege(f"unknown index privilege [{lowered}]")
    return Patterns.of(patterns)


def validate_cluster(name: str) -> None:
    """Raise UnknownPrivilege or Unmodelled as resolving ``name`` would."""
    _cluster(name)


def check_index_name(name: str) -> None:
    """Refuse names whose answer depends on restricted (security system) indices.

    Raises:
        Unmodelled: the name starts with ``.``, where Elasticsearch's restricted indices live.
    """
    if name.startswith("."):
        raise Unmodelled(f"index name {name!r} (restricted system indices are not modelled)")


@dataclass(frozen=True)
class _Group:
    names: Patterns
    actions: Patterns


@dataclass(frozen=True)
class Role:
    """What a set of role descriptors grants together (``Role`` in Elasticsearch)."""

    cluster: tuple[Patterns, ...]
    manage_own: bool
    groups: tuple[_Group, ...]

    @classmethod
    def of(cls, descriptors: Iterable[Mapping[str, Any]]) -> Role:
        """Pool normalized descriptors (``{"cluster": [...], "indices": [...]}``)."""
        descriptors = list(descriptors)
        cluster = [_cluster(c) for d in descriptors for c in d.get("cluster", [])]
        groups = []
        for descriptor in descriptors:
            for entry in descriptor.get("indices", []):
                for name in entry["names"]:
                    check_index_name(name)
                groups.append(
                    _Group(Patterns.of(entry["names"]), index_actions(entry["privileges"]))
                )
        return cls(
            tuple(p for p, conditional in cluster if not conditional),
            any(conditional for _p, conditional in cluster),
            tuple(groups),
        )

    def has_cluster(self, name: str) -> bool:
        """Whether the role holds a cluster privilege (plain grants imply the conditional one)."""
        wanted, conditional = _cluster(name)
        if conditional and self.manage_own:
            return True
        return bool(self.cluster) and wanted.within(self.cluster)

    def allows_cluster_action(self, action: str) -> bool:
        """Whether ``action`` is allowed, counting ``manage_own_api_key`` for own API keys."""
        if self.manage_own and Patterns.of([_SECURITY + "api_key/*"]).matches(action):
            return not action.endswith("/grant")
        return any(p.matches(action) for p in self.cluster)

    def has_index(self, name: str, privilege: str) -> bool:
        """Whether the role holds ``privilege`` on every index the name (or pattern) covers."""
        check_index_name(name)
        wanted = Patterns.of([name])
        covering = [g.actions for g in self.groups if wanted.within([g.names])]
        return bool(covering) and index_actions([privilege]).within(covering)


def has_privileges(roles: Sequence[Role], username: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``_has_privileges`` answer when every role of ``roles`` must grant (a key: two).

    Raises:
        TypeError: a body field the client's ``has_privileges`` does not take.
        UnknownPrivilege: a privilege Elasticsearch does not know.
        ValueError: nothing asked.
        Unmodelled: application privileges or restricted indices.
    """
    unknown = sorted(set(body) - {"cluster", "index", "application"})
    if unknown:
        raise TypeError(f"has_privileges() got an unexpected keyword argument {unknown[0]!r}")
    if body.get("application"):
        raise Unmodelled("application privileges")
    cluster = {p: all(r.has_cluster(p) for r in roles) for p in body.get("cluster") or []}
    index: dict[str, dict[str, bool]] = {}
    for entry in body.get("index") or []:
        if entry.get("allow_restricted_indices"):
            raise Unmodelled("allow_restricted_indices in a privileges check")
        names = entry["names"] if isinstance(entry["names"], list) else [entry["names"]]
        for name in names:
            slot = index.setdefault(name, {})
            for privilege in entry["privileges"]:
                held = all(r.has_index(name, privilege) for r in roles)
                slot[privilege] = slot.get(privilege, True) and held
    if not cluster and not index:
        raise ValueError("must specify at least one privilege")
    answers = [*cluster.values(), *(v for slot in index.values() for v in slot.values())]
    return {
        "username": username,
        "has_all_requested": all(answers),
        "cluster": cluster,
        "index": dict(sorted(index.items())),
        "application": {},
    }
