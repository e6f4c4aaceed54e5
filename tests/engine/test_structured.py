"""Schemas whose keywords the grammar builder would silently drop are refused by name."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping

import pytest

from ollamacli.engine.llama import format_grammar
from ollamacli.engine.structured import (
    MAX_GRAMMAR_BYTES,
    MAX_GRAMMAR_DEPTH,
    MAX_REPEAT,
    MAX_SCHEMA_DEPTH,
    TraceShape,
    check_grammar,
    check_json_schema,
    gbnf_literal,
    grammar_depth,
    prefixed_rules,
    text_without,
    trace_then,
)
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


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "string", "maxLength": 20000}, '"maxLength" is 20000, more than the limit'),
        ({"type": "string", "minLength": 1001}, '"minLength" is 1001, more than the limit'),
        (
            {"type": "array", "items": STRING, "maxItems": 50000},
            '"maxItems" is 50000, more than the limit',
        ),
        ({"type": "array", "items": STRING, "minItems": 10**6}, '"minItems" is 1000000'),
        ({"type": "string", "pattern": "^a{0,20000}$"}, '"pattern" repetition {0,20000} is'),
        ({"type": "string", "pattern": "^a{5000}$"}, '"pattern" repetition {5000} is 5000'),
        ({"type": "string", "pattern": "a" * 1001}, '"pattern" length is 1001'),
        ({"type": "string", "maxLength": -1}, '"maxLength" must be a non-negative integer'),
        ({"type": "string", "maxLength": "9"}, '"maxLength" must be a non-negative integer'),
        (
            {"type": "object", "properties": {"deep": {"type": "string", "maxLength": 10**5}}},
            'format.properties.deep: JSON schema keyword "maxLength" is 100000',
        ),
    ],
)
def test_repetitions_beyond_the_limit_are_refused_before_llama_cpp(schema, message):
    """maxLength 20,000 built a grammar whose parsing overflowed llama.cpp's stack (SIGSEGV)."""
    with pytest.raises(InvalidRequestError, match="JSON schema") as caught:
        check_json_schema(schema)
    assert message in str(caught.value)


def test_schemas_nested_beyond_the_limit_are_refused():
    schema: Mapping[str, object] = STRING
    for _ in range(MAX_SCHEMA_DEPTH + 2):
        schema = {"type": "array", "items": schema}
    with pytest.raises(InvalidRequestError, match="nests deeper than the limit of 64 levels"):
        check_json_schema(schema)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "maxLength": MAX_REPEAT},
        {"type": "array", "items": {"type": "string", "maxLength": 1000}, "maxItems": 1000},
        {"type": "string", "pattern": "^a{0,1000}$"},
    ],
)
def test_schemas_at_the_limit_build_a_grammar_within_the_grammar_limits(schema):
    grammar = format_grammar(schema)
    assert grammar is not None
    assert len(grammar.encode()) <= MAX_GRAMMAR_BYTES
    assert grammar_depth(grammar) <= MAX_GRAMMAR_DEPTH


def test_grammar_depth_ignores_literals_classes_and_comments():
    grammar = 'root ::= "(" ( [()] ("a\\"(" b)? ) # (((\nb ::= ((c))\nc ::= "x"'
    assert grammar_depth(grammar) == 2


def test_any_grammar_too_deep_or_too_large_is_refused():
    deep = "root ::= " + '("a" ' * 5000 + ")?" * 5000
    with pytest.raises(InvalidRequestError, match="nests 5000 groups deep, more than the limit"):
        check_grammar(deep)
    large = "root ::= " + '"a" ' * (MAX_GRAMMAR_BYTES // 4)
    with pytest.raises(InvalidRequestError, match="bytes, more than the limit"):
        check_grammar(large)


def _accepts(rules: str, prefix: str, text: str) -> bool:
    """Follow `text_without`'s rules (one state per rule) over `text`."""
    table: dict[int, list[tuple[str, bool, int]]] = {}
    for line in rules.splitlines():
        name, _, body = line.partition(" ::= ")
        choices = body.removeprefix("( ").removesuffix(" )?").split(" | ")
        moves = []
        for choice in choices:
            token, target = choice.rsplit(" ", 1)
            negated = token.startswith("[^")
            chars = re.findall(r"\\U([0-9A-F]{8})", token)
            text_chars = "".join(chr(int(c, 16)) for c in chars) or token.strip('"')
            moves.append((text_chars, negated, int(target.removeprefix(f"{prefix}-"))))
        table[int(name.removeprefix(f"{prefix}-"))] = moves
    state = 0
    for char in text:
        nexts = [target for chars, negated, target in table[state] if (char in chars) != negated]
        if len(nexts) != 1:
            return False
        state = nexts[0]
    return True


@pytest.mark.parametrize("tag", ["</think>", "<|end|>", "aab", "]]^-\\"])
def test_text_without_accepts_exactly_the_texts_without_the_tag(tag):
    rules = text_without(tag, "t")
    alphabet = [*sorted(set(tag)), "x", "\n"]
    texts = ["", tag, tag[:-1], "x" + tag + "x", tag[0] + tag, tag[:-1] + tag[-1] * 2]
    texts += ["".join(random.Random(seed).choices(alphabet, k=12)) for seed in range(400)]
    for text in texts:
        assert _accepts(rules, "t", text) == (tag not in text), text


def test_trace_then_renames_the_answer_root_and_keeps_the_limits():
    answer = 'root ::= "{" item "}"\nitem ::= "x" | root\ntrace-text-0 ::= "y"'
    grammar = trace_then(answer, TraceShape("<think>", "</think>"))
    first, *rest = grammar.splitlines()
    # "trace" is taken by a rule of the answer: the new rules get a fresh prefix
    assert first == 'root ::= ( "<think>" trace2-text-0 "</think>" )? trace2-answer'
    assert 'trace2-answer ::= "{" item "}"' in rest
    assert 'item ::= "x" | trace2-answer' in rest  # a reference to the old root follows it
    assert "root ::=" not in "\n".join(rest)


@pytest.mark.parametrize(
    ("depth", "fits"), [(MAX_GRAMMAR_DEPTH, True), (MAX_GRAMMAR_DEPTH + 1, False)]
)
def test_the_grammar_limits_apply_to_a_trace_and_its_answer(depth, fits):
    """The trace's rules nest one group deep, apart from the answer's rules."""
    answer = "root ::= " + "(" * depth + '"a"' + ")" * depth
    shape = TraceShape("", "</think>", required=True)
    if fits:
        assert grammar_depth(trace_then(answer, shape)) == depth
        return
    with pytest.raises(InvalidRequestError, match="nests"):
        trace_then(answer, shape)
    big = 'root ::= "' + "a" * (MAX_GRAMMAR_BYTES - 100) + '"'
    with pytest.raises(InvalidRequestError, match="bytes"):  # the trace's rules count too
        trace_then(big, shape)


def test_gbnf_literal_escapes_code_points():
    assert gbnf_literal('a "b"\n😀') == '"a \\U00000022b\\U00000022\\U0000000A\\U0001F600"'


def test_prefixed_rules_rename_definitions_and_references_only():
    grammar = 'root ::= "root" item [root]\nitem ::= ([a-z] | root)* # root\nitem-kv ::= item'
    assert prefixed_rules(grammar, "p") == (
        'p-root ::= "root" p-item [root]\np-item ::= ([a-z] | p-root)* # root\np-item-kv ::= p-item'
    )
