"""Runner for Elastic's YAML REST tests (the ``rest-api-spec`` test format), written for rotator.

It follows ``rest-api-spec/src/yamlRestTest/resources/rest-api-spec/test/README.asciidoc`` and the
Java runner of ``elastic/elasticsearch`` (``test/yaml-rest-runner``): for each test section it
wipes the server (``reset``), runs ``setup``, clears the stash and the last response, runs the
section, then ``teardown``. Every step is checked before anything runs: an unknown operator, a
malformed step or a ``skip``/``requires`` that cannot be evaluated fails the section, never
passes it silently.

Command line, against a server that is already running (for ``rotator sandbox serve``)::

    python -m tests.conformance.yamlrunner URL [FILE...]

prints ``PASS|FAIL|SKIP file::section`` per section, failure details on stderr, and a summary
line ``N passed, M failed`` (``, K skipped`` when some were skipped).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml

from .apis import ParamError, UnknownApiError, bind_request
from .executor import ApiRequest, ApiResponse, ClientExecutor, Executor
from .javaish import (
    describe_mismatch,
    java_class,
    java_regex,
    java_str,
    java_string_length,
    json_dump,
)
from .stash import PathError, Stash, StashError, evaluate_path

__all__ = [
    "DEFAULT_PASSWORD",
    "DEFAULT_USER",
    "ENV_TESTS_DIR",
    "OPERATORS",
    "SUPPORTED_FEATURES",
    "Context",
    "InvalidTestError",
    "PrerequisiteError",
    "Runner",
    "Section",
    "SectionResult",
    "Status",
    "Step",
    "StepFailure",
    "Suite",
    "SuiteParseError",
    "compile_section",
    "default_tests_dir",
    "load_suite",
    "main",
    "parse_suite",
]

DEFAULT_USER = "x_pack_rest_user"
DEFAULT_PASSWORD = "x-pack-test-password"
ENV_TESTS_DIR = "ROTATOR_ES_REST_TESTS"

# Test-runner features this runner implements (Java's Features.SUPPORTED minus node_selector,
# yaml and stash_path_replace, which it does not). ``xpack``/``no_xpack`` are handled apart.
SUPPORTED_FEATURES = frozenset(
    {
        "allowed_warnings",
        "allowed_warnings_regex",
        "arbitrary_key",
        "catch_unauthorized",
        "close_to",
        "contains",
        "default_shards",
        "embedded_stash_key",
        "headers",
        "stash_in_key",
        "stash_in_path",
        "transform_and_set",
        "warnings",
        "warnings_regex",
    }
)

# Synthetic cluster features ``gte_vX.Y.Z`` exist for release versions up to this one.
_LAST_SYNTHETIC_VERSION = (8, 14, 0)
_GTE_FEATURE = re.compile(r"gte_v(\d+)\.(\d+)\.(\d+)")
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)(?:-[0-9A-Za-z.]+)*")
_JAVA_INT = re.compile(r"[+-]?[0-9]+")


def default_tests_dir() -> Path:
    """``$ROTATOR_ES_REST_TESTS``, else ``../shared/es-rest-tests/api_key`` beside the repository."""
    override = os.environ.get(ENV_TESTS_DIR)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2].parent / "shared" / "es-rest-tests" / "api_key"


# ---------------------------------------------------------------------------------------------
# Errors


class YamlTestError(Exception):
    """Base of the runner's own errors."""


class SuiteParseError(YamlTestError):
    """The file is not a valid YAML test suite."""


class InvalidTestError(YamlTestError):
    """A step is malformed or uses an operator this runner does not know."""


class PrerequisiteError(YamlTestError):
    """A ``skip``/``requires`` cannot be evaluated against this server."""


class StepFailure(YamlTestError):
    """A step failed while running (an assertion, an unexpected status...)."""


# ---------------------------------------------------------------------------------------------
# Parsing


@dataclass(frozen=True)
class Step:
    op: str
    arg: Any
    line: int


@dataclass(frozen=True)
class Section:
    name: str
    steps: tuple[Step, ...]
    line: int


@dataclass(frozen=True)
class Suite:
    path: Path
    setup: Section | None
    teardown: Section | None
    tests: tuple[Section, ...]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def section_names(self) -> list[str]:
        return [t.name for t in self.tests]

    def section(self, name: str) -> Section:
        for test in self.tests:
            if test.name == name:
                return test
        raise KeyError(name)


class _Loader(yaml.SafeLoader):
    """Safe loader that keeps timestamps as strings, makes keys strings, refuses duplicates."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping node, but found {node.id}", node.start_mark
            )
        self.flatten_mapping(node)
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = java_str(self.construct_object(key_node, deep=deep))
            if key in mapping:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key [{key}]", key_node.start_mark
                )
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping


# Jackson (the Java runner's YAML parser) keeps 2023-05-25T12:30:00Z as a string.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct(node: yaml.Node) -> Any:
    loader = _Loader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_suite(path: Path) -> Suite:
    """Read and parse one YAML test file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SuiteParseError(f"{path}: cannot read: {exc}") from exc
    return parse_suite(text, path)


def parse_suite(text: str, path: Path) -> Suite:
    """Parse the documents of a test file: ``setup``, ``teardown`` and named test sections."""
    try:
        documents = list(yaml.compose_all(text, Loader=_Loader))
        setup: Section | None = None
        teardown: Section | None = None
        tests: list[Section] = []
        for document in documents:
            if document is None:
                continue
            where = f"{path.name}:{document.start_mark.line + 1}"
            if not isinstance(document, yaml.MappingNode) or len(document.value) != 1:
                raise SuiteParseError(
                    f"{where}: each document must be a mapping holding exactly one section"
                )
            key_node, value_node = document.value[0]
            section = _parse_section(java_str(_construct(key_node)), value_node, path)
            if section.name == "setup":
                if setup is not None:
                    raise SuiteParseError(f"{where}: a second [setup] section")
                setup = section
            elif section.name == "teardown":
                if teardown is not None:
                    raise SuiteParseError(f"{where}: a second [teardown] section")
                teardown = section
            else:
                if any(t.name == section.name for t in tests):
                    raise SuiteParseError(f"{where}: duplicate test section [{section.name}]")
                tests.append(section)
    except yaml.YAMLError as exc:
        raise SuiteParseError(f"{path.name}: invalid YAML: {exc}") from exc
    if not tests:
        raise SuiteParseError(f"{path.name}: no test section")
    return Suite(path, setup, teardown, tuple(tests))


def _parse_section(name: str, node: yaml.Node, path: Path) -> Section:
    line = node.start_mark.line + 1
    if not isinstance(node, yaml.SequenceNode):
        raise SuiteParseError(f"{path.name}:{line}: section [{name}] must be a list of steps")
    steps: list[Step] = []
    for item in node.value:
        step_line = item.start_mark.line + 1
        if not isinstance(item, yaml.MappingNode) or len(item.value) != 1:
            raise SuiteParseError(
                f"{path.name}:{step_line}: each step of [{name}] must be a mapping with exactly "
                f"one operator"
            )
        op_node, arg_node = item.value[0]
        steps.append(Step(java_str(_construct(op_node)), _construct(arg_node), step_line))
    return Section(name, tuple(steps), line)


# ---------------------------------------------------------------------------------------------
# Execution context


class Context:
    """The stash and the last response of the section being run."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.stash = Stash()
        self.response: ApiResponse | None = None

    def clear(self) -> None:
        self.stash.clear()
        self.response = None

    def set_response(self, response: ApiResponse, headers: dict[str, str]) -> None:
        self.response = response
        self.stash.stash_value("body", response.body)
        if headers:
            self.stash.stash_value("request_headers", dict(headers))

    def response_value(self, path: str) -> Any:
        if self.response is None:
            raise StepFailure(f"there is no response to read [{path}] from (no `do` ran yet)")
        body = self.response.body
        if isinstance(body, dict | list):
            return evaluate_path(body, path, self.stash)
        if isinstance(body, bool) and path == "":
            return body  # HEAD: true when the resource exists
        return None  # a text (or empty) body has no parsed fields

    def actual(self, field_path: str) -> Any:
        if self.stash.contains(field_path):
            return self.stash.get_value(field_path)
        return self.response_value(field_path)

    def expected(self, value: Any) -> Any:
        if isinstance(value, dict):
            return self.stash.replace(value)
        if self.stash.contains(value):
            return self.stash.get_value(value)
        return value


# ---------------------------------------------------------------------------------------------
# Steps


class Action:
    """A compiled step."""

    def __init__(self, step: Step) -> None:
        self.step = step

    def run(self, ctx: Context) -> None:
        raise NotImplementedError


def _fail(message: str) -> StepFailure:
    return StepFailure(message)


def _invalid(step: Step, message: str) -> InvalidTestError:
    return InvalidTestError(f"line {step.line} [{step.op}]: {message}")


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _texts(step: Step, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid(step, f"[{key}] must be a list of strings")
    return list(value)


def _compile_regex(step: Step, pattern: str, *, comments: bool = False) -> re.Pattern[str]:
    try:
        return java_regex(pattern, comments=comments)
    except re.error as exc:
        raise _invalid(step, f"invalid regular expression [{pattern}]: {exc}") from exc


def _json_documents(step: Step, text: str) -> list[dict[str, Any]]:
    """Bodies written as JSON text; several documents (a bulk body) are allowed."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ValueError(f"duplicate field [{key}]")
            result[key] = value
        return result

    decoder = json.JSONDecoder(object_pairs_hook=no_duplicates)
    bodies: list[dict[str, Any]] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            break
        try:
            document, position = decoder.raw_decode(text, position)
        except ValueError as exc:
            raise _invalid(step, f"body is not valid JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise _invalid(step, f"body must be a JSON object, got {json_dump(document)}")
        bodies.append(document)
    return bodies


_CATCHES: dict[str, Callable[[int], bool]] = {
    "bad_request": lambda s: s == 400,
    "unauthorized": lambda s: s == 401,
    "forbidden": lambda s: s == 403,
    "missing": lambda s: s == 404,
    "request_timeout": lambda s: s == 408,
    "conflict": lambda s: s == 409,
    "gone": lambda s: s == 410,
    "unavailable": lambda s: s == 503,
    "request": lambda s: s >= 400 and s not in {400, 401, 403, 404, 408, 409, 410},
}
_CATCH_LABELS = {
    "bad_request": "400",
    "unauthorized": "401",
    "forbidden": "403",
    "missing": "404",
    "request_timeout": "408",
    "conflict": "409",
    "gone": "410",
    "unavailable": "503",
    "request": "4xx|5xx",
}
_WARNING_HEADER = re.compile(r'299 Elasticsearch-\S+ "((?:[^"\\]|\\.)*)"(?: "[^"]*")?')
_XCONTENT_POSITION = re.compile(r"^\[\d+:\d+\] ")
_DO_LISTS = ("warnings", "warnings_regex", "allowed_warnings", "allowed_warnings_regex")


class DoAction(Action):
    """``do``: one API call, with ``catch``, ``headers``, ``warnings``... around it."""

    def __init__(self, step: Step) -> None:
        super().__init__(step)
        arg = step.arg
        if not isinstance(arg, dict):
            raise _invalid(step, "must be a mapping")
        self.catch: str | None = None
        self.headers: dict[str, str] = {}
        lists: dict[str, list[str]] = {k: [] for k in _DO_LISTS}
        api: str | None = None
        api_args: dict[str, Any] = {}
        for key, value in arg.items():
            if key == "catch":
                if not _scalar(value):
                    raise _invalid(step, "[catch] must be a string")
                self.catch = java_str(value)
            elif key in _DO_LISTS:
                lists[key] = _texts(step, key, value)
            elif key == "headers":
                if not isinstance(value, dict) or not all(_scalar(v) for v in value.values()):
                    raise _invalid(step, "[headers] must map header names to strings")
                self.headers = {k: java_str(v) for k, v in value.items()}
            elif key == "node_selector":
                raise _invalid(step, "[node_selector] is not supported by this runner")
            elif isinstance(value, dict):
                if api is not None:
                    raise _invalid(step, f"more than one API call ([{api}] and [{key}])")
                api, api_args = key, value
            else:
                raise _invalid(step, f"unsupported field [{key}] (an API call takes a mapping)")
        if api is None:
            raise _invalid(step, "client call section is mandatory within a do section")
        for warning in lists["warnings"]:
            if warning in lists["allowed_warnings"]:
                raise _invalid(step, f"the warning [{warning}] was both allowed and expected")
        if set(lists["warnings_regex"]) & set(lists["allowed_warnings_regex"]):
            raise _invalid(step, "a warning pattern was both allowed and expected")
        catch = self.catch
        self.catch_regex: re.Pattern[str] | None = None
        if catch is not None:
            if len(catch) > 2 and catch.startswith("/") and catch.endswith("/"):
                self.catch_regex = _compile_regex(step, catch[1:-1])
            elif catch not in _CATCHES and catch != "param":
                raise _invalid(step, f"catch value [{catch}] not supported")
        self.warnings = lists["warnings"]
        self.allowed_warnings = lists["allowed_warnings"]
        self.warnings_regex = [_compile_regex(step, p) for p in lists["warnings_regex"]]
        self.allowed_warnings_regex = [
            _compile_regex(step, p) for p in lists["allowed_warnings_regex"]
        ]
        self.api = api
        self.params: dict[str, Any] = {}
        self.bodies: list[Any] = []
        self.ignore: frozenset[int] = frozenset()
        for name, value in api_args.items():
            self._add_argument(step, name, value)

    def _add_argument(self, step: Step, name: str, value: Any) -> None:
        if name == "body":
            if value is None:
                return
            if isinstance(value, str):
                self.bodies = list(_json_documents(step, value))
            elif isinstance(value, dict):
                self.bodies = [value]
            elif isinstance(value, list):
                self.bodies = list(value)  # one body per item (bulk-style)
            else:
                raise _invalid(step, f"[body] must be a mapping or JSON text, got {value!r}")
        elif name == "ignore":
            items = value if isinstance(value, list) else java_str(value).split(",")
            try:
                self.ignore = frozenset(int(java_str(i).strip()) for i in items)
            except ValueError as exc:
                raise _invalid(step, f"[ignore] must be HTTP status codes: {value!r}") from exc
        elif value is None:
            return  # the Java runner drops null arguments (`user: null`)
        elif isinstance(value, list):
            if not all(_scalar(v) for v in value):
                raise _invalid(step, f"argument [{name}] must be a scalar or a list of scalars")
            self.params[name] = ",".join(java_str(v) for v in value)
        elif isinstance(value, dict):
            raise _invalid(step, f"argument [{name}] cannot be a mapping (only [body] can)")
        else:
            self.params[name] = value

    def run(self, ctx: Context) -> None:
        stash = ctx.stash
        params = {
            k: java_str(stash.get_value(v)) if stash.contains(v) else v
            for k, v in self.params.items()
        }
        headers = {
            k: java_str(stash.get_value(v)) if stash.contains(v) else v
            for k, v in self.headers.items()
        }
        bodies = tuple(stash.replace(b) for b in self.bodies)
        if self.catch == "param":
            try:
                bind_request(self.api, params, bool(bodies))
            except ParamError:
                return  # the expected client-side error; nothing is sent
            raise _fail(f"expected a client-side parameter error (catch: param) for [{self.api}]")
        request = ApiRequest(self.api, params, bodies, headers, self.ignore)
        response = ctx.executor.call(request)
        ctx.set_response(response, headers)
        status = response.status
        is_error = status >= 300 and status not in self.ignore
        if self.catch is None:
            if is_error:
                raise _fail(self._status_message(response, "2xx"))
            self._check_warnings(response.warning_headers)
            return
        if self.catch_regex is None:
            label = _CATCH_LABELS[self.catch]
            if not is_error or not _CATCHES[self.catch](status):
                raise _fail(self._status_message(response, label))
            return
        if not is_error or status < 400:
            raise _fail(self._status_message(response, "4xx|5xx"))
        error = ctx.response_value("error")
        if error is None:
            raise _fail(f"error was expected in the response: {json_dump(response.body)}")
        if not self.catch_regex.search(java_str(error)):
            raise _fail(
                f"the error message was expected to match the provided regex [{self.catch}] "
                f"but didn't: {java_str(error)}"
            )

    def _status_message(self, response: ApiResponse, expected: str) -> str:
        kind = f" ({response.error_class})" if response.error_class else ""
        return (
            f"expected [{expected}] status code but api [{self.api}] returned "
            f"[{response.status}]{kind} [{json_dump(response.body)}]"
        )

    def _check_warnings(self, headers: list[str]) -> None:
        expected = list(self.warnings)
        expected_regex = list(self.warnings_regex)
        unexpected: list[str] = []
        unmatched: list[str] = []
        for header in headers:
            match = _WARNING_HEADER.fullmatch(header)
            if match is None:
                unmatched.append(header)
                continue
            raw = _XCONTENT_POSITION.sub("", match.group(1))
            plain = re.sub(r"\\(.)", r"\1", unquote(raw))
            if plain in self.allowed_warnings:
                continue
            if plain in expected:
                expected.remove(plain)
                continue
            pattern = next((p for p in expected_regex if p.fullmatch(raw)), None)
            if pattern is not None:
                expected_regex.remove(pattern)
                continue
            if any(p.fullmatch(raw) for p in self.allowed_warnings_regex):
                continue
            unexpected.append(header)
        problems = []
        if unexpected:
            problems.append(f"got unexpected warning header(s) {unexpected}")
        if unmatched:
            problems.append(f"got unmatched warning header(s) {unmatched}")
        if expected:
            problems.append(f"did not get expected warning header(s) {expected}")
        if expected_regex:
            missing = [p.pattern for p in expected_regex]
            problems.append(f"regular expression(s) {missing} did not match any warning header")
        if problems:
            raise _fail("; ".join(problems))


class SetAction(Action):
    """``set: {response.path: stash_key, ...}``."""

    def __init__(self, step: Step) -> None:
        super().__init__(step)
        if not isinstance(step.arg, dict) or not step.arg:
            raise _invalid(step, "must map response paths to stash keys")
        if not all(_scalar(v) for v in step.arg.values()):
            raise _invalid(step, "stash keys must be strings")
        self.pairs = {k: java_str(v) for k, v in step.arg.items()}

    def run(self, ctx: Context) -> None:
        for path, key in self.pairs.items():
            ctx.stash.stash_value(key, ctx.response_value(path))


class TransformAndSetAction(Action):
    """``transform_and_set: {key: "#base64EncodeCredentials(id,api_key)"}``."""

    def __init__(self, step: Step) -> None:
        super().__init__(step)
        if not isinstance(step.arg, dict) or not step.arg:
            raise _invalid(step, "must map stash keys to transformations")
        if not all(_scalar(v) for v in step.arg.values()):
            raise _invalid(step, "transformations must be strings")
        self.pairs = {k: java_str(v) for k, v in step.arg.items()}
        for value in self.pairs.values():
            if _is_call(value, "#base64EncodeCredentials("):
                inner = value[len("#base64EncodeCredentials(") : value.rindex(")")]
                if len(_java_split(inner, ",")) != 2:
                    raise _invalid(
                        step, "base64EncodeCredentials requires a username/id and a password"
                    )

    def run(self, ctx: Context) -> None:
        for key, value in self.pairs.items():
            if _is_call(value, "#base64EncodeCredentials("):
                inner = value[len("#base64EncodeCredentials(") : value.rindex(")")]
                first, second = _java_split(inner, ",")
                user = java_str(ctx.response_value(first.strip()))
                secret = java_str(ctx.response_value(second.strip()))
                ctx.stash.stash_value(key, _b64(f"{user}:{secret}"))
            elif _is_call(value, "#base64Encode("):
                ctx.stash.stash_value(key, _b64(value[len("#base64Encode(") : value.rindex(")")]))
            else:
                ctx.stash.stash_value(key, value)  # like a plain `set` of a literal


def _is_call(value: str, prefix: str) -> bool:
    return value.startswith(prefix) and value.endswith(")")


def _java_split(text: str, separator: str) -> list[str]:
    """``String.split``: trailing empty strings are dropped."""
    parts = text.split(separator)
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class AssertAction(Action):
    """``match``, ``length``, ``is_true``, ``is_false``, ``gt``/``gte``/``lt``/``lte``,
    ``contains``, ``close_to``, ``exists``, ``not_exists`` and ``is_after``."""

    FIELD_ONLY = frozenset({"is_true", "is_false", "exists", "not_exists"})
    COMPARISONS = frozenset({"gt", "gte", "lt", "lte"})

    def __init__(self, step: Step) -> None:
        super().__init__(step)
        op, arg = step.op, step.arg
        self.expected: Any
        if op in self.FIELD_ONLY:
            if not _scalar(arg):
                raise _invalid(step, "takes a field path")
            self.field = java_str(arg)
            self.expected = op in {"is_true", "exists"}
            return
        if not isinstance(arg, dict) or len(arg) != 1:
            raise _invalid(step, "takes a mapping with exactly one field")
        ((self.field, self.expected),) = arg.items()
        if op == "length":
            self.expected = _length_value(step, self.expected)
        elif op in self.COMPARISONS and not _scalar(self.expected):
            raise _invalid(step, "can only be used with values that have a natural ordering")
        elif op == "close_to":
            value = self.expected
            if (
                not isinstance(value, dict)
                or set(value) != {"value", "error"}
                or not all(_is_number(v) for v in value.values())
            ):
                raise _invalid(step, "expects {value: number, error: number}")
        elif op == "is_after" and not isinstance(self.expected, str):
            raise _invalid(step, "expects an ISO-8601 instant")

    def run(self, ctx: Context) -> None:
        actual = ctx.actual(self.field)
        expected = ctx.expected(self.expected)
        getattr(self, "_" + self.step.op)(actual, expected)

    def _match(self, actual: Any, expected: Any) -> None:
        if isinstance(expected, str):
            text = expected.strip()
            if len(text) > 2 and text.startswith("/") and text.endswith("/"):
                if not isinstance(actual, str):
                    raise _fail(
                        f"field [{self.field}] was expected to be of type String but is an "
                        f"instanceof [{java_class(actual)}]: {json_dump(actual)}"
                    )
                try:
                    pattern = java_regex(text[1:-1], comments=True)
                except re.error as exc:
                    raise _fail(f"invalid regular expression {text}: {exc}") from exc
                if pattern.search(actual) is None:
                    raise _fail(
                        f"field [{self.field}] was expected to match the provided regex but "
                        f"didn't: regex {text}, value [{actual}]"
                    )
                return
        problem = describe_mismatch(actual, expected, self.field)
        if problem is not None:
            raise _fail(f"field [{self.field}] does not match: {problem}")

    def _length(self, actual: Any, expected: Any) -> None:
        if isinstance(actual, str):
            size = java_string_length(actual)
        elif isinstance(actual, list | dict):
            size = len(actual)
        else:
            raise _fail(
                f"field [{self.field}]: length of a value of unsupported type "
                f"[{java_class(actual)}]: {json_dump(actual)}"
            )
        if size != expected:
            raise _fail(
                f"field [{self.field}] doesn't have length [{expected}] (it has {size}): "
                f"{json_dump(actual)}"
            )

    def _is_true(self, actual: Any, expected: Any) -> None:
        text = None if actual is None else java_str(actual)
        if text is None or text == "" or text.lower() == "false" or text == "0":
            raise _fail(f"field [{self.field}] doesn't have a true value: {json_dump(actual)}")

    def _is_false(self, actual: Any, expected: Any) -> None:
        if actual is None:
            return
        text = java_str(actual)
        if not (text == "" or text.lower() == "false" or text == "0"):
            raise _fail(
                f"field [{self.field}] has a true value but it shouldn't: {json_dump(actual)}"
            )

    def _exists(self, actual: Any, expected: Any) -> None:
        if actual is None:
            raise _fail(f"field [{self.field}] does not exist")

    def _not_exists(self, actual: Any, expected: Any) -> None:
        if actual is not None:
            raise _fail(f"field [{self.field}] exists: {json_dump(actual)}")

    def _compare(self, actual: Any, expected: Any) -> int:
        for value, which in ((actual, "value"), (expected, "expected value")):
            if value is None or isinstance(value, dict | list):
                raise _fail(
                    f"{which} of [{self.field}] is not comparable (got [{java_class(value)}])"
                )
        if _is_number(actual) and _is_number(expected):
            pass
        elif type(actual) is not type(expected):
            raise _fail(
                f"cast error while checking [{self.field}]: cannot compare "
                f"[{java_class(actual)}] {json_dump(actual)} with [{java_class(expected)}] "
                f"{json_dump(expected)}"
            )
        greater: bool = actual > expected
        less: bool = actual < expected
        return int(greater) - int(less)

    def _check(self, ok: bool, relation: str, actual: Any, expected: Any) -> None:
        if not ok:
            raise _fail(
                f"field [{self.field}] is not {relation} [{json_dump(expected)}]: "
                f"{json_dump(actual)}"
            )

    def _gt(self, actual: Any, expected: Any) -> None:
        self._check(self._compare(actual, expected) > 0, "greater than", actual, expected)

    def _gte(self, actual: Any, expected: Any) -> None:
        self._check(
            self._compare(actual, expected) >= 0, "greater than or equal to", actual, expected
        )

    def _lt(self, actual: Any, expected: Any) -> None:
        self._check(self._compare(actual, expected) < 0, "less than", actual, expected)

    def _lte(self, actual: Any, expected: Any) -> None:
        self._check(self._compare(actual, expected) <= 0, "less than or equal to", actual, expected)

    def _contains(self, actual: Any, expected: Any) -> None:
        if isinstance(expected, dict) and isinstance(actual, list):
            for item in actual:
                if isinstance(item, dict) and all(
                    k in item and describe_mismatch(item[k], v, k) is None
                    for k, v in expected.items()
                ):
                    return
            raise _fail(
                f"{self.field} expected to be a list with at least one object that matches "
                f"{json_dump(expected)} but was {json_dump(actual)}"
            )
        if isinstance(expected, str) and isinstance(actual, str):
            if expected not in actual:
                raise _fail(f"[{self.field}] [{actual}] does not contain [{expected}]")
            return
        raise _fail(
            "'contains' only supports checking an object against a list of objects or a string "
            f"against a string (field [{self.field}] is {json_dump(actual)})"
        )

    def _close_to(self, actual: Any, expected: Any) -> None:
        if not _is_number(actual):
            raise _fail(f"field [{self.field}] is not a number: {json_dump(actual)}")
        if abs(actual - expected["value"]) > expected["error"]:
            raise _fail(
                f"field [{self.field}] = {actual} is not within {expected['error']} of "
                f"{expected['value']}"
            )

    def _is_after(self, actual: Any, expected: Any) -> None:
        try:
            later = _instant(actual)
            earlier = _instant(expected)
        except (TypeError, ValueError) as exc:
            raise _fail(f"field [{self.field}]: not an instant: {exc}") from exc
        if not later > earlier:
            raise _fail(f"field [{self.field}] [{actual}] is not after [{expected}]")


def _instant(value: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return parsed


def _length_value(step: Step, value: Any) -> int:
    if _is_number(value):
        return int(value)
    text = java_str(value)
    if not _JAVA_INT.fullmatch(text):
        raise _invalid(step, f"length is not a valid number: {value!r}")
    return int(text)


_ACTIONS: dict[str, Callable[[Step], Action]] = {
    "do": DoAction,
    "set": SetAction,
    "transform_and_set": TransformAndSetAction,
    **dict.fromkeys(
        (
            "match",
            "length",
            "is_true",
            "is_false",
            "gt",
            "gte",
            "lt",
            "lte",
            "contains",
            "close_to",
            "exists",
            "not_exists",
            "is_after",
        ),
        AssertAction,
    ),
}
OPERATORS = (*_ACTIONS, "skip", "requires")


# ---------------------------------------------------------------------------------------------
# skip / requires


@dataclass
class Prerequisite:
    """The merged ``skip``/``requires`` steps that open a section."""

    line: int
    runner_features: list[str] = field(default_factory=list)
    xpack: str | None = None  # "required", "forbidden"
    skip_reason: str | None = None
    requires_reason: str | None = None
    skip_version: str | None = None
    skip_os: list[str] = field(default_factory=list)
    skip_cluster_features: list[str] = field(default_factory=list)
    skip_known_issues: list[tuple[str, str]] = field(default_factory=list)
    skip_awaits_fix: str | None = None
    skip_capabilities: list[Any] = field(default_factory=list)
    requires_cluster_features: list[str] = field(default_factory=list)
    requires_capabilities: list[Any] = field(default_factory=list)

    def add(self, step: Step) -> None:
        if not isinstance(step.arg, dict):
            raise _invalid(step, "must be a mapping")
        for key, value in step.arg.items():
            if step.op == "skip":
                self._add_skip(step, key, value)
            else:
                self._add_requires(step, key, value)

    def _add_runner_features(self, step: Step, key: str, value: Any) -> None:
        for feature in _strings(step, key, value):
            if feature == "xpack":
                self._xpack("required")
            elif feature == "no_xpack":
                self._xpack("forbidden")
            else:
                self.runner_features.append(feature)

    def _add_skip(self, step: Step, key: str, value: Any) -> None:
        if key == "reason":
            self.skip_reason = java_str(value)
        elif key == "features":
            self._add_runner_features(step, key, value)
        elif key == "version":
            self.skip_version = java_str(value)
        elif key == "os":
            self.skip_os.extend(_strings(step, key, value))
        elif key == "cluster_features":
            self.skip_cluster_features.extend(_strings(step, key, value))
        elif key == "awaits_fix":
            self.skip_awaits_fix = java_str(value)
        elif key == "known_issues":
            if not isinstance(value, list):
                raise _invalid(step, "[known_issues] must be a list")
            for issue in value:
                if not isinstance(issue, dict) or set(issue) != {"cluster_feature", "fixed_by"}:
                    raise _invalid(step, "a known issue needs [cluster_feature] and [fixed_by]")
                pair = (java_str(issue["cluster_feature"]), java_str(issue["fixed_by"]))
                self.skip_known_issues.append(pair)
        elif key == "capabilities":
            self.skip_capabilities.append(value)
        else:
            raise _invalid(step, f"field [{key}] not supported within skip section")

    def _add_requires(self, step: Step, key: str, value: Any) -> None:
        if key == "reason":
            self.requires_reason = java_str(value)
        elif key == "test_runner_features":
            self._add_runner_features(step, key, value)
        elif key == "cluster_features":
            self.requires_cluster_features.extend(_strings(step, key, value))
        elif key == "capabilities":
            self.requires_capabilities.append(value)
        else:
            raise _invalid(step, f"field [{key}] not supported within requires section")

    def _xpack(self, value: str) -> None:
        self.xpack = "mismatched" if self.xpack not in (None, value) else value

    def validate(self) -> None:
        where = f"line {self.line} [skip/requires]"
        skip_criteria = bool(
            self.skip_version
            or self.skip_os
            or self.skip_cluster_features
            or self.skip_capabilities
            or self.skip_known_issues
        )
        if not (
            skip_criteria
            or self.skip_awaits_fix
            or self.xpack
            or self.runner_features
            or self.requires_capabilities
            or self.requires_cluster_features
        ):
            raise InvalidTestError(f"{where}: at least one predicate is mandatory")
        if skip_criteria and not self.skip_reason:
            raise InvalidTestError(f"{where}: reason is mandatory within this skip section")
        if (self.requires_cluster_features or self.requires_capabilities) and not (
            self.requires_reason
        ):
            raise InvalidTestError(f"{where}: reason is mandatory within this requires section")
        if self.skip_os and "skip_os" not in self.runner_features:
            raise InvalidTestError(f"{where}: if os is specified, [skip_os] must be required")
        if self.xpack == "mismatched":
            raise InvalidTestError(f"{where}: either [xpack] or [no_xpack] can be present")
        both = set(self.skip_cluster_features) & set(self.requires_cluster_features)
        if both:
            raise InvalidTestError(
                f"{where}: cluster features {sorted(both)} both skipped/required"
            )


def _strings(step: Step, key: str, value: Any) -> list[str]:
    if _scalar(value):
        return [java_str(value)]
    if isinstance(value, list) and all(_scalar(v) for v in value):
        return [java_str(v) for v in value]
    raise _invalid(step, f"[{key}] must be a string or a list of strings")


@dataclass
class Compiled:
    prerequisites: list[Prerequisite]
    actions: list[Action]


def compile_section(section: Section | None) -> Compiled:
    """Check every step of a section and compile it; collects all problems before raising."""
    if section is None:
        return Compiled([], [])
    errors: list[str] = []
    prerequisite: Prerequisite | None = None
    actions: list[Action] = []
    leading = True
    for step in section.steps:
        try:
            if step.op in ("skip", "requires"):
                if not leading:
                    raise _invalid(step, "must come before every other step of the section")
                if prerequisite is None:
                    prerequisite = Prerequisite(step.line)
                prerequisite.add(step)
                continue
            leading = False
            factory = _ACTIONS.get(step.op)
            if factory is None:
                raise _invalid(
                    step, f"unknown operator (this runner knows: {', '.join(OPERATORS)})"
                )
            actions.append(factory(step))
        except InvalidTestError as exc:
            errors.append(str(exc))
    if prerequisite is not None:
        try:
            prerequisite.validate()
        except InvalidTestError as exc:
            errors.append(str(exc))
    if errors:
        raise InvalidTestError(f"[{section.name}]: " + "; ".join(errors))
    return Compiled([prerequisite] if prerequisite else [], actions)


# ---------------------------------------------------------------------------------------------
# Running


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class SectionResult:
    file: str
    section: str
    status: Status
    message: str = ""

    @property
    def label(self) -> str:
        return f"{self.file}::{self.section}"

    @property
    def line(self) -> str:
        return f"{self.status.value} {self.label}"


VersionSource = str | Callable[[], str | None] | None


def parse_version(text: str) -> tuple[int, int, int]:
    match = _VERSION.fullmatch(text.strip().removesuffix("-SNAPSHOT"))
    if match is None:
        raise PrerequisiteError(f"[{text}] is not a version of the form X.Y.Z")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def version_in_ranges(version: tuple[int, int, int], ranges: str) -> bool:
    """Java's ``skip.version`` ranges: ``all``, or ``lower - upper`` items, comma-separated."""
    if ranges.strip() == "all":
        return True
    for raw in ranges.split(","):
        bounds = raw.split("-")
        if len(bounds) != 2:
            raise PrerequisiteError(f"version range malformed: [{ranges}]")
        lower, upper = (b.strip() for b in bounds)
        low = parse_version(lower) if lower else (0, 0, 0)
        if low <= version and (not upper or version <= parse_version(upper)):
            return True
    return False


class Runner:
    """Runs the sections of suites through an :class:`Executor`.

    ``reset`` wipes the server before each section; ``version`` is the server's version (a
    string or a callable asked at most once, when a ``skip``/``requires`` needs it).
    """

    def __init__(
        self,
        executor: Executor,
        *,
        reset: Callable[[], None] | None = None,
        version: VersionSource = None,
        supported_features: frozenset[str] = SUPPORTED_FEATURES,
        has_xpack: bool = True,
    ) -> None:
        self.executor = executor
        self.reset = reset
        self._version_source = version
        self._version: tuple[int, int, int] | None = None
        self.supported_features = supported_features
        self.has_xpack = has_xpack

    def run_suite(self, suite: Suite) -> list[SectionResult]:
        return [self.run_section(suite, name) for name in suite.section_names]

    def run_section(self, suite: Suite, name: str) -> SectionResult:
        def result(status: Status, message: str = "") -> SectionResult:
            return SectionResult(suite.name, name, status, message)

        try:
            setup = compile_section(suite.setup)
            teardown = compile_section(suite.teardown)
            test = compile_section(suite.section(name))
        except KeyError:
            return result(Status.FAIL, f"no test section [{name}] in {suite.name}")
        except InvalidTestError as exc:
            return result(Status.FAIL, f"invalid test: {exc}")
        try:
            skip = self._skip_reason(
                [*setup.prerequisites, *teardown.prerequisites, *test.prerequisites]
            )
        except PrerequisiteError as exc:
            return result(Status.FAIL, f"skip/requires cannot be evaluated: {exc}")
        if skip is not None:
            return result(Status.SKIP, skip)
        if not test.actions:
            return result(Status.FAIL, "no executable steps in the section")
        if self.reset is not None:
            try:
                self.reset()
            except Exception as exc:
                return result(Status.FAIL, f"reset before the section failed: {exc!r}")
        ctx = Context(self.executor)
        try:
            self._run(setup.actions, ctx, suite, "setup")
        except StepFailure as exc:
            return result(Status.FAIL, f"setup failed: {exc}")
        ctx.clear()
        failures: list[str] = []
        try:
            self._run(test.actions, ctx, suite, name)
        except StepFailure as exc:
            failures.append(str(exc))
        try:
            self._run(teardown.actions, ctx, suite, "teardown")
        except StepFailure as exc:
            failures.append(f"teardown failed: {exc}")
        if failures:
            return result(Status.FAIL, "\n".join(failures))
        return result(Status.PASS)

    @staticmethod
    def _run(actions: Iterable[Action], ctx: Context, suite: Suite, phase: str) -> None:
        for action in actions:
            step = action.step
            where = f"{suite.name}:{step.line} ({phase}) {step.op} {json_dump(step.arg, 400)}"
            try:
                action.run(ctx)
            except (StepFailure, PathError, StashError, ParamError, UnknownApiError) as exc:
                raise StepFailure(f"{where}\n  -> {exc}") from exc
            except Exception as exc:
                detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                raise StepFailure(f"{where}\n  -> unexpected error: {detail}") from exc

    def server_version(self) -> tuple[int, int, int]:
        if self._version is None:
            source = self._version_source
            text = source() if callable(source) else source
            if not text:
                raise PrerequisiteError("the server's version is unknown")
            self._version = parse_version(text)
        return self._version

    def has_cluster_feature(self, feature: str) -> bool:
        match = _GTE_FEATURE.fullmatch(feature)
        if match is None:
            raise PrerequisiteError(
                f"cluster feature [{feature}] cannot be evaluated: the server publishes no "
                f"cluster features (only the synthetic gte_vX.Y.Z ones are known)"
            )
        wanted = (int(match.group(1)), int(match.group(2)), int(match.group(3)))
        return wanted <= _LAST_SYNTHETIC_VERSION and self.server_version() >= wanted

    def _skip_reason(self, prerequisites: list[Prerequisite]) -> str | None:
        for p in prerequisites:
            reason = p.skip_reason or p.requires_reason or "no reason given"
            missing = [f for f in p.runner_features if f not in self.supported_features]
            if missing:
                return f"test runner features {missing} are not supported by this runner"
            if p.skip_awaits_fix:
                return f"awaits fix {p.skip_awaits_fix}: {reason}"
            if p.requires_capabilities or p.skip_capabilities:
                raise PrerequisiteError("[capabilities] checks cannot be evaluated by this runner")
            if p.skip_os:
                raise PrerequisiteError("the server's operating system is unknown ([os] skip)")
            # Evaluate everything before deciding, so an unevaluable criterion always fails.
            required = [self.has_cluster_feature(f) for f in p.requires_cluster_features]
            skipping = [self.has_cluster_feature(f) for f in p.skip_cluster_features]
            issues = [
                self.has_cluster_feature(a) and not self.has_cluster_feature(b)
                for a, b in p.skip_known_issues
            ]
            requires_ok, by_feature, by_issue = all(required), any(skipping), any(issues)
            by_version = bool(p.skip_version) and version_in_ranges(
                self.server_version(), p.skip_version or ""
            )
            if p.xpack == "required" and not self.has_xpack:
                return "requires x-pack"
            if p.xpack == "forbidden" and self.has_xpack:
                return "skipped where x-pack is present (no_xpack)"
            if not requires_ok:
                return f"required cluster features {p.requires_cluster_features} absent: {reason}"
            if by_feature or by_issue:
                return f"skipped by cluster features: {reason}"
            if by_version:
                return f"skipped on versions [{p.skip_version}]: {reason}"
        return None


# ---------------------------------------------------------------------------------------------
# Command line


def _resolve_files(names: Sequence[str]) -> list[Path]:
    folder = default_tests_dir()
    if not names:
        return sorted(folder.glob("*.yml")) if folder.is_dir() else []
    files: list[Path] = []
    for name in names:
        path = Path(name)
        if not path.exists():
            candidate = folder / (name if name.endswith((".yml", ".yaml")) else name + ".yml")
            path = candidate if candidate.exists() else path
        files.append(path)
    return files


def _sandbox_reset(executor: ClientExecutor) -> None:
    response = executor.raw("POST", "/_sandbox/reset")
    if response.status >= 300:
        raise RuntimeError(
            f"POST /_sandbox/reset answered {response.status}: {json_dump(response.body)}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run YAML test files against the server at URL; exit 0 when no section failed."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.conformance.yamlrunner",
        description="Run Elastic's YAML REST tests against a running server (rotator sandbox).",
    )
    parser.add_argument("url", help="server URL, e.g. http://127.0.0.1:9200")
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help=f"test files, or names in the default folder (default: every *.yml in "
        f"${ENV_TESTS_DIR} or ../shared/es-rest-tests/api_key)",
    )
    parser.add_argument("--user", default=DEFAULT_USER, help="default (superuser) user name")
    parser.add_argument("--password", default=DEFAULT_PASSWORD, help="its password")
    parser.add_argument(
        "--es-version", help="server version for skip/requires (default: asked with GET /)"
    )
    parser.add_argument(
        "--no-reset",
        action="store_true",
        help="do not call POST /_sandbox/reset before each section",
    )
    parser.add_argument("-k", dest="pattern", help="only sections whose name contains this")
    args = parser.parse_args(argv)

    files = _resolve_files(args.files)
    if not files:
        print(f"no test files (looked in {default_tests_dir()})", file=sys.stderr)
        return 2
    passed = failed = skipped = 0
    with ClientExecutor(args.url, args.user, args.password) as executor:
        version: VersionSource = args.es_version or executor.server_version
        reset = None if args.no_reset else (lambda: _sandbox_reset(executor))
        runner = Runner(executor, reset=reset, version=version)
        for path in files:
            try:
                suite = load_suite(path)
            except SuiteParseError as exc:
                failed += 1
                print(f"FAIL {path.name}::<file>", flush=True)
                print(f"    {exc}", file=sys.stderr, flush=True)
                continue
            for name in suite.section_names:
                if args.pattern and args.pattern not in name:
                    continue
                outcome = runner.run_section(suite, name)
                print(outcome.line, flush=True)
                if outcome.status is Status.PASS:
                    passed += 1
                    continue
                if outcome.status is Status.FAIL:
                    failed += 1
                else:
                    skipped += 1
                detail = outcome.message.replace("\n", "\n    ")
                print(f"    {outcome.status.value}: {detail}", file=sys.stderr, flush=True)
    summary = f"{passed} passed, {failed} failed"
    if skipped:
        summary += f", {skipped} skipped"
    print(summary, flush=True)
    if failed:
        return 1
    return 0 if passed or skipped else 1


if __name__ == "__main__":
    sys.exit(main())
