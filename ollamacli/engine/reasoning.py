"""Which reasoning format a model writes, and Ollama's RENDERER and PARSER names.

A model's trace is read one of two ways: between tags (`<think>`…`</think>`, or whatever tags
an Ollama Go template puts around `{{ .Thinking }}`), or from gpt-oss harmony channels. The
format comes from the Modelfile's PARSER when there is one, else from the template: a Go
template's inferred tags, a harmony template (`<|start|>`, `<|channel|>`, `<|end|>`), or a
Jinja template that writes `<think>` and `</think>`.

Ollama's newest families name a built-in renderer and parser (model/renderers/,
model/parsers/) instead of a Go template. Here a known RENDERER renders with the GGUF's own
Jinja template (which already reads `enable_thinking` and friends), and a known PARSER picks
the output reader of its family; any other name is refused when the model is created or
pulled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ollamacli.engine.thinking import OutputReader, TagThinkingParser, jinja_thinks, prompt_opens
from ollamacli.errors import ModelfileError

ReaderKind = Literal["tags", "harmony"]


@dataclass(frozen=True, slots=True)
class ThinkingStyle:
    """How a model's reasoning trace is marked in its output."""

    kind: ReaderKind
    opening: str = "<think>"
    closing: str = "</think>"


TAGS = ThinkingStyle("tags")
HARMONY = ThinkingStyle("harmony")

PARSERS: dict[str, ThinkingStyle | None] = {
    "qwen3": None,  # Qwen 3 instruct: no trace
    "qwen3-thinking": TAGS,
    "qwen3.5": TAGS,
    "qwen3-coder": None,
    "qwen3-vl-instruct": None,
    "qwen3-vl-thinking": TAGS,
    "deepseek3": TAGS,
    "cogito": TAGS,
    "olmo3": None,
    "olmo3-think": TAGS,
    "ministral": None,
    "nemotron-3-nano": TAGS,
    "lfm2": None,
    "lfm2-thinking": TAGS,
    "glm-4.7": TAGS,
    "harmony": HARMONY,
    "passthrough": None,
}
"""Ollama's parser names this version reads, and the trace format of each (None: no trace)."""

RENDERERS = frozenset(
    {
        "qwen3-coder",
        "qwen3-vl-instruct",
        "qwen3-vl-thinking",
        "qwen3.5",
        "cogito",
        "deepseek3.1",
        "olmo3",
        "olmo3.1",
        "olmo3-think",
        "olmo3-32b-think",
        "nemotron-3-nano",
        "glm-4.7",
        "lfm2",
        "lfm2-thinking",
    }
)
"""Ollama's renderer names accepted here; each renders with the GGUF's Jinja chat template."""


def check_renderer_parser(renderer: str | None, parser: str | None, *, source: str = "") -> None:
    """Refuse a RENDERER or PARSER name this version cannot honour (raises `ModelfileError`)."""
    if renderer and renderer not in RENDERERS:
        raise ModelfileError(
            f'unknown RENDERER "{renderer}"',
            path=source or "Modelfile",
            hint=f"known renderers: {', '.join(sorted(RENDERERS))}",
        )
    if parser and parser not in PARSERS:
        raise ModelfileError(
            f'unknown PARSER "{parser}"',
            path=source or "Modelfile",
            hint=f"known parsers: {', '.join(sorted(PARSERS))}",
        )


def is_harmony(source: str) -> bool:
    """A gpt-oss template (Ollama checks the family too; the markers are specific enough)."""
    return all(marker in source for marker in ("<|start|>", "<|end|>", "<|channel|>"))


def thinking_style(source: str, kind: str, parser: str | None = None) -> ThinkingStyle | None:
    """The trace format of a model with this template (and PARSER), None if it has none."""
    if parser:
        return PARSERS.get(parser)
    if is_harmony(source):
        return HARMONY
    if kind == "go":
        from ollamacli.engine.gotemplate import parse_go, thinking_tags

        opening, closing = thinking_tags(parse_go(source))
        return ThinkingStyle("tags", opening, closing) if opening and closing else None
    return TAGS if jinja_thinks(source) else None


def output_reader(style: ThinkingStyle, prompt: str, names: tuple[str, ...] = ()) -> OutputReader:
    """A fresh reader for one answer to `prompt` (which may already open the trace)."""
    if style.kind == "harmony":
        from ollamacli.engine.harmony import HarmonyReader

        return HarmonyReader(names)
    return TagThinkingParser(
        style.opening, style.closing, opened=prompt_opens(prompt, style.opening)
    )
