"""Evaluate a parsed Go template (goparse.py) with Go `text/template` semantics.

Values are plain Python data: `dict` behaves as a Go map (`.key` lookup, missing keys are
zero with Ollama's `missingkey=zero`, ranged in key order), `GoStruct` as a Go struct (field
access by Go name, JSON in struct order). Printing and `json` follow Go's `fmt` and
`encoding/json` closely enough for chat templates.
"""

from __future__ import annotations

import base64
import functools
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from ollamacli.engine.budget import RenderBudget
from ollamacli.engine.goparse import (
    Action,
    Branch,
    Chain,
    Command,
    Dot,
    Field,
    Function,
    Literal,
    LoopControl,
    Node,
    Operand,
    Pipe,
    Text,
    Variable,
)
from ollamacli.errors import TemplateError

GoFunction = Callable[..., object]


class FunctionError(Exception):
    """Raised by a template function; reported as Go does (`error calling f: …`)."""


@dataclass(frozen=True, slots=True)
class GoStruct:
    """A Go struct: `fields` by Go name; `tags` give JSON names and omitempty, in order."""

    type_name: str
    fields: Mapping[str, object]
    tags: tuple[tuple[str, str, bool], ...] = ()
    stringer: bool = False  # has a String() method that prints its JSON


class JsonMap(dict[str, object]):
    """A Go map type whose String() method prints JSON (Ollama's tool arguments)."""


class JsonList(list[object]):
    """A Go slice type whose String() method prints JSON (Ollama's templateTools: `{{ .Tools }}`
    prints the tools as a JSON array)."""


class PropertyType(list[str]):
    """Ollama's api.PropertyType: a JSON-schema `type` as a list of names. It prints as its one
    name (several: `[a b]`) and marshals as a string when it holds one name."""


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


_MISSING = object()  # no pipeline value to pass on


def is_true(value: object) -> bool:
    """Go's truth: false, 0, nil and empty strings, slices and maps are false."""
    if isinstance(value, GoStruct):
        return True
    if isinstance(value, (str, bytes, list, tuple, dict)):
        return len(value) > 0
    return bool(value)


def go_float(value: float) -> str:
    """A float as Go's %v prints it: shortest digits, exponent form outside 1e-4 <= |x| < 1e6."""
    if not math.isfinite(value):
        return "NaN" if value != value else ("+Inf" if value > 0 else "-Inf")
    if value == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    magnitude = len(digits) + exponent - 1
    prefix = "-" if sign else ""
    if -4 <= magnitude < 6:
        return prefix + format(Decimal((0, digits, exponent)), "f")
    mantissa = str(digits[0]) + ("." + "".join(map(str, digits[1:])) if len(digits) > 1 else "")
    return f"{prefix}{mantissa}e{'-' if magnitude < 0 else '+'}{abs(magnitude):02d}"


def format_value(value: object, *, nested: bool = False) -> str:
    """A value as `{{ value }}` prints it."""
    if value is None:
        return "<nil>" if nested else "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, PropertyType):
        return value[0] if len(value) == 1 else ("[" + " ".join(value) + "]" if value else "")
    if isinstance(value, (JsonMap, JsonList)) or (isinstance(value, GoStruct) and value.stringer):
        return to_json(value)
    if isinstance(value, GoStruct):
        return "{" + " ".join(format_value(v, nested=True) for v in value.fields.values()) + "}"
    if isinstance(value, Mapping):
        items = (f"{k}:{format_value(value[k], nested=True)}" for k in sorted(value))
        return "map[" + " ".join(items) + "]"
    if isinstance(value, (list, tuple, bytes)):
        return "[" + " ".join(format_value(v, nested=True) for v in value) + "]"
    return str(value)


def jsonable(value: object) -> object:
    """The value as Go's encoding/json sees it (maps sorted, structs in field order)."""
    if isinstance(value, GoStruct):
        tags = value.tags or tuple((name, name, False) for name in value.fields)
        return {
            json_name: jsonable(value.fields[go_name])
            for go_name, json_name, omitempty in tags
            if not (omitempty and not is_true(value.fields.get(go_name)))
        }
    if isinstance(value, PropertyType) and len(value) == 1:
        return value[0]
    if isinstance(value, Mapping):
        return {str(k): jsonable(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    return value


def to_json(value: object) -> str:
    """Compact JSON with Go's HTML-safe escaping of <, > and &."""
    text = json.dumps(jsonable(value), ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


@dataclass(slots=True)
class Executor:
    """Runs a node tree against data; one instance per rendering, within its budget: every
    range iteration and function call is a step, and no string may outgrow the budget."""

    functions: Mapping[str, GoFunction]
    budget: RenderBudget = field(default_factory=RenderBudget)
    out: list[str] = field(default_factory=list)
    size: int = 0
    variables: list[tuple[str, object]] = field(default_factory=list)

    def execute(self, nodes: Sequence[Node], data: object) -> str:
        self.out, self.size, self.variables = [], 0, [("$", data)]
        try:
            self._walk(data, nodes)
        except RecursionError as exc:
            raise TemplateError("template error: template nests too deeply") from exc
        self.budget.check()
        return "".join(self.out)

    def _write(self, text: str) -> None:
        self.size += len(text)
        self.budget.check_size(self.size)
        self.out.append(text)

    def _walk(self, dot: object, nodes: Sequence[Node]) -> None:
        for node in nodes:
            if isinstance(node, Text):
                self._write(node.text)
            elif isinstance(node, Action):
                value = self._pipe(dot, node.pipe)
                if not node.pipe.decl:
                    self._write(format_value(value))
            elif isinstance(node, Branch):
                self._branch(dot, node)
            elif isinstance(node, LoopControl):
                raise _Break() if node.kind == "break" else _Continue()

    def _branch(self, dot: object, node: Branch) -> None:
        mark = len(self.variables)
        try:
            if node.kind == "range":
                self._range(dot, node)
                return
            value = self._pipe(dot, node.pipe)
            if is_true(value):
                self._walk(value if node.kind == "with" else dot, node.body)
            elif node.otherwise is not None:
                self._walk(dot, node.otherwise)
        finally:
            del self.variables[mark:]

    def _range(self, dot: object, node: Branch) -> None:
        value = self._pipe(dot, node.pipe)
        decl = node.pipe.decl
        ranged = False
        if isinstance(value, int) and not isinstance(value, bool):
            self.budget.check_steps(value)
        for index, element in _elements(value):
            self.budget.tick()
            ranged = True
            if decl:
                self._bind(decl, node.pipe.assign, index, element)
            mark = len(self.variables)
            try:
                self._walk(element, node.body)
            except _Continue:
                pass
            except _Break:
                break
            finally:
                del self.variables[mark:]
        if not ranged and node.otherwise is not None:
            self._walk(dot, node.otherwise)

    def _bind(self, decl: tuple[str, ...], assign: bool, index: object, element: object) -> None:
        """Set the range variables: one gets the element; two get index and element."""
        values = (element,) if len(decl) == 1 else (index, element)
        for name, value in zip(decl, values, strict=True):
            self._set(name, value)

    def _pipe(self, dot: object, pipe: Pipe) -> object:
        value: object = _MISSING
        for command in pipe.commands:
            value = self._command(dot, command, value)
        for name in pipe.decl:
            if pipe.assign:
                self._set(name, value)
            else:
                self.variables.append((name, value))
        return value

    def _command(self, dot: object, command: Command, final: object) -> object:
        first, args = command.args[0], command.args[1:]
        if isinstance(first, Function):
            return self._call(dot, first.name, args, final)
        if isinstance(first, Field):
            return self._fields(dot, first.idents, args, final)
        if isinstance(first, Chain):
            return self._fields(self._pipe(dot, first.operand), first.idents, args, final)
        if isinstance(first, Variable) and first.idents:
            return self._fields(self._lookup(first.name), first.idents, args, final)
        if args or final is not _MISSING:
            raise TemplateError(f"template error: can't give argument to non-function {first}")
        if isinstance(first, Literal) and first.value is None:
            raise TemplateError("template error: nil is not a command")
        return self._value(dot, first)

    def _value(self, dot: object, operand: Operand) -> object:
        """An operand used as an argument."""
        if isinstance(operand, Dot):
            return dot
        if isinstance(operand, Literal):
            return operand.value
        if isinstance(operand, Variable):
            return self._fields(self._lookup(operand.name), operand.idents, (), _MISSING)
        if isinstance(operand, Field):
            return self._fields(dot, operand.idents, (), _MISSING)
        if isinstance(operand, Chain):
            return self._fields(self._pipe(dot, operand.operand), operand.idents, (), _MISSING)
        if isinstance(operand, Function):
            return self._call(dot, operand.name, (), _MISSING)
        return self._pipe(dot, operand)

    def _fields(
        self, receiver: object, idents: Sequence[str], args: Sequence[Operand], final: object
    ) -> object:
        for name in idents:
            receiver = _field(receiver, name)
        if args or final is not _MISSING:
            raise TemplateError(
                f"template error: {idents[-1]} has arguments but cannot be invoked as function"
            )
        return receiver

    def _call(self, dot: object, name: str, args: Sequence[Operand], final: object) -> object:
        thunks: list[Callable[[], object]] = [functools.partial(self._value, dot, a) for a in args]
        if final is not _MISSING:
            thunks.append(lambda: final)
        if name in ("and", "or"):
            return _short_circuit(name, thunks)
        values = [thunk() for thunk in thunks]
        self.budget.tick()
        try:
            result = self.functions[name](*values)
        except (FunctionError, TypeError, ValueError, ArithmeticError) as exc:
            raise TemplateError(f"template error: error calling {name}: {exc}") from exc
        if isinstance(result, str):
            self.budget.check_size(len(result))
        return result

    def _lookup(self, name: str) -> object:
        for declared, value in reversed(self.variables):
            if declared == name:
                return value
        raise TemplateError(f'template error: undefined variable "{name}"')

    def _set(self, name: str, value: object) -> None:
        for index in range(len(self.variables) - 1, -1, -1):
            if self.variables[index][0] == name:
                self.variables[index] = (name, value)
                return
        raise TemplateError(f'template error: undefined variable "{name}"')


def _short_circuit(name: str, thunks: Sequence[Callable[[], object]]) -> object:
    if not thunks:
        raise TemplateError(f"template error: wrong number of args for {name}: want at least 1")
    value: object = None
    for thunk in thunks:
        value = thunk()
        if is_true(value) == (name == "or"):
            return value
    return value


def _field(receiver: object, name: str) -> object:
    if isinstance(receiver, GoStruct):
        if name not in receiver.fields:
            raise TemplateError(
                f"template error: can't evaluate field {name} in type {receiver.type_name}"
            )
        return receiver.fields[name]
    if isinstance(receiver, Mapping):
        return receiver.get(name)
    if receiver is None:
        raise TemplateError(f"template error: nil pointer evaluating interface {{}}.{name}")
    kind = type(receiver).__name__
    raise TemplateError(f"template error: can't evaluate field {name} in type {kind}")


def _elements(value: object) -> Iterator[tuple[object, object]]:
    if value is None:
        return iter(())
    if isinstance(value, Mapping):
        return ((key, value[key]) for key in sorted(value, key=str))
    if isinstance(value, (list, tuple)):
        return enumerate(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return ((i, i) for i in range(value))
    raise TemplateError(f"template error: range can't iterate over {format_value(value)}")
