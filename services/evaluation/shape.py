"""The shapes of what `copilot eval` reads (golden sets, probe suites, review exports, reports) are pydantic
types; this turns their validation errors into the messages the evaluation has always given, one per
field: ``expected_sources must be a list of paths or {"doc": path, "grade": n}, not a string``,
``variants.base.overall is missing; it must be an object``, or a validator's own sentence.

What a field "must be" comes from the type's JSON schema: its JSON type ("a list of strings"), or a
``must_be`` entry where the type alone would not tell a user what to write."""

from __future__ import annotations

from collections.abc import Hashable
from functools import cache
from typing import Any, TypeVar, cast

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

T = TypeVar("T")

# JSON schema type -> (one, several), for messages.
_KINDS = {
    "object": ("an object", "objects"),
    "array": ("a list", "lists"),
    "string": ("a string", "strings"),
    "number": ("a number", "numbers"),
    "integer": ("a whole number", "whole numbers"),
    "boolean": ("true or false", "true or false values"),
}
_MISSING = ("missing", "missing_argument")
_UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")
# A file wrong throughout would otherwise fill the screen; the first few say what is the matter.
_SHOWN = 5


def json_kind(value: Any) -> str:
    """What a JSON value is, for messages: "an object", "a list", "a string", "a number"..."""
    if value is None:
        return "null"
    names = {bool: "a boolean", dict: "an object", list: "a list", str: "a string", int: "a number"}
    return names.get(type(value), "a number" if isinstance(value, float) else type(value).__name__)


def validated(kind: type[T], raw: Any) -> T:
    """``raw`` (decoded JSON) as ``kind``; else a ValueError naming each field that is not what it must be."""
    adapter: TypeAdapter[T] = _adapter(cast(Hashable, kind))
    try:
        return adapter.validate_python(raw)
    except ValidationError as exc:
        problems = _problems(exc.errors(), adapter.json_schema())
        if len(problems) > _SHOWN:
            problems[_SHOWN:] = [f"and {len(problems) - _SHOWN} more"]
        raise ValueError("; ".join(problems)) from exc


@cache
def _adapter(kind: Any) -> TypeAdapter[Any]:
    # Building one compiles a validator: once per type, not once per line of a large golden set.
    return TypeAdapter(kind)


def _path(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _problems(errors: list[ErrorDetails], schema: dict[str, Any]) -> list[str]:
    """One message per error, but one for all the unknown fields of an object, with the known ones."""
    unknown: dict[tuple[int | str, ...], list[str]] = {}
    for error in errors:
        if error["type"] in _UNKNOWN:
            unknown.setdefault(error["loc"][:-1], []).append(str(error["loc"][-1]))
    return [
        *(
            f"{_path(parent) + ': ' if parent else ''}unknown field(s) {', '.join(names)}; "
            f"known: {', '.join(sorted(_node(schema, parent).get('properties', {})))}"
            for parent, names in unknown.items()
        ),
        *(_problem(e, schema) for e in errors if e["type"] not in _UNKNOWN),
    ]


def _problem(error: ErrorDetails, schema: dict[str, Any]) -> str:
    loc, kind = error["loc"], error["type"]
    where = _path(loc)
    if kind == "value_error":
        # The validators write whole sentences that name what they are about.
        return str(error.get("ctx", {}).get("error", error["msg"]))
    must_be = _must_be(_node(schema, loc), schema)
    if kind in _MISSING and must_be:
        return f"{where} is missing; it must be {must_be}"
    if kind.endswith("_type") and must_be:
        return f"{where} must be {must_be}, not {json_kind(error['input'])}"
    return f"{where}: {error['msg']}"


def _deref(node: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" not in node:
        return node
    target = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def _options(node: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """A nullable field's schema is anyOf [its type, null]; a message names the type."""
    return [_deref(o, schema) for o in node.get("anyOf", [node]) if o.get("type") != "null"]


def _node(schema: dict[str, Any], loc: tuple[int | str, ...]) -> dict[str, Any]:
    """The schema of the field at ``loc``; empty where the schema does not say."""
    node = _deref(schema, schema)
    for part in loc:
        found: dict[str, Any] = {}
        for option in _options(node, schema):
            if isinstance(part, int):
                found = option.get("items", {})
            elif part in option.get("properties", {}):
                found = option["properties"][part]
            elif isinstance(option.get("additionalProperties"), dict):
                found = option["additionalProperties"]
            if found:
                break
        node = _deref(found, schema)
    return node


def _must_be(node: dict[str, Any], schema: dict[str, Any]) -> str:
    """What the field at ``node`` must be, for messages; empty where the schema does not say."""
    if "must_be" in node:
        return str(node["must_be"])
    kinds = []
    for option in _options(node, schema):
        one, _ = _KINDS.get(option.get("type", ""), ("", ""))
        items = _options(_deref(option.get("items", {}), schema), schema)
        several = _KINDS.get(items[0].get("type", ""), ("", ""))[1] if len(items) == 1 else ""
        if "must_be" in option:
            one = str(option["must_be"])
        elif option.get("type") == "array" and several:
            one = f"a list of {several}"
        kinds.append(one)
    return " or ".join(k for k in kinds if k)
