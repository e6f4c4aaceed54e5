"""Reasoning traces: the `think` value, which templates think, and the `<think>` tag parser.

Follows Ollama: `think` is true/false or a level ("low", "medium", "high", "max"; api/types.go
ThinkValue), a bare `true` means level "medium" for templates that read `.ThinkLevel`. A Go
template thinks when a `{{ .Thinking }}` inside a range over `.Messages` sits between an
opening and a closing tag (thinking/template.go InferTags); a Jinja template thinks when it
writes `<think>` and `</think>` (server/images.go chatTemplateHasThinkingSupport).

`TagThinkingParser` is the streaming state machine of Ollama's thinking/parser.go: leading
blanks before the opening tag are skipped, blanks right after either tag are eaten, a tag
split over several pieces is held back until it is whole, and output that does not open with
the tag is content. Templates that already open the tag in the prompt (Qwen 3, DeepSeek R1)
start the parser inside the trace; `breaks` are tags that also end it. Unlike Ollama, a trace
with no closing tag at the end is flushed as thinking (a held partial tag included), never lost.

`FamilyTraceParser` is the trace reader of Ollama's own parsers for the families that name one
(model/parsers/: qwen3-thinking, qwen3.5, deepseek3, cogito, olmo3-think), which differ from
the template parser: they start inside the trace or not as the request says, never look for an
opening tag (Qwen's skip one written at the very start), keep blanks at the start of the trace
and trim them at its end, and for Qwen a `<tool_call>` also ends the trace, as that model may
skip the closing tag before a call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ollamacli.engine.base import ToolCall
from ollamacli.errors import InvalidRequestError

ThinkValue = bool | str | None
"""None: not set (the template decides); True/False; or one of `THINK_LEVELS`."""

THINK_LEVELS = ("low", "medium", "high", "max")


def check_think(value: object) -> ThinkValue:
    """A request's `think`, as Ollama's decoder accepts it (raises `InvalidRequestError`)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value in THINK_LEVELS:
        return value
    raise InvalidRequestError(
        f'invalid think value: {value!r} (must be "high", "medium", "low", "max", true, or false)'
    )


def think_enabled(value: ThinkValue) -> bool:
    """True when thinking was asked for in any way (a level counts)."""
    return value is True or isinstance(value, str)


def think_level(value: ThinkValue) -> str:
    """`.ThinkLevel`: the level, "medium" for a bare true, "" otherwise (ThinkValue.String)."""
    if isinstance(value, str):
        return value
    return "medium" if value is True else ""


@dataclass(frozen=True, slots=True)
class ThinkingSplit:
    """Output divided into the reasoning trace, the answer and (harmony) tool calls."""

    thinking: str = ""
    content: str = ""
    calls: tuple[ToolCall, ...] = ()


class OutputReader(Protocol):
    """A streaming splitter of model output (the `<think>` tags, or harmony channels)."""

    def push(self, text: str) -> ThinkingSplit:
        """Add a piece of output; returns what is certain now."""
        ...

    def finish(self) -> ThinkingSplit:
        """Whatever is still held when generation ends."""
        ...


_State = Literal["looking", "eat_open", "thinking", "eat_close", "done"]


class TagThinkingParser:
    """Splits streamed output into thinking (between the tags) and content."""

    def __init__(
        self,
        opening: str = "<think>",
        closing: str = "</think>",
        *,
        opened: bool = False,
        breaks: tuple[str, ...] = (),
    ) -> None:
        self.opening = opening
        self.closing = closing
        self.breaks = breaks  # tags that also end the trace, and begin the answer
        self.state: _State = "eat_open" if opened else "looking"
        self._held = ""

    def push(self, text: str) -> ThinkingSplit:
        """Add a piece of output; returns what is certain now (either part may be empty)."""
        self._held += text
        thinking: list[str] = []
        content: list[str] = []
        while True:
            piece_thinking, piece_content, again = self._step()
            thinking.append(piece_thinking)
            content.append(piece_content)
            if not again:
                return ThinkingSplit("".join(thinking), "".join(content))

    def finish(self) -> ThinkingSplit:
        """What is still held when generation ends: an unclosed trace is thinking; anything
        else held (blanks, a partial opening tag) is content."""
        held, self._held = self._held, ""
        if self.state == "thinking":
            return ThinkingSplit(thinking=held)
        if self.state in ("eat_open", "eat_close"):
            return ThinkingSplit()
        return ThinkingSplit(content=held)

    def _step(self) -> tuple[str, str, bool]:
        """One transition: (thinking, content, keep going)."""
        held = self._held
        if self.state == "looking":
            return self._looking(held)
        if self.state == "eat_open":
            trimmed = held.lstrip()
            self._held = trimmed
            if trimmed:
                self.state = "thinking"
                return "", "", True
            return "", "", False
        if self.state == "thinking":
            return self._thinking(held)
        if self.state == "eat_close":
            trimmed = held.lstrip()
            self._held = ""
            if trimmed:
                self.state = "done"
            return "", trimmed, False
        self._held = ""
        return "", held, False

    def _looking(self, held: str) -> tuple[str, str, bool]:
        trimmed = held.lstrip()
        if trimmed.startswith(self.opening):
            self._held = trimmed[len(self.opening) :]
            self.state = "eat_open"
            return "", "", True
        if not trimmed or self.opening.startswith(trimmed):
            return "", "", False  # blanks, or the tag may still be arriving
        self.state = "done"  # no trace: everything is the answer, blanks included
        self._held = ""
        return "", held, False

    def _thinking(self, held: str) -> tuple[str, str, bool]:
        thinking, tag, rest = held.partition(self.closing)
        if tag:
            self._held = rest.lstrip()
            self.state = "done" if self._held else "eat_close"
            answer, self._held = self._held, ""
            return thinking, answer, False
        starts = [i for i in (held.find(tag) for tag in self.breaks) if i >= 0]
        if starts:  # the model went on to a tool call without closing the trace
            self.state, self._held = "done", ""
            return held[: min(starts)].rstrip(), held[min(starts) :], False
        keep = max(_overlap(held, tag) for tag in (self.closing, *self.breaks))
        self._held = held[len(held) - keep :]
        return held[: len(held) - keep], "", False


_FamilyState = Literal["lead", "thinking", "eat_close", "content"]


class FamilyTraceParser:
    """The trace reader of Ollama's own parsers (model/parsers/: qwen3-thinking, qwen3.5,
    deepseek3, cogito, olmo3-think).

    Unlike the template parser above, these never look at the prompt or for an opening tag:
    the answer starts inside the trace or not (`inside`, decided from the request before the
    first token), and once the trace has closed, everything is the answer, a `<think>` the
    model writes again included. Blanks at the start of the trace are kept; those at its end
    are held back and dropped at the closing tag, and those after the tag are eaten. With
    `lead_tag` (Qwen 3, Qwen 3.5) one `<think>` the model writes at the start although the
    prompt opened the trace is skipped, with the blanks after it; a later one is part of the
    trace. `breaks` end the trace too and begin the answer (Qwen's `<tool_call>`). Unlike
    Ollama, a partial closing tag still held at the end is flushed as thinking."""

    def __init__(
        self,
        *,
        inside: bool,
        lead_tag: bool = False,
        opening: str = "<think>",
        closing: str = "</think>",
        breaks: tuple[str, ...] = (),
    ) -> None:
        self.opening = opening
        self.closing = closing
        self.breaks = breaks
        self.state: _FamilyState = ("lead" if lead_tag else "thinking") if inside else "content"
        self._held = ""
        self._trim = False  # the blanks after a skipped leading tag are not the trace

    def push(self, text: str) -> ThinkingSplit:
        """Add a piece of output; returns what is certain now (either part may be empty)."""
        self._held += text
        thinking: list[str] = []
        content: list[str] = []
        again = True
        while again:
            piece_thinking, piece_content, again = self._step()
            thinking.append(piece_thinking)
            content.append(piece_content)
        return ThinkingSplit("".join(thinking), "".join(content))

    def finish(self) -> ThinkingSplit:
        """What is still held at the end: a trace's held blanks go, a partial tag stays."""
        held, self._held = self._held, ""
        if self.state == "content":
            return ThinkingSplit(content=held)
        if self.state == "eat_close":
            return ThinkingSplit()
        return ThinkingSplit(thinking=held.strip())

    def _step(self) -> tuple[str, str, bool]:
        """One transition: (thinking, content, keep going)."""
        held = self._held
        if self.state == "content":
            self._held = ""
            return "", held, False
        if self.state == "eat_close":
            self._held = held.lstrip()
            if self._held:
                self.state = "content"
            return "", "", bool(self._held)
        if self.state == "lead":
            return self._lead(held)
        return self._thinking(held)

    def _lead(self, held: str) -> tuple[str, str, bool]:
        trimmed = held.lstrip()
        if trimmed.startswith(self.opening):
            self._held = trimmed[len(self.opening) :].lstrip()
            self.state, self._trim = "thinking", True
            return "", "", True
        if self.opening.startswith(trimmed):
            return "", "", False  # blanks, or the tag may still be arriving
        self.state = "thinking"  # no tag: the trace begins here, blanks and all
        return "", "", True

    def _thinking(self, held: str) -> tuple[str, str, bool]:
        if self._trim:
            held = self._held = held.lstrip()
            if not held:
                return "", "", False
            self._trim = False
        marks = [(held.find(tag), tag) for tag in (self.closing, *self.breaks) if tag in held]
        if marks:
            index, tag = min(marks)
            if tag == self.closing:
                self._held, self.state = held[index + len(tag) :], "eat_close"
            else:  # the model went on to a tool call without closing the trace
                self._held, self.state = held[index:], "content"
            return held[:index].rstrip(), "", True
        keep = max(_overlap(held, tag) for tag in (self.closing, *self.breaks))
        cut = len(held[: len(held) - keep].rstrip())  # blanks may be the end of the trace
        self._held = held[cut:]
        return held[:cut], "", False


def _overlap(text: str, tag: str) -> int:
    """Length of the longest end of `text` that begins `tag`."""
    for size in range(min(len(tag), len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


def prompt_opens(prompt: str, opening: str) -> bool:
    """True when the prompt itself ends with the opening tag (Qwen 3, DeepSeek R1 templates),
    so the model's output starts inside the trace."""
    return bool(opening) and prompt.rstrip().endswith(opening)


def jinja_thinks(source: str) -> bool:
    """Ollama's test for a Jinja chat template with a reasoning trace."""
    if "<think>" in source and "</think>" in source:
        return True
    splits = "content.split('</think>')" in source or 'content.split("</think>")' in source
    return splits and "reasoning_content" not in source and "<SPECIAL_12>" not in source


def strip_thinking(content: str, opening: str = "<think>", closing: str = "</think>") -> str:
    """An earlier assistant turn without its trace (Ollama's filterThinkTags)."""
    parser = TagThinkingParser(opening, closing)
    return parser.push(content).content + parser.finish().content


def last_user_index(roles: Sequence[str]) -> int:
    """Index of the last user turn (-1 when none)."""
    return max((i for i, role in enumerate(roles) if role == "user"), default=-1)
