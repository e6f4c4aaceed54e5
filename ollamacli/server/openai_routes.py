"""OpenAI-compatible `/v1`: chat completions, completions and models, as Ollama maps them.

Like Ollama (openai/openai.go): `stream` defaults to false, streaming is SSE ending with
`data: [DONE]`, `temperature` and `top_p` default to 1.0 when the client omits them, and
errors use OpenAI's `{"error": {"message", "type", "param", "code"}}` shape.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from ollamacli.engine.base import ChatMessage, TextChunk, TokenLogprob, ToolCall, TopLogprob
from ollamacli.engine.thinking import ThinkValue
from ollamacli.errors import InvalidRequestError
from ollamacli.names import ModelName
from ollamacli.server import convert
from ollamacli.server.errors import message_for, openai_body, status_for
from ollamacli.server.respond import ChatRendering, respond
from ollamacli.server.schemas import (
    ChatCompletionBody,
    CompletionBody,
    OpenAIMessage,
    ResponseFormat,
    decode_json,
    parse_body,
)
from ollamacli.server.state import services_of
from ollamacli.server.streaming import iterate, sse_event
from ollamacli.service.chat import ChatRequest, FormatSpec, GenerateRequest
from ollamacli.service.events import ChatDone, ChatEvent, ChatReply, ThinkingChunk, ToolCallsChunk
from ollamacli.store import ManifestEntry

router = APIRouter(prefix="/v1")
FINISH_REASONS = {"stop": "stop", "length": "length"}


def _options(
    body: ChatCompletionBody | CompletionBody, max_tokens: int | None
) -> dict[str, object]:
    options: dict[str, object] = {
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "top_p": 1.0 if body.top_p is None else body.top_p,
    }
    extra = {
        "num_predict": max_tokens,
        "seed": body.seed,
        "stop": [body.stop] if isinstance(body.stop, str) else body.stop,
        "frequency_penalty": body.frequency_penalty,
        "presence_penalty": body.presence_penalty,
    }
    options.update({k: v for k, v in extra.items() if v is not None})
    return options


def _text(message: OpenAIMessage) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    parts = []
    for part in message.content:
        if part.type != "text":
            raise InvalidRequestError(f"content part type {part.type!r} is not supported")
        parts.append(part.text or "")
    return "".join(parts)


def _tool_calls(message: OpenAIMessage) -> tuple[ToolCall, ...]:
    calls = []
    for raw in message.tool_calls or ():
        function = raw.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequestError("invalid tool call: function name is required")
        arguments = function.get("arguments") or "{}"
        try:
            parsed = decode_json(arguments) if isinstance(arguments, str) else arguments
        except (ValueError, RecursionError):
            raise InvalidRequestError("invalid tool call arguments: not JSON") from None
        if not isinstance(parsed, dict):
            raise InvalidRequestError("invalid tool call arguments: not a JSON object")
        call_id = raw.get("id")
        arguments_dict: dict[str, object] = dict(parsed)
        calls.append(
            ToolCall(
                str(function["name"]), arguments_dict, call_id if isinstance(call_id, str) else None
            )
        )
    return tuple(calls)


def _format(response_format: ResponseFormat | None) -> FormatSpec:
    """`response_format` as Ollama maps it (openai/openai.go): `json_object` is "json",
    `json_schema` its schema; any other type (`text`, or one it does not know) is no format."""
    kind = (response_format.type or "").strip().lower() if response_format else ""
    if kind == "json_object":
        return "json"
    if kind == "json_schema" and response_format is not None:
        schema = (response_format.json_schema or {}).get("schema")
        if isinstance(schema, dict):
            return schema
        if schema is not None:
            raise InvalidRequestError(
                "invalid response_format: json_schema.schema must be an object"
            )
    return None


def _messages(body: ChatCompletionBody) -> tuple[ChatMessage, ...]:
    """The conversation; a `tool` message is named after the call it answers (`tool_call_id`)."""
    called: dict[str, str] = {}
    messages = []
    for m in body.messages:
        calls = _tool_calls(m)
        called.update({c.id: c.name for c in calls if c.id})
        name = m.name or (called.get(m.tool_call_id) if m.tool_call_id else None)
        messages.append(
            ChatMessage(
                m.role.lower(),
                _text(m),
                tool_calls=calls,
                tool_name=name,
                thinking=m.reasoning or "",
            )
        )
    return tuple(messages)


_EFFORTS: dict[str, ThinkValue] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "max": "max",
    "xhigh": "max",
    "ultra": "max",
}


def think_from_effort(body: ChatCompletionBody) -> ThinkValue:
    """`reasoning_effort` (or `reasoning.effort`) as Ollama's `think`; OpenAI's tiers beyond
    Ollama's are clamped to the nearest one, as Ollama's openai layer does."""
    effort = body.reasoning.get("effort") if body.reasoning is not None else body.reasoning_effort
    return think_for_effort(effort)


def think_for_effort(effort: object) -> ThinkValue:
    """One `reasoning.effort` value as Ollama's `think` (shared with /v1/responses)."""
    if effort is None or effort == "":
        return None
    if not isinstance(effort, str) or effort not in _EFFORTS:
        raise InvalidRequestError(
            f"invalid reasoning value: {effort!r} (must be "
            + ", ".join(f'"{name}"' for name in _EFFORTS)
            + ")"
        )
    return _EFFORTS[effort]


def chat_request(body: ChatCompletionBody) -> ChatRequest:
    """An Ollama chat request from an OpenAI chat completion request."""
    max_tokens = body.max_completion_tokens or body.max_tokens
    return ChatRequest(
        model=convert.model_name(body.model),
        messages=_messages(body),
        options=convert.options(_options(body, max_tokens)),
        format=_format(body.response_format),
        tools=tuple(body.tools or ()),
        tool_choice=convert.tool_choice(body.tool_choice),
        think=think_from_effort(body),
        logprobs=bool(body.logprobs),
        top_logprobs=convert.top_logprobs(body.top_logprobs),
    )


def completion_request(body: CompletionBody) -> GenerateRequest:
    """An Ollama generate request from an OpenAI (legacy) completion request: `logprobs: n`
    above 0 asks for logprobs with n alternatives, as Ollama maps it (0 asks for none)."""
    if body.suffix:
        raise InvalidRequestError(f'"{body.model}" does not support insert')
    wanted = body.logprobs is not None and body.logprobs > 0
    return GenerateRequest(
        model=convert.model_name(body.model),
        prompt=body.prompt,
        options=convert.options(_options(body, body.max_tokens)),
        logprobs=wanted,
        top_logprobs=convert.top_logprobs(body.logprobs if wanted else 0),
    )


def _entry_json(entry: TokenLogprob | TopLogprob) -> dict[str, object]:
    return {"token": entry.token, "logprob": entry.logprob, "bytes": list(entry.bytes)}


def chat_logprobs(entries: Sequence[TokenLogprob]) -> dict[str, object]:
    """A chat choice's `logprobs`: `{"content": [{"token", "logprob", "bytes",
    "top_logprobs": [...]}]}`."""
    return {
        "content": [
            {**_entry_json(entry), "top_logprobs": [_entry_json(top) for top in entry.top]}
            for entry in entries
        ]
    }


def legacy_logprobs(entries: Sequence[TokenLogprob], offset: int = 0) -> dict[str, object]:
    """A text completion choice's `logprobs`, the legacy shape: parallel lists of `tokens`,
    `token_logprobs`, `top_logprobs` (`{token: logprob}` each) and `text_offset` (where each
    token starts in the answer, in characters, from `offset`)."""
    offsets = []
    for entry in entries:
        offsets.append(offset)
        offset += _characters(entry.bytes)
    return {
        "tokens": [entry.token for entry in entries],
        "token_logprobs": [entry.logprob for entry in entries],
        "top_logprobs": [{top.token: top.logprob for top in entry.top} for entry in entries],
        "text_offset": offsets,
    }


def _characters(data: Sequence[int]) -> int:
    """Characters that start in some UTF-8 bytes (a token may hold part of one)."""
    return sum(1 for byte in data if byte & 0xC0 != 0x80)


def call_id(call: ToolCall) -> str:
    """A tool call's id: the model's own, or a fresh `call_<hex>` (OpenAI's clients need one)."""
    return call.id or f"call_{random.getrandbits(48):012x}"


def usage(done: ChatDone) -> dict[str, int]:
    """OpenAI's token counts."""
    prompt, completion = done.prompt_eval_count, done.eval_count
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def finish_reason(reply: ChatReply) -> str:
    """`tool_calls` once the answer called a tool, else `stop` or `length`."""
    return "tool_calls" if reply.tool_calls else FINISH_REASONS.get(reply.done.done_reason, "stop")


class OpenAIRendering(ChatRendering):
    """Events as OpenAI chat completions (`chat=True`) or text completions."""

    def __init__(
        self, model: str, *, chat: bool, include_usage: bool = False, logprobs: bool = False
    ) -> None:
        super().__init__()
        self.model = model
        self.chat = chat
        self.include_usage = include_usage
        self.logprobs = logprobs  # asked for: every choice carries `logprobs` (maybe null)
        self._offset = 0  # characters of the streamed tokens so far (legacy `text_offset`)
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{random.randint(0, 998)}"
        self.created = int(time.time())

    def _envelope(self, choices: list[dict[str, object]], *, chunk: bool) -> dict[str, object]:
        kind = "chat.completion" if self.chat else "text_completion"
        return {
            "id": self.id,
            "object": f"{kind}.chunk" if chunk and self.chat else kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_ollama",
            "choices": choices,
        }

    def _choice(
        self,
        text: str,
        calls: tuple[ToolCall, ...],
        reason: str | None,
        *,
        chunk: bool,
        reasoning: str = "",
        logprobs: Sequence[TokenLogprob] = (),
    ) -> dict[str, object]:
        if not self.chat:
            legacy = legacy_logprobs(logprobs, self._offset) if logprobs else None
            return {"text": text, "index": 0, "logprobs": legacy, "finish_reason": reason}
        message: dict[str, object] = {"role": "assistant", "content": text}
        if reasoning:
            message["reasoning"] = reasoning  # Ollama's field for the trace
        if calls:
            first = max(0, self.folder.call_count - len(calls))  # calls streamed before these
            message["tool_calls"] = [
                {
                    **({"index": first + i} if chunk else {}),
                    "id": call_id(call),
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
                for i, call in enumerate(calls)
            ]
        choice: dict[str, object] = {"index": 0, "delta" if chunk else "message": message}
        if self.logprobs:
            choice["logprobs"] = chat_logprobs(logprobs) if logprobs or not chunk else None
        choice["finish_reason"] = reason
        return choice

    def _chunk(
        self,
        text: str,
        calls: tuple[ToolCall, ...],
        reason: str | None,
        logprobs: Sequence[TokenLogprob] = (),
    ) -> bytes:
        choice = self._choice(text, calls, reason, chunk=True, logprobs=logprobs)
        self._offset += sum(_characters(entry.bytes) for entry in logprobs)
        return sse_event(self._envelope([choice], chunk=True))

    def stream(self, event: ChatEvent) -> Iterator[bytes]:
        """SSE events for one chat event (tokens' logprobs on the event they came with)."""
        if isinstance(event, TextChunk):
            if event.text or event.logprobs:
                yield self._chunk(event.text, (), None, event.logprobs)
        elif isinstance(event, ThinkingChunk):
            if event.text and self.chat:
                choice = self._choice(
                    "", (), None, chunk=True, reasoning=event.text, logprobs=event.logprobs
                )
                yield sse_event(self._envelope([choice], chunk=True))
            elif event.logprobs:  # a text completion shows no trace, but its tokens count
                yield self._chunk("", (), None, event.logprobs)
        elif isinstance(event, ToolCallsChunk):
            yield self._chunk("", event.calls, None, event.logprobs)
        else:
            yield self._chunk("", (), finish_reason(self.folder.reply()))
            if self.include_usage:
                yield sse_event({**self._envelope([], chunk=True), "usage": usage(event)})

    def trailer(self) -> bytes:
        return sse_event("[DONE]")

    def error(self, exc: Exception) -> bytes:
        """An error after the stream started, as an SSE event in OpenAI's shape."""
        return sse_event(openai_body(message_for(exc), status_for(exc)))

    def render(self, reply: ChatReply) -> dict[str, object]:
        """The non-streamed response."""
        choice = self._choice(
            reply.text,
            reply.tool_calls,
            finish_reason(reply),
            chunk=False,
            reasoning=reply.thinking,
            logprobs=reply.logprobs,
        )
        return {**self._envelope([choice], chunk=False), "usage": usage(reply.done)}


@router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    body = parse_body(await request.body(), ChatCompletionBody)
    req = chat_request(body)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    completion = OpenAIRendering(
        body.model, chat=True, include_usage=include_usage, logprobs=req.logprobs
    )
    chat = services_of(request).chat
    work = iterate(lambda cancel: chat.chat(req, cancel))
    return await respond(request, work, completion, stream=bool(body.stream))


@router.post("/completions")
async def completions(request: Request) -> Response:
    body = parse_body(await request.body(), CompletionBody)
    req = completion_request(body)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    completion = OpenAIRendering(
        body.model, chat=False, include_usage=include_usage, logprobs=req.logprobs
    )
    chat = services_of(request).chat
    work = iterate(lambda cancel: chat.generate(req, cancel))
    return await respond(request, work, completion, stream=bool(body.stream))


def _model_json(entry: ManifestEntry) -> dict[str, object]:
    return {
        "id": entry.name.short,
        "object": "model",
        "created": int(entry.modified.timestamp()),
        "owned_by": entry.name.namespace,
    }


@router.get("/models")
async def models(request: Request) -> Response:
    store = services_of(request).store
    entries = await run_in_threadpool(store.entries)
    return JSONResponse({"object": "list", "data": [_model_json(e) for e in entries]})


@router.get("/models/{model:path}")
async def model(model: str, request: Request) -> Response:
    name = ModelName.parse(convert.model_name(model))
    store = services_of(request).store
    entry = await run_in_threadpool(store.manifests.get, name)
    return JSONResponse(_model_json(entry))
