# ruff: noqa: RUF002  (DeepSeek's markers are spelled with full-width bars)
"""Tool calls of the families whose config names one of Ollama's built-in parsers.

Ollama reads these in Go (model/parsers/); the streams below follow the same rules, applied to
the answer once any reasoning trace is split off (engine/thinking.py):

- `qwen3` and `qwen3-thinking` write `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`,
  read block by block as the stream goes (the same rules as below, JSON inside).
- `qwen3-coder` and `qwen3.5` write XML-like calls, one per block::

      <tool_call>
      <function=get_weather>
      <parameter=city>
      Paris
      </parameter>
      </function>
      </tool_call>

  Each value loses one leading and one trailing newline and is typed by the offered tool's
  JSON schema (`parse_value`: null first, then boolean, integer, number, array, object,
  string). Blanks between the text and a call are dropped, and blanks at the end of a piece
  are held back until it is known whether a call follows.
- `deepseek3` (DeepSeek V3.1) writes `<｜tool▁calls▁begin｜>`, then per call
  `<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS_JSON<｜tool▁call▁end｜>`, then
  `<｜tool▁calls▁end｜>`; text inside `<｜tool▁output▁begin｜>…<｜tool▁output▁end｜>` is content.
- `cogito` uses the same markers, but a call reads `function<｜tool▁sep｜>NAME` followed by the
  arguments in a ```` ```json ```` fence, and tool outputs (`<｜tool▁outputs▁begin｜>…`) are
  dropped.

A marker split over several pieces is held back until it is whole; a qwen call cut short by
the end of the answer is dropped, as Ollama drops it. Unlike Ollama, a qwen block
that does not parse comes out as content (Ollama fails the request), text between two DeepSeek
call groups is kept, and a call is only read where the group's calls begin (Ollama skips text to
the next call it can find).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Protocol

from ollamacli.engine.base import ToolCall
from ollamacli.engine.renderers import (
    CALL_BEGIN,
    CALL_END,
    CALL_SEP,
    CALLS_BEGIN,
    CALLS_END,
    OUTPUT_BEGIN,
    OUTPUT_END,
    OUTPUTS_BEGIN,
    OUTPUTS_END,
)
from ollamacli.engine.toolparse import ToolOutput

ToolSpec = Mapping[str, object]

QWEN_OPEN, QWEN_CLOSE = "<tool_call>", "</tool_call>"
QWEN_PARSERS = frozenset({"qwen3-coder", "qwen3.5"})
QWEN3_PARSERS = frozenset({"qwen3", "qwen3-thinking"})
DEEPSEEK_PARSERS = frozenset({"deepseek3", "cogito"})
FAMILY_PARSERS = QWEN_PARSERS | QWEN3_PARSERS | DEEPSEEK_PARSERS
"""Parser names whose tool calls this module reads."""

_FUNCTION = re.compile(r"<function=([^>]+)>(.*?)</function>", re.DOTALL)
_PARAMETER = re.compile(r"<parameter=([^>]+)>(.*?)</parameter>", re.DOTALL)
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INT64 = 2**63
_COGITO_FENCE = "\n```json\n"


class CallStream(Protocol):
    """Splits an answer's stream into content and tool calls."""

    def feed(self, text: str) -> ToolOutput:
        """Take a piece of the answer; returns the content and calls certain now."""
        ...

    def finish(self) -> ToolOutput:
        """What is still held when the answer ends."""
        ...


def call_stream(parser: str | None, tools: Sequence[ToolSpec]) -> CallStream | None:
    """The call reader of a built-in parser name (None for other names). As in Ollama, the
    parser reads calls whether or not tools were offered."""
    if parser in QWEN_PARSERS:
        return QwenCallStream(tools)
    if parser in QWEN3_PARSERS:
        return QwenCallStream(tools, json_calls=True)
    if parser in DEEPSEEK_PARSERS:
        return DeepSeekCallStream(cogito=parser == "cogito")
    return None


def _partial(text: str, tags: Sequence[str]) -> int:
    """Length of the longest end of `text` that begins one of `tags` (a tag on its way)."""
    longest = 0
    for tag in tags:
        for size in range(min(len(tag), len(text)), longest, -1):
            if text.endswith(tag[:size]):
                longest = size
                break
    return longest


class QwenCallStream:
    """`<tool_call>` blocks with `<function=…>` and `<parameter=…>` inside (qwen3-coder), or
    with a JSON object (`json_calls`: qwen3)."""

    def __init__(self, tools: Sequence[ToolSpec] = (), *, json_calls: bool = False) -> None:
        self.tools = tuple(tools)
        self.json_calls = json_calls
        self._held = ""
        self._inside = False

    def feed(self, text: str) -> ToolOutput:
        self._held += text
        content: list[str] = []
        calls: list[ToolCall] = []
        while True:
            if self._inside:
                body, tag, rest = self._held.partition(QWEN_CLOSE)
                if not tag:
                    break  # a call is only read once it is whole
                self._held, self._inside = rest.lstrip(), False
                call = (
                    parse_qwen3_call(body) if self.json_calls else parse_qwen_call(body, self.tools)
                )
                if call is None:
                    content.append(QWEN_OPEN + body + QWEN_CLOSE)
                else:
                    calls.append(call)
                continue
            before, tag, rest = self._held.partition(QWEN_OPEN)
            if tag:
                content.append(before.rstrip())
                self._held, self._inside = rest, True
                continue
            # Hold a tag on its way and the blanks before it (dropped should a call follow).
            cut = len(self._held) - _partial(self._held, (QWEN_OPEN,))
            cut = len(self._held[:cut].rstrip())
            content.append(self._held[:cut])
            self._held = self._held[cut:]
            break
        return ToolOutput("".join(content), tuple(calls))

    def finish(self) -> ToolOutput:
        held, self._held = self._held, ""
        if self._inside:  # a call cut short is lost, as in Ollama (no call, no content)
            self._inside = False
            return ToolOutput("")
        return ToolOutput(held.rstrip())


def parse_qwen_call(raw: str, tools: Sequence[ToolSpec] = ()) -> ToolCall | None:
    """A call from the inside of a `<tool_call>` block (None when it holds no function)."""
    found = _FUNCTION.search(raw)
    if found is None:
        return None
    name, body = found.group(1), found.group(2)
    types = _parameter_types(tools, name)
    arguments: dict[str, object] = {}
    for parameter in _PARAMETER.finditer(body):
        key = parameter.group(1)
        arguments[key] = parse_value(parameter.group(2), types.get(key, ()))
    return ToolCall(name=name, arguments=arguments)


def parse_qwen3_call(raw: str) -> ToolCall | None:
    """A call from a qwen3 `<tool_call>` block: `{"name": ..., "arguments": {...}}` (None when
    it is not such an object or the name is empty)."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    name, arguments = value.get("name"), value.get("arguments", {})
    if not isinstance(name, str) or not name or not isinstance(arguments, dict):
        return None
    return ToolCall(name=name, arguments=arguments)


def _parameter_types(tools: Sequence[ToolSpec], name: str) -> dict[str, tuple[str, ...]]:
    """Each parameter's JSON-schema types for the offered function `name` (`anyOf` joined)."""
    for tool in tools:
        function = tool.get("function")
        if not isinstance(function, Mapping) or function.get("name") != name:
            continue
        parameters = function.get("parameters")
        properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
        if not isinstance(properties, Mapping):
            return {}
        return {str(key): _types(spec) for key, spec in properties.items()}
    return {}


def _types(spec: object) -> tuple[str, ...]:
    if not isinstance(spec, Mapping):
        return ()
    any_of = spec.get("anyOf")
    if isinstance(any_of, list) and any_of:
        return tuple(kind for option in any_of for kind in _types(option))
    kind = spec.get("type")
    if isinstance(kind, str):
        return (kind,)
    if isinstance(kind, list):
        return tuple(str(item) for item in kind)
    return ()


def parse_value(raw: str, types: Sequence[str] = ()) -> object:
    """A parameter's text as the value its schema types ask for (Ollama's precedence: null,
    boolean, integer, number, array, object, string); a value that fits no type is the text.
    A single leading and a single trailing newline are not part of the value."""
    raw = raw.removeprefix("\n").removesuffix("\n")
    if raw.lower() == "null":
        return None
    if "boolean" in types:
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        if len(types) == 1:
            return False  # not a boolean, where only a boolean will do
    return _scalar(raw, types)


def _scalar(raw: str, types: Sequence[str]) -> object:
    """An integer, number, array or object where the types allow and the text parses."""
    if "integer" in types and _INTEGER.fullmatch(raw) and -_INT64 <= int(raw) < _INT64:
        return int(raw)
    if "number" in types and _NUMBER.fullmatch(raw):
        number = float(raw)
        return int(number) if number.is_integer() else number
    for kind, shape in (("array", list), ("object", dict)):
        if kind in types:
            try:
                value = json.loads(raw)
            except ValueError:
                continue
            if isinstance(value, shape):
                return value
    return raw


_DEEPSEEK_OPENERS = (CALLS_BEGIN, OUTPUT_BEGIN)
_COGITO_OPENERS = (CALLS_BEGIN, OUTPUTS_BEGIN)


class DeepSeekCallStream:
    """DeepSeek V3.1's tool-call markers (`cogito`: Cogito's variant of them)."""

    def __init__(self, *, cogito: bool = False) -> None:
        self.cogito = cogito
        self._openers = _COGITO_OPENERS if cogito else _DEEPSEEK_OPENERS
        self._held = ""
        self._state = "content"  # or "calls", "output"

    def feed(self, text: str) -> ToolOutput:
        self._held += text
        content: list[str] = []
        calls: list[ToolCall] = []
        while self._held:
            if self._state == "content":
                again = self._content(content)
            elif self._state == "calls":
                again = self._calls(calls)
            else:
                again = self._output(content)
            if not again:
                break
        return ToolOutput("".join(content), tuple(calls))

    def finish(self) -> ToolOutput:
        """A partial marker at the end is content; calls or outputs left open are dropped
        (as Ollama drops them)."""
        held, self._held = self._held, ""
        return ToolOutput(held if self._state == "content" else "")

    def _content(self, content: list[str]) -> bool:
        held = self._held
        found = [(held.find(tag), tag) for tag in self._openers if tag in held]
        if not found:
            cut = len(held) - _partial(held, self._openers)
            content.append(held[:cut])
            self._held = held[cut:]
            return False
        start, tag = min(found)
        before = held[:start]
        keep_blanks = tag == OUTPUT_BEGIN  # DeepSeek keeps the text around outputs as is
        content.append(before if keep_blanks else before.rstrip())
        self._held = held[start + len(tag) :]
        self._state = "calls" if tag == CALLS_BEGIN else "output"
        return True

    def _calls(self, calls: list[ToolCall]) -> bool:
        held = self._held.lstrip()
        self._held = held
        if held.startswith(CALL_BEGIN):
            body, tag, rest = held[len(CALL_BEGIN) :].partition(CALL_END)
            if not tag:
                return False
            call = self._parse(body)
            if call is not None:
                calls.append(call)
            self._held = rest  # a call that does not parse is dropped, as in Ollama
            return True
        if held.startswith(CALLS_END):
            self._held = held[len(CALLS_END) :].lstrip()
            self._state = "content"
            return True
        if _partial(held, (CALL_BEGIN, CALLS_END)) == len(held):
            return False  # a marker on its way
        # Something else inside the group: skip to the next marker.
        marks = [i for i in (held.find(CALL_BEGIN), held.find(CALLS_END)) if i > 0]
        if not marks:
            self._held = held[len(held) - _partial(held, (CALL_BEGIN, CALLS_END)) :]
            return False
        self._held = held[min(marks) :]
        return True

    def _output(self, content: list[str]) -> bool:
        held = self._held
        if not self.cogito:
            body, tag, rest = held.partition(OUTPUT_END)
            if not tag:
                return False
            content.append(body)
            self._held, self._state = rest, "content"
            return True
        # Cogito: outputs are dropped up to the end of the group.
        _, tag, rest = held.partition(OUTPUTS_END)
        if not tag:
            return False
        self._held, self._state = rest.lstrip(), "content"
        return True

    def _parse(self, body: str) -> ToolCall | None:
        return parse_cogito_call(body) if self.cogito else parse_deepseek_call(body)


def parse_deepseek_call(body: str) -> ToolCall | None:
    """`NAME<｜tool▁sep｜>{...}` (None when the separator or the JSON object is missing)."""
    name, separator, raw = body.partition(CALL_SEP)
    if not separator:
        return None
    arguments = _object(raw.strip())
    return None if arguments is None else ToolCall(name=name.strip(), arguments=arguments)


def parse_cogito_call(body: str) -> ToolCall | None:
    """`function<｜tool▁sep｜>NAME` and the arguments in a ```` ```json ```` fence."""
    _, separator, rest = body.partition(CALL_SEP)
    name, fence, raw = rest.partition(_COGITO_FENCE)
    if not separator or not fence:
        return None
    raw, end, _ = raw.partition("\n```")
    arguments = _object(raw) if end else None
    return None if arguments is None else ToolCall(name=name.strip(), arguments=arguments)


def _object(raw: str) -> dict[str, object] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
