"""Chat templates: Go and Jinja forms of the same format give the same prompt; resolution order,
the no-template fallback, Gemma's system merge, and validation."""

from __future__ import annotations

import pytest

from ollamacli.engine.base import ChatMessage
from ollamacli.engine.templates import (
    DEFAULT_TEMPLATE,
    ChatTemplate,
    detect_kind,
    resolve_template,
    validate_template,
)
from ollamacli.errors import TemplateError

SYSTEM = ChatMessage("system", "You are a helpful assistant.")
HELLO = ChatMessage("user", "Hello, how are you?")
ANSWER = ChatMessage("assistant", "I'm doing great. How can I help you today?")
FOLLOW_UP = ChatMessage("user", "I'd like to show off how chat templating works!")

CONVERSATIONS = {
    "user": [HELLO],
    "user-assistant-user": [HELLO, ANSWER, FOLLOW_UP],
    "system-user-assistant-user": [SYSTEM, HELLO, ANSWER, FOLLOW_UP],
    "system-long-history": [
        SYSTEM,
        HELLO,
        ANSWER,
        FOLLOW_UP,
        ChatMessage("assistant", "Sure: templates turn messages into text."),
        ChatMessage("user", "Thanks!"),
    ],
}

# The forms below are the ones users meet: Ollama's library templates (Go, messages and the
# older per-turn "legacy" form) and the Hugging Face templates stored in GGUF files (Jinja).
CHATML_GO = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n"
)
CHATML_GO_LEGACY = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n"
)
CHATML_JINJA = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

LLAMA3_GO = (
    "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
    "{{ .Content }}<|eot_id|>\n{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
)
LLAMA3_GO_LEGACY = (
    "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>"
)
LLAMA3_JINJA = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}"
)

GEMMA_GO = (
    "{{- range $i, $_ := .Messages }}\n"
    "{{- $last := eq (len (slice $.Messages $i)) 1 }}\n"
    '{{- if eq .Role "user" }}<start_of_turn>user\n'
    "{{- if and (eq $i 1) $.System }}\n{{ $.System }}\n{{ end }}\n"
    "{{ .Content }}<end_of_turn>\n"
    '{{ else if eq .Role "assistant" }}<start_of_turn>model\n{{ .Content }}<end_of_turn>\n'
    "{{ end }}\n"
    "{{- if $last }}<start_of_turn>model\n{{ end }}\n"
    "{{- end }}"
)
GEMMA_JINJA = (  # Gemma 3: the system text opens the first user turn
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    '    {%- set first_user_prefix = "" -%}\n'
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    '        {{ raise_exception("Conversation roles must alternate user/assistant") }}\n'
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}{%- set role = \"model\" -%}\n"
    "    {%- else -%}{%- set role = message['role'] -%}{%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {{- message['content'] | trim -}}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}{{'<start_of_turn>model\\n'}}{%- endif -%}\n"
)
GEMMA1_JINJA = (  # Gemma 1/2: refuses a system role outright
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)

MISTRAL_GO = (
    "[INST] {{ range $index, $_ := .Messages }}\n"
    '{{- if eq .Role "system" }}{{ .Content }}\n\n'
    '{{ else if eq .Role "user" }}{{ .Content }}[/INST]\n'
    '{{- else if eq .Role "assistant" }} {{ .Content }}</s>[INST] {{ end }}\n'
    "{{- end }}"
)
MISTRAL_JINJA = (
    "[INST] {% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}\n\n"
    "{% elif message['role'] == 'user' %}{{ message['content'] }}[/INST]"
    "{% elif message['role'] == 'assistant' %} {{ message['content'] }}</s>[INST] "
    "{% endif %}{% endfor %}"
)

FAMILIES = {
    "chatml": (CHATML_GO, CHATML_GO_LEGACY, CHATML_JINJA),
    "llama3": (LLAMA3_GO, LLAMA3_GO_LEGACY, LLAMA3_JINJA),
    "gemma": (GEMMA_GO, None, GEMMA_JINJA),
    "mistral": (MISTRAL_GO, None, MISTRAL_JINJA),
}

# What Ollama's own Go renderer produces (ollama/template/testdata) for the chat with a system.
EXPECTED_WITH_SYSTEM = {
    "chatml": "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\nHello, how are you?<|im_end|>\n"
    "<|im_start|>assistant\nI'm doing great. How can I help you today?<|im_end|>\n"
    "<|im_start|>user\nI'd like to show off how chat templating works!<|im_end|>\n"
    "<|im_start|>assistant\n",
    "llama3": "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nHello, how are you?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
    "I'm doing great. How can I help you today?<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n"
    "I'd like to show off how chat templating works!<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "gemma": "<start_of_turn>user\nYou are a helpful assistant.\n\nHello, how are you?<end_of_turn>\n"
    "<start_of_turn>model\nI'm doing great. How can I help you today?<end_of_turn>\n"
    "<start_of_turn>user\nI'd like to show off how chat templating works!<end_of_turn>\n"
    "<start_of_turn>model\n",
    "mistral": "[INST] You are a helpful assistant.\n\nHello, how are you?[/INST] "
    "I'm doing great. How can I help you today?</s>[INST] "
    "I'd like to show off how chat templating works![/INST]",
}


def _render(source: str, messages: list[ChatMessage], bos: str = "") -> str:
    return resolve_template(source, bos_token=bos, eos_token="").render(messages)


@pytest.mark.parametrize("conversation", list(CONVERSATIONS))
@pytest.mark.parametrize("family", list(FAMILIES))
def test_go_and_jinja_forms_give_identical_prompts(family, conversation):
    go, legacy, jinja = FAMILIES[family]
    messages = CONVERSATIONS[conversation]
    assert detect_kind(go) == "go"
    assert detect_kind(jinja) == "jinja"
    expected = _render(go, messages)
    assert _render(jinja, messages) == expected
    if legacy is not None:
        assert detect_kind(legacy) == "go"
        assert _render(legacy, messages) == expected
    assert expected.count(HELLO.content) == 1
    assert expected.count(messages[-1].content) == 1


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_system_conversation_matches_ollamas_renderer(family):
    messages = CONVERSATIONS["system-user-assistant-user"]
    assert _render(FAMILIES[family][0], messages) == EXPECTED_WITH_SYSTEM[family]


def test_jinja_bos_token_is_written_where_go_relies_on_the_tokenizer():
    messages = CONVERSATIONS["user"]
    with_bos = _render(LLAMA3_JINJA, messages, bos="<|begin_of_text|>")
    assert with_bos == "<|begin_of_text|>" + _render(LLAMA3_GO, messages)


def test_a_template_that_refuses_system_gets_it_merged_into_the_first_user_turn():
    messages = CONVERSATIONS["system-user-assistant-user"]
    assert _render(GEMMA1_JINJA, messages) == EXPECTED_WITH_SYSTEM["gemma"]
    with pytest.raises(TemplateError, match="roles must alternate"):
        _render(GEMMA1_JINJA, [HELLO, HELLO])


def test_resolution_order_request_then_modelfile_then_gguf_then_fallback():
    assert resolve_template("A{{ .Prompt }}", "B", "C").source == "A{{ .Prompt }}"
    assert resolve_template(None, "B", "C").source == "B"
    assert resolve_template(None, "", CHATML_JINJA).kind == "jinja"
    fallback = resolve_template(None, None, None)
    assert fallback.kind == "go"
    assert fallback.source == DEFAULT_TEMPLATE == "{{ .Prompt }}"


def test_a_gguf_without_template_renders_ollamas_default_prompt_template():
    # Ollama's template.DefaultTemplate is `{{ .Prompt }}`: a legacy template rendered turn by
    # turn, with `{{ .Response }}` appended, so earlier answers follow their questions.
    prompt = resolve_template(None, None).render(CONVERSATIONS["system-user-assistant-user"])
    assert prompt == (
        "Hello, how are you?"
        "I'm doing great. How can I help you today?"
        "I'd like to show off how chat templating works!"
    )
    assert resolve_template(None, None).render([HELLO]) == "Hello, how are you?"


def test_go_templates_see_tools():
    source = "{{ if .Tools }}[{{ len .Tools }} tools]{{ end }}{{ range .Messages }}{{ end }}"
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert ChatTemplate(source, "go").render([HELLO], tools=tools) == "[1 tools]"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (CHATML_GO, "go"),
        (CHATML_JINJA, "jinja"),
        ("plain text, no actions", "go"),
        ("{{ bos_token }}{{ messages[0]['content'] }}", "jinja"),
    ],
    ids=["go", "jinja", "plain", "jinja-expressions-only"],
)
def test_validate_template_accepts_both_syntaxes(text, kind):
    assert validate_template(text) == kind


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ if .System }}unterminated", "template error: line 1: unexpected EOF"),
        ("{% for m in messages %}no end", "template error: line 1: Unexpected end of template"),
    ],
    ids=["go", "jinja"],
)
def test_validate_template_reports_the_problem(text, message):
    with pytest.raises(TemplateError, match=message):
        validate_template(text)
