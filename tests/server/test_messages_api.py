"""Anthropic's Messages API (`/v1/messages`) on scripted engines: shapes, event sequences,
request mapping, errors and keys; raw HTTP and the official `anthropic` client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam, ToolParam

from tests.fakes import FailingFactory, FakeFactory
from tests.server.conftest import LiveServer, named_events

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
TOOL: ToolParam = {
    "name": "get_weather",
    "description": "Get the current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
ASK: list[MessageParam] = [{"role": "user", "content": "Weather in Paris?"}]


def post(live: LiveServer, body: dict[str, Any], **headers: str) -> Any:
    with live.client(headers=headers) as client:
        return client.post("/v1/messages", json={"model": "tiny", "max_tokens": 20, **body})


@pytest.fixture
def claude(live: LiveServer) -> Iterator[anthropic.Anthropic]:
    """The official `anthropic` client, pointed at `live`."""
    with anthropic.Anthropic(base_url=live.url, api_key="unused", max_retries=0) as client:
        yield client


def test_a_message_answers_in_anthropics_shape(live: LiveServer, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue("Hi", " there")
    response = post(
        live,
        {"messages": [{"role": "user", "content": "Hello"}], "temperature": 0.3, "top_k": 5},
        **{"anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 200
    data = response.json()
    assert data["id"].startswith("msg_")
    assert {k: v for k, v in data.items() if k not in ("id", "usage")} == {
        "type": "message",
        "role": "assistant",
        "model": "tiny",
        "content": [{"type": "text", "text": "Hi there"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
    }
    assert data["usage"]["output_tokens"] == 2
    assert data["usage"]["input_tokens"] > 0
    sampling = fake_factory.loaded[0].samplings[-1]
    assert (sampling.num_predict, sampling.temperature, sampling.top_k) == (20, 0.3, 5)


def test_system_blocks_tool_use_and_tool_results_reach_the_prompt(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    fake_factory.enqueue("It is 22 degrees.")
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in "},
                {"type": "text", "text": "Paris?"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "22 degrees"}],
                },
                {"type": "text", "text": "And so?"},
            ],
        },
    ]
    system = [{"type": "text", "text": "Be brief."}, {"type": "text", "text": " Use Celsius."}]
    response = post(live, {"system": system, "messages": messages, "tools": [TOOL]})
    assert response.status_code == 200, response.text
    assert response.json()["content"] == [{"type": "text", "text": "It is 22 degrees."}]
    prompt = str(fake_factory.loaded[0].prompts[-1])
    wanted = (
        "Be brief. Use Celsius.",
        "Weather in Paris?",
        "Let me check.",
        "22 degrees",
        "And so?",
    )
    order = [prompt.index(text) for text in wanted]
    assert order == sorted(order)
    assert '"city": "Paris"' in prompt


def test_streaming_text_sends_anthropics_event_sequence(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    fake_factory.enqueue("Hi", " there")
    events = named_events(post(live, {"messages": ASK, "stream": True}))
    assert [name for name, _ in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert (start["content"], start["stop_reason"], start["usage"]["output_tokens"]) == (
        [],
        None,
        0,
    )
    assert events[2][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    deltas = [data["delta"] for name, data in events if name == "content_block_delta"]
    assert deltas == [
        {"type": "text_delta", "text": "Hi"},
        {"type": "text_delta", "text": " there"},
    ]
    assert events[5][1] == {"type": "content_block_stop", "index": 0}
    final = events[6][1]
    assert final["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert final["usage"]["output_tokens"] == 2


def test_streaming_text_then_a_tool_use(live: LiveServer, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue("Checking. ", CALL)
    events = named_events(post(live, {"messages": ASK, "tools": [TOOL], "stream": True}))
    names = [name for name, _ in events]
    assert names[2:] == [
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    block = events[5][1]
    assert block["index"] == 1
    assert block["content_block"]["type"] == "tool_use"
    assert block["content_block"]["name"] == "get_weather"
    assert block["content_block"]["input"] == {}
    assert block["content_block"]["id"].startswith("toolu_")
    delta = events[6][1]["delta"]
    assert delta["type"] == "input_json_delta"
    assert json.loads(delta["partial_json"]) == {"city": "Paris"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_tool_choice_forces_a_call(live: LiveServer, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue(CALL)
    choice = {"type": "tool", "name": "get_weather"}
    data = post(live, {"messages": ASK, "tools": [TOOL], "tool_choice": choice}).json()
    assert fake_factory.loaded[0].samplings[-1].grammar is not None
    (block,) = data["content"]
    assert {k: block[k] for k in ("type", "name", "input")} == {
        "type": "tool_use",
        "name": "get_weather",
        "input": {"city": "Paris"},
    }
    assert data["stop_reason"] == "tool_use"
    fake_factory.enqueue("fine")
    post(live, {"messages": ASK, "tools": [TOOL], "tool_choice": {"type": "none"}})
    assert '"get_weather"' not in str(fake_factory.loaded[0].prompts[-1])


@pytest.mark.parametrize(
    ("pieces", "reason", "sequence", "text"),
    [
        (["Hello", " world", "END", "more"], "stop_sequence", "END", "Hello world"),
        (["one", " two", " three"], "max_tokens", None, "one two"),
        (["done"], "end_turn", None, "done"),
    ],
    ids=["stop-sequence", "max-tokens", "end-turn"],
)
def test_stop_reasons(
    live: LiveServer,
    fake_factory: FakeFactory,
    pieces: list[str],
    reason: str,
    sequence: str | None,
    text: str,
) -> None:
    fake_factory.enqueue(*pieces)
    body = {
        "messages": ASK,
        "stop_sequences": ["END"],
        "max_tokens": 2 if reason == "max_tokens" else 9,
    }
    data = post(live, body).json()
    assert (data["stop_reason"], data["stop_sequence"]) == (reason, sequence)
    assert data["content"][0]["text"] == text
    assert fake_factory.loaded[0].samplings[-1].stop == ("END",)


@pytest.mark.parametrize(
    ("body", "status", "kind", "message"),
    [
        ({"model": "ghost"}, 404, "not_found_error", "model 'ghost:latest' not found"),
        (
            {"max_tokens": 0},
            400,
            "invalid_request_error",
            "max_tokens is required and must be positive",
        ),
        ({"messages": []}, 400, "invalid_request_error", "messages is required"),
        ({"max_tokens": "x"}, 400, "invalid_request_error", "max_tokens"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
            400,
            "invalid_request_error",
            "image content blocks are not supported",
        ),
        (
            {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
            400,
            "invalid_request_error",
            "web_search",
        ),
        ({"tool_choice": {"type": "tool"}}, 400, "invalid_request_error", "tool_choice"),
    ],
    ids=[
        "unknown-model",
        "max-tokens",
        "no-messages",
        "bad-type",
        "image",
        "server-tool",
        "choice",
    ],
)
def test_errors_use_anthropics_shape(
    live: LiveServer, body: dict[str, Any], status: int, kind: str, message: str
) -> None:
    response = post(live, {"messages": ASK, **body})
    assert response.status_code == status
    data = response.json()
    assert set(data) == {"type", "error"}
    assert data["type"] == "error"
    assert data["error"]["type"] == kind
    assert message in data["error"]["message"]


def test_an_error_after_the_stream_started_is_an_error_event(make_server) -> None:
    body = {"model": "tiny", "max_tokens": 9, "messages": ASK, "stream": True}
    with make_server(FailingFactory()) as live, live.client() as client:
        events = named_events(client.post("/v1/messages", json=body))
    assert [name for name, _ in events][-2:] == ["content_block_delta", "error"]
    assert events[-1][1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "the engine broke"},
    }


def test_x_api_key_is_honoured_like_a_bearer_key(make_server) -> None:
    body = {"model": "tiny", "max_tokens": 5, "messages": ASK}
    with make_server(FakeFactory(), api_key="s3cret") as live, live.client() as client:
        missing = client.post("/v1/messages", json=body)
        wrong = client.post("/v1/messages", json=body, headers={"x-api-key": "nope"})
        right = client.post("/v1/messages", json=body, headers={"x-api-key": "s3cret"})
        tags = client.get("/api/tags", headers={"x-api-key": "s3cret"})
        with anthropic.Anthropic(base_url=live.url, api_key="s3cret", max_retries=0) as claude:
            answer = claude.messages.create(model="tiny", max_tokens=5, messages=ASK)
        with (
            anthropic.Anthropic(base_url=live.url, api_key="bad", max_retries=0) as bad,
            pytest.raises(anthropic.AuthenticationError) as refused,
        ):
            bad.messages.create(model="tiny", max_tokens=5, messages=ASK)
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert missing.json() == {
        "type": "error",
        "error": {
            "type": "authentication_error",
            "message": "unauthorized: missing or wrong API key",
        },
    }
    assert tags.status_code == 200
    assert answer.content[0].type == "text"
    assert refused.value.status_code == 401


def test_the_anthropic_client_creates_and_streams_messages(
    claude: anthropic.Anthropic, fake_factory: FakeFactory
) -> None:
    fake_factory.enqueue("Hi", " there")
    message = claude.messages.create(
        model="tiny",
        max_tokens=10,
        system="Be nice.",
        messages=[{"role": "user", "content": "Hello"}],
    )
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Hi there"  # type: ignore[union-attr]  # a TextBlock
    assert message.stop_reason == "end_turn"
    fake_factory.enqueue("Hi", " again")
    with claude.messages.stream(
        model="tiny", max_tokens=10, messages=[{"role": "user", "content": "Hello"}]
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert texts == ["Hi", " again"]
    assert final.content[0].text == "Hi again"  # type: ignore[union-attr]  # a TextBlock
    assert final.usage.output_tokens == 2
    fake_factory.enqueue("Checking. ", CALL)
    with claude.messages.stream(
        model="tiny",
        max_tokens=50,
        messages=ASK,
        tools=[TOOL],
    ) as stream:
        called = stream.get_final_message()
    assert [block.type for block in called.content] == ["text", "tool_use"]
    assert called.content[1].input == {"city": "Paris"}  # type: ignore[union-attr]  # a ToolUseBlock
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="ghost", max_tokens=5, messages=ASK)
    assert missing.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model 'ghost:latest' not found"},
    }


def test_browsers_may_send_anthropics_headers(live: LiveServer) -> None:
    with live.client() as client:
        preflight = client.options(
            "/v1/messages",
            headers={
                "Origin": "http://localhost:3000",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key, anthropic-version",
            },
        )
    assert preflight.status_code == 204
    allowed = preflight.headers["access-control-allow-headers"]
    assert {"x-api-key", "anthropic-version"} <= {name.strip() for name in allowed.split(",")}
