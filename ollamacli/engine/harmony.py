"""gpt-oss output in OpenAI's harmony format, split the way Ollama's harmony parser reads it.

A harmony reply is a run of messages, `<|start|>assistant<|channel|>NAME<|message|>TEXT<|end|>`
(the prompt already opened the first `<|start|>assistant`). The `analysis` channel is the
reasoning trace, `final` is the answer, and a message addressed to a function
(`to=functions.NAME`, in the header before or after the channel, usually on `commentary`)
is a tool call whose text is the JSON arguments. `<|call|>` and `<|return|>` end generation
and never reach the parser. The channel markers are control tokens: the engine prints them
only when asked (`SamplingConfig.special_tokens`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from ollamacli.engine.base import ToolCall
from ollamacli.engine.thinking import ThinkingSplit

START, HEADER_END, END = "<|start|>", "<|message|>", "<|end|>"

_Mode = Literal["content", "thinking", "tool"]


@dataclass(frozen=True, slots=True)
class HarmonyHeader:
    """A message header: its role, channel and recipient (a function for a tool call)."""

    role: str = ""
    channel: str = ""
    recipient: str = ""


def parse_header(raw: str) -> HarmonyHeader:
    """`assistant<|channel|>commentary to=functions.f <|constrain|>json` and its variants."""
    raw = raw.replace("<|constrain|>", " <|constrain|>", 1).strip()
    channel = ""
    before, marker, after = raw.partition("<|channel|>")
    if marker:
        words = after.split(maxsplit=1)
        channel = words[0] if words else ""
        raw = (before + " " + (words[1] if len(words) > 1 else "")).strip()
    tokens = raw.split()
    if not tokens:
        return HarmonyHeader(channel=channel)
    role, rest = tokens[0], tokens[1:]
    if role.startswith("to="):
        return HarmonyHeader("tool", channel, role[3:])
    recipient = rest[0][3:] if rest and rest[0].startswith("to=") else ""
    return HarmonyHeader(role, channel, recipient)


class HarmonyReader:
    """Streams harmony output as thinking, content and tool calls."""

    def __init__(self, names: tuple[str, ...] = ()) -> None:
        self._held = START + "assistant"  # the prompt opened the first message
        self._state: Literal["start", "header", "body"] = "start"
        self._mode: _Mode = "content"
        self._names = names
        self._tool = ""
        self._arguments = ""
        self._calls: list[ToolCall] = []

    def push(self, text: str) -> ThinkingSplit:
        """Add a piece of output; returns the thinking and content that are certain now."""
        self._held += text
        thinking: list[str] = []
        content: list[str] = []
        while self._step(thinking, content):
            pass
        calls, self._calls = tuple(self._calls), []
        return ThinkingSplit("".join(thinking), "".join(content), calls)

    def finish(self) -> ThinkingSplit:
        """The end: text still held in a message body goes to its channel; an open call ends."""
        body = self._held if self._state == "body" else ""
        self._held = ""
        split = self._emit(body)
        self._end_message()
        return ThinkingSplit(split.thinking, split.content, tuple(self._calls))

    def _step(self, thinking: list[str], content: list[str]) -> bool:
        """One transition; True while there may be more to do with what is held."""
        held = self._held
        if self._state == "start":
            _, marker, after = held.partition(START)
            if not marker:
                return False
            self._held, self._state = after, "header"
            return True
        if self._state == "header":
            header, marker, after = held.partition(HEADER_END)
            if not marker:
                return False
            self._open(parse_header(header))
            self._held, self._state = after, "body"
            return True
        body, marker, after = held.partition(END)
        if not marker:
            keep = _overlap(held, END)
            body, self._held = held[: len(held) - keep], held[len(held) - keep :]
        else:
            self._held, self._state = after, "start"
        split = self._emit(body)
        thinking.append(split.thinking)
        content.append(split.content)
        if marker:
            self._end_message()
        return bool(marker)

    def _open(self, header: HarmonyHeader) -> None:
        if header.recipient:
            self._mode, self._tool, self._arguments = "tool", header.recipient, ""
        elif header.channel == "analysis":
            self._mode = "thinking"
        else:
            self._mode = "content"

    def _emit(self, text: str) -> ThinkingSplit:
        if self._mode == "tool":
            self._arguments += text
            return ThinkingSplit()
        if self._mode == "thinking":
            return ThinkingSplit(thinking=text)
        return ThinkingSplit(content=text)

    def _end_message(self) -> None:
        if self._mode == "tool" and self._tool:
            name = self._tool.removeprefix("functions.")
            try:
                arguments = json.loads(self._arguments) if self._arguments.strip() else {}
            except ValueError:
                arguments = None
            if isinstance(arguments, dict) and (not self._names or name in self._names):
                self._calls.append(ToolCall(name=name, arguments=arguments))
        self._mode, self._tool, self._arguments = "content", "", ""


def _overlap(text: str, tag: str) -> int:
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0
