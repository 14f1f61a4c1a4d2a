"""Create and grant API key: response shape, validation texts, the derived-key rule, expiration."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from elasticsearch import AuthorizationException, BadRequestError, Elasticsearch

from tests.sandbox.conftest import ADMIN

pytestmark = pytest.mark.usefixtures("clean")


def user(es: Elasticsearch, name: str, cluster: list[str], **role: Any) -> Elasticsearch:
    """Create a native user with its own role; return a client authenticated as that user."""
    es.security.put_role(name=f"{name}_role", cluster=cluster, **role)
    es.security.put_user(username=name, password=f"{name}-password", roles=[f"{name}_role"])
    return es.options(basic_auth=(name, f"{name}-password"))


def as_key(es: Elasticsearch, key: Any) -> Elasticsearch:
    return es.options(api_key=key["encoded"])


def error_of(exc: Any) -> dict[str, Any]:
    return dict(exc.value.body["error"])


# --- the response ---------------------------------------------------------------------------------


def test_response_fields_in_order_and_encoded_is_id_colon_secret(es: Elasticsearch) -> None:
    body = es.security.create_api_key(name="k", expiration="1d").body
    assert list(body) == ["id", "name", "expiration", "api_key", "encoded"]
    assert len(body["id"]) == 20
    assert len(body["api_key"]) == 22
    decoded = base64.b64decode(body["encoded"]).decode()
    assert decoded == f"{body['id']}:{body['api_key']}"


def test_no_expiration_field_when_the_key_never_expires(es: Elasticsearch) -> None:
    body = es.security.create_api_key(name="k").body
    assert list(body) == ["id", "name", "api_key", "encoded"]


def test_expiration_is_creation_plus_whole_seconds(es: Elasticsearch) -> None:
    created = es.security.create_api_key(name="k", expiration="1500ms")
    shown = es.security.get_api_key(id=created["id"])["api_keys"][0]
    assert shown["expiration"] == created["expiration"]
    assert shown["expiration"] - shown["creation"] == 1000


def test_expiration_days(es: Elasticsearch) -> None:
    created = es.security.create_api_key(name="k", expiration="30d")
    shown = es.security.get_api_key(id=created["id"])["api_keys"][0]
    assert shown["expiration"] - shown["creation"] == 30 * 86_400_000


def test_zero_and_minus_one_expire_at_once(es: Elasticsearch) -> None:
    for value in ("0", "-1"):
        created = es.security.create_api_key(name="k", expiration=value)
        shown = es.security.get_api_key(id=created["id"])["api_keys"][0]
        assert shown["expiration"] == shown["creation"]


def test_ids_are_unique_and_url_safe(es: Elasticsearch) -> None:
    ids = {es.security.create_api_key(name=f"k{i}")["id"] for i in range(20)}
    assert len(ids) == 20
    assert all(
        set(i) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        for i in ids
    )


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (" lead", "api key name may not begin or end with whitespace"),
        ("trail ", "api key name may not begin or end with whitespace"),
        ("_under", "api key name may not begin with an underscore"),
        ("x" * 257, "api key name may not be more than 256 characters long"),
        ("", "api key name is required"),
    ],
)
def test_name_rules(es: Elasticsearch, name: str, message: str) -> None:
    with pytest.raises(BadRequestError) as exc:
        es.security.create_api_key(name=name)
    error = error_of(exc)
    assert error["type"] == "action_request_validation_exception"
    assert error["reason"] == f"Validation Failed: 1: {message};"


def test_name_of_256_characters_is_fine(es: Elasticsearch) -> None:
    assert es.security.create_api_key(name="x" * 256)["name"] == "x" * 256


def test_reserved_metadata_key(es: Elasticsearch) -> None:
    with pytest.raises(BadRequestError) as exc:
        es.security.create_api_key(name="k", metadata={"_secret": 1})
    assert error_of(exc)["reason"] == (
        "Validation Failed: 1: API key metadata keys may not start with [_];"
    )


def test_missing_name(es: Elasticsearch) -> None:
    with pytest.raises(BadRequestError) as exc:
        es.security.create_api_key(body={"expiration": "1d"})
    assert error_of(exc) == {
        "root_cause": [{"type": "illegal_argument_exception", "reason": "Required [name]"}],
        "type": "illegal_argument_exception",
        "reason": "Required [name]",
    }


def test_unknown_top_level_field(es: Elasticsearch) -> None:
    with pytest.raises(BadRequestError) as exc:
        es.security.create_api_key(body={"name": "k", "foo": 1})
    error = error_of(exc)
    assert error["type"] == "x_content_parse_exception"
    assert error["reason"].endswith("[api_key_request] unknown field [foo]")


@pytest.mark.parametrize(
    ("expiration", "reason"),
    [
        ("1.5h", "failed to parse [1.5h], fractional time values are not supported"),
        (
            "30x",
            "failed to parse setting [expiration] with value [30x] as a time value: unit is "
            "missing or unrecognized",
        ),
        (
            "-2d",
            "failed to parse setting [expiration] with value [-2d] as a time value: negative "
            "durations are not supported",
        ),
    ],
)
def test_bad_expiration_is_wrapped_by_the_request_parser(
    es: Elasticsearch, expiration: str, reason: str
) -> None:
    with pytest.raises(BadRequestError) as exc:
        es.security.create_api_key(name="k", expiration=expiration)
    error = error_of(exc)
    assert error["type"] == "x_content_parse_exception"
    assert error["reason"] == "Failed to build [api_key_request] after last required field arrived"
    assert error["caused_by"]["type"] == "illegal_argument_exception"
    assert error["caused_by"]["reason"] == reason


def test_unknown_cluster_privilege_in_descriptor(es: Elasticsearch) -> None:
    with pytest.raises(BadRequestError) as exc:
        es.security.create_api_key(name="k", role_descriptors={"r": {"cluster": ["bogus"]}})
    error = error_of(exc)
    assert error["type"] == "action_request_validation_exception"
    assert error["reason"].startswith("Validation Failed: 1: unknown cluster privilege [bogus].")


def test_unknown_descriptor_field_is_a_wrapped_parse_error(es: Elasticsearch) -> None:
    with pytest.raises(BadRequestError) as exc:
        es.security.create_api_key(name="k", role_descriptors={"r": {"foo": []}})
    error = error_of(exc)
    assert error["type"] == "x_content_parse_exception"
    assert error["reason"].endswith("[api_key_request] failed to parse field [role_descriptors]")
    assert error["caused_by"] == {
        "type": "parse_exception",
        "reason": "failed to parse role [r]. unexpected field [foo]",
    }


# --- who may create -------------------------------------------------------------------------------


def test_manage_own_api_key_may_create(es: Elasticsearch) -> None:
    own = user(es, "owner", ["manage_own_api_key"])
    assert own.security.create_api_key(name="mine")["name"] == "mine"


def test_no_privilege_gives_403_naming_manage_own(es: Elasticsearch) -> None:
    nobody = user(es, "nobody", ["monitor"])
    with pytest.raises(AuthorizationException) as exc:
        nobody.security.create_api_key(name="k")
    assert error_of(exc)["reason"] == (
        "action [cluster:admin/xpack/security/api_key/create] is unauthorized for user [nobody] "
        "with effective roles [nobody_role], this action is granted by the cluster privileges "
        "[manage_own_api_key,manage_api_key,manage_security,all]"
    )


def test_validation_comes_before_authorization(es: Elasticsearch) -> None:
    nobody = user(es, "nobody", ["monitor"])
    with pytest.raises(BadRequestError):
        nobody.security.create_api_key(name="_bad")


# --- derived keys ---------------------------------------------------------------------------------

DERIVED = (
    "creating derived api keys requires an explicit role descriptor that is empty (has no "
    "privileges)"
)


@pytest.mark.parametrize(
    "descriptors",
    [None, {}, {"r": {"cluster": ["monitor"]}}, {"a": {}, "b": {"cluster": ["none"]}}],
)
def test_a_key_may_not_derive_a_key_with_privileges(
    es: Elasticsearch, descriptors: dict[str, Any] | None
) -> None:
    parent = as_key(es, es.security.create_api_key(name="parent"))
    with pytest.raises(BadRequestError) as exc:
        parent.security.create_api_key(name="child", role_descriptors=descriptors)
    error = error_of(exc)
    assert (error["type"], error["reason"]) == ("illegal_argument_exception", DERIVED)


def test_a_key_may_derive_a_key_without_privileges(es: Elasticsearch) -> None:
    parent = as_key(es, es.security.create_api_key(name="parent"))
    child = parent.security.create_api_key(name="child", role_descriptors={"np": {}})
    child_client = as_key(es, child)
    me = child_client.security.authenticate()
    assert (me["username"], me["api_key"]["name"]) == (ADMIN[0], "child")
    answer = child_client.security.has_privileges(cluster=["monitor"])
    assert answer["has_all_requested"] is False


def test_derived_key_is_owned_through_the_api_key_realm(es: Elasticsearch) -> None:
    parent = as_key(es, es.security.create_api_key(name="parent"))
    child = parent.security.create_api_key(name="child", role_descriptors={"np": {}})
    shown = es.security.get_api_key(id=child["id"], with_limited_by=True)["api_keys"][0]
    assert (shown["realm"], shown["realm_type"]) == ("_es_api_key", "_es_api_key")
    assert shown["limited_by"] == [{}]


# --- grant ----------------------------------------------------------------------------------------


def test_grant_by_password_owns_the_key_by_the_named_user(es: Elasticsearch) -> None:
    granter = user(es, "granter", ["grant_api_key"])
    es.security.put_user(username="target", password="target-password", roles=[])
    key = granter.security.grant_api_key(
        grant_type="password",
        username="target",
        password="target-password",
        api_key={"name": "granted"},
    )
    assert as_key(es, key).security.authenticate()["username"] == "target"


def test_grant_with_bad_password_is_403(es: Elasticsearch) -> None:
    granter = user(es, "granter", ["grant_api_key"])
    with pytest.raises(AuthorizationException) as exc:
        granter.security.grant_api_key(
            grant_type="password", username="granter", password="wrong", api_key={"name": "k"}
        )
    error = error_of(exc)
    assert (error["type"], error["reason"]) == (
        "security_exception",
        "Failed to authenticate api key grant",
    )
    assert error["caused_by"]["reason"] == (
        "unable to authenticate user [granter] for action [cluster:admin/xpack/security/api_key/grant]"
    )


def test_grant_validation_texts(es: Elasticsearch) -> None:
    with pytest.raises(BadRequestError) as exc:
        es.security.grant_api_key(grant_type="password", access_token="t", api_key={"name": "k"})
    assert error_of(exc)["reason"] == (
        "Validation Failed: 1: [username] is required for grant_type [password];"
        "2: [password] is required for grant_type [password];"
        "3: [access_token] is not supported for grant_type [password];"
    )


def test_grant_unknown_grant_type(es: Elasticsearch) -> None:
    with pytest.raises(BadRequestError) as exc:
        es.security.grant_api_key(grant_type="magic", api_key={"name": "k"})
    assert error_of(exc)["reason"] == "Validation Failed: 1: grant_type [magic] is not supported;"


def test_grant_run_as_needs_the_run_as_privilege(es: Elasticsearch) -> None:
    es.security.put_user(username="target", password="target-password", roles=[])
    es.security.put_user(username="plain", password="plain-password", roles=[])
    with pytest.raises(AuthorizationException) as exc:
        es.security.grant_api_key(
            grant_type="password",
            username="plain",
            password="plain-password",
            run_as="target",
            api_key={"name": "k"},
        )
    assert error_of(exc)["reason"] == (
        "action [cluster:admin/xpack/security/user/authenticate] is unauthorized for user "
        "[plain] with effective roles [], because user [plain] is unauthorized to run as [target]"
    )
