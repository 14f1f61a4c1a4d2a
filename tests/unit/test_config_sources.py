"""Sources are validated in one call; the problems are those of validating each one alone."""

from __future__ import annotations

from typing import Any

import pytest

from rotator import config
from rotator.config import validate_config
from rotator.config_checks import cross_checks
from rotator.config_models import SourceConfig
from rotator.errors import ConfigError
from rotator.scoping import PRESETS, Grants, preset_grants

AUTH = {"username": "rotator", "password_env": "PW"}
GOOD = {
    "name": "web",
    "preset": "logs-writer",
    "dataset": "web",
    "deliver": [{"type": "file", "path": "/run/web.key"}],
}
BAD: list[Any] = [
    "not a mapping",
    None,
    {**GOOD, "name": "bad-sink", "deliver": [{"type": "file", "path": "relative.key"}]},
    {**GOOD, "name": "typo", "dataset_": "x"},
    {**GOOD, "name": "file-key", "file": "x"},  # an unknown key named like a sink type
    {**GOOD, "name": "broad", "privileges": {"cluster": ["all"]}, "deliver": [{"type": "ftp"}]},
    {"name": "", "deliver": [{"type": "exec", "argv": []}]},
    {**GOOD, "name": "secret", "password": "hunter2"},
    {**GOOD, "name": "mode", "deliver": [{"type": "file", "path": "/k", "mode": "0644"}]},
    {**GOOD, "name": "dup"},
    {**GOOD, "name": "dup", "lifetime": "1d", "rotate_before": "2d"},
]


def one_by_one(raw: dict[str, Any]) -> list[str]:
    """The problems as validating each source alone reports them."""
    problems: list[str] = []
    sources = [
        config._validate_source(item, f"sources[{index}]", problems)
        for index, item in enumerate(raw["sources"])
    ]
    return problems + cross_checks(
        raw, {"elasticsearch": config.ElasticsearchConfig(**AUTH)}, sources
    )


@pytest.mark.parametrize("bad", range(len(BAD)))
def test_each_bad_source_reads_as_if_validated_alone(bad: int) -> None:
    raw = {"elasticsearch": AUTH, "sources": [GOOD, BAD[bad], GOOD]}  # web twice
    with pytest.raises(ConfigError) as caught:
        validate_config(raw)
    assert caught.value.problems == one_by_one(raw)


def test_all_bad_sources_together_read_as_if_validated_alone() -> None:
    raw = {"elasticsearch": AUTH, "sources": [GOOD, *BAD, {**GOOD, "name": "last"}]}
    with pytest.raises(ConfigError) as caught:
        validate_config(raw)
    assert caught.value.problems == one_by_one(raw)
    assert "sources[5].file: unknown key" in "\n".join(caught.value.problems)


def test_valid_sources_keep_their_order() -> None:
    names = [f"s{i}" for i in range(50)]
    raw = {"elasticsearch": AUTH, "sources": [{**GOOD, "name": n} for n in names]}
    assert [s.name for s in validate_config(raw).sources] == names


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize(
    ("dataset", "namespace"), [("web", "default"), ("a.b_c", "prod"), ("x", "dataset")]
)
def test_a_presets_grants_from_its_template_equal_the_built_ones(
    preset: str, dataset: str, namespace: str
) -> None:
    source = SourceConfig.model_validate(
        {
            "name": "s",
            "preset": preset,
            "dataset": dataset,
            "namespace": namespace,
            "deliver": [{"type": "file", "path": "/k"}],
        }
    )
    built = preset_grants(preset, dataset, namespace).union(Grants.build([], []))
    assert source.grants() == built
