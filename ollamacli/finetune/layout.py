"""Where Hugging Face weights go in a GGUF: tensor names and llama's rotary row order.

llama.cpp stores a llama model's q and k projection rows permuted for its rotary layout
(`convert_hf_to_gguf.py`, `LlamaModel.permute`), and transformers undoes that permutation when it
loads a GGUF. Anything trained in transformers (a merged weight, or the rows of a LoRA `B`
matrix of q_proj/k_proj) must be permuted back before it is written, or llama.cpp applies it to
the wrong rows: measurements.md shows such an adapter still answering 7 of 8 questions right.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ollamacli.errors import FinetuneError
from ollamacli.gguffile import GGUFInfo, read_gguf

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

PERMUTED_ARCHITECTURES = frozenset({"llama"})
"""Architectures whose q/k rows transformers un-permutes on load (its `LlamaTensorProcessor`)."""


@dataclass(frozen=True, slots=True)
class BaseLayout:
    """What the exporters need to know about the base model's GGUF."""

    architecture: str
    block_count: int
    head_count: int
    head_count_kv: int
    tensor_shapes: dict[str, tuple[int, ...]]  # GGUF name -> ne (innermost dimension first)

    @classmethod
    def read(cls, path: Path) -> BaseLayout:
        """Read the layout from a GGUF model file's header."""
        return cls.from_info(read_gguf(path))

    @classmethod
    def from_info(cls, info: GGUFInfo) -> BaseLayout:
        """The layout described by a parsed GGUF header."""
        blocks = info.arch_int("block_count")
        heads = info.arch_int("attention.head_count")
        if blocks is None or heads is None:
            raise FinetuneError(
                f"the base model ({info.architecture or 'unknown architecture'}) has no "
                "block_count/attention.head_count metadata"
            )
        return cls(
            architecture=info.architecture,
            block_count=blocks,
            head_count=heads,
            head_count_kv=info.arch_int("attention.head_count_kv") or heads,
            tensor_shapes={t.name: t.shape for t in info.tensors},
        )

    def gguf_name(self, hf_name: str) -> str:
        """The GGUF tensor name for a Hugging Face parameter (`model.layers.0.mlp.up_proj.weight`)."""
        import gguf

        arch = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}.get(self.architecture)
        if arch is None:
            raise FinetuneError(f'architecture "{self.architecture}" has no GGUF tensor map')
        mapping = gguf.get_tensor_name_map(arch, self.block_count)
        name = mapping.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise FinetuneError(f"no GGUF tensor for {hf_name} ({self.architecture})")
        return str(name)

    def to_gguf_rows(
        self, gguf_name: str, rows: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """Rows of a q/k projection (or of its LoRA B) in llama.cpp's rotary order."""
        if self.architecture not in PERMUTED_ARCHITECTURES:
            return rows
        if ".attn_q." in gguf_name:
            return permute_rows(rows, self.head_count)
        if ".attn_k." in gguf_name:
            return permute_rows(rows, self.head_count_kv)
        return rows


def permute_rows(weights: npt.NDArray[np.float32], n_head: int) -> npt.NDArray[np.float32]:
    """Hugging Face row order -> llama.cpp's: per head, interleave the two rotary halves."""
    rows = weights.shape[0]
    if rows % (2 * n_head):
        raise FinetuneError(f"cannot split {rows} rows into {n_head} rotary heads")
    shaped = weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
    return shaped.swapaxes(1, 2).reshape(weights.shape)
