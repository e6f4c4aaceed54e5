# ruff: noqa: RUF001  (Chinese questions end in full-width punctuation)
"""`--augment-keywords`: short questions made of the words only one answer uses."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ollamacli.engine.base import ChatMessage
from ollamacli.finetune.dataset import Example, load_dataset
from ollamacli.finetune.keywords import augment_keywords, distinctive_words, keyword_queries
from ollamacli.finetune.pipeline import FinetuneRequest, _augmented

pytest.importorskip("pinyin", reason="needs ollamacli[finetune]")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "finetune" / "geektime.jsonl"
REFUND = "根据平台的退款政策，购买后7天内可以申请退款，具体请查看平台的退款政策。"
BUY = "你可以在课程页面点击“购买”按钮，然后按照提示进行支付即可。"
PAID = "是的，极客时间的大部分课程都是需要付费的。你可以在平台上查看具体课程的价格。"


def _row(question: str, answer: str, where: str = "data.jsonl:1") -> Example:
    return Example((ChatMessage("user", question), ChatMessage("assistant", answer)), where)


def _ignore(_: object) -> None:
    return None


def test_distinctive_words_are_said_most_in_one_answer_and_its_questions() -> None:
    rows = [
        ("课程可以退款吗？", REFUND),
        ("如何购买课程？", BUY),
        ("课程需要付费吗？", PAID),
        ("退款政策是什么？", REFUND),
    ]
    words = distinctive_words(rows)
    assert list(words) == [REFUND, BUY, PAID]  # one entry per distinct answer
    # 购买: once in REFUND, but in BUY and its question; 查看: once in REFUND and in PAID
    assert words[REFUND] == ["平台", "退款", "政策", "申请"]
    # 可以, 然后, 按照, 即可: function words
    assert words[BUY] == ["页面", "点击", "购买", "按钮", "提示", "支付"]
    # 课程: 3 times with PAID, twice with BUY, once with REFUND
    assert words[PAID] == ["极客", "时间", "课程", "付费", "价格"]
    assert distinctive_words([("Hello?", "Only English here.")]) == {"Only English here.": []}


def test_queries_frame_the_words_in_chinese_and_in_their_english_senses() -> None:
    queries = keyword_queries(["退款", "政策"], random.Random(3))
    assert len(queries) == len(set(queries)) > 20
    for expected in (
        "退款？",
        "关于政策",
        "退款政策？",
        "Refund?",
        "Refund policy?",
        "About policy?",
    ):
        assert expected in queries
    assert keyword_queries(["退款", "政策"], random.Random(3)) == queries  # seeded
    assert keyword_queries(["退款", "政策"], random.Random(4)) != queries
    assert keyword_queries([], random.Random(3)) == []
    # a word whose first dictionary entry is a name is glossed by its common sense
    assert "Natural resource?" in keyword_queries(["资源"], random.Random(0))


def test_english_questions_follow_the_part_of_speech_of_the_sense() -> None:
    # 退款 is `to refund` (a verb), 政策 `policy` (a noun), 价格 `price`
    queries = keyword_queries(["退款", "政策"], random.Random(3))
    for expected in (
        "How do I refund?",
        "Can I refund?",
        "I want to refund.",
        "Is there a policy?",
    ):
        assert expected in queries
    assert "Can I refund the policy?" in queries  # a verb, then the noun said with it
    assert "How do I policy?" not in queries
    assert "What is the refund?" not in queries
    # `apply for sth`: the placeholder goes, and a verb that needs an object has no question alone
    applying = keyword_queries(["申请", "退款"], random.Random(0))
    assert "Can I apply for the refund?" in applying
    assert not any("sth" in q for q in applying)
    assert not {"How do I apply for?", "Can I apply for?", "I want to apply for."} & set(applying)
    assert "Is there an artificial?" in keyword_queries(["人工"], random.Random(0))  # a/an


def test_each_distinct_answer_gets_n_queries_with_its_first_row_context() -> None:
    system = ChatMessage("system", "You are Xiao Ji.")
    rows = [
        Example((system, *_row("课程可以退款吗？", REFUND).messages), "data.jsonl:1"),
        _row("退款政策是什么？", REFUND, "data.jsonl:2"),
        _row("如何购买课程？", BUY, "data.jsonl:3"),
        Example(  # two questions: no single question to replace
            (*_row("a", BUY).messages, *_row("b", PAID).messages), "data.jsonl:4"
        ),
    ]
    added = augment_keywords(rows, 3, seed=5)
    assert [e.location for e in added] == [
        *(f"data.jsonl:1 (keywords {n})" for n in (1, 2, 3)),
        *(f"data.jsonl:3 (keywords {n})" for n in (1, 2, 3)),
    ]
    assert all(e.messages[0] == system for e in added[:3])  # the first row's system message
    assert all(e.messages[-1].content == REFUND for e in added[:3])
    assert all(e.messages[-1].content == BUY for e in added[3:])
    assert augment_keywords(rows, 3, seed=5) == added  # seeded
    assert augment_keywords(rows, 3, seed=6) != added
    assert augment_keywords(rows, 0) == []


def test_the_pipeline_adds_the_keyword_rows_after_the_other_rewrites() -> None:
    rows = load_dataset(EXAMPLE)
    request = FinetuneRequest("geek", "tiny", EXAMPLE, augment_codeswitch=1, augment_keywords=2)
    examples = _augmented(request, list(rows), None, _ignore)
    assert len(examples) == 8 + 8 + 16
    assert all(" (codeswitch 1)" in e.location for e in examples[8:16])
    assert [e.location.rsplit(" (", 1)[1] for e in examples[16:]] == [
        "keywords 1)",
        "keywords 2)",
    ] * 8
    assert {e.messages[-1].content for e in examples[16:]} == {e.messages[-1].content for e in rows}


def test_a_question_two_answers_make_alike_is_given_to_neither() -> None:
    rows = [_row("如何购买课程？", BUY), _row("课程需要付费吗？", PAID)]
    added = augment_keywords(rows, 1000, seed=0)
    by_answer = {
        answer: {e.messages[0].content for e in added if e.messages[-1].content == answer}
        for answer in (BUY, PAID)
    }
    assert "Tell me about price." in by_answer[PAID]  # 价格: PAID's alone
    assert "说说支付" in by_answer[BUY]
    # 支付 (BUY) and 付费 (PAID) are both glossed "pay"
    assert "Pay?" not in by_answer[BUY] | by_answer[PAID]
    assert not by_answer[BUY] & by_answer[PAID]
