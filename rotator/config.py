"""Loading the configuration: read the file, parse strict YAML, validate every section.

Every problem in a file is collected and reported as ``path.to.field: message``; nothing stops at
the first one. Secrets never appear inline: only as ``*_env`` (an environment variable's name) or
``*_file`` (a path) references, resolved when a connection is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    TypeAdapter,
    ValidationError,
)

from rotator.config_checks import cross_checks, grant_checks
from rotator.config_errors import excerpt, format_errors, kind_of, unknown_key_problem
from rotator.config_models import (
    SECTIONS,
    AuditConfig,
    Config,
    ElasticsearchConfig,
    ExecSink,
    FileSink,
    IndexPrivileges,
    LogConfig,
    ManagedKeysConfig,
    PurgeConfig,
    ScheduleConfig,
    Section,
    ServiceConfig,
    SourceConfig,
    SourceDefaults,
    SourcePolicy,
    SourcePrivileges,
    StoreConfig,
    WebhookSink,
)
from rotator.config_yaml import (
    MAX_CONFIG_BYTES,
    YamlRefused,
    load_yaml,
    read_config_file,
    yaml_problem,
)
from rotator.errors import ConfigError
from rotator.gcpause import collector_paused

# The configuration's public names, wherever they are defined.
__all__ = [
    "MAX_CONFIG_BYTES",
    "SECTIONS",
    "AuditConfig",
    "Config",
    "ElasticsearchConfig",
    "ExecSink",
    "FileSink",
    "IndexPrivileges",
    "LogConfig",
    "ManagedKeysConfig",
    "PurgeConfig",
    "ScheduleConfig",
    "ServiceConfig",
    "SourceConfig",
    "SourceDefaults",
    "SourcePolicy",
    "SourcePrivileges",
    "StoreConfig",
    "WebhookSink",
    "excerpt",
    "load_config",
    "parse_config",
    "validate_config",
]

# --- loading -------------------------------------------------------------------------------------


def load_config(path: str | Path, *, references: bool = False) -> Config:
    """Read, parse and validate a YAML config file.

    Only a regular file of at most ``MAX_CONFIG_BYTES`` is read: a device, a FIFO or a directory
    given as the config is refused before anything is read from it.

    Args:
        path: the config file.
        references: also check that the secrets it references exist (see
            :func:`rotator.secrets.reference_problems`).

    Raises:
        ConfigError: with every problem found, each as ``path: message``.
    """
    file = Path(path)
    text = read_config_file(file)
    return parse_config(text, str(file), references=references)


def parse_config(text: str, origin: str = "config", *, references: bool = False) -> Config:
    """Validate YAML text; see :func:`load_config`."""
    with collector_paused():
        return _parse_config(text, origin, references=references)


def _parse_config(text: str, origin: str, *, references: bool) -> Config:
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(
            [f"(file): larger than {MAX_CONFIG_BYTES // 1024} KiB, the limit for a config"],
            origin,
        )
    try:
        raw, duplicates = load_yaml(text)
    except YamlRefused as exc:
        raise ConfigError([f"(file): {exc}"], origin) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"(file): invalid YAML: {yaml_problem(exc)}"], origin) from None
    if raw is None:
        raw = {}
    try:
        config = validate_config(raw, origin, references=references)
    except ConfigError as exc:
        raise ConfigError(duplicates + exc.problems, origin) from None
    if duplicates:
        raise ConfigError(duplicates, origin)
    return config


def validate_config(raw: object, origin: str = "config", *, references: bool = False) -> Config:
    """Validate already-parsed data section by section, so that all problems are found.

    Args:
        raw: the parsed YAML.
        origin: names the config in the error (a file path).
        references: also check that every ``*_env`` variable is set and every ``*_file`` is a
            readable, private file (the secrets themselves are never shown).

    Raises:
        ConfigError: with every problem found.
    """
    if not isinstance(raw, dict):
        raise ConfigError([f"(root): expected a mapping of sections, got {kind_of(raw)}"], origin)
    problems: list[str] = []
    parts: dict[str, Any] = {}
    for key in raw:
        if key not in SECTIONS and key != "sources":
            problems.append(unknown_key_problem(str(key), "", Config))
    for name, model in SECTIONS.items():
        if raw.get(name) is None:
            if name in raw:
                problems.append(f"{name}: expected a mapping, got nothing (null)")
            continue
        parts[name] = _validate_part(model, raw[name], name, problems)
    sources = _validate_sources(raw.get("sources", []), problems)
    problems.extend(cross_checks(raw, parts, sources))
    if references:
        from rotator.secrets import reference_problems

        problems.extend(
            reference_problems(
                parts.get("elasticsearch", ElasticsearchConfig()),
                parts.get("store", StoreConfig()),
                sources,
            )
        )
    if problems:
        raise ConfigError(problems, origin)
    return Config(**parts, sources=[s for s in sources if s is not None])


def _validate_part(model: type[Section], value: object, prefix: str, problems: list[str]) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems.extend(format_errors(exc, prefix, model))
        return None


# Every source in one call of the validator: a call per source costs more than the source.
_SOURCE_LIST: TypeAdapter[list[SourceConfig]] = TypeAdapter(list[SourceConfig])


def _validate_sources(value: object, problems: list[str]) -> list[SourceConfig | None]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"sources: expected a list of sources, got {kind_of(value)}")
        return []
    try:
        return list(_SOURCE_LIST.validate_python(value))
    except ValidationError as exc:
        failed = {error["loc"][0] if error["loc"] else None for error in exc.errors()}
    if not all(isinstance(index, int) for index in failed):
        failed = set(range(len(value)))  # not an error of one source: each one decides alone
    # The valid sources in one more call; each invalid one alone, which reports its problems in
    # its own words and lints what it grants.
    valid = iter(
        _SOURCE_LIST.validate_python([item for i, item in enumerate(value) if i not in failed])
    )
    return [
        _validate_source(item, f"sources[{index}]", problems) if index in failed else next(valid)
        for index, item in enumerate(value)
    ]


# The fields that decide a source's privileges: linted even when the rest of the source is invalid.
_GRANT_FIELDS = (
    "preset",
    "dataset",
    "namespace",
    "privileges",
    "allow_broad_privileges",
    "justification",
)


def _validate_source(item: object, at: str, problems: list[str]) -> SourceConfig | None:
    before = len(problems)
    source: SourceConfig | None = _validate_part(SourceConfig, item, at, problems)
    if source is None and isinstance(item, dict):
        problems.extend(_lint_invalid_source(item, at, problems[before:]))
    return source


def _lint_invalid_source(item: dict[Any, Any], at: str, reported: list[str]) -> list[str]:
    """The privilege lint of a source that failed validation elsewhere (a bad sink, a typo)."""
    partial = {key: item[key] for key in _GRANT_FIELDS if key in item}
    try:
        source = SourceConfig.model_validate({**partial, "name": "linted"})
    except ValidationError:
        return []  # the privileges themselves are malformed, and that is reported already
    return [problem for problem in grant_checks(source, at) if problem not in reported]
