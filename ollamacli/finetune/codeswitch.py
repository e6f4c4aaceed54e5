# ruff: noqa: RUF001  (full-width Chinese punctuation is mapped to ASCII)
"""`finetune --augment-codeswitch N`: Chinese questions with words swapped for English glosses.

Rows in one language teach nothing about questions in another: a helpdesk trained on Chinese
questions answers an English question with the base model's own English answer. Code-switching
augmentation (Qin et al. 2020, "CoSDA-ML") adds copies of each question in which words are
replaced by their translations from a bilingual dictionary, so that the answer is also tied to
the other language's words. Here the dictionary is CC-CEDICT (about 115,000 entries, CC BY-SA
4.0, as shipped in the `pinyin` package of the `finetune` extra); a question is cut into words by
bidirectional maximum matching against it, and each swapped word takes one of its first senses.
The first rewrite of a question swaps every word it can for its first sense (an English gloss
in Chinese word order); the others are drawn, by a seeded shuffle, from the full glosses of the
question's rule variants (`--augment`'s other word orders and question words, e.g. `X是什么` ->
`什么是X` -> `What is X`) and from copies with a random half of the words swapped, each taking one
of its first two senses. Questions without Chinese get none.
Nothing here knows the dataset: the same dictionary and rules apply to any Chinese question.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import random
import re
from collections.abc import Sequence
from pathlib import Path

from ollamacli.errors import OptionalDependencyError
from ollamacli.finetune.augment import Paraphraser, zh_variants

_CJK = re.compile(r"[\u3400-\u9fff]")
_ENTRY = re.compile(r"^\S+ (\S+) \[([^\]]*)\] /(.*)/$")
_NOTES = re.compile(r"\([^)]*\)|\[[^\]]*\]")  # (notes) and [pinyin]
_CHINESE_REFERENCE = re.compile(r"\S*[\u3400-\u9fff]\S*")  # e.g. `什么`, `什麼|什么`
_SKIPPED_SENSES = (
    "CL:", "variant of", "old variant", "surname ", "see ", "abbr. ", "used in ", "also pr.",
    "also written", "erhua variant",
)  # fmt: skip
_SENSES = 2  # a word swapped in a half takes one of its first two senses
_LONGEST = 6  # longest word looked up, in characters
_ZH_END = "？?。！!．. "
_PUNCTUATION = {"？": "?", "，": ",", "。": ".", "！": "!", "：": ":", "、": ","}
_ASCII_PUNCTUATION = frozenset(_PUNCTUATION.values())


def _dictionary_file() -> Path:
    spec = importlib.util.find_spec("pinyin")
    if spec is None or not spec.submodule_search_locations:
        raise OptionalDependencyError("finetune --augment-codeswitch", extra="finetune")
    return Path(next(iter(spec.submodule_search_locations))) / "cedict.txt.gz"


@functools.cache
def dictionary() -> dict[str, tuple[str, ...]]:
    """Simplified Chinese word -> its English senses, cleaned. A word's first entry wins, except
    that a common word's entry replaces a name's (capitalised reading: `资源` is a resource
    before it is Ziyuan county)."""
    return _entries()[0]


def verb_senses() -> dict[str, tuple[bool, ...]]:
    """Word -> for each of its `dictionary` senses, whether CC-CEDICT gives it as a verb (`to
    refund`; the noun `refund` reads the same once cleaned)."""
    return _entries()[1]


@functools.cache
def _entries() -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[bool, ...]]]:
    senses: dict[str, tuple[str, ...]] = {}
    verbs: dict[str, tuple[bool, ...]] = {}
    names: set[str] = set()  # words whose kept entry is a name (`Zi1 yuan2`, a county)
    with gzip.open(_dictionary_file(), "rt", encoding="utf-8") as lines:
        for line in lines:
            match = _ENTRY.match(line.rstrip("\n"))
            if match is None:
                continue
            word, reading, glosses = match.groups()
            if word in senses and (word not in names or reading[:1].isupper()):
                continue
            raw = glosses.split("/")
            cleaned = [(_clean(s), s.startswith("to ")) for s in raw]
            kept = tuple(s for s, _ in cleaned if s)
            if kept:
                senses[word] = kept
                verbs[word] = tuple(verb for s, verb in cleaned if s)
                if reading[:1].isupper():
                    names.add(word)
                else:
                    names.discard(word)
    return senses, verbs


def _clean(sense: str) -> str:
    """A sense as plain words: no notes in brackets, no Chinese, no leading `to `."""
    if sense.startswith(_SKIPPED_SENSES):
        return ""
    text = _CHINESE_REFERENCE.sub(" ", _NOTES.sub(" ", sense))
    text = " ".join(text.split()).strip(" ?;,")
    if text.endswith(" of"):  # what it referred to was Chinese: `dialectal equivalent of 什么`
        return ""
    return text.removeprefix("to ") if text.startswith("to ") and " " in text else text


def segment(text: str, words: dict[str, tuple[str, ...]]) -> list[str]:
    """`text` cut into dictionary words by forward and backward maximum matching, keeping the
    cut with fewer single characters (fewer pieces on a tie; forward on a full tie)."""
    forward = _forward(text, words)
    backward = _backward(text, words)

    def cost(cut: list[str]) -> tuple[int, int]:
        return sum(1 for w in cut if len(w) == 1 and _CJK.match(w)), len(cut)

    return backward if cost(backward) < cost(forward) else forward


def _forward(text: str, words: dict[str, tuple[str, ...]]) -> list[str]:
    cut, i = [], 0
    while i < len(text):
        size = next(
            (n for n in range(min(_LONGEST, len(text) - i), 1, -1) if text[i : i + n] in words), 1
        )
        cut.append(text[i : i + size])
        i += size
    return cut


def _backward(text: str, words: dict[str, tuple[str, ...]]) -> list[str]:
    cut, end = [], len(text)
    while end > 0:
        size = next(
            (n for n in range(min(_LONGEST, end), 1, -1) if text[end - n : end] in words), 1
        )
        cut.append(text[end - size : end])
        end -= size
    return cut[::-1]


def codeswitch_rewrites(question: str, count: int, rng: random.Random) -> list[str]:
    """Up to `count` rewrites of a Chinese question: its full gloss first, then a seeded draw
    from the full glosses of its rule variants (`augment.zh_variants`: other word orders and
    question words) and random halves of the question."""
    text = question.strip()
    if count <= 0 or not _CJK.search(text):
        return []
    words = dictionary()
    first = _glosses(text, words, rng, halves=0)
    if not first:
        return []
    core = text.rstrip(_ZH_END)
    pool = [g for v in zh_variants(core) for g in _glosses(v + text[len(core) :], words, rng)]
    pool += _glosses(text, words, rng, halves=4 * count)[1:]
    rng.shuffle(pool)
    return list(dict.fromkeys([*first, *pool]))[:count]


def _glosses(
    text: str, words: dict[str, tuple[str, ...]], rng: random.Random, halves: int = 0
) -> list[str]:
    """The full gloss of `text` (first senses), then up to `halves` half-swapped copies."""
    cut = segment(text, words)
    swappable = [i for i, w in enumerate(cut) if _CJK.match(w[0]) and w in words]
    if not swappable:
        return []
    found = [_render(cut, set(swappable), words, None)]
    if len(swappable) > 1:
        for _ in range(halves):
            half = set(rng.sample(swappable, len(swappable) // 2))
            found.append(_render(cut, half, words, rng))
    return found


def _render(
    cut: Sequence[str],
    swapped: set[int],
    words: dict[str, tuple[str, ...]],
    rng: random.Random | None,
) -> str:
    """The cut with the swapped words in English (first sense without `rng`)."""
    pieces: list[tuple[bool, str]] = []  # (in English, text)
    for i, word in enumerate(cut):
        if i in swapped:
            senses = words[word]
            pieces.append((True, senses[0] if rng is None else rng.choice(senses[:_SENSES])))
        elif word in _PUNCTUATION and i - 1 in swapped:
            pieces.append((True, _PUNCTUATION[word]))
        else:
            pieces.append((False, word))
    text = ""
    for index, (english, piece) in enumerate(pieces):
        spaced = english or pieces[index - 1][0] if index else False
        if spaced and piece not in _ASCII_PUNCTUATION:
            text += " "
        text += piece
    return text[:1].upper() + text[1:]


def codeswitch_paraphraser(seed: int = 0) -> Paraphraser:
    """N code-switched rewrites per question, drawn by a generator seeded by the question."""

    def paraphrase(question: str, count: int) -> list[str]:
        return codeswitch_rewrites(question, count, random.Random(f"{seed}:codeswitch:{question}"))

    return paraphrase
