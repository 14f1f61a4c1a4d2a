"""docs/configuration.md cannot drift from the config's models.

Every field of ``rotator.config_models.Config``, walked through every nested section, every list
of sections (``sources[]``, ``indices[]``) and every sink type (``deliver[file]``...), must have a
row in the doc whose default, read as YAML and validated as the field, equals the model's default
("required" for a field without one) and whose example validates as the field. A row for a key
the models do not have fails too.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
import yaml
from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from rotator.config_models import Config, Section

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
# A table row whose first cell is a backticked dotted key.
ROW = re.compile(r"^\|\s*`(?P<key>[a-z_][a-z0-9_.\[\]]*)`\s*\|(?P<rest>.*)\|\s*$")
TICKED = re.compile(r"`([^`]*)`")


@dataclass(frozen=True)
class Key:
    """One leaf field of the config: its dotted path and its pydantic field."""

    path: str
    field: FieldInfo


@dataclass(frozen=True)
class Row:
    """One documented key: the cells after the key."""

    default: str
    example: str
    description: str


def _strip(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _sections_in(annotation: Any) -> list[type[Section]]:
    annotation = _strip(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _sections_in(arg)]
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return [annotation]
    return []


def _sink_tag(model: type[Section]) -> str:
    (tag,) = get_args(_strip(model.model_fields["type"].annotation))
    return str(tag)


def config_keys(model: type[Section] = Config, prefix: str = "") -> Iterator[Key]:
    """Every leaf field under ``model``, as ``section.sub.key`` paths."""
    for name, field in model.model_fields.items():
        path = prefix + name
        annotation = _strip(field.annotation)
        if get_origin(annotation) is list:
            members = _sections_in(get_args(annotation)[0])
            if len(members) == 1:
                yield from config_keys(members[0], f"{path}[].")
                continue
            if members:  # a discriminated union: the sinks
                for member in members:
                    yield from config_keys(member, f"{path}[{_sink_tag(member)}].")
                continue
        members = _sections_in(annotation)
        if members:
            assert len(members) == 1, f"{path}: a union of sections is not walked"
            yield from config_keys(members[0], f"{path}.")
            continue
        yield Key(path, field)


def documented(text: str) -> dict[str, Row]:
    rows: dict[str, Row] = {}
    for line in text.splitlines():
        match = ROW.match(line)
        if not match:
            continue
        cells = [cell.strip() for cell in match["rest"].split(" | ")]
        assert len(cells) == 3, f"{match['key']}: expected default | example | description"
        assert match["key"] not in rows, f"{match['key']} is documented twice"
        rows[match["key"]] = Row(*cells)
    return rows


def _first_ticked(cell: str, what: str, key: str) -> str:
    found = TICKED.search(cell)
    assert cell.startswith("`"), f"{key}: the {what} cell must start with `value`"
    assert found is not None
    return found[1]


def _adapter(field: FieldInfo) -> TypeAdapter[Any]:
    annotation = field.annotation
    if field.metadata:
        annotation = Annotated[(annotation, *field.metadata)]
    return TypeAdapter(annotation, config=ConfigDict(strict=True))


def _read(value: str, field: FieldInfo) -> Any:
    return _adapter(field).validate_python(yaml.safe_load(value))


KEYS = list(config_keys())


def test_the_walk_reaches_every_section() -> None:
    # A sanity check of the walk itself: nested sections, lists of sections and each sink.
    paths = {key.path for key in KEYS}
    for expected in (
        "elasticsearch.hosts",
        "managed_keys.policy.max_age",
        "purge.exclude.metadata",
        "service.schedule.lifecycle",
        "sources[].privileges.indices[].names",
        "sources[].deliver[file].mode",
        "sources[].deliver[exec].ack_command",
        "sources[].deliver[webhook].hmac_secret_env",
    ):
        assert expected in paths
    assert len(paths) == len(KEYS)


def test_every_key_is_documented_and_nothing_else() -> None:
    rows = documented(DOC.read_text())
    missing = [key for key in KEYS if key.path not in rows]
    hint = "\n".join(
        f"| `{key.path}` | "
        f"{'required' if key.field.is_required() else repr(key.field.get_default(call_default_factory=True))}"
        " | `example` | what it sets |"
        for key in missing
    )
    assert not missing, f"docs/configuration.md lacks rows for:\n{hint}"
    unknown = sorted(set(rows) - {key.path for key in KEYS})
    assert not unknown, f"docs/configuration.md documents keys the config does not have: {unknown}"


@pytest.mark.parametrize("key", KEYS, ids=[key.path for key in KEYS])
def test_documented_default_is_the_models(key: Key) -> None:
    row = documented(DOC.read_text()).get(key.path)
    if row is None:
        pytest.fail(f"{key.path} is not documented (see the test above)")
    if key.field.is_required():
        assert row.default == "required", f"{key.path} has no default: write 'required'"
        return
    default = key.field.get_default(call_default_factory=True)
    text = _first_ticked(row.default, "default", key.path)
    try:
        value = _read(text, key.field)
    except ValidationError as exc:
        pytest.fail(f"{key.path}: the documented default `{text}` does not validate: {exc}")
    assert value == default, f"{key.path}: documented `{text}`, the model says {default!r}"


@pytest.mark.parametrize("key", KEYS, ids=[key.path for key in KEYS])
def test_documented_example_validates(key: Key) -> None:
    row = documented(DOC.read_text()).get(key.path)
    if row is None:
        pytest.fail(f"{key.path} is not documented (see the test above)")
    text = _first_ticked(row.example, "example", key.path)
    try:
        _read(text, key.field)
    except ValidationError as exc:
        pytest.fail(f"{key.path}: the example `{text}` does not validate: {exc}")
    assert row.description, f"{key.path}: say what it sets"


def test_the_drift_check_catches_a_wrong_default() -> None:
    # The comparison is by value: 24h and 1d are the same default, 30d and 31d are not.
    field = next(key.field for key in KEYS if key.path == "defaults.overlap")
    assert _read("24h", field) == field.get_default()
    assert _read("1d", field) == field.get_default()
    lifetime = next(key.field for key in KEYS if key.path == "defaults.lifetime")
    assert _read("31d", lifetime) != lifetime.get_default()
    # An undocumented key is found missing.
    rows = documented(DOC.read_text().replace("| `log.format` |", "| log.format |"))
    assert "log.format" not in rows


def test_the_complete_example_is_a_valid_config(tmp_path: Path) -> None:
    from rotator.config import parse_config

    blocks = re.findall(r"```yaml\n# rotator.yaml\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert len(blocks) == 1
    config = parse_config(blocks[0], "docs/configuration.md")
    assert [source.name for source in config.sources] == ["filebeat-web", "logstash-main"]
