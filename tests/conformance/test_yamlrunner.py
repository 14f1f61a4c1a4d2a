"""Unit tests of the YAML REST test runner, against a fake executor and a recording HTTP server."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .apis import API_SPECS, ParamError, UnknownApiError, bind_request
from .executor import ApiRequest, ApiResponse, ClientExecutor, split_warning_headers
from .fakes import FakeExecutor, Recorded, RecordingServer, Reply
from .javaish import describe_mismatch, java_regex, java_str
from .stash import PathError, Stash, StashError, evaluate_path, parse_path
from .yamlrunner import (
    DEFAULT_PASSWORD,
    DEFAULT_USER,
    InvalidTestError,
    Runner,
    SectionResult,
    Status,
    SuiteParseError,
    compile_section,
    default_tests_dir,
    load_suite,
    main,
    parse_suite,
)

Responder = Callable[[ApiRequest], ApiResponse | tuple[int, Any]]


def run_yaml(
    text: str,
    responder: Responder | None = None,
    *,
    version: str | None = "8.17.4",
    reset: Callable[[], None] | None = None,
    validate: bool = True,
) -> tuple[list[SectionResult], FakeExecutor]:
    executor = FakeExecutor(responder or (lambda _r: (200, {})), validate=validate)
    suite = parse_suite(text, Path("t.yml"))
    results = Runner(executor, reset=reset, version=version).run_suite(suite)
    return results, executor


def run_one(text: str, responder: Responder | None = None, **kwargs: Any) -> SectionResult:
    results, _ = run_yaml(text, responder, **kwargs)
    assert len(results) == 1
    return results[0]


def answer(body: Any, status: int = 200) -> Responder:
    return lambda _r: (status, body)


def echo(request: ApiRequest) -> tuple[int, Any]:
    return 200, {
        "api": request.api,
        "params": dict(request.params),
        "headers": dict(request.headers),
        "bodies": list(request.bodies),
    }


# --- stash ----------------------------------------------------------------------------------


def test_stash_substitution_in_params_headers_and_bodies() -> None:
    def responder(request: ApiRequest) -> tuple[int, Any]:
        if request.api == "security.create_api_key":
            return 200, {"id": "abc", "name": "k", "nested": {"n": 7}}
        return echo(request)

    result, executor = run_yaml(
        r"""
"stash":
  - do: {security.create_api_key: {body: {name: k}}}
  - set: {id: key_id, name: key_name, nested: obj}
  - do:
      headers: {Authorization: "ApiKey ${key_id}"}
      security.get_api_key: {id: "$key_id", name: "x-${key_name}-y", username: "${obj.n}"}
  - match: {params.id: abc}
  - match: {params.name: x-k-y}
  - match: {params.username: "7"}
  - match: {headers.Authorization: "ApiKey abc"}
  - match: {params.id: $key_id}
  - match: {params: {id: abc, name: "x-${key_name}-y", username: "7"}}
  - do:
      security.invalidate_api_key:
        body: '{"ids": ["$key_id", "${key_id}!"], "$key_name": "\\${literal}", "n": "$obj"}'
  - match: {bodies.0: {ids: [abc, abc!], k: "\\${literal}", n: {n: 7}}}
""",
        responder,
    )
    assert [r.status for r in result] == [Status.PASS], result
    assert executor.requests[1].params == {"id": "abc", "name": "x-k-y", "username": "7"}
    assert executor.requests[1].headers == {"Authorization": "ApiKey abc"}


def test_stash_key_in_path_embedded_key_arbitrary_key_and_body() -> None:
    body = {"nodes": {"n1": {"name": "node-one", "ver.sion": "8"}}, "k": "n1", "suffix": "me"}
    result = run_one(
        r"""
"paths":
  - do: {cluster.health: {}}
  - set: {k: node, suffix: tail}
  - match: {nodes.$node.name: node-one}
  - match: {"$body.nodes.${node}.na${tail}": node-one}
  - match: {"nodes.${node}": nodes.n1}  # as in Java: a field holding ${..} is the string itself
  - set: {nodes._arbitrary_key_: any_node}
  - match: {$any_node: n1}
  - match: {nodes.n1.ver\.sion: "8"}
  - match: {$body.k: n1}
  - match: {$body: {nodes: {n1: {name: node-one, "ver.sion": "8"}}, k: n1, suffix: me}}
  - match: {"": {nodes: {n1: {name: node-one, "ver.sion": "8"}}, k: n1, suffix: me}}
""",
        answer(body),
    )
    assert result.status is Status.PASS, result.message


def test_missing_stash_value_fails() -> None:
    result = run_one(
        """
"missing":
  - do: {cluster.health: {}}
  - match: {status: $never_set}
""",
        answer({"status": "green"}),
    )
    assert result.status is Status.FAIL
    assert "stashed value not found for key [never_set]" in result.message


def test_stash_unit_semantics() -> None:
    stash = Stash()
    stash.stash_value("a", {"b": [10, {"c": "deep"}]})
    stash.stash_value("name", "x")
    assert stash.get_value("$a.b.1.c") == "deep"
    assert stash.get_value("pre-${name}-${a.b.0}") == "pre-x-10"
    assert stash.get_value(r"keep \${name}") == "keep ${name}"
    assert stash.contains("$x")
    assert stash.contains("a ${x}")
    assert not stash.contains("plain")
    assert not stash.contains(5)
    assert stash.replace({"$name": ["$name", "${name}s", 1]}) == {"x": ["x", "xs", 1]}
    with pytest.raises(StashError):
        stash.get_value("$nope")
    with pytest.raises(StashError):
        stash.get_value("$")


def test_path_parsing_escapes_and_errors() -> None:
    assert parse_path(r"a\.b.c") == ["a.b", "c"]
    assert parse_path("a..b.") == ["a", "b"]
    assert parse_path("") == []
    doc = {"a.b": {"c": [1, 2]}, "s": "text"}
    assert evaluate_path(doc, r"a\.b.c.1") == 2
    assert evaluate_path(doc, "missing.deeper") is None
    assert evaluate_path(doc, "") == doc
    with pytest.raises(PathError, match="out of bounds"):
        evaluate_path(doc, r"a\.b.c.5")
    with pytest.raises(PathError, match="not numeric"):
        evaluate_path(doc, r"a\.b.c.x")
    with pytest.raises(PathError, match="no object found"):
        evaluate_path(doc, "s.x")


def test_escaped_dot_in_assertion_path() -> None:
    result = run_one(
        r"""
"dots":
  - do: {cluster.health: {}}
  - match: {settings.index\.number_of_shards: "1"}
  - is_false: settings.index.number_of_shards
""",
        answer({"settings": {"index.number_of_shards": "1"}}),
    )
    assert result.status is Status.PASS, result.message


# --- match / regex ----------------------------------------------------------------------------


def test_regex_match_uses_java_comments_flag() -> None:
    result = run_one(
        r"""
"regex":
  - do: {cluster.health: {}}
  - match:
      message: >
        /^ hello \s+ world \s  # a comment that is ignored
           [0-9]+ $/
  - match: {message: "/wor ld/"}
  - match: {id: "/^(${a}|${b})$/"}
""",
        answer({"message": "hello   world 42", "id": "k2"}),
    )
    assert result.status is Status.FAIL  # ${a} is not stashed
    ok = run_one(
        r"""
"regex":
  - do: {cluster.health: {}}
  - set: {a: a, b: b}
  - match:
      message: >
        /^ hello \s+ world \s  # a comment that is ignored
           [0-9]+ $/
  - match: {message: "/wor ld/"}
  - match: {id: "/^(${a}|${b})$/"}
""",
        answer({"message": "hello   world 42", "id": "k2", "a": "k1", "b": "k2"}),
    )
    assert ok.status is Status.PASS, ok.message


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        ("/^world/", "hello world"),  # anchored: no match
        ("/\\d+/", 42),  # not a string
        ("/^[a b]+$/", "a b"),  # whitespace inside a class is ignored too, as in Java
    ],
)
def test_regex_match_failures(expected: str, actual: Any) -> None:
    text = f"""
"regex":
  - do: {{cluster.health: {{}}}}
  - match: {{v: {json.dumps(expected)}}}
"""
    result = run_one(text, answer({"v": actual}))
    assert result.status is Status.FAIL


def test_java_regex_translation() -> None:
    assert java_regex(r"(?<word>\w+)\z").search("ab") is not None
    assert java_regex(r"\Qa.b\E").fullmatch("a.b") is not None
    assert java_regex(r"\Qa.b\E").fullmatch("axb") is None
    assert java_regex("a b # c", comments=True).fullmatch("ab") is not None
    assert java_regex(r"\d").search("٣") is None  # ASCII digits only, as in Java


@pytest.mark.parametrize(
    ("actual", "expected", "ok"),
    [
        ({"a": 1}, {"a": 1}, True),
        ({"a": 1, "b": 2}, {"a": 1}, False),  # extra key
        ({"a": 1}, {"a": 1, "b": 2}, False),  # missing key
        (1, True, False),  # booleans never equal numbers
        (True, 1, False),
        (1, 1.0, True),  # numbers compare by value
        ([1, 2], [2, 1], False),  # list order matters
        ("1", 1, False),
        (None, None, True),
        ({}, {}, True),
    ],
)
def test_match_exactness(actual: Any, expected: Any, ok: bool) -> None:
    assert (describe_mismatch(actual, expected, "f") is None) is ok
    text = f"""
"m":
  - do: {{cluster.health: {{}}}}
  - match: {{v: {json.dumps(expected)}}}
"""
    result = run_one(text, answer({"v": actual}))
    assert (result.status is Status.PASS) is ok, result.message


# --- truthiness ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "truthy"),
    [
        ("", False),
        (False, False),
        ("false", False),
        ("FALSE", False),
        (0, False),
        ("0", False),
        (None, False),
        (0.0, True),  # Java prints 0.0, which is none of the false spellings
        ([], True),
        ({}, True),
        ("x", True),
        ("no", True),
        (1, True),
        (True, True),
    ],
)
def test_is_true_is_false_truthiness(value: Any, truthy: bool) -> None:
    body = {"v": value}
    is_true = run_one('"t":\n  - do: {cluster.health: {}}\n  - is_true: v\n', answer(body))
    is_false = run_one('"f":\n  - do: {cluster.health: {}}\n  - is_false: v\n', answer(body))
    assert (is_true.status is Status.PASS) is truthy
    assert (is_false.status is Status.PASS) is not truthy


def test_missing_field_is_false_not_true() -> None:
    assert run_one('"t":\n  - do: {cluster.health: {}}\n  - is_true: nope\n').status is Status.FAIL
    assert run_one('"f":\n  - do: {cluster.health: {}}\n  - is_false: a.b\n').status is Status.PASS


def test_out_of_bounds_index_fails_even_for_is_false() -> None:
    result = run_one('"f":\n  - do: {cluster.health: {}}\n  - is_false: l.3\n', answer({"l": []}))
    assert result.status is Status.FAIL
    assert "out of bounds" in result.message


# --- catch ---------------------------------------------------------------------------------------

ERROR_BODY = {
    "error": {
        "root_cause": [{"type": "security_exception", "reason": "denied for user [bob]"}],
        "type": "security_exception",
        "reason": "denied for user [bob]",
    },
    "status": 403,
}


@pytest.mark.parametrize(
    ("catch", "status", "ok"),
    [
        ("bad_request", 400, True),
        ("bad_request", 401, False),
        ("unauthorized", 401, True),
        ("forbidden", 403, True),
        ("forbidden", 404, False),
        ("missing", 404, True),
        ("conflict", 409, True),
        ("request", 500, True),
        ("request", 418, True),
        ("request", 400, False),  # named statuses are not "request"
        ("request", 409, False),
        ("forbidden", 200, False),  # an expected error that does not come fails
        ("/denied \\s for \\s user/", 403, False),  # catch regexes have no x flag
        ("/denied for user \\[bob\\]/", 403, True),
        ("/type=security_exception, reason=denied/", 403, True),  # Java Map.toString
        ("/nothing like this/", 403, False),
        ("/denied/", 200, False),
    ],
)
def test_catch_mapping(catch: str, status: int, ok: bool) -> None:
    text = f"""
"c":
  - do:
      catch: {json.dumps(catch)}
      security.authenticate: {{}}
"""
    result = run_one(text, answer(ERROR_BODY if status >= 400 else {"ok": 1}, status))
    assert (result.status is Status.PASS) is ok, result.message


def test_error_response_is_the_response_after_catch() -> None:
    result = run_one(
        """
"c":
  - do:
      catch: forbidden
      security.authenticate: {}
  - match: {error.type: security_exception}
  - match: {error.root_cause.0.reason: "denied for user [bob]"}
  - match: {status: 403}
""",
        answer(ERROR_BODY, 403),
    )
    assert result.status is Status.PASS, result.message


def test_error_without_catch_fails_and_ignore_accepts_it() -> None:
    failing = run_one(
        '"c":\n  - do: {security.delete_role: {name: r}}\n', answer({"found": False}, 404)
    )
    assert failing.status is Status.FAIL
    assert "expected [2xx] status code but api [security.delete_role] returned [404]" in (
        failing.message
    )
    ignored, executor = run_yaml(
        '"c":\n  - do: {security.delete_role: {name: r, ignore: 404}}\n',
        answer({"found": False}, 404),
    )
    assert ignored[0].status is Status.PASS, ignored[0].message
    assert executor.requests[0].ignore == frozenset({404})
    assert "ignore" not in executor.requests[0].params


def test_unknown_catch_value_fails() -> None:
    result = run_one('"c":\n  - do: {catch: sometimes, security.authenticate: {}}\n')
    assert result.status is Status.FAIL
    assert "catch value [sometimes] not supported" in result.message


def test_catch_param_expects_a_client_side_error() -> None:
    good, executor = run_yaml('"c":\n  - do: {catch: param, security.authenticate: {bogus: 1}}\n')
    assert good[0].status is Status.PASS
    assert executor.requests == []  # nothing is sent
    bad = run_one('"c":\n  - do: {catch: param, security.authenticate: {}}\n')
    assert bad.status is Status.FAIL


# --- length, comparisons, transform_and_set -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "length", "ok"),
    [
        ([1, 2, 3], 3, True),
        ({"a": 1, "b": 2}, 2, True),
        ("héllo", 5, True),
        ("😀", 2, True),  # UTF-16 code units, as String.length()
        ([], 1, False),
        (5, 1, False),  # unsupported type
        (None, 0, False),
    ],
)
def test_length(value: Any, length: int, ok: bool) -> None:
    text = f'"l":\n  - do: {{cluster.health: {{}}}}\n  - length: {{v: {length}}}\n'
    result = run_one(text, answer({"v": value}))
    assert (result.status is Status.PASS) is ok, result.message


def test_length_must_be_a_number() -> None:
    result = run_one('"l":\n  - do: {cluster.health: {}}\n  - length: {v: many}\n')
    assert result.status is Status.FAIL
    assert "length is not a valid number" in result.message


@pytest.mark.parametrize(
    ("op", "actual", "expected", "ok"),
    [
        ("gt", 5, 4, True),
        ("gt", 4, 4, False),
        ("gte", 4, 4, True),
        ("gte", 3, 4, False),
        ("lt", 3, 4, True),
        ("lt", 4, 4, False),
        ("lte", 4, 4, True),
        ("lte", 5, 4, False),
        ("gt", 2.5, 2, True),
        ("lt", "a", "b", True),
        ("gt", "5", 4, False),  # no comparing a string with a number
        ("gt", None, 4, False),
    ],
)
def test_numeric_comparisons(op: str, actual: Any, expected: Any, ok: bool) -> None:
    text = f'"c":\n  - do: {{cluster.health: {{}}}}\n  - {op}: {{v: {json.dumps(expected)}}}\n'
    result = run_one(text, answer({"v": actual}))
    assert (result.status is Status.PASS) is ok, result.message


def test_comparison_against_stashed_value() -> None:
    result = run_one(
        """
"c":
  - do: {cluster.health: {}}
  - set: {low: low}
  - gt: {high: $low}
  - lte: {low: $low}
""",
        answer({"low": 3, "high": 9}),
    )
    assert result.status is Status.PASS, result.message


def test_transform_and_set_base64_credentials() -> None:
    expected = base64.b64encode(b"key-id:s3cret").decode()
    result, executor = run_yaml(
        """
"t":
  - do: {security.create_api_key: {body: {name: n}}}
  - transform_and_set: {login: "#base64EncodeCredentials(id,api_key)"}
  - match: {encoded: $login}
  - transform_and_set: {literal: "#base64Encode(a:b)", plain: "as is"}
  - do:
      headers: {Authorization: "ApiKey ${login}"}
      security.authenticate: {}
  - match: {ok: true}
""",
        lambda r: (200, {"id": "key-id", "api_key": "s3cret", "encoded": expected, "ok": True}),
    )
    assert result[0].status is Status.PASS, result[0].message
    assert executor.requests[1].headers == {"Authorization": f"ApiKey {expected}"}


def test_transform_and_set_mismatch_fails() -> None:
    result = run_one(
        """
"t":
  - do: {security.create_api_key: {body: {name: n}}}
  - transform_and_set: {login: "#base64EncodeCredentials(id,api_key)"}
  - match: {encoded: $login}
""",
        answer({"id": "a", "api_key": "b", "encoded": "not-it"}),
    )
    assert result.status is Status.FAIL


# --- the runner must be able to fail --------------------------------------------------------------


def test_unknown_operator_fails_the_section_before_anything_runs() -> None:
    results, executor = run_yaml(
        """
"first":
  - do: {cluster.health: {}}
  - is_ture: status
---
"second":
  - do: {cluster.health: {}}
  - match: {status: green}
""",
        answer({"status": "green"}),
    )
    assert [r.status for r in results] == [Status.FAIL, Status.PASS]
    assert "unknown operator" in results[0].message
    assert "is_ture" in results[0].message
    assert len(executor.requests) == 1  # only the second section sent anything


def test_unknown_operator_in_setup_fails_every_section() -> None:
    results, _ = run_yaml(
        """
setup:
  - frobnicate: {}
---
"a":
  - do: {cluster.health: {}}
---
"b":
  - do: {cluster.health: {}}
"""
    )
    assert [r.status for r in results] == [Status.FAIL, Status.FAIL]


def test_failing_assertion_fails_and_stops_the_section() -> None:
    results, executor = run_yaml(
        """
"a":
  - do: {cluster.health: {}}
  - match: {status: red}
  - do: {security.authenticate: {}}
""",
        answer({"status": "green"}),
    )
    assert results[0].status is Status.FAIL
    assert "t.yml:4" in results[0].message
    assert 'expected "red" but was "green"' in results[0].message
    assert executor.apis == ["cluster.health"]


@pytest.mark.parametrize(
    "step",
    [
        "- match: {a: 1, b: 2}",  # exactly one field per assertion
        "- set: [a]",
        "- do: {}",
        "- do: {cluster.health: {}, security.authenticate: {}}",
        "- do: {node_selector: {version: current}, cluster.health: {}}",
        "- do: {cluster.health: {level: {nested: 1}}}",
        '- do: {security.put_role: {name: r, body: "not json"}}',
        "- gt: {a: [1]}",
        "- close_to: {a: 1}",
        "- is_true: {a: 1}",
    ],
)
def test_malformed_steps_fail(step: str) -> None:
    result = run_one(f'"bad":\n  - do: {{cluster.health: {{}}}}\n  {step}\n')
    assert result.status is Status.FAIL
    assert result.message.startswith("invalid test")


def test_unknown_api_fails_with_a_clear_reason() -> None:
    result = run_one('"a":\n  - do: {security.bulk_grant_api_key: {body: {}}}\n')
    assert result.status is Status.FAIL
    assert "API [security.bulk_grant_api_key] is not in the runner's API table" in result.message


def test_unsupported_parameter_and_missing_body_fail() -> None:
    unknown = run_one('"a":\n  - do: {security.get_api_key: {colour: blue}}\n')
    assert unknown.status is Status.FAIL
    assert "path/param [colour] not supported by [security.get_api_key] api" in unknown.message
    no_body = run_one('"a":\n  - do: {security.put_role: {name: r}}\n')
    assert no_body.status is Status.FAIL
    assert "body is required by [security.put_role] api" in no_body.message


def test_section_without_steps_fails() -> None:
    result = run_one('"empty":\n  - skip: {features: headers}\n')
    assert result.status is Status.FAIL


def test_invalid_files_are_rejected() -> None:
    for text in [
        "not: [a, list, of, sections",  # broken YAML
        '"a": {do: {}}',  # a section must be a list
        '"a":\n  - do: {}\n    match: {}\n',  # a step with two operators
        'setup:\n  - do: {x: {}}\n---\nsetup:\n  - do: {x: {}}\n---\n"a":\n  - do: {x: {}}\n',
        '"a":\n  - do: {x: {}}\n---\n"a":\n  - do: {x: {}}\n',
        '"a":\n  - do: {cluster.health: {level: 1, level: 2}}\n',  # duplicate key
        "setup:\n  - do: {cluster.health: {}}\n",  # no test section
    ]:
        with pytest.raises(SuiteParseError):
            parse_suite(text, Path("bad.yml"))


# --- skip / requires ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prerequisite", "version", "expected"),
    [
        ("skip: {features: headers}", "8.17.4", Status.PASS),
        ("skip: {features: [headers, transform_and_set]}", "8.17.4", Status.PASS),
        ("skip: {features: node_selector}", "8.17.4", Status.SKIP),
        ("skip: {features: no_xpack}", "8.17.4", Status.SKIP),
        ("requires: {test_runner_features: [contains]}", "8.17.4", Status.PASS),
        ("requires: {test_runner_features: yaml}", "8.17.4", Status.SKIP),
        ("skip: {version: '8.0.0 - 8.99.99', reason: r}", "8.17.4", Status.SKIP),
        ("skip: {version: ' - 8.17.3', reason: r}", "8.17.4", Status.PASS),
        ("skip: {version: '7.0.0 - 7.17.99, 8.17.4 - ', reason: r}", "8.17.4", Status.SKIP),
        ("skip: {version: all, reason: r}", "8.17.4", Status.SKIP),
        ("skip: {version: '8.0.0 - 8.99.99', reason: r}", None, Status.FAIL),  # unknown version
        ("skip: {version: '8.0.0', reason: r}", "8.17.4", Status.FAIL),  # malformed range
        ("skip: {version: '8.0.0 - 8.99.99'}", "8.17.4", Status.FAIL),  # reason is mandatory
        ("skip: {awaits_fix: 'https://x/1', reason: r}", "8.17.4", Status.SKIP),
        ("requires: {cluster_features: gte_v8.10.0, reason: r}", "8.17.4", Status.PASS),
        ("requires: {cluster_features: gte_v8.10.0, reason: r}", "8.9.0", Status.SKIP),
        ("requires: {cluster_features: gte_v8.15.0, reason: r}", "8.17.4", Status.SKIP),
        ("requires: {cluster_features: security.api_keys, reason: r}", "8.17.4", Status.FAIL),
        ("skip: {cluster_features: some_feature, reason: r}", "8.17.4", Status.FAIL),
        ("requires: {capabilities: [{method: GET, path: /}], reason: r}", "8.17.4", Status.FAIL),
        ("skip: {os: debian-8, reason: r}", "8.17.4", Status.FAIL),  # needs skip_os
        ("skip: {colour: blue}", "8.17.4", Status.FAIL),
        ("skip: {reason: r}", "8.17.4", Status.FAIL),  # no predicate
    ],
)
def test_prerequisites(prerequisite: str, version: str | None, expected: Status) -> None:
    text = f'"p":\n  - {prerequisite}\n  - do: {{cluster.health: {{}}}}\n'
    result = run_one(text, version=version)
    assert result.status is expected, result.message


def test_skip_must_open_the_section() -> None:
    result = run_one('"p":\n  - do: {cluster.health: {}}\n  - skip: {features: headers}\n')
    assert result.status is Status.FAIL


def test_skip_in_setup_applies_to_every_section() -> None:
    results, executor = run_yaml(
        """
setup:
  - skip: {features: node_selector}
  - do: {cluster.health: {}}
---
"a":
  - do: {cluster.health: {}}
---
"b":
  - do: {cluster.health: {}}
"""
    )
    assert [r.status for r in results] == [Status.SKIP, Status.SKIP]
    assert executor.requests == []


# --- section life cycle --------------------------------------------------------------------------


def test_reset_setup_stash_clearing_and_teardown_order() -> None:
    events: list[str] = []

    def responder(request: ApiRequest) -> tuple[int, Any]:
        events.append(request.api)
        return 200, {"value": "v"}

    results, _ = run_yaml(
        """
setup:
  - do: {cluster.health: {}}
  - set: {value: from_setup}
---
teardown:
  - do: {security.delete_role: {name: r, ignore: 404}}
---
"uses setup stash":
  - do: {security.authenticate: {}}
  - match: {value: $from_setup}
---
"fails but still tears down":
  - do: {security.authenticate: {}}
  - match: {value: other}
---
"passes":
  - do: {security.authenticate: {}}
""",
        responder,
        reset=lambda: events.append("reset"),
    )
    assert [r.status for r in results] == [Status.FAIL, Status.FAIL, Status.PASS]
    assert "from_setup" in results[0].message  # the stash is cleared after setup
    assert (
        events == ["reset", "cluster.health", "security.authenticate", "security.delete_role"] * 3
    )


def test_setup_failure_skips_test_and_teardown() -> None:
    results, executor = run_yaml(
        """
setup:
  - do: {cluster.health: {}}
---
teardown:
  - do: {security.authenticate: {}}
---
"a":
  - do: {security.authenticate: {}}
""",
        answer({}, 500),
    )
    assert results[0].status is Status.FAIL
    assert results[0].message.startswith("setup failed")
    assert executor.apis == ["cluster.health"]


def test_teardown_failure_fails_the_section() -> None:
    def responder(request: ApiRequest) -> tuple[int, Any]:
        return (500, {}) if request.api == "security.delete_role" else (200, {})

    results, _ = run_yaml(
        """
teardown:
  - do: {security.delete_role: {name: r}}
---
"a":
  - do: {security.authenticate: {}}
""",
        responder,
    )
    assert results[0].status is Status.FAIL
    assert "teardown failed" in results[0].message


def test_reset_failure_fails_the_section() -> None:
    def broken() -> None:
        raise RuntimeError("no reset for you")

    result = run_one('"a":\n  - do: {cluster.health: {}}\n', reset=broken)
    assert result.status is Status.FAIL
    assert "no reset for you" in result.message


def test_match_without_a_response_fails() -> None:
    result = run_one('"a":\n  - match: {a: 1}\n')
    assert result.status is Status.FAIL
    assert "no response" in result.message


# --- arguments --------------------------------------------------------------------------------


def test_do_arguments_null_lists_and_bodies() -> None:
    results, executor = run_yaml(
        """
"a":
  - do:
      security.has_privileges:
        user: null
        body: >
          {"cluster": ["all"]}
  - do: {security.get_privileges: {application: app, name: [read, write]}}
  - do: {security.put_role: {name: r, body: {cluster: [all]}}}
  - do:
      security.query_api_keys:
        with_limited_by: true
        body: {}
""",
        answer({}),
    )
    assert results[0].status is Status.PASS, results[0].message
    has_privileges, get_privileges, put_role, query = executor.requests
    assert has_privileges.params == {}
    assert has_privileges.bodies == ({"cluster": ["all"]},)
    assert get_privileges.params == {"application": "app", "name": "read,write"}
    assert put_role.bodies == ({"cluster": ["all"]},)
    assert query.params == {"with_limited_by": True}
    assert query.bodies == ({},)


def test_several_json_documents_make_several_bodies() -> None:
    step = '- do: {security.put_role: {name: r, body: "{\\"a\\": 1}\\n{\\"b\\": 2}\\n"}}'
    _, executor = run_yaml(f'"a":\n  {step}\n', validate=False)
    assert executor.requests[0].bodies == ({"a": 1}, {"b": 2})


# --- warnings ------------------------------------------------------------------------------------

WARNING = '299 Elasticsearch-8.17.4-abcdef1 "[x] is deprecated, use \\"y\\""'


@pytest.mark.parametrize(
    ("options", "ok"),
    [
        ("", False),  # an unexpected warning fails
        ("warnings: ['[x] is deprecated, use \"y\"']", True),
        ("allowed_warnings: ['[x] is deprecated, use \"y\"']", True),
        ("warnings_regex: ['.*deprecated.*']", True),
        ("allowed_warnings_regex: ['\\[x\\].*']", True),
        ("warnings: ['something else']", False),
    ],
)
def test_warnings(options: str, ok: bool) -> None:
    def responder(_request: ApiRequest) -> ApiResponse:
        return ApiResponse(status=200, body={}, warning_headers=[WARNING])

    body = f"\n      {options}" if options else ""
    text = f'"w":\n  - do:{body}\n      cluster.health: {{}}\n'
    result = run_one(text, responder)
    assert (result.status is Status.PASS) is ok, result.message


def test_expected_warning_that_does_not_come_fails() -> None:
    result = run_one('"w":\n  - do:\n      warnings: [gone]\n      cluster.health: {}\n')
    assert result.status is Status.FAIL
    assert "did not get expected warning" in result.message


def test_split_warning_headers() -> None:
    joined = f'{WARNING}, 299 Elasticsearch-8.17.4-abcdef1 "second, with comma"'
    assert split_warning_headers(joined) == [
        WARNING,
        '299 Elasticsearch-8.17.4-abcdef1 "second, with comma"',
    ]


# --- Java toString ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "true"),
        (3, "3"),
        (0.5, "0.5"),
        (1.0, "1.0"),
        (1e7, "1.0E7"),
        (1.5e-5, "1.5E-5"),
        ({"a": [1, {"b": None}]}, "{a=[1, {b=null}]}"),
    ],
)
def test_java_str(value: Any, text: str) -> None:
    assert java_str(value) == text


# --- the official client over HTTP ----------------------------------------------------------------


def _server_reply(request: Recorded) -> Reply:
    if request.path == "/_security/role/missing":
        return Reply(404, {"found": False})
    if request.path == "/_security/_authenticate" and request.headers.get(
        "authorization", ""
    ).startswith("ApiKey "):
        return Reply(
            401,
            {"error": {"type": "security_exception", "reason": "bad key"}, "status": 401},
        )
    if request.path == "/_security/api_key" and request.method == "PUT":
        return Reply(200, {"id": "i", "api_key": "k", "name": "n", "encoded": "aTpr"})
    if request.path == "/_cluster/health":
        return Reply(200, {"status": "green"}, headers=[("Warning", WARNING)])
    return Reply(200, {"acknowledged": True})


def test_client_executor_on_the_wire() -> None:
    text = """
"wire":
  - do:
      security.create_api_key:
        body: {name: n, expiration: 1d}
  - transform_and_set: {creds: "#base64EncodeCredentials(id,api_key)"}
  - match: {encoded: $creds}
  - do:
      catch: unauthorized
      headers: {Authorization: "ApiKey ${creds}"}
      security.authenticate: {}
  - match: {error.reason: bad key}
  - do: {security.delete_role: {name: missing, ignore: 404}}
  - match: {found: false}
  - do:
      warnings: ['[x] is deprecated, use "y"']
      cluster.health: {wait_for_status: yellow}
  - do: {security.get_api_key: {id: i, owner: true}}
  - do: {security.authenticate: {error_trace: true, source: "{}"}}
"""
    with (
        RecordingServer(_server_reply) as server,
        ClientExecutor(server.url, DEFAULT_USER, DEFAULT_PASSWORD) as executor,
    ):
        suite = parse_suite(text, Path("wire.yml"))
        result = Runner(executor, version="8.17.4").run_section(suite, "wire")
        assert result.status is Status.PASS, result.message
        create, authenticate, delete, health, get, fallback = server.requests
    default_auth = "Basic " + base64.b64encode(b"x_pack_rest_user:x-pack-test-password").decode()
    assert (create.method, create.path) == ("PUT", "/_security/api_key")
    assert create.json() == {"name": "n", "expiration": "1d"}
    assert create.headers["authorization"] == default_auth
    assert create.headers["content-type"].startswith("application/vnd.elasticsearch+json")
    assert authenticate.headers["authorization"] == "ApiKey aTpr"
    assert (delete.method, delete.path) == ("DELETE", "/_security/role/missing")
    assert "ignore" not in delete.query
    assert health.query == {"wait_for_status": ["yellow"]}
    assert get.query == {"id": ["i"], "owner": ["true"]}
    # `source` is no argument of the client's method: perform_request with the spec's path
    assert (fallback.method, fallback.path) == ("GET", "/_security/_authenticate")
    assert fallback.query == {"error_trace": ["true"], "source": ["{}"]}


def test_client_executor_reports_transport_problems_as_failures() -> None:
    with (
        RecordingServer(lambda _r: Reply(200, {}, product=False)) as server,
        ClientExecutor(server.url, DEFAULT_USER, DEFAULT_PASSWORD) as executor,
    ):
        suite = parse_suite('"p":\n  - do: {cluster.health: {}}\n', Path("p.yml"))
        result = Runner(executor).run_section(suite, "p")
    assert result.status is Status.FAIL
    assert "X-Elastic-Product" in result.message


@pytest.mark.parametrize(
    ("name", "path_index"),
    [(name, i) for name in sorted(API_SPECS) for i in range(len(API_SPECS[name].paths))],
)
def test_api_table_matches_what_the_client_sends(name: str, path_index: int) -> None:
    spec = API_SPECS[name]
    path = spec.paths[path_index]
    params = {part: f"v-{part}" for part in path.parts}
    bodies = ({"field": 1},) if spec.body != "none" else ()
    bound = bind_request(name, params, bool(bodies))
    assert bound.path == path
    with (
        RecordingServer() as server,
        ClientExecutor(server.url, DEFAULT_USER, DEFAULT_PASSWORD) as executor,
    ):
        used = ClientExecutor.client_call(executor.client, bound, ApiRequest(name, params, bodies))
        assert used is not None, f"the official client has no usable method for {name}"
        response = executor.call(ApiRequest(name, params, bodies))
        (request,) = server.requests
    assert response.status == 200
    assert request.method in path.methods
    assert request.path == bound.url
    if bodies:
        assert request.json() == {"field": 1}


def test_bind_request_chooses_the_best_path() -> None:
    assert (
        bind_request("security.has_privileges", {}, True).url == "/_security/user/_has_privileges"
    )
    with_user = bind_request("security.has_privileges", {"user": "a/b"}, True)
    assert with_user.url == "/_security/user/a%2Fb/_has_privileges"
    assert bind_request("security.get_privileges", {"application": "x"}, False).url == (
        "/_security/privilege/x"
    )
    with pytest.raises(ParamError):
        bind_request("security.update_api_key", {}, False)  # the id is missing
    with pytest.raises(UnknownApiError):
        bind_request("nope.nope", {}, False)


# --- command line -----------------------------------------------------------------------------


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = tmp_path / "05_cli.yml"
    suite.write_text(
        """
"passes":
  - do: {cluster.health: {}}
  - match: {status: green}
---
"fails":
  - do: {cluster.health: {}}
  - match: {status: red}
---
"skipped":
  - skip: {features: node_selector}
  - do: {cluster.health: {}}
""",
        encoding="utf-8",
    )

    def reply(request: Recorded) -> Reply:
        return Reply(200, {"status": "green"} if request.path == "/_cluster/health" else {})

    with RecordingServer(reply) as server:
        code = main([server.url, str(suite), "--es-version", "8.17.4"])
        resets = [r for r in server.requests if r.path == "/_sandbox/reset"]
    out = capsys.readouterr()
    assert code == 1
    assert out.out.splitlines() == [
        "PASS 05_cli.yml::passes",
        "FAIL 05_cli.yml::fails",
        "SKIP 05_cli.yml::skipped",
        "1 passed, 1 failed, 1 skipped",
    ]
    assert 'expected "red" but was "green"' in out.err
    assert len(resets) == 2
    assert resets[0].method == "POST"


def test_command_line_without_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROTATOR_ES_REST_TESTS", str(tmp_path / "absent"))
    assert default_tests_dir() == tmp_path / "absent"
    assert main(["http://127.0.0.1:9"]) == 2


# --- Elastic's files, when present ------------------------------------------------------------


def _real_files() -> list[Path]:
    folder = default_tests_dir()
    return sorted(folder.glob("*.yml")) if folder.is_dir() else []


@pytest.mark.skipif(not _real_files(), reason="Elastic's YAML tests are absent (../shared)")
def test_every_real_file_compiles_and_uses_known_apis() -> None:
    unknown: set[str] = set()
    for path in _real_files():
        suite = load_suite(path)
        for section in (suite.setup, suite.teardown, *suite.tests):
            try:
                compiled = compile_section(section)
            except InvalidTestError as exc:  # pragma: no cover - would be a runner gap
                pytest.fail(f"{path.name}: {exc}")
            for action in compiled.actions:
                api = getattr(action, "api", None)
                if api is not None and api not in API_SPECS:
                    unknown.add(api)
    # 13_bulk_grant.yml's API is in no published spec or client (optional, see PROVENANCE.md).
    assert unknown <= {"security.bulk_grant_api_key"}
