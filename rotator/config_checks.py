"""The rules that span fields and sections, each reported with the path it concerns."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from rotator.config_errors import excerpt, redacted_url
from rotator.config_models import (
    ROTATOR_METADATA,
    SOURCE_NAME_RE,
    ElasticsearchConfig,
    ExecSink,
    FileSink,
    PurgeConfig,
    ServiceConfig,
    SourceConfig,
    SourceDefaults,
    StoreConfig,
    WebhookSink,
    resolve_policy,
    url_problem,
)
from rotator.durations import format_duration
from rotator.scoping import lint

# --- cross-field rules ---------------------------------------------------------------------------


def cross_checks(
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
            # A source that overrides no timing field has nothing of its own to report.
            if source is not None and _times_anything(source):
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
            f"postgresql+psycopg://rotator@db/rotator, got {excerpt(redacted_url(store.url))}"
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


def _times_anything(source: SourceConfig) -> bool:
    """The source sets a field its timing problems are about (see ``own`` in _timing_checks)."""
    return (
        source.lifetime is not None
        or source.rotate_before is not None
        or source.overlap is not None
        or source.jitter is not None
    )


def _timing_checks(defaults: SourceDefaults, source: SourceConfig | None, at: str) -> list[str]:
    policy = resolve_policy(defaults, source)
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
    problems.extend(grant_checks(source, at))
    for key in source.metadata:
        if key.startswith("_"):
            problems.append(f"{at}.metadata.{key}: Elasticsearch reserves keys starting with '_'")
        elif key in ROTATOR_METADATA:
            problems.append(
                f"{at}.metadata.{key}: set by rotator on every key; choose another name"
            )
    for index, sink in enumerate(source.deliver):
        if isinstance(sink, WebhookSink):  # the only sink with rules across its fields
            problems.extend(_sink_checks(sink, f"{at}.deliver[{index}]"))
    return problems


_INDEX_PART_RE = re.compile(r"[a-z0-9_.]+")


def grant_checks(source: SourceConfig, at: str) -> list[str]:
    problems = []
    if source.preset is not None and source.dataset is None:
        problems.append(f"{at}.dataset: required with preset {source.preset!r}")
    if source.dataset is not None and source.preset is None:
        problems.append(f"{at}.dataset: only used with a preset")
    for field_name in ("dataset", "namespace"):
        value = getattr(source, field_name)
        if value is not None and not _INDEX_PART_RE.fullmatch(value):
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
        bad_url = url_problem(sink.url)
        scheme = urlsplit(sink.url).scheme if bad_url is None else ""
        if bad_url is not None:
            problems.append(f"{at}.url: {bad_url}")
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
