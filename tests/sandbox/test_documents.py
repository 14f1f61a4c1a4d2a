"""Documents: authorization of writes and reads, update/delete/get/search, data streams.

Each test states what Elasticsearch 8.17 does and where that is decided in its sources.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from freezegun import freeze_time

from rotator.sandbox import Sandbox
from tests.sandbox.conftest import ADMIN

IGNORE = [400, 401, 403, 404, 409]
WRITE_GRANTS = "create_doc,create,delete,index,write,all"


@pytest.fixture(autouse=True)
def _clean(clean: None) -> None:
    """Every test starts from an empty sandbox."""


def call(client: Elasticsearch, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Send one request and return (status, body) whatever the status."""
    headers = {"accept": "application/json"}
    payload = body
    if isinstance(body, list):
        headers["content-type"] = "application/x-ndjson"
        payload = "".join(json.dumps(line) + "\n" for line in body)
    elif isinstance(body, str):
        headers["content-type"] = "application/json"
        payload = body.encode()
    elif body is not None:
        headers["content-type"] = "application/json"
    response = client.options(ignore_status=IGNORE).perform_request(
        method, path, headers=headers, body=payload
    )
    return response.meta.status, response.body


def user_with(es: Elasticsearch, sandbox: Sandbox, name: str, indices: list[Any]) -> Elasticsearch:
    """A native user whose single role (named after it) has the given ``indices`` entries."""
    es.security.put_role(name=f"{name}_role", indices=indices)
    es.security.put_user(username=name, password="s3cret-pass", roles=[f"{name}_role"])
    return Elasticsearch(sandbox.url, basic_auth=(name, "s3cret-pass"), request_timeout=10)


def key_with(es: Elasticsearch, sandbox: Sandbox, indices: list[Any]) -> tuple[str, Elasticsearch]:
    """An API key of the admin user limited to ``indices``: its id and a client using it."""
    key = es.security.create_api_key(name="k", role_descriptors={"r": {"indices": indices}})
    client = Elasticsearch(sandbox.url, api_key=key["encoded"], request_timeout=10)
    return key["id"], client


# --- divergence 1: composite writes are authorized by action name first --------------------------


def test_bulk_without_any_write_privilege_is_refused_as_a_whole(
    es: Elasticsearch, sandbox: Sandbox
) -> None:
    """ES: ``RBACEngine.authorizeIndexAction`` checks ``indices:data/write/bulk`` by name only
    (``shouldAuthorizeIndexActionNameOnly``) and answers 403 for the whole request, without
    ``on indices`` (x-pack/plugin/security/.../authz/RBACEngine.java)."""
    reader = user_with(es, sandbox, "reader", [{"names": ["logs-*"], "privileges": ["read"]}])
    status, body = call(reader, "POST", "/_bulk", [{"create": {"_index": "logs-a-b"}}, {"m": 1}])
    assert status == 403
    assert body["error"]["type"] == "security_exception"
    assert body["error"]["reason"] == (
        "action [indices:data/write/bulk] is unauthorized for user [reader] with effective roles "
        f"[reader_role], this action is granted by the index privileges [{WRITE_GRANTS}]"
    )
    key_id, key = key_with(es, sandbox, [{"names": ["logs-*"], "privileges": ["read"]}])
    status, body = call(key, "POST", "/_bulk", [{"create": {"_index": "logs-a-b"}}, {"m": 1}])
    assert status == 403
    assert body["error"]["reason"] == (
        f"action [indices:data/write/bulk] is unauthorized for API key id [{key_id}] of user "
        f"[{ADMIN[0]}], this action is granted by the index privileges [{WRITE_GRANTS}]"
    )


def test_single_write_without_any_write_privilege_is_refused_by_action_name(
    es: Elasticsearch, sandbox: Sandbox
) -> None:
    """ES authorizes ``indices:data/write/index`` (``IndexAction.NAME``) by name only too."""
    reader = user_with(es, sandbox, "reader", [{"names": ["logs-*"], "privileges": ["read"]}])
    status, body = call(reader, "POST", "/logs-a-b/_doc", {"@timestamp": "2025-01-01", "m": 1})
    assert status == 403
    assert body["error"]["reason"] == (
        "action [indices:data/write/index] is unauthorized for user [reader] with effective roles "
        "[reader_role], this action is granted by the index privileges "
        "[create_doc,create,index,write,all]"
    )


def test_bulk_with_write_privilege_elsewhere_fails_per_item(
    es: Elasticsearch, sandbox: Sandbox
) -> None:
    """With a write privilege on some index the request passes; an item for another missing
    index fails alone at auto-create (``TransportBulkAction`` creates indices first)."""
    shipper = user_with(
        es,
        sandbox,
        "shipper",
        [{"names": ["logs-a-*"], "privileges": ["create_doc", "auto_configure"]}],
    )
    ok = {"@timestamp": "2025-01-01T00:00:00Z"}
    status, body = call(
        shipper,
        "POST",
        "/_bulk",
        [{"create": {"_index": "logs-a-x"}}, ok, {"create": {"_index": "logs-b-x"}}, ok],
    )
    assert status == 200
    assert body["errors"] is True
    first, second = body["items"][0]["create"], body["items"][1]["create"]
    assert first["status"] == 201
    assert second["status"] == 403
    assert second["error"]["reason"] == (
        "action [indices:admin/auto_create] is unauthorized for user [shipper] with effective "
        "roles [shipper_role] on indices [logs-b-x], this action is granted by the index "
        "privileges [auto_configure,create_index,manage,all]"
    )


def test_bulk_validation_fails_the_whole_request_before_authorization(es: Elasticsearch) -> None:
    """``BulkRequest.validate`` runs before the security filter: a missing index or id fails the
    whole request with 400 ``action_request_validation_exception``."""
    status, body = call(
        es, "POST", "/_bulk", [{"index": {}}, {"a": 1}, {"delete": {"_index": "x"}}]
    )
    assert status == 400
    assert body["error"]["reason"] == ("Validation Failed: 1: index is missing;2: id is missing;")


# --- divergence 2: update, delete, get, create index, refresh, search ----------------------------


def test_a_create_doc_key_cannot_update_delete_or_read(es: Elasticsearch, sandbox: Sandbox) -> None:
    """ES authorizes bulk items per index with ``indices:data/write/update`` (granted by
    ``index,write,all``) and ``indices:data/write/delete`` (``delete,write,all``); a single
    delete is first checked by action name (``DeleteAction.NAME``); ``_update`` and get are
    authorized on their index (``indices:data/write/update``, ``indices:data/read/get``)."""
    assert call(es, "PUT", "/app-1/_doc/1", {"a": 1})[0] == 201
    key_id, key = key_with(es, sandbox, [{"names": ["app-*"], "privileges": ["create_doc"]}])
    who = f"API key id [{key_id}] of user [{ADMIN[0]}]"
    status, body = call(
        key,
        "POST",
        "/_bulk",
        [
            {"update": {"_index": "app-1", "_id": "1"}},
            {"doc": {"a": 2}},
            {"delete": {"_index": "app-1", "_id": "1"}},
        ],
    )
    assert status == 200
    update, delete = body["items"][0]["update"], body["items"][1]["delete"]
    assert update["status"] == delete["status"] == 403
    assert update["error"]["reason"] == (
        f"action [indices:data/write/update] is unauthorized for {who} on indices [app-1], "
        "this action is granted by the index privileges [index,write,all]"
    )
    assert delete["error"]["reason"] == (
        f"action [indices:data/write/delete] is unauthorized for {who} on indices [app-1], "
        "this action is granted by the index privileges [delete,write,all]"
    )
    status, body = call(key, "POST", "/app-1/_update/1", {"doc": {"a": 3}})
    assert status == 403
    assert body["error"]["reason"] == update["error"]["reason"]
    status, body = call(key, "DELETE", "/app-1/_doc/1")
    assert status == 403
    assert body["error"]["reason"] == (
        f"action [indices:data/write/delete] is unauthorized for {who}, this action is granted "
        "by the index privileges [delete,write,all]"
    )
    status, body = call(key, "GET", "/app-1/_doc/1")
    assert status == 403
    assert body["error"]["reason"] == (
        f"action [indices:data/read/get] is unauthorized for {who} on indices [app-1], this "
        "action is granted by the index privileges [read,all]"
    )
    assert call(es, "GET", "/app-1/_doc/1")[1]["_source"] == {"a": 1}


def test_document_lifecycle_as_elasticsearch_answers_it(es: Elasticsearch) -> None:
    """Bodies of create index, get, update (and noop), delete (and not_found), refresh and a
    minimal search, as the REST docs of those APIs show them."""
    assert call(es, "PUT", "/app-2", {"settings": {}}) == (
        200,
        {"acknowledged": True, "shards_acknowledged": True, "index": "app-2"},
    )
    status, body = call(es, "PUT", "/app-2")
    assert status == 400
    assert body["error"]["type"] == "resource_already_exists_exception"
    assert body["error"]["reason"].startswith("index [app-2/")
    assert call(es, "PUT", "/app-2/_doc/1", {"user": {"name": "Ann"}, "tag": "Blue Sky"})[0] == 201
    status, body = call(es, "POST", "/app-2/_update/1", {"doc": {"user": {"age": 3}}})
    assert (status, body["result"], body["_version"]) == (200, "updated", 2)
    status, body = call(es, "POST", "/app-2/_update/1", {"doc": {"user": {"age": 3}}})
    assert (status, body["result"], body["_shards"]["total"]) == (200, "noop", 0)
    status, body = call(es, "GET", "/app-2/_doc/1")
    assert body["_source"] == {"user": {"name": "Ann", "age": 3}, "tag": "Blue Sky"}
    assert (body["found"], body["_version"]) == (True, 2)
    status, body = call(es, "POST", "/app-2/_update/9", {"doc": {"a": 1}})
    assert (status, body["error"]["type"], body["error"]["reason"]) == (
        404,
        "document_missing_exception",
        "[9]: document missing",
    )
    assert call(es, "POST", "/app-2/_refresh")[1] == {
        "_shards": {"total": 2, "successful": 1, "failed": 0}
    }
    for query, hits in (
        ({"match_all": {}}, 1),
        ({"term": {"tag": "sky"}}, 1),
        ({"term": {"tag.keyword": "Blue Sky"}}, 1),
        ({"term": {"tag.keyword": "sky"}}, 0),
        ({"term": {"user.name": {"value": "ann"}}}, 1),
    ):
        status, body = call(es, "POST", "/app-2/_search", {"query": query})
        assert status == 200
        assert body["hits"]["total"] == {"value": hits, "relation": "eq"}, query
    assert body["hits"]["hits"][0]["_source"]["user"]["name"] == "Ann"
    assert call(es, "DELETE", "/app-2/_doc/1")[1]["result"] == "deleted"
    status, body = call(es, "DELETE", "/app-2/_doc/1")
    assert (status, body["result"]) == (404, "not_found")
    assert call(es, "GET", "/app-2/_doc/1") == (
        404,
        {"_index": "app-2", "_id": "1", "found": False},
    )


def test_bulk_update_and_delete_items(es: Elasticsearch) -> None:
    """Bulk ``update`` answers 200 ``updated`` (or 404 ``document_missing_exception``), ``delete``
    200 ``deleted`` or 404 ``not_found``."""
    status, body = call(
        es,
        "POST",
        "/_bulk",
        [
            {"index": {"_index": "app-3", "_id": "1"}},
            {"n": 1},
            {"update": {"_index": "app-3", "_id": "1"}},
            {"doc": {"n": 2}},
            {"update": {"_index": "app-3", "_id": "2"}},
            {"doc": {"n": 2}},
            {"delete": {"_index": "app-3", "_id": "1"}},
            {"delete": {"_index": "app-3", "_id": "1"}},
        ],
    )
    assert status == 200
    items = [(next(iter(i)), next(iter(i.values()))) for i in body["items"]]
    assert [(op, item["status"], item.get("result")) for op, item in items] == [
        ("index", 201, "created"),
        ("update", 200, "updated"),
        ("update", 404, None),
        ("delete", 200, "deleted"),
        ("delete", 404, "not_found"),
    ]
    assert items[2][1]["error"]["type"] == "document_missing_exception"


def test_search_wildcards_drop_indices_the_caller_may_not_read(
    es: Elasticsearch, sandbox: Sandbox
) -> None:
    """Authorized wildcard expressions resolve only to indices the caller may read; a concrete
    one it may not read is 403 ``indices:data/read/search`` granted by ``read,all``."""
    for index in ("app-a", "other-b"):
        call(es, "PUT", f"/{index}/_doc/1", {"x": 1})
    reader = user_with(es, sandbox, "reader", [{"names": ["app-*"], "privileges": ["read"]}])
    status, body = call(reader, "GET", "/*/_search")
    assert status == 200
    assert [h["_index"] for h in body["hits"]["hits"]] == ["app-a"]
    status, body = call(reader, "GET", "/other-b/_search")
    assert status == 403
    assert body["error"]["reason"].endswith(
        "on indices [other-b], this action is granted by the index privileges [read,all]"
    )
    assert call(reader, "GET", "/app-a/_count")[1]["count"] == 1


# --- divergence 3: data streams need @timestamp unless a pipeline sets it ------------------------


def test_data_stream_document_without_timestamp_is_refused(es: Elasticsearch) -> None:
    """ES: ``DataStreamTimestampFieldMapper.postParse`` throws ``data stream timestamp field
    [@timestamp] is missing``, wrapped by ``DocumentParser`` as a 400
    ``document_parsing_exception`` ("[line:col] failed to parse: ..."). metrics-*-* has no
    default pipeline (x-pack/.../template-resources/.../metrics@settings.json)."""
    status, body = call(es, "POST", "/metrics-app-default/_doc", '{"cpu": 1}')
    assert status == 400
    assert body["error"]["type"] == "document_parsing_exception"
    assert body["error"]["reason"] == (
        "[1:10] failed to parse: data stream timestamp field [@timestamp] is missing"
    )
    assert body["error"]["caused_by"] == {
        "type": "illegal_argument_exception",
        "reason": "data stream timestamp field [@timestamp] is missing",
    }
    status, body = call(
        es, "POST", "/_bulk", [{"create": {"_index": "metrics-app-default"}}, {"cpu": 1}]
    )
    assert body["items"][0]["create"]["status"] == 400
    assert body["items"][0]["create"]["error"]["type"] == "document_parsing_exception"


def test_logs_default_pipeline_sets_the_timestamp(es: Elasticsearch) -> None:
    """logs-*-* data streams use ``logs@default-pipeline`` (logs@settings.json), whose ``set``
    processor copies ``_ingest.timestamp`` into a missing ``@timestamp``."""
    with freeze_time("2025-01-01T00:00:00.123Z"):
        status, body = call(es, "PUT", "/logs-app-default/_create/1", {"m": "x"})
    assert status == 201
    assert body["_index"] == ".ds-logs-app-default-2025.01.01-000001"
    source = call(es, "GET", "/logs-app-default/_doc/1")[1]["_source"]
    assert source == {"m": "x", "@timestamp": "2025-01-01T00:00:00.123Z"}
