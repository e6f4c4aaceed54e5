"""Requests that crashed or 500'd a real `ollamacli serve` on the bundled model (issue 17).

The server runs as a subprocess: before the grammar limits, `"format": {"type": "string",
"maxLength": 20000}` killed the whole process with SIGSEGV inside llama.cpp.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ollamacli.engine.base import LoadConfig
from ollamacli.engine.llama import LlamaCppEngine, LlamaCppFactory
from tests.server.conftest import free_port, start_serve

pytestmark = [pytest.mark.llama, pytest.mark.slow]

MODEL = "smollm2:135m"
SHORT = {"num_predict": 3, "temperature": 0}


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[httpx.Client, subprocess.Popen[str]]]:
    root = tmp_path_factory.mktemp("hardening")
    port = free_port()
    env = {
        **os.environ,
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        "OLLAMA_MODELS": str(root / "models"),
        "OLLAMACLI_HOME": str(root / "data"),
    }
    process = start_serve(env, port)
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=110, trust_env=False
        ) as client:
            assert client.post("/api/pull", json={"model": MODEL}).json() == {"status": "success"}
            yield client, process
    finally:
        process.terminate()
        process.communicate(timeout=60)


def _chat(fmt: object) -> dict[str, object]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hi."}],
        "format": fmt,
        "options": SHORT,
    }


@pytest.mark.parametrize("length", [20_000, 50_000, 100_000])
def test_huge_repetition_counts_are_a_400_and_the_server_lives(served, length: int) -> None:
    client, process = served
    schema = {"type": "string", "maxLength": length}
    ollama = client.post("/api/chat", json=_chat(schema))
    openai = client.post(
        "/v1/chat/completions",
        json={
            "model": MODEL,
            "max_tokens": 3,
            "messages": [{"role": "user", "content": "Say hi."}],
            "response_format": {"type": "json_schema", "json_schema": {"schema": schema}},
        },
    )
    assert ollama.status_code == 400
    assert ollama.json() == {
        "error": f'format: JSON schema keyword "maxLength" is {length}, more than the limit of 1000'
    }
    assert openai.status_code == 400
    assert "more than the limit of 1000" in openai.json()["error"]["message"]
    assert process.poll() is None
    assert client.get("/api/version").status_code == 200


def test_a_schema_at_the_limit_constrains_the_real_model(served) -> None:
    client, process = served
    schema = {"type": "string", "maxLength": 1000}
    response = client.post("/api/chat", json=_chat(schema))
    assert response.status_code == 200, response.text
    assert response.json()["message"]["content"].startswith('"')
    assert process.poll() is None


@pytest.mark.parametrize("num_ctx", [300, 0])
def test_num_ctx_off_llama_cpps_256_grid_fits_long_prompts(served, num_ctx: int) -> None:
    """llama.cpp pads the context to a multiple of 256 while llama-cpp-python sizes its token
    array to num_ctx: prompts fitted to the padded size failed ("could not broadcast")."""
    client, _ = served
    prompt = " ".join(["word"] * (num_ctx + 100))
    body = {"model": MODEL, "prompt": prompt, "options": {**SHORT, "num_ctx": num_ctx}}
    response = client.post("/api/generate", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["prompt_eval_count"] <= max(num_ctx, 4)


@pytest.mark.parametrize("token", [-1, 49_152, 10**9])
def test_context_tokens_outside_the_vocabulary_are_a_400(served, token: int) -> None:
    client, process = served
    body = {"model": MODEL, "prompt": "hi", "context": [1, token], "options": SHORT}
    response = client.post("/api/generate", json=body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"invalid context: token {token} is not in")
    assert process.poll() is None


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[LlamaCppEngine]:
    loaded = LlamaCppFactory().load(LoadConfig(smollm2_path, num_ctx=512))
    yield loaded
    loaded.close()


def test_long_chat_prompts_tokenize_as_one_piece_does(engine: LlamaCppEngine) -> None:
    """Long texts are tokenized in pieces cut at special tokens (llama.cpp is quadratic in
    them); the tokens must be exactly those of one call."""
    text = "".join(
        f"<|im_start|>{'user' if i % 2 else 'assistant'}\nturn {i}: é 日本  x\n\n<|im_end|>\n"
        for i in range(1500)
    )
    assert len(text) > 8192 * 4
    whole = engine._model.tokenize(text.encode(), special=True)  # one llama_tokenize call
    assert engine.tokenize(text) == whole
