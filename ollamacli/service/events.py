"""The events a chat or generate stream yields, and their folding into one whole reply.

Every front end renders the same events: the CLI prints the text as it comes; the server
streams them in Ollama's, OpenAI's or Anthropic's shapes, or folds them (`fold`, `ReplyFolder`)
into a `ChatReply` for a non-streamed answer. A streaming renderer folds as it goes, so the
last event of a stream can carry the same whole reply a non-streamed answer would.

With logprobs asked for, the events carry the generated tokens' log-probabilities, each token
exactly once and in order, on the event its text produced first (a trace, the answer, or the
tool calls); tokens whose text produced no event yet (held back by a parser) go on an empty
`TextChunk`, as Ollama sends a chunk with logprobs and no content.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ollamacli.engine.base import TextChunk, TokenLogprob, ToolCall


@dataclass(frozen=True, slots=True)
class ThinkingChunk:
    """A piece of the reasoning trace, kept apart from the answer."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCallsChunk:
    """Tool calls parsed from the model's output."""

    calls: tuple[ToolCall, ...]
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatDone:
    """The final event of a chat or generate stream (durations in nanoseconds)."""

    done_reason: str
    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0
    context: tuple[int, ...] = ()
    truncated: bool = False
    stop_sequence: str | None = None  # the stop string that ended the answer, if one did


ChatEvent = TextChunk | ThinkingChunk | ToolCallsChunk | ChatDone


@dataclass(frozen=True, slots=True)
class ChatReply:
    """A whole answer: its text, the tool calls it made, and how it ended."""

    text: str
    tool_calls: tuple[ToolCall, ...]
    done: ChatDone
    thinking: str = ""
    logprobs: tuple[TokenLogprob, ...] = ()  # every generated token's, when asked for


class ReplyFolder:
    """Folds events into a `ChatReply` one at a time (for renderers that stream)."""

    def __init__(self) -> None:
        self._texts: list[str] = []
        self._thinking: list[str] = []
        self._calls: list[ToolCall] = []
        self._logprobs: list[TokenLogprob] = []
        self._done: ChatDone | None = None

    def add(self, event: ChatEvent) -> None:
        """Take one more event into the reply."""
        if not isinstance(event, ChatDone):
            self._logprobs.extend(event.logprobs)
        if isinstance(event, TextChunk):
            self._texts.append(event.text)
        elif isinstance(event, ThinkingChunk):
            self._thinking.append(event.text)
        elif isinstance(event, ToolCallsChunk):
            self._calls.extend(event.calls)
        else:
            self._done = event

    @property
    def text(self) -> str:
        """The text so far."""
        return "".join(self._texts)

    @property
    def thinking(self) -> str:
        """The trace so far."""
        return "".join(self._thinking)

    @property
    def call_count(self) -> int:
        """The tool calls so far (a streamed call's index counts from the first call)."""
        return len(self._calls)

    def reply(self) -> ChatReply:
        """The reply so far (ended with "stop" if the final event has not come)."""
        done = self._done or ChatDone(done_reason="stop")
        return ChatReply(self.text, tuple(self._calls), done, self.thinking, tuple(self._logprobs))


def fold(events: Iterable[ChatEvent]) -> ChatReply:
    """The whole reply of a finished stream."""
    folder = ReplyFolder()
    for event in events:
        folder.add(event)
    return folder.reply()
