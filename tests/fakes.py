"""Scripted fakes for fast tests: an engine that answers from a queue and records its calls."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from ollamacli.engine.base import (
    CancelToken,
    Completion,
    Engine,
    GenerationEvent,
    LoadConfig,
    SamplingConfig,
    TextChunk,
    TokenLogprob,
    TopLogprob,
)
from ollamacli.engine.logprobs import PendingLogprobs
from ollamacli.errors import EngineError

LABELLED_JINJA = (
    "{% for m in messages %}"
    "{% if m.role == 'system' %}### System:\n{{ m.content }}\n\n"
    "{% elif m.role == 'user' %}### User:\n{{ m.content }}\n\n"
    "{% elif m.role == 'tool' %}### Tool result:\n{{ m.content }}\n\n"
    "{% else %}### Assistant:\n{{ m.content }}\n\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)
"""The fakes' default chat template: every turn labelled, so tests see what reached the prompt
(a GGUF without any template renders Ollama's bare `{{ .Prompt }}`)."""


@dataclass
class FakeEngine:
    """An Engine whose answers are enqueued by the test; tokens are whitespace-separated words."""

    config: LoadConfig
    script: list[list[str]] = field(default_factory=list)
    prompts: list[str | list[int]] = field(default_factory=list)
    samplings: list[SamplingConfig] = field(default_factory=list)
    closed: bool = False
    delay: float = 0.0
    chat_template: str | None = None
    parallel: int = 1  # one generation at a time, as the scheduler's older engines

    @property
    def n_ctx(self) -> int:
        return self.config.num_ctx

    @property
    def metadata(self) -> Mapping[str, str]:
        return {"tokenizer.chat_template": self.chat_template} if self.chat_template else {}

    @property
    def bos_token(self) -> str:
        return "<s>"

    @property
    def eos_token(self) -> str:
        return "</s>"

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return [len(word) for word in text.split()]

    def detokenize(self, tokens: list[int]) -> str:
        return " ".join("x" * t for t in tokens)

    def generate(
        self, prompt: str | list[int], sampling: SamplingConfig, cancel: CancelToken | None = None
    ) -> Iterator[GenerationEvent]:
        self.prompts.append(prompt)
        self.samplings.append(sampling)
        pieces = self.script.pop(0) if self.script else ["ok"]
        prompt_tokens = self.tokenize(prompt) if isinstance(prompt, str) else prompt
        count = 0
        reason = "stop"
        matched: str | None = None
        pending = PendingLogprobs()
        for piece in pieces:
            if cancel is not None and cancel.cancelled:
                break
            if 0 <= sampling.num_predict <= count:
                reason = "length"
                break
            if self.delay:
                time.sleep(self.delay)
            if sampling.logprobs:
                pending.add(fake_logprob(piece, count, sampling.top_logprobs))
            count += 1
            matched = next((stop for stop in sampling.stop if stop in piece), None)
            if matched is not None:  # a stop string ends the answer (within one piece only)
                if last := pending.finish(piece[: piece.index(matched)]):
                    yield last
                break
            yield pending.chunk(piece)
        yield Completion(
            done_reason=reason,  # type: ignore[arg-type]
            prompt_eval_count=len(prompt_tokens),
            prompt_eval_duration=1000,
            eval_count=count,
            eval_duration=2000,
            context=tuple(prompt_tokens),
            stop_sequence=matched,
        )

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [[float(len(t)), 1.0] for t in texts]

    def close(self) -> None:
        self.closed = True


def fake_logprob(piece: str, index: int, top: int) -> TokenLogprob:
    """The scripted logprob of the `index`-th piece: -(index + 1) / 8, as token id `index`;
    its `top` alternatives are the piece itself, then `~1`, `~2` ... one nat less likely each."""
    logprob = -(index + 1) / 8
    data = tuple(piece.encode())
    alternatives = [TopLogprob(piece, index, logprob, data)]
    alternatives += [
        TopLogprob(f"~{k}", 1000 + k, logprob - k, tuple(f"~{k}".encode())) for k in range(1, top)
    ]
    return TokenLogprob(piece, index, logprob, data, tuple(alternatives[:top]))


@dataclass
class FakeFactory:
    """Loads FakeEngines; tests enqueue answers on `script` before generating."""

    script: list[list[str]] = field(default_factory=list)
    loaded: list[FakeEngine] = field(default_factory=list)
    delay: float = 0.0
    chat_template: str | None = LABELLED_JINJA

    def enqueue(self, *pieces: str) -> None:
        self.script.append(list(pieces))

    def load(self, config: LoadConfig) -> Engine:
        engine = FakeEngine(config, self.script, delay=self.delay, chat_template=self.chat_template)
        self.loaded.append(engine)
        return engine


class FailingEngine(FakeEngine):
    """Writes two tokens, then the engine fails."""

    def generate(
        self, prompt: str | list[int], sampling: SamplingConfig, cancel: CancelToken | None = None
    ) -> Iterator[GenerationEvent]:
        yield TextChunk("one")
        yield TextChunk(" two")
        raise EngineError("the engine broke")


class FailingFactory(FakeFactory):
    def load(self, config: LoadConfig) -> FailingEngine:
        engine = FailingEngine(config)
        self.loaded.append(engine)
        return engine
