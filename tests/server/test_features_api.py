"""Structured outputs, tools, embeddings and context limits over HTTP (scripted engines).

The fake engine reports a plain labelled chat template (tests/fakes.py), which has no tools
section: tools reach it through the injected Hermes-style
instructions, and calls come back in `<tool_call>` tags."""

from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest

from ollamacli.server.openai_routes import chat_request
from ollamacli.server.schemas import ChatCompletionBody
from ollamacli.service.models import CreateSpec
from tests.factories import WEATHER_TOOL
from tests.fakes import FakeFactory
from tests.server.conftest import LiveServer, ndjson_lines, sse_events

WEATHER = WEATHER_TOOL
ASK = [{"role": "user", "content": "Weather in Paris?"}]
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def test_ollama_chat_returns_tool_calls(live: LiveServer, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue(CALL)
    fake_factory.enqueue("<tool_call>", CALL.removeprefix("<tool_call>"))
    body = {"model": "tiny", "messages": ASK, "tools": [WEATHER]}
    with live.client() as client:
        whole = client.post("/api/chat", json=body).json()
        streamed = ndjson_lines(client.post("/api/chat", json={**body, "stream": True}))
    call = {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}
    assert whole["message"] == {"role": "assistant", "content": "", "tool_calls": [call]}
    assert whole["done_reason"] == "stop"
    assert [line["message"].get("tool_calls") for line in streamed] == [[call], None]
    assert streamed[-1]["done"] is True


def test_ollama_chat_accepts_tool_results_and_tool_choice(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    history = [
        *ASK,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "22 degrees", "tool_name": "get_weather"},
    ]
    fake_factory.enqueue("It is 22 degrees.")
    body = {"model": "tiny", "messages": history, "tools": [WEATHER], "tool_choice": "auto"}
    with live.client() as client:
        answer = client.post("/api/chat", json=body).json()
        bad = client.post("/api/chat", json={**body, "tool_choice": "sometimes"})
        unknown = client.post(
            "/api/chat",
            json={**body, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        )
    assert answer["message"]["content"] == "It is 22 degrees."
    prompt = fake_factory.loaded[0].prompts[-1]
    assert isinstance(prompt, str)
    assert '"arguments": {"city": "Paris"}}\n</tool_call>\n\n### Tool result:' in prompt
    assert "### Tool result:\n22 degrees\n\n### Assistant:\n" in prompt
    assert (bad.status_code, unknown.status_code) == (400, 400)
    assert "invalid tool_choice" in bad.json()["error"]
    assert unknown.json() == {"error": 'tool_choice names "nope", which is not in tools'}


def test_openai_tool_calls_with_and_without_streaming(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    fake_factory.enqueue(CALL)
    fake_factory.enqueue(CALL)
    body = {"model": "tiny", "messages": ASK, "tools": [WEATHER], "tool_choice": "required"}
    with live.client() as client:
        whole = client.post("/v1/chat/completions", json=body).json()
        chunks = sse_events(client.post("/v1/chat/completions", json={**body, "stream": True}))
    (choice,) = whole["choices"]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    deltas = [c["choices"][0] for c in chunks]
    assert deltas[0]["delta"]["tool_calls"][0]["index"] == 0
    assert deltas[0]["delta"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert deltas[-1]["finish_reason"] == "tool_calls"
    grammar = fake_factory.loaded[0].samplings[-1].grammar
    assert grammar is not None
    assert "forced-tool-call" in grammar


def test_openai_tool_messages_are_named_after_their_call() -> None:
    body = ChatCompletionBody.model_validate(
        {
            "model": "tiny",
            "messages": [
                *ASK,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "22"},
            ],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        }
    )
    request = chat_request(body)
    assert request.messages[2].tool_name == "get_weather"
    assert request.messages[1].tool_calls[0].arguments == {"city": "Paris"}
    assert (request.tool_choice.mode, request.tool_choice.name) == ("required", "get_weather")


@pytest.mark.parametrize(
    ("path", "body", "keyword"),
    [
        ("/api/chat", {"messages": ASK, "format": {"type": "integer", "minimum": 1}}, "minimum"),
        (
            "/api/generate",
            {"prompt": "x", "format": {"type": "string", "format": "email"}},
            "format",
        ),
        (
            "/v1/chat/completions",
            {
                "messages": ASK,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "n", "schema": {"type": "array", "uniqueItems": True}},
                },
            },
            "uniqueItems",
        ),
    ],
    ids=["chat", "generate", "openai"],
)
def test_a_schema_the_grammar_cannot_enforce_is_a_400_naming_the_keyword(
    live: LiveServer, fake_factory: FakeFactory, path, body, keyword
) -> None:
    with live.client() as client:
        response = client.post(path, json={"model": "tiny", **body})
    assert response.status_code == 400
    text = json.dumps(response.json())
    assert f'keyword \\"{keyword}\\"' in text
    assert fake_factory.loaded == []


def test_format_and_response_format_become_grammars(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("/api/chat", {"messages": ASK, "format": schema}),
        ("/api/generate", {"prompt": "x", "format": "json"}),
        ("/v1/chat/completions", {"messages": ASK, "response_format": {"type": "json_object"}}),
        (
            "/v1/chat/completions",
            {
                "messages": ASK,
                "response_format": {"type": "json_schema", "json_schema": {"schema": schema}},
            },
        ),
    ]
    with live.client() as client:
        for path, body in bodies:
            assert client.post(path, json={"model": "tiny", **body}).status_code == 200
    grammars = [s.grammar or "" for s in fake_factory.loaded[0].samplings]
    assert ['\\"ok\\"' in g for g in grammars] == [True, False, False, True]
    assert all(re.search(r"^root\s+::=", g, re.MULTILINE) for g in grammars)


def test_truncation_is_reported_and_truncate_false_is_a_400(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    long = " ".join(["w"] * 300)  # the tiny model's context is 256 (fake tokens are words)
    history = [{"role": "user", "content": long}, {"role": "assistant", "content": "ok"}, *ASK]
    with live.client() as client:
        chat = client.post("/api/chat", json={"model": "tiny", "messages": history}).json()
        refused = client.post(
            "/api/chat", json={"model": "tiny", "messages": history, "truncate": False}
        )
        fits = client.post("/api/chat", json={"model": "tiny", "messages": ASK}).json()
    assert chat["truncated"] is True
    assert "truncated" not in fits
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("the input length exceeds the context length: ")
    assert refused.json()["error"].endswith(" tokens > num_ctx 256")


def test_length_limits_end_with_length(live: LiveServer, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue("a", "b", "c")
    fake_factory.enqueue("a", "b", "c")
    with live.client() as client:
        chat = client.post(
            "/api/chat", json={"model": "tiny", "messages": ASK, "options": {"num_predict": 2}}
        ).json()
        openai = client.post(
            "/v1/chat/completions", json={"model": "tiny", "messages": ASK, "max_tokens": 2}
        ).json()
    assert (chat["done_reason"], chat["message"]["content"]) == ("length", "ab")
    assert openai["choices"][0]["finish_reason"] == "length"


def test_api_embed_shapes(live: LiveServer) -> None:
    with live.client() as client:
        many = client.post("/api/embed", json={"model": "tiny", "input": ["abc", "hello"]}).json()
        one = client.post("/api/embed", json={"model": "tiny", "input": "abc", "dimensions": 1})
        empty = client.post("/api/embed", json={"model": "tiny"}).json()
        bad = client.post("/api/embed", json={"model": "tiny", "input": ["a", 1]})
        missing = client.post("/api/embed", json={"model": "ghost", "input": "a"})
    assert set(many) == {
        "model",
        "embeddings",
        "total_duration",
        "load_duration",
        "prompt_eval_count",
    }
    assert many["model"] == "tiny"
    assert [len(v) for v in many["embeddings"]] == [2, 2]
    assert all(abs(sum(x * x for x in v) - 1) < 1e-9 for v in many["embeddings"])
    assert many["prompt_eval_count"] == 2
    assert one.json()["embeddings"] == [[1.0]]
    assert empty["embeddings"] == []
    assert (bad.status_code, bad.json()) == (400, {"error": "invalid input type"})
    assert missing.status_code == 404


def test_legacy_embeddings_are_not_normalised(live: LiveServer) -> None:
    with live.client() as client:
        vector = client.post("/api/embeddings", json={"model": "tiny", "prompt": "abcd"}).json()
        empty = client.post("/api/embeddings", json={"model": "tiny", "prompt": ""}).json()
    assert vector == {"embedding": [4.0, 1.0]}
    assert empty == {"embedding": []}


def test_openai_embeddings_float_and_base64(live: LiveServer) -> None:
    body = {"model": "tiny", "input": ["abc", "hello"]}
    with live.client() as client:
        floats = client.post("/v1/embeddings", json=body).json()
        encoded = client.post("/v1/embeddings", json={**body, "encoding_format": "base64"}).json()
        tokens = client.post("/v1/embeddings", json={"model": "tiny", "input": [[1, 2]]})
    assert floats["object"] == "list"
    assert floats["model"] == "tiny"
    assert floats["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    assert [d["index"] for d in floats["data"]] == [0, 1]
    first = floats["data"][0]["embedding"]
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == pytest.approx(first, rel=1e-6)
    assert tokens.status_code == 400
    assert tokens.json()["error"]["type"] == "invalid_request_error"


def test_show_reports_tools_for_templates_that_support_them(live: LiveServer, tmp_path) -> None:
    qwen = (Path(__file__).parent.parent / "data" / "templates" / "qwen2.5.jinja").read_text()
    live.services.models.create("qwen", CreateSpec(from_model="tiny", template=qwen))
    with live.client() as client:
        tiny = client.post("/api/show", json={"model": "tiny"}).json()
        tooled = client.post("/api/show", json={"model": "qwen"}).json()
    assert tiny["capabilities"] == ["completion"]
    assert tooled["capabilities"] == ["completion", "tools"]


def test_generate_refuses_a_prompt_longer_than_the_context_without_truncation(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    body = {"model": "tiny", "prompt": " ".join(["w"] * 300), "truncate": False}
    with live.client() as client:
        refused = client.post("/api/generate", json=body)
    assert refused.status_code == 400
    assert refused.json()["error"].endswith(" tokens > num_ctx 256")
    assert all(not engine.prompts for engine in fake_factory.loaded)
