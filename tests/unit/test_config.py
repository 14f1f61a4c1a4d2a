"""Config models: defaults, the effective policy of a source, secret resolution."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from rotator.config import parse_config
from rotator.errors import ConfigError
from rotator.secrets import resolve_secret

BASE = """
elasticsearch: {username: rotator, password_env: PW}
sources:
  - name: web
    privileges: {cluster: [monitor]}
"""


def test_empty_file_gives_the_embedded_defaults() -> None:
    config = parse_config("")
    assert config.store.url == "sqlite:///./rotator.db"
    assert config.defaults.lifetime == timedelta(days=30)
    assert config.defaults.overlap == timedelta(hours=24)
    assert config.elasticsearch.verify_certs is True
    assert config.service.max_parallel == 4
    assert config.sources == []


@pytest.mark.parametrize(
    ("defaults", "override", "expected"),
    [
        ("{}", "", (timedelta(days=30), timedelta(days=10))),
        ("{lifetime: 9d}", "", (timedelta(days=9), timedelta(days=3))),
        ("{lifetime: 9d, rotate_before: 2d}", "", (timedelta(days=9), timedelta(days=2))),
        ("{}", "    lifetime: 6d\n", (timedelta(days=6), timedelta(days=2))),
        ("{rotate_before: 5d}", "    lifetime: 6d\n", (timedelta(days=6), timedelta(days=5))),
        ("{}", "    lifetime: 6d\n    rotate_before: 3d\n", (timedelta(days=6), timedelta(days=3))),
    ],
)
def test_policy_inherits_defaults_and_rotate_before_is_a_third_of_lifetime(
    defaults: str, override: str, expected: tuple[timedelta, timedelta]
) -> None:
    config = parse_config(BASE + override + f"defaults: {defaults}\n")
    policy = config.policy_for(config.sources[0])
    assert (policy.lifetime, policy.rotate_before) == expected


def test_summary_hides_store_password_references() -> None:
    config = parse_config(
        "store: {url: 'postgresql+psycopg://rotator@db/rotator', password_env: DBPW}"
    )
    assert "postgresql+psycopg://rotator@db/rotator" in config.summary()


def test_config_objects_are_immutable() -> None:
    config = parse_config(BASE)
    with pytest.raises(ValueError, match="frozen"):
        config.sources[0].name = "other"  # type: ignore[misc]


def test_resolve_secret_from_env_and_file(tmp_path: Path) -> None:
    file = tmp_path / "pw"
    file.write_text("from-file\n")
    assert resolve_secret("PW", None, "x.password", {"PW": "from-env"}) == "from-env"
    assert resolve_secret(None, str(file), "x.password", {}) == "from-file"
    assert resolve_secret(None, None, "x.password", {}) is None


def test_resolve_secret_errors_name_the_reference_not_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as unset:
        resolve_secret("PW", None, "elasticsearch.password", {})
    assert unset.value.problems == [
        "elasticsearch.password_env: the environment variable PW is not set or empty"
    ]
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    with pytest.raises(ConfigError) as blank:
        resolve_secret(None, str(empty), "store.password", {})
    assert blank.value.problems == [f"store.password_file: {empty} is empty"]
    with pytest.raises(ConfigError) as missing:
        resolve_secret(None, str(tmp_path / "nope"), "store.password", {})
    assert "No such file or directory" in missing.value.problems[0]
