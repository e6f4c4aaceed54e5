"""Scoring a fine-tuned model through llama.cpp: does it give the trained answer, word for word?

The questions go through `ChatService`, exactly as `run` and the API ask them (the model's
template, system message and adapter), greedily. An answer counts when it equals the expected
answer after trimming surrounding whitespace. Rows are chat examples: everything before the last
assistant turn is the conversation asked, the last assistant turn is the expected answer.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ollamacli.engine.base import ChatMessage, TextChunk
from ollamacli.finetune.dataset import Example
from ollamacli.service.chat import ChatRequest, ChatService

HOLD_OUT_MIN_ROWS = 20
"""With at least this many rows and no --eval file, some rows are held out of training."""
HOLD_OUT_FRACTION = 0.1
HOLD_OUT_MAX = 50


@dataclass(frozen=True, slots=True)
class Answer:
    """One question asked, with the expected and the given answer."""

    question: str
    expected: str
    answer: str

    @property
    def is_exact(self) -> bool:
        """The trained answer, word for word."""
        return self.answer.strip() == self.expected.strip()


@dataclass(frozen=True, slots=True)
class Score:
    """Exact answers out of the questions asked."""

    answers: tuple[Answer, ...]

    @property
    def exact(self) -> int:
        """How many answers were exact."""
        return sum(a.is_exact for a in self.answers)

    @property
    def total(self) -> int:
        """How many questions were asked."""
        return len(self.answers)

    @property
    def per_8(self) -> float:
        """Exact answers per 8 questions (the issue's yardstick)."""
        return 8 * self.exact / self.total if self.total else 0.0


def split_held_out(examples: Sequence[Example], seed: int) -> tuple[list[Example], list[Example]]:
    """(trained, held out): a random tenth (2 to 50 rows) once there are enough rows."""
    if len(examples) < HOLD_OUT_MIN_ROWS:
        return list(examples), []
    count = min(HOLD_OUT_MAX, max(2, round(len(examples) * HOLD_OUT_FRACTION)))
    chosen = set(random.Random(seed).sample(range(len(examples)), count))
    trained = [e for i, e in enumerate(examples) if i not in chosen]
    return trained, [e for i, e in enumerate(examples) if i in chosen]


def ask(chat: ChatService, model: str, messages: Sequence[ChatMessage], limit: int) -> str:
    """A greedy answer of at most `limit` tokens."""
    request = ChatRequest(
        model, tuple(messages), options={"temperature": 0, "num_predict": limit, "seed": 0}
    )
    return "".join(e.text for e in chat.chat(request) if isinstance(e, TextChunk))


def score(
    chat: ChatService,
    model: str,
    examples: Sequence[Example],
    on_answer: Callable[[Answer], None] | None = None,
) -> Score:
    """Ask every example's question; the expected answer is its last assistant turn."""
    answers = []
    for example in examples:
        *conversation, expected = _until_last_answer(example.messages)
        # Room for the answer and a little more: a wrong answer need not be read to its end.
        limit = max(32, 2 * len(expected.content.encode()) // 3 + 16)
        given = ask(chat, model, conversation, limit)
        answer = Answer(conversation[-1].content, expected.content, given)
        if on_answer is not None:
            on_answer(answer)
        answers.append(answer)
    return Score(tuple(answers))


def _until_last_answer(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    last = max(i for i, m in enumerate(messages) if m.role == "assistant")
    return list(messages[: last + 1])
