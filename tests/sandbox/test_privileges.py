"""Privilege tables for the sandbox: implication, 403 texts, index names, has_privileges."""

from __future__ import annotations

from typing import Any

import pytest

from rotator.sandbox.errors import EsError
from rotator.sandbox.privileges import (
    AppPrivilegeDef,
    LimitedPermission,
    PatternSet,
    Permission,
    cluster_privilege_error,
    cluster_privilege_names,
    cluster_privileges_granting,
    has_privileges_response,
    index_privilege_error,
    index_privilege_names,
    index_privileges_granting,
    is_restricted_index,
    validate_cluster_privilege,
    validate_index_privilege,
)
from rotator.sandbox.roles import (
    SUPERUSER,
    ApplicationPrivileges,
    IndicesPrivileges,
    RoleDescriptor,
    parse_role_descriptor,
    parse_role_descriptors,
)

APPS = [
    AppPrivilegeDef("myapp", "read", ["data:read/*"]),
    AppPrivilegeDef("myapp", "write", ["data:write/*"]),
]


def cluster_role(*privileges: str) -> Permission:
    return Permission.from_descriptors([RoleDescriptor("r", cluster=privileges)], APPS)


def index_role(
    names: tuple[str, ...], privileges: tuple[str, ...], restricted: bool = False
) -> Permission:
    entry = IndicesPrivileges(names, privileges, allow_restricted_indices=restricted)
    return Permission.from_descriptors([RoleDescriptor("r", indices=(entry,))], APPS)


# -- pattern algebra ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "rights", "expected"),
    [
        (["a*"], [["a*"]], True),
        (["ab*"], [["ab"]], False),
        (["ab*"], [["ab", "abc*"]], False),
        (["ab*"], [["ab", "ab?*"]], True),
        (["ab"], [["a*"]], True),
        (["*"], [["a*"], ["b*"]], False),
        (["logs-*-*"], [["logs-*"]], True),
        (["logs-*"], [["logs-*-*"]], False),
        (["a?c"], [["a*"]], True),
        ([], [], True),
        (["x"], [], False),
    ],
)
def test_subset(left: list[str], rights: list[list[str]], expected: bool) -> None:
    assert PatternSet.of(left).subset_of(*(PatternSet.of(r) for r in rights)) is expected


def test_subset_with_exclusions_is_covered_by_a_union() -> None:
    manage = PatternSet.of(["cluster:*"], ["cluster:admin/xpack/security/*"])
    security = PatternSet.of(["cluster:admin/xpack/security/*"])
    assert PatternSet.of(["cluster:*"]).subset_of(manage, security)
    assert not PatternSet.of(["cluster:*"]).subset_of(manage)


# -- cluster privileges -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "asked", "expected"),
    [
        (["all"], "manage", True),
        (["all"], "monitor", True),
        (["all"], "manage_security", True),
        (["manage"], "monitor", True),
        (["monitor"], "manage", False),
        (["manage"], "manage_security", False),
        (["manage"], "manage_api_key", False),
        (["manage"], "all", False),
        # manage_security excludes the delegate_pki action, so these two alone do not make all.
        (["manage", "manage_security"], "all", False),
        (["manage", "manage_security", "delegate_pki"], "all", True),
        (["manage_security"], "manage_api_key", True),
        (["manage_security"], "manage_own_api_key", True),
        (["manage_security"], "delegate_pki", False),
        (["manage_api_key"], "manage_own_api_key", True),
        (["manage_api_key"], "grant_api_key", True),
        (["grant_api_key"], "manage_api_key", False),
        (["manage_own_api_key"], "manage_own_api_key", True),
        (["manage_own_api_key"], "manage_api_key", False),
        (["manage_own_api_key"], "cluster:admin/xpack/security/api_key/get", False),
        (["all"], "cluster:admin/xpack/security/api_key/create", True),
        (["monitor"], "cluster:monitor/health", True),
        (["cluster:monitor/*"], "cluster:monitor/health", True),
        (["cluster:monitor/*"], "monitor", False),
        (["cluster:admin/xpack/security/api_key/*"], "manage_api_key", True),
        (["MANAGE"], "monitor", True),
        (["none"], "none", True),
        ([], "none", False),
        ([], "monitor", False),
    ],
)
def test_cluster_privilege_implication(held: list[str], asked: str, expected: bool) -> None:
    assert cluster_role(*held).has_cluster_privilege(asked) is expected


@pytest.mark.parametrize(
    ("held", "action", "expected"),
    [
        (["manage_api_key"], "cluster:admin/xpack/security/api_key/invalidate", True),
        (["manage"], "cluster:admin/xpack/security/api_key/invalidate", False),
        (["manage"], "cluster:monitor/health", True),
        (["manage_own_api_key"], "cluster:admin/xpack/security/api_key/create", False),
        (["grant_api_key"], "cluster:admin/xpack/security/api_key/grant", True),
        (["manage_security"], "cluster:admin/xpack/security/cross_cluster/api_key/create", True),
        (["manage_api_key"], "cluster:admin/xpack/security/cross_cluster/api_key/create", False),
    ],
)
def test_allows_cluster_action(held: list[str], action: str, expected: bool) -> None:
    assert cluster_role(*held).allows_cluster_action(action) is expected


@pytest.mark.parametrize(
    ("held", "expected"),
    [
        (["manage_own_api_key"], True),
        (["manage_api_key"], True),
        (["all"], True),
        (["manage"], False),
        (["grant_api_key"], False),
    ],
)
def test_holds_manage_own_api_key(held: list[str], expected: bool) -> None:
    assert cluster_role(*held).holds_manage_own_api_key() is expected


@pytest.mark.parametrize(
    ("action", "own", "expected"),
    [
        (
            "cluster:admin/xpack/security/api_key/invalidate",
            False,
            ["manage_api_key", "manage_security", "all"],
        ),
        (
            "cluster:admin/xpack/security/api_key/grant",
            False,
            ["grant_api_key", "manage_api_key", "manage_security", "all"],
        ),
        (
            "cluster:admin/xpack/security/api_key/get",
            True,
            ["manage_own_api_key", "read_security", "manage_api_key", "manage_security", "all"],
        ),
        ("cluster:monitor/health", False, ["monitor", "manage", "all"]),
    ],
)
def test_privileges_granting_in_es_order(action: str, own: bool, expected: list[str]) -> None:
    assert cluster_privileges_granting(action, own_key_request=own) == expected


# ES 8.17: the 60 names of the 9.x docs' error text plus the two deprecated data-frame ones.
CLUSTER_ORDER = (
    "manage_own_api_key,manage_data_stream_global_retention,monitor_data_stream_global_retention,"
    "none,cancel_task,cross_cluster_replication,cross_cluster_search,delegate_pki,grant_api_key,"
    "manage_autoscaling,manage_index_templates,manage_logstash_pipelines,manage_oidc,manage_saml,"
    "manage_search_application,manage_search_query_rules,manage_search_synonyms,"
    "manage_service_account,manage_token,manage_user_profile,monitor_connector,monitor_enrich,"
    "monitor_inference,monitor_ml,monitor_rollup,monitor_snapshot,monitor_stats,"
    "monitor_text_structure,monitor_watcher,post_behavioral_analytics_event,read_ccr,"
    "read_connector_secrets,read_fleet_secrets,read_ilm,read_pipeline,read_security,read_slm,"
    "transport_client,write_connector_secrets,write_fleet_secrets,create_snapshot,"
    "manage_behavioral_analytics,manage_ccr,manage_connector,manage_enrich,manage_ilm,"
    "manage_inference,manage_ml,manage_rollup,manage_slm,manage_watcher,"
    "monitor_data_frame_transforms,monitor_transform,manage_api_key,manage_ingest_pipelines,"
    "manage_pipeline,manage_data_frame_transforms,manage_transform,manage_security,monitor,"
    "manage,all"
)


def test_cluster_privileges_sorted_by_access_level() -> None:
    assert ",".join(cluster_privilege_names()) == CLUSTER_ORDER
    assert len(cluster_privilege_names()) == 62


def test_unknown_cluster_privilege_text() -> None:
    assert cluster_privilege_error("Foo") == (
        "unknown cluster privilege [foo]. a privilege must be either one of the predefined "
        f"cluster privilege names [{CLUSTER_ORDER}] or a pattern over one of the available "
        "cluster actions"
    )
    assert cluster_privilege_error("cluster:admin/whatever") is None
    assert cluster_privilege_error("indices:admin/template/put") is None
    assert cluster_privilege_error("indices:data/read/search") is not None


def test_validate_cluster_privilege_is_a_validation_failure() -> None:
    with pytest.raises(EsError) as caught:
        validate_cluster_privilege("foo")
    assert caught.value.status == 400
    assert caught.value.error_type == "action_request_validation_exception"
    assert caught.value.reason is not None
    assert caught.value.reason.startswith("Validation Failed: 1: unknown cluster privilege [foo]")


# -- index privileges ------------------------------------------------------------------------

INDEX_ORDER = (
    "none",
    "create_doc",
    "create",
    "auto_configure",
    "create_index",
    "delete",
    "delete_index",
    "index",
    "maintenance",
    "manage_data_stream_lifecycle",
    "manage_follow_index",
    "manage_ilm",
    "manage_leader_index",
    "monitor",
    "view_index_metadata",
    "cross_cluster_replication",
    "cross_cluster_replication_internal",
    "manage",
    "read",
    "read_cross_cluster",
    "write",
    "all",
)


def test_index_privileges_sorted_by_access_level() -> None:
    assert index_privilege_names() == INDEX_ORDER


def test_unknown_index_privilege_text() -> None:
    listed = ",".join(f"{n}=[{n}]" for n in INDEX_ORDER)
    assert index_privilege_error("Bogus") == (
        "unknown index privilege [bogus]. a privilege must be either one of the predefined fixed "
        f"indices privileges [{listed}] or a pattern over one of the available index actions"
    )
    assert index_privilege_error("indices:data/read/search") is None
    with pytest.raises(EsError) as caught:
        validate_index_privilege("bogus")
    assert caught.value.error_type == "action_request_validation_exception"


@pytest.mark.parametrize(
    ("held", "asked", "expected"),
    [
        ("write", "index", True),
        ("index", "create", True),
        ("create", "create_doc", True),
        ("write", "create_doc", True),
        ("create_doc", "create", False),
        ("create", "index", False),
        ("index", "write", False),
        ("read", "write", False),
        ("write", "read", False),
        ("all", "manage", True),
        ("manage", "create_index", True),
        ("manage", "auto_configure", True),
        ("write", "auto_configure", False),
        ("create_index", "auto_configure", False),
        ("auto_configure", "create_index", False),
        ("indices:data/read/*", "indices:data/read/search", True),
        ("indices:data/read/*", "read", False),
        ("read", "none", True),
    ],
)
def test_index_privilege_implication(held: str, asked: str, expected: bool) -> None:
    assert index_role(("logs",), (held,)).has_index_privilege("logs", asked) is expected


@pytest.mark.parametrize(
    ("privilege", "action", "index", "expected"),
    [
        ("create_doc", "indices:data/write/index:op_type/create", "logs-app-default", True),
        ("create_doc", "indices:data/write/index:op_type/index", "logs-app-default", False),
        ("create_doc", "indices:data/write/bulk[s]", "logs-app-default", True),
        ("create_doc", "indices:data/write/bulk", "logs-app-default", True),
        ("auto_configure", "indices:admin/auto_create", "logs-app-default", True),
        ("auto_configure", "indices:admin/mapping/auto_put", "logs-app-default", True),
        ("read", "indices:data/read/search", "logs-app-default", True),
        ("read", "indices:data/read/search", "metrics-app-default", False),
        ("write", "indices:data/write/update", "logs-app-default", True),
        ("write", "indices:admin/auto_create", "logs-app-default", False),
    ],
)
def test_allows_index_action(privilege: str, action: str, index: str, expected: bool) -> None:
    permission = index_role(("logs-*-*",), (privilege,))
    assert permission.allows_index_action(action, index) is expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (".security", True),
        (".security-7", True),
        (".security-tokens-7", True),
        (".security-profile-8", True),
        (".security-foo", False),
        (".securityx", False),
        ("security-7", False),
    ],
)
def test_restricted_indices(name: str, expected: bool) -> None:
    assert is_restricted_index(name) is expected


def test_wildcards_do_not_cover_restricted_indices_unless_allowed() -> None:
    plain = index_role(("*",), ("read",))
    allowed = index_role(("*",), ("read",), restricted=True)
    assert not plain.allows_index_action("indices:data/read/search", ".security-7")
    assert plain.allows_index_action("indices:data/read/search", ".kibana")
    assert allowed.allows_index_action("indices:data/read/search", ".security-7")
    assert plain.has_index_privilege("*", "read")
    assert not plain.has_index_privilege(".security", "read")
    assert allowed.has_index_privilege("*", "read", allow_restricted=True)
    assert not plain.has_index_privilege("*", "read", allow_restricted=True)


def test_question_mark_wildcard() -> None:
    permission = index_role(("log?",), ("read",))
    assert permission.allows_index_action("indices:data/read/search", "logs")
    assert not permission.allows_index_action("indices:data/read/search", "logss")


def test_one_entry_must_cover_a_requested_pattern() -> None:
    permission = index_role(("index-a", "index-b"), ("read",))
    assert permission.has_index_privilege("index-a", "read")
    assert not permission.has_index_privilege("index-*", "read")
    assert not permission.has_index_privilege("*", "read")
    assert index_role(("index-*",), ("read",)).has_index_privilege("index-a*", "read")


def test_index_privileges_granting() -> None:
    assert index_privileges_granting("indices:data/write/index:op_type/create") == [
        "create_doc",
        "create",
        "index",
        "write",
        "all",
    ]


# -- applications and run_as ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("privileges", "resources", "asked", "resource", "expected"),
    [
        (["read"], ["*"], "data:read/me", "*", True),
        (["read"], ["*"], "data:write/me", "*", False),
        (["read"], ["*"], "read", "anything", True),
        (["read"], ["*"], "write", "anything", False),
        (["*"], ["*"], "data:write/me", "some-res", True),
        (["*"], ["*"], "unregistered", "some-res", True),
        (["read"], ["*"], "unregistered", "some-res", False),
        (["data:read/*"], ["space/*"], "data:read/me", "space/a", True),
        (["data:read/*"], ["space/*"], "data:read/me", "other", False),
        (["data:read/*"], ["space/*"], "data:read/me", "*", False),
    ],
)
def test_application_privileges(
    privileges: list[str], resources: list[str], asked: str, resource: str, expected: bool
) -> None:
    entry = ApplicationPrivileges("myapp", tuple(privileges), tuple(resources))
    permission = Permission.from_descriptors([RoleDescriptor("r", applications=(entry,))], APPS)
    assert permission.has_application_privilege("myapp", asked, resource) is expected
    assert not permission.has_application_privilege("otherapp", asked, resource)


def test_application_wildcard_expands_over_registered_apps() -> None:
    registry = {"myapp": {d.name: d for d in APPS}}
    entry = ApplicationPrivileges("my*", ("read",), ("*",))
    permission = Permission.from_descriptors([RoleDescriptor("r", applications=(entry,))], registry)
    assert permission.has_application_privilege("myapp", "data:read/x", "r")
    assert not permission.has_application_privilege("myapp", "data:write/x", "r")


def test_run_as() -> None:
    permission = Permission.from_descriptors([RoleDescriptor("r", run_as=("svc-*",))])
    assert permission.can_run_as("svc-ingest")
    assert not permission.can_run_as("admin")
    assert Permission.from_descriptors([SUPERUSER]).can_run_as("anyone")


# -- API keys: assigned descriptors intersected with limited-by -----------------------------


def key_permission(assigned: dict[str, Any] | None, owner: dict[str, Any]) -> LimitedPermission:
    descriptors = parse_role_descriptors(assigned) if assigned else []
    limited = Permission.from_descriptors([parse_role_descriptor("owner", owner)], APPS)
    own = Permission.from_descriptors(descriptors, APPS) if descriptors else None
    return LimitedPermission(own, limited)


ADMIN_ROLE = {
    "cluster": ["manage_api_key"],
    "indices": [{"names": "*", "privileges": ["all"]}],
    "applications": [{"application": "myapp", "privileges": ["*"], "resources": ["*"]}],
}
KEY_ROLES = {
    "role-a": {
        "cluster": ["all"],
        "index": [{"names": ["index-a"], "privileges": ["read"]}],
        "applications": [{"application": "myapp", "privileges": ["read"], "resources": ["*"]}],
    },
    "role-b": {"cluster": ["manage"], "index": [{"names": ["index-b"], "privileges": ["all"]}]},
}


def test_basic_has_privileges_for_an_api_key() -> None:
    body = {
        "index": [
            {"names": ["*", "index-a"], "privileges": ["read", "index", "write"]},
            {"names": ["index-a", "index-b"], "privileges": ["read", "write"]},
        ],
        "application": [
            {
                "application": "myapp",
                "resources": ["*", "some-other-res"],
                "privileges": ["data:read/me", "data:write/me"],
            }
        ],
    }
    answer = has_privileges_response(key_permission(KEY_ROLES, ADMIN_ROLE), "api_key_user", body)
    assert answer == {
        "username": "api_key_user",
        "has_all_requested": False,
        "cluster": {},
        "index": {
            "*": {"read": False, "index": False, "write": False},
            "index-a": {"read": True, "index": False, "write": False},
            "index-b": {"read": True, "write": True},
        },
        "application": {
            "myapp": {
                "*": {"data:read/me": True, "data:write/me": False},
                "some-other-res": {"data:read/me": True, "data:write/me": False},
            }
        },
    }
    assert list(answer) == ["username", "has_all_requested", "cluster", "index", "application"]


@pytest.mark.parametrize(
    ("assigned", "owner", "asked", "expected"),
    [
        (None, {"cluster": ["manage_api_key"]}, "manage_api_key", True),
        ({}, {"cluster": ["manage_api_key"]}, "manage_api_key", True),
        ({"a": {"cluster": ["monitor"]}}, {"cluster": ["all"]}, "manage", False),
        ({"a": {"cluster": ["manage"]}}, {"cluster": ["all"]}, "manage", True),
        (
            {"a": {"cluster": ["all"]}},
            {"cluster": ["manage_own_api_key"]},
            "manage_own_api_key",
            True,
        ),
        ({"a": {"cluster": ["all"]}}, {"cluster": ["manage_own_api_key"]}, "manage_api_key", False),
        ({"a": {"cluster": ["none"]}}, {"cluster": ["all"]}, "manage_own_api_key", False),
    ],
)
def test_key_cluster_privileges(
    assigned: dict[str, Any] | None, owner: dict[str, Any], asked: str, expected: bool
) -> None:
    assert key_permission(assigned, owner).has_cluster_privilege(asked) is expected


def test_key_manage_own_and_actions() -> None:
    permission = key_permission(
        {"a": {"cluster": ["manage_api_key"]}}, {"cluster": ["manage_own_api_key"]}
    )
    assert not permission.allows_cluster_action("cluster:admin/xpack/security/api_key/get")
    assert permission.holds_manage_own_api_key()
    wide = key_permission(None, {"cluster": ["manage_api_key"]})
    assert wide.allows_cluster_action("cluster:admin/xpack/security/api_key/get")
    assert not key_permission(
        {"a": {"cluster": ["monitor"]}}, {"cluster": ["all"]}
    ).holds_manage_own_api_key()


def test_key_index_and_run_as_intersect() -> None:
    owner = {"indices": [{"names": ["logs-*"], "privileges": ["all"]}], "run_as": ["svc"]}
    assigned = {
        "w": {"indices": [{"names": ["logs-*", "metrics-*"], "privileges": ["create_doc"]}]}
    }
    permission = key_permission(assigned, owner)
    assert permission.allows_index_action("indices:data/write/bulk[s]", "logs-a")
    assert not permission.allows_index_action("indices:data/write/bulk[s]", "metrics-a")
    assert not permission.allows_index_action("indices:data/read/search", "logs-a")
    assert permission.has_index_privilege("logs-*", "create_doc")
    assert not permission.can_run_as("svc")
    assert key_permission(None, owner).can_run_as("svc")


# -- has_privileges request validation ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error_type", "reason"),
    [
        (
            {},
            "parse_exception",
            "failed to parse privileges check [u]. All privilege fields [cluster,index,applications] "
            "are missing",
        ),
        (
            {"foo": []},
            "parse_exception",
            "failed to parse privileges check [u]. unexpected field [foo]",
        ),
        (
            {"indices": []},
            "parse_exception",
            "failed to parse privileges check [u]. unexpected field [indices]",
        ),
        (
            {"cluster": [], "index": [], "application": []},
            "action_request_validation_exception",
            "Validation Failed: 1: must specify at least one privilege;",
        ),
        (
            {"application": [{"application": "ab", "privileges": ["x"], "resources": ["*"]}]},
            "action_request_validation_exception",
            "Validation Failed: 1: An application name prefix must be at least 3 characters long "
            "(found 'ab');",
        ),
        (
            {"application": [{"application": "app*", "privileges": ["x"], "resources": ["*"]}]},
            "action_request_validation_exception",
            "Validation Failed: 1: Application names may not contain '*' (found 'app*');",
        ),
        (
            {"index": [{"names": ["i"], "privileges": ["read"], "query": {"match_all": {}}}]},
            "parse_exception",
            "Field [query] is not supported in a has_privileges request",
        ),
        (
            {
                "index": [
                    {"names": ["i"], "privileges": ["read"], "field_security": {"grant": ["a"]}}
                ]
            },
            "parse_exception",
            "Field [field_security] is not supported in a has_privileges request",
        ),
    ],
)
def test_has_privileges_rejects(body: dict[str, Any], error_type: str, reason: str) -> None:
    with pytest.raises(EsError) as caught:
        has_privileges_response(cluster_role("all"), "u", body)
    assert (caught.value.status, caught.value.error_type, caught.value.reason) == (
        400,
        error_type,
        reason,
    )


def test_has_privileges_unknown_privileges_are_illegal_arguments() -> None:
    with pytest.raises(EsError) as caught:
        has_privileges_response(cluster_role("all"), "u", {"cluster": ["foo"]})
    assert caught.value.error_type == "illegal_argument_exception"
    assert caught.value.reason == cluster_privilege_error("foo")
    body = {"index": [{"names": ["i"], "privileges": ["bogus"]}]}
    with pytest.raises(EsError) as caught:
        has_privileges_response(cluster_role("all"), "u", body)
    assert caught.value.reason == index_privilege_error("bogus")


def test_has_privileges_cluster_answers_and_field_security_star_is_allowed() -> None:
    body = {
        "cluster": ["monitor", "manage_security"],
        "index": [{"names": ["i"], "privileges": ["read"], "field_security": {"grant": ["*"]}}],
    }
    answer = has_privileges_response(cluster_role("manage"), "u", body)
    assert answer["cluster"] == {"monitor": True, "manage_security": False}
    assert answer["index"] == {"i": {"read": False}}
    assert answer["has_all_requested"] is False


def test_superuser_reads_but_does_not_write_restricted_indices() -> None:
    superuser = Permission.from_descriptors([SUPERUSER])
    assert superuser.has_cluster_privilege("all")
    assert superuser.has_index_privilege(".security", "read", allow_restricted=True)
    assert not superuser.has_index_privilege(".security", "write", allow_restricted=True)
    assert superuser.has_index_privilege("*", "all")
    assert superuser.has_application_privilege("anyapp", "anything", "*")
