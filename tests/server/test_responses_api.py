"""OpenAI's Responses API (`/v1/responses`) on scripted engines: shapes, event sequences,
request mapping, errors; raw HTTP and the official `openai` client."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from tests.factories import WEATHER_TOOL
from tests.fakes import FailingFactory, FakeFactory
from tests.server.conftest import LiveServer, named_events

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
FUNCTION = {"type": "function", **WEATHER_TOOL["function"]}  # the Responses API's flat tool
TEXT_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]
CALL_EVENTS = [
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
]


def post(live: LiveServer, body: dict[str, Any]) -> Any:
    with live.client() as client:
        return client.post("/v1/responses", json={"model": "tiny", **body})


def test_a_string_input_answers_with_one_message(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    fake_factory.enqueue("Hi", " there")
    response = post(live, {"input": "Hello", "max_output_tokens": 10})
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "response"
    assert data["id"].startswith("resp_")
    assert data["status"] == "completed"
    assert data["incomplete_details"] is None
    assert isinstance(data["completed_at"], int)
    (message,) = data["output"]
    assert message["id"].startswith("msg_")
    assert {k: v for k, v in message.items() if k != "id"} == {
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Hi there", "annotations": [], "logprobs": []}],
    }
    assert data["usage"]["output_tokens"] == 2
    total = data["usage"]["input_tokens"] + data["usage"]["output_tokens"]
    assert data["usage"]["total_tokens"] == total
    assert (data["temperature"], data["top_p"], data["max_output_tokens"]) == (1.0, 1.0, 10)
    assert (data["tool_choice"], data["tools"], data["text"]) == (
        "auto",
        [],
        {"format": {"type": "text"}},
    )
    sampling = fake_factory.loaded[0].samplings[-1]
    assert (sampling.temperature, sampling.num_predict) == (1.0, 10)


def test_input_items_instructions_and_function_results_reach_the_prompt(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    fake_factory.enqueue("It is 22 degrees.")
    items = [
        {"role": "developer", "content": "Answer in French."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Paris?"}]},
        {
            "type": "function_call",
            "call_id": "call_7",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_7", "output": "22 degrees"},
        {"type": "reasoning", "summary": []},
    ]
    body = {"input": items, "instructions": "Be brief.", "tools": [FUNCTION], "temperature": 0.2}
    response = post(live, body)
    assert response.status_code == 200, response.text
    assert response.json()["instructions"] == "Be brief."
    prompt = str(fake_factory.loaded[0].prompts[-1])
    order = [prompt.index(s) for s in ("Be brief.", "Answer in French.", "Paris?", "22 degrees")]
    assert order == sorted(order)
    assert '"city": "Paris"' in prompt  # the earlier call is in the history
    assert fake_factory.loaded[0].samplings[-1].temperature == 0.2


def test_streaming_text_sends_the_event_sequence_openai_expects(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    fake_factory.enqueue("Hi", " there")
    events = named_events(post(live, {"input": "Hello", "stream": True}))
    assert [name for name, _ in events] == TEXT_EVENTS
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    created, progress = events[0][1]["response"], events[1][1]["response"]
    assert created["status"] == progress["status"] == "in_progress"
    assert created["output"] == []
    added = events[2][1]
    assert added["output_index"] == 0
    assert added["item"]["status"] == "in_progress"
    assert added["item"]["content"] == []
    item_id = added["item"]["id"]
    assert [data["delta"] for name, data in events if name.endswith(".delta")] == ["Hi", " there"]
    assert all(data["item_id"] == item_id for _, data in events[3:8])
    assert events[6][1]["text"] == "Hi there"
    assert events[7][1]["part"]["text"] == "Hi there"
    assert events[8][1]["item"]["content"][0]["text"] == "Hi there"
    completed = events[-1][1]["response"]
    assert completed["status"] == "completed"
    assert completed["output"] == [events[8][1]["item"]]
    assert completed["usage"]["output_tokens"] == 2


def test_streaming_and_whole_answers_are_the_same_object(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    fake_factory.enqueue("Hi")
    fake_factory.enqueue("Hi")
    whole = post(live, {"input": "Hello"}).json()
    streamed = named_events(post(live, {"input": "Hello", "stream": True}))[-1][1]["response"]
    varying = {"id", "created_at", "completed_at"}
    assert {k for k in whole if k not in varying} == {k for k in streamed if k not in varying}
    for key in whole.keys() - varying - {"output"}:
        assert whole[key] == streamed[key], key
    assert [item["content"] for item in whole["output"]] == [
        item["content"] for item in streamed["output"]
    ]


def test_streaming_text_then_a_function_call(live: LiveServer, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue("Checking. ", CALL)
    events = named_events(post(live, {"input": "Weather?", "tools": [FUNCTION], "stream": True}))
    names = [name for name, _ in events]
    assert names == [*TEXT_EVENTS[:5], *TEXT_EVENTS[6:9], *CALL_EVENTS, "response.completed"]
    added, delta, done, finished = (data for _, data in events[8:12])
    assert added["output_index"] == 1
    assert added["item"]["arguments"] == ""
    assert added["item"]["call_id"].startswith("call_")
    assert json.loads(delta["delta"]) == json.loads(done["arguments"]) == {"city": "Paris"}
    assert finished["item"]["status"] == "completed"
    output = events[-1][1]["response"]["output"]
    assert [item["type"] for item in output] == ["message", "function_call"]
    assert output[1] == finished["item"]
    assert output[1]["call_id"] == added["item"]["call_id"]


def test_a_function_call_alone_has_no_message(live: LiveServer, fake_factory: FakeFactory) -> None:
    fake_factory.enqueue(CALL)
    data = post(live, {"input": "Weather?", "tools": [FUNCTION]}).json()
    (call,) = data["output"]
    assert {k: call[k] for k in ("type", "status", "name")} == {
        "type": "function_call",
        "status": "completed",
        "name": "get_weather",
    }
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    fake_factory.enqueue(CALL)
    events = named_events(post(live, {"input": "Weather?", "tools": [FUNCTION], "stream": True}))
    assert [name for name, _ in events] == [*TEXT_EVENTS[:2], *CALL_EVENTS, "response.completed"]


def test_options_format_and_tool_choice_reach_the_sampler(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    text = {"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}}
    fake_factory.enqueue('{"ok": true}')
    data = post(live, {"input": "x", "text": text, "top_p": 0.5, "max_output_tokens": 7}).json()
    assert data["text"] == text
    sampling = fake_factory.loaded[0].samplings[-1]
    assert (sampling.top_p, sampling.num_predict) == (0.5, 7)
    assert sampling.grammar is not None
    fake_factory.enqueue(CALL)
    choice = {"type": "function", "name": "get_weather"}
    forced = post(live, {"input": "x", "tools": [FUNCTION], "tool_choice": choice}).json()
    assert forced["tool_choice"] == choice
    assert fake_factory.loaded[0].samplings[-1].grammar is not None
    assert forced["output"][0]["type"] == "function_call"


def test_an_answer_cut_by_max_output_tokens_is_incomplete(
    live: LiveServer, fake_factory: FakeFactory
) -> None:
    fake_factory.enqueue("a", "b", "c")
    data = post(live, {"input": "x", "max_output_tokens": 2}).json()
    assert data["status"] == "incomplete"
    assert data["incomplete_details"] == {"reason": "max_output_tokens"}
    assert data["output"][0]["content"][0]["text"] == "ab"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
        ({"input": [{"type": "telepathy"}]}, "input.0"),
        ({"input": [{"role": "user", "content": [{"type": "input_file"}]}]}, "input_file"),
        ({"input": "x", "tools": [{"type": "web_search"}]}, "web_search"),
        ({"input": "x", "text": {"format": {"type": "yaml"}}}, "yaml"),
        ({"input": "x", "model": "../x"}, "invalid model name"),
    ],
    ids=["previous-response", "unknown-item", "file-input", "builtin-tool", "format", "name"],
)
def test_bad_requests_are_openai_400s(live: LiveServer, body: dict[str, Any], message: str) -> None:
    response = post(live, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert message in error["message"]


def test_an_error_after_the_stream_started_is_an_error_event(make_server) -> None:
    body = {"model": "tiny", "input": "Hi", "stream": True}
    with make_server(FailingFactory()) as live, live.client() as client:
        events = named_events(client.post("/v1/responses", json=body))
    assert [name for name, _ in events][-2:] == ["response.output_text.delta", "error"]
    error = events[-1][1]
    assert error == {
        "type": "error",
        "sequence_number": len(events) - 1,
        "code": "api_error",
        "message": "the engine broke",
        "param": None,
    }


def test_the_openai_client_creates_and_streams_responses(
    oai: openai.OpenAI, fake_factory: FakeFactory
) -> None:
    fake_factory.enqueue("Hi", " there")
    response = oai.responses.create(model="tiny", input="Hello", instructions="Be nice.")
    assert response.output_text == "Hi there"
    assert response.instructions == "Be nice."
    fake_factory.enqueue("Hi", " again")
    with oai.responses.stream(model="tiny", input="Hello") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas == ["Hi", " again"]
    assert final.output_text == "Hi again"
    fake_factory.enqueue(CALL)
    called = oai.responses.create(model="tiny", input="Weather?", tools=[FUNCTION])  # type: ignore[list-item]  # a plain dict
    (call,) = called.output
    assert call.type == "function_call"
    assert json.loads(call.arguments) == {"city": "Paris"}
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="ghost", input="x")
