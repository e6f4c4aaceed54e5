"""Ollama's library templates for the thinking families (gpt-oss, magistral, qwen3, deepseek-r1)
render byte for byte as Go renders them.

tests/data/templates/go-rendered.json holds each case with the prompt Go's own text/template
made of it, given the data Ollama's template package passes (template.Values: collated
messages, `.System`, `.Tools`, `.Think`, `.ThinkLevel`, `.IsThinkSet`, currentDate fixed to
2026-01-01); render_go.go.txt is that program (Go 1.19). Template texts: magistral is the
registry blob sha256:35f7a1efc383..., gpt-oss the library template as published in public
copies (Ollama's x/create carries the same text with plainer browser comments)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ollamacli.engine.base import ChatMessage, ToolCall
from ollamacli.engine.gofuncs import FUNCTIONS
from ollamacli.engine.templates import ChatTemplate

TEMPLATES = Path(__file__).parents[1] / "data" / "templates"
CASES = json.loads((TEMPLATES / "go-rendered.json").read_text())


def message(data: dict[str, object]) -> ChatMessage:
    calls = data.get("tool_calls") or []
    assert isinstance(calls, list)
    return ChatMessage(
        str(data["role"]),
        str(data["content"]),
        tool_calls=tuple(ToolCall(c["name"], c["arguments"]) for c in calls),
        tool_name=str(data.get("tool_name") or "") or None,
        thinking=str(data.get("thinking") or ""),
    )


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_library_template_renders_as_go_does(case, monkeypatch):
    monkeypatch.setitem(FUNCTIONS, "currentDate", lambda *_: "2026-01-01")
    template = ChatTemplate((TEMPLATES / case["file"]).read_text(), "go")
    messages = [message(m) for m in case["messages"]]
    rendered = template.render(messages, tools=case["tools"] or (), think=case["think"])
    assert rendered == case["expected"]


def test_the_magistral_template_is_the_registry_blob():
    import hashlib

    text = (TEMPLATES / "magistral.gotmpl").read_bytes()
    assert hashlib.sha256(text).hexdigest().startswith("35f7a1efc383")
