"""Streaming an answer to the terminal: Ctrl-C cancels the generation instead of killing it.

Shared by `run` (one-shot) and the REPL. While an answer streams, SIGINT sets a CancelToken that
the engine checks between tokens, as Ollama's client cancels its request context; a second
Ctrl-C while the first is still being honoured raises KeyboardInterrupt as usual.
"""

from __future__ import annotations

import shutil
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from ollamacli.cli.spinner import Spinner
    from ollamacli.cli.wordwrap import WordWrapper
    from ollamacli.engine.base import CancelToken
    from ollamacli.engine.thinking import ThinkValue
    from ollamacli.service.chat import ChatDone, ChatEvent


FormatSpec = str | Mapping[str, object] | None

# Ollama's readline colours around the trace (cmd/cmd.go thinkingOutputOpeningText).
GREY, BOLD, DEFAULT = "\x1b[90m", "\x1b[1m", "\x1b[0m"


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How answers are requested and shown (the `run` flags, changed later by `/set`)."""

    format: FormatSpec = None
    verbose: bool = False
    wordwrap: bool = True
    keep_alive: float | None = None
    think: ThinkValue = None  # None: the model's default (thinking models think)
    hide_thinking: bool = False


@dataclass(slots=True)
class ThinkingView:
    """Shows the trace as Ollama does: a dimmed "Thinking..." block, then "...done thinking."
    before the answer; plain text (no colours) when not on a terminal."""

    plain: bool = False
    hidden: bool = False
    opened: bool = False
    ends_line: bool = True

    def show(self, wrapper: WordWrapper, text: str) -> None:
        """Write a piece of the trace (opening the block first)."""
        if self.hidden or not text:
            return
        if not self.opened:
            opening = "Thinking...\n"
            wrapper.write_line(opening if self.plain else GREY + BOLD + opening + DEFAULT + GREY)
            self.opened = True
        wrapper.feed(text)
        self.ends_line = text.endswith("\n")

    def close(self, wrapper: WordWrapper) -> None:
        """End the block before the answer starts."""
        if not self.opened:
            return
        closing = "...done thinking.\n\n"
        newline = "" if self.ends_line else "\n"
        wrapper.write_line(newline + (closing if self.plain else GREY + BOLD + closing + DEFAULT))
        self.opened = False


def terminal_width() -> int:
    """Columns of the terminal (80 when unknown), as Ollama's word wrap measures it."""
    return shutil.get_terminal_size((80, 24)).columns


def streaming_writer(stream: TextIO) -> Callable[[str], None]:
    """A write function that flushes, so each piece shows as soon as it is generated."""

    def write(text: str) -> None:
        if text:
            stream.write(text)
            stream.flush()

    return write


@contextmanager
def interrupt_cancels(token: CancelToken) -> Iterator[CancelToken]:
    """While inside, Ctrl-C cancels `token` (only possible on the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield token
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield token
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass(frozen=True, slots=True)
class Answer:
    """What was streamed: the text, the final statistics, and whether Ctrl-C cut it short."""

    text: str
    done: ChatDone | None
    cancelled: bool
    thinking: str = ""


def stream_answer(
    events: Iterable[ChatEvent],
    wrapper: WordWrapper,
    token: CancelToken,
    spinner: Spinner | None = None,
    view: ThinkingView | None = None,
) -> Answer:
    """Write the trace (through `view`) and the answer through the wrapper; return both.

    The spinner (if any) turns until the first piece of text arrives (of the answer, when
    the trace is hidden).
    """
    from ollamacli.engine.base import TextChunk
    from ollamacli.service.chat import ChatDone, ThinkingChunk

    view = view or ThinkingView(hidden=True)
    parts: list[str] = []
    thinking: list[str] = []
    done: ChatDone | None = None
    try:
        for event in events:
            if isinstance(event, ThinkingChunk) and event.text:
                if spinner is not None and not view.hidden:
                    spinner.stop()
                thinking.append(event.text)
                view.show(wrapper, event.text)
            elif isinstance(event, TextChunk) and event.text:
                if spinner is not None:
                    spinner.stop()
                view.close(wrapper)
                parts.append(event.text)
                wrapper.feed(event.text)
            elif isinstance(event, ChatDone):
                view.close(wrapper)
                done = event
    finally:
        if spinner is not None:
            spinner.stop()
    return Answer("".join(parts), done, token.cancelled, "".join(thinking))
