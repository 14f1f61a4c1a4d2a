"""The KeyAuthority contract, over the fake, the sandbox, or a real cluster when configured.

Every test but the last runs once per backend (``subject``); the last one is about how
``ElasticKeyAuthority`` translates the HTTP client's errors, so it only runs over HTTP.
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from datetime import timedelta
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from rotator.elastic import ElasticKeyAuthority
from rotator.errors import (
    AuthenticationFailed,
    AuthorityRejected,
    AuthorityUnavailable,
    PermissionDenied,
)
from rotator.ports import Credential, KeyAuthority
from rotator.scoping import Grants, role_descriptors, verification_set
from tests.contract.conftest import Cluster, RotatorIdentity, Subject, rotator_role


def grants(identity: RotatorIdentity) -> Grants:
    index = f"logs-{identity.index_prefix}.web-default"
    return Grants.build([], [([index], ["create_doc", "auto_configure"])])


def index(identity: RotatorIdentity, rest: str = ".web-default") -> str:
    return f"logs-{identity.index_prefix}{rest}"


def make_key(port: KeyAuthority, identity: RotatorIdentity, **metadata: Any) -> Credential:
    return port.create(
        "rotator-web-1", 3600, role_descriptors("web", grants(identity)), dict(metadata)
    )


def test_create_get_find_update_verify_invalidate(subject: Subject) -> None:
    port, identity = subject.port, subject.identity
    nonce = str(uuid.uuid4())
    scoped = grants(identity)
    credential = port.create(
        "rotator-web-1",
        3600,
        role_descriptors("web", scoped),
        {"managed_by": "rotator", "source": "web", "rotation_id": nonce},
    )
    assert credential.source == "web"
    assert credential.expiration is not None
    assert credential.api_key not in repr(credential)

    info = port.get([credential.id, "no-such-key-00000000"])
    assert list(info) == [credential.id]
    assert info[credential.id].metadata["rotation_id"] == nonce
    assert "rotator-web" in info[credential.id].role_descriptors

    assert [k.id for k in port.find_by_metadata("rotation_id", nonce)] == [credential.id]

    checks = verification_set("web", scoped)
    answer = port.check_privileges(credential, checks.request_body())
    assert checks.mismatches(answer) == []

    narrower = Grants.build([], [([index(identity)], ["create_doc"])])
    assert port.update(credential.id, role_descriptors("web", narrower)) is True
    assert port.update(credential.id, role_descriptors("web", narrower)) is False

    assert list(port.invalidate([credential.id]).invalidated) == [credential.id]
    assert port.find_by_metadata("rotation_id", nonce, valid_only=True) == []
    assert list(port.invalidate([credential.id]).invalidated) == []
    with pytest.raises(AuthenticationFailed):
        port.check_privileges(credential, checks.request_body())


def test_verification_catches_a_key_broader_than_its_source(subject: Subject) -> None:
    port, identity = subject.port, subject.identity
    wide = Grants.build([], [([index(identity, "*")], ["create_doc"])])
    credential = port.create("rotator-web-2", 3600, role_descriptors("web", wide), {})
    expected = verification_set("web", grants(identity))
    wrong = expected.mismatches(port.check_privileges(credential, expected.request_body()))
    assert any("is missing" in w for w in wrong)  # auto_configure was not given
    port.invalidate([credential.id])


def test_verification_catches_a_broader_pattern_holding_every_privilege(
    subject: Subject,
) -> None:
    """A key granted ``logs-<prefix>*`` passes every must-hold check of the narrow source, and
    must still fail: the indices next to the granted name are writable too."""
    port, identity = subject.port, subject.identity
    wide = Grants.build([], [([index(identity, "*")], ["create_doc", "auto_configure"])])
    credential = port.create("rotator-web-3", 3600, role_descriptors("web", wide), {})
    expected = verification_set("web", grants(identity))
    wrong = expected.mismatches(port.check_privileges(credential, expected.request_body()))
    assert not any("is missing" in w for w in wrong)
    assert any(w.startswith("create_doc on ") and w.endswith("is granted") for w in wrong)
    port.invalidate([credential.id])


def test_the_credential_is_the_id_and_secret_and_expires_after_the_lifetime(
    subject: Subject,
) -> None:
    port = subject.port
    credential = port.create("rotator-web-4", 7200, {}, {"source": "web"})
    assert base64.b64decode(credential.encoded).decode() == f"{credential.id}:{credential.api_key}"
    assert credential.name == "rotator-web-4"
    info = port.get([credential.id])[credential.id]
    assert info.expiration == credential.expiration
    assert info.expiration is not None
    assert abs((info.expiration - info.creation) - timedelta(hours=2)) < timedelta(seconds=2)
    assert info.username == subject.identity.username
    assert info.invalidated is False


def test_metadata_is_matched_as_keywords_along_dotted_paths(subject: Subject) -> None:
    port, identity = subject.port, subject.identity
    tag = str(uuid.uuid4())
    first = make_key(port, identity, tag=tag, generation=5, labels={"team": tag})
    second = make_key(port, identity, tag=tag, generation=6)
    assert [k.id for k in port.find_by_metadata("tag", tag)] == [first.id, second.id]
    assert [k.id for k in port.find_by_metadata("labels.team", tag)] == [first.id]
    found = {k.id for k in port.find_by_metadata("generation", "5")}
    assert first.id in found
    assert second.id not in found
    assert port.find_by_metadata("tag", tag.upper()) == []


def test_an_invalidated_key_stays_visible_and_cannot_be_updated(subject: Subject) -> None:
    port, identity = subject.port, subject.identity
    tag = str(uuid.uuid4())
    credential = make_key(port, identity, tag=tag)
    assert list(port.invalidate([credential.id, credential.id]).invalidated) == [credential.id]
    assert port.get([credential.id])[credential.id].invalidated is True
    assert [k.id for k in port.find_by_metadata("tag", tag)] == [credential.id]
    assert port.find_by_metadata("tag", tag, valid_only=True) == []
    with pytest.raises(AuthorityRejected):
        port.update(credential.id, role_descriptors("web", grants(identity)))


def test_an_expired_key_fails_authentication_and_can_still_be_invalidated(
    subject: Subject,
) -> None:
    port, identity = subject.port, subject.identity
    tag = str(uuid.uuid4())
    credential = port.create(
        "rotator-web-5", 2, role_descriptors("web", grants(identity)), {"tag": tag}
    )
    checks = verification_set("web", grants(identity))
    body = checks.request_body()
    assert checks.mismatches(port.check_privileges(credential, body)) == []
    subject.pass_time(timedelta(seconds=3))
    with pytest.raises(AuthenticationFailed):
        port.check_privileges(credential, body)
    assert port.get([credential.id])[credential.id].invalidated is False
    assert [k.id for k in port.find_by_metadata("tag", tag, valid_only=True)] == [credential.id]
    with pytest.raises(AuthorityRejected):
        port.update(credential.id, {})
    assert list(port.invalidate([credential.id]).invalidated) == [credential.id]


def test_another_users_keys_are_out_of_reach(subject: Subject) -> None:
    port, identity = subject.port, subject.identity
    stranger = subject.stranger()
    tag = str(uuid.uuid4())
    theirs = stranger.create("theirs", 3600, {}, {"tag": tag})
    assert port.get([theirs.id]) == {}
    assert port.find_by_metadata("tag", tag) == []
    assert port.invalidate([theirs.id]).not_found([theirs.id]) == [theirs.id]
    with pytest.raises(AuthorityRejected):
        port.update(theirs.id, role_descriptors("web", grants(identity)))
    assert stranger.get([theirs.id])[theirs.id].invalidated is False
    assert list(stranger.invalidate([theirs.id]).invalidated) == [theirs.id]


def test_a_wrong_secret_or_a_borrowed_credential_fails(subject: Subject) -> None:
    port, identity = subject.port, subject.identity
    mine, other = make_key(port, identity), make_key(port, identity)
    body = {"cluster": ["monitor"]}
    wrong = base64.b64encode(f"{mine.id}:{'x' * 22}".encode()).decode()
    with pytest.raises(AuthenticationFailed) as failed:
        port.check_privileges(dataclasses.replace(mine, encoded=wrong), body)
    assert mine.api_key not in str(failed.value)
    with pytest.raises(AuthorityRejected, match="gave another identity"):
        port.check_privileges(dataclasses.replace(mine, encoded=other.encoded), body)


def test_a_key_holds_its_descriptors_intersected_with_its_owners_role(subject: Subject) -> None:
    port, identity = subject.port, subject.identity
    own = index(identity)
    descriptor = {
        "k": {"cluster": ["monitor"], "indices": [{"names": [own], "privileges": ["write"]}]}
    }
    credential = port.create("rotator-web-6", 3600, descriptor, {})
    answer = port.check_privileges(
        credential,
        {
            "cluster": ["monitor", "manage_own_api_key"],
            "index": [
                {
                    "names": [own],
                    "privileges": ["create_doc", "index", "create", "write", "auto_configure"],
                },
                {"names": [index(identity, ".web-*")], "privileges": ["create_doc"]},
            ],
        },
    )
    assert answer["username"] == identity.username
    assert answer["cluster"] == {"monitor": False, "manage_own_api_key": False}
    assert answer["index"][own] == {
        "create_doc": True,  # both grant it (write implies it)
        "index": False,  # the owner holds create_doc only
        "create": False,
        "write": False,
        "auto_configure": False,  # the key's write does not imply it
    }
    assert answer["index"][index(identity, ".web-*")] == {"create_doc": False}
    assert answer["has_all_requested"] is False


def test_a_key_without_descriptors_holds_its_owners_role(subject: Subject) -> None:
    port, identity = subject.port, subject.identity
    credential = port.create("rotator-web-7", 3600, {}, {})
    answer = port.check_privileges(
        credential,
        {
            "cluster": ["manage_own_api_key", "manage_api_key"],
            "index": [
                {"names": [index(identity, "*")], "privileges": ["create_doc", "auto_configure"]},
                {"names": [index(identity, ".x?z-1")], "privileges": ["create_doc", "delete"]},
                {"names": ["logs-*"], "privileges": ["create_doc"]},
            ],
        },
    )
    assert answer["cluster"] == {"manage_own_api_key": True, "manage_api_key": False}
    assert answer["index"] == {
        index(identity, "*"): {"create_doc": True, "auto_configure": True},
        index(identity, ".x?z-1"): {"create_doc": True, "delete": False},
        "logs-*": {"create_doc": False},
    }


def test_own_privileges_follow_the_owners_role(subject: Subject) -> None:
    identity = subject.identity
    body = {
        "cluster": ["manage_own_api_key", "monitor"],
        "index": [{"names": [index(identity)], "privileges": ["create_doc", "write"]}],
    }
    answer = subject.port.check_own_privileges(body)
    assert answer["username"] == identity.username
    assert answer["cluster"] == {"manage_own_api_key": True, "monitor": False}
    assert answer["index"] == {index(identity): {"create_doc": True, "write": False}}
    role = rotator_role(identity)
    role["cluster"] = ["manage_own_api_key", "monitor"]
    subject.set_role(role)
    assert subject.port.check_own_privileges(body)["cluster"]["monitor"] is True


def test_a_key_keeps_its_owners_role_as_it_was_until_updated(subject: Subject) -> None:
    port, identity = subject.port, subject.identity
    credential = make_key(port, identity)
    body = {"index": [{"names": [index(identity)], "privileges": ["create_doc"]}]}
    assert port.check_privileges(credential, body)["has_all_requested"] is True
    narrowed = rotator_role(identity)
    narrowed["indices"][0]["privileges"] = ["auto_configure"]
    subject.set_role(narrowed)
    assert port.check_privileges(credential, body)["has_all_requested"] is True
    same = role_descriptors("web", grants(identity))
    assert port.update(credential.id, same) is True  # the owner's snapshot changed
    assert port.check_privileges(credential, body)["has_all_requested"] is False
    assert port.update(credential.id, same) is False


def test_requests_elasticsearch_refuses_are_rejected(subject: Subject) -> None:
    port, identity = subject.port, subject.identity
    with pytest.raises(AuthorityRejected):
        port.create("rotator-web-8", 3600, {}, {"_reserved": True})
    with pytest.raises(AuthorityRejected):
        port.create("_rotator", 3600, {}, {})
    unknown = {"k": {"indices": [{"names": [index(identity)], "privileges": ["update"]}]}}
    with pytest.raises(AuthorityRejected):
        port.create("rotator-web-8", 3600, unknown, {})
    with pytest.raises(AuthorityRejected):
        port.update("no-such-key-00000000", {})
    assert list(port.invalidate(["no-such-key-00000000"]).invalidated) == []


def test_an_owner_without_api_key_privileges_is_denied(subject: Subject) -> None:
    role = rotator_role(subject.identity)
    role["cluster"] = []
    subject.set_role(role)
    with pytest.raises(PermissionDenied):
        subject.port.create("rotator-web-9", 3600, {}, {})
    with pytest.raises(PermissionDenied):
        subject.port.find_by_metadata("tag", "x")


def test_errors_are_translated_without_secrets(
    cluster: Cluster, rotator_user: RotatorIdentity
) -> None:
    """HTTP only: the client's 401, 404 and connection errors become rotator's errors."""
    client = cluster.client(basic_auth=(rotator_user.username, "wrong-secret-1"))
    with pytest.raises(AuthenticationFailed) as denied:
        ElasticKeyAuthority(client).whoami()
    assert "wrong-secret-1" not in str(denied.value)
    good = cluster.client(basic_auth=(rotator_user.username, rotator_user.password))
    with pytest.raises(AuthorityRejected):
        ElasticKeyAuthority(good).update("no-such-key-00000000", {})
    offline = ElasticKeyAuthority(Elasticsearch("http://127.0.0.1:9", max_retries=0))
    with pytest.raises(AuthorityUnavailable):
        offline.whoami()
