# ruff: noqa: RUF001  (Chinese questions end in full-width punctuation)
"""`--augment-codeswitch`: Chinese questions with words swapped for CC-CEDICT's English glosses."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ollamacli.engine.base import ChatMessage
from ollamacli.finetune.augment import zh_variants
from ollamacli.finetune.codeswitch import (
    codeswitch_paraphraser,
    codeswitch_rewrites,
    dictionary,
    segment,
)
from ollamacli.finetune.dataset import Example
from ollamacli.finetune.pipeline import FinetuneRequest, _augmented

pytest.importorskip("pinyin", reason="needs ollamacli[finetune]")


def _ignore(_: object) -> None:
    return None


def test_the_dictionary_is_cc_cedict_with_cleaned_senses() -> None:
    words = dictionary()
    assert len(words) > 100_000
    assert words["课程"][0] == "course"
    assert words["退款"][0] == "refund"  # "to refund" loses its "to ", and the word stays whole
    assert "purchase" in words["购买"]
    # notes, Chinese cross-references and pronunciations are no senses
    assert not any("[" in s or "(" in s or "pr." in s for s in words["谁"])
    assert "啥" not in words  # its only sense is "dialectal equivalent of 什么[shen2 me5]"


def test_words_are_cut_by_the_matching_that_leaves_fewer_single_characters() -> None:
    words = dictionary()
    # forward matching would take 联系人 ("contact person") and leave 工 alone
    assert segment("如何联系人工客服？", words) == ["如何", "联系", "人工", "客服", "？"]
    assert segment("课程可以退款吗？", words) == ["课程", "可以", "退款", "吗", "？"]
    assert segment("", words) == []


def test_the_first_rewrite_glosses_every_word_then_variants_and_halves() -> None:
    rewrites = codeswitch_rewrites("如何购买课程？", 8, random.Random(1))
    assert rewrites[0] == "How purchase course?"  # first senses, Chinese word order
    assert len(rewrites) == len(set(rewrites)) == 8
    # the rule variants' full glosses (other word orders, other question words) ...
    glossed = {
        codeswitch_rewrites(f"{v}？", 1, random.Random(1))[0] for v in zh_variants("如何购买课程")
    }
    assert "I should how purchase course?" in glossed  # 我该怎么购买课程
    # ... or the question with about half its words swapped
    for rewrite in rewrites[1:]:
        chinese = any("\u4e00" <= c <= "\u9fff" for c in rewrite)
        english = any(c.isascii() and c.isalpha() for c in rewrite)
        assert (chinese and english) or rewrite in glossed, rewrite
    assert any(r in glossed for r in rewrites[1:])
    assert any(r not in glossed for r in rewrites[1:])
    # a word the dictionary lacks (a particle) stays as it is
    assert codeswitch_rewrites("课程可以退款吗？", 1, random.Random(1)) == [
        "Course can refund 吗？"
    ]


def test_questions_without_chinese_or_nothing_to_swap_get_no_rewrites() -> None:
    assert codeswitch_rewrites("How do I buy a course?", 3, random.Random(1)) == []
    assert codeswitch_rewrites("？", 3, random.Random(1)) == []
    assert codeswitch_rewrites("如何购买课程？", 0, random.Random(1)) == []


def test_the_paraphraser_is_the_same_for_a_seed_and_differs_across_seeds() -> None:
    question = "平台上有哪些课程？"
    assert codeswitch_paraphraser(3)(question, 4) == codeswitch_paraphraser(3)(question, 4)
    drawn = {tuple(codeswitch_paraphraser(seed)(question, 4)) for seed in range(6)}
    assert len(drawn) > 1


def test_the_pipeline_adds_codeswitched_copies_of_single_turn_rows(tmp_path: Path) -> None:
    rows = [
        Example(
            (ChatMessage("user", "如何购买课程？"), ChatMessage("assistant", "点击购买。")), "d:1"
        ),
        Example((ChatMessage("user", "Who are you?"), ChatMessage("assistant", "Xiao Ji.")), "d:2"),
    ]
    request = FinetuneRequest("n", "b", tmp_path / "d.jsonl", augment_codeswitch=2)
    out = _augmented(request, rows, None, _ignore)
    assert [e.location for e in out] == ["d:1", "d:2", "d:1 (codeswitch 1)", "d:1 (codeswitch 2)"]
    assert out[2].messages[0].content == "How purchase course?"
    assert {e.messages[-1].content for e in out[2:]} == {"点击购买。"}  # the answer is kept
