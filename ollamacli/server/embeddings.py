"""Embedding endpoints: Ollama's `/api/embed` and legacy `/api/embeddings`, OpenAI's
`/v1/embeddings` (the OpenAI client asks for base64 unless told otherwise)."""

from __future__ import annotations

import base64
import struct

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from ollamacli.errors import InvalidRequestError
from ollamacli.server import convert, requestlog
from ollamacli.server.schemas import EmbedBody, EmbeddingsBody, OpenAIEmbeddingBody, parse_body
from ollamacli.server.state import services_of
from ollamacli.service.embed import EmbedRequest, EmbedResult

router = APIRouter()


async def _run(request: Request, embed: EmbedRequest) -> EmbedResult:
    service = services_of(request).embed
    result = await run_in_threadpool(service.embed, embed)
    requestlog.note_embedding(result.prompt_eval_count, result.load_duration)
    return result


@router.post("/api/embed")
async def embed(request: Request) -> Response:
    body = parse_body(await request.body(), EmbedBody)
    result = await _run(request, convert.embed_request(body))
    return JSONResponse(
        {
            "model": body.model_name,
            "embeddings": result.embeddings,
            "total_duration": result.total_duration,
            "load_duration": result.load_duration,
            "prompt_eval_count": result.prompt_eval_count,
        }
    )


@router.post("/api/embeddings")
async def embeddings(request: Request) -> Response:
    """The legacy endpoint: one `prompt`, one vector, not normalised."""
    body = parse_body(await request.body(), EmbeddingsBody)
    embed_request = EmbedRequest(
        model=convert.model_name(body.model_name),
        inputs=convert.embed_inputs(body.prompt),
        normalize=False,
        options=convert.options(body.options),
        keep_alive=convert.keep_alive(body.keep_alive),
    )
    result = await _run(request, embed_request)
    return JSONResponse({"embedding": result.embeddings[0] if result.embeddings else []})


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    """A vector as floats, or as base64 of little-endian float32 (OpenAI's `base64`)."""
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


@router.post("/v1/embeddings")
async def openai_embeddings(request: Request) -> Response:
    body = parse_body(await request.body(), OpenAIEmbeddingBody)
    encoding = body.encoding_format or "float"
    if encoding not in ("float", "base64"):
        raise InvalidRequestError(f'invalid encoding_format "{encoding}": use float or base64')
    if isinstance(body.input, list) and any(not isinstance(i, str) for i in body.input):
        raise InvalidRequestError("invalid input: token arrays are not supported, send text")
    inputs = convert.embed_inputs(body.input)
    if not inputs:
        raise InvalidRequestError("invalid input: it must not be empty")
    embed_request = EmbedRequest(
        model=convert.model_name(body.model), inputs=inputs, dimensions=body.dimensions
    )
    result = await _run(request, embed_request)
    data = [
        {"object": "embedding", "embedding": _encoded(vector, encoding), "index": index}
        for index, vector in enumerate(result.embeddings)
    ]
    usage = {"prompt_tokens": result.prompt_eval_count, "total_tokens": result.prompt_eval_count}
    return JSONResponse({"object": "list", "data": data, "model": body.model, "usage": usage})
