"""Anthropic's Messages API (`POST /v1/messages`), as Ollama maps it (anthropic/anthropic.go).

This is how Claude Code and the `anthropic` SDK talk to local models. `system` is a string or
text blocks; a turn's text blocks are joined, its `tool_use` blocks are the assistant's calls and
its `tool_result` blocks go before the user's text as tool turns. `max_tokens` is `num_predict`,
`stop_sequences` are `stop`. `thinking: {"type": "enabled"}` (or "disabled") is `think`, else
`output_config.effort` is its level ("xhigh" counts as "high"); a thinking model's trace is a
`thinking` block before the text (streamed as `thinking_delta`s; no signature, as Ollama), and
thinking blocks sent back are the turn's `thinking`. Beyond Ollama: `tool_choice` (`auto`,
`any`, `tool`, `none`) is honoured and a stop sequence that ended the answer is reported
(`stop_reason: "stop_sequence"`). Streaming is SSE: message_start, ping, per block
content_block_start, content_block_delta..., content_block_stop, then message_delta (stop
reason, usage) and message_stop. Errors are `{"type": "error", "error": {"type", "message"}}`,
in a stream too.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal

from fastapi import APIRouter, Request
from starlette.responses import Response

from ollamacli.engine.base import ChatMessage, TextChunk, ToolCall
from ollamacli.engine.thinking import THINK_LEVELS, ThinkValue
from ollamacli.engine.tools import ToolChoice
from ollamacli.errors import InvalidRequestError
from ollamacli.server import convert
from ollamacli.server.errors import anthropic_body, message_for, status_for
from ollamacli.server.respond import ChatRendering, respond
from ollamacli.server.schemas import (
    AnthropicBlock,
    AnthropicMessage,
    AnthropicTool,
    AnthropicToolChoice,
    MessagesBody,
    parse_body,
)
from ollamacli.server.state import services_of
from ollamacli.server.streaming import iterate, sse_event
from ollamacli.service.chat import ChatRequest
from ollamacli.service.events import ChatEvent, ChatReply, ThinkingChunk, ToolCallsChunk

router = APIRouter(prefix="/v1")
ToolMode = Literal["auto", "none", "required"]

# Blocks the model would need to see but cannot: refused rather than silently dropped.
_UNSUPPORTED = ("image", "document")
_CHOICES: dict[str, ToolMode] = {
    "auto": "auto",
    "any": "required",
    "tool": "required",
    "none": "none",
}


def _refuse(kind: str) -> None:
    if kind in _UNSUPPORTED:
        raise InvalidRequestError(f"{kind} content blocks are not supported")


def _result_text(content: str | Sequence[Mapping[str, object]] | None) -> str:
    """A tool_result's content: a string, or text blocks."""
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for block in content:
        kind = str(block.get("type"))
        _refuse(kind)
        if kind == "text":
            texts.append(str(block.get("text") or ""))
    return "".join(texts)


def _call(block: AnthropicBlock) -> ToolCall:
    if not block.id:
        raise InvalidRequestError("tool_use block missing required 'id' field")
    if not block.name:
        raise InvalidRequestError("tool_use block missing required 'name' field")
    return ToolCall(block.name, dict(block.input or {}), block.id)


def _turn(message: AnthropicMessage, called: dict[str, str]) -> list[ChatMessage]:
    """One Anthropic message as chat turns: tool results first, then the text and calls."""
    role = message.role.lower()
    if isinstance(message.content, str):
        return [ChatMessage(role, message.content)]
    texts: list[str] = []
    thinking = ""
    calls: list[ToolCall] = []
    results: list[ChatMessage] = []
    for block in message.content:
        _refuse(block.type)
        if block.type == "text":
            texts.append(block.text or "")
        elif block.type == "tool_use":
            calls.append(_call(block))
            called[calls[-1].id or ""] = calls[-1].name
        elif block.type == "tool_result":
            name = called.get(block.tool_use_id or "")
            results.append(ChatMessage("tool", _result_text(block.content), tool_name=name))
        elif block.type == "thinking":
            thinking = block.thinking or ""  # the last one, as Ollama
        # server-tool blocks are history the model does not need
    text = "".join(texts)
    turn = (
        [ChatMessage(role, text, tool_calls=tuple(calls), thinking=thinking)]
        if text or calls or thinking
        else []
    )
    return [*results, *turn] if role == "user" else [*turn, *results]


def _system(system: str | list[AnthropicBlock] | None) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    return "".join(block.text or "" for block in system if block.type == "text")


def conversation(body: MessagesBody) -> list[ChatMessage]:
    """The chat turns of a Messages request, `system` first."""
    system = _system(body.system)
    messages = [ChatMessage("system", system)] if system else []
    called: dict[str, str] = {}  # tool_use id -> function name, to name the results
    for message in body.messages:
        messages.extend(_turn(message, called))
    return messages


def _tools(tools: list[AnthropicTool] | None) -> tuple[dict[str, object], ...]:
    converted: list[dict[str, object]] = []
    for tool in tools or ():
        if tool.type not in (None, "custom"):
            raise InvalidRequestError(f"tool type {tool.type!r} is not supported")
        function: dict[str, object] = {"name": tool.name, "description": tool.description or ""}
        function["parameters"] = tool.input_schema or {"type": "object", "properties": {}}
        converted.append({"type": "function", "function": function})
    return tuple(converted)


def _tool_choice(choice: AnthropicToolChoice | None) -> ToolChoice:
    if choice is None:
        return ToolChoice()
    mode = _CHOICES.get(choice.type)
    if mode is None or (choice.type == "tool" and not choice.name):
        raise InvalidRequestError(
            f"invalid tool_choice type {choice.type!r}",
            hint='use {"type": "auto"}, {"type": "any"}, {"type": "none"} or '
            '{"type": "tool", "name": ...}',
        )
    name = choice.name if choice.type == "tool" else None
    return ToolChoice(mode, name)


def _think(thinking: Mapping[str, object] | None, effort: str | None) -> ThinkValue:
    """`think`, as Ollama reads it: `thinking.type` "enabled" is on (its `budget_tokens` is not
    a level and is ignored) and "disabled" off; otherwise `output_config.effort` is the level
    ("xhigh" is "high"; values that are no level leave the model's default)."""
    kind = thinking.get("type") if thinking is not None else None
    if kind in ("enabled", "disabled"):
        return kind == "enabled"
    level = (effort or "").strip().lower()
    level = "high" if level == "xhigh" else level
    return level if level in THINK_LEVELS else None


def chat_request(body: MessagesBody) -> ChatRequest:
    """The chat request a Messages request stands for (checked as Ollama checks it)."""
    if body.max_tokens <= 0:
        raise InvalidRequestError("max_tokens is required and must be positive")
    if not body.messages:
        raise InvalidRequestError("messages is required")
    options: dict[str, object] = {"num_predict": body.max_tokens}
    given = {"temperature": body.temperature, "top_p": body.top_p, "top_k": body.top_k}
    options.update({k: v for k, v in given.items() if v is not None})
    if body.stop_sequences:
        options["stop"] = body.stop_sequences
    return ChatRequest(
        model=convert.model_name(body.model),
        messages=tuple(conversation(body)),
        options=convert.options(options),
        tools=_tools(body.tools),
        tool_choice=_tool_choice(body.tool_choice),
        think=_think(body.thinking, body.output_config.effort if body.output_config else None),
    )


def estimate_tokens(request: ChatRequest) -> int:
    """A rough prompt size for `message_start` (the real count comes with message_delta),
    about four characters a token, as Ollama estimates it."""
    chars = sum(len(m.content) for m in request.messages) + len(json.dumps(request.tools))
    return chars // 4


class MessagesRendering(ChatRendering):
    """Chat events as an Anthropic message, or as its stream of events."""

    def __init__(self, body: MessagesBody, estimated_input: int = 0) -> None:
        super().__init__()
        self.body = body
        self.id = f"msg_{random.getrandbits(96):024x}"
        self.estimated_input = estimated_input
        self.tool_ids: list[str] = []  # one per call, the same in the stream and at the end
        self.started = False
        self.block = -1  # the index of the last block started
        self.open = False  # a block is started and not stopped
        self.kind = ""  # the type of the open block

    def _tool_id(self, index: int, call: ToolCall) -> str:
        while len(self.tool_ids) <= index:
            self.tool_ids.append(call.id or f"toolu_{random.getrandbits(96):024x}")
        return self.tool_ids[index]

    def _tool_use(
        self, index: int, call: ToolCall, arguments: dict[str, object]
    ) -> dict[str, object]:
        return {
            "type": "tool_use",
            "id": self._tool_id(index, call),
            "name": call.name,
            "input": arguments,
        }

    def _stop(self, reply: ChatReply) -> tuple[str, str | None]:
        """`stop_reason` and `stop_sequence`."""
        if reply.tool_calls:
            return "tool_use", None
        if reply.done.done_reason == "length":
            return "max_tokens", None
        matched = reply.done.stop_sequence
        if matched is not None and matched in (self.body.stop_sequences or ()):
            return "stop_sequence", matched
        return "end_turn", None

    def _message(
        self, content: list[dict[str, object]], usage: dict[str, int]
    ) -> dict[str, object]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.body.model,
            "content": content,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }

    def render(self, reply: ChatReply) -> dict[str, object]:
        content: list[dict[str, object]] = []
        if reply.thinking:
            content.append({"type": "thinking", "thinking": reply.thinking})
        if reply.text:
            content.append({"type": "text", "text": reply.text})
        for index, call in enumerate(reply.tool_calls):
            content.append(self._tool_use(index, call, call.arguments))
        reason, sequence = self._stop(reply)
        done = reply.done
        usage = {"input_tokens": done.prompt_eval_count, "output_tokens": done.eval_count}
        return {**self._message(content, usage), "stop_reason": reason, "stop_sequence": sequence}

    # The stream

    @staticmethod
    def _event(kind: str, **fields: object) -> bytes:
        return sse_event({"type": kind, **fields}, kind)

    def stream(self, event: ChatEvent) -> Iterator[bytes]:
        if not self.started:
            self.started = True
            usage = {"input_tokens": self.estimated_input, "output_tokens": 0}
            yield self._event("message_start", message=self._message([], usage))
            yield self._event("ping")
        if isinstance(event, TextChunk):
            if event.text:
                yield from self._delta("text", event.text)
        elif isinstance(event, ThinkingChunk):
            if event.text:
                yield from self._delta("thinking", event.text)
        elif isinstance(event, ToolCallsChunk):
            yield from self._tool_blocks(event.calls)
        else:
            yield from self._stop_block()
            reason, sequence = self._stop(self.folder.reply())
            usage = {"input_tokens": event.prompt_eval_count, "output_tokens": event.eval_count}
            delta = {"stop_reason": reason, "stop_sequence": sequence}
            yield self._event("message_delta", delta=delta, usage=usage)
            yield self._event("message_stop")

    def _delta(self, kind: str, text: str) -> Iterator[bytes]:
        """A piece of the trace (`kind` "thinking") or of the answer ("text"), in its block."""
        if not self.open or self.kind != kind:
            yield from self._stop_block()
            yield self._start({"type": kind, kind: ""})
        delta = {"type": f"{kind}_delta", kind: text}
        yield self._event("content_block_delta", index=self.block, delta=delta)

    def _start(self, block: dict[str, object]) -> bytes:
        self.block += 1
        self.open = True
        self.kind = str(block["type"])
        return self._event("content_block_start", index=self.block, content_block=block)

    def _stop_block(self) -> Iterator[bytes]:
        if self.open:
            self.open = False
            yield self._event("content_block_stop", index=self.block)

    def _tool_blocks(self, calls: tuple[ToolCall, ...]) -> Iterator[bytes]:
        first = len(self.tool_ids)
        for offset, call in enumerate(calls):
            yield from self._stop_block()
            yield self._start(self._tool_use(first + offset, call, {}))
            delta = {"type": "input_json_delta", "partial_json": json.dumps(call.arguments)}
            yield self._event("content_block_delta", index=self.block, delta=delta)
        yield from self._stop_block()

    def error(self, exc: Exception) -> bytes:
        """A failure after the stream started: Anthropic's `error` event."""
        return sse_event(anthropic_body(message_for(exc), status_for(exc)), "error")


@router.post("/messages")
async def messages(request: Request) -> Response:
    body = parse_body(await request.body(), MessagesBody)
    req = chat_request(body)
    chat = services_of(request).chat
    work = iterate(lambda cancel: chat.chat(req, cancel))
    rendering = MessagesRendering(body, estimate_tokens(req))
    return await respond(request, work, rendering, stream=bool(body.stream))
