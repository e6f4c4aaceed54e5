"""The `ollama` and `openai` clients on the real SmolLM2: format / response_format, tools,
embeddings, truncation, over a live uvicorn server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, cast

import jsonschema
import ollama
import openai
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam
from pydantic import BaseModel, Field

from ollamacli.config import Settings
from ollamacli.service import build_services
from ollamacli.service.models import CreateSpec
from tests.factories import WEATHER_TOOL, assert_json_answer
from tests.server.conftest import LiveServer, serve_in_thread

pytestmark = [pytest.mark.llama, pytest.mark.slow]

MODEL = "smollm2:135m"
TEMPLATES = Path(__file__).parent.parent / "data" / "templates"
WEATHER = cast("ChatCompletionFunctionToolParam", WEATHER_TOOL)


class Pet(BaseModel):
    name: str = Field(max_length=20)
    kind: str = Field(json_schema_extra={"enum": ["cat", "dog", "fish"]})
    toys: list[Annotated[str, Field(max_length=20)]] = Field(max_length=3)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("features-api")
    services = build_services(Settings(data_dir=root, models_dir=root / "models"))
    services.models.ensure(MODEL)
    qwen = (TEMPLATES / "qwen2.5.gotmpl").read_text()
    services.models.create("smol-tools", CreateSpec(from_model=MODEL, template=qwen))
    with serve_in_thread(services) as live:
        yield live


@pytest.fixture
def client(real: LiveServer) -> Iterator[ollama.Client]:
    with ollama.Client(host=real.url, timeout=170) as client:
        yield client


@pytest.fixture
def oai(real: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{real.url}/v1", api_key="x", max_retries=0, timeout=170) as c:
        yield c


def test_ollama_client_format_from_a_pydantic_model(client: ollama.Client) -> None:
    schema = Pet.model_json_schema()
    for seed in range(3):
        response = client.chat(
            model=MODEL,
            messages=[{"role": "user", "content": "Describe a pet."}],
            format=schema,
            options={"temperature": 0.8, "seed": seed, "num_predict": 200},
        )
        pet = Pet.model_validate_json(response.message.content or "")
        jsonschema.validate(pet.model_dump(), schema)
    generated = client.generate(
        model=MODEL,
        prompt='Give a JSON object with the key "name" set to "Tom".',
        format="json",
        options={"temperature": 0, "num_predict": 120},
    )
    assert_json_answer(generated.response or "", generated.done_reason)


def test_openai_client_response_format(oai: openai.OpenAI) -> None:
    schema: dict[str, object] = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}, "sure": {"type": "boolean"}},
        "required": ["answer", "sure"],
    }
    completion = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is 2+2?"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "a", "schema": schema},
        },
        temperature=0,
    )
    jsonschema.validate(json.loads(completion.choices[0].message.content or ""), schema)
    as_object = oai.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": 'Give a JSON object with the key "name" set to "Tom".'}
        ],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=120,
    )
    finish = as_object.choices[0].finish_reason
    assert_json_answer(as_object.choices[0].message.content or "", finish)


@pytest.mark.parametrize("model", [MODEL, "smol-tools"])
def test_openai_client_forced_tool_calls(oai: openai.OpenAI, model: str) -> None:
    completion = oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])  # type: ignore[union-attr]
    stream = oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What is the weather in Rome?"}],
        tools=[WEATHER],
        tool_choice="required",
        temperature=0,
        stream=True,
    )
    chunks = [c for c in stream if c.choices]
    deltas = [t for c in chunks for t in c.choices[0].delta.tool_calls or []]
    assert [d.function.name for d in deltas if d.function] == ["get_weather"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_ollama_client_tools_reach_the_model_and_a_result_comes_back(
    client: ollama.Client,
) -> None:
    tools = [dict(WEATHER)]
    asked = client.chat(
        model="smol-tools",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=tools,
        options={"temperature": 0, "num_predict": 48},
    )
    # auto: the model decides; whatever it did, it is an answer or a call of a real tool
    calls = asked.message.tool_calls or []
    assert (asked.message.content or "").strip() or calls
    assert all(c.function.name == "get_weather" for c in calls)
    answered = client.chat(
        model=MODEL,
        messages=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
                ],
            },
            {"role": "tool", "content": '{"temperature": "22 C"}', "tool_name": "get_weather"},
        ],
        tools=tools,
        options={"temperature": 0, "num_predict": 48},
    )
    assert (answered.message.content or "").strip() or answered.message.tool_calls


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_both_clients_embed(client: ollama.Client, oai: openai.OpenAI, real: LiveServer) -> None:
    texts = ["The cat sits on the mat.", "A cat is sitting on a mat.", "Stocks fell today."]
    cat, cat2, stocks = client.embed(model=MODEL, input=texts).embeddings
    assert cosine(list(cat), list(cat2)) > cosine(list(cat), list(stocks))
    response = oai.embeddings.create(model=MODEL, input=texts)  # base64 on the wire
    assert response.data[0].embedding == pytest.approx(list(cat), abs=1e-5)
    assert response.usage.prompt_tokens > 3
    short = client.embed(model=MODEL, input=texts[0], dimensions=8).embeddings[0]
    assert len(short) == 8
    assert sum(x * x for x in short) == pytest.approx(1.0)
    # The embedding instance is loaded next to the chat one, and `ps` lists the model once.
    names = [info.name for info in real.services.scheduler.ps()]
    assert len(names) == len(set(names))
    assert [m.model for m in client.ps().models].count(names[0]) == 1


def test_truncation_over_http(real: LiveServer) -> None:
    story = "Once upon a time there was a little robot who loved to count the stars. " * 8
    messages = [{"role": "system", "content": "You are terse."}]
    for n in range(6):
        messages += [
            {"role": "user", "content": f"{n}: {story}"},
            {"role": "assistant", "content": "Noted."},
        ]
    messages.append({"role": "user", "content": "What did the robot love?"})
    options = {"num_ctx": 512, "temperature": 0, "num_predict": 8}
    body = {"model": MODEL, "messages": messages, "options": options}
    with real.client(timeout=170) as http:
        kept = http.post("/api/chat", json=body).json()
        refused = http.post("/api/chat", json={**body, "truncate": False})
    assert kept["truncated"] is True
    assert kept["prompt_eval_count"] < 512
    assert refused.status_code == 400
    assert refused.json()["error"].endswith("tokens > num_ctx 512")


def check_greedy_logprobs(entries: list[tuple[str, float, list[tuple[str, float]]]]) -> None:
    """At temperature 0 each token is the best of its alternatives, which come sorted."""
    for token, logprob, tops in entries:
        values = [value for _, value in tops]
        assert len(tops) == 3
        assert values == sorted(values, reverse=True)
        assert logprob <= 0
        assert all(value <= 0 for value in values)
        assert tops[0] == (token, logprob)


def test_ollama_client_logprobs_on_the_real_model(client: ollama.Client) -> None:
    options = {"temperature": 0, "num_predict": 6}
    ask = [{"role": "user", "content": "Name a colour."}]
    whole = client.chat(model=MODEL, messages=ask, options=options, logprobs=True, top_logprobs=3)
    assert whole.logprobs is not None
    assert len(whole.logprobs) == whole.eval_count
    check_greedy_logprobs(
        [
            (lp.token, lp.logprob, [(t.token, t.logprob) for t in lp.top_logprobs or ()])
            for lp in whole.logprobs
        ]
    )
    parts = list(
        client.generate(
            model=MODEL, prompt="Name a colour.", options=options, logprobs=True, stream=True
        )
    )
    streamed = [lp for part in parts for lp in part.logprobs or ()]
    assert len(streamed) == parts[-1].eval_count
    assert all(not lp.top_logprobs for lp in streamed)  # none asked for
    tokens = "".join(lp.token for lp in streamed)
    if "\ufffd" not in tokens:  # no token split a character: the tokens spell the answer
        assert tokens == "".join(part.response or "" for part in parts)


def test_openai_client_logprobs_on_the_real_model(oai: openai.OpenAI) -> None:
    ask: list[Any] = [{"role": "user", "content": "Name a colour."}]
    whole = oai.chat.completions.create(
        model=MODEL, messages=ask, temperature=0, max_tokens=6, logprobs=True, top_logprobs=3
    )
    choice = whole.choices[0]
    assert choice.logprobs is not None
    assert choice.logprobs.content is not None
    content = choice.logprobs.content
    assert whole.usage is not None
    assert len(content) == whole.usage.completion_tokens
    check_greedy_logprobs(
        [(t.token, t.logprob, [(a.token, a.logprob) for a in t.top_logprobs]) for t in content]
    )
    assert (
        bytes(b for t in content for b in t.bytes or ()).decode(errors="ignore")
        == choice.message.content
    )
    stream = oai.chat.completions.create(
        model=MODEL,
        messages=ask,
        temperature=0,
        max_tokens=6,
        logprobs=True,
        top_logprobs=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    streamed = [
        t
        for c in chunks
        if c.choices and c.choices[0].logprobs
        for t in c.choices[0].logprobs.content or ()
    ]
    assert chunks[-1].usage is not None
    assert len(streamed) == chunks[-1].usage.completion_tokens
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert bytes(b for t in streamed for b in t.bytes or ()).decode(errors="ignore") == text
    check_greedy_logprobs(
        [(t.token, t.logprob, [(a.token, a.logprob) for a in t.top_logprobs]) for t in streamed]
    )
