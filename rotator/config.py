"""The configuration: pydantic models, the YAML loader and the checks that span fields.

Every problem in a file is collected and reported as ``path.to.field: message``; nothing stops at
the first one. Secrets never appear inline: only as ``*_env`` (an environment variable's name) or
``*_file`` (a path) references, resolved when a connection is made.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import types
import typing
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from rotator.durations import DurationError, format_duration, parse_duration
from rotator.errors import ConfigError
from rotator.scoping import Grants, lint, preset_grants

# Keys that would hold a secret inline; each has a *_env / *_file replacement.
INLINE_SECRET_KEYS = frozenset(
    {"password", "api_key", "bearer_token", "token", "secret", "hmac_secret", "encoded"}
)

# Metadata rotator writes on every key it creates (used to find keys again after a crash).
ROTATOR_METADATA = frozenset(
    {"managed_by", "source", "generation", "rotation_id", "config_fingerprint"}
)
# A config is a few kilobytes; anything near this is a mistake or an attack.
MAX_CONFIG_BYTES = 1024 * 1024
# Deeper than any real config (sources[0].privileges.indices[0].names[0] is 6 levels).
MAX_DEPTH = 32
# The longest part of an input value a message repeats.
EXCERPT_CHARS = 40
SOURCE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _duration(value: object) -> timedelta:
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise PydanticCustomError("duration", str(exc)) from None


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise PydanticCustomError("duration_positive", "must be longer than 0s")
    return value


def _env_name(value: str) -> str:
    if not ENV_NAME_RE.fullmatch(value):
        raise PydanticCustomError(
            "env_name",
            "expected the name of an environment variable (letters, digits and _), "
            "not the secret itself",
        )
    return value


def _non_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be empty")
    if "\x00" in value:
        # The operating system cannot take it in a path, an argument or an environment value.
        raise PydanticCustomError("nul_byte", "must not contain a NUL byte (\\x00)")
    return value


def _host_url(value: str) -> str:
    problem = _url_problem(value)
    if problem:
        raise PydanticCustomError("url_text", problem)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PydanticCustomError(
            "host_url",
            "expected a URL such as https://es.example:9200, got {value}",
            {"value": excerpt(value)},
        )
    if parts.username or parts.password:
        raise PydanticCustomError(
            "host_credentials",
            "credentials must not be part of the URL; use username with password_env or "
            "password_file",
        )
    return value


def _url_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent as a URL as it is, or None."""
    if not value.isascii() or any(not ch.isprintable() or ch.isspace() for ch in value):
        return (
            f"must be plain ASCII without spaces or control characters (percent-encode the "
            f"rest, use the IDNA form of a host name), got {excerpt(value)}"
        )
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - parsing the port raises on a bad one
    except ValueError as exc:
        return f"not a valid URL ({exc}): {excerpt(value)}"
    return None


def _absolute_path(value: str) -> str:
    if not Path(value).is_absolute():
        raise PydanticCustomError(
            "absolute_path", "must be an absolute path, got {value}", {"value": excerpt(value)}
        )
    return value


def _schedule(value: str) -> str:
    """A duration of at least one second (``2s``, ``1m``, ``6h``) or a 5-field cron line."""
    text = value.strip()
    if len(text.split()) == 5:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(text)
        except ValueError as exc:
            raise PydanticCustomError(
                "schedule",
                "not a valid cron expression ({reason}): {value}",
                {"reason": str(exc), "value": excerpt(text)},
            ) from None
        return text
    try:
        every = parse_duration(text)
    except DurationError:
        raise PydanticCustomError(
            "schedule",
            "expected a duration such as 30s, 1m or 6h, or a 5-field cron expression "
            "such as '*/5 * * * *', got {value}",
            {"value": excerpt(text)},
        ) from None
    if every < timedelta(seconds=1):
        raise PydanticCustomError("schedule", "must be at least 1s, got {value}", {"value": text})
    return text


Duration = Annotated[timedelta, BeforeValidator(_duration)]
PositiveDuration = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_positive)]
EnvName = Annotated[str, AfterValidator(_env_name)]
Text = Annotated[str, AfterValidator(_non_blank)]
HostUrl = Annotated[str, AfterValidator(_host_url)]
AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]


class Section(BaseModel):
    """Base for every config mapping: strict types, unknown keys refused, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --- elasticsearch -------------------------------------------------------------------------------


class ElasticsearchConfig(Section):
    """How rotator reaches and authenticates to the cluster."""

    hosts: list[HostUrl] = Field(default_factory=lambda: ["http://localhost:9200"], min_length=1)
    username: Text | None = None
    password_env: EnvName | None = None
    password_file: Text | None = None
    bearer_token_env: EnvName | None = None
    bearer_token_file: Text | None = None
    api_key_env: EnvName | None = None
    api_key_file: Text | None = None
    ca_certs: Text | None = None
    verify_certs: bool = True
    request_timeout: PositiveDuration = timedelta(seconds=30)
    max_retries: int = Field(default=3, ge=0, le=10)

    @property
    def auth_method(self) -> Literal["basic", "bearer", "api_key", "none"]:
        """Which kind of credentials the section configures."""
        if self.username is not None:
            return "basic"
        if self.bearer_token_env or self.bearer_token_file:
            return "bearer"
        if self.api_key_env or self.api_key_file:
            return "api_key"
        return "none"


# --- store ---------------------------------------------------------------------------------------


class StoreConfig(Section):
    """Where rotator keeps its record (SQLite by default, PostgreSQL for replicas)."""

    url: Text = "sqlite:///./rotator.db"
    password_env: EnvName | None = None
    password_file: Text | None = None
    busy_timeout: PositiveDuration = timedelta(seconds=15)
    echo: bool = False


# --- source policy and sources -------------------------------------------------------------------


class SourceDefaults(Section):
    """Policy every source inherits unless it overrides a field."""

    lifetime: PositiveDuration = timedelta(days=30)
    rotate_before: PositiveDuration | None = None
    overlap: PositiveDuration = timedelta(hours=24)
    jitter: Duration = timedelta(0)
    critical_before: PositiveDuration = timedelta(hours=24)


class IndexPrivileges(Section):
    """Index privileges of a source: which index patterns and what it may do there."""

    names: list[Text] = Field(min_length=1)
    privileges: list[Text] = Field(min_length=1)


class SourcePrivileges(Section):
    """The privileges a source's key is given (turned into one role descriptor)."""

    cluster: list[Text] = Field(default_factory=list)
    indices: list[IndexPrivileges] = Field(default_factory=list)


FileFormat = Literal["json", "env", "id:api_key"]


class FileSink(Section):
    """Writes the credential to a file atomically."""

    type: Literal["file"]
    path: AbsolutePath
    format: FileFormat = "json"
    mode: Annotated[str, AfterValidator(lambda v: _file_mode(v))] = "0600"
    owner: Text | None = None
    group: Text | None = None
    env_var: EnvName = "ES_API_KEY"


def _file_mode(value: str) -> str:
    if not re.fullmatch(r"0?[0-7]{3}", value):
        raise PydanticCustomError("file_mode", "expected an octal file mode such as '0600'")
    if int(value, 8) & 0o007:
        raise PydanticCustomError(
            "file_mode", f"mode {value} lets every user read the credential; use 0600 or 0640"
        )
    return value


class ExecSink(Section):
    """Runs a command with the credential on stdin (no shell)."""

    type: Literal["exec"]
    argv: list[Text] = Field(min_length=1)
    stdin_format: Literal["id:api_key", "encoded"] = "id:api_key"
    timeout: PositiveDuration = timedelta(seconds=60)
    ack_command: list[Text] | None = None
    ack_timeout: PositiveDuration = timedelta(seconds=60)


class WebhookSink(Section):
    """POSTs the credential as signed JSON to an HTTPS endpoint."""

    type: Literal["webhook"]
    url: Text
    hmac_secret_env: EnvName | None = None
    hmac_secret_file: Text | None = None
    timeout: PositiveDuration = timedelta(seconds=10)
    retries: int = Field(default=3, ge=0, le=20)
    allow_insecure: bool = False


Sink = Annotated[Union[FileSink, ExecSink, WebhookSink], Field(discriminator="type")]  # noqa: UP007


Preset = Literal["logs-writer", "metrics-writer", "traces-writer"]


class SourceConfig(Section):
    """One ingestion source that needs a current, minimally scoped key."""

    name: Text
    description: str | None = None
    preset: Preset | None = None
    dataset: Text | None = None
    namespace: Text = "default"
    privileges: SourcePrivileges = Field(default_factory=SourcePrivileges)
    allow_broad_privileges: bool = False
    justification: Text | None = None
    lifetime: PositiveDuration | None = None
    rotate_before: PositiveDuration | None = None
    overlap: PositiveDuration | None = None
    jitter: Duration | None = None
    critical_before: PositiveDuration | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    deliver: list[Sink] = Field(default_factory=list)

    def grants(self) -> Grants:
        """The privileges the key gets: the preset's and the explicit ones together."""
        explicit = Grants.build(
            self.privileges.cluster,
            [(entry.names, entry.privileges) for entry in self.privileges.indices],
        )
        if self.preset is None or self.dataset is None:
            return explicit
        return preset_grants(self.preset, self.dataset, self.namespace).union(explicit)


@dataclass(frozen=True)
class SourcePolicy:
    """A source's timing policy with the defaults applied."""

    lifetime: timedelta
    rotate_before: timedelta
    overlap: timedelta
    jitter: timedelta
    critical_before: timedelta


# --- jobs and service ----------------------------------------------------------------------------


class ManagedKeysConfig(Section):
    """Inventory of keys that Kibana, Fleet and others create for background tasks."""

    enabled: bool = True
    warn_before: PositiveDuration = timedelta(days=14)
    critical_before: PositiveDuration = timedelta(days=3)
    page_size: int = Field(default=1000, ge=1, le=10000)


class PurgeConfig(Section):
    """Bulk invalidation of expired keys (needs only manage_own_api_key)."""

    enabled: bool = False
    expired_for: Duration = timedelta(days=1)
    batch_size: int = Field(default=500, ge=1, le=10000)
    name_prefix: Text | None = None


class AuditConfig(Section):
    """The hash-chained audit trail and where it is copied."""

    jsonl_path: Text | None = None
    data_stream: Text | None = None
    verify_on_start: bool = True


Schedule = Annotated[str, AfterValidator(_schedule)]


class ScheduleConfig(Section):
    """When each job runs: a duration (every ``2s``, ``1m``, ``6h``) or a 5-field cron line in
    UTC; ``null`` turns a job off. The only place schedules are set."""

    lifecycle: Schedule | None = "1m"
    track: Schedule | None = "5m"
    purge: Schedule | None = "1h"


class ServiceConfig(Section):
    """The daemon: schedule, parallelism, leader lease, health and metrics endpoint."""

    schedule: ScheduleConfig = Field(default_factory=lambda: ScheduleConfig())
    max_parallel: int = Field(default=4, ge=1, le=64)
    backoff_initial: PositiveDuration = timedelta(minutes=1)
    backoff_max: PositiveDuration = timedelta(hours=1)
    lease_ttl: PositiveDuration = timedelta(seconds=30)
    shutdown_timeout: PositiveDuration = timedelta(seconds=30)
    listen: Text = "127.0.0.1:9464"
    metrics_enabled: bool = True


class LogConfig(Section):
    """Log level and rendering."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Config(Section):
    """The whole configuration file."""

    elasticsearch: ElasticsearchConfig = Field(default_factory=ElasticsearchConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    defaults: SourceDefaults = Field(default_factory=SourceDefaults)
    sources: list[SourceConfig] = Field(default_factory=list)
    managed_keys: ManagedKeysConfig = Field(default_factory=ManagedKeysConfig)
    purge: PurgeConfig = Field(default_factory=PurgeConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    def policy_for(self, source: SourceConfig) -> SourcePolicy:
        """Return the source's timing policy with the defaults filled in."""
        return _policy(self.defaults, source)

    def summary(self) -> str:
        """One line describing what the configuration sets up (no secrets)."""
        store = _redacted_url(self.store.url)
        hosts = ", ".join(self.elasticsearch.hosts)
        return (
            f"{len(self.sources)} source(s); elasticsearch {hosts} "
            f"(auth: {self.elasticsearch.auth_method}); store {store}"
        )


SECTIONS: dict[str, type[Section]] = {
    "elasticsearch": ElasticsearchConfig,
    "store": StoreConfig,
    "defaults": SourceDefaults,
    "managed_keys": ManagedKeysConfig,
    "purge": PurgeConfig,
    "audit": AuditConfig,
    "service": ServiceConfig,
    "log": LogConfig,
}


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
    text = _read_config_file(file)
    return parse_config(text, str(file), references=references)


def _read_config_file(file: Path) -> str:
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; a regular file ignores it.
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ConfigError([f"(file): {file} does not exist"], str(file)) from None
    except OSError as exc:
        raise ConfigError([f"(file): cannot read {file}: {_os_reason(exc)}"], str(file)) from None
    try:
        kind = _file_kind(os.fstat(fd).st_mode)
        if kind != "a regular file":
            raise ConfigError([f"(file): {file} is {kind}, not a regular file"], str(file))
        data = _read_at_most(fd, MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"(file): cannot read {file}: {_os_reason(exc)}"], str(file)) from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            [
                f"(file): {file} is larger than {MAX_CONFIG_BYTES // 1024} KiB, "
                "the limit for a config"
            ],
            str(file),
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"(file): {file} is not UTF-8 text (byte {exc.start + 1})"], str(file)
        ) from None


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, min(65536, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def parse_config(text: str, origin: str = "config", *, references: bool = False) -> Config:
    """Validate YAML text; see :func:`load_config`."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(
            [f"(file): larger than {MAX_CONFIG_BYTES // 1024} KiB, the limit for a config"],
            origin,
        )
    try:
        raw, duplicates = _load_yaml(text)
    except _YamlRefused as exc:
        raise ConfigError([f"(file): {exc}"], origin) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"(file): invalid YAML: {_yaml_problem(exc)}"], origin) from None
    if raw is None:
        raw = {}
    try:
        config = validate_config(raw, origin, references=references)
    except ConfigError as exc:
        raise ConfigError(duplicates + exc.problems, origin) from None
    if duplicates:
        raise ConfigError(duplicates, origin)
    return config


class _YamlRefused(Exception):
    """YAML that is well formed but not accepted in a config (aliases, too deep)."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors and aliases, and with a bounded nesting depth.

    Aliases let a few lines expand into billions of values (an "alias bomb"); a config has no
    need for them. The depth bound keeps deeply nested input from exhausting the stack.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise _YamlRefused(
                f"YAML anchors and aliases (&name, *name) are not accepted in a config, "
                f"found one at {_mark(event.start_mark)}; write the value out"
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _YamlRefused(
                    f"nested deeper than {MAX_DEPTH} levels at {_mark(event.start_mark)}"
                )
            return super().compose_node(parent, index)  # type: ignore[arg-type]
        finally:
            self._depth -= 1


def _load_yaml(text: str) -> tuple[Any, list[str]]:
    """Parse one YAML document; returns the data and a problem for each duplicate key."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        return loader.construct_document(node), _duplicate_keys(node, "")
    finally:
        loader.dispose()


def _duplicate_keys(node: yaml.Node, path: str) -> list[str]:
    problems: list[str] = []
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems.extend(_duplicate_keys(item, f"{path or '(root)'}[{index}]"))
    elif isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue
            at = f"{path}.{_short(key.value)}" if path else _short(key.value)
            line = key.start_mark.line + 1
            if (key.tag, key.value) in first:
                seen = first[(key.tag, key.value)]
                problems.append(f"{at}: duplicate key at line {line} (first at line {seen})")
            else:
                first[(key.tag, key.value)] = line
            problems.extend(_duplicate_keys(value, at))
    return problems


def _short(text: str) -> str:
    return text if len(text) <= EXCERPT_CHARS else f"{text[:EXCERPT_CHARS]}..."


def _mark(mark: yaml.Mark | None) -> str:
    return (
        "an unknown position" if mark is None else f"line {mark.line + 1}, column {mark.column + 1}"
    )


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
        raise ConfigError([f"(root): expected a mapping of sections, got {_kind(raw)}"], origin)
    problems: list[str] = []
    parts: dict[str, Any] = {}
    for key in raw:
        if key not in SECTIONS and key != "sources":
            problems.append(_unknown_key_problem(str(key), "", Config))
    for name, model in SECTIONS.items():
        if raw.get(name) is None:
            if name in raw:
                problems.append(f"{name}: expected a mapping, got nothing (null)")
            continue
        parts[name] = _validate_part(model, raw[name], name, problems)
    sources = _validate_sources(raw.get("sources", []), problems)
    problems.extend(_cross_checks(raw, parts, sources))
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
        problems.extend(_format_errors(exc, prefix, model))
        return None


def _validate_sources(value: object, problems: list[str]) -> list[SourceConfig | None]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"sources: expected a list of sources, got {_kind(value)}")
        return []
    return [
        _validate_source(item, f"sources[{index}]", problems) for index, item in enumerate(value)
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
    return [problem for problem in _grant_checks(source, at) if problem not in reported]


# --- cross-field rules ---------------------------------------------------------------------------


def _cross_checks(
    raw: dict[Any, Any], parts: dict[str, Any], sources: list[SourceConfig | None]
) -> list[str]:
    problems: list[str] = []
    problems.extend(_duplicate_names(raw.get("sources")))
    es: ElasticsearchConfig | None = parts.get("elasticsearch", ElasticsearchConfig())
    if es is not None:
        problems.extend(_es_checks(es))
        problems.extend(_auth_use_checks(es, sources, parts.get("purge")))
    store: StoreConfig | None = parts.get("store", StoreConfig())
    if store is not None:
        problems.extend(_store_checks(store))
    defaults: SourceDefaults | None = parts.get("defaults", SourceDefaults())
    if defaults is not None:
        problems.extend(_timing_checks(defaults, None, "defaults"))
        for index, source in enumerate(sources):
            if source is not None:
                problems.extend(_timing_checks(defaults, source, f"sources[{index}]"))
    for index, source in enumerate(sources):
        if source is not None:
            problems.extend(_source_checks(source, f"sources[{index}]"))
    service: ServiceConfig | None = parts.get("service")
    if service is not None and service.backoff_initial > service.backoff_max:
        problems.append(
            f"service.backoff_initial: must not be longer than service.backoff_max "
            f"({format_duration(service.backoff_max)})"
        )
    return problems


def _duplicate_names(raw_sources: object) -> list[str]:
    if not isinstance(raw_sources, list):
        return []
    first: dict[str, int] = {}
    problems = []
    for index, item in enumerate(raw_sources):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            problems.append(
                f"sources[{index}].name: duplicate source name {excerpt(name)} "
                f"(first used by sources[{first[name]}])"
            )
        else:
            first[name] = index
    return problems


def _es_checks(es: ElasticsearchConfig) -> list[str]:
    problems = []
    methods = {
        "username": es.username is not None,
        "bearer_token_*": bool(es.bearer_token_env or es.bearer_token_file),
        "api_key_*": bool(es.api_key_env or es.api_key_file),
    }
    chosen = [name for name, on in methods.items() if on]
    if len(chosen) > 1:
        problems.append(
            f"elasticsearch: choose one way to authenticate, not {' and '.join(chosen)}"
        )
    for secret in ("password", "bearer_token", "api_key"):
        env, file = getattr(es, f"{secret}_env"), getattr(es, f"{secret}_file")
        if env and file:
            problems.append(
                f"elasticsearch.{secret}_file: set {secret}_env or {secret}_file, not both"
            )
    has_password = bool(es.password_env or es.password_file)
    if es.username is not None and not has_password:
        problems.append("elasticsearch.username: needs password_env or password_file")
    if has_password and es.username is None:
        problems.append("elasticsearch.username: required when a password is configured")
    if es.ca_certs is not None and not es.verify_certs:
        problems.append("elasticsearch.ca_certs: has no effect with verify_certs: false")
    return problems


def _auth_use_checks(
    es: ElasticsearchConfig, sources: list[SourceConfig | None], purge: PurgeConfig | None
) -> list[str]:
    problems = []
    needs_owner = [
        name
        for name, on in (
            ("sources", any(s is not None for s in sources)),
            ("purge", purge is not None and purge.enabled),
        )
        if on
    ]
    if es.auth_method == "api_key" and needs_owner:
        problems.append(
            "elasticsearch.api_key_env: an API key may only run the read-only jobs, but "
            f"{' and '.join(needs_owner)} need(s) to create or invalidate keys: Elasticsearch "
            "gives a key created by an API key no privileges; use username with password_env "
            "or password_file, or bearer_token_env"
        )
    if es.auth_method == "none" and needs_owner:
        problems.append(
            f"elasticsearch: {' and '.join(needs_owner)} need(s) credentials: set username with "
            "password_env or password_file, or bearer_token_env or bearer_token_file"
        )
    return problems


def _store_checks(store: StoreConfig) -> list[str]:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(store.url)
    except ArgumentError:
        return [
            f"store.url: expected a database URL such as sqlite:///./rotator.db or "
            f"postgresql+psycopg://rotator@db/rotator, got {excerpt(_redacted_url(store.url))}"
        ]
    problems = []
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        problems.append(
            f"store.url: unsupported database {url.get_backend_name()!r}; use sqlite or postgresql"
        )
    if url.password:
        problems.append(
            "store.url: the password must not be part of the URL; "
            "use store.password_env or store.password_file"
        )
    if store.password_env and store.password_file:
        problems.append("store.password_file: set password_env or password_file, not both")
    return problems


def _policy(defaults: SourceDefaults, source: SourceConfig | None) -> SourcePolicy:
    def pick(name: str) -> Any:
        value = getattr(source, name) if source is not None else None
        return value if value is not None else getattr(defaults, name)

    lifetime: timedelta = pick("lifetime")
    rotate_before: timedelta | None = pick("rotate_before")
    return SourcePolicy(
        lifetime=lifetime,
        rotate_before=rotate_before if rotate_before is not None else lifetime / 3,
        overlap=pick("overlap"),
        jitter=pick("jitter"),
        critical_before=pick("critical_before"),
    )


def _timing_checks(defaults: SourceDefaults, source: SourceConfig | None, at: str) -> list[str]:
    policy = _policy(defaults, source)
    fmt = format_duration

    def where(name: str) -> str:
        overridden = source is None or getattr(source, name) is not None
        return f"{at}.{name}" if overridden else f"{at}.{name} (from defaults.{name})"

    def own(*names: str) -> bool:
        # Report on a source only what its own overrides cause; the defaults are checked once.
        return source is None or any(getattr(source, n) is not None for n in names)

    problems = []
    if policy.rotate_before >= policy.lifetime and own("rotate_before", "lifetime"):
        problems.append(
            f"{where('rotate_before')}: must be shorter than lifetime "
            f"({fmt(policy.rotate_before)} >= {fmt(policy.lifetime)})"
        )
    elif policy.rotate_before + policy.jitter >= policy.lifetime and own(
        "rotate_before", "lifetime", "jitter"
    ):
        problems.append(
            f"{where('jitter')}: rotate_before + jitter must be shorter than lifetime "
            f"({fmt(policy.rotate_before)} + {fmt(policy.jitter)} >= {fmt(policy.lifetime)})"
        )
    if policy.overlap >= policy.rotate_before and own("overlap", "rotate_before", "lifetime"):
        problems.append(
            f"{where('overlap')}: must be shorter than rotate_before, or the old key expires "
            f"before the overlap ends ({fmt(policy.overlap)} >= {fmt(policy.rotate_before)})"
        )
    return problems


def _source_checks(source: SourceConfig, at: str) -> list[str]:
    problems = []
    if not SOURCE_NAME_RE.fullmatch(source.name):
        problems.append(
            f"{at}.name: {excerpt(source.name)} is not a valid source name: use 1-63 lowercase "
            "letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    problems.extend(_grant_checks(source, at))
    for key in source.metadata:
        if key.startswith("_"):
            problems.append(f"{at}.metadata.{key}: Elasticsearch reserves keys starting with '_'")
        elif key in ROTATOR_METADATA:
            problems.append(
                f"{at}.metadata.{key}: set by rotator on every key; choose another name"
            )
    for index, sink in enumerate(source.deliver):
        problems.extend(_sink_checks(sink, f"{at}.deliver[{index}]"))
    return problems


def _grant_checks(source: SourceConfig, at: str) -> list[str]:
    problems = []
    if source.preset is not None and source.dataset is None:
        problems.append(f"{at}.dataset: required with preset {source.preset!r}")
    if source.dataset is not None and source.preset is None:
        problems.append(f"{at}.dataset: only used with a preset")
    for field_name in ("dataset", "namespace"):
        value = getattr(source, field_name)
        if value is not None and not re.fullmatch(r"[a-z0-9_.]+", value):
            problems.append(
                f"{at}.{field_name}: {excerpt(value)} may only hold lowercase letters, digits, "
                "'_' and '.'"
            )
    if source.allow_broad_privileges and not source.justification:
        problems.append(f"{at}.justification: required with allow_broad_privileges: true")
    if source.justification and not source.allow_broad_privileges:
        problems.append(f"{at}.justification: only used with allow_broad_privileges: true")
    grants = source.grants()
    if grants.is_empty() and source.preset is None:
        problems.append(
            f"{at}.privileges: grant at least one cluster or index privilege (or use a preset); a "
            "key with no role descriptor would carry all of rotator's own privileges"
        )
        return problems
    return problems + lint(grants, at, allow_broad=source.allow_broad_privileges)


def _sink_checks(sink: FileSink | ExecSink | WebhookSink, at: str) -> list[str]:
    if isinstance(sink, WebhookSink):
        problems = []
        url_problem = _url_problem(sink.url)
        scheme = urlsplit(sink.url).scheme if url_problem is None else ""
        if url_problem is not None:
            problems.append(f"{at}.url: {url_problem}")
        elif scheme not in ("http", "https") or not urlsplit(sink.url).hostname:
            problems.append(
                f"{at}.url: expected an https:// URL with a host, got {excerpt(sink.url)}"
            )
        elif scheme == "http" and not sink.allow_insecure:
            problems.append(
                f"{at}.url: plain http would send the credential unencrypted; "
                "use https or set allow_insecure: true"
            )
        if sink.hmac_secret_env and sink.hmac_secret_file:
            problems.append(
                f"{at}.hmac_secret_file: set hmac_secret_env or hmac_secret_file, not both"
            )
        if not (sink.hmac_secret_env or sink.hmac_secret_file):
            problems.append(f"{at}: needs hmac_secret_env or hmac_secret_file to sign the body")
        return problems
    return []


# --- error formatting ----------------------------------------------------------------------------


def _format_errors(exc: ValidationError, prefix: str, model: type[BaseModel]) -> list[str]:
    return [_format_error(error, prefix, model) for error in exc.errors(include_url=False)]


def _format_error(error: ErrorDetails, prefix: str, model: type[BaseModel]) -> str:
    loc = _clean_loc(error["loc"])
    path = _join_path(prefix, loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        return _unknown_key_problem(
            str(loc[-1]), _join_path(prefix, loc[:-1]), _model_at(model, loc[:-1])
        )
    return f"{path}: {_message(error)}"


def _clean_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # Discriminated unions and validators add the tag or function name to the location.
    dropped = {"file", "exec", "webhook"}
    out: list[int | str] = []
    for index, part in enumerate(loc):
        prev = loc[index - 1] if index else None
        if isinstance(part, str) and part in dropped and isinstance(prev, int):
            continue
        out.append(part)
    return tuple(out)


def _join_path(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else str(part)
    return path or "(root)"


def _unknown_key_problem(key: str, at: str, model: type[BaseModel] | None) -> str:
    where = f"{at}.{key}" if at else key
    if key in INLINE_SECRET_KEYS:
        return (
            f"{where}: secrets may not be written in the config; "
            f"use {key}_env (an environment variable) or {key}_file (a file) instead"
        )
    allowed = sorted(model.model_fields) if model is not None else []
    if model is Config:
        allowed = sorted([*SECTIONS, "sources"])
    hint = difflib.get_close_matches(key, allowed, n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    listing = f"; allowed: {', '.join(allowed)}" if allowed else ""
    return f"{where}: unknown key{suggestion}{listing}"


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (list, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            inner = _unwrap(arg)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return annotation


_MESSAGES = {
    "missing": "is required",
    "string_type": "expected a string, got {kind}",
    "bool_type": "expected true or false, got {kind}",
    "int_type": "expected a whole number, got {kind}",
    "list_type": "expected a list, got {kind}",
    "dict_type": "expected a mapping, got {kind}",
    "model_type": "expected a mapping, got {kind}",
    "model_attributes_type": "expected a mapping, got {kind}",
    "too_short": "must not be empty",
    "union_tag_not_found": "needs a type: one of {tags}",
}


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected', '')}, got {_shown(value)}"
    if kind == "union_tag_invalid":
        return f"unknown type {excerpt(ctx.get('tag'))}: expected one of {ctx.get('expected_tags')}"
    if kind in ("greater_than_equal", "less_than_equal"):
        bound = ctx.get("ge", ctx.get("le"))
        word = "at least" if kind == "greater_than_equal" else "at most"
        return f"must be {word} {bound}, got {_shown(value)}"
    if kind in _MESSAGES:
        return _MESSAGES[kind].format(kind=_kind(value), tags="exec, file, webhook")
    return str(error["msg"])


def _kind(value: object) -> str:
    if value is None:
        return "nothing (null)"
    names = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }
    described = names.get(type(value), type(value).__name__)
    if isinstance(value, (dict, list)):
        return described
    return f"{described} ({excerpt(value)})"


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``repr`` of a value cut to a short excerpt, for messages: never the whole input."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= 2 * limit else f"{text[: 2 * limit]}..."


def _shown(value: object) -> str:
    if isinstance(value, (dict, list)):
        return _kind(value)
    return excerpt(value)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return str(problem)


def _redacted_url(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"//[^@/]*@", "//***@", url)
