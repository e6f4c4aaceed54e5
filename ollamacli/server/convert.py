"""Ollama API bodies -> service requests, checked the way Ollama checks them (all 400s)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath

from ollamacli.config import parse_duration
from ollamacli.engine.base import ChatMessage, ToolCall
from ollamacli.engine.thinking import check_think, think_enabled
from ollamacli.engine.tools import ToolChoice
from ollamacli.errors import InvalidOptionError, InvalidRequestError
from ollamacli.modelfile import ROLES, Message, parse, role_error
from ollamacli.names import ModelName
from ollamacli.parameters import OptionValue, options_from_json
from ollamacli.server.schemas import (
    ChatBody,
    CreateBody,
    EmbedBody,
    FormatValue,
    GenerateBody,
    MessageBody,
    ToolChoiceValue,
)
from ollamacli.service.chat import ChatRequest, FormatSpec, GenerateRequest
from ollamacli.service.embed import EmbedRequest
from ollamacli.service.models import PEFT_CONFIG, PEFT_WEIGHTS, CreateSpec
from ollamacli.store import Digest, parse_digest

# Load options whose absurd values would make llama.cpp allocate or spawn without bound.
_LOAD_LIMITS: dict[str, tuple[int, int]] = {
    "num_ctx": (0, 1 << 20),
    "num_batch": (0, 1 << 16),
    "num_thread": (0, 256),
}


def model_name(value: str, *, field: str = "model") -> str:
    """A required, valid model name, as the client sent it."""
    if not value:
        raise InvalidRequestError(f"{field} is required")
    ModelName.parse(value)
    return value


def keep_alive(value: float | int | str | None) -> float | None:
    """`keep_alive` in seconds (inf = forever), None when absent."""
    return None if value is None else parse_duration(value)


def options(value: Mapping[str, object] | None) -> dict[str, OptionValue]:
    """`options` as Ollama reads them (nulls and unknown names skipped), with sane bounds on
    the ones that size allocations."""
    checked = options_from_json(value or {})
    for name, (low, high) in _LOAD_LIMITS.items():
        number = checked.get(name)
        if isinstance(number, int) and not low <= number <= high:
            raise InvalidOptionError(
                f"option {name!r} must be between {low} and {high}", option=name
            )
    return checked


def format_spec(value: FormatValue | None) -> FormatSpec:
    """`format`: "json" or a JSON-schema object."""
    if value is None or value == "":
        return None
    if value == "json" or isinstance(value, dict):
        return value
    raise InvalidRequestError(
        f'invalid format: "{value}"; expected "json" or a valid JSON Schema object'
    )


def tool_choice(value: ToolChoiceValue | None) -> ToolChoice:
    """OpenAI's `tool_choice`: "auto", "none", "required", or
    `{"type": "function", "function": {"name": ...}}` (a call of that function)."""
    if value is None or value == "auto":
        return ToolChoice()
    if value in ("none", "required"):
        return ToolChoice("none" if value == "none" else "required")
    function = value.get("function") if isinstance(value, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if isinstance(name, str) and name:
        return ToolChoice("required", name)
    raise InvalidRequestError(
        f"invalid tool_choice: {value!r}",
        hint='use "auto", "none", "required" or {"type": "function", "function": {"name": ...}}',
    )


def embed_inputs(value: str | Sequence[object] | None) -> tuple[str, ...]:
    """`input`: one string or a list of strings (anything else is Ollama's 400)."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return (value,)
    if not all(isinstance(item, str) for item in value):
        raise InvalidRequestError("invalid input type")
    return tuple(str(item) for item in value)


def embed_request(body: EmbedBody) -> EmbedRequest:
    """An EmbedRequest from `/api/embed`'s body."""
    return EmbedRequest(
        model=model_name(body.model_name),
        inputs=embed_inputs(body.input),
        truncate=body.truncate is not False,
        dimensions=body.dimensions,
        options=options(body.options),
        keep_alive=keep_alive(body.keep_alive),
    )


def wanted_capabilities(body: GenerateBody | ChatBody) -> tuple[str, ...]:
    """Capabilities the request needs beyond completion (checked against the model)."""
    needs: list[str] = []
    if think_enabled(check_think(body.think)):
        needs.append("thinking")
    if isinstance(body, GenerateBody):
        if body.suffix:
            needs.append("insert")
        if body.images:
            needs.append("vision")
    elif any(m.images for m in body.messages or ()):
        needs.append("vision")
    return tuple(needs)


def top_logprobs(value: int | None) -> int:
    """`top_logprobs`: 0 to 20, Ollama's 400 otherwise (it asks for nothing without
    `logprobs`, as in Ollama)."""
    if value is not None and not 0 <= value <= 20:
        raise InvalidRequestError("top_logprobs must be between 0 and 20")
    return value or 0


def generate_request(body: GenerateBody) -> GenerateRequest:
    """A GenerateRequest from `/api/generate`'s body."""
    name = model_name(body.model_name)
    top = top_logprobs(body.top_logprobs)
    if body.raw and (body.template or body.system or body.context):
        raise InvalidRequestError("raw mode does not support template, system, or context")
    return GenerateRequest(
        model=name,
        prompt=body.prompt or "",
        system=body.system,
        template=body.template,
        raw=bool(body.raw),
        context=tuple(body.context or ()),
        options=options(body.options),
        format=format_spec(body.format),
        keep_alive=keep_alive(body.keep_alive),
        truncate=body.truncate is not False,
        think=check_think(body.think),
        logprobs=bool(body.logprobs),
        top_logprobs=top,
    )


def chat_message(message: MessageBody) -> ChatMessage:
    """One conversation turn (roles are lower-cased, as Ollama decodes them)."""
    calls = tuple(
        ToolCall(name=call.function.name, arguments=dict(call.function.arguments or {}), id=call.id)
        for call in message.tool_calls or ()
    )
    return ChatMessage(
        role=message.role.lower(),
        content=message.content or "",
        tool_calls=calls,
        tool_name=message.tool_name,
        thinking=message.thinking or "",
    )


def chat_request(body: ChatBody) -> ChatRequest:
    """A ChatRequest from `/api/chat`'s body."""
    name = model_name(body.model_name)
    top = top_logprobs(body.top_logprobs)
    return ChatRequest(
        model=name,
        messages=tuple(chat_message(m) for m in body.messages or ()),
        options=options(body.options),
        format=format_spec(body.format),
        tools=tuple(body.tools or ()),
        tool_choice=tool_choice(body.tool_choice),
        keep_alive=keep_alive(body.keep_alive),
        truncate=body.truncate is not False,
        think=check_think(body.think),
        logprobs=bool(body.logprobs),
        top_logprobs=top,
    )


def is_unload(prompt_empty: bool, seconds: float | None) -> bool:
    """An empty prompt with `keep_alive: 0` unloads the model instead of loading it."""
    return prompt_empty and seconds is not None and seconds <= 0 and not math.isinf(seconds)


def create_spec(body: CreateBody) -> CreateSpec:
    """A CreateSpec from `/api/create`: the structured form, or the older `modelfile` text."""
    quantize = body.quantize or body.quantization  # `quantization` is Ollama's older name
    return _create_spec(body).with_quantize(quantize)


def _create_spec(body: CreateBody) -> CreateSpec:
    if body.modelfile is not None:
        return _spec_from_modelfile(body.modelfile)
    files = _digests(body.files, "files")
    if body.from_:
        ModelName.parse(body.from_)
    elif not files:
        raise InvalidRequestError("neither 'from' or 'files' was specified")
    if len(files) > 1:
        raise InvalidRequestError("only a single GGUF file is supported in 'files'")
    licenses = [body.license] if isinstance(body.license, str) else body.license
    gguf_adapters, peft_files = _adapters(body.adapters)
    return CreateSpec(
        from_model=body.from_ or None,
        from_digest=None if body.from_ else files[0],
        adapter_digests=tuple(gguf_adapters),
        adapter_uploads=peft_files,
        template=body.template,
        system=body.system,
        parameters=options(body.parameters) if body.parameters is not None else None,
        messages=_create_messages(body.messages),
        licenses=tuple(licenses) if licenses is not None else None,
        renderer=body.renderer or None,
        parser=body.parser or None,
    )


def _create_messages(messages: list[MessageBody] | None) -> tuple[Message, ...] | None:
    """`messages` of /api/create: the roles a Modelfile's MESSAGE accepts, nothing else."""
    if messages is None:
        return None
    for message in messages:
        if message.role not in ROLES:
            raise InvalidRequestError(role_error(message.role))
    return tuple(Message(m.role, m.content or "") for m in messages)


def _digests(files: dict[str, str] | None, field: str) -> list[Digest]:
    digests: list[Digest] = []
    for path, digest in (files or {}).items():
        _check_relative(path, field)
        if not path.lower().endswith(".gguf"):
            raise InvalidRequestError(
                f"{path!r} in {field!r}: only GGUF files are supported (no safetensors import)"
            )
        digests.append(parse_digest(digest))
    return digests


def _check_relative(path: str, field: str) -> None:
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise InvalidRequestError(
            f"file path must be relative, inside the model (no leading '/', no '..'): "
            f"{path!r} in {field!r}"
        )


def _adapters(
    files: dict[str, str] | None,
) -> tuple[list[Digest], tuple[tuple[str, Digest], ...]]:
    """`adapters`: GGUF LoRA files, or the files of one PEFT adapter (as Ollama's client sends
    an adapter folder: `adapter_config.json` and `adapter_model.safetensors`)."""
    gguf: list[Digest] = []
    peft: list[tuple[str, Digest]] = []
    for path, digest in (files or {}).items():
        _check_relative(path, "adapters")
        name = PurePosixPath(path).name
        if name.lower().endswith(".gguf"):
            gguf.append(parse_digest(digest))
        elif name in (PEFT_CONFIG, PEFT_WEIGHTS):
            peft.append((name, parse_digest(digest)))
        else:
            raise InvalidRequestError(
                f"{path!r} in 'adapters': expected a GGUF LoRA file, or {PEFT_CONFIG} and "
                f"{PEFT_WEIGHTS} of a PEFT adapter"
            )
    names = sorted(name for name, _ in peft)
    if peft and names != sorted((PEFT_CONFIG, PEFT_WEIGHTS)):
        raise InvalidRequestError(
            f"a PEFT adapter in 'adapters' needs exactly {PEFT_CONFIG} and {PEFT_WEIGHTS}"
        )
    return gguf, tuple(peft)


def _blob_reference(value: str) -> Digest | None:
    text = value.strip()
    if text.startswith("@"):
        return parse_digest(text[1:])
    if text.startswith("sha256:"):
        return parse_digest(text)
    return None


def _spec_from_modelfile(text: str) -> CreateSpec:
    """The old create form: server-side paths are refused, uploaded blobs are allowed."""
    modelfile = parse(text, path="modelfile")
    digest = _blob_reference(modelfile.from_)
    if digest is None:
        if modelfile.from_.startswith((".", "/", "~")) or modelfile.from_.endswith(".gguf"):
            raise InvalidRequestError(
                "FROM a file path is not supported over the API: upload the file with "
                "POST /api/blobs/<digest> and use FROM @<digest>"
            )
        ModelName.parse(modelfile.from_)
    adapters = []
    for adapter in modelfile.adapters:
        reference = _blob_reference(adapter)
        if reference is None:
            raise InvalidRequestError("ADAPTER over the API must be an uploaded blob: @<digest>")
        adapters.append(reference)
    return CreateSpec(
        from_model=None if digest else modelfile.from_,
        from_digest=digest,
        adapter_digests=tuple(adapters),
        template=modelfile.template,
        system=modelfile.system,
        parameters=dict(modelfile.parameters) or None,
        messages=modelfile.messages or None,
        licenses=modelfile.licenses or None,
        renderer=modelfile.renderer,
        parser=modelfile.parser,
    )
