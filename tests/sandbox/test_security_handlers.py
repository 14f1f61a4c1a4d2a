"""Users, roles, application privileges, tokens, _authenticate and _has_privileges over HTTP."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from elasticsearch import (
    AuthenticationException,
    AuthorizationException,
    BadRequestError,
    Elasticsearch,
    NotFoundError,
)

from rotator.sandbox import Sandbox
from tests.sandbox.conftest import ADMIN

pytestmark = pytest.mark.usefixtures("clean")
INVALID_USER_NAME = (
    "User names must be at least 1 and no more than 1024 characters. They can contain "
    "alphanumeric characters (a-z, A-Z, 0-9), spaces, punctuation, and printable symbols in the "
    "Basic Latin (ASCII) block. Leading or trailing whitespace is not allowed."
)


def reason(exc: Any) -> str:
    return str(exc.value.body["error"]["reason"])


def login(es: Elasticsearch, name: str) -> Elasticsearch:
    return es.options(basic_auth=(name, f"{name}-password"))


def make_user(es: Elasticsearch, name: str, *roles: str, **extra: Any) -> Elasticsearch:
    es.security.put_user(username=name, password=f"{name}-password", roles=list(roles), **extra)
    return login(es, name)


# --- _authenticate and _has_privileges ------------------------------------------------------------


def test_authenticate_native_user(es: Elasticsearch) -> None:
    me = make_user(es, "native", "missing", full_name="N", email="n@x", metadata={"k": 1})
    assert me.security.authenticate().body == {
        "username": "native",
        "roles": ["missing"],
        "full_name": "N",
        "email": "n@x",
        "metadata": {"k": 1},
        "enabled": True,
        "authentication_realm": {"name": "default_native", "type": "native"},
        "lookup_realm": {"name": "default_native", "type": "native"},
        "authentication_type": "realm",
    }


def test_has_privileges_for_own_account_only(es: Elasticsearch) -> None:
    es.security.put_role(name="mon", cluster=["monitor"])
    me = make_user(es, "checker", "mon")
    answer = me.security.has_privileges(user="checker", cluster=["monitor", "manage"]).body
    assert answer == {
        "username": "checker",
        "has_all_requested": False,
        "cluster": {"monitor": True, "manage": False},
        "index": {},
        "application": {},
    }
    with pytest.raises(BadRequestError) as exc:
        me.security.has_privileges(user="someone_else", cluster=["monitor"])
    assert reason(exc) == "users may only check the privileges of their own account"


def test_has_privileges_as_api_key_reports_owner(es: Elasticsearch) -> None:
    key = es.security.create_api_key(name="k", role_descriptors={"r": {"cluster": ["monitor"]}})
    answer = es.options(api_key=key["encoded"]).security.has_privileges(cluster=["monitor", "all"])
    assert answer["username"] == ADMIN[0]
    assert answer["cluster"] == {"monitor": True, "all": False}


# --- users ----------------------------------------------------------------------------------------


def test_put_user_created_then_updated_keeps_password(es: Elasticsearch) -> None:
    assert es.security.put_user(username="u", password="u-password", roles=[])["created"] is True
    assert es.security.put_user(username="u", roles=["x"], full_name="U")["created"] is False
    assert login(es, "u").security.authenticate()["full_name"] == "U"


def test_new_user_needs_a_password(es: Elasticsearch) -> None:
    with pytest.raises(BadRequestError) as exc:
        es.security.put_user(username="u", roles=[])
    assert exc.value.body["error"]["type"] == "validation_exception"
    assert reason(exc) == (
        "Validation Failed: 1: password must be specified unless you are updating an existing user;"
    )


def test_short_password(es: Elasticsearch) -> None:
    with pytest.raises(BadRequestError) as exc:
        es.security.put_user(username="u", password="12345", roles=[])
    assert reason(exc) == "Validation Failed: 1: passwords must be at least [6] characters long;"


def test_put_user_validation_texts(es: Elasticsearch) -> None:
    with pytest.raises(BadRequestError) as exc:
        es.security.put_user(username="u", password="u-password")
    assert reason(exc) == "Validation Failed: 1: roles are missing;"
    with pytest.raises(BadRequestError) as exc:
        es.security.put_user(username="u", password="u-password", roles=[], metadata={"_x": 1})
    assert reason(exc) == "Validation Failed: 1: metadata keys may not start with [_];"
    with pytest.raises(BadRequestError) as exc:
        es.security.put_user(username=" lead", password="u-password", roles=[])
    assert reason(exc) == f"Validation Failed: 1: {INVALID_USER_NAME};"
    with pytest.raises(BadRequestError) as exc:
        es.security.put_user(username="elastic", password="u-password", roles=[])
    assert reason(exc) == (
        "Validation Failed: 1: user [elastic] is reserved and only the password can be changed;"
    )


def test_put_user_unknown_field(es: Elasticsearch) -> None:
    with pytest.raises(BadRequestError) as exc:
        es.security.put_user(username="u", body={"password": "u-password", "roles": [], "x": 1})
    assert exc.value.body["error"]["type"] == "parse_exception"
    assert reason(exc) == "failed to parse add user request. unexpected field [x]"


def test_put_user_needs_manage_security(es: Elasticsearch) -> None:
    plain = make_user(es, "plain")
    with pytest.raises(AuthorizationException) as exc:
        plain.security.put_user(username="other", password="o-password", roles=[])
    assert reason(exc) == (
        "action [cluster:admin/xpack/security/user/put] is unauthorized for user [plain] with "
        "effective roles [], this action is granted by the cluster privileges "
        "[manage_security,all]"
    )


def test_get_and_delete_users(es: Elasticsearch) -> None:
    make_user(es, "a")
    users = es.security.get_user().body
    assert set(users) == {"elastic", "a"}
    assert users["elastic"]["metadata"] == {"_reserved": True}
    assert users["a"] == {
        "username": "a",
        "roles": [],
        "full_name": None,
        "email": None,
        "metadata": {},
        "enabled": True,
    }
    assert es.security.delete_user(username="a")["found"] is True
    with pytest.raises(NotFoundError) as exc:
        es.security.delete_user(username="a")
    assert exc.value.body == {"found": False}
    with pytest.raises(NotFoundError):
        es.security.get_user(username="a")


def test_reserved_user_cannot_be_deleted(es: Elasticsearch) -> None:
    with pytest.raises(BadRequestError) as exc:
        es.security.delete_user(username="elastic")
    assert reason(exc) == "user [elastic] is reserved and cannot be deleted"


def test_deleted_user_no_longer_authenticates(es: Elasticsearch) -> None:
    gone = make_user(es, "gone")
    es.security.delete_user(username="gone")
    with pytest.raises(AuthenticationException):
        gone.security.authenticate()


def test_disabled_user_cannot_authenticate(es: Elasticsearch) -> None:
    user = make_user(es, "d")
    es.security.disable_user(username="d")
    with pytest.raises(AuthenticationException):
        user.security.authenticate()
    es.security.enable_user(username="d")
    assert user.security.authenticate()["username"] == "d"


def test_change_own_password(es: Elasticsearch) -> None:
    user = make_user(es, "c")
    user.security.change_password(password="new-password")
    assert es.options(basic_auth=("c", "new-password")).security.authenticate()["username"] == "c"


# --- roles ----------------------------------------------------------------------------------------


def test_roles_crud(es: Elasticsearch) -> None:
    assert es.security.put_role(name="r", cluster=["monitor"]).body == {"role": {"created": True}}
    assert es.security.put_role(name="r", cluster=["manage"]).body == {"role": {"created": False}}
    assert es.security.get_role(name="r")["r"]["cluster"] == ["manage"]
    assert "superuser" in es.security.get_role().body
    assert es.security.delete_role(name="r").body == {"found": True}
    with pytest.raises(NotFoundError) as exc:
        es.security.get_role(name="r")
    assert exc.value.body == {}


def test_reserved_role(es: Elasticsearch) -> None:
    with pytest.raises(BadRequestError) as exc:
        es.security.put_role(name="superuser", cluster=["all"])
    assert reason(exc) == "Validation Failed: 1: Role [superuser] is reserved and may not be used.;"
    with pytest.raises(BadRequestError) as exc:
        es.security.delete_role(name="superuser")
    assert reason(exc) == "role [superuser] is reserved and cannot be deleted"


def test_role_change_applies_to_the_next_request(es: Elasticsearch) -> None:
    es.security.put_role(name="r", cluster=[])
    user = make_user(es, "u", "r")
    with pytest.raises(AuthorizationException):
        user.security.get_user()
    es.security.put_role(name="r", cluster=["read_security"])
    assert "u" in user.security.get_user()


# --- application privileges -----------------------------------------------------------------------


def test_application_privileges_crud(es: Elasticsearch) -> None:
    body = {"app": {"read": {"actions": ["data:read/*"]}, "write": {"actions": ["data:write/*"]}}}
    created = es.security.put_privileges(privileges=body).body
    assert created == {"app": {"read": {"created": True}, "write": {"created": True}}}
    assert es.security.get_privileges(application="app", name="read").body == {
        "app": {
            "read": {
                "application": "app",
                "name": "read",
                "actions": ["data:read/*"],
                "metadata": {},
            }
        }
    }
    deleted = es.security.delete_privileges(application="app", name="read,write").body
    assert deleted == {"app": {"read": {"found": True}, "write": {"found": True}}}
    with pytest.raises(NotFoundError):
        es.security.get_privileges(application="app")


# --- tokens ---------------------------------------------------------------------------------------


def test_password_grant_response(es: Elasticsearch) -> None:
    make_user(es, "t")
    token = es.security.get_token(grant_type="password", username="t", password="t-password").body
    assert list(token) == ["access_token", "type", "expires_in", "refresh_token", "authentication"]
    assert (token["type"], token["expires_in"]) == ("Bearer", 1200)
    assert token["authentication"]["username"] == "t"
    me = es.options(bearer_auth=token["access_token"]).security.authenticate()
    assert (me["username"], me["authentication_type"]) == ("t", "token")


def test_password_grant_with_bad_password_is_401(es: Elasticsearch) -> None:
    make_user(es, "t")
    with pytest.raises(AuthenticationException) as exc:
        es.security.get_token(grant_type="password", username="t", password="nope-nope")
    assert reason(exc) == (
        "unable to authenticate user [t] for action [cluster:admin/xpack/security/token/create]"
    )


def test_token_request_errors_are_oauth2_shaped(es: Elasticsearch) -> None:
    with pytest.raises(BadRequestError) as exc:
        es.security.get_token(grant_type="password", username="t")
    assert exc.value.body == {
        "error": "invalid_request",
        "error_description": "Validation Failed: 1: password is missing;",
    }
    with pytest.raises(BadRequestError) as exc:
        es.security.get_token(grant_type="magic")
    assert exc.value.body["error"] == "unsupported_grant_type"


def test_refresh_token_is_single_use(es: Elasticsearch) -> None:
    make_user(es, "t")
    first = es.security.get_token(grant_type="password", username="t", password="t-password")
    second = es.security.get_token(grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert second["access_token"] != first["access_token"]
    with pytest.raises(BadRequestError) as exc:
        es.security.get_token(grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert exc.value.body == {
        "error": "invalid_grant",
        "error_description": "could not refresh the requested token",
    }


def test_invalidate_token(sandbox: Sandbox, es: Elasticsearch) -> None:
    token = es.security.get_token(grant_type="client_credentials")["access_token"]
    result = es.security.invalidate_token(token=token).body
    assert result == {"invalidated_tokens": 1, "previously_invalidated_tokens": 0, "error_count": 0}
    with pytest.raises(AuthenticationException):
        es.options(bearer_auth=token).security.authenticate()
    with pytest.raises(NotFoundError):
        es.security.invalidate_token(token="unknown")


def test_tokens_expire_after_twenty_minutes(sandbox: Sandbox, es: Elasticsearch) -> None:
    token = es.security.get_token(grant_type="client_credentials")["access_token"]
    sandbox.advance(timedelta(minutes=19))
    assert es.options(bearer_auth=token).security.authenticate()["authentication_type"] == "token"
    sandbox.advance(timedelta(minutes=1))
    with pytest.raises(AuthenticationException):
        es.options(bearer_auth=token).security.authenticate()


# --- clear cache ----------------------------------------------------------------------------------


def test_clear_api_key_cache_answers_for_one_node(es: Elasticsearch) -> None:
    body = es.security.clear_api_key_cache(ids="*").body
    assert body["_nodes"] == {"total": 1, "successful": 1, "failed": 0}
    assert len(body["nodes"]) == 1
