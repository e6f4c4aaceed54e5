"""Schemas whose keywords the grammar builder would silently drop are refused by name."""

from __future__ import annotations

import pytest

from ollamacli.engine.llama import format_grammar
from ollamacli.engine.structured import check_json_schema
from ollamacli.errors import InvalidRequestError

STRING = {"type": "string"}


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "string", "format": "email"}, "keyword \"format\" with value 'email'"),
        ({"type": "string", "pattern": "^a+$", "maxLength": 3}, '"maxLength" next to "pattern"'),
        ({"type": "string", "format": "date", "minLength": 3}, '"minLength" next to "format"'),
        (
            {"type": "object", "properties": {"a": STRING}, "anyOf": [STRING]},
            '"properties" next to "anyOf"',
        ),
        ({"enum": ["a", "bb"], "maxLength": 1, "type": "string"}, '"maxLength" next to "enum"'),
        ({"$ref": "#/$defs/x", "$defs": {"x": STRING}, "items": STRING}, '"items" next to "$ref"'),
        ({"type": ["string", "null"], "maxLength": 3}, '"maxLength" next to a list of types'),
        ({"type": "array", "minItems": 2}, '"minItems" without a single "items" schema'),
        ({"type": "array", "prefixItems": [STRING], "maxItems": 1}, '"maxItems" without a single'),
        (
            {"type": "array", "prefixItems": [STRING], "items": STRING},
            '"items" next to "prefixItems"',
        ),
        ({"maxLength": 3}, '"maxLength" without "type": "string"'),
        (
            {"allOf": [STRING, {"type": "string", "maxLength": 2}]},
            '"allOf" over anything but object properties',
        ),
        (
            {"type": "object", "properties": {"a": STRING}, "required": ["a", "b"]},
            'required property "b" is not in "properties"',
        ),
    ],
    ids=[
        "unknown-format",
        "pattern-and-length",
        "format-and-length",
        "anyOf-and-properties",
        "enum-and-length",
        "ref-and-items",
        "type-list-and-length",
        "limits-without-items",
        "limits-on-a-tuple",
        "items-and-prefixItems",
        "length-without-string",
        "allOf-of-strings",
        "required-not-described",
    ],
)
def test_combinations_the_builder_would_drop_are_refused(schema, message):
    with pytest.raises(InvalidRequestError) as refused:
        check_json_schema(schema)
    assert message in refused.value.message


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "format": "date-time"},
        {"type": "string", "format": "uuid"},
        {"anyOf": [STRING, {"type": "null"}], "default": None, "title": "Maybe"},
        {"type": ["string", "null"]},
        {
            "type": "object",
            "allOf": [
                {"properties": {"a": STRING}, "required": ["a"]},
                {"$ref": "#/$defs/b"},
            ],
            "$defs": {"b": {"properties": {"b": STRING}}},
        },
        {"type": "array", "items": STRING, "minItems": 1, "maxItems": 3},
        {"type": "array", "prefixItems": [STRING, {"type": "integer"}]},
        {"type": "string", "enum": ["a", "b"]},
        {"type": "object", "additionalProperties": {"type": "integer"}},
    ],
    ids=[
        "date-time",
        "uuid",
        "optional",
        "nullable-list",
        "allOf-objects",
        "bounded-array",
        "tuple",
        "typed-enum",
        "map",
    ],
)
def test_what_the_builder_honours_builds_a_grammar(schema):
    grammar = format_grammar(schema)
    assert grammar is not None
    assert "root" in grammar


def test_a_pydantic_style_schema_is_accepted():
    schema = {
        "$defs": {"Kind": {"enum": ["cat", "dog"], "title": "Kind", "type": "string"}},
        "properties": {
            "name": {"maxLength": 20, "title": "Name", "type": "string"},
            "kind": {"$ref": "#/$defs/Kind"},
            "tags": {"items": {"type": "string"}, "maxItems": 3, "title": "Tags", "type": "array"},
            "nick": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        },
        "required": ["name", "kind", "tags"],
        "title": "Pet",
        "type": "object",
    }
    assert format_grammar(schema) is not None
