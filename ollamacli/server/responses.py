"""OpenAI's Responses API (`POST /v1/responses`), as Ollama maps it (openai/responses.go).

`input` is a string (one user turn) or a list of items: messages, earlier `function_call`s and
their `function_call_output`s; `instructions` opens the conversation as a system turn.
`max_output_tokens` is `num_predict`, `temperature` defaults to 1.0, `text.format` json_schema
is a `format`, `reasoning.effort` is `think` (as on /v1/chat/completions). A thinking model's
trace is a `reasoning` output item before the message (`summary` one `summary_text`, and
`encrypted_content` the plain trace, as Ollama), streamed as output_item.added,
reasoning_summary_text.delta..., reasoning_summary_text.done, output_item.done; a reasoning item
sent back gives its `encrypted_content` to the next assistant turn. Beyond Ollama: `tool_choice` ("none", "required", or one function) is honoured,
and an answer cut short by `max_output_tokens` says so (`status: "incomplete"`). Streaming is
SSE with named events, each with a `sequence_number`: response.created, response.in_progress,
then per output item output_item.added, content_part.added, output_text.delta...,
output_text.done, content_part.done, output_item.done (function calls: output_item.added,
function_call_arguments.delta/.done, output_item.done), and last response.completed, whose
`response` is the same object a non-streamed request gets. Nothing is stored:
`previous_response_id` is refused.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Iterator, Mapping, Sequence

from fastapi import APIRouter, Request
from starlette.responses import Response

from ollamacli.engine.base import ChatMessage, TextChunk, ToolCall
from ollamacli.errors import InvalidRequestError
from ollamacli.server import convert
from ollamacli.server.errors import OPENAI_TYPES, message_for, status_for
from ollamacli.server.openai_routes import call_id, think_for_effort
from ollamacli.server.respond import ChatRendering, respond
from ollamacli.server.schemas import (
    ContentPart,
    ResponsesBody,
    ResponsesFunctionCallItem,
    ResponsesFunctionCallOutputItem,
    ResponsesItem,
    ResponsesMessageItem,
    ResponsesReasoningItem,
    ResponsesText,
    ToolChoiceValue,
    parse_body,
)
from ollamacli.server.state import services_of
from ollamacli.server.streaming import iterate, sse_event
from ollamacli.service.chat import ChatRequest, FormatSpec
from ollamacli.service.events import ChatEvent, ChatReply, ThinkingChunk, ToolCallsChunk

router = APIRouter(prefix="/v1")

_ROLES = {"developer": "system"}  # the Responses API's name for the system role


def _text(parts: str | list[ContentPart]) -> str:
    if isinstance(parts, str):
        return parts
    texts = []
    for part in parts:
        if part.type not in ("input_text", "output_text"):
            raise InvalidRequestError(f"content part type {part.type!r} is not supported")
        texts.append(part.text or "")
    return "".join(texts)


def _arguments(text: str) -> dict[str, object]:
    try:
        parsed = json.loads(text) if text else {}
    except ValueError:
        raise InvalidRequestError("failed to parse function call arguments: not JSON") from None
    if not isinstance(parsed, dict):
        raise InvalidRequestError("function call arguments must be a JSON object")
    return dict(parsed)


def _with_call(messages: list[ChatMessage], call: ToolCall) -> None:
    """A function call joins the assistant turn before it, or starts one (as Ollama)."""
    if messages and messages[-1].role == "assistant":
        last = messages[-1]
        messages[-1] = dataclasses.replace(last, tool_calls=(*last.tool_calls, call))
    else:
        messages.append(ChatMessage("assistant", "", tool_calls=(call,)))


def _with_thinking(messages: list[ChatMessage], thinking: str) -> str:
    """A pending trace joins the assistant turn just added; what is left still pends."""
    if thinking and messages and messages[-1].role == "assistant":
        messages[-1] = dataclasses.replace(messages[-1], thinking=thinking)
        return ""
    return thinking


def input_messages(items: str | Sequence[ResponsesItem]) -> list[ChatMessage]:
    """The conversation in `input`; a function_call_output is named after its call."""
    if isinstance(items, str):
        return [ChatMessage("user", items)]
    messages: list[ChatMessage] = []
    called: dict[str, str] = {}
    thinking = ""  # a reasoning item's trace, waiting for the assistant turn it belongs to
    for item in items:
        if isinstance(item, ResponsesMessageItem):
            role = item.role.lower()
            messages.append(ChatMessage(_ROLES.get(role, role), _text(item.content)))
            thinking = _with_thinking(messages, thinking)
        elif isinstance(item, ResponsesFunctionCallItem):
            called[item.call_id] = item.name
            _with_call(messages, ToolCall(item.name, _arguments(item.arguments), item.call_id))
            thinking = _with_thinking(messages, thinking)
        elif isinstance(item, ResponsesFunctionCallOutputItem):
            name = called.get(item.call_id)
            messages.append(ChatMessage("tool", _text(item.output), tool_name=name))
        elif isinstance(item, ResponsesReasoningItem):
            thinking = item.encrypted_content or ""
    if thinking:  # a trace with no answer after it is an assistant turn of its own
        messages.append(ChatMessage("assistant", "", thinking=thinking))
    return messages


def _format(text: ResponsesText | None) -> FormatSpec:
    fmt = text.format if text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return "json"
    if fmt.type == "json_schema" and fmt.schema_ is not None:
        return fmt.schema_
    raise InvalidRequestError(f"invalid text.format type {fmt.type!r}")


def _tools(tools: Sequence[Mapping[str, object]] | None) -> tuple[dict[str, object], ...]:
    """Responses tools (`{"type": "function", "name", "parameters"}`) in Ollama's nesting."""
    converted: list[dict[str, object]] = []
    for tool in tools or ():
        if tool.get("type") != "function":
            raise InvalidRequestError(f"tool type {tool.get('type')!r} is not supported")
        function = {k: tool[k] for k in ("name", "description", "parameters") if k in tool}
        converted.append({"type": "function", "function": function})
    return tuple(converted)


def _tool_choice(value: ToolChoiceValue | None) -> ToolChoiceValue | None:
    """`{"type": "function", "name": N}` in Chat Completions' shape, for convert.tool_choice."""
    if isinstance(value, dict) and value.get("type") == "function" and "name" in value:
        return {"type": "function", "function": {"name": value["name"]}}
    return value


def chat_request(body: ResponsesBody) -> ChatRequest:
    """The chat request a Responses request stands for."""
    if body.previous_response_id:
        raise InvalidRequestError(
            "previous_response_id is not supported: responses are not stored",
            hint="send the whole conversation in input",
        )
    messages = input_messages(body.input)
    if body.instructions:
        messages.insert(0, ChatMessage("system", body.instructions))
    options: dict[str, object] = {
        "temperature": 1.0 if body.temperature is None else body.temperature
    }
    if body.top_p is not None:
        options["top_p"] = body.top_p
    if body.max_output_tokens is not None:
        options["num_predict"] = body.max_output_tokens
    return ChatRequest(
        model=convert.model_name(body.model),
        messages=tuple(messages),
        options=convert.options(options),
        format=_format(body.text),
        tools=_tools(body.tools),
        tool_choice=convert.tool_choice(_tool_choice(body.tool_choice)),
        think=think_for_effort(body.reasoning.get("effort") if body.reasoning else None),
    )


def _output_text(text: str) -> dict[str, object]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


class ResponsesRendering(ChatRendering):
    """Chat events as a Responses API object, or as its stream of named events."""

    def __init__(self, body: ResponsesBody) -> None:
        super().__init__()
        self.body = body
        suffix = f"{random.getrandbits(48):012x}"
        self.id = f"resp_{suffix}"
        self.message_id = f"msg_{suffix}"
        self.reasoning_id = f"rs_{suffix}"
        self.created = int(time.time())
        self.call_ids: list[str] = []  # one per call, the same in the stream and at the end
        self.sequence = 0
        self.started = False
        self.message_open = False
        self.message_index = 0  # the message's output_index (1 after a reasoning item)
        self.reasoning_open = False
        self.items = 0  # output items started so far

    # The response object

    def _call_item(self, index: int, call: ToolCall, status: str) -> dict[str, object]:
        while len(self.call_ids) <= index:
            self.call_ids.append(call_id(call))
        return {
            "id": f"fc_{self.id.removeprefix('resp_')}_{index}",
            "type": "function_call",
            "status": status,
            "call_id": self.call_ids[index],
            "name": call.name,
            "arguments": json.dumps(call.arguments) if status == "completed" else "",
        }

    def _message_item(self, text: str, status: str) -> dict[str, object]:
        content = [_output_text(text)] if status == "completed" else []
        return {
            "id": self.message_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def _reasoning_item(self, thinking: str) -> dict[str, object]:
        return {
            "id": self.reasoning_id,
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": thinking}],
            "encrypted_content": thinking,
        }

    def _output(self, reply: ChatReply) -> list[dict[str, object]]:
        output = []
        if reply.thinking:
            output.append(self._reasoning_item(reply.thinking))
        if reply.text or not reply.tool_calls:
            output.append(self._message_item(reply.text, "completed"))
        for index, call in enumerate(reply.tool_calls):
            output.append(self._call_item(index, call, "completed"))
        return output

    def _response(self, status: str, reply: ChatReply | None = None) -> dict[str, object]:
        body = self.body
        fmt = body.text.format if body.text is not None else None
        data: dict[str, object] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "completed_at": None,
            "status": status,
            "incomplete_details": None,
            "model": body.model,
            "previous_response_id": None,
            "instructions": body.instructions or None,
            "output": [],
            "error": None,
            "tools": list(body.tools or []),
            "tool_choice": body.tool_choice if body.tool_choice is not None else "auto",
            "truncation": body.truncation or "disabled",
            "parallel_tool_calls": True,
            "text": {
                "format": fmt.model_dump(by_alias=True, exclude_none=True)
                if fmt
                else {"type": "text"}
            },
            "top_p": 1.0 if body.top_p is None else body.top_p,
            "presence_penalty": 0,
            "frequency_penalty": 0,
            "top_logprobs": 0,
            "temperature": 1.0 if body.temperature is None else body.temperature,
            "reasoning": body.reasoning,
            "usage": None,
            "max_output_tokens": body.max_output_tokens,
            "max_tool_calls": None,
            "store": False,
            "background": bool(body.background),
            "service_tier": "default",
            "metadata": body.metadata or {},
            "safety_identifier": None,
            "prompt_cache_key": None,
        }
        if reply is not None:
            data.update(self._finished(reply))
        return data

    def _finished(self, reply: ChatReply) -> dict[str, object]:
        done = reply.done
        cut = done.done_reason == "length" and not reply.tool_calls
        return {
            "completed_at": int(time.time()),
            "status": "incomplete" if cut else "completed",
            "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
            "output": self._output(reply),
            "usage": {
                "input_tokens": done.prompt_eval_count,
                "output_tokens": done.eval_count,
                "total_tokens": done.prompt_eval_count + done.eval_count,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        }

    def render(self, reply: ChatReply) -> dict[str, object]:
        return self._response("completed", reply)

    # The stream

    def _event(self, kind: str, **fields: object) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return sse_event(data, kind)

    def stream(self, event: ChatEvent) -> Iterator[bytes]:
        if not self.started:
            self.started = True
            yield self._event("response.created", response=self._response("in_progress"))
            yield self._event("response.in_progress", response=self._response("in_progress"))
        if isinstance(event, TextChunk):
            # The message is output item 0: the chat service sends text before calls only.
            if event.text and not self.call_ids:
                yield from self._close_reasoning()
                yield from self._open_message()
                yield self._text_event("response.output_text.delta", delta=event.text)
        elif isinstance(event, ThinkingChunk):
            if event.text and not self.message_open and not self.call_ids:
                yield from self._reasoning(event.text)
        elif isinstance(event, ToolCallsChunk):
            yield from self._close_reasoning()
            yield from self._close_message()
            yield from self._calls(event.calls)
        else:
            reply = self.folder.reply()
            yield from self._close_reasoning()
            if not reply.tool_calls:
                yield from self._open_message()  # an empty answer is still one message
            yield from self._close_message()
            yield self._event("response.completed", response=self.render(reply))

    def _reasoning(self, text: str) -> Iterator[bytes]:
        """The trace streams into a reasoning item, output item 0 (thinking comes first)."""
        if not self.reasoning_open:
            self.reasoning_open = True
            self.items += 1
            item = {"id": self.reasoning_id, "type": "reasoning", "summary": []}
            yield self._event("response.output_item.added", output_index=0, item=item)
        yield self._summary_event("response.reasoning_summary_text.delta", delta=text)

    def _summary_event(self, kind: str, **fields: object) -> bytes:
        where = {"item_id": self.reasoning_id, "output_index": 0, "summary_index": 0}
        return self._event(kind, **where, **fields)

    def _close_reasoning(self) -> Iterator[bytes]:
        if not self.reasoning_open:
            return
        self.reasoning_open = False
        thinking = self.folder.thinking
        yield self._summary_event("response.reasoning_summary_text.done", text=thinking)
        yield self._event(
            "response.output_item.done", output_index=0, item=self._reasoning_item(thinking)
        )

    def _text_event(self, kind: str, **fields: object) -> bytes:
        where = {"item_id": self.message_id, "output_index": self.message_index}
        return self._event(kind, **where, content_index=0, **fields)

    def _open_message(self) -> Iterator[bytes]:
        if self.message_open or self.items > (1 if self.folder.thinking else 0):
            return
        self.message_open = True
        self.message_index = self.items
        self.items += 1
        yield self._event(
            "response.output_item.added",
            output_index=self.message_index,
            item=self._message_item("", "in_progress"),
        )
        yield self._text_event("response.content_part.added", part=_output_text(""))

    def _close_message(self) -> Iterator[bytes]:
        if not self.message_open:
            return
        self.message_open = False
        text = self.folder.text
        yield self._text_event("response.output_text.done", text=text, logprobs=[])
        yield self._text_event("response.content_part.done", part=_output_text(text))
        yield self._event(
            "response.output_item.done",
            output_index=self.message_index,
            item=self._message_item(text, "completed"),
        )

    def _calls(self, calls: tuple[ToolCall, ...]) -> Iterator[bytes]:
        first = len(self.call_ids)
        for offset, call in enumerate(calls):
            index, position = first + offset, self.items
            self.items += 1
            item = self._call_item(index, call, "in_progress")
            where = {"item_id": item["id"], "output_index": position}
            arguments = json.dumps(call.arguments)
            yield self._event("response.output_item.added", output_index=position, item=item)
            yield self._event("response.function_call_arguments.delta", **where, delta=arguments)
            yield self._event("response.function_call_arguments.done", **where, arguments=arguments)
            yield self._event(
                "response.output_item.done",
                output_index=position,
                item=self._call_item(index, call, "completed"),
            )

    def error(self, exc: Exception) -> bytes:
        """A failure after the stream started: OpenAI's `error` event."""
        code = OPENAI_TYPES.get(status_for(exc), "api_error")
        return self._event("error", code=code, message=message_for(exc), param=None)


@router.post("/responses")
async def responses(request: Request) -> Response:
    body = parse_body(await request.body(), ResponsesBody)
    req = chat_request(body)
    chat = services_of(request).chat
    work = iterate(lambda cancel: chat.chat(req, cancel))
    return await respond(request, work, ResponsesRendering(body), stream=bool(body.stream))
