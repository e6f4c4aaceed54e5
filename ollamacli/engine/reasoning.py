"""Which reasoning format a model writes, and Ollama's RENDERER and PARSER names.

A model's trace is read one of two ways: between tags (`<think>`…`</think>`, or whatever tags
an Ollama Go template puts around `{{ .Thinking }}`), or from gpt-oss harmony channels. The
format comes from the Modelfile's PARSER when there is one, else from the template: a Go
template's inferred tags, a harmony template (`<|start|>`, `<|channel|>`, `<|end|>`), or a
Jinja template that writes `<think>` and `</think>`.

Ollama's newest families name a built-in renderer and parser (model/renderers/,
model/parsers/) instead of a Go template. Here a known RENDERER renders as Ollama's renderer
where engine/renderers.py has it (cogito, deepseek3.1, olmo3, olmo3.1, olmo3-think,
olmo3-32b-think, qwen3.5, qwen3-coder), else with the GGUF's own Jinja template (which already reads
`enable_thinking` and friends); a known PARSER picks the output reader of its family (and, for
qwen3, qwen3-thinking, qwen3-coder, qwen3.5, deepseek3 and cogito, the tool-call reader of
engine/familycalls.py); any
other name is refused when the model is created or pulled. For qwen3-thinking, qwen3.5,
deepseek3, cogito and olmo3-think the trace is read as Ollama's parser of that name reads it
(`FamilyTraceParser`: where it starts comes from the request, not the prompt).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ollamacli.engine.thinking import (
    FamilyTraceParser,
    OutputReader,
    TagThinkingParser,
    jinja_thinks,
    prompt_opens,
)
from ollamacli.errors import ModelfileError

ReaderKind = Literal["tags", "harmony"]


@dataclass(frozen=True, slots=True)
class ParserInit:
    """What a parser is told before the answer starts (Ollama's Parser.Init)."""

    think: bool = True  # thinking is on (a level counts)
    prefill: bool = False  # the conversation ends with an assistant turn that has content
    tools: bool = False  # tools were offered


@dataclass(frozen=True, slots=True)
class FamilyStart:
    """Where one of Ollama's own parsers (model/parsers/) starts: inside the trace or not,
    decided from the request and never from the prompt. A prefilled answer never starts
    inside it."""

    needs_think: bool = True  # only when thinking is on (olmo3-think: always)
    without_tools: bool = False  # and only when no tools are offered (cogito)
    lead_tag: bool = False  # one `<think>` the model writes anyway is skipped (Qwen)

    def inside(self, init: ParserInit) -> bool:
        """True when the answer begins inside the trace."""
        if init.prefill or (self.needs_think and not init.think):
            return False
        return not (self.without_tools and init.tools)


@dataclass(frozen=True, slots=True)
class ThinkingStyle:
    """How a model's reasoning trace is marked in its output."""

    kind: ReaderKind
    opening: str = "<think>"
    closing: str = "</think>"
    breaks: tuple[str, ...] = ()  # tags that end the trace too (Qwen's `<tool_call>`)
    family: FamilyStart | None = None  # read as Ollama's parser of that name reads it


TAGS = ThinkingStyle("tags")
HARMONY = ThinkingStyle("harmony")
_QWEN = ThinkingStyle("tags", breaks=("<tool_call>",), family=FamilyStart(lead_tag=True))

PARSERS: dict[str, ThinkingStyle | None] = {
    "qwen3": None,  # Qwen 3 instruct: no trace
    "qwen3-thinking": _QWEN,
    "qwen3.5": _QWEN,
    "qwen3-coder": None,
    "qwen3-vl-instruct": None,
    "qwen3-vl-thinking": TAGS,
    "deepseek3": ThinkingStyle("tags", family=FamilyStart()),
    "cogito": ThinkingStyle("tags", family=FamilyStart(without_tools=True)),
    "olmo3": None,
    "olmo3-think": ThinkingStyle("tags", family=FamilyStart(needs_think=False)),
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
"""Ollama's renderer names accepted here (those not in engine/renderers.py render with the GGUF's
Jinja chat template)."""


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


def output_reader(
    style: ThinkingStyle,
    prompt: str,
    names: tuple[str, ...] = (),
    init: ParserInit | None = None,
) -> OutputReader:
    """A fresh reader for one answer to `prompt` (which may already open the trace); a
    family's own parser starts as `init` says (default: thinking on, no prefill, no tools)."""
    if style.kind == "harmony":
        from ollamacli.engine.harmony import HarmonyReader

        return HarmonyReader(names, prompt)
    if style.family is not None:
        return FamilyTraceParser(
            inside=style.family.inside(init or ParserInit()),
            lead_tag=style.family.lead_tag,
            opening=style.opening,
            closing=style.closing,
            breaks=style.breaks,
        )
    opened = prompt_opens(prompt, style.opening)
    return TagThinkingParser(style.opening, style.closing, opened=opened, breaks=style.breaks)


BLANKS_AFTER_TRACE = "[ \\t\\r\\n]{0,4}"
"""What the grammar allows between a closing tag and a constrained answer (the tag parser eats
blanks there)."""

HARMONY_ANALYSIS = "<|channel|>analysis<|message|>"
HARMONY_FINAL = "<|channel|>final<|message|>"


def grammar_after_trace(
    style: ThinkingStyle,
    prompt: str,
    answer: str,
    *,
    thinking: bool,
    where: str = "format",
    final: bool = True,
) -> str:
    """The grammar for a constrained answer (`format`, a forced tool call) of a model that
    reasons: the trace is free text and only what follows it is constrained, as Ollama
    constrains only once the trace has closed.

    A template that opens the tag in the prompt leaves the model inside the trace, so the
    trace and its closing tag are required; otherwise a trace is allowed when thinking is on
    (the model may skip it), and not at all when it is off. gpt-oss writes its answer on the
    `final` channel (a forced call, `final=False`, writes its own header), after an optional
    `analysis` message."""
    from ollamacli.engine.structured import TraceShape, gbnf_literal, lead_then, trace_then

    if style.kind == "harmony":
        lead = HARMONY_FINAL if final else ""
        if not thinking:
            return lead_then(answer, lead, where=where) if lead else answer
        after = gbnf_literal("<|start|>assistant")
        shape = TraceShape(HARMONY_ANALYSIS, "<|end|>", after, lead)
    elif prompt_opens(prompt, style.opening):
        shape = TraceShape("", style.closing, BLANKS_AFTER_TRACE, required=True)
    elif thinking:
        shape = TraceShape(style.opening, style.closing, BLANKS_AFTER_TRACE)
    else:
        return answer
    return trace_then(answer, shape, where=where)
