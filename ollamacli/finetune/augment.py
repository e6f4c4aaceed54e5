# ruff: noqa: RUF001  (Chinese templates use full-width punctuation)
"""`finetune --augment N`: N rewrites of each question are added before training.

Rows that teach one answer to one question generalise poorly: the model learns the question's
exact wording. Training on rewritten questions with the same answer teaches the answer for more
than one wording. By default the rewrites come from rules (`rule_rewrites`): politeness
prefixes and suffixes, punctuation, common question-word synonyms and a few word-order patterns
in Chinese, English frames around the question; they change how a question is framed, never its
content words, and come from the training questions alone. `--augment-with MODEL` asks a model
instead (sampled through llama.cpp, with fixed seeds); a model's rewrite is kept only if it looks
like a question in the same script, differs from the original and from the rewrites kept so far,
and does not give the answer away.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable, Sequence

from ollamacli.engine.base import ChatMessage, TextChunk
from ollamacli.finetune.dataset import Example
from ollamacli.service.chat import ChatRequest, ChatService
from ollamacli.service.events import ChatDone

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


def augment(
    examples: Sequence[Example], paraphrase: Paraphraser, count: int, *, label: str = "rewrite"
) -> list[Example]:
    """The examples followed by copies whose (single) user question is rewritten (each copy's
    location says `(label n)`).

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
            added.append(Example(tuple(messages), f"{example.location} ({label} {number})"))
    return [*examples, *added]


# Rule-based rewrites (`--augment N` without a model): templates that change a question's framing,
# never its content words, so the answer stays right. Chinese: politeness prefixes and suffixes,
# common question-word synonyms, a few word-order patterns; English: the same kinds of frames.
# A question in another language is framed with that language's templates, so a dataset that
# gives a question in both languages gets both kinds.
_ZH_SYNONYMS = (
    ("如何", ("怎么", "怎样", "该如何")),
    ("怎么", ("如何", "怎样")),
    ("可以", ("能", "能够")),
    ("能", ("可以",)),
    ("需要", ("要", "得")),
    ("哪些", ("什么",)),
    ("什么", ("啥",)),
    ("购买", ("买",)),
    ("是什么", ("是啥",)),
)
_ZH_FRAMES = (
    "{q}？",
    "请问{q}？",
    "你好，{q}？",
    "我想问一下，{q}？",
    "我想知道{q}。",
    "能告诉我{q}吗？",
    "麻烦问下，{q}？",
    "{q}呢？",
    "{q}",
    "{q}?",
    "{q}？谢谢！",
    "想请教一下，{q}？",
    "你好，请问{q}？",
)
_MIXED_FRAMES = (  # a Chinese question inside an English frame: the answer does not change
    "Hi, {q}",
    "Could you tell me: {q}",
    "Question: {q}",
    "Please answer in Chinese: {q}",
)
_ZH_ORDER = (
    (re.compile(r"^(.+?)是什么$"), "什么是{0}"),
    (re.compile(r"^(.+?)是什么$"), "{0}是什么东西"),
    (re.compile(r"^如何(.+)$"), "{0}要怎么做"),
    (re.compile(r"^如何(.+)$"), "我该怎么{0}"),
    (re.compile(r"^(.+?)可以(.+)吗$"), "{0}能不能{1}"),
    (re.compile(r"^(.+?)需要(.+)吗$"), "{0}需不需要{1}"),
    (re.compile(r"^(.+?)有哪些(.+)$"), "{0}都有哪些{1}"),
    (re.compile(r"^你能(.+)$"), "你都能{0}"),
)
_EN_FRAMES = (
    "{q}",
    "Could you tell me: {q}",
    "Please tell me, {l}",
    "Hi, {l}",
    "Hello! {q}",
    "{q} Thanks!",
    "I'd like to know: {q}",
    "Quick question: {l}",
    "{b}",
    "{l}",
    "Excuse me, {l}",
)
_EN_ORDER = (
    (re.compile(r"^how do i (.+)$", re.I), "How can I {0}"),
    (re.compile(r"^how can i (.+)$", re.I), "How do I {0}"),
    (re.compile(r"^what is (.+)$", re.I), "What's {0}"),
    (re.compile(r"^can i (.+)$", re.I), "Is it possible to {0}"),
    (re.compile(r"^do (.+)$", re.I), "Does it hold that {0}"),
)
_ZH_END = "？?。！!．. "
_EN_END = "?.! "


def rule_rewrites(question: str) -> list[str]:
    """Every template rewrite of `question`: deterministic, in a fixed order, no duplicates."""
    text = question.strip()
    if _CJK.search(text):
        core = text.rstrip(_ZH_END)
        cores = [core, *zh_variants(core)]
        found = [_frame(frame, c) for c in cores for frame in _ZH_FRAMES]
        found += [frame.format(q=f"{core}？") for frame in _MIXED_FRAMES]
    else:
        core = text.rstrip(_EN_END)
        cores = [core, *_en_variants(core)]
        found = [_en_frame(frame, c) for c in cores for frame in _EN_FRAMES]
    return [r for r in dict.fromkeys(found) if r != text]


def _frame(frame: str, core: str) -> str:
    if core.endswith("吗"):
        if frame.startswith("能告诉我"):
            core = core[:-1]
        elif frame in ("{q}呢？", "我想知道{q}。"):
            return core + "？"  # a yes/no question takes neither
    return frame.format(q=core)


def zh_variants(core: str) -> list[str]:
    """Other wordings of a Chinese question's core: question-word synonyms, word orders."""
    variants = []
    for word, replacements in _ZH_SYNONYMS:
        if word in core:
            variants += [core.replace(word, r, 1) for r in replacements]
    for pattern, template in _ZH_ORDER:
        match = pattern.match(core)
        if match:
            variants.append(template.format(*match.groups()))
    return [v for v in dict.fromkeys(variants) if v != core]


def _en_variants(core: str) -> list[str]:
    variants = []
    for pattern, template in _EN_ORDER:
        match = pattern.match(core)
        if match:
            variants.append(template.format(*match.groups()))
    return [v for v in dict.fromkeys(variants) if v != core]


def _en_frame(frame: str, core: str) -> str:
    lower = core[:1].lower() + core[1:] if not core[:2].isupper() else core
    return frame.format(q=f"{core}?", l=f"{lower}?", b=core)


def rule_paraphraser(seed: int = 0) -> Paraphraser:
    """Up to N template rewrites per question, picked by a seeded shuffle (the same each run)."""
    return _seeded_picks(rule_rewrites, f"{seed}:")


def _seeded_picks(rewrites: Callable[[str], list[str]], salt: str) -> Paraphraser:
    """A paraphraser giving up to N of `rewrites(question)`, in an order shuffled by
    `salt` and the question (the same each run)."""

    def paraphrase(question: str, count: int) -> list[str]:
        found = rewrites(question)
        random.Random(f"{salt}{question}").shuffle(found)
        return found[:count]

    return paraphrase


# `--augment-deletions N`: EDA's random deletion (Wei and Zou 2019, "Easy Data Augmentation"):
# the question with one unit left out, so that no single word decides the answer. A unit is a
# Chinese character or an English word; questions too short to keep their meaning without one
# (under 5 characters or 4 words) get none. Which units go is drawn by a seeded shuffle.
_MIN_CJK_CHARACTERS = 5
_MIN_WORDS = 4


def deletion_rewrites(question: str) -> list[str]:
    """Every rewrite of `question` with one unit of its core left out, in order, no duplicates."""
    text = question.strip()
    if _CJK.search(text):
        core = text.rstrip(_ZH_END)
        end = text[len(core) :]
        if sum(1 for c in core if _CJK.match(c)) < _MIN_CJK_CHARACTERS:
            return []
        found = [core[:i] + core[i + 1 :] + end for i, c in enumerate(core) if _CJK.match(c)]
    else:
        core = text.rstrip(_EN_END)
        end = text[len(core) :]
        words = core.split()
        if len(words) < _MIN_WORDS:
            return []
        found = [" ".join(words[:i] + words[i + 1 :]) + end for i in range(len(words))]
    return [r for r in dict.fromkeys(found) if r != text]


def deletion_paraphraser(seed: int = 0) -> Paraphraser:
    """Up to N `deletion_rewrites` per question, picked by a seeded shuffle."""
    return _seeded_picks(deletion_rewrites, f"{seed}:deletion:")


# `--keep-base N`: general questions, answered by the base model itself, trained alongside the
# data (rehearsal), so a system message or many helpdesk rows do not turn every question into a
# helpdesk question. Short, common facts; English, the language small base models answer best.
GENERAL_QUESTIONS = (
    "What is the largest planet in our solar system?",
    "How many days are there in a week?",
    "Who wrote Romeo and Juliet?",
    "What is the boiling point of water in Celsius?",
    "What is the chemical symbol for gold?",
    "How many legs does a spider have?",
    "Which ocean is the largest?",
    "What do bees make?",
    "What gas do plants take in from the air?",
    "How many continents are there?",
    "What is the opposite of hot?",
    "What language is spoken in Spain?",
)
Rehearsal = Callable[[int], list[Example]]
"""How many rows -> general questions with the base model's own answers."""
_SENTENCE_END = re.compile(r"[。！？]|[.!?](?=\s|$)")


def base_rehearsal(chat: ChatService, model: str, *, limit: int = 48) -> Rehearsal:
    """Rows of `GENERAL_QUESTIONS` answered by `model` greedily through llama.cpp, as its users
    get them (an answer cut by `limit` is kept up to its last whole sentence)."""

    def rows(count: int) -> list[Example]:
        found = []
        for number, question in enumerate(GENERAL_QUESTIONS[:count], 1):
            request = ChatRequest(
                model,
                (ChatMessage("user", question),),
                options={"temperature": 0, "num_predict": limit, "seed": 0},
            )
            text, finished = "", False
            for event in chat.chat(request):
                if isinstance(event, TextChunk):
                    text += event.text
                elif isinstance(event, ChatDone):
                    finished = event.done_reason == "stop"
            answer = whole_sentences(text, finished)
            if answer:
                messages = (ChatMessage("user", question), ChatMessage("assistant", answer))
                found.append(Example(messages, f"base model answer {number}"))
        return found

    return rows


def whole_sentences(text: str, finished: bool) -> str:
    """The answer as trained: all of it if it ended, else up to its last sentence end."""
    text = text.strip()
    if finished:
        return text
    ends = list(_SENTENCE_END.finditer(text))
    return text[: ends[-1].end()] if ends else ""
