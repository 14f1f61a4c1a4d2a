"""Query-API parse errors carry the position of the offending token, as Elasticsearch's do.

Elasticsearch references: ``XContentParseException.getMessage`` (``[line:col] `` in front of the
reason; not an ``ElasticsearchException``, so no ``line``/``col`` fields), ``ParsingException``
(``metadataToXContent`` adds ``line`` and ``col``; the reason has no prefix),
``AbstractQueryBuilder.parseInnerQueryBuilder`` (``unknown query [x]`` at the location of the
query body's ``START_OBJECT``), ``ObjectParser`` (``unknown field`` at the field name, ``doesn't
support values of type`` at the value, ``failed to parse field`` at the parser's current token)
and ``TermQueryBuilder.fromXContent`` (an unknown option at its value). Columns are 1-based, as
Jackson's token locations are.
"""

from __future__ import annotations

from typing import Any

import pytest
from elasticsearch import ApiError, Elasticsearch

pytestmark = pytest.mark.usefixtures("clean")


def refused(es: Elasticsearch, text: str, what: str = "api_key") -> dict[str, Any]:
    with pytest.raises(ApiError) as caught:
        es.perform_request(
            "POST",
            f"/_security/_query/{what}",
            headers={"accept": "application/json", "content-type": "application/json"},
            body=text,
        )
    assert caught.value.meta.status == 400
    error: dict[str, Any] = caught.value.body["error"]
    return error


def test_unknown_query_type(es: Elasticsearch) -> None:
    error = refused(es, '{"query":{"foo":{}}}')
    assert error["type"] == "x_content_parse_exception"
    assert error["reason"] == "[1:17] [query_api_key_request_payload] failed to parse field [query]"
    cause = {"type": "parsing_exception", "reason": "unknown query [foo]", "line": 1, "col": 17}
    assert {k: error["caused_by"][k] for k in cause} == cause
    # XContentParseException is no ElasticsearchException: it is its own root cause.
    assert error["root_cause"] == [{"type": error["type"], "reason": error["reason"]}]


def test_unknown_top_level_field_on_a_later_line(es: Elasticsearch) -> None:
    error = refused(es, '{\n  "size": 1,\n  "bogus": 2\n}')
    assert error["type"] == "x_content_parse_exception"
    assert error["reason"] == "[3:3] [query_api_key_request_payload] unknown field [bogus]"
    assert "line" not in error


def test_wrong_value_type(es: Elasticsearch) -> None:
    error = refused(es, '{"size": {}}')
    assert error["reason"] == (
        "[1:10] [query_api_key_request_payload] size doesn't support values of type: START_OBJECT"
    )
    error = refused(es, '{"from": "abc"}')
    assert error["reason"] == "[1:10] [query_api_key_request_payload] failed to parse field [from]"


def test_unknown_option_in_a_query(es: Elasticsearch) -> None:
    text = '{"query": {"bool": {"must": [\n  {"term": {"name": {"value": "x", "bogus": 1}}}]}}}'
    error = refused(es, text)
    assert error["reason"] == "[2:45] [query_api_key_request_payload] failed to parse field [query]"
    cause = error["caused_by"]
    assert (cause["type"], cause["reason"], cause["line"], cause["col"]) == (
        "parsing_exception",
        "[term] query does not support [bogus]",
        2,
        45,
    )


def test_query_role_and_user_errors_are_positioned_too(es: Elasticsearch) -> None:
    error = refused(es, '{"query": {"nope": {}}}', "role")
    assert error["reason"] == "[1:20] [query_role_request_payload] failed to parse field [query]"
    error = refused(es, '{"sort": ["username"], "x": 1}', "user")
    assert error["reason"] == "[1:24] [query_user_request_payload] unknown field [x]"
    error = refused(es, '{"sort": "username"}', "user")
    assert error["reason"] == (
        "[1:10] [query_user_request_payload] sort doesn't support values of type: VALUE_STRING"
    )
