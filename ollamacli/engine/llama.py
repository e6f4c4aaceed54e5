"""llama.cpp through llama-cpp-python. Placeholder until the engine work lands."""

from __future__ import annotations

from ollamacli.engine.base import Engine, LoadConfig
from ollamacli.errors import ModelLoadError


class LlamaCppFactory:
    """Loads GGUF models with llama-cpp-python."""

    def __init__(self, *, verbose: bool = False) -> None:
        self.verbose = verbose

    def load(self, config: LoadConfig) -> Engine:
        """Load a model."""
        raise ModelLoadError("the llama.cpp engine is not wired yet", path=str(config.model_path))
