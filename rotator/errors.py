"""The RotatorError tree: every error says whether retrying the same action may succeed."""

from __future__ import annotations


class RotatorError(Exception):
    """Base of every error rotator raises on purpose.

    Messages never carry secrets; adapters translate library errors into these at the boundary.
    """

    retryable: bool = False
    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(RotatorError):
    """The configuration is invalid; carries every problem as ``path: message`` lines."""

    exit_code = 2

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n" + "\n".join(self.problems))


class UsageError(RotatorError):
    """A command was called with arguments it cannot act on."""

    exit_code = 2


class NotImplementedYet(UsageError):
    """A command whose feature has not been built; says so instead of faking output."""


class DependencyUnavailable(RotatorError):
    """Something rotator depends on (Elasticsearch, the store, a sink) did not answer."""

    retryable = True
    exit_code = 3


class AuthorityUnavailable(DependencyUnavailable):
    """Elasticsearch could not be reached or answered 5xx/429."""


class StoreUnavailable(DependencyUnavailable):
    """The database could not be reached or is locked."""


class SchemaBehind(RotatorError):
    """The store's schema is older than this version of rotator expects."""

    exit_code = 2


class AuthorityRejected(RotatorError):
    """Elasticsearch refused a request (4xx other than 429): retrying as-is will not help."""


class NotElasticsearch(AuthorityRejected):
    """The configured host answered, but not as Elasticsearch: ``elasticsearch.hosts`` is wrong."""

    exit_code = 2


class AuthenticationFailed(AuthorityRejected):
    """Elasticsearch did not accept rotator's credentials (401): a configuration problem."""

    exit_code = 2


class PermissionDenied(AuthorityRejected):
    """Rotator's identity lacks a privilege the action needs (403): its role needs fixing."""

    exit_code = 2


class VerificationFailed(RotatorError):
    """A new key did not hold exactly the privileges its source needs."""


class DeliveryFailed(RotatorError):
    """A sink could not take a new credential; a later attempt may succeed."""

    retryable = True


class LeaseLost(RotatorError):
    """Another replica holds the leader lease."""

    retryable = True


class SchemaUnknown(RotatorError):
    """The store's schema is at a revision this version of rotator does not know (a newer one)."""

    exit_code = 2
