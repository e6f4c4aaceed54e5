"""Reasoning traces: the `<think>` parser in every state, harmony channels, tag inference from
Go templates, the `think` value, and Ollama's RENDERER/PARSER names."""

from __future__ import annotations

import pytest

from ollamacli.engine.base import ToolCall
from ollamacli.engine.gotemplate import parse_go, thinking_tags
from ollamacli.engine.harmony import HarmonyReader, parse_header
from ollamacli.engine.reasoning import (
    HARMONY,
    TAGS,
    check_renderer_parser,
    output_reader,
    thinking_style,
)
from ollamacli.engine.thinking import (
    OutputReader,
    TagThinkingParser,
    ThinkingSplit,
    check_think,
    jinja_thinks,
    strip_thinking,
    think_enabled,
    think_level,
)
from ollamacli.errors import InvalidRequestError, ModelfileError
from tests.engine.test_tools import TEMPLATES as TEMPLATES_DIR


def feed(reader: OutputReader, pieces: list[str]) -> ThinkingSplit:
    """Everything a reader makes of the pieces, joined."""
    splits = [reader.push(piece) for piece in pieces] + [reader.finish()]
    calls = tuple(call for split in splits for call in split.calls)
    return ThinkingSplit(
        "".join(s.thinking for s in splits), "".join(s.content for s in splits), calls
    )


def chars(text: str) -> list[str]:
    return list(text)


@pytest.mark.parametrize(
    ("pieces", "opened", "expected"),
    [
        (["<think>I reason.</think>The answer."], False, ("I reason.", "The answer.")),
        (chars("<think>I reason.</think>The answer."), False, ("I reason.", "The answer.")),
        (
            ["  \n<thi", "nk>\n\n  deep", " thought</th", "ink>\n\n", "  Answer"],
            False,
            ("deep thought", "Answer"),
        ),
        (["Plain answer, no trace."], False, ("", "Plain answer, no trace.")),
        (["  indented answer"], False, ("", "  indented answer")),
        (["<thinking is fun"], False, ("", "<thinking is fun")),
        (["<th", "eorem>"], False, ("", "<theorem>")),
        (["reasoning\n</think>\n\nanswer"], True, ("reasoning\n", "answer")),
        (chars("\nreasoning</think>answer"), True, ("reasoning", "answer")),
        (
            ["still thinking when the tokens ran out </thi"],
            True,
            ("still thinking when the tokens ran out </thi", ""),
        ),
        (["<think>never closed"], False, ("never closed", "")),
        (["<think></think>"], False, ("", "")),
        (["<think>a</think>b</think>c"], False, ("a", "b</think>c")),
    ],
    ids=[
        "whole",
        "char-by-char",
        "tags-split-across-pieces",
        "no-trace",
        "no-trace-keeps-leading-blanks",
        "not-a-tag-after-all",
        "partial-tag-that-is-not-one",
        "prompt-opened-the-tag",
        "prompt-opened-char-by-char",
        "missing-close-tag-at-the-end",
        "unclosed-trace",
        "empty-trace",
        "only-the-first-close-tag-counts",
    ],
)
def test_tag_parser_splits_trace_from_answer(pieces, opened, expected):
    split = feed(TagThinkingParser(opened=opened), pieces)
    assert (split.thinking, split.content) == expected


def test_tag_parser_streams_as_soon_as_it_is_sure():
    parser = TagThinkingParser()
    assert parser.push("<think>") == ThinkingSplit()
    assert parser.push("abc <") == ThinkingSplit(thinking="abc ")  # "<" may start "</think>"
    assert parser.push("b>") == ThinkingSplit(thinking="<b>")
    assert parser.push("</think>") == ThinkingSplit()
    assert parser.push("  ") == ThinkingSplit()  # blanks after the tag are eaten
    assert parser.push(" Yes") == ThinkingSplit(content="Yes")
    assert parser.push(" and more") == ThinkingSplit(content=" and more")
    assert parser.state == "done"


def test_tag_parser_with_other_tags():
    parser = TagThinkingParser("[THINK]", "[/THINK]")
    assert feed(parser, ["[THINK]x[/THI", "NK]y"]) == ThinkingSplit("x", "y")


def test_old_traces_are_stripped_from_content():
    assert strip_thinking("<think>old</think>\n\nAnswer") == "Answer"
    assert strip_thinking("No trace here") == "No trace here"
    assert strip_thinking("<think>cut short") == ""


@pytest.mark.parametrize(
    ("value", "enabled", "level"),
    [
        (None, False, ""),
        (True, True, "medium"),
        (False, False, ""),
        ("high", True, "high"),
        ("low", True, "low"),
        ("max", True, "max"),
    ],
)
def test_think_values(value, enabled, level):
    assert check_think(value) == value
    assert (think_enabled(value), think_level(value)) == (enabled, level)


@pytest.mark.parametrize("value", ["extreme", "", "True", 1, 0.5])
def test_invalid_think_values_are_refused(value):
    with pytest.raises(InvalidRequestError, match="invalid think value"):
        check_think(value)


def test_harmony_channels_are_thinking_content_and_tool_calls():
    output = (
        "<|channel|>analysis<|message|>The user wants weather.<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
        '<|message|>{"city": "Paris"}<|end|>'
        "<|start|>assistant<|channel|>final<|message|>Checking Paris.<|end|>"
    )
    expected = ThinkingSplit(
        "The user wants weather.",
        "Checking Paris.",
        (ToolCall("get_weather", {"city": "Paris"}),),
    )
    assert feed(HarmonyReader(("get_weather",)), [output]) == expected
    assert feed(HarmonyReader(("get_weather",)), chars(output)) == expected


def test_harmony_final_without_end_and_unknown_tools():
    reader = HarmonyReader(("get_weather",))
    pieces = [
        "<|channel|>analysis<|message|>hmm<|end|>",
        "<|start|>assistant to=functions.launch_rockets<|channel|>commentary json",
        "<|message|>{}<|end|><|start|>assistant<|channel|>final<|message|>Done <|en",
    ]
    split = feed(reader, pieces)
    assert split == ThinkingSplit("hmm", "Done <|en")  # the call is not one offered


def test_harmony_streams_thinking_before_the_channel_ends():
    reader = HarmonyReader()
    assert reader.push("<|channel|>analysis<|message|>step one") == ThinkingSplit("step one")
    assert reader.push(" step two<|e") == ThinkingSplit(" step two")
    assert reader.push("nd|>") == ThinkingSplit()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("assistant<|channel|>analysis", ("assistant", "analysis", "")),
        (
            "assistant<|channel|>commentary to=functions.f <|constrain|>json",
            ("assistant", "commentary", "functions.f"),
        ),
        (
            "assistant to=functions.f<|channel|>commentary json",
            ("assistant", "commentary", "functions.f"),
        ),
        ("to=functions.f<|channel|>commentary", ("tool", "commentary", "functions.f")),
    ],
)
def test_harmony_headers(raw, expected):
    header = parse_header(raw)
    assert (header.role, header.channel, header.recipient) == expected


QWEN3 = (TEMPLATES_DIR / "qwen3.gotmpl").read_text()
DEEPSEEK_R1 = (TEMPLATES_DIR / "deepseek-r1.gotmpl").read_text()


@pytest.mark.parametrize(
    ("source", "tags"),
    [
        (QWEN3, ("<think>", "</think>")),
        (DEEPSEEK_R1, ("<think>", "</think>")),
        (
            "{{ range .Messages }}{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}"
            "{{ .Content }}{{ end }}",
            ("<think>", "</think>"),
        ),
        (
            "{{ range .Messages }}{{ if .Thinking }}[THINK]{{ .Thinking }}[/THINK]{{ end }}"
            "{{ .Content }}{{ end }}",
            ("[THINK]", "[/THINK]"),
        ),
        (
            # Ollama's heuristic: the first and last nodes of the list must be text
            "{{ range .Messages }}[THINK]{{ .Thinking }}[/THINK]{{ .Content }}{{ end }}",
            ("[THINK]", ""),
        ),
        ("{{ .Thinking }}{{ range .Messages }}{{ .Content }}{{ end }}", ("", "")),
        ("{{ range .Messages }}{{ .Content }}{{ end }}", ("", "")),
        ((TEMPLATES_DIR / "qwen2.5.gotmpl").read_text(), ("", "")),
    ],
    ids=[
        "qwen3",
        "deepseek-r1",
        "if-thinking",
        "other-tags",
        "last-node-not-text",
        "outside-messages",
        "none",
        "qwen2.5",
    ],
)
def test_thinking_tags_are_inferred_from_go_templates(source, tags):
    assert thinking_tags(parse_go(source)) == tags


def test_thinking_style_per_template_kind_and_parser():
    assert thinking_style(QWEN3, "go") == TAGS
    assert thinking_style("{{ range .Messages }}{{ .Content }}{{ end }}", "go") is None
    assert thinking_style("{% if x %}<think>{% endif %}</think>", "jinja") == TAGS
    assert thinking_style("{{ messages }}", "jinja") is None
    harmony = "<|start|>{{ m }}<|channel|>analysis<|message|>{{ t }}<|end|>"
    assert thinking_style(harmony, "jinja") == HARMONY
    assert thinking_style("{{ .Prompt }}", "go", "qwen3-thinking") == TAGS
    assert thinking_style(QWEN3, "go", "qwen3") is None  # the PARSER decides
    assert thinking_style("", "go", "harmony") == HARMONY
    assert jinja_thinks("{% set content = content.split('</think>')|last %}")
    assert not jinja_thinks("{{ reasoning_content }}{% set c = content.split('</think>') %}")


def test_output_reader_starts_inside_the_trace_when_the_prompt_opened_it():
    reader = output_reader(TAGS, "<|im_start|>assistant\n<think>\n")
    assert feed(reader, ["x</think>y"]) == ThinkingSplit("x", "y")
    reader = output_reader(TAGS, "<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert feed(reader, ["y"]) == ThinkingSplit("", "y")


def test_renderer_and_parser_names():
    check_renderer_parser("qwen3.5", "qwen3.5")
    check_renderer_parser(None, "harmony")
    with pytest.raises(ModelfileError, match='unknown RENDERER "qwen9"') as renderer:
        check_renderer_parser("qwen9", None)
    assert renderer.value.hint is not None
    assert "qwen3.5" in renderer.value.hint
    with pytest.raises(ModelfileError, match='unknown PARSER "nope"'):
        check_renderer_parser(None, "nope", source="library/x:latest")
