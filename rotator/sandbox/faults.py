"""Fault injection: rules that make matching requests fail, slow down, drop or get cut short."""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from rotator.sandbox.errors import EsError

_EFFECTS = ("status", "latency_ms", "drop", "truncate")
_ERROR_TYPES = {
    429: ("es_rejected_execution_exception", "rejected execution of coordinating operation"),
    500: ("exception", "injected internal error"),
    502: ("exception", "injected bad gateway"),
    503: ("cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered];"),
    504: ("exception", "injected gateway timeout"),
}


@dataclass
class FaultRule:
    """One rule: which requests it matches, how often, and what it does to them."""

    method: str = "*"
    path: str = "*"
    times: int | None = None
    probability: float | None = None
    seed: int | None = None
    status: int | None = None
    retry_after: int = 1
    latency_ms: int = 0
    drop: bool = False
    truncate: bool = False
    _random: random.Random = field(default_factory=random.Random, repr=False)

    def matches(self, method: str, path: str) -> bool:
        """Whether the rule applies to this request (before counting and chance)."""
        method_ok = self.method == "*" or self.method.upper() == method
        return method_ok and fnmatch.fnmatchcase(path, self.path)

    def fires(self) -> bool:
        """Decide, consuming one use or one random draw, whether the rule acts now."""
        if self.times is not None:
            if self.times <= 0:
                return False
            self.times -= 1
            return True
        if self.probability is not None:
            return self._random.random() < self.probability
        return True

    def error(self) -> EsError | None:
        """The error to answer with, if the rule sets a status."""
        if self.status is None:
            return None
        error_type, reason = _ERROR_TYPES.get(self.status, ("exception", "injected fault"))
        headers = {"Retry-After": str(self.retry_after)} if self.status == 429 else None
        return EsError(self.status, error_type, reason, response_headers=headers)

    def to_json(self) -> dict[str, Any]:
        """The rule as shown by ``GET /_sandbox/faults``."""
        out: dict[str, Any] = {"method": self.method, "path": self.path}
        for name in ("times", "probability", "seed", "status", "latency_ms"):
            value = getattr(self, name)
            if value is not None and value != 0:
                out[name] = value
        if self.status == 429:
            out["retry_after"] = self.retry_after
        for name in ("drop", "truncate"):
            if getattr(self, name):
                out[name] = True
        return out


@dataclass(frozen=True)
class FaultDecision:
    """What the server must do with one request."""

    latency_ms: int = 0
    error: EsError | None = None
    drop: bool = False
    truncate: bool = False


def parse_rules(body: Any) -> list[FaultRule]:
    """Validate a rules document (a list, or ``{"rules": [...]}``).

    Raises:
        EsError: 400 naming the bad rule and field.
    """
    items = body.get("rules") if isinstance(body, dict) else body
    if not isinstance(items, list) or not items:
        raise EsError(400, "illegal_argument_exception", "expected a non-empty list of fault rules")
    return [_parse_rule(index, item) for index, item in enumerate(items)]


def _parse_rule(index: int, item: Any) -> FaultRule:
    where = f"rules[{index}]"
    if not isinstance(item, dict):
        raise EsError(400, "illegal_argument_exception", f"{where}: expected an object")
    known = {"method", "path", "times", "probability", "seed", "status", "retry_after", *_EFFECTS}
    unknown = sorted(set(item) - known)
    if unknown:
        raise EsError(400, "illegal_argument_exception", f"{where}: unknown field [{unknown[0]}]")
    if not any(item.get(name) for name in _EFFECTS):
        raise EsError(
            400,
            "illegal_argument_exception",
            f"{where}: needs an effect: one of status, latency_ms, drop, truncate",
        )
    if "times" in item and "probability" in item:
        raise EsError(
            400, "illegal_argument_exception", f"{where}: use times or probability, not both"
        )
    rule = FaultRule(
        method=_text(item, "method", where, "*"),
        path=_text(item, "path", where, "*"),
        times=_int(item, "times", where, 0, None),
        probability=_probability(item, where),
        seed=_int(item, "seed", where, None, None),
        status=_int(item, "status", where, 400, 599),
        retry_after=_int(item, "retry_after", where, 0, 3600) or 1,
        latency_ms=_int(item, "latency_ms", where, 0, 600_000) or 0,
        drop=bool(item.get("drop", False)),
        truncate=bool(item.get("truncate", False)),
    )
    rule._random = random.Random(rule.seed)  # noqa: S311 - a seeded, repeatable fault schedule
    return rule


def _text(item: dict[str, Any], name: str, where: str, default: str) -> str:
    value = item.get(name, default)
    if not isinstance(value, str) or not value:
        raise EsError(400, "illegal_argument_exception", f"{where}.{name}: expected a string")
    return value


def _int(item: dict[str, Any], name: str, where: str, low: int | None, high: int | None) -> Any:
    if name not in item:
        return None
    value = item[name]
    bad = not isinstance(value, int) or isinstance(value, bool)
    if bad or (low is not None and value < low) or (high is not None and value > high):
        bounds = f" between {low} and {high}" if high is not None else ""
        raise EsError(
            400, "illegal_argument_exception", f"{where}.{name}: expected a whole number{bounds}"
        )
    return value


def _probability(item: dict[str, Any], where: str) -> float | None:
    if "probability" not in item:
        return None
    value = item["probability"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise EsError(
            400, "illegal_argument_exception", f"{where}.probability: expected a number from 0 to 1"
        )
    return float(value)


class FaultInjector:
    """The active rules; thread-safe, consulted once per request."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(self, rules: list[FaultRule]) -> None:
        """Append rules; earlier rules are consulted first."""
        with self._lock:
            self._rules.extend(rules)

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        """The active rules as JSON."""
        with self._lock:
            return [rule.to_json() for rule in self._rules]

    def decide(self, method: str, path: str) -> FaultDecision:
        """Apply the first rule that matches and fires; used-up rules are dropped."""
        if path.startswith("/_sandbox/"):
            return FaultDecision()
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path) and rule.fires():
                    self._rules = [r for r in self._rules if r.times is None or r.times > 0]
                    return FaultDecision(rule.latency_ms, rule.error(), rule.drop, rule.truncate)
        return FaultDecision()
