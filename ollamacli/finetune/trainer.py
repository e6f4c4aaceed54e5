"""Training with transformers + peft: load a GGUF base, run the optimiser, report every step.

The stack (torch, transformers, peft) is the optional `finetune` extra and is imported inside
these functions only. The base GGUF is loaded dequantised to float32 with its own tokenizer
(transformers converts both from the GGUF). Training runs on the GPU when torch sees one.
"""

from __future__ import annotations

import contextlib
import io
import math
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
    weight_decay: float = 0.0
    neftune_alpha: float = 0.0
    """NEFTune (Jain et al. 2023): uniform noise of this scale on the input embeddings while
    training; 0 turns it off. The paper uses 5 to 15."""
    lr_schedule: Schedule = "constant"

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
        if not 0.0 <= self.lora_dropout < 1.0:
            raise InvalidRequestError(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        for option, number in (
            ("--weight-decay", self.weight_decay),
            ("--neftune", self.neftune_alpha),
        ):
            if number < 0:
                raise InvalidRequestError(f"{option} must not be negative, got {number}")
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

    @property
    def remaining(self) -> float:
        """Seconds left at the pace so far."""
        return self.elapsed / self.step * (self.total - self.step) if self.step else 0.0


StepSink = Callable[[TrainingStep], None]


def ignore_step(step: TrainingStep) -> None:
    """A step sink that drops every report."""


@dataclass(slots=True)
class LoadedBase:
    """The base model in transformers, its tokenizer, and where it runs."""

    model: Any  # transformers PreTrainedModel (or a peft wrapper once prepared)
    tokenizer: Any  # transformers PreTrainedTokenizerFast
    device: str

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
    device = "cuda" if torch.cuda.is_available() else "cpu"
    loaded: Any = model
    return LoadedBase(loaded.to(device), tokenizer, device)


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
    lora = peft.LoraConfig(
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
) -> list[float]:
    """Run the optimiser; returns the loss of every step. KeyboardInterrupt propagates.

    With `held_out` rows, their loss is measured at each quarter of the steps (and after the
    last) and reported with the step."""
    import torch

    epochs, total = config.plan(len(examples))
    generator = torch.Generator().manual_seed(config.seed)
    trainable = [p for p in base.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config.lr_schedule, total))
    pad = _pad_id(base.tokenizer)
    every = math.ceil(total / 4)  # a pass over the held-out rows costs about a step
    losses: list[float] = []
    started = time.monotonic()
    with _neftune(base, config.neftune_alpha, generator):
        for epoch in range(epochs):
            order = torch.randperm(len(examples), generator=generator).tolist()
            for first in range(0, len(order), config.batch_size):
                if len(losses) == total:
                    return losses
                base.model.train()
                chunk = [examples[i] for i in order[first : first + config.batch_size]]
                batch = {k: v.to(base.device) for k, v in collate(chunk, pad).items()}
                loss = base.model(**batch).loss
                loss.backward()
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                measured = len(losses) % every == 0 or len(losses) == total
                eval_loss = evaluate_loss(base, held_out, config.batch_size) if measured else None
                elapsed = time.monotonic() - started
                on_step(TrainingStep(len(losses), total, epoch + 1, losses[-1], elapsed, eval_loss))
    return losses


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
    with torch.no_grad():
        for first in range(0, len(examples), batch_size):
            chunk = examples[first : first + batch_size]
            batch = {k: v.to(base.device) for k, v in collate(chunk, pad).items()}
            count = sum(e.trained_tokens for e in chunk)
            weighted += float(base.model(**batch).loss) * count
            tokens += count
    base.model.train()
    return weighted / max(tokens, 1)


def collate(examples: Sequence[TokenizedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padding is masked out of attention and loss."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids, labels, mask = [], [], []
    for example in examples:
        gap = width - len(example.input_ids)
        ids.append([*example.input_ids, *[pad_id] * gap])
        labels.append([*example.labels, *[IGNORE_INDEX] * gap])
        mask.append([1] * len(example.input_ids) + [0] * gap)
    return {
        "input_ids": torch.tensor(ids),
        "labels": torch.tensor(labels),
        "attention_mask": torch.tensor(mask),
    }


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
