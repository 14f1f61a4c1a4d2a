"""The configuration's pydantic models: every section, field and per-field rule."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic_core import PydanticCustomError

from rotator.config_errors import excerpt, redacted_url
from rotator.durations import DurationError, parse_duration
from rotator.notify import NoticeKind
from rotator.scoping import Grants, IndexGrant, preset_grants

# Metadata rotator writes on every key it creates (used to find keys again after a crash).
ROTATOR_METADATA = frozenset(
    {"managed_by", "source", "generation", "rotation_id", "config_fingerprint"}
)
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


def _listen(value: str) -> str:
    host, sep, port = value.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise PydanticCustomError(
            "listen", "expected HOST:PORT with a port from 0 to 65535, e.g. 127.0.0.1:9464"
        )
    return value.strip()


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
    problem = url_problem(value)
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


def url_problem(value: str) -> str | None:
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
    # os.path.isabs is what Path.is_absolute decides, without building a Path (a fleet config
    # has one sink path per source).
    if not os.path.isabs(value):
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
    # A line for line-oriented readers; false for tools that keep stdin byte for byte (the Beats
    # keystore's `add --stdin` stores a trailing newline as part of the value).
    stdin_newline: bool = True
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
        """The privileges the key gets: the preset's and the explicit ones together.

        A preset alone (the common case, once per source of a fleet) is filled in from the
        preset's template, built once: its union with no explicit privilege normalizes to the
        same value.
        """
        explicit = self.privileges
        if (
            self.preset is not None
            and self.dataset is not None
            and not explicit.cluster
            and not explicit.indices
            and (template := _preset_template(self.preset)) is not None
        ):
            (grant,) = template.indices
            (name,) = grant.names
            name = name.replace(_DATASET, self.dataset).replace(_NAMESPACE, self.namespace)
            return Grants(template.cluster, (IndexGrant((name,), grant.privileges),))
        built = Grants.build(
            explicit.cluster, [(entry.names, entry.privileges) for entry in explicit.indices]
        )
        if self.preset is None or self.dataset is None:
            return built
        return preset_grants(self.preset, self.dataset, self.namespace).union(built)


# Stand-ins for a dataset and a namespace: NUL, which no configured text may hold.
_DATASET, _NAMESPACE = "\x00dataset\x00", "\x00namespace\x00"


@functools.cache
def _preset_template(preset: str) -> Grants | None:
    """The grants of a preset with stand-ins for the dataset and namespace, when they are one
    index name whose only varying parts are those two (else None: build them each time)."""
    template = preset_grants(preset, _DATASET, _NAMESPACE)
    if len(template.indices) != 1 or len(template.indices[0].names) != 1:
        return None
    (name,) = template.indices[0].names
    if name.count(_DATASET) != 1 or name.count(_NAMESPACE) != 1:
        return None
    return template


@dataclass(frozen=True)
class SourcePolicy:
    """A source's timing policy with the defaults applied."""

    lifetime: timedelta
    rotate_before: timedelta
    overlap: timedelta
    jitter: timedelta
    critical_before: timedelta


# --- jobs and service ----------------------------------------------------------------------------


def _lead_times(value: object) -> object:
    # One duration is accepted for a single lead time.
    return [value] if isinstance(value, str | int | timedelta) else value


def _distinct_leads(value: list[timedelta]) -> list[timedelta]:
    if not value:
        raise PydanticCustomError("lead_times", "give at least one lead time, e.g. [14d, 3d, 1d]")
    if len(set(value)) != len(value):
        raise PydanticCustomError("lead_times", "each lead time may be given once")
    return sorted(value, reverse=True)


KEY_CLASSES = ("rotator", "kibana-managed", "user", "cross_cluster")
KeyClassName = Literal["rotator", "kibana-managed", "user", "cross_cluster"]


_WARNED_CLASSES: tuple[KeyClassName, ...] = ("kibana-managed", "user", "cross_cluster")


class KeyPolicyConfig(Section):
    """The rules every active key is checked against (whatever its owner); ``null`` turns a
    limit off."""

    no_expiration: bool = True
    max_lifetime: PositiveDuration | None = timedelta(days=90)
    unrestricted: bool = True
    max_age: PositiveDuration | None = timedelta(days=365)
    owner_missing: bool = True


class ManagedKeysConfig(Section):
    """The inventory of every API key: Kibana, Fleet and other services' background-task keys,
    users' keys, and rotator's own (the ``track`` job)."""

    enabled: bool = True
    page_size: int = Field(default=1000, ge=1, le=10000)
    warn_before: Annotated[
        list[PositiveDuration], BeforeValidator(_lead_times), AfterValidator(_distinct_leads)
    ] = Field(default_factory=lambda: [timedelta(days=14), timedelta(days=3), timedelta(days=1)])
    warn_classes: list[KeyClassName] = Field(default_factory=lambda: list(_WARNED_CLASSES))
    orphan_grace: PositiveDuration = timedelta(hours=1)
    forget_after: PositiveDuration = timedelta(days=30)
    policy: KeyPolicyConfig = Field(default_factory=KeyPolicyConfig)


class PurgeExclude(Section):
    """Keys the purge never touches: a name matching one of ``names`` (``*`` and ``?``
    wildcards), or a metadata value equal to one of ``metadata`` (dotted paths)."""

    names: list[Text] = Field(default_factory=list)
    metadata: dict[Text, str | int | bool] = Field(default_factory=dict)


class PurgeConfig(Section):
    """Bulk invalidation of the caller's own expired keys (needs only manage_own_api_key)."""

    enabled: bool = False
    expired_for: Duration = timedelta(0)
    batch_size: int = Field(default=1000, ge=1, le=10000)
    name_prefix: Text | None = None
    include_managed: bool = False
    exclude: PurgeExclude = Field(default_factory=PurgeExclude)
    retention: PositiveDuration = timedelta(days=90)


class AuditConfig(Section):
    """The hash-chained audit trail and where it is copied."""

    verify_on_start: bool = True
    retention: PositiveDuration | None = None  # keep forever
    # the JSONL mirror
    jsonl_path: Text | None = None
    jsonl_max_bytes: int = Field(default=100 * 1024 * 1024, ge=4096)
    jsonl_backups: int = Field(default=5, ge=0, le=1000)
    # shipping to Elasticsearch
    data_stream: Text | None = None
    ship_batch_size: int = Field(default=500, ge=1, le=10000)
    ship_key_path: AbsolutePath | None = None  # None: rotator-audit.key beside a SQLite store


# --- notify --------------------------------------------------------------------------------------


def _notice_kind(value: str) -> str:
    if value not in NoticeKind.__members__.values():
        raise PydanticCustomError(
            "notice_kind",
            "unknown notice kind {value}; expected one of {kinds}",
            {"value": excerpt(value), "kinds": ", ".join(k.value for k in NoticeKind)},
        )
    return value


NoticeKindName = Annotated[str, AfterValidator(_notice_kind)]
SeverityName = Literal["info", "low", "medium", "warning", "high", "critical"]


class NotifySinkBase(Section):
    """What every notification sink has: a name, its filters, its retries and timeout."""

    name: Text | None = None  # None: "<type>[<index>]"; dedup memory is kept by this name
    kinds: list[NoticeKindName] = Field(default_factory=list)  # empty: every kind
    min_severity: SeverityName = "info"
    retries: int = Field(default=3, ge=0, le=20)
    timeout: PositiveDuration = timedelta(seconds=10)


class NotifyWebhook(NotifySinkBase):
    """POSTs each notice as JSON, signed with HMAC-SHA256 like the webhook delivery sink."""

    type: Literal["webhook"]
    url: Text
    hmac_secret_env: EnvName | None = None
    hmac_secret_file: Text | None = None
    ca_file: Text | None = None
    allow_insecure: bool = False

    @model_validator(mode="after")
    def _signed(self) -> NotifyWebhook:
        problem = url_problem(self.url)
        if problem:
            raise PydanticCustomError("url_text", "url: {problem}", {"problem": problem})
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PydanticCustomError("url", "url: expected an https:// URL with a host")
        if parts.scheme == "http" and not self.allow_insecure:
            raise PydanticCustomError(
                "url",
                "url: plain http would send notices unencrypted; use https or set "
                "allow_insecure: true",
            )
        if not self.hmac_secret_env and not self.hmac_secret_file:
            raise PydanticCustomError(
                "hmac_secret", "hmac_secret_env or hmac_secret_file must name the signing secret"
            )
        return self


class NotifySlack(NotifySinkBase):
    """POSTs ``{"text": ...}`` to a Slack-compatible incoming webhook (whose URL is a secret)."""

    type: Literal["slack"]
    url: Text | None = None
    url_env: EnvName | None = None
    url_file: Text | None = None
    ca_file: Text | None = None
    allow_insecure: bool = False

    @model_validator(mode="after")
    def _one_url(self) -> NotifySlack:
        given = [x for x in (self.url, self.url_env, self.url_file) if x]
        if len(given) != 1:
            raise PydanticCustomError(
                "slack_url", "give exactly one of url, url_env or url_file (the URL is a secret)"
            )
        return self


class NotifyExec(NotifySinkBase):
    """Runs a command (no shell) with the notice as JSON on its stdin."""

    type: Literal["exec"]
    argv: list[Text] = Field(min_length=1)
    timeout: PositiveDuration = timedelta(seconds=30)


NotifySink = Annotated[
    Union[NotifyWebhook, NotifySlack, NotifyExec],  # noqa: UP007
    Field(discriminator="type"),
]


class NotifyConfig(Section):
    """Who hears of what needs people (besides the log): sinks, their filters, deduplication."""

    renotify_after: PositiveDuration | None = timedelta(hours=24)  # None: never remind
    proxy: Text | None = None  # the proxy outbound requests use; the environment's never are
    sinks: list[NotifySink] = Field(default_factory=list)


Schedule = Annotated[str, AfterValidator(_schedule)]


class ScheduleConfig(Section):
    """When each job runs: a duration (every ``2s``, ``1m``, ``6h``) or a 5-field cron line in
    UTC; ``null`` turns a job off. The only place schedules are set."""

    lifecycle: Schedule | None = "1m"
    track: Schedule | None = "5m"
    purge: Schedule | None = "1h"
    audit: Schedule | None = "1m"  # copies of the trail (mirror, shipping) and its retention


class ServiceConfig(Section):
    """The daemon: schedule, parallelism, leader lease, health and metrics endpoint."""

    schedule: ScheduleConfig = Field(default_factory=lambda: ScheduleConfig())
    max_parallel: int = Field(default=4, ge=1, le=64)
    backoff_initial: PositiveDuration = timedelta(minutes=1)
    backoff_max: PositiveDuration = timedelta(hours=1)
    lease_ttl: PositiveDuration = timedelta(seconds=30)
    shutdown_timeout: PositiveDuration = timedelta(seconds=30)
    listen: Annotated[str, AfterValidator(_listen)] = "127.0.0.1:9464"
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
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    def policy_for(self, source: SourceConfig) -> SourcePolicy:
        """Return the source's timing policy with the defaults filled in."""
        return resolve_policy(self.defaults, source)

    def summary(self) -> str:
        """One line describing what the configuration sets up (no secrets)."""
        store = redacted_url(self.store.url)
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
    "notify": NotifyConfig,
    "service": ServiceConfig,
    "log": LogConfig,
}


def resolve_policy(defaults: SourceDefaults, source: SourceConfig | None) -> SourcePolicy:
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
