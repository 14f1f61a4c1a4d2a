"""The Query API keys engine: query types, fields, errors, sort and paging, aggregations."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rotator.sandbox.keyindex import KeyIndex, QueryDoc
from rotator.sandbox.query import QueryError, QueryResult, execute_query
from rotator.sandbox.query_dates import format_date, parse_date
from rotator.sandbox.query_sort import LONG_MAX, LONG_MIN

NOW = 1_700_000_000_000  # 2023-11-14T22:13:20.000Z
DAY = 86_400_000


def key(seq: int, **kw: Any) -> QueryDoc:
    fields: dict[str, Any] = {
        "id": f"k{seq}",
        "name": f"key-{seq}",
        "type": "rest",
        "creation": NOW - (10 - seq) * DAY,
        "expiration": None,
        "invalidated": False,
        "invalidation": None,
        "username": "alice",
        "realm_name": "native1",
        "metadata": {},
        "seq": seq,
    }
    fields.update(kw)
    return QueryDoc(**fields)


KEYS = [
    key(
        1,
        name="alpha-key",
        expiration=NOW + 10 * DAY,
        metadata={"env": "prod", "team": "a", "n": 1},
    ),
    key(
        2,
        name="beta-key",
        expiration=NOW + DAY,
        username="bob",
        metadata={"env": "dev", "tags": ["x", "y"]},
    ),
    key(
        3,
        name="gamma-key",
        type="cross_cluster",
        invalidated=True,
        invalidation=NOW - DAY,
        realm_name="file1",
        metadata={"env": "prod", "nested": {"deep": "v"}},
    ),
    key(4, name="Delta-Key", expiration=NOW - DAY, username="carol"),
    key(5, name=None, expiration=NOW + 10 * DAY, username="bob", metadata={"managed": True}),
]


@pytest.fixture
def index() -> KeyIndex:
    return KeyIndex(KEYS)


def run(index: KeyIndex, body: dict[str, Any] | None, **kw: Any) -> QueryResult:
    return execute_query(index, body, now_ms=NOW, **kw)


def ids(result: QueryResult) -> list[str]:
    return [d.id for d, _ in result.hits]


def sorts(result: QueryResult) -> list[list[Any] | None]:
    return [s for _, s in result.hits]


# -- query types and field translations ---------------------------------------------------


QUERIES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("match_all", {"match_all": {}}, ["k1", "k2", "k3", "k4", "k5"]),
    ("ids", {"ids": {"values": ["k2", "k9", "k4"]}}, ["k2", "k4"]),
    ("term name", {"term": {"name": "beta-key"}}, ["k2"]),
    ("term name object", {"term": {"name": {"value": "beta-key", "boost": 2}}}, ["k2"]),
    ("term is case sensitive", {"term": {"name": "delta-key"}}, []),
    (
        "term case_insensitive",
        {"term": {"name": {"value": "delta-key", "case_insensitive": True}}},
        ["k4"],
    ),
    ("term username", {"term": {"username": "bob"}}, ["k2", "k5"]),
    ("term realm_name", {"term": {"realm_name": "file1"}}, ["k3"]),
    ("term type", {"term": {"type": "cross_cluster"}}, ["k3"]),
    ("term invalidated", {"term": {"invalidated": True}}, ["k3"]),
    ("term invalidated string", {"term": {"invalidated": "false"}}, ["k1", "k2", "k4", "k5"]),
    ("term creation ms", {"term": {"creation": NOW - 8 * DAY}}, ["k2"]),
    ("term invalidation", {"term": {"invalidation": str(NOW - DAY)}}, ["k3"]),
    ("term metadata sub", {"term": {"metadata.env": "prod"}}, ["k1", "k3"]),
    ("term metadata number", {"term": {"metadata.n": 1}}, ["k1"]),
    ("term metadata boolean", {"term": {"metadata.managed": True}}, ["k5"]),
    ("term metadata array", {"term": {"metadata.tags": "y"}}, ["k2"]),
    ("term metadata nested", {"term": {"metadata.nested.deep": "v"}}, ["k3"]),
    ("term metadata root", {"term": {"metadata": "dev"}}, ["k2"]),
    ("terms", {"terms": {"username": ["bob", "carol"]}}, ["k2", "k4", "k5"]),
    ("terms empty", {"terms": {"username": []}}, []),
    ("terms boolean", {"terms": {"invalidated": [True]}}, ["k3"]),
    ("terms dates", {"terms": {"expiration": [NOW + DAY, NOW - DAY]}}, ["k2", "k4"]),
    ("prefix", {"prefix": {"name": "al"}}, ["k1"]),
    ("prefix object", {"prefix": {"name": {"value": "DEL", "case_insensitive": True}}}, ["k4"]),
    ("prefix metadata", {"prefix": {"metadata.env": "pr"}}, ["k1", "k3"]),
    ("wildcard star", {"wildcard": {"name": "*a-key"}}, ["k1", "k2", "k3"]),
    ("wildcard question", {"wildcard": {"name": {"value": "b?ta-*"}}}, ["k2"]),
    ("wildcard field key", {"wildcard": {"name": {"wildcard": "*key"}}}, ["k1", "k2", "k3"]),
    (
        "wildcard case_insensitive",
        {"wildcard": {"name": {"value": "*KEY", "case_insensitive": True}}},
        ["k1", "k2", "k3", "k4"],
    ),
    ("wildcard escape", {"wildcard": {"name": "alpha\\-key"}}, ["k1"]),
    ("exists expiration", {"exists": {"field": "expiration"}}, ["k1", "k2", "k4", "k5"]),
    ("exists invalidation", {"exists": {"field": "invalidation"}}, ["k3"]),
    ("exists name", {"exists": {"field": "name"}}, ["k1", "k2", "k3", "k4"]),
    ("exists type", {"exists": {"field": "type"}}, ["k1", "k2", "k3", "k4", "k5"]),
    ("exists metadata sub", {"exists": {"field": "metadata.tags"}}, ["k2"]),
    ("exists metadata root", {"exists": {"field": "metadata"}}, ["k1", "k2", "k3", "k5"]),
    ("range gt now", {"range": {"expiration": {"gt": "now"}}}, ["k1", "k2", "k5"]),
    ("range lte now", {"range": {"expiration": {"lte": "now"}}}, ["k4"]),
    (
        "range date math",
        {"range": {"expiration": {"gte": "now+2d", "lt": "now+11d"}}},
        ["k1", "k5"],
    ),
    ("range rounding lte", {"range": {"expiration": {"lte": "now+1d/d"}}}, ["k2", "k4"]),
    ("range rounding gt", {"range": {"expiration": {"gt": "now+1d/d"}}}, ["k1", "k5"]),
    ("range epoch ms", {"range": {"creation": {"gte": NOW - 7 * DAY}}}, ["k3", "k4", "k5"]),
    ("range epoch string", {"range": {"creation": {"lt": str(NOW - 8 * DAY)}}}, ["k1"]),
    (
        "range with format",
        {"range": {"creation": {"gte": "2023-11-08", "format": "yyyy-MM-dd"}}},
        ["k4", "k5"],
    ),
    (
        "range iso format",
        {
            "range": {
                "creation": {"lt": "2023-11-06T22:13:20Z", "format": "strict_date_optional_time"}
            }
        },
        ["k1"],
    ),
    (
        "range time zone",
        {
            "range": {
                "creation": {"gte": "2023-11-09", "format": "yyyy-MM-dd", "time_zone": "+02:00"}
            }
        },
        ["k4", "k5"],
    ),
    (
        "range from/to",
        {"range": {"creation": {"from": NOW - 8 * DAY, "to": NOW - 7 * DAY}}},
        ["k2", "k3"],
    ),
    (
        "range include_upper false",
        {
            "range": {
                "creation": {"from": NOW - 8 * DAY, "to": NOW - 7 * DAY, "include_upper": False}
            }
        },
        ["k2"],
    ),
    ("range name", {"range": {"name": {"gte": "b", "lt": "g"}}}, ["k2"]),
    ("range username", {"range": {"username": {"gt": "alice"}}}, ["k2", "k4", "k5"]),
    ("range metadata", {"range": {"metadata.env": {"lte": "dev"}}}, ["k2"]),
    ("range boolean", {"range": {"invalidated": {"gt": False}}}, ["k3"]),
    ("range invalidation", {"range": {"invalidation": {"gte": "now-2d"}}}, ["k3"]),
    ("match keyword", {"match": {"name": "beta-key"}}, ["k2"]),
    ("match is whole value", {"match": {"name": "beta"}}, []),
    ("match object", {"match": {"username": {"query": "bob", "operator": "and"}}}, ["k2", "k5"]),
    ("match fuzziness", {"match": {"name": {"query": "betta-key", "fuzziness": 1}}}, ["k2"]),
    (
        "match fuzziness auto",
        {"match": {"name": {"query": "btea-key", "fuzziness": "AUTO"}}},
        ["k2"],
    ),
    ("match boolean", {"match": {"invalidated": "true"}}, ["k3"]),
    ("match date", {"match": {"expiration": NOW + DAY}}, ["k2"]),
    ("match lenient", {"match": {"expiration": {"query": "soon", "lenient": True}}}, []),
    ("match metadata", {"match": {"metadata.team": "a"}}, ["k1"]),
    ("sqs default fields", {"simple_query_string": {"query": "bob"}}, ["k2", "k5"]),
    ("sqs or", {"simple_query_string": {"query": "carol | file1"}}, ["k3", "k4"]),
    ("sqs whitespace is or", {"simple_query_string": {"query": "carol file1"}}, ["k3", "k4"]),
    ("sqs and", {"simple_query_string": {"query": "bob + dev"}}, ["k2"]),
    (
        "sqs default_operator and",
        {"simple_query_string": {"query": "bob dev", "default_operator": "AND"}},
        ["k2"],
    ),
    (
        "sqs not",
        {"simple_query_string": {"query": "-bob", "fields": ["username"]}},
        ["k1", "k3", "k4"],
    ),
    ("sqs prefix", {"simple_query_string": {"query": "gam*"}}, ["k3"]),
    ("sqs phrase", {"simple_query_string": {"query": '"alpha-key"'}}, ["k1"]),
    ("sqs fuzzy", {"simple_query_string": {"query": "alpah-key~1"}}, ["k1"]),
    (
        "sqs precedence",
        {"simple_query_string": {"query": "(bob | carol) + rest"}},
        ["k2", "k4", "k5"],
    ),
    (
        "sqs field",
        {"simple_query_string": {"query": "prod", "fields": ["metadata.env"]}},
        ["k1", "k3"],
    ),
    ("sqs field pattern", {"simple_query_string": {"query": "key*", "fields": ["na*"]}}, []),
    (
        "sqs root metadata pattern",
        {"simple_query_string": {"query": "v", "fields": ["meta*"]}},
        ["k3"],
    ),
    (
        "sqs sub-field pattern matches none",
        {"simple_query_string": {"query": "v", "fields": ["metadata.*"]}},
        [],
    ),
    ("sqs disallowed field", {"simple_query_string": {"query": "k1", "fields": ["id"]}}, []),
    ("sqs date term", {"simple_query_string": {"query": str(NOW + DAY)}}, ["k2"]),
    ("sqs boolean term", {"simple_query_string": {"query": "true"}}, ["k3", "k5"]),
    ("sqs star", {"simple_query_string": {"query": "*"}}, ["k1", "k2", "k3", "k4", "k5"]),
    ("sqs empty", {"simple_query_string": {"query": "  "}}, []),
    (
        "sqs flags disable or",
        {"simple_query_string": {"query": "carol|file1", "flags": "AND|NOT"}},
        [],
    ),
    (
        "sqs minimum_should_match",
        {"simple_query_string": {"query": "bob dev native1", "minimum_should_match": "2"}},
        ["k2", "k5"],
    ),
    (
        "bool must filter must_not",
        {
            "bool": {
                "must": {"term": {"username": "bob"}},
                "filter": [{"exists": {"field": "name"}}],
                "must_not": [{"term": {"invalidated": True}}],
            }
        },
        ["k2"],
    ),
    (
        "bool should only",
        {
            "bool": {
                "should": [{"term": {"username": "carol"}}, {"term": {"type": "cross_cluster"}}]
            }
        },
        ["k3", "k4"],
    ),
    (
        "bool should optional beside must",
        {"bool": {"must": [{"term": {"username": "bob"}}], "should": [{"term": {"name": "x"}}]}},
        ["k2", "k5"],
    ),
    (
        "bool should required in filter context",
        {
            "bool": {
                "filter": {
                    "bool": {
                        "must": [{"term": {"username": "bob"}}],
                        "should": [{"term": {"name": "beta-key"}}],
                    }
                }
            }
        },
        ["k2"],
    ),
    (
        "bool minimum_should_match",
        {
            "bool": {
                "should": [
                    {"term": {"username": "bob"}},
                    {"term": {"metadata.env": "dev"}},
                    {"exists": {"field": "name"}},
                ],
                "minimum_should_match": 2,
            }
        },
        ["k2"],
    ),
    (
        "bool minimum_should_match percent",
        {
            "bool": {
                "should": [{"term": {"username": "bob"}}, {"exists": {"field": "name"}}],
                "minimum_should_match": "100%",
            }
        },
        ["k2"],
    ),
    (
        "bool minimum_should_match negative",
        {
            "bool": {
                "should": [{"term": {"username": "bob"}}, {"exists": {"field": "name"}}],
                "minimum_should_match": "-1",
            }
        },
        ["k1", "k2", "k3", "k4", "k5"],
    ),
    ("bool pure must_not", {"bool": {"must_not": {"exists": {"field": "expiration"}}}}, ["k3"]),
    ("bool empty", {"bool": {}}, ["k1", "k2", "k3", "k4", "k5"]),
    (
        "kibana active keys",
        {
            "bool": {
                "must": [{"term": {"invalidated": False}}],
                "should": [
                    {"range": {"expiration": {"gt": "now"}}},
                    {"bool": {"must_not": {"exists": {"field": "expiration"}}}},
                ],
                "minimum_should_match": 1,
            }
        },
        ["k1", "k2", "k5"],
    ),
]


@pytest.mark.parametrize(
    ("query", "expected"), [q[1:] for q in QUERIES], ids=[q[0] for q in QUERIES]
)
def test_query_types(index: KeyIndex, query: dict[str, Any], expected: list[str]) -> None:
    result = run(index, {"query": query})
    assert ids(result) == expected
    assert result.total == len(expected)
    assert sorts(result) == [None] * len(expected)


def test_empty_and_missing_body_match_all(index: KeyIndex) -> None:
    bodies: list[dict[str, Any] | None] = [None, {}]
    for body in bodies:
        result = run(index, body)
        assert (result.total, ids(result), result.aggregations) == (
            5,
            [f"k{i}" for i in range(1, 6)],
            None,
        )


# -- rejections: exact Elasticsearch errors ------------------------------------------------

P = "[query_api_key_request_payload]"
SEARCH = ("search_phase_execution_exception", "all shards failed")
ERRORS: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    (
        "unknown top-level field",
        {"track_total_hits": True},
        [("x_content_parse_exception", f"{P} unknown field [track_total_hits]")],
    ),
    (
        "unknown field suggestion",
        {"sizee": 1},
        [("x_content_parse_exception", f"{P} unknown field [sizee] did you mean [size]?")],
    ),
    (
        "unknown query",
        {"query": {"foo": {}}},
        [
            ("x_content_parse_exception", f"{P} failed to parse field [query]"),
            ("parsing_exception", "unknown query [foo]"),
        ],
    ),
    (
        "unknown query suggestion",
        {"query": {"temr": {"name": "x"}}},
        [
            ("x_content_parse_exception", f"{P} failed to parse field [query]"),
            ("parsing_exception", "unknown query [temr] did you mean [terms]?"),
        ],
    ),
    (
        "unknown query, several suggestions",
        {"query": {"tern": {"name": "x"}}},
        [
            ("x_content_parse_exception", f"{P} failed to parse field [query]"),
            ("parsing_exception", "unknown query [tern] did you mean any of [term, terms]?"),
        ],
    ),
    (
        "query not an object",
        {"query": "x"},
        [("x_content_parse_exception", f"{P} query doesn't support values of type: VALUE_STRING")],
    ),
    (
        "two queries in one clause",
        {"query": {"term": {"name": "a"}, "match_all": {}}},
        [
            ("x_content_parse_exception", f"{P} failed to parse field [query]"),
            (
                "parsing_exception",
                "[term] malformed query, expected [END_OBJECT] but found [FIELD_NAME]",
            ),
        ],
    ),
    (
        "term on two fields",
        {"query": {"term": {"name": "a", "username": "b"}}},
        [
            ("x_content_parse_exception", f"{P} failed to parse field [query]"),
            (
                "parsing_exception",
                "[term] query doesn't support multiple fields, found [name] and [username]",
            ),
        ],
    ),
    (
        "term unknown option",
        {"query": {"term": {"name": {"valu": "a"}}}},
        [
            ("x_content_parse_exception", f"{P} failed to parse field [query]"),
            ("parsing_exception", "[term] query does not support [valu]"),
        ],
    ),
    (
        "match_all unknown field",
        {"query": {"match_all": {"x": 1}}},
        [
            ("x_content_parse_exception", f"{P} failed to parse field [query]"),
            ("x_content_parse_exception", "[match_all] unknown field [x]"),
        ],
    ),
    (
        "bool unknown clause",
        {"query": {"bool": {"musts": []}}},
        [
            ("x_content_parse_exception", f"{P} failed to parse field [query]"),
            ("parsing_exception", "[bool] query does not support [musts]"),
        ],
    ),
    (
        "exists without field",
        {"query": {"exists": {}}},
        [
            ("x_content_parse_exception", f"{P} failed to parse field [query]"),
            ("parsing_exception", "[exists] must be provided with a [field]"),
        ],
    ),
    (
        "unsupported query type",
        {"query": {"bool": {"must": [{"match_phrase": {"name": "a"}}]}}},
        [
            (
                "illegal_argument_exception",
                "Query type [match_phrase] is not currently supported in this context",
            )
        ],
    ),
    (
        "unsupported match_none",
        {"query": {"match_none": {}}},
        [
            (
                "illegal_argument_exception",
                "Query type [match_none] is not currently supported in this context",
            )
        ],
    ),
    (
        "terms lookup",
        {"query": {"terms": {"name": {"index": "i", "id": "1", "path": "p"}}}},
        [
            (
                "illegal_argument_exception",
                "terms query with terms lookup is not currently supported in this context",
            )
        ],
    ),
    (
        "range relation",
        {"query": {"range": {"creation": {"gte": 1, "relation": "within"}}}},
        [
            (
                "illegal_argument_exception",
                "range query with relation is not currently supported in this context",
            )
        ],
    ),
    (
        "field not allowed",
        {"query": {"term": {"api_key_hash": "x"}}},
        [
            (
                "illegal_argument_exception",
                "Field [api_key_hash] is not allowed for querying or aggregation",
            )
        ],
    ),
    (
        "id only through ids",
        {"query": {"term": {"id": "k1"}}},
        [("illegal_argument_exception", "Field [id] is not allowed for querying or aggregation")],
    ),
    (
        "index-level name refused",
        {"query": {"exists": {"field": "expiration_time"}}},
        [
            (
                "illegal_argument_exception",
                "Field [expiration_time] is not allowed for querying or aggregation",
            )
        ],
    ),
    (
        "field name pattern",
        {"query": {"wildcard": {"meta*": "x"}}},
        [
            (
                "illegal_argument_exception",
                "Field name pattern [meta*] is not allowed for querying or aggregation",
            )
        ],
    ),
    (
        "negative from and size",
        {"from": -1, "size": -5},
        [
            (
                "action_request_validation_exception",
                "Validation Failed: 1: [from] parameter cannot be negative but was [-1];"
                "2: [size] parameter cannot be negative but was [-5];",
            )
        ],
    ),
    (
        "from with search_after",
        {"from": 1, "sort": ["name"], "search_after": ["a"]},
        [
            (
                "action_request_validation_exception",
                "Validation Failed: 1: [from] parameter must be set to 0 when [search_after] is used;",
            )
        ],
    ),
    (
        "from not a number",
        {"from": "x"},
        [
            ("x_content_parse_exception", f"{P} failed to parse field [from]"),
            ("number_format_exception", 'For input string: "x"'),
        ],
    ),
    (
        "size boolean",
        {"size": True},
        [("x_content_parse_exception", f"{P} size doesn't support values of type: VALUE_BOOLEAN")],
    ),
    (
        "nested sort",
        {"sort": [{"name": {"nested": {"path": "x"}}}]},
        [
            (
                "illegal_argument_exception",
                "nested sorting is not currently supported in this context",
            )
        ],
    ),
    (
        "sort on id",
        {"sort": ["id"]},
        [("illegal_argument_exception", "Field [id] is not allowed for querying or aggregation")],
    ),
    (
        "sort on pattern",
        {"sort": ["na*"]},
        [
            (
                "illegal_argument_exception",
                "Field name pattern [na*] is not allowed for querying or aggregation",
            )
        ],
    ),
    (
        "sort unknown option",
        {"sort": [{"name": {"ordr": "asc"}}]},
        [
            ("x_content_parse_exception", f"{P} failed to parse field [sort]"),
            (
                "x_content_parse_exception",
                "[field_sort] unknown field [ordr] did you mean [order]?",
            ),
        ],
    ),
    (
        "sort not a string or object",
        {"sort": [1]},
        [
            ("x_content_parse_exception", f"{P} failed to parse field [sort]"),
            ("illegal_argument_exception", "mal-formatted sort object"),
        ],
    ),
    (
        "search_after not an array",
        {"search_after": 1},
        [
            (
                "x_content_parse_exception",
                f"{P} search_after doesn't support values of type: VALUE_NUMBER",
            )
        ],
    ),
    (
        "empty search_after",
        {"search_after": []},
        [
            ("x_content_parse_exception", f"{P} failed to parse field [search_after]"),
            ("illegal_argument_exception", "Values must contains at least one value."),
        ],
    ),
    (
        "search_after length",
        {"sort": ["name", "username"], "search_after": ["a"]},
        [SEARCH, ("illegal_argument_exception", "search_after has 1 value(s) but sort has 2.")],
    ),
    (
        "search_after without sort",
        {"search_after": ["a"]},
        [SEARCH, ("illegal_argument_exception", "Sort must contain at least one field.")],
    ),
    (
        "result window",
        {"from": 9991},
        [
            SEARCH,
            (
                "illegal_argument_exception",
                "Result window is too large, from + size must be less than or equal to: [10000] "
                "but was [10001]. See the scroll api for a more efficient way to request large "
                "data sets. This limit can be set by changing the [index.max_result_window] index "
                "level setting.",
            ),
        ],
    ),
    (
        "unparsable date",
        {"query": {"range": {"creation": {"gte": "2024-01-01"}}}},
        [
            SEARCH,
            (
                "query_shard_exception",
                "failed to create query: failed to parse date field [2024-01-01] with format "
                "[epoch_millis]: [failed to parse date field [2024-01-01] with format [epoch_millis]]",
            ),
            (
                "parse_exception",
                "failed to parse date field [2024-01-01] with format [epoch_millis]: "
                "[failed to parse date field [2024-01-01] with format [epoch_millis]]",
            ),
        ],
    ),
    (
        "prefix on a date",
        {"query": {"prefix": {"creation": "17"}}},
        [
            SEARCH,
            (
                "query_shard_exception",
                "Can only use prefix queries on keyword, text and wildcard fields - not on "
                "[creation_time] which is of type [date]",
            ),
        ],
    ),
    (
        "bad boolean",
        {"query": {"term": {"invalidated": "yes"}}},
        [
            SEARCH,
            (
                "query_shard_exception",
                "failed to create query: Can't parse boolean value [yes], expected [true] or [false]",
            ),
            (
                "illegal_argument_exception",
                "Can't parse boolean value [yes], expected [true] or [false]",
            ),
        ],
    ),
    (
        "format on a keyword sort",
        {"sort": [{"name": {"format": "date_time"}}]},
        [
            SEARCH,
            (
                "illegal_argument_exception",
                "Field [name] of type [keyword] does not support custom formats",
            ),
        ],
    ),
    (
        "unknown aggregation",
        {"aggs": {"a": {"term": {"field": "name"}}}},
        [
            ("x_content_parse_exception", f"{P} failed to parse field [aggs]"),
            ("parsing_exception", "Unknown aggregation type [term] did you mean [terms]?"),
        ],
    ),
    (
        "aggs and aggregations",
        {"aggs": {}, "aggregations": {}},
        [
            (
                "x_content_parse_exception",
                "Failed to build [query_api_key_request_payload] after last required field arrived",
            ),
            ("illegal_argument_exception", "Duplicate 'aggs' or 'aggregations' field"),
        ],
    ),
    (
        "unsupported aggregation",
        {"aggs": {"g": {"global": {}}}},
        [("illegal_argument_exception", "Unsupported API Keys agg [g] of type [global]")],
    ),
    (
        "unsupported sub-aggregation",
        {
            "aggs": {
                "t": {"terms": {"field": "name"}, "aggs": {"m": {"max": {"field": "creation"}}}}
            }
        },
        [("illegal_argument_exception", "Unsupported API Keys agg [m] of type [max]")],
    ),
    (
        "pipeline aggregation",
        {"aggs": {"p": {"max_bucket": {"buckets_path": "t>_count"}}}},
        [("illegal_argument_exception", "Unsupported aggregation of type [max_bucket]")],
    ),
    (
        "script aggregation",
        {"aggs": {"t": {"terms": {"script": "doc['name']"}}}},
        [("illegal_argument_exception", "Unsupported script value source for [t] agg")],
    ),
    (
        "aggregation on a disallowed field",
        {"aggs": {"t": {"terms": {"field": "api_key_hash"}}}},
        [
            (
                "illegal_argument_exception",
                "Field [api_key_hash] is not allowed for querying or aggregation",
            )
        ],
    ),
    (
        "composite non-terms source",
        {
            "aggs": {
                "c": {"composite": {"sources": [{"d": {"date_histogram": {"field": "creation"}}}]}}
            }
        },
        [
            (
                "illegal_argument_exception",
                "Unsupported value source type for [d] of composite agg [c].Only [terms] value "
                "sources are allowed.",
            )
        ],
    ),
    (
        "terms size zero",
        {"aggs": {"t": {"terms": {"field": "name", "size": 0}}}},
        [
            ("x_content_parse_exception", f"{P} failed to parse field [aggs]"),
            ("x_content_parse_exception", "[terms] failed to parse field [size]"),
            ("illegal_argument_exception", "[size] must be greater than 0. Found [0] in [t]"),
        ],
    ),
    (
        "range aggregation on a keyword",
        {"aggs": {"r": {"range": {"field": "name", "ranges": [{"to": 1}]}}}},
        [
            SEARCH,
            (
                "illegal_argument_exception",
                "Field [name] of type [keyword] is not supported for aggregation [range]",
            ),
        ],
    ),
]


def chain(error: QueryError) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    node: QueryError | None = error
    while node is not None:
        out.append((node.error_type, node.reason))
        node = node.caused_by
    return out


@pytest.mark.parametrize(("body", "expected"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_rejections(index: KeyIndex, body: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    with pytest.raises(QueryError) as caught:
        run(index, body)
    assert caught.value.status == 400
    assert chain(caught.value) == expected


def test_error_body_shapes(index: KeyIndex) -> None:
    with pytest.raises(QueryError) as caught:
        run(index, {"query": {"foo": {}}})
    assert caught.value.response_body() == {
        "error": {
            "root_cause": [
                {
                    "type": "x_content_parse_exception",
                    "reason": f"{P} failed to parse field [query]",
                }
            ],
            "type": "x_content_parse_exception",
            "reason": f"{P} failed to parse field [query]",
            "caused_by": {"type": "parsing_exception", "reason": "unknown query [foo]"},
        },
        "status": 400,
    }
    with pytest.raises(QueryError) as caught:
        run(index, {"sort": ["name"], "search_after": [1, 2]})
    body = caught.value.error_body()
    assert body["root_cause"] == [
        {
            "type": "illegal_argument_exception",
            "reason": "search_after has 2 value(s) but sort has 1.",
        }
    ]
    assert (body["type"], body["reason"], body["phase"], body["grouped"]) == (
        "search_phase_execution_exception",
        "all shards failed",
        "query",
        True,
    )
    with pytest.raises(QueryError) as caught:
        run(index, {"query": {"range": {"creation": {"gte": "x"}}}})
    roots = caught.value.error_body()["root_cause"]
    assert [r["type"] for r in roots] == ["parse_exception"]


# -- sort, _sort values, search_after -----------------------------------------------------


SORTS: list[tuple[str, list[Any], list[str], list[list[Any]]]] = [
    (
        "expiration asc, missing last",
        ["expiration"],
        ["k4", "k2", "k1", "k5", "k3"],
        [[NOW - DAY], [NOW + DAY], [NOW + 10 * DAY], [NOW + 10 * DAY], [LONG_MAX]],
    ),
    (
        "expiration desc, missing last",
        [{"expiration": {"order": "desc"}}],
        ["k1", "k5", "k2", "k4", "k3"],
        [[NOW + 10 * DAY], [NOW + 10 * DAY], [NOW + DAY], [NOW - DAY], [LONG_MIN]],
    ),
    (
        "expiration missing first",
        [{"expiration": {"missing": "_first"}}],
        ["k3", "k4", "k2", "k1", "k5"],
        [[LONG_MIN], [NOW - DAY], [NOW + DAY], [NOW + 10 * DAY], [NOW + 10 * DAY]],
    ),
    (
        "name asc, missing last",
        ["name"],
        ["k4", "k1", "k2", "k3", "k5"],
        [["Delta-Key"], ["alpha-key"], ["beta-key"], ["gamma-key"], [None]],
    ),
    (
        "name desc shorthand",
        [{"name": "desc"}],
        ["k3", "k2", "k1", "k4", "k5"],
        [["gamma-key"], ["beta-key"], ["alpha-key"], ["Delta-Key"], [None]],
    ),
    (
        "username then creation desc with format",
        ["username", {"creation": {"order": "desc", "format": "date_time"}}],
        ["k3", "k1", "k5", "k2", "k4"],
        [
            ["alice", "2023-11-07T22:13:20.000Z"],
            ["alice", "2023-11-05T22:13:20.000Z"],
            ["bob", "2023-11-09T22:13:20.000Z"],
            ["bob", "2023-11-06T22:13:20.000Z"],
            ["carol", "2023-11-08T22:13:20.000Z"],
        ],
    ),
    (
        "invalidated as longs",
        [{"invalidated": {"order": "desc"}}, "_doc"],
        ["k3", "k1", "k2", "k4", "k5"],
        [[1, 3], [0, 1], [0, 2], [0, 4], [0, 5]],
    ),
    (
        "doc order desc",
        [{"_doc": {"order": "desc"}}],
        ["k5", "k4", "k3", "k2", "k1"],
        [[5], [4], [3], [2], [1]],
    ),
    (
        "metadata multi-valued asc takes min",
        ["metadata", "_doc"],
        ["k1", "k2", "k3", "k5", "k4"],
        [["1", 1], ["dev", 2], ["prod", 3], ["true", 5], [None, 4]],
    ),
    (
        "metadata sub-field desc",
        [{"metadata.env": "desc"}, "_doc"],
        ["k1", "k3", "k2", "k4", "k5"],
        [["prod", 1], ["prod", 3], ["dev", 2], [None, 4], [None, 5]],
    ),
    (
        "type then invalidation with format",
        ["type", {"invalidation": {"format": "yyyy-MM-dd"}}],
        ["k3", "k1", "k2", "k4", "k5"],
        [
            ["cross_cluster", "2023-11-13"],
            ["rest", "+292278994-08-17"],
            ["rest", "+292278994-08-17"],
            ["rest", "+292278994-08-17"],
            ["rest", "+292278994-08-17"],
        ],
    ),
]


@pytest.mark.parametrize(
    ("sort", "expected_ids", "expected_sorts"), [s[1:] for s in SORTS], ids=[s[0] for s in SORTS]
)
def test_sort(
    index: KeyIndex, sort: list[Any], expected_ids: list[str], expected_sorts: list[list[Any]]
) -> None:
    result = run(index, {"sort": sort})
    assert ids(result) == expected_ids
    assert sorts(result) == expected_sorts


def page_through(index: KeyIndex, body: dict[str, Any], size: int, **kw: Any) -> list[str]:
    seen: list[str] = []
    body = {**body, "size": size}
    while True:
        result = run(index, body, **kw)
        if not result.hits:
            return seen
        seen += ids(result)
        body["search_after"] = sorts(result)[-1]


@pytest.mark.parametrize("size", [1, 2, 3, 10])
def test_search_after_pages_with_ties_and_missing_values(index: KeyIndex, size: int) -> None:
    body = {"sort": ["expiration", "username", "_doc"]}
    assert page_through(index, body, size) == ["k4", "k2", "k1", "k5", "k3"]
    desc = {"sort": [{"expiration": "desc"}, {"creation": "desc"}]}
    assert page_through(index, desc, size) == ["k5", "k1", "k2", "k4", "k3"]


def test_search_after_skips_keys_tied_on_every_sort_value(index: KeyIndex) -> None:
    # k1 and k5 share their expiration: with only that sort, the second is never reached.
    assert page_through(index, {"sort": ["expiration"]}, 1) == ["k4", "k2", "k1", "k3"]


def test_search_after_accepts_strings_for_dates_and_formats(index: KeyIndex) -> None:
    result = run(index, {"sort": ["expiration"], "search_after": [str(NOW + DAY)]})
    assert ids(result) == ["k1", "k5", "k3"]
    body = {
        "sort": [{"creation": {"format": "date_time"}}],
        "search_after": ["2023-11-08T22:13:20.000Z"],
    }
    assert ids(run(index, body)) == ["k5"]
    after_missing = {"sort": ["name"], "search_after": [None]}
    assert ids(run(index, after_missing)) == []
    after_boolean = {"sort": ["invalidated", "_doc"], "search_after": [False, 5]}
    assert ids(run(index, after_boolean)) == ["k3"]


def test_from_and_size(index: KeyIndex) -> None:
    result = run(index, {"sort": ["_doc"], "from": 1, "size": 2})
    assert (result.total, ids(result)) == (5, ["k2", "k3"])
    assert ids(run(index, {"size": 0})) == []
    assert run(index, {"size": 0}).total == 5
    many = KeyIndex(key(i) for i in range(1, 26))
    assert len(run(many, {}).hits) == 10
    assert ids(run(many, {"from": 24})) == ["k25"]


FILTERS: dict[str, tuple[dict[str, Any] | None, Any]] = {
    # no query: totals from the index size, pages walked
    "none": (None, lambda d: True),
    # an exact range: totals from two bisects
    "range": (
        {"bool": {"filter": {"range": {"expiration": {"gte": NOW + 2 * DAY}}}}},
        lambda d: d.expiration is not None and d.expiration >= NOW + 2 * DAY,
    ),
    # a range plus another clause: totals counted over the range (and remembered)
    "range and term": (
        {
            "bool": {
                "filter": [
                    {"range": {"expiration": {"lte": NOW + 4 * DAY}}},
                    {"term": {"invalidated": False}},
                ]
            }
        },
        lambda d: d.expiration is not None and d.expiration <= NOW + 4 * DAY and not d.invalidated,
    ),
    # no index range at all
    "term": ({"term": {"invalidated": True}}, lambda d: d.invalidated),
}


@given(
    keys=st.lists(
        st.tuples(st.one_of(st.none(), st.integers(0, 5)), st.booleans()), min_size=0, max_size=40
    ),
    page=st.integers(1, 7),
    descending=st.booleans(),
    query=st.sampled_from(sorted(FILTERS)),
    owner_only=st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_paging_visits_the_sorted_list_exactly_once(
    keys: list[tuple[int | None, bool]],
    page: int,
    descending: bool,
    query: str,
    owner_only: bool,
) -> None:
    docs = [
        key(
            i,
            name=f"n{i:03d}",
            expiration=None if e is None else NOW + e * DAY,
            invalidated=inv,
            username="bob" if i % 3 else "alice",
        )
        for i, (e, inv) in enumerate(keys)
    ]
    index = KeyIndex(docs)
    order = "desc" if descending else "asc"
    body: dict[str, Any] = {"sort": [{"expiration": {"order": order}}, {"name": {"order": order}}]}
    clause, matches = FILTERS[query]
    if clause is not None:
        body["query"] = clause
    visible = bobs if owner_only else None
    expected_docs = [d for d in docs if matches(d) and (visible is None or visible(d))]
    present = sorted(
        (d for d in expected_docs if d.expiration is not None),
        key=lambda d: (d.expiration, d.name),
        reverse=descending,
    )
    missing = sorted(
        (d for d in expected_docs if d.expiration is None),
        key=lambda d: d.name or "",
        reverse=descending,
    )
    expected = [d.id for d in present + missing]
    assert page_through(index, body, page, visible=visible) == expected
    assert run(index, body, visible=visible).total == len(expected)


def test_remembered_totals_follow_index_changes(index: KeyIndex) -> None:
    body = {"query": {"bool": {"filter": [{"term": {"username": "bob"}}]}}, "size": 0}
    assert run(index, body).total == 2
    version = index.version
    index.add(key(6, username="bob"))
    assert index.version == version + 1
    assert run(index, body).total == 3
    index.replace(key(6, username="carol"))
    assert run(index, body).total == 2
    index.remove("k2")
    assert run(index, body).total == 1
    relative = {"query": {"range": {"invalidation": {"gte": "now-2d"}}}, "size": 0}
    assert run(index, relative).total == 1
    assert execute_query(index, relative, now_ms=NOW + 5 * DAY).total == 0


# -- ownership filtering -------------------------------------------------------------------


def bobs(doc: QueryDoc) -> bool:
    return doc.username == "bob"


def test_visibility_filters_hits_totals_and_aggregations(index: KeyIndex) -> None:
    body = {
        "sort": ["expiration"],
        "aggs": {
            "users": {"terms": {"field": "username"}},
            "n": {"value_count": {"field": "type"}},
        },
    }
    result = run(index, body, visible=bobs)
    assert (result.total, ids(result)) == (2, ["k2", "k5"])
    assert result.aggregations is not None
    assert result.aggregations["users"]["buckets"] == [{"key": "bob", "doc_count": 2}]
    assert result.aggregations["n"] == {"value": 2}
    ranged = run(index, {"query": {"range": {"expiration": {"gte": "now"}}}}, visible=bobs)
    assert (ranged.total, ids(ranged)) == (2, ["k2", "k5"])
    assert page_through(index, {"sort": ["name"]}, 1, visible=bobs) == ["k2", "k5"]


def test_nothing_matching_gives_no_aggregations(index: KeyIndex) -> None:
    body = {
        "query": {"term": {"username": "nobody"}},
        "aggs": {"u": {"terms": {"field": "username"}}},
    }
    result = run(index, body)
    assert (result.total, result.hits, result.aggregations) == (0, [], None)
    assert (
        run(
            index, {"aggs": {"u": {"terms": {"field": "username"}}}}, visible=lambda d: False
        ).aggregations
        is None
    )


# -- aggregations --------------------------------------------------------------------------

AGGS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "terms keyword",
        {"terms": {"field": "username"}},
        {
            "doc_count_error_upper_bound": 0,
            "sum_other_doc_count": 0,
            "buckets": [
                {"key": "alice", "doc_count": 2},
                {"key": "bob", "doc_count": 2},
                {"key": "carol", "doc_count": 1},
            ],
        },
    ),
    (
        "terms size and other count",
        {"terms": {"field": "username", "size": 1}},
        {
            "doc_count_error_upper_bound": 0,
            "sum_other_doc_count": 3,
            "buckets": [{"key": "alice", "doc_count": 2}],
        },
    ),
    (
        "terms key order desc",
        {"terms": {"field": "realm_name", "order": {"_key": "desc"}}},
        {
            "doc_count_error_upper_bound": 0,
            "sum_other_doc_count": 0,
            "buckets": [{"key": "native1", "doc_count": 4}, {"key": "file1", "doc_count": 1}],
        },
    ),
    (
        "terms count asc",
        {"terms": {"field": "type", "order": {"_count": "asc"}}},
        {
            "doc_count_error_upper_bound": 0,
            "sum_other_doc_count": 0,
            "buckets": [{"key": "cross_cluster", "doc_count": 1}, {"key": "rest", "doc_count": 4}],
        },
    ),
    (
        "terms boolean",
        {"terms": {"field": "invalidated"}},
        {
            "doc_count_error_upper_bound": 0,
            "sum_other_doc_count": 0,
            "buckets": [
                {"key": 0, "key_as_string": "false", "doc_count": 4},
                {"key": 1, "key_as_string": "true", "doc_count": 1},
            ],
        },
    ),
    (
        "terms date",
        {"terms": {"field": "expiration", "size": 1}},
        {
            "doc_count_error_upper_bound": 0,
            "sum_other_doc_count": 2,
            "buckets": [
                {"key": NOW + 10 * DAY, "key_as_string": str(NOW + 10 * DAY), "doc_count": 2}
            ],
        },
    ),
    (
        "terms metadata root with missing",
        {"terms": {"field": "metadata.env", "missing": "none"}},
        {
            "doc_count_error_upper_bound": 0,
            "sum_other_doc_count": 0,
            "buckets": [
                {"key": "none", "doc_count": 2},
                {"key": "prod", "doc_count": 2},
                {"key": "dev", "doc_count": 1},
            ],
        },
    ),
    (
        "terms with sub-aggregation",
        {
            "terms": {"field": "username", "size": 1},
            "aggs": {"kinds": {"cardinality": {"field": "type"}}},
        },
        {
            "doc_count_error_upper_bound": 0,
            "sum_other_doc_count": 3,
            "buckets": [{"key": "alice", "doc_count": 2, "kinds": {"value": 2}}],
        },
    ),
    ("missing", {"missing": {"field": "expiration"}}, {"doc_count": 1}),
    ("cardinality", {"cardinality": {"field": "username"}}, {"value": 3}),
    ("cardinality metadata", {"cardinality": {"field": "metadata"}}, {"value": 8}),
    ("value_count", {"value_count": {"field": "expiration"}}, {"value": 4}),
    ("value_count multi-valued", {"value_count": {"field": "metadata.tags"}}, {"value": 2}),
    (
        "range on a date",
        {"range": {"field": "expiration", "ranges": [{"from": NOW, "key": "future"}, {"to": NOW}]}},
        {
            "buckets": [
                {"key": f"*-{NOW}", "to": float(NOW), "to_as_string": str(NOW), "doc_count": 1},
                {"key": "future", "from": float(NOW), "from_as_string": str(NOW), "doc_count": 3},
            ]
        },
    ),
    (
        "date_range with format",
        {
            "date_range": {
                "field": "creation",
                "format": "yyyy-MM-dd",
                "ranges": [{"from": "now-7d/d", "to": "now"}],
            }
        },
        {
            "buckets": [
                {
                    "key": "2023-11-07-2023-11-14",
                    "from": float(NOW - 7 * DAY - (NOW % DAY)),
                    "from_as_string": "2023-11-07",
                    "to": float(NOW),
                    "to_as_string": "2023-11-14",
                    "doc_count": 3,
                }
            ]
        },
    ),
    (
        "date_range keyed",
        {
            "date_range": {
                "field": "expiration",
                "keyed": True,
                "ranges": [{"to": "now", "key": "expired"}],
            }
        },
        {"buckets": {"expired": {"to": float(NOW), "to_as_string": str(NOW), "doc_count": 1}}},
    ),
    (
        "filter with sub-aggregation",
        {"filter": {"term": {"username": "bob"}}, "aggs": {"names": {"terms": {"field": "name"}}}},
        {
            "doc_count": 2,
            "names": {
                "doc_count_error_upper_bound": 0,
                "sum_other_doc_count": 0,
                "buckets": [{"key": "beta-key", "doc_count": 1}],
            },
        },
    ),
    (
        "filters keyed, sorted by key, other bucket",
        {
            "filters": {
                "filters": {
                    "z_bob": {"term": {"username": "bob"}},
                    "a_file": {"term": {"realm_name": "file1"}},
                },
                "other_bucket_key": "rest",
            }
        },
        {
            "buckets": {
                "a_file": {"doc_count": 1},
                "z_bob": {"doc_count": 2},
                "rest": {"doc_count": 2},
            }
        },
    ),
    (
        "filters anonymous",
        {"filters": {"filters": [{"term": {"username": "bob"}}], "other_bucket": True}},
        {"buckets": [{"doc_count": 2}, {"doc_count": 3}]},
    ),
    (
        "filters named as a list",
        {"filters": {"filters": {"bob": {"term": {"username": "bob"}}}, "keyed": False}},
        {"buckets": [{"key": "bob", "doc_count": 2}]},
    ),
    (
        "composite with after and size",
        {
            "composite": {
                "sources": [
                    {"user": {"terms": {"field": "username"}}},
                    {"t": {"terms": {"field": "type"}}},
                ],
                "size": 2,
                "after": {"user": "alice", "t": "cross_cluster"},
            }
        },
        {
            "after_key": {"user": "bob", "t": "rest"},
            "buckets": [
                {"key": {"user": "alice", "t": "rest"}, "doc_count": 1},
                {"key": {"user": "bob", "t": "rest"}, "doc_count": 2},
            ],
        },
    ),
    (
        "composite desc, boolean and missing bucket",
        {
            "composite": {
                "sources": [
                    {"inv": {"terms": {"field": "invalidated", "order": "desc"}}},
                    {"exp": {"terms": {"field": "expiration", "missing_bucket": True}}},
                ],
                "size": 2,
            }
        },
        {
            "after_key": {"inv": False, "exp": NOW - DAY},
            "buckets": [
                {"key": {"inv": True, "exp": None}, "doc_count": 1},
                {"key": {"inv": False, "exp": NOW - DAY}, "doc_count": 1},
            ],
        },
    ),
    (
        "composite with nothing left",
        {
            "composite": {
                "sources": [{"u": {"terms": {"field": "username"}}}],
                "after": {"u": "carol"},
            }
        },
        {"buckets": []},
    ),
]


@pytest.mark.parametrize(("agg", "expected"), [a[1:] for a in AGGS], ids=[a[0] for a in AGGS])
def test_aggregations(index: KeyIndex, agg: dict[str, Any], expected: dict[str, Any]) -> None:
    result = run(index, {"size": 0, "aggs": {"a": agg}})
    assert result.hits == []
    assert result.total == 5
    assert result.aggregations == {"a": expected}


def test_aggregations_follow_the_query_and_typed_keys(index: KeyIndex) -> None:
    body = {
        "query": {"term": {"username": "bob"}},
        "aggregations": {
            "t": {"terms": {"field": "name"}},
            "b": {"terms": {"field": "invalidated"}},
            "f": {"filter": {"match_all": {}}, "aggs": {"c": {"cardinality": {"field": "name"}}}},
        },
    }
    result = run(index, body, typed_keys=True)
    assert result.aggregations is not None
    assert sorted(result.aggregations) == ["filter#f", "lterms#b", "sterms#t"]
    assert result.aggregations["filter#f"] == {"doc_count": 2, "cardinality#c": {"value": 1}}


# -- the YAML REST tests, directly against the engine --------------------------------------


def yaml_index() -> KeyIndex:
    """20_query.yml: a manager key (10d) and two user keys (1d) created in that order."""
    created = [NOW, NOW + 10, NOW + 20]
    return KeyIndex(
        [
            key(
                0,
                id="manager",
                name="manager-api-key",
                creation=created[0],
                expiration=created[0] + 10 * DAY,
                username="api_key_manager",
                realm_name="default_native",
                metadata={"letter": "a", "number": 42},
            ),
            key(
                1,
                id="user1",
                name="user1-api-key",
                creation=created[1],
                expiration=created[1] + DAY,
                username="api_key_user_1",
                realm_name="default_native",
                metadata={"letter": "a", "number": 1},
            ),
            key(
                2,
                id="user2",
                name="user2-api-key",
                creation=created[2],
                expiration=created[2] + DAY,
                username="api_key_user_2",
                realm_name="default_native",
                metadata={"letter": "b", "number": 42},
            ),
        ]
    )


def owned_by(username: str) -> Any:
    return lambda d: d.username == username and d.realm_name == "default_native"


def test_yaml_20_query() -> None:
    index = yaml_index()
    everything = run(index, {})
    assert (everything.total, len(everything.hits)) == (3, 3)
    own = run(index, {"query": {"match_all": {}}}, visible=owned_by("api_key_user_1"))
    assert (own.total, ids(own)) == (1, ["user1"])
    wild = run(
        index, {"query": {"wildcard": {"name": "user*"}}}, visible=owned_by("api_key_user_2")
    )
    assert (wild.total, ids(wild)) == (1, ["user2"])
    paged = run(
        index,
        {
            "query": {"wildcard": {"name": "user*"}},
            "sort": [{"creation": {"order": "desc"}}],
            "from": 1,
            "size": 1,
        },
    )
    assert (paged.total, ids(paged)) == (2, ["user1"])
    body: dict[str, Any] = {
        "query": {"wildcard": {"name": "*key"}},
        "sort": ["expiration", "username"],
        "size": 1,
    }
    for expected in ("user1", "user2", "manager"):
        result = run(index, body)
        assert (result.total, ids(result)) == (3, [expected])
        doc = result.hits[0][0]
        # the test stashes api_keys.0.expiration and .username and sends them back as strings
        body["search_after"] = [f"{doc.expiration}", f"{doc.username}"]


def test_yaml_21_query_with_aggs() -> None:
    index = KeyIndex(
        [
            key(
                0,
                name="manager-api-key",
                expiration=NOW + 10 * DAY,
                username="api_key_manager",
                metadata={"letter": "a", "number": 42},
            ),
            key(1, name="user-api-key", username="api_key_user", metadata={"letter": "b"}),
        ]
    )
    body = {
        "size": 0,
        "aggs": {
            "my_buckets": {"composite": {"sources": [{"key_name": {"terms": {"field": "name"}}}]}}
        },
    }
    result = run(index, body)
    assert (result.total, result.hits) == (2, [])
    assert result.aggregations == {
        "my_buckets": {
            "after_key": {"key_name": "user-api-key"},
            "buckets": [
                {"key": {"key_name": "manager-api-key"}, "doc_count": 1},
                {"key": {"key_name": "user-api-key"}, "doc_count": 1},
            ],
        }
    }


def test_yaml_60_admin_user_and_40_view_role_descriptors() -> None:
    index = KeyIndex(
        [
            key(1, name="key-1", username="admin", metadata={"search": "this"}),
            key(2, name="key-2", username="admin"),
            key(3, name="key-3", username="admin"),
        ]
    )
    assert ids(run(index, {"query": {"wildcard": {"name": "*-2"}}})) == ["k2"]
    body = {
        "query": {
            "bool": {"must": [{"wildcard": {"name": "*key*"}}, {"term": {"username": "admin"}}]}
        },
        "sort": [{"name": {"order": "desc"}}],
        "size": 2,
    }
    result = run(index, body)
    assert (result.total, ids(result)) == (3, ["k3", "k2"])
    assert ids(run(index, {"query": {"term": {"metadata.search": "this"}}})) == ["k1"]
    assert ids(run(index, {"sort": ["name"]})) == ["k1", "k2", "k3"]


# -- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "round_up", "fmt", "expected"),
    [
        ("now", False, None, NOW),
        ("now-1d", False, None, NOW - DAY),
        ("now+10d/d", False, None, NOW + 10 * DAY - NOW % DAY),
        ("now+10d/d", True, None, NOW + 11 * DAY - NOW % DAY - 1),
        ("now/M", False, None, 1_698_796_800_000),
        ("now/w", False, None, 1_699_833_600_000),
        ("now+1M", False, None, 1_702_592_000_000),
        ("now-1y/y", False, None, 1_640_995_200_000),
        ("now/h+1h", False, None, NOW - NOW % 3_600_000 + 3_600_000),
        ("1700000000000", False, None, NOW),
        ("1700000000000||+1s", False, None, NOW + 1000),
        ("2023-11-14", False, "strict_date_optional_time", 1_699_920_000_000),
        ("2023-11-14", True, "strict_date_optional_time", 1_699_920_000_000 + DAY - 1),
        ("2023-11-14T22:13:20.000Z", False, "date_time", NOW),
        ("2023-11-14T23:13:20+01:00", False, "strict_date_optional_time", NOW),
        ("14/Nov/2023", False, "dd/MMM/yyyy", 1_699_920_000_000),
        ("1700000000", False, "epoch_second", NOW),
        ("x||2023-11-14", False, "epoch_millis||yyyy-MM-dd", None),
    ],
)
def test_parse_date(text: str, round_up: bool, fmt: str | None, expected: int | None) -> None:
    if expected is None:
        with pytest.raises(QueryError):
            parse_date(text, now_ms=NOW, round_up=round_up, fmt=fmt)
    else:
        assert parse_date(text, now_ms=NOW, round_up=round_up, fmt=fmt) == expected


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (None, "1700000000000"),
        ("epoch_second", "1700000000"),
        ("date_time", "2023-11-14T22:13:20.000Z"),
        ("strict_date_optional_time", "2023-11-14T22:13:20.000Z"),
        ("date_time_no_millis", "2023-11-14T22:13:20Z"),
        ("basic_date_time", "20231114T221320.000Z"),
        ("date", "2023-11-14"),
        ("yyyy/MM/dd HH:mm", "2023/11/14 22:13"),
        ("dd MMM yyyy", "14 Nov 2023"),
    ],
)
def test_format_date(fmt: str | None, expected: str) -> None:
    assert format_date(NOW, fmt) == expected


class CountingOwner:
    """Bob's keys, as a visibility equal to any other request's for the same owner; it counts
    how many keys it is asked about."""

    asked = 0

    def __call__(self, doc: QueryDoc) -> bool:
        CountingOwner.asked += 1
        return doc.username == "bob"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CountingOwner)

    def __hash__(self) -> int:
        return hash("bob")


def test_an_owners_paged_read_counts_its_keys_once_not_once_per_page() -> None:
    docs = [key(i, creation=NOW + i, username="bob" if i % 2 else "alice") for i in range(400)]
    index = KeyIndex(docs)
    CountingOwner.asked = 0
    body = {"query": {"term": {"invalidated": False}}, "sort": ["creation", "_doc"], "size": 20}
    first = execute_query(index, body, visible=CountingOwner(), now_ms=NOW)
    assert first.total == 200
    counted = CountingOwner.asked
    assert counted >= 400  # the total: every key asked once
    CountingOwner.asked = 0
    body["search_after"] = sorts(first)[-1]
    second = execute_query(index, body, visible=CountingOwner(), now_ms=NOW)
    assert second.total == 200
    assert second.hits[0][0].id == "k41"
    # The second page's total is remembered: it asks about the keys it walks, not all 400.
    assert CountingOwner.asked < 100


@given(
    creations=st.lists(st.integers(0, 3), min_size=0, max_size=60),
    page=st.integers(1, 9),
    owner_only=st.booleans(),
    valid_only=st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_paging_by_creation_then_doc_seeks_through_ties_in_order(
    creations: list[int], page: int, owner_only: bool, valid_only: bool
) -> None:
    docs = [
        key(
            i,
            creation=NOW + c,
            invalidated=i % 4 == 0,
            username="bob" if i % 3 else "alice",
        )
        for i, c in enumerate(creations)
    ]
    index = KeyIndex(docs)
    body: dict[str, Any] = {"sort": ["creation", "_doc"]}
    if valid_only:
        body["query"] = {"term": {"invalidated": False}}
    visible = bobs if owner_only else None
    expected = [
        d.id
        for d in sorted(docs, key=lambda d: (d.creation, d.seq))
        if (not valid_only or not d.invalidated) and (visible is None or visible(d))
    ]
    assert page_through(index, body, page, visible=visible) == expected


def test_a_page_inside_a_tie_group_walks_the_page_not_the_group() -> None:
    docs = [key(i, creation=NOW, username="bob") for i in range(400)]
    index = KeyIndex(docs)
    body: dict[str, Any] = {"sort": ["creation", "_doc"], "size": 20}
    first = execute_query(index, body, visible=CountingOwner(), now_ms=NOW)
    body["search_after"] = sorts(first)[-1]
    CountingOwner.asked = 0
    second = execute_query(index, body, visible=CountingOwner(), now_ms=NOW)
    assert [d.id for d, _ in second.hits] == [f"k{i}" for i in range(20, 40)]
    # Seeks to the 21st key of the 400 made in the same millisecond and asks about 20.
    assert CountingOwner.asked <= 40
