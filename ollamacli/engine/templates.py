"""Chat templates: turn a conversation into the prompt text a model was trained on.

Sources, first match wins: a per-request template, the Modelfile TEMPLATE, the GGUF's
`tokenizer.chat_template`, and finally Ollama's default `{{ .Prompt }}` (template/template.go).
Jinja templates render in a sandbox, the way Hugging Face renders them, with the thinking
switches the families read: `enable_thinking` (Qwen 3), `thinking` (DeepSeek V3.1) and
`reasoning_effort` (gpt-oss), and each earlier turn's trace as `reasoning_content`/`thinking`.
Every rendering, Jinja or Go, runs under a `RenderBudget` (engine/budget.py): bounded steps,
time and size, and stopped by the request's cancel token.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from ollamacli.engine.base import CancelToken, ChatMessage
from ollamacli.engine.budget import RenderBudget
from ollamacli.engine.thinking import ThinkValue, think_enabled
from ollamacli.errors import TemplateError

if TYPE_CHECKING:  # jinja2 is imported on first use: `list` and `--help` never render a prompt
    import jinja2

    from ollamacli.engine.sandbox import BudgetedSandbox

TemplateKind = Literal["jinja", "go"]

DEFAULT_TEMPLATE = "{{ .Prompt }}"
"""Ollama's template for a model with neither a TEMPLATE nor a GGUF chat template."""


_GO_MARKERS = re.compile(r"\{\{-?\s*(\.|\$|(if|range|with|end|else|template|define)\b)")


def detect_kind(text: str) -> TemplateKind:
    """Tell an Ollama Go template from a Jinja one. Jinja has `{%`/`{#` tags or expressions Go
    cannot parse (`{{ messages[0]['content'] }}`); a broken Go template still counts as Go when
    it uses Go's forms (`{{ .Field }}`, `{{ $x }}`, `{{ if … }}`), so its error is reported."""
    if "{%" in text or "{#" in text:
        return "jinja"
    from ollamacli.engine.gotemplate import parse_go  # lazy, like jinja2: only prompts need it

    try:
        parse_go(text)
    except TemplateError:
        return "go" if _GO_MARKERS.search(text) else "jinja"
    return "go"


def validate_template(text: str) -> TemplateKind:
    """Check a template parses (Modelfile TEMPLATE at create time); raises `TemplateError`."""
    kind = detect_kind(text)
    if kind == "go":
        from ollamacli.engine.gotemplate import parse_go

        parse_go(text)
    else:
        _compile_jinja(text)
    return kind


def _raise(message: str) -> None:
    raise TemplateError(f"chat template error: {message}")


def _tojson(value: object, indent: int | None = None, **_: object) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


@functools.cache
def _environment() -> BudgetedSandbox:
    from ollamacli.engine.sandbox import BudgetedSandbox, add_filter

    env = BudgetedSandbox(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    add_filter(env, "tojson", _tojson)
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


@functools.lru_cache(maxsize=32)
def _compile_jinja(source: str) -> jinja2.Template:
    import jinja2

    try:
        return _environment().from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template error: line {exc.lineno}: {exc.message}") from exc
    except RecursionError as exc:
        raise TemplateError("template error: the template nests too deeply") from exc


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
    if message.thinking:
        data["reasoning_content"] = message.thinking  # Qwen 3, DeepSeek
        data["thinking"] = message.thinking  # gpt-oss
    return data


def thinking_switches(think: ThinkValue) -> dict[str, object]:
    """The variables Jinja templates read to turn reasoning on or off (none when unset, so
    each template keeps its own default)."""
    if think is None:
        return {}
    switches: dict[str, object] = {
        "enable_thinking": think_enabled(think),
        "thinking": think_enabled(think),
    }
    if isinstance(think, str):
        # gpt-oss knows low/medium/high only; Ollama maps "max" to "high" for harmony
        switches["reasoning_effort"] = "high" if think == "max" else think
    return switches


@dataclass(frozen=True, slots=True)
class ChatTemplate:
    """A template and what it needs to render."""

    source: str
    kind: TemplateKind
    bos_token: str = ""
    eos_token: str = ""
    renderer: str = ""  # an Ollama renderer of engine/renderers.py, used instead of `source`

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[Mapping[str, object]] = (),
        add_generation_prompt: bool = True,
        think: ThinkValue = None,
        cancel: CancelToken | None = None,
        budget: RenderBudget | None = None,
    ) -> str:
        """The prompt text for a conversation, within `budget` (default: the standard limits,
        stopped by `cancel`)."""
        budget = budget or RenderBudget(cancel=cancel)
        if self.renderer:
            from ollamacli.engine.renderers import render

            text = render(self.renderer, messages, tools, think)
            budget.check_size(len(text))
            return text
        if self.kind == "go":
            from ollamacli.engine.gotemplate import parse_go

            return parse_go(self.source).render(messages, tools=tools, think=think, budget=budget)
        extra = {"add_generation_prompt": add_generation_prompt, **thinking_switches(think)}
        return self._render_jinja(messages, tools, extra, budget)

    def _render_jinja(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[Mapping[str, object]],
        extra: Mapping[str, object],
        budget: RenderBudget,
    ) -> str:
        template = _compile_jinja(self.source)
        try:
            return self._jinja(template, messages, tools, extra, budget)
        except TemplateError:
            merged = merge_system(messages)
            if merged is None:
                raise
            # Gemma-style templates refuse a system role; Ollama's own Gemma templates put the
            # system text at the top of the first user turn instead, and so do we.
            return self._jinja(template, merged, tools, extra, budget)

    def _jinja(
        self,
        template: jinja2.Template,
        messages: Sequence[ChatMessage],
        tools: Sequence[Mapping[str, object]],
        extra: Mapping[str, object],
        budget: RenderBudget,
    ) -> str:
        from ollamacli.engine.sandbox import RENDER_ERRORS, budget_scope

        chunks: list[str] = []
        size = 0
        try:
            with budget_scope(budget):
                for chunk in template.generate(
                    messages=[message_dict(m) for m in messages],
                    tools=list(tools) or None,
                    bos_token=self.bos_token,
                    eos_token=self.eos_token,
                    **extra,
                ):
                    size += len(chunk)
                    budget.check_size(size)
                    chunks.append(chunk)
        except TemplateError:
            raise
        except RENDER_ERRORS as exc:
            raise TemplateError(f"chat template error: {exc}") from exc
        budget.check()
        return "".join(chunks)


def merge_system(messages: Sequence[ChatMessage]) -> list[ChatMessage] | None:
    """The conversation with its system text leading the first user turn (None if no system
    message or no user turn to carry it)."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    rest = [m for m in messages if m.role != "system"]
    first_user = next((i for i, m in enumerate(rest) if m.role == "user"), None)
    if not system or first_user is None:
        return None
    user = rest[first_user]
    rest[first_user] = dataclasses.replace(user, content=f"{system}\n\n{user.content}")
    return rest


def resolve_template(
    *candidates: str | None, bos_token: str = "", eos_token: str = ""
) -> ChatTemplate:
    """The first non-empty template among the candidates, or Ollama's `{{ .Prompt }}`."""
    for text in candidates:
        if text:
            return ChatTemplate(text, detect_kind(text), bos_token, eos_token)
    return ChatTemplate(DEFAULT_TEMPLATE, "go", bos_token, eos_token)
