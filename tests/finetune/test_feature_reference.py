"""benchmarks/feature_reference: the nearest-neighbour count on features, with the mean removed."""

from __future__ import annotations

from benchmarks.feature_reference import nearest_hits


def test_a_paraphrase_counts_when_its_nearest_training_row_has_its_answer(stack: None) -> None:
    import torch

    # every row shares a large common part (the system message and template in real features);
    # only what is left after the training rows' mean is taken away tells them apart
    common = torch.tensor([100.0, 100.0, 0.0])
    train = torch.stack([common + torch.tensor([1.0, 0, 0]), common + torch.tensor([0, 1.0, 0])])
    answers = [0, 1]
    asked = torch.stack(
        [
            common + torch.tensor([0.9, 0.2, 0.0]),  # nearest row 0: answer 0
            common + torch.tensor([0.1, 0.8, 0.0]),  # nearest row 1: answer 1
            common + torch.tensor([0.2, 1.1, 0.0]),  # nearest row 1, but it expects answer 0
        ]
    )
    assert nearest_hits(train, answers, asked, [0, 1, 0]) == 2
    assert nearest_hits(train, answers, asked, [1, 0, 1]) == 1


def test_the_mean_of_the_training_rows_is_taken_away_before_comparing(stack: None) -> None:
    import torch

    train = torch.tensor([[10.0, 0.0, 1.0], [0.0, 10.0, 1.0], [0.0, 0.0, 11.0]])
    asked = torch.tensor([[0.0, 1.0, 2.0]])
    # plain cosine similarity would pick row 2; after the mean (3.3, 3.3, 4.3) is taken away,
    # the question points the way row 1 does
    assert int(torch.nn.functional.cosine_similarity(asked, train).argmax()) == 2
    assert nearest_hits(train, [0, 1, 2], asked, [1]) == 1
    assert nearest_hits(train, [0, 1, 2], asked, [2]) == 0
