"""Thinking over HTTP (scripted engines): `think` on /api/chat and /api/generate, the trace in
`message.thinking` / `thinking` (streamed apart from the answer), Ollama's 400s, and the OpenAI
layer's `reasoning_effort` in and `reasoning` out."""

from __future__ import annotations

import json
from pathlib import Path

from ollamacli.service.models import CreateSpec
from tests.factories import make_tiny_gguf
from tests.fakes import FakeFactory
from tests.server.conftest import LiveServer, ndjson_lines, sse_events
from tests.service.test_thinking_service import OPENS

ASK = [{"role": "user", "content": "Why?"}]


def add_thinker(live: LiveServer, tmp_path: Path) -> None:
    gguf = make_tiny_gguf(tmp_path / "thinker.gguf")
    live.services.models.create("thinker", CreateSpec(from_file=gguf, template=OPENS))


def test_chat_returns_the_trace_in_message_thinking(
    live: LiveServer, fake_factory: FakeFactory, tmp_path: Path
) -> None:
    add_thinker(live, tmp_path)
    fake_factory.enqueue("I should", " answer.</think>", "\n\nBecause.")
    fake_factory.enqueue("I should", " answer.</think>", "\n\nBecause.")
    body = {"model": "thinker", "messages": ASK, "think": True}
    with live.client() as client:
        whole = client.post("/api/chat", json=body).json()
        streamed = ndjson_lines(client.post("/api/chat", json={**body, "stream": True}))
    assert whole["message"] == {
        "role": "assistant",
        "content": "Because.",
        "thinking": "I should answer.",
    }
    messages = [line["message"] for line in streamed]
    assert messages[:3] == [
        {"role": "assistant", "content": "", "thinking": "I should"},
        {"role": "assistant", "content": "", "thinking": " answer."},
        {"role": "assistant", "content": "Because."},
    ]
    assert streamed[-1]["done"] is True
    assert all("<think>" not in m["content"] and "</think>" not in m["content"] for m in messages)


def test_chat_think_false_and_the_trace_passed_back(
    live: LiveServer, fake_factory: FakeFactory, tmp_path: Path
) -> None:
    add_thinker(live, tmp_path)
    fake_factory.enqueue("Direct.")
    history = [
        *ASK,
        {"role": "assistant", "content": "Because.", "thinking": "earlier trace"},
        {"role": "user", "content": "Sure?"},
    ]
    body = {"model": "thinker", "messages": history, "think": False}
    with live.client() as client:
        answer = client.post("/api/chat", json=body).json()
    assert answer["message"] == {"role": "assistant", "content": "Direct."}
    prompt = str(fake_factory.loaded[0].prompts[0])
    assert "<think>earlier trace</think>Because." in prompt
    assert prompt.endswith("<think>\n\n</think>\n\n")


def test_generate_returns_thinking_and_levels_are_accepted(
    live: LiveServer, fake_factory: FakeFactory, tmp_path: Path
) -> None:
    add_thinker(live, tmp_path)
    fake_factory.enqueue("hmm</think>Yes.")
    fake_factory.enqueue("hmm", "</think>Yes.")
    body = {"model": "thinker", "prompt": "Is it?", "think": "high"}
    with live.client() as client:
        whole = client.post("/api/generate", json=body).json()
        streamed = ndjson_lines(client.post("/api/generate", json={**body, "stream": True}))
    assert (whole["response"], whole["thinking"]) == ("Yes.", "hmm")
    assert [(line["response"], line.get("thinking")) for line in streamed[:2]] == [
        ("", "hmm"),
        ("Yes.", None),
    ]


def test_thinking_errors_are_ollamas(live: LiveServer) -> None:
    with live.client() as client:
        chat = client.post("/api/chat", json={"model": "tiny", "messages": ASK, "think": True})
        generate = client.post(
            "/api/generate", json={"model": "tiny", "prompt": "x", "think": "low"}
        )
        invalid = client.post("/api/chat", json={"model": "tiny", "messages": ASK, "think": "lots"})
        off = client.post("/api/chat", json={"model": "tiny", "messages": ASK, "think": False})
    assert (chat.status_code, chat.json()) == (400, {"error": '"tiny" does not support thinking'})
    assert generate.status_code == 400
    assert "does not support thinking" in generate.json()["error"]
    assert invalid.status_code == 400
    assert "invalid think value" in invalid.json()["error"]
    assert off.status_code == 200


def test_openai_reasoning_effort_in_and_reasoning_out(
    live: LiveServer, fake_factory: FakeFactory, tmp_path: Path
) -> None:
    add_thinker(live, tmp_path)
    fake_factory.enqueue("weighing</think>Fine.")
    fake_factory.enqueue("weighing", "</think>", "Fine.")
    fake_factory.enqueue("Off.")
    body = {"model": "thinker", "messages": ASK, "reasoning_effort": "high"}
    with live.client() as client:
        whole = client.post("/v1/chat/completions", json=body).json()
        streamed = sse_events(client.post("/v1/chat/completions", json={**body, "stream": True}))
        off = client.post("/v1/chat/completions", json={**body, "reasoning_effort": "none"})
        bad = client.post("/v1/chat/completions", json={**body, "reasoning_effort": "huge"})
        tiny = client.post(
            "/v1/chat/completions",
            json={"model": "tiny", "messages": ASK, "reasoning_effort": "low"},
        )
    message = whole["choices"][0]["message"]
    assert (message["content"], message["reasoning"]) == ("Fine.", "weighing")
    deltas = [event["choices"][0]["delta"] for event in streamed if event["choices"]]
    assert deltas[0] == {"role": "assistant", "content": "", "reasoning": "weighing"}
    assert deltas[1] == {"role": "assistant", "content": "Fine."}
    assert "reasoning" not in off.json()["choices"][0]["message"]
    assert fake_factory.loaded[0].prompts[-1] == (
        "<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    assert bad.status_code == 400
    assert "invalid reasoning value" in bad.json()["error"]["message"]
    assert tiny.status_code == 400
    assert "does not support thinking" in tiny.json()["error"]["message"]


def test_show_lists_thinking_only_where_a_parser_reads_the_model(
    live: LiveServer, tmp_path: Path
) -> None:
    add_thinker(live, tmp_path)
    with live.client() as client:
        thinker = client.post("/api/show", json={"model": "thinker"}).json()
        tiny = client.post("/api/show", json={"model": "tiny"}).json()
    assert "thinking" in thinker["capabilities"]
    assert "thinking" not in tiny["capabilities"]


def test_responses_and_messages_keep_the_trace_out_of_the_answer(
    live: LiveServer, fake_factory: FakeFactory, tmp_path: Path
) -> None:
    add_thinker(live, tmp_path)
    for _ in range(4):
        fake_factory.enqueue("I should", " answer.</think>", "\n\nBecause.")
    with live.client() as client:
        responses = [
            client.post("/v1/responses", json={"model": "thinker", "input": "Why?", "stream": s})
            for s in (False, True)
        ]
        body = {"model": "thinker", "max_tokens": 20, "messages": ASK}
        messages = [client.post("/v1/messages", json={**body, "stream": s}) for s in (False, True)]
    assert responses[0].json()["output"][0]["content"][0]["text"].strip() == "Because."
    streamed = [json.loads(b.split("data: ")[1]) for b in responses[1].text.split("\n\n") if b]
    assert streamed[-1]["type"] == "response.completed"
    assert streamed[-1]["response"]["output"][0]["content"][0]["text"].strip() == "Because."
    assert messages[0].json()["content"][0]["text"].strip() == "Because."
    assert messages[1].text.rstrip().endswith('data: {"type": "message_stop"}')
    assert "I should" not in messages[1].text
