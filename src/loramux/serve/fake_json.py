"""Structured output for the fake engine: the smallest instance of a JSON schema.

The fake engine answers `response_format` for real, with a value that validates: the required
properties only, the first `enum` / `const` / `anyOf` / `oneOf` choice, the least items, length
and number the bounds allow, local `$ref`s followed. A schema it cannot satisfy by that rule
(`pattern`, an unknown `format`, `allOf` of several, `not`) or that is not a schema at all is
refused with an `InvalidRequestError` on `response_format`, never answered with invalid JSON.
"""

from __future__ import annotations

import json
from typing import Any

from loramux.errors import InvalidRequestError

_TYPES = {"object", "array", "string", "integer", "number", "boolean", "null"}
_FORMATS = {
    "date-time": "1970-01-01T00:00:00Z",
    "date": "1970-01-01",
    "time": "00:00:00Z",
    "email": "a@example.com",
    "uri": "https://example.com",
    "uuid": "00000000-0000-0000-0000-000000000000",
}
_UNSUPPORTED = ("pattern", "not", "patternProperties", "dependentRequired", "if")


def minimal_text(json_schema: str | None) -> str:
    """The smallest valid instance of `json_schema` as JSON text (`{}` for any object).

    Raises:
        InvalidRequestError: the schema is not JSON, not a schema, or one the fake engine
            cannot satisfy (param `response_format`).
    """
    if json_schema is None:
        return "{}"
    try:
        schema = json.loads(json_schema)
    except ValueError as exc:
        raise _refuse(f"the JSON schema is not JSON ({exc})") from exc
    return json.dumps(_instance(schema, schema, depth=0))


def _refuse(why: str) -> InvalidRequestError:
    return InvalidRequestError(f"response_format: {why}", param="response_format")


def _instance(schema: Any, root: dict[str, Any], depth: int) -> Any:  # noqa: C901 - one rule per keyword
    if depth > 32:
        raise _refuse("the JSON schema nests or refers to itself too deeply")
    if schema is True or schema == {}:
        return None
    if not isinstance(schema, dict):
        raise _refuse(f"a JSON schema must be an object, not {json.dumps(schema)[:40]}")
    if "$ref" in schema:
        return _instance(_resolve(schema["$ref"], root), root, depth + 1)
    for key in _UNSUPPORTED:
        if key in schema:
            raise _refuse(f"the fake engine cannot satisfy `{key}`; use engine hf or vllm")
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        if not isinstance(schema["enum"], list) or not schema["enum"]:
            raise _refuse("`enum` must be a non-empty array")
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            if not isinstance(schema[key], list) or not schema[key]:
                raise _refuse(f"`{key}` must be a non-empty array")
            return _instance(schema[key][0], root, depth + 1)
    if "allOf" in schema:
        parts = schema["allOf"]
        if not isinstance(parts, list) or len(parts) != 1:
            raise _refuse("the fake engine satisfies `allOf` of one schema only")
        return _instance(parts[0], root, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else None)
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null") if kind else None
    if kind is None:
        return None
    if kind not in _TYPES:
        raise _refuse(f"unknown JSON schema type {json.dumps(kind)[:40]}")
    if kind == "object":
        props = schema.get("properties", {})
        required = schema.get("required", [])
        if not isinstance(props, dict) or not isinstance(required, list):
            raise _refuse("`properties` must be an object and `required` an array")
        missing = [name for name in required if name not in props]
        if missing and schema.get("additionalProperties") is False:
            raise _refuse(f"`required` names {missing[0]!r}, which `properties` does not have")
        return {
            name: _instance(props.get(name, {}), root, depth + 1) for name in map(str, required)
        }
    if kind == "array":
        count = int(schema.get("minItems", 0))
        prefix = schema.get("prefixItems", [])
        return [
            _instance(prefix[i] if i < len(prefix) else schema.get("items", {}), root, depth + 1)
            for i in range(max(count, len(prefix)))
        ]
    if kind == "string":
        if "format" in schema:
            if schema["format"] not in _FORMATS:
                raise _refuse(f"the fake engine cannot satisfy format {schema['format']!r}")
            return _FORMATS[schema["format"]]
        return "a" * int(schema.get("minLength", 0))
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    return False if kind == "boolean" else None


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    low = schema.get("minimum")
    if low is None and "exclusiveMinimum" in schema:
        low = schema["exclusiveMinimum"] + 1
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    value = low if low is not None else (min(0, high - 1) if high is not None else 0)
    if integer:
        return int(-(-value // 1))  # the least integer >= the bound
    return value


def _resolve(ref: Any, root: dict[str, Any]) -> Any:
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise _refuse(f"the fake engine follows local $refs only, not {str(ref)[:40]!r}")
    node: Any = root
    for part in [p for p in ref[1:].split("/") if p]:
        if not isinstance(node, dict) or part not in node:
            raise _refuse(f"$ref {ref!r} points nowhere in the schema")
        node = node[part]
    return node
