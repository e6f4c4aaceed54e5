"""Model names parse, validate and display as Ollama's do."""

from __future__ import annotations

import re

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


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("h" * 256 + "/ns/m:t", "host is 256 characters long (at most 255)"),
        ("h" * 350 + "/ns/m:t", "host is 350 characters long (at most 255)"),
        ("h" * 351 + "/ns/m:t", "host is 351 characters long (at most 255)"),
        ("host/" + "n" * 81 + "/m", "namespace is 81 characters long (at most 80)"),
        ("m" * 81, "model is 81 characters long (at most 80)"),
        ("m:" + "t" * 81, "tag is 81 characters long (at most 80)"),
    ],
    ids=["host-256", "host-350", "host-351", "namespace", "model", "tag"],
)
def test_name_parts_have_ollamas_length_limits_and_fit_the_file_system(text, problem):
    with pytest.raises(InvalidModelNameError, match=re.escape(problem)) as caught:
        ModelName.parse(text)
    assert len(str(caught.value)) < 200  # the name is shortened in the message


def test_name_parts_at_their_limits_are_accepted():
    name = ModelName.parse("h" * 255 + "/" + "n" * 80 + "/" + "m" * 80 + ":" + "t" * 80)
    assert [len(part) for part in name.parts] == [255, 80, 80, 80]
