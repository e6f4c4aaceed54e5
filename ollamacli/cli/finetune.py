"""`finetune`: train a new model from a base model and a dataset, with a live progress bar."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ollamacli.cli.app import app
from ollamacli.cli.output import human_bytes
from ollamacli.progress import ProgressEvent

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from ollamacli.finetune.pipeline import FinetuneResult
    from ollamacli.finetune.trainer import TrainingStep
    from ollamacli.service.chat import ChatService


class Method(str, Enum):
    """What training changes."""

    lora = "lora"
    full = "full"


class Schedule(str, Enum):
    """How the learning rate changes over the steps."""

    constant = "constant"
    linear = "linear"
    cosine = "cosine"


class Quantize(str, Enum):
    """How `--method full` stores the merged weights (K-quants by llama.cpp, from F16)."""

    f32 = "f32"
    f16 = "f16"
    q8_0 = "q8_0"
    q4_K_M = "q4_K_M"
    q4_K_S = "q4_K_S"


@app.command()
def finetune(
    model: str = typer.Argument(..., help="Name of the new model."),
    base: str = typer.Option(..., "--from", help="Model to start from, e.g. smollm2:135m."),
    data: Path = typer.Option(..., "--data", "-d", help="Dataset: JSONL or a JSON array of rows."),
    method: Method = typer.Option(
        Method.lora, "--method", help="lora: train an adapter; full: train all weights."
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", min=1, help="Passes over the data [default: enough for 16 steps]."
    ),
    max_steps: int | None = typer.Option(
        None, "--max-steps", min=1, help="Stop after this many steps (overrides --epochs)."
    ),
    learning_rate: float | None = typer.Option(
        None, "--learning-rate", "--lr", help="AdamW learning rate [default: 2e-3 lora, 5e-5 full]."
    ),
    lora_rank: int = typer.Option(16, "--lora-rank", min=1, help="LoRA rank r."),
    lora_alpha: int = typer.Option(32, "--lora-alpha", help="LoRA alpha (scale = alpha / rank)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Examples per step."),
    seed: int = typer.Option(42, "--seed", help="Random seed (adapter init, data order)."),
    max_seq_length: int = typer.Option(
        1024, "--max-seq-length", min=8, help="Tokens per example; longer rows are cut."
    ),
    quantize: Quantize = typer.Option(
        Quantize.f16, "--quantize", "-q", help="Weights of a --method full model."
    ),
    adapter_out: Path | None = typer.Option(
        None, "--adapter-out", help="Also write the GGUF adapter (merged model if full) here."
    ),
    eval_data: Path | None = typer.Option(
        None,
        "--eval",
        help="Rows never trained on (same format as --data): eval loss while training, then "
        "exact-answer scores through llama.cpp [default: a held-out tenth of 20+ rows].",
    ),
    augment: int = typer.Option(
        0,
        "--augment",
        min=0,
        help="Add N rewrites of each question (politeness, punctuation, word-order templates).",
    ),
    augment_deletions: int = typer.Option(
        0,
        "--augment-deletions",
        min=0,
        help="Add N copies of each question with one character (Chinese) or word left out.",
    ),
    augment_codeswitch: int = typer.Option(
        0,
        "--augment-codeswitch",
        min=0,
        help="Add N copies of each Chinese question with words in English (CC-CEDICT glosses).",
    ),
    augment_keywords: int = typer.Option(
        0,
        "--augment-keywords",
        min=0,
        help="Add N short questions per answer made of the words only that answer uses "
        "(Chinese, and English glosses).",
    ),
    augment_with: str | None = typer.Option(
        None, "--augment-with", help="Ask this model for the --augment rewrites instead."
    ),
    keep_base: int = typer.Option(
        0,
        "--keep-base",
        min=0,
        max=12,
        help="Also train on N general questions with the base model's own answers, so the new "
        "model keeps answering other questions as the base does.",
    ),
    system: str | None = typer.Option(
        None, "--system", help="System message trained with and set as the new model's SYSTEM."
    ),
    lora_dropout: float = typer.Option(0.0, "--lora-dropout", help="Dropout on the LoRA input."),
    lora_layers: int = typer.Option(
        0,
        "--lora-layers",
        min=0,
        help="Adapt only the last N transformer layers (0: all); the backward pass then stops "
        "at the lowest adapted one.",
    ),
    weight_decay: float = typer.Option(0.0, "--weight-decay", help="AdamW weight decay."),
    neftune: float = typer.Option(
        0.0, "--neftune", help="NEFTune noise alpha on the input embeddings (0: off; try 5)."
    ),
    lr_schedule: Schedule = typer.Option(
        Schedule.constant, "--lr-schedule", help="Learning rate over the steps."
    ),
    label_smoothing: float = typer.Option(
        0.0, "--label-smoothing", help="Label smoothing of the answers' loss, in [0, 1)."
    ),
    prompt_loss: float = typer.Option(
        0.0,
        "--prompt-loss",
        help="Also learn to predict the prompt (question, system message), its loss weighted "
        "by this (0: answers only).",
    ),
    early_stop: int = typer.Option(
        0,
        "--early-stop",
        min=0,
        help="Stop after N epochs without a better validation loss (one --augment rewrite of "
        "each question is held out for it) and keep the best epoch (0: off).",
    ),
    contrast: float = typer.Option(
        0.0,
        "--contrast",
        min=0.0,
        help="Weight of a prototype loss that draws the questions of one answer together and "
        "apart from the other answers' (where the answer starts; 0: off).",
    ),
    stratify: bool = typer.Option(
        False,
        "--stratify",
        help="Spread each answer's rows evenly over every epoch instead of a plain shuffle, so "
        "the last steps see every answer.",
    ),
    ema: float = typer.Option(
        0.0,
        "--ema",
        help="Save a moving average of the weights over the steps, with this decay in [0, 1) "
        "(e.g. 0.9; 0: the last step's weights).",
    ),
) -> None:
    """Fine-tune a model on questions and answers (needs: pip install 'ollamacli[finetune]')."""
    from ollamacli.cli.wiring import services
    from ollamacli.finetune.augment import base_rehearsal, model_paraphraser
    from ollamacli.finetune.pipeline import FinetuneRequest
    from ollamacli.finetune.pipeline import finetune as run_finetune
    from ollamacli.finetune.trainer import (
        TrainingConfig,
        accelerate_single_cpu_process,
        is_main_process,
    )

    training = TrainingConfig(
        method=method.value,
        epochs=epochs,
        max_steps=max_steps,
        learning_rate=learning_rate,
        lora_rank=lora_rank,
        lora_alpha=lora_alpha,
        batch_size=batch_size,
        seed=seed,
        max_seq_length=max_seq_length,
        lora_dropout=lora_dropout,
        lora_layers=lora_layers,
        weight_decay=weight_decay,
        neftune_alpha=neftune,
        lr_schedule=lr_schedule.value,
        label_smoothing=label_smoothing,
        prompt_loss=prompt_loss,
        early_stop=early_stop,
        ema=ema,
        stratify=stratify,
        contrast=contrast,
    )
    request = FinetuneRequest(
        model,
        base,
        data,
        training,
        file_type=quantize.value,
        adapter_out=adapter_out,
        eval_data=eval_data,
        augment=augment,
        augment_deletions=augment_deletions,
        augment_codeswitch=augment_codeswitch,
        augment_keywords=augment_keywords,
        keep_base=keep_base,
        system=system,
    )
    main = is_main_process()
    if accelerate_single_cpu_process():
        sys.stderr.write(
            "note: `accelerate launch --cpu` started one process (more need mpirun); for N "
            "processes on this machine use `accelerate launch --multi_gpu --num_processes N`, "
            "which trains on the CPU (gloo) when there is no GPU\n"
        )
    wired = services()
    try:
        paraphraser = (
            model_paraphraser(wired.chat, augment_with, seed=seed)
            if augment and augment_with
            else None
        )
        with _display(quiet=not main) as display:
            result = run_finetune(
                request,
                wired.models,
                progress=display.event,
                on_step=display.step,
                paraphraser=paraphraser,
                rehearsal=base_rehearsal(wired.chat, base),
            )
        if not result.main:
            return  # the main process reports and writes the model
        typer.echo(
            f"created '{model}' from '{base}': {len(result.losses)} steps in "
            f"{result.train_seconds:.0f}s, final loss {result.final_loss:.4f}"
        )
        if result.evaluation:
            _print_scores(wired.chat, model, result, eval_data)
    except KeyboardInterrupt:
        sys.stderr.write("\nfine-tuning interrupted: nothing was saved")
        raise
    finally:
        wired.scheduler.close()


def _print_scores(
    chat: ChatService, model: str, result: FinetuneResult, eval_data: Path | None
) -> None:
    """Exact answers through llama.cpp: training questions, then the never-trained rows."""
    from ollamacli.finetune.evaluate import score

    trained = score(chat, model, result.trained[:50])
    typer.echo(f"exact answers: {trained.exact}/{trained.total} training questions")
    unseen = score(chat, model, result.evaluation)
    source = f"paraphrases ({eval_data.name})" if eval_data else "held-out rows"
    typer.echo(f"{source}: {unseen.exact}/{unseen.total} exact ({unseen.per_8:.1f} per 8)")


class _Display:
    """Stage lines and the training bar (step, loss, time left); plain lines off a terminal."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._current: TaskID | None = None
        self._bars: dict[str, TaskID] = {}
        self._seen: set[str] = set()
        self._eval_loss: float | None = None
        self._validation_loss: float | None = None

    def event(self, event: ProgressEvent) -> None:
        info = (
            f"{human_bytes(event.completed or 0)}/{human_bytes(event.total)}" if event.total else ""
        )
        self._show(event.digest or event.status, event.status, event.total, event.completed, info)

    def step(self, step: TrainingStep) -> None:
        if step.eval_loss is not None:
            self._eval_loss = step.eval_loss
        info = f"step {step.step}/{step.total}  loss {step.loss:.4f}"
        if step.validation_loss is not None:
            self._validation_loss = step.validation_loss
        if self._eval_loss is not None:
            info += f"  eval loss {self._eval_loss:.4f}"
        if self._validation_loss is not None:
            info += f"  val loss {self._validation_loss:.4f}"
        if self._progress is None:  # rich's own column shows the time left on a terminal
            info += f"  {step.remaining:.0f}s left"
        self._show("training", "training", step.total, step.step, info)

    def _show(self, key: str, text: str, total: int | None, done: int | None, info: str) -> None:
        if self._progress is None:
            line = f"{text}  {info}" if total else text
            if (not total or done == total or key == "training") and line not in self._seen:
                self._seen.add(line)
                sys.stderr.write(line + "\n")
            return
        task = self._bars.get(key)
        if task is None:
            self.finish()
            task = self._progress.add_task(text, total=total, info=info)
            self._bars[key], self._current = task, task
        self._progress.update(task, total=total, completed=done or 0, info=info)

    def finish(self) -> None:
        """Mark the running stage as done."""
        if self._progress is not None and self._current is not None:
            task = self._progress.tasks[self._current]
            self._progress.update(self._current, total=task.total or 1, completed=task.total or 1)


class _Quiet(_Display):
    """The display of a launched group's other processes: shows nothing."""

    def event(self, event: ProgressEvent) -> None:
        pass

    def step(self, step: TrainingStep) -> None:
        pass


@contextmanager
def _display(*, quiet: bool = False) -> Iterator[_Display]:
    if quiet:
        yield _Quiet(None)
        return
    if not sys.stderr.isatty():
        yield _Display(None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Column

    progress = Progress(
        TextColumn("{task.description}", table_column=Column(max_width=40, no_wrap=True)),
        BarColumn(bar_width=30),
        TextColumn("{task.fields[info]}", table_column=Column(min_width=28, no_wrap=True)),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    display = _Display(progress)
    with progress:
        yield display
        display.finish()
