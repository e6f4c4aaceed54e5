"""Go templates: the text/template subset Ollama's templates use, and Ollama's rendering rules."""

from __future__ import annotations

import json
from datetime import date

import pytest

from ollamacli.engine.base import ChatMessage, ToolCall
from ollamacli.engine.gotemplate import collate, parse_go, render_go
from ollamacli.errors import TemplateError

USER = [ChatMessage("user", "Hello friend!")]
CHAT = [
    ChatMessage("user", "Hello friend!"),
    ChatMessage("assistant", "Hello human!"),
    ChatMessage("user", "What is your name?"),
]
SYSTEM_CHAT = [ChatMessage("system", "You are a helpful assistant!"), *CHAT]


def _render(source: str, messages=USER, **kwargs) -> str:
    return render_go(source, messages, **kwargs)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("a  {{- .System }}  b", "a  b"),  # `{{- ` trims before; the value is empty
        ("a\n\n{{- range .Messages }}[{{ .Content }}]{{ end }}", "a[Hello friend!]"),
        ("{{ range .Messages -}}\n\n  x{{ end }}", "x"),
        ("a{{/* a comment */}}b{{- /* trimmed */ -}}  c", "abc"),
        ("{{ range .Messages }}{{ .Role }}{{ end }}{{-3}}", "user-3"),  # -3 is a number
    ],
    ids=["left-trim", "left-trim-newlines", "right-trim", "comments", "negative-number"],
)
def test_trim_markers_and_comments(source, expected):
    assert _render(source) == expected


def test_if_else_if_else_chain():
    source = (
        "{{ range .Messages }}"
        '{{ if eq .Role "system" }}S{{ else if eq .Role "user" }}U{{ else }}A{{ end }}'
        "{{ end }}"
    )
    assert _render(source, SYSTEM_CHAT) == "SUAU"


def test_with_sets_dot_and_else_with_chains():
    source = "{{ with .Tools }}tools{{ else with .System }}[{{ . }}]{{ else }}none{{ end }}"
    assert _render(source, [ChatMessage("system", "sys"), *USER]) == "[sys]"
    assert _render(source, USER) == "none"


def test_range_index_and_element_variables_and_root_variable():
    source = (
        "{{ range $i, $m := .Messages }}{{ $i }}:{{ $m.Role }}"
        "{{ if eq (len (slice $.Messages $i)) 1 }}!{{ end }} {{ end }}"
    )
    assert _render(source, CHAT) == "0:user 1:assistant 2:user! "


def test_range_else_break_and_continue():
    source = (
        "{{ range .Messages }}"
        '{{ if eq .Role "assistant" }}{{ continue }}{{ end }}'
        '{{ .Content }};{{ if eq .Content "What is your name?" }}{{ break }}{{ end }}'
        "{{ else }}empty{{ end }}"
    )
    assert _render(source, CHAT) == "Hello friend!;What is your name?;"
    no_tools = "{{ range .Tools }}x{{ else }}no tools{{ end }}{{ range .Messages }}{{ end }}"
    assert _render(no_tools) == "no tools"


def test_variables_declare_assign_and_scope():
    source = (
        '{{- $system := "" }}'
        "{{- range .Messages }}"
        '{{- if eq .Role "system" }}{{ $system = .Content }}{{ continue }}{{ end }}'
        '{{- if $system }}<{{ $system }}>{{ $system = "" }}{{ end }}{{ .Content }}|'
        "{{- end }}"
    )
    assert _render(source, SYSTEM_CHAT) == (
        "<You are a helpful assistant!>Hello friend!|Hello human!|What is your name?|"
    )


def test_and_or_not_short_circuit_and_return_operands():
    source = (
        '{{ and .System "x" }}|{{ or .System "fallback" }}|{{ not .System }}|'
        "{{ and 1 0 2 }}|{{ or 0 false 3 }}"
    )
    assert _render(source) == "|fallback|true|0|3"
    # `and` stops at the first false value: index out of range is never evaluated.
    assert _render("{{ if and .Tools (index .Tools 5) }}x{{ else }}y{{ end }}") == "y"


def test_comparisons_index_slice_len_print_printf():
    source = (
        '{{ range .Messages }}{{ end }}{{ ne .System "a" }} {{ lt 1 2 }} {{ ge "b" "a" }} {{ len "héllo" }} '
        '{{ (index .Messages 0).Content | printf "%v" | len }} {{ slice "abcdef" 1 3 }} '
        '{{ print 1 2 "x" 3 }} {{ printf "%s=%d %q %%" "n" 5 "q" }}'
    )
    assert _render(source) == 'true true true 6 13 bc 1 2x3 n=5 "q" %'


def test_comparing_incompatible_types_is_an_error():
    with pytest.raises(TemplateError, match="incompatible types for comparison"):
        _render('{{ if eq 1 "1" }}x{{ end }}')


def test_json_and_tools_render_like_ollama():
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather in <city>",
                "parameters": {
                    "type": "object",
                    "required": ["city"],
                    "properties": {"unit": {"type": "string", "enum": ["c", "f"]}, "city": {}},
                },
            },
        }
    ]
    source = (
        "{{ range .Messages }}{{ end }}{{ range .Tools }}{{ json . }}\n{{ .Function.Name }}"
        "{{ range $k, $v := .Function.Parameters.Properties }} {{ $k }}:{{ toTypeScriptType $v }}"
        "{{ end }}{{ end }}"
    )
    first, second = _render(source, tools=tools).split("\n")
    assert json.loads(first)["function"]["parameters"]["properties"]["unit"]["enum"] == ["c", "f"]
    assert "\\u003ccity\\u003e" in first  # Go's json escapes <, > and &
    assert first.startswith('{"type":"function","function":{"name":"get_weather"')
    assert second == "get_weather city:any unit:string"


def test_tool_calls_and_tool_results_are_visible():
    messages = [
        ChatMessage("user", "weather?"),
        ChatMessage("assistant", "", tool_calls=(ToolCall("get_weather", {"city": "Paris"}),)),
        ChatMessage("tool", "22C", tool_name="get_weather"),
    ]
    source = (
        "{{ range .Messages }}{{ if .ToolCalls }}"
        "{{ range .ToolCalls }}call {{ .Function.Name }} {{ .Function.Arguments }}{{ end }}"
        '{{ else if eq .Role "tool" }} -> {{ .ToolName }}={{ .Content }}{{ end }}{{ end }}'
    )
    assert _render(source, messages) == 'call get_weather {"city":"Paris"} -> get_weather=22C'


def test_dates_and_missing_keys_print_like_go():
    assert _render("{{ currentDate }}") == date.today().isoformat()
    assert _render("{{ .Missing }}|{{ range .Messages }}{{ end }}") == "<no value>|"


def test_collate_merges_neighbours_and_joins_system_messages():
    system, merged = collate(
        [
            ChatMessage("system", "a"),
            ChatMessage("system", "b"),
            ChatMessage("user", "1"),
            ChatMessage("user", "2"),
            ChatMessage("tool", "t1"),
            ChatMessage("tool", "t2"),
        ]
    )
    assert system == "a\n\nb"
    assert [(m.role, m.content) for m in merged] == [
        ("system", "a\n\nb"),
        ("user", "1\n\n2"),
        ("tool", "t1"),
        ("tool", "t2"),
    ]


MISTRAL_LEGACY = "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] "


@pytest.mark.parametrize(
    "source",
    [
        MISTRAL_LEGACY,
        MISTRAL_LEGACY + "{{ .Response }}",
        "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}\n"
        "{{- range .Messages }}\n"
        '{{- if eq .Role "user" }}{{ .Content }}[/INST] '
        '{{ else if eq .Role "assistant" }}{{ .Content }}[INST] {{ end }}\n'
        "{{- end }}",
    ],
    ids=["legacy-no-response", "legacy-response", "messages"],
)
def test_legacy_and_messages_templates_render_the_same_conversation(source):
    # Ollama's template_test.go TestExecuteWithMessages, "mistral system".
    assert render_go(source, SYSTEM_CHAT) == (
        "[INST] You are a helpful assistant!\n\nHello friend![/INST] Hello human![INST] "
        "What is your name?[/INST] "
    )


def test_legacy_last_turn_is_cut_after_response_so_an_assistant_prefix_continues():
    messages = [*CHAT, ChatMessage("assistant", "My name is Ollama and I")]
    source = "[INST] {{ .Prompt }}[/INST] {{ .Response }}</s>"
    assert render_go(source, messages) == (
        "[INST] Hello friend![/INST] Hello human!</s>[INST] What is your name?[/INST] "
        "My name is Ollama and I"
    )


def test_response_is_appended_when_a_template_names_neither_messages_nor_response():
    template = parse_go("{{ .System }} {{ .Prompt }}")
    assert template.identifiers == {"system", "prompt", "response"}
    assert not template.uses_messages
    assert render_go("Q: {{ .Prompt }}\nA:", USER) == "Q: Hello friend!\nA:"


def test_identifiers_include_variable_chains():
    assert parse_go("{{ range $.Messages }}{{ .Content }}{{ end }}").uses_messages


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ .Prompt ", "unclosed action"),
        ("{{ if .System }}x", r"\{\{if\}\} without \{\{end\}\}"),
        ("{{ end }}", r"unexpected \{\{end\}\}"),
        ("{{ nosuch .Prompt }}", 'function "nosuch" not defined'),
        ('{{define "x"}}{{end}}', "not supported"),
        ("{{ break }}", r"outside \{\{range\}\}"),
        ('{{ "unterminated }}', "unterminated quoted string"),
        ("line1\n{{ .A | }}", "line 2: missing command in pipeline"),
        ("{{ /* x */ }}", "unexpected"),
    ],
    ids=[
        "unclosed",
        "no-end",
        "stray-end",
        "unknown-function",
        "define",
        "break-outside",
        "bad-string",
        "bad-pipe",
        "comment-not-first",
    ],
)
def test_parse_errors_are_template_errors_with_the_reason(source, message):
    with pytest.raises(TemplateError, match=message):
        parse_go(source)


def test_runtime_errors_are_template_errors():
    with pytest.raises(TemplateError, match="can't evaluate field Nope"):
        _render("{{ range .Messages }}{{ .Nope }}{{ end }}")
    with pytest.raises(TemplateError, match='undefined variable "\\$x"'):
        _render("{{ $x }}")
