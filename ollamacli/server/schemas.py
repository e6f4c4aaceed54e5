"""Request bodies of the Ollama, OpenAI and Anthropic APIs (pydantic lives only at this edge).

Field names are the APIs' own. Types are strict, as Go's JSON decoder is: a number where a
string belongs is a 400, not a silent conversion. `null` means "not given" everywhere.
Unknown fields are ignored, as Ollama ignores them.

Text is decoded as Go's encoding/json decodes it: invalid UTF-8 and lone UTF-16 surrogate
escapes (`"\\ud800"`) become U+FFFD, so no string that cannot be encoded again ever reaches
the service (it used to surface as a 500 wherever such text was encoded or tokenized).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    JsonValue,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    ValidationError,
)

from ollamacli.errors import InvalidRequestError

JsonObject = dict[str, JsonValue]
Duration = StrictInt | StrictFloat | StrictStr
FormatValue = StrictStr | JsonObject
ToolChoiceValue = StrictStr | JsonObject


class Body(BaseModel):
    """Base of every request body."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ToolCallFunction(Body):
    name: StrictStr
    arguments: JsonObject | None = None


class ToolCallBody(Body):
    id: StrictStr | None = None
    function: ToolCallFunction


class MessageBody(Body):
    role: StrictStr
    content: StrictStr | None = None
    images: list[StrictStr] | None = None
    thinking: StrictStr | None = None
    tool_calls: list[ToolCallBody] | None = None
    tool_name: StrictStr | None = None


class _ModelBody(Body):
    """A body naming a model (`model`, or the deprecated `name`)."""

    model: StrictStr | None = None
    name: StrictStr | None = None

    @property
    def model_name(self) -> str:
        """The model asked for ("" when missing)."""
        return self.model or self.name or ""


class _GenerationBody(_ModelBody):
    stream: StrictBool | None = None
    format: FormatValue | None = None
    options: JsonObject | None = None
    keep_alive: Duration | None = None
    think: StrictBool | StrictStr | None = None
    truncate: StrictBool | None = None
    logprobs: StrictBool | None = None
    top_logprobs: StrictInt | None = None


class GenerateBody(_GenerationBody):
    prompt: StrictStr | None = None
    suffix: StrictStr | None = None
    system: StrictStr | None = None
    template: StrictStr | None = None
    context: list[StrictInt] | None = None
    raw: StrictBool | None = None
    images: list[StrictStr] | None = None


class ChatBody(_GenerationBody):
    messages: list[MessageBody] | None = None
    tools: list[JsonObject] | None = None
    tool_choice: ToolChoiceValue | None = None  # extension: OpenAI's values (Ollama has none)


class EmbedBody(_ModelBody):
    input: StrictStr | list[JsonValue] | None = None  # list items are checked by the route
    truncate: StrictBool | None = None
    dimensions: StrictInt | None = None
    options: JsonObject | None = None
    keep_alive: Duration | None = None


class EmbeddingsBody(_ModelBody):
    prompt: StrictStr | None = None
    options: JsonObject | None = None
    keep_alive: Duration | None = None


class CreateBody(_ModelBody):
    from_: StrictStr | None = Field(default=None, alias="from")
    files: dict[str, StrictStr] | None = None
    adapters: dict[str, StrictStr] | None = None
    template: StrictStr | None = None
    system: StrictStr | None = None
    license: StrictStr | list[StrictStr] | None = None
    parameters: JsonObject | None = None
    messages: list[MessageBody] | None = None
    quantize: StrictStr | None = None
    quantization: StrictStr | None = None
    renderer: StrictStr | None = None
    parser: StrictStr | None = None
    modelfile: StrictStr | None = None
    stream: StrictBool | None = None


class ShowBody(_ModelBody):
    verbose: StrictBool | None = None


class DeleteBody(_ModelBody):
    pass


class PullBody(_ModelBody):
    insecure: StrictBool | None = None
    stream: StrictBool | None = None


class CopyBody(Body):
    source: StrictStr | None = None
    destination: StrictStr | None = None


class ContentPart(Body):
    type: StrictStr
    text: StrictStr | None = None


class OpenAIMessage(Body):
    role: StrictStr
    content: StrictStr | list[ContentPart] | None = None
    name: StrictStr | None = None
    tool_calls: list[JsonObject] | None = None
    tool_call_id: StrictStr | None = None
    reasoning: StrictStr | None = None  # an earlier turn's trace, as Ollama returns it


class StreamOptions(Body):
    include_usage: StrictBool | None = None


class ResponseFormat(Body):
    type: StrictStr | None = None
    json_schema: JsonObject | None = None


Number = StrictInt | StrictFloat


class _OpenAISampling(Body):
    model: StrictStr
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    max_tokens: StrictInt | None = None
    seed: StrictInt | None = None
    stop: StrictStr | list[StrictStr] | None = None
    frequency_penalty: Number | None = None
    presence_penalty: Number | None = None


class ChatCompletionBody(_OpenAISampling):
    messages: Annotated[list[OpenAIMessage], Field(min_length=1)]
    max_completion_tokens: StrictInt | None = None
    response_format: ResponseFormat | None = None
    tools: list[JsonObject] | None = None
    tool_choice: ToolChoiceValue | None = None
    reasoning_effort: StrictStr | None = None
    reasoning: JsonObject | None = None  # {"effort": ...}, the Responses-style spelling
    logprobs: StrictBool | None = None
    top_logprobs: StrictInt | None = None


class OpenAIEmbeddingBody(Body):
    model: StrictStr
    input: StrictStr | list[JsonValue]
    encoding_format: StrictStr | None = None
    dimensions: StrictInt | None = None


class CompletionBody(_OpenAISampling):
    prompt: StrictStr
    suffix: StrictStr | None = None
    logprobs: StrictInt | None = None  # how many alternatives (the legacy API's one field)


class ResponsesMessageItem(Body):
    """An input message: `content` is a string or `input_text`/`output_text` parts."""

    type: StrictStr | None = None  # "message", or left out with a `role` (the shorthand)
    role: StrictStr
    content: StrictStr | list[ContentPart]


class ResponsesFunctionCallItem(Body):
    """A function call the model made earlier, sent back as history."""

    type: StrictStr
    call_id: StrictStr
    name: StrictStr
    arguments: StrictStr = ""
    id: StrictStr | None = None


class ResponsesFunctionCallOutputItem(Body):
    """The result of a function call, for the model to read."""

    type: StrictStr
    call_id: StrictStr
    output: StrictStr | list[ContentPart]


class ResponsesReasoningItem(Body):
    """Reasoning sent back as history: its trace joins the next assistant turn (as Ollama,
    which reads it from `encrypted_content`)."""

    type: StrictStr
    encrypted_content: StrictStr | None = None
    summary: list[JsonObject] | None = None


def _item_kind(value: object) -> str | None:
    """An input item's `type`; a message may leave it out and give only `role`."""
    if isinstance(value, dict):
        kind = value.get("type") or ("message" if "role" in value else None)
        return kind if isinstance(kind, str) else None
    return getattr(value, "type", None) or "message"


ResponsesItem = Annotated[
    Annotated[ResponsesMessageItem, Tag("message")]
    | Annotated[ResponsesFunctionCallItem, Tag("function_call")]
    | Annotated[ResponsesFunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[ResponsesReasoningItem, Tag("reasoning")],
    Discriminator(_item_kind),
]


class ResponsesTextFormat(Body):
    type: StrictStr
    name: StrictStr | None = None
    schema_: JsonObject | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None


class ResponsesText(Body):
    format: ResponsesTextFormat | None = None


class ResponsesBody(Body):
    """OpenAI's Responses API request (`/v1/responses`)."""

    model: StrictStr
    input: StrictStr | list[ResponsesItem]
    instructions: StrictStr | None = None
    max_output_tokens: StrictInt | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    text: ResponsesText | None = None
    tools: list[JsonObject] | None = None
    tool_choice: ToolChoiceValue | None = None
    stream: StrictBool | None = None
    truncation: StrictStr | None = None
    reasoning: JsonObject | None = None  # `effort` is `think`; echoed back
    previous_response_id: StrictStr | None = None
    background: StrictBool | None = None
    metadata: JsonObject | None = None


class AnthropicBlock(Body):
    """One content block: text, tool_use, tool_result, thinking (others are checked by the
    route)."""

    type: StrictStr
    text: StrictStr | None = None
    id: StrictStr | None = None
    name: StrictStr | None = None
    input: JsonObject | None = None
    tool_use_id: StrictStr | None = None
    content: StrictStr | list[JsonObject] | None = None
    is_error: StrictBool | None = None
    thinking: StrictStr | None = None  # a thinking block's trace
    signature: StrictStr | None = None


class AnthropicMessage(Body):
    role: StrictStr
    content: StrictStr | list[AnthropicBlock]


class AnthropicTool(Body):
    type: StrictStr | None = None
    name: StrictStr
    description: StrictStr | None = None
    input_schema: JsonObject | None = None


class AnthropicToolChoice(Body):
    type: StrictStr
    name: StrictStr | None = None
    disable_parallel_tool_use: StrictBool | None = None


class AnthropicOutputConfig(Body):
    effort: StrictStr | None = None  # "low", "medium", "high", "xhigh", "max"


class MessagesBody(Body):
    """Anthropic's Messages API request (`/v1/messages`)."""

    model: StrictStr
    max_tokens: StrictInt
    messages: list[AnthropicMessage]
    system: StrictStr | list[AnthropicBlock] | None = None
    stream: StrictBool | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    top_k: StrictInt | None = None
    stop_sequences: list[StrictStr] | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: AnthropicToolChoice | None = None
    thinking: JsonObject | None = None  # {"type": "enabled"|"disabled", "budget_tokens"}
    output_config: AnthropicOutputConfig | None = None
    metadata: JsonObject | None = None


B = TypeVar("B", bound=Body)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def decode_json(raw: bytes | str) -> object:
    """Parse JSON text as Go does: invalid UTF-8 and unpaired surrogates become U+FFFD.

    Raises `ValueError` (or `RecursionError`) for text that is not JSON."""
    if isinstance(raw, bytes):
        # UTF-8 (with or without a BOM), or the UTF-16/32 forms Python's decoder also reads.
        encoding = json.detect_encoding(raw)
        text = raw.decode("utf-8-sig" if encoding.startswith("utf-8") else encoding, "replace")
    else:
        text = _SURROGATE.sub(REPLACEMENT, raw)
    data: object = json.loads(text)
    # Python's decoder keeps an escaped surrogate without its pair as a lone code point.
    return _replace_surrogates(data) if _SURROGATE_ESCAPE.search(text) else data


def _replace_surrogates(data: object) -> object:
    """The value with every lone surrogate in its strings (keys too) replaced (no recursion:
    the value may be as deep as the decoder allows)."""

    def clean(value: object) -> object:
        if isinstance(value, str):
            return _SURROGATE.sub(REPLACEMENT, value)
        if isinstance(value, list):
            copy: list[object] = []
            pending.append((value, copy))
            return copy
        if isinstance(value, dict):
            mapping: dict[str, object] = {}
            pending.append((value, mapping))
            return mapping
        return value

    pending: list[tuple[list[object] | dict[str, object], list[object] | dict[str, object]]] = []
    root = clean(data)
    while pending:
        source, target = pending.pop()
        if isinstance(source, list) and isinstance(target, list):
            target.extend(clean(item) for item in source)
        elif isinstance(source, dict) and isinstance(target, dict):
            target.update({_SURROGATE.sub(REPLACEMENT, k): clean(v) for k, v in source.items()})
    return root


def parse_body(raw: bytes, schema: type[B]) -> B:
    """Decode and validate a JSON request body; every failure is a 400 with a reason."""
    if not raw.strip():
        raise InvalidRequestError("missing request body")
    try:
        data = decode_json(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequestError(f"invalid JSON in request body: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("request body must be a JSON object")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequestError(_describe(exc)) from None
    except RecursionError:
        raise InvalidRequestError("request body is nested too deeply") from None


# Location parts pydantic adds for the members of a union: type labels, not field names.
_UNION_LABELS = frozenset({"str", "int", "float", "bool", "dict", "list"})


def _describe(exc: ValidationError) -> str:
    """The most specific failure: of a union's members, the one that got furthest (a list
    item's missing field says more than "not a string")."""
    errors = exc.errors(include_url=False)
    first = max(errors, key=lambda error: len(error["loc"]))  # the earliest of the deepest
    parts = [
        str(part)
        for part in first["loc"]
        if not (isinstance(part, str) and ("[" in part or part in _UNION_LABELS))
    ]
    where = ".".join(parts) or "body"
    return f'invalid value for "{where}": {first["msg"]}'
