"""Modelfile: parse text into a `Modelfile` and render one back, with line-numbered errors.

Syntax as Ollama's parser accepts it: case-insensitive instruction keywords, `#` comments where
an instruction could start, values that run to the end of the line or are quoted with `"` or
`\"\"\"` (both may span lines; no escape sequences). Every PARAMETER is checked for its name and
type here, so a broken Modelfile fails before anything is written.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

from ollamacli.errors import InvalidOptionError, ModelfileError
from ollamacli.parameters import OptionValue, format_value, parse_value

INSTRUCTIONS = (
    "from",
    "parameter",
    "template",
    "system",
    "adapter",
    "license",
    "message",
    "requires",
    "renderer",
    "parser",
)
UNSUPPORTED = ("draft",)
ROLES = ("system", "user", "assistant")
_SEMVER = re.compile(r"\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?")
_PARAM_NAME = re.compile(r"[A-Za-z0-9_]+")


def role_error(role: str) -> str:
    """Why a MESSAGE role is refused (the Modelfile and /api/create's `messages` say the same)."""
    return f'message role must be one of "system", "user", or "assistant" (got "{role}")'


@dataclass(frozen=True, slots=True)
class Message:
    """A MESSAGE row: a conversation turn stored with the model."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class Modelfile:
    """A parsed Modelfile."""

    from_: str
    parameters: dict[str, OptionValue] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    adapters: tuple[str, ...] = ()
    licenses: tuple[str, ...] = ()
    messages: tuple[Message, ...] = ()
    requires: str | None = None
    renderer: str | None = None  # one of Ollama's built-in renderers (checked at create)
    parser: str | None = None  # one of Ollama's built-in output parsers (checked at create)


@dataclass(slots=True)
class _Builder:
    path: str
    from_: str | None = None
    parameters: dict[str, OptionValue] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    adapters: list[str] = field(default_factory=list)
    licenses: list[str] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    requires: str | None = None
    renderer: str | None = None
    parser: str | None = None

    def error(self, line: int, message: str, hint: str | None = None) -> ModelfileError:
        return ModelfileError(message, path=self.path, line=line, hint=hint)

    def add(self, keyword: str, value: str, line: int) -> None:
        if keyword == "from":
            self.from_ = value
        elif keyword == "template":
            self.template = value
        elif keyword == "system":
            self.system = value
        elif keyword == "adapter":
            self.adapters.append(value)
        elif keyword == "license":
            self.licenses.append(value)
        elif keyword == "renderer":
            self.renderer = value
        elif keyword == "parser":
            self.parser = value
        elif keyword == "requires":
            if not _SEMVER.fullmatch(value):
                raise self.error(line, "requires must be a valid semver (e.g. 0.14.0)")
            self.requires = value

    def add_parameter(self, name: str, value: str, line: int) -> None:
        try:
            parsed = parse_value(name, value)
        except InvalidOptionError as exc:
            raise self.error(line, exc.message, exc.hint) from None
        if name == "stop" and isinstance(parsed, list):
            previous = self.parameters.get("stop")
            parsed = [*(previous if isinstance(previous, list) else []), *parsed]
        self.parameters[name] = parsed

    def add_message(self, role: str, content: str, line: int) -> None:
        if role not in ROLES:
            raise self.error(line, role_error(role))
        self.messages.append(Message(role, content))

    def build(self) -> Modelfile:
        if self.from_ is None:
            raise ModelfileError(
                "no FROM line", path=self.path, hint="add a line such as 'FROM smollm2:135m'"
            )
        if not self.from_:
            raise ModelfileError("FROM needs a model name or a file", path=self.path)
        return Modelfile(
            from_=self.from_,
            parameters=dict(self.parameters),
            template=self.template,
            system=self.system,
            adapters=tuple(self.adapters),
            licenses=tuple(self.licenses),
            messages=tuple(self.messages),
            requires=self.requires,
            renderer=self.renderer,
            parser=self.parser,
        )


class _Scanner:
    """Walks the text, tracking line numbers."""

    def __init__(self, text: str, builder: _Builder) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.builder = builder

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def advance(self, count: int) -> str:
        chunk = self.text[self.pos : self.pos + count]
        self.line += chunk.count("\n")
        self.pos += count
        return chunk

    def skip_blank(self) -> None:
        while not self.at_end() and self.text[self.pos] in " \t\r\n":
            self.advance(1)

    def rest_of_line(self) -> str:
        end = self.text.find("\n", self.pos)
        end = len(self.text) if end < 0 else end
        return self.advance(end - self.pos)

    def word(self) -> str:
        match = re.compile(r"[^ \t\r\n]*").match(self.text, self.pos)
        assert match is not None
        return self.advance(match.end() - self.pos)

    def skip_inline_space(self) -> None:
        while not self.at_end() and self.text[self.pos] in " \t":
            self.advance(1)

    def value(self, start_line: int, what: str) -> str:
        """A value: quoted (possibly multi-line) or the rest of the line, trimmed."""
        self.skip_inline_space()
        for quote in ('"""', '"'):
            if self.text.startswith(quote, self.pos):
                return self._quoted(quote, start_line, what)
        return self.rest_of_line().strip()

    def _quoted(self, quote: str, start_line: int, what: str) -> str:
        self.advance(len(quote))
        end = self.text.find(quote, self.pos)
        if end < 0:
            raise self.builder.error(
                start_line,
                f"unterminated {quote} quote in {what}",
                hint=f"close the value with {quote}",
            )
        content = self.advance(end - self.pos)
        self.advance(len(quote))
        trailing = self.rest_of_line()
        if trailing.strip():
            raise self.builder.error(
                self.line, f"unexpected text after the closing quote: {trailing.strip()!r}"
            )
        return content


def parse(text: str, *, path: str = "Modelfile") -> Modelfile:
    """Parse Modelfile text; raises `ModelfileError` naming the file and line."""
    builder = _Builder(path=path)
    scanner = _Scanner(_clean(text), builder)
    while True:
        scanner.skip_blank()
        if scanner.at_end():
            break
        line = scanner.line
        if scanner.text[scanner.pos] == "#":
            scanner.rest_of_line()
            continue
        keyword = scanner.word()
        _instruction(scanner, builder, keyword, line)
    return builder.build()


def _instruction(scanner: _Scanner, builder: _Builder, keyword: str, line: int) -> None:
    lowered = keyword.lower()
    if lowered in UNSUPPORTED:
        raise builder.error(line, f"{keyword.upper()} is not supported by ollamacli")
    if lowered not in INSTRUCTIONS:
        close = difflib.get_close_matches(lowered, INSTRUCTIONS, n=1, cutoff=0.6)
        guess = f' (did you mean "{close[0].upper()}"?)' if close else ""
        raise builder.error(
            line,
            f'unknown instruction "{keyword}"{guess}',
            hint="instructions are FROM, PARAMETER, TEMPLATE, SYSTEM, ADAPTER, LICENSE, MESSAGE, REQUIRES, RENDERER, PARSER",
        )
    if lowered == "parameter":
        name = _name(scanner, builder, line, "PARAMETER")
        builder.add_parameter(name, _required(scanner, builder, line, f"PARAMETER {name}"), line)
    elif lowered == "message":
        role = _name(scanner, builder, line, "MESSAGE")
        builder.add_message(role, scanner.value(line, f"MESSAGE {role}"), line)
    else:
        builder.add(
            lowered,
            _required(
                scanner,
                builder,
                line,
                keyword.upper(),
                allow_empty=lowered in ("system", "template", "license"),
            ),
            line,
        )


def _name(scanner: _Scanner, builder: _Builder, line: int, what: str) -> str:
    scanner.skip_inline_space()
    name = scanner.word()
    if not name:
        raise builder.error(
            line, f"{what} needs a name and a value", hint=f"write e.g. '{_example(what)}'"
        )
    if not _PARAM_NAME.fullmatch(name):
        raise builder.error(line, f"invalid {what.lower()} name {name!r}")
    return name


def _required(
    scanner: _Scanner, builder: _Builder, line: int, what: str, *, allow_empty: bool = False
) -> str:
    quoted = scanner.text.startswith('"', _skip_spaces(scanner))
    value = scanner.value(line, what)
    if not value and not (allow_empty and quoted):
        raise builder.error(line, f"{what} needs a value", hint=f"write e.g. '{_example(what)}'")
    return value


def _skip_spaces(scanner: _Scanner) -> int:
    pos = scanner.pos
    while pos < len(scanner.text) and scanner.text[pos] in " \t":
        pos += 1
    return pos


def _example(what: str) -> str:
    examples = {
        "PARAMETER": "PARAMETER temperature 0.7",
        "MESSAGE": "MESSAGE user Hello",
        "FROM": "FROM smollm2:135m",
        "ADAPTER": "ADAPTER ./adapter.gguf",
    }
    return examples.get(what.split()[0], f"{what} <value>")


def _clean(text: str) -> str:
    text = text.lstrip("\ufeff")
    return "".join(ch for ch in text if ch.isprintable() or ch in "\n\t\r ")


def render(modelfile: Modelfile) -> str:
    """Write a Modelfile back as text that `parse` turns into an equal `Modelfile`."""
    lines = [f"FROM {_quote(modelfile.from_)}"]
    if modelfile.template is not None:
        lines.append(f"TEMPLATE {_quote(modelfile.template)}")
    if modelfile.system is not None:
        lines.append(f"SYSTEM {_quote(modelfile.system)}")
    if modelfile.renderer:
        lines.append(f"RENDERER {_quote(modelfile.renderer)}")
    if modelfile.parser:
        lines.append(f"PARSER {_quote(modelfile.parser)}")
    for name, value in modelfile.parameters.items():
        values = value if isinstance(value, list) else [format_value(value)]
        lines.extend(f"PARAMETER {name} {_quote(item)}" for item in values)
    lines.extend(f"ADAPTER {_quote(adapter)}" for adapter in modelfile.adapters)
    lines.extend(f"LICENSE {_quote(text)}" for text in modelfile.licenses)
    lines.extend(f"MESSAGE {m.role} {_quote(m.content)}" for m in modelfile.messages)
    if modelfile.requires:
        lines.append(f"REQUIRES {modelfile.requires}")
    return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    """Quote a value only when it needs it, as Ollama's renderer does."""
    plain = value == value.strip() and "\n" not in value and "\r" not in value
    if value and plain and not value.startswith('"'):
        return value
    if '"' not in value:
        return f'"{value}"'
    if '"""' in value or value.endswith('"'):
        raise ModelfileError(f"value cannot be written in a Modelfile: {value[:40]!r}")
    return f'"""{value}"""'
