"""Tools in prompts: which call syntax a chat template uses, tool instructions for templates
without a tools section, and grammars that force a valid call (`tool_choice`).

A template that mentions tools (`tools` in Jinja, `.Tools` in Go) gets the request's tools
itself, and its family decides how calls are parsed. A template that does not (SmolLM2's, the
plain fallback) cannot show tools to the model; rather than refusing (Ollama answers 400
"does not support tools"), we put a Hermes-style instructions block into the system message
(`tool_instructions`) and show earlier calls and results in the same syntax, so that any chat
model can be asked for calls, and they come back in a form the Hermes parser reads.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ollamacli.engine.base import ChatMessage, ToolCall
from ollamacli.engine.structured import check_json_schema
from ollamacli.engine.toolparse import ToolCallStream, ToolFamily
from ollamacli.errors import InvalidRequestError

ToolSpec = Mapping[str, object]

INSTRUCTIONS = """\
You can call functions to answer. The functions are described in JSON inside <tools></tools>:
<tools>
{tools}
</tools>
To call a function, answer with only a JSON object inside <tool_call></tool_call> tags:
<tool_call>
{{"name": "<function name>", "arguments": {{<argument name>: <value>, ...}}}}
</tool_call>"""
"""The block added to the system message when the template has no tools section."""

# How a forced call is written, per family: text before and after the JSON, and the name of
# the arguments key. Llama 3's instructions ask for "parameters"; Mistral writes a list.
_FORCED: dict[ToolFamily, tuple[str, str, str]] = {
    "hermes": ("<tool_call>\n", "\n</tool_call>", "arguments"),
    "injected": ("<tool_call>\n", "\n</tool_call>", "arguments"),
    "llama3": ("", "", "parameters"),
    "mistral": ("[", "]", "arguments"),
    "json": ("", "", "arguments"),
}
_ROOT_RULE = re.compile(r"^root ::=", re.MULTILINE)


def supports_tools(template: str) -> bool:
    """True when a chat template shows tools to the model (Ollama's `tools` capability)."""
    return ".Tools" in template or "tools" in template


def tool_family(template: str) -> ToolFamily:
    """The call syntax a template's model writes (`injected` when it has no tools section)."""
    if not supports_tools(template):
        return "injected"
    if "<tool_call>" in template:
        return "hermes"
    if "[TOOL_CALLS]" in template or "[AVAILABLE_TOOLS]" in template:
        return "mistral"
    if "<|python_tag|>" in template or '"parameters": dictionary' in template:
        return "llama3"
    return "json"


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """`tool_choice`: `auto` (the model decides), `none` (no tools), or `required` (a call
    must come; with `name`, a call of that function)."""

    mode: Literal["auto", "none", "required"] = "auto"
    name: str | None = None

    @property
    def forced(self) -> bool:
        """Decoding is constrained to a call."""
        return self.mode == "required"


def function_of(tool: ToolSpec, index: int) -> Mapping[str, object]:
    """The `function` object of a tool (`{"type": "function", "function": {...}}`)."""
    function = tool.get("function")
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise InvalidRequestError(f"tools[{index}]: a function with a name is required")
    return function


def tool_names(tools: Sequence[ToolSpec]) -> tuple[str, ...]:
    """The function names offered (raises on a tool without one)."""
    return tuple(str(function_of(tool, i)["name"]) for i, tool in enumerate(tools))


def parameters_of(function: Mapping[str, object]) -> Mapping[str, object]:
    """A function's parameter schema (an empty object schema when it has none)."""
    parameters = function.get("parameters")
    return parameters if isinstance(parameters, Mapping) else {"type": "object"}


def check_tools(tools: Sequence[ToolSpec], choice: ToolChoice) -> None:
    """Refuse bad tools before a model loads: unnamed functions, a `tool_choice` naming an
    unknown function or needing tools there are none of, and (when decoding will be forced)
    parameter schemas the grammar cannot enforce."""
    names = tool_names(tools)
    if choice.forced and not tools:
        raise InvalidRequestError("tool_choice requires a call but no tools were given")
    if choice.name is not None and choice.name not in names:
        raise InvalidRequestError(f'tool_choice names "{choice.name}", which is not in tools')
    if choice.forced:
        for index, tool in enumerate(tools):
            function = function_of(tool, index)
            if choice.name in (None, function["name"]):
                where = f"tools[{index}].function.parameters"
                check_json_schema(parameters_of(function), where=where)


def tool_instructions(tools: Sequence[ToolSpec]) -> str:
    """The system-message block that describes tools to a model whose template cannot."""
    lines = "\n".join(json.dumps(dict(tool), ensure_ascii=False) for tool in tools)
    return INSTRUCTIONS.format(tools=lines)


def format_call(call: ToolCall) -> str:
    """A past call, in the syntax the instructions ask for."""
    body = json.dumps({"name": call.name, "arguments": call.arguments}, ensure_ascii=False)
    return f"<tool_call>\n{body}\n</tool_call>"


def inject_tools(
    messages: Sequence[ChatMessage], tools: Sequence[ToolSpec], *, tool_role: bool = True
) -> list[ChatMessage]:
    """The conversation for a template without tools: instructions in the system message,
    earlier calls as `<tool_call>` text. Tool results stay `tool` turns (SmolLM2 answers from
    those best); with `tool_role=False`, for templates that refuse roles other than system,
    user and assistant, they become `<tool_response>` user turns."""
    block = tool_instructions(tools)
    adapted: list[ChatMessage] = []
    for message in messages:
        if message.role == "tool" and not tool_role:
            name = f"{message.tool_name}: " if message.tool_name else ""
            text = f"<tool_response>\n{name}{message.content}\n</tool_response>"
            adapted.append(ChatMessage("user", text))
        elif message.tool_calls:
            calls = "\n".join(format_call(c) for c in message.tool_calls)
            text = f"{message.content}\n{calls}" if message.content else calls
            adapted.append(ChatMessage(message.role, text))
        else:
            adapted.append(message)
    if adapted and adapted[0].role == "system":
        first = adapted[0]
        adapted[0] = dataclasses.replace(first, content=f"{first.content}\n\n{block}")
    else:
        adapted.insert(0, ChatMessage("system", block))
    return adapted


def forced_call_schema(
    tools: Sequence[ToolSpec], choice: ToolChoice, family: ToolFamily
) -> dict[str, object]:
    """The JSON schema of one call a forced `tool_choice` allows."""
    key = _FORCED[family][2]
    options: list[dict[str, object]] = []
    for index, tool in enumerate(tools):
        function = function_of(tool, index)
        if choice.name in (None, function["name"]):
            options.append(
                {
                    "type": "object",
                    "properties": {
                        "name": {"const": function["name"]},
                        key: parameters_of(function),
                    },
                    "required": ["name", key],
                }
            )
    return options[0] if len(options) == 1 else {"anyOf": options}


def forced_call_grammar(tools: Sequence[ToolSpec], choice: ToolChoice, family: ToolFamily) -> str:
    """GBNF for exactly one call in the family's syntax (the call's JSON comes from the
    schema converter; its start rule is renamed and wrapped in the family's markers)."""
    from ollamacli.engine.llama import schema_grammar

    schema = forced_call_schema(tools, choice, family)
    body = _ROOT_RULE.sub("forced-tool-call ::=", schema_grammar(schema, where="tools"))
    prefix, suffix, _ = _FORCED[family]
    parts = [json.dumps(text) for text in (prefix, suffix) if text]
    root = " forced-tool-call ".join(parts) if len(parts) == 2 else "forced-tool-call"
    return f"root ::= {root}\n{body}"


@dataclass(frozen=True, slots=True)
class ToolPlan:
    """How one request's tools reach the prompt, constrain decoding, and come back."""

    tools: tuple[ToolSpec, ...] = ()
    choice: ToolChoice = dataclasses.field(default_factory=ToolChoice)

    @property
    def active(self) -> bool:
        """Tools are offered to the model (some given, and `tool_choice` is not `none`)."""
        return bool(self.tools) and self.choice.mode != "none"

    def check(self) -> None:
        """Validate before loading (see `check_tools`)."""
        check_tools(self.tools, self.choice)

    def injects(self, template: str) -> bool:
        """Tools go into the system message because the template has no place for them."""
        return self.active and tool_family(template) == "injected"

    def prompt(
        self, template: str, messages: Sequence[ChatMessage], *, tool_role: bool = True
    ) -> tuple[list[ChatMessage], tuple[ToolSpec, ...]]:
        """The conversation and the tools to render it with, for this template."""
        if not self.active:
            return list(messages), ()
        if self.injects(template):
            return inject_tools(messages, self.tools, tool_role=tool_role), ()
        return list(messages), self.tools

    def grammar(self, template: str) -> str | None:
        """The grammar forcing a call, when `tool_choice` asks for one."""
        if not self.active or not self.choice.forced:
            return None
        return forced_call_grammar(self.tools, self.choice, tool_family(template))

    def splitter(self, template: str) -> ToolCallStream | None:
        """The parser that separates calls from content in this template's output."""
        if not self.active:
            return None
        return ToolCallStream(tool_family(template), tool_names(self.tools))
