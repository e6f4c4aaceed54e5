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
from ollamacli.cli.wiring import model_service
from ollamacli.progress import ProgressEvent

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from ollamacli.finetune.trainer import TrainingStep


class Method(str, Enum):
    """What training changes."""

    lora = "lora"
    full = "full"


class Quantize(str, Enum):
    """How `--method full` stores the merged weights."""

    f16 = "f16"
    q8_0 = "q8_0"


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
) -> None:
    """Fine-tune a model on questions and answers (needs: pip install 'ollamacli[finetune]')."""
    from ollamacli.finetune.pipeline import FinetuneRequest
    from ollamacli.finetune.pipeline import finetune as run_finetune
    from ollamacli.finetune.trainer import TrainingConfig

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
    )
    request = FinetuneRequest(model, base, data, training, quantize.value, adapter_out)
    try:
        with _display() as display:
            result = run_finetune(
                request, model_service(), progress=display.event, on_step=display.step
            )
    except KeyboardInterrupt:
        sys.stderr.write("\nfine-tuning interrupted: nothing was saved")
        raise
    typer.echo(
        f"created '{model}' from '{base}': {len(result.losses)} steps in "
        f"{result.train_seconds:.0f}s, final loss {result.final_loss:.4f}"
    )


class _Display:
    """Stage lines and the training bar (step, loss, time left); plain lines off a terminal."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._current: TaskID | None = None
        self._bars: dict[str, TaskID] = {}
        self._seen: set[str] = set()

    def event(self, event: ProgressEvent) -> None:
        info = (
            f"{human_bytes(event.completed or 0)}/{human_bytes(event.total)}" if event.total else ""
        )
        self._show(event.digest or event.status, event.status, event.total, event.completed, info)

    def step(self, step: TrainingStep) -> None:
        info = f"step {step.step}/{step.total}  loss {step.loss:.4f}"
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


@contextmanager
def _display() -> Iterator[_Display]:
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
