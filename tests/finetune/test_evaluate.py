# ruff: noqa: RUF001, RUF003  (Chinese questions end with a full-width question mark)
"""Scoring, held-out splits, question rewrites and training knobs, without training (fake engine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamacli.engine.base import ChatMessage
from ollamacli.errors import InvalidRequestError
from ollamacli.finetune.augment import (
    GENERAL_QUESTIONS,
    augment,
    base_rehearsal,
    clean_rewrite,
    deletion_paraphraser,
    deletion_rewrites,
    is_usable_rewrite,
    model_paraphraser,
    rule_paraphraser,
    rule_rewrites,
    whole_sentences,
)
from ollamacli.finetune.dataset import Example, load_dataset
from ollamacli.finetune.evaluate import score, split_held_out
from ollamacli.finetune.pipeline import (
    FinetuneRequest,
    _augmented,
    validation_split,
    with_system,
)
from ollamacli.finetune.trainer import TrainingConfig, TrainingStep, _schedule
from ollamacli.progress import ignore_progress
from ollamacli.service import build_services
from ollamacli.service.models import CreateSpec
from tests.factories import make_tiny_gguf

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "finetune" / "geektime.jsonl"
PARAPHRASES = REPO / "examples" / "finetune" / "geektime-paraphrases.jsonl"


def _row(question: str, answer: str, where: str = "x") -> Example:
    return Example((ChatMessage("user", question), ChatMessage("assistant", answer)), where)


@pytest.fixture
def chat(settings, fake_factory, tmp_path):
    services = build_services(settings, fake_factory)
    services.models.create("m", CreateSpec(from_file=make_tiny_gguf(tmp_path / "m.gguf")))
    yield services.chat
    services.scheduler.close()


def test_paraphrase_set_has_three_unseen_phrasings_per_training_row():
    trained = load_dataset(EXAMPLE)
    paraphrases = load_dataset(PARAPHRASES)
    assert len(paraphrases) == 3 * len(trained)
    questions = {e.messages[0].content for e in trained}
    assert not questions & {e.messages[0].content for e in paraphrases}  # never trained on
    answers = [e.messages[-1].content for e in trained]
    for index, example in enumerate(paraphrases):
        assert example.messages[-1].content == answers[index // 3]
    english = [e for e in paraphrases if e.messages[0].content.isascii()]
    assert len(english) == len(trained)  # one English phrasing per row, two Chinese


def test_score_counts_exact_answers_through_the_engine(chat, fake_factory):
    rows = [_row("Q1?", "A one."), _row("Q2?", "A two.")]
    fake_factory.enqueue("A one.")
    fake_factory.enqueue("A three.")
    result = score(chat, "m", rows)
    assert (result.exact, result.total, result.per_8) == (1, 2, 4.0)
    assert [a.answer for a in result.answers] == ["A one.", "A three."]
    assert fake_factory.loaded[0].samplings[0].temperature == 0  # greedy


def test_small_datasets_train_on_every_row_and_large_ones_hold_a_tenth_out():
    small = [_row(f"Q{i}", "A") for i in range(19)]
    assert split_held_out(small, seed=1) == (small, [])
    large = [_row(f"Q{i}", "A") for i in range(40)]
    trained, held = split_held_out(large, seed=1)
    assert (len(trained), len(held)) == (36, 4)
    assert set(map(id, trained)).isdisjoint(map(id, held))
    assert split_held_out(large, seed=1) == (trained, held)  # the seed decides


@pytest.mark.parametrize(
    ("rewrite", "usable"),
    [
        ("请问怎么买课程？", True),
        ("如何购买课程？", False),  # the same question
        ("how do I buy a course?", False),  # another script than the Chinese original
        ("", False),
        ("请" * 60, False),  # a run-on, not a question
    ],
)
def test_rewrites_must_be_new_wording_in_the_same_script(rewrite, usable):
    assert is_usable_rewrite("如何购买课程？", rewrite, kept=["课程怎么买？"]) is usable


def test_rewrite_labels_and_quotes_are_removed():
    assert clean_rewrite('Rewritten question: "How can I buy a course?"') == (
        "How can I buy a course?"
    )


def test_augment_adds_rewritten_copies_with_the_same_answer():
    rows = [_row("Who are you?", "Xiao Ji.", "d:1")]
    multi = Example(
        (*rows[0].messages, ChatMessage("user", "And?"), ChatMessage("assistant", "B")), "d:2"
    )

    def paraphrase(question: str, count: int) -> list[str]:
        return [f"{question} ({n})" for n in range(count)]

    out = augment([*rows, multi], paraphrase, 2)
    assert [e.messages[0].content for e in out[2:]] == ["Who are you? (0)", "Who are you? (1)"]
    assert {e.messages[-1].content for e in out[2:]} == {"Xiao Ji."}
    assert out[2].location == "d:1 (rewrite 1)"
    assert len(out) == 4  # the multi-turn row is kept, not rewritten


def test_rule_rewrites_frame_a_chinese_question_without_changing_its_words():
    rewrites = rule_rewrites("如何购买课程？")
    assert "如何购买课程？" not in rewrites
    assert len(rewrites) == len(set(rewrites)) > 20
    assert {"请问如何购买课程？", "如何购买课程", "能告诉我如何购买课程吗？"} <= set(rewrites)
    assert {"怎么购买课程？", "请问如何买课程？", "我该怎么购买课程？"} <= set(rewrites)
    # a yes/no question is not framed into "...吗呢？" or "我想知道...吗。"
    yes_no = rule_rewrites("课程可以退款吗？")
    assert not [r for r in yes_no if "吗呢" in r or (r.startswith("我想知道") and "吗" in r)]
    assert "课程能不能退款？" in yes_no
    assert rule_rewrites("如何购买课程？") == rewrites  # deterministic


def test_rule_rewrites_of_an_english_question_use_english_frames():
    rewrites = rule_rewrites("How do I buy a course?")
    assert {"Could you tell me: How do I buy a course?", "Hi, how do I buy a course?"} <= set(
        rewrites
    )
    assert "How can I buy a course?" in rewrites
    assert not [r for r in rewrites if any("\u3400" <= c <= "\u9fff" for c in r)]


def test_rule_paraphraser_picks_the_same_rewrites_for_a_seed():
    first = rule_paraphraser(seed=1)("你是谁？", 4)
    assert first == rule_paraphraser(seed=1)("你是谁？", 4)
    assert len(first) == 4
    assert set(first) <= set(rule_rewrites("你是谁？"))
    assert rule_paraphraser(seed=2)("你是谁？", 4) != first
    everything = rule_paraphraser(seed=1)("你是谁？", 1000)
    assert sorted(everything) == sorted(rule_rewrites("你是谁？"))


def test_deletion_rewrites_leave_out_one_character_or_word_of_long_enough_questions():
    assert deletion_rewrites("课程需要付费吗？") == [
        "程需要付费吗？",
        "课需要付费吗？",
        "课程要付费吗？",
        "课程需付费吗？",
        "课程需要费吗？",
        "课程需要付吗？",
        "课程需要付费？",
    ]
    assert deletion_rewrites("How do I buy a course?")[:2] == [
        "do I buy a course?",
        "How I buy a course?",
    ]
    assert deletion_rewrites("你是谁？") == []  # too short to lose a character
    assert deletion_rewrites("Who are you?") == []
    picked = deletion_paraphraser(seed=1)("课程需要付费吗？", 3)
    assert picked == deletion_paraphraser(seed=1)("课程需要付费吗？", 3)
    assert len(picked) == 3
    assert set(picked) <= set(deletion_rewrites("课程需要付费吗？"))


def test_augment_deletions_are_added_after_the_rewrites_and_never_held_out():
    rows = [_row("如何购买课程？", "点击购买。", "d:1"), _row("你是谁？", "小极。", "d:2")]
    request = FinetuneRequest(
        "n", "b", EXAMPLE, TrainingConfig(early_stop=2), augment=2, augment_deletions=2
    )
    out = _augmented(request, rows, None, ignore_progress)
    assert [e.location for e in out] == [
        "d:1",
        "d:2",
        "d:1 (rewrite 1)",
        "d:1 (rewrite 2)",
        "d:2 (rewrite 1)",
        "d:2 (rewrite 2)",
        "d:1 (deletion 1)",
        "d:1 (deletion 2)",
    ]  # "你是谁" is too short to lose a character
    assert {e.messages[0].content for e in out[-2:]} <= set(deletion_rewrites("如何购买课程？"))
    assert {e.messages[-1].content for e in out[-2:]} == {"点击购买。"}
    trained, validation = validation_split(out, request)
    assert len(trained) == len(out) - 2
    assert [e.location for e in validation] == ["d:1 (rewrite 2)", "d:2 (rewrite 2)"]
    only = FinetuneRequest("n", "b", EXAMPLE, augment_deletions=1)
    assert len(_augmented(only, rows, None, ignore_progress)) == 3


def test_a_system_message_is_added_to_rows_without_one():
    plain = _row("Who are you?", "Xiao Ji.")
    own = Example((ChatMessage("system", "Be brief."), *plain.messages), "y")
    added, kept = with_system([plain, own], "You are Xiao Ji.")
    assert added.messages == (ChatMessage("system", "You are Xiao Ji."), *plain.messages)
    assert kept == own


def test_model_paraphraser_keeps_usable_rewrites_and_retries(chat, fake_factory):
    for text in ("Who are you?", "Question: Who is this?", "What is your name?"):
        fake_factory.enqueue(text)
    rewrites = model_paraphraser(chat, "m")("Who are you?", 2)
    assert rewrites == ["Who is this?", "What is your name?"]
    seeds = [s.seed for s in fake_factory.loaded[0].samplings]
    assert seeds == [0, 1, 2]  # a new seed per attempt


def test_learning_rate_schedules_and_time_left():
    assert [_schedule("constant", 4)(n) for n in range(4)] == [1.0] * 4
    assert [_schedule("linear", 4)(n) for n in range(4)] == [1.0, 0.75, 0.5, 0.25]
    cosine = _schedule("cosine", 4)
    assert cosine(0) == 1.0
    assert cosine(2) == pytest.approx(0.5)
    assert TrainingStep(4, 16, 1, 0.5, elapsed=20.0).remaining == 60.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lora_dropout": 1.0}, "--lora-dropout must be in"),
        ({"neftune_alpha": -1.0}, "--neftune must not be negative"),
        ({"weight_decay": -0.1}, "--weight-decay must not be negative"),
    ],
)
def test_bad_training_knobs_are_refused(changes, message):
    with pytest.raises(InvalidRequestError, match=message):
        TrainingConfig(**changes)


def test_full_model_types_beyond_q8_0_are_quantized_by_llama_cpp():
    request = FinetuneRequest("n", "b", EXAMPLE, file_type="q4_K_M")
    assert (request.written_type, request.quantize) == ("f16", "q4_K_M")
    assert FinetuneRequest("n", "b", EXAMPLE, file_type="q8_0").quantize is None
    with pytest.raises(InvalidRequestError, match="unsupported quantization type Q5_K_M"):
        FinetuneRequest("n", "b", EXAMPLE, file_type="q5_K_M")


def test_early_stop_holds_out_the_last_rewrite_of_each_question():
    rows = [_row("你是谁？", "小极。", "d:1"), _row("如何购买课程？", "点击购买。", "d:2")]
    augmented = augment(rows, rule_paraphraser(seed=3), 3)
    request = FinetuneRequest("n", "b", EXAMPLE, TrainingConfig(early_stop=2), augment=3)
    trained, validation = validation_split(augmented, request)
    assert [e.location for e in validation] == ["d:1 (rewrite 3)", "d:2 (rewrite 3)"]
    assert len(trained) == 2 + 2 * 2
    assert not {e.messages[0].content for e in validation} & {
        e.messages[0].content for e in trained
    }
    plain = FinetuneRequest("n", "b", EXAMPLE, augment=3)
    assert validation_split(augmented, plain) == (augmented, [])
    with pytest.raises(InvalidRequestError, match="--early-stop needs --augment 2 or more"):
        FinetuneRequest("n", "b", EXAMPLE, TrainingConfig(early_stop=1), augment=1)


def test_keep_base_rows_are_the_base_models_own_answers(chat, fake_factory):
    fake_factory.enqueue("Jupiter is the largest planet.")
    fake_factory.enqueue(*["Seven days. ", "A week has "] + ["more "] * 60)  # cut by num_predict
    fake_factory.enqueue(*["no sentence end "] * 60)
    rows = base_rehearsal(chat, "m", limit=48)(3)
    assert [r.messages[0].content for r in rows] == list(GENERAL_QUESTIONS[:2])
    assert [r.messages[1].content for r in rows] == [
        "Jupiter is the largest planet.",
        "Seven days.",
    ]
    assert [s.temperature for s in fake_factory.loaded[0].samplings] == [0.0] * 3
    assert rows[0].location == "base model answer 1"


def test_an_unfinished_answer_keeps_its_whole_sentences():
    assert whole_sentences("One. Two! Three", finished=False) == "One. Two!"
    assert whole_sentences("是的。然后", finished=False) == "是的。"
    assert whole_sentences("Three", finished=True) == "Three"
    assert whole_sentences("Three", finished=False) == ""
