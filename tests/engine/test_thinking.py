"""Reasoning traces: the `<think>` parser in every state, harmony channels, tag inference from
Go templates, the `think` value, and Ollama's RENDERER/PARSER names."""

from __future__ import annotations

import pytest

from ollamacli.engine.base import ToolCall
from ollamacli.engine.gotemplate import parse_go, thinking_tags
from ollamacli.engine.harmony import HarmonyReader, parse_header
from ollamacli.engine.reasoning import (
    HARMONY,
    PARSERS,
    TAGS,
    ParserInit,
    check_renderer_parser,
    output_reader,
    thinking_style,
)
from ollamacli.engine.thinking import (
    FamilyTraceParser,
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


def test_harmony_final_without_end_and_a_call_to_a_function_not_offered():
    reader = HarmonyReader(("get_weather",))
    pieces = [
        "<|channel|>analysis<|message|>hmm<|end|>",
        "<|start|>assistant to=functions.launch_rockets<|channel|>commentary json",
        "<|message|>{}<|end|><|start|>assistant<|channel|>final<|message|>Done <|en",
    ]
    split = feed(reader, pieces)
    # Ollama's harmony parser hands back any call the model makes, offered or not.
    assert split == ThinkingSplit("hmm", "Done <|en", (ToolCall("launch_rockets", {}),))


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
    qwen3 = thinking_style("{{ .Prompt }}", "go", "qwen3-thinking")
    assert qwen3 is not None
    assert (qwen3.kind, qwen3.breaks) == ("tags", ("<tool_call>",))
    assert qwen3.family is not None  # read as Ollama's own qwen3 parser reads it
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


# -- the families' own parsers (Ollama's model/parsers/) ---------------------------------------


def family(kind: str = "plain", *, inside: bool = True) -> FamilyTraceParser:
    """A family parser as qwen3.5 and qwen3-thinking use it ("qwen"), or as the others do."""
    if kind == "qwen":
        return FamilyTraceParser(inside=inside, lead_tag=True, breaks=("<tool_call>",))
    return FamilyTraceParser(inside=inside)


CALL = '<tool_call>{"name": "get_weather", "arguments": {"location": "SF"}}</tool_call>'


@pytest.mark.parametrize(
    ("kind", "pieces", "expected"),
    [
        # the cases of qwen35_test.go and qwen3_test.go:
        ("qwen", ["Let me think...</think>Answer."], ("Let me think...", "Answer.")),
        ("qwen", ["<think>\nLet me think...</think>Answer."], ("Let me think...", "Answer.")),
        ("qwen", ["<thi", "nk>Let me think...</think>Answer."], ("Let me think...", "Answer.")),
        ("qwen", [" \n", "<think>", "\n", "\nstep</think>A"], ("step", "A")),
        ("qwen", ["</think>The final answer."], ("", "The final answer.")),
        (
            "qwen",
            ["Reasoning text</thi", "nk>The final answer."],
            ("Reasoning text", "The final answer."),
        ),
        (
            "qwen",
            ["Reasoning</think>", "\n \t", "The final answer."],
            ("Reasoning", "The final answer."),
        ),
        ("qwen", ["Reasoning that never closes"], ("Reasoning that never closes", "")),
        ("qwen", ["<think>a <think>b</think>c"], ("a <think>b", "c")),
        ("qwen", ["a</think>b <think>c</think>d"], ("a", "b <think>c</think>d")),
        ("qwen", ["a</think>", "<think>", "c</think>d"], ("a", "<think>c</think>d")),
        ("qwen", ["\nkept</think>x"], ("\nkept", "x")),
        ("qwen", ["Let me think" + CALL], ("Let me think", CALL)),
        ("qwen", ["Let me think<tool_ca", CALL[len("<tool_ca") :]], ("Let me think", CALL)),
        (
            "qwen",
            ["Plan</think>ordinary <tool_calling> marker."],
            ("Plan", "ordinary <tool_calling> marker."),
        ),
        # the cases of deepseek3_test.go and cogito_test.go:
        (
            "plain",
            ["I need to ", "think about this", "...</think>", "The answer is 42."],
            ("I need to think about this...", "The answer is 42."),
        ),
        (
            "plain",
            ["Let me think:\n- Point 1\n- Point 2</think>\n\nHere's my answer."],
            ("Let me think:\n- Point 1\n- Point 2", "Here's my answer."),
        ),
        (
            "plain",
            ["Outer thinking <think>inner</think> content</think>Final content"],
            ("Outer thinking <think>inner", "content</think>Final content"),
        ),
        (
            "plain",
            ["First thought</think>Second thought</think>Final content"],
            ("First thought", "Second thought</think>Final content"),
        ),
        ("plain", ["</think>Just content"], ("", "Just content")),
        (
            "plain",
            ["Thinking content", "</th", "ink>", "Regular content"],
            ("Thinking content", "Regular content"),
        ),
        ("plain", ["Only thinking</think>"], ("Only thinking", "")),
        ("plain", ["<think>x</think>y"], ("<think>x", "y")),  # no leading tag is skipped
        # the cases of olmo3_think_test.go:
        (
            "plain",
            ["  Some thinking  </think>  Content here  "],
            ("  Some thinking", "Content here  "),
        ),
        ("plain", ["Yes, that works.\n\n</think>\n\nHi! 😊"], ("Yes, that works.", "Hi! 😊")),
        ("plain", ["Thinking<", "/think>", "Answer"], ("Thinking", "Answer")),
    ],
)
def test_family_parser_reads_the_trace_as_ollamas_parsers(kind, pieces, expected):
    split = feed(family(kind), pieces)
    assert (split.thinking, split.content) == expected
    joined = feed(family(kind), ["".join(pieces)])
    assert (joined.thinking, joined.content) == expected
    by_char = feed(family(kind), chars("".join(pieces)))
    assert (by_char.thinking, by_char.content) == expected


def test_family_parser_streams_as_soon_as_it_is_sure():
    """Ollama's "fakeout" case: a partial `<tool_call>` that turns out to be trace text."""
    parser = family("qwen")
    assert parser.push("Need weather lookup<tool_c") == ThinkingSplit("Need weather lookup")
    assert parser.push("</thi") == ThinkingSplit("<tool_c")
    assert parser.push("nk>") == ThinkingSplit()
    assert parser.push("\n\n") == ThinkingSplit()
    assert parser.push("Yes \n") == ThinkingSplit(content="Yes \n")
    assert parser.finish() == ThinkingSplit()
    held = FamilyTraceParser(inside=True)
    assert held.push("a \n") == ThinkingSplit("a")  # blanks wait: they may end the trace
    assert held.push("b") == ThinkingSplit(" \nb")


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        (["<think>x</think>y"], "<think>x</think>y"),
        (["</think>Some content after spurious tag."], "</think>Some content after spurious tag."),
        (["  Hello! How can", " I help you today?"], "  Hello! How can I help you today?"),
    ],
)
def test_family_parser_outside_the_trace_passes_everything_as_content(pieces, expected):
    """think false, a prefilled answer, cogito with tools: Ollama's parsers start in content
    and never look for tags (a trace the model writes anyway stays in the content)."""
    for kind in ("plain", "qwen"):
        split = feed(family(kind, inside=False), pieces)
        assert split == ThinkingSplit(content=expected)


def test_family_parser_flushes_an_unclosed_trace_without_its_blanks():
    assert feed(FamilyTraceParser(inside=True), ["cut short \n"]) == ThinkingSplit("cut short")
    # Unlike Ollama, which loses it, a partial closing tag at the end stays in the trace.
    assert feed(FamilyTraceParser(inside=True), ["Thinking content</th"]) == ThinkingSplit(
        "Thinking content</th"
    )
    assert feed(FamilyTraceParser(inside=True, lead_tag=True), ["  <thi"]) == ThinkingSplit("<thi")


@pytest.mark.parametrize(
    ("parser", "init", "inside"),
    [
        ("qwen3.5", ParserInit(), True),
        ("qwen3.5", ParserInit(think=False), False),
        ("qwen3.5", ParserInit(prefill=True), False),
        ("qwen3.5", ParserInit(tools=True), True),
        ("qwen3-thinking", ParserInit(think=False), False),
        ("deepseek3", ParserInit(), True),
        ("deepseek3", ParserInit(think=False), False),
        ("cogito", ParserInit(), True),
        ("cogito", ParserInit(tools=True), False),
        ("olmo3-think", ParserInit(think=False), True),
        ("olmo3-think", ParserInit(think=False, prefill=True), False),
    ],
)
def test_where_each_family_parser_starts(parser, init, inside):
    """From the request, as Ollama's parsers' Init decides, never from the prompt."""
    style = PARSERS[parser]
    assert style is not None
    assert style.family is not None
    assert style.family.inside(init) is inside
    reader = output_reader(style, "no tag in this prompt", (), init)
    assert feed(reader, ["r</think>a"]) == (
        ThinkingSplit("r", "a") if inside else ThinkingSplit(content="r</think>a")
    )
