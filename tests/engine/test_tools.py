"""Tools in prompts: template families, injected instructions, tool_choice checks and grammars."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ollamacli.engine.base import ChatMessage, ToolCall
from ollamacli.engine.templates import DEFAULT_TEMPLATE, ChatTemplate, resolve_template
from ollamacli.engine.tools import (
    ToolChoice,
    ToolPlan,
    check_tools,
    forced_call_grammar,
    forced_call_schema,
    inject_tools,
    supports_tools,
    tool_family,
)
from ollamacli.errors import InvalidRequestError
from tests.factories import bundled_gguf

TEMPLATES = Path(__file__).parent.parent / "data" / "templates"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
QUESTION = ChatMessage("user", "Weather in Paris?")


def smollm2_template() -> str:
    from ollamacli.gguffile import read_gguf

    return read_gguf(bundled_gguf()).chat_template or ""


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("qwen2.5.jinja", "hermes"),
        ("qwen2.5.gotmpl", "hermes"),
        ("llama3.2.gotmpl", "llama3"),
        ("mistral.gotmpl", "mistral"),
    ],
)
def test_template_families_are_recognised(name, family):
    source = (TEMPLATES / name).read_text()
    assert supports_tools(source)
    assert tool_family(source) == family


def test_templates_without_tools_get_injected_instructions():
    assert tool_family(smollm2_template()) == "injected"
    assert tool_family(DEFAULT_TEMPLATE) == "injected"
    assert tool_family("{{ if .Tools }}{{ json .Tools }}{{ end }}{{ .Prompt }}") == "json"


def test_injection_adds_the_tools_to_the_system_message_and_shows_calls_as_text():
    history = [
        ChatMessage("system", "Be brief."),
        QUESTION,
        ChatMessage("assistant", "", tool_calls=(ToolCall("get_weather", {"city": "Paris"}),)),
        ChatMessage("tool", '{"temp": 22}', tool_name="get_weather"),
    ]
    system, user, call, result = inject_tools(history, [WEATHER])
    assert system.content.startswith("Be brief.\n\nYou can call functions")
    assert json.dumps(WEATHER) in system.content
    assert user == QUESTION
    body = call.content.removeprefix("<tool_call>\n").removesuffix("\n</tool_call>")
    assert json.loads(body) == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert result == history[3]
    _, _, _, as_user = inject_tools(history, [WEATHER], tool_role=False)
    assert as_user == ChatMessage(
        "user", '<tool_response>\nget_weather: {"temp": 22}\n</tool_response>'
    )


def test_injection_without_a_system_message_adds_one():
    first, second = inject_tools([QUESTION], [WEATHER])
    assert first.role == "system"
    assert "<tool_call>" in first.content
    assert second == QUESTION


def test_jinja_and_go_templates_render_the_tools_themselves():
    for name in ("qwen2.5.jinja", "qwen2.5.gotmpl"):
        template = resolve_template((TEMPLATES / name).read_text())
        messages, offered = ToolPlan((WEATHER,)).prompt(template.source, [QUESTION])
        assert messages == [QUESTION]
        prompt = template.render(messages, tools=offered)
        assert '"name": "get_weather"' in prompt or '"name":"get_weather"' in prompt, name
        assert "<tool_call>" in prompt


def test_tool_choice_none_keeps_tools_out_of_the_prompt():
    plan = ToolPlan((WEATHER,), ToolChoice("none"))
    assert plan.prompt(smollm2_template(), [QUESTION]) == ([QUESTION], ())
    assert plan.grammar(smollm2_template()) is None
    assert plan.splitter(smollm2_template()) is None


@pytest.mark.parametrize(
    ("tools", "choice", "message"),
    [
        ((WEATHER,), ToolChoice("required", "get_time"), 'names "get_time", which is not in'),
        ((), ToolChoice("required"), "no tools were given"),
        (({"type": "function", "function": {}},), ToolChoice(), r"tools\[0\]: a function"),
        (
            (
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {"type": "object", "properties": {"n": {"minimum": 1}}},
                    },
                },
            ),
            ToolChoice("required"),
            'tools\\[0\\].function.parameters.properties.n: JSON schema keyword "minimum"',
        ),
    ],
    ids=["unknown-name", "no-tools", "no-name", "unenforceable-schema"],
)
def test_bad_tool_requests_are_refused(tools, choice, message):
    with pytest.raises(InvalidRequestError, match=message):
        check_tools(tools, choice)


def test_unenforceable_parameters_are_fine_when_nothing_is_forced():
    tool = {"type": "function", "function": {"name": "f", "parameters": {"minimum": 1}}}
    check_tools((tool,), ToolChoice())


def test_forced_schema_names_one_or_any_function():
    one = forced_call_schema((WEATHER, TIME), ToolChoice("required", "get_weather"), "hermes")
    assert one["properties"] == {
        "name": {"const": "get_weather"},
        "arguments": WEATHER["function"]["parameters"],  # type: ignore[index]
    }
    either = forced_call_schema((WEATHER, TIME), ToolChoice("required"), "llama3")
    names = [o["properties"]["name"]["const"] for o in either["anyOf"]]  # type: ignore[attr-defined]
    assert names == ["get_weather", "get_time"]
    assert "parameters" in either["anyOf"][0]["properties"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("family", "root"),
    [
        ("injected", 'root ::= "<tool_call>\\n" forced-tool-call "\\n</tool_call>"'),
        ("mistral", 'root ::= "[" forced-tool-call "]"'),
        ("json", "root ::= forced-tool-call"),
    ],
)
def test_forced_grammar_wraps_the_call_in_the_family_syntax(family, root):
    grammar = forced_call_grammar((WEATHER,), ToolChoice("required"), family)
    lines = grammar.splitlines()
    assert lines[0] == root
    assert sum(line.startswith("root ::=") for line in lines) == 1
    defined = {line.split(" ::= ")[0] for line in lines}
    bare = re.sub(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]', " ", grammar)  # no literals
    used = set(re.findall(r"[a-z][a-z0-9-]*", bare.replace("::=", " ")))
    assert "forced-tool-call" in defined
    assert used <= defined  # every rule the grammar refers to exists
    assert '\\"get_weather\\"' in grammar


def test_a_plan_parses_calls_in_the_templates_family():
    template = ChatTemplate((TEMPLATES / "mistral.gotmpl").read_text(), "go")
    splitter = ToolPlan((WEATHER,)).splitter(template.source)
    assert splitter is not None
    splitter.push('[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Rome"}}]')
    assert splitter.finish().calls == (ToolCall("get_weather", {"city": "Rome"}),)
