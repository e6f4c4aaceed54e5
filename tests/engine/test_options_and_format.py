"""Ollama options to load/sampling settings, and `format` to grammars (no model needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamacli.engine.llama import format_grammar
from ollamacli.engine.options import load_config, physical_cores, sampling_config
from ollamacli.engine.structured import check_json_schema
from ollamacli.errors import InvalidRequestError
from ollamacli.parameters import OptionValue, defaults


def test_ollama_defaults_map_to_sampling_settings():
    sampling = sampling_config(defaults())
    assert (sampling.temperature, sampling.top_k, sampling.top_p) == (0.8, 40, 0.9)
    assert (sampling.repeat_penalty, sampling.repeat_last_n, sampling.seed) == (1.0, 64, -1)
    assert (sampling.num_predict, sampling.num_keep, sampling.stop) == (-1, 4, ())


def test_every_sampling_option_is_carried_over():
    options: dict[str, OptionValue] = {
        "temperature": 0.1,
        "top_k": 7,
        "top_p": 0.5,
        "min_p": 0.05,
        "typical_p": 0.9,
        "repeat_penalty": 1.3,
        "repeat_last_n": -1,
        "presence_penalty": 0.2,
        "frequency_penalty": 0.3,
        "seed": 42,
        "mirostat": 2,
        "mirostat_tau": 4.0,
        "mirostat_eta": 0.2,
        "num_predict": 12,
        "num_keep": 8,
        "stop": ["a", "b", "a"],
    }
    sampling = sampling_config(options, extra_stop=("c",), grammar="root ::= x", truncate=False)
    for name, value in options.items():
        if name != "stop":
            assert getattr(sampling, name) == value, name
    assert sampling.stop == ("a", "b", "c")
    assert sampling.grammar == "root ::= x"
    assert sampling.truncate is False


def test_load_config_caps_the_context_and_defaults_threads_to_physical_cores(tmp_path: Path):
    config = load_config(tmp_path / "m.gguf", {"num_ctx": 9000}, trained_context=8192)
    assert config.num_ctx == 8192
    assert config.num_thread == physical_cores() >= 1
    assert load_config(tmp_path / "m.gguf", {"num_ctx": 1, "num_thread": 3}).num_ctx == 4
    assert load_config(tmp_path / "m.gguf", {"num_thread": 3}).num_thread == 3


def test_format_json_is_a_json_grammar():
    grammar = format_grammar("json")
    assert grammar is not None
    assert "root" in grammar
    assert "object" in grammar
    assert format_grammar(None) is None
    assert format_grammar("") is None


def test_format_schema_builds_a_grammar_with_its_properties():
    schema = {
        "type": "object",
        "title": "City",
        "properties": {"name": {"type": "string", "maxLength": 20}, "rank": {"type": "integer"}},
        "required": ["name", "rank"],
    }
    grammar = format_grammar(schema)
    assert grammar is not None
    assert '\\"name\\"' in grammar
    assert '\\"rank\\"' in grammar


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [
        ({"type": "integer", "minimum": 3}, "minimum"),
        (
            {"type": "object", "properties": {"a": {"type": "number", "multipleOf": 2}}},
            "multipleOf",
        ),
        ({"type": "array", "items": {"not": {"type": "string"}}}, "not"),
        ({"anyOf": [{"type": "string"}, {"type": "array", "uniqueItems": True}]}, "uniqueItems"),
        ({"$defs": {"x": {"if": {}}}, "$ref": "#/$defs/x"}, "if"),
    ],
    ids=["minimum", "nested-property", "items", "anyOf", "defs"],
)
def test_schema_keywords_the_grammar_cannot_enforce_are_refused_by_name(schema, keyword):
    with pytest.raises(InvalidRequestError, match=f'keyword "{keyword}" is not supported'):
        format_grammar(schema)


def test_annotations_and_extensions_are_accepted():
    check_json_schema(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "description": "x",
            "x-origin": "pydantic",
            "type": "object",
            "properties": {"a": {"type": "string", "default": "b", "examples": ["c"]}},
            "additionalProperties": False,
        }
    )


def test_an_unknown_format_string_is_refused():
    with pytest.raises(InvalidRequestError, match='invalid format "yaml"'):
        format_grammar("yaml")
