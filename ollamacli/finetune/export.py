"""Adapters for llama.cpp: write a GGUF LoRA from PEFT weights (a folder or a trained model).

The file is what llama.cpp's `convert_lora_to_gguf.py` writes and `Llama(lora_path=...)` loads:
`general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha` (llama.cpp scales by
alpha / rank), and per target `blk.<i>.<name>.weight.lora_a` (rank x in) and `.lora_b`
(out x rank), with q/k `lora_b` rows permuted back to llama.cpp's rotary order.

The matrices are stored as F16 by default, as `convert_lora_to_gguf.py --outtype f16` does: half
the bytes of F32 (under 10 MB for rank 16 on SmolLM2-135M) with the same greedy answers, since
llama.cpp adds the LoRA product to activations computed in F32 either way. Q8_0 is not offered:
its 32-value blocks do not divide a `lora_b` row of rank 16.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ollamacli.errors import FinetuneError, OptionalDependencyError
from ollamacli.finetune.layout import BaseLayout
from ollamacli.service.models import PEFT_CONFIG, PEFT_WEIGHTS

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Matrix = npt.NDArray[np.float32]

LoraPrecision = Literal["f16", "f32"]

_PEFT_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<part>[AB])\.weight$")


@dataclass(frozen=True, slots=True)
class LoraWeights:
    """A LoRA adapter in PEFT's terms: per module path, the A (r x in) and B (out x r) matrices."""

    alpha: float  # as llama.cpp uses it: scale = alpha / rank
    pairs: dict[str, tuple[Matrix, Matrix]]


def write_lora_gguf(
    weights: LoraWeights, layout: BaseLayout, out: Path, *, precision: LoraPrecision = "f16"
) -> Path:
    """Write a GGUF LoRA for the base model `layout` describes."""
    import gguf
    import numpy as np

    dtype = np.float16 if precision == "f16" else np.float32
    tensors = {}
    for module, (lora_a, lora_b) in sorted(weights.pairs.items()):
        name = layout.gguf_name(f"{module}.weight")
        _check_fit(name, lora_a, lora_b, layout)
        tensors[f"{name}.lora_a"] = np.ascontiguousarray(lora_a, dtype=dtype)
        tensors[f"{name}.lora_b"] = np.ascontiguousarray(
            layout.to_gguf_rows(name, lora_b), dtype=dtype
        )
    if not tensors:
        raise FinetuneError("the adapter has no LoRA weights")
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out), layout.architecture)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(weights.alpha))
    for name, data in tensors.items():
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _check_fit(name: str, lora_a: Matrix, lora_b: Matrix, layout: BaseLayout) -> None:
    """The base tensor's ne is (in, out); A is (r, in) and B is (out, r)."""
    shape = layout.tensor_shapes.get(name)
    if shape is None:
        raise FinetuneError(f"the base model has no tensor {name} for this adapter")
    fits = (
        lora_a.ndim == 2
        and lora_b.ndim == 2
        and lora_a.shape[0] == lora_b.shape[1]
        and (lora_a.shape[1], lora_b.shape[0]) == tuple(shape[:2])
    )
    if not fits:
        raise FinetuneError(
            f"adapter shapes A{tuple(lora_a.shape)} B{tuple(lora_b.shape)} do not fit "
            f"{name} {tuple(shape)} of the base model",
            hint="the adapter was trained for a different base model",
        )


def lora_from_state(
    state: Mapping[str, Matrix], *, rank: int, alpha: float, rslora: bool = False
) -> LoraWeights:
    """Pair up PEFT's `...<module>.lora_A.weight` / `lora_B.weight` tensors."""
    found: dict[str, dict[str, Matrix]] = {}
    for key, value in state.items():
        match = _PEFT_KEY.match(key)
        if match is None:
            raise FinetuneError(
                f"unsupported adapter tensor {key}",
                hint="only LoRA on linear layers can be converted (no DoRA, embeddings or "
                "modules_to_save)",
            )
        found.setdefault(match["module"], {})[match["part"]] = value
    pairs = {}
    for module, parts in found.items():
        if set(parts) != {"A", "B"}:
            raise FinetuneError(f"adapter module {module} lacks lora_A or lora_B")
        pairs[module] = (parts["A"], parts["B"])
    # PEFT's rsLoRA scales by alpha / sqrt(r); llama.cpp always divides by r.
    effective = alpha * math.sqrt(rank) if rslora else alpha
    return LoraWeights(alpha=effective, pairs=pairs)


def convert_peft_adapter(folder: Path, base_model: Path, out: Path | None = None) -> Path:
    """A PEFT adapter folder -> GGUF LoRA file for `base_model` (beside the folder by default)."""
    config = _read_peft_config(folder)
    state = _load_safetensors(folder / PEFT_WEIGHTS)
    weights = lora_from_state(
        state,
        rank=_int(config, "r", folder),
        alpha=float(_number(config, "lora_alpha", folder)),
        rslora=bool(config.get("use_rslora", False)),
    )
    target = out or folder.with_name(folder.name + ".gguf")
    return write_lora_gguf(weights, BaseLayout.read(base_model), target)


def convert_to_temporary(folder: Path, base_model: Path) -> Path:
    """`ModelService`'s adapter converter: the GGUF goes to a temporary file the caller deletes."""
    handle, name = tempfile.mkstemp(prefix="ollamacli-adapter-", suffix=".gguf")
    os.close(handle)
    try:
        return convert_peft_adapter(folder, base_model, Path(name))
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _read_peft_config(folder: Path) -> dict[str, object]:
    path = folder / PEFT_CONFIG
    if not path.is_file() or not (folder / PEFT_WEIGHTS).is_file():
        raise FinetuneError(
            f"{folder} is not a PEFT adapter folder",
            hint=f"ADAPTER takes a GGUF LoRA file or a folder with {PEFT_CONFIG} and {PEFT_WEIGHTS}",
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FinetuneError(f"{path}: cannot read adapter config: {exc}") from exc
    if not isinstance(config, dict):
        raise FinetuneError(f"{path}: adapter config is not a JSON object")
    unsupported = [
        key
        for key in ("use_dora", "rank_pattern", "alpha_pattern", "fan_in_fan_out")
        if config.get(key)
    ]
    if config.get("peft_type", "LORA") != "LORA" or unsupported:
        raise FinetuneError(
            f"{path}: only plain LoRA adapters can be converted "
            f"(found {', '.join(unsupported) or config.get('peft_type')})"
        )
    return config


def _int(config: Mapping[str, object], key: str, folder: Path) -> int:
    value = _number(config, key, folder)
    if not isinstance(value, int) or value <= 0:
        raise FinetuneError(f"{folder / PEFT_CONFIG}: '{key}' must be a positive integer")
    return value


def _number(config: Mapping[str, object], key: str, folder: Path) -> int | float:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FinetuneError(f"{folder / PEFT_CONFIG}: missing or invalid '{key}'")
    return value


def _load_safetensors(path: Path) -> dict[str, Matrix]:
    """Float32 numpy arrays from a safetensors file (PEFT may save bf16, which numpy lacks)."""
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError as exc:
        raise OptionalDependencyError("converting a PEFT adapter", extra="finetune") from exc
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise FinetuneError(f"{path}: cannot read adapter weights: {exc}") from exc
    return {key: value.float().numpy() for key, value in tensors.items()}
