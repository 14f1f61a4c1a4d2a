"""The fast paths of config parsing (libyaml, JSON) agree with the strict loader."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rotator import config_yaml
from rotator.config_yaml import YamlRefused, load_yaml

TEXT = """
elasticsearch: {hosts: ['http://es:9200'], username: rotator}
sources:
  - name: web
    privileges:
      indices: [{names: ["logs-*-default", 'metrics-*'], privileges: [create_doc]}]
    deliver: [{type: file, path: /tmp/web.key}]
    metadata: {team: web, on_call: true, ratio: 0.5, since: 2030-01-01}
"""


def strict(text: str) -> tuple[object, list[str]]:
    loader = config_yaml._StrictLoader(text)
    try:
        node = loader.get_single_node()
        return loader.construct_document(node), config_yaml._duplicate_keys(node, "")
    finally:
        loader.dispose()


def test_the_libyaml_path_gives_what_the_strict_loader_gives() -> None:
    assert config_yaml._CLoader is not None
    assert config_yaml._load_fast(TEXT) == strict(TEXT)
    assert load_yaml(TEXT) == strict(TEXT)


def test_duplicate_keys_are_found_on_the_fast_path_with_their_lines() -> None:
    text = "log: {level: info}\nlog: {level: debug}\n"

    assert config_yaml._load_fast(text) == strict(text)
    assert load_yaml(text)[1] == ["log: duplicate key at line 2 (first at line 1)"]


def test_an_alias_is_never_expanded_by_the_fast_path() -> None:
    text = "a: [x, y]\nb: [ *a , *a ]\n"  # '*a' after a space: the pre-scan sends it to strict

    with pytest.raises(YamlRefused, match="anchors and aliases"):
        load_yaml(text)
    shared = "a: &a [x]\nb: *a\n"
    assert config_yaml._load_fast(shared) is None  # a node reached twice: strict decides


def test_a_json_config_is_parsed_with_duplicates_reported() -> None:
    data, problems = load_yaml('{"log": {"level": "info"}, "log": {"level": "debug"}}')

    assert data == {"log": {"level": "debug"}}
    assert problems == ["log: duplicate key in a JSON object"]


def test_deep_json_goes_to_the_strict_loader() -> None:
    with pytest.raises(YamlRefused, match="nested deeper than 32 levels"):
        load_yaml('{"log": ' + "[" * 40 + "]" * 40 + "}")


def _depth(value: object, at: int = 1) -> int:
    children = (
        list(value.values())
        if isinstance(value, dict)
        else value
        if isinstance(value, list)
        else []
    )
    return max((_depth(child, at + 1) for child in children), default=at)


json_values = st.recursive(
    st.none() | st.integers() | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3)
    ),
    max_leaves=60,
)


@given(json_values)
def test_the_json_depth_is_the_depth_of_the_deepest_value(value: object) -> None:
    assert config_yaml._json_depth(value) == min(_depth(value), config_yaml.MAX_DEPTH + 1)


def test_json_at_the_depth_bound_is_parsed_and_one_deeper_is_not() -> None:
    # "log" is at depth 2, so 30 nested lists around a scalar reach depth 32.
    at_bound = '{"log": ' + "[" * 30 + "1" + "]" * 30 + "}"
    assert load_yaml(at_bound)[0] is not None
    with pytest.raises(YamlRefused, match="nested deeper than 32 levels"):
        load_yaml('{"log": ' + "[" * 31 + "1" + "]" * 31 + "}")
