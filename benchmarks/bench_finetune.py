"""Fine-tuning benchmark (issues 7 and 15): LoRA training on the seed's eight rows, then answers.

    .venv/bin/python -m benchmarks.bench_finetune [--base smollm2:135m] [--data FILE]
        [--eval FILE] [--method lora|full] [--max-steps N] [--epochs N] [--learning-rate LR]
        [--lora-rank R] [--lora-alpha A] [--lora-dropout P] [--weight-decay W] [--neftune ALPHA]
        [--lr-schedule constant|linear|cosine] [--augment N]

Runs in a private, temporary store. Prints the time to load the base into transformers, the
training time (goal: at most 180 s on two cores), the losses (and eval losses), the adapter's
size in bytes (goal: at most 10 MB), and through llama.cpp with the exported adapter at
temperature 0: how many training questions get exactly the trained answer (goal: 8 of 8), how
many never-trained paraphrases (examples/finetune/geektime-paraphrases.jsonl: three per row,
Chinese and English) get it (goal: at least 7 per 8), and whether an unrelated question ("What
is the capital of France?") still draws the base model's knowledge (Paris). The load average is
printed too: other work on a shared machine makes training several times slower.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from ollamacli.config import Settings
from ollamacli.engine.base import ChatMessage
from ollamacli.finetune.dataset import load_dataset
from ollamacli.finetune.evaluate import Answer, ask, score
from ollamacli.finetune.export import convert_to_temporary
from ollamacli.finetune.pipeline import FinetuneRequest, finetune
from ollamacli.finetune.trainer import TrainingConfig, TrainingStep
from ollamacli.service import build_services
from ollamacli.service.chat import ChatService

REPO = Path(__file__).resolve().parents[1]
GOAL_SECONDS = 180.0
UNRELATED = "What is the capital of France?"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _show_step(step: TrainingStep) -> None:
    held = f"  eval loss {step.eval_loss:.4f}" if step.eval_loss is not None else ""
    if step.validation_loss is not None:
        held += f"  val loss {step.validation_loss:.4f}"
    print(f"  step {step.step:>3}/{step.total}  loss {step.loss:.4f}{held}  {step.elapsed:6.1f} s")


def _show_answer(answer: Answer) -> None:
    print(f"  {'ok ' if answer.is_exact else 'MISS'} {answer.question} -> {answer.answer}")


def run(
    base: str,
    data: Path,
    eval_data: Path,
    training: TrainingConfig,
    augment: int,
    eval_loss: bool = False,
    system: str | None = None,
    extra_eval: Path | None = None,
) -> None:
    """Train, then score the training questions, the paraphrases and base knowledge."""
    with tempfile.TemporaryDirectory(prefix="ollamacli-bench-finetune-") as tmp:
        root = Path(tmp)
        settings = Settings(data_dir=root, models_dir=root / "models", num_thread=2)
        services = build_services(settings, adapter_converter=convert_to_temporary)
        try:
            services.models.ensure(base)
            print(f"load average before: {os.getloadavg()[0]:.2f}")
            cpu, started = _cpu(), time.monotonic()
            request = FinetuneRequest(
                "bench-tuned",
                base,
                data,
                training,
                eval_data=eval_data if eval_loss else None,
                augment=augment,
                system=system,
                adapter_out=root / "adapter.gguf",
            )
            result = finetune(request, services.models, on_step=_show_step)
            wall = time.monotonic() - started
            print(f"rows trained on:        {result.examples} ({augment} rewrites per question)")
            print(f"load into transformers: {result.load_seconds:6.1f} s")
            print(
                f"training:               {result.train_seconds:6.1f} s "
                f"({len(result.losses)} steps, goal <= {GOAL_SECONDS:.0f} s)"
            )
            print(f"whole fine-tune:        {wall:6.1f} s wall, {_cpu() - cpu:6.1f} s CPU")
            print(f"load average after:  {os.getloadavg()[0]:.2f}")
            if result.exported is not None and training.method == "lora":
                print(
                    f"adapter:                {result.exported.stat().st_size:,} bytes (goal <= 10 MB)"
                )
            exact = score(services.chat, "bench-tuned", result.trained, _show_answer)
            print(f"exact answers: {exact.exact}/{exact.total} (goal 8 of 8)")
            for path in (eval_data, extra_eval):
                if path is not None:
                    _paraphrases(services.chat, path)
            unrelated = ask(services.chat, "bench-tuned", [ChatMessage("user", UNRELATED)], 48)
            print(f"base knowledge: {'kept' if 'Paris' in unrelated else 'LOST'}: {unrelated!r}")
        finally:
            services.scheduler.close()


def _paraphrases(chat: ChatService, path: Path) -> None:
    unseen = score(chat, "bench-tuned", load_dataset(path), _show_answer)
    english = [a for a in unseen.answers if a.question.isascii()]
    chinese = [a for a in unseen.answers if not a.question.isascii()]
    print(
        f"paraphrases ({path.name}): {unseen.exact}/{unseen.total} = {unseen.per_8:.1f} per 8 "
        f"(goal >= 7 per 8); Chinese {sum(a.is_exact for a in chinese)}/{len(chinese)}, "
        f"English {sum(a.is_exact for a in english)}/{len(english)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="smollm2:135m")
    parser.add_argument("--data", type=Path, default=REPO / "examples/finetune/geektime.jsonl")
    parser.add_argument(
        "--eval", type=Path, default=REPO / "examples/finetune/geektime-paraphrases.jsonl"
    )
    parser.add_argument("--method", choices=("lora", "full"), default="lora")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--lora-dropout", type=float, default=0.0)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--neftune", type=float, default=0.0)
    parser.add_argument(
        "--lr-schedule", choices=("constant", "linear", "cosine"), default="constant"
    )
    parser.add_argument("--augment", type=int, default=0)
    parser.add_argument("--early-stop", type=int, default=0)
    parser.add_argument("--system", default=None, help="trained with, and the model's SYSTEM")
    parser.add_argument("--extra-eval", type=Path, default=None, help="a second paraphrase set")
    parser.add_argument(
        "--eval-loss",
        action="store_true",
        help="also measure the paraphrases' loss while training (as `finetune --eval`; slower)",
    )
    args = parser.parse_args()
    training = TrainingConfig(
        method=args.method,
        max_steps=args.max_steps,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        weight_decay=args.weight_decay,
        neftune_alpha=args.neftune,
        lr_schedule=args.lr_schedule,
        early_stop=args.early_stop,
    )
    run(
        args.base,
        args.data,
        args.eval,
        training,
        args.augment,
        args.eval_loss,
        args.system,
        args.extra_eval,
    )


if __name__ == "__main__":
    main()
