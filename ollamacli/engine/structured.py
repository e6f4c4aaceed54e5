"""Structured output requests: which `format` values and JSON-schema keywords we can enforce.

The grammar itself is built by llama-cpp-python's JSON-schema converter (in engine/llama.py).
That converter silently ignores keywords it does not understand, which would let the model
produce output that breaks the schema; so a schema is checked here first, and a keyword
the converter cannot enforce is refused with its name.
"""

from __future__ import annotations

from collections.abc import Mapping

from ollamacli.errors import InvalidRequestError

ENFORCED_KEYWORDS = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "enum",
        "const",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
        "$defs",
        "definitions",
        "pattern",
        "format",
        "minLength",
        "maxLength",
    }
)
"""Keywords the grammar builder turns into constraints."""

ANNOTATION_KEYWORDS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$schema",
        "$id",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "nullable",
    }
)
"""Keywords that describe a value without constraining it (safe to ignore)."""

_SCHEMA_MAPS = ("properties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def check_json_schema(schema: Mapping[str, object], *, where: str = "format") -> None:
    """Raise `InvalidRequestError` naming the first keyword the grammar cannot enforce."""
    for key, value in schema.items():
        if key not in ENFORCED_KEYWORDS and key not in ANNOTATION_KEYWORDS:
            if not key.startswith("x-"):
                raise InvalidRequestError(
                    f'{where}: JSON schema keyword "{key}" is not supported',
                    hint="supported: " + ", ".join(sorted(ENFORCED_KEYWORDS)),
                )
            continue
        _check_children(key, value, where)


def _check_children(key: str, value: object, where: str) -> None:
    if key in _SCHEMA_MAPS and isinstance(value, Mapping):
        for name, child in value.items():
            _check_schema_value(child, f"{where}.{key}.{name}")
    elif key in _SCHEMA_LISTS and isinstance(value, list):
        for index, child in enumerate(value):
            _check_schema_value(child, f"{where}.{key}[{index}]")
    elif key in ("items", "additionalProperties"):
        if isinstance(value, list):
            for index, child in enumerate(value):
                _check_schema_value(child, f"{where}.{key}[{index}]")
        elif not isinstance(value, bool):
            _check_schema_value(value, f"{where}.{key}")


def _check_schema_value(value: object, where: str) -> None:
    if isinstance(value, bool):
        return
    if not isinstance(value, Mapping):
        raise InvalidRequestError(f"{where}: a JSON schema must be an object")
    check_json_schema(value, where=where)
