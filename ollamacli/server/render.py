"""Service results -> Ollama's JSON shapes (api/types.go field names, omitempty as Ollama's)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone

from ollamacli.engine.base import TextChunk, TokenLogprob, ToolCall, TopLogprob
from ollamacli.gguffile import ArraySummary
from ollamacli.parameters import OptionValue
from ollamacli.progress import ProgressEvent
from ollamacli.scheduler import LoadedInfo
from ollamacli.server.errors import message_for
from ollamacli.server.respond import ChatRendering
from ollamacli.server.streaming import NDJSON, json_line
from ollamacli.service.events import ChatDone, ChatEvent, ChatReply, ToolCallsChunk
from ollamacli.service.show import ModelInfo
from ollamacli.store import ManifestEntry

# Go's time.Time for "forever" (now + MaxInt64 ns saturates here), to microseconds.
FOREVER = "2262-04-11T23:47:16.854775Z"
STAT_FIELDS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)


def rfc3339(moment: datetime | None = None) -> str:
    """UTC RFC 3339 with microseconds and a `Z`, as Go writes `time.Time`."""
    moment = moment or datetime.now(timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


_FOREVER_EPOCH = datetime.fromisoformat(FOREVER.replace("Z", "+00:00")).timestamp()


def rfc3339_from_epoch(seconds: float) -> str:
    """A wall-clock time in seconds (inf, or anything past Go's latest time, = forever)."""
    if math.isinf(seconds) or seconds >= _FOREVER_EPOCH:
        return FOREVER
    return rfc3339(datetime.fromtimestamp(seconds, tz=timezone.utc))


def tool_calls_json(calls: Iterable[ToolCall], first: int = 0) -> list[dict[str, object]]:
    """Ollama's `tool_calls`: `[{"function": {"index", "name", "arguments"}}]` (`first`: the
    index of the first, when earlier calls of the answer were streamed already)."""
    rendered: list[dict[str, object]] = []
    for index, call in enumerate(calls, start=first):
        item: dict[str, object] = {
            "function": {"index": index, "name": call.name, "arguments": call.arguments}
        }
        if call.id:
            item["id"] = call.id
        rendered.append(item)
    return rendered


def _token_json(entry: TokenLogprob | TopLogprob) -> dict[str, object]:
    data: dict[str, object] = {"token": entry.token, "logprob": entry.logprob}
    if entry.bytes:
        data["bytes"] = list(entry.bytes)
    return data


def logprobs_json(entries: Iterable[TokenLogprob]) -> list[dict[str, object]]:
    """Ollama's `logprobs`: `[{"token", "logprob", "bytes", "top_logprobs": [...]}]` (api/types.go
    `Logprob`; empty `bytes` and `top_logprobs` omitted)."""
    rendered = []
    for entry in entries:
        data = _token_json(entry)
        if entry.top:
            data["top_logprobs"] = [_token_json(top) for top in entry.top]
        rendered.append(data)
    return rendered


class OllamaRendering(ChatRendering):
    """Chat/generate events as Ollama's NDJSON chunks, or one aggregated object."""

    media_type = NDJSON

    def __init__(self, model: str, *, chat: bool, with_context: bool = True) -> None:
        super().__init__()
        self.model = model
        self.chat = chat
        self.with_context = with_context

    def _base(
        self, text: str, calls: tuple[ToolCall, ...] = (), thinking: str = "", first: int = 0
    ) -> dict[str, object]:
        data: dict[str, object] = {"model": self.model, "created_at": rfc3339()}
        if self.chat:
            message: dict[str, object] = {"role": "assistant", "content": text}
            if thinking:
                message["thinking"] = thinking
            if calls:
                message["tool_calls"] = tool_calls_json(calls, first)
            data["message"] = message
        else:
            data["response"] = text
            if thinking:
                data["thinking"] = thinking
        return data

    def chunk(self, event: ChatEvent) -> dict[str, object] | None:
        """The NDJSON object for one event (None for nothing to send); a chunk with logprobs
        goes out even with no text (Ollama's, while a parser holds the text back)."""
        if isinstance(event, ChatDone):
            return self.final(event, "")
        if isinstance(event, ToolCallsChunk):
            first = max(0, self.folder.call_count - len(event.calls))  # calls streamed before
            data = self._base("", event.calls, first=first)
        elif not event.text and not event.logprobs:
            return None
        elif isinstance(event, TextChunk):
            data = self._base(event.text)
        else:
            data = self._base("", thinking=event.text)
        data["done"] = False
        if event.logprobs:
            data["logprobs"] = logprobs_json(event.logprobs)
        return data

    def stream(self, event: ChatEvent) -> Iterator[bytes]:
        """NDJSON bytes for one event."""
        data = self.chunk(event)
        if data is not None:
            yield json_line(data)

    def error(self, exc: Exception) -> bytes:
        """The last line of a stream that failed after it started."""
        return ndjson_error(exc)

    def final(
        self, done: ChatDone, text: str, calls: tuple[ToolCall, ...] = (), thinking: str = ""
    ) -> dict[str, object]:
        """The last object: `done`, `done_reason`, the statistics (zero ones omitted)."""
        data = {**self._base(text, calls, thinking), "done": True, "done_reason": done.done_reason}
        if not self.chat and self.with_context and done.context:
            data["context"] = list(done.context)
        if done.truncated:  # ours: old turns or prompt tokens were dropped to fit num_ctx
            data["truncated"] = True
        for name in STAT_FIELDS:
            value = getattr(done, name)
            if value:
                data[name] = value
        return data

    def render(self, reply: ChatReply) -> dict[str, object]:
        """The single object of a non-streamed answer (every token's logprobs, if asked)."""
        data = self.final(reply.done, reply.text, reply.tool_calls, reply.thinking)
        if reply.logprobs:
            data["logprobs"] = logprobs_json(reply.logprobs)
        return data


class ProgressRendering:
    """Progress events (pull, push, create) as NDJSON, or the last one alone."""

    media_type = NDJSON

    def encode(self, item: ProgressEvent) -> Iterator[bytes]:
        yield json_line(item.to_json())

    def error(self, exc: Exception) -> bytes:
        return ndjson_error(exc)

    def trailer(self) -> bytes:
        return b""

    def whole(self, items: Sequence[ProgressEvent]) -> dict[str, object]:
        return items[-1].to_json() if items else {"status": "success"}


def ndjson_error(exc: Exception) -> bytes:
    """The last line of an NDJSON stream that failed after it started."""
    return json_line({"error": message_for(exc)})


def _go_value(value: OptionValue | str) -> str:
    """Go's `%#v`: strings quoted, whole floats without `.0`."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parameters_text(parameters: dict[str, OptionValue]) -> str:
    """`/api/show`'s `parameters`: `%-30s %#v` lines, one per stop string."""
    lines: list[str] = []
    for name, value in parameters.items():
        for item in value if isinstance(value, list) else [value]:
            lines.append(f"{name:<30} {_go_value(item)}")
    return "\n".join(lines)


def jsonable(value: object) -> object:
    """GGUF metadata made safe for JSON (non-finite floats -> null, bytes -> text)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, ArraySummary):
        return []
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def show_json(info: ModelInfo) -> dict[str, object]:
    """`/api/show`'s answer (`model_info` always present: the Python client requires it)."""
    data: dict[str, object] = {
        "license": info.license,
        "modelfile": info.modelfile_text(),
        "parameters": parameters_text(info.parameters),
        "template": info.template,
        "system": info.system,
        "details": info.details,
        "model_info": jsonable(info.model_info),
        "capabilities": list(info.capabilities),
        "modified_at": rfc3339(info.resolved.modified),
    }
    if info.resolved.messages:
        data["messages"] = jsonable(list(info.resolved.messages))
    return data


def minimal_details() -> dict[str, object]:
    """`details` for a model whose config cannot be read."""
    return {
        "parent_model": "",
        "format": "gguf",
        "family": "",
        "families": None,
        "parameter_size": "",
        "quantization_level": "",
    }


def tag_json(entry: ManifestEntry, details: dict[str, object]) -> dict[str, object]:
    """One model of `/api/tags`."""
    return {
        "name": entry.name.short,
        "model": entry.name.short,
        "modified_at": rfc3339(entry.modified),
        "size": entry.manifest.size,
        "digest": entry.digest,
        "details": details,
    }


def ps_json(info: LoadedInfo, details: dict[str, object]) -> dict[str, object]:
    """One model of `/api/ps` (CPU only: `size_vram` is 0)."""
    return {
        "name": info.name,
        "model": info.name,
        "size": info.size,
        "digest": info.digest,
        "details": details,
        "expires_at": rfc3339_from_epoch(info.expires_at),
        "size_vram": 0,
        "context_length": info.config.num_ctx,
    }
