"""Chat templates: turn a conversation into the prompt text a model was trained on.

Sources, first match wins: a per-request template, the Modelfile TEMPLATE, the GGUF's
`tokenizer.chat_template`, and finally a plain documented fallback. Jinja templates render in a
sandbox, the way Hugging Face renders them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import jinja2
import jinja2.sandbox

from ollamacli.engine.base import ChatMessage
from ollamacli.errors import TemplateError

TemplateKind = Literal["jinja", "go", "fallback"]

FALLBACK_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m.role == 'system' %}### System:\n{{ m.content }}\n\n"
    "{% elif m.role == 'user' %}### User:\n{{ m.content }}\n\n"
    "{% elif m.role == 'tool' %}### Tool result:\n{{ m.content }}\n\n"
    "{% else %}### Assistant:\n{{ m.content }}\n\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)
"""Used for a GGUF with no chat template: role headers a base model can follow."""


def detect_kind(text: str) -> TemplateKind:
    """Tell an Ollama Go template from a Jinja one."""
    if "{%" in text or "{#" in text:
        return "jinja"
    go_markers = ("{{ .", "{{- .", "{{.", "{{ if", "{{- if", "{{ range", "{{- range", "$.")
    if any(marker in text for marker in go_markers):
        return "go"
    return "jinja"


def _raise(message: str) -> None:
    raise TemplateError(f"chat template error: {message}")


def _tojson(value: object, indent: int | None = None, **_: object) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


def _environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def message_dict(message: ChatMessage) -> dict[str, object]:
    """A message in the shape Hugging Face templates expect."""
    data: dict[str, object] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        data["tool_calls"] = [
            {"type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_name:
        data["name"] = message.tool_name
    return data


@dataclass(frozen=True, slots=True)
class ChatTemplate:
    """A template and what it needs to render."""

    source: str
    kind: TemplateKind
    bos_token: str = ""
    eos_token: str = ""

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[Mapping[str, object]] = (),
        add_generation_prompt: bool = True,
    ) -> str:
        """The prompt text for a conversation."""
        if self.kind == "go":
            from ollamacli.engine.gotemplate import render_go

            return render_go(self.source, messages, tools=tools)
        return self._render_jinja(messages, tools, add_generation_prompt)

    def _render_jinja(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[Mapping[str, object]],
        add_generation_prompt: bool,
    ) -> str:
        try:
            template = _environment().from_string(self.source)
            return template.render(
                messages=[message_dict(m) for m in messages],
                tools=list(tools) or None,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except TemplateError:
            raise
        except jinja2.TemplateError as exc:
            raise TemplateError(f"chat template error: {exc}") from exc


def resolve_template(
    *candidates: str | None, bos_token: str = "", eos_token: str = ""
) -> ChatTemplate:
    """The first non-empty template among the candidates, or the plain fallback."""
    for text in candidates:
        if text:
            return ChatTemplate(text, detect_kind(text), bos_token, eos_token)
    return ChatTemplate(FALLBACK_TEMPLATE, "fallback", bos_token, eos_token)
