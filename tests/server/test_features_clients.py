"""The official `ollama` and `openai` clients for format, tools and embeddings (scripted engines)."""

from __future__ import annotations

import json
import math
from typing import cast

import ollama
import openai
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageParam

from tests.factories import WEATHER_TOOL
from tests.fakes import FakeFactory

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Weather in Paris?"}]
WEATHER = cast("ChatCompletionFunctionToolParam", WEATHER_TOOL)


def get_weather(city: str) -> str:
    """Get the current weather for a city.

    Args:
        city: The city name
    """
    return f"22 degrees in {city}"


def test_ollama_client_tool_calls_from_a_python_function(
    client: ollama.Client, fake_factory: FakeFactory
) -> None:
    fake_factory.enqueue(CALL)
    response = client.chat(model="tiny", messages=ASK, tools=[get_weather])
    (call,) = response.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert call.function.arguments == {"city": "Paris"}
    prompt = str(fake_factory.loaded[0].prompts[-1])
    assert '"description": "The city name"' in prompt  # the client's schema reached the model
    messages = [
        *ASK,
        response.message,
        {
            "role": "tool",
            "content": get_weather(**call.function.arguments),
            "tool_name": "get_weather",
        },
    ]
    fake_factory.enqueue("It is 22 degrees.")
    final = client.chat(model="tiny", messages=messages, tools=[get_weather])
    assert final.message.content == "It is 22 degrees."
    assert "22 degrees in Paris" in str(fake_factory.loaded[0].prompts[-1])


def test_ollama_client_streams_tool_calls(client: ollama.Client, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue("Checking. ", "<tool_", CALL.removeprefix("<tool_"))
    parts = list(client.chat(model="tiny", messages=ASK, tools=[WEATHER], stream=True))
    assert "".join(p.message.content or "" for p in parts) == "Checking. "
    calls = [c for p in parts for c in p.message.tool_calls or []]
    assert [(c.function.name, c.function.arguments) for c in calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert parts[-1].done


def test_ollama_client_format_schema(client: ollama.Client, fake_factory: FakeFactory) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    fake_factory.enqueue('{"ok": true}')
    response = client.chat(model="tiny", messages=ASK, format=schema)
    assert json.loads(response.message.content or "") == {"ok": True}
    assert '\\"ok\\"' in (fake_factory.loaded[0].samplings[-1].grammar or "")
    with pytest.raises(ollama.ResponseError) as refused:
        client.generate(model="tiny", prompt="x", format={"type": "integer", "minimum": 0})
    assert refused.value.status_code == 400
    assert 'keyword "minimum" is not supported' in refused.value.error


def test_ollama_client_embed_and_embeddings(client: ollama.Client) -> None:
    response = client.embed(model="tiny", input=["abc", "hello"])
    assert len(response.embeddings) == 2
    assert math.isclose(sum(x * x for x in response.embeddings[0]), 1.0)
    assert response.prompt_eval_count == 2
    assert client.embed(model="tiny", input="abc", dimensions=1).embeddings == [[1.0]]
    assert client.embeddings(model="tiny", prompt="abcd").embedding == [4.0, 1.0]


def test_openai_client_tool_calls(oai: openai.OpenAI, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue(CALL)
    completion = oai.chat.completions.create(
        model="tiny",
        messages=ASK,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    fake_factory.enqueue(CALL)
    stream = oai.chat.completions.create(
        model="tiny",
        messages=ASK,
        tools=[WEATHER],
        stream=True,
    )
    chunks = [c for c in stream if c.choices]
    deltas = [t for c in chunks for t in c.choices[0].delta.tool_calls or []]
    assert [d.function.name for d in deltas if d.function] == ["get_weather"]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_openai_client_response_format(oai: openai.OpenAI, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue('{"ok": false}')
    completion = oai.chat.completions.create(
        model="tiny",
        messages=ASK,
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "answer",
                "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
            },
        },
    )
    assert json.loads(completion.choices[0].message.content or "") == {"ok": False}
    assert '\\"ok\\"' in (fake_factory.loaded[0].samplings[-1].grammar or "")


def test_openai_client_embeddings(oai: openai.OpenAI) -> None:
    response = oai.embeddings.create(model="tiny", input=["abc", "hello"])  # base64 on the wire
    assert [d.index for d in response.data] == [0, 1]
    assert math.isclose(sum(x * x for x in response.data[0].embedding), 1.0, rel_tol=1e-6)
    assert response.usage.prompt_tokens == 2
    floats = oai.embeddings.create(model="tiny", input="abc", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(response.data[0].embedding, rel=1e-6)
