"""Elasticsearch privileges as data, a wildcard-pattern algebra, and permission checks."""

from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from rotator.sandbox.errors import bad_request, validation_failed

if TYPE_CHECKING:
    from rotator.sandbox.roles import RoleDescriptor

# ---------------------------------------------------------------------------------------------
# Pattern algebra: ES compiles privilege patterns into Lucene automata and answers "is P
# implied" as a subset test. Patterns here are globs (`*` any run, `?` one character, `\`
# escapes) plus the few character classes the restricted-index rule needs; a PatternSet is a
# union of patterns minus a union of exclusions, and subset tests run the NFAs side by side.
# ---------------------------------------------------------------------------------------------

_DIGITS = frozenset("0123456789")
_OTHER = "\x00"  # stands for every character that no pattern names


@dataclass(frozen=True)
class _Atom:
    """One pattern position: a character class (None = any) repeated once or any times."""

    chars: frozenset[str] | None
    star: bool

    def matches(self, char: str) -> bool:
        """Whether the atom accepts ``char``."""
        return self.chars is None or char in self.chars


@dataclass(frozen=True)
class Pattern:
    """A compiled glob (or, for index names, a ``/regex/`` kept for concrete matching)."""

    text: str
    atoms: tuple[_Atom, ...]
    regex: re.Pattern[str] | None = None

    def start(self) -> frozenset[int]:
        """The NFA's initial state set."""
        return self._closure({0})

    def step(self, states: frozenset[int], char: str) -> frozenset[int]:
        """The state set after reading ``char``."""
        nxt: set[int] = set()
        for pos in states:
            if pos < len(self.atoms) and self.atoms[pos].matches(char):
                nxt.add(pos if self.atoms[pos].star else pos + 1)
        return self._closure(nxt)

    def accepts(self, states: frozenset[int]) -> bool:
        """Whether ``states`` contains the final position."""
        return len(self.atoms) in states

    def universal(self, states: frozenset[int]) -> bool:
        """Whether every continuation from ``states`` is accepted (only ``*`` atoms remain)."""
        return any(
            pos < len(self.atoms) and all(a.chars is None and a.star for a in self.atoms[pos:])
            for pos in states
        )

    def alphabet(self) -> set[str]:
        """Every character this pattern names explicitly."""
        out: set[str] = set()
        for atom in self.atoms:
            if atom.chars is not None:
                out |= atom.chars
        return out

    def matches(self, text: str) -> bool:
        """Whether ``text`` is in the pattern's language."""
        if self.regex is not None:
            return self.regex.fullmatch(text) is not None
        states = self.start()
        for char in text:
            states = self.step(states, char)
            if not states:
                return False
        return self.accepts(states)

    def _closure(self, states: Iterable[int]) -> frozenset[int]:
        out = set(states)
        todo = list(out)
        while todo:
            pos = todo.pop()
            if pos < len(self.atoms) and self.atoms[pos].star and pos + 1 not in out:
                out.add(pos + 1)
                todo.append(pos + 1)
        return frozenset(out)


@lru_cache(maxsize=4096)
@functools.lru_cache(maxsize=1024)
def _char(char: str) -> _Atom:
    """The atom for one literal character (atoms are immutable: one per character is shared)."""
    return _Atom(frozenset(char), False)


def glob(text: str) -> Pattern:
    """Compile an Elasticsearch wildcard pattern (``*``, ``?``, ``\\`` escapes; ``/re/``)."""
    if len(text) > 1 and text.startswith("/") and text.endswith("/"):
        return Pattern(text, (), re.compile(text[1:-1]))
    atoms: list[_Atom] = []
    escaped = False
    for char in text:
        if escaped:
            atoms.append(_char(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "*":
            if not atoms or atoms[-1] != _Atom(None, True):  # "**" means the same as "*"
                atoms.append(_Atom(None, True))
        elif char == "?":
            atoms.append(_Atom(None, False))
        else:
            atoms.append(_char(char))
    if escaped:
        atoms.append(_char("\\"))
    return Pattern(text, tuple(atoms))


def _versioned(prefix: str) -> Pattern:
    """``prefix`` then ``[0-9]+`` then anything: ES's system-index name shape."""
    atoms = [_Atom(frozenset(c), False) for c in prefix]
    atoms += [_Atom(_DIGITS, False), _Atom(_DIGITS, True), _Atom(None, True)]
    return Pattern(prefix + "[0-9]+*", tuple(atoms))


@dataclass(frozen=True)
class PatternSet:
    """The strings matched by any of ``include`` and by none of ``exclude``."""

    include: tuple[Pattern, ...] = ()
    exclude: tuple[Pattern, ...] = ()

    def __hash__(self) -> int:
        # Computed once: a role listing thousands of names is looked up in the subset cache on
        # every request, and hashing it anew each time cost more than the test itself.
        cached: int | None = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((self.include, self.exclude))
            object.__setattr__(self, "_hash", cached)
        return cached

    @classmethod
    def of(cls, include: Iterable[str], exclude: Iterable[str] = ()) -> PatternSet:
        """Build a set from pattern texts."""
        return cls(
            tuple(glob(p) for p in sorted(set(include))),
            tuple(glob(p) for p in sorted(set(exclude))),
        )

    def contains(self, text: str) -> bool:
        """Whether ``text`` is in the set (literal names by one set lookup)."""
        literals, others = self._split()
        included = text in literals or any(p.matches(text) for p in others)
        return included and not any(p.matches(text) for p in self.exclude)

    def _split(self) -> tuple[frozenset[str], tuple[Pattern, ...]]:
        """The include patterns that are plain names, as a set, and the others; kept."""
        split: tuple[frozenset[str], tuple[Pattern, ...]] | None = self.__dict__.get("_split_")
        if split is None:
            names, others = set(), []
            for pattern in self.include:
                form = _prefix_form(pattern) if pattern.regex is None else None
                if form is not None and not form[1]:
                    names.add(form[0])
                else:
                    others.append(pattern)
            split = (frozenset(names), tuple(others))
            object.__setattr__(self, "_split_", split)
        return split

    def minus(self, other: Iterable[Pattern]) -> PatternSet:
        """This set less the strings matched by ``other``."""
        return PatternSet(self.include, tuple(sorted({*self.exclude, *other}, key=_key)))

    def subset_of(self, *others: PatternSet) -> bool:
        """Whether every string in this set is in the union of ``others``."""
        return is_subset(self, tuple(others))

    def is_empty(self) -> bool:
        """Whether the set holds no string at all."""
        return is_subset(self, ())

    def is_total(self) -> bool:
        """Whether the set holds every string."""
        return is_subset(ANY, (self,))


def _key(pattern: Pattern) -> str:
    return pattern.text


ANY = PatternSet((glob("*"),))
NOTHING = PatternSet()


@lru_cache(maxsize=16384)
def is_subset(left: PatternSet, rights: tuple[PatternSet, ...]) -> bool:
    """Whether ``left`` is contained in the union of ``rights``."""
    literal = _single_literal(left)
    if literal is not None:
        # One concrete name (the common ``_has_privileges`` question): a membership test per
        # right-hand set, whatever the number of names a role lists.
        return not left.contains(literal) or any(right.contains(literal) for right in rights)
    patterns = _patterns(left, rights)
    if any(p.regex is not None for p in patterns):
        return _regex_subset(left, rights)
    if not left.include:
        return True
    if all(_prefix_form(p) is not None for p in patterns):
        return _prefix_subset(left, rights)
    return _nfa_subset(left, rights, patterns)


@lru_cache(maxsize=8192)
def _prefix_form(pattern: Pattern) -> tuple[str, bool] | None:
    """``(text, is_prefix)`` for a literal or a literal followed by one ``*``; else None."""
    atoms = pattern.atoms
    is_prefix = bool(atoms) and atoms[-1].chars is None and atoms[-1].star
    body = atoms[:-1] if is_prefix else atoms
    if any(a.star or a.chars is None or len(a.chars) != 1 for a in body):
        return None
    return "".join(next(iter(a.chars)) for a in body if a.chars is not None), is_prefix


def _prefix_subset(left: PatternSet, rights: tuple[PatternSet, ...]) -> bool:
    """Subset test for literal/prefix patterns by probing every boundary string.

    Membership of any string depends only on its longest prefix ``k`` among the pattern texts
    and on whether it equals ``k``; so probing each ``k`` exactly and "``k`` plus a fresh
    character" decides the question.
    """
    keys = {""}
    for pattern in _patterns(left, rights):
        form = _prefix_form(pattern)
        if form is not None:
            keys.add(form[0])
    for key in keys:
        for exact in (True, False):
            if _probe(left, key, exact) and not any(_probe(r, key, exact) for r in rights):
                return False
    return True


def _probe(pset: PatternSet, key: str, exact: bool) -> bool:
    return _probe_any(pset.include, key, exact) and not _probe_any(pset.exclude, key, exact)


def _probe_any(patterns: tuple[Pattern, ...], key: str, exact: bool) -> bool:
    for pattern in patterns:
        form = _prefix_form(pattern)
        if form is None:
            continue
        text, is_prefix = form
        if (is_prefix and key.startswith(text)) or (exact and key == text):
            return True
    return False


def _nfa_subset(
    left: PatternSet, rights: tuple[PatternSet, ...], patterns: tuple[Pattern, ...]
) -> bool:
    """General subset test: breadth-first search of the product of the patterns' NFAs."""
    alphabet = sorted(set().union(*(p.alphabet() for p in patterns)) | {_OTHER})
    start = tuple(p.start() for p in patterns)
    seen = {start}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        if _in_left(left, state) and not _in_rights(left, rights, state):
            return False
        if not _left_alive(left, state) or _rights_universal(left, rights, state):
            continue
        for char in alphabet:
            nxt = tuple(p.step(s, char) for p, s in zip(patterns, state, strict=True))
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return True


def _patterns(left: PatternSet, rights: tuple[PatternSet, ...]) -> tuple[Pattern, ...]:
    out = list(left.include + left.exclude)
    for right in rights:
        out += right.include + right.exclude
    return tuple(out)


def _accepts(patterns: tuple[Pattern, ...], states: tuple[frozenset[int], ...]) -> bool:
    return any(p.accepts(s) for p, s in zip(patterns, states, strict=True))


def _in_set(pset: PatternSet, state: tuple[frozenset[int], ...], offset: int) -> tuple[bool, int]:
    """Membership of the current string in ``pset`` whose patterns start at ``offset``."""
    n_inc, n_exc = len(pset.include), len(pset.exclude)
    inc = state[offset : offset + n_inc]
    exc = state[offset + n_inc : offset + n_inc + n_exc]
    member = _accepts(pset.include, inc) and not _accepts(pset.exclude, exc)
    return member, offset + n_inc + n_exc


def _in_left(left: PatternSet, state: tuple[frozenset[int], ...]) -> bool:
    return _in_set(left, state, 0)[0]


def _in_rights(
    left: PatternSet, rights: tuple[PatternSet, ...], state: tuple[frozenset[int], ...]
) -> bool:
    offset = len(left.include) + len(left.exclude)
    for right in rights:
        member, offset = _in_set(right, state, offset)
        if member:
            return True
    return False


def _rights_universal(
    left: PatternSet, rights: tuple[PatternSet, ...], state: tuple[frozenset[int], ...]
) -> bool:
    """Whether some right-hand set accepts every continuation of the current prefix."""
    offset = len(left.include) + len(left.exclude)
    for right in rights:
        n_inc, n_exc = len(right.include), len(right.exclude)
        inc = state[offset : offset + n_inc]
        exc = state[offset + n_inc : offset + n_inc + n_exc]
        offset += n_inc + n_exc
        if not any(exc) and any(p.universal(s) for p, s in zip(right.include, inc, strict=True)):
            return True
    return False


def _left_alive(left: PatternSet, state: tuple[frozenset[int], ...]) -> bool:
    return any(state[: len(left.include)])


def _regex_subset(left: PatternSet, rights: tuple[PatternSet, ...]) -> bool:
    """Subset test when regex patterns take part: exact only when ``left`` is one literal."""
    literal = _single_literal(left)
    if literal is None:
        return False
    return any(right.contains(literal) for right in rights) or not left.contains(literal)


def _single_literal(pset: PatternSet) -> str | None:
    if len(pset.include) != 1 or pset.include[0].regex is not None:
        return None
    atoms = pset.include[0].atoms
    if any(a.star or a.chars is None or len(a.chars) != 1 for a in atoms):
        return None
    return "".join(next(iter(a.chars)) for a in atoms if a.chars is not None)


def is_pattern(name: str) -> bool:
    """Whether an index name is a wildcard pattern or a regex (ES ``isSimpleMatchPattern``)."""
    return "*" in name or "?" in name or (len(name) > 1 and name[0] == "/" == name[-1])


# ---------------------------------------------------------------------------------------------
# Named privileges (Elasticsearch 8.17: ClusterPrivilegeResolver, IndexPrivilege).
# ---------------------------------------------------------------------------------------------

_SECURITY = "cluster:admin/xpack/security/"
_API_KEY_PATTERN = _SECURITY + "api_key/*"
_ALL_CLUSTER = ("cluster:*", "indices:admin/template/*", "indices:admin/index_template/*")
_TOKEN_INVALIDATE = _SECURITY + "token/invalidate"
_ILM_STATUS = "cluster:admin/ilm/operation_mode/get"
_SNAPSHOT_STATUS = "cluster:admin/snapshot/status"
_CLUSTER_STATE = "cluster:monitor/state"
_HAS_PRIVILEGES = _SECURITY + "user/has_privileges"
_REMOTE_BASE = (
    "cluster:internal/remote_cluster/handshake",
    "cluster:internal/remote_cluster/nodes",
    "cluster:internal/admin/tasks/ban",
    "cluster:internal/admin/tasks/cancel_child",
    "cluster:monitor/xpack/info",
)
_CONNECTOR_SECRETS_READ = ("cluster:admin/xpack/connector/secret/get",)
_CONNECTOR_SECRETS_WRITE = (
    "cluster:admin/xpack/connector/secret/delete",
    "cluster:admin/xpack/connector/secret/post",
    "cluster:admin/xpack/connector/secret/put",
)
_MONITOR_TRANSFORM = ("cluster:monitor/data_frame/*", "cluster:monitor/transform/*")
_MANAGE_TRANSFORM = (*_MONITOR_TRANSFORM, "cluster:admin/data_frame/*", "cluster:admin/transform/*")
_MONITOR_SNAPSHOT = (
    _SNAPSHOT_STATUS + "*",
    "cluster:admin/snapshot/get",
    _SNAPSHOT_STATUS,
    "cluster:admin/repository/get",
)

#: name -> (action patterns, excluded patterns); declaration order of ClusterPrivilegeResolver.
_CLUSTER_DATA: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "none": ((), ()),
    "all": (_ALL_CLUSTER, ()),
    "monitor": (
        (
            "cluster:monitor/*",
            "indices:admin/template/get",
            "cluster:admin/component_template/get",
            "indices:admin/index_template/get",
        ),
        (),
    ),
    "monitor_connector": (
        (
            "cluster:admin/xpack/connector/get",
            "cluster:admin/xpack/connector/list",
            "cluster:admin/xpack/connector/sync_job/get",
            "cluster:admin/xpack/connector/sync_job/list",
        ),
        (),
    ),
    "monitor_inference": (
        (
            "cluster:monitor/xpack/inference*",
            "cluster:monitor/xpack/ml/trained_models/deployment/infer",
        ),
        (),
    ),
    "monitor_ml": (("cluster:monitor/xpack/ml/*",), ()),
    "monitor_text_structure": (("cluster:monitor/text_structure/*",), ()),
    "monitor_data_frame_transforms": (_MONITOR_TRANSFORM, ()),
    "monitor_transform": (_MONITOR_TRANSFORM, ()),
    "monitor_watcher": (("cluster:monitor/xpack/watcher/*",), ()),
    "monitor_rollup": (("cluster:monitor/xpack/rollup/*",), ()),
    "monitor_enrich": (("cluster:monitor/xpack/enrich/*", "cluster:admin/xpack/enrich/get"), ()),
    "monitor_stats": (("cluster:monitor/stats*",), ()),
    "manage": (_ALL_CLUSTER, (_SECURITY + "*",)),
    "manage_connector": (
        ("cluster:admin/xpack/connector/*",),
        (*_CONNECTOR_SECRETS_READ, *_CONNECTOR_SECRETS_WRITE),
    ),
    "manage_inference": (
        (
            "cluster:admin/xpack/inference/*",
            "cluster:monitor/xpack/inference*",
            "cluster:admin/xpack/ml/trained_models/deployment/start",
            "cluster:admin/xpack/ml/trained_models/deployment/stop",
            "cluster:monitor/xpack/ml/trained_models/deployment/infer",
        ),
        (),
    ),
    "manage_ml": (("cluster:admin/xpack/ml/*", "cluster:monitor/xpack/ml/*"), ()),
    "manage_data_frame_transforms": (_MANAGE_TRANSFORM, ()),
    "manage_transform": (_MANAGE_TRANSFORM, ()),
    "manage_token": ((_SECURITY + "token/*",), ()),
    "manage_watcher": (("cluster:admin/xpack/watcher/*", "cluster:monitor/xpack/watcher/*"), ()),
    "manage_index_templates": (
        (
            "indices:admin/template/*",
            "indices:admin/index_template/*",
            "cluster:admin/component_template/*",
        ),
        (),
    ),
    "manage_ingest_pipelines": (("cluster:admin/ingest/pipeline/*",), ()),
    "read_pipeline": (
        ("cluster:admin/ingest/pipeline/get", "cluster:admin/ingest/pipeline/simulate"),
        (),
    ),
    "transport_client": (("cluster:monitor/nodes/liveness", _CLUSTER_STATE), ()),
    "manage_security": ((_SECURITY + "*",), (_SECURITY + "delegate_pki",)),
    "read_security": (
        tuple(
            _SECURITY + a
            for a in (
                "api_key/get",
                "api_key/query",
                "privilege/builtin/get",
                "privilege/get",
                "profile/get",
                "profile/has_privileges",
                "profile/suggest",
                "role/get",
                "role/query",
                "role_mapping/get",
                "service_account/get",
                "service_account/credential/get*",
                "user/get",
                "user/query",
                "user/list_privileges",
                "user/has_privileges",
                "settings/get",
            )
        ),
        (),
    ),
    "manage_saml": (
        (
            _SECURITY + "saml/*",
            _TOKEN_INVALIDATE,
            _SECURITY + "token/refresh",
            "cluster:monitor/xpack/security/saml/metadata",
        ),
        (),
    ),
    "manage_oidc": ((_SECURITY + "oidc/*",), ()),
    "manage_api_key": ((_API_KEY_PATTERN,), ()),
    "grant_api_key": ((_SECURITY + "api_key/grant*",), ()),
    "manage_service_account": ((_SECURITY + "service_account/*",), ()),
    "manage_user_profile": ((_SECURITY + "profile/*",), ()),
    "manage_pipeline": (("cluster:admin/ingest/pipeline/*",), ()),
    "manage_rollup": (("cluster:admin/xpack/rollup/*", "cluster:monitor/xpack/rollup/*"), ()),
    "manage_autoscaling": (("cluster:admin/autoscaling/*",), ()),
    "manage_ccr": (("cluster:admin/xpack/ccr/*", _CLUSTER_STATE, _HAS_PRIVILEGES), ()),
    "read_ccr": ((_CLUSTER_STATE, _HAS_PRIVILEGES), ()),
    "create_snapshot": (("cluster:admin/snapshot/create", *_MONITOR_SNAPSHOT), ()),
    "monitor_snapshot": (_MONITOR_SNAPSHOT, ()),
    "manage_ilm": (("cluster:admin/ilm/*",), ()),
    "read_ilm": (("cluster:admin/ilm/get", _ILM_STATUS), ()),
    "manage_slm": (
        ("cluster:admin/slm/*", "cluster:admin/ilm/start", "cluster:admin/ilm/stop", _ILM_STATUS),
        (),
    ),
    "read_slm": (("cluster:admin/slm/status", "cluster:admin/slm/get", _ILM_STATUS), ()),
    "delegate_pki": ((_SECURITY + "delegate_pki", _TOKEN_INVALIDATE), ()),
    "manage_own_api_key": ((_API_KEY_PATTERN,), ()),
    "manage_enrich": (("cluster:admin/xpack/enrich/*", "cluster:monitor/xpack/enrich/*"), ()),
    "manage_logstash_pipelines": (("cluster:admin/logstash/pipeline/*",), ()),
    "read_fleet_secrets": (("cluster:admin/fleet/secrets/get",), ()),
    "write_fleet_secrets": (
        ("cluster:admin/fleet/secrets/post", "cluster:admin/fleet/secrets/delete"),
        (),
    ),
    "cancel_task": (("cluster:admin/tasks/cancel*",), ()),
    "manage_search_application": (("cluster:admin/xpack/application/search_application/*",), ()),
    "manage_search_synonyms": (
        (
            "cluster:admin/synonyms/*",
            "cluster:admin/synonyms_sets/*",
            "cluster:admin/synonym_rules/*",
        ),
        (),
    ),
    "manage_behavioral_analytics": (("cluster:admin/xpack/application/analytics/*",), ()),
    "post_behavioral_analytics_event": (
        ("cluster:admin/xpack/application/analytics/post_event",),
        (),
    ),
    "manage_search_query_rules": (("cluster:admin/xpack/query_rules/*",), ()),
    "cross_cluster_search": (
        (
            *_REMOTE_BASE,
            "cluster:monitor/xpack/enrich/esql/resolve_policy",
            "cluster:internal:data/read/esql/open_exchange",
            "cluster:internal:data/read/esql/exchange",
        ),
        (),
    ),
    "cross_cluster_replication": ((*_REMOTE_BASE, _CLUSTER_STATE), ()),
    "read_connector_secrets": (_CONNECTOR_SECRETS_READ, ()),
    "write_connector_secrets": (_CONNECTOR_SECRETS_WRITE, ()),
    "monitor_data_stream_global_retention": ((), ()),
    "manage_data_stream_global_retention": ((), ()),
}

#: The request-conditional privilege (ManageOwnApiKeyClusterPrivilege).
MANAGE_OWN_API_KEY = "manage_own_api_key"
#: Privileges a ``remote_cluster`` entry may name (RemoteClusterPermissions, 8.17).
REMOTE_CLUSTER_PRIVILEGES = ("monitor_enrich", "monitor_stats")


@dataclass(frozen=True)
class ClusterPrivilege:
    """A resolved cluster privilege: a named one or a raw action pattern."""

    name: str
    actions: PatternSet
    conditional: bool = False

    def implies(self, other: ClusterPrivilege) -> bool:
        """ES ``ClusterPermission.implies``: plain automata imply conditional checks they cover."""
        if self.conditional:
            return other.conditional and other.actions.subset_of(self.actions)
        return other.actions.subset_of(self.actions)


def _named_cluster(name: str) -> ClusterPrivilege:
    include, exclude = _CLUSTER_DATA[name]
    return ClusterPrivilege(name, PatternSet.of(include, exclude), name == MANAGE_OWN_API_KEY)


def _sort_cluster(privs: Sequence[ClusterPrivilege]) -> tuple[str, ...]:
    """``sortByAccessLevel``: by how many others each implies, then by name."""
    counts = {p.name: sum(1 for q in privs if q is not p and p.implies(q)) for p in privs}
    return tuple(sorted(counts, key=lambda n: (counts[n], n)))


@lru_cache(maxsize=1)
def cluster_privilege_names() -> tuple[str, ...]:
    """Every named cluster privilege, least to most privileged (ES ``VALUES`` order)."""
    return _sort_cluster([_named_cluster(n) for n in _CLUSTER_DATA])


_CLUSTER_ACTION = PatternSet.of(_ALL_CLUSTER)


def cluster_privilege_error(name: str) -> str | None:
    """The text ES gives for an unknown cluster privilege, or None when ``name`` resolves."""
    lowered = name.lower()
    if _CLUSTER_ACTION.contains(lowered) or lowered in _CLUSTER_DATA:
        return None
    return (
        f"unknown cluster privilege [{lowered}]. a privilege must be either one of the predefined "
        f"cluster privilege names [{','.join(cluster_privilege_names())}] or a pattern over one "
        "of the available cluster actions"
    )


def resolve_cluster_privilege(name: str) -> ClusterPrivilege:
    """Resolve a cluster privilege name or action (a name ending ``*`` is added to actions).

    Raises:
        EsError: 400 ``illegal_argument_exception`` with ES's text when unknown.
    """
    lowered = name.lower()
    if _CLUSTER_ACTION.contains(lowered):
        return ClusterPrivilege(lowered, PatternSet.of([lowered + "*"]))
    if lowered in _CLUSTER_DATA:
        return _named_cluster(lowered)
    raise bad_request(cluster_privilege_error(name) or name)


def validate_cluster_privilege(name: str) -> None:
    """Raise the 400 ``action_request_validation_exception`` that create API key / put role give.

    Raises:
        EsError: when ``name`` is neither a named cluster privilege nor a cluster action.
    """
    message = cluster_privilege_error(name)
    if message is not None:
        raise validation_failed(message)


def cluster_privileges_granting(action: str, *, own_key_request: bool = False) -> list[str]:
    """Privileges that would allow ``action``, least privileged first (for 403 texts).

    Args:
        action: the cluster action that was denied.
        own_key_request: whether ``manage_own_api_key`` would accept the request (it is
            request-conditional; e.g. invalidating by username alone is not acceptable).
    """
    out = []
    for name in cluster_privilege_names():
        priv = _named_cluster(name)
        if priv.conditional and not own_key_request:
            continue
        if priv.actions.contains(action):
            out.append(name)
    return out


_ALL_INDEX = ("indices:*", "internal:transport/proxy/indices:*")
_RESOLVE_INDEX = "indices:admin/resolve/index"
_RESOLVE_CLUSTER = "indices:admin/resolve/cluster"
_SEARCH_SHARDS = ("indices:admin/shards/search_shards", "indices:admin/search/search_shards")
_FIELD_CAPS = "indices:data/read/field_caps*"
_ROLLUP_CAPS = "indices:data/read/xpack/rollup/get/index/caps*"
_BULK = ("indices:data/write/bulk*", "indices:data/write/simulate/bulk*")
_AUTO_PUT_MAPPING = "indices:admin/mapping/auto_put"
_AUTO_CREATE = "indices:admin/auto_create"
_CCR_RESTORE = "indices:internal/admin/ccr/restore/"

#: name -> action patterns; declaration order of IndexPrivilege (8.17).
_INDEX_DATA: dict[str, tuple[str, ...]] = {
    "none": (),
    "all": _ALL_INDEX,
    "manage": ("indices:monitor/*", "indices:admin/*", _FIELD_CAPS, _ROLLUP_CAPS),
    "create_index": ("indices:admin/create", _AUTO_CREATE, "indices:admin/data_stream/create"),
    "monitor": ("indices:monitor/*",),
    "read": ("indices:data/read/*", _RESOLVE_INDEX, _RESOLVE_CLUSTER),
    "index": ("indices:data/write/index*", "indices:data/write/update*", *_BULK),
    "delete": ("indices:data/write/delete*", "indices:data/write/bulk*"),
    "write": ("indices:data/write/*", _AUTO_PUT_MAPPING),
    "create": ("indices:data/write/index*", *_BULK),
    "create_doc": (
        "indices:data/write/index",
        "indices:data/write/index[*",
        "indices:data/write/index:op_type/create",
        *_BULK,
    ),
    "delete_index": ("indices:admin/delete", "indices:admin/data_stream/delete"),
    "view_index_metadata": (
        "indices:admin/aliases/get",
        "indices:admin/get",
        "indices:admin/mappings/fields/get*",
        "indices:admin/mappings/get",
        *_SEARCH_SHARDS,
        "indices:admin/validate/query*",
        "indices:monitor/settings/get",
        "indices:admin/ilm/explain",
        "indices:admin/data_stream/lifecycle/get",
        "indices:admin/data_stream/lifecycle/explain",
        "indices:admin/data_stream/get",
        _RESOLVE_INDEX,
        _RESOLVE_CLUSTER,
        _FIELD_CAPS,
        _ROLLUP_CAPS,
        "indices:monitor/transform/checkpoint*",
        "indices:monitor/get/metering/stats",
        "indices:admin/get/metering/stats",
    ),
    "read_cross_cluster": (
        "internal:transport/proxy/indices:data/read/*",
        *_SEARCH_SHARDS,
        _RESOLVE_CLUSTER,
        "indices:data/read/esql",
        "indices:data/read/esql/compute",
    ),
    "manage_follow_index": (
        "indices:admin/xpack/ccr/put_follow",
        "indices:admin/xpack/ccr/unfollow",
        "indices:admin/close*",
        "indices:admin/data_stream/promote",
        "indices:admin/rollover",
    ),
    "manage_leader_index": ("indices:admin/xpack/ccr/forget_follower*",),
    "manage_ilm": ("indices:admin/ilm/*",),
    "manage_data_stream_lifecycle": ("indices:admin/data_stream/lifecycle/*",),
    "maintenance": (
        "indices:admin/refresh*",
        "indices:admin/flush*",
        "indices:admin/synced_flush",
        "indices:admin/forcemerge*",
    ),
    "auto_configure": (_AUTO_PUT_MAPPING, _AUTO_CREATE),
    "cross_cluster_replication": (
        "indices:data/read/xpack/ccr/shard_changes*",
        "indices:monitor/stats*",
        "indices:admin/seq_no/add_retention_lease*",
        "indices:admin/seq_no/remove_retention_lease*",
        "indices:admin/seq_no/renew_retention_lease*",
    ),
    "cross_cluster_replication_internal": (
        _CCR_RESTORE + "session/clear*",
        _CCR_RESTORE + "file_chunk/get*",
        _CCR_RESTORE + "session/put*",
        "internal:transport/proxy/" + _CCR_RESTORE + "session/clear*",
        "internal:transport/proxy/" + _CCR_RESTORE + "file_chunk/get*",
    ),
}

_INDEX_ACTION = PatternSet.of(_ALL_INDEX)


@lru_cache(maxsize=1)
def index_privilege_names() -> tuple[str, ...]:
    """Every named index privilege, least to most privileged (``Privilege.sortByAccessLevel``)."""
    sets = {name: PatternSet.of(pats) for name, pats in _INDEX_DATA.items()}
    counts = {
        name: sum(1 for other, s2 in sets.items() if other != name and s.subset_of(s2))
        for name, s in sets.items()
    }
    return tuple(sorted(sets, key=lambda n: (-counts[n], n)))


def index_privilege_error(name: str) -> str | None:
    """The text ES gives for an unknown index privilege, or None when ``name`` resolves."""
    lowered = name.lower()
    if _INDEX_ACTION.contains(lowered) or lowered in _INDEX_DATA:
        return None
    known = ",".join(f"{n}=[{n}]" for n in index_privilege_names())
    return (
        f"unknown index privilege [{lowered}]. a privilege must be either one of the predefined "
        f"fixed indices privileges [{known}] or a pattern over one of the available index actions"
    )


def index_privilege_actions(names: Iterable[str]) -> PatternSet:
    """The union of the actions of index privileges (names or action patterns).

    Raises:
        EsError: 400 ``illegal_argument_exception`` for the first unknown privilege.
    """
    patterns: list[str] = []
    for name in names:
        lowered = name.lower()
        if _INDEX_ACTION.contains(lowered):
            patterns.append(lowered + "*")
        elif lowered in _INDEX_DATA:
            patterns.extend(_INDEX_DATA[lowered])
        else:
            raise bad_request(index_privilege_error(name) or name)
    return PatternSet.of(patterns)


def index_privileges_granting(action: str) -> list[str]:
    """Index privileges whose actions include ``action``, least privileged first (403 texts)."""
    return [n for n in index_privilege_names() if PatternSet.of(_INDEX_DATA[n]).contains(action)]


def validate_index_privilege(name: str) -> None:
    """Raise the 400 ``action_request_validation_exception`` that create API key / put role give.

    Raises:
        EsError: when ``name`` is neither a named index privilege nor an index action.
    """
    message = index_privilege_error(name)
    if message is not None:
        raise validation_failed(message)


# ---------------------------------------------------------------------------------------------
# Restricted indices: ES treats every system index (and alias) as restricted; the sandbox knows
# the security ones (SystemIndexDescriptor patterns ``.security-[0-9]+*`` etc. plus aliases).
# ---------------------------------------------------------------------------------------------

RESTRICTED_INDICES: tuple[Pattern, ...] = (
    glob(".security"),
    _versioned(".security-"),
    glob(".security-tokens"),
    _versioned(".security-tokens-"),
    glob(".security-profile"),
    _versioned(".security-profile-"),
)


def is_restricted_index(name: str) -> bool:
    """Whether a concrete index name is a restricted (security system) index."""
    return any(p.matches(name) for p in RESTRICTED_INDICES)


def index_names(patterns: Iterable[str], *, allow_restricted: bool) -> PatternSet:
    """The index names a role's ``names`` cover (restricted ones only when allowed)."""
    names = PatternSet.of(patterns)
    return names if allow_restricted else names.minus(RESTRICTED_INDICES)


# ---------------------------------------------------------------------------------------------
# Application privileges (ApplicationPrivilege, ApplicationPermission).
# ---------------------------------------------------------------------------------------------

_APP_PREFIX = re.compile(r"^[a-z][A-Za-z0-9]*$")
_APP_WHITESPACE = re.compile(
    r"[\s\x0b\x85\xa0\u1680\u180e\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
)
_APP_PRIVILEGE_NAME = re.compile(r"^[a-z][a-zA-Z0-9_.-]*$")
_APP_NAME_OR_ACTION = re.compile(r"^[\x21-\x7e]*$")
_INVALID_FILENAME_CHARS = ("\\", "/", "*", "?", '"', "<", ">", "|", " ", ",")


@dataclass(frozen=True)
class AppPrivilegeDef:
    """A registered application privilege (``PUT /_security/privilege``)."""

    application: str
    name: str
    actions: list[str] = field(hash=False)
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def to_json(self) -> dict[str, Any]:
        """The privilege as ``GET /_security/privilege`` shows it."""
        return {
            "application": self.application,
            "name": self.name,
            "actions": list(self.actions),
            "metadata": dict(self.metadata),
        }


AppPrivileges = Mapping[str, Mapping[str, AppPrivilegeDef]]


def application_name_error(application: str | None, *, allow_wildcard: bool) -> str | None:
    """ES's ``validateApplicationName`` text for a bad application name, or None."""
    if not application:
        return "Application names cannot be blank"
    asterisk = application.find("*")
    if asterisk != -1:
        if not allow_wildcard:
            return f"Application names may not contain '*' (found '{application}')"
        if application == "*":
            return None
        if asterisk != len(application) - 1:
            return (
                f"Application name patterns only support trailing wildcards (found '{application}')"
            )
    if _APP_WHITESPACE.search(application):
        return f"Application names may not contain whitespace (found '{application}')"
    return _application_parts_error(application, asterisk, allow_wildcard)


def _application_parts_error(application: str, asterisk: int, allow_wildcard: bool) -> str | None:
    parts = re.split(r"[_-]", application, maxsplit=1)
    prefix = parts[0].removesuffix("*")
    if not _APP_PREFIX.match(prefix):
        return (
            f"An application name prefix must match the pattern {_APP_PREFIX.pattern} "
            f"(found '{prefix}')"
        )
    if len(prefix) < 3 and asterisk == -1:
        return f"An application name prefix must be at least 3 characters long (found '{prefix}')"
    if len(parts) > 1:
        suffix = parts[1].removesuffix("*") if allow_wildcard else parts[1]
        if any(c in suffix for c in _INVALID_FILENAME_CHARS):
            chars = "".join(_INVALID_FILENAME_CHARS)
            return (
                f"An application name suffix may not contain any of the characters '{chars}' "
                f"(found '{suffix}')"
            )
    return None


def application_privilege_error(name: str) -> str | None:
    """ES's ``validatePrivilegeOrActionName`` text, or None when ``name`` is acceptable."""
    if _APP_NAME_OR_ACTION.match(name):
        return None
    return (
        "Application privilege names and actions must match the pattern ^\\p{Graph}*$ "
        f"(found '{name}')"
    )


@dataclass(frozen=True)
class _AppPrivilege:
    """A resolved application privilege: names asked for and the action patterns they mean."""

    application: str
    names: frozenset[str]
    patterns: frozenset[str]

    @property
    def actions(self) -> PatternSet:
        return PatternSet.of(self.patterns)


def resolve_app_privilege(
    application: str, names: Iterable[str], registered: AppPrivileges
) -> list[_AppPrivilege]:
    """``ApplicationPrivilege.get``: names resolve through ``registered``, others are actions."""
    wanted = frozenset(names)
    if not wanted:
        return [_AppPrivilege(application, frozenset({"none"}), frozenset())]
    if "*" not in application:
        return [_resolve_one_app(application, wanted, registered.get(application, {}))]
    apps = sorted(a for a in registered if glob(application).matches(a))
    if not apps:
        return [_resolve_one_app(application, wanted, {})]
    return [_resolve_one_app(a, wanted, registered.get(a, {})) for a in apps]


def _resolve_one_app(
    application: str, names: frozenset[str], lookup: Mapping[str, AppPrivilegeDef]
) -> _AppPrivilege:
    patterns: set[str] = set()
    for name in names:
        if _APP_PRIVILEGE_NAME.match(name):
            definition = lookup.get(name)
            if definition is not None:
                patterns.update(definition.actions)
        else:
            patterns.add(name)
    return _AppPrivilege(application, names, frozenset(patterns))


@dataclass(frozen=True)
class _AppEntry:
    """One ``ApplicationPermission`` entry: a privilege and the resources it applies to."""

    privilege: _AppPrivilege
    resources: PatternSet

    def grants(self, other: _AppPrivilege, resource: str) -> bool:
        """ES ``PermissionEntry.grants``: the privilege matches and the resource is covered."""
        return self._matches(other) and PatternSet.of([resource]).subset_of(self.resources)

    def _matches(self, other: _AppPrivilege) -> bool:
        if self.privilege == other:
            return True
        if not glob(self.privilege.application).matches(other.application):
            return False
        mine = self.privilege.actions
        if mine.is_total():
            return True
        return (
            not mine.is_empty() and not other.actions.is_empty() and other.actions.subset_of(mine)
        )


# ---------------------------------------------------------------------------------------------
# Permissions: what a set of role descriptors allows (Role / LimitedRole in ES).
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _IndexGroup:
    """One ``indices`` entry: the names it covers and the actions its privileges grant."""

    names: PatternSet
    actions: PatternSet


class Permission:
    """The union of what some role descriptors allow (``Role`` in ES)."""

    def __init__(
        self,
        cluster: Sequence[ClusterPrivilege],
        indices: Sequence[_IndexGroup],
        applications: Sequence[_AppEntry],
        run_as: PatternSet,
        registered: AppPrivileges,
    ) -> None:
        self._cluster = tuple(c.actions for c in cluster if not c.conditional)
        self._manage_own = any(c.conditional for c in cluster)
        self._indices = tuple(indices)
        self._applications = tuple(applications)
        self._run_as = run_as
        self._registered = registered

    @classmethod
    def from_descriptors(
        cls,
        descriptors: Sequence[RoleDescriptor],
        app_privileges: AppPrivileges | Iterable[AppPrivilegeDef] = (),
    ) -> Permission:
        """Build the permission of ``descriptors``, resolving app privileges by name.

        Args:
            descriptors: the role descriptors whose privileges are pooled.
            app_privileges: registered application privileges, as ``{app: {name: def}}`` or as
                a flat iterable of definitions.

        Raises:
            EsError: 400 when a descriptor names an unknown cluster or index privilege.
        """
        app_privileges = _registry(app_privileges)
        cluster = [resolve_cluster_privilege(c) for d in descriptors for c in d.cluster]
        indices = [
            _IndexGroup(
                index_names(ip.names, allow_restricted=ip.allow_restricted_indices),
                index_privilege_actions(ip.privileges),
            )
            for d in descriptors
            for ip in d.indices
        ]
        run_as = PatternSet.of(u for d in descriptors for u in d.run_as)
        apps = _app_entries(descriptors, app_privileges)
        return cls(cluster, indices, apps, run_as, app_privileges)

    def allows_cluster_action(self, action: str) -> bool:
        """Whether a plain (non request-conditional) cluster privilege allows ``action``."""
        return any(s.contains(action) for s in self._cluster)

    def holds_manage_own_api_key(self) -> bool:
        """Whether the holder may act on its own API keys (``manage_own_api_key`` or wider).

        ``manage_own_api_key`` never covers grant; handlers check ownership per request.
        """
        return self._manage_own or _API_KEY_SET.subset_of(*self._cluster)

    def has_cluster_privilege(self, name_or_action: str) -> bool:
        """``_has_privileges`` for one cluster privilege name or action pattern.

        Raises:
            EsError: 400 ``illegal_argument_exception`` for an unknown privilege.
        """
        wanted = resolve_cluster_privilege(name_or_action)
        if wanted.conditional and self._manage_own:
            return True
        return bool(self._cluster) and wanted.actions.subset_of(*self._cluster)

    def allows_index_action(self, action: str, index: str) -> bool:
        """Whether ``action`` is allowed on the concrete index (or alias) ``index``."""
        return any(g.names.contains(index) and g.actions.contains(action) for g in self._indices)

    def allows_index_action_anywhere(self, action: str) -> bool:
        """Whether some ``indices`` entry grants ``action`` (``IndicesPermission.check(action)``).

        Elasticsearch authorizes composite requests (``_bulk``, single-document index and
        delete) by this test first, before looking at the indices of their items.
        """
        return any(g.actions.contains(action) for g in self._indices)

    def has_index_privilege(
        self, index: str, privilege: str, allow_restricted: bool = False
    ) -> bool:
        """``_has_privileges`` for one index name or pattern and one privilege.

        As ES does, a single ``indices`` entry must cover the whole requested name pattern; the
        privileges of all covering entries are then pooled.

        Raises:
            EsError: 400 ``illegal_argument_exception`` for an unknown index privilege.
        """
        wanted = PatternSet((glob(index),))
        if not allow_restricted and not (not is_pattern(index) and is_restricted_index(index)):
            wanted = wanted.minus(RESTRICTED_INDICES)
        if wanted.is_empty():
            return True
        actions = index_privilege_actions([privilege])
        covering = [g.actions for g in self._indices if wanted.subset_of(g.names)]
        return bool(covering) and actions.subset_of(*covering)

    def has_application_privilege(self, application: str, privilege: str, resource: str) -> bool:
        """``_has_privileges`` for one application privilege (name or action) on one resource."""
        wanted = resolve_app_privilege(application, [privilege], self._registered)
        return all(any(e.grants(w, resource) for e in self._applications) for w in wanted)

    def can_run_as(self, username: str) -> bool:
        """Whether the holder may impersonate ``username``."""
        return self._run_as.contains(username)


_API_KEY_SET = PatternSet.of([_API_KEY_PATTERN])


def _registry(app_privileges: AppPrivileges | Iterable[AppPrivilegeDef]) -> AppPrivileges:
    """``{application: {name: definition}}`` from either accepted shape."""
    if isinstance(app_privileges, Mapping):
        return app_privileges
    out: dict[str, dict[str, AppPrivilegeDef]] = {}
    for definition in app_privileges:
        out.setdefault(definition.application, {})[definition.name] = definition
    return out


def _app_entries(
    descriptors: Sequence[RoleDescriptor], registered: AppPrivileges
) -> list[_AppEntry]:
    """Resolve every application entry, merging resources of identical privileges."""
    resources: dict[_AppPrivilege, set[str]] = {}
    for descriptor in descriptors:
        for entry in descriptor.applications:
            for priv in resolve_app_privilege(entry.application, entry.privileges, registered):
                resources.setdefault(priv, set()).update(entry.resources)
    return [_AppEntry(p, PatternSet.of(r)) for p, r in resources.items()]


class LimitedPermission:
    """An API key's permission: its own descriptors intersected with its owner's snapshot.

    With no assigned descriptors (``None`` or empty) only ``limited_by`` counts.
    """

    def __init__(self, assigned: Permission | None, limited_by: Permission) -> None:
        self._parts = (limited_by,) if assigned is None else (assigned, limited_by)

    def allows_cluster_action(self, action: str) -> bool:
        """Whether both sides allow ``action`` without a request condition."""
        return all(p.allows_cluster_action(action) for p in self._parts)

    def holds_manage_own_api_key(self) -> bool:
        """Whether both sides at least allow acting on the caller's own API keys."""
        return all(p.holds_manage_own_api_key() for p in self._parts)

    def has_cluster_privilege(self, name_or_action: str) -> bool:
        """``_has_privileges`` for a cluster privilege: both sides must grant it."""
        return all(p.has_cluster_privilege(name_or_action) for p in self._parts)

    def allows_index_action(self, action: str, index: str) -> bool:
        """Whether both sides allow ``action`` on ``index``."""
        return all(p.allows_index_action(action, index) for p in self._parts)

    def allows_index_action_anywhere(self, action: str) -> bool:
        """Whether both sides grant ``action`` on some index."""
        return all(p.allows_index_action_anywhere(action) for p in self._parts)

    def has_index_privilege(
        self, index: str, privilege: str, allow_restricted: bool = False
    ) -> bool:
        """``_has_privileges`` for an index privilege: both sides must grant it."""
        return all(p.has_index_privilege(index, privilege, allow_restricted) for p in self._parts)

    def has_application_privilege(self, application: str, privilege: str, resource: str) -> bool:
        """``_has_privileges`` for an application privilege: both sides must grant it."""
        return all(
            p.has_application_privilege(application, privilege, resource) for p in self._parts
        )

    def can_run_as(self, username: str) -> bool:
        """Whether both sides allow impersonating ``username``."""
        return all(p.can_run_as(username) for p in self._parts)


AnyPermission = Permission | LimitedPermission


# ---------------------------------------------------------------------------------------------
# _has_privileges (RestHasPrivilegesAction, RBACEngine.checkPrivileges, HasPrivilegesResponse).
# ---------------------------------------------------------------------------------------------


def has_privileges_response(
    permission: AnyPermission, username: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    """The whole ``_has_privileges`` answer for ``body``, validated as ES validates it.

    Raises:
        EsError: 400 ``parse_exception`` / ``x_content_parse_exception`` for a malformed body,
            ``action_request_validation_exception`` for bad application names or nothing asked,
            ``illegal_argument_exception`` for unknown cluster or index privileges.
    """
    from rotator.sandbox.roles import (
        parse_privileges_check,
    )  # import cycle: roles imports privileges

    check = parse_privileges_check(username, body)
    messages = [
        m
        for a in check.applications
        if (m := application_name_error(a.application, allow_wildcard=False)) is not None
    ]
    if not (check.cluster or check.indices or check.applications):
        messages.append("must specify at least one privilege")
    if messages:
        raise validation_failed(*messages)
    cluster = {name: permission.has_cluster_privilege(name) for name in check.cluster}
    index = _index_results(permission, check.indices)
    application = _application_results(permission, check.applications)
    answers = [*cluster.values(), *_leaves(index), *_leaves(application)]
    return {
        "username": username,
        "has_all_requested": all(answers),
        "cluster": cluster,
        "index": index,
        "application": application,
    }


def _index_results(permission: AnyPermission, entries: Iterable[Any]) -> dict[str, Any]:
    merged: dict[str, dict[str, bool]] = {}
    for entry in entries:
        for name in entry.names:
            slot = merged.setdefault(name, {})
            for privilege in entry.privileges:
                ok = permission.has_index_privilege(name, privilege, entry.allow_restricted_indices)
                slot[privilege] = slot.get(privilege, True) and ok
    return dict(sorted(merged.items()))


def _application_results(permission: AnyPermission, entries: Iterable[Any]) -> dict[str, Any]:
    out: dict[str, dict[str, dict[str, bool]]] = {}
    for entry in entries:
        per_app = out.setdefault(entry.application, {})
        for resource in entry.resources:
            slot = per_app.setdefault(resource, {})
            for privilege in entry.privileges:
                ok = permission.has_application_privilege(entry.application, privilege, resource)
                slot[privilege] = slot.get(privilege, True) and ok
    return {app: dict(sorted(res.items())) for app, res in out.items()}


def _leaves(tree: Mapping[str, Any]) -> list[bool]:
    out: list[bool] = []
    for value in tree.values():
        out.extend(_leaves(value) if isinstance(value, Mapping) else [bool(value)])
    return out


__all__ = [
    "ANY",
    "MANAGE_OWN_API_KEY",
    "NOTHING",
    "REMOTE_CLUSTER_PRIVILEGES",
    "RESTRICTED_INDICES",
    "AnyPermission",
    "AppPrivilegeDef",
    "AppPrivileges",
    "ClusterPrivilege",
    "LimitedPermission",
    "Pattern",
    "PatternSet",
    "Permission",
    "application_name_error",
    "application_privilege_error",
    "cluster_privilege_error",
    "cluster_privilege_names",
    "cluster_privileges_granting",
    "glob",
    "has_privileges_response",
    "index_names",
    "index_privilege_actions",
    "index_privilege_error",
    "index_privilege_names",
    "index_privileges_granting",
    "is_pattern",
    "is_restricted_index",
    "is_subset",
    "resolve_app_privilege",
    "resolve_cluster_privilege",
    "validate_cluster_privilege",
    "validate_index_privilege",
]
