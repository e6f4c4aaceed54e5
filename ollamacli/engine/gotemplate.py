"""Ollama's Go chat templates: parse, validate and render them exactly the way Ollama does.

Follows ollama/template/template.go: the template sees `.System` (all system messages joined
by a blank line), `.Messages` (consecutive same-role messages merged), `.Tools`, `.Response`
(empty), and the functions `json`, `currentDate`, `yesterdayDate` and `toTypeScriptType` next
to Go's builtins. A template that mentions neither `.Messages` nor `.Response` gets
`{{ .Response }}` appended. A template without `.Messages` is a legacy one: it is rendered
once per (system, user, assistant) turn with `.System`/`.Prompt`/`.Response`, and the last
turn is cut just after `{{ .Response }}` so the prompt ends where the answer begins.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from ollamacli.engine.base import ChatMessage, ToolCall
from ollamacli.engine.budget import RenderBudget
from ollamacli.engine.goexec import Executor, GoStruct, JsonList, JsonMap, PropertyType
from ollamacli.engine.gofuncs import FUNCTIONS
from ollamacli.engine.goparse import (
    Action,
    Branch,
    Command,
    Field,
    Node,
    Operand,
    Parser,
    Pipe,
    Text,
    Variable,
    lex,
)
from ollamacli.engine.thinking import ThinkValue, think_enabled, think_level


@dataclass(frozen=True, slots=True)
class GoTemplate:
    """A parsed template and the identifiers it mentions (lower-cased, as Ollama compares)."""

    source: str
    nodes: tuple[Node, ...]
    identifiers: frozenset[str]

    @property
    def uses_messages(self) -> bool:
        """True for a messages template, False for a legacy per-turn one."""
        return "messages" in self.identifiers or "document" in self.identifiers

    def render(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[Mapping[str, object]] = (),
        think: ThinkValue = None,
        budget: RenderBudget | None = None,
    ) -> str:
        """The prompt for a conversation (`think` fills `.Think`, `.ThinkLevel`, `.IsThinkSet`),
        within `budget` (default: the standard limits)."""
        system, collated = collate(messages)
        executor = Executor(FUNCTIONS, budget or RenderBudget())
        think_values = {
            "Think": think_enabled(think),
            "ThinkLevel": think_level(think),
            "IsThinkSet": think is not None,
        }
        if self.uses_messages:
            data: dict[str, object] = {
                "System": system,
                "Messages": [_message(m) for m in collated],
                "Tools": JsonList(_tool(t) for t in tools) or None,
                **think_values,
            }
            return executor.execute(self.nodes, {**data, "Response": ""})
        return self._render_legacy(collated, executor, think_values)

    def _render_legacy(
        self,
        messages: Sequence[ChatMessage],
        executor: Executor,
        think_values: Mapping[str, object],
    ) -> str:
        parts: list[str] = []
        turn = {"System": "", "Prompt": "", "Response": ""}
        for message in messages:
            starts_turn = {
                "system": turn["Prompt"] or turn["Response"],
                "user": turn["Response"],
            }.get(message.role, "")
            if starts_turn:
                parts.append(executor.execute(self.nodes, {**turn, **think_values}))
                turn = {"System": "", "Prompt": "", "Response": ""}
            key = {"system": "System", "user": "Prompt", "assistant": "Response"}.get(message.role)
            if key:
                turn[key] = message.content
        last = _ResponseCut().nodes(self.nodes)
        parts.append(executor.execute(last, {**turn, **think_values}))
        return "".join(parts)


_RESPONSE_ACTION = Action(Pipe((Command((Field(("Response",)),)),)))


@functools.lru_cache(maxsize=64)
def parse_go(source: str) -> GoTemplate:
    """Parse a Go template (raises `TemplateError` with the line and the problem)."""
    nodes = Parser(lex(source), FUNCTIONS.__contains__).parse()
    identifiers = frozenset(name.lower() for name in _identifiers(nodes))
    if "messages" not in identifiers and "response" not in identifiers:
        nodes = (*nodes, _RESPONSE_ACTION)
        identifiers |= {"response"}
    return GoTemplate(source, nodes, identifiers)


def render_go(
    source: str,
    messages: Sequence[ChatMessage],
    *,
    tools: Sequence[Mapping[str, object]] = (),
    think: ThinkValue = None,
) -> str:
    """Render an Ollama Go template for a conversation."""
    return parse_go(source).render(messages, tools=tools, think=think)


def collate(messages: Sequence[ChatMessage]) -> tuple[str, list[ChatMessage]]:
    """All system texts joined, and the messages with same-role neighbours merged (not tools)."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    merged: list[ChatMessage] = []
    for message in messages:
        if merged and merged[-1].role == message.role and message.role != "tool":
            previous = merged[-1]
            merged[-1] = dataclasses.replace(
                previous, content=previous.content + "\n\n" + message.content
            )
        else:
            merged.append(message)
    return system, merged


def _identifiers(nodes: Sequence[Node]) -> list[str]:
    """Field and variable names, as Ollama's `Identifiers` collects them."""
    names: list[str] = []
    for node in nodes:
        if isinstance(node, Action):
            names += _pipe_identifiers(node.pipe)
        elif isinstance(node, Branch):
            names += _pipe_identifiers(node.pipe) + _identifiers(node.body)
            names += _identifiers(node.otherwise or ())
    return names


def _pipe_identifiers(pipe: Pipe) -> list[str]:
    names: list[str] = []
    for command in pipe.commands:
        for arg in command.args:
            if isinstance(arg, Field):
                names += arg.idents
            elif isinstance(arg, Variable):
                names += [arg.name, *arg.idents]
            elif isinstance(arg, Pipe):
                names += _pipe_identifiers(arg)
    return names


class _ResponseCut:
    """Ollama's `deleteNode`: keep everything up to the first `.Response` field, drop the rest."""

    def __init__(self) -> None:
        self.cut = False

    def nodes(self, nodes: Sequence[Node]) -> tuple[Node, ...]:
        kept = (self._node(node) for node in nodes)
        return tuple(node for node in kept if node is not None)

    def _node(self, node: Node) -> Node | None:
        if self.cut:
            return None
        if isinstance(node, Action):
            pipe = self._pipe(node.pipe)
            return Action(pipe) if pipe is not None else None
        if isinstance(node, Branch):
            body = self.nodes(node.body)
            otherwise = None if node.otherwise is None else self.nodes(node.otherwise)
            return Branch(node.kind, node.pipe, body, otherwise)
        return node

    def _pipe(self, pipe: Pipe) -> Pipe | None:
        commands: list[Command] = []
        for command in pipe.commands:
            args = [arg for arg in (self._arg(a) for a in command.args) if arg is not None]
            if not args:
                return None
            commands.append(Command(tuple(args)))
        return Pipe(tuple(commands), pipe.decl, pipe.assign)

    def _arg(self, arg: Operand) -> Operand | None:
        if self.cut:
            return None
        if isinstance(arg, Field) and "Response" in arg.idents:
            self.cut = True
            return arg
        if isinstance(arg, Pipe):
            return self._pipe(arg)
        return arg


def _message(message: ChatMessage) -> GoStruct:
    return GoStruct(
        "*template.templateMessage",
        {
            "Role": message.role,
            "Content": message.content,
            "Thinking": message.thinking,
            "Images": list(message.images) or None,
            "ToolCalls": [_tool_call(c, i) for i, c in enumerate(message.tool_calls)] or None,
            "ToolName": message.tool_name or "",
            "ToolCallID": "",
        },
    )


def _tool_call(call: ToolCall, index: int) -> GoStruct:
    function = GoStruct(
        "template.templateToolCallFunction",
        {"Index": index, "Name": call.name, "Arguments": JsonMap(call.arguments)},
    )
    return GoStruct("template.templateToolCall", {"ID": call.id or "", "Function": function})


def _get(mapping: object, key: str) -> object:
    return mapping.get(key) if isinstance(mapping, Mapping) else None


def _tool(spec: Mapping[str, object]) -> GoStruct:
    """A request tool (Ollama/OpenAI JSON) as Ollama's templateTool struct."""
    function, params = _get(spec, "function"), _get(_get(spec, "function"), "parameters")
    properties = _get(params, "properties")
    parameters = GoStruct(
        "template.templateToolFunctionParameters",
        {
            "Type": _get(params, "type") or "",
            "Defs": _get(params, "$defs"),
            "Items": _get(params, "items"),
            "Required": _get(params, "required") or None,
            "Properties": JsonMap(
                {str(k): _property(v) for k, v in properties.items()}
                if isinstance(properties, Mapping)
                else {}
            ),
        },
        (
            ("Type", "type", False),
            ("Defs", "$defs", True),
            ("Items", "items", True),
            ("Required", "required", True),
            ("Properties", "properties", False),
        ),
    )
    body = GoStruct(
        "template.templateToolFunction",
        {
            "Name": _get(function, "name") or "",
            "Description": _get(function, "description") or "",
            "Parameters": parameters,
        },
        (
            ("Name", "name", False),
            ("Description", "description", False),
            ("Parameters", "parameters", False),
        ),
        stringer=True,  # api.ToolFunction.String() is its JSON: qwen2.5 prints {{ .Function }}
    )
    return GoStruct(
        "template.templateTool",
        {"Type": _get(spec, "type") or "", "Items": _get(spec, "items"), "Function": body},
        (("Type", "type", False), ("Items", "items", True), ("Function", "function", False)),
        stringer=True,
    )


def _property_type(kind: object) -> PropertyType | None:
    """A schema's `type` (a name or a list of names) as Ollama's PropertyType."""
    if isinstance(kind, str):
        return PropertyType([kind])
    if isinstance(kind, list):
        return PropertyType(str(k) for k in kind)
    return None


def _property(spec: object) -> GoStruct:
    """A JSON-schema property as Ollama's api.ToolProperty (every field omitempty)."""
    kind = _get(spec, "type")
    nested = _get(spec, "properties")
    any_of = _get(spec, "anyOf")
    fields: dict[str, object] = {
        "AnyOf": [_property(p) for p in any_of] if isinstance(any_of, list) else None,
        "Type": _property_type(kind),
        "Items": _get(spec, "items"),
        "Description": _get(spec, "description") or "",
        "Enum": _get(spec, "enum"),
        "Properties": (
            JsonMap({str(k): _property(v) for k, v in nested.items()})
            if isinstance(nested, Mapping)
            else None
        ),
        "Required": _get(spec, "required"),
    }
    names = ("anyOf", "type", "items", "description", "enum", "properties", "required")
    tags = tuple((go, js, True) for go, js in zip(fields, names, strict=True))
    return GoStruct("api.ToolProperty", fields, tags)


def thinking_tags(template: GoTemplate) -> tuple[str, str]:
    """The tags around `{{ .Thinking }}` in a range over `.Messages` ("" when none), found as
    Ollama's thinking.InferTags finds them: the first and last text of the nearest enclosing
    list (the last such reference wins)."""
    found = ("", "")
    for body, pipes in _lists(template.nodes, in_messages=False):
        if any(_mentions_thinking(pipe) for pipe in pipes):
            texts = [node for node in body if not (isinstance(node, Text) and not node.text)]
            opening = texts[0].text.strip() if isinstance(texts[0], Text) else ""
            closing = texts[-1].text.strip() if isinstance(texts[-1], Text) else ""
            found = (opening, closing)
    return found


def _lists(
    nodes: Sequence[Node], *, in_messages: bool
) -> Iterator[tuple[Sequence[Node], list[Pipe]]]:
    """Each node list inside a range over `.Messages`, with the pipes that belong to it
    directly (its actions' and its branches' conditions), in document order."""
    pipes: list[Pipe] = []
    nested: list[tuple[Sequence[Node], list[Pipe]]] = []
    for node in nodes:
        if isinstance(node, Action):
            pipes.append(node.pipe)
        elif isinstance(node, Branch):
            pipes.append(node.pipe)
            # the nearest range decides, as in Ollama (a range over tool calls does not count)
            inside = _mentions(node.pipe, "Messages") if node.kind == "range" else in_messages
            nested += _lists(node.body, in_messages=inside)
            nested += _lists(node.otherwise or (), in_messages=inside)
    if in_messages and nodes:
        yield nodes, pipes
    yield from nested


def _mentions(pipe: Pipe, name: str) -> bool:
    for command in pipe.commands:
        for arg in command.args:
            if isinstance(arg, Field) and arg.idents[:1] == (name,):
                return True
            if isinstance(arg, Pipe) and _mentions(arg, name):
                return True
    return False


def _mentions_thinking(pipe: Pipe) -> bool:
    return _mentions(pipe, "Thinking")
