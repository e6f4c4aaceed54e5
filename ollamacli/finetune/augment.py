"""`finetune --augment N`: the base model rewrites each question N ways before training.

Rows that teach one answer to one question generalise poorly: the model learns the question's
exact wording. Training on paraphrased questions with the same answer teaches the answer for the
meaning instead. The paraphrases come from the base model itself through llama.cpp (sampled, with
fixed seeds); a rewrite is kept only if it looks like a question in the same script, differs from
the original and from the rewrites kept so far, and does not give the answer away.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence

from ollamacli.engine.base import ChatMessage, TextChunk
from ollamacli.finetune.dataset import Example
from ollamacli.service.chat import ChatRequest, ChatService

Paraphraser = Callable[[str, int], list[str]]
"""(question, how many) -> up to that many rewrites of the question."""

_INSTRUCTION = (
    "Rewrite the user's question with different words. Keep the same language and the same "
    "meaning. Reply with the rewritten question only."
)
_CJK = re.compile(r"[\u3400-\u9fff]")
_LABEL = re.compile(r"^\s*(?:rewritten question|question|问题|改写)\s*[:\uff1a]\s*", re.IGNORECASE)
_ATTEMPTS_PER_REWRITE = 3


def model_paraphraser(chat: ChatService, model: str, *, seed: int = 0) -> Paraphraser:
    """A paraphraser that asks `model` (sampled at temperature 0.9, one seed per attempt)."""

    def paraphrase(question: str, count: int) -> list[str]:
        kept: list[str] = []
        for attempt in range(count * _ATTEMPTS_PER_REWRITE):
            if len(kept) == count:
                break
            request = ChatRequest(
                model,
                (ChatMessage("system", _INSTRUCTION), ChatMessage("user", question)),
                options={
                    "temperature": 0.9,
                    "top_p": 0.95,
                    "seed": seed + attempt,
                    "num_predict": 64,
                    "stop": ["\n"],
                },
            )
            text = "".join(e.text for e in chat.chat(request) if isinstance(e, TextChunk))
            rewrite = clean_rewrite(text)
            if is_usable_rewrite(question, rewrite, kept):
                kept.append(rewrite)
        return kept

    return paraphrase


def clean_rewrite(text: str) -> str:
    """The rewrite without a leading label ("Question:") or surrounding quotes."""
    text = _LABEL.sub("", text.strip())
    return text.strip().strip("\"'“”「」").strip()


def is_usable_rewrite(question: str, rewrite: str, kept: Sequence[str]) -> bool:
    """Same script, similar length, new wording, no answer-like run-on."""
    if not rewrite or _key(rewrite) in {_key(question), *map(_key, kept)}:
        return False
    if bool(_CJK.search(question)) != bool(_CJK.search(rewrite)):
        return False
    return len(question) / 3 <= len(rewrite) <= 3 * len(question) + 10


def _key(text: str) -> str:
    """Text compared without case, spaces or punctuation."""
    return "".join(
        c for c in unicodedata.normalize("NFKC", text).casefold() if c.isalnum() or _CJK.match(c)
    )


def augment(examples: Sequence[Example], paraphrase: Paraphraser, count: int) -> list[Example]:
    """The examples followed by copies whose (single) user question is rewritten.

    Multi-turn rows are kept as they are: rewriting one turn of a conversation can break it.
    """
    added = []
    for example in examples:
        users = [i for i, m in enumerate(example.messages) if m.role == "user"]
        if len(users) != 1:
            continue
        index = users[0]
        for number, rewrite in enumerate(paraphrase(example.messages[index].content, count), 1):
            messages = list(example.messages)
            messages[index] = ChatMessage("user", rewrite)
            added.append(Example(tuple(messages), f"{example.location} (rewrite {number})"))
    return [*examples, *added]
