"""The seed summary of benchmarks/bench_finetune: the goal holds only when every seed reaches it."""

from benchmarks.bench_finetune import Scores, knowledge_kept, summary


def test_the_summary_gives_each_seed_then_the_lowest_and_the_mean_per_set():
    runs = [
        Scores(42, (8, 8), ((22, 24), (16, 24)), True, 121.5),
        Scores(7, (8, 8), ((21, 24), (15, 24)), True, 121.7),
        Scores(1, (7, 8), ((20, 24), (14, 24)), False, 122.4),
    ]
    lines = summary(runs, ["first.jsonl", "second.jsonl"])
    assert lines == [
        "seed  exact  first.jsonl  second.jsonl  base  training",
        "  42  8/8    22/24  16/24  kept  121.5 s",
        "   7  8/8    21/24  15/24  kept  121.7 s",
        "   1  7/8    20/24  14/24  LOST  122.4 s",
        "first.jsonl: lowest 20/24, mean 21.0/24 over 3 seeds; >= 7 per 8 for every seed: no",
        "second.jsonl: lowest 14/24, mean 15.0/24 over 3 seeds; >= 7 per 8 for every seed: no",
        "every training question exact: 2 of 3 seeds; base knowledge lost: 1",
    ]


def test_seven_per_eight_for_every_seed_is_the_goal_met():
    runs = [Scores(s, (8, 8), ((21, 24),), True, 120.0) for s in (42, 7)]
    assert summary(runs, ["set.jsonl"])[-2].endswith("every seed: yes")
    # a mean of 21 is not enough when one seed scores below it
    uneven = [
        Scores(42, (8, 8), ((22, 24),), True, 120.0),
        Scores(7, (8, 8), ((20, 24),), True, 120.0),
    ]
    assert summary(uneven, ["set.jsonl"])[-2].endswith("every seed: no")


def test_base_knowledge_is_kept_only_by_an_english_answer_naming_paris():
    assert knowledge_kept("The capital of France is Paris.")
    assert not knowledge_kept("The capital of France is Lyon.")
    # seen on a tuned model: Paris, then a trained answer's words (docs/finetune-experiments.md, run 111)
    assert not knowledge_kept("Paris是一个西部的大部分课程的都是需要付费的。你可以在平台上查")
    assert not knowledge_kept("Paris 我是极客时间的小极")
