"""Role descriptor tables: ES's normalized output, strict parsing errors, validation, is_empty."""

from __future__ import annotations

from typing import Any

import pytest

from rotator.sandbox.errors import EsError
from rotator.sandbox.privileges import cluster_privilege_error, index_privilege_error
from rotator.sandbox.roles import (
    BUILTIN_ROLES,
    SUPERUSER,
    RoleDescriptor,
    parse_role_descriptor,
    parse_role_descriptors,
    validation_errors,
    wrap_field_error,
)

EMPTY_REST = {
    "applications": [],
    "run_as": [],
    "metadata": {},
    "transient_metadata": {"enabled": True},
}


def parse(body: object, name: str = "role-a") -> RoleDescriptor:
    return parse_role_descriptor(name, body)


def failure(body: object, name: str = "role-a") -> EsError:
    with pytest.raises(EsError) as caught:
        parse_role_descriptor(name, body)
    return caught.value


# -- normalized output ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"cluster": ["all"], "index": [{"names": ["index-a"], "privileges": ["read"]}]},
            {
                "cluster": ["all"],
                "indices": [
                    {
                        "names": ["index-a"],
                        "privileges": ["read"],
                        "allow_restricted_indices": False,
                    }
                ],
                **EMPTY_REST,
            },
        ),
        (
            {"cluster": ["manage_own_api_key"]},
            {"cluster": ["manage_own_api_key"], "indices": [], **EMPTY_REST},
        ),
        (
            {
                "cluster": ["manage_api_key"],
                "indices": [{"names": "*", "privileges": ["all"]}],
                "applications": [{"application": "apm", "privileges": ["*"], "resources": ["*"]}],
            },
            {
                "cluster": ["manage_api_key"],
                "indices": [
                    {"names": ["*"], "privileges": ["all"], "allow_restricted_indices": False}
                ],
                "applications": [{"application": "apm", "privileges": ["*"], "resources": ["*"]}],
                "run_as": [],
                "metadata": {},
                "transient_metadata": {"enabled": True},
            },
        ),
        ({}, {"cluster": [], "indices": [], **EMPTY_REST}),
        (
            {"transient_metadata": {"enabled": False}, "metadata": {"k": 1}},
            {
                "cluster": [],
                "indices": [],
                "applications": [],
                "run_as": [],
                "metadata": {"k": 1},
                "transient_metadata": {"enabled": True},
            },
        ),
    ],
)
def test_normalized_output(body: dict[str, Any], expected: dict[str, Any]) -> None:
    rendered = parse(body).to_json()
    assert rendered == expected
    assert list(rendered) == list(expected)


def test_query_is_a_json_string_and_field_security_precedes_it() -> None:
    body = {
        "cluster": ["cross_cluster_search"],
        "indices": [
            {
                "names": ["logs*"],
                "privileges": ["read", "read_cross_cluster", "view_index_metadata"],
                "query": {"term": {"category": "shared"}},
                "field_security": {"grant": ["*"], "except": ["private"]},
            }
        ],
    }
    entry = parse(body, "cross_cluster").to_json()["indices"][0]
    assert entry == {
        "names": ["logs*"],
        "privileges": ["read", "read_cross_cluster", "view_index_metadata"],
        "field_security": {"grant": ["*"], "except": ["private"]},
        "query": '{"term":{"category":"shared"}}',
        "allow_restricted_indices": False,
    }
    assert list(entry) == [
        "names",
        "privileges",
        "field_security",
        "query",
        "allow_restricted_indices",
    ]


def test_optional_sections_follow_transient_metadata() -> None:
    body = {
        "description": "d",
        "restriction": {"workflows": ["search_application_query"]},
        "remote_cluster": [{"privileges": ["monitor_enrich"], "clusters": ["c1"]}],
        "remote_indices": [{"names": ["x"], "privileges": ["read"], "clusters": ["c1"]}],
        "cluster": ["monitor"],
    }
    rendered = parse(body).to_json()
    assert list(rendered)[-4:] == ["remote_indices", "remote_cluster", "restriction", "description"]
    assert rendered["remote_indices"] == [
        {
            "names": ["x"],
            "privileges": ["read"],
            "allow_restricted_indices": False,
            "clusters": ["c1"],
        }
    ]
    assert rendered["remote_cluster"] == [{"privileges": ["monitor_enrich"], "clusters": ["c1"]}]
    assert rendered["restriction"] == {"workflows": ["search_application_query"]}


def test_round_trip_through_to_json() -> None:
    body = {
        "cluster": ["monitor"],
        "indices": [{"names": ["a", "b"], "privileges": ["read"], "query": '{"match_all":{}}'}],
        "applications": [{"application": "myapp", "privileges": ["read"], "resources": ["r"]}],
        "run_as": ["u"],
        "metadata": {"m": [1, 2]},
    }
    descriptor = parse(body)
    assert parse(descriptor.to_json()) == descriptor
    stored = parse_role_descriptor("superuser", SUPERUSER.to_json(), validate=False)
    assert stored == SUPERUSER
    with pytest.raises(EsError):  # reserved metadata is refused from requests
        parse_role_descriptor("superuser", SUPERUSER.to_json())


def test_superuser_is_builtin() -> None:
    assert BUILTIN_ROLES["superuser"] is SUPERUSER
    rendered = SUPERUSER.to_json()
    assert rendered["cluster"] == ["all"]
    assert rendered["indices"][1] == {
        "names": ["*"],
        "privileges": ["monitor", "read", "view_index_metadata", "read_cross_cluster"],
        "allow_restricted_indices": True,
    }
    assert rendered["metadata"] == {"_reserved": True}
    assert rendered["run_as"] == ["*"]


# -- the derived-key rule -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, True),
        ({"cluster": []}, True),
        ({"indices": []}, True),
        ({"transient_metadata": {"a": 1}}, True),
        ({"cluster": ["none"]}, False),
        ({"indices": [{"names": ["a"], "privileges": ["none"]}]}, False),
        ({"run_as": ["u"]}, False),
        ({"metadata": {"k": "v"}}, False),
        (
            {"applications": [{"application": "app", "privileges": ["x"], "resources": ["*"]}]},
            False,
        ),
    ],
)
def test_is_empty(body: dict[str, Any], expected: bool) -> None:
    assert parse(body).is_empty() is expected


# -- strict parsing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error_type", "reason"),
    [
        (
            [],
            "parse_exception",
            "failed to parse role [role-a]. expected an object but found [START_ARRAY] instead",
        ),
        ({"foo": 1}, "parse_exception", "failed to parse role [role-a]. unexpected field [foo]"),
        (
            {"metadata": []},
            "parse_exception",
            "expected field [metadata] to be of type object, but found [START_ARRAY] instead",
        ),
        (
            {"transient_metadata": "x"},
            "parse_exception",
            "failed to parse role [role-a]. unexpected field [transient_metadata]",
        ),
        ({"cluster": "all"}, "parse_exception", "failed to parse role [role-a]"),
        (
            {"indices": {}},
            "parse_exception",
            "failed to parse indices privileges for role [role-a]. expected field [indices] value to "
            "be an array, but found [START_OBJECT] instead",
        ),
        (
            {"index": ["x"]},
            "parse_exception",
            "failed to parse indices privileges for role [role-a]. expected field [null] value to be "
            "an array of objects, but found an array element of type [VALUE_STRING]",
        ),
        (
            {"indices": [{"privileges": ["read"]}]},
            "parse_exception",
            "failed to parse indices privileges for role [role-a]. missing required [names] field",
        ),
        (
            {"indices": [{"names": ["a"]}]},
            "parse_exception",
            "failed to parse indices privileges for role [role-a]. missing required [privileges] field",
        ),
        (
            {"indices": [{"names": [], "privileges": ["read"]}]},
            "parse_exception",
            "failed to parse indices privileges for role [role-a]. [names] cannot be an empty array",
        ),
        (
            {"indices": [{"names": 3, "privileges": ["read"]}]},
            "parse_exception",
            "failed to parse indices privileges for role [role-a]. expected field [names] value to be "
            "a string or an array of strings, but found [VALUE_NUMBER] instead",
        ),
        (
            {
                "indices": [
                    {"names": "a", "privileges": ["read"], "allow_restricted_indices": "yes"}
                ]
            },
            "parse_exception",
            "failed to parse indices privileges for role [role-a]. expected field "
            "[allow_restricted_indices] value to be a boolean, but found [VALUE_STRING] instead",
        ),
        (
            {"indices": [{"names": "a", "privileges": ["read"], "nope": 1}]},
            "parse_exception",
            "failed to parse indices privileges for role [role-a]. unexpected field [nope]",
        ),
        (
            {"indices": [{"names": "a", "privileges": []}]},
            "illegal_argument_exception",
            "indices privileges must define at least one privilege",
        ),
        (
            {
                "indices": [
                    {"names": "a", "privileges": ["read"], "field_security": {"except": ["x"]}}
                ]
            },
            "parse_exception",
            "failed to parse indices privileges for role [role-a]. field_security requires grant if "
            "except is given",
        ),
        (
            {"applications": [{"application": "app", "privileges": ["x"]}]},
            "parse_exception",
            "failed to parse application privileges for role [role-a]. missing required [resources] "
            "field",
        ),
        (
            {"applications": [{"application": "app", "resources": ["x"]}]},
            "parse_exception",
            "failed to parse application privileges for role [role-a]. missing required [privileges] "
            "field",
        ),
        (
            {"applications": [{"not_supported": True, "resources": ["*"], "privileges": ["a"]}]},
            "x_content_parse_exception",
            "[application] unknown field [not_supported]",
        ),
        (
            {"remote_cluster": [{"privileges": ["monitor_enrich"]}]},
            "parse_exception",
            "failed to parse remote_cluster for role [role-a]. [clusters] must be defined when "
            "[privileges] are defined",
        ),
        (
            {
                "remote_cluster": [
                    {"privileges": ["monitor_stats", "read_pipeline"], "clusters": ["*"]}
                ]
            },
            "parse_exception",
            "failed to parse remote_cluster for role [role-a]. [monitor_enrich, monitor_stats] are the "
            "only values allowed for [privileges] within [remote_cluster]. Found [monitor_stats, "
            "read_pipeline]",
        ),
        (
            {"remote_cluster": [{}]},
            "illegal_argument_exception",
            "remote cluster groups must not be null or empty",
        ),
        (
            {"restriction": {"workflows": []}},
            "parse_exception",
            "failed to parse restriction for role [role-a]. [workflows] cannot be an empty array",
        ),
        (
            {"restriction": {"workflows": None}},
            "parse_exception",
            "failed to parse restriction for role [role-a]. could not parse [workflows] field. "
            "expected a string array but found null value instead",
        ),
    ],
)
def test_parse_errors(body: object, error_type: str, reason: str) -> None:
    error = failure(body)
    assert (error.status, error.error_type, error.reason) == (400, error_type, reason)


@pytest.mark.parametrize(
    ("cluster", "inner"),
    [
        (
            "all",
            "could not parse [cluster] field. expected a string array but found [VALUE_STRING] value instead",
        ),
        (
            [1],
            "could not parse [null] field. expected a string array but one of the value in the array is [VALUE_NUMBER]",
        ),
    ],
)
def test_string_array_errors_are_wrapped_with_the_role(cluster: object, inner: str) -> None:
    error = failure({"cluster": cluster})
    body = error.body()["error"]
    assert body["reason"] == "failed to parse role [role-a]"
    assert body["caused_by"] == {"type": "parse_exception", "reason": inner}
    assert body["root_cause"] == [{"type": "parse_exception", "reason": inner}]


def test_index_is_an_alias_of_indices_and_names_may_be_a_string() -> None:
    by_index = parse({"index": [{"names": "a", "privileges": ["read"]}]})
    by_indices = parse({"indices": [{"names": ["a"], "privileges": ["read"]}]})
    assert by_index == by_indices


# -- validation (action_request_validation_exception) ---------------------------------------


def test_validation_lists_every_problem_in_order() -> None:
    body = {
        "cluster": ["all", "bogus", "cluster:monitor/x"],
        "indices": [{"names": "a", "privileges": ["read", "nope", "worse"]}],
        "applications": [{"application": "ab", "privileges": ["a b"], "resources": ["*"]}],
        "metadata": {"_secret": 1},
        "restriction": {"workflows": ["other"]},
    }
    error = failure(body)
    assert error.error_type == "action_request_validation_exception"
    messages = [
        cluster_privilege_error("bogus"),
        index_privilege_error("nope"),
        "An application name prefix must be at least 3 characters long (found 'ab')",
        "Application privilege names and actions must match the pattern ^\\p{Graph}*$ (found 'a b')",
        "role descriptor metadata keys may not start with [_]",
        "Unknown workflow [other]. A workflow must be one of the predefined workflow names "
        "[search_application_query].",
    ]
    assert validation_errors(parse_role_descriptor("r", body, validate=False)) == messages
    expected = "".join(f"{i}: {m};" for i, m in enumerate(messages, start=1))
    assert error.reason == f"Validation Failed: {expected}"


@pytest.mark.parametrize(
    ("application", "message"),
    [
        ("*", None),
        ("app*", None),
        ("myapp-*", None),
        ("", "Application names cannot be blank"),
        ("a*b", "Application name patterns only support trailing wildcards (found 'a*b')"),
        ("my app", "Application names may not contain whitespace (found 'my app')"),
        (
            "MyApp",
            "An application name prefix must match the pattern ^[a-z][A-Za-z0-9]*$ (found 'MyApp')",
        ),
    ],
)
def test_application_names_in_roles(application: str, message: str | None) -> None:
    body = {
        "applications": [{"application": application, "privileges": ["read"], "resources": ["*"]}]
    }
    expected = [] if message is None else [message]
    assert validation_errors(parse_role_descriptor("r", body, validate=False)) == expected


# -- API key role_descriptors maps ----------------------------------------------------------


def test_parse_role_descriptors_keeps_order_and_names() -> None:
    parsed = parse_role_descriptors({"b": {"cluster": ["monitor"]}, "a": {}})
    assert [d.name for d in parsed] == ["b", "a"]
    assert parse_role_descriptors({}) == []


def test_api_key_descriptors_take_restriction_but_not_description() -> None:
    with_restriction = {"r": {"restriction": {"workflows": ["search_application_query"]}}}
    assert parse_role_descriptors(with_restriction)[0].restriction == ("search_application_query",)
    with pytest.raises(EsError) as caught:
        parse_role_descriptors({"r": {"description": "x"}})
    assert caught.value.reason == "failed to parse role [r]. unexpected field [description]"
    with pytest.raises(EsError) as caught:
        parse_role_descriptor("r", {"restriction": {}}, allow_restriction=False)
    assert caught.value.reason == "failed to parse role [r]. unexpected field [restriction]"


def test_parse_role_descriptors_needs_an_object() -> None:
    with pytest.raises(EsError) as caught:
        parse_role_descriptors([])
    assert caught.value.error_type == "x_content_parse_exception"


def test_create_api_key_wraps_descriptor_parse_errors() -> None:
    with pytest.raises(EsError) as caught:
        parse_role_descriptors({"role-a": {"foo": 1}})
    wrapped = wrap_field_error(caught.value, "api_key_request", "role_descriptors", "1:50")
    body = wrapped.body()
    assert body["status"] == 400
    assert body["error"]["type"] == "x_content_parse_exception"
    assert (
        body["error"]["reason"]
        == "[1:50] [api_key_request] failed to parse field [role_descriptors]"
    )
    assert body["error"]["caused_by"] == {
        "type": "parse_exception",
        "reason": "failed to parse role [role-a]. unexpected field [foo]",
    }
