"""How far the base model's own features carry the paraphrases, with no training (issue 15).

    .venv/bin/python -m benchmarks.feature_reference [--base smollm2:135m] [--data FILE]
        [--eval FILE ...] [--system TEXT] [--layers 0,24,30]

Each training question and each eval paraphrase is rendered as fine-tuning renders it for BASE
(its template, the --system message), run through BASE in transformers, and represented by the
hidden state at the prompt's last token (where the answer's first token is chosen) after each
layer. A paraphrase is counted when its nearest training question, by cosine similarity after
the training questions' mean is taken away, has its answer. The printed counts per layer are a
reference for `bench_finetune`'s paraphrase scores: how well a nearest-neighbour rule on the
base model's own features, fitted to nothing, answers the same sets.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ollamacli.config import Settings
from ollamacli.engine.base import ChatMessage
from ollamacli.finetune.dataset import Example, load_dataset
from ollamacli.finetune.pipeline import prompt_format
from ollamacli.finetune.render import IGNORE_INDEX, tokenize_example
from ollamacli.finetune.trainer import load_base
from ollamacli.service import build_services

if TYPE_CHECKING:
    import torch

REPO = Path(__file__).resolve().parent.parent


def nearest_hits(
    train: torch.Tensor, answers: Sequence[int], asked: torch.Tensor, expected: Sequence[int]
) -> int:
    """How many rows of `asked` have, as their nearest row of `train` (cosine similarity once
    the mean of `train` is subtracted from both), a row whose answer is the expected one."""
    import torch

    centre = train.mean(0)
    known = torch.nn.functional.normalize(train - centre, dim=-1)
    queries = torch.nn.functional.normalize(asked - centre, dim=-1)
    nearest = (queries @ known.T).argmax(dim=-1).tolist()
    return sum(1 for row, want in zip(nearest, expected, strict=True) if answers[row] == want)


def _question_and_answer(example: Example) -> tuple[str, str]:
    return example.messages[-2].content, example.messages[-1].content


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="smollm2:135m")
    parser.add_argument("--data", type=Path, default=REPO / "examples/finetune/geektime.jsonl")
    parser.add_argument(
        "--eval",
        type=Path,
        nargs="+",
        default=[
            REPO / "examples/finetune/geektime-paraphrases.jsonl",
            REPO / "examples/finetune/geektime-paraphrases-2.jsonl",
        ],
    )
    parser.add_argument("--system", default="你是极客时间（GeekTime）的虚拟客服助手小极。")  # noqa: RUF001
    parser.add_argument("--layers", default=None, help="comma-separated layers (default: all)")
    args = parser.parse_args()
    import torch

    with tempfile.TemporaryDirectory(prefix="ollamacli-feature-reference-") as tmp:
        root = Path(tmp)
        services = build_services(Settings(data_dir=root, models_dir=root / "models"))
        try:
            base = services.models.ensure(args.base)
            loaded = load_base(base.model_path)
            fmt = prompt_format(base, loaded)
        finally:
            services.scheduler.close()

    def features(question: str) -> torch.Tensor:
        system = (ChatMessage("system", args.system),) if args.system else ()
        example = Example(
            (*system, ChatMessage("user", question), ChatMessage("assistant", ".")), ""
        )
        tokens = tokenize_example(example, fmt, loaded.encode, max_length=1024)
        prompt = next(i for i, label in enumerate(tokens.labels) if label != IGNORE_INDEX)
        with torch.no_grad():
            out = loaded.model(torch.tensor([tokens.input_ids[:prompt]]), output_hidden_states=True)
        return torch.stack([h[0, -1].float() for h in out.hidden_states])

    trained = [_question_and_answer(e) for e in load_dataset(args.data)]
    names = sorted({a for _, a in trained})
    train = torch.stack([features(q) for q, _ in trained])
    labels = [names.index(a) for _, a in trained]
    sets = []
    for path in args.eval:
        rows = [_question_and_answer(e) for e in load_dataset(path)]
        asked = torch.stack([features(q) for q, _ in rows])
        sets.append((path.name, asked, [names.index(a) if a in names else -1 for _, a in rows]))
    layers = (
        [int(n) for n in args.layers.split(",")] if args.layers else list(range(train.shape[1]))
    )
    print(f"{len(trained)} training questions; hidden state at the prompt's last token after N")
    print("layers (0: the input embeddings)")
    print("    N  " + "  ".join(name for name, _, _ in sets))
    for layer in layers:
        counts = [
            f"{nearest_hits(train[:, layer], labels, asked[:, layer], want)}/{len(want)}"
            for _, asked, want in sets
        ]
        print(f"{layer:5d}  " + "  ".join(counts))


if __name__ == "__main__":
    main()
