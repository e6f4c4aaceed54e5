"""Fixtures for fine-tuning tests: a tiny random llama model as transformers weights and as GGUF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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
