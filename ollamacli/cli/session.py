"""The REPL's conversation and commands, apart from prompt-toolkit: lines in, text out.

`ChatSession.feed(line)` takes one line as typed and does what Ollama's `generateInteractive`
does with it: collect `\"\"\"` multi-line input, run a `/command`, or send a chat turn and stream
the answer. Messages and command output go to `out`, help texts and statistics to `err`, with
Ollama's exact wording. Errors are printed and the session goes on.

One deliberate difference: the session's system message (`/set system`) is kept apart from the
turns and sent as the request's system, so it replaces the Modelfile SYSTEM instead of being
added to it, and survives `/clear` as Ollama's does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Literal, TextIO

from ollamacli.cli import replhelp
from ollamacli.cli.answer import (
    RunOptions,
    ThinkingView,
    interrupt_cancels,
    stream_answer,
    streaming_writer,
    terminal_width,
)
from ollamacli.cli.spinner import Spinner
from ollamacli.cli.stats import format_stats
from ollamacli.cli.wordwrap import WordWrapper
from ollamacli.engine.base import CancelToken, ChatMessage
from ollamacli.errors import InvalidModelNameError, OllamaCliError
from ollamacli.parameters import OptionValue, parse_value

if TYPE_CHECKING:
    from ollamacli.modelfile import Message
    from ollamacli.service import Services

Multiline = Literal["prompt", "system"]
QUOTES = '"""'


def go_quote(text: str) -> str:
    """A string as Go's `%q` prints it (printable text: quotes and backslashes escaped)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t") + '"'


class ChatSession:
    """One interactive conversation with a model."""

    def __init__(
        self,
        services: Services,
        model: str,
        options: RunOptions,
        *,
        out: TextIO,
        err: TextIO,
        width: Callable[[], int] = terminal_width,
        on_history: Callable[[bool], None] = lambda enabled: None,
        spinner: bool | None = None,
    ) -> None:
        self.services = services
        self.model = model
        self.options = options
        self.out, self.err = out, err
        self.system: str | None = None
        self.parameters: dict[str, OptionValue] = {}
        self.messages: list[ChatMessage] = []
        self.loaded_messages: tuple[ChatMessage, ...] = ()
        self._width = width
        self._on_history = on_history
        self._spin = spinner
        self._buffer: list[str] = []
        self._multiline: Multiline | None = None

    @property
    def continuing(self) -> bool:
        """True inside a `\"\"\"` block (the front end shows the `... ` prompt)."""
        return self._multiline is not None

    def start(self) -> None:
        """Load the model, then replay its MESSAGE rows as Ollama does."""
        self._preload()
        for message in self.loaded_messages:
            if message.role == "user":
                self.out.write(f">>> {message.content}\n")
            elif message.role == "assistant":
                self._wrapper().feed(message.content)
                self.out.write("\n\n")
        self.out.flush()

    def interrupt(self) -> None:
        """Ctrl-C at the prompt: drop any half-typed multi-line input."""
        self._buffer.clear()
        self._multiline = None

    def feed(self, line: str) -> bool:
        """Handle one line of input; False when the session should end."""
        if self._multiline is not None:
            text = self._continue_block(line)
        elif line.startswith(QUOTES):
            text = self._open_block(line[len(QUOTES) :])
        elif line.startswith("/"):
            return self._command(line)
        else:
            text = line
        if text:
            self.send(text)
        self.out.flush()
        return True

    def _open_block(self, rest: str) -> str | None:
        body, closed = _cut_suffix(rest, QUOTES)
        if closed:
            return body
        self._buffer = [body, "\n"]
        self._multiline = "prompt"
        return None

    def _continue_block(self, line: str) -> str | None:
        before, closed = _cut_suffix(line, QUOTES)
        self._buffer.append(before)
        if not closed:
            self._buffer.append("\n")
            return None
        text, kind = "".join(self._buffer), self._multiline
        self.interrupt()
        if kind == "system":
            self._set_system_text(text)
            return None
        return text

    def send(self, text: str) -> None:
        """One chat turn: stream the answer, keep both messages in the conversation."""
        from ollamacli.service.chat import ChatRequest

        self.messages.append(ChatMessage("user", text))
        request = ChatRequest(
            model=self.model,
            messages=tuple(self.messages),
            session_options=dict(self.parameters),
            system=self.system,
            format=self.options.format,
            keep_alive=self.options.keep_alive,
            think=self.options.think,
        )
        token, wrapper = CancelToken(), self._wrapper()
        view = ThinkingView(plain=not self.out.isatty(), hidden=self.options.hide_thinking)
        try:
            with interrupt_cancels(token), Spinner(self.err, enabled=self._spin) as spinner:
                events = self.services.chat.chat(request, token)
                answer = stream_answer(events, wrapper, token, spinner, view)
        except OllamaCliError as exc:
            self.messages.pop()
            self.out.write("\n" if wrapper.started else "")
            self._error(exc)
            return
        if answer.cancelled:
            # As Ollama: the cut-short answer is dropped, the question stays.
            self.out.write("\n\n" if wrapper.started else "\n")
            return
        self.out.write("\n\n")
        self.out.flush()
        if self.options.verbose and answer.done is not None:
            self.err.write(format_stats(answer.done))
        self.messages.append(ChatMessage("assistant", answer.text, thinking=answer.thinking))

    def _wrapper(self) -> WordWrapper:
        return WordWrapper(streaming_writer(self.out), self._width(), enabled=self.options.wordwrap)

    def _error(self, exc: OllamaCliError) -> None:
        self.err.write(f"Error: {exc.message}\n")
        if exc.hint:
            self.err.write(f"{exc.hint}\n")
        self.err.flush()

    def _preload(self) -> None:
        from ollamacli.names import ModelName
        from ollamacli.service.chat import ChatRequest

        resolved = self.services.store.resolve(ModelName.parse(self.model))
        request = ChatRequest(model=self.model, keep_alive=self.options.keep_alive)
        with Spinner(self.err, enabled=self._spin):
            for _ in self.services.chat.chat(request):
                pass
        self.loaded_messages = tuple(
            ChatMessage(str(m.get("role", "user")), str(m.get("content", "")))
            for m in resolved.messages
        )

    # Commands, matched by prefix in Ollama's order (so `/byebye` exits, as in Ollama).

    def _command(self, line: str) -> bool:
        args = line.split()
        handlers: tuple[tuple[tuple[str, ...], Callable[[list[str]], None]], ...] = (
            (("/list",), self._list),
            (("/load",), self._load),
            (("/save",), self._save),
            (("/clear",), self._clear),
            (("/set",), self._set),
            (("/show",), self._show),
            (("/help", "/?"), self._help),
        )
        if line.startswith(("/exit", "/bye")):
            return False
        for prefixes, handler in handlers:
            if line.startswith(prefixes):
                try:
                    handler(args)
                except OllamaCliError as exc:
                    self._error(exc)
                break
        else:
            self.out.write(f"Unknown command '{args[0]}'. Type /? for help\n")
        self.out.flush()
        self.err.flush()
        return True

    def _help(self, args: list[str]) -> None:
        if len(args) > 1:
            self.err.write(replhelp.HELP_TOPICS.get(args[1], ""))
        else:
            self.err.write(replhelp.USAGE)

    def _clear(self, args: list[str]) -> None:
        self.messages.clear()
        self.out.write("Cleared session context\n")

    def _list(self, args: list[str]) -> None:
        from ollamacli.cli.output import format_table, human_bytes, human_time

        entries = self.services.store.entries()
        if len(args) > 1:
            entries = [e for e in entries if e.name.short.lower().startswith(args[1].lower())]
        rows = [
            [e.name.short, e.digest[:12], human_bytes(e.manifest.size), human_time(e.modified)]
            for e in entries
        ]
        self.out.write(format_table(["NAME", "ID", "SIZE", "MODIFIED"], rows))

    def _load(self, args: list[str]) -> None:
        from ollamacli.names import ModelName

        if len(args) != 2:
            self.out.write("Usage:\n  /load <modelname>\n")
            return
        name = args[1]
        self.out.write(f"Loading model '{name}'\n")
        self.out.flush()
        if not self.services.store.manifests.exists(ModelName.parse(name)):
            self.out.write(f"Couldn't find model '{name}'\n")
            return
        previous = (self.model, self.loaded_messages)
        self.model = name
        try:
            self._preload()
        except OllamaCliError:
            self.model, self.loaded_messages = previous
            raise
        self.messages, self.system = [], None

    def _save(self, args: list[str]) -> None:
        from ollamacli.modelfile import Message
        from ollamacli.names import ModelName
        from ollamacli.service.models import CreateSpec

        if len(args) != 2:
            self.out.write("Usage:\n  /save <modelname>\n")
            return
        try:
            ModelName.parse(args[1])
        except InvalidModelNameError:
            self.out.write(f"error: The model name '{args[1]}' is invalid\n")
            return
        turns = [*self.loaded_messages, *self.messages]
        messages: tuple[Message, ...] = tuple(Message(m.role, m.content) for m in turns)
        spec = CreateSpec(
            from_model=self.model,
            system=self.system,
            parameters=dict(self.parameters) or None,
            messages=messages or None,
        )
        self.services.models.create(args[1], spec)
        self.out.write(f"Created new model '{args[1]}'\n")

    def _set(self, args: list[str]) -> None:
        if len(args) < 2:
            self.err.write(replhelp.USAGE_SET)
            return
        simple: dict[str, Callable[[], None]] = {
            "history": lambda: self._on_history(True),
            "nohistory": lambda: self._on_history(False),
            "wordwrap": lambda: self._set_option("wordwrap", wordwrap=True),
            "nowordwrap": lambda: self._set_option("nowordwrap", wordwrap=False),
            "verbose": lambda: self._set_option("verbose", verbose=True),
            "quiet": lambda: self._set_option("quiet", verbose=False),
            "noformat": self._set_noformat,
            "nothink": lambda: self._set_think(False, "Set 'nothink' mode.\n"),
        }
        with_args = {
            "think": self._set_think_level,
            "format": self._set_format,
            "parameter": self._set_parameter,
            "system": self._set_system,
        }
        if args[1] in simple:
            simple[args[1]]()
        elif args[1] in with_args:
            with_args[args[1]](args)
        else:
            self.out.write(f"Unknown command '/set {args[1]}'. Type /? for help\n")

    def _set_option(self, mode: str, **change: bool) -> None:
        self.options = replace(self.options, **change)  # type: ignore[arg-type]  # bool fields
        self.out.write(f"Set '{mode}' mode.\n")

    def _set_think_level(self, args: list[str]) -> None:
        """`/set think [level]` (the level is checked by the request, as in Ollama)."""
        if len(args) > 2 and args[2]:
            self._set_think(args[2], f"Set 'think' mode to '{args[2]}'.\n")
        else:
            self._set_think(True, "Set 'think' mode.\n")

    def _set_think(self, value: bool | str, message: str) -> None:
        self.options = replace(self.options, think=value)
        if not self._thinks():
            self.err.write(f'warning: model "{self.model}" does not support thinking output\n')
        self.out.write(message)

    def _thinks(self) -> bool:
        from ollamacli.names import ModelName
        from ollamacli.service.show import describe

        try:
            info = describe(self.services.store, ModelName.parse(self.model))
        except OllamaCliError:
            return True  # say nothing when the model cannot be read; the request will tell
        return "thinking" in info.capabilities

    def _set_noformat(self) -> None:
        self.options = replace(self.options, format=None)
        self.out.write("Disabled format.\n")

    def _set_format(self, args: list[str]) -> None:
        if len(args) < 3 or args[2] != "json":
            self.out.write("Invalid or missing format. For 'json' mode use '/set format json'\n")
            return
        self.options = replace(self.options, format="json")
        self.out.write("Set format to 'json' mode.\n")

    def _set_parameter(self, args: list[str]) -> None:
        if len(args) < 4:
            self.err.write(replhelp.USAGE_PARAMETERS)
            return
        name, values = args[2], args[3:]
        try:
            parsed = parse_value(name, values[0])
        except OllamaCliError as exc:
            self.out.write(f"Couldn't set parameter: {go_quote(exc.message)}\n")
            return
        self.parameters[name] = list(values) if isinstance(parsed, list) else parsed
        self.out.write(f"Set parameter '{name}' to '{', '.join(values)}'\n")

    def _set_system(self, args: list[str]) -> None:
        if len(args) < 3:
            self.err.write(replhelp.USAGE_SET)
            return
        text = " ".join(args[2:])
        if not text.startswith(QUOTES):
            self._set_system_text(text)
            return
        body, closed = _cut_suffix(text[len(QUOTES) :], QUOTES)
        if closed:
            self._set_system_text(body)
            return
        self._buffer = [body, "\n"]
        self._multiline = "system"

    def _set_system_text(self, text: str) -> None:
        self.system = text
        self.out.write("Set system message.\n")

    def _show(self, args: list[str]) -> None:
        from ollamacli.cli.replshow import TOPICS, ShowContext
        from ollamacli.names import ModelName
        from ollamacli.service.show import describe

        if len(args) < 2:
            self.err.write(replhelp.USAGE_SHOW)
            return
        topic = TOPICS.get(args[1])
        if topic is None:
            self.out.write(f"Unknown command '/show {args[1]}'. Type /? for help\n")
            return
        info = describe(self.services.store, ModelName.parse(self.model))
        topic(ShowContext(info, self.system, self.parameters, self.out, self.err))


def _cut_suffix(text: str, suffix: str) -> tuple[str, bool]:
    """Go's strings.CutSuffix."""
    if text.endswith(suffix):
        return text[: -len(suffix)], True
    return text, False
