"""How configuration problems read: `path: message` lines that never echo a whole value."""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ValidationError,
)
from pydantic_core import ErrorDetails

# Keys that would hold a secret inline; each has a *_env / *_file replacement.
INLINE_SECRET_KEYS = frozenset(
    {"password", "api_key", "bearer_token", "token", "secret", "hmac_secret", "encoded"}
)
# The longest part of an input value a message repeats.
EXCERPT_CHARS = 40


# --- error formatting ----------------------------------------------------------------------------


def format_errors(exc: ValidationError, prefix: str, model: type[BaseModel]) -> list[str]:
    return [_format_error(error, prefix, model) for error in exc.errors(include_url=False)]


def _format_error(error: ErrorDetails, prefix: str, model: type[BaseModel]) -> str:
    loc = _clean_loc(error["loc"])
    path = _join_path(prefix, loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        return unknown_key_problem(
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


def unknown_key_problem(key: str, at: str, model: type[BaseModel] | None) -> str:
    where = f"{at}.{key}" if at else key
    if key in INLINE_SECRET_KEYS:
        return (
            f"{where}: secrets may not be written in the config; "
            f"use {key}_env (an environment variable) or {key}_file (a file) instead"
        )
    allowed = sorted(model.model_fields) if model is not None else []
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
        return _MESSAGES[kind].format(kind=kind_of(value), tags="exec, file, webhook")
    return str(error["msg"])


def kind_of(value: object) -> str:
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
        return kind_of(value)
    return excerpt(value)


def redacted_url(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"//[^@/]*@", "//***@", url)
