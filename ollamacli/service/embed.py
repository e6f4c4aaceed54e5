"""Embeddings: `/api/embed`, the legacy `/api/embeddings` and `/v1/embeddings`.

A model's embedding instance is a separate llama.cpp context (`LoadConfig.embedding`), loaded
through the scheduler like any other: it counts against `OLLAMA_MAX_LOADED_MODELS`, shows in
`ps` under the model's name, and unloads with it. Inputs longer than the context are cut to
fit (`truncate`, the default) or refused with both token counts. Vectors are L2-normalised
as Ollama returns them (after cutting them to `dimensions`), except on the legacy endpoint.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ollamacli.engine.base import Engine
from ollamacli.errors import ContextLengthExceededError, InvalidRequestError
from ollamacli.service.chat import ChatService


@dataclass(frozen=True, slots=True)
class EmbedRequest:
    """Texts to embed with a model."""

    model: str
    inputs: tuple[str, ...] = ()
    truncate: bool = True
    dimensions: int | None = None
    normalize: bool = True  # False for the legacy /api/embeddings
    options: Mapping[str, object] = field(default_factory=dict)
    keep_alive: float | None = None


@dataclass(frozen=True, slots=True)
class EmbedResult:
    """One vector per input, and Ollama's statistics (nanoseconds)."""

    embeddings: list[list[float]]
    prompt_eval_count: int = 0
    total_duration: int = 0
    load_duration: int = 0


class EmbedService:
    """Embeds texts with a model's embedding instance."""

    def __init__(self, chat: ChatService) -> None:
        self.chat = chat

    def embed(self, request: EmbedRequest) -> EmbedResult:
        """Vectors for every input; no inputs only loads the model (as Ollama does)."""
        started = time.perf_counter_ns()
        if request.dimensions is not None and request.dimensions <= 0:
            raise InvalidRequestError("dimensions must be a positive number")
        prepared = self.chat.prepare(request.model, request.options, {})
        with self.chat.lease(prepared, request.keep_alive, embedding=True) as lease:
            texts, count = fit_inputs(lease.engine, request.inputs, truncate=request.truncate)
            vectors = lease.engine.embed(texts) if texts else []
            load_duration = lease.load_duration
        shaped = [shape(v, request.dimensions, normalize=request.normalize) for v in vectors]
        return EmbedResult(
            embeddings=shaped,
            prompt_eval_count=count,
            total_duration=time.perf_counter_ns() - started,
            load_duration=load_duration,
        )


def fit_inputs(engine: Engine, texts: Sequence[str], *, truncate: bool) -> tuple[list[str], int]:
    """The inputs cut to the context window, and their total token count."""
    limit = engine.n_ctx
    fitted: list[str] = []
    total = 0
    for text in texts:
        tokens = engine.tokenize(text)
        if len(tokens) > limit:
            if not truncate:
                raise ContextLengthExceededError(n_ctx=limit, requested=len(tokens))
            tokens = tokens[:limit]
            text = engine.detokenize(tokens)
        fitted.append(text)
        total += len(tokens)
    return fitted, total


def shape(vector: Sequence[float], dimensions: int | None, *, normalize: bool) -> list[float]:
    """A vector cut to `dimensions` (when smaller) and L2-normalised (unless told not to)."""
    values = [float(v) for v in vector]
    if dimensions is not None and dimensions < len(values):
        values = values[:dimensions]
    if not normalize:
        return values
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values] if norm > 0 else values
