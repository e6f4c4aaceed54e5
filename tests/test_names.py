"""Model names parse, validate and display as Ollama's do."""

from __future__ import annotations

import pytest

from ollamacli.errors import InvalidModelNameError
from ollamacli.names import ModelName


@pytest.mark.parametrize(
    ("text", "parts", "short"),
    [
        ("llama3.2", ("registry.ollama.ai", "library", "llama3.2", "latest"), "llama3.2:latest"),
        ("smollm2:135m", ("registry.ollama.ai", "library", "smollm2", "135m"), "smollm2:135m"),
        ("me/mario", ("registry.ollama.ai", "me", "mario", "latest"), "me/mario:latest"),
        (
            "127.0.0.1:5000/library/tiny:v1",
            ("127.0.0.1:5000", "library", "tiny", "v1"),
            "127.0.0.1:5000/library/tiny:v1",
        ),
        (
            "hf.co/bartowski/SmolLM2-GGUF:Q4_K_M",
            ("hf.co", "bartowski", "SmolLM2-GGUF", "Q4_K_M"),
            "hf.co/bartowski/SmolLM2-GGUF:Q4_K_M",
        ),
        (
            "http://localhost:5000/ns/m:t",
            ("localhost:5000", "ns", "m", "t"),
            "localhost:5000/ns/m:t",
        ),
    ],
    ids=["bare", "tag", "namespace", "host-port", "hf", "scheme"],
)
def test_name_parses_with_ollama_defaults(text, parts, short):
    name = ModelName.parse(text)
    assert name.parts == parts
    assert name.short == short


@pytest.mark.parametrize(
    "text",
    [
        "",
        "../etc/passwd",
        "/abs/path",
        "a/b/c/d",
        "bad name",
        "x:",
        ":tag",
        "ns//m",
        "a/..:b",
        "m:..",
        "name:ta g",
        "m$",
        "-x",
    ],
)
def test_name_invalid_is_refused(text):
    with pytest.raises(InvalidModelNameError, match="invalid model name"):
        ModelName.parse(text)


def test_name_key_is_case_insensitive():
    assert ModelName.parse("Mario:Latest").key == ModelName.parse("mario").key


def test_name_scheme_is_kept():
    assert ModelName.parse("http://h:1/a/b:c").scheme == "http"
    assert ModelName.parse("h:1/a/b:c").scheme == "https"
