"""The client libraries people use, unmodified, against a real `ollamacli serve` on SmolLM2.

Each library runs in its default configuration (only the server address and the model are
given) through the everyday flows: chat, streaming, completion, embeddings, structured output
and tools. Answers are kept short and asserted by their properties, never by their words.
The README's compatibility table lists exactly what these tests cover.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import ollama
import pytest
from pydantic import BaseModel

from tests.factories import WEATHER_TOOL
from tests.server.conftest import free_port, start_serve

pytestmark = [pytest.mark.llama, pytest.mark.slow]

MODEL = "smollm2:135m"
T = TypeVar("T")
Closing = Callable[[T], T]
NODE_DIR = Path(__file__).parent.parent / "node"
WEATHER_QUESTION = "What is the weather in Paris? Use the tool."


class Sky(BaseModel):
    """A tiny schema a 135M model fills reliably under a grammar."""

    colour: Literal["blue", "red", "green"]
    cloudy: bool


class Served:
    """A running `ollamacli serve` process and the file its log goes to."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("ecosystem")
    port = free_port()
    env = {
        **os.environ,
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        "OLLAMA_MODELS": str(root / "models"),
        "OLLAMACLI_HOME": str(root / "data"),
    }
    log = root / "serve.log"
    process = start_serve(env, port, log=log)
    url = f"http://127.0.0.1:{port}"
    try:
        pulled = httpx.post(
            f"{url}/api/pull", json={"model": MODEL, "stream": False}, timeout=120, trust_env=False
        )
        assert pulled.json() == {"status": "success"}
        yield Served(url, log)
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.fixture
def closing() -> Iterator[Closing[Any]]:
    """`closing(llm)`: close the `ollama` client the object opened once the test ends (the
    libraries never close theirs, and an open socket is a ResourceWarning, an error here)."""
    owners: list[object] = []

    def track(owner: T) -> T:
        owners.append(owner)
        return owner

    yield track
    for owner in owners:
        client = getattr(owner, "_client", None)
        if isinstance(client, ollama.Client):
            client.close()  # type: ignore[no-untyped-call]  # ollama leaves it unannotated


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def get_weather(city: str) -> str:
    """Get the current weather for a city.

    Args:
        city: The city name.
    """
    return f"22 C in {city}"


def assert_similar_texts_embed_closer(embed: Any) -> None:
    """`embed(texts) -> vectors`: one vector per text, similar texts closer together."""
    cat, cat2, stocks = embed(["The cat sits on the mat.", "A cat is on a mat.", "Stocks fell."])
    assert len(cat) == len(cat2) == len(stocks) > 8
    assert cosine(cat, cat2) > cosine(cat, stocks)


# --- langchain-ollama ------------------------------------------------------------------------


def test_langchain_chat_ollama(served: Served, closing: Closing[Any]) -> None:
    from langchain_core.messages import AIMessage
    from langchain_ollama import ChatOllama

    chat = closing(ChatOllama(model=MODEL, base_url=served.url, temperature=0, num_predict=12))
    answer = chat.invoke("Say hello.")
    assert isinstance(answer, AIMessage)
    assert isinstance(answer.content, str)
    assert answer.content.strip()
    assert answer.response_metadata["done_reason"] in ("stop", "length")
    chunks = list(chat.stream("Say hello."))
    assert len(chunks) > 2
    assert "".join(str(c.content) for c in chunks).strip()


def test_langchain_ollama_llm_and_embeddings(served: Served, closing: Closing[Any]) -> None:
    from langchain_ollama import OllamaEmbeddings, OllamaLLM

    llm = closing(OllamaLLM(model=MODEL, base_url=served.url, temperature=0, num_predict=12))
    assert llm.invoke("The sky is").strip()
    assert "".join(llm.stream("The sky is")).strip()
    embeddings = closing(OllamaEmbeddings(model=MODEL, base_url=served.url))
    assert_similar_texts_embed_closer(embeddings.embed_documents)
    assert len(embeddings.embed_query("cat")) == len(embeddings.embed_documents(["cat"])[0])


def test_langchain_structured_output_and_tools(served: Served, closing: Closing[Any]) -> None:
    from langchain_ollama import ChatOllama

    chat = closing(ChatOllama(model=MODEL, base_url=served.url, temperature=0, num_predict=40))
    sky = chat.with_structured_output(Sky).invoke("What colour is the sky? Is it cloudy?")
    assert isinstance(sky, Sky)
    # Ollama's API has no tool_choice, so the library cannot force a call: the model decides,
    # and whatever it does must be an answer or a well-formed call of the offered tool.
    asked = chat.bind_tools([get_weather]).invoke(WEATHER_QUESTION)
    assert str(asked.content).strip() or asked.tool_calls
    for call in asked.tool_calls:
        assert call["name"] == "get_weather"


# --- LlamaIndex ------------------------------------------------------------------------------


def test_llama_index_ollama_llm(served: Served, closing: Closing[Any]) -> None:
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.ollama import Ollama

    # The default configuration sends every option it knows, `temperature: null` included:
    # the request Ollama accepts and a strict server refuses with a 400.
    llm = closing(Ollama(model=MODEL, base_url=served.url, additional_kwargs={"num_predict": 12}))
    assert llm.complete("The sky is").text.strip()
    assert "".join(r.delta or "" for r in llm.stream_complete("The sky is")).strip()
    answer = llm.chat([ChatMessage(role="user", content="Say hello.")])
    assert answer.message.role == "assistant"
    assert (answer.message.content or "").strip()
    deltas = [r.delta for r in llm.stream_chat([ChatMessage(role="user", content="Hi.")])]
    assert len(deltas) > 2
    assert "".join(d or "" for d in deltas).strip()


def test_llama_index_structured_output_and_embeddings(
    served: Served, closing: Closing[Any]
) -> None:
    from llama_index.core.prompts import PromptTemplate
    from llama_index.embeddings.ollama import OllamaEmbedding
    from llama_index.llms.ollama import Ollama

    llm = closing(Ollama(model=MODEL, base_url=served.url, temperature=0))
    prompt = PromptTemplate("What colour is the {thing}? Is it cloudy?")
    sky = llm.structured_predict(Sky, prompt, thing="sky")
    assert isinstance(sky, Sky)
    embedding = closing(OllamaEmbedding(model_name=MODEL, base_url=served.url))
    assert_similar_texts_embed_closer(embedding.get_text_embedding_batch)
    assert len(embedding.get_query_embedding("cat")) == len(embedding.get_text_embedding("cat"))


# --- LiteLLM ---------------------------------------------------------------------------------


# LiteLLM's lazily imported modules warn about their own code (a pydantic note on a TypedDict).
litellm_noise = pytest.mark.filterwarnings(
    "ignore:Items? .* (are|is) using the `ReadOnly` qualifier:UserWarning"
)


@pytest.fixture(scope="module")
def litellm() -> Any:
    # LiteLLM fetches its model price list from the internet on import unless told not to.
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # its own imports of old APIs
        import litellm

    return litellm


@litellm_noise
@pytest.mark.parametrize("provider", ["ollama", "ollama_chat"])
def test_litellm_completion_and_streaming(served: Served, litellm: Any, provider: str) -> None:
    kwargs = {
        "model": f"{provider}/{MODEL}",
        "api_base": served.url,
        "messages": [{"role": "user", "content": "Say hello."}],
        "temperature": 0,
        "max_tokens": 12,
    }
    response = litellm.completion(**kwargs)
    assert response.choices[0].message.content.strip()
    assert response.choices[0].finish_reason in ("stop", "length")
    assert response.usage.completion_tokens > 0
    chunks = list(litellm.completion(**kwargs, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip()


@litellm_noise
@pytest.mark.parametrize("provider", ["ollama", "ollama_chat"])
def test_litellm_structured_output(served: Served, litellm: Any, provider: str) -> None:
    response = litellm.completion(
        model=f"{provider}/{MODEL}",
        api_base=served.url,
        messages=[{"role": "user", "content": "What colour is the sky? Is it cloudy?"}],
        response_format=Sky,
        temperature=0,
        max_tokens=40,
    )
    Sky.model_validate_json(response.choices[0].message.content)


@litellm_noise
def test_litellm_tools_and_embeddings(served: Served, litellm: Any) -> None:
    tool = WEATHER_TOOL
    response = litellm.completion(
        model=f"ollama_chat/{MODEL}",
        api_base=served.url,
        messages=[{"role": "user", "content": WEATHER_QUESTION}],
        tools=[tool],
        temperature=0,
        max_tokens=40,
    )
    message = response.choices[0].message
    # LiteLLM drops tool_choice for Ollama, so the model decides (see the LangChain test).
    assert (message.content or "").strip() or message.tool_calls
    for call in message.tool_calls or []:
        assert call.function.name == "get_weather"
        assert isinstance(json.loads(call.function.arguments), dict)

    def embed(texts: list[str]) -> list[list[float]]:
        result = litellm.embedding(model=f"ollama/{MODEL}", api_base=served.url, input=texts)
        return [item["embedding"] for item in result.data]

    assert_similar_texts_embed_closer(embed)


# --- the `ollama` npm package ----------------------------------------------------------------


@pytest.fixture(scope="module")
def node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip(
            "node is not installed: the ollama npm package test needs it (apt install nodejs)"
        )
    if not (NODE_DIR / "node_modules" / "ollama").is_dir():
        npm = shutil.which("npm")
        assert npm, "node is installed but npm is not: install npm (scripts/check runs npm ci)"
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--silent"],
            cwd=NODE_DIR,
            check=True,
            timeout=300,
        )
    return node


def test_ollama_npm_package(served: Served, node: str) -> None:
    result = subprocess.run(
        [node, str(NODE_DIR / "ollama_client.cjs"), served.url, MODEL],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["chat"]["role"] == "assistant"
    assert out["chat"]["content"].strip()
    assert out["chat"]["done"] is True
    stream = out["stream"]
    assert len(stream) > 2
    assert stream[-1]["done"] is True
    assert not any(part["done"] for part in stream[:-1])
    assert "".join(part["content"] for part in stream).strip()
    assert out["generate"]["response"].strip()
    assert out["generate"]["done_reason"] in ("stop", "length")
    assert json.loads(out["structured"])["colour"] in ("blue", "red", "green")
    first, second = out["embed"]
    assert len(first) == len(second) > 8


def test_unknown_options_are_logged_once_by_the_server(served: Served) -> None:
    options = {"temperature": 0, "num_predict": 1, "mystery_knob": 3}
    for _ in range(2):
        response = httpx.post(
            f"{served.url}/api/generate",
            json={"model": MODEL, "prompt": "Hi", "stream": False, "options": options},
            timeout=120,
            trust_env=False,
        )
        assert response.status_code == 200, response.text
    warned = [line for line in served.log.read_text().splitlines() if "mystery_knob" in line]
    assert len(warned) == 1
    assert "WARNING" in warned[0]
