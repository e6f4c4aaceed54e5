"""OpenAI's Responses API and Anthropic's Messages API through their official clients, on the
real SmolLM2 over a live server that requires an API key (OpenAI's client sends it as a
Bearer token, Anthropic's as `x-api-key`). Answers are checked by their properties: short
limits, grammar-constrained JSON, forced tool calls, stop sequences."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import jsonschema
import openai
import pytest
from anthropic.types import MessageParam, ToolParam
from openai.types.responses import FunctionToolParam, ResponseInputParam

from ollamacli.config import Settings
from ollamacli.service import build_services
from tests.server.conftest import LiveServer, serve_in_thread
from tests.test_readme import code_blocks, section

pytestmark = [pytest.mark.llama, pytest.mark.slow]

MODEL = "smollm2:135m"
KEY = "k-local-test"
CITY: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}},
    "required": ["city"],
}
WEATHER_FUNCTION: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a city",
    "parameters": CITY,
    "strict": True,
}
WEATHER_TOOL: ToolParam = {
    "name": "get_weather",
    "description": "Get the current weather for a city",
    "input_schema": CITY,
}
PIRATE = "You are a pirate on a ship at sea. " * 8 + "Answer like one, in one short sentence."
# Anthropic's client no longer takes sampling settings; the server still honours them.
GREEDY = {"temperature": 0}
ASK: list[MessageParam] = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("new-apis")
    services = build_services(Settings(data_dir=root, models_dir=root / "models", api_key=KEY))
    services.models.ensure(MODEL)
    with serve_in_thread(services) as live:
        yield live


@pytest.fixture
def oai(real: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{real.url}/v1", api_key=KEY, max_retries=0, timeout=170) as c:
        yield c


@pytest.fixture
def claude(real: LiveServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=real.url, api_key=KEY, max_retries=0, timeout=170) as c:
        yield c


def test_responses_create_with_and_without_instructions(oai: openai.OpenAI) -> None:
    plain = oai.responses.create(
        model=MODEL, input="Say hello.", max_output_tokens=8, temperature=0
    )
    instructed = oai.responses.create(
        model=MODEL,
        input="Say hello.",
        instructions=PIRATE,
        max_output_tokens=8,
        temperature=0,
    )
    for response in (plain, instructed):
        assert response.status in ("completed", "incomplete")
        assert [item.type for item in response.output] == ["message"]
        assert response.usage is not None
        assert 0 < response.usage.output_tokens <= 8
        assert response.output_text.strip()
    assert instructed.instructions is not None
    assert plain.usage is not None
    assert instructed.usage is not None
    # The long instructions replace the model's short default system prompt in the prompt.
    assert instructed.usage.input_tokens > plain.usage.input_tokens


def test_responses_stream_events_add_up_to_the_final_response(oai: openai.OpenAI) -> None:
    stream = oai.responses.create(
        model=MODEL, input="Name a colour.", max_output_tokens=8, temperature=0, stream=True
    )
    events = list(stream)
    kinds = [event.type for event in events]
    head = ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[:4] == [*head, "response.content_part.added"]
    tail = ["response.content_part.done", "response.output_item.done", "response.completed"]
    assert kinds[-4:] == ["response.output_text.done", *tail]
    assert set(kinds[4:-4]) <= {"response.output_text.delta"}
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.output_text == deltas
    with oai.responses.stream(
        model=MODEL, input="Name a colour.", max_output_tokens=8, temperature=0
    ) as helper:
        helped = "".join(e.delta for e in helper if e.type == "response.output_text.delta")
        assert helper.get_final_response().output_text == helped


def test_responses_json_schema_text_format(oai: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]},
            "sunny": {"type": "boolean"},
        },
        "required": ["city", "sunny"],
        "additionalProperties": False,
    }
    response = oai.responses.create(
        model=MODEL,
        input="Pick a city and say whether it is sunny there.",
        text={"format": {"type": "json_schema", "name": "weather", "schema": schema}},
        max_output_tokens=40,
        temperature=0,
    )
    assert response.status == "completed"
    jsonschema.validate(json.loads(response.output_text), schema)


def test_responses_forced_function_call_and_its_output(oai: openai.OpenAI) -> None:
    called = oai.responses.create(
        model=MODEL,
        input="What is the weather in Paris?",
        tools=[WEATHER_FUNCTION],
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=60,
        temperature=0,
    )
    (call,) = called.output
    assert call.type == "function_call"
    assert call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments), CITY)
    history: ResponseInputParam = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "type": "function_call",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
        },
        {"type": "function_call_output", "call_id": call.call_id, "output": "22 C, sunny"},
    ]
    answered = oai.responses.create(
        model=MODEL,
        input=history,
        tools=[WEATHER_FUNCTION],
        tool_choice="none",
        max_output_tokens=12,
        temperature=0,
    )
    assert [item.type for item in answered.output] == ["message"]
    assert answered.output_text.strip()


def test_messages_create(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model=MODEL,
        max_tokens=8,
        system="You are terse.",
        messages=[{"role": "user", "content": "Say hello."}],
        extra_body=GREEDY,
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text.strip()  # type: ignore[union-attr]  # a TextBlock
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert 0 < message.usage.output_tokens <= 8
    assert message.usage.input_tokens > 0


def test_messages_stream_text_deltas_make_the_final_message(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model=MODEL,
        max_tokens=8,
        messages=[{"role": "user", "content": "Name a colour."}],
        extra_body=GREEDY,
    ) as stream:
        kinds = []
        texts = []
        for event in stream:
            kinds.append(event.type)
            if event.type == "text":
                texts.append(event.text)
        final = stream.get_final_message()
    assert kinds[0] == "message_start"
    assert kinds[-1] == "message_stop"
    assert "content_block_start" in kinds
    assert texts
    assert final.content[0].text == "".join(texts)  # type: ignore[union-attr]  # a TextBlock
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert 0 < final.usage.output_tokens <= 8


def test_messages_forced_tool_use_and_its_result(claude: anthropic.Anthropic) -> None:
    called = claude.messages.create(
        model=MODEL,
        max_tokens=60,
        messages=ASK,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
        extra_body=GREEDY,
    )
    assert called.stop_reason == "tool_use"
    (use,) = [block for block in called.content if block.type == "tool_use"]
    assert use.name == "get_weather"
    jsonschema.validate(use.input, CITY)
    answered = claude.messages.create(
        model=MODEL,
        max_tokens=12,
        messages=[
            *ASK,
            {"role": "assistant", "content": called.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "22 C"}],
            },
        ],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "none"},
        extra_body=GREEDY,
    )
    assert [block.type for block in answered.content] == ["text"]
    assert answered.stop_reason in ("end_turn", "max_tokens")


def test_messages_stop_sequences(claude: anthropic.Anthropic) -> None:
    stops = [" ", "\n", ".", ","]
    message = claude.messages.create(
        model=MODEL,
        max_tokens=30,
        messages=[{"role": "user", "content": "Write a long sentence about the sea."}],
        stop_sequences=stops,
        extra_body=GREEDY,
    )
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence in stops
    text = "".join(block.text for block in message.content if block.type == "text")
    assert not any(stop in text for stop in stops)


def test_messages_errors_and_keys(real: LiveServer, claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="ghost", max_tokens=5, messages=ASK)
    assert missing.value.body == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "model 'ghost:latest' not found"},
    }
    with (
        anthropic.Anthropic(base_url=real.url, api_key="wrong", max_retries=0) as stranger,
        pytest.raises(anthropic.AuthenticationError) as refused,
    ):
        stranger.messages.create(model=MODEL, max_tokens=5, messages=ASK)
    assert refused.value.body == {
        "type": "error",
        "error": {
            "type": "authentication_error",
            "message": "unauthorized: missing or wrong API key",
        },
    }


README = section("OpenAI Responses and Anthropic Messages")


def readme_examples() -> list[tuple[str, list[str]]]:
    """(code, shown output lines) for each Python example of the README section."""
    fence = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
    blocks = [(m.group(1), m.group(2).strip("\n")) for m in fence.finditer(README)]
    return [
        (code, shown.splitlines())
        for (language, code), (next_language, shown) in itertools.pairwise(blocks)
        if language == "python" and next_language == "text"
    ]


def run_example(real: LiveServer, code: str, tmp_path: Path) -> list[str]:
    """Run a README example against `real` (its address and key swapped in)."""
    script = tmp_path / "example.py"
    code = code.replace("http://localhost:11434", real.url).replace('"ollamacli"', f'"{KEY}"')
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "NO_PROXY": "*", "no_proxy": "*"}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=170, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


def test_the_readme_has_one_example_per_api_family() -> None:
    codes = [code for code, _ in readme_examples()]
    assert len(codes) == 2
    assert "client.responses.create(" in codes[0]
    assert "client.messages.stream(" in codes[1]
    assert code_blocks(README, "python") == codes


def test_the_readme_responses_example_runs_as_shown(real: LiveServer, tmp_path: Path) -> None:
    code, shown = readme_examples()[0]
    status, *text = run_example(real, code, tmp_path)
    for lines in ([status, *text], shown):
        assert lines[0] in ("completed", "incomplete")
        assert "".join(lines[1:]).strip()


def test_the_readme_messages_example_runs_as_shown(real: LiveServer, tmp_path: Path) -> None:
    code, shown = readme_examples()[1]
    *text, reason = run_example(real, code, tmp_path)
    for lines in ([*text, reason], shown):
        assert lines[-1] in ("end_turn", "max_tokens")
        assert "".join(lines[:-1]).strip()
