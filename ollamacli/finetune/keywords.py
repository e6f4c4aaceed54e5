# ruff: noqa: RUF001, RUF002  (Chinese templates use full-width punctuation)
"""`finetune --augment-keywords N`: short questions made of the words that set an answer apart.

Users often ask about what an answer talks about in words the training question never used
("refund policy?" for an answer that explains the refund policy). Following doc2query-style
pseudo-queries (Nogueira et al. 2019), each distinct answer gets N short questions built from
its own distinctive words (cut by `codeswitch.segment` against CC-CEDICT): words said more often
in the answer and its training questions than in any other answer and its questions, function
words left out. They are framed by a few templates (`退款政策？`, `关于价格`, `我想了解一下付费`),
or in English by the words' first common senses (`Refund policy?`), alone or in whole questions
chosen by the sense's part of speech (CC-CEDICT writes verbs `to ...`: `How do I refund?`, `Is
there a policy?`). The queries are paired with the row's messages as they are (system message
included); which words and templates each query takes is a seeded draw. Answers without Chinese
distinctive words get none.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence

from ollamacli.engine.base import ChatMessage
from ollamacli.finetune.codeswitch import dictionary, segment, verb_senses
from ollamacli.finetune.dataset import Example

_CJK = re.compile(r"^[\u3400-\u9fff]+$")
# Function words and fillers that say nothing of what an answer is about.
_FUNCTION_WORDS = frozenset((
    "可以", "可能", "能够", "需要", "根据", "然后", "按照", "即可", "是的", "关于", "一个", "一些", "这个", "那个", "我们",
    "你们", "他们", "以及", "或者", "还是", "但是", "因为", "所以", "如果", "就是", "已经", "进行", "通过", "包括", "具体",
    "各种", "大部分", "其他", "还有", "之后", "以后", "之前", "请问", "如何", "怎么", "什么", "哪些", "哪里", "为什么", "提供",
    "拥有",
))  # fmt: skip
_ZH_ONE = ("{a}？", "关于{a}", "我想了解一下{a}", "{a}怎么样？", "{a}的问题", "说说{a}")
_ZH_TWO = ("{a}{b}？", "{a}和{b}", "关于{a}{b}", "我想了解{a}{b}")
_EN_ONE = ("{A}?", "About {a}?", "{A}", "Tell me about {a}.")
_EN_TWO = ("{A} {b}?", "{A} and {b}?", "About {a} and {b}?")
# Whole English questions, by the part of speech CC-CEDICT gives the sense (`to refund`: a verb).
_EN_VERB = ("How do I {v}?", "Can I {v}?", "I want to {v}.")
_EN_NOUN = ("What is the {n}?", "Is there {an} {n}?", "What about the {n}?")
_EN_VERB_NOUN = ("How do I {v} the {n}?", "Can I {v} the {n}?")
_PLACEHOLDERS = re.compile(r"\b(?:sth|sb|sb's|oneself)\b")
_PREPOSITIONS = frozenset(("with", "for", "to", "on", "at", "in", "of", "about", "from", "into"))


def distinctive_words(rows: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Each distinct answer of (question, answer) rows -> its distinctive dictionary words, in
    order of first appearance: words said more often in this answer and its questions than in
    any other answer and its questions (a word said as often elsewhere tells them apart from
    nothing), function words left out."""
    words = dictionary()
    counts: dict[str, Counter[str]] = {}
    for question, answer in rows:
        found = counts.setdefault(answer, Counter(segment(answer, words)))
        found.update(segment(question, words))
    return {
        answer: [
            w
            for w in found
            if len(w) >= 2
            and _CJK.match(w)
            and w in words
            and w not in _FUNCTION_WORDS
            and all(found[w] > other[w] for a, other in counts.items() if a != answer)
        ]
        for answer, found in counts.items()
    }


def keyword_queries(words: Sequence[str], rng: random.Random) -> list[str]:
    """Every distinct short question from `words` (Chinese, and English glosses), in an order
    shuffled by `rng`."""
    senses = dictionary()
    pool: list[str] = []
    for index, a in enumerate(words):
        english = _gloss(senses[a])
        pool += [t.format(a=a) for t in _ZH_ONE]
        pool += [t.format(a=english, A=english[:1].upper() + english[1:]) for t in _EN_ONE]
        pool += _english_questions(a, None)
        for b in words[index + 1 : index + 3]:  # a neighbour: words said together
            b_english = _gloss(senses[b])
            pool += [t.format(a=a, b=b) for t in _ZH_TWO]
            pool += [
                t.format(a=english, A=english[:1].upper() + english[1:], b=b_english)
                for t in _EN_TWO
            ]
            pool += _english_questions(a, b)
    rng.shuffle(pool)
    return list(dict.fromkeys(pool))


def _english_questions(a: str, b: str | None) -> list[str]:
    """Whole English questions about word `a` (a verb: `How do I refund?`; otherwise a noun:
    `Is there a policy?`), or with `b`, about a verb and the thing it is done to (`Can I apply
    for the refund?`); none when the parts of speech do not fit."""
    verb = _verb(a)
    if b is None:
        if verb:  # not when it needs an object: `get in touch with`
            return (
                []
                if verb.rsplit(" ", 1)[-1] in _PREPOSITIONS
                else [t.format(v=verb) for t in _EN_VERB]
            )
        noun = _gloss(dictionary()[a])
        return [t.format(n=noun, an="an" if noun[:1] in "aeiou" else "a") for t in _EN_NOUN]
    noun = _noun(b)
    if not verb or not noun:
        return []
    return [t.format(v=verb, n=noun) for t in _EN_VERB_NOUN]


def _noun(word: str) -> str:
    """The word's first common sense that CC-CEDICT does not give as a verb ("" when none)."""
    senses = zip(dictionary()[word], verb_senses()[word], strict=True)
    return _plain(next((s for s, verb in senses if not verb and not s[:1].isupper()), ""))


def _verb(word: str) -> str:
    """The word's first sense that CC-CEDICT gives as a verb, placeholders dropped (`apply for
    sth` -> `apply for`), or "" when it has none."""
    senses = zip(dictionary()[word], verb_senses()[word], strict=True)
    return _plain(next((s for s, verb in senses if verb), ""))


def _gloss(senses: Sequence[str]) -> str:
    """The first sense that is not a name (a place or a person: capitalised in CC-CEDICT),
    without placeholders (`apply for sth` -> `apply for`)."""
    sense = next((s for s in senses if not s[:1].isupper()), senses[0])
    return _plain(sense) or sense


def _plain(sense: str) -> str:
    """A sense without placeholders: `apply for sth` -> `apply for`."""
    return " ".join(_PLACEHOLDERS.sub(" ", sense).split())


def augment_keywords(examples: Sequence[Example], count: int, seed: int = 0) -> list[Example]:
    """`count` keyword questions per distinct answer of the single-question rows, each paired
    with the messages of the answer's first such row (its question replaced). A question that
    two answers' words make alike (`Pay?` from 付费 and from 支付) is given to neither."""
    if count <= 0:
        return []
    firsts: dict[str, Example] = {}
    pairs: list[tuple[str, str]] = []
    for example in examples:
        users = [m for m in example.messages if m.role == "user"]
        last = example.messages[-1]
        if len(users) == 1 and last.role == "assistant":
            firsts.setdefault(last.content, example)
            pairs.append((users[0].content, last.content))
    distinctive = distinctive_words(pairs)
    queries = {
        answer: keyword_queries(words, random.Random(f"{seed}:keywords:{answer}"))
        for answer, words in distinctive.items()
    }
    shared = Counter(q for found in queries.values() for q in found)
    added = []
    for answer, example in firsts.items():
        index = next(i for i, m in enumerate(example.messages) if m.role == "user")
        unique = [q for q in queries[answer] if shared[q] == 1][:count]
        for number, query in enumerate(unique, 1):
            messages = list(example.messages)
            messages[index] = ChatMessage("user", query)
            added.append(Example(tuple(messages), f"{example.location} (keywords {number})"))
    return added
