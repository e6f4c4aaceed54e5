"""A small, dependency-free reader for GGUF headers (metadata and tensor shapes, never weights).

`create`, `show` and the preflight check need the architecture, parameter count, file type,
context length and chat template of a model file; reading them must stay fast and must not
import numpy or llama.cpp.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ollamacli.errors import StoreError

GGUF_MAGIC = b"GGUF"

# general.file_type values (llama.cpp `llama_ftype`), as Ollama shows them.
FILE_TYPES: dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4",
}

_SCALARS: dict[int, str] = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9

GGUFValue = int | float | bool | str | list["GGUFValue"]


@dataclass(frozen=True, slots=True)
class ArraySummary:
    """Stands in for an array longer than the reader was asked to keep."""

    length: int
    first: tuple[GGUFValue, ...] = ()


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One tensor's name, shape and ggml type."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int


@dataclass(frozen=True, slots=True)
class GGUFInfo:
    """What a GGUF header says about a model file."""

    version: int
    metadata: dict[str, GGUFValue | ArraySummary]
    tensors: tuple[TensorInfo, ...] = field(default=())

    @property
    def architecture(self) -> str:
        """`general.architecture`, e.g. `llama`."""
        value = self.metadata.get("general.architecture", "")
        return value if isinstance(value, str) else ""

    @property
    def file_type(self) -> str:
        """The quantisation name (`Q4_K_M`), from `general.file_type`."""
        value = self.metadata.get("general.file_type")
        if isinstance(value, int) and not isinstance(value, bool):
            return FILE_TYPES.get(value, f"unknown ({value})")
        return "unknown"

    @property
    def parameter_count(self) -> int:
        """Total number of weights, summed over the tensor shapes."""
        total = 0
        for tensor in self.tensors:
            count = 1
            for dim in tensor.shape:
                count *= dim
            total += count
        return total

    def arch_int(self, key: str) -> int | None:
        """An integer `<architecture>.<key>` value, such as `context_length`."""
        value = self.metadata.get(f"{self.architecture}.{key}")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return None

    @property
    def context_length(self) -> int | None:
        """The trained context length."""
        return self.arch_int("context_length")

    @property
    def embedding_length(self) -> int | None:
        """The hidden size."""
        return self.arch_int("embedding_length")

    @property
    def chat_template(self) -> str | None:
        """`tokenizer.chat_template` (Jinja), when the file has one."""
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    @property
    def is_adapter(self) -> bool:
        """True for a LoRA adapter file (`general.type` = `adapter`)."""
        return self.metadata.get("general.type") == "adapter"


class _Reader:
    def __init__(self, handle: BinaryIO, source: str) -> None:
        self._handle = handle
        self._source = source

    def take(self, size: int) -> bytes:
        data = self._handle.read(size)
        if len(data) != size:
            raise StoreError(f"{self._source}: truncated GGUF header")
        return data

    def scalar(self, fmt: str) -> int | float | bool:
        value: int | float | bool = struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]
        return value

    def u32(self) -> int:
        return int(self.scalar("<I"))

    def u64(self) -> int:
        return int(self.scalar("<Q"))

    def string(self) -> str:
        length = self.u64()
        if length > 1 << 28:
            raise StoreError(f"{self._source}: corrupt GGUF string length {length}")
        return self.take(length).decode("utf-8", errors="replace")

    def value(self, kind: int, max_array: int) -> GGUFValue | ArraySummary:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            return self.array(max_array)
        raise StoreError(f"{self._source}: unknown GGUF value type {kind}")

    def array(self, max_array: int) -> list[GGUFValue] | ArraySummary:
        kind, length = self.u32(), self.u64()
        if kind in _SCALARS and length > max_array:
            size = struct.calcsize(_SCALARS[kind])
            first = [self.scalar(_SCALARS[kind]) for _ in range(min(length, 5))]
            self._handle.seek(size * (length - len(first)), 1)
            return ArraySummary(length=length, first=tuple(first))
        items: list[GGUFValue] = []
        for _ in range(length):
            item = self.value(kind, max_array)
            if len(items) < max_array or length <= max_array:
                items.append(item if not isinstance(item, ArraySummary) else item.length)
        if length > max_array:
            return ArraySummary(length=length, first=tuple(items[:5]))
        return items


def is_gguf(path: Path) -> bool:
    """True when the file starts with the GGUF magic."""
    try:
        with path.open("rb") as handle:
            return handle.read(4) == GGUF_MAGIC
    except OSError:
        return False


def read_gguf(path: Path, *, max_array: int = 64, with_tensors: bool = True) -> GGUFInfo:
    """Read a GGUF file's header; raises `StoreError` if it is not a valid GGUF file."""
    try:
        with path.open("rb") as handle:
            return _read(_Reader(handle, str(path)), max_array, with_tensors)
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _read(reader: _Reader, max_array: int, with_tensors: bool) -> GGUFInfo:
    if reader.take(4) != GGUF_MAGIC:
        raise StoreError(
            f"{reader._source} is not a GGUF file",
            hint="FROM and ADAPTER need a .gguf file (or an existing model name)",
        )
    version = reader.u32()
    if version not in (2, 3):
        raise StoreError(f"{reader._source}: unsupported GGUF version {version}")
    n_tensors, n_kv = reader.u64(), reader.u64()
    metadata: dict[str, GGUFValue | ArraySummary] = {}
    for _ in range(n_kv):
        key = reader.string()
        metadata[key] = reader.value(reader.u32(), max_array)
    tensors: list[TensorInfo] = []
    if with_tensors:
        for _ in range(n_tensors):
            name = reader.string()
            dims = tuple(reader.u64() for _ in range(reader.u32()))
            ggml_type = reader.u32()
            reader.u64()  # offset into the data section; unused here
            tensors.append(TensorInfo(name=name, shape=dims, ggml_type=ggml_type))
    return GGUFInfo(version=version, metadata=metadata, tensors=tuple(tensors))


def human_number(count: int) -> str:
    """Ollama's HumanNumber: `134.52M`, `3.2B`, `7B`."""
    units: tuple[tuple[float, str, Callable[[float], str]], ...] = (
        (1e9, "B", lambda n: f"{n:.1f}"),
        (1e6, "M", lambda n: f"{n:.2f}"),
        (1e3, "K", lambda n: f"{n:.0f}"),
    )
    for scale, suffix, fmt in units:
        if count >= scale:
            number = count / scale
            text = f"{number:.0f}" if number == int(number) else fmt(number)
            return text + suffix
    return str(count)
