"""gpt-oss output in OpenAI's harmony format, split the way Ollama's harmony parser reads it.

A harmony reply is a run of messages, `<|start|>assistant<|channel|>NAME<|message|>TEXT<|end|>`
(the prompt already opened the first `<|start|>assistant`). The `analysis` channel is the
reasoning trace, `final` (or `commentary`) is the answer, and an `analysis` or
`commentary` message addressed to a function (`to=functions.NAME`, in the header before or
after the channel) is a tool call whose text is the JSON arguments. `<|call|>` and
`<|return|>` end generation (they end a message too, should an engine print them). The
channel markers are control tokens: the engine prints them
only when asked (`SamplingConfig.special_tokens`).

As in Ollama: a prompt that ends inside a message (a prefilled answer or trace) starts the
reader in that message's channel, and function names are shown to the model as identifiers
(`harmony_names`: "get weather" is written `get_weather`, duplicates numbered) and mapped back
in the calls read. A call goes out whatever function it names (offered or not, gpt-oss's
built-in tools included), and arguments that are not a JSON object (nothing at all included)
fail the request with an `EngineError` (harmony/harmonyparser.go). Unlike Ollama, which reads
one call when generation ends, each call is read when its message ends.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ollamacli.engine.base import ToolCall
from ollamacli.engine.thinking import ThinkingSplit
from ollamacli.engine.tools import function_of, tool_names
from ollamacli.errors import EngineError

START, HEADER_END, END = "<|start|>", "<|message|>", "<|end|>"
ENDS = (END, "<|call|>", "<|return|>")
"""What ends a message body (`<|call|>` and `<|return|>` also end generation, so they reach
the reader only from engines that print them)."""
BUILTIN_TOOLS = frozenset({"browser.open", "browser.search", "browser.find", "python"})
"""gpt-oss's built-in tools, whose names are shown as they are."""

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


def identifier(name: str) -> str:
    """A function name as a TypeScript-like identifier: blanks, dashes and dots become
    underscores, other characters but letters, digits, `_` and `$` go; a leading ASCII digit
    gets an underscore; nothing left is "unnamed" (Ollama's FunctionNameMap)."""
    kept = []
    for char in name:
        if char in " -.":
            kept.append("_")
        elif char in "_$" or unicodedata.category(char) in _LETTERS_AND_DIGITS:
            kept.append(char)
    candidate = "".join(kept) or "unnamed"
    return "_" + candidate if candidate[0] in "0123456789" else candidate


_LETTERS_AND_DIGITS = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Nd"})


def harmony_names(names: Sequence[str]) -> list[str]:
    """The name each offered function is shown under, in order (built-in tools keep theirs;
    a name taken already gets `_2`, `_3`...)."""
    shown: list[str] = []
    for name in names:
        base = identifier(name)
        candidate, number = base, 2
        while candidate in shown:
            candidate, number = f"{base}_{number}", number + 1
        shown.append(name if name in BUILTIN_TOOLS else candidate)
    return shown


def shown_tools(tools: Sequence[Mapping[str, object]]) -> tuple[Mapping[str, object], ...]:
    """The request's tools with their functions renamed as `harmony_names` shows them."""
    renamed = []
    for index, (tool, shown) in enumerate(
        zip(tools, harmony_names(tool_names(tools)), strict=True)
    ):
        function = function_of(tool, index)
        if function["name"] != shown:
            tool = {**tool, "function": {**function, "name": shown}}
        renamed.append(tool)
    return tuple(renamed)


def forced_call_grammar(tools: Sequence[Mapping[str, object]], choice_name: str | None) -> str:
    """GBNF for one call as gpt-oss writes it: `<|channel|>commentary to=functions.NAME
    <|constrain|>json<|message|>` and arguments that fit the function's parameters (any
    offered function, or the one `choice_name` names); names as `harmony_names` shows them."""
    from ollamacli.engine.llama import schema_grammar
    from ollamacli.engine.structured import check_grammar, gbnf_literal, prefixed_rules
    from ollamacli.engine.tools import parameters_of

    names = tool_names(tools)
    shown = harmony_names(names)
    calls, rules = [], []
    for index, tool in enumerate(tools):
        if choice_name not in (None, names[index]):
            continue
        arguments = schema_grammar(parameters_of(function_of(tool, index)), where="tools")
        prefix = f"call{index}"
        header = f"<|channel|>commentary to=functions.{shown[index]} <|constrain|>json{HEADER_END}"
        calls.append(f"{gbnf_literal(header)} {prefix}-root")
        rules.append(prefixed_rules(arguments, prefix))
    grammar = "root ::= " + " | ".join(calls) + "\n" + "\n".join(rules)
    check_grammar(grammar, where="tools")
    return grammar


def open_message(prompt: str) -> HarmonyHeader | None:
    """The header of the message a prompt leaves open (a prefill), None if it ends between
    messages or in a header (`<|start|>assistant`)."""
    _, start, rest = prompt.rpartition(START)
    header, marker, body = rest.partition(HEADER_END)
    if not start or not marker or END in body or "<|call|>" in body or "<|return|>" in body:
        return None
    return parse_header(header)


class HarmonyReader:
    """Streams harmony output as thinking, content and tool calls."""

    def __init__(self, names: tuple[str, ...] = (), prompt: str = "") -> None:
        self._held = START + "assistant"  # the prompt opened the first message
        self._state: Literal["start", "header", "body"] = "start"
        self._mode: _Mode = "content"
        self._originals = dict(zip(harmony_names(names), names, strict=True))
        self._tool = ""
        self._arguments = ""
        self._calls: list[ToolCall] = []
        prefill = open_message(prompt)
        if prefill is not None:  # the model goes on with a message the prompt began
            self._held, self._state = "", "body"
            self._open(prefill)

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
        body, marker, after = _until_end(held)
        if not marker:
            keep = max(_overlap(held, end) for end in ENDS)
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
        if header.recipient and header.channel in ("analysis", "commentary"):
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
            shown = self._tool.removeprefix("functions.")
            name = self._originals.get(shown, shown)
            self._calls.append(ToolCall(name=name, arguments=_arguments(self._arguments)))
        self._mode, self._tool, self._arguments = "content", "", ""


def _arguments(raw: str) -> dict[str, object]:
    """A call's arguments; anything but a JSON object fails the request, as in Ollama
    (HarmonyMessageHandler.Add: "error parsing tool call"), rather than losing the call."""
    try:
        arguments = json.loads(raw)
    except ValueError as exc:
        raise EngineError(f"error parsing tool call: raw='{raw}', err={exc}") from exc
    if not isinstance(arguments, dict):
        raise EngineError(f"error parsing tool call: raw='{raw}', err=not a JSON object")
    return arguments


def _until_end(text: str) -> tuple[str, str, str]:
    """`text` split at the first of `ENDS`: (body, marker, rest); no marker: (text, "", "")."""
    found = [(text.find(end), end) for end in ENDS if end in text]
    if not found:
        return text, "", ""
    index, end = min(found)
    return text[:index], end, text[index + len(end) :]


def _overlap(text: str, tag: str) -> int:
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0
