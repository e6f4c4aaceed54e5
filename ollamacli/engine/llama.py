"""llama.cpp through llama-cpp-python: load GGUF models and stream generations.

This is the only module that imports `llama_cpp`, and only inside functions, so commands that
never run a model never load the shared library. It calls llama.cpp's C API through the typed
seam in engine/native.py (never llama-cpp-python's high-level `Llama` class): a loaded model is
one context whose generation loop (engine/batch.py) decodes up to `parallel` requests together,
each with a sampler chain built from Ollama's options, never llama-cpp-python's defaults.
"""

from __future__ import annotations

import json
import logging
import queue
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from ollamacli.engine.base import (
    CancelToken,
    Completion,
    GenerationEvent,
    LoadConfig,
    SamplingConfig,
    TextChunk,
)
from ollamacli.engine.batch import BatchLoop, Job, JobEvent, LoopShape
from ollamacli.engine.llamalib import LOGS, SamplerChain
from ollamacli.engine.native import ContextParams, NativeContext, NativeModel
from ollamacli.engine.options import physical_cores
from ollamacli.engine.promptcache import DEFAULT_BUDGET
from ollamacli.engine.structured import check_grammar, check_json_schema
from ollamacli.errors import (
    ContextLengthExceededError,
    EngineError,
    InvalidRequestError,
    ModelLoadError,
)

logger = logging.getLogger(__name__)

_TOKENIZE_PIECE = 8192
"""Characters: longer texts are tokenized piece by piece (see `LlamaCppEngine.tokenize`)."""
_EMBED_SEQUENCES = 16
"""Inputs embedded together in one decode, at most."""
_CANCEL_POLL = 0.1
"""Seconds: how often a waiting consumer looks at its request's CancelToken."""


def _library() -> Any:
    """The `llama_cpp` module, imported on first use, with its logging routed away."""
    import llama_cpp

    LOGS.install(llama_cpp)  # once per process, whichever thread comes first
    return llama_cpp


class LlamaCppFactory:
    """Loads GGUF models: generation instances serve `parallel` requests at once."""

    def __init__(
        self, *, verbose: bool = False, parallel: int = 1, prompt_cache: int = DEFAULT_BUDGET
    ) -> None:
        self.verbose = verbose
        self.parallel = max(1, parallel)
        self.prompt_cache = prompt_cache  # bytes of saved long prompts per model; 0: none

    def load(self, config: LoadConfig) -> LlamaCppEngine:
        """Load a model (mmap, CPU threads, optional LoRA); raises `ModelLoadError`."""
        lib = _library()
        if len(config.adapters) > 1:
            raise ModelLoadError(
                "only one adapter is currently supported", path=str(config.model_path)
            )
        LOGS.errors.clear()
        adapter = config.adapters[0] if config.adapters else None
        try:
            model = NativeModel(lib, config.model_path, adapter=adapter)
        except ModelLoadError as exc:
            reason = " ".join((LOGS.last_error() or str(exc)).split())
            if adapter is not None and exc.path == str(adapter):
                raise ModelLoadError(
                    f"unable to load adapter {adapter}: {reason}",
                    path=str(adapter),
                    hint="the adapter must be a GGUF LoRA made for this base model",
                ) from exc
            raise ModelLoadError(
                f"unable to load model {config.model_path}: {reason}",
                path=str(config.model_path),
                hint="the file may be damaged or made for a newer llama.cpp; "
                "try pulling or creating the model again",
            ) from exc
        try:
            return LlamaCppEngine(
                lib, model, config, parallel=self.parallel, prompt_cache=self.prompt_cache
            )
        except BaseException:
            model.close()
            raise


def format_grammar(fmt: str | Mapping[str, object] | None) -> str | None:
    """The GBNF grammar for a request's `format`: none, `"json"`, or a JSON schema."""
    if fmt is None or fmt in ("", "null"):
        return None
    if isinstance(fmt, str):
        if fmt != "json":
            raise InvalidRequestError(
                f'invalid format "{fmt}"', hint='use "json" or a JSON schema object'
            )
        return str(_library().llama_grammar.JSON_GBNF)
    check_json_schema(fmt)
    return schema_grammar(fmt)


def schema_grammar(schema: Mapping[str, object], *, where: str = "format") -> str:
    """The GBNF grammar (start rule `root`) for a JSON schema already `check_json_schema`ed."""
    json_schema_to_gbnf = _library().llama_grammar.json_schema_to_gbnf
    try:
        grammar = str(json_schema_to_gbnf(json.dumps(schema)))
    except (ValueError, KeyError, TypeError, AssertionError, RecursionError) as exc:
        raise InvalidRequestError(
            f"{where}: cannot build a grammar from this schema: {exc}"
        ) from exc
    check_grammar(grammar, where=where)
    return grammar


class LlamaCppEngine:
    """A loaded model. `generate` may be called from several threads at once: up to
    `parallel` generations decode together in one batch loop, more wait their turn there.
    `embed` serves one caller at a time (the scheduler lends embedding instances singly)."""

    def __init__(
        self,
        lib: Any,
        model: NativeModel,
        config: LoadConfig,
        *,
        parallel: int,
        prompt_cache: int = DEFAULT_BUDGET,
    ) -> None:
        self._lib = lib
        self._model = model
        self.config = config
        self._pieces: dict[tuple[int, bool], bytes] = {}
        self._metadata = model.metadata()
        self._specials: re.Pattern[str] | None = None
        self._closed = False
        self._loop: BatchLoop | None = None
        threads = config.num_thread or physical_cores()
        if config.embedding:
            self.parallel = 1
            self._context = self._embedding_context(threads)
            self._n_ctx = min(config.num_ctx, self._context.n_ctx)
            return
        self.parallel = parallel
        n_batch = max(min(config.num_batch, config.num_ctx * parallel), parallel)
        self._context = model.new_context(
            ContextParams(
                n_ctx=config.num_ctx * parallel,
                n_batch=n_batch,
                n_seq_max=parallel,
                n_threads=threads,
                per_sequence_cache=True,  # attention over a sequence's own cells only
            )
        )
        self._n_ctx = config.num_ctx
        try:
            self._loop = BatchLoop(
                self._context,
                LoopShape(n_seq=parallel, n_ctx_seq=config.num_ctx, n_batch=n_batch),
                piece=self._piece,
                cache_budget=prompt_cache,
            )
        except BaseException:
            self._context.close()
            raise

    def _embedding_context(self, threads: int) -> NativeContext:
        """A context that pools one vector per input; mean pooling when the model has none."""
        params = ContextParams(
            n_ctx=self.config.num_ctx,
            n_batch=self.config.num_ctx,  # a whole input must fit in one batch
            n_seq_max=min(_EMBED_SEQUENCES, self.config.num_ctx),  # llama.cpp: <= n_batch
            n_threads=threads,
            embeddings=True,
        )
        context = self._model.new_context(params)
        if context.pooling_none():
            context.close()
            context = self._model.new_context(replace(params, mean_pooling=True))
        return context

    @property
    def n_ctx(self) -> int:
        """The context window of one request (`num_ctx`)."""
        return self._n_ctx

    @property
    def metadata(self) -> Mapping[str, str]:
        """GGUF metadata (string values), including `tokenizer.chat_template`."""
        return self._metadata

    @property
    def bos_token(self) -> str:
        """Text of the beginning-of-sequence token ("" if the model has none)."""
        return self._model.token_text(self._model.bos)

    @property
    def eos_token(self) -> str:
        """Text of the end-of-sequence token ("" if the model has none)."""
        return self._model.token_text(self._model.eos)

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        """Tokens for some text, without adding a BOS token.

        llama.cpp finds the special tokens of a text in time quadratic in their number (16,000
        chat turns took 27 s). A long text is therefore cut just before special tokens into
        pieces of about `_TOKENIZE_PIECE` characters: llama.cpp tokenizes the text between
        special tokens on its own anyway, so the pieces give the same tokens, in linear time."""
        if not special or len(text) <= _TOKENIZE_PIECE:
            return self._model.tokenize(text.encode(), special=special)
        tokens: list[int] = []
        for piece in self._split_at_specials(text):
            tokens += self._model.tokenize(piece.encode(), special=special)
        return tokens

    def _split_at_specials(self, text: str) -> Iterator[str]:
        """The text cut before special tokens, in pieces of at least `_TOKENIZE_PIECE`."""
        start = 0
        for match in self._special_texts().finditer(text, _TOKENIZE_PIECE):
            if match.start() - start >= _TOKENIZE_PIECE:
                yield text[start : match.start()]
                start = match.start()
        yield text[start:]

    def _special_texts(self) -> re.Pattern[str]:
        """Where special tokens start: the control, user-defined and unknown tokens llama.cpp
        looks for in a text (longest first, as it does), but none that strips the whitespace
        before it (that whitespace belongs to the text in front)."""
        if self._specials is None:
            lib, model = self._lib, self._model
            kinds = (
                lib.LLAMA_TOKEN_ATTR_CONTROL
                | lib.LLAMA_TOKEN_ATTR_USER_DEFINED
                | lib.LLAMA_TOKEN_ATTR_UNKNOWN
            )
            texts = set()
            for token in range(model.n_vocab):
                attr = model.token_attr(token)
                if attr & kinds and not attr & lib.LLAMA_TOKEN_ATTR_LSTRIP:
                    texts.add(model.token_text(token))
            texts.discard("")
            longest_first = sorted(texts, key=len, reverse=True)
            # With no special tokens at all, nothing matches and the text stays whole.
            self._specials = re.compile("|".join(map(re.escape, longest_first)) or "(?!)")
        return self._specials

    def detokenize(self, tokens: list[int]) -> str:
        """Text for some tokens (control tokens included, as `context` round-trips need)."""
        data = b"".join(self._piece(token, True) for token in tokens)
        return data.decode("utf-8", "replace")

    def prompt_tokens(self, prompt: str) -> list[int]:
        """Tokens for a rendered prompt: BOS is added when the model wants one and the
        template did not already write it (Jinja templates usually do, Go templates don't)."""
        tokens = self.tokenize(prompt)
        bos = self._model.bos
        if self._model.add_bos and bos >= 0 and (not tokens or tokens[0] != bos):
            tokens.insert(0, bos)
        return tokens

    def generate(
        self,
        prompt: str | list[int],
        sampling: SamplingConfig,
        cancel: CancelToken | None = None,
    ) -> Iterator[GenerationEvent]:
        """Stream `TextChunk`s, then one `Completion` with Ollama's statistics."""
        loop = self._loop
        if loop is None:
            raise EngineError("this model instance was loaded for embeddings")
        if isinstance(prompt, str):
            tokens = self.prompt_tokens(prompt)
        else:
            tokens = list(prompt)
            self._check_tokens(tokens)
        tokens, truncated = self._fit(tokens, sampling)
        sampler = SamplerChain(
            self._lib, self._model.vocab, self._model.n_vocab, sampling, self.n_ctx
        )
        job = Job(tokens, sampling, sampler, CancelToken(), truncated=truncated)
        loop.submit(job)
        try:
            while True:
                event = self._next_event(job, cancel)
                if isinstance(event, BaseException):
                    raise event
                if isinstance(event, TextChunk) and cancel is not None and cancel.cancelled:
                    continue  # text the loop made before it saw the cancel: nobody wants it
                yield event
                if isinstance(event, Completion):
                    return
        finally:
            job.cancel.cancel()  # a consumer that stops reading frees the slot

    @staticmethod
    def _next_event(job: Job, cancel: CancelToken | None) -> JobEvent:
        """The job's next event, passing the caller's cancellation on to the loop."""
        if cancel is None:
            return job.outbox.get()
        while True:
            if cancel.cancelled:
                job.cancel.cancel()
            try:
                return job.outbox.get(timeout=_CANCEL_POLL)
            except queue.Empty:
                pass

    def _check_tokens(self, tokens: list[int]) -> None:
        """Token ids from a request (`context`) must exist: llama.cpp reads out of bounds
        for ids past its vocabulary."""
        n_vocab = self._model.n_vocab
        for token in tokens:
            if not 0 <= token < n_vocab:
                raise InvalidRequestError(
                    f"invalid context: token {token} is not in the model's vocabulary "
                    f"(0 to {n_vocab - 1})",
                    hint="send back the context of an earlier answer of the same model",
                )

    def _fit(self, tokens: list[int], sampling: SamplingConfig) -> tuple[list[int], bool]:
        """Shorten a prompt that leaves no room to answer: keep `num_keep` tokens and the end."""
        n_ctx = self.n_ctx
        if not tokens:
            raise InvalidRequestError("the prompt is empty")
        if len(tokens) < n_ctx:
            return tokens, False
        if not sampling.truncate:
            raise ContextLengthExceededError(n_ctx=n_ctx, requested=len(tokens))
        wanted = sampling.num_predict if sampling.num_predict > 0 else n_ctx
        room = max(1, min(wanted, n_ctx // 4))
        keep = min(max(sampling.num_keep, 0), n_ctx // 2)
        tail = n_ctx - room - keep
        logger.debug("prompt of %d tokens truncated to %d", len(tokens), keep + tail)
        return tokens[:keep] + tokens[len(tokens) - tail :], True

    def _piece(self, token: int, special: bool = False) -> bytes:
        """The bytes a token stands for (cached: the same tokens come back all the time);
        control tokens print only with `special` (harmony's channel markers need them)."""
        key = (token, special)
        piece = self._pieces.get(key)
        if piece is None:
            piece = self._pieces[key] = self._model.piece(token, special=special)
        return piece

    def cached_tokens(self) -> list[list[int]]:
        """Each sequence slot's cached tokens (tests and debugging)."""
        return self._loop.cached_tokens() if self._loop is not None else []

    @property
    def widest_batch(self) -> int:
        """Most sequences one decode has carried so far (tests and debugging)."""
        return self._loop.widest if self._loop is not None else 0

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One pooled (not normalised) embedding per text: the model's own pooling, or the
        mean over its tokens for models without one. Several texts go in one decode, one
        sequence each."""
        context = self._context
        if not self.config.embedding:
            raise EngineError("this model instance was not loaded for embeddings")
        inputs = [self.tokenize(text) for text in texts]
        if any(not tokens for tokens in inputs):  # llama.cpp fails on an input of no tokens
            raise InvalidRequestError("cannot embed an empty input")
        vectors: list[list[float]] = []
        n_batch = context.params.n_batch
        batch = context.new_batch(n_batch)
        try:
            start = 0
            while start < len(inputs):
                group = _embedding_group(inputs[start:], n_batch, context.n_seq_max)
                batch.clear()
                for seq_id, tokens in enumerate(group):
                    for position, token in enumerate(tokens):
                        batch.add(token, position, seq_id, logits=True)
                context.clear()
                if context.decode(batch) != 0:
                    raise EngineError("llama.cpp could not embed the input")
                vectors += [context.pooled_embedding(seq_id) for seq_id in range(len(group))]
                start += len(group)
        finally:
            batch.close()
        return vectors

    def close(self) -> None:
        """Free the model's memory (idempotent); running generations end with an error."""
        if not self._closed:
            self._closed = True
            if self._loop is not None:
                self._loop.close()
            self._context.close()
            self._model.close()


def _embedding_group(inputs: list[list[int]], n_batch: int, n_seq: int) -> list[list[int]]:
    """The next inputs that fit in one batch together (at least one; each fits alone)."""
    group: list[list[int]] = []
    used = 0
    for tokens in inputs[:n_seq]:
        tokens = tokens[:n_batch]
        if group and used + len(tokens) > n_batch:
            break
        group.append(tokens)
        used += len(tokens)
    return group
