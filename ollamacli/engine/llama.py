"""llama.cpp through llama-cpp-python: load GGUF models and stream generations.

This is the only module that imports `llama_cpp`, and only inside functions, so commands that
never run a model never load the shared library. Generation is a plain token loop over
`Llama.eval` with a sampler chain built from Ollama's options, never llama-cpp-python's
defaults; such a loop decodes as fast as llama-server (measurements.md), which
`create_chat_completion` does not quite do.
"""

from __future__ import annotations

import ctypes
import json
import logging
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ollamacli.engine.base import (
    CancelToken,
    Completion,
    DoneReason,
    GenerationEvent,
    LoadConfig,
    SamplingConfig,
    TextChunk,
)
from ollamacli.engine.llamalib import LOGS, SamplerChain, close_devnull_at_exit
from ollamacli.engine.logprobs import PendingLogprobs, token_logprob
from ollamacli.engine.options import physical_cores
from ollamacli.engine.streaming import TextStream
from ollamacli.engine.structured import check_grammar, check_json_schema
from ollamacli.errors import (
    ContextLengthExceededError,
    EngineError,
    InvalidRequestError,
    ModelLoadError,
    RequestCancelledError,
)

logger = logging.getLogger(__name__)

_TOKENIZE_PIECE = 8192
"""Characters: longer texts are tokenized piece by piece (see `LlamaCppEngine.tokenize`)."""


def _library() -> Any:
    """The `llama_cpp` module, imported on first use, with its logging routed away."""
    import llama_cpp

    if LOGS.callback is None:  # first use in this process
        close_devnull_at_exit(llama_cpp)
    LOGS.install(llama_cpp)
    return llama_cpp


class LlamaCppFactory:
    """Loads GGUF models with llama-cpp-python."""

    def __init__(self, *, verbose: bool = False) -> None:
        self.verbose = verbose

    def load(self, config: LoadConfig) -> LlamaCppEngine:
        """Load a model (mmap, CPU threads, optional LoRA); raises `ModelLoadError`."""
        lib = _library()
        if len(config.adapters) > 1:
            raise ModelLoadError(
                "only one adapter is currently supported", path=str(config.model_path)
            )
        LOGS.errors.clear()
        try:
            llm = lib.Llama(**_llama_arguments(lib, config, verbose=self.verbose))
        except (ValueError, RuntimeError, OSError) as exc:
            reason = LOGS.last_error() or str(exc)
            raise ModelLoadError(
                f"unable to load model {config.model_path}: {' '.join(reason.split())}",
                path=str(config.model_path),
                hint="the file may be damaged or made for a newer llama.cpp; "
                "try pulling or creating the model again",
            ) from exc
        adapter_errors = [e for e in LOGS.errors if "lora" in e.lower()]
        if adapter_errors:  # llama-cpp-python misses a failed adapter load (NULL is not None)
            llm.close()
            raise ModelLoadError(
                f"unable to load adapter {config.adapters[0]}: {adapter_errors[-1]}",
                path=str(config.adapters[0]),
                hint="the adapter must be a GGUF LoRA made for this base model",
            )
        return LlamaCppEngine(lib, llm, config)


def _llama_arguments(lib: Any, config: LoadConfig, *, verbose: bool) -> dict[str, object]:
    threads = config.num_thread or physical_cores()
    # Embeddings need a whole input in one batch; generation uses Ollama's num_batch.
    batch = config.num_ctx if config.embedding else min(config.num_batch, config.num_ctx)
    arguments: dict[str, object] = {
        "model_path": str(config.model_path),
        "n_ctx": config.num_ctx,
        "n_batch": batch,
        "n_ubatch": batch,
        "n_threads": threads,
        "n_threads_batch": threads,
        "n_gpu_layers": -1 if lib.llama_supports_gpu_offload() else 0,
        "use_mmap": True,
        "embedding": config.embedding,
        "verbose": verbose,
    }
    if config.adapters:
        arguments["lora_path"] = str(config.adapters[0])
    return arguments


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


@dataclass(slots=True)
class _Decoded:
    """What one generation produced."""

    tokens: list[int] = field(default_factory=list)
    reason: DoneReason = "stop"
    duration: int = 0
    stop_sequence: str | None = None


class LlamaCppEngine:
    """A loaded model. Not thread-safe: the scheduler lends it to one request at a time."""

    def __init__(self, lib: Any, llm: Any, config: LoadConfig) -> None:
        self._lib = lib
        self._llm = llm
        self.config = config
        self._vocab = lib.llama_model_get_vocab(llm.model)
        self._pieces: dict[tuple[int, bool], bytes] = {}
        self._metadata = {str(k): str(v) for k, v in dict(llm.metadata).items()}
        self._specials: re.Pattern[str] | None = None
        self._closed = False

    @property
    def n_ctx(self) -> int:
        """The context window this instance was loaded with (`num_ctx`).

        llama.cpp pads its context to a multiple of 256 (num_ctx 1000 gives 1024), while
        llama-cpp-python keeps the prompt's tokens in an array of exactly num_ctx: the smaller
        of the two is the room there is (a prompt fitted to 1024 overflowed the array of 1000:
        "could not broadcast (496,) into (488,)")."""
        return min(int(self._llm.n_ctx()), len(self._llm.input_ids))

    @property
    def metadata(self) -> Mapping[str, str]:
        """GGUF metadata (string values), including `tokenizer.chat_template`."""
        return self._metadata

    @property
    def bos_token(self) -> str:
        """Text of the beginning-of-sequence token ("" if the model has none)."""
        return self._token_text(int(self._llm.token_bos()))

    @property
    def eos_token(self) -> str:
        """Text of the end-of-sequence token ("" if the model has none)."""
        return self._token_text(int(self._llm.token_eos()))

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return bytes(self._lib.llama_vocab_get_text(self._vocab, token)).decode("utf-8", "replace")

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        """Tokens for some text, without adding a BOS token.

        llama.cpp finds the special tokens of a text in time quadratic in their number (16,000
        chat turns took 27 s, and llama-cpp-python tokenized twice what passed n_ctx_train
        tokens). A long text is therefore cut just before special tokens into pieces of about
        `_TOKENIZE_PIECE` characters: llama.cpp tokenizes the text between special tokens on
        its own anyway, so the pieces give the same tokens, in linear time."""
        if not special or len(text) <= _TOKENIZE_PIECE:
            return self._tokenize(text.encode(), special)
        tokens: list[int] = []
        for piece in self._split_at_specials(text):
            tokens += self._tokenize(piece.encode(), special)
        return tokens

    def _tokenize(self, data: bytes, special: bool) -> list[int]:
        capacity = len(data) + 2  # a token is at least a byte, plus a space prefix
        while True:
            buffer = (self._lib.llama_token * capacity)()
            count = int(
                self._lib.llama_tokenize(
                    self._vocab, data, len(data), buffer, capacity, False, special
                )
            )
            if count >= 0:
                return list(buffer[:count])
            capacity = -count

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
            lib = self._lib
            kinds = (
                lib.LLAMA_TOKEN_ATTR_CONTROL
                | lib.LLAMA_TOKEN_ATTR_USER_DEFINED
                | lib.LLAMA_TOKEN_ATTR_UNKNOWN
            )
            texts = {
                self._token_text(token)
                for token in range(int(self._llm.n_vocab()))
                if int(lib.llama_vocab_get_attr(self._vocab, token)) & kinds
                and not int(lib.llama_vocab_get_attr(self._vocab, token))
                & lib.LLAMA_TOKEN_ATTR_LSTRIP
            }
            texts.discard("")
            longest_first = sorted(texts, key=len, reverse=True)
            # With no special tokens at all, nothing matches and the text stays whole.
            self._specials = re.compile("|".join(map(re.escape, longest_first)) or "(?!)")
        return self._specials

    def detokenize(self, tokens: list[int]) -> str:
        """Text for some tokens (control tokens included, as `context` round-trips need)."""
        return bytes(self._llm.detokenize(tokens, special=True)).decode("utf-8", "replace")

    def prompt_tokens(self, prompt: str) -> list[int]:
        """Tokens for a rendered prompt: BOS is added when the model wants one and the
        template did not already write it (Jinja templates usually do, Go templates don't)."""
        tokens = self.tokenize(prompt)
        bos = int(self._llm.token_bos())
        wants_bos = bool(self._lib.llama_vocab_get_add_bos(self._vocab))
        if wants_bos and bos >= 0 and (not tokens or tokens[0] != bos):
            tokens.insert(0, bos)
        return tokens

    def generate(
        self,
        prompt: str | list[int],
        sampling: SamplingConfig,
        cancel: CancelToken | None = None,
    ) -> Iterator[GenerationEvent]:
        """Stream `TextChunk`s, then one `Completion` with Ollama's statistics."""
        if isinstance(prompt, str):
            tokens = self.prompt_tokens(prompt)
        else:
            tokens = list(prompt)
            self._check_tokens(tokens)
        tokens, truncated = self._fit(tokens, sampling)
        sampler = SamplerChain(
            self._lib, self._vocab, int(self._llm.n_vocab()), sampling, self.n_ctx
        )
        decoded = _Decoded()
        try:
            started = time.perf_counter_ns()
            evaluated = self._ingest(tokens, cancel)
            prompt_duration = time.perf_counter_ns() - started
            sampler.accept_history(tokens)
            yield from self._decode(sampler, sampling, cancel, decoded)
        finally:
            sampler.close()
        yield Completion(
            done_reason=decoded.reason,
            prompt_eval_count=evaluated,
            prompt_eval_duration=prompt_duration,
            eval_count=len(decoded.tokens),
            eval_duration=decoded.duration,
            context=(*tokens, *decoded.tokens),
            truncated=truncated,
            stop_sequence=decoded.stop_sequence,
        )

    def _check_tokens(self, tokens: list[int]) -> None:
        """Token ids from a request (`context`) must exist: llama.cpp reads out of bounds
        for ids past its vocabulary."""
        n_vocab = int(self._llm.n_vocab())
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

    def _ingest(self, tokens: list[int], cancel: CancelToken | None = None) -> int:
        """Evaluate the prompt, reusing the cached common prefix; returns tokens evaluated.

        The prompt goes in batch by batch, and a cancelled request stops between batches (a
        long prompt takes minutes on a CPU)."""
        llm = self._llm
        cached = [int(t) for t in llm.input_ids[: llm.n_tokens]]
        common = 0
        # The last prompt token is always evaluated again: its logits pick the first answer token.
        for cached_token, token in zip(cached, tokens[:-1], strict=False):
            if cached_token != token:
                break
            common += 1
        if common < len(cached) and not self._forget_from(common):
            llm.reset()
            common = 0
        llm.n_tokens = common
        step = max(1, int(llm.n_batch))
        for start in range(common, len(tokens), step):
            if cancel is not None and cancel.cancelled:
                raise RequestCancelledError()
            try:
                llm.eval(tokens[start : start + step])
            except RuntimeError as exc:
                llm.reset()
                raise EngineError(f"llama.cpp could not evaluate the prompt: {exc}") from exc
        return len(tokens) - common

    def _forget_from(self, position: int) -> bool:
        """Drop the cached tokens from `position` on (False when the model can't, e.g. RNNs)."""
        memory = self._lib.llama_get_memory(self._llm.ctx)
        return memory is not None and bool(self._lib.llama_memory_seq_rm(memory, -1, position, -1))

    def _decode(
        self,
        sampler: SamplerChain,
        sampling: SamplingConfig,
        cancel: CancelToken | None,
        decoded: _Decoded,
    ) -> Iterator[TextChunk]:
        """The token loop: sample, stream the text, evaluate, until a stop condition."""
        llm, lib, vocab, n_ctx = self._llm, self._lib, self._vocab, self.n_ctx
        text = TextStream(sampling.stop)
        pending = PendingLogprobs()  # each token's logprob rides on the next chunk emitted
        limit = sampling.num_predict if sampling.num_predict >= 0 else -1
        started = time.perf_counter_ns()
        while limit != 0 and (cancel is None or not cancel.cancelled):
            logits = self._logits() if sampling.logprobs else None
            token = sampler.sample(llm.ctx)
            if lib.llama_vocab_is_eog(vocab, token):
                break
            decoded.tokens.append(token)
            if logits is not None:
                pending.add(token_logprob(logits, token, sampling.top_logprobs, self._shown))
            piece = text.push(self._piece(token, sampling.special_tokens))
            if piece:
                yield pending.chunk(piece)
            if text.stopped:
                decoded.stop_sequence = text.matched
                break
            if len(decoded.tokens) == limit or llm.n_tokens >= n_ctx:
                decoded.reason = "length"  # the last token is not evaluated: nothing follows it
                break
            llm.eval([token])
        if limit == 0:
            decoded.reason = "length"
        last = pending.finish(text.finish())
        if last is not None:
            yield last
        decoded.duration = time.perf_counter_ns() - started

    def _logits(self) -> np.ndarray[Any, Any]:
        """A copy of the raw logits of the last evaluated position (the whole vocabulary)."""
        pointer = self._lib.llama_get_logits_ith(self._llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(int(self._llm.n_vocab()),)).copy()

    def _shown(self, token: int) -> bytes:
        """A token's bytes as logprobs show it: control tokens by name (`<|im_end|>`)."""
        return self._piece(token, True)

    def _piece(self, token: int, special: bool = False) -> bytes:
        """The bytes a token stands for (cached: the same tokens come back all the time);
        control tokens print only with `special` (harmony's channel markers need them)."""
        piece = self._pieces.get((token, special))
        if piece is None:
            size = 32
            while True:
                buffer = ctypes.create_string_buffer(size)
                written = int(
                    self._lib.llama_token_to_piece(self._vocab, token, buffer, size, 0, special)
                )
                if written >= 0:
                    break
                size = -written
            piece = self._pieces[(token, special)] = buffer.raw[:written]
        return piece

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One mean-pooled (not normalised) embedding per text.

        Texts are embedded one at a time: llama-cpp-python mixes up the per-token rows of a
        batch when the model has no pooling of its own (as chat models don't)."""
        if not self.config.embedding:
            raise EngineError("this model instance was not loaded for embeddings")
        vectors = []
        for text in texts:
            if not self.tokenize(text):  # llama.cpp fails (and corrupts its batch) on no tokens
                raise InvalidRequestError("cannot embed an empty input")
            try:
                vectors.append(_pooled(self._llm.embed(text)))
            except (ValueError, RuntimeError) as exc:
                raise EngineError(f"llama.cpp could not embed the input: {exc}") from exc
        return vectors

    def close(self) -> None:
        """Free the model's memory (idempotent)."""
        if not self._closed:
            self._closed = True
            self._llm.close()


def _pooled(vector: list[float] | list[list[float]]) -> list[float]:
    """Mean over tokens when llama.cpp returns one vector per token (models without pooling)."""
    if not vector or not isinstance(vector[0], list):
        return [float(v) for v in vector]  # type: ignore[arg-type]  # already pooled
    rows = [row for row in vector if isinstance(row, list)]
    return [sum(column) / len(rows) for column in zip(*rows, strict=True)]
