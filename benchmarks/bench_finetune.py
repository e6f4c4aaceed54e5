"""Fine-tuning benchmark (issues 7 and 15): LoRA training on the seed's eight rows, then answers.

    .venv/bin/python -m benchmarks.bench_finetune [--base smollm2:135m] [--data FILE]
        [--eval FILE] [--extra-eval FILE] [--method lora|full] [--max-steps N] [--epochs N]
        [--learning-rate LR] [--lora-rank R] [--lora-alpha A] [--lora-layers N] [--batch-size B] [--seed S | --seeds S,S,...] [--lora-dropout P]
        [--weight-decay W] [--neftune ALPHA] [--label-smoothing E] [--prompt-loss W] [--lr-schedule constant|linear|cosine]
        [--augment N] [--augment-deletions N] [--augment-codeswitch N] [--augment-keywords N] [--early-stop N] [--ema D] [--stratify] [--contrast W] [--keep-base N] [--system TEXT] [--processes N]

Runs in a private, temporary store. Prints the time to load the base into transformers, the
training time (goal: at most 180 s on two cores), the losses (and eval losses), the adapter's
size in bytes (goal: at most 10 MB), and through llama.cpp with the exported adapter at
temperature 0: how many training questions get exactly the trained answer (goal: 8 of 8), how
many never-trained paraphrases get it, in all and per language (goal: at least 7 per 8;
examples/finetune/geektime-paraphrases.jsonl, three per row, two Chinese and one English, and
with --extra-eval a second set such as geektime-paraphrases-2.jsonl), and whether an unrelated
question ("What is the capital of France?") still draws the base model's knowledge (Paris, in
English: an answer that runs on into a trained Chinese answer counts as lost).
`--processes N` trains under `accelerate launch --multi_gpu --num_processes N` (gloo on the
CPU), as a user would, and scores the model it created the same way. The load average and the
CPU seconds are printed too: other work on a shared machine makes training several times slower.
`--seeds 42,7,1,2,3,4,5` trains once per seed and ends with each seed's figures and, per
paraphrase set, the lowest and the mean score and whether every seed reached 7 per 8.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ollamacli.config import Settings
from ollamacli.engine.base import ChatMessage
from ollamacli.finetune.augment import base_rehearsal
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
_CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")


@dataclasses.dataclass(frozen=True)
class Scores:
    """One training run's figures, for the summary over several seeds."""

    seed: int
    exact: tuple[int, int]  # training questions answered exactly, of how many
    sets: tuple[tuple[int, int], ...]  # (exact, total) per paraphrase set, in the order given
    kept: bool
    train_seconds: float


def knowledge_kept(answer: str) -> bool:
    """Whether the answer to UNRELATED is still the base model's: it names Paris, in English.

    A tuned model can say "Paris" and then run on into a trained Chinese answer
    ("Paris是一个西部的大部分课程..."): that is knowledge lost to the fine-tune, not kept.
    """
    return "Paris" in answer and not _CJK.search(answer)


def _cpu() -> float:
    """CPU seconds of this process and of the finished launched ones."""
    mine = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


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
    processes: int = 1,
    keep_base: int = 0,
    augment_deletions: int = 0,
    augment_codeswitch: int = 0,
    augment_keywords: int = 0,
) -> Scores:
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
                augment_deletions=augment_deletions,
                augment_codeswitch=augment_codeswitch,
                augment_keywords=augment_keywords,
                keep_base=keep_base,
                system=system,
                adapter_out=root / "adapter.gguf",
            )
            if processes > 1:
                train_seconds = _launch(request, root, processes)
            else:
                result = finetune(
                    request,
                    services.models,
                    on_step=_show_step,
                    rehearsal=base_rehearsal(services.chat, base),
                )
                print(
                    f"rows trained on:        {result.examples} ({augment} rewrites per question)"
                )
                print(f"load into transformers: {result.load_seconds:6.1f} s")
                train_seconds = result.train_seconds
                print(f"training steps:         {len(result.losses)}")
            wall = time.monotonic() - started
            print(f"training:               {train_seconds:6.1f} s (goal <= {GOAL_SECONDS:.0f} s)")
            print(f"whole fine-tune:        {wall:6.1f} s wall, {_cpu() - cpu:6.1f} s CPU")
            print(f"load average after:  {os.getloadavg()[0]:.2f}")
            adapter = root / "adapter.gguf"
            if training.method == "lora":
                print(f"adapter:                {adapter.stat().st_size:,} bytes (goal <= 10 MB)")
            trained = load_dataset(data)
            exact = score(services.chat, "bench-tuned", trained, _show_answer)
            print(f"exact answers: {exact.exact}/{exact.total} (goal 8 of 8)")
            sets = tuple(
                _paraphrases(services.chat, path)
                for path in (eval_data, extra_eval)
                if path is not None
            )
            unrelated = ask(services.chat, "bench-tuned", [ChatMessage("user", UNRELATED)], 48)
            kept = knowledge_kept(unrelated)
            print(f"base knowledge: {'kept' if kept else 'LOST'}: {unrelated!r}")
            return Scores(training.seed, (exact.exact, exact.total), sets, kept, train_seconds)
        finally:
            services.scheduler.close()


def _launch(request: FinetuneRequest, root: Path, processes: int) -> float:
    """`accelerate launch --multi_gpu --num_processes N -m ollamacli finetune ...` into the
    benchmark's store (on the CPU with gloo when torch sees no GPU); the training seconds."""
    training = request.training
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
        "--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "-m", "ollamacli", "finetune", request.name,
        "--from", request.base, "--data", str(request.data), "--method", training.method,
        "--lora-rank", str(training.lora_rank), "--lora-alpha", str(training.lora_alpha),
        "--learning-rate", str(training.lr), "--batch-size", str(training.batch_size),
        "--seed", str(training.seed), "--lr-schedule", training.lr_schedule,
        "--lora-dropout", str(training.lora_dropout), "--weight-decay", str(training.weight_decay),
        "--lora-layers", str(training.lora_layers),
        "--neftune", str(training.neftune_alpha), "--augment", str(request.augment),
        "--early-stop", str(training.early_stop), "--adapter-out", str(request.adapter_out),
        "--keep-base", str(request.keep_base),
        "--label-smoothing", str(training.label_smoothing),
        "--prompt-loss", str(training.prompt_loss),
        "--augment-deletions", str(request.augment_deletions),
        "--augment-codeswitch", str(request.augment_codeswitch),
        "--augment-keywords", str(request.augment_keywords), "--ema", str(training.ema),
        "--contrast", str(training.contrast),
    ]  # fmt: skip
    if training.stratify:
        command.append("--stratify")
    for option, value in (("--epochs", training.epochs), ("--max-steps", training.max_steps)):
        if value is not None:
            command += [option, str(value)]
    if request.eval_data is not None:
        command += ["--eval", str(request.eval_data)]
    if request.system is not None:
        command += ["--system", request.system]
    env = {**os.environ, "OLLAMA_MODELS": str(root / "models"), "OLLAMACLI_HOME": str(root)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    print(f"accelerate launch: {processes} processes")
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    for line in done.stderr.splitlines():
        if line.startswith("training  step"):
            print(f"  {line.removeprefix('training  ')}")
    if done.returncode != 0:
        raise SystemExit(f"accelerate launch failed:\n{done.stderr[-3000:]}")
    print(done.stdout.strip())
    found = re.search(r"(\d+) steps in (\d+)s", done.stdout)
    return float(found[2]) if found else float("nan")


def _paraphrases(chat: ChatService, path: Path) -> tuple[int, int]:
    unseen = score(chat, "bench-tuned", load_dataset(path), _show_answer)
    english = [a for a in unseen.answers if a.question.isascii()]
    chinese = [a for a in unseen.answers if not a.question.isascii()]
    print(
        f"paraphrases ({path.name}): {unseen.exact}/{unseen.total} = {unseen.per_8:.1f} per 8 "
        f"(goal >= 7 per 8); Chinese {sum(a.is_exact for a in chinese)}/{len(chinese)}, "
        f"English {sum(a.is_exact for a in english)}/{len(english)}"
    )
    return unseen.exact, unseen.total


def summary(runs: list[Scores], names: list[str]) -> list[str]:
    """Lines that sum up runs of one setting over several seeds: each seed's figures, then per
    paraphrase set the lowest and the mean score and whether every seed reached 7 per 8 (the
    goal holds for a setting only if it holds whichever seed a user happens to get)."""
    lines = ["seed  exact  " + "  ".join(names) + "  base  training"]
    for run in runs:
        scored = "  ".join(f"{got}/{total}" for got, total in run.sets)
        kept = "kept" if run.kept else "LOST"
        right, asked = run.exact
        lines.append(
            f"{run.seed:>4}  {right}/{asked}    {scored}  {kept}  {run.train_seconds:.1f} s"
        )
    for index, name in enumerate(names):
        got = [run.sets[index][0] for run in runs]
        total = runs[0].sets[index][1]
        every = all(g * 8 >= 7 * total for g in got)
        lines.append(
            f"{name}: lowest {min(got)}/{total}, mean {sum(got) / len(got):.1f}/{total} over "
            f"{len(got)} seeds; >= 7 per 8 for every seed: {'yes' if every else 'no'}"
        )
    lost = sum(not run.kept for run in runs)
    every_question = sum(got == asked for got, asked in (run.exact for run in runs))
    lines.append(
        f"every training question exact: {every_question} of {len(runs)} seeds; "
        f"base knowledge lost: {lost}"
    )
    return lines


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
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42, help="adapter init, data order, rewrites")
    parser.add_argument(
        "--seeds",
        default=None,
        help="comma-separated seeds (e.g. 42,7,1,2,3,4,5): one run each, then a summary",
    )
    parser.add_argument("--lora-dropout", type=float, default=0.0)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--neftune", type=float, default=0.0)
    parser.add_argument(
        "--lr-schedule", choices=("constant", "linear", "cosine"), default="constant"
    )
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--prompt-loss", type=float, default=0.0)
    parser.add_argument("--augment", type=int, default=0)
    parser.add_argument("--augment-deletions", type=int, default=0)
    parser.add_argument("--augment-codeswitch", type=int, default=0)
    parser.add_argument("--augment-keywords", type=int, default=0)
    parser.add_argument("--early-stop", type=int, default=0)
    parser.add_argument("--ema", type=float, default=0.0)
    parser.add_argument("--stratify", action="store_true", help="spread each answer's rows")
    parser.add_argument("--contrast", type=float, default=0.0, help="prototype loss weight")
    parser.add_argument("--lora-layers", type=int, default=0)
    parser.add_argument("--keep-base", type=int, default=0, help="general rows answered by BASE")
    parser.add_argument("--system", default=None, help="trained with, and the model's SYSTEM")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="train under `accelerate launch --multi_gpu --num_processes N` (CPU: gloo)",
    )
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
        batch_size=args.batch_size,
        seed=args.seed,
        lora_dropout=args.lora_dropout,
        weight_decay=args.weight_decay,
        neftune_alpha=args.neftune,
        lr_schedule=args.lr_schedule,
        label_smoothing=args.label_smoothing,
        prompt_loss=args.prompt_loss,
        early_stop=args.early_stop,
        ema=args.ema,
        lora_layers=args.lora_layers,
        stratify=args.stratify,
        contrast=args.contrast,
    )
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    runs = []
    for seed in seeds:
        if len(seeds) > 1:
            print(f"=== seed {seed}")
        runs.append(
            run(
                args.base,
                args.data,
                args.eval,
                dataclasses.replace(training, seed=seed),
                args.augment,
                args.eval_loss,
                args.system,
                args.extra_eval,
                args.processes,
                args.keep_base,
                args.augment_deletions,
                args.augment_codeswitch,
                args.augment_keywords,
            )
        )
    if len(runs) > 1:
        names = [p.name for p in (args.eval, args.extra_eval) if p is not None]
        print("\n".join(summary(runs, names)))


if __name__ == "__main__":
    main()
