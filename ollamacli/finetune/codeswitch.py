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
in Chinese word order); the others swap a seeded random half, each for one of its first two
senses. Questions without Chinese get none.
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
from ollamacli.finetune.augment import Paraphraser

_CJK = re.compile(r"[\u3400-\u9fff]")
_ENTRY = re.compile(r"^\S+ (\S+) \[[^\]]*\] /(.*)/$")
_BRACKETS = re.compile(r"\([^)]*\)|\[[^\]]*\]|[A-Za-z\u00c0-\u024f]*\|?[\u3400-\u9fff]+\S*")
_SKIPPED_SENSES = (
    "CL:", "variant of", "old variant", "surname ", "see ", "abbr. ", "used in ", "also pr.",
    "also written", "erhua variant",
)  # fmt: skip
_SENSES = 2  # a word swapped in a half takes one of its first two senses
_LONGEST = 6  # longest word looked up, in characters
_PUNCTUATION = {"？": "?", "，": ",", "。": ".", "！": "!", "：": ":", "、": ","}
_ASCII_PUNCTUATION = frozenset(_PUNCTUATION.values())


def _dictionary_file() -> Path:
    spec = importlib.util.find_spec("pinyin")
    if spec is None or not spec.submodule_search_locations:
        raise OptionalDependencyError("finetune --augment-codeswitch", extra="finetune")
    return Path(next(iter(spec.submodule_search_locations))) / "cedict.txt.gz"


@functools.cache
def dictionary() -> dict[str, tuple[str, ...]]:
    """Simplified Chinese word -> its English senses, cleaned (first entry of a word wins)."""
    senses: dict[str, tuple[str, ...]] = {}
    with gzip.open(_dictionary_file(), "rt", encoding="utf-8") as lines:
        for line in lines:
            match = _ENTRY.match(line.rstrip("\n"))
            if match is None or match.group(1) in senses:
                continue
            cleaned = [_clean(s) for s in match.group(2).split("/")]
            kept = tuple(s for s in cleaned if s)
            if kept:
                senses[match.group(1)] = kept
    return senses


def _clean(sense: str) -> str:
    """A sense as plain words: no notes in brackets, no Chinese, no leading `to `."""
    if sense.startswith(_SKIPPED_SENSES):
        return ""
    text = " ".join(_BRACKETS.sub(" ", sense).split()).strip(" ?;,")
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
    """Up to `count` rewrites of a Chinese question: a full gloss first, then random halves."""
    text = question.strip()
    if count <= 0 or not _CJK.search(text):
        return []
    words = dictionary()
    cut = segment(text, words)
    swappable = [i for i, w in enumerate(cut) if _CJK.match(w[0]) and w in words]
    if not swappable:
        return []
    found = [_render(cut, set(swappable), words, None)]
    for _ in range(4 * count):
        if len(found) >= count or len(swappable) < 2:
            break
        half = set(rng.sample(swappable, len(swappable) // 2))
        rewrite = _render(cut, half, words, rng)
        if rewrite not in found:
            found.append(rewrite)
    return found[:count]


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
