"""The verification set catches a key broader than its source asked for, next to every pattern."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

import pytest

from rotator.scoping import Grants, VerificationSet, verification_set


def answer_for(
    checks: VerificationSet, patterns: Sequence[str], privileges: Sequence[str]
) -> dict[str, Any]:
    """What ``_has_privileges`` answers for a key holding ``privileges`` on ``patterns``."""
    body = checks.request_body()
    index: dict[str, dict[str, bool]] = {}
    for entry in body["index"]:
        for name in entry["names"]:
            covered = any(fnmatch.fnmatchcase(name, p) for p in patterns)
            index[name] = {p: covered and p in privileges for p in entry["privileges"]}
    return {"cluster": dict.fromkeys(body["cluster"], False), "index": index}


EXACT = Grants.build([], [(["logs-web-default"], ["create_doc", "auto_configure"])])
PRIVS = ["create_doc", "auto_configure"]


def test_the_exact_grant_passes() -> None:
    checks = verification_set("web", EXACT)
    assert checks.mismatches(answer_for(checks, ["logs-web-default"], PRIVS)) == []


@pytest.mark.parametrize(
    "broader",
    [
        "logs-*",
        "logs-web-*",
        "*-web-default",
        "logs-*-default",
        "logs-web-default*",
        "*logs-web-default",
        "logs-web-defaul*",
        "logs-we*",
        "logs-web-default?",
    ],
)
def test_a_key_broader_than_a_concrete_name_fails(broader: str) -> None:
    checks = verification_set("web", EXACT)
    wrong = checks.mismatches(answer_for(checks, [broader], PRIVS))
    assert any(w.startswith("create_doc on ") and w.endswith(" is granted") for w in wrong), broader


@pytest.mark.parametrize("broader", ["logs-*", "logs-web*", "*-web-*", "logs-web-*-x*"])
def test_a_key_broader_than_a_granted_pattern_fails(broader: str) -> None:
    grants = Grants.build([], [(["logs-web-*"], ["create_doc"])])
    checks = verification_set("web", grants)
    answer = answer_for(checks, ["logs-web-*", broader], ["create_doc"])
    if broader == "logs-web-*-x*":  # narrower than the grant: adds nothing
        assert checks.mismatches(answer) == []
    else:
        assert any("is granted" in w for w in checks.mismatches(answer)), broader


def test_probes_never_fall_inside_what_is_granted() -> None:
    grants = Grants.build(
        [],
        [(["logs-web-default", "metrics-web-*"], ["create_doc"]), (["traces-x"], ["create_doc"])],
    )
    checks = verification_set("web", grants)
    granted = grants.index_patterns
    for check in checks.index_false:
        if check.privilege == "create_doc":
            assert not any(fnmatch.fnmatchcase(check.index, p) for p in granted), check.index
    assert checks.mismatches(answer_for(checks, granted, ["create_doc"])) == []
