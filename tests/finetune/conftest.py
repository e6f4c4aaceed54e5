"""Fixtures for fine-tuning tests: a tiny random llama model as transformers weights and as GGUF."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import pytest

from ollamacli.finetune.trainer import LORA_TARGETS
from tests.finetune.tiny import tiny_model, write_tiny_gguf


@pytest.fixture(scope="session")
def stack() -> None:
    """Skip unless the finetune extra is installed."""
    for module in ("torch", "transformers", "peft"):
        pytest.importorskip(module)


@pytest.fixture(scope="session")
def tiny_hf(stack: None) -> Any:
    """The tiny model in transformers (do not train it in place)."""
    return tiny_model()


@pytest.fixture(scope="session")
def tiny_gguf(tiny_hf: Any, smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as an F32 GGUF with SmolLM2's tokenizer and chat template."""
    return write_tiny_gguf(tiny_hf, smollm2_path, tmp_path_factory.mktemp("tiny") / "tiny.gguf")


@pytest.fixture(scope="session")
def peft_tiny(tiny_hf, tmp_path_factory) -> tuple[Any, Path]:
    """The tiny model with a random (non-zero) LoRA on every projection, saved as a PEFT folder."""
    import peft
    import torch

    config = peft.LoraConfig(r=8, lora_alpha=16, target_modules=list(LORA_TARGETS))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
        model = peft.get_peft_model(copy.deepcopy(tiny_hf), config)
    torch.manual_seed(3)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.3)
    folder = tmp_path_factory.mktemp("peft") / "adapter"
    model.save_pretrained(str(folder), save_embedding_layers=False)
    return model.eval(), folder
