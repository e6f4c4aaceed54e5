"""gpt-oss's harmony output read as Ollama's harmony parser reads it, on the cases of Ollama's
own tests (harmony/harmonyparser_test.go): headers, channels split across pieces, a tag that
only looks like the end, tool calls on commentary or analysis, prefills, function names."""

from __future__ import annotations

import pytest

from ollamacli.engine.base import ToolCall
from ollamacli.engine.harmony import (
    HarmonyReader,
    harmony_names,
    identifier,
    open_message,
    parse_header,
    shown_tools,
)
from ollamacli.engine.thinking import ThinkingSplit
from ollamacli.errors import EngineError

GET_WEATHER = ("assistant", "analysis", "functions.get_weather")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("assistant<|channel|>analysis", ("assistant", "analysis", "")),
        ("assistant<|channel|>analysis to=functions.get_weather", GET_WEATHER),
        ("assistant to=functions.get_weather<|channel|>analysis", GET_WEATHER),
        # the role is replaced by the recipient
        ("to=functions.get_weather<|channel|>analysis", ("tool", *GET_WEATHER[1:])),
        # an extra word after the recipient is ignored
        ("assistant to=functions.get_weather abc<|channel|>analysis", GET_WEATHER),
        (
            "assistant<|channel|>commentary to=functions.get_weather <|constrain|>json",
            ("assistant", "commentary", "functions.get_weather"),
        ),
        (
            "assistant to=functions.get_weather<|channel|>commentary <|constrain|>json",
            ("assistant", "commentary", "functions.get_weather"),
        ),
        (
            "assistant<|channel|>commentary to=functions.get_weather<|constrain|>json",
            ("assistant", "commentary", "functions.get_weather"),
        ),
        (
            "assistant to=functions.get_weather<|channel|>commentary<|constrain|>json",
            ("assistant", "commentary", "functions.get_weather"),
        ),
    ],
)
def test_headers_as_ollama_parses_them(raw, expected):
    header = parse_header(raw)
    assert (header.role, header.channel, header.recipient) == expected


def steps(reader: HarmonyReader, pieces: list[str]) -> list[ThinkingSplit]:
    return [reader.push(piece) for piece in pieces]


def test_a_channel_streamed_in_pieces():
    pieces = ["<|chan", "nel|>analysis", "<|message|>", "Thinking", "...", "<|end|>"]
    assert steps(HarmonyReader(), pieces) == [
        ThinkingSplit(),
        ThinkingSplit(),
        ThinkingSplit(),
        ThinkingSplit("Thinking"),
        ThinkingSplit("..."),
        ThinkingSplit(),
    ]


def test_a_tag_that_looks_like_the_end_but_is_not():
    reader = HarmonyReader()
    pieces = ["<|channel|>final<|message|>test<|e", "xample|>more", "<|end|>"]
    assert steps(reader, pieces) == [
        ThinkingSplit(content="test"),
        ThinkingSplit(content="<|example|>more"),
        ThinkingSplit(),
    ]


@pytest.mark.parametrize(
    "header",
    [
        "<|channel|>commentary to=functions.calc",
        " to=functions.calc<|channel|>commentary",  # recipient before the channel
        "<|channel|>analysis to=functions.calc",  # a call on the analysis channel
    ],
)
def test_a_message_to_a_function_is_a_call(header):
    reader = HarmonyReader(("calc",))
    assert steps(reader, [header + "<|message|>", '{"x": 5}', "<|end|>"]) == [
        ThinkingSplit(),
        ThinkingSplit(),
        ThinkingSplit(calls=(ToolCall("calc", {"x": 5}),)),
    ]


def test_analysis_then_a_call_ended_by_the_call_token():
    """Ollama's header-event case: the trace, then a call whose `<|call|>` was printed."""
    output = (
        "<|channel|>analysis<|message|>User asks weather in SF. We need location. Use "
        'get_current_weather with location "San Francisco, CA".<|end|><|start|>assistant'
        "<|channel|>commentary to=functions.get_current_weather <|constrain|>json<|message|>"
        '{"location":"San Francisco, CA"}<|call|>'
    )
    reader = HarmonyReader(("get_current_weather",))
    split = reader.push(output)
    assert split.thinking.startswith("User asks weather in SF.")
    assert split.calls == (ToolCall("get_current_weather", {"location": "San Francisco, CA"}),)
    assert reader.finish() == ThinkingSplit()


def test_commentary_without_a_recipient_and_unknown_channels_are_content():
    reader = HarmonyReader()
    output = (
        "<|channel|>commentary<|message|>Preamble.<|end|>"
        "<|start|>assistant<|channel|>thinking<|message|>Odd.<|end|>"
        "<|start|>assistant<|channel|>final to=functions.x<|message|>Final.<|end|>"
    )
    assert reader.push(output) == ThinkingSplit(content="Preamble.Odd.Final.")


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("<|start|>user<|message|>Q<|end|><|start|>assistant", ThinkingSplit(content="A")),
        (
            "<|start|>assistant<|channel|>final<|message|>Part",
            ThinkingSplit(content="ial answer"),
        ),
        (
            "<|start|>assistant<|channel|>analysis<|message|>So far",
            ThinkingSplit(thinking=" more"),
        ),
    ],
    ids=["generation-prompt", "prefilled-answer", "prefilled-trace"],
)
def test_a_prefill_goes_on_in_its_channel(prompt, expected):
    """Ollama's AddImplicitStartOrPrefill: a last assistant message with content continues
    on `final`, one with only thinking on `analysis`."""
    output = {"A": "<|channel|>final<|message|>A", "ial answer": "ial answer"}
    text = output.get(expected.content, " more<|end|>")
    reader = HarmonyReader(prompt=prompt)
    split = reader.push(text)
    assert ThinkingSplit(split.thinking, split.content) == expected
    assert open_message("<|start|>assistant<|channel|>final<|message|>done<|end|>") is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("get weather", "get_weather"),
        ("get-weather", "get_weather"),
        ("get.weather", "get_weather"),
        ("get weather!", "get_weather"),
        ("a🫠bc", "abc"),
        ("🫠", "unnamed"),
        ("123", "_123"),
        ("$", "$"),
        ("𝓸𝓵𝓵𝓪𝓶𝓪", "𝓸𝓵𝓵𝓪𝓶𝓪"),  # letters, though not ASCII
        ("ⓞⓛⓛⓐⓜⓐ123", "_123"),  # circled letters are symbols
    ],
)
def test_function_names_become_identifiers(name, expected):
    assert identifier(name) == expected


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["get weather", "get weather"], ["get_weather", "get_weather_2"]),
        (
            ["get weather", "get_weather", "get-weather"],
            ["get_weather", "get_weather_2", "get_weather_3"],
        ),
        (
            ["get weather", "get_weather", "get-weather", "something-different"],
            ["get_weather", "get_weather_2", "get_weather_3", "something_different"],
        ),
        (["a", "a", "b", "a", "a", "b", "a"], ["a", "a_2", "b", "a_3", "a_4", "b_2", "a_5"]),
        (
            ["browser.open", "python", "not.a.built-in.function", "browser.not_a_real_built_in"],
            ["browser.open", "python", "not_a_built_in_function", "browser_not_a_real_built_in"],
        ),
    ],
)
def test_duplicate_names_are_numbered_and_built_ins_kept(names, expected):
    assert harmony_names(names) == expected


def test_renamed_functions_are_mapped_back_in_calls():
    tools = [{"type": "function", "function": {"name": "get weather", "parameters": {}}}]
    assert shown_tools(tools)[0]["function"] == {"name": "get_weather", "parameters": {}}
    reader = HarmonyReader(("get weather",))
    split = reader.push('<|channel|>commentary to=functions.get_weather<|message|>{"a": 1}<|end|>')
    assert split.calls == (ToolCall("get weather", {"a": 1}),)


# -- arguments that are not JSON (harmony/harmonyparser.go, HarmonyMessageHandler.Add) --------


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ('{"city": "Par', "Unterminated string"),
        ("city=Paris", "Expecting value"),
        ("", "Expecting value"),
        ('["Paris"]', "not a JSON object"),
    ],
    ids=["cut-short", "not-json", "nothing", "an-array"],
)
def test_call_arguments_that_are_not_a_json_object_fail_the_request(arguments, reason):
    """Ollama fails the request ("error parsing tool call: raw=..."), it neither drops the
    call nor hands back the raw text."""
    reader = HarmonyReader(("get_weather",))
    reader.push("<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>")
    reader.push(arguments)
    with pytest.raises(EngineError, match=reason) as failed:
        reader.push("<|call|>")
    assert str(failed.value).startswith(f"error parsing tool call: raw='{arguments}', err=")


def test_a_call_cut_short_by_the_end_of_the_output_fails_too():
    reader = HarmonyReader(("get_weather",))
    reader.push('<|channel|>commentary to=functions.get_weather<|message|>{"city": ')
    with pytest.raises(EngineError, match="error parsing tool call"):
        reader.finish()


def test_calls_to_built_in_or_unoffered_tools_are_handed_back():
    reader = HarmonyReader(("get_weather",))
    split = reader.push(
        '<|channel|>analysis to=browser.search<|message|>{"query": "weather"}<|call|>'
    )
    assert split.calls == (ToolCall("browser.search", {"query": "weather"}),)
