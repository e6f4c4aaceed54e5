"""Tool-call parsers on recorded outputs of each template family, and the streaming splitter."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ollamacli.engine.base import ToolCall
from ollamacli.engine.toolparse import ToolCallStream, ToolFamily, ToolOutput, parse_tool_calls

NAMES = ("get_weather", "get_time")
PARIS = ToolCall("get_weather", {"city": "Paris"})
TOKYO = ToolCall("get_time", {"zone": "Asia/Tokyo"})

# Outputs as the models write them (Qwen2.5 and Hermes 2 Pro through llama.cpp, Llama 3.1
# with its python tag printed, Llama 3.2 under Ollama's template, Mistral 7B v0.3, Mistral
# Small 3.2, SmolLM2-1.7B's own list form, a plain JSON model).
RECORDED: list[tuple[str, ToolFamily, str, ToolOutput]] = [
    (
        "qwen2.5",
        "hermes",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        ToolOutput("", (PARIS,)),
    ),
    (
        "qwen2.5-two-calls-and-text",
        "hermes",
        "I will check both.\n<tool_call>\n"
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n'
        '{"name": "get_time", "arguments": {"zone": "Asia/Tokyo"}}\n</tool_call>',
        ToolOutput("I will check both.", (PARIS, TOKYO)),
    ),
    (
        "hermes-2-pro-arguments-first",
        "hermes",
        '<tool_call>\n{"arguments": {"city": "Paris"}, "name": "get_weather"}\n</tool_call>',
        ToolOutput("", (PARIS,)),
    ),
    (
        "hermes-no-closing-tag",
        "hermes",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}',
        ToolOutput("", (PARIS,)),
    ),
    (
        "smollm2-list-in-tags",
        "injected",
        '<tool_call>[\n{"name": "get_weather", "arguments": {"city": "Paris"}},\n'
        '{"name": "get_time", "arguments": {"zone": "Asia/Tokyo"}}\n]</tool_call>',
        ToolOutput("", (PARIS, TOKYO)),
    ),
    (
        "llama3.1-python-tag",
        "llama3",
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}',
        ToolOutput("", (PARIS,)),
    ),
    (
        "llama3.1-two-calls",
        "llama3",
        '<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; '
        '{"name": "get_time", "parameters": {"zone": "Asia/Tokyo"}}',
        ToolOutput("", (PARIS, TOKYO)),
    ),
    (
        "llama3.2-bare-json",
        "llama3",
        '{"name": "get_weather", "parameters": {"city": "Paris"}}',
        ToolOutput("", (PARIS,)),
    ),
    (
        "mistral-v0.3",
        "mistral",
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}]',
        ToolOutput("", (PARIS,)),
    ),
    (
        "mistral-v0.3-control-token-not-printed",
        "mistral",
        ' [{"name": "get_weather", "arguments": {"city": "Paris"}}]',
        ToolOutput("", (PARIS,)),
    ),
    (
        "mistral-small-3.2-args",
        "mistral",
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]get_time[ARGS]{"zone": "Asia/Tokyo"}',
        ToolOutput("", (PARIS, TOKYO)),
    ),
    (
        "plain-json-fenced",
        "json",
        '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```',
        ToolOutput("", (PARIS,)),
    ),
    (
        "plain-json-string-arguments",
        "json",
        '{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}',
        ToolOutput("", (PARIS,)),
    ),
    (
        "openai-shaped-json",
        "json",
        '[{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]',
        ToolOutput("", (PARIS,)),
    ),
]


@pytest.mark.parametrize(
    ("family", "text", "expected"), [r[1:] for r in RECORDED], ids=[r[0] for r in RECORDED]
)
def test_recorded_outputs_parse_into_calls(family, text, expected):
    assert parse_tool_calls(text, family, NAMES) == expected


UNPARSEABLE = [
    ("cut-off-json", "hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par'),
    ("unknown-function", "injected", '<tool_call>{"name": "Paris", "arguments": {}}</tool_call>'),
    ("json-answer", "json", '{"answer": 42}'),
    ("arguments-not-an-object", "json", '{"name": "get_weather", "arguments": [1, 2]}'),
    ("prose", "llama3", "The weather in Paris is sunny."),
    ("python-call", "llama3", '<|python_tag|>brave_search.call(query="weather")'),
    ("mistral-garbage", "mistral", "[TOOL_CALLS] not json at all"),
    ("args-without-name", "mistral", '[TOOL_CALLS][ARGS]{"city": "Paris"}'),
]


@pytest.mark.parametrize(
    ("family", "text"), [u[1:] for u in UNPARSEABLE], ids=[u[0] for u in UNPARSEABLE]
)
def test_output_that_is_not_a_valid_call_stays_content(family, text):
    assert parse_tool_calls(text, family, NAMES) == ToolOutput(text)


def test_empty_call_list_in_tags_means_no_call():
    assert parse_tool_calls("<tool_call>[]</tool_call>", "injected", NAMES) == ToolOutput("")


def stream(text: str, family: ToolFamily, cuts: list[int]) -> tuple[str, ToolOutput]:
    splitter = ToolCallStream(family, NAMES)
    bounds = [0, *sorted(set(cuts)), len(text)]
    sent = "".join(splitter.push(text[a:b]) for a, b in itertools.pairwise(bounds))
    return sent, splitter.finish()


@given(data=st.data())
@pytest.mark.parametrize(
    ("family", "text", "expected"), [r[1:] for r in RECORDED], ids=[r[0] for r in RECORDED]
)
def test_streaming_in_any_pieces_finds_the_same_calls(family, text, expected, data):
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=8))
    sent, rest = stream(text, family, cuts)
    assert rest.calls == expected.calls
    assert (sent + rest.content).split() == expected.content.split()


def test_content_before_a_call_streams_at_once_and_a_partial_marker_waits():
    splitter = ToolCallStream("hermes", NAMES)
    assert splitter.push("Let me look. <tool") == "Let me look. "
    assert splitter.push('_call>{"name": "get_weather", ') == ""
    assert splitter.push('"arguments": {"city": "Paris"}}</tool_call>') == ""
    assert splitter.finish() == ToolOutput("", (PARIS,))


def test_text_that_only_looks_like_a_marker_start_is_released():
    splitter = ToolCallStream("hermes", NAMES)
    assert splitter.push("a <b") == "a <b"
    assert splitter.push(" <tool") == " "
    assert splitter.push("box>") == "<toolbox>"
    assert splitter.finish() == ToolOutput("")


def test_an_answer_starting_with_json_is_held_and_comes_back_as_content():
    splitter = ToolCallStream("injected", NAMES)
    assert splitter.push("  ") == ""
    assert splitter.push('{"answer": ') == ""
    assert splitter.push("42}") == ""
    assert splitter.finish() == ToolOutput('  {"answer": 42}')


def test_json_later_in_an_answer_streams_as_content():
    splitter = ToolCallStream("json", NAMES)
    assert splitter.push("Here: ") == "Here: "
    assert splitter.push('{"a": 1}') == '{"a": 1}'
    assert splitter.finish() == ToolOutput("")


def test_a_fenced_answer_is_held_like_json():
    splitter = ToolCallStream("json", NAMES)
    assert splitter.push("`") == ""
    assert splitter.push("``python\nprint(1)\n```") == ""
    assert splitter.finish() == ToolOutput("```python\nprint(1)\n```")
