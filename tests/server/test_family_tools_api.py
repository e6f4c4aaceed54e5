# ruff: noqa: RUF001  (DeepSeek's markers are spelled with full-width bars)
"""Tool calls of models whose config names Ollama's built-in parsers (scripted engines), over
/api/chat and /v1/chat/completions: Qwen 3.5's XML calls after its trace, typed by the tool's
schema and streamed as each call closes; DeepSeek V3.1's call markers."""

from __future__ import annotations

import json
from pathlib import Path

from ollamacli.service.models import CreateSpec
from tests.factories import WEATHER_TOOL, make_tiny_gguf
from tests.fakes import FakeFactory
from tests.server.conftest import LiveServer, ndjson_lines, sse_events

ASK = [{"role": "user", "content": "Weather in Paris and Oslo?"}]
DAYS_TOOL = {
    "type": "function",
    "function": {
        "name": "get_forecast",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        },
    },
}
TOOLS = [WEATHER_TOOL, DAYS_TOOL]
PIECES = (
    "Two cities",
    ", two calls.</think>\n\n<tool_",
    "call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n",
    "</tool_call>\n<tool_call>\n<function=get_forecast>\n<parameter=city>\nOslo\n",
    "</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
)
"""Qwen 3.5 output: a trace, then two XML calls split across pieces."""


def add_model(live: LiveServer, tmp_path: Path, name: str, renderer: str, parser: str) -> None:
    gguf = make_tiny_gguf(tmp_path / f"{name}.gguf", context_length=8192)
    spec = CreateSpec(from_file=gguf, renderer=renderer, parser=parser)
    live.services.models.create(name, spec)


def test_qwen35_xml_calls_after_the_trace_on_api_chat(
    live: LiveServer, fake_factory: FakeFactory, tmp_path: Path
) -> None:
    add_model(live, tmp_path, "qwen35", "qwen3.5", "qwen3.5")
    fake_factory.enqueue(*PIECES)
    fake_factory.enqueue(*PIECES)
    body = {"model": "qwen35", "messages": ASK, "tools": TOOLS}
    with live.client() as client:
        whole = client.post("/api/chat", json=body).json()
        streamed = ndjson_lines(client.post("/api/chat", json={**body, "stream": True}))
    paris = {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}
    oslo = {"index": 1, "name": "get_forecast", "arguments": {"city": "Oslo", "days": 3}}
    assert whole["message"] == {
        "role": "assistant",
        "content": "",
        "thinking": "Two cities, two calls.",
        "tool_calls": [{"function": paris}, {"function": oslo}],
    }
    messages = [line["message"] for line in streamed[:-1]]
    assert [m.get("tool_calls") for m in messages if m.get("tool_calls")] == [
        [{"function": paris}],  # each call goes out as soon as it closes
        [{"function": oslo}],
    ]
    assert all(m["content"] == "" for m in messages)
    assert "".join(m.get("thinking", "") for m in messages) == "Two cities, two calls."
    prompt = str(fake_factory.loaded[0].prompts[0])
    assert '"name": "get_forecast"' in prompt  # the renderer showed the tools
    assert prompt.endswith("<|im_start|>assistant\n<think>\n")


def test_qwen35_calls_on_openai_chat_completions(
    live: LiveServer, fake_factory: FakeFactory, tmp_path: Path
) -> None:
    add_model(live, tmp_path, "qwen35", "qwen3.5", "qwen3.5")
    fake_factory.enqueue(*PIECES)
    fake_factory.enqueue(*PIECES)
    body = {"model": "qwen35", "messages": ASK, "tools": TOOLS}
    with live.client() as client:
        whole = client.post("/v1/chat/completions", json=body).json()
        chunks = sse_events(client.post("/v1/chat/completions", json={**body, "stream": True}))
    (choice,) = whole["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["reasoning"] == "Two cities, two calls."
    calls = [
        (c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in choice["message"]["tool_calls"]
    ]
    assert calls == [
        ("get_weather", {"city": "Paris"}),
        ("get_forecast", {"city": "Oslo", "days": 3}),
    ]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    streamed = [call for d in deltas for call in d.get("tool_calls", [])]
    assert [(c["index"], c["function"]["name"]) for c in streamed] == [
        (0, "get_weather"),
        (1, "get_forecast"),  # indices count across chunks, as OpenAI clients merge by index
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_deepseek_v31_call_markers_on_api_chat(
    live: LiveServer, fake_factory: FakeFactory, tmp_path: Path
) -> None:
    add_model(live, tmp_path, "v31", "deepseek3.1", "deepseek3")
    fake_factory.enqueue(
        "Checking.</think>Let me look.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_",
        'weather<｜tool▁sep｜>{"city": "Paris"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
    )
    body = {"model": "v31", "messages": ASK, "tools": [WEATHER_TOOL], "think": True}
    with live.client() as client:
        whole = client.post("/api/chat", json=body).json()
    assert whole["message"] == {
        "role": "assistant",
        "content": "Let me look.",
        "thinking": "Checking.",
        "tool_calls": [
            {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}
        ],
    }
    sampling = fake_factory.loaded[0].samplings[0]
    assert sampling.special_tokens  # the markers are control tokens: the engine prints them


def test_qwen3_coder_calls_follow_text_and_tool_choice_none_leaves_them_content(
    live: LiveServer, fake_factory: FakeFactory, tmp_path: Path
) -> None:
    add_model(live, tmp_path, "coder", "qwen3-coder", "qwen3-coder")
    call = "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>"
    fake_factory.enqueue("Checking Paris.\n", call)
    fake_factory.enqueue("Checking Paris.\n", call)
    body = {"model": "coder", "messages": ASK, "tools": TOOLS}
    with live.client() as client:
        whole = client.post("/api/chat", json=body).json()
        none = client.post("/v1/chat/completions", json={**body, "tool_choice": "none"}).json()
    assert whole["message"]["content"] == "Checking Paris."
    assert whole["message"]["tool_calls"] == [
        {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}
    ]
    assert "thinking" not in whole["message"]  # qwen3-coder has no trace
    assert none["choices"][0]["message"]["content"] == "Checking Paris.\n" + call


def test_cogito_calls_stream_on_api_chat(
    live: LiveServer, fake_factory: FakeFactory, tmp_path: Path
) -> None:
    add_model(live, tmp_path, "cogito", "cogito", "cogito")
    fake_factory.enqueue(
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n",
        '```json\n{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>',
    )
    body = {"model": "cogito", "messages": ASK, "tools": [WEATHER_TOOL], "think": False}
    with live.client() as client:
        streamed = ndjson_lines(client.post("/api/chat", json={**body, "stream": True}))
    assert [line["message"].get("tool_calls") for line in streamed] == [
        [{"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}],
        None,
    ]
    assert all(line["message"]["content"] == "" for line in streamed)
