"""Roles and users as the query role and query user APIs search them.

Field tables follow Elasticsearch 8.17's ``FieldNameTranslators``: roles allow ``name``,
``description``, ``applications.application``, ``applications.resources``,
``applications.privileges`` and the flattened ``metadata``; users allow ``username``, ``roles``,
``enabled``, ``full_name`` and ``email`` (no metadata), and refuse sorting on ``full_name`` and
``email``. Types follow the security index mapping (``SecuritySystemIndices``): ``description``
and ``full_name`` are ``text`` (standard analyzer), ``email`` is ``text`` with the ``email``
analyzer (the URL/e-mail tokenizer, a ``pattern_capture`` filter keeping the original, lowercase,
unique).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from rotator.sandbox.docindex import DocIndex
from rotator.sandbox.query_fields import Field, FieldSet
from rotator.sandbox.roles import RoleDescriptor

__all__ = [
    "ROLE_FIELDS",
    "USER_FIELDS",
    "RoleDoc",
    "UserDoc",
    "email_tokens",
    "role_index",
    "standard_tokens",
    "user_index",
]

_WORD = re.compile(r"\w+", re.UNICODE)
_EMAIL_OR_URL = re.compile(r"[^\s@<>()\[\],;:\"]+@[^\s@<>()\[\],;:\"]+|[a-zA-Z][\w+.-]*://\S+")
_CAPTURES = (
    re.compile(r"([^@]+)"),
    re.compile(r"([^\W\d_]+)"),
    re.compile(r"(\d+)"),
    re.compile(r"@(.+)"),
)


def standard_tokens(text: str) -> tuple[str, ...]:
    """Tokenize like the ``standard`` analyzer: word runs, lowercased."""
    return tuple(t.lower() for t in _WORD.findall(text))


def email_tokens(text: str) -> tuple[str, ...]:
    """Tokenize like the security index's ``email`` analyzer.

    E-mail addresses and URLs stay single tokens (``uax_url_email``); every token is kept and
    also split by the captures ``([^@]+)``, ``(\\p{L}+)``, ``(\\d+)`` and ``@(.+)``; then
    everything is lowercased and deduplicated.
    """
    tokens: list[str] = []
    rest = 0
    for found in _EMAIL_OR_URL.finditer(text):
        tokens += _WORD.findall(text[rest : found.start()])
        tokens.append(found.group(0))
        rest = found.end()
    tokens += _WORD.findall(text[rest:])
    out: list[str] = []
    for token in tokens:
        out.append(token)
        for pattern in _CAPTURES:
            out += pattern.findall(token)
    return tuple(dict.fromkeys(t.lower() for t in out))


@dataclass(frozen=True, slots=True)
class RoleDoc:
    """A native role as the query role API indexes it."""

    id: str
    seq: int
    name: str
    description: str | None
    application: tuple[str, ...]
    resources: tuple[str, ...]
    privileges: tuple[str, ...]
    metadata: dict[str, Any]
    descriptor: RoleDescriptor


@dataclass(frozen=True, slots=True)
class UserDoc:
    """A native user as the query user API indexes it."""

    id: str
    seq: int
    username: str
    roles: tuple[str, ...]
    enabled: bool
    full_name: str | None
    email: str | None
    metadata: dict[str, Any]


def _field(name: str, kind: Any, attr: str, **extra: Any) -> Field:
    type_name = "keyword" if kind == "keyword" else kind
    return Field(name, name, kind, type_name, getter=attrgetter(attr), **extra)


ROLE_FIELDS = FieldSet(
    (
        _field("name", "keyword", "name", always=True),
        _field("description", "text", "description", analyzer=standard_tokens),
        _field("applications.application", "keyword", "application", multi=True),
        _field("applications.resources", "keyword", "resources", multi=True),
        _field("applications.privileges", "keyword", "privileges", multi=True),
    )
)

USER_FIELDS = FieldSet(
    (
        _field("username", "keyword", "username", always=True),
        _field("roles", "keyword", "roles", multi=True),
        _field("enabled", "boolean", "enabled", always=True),
        _field("full_name", "text", "full_name", analyzer=standard_tokens, sortable=False),
        _field("email", "text", "email", analyzer=email_tokens, sortable=False),
    ),
    metadata=False,
)


def role_index(roles: Mapping[str, RoleDescriptor]) -> DocIndex:
    """Index the native roles (in the order they were first stored)."""
    return DocIndex(ROLE_FIELDS, (_role_doc(seq, r) for seq, r in enumerate(roles.values())))


def _role_doc(seq: int, role: RoleDescriptor) -> RoleDoc:
    apps = role.applications
    return RoleDoc(
        id=role.name,
        seq=seq,
        name=role.name,
        description=role.description,
        application=tuple(a.application for a in apps),
        resources=tuple(r for a in apps for r in a.resources),
        privileges=tuple(p for a in apps for p in a.privileges),
        metadata=dict(role.metadata),
        descriptor=role,
    )


def user_index(users: Iterable[Any]) -> DocIndex:
    """Index the native users (``UserRecord``s, in the order they were first stored)."""
    docs = (
        UserDoc(
            id=u.username,
            seq=seq,
            username=u.username,
            roles=tuple(u.roles),
            enabled=u.enabled,
            full_name=u.full_name,
            email=u.email,
            metadata=dict(u.metadata),
        )
        for seq, u in enumerate(users)
    )
    return DocIndex(USER_FIELDS, docs)
