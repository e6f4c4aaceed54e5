"""Fitting a conversation into num_ctx: Ollama's choice of turns, in linear time, cancellable."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from ollamacli.engine.base import CancelToken, ChatMessage, LoadConfig
from ollamacli.engine.templates import ChatTemplate
from ollamacli.errors import ContextLengthExceededError, RequestCancelledError
from ollamacli.service.fitting import Fit, fit_conversation
from tests.fakes import FakeEngine

# A plain role-header template (a Jinja loop over the turns).
PLAIN = (
    "{% for m in messages %}### {{ m.role }}:\n{{ m.content }}\n\n{% endfor %}"
    "{% if add_generation_prompt %}### assistant:\n{% endif %}"
)


class CountingTemplate(ChatTemplate):
    """The plain template, counting what it renders."""

    renders: list[int]

    def render(self, messages: Sequence[ChatMessage], **kwargs: object) -> str:
        self.renders.append(len(messages))
        return super().render(messages, **kwargs)  # type: ignore[arg-type]


def counting() -> CountingTemplate:
    template = CountingTemplate(PLAIN, "jinja")
    object.__setattr__(template, "renders", [])
    return template


def engine(num_ctx: int) -> FakeEngine:
    return FakeEngine(LoadConfig(Path("x.gguf"), num_ctx=num_ctx))


def ollama_choice(fake: FakeEngine, template: ChatTemplate, messages: Sequence[ChatMessage]) -> str:
    """Ollama's chatPrompt (server/prompt.go): drop turns from the front until it fits."""
    tools: Sequence[Mapping[str, object]] = ()
    for start in range(len(messages)):
        kept = [m for m in messages[:start] if m.role == "system"] + list(messages[start:])
        prompt = template.render(kept, tools=tools)
        if len(fake.tokenize(prompt)) <= fake.n_ctx or start == len(messages) - 1:
            return prompt
    raise AssertionError("unreachable")


def conversation(rng: random.Random, turns: int) -> list[ChatMessage]:
    messages = []
    for index in range(turns):
        role = rng.choice(["user", "assistant", "user", "assistant", "system"])
        words = " ".join(f"w{index}" for _ in range(rng.randint(1, 30)))
        messages.append(ChatMessage(role, words))
    return messages


@pytest.mark.parametrize("seed", range(40))
def test_the_kept_turns_are_the_ones_ollama_keeps(seed: int) -> None:
    rng = random.Random(seed)
    messages = conversation(rng, rng.randint(1, 60))
    fake = engine(rng.choice([8, 40, 100, 300, 2000]))
    template = ChatTemplate(PLAIN, "jinja")
    prompt, truncated = fit_conversation(fake, template, messages, (), Fit())
    assert prompt == ollama_choice(fake, template, messages)
    assert truncated == (prompt != template.render(messages))


@pytest.mark.parametrize("turns", [1_000, 4_000, 16_000])
def test_fitting_renders_a_logarithmic_number_of_times(turns: int) -> None:
    messages = [ChatMessage("system", "be brief")] + [
        ChatMessage("user" if i % 2 else "assistant", f"message number {i}") for i in range(turns)
    ]
    template = counting()
    prompt, truncated = fit_conversation(engine(512), template, messages, (), Fit())
    assert truncated
    assert len(engine(512).tokenize(prompt)) <= 512
    # One rendering of everything, then suffixes about as long as what is kept.
    assert template.renders[0] == len(messages)
    assert len(template.renders) <= 2 * turns.bit_length()
    assert sum(template.renders[1:]) < 4_000


def test_without_truncation_the_token_counts_are_reported() -> None:
    messages = [ChatMessage("user", "one two three four five")] * 4
    with pytest.raises(ContextLengthExceededError) as caught:
        fit_conversation(engine(10), counting(), messages, (), Fit(truncate=False))
    assert caught.value.n_ctx == 10
    assert caught.value.requested > 10


def test_a_cancelled_request_stops_fitting() -> None:
    cancel = CancelToken()
    cancel.cancel()
    messages = [ChatMessage("user", "x " * 50)] * 100
    with pytest.raises(RequestCancelledError):
        fit_conversation(engine(64), counting(), messages, (), Fit(cancel=cancel))
