"""Ollama's library templates for qwen3 and deepseek-r1 (tests/data/templates, copied from the
registry) render byte for byte as Ollama renders them for every `think` setting, and Jinja
templates get the thinking switches the families read."""

from __future__ import annotations

# ruff: noqa: RUF001  (DeepSeek's markers are spelled with full-width bars)
import pytest

from ollamacli.engine.base import ChatMessage
from ollamacli.engine.templates import ChatTemplate
from tests.engine.test_tools import TEMPLATES

QWEN3 = ChatTemplate((TEMPLATES / "qwen3.gotmpl").read_text(), "go")
R1 = ChatTemplate((TEMPLATES / "deepseek-r1.gotmpl").read_text(), "go")

HI = [ChatMessage("user", "Hi")]
MULTI = [
    ChatMessage("user", "Q1"),
    ChatMessage("assistant", "A1", thinking="T1"),
    ChatMessage("user", "Q2"),
]
PREFILL = [ChatMessage("user", "Q"), ChatMessage("assistant", "A", thinking="T")]


@pytest.mark.parametrize(
    ("messages", "think", "expected"),
    [
        (HI, None, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
        (HI, True, "<|im_start|>user\nHi /think<|im_end|>\n<|im_start|>assistant\n"),
        (HI, "high", "<|im_start|>user\nHi /think<|im_end|>\n<|im_start|>assistant\n"),
        (
            HI,
            False,
            "<|im_start|>user\nHi /no_think<|im_end|>\n"
            "<|im_start|>assistant\n<think>\n\n</think>\n\n",
        ),
        (
            MULTI,
            True,
            # the trace of a turn before the last question is left out
            "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
            "<|im_start|>user\nQ2 /think<|im_end|>\n<|im_start|>assistant\n",
        ),
        (
            PREFILL,
            True,
            "<|im_start|>user\nQ /think<|im_end|>\n<|im_start|>assistant\n<think>T</think>\nA",
        ),
        (
            PREFILL,
            None,
            "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA",
        ),
    ],
    ids=["unset", "true", "level", "false", "multi-turn", "prefill-with-trace", "prefill-unset"],
)
def test_qwen3_library_template(messages, think, expected):
    assert QWEN3.render(messages, think=think) == expected


@pytest.mark.parametrize(
    ("messages", "think", "expected"),
    [
        (HI, None, "<｜User｜>Hi<｜Assistant｜>"),
        (HI, True, "<｜User｜>Hi<｜Assistant｜>"),
        (HI, False, "<｜User｜>Hi<｜Assistant｜><think>\n\n</think>\n\n"),
        (
            [ChatMessage("system", "S"), *HI],
            False,
            "S<｜User｜>Hi<｜Assistant｜><think>\n\n</think>\n\n",
        ),
        (
            MULTI,
            True,
            "<｜User｜>Q1<｜Assistant｜>A1<｜end▁of▁sentence｜><｜User｜>Q2<｜Assistant｜>",
        ),
        (PREFILL, True, "<｜User｜>Q<｜Assistant｜><think>\nT\n</think>A"),
        (PREFILL, None, "<｜User｜>Q<｜Assistant｜>A"),
    ],
    ids=["unset", "true", "false", "system", "multi-turn", "prefill-with-trace", "prefill-unset"],
)
def test_deepseek_r1_library_template(messages, think, expected):
    assert R1.render(messages, think=think) == expected


def test_go_templates_see_the_think_values():
    source = "{{ .Think }}|{{ .ThinkLevel }}|{{ .IsThinkSet }}{{ range .Messages }}{{ end }}"
    template = ChatTemplate(source, "go")
    assert template.render(HI) == "false||false"
    assert template.render(HI, think=True) == "true|medium|true"
    assert template.render(HI, think="low") == "true|low|true"
    assert template.render(HI, think=False) == "false||true"
    legacy = ChatTemplate("{{ if .Think }}<think>{{ end }}{{ .Prompt }}", "go")
    assert legacy.render(HI, think=True) == "<think>Hi"


QWEN3_JINJA = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.reasoning_content %}<think>\n{{ m.reasoning_content }}\n</think>\n\n{% endif %}"
    "{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% endif %}{% endif %}"
)


def test_jinja_templates_get_enable_thinking_and_reasoning_effort():
    template = ChatTemplate(QWEN3_JINJA, "jinja")
    assert template.render(HI).endswith("<|im_start|>assistant\n")
    assert template.render(HI, think=True).endswith("<|im_start|>assistant\n")
    assert template.render(HI, think=False).endswith("assistant\n<think>\n\n</think>\n\n")
    traced = template.render(PREFILL, add_generation_prompt=False)
    assert "<|im_start|>assistant\n<think>\nT\n</think>\n\nA<|im_end|>" in traced
    effort = ChatTemplate(
        "{{ reasoning_effort | default('medium') }}|{{ thinking is defined and thinking }}",
        "jinja",
    )
    assert effort.render(HI) == "medium|False"
    assert effort.render(HI, think="low") == "low|True"
    assert effort.render(HI, think="max") == "high|True"  # gpt-oss knows no "max"
    assert effort.render(HI, think=False) == "medium|False"
