"""Structured output requests: which `format` values and JSON-schema keywords we can enforce.

The grammar itself is built by llama-cpp-python's JSON-schema converter (in engine/llama.py).
That converter silently ignores keywords it does not understand, which would let the model
produce output that breaks the schema; so a schema is checked here first, and a keyword
the converter cannot enforce is refused with its name. The converter also picks one branch
per schema (`anyOf` before `properties`, `pattern` before `maxLength`, `format` before
length limits), dropping the other keywords of such combinations without a word, and knows
only a few string formats: those cases are refused too.
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

STRING_FORMATS = frozenset(
    {"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"}
)
"""`format` values the converter turns into a grammar (others it would ignore)."""

_SCHEMA_MAPS = ("properties", "$defs", "definitions")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
# Keywords the converter handles before the listed ones, ignoring those when both appear.
_SHADOWING: tuple[tuple[str, frozenset[str]], ...] = (
    ("$ref", ENFORCED_KEYWORDS - {"$ref", "$defs", "definitions"}),
    ("anyOf", ENFORCED_KEYWORDS - {"anyOf", "$defs", "definitions", "type"}),
    ("oneOf", ENFORCED_KEYWORDS - {"oneOf", "$defs", "definitions", "type"}),
    ("const", ENFORCED_KEYWORDS - {"const", "type"}),
    ("enum", ENFORCED_KEYWORDS - {"enum", "type"}),
    ("pattern", frozenset({"minLength", "maxLength", "format"})),
    ("format", frozenset({"minLength", "maxLength"})),
)


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
    _check_combinations(schema, where)


def _unsupported(where: str, detail: str) -> InvalidRequestError:
    return InvalidRequestError(f"{where}: JSON schema {detail} is not supported")


def _check_combinations(schema: Mapping[str, object], where: str) -> None:
    """Refuse what the converter would silently drop (see the module docstring)."""
    fmt = schema.get("format")
    if fmt is not None and fmt not in STRING_FORMATS:
        raise _unsupported(where, f'keyword "format" with value {fmt!r}')
    for first, shadowed in _SHADOWING:
        if first in schema:
            dropped = sorted(k for k in shadowed if k in schema)
            if dropped:
                raise _unsupported(where, f'keyword "{dropped[0]}" next to "{first}"')
    if "allOf" in schema:
        parts = schema["allOf"]
        if (
            schema.get("type", "object") != "object"
            or not isinstance(parts, list)
            or any(
                not isinstance(p, Mapping) or not ({"properties", "$ref", "anyOf"} & set(p))
                for p in parts
            )
        ):
            raise _unsupported(where, 'keyword "allOf" over anything but object properties')
    _check_required(schema, where)
    _check_shapes(schema, where)


def _check_shapes(schema: Mapping[str, object], where: str) -> None:
    """Union types, tuples and length limits the converter reads only in one shape."""
    kind = schema.get("type")
    if isinstance(kind, list):
        extra = sorted(
            k for k in ENFORCED_KEYWORDS - {"type", "$defs", "definitions"} if k in schema
        )
        if extra:
            raise _unsupported(where, f'keyword "{extra[0]}" next to a list of types')
    limits = sorted(k for k in ("minItems", "maxItems") if k in schema)
    is_tuple = "prefixItems" in schema or isinstance(schema.get("items"), list)
    if limits and (is_tuple or "items" not in schema):
        raise _unsupported(where, f'keyword "{limits[0]}" without a single "items" schema')
    if "prefixItems" in schema and "items" in schema:
        raise _unsupported(where, 'keyword "items" next to "prefixItems"')
    lengths = sorted(k for k in ("minLength", "maxLength") if k in schema)
    if lengths and kind != "string":
        raise _unsupported(where, f'keyword "{lengths[0]}" without "type": "string"')


def _check_required(schema: Mapping[str, object], where: str) -> None:
    """A required property the schema does not describe could never be produced."""
    required, properties = schema.get("required"), schema.get("properties")
    if not isinstance(required, list) or "allOf" in schema:
        return
    known = properties if isinstance(properties, Mapping) else {}
    for name in required:
        if name not in known:
            raise InvalidRequestError(
                f'{where}: required property "{name}" is not in "properties"',
                hint="describe every required property, or it can never be generated",
            )


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
