"""The engine seam: what the rest of ollamacli needs from an inference backend.

`LlamaCppEngine` (engine/llama.py, over engine/batch.py and engine/native.py) is the real one; tests use a scripted fake with
the same shape. Engines work on rendered prompt text or tokens and never see the store.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

DoneReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked for."""

    name: str
    arguments: dict[str, object]
    id: str | None = None


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn of a conversation."""

    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_name: str | None = None
    images: tuple[bytes, ...] = ()
    thinking: str = ""  # the reasoning trace of an assistant turn, apart from its content


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """How to load a model; two requests share a loaded model only if these are equal."""

    model_path: Path
    adapters: tuple[Path, ...] = ()
    num_ctx: int = 4096
    num_batch: int = 512
    num_thread: int = 0
    embedding: bool = False


@dataclass(frozen=True, slots=True)
class SamplingConfig:
    """Per-request sampling settings, already merged and validated (Ollama's names)."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.9
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = -1
    mirostat: int = 0
    mirostat_tau: float = 5.0
    mirostat_eta: float = 0.1
    num_predict: int = -1
    num_keep: int = 4
    stop: tuple[str, ...] = ()
    grammar: str | None = None  # GBNF text constraining the output
    truncate: bool = True  # a prompt longer than the context keeps num_keep + its end; else error
    special_tokens: bool = False  # print control tokens (harmony's `<|channel|>` markers)
    logprobs: bool = False  # report each generated token's log-probability
    top_logprobs: int = 0  # and this many most likely alternatives (0-20)


@dataclass(frozen=True, slots=True)
class TopLogprob:
    """One candidate for a generated token and its log-probability."""

    token: str  # the token's text ("" pieces of a multi-byte character decode with U+FFFD)
    token_id: int
    logprob: float
    bytes: tuple[int, ...]  # the token's raw bytes (a token may hold part of a character)


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """A generated token's log-probability and, when asked, the most likely alternatives.

    Log-probabilities are taken from the model's distribution before sampling settings
    (temperature, top-k ...) reshape it, as llama-server and Ollama report them."""

    token: str
    token_id: int
    logprob: float
    bytes: tuple[int, ...]
    top: tuple[TopLogprob, ...] = ()  # best first, `top_logprobs` of them


@dataclass(frozen=True, slots=True)
class TextChunk:
    """A piece of generated text (always whole UTF-8 characters, never part of a stop string).

    With `SamplingConfig.logprobs`, `logprobs` holds the tokens generated since the previous
    chunk, in order; a chunk may carry none (its text came from held-back tokens) and the last
    chunk carries the tokens whose text was held back and then released."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Completion:
    """The end of a generation, with Ollama's statistics (durations in nanoseconds)."""

    done_reason: DoneReason
    prompt_eval_count: int
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int
    context: tuple[int, ...] = ()  # prompt + answer tokens, for /api/generate's `context`
    truncated: bool = False  # the prompt did not fit in the context and was shortened
    stop_sequence: str | None = None  # the stop string that ended the answer, if one did


GenerationEvent = TextChunk | Completion


@dataclass(slots=True)
class CancelToken:
    """Set from another thread to stop a generation at the next token."""

    _event: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """Ask the generation to stop."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """True once `cancel` was called."""
        return self._event.is_set()


class Engine(Protocol):
    """A loaded model. `generate` may run `parallel` times at once from different threads;
    everything else is called by one request at a time (the scheduler lends it so)."""

    @property
    def parallel(self) -> int:
        """How many generations this instance serves at once."""
        ...

    @property
    def n_ctx(self) -> int:
        """The context window this instance was loaded with."""
        ...

    @property
    def metadata(self) -> Mapping[str, str]:
        """The GGUF metadata (string values) as the backend reports it."""
        ...

    @property
    def bos_token(self) -> str:
        """The text of the beginning-of-sequence token (for chat templates)."""
        ...

    @property
    def eos_token(self) -> str:
        """The text of the end-of-sequence token (for chat templates)."""
        ...

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        """Tokens for some text; `special` parses control tokens like `<|im_end|>`."""
        ...

    def detokenize(self, tokens: list[int]) -> str:
        """Text for some tokens."""
        ...

    def generate(
        self,
        prompt: str | list[int],
        sampling: SamplingConfig,
        cancel: CancelToken | None = None,
    ) -> Iterator[GenerationEvent]:
        """Stream `TextChunk`s, then exactly one `Completion`."""
        ...

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One pooled embedding per text (needs a model loaded with `embedding=True`)."""
        ...

    def close(self) -> None:
        """Free the model's memory."""
        ...


class EngineFactory(Protocol):
    """Loads models; the scheduler calls it, tests pass a fake."""

    def load(self, config: LoadConfig) -> Engine:
        """Load a model (raises `ModelLoadError`)."""
        ...
