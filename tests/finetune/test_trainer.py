"""Training plan, batches and the optimiser loop (on the tiny model, in memory)."""

from __future__ import annotations

import copy
import math
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from ollamacli.errors import InvalidRequestError, OptionalDependencyError
from ollamacli.finetune.render import IGNORE_INDEX, TokenizedExample
from ollamacli.finetune.trainer import (
    LoadedBase,
    Prototypes,
    TrainingConfig,
    TrainingStep,
    batch_loss,
    collate,
    epoch_order,
    evaluate_loss,
    prepare,
    require_stack,
    shared_prefix,
    train,
)

pytestmark = pytest.mark.finetune


@pytest.mark.parametrize(
    ("examples", "config", "plan"),
    [
        (8, TrainingConfig(), (16, 16)),  # the seed: one batch, 16 epochs
        (100, TrainingConfig(), (2, 26)),  # 13 batches an epoch: 2 epochs reach 16 steps
        (100, TrainingConfig(epochs=3), (3, 39)),
        (100, TrainingConfig(max_steps=5), (1, 5)),
        (8, TrainingConfig(epochs=2, max_steps=30), (30, 30)),  # max steps wins
        (8, TrainingConfig(batch_size=3), (6, 18)),
    ],
    ids=["seed", "large", "epochs", "max-steps", "max-steps-wins", "small-batches"],
)
def test_plan(examples, config, plan):
    assert config.plan(examples) == plan


def test_learning_rate_defaults_per_method():
    assert TrainingConfig().lr == 2e-3
    assert TrainingConfig(method="full").lr == 5e-5
    assert TrainingConfig(learning_rate=1e-4).lr == 1e-4


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"lora_rank": 0}, "--lora-rank must be positive, got 0"),
        ({"learning_rate": -1.0}, "--learning-rate must be positive, got -1.0"),
        ({"max_seq_length": 0}, "--max-seq-length must be positive, got 0"),
        ({"method": "qlora"}, "unknown method 'qlora': use lora or full"),
        ({"label_smoothing": 1.0}, r"--label-smoothing must be in \[0, 1\), got 1.0"),
        ({"prompt_loss": -0.5}, "--prompt-loss must not be negative, got -0.5"),
        ({"lora_layers": -1}, "--lora-layers must not be negative, got -1"),
        ({"ema": 1.0}, r"--ema must be in \[0, 1\), got 1.0"),
        ({"ema": 0.9, "early_stop": 2}, "--ema and --early-stop each choose the weights kept.*"),
        ({"contrast": -1.0}, "--contrast must not be negative, got -1.0"),
    ],
    ids=[
        "rank",
        "lr",
        "length",
        "method",
        "smoothing",
        "prompt-loss",
        "layers",
        "ema",
        "ema-early-stop",
        "contrast",
    ],
)
def test_bad_settings_are_refused(fields, message):
    with pytest.raises(InvalidRequestError, match=f"^{message}$"):
        TrainingConfig(**fields)


def test_require_stack_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(OptionalDependencyError) as caught:
        require_stack()
    assert str(caught.value) == (
        "fine-tuning needs extra packages: pip install 'ollamacli[finetune]'"
    )
    assert caught.value.extra == "finetune"


def test_collate_pads_right_and_masks_padding(stack):
    batch = collate(
        [
            TokenizedExample((5, 6, 7), (IGNORE_INDEX, 6, 7)),
            TokenizedExample((8,), (8,)),
        ],
        pad_id=2,
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 2, 2]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX, 6, 7], [8, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_a_stratified_epoch_spreads_every_answer_over_the_epoch(stack):
    import torch

    def row(question: int, answer: int) -> TokenizedExample:
        return TokenizedExample((question, answer, 0), (IGNORE_INDEX, answer, 0))

    # answer 1: 12 rows, answer 2: 6 rows, 6 rows with an answer of their own (one group)
    rows = [row(q, 1) for q in range(12)] + [row(q, 2) for q in range(6)]
    rows += [row(q, 10 + q) for q in range(6)]
    group = [1] * 12 + [2] * 6 + [3] * 6
    order = epoch_order(rows, torch.Generator().manual_seed(4), stratify=True)
    assert sorted(order) == list(range(24))  # every row once
    for start in range(0, 24, 8):  # any batch of 8 holds 4, 2 and 2 of the groups
        counts = [group[i] for i in order[start : start + 8]]
        assert sorted(counts) == [1, 1, 1, 1, 2, 2, 3, 3]
    assert epoch_order(rows, torch.Generator().manual_seed(4), stratify=True) == order
    assert epoch_order(rows, torch.Generator().manual_seed(5), stratify=True) != order
    plain = epoch_order(rows, torch.Generator().manual_seed(4))
    assert plain == torch.randperm(24, generator=torch.Generator().manual_seed(4)).tolist()


def _examples(count: int) -> list[TokenizedExample]:
    rows = []
    for i in range(count):
        ids = tuple(100 + i * 7 + j for j in range(12))
        rows.append(TokenizedExample(ids, (IGNORE_INDEX,) * 6 + ids[6:]))
    return rows


@pytest.mark.parametrize("method", ["lora", "full"])
def test_train_reports_every_step_and_lowers_the_loss(tiny_hf, method):
    tokenizer = SimpleNamespace(pad_token_id=2, eos_token_id=2)
    base = LoadedBase(copy.deepcopy(tiny_hf), tokenizer, "cpu")
    config = TrainingConfig(method=method, max_steps=6, batch_size=2, learning_rate=1e-2)
    prepare(base, config)
    trainable = sum(p.numel() for p in base.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in base.model.parameters())
    assert (trainable < total / 10) if method == "lora" else (trainable == total)
    steps: list[TrainingStep] = []
    losses = train(base, _examples(4), config, steps.append)
    assert [(s.step, s.total, s.epoch) for s in steps] == [
        (1, 6, 1),
        (2, 6, 1),
        (3, 6, 2),
        (4, 6, 2),
        (5, 6, 3),
        (6, 6, 3),
    ]
    assert losses == [s.loss for s in steps]
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]


def test_lora_layers_adapts_only_the_last_layers_and_still_learns(tiny_hf):
    from tests.finetune.tiny import BLOCKS

    base = LoadedBase(
        copy.deepcopy(tiny_hf), SimpleNamespace(pad_token_id=2, eos_token_id=2), "cpu"
    )
    config = TrainingConfig(max_steps=4, batch_size=2, learning_rate=1e-2, lora_layers=1)
    prepare(base, config)
    adapted = {
        int(name.split(".layers.")[1].split(".")[0])
        for name, p in base.model.named_parameters()
        if p.requires_grad
    }
    assert adapted == {BLOCKS - 1}
    losses = train(base, _examples(4), config)
    assert losses[-1] < losses[0]


def test_an_interrupt_at_a_step_stops_training(tiny_hf):
    base = LoadedBase(
        copy.deepcopy(tiny_hf), SimpleNamespace(pad_token_id=2, eos_token_id=2), "cpu"
    )
    config = TrainingConfig(max_steps=5)
    prepare(base, config)
    seen: list[int] = []

    def interrupt(step: TrainingStep) -> None:
        seen.append(step.step)
        if step.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(base, _examples(8), config, interrupt)
    assert seen == [1, 2]


def test_early_stop_ends_when_the_validation_loss_rises_and_keeps_the_best_epoch(tiny_hf):
    base = LoadedBase(
        copy.deepcopy(tiny_hf), SimpleNamespace(pad_token_id=2, eos_token_id=2), "cpu"
    )
    config = TrainingConfig(max_steps=12, batch_size=2, learning_rate=1e-2, early_stop=1)
    prepare(base, config)
    rows = _examples(4)
    # The same prompts with other answers: the better the trained answers, the worse these.
    contrary = [
        TokenizedExample(r.input_ids[:6] + tuple(t + 3000 for t in r.input_ids[6:]), ())
        for r in rows
    ]
    contrary = [
        TokenizedExample(c.input_ids, (IGNORE_INDEX,) * 6 + c.input_ids[6:]) for c in contrary
    ]
    steps: list[TrainingStep] = []
    train(base, rows, config, steps.append, validation=contrary)
    checked = [s.validation_loss for s in steps if s.validation_loss is not None]
    assert [s.step for s in steps if s.validation_loss is not None] == [2, 4, 6, 8, 10, 12][
        : len(checked)
    ]  # after each epoch of two steps
    assert len(steps) < 12  # stopped early
    assert checked[-1] > min(checked)
    kept = evaluate_loss(base, contrary, 2)
    assert kept == pytest.approx(min(checked), rel=1e-5)  # the best epoch's weights


def test_ema_keeps_the_moving_average_of_every_step_weights(tiny_hf):
    import torch

    base = LoadedBase(
        copy.deepcopy(tiny_hf), SimpleNamespace(pad_token_id=2, eos_token_id=2), "cpu"
    )
    config = TrainingConfig(max_steps=6, batch_size=2, learning_rate=1e-2, ema=0.6)
    prepare(base, config)
    trained = [(n, p) for n, p in base.model.named_parameters() if p.requires_grad]
    seen: list[dict[str, torch.Tensor]] = []
    train(
        base,
        _examples(4),
        config,
        lambda _: seen.append({n: p.detach().clone() for n, p in trained}),
    )
    # step t's weights weigh in with max(1 - decay, 1 / t): a plain mean until the decay takes
    # over (step 2 keeps 1/2 of the average; step 3 on keep 0.6, as 0.6 < 2/3)
    expected = dict(seen[0])
    for step, weights in enumerate(seen[1:], 2):
        keep = min(0.6, (step - 1) / step)
        expected = {n: keep * expected[n] + (1 - keep) * w for n, w in weights.items()}
    last = seen[-1]
    for name, parameter in trained:
        assert torch.allclose(parameter, expected[name], atol=1e-6)
    assert any(not torch.allclose(p, last[n]) for n, p in trained)  # not the last step's


def test_without_early_stop_no_validation_loss_is_measured(tiny_hf):
    base = LoadedBase(
        copy.deepcopy(tiny_hf), SimpleNamespace(pad_token_id=2, eos_token_id=2), "cpu"
    )
    config = TrainingConfig(max_steps=2, batch_size=2)
    prepare(base, config)
    steps: list[TrainingStep] = []
    train(base, _examples(4), config, steps.append, validation=_examples(2))
    assert [s.validation_loss for s in steps] == [None, None]


def _full_logits_loss(
    model: Any, batch: dict[str, Any], smoothing: float = 0.0, labels: str = "labels"
) -> Any:
    """The reference: cross-entropy from every position's logits, shifted by one."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1),
        batch[labels][:, 1:].flatten(),
        ignore_index=IGNORE_INDEX,
        label_smoothing=smoothing,
    )


def test_batch_loss_computes_logits_only_where_answers_are_but_matches_the_full_loss(tiny_hf):
    rows = [
        TokenizedExample((5, 6, 7, 8, 9), (IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 8, 9)),
        TokenizedExample((11, 12, 13), (IGNORE_INDEX, 12, 13)),
    ]
    import torch

    batch = collate(rows, pad_id=2)
    model = tiny_hf
    with torch.no_grad():
        expected = float(model(**batch).loss)  # transformers' own loss from full logits
        assert float(batch_loss(model, batch)) == pytest.approx(expected, rel=1e-5)
        smoothed = float(batch_loss(model, batch, label_smoothing=0.3))
        reference = float(_full_logits_loss(model, batch, 0.3))
    assert smoothed == pytest.approx(reference, rel=1e-5)
    assert abs(smoothed - expected) > 1e-3  # smoothing changes the loss


def test_prompt_loss_adds_the_weighted_loss_of_the_prompt_tokens(tiny_hf):
    rows = [
        TokenizedExample(
            (5, 6, 7, 8, 9),
            (IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 8, 9),
            (IGNORE_INDEX, 6, 7, IGNORE_INDEX, IGNORE_INDEX),
        ),
        TokenizedExample((11, 12, 13), (IGNORE_INDEX, 12, 13), (IGNORE_INDEX,) * 3),
    ]
    batch = collate(rows, pad_id=2)
    assert batch["prompt_labels"].tolist() == [
        [IGNORE_INDEX, 6, 7, IGNORE_INDEX, IGNORE_INDEX],
        [IGNORE_INDEX] * 5,
    ]
    import torch

    model = tiny_hf
    with torch.no_grad():
        answers = float(_full_logits_loss(model, batch))
        prompt = float(_full_logits_loss(model, batch, labels="prompt_labels"))
        assert float(batch_loss(model, batch)) == pytest.approx(answers, rel=1e-5)
        both = float(batch_loss(model, batch, prompt_weight=0.5))
    assert both == pytest.approx(answers + 0.5 * prompt, rel=1e-5)


def _prefixed_rows(prefix: int) -> list[TokenizedExample]:
    """Three rows of different lengths after the same `prefix` tokens (answers after it)."""
    common = tuple(range(100, 100 + prefix))
    rows = []
    for n, tail in enumerate([(7, 8, 9, 10), (11, 12, 13, 14, 15, 16), (17, 18, 19)]):
        ids = (*common, 40 + n, *tail)
        labels = (IGNORE_INDEX,) * (prefix + 1 + 1) + tuple(tail[1:])
        rows.append(TokenizedExample(ids, labels))
    return rows


def test_shared_prefix_stops_at_the_first_difference_or_the_first_trained_token():
    import torch

    batch = collate(_prefixed_rows(20), pad_id=2)
    keep = torch.zeros_like(batch["labels"], dtype=torch.bool)
    keep[:, :-1] = batch["labels"][:, 1:] != IGNORE_INDEX
    assert shared_prefix(batch["input_ids"], keep) == 20  # the rows differ at position 20
    early = keep.clone()
    early[1, 17] = True  # a loss on a prompt token predicted from position 17
    assert shared_prefix(batch["input_ids"], early) == 17
    short = collate(_prefixed_rows(10), pad_id=2)
    assert shared_prefix(short["input_ids"], keep[:, : short["input_ids"].shape[1]]) == 0
    one = collate(_prefixed_rows(20)[:1], pad_id=2)
    assert shared_prefix(one["input_ids"], keep[:1, : one["input_ids"].shape[1]]) == 0


def test_sharing_the_prefix_gives_the_loss_and_gradient_of_separate_rows(peft_tiny):

    model, _ = peft_tiny  # a random non-zero LoRA on every projection
    batch = collate(_prefixed_rows(24), pad_id=2)
    results = []
    for share in (False, True):
        model.zero_grad()
        loss = batch_loss(model, batch, share_prefix=share)
        loss.backward()  # type: ignore[no-untyped-call]  # untyped in torch 2.13
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((float(loss.detach()), grads))
    model.zero_grad(set_to_none=True)  # the fixture is shared: leave no gradients on it
    (alone, separate), (shared, together) = results
    assert shared == pytest.approx(alone, rel=1e-5)
    pairs = zip(separate, together, strict=True)
    # float rounding only: each tensor within a millionth or so of its largest entry
    assert all(float((a - b).abs().max()) <= 1e-5 * float(a.abs().max()) for a, b in pairs)
    assert any(float(g.abs().max()) > 0 for g in together)


def test_sharing_the_prefix_keeps_the_prototype_loss(tiny_hf):
    import torch

    batch = collate(_prefixed_rows(24), pad_id=2)
    with torch.no_grad():
        both = [
            float(batch_loss(tiny_hf, batch, contrast=(0.5, Prototypes(), True), share_prefix=s))
            for s in (False, True)
        ]
    assert both[1] == pytest.approx(both[0], rel=1e-5)


def test_contrast_adds_the_prototype_loss_where_each_answer_starts(tiny_hf):
    import torch

    rows = [
        TokenizedExample((5, 6, 7, 8, 9), (IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 8, 9)),
        TokenizedExample((14, 15, 8, 9), (IGNORE_INDEX, IGNORE_INDEX, 8, 9)),
        TokenizedExample((11, 12, 13), (IGNORE_INDEX, 12, 13)),
    ]
    batch = collate(rows, pad_id=2)
    with torch.no_grad():
        answers = float(batch_loss(tiny_hf, batch))
        hidden = tiny_hf(**batch, output_hidden_states=True).hidden_states[-1]
        # the prompt's last token: positions 2, 1 and 0
        unit = torch.nn.functional.normalize(hidden[[0, 1, 2], [2, 1, 0]], dim=-1)
        first = torch.nn.functional.normalize(unit[:2].mean(dim=0), dim=0)
        second = torch.nn.functional.normalize(unit[2], dim=0)
        similarity = unit @ torch.stack([first, second]).T / Prototypes.TEMPERATURE
        expected = float(torch.nn.functional.cross_entropy(similarity, torch.tensor([0, 0, 1])))
        prototypes = Prototypes()
        both = float(batch_loss(tiny_hf, batch, contrast=(0.5, prototypes, True)))
        assert both == pytest.approx(answers + 0.5 * expected, rel=1e-5)
        # then each centroid moves a tenth of the way toward its rows' mean, and is rescaled
        moved = [
            torch.nn.functional.normalize(0.9 * c + 0.1 * m, dim=0)
            for c, m in ((first, unit[:2].mean(dim=0)), (second, unit[2]))
        ]
        similarity = unit @ torch.stack(moved).T / Prototypes.TEMPERATURE
        later = float(torch.nn.functional.cross_entropy(similarity, torch.tensor([0, 0, 1])))
        again = float(prototypes.loss(unit, [(8, 9), (8, 9), (12, 13)]))
    assert again == pytest.approx(later, rel=1e-5)


def test_training_with_contrast_draws_the_rows_of_one_answer_together(tiny_hf):
    import torch

    tokenizer = SimpleNamespace(pad_token_id=2, eos_token_id=2)
    rows = [
        TokenizedExample((20 + q, 30 + q, 40, 41), (IGNORE_INDEX, IGNORE_INDEX, 40, 41))
        for q in range(4)
    ] + [
        TokenizedExample((50 + q, 60 + q, 40, 42), (IGNORE_INDEX, IGNORE_INDEX, 40, 42))
        for q in range(4)
    ]

    def separation(model: Any) -> float:
        batch = collate(rows, pad_id=2)
        with torch.no_grad():
            hidden = model(**batch, output_hidden_states=True).hidden_states[-1]
        unit = torch.nn.functional.normalize(hidden[:, 1], dim=-1)
        cosine = unit @ unit.T
        same = torch.tensor([[(i < 4) == (j < 4) and i != j for j in range(8)] for i in range(8)])
        other = torch.tensor([[(i < 4) != (j < 4) for j in range(8)] for i in range(8)])
        return float(cosine[same].mean() - cosine[other].mean())

    results = {}
    for weight in (0.0, 1.0):
        base = LoadedBase(copy.deepcopy(tiny_hf), tokenizer, "cpu")
        config = TrainingConfig(max_steps=12, batch_size=4, learning_rate=1e-2, contrast=weight)
        prepare(base, config)
        losses = train(base, rows, config)
        assert all(math.isfinite(loss) for loss in losses)
        results[weight] = separation(base.model)
    assert results[1.0] > results[0.0]
