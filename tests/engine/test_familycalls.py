# ruff: noqa: RUF001  (DeepSeek's markers are spelled with full-width bars)
"""Tool calls of Ollama's built-in parser families (qwen3-coder / qwen3.5 XML calls, DeepSeek
V3.1 and Cogito markers), on the cases of Ollama's own parser tests (model/parsers/*_test.go):
streamed pieces, tags split over pieces, blanks around calls, typed values."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from ollamacli.engine.base import ToolCall
from ollamacli.engine.familycalls import (
    CallStream,
    DeepSeekCallStream,
    QwenCallStream,
    call_stream,
    parse_cogito_call,
    parse_deepseek_call,
    parse_qwen_call,
    parse_value,
)
from ollamacli.engine.reasoning import PARSERS, output_reader

CALLS_BEGIN, CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CALL_BEGIN, CALL_END, SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
OUT_BEGIN, OUT_END = "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>"
OUTS_BEGIN, OUTS_END = "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>"

SF = (
    "<function=get_current_temperature>\n<parameter=location>\nSan Francisco\n</parameter>\n"
    "<parameter=unit>\ncelsius\n</parameter>\n</function>"
)


def qwen(body: str) -> str:
    return f"<tool_call>{body}</tool_call>"


def xml_call(name: str, **params: str) -> str:
    inner = "".join(f"<parameter={k}>{v}</parameter>" for k, v in params.items())
    return f"<function={name}>{inner}</function>"


def run(stream: CallStream, pieces: Sequence[str]):
    """Each piece's content, then the content and all calls including what `finish` gives."""
    contents: list[str] = []
    calls: list[ToolCall] = []
    for piece in pieces:
        out = stream.feed(piece)
        contents.append(out.content)
        calls.extend(out.calls)
    rest = stream.finish()
    calls.extend(rest.calls)
    return contents, "".join(contents) + rest.content, calls


# -- qwen3-coder: the stream -------------------------------------------------------------


@pytest.mark.parametrize(
    ("pieces", "steps"),
    [
        (["hi", " there"], ["hi", " there"]),  # word by word
        (["hi there<tool_call>"], ["hi there"]),  # text before a call
        (["abc\n<tool_call" + ">"], ["abc"]),  # blanks before a call are dropped
        (["abc\n<tool_call", " fakeout"], ["abc", "\n<tool_call fakeout"]),  # not a tag
        (["a", "\n", "b"], ["a", "", "\nb"]),  # a trailing blank waits for what follows
        (["مرحبا", " \n", "世界"], ["مرحبا", "", " \n世界"]),
        (["Hello\u00a0", "world"], ["Hello", "\u00a0world"]),  # any Unicode blank
        (["Hello\u3000<tool", "fakeout>abc"], ["Hello", "\u3000<toolfakeout>abc"]),
        (["测试🎯 <to"], ["测试🎯"]),
        (["✅"], ["✅"]),
    ],
)
def test_qwen_stream_holds_back_blanks_and_partial_tags(pieces, steps):
    contents, _, calls = run(QwenCallStream(), pieces)
    assert contents == steps
    assert calls == []


def test_qwen_calls_between_text_in_one_piece():
    first, second = xml_call("f", a="1"), xml_call("g", b="2")
    text = f"before1{qwen(first)}after1{qwen(second)}after2"
    contents, _, calls = run(QwenCallStream(), [text])
    assert contents == ["before1after1after2"]
    assert calls == [ToolCall("f", {"a": "1"}), ToolCall("g", {"b": "2"})]


def test_qwen_tags_split_character_by_character():
    text = "\n" + qwen(xml_call("abc", x="1")) + "def"
    contents, whole, calls = run(QwenCallStream(), list(text))
    assert whole == "def"  # the blank before the call is dropped
    assert all(c == "" for c in contents[:-3])  # nothing leaks while the call is open
    assert calls == [ToolCall("abc", {"x": "1"})]


def test_qwen_tags_split_over_pieces_and_calls_indexed_across_pieces():
    pieces = [
        "before<tool",
        "_call>" + xml_call("first", a="1") + "</tool",
        "_call>af",
        "ter<tool_call><function=second>",
        "<parameter=b>2</parameter></function></tool_call>\n" + qwen(xml_call("third", c="3")),
    ]
    stream = QwenCallStream()
    outs = [stream.feed(p) for p in pieces]
    assert [o.content for o in outs] == ["before", "", "af", "ter", ""]
    assert [[c.name for c in o.calls] for o in outs] == [[], [], ["first"], [], ["second", "third"]]


def test_qwen_unicode_around_calls():
    _, whole, calls = run(QwenCallStream(), [f"你好 🌍{qwen(xml_call('t'))}مرحبا"])
    assert (whole, calls) == ("你好 🌍مرحبا", [ToolCall("t", {})])
    _, whole, calls = run(QwenCallStream(), [f"{qwen(xml_call('t'))}完成 ✅"])
    assert whole == "完成 ✅"


def test_a_qwen_block_that_is_not_a_call_is_content():
    _, whole, calls = run(QwenCallStream(), ["see <tool_call>abc</tool_call> here"])
    assert (whole, calls) == ("see<tool_call>abc</tool_call>here", [])


@pytest.mark.parametrize(
    "pieces",
    [
        ["Before<tool_call><function=get_weather>"],
        ["Before", " <tool_", "call>\n<function=get_weather>\n<parameter=city>\nPar"],
    ],
    ids=["whole", "streamed"],
)
def test_a_qwen_call_cut_short_is_dropped_as_ollama_drops_it(pieces):
    """Ollama's "truncated tool call" case (model/parsers/qwen38_test.go): the text before
    stays, the unfinished call is neither a call nor content."""
    _, whole, calls = run(QwenCallStream(), pieces)
    assert (whole, calls) == ("Before", [])


# -- qwen3-coder: one call --------------------------------------------------------------


def tool(name: str, **properties: object) -> dict[str, object]:
    return {
        "type": "function",
        "function": {"name": name, "parameters": {"type": "object", "properties": properties}},
    }


@pytest.mark.parametrize(
    ("raw", "tools", "expected"),
    [
        (
            SF,
            [],
            ToolCall("get_current_temperature", {"location": "San Francisco", "unit": "celsius"}),
        ),
        (
            "<function=get current temperature>\n<parameter=location with spaces>\nSan Francisco\n"
            "</parameter>\n</function>",
            [],
            ToolCall("get current temperature", {"location with spaces": "San Francisco"}),
        ),
        (
            '<function="get current temperature">\n<parameter="unit with spaces">\n"celsius"\n'
            "</parameter>\n</function>",
            [],
            ToolCall('"get current temperature"', {'"unit with spaces"': '"celsius"'}),
        ),
        (
            "<function=calculate>\n<parameter=x>\n3.14\n</parameter>\n<parameter=y>\n42\n"
            "</parameter>\n<parameter=enabled>\ntrue\n</parameter>\n<parameter=items>\n"
            '["a", "b", "c"]\n</parameter>\n</function>',
            [
                tool(
                    "calculate",
                    x={"type": "number"},
                    y={"type": "integer"},
                    enabled={"type": "boolean"},
                    items={"type": "array"},
                )
            ],
            ToolCall("calculate", {"x": 3.14, "y": 42, "enabled": True, "items": ["a", "b", "c"]}),
        ),
        (
            '<function=exec>\n<parameter=command>\nls && echo "a > b and a < b"\n</parameter>\n'
            "</function>",
            [],
            ToolCall("exec", {"command": 'ls && echo "a > b and a < b"'}),
        ),
        (
            "<function=获取天气>\n<parameter=城市>\n北京\n</parameter>\n<parameter=message>\n"
            "Hello! 你好! 🌟 مرحبا\n</parameter>\n</function>",
            [],
            ToolCall("获取天气", {"城市": "北京", "message": "Hello! 你好! 🌟 مرحبا"}),
        ),
        (  # anyOf joins the types
            "<function=f>\n<parameter=n>\n7\n</parameter>\n</function>",
            [tool("f", n={"anyOf": [{"type": "integer"}, {"type": "null"}]})],
            ToolCall("f", {"n": 7}),
        ),
        (  # another function's schema does not apply
            "<function=f>\n<parameter=n>\n7\n</parameter>\n</function>",
            [tool("g", n={"type": "integer"})],
            ToolCall("f", {"n": "7"}),
        ),
    ],
)
def test_parse_qwen_call(raw, tools, expected):
    assert parse_qwen_call(raw, tools) == expected


@pytest.mark.parametrize(
    ("raw", "types", "expected"),
    [
        ("some-string", (), "some-string"),
        ("\nsome-string\n", (), "some-string"),
        ("\n\nsome-string\n\n", (), "\nsome-string\n"),
        (" \nsome-string\n ", (), " \nsome-string\n "),
        ("123", ("number",), 123),
        ("42", ("integer",), 42),
        ("-100", ("integer",), -100),
        ("007", ("integer",), 7),
        ("2147483648", ("integer",), 2147483648),
        ("3.14", ("number",), 3.14),
        ("-273.15", ("number",), -273.15),
        ("100.0", ("number",), 100),
        ("1.23e5", ("number",), 123000),
        ("1.5e-3", ("number",), 0.0015),
        ("12345", ("string",), "12345"),
        ("", ("string",), ""),
        ("True", ("boolean",), True),
        ("FALSE", ("boolean",), False),
        ("null", ("string",), None),
        ("NULL", ("integer",), None),
        ('["string", 123, true, null]', ("array",), ["string", 123, True, None]),
        ("[]", ("array",), []),
        ('{"outer": {"inner": "value"}}', ("object",), {"outer": {"inner": "value"}}),
        ("not-a-number", ("integer",), "not-a-number"),
        ("3.14.159", ("number",), "3.14.159"),
        ("yes", ("boolean",), False),
        ("[1, 2, unclosed", ("array",), "[1, 2, unclosed"),
        ('{"key": unclosed', ("object",), '{"key": unclosed'),
        ('{"this": "is"}', ("string",), '{"this": "is"}'),
        ("   ", ("string",), "   "),
        ("42.5", ("string", "number"), 42.5),
        ("hello", ("string", "number"), "hello"),
        ("null", ("integer", "null"), None),
        ("yes", ("boolean", "string"), "yes"),
        ("false", ("string", "boolean"), False),
        ("42", ("number", "integer"), 42),
        ("42.5", ("integer", "number"), 42.5),
        ("[1, 2, 3]", ("object", "array"), [1, 2, 3]),
        ('{"key": "value"}', ("array", "object"), {"key": "value"}),
        ("123", ("string", "integer"), 123),
        ("Error: could not load data", ("array", "string"), "Error: could not load data"),
    ],
)
def test_values_are_typed_by_the_schema_as_ollama_types_them(raw, types, expected):
    value = parse_value(raw, types)
    assert value == expected
    assert type(value) is type(expected)


# -- DeepSeek V3.1 --------------------------------------------------------------------------


def ds_call(name: str, args: str) -> str:
    return f"{CALL_BEGIN}{name}{SEP}{args}{CALL_END}"


PARIS = ds_call("get_weather", '{"location":"Paris"}')
LONDON = ds_call("get_weather", '{"location":"London"}')


@pytest.mark.parametrize(
    ("text", "content", "calls"),
    [
        ("Hello, how are you?", "Hello, how are you?", []),
        (
            f"I'll check the weather.{CALLS_BEGIN}{PARIS}{CALLS_END}",
            "I'll check the weather.",
            [ToolCall("get_weather", {"location": "Paris"})],
        ),
        (
            f"Both.{CALLS_BEGIN}{PARIS}{LONDON}{CALLS_END}",
            "Both.",
            [
                ToolCall("get_weather", {"location": "Paris"}),
                ToolCall("get_weather", {"location": "London"}),
            ],
        ),
        (
            f"Here's the weather: {OUT_BEGIN}Temperature: 22°C, Sunny{OUT_END} Hope that helps!",
            "Here's the weather: Temperature: 22°C, Sunny Hope that helps!",
            [],
        ),
        (
            f"Results: {OUT_BEGIN}Paris: 22°C{OUT_END} and {OUT_BEGIN}London: 18°C{OUT_END}",
            "Results: Paris: 22°C and London: 18°C",
            [],
        ),
        (
            f"Checking status: {OUT_BEGIN}{OUT_END} No output received.",
            "Checking status:  No output received.",
            [],
        ),
        (
            f"Data.{CALLS_BEGIN}"
            + ds_call("process", '{"items":["a","b"],"config":{"enabled":true,"t":0.95}}')
            + CALLS_END,
            "Data.",
            [ToolCall("process", {"items": ["a", "b"], "config": {"enabled": True, "t": 0.95}})],
        ),
        (
            f"I'll help you.{CALLS_BEGIN}{PARIS}{CALLS_END}完成 ✅",
            "I'll help you.完成 ✅",
            [ToolCall("get_weather", {"location": "Paris"})],
        ),
        (f"Ping.{CALLS_BEGIN}{ds_call('ping', '{}')}{CALLS_END}", "Ping.", [ToolCall("ping", {})]),
        (  # a call without a separator, or with bad JSON, is dropped (as Ollama)
            f"Testing.{CALLS_BEGIN}{CALL_BEGIN}bad_tool{{}}{CALL_END}{CALLS_END}",
            "Testing.",
            [],
        ),
        (f"Testing.{CALLS_BEGIN}{ds_call('bad', '{invalid json}')}{CALLS_END}", "Testing.", []),
        ("Content with partial <｜tool▁calls▁", "Content with partial <｜tool▁calls▁", []),
        ("Line 1\n\nLine 3\t\tTabbed", "Line 1\n\nLine 3\t\tTabbed", []),
        (  # text between two groups of calls is kept (Ollama loses it)
            f"First.{CALLS_BEGIN}{ds_call('t1', '{}')}{CALLS_END}Second.{CALLS_BEGIN}"
            f"{ds_call('t2', '{}')}{CALLS_END}",
            "First.Second.",
            [ToolCall("t1", {}), ToolCall("t2", {})],
        ),
    ],
)
def test_deepseek_calls_and_outputs(text, content, calls):
    _, whole, found = run(DeepSeekCallStream(), [text])
    assert (whole, found) == (content, calls)


@pytest.mark.parametrize(
    ("pieces", "content", "calls"),
    [
        (
            [
                "I'll check weather.",
                CALLS_BEGIN,
                f"{CALL_BEGIN}get_weather",
                f'{SEP}{{"location":"Paris"}}',
                f"{CALL_END}{CALLS_END}",
            ],
            "I'll check weather.",
            [ToolCall("get_weather", {"location": "Paris"})],
        ),
        (
            ["Weather info: ", OUT_BEGIN, "25°C, Sunny", OUT_END, " Enjoy!"],
            "Weather info: 25°C, Sunny Enjoy!",
            [],
        ),
        (
            [
                "Content before ",
                f"{CALLS_BEGIN}{CALL_BEGIN}test",
                f"{SEP}{{}}",
                f"{CALL_END}{CALLS_END}",
                " after",
            ],
            "Content before  after",
            [ToolCall("test", {})],
        ),
        (
            [
                "Processing.",
                f'{CALLS_BEGIN}{CALL_BEGIN}calc{SEP}{{"x":',
                '42,"y":',
                f"24}}{CALL_END}{CALLS_END}",
            ],
            "Processing.",
            [ToolCall("calc", {"x": 42, "y": 24})],
        ),
        (  # markers split inside (our engine may print a marker in pieces)
            [
                "Go.<｜tool▁",
                "calls▁begin｜><｜tool▁call",
                "▁begin｜>f<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls",
                "▁end｜>done",
            ],
            "Go.done",
            [ToolCall("f", {})],
        ),
    ],
)
def test_deepseek_streamed(pieces, content, calls):
    contents, whole, found = run(DeepSeekCallStream(), pieces)
    assert (whole, found) == (content, calls)
    assert all("｜" not in piece for piece in contents)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            'get_weather<｜tool▁sep｜>{"location":"Paris"}',
            ToolCall("get_weather", {"location": "Paris"}),
        ),
        ("ping<｜tool▁sep｜>{}", ToolCall("ping", {})),
        ('获取天气<｜tool▁sep｜>{"n":42,"f":3.5}', ToolCall("获取天气", {"n": 42, "f": 3.5})),
        ('<｜tool▁sep｜>{"arg":"value"}', ToolCall("", {"arg": "value"})),
        ('bad_tool{"arg":"value"}', None),
        ("bad<｜tool▁sep｜>{invalid json}", None),
        ("tool_name<｜tool▁sep｜>", None),
    ],
)
def test_parse_deepseek_call(body, expected):
    assert parse_deepseek_call(body) == expected


# -- Cogito --------------------------------------------------------------------------------


def cogito_call(name: str, args: str) -> str:
    return f"{CALL_BEGIN}function{SEP}{name}\n```json\n{args}\n```{CALL_END}"


def test_cogito_calls_outputs_and_split_markers():
    paris = cogito_call("get_weather", '{"location":"Paris"}')
    london = cogito_call("get_weather", '{"location":"London"}')
    text = f"{CALLS_BEGIN}{paris}\n{london}{CALLS_END}"
    _, whole, calls = run(DeepSeekCallStream(cogito=True), [text])
    assert whole == ""
    assert calls == [
        ToolCall("get_weather", {"location": "Paris"}),
        ToolCall("get_weather", {"location": "London"}),
    ]
    outputs = f'{OUTS_BEGIN}{OUT_BEGIN}{{"temperature": 22}}{OUT_END}{OUTS_END}'
    assert run(DeepSeekCallStream(cogito=True), [outputs])[1] == ""  # outputs are dropped
    pieces = [
        "Content before",
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>test\n```json\n{}\n```",
        "<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    ]
    assert run(DeepSeekCallStream(cogito=True), pieces)[1:] == (
        "Content before",
        [ToolCall("test", {})],
    )
    assert parse_cogito_call("function<｜tool▁sep｜>f\n```json\n{}") is None
    assert parse_cogito_call('function<｜tool▁sep｜>f {"a": 1}') is None


# -- after the trace -----------------------------------------------------------------------


def test_qwen35_trace_ends_at_a_tool_call_without_a_closing_tag():
    """Ollama's qwen3.5 parser: a model that goes from its trace straight into a call."""
    style = PARSERS["qwen3.5"]
    assert style is not None
    reader = output_reader(style, "<|im_start|>assistant\n<think>\n")
    stream = call_stream("qwen3.5", [])
    assert stream is not None
    first = reader.push("I need the weather.\n<tool")
    second = reader.push("_call>\n" + xml_call("get_weather", city="\nParis\n") + "\n</tool_call>")
    # "<tool" waits, and the blanks before it are not part of the trace
    assert (first.thinking, first.content) == ("I need the weather.", "")
    assert second.thinking == ""
    found = stream.feed(second.content)
    assert found.calls == (ToolCall("get_weather", {"city": "Paris"}),)
    assert (found.content, stream.finish().content) == ("", "")


def test_only_the_family_parser_names_read_family_calls():
    assert isinstance(call_stream("qwen3-coder", []), QwenCallStream)
    assert isinstance(call_stream("qwen3-thinking", []), QwenCallStream)
    assert isinstance(call_stream("cogito", []), DeepSeekCallStream)
    assert call_stream("olmo3-think", []) is None
    assert call_stream(None, []) is None


# -- qwen3 and qwen3-thinking: JSON in the blocks (qwen3_test.go) ---------------------------


def json_call(name: str, **arguments: str) -> str:
    return qwen(json.dumps({"name": name, "arguments": arguments}))


@pytest.mark.parametrize(
    ("pieces", "content", "names"),
    [
        ([json_call("get_weather", location="San Francisco", unit="celsius")], "", ["get_weather"]),
        (
            [
                f"{json_call('first', a='1')}\n{json_call('second', b='2')}\n{json_call('third', c='3')}"
            ],
            "",
            ["first", "second", "third"],
        ),
        (
            [
                json_call("first", a="1") + '<tool_call>{"name":"second","argu',
                'ments":{"b":"2"}}</tool_call>',
            ],
            "",
            ["first", "second"],
        ),
        (["Sure.\n" + json_call("f") + "\nDone."], "Sure.Done.", ["f"]),
        # blanks after a call go only when they come in its piece (as in Ollama)
        (list("Sure.\n" + json_call("f") + "\nDone."), "Sure.\nDone.", ["f"]),
        (['<tool_call>{"name": ""}</tool_call>'], '<tool_call>{"name": ""}</tool_call>', []),
        (["<tool_call>not json</tool_call>"], "<tool_call>not json</tool_call>", []),
    ],
    ids=["one", "three", "streamed", "text-around", "char-by-char", "empty-name", "not-json"],
)
def test_qwen3_json_calls(pieces, content, names):
    """Read as each block closes, whether or not tools were offered; unlike Ollama, which
    fails the request, a block that is not a call is content."""
    stream = call_stream("qwen3", [])
    assert stream is not None
    _, whole, calls = run(stream, pieces)
    assert (whole, [c.name for c in calls]) == (content, names)


def test_qwen3_thinking_trace_ends_at_a_call():
    """qwen3_test.go: a call written before `</think>` ends the trace and is read."""
    style = PARSERS["qwen3-thinking"]
    assert style is not None
    reader, stream = output_reader(style, "<think>\n"), call_stream("qwen3-thinking", [])
    assert stream is not None
    pieces = [
        "Let me think<tool_ca",
        'll>{"name":"get_weather","arguments":{"location":"SF"}}</tool_call>',
    ]
    splits = [reader.push(p) for p in pieces] + [reader.finish()]
    assert "".join(s.thinking for s in splits) == "Let me think"
    _, whole, calls = run(stream, [s.content for s in splits])
    assert (whole, calls) == ("", [ToolCall("get_weather", {"location": "SF"})])


QWEN35_REPLY = """<think>
Need weather and UV for Montréal.
</think>

I'll check both.

<tool_call>
<function=get_weather>
<parameter=city>
Montréal
</parameter>
</function>
</tool_call>
<tool_call>
<function=set_uv_threshold>
<parameter=index>
5
</parameter>
</function>
</tool_call>"""
"""A qwen3.5 reply that writes `<think>` although the prompt opened it (qwen38_test.go)."""


def read_qwen35(pieces: Sequence[str], tools: Sequence[dict[str, object]] = ()):
    """Trace, answer and calls of a qwen3.5 reply, read as the chat service reads it."""
    style = PARSERS["qwen3.5"]
    assert style is not None
    reader = output_reader(style, "<|im_start|>assistant\n<think>\n")
    stream = call_stream("qwen3.5", tools)
    assert stream is not None
    thinking, content = "", ""
    calls: list[ToolCall] = []
    for split in [*(reader.push(p) for p in pieces), reader.finish()]:
        thinking += split.thinking
        found = stream.feed(split.content)
        content, calls = content + found.content, [*calls, *found.calls]
    rest = stream.finish()
    return thinking, content + rest.content, [*calls, *rest.calls]


def test_qwen35_reply_read_the_same_at_every_split():
    """Ollama's reference continuation, cut in two at every point and fed a character at a
    time: the leading `<think>` is skipped, the blanks around the trace and before the calls
    go, and both calls are read with typed arguments."""
    tools = [
        tool("get_weather", city={"type": "string"}),
        tool("set_uv_threshold", index={"type": "integer"}),
    ]
    expected = (
        "Need weather and UV for Montréal.",
        "I'll check both.",
        [ToolCall("get_weather", {"city": "Montréal"}), ToolCall("set_uv_threshold", {"index": 5})],
    )
    for cut in range(len(QWEN35_REPLY) + 1):
        assert read_qwen35([QWEN35_REPLY[:cut], QWEN35_REPLY[cut:]], tools) == expected, cut
    assert read_qwen35(list(QWEN35_REPLY), tools) == expected


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            "Plan</think>ordinary <tool_calling> marker.",
            ("Plan", "ordinary <tool_calling> marker.", []),
        ),
        ("Plan</think>Before<tool_call><function=get_weather>", ("Plan", "Before", [])),
        (
            "Plan</think>I'll look.\n<think>again?</think>" + qwen(xml_call("t")),
            ("Plan", "I'll look.\n<think>again?</think>", [ToolCall("t", {})]),
        ),
        (
            "<think>\nNeed weather lookup<tool_call><function=t></function></tool_call>",
            ("Need weather lookup", "", [ToolCall("t", {})]),
        ),
    ],
    ids=["control-like-text", "truncated-call", "think-reopened-after-the-trace", "call-in-trace"],
)
def test_qwen35_replies_as_ollama_reads_them(reply, expected):
    """qwen38_test.go's malformed cases, and a `<think>` the model opens again after its trace
    closed: from then on everything is the answer, tags included, as in Ollama."""
    assert read_qwen35([reply]) == expected
