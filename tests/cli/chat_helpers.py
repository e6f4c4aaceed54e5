"""Shared pieces for the `run` and REPL tests: a tiny model, scripted REPL sessions, Ctrl-C."""

from __future__ import annotations

import io
import signal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from ollamacli.cli.answer import RunOptions
from ollamacli.cli.repl import run_repl
from ollamacli.cli.session import ChatSession
from ollamacli.engine.base import (
    CancelToken,
    Engine,
    EngineFactory,
    GenerationEvent,
    LoadConfig,
    SamplingConfig,
)
from ollamacli.modelfile import Message
from ollamacli.parameters import OptionValue
from ollamacli.service import Services
from ollamacli.service.models import CreateSpec
from tests.factories import make_tiny_gguf
from tests.fakes import FakeEngine, FakeFactory

PLAIN = RunOptions(wordwrap=False)


def make_model(
    services: Services,
    folder: Path,
    name: str = "tiny",
    *,
    system: str | None = None,
    parameters: dict[str, OptionValue] | None = None,
    messages: tuple[Message, ...] | None = None,
) -> str:
    """Create a model from a tiny GGUF (the fake engine never reads the weights)."""
    seed = sum(map(ord, name))  # distinct weights, so distinct models load separately
    gguf = make_tiny_gguf(folder / f"{name}.gguf", chat_template=None, seed=seed)
    spec = CreateSpec(
        from_file=gguf,
        system=system,
        parameters=parameters,
        messages=messages,
        licenses=("Tiny licence\nsecond line",),
    )
    services.models.create(name, spec)
    return name


def run_script(
    services: Services,
    model: str,
    script: str,
    options: RunOptions = PLAIN,
    *,
    err: io.StringIO | None = None,
) -> tuple[str, ChatSession]:
    """Type `script` into the real prompt-toolkit loop; return everything printed and the session.

    Help texts and statistics go to `err` when given, else into the same transcript.
    """
    out = io.StringIO()
    with create_pipe_input() as pipe:
        pipe.send_text(script)
        session = run_repl(
            services,
            model,
            options,
            input=pipe,
            output=DummyOutput(),
            out=out,
            err=err if err is not None else out,
        )
    return out.getvalue(), session


@dataclass
class InterruptingEngine(FakeEngine):
    """Sends the process a SIGINT (Ctrl-C) after the first piece of chosen answers."""

    interrupt_turns: set[int] = field(default_factory=set)

    def generate(
        self, prompt: str | list[int], sampling: SamplingConfig, cancel: CancelToken | None = None
    ) -> Iterator[GenerationEvent]:
        turn = len(self.prompts)
        for index, event in enumerate(super().generate(prompt, sampling, cancel)):
            yield event
            if index == 0 and turn in self.interrupt_turns:
                signal.raise_signal(signal.SIGINT)


@dataclass
class InterruptingFactory(FakeFactory):
    """A FakeFactory whose engines are interrupted on the given answer numbers (0-based)."""

    interrupt_turns: set[int] = field(default_factory=set)

    def load(self, config: LoadConfig) -> InterruptingEngine:
        engine = InterruptingEngine(
            config, self.script, delay=self.delay, interrupt_turns=self.interrupt_turns
        )
        self.loaded.append(engine)
        return engine


class RecordingEngine:
    """A real engine that remembers every prompt it was asked to complete."""

    def __init__(self, inner: Engine, prompts: list[str | list[int]]) -> None:
        self._inner = inner
        self._prompts = prompts

    @property
    def n_ctx(self) -> int:
        return self._inner.n_ctx

    @property
    def metadata(self) -> Mapping[str, str]:
        return self._inner.metadata

    @property
    def parallel(self) -> int:
        return self._inner.parallel

    @property
    def bos_token(self) -> str:
        return self._inner.bos_token

    @property
    def eos_token(self) -> str:
        return self._inner.eos_token

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        return self._inner.tokenize(text, special=special)

    def detokenize(self, tokens: list[int]) -> str:
        return self._inner.detokenize(tokens)

    def generate(
        self, prompt: str | list[int], sampling: SamplingConfig, cancel: CancelToken | None = None
    ) -> Iterator[GenerationEvent]:
        self._prompts.append(prompt)
        return self._inner.generate(prompt, sampling, cancel)

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self._inner.embed(texts)

    def close(self) -> None:
        self._inner.close()


@dataclass
class RecordingFactory:
    """Wraps a real engine factory so tests can read the rendered prompts."""

    inner: EngineFactory
    prompts: list[str | list[int]] = field(default_factory=list)
    engines: list[Engine] = field(default_factory=list)

    def load(self, config: LoadConfig) -> Engine:
        engine = RecordingEngine(self.inner.load(config), self.prompts)
        self.engines.append(engine)
        return engine
