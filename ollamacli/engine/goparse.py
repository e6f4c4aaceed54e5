"""Parse Go `text/template` source (the subset Ollama's templates use) into a small syntax tree.

Covers text, actions with `{{-`/`-}}` trimming and comments, pipelines with `|`, variables
(`$x := …`, `$x = …`, `$i, $m := range …`), fields and chains (`.A.B`, `$.A`, `(…).A`),
literals, function calls, and the control structures `if`/`else if`/`else`, `range`
(with `else`, `break`, `continue`), `with`/`else with` and `end`. `define`, `template` and
`block` are refused. Semantics follow Go's text/template/parse; the evaluator is goexec.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from ollamacli.errors import TemplateError

_SPACE = " \t\r\n"
_KEYWORDS = frozenset(
    {"if", "else", "end", "range", "with", "break", "continue", "define", "template", "block"}
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


@dataclass(frozen=True, slots=True)
class Token:
    """One lexical item inside an action."""

    kind: str  # field var ident keyword string number bool nil dot ( ) | , := =
    value: object
    spaced: bool  # whitespace came before it (adjacent fields chain, spaced ones don't)


@dataclass(frozen=True, slots=True)
class Field:
    idents: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    idents: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Dot:
    pass


@dataclass(frozen=True, slots=True)
class Function:
    name: str


@dataclass(frozen=True, slots=True)
class Literal:
    value: object


@dataclass(frozen=True, slots=True)
class Chain:
    operand: Pipe
    idents: tuple[str, ...]


Operand: TypeAlias = "Field | Variable | Dot | Function | Literal | Chain | Pipe"


@dataclass(frozen=True, slots=True)
class Command:
    args: tuple[Operand, ...]


@dataclass(frozen=True, slots=True)
class Pipe:
    commands: tuple[Command, ...]
    decl: tuple[str, ...] = ()
    assign: bool = False  # `=` instead of `:=`


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Action:
    pipe: Pipe


@dataclass(frozen=True, slots=True)
class Branch:
    kind: str  # if range with
    pipe: Pipe
    body: tuple[Node, ...]
    otherwise: tuple[Node, ...] | None = None


@dataclass(frozen=True, slots=True)
class LoopControl:
    kind: str  # break continue


Node = Text | Action | Branch | LoopControl


@dataclass(frozen=True, slots=True)
class _Tag:
    """An action's tokens, before the parser decides what it is."""

    tokens: tuple[Token, ...]
    line: int


def _fail(line: int, message: str) -> TemplateError:
    return TemplateError(f"template error: line {line}: {message}")


def lex(source: str) -> list[Text | _Tag]:
    """Split a template into text and actions, applying trim markers and dropping comments."""
    items: list[Text | _Tag] = []
    pos, trim_next = 0, False
    while True:
        start = source.find("{{", pos)
        text = source[pos:] if start < 0 else source[pos:start]
        if trim_next:
            text = text.lstrip(_SPACE)
        if start < 0:
            items.append(Text(text))
            return items
        line = source.count("\n", 0, start) + 1
        inner = start + 2
        if source.startswith("-", inner) and source[inner + 1 : inner + 2] in tuple(_SPACE):
            text, inner = text.rstrip(_SPACE), inner + 2
        items.append(Text(text))
        if source.startswith("/*", inner):
            pos, trim_next = _comment_end(source, inner, line)
            continue
        tokens, pos, trim_next = _ActionLexer(source, inner, line).run()
        items.append(_Tag(tuple(tokens), line))


def _comment_end(source: str, start: int, line: int) -> tuple[int, bool]:
    close = source.find("*/", start + 2)
    if close < 0:
        raise _fail(line, "unclosed comment")
    after = close + 2
    if source.startswith("}}", after):
        return after + 2, False
    if source[after : after + 1] in tuple(_SPACE) and source.startswith("-}}", after + 1):
        return after + 4, True
    raise _fail(line, "comment ends before closing delimiter")


class _ActionLexer:
    """Tokens of one action, up to its `}}` (or ` -}}`)."""

    def __init__(self, source: str, pos: int, line: int) -> None:
        self.source, self.pos, self.line = source, pos, line
        self.tokens: list[Token] = []
        self.spaced = False

    def run(self) -> tuple[list[Token], int, bool]:
        source = self.source
        while self.pos < len(source):
            char = source[self.pos]
            if char in _SPACE:
                if source.startswith("-}}", self.pos + 1):
                    return self.tokens, self.pos + 4, True
                self.pos, self.spaced = self.pos + 1, True
            elif source.startswith("}}", self.pos):
                return self.tokens, self.pos + 2, False
            else:
                self._token(char)
        raise _fail(self.line, "unclosed action")

    def _emit(self, kind: str, value: object, end: int) -> None:
        self.tokens.append(Token(kind, value, self.spaced))
        self.pos, self.spaced = end, False

    def _token(self, char: str) -> None:
        source, pos = self.source, self.pos
        if char in "()|,=":
            self._emit(char, char, pos + 1)
        elif source.startswith(":=", pos):
            self._emit(":=", ":=", pos + 2)
        elif char == '"':
            self._quoted(pos)
        elif char == "`":
            end = source.find("`", pos + 1)
            if end < 0:
                raise _fail(self.line, "unterminated raw quoted string")
            self._emit("string", source[pos + 1 : end], end + 1)
        elif char == "'":
            self._char(pos)
        elif char.isdigit() or (char in "+-." and source[pos + 1 : pos + 2].isdigit()):
            self._number(pos)
        elif char in ".$":
            self._name(pos, char)
        elif char.isalpha() or char == "_":
            end = self._word_end(pos)
            word = source[pos:end]
            kind = {"true": "bool", "false": "bool", "nil": "nil"}.get(word)
            kind = kind or ("keyword" if word in _KEYWORDS else "ident")
            self._emit(kind, word == "true" if kind == "bool" else word, end)
        else:
            raise _fail(self.line, f"unexpected {char!r} in command")

    def _word_end(self, pos: int) -> int:
        while pos < len(self.source) and (self.source[pos].isalnum() or self.source[pos] == "_"):
            pos += 1
        return pos

    def _name(self, pos: int, char: str) -> None:
        end = self._word_end(pos + 1)
        if char == "$":
            self._emit("var", self.source[pos:end], end)
        elif end == pos + 1:
            self._emit("dot", ".", end)
        else:
            self._emit("field", self.source[pos + 1 : end], end)

    def _number(self, pos: int) -> None:
        end = pos + 1
        while end < len(self.source) and (self.source[end].isalnum() or self.source[end] in "._+-"):
            if self.source[end] in "+-" and self.source[end - 1] not in "eEpP":
                break
            end += 1
        text = self.source[pos:end].replace("_", "")
        try:
            value: object = int(text, 0)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise _fail(self.line, f"bad number syntax: {text!r}") from None
        self._emit("number", value, end)

    def _quoted(self, pos: int) -> None:
        chars: list[str] = []
        index = pos + 1
        while index < len(self.source) and self.source[index] != '"':
            if self.source[index] == "\n":
                break
            if self.source[index] == "\\":
                decoded, index = _unescape(self.source, index, self.line)
                chars.append(decoded)
            else:
                chars.append(self.source[index])
                index += 1
        if index >= len(self.source) or self.source[index] != '"':
            raise _fail(self.line, "unterminated quoted string")
        self._emit("string", "".join(chars), index + 1)

    def _char(self, pos: int) -> None:
        if self.source[pos + 1 : pos + 2] == "\\":
            decoded, end = _unescape(self.source, pos + 1, self.line)
        else:
            decoded, end = self.source[pos + 1 : pos + 2], pos + 2
        if self.source[end : end + 1] != "'" or len(decoded) != 1:
            raise _fail(self.line, "malformed character constant")
        self._emit("number", ord(decoded), end + 1)


def _unescape(source: str, index: int, line: int) -> tuple[str, int]:
    """Decode the escape at `source[index]` (a backslash); return it and the next index."""
    code = source[index + 1 : index + 2]
    if code in _ESCAPES:
        return _ESCAPES[code], index + 2
    if code in "\\\"'":
        return code, index + 2
    widths = {"x": 2, "u": 4, "U": 8}
    try:
        if code in widths:
            digits = source[index + 2 : index + 2 + widths[code]]
            return chr(int(digits, 16)), index + 2 + widths[code]
        if code.isdigit():
            return chr(int(source[index + 1 : index + 4], 8)), index + 4
    except ValueError:
        pass
    raise _fail(line, f"invalid escape \\{code} in quoted string")


class Parser:
    """Builds the node tree from lexed items; `functions` are the names calls may use."""

    def __init__(self, items: list[Text | _Tag], functions: Callable[[str], bool]) -> None:
        self.items = items
        self.index = 0
        self.is_function = functions
        self.loops = 0

    def parse(self) -> tuple[Node, ...]:
        nodes, stop = self._list()
        if stop is not None:
            raise _fail(stop.line, f"unexpected {{{{{stop.tokens[0].value}}}}}")
        return nodes

    def _list(self) -> tuple[tuple[Node, ...], _Tag | None]:
        """Nodes up to the `end` or `else` that closes the current block (returned too)."""
        nodes: list[Node] = []
        while self.index < len(self.items):
            item = self.items[self.index]
            self.index += 1
            if isinstance(item, Text):
                if item.text:
                    nodes.append(item)
                continue
            first = item.tokens[0] if item.tokens else None
            if first is None:
                raise _fail(item.line, "missing value for command")
            if first.kind == "keyword" and first.value in ("end", "else"):
                return tuple(nodes), item
            nodes.append(self._node(item, first))
        return tuple(nodes), None

    def _node(self, item: _Tag, first: Token) -> Node:
        if first.kind != "keyword":
            return Action(self._pipe(list(item.tokens), item.line, max_decl=1))
        word = str(first.value)
        if word in ("if", "with", "range"):
            return self._branch(word, item.tokens[1:], item.line)
        if word in ("break", "continue"):
            if not self.loops:
                raise _fail(item.line, f"{{{{{word}}}}} outside {{{{range}}}}")
            return LoopControl(word)
        raise _fail(item.line, f"{{{{{word}}}}} is not supported in Ollama templates here")

    def _branch(self, kind: str, tokens: tuple[Token, ...], line: int) -> Branch:
        pipe = self._pipe(list(tokens), line, max_decl=2 if kind == "range" else 1)
        self.loops += kind == "range"
        body, stop = self._list()
        self.loops -= kind == "range"
        if stop is None:
            raise _fail(line, f"unexpected EOF: {{{{{kind}}}}} without {{{{end}}}}")
        if stop.tokens[0].value == "end":
            return Branch(kind, pipe, body)
        rest = stop.tokens[1:]
        if rest:
            chained = rest[0].value
            if not (rest[0].kind == "keyword" and chained == kind and kind in ("if", "with")):
                raise _fail(stop.line, f"unexpected {{{{else {chained}}}}} in {{{{{kind}}}}}")
            return Branch(kind, pipe, body, (self._branch(kind, rest[1:], stop.line),))
        otherwise, stop = self._list()
        if stop is None or stop.tokens[0].value != "end" or len(stop.tokens) > 1:
            raise _fail(line, f"expected {{{{end}}}} to close {{{{{kind}}}}}")
        return Branch(kind, pipe, body, otherwise)

    def _pipe(self, tokens: list[Token], line: int, *, max_decl: int) -> Pipe:
        decl, assign, tokens = _declaration(tokens, line, max_decl)
        commands: list[Command] = []
        current: list[Token] = []
        depth = 0
        for token in [*tokens, Token("|", "|", False)]:
            depth += {"(": 1, ")": -1}.get(token.kind, 0)
            if token.kind == "|" and depth == 0:
                if not current:
                    raise _fail(line, "missing command in pipeline")
                commands.append(self._command(current, line))
                current = []
            else:
                current.append(token)
        if depth:
            raise _fail(line, "unbalanced parentheses")
        return Pipe(tuple(commands), decl, assign)

    def _command(self, tokens: list[Token], line: int) -> Command:
        args: list[Operand] = []
        index = 0
        while index < len(tokens):
            operand, index = self._operand(tokens, index, line)
            args.append(operand)
        return Command(tuple(args))

    def _operand(self, tokens: list[Token], index: int, line: int) -> tuple[Operand, int]:
        token = tokens[index]
        if token.kind == "(":
            depth, end = 0, index
            for end in range(index, len(tokens)):
                depth += {"(": 1, ")": -1}.get(tokens[end].kind, 0)
                if depth == 0:
                    break
            inner = self._pipe(tokens[index + 1 : end], line, max_decl=0)
            fields, after = _adjacent_fields(tokens, end + 1)
            return (Chain(inner, fields) if fields else inner), after
        fields, after = _adjacent_fields(tokens, index + 1)
        if token.kind == "field":
            return Field((str(token.value), *fields)), after
        if token.kind == "var":
            return Variable(str(token.value), fields), after
        if fields:
            raise _fail(line, f"unexpected . after term {token.value!r}")
        return self._term(token, line), index + 1

    def _term(self, token: Token, line: int) -> Operand:
        if token.kind == "dot":
            return Dot()
        if token.kind == "ident":
            if not self.is_function(str(token.value)):
                raise _fail(line, f'function "{token.value}" not defined')
            return Function(str(token.value))
        if token.kind in ("string", "number", "bool", "nil"):
            return Literal(token.value)
        raise _fail(line, f"unexpected {token.value!r} in operand")


def _adjacent_fields(tokens: list[Token], index: int) -> tuple[tuple[str, ...], int]:
    fields: list[str] = []
    while index < len(tokens) and tokens[index].kind == "field" and not tokens[index].spaced:
        fields.append(str(tokens[index].value))
        index += 1
    return tuple(fields), index


def _declaration(
    tokens: list[Token], line: int, max_decl: int
) -> tuple[tuple[str, ...], bool, list[Token]]:
    """`$x :=`, `$x =` or `$i, $v :=` at the start of a pipeline."""
    names: list[str] = []
    index = 0
    while index < len(tokens) and tokens[index].kind == "var":
        names.append(str(tokens[index].value))
        follow = tokens[index + 1].kind if index + 1 < len(tokens) else ""
        if follow in (":=", "="):
            if len(names) > max(max_decl, 0) or not max_decl:
                raise _fail(line, "too many declarations in command")
            return tuple(names), follow == "=", tokens[index + 2 :]
        if follow != "," or max_decl < 2:
            break
        index += 2
    return (), False, tokens
