"""ChatService with reasoning models (scripted engine): the trace streams apart from the answer
for every parser state, `think` reaches the template, old traces leave the prompt, harmony
channels, tool calls after a trace, and RENDERER/PARSER models."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ollamacli.config import Settings
from ollamacli.engine.base import ChatMessage, TextChunk, ToolCall
from ollamacli.engine.llama import format_grammar
from ollamacli.engine.tools import ToolChoice
from ollamacli.errors import EngineError, InvalidRequestError, ModelfileError
from ollamacli.service import Services, build_services
from ollamacli.service.chat import (
    ChatDone,
    ChatRequest,
    GenerateRequest,
    ThinkingChunk,
    ToolCallsChunk,
)
from ollamacli.service.models import CreateSpec
from tests.factories import WEATHER_TOOL, make_tiny_gguf
from tests.fakes import FakeFactory

TEMPLATES = Path(__file__).parent.parent / "data" / "templates"
QWEN3 = (TEMPLATES / "qwen3.gotmpl").read_text()
OPENS = (
    "{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ if .Thinking }}<think>{{ .Thinking }}"
    "</think>{{ end }}{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
    "{{ if $.Think }}<think>\n{{ else }}<think>\n\n</think>\n\n{{ end }}"
)
"""Qwen-3-thinking style: the prompt itself opens the trace when thinking is on."""
HARMONY_JINJA = (
    "{% for m in messages %}<|start|>{{ m.role }}<|message|>{{ m.content }}<|end|>{% endfor %}"
    "<|start|>assistant{# <|channel|>analysis #}"
)
ASK = (ChatMessage("user", "Why?"),)
PARIS = ToolCall("get_weather", {"city": "Paris"})


@pytest.fixture
def services(settings: Settings, fake_factory: FakeFactory) -> Services:
    return build_services(settings, fake_factory)


def create(services: Services, tmp_path: Path, name: str, **fields: object) -> str:
    gguf = make_tiny_gguf(tmp_path / f"{name}.gguf", context_length=8192)
    services.models.create(name, CreateSpec(from_file=gguf, **fields))  # type: ignore[arg-type]
    return name


def harmony(settings: Settings, tmp_path: Path) -> tuple[Services, FakeFactory]:
    """Services whose model `oss` reads gpt-oss channels (`PARSER harmony`)."""
    factory = FakeFactory(chat_template=HARMONY_JINJA)
    services = build_services(settings, factory)
    create(services, tmp_path, "oss", parser="harmony")
    return services, factory


# gpt-oss's analysis message, then the start of a call to get_weather (its arguments follow)
ANALYSIS_THEN_CALL = (
    "<|channel|>analysis<|message|>Weather needed.<|end|>",
    "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json",
)


def chat(services: Services, model: str, messages=ASK, **fields) -> list[object]:
    return list(services.chat.chat(ChatRequest(model, tuple(messages), **fields)))


def split(events: list[object]) -> tuple[str, str, list[ToolCall]]:
    thinking = "".join(e.text for e in events if isinstance(e, ThinkingChunk))
    content = "".join(e.text for e in events if isinstance(e, TextChunk))
    calls = [c for e in events if isinstance(e, ToolCallsChunk) for c in e.calls]
    assert isinstance(events[-1], ChatDone)
    return thinking, content, calls


def test_a_thinking_model_thinks_by_default_and_the_trace_streams_apart(
    services, tmp_path, fake_factory
):
    create(services, tmp_path, "qwen3", template=QWEN3)
    fake_factory.enqueue("<think>\nI", " reason", "</th", "ink>\n\n", "Answer", ".")
    events = chat(services, "qwen3")
    assert events[:4] == [
        ThinkingChunk("I"),
        ThinkingChunk(" reason"),
        TextChunk("Answer"),
        TextChunk("."),
    ]
    prompt = fake_factory.loaded[0].prompts[0]
    assert prompt == "<|im_start|>user\nWhy? /think<|im_end|>\n<|im_start|>assistant\n"


def test_think_false_renders_no_think_and_drops_a_trace_the_model_writes_anyway(
    services, tmp_path, fake_factory
):
    create(services, tmp_path, "qwen3", template=QWEN3)
    fake_factory.enqueue("<think>sneaky</think>", "Answer.")
    assert split(chat(services, "qwen3", think=False)) == ("", "Answer.", [])
    prompt = fake_factory.loaded[0].prompts[0]
    assert isinstance(prompt, str)
    assert prompt.endswith(
        "Why? /no_think<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_a_prompt_that_opens_the_trace_starts_the_parser_inside_it(
    services, tmp_path, fake_factory
):
    create(services, tmp_path, "opens", template=OPENS)
    fake_factory.enqueue("step one,", " step two</think>", "\n\nDone.")
    fake_factory.enqueue("cut short by num_predict")
    fake_factory.enqueue("Direct.")
    assert split(chat(services, "opens")) == ("step one, step two", "Done.", [])
    assert split(chat(services, "opens", think="high")) == ("cut short by num_predict", "", [])
    assert split(chat(services, "opens", think=False)) == ("", "Direct.", [])
    prompts = fake_factory.loaded[0].prompts
    assert [str(p).endswith("assistant\n<think>\n") for p in prompts] == [True, True, False]


def test_asking_a_model_without_a_trace_to_think_is_refused(services, tmp_path, fake_factory):
    create(services, tmp_path, "plain")
    with pytest.raises(InvalidRequestError, match='"plain" does not support thinking'):
        chat(services, "plain", think=True)
    with pytest.raises(InvalidRequestError, match="does not support thinking"):
        list(services.chat.generate(GenerateRequest("plain", "hi", think="low")))
    fake_factory.enqueue("<think>kept as text</think>")
    assert split(chat(services, "plain", think=False)) == ("", "<think>kept as text</think>", [])


def test_old_traces_leave_the_prompt_and_a_returned_trace_is_passed_back(
    services, tmp_path, fake_factory
):
    create(services, tmp_path, "opens", template=OPENS)
    history = (
        ChatMessage("user", "Q1"),
        ChatMessage("assistant", "<think>old reasoning</think>A1"),
        ChatMessage("user", "Q2"),
        ChatMessage("assistant", "A2", thinking="passed back"),
        ChatMessage("user", "Q3"),
    )
    chat(services, "opens", history)
    prompt = str(fake_factory.loaded[0].prompts[0])
    assert "old reasoning" not in prompt
    assert "<|im_start|>assistant\nA1<|im_end|>" in prompt
    assert "<think>passed back</think>A2" in prompt  # this template keeps every trace


def test_tool_calls_after_the_trace(services, tmp_path, fake_factory):
    create(services, tmp_path, "qwen3", template=QWEN3)
    fake_factory.enqueue(
        "<think>I need the weather.</think>\n\n<tool_call>\n",
        '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    )
    assert split(chat(services, "qwen3", tools=(WEATHER_TOOL,))) == (
        "I need the weather.",
        "",
        [PARIS],
    )


def test_generate_separates_the_trace_too(services, tmp_path, fake_factory):
    create(services, tmp_path, "opens", template=OPENS)
    fake_factory.enqueue("hmm</think>", "Yes.")
    events = list(services.chat.generate(GenerateRequest("opens", "Is it?")))
    assert split(events) == ("hmm", "Yes.", [])


def test_harmony_parser_reads_channels_with_control_tokens_printed(services, settings, tmp_path):
    services, factory = harmony(settings, tmp_path)
    factory.enqueue(*ANALYSIS_THEN_CALL, '<|message|>{"city": "Paris"}<|end|>')
    factory.enqueue("<|channel|>final<|message|>Plain.")
    assert split(chat(services, "oss", tools=(WEATHER_TOOL,))) == ("Weather needed.", "", [PARIS])
    assert split(chat(services, "oss", think=False)) == ("", "Plain.", [])
    assert all(s.special_tokens for s in factory.loaded[0].samplings)


def test_a_renderer_not_written_here_renders_with_the_ggufs_own_template(
    services, tmp_path, fake_factory
):
    fake_factory.chat_template = "{% for m in messages %}<{{ m.content }}>{% endfor %}" + (
        "{% if enable_thinking is defined and not enable_thinking %}[no]{% endif %}</think>"
    )
    create(
        services,
        tmp_path,
        "lfm2",
        template="IGNORED {{ .Prompt }}",
        renderer="lfm2-thinking",
        parser="lfm2-thinking",
    )
    fake_factory.enqueue("<think>r</think>a")
    fake_factory.enqueue("a")
    assert split(chat(services, "lfm2")) == ("r", "a", [])
    assert split(chat(services, "lfm2", think=False)) == ("", "a", [])
    assert fake_factory.loaded[0].prompts == ["<Why?></think>", "<Why?>[no]</think>"]


def test_qwen35_renders_as_ollamas_renderer(services, tmp_path, fake_factory):
    create(services, tmp_path, "qwen35", renderer="qwen3.5", parser="qwen3.5")
    fake_factory.enqueue("r</think>\n\na")
    fake_factory.enqueue("a")
    assert split(chat(services, "qwen35")) == ("r", "a", [])
    assert split(chat(services, "qwen35", think=False)) == ("", "a", [])
    assert fake_factory.loaded[0].prompts == [
        "<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n<think>\n",
        "<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    ]


def test_unknown_renderer_or_parser_names_are_refused_at_create(services, tmp_path):
    with pytest.raises(ModelfileError, match='unknown RENDERER "future-model"'):
        create(services, tmp_path, "bad", renderer="future-model")
    with pytest.raises(ModelfileError, match='unknown PARSER "future-model"'):
        create(services, tmp_path, "bad", parser="future-model")
    assert not services.store.entries()


def test_a_format_constrains_only_what_follows_the_trace(services, tmp_path, fake_factory):
    """The prompt opens the trace: the grammar requires the trace and its closing tag, then
    the format; the trace is split off as usual (chat and generate)."""
    create(services, tmp_path, "opens", template=OPENS)
    fake_factory.enqueue("Sum it.</think>\n\n", '{"a": 1}')
    fake_factory.enqueue("Hm.</think>", '{"b": 2}')
    assert split(chat(services, "opens", format="json")) == ("Sum it.", '{"a": 1}', [])
    events = list(services.chat.generate(GenerateRequest("opens", "x", format="json")))
    assert split(events) == ("Hm.", '{"b": 2}', [])
    engine = fake_factory.loaded[0]
    assert all(str(p).endswith("<|im_start|>assistant\n<think>\n") for p in engine.prompts)
    for sampling in engine.samplings:
        grammar = sampling.grammar or ""
        assert grammar.startswith('root ::= trace-text-0 "</think>" [ \\t\\r\\n]{0,4} ')
        assert re.search(r"^trace-answer\s+::= object$", grammar, re.M)  # JSON's root renamed


def test_think_false_with_a_format_constrains_from_the_first_token(
    services, tmp_path, fake_factory
):
    create(services, tmp_path, "opens", template=OPENS)
    fake_factory.enqueue('{"a": 1}')
    assert split(chat(services, "opens", format="json", think=False)) == ("", '{"a": 1}', [])
    engine = fake_factory.loaded[0]
    assert str(engine.prompts[0]).endswith("<think>\n\n</think>\n\n")
    grammar = engine.samplings[0].grammar or ""
    assert grammar == format_grammar("json")


def test_a_schema_format_after_an_optional_trace(services, tmp_path, fake_factory):
    """A template that leaves the tag to the model: the trace is optional."""
    create(services, tmp_path, "qwen3", template=QWEN3)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    fake_factory.enqueue("<think>", "Five.", "</think>", '{"n": 5}')
    fake_factory.enqueue('{"n": 5}')
    assert split(chat(services, "qwen3", format=schema)) == ("Five.", '{"n": 5}', [])
    assert split(chat(services, "qwen3", format=schema)) == ("", '{"n": 5}', [])
    grammar = fake_factory.loaded[0].samplings[0].grammar or ""
    assert grammar.startswith('root ::= ( "<think>" trace-text-0 "</think>" ')
    assert grammar.split("\n")[0].endswith(")? trace-answer")


def test_a_forced_tool_call_follows_the_trace(services, tmp_path, fake_factory):
    create(services, tmp_path, "opens", template="{{ if .Tools }}<tool_call>{{ end }}" + OPENS)
    fake_factory.enqueue(
        "Weather needed.</think>\n",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    )
    events = chat(services, "opens", tools=(WEATHER_TOOL,), tool_choice=ToolChoice("required"))
    assert split(events) == ("Weather needed.", "", [PARIS])
    grammar = fake_factory.loaded[0].samplings[0].grammar or ""
    assert grammar.startswith('root ::= trace-text-0 "</think>"')
    assert '"<tool_call>\\n" forced-tool-call' in grammar


def test_harmony_format_after_the_analysis_channel(services, settings, tmp_path):
    services, factory = harmony(settings, tmp_path)
    factory.enqueue(
        "<|channel|>analysis<|message|>Count.<|end|>",
        '<|start|>assistant<|channel|>final<|message|>{"n": 2}',
    )
    factory.enqueue('<|channel|>final<|message|>{"n": 3}')
    assert split(chat(services, "oss", format="json")) == ("Count.", '{"n": 2}', [])
    assert split(chat(services, "oss", format="json", think=False)) == ("", '{"n": 3}', [])
    thinking, plain = (s.grammar or "" for s in factory.loaded[0].samplings)
    assert thinking.startswith(
        'root ::= ( "<|channel|>analysis<|message|>" trace-text-0 "<|end|>" "<|start|>assistant" )?'
        ' "<|channel|>final<|message|>" trace-answer'
    )
    assert plain.startswith('root ::= "<|channel|>final<|message|>" lead-answer')


def test_harmony_shows_functions_as_identifiers_and_maps_calls_back(services, settings, tmp_path):
    factory = FakeFactory(
        chat_template="[{% for t in tools %}{{ t.function.name }}{% endfor %}]" + HARMONY_JINJA
    )
    services = build_services(settings, factory)
    create(services, tmp_path, "oss", parser="harmony")
    factory.enqueue('<|channel|>commentary to=functions.get_weather<|message|>{"city": "Paris"}')
    tool = {"type": "function", "function": {**WEATHER_TOOL["function"], "name": "get weather"}}
    _, _, calls = split(chat(services, "oss", tools=(tool,)))
    assert calls == [ToolCall("get weather", {"city": "Paris"})]
    assert str(factory.loaded[0].prompts[0]).startswith("[get_weather]")


def test_a_renderer_written_here_renders_as_ollamas(services, tmp_path, fake_factory):
    """RENDERER deepseek3.1 renders as Ollama's renderer (not the GGUF's template), the
    prompt opens the trace, and PARSER deepseek3 reads it; think false closes it."""
    fake_factory.chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}GGUF"
    create(services, tmp_path, "v31", renderer="deepseek3.1", parser="deepseek3")
    fake_factory.enqueue("Because.</think>It is.")
    fake_factory.enqueue("It is.")
    assert split(chat(services, "v31")) == ("Because.", "It is.", [])
    assert split(chat(services, "v31", think=False)) == ("", "It is.", [])
    assert fake_factory.loaded[0].prompts == [
        "<｜begin▁of▁sentence｜><｜User｜>Why?<｜Assistant｜><think>",  # noqa: RUF001
        "<｜begin▁of▁sentence｜><｜User｜>Why?<｜Assistant｜></think>",  # noqa: RUF001
    ]


def test_gpt_oss_reasoning_max_is_high(services, tmp_path, fake_factory):
    """Ollama maps think "max" to "high" for harmony models (their Reasoning line knows three
    levels); an unset think renders as "medium"."""
    template = (TEMPLATES / "gpt-oss.gotmpl").read_text()
    create(services, tmp_path, "oss", template=template)
    for _ in range(2):
        fake_factory.enqueue("<|channel|>final<|message|>ok")
    chat(services, "oss", think="max")
    chat(services, "oss")
    first, second = (str(p) for p in fake_factory.loaded[0].prompts)
    assert "\n\nReasoning: high\n\n" in first
    assert "\n\nReasoning: medium\n\n" in second


def test_a_forced_call_of_a_harmony_model_follows_its_analysis(services, settings, tmp_path):
    """gpt-oss with tool_choice required: an optional analysis message, then a commentary
    message to one of the functions (as shown: identifiers) with arguments fitting its
    schema; the reader maps the name back."""
    services, factory = harmony(settings, tmp_path)
    factory.enqueue(
        "<|channel|>analysis<|message|>Weather needed.<|end|><|start|>assistant",
        '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}',
    )
    tool = {"type": "function", "function": {**WEATHER_TOOL["function"], "name": "get weather"}}
    other = {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}}
    events = chat(
        services,
        "oss",
        tools=(tool, other),
        tool_choice=ToolChoice("required", "get weather"),
    )
    assert split(events) == ("Weather needed.", "", [ToolCall("get weather", {"city": "Paris"})])
    grammar = factory.loaded[0].samplings[0].grammar or ""
    first = grammar.splitlines()[0]
    assert first == (
        'root ::= ( "<|channel|>analysis<|message|>" trace-text-0 "<|end|>" "<|start|>assistant" )?'
        " trace-answer"
    )
    assert (
        'trace-answer ::= "<|channel|>commentary to=functions.get_weather <|constrain|>json'
        '<|message|>" call0-root'
    ) in grammar
    assert "call1-" not in grammar  # only the function tool_choice names


# -- the families' own parsers (Ollama's model/parsers/) ---------------------------------------


def test_qwen35_skips_a_think_it_writes_again_and_keeps_one_after_the_trace(
    services, tmp_path, fake_factory
):
    """The prompt opened the trace; Ollama's qwen3.5 parser skips one `<think>` the model
    writes at the start anyway, and once the trace has closed a `<think>` is answer text."""
    create(services, tmp_path, "qwen35", renderer="qwen3.5", parser="qwen3.5")
    fake_factory.enqueue("<think>", "\nLet me think...\n", "</think>\n\n", "Answer.")
    fake_factory.enqueue("Plan</think>Sure. <think>more</think> Done.")
    assert split(chat(services, "qwen35")) == ("Let me think...", "Answer.", [])
    assert split(chat(services, "qwen35")) == ("Plan", "Sure. <think>more</think> Done.", [])


def test_qwen35_think_false_or_a_prefill_reads_no_trace(services, tmp_path, fake_factory):
    """As Ollama's parser: with thinking off, or going on with a prefilled answer, the output
    is all answer, a trace the model writes anyway included."""
    create(services, tmp_path, "qwen35", renderer="qwen3.5", parser="qwen3.5")
    fake_factory.enqueue("<think>sneaky</think>Answer.")
    fake_factory.enqueue(" and continued</think>")
    assert split(chat(services, "qwen35", think=False)) == (
        "",
        "<think>sneaky</think>Answer.",
        [],
    )
    prefill = (*ASK, ChatMessage("assistant", "Prefilled start"))
    assert split(chat(services, "qwen35", prefill)) == ("", " and continued</think>", [])


def test_cogito_reads_no_trace_when_tools_are_offered(services, tmp_path, fake_factory):
    """Ollama's cogito parser thinks only without tools (its renderer still opens the tag)."""
    create(services, tmp_path, "cogito", renderer="cogito", parser="cogito")
    fake_factory.enqueue("Hmm.</think>Hi.")
    fake_factory.enqueue("Hmm.</think>Hi.")
    assert split(chat(services, "cogito")) == ("Hmm.", "Hi.", [])
    assert split(chat(services, "cogito", tools=(WEATHER_TOOL,))) == ("", "Hmm.</think>Hi.", [])


def test_olmo3_think_always_thinks(services, tmp_path, fake_factory):
    """Ollama's olmo3-think parser reads a trace whatever `think` says, and the trace goes out."""
    create(services, tmp_path, "olmo", renderer="olmo3-think", parser="olmo3-think")
    fake_factory.enqueue("  Some thinking  </think>  Content here  ")
    assert split(chat(services, "olmo", think=False)) == ("  Some thinking", "Content here  ", [])


def test_harmony_call_arguments_that_are_not_json_fail_the_request(services, settings, tmp_path):
    """Ollama's harmony parser fails the request ("error parsing tool call"), after what it
    had already sent."""
    services, factory = harmony(settings, tmp_path)
    factory.enqueue(*ANALYSIS_THEN_CALL, "<|message|>{city: Paris}")
    stream = services.chat.chat(ChatRequest("oss", ASK, tools=(WEATHER_TOOL,)))
    assert next(stream) == ThinkingChunk("Weather needed.")
    with pytest.raises(EngineError, match=r"^error parsing tool call: raw='\{city: Paris\}'"):
        list(stream)


def test_qwen3_thinking_reads_a_call_that_ends_the_trace_even_without_tools(
    services, tmp_path, fake_factory
):
    """Ollama's qwen3 parser: a `<tool_call>` ends the trace, and calls are read whether or not
    tools were offered."""
    create(services, tmp_path, "q3", template=QWEN3, parser="qwen3-thinking")
    fake_factory.enqueue(
        "I need the weather.\n<tool_",
        'call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    )
    assert split(chat(services, "q3")) == ("I need the weather.", "", [PARIS])
