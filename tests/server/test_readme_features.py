"""The README's structured-output, tool and embedding examples, replayed against a real server.

Every `curl` body of the section is sent as written and its answer compared with the output the
README shows; the Python examples run with the server's address swapped in."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from ollamacli.config import Settings
from ollamacli.engine.tools import INSTRUCTIONS
from ollamacli.service import build_services
from tests.server.conftest import LiveServer, serve_in_thread
from tests.test_readme import section

pytestmark = [pytest.mark.llama, pytest.mark.slow]

README_URL = "http://localhost:11434"
SECTION = section("Structured outputs, tools and embeddings")
CURL = re.compile(rf"^curl {re.escape(README_URL)}(/\S+) -d '(.*)'$", re.S)


def blocks() -> list[tuple[str, str]]:
    """(language, text) of every fenced block of the section, in order."""
    fence = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
    return [(m.group(1), m.group(2).strip("\n")) for m in fence.finditer(SECTION)]


def curl_examples() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(path, body, shown answer) for each curl example and the JSON block after it."""
    found = []
    listed = blocks()
    for (language, text), (next_language, shown) in itertools.pairwise(listed):
        match = CURL.match(text)
        if language == "sh" and match:
            assert next_language == "json", f"no answer shown after {match.group(1)}"
            found.append((match.group(1), json.loads(match.group(2)), json.loads(shown)))
    return found


def python_examples() -> list[tuple[str, str]]:
    """(code, shown output) for each Python example and the text block after it."""
    listed = blocks()
    return [
        (code, shown)
        for (language, code), (next_language, shown) in itertools.pairwise(listed)
        if language == "python" and next_language == "text"
    ]


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("readme-features")
    services = build_services(Settings(data_dir=root, models_dir=root / "models"))
    services.models.ensure("smollm2:135m")
    with serve_in_thread(services) as live:
        yield live


def test_the_section_has_a_format_a_tool_and_an_embedding_example():
    assert [path for path, _, _ in curl_examples()] == ["/api/chat", "/api/chat", "/api/embed"]
    assert len(python_examples()) == 2


def check_answer(path: str, body: dict[str, Any], answer: dict[str, Any], shown: dict[str, Any]):
    assert set(answer) == set(shown)
    if "format" in body:
        jsonschema.validate(json.loads(answer["message"]["content"]), body["format"])
        jsonschema.validate(json.loads(shown["message"]["content"]), body["format"])
    elif "tools" in body:
        # The forced call's name is fixed; its arguments are the model's words (which differ
        # across CPUs), so they are held to the tool's schema rather than to the README's.
        calls = answer["message"]["tool_calls"]
        shown_calls = shown["message"]["tool_calls"]
        assert [c["function"]["name"] for c in calls] == ["get_weather"]
        assert [c["function"]["name"] for c in shown_calls] == ["get_weather"]
        (tool,) = body["tools"]
        jsonschema.validate(calls[0]["function"]["arguments"], tool["function"]["parameters"])
    else:
        assert path == "/api/embed"
        vectors = answer["embeddings"]
        assert [len(v) for v in vectors] == [len(v) for v in shown["embeddings"]]
        for vector, recorded in zip(vectors, shown["embeddings"], strict=True):
            assert sum(x * x for x in vector) == pytest.approx(1.0)
            assert vector == pytest.approx(recorded, abs=0.05)


@pytest.mark.parametrize("index", range(3))
def test_curl_examples_answer_as_shown(real: LiveServer, index: int):
    path, body, shown = curl_examples()[index]
    with real.client(timeout=170) as client:
        response = client.post(path, content=json.dumps(body))
    assert response.status_code == 200, response.text
    check_answer(path, body, response.json(), shown)


def run_python(real: LiveServer, code: str, tmp_path: Path) -> list[str]:
    script = tmp_path / "example.py"
    script.write_text(code.replace(README_URL, real.url), encoding="utf-8")
    env = {**os.environ, "NO_PROXY": "*", "no_proxy": "*"}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=170, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


def test_the_openai_tool_round_trip_runs_as_shown(real: LiveServer, tmp_path: Path):
    code, shown = python_examples()[0]
    call, answer = run_python(real, code, tmp_path)
    shown_call, _ = shown.splitlines()
    name, arguments = call.split(" ", 1)
    assert name == shown_call.split(" ", 1)[0] == "get_weather"
    assert isinstance(json.loads(arguments)["city"], str)  # the model's words: any city
    assert answer.strip()


def test_the_embedding_example_runs_as_shown(real: LiveServer, tmp_path: Path):
    code, shown = python_examples()[1]
    (line,) = run_python(real, code, tmp_path)
    pattern = r"cat/cat: ([\d.]+)  cat/stocks: ([\d.]+)"
    similar, unrelated = map(float, re.fullmatch(pattern, line).groups())  # type: ignore[union-attr]
    shown_similar, shown_unrelated = map(float, re.fullmatch(pattern, shown).groups())  # type: ignore[union-attr]
    assert similar > unrelated
    assert (similar, unrelated) == pytest.approx((shown_similar, shown_unrelated), abs=0.02)


def test_the_injected_instructions_are_shown_as_sent():
    shown = next(
        text for language, text in blocks() if language == "text" and "<tool_call>" in text
    )
    expected = INSTRUCTIONS.format(tools="{TOOLS}").splitlines()
    lines = shown.splitlines()
    assert len(lines) == len(expected)
    for line, wanted in zip(lines, expected, strict=True):
        if wanted == "{TOOLS}":
            assert line.startswith('{"type": "function", "function": {"name": "get_weather"')
        else:
            assert line == wanted


def test_legacy_embeddings_are_whole_and_not_normalised(real: LiveServer):
    with httpx.Client(base_url=real.url, trust_env=False, timeout=170) as client:
        legacy = client.post(
            "/api/embeddings", json={"model": "smollm2:135m", "prompt": "The cat"}
        ).json()
    vector = legacy["embedding"]
    assert len(vector) == 576  # SmolLM2-135M's hidden size
    assert sum(x * x for x in vector) != pytest.approx(1.0)
