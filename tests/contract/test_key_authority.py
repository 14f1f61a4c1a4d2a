"""The KeyAuthority port (rotator.elastic) against the sandbox, or a real cluster when configured."""

from __future__ import annotations

import uuid

import pytest
from elasticsearch import Elasticsearch

from rotator.elastic import ElasticKeyAuthority
from rotator.errors import AuthenticationFailed, AuthorityRejected, AuthorityUnavailable
from rotator.scoping import Grants, role_descriptors, verification_set
from tests.contract.conftest import Cluster, RotatorIdentity


def authority(cluster: Cluster, identity: RotatorIdentity) -> ElasticKeyAuthority:
    return ElasticKeyAuthority(cluster.client(basic_auth=(identity.username, identity.password)))


def grants(identity: RotatorIdentity) -> Grants:
    index = f"logs-{identity.index_prefix}.web-default"
    return Grants.build([], [([index], ["create_doc", "auto_configure"])])


def test_create_get_find_update_verify_invalidate(
    cluster: Cluster, rotator_user: RotatorIdentity
) -> None:
    port = authority(cluster, rotator_user)
    nonce = str(uuid.uuid4())
    scoped = grants(rotator_user)
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

    narrower = Grants.build(
        [], [([f"logs-{rotator_user.index_prefix}.web-default"], ["create_doc"])]
    )
    assert port.update(credential.id, role_descriptors("web", narrower)) is True
    assert port.update(credential.id, role_descriptors("web", narrower)) is False

    assert port.invalidate([credential.id]) == [credential.id]
    assert port.find_by_metadata("rotation_id", nonce, valid_only=True) == []
    assert port.invalidate([credential.id]) == []
    with pytest.raises(AuthenticationFailed):
        port.check_privileges(credential, checks.request_body())


def test_verification_catches_a_key_broader_than_its_source(
    cluster: Cluster, rotator_user: RotatorIdentity
) -> None:
    port = authority(cluster, rotator_user)
    wide = Grants.build([], [([f"logs-{rotator_user.index_prefix}*"], ["create_doc"])])
    credential = port.create("rotator-web-2", 3600, role_descriptors("web", wide), {})
    expected = verification_set("web", grants(rotator_user))
    wrong = expected.mismatches(port.check_privileges(credential, expected.request_body()))
    assert any("is missing" in w for w in wrong)  # auto_configure was not given
    port.invalidate([credential.id])


def test_verification_catches_a_broader_pattern_holding_every_privilege(
    cluster: Cluster, rotator_user: RotatorIdentity
) -> None:
    """A key granted ``logs-<prefix>*`` passes every must-hold check of the narrow source, and
    must still fail: the indices next to the granted name are writable too."""
    port = authority(cluster, rotator_user)
    wide = Grants.build(
        [], [([f"logs-{rotator_user.index_prefix}*"], ["create_doc", "auto_configure"])]
    )
    credential = port.create("rotator-web-3", 3600, role_descriptors("web", wide), {})
    expected = verification_set("web", grants(rotator_user))
    wrong = expected.mismatches(port.check_privileges(credential, expected.request_body()))
    assert not any("is missing" in w for w in wrong)
    assert any(w.startswith("create_doc on ") and w.endswith("is granted") for w in wrong)
    port.invalidate([credential.id])


def test_errors_are_translated_without_secrets(
    cluster: Cluster, rotator_user: RotatorIdentity
) -> None:
    bad = ElasticKeyAuthority(cluster.client(basic_auth=(rotator_user.username, "wrong-secret-1")))
    with pytest.raises(AuthenticationFailed) as denied:
        bad.whoami()
    assert "wrong-secret-1" not in str(denied.value)
    with pytest.raises(AuthorityRejected):
        authority(cluster, rotator_user).update("no-such-key-00000000", {})
    offline = ElasticKeyAuthority(Elasticsearch("http://127.0.0.1:9", max_retries=0))
    with pytest.raises(AuthorityUnavailable):
        offline.whoami()
