"""Tool calls in model output: parsers for the common template families, and a stream splitter.

Models write calls in their template family's syntax:

- Hermes / Qwen (and the instructions we inject for templates without tools):
  `<tool_call>{"name": "f", "arguments": {...}}</tool_call>`, one block per call (a block may
  also hold a JSON list of calls).
- Llama 3.1+: `<|python_tag|>{"name": "f", "parameters": {...}}`, several separated by `;`,
  or the bare JSON object (Llama 3.2's own instructions ask for that).
- Mistral: `[TOOL_CALLS] [{"name": "f", "arguments": {...}}]`, or the newer
  `[TOOL_CALLS]f[ARGS]{...}`.
- Plain JSON: the whole answer is `{"name": ..., "arguments"/"parameters": ...}` or a list.

Control tokens such as `<|python_tag|>` and `[TOOL_CALLS]` usually render as nothing in our
output (llama.cpp does not print control tokens), which leaves the bare JSON: every family
therefore falls back to the plain-JSON parser. Output that does not parse is content, never an
error: a model that tries and fails to call a tool has still answered something.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from ollamacli.engine.base import ToolCall

ToolFamily = Literal["hermes", "llama3", "mistral", "json", "injected"]

_HERMES_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)
_FENCE = re.compile(r"\A```(?:json)?\s*(.*?)\s*```\Z", re.DOTALL)
_SEPARATORS = " \t\r\n;,"

MARKERS: dict[ToolFamily, tuple[str, ...]] = {
    "hermes": ("<tool_call>",),
    "injected": ("<tool_call>",),
    "llama3": ("<|python_tag|>",),
    "mistral": ("[TOOL_CALLS]",),
    "json": (),
}
"""Where a tool call starts, per family (besides JSON at the very start of the answer)."""


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """An answer split into its text and the tool calls it holds."""

    content: str
    calls: tuple[ToolCall, ...] = ()


def parse_tool_calls(text: str, family: ToolFamily, names: Sequence[str] = ()) -> ToolOutput:
    """Split model output into content and tool calls (all content when nothing parses).

    `names` are the functions offered: only a call of one of them counts (as in Ollama), so
    an answer that merely is JSON, or a made-up function, stays content."""
    parser = _PARSERS[family]
    found = parser(text, names) or _bare_json(text, names)
    return found or ToolOutput(text)


def _json_values(text: str) -> list[object] | None:
    """Every JSON value in `text`, separated by spaces, commas or semicolons (None if any
    part is not JSON)."""
    decoder = json.JSONDecoder()
    body = _strip_fence(text.strip())
    values: list[object] = []
    position = 0
    while True:
        while position < len(body) and body[position] in _SEPARATORS:
            position += 1
        if position >= len(body):
            return values or None
        try:
            value, position = decoder.raw_decode(body, position)
        except ValueError:
            return None
        values.append(value)


def _strip_fence(text: str) -> str:
    match = _FENCE.match(text)
    return match.group(1) if match else text


def _arguments(value: object) -> dict[str, object] | None:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError:
            return None
    return dict(value) if isinstance(value, dict) else None


def _call(value: object, names: Sequence[str]) -> ToolCall | None:
    """A call from `{"name", "arguments"|"parameters"}` (or OpenAI's `{"function": {...}}`)."""
    if not isinstance(value, dict):
        return None
    function = value.get("function")
    if isinstance(function, dict):
        value = function
    name = value.get("name")
    if not isinstance(name, str) or not name:
        return None
    if names and name not in names:
        return None
    arguments = _arguments(value.get("arguments", value.get("parameters")))
    return None if arguments is None else ToolCall(name=name, arguments=arguments)


def _calls(values: Sequence[object], names: Sequence[str]) -> tuple[ToolCall, ...] | None:
    """Calls from decoded JSON values (objects or lists of objects); None if one is not a call."""
    calls: list[ToolCall] = []
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            call = _call(item, names)
            if call is None:
                return None
            calls.append(call)
    return tuple(calls)


def _bare_json(text: str, names: Sequence[str]) -> ToolOutput | None:
    body = _strip_fence(text.strip())
    if not body.startswith(("{", "[")):
        return None
    values = _json_values(body)
    calls = _calls(values, names) if values is not None else None
    return ToolOutput("", calls) if calls else None


def _hermes(text: str, names: Sequence[str]) -> ToolOutput | None:
    blocks = list(_HERMES_BLOCK.finditer(text))
    if not blocks:
        return None
    calls: list[ToolCall] = []
    for block in blocks:
        body = block.group(1).strip()
        if body in ("", "[]"):
            continue  # "no call" in SmolLM2's own function-calling format
        values = _json_values(body)
        found = _calls(values, names) if values is not None else None
        if found is None:
            return None
        calls.extend(found)
    return ToolOutput(_HERMES_BLOCK.sub("", text).strip(), tuple(calls))


def _llama3(text: str, names: Sequence[str]) -> ToolOutput | None:
    head, marker, tail = text.partition("<|python_tag|>")
    if not marker:
        return None
    values = _json_values(tail)
    calls = _calls(values, names) if values is not None else None
    return ToolOutput(head.strip(), calls) if calls else None


def _mistral(text: str, names: Sequence[str]) -> ToolOutput | None:
    head, marker, tail = text.partition("[TOOL_CALLS]")
    if not marker:
        return None
    if "[ARGS]" in tail:
        calls = _mistral_args_calls(tail, names)
    else:
        values = _json_values(tail)
        calls = _calls(values, names) if values is not None else None
    return ToolOutput(head.strip(), calls) if calls else None


def _mistral_args_calls(tail: str, names: Sequence[str]) -> tuple[ToolCall, ...] | None:
    """`f[ARGS]{...}[TOOL_CALLS]g[ARGS]{...}` (Mistral Small 3.2, Devstral, Magistral)."""
    calls: list[ToolCall] = []
    for part in tail.split("[TOOL_CALLS]"):
        name, separator, raw = part.partition("[ARGS]")
        values = _json_values(raw) if separator else None
        if not name.strip() or values is None or len(values) != 1:
            return None
        call = _call({"name": name.strip(), "arguments": values[0]}, names)
        if call is None:
            return None
        calls.append(call)
    return tuple(calls)


def _no_markers(text: str, names: Sequence[str]) -> ToolOutput | None:
    return None  # plain-JSON templates: only the bare-JSON fallback applies


_PARSERS: dict[ToolFamily, Callable[[str, Sequence[str]], ToolOutput | None]] = {
    "hermes": _hermes,
    "injected": _hermes,
    "llama3": _llama3,
    "mistral": _mistral,
    "json": _no_markers,
}


class ToolCallStream:
    """Streams content while holding back what may be a tool call, parsed at the end.

    Text streams through until a call may be starting: a family marker (`<tool_call>`, ...),
    or `{`, `[` or a code fence as the first non-blank characters of the answer. From there on everything is
    held; `finish` parses it, and what is not a call comes out as content after all. A tail
    that could be the start of a marker (`<tool_`) waits for the next piece.
    """

    def __init__(self, family: ToolFamily, names: Sequence[str]) -> None:
        self.family = family
        self.names = tuple(names)
        self._markers = MARKERS[family]
        self._held = ""
        self._capturing = False
        self._started = False  # some non-blank content went out

    def push(self, text: str) -> str:
        """Take a piece of output; returns the content that can be sent now."""
        self._held += text
        if self._capturing:
            return ""
        if not self._started:
            stripped = self._held.lstrip()
            if not stripped:
                return ""
            if len(stripped) < 3 and "```".startswith(stripped):
                return ""  # maybe a fenced JSON call
            if stripped[0] in "{[" or stripped.startswith("```"):
                self._capturing = True
                return ""
        return self._release()

    def feed(self, text: str) -> ToolOutput:
        """`push` in the shape of the other call readers (calls come only at the end)."""
        return ToolOutput(self.push(text))

    def _release(self) -> str:
        held = self._held
        starts = [i for i in (held.find(m) for m in self._markers) if i >= 0]
        if starts:
            cut = min(starts)
            self._capturing = True
        else:
            cut = len(held) - _partial_marker(held, self._markers)
        out, self._held = held[:cut], held[cut:]
        self._started = self._started or bool(out.strip())
        return out

    def finish(self) -> ToolOutput:
        """The rest of the answer: held content and the parsed calls."""
        held, self._held = self._held, ""
        if not self._capturing:
            return ToolOutput(held)
        return parse_tool_calls(held, self.family, self.names)


def _partial_marker(text: str, markers: Sequence[str]) -> int:
    """Length of the longest end of `text` that begins some marker."""
    longest = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), longest, -1):
            if marker.startswith(text[-size:]):
                longest = size
                break
    return longest
