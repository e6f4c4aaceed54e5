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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ollamacli.config import prefer_passive_openmp
from ollamacli.errors import FinetuneError, InvalidRequestError, OptionalDependencyError
from ollamacli.finetune.render import IGNORE_INDEX, TokenizedExample

if TYPE_CHECKING:
    import torch

Method = Literal["lora", "full"]
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
        lora_dropout=0.0,
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
) -> list[float]:
    """Run the optimiser; returns the loss of every step. KeyboardInterrupt propagates."""
    import torch

    epochs, total = config.plan(len(examples))
    generator = torch.Generator().manual_seed(config.seed)
    trainable = [p for p in base.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=0.0)
    pad = _pad_id(base.tokenizer)
    base.model.train()
    losses: list[float] = []
    started = time.monotonic()
    for epoch in range(epochs):
        order = torch.randperm(len(examples), generator=generator).tolist()
        for first in range(0, len(order), config.batch_size):
            if len(losses) == total:
                return losses
            chunk = [examples[i] for i in order[first : first + config.batch_size]]
            batch = {k: v.to(base.device) for k, v in collate(chunk, pad).items()}
            loss = base.model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            elapsed = time.monotonic() - started
            on_step(TrainingStep(len(losses), total, epoch + 1, losses[-1], elapsed))
    return losses


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
