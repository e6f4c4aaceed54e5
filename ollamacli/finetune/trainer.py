"""Training with transformers + peft: load a GGUF base, run the optimiser, report every step.

The stack (torch, transformers, peft) is the optional `finetune` extra and is imported inside
these functions only. The base GGUF is loaded dequantised to float32 with its own tokenizer
(transformers converts both from the GGUF). Training runs on the GPU when torch sees one.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ollamacli.config import prefer_passive_openmp
from ollamacli.errors import FinetuneError, InvalidRequestError, OptionalDependencyError
from ollamacli.finetune.render import IGNORE_INDEX, TokenizedExample

if TYPE_CHECKING:
    import torch

Method = Literal["lora", "full"]
Schedule = Literal["constant", "linear", "cosine"]
DEFAULT_STEPS = 16
"""Without --epochs or --max-steps: as many epochs as it takes to reach this many steps."""
DEFAULT_LEARNING_RATE: dict[Method, float] = {"lora": 2e-3, "full": 5e-5}
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    """Hyper-parameters; None means the documented default for the method."""

    method: Method = "lora"
    epochs: int | None = None
    max_steps: int | None = None
    learning_rate: float | None = None
    lora_rank: int = 16
    lora_alpha: int = 32
    batch_size: int = 8
    seed: int = 42
    max_seq_length: int = 1024
    lora_dropout: float = 0.0
    lora_layers: int = 0
    """Put adapters in the last N transformer layers only (0: all): the layers below keep the
    base model's features, and the backward pass stops at the lowest adapted layer."""
    weight_decay: float = 0.0
    neftune_alpha: float = 0.0
    """NEFTune (Jain et al. 2023): uniform noise of this scale on the input embeddings while
    training; 0 turns it off. The paper uses 5 to 15."""
    lr_schedule: Schedule = "constant"
    label_smoothing: float = 0.0
    """Cross-entropy label smoothing on the trained tokens (0: off)."""
    prompt_loss: float = 0.0
    """Weight of a loss on the prompt's tokens (system message, template, question) added to
    the answer's loss: the model also learns to predict the questions (0: answers only)."""
    ema: float = 0.0
    """Keep an exponential moving average of the trainable weights with this decay (e.g. 0.9)
    and save the average instead of the last step's weights; 0 turns it off."""
    stratify: bool = False
    """Order each epoch so that every stretch of it holds each answer's rows in proportion (rows
    with the same answer form a group; rows with an answer of their own share one), instead of
    a plain shuffle: the last steps then see every answer, not a random few."""
    contrast: float = 0.0
    """Weight of a prototype loss on each row's representation where its answer starts (the
    last layer's hidden state at the prompt's last token): rows with the same answer are drawn
    to their answer's running centroid and away from the other answers' (0: off)."""
    early_stop: int = 0
    """Stop when the validation loss (measured after every epoch) has not improved for this many
    epochs, and keep the weights of the best epoch; 0 turns it off."""

    def __post_init__(self) -> None:
        positive = {
            "--epochs": self.epochs,
            "--max-steps": self.max_steps,
            "--learning-rate": self.learning_rate,
            "--lora-rank": self.lora_rank,
            "--lora-alpha": self.lora_alpha,
            "--batch-size": self.batch_size,
            "--max-seq-length": self.max_seq_length,
        }
        for option, value in positive.items():
            if value is not None and value <= 0:
                raise InvalidRequestError(f"{option} must be positive, got {value}")
        if self.method not in DEFAULT_LEARNING_RATE:
            raise InvalidRequestError(f"unknown method {self.method!r}: use lora or full")
        for option, fraction in (
            ("--lora-dropout", self.lora_dropout),
            ("--label-smoothing", self.label_smoothing),
            ("--ema", self.ema),
        ):
            if not 0.0 <= fraction < 1.0:
                raise InvalidRequestError(f"{option} must be in [0, 1), got {fraction}")
        for option, number in (
            ("--weight-decay", self.weight_decay),
            ("--neftune", self.neftune_alpha),
            ("--prompt-loss", self.prompt_loss),
            ("--contrast", self.contrast),
            ("--early-stop", self.early_stop),
            ("--lora-layers", self.lora_layers),
        ):
            if number < 0:
                raise InvalidRequestError(f"{option} must not be negative, got {number}")
        if self.ema and self.early_stop:
            raise InvalidRequestError(
                "--ema and --early-stop each choose the weights kept: use one of them"
            )
        if self.lr_schedule not in ("constant", "linear", "cosine"):
            raise InvalidRequestError(f"unknown --lr-schedule {self.lr_schedule!r}")

    @property
    def lr(self) -> float:
        """The learning rate to use."""
        return self.learning_rate or DEFAULT_LEARNING_RATE[self.method]

    def plan(self, examples: int) -> tuple[int, int]:
        """(epochs, optimiser steps) for a dataset of this many examples."""
        per_epoch = math.ceil(examples / self.batch_size)
        epochs = self.epochs or max(1, math.ceil(DEFAULT_STEPS / per_epoch))
        steps = per_epoch * epochs
        if self.max_steps is not None:
            steps = self.max_steps
            epochs = math.ceil(steps / per_epoch)
        return epochs, steps


@dataclass(frozen=True, slots=True)
class TrainingStep:
    """Reported after every optimiser step."""

    step: int
    total: int
    epoch: int
    loss: float
    elapsed: float
    eval_loss: float | None = None  # on the held-out or --eval rows, every few steps
    validation_loss: float | None = None  # at the end of an epoch, with --early-stop

    @property
    def remaining(self) -> float:
        """Seconds left at the pace so far."""
        return self.elapsed / self.step * (self.total - self.step) if self.step else 0.0


StepSink = Callable[[TrainingStep], None]


def ignore_step(step: TrainingStep) -> None:
    """A step sink that drops every report."""


_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARIABLES = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


def launched_processes() -> int:
    """How many training processes `accelerate launch` (torchrun, or mpirun) started; 1 alone."""
    for variable in _SIZE_VARIABLES:
        with contextlib.suppress(ValueError):
            return max(1, int(os.environ.get(variable, "")))
    return 1


def is_main_process() -> bool:
    """True unless this is one of the other processes of a launched group (rank > 0): only the
    main process shows progress and writes the adapter or model."""
    ranks = (os.environ.get(variable, "") for variable in _RANK_VARIABLES)
    return next((rank for rank in ranks if rank), "0") == "0"


def accelerate_single_cpu_process() -> bool:
    """`accelerate launch --cpu` started this process alone (it needs mpirun for more on CPU)."""
    cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    return cpu and launched_processes() == 1


@dataclass(slots=True)
class LoadedBase:
    """The base model in transformers, its tokenizer, and where it runs."""

    model: Any  # transformers PreTrainedModel (or a peft wrapper once prepared)
    tokenizer: Any  # transformers PreTrainedTokenizerFast
    device: str
    accelerator: Any = None  # accelerate.Accelerator when launched as several processes

    @property
    def processes(self) -> int:
        """How many processes train together (each on its share of every batch)."""
        return int(self.accelerator.num_processes) if self.accelerator is not None else 1

    @property
    def rank(self) -> int:
        """This process's index in the group (0: the main process)."""
        return int(self.accelerator.process_index) if self.accelerator is not None else 0

    def encode(self, text: str) -> list[int]:
        """Token ids with control tokens parsed and no BOS added (the caller adds it)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])


def require_stack() -> None:
    """Raise `OptionalDependencyError` unless torch, transformers and peft import."""
    if "torch" not in sys.modules:
        prefer_passive_openmp()
    try:
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise OptionalDependencyError("fine-tuning", extra="finetune") from exc


def load_base(gguf_path: Path) -> LoadedBase:
    """Load a GGUF model file into transformers, dequantised to float32."""
    require_stack()
    import torch
    import transformers

    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # untyped in 5.x
    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        # The GGUF loader draws its own tqdm bar on stderr; the core never writes to the terminal.
        with contextlib.redirect_stderr(io.StringIO()):
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                folder, gguf_file=name, dtype=torch.float32
            )
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise FinetuneError(
            f"transformers cannot load this model for training: {exc}",
            hint="fine-tuning needs a GGUF architecture transformers supports (llama, qwen2, ...)",
        ) from exc
    accelerator = _accelerator()
    if accelerator is not None:
        device = str(accelerator.device)
    else:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    loaded: Any = model
    return LoadedBase(loaded.to(device), tokenizer, device, accelerator)


def _accelerator() -> Any:
    """An `accelerate.Accelerator` joining the launched process group (gloo on CPU, NCCL on
    GPUs), or None when this is the only process."""
    if launched_processes() < 2:
        return None
    import torch

    try:
        import accelerate
    except ImportError as exc:
        raise OptionalDependencyError("training on several processes", extra="finetune") from exc
    forced = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    return accelerate.Accelerator(cpu=forced or not torch.cuda.is_available())


def prepare(base: LoadedBase, config: TrainingConfig) -> None:
    """Wrap the model with LoRA adapters, or unfreeze everything for full training."""
    import torch

    torch.manual_seed(config.seed)
    if config.method == "full":
        for parameter in base.model.parameters():
            parameter.requires_grad_(True)
        return
    import peft

    present = {name.rsplit(".", 1)[-1] for name, _ in base.model.named_modules()}
    targets = [t for t in LORA_TARGETS if t in present]
    if not targets:
        raise FinetuneError("the model has none of the projections LoRA is applied to")
    layers = int(getattr(base.model.config, "num_hidden_layers", 0) or 0)
    last = (
        list(range(layers - config.lora_layers, layers))
        if 0 < config.lora_layers < layers
        else None  # every layer
    )
    lora = peft.LoraConfig(
        layers_to_transform=last,
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` (FutureWarning).
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        base.model = peft.get_peft_model(base.model, lora)


def train(
    base: LoadedBase,
    examples: Sequence[TokenizedExample],
    config: TrainingConfig,
    on_step: StepSink = ignore_step,
    held_out: Sequence[TokenizedExample] = (),
    validation: Sequence[TokenizedExample] = (),
) -> list[float]:
    """Run the optimiser; returns the loss of every step. KeyboardInterrupt propagates.

    With `held_out` rows, their loss is measured at each quarter of the steps (and after the
    last) and reported with the step. With `validation` rows and `config.early_stop`, their
    loss after each epoch decides when to stop, and the best epoch's weights are kept."""
    import torch

    epochs, total = config.plan(len(examples))
    generator = torch.Generator().manual_seed(config.seed)
    trainable = [p for p in base.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config.lr_schedule, total))
    pad = _pad_id(base.tokenizer)
    every = math.ceil(total / 4)  # a pass over the held-out rows costs about a step
    # Several processes: the model is wrapped for DistributedDataParallel, which averages the
    # gradients; every process draws the same order and takes its share of each batch.
    model = base.model if base.accelerator is None else base.accelerator.prepare_model(base.model)
    losses: list[float] = []
    stopper = _EarlyStop(base, config.early_stop, validation, config.batch_size)
    average = _Average(base, config.ema)
    gather = None if base.accelerator is None else _gather_objects
    prototypes = Prototypes(gather) if config.contrast else None
    started = time.monotonic()
    noise = torch.Generator().manual_seed(config.seed + 1 + base.rank)  # own stream per process
    with _neftune(base, config.neftune_alpha, noise):
        for epoch in range(epochs):
            if stopper.stopped:
                break
            order = epoch_order(examples, generator, stratify=config.stratify)
            for first in range(0, len(order), config.batch_size):
                if len(losses) == total:
                    break
                model.train()
                chunk = [examples[i] for i in order[first : first + config.batch_size]]
                losses.append(_step(base, model, chunk, pad, config, prototypes))
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                average.update()
                measured = len(losses) % every == 0 or len(losses) == total
                eval_loss = evaluate_loss(base, held_out, config.batch_size) if measured else None
                ends_epoch = first + config.batch_size >= len(order) or len(losses) == total
                checked = stopper.epoch_done() if ends_epoch else None
                elapsed = time.monotonic() - started
                if base.rank == 0:
                    report = TrainingStep(
                        len(losses), total, epoch + 1, losses[-1], elapsed, eval_loss, checked
                    )
                    on_step(report)
    stopper.restore()
    average.restore()
    if base.accelerator is not None:
        _leave_group(base.accelerator)
        del model  # the DistributedDataParallel wrapper goes once the group's workers are idle
    return losses


def epoch_order(
    examples: Sequence[TokenizedExample], generator: Any, *, stratify: bool = False
) -> list[int]:
    """One epoch's order of the rows: a shuffle by `generator` (a torch.Generator), or with
    `stratify`, each group's shuffled rows spread evenly over the epoch (row n of a group of k
    at (n + u) / k, u a random offset per group), so any stretch holds every group in
    proportion. A group is the rows that train the same answer tokens; rows with an answer of
    their own form one group together."""
    import torch

    order: list[int] = torch.randperm(len(examples), generator=generator).tolist()
    if not stratify:
        return order
    groups: dict[tuple[int, ...], list[int]] = {}
    for index in order:
        answer = tuple(t for t in examples[index].labels if t != IGNORE_INDEX)
        groups.setdefault(answer, []).append(index)
    alone = [rows[0] for rows in groups.values() if len(rows) == 1]
    spread = [rows for rows in groups.values() if len(rows) > 1] + ([alone] if alone else [])
    offsets: list[float] = torch.rand(len(spread), generator=generator).tolist()
    placed = [
        ((n + offsets[g]) / len(rows), index)
        for g, rows in enumerate(spread)
        for n, index in enumerate(rows)
    ]
    return [index for _, index in sorted(placed)]


def _gather_objects(rows: list[Any]) -> list[Any]:
    """Every process's `rows`, concatenated in process order (a collective: all must call)."""
    from accelerate.utils import gather_object

    return list(gather_object(rows))


def _leave_group(accelerator: Any) -> None:
    """Leave the process group without deadlocking at its destruction.

    A gloo worker thread destroys a finished collective's work after waking its caller, and
    that frees the Python-owned tensors in it, which needs the GIL. Destroying the group (when
    the wrapped model goes) joins those threads while holding the GIL: if a worker has not yet
    let go of its last work, both wait for ever (seen as a hang after training, about one run in
    ten). A barrier (waited with the GIL released) and a short sleep let the workers finish
    first; only then is the group destroyed."""
    import torch.distributed

    torch.distributed.barrier()
    time.sleep(0.25)  # releases the GIL to a worker still freeing its last work
    accelerator.end_training()  # leaves the process group; the weights are in place


class _Average:
    """An exponential moving average of the trainable weights (Polyak averaging), with the
    usual warm-up: step t weighs in with at least 1/t (a plain mean of the steps so far until
    the decay takes over), so the first, barely trained weights do not dominate."""

    def __init__(self, base: LoadedBase, decay: float) -> None:
        self._decay, self._steps = decay, 0
        self._parameters = (
            [(n, p) for n, p in base.model.named_parameters() if p.requires_grad] if decay else []
        )
        self._shadow: dict[str, Any] = {}

    def update(self) -> None:
        if not self._parameters:
            return
        import torch

        self._steps += 1
        keep = min(self._decay, (self._steps - 1) / self._steps)
        with torch.no_grad():
            for name, parameter in self._parameters:
                shadow = self._shadow.get(name)
                if shadow is None:
                    self._shadow[name] = parameter.detach().clone()
                else:
                    shadow.mul_(keep).add_(parameter.detach(), alpha=1.0 - keep)

    def restore(self) -> None:
        """Put the average in place of the trained weights."""
        if not self._shadow:
            return
        import torch

        with torch.no_grad():
            for name, parameter in self._parameters:
                parameter.copy_(self._shadow[name])


class _EarlyStop:
    """The validation loss after each epoch; the trainable weights of the best epoch."""

    def __init__(
        self,
        base: LoadedBase,
        patience: int,
        validation: Sequence[TokenizedExample],
        batch_size: int,
    ) -> None:
        self._base, self._patience = base, patience
        self._rows, self._batch_size = validation, batch_size
        self._best: float | None = None
        self._best_state: dict[str, Any] = {}
        self._worse = 0
        self.stopped = False

    def epoch_done(self) -> float | None:
        """Measure the validation loss (None without early stopping); decide whether to stop."""
        if not self._patience or not self._rows:
            return None
        loss = evaluate_loss(self._base, self._rows, self._batch_size)
        assert loss is not None  # there are rows
        if self._best is None or loss < self._best:
            self._best, self._worse = loss, 0
            self._best_state = {
                name: p.detach().clone()
                for name, p in self._base.model.named_parameters()
                if p.requires_grad
            }
            return loss
        self._worse += 1
        self.stopped = self._worse >= self._patience
        return loss

    def restore(self) -> None:
        if not self._best_state:
            return
        import torch

        with torch.no_grad():
            for name, parameter in self._base.model.named_parameters():
                if name in self._best_state:
                    parameter.copy_(self._best_state[name])


def _step(
    base: LoadedBase,
    model: Any,
    chunk: Sequence[TokenizedExample],
    pad: int,
    config: TrainingConfig,
    prototypes: Prototypes | None = None,
) -> float:
    """Forward and backward on this process's share of a batch; returns the batch's loss.

    The loss is the mean over the batch's answer tokens, whichever process holds them: a
    share's mean is weighted by its part of the batch's tokens (times the number of processes,
    as DistributedDataParallel averages the gradients), so several processes compute the
    gradient one process would."""

    if base.accelerator is None:
        contrast = (config.contrast, prototypes, True) if prototypes is not None else None
        batch = {k: v.to(base.device) for k, v in collate(chunk, pad).items()}
        loss = batch_loss(model, batch, config.label_smoothing, config.prompt_loss, contrast)
        loss.backward()  # type: ignore[no-untyped-call]  # untyped in torch 2.13
        return float(loss.detach())
    mine = list(chunk[base.rank :: base.processes])
    if not mine:  # a last batch smaller than the group: this share counts for nothing
        mine, weight = [chunk[0]], 0.0
    else:
        weight = sum(e.trained_tokens for e in mine) / sum(e.trained_tokens for e in chunk)
    batch = {k: v.to(base.device) for k, v in collate(mine, pad).items()}
    # The prototype loss is a mean over rows, not tokens: this share's mean weighs in by its
    # part of the batch's rows once the whole loss is weighted by its part of the tokens.
    rows = len(mine) / len(chunk)
    contrast = (
        (config.contrast * rows / weight if weight else 0.0, prototypes, weight > 0)
        if prototypes is not None
        else None
    )
    # Each process's share of a batch runs as one forward pass: DistributedDataParallel
    # expects one forward per backward, so the common prefix is not run apart here.
    loss = batch_loss(
        model, batch, config.label_smoothing, config.prompt_loss, contrast, share_prefix=False
    )
    loss = loss * weight
    base.accelerator.backward(loss * base.processes)
    total = base.accelerator.reduce(loss.detach().reshape(1), reduction="sum")
    return float(total[0])


def batch_loss(
    model: Any,
    batch: dict[str, torch.Tensor],
    label_smoothing: float = 0.0,
    prompt_weight: float = 0.0,
    contrast: tuple[float, Prototypes, bool] | None = None,
    share_prefix: bool = True,
) -> torch.Tensor:
    """The mean cross-entropy over a collated batch's answer tokens (plus `prompt_weight` times
    the mean over its `prompt_labels`, when the batch has them, and with `contrast`, its weight
    times the prototype loss of the rows' representations).

    Logits are computed only where a trained token is predicted (the vocabulary projection of
    every other position is skipped: about a fifth of a small model's work on the prompt's
    tokens), and the loss is the one transformers computes from full logits. With
    `share_prefix`, the leading tokens all rows have in common (a system message, the chat
    template) run through the model once, and every row attends to their keys and values:
    the same loss and gradient as a forward pass per row, with a long system message several
    times faster."""
    import torch

    labels = batch["labels"][:, 1:]
    prompt = batch.get("prompt_labels")
    prompted = prompt is not None and prompt_weight > 0
    wanted = labels != IGNORE_INDEX
    if prompt is not None and prompted:
        wanted = wanted | (prompt[:, 1:] != IGNORE_INDEX)
    keep = torch.zeros_like(batch["labels"], dtype=torch.bool)
    keep[:, :-1] = wanted
    shared = shared_prefix(batch["input_ids"], keep) if share_prefix else 0
    if shared:
        output = _forward_sharing_prefix(model, batch, keep, shared, contrast is not None)
    else:
        output = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            logits_to_keep=keep,
            output_hidden_states=contrast is not None,
        )
    logits = output.logits.float()
    cross = torch.nn.functional.cross_entropy
    loss = cross(logits, labels[wanted], ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)
    if prompt is not None and prompted:
        asked = cross(logits, prompt[:, 1:][wanted], ignore_index=IGNORE_INDEX)
        loss = loss + prompt_weight * asked
    if contrast is not None:
        weight, prototypes, counted = contrast
        # the position whose logits predict the answer's first token: the prompt's last
        starts = (batch["labels"] != IGNORE_INDEX).int().argmax(dim=1) - 1 - shared
        rows = torch.arange(len(starts))
        features = output.hidden_states[-1][rows, starts].float()
        answers = [tuple(row[row != IGNORE_INDEX].tolist()) for row in batch["labels"]]
        loss = loss + weight * prototypes.loss(features, answers, counted)
    return loss


SHARED_PREFIX_MIN = 16
"""A batch's common prefix shorter than this many tokens runs with each row (not worth a call)."""


def shared_prefix(ids: torch.Tensor, keep: torch.Tensor) -> int:
    """How many leading tokens every row of the batch has in common, up to the first position
    whose logits are kept (a prefix that predicts nothing); 0 when that is under
    SHARED_PREFIX_MIN tokens or the batch has one row."""
    if ids.shape[0] < 2:
        return 0
    same = (ids == ids[:1]).all(dim=0).int()
    length = int(same.cumprod(dim=0).sum())
    first_kept = int(keep.int().argmax(dim=1).min())
    length = min(length, first_kept, ids.shape[1] - 1)
    return length if length >= SHARED_PREFIX_MIN else 0


def _forward_sharing_prefix(
    model: Any, batch: dict[str, torch.Tensor], keep: torch.Tensor, shared: int, hidden: bool
) -> Any:
    """Run the first `shared` tokens of row 0 once, repeat their keys and values for every row
    (the gradient flows back through the copies), then run each row's remaining tokens on
    them. Hidden states and logits are the rest's only."""
    from transformers.cache_utils import DynamicCache

    ids = batch["input_ids"]
    cache = DynamicCache()
    keyword = _cache_keyword(model)
    model(input_ids=ids[:1, :shared], use_cache=True, logits_to_keep=1, **{keyword: cache})
    cache.batch_repeat_interleave(ids.shape[0])
    return model(
        input_ids=ids[:, shared:],
        attention_mask=batch["attention_mask"],
        use_cache=True,
        logits_to_keep=keep[:, shared:],
        output_hidden_states=hidden,
        **{keyword: cache},
    )


def _cache_keyword(model: Any) -> str:
    """The forward argument that takes a cache: `cache` from transformers 5.x, where
    `past_key_values` is deprecated, `past_key_values` before."""
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    parameters = inspect.signature(type(inner).forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


class Prototypes:
    """A running centroid of the representations of each answer's rows, and the loss that draws
    a row's representation to its answer's centroid and away from the others' (a softmax over
    cosine similarities, as prototypical networks and supervised contrastive learning do).

    With several processes, `gather` collects every process's rows (detached), so that every
    process moves the same centroids by the whole batch, as one process would."""

    TEMPERATURE = 0.1
    MOMENTUM = 0.9  # a centroid keeps this much of itself at each update

    def __init__(self, gather: Callable[[list[Any]], list[Any]] | None = None) -> None:
        self._gather = gather
        self._keys: list[tuple[int, ...]] = []
        self._centroids: list[Any] = []

    def loss(
        self, features: torch.Tensor, answers: Sequence[tuple[int, ...]], counted: bool = True
    ) -> torch.Tensor:
        """The mean loss of these representations (one row each); then the centroids move
        toward the batch's rows (an answer met for the first time starts at its rows' mean).
        Rows not `counted` (a process's stand-in share of a batch too small to split) add
        nothing to the loss or the centroids."""
        import torch

        unit = torch.nn.functional.normalize(features, dim=-1)
        rows = list(zip(answers, unit.detach().cpu(), strict=True)) if counted else []
        batch = self._gather(rows) if self._gather is not None else rows
        means = {
            answer: torch.stack([v for a, v in batch if a == answer]).mean(dim=0)
            for answer in dict.fromkeys(a for a, _ in batch)
        }
        for answer, mean in means.items():
            if answer not in self._keys:
                self._keys.append(answer)
                self._centroids.append(torch.nn.functional.normalize(mean, dim=0))
        centroids = torch.stack(self._centroids).to(unit.device)
        targets = torch.tensor([self._keys.index(a) for a in answers], device=unit.device)
        similarity = unit @ centroids.T / self.TEMPERATURE
        loss = torch.nn.functional.cross_entropy(similarity, targets) * float(counted)
        for answer, mean in means.items():
            index = self._keys.index(answer)
            moved = self.MOMENTUM * self._centroids[index] + (1 - self.MOMENTUM) * mean
            self._centroids[index] = torch.nn.functional.normalize(moved, dim=0)
        return loss


def _schedule(kind: Schedule, total: int) -> Callable[[int], float]:
    """The learning-rate multiplier for step n (0-based) of `total`."""
    if kind == "linear":
        return lambda n: max(0.0, 1.0 - n / total)
    if kind == "cosine":
        return lambda n: 0.5 * (1.0 + math.cos(math.pi * min(n, total) / total))
    return lambda n: 1.0


@contextlib.contextmanager
def _neftune(base: LoadedBase, alpha: float, generator: torch.Generator) -> Iterator[None]:
    """Add NEFTune noise to the input embeddings in training mode (not when measuring)."""
    if alpha <= 0:
        yield
        return
    import torch

    def noisy(module: Any, inputs: object, output: torch.Tensor) -> torch.Tensor:
        if not module.training:
            return output
        scale = alpha / math.sqrt(output.size(1) * output.size(2))
        noise = torch.rand(output.shape, generator=generator) * 2 - 1
        return output + (noise * scale).to(output.device, output.dtype)

    handle = base.model.get_input_embeddings().register_forward_hook(noisy)
    try:
        yield
    finally:
        handle.remove()


def evaluate_loss(
    base: LoadedBase, examples: Sequence[TokenizedExample], batch_size: int
) -> float | None:
    """The mean loss per answer token on these rows (None without rows)."""
    import torch

    if not examples:
        return None
    pad = _pad_id(base.tokenizer)
    base.model.eval()
    weighted, tokens = 0.0, 0
    mine = examples[base.rank :: base.processes]  # each process measures its share
    with torch.no_grad():
        for first in range(0, len(mine), batch_size):
            chunk = mine[first : first + batch_size]
            batch = {k: v.to(base.device) for k, v in collate(chunk, pad).items()}
            count = sum(e.trained_tokens for e in chunk)
            weighted += float(batch_loss(base.model, batch)) * count
            tokens += count
    base.model.train()
    if base.accelerator is not None:
        sums = torch.tensor([weighted, float(tokens)], device=base.device)
        total = base.accelerator.reduce(sums, reduction="sum")
        return float(total[0]) / max(float(total[1]), 1.0)
    return weighted / max(tokens, 1)


def collate(examples: Sequence[TokenizedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padding is masked out of attention and loss. With `prompt_labels`
    in any row, the batch has them too (IGNORE_INDEX for rows without)."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids, labels, mask, prompt = [], [], [], []
    for example in examples:
        gap = width - len(example.input_ids)
        ids.append([*example.input_ids, *[pad_id] * gap])
        labels.append([*example.labels, *[IGNORE_INDEX] * gap])
        mask.append([1] * len(example.input_ids) + [0] * gap)
        asked = example.prompt_labels or (IGNORE_INDEX,) * len(example.input_ids)
        prompt.append([*asked, *[IGNORE_INDEX] * gap])
    batch = {
        "input_ids": torch.tensor(ids),
        "labels": torch.tensor(labels),
        "attention_mask": torch.tensor(mask),
    }
    if any(e.prompt_labels for e in examples):
        batch["prompt_labels"] = torch.tensor(prompt)
    return batch


def _pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if isinstance(candidate, int):
            return candidate
    return 0


def save_adapter(base: LoadedBase, folder: Path) -> Path:
    """Save the trained LoRA as a PEFT folder (adapter_config.json + safetensors)."""
    # The embeddings are not trained; "auto" would look for a config.json beside the GGUF.
    base.model.save_pretrained(str(folder), save_embedding_layers=False)
    return folder


def merged_state(base: LoadedBase) -> dict[str, Any]:
    """Float32 numpy arrays of every weight, with any LoRA merged in (Hugging Face names)."""
    model = base.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
