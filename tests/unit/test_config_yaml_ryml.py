"""The rapidyaml path reads every config exactly as the strict PyYAML loader does, or declines.

Generated documents mix every scalar style with the scalars YAML 1.1 types (yes/no/on/off, 0x10,
010, 1_000, 1:30, ~, dates, .inf), quoted look-alikes, multi-line and unicode text, duplicate
keys, anchors and aliases; random text over YAML's punctuation probes what one parser accepts
and the other refuses. Whenever the fast path gives a result, the strict loader gives the same
tree (types included); when the strict loader refuses, the fast path declines.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rotator import config_yaml
from rotator.config_yaml import YamlRefused, load_yaml

pytestmark = pytest.mark.skipif(config_yaml._ryml is None, reason="rapidyaml is not installed")

TRICKY = [
    *("yes", "no", "on", "off", "Yes", "NO", "On", "OFF", "y", "n", "Y", "true", "False", "TRUE"),
    *("~", "null", "Null", "NULL", "", "1e3", "1.0e+3", "1E3", "0x10", "0o10", "010", "0b101"),
    *("1_000", "1:30", "-1:30", "190:20:30", "-1", "+1", ".5", "5.", "-.5", "1.5", "0", "-0"),
    *(".inf", "-.inf", "+.inf", ".NaN", ".nan", "nan", "NaN", "inf", "Infinity", "-", "."),
    *("2024-01-02", "2024-1-2", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5"),
    *("2024-01-02T03:04:05Z", "12:30:00", "=", "<<", "0600", "1.2.3", "v1", "a b", "a: b"),
    *("logs-*-default", "*", "&x", "!x", "@x", "`x", "%x", "#x", "a #b", "a#b", "- a", "? a"),
    *("é", "日本", "\u2028", "\x85", "\t", "a\tb", " a", "a ", "a\nb", "a\n\nb", "\\", '"', "'"),
]
scalars = st.sampled_from(TRICKY) | st.text(max_size=6)
keys = st.sampled_from(["a", "b", "yes", "1", "~", "", "a b", "name", "on", "01", "1.0"]) | scalars


def plain(text: str) -> str:
    return text


def single(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def double(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def double_ascii(text: str) -> str:
    return json.dumps(text)


STYLES = [plain, single, double, double_ascii]


@st.composite
def documents(draw: st.DrawFn) -> str:
    return draw(block(0, 3))


def scalar_text(draw: st.DrawFn) -> str:
    text = draw(scalars)
    return draw(st.sampled_from(STYLES))(text)


def block(indent: int, depth: int) -> st.SearchStrategy[str]:
    @st.composite
    def build(draw: st.DrawFn) -> str:
        pad = " " * indent
        kind = draw(st.sampled_from(["map", "seq", "flow", "literal"] if depth else ["map", "seq"]))
        lines: list[str] = []
        for _ in range(draw(st.integers(1, 3))):
            key = draw(st.sampled_from(STYLES))(draw(keys))
            anchor = draw(st.sampled_from(["", "", "", "", "&a ", "*a"]))
            if anchor == "*a":
                value_line = " *a"
                nested = ""
            elif depth and draw(st.booleans()):
                value_line, nested = "", draw(block(indent + 2, depth - 1))
            else:
                value_line, nested = " " + anchor + draw(inline(depth)), ""
            if kind == "seq":
                lines.append(f"{pad}-{value_line}" + ("\n" + nested if nested else ""))
            elif kind == "literal":  # declined by the fast path (chomping differs)
                style = draw(st.sampled_from(["|", "|-", "|+", ">", ">-", ">+"]))
                body = draw(st.lists(st.sampled_from(["x", "y z", "", "  w", "é"]), max_size=3))
                text = "".join(f"\n{pad}  {line}" if line else "\n" for line in body)
                lines.append(f"{pad}{key}: {style}{text}")
            else:
                lines.append(f"{pad}{key}:{value_line}" + ("\n" + nested if nested else ""))
        comment = draw(st.sampled_from(["", "", " # note", "\n# line"]))
        return "\n".join(lines) + comment + draw(st.sampled_from(["\n", "", "\n\n"]))

    return build()


def inline(depth: int) -> st.SearchStrategy[str]:
    @st.composite
    def build(draw: st.DrawFn) -> str:
        if depth and draw(st.integers(0, 3)) == 0:
            items = [scalar_text(draw) for _ in range(draw(st.integers(0, 3)))]
            if draw(st.booleans()):
                return "[" + ", ".join(items) + "]"
            pairs = [f"{draw(st.sampled_from(STYLES))(draw(keys))}: {item}" for item in items]
            return "{" + ", ".join(pairs) + "}"
        return scalar_text(draw)

    return build()


def canonical(value: Any) -> Any:
    """The value with its types spelled out (1, 1.0 and True differ; nan equals nan)."""
    if isinstance(value, dict):
        return ("dict", [(canonical(k), canonical(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [canonical(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def strict(text: str) -> tuple[str, Any]:
    loader = config_yaml._StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return "ok", (canonical(None), [])
        data = loader.construct_document(node)
        return "ok", (canonical(data), config_yaml._duplicate_keys(node, ""))
    except (yaml.YAMLError, YamlRefused, RecursionError, TypeError):
        return "refused", None
    finally:
        loader.dispose()


def agree(text: str) -> None:
    fast = config_yaml._load_ryml(text)
    if fast is None:
        return  # declined: the other paths decide
    data, duplicates = fast
    outcome, expected = strict(text)
    assert outcome == "ok", f"the strict loader refuses {text!r}, the fast path read {data!r}"
    assert (canonical(data), duplicates) == expected, text


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(documents())
@example("a: yes\nb: '0x10'\nc: [1e3, ~, 2030-01-01]\n")
@example("a: nan\nb: .nan\n")
@example("yes: 1\ntrue: 2\n'1': 3\n1: 4\n")
def test_generated_documents_read_the_same(text: str) -> None:
    agree(text)


YAML_PUNCTUATION = st.lists(
    st.sampled_from([*"ab1 :-[]{},'\"\n#&*!|>?~.0\\%@", "  ", "\n  ", "é", "yes"]), max_size=30
).map("".join)


@SETTINGS
@given(YAML_PUNCTUATION)
def test_random_text_reads_the_same_or_is_declined(text: str) -> None:
    agree(text)


@SETTINGS
@given(st.text(max_size=30))
def test_random_unicode_reads_the_same_or_is_declined(text: str) -> None:
    agree(text)
    agree(f"key: {text}\n")
    agree(f"key: [{text}]\n")


def test_a_fleet_config_takes_the_fast_path_and_reads_the_same() -> None:
    text = "sources:\n" + "".join(
        f"  - name: src-{i}\n    preset: logs-writer\n    dataset: d_{i}\n"
        f"    deliver: [{{type: file, path: '/run/k/{i}.key', mode: '0640'}}]\n"
        f"    metadata: {{team: t{i % 3}, on_call: yes, since: 2030-01-0{1 + i % 9}}}\n"
        for i in range(50)
    )
    fast = config_yaml._load_ryml(text)
    assert fast is not None
    assert ("ok", (canonical(fast[0]), fast[1])) == strict(text)
    assert load_yaml(text)[0] == fast[0]


def test_only_large_texts_go_to_rapidyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    real = config_yaml._load_ryml

    def spy(text: str) -> tuple[Any, list[str]] | None:
        seen.append(len(text))
        return real(text)

    monkeypatch.setattr(config_yaml, "_load_ryml", spy)
    small = "log: {level: info}\n"
    large = small + "# " + "x" * config_yaml.RYML_MIN_CHARS + "\n"
    assert load_yaml(small) == ({"log": {"level": "info"}}, [])
    assert seen == []
    assert load_yaml(large) == ({"log": {"level": "info"}}, [])
    assert seen == [len(large)]


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\na: 2\n",  # duplicate key: PyYAML names the lines
        "a: &x 1\nb: *x\n",
        "a: !!str 1\n",
        "--- a\n--- b\n",
        "a:\tb\n",
        "<<: {a: 1}\n",
        "a: b: c\n",
        "? [a]\n: b\n",
        "a: \x07\n",
        "{a\n b: x}\n",  # a key over two lines in a flow mapping: PyYAML refuses it
        "k: [x, {0\n : w}]\n",
        "a: {b: %c}\n",
        "a: [x?]\n",
    ],
)
def test_what_the_fast_path_declines(text: str) -> None:
    assert config_yaml._load_ryml(text) is None


words = st.from_regex(r"[a-zA-Z0-9_./:@%-]{0,12}", fullmatch=True)


@SETTINGS
@given(
    st.lists(st.tuples(words, words, st.sampled_from(STYLES), st.booleans()), max_size=6),
)
def test_string_only_documents_read_the_same(entries: list[tuple[str, str, Any, bool]]) -> None:
    # What generated fleet configs hold: the path that checks all strings at once.
    lines = [
        f"- {{{key}: {style(value)}}}" if flow else f"- {key}: {style(value)}"
        for key, value, style, flow in entries
    ]
    agree("\n".join(lines) + "\n")
    agree("top:\n" + "".join(f"  {line}\n" for line in lines))
