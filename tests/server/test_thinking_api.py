"""Thinking over HTTP (scripted engines): `think` on /api/chat and /api/generate, the trace in
`message.thinking` / `thinking` (streamed apart from the answer), Ollama's 400s, and the OpenAI
layer's `reasoning_effort` in and `reasoning` out; /v1/messages' thinking blocks and
/v1/responses' reasoning items, raw and through the official SDKs."""

from __future__ import annotations

from pathlib import Path

import anthropic
import openai
from anthropic.types import MessageParam, TextBlock, ThinkingBlock, ThinkingConfigParam
from openai.types.responses import (
    ResponseCompletedEvent,
    ResponseReasoningItem,
    ResponseReasoningSummaryTextDeltaEvent,
)

from ollamacli.service.models import CreateSpec
from tests.factories import WEATHER_TOOL, make_tiny_gguf
from tests.fakes import FakeFactory
from tests.server.conftest import LiveServer, named_events, ndjson_lines, sse_events
from tests.service.test_thinking_service import HARMONY_JINJA, OPENS

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


def test_a_harmony_call_with_arguments_that_are_not_json_is_ollamas_error(
    live: LiveServer, fake_factory: FakeFactory, tmp_path: Path
) -> None:
    """Ollama's harmony parser fails the request: a 500 when not streaming, an error line
    after the trace when streaming."""
    fake_factory.chat_template = HARMONY_JINJA
    gguf = make_tiny_gguf(tmp_path / "oss.gguf")
    live.services.models.create("oss", CreateSpec(from_file=gguf, parser="harmony"))
    reply = (
        "<|channel|>analysis<|message|>Weather needed.<|end|>",
        "<|start|>assistant<|channel|>commentary to=functions.get_weather<|message|>",
        "{city: Paris}",
    )
    fake_factory.enqueue(*reply)
    fake_factory.enqueue(*reply)
    body = {"model": "oss", "messages": ASK, "tools": [WEATHER_TOOL], "stream": False}
    with live.client() as client:
        whole = client.post("/api/chat", json=body)
        streamed = ndjson_lines(client.post("/api/chat", json={**body, "stream": True}))
    error = "error parsing tool call: raw='{city: Paris}', err="
    assert whole.status_code == 500
    assert whole.json()["error"].startswith(error)
    assert streamed[0]["message"]["thinking"] == "Weather needed."
    assert streamed[-1]["error"].startswith(error)


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


THINKS = ("I should", " answer.</think>", "\n\nBecause.")
HISTORY_END = "<think>earlier trace</think>Because."
NO_THINK = "<think>\n\n</think>\n\n"


def test_messages_carry_the_trace_in_a_thinking_block(
    live: LiveServer, fake_factory: FakeFactory, tmp_path: Path
) -> None:
    add_thinker(live, tmp_path)
    fake_factory.enqueue(*THINKS)
    fake_factory.enqueue(*THINKS)
    fake_factory.enqueue("Direct.")
    body = {"model": "thinker", "max_tokens": 20, "messages": ASK}
    enabled = {**body, "thinking": {"type": "enabled", "budget_tokens": 1024}}
    history = [
        *ASK,
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "earlier trace", "signature": "s"},
                {"type": "text", "text": "Because."},
            ],
        },
        {"role": "user", "content": "Sure?"},
    ]
    off = {**body, "messages": history, "thinking": {"type": "disabled"}}
    with live.client() as client:
        whole = client.post("/v1/messages", json=enabled).json()
        streamed = named_events(client.post("/v1/messages", json={**enabled, "stream": True}))
        direct = client.post("/v1/messages", json=off).json()
    assert whole["content"] == [
        {"type": "thinking", "thinking": "I should answer."},
        {"type": "text", "text": "Because."},
    ]
    assert [(name, data.get("index"), data.get("delta")) for name, data in streamed] == [
        ("message_start", None, None),
        ("ping", None, None),
        ("content_block_start", 0, None),
        ("content_block_delta", 0, {"type": "thinking_delta", "thinking": "I should"}),
        ("content_block_delta", 0, {"type": "thinking_delta", "thinking": " answer."}),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, None),
        ("content_block_delta", 1, {"type": "text_delta", "text": "Because."}),
        ("content_block_stop", 1, None),
        ("message_delta", None, {"stop_reason": "end_turn", "stop_sequence": None}),
        ("message_stop", None, None),
    ]
    assert streamed[2][1]["content_block"] == {"type": "thinking", "thinking": ""}
    assert streamed[6][1]["content_block"] == {"type": "text", "text": ""}
    assert direct["content"] == [{"type": "text", "text": "Direct."}]
    prompt = str(fake_factory.loaded[0].prompts[-1])
    assert HISTORY_END in prompt
    assert prompt.endswith(NO_THINK)


def test_the_anthropic_client_reads_the_thinking_block(
    live: LiveServer, fake_factory: FakeFactory, tmp_path: Path
) -> None:
    add_thinker(live, tmp_path)
    fake_factory.enqueue(*THINKS)
    fake_factory.enqueue(*THINKS)
    thinking: ThinkingConfigParam = {"type": "enabled", "budget_tokens": 1024}
    ask: list[MessageParam] = [{"role": "user", "content": "Why?"}]
    with anthropic.Anthropic(base_url=live.url, api_key="unused", max_retries=0) as claude:
        message = claude.messages.create(
            model="thinker", max_tokens=20, messages=ask, thinking=thinking
        )
        with claude.messages.stream(
            model="thinker", max_tokens=20, messages=ask, thinking=thinking
        ) as stream:
            kinds = [event.type for event in stream]
            final = stream.get_final_message()
    for answer in (message, final):
        first, second = answer.content
        assert isinstance(first, ThinkingBlock)
        assert isinstance(second, TextBlock)
        assert (first.thinking, second.text) == ("I should answer.", "Because.")
    assert "thinking" in kinds
    assert kinds.index("thinking") < kinds.index("text")


def test_responses_carry_the_trace_in_a_reasoning_item(
    live: LiveServer, fake_factory: FakeFactory, tmp_path: Path
) -> None:
    add_thinker(live, tmp_path)
    fake_factory.enqueue(*THINKS)
    fake_factory.enqueue(*THINKS)
    fake_factory.enqueue("Direct.")
    body = {"model": "thinker", "input": "Why?", "reasoning": {"effort": "high"}}
    history = [
        {"role": "user", "content": "Why?"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "earlier trace"},
        {"role": "assistant", "content": "Because."},
        {"role": "user", "content": "Sure?"},
    ]
    with live.client() as client:
        whole = client.post("/v1/responses", json=body).json()
        streamed = named_events(client.post("/v1/responses", json={**body, "stream": True}))
        direct = client.post(
            "/v1/responses", json={**body, "input": history, "reasoning": {"effort": "none"}}
        ).json()
        bad = client.post("/v1/responses", json={**body, "reasoning": {"effort": "huge"}})
    rid = whole["output"][0]["id"]
    reasoning = {
        "id": rid,
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "I should answer."}],
        "encrypted_content": "I should answer.",
    }
    assert rid.startswith("rs_")
    assert whole["output"][0] == reasoning
    assert [item["type"] for item in whole["output"]] == ["reasoning", "message"]
    assert whole["output"][1]["content"][0]["text"] == "Because."
    assert whole["reasoning"] == {"effort": "high"}
    names = [name for name, _ in streamed]
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    added, first, _, done, item_done, message_added = (d for _, d in streamed[2:8])
    srid = added["item"]["id"]
    assert added["item"] == {"id": srid, "type": "reasoning", "summary": []}
    assert (first["item_id"], first["output_index"], first["summary_index"]) == (srid, 0, 0)
    assert first["delta"] == "I should"
    assert (done["text"], item_done["item"]["encrypted_content"]) == ("I should answer.",) * 2
    assert message_added["output_index"] == 1
    assert streamed[9][1]["output_index"] == 1
    final = streamed[-1][1]["response"]["output"]
    assert [item["type"] for item in final] == ["reasoning", "message"]
    assert final[0] == {**reasoning, "id": srid}
    assert [item["type"] for item in direct["output"]] == ["message"]
    prompt = str(fake_factory.loaded[0].prompts[-1])
    assert HISTORY_END in prompt
    assert prompt.endswith(NO_THINK)
    assert bad.status_code == 400
    assert "invalid reasoning value" in bad.json()["error"]["message"]


def test_the_openai_client_reads_the_reasoning_item(
    live: LiveServer, fake_factory: FakeFactory, tmp_path: Path
) -> None:
    add_thinker(live, tmp_path)
    fake_factory.enqueue(*THINKS)
    fake_factory.enqueue(*THINKS)
    with openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0) as client:
        response = client.responses.create(
            model="thinker", input="Why?", reasoning={"effort": "low"}
        )
        events = list(
            client.responses.create(
                model="thinker", input="Why?", reasoning={"effort": "low"}, stream=True
            )
        )
    item = response.output[0]
    assert isinstance(item, ResponseReasoningItem)
    assert [part.text for part in item.summary] == ["I should answer."]
    assert response.output_text == "Because."
    deltas = [e.delta for e in events if isinstance(e, ResponseReasoningSummaryTextDeltaEvent)]
    assert deltas == ["I should", " answer."]
    assert isinstance(events[-1], ResponseCompletedEvent)
    assert isinstance(events[-1].response.output[0], ResponseReasoningItem)


LEVEL_TEMPLATE = (
    "[{{ if .IsThinkSet }}{{ .Think }}:{{ .ThinkLevel }}{{ else }}unset{{ end }}]"
    "{{ range .Messages }}{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}"
    "{{ .Content }}{{ end }}<think>"
)
"""Shows what the template is told about thinking, and opens the trace."""


def test_messages_effort_and_thinking_become_think_as_ollama_reads_them(
    live: LiveServer, fake_factory: FakeFactory, tmp_path: Path
) -> None:
    """Ollama's anthropic tests: `output_config.effort` is the level ("xhigh" is "high"), an
    explicit `thinking` type wins over it ("adaptive" does not), `budget_tokens` is no level."""
    gguf = make_tiny_gguf(tmp_path / "levels.gguf")
    live.services.models.create("levels", CreateSpec(from_file=gguf, template=LEVEL_TEMPLATE))
    cases: list[tuple[dict[str, object], str]] = [
        ({"output_config": {"effort": "high"}}, "[true:high]"),
        ({"output_config": {"effort": " XHigh "}}, "[true:high]"),
        ({"output_config": {"effort": "max"}}, "[true:max]"),
        ({"thinking": {"type": "disabled"}, "output_config": {"effort": "high"}}, "[false:]"),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}}, "[true:low]"),
        ({"thinking": {"type": "enabled", "budget_tokens": 99}}, "[true:medium]"),
        ({"output_config": {"effort": "none"}}, "[true:medium]"),  # not a level: the default
        ({}, "[true:medium]"),  # a thinking model thinks unless told not to
    ]
    with live.client() as client:
        for extra, _ in cases:
            fake_factory.enqueue("t</think>a")
            body = {"model": "levels", "max_tokens": 8, "messages": ASK, **extra}
            answer = client.post("/v1/messages", json=body)
            assert answer.status_code == 200, answer.text
        refused = client.post(
            "/v1/messages",
            json={
                "model": "levels",
                "max_tokens": 8,
                "messages": ASK,
                "output_config": {"effort": 3},
            },
        )
    prompts = [str(p) for p in fake_factory.loaded[0].prompts]
    assert [p.removesuffix("Why?<think>") for p in prompts] == [want for _, want in cases]
    assert refused.status_code == 400
