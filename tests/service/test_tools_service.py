"""ChatService with tools (scripted engine): templates see the tools, calls are split out of the
answer, tool_choice forces a grammar; context limits are reported or refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from ollamacli.config import Settings
from ollamacli.engine.base import ChatMessage, TextChunk, ToolCall
from ollamacli.engine.tools import ToolChoice
from ollamacli.errors import ContextLengthExceededError, InvalidRequestError
from ollamacli.service import Services, build_services
from ollamacli.service.chat import ChatDone, ChatRequest, ToolCallsChunk
from ollamacli.service.models import CreateSpec
from tests.factories import WEATHER_TOOL, make_tiny_gguf
from tests.fakes import FakeFactory

TEMPLATES = Path(__file__).parent.parent / "data" / "templates"
WEATHER = WEATHER_TOOL
ASK = (ChatMessage("user", "Weather in Paris?"),)
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
PARIS = ToolCall("get_weather", {"city": "Paris"})
SHOW_TURNS = "{{ range .Messages }}[{{ .Role }}:{{ .Content }}]{{ end }}"


@pytest.fixture
def services(settings: Settings, fake_factory: FakeFactory) -> Services:
    return build_services(settings, fake_factory)


def create(services: Services, tmp_path: Path, name: str, template: str | None = None) -> str:
    gguf = make_tiny_gguf(tmp_path / f"{name}.gguf", context_length=8192)
    services.models.create(name, CreateSpec(from_file=gguf, template=template))
    return name


def template(name: str) -> str:
    return (TEMPLATES / name).read_text()


def chat(services: Services, model: str, messages=ASK, **fields) -> list[object]:
    return list(services.chat.chat(ChatRequest(model, tuple(messages), **fields)))


@pytest.mark.parametrize("source", ["qwen2.5.jinja", "qwen2.5.gotmpl"])
def test_templates_with_tools_render_them_and_calls_come_back(
    services, tmp_path, fake_factory, source
):
    create(services, tmp_path, "qwen", template(source))
    fake_factory.enqueue("<tool_call>\n", '{"name": "get_weather", ', '"arguments": {"city": ')
    fake_factory.script[-1].append('"Paris"}}\n</tool_call>')
    events = chat(services, "qwen", tools=(WEATHER,))
    prompt = fake_factory.loaded[0].prompts[-1]
    assert isinstance(prompt, str)
    assert "<tools>" in prompt
    assert "Get the current weather for a city" in prompt
    assert events[:-1] == [ToolCallsChunk((PARIS,))]
    assert isinstance(events[-1], ChatDone)


def test_a_template_without_tools_gets_instructions_and_hermes_calls_parse(
    services, tmp_path, fake_factory
):
    create(services, tmp_path, "plain", SHOW_TURNS)
    fake_factory.enqueue("Let me check. ", CALL)
    events = chat(services, "plain", tools=(WEATHER,))
    prompt = fake_factory.loaded[0].prompts[-1]
    assert isinstance(prompt, str)
    assert prompt.startswith("[system:You can call functions")
    assert json.dumps(WEATHER) in prompt
    assert events[:-1] == [TextChunk("Let me check. "), ToolCallsChunk((PARIS,))]


def test_unparseable_tool_output_is_returned_as_content(services, tmp_path, fake_factory):
    create(services, tmp_path, "plain", SHOW_TURNS)
    broken = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par'
    fake_factory.enqueue(broken)
    events = chat(services, "plain", tools=(WEATHER,))
    assert events[:-1] == [TextChunk(broken)]


def test_without_tools_nothing_is_parsed(services, tmp_path, fake_factory):
    create(services, tmp_path, "plain", SHOW_TURNS)
    fake_factory.enqueue(CALL)
    assert chat(services, "plain")[:-1] == [TextChunk(CALL)]
    fake_factory.enqueue(CALL)
    none = chat(services, "plain", tools=(WEATHER,), tool_choice=ToolChoice("none"))
    assert none[:-1] == [TextChunk(CALL)]
    assert "You can call functions" not in str(fake_factory.loaded[0].prompts[-1])


def test_tool_results_are_accepted_back_and_rendered(services, tmp_path, fake_factory):
    create(services, tmp_path, "qwen", template("qwen2.5.jinja"))
    history = (
        *ASK,
        ChatMessage("assistant", "", tool_calls=(PARIS,)),
        ChatMessage("tool", '{"temperature": 22}', tool_name="get_weather"),
    )
    fake_factory.enqueue("It is 22 degrees.")
    events = chat(services, "qwen", history, tools=(WEATHER,))
    prompt = str(fake_factory.loaded[0].prompts[-1])
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}' in prompt
    assert '<tool_response>\n{"temperature": 22}\n</tool_response>' in prompt
    assert events[0] == TextChunk("It is 22 degrees.")


def test_a_template_refusing_tool_turns_gets_them_as_user_turns(services, tmp_path, fake_factory):
    strict = (
        "{% for m in messages %}{% if m.role not in ['system', 'user', 'assistant'] %}"
        "{{ raise_exception('roles must be system, user or assistant') }}{% endif %}"
        "[{{ m.role }}:{{ m.content }}]{% endfor %}"
    )
    create(services, tmp_path, "strict", strict)
    history = (*ASK, ChatMessage("assistant", "", tool_calls=(PARIS,)), ChatMessage("tool", "22"))
    chat(services, "strict", history, tools=(WEATHER,))
    prompt = str(fake_factory.loaded[0].prompts[-1])
    assert prompt.endswith("[user:<tool_response>\n22\n</tool_response>]")


def test_a_required_tool_choice_constrains_decoding(services, tmp_path, fake_factory):
    create(services, tmp_path, "plain", SHOW_TURNS)
    fake_factory.enqueue(CALL)
    choice = ToolChoice("required", "get_weather")
    events = chat(services, "plain", tools=(WEATHER,), tool_choice=choice)
    grammar = fake_factory.loaded[0].samplings[-1].grammar
    assert grammar is not None
    assert grammar.startswith('root ::= "<tool_call>\\n" forced-tool-call')
    assert '\\"get_weather\\"' in grammar
    assert events[0] == ToolCallsChunk((PARIS,))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tool_choice": ToolChoice("required", "nope")}, 'names "nope"'),
        (
            {"tool_choice": ToolChoice("required"), "format": "json"},
            "format cannot be combined",
        ),
        ({"tools": ({"type": "function"},)}, "a function with a name is required"),
    ],
    ids=["unknown-function", "format-and-forced", "nameless-tool"],
)
def test_bad_tool_requests_fail_before_loading(services, tmp_path, fake_factory, fields, message):
    create(services, tmp_path, "plain", SHOW_TURNS)
    fields = {"tools": (WEATHER,), **fields}
    with pytest.raises(InvalidRequestError, match=message):
        chat(services, "plain", **fields)
    assert fake_factory.loaded == []


LONG = " ".join(["w"] * 30)  # the fake engine counts whitespace-separated words as tokens
TURNS = (
    ChatMessage("system", "sys"),
    ChatMessage("user", f"old {LONG}"),
    ChatMessage("assistant", f"older {LONG}"),
    ChatMessage("user", "latest question"),
)


def test_truncation_is_flagged_and_logged(services, tmp_path, fake_factory, caplog):
    create(services, tmp_path, "plain", SHOW_TURNS)
    with caplog.at_level(logging.WARNING, logger="ollamacli.service.chat"):
        *_, done = chat(services, "plain", TURNS, options={"num_ctx": 20})
    assert isinstance(done, ChatDone)
    assert done.truncated
    assert fake_factory.loaded[0].prompts[-1] == "[system:sys][user:latest question]"
    assert "prompt truncated to fit num_ctx 20" in caplog.text


def test_truncate_false_refuses_with_both_token_counts(services, tmp_path, fake_factory):
    create(services, tmp_path, "plain", SHOW_TURNS)
    with pytest.raises(ContextLengthExceededError) as refused:
        chat(services, "plain", TURNS, options={"num_ctx": 20}, truncate=False)
    whole = f"[system:sys][user:old {LONG}][assistant:older {LONG}][user:latest question]"
    tokens = len(whole.split())
    assert (refused.value.n_ctx, refused.value.requested) == (20, tokens)
    assert f"{tokens} tokens > num_ctx 20" in refused.value.message
    assert fake_factory.loaded[0].prompts == []  # nothing was generated
    *_, done = chat(services, "plain", TURNS, options={"num_ctx": 400}, truncate=False)
    assert isinstance(done, ChatDone)
    assert not done.truncated


def test_num_predict_ends_with_done_reason_length(services, tmp_path, fake_factory):
    create(services, tmp_path, "plain", SHOW_TURNS)
    fake_factory.enqueue("a", "b", "c")
    *chunks, done = chat(services, "plain", options={"num_predict": 2})
    assert chunks == [TextChunk("a"), TextChunk("b")]
    assert isinstance(done, ChatDone)
    assert done.done_reason == "length"
